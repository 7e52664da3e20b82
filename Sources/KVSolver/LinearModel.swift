/// A mixed-integer linear program held in Swift: variables, rows, objective.
///
/// The model is plain data; nothing touches GLPK until `MIPSolver.solve`
/// builds a `glp_prob` from it, so models can be built on any thread, copied
/// and inspected in tests.

/// How a variable may take values.
public enum VariableKind: Sendable, Equatable {
    /// Any real value within its bounds.
    case continuous
    /// Any integer value within its bounds.
    case integer
    /// 0 or 1.
    case binary
}

/// A handle to a variable of one `LinearModel` (its column index).
public struct Variable: Hashable, Sendable, CustomStringConvertible {
    /// Zero-based column index in the model that created it.
    public let index: Int
    public var description: String { "v\(index)" }
}

/// A linear expression Σ coefficient·variable + constant.
public struct LinearExpression: Sendable, Equatable {
    /// Terms in insertion order; duplicates are merged when a row is added.
    public var terms: [(Variable, Double)]
    /// The constant part.
    public var constant: Double

    /// An expression from terms and a constant.
    public init(_ terms: [(Variable, Double)] = [], constant: Double = 0) {
        self.terms = terms
        self.constant = constant
    }

    public static func == (a: LinearExpression, b: LinearExpression) -> Bool {
        a.constant == b.constant && a.terms.count == b.terms.count
            && zip(a.terms, b.terms).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}


public func + (a: LinearExpression, b: LinearExpression) -> LinearExpression {
    LinearExpression(a.terms + b.terms, constant: a.constant + b.constant)
}
public func - (a: LinearExpression, b: LinearExpression) -> LinearExpression {
    a + (-1.0) * b
}
public func * (c: Double, e: LinearExpression) -> LinearExpression {
    LinearExpression(e.terms.map { ($0.0, c * $0.1) }, constant: c * e.constant)
}
public func * (c: Double, v: Variable) -> LinearExpression { LinearExpression([(v, c)]) }
public func + (a: Variable, b: Variable) -> LinearExpression { LinearExpression([(a, 1), (b, 1)]) }
public func + (v: Variable, a: LinearExpression) -> LinearExpression { LinearExpression([(v, 1)]) + a }
public func + (a: LinearExpression, v: Variable) -> LinearExpression { a + LinearExpression([(v, 1)]) }
public func - (a: LinearExpression, v: Variable) -> LinearExpression { a + LinearExpression([(v, -1)]) }
public func - (a: Variable, b: Variable) -> LinearExpression { LinearExpression([(a, 1), (b, -1)]) }
public prefix func - (v: Variable) -> LinearExpression { LinearExpression([(v, -1)]) }

/// Relation of a row's expression to its right-hand side.
public enum RowSense: Sendable, Equatable {
    case lessOrEqual, greaterOrEqual, equal
}

/// A constraint `expression (≤ | ≥ | =) rhs`, with the expression's constant moved to the right.
public struct Constraint: Sendable {
    /// The expression on the left.
    public var expression: LinearExpression
    /// The relation.
    public var sense: RowSense
    /// The right-hand side.
    public var rhs: Double
}

public func <= (e: LinearExpression, rhs: Double) -> Constraint { Constraint(expression: e, sense: .lessOrEqual, rhs: rhs) }
public func >= (e: LinearExpression, rhs: Double) -> Constraint { Constraint(expression: e, sense: .greaterOrEqual, rhs: rhs) }
public func == (e: LinearExpression, rhs: Double) -> Constraint { Constraint(expression: e, sense: .equal, rhs: rhs) }
public func <= (e: LinearExpression, f: LinearExpression) -> Constraint { (e - f) <= 0 }
public func >= (e: LinearExpression, f: LinearExpression) -> Constraint { (e - f) >= 0 }

/// Direction of the objective.
public enum ObjectiveSense: Sendable, Equatable {
    case minimize, maximize
}

/// Errors raised while building a model (before any solver call).
public enum ModelError: Error, Equatable, CustomStringConvertible {
    /// A bound pair with lower > upper, or a non-finite coefficient.
    case invalidBounds(variable: String, lower: Double, upper: Double)
    /// A coefficient or right-hand side that is NaN or infinite.
    case nonFiniteCoefficient(row: String)
    /// A variable handle that belongs to no column of this model.
    case unknownVariable(Int)

    public var description: String {
        switch self {
        case let .invalidBounds(v, l, u): return "variable \(v): lower bound \(l) exceeds upper bound \(u)"
        case let .nonFiniteCoefficient(r): return "row \(r): coefficient or right-hand side is not finite"
        case let .unknownVariable(i): return "variable index \(i) does not belong to this model"
        }
    }
}

/// A MIP: columns with bounds and kinds, rows, and a linear objective.
public struct LinearModel: Sendable {
    struct Column: Sendable {
        var name: String
        var lower: Double
        var upper: Double
        var kind: VariableKind
        var objective: Double
    }
    struct Row: Sendable {
        var name: String
        var indices: [Int]
        var coefficients: [Double]
        var sense: RowSense
        var rhs: Double
    }

    /// Model name (shown in GLPK's own messages and LP dumps).
    public var name: String
    /// Minimise or maximise.
    public var sense: ObjectiveSense = .minimize
    /// Constant term of the objective.
    public var objectiveConstant: Double = 0
    private(set) var columns: [Column] = []
    private(set) var rows: [Row] = []

    /// An empty model.
    public init(name: String = "kvplan") { self.name = name }

    /// Number of variables.
    public var variableCount: Int { columns.count }
    /// Number of constraints.
    public var constraintCount: Int { rows.count }
    /// Number of integer or binary variables.
    public var integerCount: Int { columns.filter { $0.kind != .continuous }.count }

    /// Adds a variable; infinite bounds mean unbounded on that side.
    @discardableResult
    public mutating func addVariable(
        _ name: String, lower: Double = 0, upper: Double = .infinity,
        kind: VariableKind = .continuous, objective: Double = 0
    ) throws -> Variable {
        let (lo, up) = kind == .binary ? (max(lower, 0), min(upper, 1)) : (lower, upper)
        guard !lo.isNaN, !up.isNaN, lo <= up, lo != .infinity, up != -.infinity else {
            throw ModelError.invalidBounds(variable: name, lower: lower, upper: upper)
        }
        guard objective.isFinite else { throw ModelError.nonFiniteCoefficient(row: "objective") }
        columns.append(Column(name: name, lower: lo, upper: up, kind: kind, objective: objective))
        return Variable(index: columns.count - 1)
    }

    /// Sets the objective to `expression` (replacing any earlier objective).
    public mutating func setObjective(_ sense: ObjectiveSense, _ expression: LinearExpression) throws {
        self.sense = sense
        for i in columns.indices { columns[i].objective = 0 }
        for (v, c) in expression.terms {
            guard columns.indices.contains(v.index) else { throw ModelError.unknownVariable(v.index) }
            guard c.isFinite else { throw ModelError.nonFiniteCoefficient(row: "objective") }
            columns[v.index].objective += c
        }
        objectiveConstant = expression.constant
    }

    /// Adds a constraint; repeated variables in its expression are summed.
    public mutating func add(_ constraint: Constraint, name: String? = nil) throws {
        let rowName = name ?? "r\(rows.count)"
        var merged: [Int: Double] = [:]
        var order: [Int] = []
        for (v, c) in constraint.expression.terms {
            guard columns.indices.contains(v.index) else { throw ModelError.unknownVariable(v.index) }
            guard c.isFinite else { throw ModelError.nonFiniteCoefficient(row: rowName) }
            if merged[v.index] == nil { order.append(v.index) }
            merged[v.index, default: 0] += c
        }
        let rhs = constraint.rhs - constraint.expression.constant
        guard rhs.isFinite else { throw ModelError.nonFiniteCoefficient(row: rowName) }
        let kept = order.filter { merged[$0]! != 0 }
        rows.append(Row(name: rowName, indices: kept, coefficients: kept.map { merged[$0]! },
                        sense: constraint.sense, rhs: rhs))
    }

    /// The value of `expression` under an assignment of all variables.
    public func evaluate(_ expression: LinearExpression, at values: [Double]) -> Double {
        expression.terms.reduce(expression.constant) { $0 + $1.1 * values[$1.0.index] }
    }

    /// The objective value of an assignment.
    public func objectiveValue(at values: [Double]) -> Double {
        zip(columns, values).reduce(objectiveConstant) { $0 + $1.0.objective * $1.1 }
    }

    /// True when `values` satisfies every bound, integrality and row within `tolerance`.
    public func isFeasible(_ values: [Double], tolerance: Double = 1e-6) -> Bool {
        violations(values, tolerance: tolerance, limit: 1).isEmpty
    }

    /// The names of the columns and rows `values` violates (at most `limit`), for diagnostics.
    public func violations(_ values: [Double], tolerance: Double = 1e-6, limit: Int = .max) -> [String] {
        guard values.count == columns.count else { return ["\(values.count) values for \(columns.count) columns"] }
        var out: [String] = []
        for (c, x) in zip(columns, values) where out.count < limit {
            if x < c.lower - tolerance || x > c.upper + tolerance { out.append("\(c.name) = \(x) outside [\(c.lower), \(c.upper)]") }
            else if c.kind != .continuous, abs(x - x.rounded()) > tolerance { out.append("\(c.name) = \(x) not integral") }
        }
        for r in rows where out.count < limit {
            let lhs = zip(r.indices, r.coefficients).reduce(0.0) { $0 + $1.1 * values[$1.0] }
            let broken = switch r.sense {
            case .lessOrEqual: lhs > r.rhs + tolerance
            case .greaterOrEqual: lhs < r.rhs - tolerance
            case .equal: abs(lhs - r.rhs) > tolerance
            }
            if broken { out.append("\(r.name): \(lhs) vs \(r.rhs)") }
        }
        return out
    }
}
