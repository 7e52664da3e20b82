import KVArtifact

/// Operator order as a decision (`--schedule optimize`): local search over topological orders.
///
/// Rationale. The order ops run in decides how many activations are live at once, and so what
/// fits, what spills and what can be prefetched; COSMA makes it part of its integer program. Here
/// the order is searched outside the placement program, which then plans the order found:
///   - an op's tiles stay together (a *block*); blocks depend on each other through the values
///     they share (read after write, write after read, write after write), so every order tried
///     is a topological order and every plan stays valid;
///   - a move relocates one block to another position its dependencies allow: the earliest, the
///     latest, or one step either way (finishing one branch before starting another is a
///     sequence of such moves);
///   - each candidate order is scored by the MSA baseline without addresses (furthest-next-use
///     residency plus greedy prefetch; furthest-next-use alone for `traffic`) under the chosen
///     objective, and the first move that lowers the score is kept (hill climbing, in passes);
///   - the budget counts evaluations, not seconds, so the same input gives the same order.
/// A graph without independent ops (a chain) has only one order; the search says so and stops.
public enum OrderSearch {
    /// What the search did.
    public struct Outcome: Sendable {
        /// The problem with its steps in the order found (the input's when nothing helped).
        public var problem: PlacementProblem
        /// The score (seconds, or non-compulsory bytes) of the source order and of the order found.
        public var before: Double, after: Double
        /// Orders scored, and moves kept.
        public var evaluations: Int, moves: Int
        /// One line for the summary.
        public var note: String
    }

    /// Searches for a better order of `p`'s op blocks; never returns a worse score than the source order.
    public static func optimize(_ p: PlacementProblem, objective: PlacementObjective,
                                maxEvaluations: Int = 3000, maxBlocks: Int = 5000) -> Outcome {
        // Blocks: the steps of one op (its tiles, consecutive in the source order).
        var blocks: [Range<Int>] = []
        var i = 0
        while i < p.steps.count {
            let length = p.steps[i].tile == 0 ? max(1, p.steps[i].tiles ?? 1) : 1
            blocks.append(i..<min(p.steps.count, i + length))
            i += length
        }
        let n = blocks.count
        func score(_ order: [Int]) -> Double {
            var q = p
            q.steps = order.flatMap { blocks[$0].map { p.steps[$0] } }
            return evaluate(q, objective: objective)
        }
        let source = Array(0..<n)
        let before = score(source)
        guard n <= maxBlocks else {
            return Outcome(problem: p, before: before, after: before, evaluations: 1, moves: 0,
                           note: "source order kept: \(n) ops exceed the search's \(maxBlocks)")
        }
        // Dependencies between blocks, through every value they share.
        var preds = Array(repeating: Set<Int>(), count: n), succs = Array(repeating: Set<Int>(), count: n)
        var lastWriter = [Int: Int](), readersSince = [Int: [Int]]()
        func edge(_ a: Int, _ b: Int) { if a != b { preds[b].insert(a); succs[a].insert(b) } }
        for (b, range) in blocks.enumerated() {
            var reads = Set<Int>(), writes = Set<Int>()
            for s in range { reads.formUnion(p.steps[s].reads); writes.formUnion(p.steps[s].writes) }
            for v in reads.sorted() {
                if let w = lastWriter[v] { edge(w, b) }
                readersSince[v, default: []].append(b)
            }
            for v in writes.sorted() {
                if let w = lastWriter[v] { edge(w, b) }
                for r in readersSince[v] ?? [] { edge(r, b) }
                lastWriter[v] = b
                readersSince[v] = []
            }
        }
        // A chain has one order.
        if (1..<max(1, n)).allSatisfy({ preds[$0].contains($0 - 1) }) {
            return Outcome(problem: p, before: before, after: before, evaluations: 1, moves: 0,
                           note: "source order kept: the ops form a chain (no other order exists)")
        }
        var order = source
        var best = before
        var evaluations = 1, moves = 0
        var improved = true
        search: while improved {
            improved = false
            for b in 0..<n {
                var position = Array(repeating: 0, count: n)
                for (k, x) in order.enumerated() { position[x] = k }
                let at = position[b]
                let lo = (preds[b].map { position[$0] }.max() ?? -1) + 1
                let hi = (succs[b].map { position[$0] }.min() ?? n) - 1
                var targets: [Int] = []
                for t in [lo, hi, at - 1, at + 1] where t >= lo && t <= hi && t != at && !targets.contains(t) { targets.append(t) }
                for t in targets {
                    guard evaluations < maxEvaluations else { break search }
                    var candidate = order
                    candidate.remove(at: at)
                    candidate.insert(b, at: t)
                    evaluations += 1
                    let s = score(candidate)
                    if s < best - 1e-12 * max(1, abs(best)) {
                        order = candidate
                        best = s
                        moves += 1
                        improved = true
                        break
                    }
                }
            }
        }
        var q = p
        q.steps = order.flatMap { blocks[$0].map { p.steps[$0] } }
        let unit = objective == .time ? "s" : "B"
        let change = before > 0 ? 100 * (before - best) / before : 0
        let note = moves == 0
            ? "source order kept: no move of \(evaluations - 1) tried lowers the msa \(objective.rawValue)"
            : String(format: "optimized: %d moves kept of %d orders scored, msa %@ %.6g → %.6g %@ (%.1f%% less)",
                     moves, evaluations, objective.rawValue, before, best, unit, change)
        return Outcome(problem: q, before: before, after: best, evaluations: evaluations, moves: moves, note: note)
    }

    /// The score of an order: the MSA baseline's estimate without addresses (Belady's for traffic).
    static func evaluate(_ p: PlacementProblem, objective: PlacementObjective) -> Double {
        let capacity = p.target.tiers[p.computeTier].capacity
        guard var s = try? ReplacementPlanner(policy: .belady).schedule(p, budget: capacity) else { return .infinity }
        if objective == .time {
            let ilp = PlacementILP(p, objective: .time, capacity: capacity)
            s = ilp.schedule(of: PrefetchPass.hoist(p, ilp.decisions(of: s), capacity: capacity))
        }
        return PlacementPlanner.cost(CostModel.estimate(p, s), objective)
    }
}
