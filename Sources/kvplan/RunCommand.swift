import ArgumentParser
import Foundation
import KVArtifact
import KVRuntime

/// `kvplan run`: generate text from a compiled artifact directory.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text (byte-level models) or token ids (--prompt-tokens) with a compiled decoder (DIR from kvplan compile).",
        discussion: """
        By default run executes the generated schedule: DIR/Kernels.swift + Schedule.swift are \
        compiled with swiftc (cached by content hash), one arena per tier is allocated, every \
        planned transfer is a real copy counted per link, and the KV cache is held in the plan's \
        packed layout in its home arena. --interpreter runs the plain-f32 reference interpreter \
        instead; --check runs both and compares every op's output and the logits at every step \
        (tolerances in Docs/runtime.md) and the bytes per link against the plan. --weights reads \
        a Hugging Face safetensors checkpoint (tensor names mapped, shapes checked); without it \
        the weights are a deterministic seeded initialisation (announced), so the text is noise, \
        but reproducible. Exit codes: 0 done, 1 bad input or a failed check, 64 bad usage.
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

    @Option(name: .customLong("prompt-tokens"), help: "Token ids, comma-separated, for a model without a byte vocabulary (e.g. GPT-2); the generated ids are printed.")
    var promptTokens: String?

    @Option(name: .customLong("max-tokens"), help: "Bytes to generate.")
    var maxTokens: Int = 64

    @Option(help: "Sampling temperature; 0 = greedy.")
    var temperature: Double = 0

    @Option(help: "Seed for sampling and for the seeded weights.")
    var seed: UInt64 = 0

    @Option(help: "Threads for the generated kernels.")
    var threads: Int = 1

    @Flag(help: "Run the reference interpreter instead of the generated schedule.")
    var interpreter = false

    @Flag(help: "Run the generated schedule and the reference interpreter side by side and compare every op's output.")
    var check = false

    func run() throws {
        try reportingBadInput(execute)
    }

    private func execute() throws {
        guard maxTokens >= 0, maxTokens <= 1_000_000 else { throw UserError("--max-tokens: expected 0...1000000, got \(maxTokens)") }
        guard temperature.isFinite, temperature >= 0 else { throw UserError("--temperature: expected a number ≥ 0, got \(temperature)") }
        guard threads >= 1, threads <= 256 else { throw UserError("--threads: expected 1...256, got \(threads)") }
        guard [prompt != nil, promptFile != nil, promptTokens != nil].filter({ $0 }).count <= 1 else {
            throw UserError("give one of --prompt, --prompt-file, --prompt-tokens")
        }
        var ids: [Int]?
        if let promptTokens {
            let fields = promptTokens.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            ids = try fields.enumerated().map { k, field in
                guard let id = Int(field), id >= 0 else { throw UserError("--prompt-tokens: item \(k + 1) is '\(field)', not a token id (expected ids ≥ 0, comma-separated)") }
                return id
            }
        }
        guard !(interpreter && check) else { throw UserError("give --interpreter or --check, not both") }
        let artifact = ArtifactDirectory(path: directory)
        guard let program = try artifact.decodeIfPresent(ModelProgram.self, "program.json") else {
            throw UserError("cannot read '\(directory)/program.json': is '\(directory)' a directory written by kvplan compile?")
        }
        var text = Array((prompt ?? "").utf8)
        if let promptFile {
            guard let bytes = FileManager.default.contents(atPath: promptFile) else { throw UserError("--prompt-file: cannot read '\(promptFile)'") }
            text = Array(bytes)
        }
        let vocabulary = program.tensors.last { $0.kind == "output" }?.shape.last ?? 0
        if let ids {
            if let bad = ids.first(where: { $0 >= vocabulary }) { throw UserError("--prompt-tokens: token id \(bad) is outside the vocabulary of \(vocabulary)") }
        } else if vocabulary != 256 {
            throw UserError("'\(directory)' is not a byte-level model (its logits have \(vocabulary) entries, not 256): give the prompt as --prompt-tokens ids")
        }
        let promptLength = ids?.count ?? max(1, text.count)
        let capacity = program.tensors.filter { $0.kind == "cache" }.map { $0.shape.count > 1 ? $0.shape[1] : 0 }.min() ?? Int.max
        guard promptLength + maxTokens <= capacity else {
            throw UserError("the prompt (\(promptLength) tokens) and --max-tokens \(maxTokens) need \(promptLength + maxTokens) tokens; the KV cache holds \(capacity) (compile with a larger --context)")
        }
        let plan = try artifact.decodeIfPresent(Plan.self, "plan.json")
        let layouts = plan?.kv?.layers
        let schedule = interpreter ? nil : try artifact.decodeIfPresent(ExecutionSchedule.self, "schedule.json")
        if !interpreter && schedule == nil {
            if check { throw UserError("--check needs generated code, and '\(directory)' has no schedule.json (see the codegen line of kvplan compile)") }
            printError("note: '\(directory)' has no generated schedule (see the codegen line of kvplan compile): running the reference interpreter\n")
        }
        var passed = true
        do {
            let values: [String: [Float]]
            if let weights {
                values = try CheckpointWeights.load(program, from: try SafetensorsFile(path: weights))
            } else {
                printError("note: no --weights: deterministic seeded weights (seed \(seed)), the text is noise\n")
                values = SeededWeights.make(program, seed: seed)
            }
            var generator: Generator
            var reference: (ReferenceInterpreter, ReferenceInterpreter)?
            if let schedule {
                let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: try artifact.text("Kernels.swift"),
                                                    step: try artifact.text("Schedule.swift"), weights: values, threads: threads)
                printError("note: generated schedule on \(schedule.arenas.count) tier arenas (\(executor.library?.compiled == true ? "compiled now" : "compiled earlier, from the cache"))"
                           + (layouts == nil ? "; f32 KV cache\n" : "; KV cache packed in the plan's layouts\n"))
                if schedule.stagingBytes > 0 { printError("note: staging: \(Compile.stagingNote(schedule))\n") }
                generator = try Generator(executor)
                if check {
                    reference = (try ReferenceInterpreter(program: program, weights: values, kvLayouts: layouts),
                                 try ReferenceInterpreter(program: program, weights: values, kvLayouts: layouts))
                }
            } else {
                printError("note: reference interpreter (plain f32 ops)" + (layouts == nil ? "; f32 KV cache\n" : "; KV cache packed in the plan's layouts\n"))
                generator = try Generator(try ReferenceInterpreter(program: program, weights: values, kvLayouts: layouts))
            }
            let checker = reference.map { RunCheck(program: program, reference: $0.0, independent: $0.1, executor: generator.executor!) }
            if let checker {
                generator.beforeStep = { token, position throws(RuntimeError) in try checker.prepare(token: token, position: position) }
                generator.observe = { action in checker.compare(action: action) }
            }
            let started = ContinuousClock.now
            let generated: Int
            if let ids {
                FileHandle.standardOutput.write(Data(ids.map(String.init).joined(separator: " ").utf8))
                generated = try generator.generate(tokens: ids, maxTokens: maxTokens, temperature: temperature, seed: seed) { id in
                    FileHandle.standardOutput.write(Data(" \(id)".utf8))
                }.count
            } else {
                FileHandle.standardOutput.write(Data(text))
                generated = try generator.generate(prompt: text, maxTokens: maxTokens, temperature: temperature, seed: seed) { byte in
                    FileHandle.standardOutput.write(Data([byte]))
                }.count
            }
            let seconds = (ContinuousClock.now - started) / .seconds(1)
            FileHandle.standardOutput.write(Data("\n".utf8))
            let tokens = promptLength + generated
            report(tokens: tokens, seconds: seconds, generator: generator, plan: plan, layouts: layouts)
            passed = checker?.finish(plan: plan) ?? true
        } catch let error as RuntimeError {
            throw UserError("\(directory): \(error.message)")
        }
        if !passed { throw ExitCode(1) }
    }

    private func report(tokens: Int, seconds: Double, generator: Generator, plan: Plan?, layouts: [KVLayerLayout]?) {
        let engine = generator.executor == nil ? "reference interpreter" : "generated schedule"
        printError(String(format: "%d tokens in %.3f s: %.2f ms/token, %.1f tokens/s (%@%@)\n", tokens, seconds, 1000 * seconds / Double(tokens),
                          Double(tokens) / max(seconds, 1e-9), engine, check ? ", with --check" : ""))
        if let executor = generator.executor, let plan {
            printError("link                      plan B/token  measured B/token\n")
            for (i, link) in executor.schedule.links.enumerated() where executor.schedule.linkBytes[i] > 0 || executor.linkBytes[i] > 0 {
                let measured = Double(executor.linkBytes[i]) / Double(max(1, executor.steps))
                printError(link.padding(toLength: max(24, link.count), withPad: " ", startingAt: 0)
                           + String(format: "  %12d  %16.0f\n", plan.estimate.linkBytes[link] ?? 0, measured))
            }
        }
        guard let layouts else { return }
        let inUse: [Int], held: [Int]
        if let executor = generator.executor {
            (inUse, held) = (executor.kvBytesInUse, executor.kvTokensHeld)
        } else {
            let caches = generator.interpreter!.packed.sorted { $0.key < $1.key }.map(\.value)
            (inUse, held) = (caches.map { $0.reduce(0) { $0 + $1.bytes } }, caches.map { $0.reduce(0) { $0 + $1.tokens } })
        }
        printError("layer  KV bytes planned  in use  tokens held\n")
        for (n, layout) in layouts.enumerated() {
            printError(String(format: "%5d  %16d  %6d  %11d\n", layout.layer, layout.bytes, inUse[n], held[n]))
        }
    }
}
