import KVArtifact
import KVQuant

/// What the KV budget pass decides over: layers, context, the fixed segments, the menu, the budget.
///
/// Per layer the choice is (k, b_K, b_V, low): k high-precision tokens beyond the sinks and the
/// recent window, their key and value bits, and what happens to the remaining tokens (evicted,
/// or kept at 2 or 4 bits). Bytes are exact (KVQuant's segment layout); fidelity follows
/// Docs/kv-budgets.md:
///   f_l = R_l(s) + (R_l(s + k) − R_l(s))·(1 − e_hi) + (1 − R_l(s + k))·(1 − e_lo),
/// with s = sinks + window (fp16), e_hi = (e_K(b_K) + e_V(b_V))/2, e_lo likewise at the low bits
/// and e_lo = 1 for evicted tokens; R_l takes the fraction of the context's tokens.
public struct KVBudgetProblem: Sendable {
    /// One layer: its KV channels per token (KV heads × head dimension).
    public var channels: [Int]
    /// Tokens in the cache (the bound context length).
    public var context: Int
    /// Sequences (every byte count is multiplied by it).
    public var batch: Int
    public var sinkTokens: Int
    public var windowTokens: Int
    /// Quantisation group length.
    public var group: Int
    public var profile: KVProfile
    /// High-precision token counts allowed (the grid), ascending, each ≤ context − sinks − window.
    public var highGrid: [Int]
    /// Further token counts allowed per layer (those the baselines pick, so the menu contains their answers).
    public var extraHigh: [Set<Int>]
    /// The bits every token-allocation policy must use (`any`: the full menu for the exact allocator).
    public var precision: KVPrecision = .any
    /// Relative errors by [layer][bits] for keys and values (cached from the profile; 16 bits → 0).
    private var keyError: [[Int: Double]] = [], valueError: [[Int: Double]] = []

    public init(channels: [Int], context: Int, batch: Int = 1, sinkTokens: Int = 4, windowTokens: Int = 32,
                group: Int = 32, profile: KVProfile, gridPoints: Int = 64) {
        self.channels = channels
        self.context = context
        self.batch = batch
        self.sinkTokens = min(sinkTokens, context)
        self.windowTokens = min(windowTokens, max(0, context - min(sinkTokens, context)))
        self.group = group
        self.profile = profile.withLayerCurves()
        extraHigh = Array(repeating: [], count: channels.count)
        for l in channels.indices {
            keyError.append(Dictionary(uniqueKeysWithValues: KVBits.allCases.map { ($0.bits, profile.error(layer: l, bits: $0.bits, key: true)) }))
            valueError.append(Dictionary(uniqueKeysWithValues: KVBits.allCases.map { ($0.bits, profile.error(layer: l, bits: $0.bits, key: false)) }))
        }
        let free = max(0, context - self.sinkTokens - self.windowTokens)
        // An exact grid when small; else `gridPoints` points, denser at the small end (attention
        // concentrates there), always including 0 and all tokens.
        if free <= gridPoints {
            highGrid = Array(0...free)
        } else {
            var grid = Set([0, free])
            for i in 1..<gridPoints {
                let x = Double(i) / Double(gridPoints - 1)
                grid.insert(Int((Double(free) * x * x).rounded()))
            }
            highGrid = grid.sorted()
        }
    }

    /// Tokens after the sinks and the window.
    public var freeTokens: Int { context - sinkTokens - windowTokens }

    /// One layer's choice.
    public struct Choice: Sendable, Equatable, Hashable {
        public var high: Int
        public var keyBits: KVBits
        public var valueBits: KVBits
        /// Bits of the tokens beyond the high segment; nil = evicted.
        public var lowBits: KVBits?
        public init(high: Int, keyBits: KVBits, valueBits: KVBits, lowBits: KVBits?) {
            self.high = high
            self.keyBits = keyBits
            self.valueBits = valueBits
            self.lowBits = lowBits
        }
    }

    /// Bits a low segment may use (MiKV: 2 or 4; nil = evict).
    public static let lowOptions: [KVBits?] = [nil, .b2, .b4]

    /// Exact bytes of `choice` at layer `l` (keys + values of every segment, times the batch).
    public func bytes(_ choice: Choice, layer l: Int) -> Int {
        bytes(choice, layer: l, kind: .keys) + bytes(choice, layer: l, kind: .values)
    }

    /// Exact bytes of the keys or the values of `choice` at layer `l` (every segment, times the batch).
    public func bytes(_ choice: Choice, layer l: Int, kind: KVSegmentLayout.Kind) -> Int {
        let c = channels[l]
        func segment(_ tokens: Int, _ bits: KVBits) -> Int {
            tokens > 0 ? KVSegmentLayout(kind: kind, tokens: tokens, channels: c, bits: bits, group: group).bytes : 0
        }
        var total = segment(sinkTokens + windowTokens, .b16) + segment(choice.high, kind == .keys ? choice.keyBits : choice.valueBits)
        if let b = choice.lowBits { total += segment(freeTokens - choice.high, b) }
        return total * batch
    }

    /// Predicted fidelity of `choice` at layer `l` (see the type's comment), in [0, 1].
    public func fidelity(_ choice: Choice, layer l: Int) -> Double {
        let n = Double(max(1, context))
        let rS = profile.retention(layer: l, fraction: Double(sinkTokens + windowTokens) / n)
        let rK = profile.retention(layer: l, fraction: Double(sinkTokens + windowTokens + choice.high) / n)
        let eHigh = (keyError[l][choice.keyBits.bits]! + valueError[l][choice.valueBits.bits]!) / 2
        let eLow = choice.lowBits.map { (keyError[l][$0.bits]! + valueError[l][$0.bits]!) / 2 } ?? 1
        return rS + (rK - rS) * (1 - eHigh) + (1 - rK) * (1 - eLow)
    }

    /// What the allocator maximises the sum of: the layer's weight (the profile's sensitivity,
    /// mean 1; 1 without) times its predicted fidelity.
    public func value(_ choice: Choice, layer l: Int) -> Double {
        profile.weight(layer: l) * fidelity(choice, layer: l)
    }

    /// The smallest bytes any choice of layer `l` in the menu needs (sinks + window, the rest evicted, or at 2 bits under `mixed`).
    public func minimumBytes(layer l: Int) -> Int {
        guard let fixed = precision.bits else { return bytes(Choice(high: 0, keyBits: .b2, valueBits: .b2, lowBits: nil), layer: l) }
        return bytes(Choice(high: 0, keyBits: fixed.key, valueBits: fixed.value, lowBits: freeTokens == 0 ? nil : fixed.low), layer: l)
    }

    /// What the smallest layout keeps (for refusals).
    public var minimumDescription: String {
        switch precision {
        case .mixed: "sinks and recent window at fp16, every other token at 2 bits, in every layer"
        default: "sinks and recent window at fp16 in every layer, nothing else kept"
        }
    }

    /// The fp16 cache of every token (what `--kv-ratio` is a fraction of).
    public var fullBytes: Int {
        channels.indices.reduce(0) { $0 + bytes(Choice(high: freeTokens, keyBits: .b16, valueBits: .b16, lowBits: nil), layer: $1) }
    }

    /// Every choice of the menu for one layer (grid × bits² × low options).
    public func menu(layer l: Int) -> [Choice] {
        var out: [Choice] = []
        if let fixed = precision.bits {
            return Set(highGrid).union(extraHigh[l]).sorted().map {
                Choice(high: $0, keyBits: fixed.key, valueBits: fixed.value, lowBits: $0 == freeTokens ? nil : fixed.low)
            }
        }
        for k in Set(highGrid).union(extraHigh[l]).sorted() {
            for kb in KVBits.allCases {
                for vb in KVBits.allCases {
                    for low in Self.lowOptions where !(k == freeTokens && low != nil) && !(k == 0 && (kb != .b16 || vb != .b16)) {
                        out.append(Choice(high: k, keyBits: kb, valueBits: vb, lowBits: low))
                    }
                }
            }
        }
        return out
    }

    /// The layout record of a choice.
    public func layout(_ choice: Choice, layer l: Int) -> KVLayerLayout {
        var out = KVLayerLayout(layer: l, sinkTokens: sinkTokens, windowTokens: windowTokens, highTokens: choice.high,
                      keyBitsHigh: choice.keyBits.bits, valueBitsHigh: choice.valueBits.bits,
                      lowTokens: freeTokens - choice.high, lowBits: choice.lowBits?.bits ?? 0,
                      bytes: bytes(choice, layer: l), fidelity: fidelity(choice, layer: l))
        out.retainedMass = choice.lowBits == nil
            ? profile.retention(layer: l, fraction: Double(sinkTokens + windowTokens + choice.high) / Double(max(1, context))) : 1
        return out
    }
}
