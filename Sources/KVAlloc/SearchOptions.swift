/// The techniques of the exact search, each one switchable, so that an ablation is one flag.
///
/// All of them are sound (they never cut off the last packing within the capacity), so any
/// combination must reach the same verdict; they differ only in how fast. Tests enforce this.
public struct SearchOptions: Equatable, Sendable {
    /// Place buffers in non-decreasing (offset, preorder) order — the canonical-solution symmetry break.
    public var canonicalOrder = true
    /// Prune when a section's floor plus its unplaced bytes exceeds the capacity.
    public var sectionInference = true
    /// Never place a buffer at or above the lowest top any unplaced buffer could reach (it would leave a gap that buffer fits in).
    public var dominance = true
    /// Try candidates lowest offset first (otherwise in preorder).
    public var dynamicOrdering = true
    /// Raise each section's floor to the lowest offset any of its unplaced buffers can take.
    public var unplacedFloor = true
    /// Sections cannot have a floor below the offset just placed (placements only go up).
    public var monotonicFloor = true
    /// Stop trying alternatives after a placement that touched no unplaced buffer (they are all equivalent).
    public var hatlessPruning = true
    /// Solve independently the time ranges that no unplaced buffer crosses any more.
    public var decomposition = true
    /// Try the greedy packings before searching; a fitting one ends the search at once.
    public var greedyStart = true
    /// Static orders tried in turn with doubling node limits (see `Preorder`).
    public var preorders: [Preorder] = [Preorder("WAT")!, Preorder("TAW")!, Preorder("TWA")!]

    /// The defaults: every technique on.
    public init() {}

    /// The default options.
    public static let `default` = SearchOptions()

    /// The switchable techniques by their command-line names, in documentation order.
    public static let techniqueNames = [
        "canonical-order", "section-inference", "dominance", "dynamic-ordering", "unplaced-floor",
        "monotonic-floor", "hatless-pruning", "decomposition", "greedy-start",
    ]

    /// These options with the named technique switched off; nil for an unknown name.
    public func disabling(_ name: String) -> SearchOptions? {
        var copy = self
        switch name {
        case "canonical-order": copy.canonicalOrder = false
        case "section-inference": copy.sectionInference = false
        case "dominance": copy.dominance = false
        case "dynamic-ordering": copy.dynamicOrdering = false
        case "unplaced-floor": copy.unplacedFloor = false
        case "monotonic-floor": copy.monotonicFloor = false
        case "hatless-pruning": copy.hatlessPruning = false
        case "decomposition": copy.decomposition = false
        case "greedy-start": copy.greedyStart = false
        default: return nil
        }
        return copy
    }
}

/// A static preorder of buffers: keys compared in turn, each descending, index breaking ties.
/// Letters: W lifetime width, A area (size × width), T the largest section total it spans,
/// Z size, C sections spanned, O buffers overlapped, L start, U end.
public struct Preorder: Equatable, Sendable, CustomStringConvertible {
    /// The keys, most significant first.
    public let keys: [Character]

    /// A preorder from its letters, e.g. "WAT"; nil when a letter is unknown or there are none.
    public init?(_ text: String) {
        guard !text.isEmpty, text.allSatisfy({ "WATZCOLU".contains($0) }) else { return nil }
        keys = Array(text)
    }

    public var description: String { String(keys) }
}
