import Foundation

/// The model as the run side sees it: tensors and ops in execution order, with their attributes.
///
/// Written by `kvplan compile` as `program.json` next to plan.json (Docs/runtime.md). It is the
/// checked IR of the compile side, flattened to plain data, so that the runtime and its reference
/// interpreter never link the graph language: tensor and op indices are positions in these arrays.
public struct ModelProgram: Codable, Sendable, Equatable {
    /// The schema version this build reads and writes.
    public static let currentVersion = 1

    /// One tensor: its name as in the source, kind, element type and concrete shape.
    public struct Tensor: Codable, Sendable, Equatable {
        public var name: String
        /// `input`, `weight`, `cache`, `activation` or `output`.
        public var kind: String
        /// `f32`, `f16`, `bf16`, `i32`, `i8`, `i4`, ….
        public var dtype: String
        public var shape: [Int]
        /// True for a weight whose checkpoint holds the transpose of `shape` (a GPT-2 Conv1D
        /// matrix quantised by `--weight-dtype`); the runtime transposes it at load. Absent
        /// from program.json when false.
        public var storedTransposed: Bool?
        public init(name: String, kind: String, dtype: String, shape: [Int], storedTransposed: Bool? = nil) {
            self.name = name
            self.kind = kind
            self.dtype = dtype
            self.shape = shape
            self.storedTransposed = storedTransposed
        }
        /// The shape the checkpoint stores this tensor in (`shape`, reversed when stored transposed).
        public var checkpointShape: [Int] { storedTransposed == true ? shape.reversed() : shape }
        /// Elements (the product of the shape).
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// One op: its kind (`matmul`, `rope`, …), operand/result/updated tensor indices, attributes.
    public struct Op: Codable, Sendable, Equatable {
        public var name: String
        public var kind: String
        public var operands: [Int]
        public var results: [Int]
        /// Caches the op appends to (decode attention: keys, then values).
        public var updates: [Int]
        public var attributes: [String: Attribute]
        public init(name: String, kind: String, operands: [Int], results: [Int], updates: [Int], attributes: [String: Attribute]) {
            self.name = name
            self.kind = kind
            self.operands = operands
            self.results = results
            self.updates = updates
            self.attributes = attributes
        }
        /// An integer attribute, if present.
        public func int(_ key: String) -> Int? { if case let .int(v)? = attributes[key] { v } else { nil } }
        /// A number attribute (integers widen), if present.
        public func double(_ key: String) -> Double? {
            switch attributes[key] {
            case let .float(v)?: v
            case let .int(v)?: Double(v)
            default: nil
            }
        }
        /// A string attribute, if present.
        public func string(_ key: String) -> String? { if case let .string(v)? = attributes[key] { v } else { nil } }
        /// A boolean attribute, if present.
        public func bool(_ key: String) -> Bool? { if case let .bool(v)? = attributes[key] { v } else { nil } }
    }

    /// An attribute value, encoded with its type as the key (`{"int": 8}`) so numbers round-trip.
    public enum Attribute: Codable, Sendable, Equatable {
        case int(Int)
        case float(Double)
        case string(String)
        case bool(Bool)
        case ints([Int])

        private enum Key: String, CodingKey { case int, float, string, bool, ints }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            guard let key = c.allKeys.first, c.allKeys.count == 1 else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "an attribute is one of {\"int\"|\"float\"|\"string\"|\"bool\"|\"ints\": value}"))
            }
            switch key {
            case .int: self = .int(try c.decode(Int.self, forKey: key))
            case .float: self = .float(try c.decode(Double.self, forKey: key))
            case .string: self = .string(try c.decode(String.self, forKey: key))
            case .bool: self = .bool(try c.decode(Bool.self, forKey: key))
            case .ints: self = .ints(try c.decode([Int].self, forKey: key))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            switch self {
            case let .int(v): try c.encode(v, forKey: .int)
            case let .float(v): try c.encode(v, forKey: .float)
            case let .string(v): try c.encode(v, forKey: .string)
            case let .bool(v): try c.encode(v, forKey: .bool)
            case let .ints(v): try c.encode(v, forKey: .ints)
            }
        }
    }

    public var version: Int
    public var model: String
    /// Bound symbolic dimensions (`batch`, `ctx`, …).
    public var dimensions: [String: Int]
    public var tensors: [Tensor]
    /// Ops in execution order.
    public var ops: [Op]

    public init(version: Int = ModelProgram.currentVersion, model: String, dimensions: [String: Int], tensors: [Tensor], ops: [Op]) {
        self.version = version
        self.model = model
        self.dimensions = dimensions
        self.tensors = tensors
        self.ops = ops
    }

    /// Deterministic JSON (sorted keys, pretty-printed).
    public func encoded() throws -> Data {
        try ArtifactJSON.encode(self)
    }

    /// Index checks: every tensor index in range, shapes non-negative, the version known.
    public func validate() throws(ArtifactError) {
        guard version == Self.currentVersion else { throw ArtifactError("program.json: version \(version), this build reads \(Self.currentVersion)") }
        for (i, t) in tensors.enumerated() where t.shape.contains(where: { $0 < 0 }) {
            throw ArtifactError("program.json: tensors[\(i)] '\(t.name)' has a negative extent")
        }
        for (i, t) in tensors.enumerated() where t.storedTransposed == true && (t.kind != "weight" || t.shape.count != 2) {
            throw ArtifactError("program.json: tensors[\(i)] '\(t.name)' (\(t.kind) \(t.shape)) is storedTransposed; only 2-D weights are")
        }
        for (i, op) in ops.enumerated() {
            for index in op.operands + op.results + op.updates where !tensors.indices.contains(index) {
                throw ArtifactError("program.json: ops[\(i)] '\(op.name)' refers to tensor \(index); there are \(tensors.count)")
            }
        }
    }
}

/// An artifact file that cannot be used, with where.
public struct ArtifactError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
