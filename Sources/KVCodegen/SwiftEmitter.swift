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
    /// Bytes of q8_0 / q4_0 weights up to which rows are multiplied in pairs (KernelEmitter).
    public var pairedRowsLimit = SwiftEmitter.defaultPairedRowsLimit

    /// Ops the emitter has kernels for.
    public static let supported: Set<String> = ["embed", "matmul", "add", "mul", "rmsnorm", "layernorm", "rope", "attention", "softmax",
                                                "silu", "gelu", "relu", "silu_mul", "reshape", "split", "concat"]

    /// An emitter for `schedule` over `program`, or an error naming the first op it cannot emit.
    public init(program: ModelProgram, schedule: ExecutionSchedule) throws(CodegenError) {
        self.program = program
        self.schedule = schedule
        let t = program.tensors
        for op in program.ops {
            guard Self.supported.contains(op.kind) else {
                throw CodegenError("op '\(op.name)' (\(op.kind)) has no generated kernel yet; emitted: \(Self.supported.sorted().joined(separator: ", "))")
            }
            // Activations are f32; a weight operand may be f32, f16 or bf16 (block formats only
            // as the weight of a linear layer, checked below).
            for (i, o) in op.operands.enumerated() {
                let tensor = t[o]
                // Block formats: a linear layer's weight, or the table of an embedding lookup (a
                // tied table quantised with the output projection: the lookup decodes its rows).
                let isLinearWeight = op.kind == "matmul" && i == 1 && op.bool("transpose_b") == true
                let readsBlocks = isLinearWeight || op.kind == "embed" && i == 0
                let allowed: Set<String> = tensor.kind == "weight" ? (readsBlocks ? ["f32", "f16", "bf16", "q8_0", "q4_0"] : ["f32", "f16", "bf16"]) : ["f32", "i32"]
                guard allowed.contains(tensor.dtype) else {
                    throw CodegenError("op '\(op.name)': operand '\(tensor.name)' is \(tensor.dtype); kernels read \(allowed.sorted().joined(separator: ", ")) here")
                }
                if tensor.kind == "weight" && !isLinearWeight && tensor.dtype != "f32" && !["embed", "add", "mul", "rmsnorm", "layernorm", "matmul"].contains(op.kind) {
                    throw CodegenError("op '\(op.name)' (\(op.kind)) reads \(tensor.dtype) weight '\(tensor.name)'; only f32 is emitted there")
                }
            }
            for r in op.results where t[r].dtype != "f32" {
                throw CodegenError("op '\(op.name)' produces \(t[r].dtype) '\(t[r].name)'; generated kernels compute in f32")
            }
            switch op.kind {
            case "matmul":
                let w = t[op.operands[1]]
                guard w.shape.count == 2, op.operands.count <= 3 else {
                    throw CodegenError("op '\(op.name)': only products with a 2-D weight have a generated kernel yet")
                }
                if op.bool("transpose_b") == true {
                    if (w.dtype == "q8_0" || w.dtype == "q4_0") && w.shape[1] % 32 != 0 {
                        throw CodegenError("op '\(op.name)': \(w.dtype) rows of \(w.shape[1]) values are not whole blocks of 32")
                    }
                } else if w.dtype != "f32" {
                    throw CodegenError("op '\(op.name)': a [K, N] weight is emitted in f32 only (\(w.dtype) given)")
                }
            case "add", "mul":
                let a = t[op.operands[0]].shape, b = t[op.operands[1]].shape
                guard a == t[op.results[0]].shape, b.count <= a.count, Array(a.suffix(b.count)) == b else {
                    throw CodegenError("op '\(op.name)': \(a) \(op.kind) \(b) broadcasts other than over leading axes; not emitted")
                }
            case "softmax":
                let axis = op.int("axis") ?? -1
                guard axis == -1 || axis == t[op.operands[0]].shape.count - 1 else {
                    throw CodegenError("op '\(op.name)': softmax over axis \(axis); only the last axis is emitted")
                }
            case "attention":
                guard op.operands.count == 5 else { throw CodegenError("op '\(op.name)': only decode attention has a generated kernel yet") }
            default:
                break
            }
        }
        for c in schedule.kv {
            let op = program.ops[c.op]
            let heads = op.int("heads") ?? 1, kvHeads = op.int("kv_heads") ?? heads
            guard heads % kvHeads == 0, program.tensors[op.operands[0]].shape.last! / heads == c.channels / kvHeads else {
                throw CodegenError("op '\(op.name)': query and cache head dimensions differ; not emitted")
            }
        }
    }

    /// An emitter over a program made up for one tile (its tensors are the tile's blocks); unchecked.
    init(tileProgram: ModelProgram, schedule: ExecutionSchedule) {
        program = tileProgram
        self.schedule = schedule
    }

    /// The kernel of one tile: the op over tensors shaped as the tile's blocks (matmul, row-wise
    /// and elementwise ops), or the online-softmax step of decode attention split by tokens.
    func tileKernel(_ action: ExecutionSchedule.Action, cache: ExecutionSchedule.KVCache?) -> (String, String) {
        let op = program.ops[action.op!], j = action.tile!, tiles = action.tiles!
        if action.scheme == "tokens" { return attentionTileKernel(op, cache: cache!, part: action.operandParts![3]!, tile: j, tiles: tiles) }
        var tensors: [ModelProgram.Tensor] = []
        func block(_ tensor: Int, _ part: ValuePart?) -> Int {
            var t = program.tensors[tensor]
            if let part { t.shape = Self.shape(of: part, in: t.shape) }
            tensors.append(t)
            return tensors.count - 1
        }
        var tileOp = op
        tileOp.operands = op.operands.enumerated().map { block($1, action.operandParts![$0]) }
        tileOp.results = op.results.enumerated().map { block($1, action.resultParts![$0]) }
        tileOp.updates = []
        let offset = action.resultParts!.first.flatMap { $0 }.map { $0.dim < 0 ? $0.start : 0 } ?? 0
        let context = TileContext(elementOffset: action.scheme == "rows" || action.scheme == "length" ? offset : 0,
                                  accumulate: action.scheme == "reduction" && j > 0, bias: action.scheme != "reduction" || j == tiles - 1)
        let tileProgram = ModelProgram(model: program.model, dimensions: [:], tensors: tensors, ops: [tileOp])
        return SwiftEmitter(tileProgram: tileProgram, schedule: schedule).kernel(tileOp, cache: nil, tile: context)
    }

    /// The shape of a block as its kernel sees it: the cut dimension shortened, or a flat range as
    /// rows of the tensor's last dimension when it is whole rows.
    static func shape(of part: ValuePart, in shape: [Int]) -> [Int] {
        if part.dim >= 0 {
            var s = shape
            s[part.dim] = part.end - part.start
            return s
        }
        let n = part.end - part.start, width = shape.last ?? 1
        return part.start % width == 0 && n % width == 0 && shape.count > 1 ? [n / width, width] : [n]
    }

    /// Lowers `plan` over `program` and emits it: (schedule, Kernels.swift, Schedule.swift).
    /// `pairedRowsLimit`: see the property (tests lower it to reach the one-row path).
    public static func artifacts(program: ModelProgram, plan: Plan, pairedRowsLimit: Int = defaultPairedRowsLimit) throws(CodegenError)
        -> (schedule: ExecutionSchedule, kernels: String, step: String) {
        let schedule = try ScheduleLowering.lower(program: program, plan: plan)
        var emitter = try SwiftEmitter(program: program, schedule: schedule)
        emitter.pairedRowsLimit = pairedRowsLimit
        let (kernels, step) = emitter.emit()
        return (schedule, kernels, step)
    }

    /// Kernels.swift and Schedule.swift.
    public func emit() -> (kernels: String, schedule: String) {
        var kernels = ""
        var bodies: [String: String] = [:]
        var calls: [String] = []
        var usedTiers = Set<Int>()
        let cacheOf = Dictionary(schedule.kv.enumerated().map { ($1.op, $0) }, uniquingKeysWith: { a, _ in a })
        func pointer(_ l: ExecutionSchedule.Location) -> String {
            usedTiers.insert(l.tier)
            return "t\(l.tier) + \(l.offset)"
        }
        // A kernel is observed after the copies that scatter its staged results (the next
        // non-`block` action), so an observer reads what the step holds.
        var observed: Int?
        for (index, action) in schedule.actions.enumerated() {
            if action.kind != "block", let k = observed {
                calls.append("    observe?(context, \(k))")
                observed = nil
            }
            switch action.kind {
            case "copy":
                calls.append("    move(\(pointer(action.from!)), \(pointer(action.to!)), \(action.bytes!), links, \(action.link!))")
            case "gather":
                let rows = action.bytes! / action.rowBytes!
                // A table stored interleaved (its bindings' layout) is gathered row by row back
                // into ggml's row-major blocks, which the lookup decodes.
                let homes = action.parts.map { $0.map(\.location) } ?? [action.from!]
                let layout = schedule.weights.first { homes.contains($0.location) }?.layout.flatMap(WeightLayout.init(rawValue:))
                let blockBytes = layout.map { ", blockBytes: \($0.format.blockBytes)" } ?? ""
                if let parts = action.parts {
                    let starts = parts.map { "\($0.part!.start)" }.joined(separator: ", ")
                    let bases = parts.map { pointer($0.location) }.joined(separator: ", ")
                    calls.append("    gatherParts([\(starts)], [\(bases)], \(pointer(action.to!)), f(\(pointer(action.ids!))), \(rows), \(action.rowBytes!), links, \(action.link!)\(blockBytes))")
                } else {
                    calls.append("    gather(\(pointer(action.from!)), \(pointer(action.to!)), f(\(pointer(action.ids!))), \(rows), \(action.rowBytes!), links, \(action.link!)\(blockBytes))")
                }
            case "block":
                calls.append("    block(\(pointer(action.from!)), \(pointer(action.to!)), \(action.bytes!), \(action.rows!), \(action.fromStride!), \(action.toStride!))")
            default:
                let op = program.ops[action.op!]
                let cache = cacheOf[action.op!].map { schedule.kv[$0] }
                let (signature, body) = action.tiles == nil ? kernel(op, cache: cache) : tileKernel(action, cache: cache)
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
                observed = index
            }
        }
        if let k = observed { calls.append("    observe?(context, \(k))") }
        let quantisedDots = Self.usesQuantisedDots(kernels)
        kernels = Self.header + "import Foundation\nimport Synchronization\n" + Self.intrinsicsImport + Self.prefetchImport + "\n" + Self.helpers + Self.elementwiseHelpers
            + (quantisedDots ? Self.quantisedDotHelpers : "") + (kernels.contains("dotQ4Group16(") ? Self.q4GroupKernel : "")
            + (kernels.contains("dotQ8Group16(") ? Self.q8GroupKernel : "")
            + Self.attentionHelpers(for: kernels) + kernels
        var step = Self.header
        step += """
        @inline(__always)
        func f(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Float> { p.assumingMemoryBound(to: Float.self) }

        /// A planned transfer: a real copy, counted on its link. From 16 KiB on it is split over
        /// the threads in contiguous parts, as the kernel after it splits its rows: each core
        /// then finds the weight rows it multiplies in its own cache.
        @inline(__always)
        func move(_ from: UnsafeMutableRawPointer, _ to: UnsafeMutableRawPointer, _ bytes: Int, _ links: UnsafeMutablePointer<Int>, _ link: Int) {
            if bytes >= 1 << 14 && kvplanThreads > 1 {
                let lines = bytes &>> 6
                parallelRows(lines, work: Int.max) { lo, hi in
                    let end = hi == lines ? bytes : hi &<< 6
                    (to + lo &<< 6).copyMemory(from: from + lo &<< 6, byteCount: end &- lo &<< 6)
                }
            } else {
                to.copyMemory(from: from, byteCount: bytes)
            }
            links[link] &+= bytes
        }

        /// A planned transfer of the table rows `ids` selects (ids are exact integers in f32); with
        /// `blockBytes`, from a table stored as q4_0x16 / q8_0x16 (blocks of that size).
        @inline(__always)
        func gather(_ table: UnsafeMutableRawPointer, _ to: UnsafeMutableRawPointer, _ ids: UnsafeMutablePointer<Float>, _ rows: Int, _ rowBytes: Int,
                    _ links: UnsafeMutablePointer<Int>, _ link: Int, blockBytes: Int = 0) {
            for r in 0..<rows { copyRow(table, Int(ids[r]), to + r &* rowBytes, rowBytes, blockBytes) }
            links[link] &+= rows &* rowBytes
        }

        /// A planned transfer of table rows from a table kept in row ranges (`starts`: each part's
        /// first row, ascending; `parts`: where each is; with `blockBytes`, each part interleaved).
        @inline(__always)
        func gatherParts(_ starts: [Int], _ parts: [UnsafeMutableRawPointer], _ to: UnsafeMutableRawPointer, _ ids: UnsafeMutablePointer<Float>,
                         _ rows: Int, _ rowBytes: Int, _ links: UnsafeMutablePointer<Int>, _ link: Int, blockBytes: Int = 0) {
            for r in 0..<rows {
                let id = Int(ids[r])
                var p = starts.count &- 1
                while p > 0 && starts[p] > id { p &-= 1 }
                copyRow(parts[p], id &- starts[p], to + r &* rowBytes, rowBytes, blockBytes)
            }
            links[link] &+= rows &* rowBytes
        }

        /// Row `row` of a table into `to` as ggml's row-major bytes: copied whole (`blockBytes` 0),
        /// or picked block by block out of its group of 16 interleaved rows (KVQuant.WeightLayout:
        /// per group and block the 16 fp16 scales, then 64-byte vectors holding each row's bytes
        /// 4i…4i+3 at 4·lane).
        @inline(__always)
        func copyRow(_ table: UnsafeMutableRawPointer, _ row: Int, _ to: UnsafeMutableRawPointer, _ rowBytes: Int, _ blockBytes: Int) {
            guard blockBytes > 0 else { return to.copyMemory(from: table + row &* rowBytes, byteCount: rowBytes) }
            let lane = row & 15, words = (blockBytes &- 2) &>> 2
            var source = UnsafeRawPointer(table + (row &>> 4) &* (rowBytes &* 16)), block = to
            for _ in 0..<rowBytes / blockBytes {
                block.storeBytes(of: source.loadUnaligned(fromByteOffset: 2 &* lane, as: UInt16.self), as: UInt16.self)
                for i in 0..<words {
                    block.storeBytes(of: source.loadUnaligned(fromByteOffset: 32 &+ 64 &* i &+ 4 &* lane, as: UInt32.self), toByteOffset: 2 &+ 4 &* i, as: UInt32.self)
                }
                source += blockBytes &* 16
                block += blockBytes
            }
        }

        /// A copy inside the compute tier assembling a block for a kernel (or scattering one): `rows`
        /// runs of `bytes` bytes at strides `fromStride` and `toStride`; on no link.
        @inline(__always)
        func block(_ from: UnsafeMutableRawPointer, _ to: UnsafeMutableRawPointer, _ bytes: Int, _ rows: Int, _ fromStride: Int, _ toStride: Int) {
            for r in 0..<rows { (to + r &* toStride).copyMemory(from: from + r &* fromStride, byteCount: bytes) }
        }

        /// One decode step: the schedule's copies and kernels in order on the tier arenas (`tiers[i]`
        /// is tier i's arena), `kv[l]` the cache-manager state of attention layer l, `links` the
        /// bytes counted per link; `observe(context, a)` runs after the kernel of action `a` when given.
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
