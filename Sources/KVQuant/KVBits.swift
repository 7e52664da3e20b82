/// Bit widths of a KV segment.
///
/// 16 means unquantised (fp16); 8, 4 and 2 are asymmetric group quantisation with an fp16 scale
/// and an fp16 zero point per group (KIVI's scheme: keys grouped along tokens per channel,
/// values grouped along channels per token; see KVSegmentLayout).
public enum KVBits: Int, CaseIterable, Sendable, Codable, Comparable {
    case b2 = 2, b4 = 4, b8 = 8, b16 = 16

    /// Bits per element.
    public var bits: Int { rawValue }
    /// Whether elements are group-quantised (everything but 16).
    public var isQuantised: Bool { self != .b16 }
    /// The largest quantised level, 2^bits − 1.
    public var maxLevel: Int { (1 << rawValue) - 1 }

    public static func < (a: KVBits, b: KVBits) -> Bool { a.rawValue < b.rawValue }
}
