/// The machinery shared by the greedy allocators: place buffers one at a time, in a given order,
/// into a gap among the already-placed buffers that overlap them in time.
///
/// The allocators differ only in the order (by size, by conflicts) and in which gap they take
/// (the lowest that fits, or the tightest that fits — XLA's best fit). Pinned buffers go first,
/// where they are pinned.

/// Which gap a greedy allocator takes.
enum GapChoice {
    /// The lowest offset where the buffer fits.
    case lowest
    /// The smallest free gap that fits (lowest on ties); above everything when none does.
    case tightest
}

enum GreedyPlacement {
    /// Largest first, longer lifetime breaking ties, then index: the order of greedy-by-size and best fit.
    static func largestFirst(_ t: Timeline) -> [Int] {
        (0..<t.count).sorted {
            let a = (t.size[$0], t.upper[$0] - t.lower[$0]), b = (t.size[$1], t.upper[$1] - t.lower[$1])
            return a != b ? a > b : $0 < $1
        }
    }

    /// Offsets (per active buffer) after placing pinned buffers, then `order`, by `choice`.
    /// Buffers already placed in `start` (offset ≥ 0) stay where they are.
    static func place(_ t: Timeline, order: [Int], choice: GapChoice, start: [Int]? = nil) -> [Int] {
        var offset = start ?? Array(repeating: -1, count: t.count)
        for b in 0..<t.count where t.fixed[b] >= 0 && offset[b] < 0 { offset[b] = t.fixed[b] }
        var occupied: [(start: Int, end: Int)] = []
        for b in order where offset[b] < 0 {
            occupied.removeAll(keepingCapacity: true)
            for o in t.overlaps(b) where offset[o] >= 0 {
                occupied.append((offset[o], offset[o] + t.size[o]))
            }
            occupied.sort { $0.start < $1.start }
            switch choice {
            case .lowest: offset[b] = lowestFit(occupied, size: t.size[b], alignment: t.alignment[b])
            case .tightest: offset[b] = tightestFit(occupied, size: t.size[b], alignment: t.alignment[b])
            }
        }
        return offset
    }

    /// The lowest aligned offset at which `size` bytes avoid every interval (sorted by start).
    static func lowestFit(_ occupied: [(start: Int, end: Int)], size: Int, alignment: Int) -> Int {
        var candidate = 0
        for interval in occupied {
            if interval.end <= candidate { continue }
            if interval.start >= candidate + size { break }
            candidate = roundUp(interval.end, alignment)
        }
        return candidate
    }

    /// The aligned start of the smallest free gap holding `size` bytes; above all when none does.
    static func tightestFit(_ occupied: [(start: Int, end: Int)], size: Int, alignment: Int) -> Int {
        var best: (gap: Int, offset: Int)?
        var cursor = 0
        for interval in occupied {
            if interval.start > cursor {
                let start = roundUp(cursor, alignment)
                if start + size <= interval.start {
                    let gap = interval.start - cursor
                    if best == nil || gap < best!.gap { best = (gap, start) }
                }
            }
            cursor = max(cursor, interval.end)
        }
        return best?.offset ?? roundUp(cursor, alignment)
    }
}
