import KVArtifact

// Every tier's buffers laid out in slots × addresses: the geometry of the SVG timeline.
//
// Rationale. XLA's and TVM's buffer timelines (time across, address up) are what people who use
// memory planners read; this is that picture for a plan. The compute tier's addresses are the
// plan's own offsets. The outer tiers have none in plan.json (the plan leaves their layout free),
// so they get what the schedule lowering gives them: one static region per value resident there,
// in value order at the tier's alignment (Docs/runtime.md). Heights are footprints (bytes rounded
// up to the tier's alignment) so each tier's occupancy curve is the planner's own: its maximum is
// the plan's peak (tested).
//
// Readable at thousands of buffers: a tiled tensor is hundreds of residencies. When a tier has more
// than `maxBuffersPerTier`, one tensor's rectangles that touch — adjacent addresses over the same
// slots, or the same addresses over adjacent slots (a tile stream through one buffer) — are drawn
// as one (exact: the union is that rectangle). If that is still too many, one tensor's rectangles
// whose slot ranges overlap or touch become one box over their slots and addresses, marked as an
// aggregate (its bytes are the sum; the box may include bytes it does not hold).

/// Every tier's buffers in slots × addresses, with the transfers that fill them.
public struct MemoryTimeline: Sendable, Equatable {
    /// A rectangle: one residency, or several of one tensor's drawn together.
    public struct Buffer: Sendable, Equatable {
        /// The value's name (one residency) or the tensor's (several).
        public var name: String
        public var tensor: String
        public var kind: ValueKind
        /// Half-open slot range `[from, to)`.
        public var from: Int
        public var to: Int
        /// First byte and bytes spanned in the tier (footprints, i.e. aligned).
        public var offset: Int
        public var span: Int
        /// Σ bytes of the values drawn (unaligned).
        public var bytes: Int
        /// Residencies drawn as this rectangle (1: a single one).
        public var residencies: Int
        /// True when the rectangle is a bounding box whose span may include other bytes.
        public var isBoundingBox: Bool
    }

    /// A transfer into a tier, placed where its value lands.
    public struct Arrival: Sendable, Equatable {
        public var value: String
        public var slot: Int
        public var offset: Int
        public var span: Int
        public var bytes: Int
        public var reason: String
        /// The tier it comes from.
        public var from: String
    }

    /// One tier's timeline.
    public struct Lane: Sendable, Equatable {
        public var name: String
        public var capacity: Int
        public var alignment: Int
        /// True when the addresses are the plan's (the compute tier); false: static regions in value order.
        public var planAddresses: Bool
        /// One past the highest byte any buffer uses.
        public var extent: Int
        /// Footprint bytes resident in each slot.
        public var occupancy: [Int]
        /// Residencies in the plan, before any aggregation.
        public var residencies: Int
        public var buffers: [Buffer]
        public var arrivals: [Arrival]
        /// Bytes arriving per slot by loads, and by stores and spills.
        public var loadedBytes: [Int]
        public var storedBytes: [Int]
        /// The most bytes resident in one slot.
        public var peak: Int { occupancy.max() ?? 0 }
    }

    /// Slots: prologue, one per step, epilogue.
    public var slotCount: Int
    public var lanes: [Lane]

    /// Lays out `plan`'s residencies, aggregating a tier's tiles above `maxBuffersPerTier` rectangles.
    public init(_ plan: Plan, maxBuffersPerTier: Int = 1500) {
        slotCount = plan.slotCount
        let tiers = plan.target.tiers
        func footprint(_ v: Int, _ tier: Int) -> Int {
            let a = max(1, tiers[tier].alignment)
            return (plan.values[v].bytes + a - 1) / a * a
        }
        // Static regions of the outer tiers, in value order.
        var region = Array(repeating: [Int: Int](), count: tiers.count)
        for tier in tiers.indices.dropFirst() {
            var next = 0
            for v in Set(plan.residencies.filter { $0.tier == tier }.map(\.value)).sorted() {
                region[tier][v] = next
                next += footprint(v, tier)
            }
        }
        func offset(_ r: Residency) -> Int { r.offset ?? region[r.tier][r.value] ?? 0 }

        lanes = tiers.indices.map { tier in
            let held = plan.residencies.filter { $0.tier == tier }
            var delta = Array(repeating: 0, count: plan.slotCount + 1)
            for r in held where r.from >= 0 && r.from < r.to && r.to <= plan.slotCount {
                delta[r.from] += footprint(r.value, tier)
                delta[r.to] -= footprint(r.value, tier)
            }
            var live = 0
            let occupancy = (0..<plan.slotCount).map { t in live += delta[t]; return live }
            var buffers = held.map { r in
                let v = plan.values[r.value]
                return Buffer(name: v.name, tensor: v.tensor, kind: v.kind, from: r.from, to: r.to, offset: offset(r),
                              span: footprint(r.value, tier), bytes: v.bytes, residencies: 1, isBoundingBox: false)
            }
            if buffers.count > maxBuffersPerTier { buffers = Self.mergedExactly(buffers) }
            if buffers.count > maxBuffersPerTier { buffers = Self.boundingBoxes(buffers) }
            buffers.sort { ($0.from, $0.offset, $0.name) < ($1.from, $1.offset, $1.name) }
            // A transfer lands in the destination's residency that holds its value in (or right after) its slot.
            var arrivals: [Arrival] = []
            var loaded = Array(repeating: 0, count: plan.slotCount), stored = loaded
            let heldByValue = Dictionary(grouping: held, by: \.value)
            for t in plan.transfers where t.to == tier && t.slot >= 0 && t.slot < plan.slotCount {
                if t.reason == "load" { loaded[t.slot] += t.bytes } else { stored[t.slot] += t.bytes }
                let candidates = heldByValue[t.value] ?? []
                guard let r = candidates.first(where: { $0.from <= t.slot && t.slot < $0.to })
                        ?? candidates.first(where: { $0.from == t.slot + 1 }) else { continue }
                arrivals.append(Arrival(value: plan.values[t.value].name, slot: t.slot, offset: offset(r), span: footprint(t.value, tier),
                                        bytes: t.bytes, reason: t.reason, from: tiers[t.from].name))
            }
            return Lane(name: tiers[tier].name, capacity: tiers[tier].capacity, alignment: tiers[tier].alignment,
                        planAddresses: tier == 0, extent: held.map { offset($0) + footprint($0.value, tier) }.max() ?? 0,
                        occupancy: occupancy, residencies: held.count, buffers: buffers, arrivals: arrivals,
                        loadedBytes: loaded, storedBytes: stored)
        }
    }

    /// Buffers grouped by tensor, tensors in order of first appearance.
    static func byTensor(_ buffers: [Buffer]) -> [(String, [Buffer])] {
        var groups: [String: [Buffer]] = [:]
        var order: [String] = []
        for b in buffers {
            if groups[b.tensor] == nil { order.append(b.tensor) }
            groups[b.tensor, default: []].append(b)
        }
        return order.map { ($0, groups[$0]!) }
    }

    /// One tensor's buffers drawn together where the union is a rectangle: touching addresses over
    /// the same slots, or the same addresses over touching slots (exact).
    static func mergedExactly(_ buffers: [Buffer]) -> [Buffer] {
        var result: [Buffer] = []
        for (_, group) in byTensor(buffers) {
            // Stack along addresses, then chain along slots; each pass only joins touching rectangles.
            let stacked = join(group, key: { ($0.from, $0.to) }, start: \.offset, length: \.span)
            result += join(stacked, key: { ($0.offset, $0.span) }, start: \.from, length: { $0.to - $0.from })
        }
        return result
    }

    /// Joins rectangles sharing `key` whose `[start, start + length)` ranges touch.
    private static func join(_ buffers: [Buffer], key: (Buffer) -> (Int, Int), start: (Buffer) -> Int, length: (Buffer) -> Int) -> [Buffer] {
        let sorted = buffers.sorted { (key($0).0, key($0).1, start($0), $0.name) < (key($1).0, key($1).1, start($1), $1.name) }
        var out: [Buffer] = []
        for b in sorted {
            if let last = out.last, key(last) == key(b), start(last) + length(last) == start(b), !last.isBoundingBox, !b.isBoundingBox {
                var m = last
                m.name = b.tensor
                m.from = min(last.from, b.from); m.to = max(last.to, b.to)
                m.offset = min(last.offset, b.offset); m.span = max(last.offset + last.span, b.offset + b.span) - m.offset
                m.bytes += b.bytes
                m.residencies += b.residencies
                out[out.count - 1] = m
            } else {
                out.append(b)
            }
        }
        return out
    }

    /// One tensor's buffers whose slot ranges overlap or touch drawn as one box over their slots and addresses.
    static func boundingBoxes(_ buffers: [Buffer]) -> [Buffer] {
        var result: [Buffer] = []
        for (tensor, group) in byTensor(buffers) {
            var box: Buffer?
            for b in group.sorted(by: { ($0.from, $0.offset, $0.name) < ($1.from, $1.offset, $1.name) }) {
                if var m = box, b.from <= m.to {
                    let end = max(m.offset + m.span, b.offset + b.span)
                    m.name = tensor
                    m.offset = min(m.offset, b.offset)
                    m.span = end - m.offset
                    m.to = max(m.to, b.to)
                    m.bytes += b.bytes
                    m.residencies += b.residencies
                    m.isBoundingBox = true
                    box = m
                } else {
                    if let m = box { result.append(m) }
                    box = b
                }
            }
            if let m = box { result.append(m) }
        }
        return result
    }
}
