import ArgumentParser
import Foundation
import KVGraph

/// `kvplan import`: bring models from other formats in as .graph source.
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import a model from another format as .graph source.",
        subcommands: [HF.self]
    )

    /// `kvplan import hf config.json`.
    struct HF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf",
            abstract: "Import a Hugging Face config.json (Llama, Mistral, Qwen2, GPT-2) as a .graph decode step."
        )

        @Argument(help: "The model's config.json.")
        var config: String

        @Option(name: .shortAndLong, help: "Write the graph here (default: standard output).")
        var output: String?

        @Option(help: "Activations and KV caches in this dtype: f32 (what generated kernels compute in, so `kvplan run` runs a bf16/f16 model; weights keep the checkpoint's dtype). Default: the checkpoint's torch_dtype.")
        var activations: String?

        func run() throws {
            if let activations, activations != "f32" {
                printError("error: --activations: expected f32, got '\(activations)' (without the option activations keep the checkpoint's dtype)\n")
                throw ExitCode(64)
            }
            let text: String
            do { text = try readText(config) } catch let e as UserError {
                printError("error: \(e.message)\n")
                throw ExitCode(1)
            }
            let graph: String
            do {
                graph = try HFImporter.importConfig(text, path: config, f32Activations: activations == "f32")
            } catch {
                printError(DiagnosticRenderer.render([.error(error.location, error.message)], in: SourceFile(path: config, text: text)))
                throw ExitCode(1)
            }
            // The importer's output must itself check; anything else is a bug worth reporting plainly.
            do { _ = try GraphCompiler.compile(SourceFile(path: "(imported)", text: graph)) } catch {
                printError("internal error: the imported graph does not check:\n\(error)")
                throw ExitCode(2)
            }
            if let output {
                do { try writeAtomically(graph, to: output) } catch let e as UserError {
                    printError("error: \(e.message)\n")
                    throw ExitCode(1)
                }
            } else {
                print(graph, terminator: "")
            }
        }
    }
}
