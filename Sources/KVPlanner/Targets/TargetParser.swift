// TargetParser: reads `.hw` hardware targets (format in Docs/targets.md).
//
// Line-oriented: `target NAME`, `tier NAME key=value...`, `link A -> B
// key=value...` (or `<->` for both directions), `compute dtype=value...`,
// `#` comments. Quantities carry units (MiB, GB/s, ns, TFLOP/s) so a file
// reads like a datasheet; every error is positioned and all are reported.
// Presets are the files in Graphs/targets/, embedded here so a binary works
// without the source tree.

import KVGraph

/// Parses `.hw` target descriptions.
public enum TargetParser {
    /// Parses `file`; throws every problem found.
    public static func parse(_ file: SourceFile) throws(DiagnosticError) -> Target {
        var bag = DiagnosticBag()
        var name: String?
        var tiers: [MemoryTier] = []
        var tierLines: [String: SourceLocation] = [:]
        var links: [(MemoryLink, SourceLocation, SourceLocation)] = []
        var compute: [DType: Double] = [:]
        var computeLine: SourceLocation?

        for (i, raw) in file.lines.enumerated() {
            let lineNo = i + 1
            let text = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = fields(text, line: lineNo)
            guard let first = words.first else { continue }
            switch first.text {
            case "target":
                guard words.count == 2, isName(words[1].text) else {
                    bag.error(first.location, "expected 'target NAME'")
                    continue
                }
                if name != nil { bag.error(first.location, "a file describes one target; 'target' appears twice"); continue }
                name = words[1].text
            case "tier":
                guard words.count >= 2, isName(words[1].text), !words[1].text.contains("=") else {
                    bag.error(first.location, "expected 'tier NAME capacity=... bandwidth=...'")
                    continue
                }
                let tierName = words[1].text
                if let previous = tierLines[tierName] {
                    bag.error(words[1].location, "tier '\(tierName)' is already defined", notes: [.note(previous, "first defined here")])
                    continue
                }
                tierLines[tierName] = words[1].location
                var props = properties(Array(words.dropFirst(2)), allowed: ["capacity", "bandwidth", "alignment", "latency"], &bag)
                guard let capacity = quantity(&props, "capacity", .bytes, required: true, words[1].location, &bag),
                      let bandwidth = quantity(&props, "bandwidth", .bandwidth, required: true, words[1].location, &bag)
                else { continue }
                let alignment = quantity(&props, "alignment", .bytes, required: false, words[1].location, &bag) ?? 1
                let latency = quantity(&props, "latency", .time, required: false, words[1].location, &bag) ?? 0
                let align = Int(alignment)
                if align < 1 || align & (align - 1) != 0 {
                    bag.error(words[1].location, "alignment of tier '\(tierName)' must be a power of two, got \(align)")
                }
                guard capacity >= 1, capacity < 9.0e18 else {
                    bag.error(words[1].location, "capacity of tier '\(tierName)' must be between 1 byte and 8 EiB")
                    continue
                }
                tiers.append(MemoryTier(name: tierName, capacity: Int(capacity), bandwidth: bandwidth, alignment: align, latency: latency))
            case "link":
                guard words.count >= 4, ["->", "<->"].contains(words[2].text) else {
                    bag.error(first.location, "expected 'link A -> B bandwidth=...' (or '<->' for both directions)")
                    continue
                }
                var props = properties(Array(words.dropFirst(4)), allowed: ["bandwidth", "latency"], &bag)
                guard let bandwidth = quantity(&props, "bandwidth", .bandwidth, required: true, words[1].location, &bag) else { continue }
                let latency = quantity(&props, "latency", .time, required: false, words[1].location, &bag) ?? 0
                let (a, b) = (words[1], words[3])
                links.append((MemoryLink(from: a.text, to: b.text, bandwidth: bandwidth, latency: latency), a.location, b.location))
                if words[2].text == "<->" {
                    links.append((MemoryLink(from: b.text, to: a.text, bandwidth: bandwidth, latency: latency), b.location, a.location))
                }
            case "compute":
                computeLine = first.location
                for w in words.dropFirst() {
                    let parts = w.text.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2, let dtype = DType(rawValue: parts[0]) else {
                        bag.error(w.location, "expected dtype=throughput such as f16=100TFLOP/s (dtypes: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
                        continue
                    }
                    guard let v = parseQuantity(parts[1], .compute) else {
                        bag.error(w.location, "invalid throughput '\(parts[1])' (use FLOP/s, GFLOP/s, TFLOP/s, OP/s, GOP/s or TOP/s)")
                        continue
                    }
                    if compute[dtype] != nil { bag.error(w.location, "throughput for \(dtype.rawValue) given twice") }
                    compute[dtype] = v
                }
            default:
                bag.error(first.location, "unknown statement '\(first.text)' (expected target, tier, link or compute)")
            }
        }
        let end = SourceLocation(line: max(1, file.lines.count), column: 1)
        if name == nil { bag.error(SourceLocation(line: 1, column: 1), "missing 'target NAME' line") }
        if tiers.count < 2 && !bag.hasErrors { bag.error(end, "a target needs at least two tiers (an on-chip memory and a backing memory)") }
        for (link, fromLoc, toLoc) in links {
            if tierLines[link.from] == nil { bag.error(fromLoc, "link from unknown tier '\(link.from)'") }
            if tierLines[link.to] == nil { bag.error(toLoc, "link to unknown tier '\(link.to)'") }
            if link.from == link.to { bag.error(fromLoc, "a link joins two different tiers") }
        }
        // Consecutive tiers must be able to exchange data both ways.
        if !bag.hasErrors {
            for (a, b) in zip(tiers, tiers.dropFirst()) {
                for (x, y) in [(a.name, b.name), (b.name, a.name)] where !links.contains(where: { $0.0.from == x && $0.0.to == y }) {
                    bag.error(tierLines[a.name]!, "no link from '\(x)' to '\(y)'; tiers are listed fastest first and each must reach its neighbours")
                }
            }
        }
        if compute.isEmpty && !bag.hasErrors {
            bag.error(computeLine ?? end, "missing 'compute dtype=throughput ...' line")
        }
        if bag.hasErrors { throw DiagnosticError(file: file, diagnostics: bag.sorted) }
        return Target(name: name!, tiers: tiers, links: links.map(\.0), compute: compute)
    }

    // MARK: - Helpers

    struct Word {
        var text: String
        var location: SourceLocation
    }

    static func fields(_ text: String, line: Int) -> [Word] {
        var words: [Word] = []
        var current = ""
        var start = 0
        for (i, ch) in text.unicodeScalars.enumerated() {
            if ch == " " || ch == "\t" || ch == "\r" {
                if !current.isEmpty { words.append(Word(text: current, location: SourceLocation(line: line, column: start + 1))) }
                current = ""
            } else {
                if current.isEmpty { start = i }
                current.unicodeScalars.append(ch)
            }
        }
        if !current.isEmpty { words.append(Word(text: current, location: SourceLocation(line: line, column: start + 1))) }
        return words
    }

    static func isName(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, f.properties.isAlphabetic || f == "_" else { return false }
        return s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    static func properties(_ words: [Word], allowed: [String], _ bag: inout DiagnosticBag) -> [String: Word] {
        var out: [String: Word] = [:]
        for w in words {
            let parts = w.text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                bag.error(w.location, "expected key=value, found '\(w.text)'")
                continue
            }
            guard allowed.contains(parts[0]) else {
                bag.error(w.location, "unknown property '\(parts[0])' (expected \(allowed.joined(separator: ", ")))")
                continue
            }
            if out[parts[0]] != nil { bag.error(w.location, "'\(parts[0])' given twice") }
            out[parts[0]] = Word(text: parts[1], location: SourceLocation(line: w.location.line, column: w.location.column + parts[0].count + 1))
        }
        return out
    }

    /// The kind of quantity a value measures.
    public enum Unit: Sendable { case bytes, bandwidth, time, compute }

    static func quantity(_ props: inout [String: Word], _ key: String, _ unit: Unit, required: Bool,
                         _ owner: SourceLocation, _ bag: inout DiagnosticBag) -> Double? {
        guard let w = props[key] else {
            if required { bag.error(owner, "missing \(key)=") }
            return nil
        }
        guard let v = parseQuantity(w.text, unit), v >= 0 else {
            let units: String
            switch unit {
            case .bytes: units = "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"
            case .bandwidth: units = "B/s, MB/s, GB/s, TB/s, MiB/s, GiB/s"
            case .time: units = "s, ms, us, ns"
            case .compute: units = "FLOP/s, GFLOP/s, TFLOP/s"
            }
            bag.error(w.location, "invalid \(key) '\(w.text)' (a number with a unit: \(units))")
            return nil
        }
        if unit == .bandwidth && v == 0 { bag.error(w.location, "\(key) must be positive"); return nil }
        return v
    }

    /// Parses `2MiB`, `3.35TB/s`, `90ns`, `52GFLOP/s` into base units (bytes, bytes/s, seconds, ops/s).
    public static func parseQuantity(_ text: String, _ unit: Unit) -> Double? {
        let numberPart = text.prefix { "0123456789.eE+-_".unicodeScalars.contains($0.unicodeScalars.first!) }
        let suffix = String(text.dropFirst(numberPart.count))
        guard let number = Double(String(numberPart.filter { $0 != "_" })), number.isFinite else { return nil }
        let scale: [String: Double] = ["": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
                                       "Ki": 1024, "Mi": 1_048_576, "Gi": 1_073_741_824, "Ti": 1_099_511_627_776]
        func split(_ base: String) -> Double? {
            guard suffix.hasSuffix(base) else { return nil }
            return scale[String(suffix.dropLast(base.count))]
        }
        var factor: Double?
        switch unit {
        case .bytes:
            factor = split("B") ?? (suffix.isEmpty ? 1 : nil)
        case .bandwidth:
            factor = split("B/s")
        case .time:
            let times: [String: Double] = ["s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9]
            factor = times[suffix]
        case .compute:
            factor = split("FLOP/s") ?? split("OP/s")
        }
        guard let factor else { return nil }
        let value = number * factor
        return value.isFinite ? value : nil
    }
}

