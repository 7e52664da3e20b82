import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import KVArtifact
@testable import KVInspect
import Testing

/// `kvplan inspect --svg / --html`: the timeline's geometry, aggregation, escaping and goldens.
@Suite("Plan pictures: memory timeline SVG and HTML report")
struct PlanPicturesTests {
    /// A plan small enough to read in a golden file, with names a .graph could carry.
    static func smallPlan() -> Plan {
        let target = PlanTarget(name: "toy", tiers: [.init(name: "sram", capacity: 1024, alignment: 64), .init(name: "dram", capacity: 1 << 20, alignment: 64)],
                                links: [.init(from: "dram", to: "sram", bandwidth: 1e9, latency: 1e-7), .init(from: "sram", to: "dram", bandwidth: 1e9, latency: 1e-7)])
        let values = [
            Value(name: "w<&>\"q'", tensor: "w<&>\"q'", kind: .weight, bytes: 256, home: 1, mustPersist: false),
            Value(name: "x", tensor: "x", kind: .input, bytes: 100, home: 1, mustPersist: false),
            Value(name: "h#0", tensor: "h", kind: .activation, bytes: 128, home: nil, mustPersist: false, part: ValuePart(dim: 0, start: 0, end: 1)),
            Value(name: "h#1", tensor: "h", kind: .activation, bytes: 128, home: nil, mustPersist: false, part: ValuePart(dim: 0, start: 1, end: 2)),
            Value(name: "y", tensor: "y", kind: .output, bytes: 64, home: 1, mustPersist: true),
        ]
        let steps = [
            Step(name: "h#0", op: "matmul", tile: 0, tiles: 2, reads: [0, 1], writes: [2], flops: 512, computeSeconds: 1e-6, scheme: "rows"),
            Step(name: "h#1", op: "matmul", tile: 1, tiles: 2, reads: [0, 1], writes: [3], flops: 512, computeSeconds: 1e-6, scheme: "rows"),
            Step(name: "y", op: "add", tile: nil, tiles: nil, reads: [2, 3], writes: [4], flops: 64, computeSeconds: 5e-7),
        ]
        let residencies = [
            Residency(value: 0, tier: 1, from: 0, to: 5, offset: nil), Residency(value: 1, tier: 1, from: 0, to: 5, offset: nil),
            Residency(value: 4, tier: 1, from: 0, to: 5, offset: nil),
            Residency(value: 0, tier: 0, from: 0, to: 3, offset: 0), Residency(value: 1, tier: 0, from: 0, to: 3, offset: 256),
            Residency(value: 2, tier: 0, from: 1, to: 4, offset: 384), Residency(value: 3, tier: 0, from: 2, to: 4, offset: 512),
            Residency(value: 4, tier: 0, from: 3, to: 5, offset: 0),
        ]
        let transfers = [
            Transfer(value: 0, from: 1, to: 0, bytes: 256, slot: 0, reason: "load"), Transfer(value: 1, from: 1, to: 0, bytes: 100, slot: 0, reason: "load"),
            Transfer(value: 4, from: 0, to: 1, bytes: 64, slot: 4, reason: "store"),
        ]
        let estimate = Estimate(seconds: 4.0e-6, computeSeconds: 2.5e-6, linkBytes: ["dram->sram": 356, "sram->dram": 64], compulsoryBytes: 420,
                                nonCompulsoryBytes: 0, peakBytes: [640, 448], lowerBoundSeconds: 2.5e-6)
        var plan = Plan(model: "toy<model>", target: target, objective: "time", solver: SolverSummary(method: "ilp", status: "optimal", gap: 0),
                        values: values, steps: steps, residencies: residencies, transfers: transfers, estimate: estimate,
                        baselines: [BaselineSummary(method: "naive", estimate: estimate)])
        var layer = KVLayerLayout(layer: 0, sinkTokens: 4, windowTokens: 28, highTokens: 64, keyBitsHigh: 4, valueBitsHigh: 2, lowTokens: 32, lowBits: 0,
                                  bytes: 3000, fidelity: 0.97)
        layer.home = ["dram": 3000]
        plan.kv = KVReport(policy: "exact", status: "optimal", budget: 4096, budgetSource: "--kv-budget", profile: "default",
                           layers: [layer], bytes: 3000, fidelity: 0.97, baselines: [])
        return plan
    }

    /// Parses `text` as XML; returns the parser's error, if any.
    static func xmlError(_ text: String) -> String? {
        let parser = XMLParser(data: Data(text.utf8))
        return parser.parse() ? nil : "\(parser.parserError.map { "\($0)" } ?? "unknown") at line \(parser.lineNumber), column \(parser.columnNumber)"
    }

    /// No two rectangles of one lane overlap in slots × addresses (single residencies only).
    static func overlaps(_ lane: MemoryTimeline.Lane) -> [String] {
        var found: [String] = []
        let buffers = lane.buffers.sorted { $0.from < $1.from }
        for (i, a) in buffers.enumerated() {
            for b in buffers[(i + 1)...] where b.from < a.to {
                if a.offset < b.offset + b.span && b.offset < a.offset + a.span && a.from < b.to { found.append("\(a.name) / \(b.name)") }
            }
        }
        return found
    }

    @Test("occupancy peaks are the planner's peaks; scratchpad rectangles sit at the plan's offsets and never overlap")
    func geometry() throws {
        for plan in [Self.smallPlan(), try PlanInspectionTests.committedPlan(), try PlanInspectionTests.tiledPlan()] {
            let timeline = MemoryTimeline(plan, maxBuffersPerTier: .max)
            #expect(timeline.lanes.map(\.peak) == plan.estimate.peakBytes, "\(plan.model)")
            for (tier, lane) in timeline.lanes.enumerated() {
                #expect(lane.buffers.count == plan.residencies.filter { $0.tier == tier }.count)
                #expect(Self.overlaps(lane).isEmpty, "\(plan.model) \(lane.name): \(Self.overlaps(lane).prefix(3))")
                let arriving: Int = plan.transfers.filter { $0.to == tier }.reduce(0) { $0 + $1.bytes }
                let drawn: Int = lane.loadedBytes.reduce(0, +) + lane.storedBytes.reduce(0, +)
                #expect(drawn == arriving)
            }
            let placed = Set(plan.residencies.filter { $0.tier == 0 }.map { "\(plan.values[$0.value].name)@\($0.from):\($0.offset!)" })
            #expect(Set(timeline.lanes[0].buffers.map { "\($0.name)@\($0.from):\($0.offset)" }) == placed)
        }
        // The outer tier's static regions: value order at 64 B alignment (256 → 256, 100 → 128).
        let dram = MemoryTimeline(Self.smallPlan()).lanes[1]
        #expect(dram.buffers.map(\.offset) == [0, 256, 384])
        #expect(dram.extent == 448)
    }

    @Test("above the limit, one tensor's touching tiles merge exactly, then into marked bounding boxes; bytes are kept")
    func aggregation() throws {
        let plan = try PlanInspectionTests.tiledPlan()
        let full = MemoryTimeline(plan, maxBuffersPerTier: .max).lanes[0]
        let exact = MemoryTimeline.mergedExactly(full.buffers)
        #expect(exact.count < full.buffers.count)
        let exactBytes = exact.map(\.bytes).reduce(0, +), fullBytes = full.buffers.map(\.bytes).reduce(0, +)
        #expect(exactBytes == fullBytes)
        #expect(exact.map(\.residencies).reduce(0, +) == full.residencies)
        #expect(exact.filter(\.isBoundingBox).isEmpty)
        // An exact merge covers precisely its parts: its area is the sum of theirs.
        for b in exact where b.residencies > 1 {
            let parts = full.buffers.filter { $0.tensor == b.tensor && $0.from >= b.from && $0.to <= b.to && $0.offset >= b.offset && $0.offset + $0.span <= b.offset + b.span }
            #expect(parts.reduce(0) { $0 + $1.span * ($1.to - $1.from) } == b.span * (b.to - b.from), "\(b.name)")
        }
        var merged = full
        merged.buffers = exact
        #expect(Self.overlaps(merged).isEmpty)
        let limited = MemoryTimeline(plan, maxBuffersPerTier: 20).lanes[0]
        #expect(limited.buffers.count < exact.count)
        #expect(!limited.buffers.filter(\.isBoundingBox).isEmpty)
        #expect(limited.buffers.map(\.residencies).reduce(0, +) == full.residencies)
        #expect(limited.occupancy == full.occupancy)
        let svg = TimelineSVG.render(plan, maxBuffersPerTier: 20)
        #expect(svg.contains("drawn as \(limited.buffers.count) (tiles of one tensor merged)"))
    }

    @Test("SVG: well-formed XML, deterministic, names escaped, one titled rectangle per buffer; golden")
    func svg() throws {
        let plan = Self.smallPlan()
        let svg = TimelineSVG.render(plan)
        #expect(Self.xmlError(svg) == nil, "\(Self.xmlError(svg) ?? "")")
        #expect(svg == TimelineSVG.render(plan))
        #expect(!svg.contains("w<&>"))
        #expect(svg.contains("data-name=\"w&lt;&amp;&gt;&quot;q&#39;\""))
        #expect(svg.components(separatedBy: "class=\"kv-b ").count - 1 == plan.residencies.count)
        #expect(svg.contains("k4/v2"))
        for plan in [try PlanInspectionTests.committedPlan(), try PlanInspectionTests.tiledPlan()] {
            let text = TimelineSVG.render(plan)
            #expect(Self.xmlError(text) == nil, "\(plan.model): \(Self.xmlError(text) ?? "")")
        }
        try PlanInspectionTests.golden(svg, "toy.svg")
        // The picture in Docs/inspect.md is the committed edge-npu plan's (re-recorded by scripts/regenerate.sh).
        let npu = try Plan.decode(try Data(contentsOf: PlanInspectionTests.root.appendingPathComponent("Generated/tiny-llama/edge-npu/plan.json")))
        let shown = try String(contentsOf: PlanInspectionTests.root.appendingPathComponent("Docs/inspect-tiny-llama-edge-npu.svg"), encoding: .utf8)
        #expect(shown == TimelineSVG.render(npu), "Docs/inspect-tiny-llama-edge-npu.svg is stale: run scripts/regenerate.sh")
    }

    @Test("HTML: self-contained, every op, tensor and transfer in a sortable table, hover data on buffers; golden")
    func html() throws {
        let plan = Self.smallPlan()
        let html = HTMLReport.render(plan)
        #expect(html == HTMLReport.render(plan))
        // Nothing fetched: no src/href attributes and no URL but the SVG namespace.
        #expect(!html.contains("src="))
        #expect(!html.contains("href="))
        #expect(html.components(separatedBy: "://").count - 1 == html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1)
        #expect(!html.contains("w<&>"))
        #expect(html.components(separatedBy: "<table class=\"sortable\">").count - 1 == 3)
        #expect(html.contains("<h2>Ops (2)</h2>"))
        #expect(html.contains("<h2>Tensors (4)</h2>"))
        #expect(html.contains("<h2>Transfers (3)</h2>"))
        #expect(html.contains("data-life=\"slots 1–3\""))
        let tiled = try PlanInspectionTests.tiledPlan()
        let big = HTMLReport.render(tiled)
        #expect(big.contains("<h2>Transfers (\(tiled.transfers.count))</h2>"))
        #expect(big.components(separatedBy: "<tr>").count - 1 >= tiled.transfers.count + Set(tiled.values.map(\.tensor)).count)
        try PlanInspectionTests.golden(html, "toy.html")
    }
}
