import KVArtifact
import KVGraph

/// Placement methods selectable with `--solver`.
public enum PlacementMethod: String, CaseIterable, Sendable {
    case naive, lru, belady
}

/// What to minimise.
public enum PlacementObjective: String, CaseIterable, Sendable {
    /// Estimated time (Σ over slots of serial transfers + max(compute, overlapped transfers per link)).
    case time
    /// Bytes moved beyond the compulsory ones (COSMA's measure).
    case traffic
}

/// Runs placement methods on a problem and assembles the plan.
public enum PlacementPlanner {
    /// A complete schedule (with scratchpad offsets and home-tier residencies) for one method.
    public static func schedule(_ p: PlacementProblem, method: PlacementMethod) throws(PlanningError) -> Schedule {
        let capacity = p.target.tiers[p.computeTier].capacity
        let floor = p.steps.indices.map(p.workingSet).max() ?? 0
        guard floor <= capacity else {
            let worst = p.steps.indices.max { p.workingSet($0) < p.workingSet($1) }!
            throw PlanningError("step '\(p.steps[worst].name)' (\(p.steps[worst].op)) needs \(floor) B at once in '\(p.target.tiers[p.computeTier].name)', which holds \(capacity) B")
        }
        let policy: ReplacementPolicy = switch method {
        case .naive: .naive
        case .lru: .lru
        case .belady: .belady
        }
        // Shrink the byte budget until the addresses fit too (fragmentation).
        var budget = capacity
        while true {
            let schedule = try ReplacementPlanner(policy: policy).schedule(p, budget: budget)
            if let placed = AddressAssignment.assign(p, schedule) { return withBackingResidencies(p, placed) }
            guard budget > floor else {
                throw PlanningError("no scratchpad addresses found for the \(method.rawValue) schedule even at a budget of \(budget) B")
            }
            budget = max(floor, budget - max(1, capacity / 32))
        }
    }

    /// Adds the residencies outside the compute tier: homes for the whole run, spills from their store on.
    static func withBackingResidencies(_ p: PlacementProblem, _ s: Schedule) -> Schedule {
        var out = s
        for (v, value) in p.values.enumerated() {
            if let home = value.home { out.residencies.append(Residency(value: v, tier: home, from: 0, to: p.slotCount, offset: nil)) }
        }
        var spilled = Set<Int>()
        for t in s.transfers where t.reason == "spill" && p.values[t.value].home == nil && spilled.insert(t.value).inserted {
            out.residencies.append(Residency(value: t.value, tier: t.to, from: t.slot, to: p.slotCount, offset: nil))
        }
        out.residencies.sort { ($0.tier, $0.from, $0.value, $0.to) < ($1.tier, $1.from, $1.value, $1.to) }
        return out
    }

    /// Plans `p` with every method in `methods`, returning the plan of `method` with the others as baselines.
    public static func plan(_ p: PlacementProblem, method: PlacementMethod, objective: PlacementObjective,
                            baselines: [PlacementMethod] = PlacementMethod.allCases) throws(PlanningError) -> Plan {
        let chosen = try schedule(p, method: method)
        var others: [BaselineSummary] = []
        for m in baselines where m != method {
            // A baseline that cannot plan this problem is left out, not fatal.
            if let s = try? schedule(p, method: m) { others.append(BaselineSummary(method: m.rawValue, estimate: CostModel.estimate(p, s))) }
        }
        return Plan(model: p.model, target: p.target, objective: objective.rawValue,
                    solver: SolverSummary(method: method.rawValue, status: "heuristic", gap: nil),
                    values: p.values, steps: p.steps, residencies: chosen.residencies, transfers: chosen.transfers,
                    estimate: CostModel.estimate(p, chosen), baselines: others)
    }
}
