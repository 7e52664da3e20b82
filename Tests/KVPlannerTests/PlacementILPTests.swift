import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import Testing

/// A random chain of `steps` steps over weights and activations (seeded), for property tests.
func randomProblem(seed: UInt64, steps: Int, capacity: Int) -> PlacementProblem {
    var rng = SplitMix(seed)
    let target = PlanTarget(
        name: "test",
        tiers: [.init(name: "spad", capacity: capacity, alignment: 1), .init(name: "dram", capacity: 1 << 20, alignment: 1)],
        links: [.init(from: "dram", to: "spad", bandwidth: 1e9, latency: 1e-8), .init(from: "spad", to: "dram", bandwidth: 1e9, latency: 1e-8)])
    var values: [Value] = []
    var list: [Step] = []
    for i in 0..<steps {
        let w = values.count
        values.append(Value(name: "w\(i)", tensor: "w\(i)", kind: .weight, bytes: 20 + Int(rng.next() % 80), home: 1, mustPersist: false))
        let y = values.count
        let last = i == steps - 1
        values.append(Value(name: "a\(i)", tensor: "a\(i)", kind: last ? .output : .activation, bytes: 5 + Int(rng.next() % 30),
                            home: last ? 1 : nil, mustPersist: last))
        var reads = [w]
        if i > 0 { reads.append(y - 2) }  // the previous activation
        if i > 2, rng.next() % 2 == 0 { reads.append(Int(rng.next() % UInt64(i - 1)) * 2) }  // an earlier weight again
        list.append(Step(name: "a\(i)", op: "matmul", tile: nil, tiles: nil, reads: reads, writes: [y], flops: 1000,
                         computeSeconds: Double(50 + Int(rng.next() % 150)) * 1e-9))
    }
    return PlacementProblem(model: "random\(seed)", target: target, values: values, steps: list)
}

struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Placement ILP: hand-computed optima, never worse than a baseline, time-limit fallback")
struct PlacementILPTests {
    /// On the chain (3 steps of 1 µs; A, B 100 B at 1 GB/s = 100 ns; z stored, 10 ns):
    /// at 250 B, A's first load cannot be hidden (nothing computes before it), B's load overlaps
    /// step 1, z's store follows its own step: 1.1 + 1.0 + 1.01 = 3.11 µs. At 210 B, A must leave
    /// for B (A + B + x + y = 220 B) and its reload cannot be hidden (slot 2 has no 100 B free):
    /// 1.1 + 1.0 + 1.11 = 3.21 µs. Belady, on demand, needs 3.21 and 3.31 µs.
    @Test("the ILP finds the hand-computed optimal time", arguments: [(250, 3.11e-6, 3.21e-6), (210, 3.21e-6, 3.31e-6)])
    func handComputed(capacity: Int, optimum: Double, belady: Double) throws {
        let plan = try PlacementPlanner.plan(chainProblem(capacity: capacity), method: .ilp, objective: .time)
        #expect(abs(plan.estimate.seconds - optimum) < 1e-12, "\(plan.estimate.seconds)")
        let b = try #require(plan.baselines.first { $0.method == "belady" })
        #expect(abs(b.estimate.seconds - belady) < 1e-12)
        #expect(PlanVerifier.check(plan).isEmpty)
    }

    @Test("on random problems the ILP is never worse than any baseline, and its plans verify", arguments: 1...12)
    func neverWorse(seed: Int) throws {
        for objective in PlacementObjective.allCases {
            let p = randomProblem(seed: UInt64(seed), steps: 8 + seed % 5, capacity: 280)
            let plan = try PlacementPlanner.plan(p, method: .ilp, objective: objective, options: ILPOptions(timeLimit: 10, window: 6))
            #expect(PlanVerifier.check(plan).isEmpty, "\(PlanVerifier.check(plan).prefix(3))")
            for b in plan.baselines {
                if objective == .time {
                    #expect(plan.estimate.seconds <= b.estimate.seconds + 1e-15, "\(b.method)")
                } else {
                    #expect(plan.estimate.nonCompulsoryBytes <= b.estimate.nonCompulsoryBytes, "\(b.method)")
                }
            }
        }
    }

    @Test("offsets decided in the ILP (packed and joint, many windows, 8-byte alignment): plans verify, never worse", arguments: 1...6)
    func offsetsInTheProgram(seed: Int) throws {
        var p = randomProblem(seed: UInt64(100 + seed), steps: 24, capacity: 320)
        p.target.tiers[0].alignment = 8
        for mode in AddressMode.allCases {
            let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .time,
                                                 options: ILPOptions(timeLimit: 20, window: 4, addresses: mode))
            #expect(PlanVerifier.check(plan).isEmpty, "\(mode): \(PlanVerifier.check(plan).prefix(3))")
            #expect(!plan.solver.status.contains("found no scratchpad addresses"), "\(plan.solver.status)")
            for r in plan.residencies where r.tier == 0 { #expect(r.offset.map { $0 % 8 == 0 } == true) }
            let best = plan.baselines.map(\.estimate.seconds).min()!
            #expect(plan.estimate.seconds <= best + 1e-15, "\(mode)")
        }
    }

    @Test("with joint offsets the windows improve on the warm start somewhere (the test can fail)")
    func jointImproves() throws {
        var wins = 0
        for seed in 1...6 {
            var p = randomProblem(seed: UInt64(100 + seed), steps: 24, capacity: 320)
            p.target.tiers[0].alignment = 8
            let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .time, options: ILPOptions(timeLimit: 20, window: 4, addresses: .joint))
            if plan.estimate.seconds < plan.baselines.map(\.estimate.seconds).min()! - 1e-15 { wins += 1 }
        }
        #expect(wins >= 1)
    }

    @Test("both lower bounds (LP of free-boundary windows; compute and compulsory transfers) are at most every plan's time", arguments: 1...8)
    func bounds(seed: Int) throws {
        let p = randomProblem(seed: UInt64(200 + seed), steps: 16, capacity: 260)
        // The LP bound gets 15% of the time limit; 120 s leaves it room when the debug build's
        // parallel tests load both cores (with 20 s one seed once ran out and skipped the bound).
        let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .time, options: ILPOptions(timeLimit: 120, window: 5))
        let lp = try #require(plan.solver.lpBoundSeconds)
        let simple = try #require(plan.estimate.lowerBoundSeconds)
        #expect(lp > 0 && simple > 0)
        for seconds in [plan.estimate.seconds] + plan.baselines.map(\.estimate.seconds) {
            #expect(lp <= seconds + 1e-15 && simple <= seconds + 1e-15, "lp \(lp), simple \(simple), plan \(seconds)")
        }
    }

    @Test("on the hand-computed chain the LP bound lies between compute alone and the optimum")
    func chainBound() throws {
        let plan = try PlacementPlanner.plan(chainProblem(capacity: 250), method: .ilp, objective: .time)
        let lp = try #require(plan.solver.lpBoundSeconds)
        #expect(lp >= 3e-6 - 1e-15 && lp <= 3.11e-6 + 1e-15, "\(lp)")
    }

    @Test("joint offsets still find the hand-computed optimum")
    func jointHandComputed() throws {
        let plan = try PlacementPlanner.plan(chainProblem(capacity: 210), method: .ilp, objective: .time,
                                             options: ILPOptions(addresses: .joint))
        #expect(abs(plan.estimate.seconds - 3.21e-6) < 1e-12, "\(plan.estimate.seconds)")
        #expect(PlanVerifier.check(plan).isEmpty)
    }

    @Test("the ILP beats the best heuristic somewhere in the random suite (the test can fail)")
    func improvesSomewhere() throws {
        var wins = 0
        for seed in 1...12 {
            let p = randomProblem(seed: UInt64(seed), steps: 8 + seed % 5, capacity: 280)
            let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .time, options: ILPOptions(timeLimit: 10, window: 6))
            let best = plan.baselines.map(\.estimate.seconds).min()!
            if plan.estimate.seconds < best - 1e-15 { wins += 1 }
        }
        #expect(wins >= 1)
    }

    @Test("with no time, the ILP falls back to the best heuristic and says so")
    func timeLimitFallback() throws {
        let p = randomProblem(seed: 3, steps: 10, capacity: 280)
        let plan = try PlacementPlanner.plan(p, method: .ilp, objective: .time, options: ILPOptions(timeLimit: 0.001))
        #expect(plan.solver.status.hasPrefix("heuristic ("))
        #expect(plan.estimate.seconds == plan.baselines.map(\.estimate.seconds).min()!)
        #expect(PlanVerifier.check(plan).isEmpty)
    }

    @Test("identical layers are solved once: windows of a repeated graph are reused")
    func replication() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Graphs/tiny-llama.graph"), encoding: .utf8)
        let graph = try GraphCompiler.compile(SourceFile(path: "tiny-llama.graph", text: source)).graph
        let target = try TargetParser.parse(SourceFile(path: "cpu.hw", text: TargetPresets.source("cpu")!))
        let plan = try PlacementPlanner.plan(PlacementProblem(graph: graph, target: target), method: .ilp, objective: .time)
        #expect(plan.solver.status.contains("reused from identical ones"))
        #expect(!plan.solver.status.contains("(0 reused"))
        #expect(PlanVerifier.check(plan).isEmpty)
    }
}
