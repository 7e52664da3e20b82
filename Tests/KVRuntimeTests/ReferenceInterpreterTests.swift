import Foundation
import KVArtifact
import KVRuntime
import Testing

/// A one-op program over named tensors (shapes given), for hand-checked op semantics.
private func oneOp(_ kind: String, inputs: [(String, String, [Int])], output: [Int], updates: [(String, [Int])] = [],
                   attributes: [String: ModelProgram.Attribute] = [:]) -> ModelProgram {
    var tensors = inputs.map { ModelProgram.Tensor(name: $0.0, kind: $0.1, dtype: "f32", shape: $0.2) }
    tensors += updates.map { ModelProgram.Tensor(name: $0.0, kind: "cache", dtype: "f32", shape: $0.1) }
    tensors.append(ModelProgram.Tensor(name: "out", kind: "output", dtype: "f32", shape: output))
    let n = inputs.count
    return ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [
        ModelProgram.Op(name: "out", kind: kind, operands: Array(0..<(n + updates.count)), results: [tensors.count - 1],
                        updates: Array(n..<(n + updates.count)), attributes: attributes),
    ])
}

private func run(_ p: ModelProgram, _ inputs: [[Float]], weights: [String: [Float]] = [:]) throws -> [Float] {
    var i = try ReferenceInterpreter(program: p, weights: weights)
    for (k, v) in inputs.enumerated() { try i.setInput(k, v) }
    try i.step()
    return i.values[p.tensors.count - 1]
}

private func close(_ a: [Float], _ b: [Float], _ tolerance: Float = 1e-6) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
}

@Suite("Reference interpreter: op semantics by hand")
struct ReferenceInterpreterTests {
    @Test("rmsnorm and layernorm by hand")
    func norms() throws {
        let p = oneOp("rmsnorm", inputs: [("x", "input", [2, 2]), ("w", "weight", [2])], output: [2, 2], attributes: ["eps": .float(0)])
        // Row [3, 4]: rms = √12.5; row [1, 1]: rms = 1.
        let y = try run(p, [[3, 4, 1, 1]], weights: ["w": [1, 2]])
        #expect(close(y, [3 / 12.5.squareRoot(), 8 / 12.5.squareRoot(), 1, 2].map(Float.init)))
        let ln = oneOp("layernorm", inputs: [("x", "input", [2]), ("w", "weight", [2]), ("b", "weight", [2])], output: [2], attributes: ["eps": .float(0)])
        #expect(close(try run(ln, [[1, 3]], weights: ["w": [2, 2], "b": [0.5, 0.5]]), [-1.5, 2.5]))
    }

    @Test("matmul: transposed and plain weights agree; bias added; batched")
    func matmul() throws {
        let a: [Float] = [1, 2, 3, 4, 5, 6]  // [2, 3]
        let plain = oneOp("matmul", inputs: [("a", "input", [2, 3]), ("b", "weight", [3, 2])], output: [2, 2])
        let y = try run(plain, [a], weights: ["b": [1, 0, 0, 1, 1, 1]])
        #expect(y == [4, 5, 10, 11])
        let t = oneOp("matmul", inputs: [("a", "input", [2, 3]), ("b", "weight", [2, 3]), ("bias", "weight", [2])], output: [2, 2],
                      attributes: ["transpose_b": .bool(true)])
        #expect(try run(t, [a], weights: ["b": [1, 0, 1, 0, 1, 1], "bias": [10, 20]]) == [14, 25, 20, 31])
        let batched = oneOp("matmul", inputs: [("a", "input", [2, 1, 2]), ("b", "input", [2, 2, 1])], output: [2, 1, 1])
        #expect(try run(batched, [[1, 2, 3, 4], [1, 1, 2, 0]]) == [3, 6])
    }

    @Test("add broadcasts a row over a matrix; silu_mul and gelu by formula")
    func elementwise() throws {
        let add = oneOp("add", inputs: [("a", "input", [2, 3]), ("b", "input", [3])], output: [2, 3])
        #expect(try run(add, [[0, 1, 2, 3, 4, 5], [10, 20, 30]]) == [10, 21, 32, 13, 24, 35])
        let sm = oneOp("silu_mul", inputs: [("g", "input", [2]), ("u", "input", [2])], output: [2])
        #expect(close(try run(sm, [[1, -2], [2, 3]]), [Float(2 / (1 + exp(-1.0))), Float(3 * -2 / (1 + exp(2.0)))]))
        let gelu = oneOp("gelu", inputs: [("x", "input", [1])], output: [1])
        #expect(close(try run(gelu, [[1]]), [0.8413447]))
    }

    @Test("rope: Hugging Face rotate-half at position 1, per head; position 0 is the identity")
    func rope() throws {
        let p = oneOp("rope", inputs: [("x", "input", [1, 8]), ("pos", "input", [1])], output: [1, 8],
                      attributes: ["heads": .int(2), "theta": .float(100)])
        let x: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        #expect(try run(p, [x, [0]]) == x)
        // head_dim 4, pairs (0, 2) and (1, 3) with frequencies 1 and 100^(-1/2) = 0.1.
        let y = try run(p, [x, [1]])
        func rot(_ a: Double, _ b: Double, _ f: Double) -> (Float, Float) { (Float(a * cos(f) - b * sin(f)), Float(b * cos(f) + a * sin(f))) }
        let (a0, a2) = rot(1, 3, 1), (a1, a3) = rot(2, 4, 0.1)
        let (b0, b2) = rot(5, 7, 1), (b1, b3) = rot(6, 8, 0.1)
        #expect(close(y, [a0, a1, a2, a3, b0, b1, b2, b3]))
    }

    @Test("llama3 rope scaling: high frequencies kept, low divided by the factor, the middle smoothed (HF's formula)")
    func llama3() {
        let op = ModelProgram.Op(name: "r", kind: "rope", operands: [], results: [], updates: [], attributes: [
            "theta": .float(500000), "scaling": .string("llama3"), "factor": .float(8), "low_freq_factor": .float(1),
            "high_freq_factor": .float(4), "original_max_positions": .int(8192)])
        let scaled = ReferenceInterpreter.ropeFrequencies(rotary: 128, op: op)
        let plain = (0..<64).map { 1 / pow(500000, Double(2 * $0) / 128) }
        #expect(scaled[0] == plain[0])                           // wavelength 2π < 2048: kept
        #expect(abs(scaled[63] - plain[63] / 8) < 1e-18)        // wavelength ≫ 8192: divided by 8
        let i = (0..<64).first { 2 * Double.pi / plain[$0] >= 2048 && 2 * Double.pi / plain[$0] <= 8192 }!
        let smooth = (8192 / (2 * Double.pi / plain[i]) - 1) / 3
        #expect(abs(scaled[i] - ((1 - smooth) * plain[i] / 8 + smooth * plain[i])) < 1e-15)
    }

    @Test("decode attention: the first token returns its value; the second weights both by softmax; GQA shares a KV head; a full cache is refused")
    func decodeAttention() throws {
        // 2 query heads over 1 KV head of size 2; cache of 2 tokens.
        let p = oneOp("attention", inputs: [("q", "input", [1, 4]), ("k", "input", [1, 2]), ("v", "input", [1, 2])], output: [1, 4],
                      updates: [("kc", [1, 2, 1, 2]), ("vc", [1, 2, 1, 2])], attributes: ["heads": .int(2), "kv_heads": .int(1), "scale": .float(1)])
        var i = try ReferenceInterpreter(program: p, weights: [:])
        try i.setInput(0, [1, 0, 0, 1]); try i.setInput(1, [1, 0]); try i.setInput(2, [5, 6])
        try i.step()
        #expect(i.values[5] == [5, 6, 5, 6])
        try i.setInput(1, [0, 1]); try i.setInput(2, [1, 2])
        try i.step()
        // Head 0 (q = [1, 0]) scores [1, 0]; head 1 (q = [0, 1]) scores [0, 1].
        let w = Float(exp(1.0) / (exp(1.0) + 1))
        #expect(close(i.values[5], [5 * w + 1 * (1 - w), 6 * w + 2 * (1 - w), 5 * (1 - w) + 1 * w, 6 * (1 - w) + 2 * w]))
        #expect(i.lengths[3] == [2])
        #expect(throws: RuntimeError("'out': the KV cache holds 2 tokens and is full (sequence 0)")) { try i.step() }
    }

    @Test("split along the last axis and concat back along it and along the first")
    func splitConcat() throws {
        let tensors = [
            ModelProgram.Tensor(name: "x", kind: "input", dtype: "f32", shape: [2, 3]),
            ModelProgram.Tensor(name: "a", kind: "activation", dtype: "f32", shape: [2, 1]),
            ModelProgram.Tensor(name: "b", kind: "activation", dtype: "f32", shape: [2, 2]),
            ModelProgram.Tensor(name: "c", kind: "activation", dtype: "f32", shape: [2, 3]),
            ModelProgram.Tensor(name: "d", kind: "output", dtype: "f32", shape: [4, 1]),
        ]
        let p = ModelProgram(model: "t", dimensions: [:], tensors: tensors, ops: [
            ModelProgram.Op(name: "a", kind: "split", operands: [0], results: [1, 2], updates: [], attributes: ["sizes": .ints([1, 2])]),
            ModelProgram.Op(name: "c", kind: "concat", operands: [2, 1], results: [3], updates: [], attributes: ["axis": .int(-1)]),
            ModelProgram.Op(name: "d", kind: "concat", operands: [1, 1], results: [4], updates: [], attributes: ["axis": .int(0)]),
        ])
        var i = try ReferenceInterpreter(program: p, weights: [:])
        try i.setInput(0, [1, 2, 3, 4, 5, 6])
        try i.step()
        #expect(i.values[1] == [1, 4] && i.values[2] == [2, 3, 5, 6])
        #expect(i.values[3] == [2, 3, 1, 5, 6, 4] && i.values[4] == [1, 4, 1, 4])
    }

    @Test("a program with an op the runtime cannot run, or missing weights, is refused by name")
    func refusals() throws {
        let conv = oneOp("conv2d", inputs: [("x", "input", [1, 1, 2, 2]), ("w", "weight", [1, 1, 1, 1])], output: [1, 1, 2, 2])
        #expect(throws: RuntimeError.self) { try ReferenceInterpreter(program: conv, weights: ["w": [1]]) }
        let norm = oneOp("rmsnorm", inputs: [("x", "input", [2]), ("w", "weight", [2])], output: [2])
        #expect(throws: RuntimeError("no weights for 'w'")) { try ReferenceInterpreter(program: norm, weights: [:]) }
        #expect(throws: RuntimeError("weights for 'w' have 3 elements; its shape [2] has 2")) { try ReferenceInterpreter(program: norm, weights: ["w": [1, 2, 3]]) }
    }

    @Test("program.json round-trips, integers and floats keep their types")
    func programCoding() throws {
        let p = oneOp("rope", inputs: [("x", "input", [1, 8]), ("pos", "input", [1])], output: [1, 8],
                      attributes: ["heads": .int(2), "theta": .float(10000), "scaling": .string("llama3"), "on": .bool(true), "axes": .ints([1, 2])])
        let back = try JSONDecoder().decode(ModelProgram.self, from: try p.encoded())
        #expect(back == p)
        #expect(String(decoding: try p.encoded(), as: UTF8.self).contains("\"float\" : 10000"))
    }
}
