import Foundation
import KVArtifact
import KVCodegen
import KVGraph
import KVPlanner
import KVRuntime
import Testing

/// The trained tiny-llama checkpoint (Graphs/tiny-llama/) run by kvplan — the reference
/// interpreter and the generated schedule, token by token with a full-precision KV cache — against
/// the logits Hugging Face transformers computed for the same bytes in one forward pass
/// (Graphs/tiny-llama/crosscheck.py, committed as reference-logits.bin/.json; CI needs no torch).
@Suite("tiny-llama against Hugging Face transformers")
struct TransformersCrossCheckTests {
    /// Max |Δ| allowed between a kvplan logit and transformers' (issue 7's target): f32 on both
    /// sides, different summation orders and exp/rsqrt implementations; measured ~1e-5.
    static let tolerance: Float = 1e-3

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Sequence: Decodable {
        var name: String
        var bytes: String
        var positions: Int
        var offset: Int
    }

    struct Index: Decodable {
        var vocab: Int
        var sequences: [Sequence]
    }

    /// (program, checkpoint weights, [(name, bytes, logits per position)]).
    static func fixture() throws -> (ModelProgram, [String: [Float]], [(String, [UInt8], [[Float]])]) {
        let graphPath = root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: graphPath, text: try String(contentsOfFile: graphPath, encoding: .utf8))).graph
        let program = ProgramExport.program(graph)
        let weights = try CheckpointWeights.load(program, from: try SafetensorsFile(path: root.appendingPathComponent("Graphs/tiny-llama/model.safetensors").path))
        let index = try JSONDecoder().decode(Index.self, from: Data(contentsOf: root.appendingPathComponent("Graphs/tiny-llama/reference-logits.json")))
        let blob = try Data(contentsOf: root.appendingPathComponent("Graphs/tiny-llama/reference-logits.bin"))
        let all = blob.withUnsafeBytes { raw in (0..<blob.count / 4).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) } }
        let sequences = index.sequences.map { s in
            let bytes = [UInt8](Data(base64Encoded: s.bytes)!)
            let logits = (0..<s.positions).map { p in Array(all[(s.offset + p * index.vocab)..<(s.offset + (p + 1) * index.vocab)]) }
            return (s.name, bytes, logits)
        }
        return (program, weights, sequences)
    }

    /// The largest |kvplan − transformers| over every position and logit of every sequence.
    static func worst(_ sequences: [(String, [UInt8], [[Float]])], _ makeGenerator: () throws -> Generator) throws -> (Float, String) {
        var worst: (Float, String) = (0, "")
        for (name, bytes, expected) in sequences {
            var generator = try makeGenerator()
            for (p, b) in bytes.enumerated() {
                let logits = try generator.feed(Int(b), position: p)
                let d = zip(logits, expected[p]).map { abs($0 - $1) }.max() ?? .infinity
                if d > worst.0 || d.isNaN { worst = (d, "\(name) position \(p)") }
            }
        }
        return worst
    }

    @Test("the reference interpreter matches transformers within 1e-3 at every position")
    func interpreter() throws {
        let (program, weights, sequences) = try Self.fixture()
        #expect(sequences.count == 3 && sequences.allSatisfy { $0.1.count == $0.2.count })
        let (d, at) = try Self.worst(sequences) { try Generator(try ReferenceInterpreter(program: program, weights: weights)) }
        #expect(d <= Self.tolerance, "max |Δ| \(d) at \(at)")
    }

    @Test("the generated schedule (cpu target, f32 cache) matches transformers within 1e-3 at every position")
    func generated() throws {
        let (program, weights, sequences) = try Self.fixture()
        let graphPath = Self.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let graph = try GraphCompiler.compile(SourceFile(path: graphPath, text: try String(contentsOfFile: graphPath, encoding: .utf8))).graph
        let target = try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))
        let plan = try PlacementPlanner.plan(try PlacementProblem(graph: graph, target: target), method: .belady, objective: .time, baselines: [])
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        #expect(schedule.kv.allSatisfy { $0.layout == nil })  // full precision
        let (d, at) = try Self.worst(sequences) {
            try Generator(try ScheduleExecutor(program: program, schedule: schedule, kernels: kernels, step: step, weights: weights, threads: 1))
        }
        #expect(d <= Self.tolerance, "max |Δ| \(d) at \(at)")
    }
}
