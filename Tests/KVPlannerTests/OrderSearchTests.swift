import KVArtifact
import KVPlanner
import Testing

@Suite("Operator order as a decision (--schedule optimize)")
struct OrderSearchTests {
    /// Two branches from one input x (10 B), each a 100 B activation reduced to 10 B, joined at
    /// the end. The source interleaves the branches: at `a2`, x + a1 + a2 = 210 B > 130 B, so a1
    /// (dirty, needed later) is spilled; at `b1`, a1 + a2 + b1 = 210 B, so a2 is spilled too; both
    /// come back: 4 × 100 = 400 B beyond the compulsory. Finishing one branch first never holds
    /// more than 120 B: no traffic beyond the compulsory.
    static func branches() -> PlacementProblem {
        let target = PlanTarget(
            name: "test",
            tiers: [.init(name: "spad", capacity: 130, alignment: 1), .init(name: "dram", capacity: 1 << 20, alignment: 1)],
            links: [.init(from: "dram", to: "spad", bandwidth: 1e9, latency: 0), .init(from: "spad", to: "dram", bandwidth: 1e9, latency: 0)])
        let values = [
            Value(name: "x", tensor: "x", kind: .input, bytes: 10, home: 1, mustPersist: false),
            Value(name: "a1", tensor: "a1", kind: .activation, bytes: 100, home: nil, mustPersist: false),
            Value(name: "a2", tensor: "a2", kind: .activation, bytes: 100, home: nil, mustPersist: false),
            Value(name: "b1", tensor: "b1", kind: .activation, bytes: 10, home: nil, mustPersist: false),
            Value(name: "b2", tensor: "b2", kind: .activation, bytes: 10, home: nil, mustPersist: false),
            Value(name: "out", tensor: "out", kind: .output, bytes: 10, home: 1, mustPersist: true),
        ]
        func step(_ name: String, _ reads: [Int], _ writes: [Int]) -> Step {
            Step(name: name, op: "opaque", tile: nil, tiles: nil, reads: reads, writes: writes, flops: 1000, computeSeconds: 1e-6)
        }
        let steps = [step("a1", [0], [1]), step("a2", [0], [2]), step("b1", [1], [3]), step("b2", [2], [4]), step("out", [3, 4], [5])]
        return PlacementProblem(model: "branches", target: target, values: values, steps: steps)
    }

    @Test("finishing one branch first removes the spills: 400 B → 0 B, and the plan verifies")
    func branchesFinishFirst() throws {
        let p = Self.branches()
        let found = OrderSearch.optimize(p, objective: .traffic)
        #expect(found.before == 400 && found.after == 0, "\(found.before) → \(found.after)")
        #expect(found.moves >= 1)
        // Dependencies hold: each b after its a, out last.
        let names = found.problem.steps.map(\.name)
        #expect(names.firstIndex(of: "b1")! > names.firstIndex(of: "a1")! && names.last == "out")
        let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .traffic, schedule: .optimize)
        #expect(plan.estimate.nonCompulsoryBytes == 0)
        #expect(plan.baselines.allSatisfy { $0.method == "naive" || $0.estimate.nonCompulsoryBytes == 400 }, "baselines keep the source order")
        #expect(plan.solver.order?.hasPrefix("optimized") == true)
        #expect(PlanVerifier.check(plan).isEmpty, "\(PlanVerifier.check(plan).prefix(3))")
    }

    @Test("a chain has one order, and the search says so without moving anything")
    func chain() {
        let p = chainProblem(capacity: 250)
        let found = OrderSearch.optimize(p, objective: .time)
        #expect(found.problem.steps == p.steps && found.moves == 0 && found.note.contains("chain"))
    }

    /// A random DAG: each step reads its weight and up to two earlier activations (seeded).
    static func randomDAG(seed: UInt64, steps: Int) -> PlacementProblem {
        var p = randomProblem(seed: seed, steps: steps, capacity: 200)
        var rng = SplitMix(seed &+ 77)
        for i in p.steps.indices {
            var reads = [2 * i]  // the step's weight
            if i > 0 {
                for _ in 0..<(1 + Int(rng.next() % 2)) { reads.append(2 * Int(rng.next() % UInt64(i)) + 1) }
            }
            p.steps[i].reads = Array(Set(reads)).sorted()
        }
        return p
    }

    @Test("the search is deterministic, never worse than the source order, and its plans verify on random DAGs", arguments: 1...6)
    func neverWorse(seed: Int) throws {
        let p = Self.randomDAG(seed: UInt64(seed), steps: 14)
        let a = OrderSearch.optimize(p, objective: .time), b = OrderSearch.optimize(p, objective: .time)
        #expect(a.problem.steps == b.problem.steps && a.after == b.after)
        #expect(a.after <= a.before)
        let plan = try PlacementPlanner.plan(p, method: .msa, objective: .time, schedule: .optimize)
        #expect(PlanVerifier.check(plan).isEmpty, "\(PlanVerifier.check(plan).prefix(3))")
    }
}
