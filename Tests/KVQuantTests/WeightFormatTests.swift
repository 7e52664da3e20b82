import KVQuant
import Testing

@Suite("Weight storage formats: ggml block sizes, known codes, round-trip bounds")
struct WeightFormatTests {
    @Test("bytes per block and for whole rows", arguments: [
        (WeightFormat.f32, 4, 1), (.f16, 2, 1), (.bf16, 2, 1), (.q8_0, 34, 32), (.q4_0, 18, 32),
    ])
    func sizes(format: WeightFormat, blockBytes: Int, blockElements: Int) {
        #expect(format.blockBytes == blockBytes)
        #expect(format.blockElements == blockElements)
        #expect(format.bytes(count: 4096) == 4096 / blockElements * blockBytes)
        #expect(format.encode(Array(repeating: 1, count: 4096))?.count == format.bytes(count: 4096))
    }

    @Test("q8_0: d = max|x|/127 in fp16, codes round(x/d), ggml's byte order")
    func q8Codes() throws {
        let x = (0..<32).map { Float($0) - 16 }  // -16 ... 15: max |x| = 16
        let bytes = try #require(WeightFormat.q8_0.encode(x))
        let d = Float16(Float(16) / 127)
        #expect(bytes[0] == UInt8(d.bitPattern & 0xFF) && bytes[1] == UInt8(d.bitPattern >> 8))
        #expect(Int8(bitPattern: bytes[2]) == -127)  // -16 / d
        #expect(Int8(bitPattern: bytes[2 + 16]) == 0)
        #expect(Int8(bitPattern: bytes[2 + 31]) == Int8((Float(15) / Float(d)).rounded()))
    }

    @Test("q4_0: d = (value of largest magnitude)/−8, nibble = x/d + 8; low nibbles values 0–15, high 16–31")
    func q4Codes() throws {
        var x = Array(repeating: Float(0), count: 32)
        x[0] = -8  // the extreme: d = 1, its nibble 0
        x[1] = 3   // nibble 11... with d = 1: 3/1 + 8 = 11
        x[16] = 7  // high nibble of byte 0: 15
        let bytes = try #require(WeightFormat.q4_0.encode(x))
        #expect(bytes.count == 18)
        #expect(Float(Float16(bitPattern: UInt16(bytes[0]) | UInt16(bytes[1]) << 8)) == 1)
        #expect(bytes[2] == 0 | 15 << 4)
        #expect(bytes[3] == 11 | 8 << 4)
        #expect(WeightFormat.q4_0.roundTrip(x) == x)
    }

    @Test("bf16 rounds to nearest even; f16 is IEEE half")
    func floats() throws {
        let x: [Float] = [1 + 0x1p-8, 1 + 0x1p-8 + 0x1p-20, 1 + 3 * 0x1p-8, -2.5, 65504, 1e-7]
        let bf = try #require(WeightFormat.bf16.roundTrip(x))
        #expect(bf[0] == 1)               // a tie rounds to the even 1.0
        #expect(bf[1] == 1 + 0x1p-7)      // above the tie rounds up
        #expect(bf[2] == 1 + 4 * 0x1p-8)  // a tie between odd and even rounds to even
        #expect(bf[3] == -2.5)
        let h = try #require(WeightFormat.f16.roundTrip(x))
        #expect(h[4] == 65504)
        #expect(h[3] == -2.5)
    }

    @Test("round trips stay within half a quantisation step of every value", arguments: [WeightFormat.q8_0, .q4_0])
    func roundTripBound(format: WeightFormat) throws {
        var state: UInt64 = 7
        let x = (0..<4096).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
        let y = try #require(format.roundTrip(x))
        let bytes = try #require(format.encode(x))
        for b in 0..<(x.count / 32) {
            let d = abs(Float(Float16(bitPattern: UInt16(bytes[b * format.blockBytes]) | UInt16(bytes[b * format.blockBytes + 1]) << 8)))
            for i in (32 * b)..<(32 * b + 32) {
                // q4_0 reaches 8|d| on the extreme's side but only 7|d| on the other (ggml's asymmetry).
                let clamped = format == .q4_0 ? abs(x[i]) - 7 * d : 0
                let bound = max(d / 2, clamped) * 1.001 + 1e-7
                #expect(abs(y[i] - x[i]) <= bound, "value \(i): \(x[i]) became \(y[i]) (d \(d))")
            }
        }
    }

    @Test("block formats refuse values that are not whole blocks")
    func partialBlocks() {
        #expect(WeightFormat.q8_0.encode(Array(repeating: 1, count: 33)) == nil)
        #expect(WeightFormat.q4_0.roundTrip(Array(repeating: 1, count: 31)) == nil)
        #expect(WeightFormat.f16.encode(Array(repeating: 1, count: 33))?.count == 66)
    }
}
