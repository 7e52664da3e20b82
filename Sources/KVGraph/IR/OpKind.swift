/// The operators of the IR and their call names in .graph source.
public enum OpKind: String, Sendable, CaseIterable, Codable {
    case embed, matmul, add, mul, rmsnorm, layernorm, rope, attention, softmax
    case silu, gelu, relu
    case siluMul = "silu_mul"
    case conv2d, maxpool, avgpool
    case globalAvgpool = "global_avgpool"
    case concat, reshape, split, opaque

    /// The op a source-level call name lowers to (`linear` is `matmul` with `transpose_b=true`).
    public static func forCallName(_ name: String) -> OpKind? {
        name == "linear" ? .matmul : OpKind(rawValue: name)
    }

    /// Every name accepted in call position, for error messages.
    public static var callNames: [String] { (allCases.map(\.rawValue) + ["linear"]).sorted() }

    /// True for ops the runtime cannot execute (planning-only).
    public var isPlanningOnly: Bool { self == .opaque }
}
