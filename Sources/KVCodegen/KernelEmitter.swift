import KVArtifact
import KVQuant

// The kernels of every op but decode attention (AttentionEmitter.swift): one Swift function per
// distinct (op, shapes, attributes, operand dtypes), with every size and constant a literal.
//
// Activations are f32; weights are read in their storage format (f32, f16, bf16; linear weights
// also q8_0 and q4_0), so a kernel's source depends on its weights' dtypes. Linear layers (a × wᵀ)
// are one dot product per output over the weight's row in its format, split over threads by
// output rows when large; [K, N] weights (GPT-2's Conv1D) are accumulated row by row (axpy),
// split by output columns. Reductions (norms, softmax) accumulate in Double, as the reference
// interpreter does, so the tolerances in Docs/runtime.md hold with room.

extension SwiftEmitter {
    /// (parameter list, body) of an op's kernel; pointers come in operand, result order (then the
    /// cache-manager state for decode attention).
    func kernel(_ op: ModelProgram.Op, cache: ExecutionSchedule.KVCache?) -> (String, String) {
        let t = program.tensors
        let out = op.results[0]
        let n = t[out].elementCount
        let operandNames = ["x", "z", "b", "c", "d", "e", "g", "h"]
        let operands = op.operands.indices.map { operandNames[min($0, operandNames.count - 1)] + ($0 >= operandNames.count ? "\($0)" : "") }
        let results = op.results.count == 1 ? ["y"] : op.results.indices.map { "y\($0)" }
        let signature = (operands + results).map { "_ \($0): UnsafeMutablePointer<Float>" }.joined(separator: ", ")
        /// Element `i` of operand `k`, converted from its storage format.
        func load(_ k: Int, _ i: String) -> String {
            let p = operands[k]
            switch t[op.operands[k]].dtype {
            case "f16": return "half(UnsafeRawPointer(\(p)), \(i))"
            case "bf16": return "bfloat(UnsafeRawPointer(\(p)), \(i))"
            default: return "\(p)[\(i)]"
            }
        }
        var body = ""
        switch op.kind {
        case "embed":  // the plan gathered the rows already: the lookup is their conversion
            body = t[op.operands[0]].dtype == "f32" ? "    y.update(from: x, count: \(n))\n" : "    for i in 0..<\(n) { y[i] = \(load(0, "i")) }\n"
        case "matmul":
            body = matmulBody(op, load: load)
        case "add", "mul":
            let b = t[op.operands[1]].elementCount
            let index = b == n ? "i" : "i % \(b)"
            body = "    for i in 0..<\(n) { y[i] = x[i] \(op.kind == "add" ? "+" : "*") \(load(1, index)) }\n"
        case "silu_mul":
            body = "    for i in 0..<\(n) { let v = x[i]; y[i] = v / (1 + exp(-v)) * z[i] }\n"
        case "silu":
            body = "    for i in 0..<\(n) { let v = x[i]; y[i] = v / (1 + exp(-v)) }\n"
        case "relu":
            body = "    for i in 0..<\(n) { y[i] = max(0, x[i]) }\n"
        case "gelu":
            body = op.string("approximate") == "tanh"
                ? "    for i in 0..<\(n) { let v = x[i]; y[i] = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) }\n"
                : "    for i in 0..<\(n) { let v = x[i]; y[i] = 0.5 * v * (1 + erf(v * 0.7071067811865476)) }\n"
        case "reshape":
            body = "    if x != y { y.update(from: x, count: \(n)) }\n"
        case "rmsnorm":
            let width = t[op.operands[0]].shape.last!
            let eps = op.double("eps") ?? 1e-6
            body = "    for r in 0..<\(n / width) {\n        let row = x + r &* \(width)\n        let ms = Double(dot(row, row, \(width))) / \(width).0\n"
                + "        let s = Float(1 / (ms + \(eps)).squareRoot())\n        for i in 0..<\(width) { y[r &* \(width) &+ i] = row[i] * s * \(load(1, "i")) }\n    }\n"
        case "layernorm":
            let width = t[op.operands[0]].shape.last!
            let eps = op.double("eps") ?? 1e-5
            let shift = op.operands.count > 2 ? " + \(load(2, "i"))" : ""
            body = "    for r in 0..<\(n / width) {\n        let row = x + r &* \(width)\n"
                + "        var sum = 0.0\n        for i in 0..<\(width) { sum += Double(row[i]) }\n        let mean = sum / \(width).0\n"
                + "        var squares = 0.0\n        for i in 0..<\(width) { let c = Double(row[i]) - mean; squares += c * c }\n"
                + "        let s = 1 / (squares / \(width).0 + \(eps)).squareRoot()\n"
                + "        for i in 0..<\(width) { y[r &* \(width) &+ i] = Float((Double(row[i]) - mean) * s) * \(load(1, "i"))\(shift) }\n    }\n"
        case "softmax":
            let width = t[op.operands[0]].shape.last!
            body = "    for r in 0..<\(n / width) {\n        let row = x + r &* \(width), o = y + r &* \(width)\n"
                + "        var m = -Float.infinity\n        for i in 0..<\(width) { m = max(m, row[i]) }\n"
                + "        var s = 0.0\n        for i in 0..<\(width) { let e = exp(Double(row[i] - m)); s += e; o[i] = Float(e) }\n"
                + "        let inverse = 1 / s\n        for i in 0..<\(width) { o[i] = Float(Double(o[i]) * inverse) }\n    }\n"
        case "split":
            let shape = t[op.operands[0]].shape
            let axis = Self.axis(op.int("axis") ?? -1, rank: shape.count)
            let inner = shape[(axis + 1)...].reduce(1, *), outer = shape[..<axis].reduce(1, *)
            var offset = 0
            for (k, r) in op.results.enumerated() {
                let span = t[r].shape[axis] * inner
                body += "    for o in 0..<\(outer) { (y\(k) + o &* \(span)).update(from: x + (o &* \(shape[axis] * inner) &+ \(offset * inner)), count: \(span)) }\n"
                offset += t[r].shape[axis]
            }
        case "concat":
            let shape = t[out].shape
            let axis = Self.axis(op.int("axis") ?? 0, rank: shape.count)
            let inner = shape[(axis + 1)...].reduce(1, *), outer = shape[..<axis].reduce(1, *)
            var offset = 0
            for (k, o) in op.operands.enumerated() {
                let span = t[o].shape[axis] * inner
                body += "    for o in 0..<\(outer) { (y + (o &* \(shape[axis] * inner) &+ \(offset * inner))).update(from: \(operands[k]) + o &* \(span), count: \(span)) }\n"
                offset += t[o].shape[axis]
            }
        case "rope":
            body = ropeBody(op)
        default:
            return attentionKernel(op, cache: cache!)
        }
        return (signature, body)
    }

    /// A linear layer (a × wᵀ, w [N, K] in its storage format) or a product with a [K, N] f32
    /// weight, plus the bias when there is one.
    private func matmulBody(_ op: ModelProgram.Op, load: (Int, String) -> String) -> String {
        let t = program.tensors
        let w = t[op.operands[1]]
        let bias = op.operands.count > 2 ? " + \(load(2, "j"))" : ""
        if op.bool("transpose_b") == true {
            let (rows, k) = (w.shape[0], w.shape[1])
            let m = t[op.operands[0]].elementCount / k
            let format = WeightFormat(rawValue: w.dtype) ?? .f32
            let rowBytes = format.bytes(count: k)
            let product: String
            switch format {
            case .f32: product = "dot(x + r &* \(k), z + j &* \(k), \(k))"
            case .f16: product = "dotF16(x + r &* \(k), UnsafeRawPointer(z) + j &* \(rowBytes), \(k))"
            case .bf16: product = "dotBF16(x + r &* \(k), UnsafeRawPointer(z) + j &* \(rowBytes), \(k))"
            case .q8_0: product = "dotQ8(x + r &* \(k), UnsafeRawPointer(z) + j &* \(rowBytes), \(k))"
            case .q4_0: product = "dotQ4(x + r &* \(k), UnsafeRawPointer(z) + j &* \(rowBytes), \(k))"
            }
            return "    parallelRows(\(rows), work: \(m * rows * k)) { lo, hi in\n        for r in 0..<\(m) {\n"
                + "            for j in lo..<hi { y[r &* \(rows) &+ j] = \(product)\(bias) }\n        }\n    }\n"
        }
        let (k, cols) = (w.shape[0], w.shape[1])
        let m = t[op.operands[0]].elementCount / k
        let initial = op.operands.count > 2 ? load(2, "j") : "0"
        return "    parallelRows(\(cols), work: \(m * cols * k)) { lo, hi in\n        for r in 0..<\(m) {\n"
            + "            let o = y + r &* \(cols)\n            for j in lo..<hi { o[j] = \(initial) }\n"
            + "            for i in 0..<\(k) { axpy(x[r &* \(k) &+ i], z + (i &* \(cols) &+ lo), o + lo, hi &- lo) }\n        }\n    }\n"
    }

    /// A possibly negative axis as an index.
    static func axis(_ a: Int, rank: Int) -> Int { a < 0 ? a + rank : a }

    /// Rotary embedding of each head's first `rotary_dim` channels (halves rotated, as Hugging
    /// Face's rotate_half), frequencies with llama3 scaling baked in.
    private func ropeBody(_ op: ModelProgram.Op) -> String {
        let t = program.tensors
        let n = t[op.results[0]].elementCount
        let width = t[op.operands[0]].shape.last!
        let heads = op.int("heads") ?? 1
        let d = width / heads
        let rotary = op.int("rotary_dim") ?? d
        let inv = RopeFrequencies.inverse(rotary: rotary, op: op).map { "\($0)" }.joined(separator: ", ")
        return "    let inv: [Double] = [\(inv)]\n    y.update(from: x, count: \(n))\n"
            + "    for r in 0..<\(n / width) {\n        let p = Double(z[r % \(t[op.operands[1]].elementCount)])\n"
            + "        for h in 0..<\(heads) {\n            let base = r &* \(width) &+ h &* \(d)\n"
            + "            for i in 0..<\(rotary / 2) {\n                let angle = p * inv[i]\n                let c = cos(angle), s = sin(angle)\n"
            + "                let x1 = Double(x[base &+ i]), x2 = Double(x[base &+ i &+ \(rotary / 2)])\n"
            + "                y[base &+ i] = Float(x1 * c - x2 * s)\n                y[base &+ i &+ \(rotary / 2)] = Float(x2 * c + x1 * s)\n"
            + "            }\n        }\n    }\n"
    }
}
