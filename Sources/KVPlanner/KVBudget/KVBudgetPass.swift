import KVGraph
import KVQuant
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
    public static func run(_ problem: KVBudgetProblem, policy: KVPolicy, budget: Int) throws -> Outcome? {
        var p = problem
        var choices: [KVBudgetProblem.Choice]
        var status = "heuristic"
        switch policy {
        case .exact:
            let answers = KVPolicy.baselines.compactMap { baselineChoices($0, problem, budget: budget) }
            for answer in answers { for (l, c) in answer.enumerated() { p.extraHigh[l].insert(c.high) } }
            let result = try KVBudgetSolver.solve(p, budget: budget)
            choices = result.choices
            status = result.status
            // With a coarse unit (item bytes rounded up) a baseline's exact-byte answer, which the
            // menu contains, can be better; then it is the answer, and the status says so.
            func total(_ c: [KVBudgetProblem.Choice]) -> Double { c.enumerated().reduce(0) { $0 + p.fidelity($1.element, layer: $1.offset) } }
            if let better = answers.max(by: { total($0) < total($1) }), total(better) > total(choices) + 1e-12 {
                choices = better
                status += "; a baseline's layout in the menu scores higher at exact bytes and is used"
            }
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

/// Where the KV byte budget comes from.
public enum KVBudgetSource: Sendable, Equatable {
    /// An explicit byte count (`--kv-budget`).
    case bytes(Int)
    /// A fraction of the fp16 cache of every token (`--kv-ratio`).
    case ratio(Double)
    /// What `n` fp16 tokens per layer take (`--kv-tokens`).
    case tokens(Int)
    /// What the target's first backing tier holds after weights, the staging reserve and peak activations.
    case target
}

extension KVBudgetPass {
    /// Runs the pass on a graph's caches: the report for plan.json and the cache bytes for placement.
    public static func plan(graph: Graph, target: Target, policy: KVPolicy, source: KVBudgetSource,
                            profile: KVProfile?, profileName: String) throws(PlanningError) -> (report: KVReport, cacheBytes: [Int: Int]) {
        let layers = try KVGraphLayers(graph)
        let chosenProfile = profile ?? KVProfile.standard(layers: layers.channels.count, model: graph.name)
        guard chosenProfile.layers.count == layers.channels.count else {
            throw PlanningError("the KV profile has \(chosenProfile.layers.count) layers; '\(graph.name)' has \(layers.channels.count) attention layers")
        }
        let problem = KVBudgetProblem(channels: layers.channels, context: layers.context, batch: layers.batch, profile: chosenProfile)
        let budget: Int
        let sourceName: String
        switch source {
        case let .bytes(b):
            (budget, sourceName) = (b, "--kv-budget")
        case let .ratio(r):
            (budget, sourceName) = (Int((Double(problem.fullBytes) * r).rounded(.down)), String(format: "--kv-ratio %g of the fp16 cache", r))
        case let .tokens(n):
            let tokens = min(max(0, n - problem.sinkTokens - problem.windowTokens), problem.freeTokens)
            let fp16 = KVBudgetProblem.Choice(high: tokens, keyBits: .b16, valueBits: .b16, lowBits: nil)
            (budget, sourceName) = (layers.channels.indices.reduce(0) { $0 + problem.bytes(fp16, layer: $1) }, "--kv-tokens \(n)")
        case .target:
            let summary = GraphSummary(graph)
            let others = graph.tensors.indices.filter { graph.tensors[$0].kind != .activation && graph.tensors[$0].kind != .cache }
                .reduce(0) { $0 + graph.tensors[$1].byteSize }
            guard target.tiers.count >= 2 else { throw PlanningError("target '\(target.name)' has no backing tier for the KV cache") }
            let reserve = target.tiers.count > 2 ? 4 * target.tiers[0].capacity : 0
            let room = target.tiers[1].capacity - reserve - others - (summary.peakActivations?.bytes ?? 0)
            (budget, sourceName) = (min(max(0, room), problem.fullBytes), "what \(target.tiers[1].name) holds after weights, staging and peak activations")
        }
        let outcome: Outcome
        do {
            guard let o = try run(problem, policy: policy, budget: budget) else {
                throw PlanningError("--kv-policy \(policy.rawValue) has no layout within \(budget) B (it keeps every token and only its bits can shrink)")
            }
            outcome = o
        } catch let e as KVBudgetSolver.Infeasible {
            throw PlanningError(e.description)
        } catch let e as PlanningError {
            throw e
        } catch {
            throw PlanningError("KV budget solver: \(error)")
        }
        var baselines: [KVBaseline] = []
        for other in KVPolicy.allCases where other != policy {
            let o = (try? run(problem, policy: other, budget: budget)) ?? nil
            baselines.append(KVBaseline(policy: other.rawValue, bytes: o?.bytes, fidelity: o?.fidelity))
        }
        var cacheBytes: [Int: Int] = [:]
        for (l, layout) in outcome.layers.enumerated() {
            let choice = KVBudgetProblem.Choice(high: layout.highTokens, keyBits: KVBits(rawValue: layout.keyBitsHigh)!,
                                                valueBits: KVBits(rawValue: layout.valueBitsHigh)!, lowBits: KVBits(rawValue: layout.lowBits))
            cacheBytes[layers.caches[l].keys] = problem.bytes(choice, layer: l, kind: .keys)
            cacheBytes[layers.caches[l].values] = problem.bytes(choice, layer: l, kind: .values)
        }
        let report = KVReport(policy: policy.rawValue, status: outcome.status, budget: budget, budgetSource: sourceName,
                              profile: profile == nil ? "default" : profileName, layers: outcome.layers, bytes: outcome.bytes,
                              fidelity: outcome.fidelity, baselines: baselines)
        return (report, cacheBytes)
    }
}
