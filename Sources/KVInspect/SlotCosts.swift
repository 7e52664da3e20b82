import KVArtifact

// The planner's time model read back from a plan: per slot, its compute, the transfers it waits
// for and those it overlaps, and what bounds it.
//
// Rationale. plan.json stores the estimate's total, not its parts; an inspector that explains
// where time goes must recompute them. This is the cost model of Docs/formulation.md (KVPlanner's
// CostModel) restated over the on-disk plan only — tier 0 computes; a transfer takes
// bytes / bandwidth + latency; it is *serial* when the step computing in its slot reads the value
// it loads into tier 0 (or writes the value it stores), or when it is issued in the prologue or
// epilogue; slot time = Σ serial + max(compute, per link Σ overlapped). The total is checked
// against the plan's own estimate (tests, and `kvplan inspect` says so when they disagree).

/// Where one slot's time goes.
public struct SlotCost: Codable, Sendable, Equatable {
    /// The slot (0: prologue; step i computes in slot i + 1).
    public var slot: Int
    /// Compute seconds of the step in this slot (0 in the prologue and epilogue).
    public var computeSeconds: Double
    /// Seconds of transfers the step must wait for.
    public var serialSeconds: Double
    /// Seconds of overlapped transfers per link (`from->to`).
    public var overlappedSeconds: [String: Double]
    /// serial + max(compute, the busiest link's overlapped seconds).
    public var seconds: Double
    /// What sets the slot's time: `compute`, `link from->to` (overlapped transfers) or `serial transfers`.
    public var bound: String
}

/// The cost model over a plan's slots.
public enum SlotCosts {
    /// The seconds one transfer takes on its link (nil when the target has no such link).
    public static func seconds(of transfer: Transfer, in plan: Plan) -> Double? {
        let tiers = plan.target.tiers
        guard let link = plan.target.links.first(where: { $0.from == tiers[transfer.from].name && $0.to == tiers[transfer.to].name }) else { return nil }
        return Double(transfer.bytes) / link.bandwidth + link.latency
    }

    /// True when the step computing in the transfer's slot cannot overlap it.
    public static func isSerial(_ transfer: Transfer, in plan: Plan) -> Bool {
        let step = transfer.slot - 1
        guard step >= 0 && step < plan.steps.count else { return true }
        return transfer.to == 0 ? plan.steps[step].reads.contains(transfer.value) : plan.steps[step].writes.contains(transfer.value)
    }

    /// The `from->to` key of a transfer's link.
    public static func linkName(_ transfer: Transfer, in plan: Plan) -> String {
        "\(plan.target.tiers[transfer.from].name)->\(plan.target.tiers[transfer.to].name)"
    }

    /// Every slot's cost, prologue to epilogue.
    public static func slots(_ plan: Plan) -> [SlotCost] {
        var costs = (0..<plan.slotCount).map { slot in
            SlotCost(slot: slot, computeSeconds: slot >= 1 && slot <= plan.steps.count ? plan.steps[slot - 1].computeSeconds : 0,
                     serialSeconds: 0, overlappedSeconds: [:], seconds: 0, bound: "compute")
        }
        for t in plan.transfers where t.slot >= 0 && t.slot < costs.count {
            guard let seconds = seconds(of: t, in: plan) else { continue }
            if isSerial(t, in: plan) { costs[t.slot].serialSeconds += seconds } else { costs[t.slot].overlappedSeconds[linkName(t, in: plan), default: 0] += seconds }
        }
        for i in costs.indices {
            let busiest = costs[i].overlappedSeconds.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }
            let overlapped = busiest?.value ?? 0
            costs[i].seconds = costs[i].serialSeconds + max(costs[i].computeSeconds, overlapped)
            if costs[i].serialSeconds > max(costs[i].computeSeconds, overlapped) {
                costs[i].bound = "serial transfers"
            } else if let busiest, overlapped > costs[i].computeSeconds {
                costs[i].bound = "link \(busiest.key)"
            }
        }
        return costs
    }
}
