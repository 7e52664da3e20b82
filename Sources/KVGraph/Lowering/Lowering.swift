// Lowering: AST → checked IR.
//
// What it solves: .graph files are declarative — a tensor may be used before
// the line that computes it, and `for` blocks stamp out per-layer tensors —
// while the IR needs concrete shapes and an order in which every operand
// exists before it is read.
//
// How, in four steps, each reporting every error it can before giving up:
//   1. expand: evaluate `let`/`dim` constants in order, unroll loops, give
//      every definition its full name (`x[3]`; a plain name defined inside a
//      loop body is local to the iteration and named `h[3]`);
//   2. name table: one definition per name (redefinitions reported with a
//      note at the first one);
//   3. order: dependencies between definitions, a topological order that
//      keeps source order where data flow allows (Kahn's algorithm with a
//      heap keyed by source position), and every dependency cycle reported
//      with the path;
//   4. build: in that order, lower op calls (nested calls become unnamed
//      intermediates), run shape inference, create tensors and ops.
// Errors in one definition poison only the tensors that depend on it, so
// independent mistakes are all reported in one run.
//
// Bounds: expansion is capped at `maximumDefinitions` so hostile loop bounds
// end in an error, not in exhausted memory.

import HeapModule

/// The result of lowering: the graph and the warnings found on the way.
public struct LoweredGraph: Sendable {
    /// The checked IR.
    public var graph: Graph
    /// Non-fatal findings (unused tensors and constants).
    public var warnings: [Diagnostic]
}

/// Compiles .graph source to IR.
public enum GraphCompiler {
    /// Most definitions (after loop expansion) a file may produce.
    public static let maximumDefinitions = 200_000

    /// Parses and lowers `file`, binding symbolic dimensions to `dimensions` (others keep their defaults).
    public static func compile(_ file: SourceFile, name: String? = nil,
                               dimensions: [String: Int] = [:]) throws(DiagnosticError) -> LoweredGraph {
        var parser = Parser(file.text)
        let statements = parser.parseFile()
        var bag = parser.diagnostics
        if bag.hasErrors { throw DiagnosticError(file: file, diagnostics: bag.sorted) }
        var lowering = Lowering(overrides: dimensions)
        let graphName = name ?? defaultName(for: file.path)
        let graph = lowering.run(statements, name: graphName)
        bag.append(contentsOf: lowering.bag)
        if bag.hasErrors { throw DiagnosticError(file: file, diagnostics: bag.sorted.filter { $0.severity == .error }) }
        return LoweredGraph(graph: graph, warnings: bag.sorted)
    }

    /// The names of the symbolic dimensions `file` declares at top level (empty if it does not parse).
    public static func declaredDimensions(_ file: SourceFile) -> [String] {
        var parser = Parser(file.text)
        return parser.parseFile().compactMap {
            if case let .dimension(name, _, _) = $0 { return name }
            return nil
        }
    }

    static func defaultName(for path: String) -> String {
        var base = path.split(separator: "/").last.map(String.init) ?? path
        if base.hasSuffix(".graph") { base.removeLast(6) }
        return base
    }
}

/// A constant's value.
enum ConstantValue: Sendable {
    case int(Int)
    case float(Double)
}

/// A constant binding in scope.
struct Constant: Sendable {
    var value: ConstantValue
    var location: SourceLocation
    var isDimension: Bool
}

/// A lexical scope: constants, iteration-local tensor names, loop indices.
final class Scope: @unchecked Sendable {
    let parent: Scope?
    var constants: [String: Constant] = [:]
    /// Plain names defined in this loop body → their full IR name for this iteration.
    var locals: [String: String] = [:]
    /// The loop indices of this and enclosing iterations, outermost first.
    let indexSuffix: String

    init(parent: Scope?, indexSuffix: String = "") {
        self.parent = parent
        self.indexSuffix = indexSuffix
    }

    func constant(_ name: String) -> Constant? { constants[name] ?? parent?.constant(name) }
    func local(_ name: String) -> String? { locals[name] ?? parent?.local(name) }
}

/// A declared tensor after expansion.
struct Declared {
    var name: String
    var kind: DeclarationKind
    var type: TypeExpr
    var scope: Scope
    var location: SourceLocation
}

/// An assignment after expansion.
struct Assigned {
    var names: [String]
    var targetLocations: [SourceLocation]
    var value: Expr
    var isOutput: Bool
    var declaredType: TypeExpr?
    var scope: Scope
    var location: SourceLocation
    /// Source position order (for stable topological order).
    var sequence: Int
}

struct Lowering {
    let overrides: [String: Int]
    var bag = DiagnosticBag()
    var declared: [Declared] = []
    var assigned: [Assigned] = []
    var dimensionOrder: [(String, Int)] = []
    var usedConstants: Set<String> = []
    var constantSites: [(String, SourceLocation)] = []
    var definitionCount = 0
    /// `output name` statements: the tensor's full name, where the name is.
    var outputMarks: [(String, SourceLocation, SourceLocation)] = []
    var tooMany = false

    // Build state.
    var tensors: [Tensor] = []
    var ops: [Op] = []
    var tensorByName: [String: TensorID] = [:]
    /// Names whose definition failed: references to them are silently poisoned.
    var poisoned: Set<String> = []
    /// Names bound by assignments (never taken by generated intermediates).
    var reservedNames: Set<String> = []

    init(overrides: [String: Int]) { self.overrides = overrides }

    mutating func run(_ statements: [Statement], name: String) -> Graph {
        let root = Scope(parent: nil)
        expand(statements, in: root, isTopLevel: true)
        if tooMany { return Graph(name: name, dimensions: dimensionOrder.map { ($0.0, $0.1) }, tensors: [], ops: [], order: []) }
        reservedNames = Set(assigned.flatMap(\.names))
        let definers = buildNameTable()
        let order = sortDefinitions(definers)
        for d in declared { declare(d) }
        for i in order { build(assigned[i]) }
        markOutputs()
        warnUnused()
        return Graph(name: name, dimensions: dimensionOrder.map { ($0.0, $0.1) }, tensors: tensors, ops: ops,
                     order: Array(ops.indices))
    }

    // MARK: - 1. Expansion

    mutating func countDefinition(_ location: SourceLocation) -> Bool {
        definitionCount += 1
        if definitionCount > GraphCompiler.maximumDefinitions {
            if !tooMany { bag.error(location, "the graph expands to more than \(GraphCompiler.maximumDefinitions) definitions; check the loop bounds") }
            tooMany = true
            return false
        }
        return true
    }

    mutating func expand(_ statements: [Statement], in scope: Scope, isTopLevel: Bool) {
        // Plain names defined directly in a loop body are local to each iteration.
        if !isTopLevel {
            for s in statements {
                switch s {
                case let .declaration(_, t, _, _) where t.indices.isEmpty:
                    scope.locals[t.name] = t.name + scope.indexSuffix
                case let .assignment(targets, _, _, _, _):
                    for t in targets where t.indices.isEmpty { scope.locals[t.name] = t.name + scope.indexSuffix }
                default: break
                }
            }
        }
        for s in statements {
            if tooMany { return }
            switch s {
            case let .letConstant(name, value, loc):
                defineConstant(name, value, loc, scope: scope, isDimension: false)
            case let .dimension(name, value, loc):
                guard isTopLevel else {
                    bag.error(loc, "symbolic dimensions are declared at top level, not inside a loop")
                    continue
                }
                defineConstant(name, value, loc, scope: scope, isDimension: true)
            case let .declaration(kind, target, type, loc):
                guard countDefinition(loc), let name = fullName(target, scope) else { continue }
                declared.append(Declared(name: name, kind: kind, type: type, scope: scope, location: target.location))
            case let .assignment(targets, value, isOutput, declaredType, loc):
                guard countDefinition(loc) else { continue }
                var names: [String] = []
                for t in targets {
                    guard let n = fullName(t, scope) else { break }
                    names.append(n)
                }
                guard names.count == targets.count else { continue }
                assigned.append(Assigned(names: names, targetLocations: targets.map(\.location), value: value,
                                         isOutput: isOutput, declaredType: declaredType, scope: scope,
                                         location: loc, sequence: assigned.count))
            case let .outputMark(target, loc):
                guard let name = fullName(target, scope) else { continue }
                outputMarks.append((name, target.location, loc))
            case let .loop(variable, lower, upper, body, loc):
                guard let lo = evaluateInt(lower, scope, what: "loop bound"),
                      let hi = evaluateInt(upper, scope, what: "loop bound") else { continue }
                if scope.constant(variable) != nil {
                    bag.error(loc, "loop variable '\(variable)' shadows a constant of the same name")
                    continue
                }
                if hi > lo, hi - lo > GraphCompiler.maximumDefinitions {
                    bag.error(upper.location, "loop runs \(hi - lo) times; at most \(GraphCompiler.maximumDefinitions) are allowed")
                    tooMany = true
                    return
                }
                if hi <= lo {
                    bag.warning(loc, "loop '\(variable) in \(lo)..<\(hi)' runs zero times")
                    continue
                }
                for i in lo..<hi {
                    let inner = Scope(parent: scope, indexSuffix: scope.indexSuffix + "[\(i)]")
                    inner.constants[variable] = Constant(value: .int(i), location: loc, isDimension: false)
                    usedConstants.insert(variable)
                    expand(body, in: inner, isTopLevel: false)
                    if tooMany { return }
                }
            }
        }
    }

    mutating func defineConstant(_ name: String, _ value: Expr, _ loc: SourceLocation, scope: Scope, isDimension: Bool) {
        if let previous = scope.constant(name) {
            bag.error(loc, "'\(name)' is already defined", notes: [.note(previous.location, "'\(name)' was defined here")])
            return
        }
        guard var v = evaluate(value, scope, what: isDimension ? "dimension" : "constant") else {
            // Keep going with a placeholder so later uses do not cascade.
            scope.constants[name] = Constant(value: .int(1), location: loc, isDimension: isDimension)
            usedConstants.insert(name)
            return
        }
        if isDimension {
            guard case let .int(d) = v else {
                bag.error(value.location, "dimension '\(name)' must be an integer")
                return
            }
            if let o = overrides[name] { v = .int(o) }
            guard case let .int(bound) = v, bound >= 1 else {
                bag.error(value.location, "dimension '\(name)' must be at least 1, got \(d)")
                scope.constants[name] = Constant(value: .int(1), location: loc, isDimension: true)
                return
            }
            dimensionOrder.append((name, bound))
        }
        scope.constants[name] = Constant(value: v, location: loc, isDimension: isDimension)
        constantSites.append((name, loc))
    }

    mutating func fullName(_ t: BindingTarget, _ scope: Scope) -> String? {
        if scope.constant(t.name) != nil {
            bag.error(t.location, "'\(t.name)' is a constant; tensors need their own names")
            return nil
        }
        if t.indices.isEmpty { return scope.local(t.name) ?? t.name }
        var name = t.name
        for e in t.indices {
            guard let i = evaluateInt(e, scope, what: "index") else { return nil }
            name += "[\(i)]"
        }
        return name
    }

    // MARK: Constant evaluation

    mutating func evaluateInt(_ e: Expr, _ scope: Scope, what: String) -> Int? {
        guard let v = evaluate(e, scope, what: what) else { return nil }
        guard case let .int(i) = v else {
            bag.error(e.location, "\(what) must be an integer, got a number with a fraction")
            return nil
        }
        return i
    }

    mutating func evaluate(_ e: Expr, _ scope: Scope, what: String) -> ConstantValue? {
        switch e {
        case let .integer(v, _): return .int(v)
        case let .float(v, _): return .float(v)
        case let .name(n, indices, loc):
            guard indices.isEmpty, let c = scope.constant(n) else {
                if indices.isEmpty {
                    bag.error(loc, "undefined constant '\(n)'" + (scope.local(n) != nil || !indices.isEmpty ? " ('\(n)' is a tensor; \(what)s are integers)" : ""))
                } else {
                    bag.error(loc, "'\(n)[...]' is a tensor; \(what)s are integers")
                }
                return nil
            }
            usedConstants.insert(n)
            return c.value
        case let .negate(inner, loc):
            guard let v = evaluate(inner, scope, what: what) else { return nil }
            switch v {
            case let .int(i):
                guard i != Int.min else { bag.error(loc, "integer overflow"); return nil }
                return .int(-i)
            case let .float(d): return .float(-d)
            }
        case let .binary(op, l, r, loc):
            guard let a = evaluate(l, scope, what: what), let b = evaluate(r, scope, what: what) else { return nil }
            return arithmetic(op, a, b, loc)
        case let .call(f, args, loc) where f == "min" || f == "max":
            guard !args.isEmpty, args.allSatisfy({ $0.label == nil }) else {
                bag.error(loc, "'\(f)' takes one or more integer arguments")
                return nil
            }
            var values: [Int] = []
            for a in args {
                guard let v = evaluateInt(a.value, scope, what: what) else { return nil }
                values.append(v)
            }
            return .int(f == "min" ? values.min()! : values.max()!)
        case let .call(f, _, loc):
            bag.error(loc, OpKind.forCallName(f) != nil ? "op '\(f)' computes a tensor; a \(what) must be an integer" : "unknown function '\(f)' (integer expressions may use min and max)")
            return nil
        case let .string(_, loc), let .bool(_, loc), let .list(_, loc):
            bag.error(loc, "a \(what) must be an integer expression")
            return nil
        case let .type(t):
            bag.error(t.location, "a \(what) must be an integer expression, not a tensor type")
            return nil
        }
    }

    mutating func arithmetic(_ op: BinaryOperator, _ a: ConstantValue, _ b: ConstantValue, _ loc: SourceLocation) -> ConstantValue? {
        switch (a, b) {
        case let (.int(x), .int(y)):
            let r: (Int, Bool)
            switch op {
            case .add: r = x.addingReportingOverflow(y)
            case .subtract: r = x.subtractingReportingOverflow(y)
            case .multiply: r = x.multipliedReportingOverflow(by: y)
            case .divide:
                guard y != 0 else { bag.error(loc, "division by zero"); return nil }
                guard !(x == Int.min && y == -1) else { bag.error(loc, "integer overflow"); return nil }
                guard x % y == 0 else {
                    bag.error(loc, "integer division \(x) / \(y) is not exact")
                    return nil
                }
                r = (x / y, false)
            }
            if r.1 { bag.error(loc, "integer overflow in \(x) \(op.rawValue) \(y)"); return nil }
            return .int(r.0)
        default:
            let x: Double, y: Double
            switch a { case let .int(i): x = Double(i); case let .float(d): x = d }
            switch b { case let .int(i): y = Double(i); case let .float(d): y = d }
            let r: Double
            switch op {
            case .add: r = x + y
            case .subtract: r = x - y
            case .multiply: r = x * y
            case .divide:
                guard y != 0 else { bag.error(loc, "division by zero"); return nil }
                r = x / y
            }
            guard r.isFinite else { bag.error(loc, "number out of range"); return nil }
            return .float(r)
        }
    }

    // MARK: - 2. Name table

    enum Definer { case declaration(Int), assignment(Int, slot: Int) }

    mutating func buildNameTable() -> [String: Definer] {
        var table: [String: (Definer, SourceLocation)] = [:]
        func add(_ name: String, _ d: Definer, _ loc: SourceLocation, _ bag: inout DiagnosticBag) {
            if let (_, first) = table[name] {
                bag.error(loc, "redefinition of '\(name)'", notes: [.note(first, "'\(name)' was first defined here")])
            } else {
                table[name] = (d, loc)
            }
        }
        for (i, d) in declared.enumerated() { add(d.name, .declaration(i), d.location, &bag) }
        for (i, a) in assigned.enumerated() {
            for (slot, n) in a.names.enumerated() { add(n, .assignment(i, slot: slot), a.targetLocations[slot], &bag) }
        }
        return table.mapValues(\.0)
    }

    // MARK: - 3. Order

    /// Tensor names an expression refers to, resolved in `scope` (nil entries for names that fail to resolve).
    mutating func references(_ e: Expr, _ scope: Scope, into out: inout [(String, SourceLocation)]) {
        switch e {
        case let .name(n, indices, loc):
            if indices.isEmpty, scope.constant(n) != nil { return }
            var name = indices.isEmpty ? (scope.local(n) ?? n) : n
            for i in indices {
                guard let v = evaluateInt(i, scope, what: "index") else { return }
                name += "[\(v)]"
            }
            out.append((name, loc))
        case let .call(f, args, _):
            if f == "min" || f == "max" { return }
            for a in args { references(a.value, scope, into: &out) }
        case let .list(items, _):
            for i in items { references(i, scope, into: &out) }
        case .binary, .negate, .integer, .float, .string, .bool, .type:
            return
        }
    }

    mutating func sortDefinitions(_ table: [String: Definer]) -> [Int] {
        let n = assigned.count
        var deps = [[Int]](repeating: [], count: n)
        var dependents = [[Int]](repeating: [], count: n)
        var broken = [Bool](repeating: false, count: n)
        for i in 0..<n {
            var refs: [(String, SourceLocation)] = []
            references(assigned[i].value, assigned[i].scope, into: &refs)
            for (name, loc) in refs {
                switch table[name] {
                case nil:
                    bag.error(loc, "undefined tensor '\(name)'" + hint(for: name, table))
                    broken[i] = true
                case .declaration?: break
                case let .assignment(j, _)?:
                    if !deps[i].contains(j) {
                        deps[i].append(j)
                        dependents[j].append(i)
                    }
                }
            }
            if broken[i] { poisoned.formUnion(assigned[i].names) }
        }
        // Kahn's algorithm, always taking the ready definition that comes first in the source.
        var remaining = deps.map(\.count)
        var ready = Heap<Int>((0..<n).filter { remaining[$0] == 0 })
        var order: [Int] = []
        order.reserveCapacity(n)
        while let i = ready.popMin() {
            order.append(i)
            for j in dependents[i] {
                remaining[j] -= 1
                if remaining[j] == 0 { ready.insert(j) }
            }
        }
        if order.count < n { reportCycles(deps: deps, remaining: remaining) }
        return order
    }

    func hint(for name: String, _ table: [String: Definer]) -> String {
        guard let open = name.firstIndex(of: "[") else { return "" }
        let base = name[..<open]
        let siblings = table.keys.filter { $0.hasPrefix(base + "[") }.sorted()
        guard let first = siblings.first else { return "" }
        return " (\(siblings.count) tensor\(siblings.count == 1 ? "" : "s") named '\(base)[...]' exist, e.g. '\(first)')"
    }

    mutating func reportCycles(deps: [[Int]], remaining: [Int]) {
        let inCycleSet = Set((0..<assigned.count).filter { remaining[$0] > 0 })
        var reported = Set<Int>()
        for start in inCycleSet.sorted() where !reported.contains(start) {
            // Walk dependencies that are still blocked until a node repeats.
            var path: [Int] = []
            var position: [Int: Int] = [:]
            var node = start
            while position[node] == nil {
                position[node] = path.count
                path.append(node)
                guard let next = deps[node].filter({ inCycleSet.contains($0) }).min() else { break }
                node = next
            }
            guard let p = position[node] else { continue }
            let cycle = Array(path[p...])
            if cycle.contains(where: reported.contains) { continue }
            reported.formUnion(cycle)
            let names = cycle.map { assigned[$0].names[0] } + [assigned[cycle[0]].names[0]]
            let notes = cycle.dropFirst().map { Diagnostic.note(assigned[$0].location, "'\(assigned[$0].names[0])' is defined here") }
            let first = cycle.min()!
            bag.error(assigned[first].location, "dependency cycle: " + names.joined(separator: " -> "), notes: notes)
        }
        for i in inCycleSet { poisoned.formUnion(assigned[i].names) }
    }

    // MARK: - 4. Build

    mutating func evaluateType(_ t: TypeExpr, _ scope: Scope) -> Shape? {
        var shape: Shape = []
        for d in t.dims {
            guard let v = evaluateInt(d, scope, what: "dimension") else { return nil }
            guard v >= 1 else {
                bag.error(d.location, "dimension must be at least 1, got \(v)")
                return nil
            }
            var symbol: String?
            if case let .name(n, idx, _) = d, idx.isEmpty, let c = scope.constant(n), c.isDimension { symbol = n }
            shape.append(Dim(v, symbol: symbol))
        }
        guard let n = checkedProduct(shape.sizes), t.dtype.bytes(forElements: n) != nil else {
            bag.error(t.location, "tensor of shape \(describe(shape)) is too large")
            return nil
        }
        return shape
    }

    mutating func declare(_ d: Declared) {
        guard let shape = evaluateType(d.type, d.scope) else { poisoned.insert(d.name); return }
        if d.kind == .cache {
            guard shape.count == 4 else {
                bag.error(d.type.location, "a cache has shape [batch, max_len, kv_heads, head_dim]; '\(d.name)' has rank \(shape.count)")
                poisoned.insert(d.name)
                return
            }
        }
        let kind: TensorKind = d.kind == .input ? .input : (d.kind == .weight ? .weight : .cache)
        addTensor(d.name, shape, d.type.dtype, kind, d.location)
    }

    @discardableResult
    mutating func addTensor(_ name: String, _ shape: Shape, _ dtype: DType, _ kind: TensorKind, _ loc: SourceLocation) -> TensorID {
        let id = tensors.count
        tensors.append(Tensor(id: id, name: name, shape: shape, dtype: dtype, kind: kind, location: loc))
        tensorByName[name] = id
        return id
    }

    mutating func uniqueName(_ base: String) -> String {
        if tensorByName[base] == nil && !poisoned.contains(base) && !reservedNames.contains(base) { return base }
        var k = 2
        while tensorByName["\(base)\(k)"] != nil || reservedNames.contains("\(base)\(k)") { k += 1 }
        return "\(base)\(k)"
    }


    mutating func build(_ a: Assigned) {
        if a.names.contains(where: poisoned.contains) { return }
        guard case let .call(f, args, loc) = a.value else {
            // `y = x` or `y = x[l]`: an alias is not an op; say what to write instead.
            if case .name = a.value {
                bag.error(a.value.location, "a definition must call an op; to rename a tensor, use it directly (or 'reshape' it)")
            } else {
                bag.error(a.value.location, "a tensor definition must be an op call such as 'matmul(x, w)'")
            }
            poisoned.formUnion(a.names)
            return
        }
        var counter = 0
        guard let results = lowerCall(f, args, loc, scope: a.scope, resultNames: a.names, isOutput: a.isOutput,
                                      owner: a.names[0], counter: &counter) else {
            poisoned.formUnion(a.names)
            return
        }
        if results.count != a.names.count {
            bag.error(a.location, "'\(f)' produces \(results.count) result\(results.count == 1 ? "" : "s"), but \(a.names.count) name\(a.names.count == 1 ? " is" : "s are") bound")
            return
        }
        if let declaredType = a.declaredType, let shape = evaluateType(declaredType, a.scope) {
            let t = tensors[results[0]]
            if t.dtype != declaredType.dtype || t.shape.sizes != shape.sizes {
                bag.error(declaredType.location, "output '\(a.names[0])' is declared \(declaredType.dtype.rawValue)\(describe(shape)) but computes \(t.dtype.rawValue)\(describe(t.shape))")
            }
        }
    }

    /// Lowers a call; returns its result tensors, or nil after reporting (or when an operand is poisoned).
    mutating func lowerCall(_ f: String, _ args: [CallArgument], _ loc: SourceLocation, scope: Scope,
                            resultNames: [String]?, isOutput: Bool, owner: String, counter: inout Int) -> [TensorID]? {
        guard let kind = OpKind.forCallName(f) else {
            let suggestion = f == "min" || f == "max" ? " ('\(f)' works on integers only)" : ""
            bag.error(loc, "unknown op '\(f)'\(suggestion); ops are: \(OpKind.callNames.joined(separator: ", "))")
            return nil
        }
        var operands: [OperandInfo] = []
        var attributes: [(String, AttributeArgument)] = []
        var failed = false
        for arg in args {
            if let label = arg.label {
                if let v = lowerAttribute(label, arg.value, scope: scope, owner: owner, counter: &counter) {
                    // Constant attributes are reported at `name=`; tensor attributes at the tensor.
                    switch v {
                    case let .value(value, _): attributes.append((label, .value(value, arg.location)))
                    case let .dims(d, _): attributes.append((label, .dims(d, arg.location)))
                    case let .tensorTypes(t, _): attributes.append((label, .tensorTypes(t, arg.location)))
                    case .tensor: attributes.append((label, v))
                    }
                } else { failed = true }
            } else {
                if let t = lowerTensor(arg.value, scope: scope, owner: owner, counter: &counter) {
                    let info = tensors[t]
                    operands.append(OperandInfo(id: t, name: info.name, shape: info.shape, dtype: info.dtype,
                                                kind: info.kind, location: arg.location))
                } else { failed = true }
            }
        }
        if failed { return nil }
        let inferred: InferredOp
        do {
            inferred = try ShapeInference.infer(OpCall(kind: kind, callName: f, location: loc, operands: operands, attributes: attributes))
        } catch {
            bag.error(error.location, error.message)
            return nil
        }
        var results: [TensorID] = []
        for (i, (shape, dtype)) in inferred.results.enumerated() {
            let name: String
            if let names = resultNames, i < names.count { name = names[i] }
            else {
                counter += 1
                name = uniqueName("\(owner).\(f)")
            }
            let kind: TensorKind = isOutput && resultNames != nil ? .output : .activation
            results.append(addTensor(name, shape, dtype, kind, loc))
        }
        let bytes = inferred.operands.reduce(0) { $0 &+ tensors[$1.id].byteSize }
            &+ results.reduce(0) { $0 &+ tensors[$1].byteSize } &+ inferred.appendedBytes
        ops.append(Op(id: ops.count, kind: kind, operands: inferred.operands.map(\.id), results: results,
                      updates: inferred.updates.map(\.id), attributes: inferred.attributes, flops: inferred.flops,
                      bytesTouched: bytes, location: loc))
        return results
    }

    mutating func lowerTensor(_ e: Expr, scope: Scope, owner: String, counter: inout Int) -> TensorID? {
        switch e {
        case let .name(n, indices, loc):
            if indices.isEmpty, scope.constant(n) != nil {
                bag.error(loc, "'\(n)' is a constant, but an operand must be a tensor")
                return nil
            }
            var name = indices.isEmpty ? (scope.local(n) ?? n) : n
            for i in indices {
                guard let v = evaluateInt(i, scope, what: "index") else { return nil }
                name += "[\(v)]"
            }
            // Undefined names were reported while ordering; poisoned ones stay silent.
            return tensorByName[name]
        case let .call(f, args, loc):
            if f == "min" || f == "max" {
                bag.error(loc, "'\(f)' computes an integer, but an operand must be a tensor")
                return nil
            }
            guard let r = lowerCall(f, args, loc, scope: scope, resultNames: nil, isOutput: false, owner: owner, counter: &counter) else { return nil }
            guard r.count == 1 else {
                bag.error(loc, "'\(f)' produces \(r.count) results; bind them to names to use them")
                return nil
            }
            return r[0]
        default:
            bag.error(e.location, "expected a tensor operand here (a name or an op call); attributes are written name=value")
            return nil
        }
    }

    mutating func lowerAttribute(_ label: String, _ e: Expr, scope: Scope, owner: String, counter: inout Int) -> AttributeArgument? {
        switch e {
        case let .string(s, loc): return .value(.string(s), loc)
        case let .bool(b, loc): return .value(.bool(b), loc)
        case let .type(t):
            guard let shape = evaluateType(t, scope) else { return nil }
            return .tensorTypes([(t.dtype, shape)], t.location)
        case let .list(items, loc):
            if items.contains(where: { if case .type = $0 { return true }; return false }) {
                var types: [(DType, Shape)] = []
                for item in items {
                    guard case let .type(t) = item else {
                        bag.error(item.location, "a list of result types must contain only types")
                        return nil
                    }
                    guard let shape = evaluateType(t, scope) else { return nil }
                    types.append((t.dtype, shape))
                }
                return .tensorTypes(types, loc)
            }
            var dims: [Dim] = []
            for item in items {
                guard let v = evaluateInt(item, scope, what: "list element") else { return nil }
                var symbol: String?
                if case let .name(n, idx, _) = item, idx.isEmpty, let c = scope.constant(n), c.isDimension { symbol = n }
                dims.append(Dim(v, symbol: symbol))
            }
            return .dims(dims, loc)
        case let .name(n, indices, _) where indices.isEmpty && scope.constant(n) != nil:
            guard let v = evaluate(e, scope, what: "attribute") else { return nil }
            switch v {
            case let .int(i): return .value(.int(i), e.location)
            case let .float(d): return .value(.float(d), e.location)
            }
        case .name, .call where isTensorCall(e):
            guard let t = lowerTensor(e, scope: scope, owner: owner, counter: &counter) else { return nil }
            let info = tensors[t]
            return .tensor(OperandInfo(id: t, name: info.name, shape: info.shape, dtype: info.dtype, kind: info.kind, location: e.location))
        default:
            guard let v = evaluate(e, scope, what: "attribute") else { return nil }
            switch v {
            case let .int(i): return .value(.int(i), e.location)
            case let .float(d): return .value(.float(d), e.location)
            }
        }
    }

    func isTensorCall(_ e: Expr) -> Bool {
        if case let .call(f, _, _) = e { return OpKind.forCallName(f) != nil }
        return false
    }

    mutating func markOutputs() {
        var marked: [String: SourceLocation] = [:]
        for (name, loc, _) in outputMarks {
            if let first = marked[name] {
                bag.error(loc, "'\(name)' is already marked as an output", notes: [.note(first, "marked here")])
                continue
            }
            marked[name] = loc
            guard let id = tensorByName[name] else {
                if !poisoned.contains(name) { bag.error(loc, "undefined tensor '\(name)'") }
                continue
            }
            switch tensors[id].kind {
            case .activation: tensors[id].kind = .output
            case .output: bag.error(loc, "'\(name)' is already an output")
            case .input, .weight, .cache:
                bag.error(loc, "only computed tensors can be outputs; '\(name)' is \(tensors[id].kind == .input ? "an" : "a") \(tensors[id].kind.rawValue)")
            }
        }
    }

    // MARK: Warnings

    mutating func warnUnused() {
        var consumed = Set<TensorID>()
        for op in ops { consumed.formUnion(op.operands) }
        for t in tensors where !consumed.contains(t.id) {
            switch t.kind {
            case .output: continue
            case .activation:
                bag.warning(t.location, "result '\(t.name)' is never used")
            case .input, .weight, .cache:
                bag.warning(t.location, "\(t.kind.rawValue) '\(t.name)' is never used")
            }
        }
        for (name, loc) in constantSites where !usedConstants.contains(name) {
            bag.warning(loc, "constant '\(name)' is never used")
        }
    }
}
