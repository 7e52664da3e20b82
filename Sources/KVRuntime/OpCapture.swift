import KVArtifact

// Reassembles whole ops from a generated run for checking. A tiled op runs as several kernel
// calls, each reading and writing blocks of the op's tensors that may be gone from the compute
// tier by the op's last tile (evicted, their space reused), so every call's blocks are copied out
// right after it runs (the schedule lists them per kernel action) and put together; after the
// op's last tile the whole operands and results are handed over. Weights and caches are not
// captured: a checker's reference holds its own.

/// Whole operands and results of each op, put together from its kernel calls' blocks.
public struct OpCapture {
    /// One op's tensors as the generated run saw them.
    public struct Op {
        /// Program op index.
        public var index: Int
        /// Operands by position (nil: weights and caches, not captured).
        public var operands: [[Float]?]
        /// Results, then (decode attention) the new key and value rows.
        public var results: [[Float]]
    }

    let program: ModelProgram
    let schedule: ExecutionSchedule
    private var operands: [Int: [[Float]?]] = [:]
    private var results: [Int: [[Float]]] = [:]

    /// A capture over `schedule`'s kernel actions.
    public init(program: ModelProgram, schedule: ExecutionSchedule) {
        self.program = program
        self.schedule = schedule
    }

    /// Shapes of an op's results, then its new K/V rows (shaped as its k and v operands).
    private func resultShapes(_ op: ModelProgram.Op) -> [[Int]] {
        op.results.map { program.tensors[$0].shape } + op.updates.indices.map { program.tensors[op.operands[1 + $0]].shape }
    }

    /// Records what kernel action `index` read and wrote (call right after it ran); returns the
    /// whole op when that action was its last tile.
    public mutating func record(action index: Int, from executor: ScheduleExecutor) -> Op? {
        let action = schedule.actions[index]
        guard action.kind == "kernel", let o = action.op else { return nil }
        let op = program.ops[o]
        let shapes = resultShapes(op)
        var ins = operands[o] ?? op.operands.map { program.tensors[$0].kind == "weight" || program.tensors[$0].kind == "cache" ? nil : [Float](repeating: 0, count: program.tensors[$0].elementCount) }
        var outs = results[o] ?? shapes.map { [Float](repeating: 0, count: $0.reduce(1, *)) }
        for view in action.reads ?? [] where ins[view.index] != nil {
            let shape = program.tensors[op.operands[view.index]].shape
            put(executor, view, shape, into: &ins[view.index]!)
        }
        for view in action.writes ?? [] { put(executor, view, shapes[view.index], into: &outs[view.index]) }
        guard let tiles = action.tiles, action.tile! < tiles - 1 else {
            operands[o] = nil
            results[o] = nil
            return Op(index: o, operands: ins, results: outs)
        }
        operands[o] = ins
        results[o] = outs
        return nil
    }

    private func put(_ executor: ScheduleExecutor, _ view: ExecutionSchedule.View, _ shape: [Int], into whole: inout [Float]) {
        guard let part = view.part else {
            whole = executor.read(view.location, count: whole.count)
            return
        }
        part.insert(executor.read(view.location, count: part.elementCount(shape: shape)), into: &whole, shape: shape)
    }
}
