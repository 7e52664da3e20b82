// ShapeInference: result shapes, dtypes and FLOPs of every op, with checks.
//
// Each op kind has one function that validates its operands and attributes
// and returns its result types and FLOP count. Errors carry the location of
// the offending argument, so a diagnostic points at the operand that is
// wrong, not just at the call. All arithmetic on sizes is overflow-checked:
// hostile shapes produce an error, never a trap. FLOP formulas are listed in
// Docs/graph-format.md ("Ops").

/// A tensor argument of a call, as seen by shape inference.
public struct OperandInfo: Sendable {
    /// The tensor (nil while checking a call whose operand failed earlier).
    public var id: TensorID
    /// Its name, for messages.
    public var name: String
    /// Its shape.
    public var shape: Shape
    /// Its dtype.
    public var dtype: DType
    /// Its role (caches are checked by attention).
    public var kind: TensorKind
    /// Where the argument is written.
    public var location: SourceLocation
}

/// A named attribute argument, already evaluated.
public enum AttributeArgument: Sendable {
    /// A constant value.
    case value(AttributeValue, SourceLocation)
    /// A list of dimension sizes that keep their symbolic names (reshape `shape=`).
    case dims([Dim], SourceLocation)
    /// Tensor types with symbolic names kept (opaque `out=`).
    case tensorTypes([(DType, Shape)], SourceLocation)
    /// A tensor (e.g. `bias=`).
    case tensor(OperandInfo)

    var location: SourceLocation {
        switch self {
        case let .value(_, l), let .dims(_, l), let .tensorTypes(_, l): return l
        case let .tensor(t): return t.location
        }
    }
}

/// A call ready for inference.
public struct OpCall: Sendable {
    /// Which op.
    public var kind: OpKind
    /// The name as written (`linear` or `matmul`).
    public var callName: String
    /// Where the op name is.
    public var location: SourceLocation
    /// Positional tensor operands.
    public var operands: [OperandInfo]
    /// Named attributes in source order.
    public var attributes: [(String, AttributeArgument)]
}

/// What inference concluded about a call.
public struct InferredOp: Sendable {
    /// Result types, one per result.
    public var results: [(Shape, DType)]
    /// All tensor operands in IR order (positional, then tensor attributes such as bias).
    public var operands: [OperandInfo]
    /// Caches written in place.
    public var updates: [OperandInfo]
    /// Constant attributes, sorted by name.
    public var attributes: [(String, AttributeValue)]
    /// FLOPs (multiply-add = 2).
    public var flops: Int
    /// Bytes appended to updated caches.
    public var appendedBytes: Int
}

/// A located inference error.
public struct InferenceError: Error, Sendable {
    /// Where.
    public var location: SourceLocation
    /// What.
    public var message: String
}

/// Infers result types and FLOPs for op calls.
public enum ShapeInference {
    /// Checks `call` and returns its results, or throws the first problem found.
    public static func infer(_ call: OpCall) throws(InferenceError) -> InferredOp {
        var c = CallChecker(call: call)
        switch call.kind {
        case .embed: return try c.embed()
        case .matmul: return try c.matmul()
        case .add, .mul: return try c.binaryElementwise()
        case .rmsnorm: return try c.rmsnorm()
        case .layernorm: return try c.layernorm()
        case .rope: return try c.rope()
        case .attention: return try c.attention()
        case .softmax: return try c.softmax()
        case .silu, .gelu, .relu: return try c.unary()
        case .siluMul: return try c.siluMul()
        case .conv2d: return try c.conv2d()
        case .maxpool, .avgpool: return try c.pool()
        case .globalAvgpool: return try c.globalAvgpool()
        case .concat: return try c.concat()
        case .reshape: return try c.reshape()
        case .split: return try c.split()
        case .opaque: return try c.opaque()
        }
    }
}

/// Overflow-checked product of sizes.
func checkedProduct(_ xs: [Int]) -> Int? {
    var p = 1
    for x in xs {
        let (r, o) = p.multipliedReportingOverflow(by: x)
        if o { return nil }
        p = r
    }
    return p
}

func describe(_ shape: Shape) -> String { "[" + shape.map { "\($0.size)" }.joined(separator: ", ") + "]" }

/// Per-call checking state: which attributes were consumed, helpers for errors.
private struct CallChecker {
    let call: OpCall
    var used: Set<String> = []

    init(call: OpCall) { self.call = call }

    var name: String { call.callName }

    func fail(_ message: String, at location: SourceLocation? = nil) -> InferenceError {
        InferenceError(location: location ?? call.location, message: message)
    }

    // MARK: operands and attributes

    func operands(_ range: ClosedRange<Int>, _ names: String) throws(InferenceError) -> [OperandInfo] {
        let n = call.operands.count
        guard range.contains(n) else {
            let want = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
            throw fail("'\(name)' takes \(want) operand\(range.upperBound == 1 ? "" : "s") (\(names)), got \(n)")
        }
        return call.operands
    }

    mutating func raw(_ key: String) -> AttributeArgument? {
        guard let a = call.attributes.first(where: { $0.0 == key }) else { return nil }
        used.insert(key)
        return a.1
    }

    mutating func int(_ key: String, default d: Int? = nil, min lower: Int? = nil) throws(InferenceError) -> Int? {
        guard let a = raw(key) else { return d }
        guard case let .value(.int(v), loc) = a else { throw fail("'\(key)' must be an integer", at: a.location) }
        if let lower, v < lower { throw fail("'\(key)' must be at least \(lower), got \(v)", at: loc) }
        return v
    }

    mutating func float(_ key: String, default d: Double? = nil) throws(InferenceError) -> Double? {
        guard let a = raw(key) else { return d }
        switch a {
        case let .value(.float(v), _): return v
        case let .value(.int(v), _): return Double(v)
        default: throw fail("'\(key)' must be a number", at: a.location)
        }
    }

    mutating func bool(_ key: String, default d: Bool) throws(InferenceError) -> Bool {
        guard let a = raw(key) else { return d }
        guard case let .value(.bool(v), _) = a else { throw fail("'\(key)' must be true or false", at: a.location) }
        return v
    }

    mutating func string(_ key: String, allowed: [String]) throws(InferenceError) -> String? {
        guard let a = raw(key) else { return nil }
        guard case let .value(.string(v), loc) = a else { throw fail("'\(key)' must be a string", at: a.location) }
        guard allowed.contains(v) else {
            throw fail("'\(key)' must be one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", ")), got \"\(v)\"", at: loc)
        }
        return v
    }

    mutating func pair(_ key: String, default d: (Int, Int), min lower: Int) throws(InferenceError) -> (Int, Int) {
        guard let a = raw(key) else { return d }
        switch a {
        case let .value(.int(v), loc):
            if v < lower { throw fail("'\(key)' must be at least \(lower), got \(v)", at: loc) }
            return (v, v)
        case let .dims(ds, loc) where ds.count == 2:
            if ds.contains(where: { $0.size < lower }) { throw fail("'\(key)' values must be at least \(lower)", at: loc) }
            return (ds[0].size, ds[1].size)
        default:
            throw fail("'\(key)' must be an integer or a list of two integers [h, w]", at: a.location)
        }
    }

    mutating func tensorAttribute(_ key: String) throws(InferenceError) -> OperandInfo? {
        guard let a = raw(key) else { return nil }
        guard case let .tensor(t) = a else { throw fail("'\(key)' must be a tensor", at: a.location) }
        return t
    }

    mutating func outputDType(default d: DType) throws(InferenceError) -> DType {
        guard let a = raw("dtype") else { return d }
        guard case let .value(.string(s), loc) = a else { throw fail("'dtype' must be a dtype name in quotes, e.g. dtype=\"f32\"", at: a.location) }
        guard let t = DType(rawValue: s) else { throw fail("unknown dtype \"\(s)\"", at: loc) }
        return t
    }

    /// Rejects attributes the op did not consume.
    func finish(_ results: [(Shape, DType)], operands: [OperandInfo], updates: [OperandInfo] = [],
                flops: Int?, appended: Int = 0, extra: [(String, AttributeValue)] = []) throws(InferenceError) -> InferredOp {
        for (key, arg) in call.attributes where !used.contains(key) {
            throw fail("'\(name)' has no attribute '\(key)'", at: arg.location)
        }
        var seen: Set<String> = []
        for (key, arg) in call.attributes {
            if !seen.insert(key).inserted { throw fail("attribute '\(key)' given twice", at: arg.location) }
        }
        guard let flops else { throw fail("the FLOP count of '\(name)' overflows 64 bits") }
        for (shape, dtype) in results {
            guard let n = checkedProduct(shape.sizes), dtype.bytes(forElements: n) != nil else {
                throw fail("the result of '\(name)' (\(describe(shape))) is too large")
            }
        }
        var attrs: [(String, AttributeValue)] = extra
        for (key, arg) in call.attributes {
            if case let .value(v, _) = arg { attrs.append((key, v)) }
            if case let .dims(ds, _) = arg { attrs.append((key, .ints(ds.sizes))) }
            if case let .tensorTypes(ts, _) = arg {
                attrs.append((key, ts.count == 1 ? .type(ts[0].0, ts[0].1.sizes) : .types(ts.map { ($0.0, $0.1.sizes) })))
            }
        }
        attrs.sort { $0.0 < $1.0 }
        return InferredOp(results: results, operands: operands, updates: updates, attributes: attrs,
                          flops: flops, appendedBytes: appended)
    }

    func requireRank(_ t: OperandInfo, _ ranks: ClosedRange<Int>, _ role: String) throws(InferenceError) {
        guard ranks.contains(t.shape.count) else {
            let want = ranks.lowerBound == ranks.upperBound ? "rank \(ranks.lowerBound)" : "rank \(ranks.lowerBound)–\(ranks.upperBound)"
            throw fail("\(role) '\(t.name)' of '\(name)' must have \(want), has shape \(describe(t.shape))", at: t.location)
        }
    }

    func requireSameDType(_ a: OperandInfo, _ b: OperandInfo) throws(InferenceError) {
        guard a.dtype == b.dtype else {
            throw fail("'\(name)' operands must have the same dtype: '\(a.name)' is \(a.dtype.rawValue), '\(b.name)' is \(b.dtype.rawValue)", at: b.location)
        }
    }

    func requireFloat(_ t: OperandInfo) throws(InferenceError) {
        guard t.dtype.isFloatingPoint else {
            throw fail("'\(name)' needs a floating-point operand; '\(t.name)' is \(t.dtype.rawValue)", at: t.location)
        }
    }

    func notCache(_ ts: [OperandInfo]) throws(InferenceError) {
        for t in ts where t.kind == .cache {
            throw fail("cache '\(t.name)' can only be an operand of 'attention'", at: t.location)
        }
    }

    func elems(_ s: Shape) -> Int? { checkedProduct(s.sizes) }

    func perElement(_ s: Shape, _ k: Int) -> Int? { elems(s).flatMap { checkedProduct([$0, k]) } }

    /// Numpy-style broadcasting of trailing axes.
    func broadcast(_ a: OperandInfo, _ b: OperandInfo) throws(InferenceError) -> Shape {
        let n = max(a.shape.count, b.shape.count)
        var out: Shape = []
        for i in 0..<n {
            let da = i < n - a.shape.count ? Dim(1) : a.shape[i - (n - a.shape.count)]
            let db = i < n - b.shape.count ? Dim(1) : b.shape[i - (n - b.shape.count)]
            if da.size == db.size { out.append(da.symbol != nil ? da : db) }
            else if da.size == 1 { out.append(db) }
            else if db.size == 1 { out.append(da) }
            else {
                throw fail("shapes \(describe(a.shape)) of '\(a.name)' and \(describe(b.shape)) of '\(b.name)' do not broadcast", at: b.location)
            }
        }
        return out
    }

    // MARK: ops

    mutating func embed() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "table, ids")
        let (table, ids) = (ops[0], ops[1])
        try notCache(ops)
        try requireRank(table, 2...2, "table")
        guard ids.dtype == .i32 else { throw fail("ids '\(ids.name)' of 'embed' must be i32, is \(ids.dtype.rawValue)", at: ids.location) }
        let dtype = try outputDType(default: table.dtype)
        return try finish([(ids.shape + [table.shape[1]], dtype)], operands: ops, flops: 0)
    }

    mutating func matmul() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "a, b")
        let (a, b) = (ops[0], ops[1])
        try notCache(ops)
        let transposeB = call.callName == "linear" ? true : try bool("transpose_b", default: false)
        if call.callName == "linear", raw("transpose_b") != nil {
            throw fail("'linear' always transposes its weight; use 'matmul' to choose transpose_b")
        }
        try requireRank(a, 1...8, "a")
        try requireRank(b, 2...8, "b")
        if a.dtype.isFloatingPoint == false && b.dtype.isFloatingPoint {
            throw fail("'\(name)' of integer '\(a.name)' by floating-point '\(b.name)' is not supported", at: b.location)
        }
        var result: Shape
        var m: Int, k: Int, n: Int
        if b.shape.count == 2 {
            let (bk, bn) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            guard a.shape.last!.size == bk.size else {
                throw fail("'\(name)': inner dimensions differ: '\(a.name)' \(describe(a.shape)) by '\(b.name)' \(describe(b.shape))\(transposeB ? " (transposed)" : "")", at: b.location)
            }
            (k, n) = (bk.size, bn.size)
            guard let mm = elems(Shape(a.shape.dropLast())) else { throw fail("'\(name)' is too large") }
            m = mm
            result = Shape(a.shape.dropLast()) + [bn]
        } else {
            guard a.shape.count == b.shape.count else {
                throw fail("batched '\(name)' needs operands of equal rank: \(describe(a.shape)) and \(describe(b.shape))", at: b.location)
            }
            let r = a.shape.count
            let (bk, bn) = transposeB ? (b.shape[r - 1], b.shape[r - 2]) : (b.shape[r - 2], b.shape[r - 1])
            guard a.shape[..<(r - 2)].map(\.size) == b.shape[..<(r - 2)].map(\.size) else {
                throw fail("batched '\(name)': batch axes differ: \(describe(a.shape)) and \(describe(b.shape))", at: b.location)
            }
            guard a.shape[r - 1].size == bk.size else {
                throw fail("'\(name)': inner dimensions differ: \(describe(a.shape)) by \(describe(b.shape))", at: b.location)
            }
            (k, n) = (bk.size, bn.size)
            guard let mm = elems(Shape(a.shape.dropLast())) else { throw fail("'\(name)' is too large") }
            m = mm
            result = Shape(a.shape.dropLast()) + [bn]
        }
        var all = [a, b]
        var flops = checkedProduct([2, m, n, k])
        if let bias = try tensorAttribute("bias") {
            guard bias.shape.sizes == [n] else {
                throw fail("bias '\(bias.name)' must have shape [\(n)], has \(describe(bias.shape))", at: bias.location)
            }
            all.append(bias)
            flops = flops.flatMap { f in checkedProduct([m, n]).map { f &+ $0 } }
        }
        let dtype = try outputDType(default: a.dtype)
        let extra: [(String, AttributeValue)] = call.callName == "linear" ? [("transpose_b", .bool(true))] : []
        return try finish([(result, dtype)], operands: all, flops: flops, extra: extra)
    }

    mutating func binaryElementwise() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "a, b")
        try notCache(ops)
        try requireSameDType(ops[0], ops[1])
        let shape = try broadcast(ops[0], ops[1])
        return try finish([(shape, ops[0].dtype)], operands: ops, flops: elems(shape))
    }

    mutating func rmsnorm() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "x, weight")
        try notCache(ops)
        let (x, w) = (ops[0], ops[1])
        try requireRank(x, 1...8, "x")
        guard w.shape.sizes == [x.shape.last!.size] else {
            throw fail("weight '\(w.name)' of 'rmsnorm' must have shape [\(x.shape.last!.size)], has \(describe(w.shape))", at: w.location)
        }
        _ = try float("eps", default: 1e-6)
        return try finish([(x.shape, x.dtype)], operands: ops, flops: perElement(x.shape, 4))
    }

    mutating func layernorm() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...3, "x, weight, optional bias")
        try notCache(ops)
        let x = ops[0]
        try requireRank(x, 1...8, "x")
        for p in ops.dropFirst() where p.shape.sizes != [x.shape.last!.size] {
            throw fail("'\(p.name)' of 'layernorm' must have shape [\(x.shape.last!.size)], has \(describe(p.shape))", at: p.location)
        }
        _ = try float("eps", default: 1e-5)
        return try finish([(x.shape, x.dtype)], operands: ops, flops: perElement(x.shape, 8))
    }

    mutating func rope() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "x, positions")
        try notCache(ops)
        let (x, pos) = (ops[0], ops[1])
        try requireFloat(x)
        try requireRank(x, 1...8, "x")
        guard pos.dtype == .i32 else { throw fail("positions '\(pos.name)' of 'rope' must be i32, is \(pos.dtype.rawValue)", at: pos.location) }
        let lead = Array(x.shape.dropLast().sizes)
        guard pos.shape.count <= lead.count, Array(lead.suffix(pos.shape.count)) == pos.shape.sizes else {
            throw fail("positions '\(pos.name)' \(describe(pos.shape)) must match the leading axes of '\(x.name)' \(describe(x.shape))", at: pos.location)
        }
        guard let heads = try int("heads", min: 1) else { throw fail("'rope' needs heads= (the number of heads packed in the last axis)") }
        let width = x.shape.last!.size
        guard width % heads == 0, (width / heads) % 2 == 0 else {
            throw fail("last axis \(width) of '\(x.name)' is not \(heads) heads of an even head size", at: x.location)
        }
        let headDim = width / heads
        if let rd = try int("rotary_dim", min: 2), rd > headDim || rd % 2 != 0 {
            throw fail("rotary_dim must be even and at most the head size \(headDim)", at: call.attributes.first { $0.0 == "rotary_dim" }!.1.location)
        }
        let theta = try float("theta", default: 10000)!
        guard theta > 1 else { throw fail("theta must be greater than 1") }
        if let scaling = try string("scaling", allowed: ["llama3"]) {
            _ = scaling
            guard let f = try float("factor"), f >= 1 else { throw fail("llama3 rope scaling needs factor= ≥ 1") }
            guard let lo = try float("low_freq_factor"), let hi = try float("high_freq_factor"), hi > lo else {
                throw fail("llama3 rope scaling needs low_freq_factor= and high_freq_factor= with high > low")
            }
            guard try int("original_max_positions", min: 1) != nil else {
                throw fail("llama3 rope scaling needs original_max_positions=")
            }
        } else {
            for key in ["factor", "low_freq_factor", "high_freq_factor", "original_max_positions"] {
                if let a = raw(key) { throw fail("'\(key)' only applies with scaling=\"llama3\"", at: a.location) }
            }
        }
        return try finish([(x.shape, x.dtype)], operands: ops, flops: perElement(x.shape, 3))
    }

    mutating func attention() throws(InferenceError) -> InferredOp {
        let ops = try operands(3...5, "q, k, v and, for a decode step, k_cache, v_cache")
        guard ops.count != 4 else {
            throw fail("'attention' takes q, k, v (self-attention over a sequence) or q, k, v, k_cache, v_cache (decode step), got 4 operands", at: ops[3].location)
        }
        guard let heads = try int("heads", min: 1) else { throw fail("'attention' needs heads=") }
        let kvHeads = try int("kv_heads", default: heads, min: 1)!
        guard heads % kvHeads == 0 else { throw fail("heads (\(heads)) must be a multiple of kv_heads (\(kvHeads))") }
        let window = try int("window", min: 1)
        _ = try float("scale")
        let (q, k, v) = (ops[0], ops[1], ops[2])
        try notCache([q, k, v])
        try requireSameDType(q, k)
        try requireSameDType(q, v)
        func split(_ t: OperandInfo, _ h: Int) throws(InferenceError) -> Int {
            guard t.shape.last!.size % h == 0 else {
                throw fail("last axis \(t.shape.last!.size) of '\(t.name)' is not divisible by \(h) heads", at: t.location)
            }
            return t.shape.last!.size / h
        }
        if ops.count == 5 {
            let (kc, vc) = (ops[3], ops[4])
            if let a = raw("causal") { throw fail("'causal' applies only to attention over a sequence; a decode step sees the whole cache", at: a.location) }
            for t in [q, k, v] { try requireRank(t, 2...2, t.name == q.name ? "q" : "k/v") }
            for t in [kc, vc] {
                guard t.kind == .cache else {
                    throw fail("'\(t.name)' must be declared with 'cache' to be appended to by 'attention'", at: t.location)
                }
                try requireRank(t, 4...4, "cache")
            }
            let batch = q.shape[0].size
            for t in [k, v, kc, vc] where t.shape[0].size != batch {
                throw fail("batch axis of '\(t.name)' is \(t.shape[0].size), expected \(batch) as in '\(q.name)'", at: t.location)
            }
            let d = try split(q, heads)
            let dk = try split(k, kvHeads)
            let dv = try split(v, kvHeads)
            guard d == dk else { throw fail("head size of q (\(d)) and k (\(dk)) differ", at: k.location) }
            let len = kc.shape[1].size
            guard kc.shape.sizes == [batch, len, kvHeads, dk] else {
                throw fail("cache '\(kc.name)' must have shape [batch, max_len, kv_heads, head_dim] = [\(batch), \(len), \(kvHeads), \(dk)], has \(describe(kc.shape))", at: kc.location)
            }
            guard vc.shape.sizes == [batch, len, kvHeads, dv] else {
                throw fail("cache '\(vc.name)' must have shape [\(batch), \(len), \(kvHeads), \(dv)] like '\(kc.name)', has \(describe(vc.shape))", at: vc.location)
            }
            let t = min(len, window ?? len)
            let flops = checkedProduct([batch, heads, t]).flatMap { checkedProduct([$0, 2 * d + 2 * dv + 5]) }
            let appended = (kc.dtype.bytes(forElements: batch * kvHeads * dk) ?? 0) + (vc.dtype.bytes(forElements: batch * kvHeads * dv) ?? 0)
            let out: Shape = [q.shape[0], Dim(heads * dv)]
            return try finish([(out, q.dtype)], operands: ops, updates: [kc, vc], flops: flops, appended: appended)
        }
        let causal = try bool("causal", default: true)
        for t in [q, k, v] { try requireRank(t, 3...3, t.name == q.name ? "q" : "k/v") }
        let (b, s) = (q.shape[0].size, q.shape[1].size)
        for t in [k, v] where t.shape[0].size != b || t.shape[1].size != s {
            throw fail("'\(t.name)' \(describe(t.shape)) must have the batch and sequence axes of '\(q.name)' \(describe(q.shape))", at: t.location)
        }
        let d = try split(q, heads)
        let dk = try split(k, kvHeads)
        let dv = try split(v, kvHeads)
        guard d == dk else { throw fail("head size of q (\(d)) and k (\(dk)) differ", at: k.location) }
        // Exact number of (query, key) pairs attended.
        let w = window ?? s
        var pairs: Int?
        if causal {
            let full = min(s, w)
            pairs = checkedProduct([full, full + 1]).map { $0 / 2 }.flatMap { p in checkedProduct([s - full, w]).map { p &+ $0 } }
        } else {
            pairs = checkedProduct([s, min(s, w)])
        }
        let flops = pairs.flatMap { checkedProduct([b, heads, $0, 2 * d + 2 * dv + 5]) }
        let out: Shape = [q.shape[0], q.shape[1], Dim(heads * dv)]
        return try finish([(out, q.dtype)], operands: ops, flops: flops)
    }

    mutating func softmax() throws(InferenceError) -> InferredOp {
        let ops = try operands(1...1, "x")
        try notCache(ops)
        try requireFloat(ops[0])
        let rank = ops[0].shape.count
        let axis = try int("axis", default: -1)!
        guard rank > 0, (-rank..<rank).contains(axis) else { throw fail("axis \(axis) is out of range for rank \(rank)") }
        return try finish([(ops[0].shape, ops[0].dtype)], operands: ops, flops: perElement(ops[0].shape, 5))
    }

    mutating func unary() throws(InferenceError) -> InferredOp {
        let ops = try operands(1...1, "x")
        try notCache(ops)
        var cost = 1
        switch call.kind {
        case .silu: try requireFloat(ops[0]); cost = 4
        case .gelu:
            _ = try string("approximate", allowed: ["none", "tanh"])
            cost = 8
        default: break
        }
        return try finish([(ops[0].shape, ops[0].dtype)], operands: ops, flops: perElement(ops[0].shape, cost))
    }

    mutating func siluMul() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "gate, up")
        try notCache(ops)
        try requireSameDType(ops[0], ops[1])
        guard ops[0].shape.sizes == ops[1].shape.sizes else {
            throw fail("'silu_mul' needs equal shapes: \(describe(ops[0].shape)) and \(describe(ops[1].shape))", at: ops[1].location)
        }
        return try finish([(ops[0].shape, ops[0].dtype)], operands: ops, flops: perElement(ops[0].shape, 5))
    }

    func spatial(_ size: Int, kernel: Int, stride: Int, pad: Int, dilation: Int, axis: String) throws(InferenceError) -> Int {
        let span = dilation * (kernel - 1) + 1
        let numerator = size + 2 * pad - span
        guard numerator >= 0 else {
            throw fail("kernel span \(span) exceeds the padded \(axis) \(size + 2 * pad)")
        }
        return numerator / stride + 1
    }

    mutating func conv2d() throws(InferenceError) -> InferredOp {
        let ops = try operands(2...2, "x, weight")
        try notCache(ops)
        let (x, w) = (ops[0], ops[1])
        try requireRank(x, 4...4, "x [N, C, H, W]")
        try requireRank(w, 4...4, "weight [C_out, C_in/groups, KH, KW]")
        let groups = try int("groups", default: 1, min: 1)!
        let stride = try pair("stride", default: (1, 1), min: 1)
        let pad = try pair("padding", default: (0, 0), min: 0)
        let dil = try pair("dilation", default: (1, 1), min: 1)
        let (n, c, h, wd) = (x.shape[0], x.shape[1].size, x.shape[2].size, x.shape[3].size)
        let (co, ci, kh, kw) = (w.shape[0].size, w.shape[1].size, w.shape[2].size, w.shape[3].size)
        guard c % groups == 0, co % groups == 0 else {
            throw fail("groups=\(groups) must divide the input channels \(c) and output channels \(co)")
        }
        guard ci == c / groups else {
            throw fail("weight '\(w.name)' has \(ci) input channels per group, expected \(c / groups) (\(c) channels, groups=\(groups))", at: w.location)
        }
        if x.dtype.isFloatingPoint != w.dtype.isFloatingPoint, !x.dtype.isFloatingPoint {
            throw fail("'conv2d' of integer '\(x.name)' by floating-point '\(w.name)' is not supported", at: w.location)
        }
        let ho = try spatial(h, kernel: kh, stride: stride.0, pad: pad.0, dilation: dil.0, axis: "height")
        let wo = try spatial(wd, kernel: kw, stride: stride.1, pad: pad.1, dilation: dil.1, axis: "width")
        var all = ops
        var flops = checkedProduct([2, n.size, co, ho, wo, ci, kh, kw])
        if let bias = try tensorAttribute("bias") {
            guard bias.shape.sizes == [co] else {
                throw fail("bias '\(bias.name)' must have shape [\(co)], has \(describe(bias.shape))", at: bias.location)
            }
            all.append(bias)
            flops = flops.flatMap { f in checkedProduct([n.size, co, ho, wo]).map { f &+ $0 } }
        }
        let dtype = try outputDType(default: x.dtype)
        return try finish([([n, Dim(co), Dim(ho), Dim(wo)], dtype)], operands: all, flops: flops)
    }

    mutating func pool() throws(InferenceError) -> InferredOp {
        let ops = try operands(1...1, "x")
        try notCache(ops)
        let x = ops[0]
        try requireRank(x, 4...4, "x [N, C, H, W]")
        guard raw("kernel") != nil else { throw fail("'\(name)' needs kernel=") }
        used.remove("kernel")
        let kernel = try pair("kernel", default: (1, 1), min: 1)
        let stride = try pair("stride", default: kernel, min: 1)
        let pad = try pair("padding", default: (0, 0), min: 0)
        guard pad.0 * 2 < kernel.0 + 1, pad.1 * 2 < kernel.1 + 1 else {
            throw fail("padding must be at most half the kernel")
        }
        let ho = try spatial(x.shape[2].size, kernel: kernel.0, stride: stride.0, pad: pad.0, dilation: 1, axis: "height")
        let wo = try spatial(x.shape[3].size, kernel: kernel.1, stride: stride.1, pad: pad.1, dilation: 1, axis: "width")
        let flops = checkedProduct([x.shape[0].size, x.shape[1].size, ho, wo, kernel.0, kernel.1])
        return try finish([([x.shape[0], x.shape[1], Dim(ho), Dim(wo)], x.dtype)], operands: ops, flops: flops)
    }

    mutating func globalAvgpool() throws(InferenceError) -> InferredOp {
        let ops = try operands(1...1, "x")
        try notCache(ops)
        try requireRank(ops[0], 4...4, "x [N, C, H, W]")
        let x = ops[0]
        return try finish([([x.shape[0], x.shape[1], Dim(1), Dim(1)], x.dtype)], operands: ops, flops: elems(x.shape))
    }

    mutating func concat() throws(InferenceError) -> InferredOp {
        guard call.operands.count >= 2 else { throw fail("'concat' takes at least 2 operands, got \(call.operands.count)") }
        let ops = call.operands
        try notCache(ops)
        guard let axisArg = try int("axis") else { throw fail("'concat' needs axis=") }
        let first = ops[0]
        let rank = first.shape.count
        guard (-rank..<rank).contains(axisArg) else { throw fail("axis \(axisArg) is out of range for rank \(rank)") }
        let axis = axisArg < 0 ? axisArg + rank : axisArg
        var total = 0
        for t in ops {
            try requireSameDType(first, t)
            guard t.shape.count == rank else {
                throw fail("'concat' operands must have equal rank: '\(t.name)' has \(describe(t.shape))", at: t.location)
            }
            for i in 0..<rank where i != axis && t.shape[i].size != first.shape[i].size {
                throw fail("'concat' along axis \(axis): '\(t.name)' \(describe(t.shape)) differs from '\(first.name)' \(describe(first.shape)) on axis \(i)", at: t.location)
            }
            let (s, o) = total.addingReportingOverflow(t.shape[axis].size)
            if o { throw fail("'concat' result is too large") }
            total = s
        }
        var shape = first.shape
        shape[axis] = Dim(total)
        return try finish([(shape, first.dtype)], operands: ops, flops: 0)
    }

    mutating func reshape() throws(InferenceError) -> InferredOp {
        let ops = try operands(1...1, "x")
        try notCache(ops)
        let x = ops[0]
        guard let arg = raw("shape") else { throw fail("'reshape' needs shape=[...]") }
        guard case let .dims(dims, loc) = arg else { throw fail("'shape' must be a list of integers", at: arg.location) }
        guard let total = elems(x.shape) else { throw fail("'reshape' operand is too large") }
        var out = dims
        let inferred = dims.indices.filter { dims[$0].size == -1 }
        guard inferred.count <= 1 else { throw fail("at most one axis of shape= may be -1", at: loc) }
        guard !dims.contains(where: { $0.size < -1 || $0.size == 0 }) else { throw fail("shape= sizes must be positive (or -1 once)", at: loc) }
        let known = checkedProduct(dims.filter { $0.size != -1 }.sizes)
        if let i = inferred.first {
            guard let known, known > 0, total % known == 0 else {
                throw fail("cannot infer the -1 axis: \(total) elements do not divide by \(known ?? 0)", at: loc)
            }
            out[i] = Dim(total / known)
        } else {
            guard known == total else {
                throw fail("'reshape' of \(describe(x.shape)) (\(total) elements) to \(describe(dims)) (\(known.map(String.init) ?? "too many") elements)", at: loc)
            }
        }
        return try finish([(out, x.dtype)], operands: ops, flops: 0)
    }

    mutating func split() throws(InferenceError) -> InferredOp {
        let ops = try operands(1...1, "x")
        try notCache(ops)
        let x = ops[0]
        guard let arg = raw("sizes") else { throw fail("'split' needs sizes=[...]") }
        guard case let .dims(sizes, loc) = arg, !sizes.isEmpty else { throw fail("'sizes' must be a non-empty list of integers", at: arg.location) }
        let rank = x.shape.count
        let axisArg = try int("axis", default: -1)!
        guard rank > 0, (-rank..<rank).contains(axisArg) else { throw fail("axis \(axisArg) is out of range for rank \(rank)") }
        let axis = axisArg < 0 ? axisArg + rank : axisArg
        guard sizes.allSatisfy({ $0.size > 0 }), sizes.reduce(0, { $0 &+ $1.size }) == x.shape[axis].size else {
            throw fail("sizes \(describe(sizes)) must be positive and add up to axis \(axis) of '\(x.name)' (\(x.shape[axis].size))", at: loc)
        }
        let results: [(Shape, DType)] = sizes.map { d in
            var s = x.shape
            s[axis] = d
            return (s, x.dtype)
        }
        return try finish(results, operands: ops, flops: 0)
    }

    mutating func opaque() throws(InferenceError) -> InferredOp {
        let ops = call.operands
        guard let arg = raw("out") else { throw fail("'opaque' needs out= with its result type(s), e.g. out=f32[1, 10]") }
        guard case let .tensorTypes(types, _) = arg, !types.isEmpty else {
            throw fail("'out' must be a tensor type or a list of tensor types", at: arg.location)
        }
        guard let flops = try int("flops", min: 0) else { throw fail("'opaque' needs flops= (its cost, for planning)") }
        return try finish(types.map { ($0.1, $0.0) }, operands: ops, flops: flops)
    }
}
