import Foundation
import KVArtifact
import KVCodegen
import KVGraph
import KVPlanner
import KVRuntime
import Testing

@Suite("Generated kernels against the reference interpreter")
struct GeneratedKernelTests {
    static func tinyLlama() throws -> ModelProgram {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Graphs/tiny-llama.graph")
        let graph = try GraphCompiler.compile(SourceFile(path: "tiny-llama.graph", text: try String(contentsOf: url, encoding: .utf8))).graph
        return ProgramExport.program(graph)
    }

    /// Max |generated − reference| over the logits allowed at f32 (summation order differs).
    static let logitTolerance: Float = 1e-3

    @Test("tiny-llama: swiftc-compiled generated kernels give the interpreter's logits for 6 decode steps; sources are deterministic")
    func tinyLlamaMatches() throws {
        let program = try Self.tinyLlama()
        let emitter = try SwiftEmitter(program: program)
        let (kernels, schedule) = emitter.emit()
        #expect(try SwiftEmitter(program: program).emit() == (kernels, schedule))
        let library = try KernelLibrary(kernels: kernels, schedule: schedule)
        #expect(library.arenaLength == emitter.layout.length)
        let weights = SeededWeights.make(program, seed: 3)
        var arena = [Float](repeating: 0, count: library.arenaLength)
        for (i, t) in program.tensors.enumerated() where t.kind == "weight" {
            arena.replaceSubrange(emitter.layout.offsets[i]..<emitter.layout.offsets[i] + t.elementCount, with: weights[t.name]!)
        }
        var lengths = [Int](repeating: 0, count: program.ops.filter { $0.kind == "attention" }.count)
        var reference = try ReferenceInterpreter(program: program, weights: weights)
        let tokens = program.tensors.firstIndex { $0.name == "tokens" }!, pos = program.tensors.firstIndex { $0.name == "pos" }!
        let logits = program.tensors.firstIndex { $0.kind == "output" }!
        for (step, token) in [72, 101, 108, 108, 111, 33].enumerated() {
            arena[emitter.layout.offsets[tokens]] = Float(token)
            arena[emitter.layout.offsets[pos]] = Float(step)
            arena.withUnsafeMutableBufferPointer { a in lengths.withUnsafeMutableBufferPointer { l in library.step(a.baseAddress!, l.baseAddress!) } }
            try reference.setInput(tokens, [Float(token)])
            try reference.setInput(pos, [Float(step)])
            try reference.step()
            let generated = Array(arena[emitter.layout.offsets[logits]..<emitter.layout.offsets[logits] + 256])
            let difference = zip(generated, reference.values[logits]).map { abs($0 - $1) }.max()!
            #expect(difference <= Self.logitTolerance, "step \(step): max |Δlogit| \(difference)")
        }
        #expect(lengths == [6, 6, 6, 6])
    }

    @Test("ops without a generated kernel are refused by name")
    func refusals() {
        let p = ModelProgram(model: "t", dimensions: [:], tensors: [ModelProgram.Tensor(name: "x", kind: "input", dtype: "f32", shape: [2])],
                             ops: [ModelProgram.Op(name: "s", kind: "softmax", operands: [0], results: [0], updates: [], attributes: [:])])
        #expect(throws: CodegenError.self) { try SwiftEmitter(program: p) }
    }
}
