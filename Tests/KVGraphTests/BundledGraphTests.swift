import Foundation
import Testing
@testable import KVGraph

@Suite("Bundled graphs: golden IR, summaries, importer output", .serialized)
struct BundledGraphTests {
    @Test("every bundled graph checks without warnings and matches its golden IR dump (KVPLAN_RECORD=1 re-records)")
    func goldenIR() throws {
        let graphs = try bundledGraphs()
        #expect(graphs.count >= 9)
        for url in graphs {
            let text = try String(contentsOf: url, encoding: .utf8)
            let g = try GraphCompiler.compile(SourceFile(path: url.path, text: text))
            #expect(g.warnings.isEmpty, "\(url.lastPathComponent): \(g.warnings)")
            let dump = IRPrinter.print(g.graph)
            let golden = repositoryRoot.appendingPathComponent("Tests/KVGraphTests/Golden/\(url.deletingPathExtension().lastPathComponent).ir")
            if isRecording {
                try dump.write(to: golden, atomically: true, encoding: .utf8)
            } else {
                let expected = try? String(contentsOf: golden, encoding: .utf8)
                #expect(expected == dump, "\(golden.lastPathComponent) is stale; re-record with KVPLAN_RECORD=1 swift test --filter BundledGraphTests")
            }
        }
    }

    @Test("tiny-llama summary: exact parameters, KV bytes and activation peak")
    func tinyLlamaSummary() throws {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("Graphs/tiny-llama.graph"), encoding: .utf8)
        let s = GraphSummary(lower(text)!.graph)
        // embed 256·256 + 4 × (q 256·256 + k,v 2·64·256 + o 256·256 + 3·704·256 + 2·256) + norm 256 + lm_head 256·256
        #expect(s.parameters == 2_951_424)
        #expect(s.weightBytes == 4 * 2_951_424)
        // 4 layers × (k + v) × 2 heads × 32 × 4 bytes = 2,048 B per token; × 1024 tokens
        #expect(s.kvCache.bytesPerToken == 2048)
        #expect(s.kvCache.totalBytes == 2_097_152)
        #expect(s.kvCache.layers.map(\.layer) == ["0", "1", "2", "3"])
        // The peak is at the first SwiGLU: gate, up (704 f32 each), its result, plus the live residual r[0] (256 f32) and pos.
        #expect(s.peakActivations?.bytes == 3 * 704 * 4 + 256 * 4 + 4)
        #expect(s.peakActivations?.kind == "silu_mul")
        #expect(s.largestWorkingSet?.kind == "matmul")
        #expect(s.largestWorkingSet?.bytes == 704 * 256 * 4 + 256 * 4 + 704 * 4)
        let wider = GraphSummary(lower(text, dimensions: ["ctx": 4096, "batch": 2])!.graph)
        #expect(wider.kvCache.totalBytes == 2_097_152 * 4 * 2)
        #expect(wider.kvCache.bytesPerToken == 2048)
    }

    @Test("activation peak of a straight line is the largest adjacent pair")
    func activationPeak() {
        let g = lower("input x: f32[10]\na = relu(x)\nb = concat(a, a, axis=0)\noutput c = relu(b)")!.graph
        // step 0: x(40) + a(40); step 1: a + b(80); step 2: b + c(80) = 160
        #expect(GraphSummary(g).peakActivations?.bytes == 160)
    }
}
