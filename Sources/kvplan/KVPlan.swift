import ArgumentParser

/// The `kvplan` command line.
@main
struct KVPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvplan",
        abstract: "Ahead-of-time compiler for inference on memory-tiered hardware.",
        discussion: """
        Reads a model graph (.graph or a Hugging Face config.json), checks it, and \
        (in later stages) plans where every tensor lives, how much KV cache each \
        layer keeps, and emits kernels plus a schedule.

        Exit codes: 0 success, 1 bad input (diagnostics on stderr), 64 bad usage.
        """,
        version: "0.1.0",
        subcommands: [Check.self, Import.self, Compile.self, Verify.self, Inspect.self, Run.self, Profile.self, Eval.self, Allocate.self, Bench.self]
    )
}
