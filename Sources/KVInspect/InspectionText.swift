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

extension InspectionText {
    /// A plan comparison: headline, totals, changed tensors, ops and KV layers.
    public static func render(_ d: PlanDiff) -> String {
        func who(_ s: PlanDiff.Side) -> String { "\(s.label) (\(s.model) on \(s.target), \(s.method))" }
        var out = wrap("A = \(who(d.a))", indent: 4) + wrap("B = \(who(d.b))", indent: 4)
        if d.a.model != d.b.model { out += "note: the plans are of different models; tensors and ops are matched by name\n" }
        let dt = d.b.seconds - d.a.seconds
        let relative = d.a.seconds > 0 ? dt / d.a.seconds : 0
        var headline = dt == 0 ? "B takes the same estimated time as A" :
            "B is \(percent(abs(relative))) \(dt < 0 ? "faster" : "slower") than A (\(formatSeconds(d.b.seconds)) vs \(formatSeconds(d.a.seconds)))"
        let dn = d.b.nonCompulsoryBytes - d.a.nonCompulsoryBytes
        headline += dn == 0 ? " and moves the same non-compulsory bytes" :
            " and moves \(humanBytes(Double(abs(dn)))) \(dn < 0 ? "fewer" : "more") non-compulsory bytes"
        out += "\n" + wrap(headline, indent: 2)
        out += "\ntotals\n"
        var rows = [["  figure", "A", "B", "B − A"]]
        for c in d.totals {
            func show(_ x: Double) -> String {
                c.name == "estimated time" ? formatSeconds(x) : c.name == "transfers" ? grouped(Int(x)) : humanBytes(x)
            }
            var delta = c.delta == 0 ? "=" : (c.delta > 0 ? "+" : "-") + show(abs(c.delta))
            if c.delta != 0 && c.a != 0 { delta += " (\(c.delta > 0 ? "+" : "")\(percent(c.delta / c.a)))" }
            rows.append(["  " + fit(c.name, 34), show(c.a), show(c.b), delta])
        }
        out += table(rows, rightAligned: [1, 2, 3])
        out += "\ntensors: \(d.tensorsChanged) changed placement or traffic"
        out += d.onlyInA + d.onlyInB > 0 ? " (\(d.onlyInA) only in A, \(d.onlyInB) only in B)" : ""
        out += d.tensors.count < d.tensorsChanged ? "; the \(d.tensors.count) with the largest change in bytes moved:\n" : "\n"
        if !d.tensors.isEmpty {
            rows = [["  tensor", "kind", "home A→B", "lives in A→B", "tiles", "moves", "Δ moved"]]
            for t in d.tensors {
                let moved = t.movedB - t.movedA
                rows.append(["  " + fit(t.tensor, 18), t.kind, t.homeA == t.homeB ? t.homeA : "\(t.homeA)→\(t.homeB)",
                             fit(t.tiersA == t.tiersB ? t.tiersA : "\(t.tiersA)→\(t.tiersB)", 24),
                             t.partsA == t.partsB ? "\(t.partsA)" : "\(t.partsA)→\(t.partsB)", "\(t.transfersA)→\(t.transfersB)",
                             moved == 0 ? "=" : (moved > 0 ? "+" : "-") + humanBytes(Double(abs(moved)))])
            }
            out += table(rows, rightAligned: [4, 5, 6])
        }
        if !d.ops.isEmpty {
            out += "\nops whose slot time changed most (compute and the transfers beside it)\n"
            rows = [["  op", "A", "B", "B − A"]]
            for c in d.ops {
                rows.append(["  " + fit(c.name, 40), formatSeconds(c.a), formatSeconds(c.b), (c.delta > 0 ? "+" : "-") + formatSeconds(abs(c.delta))])
            }
            out += table(rows, rightAligned: [1, 2, 3])
        }
        if !d.layers.isEmpty {
            out += "\nKV layers whose layout changed\n"
            rows = [["  layer", "sink+win A→B", "high A→B", "K/V bits A→B", "rest A→B", "bytes A→B"]]
            func change(_ a: String, _ b: String) -> String { a == b ? a : "\(a)→\(b)" }
            for l in d.layers {
                rows.append(["  \(l.layer)", change("\(l.a.sinkTokens + l.a.windowTokens)", "\(l.b.sinkTokens + l.b.windowTokens)"),
                             change("\(l.a.highTokens)", "\(l.b.highTokens)"),
                             change("\(l.a.keyBitsHigh)/\(l.a.valueBitsHigh)", "\(l.b.keyBitsHigh)/\(l.b.valueBitsHigh)"),
                             fit(change(KVLayerText.rest(l.a), KVLayerText.rest(l.b)), 28), change(grouped(l.a.bytes), grouped(l.b.bytes))])
            }
            out += table(rows, rightAligned: [0, 1, 2, 3, 5])
        }
        return out
    }
}
