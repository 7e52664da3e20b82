import ArgumentParser
import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import KVRuntime

/// The inputs `kvplan profile` and `kvplan eval` share: a byte-level model, its checkpoint and a text.
struct ByteModelInput: ParsableArguments {
    @Argument(help: "A .graph file or a Hugging Face config.json (byte-level vocabulary of 256).")
    var model: String

    @Option(help: "A Hugging Face model.safetensors whose tensors match the model.")
    var weights: String

    @Option(help: "The text (bytes are tokens): a calibration text for profile, a held-out text for eval.")
    var text: String

    @Option(help: "Bytes per window (default: the model's context, at most 1024).")
    var context: Int?

    /// A loaded model, its weights and the text.
    struct Loaded {
        var graph: Graph
        var program: ModelProgram
        var weights: [String: [Float]]
        var bytes: [UInt8]
        /// Bytes per window.
        var window: Int
        /// Indices of the decode-attention ops, in order.
        var attention: [Int]
        /// The dimensions the graph was compiled with (--context's `ctx` when bound).
        var dimensions: [String: Int]
        /// True when the graph declares a `batch` dimension (windows can stream in lockstep).
        var declaresBatch: Bool
    }

    /// Loads everything, checked; `bindContext` binds the graph's `ctx` to --context (eval's
    /// budgets are fractions of that context's cache).
    func load(command: String, minimumContext: Int, bindContext: Bool) throws -> Loaded {
        if let context, context < minimumContext {
            throw UserError("--context: expected at least \(minimumContext) bytes\(command == "profile" ? " (steps with fewer than 32 cached tokens are not counted)" : ""), got \(context)")
        }
        let dimensions = bindContext ? context.map { ["ctx": $0] } ?? [:] : [:]
        guard case .graph(let lowered, let source) = try loadInput(model, dimensions: dimensions, flagNames: ["ctx": "--context"]) else {
            throw UserError("'\(model)' is a target; \(command) takes a model")
        }
        let program = ProgramExport.program(lowered.graph)
        let attention = program.ops.indices.filter { program.ops[$0].kind == "attention" && program.ops[$0].operands.count == 5 }
        guard !attention.isEmpty else { throw UserError("'\(model)' has no decode attention") }
        guard program.tensors.contains(where: { $0.name == "tokens" && $0.kind == "input" && $0.elementCount == 1 }),
              program.tensors.first(where: { $0.kind == "output" })?.shape.last == 256 else {
            throw UserError("'\(model)': \(command) feeds bytes as tokens: it needs an input 'tokens' of batch 1 and a vocabulary of 256")
        }
        let capacity = program.tensors[program.ops[attention[0]].operands[3]].shape[1]
        let window = context ?? min(capacity, 1024)
        guard window <= capacity else { throw UserError("--context \(window): the model's KV cache holds \(capacity) tokens") }
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: text))) } catch {
            throw UserError("cannot read '\(text)': \(error.localizedDescription)")
        }
        guard bytes.count >= window else { throw UserError("'\(text)' has \(bytes.count) bytes; one window needs \(window) (--context)") }
        let values: [String: [Float]]
        do { values = try CheckpointWeights.load(program, from: try SafetensorsFile(path: weights)) } catch {
            throw UserError(error.message)
        }
        return Loaded(graph: lowered.graph, program: program, weights: values, bytes: bytes, window: window, attention: attention,
                      dimensions: dimensions, declaresBatch: GraphCompiler.declaredDimensions(source).contains("batch"))
    }

    /// The loaded model with its `batch` dimension bound to `sequences` (other dimensions as
    /// `load` bound them), so that many windows stream in lockstep, one per sequence — every
    /// sequence's figures are those of a batch-1 run; the weights are read once per step for all
    /// of them. Nil when the model declares no `batch` dimension (windows then run one after another).
    func lockstepProgram(_ loaded: Loaded, sequences: Int) throws -> ModelProgram? {
        guard sequences > 1, loaded.declaresBatch else { return nil }
        guard case .graph(let lowered, _) = try loadInput(model, dimensions: loaded.dimensions.merging(["batch": sequences]) { $1 },
                                                          flagNames: ["ctx": "--context"]) else { return nil }
        return ProgramExport.program(lowered.graph)
    }
}
