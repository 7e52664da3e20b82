// Lexer: turns .graph text into tokens with positions.
//
// Newlines end statements, except inside ( ) and [ ], so long calls can wrap.
// A bad character is reported and skipped, so one run reports every lexical
// error; numbers that overflow 64 bits are errors, not traps.

/// The kind of a token.
public enum TokenKind: Equatable, Sendable {
    case identifier(String)
    case integer(Int)
    case float(Double)
    case string(String)
    case keyword(Keyword)
    case symbol(Symbol)
    case newline
    case end
}

/// Reserved words of the .graph language.
public enum Keyword: String, Sendable, CaseIterable {
    case `let`, dim, input, weight, cache, output, `for`, `in`, `true`, `false`
}

/// Punctuation and operators.
public enum Symbol: String, Sendable, CaseIterable {
    case lparen = "(", rparen = ")", lbracket = "[", rbracket = "]", lbrace = "{", rbrace = "}"
    case comma = ",", colon = ":", equals = "=", plus = "+", minus = "-", star = "*", slash = "/"
    case semicolon = ";", halfOpenRange = "..<"
}

/// A token and where it starts.
public struct Token: Equatable, Sendable {
    /// What it is.
    public var kind: TokenKind
    /// Where its first character is.
    public var location: SourceLocation
}

extension TokenKind: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .identifier(s): return "identifier '\(s)'"
        case let .integer(i): return "integer \(i)"
        case let .float(d): return "number \(d)"
        case let .string(s): return "string \"\(s)\""
        case let .keyword(k): return "'\(k.rawValue)'"
        case let .symbol(s): return "'\(s.rawValue)'"
        case .newline: return "end of line"
        case .end: return "end of file"
        }
    }
}

/// Splits .graph source into tokens.
public struct Lexer {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var line = 1
    private var column = 1
    private var nesting = 0
    /// Diagnostics found while lexing.
    public private(set) var diagnostics = DiagnosticBag()

    /// A lexer over `text`.
    public init(_ text: String) {
        scalars = Array(text.unicodeScalars)
    }

    /// All tokens, ending with `.end`.
    public mutating func tokenize() -> [Token] {
        var tokens: [Token] = []
        while true {
            let t = next()
            // Collapse runs of newlines; drop a newline at the very start.
            if t.kind == .newline, tokens.last?.kind == .newline || tokens.isEmpty { continue }
            tokens.append(t)
            if t.kind == .end { return tokens }
        }
    }

    private var current: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }
    private func peek(_ k: Int) -> Unicode.Scalar? { index + k < scalars.count ? scalars[index + k] : nil }
    private var here: SourceLocation { SourceLocation(line: line, column: column) }

    private mutating func advance() {
        guard let c = current else { return }
        index += 1
        if c == "\n" { line += 1; column = 1 } else { column += 1 }
    }

    private mutating func next() -> Token {
        while let c = current {
            let start = here
            switch c {
            case " ", "\t", "\r":
                advance()
            case "#":
                while let d = current, d != "\n" { advance() }
            case "\n":
                advance()
                if nesting == 0 { return Token(kind: .newline, location: start) }
            case "0"..."9":
                return number(start)
            case "\"":
                return string(start)
            case "a"..."z", "A"..."Z", "_":
                var s = ""
                while let d = current, isIdentifierPart(d) { s.unicodeScalars.append(d); advance() }
                if let k = Keyword(rawValue: s) { return Token(kind: .keyword(k), location: start) }
                return Token(kind: .identifier(s), location: start)
            case ".":
                if peek(1) == ".", peek(2) == "<" {
                    advance(); advance(); advance()
                    return Token(kind: .symbol(.halfOpenRange), location: start)
                }
                diagnostics.error(start, "unexpected '.'; ranges are written 'a..<b'")
                advance()
            case "×": advance(); return Token(kind: .symbol(.star), location: start)
            case "÷": advance(); return Token(kind: .symbol(.slash), location: start)
            case "−": advance(); return Token(kind: .symbol(.minus), location: start)
            default:
                if let s = Symbol(rawValue: String(c)) {
                    advance()
                    switch s {
                    case .lparen, .lbracket: nesting += 1
                    case .rparen, .rbracket: nesting = max(0, nesting - 1)
                    case .lbrace, .rbrace: nesting = 0
                    default: break
                    }
                    return Token(kind: .symbol(s), location: start)
                }
                let shown = c.value < 0x20 || c.value == 0x7f ? "U+\(String(c.value, radix: 16, uppercase: true))" : "'\(c)'"
                diagnostics.error(start, "unexpected character \(shown)")
                advance()
            }
        }
        return Token(kind: .end, location: here)
    }

    private func isIdentifierPart(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "a"..."z", "A"..."Z", "0"..."9", "_": return true
        default: return false
        }
    }

    private func isDigit(_ c: Unicode.Scalar?) -> Bool {
        guard let c else { return false }
        return ("0"..."9").contains(c)
    }

    private mutating func number(_ start: SourceLocation) -> Token {
        var text = ""
        var isFloat = false
        func digits() {
            while let d = current, isDigit(d) || (d == "_" && isDigit(peek(1))) {
                if d != "_" { text.unicodeScalars.append(d) }
                advance()
            }
        }
        digits()
        if current == ".", isDigit(peek(1)) {
            isFloat = true
            text += "."
            advance()
            digits()
        }
        if current == "e" || current == "E" {
            let signed = (peek(1) == "+" || peek(1) == "-") && isDigit(peek(2))
            if isDigit(peek(1)) || signed {
                isFloat = true
                text += "e"
                advance()
                if signed { text.unicodeScalars.append(current!); advance() }
                digits()
            }
        }
        if let c = current, isIdentifierPart(c) {
            var bad = text
            while let d = current, isIdentifierPart(d) { bad.unicodeScalars.append(d); advance() }
            diagnostics.error(start, "invalid number '\(bad)'")
            return Token(kind: .integer(0), location: start)
        }
        if isFloat {
            guard let v = Double(text), v.isFinite else {
                diagnostics.error(start, "number '\(text)' is out of range")
                return Token(kind: .float(0), location: start)
            }
            return Token(kind: .float(v), location: start)
        }
        guard let v = Int(text) else {
            diagnostics.error(start, "integer '\(text)' does not fit in 64 bits")
            return Token(kind: .integer(0), location: start)
        }
        return Token(kind: .integer(v), location: start)
    }

    private mutating func string(_ start: SourceLocation) -> Token {
        advance()
        var s = ""
        while let c = current, c != "\"" {
            if c == "\n" { break }
            if c == "\\", let e = peek(1) {
                advance()
                switch e {
                case "n": s += "\n"
                case "t": s += "\t"
                case "\"": s += "\""
                case "\\": s += "\\"
                default:
                    diagnostics.error(here, "unknown escape '\\\(e)' in string")
                }
                advance()
                continue
            }
            s.unicodeScalars.append(c)
            advance()
        }
        if current == "\"" { advance() } else { diagnostics.error(start, "unterminated string") }
        return Token(kind: .string(s), location: start)
    }
}
