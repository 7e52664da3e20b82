import ArgumentParser
import Foundation
import KVArtifact
import KVRuntime

/// `kvplan run`: generate text from a compiled artifact directory.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a compiled byte-level decoder (DIR from kvplan compile).",
        discussion: """
        This build executes DIR/program.json with the reference interpreter (plain f32 ops); when \
        the plan has KV layouts the KV cache is held packed in them (per-layer bytes printed), \
        else in f32. The generated kernels and tier arenas are not used by run yet, and the \
        output says so. --weights reads a Hugging Face safetensors checkpoint \
        (tensor names mapped from the importer's, shapes checked); without it the weights are a \
        deterministic seeded initialisation (announced), so the text is noise, but reproducible. \
        Exit codes: 0 done, 1 bad input, 64 bad usage.
        """
    )

    @Argument(help: "An artifact directory written by kvplan compile.")
    var directory: String

    @Option(help: "A Hugging Face model.safetensors (f32, f16 or bf16) whose tensors match the program's weights.")
    var weights: String?

    @Option(help: "Prompt text (default: a newline).")
    var prompt: String?

    @Option(name: .customLong("prompt-file"), help: "Read the prompt from this file.")
    var promptFile: String?

    @Option(name: .customLong("max-tokens"), help: "Bytes to generate (default 64).")
    var maxTokens: Int = 64

    @Option(help: "Sampling temperature; 0 = greedy (default 0).")
    var temperature: Double = 0

    @Option(help: "Seed for sampling and for the seeded weights (default 0).")
    var seed: UInt64 = 0

    func run() throws {
        do { try execute() } catch let error as UserError {
            printError("error: \(error.message)\n")
            throw ExitCode(1)
        }
    }

    private func execute() throws {
        guard maxTokens >= 0, maxTokens <= 1_000_000 else { throw UserError("--max-tokens: expected 0...1000000, got \(maxTokens)") }
        guard temperature.isFinite, temperature >= 0 else { throw UserError("--temperature: expected a number ≥ 0, got \(temperature)") }
        guard prompt == nil || promptFile == nil else { throw UserError("give --prompt or --prompt-file, not both") }
        let path = "\(directory)/program.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UserError("cannot read '\(path)': is '\(directory)' a directory written by kvplan compile?")
        }
        let program: ModelProgram
        do { program = try JSONDecoder().decode(ModelProgram.self, from: data) } catch {
            throw UserError("\(path): not a valid program (\(error))")
        }
        var text = Array((prompt ?? "").utf8)
        if let promptFile {
            guard let bytes = FileManager.default.contents(atPath: promptFile) else { throw UserError("--prompt-file: cannot read '\(promptFile)'") }
            text = Array(bytes)
        }
        let capacity = program.tensors.filter { $0.kind == "cache" }.map { $0.shape.count > 1 ? $0.shape[1] : 0 }.min() ?? Int.max
        guard max(1, text.count) + maxTokens <= capacity else {
            throw UserError("the prompt (\(text.count) bytes) and --max-tokens \(maxTokens) need \(max(1, text.count) + maxTokens) tokens; the KV cache holds \(capacity) (compile with a larger --context)")
        }
        // The plan's KV layouts, when the compile chose them: the cache is then held packed.
        var layouts: [KVLayerLayout]?
        if let planData = FileManager.default.contents(atPath: "\(directory)/plan.json") {
            do { layouts = try JSONDecoder().decode(Plan.self, from: planData).kv?.layers } catch {
                throw UserError("\(directory)/plan.json: not a valid plan (\(error))")
            }
        }
        printError("note: reference interpreter (plain f32 ops); the generated kernels (Kernels.swift) are not used by run yet\n")
        printError(layouts == nil ? "note: no KV layouts in the plan: full-precision f32 KV cache\n"
                                  : "note: KV cache held packed in the plan's per-layer layouts\n")
        let started = ContinuousClock.now
        do {
            let values: [String: [Float]]
            if let weights {
                values = try CheckpointWeights.load(program, from: try SafetensorsFile(path: weights))
            } else {
                printError("note: no --weights: deterministic seeded weights (seed \(seed)), the text is noise\n")
                values = SeededWeights.make(program, seed: seed)
            }
            var generator = try Generator(try ReferenceInterpreter(program: program, weights: values, kvLayouts: layouts))
            FileHandle.standardOutput.write(Data(text))
            let out = try generator.generate(prompt: text, maxTokens: maxTokens, temperature: temperature, seed: seed) { byte in
                FileHandle.standardOutput.write(Data([byte]))
            }
            let seconds = (ContinuousClock.now - started) / .seconds(1)
            let tokens = max(1, text.count) + out.count
            print("")
            printError(String(format: "%d tokens in %.3f s (%.1f ms/token, reference interpreter)\n", tokens, seconds, 1000 * seconds / Double(tokens)))
            if let layouts {
                let caches = generator.interpreter.packed.sorted { $0.key < $1.key }.map(\.value)
                printError("layer  KV bytes planned  in use  tokens held  evicted\n")
                for (layout, cache) in zip(layouts, caches) {
                    let inUse = cache.reduce(0) { $0 + $1.bytes }
                    printError(String(format: "%5d  %16d  %6d  %11d  %7d\n", layout.layer, layout.bytes, inUse,
                                      cache.reduce(0) { $0 + $1.tokens }, cache.reduce(0) { $0 + $1.evicted }))
                }
            }
        } catch {
            throw UserError("\(directory): \(error.message)")
        }
    }
}
