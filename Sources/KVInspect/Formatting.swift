import Foundation
import KVArtifact

// Number and table formatting shared by the CLI's reports and `kvplan inspect`.

/// `6738415616` → `6,738,415,616`.
public func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (n < 0 ? "-" : "") + String(out.reversed())
}

/// `13667328` → `13.03 MiB`.
public func humanBytes(_ n: Double) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = n
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(Int(n)) B" : String(format: "%.2f %@", v, units[i])
}

/// Exact bytes with the human form: `13,667,328 B (13.03 MiB)`.
public func bytes(_ n: Int) -> String {
    n < 1024 ? "\(grouped(n)) B" : "\(grouped(n)) B (\(humanBytes(Double(n))))"
}

/// A byte count that may be fractional (sub-byte KV types): `512`, `8.5`.
public func fractionalBytes(_ v: Double) -> String {
    v == v.rounded() ? grouped(Int(v)) : String(format: "%.3f", v)
}

/// `1.2e12` → `1.20 T`.
public func siCount(_ n: Double) -> String {
    let units = ["", "K", "M", "G", "T", "P", "E"]
    var v = n
    var i = 0
    while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
    return i == 0 ? "\(Int(n))" : String(format: "%.2f %@", v, units[i])
}

/// Left-aligned table with two-space gaps.
public func table(_ rows: [[String]], rightAligned: Set<Int> = []) -> String {
    guard let width = rows.map(\.count).max() else { return "" }
    var widths = [Int](repeating: 0, count: width)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    return rows.map { r in
        r.enumerated().map { i, c in
            let pad = String(repeating: " ", count: widths[i] - c.count)
            return rightAligned.contains(i) ? pad + c : c + pad
        }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
    }.joined(separator: "\n") + "\n"
}

/// How a KV layer layout reads in tables (`kvplan compile`'s summary and `kvplan inspect`).
public enum KVLayerText {
    /// What happens to the tokens beyond the high-precision ones: `—`, `N evicted`, `N at B bits`.
    public static func rest(_ l: KVLayerLayout) -> String {
        l.lowTokens == 0 ? "—" : l.lowBits == 0 ? "\(l.lowTokens) evicted" : "\(l.lowTokens) at \(l.lowBits) bits"
    }

    /// The tiers holding the layer's bytes, in `tiers` order, joined by `+`.
    public static func homes(_ l: KVLayerLayout, tiers: [String]) -> String {
        (l.home ?? [:]).filter { $0.value > 0 }.keys.sorted { a, b in
            (tiers.firstIndex(of: a) ?? tiers.count, a) < (tiers.firstIndex(of: b) ?? tiers.count, b)
        }.joined(separator: "+")
    }
}
