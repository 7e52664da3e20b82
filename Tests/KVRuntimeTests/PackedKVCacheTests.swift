import Foundation
import KVArtifact
import KVQuant
import KVRuntime
import Testing

@Suite("Packed KV cache: exact bytes, scores, precision")
struct PackedKVCacheTests {
    static func layout(sinks: Int = 4, window: Int = 32, high: Int, keyBits: Int, valueBits: Int, low: Int, lowBits: Int) -> KVLayerLayout {
        KVLayerLayout(layer: 0, sinkTokens: sinks, windowTokens: window, highTokens: high, keyBitsHigh: keyBits, valueBitsHigh: valueBits,
                      lowTokens: low, lowBits: lowBits, bytes: 0, fidelity: 0)
    }

    /// One decode step as the runtime does it: attend over the cache and the new token, then append it.
    static func decode(_ cache: PackedKVCache, q: [Float], key: [Float], value: [Float], heads: Int, kvHeads: Int, scale: Double) -> [Float] {
        let (out, score) = cache.attend(q, key: key, value: value, heads: heads, kvHeads: kvHeads, scale: scale)
        cache.append(key: key, value: value, score: score)
        return out
    }

    /// Deterministic values in [-1, 1).
    static func noise(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
    }

    @Test("bytes held equal the layout formula (Docs/kv-layout.md) for every precision mix, before and after filling", arguments: [
        (100, 8, 4, 120, 2), (64, 4, 2, 0, 0), (10, 16, 16, 50, 4), (0, 16, 16, 0, 0), (37, 2, 8, 11, 2),
    ])
    func exactBytes(high: Int, keyBits: Int, valueBits: Int, low: Int, lowBits: Int) {
        let c = 64
        let l = Self.layout(high: high, keyBits: keyBits, valueBits: valueBits, low: low, lowBits: lowBits)
        func seg(_ kind: KVSegmentLayout.Kind, _ n: Int, _ b: Int) -> Int {
            n > 0 ? KVSegmentLayout(kind: kind, tokens: n, channels: c, bits: KVBits(rawValue: b)!).bytes : 0
        }
        let expected = 2 * (36 * c * 2) + seg(.keys, high, keyBits) + seg(.values, high, valueBits)
            + (lowBits > 0 ? seg(.keys, low, lowBits) + seg(.values, low, lowBits) : 0)
        let cache = PackedKVCache(layout: l, channels: c)
        #expect(cache.bytes == expected)
        for t in 0..<(36 + high + low) {
            _ = Self.decode(cache, q: Self.noise(2 * 32, seed: UInt64(t) + 7), key: Self.noise(c, seed: UInt64(t)),
                            value: Self.noise(c, seed: UInt64(t) + 999), heads: 2, kvHeads: 2, scale: 0.2)
        }
        #expect(cache.bytes == expected)
        #expect(cache.tokens == 36 + high + (lowBits > 0 ? low : 0))
        #expect(cache.evicted == (lowBits > 0 ? 0 : low))
    }

    @Test("fp16 everywhere: attention equals the f32 reference within fp16 rounding over 120 tokens (GQA)")
    func fp16MatchesReference() {
        let (heads, kvHeads, d) = (4, 2, 16)
        let c = kvHeads * d
        let cache = PackedKVCache(layout: Self.layout(high: 90, keyBits: 16, valueBits: 16, low: 0, lowBits: 0), channels: c)
        var keys: [[Float]] = [], values: [[Float]] = []
        for t in 0..<120 {
            keys.append(Self.noise(c, seed: UInt64(3 * t + 1)))
            values.append(Self.noise(c, seed: UInt64(3 * t + 2)))
            let q = Self.noise(heads * d, seed: UInt64(3 * t + 3))
            let out = Self.decode(cache, q: q, key: keys[t], value: values[t], heads: heads, kvHeads: kvHeads, scale: 0.25)
            // Reference: every token so far, f32.
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                let s = keys.map { k in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[g * d + $1]) } * 0.25 }
                let m = s.max()!
                let e = s.map { exp($0 - m) }
                for i in 0..<d {
                    let r = zip(e, values).reduce(0.0) { $0 + $1.0 * Double($1.1[g * d + i]) } / e.reduce(0, +)
                    #expect(abs(Double(out[h * d + i]) - r) < 2e-3, "t \(t) h \(h) i \(i)")
                }
            }
        }
        #expect(cache.tokens == 120 && cache.evicted == 0)
    }

    @Test("eviction keeps the most attended token and drops the least")
    func scoresDecide() {
        let c = 8
        // 1 sink, window 2, 2 high slots, the rest evicted.
        let cache = PackedKVCache(layout: Self.layout(sinks: 1, window: 2, high: 2, keyBits: 16, valueBits: 16, low: 30, lowBits: 0), channels: c)
        var q = [Float](repeating: 0, count: c)
        q[0] = 1
        for t in 0..<20 {
            var key = [Float](repeating: 0, count: c)
            key[t == 3 ? 0 : 1] = t == 3 ? 8 : 1  // token 3 alone matches the query
            _ = Self.decode(cache, q: q, key: key, value: Self.noise(c, seed: UInt64(t)), heads: 1, kvHeads: 1, scale: 1)
        }
        let held = cache.heldTokens
        #expect(held.contains(0) && held.contains(3), "\(held)")             // the sink and the heavy hitter
        #expect(held.contains(19) && held.count == 5, "\(held)")             // the newest token is in the window
        #expect(cache.evicted == 15)
    }

    /// Mean |packed − f32 reference| of attention outputs over 80 tokens with every token kept in the high segment at `bits`.
    static func meanError(bits: Int) -> Double {
        let (heads, d) = (2, 32)
        let cache = PackedKVCache(layout: layout(sinks: 0, window: 0, high: 80, keyBits: bits, valueBits: bits, low: 0, lowBits: 0), channels: heads * d)
        var keys: [[Float]] = [], values: [[Float]] = []
        var total = 0.0, n = 0
        for t in 0..<80 {
            keys.append(noise(heads * d, seed: UInt64(5 * t + 1)))
            values.append(noise(heads * d, seed: UInt64(5 * t + 2)))
            let q = noise(heads * d, seed: UInt64(5 * t + 3))
            let out = decode(cache, q: q, key: keys[t], value: values[t], heads: heads, kvHeads: heads, scale: 0.3)
            for h in 0..<heads {
                let s = keys.map { k in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[h * d + $1]) } * 0.3 }
                let e = s.map { exp($0 - s.max()!) }
                for i in 0..<d {
                    let r = zip(e, values).reduce(0.0) { $0 + $1.0 * Double($1.1[h * d + i]) } / e.reduce(0, +)
                    total += abs(Double(out[h * d + i]) - r)
                    n += 1
                }
            }
        }
        return total / Double(n)
    }

    @Test("quantised segments: error grows as bits shrink (8 < 4 < 2), 8 bits within 0.005 of the reference on average")
    func precisionOrdering() {
        let (e8, e4, e2) = (Self.meanError(bits: 8), Self.meanError(bits: 4), Self.meanError(bits: 2))
        #expect(e8 < 0.005 && e8 < e4 && e4 < e2, "\(e8) \(e4) \(e2)")
    }
}
