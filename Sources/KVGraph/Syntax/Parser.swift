// Parser: recursive descent over the token stream into `[Statement]`.
//
// Error recovery is per statement: an error is reported, then tokens are
// skipped to the end of the line (or a closing brace), so one run reports
// every independent syntax error. Nesting depth is capped so hostile input
// cannot overflow the stack.

/// Parses .graph tokens into statements.
public struct Parser {
    private var tokens: [Token]
    private var index = 0
    private var depth = 0
    /// Diagnostics found while parsing (lexical ones included).
    public private(set) var diagnostics = DiagnosticBag()

    /// Deepest nesting of expressions and blocks accepted.
    public static let maximumDepth = 128

    private struct Failure: Error {}

    /// A parser over `source`; lexes it immediately.
    public init(_ source: String) {
        var lexer = Lexer(source)
        tokens = lexer.tokenize()
        diagnostics.append(contentsOf: lexer.diagnostics)
    }

    /// Parses the whole file.
    public mutating func parseFile() -> [Statement] {
        let statements = parseStatements()
        if case .symbol(.rbrace) = peek.kind {
            diagnostics.error(peek.location, "'}' without a matching '{'")
        }
        return statements
    }

    // MARK: - Token access

    private var peek: Token { tokens[index] }

    private mutating func advance() -> Token {
        let t = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    private func check(_ s: Symbol) -> Bool {
        if case .symbol(s) = peek.kind { return true }
        return false
    }

    private func check(_ k: Keyword) -> Bool {
        if case .keyword(k) = peek.kind { return true }
        return false
    }

    private mutating func accept(_ s: Symbol) -> Bool {
        if check(s) { _ = advance(); return true }
        return false
    }

    private mutating func expect(_ s: Symbol, _ context: String) throws -> Token {
        if check(s) { return advance() }
        return try fail("expected '\(s.rawValue)' \(context), found \(peek.kind)")
    }

    private mutating func expectIdentifier(_ context: String) throws -> (String, SourceLocation) {
        if case let .identifier(name) = peek.kind {
            let t = advance()
            return (name, t.location)
        }
        if case let .keyword(k) = peek.kind {
            return try fail("'\(k.rawValue)' is a reserved word and cannot be used as \(context)")
        }
        return try fail("expected \(context), found \(peek.kind)")
    }

    private mutating func fail<T>(_ message: String, at location: SourceLocation? = nil) throws -> T {
        diagnostics.error(location ?? peek.location, message)
        throw Failure()
    }

    private mutating func enter() throws {
        depth += 1
        if depth > Parser.maximumDepth {
            _ = try fail("nesting deeper than \(Parser.maximumDepth) levels") as Void
        }
    }

    private mutating func leave() { depth -= 1 }

    /// Skips to the start of the next statement.
    private mutating func recover() {
        var braces = 0
        while true {
            switch peek.kind {
            case .end: return
            case .newline where braces == 0: _ = advance(); return
            case .symbol(.semicolon) where braces == 0: _ = advance(); return
            case .symbol(.lbrace): braces += 1; _ = advance()
            case .symbol(.rbrace):
                if braces == 0 { return }
                braces -= 1
                _ = advance()
            default: _ = advance()
            }
        }
    }

    // MARK: - Statements

    private mutating func parseStatements() -> [Statement] {
        var statements: [Statement] = []
        while true {
            switch peek.kind {
            case .end: return statements
            case .newline, .symbol(.semicolon): _ = advance(); continue
            case .symbol(.rbrace): return statements
            default: break
            }
            let savedDepth = depth
            do {
                statements.append(try parseStatement())
                switch peek.kind {
                case .newline, .symbol(.semicolon): _ = advance()
                case .end, .symbol(.rbrace): break
                default:
                    _ = try fail("expected end of line after statement, found \(peek.kind)") as Void
                }
            } catch {
                depth = savedDepth
                recover()
            }
        }
    }

    private mutating func parseStatement() throws -> Statement {
        let start = peek.location
        switch peek.kind {
        case .keyword(.let):
            _ = advance()
            let (name, _) = try expectIdentifier("a constant name")
            _ = try expect(.equals, "after the constant name")
            return .letConstant(name: name, value: try parseExpression(), start)
        case .keyword(.dim):
            _ = advance()
            let (name, _) = try expectIdentifier("a dimension name")
            _ = try expect(.equals, "after the dimension name (a symbolic dimension needs a default value)")
            return .dimension(name: name, defaultValue: try parseExpression(), start)
        case .keyword(.input), .keyword(.weight), .keyword(.cache):
            guard case let .keyword(k) = advance().kind else { fatalError("unreachable") }
            let kind = DeclarationKind(rawValue: k.rawValue)!
            let target = try parseTarget("\(kind == .input ? "an" : "a") \(kind.rawValue) name")
            _ = try expect(.colon, "and a type after the \(kind.rawValue) name, as in 'x: f16[4, 8]'")
            let type = try parseTypeExpr()
            if check(.equals) {
                return try fail("\(kind.rawValue) declarations have no value; use a plain assignment for computed tensors")
            }
            return .declaration(kind, target, type, start)
        case .keyword(.output):
            _ = advance()
            let target = try parseTarget("an output name")
            var declared: TypeExpr?
            switch peek.kind {
            case .newline, .end, .symbol(.semicolon), .symbol(.rbrace): return .outputMark(target, start)
            default: break
            }
            if accept(.colon) { declared = try parseTypeExpr() }
            _ = try expect(.equals, "and the expression that computes the output")
            return .assignment(targets: [target], value: try parseExpression(), isOutput: true,
                               declaredType: declared, start)
        case .keyword(.for):
            _ = advance()
            let (variable, _) = try expectIdentifier("a loop variable")
            guard check(.in) else { return try fail("expected 'in' after the loop variable, found \(peek.kind)") }
            _ = advance()
            let lower = try parseExpression()
            _ = try expect(.halfOpenRange, "in the loop range (write 'for \(variable) in 0..<n')")
            let upper = try parseExpression()
            _ = try expect(.lbrace, "to open the loop body")
            try enter()
            defer { leave() }
            let body = parseStatements()
            guard check(.rbrace) else { return try fail("expected '}' to close the loop opened at \(start)") }
            _ = advance()
            return .loop(variable: variable, lower: lower, upper: upper, body: body, start)
        case .identifier:
            var targets = [try parseTarget("a tensor name")]
            while accept(.comma) { targets.append(try parseTarget("a tensor name")) }
            if check(.colon) {
                return try fail("only declarations ('input', 'weight', 'cache', 'output') take a type")
            }
            _ = try expect(.equals, "after '\(targets[0].name)' (statements are declarations, 'let', 'dim', 'for' or 'name = op(...)')")
            return .assignment(targets: targets, value: try parseExpression(), isOutput: false, declaredType: nil, start)
        default:
            return try fail("expected a statement, found \(peek.kind)")
        }
    }

    private mutating func parseTarget(_ what: String) throws -> BindingTarget {
        let (name, location) = try expectIdentifier(what)
        if DType(rawValue: name) != nil {
            return try fail("'\(name)' is a type name and cannot be used as \(what)", at: location)
        }
        var indices: [Expr] = []
        while accept(.lbracket) {
            indices.append(try parseExpression())
            _ = try expect(.rbracket, "to close the index")
        }
        return BindingTarget(name: name, indices: indices, location: location)
    }

    private mutating func parseTypeExpr() throws -> TypeExpr {
        guard case let .identifier(name) = peek.kind, let dtype = DType(rawValue: name) else {
            return try fail("expected a tensor type such as 'f16[4, 8]' (dtypes: \(DType.allCases.map(\.rawValue).joined(separator: ", "))), found \(peek.kind)")
        }
        let location = advance().location
        _ = try expect(.lbracket, "after the dtype (a scalar is written '\(name)[]')")
        var dims: [Expr] = []
        if !check(.rbracket) {
            repeat { dims.append(try parseExpression()) } while accept(.comma)
        }
        _ = try expect(.rbracket, "to close the shape")
        return TypeExpr(dtype: dtype, dims: dims, location: location)
    }

    // MARK: - Expressions

    private mutating func parseExpression() throws -> Expr {
        try enter()
        defer { leave() }
        var lhs = try parseTerm()
        while case let .symbol(s) = peek.kind, s == .plus || s == .minus {
            let op = advance()
            let rhs = try parseTerm()
            lhs = .binary(s == .plus ? .add : .subtract, lhs, rhs, op.location)
        }
        return lhs
    }

    private mutating func parseTerm() throws -> Expr {
        var lhs = try parseUnary()
        while case let .symbol(s) = peek.kind, s == .star || s == .slash {
            let op = advance()
            let rhs = try parseUnary()
            lhs = .binary(s == .star ? .multiply : .divide, lhs, rhs, op.location)
        }
        return lhs
    }

    private mutating func parseUnary() throws -> Expr {
        if check(.minus) {
            let t = advance()
            try enter()
            defer { leave() }
            return .negate(try parseUnary(), t.location)
        }
        return try parsePrimary()
    }

    private mutating func parsePrimary() throws -> Expr {
        let t = peek
        switch t.kind {
        case let .integer(v): _ = advance(); return .integer(v, t.location)
        case let .float(v): _ = advance(); return .float(v, t.location)
        case let .string(s): _ = advance(); return .string(s, t.location)
        case .keyword(.true): _ = advance(); return .bool(true, t.location)
        case .keyword(.false): _ = advance(); return .bool(false, t.location)
        case .symbol(.lparen):
            _ = advance()
            let e = try parseExpression()
            _ = try expect(.rparen, "to close the parenthesis")
            return e
        case .symbol(.lbracket):
            _ = advance()
            var items: [Expr] = []
            if !check(.rbracket) {
                repeat {
                    if check(.rbracket) { break }  // trailing comma
                    items.append(try parseExpression())
                } while accept(.comma)
            }
            _ = try expect(.rbracket, "to close the list")
            return .list(items, t.location)
        case let .identifier(name):
            if DType(rawValue: name) != nil { return .type(try parseTypeExpr()) }
            _ = advance()
            if accept(.lparen) {
                var args: [CallArgument] = []
                var sawNamed = false
                if !check(.rparen) {
                    repeat {
                        if check(.rparen) { break }  // trailing comma
                        let argStart = peek.location
                        if case let .identifier(label) = peek.kind, case .symbol(.equals) = tokens[index + 1].kind {
                            _ = advance(); _ = advance()
                            sawNamed = true
                            args.append(CallArgument(label: label, value: try parseExpression(), location: argStart))
                        } else {
                            if sawNamed {
                                return try fail("positional operand after a named attribute in call to '\(name)'")
                            }
                            args.append(CallArgument(label: nil, value: try parseExpression(), location: argStart))
                        }
                    } while accept(.comma)
                }
                _ = try expect(.rparen, "to close the call to '\(name)'")
                return .call(name, arguments: args, t.location)
            }
            var indices: [Expr] = []
            while accept(.lbracket) {
                indices.append(try parseExpression())
                _ = try expect(.rbracket, "to close the index")
            }
            return .name(name, indices: indices, t.location)
        default:
            return try fail("expected an expression, found \(t.kind)")
        }
    }
}
