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
        let roomy = try KVBudgetPass.plan(graph: graph, target: target, policy: .exact, source: .target, profile: nil, profileName: "default")
        let layers = try KVGraphLayers(graph)
        #expect(layers.channels == [64, 64, 64, 64] && layers.context == 1024)
        #expect(abs(roomy.report.fidelity - 1) < 1e-12 && roomy.report.profile == "default")
        // DRAM with room for the weights, the staging reserve, peak activations and 300 KiB of KV.
        let weights = graph.tensors.filter { $0.kind != .activation && $0.kind != .cache }.reduce(0) { $0 + $1.byteSize }
        let peak = GraphSummary(graph).peakActivations?.bytes ?? 0
        target.tiers[1].capacity = weights + 4 * target.tiers[0].capacity + peak + 300 * 1024
        let tight = try KVBudgetPass.plan(graph: graph, target: target, policy: .exact, source: .target, profile: nil, profileName: "default")
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
}
