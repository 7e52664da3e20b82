import KVArtifact

/// The KV budget pass: per-layer layouts under a byte budget by a policy, with every baseline
/// measured on the same problem for the report.
public enum KVBudgetPass {
    /// One policy's answer.
    public struct Outcome: Sendable {
        public var policy: KVPolicy
        public var layers: [KVLayerLayout]
        /// Σ bytes over layers.
        public var bytes: Int
        /// Mean predicted fidelity over layers.
        public var fidelity: Double
        /// `optimal` / `feasible (gap …)` for the exact allocator, `heuristic` for the baselines.
        public var status: String
    }

    /// Layouts by `policy` within `budget` bytes; nil when the policy has no answer that fits
    /// (a bits-only baseline whose smallest form is too big). The exact allocator's grid includes
    /// every token count a baseline picks, so its menu contains every baseline's answer.
    public static func run(_ problem: KVBudgetProblem, policy: KVPolicy, budget: Int, timeLimit: Double = 10) throws -> Outcome? {
        var p = problem
        let choices: [KVBudgetProblem.Choice]
        var status = "heuristic"
        switch policy {
        case .exact:
            var grid = Set(p.highGrid)
            for baseline in KVPolicy.baselines {
                for c in baselineChoices(baseline, problem, budget: budget) ?? [] { grid.insert(c.high) }
            }
            p.highGrid = grid.sorted()
            let result = try KVBudgetSolver.solve(p, budget: budget, timeLimit: timeLimit)
            choices = result.choices
            status = result.status
        default:
            guard let c = baselineChoices(policy, problem, budget: budget) else { return nil }
            choices = c
        }
        let layers = choices.enumerated().map { p.layout($1, layer: $0) }
        return Outcome(policy: policy, layers: layers, bytes: layers.reduce(0) { $0 + $1.bytes },
                       fidelity: layers.reduce(0) { $0 + $1.fidelity } / Double(max(1, layers.count)), status: status)
    }

    static func baselineChoices(_ policy: KVPolicy, _ p: KVBudgetProblem, budget: Int) -> [KVBudgetProblem.Choice]? {
        switch policy {
        case .exact: nil
        case .uniform, .pyramid, .prefixkv, .cake: KVTokenBaselines.choose(policy, p, budget: budget)
        case .kivi2, .kivi4, .kvtuner: KVBitBaselines.choose(policy, p, budget: budget)
        }
    }
}
