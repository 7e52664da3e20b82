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
        let c = layout.channels
        var x = Array(repeating: Float(0), count: layout.tokens * c)
        var at = 0
        guard layout.bits.isQuantised else {
            for k in x.indices { x[k] = Float(readHalf(bytes, &at)) }
            return x
        }
        switch layout.kind {
        case .keys:
            var t0 = 0
            for g in layout.groupLengths {
                for ch in 0..<c {
                    for (k, v) in unpackGroup(bytes, &at, count: g, bits: layout.bits).enumerated() { x[(t0 + k) * c + ch] = v }
                }
                t0 += g
            }
        case .values:
            for t in 0..<layout.tokens {
                var c0 = 0
                for g in layout.groupLengths {
                    for (k, v) in unpackGroup(bytes, &at, count: g, bits: layout.bits).enumerated() { x[t * c + c0 + k] = v }
                    c0 += g
                }
            }
        }
        return x
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
            let q = s > 0 ? min(bits.maxLevel, max(0, Int(((v - z) / s).rounded()))) : 0
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

    static func unpackGroup(_ bytes: [UInt8], _ at: inout Int, count: Int, bits: KVBits) -> [Float] {
        let s = Float(readHalf(bytes, &at)), z = Float(readHalf(bytes, &at))
        var out: [Float] = []
        out.reserveCapacity(count)
        var accumulator = 0, available = 0
        let mask = bits.maxLevel
        for _ in 0..<count {
            while available < bits.bits {
                accumulator |= Int(bytes[at]) << available
                at += 1
                available += 8
            }
            out.append(Float(accumulator & mask) * s + z)
            accumulator >>= bits.bits
            available -= bits.bits
        }
        return out
    }

    static func appendHalf(_ h: Float16, to out: inout [UInt8]) {
        let b = h.bitPattern
        out.append(UInt8(b & 0xFF))
        out.append(UInt8(b >> 8))
    }

    static func readHalf(_ bytes: [UInt8], _ at: inout Int) -> Float16 {
        defer { at += 2 }
        return Float16(bitPattern: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
    }
}
