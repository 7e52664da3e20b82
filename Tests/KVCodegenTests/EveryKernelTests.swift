import Foundation
import KVArtifact
import KVCodegen
import KVGraph
import KVPlanner
import KVRuntime
import Testing

/// Fixtures/every-kernel.graph planned on cpu, emitted, compiled with swiftc and run against the
/// reference interpreter op by op: every kernel the emitter has, over weights in every storage
/// format (f32, f16, bf16, q8_0, q4_0).
@Suite("Every emitted kernel against its scalar reference")
struct EveryKernelTests {
    /// Tolerance of a kernel result against the reference: the f32 kernels' documented bound
    /// (Docs/runtime.md), 1e-4 + 1e-3·|reference|. Quantised weights are no looser here: the
    /// reference computes with the same dequantised values.
    static func tolerance(_ reference: Float) -> Float { 1e-4 + 1e-3 * abs(reference) }

    static func compiled() throws -> (ModelProgram, ExecutionSchedule, kernels: String, step: String) {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/every-kernel.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8))).graph
        let target = try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        #expect(PlanVerifier.check(plan).isEmpty)
        let program = ProgramExport.program(graph)
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        return (program, schedule, kernels, step)
    }

    @Test("the fixture uses every op the emitter has a kernel for, and every weight format")
    func coverage() throws {
        let (program, _, _, _) = try Self.compiled()
        #expect(Set(program.ops.map(\.kind)) == SwiftEmitter.supported)
        #expect(Set(program.tensors.filter { $0.kind == "weight" }.map(\.dtype)) == ["f32", "f16", "bf16", "q8_0", "q4_0"])
    }

    @Test("12 decode steps: every op's results equal the reference interpreter's within 1e-4 + 1e-3·|ref|")
    func everyOp() throws {
        let (program, schedule, kernels, step) = try Self.compiled()
        let weights = SeededWeights.make(program, seed: 11)
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step, weights: weights, threads: 2)
        var reference = try ReferenceInterpreter(program: program, weights: weights)
        let kernelActions = Dictionary(schedule.actions.filter { $0.kind == "kernel" }.map { ($0.op!, $0) }, uniquingKeysWith: { a, _ in a })
        let index = Dictionary(program.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        var compared = Set<String>()
        for (position, token) in [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100].enumerated() {
            try executor.setInput("tokens", [Float(token)])
            try executor.setInput("pos", [Float(position)])
            var generated: [Int: [[Float]]] = [:]
            try executor.step { op in
                let action = kernelActions[op]!
                generated[op] = zip(program.ops[op].results, action.results!).map { executor.read($1, count: program.tensors[$0].elementCount) }
            }
            try reference.setInput(index["tokens"]!, [Float(token)])
            try reference.setInput(index["pos"]!, [Float(position)])
            try reference.step()
            for (i, op) in program.ops.enumerated() {
                for (r, values) in zip(op.results, generated[i]!) {
                    let expected = reference.values[r]
                    let worst = zip(values, expected).map { abs($0 - $1) - Self.tolerance($1) }.max() ?? 0
                    #expect(worst <= 0, "step \(position) op '\(op.name)' (\(op.kind)): exceeds the tolerance by \(worst)")
                    compared.insert(op.kind)
                }
            }
        }
        #expect(compared == SwiftEmitter.supported)
        #expect(executor.linkBytes == schedule.linkBytes.map { $0 * 12 })
    }
}
