import KVQuant
import Testing

@Suite("q4_0x16: sixteen q4_0 rows interleaved block by block")
struct WeightLayoutTests {
    /// Deterministic bytes standing in for q4_0 blocks (the layout moves bytes; it never reads them).
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    @Test("every byte lands where the kernel reads it: per group and block, 16 scales then vector i holding row r's nibble bytes 4i…4i+3 at 4r")
    func positions() {
        let (rows, columns) = (48, 96)  // 3 groups of 16 rows, 3 blocks per row
        let rowMajor = Self.bytes(rows * 54, seed: 7)
        let arranged = WeightLayout.q4_0x16.arrange(rowMajor, rows: rows, columns: columns)
        #expect(arranged.count == rowMajor.count)
        for row in 0..<rows {
            for block in 0..<3 {
                let source = row * 54 + block * 18
                let base = ((row / 16) * 3 + block) * 288, r = row % 16
                #expect(arranged[base + 2 * r] == rowMajor[source] && arranged[base + 2 * r + 1] == rowMajor[source + 1], "row \(row) block \(block) scale")
                for i in 0..<4 {
                    for t in 0..<4 {
                        #expect(arranged[base + 32 + 64 * i + 4 * r + t] == rowMajor[source + 2 + 4 * i + t], "row \(row) block \(block) nibble byte \(4 * i + t)")
                    }
                }
            }
        }
    }

    @Test("a permutation: rowMajor(arrange(x)) is x, and a group's bytes stay in its 16 rows' span")
    func inverse() {
        let (rows, columns) = (32, 4096)
        let rowMajor = Self.bytes(rows * 128 * 18, seed: 11)
        let arranged = WeightLayout.q4_0x16.arrange(rowMajor, rows: rows, columns: columns)
        #expect(WeightLayout.q4_0x16.rowMajor(arranged, rows: rows, columns: columns) == rowMajor)
        #expect(arranged.sorted() == rowMajor.sorted())
        // Threads split whole groups at 16·rowBytes: each group's bytes are its rows' bytes.
        let groupBytes = 16 * 128 * 18
        #expect(Array(arranged[groupBytes...]).sorted() == Array(rowMajor[groupBytes...]).sorted())
    }

    @Test("applies to q4_0 with rows in whole groups of 16 and whole blocks of 32 only", arguments: [
        (WeightFormat.q4_0, 16, 32, true), (.q4_0, 704, 256, true), (.q4_0, 8, 32, false), (.q4_0, 13, 96, false),
        (.q4_0, 16, 48, false), (.q8_0, 16, 32, false), (.f32, 16, 32, false), (.q4_0, 0, 32, false),
    ])
    func applies(format: WeightFormat, rows: Int, columns: Int, expected: Bool) {
        #expect(WeightLayout.q4_0x16.applies(format: format, rows: rows, columns: columns) == expected)
    }
}
