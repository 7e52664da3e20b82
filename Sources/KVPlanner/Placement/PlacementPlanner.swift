import KVArtifact
import KVGraph

import Foundation
import KVSolver

/// Placement methods selectable with `--solver`.
public enum PlacementMethod: String, CaseIterable, Sendable {
    /// Load every operand, store every result, keep nothing.
    case naive
    /// Least-recently-used replacement, on-demand loads, KVAlloc addresses.
    case lru
    /// Furthest-next-use replacement, on-demand loads, KVAlloc addresses.
    case belady
    /// XLA-MSA-like: furthest-next-use residency plus greedy prefetch of the costliest loads.
    case msa
    /// The windowed ILP (GLPK), warm-started from the best of the others.
    case ilp

    /// The heuristics (everything but the ILP).
    public static var heuristics: [PlacementMethod] { [.naive, .lru, .belady, .msa] }
}

/// Limits for the ILP.
public struct ILPOptions: Sendable {
    /// Wall-clock budget for all windows, seconds.
    public var timeLimit: Double
    /// Relative gap at which a window counts as solved.
    public var gap: Double
    /// Steps per window.
    public var window: Int
    /// Slots a load may be issued ahead of its use.
    public var lookahead: Int
    /// How scratchpad offsets are decided.
    public var addresses: AddressMode
    /// Called after each window with (windows done, windows total, elapsed seconds, incumbent, bound).
    public var progress: (@Sendable (Int, Int, Double, Double, Double) -> Void)?

    public init(timeLimit: Double = 30, gap: Double = 0, window: Int = 12, lookahead: Int = 4, addresses: AddressMode = .packed,
                progress: (@Sendable (Int, Int, Double, Double, Double) -> Void)? = nil) {
        self.addresses = addresses
        self.timeLimit = timeLimit
        self.gap = gap
        self.window = window
        self.lookahead = lookahead
        self.progress = progress
    }
}

/// How the operator order is chosen.
public enum ScheduleMode: String, CaseIterable, Sendable {
    /// The graph's topological order, following the source.
    case fixed
    /// Searched (OrderSearch) before placement, for graphs with independent ops.
    case optimize
}

/// How the ILP decides scratchpad offsets.
public enum AddressMode: String, CaseIterable, Sendable {
    /// Residency first, then the window's runs are packed around the boundary offsets; offsets
    /// join the program only for windows whose runs do not pack (fast; the default).
    case packed
    /// Offsets are in every window's program from the start (COSMA-style; exact within the window, slower).
    case joint
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
    /// A complete schedule (with scratchpad offsets and home-tier residencies) for one heuristic.
    public static func schedule(_ p: PlacementProblem, method: PlacementMethod) throws(PlanningError) -> Schedule {
        try heuristic(p, method: method).schedule
    }

    /// A heuristic's schedule and the compute-tier budget at which its addresses fit.
    static func heuristic(_ p: PlacementProblem, method: PlacementMethod) throws(PlanningError) -> (schedule: Schedule, budget: Int) {
        let capacity = p.target.tiers[p.computeTier].capacity
        let floor = p.steps.indices.map(p.workingSet).max() ?? 0
        guard floor <= capacity else {
            let worst = p.steps.indices.max { p.workingSet($0) < p.workingSet($1) }!
            throw PlanningError("step '\(p.steps[worst].name)' (\(p.steps[worst].op)) needs \(floor) B at once in '\(p.target.tiers[p.computeTier].name)', which holds \(capacity) B")
        }
        let policy: ReplacementPolicy = switch method {
        case .naive: .naive
        case .lru: .lru
        case .belady, .msa, .ilp: .belady
        }
        // Shrink the byte budget until the addresses fit too (fragmentation).
        var budget = capacity
        while true {
            var schedule = try ReplacementPlanner(policy: policy).schedule(p, budget: budget)
            if method == .msa {
                let ilp = PlacementILP(p, objective: .time, capacity: budget)
                schedule = ilp.schedule(of: PrefetchPass.hoist(p, ilp.decisions(of: schedule), capacity: budget))
            }
            let assignStart = Date()
            let placed = AddressAssignment.assign(p, schedule)
            trace("  \(method.rawValue) budget \(budget): addresses \(placed == nil ? "failed" : "found") in \(String(format: "%.2f", Date().timeIntervalSince(assignStart))) s")
            if let placed { return (withBackingResidencies(p, placed), budget) }
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

    /// What a schedule costs under `objective` (seconds, or non-compulsory bytes).
    static func cost(_ e: Estimate, _ objective: PlacementObjective) -> Double {
        objective == .time ? e.seconds : Double(e.nonCompulsoryBytes)
    }

    /// Plans `p` with `method`, with the other methods as baselines. With `schedule: .optimize`
    /// the operator order is searched first (OrderSearch); the baselines keep the source order.
    public static func plan(_ source: PlacementProblem, method: PlacementMethod, objective: PlacementObjective,
                            baselines: [PlacementMethod] = PlacementMethod.heuristics,
                            options: ILPOptions = ILPOptions(), schedule: ScheduleMode = .fixed) throws(PlanningError) -> Plan {
        var p = source
        var orderNote: String?
        if schedule == .optimize {
            let started = Date()
            let found = OrderSearch.optimize(source, objective: objective)
            p = found.problem
            orderNote = found.note
            trace("order search: \(String(format: "%.2f", Date().timeIntervalSince(started))) s, \(found.note)")
        }
        let reordered = p.steps != source.steps
        var runs: [PlacementMethod: (schedule: Schedule, budget: Int, estimate: Estimate)] = [:]
        var baselineRuns: [PlacementMethod: Estimate] = [:]
        var firstError: PlanningError?
        let wanted = method == .ilp ? Set(baselines + [.belady, .msa]) : Set(baselines + [method])
        for m in PlacementMethod.heuristics where wanted.contains(m) {
            // A baseline that cannot plan this problem is left out, not fatal; the chosen method's error is.
            do {
                let started = Date()
                let (s, b) = try heuristic(p, method: m)
                runs[m] = (s, b, CostModel.estimate(p, s))
                trace("\(m.rawValue): \(String(format: "%.2f", Date().timeIntervalSince(started))) s, budget \(b)")
            } catch {
                if m == method { throw error }
                firstError = firstError ?? error
            }
            // Baselines are reported in the source order: what the method does without the order search.
            if reordered, baselines.contains(m), m != method, let (s, _) = try? heuristic(source, method: m) {
                baselineRuns[m] = CostModel.estimate(source, s)
            } else if let run = runs[m] {
                baselineRuns[m] = run.estimate
            }
        }
        var chosen: Schedule
        var summary: SolverSummary
        if method == .ilp {
            guard let best = runs.min(by: { (cost($0.value.estimate, objective), $0.key.rawValue) < (cost($1.value.estimate, objective), $1.key.rawValue) }) else {
                throw firstError ?? PlanningError("no heuristic could plan '\(p.model)', so the ILP has no warm start")
            }
            (chosen, summary) = ilpSchedule(p, objective: objective, warm: best.value.schedule, budget: best.value.budget,
                                            warmEstimate: best.value.estimate, warmName: best.key.rawValue, options: options)
        } else {
            chosen = runs[method]!.schedule
            summary = SolverSummary(method: method.rawValue, status: "heuristic", gap: nil)
        }
        summary.order = orderNote
        let others = PlacementMethod.heuristics.filter { $0 != method && baselines.contains($0) }.compactMap { m in
            baselineRuns[m].map { BaselineSummary(method: m.rawValue, estimate: $0) }
        }
        return Plan(model: p.model, target: p.target, objective: objective.rawValue, solver: summary,
                    values: p.values, steps: p.steps, residencies: chosen.residencies, transfers: chosen.transfers,
                    estimate: CostModel.estimate(p, chosen), baselines: others)
    }

    /// Phase timings on stderr when KVPLAN_TRACE is set (a developer aid, not an interface).
    public static func trace(_ line: @autoclosure () -> String) {
        guard ProcessInfo.processInfo.environment["KVPLAN_TRACE"] != nil else { return }
        FileHandle.standardError.write(Data("trace: \(line())\n".utf8))
    }

    /// The layer index in a step name (`q[3]#2` → "3"), or "" for steps outside loops.
    static func layerTag(_ name: String) -> Substring {
        guard let open = name.firstIndex(of: "["), let close = name[open...].firstIndex(of: "]") else { return "" }
        return name[name.index(after: open)..<close]
    }

    /// The windowed ILP from a warm start; never returns a schedule worse than the warm start.
    static func ilpSchedule(_ p: PlacementProblem, objective: PlacementObjective, warm: Schedule, budget: Int,
                            warmEstimate: Estimate, warmName: String, options: ILPOptions) -> (Schedule, SolverSummary) {
        let start = Date()
        // Offsets are decided in the ILP, so it may use the whole tier (the heuristic needed a smaller
        // byte budget only because its packing came afterwards).
        let ilp = PlacementILP(p, objective: objective, capacity: p.target.tiers[p.computeTier].capacity, lookahead: options.lookahead)
        var d = ilp.decisions(of: warm)
        // Windows of step slots, costliest (by the warm start's transfer time) first.
        let n = p.steps.count
        guard n > 0 else { return (warm, SolverSummary(method: "ilp", status: "heuristic", gap: nil)) }
        // Windows follow layers: each run of steps from one layer (the `[l]` in their names) is cut
        // into equal windows, so repeated layers give windows with one signature, solved once.
        var windows: [ClosedRange<Int>] = []
        var runStart = 0
        for i in 0...n where i == n || (i > runStart && layerTag(p.steps[i].name) != layerTag(p.steps[runStart].name)) {
            let length = i - runStart
            let count = (length + options.window - 1) / options.window
            for j in 0..<count { windows.append((runStart + length * j / count + 1)...(runStart + length * (j + 1) / count)) }
            runStart = i
        }
        var transferTime = Array(repeating: 0.0, count: p.slotCount)
        for t in warm.transfers {
            if let l = p.target.link(t.from, t.to) { transferTime[t.slot] += Double(t.bytes) / l.bandwidth + l.latency }
        }
        let order = windows.indices.sorted { i, j in
            let a = windows[i].reduce(0.0) { $0 + transferTime[$1] }, b = windows[j].reduce(0.0) { $0 + transferTime[$1] }
            return (a, j) > (b, i)
        }
        var solved = 0, optimal = 0, improved = 0, reused = 0
        var objectiveSum = 0.0, boundSum = 0.0
        for (k, index) in order.enumerated() {
            let w = windows[index]
            let remaining = options.timeLimit - Date().timeIntervalSince(start)
            guard remaining > 0.05 else { break }
            // Skip windows with nothing to gain (no transfers inside).
            if w.allSatisfy({ transferTime[$0] == 0 }) { solved += 1; optimal += 1; continue }
            let perWindow = max(0.2, remaining / Double(max(1, order.count - k - reused)))
            guard let r = try? ilp.solve(window: w, &d, timeLimit: min(remaining, max(perWindow, 2)), gap: options.gap,
                                          jointAddresses: options.addresses == .joint) else { continue }
            solved += 1
            if r.status == .optimal { optimal += 1 }
            if r.improved { improved += 1 }
            if r.reused { reused += 1 }
            objectiveSum += r.objective
            boundSum += r.bound.map { min($0, r.objective) } ?? r.objective
            options.progress?(solved, order.count, Date().timeIntervalSince(start), objectiveSum, boundSum)
        }
        trace("ilp windows: \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        let lpBound = objective == .time ? relaxedBound(ilp, windows: windows, budget: max(2, 0.15 * options.timeLimit)) : nil
        trace("lp bound: \(lpBound.map { String($0) } ?? "not computed") after \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        let gap = objectiveSum > 0 ? max(0, (objectiveSum - boundSum) / objectiveSum) : 0
        let note = "\(solved)/\(windows.count) windows of ≤ \(options.window) steps (\(reused) reused from identical ones), \(improved) improved, warm start \(warmName)"
        var fallback = SolverSummary(method: "ilp", status: "heuristic (\(warmName)): \(note)", gap: nil)
        fallback.lpBoundSeconds = lpBound
        guard improved > 0 else { return (warm, fallback) }
        let decided = ilp.schedule(of: d)
        let complete = decided.residencies.allSatisfy { $0.tier != p.computeTier || $0.offset != nil }
        guard let placed = complete ? decided : AddressAssignment.assign(p, decided) else {
            fallback.status = "heuristic (\(warmName)): ILP residencies found no scratchpad addresses; \(note)"
            return (warm, fallback)
        }
        let result = withBackingResidencies(p, placed)
        guard cost(CostModel.estimate(p, result), objective) <= cost(warmEstimate, objective) else { return (warm, fallback) }
        let status = solved == windows.count && optimal == solved ? "window-optimal" : "feasible"
        var summary = SolverSummary(method: "ilp", status: "\(status): \(note)", gap: gap)
        summary.lpBoundSeconds = lpBound
        return (result, summary)
    }

    /// Σ over windows of their free-boundary LP bounds (seconds), or nil when `budget` runs out first.
    static func relaxedBound(_ ilp: PlacementILP, windows: [ClosedRange<Int>], budget: Double) -> Double? {
        let start = Date()
        var total = 0.0
        for w in windows {
            let left = budget - Date().timeIntervalSince(start)
            guard left > 0, let b = try? ilp.relaxedBound(window: w, timeLimit: min(left, 2)) else { return nil }
            total += b
        }
        return total / 1e6
    }
}
