import KVArtifact

/// The independent plan checker: run on every compile and by `kvplan verify`.
///
/// It reads only the plan (no planner code, no cost model) and replays it slot by slot: tier
/// capacities, scratchpad addresses (aligned, inside the tier, no two live buffers overlapping),
/// operands resident when their step runs, every read preceded by a load of a valid copy or by a
/// write, loads only from tiers holding current data, stores only of resident written data, every
/// persisting value's final contents stored, and link byte totals equal to the plan's estimate.
public enum PlanVerifier {
    /// One way a plan is wrong, naming the step, slot and values involved.
    public struct Failure: Error, CustomStringConvertible, Equatable, Sendable {
        /// Which rule was broken (`capacity`, `overlap`, `resident`, `uninitialised`, `stale`, ...).
        public var rule: String
        public var message: String
        public var description: String { "\(rule): \(message)" }
    }

    /// Every violation in `plan` (empty when the plan is valid).
    public static func check(_ plan: Plan) -> [Failure] {
        var failures: [Failure] = []
        func fail(_ rule: String, _ message: String) {
            if failures.count < 100 { failures.append(Failure(rule: rule, message: message)) }
        }
        let tiers = plan.target.tiers, values = plan.values, steps = plan.steps
        let slots = steps.count + 2
        func name(_ v: Int) -> String { values.indices.contains(v) ? "'\(values[v].name)'" : "value #\(v)" }
        func stepName(_ slot: Int) -> String {
            steps.indices.contains(slot - 1) ? "step \(slot - 1) '\(steps[slot - 1].name)'" : (slot == 0 ? "the prologue" : "the epilogue")
        }
        func aligned(_ bytes: Int, _ tier: Int) -> Int {
            let a = max(1, tiers[tier].alignment)
            return (bytes + a - 1) / a * a
        }

        // Structure.
        guard !tiers.isEmpty else { return [Failure(rule: "structure", message: "the plan has no tiers")] }
        for (i, s) in steps.enumerated() {
            for v in s.reads + s.writes where !values.indices.contains(v) {
                fail("structure", "step \(i) '\(s.name)' refers to value #\(v), which does not exist")
            }
        }
        let residencies = plan.residencies.filter { r in
            let ok = values.indices.contains(r.value) && tiers.indices.contains(r.tier) && r.from >= 0 && r.to <= slots && r.from < r.to
            if !ok { fail("structure", "residency of \(name(r.value)) in tier \(r.tier) over slots [\(r.from), \(r.to)) is out of range") }
            return ok
        }
        let transfers = plan.transfers.filter { t in
            let ok = values.indices.contains(t.value) && tiers.indices.contains(t.from) && tiers.indices.contains(t.to)
                && t.from != t.to && t.slot >= 0 && t.slot < slots && t.bytes == values[t.value].bytes
            if !ok { fail("structure", "transfer of \(name(t.value)) in slot \(t.slot) from tier \(t.from) to tier \(t.to) (\(t.bytes) B) is malformed") }
            return ok
        }
        if !failures.isEmpty { return failures }
        for t in transfers where !plan.target.links.contains(where: { $0.from == tiers[t.from].name && $0.to == tiers[t.to].name }) {
            fail("link", "\(name(t.value)) moves from '\(tiers[t.from].name)' to '\(tiers[t.to].name)' in slot \(t.slot), but the target has no such link")
        }

        // Capacity of every tier in every slot.
        for tier in tiers.indices {
            var delta = Array(repeating: 0, count: slots + 1)
            for r in residencies where r.tier == tier {
                delta[r.from] += aligned(values[r.value].bytes, tier)
                delta[r.to] -= aligned(values[r.value].bytes, tier)
            }
            var live = 0
            for slot in 0..<slots {
                live += delta[slot]
                if live > tiers[tier].capacity {
                    fail("capacity", "'\(tiers[tier].name)' holds \(live) B in slot \(slot) (\(stepName(slot))), over its \(tiers[tier].capacity) B")
                }
            }
        }

        // Scratchpad addresses: inside, aligned, and disjoint while both are live.
        let spad = residencies.filter { $0.tier == 0 }.sorted { ($0.from, $0.value) < ($1.from, $1.value) }
        var active: [Residency] = []
        for r in spad {
            guard let o = r.offset else { fail("address", "\(name(r.value)) has no offset in '\(tiers[0].name)' (slots [\(r.from), \(r.to)))"); continue }
            let size = aligned(values[r.value].bytes, 0)
            if o < 0 || o + size > tiers[0].capacity { fail("address", "\(name(r.value)) at offset \(o) (+\(size) B) lies outside '\(tiers[0].name)'") }
            if o % max(1, tiers[0].alignment) != 0 { fail("address", "\(name(r.value)) at offset \(o) is not aligned to \(tiers[0].alignment)") }
            active.removeAll { $0.to <= r.from }
            for a in active {
                let ao = a.offset!, asize = aligned(values[a.value].bytes, 0)
                if o < ao + asize, ao < o + size {
                    fail("overlap", "\(name(r.value)) [\(o), \(o + size)) and \(name(a.value)) [\(ao), \(ao + asize)) overlap in '\(tiers[0].name)' in slot \(max(r.from, a.from))")
                }
            }
            active.append(r)
        }

        // Data flow, value by value.
        var residentIn = Array(repeating: [Residency](), count: values.count)
        for r in residencies { residentIn[r.value].append(r) }
        var writeSlots = Array(repeating: [Int](), count: values.count)
        var readSlots = Array(repeating: [Int](), count: values.count)
        for (i, s) in steps.enumerated() {
            for v in Set(s.writes) { writeSlots[v].append(i + 1) }
            for v in Set(s.reads) { readSlots[v].append(i + 1) }
        }
        var transfersOf = Array(repeating: [Transfer](), count: values.count)
        for t in transfers { transfersOf[t.value].append(t) }
        func residency(_ v: Int, tier: Int, slot: Int) -> Residency? {
            residentIn[v].first { $0.tier == tier && $0.from <= slot && slot < $0.to }
        }
        /// Whether `tier` holds the current contents of `v` at the start of `slot`'s transfers: its
        /// initial home with no write since, or a copy made after the last write, from tier 0 (a store,
        /// which may follow the write in its slot) or from a tier that was current then (a staged hop).
        func current(_ v: Int, in tier: Int, before slot: Int, depth: Int = 0) -> Bool {
            let lastWrite = writeSlots[v].filter { $0 < slot }.max()
            let initial: Set<ValueKind> = [.weight, .input, .cache]
            if lastWrite == nil && initial.contains(values[v].kind) && values[v].home == tier { return true }
            guard depth < tiers.count else { return false }
            for t in transfersOf[v] where t.to == tier && t.slot < slot {
                if t.from == 0 {
                    if lastWrite.map({ t.slot >= $0 }) ?? true { return true }
                } else if lastWrite.map({ t.slot > $0 }) ?? true, current(v, in: t.from, before: t.slot, depth: depth + 1) {
                    return true
                }
            }
            return false
        }
        for v in values.indices {
            for slot in Set(readSlots[v] + writeSlots[v]).sorted() where residency(v, tier: 0, slot: slot) == nil {
                fail("resident", "\(name(v)) is not in '\(tiers[0].name)' when \(stepName(slot)) runs")
            }
            for slot in readSlots[v] {
                guard let r = residency(v, tier: 0, slot: slot) else { continue }
                let loaded = transfersOf[v].contains { $0.to == 0 && $0.slot >= r.from && $0.slot <= slot }
                let written = writeSlots[v].contains { $0 >= r.from && $0 < slot }
                if !loaded && !written { fail("uninitialised", "\(stepName(slot)) reads \(name(v)), which was neither loaded nor written since it entered '\(tiers[0].name)' in slot \(r.from)") }
            }
            for t in transfersOf[v] {
                if residency(v, tier: t.from, slot: t.slot) == nil {
                    fail("source", "\(name(v)) is copied out of '\(tiers[t.from].name)' in slot \(t.slot) but is not there")
                }
                if t.to == 0 && residency(v, tier: 0, slot: t.slot) == nil {
                    fail("destination", "\(name(v)) is loaded into '\(tiers[0].name)' in slot \(t.slot) but has no place there in that slot")
                }
                if t.from != 0 {
                    if !current(v, in: t.from, before: t.slot) {
                        fail("stale", "\(name(v)) is loaded from '\(tiers[t.from].name)' in slot \(t.slot), which does not hold its current contents")
                    }
                } else if t.from == 0 {
                    if !writeSlots[v].contains(where: { $0 <= t.slot }) && !current(v, in: 0, before: t.slot) {
                        fail("stale", "\(name(v)) is stored in slot \(t.slot) before any step writes it")
                    }
                    if residency(v, tier: t.to, slot: t.slot) == nil && residency(v, tier: t.to, slot: t.slot + 1) == nil {
                        fail("destination", "\(name(v)) is stored to '\(tiers[t.to].name)' in slot \(t.slot) but has no room reserved there")
                    }
                }
            }
            if values[v].mustPersist, let home = values[v].home, let w = writeSlots[v].max(),
               !current(v, in: home, before: slots) {
                fail("persist", "\(name(v)) must end in '\(tiers[home].name)', but its last write (\(stepName(w))) is never stored there")
            }
        }

        // Link totals agree with the estimate.
        var totals: [String: Int] = [:]
        for t in transfers { totals["\(tiers[t.from].name)->\(tiers[t.to].name)", default: 0] += t.bytes }
        for key in Set(totals.keys).union(plan.estimate.linkBytes.keys).sorted() where totals[key, default: 0] != plan.estimate.linkBytes[key, default: 0] {
            fail("totals", "link \(key) moves \(totals[key, default: 0]) B, but the estimate reports \(plan.estimate.linkBytes[key, default: 0]) B")
        }
        return failures
    }
}
