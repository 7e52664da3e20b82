import Foundation
import KVArtifact
import KVQuant
@testable import KVRuntime
import Testing

@Suite("Packed KV cache: exact bytes, scores, precision")
struct PackedKVCacheTests {
    static func layout(sinks: Int = 4, window: Int = 32, high: Int, keyBits: Int, valueBits: Int, low: Int, lowBits: Int) -> KVLayerLayout {
        KVLayerLayout(layer: 0, sinkTokens: sinks, windowTokens: window, highTokens: high, keyBitsHigh: keyBits, valueBitsHigh: valueBits,
                      lowTokens: low, lowBits: lowBits, bytes: 0, fidelity: 0)
    }

    /// One decode step as the runtime does it: attend over the cache and the new token, then append it.
    static func decode(_ cache: PackedKVCache, q: [Float], key: [Float], value: [Float], heads: Int, kvHeads: Int, scale: Double) -> [Float] {
        let (out, scores) = cache.attend(q, key: key, value: value, heads: heads, kvHeads: kvHeads, scale: scale)
        cache.append(key: key, value: value, scores: scores)
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
        let cache = PackedKVCache(layout: l, channels: c, kvHeads: 2)
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
        let cache = PackedKVCache(layout: Self.layout(high: 90, keyBits: 16, valueBits: 16, low: 0, lowBits: 0), channels: c, kvHeads: kvHeads)
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
        let held = cache.heldTokens(head: 0)
        #expect(held.contains(0) && held.contains(3), "\(held)")             // the sink and the heavy hitter
        #expect(held.contains(19) && held.count == 5, "\(held)")             // the newest token is in the window
        #expect(cache.evicted == 15)
    }

    @Test("equal scores: the newer tokens stay, in a segment filled one token and one window at a time")
    func tiesKeepNewer() {
        let c = 8
        // 1 sink, window 2, 3 high slots, no low segment; every token's score is 0.
        let cache = PackedKVCache(layout: Self.layout(sinks: 1, window: 2, high: 3, keyBits: 16, valueBits: 16, low: 0, lowBits: 0), channels: c)
        for t in 0..<20 { cache.append(key: Self.noise(c, seed: UInt64(t)), value: Self.noise(c, seed: UInt64(100 + t)), scores: [0]) }
        #expect(cache.heldTokens(head: 0) == [0, 15, 16, 17, 18, 19])
        #expect(cache.evicted == 14)
    }

    @Test("selection is per KV head: each head keeps the token its own queries attend to", arguments: [(16, 2), (8, 4)])
    func perHeadSelection(keyBits: Int, lowBits: Int) {
        // 2 KV heads of 32 channels (whole value groups) and 2 query heads each; 1 sink, window 2,
        // 2 high slots and — with lowBits 4 — 2 low slots; 30 tokens, so most are evicted.
        let (heads, kvHeads, d) = (4, 2, 32)
        let c = kvHeads * d
        let layout = Self.layout(sinks: 1, window: 2, high: 2, keyBits: keyBits, valueBits: keyBits, low: 2, lowBits: lowBits)
        let cache = PackedKVCache(layout: layout, channels: c, kvHeads: kvHeads)
        // Head 0's queries look along channel 0, head 1's along channel 1 of their own KV head;
        // token 5 alone matches head 0, token 9 alone head 1.
        var q = [Float](repeating: 0, count: heads * d)
        for h in 0..<heads { q[h * d + h / 2] = 1 }
        for t in 0..<30 {
            var key = [Float](repeating: 0.1, count: c)
            if t == 5 { key[0] = 6 }
            if t == 9 { key[d + 1] = 6 }
            _ = Self.decode(cache, q: q, key: key, value: Self.noise(c, seed: UInt64(t)), heads: heads, kvHeads: kvHeads, scale: 1)
        }
        let (held0, held1) = (cache.heldTokens(head: 0), cache.heldTokens(head: 1))
        #expect(held0.contains(5) && !held0.contains(9), "\(held0)")
        #expect(held1.contains(9) && !held1.contains(5), "\(held1)")
        #expect(held0.count == held1.count && cache.tokens == held0.count)
        #expect(cache.evicted == 30 - held0.count)
        // The bytes are the layout's regardless of which tokens each head keeps.
        #expect(cache.bytes == PackedKVCache.regionBytes(layout: layout, channels: c).keys + PackedKVCache.regionBytes(layout: layout, channels: c).values)
    }

    @Test("a head's writes leave the other head's bytes alone, also when value groups span heads (head_dim 48)")
    func headWritesAreDisjoint() {
        // 2 KV heads of 48 channels: value groups of 32 straddle the heads at channels 32..<64.
        let (kvHeads, d) = (2, 48)
        let c = kvHeads * d
        let cache = PackedKVCache(layout: Self.layout(sinks: 0, window: 0, high: 40, keyBits: 4, valueBits: 4, low: 0, lowBits: 0), channels: c, kvHeads: kvHeads)
        var keys: [[Float]] = [], values: [[Float]] = []
        for t in 0..<40 {
            keys.append(Self.noise(c, seed: UInt64(2 * t + 11)))
            values.append(Self.noise(c, seed: UInt64(2 * t + 12)))
            cache.append(key: keys[t], value: values[t], scores: [0, 0])
        }
        // Every token is held by both heads; each head reads back its own channels within the
        // 4-bit step of its group (range ≤ 2 → step ≤ 2/15, error ≤ half a step + fp16 rounding).
        #expect(cache.heldTokens(head: 0) == Array(0..<40) && cache.heldTokens(head: 1) == Array(0..<40))
        let (out, _) = cache.attend([Float](repeating: 0, count: 2 * d), key: keys[0], value: values[0], heads: 2, kvHeads: 2, scale: 1)
        // Zero queries: uniform weights, so each head's output is the mean of its held values (+ the new one).
        for g in 0..<kvHeads {
            for i in 0..<d {
                let mean = (values.reduce(0.0) { $0 + Double($1[g * d + i]) } + Double(values[0][g * d + i])) / 41
                #expect(abs(Double(out[g * d + i]) - mean) < 0.07, "head \(g) channel \(i)")
            }
        }
    }

    /// Mean |packed − f32 reference| of attention outputs over 80 tokens with every token kept in the high segment at `bits`.
    static func meanError(bits: Int) -> Double {
        let (heads, d) = (2, 32)
        let cache = PackedKVCache(layout: layout(sinks: 0, window: 0, high: 80, keyBits: bits, valueBits: bits, low: 0, lowBits: 0), channels: heads * d, kvHeads: heads)
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

@Suite("Packed KV cache: placement")
struct PackedKVCachePlacementTests {
    @Test("one token placed by a single scan keeps exactly the tokens the general selection keeps (random scores, ties, three segments)",
          arguments: [(4, 16, 32), (8, 8, 16), (16, 2, 24)])
    func scanEqualsSelection(head: Int, kvHeads: Int, layoutSeed: Int) {
        // Sinks 2, window 4, high 9 at 4 bits, low 7 at 2 bits: 22 slots for 80 tokens, so tokens
        // move window → high → low → out on most steps. Scores are drawn from few values, so
        // ties (decided by the newer token) are common.
        let layout = PackedKVCacheTests.layout(sinks: 2, window: 4, high: 9, keyBits: 4, valueBits: 4, low: 7, lowBits: 2)
        let c = head * kvHeads
        let scan = PackedKVCache(layout: layout, channels: c, kvHeads: kvHeads)
        let general = PackedKVCache(layout: layout, channels: c, kvHeads: kvHeads)
        general.placesOneByScan = false
        var state = UInt64(layoutSeed)
        func draw(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33) % n
        }
        for t in 0..<80 {
            let key = PackedKVCacheTests.noise(c, seed: UInt64(t)), value = PackedKVCacheTests.noise(c, seed: UInt64(1000 + t))
            let scores = (0..<kvHeads).map { _ in Double(draw(4)) / 4 }
            scan.append(key: key, value: value, scores: scores)
            general.append(key: key, value: value, scores: scores)
            let received = (0..<kvHeads * scan.slots).map { _ in Float(draw(3)) / 8 }
            received.withUnsafeBufferPointer { scan.addReceived($0); general.addReceived($0) }
            for h in 0..<kvHeads {
                #expect(scan.slotTokens(head: h) == general.slotTokens(head: h), "token \(t), head \(h)")
                #expect(scan.slotScores(head: h) == general.slotScores(head: h), "token \(t), head \(h)")
            }
        }
        #expect(scan.evicted == general.evicted && scan.evicted > 40)
        // The same tokens in the same slots, packed alike: the same attention, bit for bit.
        let q = PackedKVCacheTests.noise(c, seed: 7), key = PackedKVCacheTests.noise(c, seed: 8), value = PackedKVCacheTests.noise(c, seed: 9)
        let a = scan.attend(q, key: key, value: value, heads: kvHeads, kvHeads: kvHeads, scale: 0.5)
        let b = general.attend(q, key: key, value: value, heads: kvHeads, kvHeads: kvHeads, scale: 0.5)
        #expect(a.out == b.out && a.newScores == b.newScores)
    }
}
