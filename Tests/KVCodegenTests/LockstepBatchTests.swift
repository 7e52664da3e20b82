import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import KVRuntime
import Testing

/// `kvplan eval` and `profile --sensitivity` stream all windows of a run in lockstep, one per
/// sequence of a batched program, and report each window's losses as if it ran alone. That holds
/// only if nothing mixes sequences: each row's matmul sums in the same order whatever the batch
/// (the matmul walks rows in blocks), each sequence keeps its own packed cache and scores.
@Suite("Lockstep batches: each sequence's logits equal its batch-1 run, bit for bit")
struct LockstepBatchTests {
    static func program(_ dimensions: [String: Int]) throws -> (Graph, ModelProgram) {
        let path = TransformersCrossCheckTests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8)), dimensions: dimensions).graph
        return (graph, ProgramExport.program(graph))
    }

    @Test("5 windows of 80 bytes (a 4-row block and one more) through the packed cache (evict, mixed at 60%) and the f32 cache", arguments: [KVPrecision.evict, .mixed, nil])
    func lockstepEqualsAlone(precision: KVPrecision?) throws {
        let (graph, single) = try Self.program(["ctx": 80])
        let (_, batched) = try Self.program(["ctx": 80, "batch": 5])
        let weights = try CheckpointWeights.load(single, from: try SafetensorsFile(
            path: TransformersCrossCheckTests.root.appendingPathComponent("Graphs/tiny-llama/model.safetensors").path))
        let text = [UInt8](try Data(contentsOf: TransformersCrossCheckTests.root.appendingPathComponent("Graphs/tiny-llama/eval.txt")))
        let windows = (0..<5).map { Array(text[($0 * 80)..<(($0 + 1) * 80)]) }
        let layouts = try precision.map { precision in
            let target = try TargetParser.parse(SourceFile(path: "<cpu>", text: TargetPresets.source("cpu")!))
            return try KVBudgetPass.plan(graph: graph, target: target, policy: .exact, source: .ratio(0.6), profile: .standard, precision: precision).0.layers
        }
        // Some tokens must actually leave (evict) or be quantised (mixed), or the test checks little.
        if let layouts { #expect(layouts.contains { $0.sinkTokens + $0.windowTokens + (precision == .evict ? $0.highTokens : 0) < 80 }) }
        let alone = try windows.map { w in
            var generator = try Generator(try ReferenceInterpreter(program: single, weights: weights, kvLayouts: layouts))
            return try w.indices.map { p in try generator.feed(Int(w[p]), position: p) }
        }
        var together = try ReferenceInterpreter(program: batched, weights: weights, kvLayouts: layouts)
        let tokens = batched.tensors.firstIndex { $0.name == "tokens" }!, positions = Generator.positionInput(of: batched)!
        let logits = batched.tensors.indices.last { batched.tensors[$0].kind == "output" }!
        var differing = 0
        for p in 0..<80 {
            try together.setInput(tokens, windows.map { Float($0[p]) })
            try together.setInput(positions, Array(repeating: Float(p), count: 5))
            try together.step()
            for b in 0..<5 where together.values[logits][(b * 256)..<((b + 1) * 256)].map(\.bitPattern) != alone[b][p].map(\.bitPattern) { differing += 1 }
        }
        #expect(differing == 0, "\(differing) of 400 (window, position) logit rows differ")
    }
}
