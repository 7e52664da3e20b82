import Foundation
import KVArtifact
import KVCodegen
import KVGraph
import KVPlanner
import KVQuant
import KVRuntime
import Testing

/// Plans on scratchpads far smaller than the models' tensors, so the tiling pass splits matmuls
/// (by columns and by reduction), decode attention (by KV tokens), row-wise ops (by rows) and
/// elementwise ops (by length): emitted, compiled with swiftc and run, op by op, against the
/// reference interpreter on the generated run's own operands (as `kvplan run --check` does).
@Suite("Tiled plans emitted and run against the reference interpreter")
struct TiledCodegenTests {
    /// The f32 kernels' documented bound (Docs/runtime.md): tiles change summation order only.
    static func tolerance(_ reference: Float) -> Float { 1e-4 + 1e-3 * abs(reference) }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The cpu target with a `scratchpad`-sized compute tier.
    static func target(scratchpad: String) throws -> Target {
        let cpu = TargetPresets.source("cpu")!.replacingOccurrences(of: "capacity=1MiB ", with: "capacity=\(scratchpad) ")
        #expect(cpu != TargetPresets.source("cpu")!)
        return try TargetParser.parse(SourceFile(path: "<cpu with \(scratchpad)>", text: cpu))
    }

    /// Compiles `path` (with `dimensions`) for `target` with the Belady planner (fast; the ILP's
    /// plans take the same lowering) and emits it.
    static func compiled(_ path: String, dimensions: [String: Int] = [:], target: Target) throws -> (ModelProgram, Plan, ExecutionSchedule, String, String) {
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8)), dimensions: dimensions).graph
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        #expect(PlanVerifier.check(plan).isEmpty)
        let program = ProgramExport.program(graph)
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        return (program, plan, schedule, kernels, step)
    }

    /// Every kernel that reads an interleaved weight (q4_0x16 / q8_0x16) reads one stored block
    /// of it where the plan put it — never a block assembled in staging, whose row copies would
    /// mix the interleaved groups — and at least one weight is interleaved.
    static func interleavedReadAsStored(_ program: ModelProgram, _ schedule: ExecutionSchedule) -> Bool {
        let interleaved = Set(schedule.weights.filter { $0.layout != nil }.map(\.tensor))
        let kernels = schedule.actions.filter { a in a.kind == "kernel" && program.ops[a.op!].operands.dropFirst().first.map { interleaved.contains(program.tensors[$0].name) } == true }
        return !kernels.isEmpty && kernels.allSatisfy { a in
            let views = (a.reads ?? []).filter { $0.index == 1 }
            return views.count == 1 && a.operands![1] == views[0].location
        }
    }

    /// Tiled ops of a plan: (op kind, scheme) pairs.
    static func schemes(_ plan: Plan) -> Set<String> {
        Set(plan.steps.compactMap { s in s.scheme.map { "\(s.op)/\($0)" } })
    }

    /// Runs `inputs.count` steps; after each op's last tile the reference runs the op on the
    /// operands the generated run read. Returns the largest excess over the tolerance and the op kinds compared.
    static func differential(_ program: ModelProgram, _ executor: ScheduleExecutor, inputs: [[String: [Float]]]) throws -> (excess: Float, kinds: Set<String>) {
        var reference = try ReferenceInterpreter(program: program, weights: SeededWeights.make(program, seed: 5))
        var capture = OpCapture(program: program, schedule: executor.schedule)
        var excess = -Float.infinity
        var kinds = Set<String>()
        var failure: RuntimeError?
        for step in inputs {
            for (name, values) in step { try executor.setInput(name, values) }
            try executor.step { action in
                guard failure == nil, let op = capture.record(action: action, from: executor) else { return }
                let o = program.ops[op.index]
                do {
                    for (tensor, values) in zip(o.operands, op.operands) { if let values { try reference.setValue(tensor, values) } }
                    try reference.run(op: op.index)
                } catch let error as RuntimeError { failure = error; return } catch { return }
                for (got, want) in zip(op.results, reference.kernelResults(op: op.index)) {
                    #expect(got.count == want.count)
                    excess = max(excess, zip(got, want).map { abs($0 - $1) - tolerance($1) }.max() ?? 0)
                }
                kinds.insert(o.kind)
            }
            if let failure { throw failure }
        }
        return (excess, kinds)
    }

    @Test("every kernel and weight format on a 4 KiB scratchpad: columns, reduction and 9 token tiles, 24 steps within tolerance")
    func everyKernelTiled() throws {
        let (program, plan, schedule, kernels, step) = try Self.compiled(Self.fixtures.appendingPathComponent("every-kernel.graph").path,
                                                                          target: try Self.target(scratchpad: "4KiB"))
        #expect(Self.schemes(plan) == ["matmul/columns", "matmul/reduction", "attention/tokens"])
        #expect(plan.steps.contains { $0.op == "attention" && $0.tiles == 9 })
        #expect(schedule.stagingBytes > 0, "the fixture reads split results whole (split, silu, gelu): they are staged")
        #expect(Self.interleavedReadAsStored(program, schedule))
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step,
                                            weights: SeededWeights.make(program, seed: 5), threads: 1)
        let inputs = (0..<24).map { ["tokens": [Float(($0 * 37 + 11) % 256)], "pos": [Float($0)]] }
        let (excess, kinds) = try Self.differential(program, executor, inputs: inputs)
        #expect(excess <= 0, "an op exceeds its tolerance by \(excess)")
        #expect(kinds == SwiftEmitter.supported)
        for (i, link) in schedule.links.enumerated() { #expect(executor.linkBytes[i] == 24 * (plan.estimate.linkBytes[link] ?? 0), "\(link)") }
        #expect(executor.kvTokensHeld == [24])
    }

    @Test("row-wise and elementwise ops over [64, 128] on a 16 KiB scratchpad: rows and length tiles, split inputs, broadcast operands")
    func rowsAndLength() throws {
        let (program, plan, schedule, kernels, step) = try Self.compiled(Self.fixtures.appendingPathComponent("tiled-rows.graph").path,
                                                                          target: try Self.target(scratchpad: "16KiB"))
        #expect(Self.schemes(plan) == ["rmsnorm/rows", "layernorm/rows", "softmax/rows", "rope/rows", "add/length", "mul/length",
                                       "silu_mul/length", "gelu/length", "relu/length", "silu/length"])
        #expect(schedule.inputs.filter { $0.tensor == "x" }.count > 1, "the input is written part by part")
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step,
                                            weights: SeededWeights.make(program, seed: 5), threads: 1)
        let x = (0..<64 * 128).map { Float(sin(Double($0) * 0.37)) * 3 }
        let (excess, kinds) = try Self.differential(program, executor, inputs: [["x": x, "p": (0..<64).map { Float($0 * 3) }]])
        #expect(excess <= 0, "an op exceeds its tolerance by \(excess)")
        #expect(kinds == ["rmsnorm", "layernorm", "softmax", "rope", "add", "mul", "silu_mul", "gelu", "relu", "silu"])
        // The output, put together from its parts, equals the reference's.
        var reference = try ReferenceInterpreter(program: program, weights: SeededWeights.make(program, seed: 5))
        try reference.setInput(program.tensors.firstIndex { $0.name == "x" }!, x)
        try reference.setInput(program.tensors.firstIndex { $0.name == "p" }!, (0..<64).map { Float($0 * 3) })
        try reference.step()
        let got = try executor.output("o"), want = reference.values[program.tensors.firstIndex { $0.name == "o" }!]
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= Self.tolerance($1) })
    }

    @Test("tiny-llama (context 128) on a 48 KiB scratchpad: 70 decode steps across its KV token tiles within tolerance")
    func tinyLlamaTiled() throws {
        let path = Self.fixtures.appendingPathComponent("../../../Graphs/tiny-llama.graph").standardizedFileURL.path
        let (program, plan, schedule, kernels, step) = try Self.compiled(path, dimensions: ["ctx": 128], target: try Self.target(scratchpad: "48KiB"))
        let tokenTiles = plan.steps.first { $0.op == "attention" }?.tiles ?? 1
        #expect(tokenTiles >= 2 && 128 / tokenTiles < 70, "70 steps reach past the first token tile")
        #expect(schedule.kv.allSatisfy { $0.tokenCuts?.count == tokenTiles + 1 })
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step,
                                            weights: SeededWeights.make(program, seed: 5), threads: 2)
        let inputs = (0..<70).map { ["tokens": [Float(($0 * 37 + 11) % 256)], "pos": [Float($0)]] }
        let (excess, _) = try Self.differential(program, executor, inputs: inputs)
        #expect(excess <= 0, "an op exceeds its tolerance by \(excess)")
        #expect(executor.kvTokensHeld == [70, 70, 70, 70])
    }

    /// q8_0 / q4_0 weights cut along their rows by reduction tiles: every cut falls between
    /// 32-value blocks (down_proj's 704 columns are 22 blocks; a cut at 704·j/k would split one),
    /// the activation is cut with it, and the tiles run within tolerance. Output-row (columns)
    /// cuts fall on groups of 16 rows, and every part is interleaved (q4_0x16 / q8_0x16).
    @Test("tiny-llama with q8_0 / q4_0 weights on a 48 KiB scratchpad: reduction tiles cut between blocks, 40 steps within tolerance",
          arguments: [DType.q4_0, .q8_0])
    func blockWeightsTiled(dtype: DType) throws {
        let path = Self.fixtures.appendingPathComponent("../../../Graphs/tiny-llama.graph").standardizedFileURL.path
        var graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8)), dimensions: ["ctx": 64]).graph
        _ = try WeightQuantization.apply(to: &graph, dtype: dtype)
        let target = try Self.target(scratchpad: "48KiB")
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        #expect(PlanVerifier.check(plan).isEmpty)
        let program = ProgramExport.program(graph)
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        let blockParts = plan.values.filter { $0.kind == .weight && $0.tensor.hasPrefix("down_proj") && $0.part != nil }
        #expect(!blockParts.isEmpty && Self.schemes(plan).contains("matmul/reduction"), "\(Self.schemes(plan))")
        for value in blockParts {
            let part = try #require(value.part)
            #expect(part.dim == 1 && part.start % 32 == 0 && part.end % 32 == 0, "\(value.name): \(part)")
            // down_proj is [256, 704]: the part's bytes are its 256 rows' whole blocks.
            #expect(value.bytes == 256 * (part.end - part.start) / 32 * (dtype == .q4_0 ? 18 : 34), "\(value.name): \(value.bytes) B")
        }
        // Tiled weights are interleaved part by part: a column part is whole groups of 16 rows.
        #expect(schedule.weights.contains { $0.layout != nil && $0.part != nil } && Self.interleavedReadAsStored(program, schedule))
        for b in schedule.weights where b.part != nil && b.layout != nil {
            let shape = try #require(program.tensors.first { $0.name == b.tensor }?.shape)
            let matrix = try #require(b.part!.matrix(in: shape))
            #expect(matrix.rows % 16 == 0 && matrix.columns % 32 == 0, "\(b.tensor) \(b.part!)")
        }
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step,
                                            weights: SeededWeights.make(program, seed: 5), threads: 1)
        let inputs = (0..<40).map { ["tokens": [Float(($0 * 37 + 11) % 256)], "pos": [Float($0)]] }
        let (excess, kinds) = try Self.differential(program, executor, inputs: inputs)
        #expect(excess <= 0, "an op exceeds its tolerance by \(excess)")
        #expect(kinds.contains("matmul"))
    }

    /// A table tied to the output projection stored in q8_0 / q4_0 (`--weight-dtype-tied`): the
    /// embedding lookup gathers block rows and decodes them, the head multiplies the same bytes
    /// (interleaved: the gather picks the rows out of their groups); whole on cpu, and in parts on
    /// a 4 KiB scratchpad (rows gathered from the part holding each).
    @Test("a tied embedding table in q8_0 / q4_0: lookups decode the gathered rows, 12 steps within tolerance",
          arguments: [(DType.q4_0, "1MiB"), (.q8_0, "1MiB"), (.q4_0, "4KiB")])
    func tiedBlockTable(dtype: DType, scratchpad: String) throws {
        let source = """
        input tokens: i32[1]
        weight table: f32[256, 64]
        weight w: f32[64, 64]
        weight norm: f32[64]
        x = embed(table, tokens)
        output logits = linear(rmsnorm(linear(x, w), norm, eps=1e-5), table)
        """
        var graph = try GraphCompiler.compile(SourceFile(path: "tied.graph", text: source)).graph
        let outcome = try WeightQuantization.apply(to: &graph, dtype: dtype, tied: true)
        #expect(outcome.converted == ["table", "w"])
        let target = scratchpad == "1MiB" ? try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))
                                          : try Self.target(scratchpad: scratchpad)
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        #expect(PlanVerifier.check(plan).isEmpty)
        let program = ProgramExport.program(graph)
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        #expect(kernels.contains("blockValue(UnsafeRawPointer(x)"))
        // The table is interleaved for the head's GEMV (whole, or part by part), and the gather
        // picks each looked-up row's blocks out of its group of 16.
        #expect(schedule.weights.filter { $0.tensor == "table" }.allSatisfy { $0.layout == WeightLayout.interleaving(WeightFormat(rawValue: dtype.rawValue)!)?.rawValue })
        #expect(step.contains("blockBytes: \(dtype == .q4_0 ? 18 : 34))"))
        if scratchpad == "4KiB" { #expect(schedule.weights.filter { $0.tensor == "table" }.count > 1, "the table is kept in parts") }
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step,
                                            weights: SeededWeights.make(program, seed: 5), threads: 1)
        let inputs = (0..<12).map { ["tokens": [Float(($0 * 37 + 11) % 256)]] }
        let (excess, kinds) = try Self.differential(program, executor, inputs: inputs)
        #expect(excess <= 0, "an op exceeds its tolerance by \(excess)")
        #expect(kinds.isSuperset(of: ["embed", "matmul"]))
    }

    @Test("a packed KV cache the plan splits into token ranges is refused, naming the op")
    func packedTokenTilesRefused() throws {
        let path = Self.fixtures.appendingPathComponent("../../../Graphs/tiny-llama.graph").standardizedFileURL.path
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8))).graph
        let target = try Self.target(scratchpad: "48KiB")
        let plan = try KVJointPlanning.plan(graph: graph, target: target, policy: .uniform, source: .ratio(0.5)) { cacheBytes throws(PlanningError) in
            try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target, cacheBytes: cacheBytes), method: .belady, objective: .time, baselines: [])
        }
        #expect(plan.kv != nil)
        #expect(plan.steps.contains { $0.scheme == "tokens" })
        #expect(throws: CodegenError.self) { try SwiftEmitter.artifacts(program: ProgramExport.program(graph), plan: plan) }
    }
}
