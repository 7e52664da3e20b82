import KVQuant
import Testing

@Suite("Activation rows as q8_0 / q4_0 GEMVs multiply them")
struct ActivationQuantisationTests {
    @Test("d = max|x|/127 in f32; codes round x/d to nearest even; a zero block is all zeros")
    func codes() {
        // max |x| = 127 → d = 1 exactly, so every code is x rounded to nearest even.
        var block: [Float] = [127, -63.5, 0.5, 1.5, -2.5, 3.49, -127, 0]
        block += Array(repeating: 0.25, count: 24)
        let (d, codes) = ActivationQuantisation.quantise(block: block[...])
        #expect(d == 1)
        #expect(Array(codes.prefix(8)) == [127, -64, 0, 2, -2, 3, -127, 0])
        #expect(codes.dropFirst(8).allSatisfy { $0 == 0 })
        let zero = ActivationQuantisation.quantise(block: Array(repeating: Float(0), count: 32)[...])
        #expect(zero.scale == 0 && zero.codes.allSatisfy { $0 == 0 })
    }

    @Test("round trip: per block of 32, within half a step of max|x|/127, the extreme value exact")
    func roundTrip() {
        let row: [Float] = (0..<96).map { i in
            let offset: Float = i >= 64 ? 50 : 0
            return Float((i * 37) % 101) / 7 - 6 + offset
        }
        let restored = ActivationQuantisation.roundTrip(row[...])
        #expect(restored.count == 96)
        for b in 0..<3 {
            let block = row[(32 * b)..<(32 * b + 32)]
            let d = block.map { abs($0) }.max()! / 127
            for i in block.indices { #expect(abs(restored[i] - row[i]) <= d / 2 * 1.0001) }
            let extreme = block.indices.max { abs(row[$0]) < abs(row[$1]) }!
            #expect(abs(restored[extreme] - row[extreme]) <= abs(row[extreme]) * 1e-6)
        }
        #expect(ActivationQuantisation.applies(to: .q4_0) && ActivationQuantisation.applies(to: .q8_0))
        #expect(!ActivationQuantisation.applies(to: .f16) && !ActivationQuantisation.applies(to: .bf16) && !ActivationQuantisation.applies(to: .f32))
    }
}
