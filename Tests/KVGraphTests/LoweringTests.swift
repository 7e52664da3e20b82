import Testing
@testable import KVGraph

@Suite("Lowering: constants, loops, names, order, validation")
struct LoweringTests {
    @Test("integer constants: + − × ÷, parentheses, min/max; exact division is required")
    func constants() {
        let g = lower("let a = (2 + 3) * 4 - 6 / 2\nlet b = min(a, 100) + max(1, 2)\ninput x: f32[a, b]\noutput y = relu(x)")!
        #expect(g.graph.tensor(named: "x")!.shape.sizes == [17, 19])
        #expect(errors("let a = 7 / 2") == ["1:11: integer division 7 / 2 is not exact"])
        #expect(errors("let a = 1 / 0") == ["1:11: division by zero"])
        #expect(errors("let a = 9223372036854775807 + 1") == ["1:29: integer overflow in 9223372036854775807 + 1"])
        #expect(errors("let a = 1\nlet a = 2") == ["2:1: 'a' is already defined"])
    }

    @Test("symbolic dimensions keep their names in shapes and can be rebound")
    func dimensions() {
        let text = "dim batch = 1\ndim ctx = 16\ninput x: f32[batch, ctx]\noutput y = relu(x)"
        let g = lower(text)!
        #expect(g.graph.tensor(named: "y")!.shape == [Dim(1, symbol: "batch"), Dim(16, symbol: "ctx")])
        let h = lower(text, dimensions: ["ctx": 64])!
        #expect(h.graph.tensor(named: "y")!.byteSize == 64 * 4)
        #expect(h.graph.dimensions.map(\.value) == [1, 64])
    }

    @Test("loops create per-layer tensors; plain names in a body are local to the iteration")
    func loops() {
        let g = lower(prelude + """
        x2[0] = relu(x)
        for l in 0..<3 {
          weight v[l]: f32[8, 8]
          h = matmul(x2[l], v[l])
          x2[l + 1] = relu(h)
        }
        output y = matmul(x2[3], w)
        """)!
        #expect(g.graph.tensor(named: "h[2]") != nil)
        #expect(g.graph.tensor(named: "v[1]")!.kind == .weight)
        #expect(g.graph.ops.count == 1 + 3 * 2 + 1)
        #expect(g.graph.tensor(named: "y")!.kind == .output)
    }

    @Test("definitions may come in any order; the IR order is topological and otherwise follows the source")
    func forwardReferences() {
        let g = lower(prelude + "output y = matmul(z, w)\nz = relu(x)\nu = relu(x)\noutput v = relu(u)")!
        let names = g.graph.order.map { g.graph.tensors[g.graph.ops[$0].results[0]].name }
        #expect(names == ["z", "y", "u", "v"])
    }

    @Test("cycles are reported with their path")
    func cycles() {
        #expect(errors(prelude + "a = relu(b)\nb = relu(c)\nc = relu(a)\noutput y = relu(x)") == [
            "4:1: dependency cycle: a -> b -> c -> a",
        ])
    }

    @Test("undefined names, redefinitions and misuse of constants are positioned")
    func names() {
        #expect(errors(prelude + "output y = matmul(q, w)") == ["4:19: undefined tensor 'q'"])
        #expect(errors(prelude + "for l in 0..<2 {\n weight v[l]: f32[1]\n}\noutput y = relu(v[2])") == [
            "7:17: undefined tensor 'v[2]' (2 tensors named 'v[...]' exist, e.g. 'v[0]')",
        ])
        #expect(errors(prelude + "y = relu(x)\ny = relu(x)\noutput z = relu(y)") == ["5:1: redefinition of 'y'"])
        #expect(errors(prelude + "let k = 3\noutput y = relu(k)") == ["5:17: 'k' is a constant, but an operand must be a tensor"])
        #expect(errors(prelude + "output y = frobnicate(x)").first?.hasPrefix("4:12: unknown op 'frobnicate'; ops are: add, attention,") == true)
    }

    @Test("several independent errors are reported in one run; dependents of a bad definition stay quiet")
    func independentErrors() {
        let e = errors(prelude + "a = matmul(w, x)\nb = relu(a)\nc = add(x, w)\noutput y = relu(b)")
        #expect(e == [
            "4:15: 'matmul': inner dimensions differ: 'w' [8, 4] by 'x' [2, 8]",
            "6:12: shapes [2, 8] of 'x' and [8, 4] of 'w' do not broadcast",
        ])
    }

    @Test("output marks and declared output types are checked")
    func outputs() {
        let g = lower(prelude + "h = relu(x)\noutput h")!
        #expect(g.graph.tensor(named: "h")!.kind == .output)
        #expect(errors(prelude + "output x") == ["4:8: only computed tensors can be outputs; 'x' is an input"])
        #expect(errors(prelude + "output y: f32[2, 5] = matmul(x, w)") == ["4:11: output 'y' is declared f32[2, 5] but computes f32[2, 4]"])
    }

    @Test("unused tensors and constants are warned about, outputs are not")
    func unused() {
        #expect(warnings(prelude + "let k = 3\nh = relu(x)\noutput y = relu(x)") == [
            "3:8: weight 'w' is never used",
            "4:1: constant 'k' is never used",
            "5:5: result 'h' is never used",
        ])
    }

    @Test("loop bounds that would explode are refused quickly")
    func hugeLoops() {
        #expect(errors("for l in 0..<1000000000 {\n input x[l]: f32[1]\n}").first == "1:14: loop runs 1000000000 times; at most 200000 are allowed")
        #expect(errors("input x: f32[4294967296, 4294967296]") == ["1:10: tensor of shape [4294967296, 4294967296] is too large"])
    }

    @Test("caches must have rank 4 and can only be used by attention")
    func caches() {
        #expect(errors("cache k: f32[1, 16, 2]") == ["1:10: a cache has shape [batch, max_len, kv_heads, head_dim]; 'k' has rank 3"])
        #expect(errors("cache k: f32[1, 16, 2, 4]\noutput y = relu(k)") == ["2:17: cache 'k' can only be an operand of 'attention'"])
    }
}
