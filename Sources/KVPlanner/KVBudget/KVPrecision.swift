import KVQuant

/// The bits a policy may give kept and remaining tokens (`--kv-precision`), so allocation and
/// precision can be compared separately: every token-allocation policy, the exact one included,
/// lays out the cache under the same scheme.
public enum KVPrecision: String, CaseIterable, Sendable {
    /// Any bits of the menu (the exact allocator's default); the token baselines keep fp16 and evict.
    case any
    /// Kept tokens fp16, the rest evicted (the token-budget papers).
    case evict
    /// Kept tokens at K2/V2 (KIVI-2), the rest evicted.
    case kivi2
    /// Kept tokens at K4/V4 (KIVI-4), the rest evicted.
    case kivi4
    /// Kept tokens at K8/V4, the rest at 2 bits (MiKV-style mixed precision, nothing evicted).
    case mixed

    /// (key bits, value bits, bits of the rest — nil evicted) of a fixed scheme; nil for `any`.
    public var bits: (key: KVBits, value: KVBits, low: KVBits?)? {
        switch self {
        case .any: nil
        case .evict: (.b16, .b16, nil)
        case .kivi2: (.b2, .b2, nil)
        case .kivi4: (.b4, .b4, nil)
        case .mixed: (.b8, .b4, .b2)
        }
    }
}
