/// The syntax tree of a .graph file, as written (before loops are expanded).

/// A binary integer operator.
public enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/"
}

/// An expression: integer arithmetic, a tensor reference, an op call, a list or a type.
public indirect enum Expr: Sendable {
    /// An integer literal.
    case integer(Int, SourceLocation)
    /// A floating-point literal.
    case float(Double, SourceLocation)
    /// A string literal.
    case string(String, SourceLocation)
    /// `true` or `false`.
    case bool(Bool, SourceLocation)
    /// A name, optionally indexed: `d_model`, `wq[l]`, `x[l + 1]`.
    case name(String, indices: [Expr], SourceLocation)
    /// An op call or a built-in function: `matmul(x, w, bias=b)`, `min(a, b)`.
    case call(String, arguments: [CallArgument], SourceLocation)
    /// `a + b`, `a - b`, `a * b`, `a / b`.
    case binary(BinaryOperator, Expr, Expr, SourceLocation)
    /// `-a`.
    case negate(Expr, SourceLocation)
    /// `[a, b, c]`.
    case list([Expr], SourceLocation)
    /// A tensor type `f16[batch, d_model]`.
    case type(TypeExpr)

    /// Where the expression starts (for binary expressions, the operator).
    public var location: SourceLocation {
        switch self {
        case let .integer(_, l), let .float(_, l), let .string(_, l), let .bool(_, l),
             let .name(_, _, l), let .call(_, _, l), let .binary(_, _, _, l), let .negate(_, l),
             let .list(_, l):
            return l
        case let .type(t):
            return t.location
        }
    }
}

/// One argument of a call: positional (`label == nil`) or named (`theta=10000.0`).
public struct CallArgument: Sendable {
    /// The attribute name, or nil for a positional operand.
    public var label: String?
    /// The value.
    public var value: Expr
    /// Where the argument starts (the label if any).
    public var location: SourceLocation
}

/// A tensor type: dtype and dimension expressions.
public struct TypeExpr: Sendable {
    /// Element type.
    public var dtype: DType
    /// One integer expression per axis.
    public var dims: [Expr]
    /// Where the dtype name is.
    public var location: SourceLocation
}

/// The left side of a definition: `x`, `x[l + 1]`.
public struct BindingTarget: Sendable {
    /// Base name.
    public var name: String
    /// Index expressions (empty for a plain name).
    public var indices: [Expr]
    /// Where the name is.
    public var location: SourceLocation
}

/// What a declaration declares.
public enum DeclarationKind: String, Sendable {
    case input, weight, cache
}

/// A statement of a .graph file.
public indirect enum Statement: Sendable {
    /// `let name = expr`: an integer (or number) constant.
    case letConstant(name: String, value: Expr, SourceLocation)
    /// `dim name = expr`: a symbolic dimension with its default value.
    case dimension(name: String, defaultValue: Expr, SourceLocation)
    /// `input|weight|cache name[idx]: type`.
    case declaration(DeclarationKind, BindingTarget, TypeExpr, SourceLocation)
    /// `a, b = expr` or `output name[: type] = expr`.
    case assignment(targets: [BindingTarget], value: Expr, isOutput: Bool, declaredType: TypeExpr?, SourceLocation)
    /// `output name`: marks an already computed tensor as an output.
    case outputMark(BindingTarget, SourceLocation)
    /// `for v in lo..<hi { body }`.
    case loop(variable: String, lower: Expr, upper: Expr, body: [Statement], SourceLocation)
}
