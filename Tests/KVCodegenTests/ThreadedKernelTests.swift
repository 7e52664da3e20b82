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

    @Test("2 threads equal 1 bit for bit, and the reference within 1e-3", arguments: [WeightFormat.f32, .q4_0, .q8_0])
    func splitRowsAreBitIdentical(_ format: WeightFormat) throws {
        let (rows, k) = (515, 1024)  // 527,360 multiply-adds: just over the threshold; odd rows split 257/258
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
        let schedule = ExecutionSchedule(model: "t", target: "t", arenas: [.init(name: "arena", bytes: end)], links: [], linkBytes: [],
                                         weights: [], inputs: [], outputs: [], kv: [],
                                         actions: [.kernel(slot: 1, op: 0, operands: [at(0), at(1)], results: [at(2)])])
        let program = ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [op])
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        #expect(kernels.contains("parallelRows(\(format == .f32 ? rows : (rows + 1) / 2)"))
        let library = try KernelLibrary(kernels: kernels, schedule: step)

        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: end, alignment: 64)
        defer { arena.deallocate() }
        arena.initializeMemory(as: UInt8.self, repeating: 0)
        let x = PackedAttentionKernelTests.noise(k, seed: 5)
        x.withUnsafeBytes { arena.baseAddress!.advanced(by: offsets[0]).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var decoded: [[Float]] = []
        for r in 0..<rows {
            let row = PackedAttentionKernelTests.noise(k, seed: UInt64(100 + r))
            let encoded = format.encode(row)!
            encoded.withUnsafeBytes { arena.baseAddress!.advanced(by: offsets[1] + r * rowBytes).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            decoded.append(encoded.withUnsafeBytes { format.decode($0, count: k) })
        }
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
