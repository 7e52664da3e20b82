@testable import KVRuntime
import Testing

/// The reference interpreter's matmul is fast only by order-preserving means: every output must be
/// the plain loop's Double sum, bit for bit.
@Suite("Reference matmul: bit-identical to the plain loop")
struct InterpreterMatmulTests {
    static func plain(_ a: [Float], rows: Int, k: Int, _ b: [Float], n: Int, transposeB: Bool, bias: [Float]?) -> [Float] {
        var out = [Float](repeating: 0, count: rows * n)
        for r in 0..<rows {
            for j in 0..<n {
                var acc = 0.0
                for t in 0..<k { acc += Double(a[r * k + t]) * Double(transposeB ? b[j * k + t] : b[t * n + j]) }
                out[r * n + j] = Float(acc) + (bias?[j] ?? 0)
            }
        }
        return out
    }

    @Test("[rows, k] × [k, n] and × [n, k]ᵀ, n not a multiple of 4, with and without bias", arguments: [(1, 37, 13), (3, 64, 8), (2, 5, 1)])
    func bitIdentical(_ shape: (Int, Int, Int)) {
        let (rows, k, n) = shape
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 337 }
        let a = (0..<rows * k).map { _ in next() }, b = (0..<k * n).map { _ in next() }, bias = (0..<n).map { _ in next() }
        for transposeB in [false, true] {
            for withBias in [false, true] {
                let fast = ReferenceInterpreter.matmul(a, [rows, k], b, transposeB ? [n, k] : [k, n], transposeB: transposeB,
                                                       bias: withBias ? bias : nil, outShape: [rows, n])
                let slow = Self.plain(a, rows: rows, k: k, b, n: n, transposeB: transposeB, bias: withBias ? bias : nil)
                #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern), "transposeB \(transposeB), bias \(withBias)")
            }
        }
        // A transposed weight stored [k, n] (what the interpreter keeps) gives the same bits as [n, k]ᵀ.
        var stored = [Float](repeating: 0, count: k * n)
        for j in 0..<n { for t in 0..<k { stored[t * n + j] = b[j * k + t] } }
        let viaStored = ReferenceInterpreter.matmul(a, [rows, k], stored, [k, n], transposeB: false, bias: nil, outShape: [rows, n])
        #expect(viaStored.map(\.bitPattern) == Self.plain(a, rows: rows, k: k, b, n: n, transposeB: true, bias: nil).map(\.bitPattern))
    }
}
