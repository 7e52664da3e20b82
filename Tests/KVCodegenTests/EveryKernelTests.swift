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

    static func compiled(pairedRowsLimit: Int = SwiftEmitter.defaultPairedRowsLimit) throws -> (ModelProgram, ExecutionSchedule, kernels: String, step: String) {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/every-kernel.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: path, text: try String(contentsOfFile: path, encoding: .utf8))).graph
        let target = try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        #expect(PlanVerifier.check(plan).isEmpty)
        let program = ProgramExport.program(graph)
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan, pairedRowsLimit: pairedRowsLimit)
        return (program, schedule, kernels, step)
    }

    @Test("the fixture uses every op the emitter has a kernel for, and every weight format")
    func coverage() throws {
        let (program, schedule, kernels, _) = try Self.compiled()
        #expect(Set(program.ops.map(\.kind)) == SwiftEmitter.supported)
        #expect(Set(program.tensors.filter { $0.kind == "weight" }.map(\.dtype)) == ["f32", "f16", "bf16", "q8_0", "q4_0"])
        // q8_0 / q4_0 rows in whole groups of 16 are interleaved (kv_w and o_w, 64 × 64) and
        // multiplied by dotQ8Group16 / dotQ4Group16; pw8 (7 rows), pw4 (13) and pw4b (3) stay row-major.
        #expect(schedule.weights.filter { $0.layout != nil }.map { "\($0.tensor) \($0.layout!)" } == ["kv_w q8_0x16", "o_w q4_0x16"])
        #expect(kernels.contains("dotQ4Group16(q, UnsafeRawPointer(z)") && kernels.contains("dotQ8Group16(q, UnsafeRawPointer(z)"))
    }

    @Test("schedule.json: a layout on a weight it cannot arrange is refused, naming the weight")
    func layoutValidated() throws {
        let (program, schedule, _, _) = try Self.compiled()
        for (tensor, layout) in [("kv_w", "q4_0x16"), ("o_w", "q8_0x16"), ("pw4", "q4_0x16"), ("pw8", "q8_0x16"), ("o_w", "q4_0x8")] {
            var bad = schedule
            let i = try #require(bad.weights.firstIndex { $0.tensor == tensor })
            bad.weights[i].layout = layout
            #expect(throws: ArtifactError.self) { try bad.validate(against: program) }
            do { try bad.validate(against: program) } catch {
                #expect(error.message.contains("weight '\(tensor)'") && error.message.contains("layout '\(layout)'"), "\(error.message)")
            }
        }
    }

    static let tokens: [Float] = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]

    /// Every op's results at each of the 12 decode steps of the generated schedule compiled with `targetFlags`.
    static func generatedSteps(targetFlags: [String], pairedRowsLimit: Int = SwiftEmitter.defaultPairedRowsLimit) throws -> [[Int: [[Float]]]] {
        let (program, schedule, kernels, step) = try compiled(pairedRowsLimit: pairedRowsLimit)
        // The linear kernels call the paired and eight-row products exactly when pairing is on.
        #expect(kernels.contains("dotQ4Pair(q, UnsafeRawPointer(z)") == (pairedRowsLimit > 0))
        #expect(kernels.contains("dotQ4Rows8(q, UnsafeRawPointer(z)") == (pairedRowsLimit > 0))
        let library = try KernelLibrary(kernels: kernels, schedule: step, targetFlags: targetFlags)
        library.setThreads(2)
        let executor = try ScheduleExecutor(program: program, schedule: schedule, step: library.step, library: library,
                                            weights: SeededWeights.make(program, seed: 11))
        var capture = OpCapture(program: program, schedule: schedule)
        var steps: [[Int: [[Float]]]] = []
        for (position, token) in tokens.enumerated() {
            try executor.setInput("tokens", [token])
            try executor.setInput("pos", [Float(position)])
            var generated: [Int: [[Float]]] = [:]
            try executor.step { action in
                if let op = capture.record(action: action, from: executor) { generated[op.index] = Array(op.results.prefix(program.ops[op.index].results.count)) }
            }
            steps.append(generated)
        }
        #expect(executor.linkBytes == schedule.linkBytes.map { $0 * tokens.count })
        return steps
    }

    /// With the runtime's flags (x86-64: the 8-bit integer q8_0/q4_0 dot products, with AVX-VNNI
    /// where the CPU has it), with plain AVX2 on such a CPU, and without KVPLAN_AVX2 (the portable
    /// f32 path over the same quantised rows); q8_0/q4_0 rows in pairs (the fixture's weights are
    /// small) and, with the pairing limit at 0, one row per call.
    @Test("12 decode steps: every op's results equal the reference interpreter's within 1e-4 + 1e-3·|ref|",
          arguments: [(KernelLibrary.defaultTargetFlags, SwiftEmitter.defaultPairedRowsLimit), (["-target-cpu", "haswell"], SwiftEmitter.defaultPairedRowsLimit),
                      (KernelLibrary.defaultTargetFlags, 0)] + (KernelLibrary.hasAVXVNNI || KernelLibrary.hasAVX512 ? [(KernelLibrary.avx2Flags, SwiftEmitter.defaultPairedRowsLimit)] : []))
    func everyOp(targetFlags: [String], pairedRowsLimit: Int) throws {
        let (program, _, _, _) = try Self.compiled(pairedRowsLimit: pairedRowsLimit)
        let steps = try Self.generatedSteps(targetFlags: targetFlags, pairedRowsLimit: pairedRowsLimit)
        var reference = try ReferenceInterpreter(program: program, weights: SeededWeights.make(program, seed: 11))
        let index = Dictionary(program.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        var compared = Set<String>()
        for (position, token) in Self.tokens.enumerated() {
            try reference.setInput(index["tokens"]!, [token])
            try reference.setInput(index["pos"]!, [Float(position)])
            try reference.step()
            for (i, op) in program.ops.enumerated() {
                for (r, values) in zip(op.results, steps[position][i]!) {
                    let expected = reference.values[r]
                    let worst = zip(values, expected).map { abs($0 - $1) - Self.tolerance($1) }.max() ?? 0
                    #expect(worst <= 0, "step \(position) op '\(op.name)' (\(op.kind)): exceeds the tolerance by \(worst)")
                    compared.insert(op.kind)
                }
            }
        }
        #expect(compared == SwiftEmitter.supported)
    }

    /// AVX-VNNI's `vpdpbusd` computes the same integers as `vpmaddubsw` + `vpmaddwd`, and with
    /// AVX-512 enabled the other kernels must not change: every op's results are bit-identical
    /// with the runtime's flags and with plain AVX2 (needs a CPU with AVX-VNNI or AVX-512; the
    /// 16-lane value kernel is compared in PackedAttentionKernelTests).
    @Test("the runtime's flags (AVX-VNNI, AVX-512) and plain AVX2 give bit-identical results, rows in pairs and eights or one per call",
          .enabled(if: KernelLibrary.hasAVXVNNI || KernelLibrary.hasAVX512), arguments: [SwiftEmitter.defaultPairedRowsLimit, 0])
    func runtimeFlagsAreBitIdentical(pairedRowsLimit: Int) throws {
        let runtime = try Self.generatedSteps(targetFlags: KernelLibrary.defaultTargetFlags, pairedRowsLimit: pairedRowsLimit)
        let plain = try Self.generatedSteps(targetFlags: KernelLibrary.avx2Flags, pairedRowsLimit: pairedRowsLimit)
        for (position, (a, b)) in zip(runtime, plain).enumerated() {
            for i in a.keys.sorted() {
                let same = zip(a[i]!, b[i]!).allSatisfy { $0.map(\.bitPattern) == $1.map(\.bitPattern) }
                #expect(same, "step \(position) op \(i) differs between \(KernelLibrary.defaultTargetFlags) and plain AVX2")
            }
        }
    }

    /// AVX-512 without its VNNI extension (Skylake-X, Cascade Lake without it enabled): the
    /// 512-bit paths that multiply bytes with `vpmaddubsw` + `vpmaddwd` instead of `vpdpbusd`,
    /// compiled on this CPU by leaving the VNNI flags out; their integers are the same, so every
    /// op's results equal plain AVX2's bit for bit.
    @Test("AVX-512 without VNNI gives plain AVX2's results bit for bit", .enabled(if: KernelLibrary.hasAVX512))
    func avx512WithoutVNNI() throws {
        let flags = KernelLibrary.avx2Flags + ["-Xcc", "-mavx512f", "-Xcc", "-mavx512bw", "-Xcc", "-mavx512vl", "-Xcc", "-mno-gather", "-D", "KVPLAN_AVX512"]
        let wide = try Self.generatedSteps(targetFlags: flags)
        let plain = try Self.generatedSteps(targetFlags: KernelLibrary.avx2Flags)
        for (position, (a, b)) in zip(wide, plain).enumerated() {
            for i in a.keys.sorted() {
                let same = zip(a[i]!, b[i]!).allSatisfy { $0.map(\.bitPattern) == $1.map(\.bitPattern) }
                #expect(same, "step \(position) op \(i) differs between AVX-512 without VNNI and plain AVX2")
            }
        }
    }

    /// The vectorised transcendental kernels (polynomial exp and erf, lane-wise min/max) on the
    /// values where such approximations break: saturation (±100, beyond exp's clamp), signed zeros,
    /// tiny magnitudes, a row whose maximum is far from the rest, and lengths with vector tails.
    @Test("softmax, silu, silu_mul, gelu (erf, tanh) and layernorm on extreme values match the interpreter", arguments: [19, 40])
    func extremeValues(width: Int) throws {
        let source = """
        input x: f32[1, \(width)]
        input z: f32[1, \(width)]
        weight g: f32[\(width)]
        output s = softmax(x)
        output a = silu(x)
        output b = silu_mul(x, z)
        output e = gelu(x)
        output t = gelu(x, approximate="tanh")
        output n = layernorm(x, g, eps=1e-5)
        """
        let graph = try GraphCompiler.compile(SourceFile(path: "extremes.graph", text: source)).graph
        let target = try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        let program = ProgramExport.program(graph)
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        let specials: [Float] = [-100, -88.5, -20, -5, -1, -1e-3, -0.0, 0, 1e-30, 1e-3, 0.5, 1, 3, 5, 9.5, 20, 88.5, 100]
        let x = (0..<width).map { specials[$0 % specials.count] * ($0 >= specials.count ? 0.37 : 1) }
        let z = (0..<width).map { Float($0 % 7) - 3 }
        let weights = SeededWeights.make(program, seed: 3)
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step, weights: weights, threads: 1)
        var reference = try ReferenceInterpreter(program: program, weights: weights)
        let index = Dictionary(program.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        try executor.setInput("x", x)
        try executor.setInput("z", z)
        try reference.setInput(index["x"]!, x)
        try reference.setInput(index["z"]!, z)
        var capture = OpCapture(program: program, schedule: schedule)
        var generated: [Int: [Float]] = [:]
        try executor.step { action in
            if let op = capture.record(action: action, from: executor) { generated[op.index] = op.results[0] }
        }
        try reference.step()
        #expect(generated.count == 6)
        for (i, op) in program.ops.enumerated() {
            let expected = reference.values[op.results[0]], values = generated[i]!
            let finite = values.allSatisfy { $0.isFinite }
            #expect(finite, "\(op.kind): \(values)")
            let worst = zip(values, expected).map { abs($0 - $1) - Self.tolerance($1) }.max() ?? 0
            #expect(worst <= 0, "op '\(op.name)' (\(op.kind)) exceeds the tolerance by \(worst)")
        }
    }
}
