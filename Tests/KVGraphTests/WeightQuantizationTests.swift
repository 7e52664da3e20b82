import Foundation
import KVGraph
import Testing

@Suite("Weight quantisation pass (--weight-dtype)")
struct WeightQuantizationTests {
    static func graph(_ name: String) throws -> Graph {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Graphs/\(name).graph").path
        return try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8))).graph
    }

    @Test("tiny-llama: the 29 linear weights in each format take exactly their block bytes; embeddings and norms stay f32", arguments: [
        (DType.f16, 2 * 2_883_584), (.bf16, 2 * 2_883_584), (.q8_0, 2_883_584 / 32 * 34), (.q4_0, 2_883_584 / 32 * 18),
    ])
    func tinyLlama(dtype: DType, linearBytes: Int) throws {
        var g = try Self.graph("tiny-llama")
        let before = g.tensors.filter { $0.kind == .weight }.reduce(0) { $0 + $1.byteSize }
        let touched = g.ops.reduce(0) { $0 + $1.bytesTouched }
        let outcome = try WeightQuantization.apply(to: &g, dtype: dtype)
        // 4 layers × (q 256², k 64·256, v 64·256, o 256², gate/up/down 704·256) + lm_head 256² values.
        #expect(outcome.converted.count == 29)
        #expect(outcome.kept.isEmpty)
        #expect(outcome.bytesBefore == before)
        let others = before - 2_883_584 * 4
        #expect(outcome.bytesAfter == others + linearBytes)
        #expect(g.tensor(named: "embed_tokens")?.dtype == .f32)
        #expect(g.tensor(named: "norm")?.dtype == .f32)
        #expect(g.tensor(named: "q_proj[0]")?.dtype == dtype)
        // Every op's bytes follow its operands' new sizes.
        #expect(g.ops.reduce(0) { $0 + $1.bytesTouched } == touched - (before - outcome.bytesAfter))
    }

    @Test("a tied embedding table (read by embed and by the head) keeps its dtype, and says so")
    func tied() throws {
        let source = """
        input t: i32[1]
        weight e: f32[64, 32]
        weight w: f32[32, 32]
        x = embed(e, t)
        output y = linear(linear(x, w), e)
        """
        var g = try GraphCompiler.compile(SourceFile(path: "tied.graph", text: source)).graph
        let outcome = try WeightQuantization.apply(to: &g, dtype: .q4_0)
        #expect(outcome.converted == ["w"])
        #expect(outcome.kept == ["e (also read by an op other than a linear layer)"])
        #expect(outcome.bytesAfter == 64 * 32 * 4 + 32 * 18)
        // Asked for (`--weight-dtype-tied`), the table is stored in the format too.
        var tied = try GraphCompiler.compile(SourceFile(path: "tied.graph", text: source)).graph
        let both = try WeightQuantization.apply(to: &tied, dtype: .q4_0, tied: true)
        #expect(both.converted == ["e", "w"] && both.kept.isEmpty)
        #expect(both.bytesAfter == 64 * 32 / 32 * 18 + 32 * 18)
        #expect(tied.tensor(named: "e")?.dtype == .q4_0)
    }

    @Test("rows that are not whole blocks are refused at the weight's declaration")
    func partialRows() throws {
        var g = try GraphCompiler.compile(SourceFile(path: "odd.graph", text: "input x: f32[1, 48]\nweight w: f32[8, 48]\noutput y = linear(x, w)\n")).graph
        #expect(throws: WeightQuantization.Refusal.self) { try WeightQuantization.apply(to: &g, dtype: .q8_0) }
        do { _ = try WeightQuantization.apply(to: &g, dtype: .q8_0) } catch {
            #expect(error.location == SourceLocation(line: 2, column: 8))
            #expect(error.message == "'w' has rows of 48 values; q8_0 stores whole blocks of 32")
        }
        #expect(try WeightQuantization.apply(to: &g, dtype: .f16).converted == ["w"])
        #expect(throws: WeightQuantization.Refusal.self) { try WeightQuantization.apply(to: &g, dtype: .i4) }
    }
}
