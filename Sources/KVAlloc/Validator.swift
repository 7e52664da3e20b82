/// An independent check of a `Solution` against its `Problem`.
///
/// It shares no code with the algorithms (no sweep, no gap finder, no section data): it sorts
/// buffers by start step and compares every pair whose lifetimes overlap, so a bug in the shared
/// machinery of the allocators cannot hide itself here.

/// One way a solution can be wrong.
public enum Violation: Equatable, Sendable, CustomStringConvertible {
    /// The solution does not have one offset per buffer.
    case wrongCount(expected: Int, got: Int)
    /// A buffer starts below byte 0.
    case negativeOffset(buffer: String, offset: Int)
    /// Two buffers live at the same step share bytes.
    case overlap(String, String)
    /// A buffer ends above the capacity.
    case overCapacity(buffer: String, top: Int, capacity: Int)
    /// A buffer's offset is not a multiple of its alignment.
    case misaligned(buffer: String, offset: Int, alignment: Int)
    /// A pinned buffer was moved.
    case moved(buffer: String, offset: Int, fixed: Int)
    /// The solution's stated height is not max(offset + size).
    case wrongHeight(stated: Int, actual: Int)

    public var description: String {
        switch self {
        case let .wrongCount(expected, got): "expected \(expected) offsets, got \(got)"
        case let .negativeOffset(b, o): "buffer '\(b)' has negative offset \(o)"
        case let .overlap(a, b): "buffers '\(a)' and '\(b)' are live at the same time and share bytes"
        case let .overCapacity(b, top, cap): "buffer '\(b)' ends at \(top), above the capacity \(cap)"
        case let .misaligned(b, o, a): "buffer '\(b)' at offset \(o) is not a multiple of its alignment \(a)"
        case let .moved(b, o, f): "buffer '\(b)' is pinned at \(f) but placed at \(o)"
        case let .wrongHeight(stated, actual): "stated height \(stated) but the buffers reach \(actual)"
        }
    }
}

/// Checks solutions; see the file comment for why it stands alone.
public enum Validator {
    /// Every violation of `solution` against `problem` (empty when it is valid); the capacity is
    /// checked only when `capacity` is given (pass `problem.capacity` to check the problem's own).
    public static func violations(of solution: Solution, for problem: Problem, capacity: Int? = nil) -> [Violation] {
        let buffers = problem.buffers
        guard solution.offsets.count == buffers.count else {
            return [.wrongCount(expected: buffers.count, got: solution.offsets.count)]
        }
        let limit = capacity
        var found: [Violation] = []
        var actualHeight = 0
        for (i, b) in buffers.enumerated() {
            let offset = solution.offsets[i]
            if offset < 0 { found.append(.negativeOffset(buffer: b.id, offset: offset)) }
            if b.alignment > 0, offset % b.alignment != 0 {
                found.append(.misaligned(buffer: b.id, offset: offset, alignment: b.alignment))
            }
            if let fixed = b.fixedOffset, fixed != offset { found.append(.moved(buffer: b.id, offset: offset, fixed: fixed)) }
            if b.size > 0 {
                actualHeight = max(actualHeight, offset + b.size)
                if let limit, offset + b.size > limit {
                    found.append(.overCapacity(buffer: b.id, top: offset + b.size, capacity: limit))
                }
            }
        }
        if actualHeight != solution.height { found.append(.wrongHeight(stated: solution.height, actual: actualHeight)) }
        // Pairs: sorted by start, each buffer meets only those starting before it ends.
        let order = buffers.indices.filter { buffers[$0].size > 0 }.sorted {
            (buffers[$0].lower, $0) < (buffers[$1].lower, $1)
        }
        for (position, i) in order.enumerated() {
            let a = buffers[i], aStart = solution.offsets[i], aEnd = aStart + a.size
            var next = position + 1
            while next < order.count {
                let j = order[next]
                let b = buffers[j]
                if b.lower >= a.upper { break }
                let bStart = solution.offsets[j], bEnd = bStart + b.size
                if aStart < bEnd && bStart < aEnd {
                    found.append(i < j ? .overlap(a.id, b.id) : .overlap(b.id, a.id))
                }
                next += 1
            }
        }
        return found
    }

    /// Whether `solution` is valid for `problem` (within `capacity` when given).
    public static func isValid(_ solution: Solution, for problem: Problem, capacity: Int? = nil) -> Bool {
        violations(of: solution, for: problem, capacity: capacity).isEmpty
    }
}
