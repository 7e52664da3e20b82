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
// whose source rows are picked by the ids the embed reads. Only untiled plans are lowered: tile
// kernels (partial matmuls, online-softmax attention tiles) are not emitted yet, and the refusal
// says so.

/// Lowers a placement plan over a program to arena actions.
public enum ScheduleLowering {
    /// The schedule for `plan` over `program`, with `kvLayouts` (the plan's `kv.layers`, if any).
    public static func lower(program: ModelProgram, plan: Plan) throws(CodegenError) -> ExecutionSchedule {
        let values = plan.values, tiers = plan.target.tiers
        guard !tiers.isEmpty else { throw CodegenError("the plan has no tiers") }
        if let tiled = plan.steps.first(where: { ($0.tiles ?? 1) > 1 }) {
            throw CodegenError("step '\(tiled.name)' is one of \(tiled.tiles ?? 1) tiles; tiled plans are not emitted yet (only plans whose ops fit the compute tier whole)")
        }
        guard plan.steps.count == program.ops.count else {
            throw CodegenError("the plan has \(plan.steps.count) steps; the program has \(program.ops.count) ops")
        }
        let tensorIndex = Dictionary(program.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })

        // Static regions in the outer tiers.
        var region: [Int: [Int: Int]] = [:]  // tier -> value -> offset
        var arenaBytes = Array(repeating: 0, count: tiers.count)
        arenaBytes[0] = tiers[0].capacity
        func isRowSelection(_ v: Int) -> Bool { values[v].kind == .weight && values[v].name != values[v].tensor }
        var outer = Array(repeating: Set<Int>(), count: tiers.count)
        for (v, value) in values.enumerated() where !isRowSelection(v) { if let h = value.home, h > 0 { outer[h].insert(v) } }
        for r in plan.residencies where r.tier > 0 && !isRowSelection(r.value) { outer[r.tier].insert(r.value) }
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
        func home(_ name: String) throws(CodegenError) -> (value: Int, location: ExecutionSchedule.Location) {
            guard let v = values.firstIndex(where: { $0.name == name }), let h = values[v].home, h > 0 else {
                throw CodegenError("'\(name)' has no home outside '\(tiers[0].name)' in the plan")
            }
            return (v, try outside(v, h))
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
            let op = program.ops[i]
            guard op.name == step.name else { throw CodegenError("step \(i) is '\(step.name)' but program op \(i) is '\(op.name)'") }
            for v in step.reads where isRowSelection(v) {
                guard op.kind == "embed", op.operands.count == 2, let table = tensorIndex[values[v].tensor], op.operands[0] == table else {
                    throw CodegenError("'\(values[v].name)' is a row selection read by '\(op.name)' (\(op.kind)); only embed lookups are lowered")
                }
                let t = program.tensors[table]
                let rowBytes = values[v].bytes / max(1, program.tensors[op.operands[1]].elementCount)
                guard let format = WeightFormat(rawValue: t.dtype), format.blockElements == 1 else {
                    throw CodegenError("embedding table '\(t.name)' is \(t.dtype); lookups are emitted for f32, f16 and bf16 tables")
                }
                guard t.shape.count == 2, rowBytes == format.bytes(count: t.shape[1]) else {
                    throw CodegenError("'\(values[v].name)': rows of \(rowBytes) B do not match table '\(t.name)' \(t.shape) in \(t.dtype)")
                }
                selectionIds[v] = (op.operands[1], rowBytes)
            }
        }

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
                    let table = try home(values[t.value].tensor)
                    guard t.from == values[table.value].home else {
                        throw CodegenError("'\(values[t.value].name)' is gathered from '\(tiers[t.from].name)', not from its table's home")
                    }
                    let ids = try home(program.tensors[selection.ids].name)
                    actions.append(.gather(slot: slot, value: t.value, link: l, bytes: t.bytes, from: table.location, to: to, ids: ids.location, rowBytes: selection.rowBytes))
                } else {
                    let from = t.from == 0 ? try inCompute(t.value, slot, "source of a copy") : try outside(t.value, t.from)
                    actions.append(.copy(slot: slot, value: t.value, link: l, bytes: t.bytes, from: from, to: to))
                }
            }
            for t in transfers where t.from != 0 && t.to != 0 { try emit(t) }
            for t in transfers where t.to == 0 { try emit(t) }
            if slot >= 1 && slot <= plan.steps.count {
                let i = slot - 1, step = plan.steps[i], op = program.ops[i]
                var operands: [ExecutionSchedule.Location] = []
                for tensor in op.operands {
                    let name = program.tensors[tensor].name
                    guard let v = step.reads.first(where: { values[$0].tensor == name }) else {
                        throw CodegenError("step '\(step.name)' does not read '\(name)'")
                    }
                    operands.append(try inCompute(v, slot, "operand of '\(step.name)'"))
                }
                var results: [ExecutionSchedule.Location] = []
                for tensor in op.results {
                    let name = program.tensors[tensor].name
                    guard let v = step.writes.first(where: { values[$0].name == name }) else {
                        throw CodegenError("step '\(step.name)' does not write '\(name)'")
                    }
                    results.append(try inCompute(v, slot, "result of '\(step.name)'"))
                }
                for tensor in op.updates {
                    let name = program.tensors[tensor].name + "[new]"
                    guard let v = step.writes.first(where: { values[$0].name == name }) else {
                        throw CodegenError("step '\(step.name)' does not write '\(name)'")
                    }
                    results.append(try inCompute(v, slot, "appended row of '\(step.name)'"))
                }
                actions.append(.kernel(slot: slot, op: i, operands: operands, results: results))
            }
            for t in transfers where t.from == 0 { try emit(t) }
        }

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
            let (kv, kLocation) = try home(kc.name), (vv, vLocation) = try home(vc.name)
            caches.append(.init(op: i, keys: kLocation, values: vLocation, keyBytes: values[kv].bytes, valueBytes: values[vv].bytes,
                                newKeys: try home(kc.name + "[new]").location, newValues: try home(vc.name + "[new]").location,
                                batch: kc.shape[0], capacity: kc.shape[1], channels: kc.shape[2] * kc.shape[3], kvHeads: kc.shape[2], layout: layouts?[n]))
        }
        var weights: [ExecutionSchedule.Binding] = [], inputs: [ExecutionSchedule.Binding] = [], outputs: [ExecutionSchedule.Binding] = []
        for t in program.tensors where ["weight", "input", "output"].contains(t.kind) {
            let (v, location) = try home(t.name)
            // Weights in any storage format the runtime quantises to; inputs (i32 ids as exact
            // floats) and outputs in f32.
            let format = t.kind == "weight" ? WeightFormat(rawValue: t.dtype) : .f32
            guard let format, values[v].bytes == format.bytes(count: t.elementCount), t.elementCount % format.blockElements == 0 else {
                throw CodegenError("'\(t.name)' is \(t.dtype) (\(values[v].bytes) B); emitted: weights as \(WeightFormat.allCases.map(\.rawValue).joined(separator: ", ")), inputs and outputs as 4-byte values")
            }
            let binding = ExecutionSchedule.Binding(tensor: t.name, dtype: format.rawValue, location: location, bytes: values[v].bytes)
            switch t.kind {
            case "weight": weights.append(binding)
            case "input": inputs.append(binding)
            default: outputs.append(binding)
            }
        }
        return ExecutionSchedule(model: program.model, target: plan.target.name,
                                 arenas: tiers.indices.map { .init(name: tiers[$0].name, bytes: arenaBytes[$0]) },
                                 links: links, linkBytes: linkBytes, weights: weights, inputs: inputs, outputs: outputs, kv: caches, actions: actions)
    }
}
