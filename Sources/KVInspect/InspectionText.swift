import Foundation
import KVArtifact

// `kvplan inspect` in a terminal: the inspection as aligned tables no wider than 100 columns
// (long names are shortened in the middle, so both the layer prefix and the tile suffix show).

/// Renders inspections and traces as terminal text.
public enum InspectionText {
    /// The widest line the renderer produces.
    public static let width = 100

    /// `text` shortened to `n` characters with an ellipsis in the middle.
    static func fit(_ text: String, _ n: Int) -> String {
        guard text.count > n, n > 3 else { return text }
        let head = (n - 1) / 2, tail = n - 1 - head
        return String(text.prefix(head)) + "…" + String(text.suffix(tail))
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }

    /// The whole inspection.
    public static func render(_ i: PlanInspection) -> String {
        var out = "\(i.model) on \(i.target): \(i.steps) steps, \(i.values) values, \(i.transferCount) transfers, objective \(i.objective)\n"
        var solver = "solver  \(i.solver.method): \(i.solver.status)"
        if let gap = i.solver.gap { solver += String(format: ", gap %.2f%%", gap * 100) }
        if let order = i.solver.order { solver += ", order \(order)" }
        out += wrap(solver, indent: 8)
        out += "\ntiers\n"
        var rows = [["  tier", "capacity", "peak", "use", "values", "alignment"]]
        for t in i.tiers {
            rows.append(["  " + t.name, humanBytes(Double(t.capacity)), humanBytes(Double(t.peakBytes)),
                         t.capacity > 0 ? percent(Double(t.peakBytes) / Double(t.capacity)) : "–", "\(t.values)", "\(t.alignment) B"])
        }
        out += table(rows, rightAligned: [1, 2, 3, 4, 5])
        out += "\nlinks\n"
        rows = [["  link", "bandwidth", "latency", "transfers", "bytes", "busy"]]
        for l in i.links {
            rows.append(["  \(l.from)->\(l.to)", String(format: "%.3g GB/s", l.bandwidth / 1e9), formatSeconds(l.latency),
                         "\(l.transfers)", humanBytes(Double(l.bytes)), formatSeconds(l.busySeconds)])
        }
        out += table(rows, rightAligned: [1, 2, 3, 4, 5])
        out += "\ntime\n"
        let e = i.estimate
        var line = "  estimate \(formatSeconds(e.seconds)) (compute alone \(formatSeconds(e.computeSeconds))"
        if let bound = e.lowerBoundSeconds, bound > 0 { line += "; lower bound \(formatSeconds(bound)), this plan \(percent(e.seconds / bound - 1)) above" }
        out += wrap(line + ")", indent: 4)
        out += "  traffic \(bytes(e.compulsoryBytes + e.nonCompulsoryBytes)): compulsory \(humanBytes(Double(e.compulsoryBytes))), "
            + "non-compulsory \(humanBytes(Double(e.nonCompulsoryBytes)))\n"
        if abs(i.recomputedSeconds - e.seconds) > 1e-9 * max(1, e.seconds) {
            out += "  note: the slots recomputed from the plan sum to \(formatSeconds(i.recomputedSeconds)), not the stored estimate\n"
        }
        if !i.baselines.isEmpty {
            rows = [["  method", "time", "non-compulsory", "this plan saves (time)", "(bytes)"]]
            rows.append(["  this plan (\(i.solver.method))", formatSeconds(e.seconds), humanBytes(Double(e.nonCompulsoryBytes)), "", ""])
            for b in i.baselines {
                rows.append(["  " + b.method, formatSeconds(b.seconds), humanBytes(Double(b.nonCompulsoryBytes)), percent(b.timeSaved),
                             (b.bytesSaved < 0 ? "-" : "") + humanBytes(Double(abs(b.bytesSaved)))])
            }
            out += table(rows, rightAligned: [1, 2, 3, 4])
        }
        if let kv = i.kv {
            out += "\nKV cache: \(kv.policy)\(kv.precision.map { ", precision \($0)" } ?? "") (\(kv.status))\n"
            out += wrap("  budget \(bytes(kv.budget)) from \(kv.budgetSource); profile \(kv.profile); uses \(bytes(kv.bytes)), fidelity "
                        + String(format: "%.4f", kv.fidelity), indent: 4)
            rows = [["  layer", "sink+win", "high", "K/V bits", "rest", "bytes", "mass", "fidelity", "home"]]
            for l in kv.layers {
                let home = KVLayerText.homes(l, tiers: i.tiers.map(\.name))
                rows.append(["  \(l.layer)", "\(l.sinkTokens + l.windowTokens)", "\(l.highTokens)", "\(l.keyBitsHigh)/\(l.valueBitsHigh)", KVLayerText.rest(l),
                             grouped(l.bytes), l.retainedMass.map { String(format: "%.4f", $0) } ?? "–", String(format: "%.4f", l.fidelity), home])
            }
            out += table(rows, rightAligned: [0, 1, 2, 3, 5, 6, 7])
            let shown = kv.baselines.filter { $0.bytes != nil }
            if !shown.isEmpty {
                out += wrap("  fidelity of the other policies: " + shown.map { b in
                    "\(b.policy) " + (b.fidelity.map { String(format: "%.4f", $0) } ?? "–") + " (\(humanBytes(Double(b.bytes ?? 0))))"
                }.joined(separator: ", "), indent: 4)
            }
        }
        if !i.costliestTransfers.isEmpty {
            out += "\n\(i.costliestTransfers.count) costliest transfers\n"
            rows = [["  value", "link", "bytes", "slot", "step", "reason", "time", "waits"]]
            for t in i.costliestTransfers {
                rows.append(["  " + fit(t.value, 26), "\(t.from)->\(t.to)", humanBytes(Double(t.bytes)), "\(t.slot)", fit(t.step, 20), t.reason,
                             formatSeconds(t.seconds), t.serial ? "yes" : "no"])
            }
            out += table(rows, rightAligned: [2, 3, 6])
        }
        if !i.costliestOps.isEmpty {
            out += "\n\(i.costliestOps.count) ops with the highest time (slot time: compute and the transfers issued beside it)\n"
            rows = [["  op", "kind", "steps", "flop", "compute", "slot time", "moved", "bound by"]]
            for o in i.costliestOps {
                rows.append(["  " + fit(o.name, 24), o.kind, o.scheme.map { "\(o.steps) \($0)" } ?? "\(o.steps)", siCount(Double(o.flops)),
                             formatSeconds(o.computeSeconds), formatSeconds(o.slotSeconds), humanBytes(Double(o.transferBytes)), fit(o.bound, 22)])
            }
            out += table(rows, rightAligned: [2, 3, 4, 5, 6])
        }
        return out
    }

    /// An op or tensor trace: its values, then one line per event.
    public static func render(_ trace: PlanTrace) -> String {
        var out = "\(trace.subject) \(trace.name): \(trace.values.count) value\(trace.values.count == 1 ? "" : "s"), \(trace.events.count) events\n"
        for v in trace.values { out += wrap("  " + v, indent: 4) }
        out += "\n"
        var rows = [["  slot", "step", "value", "event"]]
        for e in trace.events { rows.append(["  \(e.slot)", fit(e.step, 22), fit(e.value, 22), e.kind]) }
        // Details are long: each event's table row is followed by its wrapped detail.
        let lines = table(rows, rightAligned: [0]).split(separator: "\n", omittingEmptySubsequences: false)
        out += lines[0] + "\n"
        for (k, e) in trace.events.enumerated() {
            out += lines[k + 1] + "\n"
            out += wrap("        " + e.detail, indent: 8)
        }
        return out
    }

    /// `line` broken at spaces into lines of at most `width` columns, continuations indented.
    static func wrap(_ line: String, indent: Int) -> String {
        let lead = line.prefix { $0 == " " }
        var out = "", current = String(lead)
        for word in line.dropFirst(lead.count).split(separator: " ") {
            if !current.isEmpty && current.count + 1 + word.count > width {
                out += current + "\n"
                current = String(repeating: " ", count: indent) + word
            } else {
                current += (current.count == lead.count ? "" : " ") + word
            }
        }
        return out + current + "\n"
    }
}
