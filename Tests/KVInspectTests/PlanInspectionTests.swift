import Foundation
import KVArtifact
import KVGraph
import KVInspect
import KVPlanner
import Testing

/// `kvplan inspect`'s figures and text, on the committed tiny-llama plan and on a tiled plan.
@Suite("Plan inspection: figures, traces, terminal text")
struct PlanInspectionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func committedPlan() throws -> Plan {
        try Plan.decode(try Data(contentsOf: root.appendingPathComponent("Generated/tiny-llama/cpu/plan.json")))
    }

    /// tiny-llama (context 128) on a 48 KiB scratchpad: tiled matmuls and attentions, many transfers.
    static func tiledPlan() throws -> Plan {
        let path = root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8)), dimensions: ["ctx": 128]).graph
        let cpu = TargetPresets.source("cpu")!.replacingOccurrences(of: "capacity=1MiB ", with: "capacity=48KiB ")
        let target = try TargetParser.parse(SourceFile(path: "<cpu with 48KiB>", text: cpu))
        return try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [.naive])
    }

    /// Compares `text` with Golden/`name`, or writes it when KVPLAN_RECORD=1.
    static func golden(_ text: String, _ name: String) throws {
        let url = root.appendingPathComponent("Tests/KVInspectTests/Golden/\(name)")
        if ProcessInfo.processInfo.environment["KVPLAN_RECORD"] == "1" {
            try text.write(to: url, atomically: true, encoding: .utf8)
        } else {
            let expected = try? String(contentsOf: url, encoding: .utf8)
            #expect(expected == text, "\(name) is stale; re-record with KVPLAN_RECORD=1 swift test --filter KVInspectTests")
        }
    }

    @Test("the slot costs recomputed from plan.json sum to the planner's own estimate")
    func slotCostsMatchTheEstimate() throws {
        for plan in [try Self.committedPlan(), try Self.tiledPlan()] {
            let slots = SlotCosts.slots(plan)
            #expect(slots.count == plan.steps.count + 2)
            let total = slots.reduce(0) { $0 + $1.seconds }
            #expect(abs(total - plan.estimate.seconds) <= 1e-12 * plan.estimate.seconds, "\(plan.model): \(total) vs \(plan.estimate.seconds)")
            let inspection = PlanInspection(plan, limit: 1_000_000)
            #expect(inspection.recomputedSeconds == total)
            // Every op's slots plus the prologue and epilogue account for the whole estimate.
            let ops = inspection.costliestOps.reduce(0) { $0 + $1.slotSeconds }
            #expect(abs(ops + slots.first!.seconds + slots.last!.seconds - total) <= 1e-12 * total)
            #expect(inspection.costliestOps.reduce(0) { $0 + $1.steps } == plan.steps.count)
            #expect(inspection.costliestTransfers.count == plan.transfers.count)
            // Links carry exactly the plan's bytes.
            for l in inspection.links { #expect(l.bytes == (plan.estimate.linkBytes["\(l.from)->\(l.to)"] ?? 0)) }
        }
    }

    @Test("figures of the committed tiny-llama plan: peaks, links, baselines, KV table, costliest lists")
    func committedFigures() throws {
        let plan = try Self.committedPlan()
        let i = PlanInspection(plan)
        #expect(i.tiers.map(\.name) == ["scratchpad", "dram", "host"])
        #expect(i.tiers[0].peakBytes == 729_344 && i.tiers[0].capacity == 1_048_576)
        #expect(i.links.first { $0.from == "dram" && $0.to == "scratchpad" }?.bytes == 11_814_868)
        #expect(i.baselines.map(\.method) == ["naive", "lru", "belady", "msa"])
        #expect(i.kv?.layers.count == 4)
        #expect(i.costliestTransfers.count == 10 && i.costliestOps.count == 10)
        // Longest first, and the longest transfers are the 704 KiB MLP weights.
        #expect(zip(i.costliestTransfers, i.costliestTransfers.dropFirst()).allSatisfy { $0.seconds >= $1.seconds })
        #expect(i.costliestTransfers[0].bytes == 720_896 && i.costliestTransfers[0].reason == "load")
        #expect(zip(i.costliestOps, i.costliestOps.dropFirst()).allSatisfy { $0.slotSeconds >= $1.slotSeconds })
        try Self.golden(InspectionText.render(i), "tiny-llama-cpu.txt")
    }

    @Test("--op follows every step of a tiled op; --tensor every tile of a tensor, ordered by slot")
    func traces() throws {
        let plan = try Self.tiledPlan()
        let tiled = plan.steps.first { $0.tiles ?? 1 > 1 }!
        let name = PlanInspection.opName(of: tiled)
        let trace = try #require(PlanTrace.op(name, in: plan))
        #expect(trace.events.filter { $0.kind == "step" }.count == tiled.tiles)
        // Every value a step reads is resident somewhere in its slot (the verifier's rule, seen here).
        #expect(!trace.events.contains { $0.detail.contains("not resident") })
        #expect(PlanTrace.op("no such op", in: plan) == nil)

        let weight = plan.values.first { $0.part != nil && $0.kind == .weight }!.tensor
        let parts = plan.values.filter { $0.tensor == weight }
        let tensorTrace = try #require(PlanTrace.tensor(weight, in: plan))
        #expect(tensorTrace.values.count == parts.count && parts.count > 1)
        #expect(zip(tensorTrace.events, tensorTrace.events.dropFirst()).allSatisfy { $0.slot <= $1.slot })
        let loads = plan.transfers.filter { t in plan.values[t.value].tensor == weight }.count
        #expect(tensorTrace.events.filter { $0.kind == "transfer" }.count == loads)

        let committed = try Self.committedPlan()
        try Self.golden(InspectionText.render(try #require(PlanTrace.op("f[0].linear2", in: committed))), "tiny-llama-cpu-op.txt")
        try Self.golden(InspectionText.render(try #require(PlanTrace.tensor("up_proj[0]", in: committed))), "tiny-llama-cpu-tensor.txt")
    }

    @Test("terminal text fits 100 columns, also for a tiled plan with long names")
    func width() throws {
        let plan = try Self.tiledPlan()
        let name = PlanInspection.opName(of: plan.steps.first { $0.tiles ?? 1 > 1 }!)
        for text in [InspectionText.render(PlanInspection(plan)), InspectionText.render(PlanInspection(try Self.committedPlan())),
                     InspectionText.render(PlanTrace.op(name, in: plan)!)] {
            for line in text.split(separator: "\n") { #expect(line.count <= InspectionText.width, "\(line.count): \(line)") }
        }
    }

    @Test("JSON carries the same figures (decodes to an equal inspection)")
    func json() throws {
        let i = PlanInspection(try Self.committedPlan())
        let data = try ArtifactJSON.encode(i)
        #expect(try JSONDecoder().decode(PlanInspection.self, from: data) == i)
    }

    @Test("mistyped names get the nearest known ones")
    func suggestions() {
        let known = ["f[0].linear", "f[0].linear2", "f[1].linear2", "a[0]", "logits"]
        #expect(NameSuggestions.nearest("f[0].lineat2", in: known) == ["f[0].linear2", "f[0].linear", "f[1].linear2"])
        #expect(NameSuggestions.nearest("logit", in: known).first == "logits")
        #expect(NameSuggestions.nearest("zzzzzzzzzz", in: known).isEmpty)
    }
}

/// `kvplan inspect --diff`: two plans compared, with exact accounting.
@Suite("Plan diff")
struct PlanDiffTests {
    @Test("a plan against itself: no change anywhere")
    func identical() throws {
        let plan = try PlanInspectionTests.committedPlan()
        let d = PlanDiff(plan, plan)
        #expect(d.totals.allSatisfy { $0.delta == 0 })
        #expect(d.tensors.isEmpty && d.tensorsChanged == 0 && d.ops.isEmpty && d.layers.isEmpty && d.onlyInA == 0 && d.onlyInB == 0)
        #expect(InspectionText.render(d).contains("B takes the same estimated time as A and moves the same non-compulsory bytes"))
    }

    @Test("belady vs naive on one tiled problem: tensor traffic changes sum to the link totals, op changes to the time")
    func accounting() throws {
        let belady = try PlanInspectionTests.tiledPlan()
        let path = PlanInspectionTests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8)), dimensions: ["ctx": 128]).graph
        let cpu = TargetPresets.source("cpu")!.replacingOccurrences(of: "capacity=1MiB ", with: "capacity=48KiB ")
        let target = try TargetParser.parse(SourceFile(path: "<cpu with 48KiB>", text: cpu))
        let naive = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .naive, objective: .time, baselines: [])
        let d = PlanDiff(belady, naive, limit: .max)
        #expect(d.tensorsChanged > 0 && d.tensors.count == d.tensorsChanged)
        let moved = d.tensors.reduce(0) { $0 + $1.movedB - $1.movedA }
        let links = naive.estimate.linkBytes.values.reduce(0, +) - belady.estimate.linkBytes.values.reduce(0, +)
        #expect(moved == links)
        let slotsA = SlotCosts.slots(belady), slotsB = SlotCosts.slots(naive)
        let edges = (slotsB.first!.seconds + slotsB.last!.seconds) - (slotsA.first!.seconds + slotsA.last!.seconds)
        let ops = d.ops.reduce(0) { $0 + $1.delta }
        #expect(abs(ops + edges - (naive.estimate.seconds - belady.estimate.seconds)) <= 1e-12 * naive.estimate.seconds)
        #expect(d.totals.first { $0.name == "estimated time" }?.delta == naive.estimate.seconds - belady.estimate.seconds)
        // Largest change first.
        let changes = d.tensors.map { abs($0.movedB - $0.movedA) }
        #expect(changes == changes.sorted(by: >))
    }

    @Test("the committed cpu plan against the edge-npu one: golden text, lines within 100 columns")
    func golden() throws {
        let cpu = try PlanInspectionTests.committedPlan()
        let npu = try Plan.decode(try Data(contentsOf: PlanInspectionTests.root.appendingPathComponent("Generated/tiny-llama/edge-npu/plan.json")))
        let text = InspectionText.render(PlanDiff(cpu, npu, labelA: "cpu", labelB: "edge-npu"))
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= InspectionText.width })
        try PlanInspectionTests.golden(text, "tiny-llama-cpu-vs-edge-npu.txt")
    }
}
