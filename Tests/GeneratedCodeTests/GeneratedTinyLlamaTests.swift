import Foundation
import GeneratedTinyLlamaCPU
import KVArtifact
import KVRuntime
import Testing

@Suite("Generated/tiny-llama/cpu compiled as sources, against the reference interpreter")
struct GeneratedTinyLlamaTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Generated/tiny-llama/cpu")

    static func load<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: directory.appendingPathComponent(name)))
    }

    /// Max |generated − reference| per op output (f32 kernels; f32 vs f64 accumulation order).
    static let tolerance: Float = 2e-3

    @Test("40 decode steps (past the first window flush): every op output within tolerance, link bytes and KV bytes as planned")
    func matchesInterpreter() throws {
        let program = try Self.load(ModelProgram.self, "program.json")
        let schedule = try Self.load(ExecutionSchedule.self, "schedule.json")
        let plan = try Self.load(Plan.self, "plan.json")
        let weights = SeededWeights.make(program, seed: 11)
        let executor = try ScheduleExecutor(program: program, schedule: schedule, step: kvplanStep, weights: weights)
        var reference = try ReferenceInterpreter(program: program, weights: weights, kvLayouts: plan.kv?.layers)
        var capture = OpCapture(program: program, schedule: schedule)
        let tokens = program.tensors.firstIndex { $0.name == "tokens" }!, pos = program.tensors.firstIndex { $0.name == "pos" }!
        var worst: Float = 0
        for step in 0..<40 {
            let token = Float((step * 37 + 11) % 256)
            try reference.setInput(tokens, [token])
            try reference.setInput(pos, [Float(step)])
            try reference.step()
            try executor.setInput("tokens", [token])
            try executor.setInput("pos", [Float(step)])
            try executor.step { action in
                guard let op = capture.record(action: action, from: executor) else { return }
                let expected = program.ops[op.index].results.map { reference.values[$0] }
                for (got, want) in zip(op.results, expected) { worst = max(worst, zip(got, want).map { abs($0 - $1) }.max() ?? 0) }
            }
        }
        #expect(worst <= Self.tolerance, "max |Δ| \(worst)")
        #expect(worst > 0, "the comparison saw no differences at all: suspicious")
        for (i, link) in schedule.links.enumerated() { #expect(executor.linkBytes[i] == 40 * (plan.estimate.linkBytes[link] ?? 0), "\(link)") }
        #expect(executor.kvBytesInUse == plan.kv!.layers.map(\.bytes))
        #expect(executor.kvTokensHeld == [40, 40, 40, 40])
    }
}
