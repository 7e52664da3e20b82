import KVArtifact
import KVQuant

// Lowers (program, plan) to an ExecutionSchedule: concrete arena offsets for every copy and
// kernel operand, in the order the plan verifier replays a plan.
//
// Offsets: tier 0 (compute) uses the plan's residency offsets as they are; every other tier gets
// one static region per value that is ever resident there (homes, spill and staging slots), in
// value order at the tier's alignment — the plan leaves those tiers' addresses free, and a region
// per value is simple and never aliases. Per slot: hops between outer tiers, loads into tier 0,
// the slot's kernel, then copies out of tier 0 (stores may follow the write in its slot). A
// weight value that is a row selection of a table (`embed_tokens[x[0]]`) is moved by a `gather`
// whose source rows are picked by the ids the embed reads.
//
// Tiled plans: a tensor the tiling pass cut is a set of part values, each stored contiguously
// wherever it lives (a cut along an inner dimension is its own row-major sub-block; weights are
// sliced so at load). Each tile step becomes one call of a kernel specialised to its tile
// (KernelBinding.swift decides which block of each tensor the call needs); a kernel that needs a
// block the plan holds in several parts reads it from a staging area past tier 0's capacity,
// filled by `block` copies (and a staged result is scattered back into its parts). Caches cut
// into token ranges keep one home region per part; the cache manager appends into the right one.

/// Lowers a placement plan over a program to arena actions.
public enum ScheduleLowering {
    /// The schedule for `plan` over `program`.
    public static func lower(program: ModelProgram, plan: Plan) throws(CodegenError) -> ExecutionSchedule {
        let values = plan.values, tiers = plan.target.tiers
        guard !tiers.isEmpty else { throw CodegenError("the plan has no tiers") }
        let tensorIndex = Dictionary(program.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let opIndex = Dictionary(program.ops.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })

        // Steps to ops: an op's tiles are consecutive steps named `op#j`.
        var opOfStep: [Int] = []
        for (i, step) in plan.steps.enumerated() {
            let tiles = step.tiles ?? 1, tile = step.tile ?? 0
            let base = tiles > 1 && step.name.hasSuffix("#\(tile)") ? String(step.name.dropLast("#\(tile)".count)) : step.name
            guard let o = opIndex[base] else { throw CodegenError("step \(i) '\(step.name)' computes no op of the program") }
            if tile > 0 {
                guard i > 0, opOfStep[i - 1] == o, plan.steps[i - 1].tile == tile - 1 else {
                    throw CodegenError("step '\(step.name)' does not follow tile \(tile - 1) of its op")
                }
            }
            guard program.ops[o].kind == step.op else { throw CodegenError("step '\(step.name)' is \(step.op) but program op '\(base)' is \(program.ops[o].kind)") }
            if tiles > 1 && step.scheme == nil { throw CodegenError("step '\(step.name)' is one of \(tiles) tiles but the plan does not say how the op is split (re-plan with this kvplan)") }
            opOfStep.append(o)
        }
        let computed = Set(opOfStep)
        guard computed.count == program.ops.count, plan.steps.filter({ ($0.tile ?? 0) == 0 }).count == program.ops.count else {
            throw CodegenError("the plan's \(plan.steps.count) steps compute \(computed.count) ops once each; the program has \(program.ops.count)")
        }

        // Static regions in the outer tiers.
        var region: [Int: [Int: Int]] = [:]  // tier -> value -> offset
        var arenaBytes = Array(repeating: 0, count: tiers.count)
        arenaBytes[0] = tiers[0].capacity
        let kinds = ValueRoles(values)
        var outer = Array(repeating: Set<Int>(), count: tiers.count)
        for (v, value) in values.enumerated() where !kinds.isRowSelection(v) { if let h = value.home, h > 0 { outer[h].insert(v) } }
        for r in plan.residencies where r.tier > 0 && !kinds.isRowSelection(r.value) { outer[r.tier].insert(r.value) }
        for t in 1..<tiers.count {
            let alignment = max(1, tiers[t].alignment)
            for v in outer[t].sorted() {
                region[t, default: [:]][v] = arenaBytes[t]
                arenaBytes[t] += (values[v].bytes + alignment - 1) / alignment * alignment
            }
        }
        var residencies = Array(repeating: [Residency](), count: values.count)
        for r in plan.residencies where r.tier == 0 { residencies[r.value].append(r) }
        func inCompute(_ v: Int, _ slot: Int, _ what: String) throws(CodegenError) -> ExecutionSchedule.Location {
            let r = residencies[v].first { $0.from <= slot && slot < $0.to } ?? residencies[v].first { $0.from <= slot + 1 && slot + 1 < $0.to }
            guard let r, let offset = r.offset else {
                throw CodegenError("'\(values[v].name)' has no address in '\(tiers[0].name)' in slot \(slot) (\(what))")
            }
            return .init(tier: 0, offset: offset)
        }
        func outside(_ v: Int, _ tier: Int) throws(CodegenError) -> ExecutionSchedule.Location {
            guard let offset = region[tier]?[v] else { throw CodegenError("'\(values[v].name)' has no region in '\(tiers[tier].name)'") }
            return .init(tier: tier, offset: offset)
        }
        /// A tensor's home: its whole value, or its parts in order of their blocks.
        func homes(_ name: String) throws(CodegenError) -> [(value: Int, location: ExecutionSchedule.Location)] {
            var found: [(Int, ExecutionSchedule.Location)] = []
            if let v = values.firstIndex(where: { $0.name == name && $0.part == nil }) {
                guard let h = values[v].home, h > 0 else { throw CodegenError("'\(name)' has no home outside '\(tiers[0].name)' in the plan") }
                return [(v, try outside(v, h))]
            }
            for v in kinds.parts(of: name) {
                guard let h = values[v].home, h > 0 else { throw CodegenError("'\(values[v].name)' has no home outside '\(tiers[0].name)' in the plan") }
                found.append((v, try outside(v, h)))
            }
            guard !found.isEmpty else { throw CodegenError("'\(name)' has no value in the plan") }
            return found
        }
        func home(_ name: String) throws(CodegenError) -> (value: Int, location: ExecutionSchedule.Location) {
            let h = try homes(name)
            guard h.count == 1, values[h[0].value].part == nil else { throw CodegenError("'\(name)' is kept in \(h.count) parts; it must be whole here") }
            return h[0]
        }

        // Links in the target's order.
        let links = plan.target.links.map { "\($0.from)->\($0.to)" }
        func link(_ t: Transfer) throws(CodegenError) -> Int {
            let name = "\(tiers[t.from].name)->\(tiers[t.to].name)"
            guard let i = links.firstIndex(of: name) else { throw CodegenError("transfer over '\(name)', which the target has no link for") }
            return i
        }
        var linkBytes = Array(repeating: 0, count: links.count)

        // Row selections: which embed reads them, and where its ids live.
        var selectionIds: [Int: (ids: Int, rowBytes: Int)] = [:]
        for (i, step) in plan.steps.enumerated() {
            let op = program.ops[opOfStep[i]]
            for v in step.reads where kinds.isRowSelection(v) {
                guard op.kind == "embed", op.operands.count == 2, let table = tensorIndex[values[v].tensor], op.operands[0] == table else {
                    throw CodegenError("'\(values[v].name)' is a row selection read by '\(op.name)' (\(op.kind)); only embed lookups are lowered")
                }
                let t = program.tensors[table]
                let rowBytes = values[v].bytes / max(1, program.tensors[op.operands[1]].elementCount)
                guard let format = WeightFormat(rawValue: t.dtype), t.shape.count == 2, t.shape[1] % format.blockElements == 0 else {
                    throw CodegenError("embedding table '\(t.name)' is \(t.dtype); lookups are emitted for f32, f16, bf16, q8_0 and q4_0 tables (rows of whole blocks)")
                }
                guard t.shape.count == 2, rowBytes == format.bytes(count: t.shape[1]) else {
                    throw CodegenError("'\(values[v].name)': rows of \(rowBytes) B do not match table '\(t.name)' \(t.shape) in \(t.dtype)")
                }
                selectionIds[v] = (op.operands[1], rowBytes)
            }
        }

        var binder = KernelBinding(program: program, plan: plan, roles: kinds, capacity: tiers[0].capacity, alignment: max(1, tiers[0].alignment))
        var actions: [ExecutionSchedule.Action] = []
        var bySlot = Array(repeating: [Transfer](), count: plan.slotCount)
        for t in plan.transfers { bySlot[t.slot].append(t) }
        for slot in 0..<plan.slotCount {
            let transfers = bySlot[slot]
            func emit(_ t: Transfer) throws(CodegenError) {
                let l = try link(t)
                linkBytes[l] += t.bytes
                let to = t.to == 0 ? try inCompute(t.value, slot, "destination of a copy") : try outside(t.value, t.to)
                if let selection = selectionIds[t.value] {
                    let table = try homes(values[t.value].tensor)
                    guard t.from == values[table[0].value].home else {
                        throw CodegenError("'\(values[t.value].name)' is gathered from '\(tiers[t.from].name)', not from its table's home")
                    }
                    let ids = try home(program.tensors[selection.ids].name)
                    var parts: [ExecutionSchedule.View]?
                    if table.count > 1 || values[table[0].value].part != nil {
                        let shape = program.tensors[tensorIndex[values[t.value].tensor]!].shape
                        parts = try table.map { (v, location) throws(CodegenError) in
                            let p = values[v].part!.canonical(shape: shape)
                            guard p.dim < 0, p.start % shape[1] == 0, p.end % shape[1] == 0 else {
                                throw CodegenError("'\(values[v].name)' is not a range of whole rows of its table; lookups need whole rows")
                            }
                            return ExecutionSchedule.View(index: 0, location: location, part: ValuePart(dim: 0, start: p.start / shape[1], end: p.end / shape[1]))
                        }
                    }
                    actions.append(.gather(slot: slot, value: t.value, link: l, bytes: t.bytes, from: table[0].location, to: to, ids: ids.location,
                                           rowBytes: selection.rowBytes, parts: parts))
                } else {
                    let from = t.from == 0 ? try inCompute(t.value, slot, "source of a copy") : try outside(t.value, t.from)
                    actions.append(.copy(slot: slot, value: t.value, link: l, bytes: t.bytes, from: from, to: to))
                }
            }
            for t in transfers where t.from != 0 && t.to != 0 { try emit(t) }
            for t in transfers where t.to == 0 { try emit(t) }
            if slot >= 1 && slot <= plan.steps.count {
                let i = slot - 1
                actions += try binder.actions(step: i, op: opOfStep[i], slot: slot) { v, what throws(CodegenError) in try inCompute(v, slot, what) }
            }
            for t in transfers where t.from == 0 { try emit(t) }
        }
        arenaBytes[0] += binder.stagingBytes

        // Caches, weights, inputs, outputs.
        let layouts = plan.kv?.layers
        var caches: [ExecutionSchedule.KVCache] = []
        let attention = program.ops.indices.filter { program.ops[$0].kind == "attention" && program.ops[$0].operands.count == 5 }
        if let layouts, layouts.count != attention.count {
            throw CodegenError("the plan has KV layouts for \(layouts.count) layers; the program has \(attention.count) decode-attention ops")
        }
        for (n, i) in attention.enumerated() {
            let op = program.ops[i]
            let kc = program.tensors[op.operands[3]], vc = program.tensors[op.operands[4]]
            guard kc.shape.count == 4, vc.shape == kc.shape, op.updates.count == 2 else {
                throw CodegenError("'\(op.name)': caches \(kc.shape) and \(vc.shape) are not one [batch, ctx, kv_heads, head_dim] pair")
            }
            let keyHomes = try homes(kc.name), valueHomes = try homes(vc.name)
            var cache = ExecutionSchedule.KVCache(op: i, keys: keyHomes[0].location, values: valueHomes[0].location,
                                                  keyBytes: keyHomes.reduce(0) { $0 + values[$1.value].bytes },
                                                  valueBytes: valueHomes.reduce(0) { $0 + values[$1.value].bytes },
                                                  newKeys: try home(kc.name + "[new]").location, newValues: try home(vc.name + "[new]").location,
                                                  batch: kc.shape[0], capacity: kc.shape[1], channels: kc.shape[2] * kc.shape[3], kvHeads: kc.shape[2], layout: layouts?[n])
            if keyHomes.count > 1 || values[keyHomes[0].value].part != nil {
                guard layouts == nil else {
                    throw CodegenError("'\(op.name)': the plan splits a packed KV cache into token ranges; tiled attention is emitted for f32 caches only")
                }
                func cuts(_ h: [(value: Int, location: ExecutionSchedule.Location)]) throws(CodegenError) -> [Int] {
                    var cuts = [0]
                    for (v, _) in h {
                        let p = values[v].part!, c = kc.shape[2] * kc.shape[3]
                        let tokens = p.dim == 1 ? (p.start, p.end) : p.dim < 0 && kc.shape[0] == 1 && p.start % c == 0 && p.end % c == 0 ? (p.start / c, p.end / c) : nil
                        guard let tokens, tokens.0 == cuts.last else { throw CodegenError("'\(values[v].name)' is not the next token range of its cache") }
                        cuts.append(tokens.1)
                    }
                    return cuts
                }
                let keyCuts = try cuts(keyHomes)
                guard try cuts(valueHomes) == keyCuts, keyCuts.last == kc.shape[1] else {
                    throw CodegenError("'\(op.name)': its key and value caches are cut into different token ranges")
                }
                cache.tokenCuts = keyCuts
                cache.keyParts = keyHomes.map(\.location)
                cache.valueParts = valueHomes.map(\.location)
            }
            caches.append(cache)
        }
        let interleaved = interleavedWeights(program: program, plan: plan, opOfStep: opOfStep, actions: actions)
        var weights: [ExecutionSchedule.Binding] = [], inputs: [ExecutionSchedule.Binding] = [], outputs: [ExecutionSchedule.Binding] = []
        for t in program.tensors where ["weight", "input", "output"].contains(t.kind) {
            // Weights in any storage format the runtime quantises to; inputs (i32 ids as exact
            // floats) and outputs in f32.
            let format = t.kind == "weight" ? WeightFormat(rawValue: t.dtype) : .f32
            let held = try homes(t.name)
            for (v, location) in held {
                let part = values[v].part
                let count = part?.elementCount(shape: t.shape) ?? t.elementCount
                let rowLength = part.map { $0.dim == t.shape.count - 1 ? $0.end - $0.start : (t.shape.last ?? 1) } ?? (t.shape.last ?? 1)
                guard let format, values[v].bytes == format.bytes(count: count), count % format.blockElements == 0, rowLength % format.blockElements == 0 else {
                    // A graph imported from a bf16/f16 checkpoint keeps its activations in that dtype.
                    let hint = t.kind != "weight" && ["bf16", "f16"].contains(t.dtype)
                        ? " (a graph imported with `kvplan import hf --activations f32` has f32 inputs, outputs and caches)" : ""
                    throw CodegenError("'\(values[v].name)' is \(t.dtype) (\(values[v].bytes) B); emitted: weights as \(WeightFormat.allCases.map(\.rawValue).joined(separator: ", ")) in rows of whole blocks, inputs and outputs as 4-byte values\(hint)")
                }
                let binding = ExecutionSchedule.Binding(tensor: t.name, dtype: format.rawValue, location: location, bytes: values[v].bytes, part: part,
                                                        layout: interleaved.contains(t.name) ? WeightLayout.interleaving(format)?.rawValue : nil)
                switch t.kind {
                case "weight": weights.append(binding)
                case "input": inputs.append(binding)
                default: outputs.append(binding)
                }
            }
        }
        return ExecutionSchedule(model: program.model, target: plan.target.name,
                                 arenas: tiers.indices.map { .init(name: tiers[$0].name, bytes: arenaBytes[$0]) },
                                 links: links, linkBytes: linkBytes, weights: weights, inputs: inputs, outputs: outputs, kv: caches,
                                 actions: actions, stagingBytes: binder.stagingBytes)
    }
}

extension ScheduleLowering {
    /// The q4_0 / q8_0 weights stored as `WeightLayout.q4_0x16` / `q8_0x16` (the generated
    /// GEMV's interleaved rows), whole or part by part: those that linear kernels read and nothing
    /// else but embedding lookups (a tied table: the gather picks each row's blocks out of its
    /// group), every block of which — the weight, or each part the plan
    /// keeps — is a matrix of rows in groups of 16 and columns in blocks of 32, and that every
    /// kernel reads block by block as stored (a kernel that assembles its block from several
    /// parts copies rows into a staging area, which would mix the groups).
    static func interleavedWeights(program: ModelProgram, plan: Plan, opOfStep: [Int], actions: [ExecutionSchedule.Action]) -> Set<String> {
        let t = program.tensors
        var readers: [Int: Set<Int>] = [:]
        for o in opOfStep {
            for operand in program.ops[o].operands { readers[operand, default: []].insert(o) }
        }
        var blocks: [String: [ValuePart]] = [:]
        for value in plan.values where value.kind == .weight { if let part = value.part { blocks[value.tensor, default: []].append(part) } }
        var out = Set<String>()
        for (i, tensor) in t.enumerated() where tensor.kind == "weight" && tensor.shape.count == 2 {
            guard let format = WeightFormat(rawValue: tensor.dtype), let layout = WeightLayout.interleaving(format),
                  let ops = readers[i], !ops.isEmpty else { continue }
            func linear(_ o: Int) -> Bool {
                let op = program.ops[o]
                return op.kind == "matmul" && op.bool("transpose_b") == true && op.operands.firstIndex(of: i) == 1 && op.operands.lastIndex(of: i) == 1
            }
            // An embedding lookup reads its rows through a gather, which picks them out of the layout.
            func lookup(_ o: Int) -> Bool { program.ops[o].kind == "embed" && program.ops[o].operands.lastIndex(of: i) == 0 }
            let linearOnly = ops.contains(where: linear) && ops.allSatisfy { linear($0) || lookup($0) }
            let matrices = blocks[tensor.name].map { $0.map { $0.matrix(in: tensor.shape) } } ?? [(tensor.shape[0], tensor.shape[1])]
            let fits = matrices.allSatisfy { m in m.map { layout.applies(format: format, rows: $0.rows, columns: $0.columns) } ?? false }
            let readAsStored = actions.allSatisfy { a in
                guard a.kind == "kernel", let o = a.op, ops.contains(o), linear(o) else { return true }
                let views = (a.reads ?? []).filter { $0.index == 1 }
                return views.count == 1 && a.operands?[1] == views[0].location
            }
            if linearOnly && fits && readAsStored { out.insert(tensor.name) }
        }
        return out
    }
}

/// What each plan value stands for: a whole tensor, a part of one, or a value the planner added.
struct ValueRoles {
    let values: [Value]
    private let partsByTensor: [String: [Int]]

    init(_ values: [Value]) {
        self.values = values
        var parts: [String: [Int]] = [:]
        for (v, value) in values.enumerated() where value.part != nil { parts[value.tensor, default: []].append(v) }
        partsByTensor = parts.mapValues { vs in vs.sorted { (values[$0].part!.dim, values[$0].part!.start) < (values[$1].part!.dim, values[$1].part!.start) } }
    }

    /// The rows of a table an embedding lookup gathers (`table[ids]`).
    func isRowSelection(_ v: Int) -> Bool { values[v].kind == .weight && values[v].name != values[v].tensor && values[v].part == nil }
    /// The new token's K or V row a decode attention writes (`cache[new]`).
    func isAppend(_ v: Int) -> Bool { values[v].name == values[v].tensor + "[new]" }
    /// The online-softmax state carried between the token tiles of a decode attention (`y~state`).
    func isState(_ v: Int) -> Bool { values[v].name == values[v].tensor + "~state" }
    /// A whole tensor or a part of one (not a value the planner added).
    func isTensorData(_ v: Int) -> Bool { !isRowSelection(v) && !isAppend(v) && !isState(v) }
    /// The parts of a tensor, in order of their blocks.
    func parts(of tensor: String) -> [Int] { partsByTensor[tensor] ?? [] }
}
