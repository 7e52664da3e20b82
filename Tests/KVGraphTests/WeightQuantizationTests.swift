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

    @Test("GPT-2: its 48 Conv1D matrices ([in, out]) are stored [out, in] in q4_0, read with transpose_b; the tied table is kept")
    func gpt2Conv1D() throws {
        var g = try Self.graph("gpt2")
        let before = g.tensors.filter { $0.kind == .weight }.reduce(0) { $0 + $1.byteSize }
        let outcome = try WeightQuantization.apply(to: &g, dtype: .q4_0)
        // Per layer c_attn 768×2304, attn c_proj 768², mlp c_fc 768×3072 and c_proj 3072×768.
        let values = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072)
        #expect(outcome.converted.count == 48 && outcome.transposed == outcome.converted)
        #expect(outcome.kept == ["wte (also read by an op other than a linear layer)"])
        #expect(outcome.bytesAfter == before - values * 4 + values / 32 * 18)
        let qkv = try #require(g.tensor(named: "c_attn_weight[0]"))
        #expect(qkv.shape.sizes == [2304, 768] && qkv.storedTransposed && qkv.dtype == .q4_0)
        let down = try #require(g.tensor(named: "mlp_c_proj_weight[11]"))
        #expect(down.shape.sizes == [768, 3072] && down.storedTransposed)
        #expect(g.tensor(named: "wte")?.storedTransposed == false)
        // Every reader multiplies by the transpose now.
        for op in g.ops where op.kind == .matmul {
            #expect(op.attribute("transpose_b") == .bool(true), "\(g.tensors[op.results[0]].name)")
        }
    }

    @Test("an [in, out] matrix: rows of whole blocks along `in`, transposed only when converted, kept when linear layers read it too")
    func inOutMatrices() throws {
        let source = "input x: f32[1, 64]\nweight w: f32[64, 32]\noutput y = matmul(x, w)\n"
        var g = try GraphCompiler.compile(SourceFile(path: "conv.graph", text: source)).graph
        let outcome = try WeightQuantization.apply(to: &g, dtype: .q8_0)
        #expect(outcome.converted == ["w"] && outcome.transposed == ["w"])
        #expect(g.tensor(named: "w")?.shape.sizes == [32, 64] && g.tensor(named: "w")?.dtype == .q8_0)
        #expect(outcome.bytesAfter == 32 * 2 * 34)
        #expect(g.ops[0].bytesTouched == 64 * 4 + 32 * 2 * 34 + 32 * 4)
        // Already f32: nothing changes, nothing is transposed.
        var same = try GraphCompiler.compile(SourceFile(path: "conv.graph", text: source)).graph
        let none = try WeightQuantization.apply(to: &same, dtype: .f32)
        #expect(none.converted.isEmpty && none.transposed.isEmpty && same.tensor(named: "w")?.shape.sizes == [64, 32])
        // `in` = 48 is not whole blocks: refused, naming the row length the layout would have.
        var odd = try GraphCompiler.compile(SourceFile(path: "odd.graph", text: "input x: f32[1, 48]\nweight w: f32[48, 64]\noutput y = matmul(x, w)\n")).graph
        do {
            _ = try WeightQuantization.apply(to: &odd, dtype: .q4_0)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.message == "'w' has rows of 48 values; q4_0 stores whole blocks of 32")
        }
        // Read as [in, out] by one matmul and as [out, in] by another: kept as it is.
        let mixed = "input x: f32[1, 64]\nweight w: f32[64, 64]\nh = matmul(x, w)\noutput y = linear(h, w)\n"
        var both = try GraphCompiler.compile(SourceFile(path: "mixed.graph", text: mixed)).graph
        let kept = try WeightQuantization.apply(to: &both, dtype: .q8_0)
        #expect(kept.converted.isEmpty && kept.kept == ["w (read both as [out, in] and as [in, out])"])
    }
}
