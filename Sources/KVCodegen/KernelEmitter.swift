import KVArtifact
import KVQuant

// The kernels of every op but decode attention (AttentionEmitter.swift): one Swift function per
// distinct (op, shapes, attributes, operand dtypes), with every size and constant a literal.
//
// Activations are f32; weights are read in their storage format (f32, f16, bf16; linear weights
// also q8_0 and q4_0), so a kernel's source depends on its weights' dtypes. Linear layers (a × wᵀ)
// are one dot product per output over the weight's row in its format, split over threads by
// output rows when large; [K, N] weights (GPT-2's Conv1D) are accumulated row by row (axpy),
// split by output columns. Softmax, silu, gelu and layernorm call the vectorised helpers of
// ElementwiseHelpers.swift (f32 sums, polynomial exp and erf); rope computes each row's cos/sin
// once (in Double, then rounded) for all heads. The tolerances in Docs/runtime.md hold with room.

extension SwiftEmitter {
    /// (parameter list, body) of an op's kernel; pointers come in operand, result order (then the
    /// cache-manager state for decode attention).
    func kernel(_ op: ModelProgram.Op, cache: ExecutionSchedule.KVCache?, tile: TileContext = TileContext()) -> (String, String) {
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
            case "q8_0": return "blockValue(UnsafeRawPointer(\(p)), \(i), nibbles: false)"
            case "q4_0": return "blockValue(UnsafeRawPointer(\(p)), \(i), nibbles: true)"
            default: return "\(p)[\(i)]"
            }
        }
        var body = ""
        switch op.kind {
        case "embed":  // the plan gathered the rows already: the lookup is their conversion
            body = t[op.operands[0]].dtype == "f32" ? "    y.update(from: x, count: \(n))\n" : "    for i in 0..<\(n) { y[i] = \(load(0, "i")) }\n"
        case "matmul":
            body = matmulBody(op, load: load, accumulate: tile.accumulate, bias: tile.bias)
        case "add", "mul":
            let b = t[op.operands[1]].elementCount
            let index = b == n ? "i" : tile.elementOffset == 0 ? "i % \(b)" : "(i &+ \(tile.elementOffset)) % \(b)"
            body = "    for i in 0..<\(n) { y[i] = x[i] \(op.kind == "add" ? "+" : "*") \(load(1, index)) }\n"
        case "silu_mul":
            body = "    siluMul(x, z, y, \(n))\n"
        case "silu":
            body = "    siluMul(x, nil, y, \(n))\n"
        case "relu":
            body = "    for i in 0..<\(n) { y[i] = max(0, x[i]) }\n"
        case "gelu":
            body = "    gelu(x, y, \(n), tanhForm: \(op.string("approximate") == "tanh"))\n"
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
            body = "    for r in 0..<\(n / width) {\n        let row = x + r &* \(width), o = y + r &* \(width)\n"
                + "        let (mean, s) = meanAndScale(row, \(width), eps: \(Float(eps)))\n"
                + "        for i in 0..<\(width) { o[i] = (row[i] - mean) * s * \(load(1, "i"))\(shift) }\n    }\n"
        case "softmax":
            let width = t[op.operands[0]].shape.last!
            body = "    for r in 0..<\(n / width) { softmaxRow(x + r &* \(width), y + r &* \(width), \(width)) }\n"
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
            body = ropeBody(op, firstRow: tile.elementOffset / t[op.operands[0]].shape.last!)
        default:
            return attentionKernel(op, cache: cache!)
        }
        return (signature, body)
    }

    /// Bytes of q8_0 / q4_0 weights up to which rows are multiplied in pairs (`dotQ8Pair`,
    /// `dotQ4Pair`) by default: in L2 pairs ran 20–24% faster, streamed from DRAM 2.6× slower
    /// (measured, Docs/benchmarks.md; the cause was not found), so larger weights keep one row per call.
    public static let defaultPairedRowsLimit = 1 << 20

    /// A linear layer (a × wᵀ, w [N, K] in its storage format) or a product with a [K, N] f32
    /// weight, plus the bias when there is one.
    private func matmulBody(_ op: ModelProgram.Op, load: (Int, String) -> String, accumulate: Bool, bias addBias: Bool) -> String {
        let t = program.tensors
        let w = t[op.operands[1]]
        let bias = op.operands.count > 2 && addBias ? " + \(load(2, "j"))" : ""
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
            case .q8_0: product = "dotQ8(q, UnsafeRawPointer(z) + j &* \(rowBytes), \(k))"
            case .q4_0: product = "dotQ4(q, UnsafeRawPointer(z) + j &* \(rowBytes), \(k))"
            }
            let sum = accumulate ? "y[r &* \(rows) &+ j] + \(product)" : product
            if let layout = WeightLayout.interleaving(format), schedule.weights.contains(where: { $0.tensor == w.name && $0.layout == layout.rawValue }) {
                return groupBody(format == .q4_0 ? "dotQ4Group16" : "dotQ8Group16", rows: rows, k: k, m: m, rowBytes: rowBytes,
                                 accumulate: accumulate, bias: bias.isEmpty ? nil : load(2, "j &+ t"))
            }
            if (format == .q8_0 || format == .q4_0) && rows * rowBytes > pairedRowsLimit {
                // The activation row is quantised once per row and thread (QuantisedDotHelpers.swift).
                return "    parallelRows(\(rows), work: \(m * rows * k)) { lo, hi in\n        withQuantisedRow(\(k)) { q in\n"
                    + "            for r in 0..<\(m) {\n                quantiseRow(x + r &* \(k), \(k), q)\n"
                    + "                for j in lo..<hi { y[r &* \(rows) &+ j] = \(sum)\(bias) }\n            }\n        }\n    }\n"
            }
            if format == .q8_0 || format == .q4_0 {
                // Weights that fit in L2 go in pairs of rows, each activation block loaded once for both.
                // Threads split whole pairs, so every row is summed alike however many threads run.
                let pair = format == .q8_0 ? "dotQ8Pair" : "dotQ4Pair"
                let (first, second) = accumulate ? ("y[r &* \(rows) &+ j] + s0", "y[r &* \(rows) &+ j &+ 1] + s1") : ("s0", "s1")
                let secondBias = bias.isEmpty ? "" : " + \(load(2, "j &+ 1"))"
                // q4_0 goes eight rows at a time first (dotQ4Rows8 finishes the eight sums together).
                var eights = ""
                if format == .q4_0 {
                    let (eighth, eighthBias) = (accumulate ? "y[r &* \(rows) &+ j &+ t] + eight[t]" : "eight[t]", bias.isEmpty ? "" : " + \(load(2, "j &+ t"))")
                    eights = "                while j &+ 8 <= hi {\n"
                        + "                    dotQ4Rows8(q, UnsafeRawPointer(z) + j &* \(rowBytes), rowBytes: \(rowBytes), \(k), eight.baseAddress!)\n"
                        + "                    for t in 0..<8 { y[r &* \(rows) &+ j &+ t] = \(eighth)\(eighthBias) }\n"
                        + "                    j &+= 8\n                }\n"
                }
                return "    parallelRows(\((rows + 1) / 2), work: \(m * rows * k)) { pairLo, pairHi in\n        withQuantisedRow(\(k)) { q in\n"
                    + (eights.isEmpty ? "" : "        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8) { eight in\n")
                    + "            let lo = pairLo &* 2, hi = min(pairHi &* 2, \(rows))\n"
                    + "            for r in 0..<\(m) {\n                quantiseRow(x + r &* \(k), \(k), q)\n"
                    + "                var j = lo\n" + eights + "                while j &+ 2 <= hi {\n"
                    + "                    let (s0, s1) = \(pair)(q, UnsafeRawPointer(z) + j &* \(rowBytes), rowBytes: \(rowBytes), \(k))\n"
                    + "                    y[r &* \(rows) &+ j] = \(first)\(bias)\n                    y[r &* \(rows) &+ j &+ 1] = \(second)\(secondBias)\n"
                    + "                    j &+= 2\n                }\n"
                    + "                if j < hi { y[r &* \(rows) &+ j] = \(sum)\(bias) }\n            }\n"
                    + (eights.isEmpty ? "" : "        }\n") + "        }\n    }\n"
            }
            return "    parallelRows(\(rows), work: \(m * rows * k)) { lo, hi in\n        for r in 0..<\(m) {\n"
                + "            for j in lo..<hi { y[r &* \(rows) &+ j] = \(sum)\(bias) }\n        }\n    }\n"
        }
        let (k, cols) = (w.shape[0], w.shape[1])
        let m = t[op.operands[0]].elementCount / k
        let initial = accumulate ? "o[j]" + (bias.isEmpty ? "" : " + \(load(2, "j"))") : op.operands.count > 2 && addBias ? load(2, "j") : "0"
        return "    parallelRows(\(cols), work: \(m * cols * k)) { lo, hi in\n        for r in 0..<\(m) {\n"
            + "            let o = y + r &* \(cols)\n            for j in lo..<hi { o[j] = \(initial) }\n"
            + "            for i in 0..<\(k) { axpy(x[r &* \(k) &+ i], z + (i &* \(cols) &+ lo), o + lo, hi &- lo) }\n        }\n    }\n"
    }

    /// A linear layer over q4_0 / q8_0 weights stored as q4_0x16 / q8_0x16 (GroupRowKernels.swift):
    /// threads split whole groups of 16 rows, each group's 16 sums come from one `function` call.
    private func groupBody(_ function: String, rows: Int, k: Int, m: Int, rowBytes: Int, accumulate: Bool, bias: String?) -> String {
        let groupBytes = WeightLayout.groupRows * rowBytes
        let head = "    parallelRows(\(rows / WeightLayout.groupRows), work: \(m * rows * k)) { lo, hi in\n        withQuantisedRow(\(k)) { q in\n"
        let loop = "            for r in 0..<\(m) {\n                quantiseRow(x + r &* \(k), \(k), q)\n                for g in lo..<hi {\n"
        let product = "\(function)(q, UnsafeRawPointer(z) + g &* \(groupBytes), \(k), "
        guard accumulate || bias != nil else {
            return head + loop + "                    \(product)y + (r &* \(rows) &+ g &* 16))\n                }\n            }\n        }\n    }\n"
        }
        let value = (accumulate ? "y[r &* \(rows) &+ j &+ t] + sixteen[t]" : "sixteen[t]") + (bias.map { " + \($0)" } ?? "")
        return head + "        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { sixteen in\n" + loop
            + "                    \(product)sixteen.baseAddress!)\n                    let j = g &* 16\n"
            + "                    for t in 0..<16 { y[r &* \(rows) &+ j &+ t] = \(value) }\n                }\n            }\n        }\n        }\n    }\n"
    }

    /// How a tile's kernel differs from the whole op's beyond its shapes: the first element of the
    /// tile (broadcast operands and rope positions are indexed from it), whether the kernel adds
    /// to the result (a reduction tile after the first) and whether it adds the bias.
    struct TileContext {
        var elementOffset = 0
        var accumulate = false
        var bias = true
    }

    /// A possibly negative axis as an index.
    static func axis(_ a: Int, rank: Int) -> Int { a < 0 ? a + rank : a }

    /// Rotary embedding of each head's first `rotary_dim` channels (halves rotated, as Hugging
    /// Face's rotate_half), frequencies with llama3 scaling baked in.
    private func ropeBody(_ op: ModelProgram.Op, firstRow: Int) -> String {
        let t = program.tensors
        let n = t[op.results[0]].elementCount
        let width = t[op.operands[0]].shape.last!
        let heads = op.int("heads") ?? 1
        let d = width / heads
        let rotary = op.int("rotary_dim") ?? d
        let inv = RopeFrequencies.inverse(rotary: rotary, op: op).map { "\($0)" }.joined(separator: ", ")
        let half = rotary / 2
        return "    let inv: [Double] = [\(inv)]\n" + (rotary < d ? "    y.update(from: x, count: \(n))\n" : "")
            + "    withUnsafeTemporaryAllocation(of: Float.self, capacity: \(rotary)) { cs in\n"
            + "        for r in 0..<\(n / width) {\n            let p = Double(z[\(firstRow == 0 ? "r" : "(r &+ \(firstRow))") % \(t[op.operands[1]].elementCount)])\n"
            + "            for i in 0..<\(half) { let angle = p * inv[i]; cs[i] = Float(cos(angle)); cs[\(half) &+ i] = Float(sin(angle)) }\n"
            + "            for h in 0..<\(heads) {\n                let base = r &* \(width) &+ h &* \(d)\n"
            + "                for i in 0..<\(half) {\n                    let x1 = x[base &+ i], x2 = x[base &+ i &+ \(half)]\n"
            + "                    y[base &+ i] = x1 * cs[i] - x2 * cs[\(half) &+ i]\n                    y[base &+ i &+ \(half)] = x2 * cs[i] + x1 * cs[\(half) &+ i]\n"
            + "                }\n            }\n        }\n    }\n"
    }
}
