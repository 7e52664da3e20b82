import ArgumentParser
import Foundation
import KVGraph
import KVPlanner

/// `kvplan bench kv`: every KV policy at equal budgets, on real model shapes and every bundled profile.
struct KVBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Predicted fidelity of every KV policy at equal byte budgets, and the exact allocator's time.",
        discussion: """
        For each model (a .graph or HF config.json, at --context), bundled profile family and \
        budget (a fraction of the fp16 cache), every policy lays out the cache within the budget; \
        reported: mean predicted fidelity per policy (— where a bits-only policy cannot fit), the \
        exact allocator's margin over the best baseline, its status and its time (profile fronts, \
        dynamic program and every baseline's layout included in the menu).
        """
    )

    @Option(help: "Models (paths), comma-separated.")
    var models: String = "Graphs/tiny-llama.graph,Graphs/hf-configs/llama-2-7b.json,Graphs/hf-configs/llama-3.1-8b.json,Graphs/hf-configs/llama-2-70b.json"

    @Option(help: "Profile families, comma-separated.")
    var profiles: String = KVProfileFamily.allCases.map(\.rawValue).joined(separator: ",")

    @Option(help: "Budgets as fractions of the fp16 cache, comma-separated.")
    var ratios: String = "0.05,0.1,0.2,0.3,0.5"

    @Option(help: "Precision schemes every token-allocation policy uses, comma-separated: \(KVPrecision.allCases.map(\.rawValue).joined(separator: ", ")).")
    var precisions: String = "any,evict,mixed"

    @Option(help: "Context length the caches hold (binds 'ctx'; default: the model's own).")
    var context: Int?

    func run() throws {
        try reportingBadInput(execute)
    }

    private func execute() throws {
        var families: [KVProfileFamily] = []
        for name in profiles.split(separator: ",").map(String.init) {
            guard let f = KVProfileFamily(rawValue: name) else {
                throw UserError("--profiles: expected \(KVProfileFamily.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            families.append(f)
        }
        var budgets: [Double] = []
        for text in ratios.split(separator: ",") {
            guard let r = Double(text), r > 0, r <= 1 else { throw UserError("--ratios: expected fractions in (0, 1], got '\(text)'") }
            budgets.append(r)
        }
        var schemes: [KVPrecision] = []
        for name in precisions.split(separator: ",").map(String.init) {
            guard let p = KVPrecision(rawValue: name) else {
                throw UserError("--precisions: expected \(KVPrecision.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            schemes.append(p)
        }
        if let context, context < 1 { throw UserError("--context: expected a token count ≥ 1, got \(context)") }
        let others = KVPolicy.baselines
        print("| model | layers | ctx | profile | precision | budget | exact | " + others.map(\.rawValue).joined(separator: " | ") + " | exact − best baseline* | exact status | exact s |")
        print("|---|---:|---:|---|---|---:|---:|" + String(repeating: "---:|", count: others.count) + "---:|---|---:|")
        var wins = 0, ties = 0, rows = 0, slowest = 0.0
        let progress = ProgressLine("bench kv")
        defer { progress.finish() }
        for path in models.split(separator: ",").map(String.init) {
            let dims = context.map { ["ctx": $0] } ?? [:]
            guard case let .graph(lowered, _) = try loadInput(path, dimensions: dims, flagNames: ["ctx": "--context"]) else {
                throw UserError("'\(path)' is a target, not a model")
            }
            let layers: KVGraphLayers
            do { layers = try KVGraphLayers(lowered.graph) } catch { throw UserError("\(path): \(error.message)") }
            for family in families {
                let profile = family.profile(layers: layers.channels.count, kvHeads: layers.kvHeads.max() ?? 1, model: lowered.graph.name)
                for scheme in schemes {
                var problem = KVBudgetProblem(channels: layers.channels, context: layers.context, batch: layers.batch, profile: profile)
                problem.precision = scheme
                for ratio in budgets {
                    let budget = Int(Double(problem.fullBytes) * ratio)
                    progress.stage("\(lowered.graph.name) \(family.rawValue) \(scheme.rawValue) at \(Int(ratio * 100))%")
                    let clock = ContinuousClock()
                    let started = clock.now
                    let exact: KVBudgetPass.Outcome?
                    do { exact = try KVBudgetPass.run(problem, policy: .exact, budget: budget) } catch {
                        progress.print("| \(lowered.graph.name) | \(layers.channels.count) | \(layers.context) | \(family.rawValue) | \(scheme.rawValue) | \(Int(ratio * 100))% | below the minimum | " + others.map { _ in "" }.joined(separator: " | ") + " | | | |")
                        continue
                    }
                    let seconds = (clock.now - started) / .seconds(1)
                    slowest = max(slowest, seconds)
                    let baselineFidelity = try others.map { try KVBudgetPass.run(problem, policy: $0, budget: budget)?.fidelity }
                    // Under a fixed scheme the margin is over the token policies at that scheme
                    // (allocation alone); under `any`, over every baseline.
                    let best = zip(others, baselineFidelity).filter { scheme == .any || !KVPolicy.bitsOnly.contains($0.0) }
                        .compactMap { $0.1 }.max() ?? 0
                    let margin = (exact?.fidelity ?? 0) - best
                    rows += 1
                    if margin > 1e-9 { wins += 1 } else if margin > -1e-9 { ties += 1 }
                    let cells = baselineFidelity.map { $0.map { String(format: "%.4f", $0) } ?? "—" }
                    progress.print("| \(lowered.graph.name) | \(layers.channels.count) | \(layers.context) | \(family.rawValue) | \(scheme.rawValue) | \(Int(ratio * 100))% | "
                          + String(format: "**%.4f**", exact?.fidelity ?? 0) + " | " + cells.joined(separator: " | ")
                          + String(format: " | %+.4f | ", margin) + (exact?.status ?? "") + String(format: " | %.3f |", seconds))
                }
                }
            }
        }
        progress.finish()
        print("\n\\* under `any`, over every baseline; under a fixed precision scheme, over uniform/pyramid/prefixkv/cake at that scheme.")
        print("\nexact above the best compared baseline in \(wins) of \(rows) rows, tied in \(ties), below in \(rows - wins - ties); slowest exact solve \(String(format: "%.3f", slowest)) s")
    }
}
