import Foundation
import KVArtifact
import KVCodegen
import KVQuant
import KVRuntime
import Testing

/// The generated decode-attention kernel over a packed cache against the cache manager's scalar
/// attention (PackedKVCache.attend: every held token dequantised, softmax in Double), on layouts
/// chosen to reach every path: GQA groups of 1, 3 and 5 (blocked kernels for 1–4 heads), 2-, 4-
/// and 8-bit segments, partial key groups, empty slots, per-head selection after eviction, and
/// head_dim 48 (value groups straddling heads: the scalar value path).
@Suite("Generated packed-KV attention vs the scalar reference")
struct PackedAttentionKernelTests {
    /// |generated − reference| allowed on outputs and new-token weights: f32 sums in another
    /// order than the reference's Double ones (measured ≤ 3e-7 on these cases). Outputs over 4-bit
    /// values may differ by the 16-bit value products' bound on top (PackedKVCache.valueRoundingBound).
    static let tolerance: Float = 1e-5

    struct Case: CustomTestStringConvertible, Sendable {
        var heads: Int, kvHeads: Int, d: Int
        var sinks: Int, window: Int, high: Int, keyBits: Int, valueBits: Int, low: Int, lowBits: Int
        var tokens: Int
        /// Compiled without KVPLAN_AVX2: the portable paths (f32 products over the rounded query).
        var portable = false
        /// Compiled with plain AVX2 flags on a CPU that has AVX-VNNI or AVX-512 (vpmaddubsw instead of
        /// vpdpbusd, 8-lane value kernels), and compared bit for bit with the runtime's own flags.
        var plainAVX2 = false
        /// Compiled with the runtime's flags less AVX-512 DQ (block maxima by `vandps` + `vmaxps`, not
        /// `vrangeps`), and compared bit for bit with the runtime's own flags.
        var withoutDQ = false
        /// Threads the KV heads are split over (kvplan_set_threads); large enough cases only split.
        var threads = 1
        var testDescription: String {
            "\(heads)/\(kvHeads) heads d \(d), \(sinks)+\(window) fp16, \(high) at K\(keyBits)V\(valueBits), \(low) at \(lowBits), \(tokens) tokens"
                + (portable ? ", portable" : "") + (plainAVX2 ? ", plain AVX2" : "") + (withoutDQ ? ", without AVX-512 DQ" : "")
                + (threads > 1 ? ", \(threads) threads" : "")
        }
    }

    static let cases: [Case] = baseCases + (KernelLibrary.hasAVXVNNI || KernelLibrary.hasAVX512 ? [
        Case(heads: 8, kvHeads: 2, d: 64, sinks: 2, window: 6, high: 96, keyBits: 4, valueBits: 4, low: 40, lowBits: 2, tokens: 200, plainAVX2: true),
        Case(heads: 5, kvHeads: 1, d: 32, sinks: 1, window: 3, high: 33, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 60, plainAVX2: true),
    ] : []) + (KernelLibrary.defaultTargetFlags.contains("KVPLAN_AVX512DQ") ? [
        Case(heads: 8, kvHeads: 2, d: 128, sinks: 2, window: 6, high: 77, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 60, withoutDQ: true),
    ] : [])

    /// The runtime's flags without AVX-512 DQ's.
    static var flagsWithoutDQ: [String] {
        var flags = KernelLibrary.defaultTargetFlags
        if let r = flags.firstRange(of: KernelLibrary.avx512DQFlags) { flags.removeSubrange(r) }
        return flags
    }

    static let baseCases: [Case] = [
        Case(heads: 4, kvHeads: 4, d: 32, sinks: 2, window: 8, high: 40, keyBits: 4, valueBits: 4, low: 20, lowBits: 2, tokens: 60),
        Case(heads: 6, kvHeads: 2, d: 32, sinks: 0, window: 0, high: 64, keyBits: 8, valueBits: 4, low: 0, lowBits: 0, tokens: 50),
        Case(heads: 10, kvHeads: 2, d: 32, sinks: 4, window: 4, high: 32, keyBits: 2, valueBits: 2, low: 33, lowBits: 4, tokens: 90),
        Case(heads: 4, kvHeads: 2, d: 48, sinks: 1, window: 3, high: 36, keyBits: 4, valueBits: 8, low: 0, lowBits: 0, tokens: 50),
        // Integer key products (whole 4-bit groups, head_dim a multiple of 32): GQA-4 over two
        // 32-channel blocks, and GQA-5 (one kernel for 4 heads, one for 1), each also portable.
        Case(heads: 8, kvHeads: 2, d: 64, sinks: 2, window: 6, high: 96, keyBits: 4, valueBits: 4, low: 40, lowBits: 2, tokens: 200),
        Case(heads: 8, kvHeads: 2, d: 64, sinks: 2, window: 6, high: 96, keyBits: 4, valueBits: 4, low: 40, lowBits: 2, tokens: 200, portable: true),
        Case(heads: 5, kvHeads: 1, d: 32, sinks: 0, window: 8, high: 64, keyBits: 4, valueBits: 2, low: 0, lowBits: 0, tokens: 90),
        Case(heads: 5, kvHeads: 1, d: 32, sinks: 0, window: 8, high: 64, keyBits: 4, valueBits: 2, low: 0, lowBits: 0, tokens: 90, portable: true),
        // Integer value products with an odd token count (33: the last token pairs with nothing)
        // and a GQA group of 5 (one kernel for 4 heads, one for 1), also portable.
        Case(heads: 5, kvHeads: 1, d: 32, sinks: 1, window: 3, high: 33, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 60),
        Case(heads: 5, kvHeads: 1, d: 32, sinks: 1, window: 3, high: 33, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 60, portable: true),
        // GQA-4 at head_dim 128 over 4-bit values: the token-major value path with AVX-512 VNNI
        // (TokenMajorWeights). The softmax's normalisation folds into the weights when every
        // segment is 4-bit or fp16: one segment over two tiles with empty slots; fp16 next to an
        // odd, partial last block; two 4-bit segments after eviction. A 2-bit segment keeps it
        // unfolded (factors 1, the softmax writes the received attention).
        Case(heads: 8, kvHeads: 2, d: 128, sinks: 0, window: 0, high: 320, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 300),
        Case(heads: 8, kvHeads: 2, d: 128, sinks: 2, window: 6, high: 77, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 60),
        Case(heads: 8, kvHeads: 2, d: 128, sinks: 2, window: 6, high: 300, keyBits: 4, valueBits: 4, low: 45, lowBits: 4, tokens: 400),
        Case(heads: 8, kvHeads: 2, d: 128, sinks: 2, window: 6, high: 96, keyBits: 4, valueBits: 4, low: 40, lowBits: 2, tokens: 200),
        // GQA-8 at head_dim 128: the query prepared per 4 heads (FusedQueryPreparation, twice per
        // key group), the values head-major.
        Case(heads: 16, kvHeads: 2, d: 128, sinks: 1, window: 7, high: 130, keyBits: 4, valueBits: 4, low: 64, lowBits: 2, tokens: 230),
        // Large enough to split: 3 KV heads over 2 threads (one part of 1, one of 2), after eviction.
        Case(heads: 12, kvHeads: 3, d: 64, sinks: 2, window: 14, high: 1600, keyBits: 4, valueBits: 4, low: 432, lowBits: 2, tokens: 2100, threads: 2),
        // The token-major path split too: each part prepares its own tiles' weights.
        Case(heads: 12, kvHeads: 3, d: 128, sinks: 2, window: 14, high: 600, keyBits: 4, valueBits: 4, low: 0, lowBits: 0, tokens: 700, threads: 2),
    ]

    static func noise(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
    }

    @Test("outputs, new-token scores and the attention every slot received match the reference", arguments: cases)
    func matchesReference(_ x: Case) throws {
        let c = x.kvHeads * x.d
        let layout = KVLayerLayout(layer: 0, sinkTokens: x.sinks, windowTokens: x.window, highTokens: x.high, keyBitsHigh: x.keyBits,
                                   valueBitsHigh: x.valueBits, lowTokens: x.low, lowBits: x.lowBits, bytes: 0, fidelity: 0)
        let region = PackedKVCache.regionBytes(layout: layout, channels: c)
        let capacity = x.sinks + x.window + x.high + x.low
        let tensors = [ModelProgram.Tensor(name: "q", kind: "input", dtype: "f32", shape: [1, x.heads * x.d]),
                       ModelProgram.Tensor(name: "k", kind: "input", dtype: "f32", shape: [1, c]),
                       ModelProgram.Tensor(name: "v", kind: "input", dtype: "f32", shape: [1, c]),
                       ModelProgram.Tensor(name: "kc", kind: "cache", dtype: "f32", shape: [1, capacity, x.kvHeads, x.d]),
                       ModelProgram.Tensor(name: "vc", kind: "cache", dtype: "f32", shape: [1, capacity, x.kvHeads, x.d]),
                       ModelProgram.Tensor(name: "y", kind: "output", dtype: "f32", shape: [1, x.heads * x.d]),
                       ModelProgram.Tensor(name: "kn", kind: "activation", dtype: "f32", shape: [1, c]),
                       ModelProgram.Tensor(name: "vn", kind: "activation", dtype: "f32", shape: [1, c])]
        let op = ModelProgram.Op(name: "a", kind: "attention", operands: [0, 1, 2, 3, 4], results: [5], updates: [3, 4],
                                 attributes: ["heads": .int(x.heads), "kv_heads": .int(x.kvHeads)])
        let bytes = [x.heads * x.d * 4, c * 4, c * 4, region.keys, region.values, x.heads * x.d * 4, c * 4, c * 4]
        var offsets: [Int] = [], end = 0
        for b in bytes {
            offsets.append(end)
            end += (b + 63) / 64 * 64
        }
        let at = { (i: Int) in ExecutionSchedule.Location(tier: 0, offset: offsets[i]) }
        let kv = ExecutionSchedule.KVCache(op: 0, keys: at(3), values: at(4), keyBytes: region.keys, valueBytes: region.values, newKeys: at(6),
                                           newValues: at(7), batch: 1, capacity: capacity, channels: c, kvHeads: x.kvHeads, layout: layout)
        let schedule = ExecutionSchedule(model: "t", target: "t", arenas: [.init(name: "arena", bytes: end)], links: [], linkBytes: [],
                                         weights: [], inputs: [], outputs: [], kv: [kv],
                                         actions: [.kernel(slot: 1, op: 0, operands: (0..<5).map(at), results: [at(5), at(6), at(7)])])
        let program = ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [op])
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        if x.keyBits == 4 && x.d % 32 == 0 && x.high >= 32 { #expect(kernels.contains("keyGroupLogitsI8H")) }
        let integerValues = x.d % 32 == 0 && ((x.valueBits == 4 && x.high > 0) || (x.lowBits == 4 && x.low > 0))
        #expect(kernels.contains("valueGroupAccumulateI16H") == integerValues)
        let flags = x.portable ? ["-target-cpu", "haswell"] : x.plainAVX2 ? KernelLibrary.avx2Flags
            : x.withoutDQ ? Self.flagsWithoutDQ : KernelLibrary.defaultTargetFlags
        let library = try KernelLibrary(kernels: kernels, schedule: step, targetFlags: flags)

        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: end, alignment: 64)
        defer { arena.deallocate() }
        arena.initializeMemory(as: UInt8.self, repeating: 0)
        // The cache lives in the arena, as in the runtime; every token gets per-head scores, so
        // the KV heads keep different tokens once the layout is full.
        let cache = PackedKVCache(layout: layout, channels: c, kvHeads: x.kvHeads,
                                  keys: UnsafeMutableRawBufferPointer(rebasing: arena[offsets[3]..<offsets[3] + region.keys]),
                                  values: UnsafeMutableRawBufferPointer(rebasing: arena[offsets[4]..<offsets[4] + region.values]))
        for t in 0..<x.tokens {
            let scores = (0..<x.kvHeads).map { g in Double((t * 7 + g * 13) % 11) }
            cache.append(key: Self.noise(c, seed: UInt64(3 * t + 1)), value: Self.noise(c, seed: UInt64(3 * t + 2)), scores: scores)
        }
        if x.tokens > capacity && x.kvHeads > 1 {
            #expect(cache.heldTokens(head: 0) != cache.heldTokens(head: 1), "the heads should keep different tokens")
        }
        let q = Self.noise(x.heads * x.d, seed: 99), kNew = Self.noise(c, seed: 98), vNew = Self.noise(c, seed: 97)
        for (i, values) in [q, kNew, vNew].enumerated() {
            values.withUnsafeBytes { arena.baseAddress!.advanced(by: offsets[i]).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        let state = UnsafeMutableRawBufferPointer.allocate(byteCount: kv.stateLayout.total, alignment: 64)
        defer { state.deallocate() }
        state.initializeMemory(as: UInt8.self, repeating: 0)
        let occupancy = state.baseAddress!.assumingMemoryBound(to: Int32.self)
        for g in 0..<x.kvHeads {
            for (s, token) in cache.slotTokens(head: g).enumerated() { occupancy[g * kv.slots + s] = Int32(token) }
        }
        let tiers = [arena.baseAddress!], states = [state.baseAddress!]
        var links = [0]
        let run = {
            tiers.withUnsafeBufferPointer { t in states.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
        }
        if x.threads > 1 {
            // Split over threads, every output and score is bit-identical to one thread's.
            library.setThreads(1)
            run()
            let (single, singleState) = (Array(arena[offsets[5]..<offsets[5] + bytes[5]]), Array(state))
            library.setThreads(x.threads)
            run()
            #expect(Array(arena[offsets[5]..<offsets[5] + bytes[5]]) == single, "outputs differ between 1 and \(x.threads) threads")
            #expect(Array(state) == singleState, "scores differ between 1 and \(x.threads) threads")
            library.setThreads(1)
        } else {
            run()
        }
        if x.plainAVX2 || x.withoutDQ {
            // The runtime's flags (AVX-VNNI key products, 16-lane value kernel, `vrangeps`) compute the same numbers.
            let plain = (Array(arena[offsets[5]..<offsets[5] + bytes[5]]), Array(state))
            let wide = try KernelLibrary(kernels: kernels, schedule: step, targetFlags: KernelLibrary.defaultTargetFlags)
            tiers.withUnsafeBufferPointer { t in states.withUnsafeBufferPointer { s in wide.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
            #expect(Array(arena[offsets[5]..<offsets[5] + bytes[5]]) == plain.0, "outputs differ between \(flags) and \(KernelLibrary.defaultTargetFlags)")
            #expect(Array(state) == plain.1, "scores differ between \(flags) and \(KernelLibrary.defaultTargetFlags)")
        }

        let before = (0..<x.kvHeads).map { cache.slotScores(head: $0) }
        let valueBound = cache.valueRoundingBound
        #expect((valueBound > 0) == integerValues)
        let (reference, newScores) = cache.attend(q, key: kNew, value: vNew, heads: x.heads, kvHeads: x.kvHeads, scale: 1 / Double(x.d).squareRoot())
        // The attention each slot received (summed over the group's query heads), which the cache
        // manager adds to the slot's score: the reference's score increments; 0 in empty slots.
        for g in 0..<x.kvHeads {
            let after = cache.slotScores(head: g), occupied = cache.slotTokens(head: g).map { $0 >= 0 }
            let worst = (0..<kv.slots).map { s in
                let generated = state.load(fromByteOffset: kv.stateLayout.received + 4 * (g * kv.slots + s), as: Float.self)
                return occupied[s] ? abs(Double(generated) - (after[s] - before[g][s])) : Double(abs(generated))
            }.max() ?? 0
            #expect(worst <= Double(Self.tolerance), "KV head \(g): received attention off by \(worst)")
        }
        let y = (0..<x.heads * x.d).map { arena.load(fromByteOffset: offsets[5] + 4 * $0, as: Float.self) }
        let worst = zip(y, reference).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= Self.tolerance + valueBound, "max |Δ| \(worst) (16-bit value products' bound \(valueBound))")
        for g in 0..<x.kvHeads {
            let generated = state.load(fromByteOffset: kv.stateLayout.newScore + 4 * g, as: Float.self)
            #expect(abs(generated - Float(newScores[g])) <= Self.tolerance, "KV head \(g): new-token weight \(generated) vs \(newScores[g])")
        }
    }
}
