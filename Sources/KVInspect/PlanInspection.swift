import KVArtifact

// A plan at a glance: the figures `kvplan inspect` prints (and writes with --json), computed from
// plan.json alone — target and tiers, solver status, per-tier peaks, bytes and busy time per link,
// the estimate against each baseline, the per-layer KV layout, and where time and traffic
// concentrate (the costliest transfers, the ops whose slots take longest).

/// What `kvplan inspect` reports about a plan.
public struct PlanInspection: Codable, Sendable, Equatable {
    /// One memory tier's use.
    public struct TierUse: Codable, Sendable, Equatable {
        public var name: String
        public var capacity: Int
        public var alignment: Int
        /// Peak bytes resident at once (the plan's estimate).
        public var peakBytes: Int
        /// Values that are resident in this tier at some slot.
        public var values: Int
    }

    /// One link's traffic.
    public struct LinkUse: Codable, Sendable, Equatable {
        public var from: String
        public var to: String
        /// Bytes per second and seconds per transfer.
        public var bandwidth: Double
        public var latency: Double
        public var bytes: Int
        public var transfers: Int
        /// Σ bytes / bandwidth + latency over its transfers.
        public var busySeconds: Double
    }

    /// A baseline planned on the same problem, against this plan.
    public struct BaselineRow: Codable, Sendable, Equatable {
        public var method: String
        public var seconds: Double
        public var nonCompulsoryBytes: Int
        /// 1 − this plan's seconds ÷ the baseline's (positive: this plan is faster).
        public var timeSaved: Double
        /// Non-compulsory bytes this plan avoids relative to the baseline (negative: it moves more).
        public var bytesSaved: Int
    }

    /// One transfer, named.
    public struct TransferRow: Codable, Sendable, Equatable {
        public var value: String
        public var tensor: String
        public var from: String
        public var to: String
        public var bytes: Int
        public var slot: Int
        /// The step computing in that slot (`prologue` / `epilogue` outside the steps).
        public var step: String
        public var reason: String
        public var seconds: Double
        /// True when the step in its slot waits for it.
        public var serial: Bool
    }

    /// One op (all its tiles).
    public struct OpRow: Codable, Sendable, Equatable {
        public var name: String
        public var kind: String
        /// Steps (tiles) and how the op is split (nil: whole).
        public var steps: Int
        public var scheme: String?
        public var flops: Int
        public var computeSeconds: Double
        /// Σ of its slots' time (compute and the transfers in those slots).
        public var slotSeconds: Double
        /// Bytes transferred in its slots.
        public var transferBytes: Int
        /// What bounds most of its slot time.
        public var bound: String
    }

    public var model: String
    public var target: String
    public var objective: String
    public var solver: SolverSummary
    public var steps: Int
    public var values: Int
    public var transferCount: Int
    public var tiers: [TierUse]
    public var links: [LinkUse]
    public var estimate: Estimate
    /// The estimate recomputed slot by slot from the plan (equal to estimate.seconds up to rounding).
    public var recomputedSeconds: Double
    public var baselines: [BaselineRow]
    public var kv: KVReport?
    /// The transfers taking longest on their link, longest first (at most `limit`).
    public var costliestTransfers: [TransferRow]
    /// The ops whose slots take longest, longest first (at most `limit`).
    public var costliestOps: [OpRow]

    /// The op a step belongs to: its name without a tile suffix `#j`.
    public static func opName(of step: Step) -> String {
        guard step.tile != nil, let hash = step.name.lastIndex(of: "#") else { return step.name }
        return String(step.name[..<hash])
    }

    /// The step computing in `slot`, or `prologue` / `epilogue`.
    static func stepName(slot: Int, in plan: Plan) -> String {
        slot < 1 ? "prologue" : slot > plan.steps.count ? "epilogue" : plan.steps[slot - 1].name
    }

    /// Inspects `plan`, keeping the `limit` costliest transfers and ops.
    public init(_ plan: Plan, limit: Int = 10) {
        model = plan.model
        target = plan.target.name
        objective = plan.objective
        solver = plan.solver
        steps = plan.steps.count
        values = plan.values.count
        transferCount = plan.transfers.count
        estimate = plan.estimate
        kv = plan.kv
        let tierValues = plan.target.tiers.indices.map { tier in Set(plan.residencies.filter { $0.tier == tier }.map(\.value)).count }
        tiers = plan.target.tiers.enumerated().map { i, t in
            TierUse(name: t.name, capacity: t.capacity, alignment: t.alignment,
                    peakBytes: i < plan.estimate.peakBytes.count ? plan.estimate.peakBytes[i] : 0, values: tierValues[i])
        }
        var perLink: [String: (bytes: Int, count: Int, seconds: Double)] = [:]
        for t in plan.transfers {
            let key = SlotCosts.linkName(t, in: plan)
            perLink[key, default: (0, 0, 0)].bytes += t.bytes
            perLink[key, default: (0, 0, 0)].count += 1
            perLink[key, default: (0, 0, 0)].seconds += SlotCosts.seconds(of: t, in: plan) ?? 0
        }
        links = plan.target.links.map { link in
            let use = perLink["\(link.from)->\(link.to)"] ?? (0, 0, 0)
            return LinkUse(from: link.from, to: link.to, bandwidth: link.bandwidth, latency: link.latency,
                           bytes: use.bytes, transfers: use.count, busySeconds: use.seconds)
        }
        let slots = SlotCosts.slots(plan)
        recomputedSeconds = slots.reduce(0) { $0 + $1.seconds }
        baselines = plan.baselines.map { b in
            BaselineRow(method: b.method, seconds: b.estimate.seconds, nonCompulsoryBytes: b.estimate.nonCompulsoryBytes,
                        timeSaved: b.estimate.seconds > 0 ? 1 - plan.estimate.seconds / b.estimate.seconds : 0,
                        bytesSaved: b.estimate.nonCompulsoryBytes - plan.estimate.nonCompulsoryBytes)
        }
        let rows = plan.transfers.map { t in
            TransferRow(value: plan.values[t.value].name, tensor: plan.values[t.value].tensor,
                        from: plan.target.tiers[t.from].name, to: plan.target.tiers[t.to].name, bytes: t.bytes, slot: t.slot,
                        step: Self.stepName(slot: t.slot, in: plan), reason: t.reason,
                        seconds: SlotCosts.seconds(of: t, in: plan) ?? 0, serial: SlotCosts.isSerial(t, in: plan))
        }
        // Stable order: seconds, then bytes, then slot and value name (ties are common: equal tiles).
        costliestTransfers = Array(rows.sorted { a, b in
            (a.seconds, a.bytes, -a.slot, a.value) > (b.seconds, b.bytes, -b.slot, b.value)
        }.prefix(limit))
        var transferBytes = Array(repeating: 0, count: plan.slotCount)
        for t in plan.transfers where t.slot >= 0 && t.slot < plan.slotCount { transferBytes[t.slot] += t.bytes }
        var order: [String] = []
        var ops: [String: OpRow] = [:]
        var boundSeconds: [String: [String: Double]] = [:]
        for (i, step) in plan.steps.enumerated() {
            let name = Self.opName(of: step)
            let slot = slots[i + 1]
            if ops[name] == nil {
                order.append(name)
                ops[name] = OpRow(name: name, kind: step.op, steps: 0, scheme: step.scheme, flops: 0, computeSeconds: 0,
                                  slotSeconds: 0, transferBytes: 0, bound: "compute")
            }
            ops[name]!.steps += 1
            ops[name]!.flops += step.flops
            ops[name]!.computeSeconds += step.computeSeconds
            ops[name]!.slotSeconds += slot.seconds
            ops[name]!.transferBytes += transferBytes[i + 1]
            boundSeconds[name, default: [:]][slot.bound, default: 0] += slot.seconds
        }
        for name in order {
            ops[name]!.bound = boundSeconds[name]!.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }!.key
        }
        let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        costliestOps = Array(order.compactMap { ops[$0] }.sorted { a, b in
            a.slotSeconds != b.slotSeconds ? a.slotSeconds > b.slotSeconds : position[a.name]! < position[b.name]!
        }.prefix(limit))
    }
}
