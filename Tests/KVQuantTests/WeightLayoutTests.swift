import KVQuant
import Testing

@Suite("q4_0x16 and q8_0x16: sixteen rows interleaved block by block")
struct WeightLayoutTests {
    /// Deterministic bytes standing in for q4_0 blocks (the layout moves bytes; it never reads them).
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    /// q4_0: 18-byte blocks, 4 vectors of nibble bytes; q8_0: 34-byte blocks, 8 vectors of codes.
    @Test("every byte lands where the kernel reads it: per group and block, 16 scales then vector i holding row r's bytes 4i…4i+3 at 4r",
          arguments: [(WeightLayout.q4_0x16, 18, 4), (.q8_0x16, 34, 8)])
    func positions(layout: WeightLayout, blockBytes: Int, vectors: Int) {
        let (rows, columns) = (48, 96)  // 3 groups of 16 rows, 3 blocks per row
        #expect(layout.format.blockBytes == blockBytes)
        let rowMajor = Self.bytes(rows * 3 * blockBytes, seed: 7)
        let arranged = layout.arrange(rowMajor, rows: rows, columns: columns)
        #expect(arranged.count == rowMajor.count)
        for row in 0..<rows {
            for block in 0..<3 {
                let source = (row * 3 + block) * blockBytes
                let base = ((row / 16) * 3 + block) * 16 * blockBytes, r = row % 16
                #expect(arranged[base + 2 * r] == rowMajor[source] && arranged[base + 2 * r + 1] == rowMajor[source + 1], "row \(row) block \(block) scale")
                for i in 0..<vectors {
                    for t in 0..<4 {
                        #expect(arranged[base + 32 + 64 * i + 4 * r + t] == rowMajor[source + 2 + 4 * i + t], "row \(row) block \(block) byte \(4 * i + t)")
                    }
                }
            }
        }
    }

    @Test("a permutation: rowMajor(arrange(x)) is x, and a group's bytes stay in its 16 rows' span", arguments: WeightLayout.allCases)
    func inverse(layout: WeightLayout) {
        let (rows, columns) = (32, 4096)
        let rowBytes = layout.format.bytes(count: columns)
        let rowMajor = Self.bytes(rows * rowBytes, seed: 11)
        let arranged = layout.arrange(rowMajor, rows: rows, columns: columns)
        #expect(layout.rowMajor(arranged, rows: rows, columns: columns) == rowMajor)
        #expect(arranged.sorted() == rowMajor.sorted())
        // Threads split whole groups at 16·rowBytes: each group's bytes are its rows' bytes.
        #expect(Array(arranged[(16 * rowBytes)...]).sorted() == Array(rowMajor[(16 * rowBytes)...]).sorted())
    }

    @Test("each block format has its layout")
    func interleaving() {
        #expect(WeightLayout.interleaving(.q4_0) == .q4_0x16 && WeightLayout.interleaving(.q8_0) == .q8_0x16)
        #expect(WeightLayout.interleaving(.f32) == nil && WeightLayout.interleaving(.f16) == nil && WeightLayout.interleaving(.bf16) == nil)
    }

    @Test("q4_0x16 applies to q4_0 with rows in whole groups of 16 and whole blocks of 32 only", arguments: [
        (WeightFormat.q4_0, 16, 32, true), (.q4_0, 704, 256, true), (.q4_0, 8, 32, false), (.q4_0, 13, 96, false),
        (.q4_0, 16, 48, false), (.q8_0, 16, 32, false), (.f32, 16, 32, false), (.q4_0, 0, 32, false),
    ])
    func applies(format: WeightFormat, rows: Int, columns: Int, expected: Bool) {
        #expect(WeightLayout.q4_0x16.applies(format: format, rows: rows, columns: columns) == expected)
        #expect(WeightLayout.q8_0x16.applies(format: format == .q4_0 ? .q8_0 : format == .q8_0 ? .q4_0 : format, rows: rows, columns: columns) == expected)
    }
}
