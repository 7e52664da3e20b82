import KVArtifact
import KVQuant

// Binds one plan step to a kernel call: which block of each of the op's tensors the call needs,
// and where in tier 0 that block is.
//
// A step computed whole needs every tensor whole. A tile needs the blocks of its scheme (the
// tiling pass's cuts, Sources/KVPlanner/Tiling): matmul by `columns` — x whole, the weight's
// rows (a × wᵀ) or columns ([K, N]) and the bias of the tile's output columns, those columns of
// y; by `reduction` — the tile's K range of x and of the weight, y whole and accumulated (bias
// added by the last tile); decode attention by `tokens` — the tile's token range of both caches,
// the online-softmax state in and out (the last tile writes y; the first takes the new token
// and writes its K/V rows); row-wise ops by `rows` and elementwise ops by `length` — the tile's
// element range of y and of every operand as long as y (shorter, broadcast operands whole).
// When the plan holds exactly that block as one value, the kernel reads it in place; otherwise
// (a tensor read whole that an earlier op cut, or cut differently) the block is assembled from
// the values the step reads into a staging area past tier 0's capacity by `block` copies, and a
// staged result is scattered into the parts the step writes. Parameters a tile does not use
// (the bias before the last reduction tile, the new token's rows after the first token tile)
// point at tier 0's first byte and are never touched.

struct KernelBinding {
    let program: ModelProgram
    let plan: Plan
    let roles: ValueRoles
    let capacity: Int
    let alignment: Int
    /// The largest staging area any step used.
    private(set) var stagingBytes = 0

    typealias Location = ExecutionSchedule.Location
    typealias Address = (Int, String) throws(CodegenError) -> Location

    /// The actions of step `i` (computing program op `o` or one tile of it) in `slot`: staging
    /// copies, the kernel, scatter copies.
    mutating func actions(step i: Int, op o: Int, slot: Int, address: Address) throws(CodegenError) -> [ExecutionSchedule.Action] {
        let step = plan.steps[i], op = program.ops[o], t = program.tensors, values = plan.values
        let tiles = step.tiles ?? 1, j = step.tile ?? 0
        let scheme = tiles > 1 ? step.scheme : nil
        let (operandParts, resultParts) = try blocks(op: op, step: step, scheme: scheme, tile: j, tiles: tiles)
        let placeholder = Location(tier: 0, offset: 0)
        var before: [ExecutionSchedule.Action] = [], after: [ExecutionSchedule.Action] = []
        var reads: [ExecutionSchedule.View] = [], writes: [ExecutionSchedule.View] = []
        var cursor = 0
        var staged: [Int: Location] = [:]  // tensor -> staging location this step

        func part(_ v: Int) -> ValuePart? { values[v].part }
        func same(_ a: ValuePart?, _ b: ValuePart?, _ shape: [Int]) -> Bool {
            let whole = ValuePart(dim: -1, start: 0, end: shape.reduce(1, *))
            return (a ?? whole).canonical(shape: shape) == (b ?? whole).canonical(shape: shape)
        }
        func bytes(_ tensor: ModelProgram.Tensor, _ elements: Int) throws(CodegenError) -> Int {
            let format = WeightFormat(rawValue: tensor.dtype) ?? .f32
            guard elements % format.blockElements == 0 else {
                throw CodegenError("step '\(step.name)': a block of \(elements) values of \(tensor.dtype) '\(tensor.name)' is not whole blocks of \(format.blockElements)")
            }
            return format.bytes(count: elements)
        }
        func stage(_ tensor: Int, _ expected: ValuePart?) throws(CodegenError) -> Location {
            let shape = t[tensor].shape
            let n = try bytes(t[tensor], expected?.elementCount(shape: shape) ?? t[tensor].elementCount)
            let location = Location(tier: 0, offset: capacity + cursor)
            cursor += (n + alignment - 1) / alignment * alignment
            return location
        }
        /// Block copies between a value's buffer and a staging buffer of `expected`.
        func copies(_ tensor: Int, value: ValuePart?, at valueLocation: Location, staging: Location, expected: ValuePart?, toStaging: Bool)
            throws(CodegenError) -> (actions: [ExecutionSchedule.Action], elements: Int) {
            let shape = t[tensor].shape
            guard let runs = toStaging ? ValuePart.copies(shape: shape, from: value, into: expected) : ValuePart.copies(shape: shape, from: expected, into: value) else {
                throw CodegenError("step '\(step.name)': '\(t[tensor].name)' is cut along one dimension and needed along another; not emitted")
            }
            var out: [ExecutionSchedule.Action] = []
            var elements = 0
            for r in runs {
                let (from, to) = toStaging ? (valueLocation, staging) : (staging, valueLocation)
                out.append(.block(slot: slot, from: Location(tier: 0, offset: from.offset + (try bytes(t[tensor], r.source))),
                                  to: Location(tier: 0, offset: to.offset + (try bytes(t[tensor], r.destination))),
                                  bytes: try bytes(t[tensor], r.count), rows: r.rows,
                                  fromStride: try bytes(t[tensor], r.sourceStride), toStride: try bytes(t[tensor], r.destinationStride)))
                elements += r.count * r.rows
            }
            return (out, elements)
        }
        /// Where the kernel reads `expected` of `tensor` from the values `candidates` the step reads.
        func bindRead(_ index: Int, _ tensor: Int, _ expected: ValuePart?, _ candidates: [Int]) throws(CodegenError) -> Location {
            guard !candidates.isEmpty else { throw CodegenError("step '\(step.name)' does not read '\(t[tensor].name)'") }
            let shape = t[tensor].shape
            if candidates.count == 1, roles.isRowSelection(candidates[0]) || same(part(candidates[0]), expected, shape) {
                let location = try address(candidates[0], "operand of '\(step.name)'")
                reads.append(.init(index: index, location: location, part: part(candidates[0])))
                return location
            }
            let staging = try stage(tensor, expected)
            staged[tensor] = staging
            var covered = 0
            for c in candidates {
                let location = try address(c, "operand of '\(step.name)'")
                let (blocks, elements) = try copies(tensor, value: part(c), at: location, staging: staging, expected: expected, toStaging: true)
                guard elements > 0 else { continue }
                before += blocks
                covered += elements
                reads.append(.init(index: index, location: location, part: part(c)))
            }
            let needed = expected?.elementCount(shape: shape) ?? t[tensor].elementCount
            guard covered == needed else {
                throw CodegenError("step '\(step.name)': the values it reads hold \(covered) of the \(needed) elements of '\(t[tensor].name)' it needs")
            }
            return staging
        }
        /// Where the kernel writes `expected` of `tensor`, given the values `written` the step writes.
        func bindWrite(_ index: Int, _ tensor: Int, _ expected: ValuePart?, _ written: [Int]) throws(CodegenError) -> Location {
            guard !written.isEmpty else { throw CodegenError("step '\(step.name)' does not write '\(t[tensor].name)'") }
            let shape = t[tensor].shape
            if written.count == 1, same(part(written[0]), expected, shape) {
                let location = try address(written[0], "result of '\(step.name)'")
                writes.append(.init(index: index, location: location, part: part(written[0])))
                return location
            }
            // Staged: filled first from what the step reads of the same tensor (an accumulation).
            var staging = staged[tensor]
            if staging == nil {
                staging = try stage(tensor, expected)
                for c in step.reads where roles.isTensorData(c) && values[c].tensor == t[tensor].name {
                    before += try copies(tensor, value: part(c), at: try address(c, "operand of '\(step.name)'"), staging: staging!, expected: expected, toStaging: true).actions
                }
            }
            for c in written {
                let location = try address(c, "result of '\(step.name)'")
                let (blocks, elements) = try copies(tensor, value: part(c), at: location, staging: staging!, expected: expected, toStaging: false)
                guard elements > 0 else { continue }
                after += blocks
                writes.append(.init(index: index, location: location, part: part(c)))
            }
            return staging!
        }
        func data(_ list: [Int], _ tensor: Int) -> [Int] { list.filter { roles.isTensorData($0) && values[$0].tensor == t[tensor].name } }

        var operands: [Location] = []
        for (k, tensor) in op.operands.enumerated() {
            if scheme == "reduction" && k == 2 && j < tiles - 1 || scheme == "tokens" && (k == 1 || k == 2) && j > 0 {
                operands.append(placeholder)
                continue
            }
            let candidates = op.kind == "embed" && k == 0
                ? step.reads.filter { roles.isRowSelection($0) && values[$0].tensor == t[tensor].name }
                : data(step.reads, tensor)
            operands.append(try bindRead(k, tensor, operandParts[k], candidates))
        }
        var results: [Location] = []
        if scheme == "tokens" {
            let y = op.results[0]
            let roles = self.roles
            func state(_ list: [Int]) -> Int? { list.first { roles.isState($0) && values[$0].tensor == t[y].name } }
            if j > 0 {
                guard let s = state(step.reads) else { throw CodegenError("step '\(step.name)' does not read the attention state") }
                operands.append(try address(s, "attention state of '\(step.name)'"))
            } else {
                operands.append(placeholder)
            }
            if j == tiles - 1 {
                results.append(try bindWrite(0, y, nil, data(step.writes, y)))
            } else {
                guard let s = state(step.writes) else { throw CodegenError("step '\(step.name)' does not write the attention state") }
                results.append(try address(s, "attention state of '\(step.name)'"))
            }
        } else {
            for (r, tensor) in op.results.enumerated() { results.append(try bindWrite(r, tensor, resultParts[r], data(step.writes, tensor))) }
        }
        for (u, cache) in op.updates.enumerated() {
            if scheme == "tokens" && j > 0 { results.append(placeholder); continue }
            guard let v = step.writes.first(where: { roles.isAppend($0) && values[$0].tensor == t[cache].name }) else {
                throw CodegenError("step '\(step.name)' does not write '\(t[cache].name)[new]'")
            }
            let location = try address(v, "appended row of '\(step.name)'")
            results.append(location)
            writes.append(.init(index: op.results.count + u, location: location, part: nil))
        }
        stagingBytes = max(stagingBytes, cursor)
        var kernel = ExecutionSchedule.Action.kernel(slot: slot, op: o, operands: operands, results: results, reads: reads, writes: writes)
        if tiles > 1 {
            (kernel.tile, kernel.tiles, kernel.scheme) = (j, tiles, scheme)
            (kernel.operandParts, kernel.resultParts) = (operandParts, resultParts)
        }
        return before + [kernel] + after
    }

    /// The block of each operand and result the kernel of `step` needs (nil: whole).
    private func blocks(op: ModelProgram.Op, step: Step, scheme: String?, tile j: Int, tiles: Int) throws(CodegenError) -> ([ValuePart?], [ValuePart?]) {
        let t = program.tensors
        var operands = [ValuePart?](repeating: nil, count: op.operands.count)
        var results = [ValuePart?](repeating: nil, count: op.results.count)
        guard let scheme else { return (operands, results) }
        let y = op.results[0], ys = t[y].shape
        /// The block of y this tile writes (the pass cuts an op's fresh result by the op's own split).
        func written() throws(CodegenError) -> ValuePart {
            let parts = step.writes.filter { roles.isTensorData($0) && plan.values[$0].tensor == t[y].name }.compactMap { plan.values[$0].part }
            guard parts.count == 1 else { throw CodegenError("step '\(step.name)' (\(scheme)) does not write one block of '\(t[y].name)'") }
            return parts[0]
        }
        switch (op.kind, scheme) {
        case ("matmul", "columns"), ("matmul", "reduction"):
            let w = t[op.operands[1]], transposed = op.bool("transpose_b") == true
            guard w.shape.count == 2 else { throw CodegenError("step '\(step.name)': tiles of a product with a \(w.shape.count)-D weight are not emitted") }
            if scheme == "columns" {
                let p = try written(), flat = p.canonical(shape: ys)
                let range: (Int, Int)? = p.dim == ys.count - 1 ? (p.start, p.end) : flat.dim < 0 && ys.dropLast().reduce(1, *) == 1 ? (flat.start, flat.end) : nil
                guard let (c0, c1) = range else { throw CodegenError("step '\(step.name)': '\(t[y].name)' is not cut by output columns") }
                operands[1] = ValuePart(dim: transposed ? 0 : 1, start: c0, end: c1)
                if op.operands.count > 2 { operands[2] = ValuePart(dim: 0, start: c0, end: c1) }
                results[0] = ValuePart(dim: ys.count - 1, start: c0, end: c1)
            } else {
                // The tiling pass's cut: between 32-value blocks for a q8_0 / q4_0 weight.
                let xs = t[op.operands[0]].shape, k = xs.last ?? 1
                let granule = transposed ? WeightFormat(rawValue: w.dtype)?.blockElements ?? 1 : 1
                let (k0, k1) = (ValuePart.cut(j, of: tiles, length: k, granule: granule), ValuePart.cut(j + 1, of: tiles, length: k, granule: granule))
                operands[0] = ValuePart(dim: xs.count - 1, start: k0, end: k1)
                operands[1] = ValuePart(dim: transposed ? 1 : 0, start: k0, end: k1)
            }
        case ("attention", "tokens"):
            guard plan.kv == nil else {
                throw CodegenError("step '\(step.name)': decode attention over a packed KV cache split into token ranges is not emitted (the plan splits it because the cache does not fit '\(plan.target.tiers[0].name)')")
            }
            guard op.operands.count == 5 else { throw CodegenError("step '\(step.name)': only decode attention is emitted by tokens") }
            let ctx = t[op.operands[3]].shape[1]
            let (t0, t1) = (ctx * j / tiles, ctx * (j + 1) / tiles)
            operands[3] = ValuePart(dim: 1, start: t0, end: t1)
            operands[4] = ValuePart(dim: 1, start: t0, end: t1)
        case ("rmsnorm", "rows"), ("layernorm", "rows"), ("softmax", "rows"), ("rope", "rows"),
             ("add", "length"), ("mul", "length"), ("silu", "length"), ("gelu", "length"), ("relu", "length"), ("silu_mul", "length"), ("reshape", "length"):
            let p = try written().canonical(shape: ys)
            guard p.dim < 0 else { throw CodegenError("step '\(step.name)': '\(t[y].name)' is not cut into an element range") }
            if scheme == "rows", let width = ys.last, p.start % width != 0 || p.end % width != 0 {
                throw CodegenError("step '\(step.name)': rows tile [\(p.start), \(p.end)) is not whole rows of \(width)")
            }
            for (k, o) in op.operands.enumerated() where t[o].elementCount == t[y].elementCount { operands[k] = p }
            results[0] = p
        default:
            throw CodegenError("step '\(step.name)': tiles of \(op.kind) split by \(scheme) are not emitted")
        }
        return (operands, results)
    }
}
