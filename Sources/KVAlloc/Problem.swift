/// A static allocation problem: buffers with half-open lifetimes and sizes, to be given byte
/// offsets so that buffers live at the same time never share a byte.
///
/// This module knows nothing of graphs or tiers: the planner turns tensors into `Buffer`s, the
/// `kvplan allocate` command reads them from CSV.

/// One buffer: alive during `[lower, upper)`, `size` bytes, at an offset that is a multiple of
/// `alignment`, optionally pinned at `fixedOffset`.
public struct Buffer: Hashable, Sendable {
    /// A name, unique within a problem.
    public var id: String
    /// The first step at which the buffer is live.
    public var lower: Int
    /// The first step at which it is dead again (exclusive).
    public var upper: Int
    /// Its size in bytes; zero-sized buffers occupy nothing and overlap nothing.
    public var size: Int
    /// Every offset must be a multiple of this (1 = any byte).
    public var alignment: Int
    /// When set, the buffer must sit exactly here.
    public var fixedOffset: Int?

    /// A buffer with the given lifetime and size, byte-aligned and free to move.
    public init(id: String, lower: Int, upper: Int, size: Int, alignment: Int = 1, fixedOffset: Int? = nil) {
        self.id = id
        self.lower = lower
        self.upper = upper
        self.size = size
        self.alignment = alignment
        self.fixedOffset = fixedOffset
    }

    /// Whether the two lifetimes share a step (half-open intervals).
    @inlinable public func livesWith(_ other: Buffer) -> Bool {
        lower < other.upper && other.lower < upper
    }
}

/// What makes a problem ill-formed, with the index of the offending buffer.
public enum ProblemError: Error, Equatable, Sendable, CustomStringConvertible {
    case duplicateID(String, first: Int, second: Int)
    case emptyLifetime(index: Int, id: String)
    case negativeSize(index: Int, id: String)
    case badAlignment(index: Int, id: String)
    case negativeTime(index: Int, id: String)
    case badFixedOffset(index: Int, id: String)
    case negativeCapacity
    case pinnedOverlap(String, String)

    public var description: String {
        switch self {
        case let .duplicateID(id, first, second): "buffer '\(id)' is defined twice (buffers \(first) and \(second))"
        case let .emptyLifetime(_, id): "buffer '\(id)': upper must be greater than lower (lifetimes are half-open [lower, upper))"
        case let .negativeSize(_, id): "buffer '\(id)': size must not be negative"
        case let .badAlignment(_, id): "buffer '\(id)': alignment must be at least 1"
        case let .negativeTime(_, id): "buffer '\(id)': lower must not be negative"
        case let .badFixedOffset(_, id): "buffer '\(id)': fixed offset must be non-negative and a multiple of its alignment"
        case .negativeCapacity: "capacity must not be negative"
        case let .pinnedOverlap(a, b): "buffers '\(a)' and '\(b)' are pinned to overlapping bytes while both are live"
        }
    }
}

/// Buffers to place, and optionally the capacity they must fit in.
public struct Problem: Sendable {
    /// The buffers, in input order; solutions list offsets in the same order.
    public var buffers: [Buffer]
    /// The bytes available; `nil` when only the height matters.
    public var capacity: Int?

    /// A problem over `buffers`, to fit within `capacity` when given.
    public init(buffers: [Buffer], capacity: Int? = nil) {
        self.buffers = buffers
        self.capacity = capacity
    }

    /// Checks the problem is well formed: unique ids, non-empty lifetimes, sizes ≥ 0, alignments ≥ 1.
    public func validate() throws(ProblemError) {
        if let capacity, capacity < 0 { throw .negativeCapacity }
        var seen: [String: Int] = [:]
        for (index, buffer) in buffers.enumerated() {
            if let first = seen[buffer.id] { throw .duplicateID(buffer.id, first: first, second: index) }
            seen[buffer.id] = index
            if buffer.lower < 0 { throw .negativeTime(index: index, id: buffer.id) }
            if buffer.upper <= buffer.lower { throw .emptyLifetime(index: index, id: buffer.id) }
            if buffer.size < 0 { throw .negativeSize(index: index, id: buffer.id) }
            if buffer.alignment < 1 { throw .badAlignment(index: index, id: buffer.id) }
            if let fixed = buffer.fixedOffset, fixed < 0 || fixed % buffer.alignment != 0 {
                throw .badFixedOffset(index: index, id: buffer.id)
            }
        }
        let pinned = buffers.filter { $0.fixedOffset != nil && $0.size > 0 }
        for (k, a) in pinned.enumerated() {
            for b in pinned[(k + 1)...] where a.livesWith(b) {
                let (x, y) = (a.fixedOffset!, b.fixedOffset!)
                if x < y + b.size && y < x + a.size { throw .pinnedOverlap(a.id, b.id) }
            }
        }
    }

    /// LOAD: the largest number of bytes live at one step — a lower bound on any packing's height.
    public var load: Int {
        var events: [(time: Int, delta: Int)] = []
        events.reserveCapacity(buffers.count * 2)
        for b in buffers where b.size > 0 {
            events.append((b.lower, b.size))
            events.append((b.upper, -b.size))
        }
        // Frees before allocations at the same step: lifetimes are half-open.
        events.sort { $0.time != $1.time ? $0.time < $1.time : $0.delta < $1.delta }
        var live = 0, peak = 0
        for e in events {
            live += e.delta
            peak = max(peak, live)
        }
        return peak
    }

    /// The best lower bound known without search: LOAD, and the top of every pinned buffer.
    public var lowerBound: Int {
        var bound = load
        for b in buffers { if let f = b.fixedOffset { bound = max(bound, f + b.size) } }
        return bound
    }
}

/// Offsets for every buffer of a problem, in the problem's order.
public struct Solution: Equatable, Sendable {
    /// `offsets[i]` is the first byte of `problem.buffers[i]`.
    public var offsets: [Int]
    /// The highest byte used plus one: max over buffers of offset + size.
    public var height: Int

    /// A solution with the given offsets; the height is computed from the buffers' sizes.
    public init(offsets: [Int], buffers: [Buffer]) {
        precondition(offsets.count == buffers.count, "one offset per buffer")
        self.offsets = offsets
        var height = 0
        for (offset, buffer) in zip(offsets, buffers) where buffer.size > 0 { height = max(height, offset + buffer.size) }
        self.height = height
    }

    /// A solution with offsets and a stated height (checked by `Validator`).
    public init(offsets: [Int], height: Int) {
        self.offsets = offsets
        self.height = height
    }
}
