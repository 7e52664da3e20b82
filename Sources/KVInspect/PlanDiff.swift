import KVArtifact

// Two plans side by side (`kvplan inspect DIR --diff OTHER`): the ILP against a baseline, two KV
// budgets, two targets. What a reader wants from such a comparison is where the difference comes
// from, so beyond the totals (time, traffic per link, peaks) it lists the tensors whose placement
// changed — home tier, the tiers they pass through, how many bytes they move — the ops whose slots
// got faster or slower, and the KV layers whose layout changed. Tensors, ops and tiers are matched
// by name; what exists in one plan only is counted, not matched.

/// What differs between two plans of (usually) one model.
public struct PlanDiff: Codable, Sendable, Equatable {
    /// One plan's headline figures.
    public struct Side: Codable, Sendable, Equatable {
        public var label: String
        public var model: String
        public var target: String
        public var method: String
        public var status: String
        public var seconds: Double
        public var nonCompulsoryBytes: Int
        public var kvBytes: Int?
    }

    /// A figure in both plans: A's, B's, and B − A.
    public struct Change: Codable, Sendable, Equatable {
        public var name: String
        public var a: Double
        public var b: Double
        public var delta: Double
        public init(name: String, a: Double, b: Double) {
            self.name = name
            self.a = a
            self.b = b
            delta = b - a
        }
    }

    /// A tensor whose placement or traffic differs.
    public struct TensorChange: Codable, Sendable, Equatable {
        public var tensor: String
        public var kind: String
        /// Home tier in A and in B ("–": none).
        public var homeA: String
        public var homeB: String
        /// Tiers it lives in (joined by `+`).
        public var tiersA: String
        public var tiersB: String
        public var transfersA: Int
        public var transfersB: Int
        public var movedA: Int
        public var movedB: Int
        /// Tiles (values) in each plan.
        public var partsA: Int
        public var partsB: Int
    }

    /// A KV layer whose layout differs.
    public struct LayerChange: Codable, Sendable, Equatable {
        public var layer: Int
        public var a: KVLayerLayout
        public var b: KVLayerLayout
    }

    public var a: Side
    public var b: Side
    /// Seconds, per-link bytes and per-tier peaks (tiers and links matched by name).
    public var totals: [Change]
    /// Tensors whose home, tiers, tiles or bytes moved differ, most bytes-moved change first (at most `limit`).
    public var tensors: [TensorChange]
    /// How many tensors differ in all (the list may be cut at `limit`).
    public var tensorsChanged: Int
    /// Tensors in one plan only.
    public var onlyInA: Int
    public var onlyInB: Int
    /// Ops whose slot time changed, largest change first (at most `limit`).
    public var ops: [Change]
    public var layers: [LayerChange]

    /// Compares plan `a` (labelled `labelA`) with plan `b`.
    public init(_ planA: Plan, _ planB: Plan, labelA: String = "A", labelB: String = "B", limit: Int = 10) {
        func side(_ p: Plan, _ label: String) -> Side {
            Side(label: label, model: p.model, target: p.target.name, method: p.solver.method, status: p.solver.status,
                 seconds: p.estimate.seconds, nonCompulsoryBytes: p.estimate.nonCompulsoryBytes, kvBytes: p.kv?.bytes)
        }
        a = side(planA, labelA)
        b = side(planB, labelB)
        var totals = [Change(name: "estimated time", a: planA.estimate.seconds, b: planB.estimate.seconds),
                      Change(name: "non-compulsory bytes", a: Double(planA.estimate.nonCompulsoryBytes), b: Double(planB.estimate.nonCompulsoryBytes)),
                      Change(name: "transfers", a: Double(planA.transfers.count), b: Double(planB.transfers.count))]
        let links = Set(planA.estimate.linkBytes.keys).union(planB.estimate.linkBytes.keys).sorted()
        for link in links {
            totals.append(Change(name: "bytes \(link)", a: Double(planA.estimate.linkBytes[link] ?? 0), b: Double(planB.estimate.linkBytes[link] ?? 0)))
        }
        let peaksB = Dictionary(planB.target.tiers.enumerated().map { ($1.name, planB.estimate.peakBytes[safe: $0] ?? 0) }, uniquingKeysWith: max)
        for (i, tier) in planA.target.tiers.enumerated() {
            guard let peakB = peaksB[tier.name] else { continue }
            totals.append(Change(name: "peak \(tier.name)", a: Double(planA.estimate.peakBytes[safe: i] ?? 0), b: Double(peakB)))
        }
        if let kvA = planA.kv, let kvB = planB.kv { totals.append(Change(name: "KV bytes", a: Double(kvA.bytes), b: Double(kvB.bytes))) }
        self.totals = totals

        let rowsA = Dictionary(TensorSummary.rows(planA).map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        let rowsB = TensorSummary.rows(planB)
        var changed: [TensorChange] = []
        for rb in rowsB {
            guard let ra = rowsA[rb.name] else { continue }
            guard ra.home != rb.home || ra.tiers != rb.tiers || ra.parts != rb.parts || ra.movedBytes != rb.movedBytes || ra.transfers != rb.transfers else { continue }
            changed.append(TensorChange(tensor: rb.name, kind: rb.kind.rawValue, homeA: ra.home, homeB: rb.home, tiersA: ra.tiers, tiersB: rb.tiers,
                                        transfersA: ra.transfers, transfersB: rb.transfers, movedA: ra.movedBytes, movedB: rb.movedBytes,
                                        partsA: ra.parts, partsB: rb.parts))
        }
        let namesB = Set(rowsB.map(\.name))
        onlyInA = rowsA.keys.filter { !namesB.contains($0) }.count
        onlyInB = rowsB.filter { rowsA[$0.name] == nil }.count
        tensorsChanged = changed.count
        tensors = Array(changed.enumerated().sorted { x, y in
            let dx = abs(x.element.movedB - x.element.movedA), dy = abs(y.element.movedB - y.element.movedA)
            return dx != dy ? dx > dy : x.offset < y.offset
        }.map(\.element).prefix(limit))

        let opsA = Dictionary(PlanInspection(planA, limit: .max).costliestOps.map { ($0.name, $0.slotSeconds) }, uniquingKeysWith: { x, _ in x })
        let opsB = PlanInspection(planB, limit: .max).costliestOps
        let opChanges = opsB.compactMap { o in opsA[o.name].map { Change(name: o.name, a: $0, b: o.slotSeconds) } }
            .filter { abs($0.delta) > 1e-15 }
        ops = Array(opChanges.enumerated().sorted { x, y in
            abs(x.element.delta) != abs(y.element.delta) ? abs(x.element.delta) > abs(y.element.delta) : x.offset < y.offset
        }.map(\.element).prefix(limit))

        var layers: [LayerChange] = []
        if let kvA = planA.kv, let kvB = planB.kv {
            let byLayer = Dictionary(kvA.layers.map { ($0.layer, $0) }, uniquingKeysWith: { x, _ in x })
            for lb in kvB.layers {
                guard let la = byLayer[lb.layer], la != lb else { continue }
                layers.append(LayerChange(layer: lb.layer, a: la, b: lb))
            }
        }
        self.layers = layers
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
