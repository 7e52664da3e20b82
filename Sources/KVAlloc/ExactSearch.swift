/// Exact search for a packing within a capacity: branch and bound over canonical placements.
///
/// Rationale (after MiniMalloc, Moffitt, ASPLOS 2023). Any packing can be pushed down until every
/// buffer rests at offset 0 or on the top of a buffer live with it; listing such a packing by
/// offset, each buffer sits exactly at the highest top (aligned) of the buffers placed before it
/// that overlap it in time — its *minimum offset*. So the search only decides *which* buffer comes
/// next and always puts it at its minimum offset, and it only needs to enumerate placement
/// sequences sorted by (offset, preorder). On top of that it prunes with a lower bound per time
/// section (floor + unplaced bytes ≤ capacity), skips placements dominated by leaving a gap that
/// another buffer must fill, stops trying alternatives after a placement that touched no unplaced
/// buffer, and splits the remaining problem whenever no unplaced buffer crosses some time boundary.
/// Static preorders are tried in turn under doubling node limits, so one bad order cannot stall it.
///
/// The state is a struct so that its arrays are reached without the dynamic exclusivity checks
/// class properties need (they cost half the time in a profile).
///
/// Exhausting the search proves that no packing fits; a time limit ends it with the deepest
/// partial packing it reached, completed greedily, so a caller always gets a packing.
struct ExactSearch {
    /// How a (sub)search ended.
    enum Outcome: Equatable { case found, notFound, aborted, timedOut }

    private struct Candidate { var offset: Int; var pre: Int }

    private let t: Timeline
    private let capacity: Int
    private let options: SearchOptions
    private let deadline: ContinuousClock.Instant
    private let clock = ContinuousClock()

    private var offset: [Int]
    private var minOffset: [Int]
    private var committed: [Int]
    private var commitLog: [Int] = []
    private var floor: [Int]
    private var total: [Int]
    private var cuts: [Int]
    private var offsetUndo: [(buffer: Int, old: Int)] = []
    private var floorUndo: [(section: Int, old: Int)] = []
    private var affected: [Int] = []
    private var mark: [Int]
    private var epoch = 0
    private var candidates: [Candidate] = []
    private var placedCount = 0
    private var nodeBudget = Int.max
    private var preorder: Preorder
    private var bestAssigned = -1
    private var bestPartial: [Int]

    /// Search nodes visited.
    private(set) var nodes = 0
    /// Nodes whose every alternative failed.
    private(set) var backtracks = 0

    init(_ timeline: Timeline, capacity: Int, options: SearchOptions, deadline: ContinuousClock.Instant) {
        t = timeline
        self.capacity = capacity
        self.options = options
        self.deadline = deadline
        let n = timeline.count, s = timeline.sectionCount
        offset = Array(repeating: -1, count: n)
        minOffset = timeline.fixed.map { max($0, 0) }
        committed = Array(repeating: -1, count: n)
        floor = Array(repeating: 0, count: s)
        total = timeline.sectionTotal
        cuts = timeline.crossings
        mark = Array(repeating: 0, count: s)
        preorder = options.preorders.first ?? Preorder("WAT")!
        bestPartial = Array(repeating: -1, count: n)
        // Each section's floor starts at the lowest minimum offset of its buffers (pins raise it).
        for section in 0..<s {
            var lowest = Int.max
            for k in timeline.sectionStart[section]..<timeline.sectionStart[section + 1] {
                lowest = min(lowest, minOffset[timeline.sectionList[k]])
            }
            if lowest != Int.max { floor[section] = lowest }
        }
    }

    /// Runs the search over every partition; `.found` means `packing` fits the capacity.
    mutating func run() -> Outcome {
        for part in t.partitions {
            let outcome: Outcome
            if options.preorders.count > 1 {
                outcome = roundRobin(part.buffers, part.sections)
            } else {
                nodeBudget = Int.max
                outcome = subSolve(part.buffers, part.sections)
            }
            if outcome != .found { return outcome }
        }
        return .found
    }

    /// The packing found by a successful `run()` (offsets per active buffer).
    var packing: [Int] { committed }

    /// The deepest partial packing reached, completed greedily (may exceed the capacity).
    func bestEffort() -> [Int] {
        var start = bestPartial
        // Partitions solved completely are better than any snapshot of them.
        for b in 0..<t.count where committed[b] >= 0 && start[b] < 0 { start[b] = committed[b] }
        let order = (0..<t.count).sorted { (t.size[$0], $1) > (t.size[$1], $0) }
        return GreedyPlacement.place(t, order: order, choice: .lowest, start: start)
    }

    // MARK: - Search

    private mutating func roundRobin(_ buffers: [Int], _ sections: Range<Int>) -> Outcome {
        var limit = max(buffers.count, 1)
        while true {
            limit = limit > Int.max / 4 ? Int.max / 2 : limit * 2
            for order in options.preorders {
                preorder = order
                nodeBudget = nodes &+ limit
                if nodeBudget < nodes { nodeBudget = Int.max }
                let outcome = subSolve(buffers, sections)
                if outcome != .aborted { return outcome }
            }
        }
    }

    private mutating func subSolve(_ members: [Int], _ sections: Range<Int>) -> Outcome {
        search(sorted(members), sections, lastOffset: 0, lastPre: 0)
    }

    /// `members` in the current static preorder.
    private func sorted(_ members: [Int]) -> [Int] {
        let keys = preorder.keys
        func value(_ b: Int, _ key: Character) -> Int {
            switch key {
            case "W": return t.upper[b] - t.lower[b]
            case "A": return t.size[b] * (t.upper[b] - t.lower[b])
            case "T":
                var m = 0
                for s in t.sectionLow[b]..<t.sectionHigh[b] { m = max(m, total[s]) }
                return m
            case "Z": return t.size[b]
            case "C": return t.sectionHigh[b] - t.sectionLow[b]
            case "O": return t.overlapStart[b + 1] - t.overlapStart[b]
            case "L": return t.lower[b]
            default: return t.upper[b]
            }
        }
        let table = members.map { b in keys.map { value(b, $0) } }
        return members.indices.sorted { i, j in
            for k in keys.indices where table[i][k] != table[j][k] { return table[i][k] > table[j][k] }
            return members[i] < members[j]
        }.map { members[$0] }
    }

    private mutating func search(_ order: [Int], _ sections: Range<Int>, lastOffset: Int, lastPre: Int) -> Outcome {
        nodes &+= 1
        if nodes > nodeBudget { return .aborted }
        // Nodes cost O(|order|); on large orders the clock is read at every node so a deadline holds.
        if nodes & 1023 == 0 || order.count > 256, clock.now >= deadline { return .timedOut }

        var minHeight = Int.max
        var unplaced = 0
        for b in order where offset[b] < 0 {
            unplaced += 1
            minHeight = min(minHeight, minOffset[b] + t.size[b])
        }
        if unplaced == 0 {
            for b in order { commit(b) }
            return .found
        }

        let base = candidates.count
        for (p, b) in order.enumerated() where offset[b] < 0 {
            let o = minOffset[b]
            if options.canonicalOrder, o < lastOffset || (o == lastOffset && p < lastPre) { continue }
            if options.dominance, o >= minHeight { continue }
            if t.fixed[b] >= 0, o != t.fixed[b] { continue }
            candidates.append(Candidate(offset: o, pre: p))
        }
        let end = candidates.count
        if options.dynamicOrdering {
            candidates[base..<end].sort { ($0.offset, $0.pre) < ($1.offset, $1.pre) }
        }

        var outcome = Outcome.notFound
        for index in base..<end {
            let candidate = candidates[index]
            let b = order[candidate.pre]
            let o = candidate.offset, size = t.size[b], top = o + size
            offset[b] = o
            placedCount += 1
            let offsetMark = offsetUndo.count, floorMark = floorUndo.count
            var hatless = true, pinBroken = false

            // b's sections: the floor rises to its top, its bytes are no longer unplaced.
            epoch &+= 1
            affected.removeAll(keepingCapacity: true)
            for s in t.sectionLow[b]..<t.sectionHigh[b] {
                floorUndo.append((s, floor[s]))
                floor[s] = max(floor[s], top)
                total[s] -= size
                if options.unplacedFloor {
                    mark[s] = epoch
                    affected.append(s)
                }
            }
            // Everything live with b must now go above it.
            for k in t.overlapStart[b]..<t.overlapStart[b + 1] {
                let other = t.overlapList[k]
                if offset[other] >= 0 { continue }
                hatless = false
                let raised = roundUp(top, t.alignment[other])
                let old = minOffset[other]
                if old >= raised { continue }
                offsetUndo.append((other, old))
                minOffset[other] = raised
                if t.fixed[other] >= 0, raised > t.fixed[other] { pinBroken = true }
                if options.unplacedFloor {
                    // Only where `other` may have been the lowest unplaced buffer can the floor rise
                    // (floors never sit below their section's lowest minimum offset).
                    for s in t.sectionLow[other]..<t.sectionHigh[other] where mark[s] != epoch && old <= floor[s] {
                        mark[s] = epoch
                        affected.append(s)
                    }
                }
            }
            for s in affected {
                var lowest = Int.max
                for k in t.sectionStart[s]..<t.sectionStart[s + 1] {
                    let x = t.sectionList[k]
                    if offset[x] < 0, minOffset[x] < lowest { lowest = minOffset[x] }
                }
                if lowest != Int.max, floor[s] < lowest {
                    floorUndo.append((s, floor[s]))
                    floor[s] = lowest
                }
            }

            if !pinBroken, admissible(sections, placedAt: o) {
                let assigned = placedCount + commitLog.count
                if assigned > bestAssigned { snapshot(assigned) }
                outcome = options.decomposition
                    ? decompose(order, sections, placed: b, at: o, pre: candidate.pre)
                    : search(order, sections, lastOffset: o, lastPre: candidate.pre)
            }

            // Undo, newest first.
            var k = floorUndo.count
            while k > floorMark { k -= 1; floor[floorUndo[k].section] = floorUndo[k].old }
            floorUndo.removeSubrange(floorMark...)
            for s in t.sectionLow[b]..<t.sectionHigh[b] { total[s] += size }
            k = offsetUndo.count
            while k > offsetMark { k -= 1; minOffset[offsetUndo[k].buffer] = offsetUndo[k].old }
            offsetUndo.removeSubrange(offsetMark...)
            offset[b] = -1
            placedCount -= 1

            if outcome != .notFound { break }
            if hatless, options.hatlessPruning { break }
        }
        candidates.removeSubrange(base...)
        if outcome == .notFound { backtracks += 1 }
        return outcome
    }

    /// The section bound: no section may need more than the capacity.
    @inline(__always) private func admissible(_ sections: Range<Int>, placedAt o: Int) -> Bool {
        for s in sections {
            var f = floor[s]
            if options.monotonicFloor, f < o { f = o }
            if options.sectionInference { f += total[s] }
            if f > capacity { return false }
        }
        return true
    }

    /// After placing `b`, solves separately the time ranges no unplaced buffer crosses any more.
    private mutating func decompose(_ order: [Int], _ sections: Range<Int>, placed b: Int, at o: Int, pre: Int) -> Outcome {
        var cutpoints = [sections.lowerBound]
        let low = t.sectionLow[b], high = t.sectionHigh[b]
        if high - 1 > low {
            for s in low..<(high - 1) {
                cuts[s] -= 1
                if cuts[s] == 0 { cutpoints.append(s + 1) }
            }
        }
        defer { if high - 1 > low { for s in low..<(high - 1) { cuts[s] += 1 } } }
        if cutpoints.count == 1 { return search(order, sections, lastOffset: o, lastPre: pre) }

        cutpoints.append(sections.upperBound)
        let commitMark = commitLog.count
        var outcome = Outcome.found
        for k in 1..<cutpoints.count {
            if clock.now >= deadline { outcome = .timedOut; break }
            let range = cutpoints[k - 1]..<cutpoints[k]
            let members = order.filter {
                offset[$0] < 0 && t.sectionLow[$0] < range.upperBound && range.lowerBound < t.sectionHigh[$0]
            }
            if members.isEmpty { continue }
            outcome = subSolve(members, range)
            if outcome != .found { break }
        }
        if outcome == .found {
            for x in order where offset[x] >= 0 { commit(x) }
        } else {
            while commitLog.count > commitMark { committed[commitLog.removeLast()] = -1 }
        }
        return outcome
    }

    private mutating func commit(_ b: Int) {
        if committed[b] < 0 { commitLog.append(b) }
        committed[b] = offset[b]
    }

    private mutating func snapshot(_ assigned: Int) {
        bestAssigned = assigned
        for b in 0..<t.count { bestPartial[b] = offset[b] >= 0 ? offset[b] : committed[b] }
    }
}
