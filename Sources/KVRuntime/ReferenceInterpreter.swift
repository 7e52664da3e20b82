import Foundation
import KVArtifact
import KVQuant

// The reference interpreter: a plain f32 implementation of every runnable op of a ModelProgram,
// independent of the plan, its tiers and tiles, and of generated code. It is what generated
// kernels and the planned schedule are checked against, so it is written for obviousness, not
// speed: one loop nest per op, dot products accumulated in Double, no SIMD, no blocking. Decode
// attention keeps a full-precision f32 cache per layer ([batch, ctx, kv_heads, head_dim]) and a
// per-sequence length: each step writes the new token's K/V at the current length and attends
// over everything written so far (the last `window` tokens when the op has one). Semantics of
// every op, with the defaults the graph language documents: Docs/runtime.md.

/// Runs a ModelProgram one decode step at a time in plain f32.
public struct ReferenceInterpreter {
    public let program: ModelProgram
    /// Current values by tensor index (f32 tensors; i32 inputs are stored as exact integers in Float).
    public private(set) var values: [[Float]]
    /// Tokens written so far, per cache tensor index and sequence.
    public private(set) var lengths: [Int: [Int]] = [:]
    /// Packed caches per attention op's key-cache tensor and sequence, when KV layouts are given.
    public private(set) var packed: [Int: [PackedKVCache]] = [:]
    /// 2-D weights a `transpose_b` matmul multiplies, stored transposed ([in, out]) once, so the
    /// matmul walks them contiguously four outputs at a time (same sums, same order; speed only).
    private var transposedWeights: [Int: [Float]] = [:]
    /// Sees every full-precision decode attention of sequence 0: (op index, each query head's
    /// softmax weights over the cached tokens and the new one, oldest first). For profiling.
    public var observeAttention: ((Int, [[Double]]) -> Void)?
    /// The op `run(op:)` is running.
    private var currentOp = 0

    /// An interpreter over `program` with `weights` (by tensor name, f32, row-major). With
    /// `kvLayouts` (one per decode-attention op, in order: the plan's `kv.layers`), decode attention
    /// keeps each layer's cache in that packed layout (PackedKVCache) — what the runtime holds —
    /// instead of the f32 reference cache.
    public init(program: ModelProgram, weights: [String: [Float]], kvLayouts: [KVLayerLayout]? = nil) throws(RuntimeError) {
        try Self.check(program)
        self.program = program
        values = program.tensors.map { _ in [] }
        for (i, t) in program.tensors.enumerated() {
            switch t.kind {
            case "weight":
                guard let w = weights[t.name] else { throw RuntimeError("no weights for '\(t.name)'") }
                guard w.count == t.elementCount else {
                    throw RuntimeError("weights for '\(t.name)' have \(w.count) elements; its shape \(t.shape) has \(t.elementCount)")
                }
                // Computed with exactly the values the program stores (f16, bf16, q8_0, q4_0 round trip).
                if let format = WeightFormat(rawValue: t.dtype), format != .f32 {
                    guard let stored = format.roundTrip(w) else {
                        throw RuntimeError("'\(t.name)' (\(t.elementCount) values) is not whole \(t.dtype) blocks of \(format.blockElements)")
                    }
                    values[i] = stored
                } else {
                    values[i] = w
                }
            case "cache":
                values[i] = Array(repeating: 0, count: t.elementCount)
                lengths[i] = Array(repeating: 0, count: t.shape.first ?? 1)
            default:
                break
            }
        }
        for op in program.ops where op.kind == "matmul" && op.bool("transpose_b") == true && op.operands.count >= 2 {
            let w = op.operands[1], t = program.tensors[w]
            guard t.kind == "weight", t.shape.count == 2, transposedWeights[w] == nil else { continue }
            let (rows, cols) = (t.shape[0], t.shape[1])
            var transposed = [Float](repeating: 0, count: rows * cols)
            for r in 0..<rows { for c in 0..<cols { transposed[c * rows + r] = values[w][r * cols + c] } }
            transposedWeights[w] = transposed
        }
        if let kvLayouts {
            let attention = program.ops.filter { $0.kind == "attention" && $0.operands.count == 5 }
            guard attention.count == kvLayouts.count else {
                throw RuntimeError("the plan has KV layouts for \(kvLayouts.count) layers; the program has \(attention.count) decode-attention ops")
            }
            for (op, layout) in zip(attention, kvLayouts) {
                let cache = program.tensors[op.operands[3]]
                let capacity = layout.sinkTokens + layout.windowTokens + layout.highTokens + layout.lowTokens
                guard cache.shape.count == 4, capacity == cache.shape[1] else {
                    throw RuntimeError("KV layout of layer \(layout.layer) holds \(capacity) tokens; cache '\(cache.name)' is \(cache.shape)")
                }
                packed[op.operands[3]] = (0..<cache.shape[0]).map { _ in PackedKVCache(layout: layout, channels: cache.shape[2] * cache.shape[3], kvHeads: cache.shape[2]) }
            }
        }
    }

    /// The ops this interpreter runs (Docs/runtime.md); others are refused when loading.
    public static let runnable: Set<String> = ["embed", "matmul", "add", "mul", "rmsnorm", "layernorm", "rope", "attention",
                                               "softmax", "silu", "gelu", "relu", "silu_mul", "reshape", "split", "concat"]

    static func check(_ program: ModelProgram) throws(RuntimeError) {
        do { try program.validate() } catch { throw RuntimeError(error.message) }
        for op in program.ops where !runnable.contains(op.kind) {
            throw RuntimeError("op '\(op.name)' (\(op.kind)) cannot be executed by the runtime; runnable ops: \(runnable.sorted().joined(separator: ", "))")
        }
    }

    /// Sets an input tensor (by index) for the next step.
    public mutating func setInput(_ index: Int, _ data: [Float]) throws(RuntimeError) {
        let t = program.tensors[index]
        guard data.count == t.elementCount else { throw RuntimeError("input '\(t.name)' takes \(t.elementCount) values, got \(data.count)") }
        values[index] = data
    }

    /// Sets any input or computed tensor (by index), e.g. to another executor's value of it, so the
    /// next `run(op:)` reads it (differential checking op by op). Weights and caches are refused.
    public mutating func setValue(_ index: Int, _ data: [Float]) throws(RuntimeError) {
        let t = program.tensors[index]
        guard t.kind != "weight" && t.kind != "cache" else { throw RuntimeError("'\(t.name)' is a \(t.kind); only inputs and computed tensors can be set") }
        guard data.count == t.elementCount else { throw RuntimeError("'\(t.name)' takes \(t.elementCount) values, got \(data.count)") }
        values[index] = data
    }

    /// Runs op `index` alone on the current values of its operands, storing its results (and
    /// appending to its caches, for decode attention).
    public mutating func run(op index: Int) throws(RuntimeError) {
        let op = program.ops[index]
        currentOp = index
        let out = try run(op)
        for (r, data) in zip(op.results, out) { values[r] = data }
    }

    /// What a kernel of op `index` writes, after the op ran: its results, then (decode attention)
    /// the new key and value rows — its k and v operands (OpCapture's order).
    public func kernelResults(op index: Int) -> [[Float]] {
        let op = program.ops[index]
        return op.results.map { values[$0] } + (op.updates.isEmpty ? [] : [values[op.operands[1]], values[op.operands[2]]])
    }

    /// Runs every op once; `observe` sees each op's index and its first result after it ran.
    public mutating func step(observe: ((Int, [Float]) -> Void)? = nil) throws(RuntimeError) {
        for (i, op) in program.ops.enumerated() {
            try run(op: i)
            observe?(i, op.results.first.map { values[$0] } ?? [])
        }
    }

    /// Forgets every cache's contents (a new sequence).
    public mutating func reset() {
        for (k, caches) in packed { packed[k] = caches.map { PackedKVCache(layout: $0.layout, channels: $0.channels, kvHeads: $0.kvHeads) } }
        for (i, t) in program.tensors.enumerated() where t.kind == "cache" {
            values[i] = Array(repeating: 0, count: t.elementCount)
            lengths[i] = Array(repeating: 0, count: t.shape.first ?? 1)
        }
    }

    // MARK: ops

    private mutating func run(_ op: ModelProgram.Op) throws(RuntimeError) -> [[Float]] {
        let shapes = op.operands.map { program.tensors[$0].shape }
        let x = op.operands.map { values[$0] }
        let outShape = program.tensors[op.results[0]].shape
        switch op.kind {
        case "embed":
            let (rows, width) = (shapes[0][0], shapes[0][1])
            var out = [Float](repeating: 0, count: x[1].count * width)
            for (i, id) in x[1].enumerated() {
                let row = Int(id)
                guard row >= 0 && row < rows else { throw RuntimeError("'\(op.name)': id \(row) is outside the table's \(rows) rows") }
                for j in 0..<width { out[i * width + j] = x[0][row * width + j] }
            }
            return [out]
        case "matmul":
            var a = x[0]
            if let format = WeightFormat(rawValue: program.tensors[op.operands[1]].dtype), ActivationQuantisation.applies(to: format) {
                // The rows a q8_0 / q4_0 GEMV multiplies: rounded to 8 bits per block (KVQuant).
                let k = shapes[0].last!
                a = stride(from: 0, to: a.count, by: k).flatMap { ActivationQuantisation.roundTrip(a[$0..<$0 + k]) }
            }
            if let transposed = transposedWeights[op.operands[1]] {
                return [Self.matmul(a, shapes[0], transposed, shapes[1].reversed(), transposeB: false, bias: x.count > 2 ? x[2] : nil, outShape: outShape)]
            }
            return [Self.matmul(a, shapes[0], x[1], shapes[1], transposeB: op.bool("transpose_b") ?? false,
                                bias: x.count > 2 ? x[2] : nil, outShape: outShape)]
        case "add", "mul":
            return [Self.broadcast(x[0], shapes[0], x[1], shapes[1], outShape) { op.kind == "add" ? $0 + $1 : $0 * $1 }]
        case "rmsnorm":
            return [Self.rowwise(x[0], width: shapes[0].last!) { row in
                let ms = row.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(row.count)
                let r = 1 / (ms + (op.double("eps") ?? 1e-6)).squareRoot()
                return row.indices.map { Float(Double(row[$0]) * r) * x[1][$0] }
            }]
        case "layernorm":
            return [Self.rowwise(x[0], width: shapes[0].last!) { row in
                let mean = row.reduce(0.0) { $0 + Double($1) } / Double(row.count)
                let variance = row.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(row.count)
                let r = 1 / (variance + (op.double("eps") ?? 1e-5)).squareRoot()
                return row.indices.map { Float((Double(row[$0]) - mean) * r) * x[1][$0] + (x.count > 2 ? x[2][$0] : 0) }
            }]
        case "rope":
            return [Self.rope(x[0], width: shapes[0].last!, positions: x[1], op: op)]
        case "attention":
            return [try attention(op, x, shapes)]
        case "softmax":
            let axis = op.int("axis") ?? -1
            guard axis == -1 || axis == shapes[0].count - 1 else { throw RuntimeError("'\(op.name)': softmax over axis \(axis) (only the last axis runs)") }
            return [Self.rowwise(x[0], width: shapes[0].last!) { Self.softmax($0) }]
        case "silu": return [x[0].map(Self.silu)]
        case "relu": return [x[0].map { max(0, $0) }]
        case "gelu": return [x[0].map { Self.gelu($0, tanh: op.string("approximate") == "tanh") }]
        case "silu_mul": return [zip(x[0], x[1]).map { Self.silu($0) * $1 }]
        case "reshape": return [x[0]]
        case "split":
            let shape = shapes[0]
            let axis = Self.axis(op.int("axis") ?? -1, rank: shape.count)
            let sizes = op.results.map { program.tensors[$0].shape[axis] }
            let inner = shape[(axis + 1)...].reduce(1, *), outer = shape[..<axis].reduce(1, *)
            var offset = 0
            return sizes.map { size in
                defer { offset += size }
                var part: [Float] = []
                part.reserveCapacity(outer * size * inner)
                for o in 0..<outer {
                    let start = (o * shape[axis] + offset) * inner
                    part += x[0][start..<start + size * inner]
                }
                return part
            }
        case "concat":
            let axis = Self.axis(op.int("axis") ?? 0, rank: outShape.count)
            let inner = outShape[(axis + 1)...].reduce(1, *), outer = outShape[..<axis].reduce(1, *)
            var out: [Float] = []
            out.reserveCapacity(outShape.reduce(1, *))
            for o in 0..<outer {
                for (part, shape) in zip(x, shapes) {
                    let span = shape[axis] * inner
                    out += part[o * span..<(o + 1) * span]
                }
            }
            return [out]
        default: throw RuntimeError("op '\(op.name)' (\(op.kind)) cannot be executed")
        }
    }

    static func axis(_ a: Int, rank: Int) -> Int { a < 0 ? a + rank : a }

    static func silu(_ v: Float) -> Float { Float(Double(v) / (1 + exp(-Double(v)))) }

    static func gelu(_ v: Float, tanh useTanh: Bool) -> Float {
        let x = Double(v)
        if useTanh { return Float(0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))) }
        return Float(0.5 * x * (1 + erf(x / 2.0.squareRoot())))
    }

    static func softmax(_ row: [Float]) -> [Float] {
        let m = row.max() ?? 0
        let e = row.map { exp(Double($0 - m)) }
        let s = e.reduce(0, +)
        return e.map { Float($0 / s) }
    }

    static func rowwise(_ x: [Float], width: Int, _ f: ([Float]) -> [Float]) -> [Float] {
        guard width > 0 else { return x }
        var out: [Float] = []
        out.reserveCapacity(x.count)
        for start in stride(from: 0, to: x.count, by: width) { out += f(Array(x[start..<start + width])) }
        return out
    }

    /// a [..., M, K] × b ([K, N], or [N, K] transposed; or batched with equal leading axes).
    static func matmul(_ a: [Float], _ aShape: [Int], _ b: [Float], _ bShape: [Int], transposeB: Bool, bias: [Float]?, outShape: [Int]) -> [Float] {
        let k = aShape.last!
        let n = outShape.last!
        let rows = a.count / max(1, k)
        let batched = bShape.count > 2
        let bMatrix = batched ? bShape.suffix(2).reduce(1, *) : 0
        let rowsPerBatch = batched ? aShape[aShape.count - 2] : rows
        var out = [Float](repeating: 0, count: rows * n)
        // Every output is Σ_t a_t·b_t in Double, t ascending — the same sums in the same order as
        // plain indexing. Unchecked pointers, four outputs' sums carried side by side (independent
        // add chains; each sum's order unchanged), and b's rows walked in order when b is [k, n]
        // (vectorised over outputs; up to `rowBlock` rows of a at once, so a batch of sequences
        // reads each weight row once per block), only because this loop is most of `kvplan eval`'s time.
        let rowBlock = 4
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { out in
                    if !transposeB {
                        withUnsafeTemporaryAllocation(of: Double.self, capacity: rowBlock * n) { acc in
                            let sums = acc.baseAddress!
                            var r0 = 0
                            while r0 < rows {
                                let base = batched ? (r0 / rowsPerBatch) * bMatrix : 0
                                let count = min(rowBlock, rows - r0, batched ? rowsPerBatch - r0 % rowsPerBatch : rowBlock)
                                sums.initialize(repeating: 0, count: count * n)
                                for t in 0..<k {
                                    let row = b.baseAddress! + base + t * n
                                    for i in 0..<count {
                                        let xt = Double(a[(r0 + i) * k + t])
                                        let s = sums + i * n
                                        for q in 0..<n { s[q] += xt * Double(row[q]) }
                                    }
                                }
                                for i in 0..<count {
                                    for q in 0..<n { out[(r0 + i) * n + q] = Float(sums[i * n + q]) + (bias?[q] ?? 0) }
                                }
                                r0 += count
                            }
                        }
                        return
                    }
                    for r in 0..<rows {
                        let base = batched ? (r / rowsPerBatch) * bMatrix : 0
                        let x = a.baseAddress! + r * k
                        var j = 0
                        while j + 4 <= n {
                            let w0 = b.baseAddress! + base + j * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k
                            var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
                            for t in 0..<k {
                                let xt = Double(x[t])
                                s0 += xt * Double(w0[t])
                                s1 += xt * Double(w1[t])
                                s2 += xt * Double(w2[t])
                                s3 += xt * Double(w3[t])
                            }
                            out[r * n + j] = Float(s0) + (bias?[j] ?? 0)
                            out[r * n + j + 1] = Float(s1) + (bias?[j + 1] ?? 0)
                            out[r * n + j + 2] = Float(s2) + (bias?[j + 2] ?? 0)
                            out[r * n + j + 3] = Float(s3) + (bias?[j + 3] ?? 0)
                            j += 4
                        }
                        while j < n {
                            var acc = 0.0
                            let row = base + j * k
                            for t in 0..<k { acc += Double(x[t]) * Double(b[row + t]) }
                            out[r * n + j] = Float(acc) + (bias?[j] ?? 0)
                            j += 1
                        }
                    }
                }
            }
        }
        return out
    }

    /// Elementwise with numpy broadcasting (shapes right-aligned, extents 1 stretch).
    static func broadcast(_ a: [Float], _ aShape: [Int], _ b: [Float], _ bShape: [Int], _ outShape: [Int], _ f: (Float, Float) -> Float) -> [Float] {
        if aShape == bShape { return zip(a, b).map(f) }
        let rank = outShape.count
        func strides(_ shape: [Int]) -> [Int] {
            let padded = Array(repeating: 1, count: rank - shape.count) + shape
            var s = Array(repeating: 0, count: rank)
            var acc = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                s[d] = padded[d] == 1 ? 0 : acc
                acc *= padded[d]
            }
            return s
        }
        let (sa, sb) = (strides(aShape), strides(bShape))
        let count = outShape.reduce(1, *)
        var out = [Float](repeating: 0, count: count)
        var index = Array(repeating: 0, count: rank)
        for i in 0..<count {
            var ia = 0, ib = 0
            for d in 0..<rank { ia += index[d] * sa[d]; ib += index[d] * sb[d] }
            out[i] = f(a[ia], b[ib])
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < outShape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return out
    }

    /// Inverse frequencies of rotary embedding for a head of `rotary` dims, with llama3 scaling when asked.
    public static func ropeFrequencies(rotary: Int, op: ModelProgram.Op) -> [Double] {
        let theta = op.double("theta") ?? 10000
        var inv = (0..<rotary / 2).map { 1 / pow(theta, Double(2 * $0) / Double(rotary)) }
        if op.string("scaling") == "llama3", let factor = op.double("factor"), let low = op.double("low_freq_factor"),
           let high = op.double("high_freq_factor"), let original = op.double("original_max_positions") {
            // Hugging Face's _compute_llama3_parameters.
            let lowWavelength = original / low, highWavelength = original / high
            inv = inv.map { f in
                let wavelength = 2 * Double.pi / f
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return f / factor }
                let smooth = (original / wavelength - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return inv
    }

    /// Rotary embedding, Hugging Face's rotate-half convention, on the first `rotary_dim` dims of each head.
    static func rope(_ x: [Float], width: Int, positions: [Float], op: ModelProgram.Op) -> [Float] {
        let heads = op.int("heads") ?? 1
        let d = width / heads
        let rotary = op.int("rotary_dim") ?? d
        let half = rotary / 2
        let inv = ropeFrequencies(rotary: rotary, op: op)
        var out = x
        let rows = x.count / max(1, width)
        for r in 0..<rows {
            let p = Double(positions[r % max(1, positions.count)])
            for h in 0..<heads {
                let base = r * width + h * d
                for i in 0..<half {
                    let angle = p * inv[i]
                    let (c, s) = (cos(angle), sin(angle))
                    let (x1, x2) = (Double(x[base + i]), Double(x[base + i + half]))
                    out[base + i] = Float(x1 * c - x2 * s)
                    out[base + i + half] = Float(x2 * c + x1 * s)
                }
            }
        }
        return out
    }

    private mutating func attention(_ op: ModelProgram.Op, _ x: [[Float]], _ shapes: [[Int]]) throws(RuntimeError) -> [Float] {
        let heads = op.int("heads") ?? 1
        let kvHeads = op.int("kv_heads") ?? heads
        let group = heads / kvHeads
        let d = shapes[0].last! / heads
        let dv = shapes[2].last! / kvHeads
        let scale = op.double("scale") ?? 1 / Double(d).squareRoot()
        if x.count == 5 {
            // Decode: attend over the cache and the new token, then append it.
            let (kc, vc) = (op.operands[3], op.operands[4])
            let (batch, capacity) = (shapes[3][0], shapes[3][1])
            var out = [Float](repeating: 0, count: batch * heads * dv)
            if packed[kc] != nil {
                for b in 0..<batch {
                    guard packed[kc]![b].count < capacity else {
                        throw RuntimeError("'\(op.name)': the KV cache holds \(capacity) tokens and is full (sequence \(b))")
                    }
                    let key = Array(x[1][b * kvHeads * d..<(b + 1) * kvHeads * d]), value = Array(x[2][b * kvHeads * dv..<(b + 1) * kvHeads * dv])
                    let q = Array(x[0][b * heads * d..<(b + 1) * heads * d])
                    let (y, newScores) = packed[kc]![b].attend(q, key: key, value: value, heads: heads, kvHeads: kvHeads, scale: scale)
                    out.replaceSubrange(b * heads * dv..<(b + 1) * heads * dv, with: y)
                    packed[kc]![b].append(key: key, value: value, scores: newScores)
                }
                return out
            }
            for b in 0..<batch {
                let position = lengths[kc]![b]
                guard position < capacity else {
                    throw RuntimeError("'\(op.name)': the KV cache holds \(capacity) tokens and is full (sequence \(b))")
                }
                for j in 0..<kvHeads * d { values[kc][(b * capacity + position) * kvHeads * d + j] = x[1][b * kvHeads * d + j] }
                for j in 0..<kvHeads * dv { values[vc][(b * capacity + position) * kvHeads * dv + j] = x[2][b * kvHeads * dv + j] }
                lengths[kc]![b] = position + 1
                lengths[vc]![b] = position + 1
                let first = max(0, position + 1 - (op.int("window") ?? capacity))
                var observed: [[Double]] = []
                for h in 0..<heads {
                    let g = h / group
                    let row = (b * capacity + first) * kvHeads + g
                    let head = x[0].withUnsafeBufferPointer { q in
                        values[kc].withUnsafeBufferPointer { k in
                            values[vc].withUnsafeBufferPointer { v in
                                Self.attendHead(query: q.baseAddress! + b * heads * d + h * d, keys: k.baseAddress! + row * d, keyStride: kvHeads * d,
                                                values: v.baseAddress! + row * dv, valueStride: kvHeads * dv, tokens: position + 1 - first, d: d, dv: dv, scale: scale)
                            }
                        }
                    }
                    for i in 0..<dv { out[(b * heads + h) * dv + i] = Float(head.out[i]) }
                    if b == 0 && observeAttention != nil { observed.append(head.weights) }
                }
                if b == 0, let observeAttention { observeAttention(currentOp, observed) }
            }
            return out
        }
        // Over a sequence: q, k, v [B, S, heads·d].
        let (batch, length) = (shapes[0][0], shapes[0][1])
        let causal = op.bool("causal") ?? true
        let window = op.int("window") ?? length
        var out = [Float](repeating: 0, count: batch * length * heads * dv)
        for b in 0..<batch {
            for h in 0..<heads {
                let g = h / group
                for i in 0..<length {
                    let last = causal ? i : length - 1
                    let first = causal ? max(0, i + 1 - window) : 0
                    let qBase = (b * length + i) * heads * d + h * d
                    let head = x[0].withUnsafeBufferPointer { q in
                        x[1].withUnsafeBufferPointer { k in
                            x[2].withUnsafeBufferPointer { v in
                                Self.attendHead(query: q.baseAddress! + qBase, keys: k.baseAddress! + ((b * length + first) * kvHeads + g) * d,
                                                keyStride: kvHeads * d, values: v.baseAddress! + ((b * length + first) * kvHeads + g) * dv,
                                                valueStride: kvHeads * dv, tokens: last + 1 - first, d: d, dv: dv, scale: scale)
                            }
                        }
                    }
                    for c in 0..<dv { out[((b * length + i) * heads + h) * dv + c] = Float(head.out[c]) }
                }
            }
        }
        return out
    }
}

extension ReferenceInterpreter {
    /// One query head over `tokens` rows of keys and values (row t at `keys + t·keyStride`, `values +
    /// t·valueStride`): softmax(q·k_t·scale) and Σ_t w_t·v_t, in Double; returns the output (dv
    /// values) and each token's weight.
    /// `products[t]`, when given and not nil, is token t's q·k computed elsewhere (an integer key
    /// group: KeyProductRounding) and replaces the f32 row's.
    static func attendHead(query: UnsafePointer<Float>, keys: UnsafePointer<Float>, keyStride: Int, values: UnsafePointer<Float>, valueStride: Int,
                           tokens: Int, d: Int, dv: Int, scale: Double, products: [Double?]? = nil) -> (out: [Double], weights: [Double]) {
        let q = (0..<d).map { Double(query[$0]) }
        let scores = (0..<tokens).map { t in
            if let p = products?[t] { return p * scale }
            let k = keys + t * keyStride
            var acc = 0.0
            for i in 0..<d { acc += q[i] * Double(k[i]) }
            return acc * scale
        }
        let m = scores.max() ?? 0
        let e = scores.map { exp($0 - m) }
        let total = e.reduce(0, +)
        let weights = e.map { $0 / total }
        var out = [Double](repeating: 0, count: dv)
        for n in 0..<tokens {
            let v = values + n * valueStride
            for i in 0..<dv { out[i] += weights[n] * Double(v[i]) }
        }
        return (out, weights)
    }
}

/// A run-side failure, with what and where.
public struct RuntimeError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
