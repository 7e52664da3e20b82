/// The time structure of a problem, computed once and shared by the allocators: which buffers
/// occupy space, the sections between consecutive lifetime endpoints, which sections each buffer
/// spans, which buffers overlap in time, and the independent partitions (runs of sections no
/// buffer crosses out of).
///
/// Zero-sized buffers are left out: they occupy no bytes and never constrain anything.
struct Timeline {
    /// Indices (into `Problem.buffers`) of the buffers with a positive size.
    let active: [Int]
    /// Per active buffer: its size, alignment, pinned offset (or -1).
    let size: [Int], alignment: [Int], fixed: [Int]
    /// Per active buffer: its lifetime.
    let lower: [Int], upper: [Int]
    /// Per active buffer: the half-open range of sections it spans.
    let sectionLow: [Int], sectionHigh: [Int]
    /// Per active buffer: the active buffers it overlaps in time (CSR: `overlapStart[b]..<overlapStart[b+1]`).
    let overlapStart: [Int], overlapList: [Int]
    /// Per section: the active buffers live in it (CSR).
    let sectionStart: [Int], sectionList: [Int]
    /// Per section: the sum of the sizes live in it.
    let sectionTotal: [Int]
    /// Number of sections.
    let sectionCount: Int
    /// Per boundary between section s and s+1: how many buffers cross it.
    let crossings: [Int]
    /// The independent partitions, as section ranges with their buffers (in active order).
    let partitions: [(sections: Range<Int>, buffers: [Int])]

    init(_ problem: Problem) {
        let active = problem.buffers.indices.filter { problem.buffers[$0].size > 0 }
        self.active = active
        let bs = active.map { problem.buffers[$0] }
        size = bs.map(\.size)
        alignment = bs.map { max(1, $0.alignment) }
        fixed = bs.map { $0.fixedOffset ?? -1 }
        let lower = bs.map(\.lower), upper = bs.map(\.upper)
        self.lower = lower
        self.upper = upper
        let n = bs.count

        // Sections lie between consecutive distinct endpoints.
        var points = Array(Set(lower + upper)).sorted()
        if points.isEmpty { points = [0] }
        var indexOf: [Int: Int] = [:]
        for (i, p) in points.enumerated() { indexOf[p] = i }
        sectionCount = max(0, points.count - 1)
        let sectionLow = lower.map { indexOf[$0]! }, sectionHigh = upper.map { indexOf[$0]! }
        self.sectionLow = sectionLow
        self.sectionHigh = sectionHigh
        let size = self.size

        // Buffers per section, totals, and crossings via a difference array.
        var perSection = Array(repeating: [Int](), count: sectionCount)
        var totals = Array(repeating: 0, count: sectionCount)
        var crossingDelta = Array(repeating: 0, count: sectionCount + 1)
        for b in 0..<n {
            for s in sectionLow[b]..<sectionHigh[b] {
                perSection[s].append(b)
                totals[s] += size[b]
            }
            // A buffer spanning sections lo..<hi crosses the boundaries lo..<hi-1.
            crossingDelta[sectionLow[b]] += 1
            crossingDelta[sectionHigh[b] - 1] -= 1
        }
        var crossings = Array(repeating: 0, count: max(0, sectionCount - 1))
        var running = 0
        for s in 0..<crossings.count {
            running += crossingDelta[s]
            crossings[s] = running
        }
        self.crossings = crossings
        sectionTotal = totals
        var starts = [0], list: [Int] = []
        for members in perSection {
            list.append(contentsOf: members)
            starts.append(list.count)
        }
        sectionStart = starts
        sectionList = list

        // Overlaps: a sweep over start order; each buffer meets those started before it ends.
        var neighbours = Array(repeating: [Int](), count: n)
        let byStart = (0..<n).sorted { (lower[$0], $0) < (lower[$1], $1) }
        for (position, a) in byStart.enumerated() {
            var next = position + 1
            while next < n, lower[byStart[next]] < upper[a] {
                let b = byStart[next]
                neighbours[a].append(b)
                neighbours[b].append(a)
                next += 1
            }
        }
        var oStart = [0], oList: [Int] = []
        for var ns in neighbours {
            ns.sort()
            oList.append(contentsOf: ns)
            oStart.append(oList.count)
        }
        overlapStart = oStart
        overlapList = oList

        // Partitions: split at boundaries nobody crosses.
        var parts: [(sections: Range<Int>, buffers: [Int])] = []
        var begin = 0
        for s in 0..<sectionCount where s == sectionCount - 1 || crossings[s] == 0 {
            parts.append((begin..<(s + 1), []))
            begin = s + 1
        }
        var partOfSection = Array(repeating: 0, count: sectionCount)
        for (p, part) in parts.enumerated() { for s in part.sections { partOfSection[s] = p } }
        for b in 0..<n { parts[partOfSection[sectionLow[b]]].buffers.append(b) }
        partitions = parts.filter { !$0.buffers.isEmpty }
    }

    /// The number of active buffers.
    var count: Int { active.count }

    /// The active buffers overlapping `b` in time.
    @inline(__always) func overlaps(_ b: Int) -> ArraySlice<Int> {
        overlapList[overlapStart[b]..<overlapStart[b + 1]]
    }

    /// Lifts active-buffer offsets to a full `Solution` (zero-sized buffers at their pin or 0).
    func solution(activeOffsets: [Int], problem: Problem) -> Solution {
        var offsets = problem.buffers.map { $0.fixedOffset ?? 0 }
        for (k, i) in active.enumerated() { offsets[i] = activeOffsets[k] }
        return Solution(offsets: offsets, buffers: problem.buffers)
    }
}

/// Rounds `value` up to a multiple of `alignment` (≥ 1).
@inline(__always) func roundUp(_ value: Int, _ alignment: Int) -> Int {
    let r = value % alignment
    return r == 0 ? value : value + alignment - r
}
