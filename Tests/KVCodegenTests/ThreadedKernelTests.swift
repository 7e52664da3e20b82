import Foundation
import KVArtifact
import KVCodegen
import KVQuant
import KVRuntime
import Testing

/// Linear layers large enough to be split over threads (≥ 2^19 multiply-adds, parallelRows): the
/// rows of each part are the same dot products — q8_0/q4_0 weights ≤ 1 MiB split whole pairs of
/// rows (a row summed alone or in a pair differs in the last bit) — so two threads give
/// bit-identical outputs to one, and both equal the dequantised weights times the (quantised)
/// activation within tolerance.
@Suite("Generated linear layers split over threads")
struct ThreadedKernelTests {
    /// |generated − Σ w·x in Double| allowed: f32 sums over 1024 terms in another order.
    static let tolerance: Float = 1e-3

    /// Row-major weights, and q4_0 / q8_0 stored as q4_0x16 / q8_0x16 (WeightLayout): 528 rows
    /// are 33 groups of 16, split 16/17 groups between the threads.
    @Test("2 threads equal 1 bit for bit, and the reference within 1e-3",
          arguments: [(WeightFormat.f32, nil), (.q4_0, nil), (.q8_0, nil), (.q4_0, WeightLayout.q4_0x16), (.q8_0, .q8_0x16)])
    func splitRowsAreBitIdentical(_ format: WeightFormat, _ layout: WeightLayout?) throws {
        // 527,360 multiply-adds: just over the threshold; odd rows split 257/258
        let (rows, k) = (layout == nil ? 515 : 528, 1024)
        let rowBytes = format.bytes(count: k)
        let tensors = [ModelProgram.Tensor(name: "x", kind: "input", dtype: "f32", shape: [1, k]),
                       ModelProgram.Tensor(name: "w", kind: "weight", dtype: format.rawValue, shape: [rows, k]),
                       ModelProgram.Tensor(name: "y", kind: "output", dtype: "f32", shape: [1, rows])]
        let op = ModelProgram.Op(name: "y", kind: "matmul", operands: [0, 1], results: [2], updates: [], attributes: ["transpose_b": .bool(true)])
        let bytes = [k * 4, rows * rowBytes, rows * 4]
        var offsets: [Int] = [], end = 0
        for b in bytes {
            offsets.append(end)
            end += (b + 63) / 64 * 64
        }
        let at = { (i: Int) in ExecutionSchedule.Location(tier: 0, offset: offsets[i]) }
        let weights = [ExecutionSchedule.Binding(tensor: "w", dtype: format.rawValue, location: at(1), bytes: bytes[1], layout: layout?.rawValue)]
        let schedule = ExecutionSchedule(model: "t", target: "t", arenas: [.init(name: "arena", bytes: end)], links: [], linkBytes: [],
                                         weights: weights, inputs: [], outputs: [], kv: [],
                                         actions: [.kernel(slot: 1, op: 0, operands: [at(0), at(1)], results: [at(2)])])
        let program = ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [op])
        try schedule.validate(against: program)
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        #expect(kernels.contains("parallelRows(\(layout != nil ? rows / 16 : format == .f32 ? rows : (rows + 1) / 2)"))
        #expect(kernels.contains("Group16(q,") == (layout != nil))
        let library = try KernelLibrary(kernels: kernels, schedule: step)

        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: end, alignment: 64)
        defer { arena.deallocate() }
        arena.initializeMemory(as: UInt8.self, repeating: 0)
        let x = PackedAttentionKernelTests.noise(k, seed: 5)
        x.withUnsafeBytes { arena.baseAddress!.advanced(by: offsets[0]).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var decoded: [[Float]] = [], stored: [UInt8] = []
        for r in 0..<rows {
            let row = PackedAttentionKernelTests.noise(k, seed: UInt64(100 + r))
            let encoded = format.encode(row)!
            stored += encoded
            decoded.append(encoded.withUnsafeBytes { format.decode($0, count: k) })
        }
        if let layout { stored = layout.arrange(stored, rows: rows, columns: k) }
        stored.withUnsafeBytes { arena.baseAddress!.advanced(by: offsets[1]).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let tiers = [arena.baseAddress!], states = [arena.baseAddress!]
        var links = [0]
        let output = { () -> [Float] in
            tiers.withUnsafeBufferPointer { t in states.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
            return (0..<rows).map { arena.load(fromByteOffset: offsets[2] + 4 * $0, as: Float.self) }
        }
        library.setThreads(1)
        let single = output()
        library.setThreads(2)
        let split = output()
        library.setThreads(1)
        #expect(split.map(\.bitPattern) == single.map(\.bitPattern), "outputs differ between 1 and 2 threads")
        // Block formats multiply the activation rounded to int8 per 32 (ActivationQuantisation).
        let xq = ActivationQuantisation.applies(to: format) ? ActivationQuantisation.roundTrip(x[...]) : x
        let worst = (0..<rows).map { r in abs(single[r] - Float(zip(decoded[r], xq).reduce(0.0) { $0 + Double($1.0) * Double($1.1) })) }.max() ?? 0
        #expect(worst <= Self.tolerance, "max |Δ| \(worst)")
    }
}

/// The worker pool (KVCodegen's WorkerPool.swift) under changing thread counts and concurrent
/// callers, on the committed tiny-llama cpu artifact: its planned weight transfers are split
/// over the threads with its GEMVs and attention, so every path of the pool runs.
@Suite("Worker pool: thread counts and concurrent steps")
struct WorkerPoolTests {
    static let tokens = [72, 101, 108, 108, 111, 33, 10, 32]

    /// Logits of each step of `tokens` through a fresh executor, its library set to `threads[i]`
    /// before step i.
    static func logits(threads: [Int]) throws -> [[UInt32]] {
        let program = try GeneratedKernelTests.load(ModelProgram.self, "cpu", "program.json")
        let schedule = try GeneratedKernelTests.load(ExecutionSchedule.self, "cpu", "schedule.json")
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: try GeneratedKernelTests.text("cpu", "Kernels.swift"),
                                            step: try GeneratedKernelTests.text("cpu", "Schedule.swift"),
                                            weights: SeededWeights.make(program, seed: 11), threads: threads[0])
        var out: [[UInt32]] = []
        for (step, token) in tokens.enumerated() {
            executor.library!.setThreads(threads[step % threads.count])
            try executor.setInput("tokens", [Float(token)])
            try executor.setInput("pos", [Float(step)])
            try executor.step()
            out.append(try executor.output("logits").map(\.bitPattern))
        }
        #expect(executor.linkBytes == schedule.linkBytes.map { $0 * tokens.count })
        return out
    }

    @Test("threads changed between steps (1, 2, 3, back to 1) and two executors stepping at once: one thread's logits, bit for bit")
    func sameLogits() async throws {
        let single = try Self.logits(threads: [1])
        #expect(try Self.logits(threads: [2]) == single)
        #expect(try Self.logits(threads: [2, 3, 1, 2]) == single)
        // Two executors of the same library (one dlopen handle, one pool) stepping at once: one
        // of them finds the pool taken and runs its parts itself.
        async let a = Task.detached { try Self.logits(threads: [2]) }.value
        async let b = Task.detached { try Self.logits(threads: [2]) }.value
        let (x, y) = try await (a, b)
        #expect(x == single && y == single)
    }
}

extension WorkerPoolTests {
    /// dlopen gives two instances of the same sources one handle, so one thread count and one
    /// pool; releasing one instance must not stop the pool the other still uses.
    @Test("two instances of the same sources share one thread count, and releasing one leaves the other's")
    func instancesShareThreads() throws {
        // Sources no other test compiles: a 13-value add.
        let tensors = [ModelProgram.Tensor(name: "a", kind: "input", dtype: "f32", shape: [13]),
                       ModelProgram.Tensor(name: "b", kind: "input", dtype: "f32", shape: [13]),
                       ModelProgram.Tensor(name: "c", kind: "output", dtype: "f32", shape: [13])]
        let program = ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [
            ModelProgram.Op(name: "c", kind: "add", operands: [0, 1], results: [2], updates: [], attributes: [:]),
        ])
        let at = { (offset: Int) in ExecutionSchedule.Location(tier: 0, offset: offset) }
        let schedule = ExecutionSchedule(model: "t", target: "t", arenas: [.init(name: "scratchpad", bytes: 4096)], links: [], linkBytes: [],
                                         weights: [], inputs: [], outputs: [], kv: [], actions: [.kernel(slot: 0, op: 0, operands: [at(0), at(64)], results: [at(128)])])
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        var first: KernelLibrary? = try KernelLibrary(kernels: kernels, schedule: step)
        let second = try KernelLibrary(kernels: kernels, schedule: step)
        #expect(first!.path == second.path)
        second.setThreads(2)
        #expect(first!.threadCount == 2 && second.threadCount == 2)
        first = nil
        #expect(second.threadCount == 2, "releasing one instance stopped the pool of the other")
        second.setThreads(1)
        #expect(second.threadCount == 1)
    }

    @Test("a planned transfer split over 2 and 3 threads copies every byte, a tail short of 64 bytes too, and counts it once",
          arguments: [18_720, 16_384, 65_537])
    func splitTransfer(bytes: Int) throws {
        // One add of two 8-value vectors in tier 0, after a transfer of `bytes` from tier 1.
        let tensors = [ModelProgram.Tensor(name: "a", kind: "input", dtype: "f32", shape: [8]),
                       ModelProgram.Tensor(name: "b", kind: "input", dtype: "f32", shape: [8]),
                       ModelProgram.Tensor(name: "c", kind: "output", dtype: "f32", shape: [8])]
        let program = ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [
            ModelProgram.Op(name: "c", kind: "add", operands: [0, 1], results: [2], updates: [], attributes: [:]),
        ])
        let arena = (bytes + 4095) / 4096 * 4096 + 4096
        let at = { (tier: Int, offset: Int) in ExecutionSchedule.Location(tier: tier, offset: offset) }
        let schedule = ExecutionSchedule(model: "t", target: "t", arenas: [.init(name: "scratchpad", bytes: arena), .init(name: "dram", bytes: arena)],
                                         links: ["dram->scratchpad"], linkBytes: [bytes], weights: [], inputs: [], outputs: [], kv: [],
                                         actions: [.copy(slot: 0, value: 0, link: 0, bytes: bytes, from: at(1, 0), to: at(0, 64)),
                                                   .kernel(slot: 1, op: 0, operands: [at(0, 0), at(0, 32)], results: [at(0, 64)])])
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        let library = try KernelLibrary(kernels: kernels, schedule: step)
        let t0 = UnsafeMutableRawBufferPointer.allocate(byteCount: arena, alignment: 4096), t1 = UnsafeMutableRawBufferPointer.allocate(byteCount: arena, alignment: 4096)
        defer { t0.deallocate(); t1.deallocate() }
        let source = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        for threads in [1, 2, 3] {
            t0.initializeMemory(as: UInt8.self, repeating: 0)
            t1.initializeMemory(as: UInt8.self, repeating: 0)
            source.withUnsafeBytes { t1.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
            library.setThreads(threads)
            let tiers = [t0.baseAddress!, t1.baseAddress!], states = [t0.baseAddress!]
            var links = [0]
            tiers.withUnsafeBufferPointer { t in states.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
            // The add wrote its 32 bytes over the start of the copy (a + b = 0): the rest is the copy's.
            let mismatch = (32..<bytes).first { t0[64 + $0] != source[$0] }
            #expect(mismatch == nil, "\(threads) threads: byte \(mismatch ?? 0) of the transfer differs")
            #expect(t0[64 + bytes] == 0, "\(threads) threads: a byte past the transfer was written")
            #expect(links == [bytes])
        }
        library.setThreads(1)
    }
}
