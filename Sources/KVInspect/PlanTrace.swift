import KVArtifact

// One op or one tensor followed through a plan, slot by slot: where each of its values lives,
// when it moves and why (`kvplan inspect --op NAME` / `--tensor NAME`).
//
// Events are derived from plan.json only: a residency is an interval of slots in a tier (with its
// scratchpad offset); a transfer is issued in a slot on a link with a reason (load, store,
// spill); a step reads and writes values in its slot. Events are ordered by slot, then
// residencies before transfers before uses, so a value is seen arriving before it is used.

/// One thing that happens to a value in a slot.
public struct TraceEvent: Codable, Sendable, Equatable {
    public var slot: Int
    /// The step computing in the slot (`prologue` / `epilogue` outside the steps).
    public var step: String
    public var value: String
    /// `step` (the op's step itself), `resident`, `transfer`, `beside` (a transfer of another value
    /// in the op's slot), `read`, `write`.
    public var kind: String
    /// What happened, in words (tier, offset, link, bytes, reason, why).
    public var detail: String
}

/// An op or a tensor through every slot of a plan.
public struct PlanTrace: Codable, Sendable, Equatable {
    /// `op` or `tensor`.
    public var subject: String
    public var name: String
    /// The plan's values involved (an op's operands and results; a tensor's parts), with bytes.
    public var values: [String]
    public var events: [TraceEvent]

    /// Names an op can be looked up by (in step order).
    public static func opNames(_ plan: Plan) -> [String] {
        var seen = Set<String>()
        return plan.steps.map(PlanInspection.opName).filter { seen.insert($0).inserted }
    }

    /// Names a tensor can be looked up by (in value order).
    public static func tensorNames(_ plan: Plan) -> [String] {
        var seen = Set<String>()
        return plan.values.map(\.tensor).filter { seen.insert($0).inserted }
    }

    /// The op `name` through its steps; nil when the plan has no such op.
    public static func op(_ name: String, in plan: Plan) -> PlanTrace? {
        let steps = plan.steps.indices.filter { PlanInspection.opName(of: plan.steps[$0]) == name }
        guard !steps.isEmpty else { return nil }
        let costs = SlotCosts.slots(plan)
        var events: [TraceEvent] = []
        var involved = Set<Int>()
        for i in steps {
            let step = plan.steps[i], slot = i + 1
            let tile = step.tile.map { " tile \($0 + 1)/\(step.tiles ?? 0) (\(step.scheme ?? "split"))" } ?? ""
            let cost = costs[slot]
            events.append(TraceEvent(slot: slot, step: step.name, value: "", kind: "step",
                                     detail: "computes\(tile): \(siCount(Double(step.flops))) flop, \(formatSeconds(step.computeSeconds)) compute, "
                                        + "slot \(formatSeconds(cost.seconds)) bound by \(cost.bound)"))
            for (kind, list) in [("read", step.reads), ("write", step.writes)] {
                for v in list {
                    involved.insert(v)
                    events.append(TraceEvent(slot: slot, step: step.name, value: plan.values[v].name, kind: kind,
                                             detail: "\(kind == "read" ? "reads" : "writes") \(bytes(plan.values[v].bytes)) " + whereabouts(v, slot: slot, in: plan)))
                }
            }
            // Transfers of its own values, then those issued beside it (they share the slot's time).
            let slotTransfers = plan.transfers.filter { $0.slot == slot }
            let own = Set(step.reads + step.writes)
            for t in slotTransfers where own.contains(t.value) { events.append(transferEvent(t, in: plan)) }
            for t in slotTransfers where !own.contains(t.value) {
                var event = transferEvent(t, in: plan)
                event.kind = "beside"
                events.append(event)
            }
        }
        return PlanTrace(subject: "op", name: name, values: involved.sorted().map { describe($0, in: plan) }, events: events)
    }

    /// The tensor `name` through every slot; nil when the plan has no value of that tensor.
    public static func tensor(_ name: String, in plan: Plan) -> PlanTrace? {
        let mine = plan.values.indices.filter { plan.values[$0].tensor == name }
        guard !mine.isEmpty else { return nil }
        let set = Set(mine)
        var events: [(order: Int, event: TraceEvent)] = []
        for r in plan.residencies where set.contains(r.value) {
            let tier = plan.target.tiers[r.tier].name
            let offset = r.offset.map { " at offset \(grouped($0))" } ?? ""
            events.append((0, TraceEvent(slot: r.from, step: PlanInspection.stepName(slot: r.from, in: plan), value: plan.values[r.value].name,
                                         kind: "resident", detail: "in \(tier)\(offset) for slots \(r.from)..<\(r.to)")))
        }
        for t in plan.transfers where set.contains(t.value) { events.append((1, transferEvent(t, in: plan))) }
        for (i, step) in plan.steps.enumerated() {
            for (kind, list) in [("read", step.reads), ("write", step.writes)] {
                for v in list where set.contains(v) {
                    events.append((2, TraceEvent(slot: i + 1, step: step.name, value: plan.values[v].name, kind: kind,
                                                 detail: "\(kind == "read" ? "read" : "written") by \(step.name) (\(step.op)) "
                                                    + whereabouts(v, slot: i + 1, in: plan))))
                }
            }
        }
        let ordered = events.enumerated().sorted { a, b in
            (a.element.event.slot, a.element.order, a.offset) < (b.element.event.slot, b.element.order, b.offset)
        }.map(\.element.event)
        return PlanTrace(subject: "tensor", name: name, values: mine.map { describe($0, in: plan) }, events: ordered)
    }

    /// "name (bytes, home tier, part)".
    static func describe(_ v: Int, in plan: Plan) -> String {
        let value = plan.values[v]
        let home = value.home.map { "home \(plan.target.tiers[$0].name)" } ?? "no home"
        let part = value.part.map { $0.dim < 0 ? ", elements \($0.start)..<\($0.end)" : ", dim \($0.dim) \($0.start)..<\($0.end)" } ?? ""
        return "\(value.name) (\(bytes(value.bytes)), \(value.kind.rawValue), \(home)\(part)\(value.mustPersist ? ", persists" : ""))"
    }

    /// Where value `v` lives during `slot` ("in scratchpad at offset 4,096 since slot 3").
    static func whereabouts(_ v: Int, slot: Int, in plan: Plan) -> String {
        let here = plan.residencies.filter { $0.value == v && $0.from <= slot && slot < $0.to }
        guard !here.isEmpty else { return "(not resident: a violation the verifier reports)" }
        return here.map { r in
            "in \(plan.target.tiers[r.tier].name)" + (r.offset.map { " at offset \(grouped($0))" } ?? "") + " (slots \(r.from)..<\(r.to))"
        }.joined(separator: " and ")
    }

    static func transferEvent(_ t: Transfer, in plan: Plan) -> TraceEvent {
        let seconds = SlotCosts.seconds(of: t, in: plan) ?? 0
        let serial = SlotCosts.isSerial(t, in: plan)
        let why: String
        switch t.reason {
        case "load": why = "load: needed in \(plan.target.tiers[t.to].name)"
        case "store": why = "store: a result needed later or at the end"
        case "spill": why = "spill: a value without a home evicted to make room"
        case "stage": why = "stage: the first hop of a copy through an intermediate tier"
        default: why = t.reason
        }
        return TraceEvent(slot: t.slot, step: PlanInspection.stepName(slot: t.slot, in: plan), value: plan.values[t.value].name, kind: "transfer",
                          detail: "\(SlotCosts.linkName(t, in: plan)) \(bytes(t.bytes)) in \(formatSeconds(seconds)), "
                            + (serial ? "the slot waits for it" : "overlapped with compute") + "; \(why)")
    }
}

/// `0.000417` → `417 µs`; `2.5` → `2.50 s`.
public func formatSeconds(_ s: Double) -> String {
    let a = abs(s)
    if a == 0 { return "0 s" }
    if a >= 1 { return String(format: "%.2f s", s) }
    if a >= 1e-3 { return String(format: "%.3g ms", s * 1e3) }
    if a >= 1e-6 { return String(format: "%.3g µs", s * 1e6) }
    return String(format: "%.3g ns", s * 1e9)
}
