import Foundation
import KVArtifact
import KVRuntime

// `kvplan run --check`: the reference interpreter runs each step first; as the generated schedule
// runs the same step, every kernel's results (the op's output and, for decode attention, the new
// K/V rows) are read from their planned tier-0 offsets and compared with the interpreter's. At the
// end the bytes counted per link must equal the plan's per-step totals times the steps, and every
// layer's KV bytes in use the planned ones.

/// Side-by-side comparison of a compiled schedule with the reference interpreter.
final class RunCheck {
    /// |generated − reference| allowed: absolute part plus a part relative to |reference|.
    /// f32 kernels differ from the interpreter only in summation order (f32 vs f64 accumulation).
    static let absoluteTolerance: Float = 1e-4
    static let relativeTolerance: Float = 1e-3
    /// Decode attention over a packed cache: both sides hold their own packed caches, fed with K/V
    /// rows that differ in the last bits, so a code can round the other way (half a step).
    static let packedAttentionTolerance: Float = 2e-2

    let program: ModelProgram
    var reference: ReferenceInterpreter
    let executor: ScheduleExecutor
    let kernelOf: [Int: ExecutionSchedule.Action]
    let packedOps: Set<Int>
    /// Input tensors a rope reads (positions); every other input takes the token id.
    let positionInputs: Set<Int>
    /// Worst |Δ| per op kind and where it was.
    var worst: [String: (difference: Float, op: String, step: Int)] = [:]
    var failures: [String] = []
    var compared = 0
    var steps = 0

    init(program: ModelProgram, reference: ReferenceInterpreter, executor: ScheduleExecutor) {
        self.program = program
        self.reference = reference
        self.executor = executor
        kernelOf = Dictionary(executor.schedule.actions.filter { $0.kind == "kernel" }.map { ($0.op!, $0) }, uniquingKeysWith: { a, _ in a })
        packedOps = Set(executor.schedule.kv.filter { $0.layout != nil }.map(\.op))
        positionInputs = Set(program.ops.filter { $0.kind == "rope" && $0.operands.count == 2 }.map { $0.operands[1] })
    }

    func prepare(token: Int, position: Int) throws(RuntimeError) {
        for (i, t) in program.tensors.enumerated() where t.kind == "input" {
            try reference.setInput(i, Array(repeating: Float(positionInputs.contains(i) ? position : token), count: t.elementCount))
        }
        try reference.step()
        steps += 1
    }

    func compare(op index: Int) {
        guard let action = kernelOf[index] else { return }
        let op = program.ops[index]
        // Results, then (decode attention) the new key and value rows = its k and v operands.
        let expected = op.results.map { reference.values[$0] } + (op.updates.isEmpty ? [] : [reference.values[op.operands[1]], reference.values[op.operands[2]]])
        for (location, want) in zip(action.results!, expected) {
            let got = executor.read(location, count: want.count)
            var worstHere: Float = 0
            var bad: (Int, Float, Float)?
            for (i, (g, w)) in zip(got, want).enumerated() {
                let d = abs(g - w)
                if !(d <= worstHere) { worstHere = d.isNaN ? .infinity : d }
                let allowed = packedOps.contains(index) ? Self.packedAttentionTolerance : Self.absoluteTolerance + Self.relativeTolerance * abs(w)
                if bad == nil, !(d <= allowed) { bad = (i, g, w) }
            }
            compared += 1
            if worstHere > worst[op.kind]?.difference ?? -1 { worst[op.kind] = (worstHere, op.name, steps) }
            if let (i, g, w) = bad, failures.count < 10 {
                failures.append("step \(steps) op '\(op.name)' (\(op.kind)) element \(i): generated \(g), reference \(w)")
            }
        }
    }

    /// Prints the verdict; false when anything disagreed.
    func finish(plan: Plan?) -> Bool {
        let schedule = executor.schedule
        for (i, link) in schedule.links.enumerated() {
            let planned = (plan?.estimate.linkBytes[link] ?? schedule.linkBytes[i]) * executor.steps
            if executor.linkBytes[i] != planned || schedule.linkBytes[i] * executor.steps != planned {
                failures.append("link \(link): \(executor.linkBytes[i]) B copied over \(executor.steps) steps; the plan moves \(planned) B")
            }
        }
        if let layouts = plan?.kv?.layers {
            for (n, (layout, bytes)) in zip(layouts, executor.kvBytesInUse).enumerated() where layout.bytes != bytes {
                failures.append("layer \(n): \(bytes) B of KV in use; the plan gives it \(layout.bytes) B")
            }
        }
        printError("check: \(compared) op outputs over \(steps) steps compared with the reference interpreter\n")
        for (kind, w) in worst.sorted(by: { $0.key < $1.key }) {
            printError(String(format: "  %-10@ max |Δ| %.3g (op '%@', step %d)\n", kind as NSString, Double(w.difference), w.op as NSString, w.step))
        }
        printError("  bytes per link: \(failures.contains { $0.hasPrefix("link") } ? "DIFFER" : "equal to the plan") over \(executor.steps) steps\n")
        guard failures.isEmpty else {
            printError("check FAILED:\n" + failures.prefix(10).map { "  \($0)\n" }.joined())
            return false
        }
        printError("check passed\n")
        return true
    }
}
