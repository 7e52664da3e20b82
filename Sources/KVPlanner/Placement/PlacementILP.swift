import Foundation
import KVArtifact
import KVSolver

/// The placement ILP: compute-tier residency, loads (with prefetch) and write-backs, solved by GLPK.
///
/// Rationale. COSMA and the mallocGame line decide residency and movement jointly in one integer
/// program; a whole decode step of a 7B model has ~30,000 tiles, far beyond one GLPK model. So
/// the program is solved in *windows* of consecutive steps, each anchored at its two ends to
/// the state of the best heuristic schedule (what is resident in the compute tier across the
/// boundary, and which values have a current copy outside it). Anchoring makes every window
/// independent, makes the heuristic restricted to the window a feasible warm start (handed to
/// GLPK, so no window ends worse than the heuristic), and keeps the concatenation a valid plan.
/// Windows are solved costliest first until the time limit; the rest keep the heuristic.
/// Docs/formulation.md writes the model out; the names there match the names here.
struct PlacementILP {
    let p: PlacementProblem
    let objective: PlacementObjective
    /// Compute-tier bytes residencies may use (the budget at which the heuristic's addresses fit).
    let capacity: Int
    /// A load may be issued at most this many slots before the value's next use.
    let lookahead: Int
    /// Per value, the slots whose step writes it (ascending), and the last slot that touches it.
    let writeSlots: [[Int]]
    private let lastTouch: [Int]

    init(_ p: PlacementProblem, objective: PlacementObjective, capacity: Int, lookahead: Int = 4) {
        self.p = p
        self.objective = objective
        self.capacity = capacity
        self.lookahead = lookahead
        var w = Array(repeating: [Int](), count: p.values.count)
        var last = Array(repeating: 0, count: p.values.count)
        for (i, step) in p.steps.enumerated() {
            for v in step.writes { w[v].append(i + 1) }
            for v in step.reads + step.writes { last[v] = i + 1 }
        }
        writeSlots = w
        lastTouch = last
    }

    /// Per-slot entries of one value, stored only over the span where any differs from `none`
    /// (values live briefly, so dense per-slot arrays would be mostly empty).
    struct SlotMap<Element: Equatable>: Equatable {
        private let none: Element
        private var lo = 0
        private var items: [Element] = []
        init(none: Element) { self.none = none }
        subscript(_ s: Int) -> Element {
            get { s >= lo && s < lo + items.count ? items[s - lo] : none }
            set {
                if items.isEmpty { guard newValue != none else { return }; lo = s; items = [newValue]; return }
                if s < lo { guard newValue != none else { return }; items.insert(contentsOf: repeatElement(none, count: lo - s), at: 0); lo = s }
                if s >= lo + items.count { guard newValue != none else { return }; items.append(contentsOf: repeatElement(none, count: s - lo - items.count + 1)) }
                items[s - lo] = newValue
            }
        }
        /// The slots stored (every slot holding something other than `none` lies inside).
        var span: Range<Int> { lo..<(lo + items.count) }
    }

    /// Per value: slots at which it is resident in the compute tier, its offset there (-1 when
    /// not known yet), and the slots it is loaded into or stored out of the compute tier.
    struct Decisions: Equatable {
        var resident: [SlotMap<Bool>]
        var offsets: [SlotMap<Int>]
        var loads: [Set<Int>]
        var stores: [Set<Int>]
    }

    /// Solutions of windows already solved, by their signature (identical layers are solved once).
    final class SolutionCache {
        struct Entry {
            var result: WindowResult
            var resident: [[Bool]], offsets: [[Int]], loads: [[Bool]], stores: [[Bool]]  // per local value, per window slot
        }
        var entries: [String: Entry] = [:]
        /// Free-boundary LP bounds (µs) by window signature.
        var bounds: [String: Double] = [:]
    }
    let cache = SolutionCache()
    let residentIndex = ResidentIndex()

    /// What the window solve reports.
    struct WindowResult {
        var improved: Bool
        var reused: Bool = false
        var objective: Double
        var warmObjective: Double
        var bound: Double?
        var status: SolveStatus
    }

    // MARK: From and to schedules

    /// The decisions a schedule makes (compute-tier residency per slot, loads into it, stores out of it).
    func decisions(of s: Schedule) -> Decisions {
        let n = p.values.count, slots = p.slotCount
        var d = Decisions(resident: Array(repeating: SlotMap(none: false), count: n),
                          offsets: Array(repeating: SlotMap(none: -1), count: n),
                          loads: Array(repeating: [], count: n), stores: Array(repeating: [], count: n))
        for r in s.residencies where r.tier == p.computeTier {
            for t in r.from..<min(r.to, slots) {
                d.resident[r.value][t] = true
                d.offsets[r.value][t] = r.offset ?? -1
            }
        }
        for t in s.transfers {
            if t.to == p.computeTier { d.loads[t.value].insert(t.slot) }
            if t.from == p.computeTier { d.stores[t.value].insert(t.slot) }
        }
        return d
    }

    /// The schedule of `d`: residency runs, loads and stores (staged through an intermediate tier where needed).
    func schedule(of d: Decisions) -> Schedule {
        var residencies: [Residency] = []
        var transfers: [Transfer] = []
        let c0 = p.computeTier, slots = p.slotCount
        for v in p.values.indices {
            var start: Int?
            // A residency ends where the value leaves, is loaded afresh, or moves to another offset.
            let span = d.resident[v].span
            for t in span.lowerBound...min(slots, span.upperBound) {
                let here = t < slots && d.resident[v][t]
                if let s = start, !here || d.loads[v].contains(t) || d.offsets[v][t] != d.offsets[v][s] {
                    let o = d.offsets[v][s]
                    residencies.append(Residency(value: v, tier: c0, from: s, to: t, offset: o >= 0 ? o : nil))
                    start = nil
                }
                if here && start == nil { start = t }
            }
            let bytes = p.values[v].bytes
            let backing = p.values[v].home ?? p.spillTier
            for t in d.loads[v].sorted() {
                if let m = p.route(from: backing, to: c0)?.via {
                    transfers.append(Transfer(value: v, from: backing, to: m, bytes: bytes, slot: t - 1, reason: "stage"))
                    transfers.append(Transfer(value: v, from: m, to: c0, bytes: bytes, slot: t, reason: "load"))
                    residencies.append(Residency(value: v, tier: m, from: t - 1, to: t + 1, offset: nil))
                } else {
                    transfers.append(Transfer(value: v, from: backing, to: c0, bytes: bytes, slot: t, reason: "load"))
                }
            }
            let reason = p.values[v].home == nil ? "spill" : "store"
            for t in d.stores[v].sorted() {
                if let m = p.route(from: c0, to: backing)?.via {
                    let first = min(t, slots - 2)
                    transfers.append(Transfer(value: v, from: c0, to: m, bytes: bytes, slot: first, reason: "stage"))
                    transfers.append(Transfer(value: v, from: m, to: backing, bytes: bytes, slot: first + 1, reason: reason))
                    residencies.append(Residency(value: v, tier: m, from: first, to: first + 2, offset: nil))
                } else {
                    transfers.append(Transfer(value: v, from: c0, to: backing, bytes: bytes, slot: t, reason: reason))
                }
            }
        }
        residencies.sort { ($0.tier, $0.from, $0.value, $0.to) < ($1.tier, $1.from, $1.value, $1.to) }
        transfers.sort { ($0.slot, $0.value, $0.from, $0.to) < ($1.slot, $1.value, $1.from, $1.to) }
        return Schedule(residencies: residencies, transfers: transfers)
    }

    // MARK: The window model

    /// Transfer time of `v` over the link `a → b` (bytes / bandwidth + latency), in microseconds.
    private func micros(_ v: Int, _ a: Int, _ b: Int) -> Double {
        guard let l = p.target.link(a, b) else { return 0 }
        return (Double(p.values[v].bytes) / l.bandwidth + l.latency) * 1e6
    }

    /// Re-decides slots `window` (step slots, within 1...steps) of `d` in place; the decisions
    /// outside the window, and the state across its two boundaries, stay as they are.
    ///
    /// First residency and movement alone (fast, and shared by identical windows); then offsets for
    /// the window's residency runs by a greedy packing around the offsets fixed at its boundaries;
    /// only when that packing fails is the window solved again with offsets in the program.
    /// With `jointAddresses` the offsets are in the program from the start (exact within the window, slower).
    func solve(window: ClosedRange<Int>, _ d: inout Decisions, timeLimit: Double, gap: Double,
               jointAddresses: Bool = false) throws -> WindowResult {
        let started = Date()
        let before = WindowState(window: window, d: d, values: members(window, d))
        if jointAddresses {
            return try solveModel(window: window, &d, values: before.values, timeLimit: timeLimit, gap: gap, addresses: true, bytes: capacity)
        }
        var first: WindowResult?
        // Residency alone, at the whole tier and then at less, until its runs pack (fragmentation
        // and the offsets fixed at the boundaries can make a full tier unpackable).
        for sixteenths in [16, 15, 14, 12] {
            let remaining = timeLimit - Date().timeIntervalSince(started)
            guard remaining > 0.05 else { break }
            let r = try solveModel(window: window, &d, values: before.values, timeLimit: remaining, gap: gap,
                                   addresses: false, bytes: capacity / 16 * sixteenths)
            if first == nil { first = r }
            guard r.improved else { break }
            if packWindow(window, &d, values: before.values, carriedIn: before.carriedIn, carriedOut: before.carriedOut) { return r }
            before.restore(&d)
        }
        guard let first, first.improved else { return first ?? WindowResult(improved: false, objective: 0, warmObjective: 0, bound: nil, status: .noSolutionFound) }
        let remaining = timeLimit - Date().timeIntervalSince(started)
        guard remaining > 0.1 else { return WindowResult(improved: false, objective: first.warmObjective, warmObjective: first.warmObjective, bound: first.bound, status: .noSolutionFound) }
        return try solveModel(window: window, &d, values: before.values, timeLimit: remaining, gap: gap, addresses: true, bytes: capacity)
    }

    /// The values a window's model covers: touched in the window, or resident at its first or last slot.
    ///
    /// Residents are looked up in an index of the decisions first seen; windows are disjoint, so
    /// the slots of a window not yet solved still hold what the index says.
    func members(_ window: ClosedRange<Int>, _ d: Decisions) -> [Int] {
        if residentIndex.bySlot.isEmpty {
            for v in p.values.indices { for s in d.resident[v].span where d.resident[v][s] { residentIndex.bySlot[s, default: []].append(v) } }
            residentIndex.bySlot[-1] = []
        }
        var members = Set<Int>()
        for s in window { for v in p.steps[s - 1].reads + p.steps[s - 1].writes { members.insert(v) } }
        for s in [window.lowerBound, window.upperBound] {
            for v in residentIndex.bySlot[s] ?? [] where d.resident[v][s] { members.insert(v) }
        }
        return members.sorted()
    }

    /// Per slot, the values resident in the first decisions a window was solved from.
    final class ResidentIndex { var bySlot: [Int: [Int]] = [:] }

    /// The decisions of a window's values over its slots, to put back after a failed attempt.
    struct WindowState {
        let window: ClosedRange<Int>
        let values: [Int]
        let carriedIn: Set<Int>, carriedOut: Set<Int>
        private let saved: [(resident: [Bool], offsets: [Int], loads: [Bool], stores: [Bool])]

        init(window: ClosedRange<Int>, d: Decisions, values: [Int]) {
            self.window = window
            self.values = values
            let a = window.lowerBound, b = window.upperBound
            carriedIn = Set(values.filter { d.resident[$0][a - 1] && d.resident[$0][a] && !d.loads[$0].contains(a) })
            carriedOut = Set(values.filter { d.resident[$0][b] && d.resident[$0][b + 1] && !d.loads[$0].contains(b + 1) })
            saved = values.map { v in
                (window.map { d.resident[v][$0] }, window.map { d.offsets[v][$0] },
                 window.map { d.loads[v].contains($0) }, window.map { d.stores[v].contains($0) })
            }
        }

        func restore(_ d: inout Decisions) {
            for (k, v) in values.enumerated() {
                for (o, s) in window.enumerated() {
                    d.resident[v][s] = saved[k].resident[o]
                    d.offsets[v][s] = saved[k].offsets[o]
                    if saved[k].loads[o] { d.loads[v].insert(s) } else { d.loads[v].remove(s) }
                    if saved[k].stores[o] { d.stores[v].insert(s) } else { d.stores[v].remove(s) }
                }
            }
        }
    }

    /// The steps of a window with values renamed by their position in `local` (part of a window's signature).
    func stepSignature(_ window: ClosedRange<Int>, local: [Int]) -> String {
        var localID = [Int: Int]()
        for (k, v) in local.enumerated() { localID[v] = k }
        var key = ""
        for s in window {
            let st = p.steps[s - 1]
            key += "\(st.computeSeconds.bitPattern):\(st.reads.map { localID[$0]! }):\(st.writes.map { localID[$0]! });"
        }
        return key
    }

    /// One window model: residency and movement, and with `addresses` the offsets too.
    /// `bytes` is the capacity the residency rows allow (the offsets, when modelled, always have the whole tier).
    private func solveModel(window: ClosedRange<Int>, _ d: inout Decisions, values: [Int], timeLimit: Double, gap: Double,
                            addresses: Bool, bytes: Int) throws -> WindowResult {
        let a = window.lowerBound, b = window.upperBound
        let c0 = p.computeTier
        // Who takes part: values touched in the window, or resident across either boundary.
        var reads = [Int: Set<Int>](), writes = [Int: Set<Int>]()
        for s in window {
            for v in p.steps[s - 1].reads { reads[s, default: []].insert(v) }
            for v in p.steps[s - 1].writes { writes[s, default: []].insert(v) }
        }

        /// Whether the backing copy of `v` is current after slot `t` under `d` (writes at t precede stores at t).
        func validAfter(_ v: Int, _ t: Int) -> Bool {
            let initial: Set<ValueKind> = [.weight, .input, .cache]
            guard let w = writeSlots[v].last(where: { $0 <= t }) else {
                return initial.contains(p.values[v].kind) && p.values[v].home != nil
            }
            return d.stores[v].contains { $0 >= w && $0 <= t }
        }
        let carriedIn = Set(values.filter { d.resident[$0][a - 1] && d.resident[$0][a] && !d.loads[$0].contains(a) })
        let carriedOut = Set(values.filter { d.resident[$0][b] && b + 1 < p.slotCount && d.resident[$0][b + 1] && !d.loads[$0].contains(b + 1) })
        let validIn = Set(values.filter { validAfter($0, a - 1) })
        let validOutHeuristic = Set(values.filter { validAfter($0, b) })

        // The window's signature: everything the model below depends on, with values renamed in
        // order of first mention. Two windows with one signature have one solution (layers repeat).
        var local: [Int] = []
        var seen = Set<Int>()
        for s in window { for v in p.steps[s - 1].reads + p.steps[s - 1].writes where seen.insert(v).inserted { local.append(v) } }
        for v in values where seen.insert(v).inserted { local.append(v) }
        var key = "\(objective.rawValue)|\(bytes)|\(lookahead)|\(addresses)|" + stepSignature(window, local: local)
        for v in local {
            let value = p.values[v]
            let bits = window.map { (d.resident[v][$0] ? "r" : "") + (d.loads[v].contains($0) ? "x" : "") + (d.stores[v].contains($0) ? "y" : "") + "," }.joined()
            key += "|\(value.bytes),\(value.home ?? -1),\(value.kind.rawValue),\(value.mustPersist),\(carriedIn.contains(v)),\(carriedOut.contains(v)),"
            key += "\(validIn.contains(v)),\(validOutHeuristic.contains(v)),\(lastTouch[v] > b),\(d.resident[v][a - 1]),\(bits)"
            if addresses { key += ((a - 1)...(b + 1)).map { "\(d.offsets[v][$0])" }.joined(separator: ",") }
        }
        if let hit = cache.entries[key] {
            if hit.result.improved {
                for (k, v) in local.enumerated() {
                    for (o, s) in window.enumerated() {
                        d.resident[v][s] = hit.resident[k][o]
                        d.offsets[v][s] = hit.offsets[k][o]
                        if hit.loads[k][o] { d.loads[v].insert(s) } else { d.loads[v].remove(s) }
                        if hit.stores[k][o] { d.stores[v].insert(s) } else { d.stores[v].remove(s) }
                    }
                }
            }
            var r = hit.result
            r.reused = true
            return r
        }
        func remember(_ r: WindowResult) {
            cache.entries[key] = SolutionCache.Entry(
                result: r,
                resident: local.map { v in window.map { d.resident[v][$0] } },
                offsets: local.map { v in window.map { d.offsets[v][$0] } },
                loads: local.map { v in window.map { d.loads[v].contains($0) } },
                stores: local.map { v in window.map { d.stores[v].contains($0) } })
        }

        var m = LinearModel(name: "placement-window-\(a)-\(b)")
        var r = [Int: [Int: Variable]](), x = [Int: [Int: Variable]](), y = [Int: [Int: Variable]]()
        let unit = Double(max(1, p.target.tiers[c0].alignment))
        var warm: [Double] = []
        func add(_ name: String, _ kind: VariableKind, lower: Double = 0, upper: Double = 1, start: Double) throws -> Variable {
            let v = try m.addVariable(name, lower: lower, upper: upper, kind: kind)
            warm.append(start)
            return v
        }
        let layout = addresses ? addressLayout(values: values, window: window, d: d, carriedIn: carriedIn, carriedOut: carriedOut)
            : AddressLayout(unit: 1, addressed: false, pinned: [], fixed: [:], warm: [:])
        var usedAt = [Int: [Int]]()  // per value, the window slots whose step touches it
        var mayReside = [Int: Set<Int>]()  // per value, the window slots whose residency is not fixed at 0
        for v in values {
            let useSlots = window.filter { reads[$0]?.contains(v) == true || writes[$0]?.contains(v) == true }
            usedAt[v] = useSlots
            let writeSlots = window.filter { writes[$0]?.contains(v) == true }
            let storable = !writeSlots.isEmpty || (carriedIn.contains(v) && !validIn.contains(v))
            // Residency after the last use serves nothing unless the value is carried out or still to be stored.
            let usefulUntil = carriedOut.contains(v) || storable ? b : (useSlots.last ?? a - 1)
            let pinned = layout.pinned.contains(v)
            for s in window {
                let must = useSlots.contains(s)
                let isResident = d.resident[v][s] && (pinned || s <= usefulUntil)
                let rStart: Double = isResident ? 1 : 0
                let rUpper: Double = pinned ? rStart : (s <= usefulUntil ? 1 : 0)
                r[v, default: [:]][s] = try add("r[\(v),\(s)]", .binary, lower: pinned ? rStart : (must ? 1 : 0),
                                                upper: rUpper, start: rStart)
                if rUpper == 1 { mayReside[v, default: []].insert(s) }
                // Loads: ahead of a use within the look-ahead, of a value that can have a current copy outside.
                // (Also wherever the heuristic loads, and late in the window for what it carries out, so
                // prefetches across the boundary and long hoists keep the warm start feasible.)
                let ahead = useSlots.contains { $0 >= s && $0 - s <= lookahead } || d.loads[v].contains(s)
                    || (carriedOut.contains(v) && b - s < lookahead)
                let canLoad = ahead && (validIn.contains(v) || writeSlots.contains { $0 < s })
                let loaded: Double = d.loads[v].contains(s) ? 1 : 0
                if canLoad || (pinned && loaded == 1) {
                    x[v, default: [:]][s] = try add("x[\(v),\(s)]", .binary, lower: pinned ? loaded : 0, upper: pinned ? loaded : 1, start: loaded)
                }
                let stored: Double = d.stores[v].contains(s) ? 1 : 0
                if storable && (writeSlots.contains { $0 <= s } || carriedIn.contains(v)) || (pinned && stored == 1) {
                    y[v, default: [:]][s] = try add("y[\(v),\(s)]", .binary, lower: pinned ? stored : 0, upper: pinned ? stored : 1, start: stored)
                }
            }
        }
        // Residency continues, is loaded, or is written.
        for v in values {
            for s in window {
                var e = LinearExpression([(r[v]![s]!, 1)])
                if s > a { e = e - r[v]![s - 1]! }
                if let xv = x[v]?[s] { e = e - xv }
                let before: Double = s == a ? (carriedIn.contains(v) ? 1 : 0) : 0
                let written: Double = writes[s]?.contains(v) == true ? 1 : 0
                try m.add(e <= before + written, name: "continuity[\(v),\(s)]")
                if let yv = y[v]?[s] { try m.add(yv - r[v]![s]! <= 0, name: "store-resident[\(v),\(s)]") }
                // A load needs a current copy outside: a store since the last write in the window.
                if let xv = x[v]?[s] {
                    if let w = window.filter({ $0 < s && writes[$0]?.contains(v) == true }).max() {
                        let since = (w..<s).compactMap { y[v]?[$0] }
                        try m.add(LinearExpression([(xv, 1)] + since.map { ($0, -1) }) <= 0, name: "load-valid[\(v),\(s)]")
                    }
                }
            }
            // The end boundary: what the heuristic carries stays resident; what must be current outside is.
            if carriedOut.contains(v) { try m.add(LinearExpression([(r[v]![b]!, 1)]) >= 1, name: "carry[\(v)]") }
            let needValid = validOutHeuristic.contains(v)
                || (!carriedOut.contains(v) && (lastTouch[v] > b || p.values[v].mustPersist))
            let lastWrite = window.filter { writes[$0]?.contains(v) == true }.max()
            if needValid, let from = lastWrite ?? (carriedIn.contains(v) && !validIn.contains(v) ? a : nil) {
                let ys = (from...b).compactMap { y[v]?[$0] }
                try m.add(LinearExpression(ys.map { ($0, 1) }) >= 1, name: "valid-at-end[\(v)]")
            }
        }
        for s in window {
            let terms = values.map { (r[$0]![s]!, Double(p.footprint($0, in: c0)) / unit) }
            try m.add(LinearExpression(terms) <= Double(bytes) / unit, name: "capacity[\(s)]")
        }
        // Where each value can be resident at all: reachable from a carry-in, a load or a write.
        var possible = [Int: [Int]]()
        for v in values {
            var reached = false
            for s in window {
                let enters = (s == a && carriedIn.contains(v)) || x[v]?[s] != nil || writes[s]?.contains(v) == true
                reached = (reached || enters) && mayReside[v]?.contains(s) == true
                if reached { possible[v, default: []].append(s) }
            }
        }
        let address = try addAddressRows(&m, &warm, layout: layout, values: values, window: window, r: r,
                                         possible: possible, usedAt: usedAt, d: d)

        // Objective.
        var goal = LinearExpression()
        switch objectiveExpression(for: values, window: window, reads: reads, writes: writes, x: x, y: y, model: &m, warm: &warm, d: d) {
        case .some(let e): goal = e
        case .none: break
        }
        try m.setObjective(.minimize, goal)
        let warmObjective = m.objectiveValue(at: warm)
        let feasible = m.isFeasible(warm, tolerance: 1e-6)
        let result = try MIPSolver.solve(m, options: SolveOptions(timeLimit: timeLimit, relativeGap: gap, presolve: false,
                                                                 cuts: false, warmStart: feasible ? warm : nil))
        if !feasible { PlacementPlanner.trace("warm start breaks: \(m.violations(warm, limit: 5))") }
        PlacementPlanner.trace("window \(a)...\(b): \(values.count) values (\(layout.pinned.count) pinned), \(m.variableCount) columns (\(m.integerCount) integer), \(m.constraintCount) rows, warm \(feasible ? "feasible" : "INFEASIBLE"), \(result.status) in \(String(format: "%.2f", result.seconds)) s, \(String(format: "%.4g", warmObjective)) → \(result.objective.map { String(format: "%.4g", $0) } ?? "-") (bound \(result.bound.map { String(format: "%.4g", $0) } ?? "-"))")
        guard let obj = result.objective, result.status == .optimal || result.status == .feasible,
              obj < warmObjective - 1e-9 * max(1, abs(warmObjective)) else {
            let r = WindowResult(improved: false, objective: warmObjective, warmObjective: warmObjective, bound: result.bound, status: result.status)
            if result.status == .optimal { remember(r) }
            return r
        }
        for v in values {
            let offset = address[v].map { Int((result[$0]).rounded()) * layout.unit }
            for s in window {
                d.resident[v][s] = result[r[v]![s]!] > 0.5
                if let offset { d.offsets[v][s] = d.resident[v][s] ? offset : -1 }
                if let xv = x[v]?[s], result[xv] > 0.5 { d.loads[v].insert(s) } else { d.loads[v].remove(s) }
                if let yv = y[v]?[s], result[yv] > 0.5 { d.stores[v].insert(s) } else { d.stores[v].remove(s) }
            }
            // Residency the objective does not see (a value kept on after its last use or store in a
            // run) is dropped: it changes no cost, and only crowds the offsets.
            var s = a
            while s <= b {
                guard d.resident[v][s] else { s += 1; continue }
                var end = s + 1
                while end <= b && d.resident[v][end] && !d.loads[v].contains(end) { end += 1 }
                var needed = end == b + 1 && carriedOut.contains(v) ? b : s - 1
                for t in s..<end where usedAt[v]!.contains(t) || d.stores[v].contains(t) { needed = max(needed, t) }
                if needed < s, s == a, !carriedIn.contains(v) { needed = s }  // a load-free run cannot start empty
                for t in (needed + 1)..<max(needed + 1, end) { d.resident[v][t] = false; d.offsets[v][t] = -1 }
                s = end
            }
            // A load into no residency (the solver's free choice where a slot's time is set by its
            // compute, or a run dropped above) moves bytes nowhere: it is dropped too.
            for s in window where d.loads[v].contains(s) && !d.resident[v][s] { d.loads[v].remove(s) }
        }
        let solved = WindowResult(improved: true, objective: obj, warmObjective: warmObjective, bound: result.bound, status: result.status)
        // Only proven optima are reused: a time-limited answer depends on the clock.
        if result.status == .optimal { remember(solved) }
        return solved
    }

    /// The objective over the window: Σ slot times (µs) for `time`, bytes moved (in alignment units) for `traffic`.
    func objectiveExpression(for values: [Int], window: ClosedRange<Int>, reads: [Int: Set<Int>], writes: [Int: Set<Int>],
                           x: [Int: [Int: Variable]], y: [Int: [Int: Variable]], model m: inout LinearModel,
                           warm: inout [Double], d: Decisions) -> LinearExpression? {
        let c0 = p.computeTier
        let unit = Double(max(1, p.target.tiers[c0].alignment))
        switch objective {
        case .traffic:
            var e = LinearExpression()
            for v in values {
                let hops = Double(p.route(from: p.values[v].home ?? p.spillTier, to: c0)?.via == nil ? 1 : 2)
                let bytes = Double(p.values[v].bytes) / unit * hops
                for (_, xv) in x[v] ?? [:] { e = e + bytes * xv }
                for (_, yv) in y[v] ?? [:] { e = e + bytes * yv }
            }
            return e
        case .time:
            // Per slot: serial part (loads the step waits for, stores of what it wrote), and per link the overlapped part.
            var serial = [Int: LinearExpression](), overlapped = [Int: [String: LinearExpression]]()
            var serialWarm = [Int: Double](), overlappedWarm = [Int: [String: Double]]()
            func put(_ s: Int, _ link: String?, _ v: Variable, _ cost: Double, _ on: Bool) {
                guard window.contains(s) else { return }
                if let link {
                    overlapped[s, default: [:]][link, default: LinearExpression()] = overlapped[s, default: [:]][link, default: LinearExpression()] + cost * v
                    if on { overlappedWarm[s, default: [:]][link, default: 0] += cost }
                } else {
                    serial[s, default: LinearExpression()] = serial[s, default: LinearExpression()] + cost * v
                    if on { serialWarm[s, default: 0] += cost }
                }
            }
            for v in values {
                let backing = p.values[v].home ?? p.spillTier
                let via = p.route(from: backing, to: c0)?.via
                let last = via ?? backing
                for (s, xv) in x[v] ?? [:] {
                    let on = d.loads[v].contains(s)
                    let isSerial = reads[s]?.contains(v) == true
                    put(s, isSerial ? nil : "\(last)->\(c0)", xv, micros(v, last, c0), on)
                    if let m = via { put(s - 1, "\(backing)->\(m)", xv, micros(v, backing, m), on) }
                }
                let first = p.route(from: c0, to: backing)?.via ?? backing
                for (s, yv) in y[v] ?? [:] {
                    let on = d.stores[v].contains(s)
                    let isSerial = writes[s]?.contains(v) == true
                    put(s, isSerial ? nil : "\(c0)->\(first)", yv, micros(v, c0, first), on)
                    if first != backing { put(s + 1, "\(first)->\(backing)", yv, micros(v, first, backing), on) }
                }
            }
            var e = LinearExpression()
            for s in window {
                let compute = p.steps[s - 1].computeSeconds * 1e6
                let links = overlapped[s] ?? [:]
                let warmSlot = (serialWarm[s] ?? 0) + max(compute, overlappedWarm[s]?.values.max() ?? 0)
                guard let t = try? m.addVariable("T[\(s)]", lower: 0, upper: .infinity, kind: .continuous) else { return nil }
                warm.append(warmSlot)
                let ser = serial[s] ?? LinearExpression()
                _ = try? m.add(LinearExpression([(t, 1)]) - ser >= compute, name: "time-compute[\(s)]")
                for (name, o) in links.sorted(by: { $0.key < $1.key }) {
                    _ = try? m.add(LinearExpression([(t, 1)]) - ser - o >= 0, name: "time-link[\(s),\(name)]")
                }
                e = e + t
            }
            return e
        }
    }
}
