import Testing
@testable import KVGraph

@Suite("Shape, dtype and FLOP inference per op")
struct ShapeInferenceTests {
    func op(_ body: String, _ result: String = "y") -> (Tensor, Op)? {
        guard let g = lower(body) else { return nil }
        let t = g.graph.tensor(named: result)!
        let o = g.graph.ops.first { $0.results.contains(t.id) }!
        return (t, o)
    }

    @Test("matmul and linear: shapes, transposition, bias, exact FLOPs")
    func matmul() {
        let (t, o) = op("input x: f16[3, 5, 8]\nweight w: f16[6, 8]\nweight b: f16[6]\noutput y = linear(x, w, bias=b)")!
        #expect(t.shape.sizes == [3, 5, 6] && t.dtype == .f16)
        #expect(o.flops == 2 * 15 * 6 * 8 + 15 * 6)
        #expect(o.attribute("transpose_b") == .bool(true))
        #expect(o.bytesTouched == (3 * 5 * 8 + 6 * 8 + 6 + 3 * 5 * 6) * 2)
        let (q, _) = op("input x: f32[2, 8]\nweight w: i4[8, 16]\noutput y = matmul(x, w)")!
        #expect(q.shape.sizes == [2, 16] && q.dtype == .f32)
        #expect(errors("input x: f32[2, 8]\nweight w: f32[8, 16]\nweight b: f32[8]\noutput y = matmul(x, w, bias=b)") ==
                ["4:30: bias 'b' must have shape [16], has [8]"])
    }

    @Test("sub-byte dtypes are packed: i4[3, 5] is 8 bytes, i2[7] is 2")
    func packedBytes() {
        let g = lower("weight a: i4[3, 5]\nweight b: i2[7]\ninput x: f32[1]\noutput y = relu(x)")!
        #expect(g.graph.tensor(named: "a")!.byteSize == 8)
        #expect(g.graph.tensor(named: "b")!.byteSize == 2)
    }

    @Test("decode attention: GQA, appends to the cache, window limits attended tokens")
    func decodeAttention() {
        let text = """
        input q: f32[1, 64]
        input k: f32[1, 16]
        input v: f32[1, 16]
        cache kc: f32[1, 100, 2, 8]
        cache vc: i8[1, 100, 2, 8]
        output y = attention(q, k, v, kc, vc, heads=8, kv_heads=2, window=40)
        """
        let (t, o) = op(text)!
        #expect(t.shape.sizes == [1, 64])
        #expect(o.flops == 1 * 8 * 40 * (2 * 8 + 2 * 8 + 5))
        #expect(o.updates.count == 2)
        // operands q, k, v, kc, vc + result + appended k (16 f32) and v (16 i8)
        #expect(o.bytesTouched == (64 + 16 + 16) * 4 + 1600 * 4 + 1600 + 64 * 4 + 16 * 4 + 16)
        #expect(errors(text.replacingOccurrences(of: "kv_heads=2", with: "kv_heads=3")) == ["6:12: heads (8) must be a multiple of kv_heads (3)"])
        #expect(errors(text.replacingOccurrences(of: "cache kc: f32[1, 100, 2, 8]", with: "cache kc: f32[1, 100, 2, 4]")) ==
                ["6:31: cache 'kc' must have shape [batch, max_len, kv_heads, head_dim] = [1, 100, 2, 8], has [1, 100, 2, 4]"])
    }

    @Test("sequence attention counts exactly the causal (query, key) pairs")
    func causalAttention() {
        let text = "input q: f32[1, 10, 8]\noutput y = attention(q, q, q, heads=2, causal=CAUSAL)"
        let (_, causal) = op(text.replacingOccurrences(of: "CAUSAL", with: "true"))!
        let (_, full) = op(text.replacingOccurrences(of: "CAUSAL", with: "false"))!
        #expect(causal.flops == 2 * 55 * (2 * 4 + 2 * 4 + 5))
        #expect(full.flops == 2 * 100 * (2 * 4 + 2 * 4 + 5))
        let (_, windowed) = op("input q: f32[1, 10, 8]\noutput y = attention(q, q, q, heads=2, window=3)")!
        #expect(windowed.flops == 2 * (1 + 2 + 3 * 8) * 21)
    }

    @Test("conv2d and pooling follow the standard output-size formula")
    func convolution() {
        let (t, o) = op("input x: i8[1, 32, 112, 112]\nweight w: i8[32, 1, 3, 3]\noutput y = conv2d(x, w, stride=2, padding=1, groups=32)")!
        #expect(t.shape.sizes == [1, 32, 56, 56])
        #expect(o.flops == 2 * 32 * 56 * 56 * 9)
        let (p, _) = op("input x: i8[1, 64, 112, 112]\noutput y = maxpool(x, kernel=3, stride=2, padding=1)")!
        #expect(p.shape.sizes == [1, 64, 56, 56])
        #expect(errors("input x: i8[1, 6, 8, 8]\nweight w: i8[4, 3, 3, 3]\noutput y = conv2d(x, w, groups=4)") ==
                ["3:12: groups=4 must divide the input channels 6 and output channels 4"])
    }

    @Test("rope validates heads and llama3 scaling parameters")
    func rope() {
        #expect(op("input x: f32[2, 64]\ninput p: i32[2]\noutput y = rope(x, p, heads=4, theta=500000.0, scaling=\"llama3\", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_positions=8192)") != nil)
        #expect(errors("input x: f32[2, 64]\ninput p: i32[2]\noutput y = rope(x, p, heads=4, scaling=\"llama3\")") ==
                ["3:12: llama3 rope scaling needs factor= ≥ 1"])
        #expect(errors("input x: f32[2, 60]\ninput p: i32[2]\noutput y = rope(x, p, heads=4)") ==
                ["3:17: last axis 60 of 'x' is not 4 heads of an even head size"])
    }

    @Test("reshape, split, concat and opaque")
    func dataMovement() {
        let g = lower("""
        input x: f32[2, 12]
        a, b = split(x, sizes=[4, 8])
        r = reshape(b, shape=[2, -1, 4])
        c = concat(a, reshape(r, shape=[2, 8]), axis=1)
        o1, o2 = opaque(c, out=[f32[2, 3], i8[5]], flops=99)
        output y = add(o1, o1)
        output z = relu(o2)
        """)!
        #expect(g.graph.tensor(named: "r")!.shape.sizes == [2, 2, 4])
        #expect(g.graph.tensor(named: "c")!.shape.sizes == [2, 12])
        #expect(g.graph.ops.first { $0.kind == .opaque }!.flops == 99)
        #expect(errors("input x: f32[2, 12]\noutput y = reshape(x, shape=[5, 5])") ==
                ["2:23: 'reshape' of [2, 12] (24 elements) to [5, 5] (25 elements)"])
    }

    @Test("unknown and repeated attributes are errors at the attribute")
    func attributes() {
        #expect(errors("input x: f32[2]\noutput y = relu(x, alpha=1)") == ["2:20: 'relu' has no attribute 'alpha'"])
        #expect(errors("input x: f32[2]\ninput p: i32[2]\noutput y = softmax(x, axis=3)") == ["3:12: axis 3 is out of range for rank 1"])
    }
}
