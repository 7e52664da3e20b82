import Foundation
import KVArtifact

// The plan as a picture: per tier a memory timeline (x = slot, y = address, one rectangle per live
// buffer coloured by kind, transfers marked where they land), the tier's occupancy against its
// capacity, and the per-layer KV layout as bars. Plain SVG 1.1 with its own style: it opens in a
// browser or an editor, and the HTML report embeds it unchanged. Every buffer carries a <title>
// (the browser's tooltip) and data-* attributes the report's hover box reads.

/// Renders a plan's memory timeline as SVG.
public enum TimelineSVG {
    /// The drawing's width in user units (pixels at 100%).
    public static let width = 1200.0
    static let left = 104.0
    static let right = 24.0
    static let plotWidth = width - left - right
    static let laneHeight = 240.0
    static let occupancyHeight = 64.0

    /// Fill colours by value kind (colour-blind-safe Tableau 10).
    static let kindColours: [(ValueKind, String)] = [
        (.weight, "#4e79a7"), (.activation, "#f28e2b"), (.cache, "#59a14f"), (.input, "#9d9d9d"), (.output, "#b07aa1"),
    ]

    static let style = """
    .kv-t{font:13px sans-serif;fill:#222}.kv-s{font:11px sans-serif;fill:#555}.kv-h{font:bold 15px sans-serif;fill:#111}\
    .kv-ax{stroke:#888;stroke-width:1;fill:none}.kv-grid{stroke:#e4e4e4;stroke-width:1}\
    .kv-b{stroke:#fff;stroke-width:0.3}.kv-agg{fill-opacity:0.55;stroke:#333;stroke-width:0.6;stroke-dasharray:3 2}\
    .kv-b:hover{stroke:#000;stroke-width:1.5}.kv-load{fill:#111}.kv-out{fill:#d62728}\
    .kv-occ{fill:#cfdff0;stroke:#4e79a7;stroke-width:1}.kv-cap{stroke:#d62728;stroke-width:1;stroke-dasharray:5 3}\
    .weight{fill:#4e79a7}.activation{fill:#f28e2b}.cache{fill:#59a14f}.input{fill:#9d9d9d}.output{fill:#b07aa1}
    """

    /// The SVG document for `plan` (deterministic: same plan, same bytes).
    public static func render(_ plan: Plan, maxBuffersPerTier: Int = 1500) -> String {
        let timeline = MemoryTimeline(plan, maxBuffersPerTier: maxBuffersPerTier)
        var body = ""
        var y = 28.0
        let status = plan.solver.status.count > 70 ? String(plan.solver.status.prefix(69)) + "…" : plan.solver.status
        body += text(12, y, "\(plan.model) on \(plan.target.name) — \(plan.solver.method): \(status)", "kv-h")
        y += 18
        body += text(12, y, "\(plan.steps.count) steps in \(plan.slotCount) slots, \(plan.values.count) values, "
                     + "\(plan.transfers.count) transfers; estimated \(formatSeconds(plan.estimate.seconds))"
                     + (plan.estimate.lowerBoundSeconds.map { " (lower bound \(formatSeconds($0)))" } ?? ""), "kv-s")
        y += 14
        body += legend(at: y)
        y += 26
        for lane in timeline.lanes where lane.residencies > 0 {
            y = self.lane(lane, slots: timeline.slotCount, top: y, into: &body)
        }
        if let kv = plan.kv, !kv.layers.isEmpty { y = kvBars(kv, top: y, into: &body) }
        let height = Markup.number(y + 8)
        return """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Markup.number(width))" height="\(height)" \
        viewBox="0 0 \(Markup.number(width)) \(height)" class="kv-plan">
        <style>\(style)</style>
        <rect width="100%" height="100%" fill="#fff"/>
        \(body)</svg>

        """
    }

    static func text(_ x: Double, _ y: Double, _ s: String, _ cls: String = "kv-t", anchor: String? = nil, rotated: Bool = false) -> String {
        let position = "x=\"\(Markup.number(x))\" y=\"\(Markup.number(y))\""
        let turn = rotated ? " transform=\"rotate(-90 \(Markup.number(x)) \(Markup.number(y)))\"" : ""
        return "<text \(position) class=\"\(cls)\"\(anchor.map { " text-anchor=\"\($0)\"" } ?? "")\(turn)>\(Markup.escape(s))</text>\n"
    }

    static func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, _ attributes: String) -> String {
        "<rect x=\"\(Markup.number(x))\" y=\"\(Markup.number(y))\" width=\"\(Markup.number(w))\" height=\"\(Markup.number(h))\" \(attributes)"
    }

    static func legend(at y: Double) -> String {
        var out = ""
        var x = 12.0
        for (kind, _) in kindColours {
            out += rect(x, y, 12, 12, "class=\"\(kind.rawValue)\"/>\n")
            out += text(x + 16, y + 10, kind == .cache ? "cache (KV)" : kind.rawValue, "kv-s")
            x += kind == .cache ? 96 : 86
        }
        out += rect(x, y, 3, 12, "class=\"kv-load\"/>\n") + text(x + 8, y + 10, "load arrives", "kv-s")
        x += 92
        out += rect(x, y, 3, 12, "class=\"kv-out\"/>\n") + text(x + 8, y + 10, "store / spill arrives", "kv-s")
        x += 132
        out += rect(x, y, 14, 12, "class=\"activation kv-agg\"/>\n") + text(x + 18, y + 10, "tiles drawn as one box", "kv-s")
        return out
    }

    /// A tick step of 1, 2 or 5 × 10^k giving at most `count` ticks over `0...maxValue`.
    static func tickStep(_ maxValue: Double, count: Int) -> Double {
        guard maxValue > 0 else { return 1 }
        var step = pow(10, floor(log10(maxValue / Double(count))))
        for m in [1.0, 2, 5, 10] where maxValue / (step * m) <= Double(count) { step *= m; break }
        return step
    }

    static func binaryTicks(_ maxValue: Int) -> [Int] {
        guard maxValue > 0 else { return [0] }
        var step = 1
        while maxValue / step > 5 { step *= 2 }
        return Array(stride(from: 0, through: maxValue, by: step))
    }

    /// Draws one tier's timeline and occupancy; returns the next free y.
    static func lane(_ lane: MemoryTimeline.Lane, slots: Int, top: Double, into out: inout String) -> Double {
        var y = top + 14
        let drawn = lane.buffers.count == lane.residencies ? "\(lane.residencies) buffers"
            : "\(lane.residencies) residencies drawn as \(lane.buffers.count) (tiles of one tensor merged)"
        let used = lane.capacity > 0 ? String(format: " (%.1f%% of capacity)", Double(lane.peak) / Double(lane.capacity) * 100) : ""
        out += text(12, y, "\(lane.name): capacity \(humanBytes(Double(lane.capacity))), peak \(humanBytes(Double(lane.peak)))\(used), \(drawn)", "kv-t")
        y += 14
        out += text(12, y, lane.planAddresses ? "addresses are the plan's offsets"
                    : "addresses: one static region per value in value order at \(lane.alignment) B alignment (as the schedule lays them out)", "kv-s")
        y += 10
        // Address axis: the whole capacity where the plan places buffers, else the bytes in use.
        let axisMax = max(1, lane.planAddresses ? max(lane.capacity, lane.extent) : lane.extent)
        let plotTop = y, plotBottom = y + laneHeight
        let slotWidth = plotWidth / Double(max(1, slots))
        func x(_ slot: Int) -> Double { left + Double(slot) * slotWidth }
        func yOf(_ address: Int) -> Double { plotBottom - Double(address) / Double(axisMax) * laneHeight }
        for tick in binaryTicks(axisMax) {
            out += "<line x1=\"\(Markup.number(left))\" x2=\"\(Markup.number(left + plotWidth))\" y1=\"\(Markup.number(yOf(tick)))\" y2=\"\(Markup.number(yOf(tick)))\" class=\"kv-grid\"/>\n"
            out += text(left - 6, yOf(tick) + 4, humanBytes(Double(tick)), "kv-s", anchor: "end")
        }
        out += text(16, plotTop + laneHeight / 2, "address", "kv-s", anchor: "middle", rotated: true)
        let gap = slotWidth > 6 ? 0.5 : 0
        out += "<g class=\"kv-lane\" data-tier=\"\(Markup.escape(lane.name))\">\n"
        for b in lane.buffers {
            let x0 = x(b.from) + gap, w = max(0.6, Double(b.to - b.from) * slotWidth - 2 * gap)
            let top = yOf(b.offset + b.span), h = max(0.8, Double(b.span) / Double(axisMax) * laneHeight)
            let life = b.to - b.from == 1 ? "slot \(b.from)" : "slots \(b.from)–\(b.to - 1)"
            let size = b.residencies == 1 ? bytes(b.bytes) : "\(bytes(b.bytes)) in \(b.residencies) tiles"
            let at = b.isBoundingBox ? "within \(b.offset)..<\(b.offset + b.span)" : "at offset \(b.offset)"
            let title = "\(b.name) (\(b.kind.rawValue)): \(size), \(life), \(lane.name) \(at)"
            out += rect(x0, top, w, h, "class=\"kv-b \(b.kind.rawValue)\(b.isBoundingBox ? " kv-agg" : "")\" data-name=\"\(Markup.escape(b.name))\" "
                        + "data-kind=\"\(b.kind.rawValue)\" data-size=\"\(Markup.escape(size))\" data-life=\"\(Markup.escape(life))\" data-tier=\"\(Markup.escape(lane.name))\" "
                        + "data-at=\"\(Markup.escape(at))\"><title>\(Markup.escape(title))</title></rect>\n")
        }
        // Arrivals on the buffers they fill, where a slot is wide enough to show them; always in the strip below.
        let mark = min(3, slotWidth / 4)
        for a in lane.arrivals where slotWidth >= 6 {
            let top = yOf(a.offset + a.span), h = max(2, Double(a.span) / Double(axisMax) * laneHeight)
            let title = "\(a.reason) of \(a.value) from \(a.from) in slot \(a.slot): \(bytes(a.bytes))"
            out += rect(x(a.slot) + slotWidth / 2 - mark / 2, top, mark, h, "class=\"\(a.reason == "load" ? "kv-load" : "kv-out")\"><title>\(Markup.escape(title))</title></rect>\n")
        }
        out += "</g>\n"
        out += rect(left, plotTop, plotWidth, laneHeight, "class=\"kv-ax\"/>\n")
        // Bytes arriving per slot: loads up, stores and spills (red) stacked on them.
        y = plotBottom + 4
        let stripHeight = 18.0
        let maxIn = max(1, zip(lane.loadedBytes, lane.storedBytes).map { $0 + $1 }.max() ?? 1)
        for slot in 0..<min(slots, lane.loadedBytes.count) where lane.loadedBytes[slot] + lane.storedBytes[slot] > 0 {
            let hl = Double(lane.loadedBytes[slot]) / Double(maxIn) * stripHeight
            let hs = Double(lane.storedBytes[slot]) / Double(maxIn) * stripHeight
            let title = "slot \(slot): \(bytes(lane.loadedBytes[slot])) loaded, \(bytes(lane.storedBytes[slot])) stored or spilled into \(lane.name)"
            let w = max(0.8, slotWidth - 2 * gap)
            out += "<g><title>\(Markup.escape(title))</title>"
            if hl > 0 { out += rect(x(slot) + gap, y + stripHeight - hl, w, max(0.8, hl), "class=\"kv-load\"/>") }
            if hs > 0 { out += rect(x(slot) + gap, y + stripHeight - hl - hs, w, max(0.8, hs), "class=\"kv-out\"/>") }
            out += "</g>\n"
        }
        out += text(left - 6, y + 13, "arriving", "kv-s", anchor: "end")
        out += rect(left, y, plotWidth, stripHeight, "class=\"kv-ax\"/>\n")
        // Occupancy under the timeline, on its own axis.
        y += stripHeight + 4
        let occTop = y, occBottom = y + occupancyHeight
        let occMax = max(1, lane.planAddresses ? max(lane.capacity, lane.peak) : lane.peak)
        func yOcc(_ bytes: Int) -> Double { occBottom - Double(bytes) / Double(occMax) * occupancyHeight }
        var path = "M\(Markup.number(left)) \(Markup.number(occBottom))"
        for (slot, bytes) in lane.occupancy.enumerated() {
            path += "V\(Markup.number(yOcc(bytes)))H\(Markup.number(x(slot + 1)))"
        }
        path += "V\(Markup.number(occBottom))Z"
        out += "<path d=\"\(path)\" class=\"kv-occ\"><title>\(Markup.escape("\(lane.name) occupancy: peak \(bytes(lane.peak))"))</title></path>\n"
        if lane.capacity <= occMax {
            out += "<line x1=\"\(Markup.number(left))\" x2=\"\(Markup.number(left + plotWidth))\" y1=\"\(Markup.number(yOcc(lane.capacity)))\" y2=\"\(Markup.number(yOcc(lane.capacity)))\" class=\"kv-cap\"/>\n"
            out += text(left + plotWidth - 4, yOcc(lane.capacity) + 11, "capacity \(humanBytes(Double(lane.capacity)))", "kv-s", anchor: "end")
        }
        out += text(left - 6, occTop + 10, "occupancy", "kv-s", anchor: "end")
        out += text(left - 6, occTop + 24, "max \(humanBytes(Double(occMax)))", "kv-s", anchor: "end")
        out += rect(left, occTop, plotWidth, occupancyHeight, "class=\"kv-ax\"/>\n")
        // Slot axis.
        y = occBottom + 14
        let step = max(1, Int(tickStep(Double(slots), count: 12)))
        for slot in stride(from: 0, through: slots, by: step) {
            out += text(x(slot), y, "\(slot)", "kv-s", anchor: "middle")
        }
        out += text(left + plotWidth, y + 14, "slot (0 = prologue; step i computes in slot i + 1)", "kv-s", anchor: "end")
        return y + 28
    }

    /// Per-layer KV bytes and the tokens each precision keeps; returns the next free y.
    static func kvBars(_ kv: KVReport, top: Double, into out: inout String) -> Double {
        var y = top + 14
        out += text(12, y, "KV cache per layer — policy \(kv.policy) (\(kv.status)), \(bytes(kv.bytes)) of a \(bytes(kv.budget)) budget", "kv-t")
        y += 8
        let rowHeight = 18.0, barX = left + 8, bytesWidth = 360.0, tokensX = barX + bytesWidth + 110, tokensWidth = width - right - tokensX
        let maxBytes = max(1, kv.layers.map(\.bytes).max() ?? 1)
        let maxTokens = max(1, kv.layers.map { $0.sinkTokens + $0.windowTokens + $0.highTokens + $0.lowTokens }.max() ?? 1)
        y += 16
        out += text(barX, y, "bytes", "kv-s") + text(tokensX, y, "tokens by precision (key/value bits)", "kv-s")
        y += 6
        for l in kv.layers {
            out += text(left - 6, y + 13, "layer \(l.layer)", "kv-s", anchor: "end")
            let w = Double(l.bytes) / Double(maxBytes) * bytesWidth
            out += rect(barX, y + 2, max(0.5, w), rowHeight - 4, "class=\"cache\"><title>\(Markup.escape("layer \(l.layer): \(bytes(l.bytes))"))</title></rect>\n")
            out += text(barX + max(0.5, w) + 6, y + 13, humanBytes(Double(l.bytes)), "kv-s")
            var x = tokensX
            let segments: [(Int, String, String, String)] = [
                (l.sinkTokens, "#1b5e20", "\(l.sinkTokens) sink tokens at 16 bits", ""),
                (l.windowTokens, "#388e3c", "\(l.windowTokens) window tokens at 16 bits", "16"),
                (l.highTokens, "#81c784", "\(l.highTokens) tokens at k\(l.keyBitsHigh)/v\(l.valueBitsHigh) bits", "k\(l.keyBitsHigh)/v\(l.valueBitsHigh)"),
                (l.lowTokens, l.lowBits == 0 ? "#eeeeee" : "#c8e6c9", l.lowBits == 0 ? "\(l.lowTokens) tokens evicted" : "\(l.lowTokens) tokens at \(l.lowBits) bits",
                 l.lowBits == 0 ? "evicted" : "\(l.lowBits) bits"),
            ]
            for (tokens, colour, title, label) in segments where tokens > 0 {
                let w = Double(tokens) / Double(maxTokens) * tokensWidth
                out += rect(x, y + 2, w, rowHeight - 4, "fill=\"\(colour)\" stroke=\"#777\" stroke-width=\"0.4\"><title>\(Markup.escape("layer \(l.layer): \(title)"))</title></rect>\n")
                if w >= Double(label.count) * 6.5 + 8 && !label.isEmpty { out += text(x + 4, y + 13, label, "kv-s") }
                x += w
            }
            y += rowHeight
        }
        y += 12
        out += text(tokensX, y, "dark: sinks, window (16 bits) · mid: high precision · light: low precision · grey: evicted", "kv-s")
        return y + 10
    }
}
