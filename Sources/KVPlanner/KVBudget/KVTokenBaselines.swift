/// Token-budget baselines: uniform, PyramidKV, PrefixKV, CAKE (fp16 kept tokens, the rest evicted,
/// unless the problem fixes another precision scheme).
///
/// Rationale. Each of these fixes *how* a layer's token budget follows from one scalar (a token
/// count, a mean budget, a mass threshold, a proportionality factor) and finds the largest
/// scalar whose total bytes fit, by binary search; kept tokens are fp16 and the rest evicted,
/// as in the papers. Sinks and the recent window are kept by every policy (the layout's fixed part).
enum KVTokenBaselines {
    /// The choices of a token-budget policy within `budget`, or nil when even its smallest does not fit.
    static func choose(_ policy: KVPolicy, _ p: KVBudgetProblem, budget: Int) -> [KVBudgetProblem.Choice]? {
        let layers = p.channels.count
        let free = p.freeTokens
        let s = p.sinkTokens + p.windowTokens
        let n = Double(max(1, p.context))
        let bits = p.precision.bits ?? KVPrecision.evict.bits!
        func choices(_ high: [Int]) -> [KVBudgetProblem.Choice] {
            high.map {
                let k = min(free, max(0, $0))
                return KVBudgetProblem.Choice(high: k, keyBits: bits.key, valueBits: bits.value, lowBits: k == free ? nil : bits.low)
            }
        }
        func fits(_ high: [Int]) -> Bool {
            choices(high).enumerated().reduce(0) { $0 + p.bytes($1.element, layer: $1.offset) } <= budget
        }
        /// Per-layer high tokens as a function of a scalar x ∈ [0, 1] (monotone in x).
        let schedule: (Double) -> [Int]
        switch policy {
        case .uniform:
            schedule = { x in Array(repeating: Int((x * Double(free)).rounded(.down)), count: layers) }
        case .pyramid:
            // Mean per-layer budget B (tokens, incl. the fixed part): min = B/β, max = 2B − min,
            // layer l gets max − l·(max − min)/(L − 1).
            schedule = { x in
                let mean = x * Double(p.context), low = mean / 20, high = 2 * mean - low
                return (0..<layers).map { l in
                    let tokens = layers > 1 ? high - Double(l) * (high - low) / Double(layers - 1) : mean
                    return Int(tokens.rounded(.down)) - s
                }
            }
        case .prefixkv:
            // Each layer keeps the shortest prefix of its sorted tokens reaching mass x.
            schedule = { x in
                (0..<layers).map { l in
                    var lo = 0, hi = free
                    while lo < hi {
                        let mid = (lo + hi) / 2
                        if p.profile.retention(layer: l, fraction: Double(s + mid) / n) >= x { hi = mid } else { lo = mid + 1 }
                    }
                    return lo
                }
            }
        case .cake:
            // Preference: attention dispersion, 1 − R_l(10% of tokens) (a flat layer needs more tokens).
            let preference = (0..<layers).map { 1 - p.profile.retention(layer: $0, fraction: 0.1) + 1e-3 }
            let top = preference.max() ?? 1
            schedule = { x in preference.map { Int((x * $0 / top * Double(free)).rounded(.down)) } }
        default:
            return nil
        }
        guard fits(schedule(0)) else { return nil }
        var lo = 0.0, hi = 1.0
        if fits(schedule(1)) { return choices(schedule(1)) }
        for _ in 0..<60 {
            let mid = (lo + hi) / 2
            if fits(schedule(mid)) { lo = mid } else { hi = mid }
        }
        return choices(schedule(lo))
    }
}
