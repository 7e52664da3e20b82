import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import KVQuant
import Testing

@Suite("KV budgets: exact bytes, the exact allocator against the published baselines")
struct KVBudgetTests {
    static func problem(layers: Int = 4, context: Int = 200, channels: Int = 64, batch: Int = 1, seed: UInt64? = nil) -> KVBudgetProblem {
        var profile = KVProfile.standard(layers: layers, model: "test")
        if let seed {
            // Random concave-ish curves and errors (seeded).
            var rng = SplitMix(seed)
            func unit() -> Double { Double(rng.next() % 10_000) / 10_000 }
            for l in 0..<layers {
                let alpha = 0.1 + 0.6 * unit()
                profile.layers[l].retention = [0, 0.01, 0.03, 0.1, 0.3, 0.6, 1].map { [$0, $0 == 0 ? 0 : Foundation.pow($0, alpha)] }
                let k2 = 0.05 + 0.3 * unit(), v2 = 0.02 + 0.2 * unit()
                profile.layers[l].keyError = ["8": k2 / 60, "4": k2 / 6, "2": k2]
                profile.layers[l].valueError = ["8": v2 / 60, "4": v2 / 6, "2": v2]
            }
        }
        return KVBudgetProblem(channels: Array(repeating: channels, count: layers), context: context, batch: batch, profile: profile)
    }

    @Test("bytes of a layer, by hand: fp16 sinks + window, K4/V2 high tokens, 2-bit low tokens with a partial group")
    func handBytes() {
        let p = Self.problem(batch: 2)
        let c = KVBudgetProblem.Choice(high: 64, keyBits: .b4, valueBits: .b2, lowBits: .b2)
        // fp16 36 tokens: 2 × 36·64·2 = 9216; high 64 tokens: keys 64 ch × 2 groups × (4 + 16) = 2560,
        // values 64 tok × 2 groups × (4 + 8) = 1536; low 100 tokens at 2 bits: keys 64 × (3 × 12 + (4 + 1)) = 2624,
        // values 100 × 24 = 2400. Σ 18336, × batch 2.
        #expect(p.bytes(c, layer: 0) == 36672)
        #expect(p.layout(c, layer: 0).lowTokens == 100)
        // Evicted low tokens cost nothing.
        #expect(p.bytes(KVBudgetProblem.Choice(high: 64, keyBits: .b4, valueBits: .b2, lowBits: nil), layer: 0) == 2 * (9216 + 4096))
    }

    @Test("the exact allocator is never below any baseline, and stays within the budget (random profiles and budgets)", arguments: 1...10)
    func neverBelowBaselines(seed: Int) throws {
        let p = Self.problem(layers: 6, context: 300, seed: UInt64(seed))
        let minimum = (0..<6).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        var rng = SplitMix(UInt64(seed) &* 31)
        let budget = minimum + Int(rng.next() % UInt64(p.fullBytes - minimum))
        let exact = try #require(try KVBudgetPass.run(p, policy: .exact, budget: budget))
        #expect(exact.bytes <= budget)
        #expect(exact.status == "optimal")
        for policy in KVPolicy.baselines {
            guard let b = try KVBudgetPass.run(p, policy: policy, budget: budget) else { continue }
            #expect(b.bytes <= budget, "\(policy)")
            #expect(exact.fidelity >= b.fidelity - 1e-12, "\(policy): \(b.fidelity) > exact \(exact.fidelity)")
        }
    }

    @Test("the dynamic program and GLPK agree on the optimum (exact units)", arguments: 1...6)
    func dpMatchesILP(seed: Int) throws {
        let p = Self.problem(layers: 5, context: 260, seed: UInt64(50 + seed))
        var rng = SplitMix(UInt64(seed) &* 977)
        let minimum = (0..<5).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        let budget = minimum + Int(rng.next() % UInt64(p.fullBytes - minimum))
        let dp = try KVBudgetSolver.solve(p, budget: budget), ilp = try KVBudgetSolver.solveILP(p, budget: budget)
        func total(_ c: [KVBudgetProblem.Choice]) -> Double { c.enumerated().reduce(0) { $0 + p.fidelity($1.element, layer: $1.offset) } }
        #expect(dp.status == "optimal" && ilp.status == "optimal")
        #expect(abs(total(dp.choices) - total(ilp.choices)) < 1e-9, "dp \(total(dp.choices)) ilp \(total(ilp.choices))")
        #expect(dp.choices.enumerated().reduce(0) { $0 + p.bytes($1.element, layer: $1.offset) } <= budget)
    }

    @Test("a coarse unit rounds item bytes up: never over the budget, and the status names the unit")
    func coarseUnit() throws {
        let p = Self.problem(layers: 5, context: 260, seed: 9)
        let budget = p.fullBytes / 3
        let r = try KVBudgetSolver.solve(p, budget: budget, maxUnits: 64)
        #expect(r.status.hasPrefix("optimal at a granularity of"))
        #expect(r.choices.enumerated().reduce(0) { $0 + p.bytes($1.element, layer: $1.offset) } <= budget)
    }

    @Test("the exact allocator beats every baseline somewhere (the test can fail)")
    func beatsBaselines() throws {
        let p = Self.problem(layers: 8, context: 1024, seed: 7)
        let budget = p.fullBytes / 5
        let exact = try #require(try KVBudgetPass.run(p, policy: .exact, budget: budget))
        for policy in KVPolicy.baselines {
            guard let b = try KVBudgetPass.run(p, policy: policy, budget: budget) else { continue }
            #expect(exact.fidelity > b.fidelity + 1e-6, "\(policy)")
        }
    }

    @Test("PrefixKV keeps, in every layer, the shortest prefix reaching one common retained mass")
    func prefixEqualMass() throws {
        let p = Self.problem(layers: 6, context: 500, seed: 3)
        let out = try #require(try KVBudgetPass.run(p, policy: .prefixkv, budget: p.fullBytes / 3))
        let s = p.sinkTokens + p.windowTokens, n = Double(p.context)
        let masses = out.layers.map { p.profile.retention(layer: $0.layer, fraction: Double(s + $0.highTokens) / n) }
        let common = masses.min()!
        for layer in out.layers where layer.highTokens > 0 {
            #expect(p.profile.retention(layer: layer.layer, fraction: Double(s + layer.highTokens - 1) / n) < common,
                    "layer \(layer.layer) keeps more than the shortest prefix")
        }
    }

    @Test("budgets at the boundary: exactly the minimum keeps sinks and window only; one byte less is refused with the bytes needed")
    func boundaries() throws {
        let p = Self.problem()
        let minimum = (0..<4).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        let out = try #require(try KVBudgetPass.run(p, policy: .exact, budget: minimum))
        #expect(out.bytes == minimum && out.layers.allSatisfy { $0.highTokens == 0 && $0.lowBits == 0 })
        #expect(throws: KVBudgetSolver.Infeasible(minimumBytes: minimum, budget: minimum - 1)) {
            try KVBudgetPass.run(p, policy: .exact, budget: minimum - 1)
        }
        #expect(KVBudgetSolver.Infeasible(minimumBytes: minimum, budget: minimum - 1).description.contains("\(minimum) B"))
        // A bits-only baseline that cannot fit says so (nil), it does not evict.
        #expect(try KVBudgetPass.run(p, policy: .kivi4, budget: minimum) == nil)
    }

    @Test("on a graph: the target's room is the default budget; a tight DRAM shrinks it; the chosen bytes become the caches' sizes")
    func onGraph() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Graphs/tiny-llama.graph"), encoding: .utf8)
        let graph = try GraphCompiler.compile(SourceFile(path: "tiny-llama.graph", text: source)).graph
        var target = try TargetParser.parse(SourceFile(path: "cpu.hw", text: TargetPresets.source("cpu")!))
        let roomy = try KVBudgetPass.plan(graph: graph, target: target, policy: .exact, source: .target)
        let layers = try KVGraphLayers(graph)
        #expect(layers.channels == [64, 64, 64, 64] && layers.context == 1024)
        #expect(abs(roomy.report.fidelity - 1) < 1e-12 && roomy.report.profile == "default")
        // DRAM with room for the weights, the staging reserve, peak activations and 300 KiB of KV.
        let weights = graph.tensors.filter { $0.kind != .activation && $0.kind != .cache }.reduce(0) { $0 + $1.byteSize }
        let peak = GraphSummary(graph).peakActivations?.bytes ?? 0
        target.tiers[1].capacity = weights + 4 * target.tiers[0].capacity + peak + 300 * 1024
        let tight = try KVBudgetPass.plan(graph: graph, target: target, policy: .exact, source: .target)
        #expect(tight.report.budget == 300 * 1024 && tight.report.bytes <= 300 * 1024 && tight.report.fidelity < 1)
        let problem = try PlacementProblem(graph: graph, target: target, cacheBytes: tight.cacheBytes)
        let k0 = try #require(problem.values.first { $0.name == "k_cache[0]" })
        #expect(k0.bytes == tight.cacheBytes[layers.caches[0].keys])
    }

    @Test("a full budget keeps everything at fp16 with fidelity 1")
    func fullBudget() throws {
        let p = Self.problem()
        let out = try #require(try KVBudgetPass.run(p, policy: .exact, budget: p.fullBytes))
        #expect(abs(out.fidelity - 1) < 1e-12)
    }

    static func tinyLlama() throws -> Graph {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Graphs/tiny-llama.graph"), encoding: .utf8)
        return try GraphCompiler.compile(SourceFile(path: "tiny-llama.graph", text: source)).graph
    }

    @Test("per-KV-head curves: the layer's retention is the mean of its heads'; a wrong head count or no curve is refused")
    func headCurves() throws {
        let errors = (key: ["8": 0.0, "4": 0.1, "2": 0.2], value: ["8": 0.0, "4": 0.1, "2": 0.2])
        let layer = KVProfile.Layer(retention: [[0, 0], [1, 1]], heads: [[[0.1, 0.5], [1, 1]], [[0.1, 0.1], [1, 1]]],
                                    keyError: errors.key, valueError: errors.value)
        let profile = KVProfile(model: "t", referenceContext: 100, layers: [layer])
        try profile.validate()
        // Heads win over the layer curve: at 10% one head has 0.5, the other 0.1; the mean is 0.3.
        #expect(abs(profile.retention(layer: 0, fraction: 0.1) - 0.3) < 1e-12)
        #expect(abs(profile.retention(layer: 0, fraction: 0.55) - (0.75 + 0.55) / 2) < 1e-12)
        // The flattened layer curve (what the allocator evaluates) is the same function.
        let flat = profile.withLayerCurves()
        #expect(flat.layers[0].heads == nil)
        for x in stride(from: 0.0, through: 1.0, by: 0.005) {
            #expect(abs(flat.retention(layer: 0, fraction: x) - profile.retention(layer: 0, fraction: x)) < 1e-12, "\(x)")
        }
        var none = profile
        none.layers[0].heads = nil
        none.layers[0].retention = nil
        #expect(throws: KVProfileError("layers[0]: a 'retention' curve or per-head 'heads' curves are required")) { try none.validate() }
        var bad = profile
        bad.layers[0].heads![1] = [[0.5, 0.9], [0.4, 1]]
        #expect(throws: KVProfileError("layers[0].heads[1][1]: points must be [fraction, mass] pairs, non-decreasing, within [0, 1]")) { try bad.validate() }
        // tiny-llama has 2 KV heads per layer: a 3-head profile is refused by name.
        let graph = try Self.tinyLlama()
        let three = KVProfile(model: "t", referenceContext: 1024, layers: Array(repeating: KVProfile.Layer(
            retention: nil, heads: Array(repeating: [[0, 0], [1, 1]], count: 3), keyError: errors.key, valueError: errors.value), count: 4))
        let target = try TargetParser.parse(SourceFile(path: "cpu.hw", text: TargetPresets.source("cpu")!))
        #expect(throws: PlanningError("the KV profile's layers[0] has 3 head curves; 'tiny-llama' layer 0 has 2 KV heads")) {
            try KVBudgetPass.plan(graph: graph, target: target, policy: .exact, source: .ratio(0.5), profile: .given(three, name: "three"))
        }
    }

    @Test("on every bundled profile family and budget the exact allocator is optimal and never below a baseline", arguments: KVProfileFamily.allCases)
    func families(family: KVProfileFamily) throws {
        let profile = family.profile(layers: 6, kvHeads: 2, model: "t")
        try profile.validate()
        let p = KVBudgetProblem(channels: Array(repeating: 64, count: 6), context: 1024, batch: 1, profile: profile)
        for ratio in [0.05, 0.2, 0.5] {
            let budget = Int(Double(p.fullBytes) * ratio)
            let exact = try #require(try KVBudgetPass.run(p, policy: .exact, budget: budget))
            #expect(exact.bytes <= budget && exact.status.hasPrefix("optimal"), "\(exact.status)")
            for policy in KVPolicy.baselines {
                guard let b = try KVBudgetPass.run(p, policy: policy, budget: budget) else { continue }
                #expect(exact.fidelity >= b.fidelity - 1e-12, "\(family) \(ratio) \(policy)")
            }
        }
    }

    @Test("a fixed precision scheme: every token policy, exact included, uses only its bits; exact stays on top; mixed's minimum keeps the rest at 2 bits", arguments: [KVPrecision.evict, .kivi4, .mixed])
    func precisionSchemes(scheme: KVPrecision) throws {
        var p = Self.problem(layers: 5, context: 300, seed: 7)
        p.precision = scheme
        let bits = try #require(scheme.bits)
        let minimum = (0..<5).reduce(0) { $0 + p.minimumBytes(layer: $1) }
        let budget = minimum + (p.fullBytes - minimum) / 4
        let exact = try #require(try KVBudgetPass.run(p, policy: .exact, budget: budget))
        #expect(exact.bytes <= budget)
        for policy in [KVPolicy.exact, .uniform, .pyramid, .prefixkv, .cake] {
            let out = try #require(try KVBudgetPass.run(p, policy: policy, budget: budget))
            for l in out.layers {
                #expect(l.keyBitsHigh == bits.key.bits && l.valueBitsHigh == bits.value.bits, "\(policy)")
                #expect(l.lowTokens == 0 || l.lowBits == (bits.low?.bits ?? 0), "\(policy)")
            }
            #expect(exact.fidelity >= out.fidelity - 1e-12, "\(policy)")
        }
        #expect(throws: KVBudgetSolver.Infeasible(minimumBytes: minimum, budget: minimum - 1, keeps: p.minimumDescription)) {
            try KVBudgetPass.run(p, policy: .exact, budget: minimum - 1)
        }
        if scheme == .mixed {
            // Nothing is evicted: the minimum keeps every free token at 2 bits.
            let smallest = try #require(try KVBudgetPass.run(p, policy: .exact, budget: minimum))
            #expect(smallest.layers.allSatisfy { $0.highTokens == 0 && $0.lowBits == 2 && $0.lowTokens == p.freeTokens })
        }
    }

    @Test("the PrefixKV-shaped family keeps 89% / 24% / 72% at equal mass 0.9, as published")
    func prefixkvShape() {
        let profile = KVProfileFamily.prefixkv.profile(layers: 32, kvHeads: 8, model: "t")
        for (layer, keep) in [(0, 0.89), (21, 0.24), (31, 0.72)] {
            #expect(abs(profile.retention(layer: layer, fraction: keep) - 0.9) < 0.01, "layer \(layer)")
        }
    }

    @Test("with placement: an explicit budget that DRAM cannot hold spills KV to host and says where; a target-derived budget that spills is lowered and re-planned")
    func jointWithPlacement() throws {
        let graph = try Self.tinyLlama()
        var target = try TargetParser.parse(SourceFile(path: "cpu.hw", text: TargetPresets.source("cpu")!))
        let weights = graph.tensors.filter { $0.kind != .activation && $0.kind != .cache }.reduce(0) { $0 + $1.byteSize }
        let peak = GraphSummary(graph).peakActivations?.bytes ?? 0
        target.tiers[1].capacity = weights + 4 * target.tiers[0].capacity + peak + 200 * 1024
        let place = { (cacheBytes: [Int: Int]) throws(PlanningError) -> Plan in
            let problem = try PlacementProblem(graph: graph, target: target, cacheBytes: cacheBytes)
            return try PlacementPlanner.plan(problem, method: .msa, objective: .time)
        }
        // The whole fp16 cache (1 MiB) cannot stay in a DRAM with 200 KiB of room.
        let full = try KVJointPlanning.plan(graph: graph, target: target, policy: .exact, source: .ratio(1), place: place)
        let kv = try #require(full.kv)
        let inHost = kv.layers.reduce(0) { $0 + ($1.home?["host"] ?? 0) }
        let inDRAM = kv.layers.reduce(0) { $0 + ($1.home?["dram"] ?? 0) }
        #expect(inHost > 0 && inHost + inDRAM == kv.bytes && kv.replanned == nil, "\(kv.layers.map { $0.home ?? [:] }) \(kv.bytes)")
        #expect(full.estimate.linkBytes["host->dram", default: 0] >= inHost)
        // A target-derived budget whose placement spills (simulated: the first round's placement
        // puts layer 0's keys in host) is lowered by the spilled bytes and planned again.
        var rounds = 0
        var spilledBytes = 0
        let spilling = { (cacheBytes: [Int: Int]) throws(PlanningError) -> Plan in
            var plan = try place(cacheBytes)
            rounds += 1
            if rounds == 1, let i = plan.values.firstIndex(where: { $0.tensor == "k_cache[0]" }) {
                plan.values[i].home = 2
                spilledBytes = plan.values[i].bytes
            }
            return plan
        }
        let lowered = try KVJointPlanning.plan(graph: graph, target: target, policy: .exact, source: .target, place: spilling)
        let report = try #require(lowered.kv)
        #expect(rounds == 2 && spilledBytes > 0)
        #expect(report.budget == 200 * 1024 - spilledBytes, "\(report.budget)")
        #expect(report.replanned?.contains("re-planned 1×: \(spilledBytes) B of KV left dram") == true, "\(report.replanned ?? "nil")")
        #expect(report.layers.allSatisfy { $0.home?["host"] == nil })
    }
}

/// Per-layer sensitivity weights (`layerWeights`): validated, normalised, and they steer the allocator.
@Suite("KV budgets: per-layer sensitivity weights")
struct KVLayerWeightTests {
    @Test("weights are checked (one per layer, finite, > 0) and scaled to mean 1; absent, every layer weighs 1")
    func validation() throws {
        var profile = KVProfile.standard(layers: 4, model: "w")
        #expect(profile.weight(layer: 2) == 1)
        profile.layerWeights = [1, 2, 3]
        #expect(throws: KVProfileError("layerWeights: 3 weights for 4 layers (one per layer)")) { try profile.validate() }
        profile.layerWeights = [1, 2, 0, 1]
        #expect(throws: KVProfileError("layerWeights[2]: a weight must be a finite number > 0, got 0.0")) { try profile.validate() }
        profile.layerWeights = [2, 4, 4, 6]
        try profile.validate()
        #expect((0..<4).map { profile.weight(layer: $0) } == [0.5, 1, 1, 1.5])
        // A JSON round trip keeps them; a profile without them decodes as before.
        let again = try JSONDecoder().decode(KVProfile.self, from: try JSONEncoder().encode(profile))
        #expect(again.layerWeights == [2, 4, 4, 6])
    }

    @Test("two identical layers share the tokens equally; weighting one 3:1 moves tokens to it, and the weighted objective is optimal")
    func steering() throws {
        let equal = KVBudgetTests.problem(layers: 2, context: 512)
        let budget = equal.bytes(KVBudgetProblem.Choice(high: 120, keyBits: .b16, valueBits: .b16, lowBits: nil), layer: 0) * 2
        var fp16 = equal
        fp16.precision = .evict
        let even = try #require(try KVBudgetPass.run(fp16, policy: .exact, budget: budget))
        #expect(even.layers[0].highTokens == even.layers[1].highTokens)
        var weighted = fp16
        weighted.profile.layerWeights = [3, 1]
        let steered = try #require(try KVBudgetPass.run(weighted, policy: .exact, budget: budget))
        #expect(steered.layers[0].highTokens > steered.layers[1].highTokens, "\(steered.layers.map(\.highTokens))")
        #expect(steered.bytes <= budget)
        // Reported fidelity is the weighted mean: (1.5·f0 + 0.5·f1) / 2.
        let expected = (1.5 * steered.layers[0].fidelity + 0.5 * steered.layers[1].fidelity) / 2
        #expect(abs(steered.fidelity - expected) < 1e-12)
        // Optimal for the weighted objective: no other split of the same grid does better (brute force).
        let grid = Set(weighted.highGrid).union([even.layers[0].highTokens, steered.layers[0].highTokens]).sorted()
        var best = -Double.infinity
        for a in grid {
            for b in grid {
                let ca = KVBudgetProblem.Choice(high: a, keyBits: .b16, valueBits: .b16, lowBits: nil)
                let cb = KVBudgetProblem.Choice(high: b, keyBits: .b16, valueBits: .b16, lowBits: nil)
                guard weighted.bytes(ca, layer: 0) + weighted.bytes(cb, layer: 1) <= budget else { continue }
                best = max(best, (weighted.value(ca, layer: 0) + weighted.value(cb, layer: 1)) / 2)
            }
        }
        #expect(steered.fidelity >= best - 1e-12)
        // Uniform does not read the weights: same layout as without them.
        let uniform = try #require(try KVBudgetPass.run(weighted, policy: .uniform, budget: budget))
        #expect(uniform.layers.map(\.highTokens) == (try KVBudgetPass.run(fp16, policy: .uniform, budget: budget))?.layers.map(\.highTokens))
    }
}
