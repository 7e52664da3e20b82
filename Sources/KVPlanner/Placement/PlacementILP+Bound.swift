import KVArtifact
import KVSolver

/// A lower bound on the whole problem from LP relaxations of free-boundary windows.
///
/// Rationale. The window gap says how far each *anchored* window is from its own bound, not how
/// far the plan is from the best plan. Cutting the anchors gives a true bound: in a window whose
/// boundaries are free, any value that could be live at its first slot (a persistent value with a
/// home, or one written earlier) may start resident at no cost (`c_v`, limited only by the
/// capacity of that slot), any such value may be loaded, and nothing is required at the end. The
/// restriction of *any* complete plan to the window is then feasible with the same slot costs, so
/// the window's LP optimum is at most that plan's cost there; slot costs add up, so the sum over
/// windows is at most any plan's total. LPs (not MIPs) of identical windows are solved once.
extension PlacementILP {
    /// The LP bound of `window` with free boundaries (µs, `time` objective only).
    func relaxedBound(window: ClosedRange<Int>, timeLimit: Double) throws -> Double? {
        guard objective == .time else { return nil }
        let a = window.lowerBound
        let c0 = p.computeTier
        var reads = [Int: Set<Int>](), writes = [Int: Set<Int>]()
        var local: [Int] = []
        var seen = Set<Int>()
        for s in window {
            for v in p.steps[s - 1].reads { reads[s, default: []].insert(v) }
            for v in p.steps[s - 1].writes { writes[s, default: []].insert(v) }
            for v in p.steps[s - 1].reads + p.steps[s - 1].writes where seen.insert(v).inserted { local.append(v) }
        }
        let persistent: Set<ValueKind> = [.weight, .input, .cache]
        func liveBefore(_ v: Int) -> Bool {
            (persistent.contains(p.values[v].kind) && p.values[v].home != nil) || (writeSlots[v].first.map { $0 < a } ?? false)
        }
        var key = "bound|\(capacity)|\(lookahead)|" + stepSignature(window, local: local)
        for v in local { key += "|\(p.values[v].bytes),\(p.values[v].home ?? -1),\(liveBefore(v))" }
        if let known = cache.bounds[key] { return known }

        var m = LinearModel(name: "bound-window-\(a)")
        var warm: [Double] = []
        var r = [Int: [Int: Variable]](), x = [Int: [Int: Variable]](), y = [Int: [Int: Variable]]()
        let unit = Double(max(1, p.target.tiers[c0].alignment))
        for v in local {
            let uses = window.filter { reads[$0]?.contains(v) == true || writes[$0]?.contains(v) == true }
            let written = window.filter { writes[$0]?.contains(v) == true }
            let carry: Variable? = liveBefore(v) ? try m.addVariable("c[\(v)]", lower: 0, upper: 1, kind: .continuous) : nil
            if carry != nil { warm.append(0) }
            for s in window {
                r[v, default: [:]][s] = try m.addVariable("r[\(v),\(s)]", lower: uses.contains(s) ? 1 : 0, upper: 1, kind: .continuous)
                warm.append(0)
                if uses.contains(where: { $0 >= s && $0 - s <= lookahead }) && (liveBefore(v) || written.contains { $0 < s }) {
                    x[v, default: [:]][s] = try m.addVariable("x[\(v),\(s)]", lower: 0, upper: 1, kind: .continuous)
                    warm.append(0)
                }
                if written.contains(where: { $0 <= s }) {
                    y[v, default: [:]][s] = try m.addVariable("y[\(v),\(s)]", lower: 0, upper: 1, kind: .continuous)
                    warm.append(0)
                }
            }
            for s in window {
                var e = LinearExpression([(r[v]![s]!, 1)])
                if s > a { e = e - r[v]![s - 1]! }
                if let xv = x[v]?[s] { e = e - xv }
                if s == a, let carry { e = e - carry }
                try m.add(e <= (writes[s]?.contains(v) == true ? 1 : 0), name: "continuity[\(v),\(s)]")
                if let yv = y[v]?[s] { try m.add(yv - r[v]![s]! <= 0, name: "store-resident[\(v),\(s)]") }
                if let xv = x[v]?[s], let w = written.filter({ $0 < s }).max() {
                    let since = (w..<s).compactMap { y[v]?[$0] }
                    try m.add(LinearExpression([(xv, 1)] + since.map { ($0, -1) }) <= 0, name: "load-valid[\(v),\(s)]")
                }
            }
        }
        for s in window {
            let terms = local.map { (r[$0]![s]!, Double(p.footprint($0, in: c0)) / unit) }
            try m.add(LinearExpression(terms) <= Double(capacity) / unit, name: "capacity[\(s)]")
        }
        let empty = Decisions(resident: [], offsets: [], loads: Array(repeating: [], count: p.values.count),
                              stores: Array(repeating: [], count: p.values.count))
        guard let goal = objectiveExpression(for: local, window: window, reads: reads, writes: writes, x: x, y: y,
                                             model: &m, warm: &warm, d: empty) else { return nil }
        try m.setObjective(.minimize, goal)
        let result = try MIPSolver.solve(m, options: SolveOptions(timeLimit: timeLimit))
        guard result.status == .optimal, let value = result.objective else { return nil }
        cache.bounds[key] = value
        return value
    }
}
