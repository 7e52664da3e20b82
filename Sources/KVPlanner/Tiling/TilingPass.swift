import KVArtifact
import KVGraph
import KVQuant

/// Tiling: split ops whose working set exceeds the compute tier into tiles that fit.
///
/// Rationale. A tensor is split at most once, into contiguous parts (values named `name#j`)
/// along one axis; a later op that wants the same cut reuses the parts, any other op reads all of
/// them. Every op kind offers one or more *schemes* (matmul: output columns, or the reduction
/// axis K with the partial result accumulated in place; decode attention: KV tokens with an
/// online-softmax state carried from tile to tile; sequence attention: query rows; conv2d and
/// pooling: output channels, or output-row bands that read the input bands their receptive field
/// covers (the halo); row-wise ops: rows; elementwise ops: their length). For each scheme the
/// smallest tile count whose largest tile fits is found; among schemes, the one touching the
/// fewest bytes over all its tiles wins (ties: fewer tiles), so tiles are as big as the tier
/// allows and shared operands are re-read least. An embedding lookup reads only its gathered rows
/// (a value of its own, substituted for the table by the problem builder). Decode attention
/// always writes the new token's K/V as an *append row* value (`cache[new]`) that persists to the
/// cache's home: the cache itself is only read, so no plan ever writes a whole cache back.
/// If no scheme fits, the op is refused with its bytes.
struct TilingPass {
    /// A cut of a tensor: along dimension `dim` (-1: the flat element order) at `cuts` (k + 1 offsets).
    struct Split: Equatable {
        var dim: Int
        var cuts: [Int]
        var count: Int { cuts.count - 1 }
    }
    /// What one tile reads and writes: (item, part) pairs; part nil = the whole item.
    struct Ref: Hashable {
        var item: Int
        var part: Int?
        static func whole(_ item: Int) -> Ref { Ref(item: item, part: nil) }
        static func part(_ item: Int, _ part: Int?) -> Ref { Ref(item: item, part: part) }
    }
    struct TileRefs {
        var reads: [Ref] = []
        var writes: [Ref] = []
    }
    /// A way to split an op `k` ways: the cuts it makes and what each tile touches.
    struct Layout {
        var scheme: String
        var splits: [Int: Split]
        var tiles: [TileRefs]
    }

    /// Values so far; items are graph tensors plus values the pass adds (gathered rows, states, append rows).
    var values: [Value]
    /// Per item, its value indices (one, or its parts in order).
    var parts: [[Int]]
    /// Per item, its cut (nil: whole).
    var splits: [Split?]
    /// Per op (by id), what each tile reads and writes (a value, part = -1, or a whole item).
    private var tileRefs: [[TileRefs]]
    /// Per op (by id), the scheme it is split by (nil: computed whole).
    private(set) var schemes: [String?]

    private let graph: Graph
    private let alignment: Int
    private var shapes: [[Int]]

    /// Decides the tiles of every op of `graph` (in order) for a compute tier of `capacity` bytes.
    init(graph: Graph, values tensorValues: [Value], substitutions: [Int: [Int: Int]], capacity: Int,
         alignment: Int) throws(PlanningError) {
        self.graph = graph
        self.alignment = alignment
        values = tensorValues
        parts = tensorValues.indices.map { [$0] }
        splits = Array(repeating: nil, count: tensorValues.count)
        shapes = tensorValues.indices.map { $0 < graph.tensors.count ? graph.tensors[$0].shape.sizes : [] }
        tileRefs = Array(repeating: [], count: graph.ops.count)
        schemes = Array(repeating: nil, count: graph.ops.count)
        // Gathered-row values keep the shape of the rows they stand for.
        for (opID, swap) in substitutions {
            for (_, item) in swap { if let y = graph.ops[opID].results.first { shapes[item] = graph.tensors[y].shape.sizes } }
        }

        for opID in graph.order {
            let op = graph.ops[opID]
            let swap = substitutions[opID] ?? [:]
            var appends: [Int] = []
            var state: Int?
            if op.kind == .attention && !op.updates.isEmpty {
                appends = addAppendRows(op)
                state = addState(op)
            }
            let whole = wholeLayout(op, swap: swap, appends: appends)
            let wholeNeed = need(whole)
            guard wholeNeed > capacity else { commit(whole, op: opID); continue }
            // Tiles aim at half the tier (so the next tile can be fetched while this one computes),
            // and settle for the whole tier when no scheme gets that small.
            var best: (layout: Layout, total: Int)?
            for goal in [capacity / 2, capacity] where best == nil {
                for scheme in schemeNames(op) {
                    guard let layout = smallestFitting(op, scheme: scheme, goal: goal, swap: swap, appends: appends, state: state)
                    else { continue }
                    let total = layout.tiles.indices.reduce(0) { $0 + tileBytes(layout, $1) }
                    if let b = best, (b.total, b.layout.tiles.count) <= (total, layout.tiles.count) {} else { best = (layout, total) }
                }
            }
            let result = graph.tensors[op.results.first ?? 0].name
            guard let chosen = best else {
                let tried = schemeNames(op)
                throw PlanningError(tried.isEmpty
                    ? "op '\(op.kind.rawValue)' producing '\(result)' needs \(wholeNeed) B at once, more than the \(capacity) B compute tier, and kvplan cannot tile \(op.kind.rawValue)"
                    : "op '\(op.kind.rawValue)' producing '\(result)' needs \(wholeNeed) B at once; even its smallest legal tile (schemes: \(tried.joined(separator: ", "))) does not fit the \(capacity) B compute tier")
            }
            commit(chosen.layout, op: opID)
        }
    }

    // MARK: Items and sizes

    private func aligned(_ b: Int) -> Int { (b + alignment - 1) / alignment * alignment }

    /// Adds one append-row value per cache the attention op updates (the new token's K or V).
    private mutating func addAppendRows(_ op: Op) -> [Int] {
        op.updates.map { c in
            let shape = graph.tensors[c].shape.sizes  // [B, T, KVH, D]
            let perToken = graph.tensors[c].byteSize / max(1, shape.count > 1 ? shape[1] : 1)
            var v = values[c]
            v.name = "\(v.name)[new]"
            v.bytes = perToken
            v.mustPersist = true
            values[c].mustPersist = false
            return addItem(v, shape: shape.count > 1 ? [shape[0]] + shape.dropFirst(2) : shape)
        }
    }

    /// Adds the online-softmax state of a tiled decode attention: per query head, running max,
    /// running sum and Dv accumulators, in f32 (used only when the op is split by tokens).
    private mutating func addState(_ op: Op) -> Int {
        let y = op.results[0]
        let heads: Int = if case .int(let h) = op.attribute("heads") { h } else { 1 }
        let ys = graph.tensors[y].shape.sizes
        let batch = ys.first ?? 1, dv = (ys.last ?? 1) / max(1, heads)
        var v = values[y]
        v.name = "\(v.name)~state"
        v.kind = .activation
        v.home = nil
        v.mustPersist = false
        v.bytes = batch * heads * (dv + 2) * 4
        return addItem(v, shape: [batch, heads, dv + 2])
    }

    private mutating func addItem(_ v: Value, shape: [Int]) -> Int {
        values.append(v)
        parts.append([values.count - 1])
        splits.append(nil)
        shapes.append(shape)
        return parts.count - 1
    }

    /// `dim`-cut of item `t` into `k` near-equal ranges, flattened when the cut is contiguous.
    /// With `granule` > 1 (a multiple of it long) every cut falls on a multiple of it: the
    /// 32-value blocks of a q8_0 / q4_0 weight cut along its rows.
    private func split(_ t: Int, dim: Int, k: Int, granule: Int = 1) -> Split {
        let shape = shapes[t]
        let cuts = (0...k).map { ValuePart.cut($0, of: k, length: shape[dim], granule: granule) }
        return canonical(t, Split(dim: dim, cuts: cuts))
    }

    /// The granule of a columns cut of `op` (a linear layer): 16 output rows — a q8_0 / q4_0
    /// weight's interleaved row group (KVQuant.WeightLayout), so each part can be interleaved
    /// for its tile's GEMV — when the weight is in a block format and its rows come in 16s, else 1.
    private func columnGranule(_ op: Op) -> Int {
        let w = graph.tensors[op.operands[1]], group = WeightLayout.groupRows
        guard op.attribute("transpose_b") == .bool(true), w.shape.sizes.count == 2, w.dtype.blockElements != nil,
              w.shape.sizes[0] % group == 0 else { return 1 }
        return group
    }

    /// The granule of a reduction cut of `op` (a linear layer): its weight's block length when
    /// the weight is stored in blocks along the reduction axis (q8_0, q4_0), else 1.
    private func reductionGranule(_ op: Op) -> Int {
        let w = graph.tensors[op.operands[1]]
        guard op.attribute("transpose_b") == .bool(true), w.shape.sizes.count == 2, let block = w.dtype.blockElements,
              w.shape.sizes[1] % block == 0 else { return 1 }
        return block
    }

    /// A flat cut stays flat; a dimension cut is made canonical for `t`.
    private func canonicalFlat(_ t: Int, _ s: Split) -> Split { s.dim < 0 ? s : canonical(t, s) }

    private func canonical(_ t: Int, _ s: Split) -> Split {
        guard s.dim >= 0 else { return s }
        let shape = shapes[t]
        guard shape[..<s.dim].reduce(1, *) == 1 else { return s }
        let inner = shape[(s.dim + 1)...].reduce(1, *)
        return Split(dim: -1, cuts: s.cuts.map { $0 * inner })
    }

    /// Bytes of part `j` of item `t` under split `s`.
    private func partBytes(_ t: Int, _ s: Split, _ j: Int) -> Int {
        let total = parts[t].reduce(0) { $0 + values[$1].bytes }
        let n = s.dim < 0 ? max(1, shapes[t].reduce(1, *)) : shapes[t][s.dim]
        return total * s.cuts[j + 1] / n - total * s.cuts[j] / n
    }

    private func wholeBytes(_ t: Int) -> Int { parts[t].reduce(0) { $0 + aligned(values[$1].bytes) } }

    /// Whether item `t` can be read part by part under `s` (unsplit, or already cut the same way).
    private func usable(_ t: Int, _ s: Split?) -> Bool {
        guard let s else { return false }
        return splits[t] == nil || splits[t] == s
    }

    private func tileBytes(_ layout: Layout, _ j: Int) -> Int {
        var seen = Set<Ref>()
        var total = 0
        for ref in layout.tiles[j].reads + layout.tiles[j].writes {
            let t = ref.item
            if let part = ref.part, usable(t, layout.splits[t]) {
                if seen.insert(ref).inserted { total += aligned(partBytes(t, layout.splits[t]!, part)) }
            } else if seen.insert(.whole(t)).inserted {
                total += wholeBytes(t)
            }
        }
        return total
    }

    private func need(_ layout: Layout) -> Int { layout.tiles.indices.map { tileBytes(layout, $0) }.max() ?? 0 }

    /// The layout with the fewest tiles whose largest tile needs at most `goal` bytes: the
    /// operands' existing cuts first, then doubling the tile count and bisecting back (the need
    /// falls as tiles grow in number, up to rounding and halos).
    private func smallestFitting(_ op: Op, scheme: String, goal: Int, swap: [Int: Int], appends: [Int],
                                 state: Int?) -> Layout? {
        guard let limit = maxTiles(op, scheme: scheme), limit >= 2 else { return nil }
        func at(_ k: Int) -> Layout { layout(op, scheme: scheme, k: k, swap: swap, appends: appends, state: state) }
        let reused = Set((op.operands + op.updates).compactMap { splits[swap[$0] ?? $0]?.count }).sorted()
        for k in reused where k >= 2 && k <= limit {
            let l = at(k)
            if need(l) <= goal { return l }
        }
        var lo = 1, hi = 2
        while need(at(hi)) > goal {
            guard hi < limit else { return nil }
            lo = hi
            hi = min(limit, hi * 2)
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if need(at(mid)) <= goal { hi = mid } else { lo = mid }
        }
        return at(hi)
    }

    // MARK: Schemes

    private func wholeLayout(_ op: Op, swap: [Int: Int], appends: [Int]) -> Layout {
        let ins = (op.operands + op.updates).map { Ref.whole(swap[$0] ?? $0) }
        let outs = (op.results + appends).map(Ref.whole)
        let writesCaches = appends.isEmpty ? op.updates.map(Ref.whole) : []
        return Layout(scheme: "whole", splits: [:], tiles: [TileRefs(reads: ins, writes: outs + writesCaches)])
    }

    private func schemeNames(_ op: Op) -> [String] {
        switch op.kind {
        case .matmul: ["columns", "reduction"]
        case .attention: op.updates.isEmpty ? ["queries"] : ["tokens"]
        case .conv2d: ["channels", "rows"]
        case .maxpool, .avgpool: ["channels", "rows"]
        case .globalAvgpool: ["channels"]
        case .rmsnorm, .layernorm, .softmax, .rope: ["rows"]
        case .add, .mul, .silu, .gelu, .relu, .siluMul, .reshape: ["length"]
        default: []
        }
    }

    private func ints(_ op: Op, _ name: String, _ fallback: (Int, Int)) -> (Int, Int) {
        switch op.attribute(name) {
        case .int(let v): (v, v)
        case .ints(let v) where v.count == 2: (v[0], v[1])
        default: fallback
        }
    }

    /// The largest tile count a scheme allows (the length of its axis).
    private func maxTiles(_ op: Op, scheme: String) -> Int? {
        guard let y = op.results.first else { return nil }
        let ys = graph.tensors[y].shape.sizes
        switch (op.kind, scheme) {
        case (.matmul, "columns"): return ys.last.map { $0 / columnGranule(op) }
        case (.matmul, "reduction"): return graph.tensors[op.operands[0]].shape.sizes.last.map { $0 / reductionGranule(op) }
        case (.attention, "tokens"): return graph.tensors[op.updates[0]].shape.sizes[1]
        case (.attention, "queries"): return ys.count >= 3 ? ys[1] : nil
        case (_, "channels"): return ys.count == 4 ? ys[1] : nil
        case (.conv2d, "rows"), (.maxpool, "rows"), (.avgpool, "rows"): return ys.count == 4 ? ys[2] : nil
        case (_, "rows"): return ys.count >= 2 ? ys.dropLast().reduce(1, *) : nil
        case (_, "length"): return graph.tensors[y].elementCount
        default: return nil
        }
    }

    /// The layout of `op` split `k` ways under `scheme`.
    private func layout(_ op: Op, scheme: String, k: Int, swap: [Int: Int], appends: [Int], state: Int?) -> Layout {
        let y = op.results[0]
        let read = { (t: Int) in swap[t] ?? t }
        var s: [Int: Split] = [:]
        var tiles = Array(repeating: TileRefs(), count: k)
        func parted(_ t: Int, _ split: Split) { s[t] = split }
        switch (op.kind, scheme) {
        case (.matmul, "columns"):
            let w = op.operands[1], transposed = op.attribute("transpose_b") == .bool(true)
            let ws = graph.tensors[w].shape.sizes
            let ys = graph.tensors[y].shape.sizes
            let granule = columnGranule(op)
            parted(y, split(y, dim: ys.count - 1, k: k, granule: granule))
            if ws.count == 2 { parted(w, split(w, dim: transposed ? 0 : 1, k: k, granule: granule)) }
            if op.operands.count >= 3 { parted(op.operands[2], split(op.operands[2], dim: 0, k: k, granule: granule)) }
            for j in 0..<k {
                tiles[j].reads = [.whole(read(op.operands[0])), .part(w, ws.count == 2 ? j : nil)]
                if op.operands.count >= 3 { tiles[j].reads.append(.part(op.operands[2], j)) }
                tiles[j].writes = [.part(y, j)]
            }
        case (.matmul, "reduction"):
            // Partial sums accumulate in the result: tile j > 0 reads and writes it.
            let x = read(op.operands[0]), w = op.operands[1], transposed = op.attribute("transpose_b") == .bool(true)
            let xs = shapes[x], ws = graph.tensors[w].shape.sizes
            // A block-format weight is cut between its blocks, and the activation with it.
            let granule = reductionGranule(op)
            parted(x, split(x, dim: xs.count - 1, k: k, granule: granule))
            if ws.count == 2 { parted(w, split(w, dim: transposed ? 1 : 0, k: k, granule: granule)) }
            for j in 0..<k {
                tiles[j].reads = [.part(x, j), .part(w, ws.count == 2 ? j : nil)]
                if j > 0 { tiles[j].reads.append(.whole(y)) }
                if j == k - 1, op.operands.count >= 3 { tiles[j].reads.append(.whole(op.operands[2])) }
                tiles[j].writes = [.whole(y)]
            }
        case (.attention, "tokens"):
            // Online softmax: tile j attends over cache rows of part j and carries (max, sum, acc).
            for c in op.updates { parted(c, split(c, dim: 1, k: k)) }
            let state = state!
            for j in 0..<k {
                tiles[j].reads = [.whole(read(op.operands[0]))] + op.updates.map { Ref.part($0, j) }
                if j == 0 { tiles[j].reads += op.operands.dropFirst().filter { !op.updates.contains($0) }.map { Ref.whole(read($0)) } }
                if j > 0 { tiles[j].reads.append(.whole(state)) }
                tiles[j].writes = [Ref.whole(j == k - 1 ? y : state)]
                if j == 0 { tiles[j].writes += appends.map(Ref.whole) }
            }
        case (.attention, "queries"):
            let q = read(op.operands[0])
            parted(q, split(q, dim: 1, k: k))
            parted(y, split(y, dim: 1, k: k))
            for j in 0..<k {
                tiles[j].reads = [.part(q, j)] + op.operands.dropFirst().map { Ref.whole(read($0)) }
                tiles[j].writes = [.part(y, j)]
            }
        case (_, "channels"):
            let x = read(op.operands[0])
            let ys = graph.tensors[y].shape.sizes
            parted(y, split(y, dim: 1, k: k))
            let channelsIn: Int = shapes[x][1]
            let groups: Int = ints(op, "groups", (1, 1)).0
            let depthwise: Bool = op.kind != .conv2d || (groups == channelsIn && ys[1] == channelsIn)
            if depthwise { parted(x, split(x, dim: 1, k: k)) }
            let w = op.kind == .conv2d ? op.operands[1] : nil
            if let w { parted(w, split(w, dim: 0, k: k)) }
            if op.kind == .conv2d, op.operands.count >= 3 { parted(op.operands[2], split(op.operands[2], dim: 0, k: k)) }
            for j in 0..<k {
                tiles[j].reads = [.part(x, depthwise ? j : nil)]
                if let w { tiles[j].reads.append(.part(w, j)) }
                if op.kind == .conv2d, op.operands.count >= 3 { tiles[j].reads.append(.part(op.operands[2], j)) }
                tiles[j].writes = [.part(y, j)]
            }
        case (.conv2d, "rows"), (.maxpool, "rows"), (.avgpool, "rows"):
            // Output-row bands; each reads the input bands its receptive field covers (the halo).
            let x = read(op.operands[0])
            let hIn = shapes[x][2], hOut = graph.tensors[y].shape.sizes[2]
            let kernel = op.kind == .conv2d ? graph.tensors[op.operands[1]].shape.sizes[2] : ints(op, "kernel", (1, 1)).0
            let stride = ints(op, "stride", op.kind == .conv2d ? (1, 1) : (kernel, kernel)).0
            let pad = ints(op, "padding", (0, 0)).0, dil = ints(op, "dilation", (1, 1)).0
            let ySplit = split(y, dim: 2, k: k)
            let xRows = (0...k).map { hIn * $0 / k }
            parted(y, ySplit)
            parted(x, canonical(x, Split(dim: 2, cuts: xRows)))
            for j in 0..<k {
                let lo = hOut * j / k, hi = hOut * (j + 1) / k
                let first = max(0, lo * stride - pad), last = min(hIn - 1, (hi - 1) * stride - pad + dil * (kernel - 1))
                let bands = (0..<k).filter { b in xRows[b] <= last && xRows[b + 1] > first }
                tiles[j].reads = bands.map { Ref.part(x, $0) } + op.operands.dropFirst().map(Ref.whole)
                tiles[j].writes = [.part(y, j)]
            }
        case (_, "rows"):
            // Row-wise ops (norms, softmax, rope): operands with the result's length split by rows.
            let ys = graph.tensors[y].shape.sizes
            let rows = ys.dropLast().reduce(1, *), width = ys.last ?? 1
            let cut = Split(dim: -1, cuts: (0...k).map { rows * $0 / k * width })
            let same = (op.operands.map(read) + [y]).filter { shapes[$0].reduce(1, *) == rows * width }
            for t in same { parted(t, cut) }
            for j in 0..<k {
                tiles[j].reads = op.operands.map(read).map { Ref.part($0, same.contains($0) ? j : nil) }
                tiles[j].writes = [.part(y, j)]
            }
        case (_, "length"):
            let n = graph.tensors[y].elementCount
            // Reuse an operand's existing flat cut with k parts, else cut evenly.
            let existing = op.operands.map(read).filter { shapes[$0] == shapes[y] }.compactMap { splits[$0] }.first { $0.count == k }
            let cut = existing ?? Split(dim: -1, cuts: (0...k).map { n * $0 / k })
            let same = (op.operands.map(read) + [y]).filter { existing == nil ? shapes[$0].reduce(1, *) == n : shapes[$0] == shapes[y] }
            for t in same { parted(t, canonicalFlat(t, cut)) }
            for j in 0..<k {
                tiles[j].reads = op.operands.map(read).map { Ref.part($0, same.contains($0) ? j : nil) }
                tiles[j].writes = [.part(y, j)]
            }
        default:
            break
        }
        return Layout(scheme: scheme, splits: s, tiles: tiles)
    }

    // MARK: Commit

    private mutating func commit(_ layout: Layout, op opID: Int) {
        if layout.tiles.count > 1 { schemes[opID] = layout.scheme }
        for (t, s) in layout.splits where splits[t] == nil && layout.tiles.count > 1 { cut(t, s) }
        // Parts are fixed now; whole items are resolved at the end (a later op may still cut them).
        func settle(_ refs: [Ref]) -> [Ref] {
            refs.map { ref in
                if let part = ref.part, let s = layout.splits[ref.item], splits[ref.item] == s, parts[ref.item].count > 1 {
                    return Ref(item: parts[ref.item][part], part: -1)
                }
                return .whole(ref.item)
            }
        }
        tileRefs[opID] = layout.tiles.map { TileRefs(reads: settle($0.reads), writes: settle($0.writes)) }
    }

    /// The values that stand for items at the end (an item cut into parts is replaced by them),
    /// ascending; items the pass added are kept only if some tile touches them.
    func currentValues(graphTensors: Int) -> [Int] {
        let tiles = opTiles
        var touched = Set<Int>()
        for op in tiles { for t in op { touched.formUnion(t.reads); touched.formUnion(t.writes) } }
        return parts.indices.flatMap { item in
            item < graphTensors ? parts[item] : parts[item].filter(touched.contains)
        }.sorted()
    }

    /// Per op (by id), what each tile reads and writes, as value indices.
    var opTiles: [[(reads: [Int], writes: [Int])]] {
        func resolve(_ refs: [Ref]) -> [Int] {
            var seen = Set<Int>()
            return refs.flatMap { $0.part == -1 ? [$0.item] : parts[$0.item] }.filter { seen.insert($0).inserted }
        }
        return tileRefs.map { tiles in tiles.map { (resolve($0.reads), resolve($0.writes)) } }
    }

    /// Replaces item `t`'s single value by its parts under `s`.
    private mutating func cut(_ t: Int, _ s: Split) {
        let base = values[parts[t][0]]
        var made: [Int] = []
        for j in 0..<s.count {
            var v = base
            v.name = "\(base.name)#\(j)"
            v.bytes = partBytes(t, s, j)
            v.part = ValuePart(dim: s.dim, start: s.cuts[j], end: s.cuts[j + 1])
            made.append(values.count)
            values.append(v)
        }
        parts[t] = made
        splits[t] = s
    }
}
