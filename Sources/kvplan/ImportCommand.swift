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

        func run() throws {
            let text: String
            do { text = try readText(config) } catch let e as UserError {
                printError("error: \(e.message)\n")
                throw ExitCode(1)
            }
            let graph: String
            do {
                graph = try HFImporter.importConfig(text, path: config)
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
