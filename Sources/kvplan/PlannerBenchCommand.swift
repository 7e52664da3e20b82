import ArgumentParser
import Foundation
import KVArtifact
import KVGraph
import KVPlanner

/// `kvplan bench planner`: every placement method at COSMA's three scratchpad sizes.
struct PlannerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "planner",
        abstract: "Non-compulsory traffic and time of every placement method at the scratchpad sizes M_R, M_H, M_P.",
        discussion: """
        For each graph, the cpu target's scratchpad is resized to COSMA's three budgets: M_R, the \
        largest single-op working set (the least memory that runs every op untiled); M_P, the peak \
        of the bytes live at once when every value stays resident from its first to its last use \
        (enough for compulsory traffic only); and M_H, their mean. At each, every method plans with \
        --objective traffic and is measured by non-compulsory bytes; the ILP's reduction is against \
        the best heuristic. Then llama-2-7b on edge-npu with --objective time (ms per token).
        """
    )

    @Option(help: "Graphs (paths), comma-separated.")
    var graphs: String = "Graphs/resnet-50.graph,Graphs/mobilenet-v2.graph,Graphs/bert-base.graph,Graphs/nasnet-a.graph,Graphs/tiny-llama.graph"

    @Option(name: .customLong("time-limit"), help: "ILP seconds per plan.")
    var timeLimit: Double = 30

    @Option(name: .customLong("decoder"), help: "The decoder graph timed on edge-npu ('' to skip).")
    var decoder: String = "Graphs/llama-2-7b.graph"

    func run() throws {
        let cpu = try loadTarget("cpu")
        let progress = ProgressLine("bench planner")
        defer { progress.finish() }
        print("| graph | budget | bytes | naive | lru | belady | msa | ilp | ILP vs best heuristic | ILP s | window gap | ilp + order search | vs best heuristic |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for path in graphs.split(separator: ",").map(String.init) {
            guard case let .graph(lowered, _) = try loadInput(path, dimensions: [:], flagNames: [:]) else { continue }
            let graph = lowered.graph
            // Budgets from the untiled problem on an unbounded scratchpad.
            var roomy = cpu
            roomy.tiers[0].capacity = 1 << 40
            let whole = try PlacementProblem(graph: graph, target: roomy)
            let mR = whole.steps.indices.map(whole.workingSet).max() ?? 0
            var delta = Array(repeating: 0, count: whole.slotCount + 1)
            var first = [Int: Int](), last = [Int: Int]()
            for i in whole.steps.indices { for v in whole.touched(i) { first[v] = first[v] ?? i; last[v] = i } }
            for (v, f) in first { delta[f] += whole.footprint(v, in: 0); delta[last[v]! + 1] -= whole.footprint(v, in: 0) }
            var live = 0, mP = 0
            for d in delta { live += d; mP = max(mP, live) }
            mP = max(mP, mR)
            for (label, budget) in [("M_R", mR), ("M_H", (mR + mP) / 2), ("M_P", mP)] {
                var t = cpu
                t.tiers[0].capacity = (budget + 63) / 64 * 64
                var row = "| \(graph.name) | \(label) | \(budget) |"
                progress.stage("\(graph.name) at \(label) (\(budget) B)")
                do {
                    let p = try PlacementProblem(graph: graph, target: t)
                    let started = Date()
                    let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .traffic, options: ILPOptions(timeLimit: timeLimit))
                    let seconds = Date().timeIntervalSince(started)
                    var traffic: [String: Int] = [:]
                    for b in plan.baselines { traffic[b.method] = b.estimate.nonCompulsoryBytes }
                    let ilp = plan.estimate.nonCompulsoryBytes
                    for m in ["naive", "lru", "belady", "msa"] { row += " \(traffic[m].map(String.init) ?? "—") |" }
                    let best = ["lru", "belady", "msa"].compactMap { traffic[$0] }.min() ?? ilp
                    let cut = best > 0 ? String(format: "%.1f%%", 100 * Double(best - ilp) / Double(best)) : "— (0 B)"
                    row += " \(ilp) | \(cut) | \(String(format: "%.1f", seconds)) | \(plan.solver.gap.map { String(format: "%.2f%%", $0 * 100) } ?? "—") |"
                    // The same with the operator order searched first (baselines stay in the source order).
                    let ordered = try PlacementPlanner.plan(p, method: .ilp, objective: .traffic, options: ILPOptions(timeLimit: timeLimit),
                                                            schedule: .optimize)
                    let o = ordered.estimate.nonCompulsoryBytes
                    let orderCut = best > 0 ? String(format: "%.1f%%", 100 * Double(best - o) / Double(best)) : "— (0 B)"
                    row += " \(o) | \(orderCut) |"
                } catch {
                    row += " \(error) | | | | | | | | | |"
                }
                progress.print(row)
                fflush(nil)
            }
        }
        guard !decoder.isEmpty, case let .graph(lowered, _) = try loadInput(decoder, dimensions: [:], flagNames: [:]) else { return }
        let npu = try loadTarget("edge-npu")
        let p = try PlacementProblem(graph: lowered.graph, target: npu)
        let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .time, options: ILPOptions(timeLimit: timeLimit))
        print("\n\(lowered.graph.name) on edge-npu, estimated ms per token: " + (plan.baselines.map {
            "\($0.method) \(String(format: "%.3f", $0.estimate.seconds * 1000))"
        } + ["ilp \(String(format: "%.3f", plan.estimate.seconds * 1000)) (\(plan.solver.status))"]).joined(separator: ", "))
    }
}
