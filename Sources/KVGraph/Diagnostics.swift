/// Positions, diagnostics and their rendering as `path:line:col: error: message`.

/// A position in a source file (1-based line and column, in Unicode scalars).
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// 1-based line.
    public var line: Int
    /// 1-based column.
    public var column: Int

    /// A location at `line`, `column`.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.line, a.column) < (b.line, b.column)
    }

    public var description: String { "\(line):\(column)" }
}

/// A source file's text with line access for caret rendering.
public struct SourceFile: Sendable {
    /// Path as given by the user (shown in diagnostics).
    public let path: String
    /// The whole text.
    public let text: String
    /// The text split into lines (without terminators).
    public let lines: [Substring]

    /// A source file from its path and text.
    public init(path: String, text: String) {
        self.path = path
        self.text = text
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
    }
}

/// Severity of a diagnostic.
public enum Severity: String, Sendable, Comparable {
    case error, warning, note

    public static func < (a: Severity, b: Severity) -> Bool {
        let rank: [Severity: Int] = [.error: 0, .warning: 1, .note: 2]
        return rank[a]! < rank[b]!
    }
}

/// One message about a place in a source file.
public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
    /// Error, warning or note.
    public var severity: Severity
    /// Where it applies.
    public var location: SourceLocation
    /// What is wrong, in one line.
    public var message: String
    /// Notes attached to it (e.g. "first defined here").
    public var notes: [Diagnostic]

    /// A diagnostic.
    public init(_ severity: Severity, _ location: SourceLocation, _ message: String, notes: [Diagnostic] = []) {
        self.severity = severity
        self.location = location
        self.message = message
        self.notes = notes
    }

    /// An error.
    public static func error(_ location: SourceLocation, _ message: String, notes: [Diagnostic] = []) -> Diagnostic {
        Diagnostic(.error, location, message, notes: notes)
    }

    /// A warning.
    public static func warning(_ location: SourceLocation, _ message: String) -> Diagnostic {
        Diagnostic(.warning, location, message)
    }

    /// A note.
    public static func note(_ location: SourceLocation, _ message: String) -> Diagnostic {
        Diagnostic(.note, location, message)
    }

    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}

/// The error thrown by front-end entry points: every diagnostic collected, plus the file.
public struct DiagnosticError: Error, Sendable, CustomStringConvertible {
    /// The file the diagnostics refer to.
    public let file: SourceFile
    /// All diagnostics, errors first in source order.
    public let diagnostics: [Diagnostic]

    /// Wraps diagnostics about `file`.
    public init(file: SourceFile, diagnostics: [Diagnostic]) {
        self.file = file
        self.diagnostics = diagnostics
    }

    /// Rendered with source lines and carets.
    public var description: String { DiagnosticRenderer.render(diagnostics, in: file) }
}

/// Renders diagnostics in the compiler style `path:line:col: error: message`, then the line and a caret.
public enum DiagnosticRenderer {
    /// Renders `diagnostics` about `file`, one block each, in the given order.
    public static func render(_ diagnostics: [Diagnostic], in file: SourceFile) -> String {
        var out = ""
        for d in diagnostics {
            out += renderOne(d, file)
            for n in d.notes { out += renderOne(n, file) }
        }
        return out
    }

    private static func renderOne(_ d: Diagnostic, _ file: SourceFile) -> String {
        var out = "\(file.path):\(d.location.line):\(d.location.column): \(d.severity.rawValue): \(d.message)\n"
        let lineIndex = d.location.line - 1
        guard file.lines.indices.contains(lineIndex) else { return out }
        // Tabs are kept so the caret lines up under them; other control characters are shown as '?'.
        let line = String(file.lines[lineIndex].unicodeScalars.map {
            ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7f ? "?" : Character($0)
        })
        out += "    \(line)\n"
        let scalars = Array(line.unicodeScalars)
        let col = max(1, min(d.location.column, scalars.count + 1))
        let pad = scalars.prefix(col - 1).map { $0 == "\t" ? "\t" : " " }.joined()
        out += "    \(pad)^\n"
        return out
    }
}

/// Collects diagnostics while a pass runs.
public struct DiagnosticBag: Sendable {
    /// Everything reported so far.
    public private(set) var all: [Diagnostic] = []

    /// An empty bag.
    public init() {}

    /// Whether any error was reported.
    public var hasErrors: Bool { all.contains { $0.severity == .error } }
    /// The errors only.
    public var errors: [Diagnostic] { all.filter { $0.severity == .error } }
    /// The warnings only.
    public var warnings: [Diagnostic] { all.filter { $0.severity == .warning } }

    /// Adds a diagnostic (an exact duplicate is dropped).
    public mutating func report(_ d: Diagnostic) {
        if !all.contains(d) { all.append(d) }
    }

    /// Adds an error at `location`.
    public mutating func error(_ location: SourceLocation, _ message: String, notes: [Diagnostic] = []) {
        report(.error(location, message, notes: notes))
    }

    /// Adds a warning at `location`.
    public mutating func warning(_ location: SourceLocation, _ message: String) {
        report(.warning(location, message))
    }

    /// Adds everything from another bag.
    public mutating func append(contentsOf other: DiagnosticBag) {
        for d in other.all { report(d) }
    }

    /// Diagnostics sorted: by position, errors before warnings at the same place.
    public var sorted: [Diagnostic] {
        all.enumerated().sorted {
            ($0.element.location, $0.element.severity, $0.offset) < ($1.element.location, $1.element.severity, $1.offset)
        }.map(\.element)
    }
}
