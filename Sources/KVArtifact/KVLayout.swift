/// One layer's KV cache layout: what is kept, at which bits, and its exact bytes.
///
/// Tokens in cache order of importance: `sinkTokens` + `windowTokens` at fp16, then `highTokens`
/// at `keyBitsHigh`/`valueBitsHigh`, then `lowTokens` at `lowBits` (0 = evicted, no bytes).
/// Byte formulas: Docs/kv-layout.md (KVQuant.KVSegmentLayout).
public struct KVLayerLayout: Codable, Sendable, Equatable {
    public var layer: Int
    public var sinkTokens: Int
    public var windowTokens: Int
    public var highTokens: Int
    public var keyBitsHigh: Int
    public var valueBitsHigh: Int
    /// Tokens beyond the high segment (kept at `lowBits`, or evicted when `lowBits` is 0).
    public var lowTokens: Int
    public var lowBits: Int
    /// Exact bytes of the layer's cache (all segments, keys and values, times the batch).
    public var bytes: Int
    /// Predicted fidelity of the layer under the profile (Docs/kv-budgets.md).
    public var fidelity: Double
    /// Predicted attention mass of the tokens kept at any precision (R_l(sinks + window + high),
    /// or 1 when the rest is kept at low bits).
    public var retainedMass: Double?
    /// Bytes of this layer's cache per home tier, filled in once placement has run.
    public var home: [String: Int]?

    public init(layer: Int, sinkTokens: Int, windowTokens: Int, highTokens: Int, keyBitsHigh: Int, valueBitsHigh: Int,
                lowTokens: Int, lowBits: Int, bytes: Int, fidelity: Double) {
        self.layer = layer
        self.sinkTokens = sinkTokens
        self.windowTokens = windowTokens
        self.highTokens = highTokens
        self.keyBitsHigh = keyBitsHigh
        self.valueBitsHigh = valueBitsHigh
        self.lowTokens = lowTokens
        self.lowBits = lowBits
        self.bytes = bytes
        self.fidelity = fidelity
    }
}

/// The KV budget pass's result as the plan records it: per-layer layouts and how they compare.
public struct KVReport: Codable, Sendable, Equatable {
    /// The policy that chose the layouts (`exact` or a baseline).
    public var policy: String
    /// `optimal` (under the model), `feasible (gap …)`, or `heuristic`.
    public var status: String
    /// The byte budget and where it came from (`--kv-budget`, `--kv-ratio`, `--kv-tokens`, or the target).
    public var budget: Int
    public var budgetSource: String
    /// The profile used (a file, or `default` — Docs/kv-profile.md).
    public var profile: String
    public var layers: [KVLayerLayout]
    /// Σ bytes and mean predicted fidelity.
    public var bytes: Int
    public var fidelity: Double
    /// Every other policy on the same problem and budget.
    public var baselines: [KVBaseline]
    /// How often the pass ran again because placement could not keep its choice in the first
    /// backing tier, and why (nil when it ran once).
    public var replanned: String?
    /// The precision scheme every token-allocation policy used (`--kv-precision`; nil: any bits).
    public var precision: String?

    public init(policy: String, status: String, budget: Int, budgetSource: String, profile: String,
                layers: [KVLayerLayout], bytes: Int, fidelity: Double, baselines: [KVBaseline]) {
        self.policy = policy
        self.status = status
        self.budget = budget
        self.budgetSource = budgetSource
        self.profile = profile
        self.layers = layers
        self.bytes = bytes
        self.fidelity = fidelity
        self.baselines = baselines
    }
}

/// One baseline policy's totals (nil figures when it has no answer within the budget).
public struct KVBaseline: Codable, Sendable, Equatable {
    public var policy: String
    public var bytes: Int?
    public var fidelity: Double?
    public init(policy: String, bytes: Int?, fidelity: Double?) {
        self.policy = policy
        self.bytes = bytes
        self.fidelity = fidelity
    }
}
