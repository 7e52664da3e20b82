/// The one entry point to every allocator: a problem, a goal (fit a capacity, or minimise the
/// height), an algorithm and a time limit in; a packing (always), a verdict and bounds out.
///
/// Minimising with the exact search works as an anytime bisection between the proven lower bound
/// (LOAD, raised by every capacity the search proves too small) and the best packing found (a
/// greedy one to begin with). The first probe is at the lower bound itself, because that is where
/// tight instances pack; each probe gets half of the time that is left.

/// Which allocator to run.
public enum Algorithm: String, CaseIterable, Sendable {
    /// Largest first, lowest offset that fits (TFLite, TVM).
    case greedySize = "greedy-size"
    /// Most-overlapping first, lowest offset that fits (TVM).
    case greedyConflicts = "greedy-conflicts"
    /// Largest first, tightest gap that fits (XLA's heap simulator).
    case bestFit = "best-fit"
    /// Branch and bound over canonical placements (see `ExactSearch`).
    case exact
}

/// What to ask of the allocator.
public enum Goal: Equatable, Sendable {
    /// Fit within this many bytes, or prove or report that no packing was found.
    case fit(capacity: Int)
    /// Make the height as small as possible.
    case minimize
}

/// What is known about the packing returned.
public enum Verdict: String, Sendable {
    /// The packing fits the capacity.
    case fits
    /// No packing fits the capacity: proven by the exact search or by the lower bound.
    case infeasible
    /// No packing within the capacity was found (time ran out, or a heuristic missed it).
    case notFound = "not-found"
    /// The height equals the proven lower bound.
    case optimal
    /// The best height found, above the proven lower bound.
    case bestFound = "best-found"
}

/// The outcome of one allocation.
public struct AllocationResult: Sendable {
    /// The packing: always present, possibly above the capacity when the verdict is not `fits`.
    public var solution: Solution
    /// What is known about it.
    public var verdict: Verdict
    /// The largest number of bytes live at one step.
    public var load: Int
    /// A proven lower bound on the height of any packing (≥ LOAD).
    public var lowerBound: Int
    /// The capacity asked for, if any.
    public var capacity: Int?
    /// Wall-clock time spent.
    public var elapsed: Duration
    /// Exact-search nodes visited (0 for the greedy allocators).
    public var nodes: Int

    /// The packing's height.
    public var height: Int { solution.height }
    /// Whether the packing fits the capacity (true when there is none).
    public var capacityMet: Bool { capacity.map { height <= $0 } ?? true }
    /// (height − lower bound) / lower bound; 0 when the bound is 0.
    public var gap: Double { lowerBound > 0 ? Double(height - lowerBound) / Double(lowerBound) : 0 }
}

/// Where an exact search stands, reported before each search it starts.
public struct AllocationProgress: Sendable {
    /// `fit` (searching within the capacity) or `bisect` (lowering the best height).
    public var stage: String
    /// The height being tried.
    public var probe: Int
    /// The lowest height found so far, and the highest height proven impossible plus one.
    public var bestHeight: Int
    public var lowerBound: Int
    /// Search nodes visited so far.
    public var nodes: Int
}

/// Runs allocators; see the file comment.
public enum Allocator {
    /// Allocates `problem` toward `goal` with `algorithm`, stopping the exact search after `timeLimit`;
    /// `progress` hears of every exact search before it starts.
    public static func allocate(
        _ problem: Problem, goal: Goal, algorithm: Algorithm = .exact,
        options: SearchOptions = .default, timeLimit: Duration = .seconds(10),
        progress: ((AllocationProgress) -> Void)? = nil
    ) throws(ProblemError) -> AllocationResult {
        try problem.validate()
        if case let .fit(capacity) = goal, capacity < 0 { throw .negativeCapacity }
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: timeLimit)
        let timeline = Timeline(problem)
        let load = problem.load
        var lowerBound = problem.lowerBound
        var nodes = 0

        func result(_ offsets: [Int], _ verdict: Verdict, capacity: Int?) -> AllocationResult {
            AllocationResult(
                solution: timeline.solution(activeOffsets: offsets, problem: problem), verdict: verdict,
                load: load, lowerBound: lowerBound, capacity: capacity,
                elapsed: clock.now - start, nodes: nodes)
        }
        func height(_ offsets: [Int]) -> Int {
            var h = 0
            for b in 0..<timeline.count { h = max(h, offsets[b] + timeline.size[b]) }
            return h
        }
        func greedy(_ algorithm: Algorithm) -> [Int] {
            switch algorithm {
            case .greedySize: GreedyBySize.offsets(timeline)
            case .greedyConflicts: GreedyByConflicts.offsets(timeline)
            case .bestFit, .exact: BestFit.offsets(timeline)
            }
        }

        // The heuristics: one packing, judged against the goal.
        guard algorithm == .exact else {
            let offsets = greedy(algorithm)
            let h = height(offsets)
            switch goal {
            case let .fit(capacity):
                let verdict: Verdict = h <= capacity ? .fits : (capacity < lowerBound ? .infeasible : .notFound)
                return result(offsets, verdict, capacity: capacity)
            case .minimize:
                return result(offsets, h == lowerBound ? .optimal : .bestFound, capacity: problem.capacity)
            }
        }

        // The exact search starts from the best greedy packing.
        var best = greedy(.bestFit)
        if options.greedyStart {
            for other in [greedy(.greedySize), greedy(.greedyConflicts)] where height(other) < height(best) { best = other }
        }
        var bestHeight = height(best)

        /// Anytime bisection for the lowest height in [lo, bestHeight − 1], until `end`.
        func bisect(from start: Int, until end: ContinuousClock.Instant) {
            var lo = start
            var firstProbe = true
            while lo < bestHeight, clock.now < end {
                // The first probe is at the bottom: tight instances pack there or nowhere near.
                let probe = firstProbe ? lo : lo + (bestHeight - 1 - lo) / 2
                firstProbe = false
                progress?(AllocationProgress(stage: "bisect", probe: probe, bestHeight: bestHeight, lowerBound: lowerBound, nodes: nodes))
                let slice = clock.now.advanced(by: (end - clock.now) / 2)
                var search = ExactSearch(timeline, capacity: probe, options: options, deadline: slice)
                let outcome = search.run()
                nodes += search.nodes
                switch outcome {
                case .found:
                    best = search.packing
                    bestHeight = height(best)
                case .notFound:
                    // A proof at `probe` rules out every height up to it.
                    lowerBound = max(lowerBound, probe + 1)
                    lo = probe + 1
                case .aborted, .timedOut:
                    let attempt = search.bestEffort()
                    if height(attempt) < bestHeight {
                        best = attempt
                        bestHeight = height(attempt)
                    }
                    lo = probe + 1
                }
            }
        }

        switch goal {
        case let .fit(capacity):
            if bestHeight <= capacity, options.greedyStart { return result(best, .fits, capacity: capacity) }
            if capacity < lowerBound { return result(best, .infeasible, capacity: capacity) }
            // Most of the time goes to the capacity itself; the rest to the lowest packing above it.
            let fitDeadline = start.advanced(by: timeLimit * 0.8)
            progress?(AllocationProgress(stage: "fit", probe: capacity, bestHeight: bestHeight, lowerBound: lowerBound, nodes: nodes))
            var search = ExactSearch(timeline, capacity: capacity, options: options, deadline: fitDeadline)
            let outcome = search.run()
            nodes = search.nodes
            switch outcome {
            case .found: return result(search.packing, .fits, capacity: capacity)
            case .notFound:
                lowerBound = max(lowerBound, capacity + 1)
                return result(best, .infeasible, capacity: capacity)
            case .aborted, .timedOut:
                let attempt = search.bestEffort()
                if height(attempt) < bestHeight {
                    best = attempt
                    bestHeight = height(attempt)
                }
                bisect(from: capacity + 1, until: deadline)
                return result(best, .notFound, capacity: capacity)
            }

        case .minimize:
            bisect(from: lowerBound, until: deadline)
            return result(best, bestHeight <= lowerBound ? .optimal : .bestFound, capacity: problem.capacity)
        }
    }
}
