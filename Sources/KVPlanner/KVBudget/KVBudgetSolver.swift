import KVSolver

/// The exact per-layer KV choice under a byte budget: a multiple-choice knapsack solved by GLPK.
///
/// Rationale. Each layer must take exactly one menu item (high-precision tokens, key and value
/// bits, what happens to the rest); bytes add up across layers and must stay within the budget;
/// the predicted fidelity (KVBudgetProblem) adds up too. That is a multiple-choice knapsack:
/// NP-hard in general, but small here once every layer's menu is cut to its Pareto front (an
/// item costing more bytes for no more fidelity is never needed) — a few dozen items per layer.
/// Its LP relaxation has at most two fractional items, so GLPK's branch and bound closes quickly;
/// bytes are exact integers (no rounding to a granularity), and the answer is optimal under the
/// model when GLPK proves it (the status says so), else the best found with its gap.
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
        public init(minimumBytes: Int, budget: Int) {
            self.minimumBytes = minimumBytes
            self.budget = budget
        }
        public var description: String {
            "a KV budget of \(budget) B is below the minimum of \(minimumBytes) B (sinks and recent window at fp16 in every layer, nothing else kept)"
        }
    }

    /// The Pareto front of layer `l`'s menu: ascending bytes, strictly ascending fidelity.
    public static func front(_ p: KVBudgetProblem, layer l: Int) -> [(choice: KVBudgetProblem.Choice, bytes: Int, fidelity: Double)] {
        func rank(_ c: KVBudgetProblem.Choice) -> Int { ((c.high * 32 + c.keyBits.bits) * 32 + c.valueBits.bits) * 32 + (c.lowBits?.bits ?? 0) }
        let items = p.menu(layer: l).map { ($0, p.bytes($0, layer: l), p.fidelity($0, layer: l)) }
            .sorted { ($0.1, -$0.2, rank($0.0)) < ($1.1, -$1.2, rank($1.0)) }
        var out: [(choice: KVBudgetProblem.Choice, bytes: Int, fidelity: Double)] = []
        for item in items where out.last.map({ item.2 > $0.fidelity + 1e-12 }) ?? true { out.append(item) }
        return out
    }

    /// The fidelity-maximising choice per layer within `budget` bytes.
    public static func solve(_ p: KVBudgetProblem, budget: Int, timeLimit: Double = 10) throws -> Result {
        let layers = p.channels.count
        let minimum = (0..<layers).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        guard budget >= minimum else { throw Infeasible(minimumBytes: minimum, budget: budget) }
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
        let result = try MIPSolver.solve(m, options: SolveOptions(timeLimit: timeLimit, warmStart: warm))
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
