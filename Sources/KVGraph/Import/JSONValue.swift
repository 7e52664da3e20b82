// JSONValue: a small JSON reader that keeps the position of every value.
//
// Foundation's JSONSerialization reports neither where a bad value is nor
// the order of keys; the HF importer needs both to say `config.json:14:22:
// error: ...` about a field. RFC 8259 syntax; numbers keep their source text
// so integers larger than 2^53 are not silently rounded.

/// A JSON value with its source position.
public indirect enum JSONValue: Sendable {
    case object([(key: String, value: JSONValue, keyLocation: SourceLocation)], SourceLocation)
    case array([JSONValue], SourceLocation)
    case string(String, SourceLocation)
    case number(String, SourceLocation)
    case bool(Bool, SourceLocation)
    case null(SourceLocation)

    /// Where the value starts.
    public var location: SourceLocation {
        switch self {
        case let .object(_, l), let .array(_, l), let .string(_, l), let .number(_, l), let .bool(_, l), let .null(l): return l
        }
    }

    /// The member `key` of an object (the last one if repeated).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members, _) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    /// Where the key `key` of an object is written.
    public func keyLocation(_ key: String) -> SourceLocation? {
        guard case let .object(members, _) = self else { return nil }
        return members.last { $0.key == key }?.keyLocation
    }

    /// True for `null`.
    public var isNull: Bool { if case .null = self { return true }; return false }

    /// A short name of the value's type, for messages.
    public var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

/// Parses JSON text into a `JSONValue`.
public struct JSONReader {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var line = 1
    private var column = 1
    private var depth = 0

    /// A parse failure with its position.
    public struct Failure: Error, Sendable {
        public var location: SourceLocation
        public var message: String
    }

    /// Parses `text` as one JSON document.
    public static func parse(_ text: String) throws(Failure) -> JSONValue {
        var r = JSONReader(scalars: Array(text.unicodeScalars))
        r.skipSpace()
        let v = try r.value()
        r.skipSpace()
        if r.index < r.scalars.count { throw r.fail("unexpected text after the JSON document") }
        return v
    }

    private init(scalars: [Unicode.Scalar]) { self.scalars = scalars }

    private var here: SourceLocation { SourceLocation(line: line, column: column) }
    private var current: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

    private func fail(_ message: String) -> Failure { Failure(location: here, message: message) }

    private mutating func advance() {
        if current == "\n" { line += 1; column = 1 } else { column += 1 }
        index += 1
    }

    private mutating func skipSpace() {
        while let c = current, c == " " || c == "\t" || c == "\n" || c == "\r" { advance() }
    }

    private mutating func expect(_ c: Unicode.Scalar) throws(Failure) {
        guard current == c else { throw fail("expected '\(c)'" + (current.map { ", found '\($0)'" } ?? " before the end of the file")) }
        advance()
    }

    private mutating func value() throws(Failure) -> JSONValue {
        let start = here
        guard let c = current else { throw fail("unexpected end of file") }
        depth += 1
        defer { depth -= 1 }
        if depth > 256 { throw fail("JSON nested deeper than 256 levels") }
        switch c {
        case "{":
            advance()
            var members: [(key: String, value: JSONValue, keyLocation: SourceLocation)] = []
            skipSpace()
            if current == "}" { advance(); return .object(members, start) }
            while true {
                skipSpace()
                let keyStart = here
                guard current == "\"" else { throw fail("expected a quoted key") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                members.append((key, try value(), keyStart))
                skipSpace()
                if current == "," { advance(); continue }
                try expect("}")
                return .object(members, start)
            }
        case "[":
            advance()
            var items: [JSONValue] = []
            skipSpace()
            if current == "]" { advance(); return .array(items, start) }
            while true {
                skipSpace()
                items.append(try value())
                skipSpace()
                if current == "," { advance(); continue }
                try expect("]")
                return .array(items, start)
            }
        case "\"":
            return .string(try string(), start)
        case "t", "f", "n":
            for word in ["true", "false", "null"] where matches(word) {
                for _ in word.unicodeScalars { advance() }
                return word == "null" ? .null(start) : .bool(word == "true", start)
            }
            throw fail("unexpected '\(c)'")
        case "-", "0"..."9":
            var text = ""
            while let d = current, "0123456789+-.eE".unicodeScalars.contains(d) { text.unicodeScalars.append(d); advance() }
            guard let v = Double(text), v.isFinite else {
                throw Failure(location: start, message: "invalid number '\(text)'")
            }
            return .number(text, start)
        default:
            throw fail("unexpected '\(c)'")
        }
    }

    private func matches(_ word: String) -> Bool {
        let w = Array(word.unicodeScalars)
        guard index + w.count <= scalars.count else { return false }
        return Array(scalars[index..<(index + w.count)]) == w
    }

    private mutating func string() throws(Failure) -> String {
        try expect("\"")
        var s = ""
        while let c = current, c != "\"" {
            if c.value < 0x20 { throw fail("control character in string") }
            if c == "\\" {
                advance()
                guard let e = current else { break }
                switch e {
                case "\"": s += "\""
                case "\\": s += "\\"
                case "/": s += "/"
                case "b": s += "\u{8}"
                case "f": s += "\u{c}"
                case "n": s += "\n"
                case "r": s += "\r"
                case "t": s += "\t"
                case "u":
                    var hex = ""
                    for _ in 0..<4 {
                        advance()
                        guard let h = current, h.properties.isASCIIHexDigit else { throw fail("invalid \\u escape") }
                        hex.unicodeScalars.append(h)
                    }
                    s.unicodeScalars.append(Unicode.Scalar(UInt32(hex, radix: 16)!) ?? "\u{FFFD}")
                default: throw fail("invalid escape '\\\(e)'")
                }
                advance()
                continue
            }
            s.unicodeScalars.append(c)
            advance()
        }
        try expect("\"")
        return s
    }
}
