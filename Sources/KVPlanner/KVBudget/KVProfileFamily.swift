import Foundation
import KVAlloc

// The bundled profiles: named, reproducible families of per-layer curves that `kvplan bench kv`,
// the tests and users (`--profile-family`) compare policies on before a measured profile exists.
// Each family encodes one claim from the literature about how layers differ, so that a policy
// built on that claim (PyramidKV: attention concentrates with depth; PrefixKV: layers differ in
// an arbitrary, measured way) meets the profile where it should do best. None is a measurement;
// Docs/kv-profile.md says how each is made.

/// Named synthetic profile families (Docs/kv-profile.md, "Bundled profiles").
public enum KVProfileFamily: String, CaseIterable, Sendable {
    /// The default: the middle layers concentrate their attention most (α = 0.5 − 0.35·sin).
    case standard
    /// Every layer alike (α = 0.3): uniform token budgets are the right shape.
    case flat
    /// Attention concentrates with depth (α from 0.5 to 0.1): PyramidKV's assumption holds.
    case deepening
    /// Keep fractions at equal retained mass (0.9) matched to PrefixKV's LLaVA-1.5-7B figures at a
    /// 50% budget: the first layer keeps 89%, layer 21 of 32 keeps 24%, the last keeps 72%.
    case prefixkv = "prefixkv-shape"
    /// Seeded: α per layer uniform in [0.08, 0.6], errors scaled per layer by a factor in [0.5, 2].
    case random
    /// Per-KV-head curves: in every layer half the heads concentrate (α = 0.1), half spread (α = 0.6).
    case heads

    /// The family's profile for a model with `layers` attention layers of `kvHeads` KV heads each.
    public func profile(layers: Int, kvHeads: Int, model: String, seed: UInt64 = 1) -> KVProfile {
        let fractions = [0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
        func curve(_ alpha: Double) -> [[Double]] { fractions.map { [$0, pow($0, alpha)] } }
        let keyError = ["8": 0.002, "4": 0.03, "2": 0.15]
        let valueError = ["8": 0.001, "4": 0.015, "2": 0.08]
        let depth = { (l: Int) in layers > 1 ? Double(l) / Double(layers - 1) : 0 }
        var rng = SplitMix64(seed: seed)
        let result: [KVProfile.Layer] = (0..<layers).map { l in
            switch self {
            case .standard:
                return KVProfile.standard(layers: layers, model: model).layers[l]
            case .flat:
                return KVProfile.Layer(retention: curve(0.3), keyError: keyError, valueError: valueError)
            case .deepening:
                return KVProfile.Layer(retention: curve(0.5 - 0.4 * depth(l)), keyError: keyError, valueError: valueError)
            case .prefixkv:
                // Keep fraction x_l (linear between the three published anchors) reaches mass 0.9:
                // x_l^α = 0.9 ⇒ α = ln 0.9 / ln x_l.
                let t = depth(l), knee = 21.0 / 31.0
                let keep = t <= knee ? 0.89 + (0.24 - 0.89) * t / knee : 0.24 + (0.72 - 0.24) * (t - knee) / (1 - knee)
                return KVProfile.Layer(retention: curve(log(0.9) / log(keep)), keyError: keyError, valueError: valueError)
            case .random:
                let alpha = Double.random(in: 0.08...0.6, using: &rng)
                let scale = Double.random(in: 0.5...2, using: &rng)
                return KVProfile.Layer(retention: curve(alpha), keyError: keyError.mapValues { min(1, $0 * scale) },
                                       valueError: valueError.mapValues { min(1, $0 * scale) })
            case .heads:
                let heads = (0..<max(1, kvHeads)).map { curve($0 < (kvHeads + 1) / 2 ? 0.1 : 0.6) }
                return KVProfile.Layer(retention: nil, heads: heads, keyError: keyError, valueError: valueError)
            }
        }
        return KVProfile(model: "\(model) (\(rawValue) profile)", referenceContext: 4096, layers: result)
    }
}
