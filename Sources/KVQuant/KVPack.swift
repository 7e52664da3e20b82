/// Reference quantise-and-pack and unpack-and-dequantise for KV segments (scalar, the ground truth
/// that kernels and the runtime are checked against). Layout and rounding: KVSegmentLayout.
public enum KVPack {
    /// Packs `x` (token-major, `[token][channel]`, `layout.tokens × layout.channels` elements).
    public static func pack(_ x: [Float], _ layout: KVSegmentLayout) -> [UInt8] {
        precondition(x.count == layout.tokens * layout.channels, "pack: \(x.count) elements for a \(layout.tokens)×\(layout.channels) segment")
        var out: [UInt8] = []
        out.reserveCapacity(layout.bytes)
        let c = layout.channels
        guard layout.bits.isQuantised else {
            for v in x { appendHalf(Float16(v), to: &out) }
            return out
        }
        switch layout.kind {
        case .keys:
            var t0 = 0
            for g in layout.groupLengths {
                for ch in 0..<c { packGroup((t0..<(t0 + g)).map { x[$0 * c + ch] }, bits: layout.bits, into: &out) }
                t0 += g
            }
        case .values:
            for t in 0..<layout.tokens {
                var c0 = 0
                for g in layout.groupLengths {
                    packGroup(Array(x[(t * c + c0)..<(t * c + c0 + g)]), bits: layout.bits, into: &out)
                    c0 += g
                }
            }
        }
        return out
    }

    /// Unpacks and dequantises a segment packed by `pack` (token-major).
    public static func unpack(_ bytes: [UInt8], _ layout: KVSegmentLayout) -> [Float] {
        precondition(bytes.count == layout.bytes, "unpack: \(bytes.count) bytes for a segment of \(layout.bytes)")
        return [Float](unsafeUninitializedCapacity: layout.tokens * layout.channels) { x, initialised in
            bytes.withUnsafeBytes { unpack($0, layout, into: x.baseAddress!, rowStride: layout.channels) }
            initialised = layout.tokens * layout.channels
        }
    }

    /// Unpacks and dequantises a segment packed by `pack` from raw bytes (exactly `layout.bytes`)
    /// into rows of `layout.channels` values `rowStride` apart — the same values `unpack` returns,
    /// without an array per call (the reference attention reads every held token each step).
    public static func unpack(_ bytes: UnsafeRawBufferPointer, _ layout: KVSegmentLayout, into x: UnsafeMutablePointer<Float>, rowStride: Int) {
        precondition(bytes.count == layout.bytes, "unpack: \(bytes.count) bytes for a segment of \(layout.bytes)")
        let c = layout.channels
        guard layout.bits.isQuantised else {
            for t in 0..<layout.tokens {
                for ch in 0..<c { x[t * rowStride + ch] = readHalf(bytes, (t * c + ch) * 2) }
            }
            return
        }
        var at = 0
        switch layout.kind {
        case .keys:
            var t0 = 0
            for g in layout.groupLengths {
                for ch in 0..<c { unpackGroup(bytes, &at, count: g, bits: layout.bits, into: x + t0 * rowStride + ch, stride: rowStride) }
                t0 += g
            }
        case .values:
            for t in 0..<layout.tokens {
                var c0 = 0
                for g in layout.groupLengths {
                    unpackGroup(bytes, &at, count: g, bits: layout.bits, into: x + t * rowStride + c0, stride: 1)
                    c0 += g
                }
            }
        }
    }

    /// One quantised key group (`layout.tokens` ≤ `layout.group` tokens) as stored: its codes
    /// token-major (`[token][channel]`) and each channel's scale and zero point as f32 — what the
    /// integer key products read (KeyProductRounding).
    public static func keyGroupCodes(_ bytes: UnsafeRawBufferPointer, _ layout: KVSegmentLayout) -> (codes: [UInt8], scales: [Float], zeros: [Float]) {
        precondition(layout.kind == .keys && layout.bits.isQuantised && layout.tokens <= layout.group && bytes.count == layout.bytes,
                     "keyGroupCodes: one quantised key group of \(layout.bytes) bytes")
        let (n, c) = (layout.tokens, layout.channels)
        let rowBytes = KVSegmentLayout.groupHeaderBytes + KVSegmentLayout.packedBytes(n, bits: layout.bits.bits)
        var codes = [UInt8](repeating: 0, count: n * c), scales = [Float](repeating: 0, count: c), zeros = scales
        let (width, mask) = (layout.bits.bits, layout.bits.maxLevel)
        for ch in 0..<c {
            let at = ch * rowBytes
            scales[ch] = readHalf(bytes, at)
            zeros[ch] = readHalf(bytes, at + 2)
            for t in 0..<n {
                let bit = t * width
                codes[t * c + ch] = UInt8((Int(bytes[at + 4 + bit / 8]) >> (bit % 8)) & mask)
            }
        }
        return (codes, scales, zeros)
    }

    /// The fp16 scale and zero point of a group, as stored.
    public static func scaleAndZero(_ group: [Float], bits: KVBits) -> (scale: Float16, zero: Float16) {
        let lo = group.min() ?? 0, hi = group.max() ?? 0
        return (Float16((hi - lo) / Float(bits.maxLevel)), Float16(lo))
    }

    static func packGroup(_ group: [Float], bits: KVBits, into out: inout [UInt8]) {
        let (scale, zero) = scaleAndZero(group, bits: bits)
        appendHalf(scale, to: &out)
        appendHalf(zero, to: &out)
        let s = Float(scale), z = Float(zero)
        var accumulator = 0, filled = 0
        for v in group {
            // Clamped in f32 before the conversion: a NaN or infinite activation (broken weights)
            // packs as code 0 instead of trapping; the step's logits then carry the NaN, which the
            // generator reports.
            // Clamped, then rounded half away from zero (as `rounded()`, which is a libm call per
            // value): the bounds are whole numbers, so clamping first gives the same codes.
            let x = s > 0 ? (v - z) / s : 0
            let y = x.isNaN ? 0 : min(Float(bits.maxLevel), max(0, x))
            let whole = Int(y)
            let q = y - Float(whole) >= 0.5 ? whole + 1 : whole
            accumulator |= q << filled
            filled += bits.bits
            while filled >= 8 {
                out.append(UInt8(accumulator & 0xFF))
                accumulator >>= 8
                filled -= 8
            }
        }
        if filled > 0 { out.append(UInt8(accumulator & 0xFF)) }
    }

    /// Dequantises one group of `count` codes at `at` (advanced past it) into `out[k·stride]`.
    static func unpackGroup(_ bytes: UnsafeRawBufferPointer, _ at: inout Int, count: Int, bits: KVBits,
                            into out: UnsafeMutablePointer<Float>, stride: Int) {
        let s = readHalf(bytes, at), z = readHalf(bytes, at + 2)
        at += 4
        var accumulator = 0, available = 0
        let (width, mask) = (bits.bits, bits.maxLevel)
        for k in 0..<count {
            while available < width {
                accumulator |= Int(bytes[at]) << available
                at += 1
                available += 8
            }
            out[k * stride] = Float(accumulator & mask) * s + z
            accumulator >>= width
            available -= width
        }
    }

    static func appendHalf(_ h: Float16, to out: inout [UInt8]) {
        let b = h.bitPattern
        out.append(UInt8(b & 0xFF))
        out.append(UInt8(b >> 8))
    }

    /// The little-endian fp16 at `at`, as a Float.
    static func readHalf(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> Float {
        float(fromHalf: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
    }

    /// Float(Float16(bitPattern: h)), exactly, by moving bits: without F16C the conversion is a
    /// runtime call, and the reference attention converts every fp16 element of the cache each step.
    @inline(__always) public static func float(fromHalf h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F, mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13 | (mantissa == 0 ? 0 : 0x40_0000)) }
        if exponent == 0 {
            let magnitude = Float(mantissa) * 0x1p-24  // zero or subnormal: exact in Float
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
    }
}
