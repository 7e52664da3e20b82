import Foundation

/// Per-layer attention retention and quantisation error: what the KV budget pass optimises against.
///
/// `retention` is R_l as points (fraction of the context's tokens, fraction of attention mass
/// they capture when they are the most attended ones), increasing, from (0, 0) to (1, 1);
/// between points R is linear. `keyError`/`valueError` are relative errors per bit width
/// ("8", "4", "2"; 16 is exact). A layer may instead (or also) give `heads`: one retention curve
/// per KV head; every head of a layer keeps the same number of tokens, each its own most attended
/// ones, so the layer's curve is then the mean of its heads' curves. Format: Docs/kv-profile.md.
public struct KVProfile: Codable, Sendable, Equatable {
    /// One layer's curves.
    public struct Layer: Codable, Sendable, Equatable {
        /// The layer's curve; required unless `heads` is given (then it is ignored).
        public var retention: [[Double]]?
        /// Per-KV-head curves (optional).
        public var heads: [[[Double]]]?
        public var keyError: [String: Double]
        public var valueError: [String: Double]
        public init(retention: [[Double]]?, heads: [[[Double]]]? = nil, keyError: [String: Double], valueError: [String: Double]) {
            self.retention = retention
            self.heads = heads
            self.keyError = keyError
            self.valueError = valueError
        }
    }

    public var version: Int
    public var model: String
    /// The context length the curves were measured at (informational; curves are in fractions).
    public var referenceContext: Int
    public var layers: [Layer]
    /// Per-layer sensitivity (optional): how much a unit of predicted fidelity lost in layer l
    /// costs, relative to the other layers — measured by `kvplan profile --sensitivity` as the
    /// loss increase when only that layer is compressed, per unit of its predicted fidelity loss.
    /// The allocator maximises Σ_l w_l·f_l; absent, every layer weighs 1. Any positive scale.
    public var layerWeights: [Double]?

    public init(version: Int = 1, model: String, referenceContext: Int, layers: [Layer]) {
        self.version = version
        self.model = model
        self.referenceContext = referenceContext
        self.layers = layers
    }

    /// Layer `l`'s weight in the objective, the weights scaled to mean 1 (1 without weights).
    public func weight(layer l: Int) -> Double {
        guard let w = layerWeights, w.count == layers.count, l < w.count else { return 1 }
        let mean = w.reduce(0, +) / Double(w.count)
        return mean > 0 ? w[l] / mean : 1
    }

    /// R_l(fraction): the attention mass the most attended `fraction` of tokens capture.
    public func retention(layer l: Int, fraction: Double) -> Double {
        if let heads = layers[l].heads, !heads.isEmpty {
            return heads.reduce(0) { $0 + Self.interpolate($1, at: fraction) } / Double(heads.count)
        }
        return Self.interpolate(layers[l].retention ?? [], at: fraction)
    }

    /// The same profile with every per-head layer replaced by its layer curve: the mean of
    /// piecewise-linear curves is piecewise linear with breakpoints at the union of theirs, so
    /// this is exact and makes R_l one interpolation instead of one per head.
    public func withLayerCurves() -> KVProfile {
        var out = self
        for (l, layer) in layers.enumerated() {
            guard let heads = layer.heads, !heads.isEmpty else { continue }
            let xs = Set(heads.flatMap { $0.map { $0[0] } }).sorted()
            out.layers[l].retention = xs.map { [$0, retention(layer: l, fraction: $0)] }
            out.layers[l].heads = nil
        }
        return out
    }

    /// A piecewise-linear curve through `points` at `fraction` (the identity when there are none).
    static func interpolate(_ points: [[Double]], at fraction: Double) -> Double {
        let x = min(1, max(0, fraction))
        guard var previous = points.first else { return x }
        if x <= previous[0] { return previous[0] > 0 ? previous[1] * x / previous[0] : previous[1] }
        for point in points.dropFirst() {
            if x <= point[0] {
                let span = point[0] - previous[0]
                return span > 0 ? previous[1] + (point[1] - previous[1]) * (x - previous[0]) / span : point[1]
            }
            previous = point
        }
        return previous[1]
    }

    /// The relative error of keys (`key: true`) or values at `bits` (0 for 16 bits).
    public func error(layer l: Int, bits: Int, key: Bool) -> Double {
        guard bits < 16 else { return 0 }
        let table = key ? layers[l].keyError : layers[l].valueError
        return table[String(bits)] ?? 1
    }

    /// Checks the curves and weights: at least one layer, points increasing in both coordinates within [0, 1], errors in [0, 1].
    public func validate() throws(KVProfileError) {
        guard !layers.isEmpty else { throw KVProfileError("the profile has no layers") }
        if let w = layerWeights {
            guard w.count == layers.count else {
                throw KVProfileError("layerWeights: \(w.count) weights for \(layers.count) layers (one per layer)")
            }
            for (l, x) in w.enumerated() where !(x.isFinite && x > 0) {
                throw KVProfileError("layerWeights[\(l)]: a weight must be a finite number > 0, got \(x)")
            }
        }
        for (l, layer) in layers.enumerated() {
            var curves: [(String, [[Double]])] = layer.retention.map { [("layers[\(l)].retention", $0)] } ?? []
            if let heads = layer.heads {
                guard !heads.isEmpty else { throw KVProfileError("layers[\(l)].heads: give at least one head's curve or leave it out") }
                curves = heads.enumerated().map { ("layers[\(l)].heads[\($0.offset)]", $0.element) }
            }
            guard !curves.isEmpty else { throw KVProfileError("layers[\(l)]: a 'retention' curve or per-head 'heads' curves are required") }
            for (path, curve) in curves {
                guard !curve.isEmpty else { throw KVProfileError("\(path): a curve needs at least one point") }
                var last = [0.0, 0.0]
                for (k, p) in curve.enumerated() {
                    guard p.count == 2, p.allSatisfy(\.isFinite), p[0] >= last[0], p[1] >= last[1], p[0] <= 1, p[1] <= 1 else {
                        throw KVProfileError("\(path)[\(k)]: points must be [fraction, mass] pairs, non-decreasing, within [0, 1]")
                    }
                    last = p
                }
            }
            for (name, table) in [("keyError", layer.keyError), ("valueError", layer.valueError)] {
                for bits in ["8", "4", "2"] {
                    guard let e = table[bits], e.isFinite, e >= 0, e <= 1 else {
                        throw KVProfileError("layers[\(l)].\(name)[\"\(bits)\"]: a relative error in [0, 1] is required")
                    }
                }
            }
        }
    }

    /// The documented default when no profile is given (Docs/kv-profile.md): retention
    /// R_l(x) = x^α_l with α_l from 0.5 at the first and last layers down to 0.15 in the middle
    /// (middle layers concentrate their attention most); key errors 0.002 / 0.03 / 0.15 and
    /// value errors 0.001 / 0.015 / 0.08 at 8 / 4 / 2 bits (keys tolerate fewer bits less well).
    public static func standard(layers: Int, model: String) -> KVProfile {
        let fractions = [0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
        return KVProfile(model: model, referenceContext: 4096, layers: (0..<layers).map { l in
            let middle = layers > 1 ? sin(Double.pi * Double(l) / Double(layers - 1)) : 1
            let alpha = 0.5 - 0.35 * middle
            return Layer(retention: fractions.map { [$0, pow($0, alpha)] },
                         keyError: ["8": 0.002, "4": 0.03, "2": 0.15], valueError: ["8": 0.001, "4": 0.015, "2": 0.08])
        })
    }
}

/// A profile that cannot be used, with where.
public struct KVProfileError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
