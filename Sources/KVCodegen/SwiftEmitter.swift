import Foundation
import KVArtifact

import Foundation
import KVArtifact
import KVQuant

// Emits Swift source for a lowered schedule: one kernel per distinct (op, shapes, attributes, KV
// layout), constants baked in, written in the habits REFERENCES §3 measured on this machine
// (SIMD8<Float> with four independent accumulators, @inline(__always) helpers, no SIMD values
// across non-inlined calls, pointer arithmetic with &+), and a straight-line step function that
// performs the schedule's actions in order on the tier arenas: every planned transfer a real copy
// counted on its link, every kernel on its planned tier-0 offsets.
//
// Decode attention reads the cache copy the plan loaded: an f32 cache, or the packed layout of
// Docs/kv-layout.md (fp16 sinks + window, a high and a low segment at their bit widths), with
// per-group dequantisation folded into the dot products (keys: Σ_c (q_c·s_c)·code + Σ_c q_c·z_c
// per token group; values: w·s·code + w·z). It attends over the held tokens and the new token,
// writes the new rows to their planned place, the attention every slot received (H2O scores) and
// the new token's, for the runtime's cache manager. Names from the model never reach the source:
// kernels are `k0`, `k1`, …, tensors are offsets.

/// Swift source for a schedule's kernels and its step function.
public struct SwiftEmitter {
    public let program: ModelProgram
    public let schedule: ExecutionSchedule

    /// Ops the emitter has kernels for.
    public static let supported: Set<String> = ["embed", "matmul", "add", "rmsnorm", "rope", "attention", "silu_mul"]

    /// An emitter for `schedule` over `program`, or an error naming the first op it cannot emit.
    public init(program: ModelProgram, schedule: ExecutionSchedule) throws(CodegenError) {
        self.program = program
        self.schedule = schedule
        for op in program.ops where !Self.supported.contains(op.kind) {
            throw CodegenError("op '\(op.name)' (\(op.kind)) has no generated kernel yet; emitted: \(Self.supported.sorted().joined(separator: ", "))")
        }
        for op in program.ops where op.kind == "matmul" {
            let b = program.tensors[op.operands[1]].shape
            guard op.bool("transpose_b") == true, b.count == 2, op.operands.count == 2 else {
                throw CodegenError("op '\(op.name)': only linear (a × bᵀ, no bias) has a generated kernel yet")
            }
        }
        for op in program.ops where op.kind == "attention" && op.operands.count != 5 {
            throw CodegenError("op '\(op.name)': only decode attention has a generated kernel yet")
        }
        for c in schedule.kv {
            let op = program.ops[c.op]
            let heads = op.int("heads") ?? 1, kvHeads = op.int("kv_heads") ?? heads
            guard heads % kvHeads == 0, program.tensors[op.operands[0]].shape.last! / heads == c.channels / kvHeads else {
                throw CodegenError("op '\(op.name)': query and cache head dimensions differ; not emitted")
            }
        }
    }

    /// Lowers `plan` over `program` and emits it: (schedule, Kernels.swift, Schedule.swift).
    public static func artifacts(program: ModelProgram, plan: Plan) throws(CodegenError) -> (schedule: ExecutionSchedule, kernels: String, step: String) {
        let schedule = try ScheduleLowering.lower(program: program, plan: plan)
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        return (schedule, kernels, step)
    }

    /// Kernels.swift and Schedule.swift.
    public func emit() -> (kernels: String, schedule: String) {
        var kernels = Self.header + "import Foundation\n\n" + Self.helpers
        var bodies: [String: String] = [:]
        var calls: [String] = []
        var usedTiers = Set<Int>()
        let cacheOf = Dictionary(schedule.kv.enumerated().map { ($1.op, $0) }, uniquingKeysWith: { a, _ in a })
        func pointer(_ l: ExecutionSchedule.Location) -> String {
            usedTiers.insert(l.tier)
            return "t\(l.tier) + \(l.offset)"
        }
        for action in schedule.actions {
            switch action.kind {
            case "copy":
                calls.append("    move(\(pointer(action.from!)), \(pointer(action.to!)), \(action.bytes!), links, \(action.link!))")
            case "gather":
                let rows = action.bytes! / action.rowBytes!
                calls.append("    gather(\(pointer(action.from!)), \(pointer(action.to!)), f(\(pointer(action.ids!))), \(rows), \(action.rowBytes!), links, \(action.link!))")
            default:
                let op = program.ops[action.op!]
                let (signature, body) = kernel(op, cache: cacheOf[action.op!].map { schedule.kv[$0] })
                let key = signature + body
                let name: String
                if let existing = bodies[key] {
                    name = existing
                } else {
                    name = "k\(bodies.count)"
                    bodies[key] = name
                    kernels += "\n@inline(never)\nfunc \(name)(\(signature)) {\n\(body)}\n"
                }
                var arguments = (action.operands! + action.results!).map { "f(\(pointer($0)))" }
                if let n = cacheOf[action.op!] { arguments.append("kv[\(n)]") }
                calls.append("    \(name)(\(arguments.joined(separator: ", ")))")
                calls.append("    observe?(context, \(action.op!))")
            }
        }
        var step = Self.header
        step += """
        @inline(__always)
        func f(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Float> { p.assumingMemoryBound(to: Float.self) }

        /// A planned transfer: a real copy, counted on its link.
        @inline(__always)
        func move(_ from: UnsafeMutableRawPointer, _ to: UnsafeMutableRawPointer, _ bytes: Int, _ links: UnsafeMutablePointer<Int>, _ link: Int) {
            to.copyMemory(from: from, byteCount: bytes)
            links[link] &+= bytes
        }

        /// A planned transfer of the table rows `ids` selects (ids are exact integers in f32).
        @inline(__always)
        func gather(_ table: UnsafeMutableRawPointer, _ to: UnsafeMutableRawPointer, _ ids: UnsafeMutablePointer<Float>, _ rows: Int, _ rowBytes: Int,
                    _ links: UnsafeMutablePointer<Int>, _ link: Int) {
            for r in 0..<rows { (to + r &* rowBytes).copyMemory(from: table + Int(ids[r]) &* rowBytes, byteCount: rowBytes) }
            links[link] &+= rows &* rowBytes
        }

        /// One decode step: the schedule's copies and kernels in order on the tier arenas (`tiers[i]`
        /// is tier i's arena), `kv[l]` the cache-manager state of attention layer l, `links` the
        /// bytes counted per link; `observe(context, op)` runs after each op's kernel when given.
        @_cdecl("kvplan_step")
        public func kvplan_step(_ tiers: UnsafePointer<UnsafeMutableRawPointer>, _ kv: UnsafePointer<UnsafeMutableRawPointer>,
                                _ links: UnsafeMutablePointer<Int>, _ observe: (@convention(c) (UnsafeMutableRawPointer?, Int) -> Void)?,
                                _ context: UnsafeMutableRawPointer?) {

        """
        for t in usedTiers.sorted() { step += "    let t\(t) = tiers[\(t)]\n" }
        if schedule.kv.isEmpty { step += "    _ = kv\n" }
        step += calls.joined(separator: "\n") + "\n}\n"
        step += "\n/// kvplan_step as a C function pointer, for code that links this schedule in as a Swift module.\n"
            + "public let kvplanStep: @convention(c) (UnsafePointer<UnsafeMutableRawPointer>, UnsafePointer<UnsafeMutableRawPointer>, UnsafeMutablePointer<Int>,\n"
            + "                                       (@convention(c) (UnsafeMutableRawPointer?, Int) -> Void)?, UnsafeMutableRawPointer?) -> Void = kvplan_step\n"
        step += "\n/// The calling convention of kvplan_step (the runtime refuses a library of another).\n@_cdecl(\"kvplan_abi\")\npublic func kvplan_abi() -> Int { \(ExecutionSchedule.abi) }\n"
        return (kernels, step)
    }

    static let header = "// Generated by kvplan (KVCodegen). Do not edit: regenerate with `kvplan compile`.\n\n"

    static let helpers = """
    /// Threads large kernels are split over (set by the runtime through kvplan_set_threads).
    nonisolated(unsafe) var kvplanThreads = 1

    @_cdecl("kvplan_set_threads")
    public func kvplan_set_threads(_ n: Int) { kvplanThreads = max(1, n) }

    /// Runs body(lo, hi) over 0..<n, split in contiguous parts over kvplanThreads when the work is large.
    @inline(__always)
    func parallelRows(_ n: Int, work: Int, _ body: (Int, Int) -> Void) {
        let parts = work >= 1 << 16 ? min(kvplanThreads, n) : 1
        if parts <= 1 { body(0, n); return }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let run = body  // the parts write disjoint rows
            DispatchQueue.concurrentPerform(iterations: parts) { p in run(n &* p / parts, n &* (p &+ 1) / parts) }
        }
    }

    /// Not inlined on purpose: with the length a literal at the call site, LLVM unrolls this loop
    /// completely and re-vectorises it into 128-bit shuffles — 10× slower (measured: 8 vs 72 GB/s).
    @inline(never)
    func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        var i = 0
        while i &+ 32 <= n {
            s0.addProduct(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self))
            s1.addProduct(UnsafeRawPointer(x + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self))
            s2.addProduct(UnsafeRawPointer(x + (i &+ 16)).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + (i &+ 16)).loadUnaligned(as: SIMD8<Float>.self))
            s3.addProduct(UnsafeRawPointer(x + (i &+ 24)).loadUnaligned(as: SIMD8<Float>.self), UnsafeRawPointer(y + (i &+ 24)).loadUnaligned(as: SIMD8<Float>.self))
            i &+= 32
        }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { s += x[i] * y[i]; i &+= 1 }
        return s
    }

    /// Element `i` of an fp16 array at `p`, as f32.
    @inline(__always)
    func half(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: i &<< 1, as: UInt16.self)))
    }

    /// Scaled logits of one head against `tokens` fp16 key rows of `channels` (the head's `d` from `first`).
    @inline(__always)
    func halfKeyLogits(_ q: UnsafePointer<Float>, _ keys: UnsafeRawPointer, tokens: Int, channels: Int, first: Int, d: Int, scale: Float,
                       _ out: UnsafeMutablePointer<Float>) {
        for t in 0..<tokens {
            let row = t &* channels &+ first
            var s: Float = 0
            for c in 0..<d { s += q[c] * half(keys, row &+ c) }
            out[t] = s * scale
        }
    }

    /// The `n` codes of `bits` bits packed LSB-first at `p`, as f32.
    @inline(__always)
    func unpackCodes(_ p: UnsafeRawPointer, count n: Int, bits: Int, _ out: UnsafeMutablePointer<Float>) {
        let mask = (1 &<< bits) &- 1, perByte = 8 / bits
        var t = 0, byte = 0
        while t < n {
            let b = Int(p.load(fromByteOffset: byte, as: UInt8.self))
            var sub = 0
            while sub < perByte && t < n {
                out[t] = Float((b >> (sub &* bits)) & mask)
                sub &+= 1
                t &+= 1
            }
            byte &+= 1
        }
    }

    /// Scaled logits of the `heads` query heads sharing one KV head (queries `d` apart, logits
    /// `stride` apart) against a quantised key segment (KIVI: per channel, groups of `group`
    /// tokens, each channel's fp16 scale and zero then its codes LSB-first). Each channel's codes
    /// are unpacked once for all heads, and dequantisation is folded into the dot product:
    /// Σ_c (q_c·s_c)·code_ct + Σ_c q_c·z_c.
    @inline(__always)
    func quantizedKeyLogits(_ q: UnsafePointer<Float>, heads: Int, _ segment: UnsafeRawPointer, tokens: Int, channels: Int, first: Int, d: Int,
                            bits: Int, group: Int, scale: Float, _ out: UnsafeMutablePointer<Float>, stride: Int,
                            codes: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>) {
        var t0 = 0, at = 0
        while t0 < tokens {
            let n = min(group, tokens &- t0)
            let rowBytes = 4 &+ (n &* bits &+ 7) >> 3
            for h in 0..<heads {
                bias[h] = 0
                let o = out + (h &* stride &+ t0)
                for t in 0..<n { o[t] = 0 }
            }
            for c in 0..<d {
                let p = segment + (at &+ (first &+ c) &* rowBytes)
                let s = half(p, 0), z = half(p, 1)
                unpackCodes(p + 4, count: n, bits: bits, codes)
                for h in 0..<heads {
                    let qc = q[h &* d &+ c]
                    let qs = qc * s
                    bias[h] += qc * z
                    let o = out + (h &* stride &+ t0)
                    for t in 0..<n { o[t] += qs * codes[t] }
                }
            }
            for h in 0..<heads {
                let o = out + (h &* stride &+ t0)
                for t in 0..<n { o[t] = (o[t] + bias[h]) * scale }
            }
            at &+= channels &* rowBytes
            t0 &+= n
        }
    }

    /// y_h[0..<dv] += weight_h × one fp16 value row's channels from `first`, for `heads` heads
    /// (outputs `dv` apart, weights at `weights[h]`).
    @inline(__always)
    func halfValueAccumulate(_ row: UnsafeRawPointer, first: Int, dv: Int, heads: Int, weights: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<dv {
            let v = half(row, first &+ i)
            for h in 0..<heads { y[h &* dv &+ i] += weights[h] * v }
        }
    }

    /// y_h[0..<dv] += weight_h × one quantised value row's channels from `first` (per token,
    /// groups of `group` channels, each group's fp16 scale and zero then its codes LSB-first);
    /// each channel group's codes are unpacked once for all heads.
    @inline(__always)
    func quantizedValueAccumulate(_ row: UnsafeRawPointer, first: Int, dv: Int, bits: Int, group: Int, heads: Int, weights: UnsafePointer<Float>,
                                  _ y: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<Float>) {
        let full = 4 &+ (group &* bits &+ 7) >> 3
        var c = 0
        while c < dv {
            let channel = first &+ c
            let i0 = channel % group
            let p = row + (channel / group) &* full
            let s = half(p, 0), z = half(p, 1)
            let n = min(group &- i0, dv &- c)
            unpackCodes(p + 4, count: i0 &+ n, bits: bits, codes)
            for h in 0..<heads {
                let w = weights[h], ws = w * s, wz = w * z
                let yh = y + (h &* dv &+ c)
                let code = codes + i0
                for i in 0..<n { yh[i] += ws * code[i] + wz }
            }
            c &+= n
        }
    }

    """

    /// (parameter list, body) of an op's kernel; pointers come in operand, result order (then the
    /// cache-manager state for decode attention).
    func kernel(_ op: ModelProgram.Op, cache: ExecutionSchedule.KVCache?) -> (String, String) {
        let t = program.tensors
        let out = op.results[0]
        let n = t[out].elementCount
        let binary = "_ x: UnsafeMutablePointer<Float>, _ z: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>"
        switch op.kind {
        case "embed":  // the plan gathered the rows already: the lookup is their copy
            return ("_ rows: UnsafeMutablePointer<Float>, _ ids: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>",
                    "    y.update(from: rows, count: \(n))\n")
        case "matmul":
            let (rows, k) = (t[op.operands[1]].shape[0], t[op.operands[1]].shape[1])
            let m = t[op.operands[0]].elementCount / k
            return (binary, "    parallelRows(\(rows), work: \(m * rows * k)) { lo, hi in\n        for r in 0..<\(m) {\n"
                    + "            for j in lo..<hi { y[r &* \(rows) &+ j] = dot(x + r &* \(k), z + j &* \(k), \(k)) }\n        }\n    }\n")
        case "add":
            let b = t[op.operands[1]].elementCount
            return (binary, "    for i in 0..<\(n) { y[i] = x[i] + z[i % \(b)] }\n")
        case "silu_mul":
            return (binary, "    for i in 0..<\(n) { let v = x[i]; y[i] = v / (1 + exp(-v)) * z[i] }\n")
        case "rmsnorm":
            let width = t[op.operands[0]].shape.last!
            let eps = op.double("eps") ?? 1e-6
            return (binary, "    for r in 0..<\(n / width) {\n        let row = x + r &* \(width)\n        let ms = Double(dot(row, row, \(width))) / \(width).0\n"
                    + "        let s = Float(1 / (ms + \(eps)).squareRoot())\n        for i in 0..<\(width) { y[r &* \(width) &+ i] = row[i] * s * z[i] }\n    }\n")
        case "rope":
            let width = t[op.operands[0]].shape.last!
            let heads = op.int("heads") ?? 1
            let d = width / heads
            let rotary = op.int("rotary_dim") ?? d
            let inv = RopeFrequencies.inverse(rotary: rotary, op: op).map { "\($0)" }.joined(separator: ", ")
            return (binary, "    let inv: [Double] = [\(inv)]\n    y.update(from: x, count: \(n))\n"
                    + "    for r in 0..<\(n / width) {\n        let p = Double(z[r % \(t[op.operands[1]].elementCount)])\n"
                    + "        for h in 0..<\(heads) {\n            let base = r &* \(width) &+ h &* \(d)\n"
                    + "            for i in 0..<\(rotary / 2) {\n                let angle = p * inv[i]\n                let c = cos(angle), s = sin(angle)\n"
                    + "                let x1 = Double(x[base &+ i]), x2 = Double(x[base &+ i &+ \(rotary / 2)])\n"
                    + "                y[base &+ i] = Float(x1 * c - x2 * s)\n                y[base &+ i &+ \(rotary / 2)] = Float(x2 * c + x1 * s)\n"
                    + "            }\n        }\n    }\n")
        default:
            return attentionKernel(op, cache: cache!)
        }
    }
}

/// A program the emitter cannot generate code for, with why.
public struct CodegenError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Rotary inverse frequencies with Hugging Face's llama3 scaling, computed here independently of
/// the runtime's reference interpreter (which the generated code is checked against).
enum RopeFrequencies {
    static func inverse(rotary: Int, op: ModelProgram.Op) -> [Double] {
        let theta = op.double("theta") ?? 10000
        let base = (0..<rotary / 2).map { i in pow(theta, -Double(2 * i) / Double(rotary)) }
        guard op.string("scaling") == "llama3", let factor = op.double("factor"), let low = op.double("low_freq_factor"),
              let high = op.double("high_freq_factor"), let original = op.double("original_max_positions") else { return base }
        return base.map { f in
            let wavelength = 2 * Double.pi / f
            switch wavelength {
            case ..<(original / high): return f
            case (original / low)...: return f / factor
            default:
                let smooth = (original / wavelength - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
    }
}
