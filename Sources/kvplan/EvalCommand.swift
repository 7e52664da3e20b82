import ArgumentParser
import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import KVRuntime

// `kvplan eval`: what each KV plan costs in prediction quality, measured through the real packed
// cache. Every (budget, policy, precision) cell gets its layouts from the KV budget pass at the
// same byte budget (a fraction of the fp16 cache of the full context), and the held-out text is
// streamed byte by byte through the reference interpreter with those layouts — the same
// PackedKVCache the generated runtime uses (4/2-bit packing, H2O eviction per KV head,
// re-quantisation into the low segment) — so the perplexity is that of the bytes the plan keeps.
// The full-precision cache (f32, every token) is measured on the same windows as the reference.
// Cells are independent and run on --threads workers.

/// `kvplan eval`.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity and bits per byte of a byte-level model under every KV plan, through the real packed KV cache.",
        discussion: """
        For each budget (percent of the fp16 cache of --context tokens) × allocation policy × \
        precision scheme, the KV budget pass plans the layers at that byte budget (profile: \
        --profile, else the default, announced) and the text's windows of --context bytes are \
        streamed through the reference interpreter with the packed cache; the full-precision \
        cache is the reference. A run streams all its windows in lockstep (one sequence each; the \
        figures are those of one window at a time) and cells whose layouts are equal share a run. \
        Writes a Markdown report (--markdown) and an SVG plot (--svg).
        """
    )

    @OptionGroup var input: ByteModelInput

    @Option(help: "Windows of the text evaluated.")
    var windows: Int = 2

    @Option(help: "Budgets in percent of the fp16 cache.")
    var budgets: String = "5,10,20,30,50,100"

    @Option(help: "Allocation policies.")
    var policies: String = "exact,uniform,pyramid,prefixkv,cake"

    @Option(help: "Precision schemes: evict only, 2-bit, 4-bit, mixed high/low.")
    var precisions: String = "evict,kivi2,kivi4,mixed"

    @Option(help: "A KV profile (kvplan profile) for the allocation (default: the built-in default profile).")
    var profile: String?

    @Option(help: "Worker threads.")
    var threads: Int = 2

    @Option(help: "Write the Markdown report here (default: standard output).")
    var markdown: String?

    @Option(help: "Write the SVG plot here.")
    var svg: String?

    func run() throws {
        try reportingBadInput(execute)
    }

    /// One cell's result.
    struct Cell {
        var budget: Int
        var policy: KVPolicy
        var precision: KVPrecision
        var bytes: Int?
        var bitsPerByte: Double?
        var note: String?
    }

    private func list<T>(_ text: String, _ flag: String, _ parse: (String) -> T?, expected: String) throws -> [T] {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.isEmpty else { throw UserError("\(flag): expected a comma-separated list (\(expected))") }
        return try items.map { item in
            guard let v = parse(item) else { throw UserError("\(flag): '\(item)' is not one of \(expected)") }
            return v
        }
    }

    private func execute() throws {
        let budgetList = try list(budgets, "--budgets", { Int($0).flatMap { (1...100).contains($0) ? $0 : nil } }, expected: "integers 1...100")
        let policyList = try list(policies, "--policies", { KVPolicy(rawValue: $0).flatMap { KVPolicy.bitsOnly.contains($0) ? nil : $0 } },
                                  expected: "exact, uniform, pyramid, prefixkv, cake")
        let precisionList = try list(precisions, "--precisions", { KVPrecision(rawValue: $0).flatMap { $0 == .any ? nil : $0 } },
                                     expected: "evict, kivi2, kivi4, mixed")
        guard windows >= 1 else { throw UserError("--windows: expected at least 1, got \(windows)") }
        guard (1...64).contains(threads) else { throw UserError("--threads: expected 1...64, got \(threads)") }
        let loaded = try input.load(command: "eval", minimumContext: 2, bindContext: true)
        let (graph, program, values, bytes, window) = (loaded.graph, loaded.program, loaded.weights, loaded.bytes, loaded.window)
        let count = min(windows, bytes.count / window)
        let profileSource: KVProfileSource
        if let profile {
            let p: KVProfile
            do { p = try JSONDecoder().decode(KVProfile.self, from: Data(contentsOf: URL(fileURLWithPath: profile))) } catch {
                throw UserError("\(profile): not a KV profile (\(error.localizedDescription))")
            }
            do { try p.validate() } catch { throw UserError("\(profile): \(error.message)") }
            profileSource = .given(p, name: profile)
        } else {
            printError("note: no --profile: budgets are allocated with the default profile (Docs/kv-profile.md); measure one with kvplan profile\n")
            profileSource = .standard
        }
        let target = try TargetParser.parse(SourceFile(path: "<preset cpu>", text: TargetPresets.source("cpu")!))

        // Plans first (cheap, sequential), then the streaming runs (in parallel).
        var cells: [Cell] = []
        var layouts: [[KVLayerLayout]?] = []
        for b in budgetList {
            for precision in precisionList {
                for policy in policyList {
                    do {
                        let (report, _) = try KVBudgetPass.plan(graph: graph, target: target, policy: policy, source: .ratio(Double(b) / 100),
                                                                profile: profileSource, precision: precision)
                        cells.append(Cell(budget: b, policy: policy, precision: precision, bytes: report.bytes))
                        layouts.append(report.layers)
                    } catch {
                        cells.append(Cell(budget: b, policy: policy, precision: precision, note: error.message))
                        layouts.append(nil)
                    }
                }
            }
        }
        let windowBytes = (0..<count).map { Array(bytes[($0 * window)..<(($0 + 1) * window)]) }
        // One run per distinct set of layouts (policies often agree, e.g. at 100%): job 0 is the
        // full-precision reference, cell i reads job runOf[i].
        var distinct: [[KVLayerLayout]] = []
        let runOf: [Int?] = layouts.map { layers in
            guard let layers else { return nil }
            if let k = distinct.firstIndex(of: layers) { return k + 1 }
            distinct.append(layers)
            return distinct.count
        }
        let jobs: [[KVLayerLayout]?] = [nil] + distinct.map { Optional($0) }
        let progress = ProgressLine("eval")
        progress.stage("perplexity runs", "0/\(jobs.count) runs")
        let start = ContinuousClock.now
        let total = jobs.count
        let lockstep = try input.lockstepProgram(loaded, sequences: windowBytes.count)
        let outcomes = StreamingLoss.bitsPerByte(program: program, lockstep: lockstep, weights: values, runs: jobs,
                                                 windows: windowBytes, threads: threads) { finished in
            progress.detail("\(finished)/\(total) runs (\(threads) threads)")
        }
        progress.finish()
        guard case let .success(reference) = outcomes[0] else { throw UserError("the full-precision run failed") }
        for (i, k) in runOf.enumerated() {
            guard let k else { continue }
            switch outcomes[k] {
            case let .success(bits): cells[i].bitsPerByte = bits
            case let .failure(error): cells[i].note = error.message
            }
        }
        let seconds: Double = (ContinuousClock.now - start) / .seconds(1)
        let fullBytes = program.tensors.filter { $0.kind == "cache" }.reduce(0) { $0 + 2 * $1.elementCount }  // fp16, every token
        let report = EvalReport(model: graph.name, command: CommandLine.arguments.dropFirst().joined(separator: " "), window: window, windows: count,
                                predictions: count * (window - 1), referenceBitsPerByte: reference, fp16Bytes: fullBytes,
                                profile: profile ?? "default", cells: cells, budgets: budgetList, policies: policyList, precisions: precisionList,
                                seconds: seconds, runs: jobs.count)
        let text = report.markdown(svgName: svg.map { ($0 as NSString).lastPathComponent })
        if let markdown { try writeAtomically(text, to: markdown) } else { print(text, terminator: "") }
        if let svg { try writeAtomically(report.svg(), to: svg) }
    }
}
