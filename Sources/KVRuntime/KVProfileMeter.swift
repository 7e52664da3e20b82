import KVQuant

// Measures what the KV budget pass assumes (Docs/kv-profile.md): per layer and KV head, the
// retention curve R(x) — the attention mass the most attended fraction x of the tokens capture —
// and the relative error of keys and values quantised at 8, 4 and 2 bits.
//
// Retention. At every decode step with at least `minimumTokens` tokens in the cache, the weights
// of a KV head are the mean of its GQA group's query-head softmax weights (they sum to 1, as each
// head's do). Sorted descending, their prefix sums give the mass of the top k tokens; R(x) takes
// k = ⌈x·n⌉ of the n tokens, so the curve is defined at any context length. The profile's curve
// is the mean over steps (and windows) at a fixed grid of fractions: an average of
// non-decreasing curves through (0, 0) and (1, 1), so it is one too.
//
// Quantisation error. At the end of a window the cache's keys and values (post-RoPE, as cached)
// are quantised exactly as the runtime stores them — KIVI grouping: keys per channel over groups
// of 32 tokens, values per token over groups of 32 channels (KVPack) — and dequantised; the
// error is ‖x̂ − x‖ / ‖x‖ over every element of the layer, accumulated as Σ‖x̂ − x‖² / Σ‖x‖² over
// windows. Only whole 32-token groups are measured (the runtime keeps a partial group in fp16).

/// Accumulates a model's KV profile from observed attention weights and cached keys and values.
public struct KVProfileMeter: Sendable {
    /// The token fractions every retention curve is measured at.
    public static let fractions: [Double] = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1]
    /// The bit widths whose quantisation error is measured.
    public static let bitWidths: [KVBits] = [.b8, .b4, .b2]

    public let kvHeads: Int
    public let group: Int
    public let minimumTokens: Int
    /// [layer][kv head][fraction]: Σ over counted steps of R at that fraction.
    private var massSums: [[[Double]]]
    private var steps: [[Int]]
    /// [layer][bits]: (Σ squared error, Σ squared value), keys and values.
    private var keySquares: [[(error: Double, value: Double)]]
    private var valueSquares: [[(error: Double, value: Double)]]

    /// A meter for `layers` attention layers of `kvHeads` KV heads with `group` query heads each.
    public init(layers: Int, kvHeads: Int, group: Int, minimumTokens: Int = 32) {
        self.kvHeads = kvHeads
        self.group = group
        self.minimumTokens = minimumTokens
        massSums = Array(repeating: Array(repeating: Array(repeating: 0, count: Self.fractions.count), count: kvHeads), count: layers)
        steps = Array(repeating: Array(repeating: 0, count: kvHeads), count: layers)
        keySquares = Array(repeating: Array(repeating: (0, 0), count: Self.bitWidths.count), count: layers)
        valueSquares = keySquares
    }

    /// One decode step of `layer`: `weights[h]` are query head h's softmax weights over the cache.
    public mutating func observe(layer: Int, weights: [[Double]]) {
        precondition(weights.count == kvHeads * group, "observe: \(weights.count) query heads, expected \(kvHeads * group)")
        let n = weights[0].count
        guard n >= minimumTokens else { return }
        for g in 0..<kvHeads {
            var mass = [Double](repeating: 0, count: n)
            for h in g * group..<(g + 1) * group {
                for t in 0..<n { mass[t] += weights[h][t] }
            }
            mass.sort(by: >)
            let total = mass.reduce(0, +)
            var prefix = [Double](repeating: 0, count: n + 1)
            for t in 0..<n { prefix[t + 1] = prefix[t] + mass[t] / total }
            for (i, x) in Self.fractions.enumerated() {
                let k = min(n, Int((x * Double(n) - 1e-9).rounded(.up)))
                massSums[layer][g][i] += x >= 1 ? 1 : prefix[max(0, k)]
            }
            steps[layer][g] += 1
        }
    }

    /// The cache of `layer` at the end of a window: `keys`/`values` token-major, `tokens` × `channels`.
    public mutating func observeCache(layer: Int, keys: [Float], values: [Float], tokens: Int, channels: Int) {
        let whole = tokens / 32 * 32
        guard whole > 0 else { return }
        let k = Array(keys[0..<whole * channels]), v = Array(values[0..<whole * channels])
        for (b, bits) in Self.bitWidths.enumerated() {
            for (kind, x) in [(KVSegmentLayout.Kind.keys, k), (.values, v)] {
                let layout = KVSegmentLayout(kind: kind, tokens: whole, channels: channels, bits: bits)
                let back = KVPack.unpack(KVPack.pack(x, layout), layout)
                var e = 0.0, s = 0.0
                for i in x.indices {
                    let d = Double(back[i]) - Double(x[i])
                    e += d * d
                    s += Double(x[i]) * Double(x[i])
                }
                if kind == .keys { keySquares[layer][b].error += e; keySquares[layer][b].value += s }
                else { valueSquares[layer][b].error += e; valueSquares[layer][b].value += s }
            }
        }
    }

    /// Decode steps counted per layer and KV head.
    public var countedSteps: [[Int]] { steps }

    /// [layer][kv head]: the retention curve as (fraction, mass) points (nil when no step was counted).
    public var retention: [[[[Double]]]?] {
        massSums.indices.map { l in
            guard steps[l].allSatisfy({ $0 > 0 }) else { return nil }
            return (0..<kvHeads).map { g in
                Self.fractions.indices.map { i in
                    // Rounded to 6 digits: the profile is a measurement, not a bit pattern; monotone after rounding.
                    [Self.fractions[i], ((massSums[l][g][i] / Double(steps[l][g])) * 1e6).rounded() / 1e6]
                }
            }
        }
    }

    /// [layer]: relative key and value errors at 8, 4 and 2 bits (keyed "8", "4", "2"; nil when no cache was seen).
    public var errors: [(keys: [String: Double], values: [String: Double])?] {
        keySquares.indices.map { l in
            guard keySquares[l].allSatisfy({ $0.value > 0 }), valueSquares[l].allSatisfy({ $0.value > 0 }) else { return nil }
            func relative(_ s: (error: Double, value: Double)) -> Double { ((s.error / s.value).squareRoot() * 1e6).rounded() / 1e6 }
            return (Dictionary(uniqueKeysWithValues: Self.bitWidths.enumerated().map { ("\($1.rawValue)", relative(keySquares[l][$0])) }),
                    Dictionary(uniqueKeysWithValues: Self.bitWidths.enumerated().map { ("\($1.rawValue)", relative(valueSquares[l][$0])) }))
        }
    }
}
