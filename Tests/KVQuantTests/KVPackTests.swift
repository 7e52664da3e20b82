import KVQuant
import Testing

/// A deterministic pseudo-random generator for test data.
struct Lcg {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) * 4 - 2
    }
}

@Suite("KVQuant: exact byte formulas, pack/unpack references")
struct KVPackTests {
    @Test("the byte formula equals what pack writes, full and partial groups, every bit width and kind",
          arguments: [(1, 8), (31, 8), (32, 8), (33, 8), (64, 128), (70, 96), (5, 33), (100, 256)])
    func formulaMatchesPacked(tokens: Int, channels: Int) {
        var rng = Lcg(state: UInt64(tokens * 1000 + channels))
        let x = (0..<(tokens * channels)).map { _ in rng.next() }
        for kind in [KVSegmentLayout.Kind.keys, .values] {
            for bits in KVBits.allCases {
                for group in [32, 16, 7] {
                    let layout = KVSegmentLayout(kind: kind, tokens: tokens, channels: channels, bits: bits, group: group)
                    #expect(KVPack.pack(x, layout).count == layout.bytes, "\(kind) \(bits) g\(group)")
                }
            }
        }
    }

    @Test("hand-computed sizes: keys 4-bit, 70 tokens × 96 channels, groups of 32")
    func handComputed() {
        // Two full token groups: per channel 4 B header + 32·4/8 = 16 B codes; the partial group
        // of 6 tokens: 4 + 3 B. 96 × (2 × 20 + 7) = 4512 B.
        #expect(KVSegmentLayout(kind: .keys, tokens: 70, channels: 96, bits: .b4).bytes == 4512)
        // Values 2-bit: per token 3 channel groups of 32: 3 × (4 + 8) = 36 B; 70 tokens: 2520 B.
        #expect(KVSegmentLayout(kind: .values, tokens: 70, channels: 96, bits: .b2).bytes == 2520)
        // fp16: 70 × 96 × 2.
        #expect(KVSegmentLayout(kind: .values, tokens: 70, channels: 96, bits: .b16).bytes == 13440)
        // A 2-bit group of 3 values still takes a whole byte of codes.
        #expect(KVSegmentLayout(kind: .values, tokens: 1, channels: 3, bits: .b2, group: 32).bytes == 5)
    }

    @Test("golden bytes: one 2-bit key group of 4 tokens, one channel")
    func golden() {
        // min 0, max 3 → scale 1.0 (fp16 0x3C00), zero 0.0; codes 0,1,2,3 packed LSB-first: 0b11100100.
        let layout = KVSegmentLayout(kind: .keys, tokens: 4, channels: 1, bits: .b2, group: 4)
        #expect(KVPack.pack([0, 1, 2, 3], layout) == [0x00, 0x3C, 0x00, 0x00, 0xE4])
    }

    @Test("NaN, ±inf and values past fp16's range pack without trapping; the other groups round-trip as before",
          arguments: [KVBits.b2, .b4, .b8])
    func nonFinitePacks(bits: KVBits) {
        // Keys of 32 tokens × 3 channels: channel 0 holds NaN, channel 1 ±inf and ±1e6, channel 2 is ordinary.
        let layout = KVSegmentLayout(kind: .keys, tokens: 32, channels: 3, bits: bits)
        var x = [Float](repeating: 0, count: 32 * 3)
        for t in 0..<32 {
            x[t * 3] = t == 5 ? .nan : Float(t)
            x[t * 3 + 1] = t == 0 ? .infinity : t == 1 ? -.infinity : t % 2 == 0 ? 1e6 : -1e6
            x[t * 3 + 2] = Float(t) / 31
        }
        let packed = KVPack.pack(x, layout)
        #expect(packed.count == layout.bytes)
        let ordinary = (0..<32).map { x[$0 * 3 + 2] }
        let alone = KVPack.unpack(KVPack.pack(ordinary, KVSegmentLayout(kind: .keys, tokens: 32, channels: 1, bits: bits)),
                                  KVSegmentLayout(kind: .keys, tokens: 32, channels: 1, bits: bits))
        let y = KVPack.unpack(packed, layout)
        #expect((0..<32).map { y[$0 * 3 + 2] } == alone)
    }

    @Test("round trip: every element within half a step (plus fp16 rounding) of the original", arguments: KVBits.allCases)
    func roundTrip(bits: KVBits) {
        var rng = Lcg(state: UInt64(bits.bits))
        let tokens = 45, channels = 40
        let x = (0..<(tokens * channels)).map { _ in rng.next() }
        for kind in [KVSegmentLayout.Kind.keys, .values] {
            let layout = KVSegmentLayout(kind: kind, tokens: tokens, channels: channels, bits: bits)
            let y = KVPack.unpack(KVPack.pack(x, layout), layout)
            // Range of the data is 4, so one step is 4/(2^b − 1); fp16 scale and zero add ~1e-3 relative.
            let tolerance: Float = bits.isQuantised ? 0.5 * 4 / Float(bits.maxLevel) + 4e-3 : 2e-3
            let worst = zip(x, y).map { abs($0 - $1) }.max()!
            #expect(worst <= tolerance, "\(kind) \(bits): worst error \(worst) > \(tolerance)")
        }
    }

    @Test("fp16 → f32 by bits equals Float(Float16) for all 65,536 patterns (NaNs stay NaN)")
    func halfConversionIsExact() {
        var mismatches = 0
        for h in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: h)), got = KVPack.float(fromHalf: h)
            if expected.isNaN ? !got.isNaN : expected.bitPattern != got.bitPattern { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test("unpack into strided rows gives the array unpack's values, every kind and width", arguments: KVBits.allCases)
    func stridedUnpack(bits: KVBits) {
        var rng = Lcg(state: 7)
        let (tokens, channels, stride) = (45, 40, 43)
        let x = (0..<(tokens * channels)).map { _ in rng.next() }
        for kind in [KVSegmentLayout.Kind.keys, .values] {
            let layout = KVSegmentLayout(kind: kind, tokens: tokens, channels: channels, bits: bits, group: 32)
            let bytes = KVPack.pack(x, layout)
            let flat = KVPack.unpack(bytes, layout)
            var rows = [Float](repeating: .nan, count: tokens * stride)
            rows.withUnsafeMutableBufferPointer { out in bytes.withUnsafeBytes { KVPack.unpack($0, layout, into: out.baseAddress!, rowStride: stride) } }
            #expect((0..<tokens).allSatisfy { t in (0..<channels).allSatisfy { rows[t * stride + $0].bitPattern == flat[t * channels + $0].bitPattern } })
            #expect((0..<tokens).allSatisfy { t in (channels..<stride).allSatisfy { rows[t * stride + $0].isNaN } })
        }
    }

    @Test("codes round half away from zero, as Float.rounded(): halves up, just below a half down")
    func roundingAtHalves() {
        // One 4-bit value group of 32 channels: min 0 and max 15 give scale 1 and zero 0, so a
        // value's code is the value rounded.
        let layout = KVSegmentLayout(kind: .values, tokens: 1, channels: 32, bits: .b4)
        let probes: [Float] = [0.5, 1.5, 2.5, 7.5, 14.5, Float(0.5).nextDown, Float(2.5).nextDown, Float(2.5).nextUp, 3, 0, 15]
        let x = probes + Array(repeating: Float(15), count: 32 - probes.count)
        let codes = KVPack.unpack(KVPack.pack(x, layout), layout)
        #expect(Array(codes.prefix(probes.count)) == probes.map { $0.rounded() })
        #expect(Array(codes.prefix(probes.count)) == [1, 2, 3, 8, 15, 0, 2, 3, 3, 0, 15])
    }

    @Test("a constant group dequantises exactly (scale 0)")
    func constant() {
        let layout = KVSegmentLayout(kind: .values, tokens: 2, channels: 32, bits: .b4)
        let x = Array(repeating: Float(0.5), count: 64)
        #expect(KVPack.unpack(KVPack.pack(x, layout), layout) == x)
    }
}
