import Foundation
import KVQuant
import Testing

@Suite("Integer value products: scaled weights rounded to int16 per 32 tokens")
struct ValueProductRoundingTests {
    @Test("applies to 4-bit values of heads with a multiple of 32 channels only")
    func applies() {
        #expect(ValueProductRounding.applies(bits: .b4, headDim: 64))
        #expect(ValueProductRounding.applies(bits: .b4, headDim: 32))
        #expect(!ValueProductRounding.applies(bits: .b4, headDim: 48))
        #expect(!ValueProductRounding.applies(bits: .b2, headDim: 64))
        #expect(!ValueProductRounding.applies(bits: .b8, headDim: 64))
        #expect(!ValueProductRounding.applies(bits: .b16, headDim: 64))
    }

    @Test("the block maximum maps to ±32767, the rest round to nearest even, a zero block to 0")
    func quantise() {
        let (a, q) = ValueProductRounding.quantise(block: [0.5, -0.25, 0, 0.5 / 32767 * 2.5, 0.5 / 32767 * 3.5][...])
        #expect(a == Float(0.5) / 32767)
        #expect(q[0] == 32767 && q[1] == -16384 && q[2] == 0)
        // 2.5 and 3.5 units: to even (up to f32 rounding of the inverse, which these survive).
        #expect(q[3] == 2 && q[4] == 4)
        let zero = ValueProductRounding.quantise(block: [Float](repeating: 0, count: 32)[...])
        #expect(zero.scale == 0 && zero.codes.allSatisfy { $0 == 0 })
    }

    /// Σ_t x_t·code_t exactly (Double) and as the kernel computes it: per block a·Σ q·code.
    static func sums(_ x: [Float], _ codes: [Int]) -> (exact: Double, rounded: Double) {
        var exact = 0.0, rounded = 0.0
        var b = 0
        while b < x.count {
            let end = min(b + ValueProductRounding.blockTokens, x.count)
            let (a, q) = ValueProductRounding.quantise(block: x[b..<end])
            var integer = 0
            for t in b..<end {
                exact += Double(x[t]) * Double(codes[t])
                integer += Int(q[t - b]) * codes[t]
            }
            rounded += Double(a) * Double(integer)
            b = end
        }
        return (exact, rounded)
    }

    @Test("the error stays within errorBound: adversarial half-unit roundings and random softmax weights")
    func bound() {
        // Adversarial: in every block one weight sets the scale and the other 31 sit just below a
        // half unit, all with code 15 — the sum of the rounding errors the bound assumes.
        let blocks = 8, s: Float = 0.4
        var w: [Float] = []
        for _ in 0..<blocks {
            let unit = 1 / Float(32767)
            w.append(1)
            for _ in 1..<32 { w.append(0.4999 * unit) }
        }
        let total = w.reduce(0, +)
        let x = w.map { $0 / total * s }
        let (exact, rounded) = Self.sums(x, [Int](repeating: 15, count: x.count))
        let bound = Double(ValueProductRounding.errorBound(largestScale: s))
        #expect(abs(exact - rounded) <= bound)
        // …and the bound is not slack by orders of magnitude on this case (within 4×).
        #expect(abs(exact - rounded) >= bound / 4, "error \(abs(exact - rounded)) against bound \(bound)")

        // Random: softmax weights over 1000 tokens, scales up to s, random codes.
        var state: UInt64 = 12345
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        for _ in 0..<20 {
            let logits = (0..<1000).map { _ in next() * 12 }
            let m = logits.max()!
            let e = logits.map { exp($0 - m) }
            let sum = e.reduce(0, +)
            let scales = (0..<1000).map { _ in Float(next()) * s }
            let x = (0..<1000).map { Float(e[$0] / sum) * scales[$0] }
            let codes = (0..<1000).map { _ in Int(next() * 16) }
            let (exact, rounded) = Self.sums(x, codes)
            #expect(abs(exact - rounded) <= bound)
        }
    }
}
