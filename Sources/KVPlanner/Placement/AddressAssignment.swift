import KVAlloc
import KVArtifact

/// Scratchpad offsets for a schedule's compute-tier residencies, by KVAlloc.
///
/// Each residency is a buffer with the residency's slot range as its lifetime and the value's
/// aligned footprint as its size. The exact search fits them within the tier's capacity (best
/// fit first, so easy cases cost nothing); nil means no packing was found in the time allowed.
public enum AddressAssignment {
    /// `schedule` with an offset on every compute-tier residency, or nil when none fits.
    /// The exact search gets 2 s, or 0.3 s past 10,000 residencies (there the budget shrinks instead:
    /// a few quick tries at smaller budgets beat one long search).
    public static func assign(_ p: PlacementProblem, _ schedule: Schedule, timeLimit: Duration? = nil) -> Schedule? {
        let tier = p.computeTier
        let indices = schedule.residencies.indices.filter { schedule.residencies[$0].tier == tier }
        let buffers = indices.map { k in
            let r = schedule.residencies[k]
            return Buffer(id: String(k), lower: r.from, upper: r.to, size: p.footprint(r.value, in: tier),
                          alignment: max(1, p.target.tiers[tier].alignment))
        }
        let capacity = p.target.tiers[tier].capacity
        let timeLimit = timeLimit ?? (buffers.count > 10_000 ? .milliseconds(300) : .seconds(2))
        guard let result = try? Allocator.allocate(Problem(buffers: buffers, capacity: capacity), goal: .fit(capacity: capacity),
                                                   algorithm: .exact, timeLimit: timeLimit),
              result.verdict == .fits else { return nil }
        var out = schedule
        for (j, k) in indices.enumerated() { out.residencies[k].offset = result.solution.offsets[j] }
        return out
    }
}
