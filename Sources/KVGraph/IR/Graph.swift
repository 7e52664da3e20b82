/// The checked IR: tensors with exact byte sizes, ops with FLOPs, a topological order.

/// Element types of tensors.
public enum DType: String, Sendable, CaseIterable, Codable, Comparable {
    case f32, f16, bf16, i32, i8, i4, i2
    /// ggml's block formats for weights: 32 values share one fp16 scale (q8_0: 34 bytes per
    /// block, q4_0: 18). Their rows must be whole blocks.
    case q8_0, q4_0

    /// Bits per element (of the codes, for the block formats).
    public var bits: Int {
        switch self {
        case .f32, .i32: return 32
        case .f16, .bf16: return 16
        case .i8, .q8_0: return 8
        case .i4, .q4_0: return 4
        case .i2: return 2
        }
    }

    /// Values per block of a block format, nil for plain element types.
    public var blockElements: Int? { self == .q8_0 || self == .q4_0 ? 32 : nil }

    /// Bytes per block of a block format (an fp16 scale and the codes), nil for plain element types.
    public var blockBytes: Int? {
        switch self {
        case .q8_0: return 34
        case .q4_0: return 18
        default: return nil
        }
    }

    /// True for f32, f16 and bf16.
    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }

    /// Exact bytes of `elements` elements: sub-byte types packed (rounded up to a whole byte), block
    /// formats in whole blocks.
    public func bytes(forElements elements: Int) -> Int? {
        if let block = blockElements, let blockBytes {
            let (bytes, overflow) = ((elements + block - 1) / block).multipliedReportingOverflow(by: blockBytes)
            return overflow ? nil : bytes
        }
        let (bits, overflow) = elements.multipliedReportingOverflow(by: self.bits)
        if overflow { return nil }
        return (bits + 7) / 8
    }

    public static func < (a: DType, b: DType) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One axis of a shape: its size, and the symbolic dimension it came from, if any.
public struct Dim: Hashable, Sendable, CustomStringConvertible {
    /// The bound size.
    public var size: Int
    /// The `dim` name when the axis is exactly that symbolic dimension.
    public var symbol: String?

    /// An axis of `size`, optionally named by a symbolic dimension.
    public init(_ size: Int, symbol: String? = nil) {
        self.size = size
        self.symbol = symbol
    }

    public var description: String { symbol.map { "\($0)=\(size)" } ?? "\(size)" }
}

/// A tensor shape.
public typealias Shape = [Dim]

extension Array where Element == Dim {
    /// The sizes alone.
    public var sizes: [Int] { map(\.size) }
}

/// What role a tensor plays.
public enum TensorKind: String, Sendable, Codable, CaseIterable {
    /// Supplied from outside at every step (token ids, positions, images).
    case input
    /// A parameter: read-only, present for the whole run.
    case weight
    /// Computed by one op and consumed by others.
    case activation
    /// Persistent state (a KV cache) that ops read and append to.
    case cache
    /// A computed tensor returned to the caller.
    case output
}

/// Index of a tensor in `Graph.tensors`.
public typealias TensorID = Int
/// Index of an op in `Graph.ops`.
public typealias OpID = Int

/// A tensor of the IR.
public struct Tensor: Sendable {
    /// Its index in the graph.
    public var id: TensorID
    /// Unique name, loop indices included (`wq[3]`, `x[4]`, `h[2].matmul`).
    public var name: String
    /// Axes.
    public var shape: Shape
    /// Element type.
    public var dtype: DType
    /// Role.
    public var kind: TensorKind
    /// Where it was declared or computed.
    public var location: SourceLocation
    /// A weight whose checkpoint holds the transpose of `shape` (a GPT-2 Conv1D matrix, [in, out]
    /// in the file, stored [out, in] by WeightQuantization so its rows are blocks along the
    /// reduction axis); the runtime transposes it at load.
    public var storedTransposed = false

    /// Number of elements (the product of the axes).
    public var elementCount: Int { shape.reduce(1) { $0 * $1.size } }
    /// Exact bytes (sub-byte dtypes packed, rounded up to a byte).
    public var byteSize: Int { dtype.bytes(forElements: elementCount)! }
    /// True for tensors that exist for the whole run (weights, caches).
    public var isPersistent: Bool { kind == .weight || kind == .cache }
}

/// An attribute value of an op.
public enum AttributeValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case string(String)
    case bool(Bool)
    case ints([Int])
    case type(DType, [Int])
    case types([(DType, [Int])])

    public static func == (a: AttributeValue, b: AttributeValue) -> Bool { a.description == b.description }

    public var description: String {
        switch self {
        case let .int(v): return "\(v)"
        case let .float(v): return formatFloat(v)
        case let .string(s): return "\"\(s)\""
        case let .bool(b): return "\(b)"
        case let .ints(v): return "[\(v.map(String.init).joined(separator: ", "))]"
        case let .type(d, s): return "\(d.rawValue)[\(s.map(String.init).joined(separator: ", "))]"
        case let .types(ts):
            return "[" + ts.map { "\($0.0.rawValue)[\($0.1.map(String.init).joined(separator: ", "))]" }.joined(separator: ", ") + "]"
        }
    }
}

/// Prints a double the shortest way that reads back exactly, always with a '.' or exponent.
func formatFloat(_ v: Double) -> String {
    let s = "\(v)"
    return s.contains(".") || s.contains("e") || s.contains("inf") || s.contains("nan") ? s : s + ".0"
}

/// An operation of the IR.
public struct Op: Sendable {
    /// Its index in the graph.
    public var id: OpID
    /// What it computes.
    public var kind: OpKind
    /// Tensors read, in operand order (optional operands such as a bias come last).
    public var operands: [TensorID]
    /// Tensors produced.
    public var results: [TensorID]
    /// Persistent tensors written in place (KV caches an attention op appends to).
    public var updates: [TensorID]
    /// Named attributes, sorted by name.
    public var attributes: [(String, AttributeValue)]
    /// Floating-point (or integer multiply-add) operations, counting a multiply-add as 2.
    public var flops: Int
    /// Bytes read and written: operands + results, plus the bytes appended to updated caches.
    public var bytesTouched: Int
    /// Where the call is in the source.
    public var location: SourceLocation

    /// The value of attribute `name`.
    public func attribute(_ name: String) -> AttributeValue? { attributes.first { $0.0 == name }?.1 }
}

/// A checked model graph.
public struct Graph: Sendable {
    /// Name (from the file name or the importer).
    public var name: String
    /// Symbolic dimensions and the values they were bound to, in declaration order.
    public var dimensions: [(name: String, value: Int)]
    /// All tensors; `id` equals the index.
    public var tensors: [Tensor]
    /// All ops; `id` equals the index.
    public var ops: [Op]
    /// A topological order of `ops` (source order where the data flow allows).
    public var order: [OpID]

    /// The tensor named `name`, if any.
    public func tensor(named name: String) -> Tensor? { tensors.first { $0.name == name } }

    /// For each tensor, the op that produces it (nil for inputs, weights and caches).
    public var producers: [OpID?] {
        var p = [OpID?](repeating: nil, count: tensors.count)
        for op in ops { for r in op.results { p[r] = op.id } }
        return p
    }

    /// For each tensor, the ops that read it (operands or updates), in op order.
    public var consumers: [[OpID]] {
        var c = [[OpID]](repeating: [], count: tensors.count)
        for id in order {
            for t in ops[id].operands + ops[id].updates where c[t].last != id { c[t].append(id) }
        }
        return c
    }
}
