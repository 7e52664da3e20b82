import Foundation
import KVSolver

/// The exact per-layer KV choice under a byte budget: a multiple-choice knapsack.
///
/// Rationale. Each layer must take exactly one menu item (high-precision tokens, key and value
/// bits, what happens to the rest); bytes add up across layers and must stay within the budget;
/// the predicted fidelity (KVBudgetProblem) adds up too. That is a multiple-choice knapsack:
/// NP-hard in general, but small here once every layer's menu is cut to its Pareto front (an
/// item costing more bytes for no more fidelity is never needed) — a few dozen items per layer.
/// It is solved by dynamic programming over bytes in units of the GCD of every item's bytes (exact)
/// or, when that would take more than 32,768 units, of budget/32,768 with item bytes rounded up
/// (optimal for the rounded sizes, never over the budget; the status names the unit). Cost:
/// layers × units × front size, about 0.4 s for 80 layers in a release build. GLPK (`solveILP`)
/// solves the same program as a cross-check; it proves optimality slowly on large models, where
/// thousands of items differ by a few bytes.
public enum KVBudgetSolver {
    /// The chosen item per layer, the status, and the solve time.
    public struct Result: Sendable {
        public var choices: [KVBudgetProblem.Choice]
        /// `optimal` (proven under the model) or `feasible (gap x%)`.
        public var status: String
        public var seconds: Double
    }

    /// Why no choice fits.
    public struct Infeasible: Error, Equatable, CustomStringConvertible {
        /// Bytes the smallest layout of every layer needs together.
        public var minimumBytes: Int
        public var budget: Int
        /// What the smallest layout keeps.
        public var keeps: String
        public init(minimumBytes: Int, budget: Int, keeps: String = "sinks and recent window at fp16 in every layer, nothing else kept") {
            self.minimumBytes = minimumBytes
            self.budget = budget
            self.keeps = keeps
        }
        public var description: String {
            "a KV budget of \(budget) B is below the minimum of \(minimumBytes) B (\(keeps))"
        }
    }

    /// The relative gap at which the answer counts as optimal (below the model's precision).
    public static let provenGap = 1e-9

    /// The Pareto front of layer `l`'s menu: ascending bytes, strictly ascending value (fidelity × the layer's weight).
    public static func front(_ p: KVBudgetProblem, layer l: Int) -> [(choice: KVBudgetProblem.Choice, bytes: Int, fidelity: Double)] {
        func rank(_ c: KVBudgetProblem.Choice) -> Int { ((c.high * 32 + c.keyBits.bits) * 32 + c.valueBits.bits) * 32 + (c.lowBits?.bits ?? 0) }
        let items = p.menu(layer: l).map { ($0, p.bytes($0, layer: l), p.value($0, layer: l)) }
            .sorted { ($0.1, -$0.2, rank($0.0)) < ($1.1, -$1.2, rank($1.0)) }
        var out: [(choice: KVBudgetProblem.Choice, bytes: Int, fidelity: Double)] = []
        for item in items where out.last.map({ item.2 > $0.fidelity + 1e-12 }) ?? true { out.append(item) }
        return out
    }

    /// The fidelity-maximising choice per layer within `budget` bytes, by dynamic programming over
    /// bytes in units of `granularity(…)`: every item's bytes are rounded *up* to whole units, so
    /// the answer never exceeds the budget, and it is optimal for the rounded sizes — exactly
    /// optimal when the unit divides every item (the GCD), which is the case whenever
    /// budget / GCD ≤ `maxUnits`.
    public static func solve(_ p: KVBudgetProblem, budget: Int, maxUnits requested: Int? = nil) throws -> Result {
        let started = ContinuousClock.now
        let layers = p.channels.count
        let minimum = (0..<layers).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        guard budget >= minimum else { throw Infeasible(minimumBytes: minimum, budget: budget, keeps: p.minimumDescription) }
        let fronts = (0..<layers).map { front(p, layer: $0) }
        PlacementPlanner.trace("kv fronts: \(fronts.map(\.count).reduce(0, +)) items over \(layers) layers, \((ContinuousClock.now - started) / .seconds(1)) s")
        let common = fronts.joined().reduce(0) { gcd($0, $1.bytes) }
        // About 3·10^8 cell updates: exact units for small models, at least 32,768 units for any.
        let maxUnits = requested ?? max(1 << 15, 300_000_000 / max(1, fronts.map(\.count).reduce(0, +)))
        var unit = max(1, common)
        if budget / unit > maxUnits { unit = ((budget + maxUnits - 1) / maxUnits + unit - 1) / unit * unit }
        let units = budget / unit
        let weights = fronts.map { $0.map { ($0.bytes + unit - 1) / unit } }
        // best[u]: the highest Σ fidelity of the layers so far within u units (-∞ when impossible).
        var best = [Double](repeating: -.infinity, count: units + 1)
        var choice = [[UInt16]](repeating: [], count: layers)
        for (j, w) in weights[0].enumerated() where w <= units {
            for u in w...units where fronts[0][j].fidelity > best[u] { best[u] = fronts[0][j].fidelity }
        }
        choice[0] = (0...units).map { u in UInt16(weights[0].lastIndex { $0 <= u } ?? 0) }
        for l in 1..<max(1, layers) {
            var next = [Double](repeating: -.infinity, count: units + 1)
            var pick = [UInt16](repeating: 0, count: units + 1)
            best.withUnsafeBufferPointer { old in
                next.withUnsafeMutableBufferPointer { new in
                    pick.withUnsafeMutableBufferPointer { chosen in
                        for (j, w) in weights[l].enumerated() where w <= units {
                            let f = fronts[l][j].fidelity, tag = UInt16(j)
                            for u in w...units {
                                let candidate = old[u &- w] + f
                                if candidate > new[u] { new[u] = candidate; chosen[u] = tag }
                            }
                        }
                    }
                }
            }
            best = next
            choice[l] = pick
        }
        PlacementPlanner.trace("kv dp: \(units) units of \(unit) B, \((ContinuousClock.now - started) / .seconds(1)) s")
        // Rounding up can make a budget that fits only just unreachable in units: solve exactly instead.
        guard best[units].isFinite else { return try solveILP(p, budget: budget) }
        // Walk back from the full budget.
        var picks = Array(repeating: 0, count: layers)
        var u = units
        for l in stride(from: layers - 1, through: 0, by: -1) {
            let j = Int(choice[l][u])
            picks[l] = j
            u -= weights[l][j]
        }
        let exactUnits = unit == max(1, common)
        let status = exactUnits ? "optimal" : "optimal at a granularity of \(unit) B (item bytes rounded up)"
        return Result(choices: (0..<layers).map { fronts[$0][picks[$0]].choice }, status: status,
                      seconds: (ContinuousClock.now - started) / .seconds(1))
    }

    /// The same problem as a GLPK integer program (a cross-check for tests; slower on large models).
    public static func solveILP(_ p: KVBudgetProblem, budget: Int, timeLimit: Double = 10) throws -> Result {
        let layers = p.channels.count
        let minimum = (0..<layers).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        guard budget >= minimum else { throw Infeasible(minimumBytes: minimum, budget: budget, keeps: p.minimumDescription) }
        let fronts = (0..<layers).map { front(p, layer: $0) }
        var m = LinearModel(name: "kv-budget")
        var u: [[Variable]] = []
        var bytesRow = LinearExpression()
        var objective = LinearExpression()
        // Warm start: the cheapest item everywhere, then the best fidelity-per-byte upgrades that fit.
        var pick = Array(repeating: 0, count: layers)
        var used = minimum
        while true {
            var best: (Double, Int, Int)?
            for l in 0..<layers {
                let now = fronts[l][pick[l]]
                for j in (pick[l] + 1)..<fronts[l].count where used - now.bytes + fronts[l][j].bytes <= budget {
                    let gain = (fronts[l][j].fidelity - now.fidelity) / Double(max(1, fronts[l][j].bytes - now.bytes))
                    if best.map({ gain > $0.0 }) ?? true { best = (gain, l, j) }
                }
            }
            guard let (_, l, j) = best else { break }
            used += fronts[l][j].bytes - fronts[l][pick[l]].bytes
            pick[l] = j
        }
        var warm: [Double] = []
        for l in 0..<layers {
            var row: [Variable] = []
            for (j, item) in fronts[l].enumerated() {
                let v = try m.addVariable("u[\(l),\(j)]", lower: 0, upper: 1, kind: .binary)
                warm.append(pick[l] == j ? 1 : 0)
                row.append(v)
                bytesRow = bytesRow + Double(item.bytes) * v
                objective = objective + item.fidelity / Double(layers) * v
            }
            try m.add(LinearExpression(row.map { ($0, 1) }) == 1, name: "one[\(l)]")
            u.append(row)
        }
        try m.add(bytesRow <= Double(budget), name: "budget")
        try m.setObjective(.maximize, objective)
        // Fidelities are sums of profile terms; a relative gap of 1e-9 is below their precision, and
        // without it GLPK can spend seconds proving near-ties among items a byte apart.
        let result = try MIPSolver.solve(m, options: SolveOptions(timeLimit: timeLimit, relativeGap: provenGap, warmStart: warm))
        guard result.status == .optimal || result.status == .feasible else {
            return Result(choices: (0..<layers).map { fronts[$0][pick[$0]].choice }, status: "heuristic (\(result.status))", seconds: result.seconds)
        }
        let choices = (0..<layers).map { l in fronts[l][u[l].firstIndex { result[$0] > 0.5 }!].choice }
        // The byte row is checked in exact integers (GLPK's tolerance is relative to the budget).
        let exact = (0..<layers).reduce(0) { $0 + p.bytes(choices[$1], layer: $1) }
        guard exact <= budget else {
            return Result(choices: (0..<layers).map { fronts[$0][pick[$0]].choice }, status: "heuristic (solver answer over budget by \(exact - budget) B)", seconds: result.seconds)
        }
        let status = result.status == .optimal ? "optimal" : String(format: "feasible (gap %.3g%%)", (result.gap ?? 0) * 100)
        return Result(choices: choices, status: status, seconds: result.seconds)
    }
}
