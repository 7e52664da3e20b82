import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import KVRuntime

// How much each layer's lost fidelity costs in measured loss: `kvplan profile --sensitivity F`.
//
// Rationale. The KV objective (Docs/kv-budgets.md) adds the layers' predicted fidelities with equal
// weight, and on the trained tiny-llama that loses to uniform allocation (Docs/kv-results.md): it
// moves tokens to the layer whose attention is spread, while the measurement says mass lost in the
// concentrated layers costs more. So measure the exchange rate: stream the calibration windows
// once with every layer's cache complete (fp16), then once per layer with only that layer keeping
// the fraction F of its tokens (fp16, the rest evicted, as uniform allocation would at that
// budget); the loss increase Δ_l (bits per byte) divided by the fidelity the profile predicts
// that layer loses at the probe, 1 − f_l, is its weight. A first-order (linear) model: it
// assumes the cost of lost fidelity is proportional within a layer and additive across layers.
// Negative Δ (noise) counts as 0; every weight is floored at 5% of the largest so no layer is
// free; weights are scaled to mean 1. All zero (the probe evicts nothing that matters): no weights.

/// Per-layer sensitivity weights measured through the packed cache.
enum LayerSensitivity {
    /// Every layer's fp16 layout under uniform allocation at `ratio` of the fp16 cache (uniform
    /// reads no profile figures, so a standard profile gives the same layouts: used to refuse an
    /// impossible probe before the long measurement).
    static func uniformLayouts(graph: Graph, profile: KVProfileSource = .standard, ratio: Double, flag: Double) throws -> [KVLayerLayout] {
        let target = try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))
        do {
            return try KVBudgetPass.plan(graph: graph, target: target, policy: .uniform, source: .ratio(ratio), profile: profile, precision: .evict).0.layers
        } catch {
            throw UserError("--sensitivity \(flag): \(error.message)")
        }
    }

    /// The weights (nil when nothing measurable) and one printable line per layer.
    static func measure(profile: KVProfile, graph: Graph, program: ModelProgram, lockstep: ModelProgram?, weights: [String: [Float]], windows: [[UInt8]],
                        fraction: Double, threads: Int, progress: ProgressLine) throws -> (weights: [Double]?, rows: [String]) {
        let full = try uniformLayouts(graph: graph, profile: .given(profile, name: "measured"), ratio: 1, flag: fraction)
        let probe = try uniformLayouts(graph: graph, profile: .given(profile, name: "measured"), ratio: fraction, flag: fraction)
        let runs: [[KVLayerLayout]?] = [full] + probe.indices.map { l in
            var one = full
            one[l] = probe[l]
            return one
        }
        progress.stage("sensitivity: \(runs.count) runs over \(windows.count) window(s)")
        let outcomes = StreamingLoss.bitsPerByte(program: program, lockstep: lockstep, weights: weights, runs: runs, windows: windows, threads: threads) { done in
            progress.detail("\(done)/\(runs.count) runs")
        }
        let bits = try outcomes.map { outcome -> Double in
            switch outcome {
            case let .success(b): return b
            case let .failure(error): throw UserError("--sensitivity: a run failed: \(error.message)")
            }
        }
        let deltas = probe.indices.map { bits[$0 + 1] - bits[0] }
        let raw = probe.indices.map { l in max(0, deltas[l]) / max(1e-6, 1 - probe[l].fidelity) }
        var rows = [String(format: "sensitivity: every layer complete (fp16) %.5f bits/byte; one layer at %.0f%% of its tokens:", bits[0], fraction * 100)]
        guard let top = raw.max(), top > 0 else {
            rows.append("  no layer's loss rose measurably: no layerWeights written")
            return (nil, rows)
        }
        let floored = raw.map { max($0, 0.05 * top) }
        let mean = floored.reduce(0, +) / Double(floored.count)
        let weights = floored.map { ($0 / mean * 1e4).rounded() / 1e4 }
        for l in probe.indices {
            rows.append(String(format: "  layer %d: %d tokens kept, predicted fidelity %.4f, loss %+.5f bits/byte → weight %.4f",
                               l, probe[l].sinkTokens + probe[l].windowTokens + probe[l].highTokens, probe[l].fidelity, deltas[l], weights[l]))
        }
        return (weights, rows)
    }
}
