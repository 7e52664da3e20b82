// How a weight's bytes are arranged in its arena, beyond its storage format.
//
// Rationale. ggml's q4_0 keeps each row's blocks together (fp16 d, then 16 nibble bytes), so a
// GEMV must gather every block's scale and nibbles into vector lanes: nine AVX-512 instructions
// per row and block pair, two of them word permutes, which bound the kernel at 17–19 GB/s in L2
// on this machine (Docs/benchmarks.md). ggml's own CPU backend repacks q4_0 at load for the same
// reason (block_q4_0x8). `q4_0x16` interleaves sixteen rows block by block, so that one 512-bit
// lane holds one row: per group of 16 rows and per block of 32 values it stores the 16 rows' fp16
// scales (32 bytes), then four 64-byte vectors, vector i holding bytes 4i…4i+3 of each row's 16
// nibble bytes (row r in bytes 4r…4r+3). A kernel then multiplies a block of 16 rows with four
// loads, eight ANDs and eight `vpdpbusd` against broadcast activation words, converts the 16
// scales with one `vcvtph2ps`, and its lanes are the 16 outputs: no permutes, no horizontal sums
// (measured: 3.5–4.3× the row-major kernel in L2, 3× from DRAM). `q8_0x16` is the same for
// q8_0: 16 scales, then eight 64-byte vectors, vector i holding codes 4i…4i+3 of each row. The
// bytes are the same blocks, the count the same as ggml's (18 or 34 per 32 values): only their
// order differs, so plans, transfers and link totals do not change, and the values are exactly
// the format's.

/// The arrangement of a weight's bytes in its arena.
public enum WeightLayout: String, CaseIterable, Sendable, Codable {
    /// q4_0 blocks of 16 rows interleaved block by block (see the file's comment).
    case q4_0x16
    /// q8_0 blocks of 16 rows interleaved block by block.
    case q8_0x16

    /// Rows interleaved per group.
    public static let groupRows = 16

    /// The storage format this layout arranges.
    public var format: WeightFormat {
        switch self {
        case .q4_0x16: return .q4_0
        case .q8_0x16: return .q8_0
        }
    }

    /// The layout that interleaves `format`, if any.
    public static func interleaving(_ format: WeightFormat) -> WeightLayout? { allCases.first { $0.format == format } }

    /// Whether a `[rows, columns]` weight of `format` can be stored in this layout: this layout's
    /// format, rows in whole groups of 16, columns in whole blocks of 32.
    public func applies(format: WeightFormat, rows: Int, columns: Int) -> Bool {
        format == self.format && rows > 0 && rows % Self.groupRows == 0 && columns > 0 && columns % 32 == 0
    }

    /// ggml's row-major bytes of a `[rows, columns]` weight in this layout (the same count).
    public func arrange(_ rowMajor: [UInt8], rows: Int, columns: Int) -> [UInt8] {
        permute(rowMajor, rows: rows, columns: columns, intoLayout: true)
    }

    /// The row-major bytes of a weight stored in this layout (`arrange`'s inverse).
    public func rowMajor(_ arranged: [UInt8], rows: Int, columns: Int) -> [UInt8] {
        permute(arranged, rows: rows, columns: columns, intoLayout: false)
    }

    /// `bytes` moved unit by unit along `byteMap`, into the layout or back out of it.
    private func permute(_ bytes: [UInt8], rows: Int, columns: Int, intoLayout: Bool) -> [UInt8] {
        precondition(applies(format: format, rows: rows, columns: columns) && bytes.count == rows * format.bytes(count: columns),
                     "\(bytes.count) bytes are not a [\(rows), \(columns)] \(format.rawValue) weight for \(rawValue)")
        var out = [UInt8](repeating: 0, count: bytes.count)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                for (rowMajor, arranged) in byteMap(rows: rows, columns: columns) {
                    let (from, to) = intoLayout ? (rowMajor, arranged) : (arranged, rowMajor)
                    dst.storeBytes(of: src.loadUnaligned(fromByteOffset: from, as: UInt16.self), toByteOffset: to, as: UInt16.self)
                }
            }
        }
        return out
    }

    /// Every 2-byte unit's (row-major offset, arranged offset): a block's scale, then its data
    /// bytes (nibbles or codes) in pairs (word i, bytes 4i…4i+3, is two units).
    func byteMap(rows: Int, columns: Int) -> [(Int, Int)] {
        let blockBytes = format.blockBytes, words = (blockBytes - 2) / 4
        let blocks = columns / 32, rowBytes = blocks * blockBytes, groupBlockBytes = blockBytes * Self.groupRows
        var map: [(Int, Int)] = []
        map.reserveCapacity(rows * blocks * blockBytes / 2)
        for g in 0..<rows / Self.groupRows {
            for b in 0..<blocks {
                let base = (g * blocks + b) * groupBlockBytes
                for r in 0..<Self.groupRows {
                    let block = (g * Self.groupRows + r) * rowBytes + b * blockBytes
                    map.append((block, base + 2 * r))
                    for i in 0..<words {
                        let vector = base + 2 * Self.groupRows + 64 * i + 4 * r
                        map.append((block + 2 + 4 * i, vector))
                        map.append((block + 4 + 4 * i, vector + 2))
                    }
                }
            }
        }
        return map
    }
}
