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
        /// Mean predicted fidelity over layers, each weighted by the profile's sensitivity (mean 1).
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
            // Under a fixed precision scheme only the token policies share the exact allocator's bits.
            let comparable = problem.precision == .any ? KVPolicy.baselines : KVPolicy.baselines.filter { !KVPolicy.bitsOnly.contains($0) }
            let answers = comparable.compactMap { baselineChoices($0, problem, budget: budget) }
            for answer in answers { for (l, c) in answer.enumerated() { p.extraHigh[l].insert(c.high) } }
            let result = try KVBudgetSolver.solve(p, budget: budget)
            choices = result.choices
            status = result.status
            // With a coarse unit (item bytes rounded up) a baseline's exact-byte answer, which the
            // menu contains, can be better; then it is the answer, and the status says so.
            func total(_ c: [KVBudgetProblem.Choice]) -> Double { c.enumerated().reduce(0) { $0 + p.value($1.element, layer: $1.offset) } }
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
                       fidelity: layers.reduce(0) { $0 + problem.profile.weight(layer: $1.layer) * $1.fidelity } / Double(max(1, layers.count)),
                       status: status)
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

/// Which curves the pass optimises against.
public enum KVProfileSource: Sendable {
    /// The documented default (`KVProfile.standard`).
    case standard
    /// A profile read from a file, with the name the report gives it.
    case given(KVProfile, name: String)
    /// A bundled family (`KVProfileFamily`), made for the graph's layers and heads.
    case family(KVProfileFamily)
}

extension KVBudgetPass {
    /// Runs the pass on a graph's caches: the report for plan.json and the cache bytes for placement.
    public static func plan(graph: Graph, target: Target, policy: KVPolicy, source: KVBudgetSource,
                            profile: KVProfileSource = .standard, precision: KVPrecision = .any) throws(PlanningError) -> (report: KVReport, cacheBytes: [Int: Int]) {
        let layers = try KVGraphLayers(graph)
        let chosenProfile: KVProfile
        let profileName: String
        switch profile {
        case .standard:
            (chosenProfile, profileName) = (KVProfile.standard(layers: layers.channels.count, model: graph.name), "default")
        case let .given(p, name):
            (chosenProfile, profileName) = (p, name)
        case let .family(f):
            chosenProfile = f.profile(layers: layers.channels.count, kvHeads: layers.kvHeads.max() ?? 1, model: graph.name)
            profileName = "family \(f.rawValue)"
        }
        guard chosenProfile.layers.count == layers.channels.count else {
            throw PlanningError("the KV profile has \(chosenProfile.layers.count) layers; '\(graph.name)' has \(layers.channels.count) attention layers")
        }
        for (l, layer) in chosenProfile.layers.enumerated() {
            if let heads = layer.heads, heads.count != layers.kvHeads[l] {
                throw PlanningError("the KV profile's layers[\(l)] has \(heads.count) head curves; '\(graph.name)' layer \(l) has \(layers.kvHeads[l]) KV heads")
            }
        }
        var problem = KVBudgetProblem(channels: layers.channels, context: layers.context, batch: layers.batch, profile: chosenProfile)
        problem.precision = precision
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
            guard target.tiers.count >= 2 else { throw PlanningError("target '\(target.name)' has no backing tier for the KV cache") }
            let room = targetRoom(graph, target)
            let minimum = layers.channels.indices.reduce(0) { $0 + problem.minimumBytes(layer: $1) }
            guard room.bytes >= minimum else {
                throw PlanningError("\(target.tiers[1].name) (\(target.tiers[1].capacity) B) has \(max(0, room.bytes)) B left after weights and "
                    + "other tensors (\(room.others) B), staging (\(room.reserve) B) and peak activations (\(room.activations) B); the KV cache "
                    + "needs at least \(minimum) B. Give --kv-budget, --kv-ratio or --kv-tokens to plan a cache that lives partly in "
                    + "\(target.tiers.count > 2 ? target.tiers[2].name : "a further tier")")
            }
            (budget, sourceName) = (min(room.bytes, problem.fullBytes), "what \(target.tiers[1].name) holds after weights, staging and peak activations")
        }
        var outcomes: [KVPolicy: Outcome] = [:]
        for each in [policy] + KVPolicy.allCases.filter({ $0 != policy }) {
            do {
                outcomes[each] = try run(problem, policy: each, budget: budget)
            } catch let e as KVBudgetSolver.Infeasible {
                throw PlanningError(e.description)
            } catch {
                throw PlanningError("KV budget solver: \(error)")
            }
        }
        guard let outcome = outcomes[policy] else {
            throw PlanningError("--kv-policy \(policy.rawValue) has no layout within \(budget) B (it keeps every token and only its bits can shrink)")
        }
        let baselines = KVPolicy.allCases.filter { $0 != policy }.map {
            KVBaseline(policy: $0.rawValue, bytes: outcomes[$0]?.bytes, fidelity: outcomes[$0]?.fidelity)
        }
        var cacheBytes: [Int: Int] = [:]
        for (l, layout) in outcome.layers.enumerated() {
            let choice = KVBudgetProblem.Choice(high: layout.highTokens, keyBits: KVBits(rawValue: layout.keyBitsHigh)!,
                                                valueBits: KVBits(rawValue: layout.valueBitsHigh)!, lowBits: KVBits(rawValue: layout.lowBits))
            cacheBytes[layers.caches[l].keys] = problem.bytes(choice, layer: l, kind: .keys)
            cacheBytes[layers.caches[l].values] = problem.bytes(choice, layer: l, kind: .values)
        }
        var report = KVReport(policy: policy.rawValue, status: outcome.status, budget: budget, budgetSource: sourceName,
                              profile: profileName, layers: outcome.layers, bytes: outcome.bytes,
                              fidelity: outcome.fidelity, baselines: baselines)
        report.precision = precision == .any ? nil : precision.rawValue
        return (report, cacheBytes)
    }

    /// What the target's first backing tier holds for the KV cache: its capacity less every
    /// non-activation, non-cache tensor, the staging reserve (4 × the scratchpad when a further
    /// tier exists) and the peak of live activations.
    static func targetRoom(_ graph: Graph, _ target: Target) -> (bytes: Int, others: Int, reserve: Int, activations: Int) {
        let others = graph.tensors.filter { $0.kind != .activation && $0.kind != .cache }.reduce(0) { $0 + $1.byteSize }
        let reserve = target.tiers.count > 2 ? 4 * target.tiers[0].capacity : 0
        let activations = GraphSummary(graph).peakActivations?.bytes ?? 0
        return (target.tiers[1].capacity - reserve - others - activations, others, reserve, activations)
    }
}
