import Foundation
import KVArtifact
import KVRuntime

// `kvplan run --check`: differential checking, op by op and end to end.
//
// Op by op (what passes or fails): as the generated schedule runs a step, after each kernel the
// reference interpreter runs the same op on the generated run's own operands (read at their
// planned tier-0 offsets; a tiled op's blocks are collected tile by tile and compared after its last), and the kernel's results — the op's outputs and, for decode attention,
// the new K/V rows — are compared with the reference's. Each kernel is so held to its own
// tolerance: a difference upstream is not charged to every op downstream of it, and both sides'
// KV caches receive identical rows (so a packed cache quantises identical values).
// End to end (reported): a second interpreter runs every step on its own, and the largest logit
// difference and the agreement of greedy tokens are printed — how far f32 reordering drifts over
// the run. At the end the bytes counted per link must equal the plan's per-step totals times the
// steps, and every layer's KV bytes in use the planned ones.

/// Side-by-side comparison of a compiled schedule with the reference interpreter.
final class RunCheck {
    /// |generated − reference| allowed: absolute part plus a part relative to |reference|.
    /// f32 kernels differ from the interpreter only in summation order (f32 vs f64 accumulation).
    static let absoluteTolerance: Float = 1e-4
    static let relativeTolerance: Float = 1e-3
    /// Decode attention over a packed cache: both sides quantise identical rows, but the kernel
    /// folds dequantisation into its dot products (another summation order over 4-bit codes), and
    /// attention scores that tie within rounding may evict different tokens.
    static let packedAttentionTolerance: Float = 2e-3

    let program: ModelProgram
    /// Runs op by op on the generated run's operands.
    var reference: ReferenceInterpreter
    /// Runs every step on its own (end-to-end drift).
    var independent: ReferenceInterpreter
    var logitDrift: Float = 0
    var greedyAgree = 0
    let executor: ScheduleExecutor
    /// Puts tiled ops back together from their kernel calls.
    var capture: OpCapture
    let packedOps: Set<Int>
    /// The position input (Generator.positionInput); every other input takes the token id.
    let positionInputs: Set<Int>
    /// Worst |Δ| per op kind and where it was.
    var worst: [String: (difference: Float, op: String, step: Int)] = [:]
    var failures: [String] = []
    /// The largest 16-bit value-product bound allowed on a packed attention output.
    var largestValueBound: Float = 0
    var compared = 0
    var steps = 0

    /// `reference` and `independent` must not share caches (build each with its own initialiser:
    /// packed caches are reference types).
    init(program: ModelProgram, reference: ReferenceInterpreter, independent: ReferenceInterpreter, executor: ScheduleExecutor) {
        self.program = program
        self.reference = reference
        self.independent = independent
        self.executor = executor
        capture = OpCapture(program: program, schedule: executor.schedule)
        packedOps = Set(executor.schedule.kv.filter { $0.layout != nil }.map(\.op))
        positionInputs = Set([Generator.positionInput(of: program)].compactMap { $0 })
    }

    func prepare(token: Int, position: Int) throws(RuntimeError) {
        if steps > 0 { endOfStep() }
        for (i, t) in program.tensors.enumerated() where t.kind == "input" {
            let value = Array(repeating: Float(positionInputs.contains(i) ? position : token), count: t.elementCount)
            try reference.setInput(i, value)
            try independent.setInput(i, value)
        }
        try independent.step()
        steps += 1
    }

    /// The logits of the step that just ended against the independent interpreter's.
    func endOfStep() {
        guard let output = program.tensors.firstIndex(where: { $0.kind == "output" }), let got = try? executor.output(program.tensors[output].name) else { return }
        let want = independent.values[output]
        logitDrift = max(logitDrift, zip(got, want).map { abs($0 - $1) }.max() ?? 0)
        if got.indices.max(by: { got[$0] < got[$1] }) == want.indices.max(by: { want[$0] < want[$1] }) { greedyAgree += 1 }
    }

    /// Compares the op whose last kernel call is action `index` (earlier tiles are only recorded).
    func compare(action index: Int) {
        guard let captured = capture.record(action: index, from: executor) else { return }
        let index = captured.index, op = program.ops[index]
        // The reference runs this op on the generated run's operands (weights and caches are its own).
        // A packed cache's 4-bit values are multiplied in 16-bit integers by the kernel: its own
        // bound (ValueProductRounding), from the cache the op reads, is allowed on top.
        let valueBound = packedOps.contains(index) ? (reference.packed[op.operands[3]] ?? []).map(\.valueRoundingBound).max() ?? 0 : 0
        largestValueBound = max(largestValueBound, valueBound)
        do {
            for (tensor, values) in zip(op.operands, captured.operands) {
                guard let values else { continue }
                try reference.setValue(tensor, values)
            }
            try reference.run(op: index)
        } catch {
            failures.append("step \(steps) op '\(op.name)': the reference interpreter failed: \(error.message)")
            return
        }
        for (got, want) in zip(captured.results, reference.kernelResults(op: index)) {
            var worstHere: Float = 0
            var bad: (Int, Float, Float)?
            for (i, (g, w)) in zip(got, want).enumerated() {
                let d = abs(g - w)
                if !(d <= worstHere) { worstHere = d.isNaN ? .infinity : d }
                let allowed = packedOps.contains(index) ? Self.packedAttentionTolerance + valueBound : Self.absoluteTolerance + Self.relativeTolerance * abs(w)
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
        endOfStep()
        printError("check: \(compared) op outputs over \(steps) steps compared with the reference interpreter, op by op\n")
        for (kind, w) in worst.sorted(by: { $0.key < $1.key }) {
            printError(String(format: "  %-10@ max |Δ| %.3g (op '%@', step %d)\n", kind as NSString, Double(w.difference), w.op as NSString, w.step))
        }
        if largestValueBound > 0 {
            printError(String(format: "  attention over 4-bit values allowed %.3g + up to %.3g (the 16-bit value products' bound, ValueProductRounding)\n",
                              Double(Self.packedAttentionTolerance), Double(largestValueBound)))
        }
        printError("  bytes per link: \(failures.contains { $0.hasPrefix("link") } ? "DIFFER" : "equal to the plan") over \(executor.steps) steps\n")
        printError(String(format: "  end to end (an interpreter run on its own): max |Δ logit| %.3g, greedy token equal in %d of %d steps\n",
                          Double(logitDrift), greedyAgree, steps))
        guard failures.isEmpty else {
            printError("check FAILED:\n" + failures.prefix(10).map { "  \($0)\n" }.joined())
            return false
        }
        printError("check passed\n")
        return true
    }
}
