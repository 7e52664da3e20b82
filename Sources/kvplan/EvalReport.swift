import Foundation
import KVPlanner

// The report of `kvplan eval`: a Markdown table per precision scheme (policies × budgets,
// perplexity and bits per byte), the exact allocator against the best baseline at each budget,
// and an SVG plot — perplexity against KV bytes, one panel per precision scheme, one line per
// policy, the full-precision cache as a dashed line. Deterministic text for identical results.

/// What `kvplan eval` measured, rendered.
struct EvalReport {
    var model: String
    var command: String
    var window: Int
    var windows: Int
    var predictions: Int
    var referenceBitsPerByte: Double
    var fp16Bytes: Int
    var profile: String
    var cells: [Eval.Cell]
    var budgets: [Int]
    var policies: [KVPolicy]
    var precisions: [KVPrecision]
    var seconds: Double
    /// Streaming runs made: the full-precision reference and one per distinct set of layouts.
    var runs: Int = 0

    static func perplexity(_ bitsPerByte: Double) -> Double { pow(2, bitsPerByte) }

    func cell(_ budget: Int, _ policy: KVPolicy, _ precision: KVPrecision) -> Eval.Cell? {
        cells.first { $0.budget == budget && $0.policy == policy && $0.precision == precision }
    }

    static let precisionNames: [KVPrecision: String] = [.evict: "evict only (fp16 tokens)", .kivi2: "KIVI-2 (2-bit keys and values)",
                                                         .kivi4: "KIVI-4 (4-bit keys and values)", .mixed: "mixed (8/4-bit high, 2-bit low)"]

    func markdown(svgName: String?) -> String {
        var out = "# KV policies on \(model): perplexity through the packed cache\n\n"
        out += "```\nkvplan \(command)\n```\n\n"
        out += String(format: "%d window%@ of %d bytes (%d next-byte predictions); budgets are percent of the fp16 cache of %d tokens (%d B); allocation profile: %@. ",
                      windows, windows == 1 ? "" : "s", window, predictions, window, fp16Bytes, profile)
        out += String(format: "Full-precision cache: **perplexity %.4f (%.4f bits/byte)**. %.0f s", Self.perplexity(referenceBitsPerByte), referenceBitsPerByte, seconds)
        out += runs > 0 ? " (\(runs) streaming runs: the reference and \(runs - 1) distinct set\(runs == 2 ? "" : "s") of layer layouts; cells with equal layouts share a run).\n\n" : ".\n\n"
        if let svgName { out += "![perplexity vs KV bytes](\(svgName))\n\n" }
        // Cells that could not run are marked with a numbered note, listed once below the tables.
        var notes: [String] = []
        func mark(_ note: String?) -> String {
            let text = note ?? "not run"
            if !notes.contains(text) { notes.append(text) }
            return "– [\(notes.firstIndex(of: text)! + 1)]"
        }
        for precision in precisions {
            out += "## \(Self.precisionNames[precision] ?? precision.rawValue)\n\n"
            out += "| policy | " + budgets.map { "\($0)%" }.joined(separator: " | ") + " |\n"
            out += "|---|" + budgets.map { _ in "---:" }.joined(separator: "|") + "|\n"
            for policy in policies {
                out += "| \(policy.rawValue) | " + budgets.map { b in
                    guard let c = cell(b, policy, precision) else { return "–" }
                    if let bits = c.bitsPerByte { return String(format: "%.4f (%.3f)", Self.perplexity(bits), bits) }
                    return mark(c.note)
                }.joined(separator: " | ") + " |\n"
            }
            out += "| KV bytes used (exact) | " + budgets.map { b in
                cell(b, .exact, precision)?.bytes.map { String(format: "%d (%.1f%%)", $0, 100 * Double($0) / Double(fp16Bytes)) } ?? "–"
            }.joined(separator: " | ") + " |\n\n"
        }
        if !notes.isEmpty {
            out += notes.enumerated().map { "[\($0.offset + 1)] \($0.element)" }.joined(separator: "  \n") + "\n\n"
        }
        // The exact allocator against the best baseline at equal bytes.
        out += "## Exact allocation against the best baseline at equal bytes\n\n"
        out += "| precision | budget | exact perplexity | best baseline | Δ vs full cache (exact) |\n|---|---:|---:|---|---:|\n"
        for precision in precisions {
            for b in budgets {
                guard let exact = cell(b, .exact, precision)?.bitsPerByte else { continue }
                let baselines = policies.filter { $0 != .exact }.compactMap { p in cell(b, p, precision)?.bitsPerByte.map { (p, $0) } }
                let best = baselines.min { $0.1 < $1.1 }
                let bestText = best.map { String(format: "%@ %.4f%@", $0.0.rawValue, Self.perplexity($0.1), $0.1 < exact - 1e-9 ? " (better)" : "") } ?? "–"
                out += String(format: "| %@ | %d%% | %.4f | %@ | %+.2f%% |\n", precision.rawValue, b, Self.perplexity(exact), bestText,
                              100 * (Self.perplexity(exact) / Self.perplexity(referenceBitsPerByte) - 1))
            }
        }
        return out + "\n"
    }

    func svg() -> String {
        let panelW = 420.0, panelH = 300.0, margin = (left: 60.0, right: 20.0, top: 40.0, bottom: 45.0)
        let columns = min(2, precisions.count), rows = (precisions.count + columns - 1) / columns
        let width = Double(columns) * panelW, height = Double(rows) * panelH + 40
        let colors = ["exact": "#d62728", "uniform": "#1f77b4", "pyramid": "#2ca02c", "prefixkv": "#9467bd", "cake": "#ff7f0e"]
        let measured = cells.compactMap(\.bitsPerByte).map(Self.perplexity) + [Self.perplexity(referenceBitsPerByte)]
        let yMin = (measured.min() ?? 1) * 0.98, yMax = (measured.max() ?? 2) * 1.02
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(f(width / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">\(model): perplexity vs KV bytes (% of the fp16 cache), \(windows)×\(window) bytes</text>\n"
        for (n, precision) in precisions.enumerated() {
            let ox = Double(n % columns) * panelW, oy = 30 + Double(n / columns) * panelH
            let x0 = ox + margin.left, x1 = ox + panelW - margin.right, y0 = oy + panelH - margin.bottom, y1 = oy + margin.top
            func px(_ percent: Double) -> Double { x0 + (x1 - x0) * percent / 100 }
            func py(_ p: Double) -> Double { y0 - (y0 - y1) * (p - yMin) / (yMax - yMin) }
            out += "<g>\n<text x=\"\(f((x0 + x1) / 2))\" y=\"\(f(oy + 22))\" text-anchor=\"middle\" font-size=\"12\">\(Self.precisionNames[precision] ?? precision.rawValue)</text>\n"
            out += "<rect x=\"\(f(x0))\" y=\"\(f(y1))\" width=\"\(f(x1 - x0))\" height=\"\(f(y0 - y1))\" fill=\"none\" stroke=\"#888\"/>\n"
            for tick in stride(from: 0, through: 100, by: 20) {
                out += "<text x=\"\(f(px(Double(tick))))\" y=\"\(f(y0 + 15))\" text-anchor=\"middle\">\(tick)%</text>\n"
            }
            out += "<text x=\"\(f((x0 + x1) / 2))\" y=\"\(f(y0 + 32))\" text-anchor=\"middle\" fill=\"#444\">KV bytes, % of the fp16 cache</text>\n"
            let midY = (y0 + y1) / 2
            out += "<text x=\"\(f(ox + 14))\" y=\"\(f(midY))\" text-anchor=\"middle\" fill=\"#444\" transform=\"rotate(-90 \(f(ox + 14)) \(f(midY)))\">perplexity (next byte)</text>\n"
            for k in 0...4 {
                let p = yMin + (yMax - yMin) * Double(k) / 4
                out += "<line x1=\"\(f(x0))\" x2=\"\(f(x1))\" y1=\"\(f(py(p)))\" y2=\"\(f(py(p)))\" stroke=\"#eee\"/>"
                out += "<text x=\"\(f(x0 - 5))\" y=\"\(f(py(p) + 4))\" text-anchor=\"end\">\(String(format: "%.2f", p))</text>\n"
            }
            let ref = py(Self.perplexity(referenceBitsPerByte))
            out += "<line x1=\"\(f(x0))\" x2=\"\(f(x1))\" y1=\"\(f(ref))\" y2=\"\(f(ref))\" stroke=\"#000\" stroke-dasharray=\"4 3\"><title>full-precision cache</title></line>\n"
            for policy in policies {
                let points = budgets.compactMap { b -> (Double, Double)? in
                    guard let c = cell(b, policy, precision), let bits = c.bitsPerByte, let bytes = c.bytes else { return nil }
                    return (100 * Double(bytes) / Double(fp16Bytes), Self.perplexity(bits))
                }.sorted { $0.0 < $1.0 }
                guard !points.isEmpty else { continue }
                let color = colors[policy.rawValue] ?? "#333"
                out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"" + points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ") + "\"/>\n"
                for p in points {
                    out += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"2.5\" fill=\"\(color)\"><title>\(policy.rawValue): \(String(format: "%.1f%% of fp16 bytes, perplexity %.4f", p.0, p.1))</title></circle>\n"
                }
            }
            for (i, policy) in policies.enumerated() {
                let lx = x1 - 70, ly = y1 + 12 + Double(i) * 13
                out += "<line x1=\"\(f(lx))\" x2=\"\(f(lx + 14))\" y1=\"\(f(ly - 4))\" y2=\"\(f(ly - 4))\" stroke=\"\(colors[policy.rawValue] ?? "#333")\" stroke-width=\"2\"/>"
                out += "<text x=\"\(f(lx + 18))\" y=\"\(f(ly))\">\(policy.rawValue)</text>\n"
            }
            out += "</g>\n"
        }
        return out + "</svg>\n"
    }
}
