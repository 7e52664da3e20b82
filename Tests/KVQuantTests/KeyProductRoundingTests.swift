import KVQuant
import Testing

@Suite("Integer key products: the scaled query rounded to int8 per 32 channels")
struct KeyProductRoundingTests {
    @Test("applies to whole 4-bit groups of heads with a multiple of 32 channels only")
    func applies() {
        #expect(KeyProductRounding.applies(bits: .b4, tokens: 32, headDim: 64))
        #expect(!KeyProductRounding.applies(bits: .b4, tokens: 31, headDim: 64))
        #expect(!KeyProductRounding.applies(bits: .b4, tokens: 32, headDim: 48))
        #expect(!KeyProductRounding.applies(bits: .b2, tokens: 32, headDim: 64))
        #expect(!KeyProductRounding.applies(bits: .b8, tokens: 32, headDim: 64))
        #expect(!KeyProductRounding.applies(bits: .b16, tokens: 32, headDim: 64))
    }

    @Test("exact logits: q·s rounded to a·q8 per block, zero points in full precision")
    func exactLogits() {
        // Block 0: scaled query 1 on channel 0, 0.001 elsewhere → a = 1/127, the small channels
        // round to 0. Block 1: all 0.5 → a = 0.5/127, every code 127.
        let d = 64, tokens = 2
        var query = [Float](repeating: 0.001, count: d)
        query[0] = 1
        for c in 32..<64 { query[c] = 0.5 }
        let scales = [Float](repeating: 1, count: d)
        let zeros = (0..<d).map { $0 == 3 ? Float(2) : 0 }
        var codes = [UInt8](repeating: 0, count: tokens * d)
        for c in 0..<d { codes[c] = 15; codes[d + c] = UInt8(c % 16) }
        let logits = query.withUnsafeBufferPointer {
            KeyProductRounding.logits(query: $0.baseAddress!, codes: codes, scales: scales, zeros: zeros, tokens: tokens)
        }
        let a0 = Double(Float(1) / 127), a1 = Double(Float(0.5) / 127)
        let bias = Double(Float(0.001)) * 2
        // Token 0: channel 0's 127·15 in block 0; 127·15 on all 32 channels of block 1.
        #expect(logits[0] == a0 * Double(127 * 15) + bias + a1 * Double(127 * 15 * 32))
        // Token 1: channel 0's code is 0; block 1 codes are c % 16 = 0…15 twice (sum 240).
        #expect(logits[1] == bias + a1 * Double(127 * 240))
        // In f32 the small channels would count: Σ 0.001·15 over 31 channels.
        let f32 = (0..<d).reduce(0.0) { $0 + Double(query[$1]) * (Double(codes[$1]) + Double(zeros[$1])) }
        #expect(abs(f32 - logits[0]) > 0.4)
    }

    @Test("keyGroupCodes returns what unpack dequantises: scale·code + zero, exactly")
    func codesMatchUnpack() {
        let layout = KVSegmentLayout(kind: .keys, tokens: 32, channels: 40, bits: .b4)
        var state: UInt64 = 7
        let x = (0..<32 * 40).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 22) - 2
        }
        let packed = KVPack.pack(x, layout)
        let values = KVPack.unpack(packed, layout)
        let (codes, scales, zeros) = packed.withUnsafeBytes { KVPack.keyGroupCodes($0, layout) }
        for t in 0..<32 {
            for c in 0..<40 { #expect(Float(codes[t * 40 + c]) * scales[c] + zeros[c] == values[t * 40 + c]) }
        }
        #expect(codes.max()! == 15)
    }
}
