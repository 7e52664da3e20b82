import KVQuant

/// Bit-width baselines: KIVI-2, KIVI-4 and a KVTuner-style preset (every token kept, quantised).
///
/// Rationale. These keep every token and save bytes by bits alone, the same bits in every layer:
/// KIVI quantises keys per channel and values per token at 2 or 4 bits (its fp16 residual is the
/// layout's recent window); the KVTuner-style preset takes, from KVTuner's pairs K8V8, K8V4,
/// K4V4, K4V2, K2V2, the best-fidelity one that fits. When the bits alone cannot meet the budget
/// the policy has no answer (nil), which the report states instead of inventing an eviction.
enum KVBitBaselines {
    static func choose(_ policy: KVPolicy, _ p: KVBudgetProblem, budget: Int) -> [KVBudgetProblem.Choice]? {
        let pairs: [(KVBits, KVBits)] = switch policy {
        case .kivi2: [(.b2, .b2)]
        case .kivi4: [(.b4, .b4)]
        case .kvtuner: [(.b8, .b8), (.b8, .b4), (.b4, .b4), (.b4, .b2), (.b2, .b2)]
        default: []
        }
        let layers = p.channels.indices
        let candidates = pairs.map { k, v in layers.map { _ in KVBudgetProblem.Choice(high: p.freeTokens, keyBits: k, valueBits: v, lowBits: nil) } }
            .filter { c in layers.reduce(0) { $0 + p.bytes(c[$1], layer: $1) } <= budget }
        return candidates.max { a, b in
            layers.reduce(0.0) { $0 + p.fidelity(a[$1], layer: $1) } < layers.reduce(0.0) { $0 + p.fidelity(b[$1], layer: $1) }
        }
    }
}
