// Weight storage formats: how a weight's f32 values are laid out in an arena, and the scalar
// reference encoder and decoder the runtime (quantisation at load) and the reference interpreter
// (which computes with exactly the values the plan stores) share.
//
// f16 and bf16 are IEEE half and bfloat16, little-endian, round to nearest even. q8_0 and q4_0 are
// ggml's blocks, byte for byte (REFERENCES §3): 32 consecutive values share one fp16 scale d;
// q8_0 stores d then 32 int8 codes (value = code·d, d = max|x|/127); q4_0 stores d then 16 bytes
// whose low nibbles are values 0–15 and high nibbles values 16–31 (value = (nibble − 8)·d, d =
// the value of largest magnitude / −8, as ggml's quantize_row_q4_0_ref). Values are quantised
// with the fp16-rounded scale, so decode(encode(x)) is what any kernel reading the bytes computes.

/// How a weight is stored: a plain float type or a ggml block format.
public enum WeightFormat: String, CaseIterable, Sendable, Codable {
    case f32, f16, bf16, q8_0, q4_0

    /// Values per block (1 for the float types).
    public var blockElements: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q8_0, .q4_0: return 32
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q8_0: return 34
        case .q4_0: return 18
        }
    }

    /// Bytes `count` values take (whole blocks).
    public func bytes(count: Int) -> Int { (count + blockElements - 1) / blockElements * blockBytes }

    /// `values` encoded; a block format needs a whole number of blocks (else nil).
    public func encode(_ values: [Float]) -> [UInt8]? {
        guard values.count % blockElements == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: bytes(count: values.count))
        out.withUnsafeMutableBytes { raw in
            values.withUnsafeBufferPointer { v in
                switch self {
                case .f32:
                    for (i, x) in v.enumerated() { raw.storeBytes(of: x.bitPattern, toByteOffset: 4 * i, as: UInt32.self) }
                case .f16:
                    for (i, x) in v.enumerated() { raw.storeBytes(of: Float16(x).bitPattern, toByteOffset: 2 * i, as: UInt16.self) }
                case .bf16:
                    for (i, x) in v.enumerated() { raw.storeBytes(of: Self.bfloat16(x), toByteOffset: 2 * i, as: UInt16.self) }
                case .q8_0:
                    for b in 0..<v.count / 32 {
                        let block = v[(32 * b)..<(32 * b + 32)], at = 34 * b
                        let amax = block.reduce(Float(0)) { max($0, abs($1)) }
                        let d = Float16(amax / 127)
                        raw.storeBytes(of: d.bitPattern, toByteOffset: at, as: UInt16.self)
                        let inverse: Float = d == 0 ? 0 : 1 / Float(d)
                        for (j, x) in block.enumerated() {
                            let code = Int8(max(-127, min(127, (x * inverse).rounded(.toNearestOrAwayFromZero))))
                            raw.storeBytes(of: code, toByteOffset: at + 2 + j, as: Int8.self)
                        }
                    }
                case .q4_0:
                    for b in 0..<v.count / 32 {
                        let block = v[(32 * b)..<(32 * b + 32)], at = 18 * b
                        var extreme: Float = 0
                        for x in block where abs(x) > abs(extreme) { extreme = x }
                        let d = Float16(extreme / -8)
                        raw.storeBytes(of: d.bitPattern, toByteOffset: at, as: UInt16.self)
                        let inverse: Float = d == 0 ? 0 : 1 / Float(d)
                        func code(_ x: Float) -> UInt8 { UInt8(max(0, min(15, (x * inverse + 8).rounded(.toNearestOrAwayFromZero)))) }
                        for j in 0..<16 {
                            let lo = code(block[block.startIndex + j]), hi = code(block[block.startIndex + j + 16])
                            raw.storeBytes(of: lo | hi << 4, toByteOffset: at + 2 + j, as: UInt8.self)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The `count` values stored in `bytes` (which must hold at least `bytes(count:)`).
    public func decode(_ bytes: UnsafeRawBufferPointer, count: Int) -> [Float] {
        precondition(bytes.count >= self.bytes(count: count), "\(bytes.count) bytes cannot hold \(count) \(rawValue) values")
        var out = [Float](repeating: 0, count: count)
        for i in 0..<count {
            switch self {
            case .f32: out[i] = Float(bitPattern: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
            case .f16: out[i] = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case .bf16: out[i] = Float(bitPattern: UInt32(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            case .q8_0:
                let at = 34 * (i / 32)
                let d = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
                out[i] = Float(bytes.load(fromByteOffset: at + 2 + i % 32, as: Int8.self)) * d
            case .q4_0:
                let at = 18 * (i / 32), j = i % 32
                let d = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
                let byte = bytes[at + 2 + j % 16]
                out[i] = Float(Int(j < 16 ? byte & 15 : byte >> 4) - 8) * d
            }
        }
        return out
    }

    /// What storing `values` in this format and reading them back gives (nil: not whole blocks).
    public func roundTrip(_ values: [Float]) -> [Float]? {
        guard let bytes = encode(values) else { return nil }
        return bytes.withUnsafeBytes { decode($0, count: values.count) }
    }

    /// bfloat16 bits of `x`, rounded to nearest even (NaN kept quiet).
    static func bfloat16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x40 }
        return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
}
