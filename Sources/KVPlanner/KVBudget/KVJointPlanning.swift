import KVArtifact
import KVGraph

// KV budget and placement as one pipeline. The budget pass chooses per-layer cache bytes; the
// placement planner places those bytes (home tiers, residency, transfers); the layers whose cache
// the home assignment could not keep in the first backing tier (HBM/DRAM) are reported with the
// bytes that now cross the slower link every step. When the budget was the pass's own estimate of
// the room in that tier (no --kv-budget/--kv-ratio/--kv-tokens) and placement still spilled KV,
// the estimate was wrong (alignment, packing, tensors it did not count): the budget is lowered by
// the spilled bytes and both passes run again, at most three times. An explicit budget is the
// user's to keep; its spill is reported, and the time estimate carries its cost.

/// The KV budget pass followed by placement, re-run when placement spills a target-derived budget.
public enum KVJointPlanning {
    /// At most this many re-runs after the first.
    public static let maximumReplans = 3

    /// Plans the graph's KV layouts and placement; `place` places given cache bytes.
    public static func plan(graph: Graph, target: Target, policy: KVPolicy, source: KVBudgetSource,
                            profile: KVProfileSource = .standard, precision: KVPrecision = .any,
                            place: ([Int: Int]) throws(PlanningError) -> Plan) throws(PlanningError) -> Plan {
        var budgetSource = source
        var notes: [String] = []
        var round = 0
        let layers = try KVGraphLayers(graph)
        while true {
            var (report, cacheBytes) = try KVBudgetPass.plan(graph: graph, target: target, policy: policy, source: budgetSource, profile: profile, precision: precision)
            var plan = try place(cacheBytes)
            let spilled = fillHomes(&report, plan: plan, graph: graph, layers: layers)
            if case .target = source, spilled > 0, round < maximumReplans, report.budget - spilled > 0 {
                round += 1
                notes.append("\(spilled) B of KV left \(plan.target.tiers[1].name) at a budget of \(report.budget) B")
                budgetSource = .bytes(report.budget - spilled)
                continue
            }
            if !notes.isEmpty {
                report.replanned = "re-planned \(notes.count)×: " + notes.joined(separator: "; ")
                report.budgetSource = "what \(target.tiers[1].name) holds, lowered after placement"
            }
            plan.kv = report
            return plan
        }
    }

    /// Records per layer the bytes of its caches in each home tier; returns the bytes outside
    /// the first backing tier (tier 1).
    @discardableResult
    public static func fillHomes(_ report: inout KVReport, plan: Plan, graph: Graph, layers: KVGraphLayers) -> Int {
        var byTensor: [String: [Int: Int]] = [:]
        // The cache's own values; the new token's append row (`cache[new]`, TilingPass) is staging.
        for value in plan.values where value.kind == .cache && !value.name.hasSuffix("[new]") {
            byTensor[value.tensor, default: [:]][value.home ?? 1, default: 0] += value.bytes
        }
        var spilled = 0
        for (l, cache) in layers.caches.enumerated() where l < report.layers.count {
            var home: [String: Int] = [:]
            for tensor in [cache.keys, cache.values] {
                for (tier, bytes) in byTensor[graph.tensors[tensor].name] ?? [:] {
                    home[plan.target.tiers[tier].name, default: 0] += bytes
                    if tier > 1 { spilled += bytes }
                }
            }
            report.layers[l].home = home
        }
        return spilled
    }
}
