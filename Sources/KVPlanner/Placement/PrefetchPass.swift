import KVArtifact

/// An XLA-MSA-like greedy prefetcher: issue each on-demand load as early as room allows.
///
/// Rationale. XLA's memory-space assignment sorts buffers by how memory-bound their uses are,
/// places them by decreasing size with best fit, and issues each copy as early as it can so it
/// overlaps earlier compute. Here the replacement schedule fixes what is resident; this pass then
/// takes its loads costliest first (bytes / bandwidth), and moves each one back, slot by slot, up
/// to `lookahead` slots, while the compute tier keeps room for the value in every slot it now
/// occupies early, its outside copy is already current, and the link is not already busier than
/// that slot's compute. The result is a real baseline (what a greedy compiler does), not a bound.
enum PrefetchPass {
    /// `d` with loads hoisted where room and overlap allow.
    static func hoist(_ p: PlacementProblem, _ d: PlacementILP.Decisions, capacity: Int,
                      lookahead: Int = 4) -> PlacementILP.Decisions {
        var d = d
        let c0 = p.computeTier, slots = p.slotCount
        var used = Array(repeating: 0, count: slots)
        for v in p.values.indices { for t in d.resident[v].span where d.resident[v][t] { used[t] += p.footprint(v, in: c0) } }
        var busy = Array(repeating: 0.0, count: slots)  // overlapped seconds issued into each slot
        var lastWrite = Array(repeating: Int?.none, count: p.values.count)
        var writesBefore = Array(repeating: [Int](), count: p.values.count)
        for (i, s) in p.steps.enumerated() { for v in s.writes { writesBefore[v].append(i + 1) } }
        var loads: [(v: Int, slot: Int, seconds: Double)] = []
        for v in p.values.indices {
            let backing = p.values[v].home ?? p.spillTier
            let last = p.route(from: backing, to: c0)?.via ?? backing
            guard let link = p.target.link(last, c0) else { continue }
            for s in d.loads[v] where s >= 2 && s < slots - 1 {
                loads.append((v, s, Double(p.values[v].bytes) / link.bandwidth + link.latency))
            }
        }
        loads.sort { ($0.seconds, $1.v, $1.slot) > ($1.seconds, $0.v, $0.slot) }
        for (v, s, seconds) in loads {
            lastWrite[v] = writesBefore[v].last { $0 < s }
            var to = s
            while to - 1 >= max(1, s - lookahead) {
                let t = to - 1
                // Not before the value's outside copy is current, nor into a slot where it is resident already.
                if let w = lastWrite[v], !(d.stores[v].contains { $0 >= w && $0 < t }) { break }
                if d.resident[v][t] || d.loads[v].contains(t) { break }
                if used[t] + p.footprint(v, in: c0) > capacity { break }
                if busy[t] + seconds > p.steps[t - 1].computeSeconds { break }
                to = t
            }
            guard to < s else { continue }
            d.loads[v].remove(s)
            d.loads[v].insert(to)
            for t in to..<s {
                d.resident[v][t] = true
                used[t] += p.footprint(v, in: c0)
            }
            busy[to] += seconds
        }
        return d
    }
}
