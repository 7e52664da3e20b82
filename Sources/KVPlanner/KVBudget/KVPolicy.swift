/// How per-layer KV choices are made (`--kv-policy`): the exact allocator or a published baseline.
public enum KVPolicy: String, CaseIterable, Sendable {
    /// The multiple-choice knapsack (KVBudgetSolver): tokens, bits and low precision per layer.
    case exact
    /// The same fp16 token count in every layer, the rest evicted.
    case uniform
    /// PyramidKV: token budgets falling linearly with depth (β = 20), fp16, rest evicted.
    case pyramid
    /// PrefixKV: one retained-mass threshold for all layers, found by binary search, fp16, rest evicted.
    case prefixkv
    /// CAKE-style: token budgets proportional to a layer's attention dispersion, fp16, rest evicted.
    case cake
    /// KIVI at 2 bits: every token kept, keys and values at 2 bits (fails when that exceeds the budget).
    case kivi2
    /// KIVI at 4 bits.
    case kivi4
    /// KVTuner-style preset: the best of K8V8, K8V4, K4V4, K4V2, K2V2 for every layer that fits, every token kept.
    case kvtuner

    /// The baselines (everything but the exact allocator).
    public static var baselines: [KVPolicy] { allCases.filter { $0 != .exact } }
    /// The policies that keep every token and choose bits only (a precision scheme does not apply).
    public static let bitsOnly: [KVPolicy] = [.kivi2, .kivi4, .kvtuner]
}
