/// The stand-alone allocator's file format: a header naming the columns, then one buffer per line.
///
///     id,lower,upper,size[,alignment][,fixed]
///
/// Lifetimes are half-open `[lower, upper)`, all numbers are non-negative decimal integers, ids
/// are unique. Blank lines are skipped. The output adds the placement: `id,lower,upper,size,offset`.

/// A malformed allocation CSV, positioned at a line (and the column of the field, 1-based).
public struct CSVError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 1-based line.
    public var line: Int
    /// The 1-based column of the offending field (1 for whole-line problems).
    public var column: Int
    /// What is wrong.
    public var message: String

    public var description: String { "\(line):\(column): \(message)" }
}

/// Reads and writes allocation CSV files.
public enum AllocationCSV {
    static let required = ["id", "lower", "upper", "size"]
    static let optional = ["alignment", "fixed"]
    /// MiniMalloc's original column names (`buffer,start,end,size`), read as ours so its public
    /// benchmark files load unchanged.
    static let aliases = ["buffer": "id", "start": "lower", "end": "upper"]

    /// Parses `text` into a problem (no capacity), reporting the first error with its position.
    public static func parse(_ text: String) throws(CSVError) -> Problem {
        // "\r\n" is one Character in Swift, and a newline like "\n".
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard let headerIndex = lines.firstIndex(where: { !$0.allSatisfy(\.isWhitespace) }) else {
            throw CSVError(line: 1, column: 1, message: "missing header: expected 'id,lower,upper,size'")
        }
        let header = fields(lines[headerIndex])
        var column: [String: Int] = [:]
        let known = Set(required + optional)
        func canonical(_ text: String) -> String { aliases[text.lowercased()] ?? text.lowercased() }
        guard header.contains(where: { known.contains(canonical($0.text)) }) else {
            throw CSVError(line: headerIndex + 1, column: 1,
                           message: "missing header: expected 'id,lower,upper,size' as the first line, found '\(lines[headerIndex].prefix(60))'")
        }
        for (k, field) in header.enumerated() {
            let name = canonical(field.text)
            guard known.contains(name) else {
                throw CSVError(line: headerIndex + 1, column: field.column, message: "unknown column '\(field.text)' (known: id, lower, upper, size, alignment, fixed)")
            }
            if column[name] != nil {
                throw CSVError(line: headerIndex + 1, column: field.column, message: "column '\(name)' appears twice")
            }
            column[name] = k
        }
        for name in required where column[name] == nil {
            throw CSVError(line: headerIndex + 1, column: 1, message: "missing header column '\(name)': expected 'id,lower,upper,size'")
        }

        var buffers: [Buffer] = []
        var firstLine: [String: Int] = [:]
        for index in (headerIndex + 1)..<lines.count {
            let lineNumber = index + 1
            if lines[index].allSatisfy(\.isWhitespace) { continue }
            let row = fields(lines[index])
            guard row.count == header.count else {
                throw CSVError(line: lineNumber, column: 1, message: "expected \(header.count) fields, found \(row.count)")
            }
            func integer(_ name: String) throws(CSVError) -> Int? {
                guard let k = column[name] else { return nil }
                let field = row[k]
                guard !field.text.isEmpty else {
                    throw CSVError(line: lineNumber, column: field.column, message: "\(name) is empty")
                }
                guard let value = Int(field.text) else {
                    let shown = field.text.count > 30 ? String(field.text.prefix(30)) + "…" : field.text
                    let why = field.text.first == "-" && Double(field.text) != nil
                        ? "must not be negative" : "is not an integer"
                    throw CSVError(line: lineNumber, column: field.column, message: "\(name) '\(shown)' \(why)")
                }
                guard value >= 0 else {
                    throw CSVError(line: lineNumber, column: field.column, message: "\(name) \(value) must not be negative")
                }
                return value
            }
            let idField = row[column["id"]!]
            guard !idField.text.isEmpty else { throw CSVError(line: lineNumber, column: idField.column, message: "id is empty") }
            if let first = firstLine[idField.text] {
                throw CSVError(line: lineNumber, column: idField.column, message: "duplicate id '\(idField.text)' (first on line \(first))")
            }
            firstLine[idField.text] = lineNumber
            let lower = try integer("lower")!, upper = try integer("upper")!, size = try integer("size")!
            guard upper > lower else {
                throw CSVError(line: lineNumber, column: row[column["upper"]!].column,
                               message: "upper \(upper) must be greater than lower \(lower) (lifetimes are half-open [lower, upper))")
            }
            let alignment = try integer("alignment") ?? 1
            guard alignment >= 1 else {
                throw CSVError(line: lineNumber, column: row[column["alignment"]!].column, message: "alignment must be at least 1")
            }
            let fixed = try integer("fixed")
            if let fixed, fixed % alignment != 0 {
                throw CSVError(line: lineNumber, column: row[column["fixed"]!].column,
                               message: "fixed offset \(fixed) is not a multiple of the alignment \(alignment)")
            }
            guard size <= Int.max / 4, upper <= Int.max / 4, fixed ?? 0 <= Int.max / 4 else {
                throw CSVError(line: lineNumber, column: 1, message: "value too large")
            }
            buffers.append(Buffer(id: idField.text, lower: lower, upper: upper, size: size, alignment: alignment, fixedOffset: fixed))
        }
        return Problem(buffers: buffers)
    }

    /// The placed buffers as `id,lower,upper,size,offset`, in the problem's order.
    public static func write(_ problem: Problem, _ solution: Solution) -> String {
        var out = "id,lower,upper,size,offset\n"
        for (b, offset) in zip(problem.buffers, solution.offsets) {
            out += "\(b.id),\(b.lower),\(b.upper),\(b.size),\(offset)\n"
        }
        return out
    }

    /// The buffers as an input file (`id,lower,upper,size`), e.g. for a generated instance.
    public static func write(_ problem: Problem) -> String {
        var out = "id,lower,upper,size\n"
        for b in problem.buffers { out += "\(b.id),\(b.lower),\(b.upper),\(b.size)\n" }
        return out
    }

    private static func fields(_ line: Substring) -> [(text: String, column: Int)] {
        var result: [(String, Int)] = []
        var column = 1
        for part in line.split(separator: ",", omittingEmptySubsequences: false) {
            let leading = part.prefix { $0 == " " || $0 == "\t" }.count
            result.append((part.trimmingCharacters(), column + leading))
            column += part.count + 1
        }
        return result
    }
}

private extension Substring {
    func trimmingCharacters() -> String {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
