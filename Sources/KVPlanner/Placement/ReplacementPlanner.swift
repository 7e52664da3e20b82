import KVArtifact

/// The replacement-policy baselines: naive, LRU and furthest-next-use (Belady), on demand.
///
/// Each step's operands are loaded in the step's own slot (a serial, on-demand transfer) unless
/// already resident; when the compute tier is full, a victim not used by the step is evicted,
/// written back first if it is dirty and still needed (or must persist). `naive` evicts
/// everything after every step. Furthest-next-use is optimal for equal-sized values and no
/// write-backs only; here it is a strong baseline, not a bound. Scratchpad addresses come from
/// KVAlloc afterwards; when fragmentation keeps them from fitting, the simulation is rerun with a
/// smaller byte budget until they do.
public enum ReplacementPolicy: String, CaseIterable, Sendable {
    case naive, lru, belady
}

/// Residencies and transfers of a plan, before addresses (offsets are filled in later).
public struct Schedule: Sendable, Equatable {
    public var residencies: [Residency]
    public var transfers: [Transfer]
    public init(residencies: [Residency], transfers: [Transfer]) {
        self.residencies = residencies
        self.transfers = transfers
    }
}

/// Simulates a replacement policy over a placement problem.
public struct ReplacementPlanner: Sendable {
    public var policy: ReplacementPolicy

    public init(policy: ReplacementPolicy) { self.policy = policy }

    /// The schedule under a compute-tier byte budget (≤ the tier's capacity).
    public func schedule(_ p: PlacementProblem, budget: Int) throws(PlanningError) -> Schedule {
        let n = p.values.count, c0 = p.computeTier
        // Steps touching each value, ascending.
        var uses = Array(repeating: [Int](), count: n)
        for i in p.steps.indices { for v in p.touched(i) { uses[v].append(i) } }
        var cursor = Array(repeating: 0, count: n)  // index into uses[v] of the next use ≥ current step
        func nextUse(_ v: Int, after step: Int) -> Int? {
            while cursor[v] < uses[v].count, uses[v][cursor[v]] <= step { cursor[v] += 1 }
            return cursor[v] < uses[v].count ? uses[v][cursor[v]] : nil
        }

        var resident = Array(repeating: false, count: n)
        var since = Array(repeating: 0, count: n)
        var dirty = Array(repeating: false, count: n)
        var backing: [Int?] = p.values.map { [.weight, .input, .cache].contains($0.kind) ? $0.home : nil }
        var lastUse = Array(repeating: -1, count: n)
        var used = 0
        var residencies: [Residency] = []
        var transfers: [Transfer] = []
        var residentList: [Int] = []

        func writeBack(_ v: Int, slot: Int) throws(PlanningError) {
            let to = p.values[v].home ?? p.spillTier
            let reason = p.values[v].home == nil ? "spill" : "store"
            guard let route = p.route(from: c0, to: to) else {
                throw PlanningError("no link from '\(p.target.tiers[c0].name)' to '\(p.target.tiers[to].name)' to write back '\(p.values[v].name)'")
            }
            if let m = route.via {
                // Staged: into the intermediate tier after the compute, on to the home in the next slot.
                let first = min(slot, p.slotCount - 2)
                transfers.append(Transfer(value: v, from: c0, to: m, bytes: p.values[v].bytes, slot: first, reason: "stage"))
                transfers.append(Transfer(value: v, from: m, to: to, bytes: p.values[v].bytes, slot: first + 1, reason: reason))
                residencies.append(Residency(value: v, tier: m, from: first, to: first + 2, offset: nil))
            } else {
                transfers.append(Transfer(value: v, from: c0, to: to, bytes: p.values[v].bytes, slot: slot, reason: reason))
            }
            backing[v] = to
            dirty[v] = false
        }
        func evict(_ v: Int, atSlot slot: Int, step: Int) throws(PlanningError) {
            if dirty[v], p.values[v].mustPersist || nextUse(v, after: step) != nil {
                try writeBack(v, slot: slot - 1)
            }
            residencies.append(Residency(value: v, tier: c0, from: since[v], to: slot, offset: nil))
            resident[v] = false
            used -= p.footprint(v, in: c0)
        }

        for i in p.steps.indices {
            let slot = i + 1
            let needed = p.touched(i)
            let neededSet = Set(needed)
            residentList.removeAll { !resident[$0] }
            let missing = needed.filter { !resident[$0] }
            let need = missing.reduce(0) { $0 + p.footprint($1, in: c0) }
            if used + need > budget {
                // Victims by policy among residents the step does not touch.
                var candidates = residentList.filter { !neededSet.contains($0) }
                switch policy {
                case .naive, .lru:
                    candidates.sort { (lastUse[$0], $0) < (lastUse[$1], $1) }
                case .belady:
                    let key = candidates.map { v in (nextUse(v, after: i - 1) ?? Int.max, dirty[v] ? 0 : 1) }
                    let order = candidates.indices.sorted { (-key[$0].0, -key[$0].1, candidates[$0]) < (-key[$1].0, -key[$1].1, candidates[$1]) }
                    candidates = order.map { candidates[$0] }
                }
                for v in candidates where used + need > budget { try evict(v, atSlot: slot, step: i - 1) }
                if used + need > budget {
                    throw PlanningError("step '\(p.steps[i].name)' (\(p.steps[i].op)) needs \(p.workingSet(i)) B in '\(p.target.tiers[c0].name)', more than the \(budget) B available")
                }
            }
            let writes = Set(p.steps[i].writes), reads = Set(p.steps[i].reads)
            for v in missing {
                if reads.contains(v) {
                    guard let from = backing[v] else {
                        throw PlanningError("'\(p.values[v].name)' is read by '\(p.steps[i].name)' before any step writes it")
                    }
                    guard let route = p.route(from: from, to: c0) else {
                        throw PlanningError("no link from '\(p.target.tiers[from].name)' to '\(p.target.tiers[c0].name)' to load '\(p.values[v].name)'")
                    }
                    if let m = route.via {
                        // Staged: into the intermediate tier one slot ahead, then on demand into the compute tier.
                        transfers.append(Transfer(value: v, from: from, to: m, bytes: p.values[v].bytes, slot: slot - 1, reason: "stage"))
                        transfers.append(Transfer(value: v, from: m, to: c0, bytes: p.values[v].bytes, slot: slot, reason: "load"))
                        residencies.append(Residency(value: v, tier: m, from: slot - 1, to: slot + 1, offset: nil))
                    } else {
                        transfers.append(Transfer(value: v, from: from, to: c0, bytes: p.values[v].bytes, slot: slot, reason: "load"))
                    }
                }
                resident[v] = true
                since[v] = slot
                used += p.footprint(v, in: c0)
                residentList.append(v)
            }
            for v in needed { lastUse[v] = i }
            for v in writes { dirty[v] = true }
            // Values with no later use leave now (after a write-back if they must persist).
            for v in needed where nextUse(v, after: i) == nil {
                if dirty[v], p.values[v].mustPersist { try writeBack(v, slot: slot) }
                residencies.append(Residency(value: v, tier: c0, from: since[v], to: slot + 1, offset: nil))
                resident[v] = false
                used -= p.footprint(v, in: c0)
            }
            if policy == .naive {
                for v in residentList where resident[v] { try evict(v, atSlot: slot + 1, step: i) }
            }
        }
        residentList.removeAll { !resident[$0] }
        for v in residentList { try evict(v, atSlot: p.slotCount, step: p.steps.count) }
        residencies.sort { ($0.tier, $0.from, $0.value, $0.to) < ($1.tier, $1.from, $1.value, $1.to) }
        transfers.sort { ($0.slot, $0.value, $0.from, $0.to) < ($1.slot, $1.value, $1.from, $1.to) }
        return Schedule(residencies: residencies, transfers: transfers)
    }
}
