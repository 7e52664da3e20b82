import KVArtifact

/// The planner's estimate of a schedule: time per slot, bytes per link, compulsory traffic, peaks.
///
/// A transfer is *serial* when it moves a value that the step computing in the same slot reads
/// (a load it waits for) or writes (a write-back after it): the step cannot overlap it. Every
/// other transfer overlaps the slot's compute. Slot time = Σ serial transfer times +
/// max(compute, per link Σ overlapped transfer times); a transfer takes bytes / bandwidth +
/// latency. Compulsory bytes: every value read before it is written is loaded once, and every
/// value that must persist is stored once.
public enum CostModel {
    /// The estimate of `schedule` on `problem`.
    public static func estimate(_ problem: PlacementProblem, _ schedule: Schedule) -> Estimate {
        let p = problem
        let slots = p.slotCount
        var compute = Array(repeating: 0.0, count: slots)
        for (i, s) in p.steps.enumerated() { compute[i + 1] = s.computeSeconds }
        var serial = Array(repeating: 0.0, count: slots)
        var overlapped = Array(repeating: [String: Double](), count: slots)
        var linkBytes: [String: Int] = [:]
        for t in schedule.transfers {
            let key = "\(p.target.tiers[t.from].name)->\(p.target.tiers[t.to].name)"
            linkBytes[key, default: 0] += t.bytes
            guard let link = p.target.link(t.from, t.to) else { continue }
            let seconds = Double(t.bytes) / link.bandwidth + link.latency
            let step = t.slot - 1
            let isSerial = step >= 0 && step < p.steps.count
                && (t.to == p.computeTier ? p.steps[step].reads.contains(t.value) : p.steps[step].writes.contains(t.value))
            if isSerial || step < 0 || step >= p.steps.count { serial[t.slot] += seconds } else { overlapped[t.slot][key, default: 0] += seconds }
        }
        var total = 0.0
        for t in 0..<slots { total += serial[t] + max(compute[t], overlapped[t].values.max() ?? 0) }
        var peaks = Array(repeating: 0, count: p.target.tiers.count)
        var delta = Array(repeating: Array(repeating: 0, count: slots + 1), count: p.target.tiers.count)
        for r in schedule.residencies {
            let bytes = p.footprint(r.value, in: r.tier)
            delta[r.tier][r.from] += bytes
            delta[r.tier][r.to] -= bytes
        }
        for tier in delta.indices {
            var live = 0
            for t in 0..<slots { live += delta[tier][t]; peaks[tier] = max(peaks[tier], live) }
        }
        let compulsory = compulsoryBytes(p)
        let moved = linkBytes.values.reduce(0, +)
        return Estimate(seconds: total, computeSeconds: compute.reduce(0, +), linkBytes: linkBytes,
                        compulsoryBytes: compulsory, nonCompulsoryBytes: max(0, moved - compulsory), peakBytes: peaks,
                        lowerBoundSeconds: lowerBound(p))
    }

    /// A time no schedule beats: every slot lasts at least its compute, and each link carries at
    /// least its compulsory transfers (one per hop of each compulsory copy) in some slot, so the
    /// total is at least max(Σ compute, max over links of their compulsory transfer time).
    public static func lowerBound(_ p: PlacementProblem) -> Double {
        var busy: [String: Double] = [:]
        func add(_ v: Int, from a: Int, to b: Int) {
            guard let route = p.route(from: a, to: b) else { return }
            for (x, y) in route.via.map({ [(a, $0), ($0, b)] }) ?? [(a, b)] {
                guard let link = p.target.link(x, y) else { continue }
                busy["\(x)->\(y)", default: 0] += Double(p.values[v].bytes) / link.bandwidth + link.latency
            }
        }
        var written = Array(repeating: false, count: p.values.count)
        var loaded = Array(repeating: false, count: p.values.count)
        for s in p.steps {
            for v in s.reads where !written[v] && !loaded[v] {
                loaded[v] = true
                add(v, from: p.values[v].home ?? p.spillTier, to: p.computeTier)
            }
            for v in s.writes { written[v] = true }
        }
        for (v, value) in p.values.enumerated() where value.mustPersist && written[v] {
            add(v, from: p.computeTier, to: value.home ?? p.spillTier)
        }
        let compute = p.steps.reduce(0) { $0 + $1.computeSeconds }
        return max(compute, busy.values.max() ?? 0)
    }

    /// Links a copy from `a` to `b` crosses (2 when staged through an intermediate tier).
    static func hops(_ p: PlacementProblem, from a: Int, to b: Int) -> Int {
        p.route(from: a, to: b)?.via == nil ? 1 : 2
    }

    /// Bytes any plan must move: loads of values read before written, stores of persisting values
    /// (a staged copy crosses two links and counts on both).
    public static func compulsoryBytes(_ p: PlacementProblem) -> Int {
        var written = Array(repeating: false, count: p.values.count)
        var loaded = Array(repeating: false, count: p.values.count)
        var total = 0
        for s in p.steps {
            for v in s.reads where !written[v] && !loaded[v] {
                loaded[v] = true
                total += p.values[v].bytes * hops(p, from: p.values[v].home ?? p.spillTier, to: p.computeTier)
            }
            for v in s.writes { written[v] = true }
        }
        for (v, value) in p.values.enumerated() where value.mustPersist && written[v] {
            total += value.bytes * hops(p, from: p.computeTier, to: value.home ?? p.spillTier)
        }
        return total
    }
}
