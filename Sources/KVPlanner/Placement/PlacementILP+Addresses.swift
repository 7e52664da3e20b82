import KVAlloc
import KVSolver

/// Scratchpad addresses inside the window ILP.
///
/// Rationale. Residency alone can promise bytes that fragmentation then takes away: the windows
/// of a 7B decode step on edge-npu asked for residencies no packing could hold, so the whole
/// ILP result was thrown away. COSMA's answer is to decide offsets in the same program: one
/// offset variable per tensor, and for every pair whose residencies *can* overlap in time an
/// orientation binary with big-M non-overlap rows (M = the capacity), switched on by a
/// co-residency binary. Here, per window:
///   - offsets are in units of the GCD of the capacity, the footprints and the heuristic's
///     offsets (so every heuristic offset is representable and the integers stay small);
///   - a value carried across a window boundary keeps the heuristic's offset there, since the
///     other side of the boundary is not re-decided;
///   - a value the heuristic keeps at two offsets inside one window is *pinned*: its residency,
///     loads and stores stay the heuristic's and it is a fixed obstacle at those offsets;
///   - pairs are created only where both residencies are possible at a common slot; a pair that
///     must be co-resident (one step uses both) needs no co-residency binary.
/// The heuristic's offsets satisfy every row, so it stays a feasible warm start, and the plan
/// the windows assemble has valid offsets everywhere without a separate packing pass.
extension PlacementILP {
    /// How a window's values are addressed.
    struct AddressLayout {
        /// Offsets are multiples of this many bytes.
        var unit: Int
        /// Whether the window gets address rows (false when a heuristic offset is unknown).
        var addressed: Bool
        /// Values whose decisions stay the heuristic's (several offsets in the window).
        var pinned: Set<Int>
        /// Offsets (bytes) fixed by a boundary crossing.
        var fixed: [Int: Int]
        /// The heuristic's offset (bytes) of every value that is not pinned (0 when never resident).
        var warm: [Int: Int]
    }

    /// Which values of a window are pinned or fixed, and the offset unit.
    func addressLayout(values: [Int], window: ClosedRange<Int>, d: Decisions,
                       carriedIn: Set<Int>, carriedOut: Set<Int>) -> AddressLayout {
        let a = window.lowerBound, b = window.upperBound
        var layout = AddressLayout(unit: 1, addressed: true, pinned: [], fixed: [:], warm: [:])
        var g = capacity
        for v in values {
            g = gcd(g, p.footprint(v, in: p.computeTier))
            var seen = Set<Int>()
            for s in window where d.resident[v][s] { seen.insert(d.offsets[v][s]) }
            var boundary: Int?
            if carriedIn.contains(v) { boundary = d.offsets[v][a - 1]; seen.insert(boundary!) }
            if carriedOut.contains(v) { boundary = d.offsets[v][b + 1]; seen.insert(boundary!) }
            if seen.contains(-1) { layout.addressed = false }
            for o in seen where o > 0 { g = gcd(g, o) }
            if seen.count > 1 { layout.pinned.insert(v); continue }
            layout.warm[v] = seen.first ?? 0
            if let boundary { layout.fixed[v] = boundary }
        }
        layout.unit = max(1, g)
        return layout
    }

    /// Adds offset variables and non-overlap rows; returns the offset variable of every addressed value.
    /// `possible` lists, per value, the window slots at which its residency variable may be 1.
    func addAddressRows(_ m: inout LinearModel, _ warm: inout [Double], layout: AddressLayout, values: [Int],
                        window: ClosedRange<Int>, r: [Int: [Int: Variable]], possible: [Int: [Int]],
                        usedAt: [Int: [Int]], d: Decisions) throws -> [Int: Variable] {
        guard layout.addressed else { return [:] }
        let unit = Double(layout.unit)
        let bigM = Double(capacity) / unit
        let c0 = p.computeTier
        func size(_ v: Int) -> Double { Double(p.footprint(v, in: c0)) / unit }
        func warmR(_ v: Int, _ s: Int) -> Bool { warm[r[v]![s]!.index] > 0.5 }

        var offset = [Int: Variable]()
        var warmOffset = [Int: Double]()
        for v in values where !layout.pinned.contains(v) && !(possible[v] ?? []).isEmpty {
            let fixed = layout.fixed[v].map { Double($0) / unit }
            let highest = max(0, ((Double(capacity) - Double(p.footprint(v, in: c0))) / unit).rounded(.down))
            offset[v] = try m.addVariable("a[\(v)]", lower: fixed ?? 0, upper: fixed ?? highest, kind: .integer)
            warmOffset[v] = Double(layout.warm[v]!) / unit
            warm.append(warmOffset[v]!)
        }
        let addressed = offset.keys.sorted()

        // Pairs of addressed values.
        for (i, u) in addressed.enumerated() {
            let slotsU = Set(possible[u]!)
            for v in addressed[(i + 1)...] {
                let common = possible[v]!.filter { slotsU.contains($0) }
                guard !common.isEmpty else { continue }
                if let fu = layout.fixed[u], let fv = layout.fixed[v] {
                    // Both offsets fixed: apart, or never resident together.
                    if fu + p.footprint(u, in: c0) <= fv || fv + p.footprint(v, in: c0) <= fu { continue }
                    for s in common { try m.add(r[u]![s]! + r[v]![s]! <= 1, name: "apart[\(u),\(v),\(s)]") }
                    continue
                }
                let forced = common.contains { usedAt[u]!.contains($0) && usedAt[v]!.contains($0) }
                try addPair(&m, &warm, bigM: bigM, name: "\(u),\(v)", common: common, forced: forced,
                            lower: (offset[u]!, size(u), warmOffset[u]!), upper: .variable(offset[v]!, size(v), warmOffset[v]!),
                            r: { [r] s in [r[u]![s]!, r[v]![s]!] }, warmTogether: common.contains { warmR(u, $0) && warmR(v, $0) })
            }
        }
        // Addressed values against the fixed offsets of pinned ones.
        for q in values where layout.pinned.contains(q) {
            var slotsAt = [Int: [Int]]()
            for s in window where d.resident[q][s] { slotsAt[d.offsets[q][s], default: []].append(s) }
            for (f, slots) in slotsAt.sorted(by: { $0.key < $1.key }) {
                let held = Set(slots)
                for u in addressed {
                    let common = possible[u]!.filter { held.contains($0) }
                    guard !common.isEmpty else { continue }
                    if let fu = layout.fixed[u] {
                        if fu + p.footprint(u, in: c0) <= f || f + p.footprint(q, in: c0) <= fu { continue }
                        for s in common { try m.add(LinearExpression([(r[u]![s]!, 1)]) <= 0, name: "apart[\(u),\(q)@\(f),\(s)]") }
                        continue
                    }
                    let forced = common.contains { usedAt[u]!.contains($0) }
                    try addPair(&m, &warm, bigM: bigM, name: "\(u),\(q)@\(f)", common: common, forced: forced,
                                lower: (offset[u]!, size(u), warmOffset[u]!), upper: .fixed(Double(f) / unit, size(q)),
                                r: { [r] s in [r[u]![s]!] }, warmTogether: common.contains { warmR(u, $0) })
                }
            }
        }
        return offset
    }

    /// Offsets for the residency runs of a window's values after its residency was re-decided:
    /// runs crossing a boundary keep the offset they have there, the others go, largest first, to
    /// the lowest aligned offset clear of every run they overlap in time. False (and `d` untouched)
    /// when some run does not fit.
    func packWindow(_ window: ClosedRange<Int>, _ d: inout Decisions, values: [Int],
                    carriedIn: Set<Int>, carriedOut: Set<Int>) -> Bool {
        struct Run { var value: Int; var from: Int; var to: Int; var size: Int; var offset: Int? }
        let a = window.lowerBound, b = window.upperBound, c0 = p.computeTier
        let alignment = max(1, p.target.tiers[c0].alignment)
        var runs: [Run] = []
        for v in values {
            var start: Int?
            for s in a...(b + 1) {
                let here = s <= b && d.resident[v][s]
                if let from = start, !here || d.loads[v].contains(s) {
                    var run = Run(value: v, from: from, to: s, size: p.footprint(v, in: c0), offset: nil)
                    if from == a, carriedIn.contains(v) { run.offset = d.offsets[v][a - 1] }
                    if s == b + 1, carriedOut.contains(v) {
                        let out = d.offsets[v][b + 1]
                        if let o = run.offset, o != out { return false }
                        run.offset = out
                    }
                    if let o = run.offset, o < 0 { return false }
                    runs.append(run)
                    start = nil
                }
                if here && start == nil { start = s }
            }
        }
        var placed = runs.filter { $0.offset != nil }
        var free = runs.filter { $0.offset == nil }
        free.sort { ($0.size, $1.from, $1.value) > ($1.size, $0.from, $0.value) }
        for i in placed.indices {
            for j in placed.indices where j > i && placed[i].from < placed[j].to && placed[j].from < placed[i].to {
                if placed[i].offset! < placed[j].offset! + placed[j].size && placed[j].offset! < placed[i].offset! + placed[i].size { return false }
            }
        }
        let fixedCount = placed.count
        var greedyFits = true
        for var run in free {
            let live = placed.filter { $0.from < run.to && run.from < $0.to }.sorted { $0.offset! < $1.offset! }
            var candidate = 0
            for other in live {
                if candidate + run.size <= other.offset! { break }
                candidate = max(candidate, (other.offset! + other.size + alignment - 1) / alignment * alignment)
            }
            guard candidate + run.size <= capacity else { greedyFits = false; break }
            run.offset = candidate
            placed.append(run)
        }
        if !greedyFits {
            // The exact packer (KVAlloc) with the boundary runs pinned, briefly.
            placed.removeSubrange(fixedCount...)
            let all = placed + free
            let buffers = all.enumerated().map { k, run in
                Buffer(id: String(k), lower: run.from, upper: run.to, size: run.size, alignment: alignment, fixedOffset: run.offset)
            }
            guard let result = try? Allocator.allocate(KVAlloc.Problem(buffers: buffers, capacity: capacity), goal: .fit(capacity: capacity),
                                                       algorithm: .exact, timeLimit: packingTimeLimit),
                  result.verdict == .fits else { PlacementPlanner.trace("pack: \(all.count) runs (\(fixedCount) at boundary offsets) do not pack"); return false }
            placed = all.enumerated().map { k, run in
                var run = run
                run.offset = result.solution.offsets[k]
                return run
            }
        }
        for v in values { for s in window { d.offsets[v][s] = -1 } }
        for run in placed { for s in run.from..<run.to { d.offsets[run.value][s] = run.offset! } }
        return true
    }

    /// How long the exact packer may try one window.
    var packingTimeLimit: Duration { .milliseconds(200) }

    /// The other side of a pair: an offset variable, or a fixed obstacle.
    enum PairSide {
        case variable(Variable, Double, Double)  // offset, size, warm offset (units)
        case fixed(Double, Double)               // offset, size (units)
    }

    /// Non-overlap of `lower` and `upper` whenever they are resident together:
    /// a_u + w_u ≤ a_v + M(1 − z) + M(1 − o) and a_v + w_v ≤ a_u + M z + M(1 − o),
    /// with o ≥ Σ r − (|r| − 1) at every common slot (o = 1 when the pair is forced together).
    private func addPair(_ m: inout LinearModel, _ warm: inout [Double], bigM: Double, name: String, common: [Int], forced: Bool,
                         lower: (Variable, Double, Double), upper: PairSide, r: (Int) -> [Variable], warmTogether: Bool) throws {
        func binary(_ name: String, _ start: Bool) throws -> Variable {
            let v = try m.addVariable(name, lower: 0, upper: 1, kind: .binary)
            warm.append(start ? 1 : 0)
            return v
        }
        let (au, wu, warmU) = lower
        var o: Variable?
        if !forced {
            let together = try binary("o[\(name)]", warmTogether)
            for s in common {
                let rs = r(s)
                try m.add(LinearExpression(rs.map { ($0, 1) } + [(together, -1)]) <= Double(rs.count - 1), name: "together[\(name),\(s)]")
            }
            o = together
        }
        let slack = o == nil ? 1.0 : 2.0  // the M(1 − o) term with o = 1 fixed, or M·o moved left
        switch upper {
        case let .variable(av, wv, warmV):
            let below = try binary("z[\(name)]", warmU + wu <= warmV || (!warmTogether && warmU <= warmV))
            var e1 = LinearExpression([(au, 1), (av, -1), (below, bigM)])
            var e2 = LinearExpression([(av, 1), (au, -1), (below, -bigM)])
            if let o { e1 = e1 + bigM * o; e2 = e2 + bigM * o }
            try m.add(e1 <= slack * bigM - wu, name: "below[\(name)]")
            try m.add(e2 <= (slack - 1) * bigM - wv, name: "above[\(name)]")
        case let .fixed(f, wv):
            let below = try binary("z[\(name)]", warmU + wu <= f || (!warmTogether && warmU <= f))
            var e1 = LinearExpression([(au, 1), (below, bigM)])
            var e2 = LinearExpression([(au, -1), (below, -bigM)])
            if let o { e1 = e1 + bigM * o; e2 = e2 + bigM * o }
            try m.add(e1 <= f + slack * bigM - wu, name: "below[\(name)]")
            try m.add(e2 <= (slack - 1) * bigM - f - wv, name: "above[\(name)]")
        }
    }
}

/// Greatest common divisor (gcd(x, 0) = x).
func gcd(_ a: Int, _ b: Int) -> Int {
    var (x, y) = (abs(a), abs(b))
    while y != 0 { (x, y) = (y, x % y) }
    return x
}
