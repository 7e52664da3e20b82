/// The byte layout of one KV segment (the keys or the values of `tokens` tokens of one layer), and
/// its exact size.
///
/// Layout (every multi-byte number little-endian):
/// - 16 bits: fp16 elements, token-major (`[token][channel]`).
/// - keys at 8/4/2 bits (KIVI: per channel, in groups of `group` tokens): for each token group in
///   order, for each channel: fp16 scale, fp16 zero point, then that channel's `g` codes packed
///   LSB-first (`ceil(g·bits/8)` bytes), where `g` is `group`, or fewer for the last, partially
///   filled group. A layer's cache (PackedKVCache) stores the channel rows head-major — for each
///   KV head, for each token group, that head's rows — so a KV head's keys are contiguous; the
///   bytes are the same.
/// - values at 8/4/2 bits (per token, in groups of `group` channels): for each token, for each
///   channel group: fp16 scale, fp16 zero point, then the group's codes packed LSB-first; the last
///   channel group is partial when `channels` is not a multiple of `group`. A layer's cache
///   (PackedKVCache) stores these rows head-major when its head dimension is a multiple of
///   `group` — for each KV head, for each token, that head's groups — so a KV head's rows are
///   contiguous; the bytes are the same.
/// A code q stands for q·scale + zero; scale = (max − min)/(2^bits − 1), zero = min, both rounded
/// to fp16 before the codes are chosen.
public struct KVSegmentLayout: Sendable, Equatable, Hashable {
    /// Keys (grouped along tokens) or values (grouped along channels).
    public enum Kind: String, Sendable, Codable { case keys, values }

    public var kind: Kind
    public var tokens: Int
    /// Channels per token (KV heads × head dimension).
    public var channels: Int
    public var bits: KVBits
    /// Group length (tokens for keys, channels for values); KIVI uses 32.
    public var group: Int

    public init(kind: Kind, tokens: Int, channels: Int, bits: KVBits, group: Int = 32) {
        precondition(tokens >= 0 && channels >= 0 && group >= 1, "a KV segment needs tokens ≥ 0, channels ≥ 0, group ≥ 1")
        self.kind = kind
        self.tokens = tokens
        self.channels = channels
        self.bits = bits
        self.group = group
    }

    /// Bytes of one group's header: fp16 scale + fp16 zero point.
    public static let groupHeaderBytes = 4

    /// Bytes holding `count` codes of `bits` bits, packed.
    @inlinable public static func packedBytes(_ count: Int, bits: Int) -> Int { (count * bits + 7) / 8 }

    /// Bytes of one quantised group of `count` elements (header + packed codes).
    func groupBytes(_ count: Int) -> Int { Self.groupHeaderBytes + Self.packedBytes(count, bits: bits.bits) }

    /// Lengths of the groups along the grouped axis (all `group`, the last one possibly shorter).
    var groupLengths: [Int] {
        let axis = kind == .keys ? tokens : channels
        var out = Array(repeating: group, count: axis / group)
        if axis % group != 0 { out.append(axis % group) }
        return out
    }

    /// The exact size in bytes.
    public var bytes: Int {
        guard bits.isQuantised else { return tokens * channels * 2 }
        let axis = kind == .keys ? tokens : channels
        let other = kind == .keys ? channels : tokens
        let full = axis / group, rest = axis % group
        return other * (full * groupBytes(group) + (rest > 0 ? groupBytes(rest) : 0))
    }
}
