import KVAlloc
import KVArtifact
import KVPlanner
import Testing

/// A three-step chain over three 100 B weights, with a compute tier of `capacity` bytes.
///
/// s0: x = f(A); s1: y = g(B, x); s2: z = h(A, y) with z an output. Hand-computed traffic:
/// compulsory = A + B loads + z store = 210 B. At 250 B everything fits: nothing more moves.
/// At 130 B, A must leave for B and come back: +100 B (LRU and Belady alike). The naive policy
/// empties the tier after every step: A comes back and x, y are spilled and reloaded, +100 + 2·(10 + 10) = 140 B at any capacity.
func chainProblem(capacity: Int) -> PlacementProblem {
    let target = PlanTarget(
        name: "test",
        tiers: [.init(name: "spad", capacity: capacity, alignment: 1), .init(name: "dram", capacity: 1 << 20, alignment: 1)],
        links: [.init(from: "dram", to: "spad", bandwidth: 1e9, latency: 0), .init(from: "spad", to: "dram", bandwidth: 1e9, latency: 0)])
    let values = [
        Value(name: "A", tensor: "A", kind: .weight, bytes: 100, home: 1, mustPersist: false),
        Value(name: "B", tensor: "B", kind: .weight, bytes: 100, home: 1, mustPersist: false),
        Value(name: "C", tensor: "C", kind: .weight, bytes: 100, home: 1, mustPersist: false),
        Value(name: "x", tensor: "x", kind: .activation, bytes: 10, home: nil, mustPersist: false),
        Value(name: "y", tensor: "y", kind: .activation, bytes: 10, home: nil, mustPersist: false),
        Value(name: "z", tensor: "z", kind: .output, bytes: 10, home: 1, mustPersist: true),
    ]
    let steps = [
        Step(name: "x", op: "matmul", tile: nil, tiles: nil, reads: [0], writes: [3], flops: 1000, computeSeconds: 1e-6),
        Step(name: "y", op: "matmul", tile: nil, tiles: nil, reads: [1, 3], writes: [4], flops: 1000, computeSeconds: 1e-6),
        Step(name: "z", op: "matmul", tile: nil, tiles: nil, reads: [0, 4], writes: [5], flops: 1000, computeSeconds: 1e-6),
    ]
    return PlacementProblem(model: "chain", target: target, values: values, steps: steps)
}

@Suite("Placement: replacement baselines, cost model, verifier")
struct PlacementTests {
    @Test("hand-computed traffic of every baseline on the chain", arguments: [
        (250, PlacementMethod.belady, 0), (250, .lru, 0), (250, .naive, 140),
        (130, .belady, 100), (130, .lru, 100), (130, .naive, 140),
    ])
    func chainTraffic(capacity: Int, method: PlacementMethod, extra: Int) throws {
        let p = chainProblem(capacity: capacity)
        let plan = try PlacementPlanner.plan(p, method: method, objective: .traffic, baselines: [])
        #expect(plan.estimate.compulsoryBytes == 210)
        #expect(plan.estimate.nonCompulsoryBytes == extra)
        #expect(plan.estimate.peakBytes[0] <= capacity)
        #expect(PlanVerifier.check(plan).isEmpty, "\(PlanVerifier.check(plan))")
    }

    @Test("a step whose working set exceeds the compute tier is refused, naming it and the bytes")
    func tooBig() {
        let p = chainProblem(capacity: 105)
        #expect(throws: PlanningError("step 'y' (matmul) needs 120 B at once in 'spad', which holds 105 B")) {
            _ = try PlacementPlanner.schedule(p, method: .belady)
        }
    }

    @Test("the time estimate: serial on-demand loads add to compute")
    func timeEstimate() throws {
        let p = chainProblem(capacity: 250)
        let plan = try PlacementPlanner.plan(p, method: .belady, objective: .time, baselines: [])
        // Loads of A (slot 1) and B (slot 2) and the store of z (slot 3) are serial: 210 B at 1 GB/s.
        #expect(abs(plan.estimate.seconds - (3e-6 + 210e-9)) < 1e-12)
        #expect(abs(plan.estimate.computeSeconds - 3e-6) < 1e-12)
    }

    @Test("the verifier names each kind of broken plan")
    func verifierCatches() throws {
        let good = try PlacementPlanner.plan(chainProblem(capacity: 130), method: .naive, objective: .traffic, baselines: [])
        #expect(PlanVerifier.check(good).isEmpty)
        func rules(_ edit: (inout Plan) -> Void) -> Set<String> {
            var plan = good
            edit(&plan)
            return Set(PlanVerifier.check(plan).map(\.rule))
        }
        // A missing load: the step reads data that never arrived.
        #expect(rules { p in p.transfers.removeAll { $0.to == 0 && $0.value == 1 }; p.estimate.linkBytes["dram->spad"]! -= 100 }
            .contains("uninitialised"))
        // Over capacity.
        #expect(rules { $0.target.tiers[0].capacity = 100 }.contains("capacity"))
        // Two live buffers at the same address.
        #expect(rules { p in for k in p.residencies.indices where p.residencies[k].tier == 0 { p.residencies[k].offset = 0 } }
            .contains("overlap"))
        // A value not resident when its step runs.
        #expect(rules { p in p.residencies.removeAll { $0.tier == 0 && $0.value == 3 } }.contains("resident"))
        // The output's final store is missing.
        #expect(rules { p in p.transfers.removeAll { $0.value == 5 }; p.estimate.linkBytes["spad->dram"]! -= 10 }.contains("persist"))
        // A load one slot before its residency begins: it would land on whatever holds that place then.
        #expect(rules { p in
            let k = p.transfers.firstIndex { $0.to == 0 && $0.slot > 0 }!
            p.transfers[k].slot -= 1
        }.contains("destination"))
        // Totals that do not add up.
        #expect(rules { $0.estimate.linkBytes["dram->spad"]! += 1 } == ["totals"])
        // Reloading a spilled value before it was stored.
        #expect(rules { p in
            let k = p.transfers.firstIndex { $0.reason == "spill" }!
            p.transfers[k].slot += 1
        }.contains("stale"))
    }

    @Test("plans are deterministic and round-trip through JSON")
    func deterministic() throws {
        let a = try PlacementPlanner.plan(chainProblem(capacity: 130), method: .belady, objective: .time)
        let b = try PlacementPlanner.plan(chainProblem(capacity: 130), method: .belady, objective: .time)
        let x = a, y = b
        #expect(try x.encoded() == y.encoded())
        #expect(try Plan.decode(x.encoded()) == x)
        var future = x
        future.version = 99
        #expect(throws: PlanFormatError.unsupportedVersion(99)) { _ = try Plan.decode(future.encoded()) }
    }
}
