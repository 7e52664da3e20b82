import KVQuant
import Testing
@testable import KVRuntime

@Suite("KV profile meter")
struct KVProfileMeterTests {
    @Test("retention: the GQA group's weights are averaged, sorted, and read at ⌈x·n⌉ tokens; short steps are skipped")
    func retention() throws {
        var meter = KVProfileMeter(layers: 1, kvHeads: 1, group: 2, minimumTokens: 32)
        let n = 40
        let peaked = [0.6] + Array(repeating: 0.4 / 39, count: 39), uniform = Array(repeating: 1.0 / 40, count: n)
        meter.observe(layer: 0, weights: [peaked, uniform])
        meter.observe(layer: 0, weights: [Array(repeating: 1.0 / 31, count: 31), Array(repeating: 1.0 / 31, count: 31)])  // < 32 tokens
        #expect(meter.countedSteps == [[1]])
        let curve = try #require(meter.retention[0]?[0])
        let top = (0.6 + 0.025) / 2, rest = (0.4 / 39 + 0.025) / 2
        func at(_ x: Double) -> Double { curve.first { $0[0] == x }![1] }
        #expect(abs(at(0) - 0) < 1e-9 && abs(at(1) - 1) < 1e-9)
        #expect(abs(at(0.01) - top) < 1e-6)              // ⌈0.4⌉ = 1 token
        #expect(abs(at(0.1) - (top + 3 * rest)) < 1e-6)  // 4 tokens
        #expect(abs(at(0.5) - (top + 19 * rest)) < 1e-6) // 20 tokens
        #expect(zip(curve, curve.dropFirst()).allSatisfy { $0[1] <= $1[1] })
    }

    @Test("quantisation error: zero for constant groups, ≈ the uniform-noise value at 4 bits, growing as bits fall")
    func quantisationError() throws {
        var constant = KVProfileMeter(layers: 1, kvHeads: 1, group: 1)
        let c = 64, tokens = 70  // 2 whole groups of 32 tokens are measured, 6 tokens left out
        constant.observeCache(layer: 0, keys: Array(repeating: 0.5, count: tokens * c), values: Array(repeating: -0.25, count: tokens * c), tokens: tokens, channels: c)
        let exact = try #require(constant.errors[0])
        #expect(exact.keys.values.allSatisfy { $0 == 0 } && exact.values.values.allSatisfy { $0 == 0 })

        var noise = KVProfileMeter(layers: 1, kvHeads: 1, group: 1)
        var state: UInt64 = 5
        let x = (0..<tokens * c).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 23) - 1  // uniform in [-1, 1)
        }
        noise.observeCache(layer: 0, keys: x, values: x.reversed(), tokens: tokens, channels: c)
        let e = try #require(noise.errors[0])
        // Uniform data, step = range / 15 at 4 bits: rms error step/√12 over rms 1/√3 ≈ 0.067 (a group's range is a bit under 2).
        #expect(e.keys["4"]! > 0.055 && e.keys["4"]! < 0.070, "\(e.keys)")
        #expect(e.values["4"]! > 0.055 && e.values["4"]! < 0.070, "\(e.values)")
        #expect(e.keys["8"]! < e.keys["4"]! && e.keys["4"]! < e.keys["2"]!)
        #expect(e.values["8"]! < e.values["4"]! && e.values["4"]! < e.values["2"]!)
    }
}
