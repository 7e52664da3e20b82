import KVArtifact
import KVGraph

/// What every placement method plans: values (tensors or tiles), steps in order, and the target.
///
/// Built from a checked graph by `PlacementProblem.init(graph:target:)`: one step per op (the
/// tiling pass splits ops whose working set exceeds the compute tier), one value per tensor.
/// Weights, inputs and caches live in a home tier (the first tier after the compute tier with
/// room for them, in op order, else the next); outputs and updated caches must end there.
public struct PlacementProblem: Sendable {
    /// Values (units of placement).
    public var values: [Value]
    /// Steps in execution order; step `i` computes in slot `i + 1`.
    public var steps: [Step]
    /// The target's tiers and links.
    public var target: PlanTarget
    /// Model name.
    public var model: String

    /// Tier 0: where steps compute.
    public var computeTier: Int { 0 }
    /// The tier that takes spilled activations (the first one after the compute tier).
    public var spillTier: Int { 1 }
    /// Number of slots: prologue, one per step, epilogue.
    public var slotCount: Int { steps.count + 2 }

    /// Creates a problem directly (tests, generated problems).
    public init(model: String, target: PlanTarget, values: [Value], steps: [Step]) {
        self.model = model
        self.target = target
        self.values = values
        self.steps = steps
    }

    /// Bytes a value occupies in `tier` (rounded up to the tier's alignment).
    public func footprint(_ value: Int, in tier: Int) -> Int {
        let a = max(1, target.tiers[tier].alignment)
        return (values[value].bytes + a - 1) / a * a
    }

    /// The values a step touches (reads ∪ writes), each once, in first-mention order.
    public func touched(_ step: Int) -> [Int] {
        var seen = Set<Int>()
        return (steps[step].reads + steps[step].writes).filter { seen.insert($0).inserted }
    }

    /// How to move a value from tier `a` to tier `b`: directly, or through one intermediate tier.
    public func route(from a: Int, to b: Int) -> Route? { target.route(from: a, to: b) }

    /// A path between two tiers: direct, or staged through `via`.
    public struct Route: Sendable, Equatable {
        public var via: Int?
    }

    /// Bytes reserved in every intermediate tier for staged copies (four compute tiers' worth).
    public var stagingReserve: Int { 4 * target.tiers[computeTier].capacity }

    /// Bytes a step needs in the compute tier at once.
    public func workingSet(_ step: Int) -> Int {
        touched(step).reduce(0) { $0 + footprint($1, in: computeTier) }
    }
}

/// Why a problem could not be built or planned.
public struct PlanningError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, naming the op or tensor.
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension PlanTarget {
    /// How to move a value from tier `a` to tier `b`: directly, or through one intermediate tier.
    public func route(from a: Int, to b: Int) -> PlacementProblem.Route? {
        if link(a, b) != nil { return PlacementProblem.Route(via: nil) }
        for m in tiers.indices where m != a && m != b && link(a, m) != nil && link(m, b) != nil {
            return PlacementProblem.Route(via: m)
        }
        return nil
    }

    /// The plan's view of a target (tiers fastest first, links by tier name).
    public init(_ target: Target) {
        self.init(name: target.name,
                  tiers: target.tiers.map { Tier(name: $0.name, capacity: $0.capacity, alignment: $0.alignment) },
                  links: target.links.map { Link(from: $0.from, to: $0.to, bandwidth: $0.bandwidth, latency: $0.latency) })
    }

    /// The link from tier `a` to tier `b`.
    public func link(_ a: Int, _ b: Int) -> Link? {
        links.first { $0.from == tiers[a].name && $0.to == tiers[b].name }
    }
}

extension PlacementProblem {
    /// One value per tensor and one step per op of `graph`, in its order, on `target`.
    /// `cacheBytes` overrides the bytes of tensors (KV caches whose layout the KV budget pass chose).
    public init(graph: Graph, target: Target, cacheBytes: [Int: Int] = [:]) throws(PlanningError) {
        func size(_ t: Int) -> Int { cacheBytes[t] ?? graph.tensors[t].byteSize }
        guard target.tiers.count >= 2 else {
            throw PlanningError("target '\(target.name)' needs at least two tiers (a compute tier and a backing tier)")
        }
        let plan = PlanTarget(target)
        if plan.link(0, 1) == nil && plan.link(1, 0) == nil {
            throw PlanningError("target '\(target.name)' has no link between '\(plan.tiers[0].name)' and '\(plan.tiers[1].name)'")
        }
        var updated = Set<Int>()
        for op in graph.ops { for u in op.updates { updated.insert(u) } }

        // Home tiers: persistent tensors, decided by HomeAssignment (first fit in order of first use
        // when everything fits in the nearest backing tier).
        var firstUse = Array(repeating: Int.max, count: graph.tensors.count)
        var reads = Array(repeating: 0, count: graph.tensors.count)
        for (position, opID) in graph.order.enumerated() {
            let op = graph.ops[opID]
            for t in op.operands + op.results + op.updates where firstUse[t] == Int.max { firstUse[t] = position }
            for t in Set(op.operands) { reads[t] += 1 }
        }
        var free = plan.tiers.map(\.capacity)
        // Intermediate tiers keep room for staged copies (see `stagingReserve`).
        for m in 1..<plan.tiers.count - 1 { free[m] -= 4 * plan.tiers[0].capacity }
        var homes = Array(repeating: Int?.none, count: graph.tensors.count)
        let needsHome = graph.tensors.indices.filter { graph.tensors[$0].kind != .activation }
            .sorted { (firstUse[$0], $0) < (firstUse[$1], $1) }
        let items = needsHome.map { t in
            HomeAssignment.Item(bytes: size(t), reads: reads[t], writes: graph.tensors[t].kind == .output ? 1 : 0)
        }
        switch HomeAssignment.assign(items, free: free, target: plan) {
        case let .success(tiers): for (k, t) in needsHome.enumerated() { homes[t] = tiers[k] }
        case let .failure(f):
            let t = needsHome[f.item]
            throw PlanningError("tensor '\(graph.tensors[t].name)' (\(size(t)) B) fits in no backing tier of '\(target.name)'")
        }
        let tensorValues = graph.tensors.enumerated().map { t, tensor in
            let kind: ValueKind = switch tensor.kind {
            case .weight: .weight
            case .input: .input
            case .activation: .activation
            case .cache: .cache
            case .output: .output
            }
            return Value(name: tensor.name, tensor: tensor.name, kind: kind, bytes: size(t), home: homes[t],
                         mustPersist: tensor.kind == .output || updated.contains(t))
        }
        // An embedding lookup gathers rows: it reads as many table bytes as it writes elements.
        var gathered = tensorValues
        var substitutions: [Int: [Int: Int]] = [:]
        for opID in graph.order where graph.ops[opID].kind == .embed {
            let op = graph.ops[opID]
            guard let table = op.operands.first(where: { graph.tensors[$0].kind == .weight }), let y = op.results.first else { continue }
            let rows = graph.tensors[table].dtype.bytes(forElements: graph.tensors[y].elementCount) ?? graph.tensors[table].byteSize
            var v = tensorValues[table]
            v.name = "\(v.name)[\(graph.tensors[y].name)]"
            v.bytes = min(rows, v.bytes)
            substitutions[opID] = [table: gathered.count]
            gathered.append(v)
        }
        let tiling = try TilingPass(graph: graph, values: gathered, substitutions: substitutions, capacity: plan.tiers[0].capacity,
                                    alignment: max(1, plan.tiers[0].alignment))
        // Values that are whole items stay; split items are replaced by their parts; values the
        // pass added that no step touches are dropped (graph tensors stay: an unused weight still has a home).
        let kept = tiling.currentValues(graphTensors: graph.tensors.count)
        var renumber = Array(repeating: -1, count: tiling.values.count)
        for (k, v) in kept.enumerated() { renumber[v] = k }
        values = kept.map { tiling.values[$0] }
        var steps: [Step] = []
        let allTiles = tiling.opTiles
        for opID in graph.order {
            let op = graph.ops[opID]
            let dtype = op.operands.map { graph.tensors[$0] }.first(where: { $0.kind == .weight })?.dtype
                ?? op.results.first.map { graph.tensors[$0].dtype } ?? .f32
            guard let rate = target.throughput(for: dtype) else {
                throw PlanningError("target '\(target.name)' gives no compute throughput for \(dtype.rawValue) (op \(op.kind.rawValue) producing '\(op.results.first.map { graph.tensors[$0].name } ?? "?")')")
            }
            let name = op.results.first.map { graph.tensors[$0].name } ?? "op\(opID)"
            let tiles = allTiles[opID]
            let k = tiles.count
            for (j, tile) in tiles.enumerated() {
                let flops = op.flops * (j + 1) / k - op.flops * j / k
                let reads: [Int] = tile.reads.map { renumber[$0] }
                let writes: [Int] = tile.writes.map { renumber[$0] }
                steps.append(Step(name: k == 1 ? name : "\(name)#\(j)", op: op.kind.rawValue, tile: k == 1 ? nil : j,
                                  tiles: k == 1 ? nil : k, reads: reads, writes: writes, flops: flops,
                                  computeSeconds: Double(flops) / rate, scheme: k == 1 ? nil : tiling.schemes[opID]))
            }
        }
        self.steps = steps
        self.target = plan
        model = graph.name
    }
}
