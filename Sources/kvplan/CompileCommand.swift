import ArgumentParser
import Foundation
import KVInspect
import KVArtifact
import KVCodegen
import KVGraph
import KVPlanner

/// `kvplan compile`: plan where every tensor lives at every step and write the artifact directory.
struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plan a model's memory placement on a target and write DIR/plan.json.",
        discussion: """
        Every plan is checked by the independent verifier before it is written; an invalid \
        plan is never written. Default target: cpu (a 1 MiB scratchpad, DRAM, host memory; \
        see Docs/targets.md). Exit codes: 0 written, 1 bad input or no plan possible, 64 bad usage.
        """
    )

    @Argument(help: "A .graph file or a Hugging Face config.json.")
    var model: String

    @Option(help: "Target preset (cpu, edge-npu, datacenter-gpu) or .hw file.")
    var target: String = "cpu"

    @Option(help: "What to minimise: time or traffic.")
    var objective: String = "time"

    @Option(help: "Placement method: ilp (default), msa, belady, lru, naive.")
    var solver: String = "ilp"

    @Option(name: .customLong("time-limit"), help: "Seconds the ILP may take in all.")
    var timeLimit: Double = 30

    @Option(help: "Relative gap at which an ILP window counts as solved.")
    var gap: Double = 0

    @Option(help: "Steps per ILP window.")
    var window: Int = 12

    @Option(help: "Operator order: fixed (the source's topological order, default) or optimize (searched).")
    var schedule: String = "fixed"

    @Option(help: "How the ILP decides scratchpad offsets: packed (default) or joint.")
    var addresses: String = "packed"

    @Option(name: .customLong("weight-dtype"), help: "Store the weights of linear layers as f32, f16, bf16, q8_0 or q4_0 (ggml blocks); the runtime quantises at load. Default: as declared.")
    var weightDtype: String?

    @Flag(name: .customLong("weight-dtype-tied"), help: "With --weight-dtype: store an embedding table tied to the output projection in that dtype too (its lookups decode the rows); without it the table keeps its dtype.")
    var weightDtypeTied = false

    @Option(name: .customLong("kv-policy"), help: "KV layout per layer: exact (default when a KV flag is given), uniform, pyramid, prefixkv, cake, kivi2, kivi4, kvtuner.")
    var kvPolicy: String?

    @Option(name: .customLong("kv-budget"), help: "KV cache byte budget (e.g. 1.5GiB).")
    var kvBudget: String?

    @Option(name: .customLong("kv-ratio"), help: "KV budget as a fraction of the fp16 cache of every token, in (0, 1].")
    var kvRatio: Double?

    @Option(name: .customLong("kv-tokens"), help: "KV budget: what this many fp16 tokens per layer take.")
    var kvTokens: Int?

    @Option(name: .customLong("kv-precision"), help: "Bits every token-allocation policy uses: any (default; baselines fp16 + evict), evict, kivi2, kivi4, mixed.")
    var kvPrecision: String?

    @Option(help: "KV profile JSON (Docs/kv-profile.md); without it a documented default is used.")
    var profile: String?

    @Option(name: .customLong("profile-family"), help: "A bundled synthetic KV profile instead of a file: \(KVProfileFamily.allCases.map(\.rawValue).joined(separator: ", ")).")
    var profileFamily: String?

    @Option(name: .shortAndLong, help: "Artifact directory (default: ./<model>.kvplan/).")
    var output: String?

    @OptionGroup var dimensions: ModelOptions

    func run() throws {
        try reportingBadInput(execute)
    }

    private func execute() throws {
        guard let objective = PlacementObjective(rawValue: objective) else {
            throw UserError("--objective: expected time or traffic, got '\(self.objective)'")
        }
        guard let method = PlacementMethod(rawValue: solver) else {
            throw UserError("--solver: expected \(PlacementMethod.allCases.map(\.rawValue).joined(separator: ", ")), got '\(solver)'")
        }
        guard timeLimit.isFinite, timeLimit > 0 else { throw UserError("--time-limit: expected seconds > 0, got \(timeLimit)") }
        guard gap.isFinite, gap >= 0, gap < 1 else { throw UserError("--gap: expected a fraction in [0, 1), got \(gap)") }
        guard let scheduleMode = ScheduleMode(rawValue: schedule) else {
            throw UserError("--schedule: expected fixed or optimize, got '\(schedule)'")
        }
        guard let addressMode = AddressMode(rawValue: addresses) else {
            throw UserError("--addresses: expected packed or joint, got '\(addresses)'")
        }
        guard window >= 1, window <= 1000 else { throw UserError("--window: expected 1...1000 steps, got \(window)") }
        let hardware = try loadTarget(target)
        let (values, flags) = try dimensions.bindings()
        guard case let .graph(lowered, _) = try loadInput(model, dimensions: values, flagNames: flags) else {
            throw UserError("'\(model)' is a target, not a model")
        }
        var graph = lowered.graph
        var weightNote = ""
        if weightDtypeTied && weightDtype == nil { throw UserError("--weight-dtype-tied needs --weight-dtype") }
        if let weightDtype {
            guard let dtype = DType(rawValue: weightDtype), WeightQuantization.formats.contains(dtype) else {
                throw UserError("--weight-dtype: expected \(WeightQuantization.formats.map(\.rawValue).joined(separator: ", ")), got '\(weightDtype)'")
            }
            do {
                let outcome = try WeightQuantization.apply(to: &graph, dtype: dtype, tied: weightDtypeTied)
                weightNote = "weights   \(outcome.converted.count) linear weights as \(dtype.rawValue)"
                    + (outcome.transposed.isEmpty ? "" : " (\(outcome.transposed.count) of them [in, out] in the checkpoint, stored transposed)")
                    + ": \(bytes(outcome.bytesBefore)) -> \(bytes(outcome.bytesAfter))"
                    + (outcome.kept.isEmpty ? "" : "; kept: \(outcome.kept.joined(separator: ", "))") + "\n"
            } catch {
                throw UserError("\(model)\(error.location.map { ":\($0)" } ?? ""): --weight-dtype \(weightDtype): \(error.message)")
            }
        }
        let kv = try kvRequest()
        var plan: Plan
        let clock = ContinuousClock()
        let started = clock.now
        var options = ILPOptions(timeLimit: timeLimit, gap: gap, window: window, addresses: addressMode)
        let progress = ProgressLine("compile")
        defer { progress.finish() }
        // The windows' objective: Σ slot time in µs (time) or bytes in alignment units (traffic).
        let unit = objective == .time ? "µs of slot time" : "× \(hardware.tiers[0].alignment) B moved"
        options.progress = { done, total, _, incumbent, bound in
            let gap = incumbent > 0 ? (incumbent - bound) / incumbent * 100 : 0
            progress.detail(String(format: "window %d/%d · incumbent %.5g · bound %.5g %@ · gap %.2f%%", done, total, incumbent, bound, unit, gap))
        }
        let place = { (cacheBytes: [Int: Int]) throws(PlanningError) -> Plan in
            progress.stage("placing (\(method.rawValue) + baselines)")
            return try Self.plan(graph, hardware, method, objective, options: options, schedule: scheduleMode, cacheBytes: cacheBytes).get()
        }
        if kv != nil { progress.stage("KV budget") }
        do {
            if let kv {
                plan = try KVJointPlanning.plan(graph: graph, target: hardware, policy: kv.policy, source: kv.source, profile: kv.profile, precision: kv.precision, place: place)
            } else {
                plan = try place([:])
            }
        } catch {
            throw UserError("\(model): cannot plan on '\(hardware.name)': \(error.message)")
        }
        PlacementPlanner.trace("planned at \(clock.now - started)")
        progress.stage("verifying the plan")
        let failures = PlanVerifier.check(plan)
        PlacementPlanner.trace("verified at \(clock.now - started)")
        guard failures.isEmpty else {
            progress.finish()
            printError("internal error: the \(method.rawValue) plan fails verification (nothing written):\n")
            for f in failures.prefix(10) { printError("  \(f)\n") }
            throw ExitCode(2)
        }
        let directory = output ?? "\(graph.name).kvplan"
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw UserError("cannot create '\(directory)': \(error.localizedDescription)")
        }
        // program.json first: a directory with plan.json always has the program it was planned for.
        try writeAtomically(String(decoding: try ProgramExport.program(graph).encoded(), as: UTF8.self), to: "\(directory)/program.json")
        // The schedule on tier arenas and its generated kernels, where the program has them
        // (Docs/codegen.md); stale ones from an earlier compile are removed when not.
        let program = ProgramExport.program(graph)
        progress.stage("emitting kernels and schedule")
        var codegenNote = ""
        var schedule: ExecutionSchedule?
        do {
            let emitted = try SwiftEmitter.artifacts(program: program, plan: plan)
            try writeAtomically(String(decoding: try emitted.schedule.encoded(), as: UTF8.self), to: "\(directory)/schedule.json")
            try writeAtomically(emitted.kernels, to: "\(directory)/Kernels.swift")
            try writeAtomically(emitted.step, to: "\(directory)/Schedule.swift")
            schedule = emitted.schedule
            let kernels = Set(emitted.step.split(separator: "\n").compactMap { $0.split(separator: "(").first?.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("k") })
            codegenNote = "codegen   Kernels.swift (\(kernels.count) kernels), Schedule.swift, schedule.json (\(emitted.schedule.actions.count) actions on \(emitted.schedule.arenas.count) tier arenas)\n"
                + (emitted.schedule.stagingBytes > 0 ? "staging   \(Self.stagingNote(emitted.schedule))\n" : "")
                + Self.layoutNote(emitted.schedule)
        } catch let error as CodegenError {
            for name in ["schedule.json", "Kernels.swift", "Schedule.swift"] { try? FileManager.default.removeItem(atPath: "\(directory)/\(name)") }
            codegenNote = "codegen   none: \(error.message)\n"
        }
        try writeAtomically(String(decoding: try WeightsManifest(program: program, plan: plan, schedule: schedule).encoded(), as: UTF8.self),
                            to: "\(directory)/weights.json")
        let summary = Self.summary(plan, directory: ".", seconds: nil) + weightNote + codegenNote
        try writeAtomically(summary, to: "\(directory)/summary.txt")
        try writeAtomically(String(decoding: try plan.encoded(), as: UTF8.self), to: "\(directory)/plan.json")
        progress.finish()
        print(Self.summary(plan, directory: directory, seconds: (clock.now - started) / .seconds(1)) + weightNote + codegenNote, terminator: "")
    }

    /// The KV budget pass's policy, budget source and profile, when any KV flag is given.
    private func kvRequest() throws -> (policy: KVPolicy, source: KVBudgetSource, profile: KVProfileSource, precision: KVPrecision)? {
        guard kvPolicy != nil || kvBudget != nil || kvRatio != nil || kvTokens != nil || profile != nil || profileFamily != nil || kvPrecision != nil else { return nil }
        let policy: KVPolicy
        if let name = kvPolicy {
            guard let p = KVPolicy(rawValue: name) else {
                throw UserError("--kv-policy: expected \(KVPolicy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            policy = p
        } else {
            policy = .exact
        }
        let given = [kvBudget != nil, kvRatio != nil, kvTokens != nil].filter { $0 }.count
        guard given <= 1 else { throw UserError("give at most one of --kv-budget, --kv-ratio, --kv-tokens") }
        var source = KVBudgetSource.target
        if let text = kvBudget {
            guard let b = TargetParser.parseQuantity(text, .bytes), b >= 0, b < 1e18 else {
                throw UserError("--kv-budget: expected a size such as 1.5GiB or 800MB, got '\(text)'")
            }
            source = .bytes(Int(b))
        }
        if let r = kvRatio {
            guard r.isFinite, r > 0, r <= 1 else { throw UserError("--kv-ratio: expected a fraction in (0, 1], got \(r)") }
            source = .ratio(r)
        }
        if let n = kvTokens {
            guard n >= 1 else { throw UserError("--kv-tokens: expected a token count ≥ 1, got \(n)") }
            source = .tokens(n)
        }
        guard profile == nil || profileFamily == nil else { throw UserError("give --profile or --profile-family, not both") }
        var chosen = KVProfileSource.standard
        if let name = profileFamily {
            guard let family = KVProfileFamily(rawValue: name) else {
                throw UserError("--profile-family: expected \(KVProfileFamily.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            chosen = .family(family)
        }
        if let path = profile { chosen = .given(try Self.loadProfile(path), name: path) }
        var precision = KVPrecision.any
        if let name = kvPrecision {
            guard let p = KVPrecision(rawValue: name) else {
                throw UserError("--kv-precision: expected \(KVPrecision.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            precision = p
            guard !KVPolicy.bitsOnly.contains(policy) else {
                throw UserError("--kv-precision applies to the token-allocation policies (exact, uniform, pyramid, prefixkv, cake), not to \(policy.rawValue)")
            }
        }
        return (policy, source, chosen, precision)
    }

    /// A profile file, decoded and validated, with positioned errors.
    static func loadProfile(_ path: String) throws -> KVProfile {
        guard let data = FileManager.default.contents(atPath: path) else { throw UserError("--profile: cannot read '\(path)'") }
        var loaded: KVProfile
        do {
            loaded = try JSONDecoder().decode(KVProfile.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw UserError("\(path): missing '\(key.stringValue)' at \(Self.jsonPath(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw UserError("\(path): \(context.debugDescription) at \(Self.jsonPath(context.codingPath))")
        } catch let DecodingError.dataCorrupted(context) {
            throw UserError("\(path): not valid JSON (\(context.underlyingError.map { "\($0)" } ?? context.debugDescription))")
        } catch {
            throw UserError("\(path): \(error)")
        }
        do { try loaded.validate() } catch { throw UserError("\(path): \(error.message)") }
        return loaded
    }

    /// `layers[2].keyError` from a decoding path.
    static func jsonPath(_ path: [any CodingKey]) -> String {
        guard !path.isEmpty else { return "the top level" }
        return path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }

    static func plan(_ graph: Graph, _ target: Target, _ method: PlacementMethod,
                     _ objective: PlacementObjective, options: ILPOptions = ILPOptions(),
                     schedule: ScheduleMode = .fixed, cacheBytes: [Int: Int] = [:]) -> Result<Plan, PlanningError> {
        Result { () throws(PlanningError) -> Plan in
            let problem = try PlacementProblem(graph: graph, target: target, cacheBytes: cacheBytes)
            PlacementPlanner.trace("problem: \(problem.steps.count) steps, \(problem.values.count) values")
            return try PlacementPlanner.plan(problem, method: method, objective: objective, options: options, schedule: schedule)
        }
    }

    /// The KV table: per layer what is kept at which bits, bytes and predicted fidelity; totals; baselines.
    static func kvSummary(_ kv: KVReport, target: PlanTarget) -> String {
        let scheme = kv.precision.map { ", precision \($0)" } ?? ""
        var out = "kv        \(kv.policy)\(scheme) (\(kv.status)), budget \(bytes(kv.budget)) from \(kv.budgetSource), profile \(kv.profile)"
        out += kv.profile == "default" ? " (no --profile: the documented default curves, Docs/kv-profile.md)\n" : "\n"
        func right(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        func left(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
        out += "          layer  sink+win   high  K/V bits  rest                   bytes    mass  fidelity  home\n"
        for l in kv.layers {
            let rest = KVLayerText.rest(l)
            out += "          " + right("\(l.layer)", 5) + "  " + right("\(l.sinkTokens + l.windowTokens)", 8) + "  " + right("\(l.highTokens)", 5)
            out += "  " + right("\(l.keyBitsHigh)/\(l.valueBitsHigh)", 8) + "  " + left(rest, 16) + right("\(l.bytes) B", 14)
            let home = KVLayerText.homes(l, tiers: target.tiers.map(\.name))
            out += String(format: "  %.4f  %.4f  ", l.retainedMass ?? 0, l.fidelity) + home + "\n"
        }
        let mass = kv.layers.reduce(0) { $0 + ($1.retainedMass ?? 0) } / Double(max(1, kv.layers.count))
        out += "          total \(bytes(kv.bytes)), mean retained mass \(String(format: "%.4f", mass)), predicted fidelity \(String(format: "%.4f", kv.fidelity))\n"
        if target.tiers.count > 2 {
            // KV outside the first backing tier is read over the slower link every step.
            let first = target.tiers[1].name
            var spilled = 0
            var spillLayers: [Int] = []
            for l in kv.layers {
                let off = (l.home ?? [:]).filter { $0.key != first && $0.key != target.tiers[0].name }.values.reduce(0, +)
                if off > 0 { spilled += off; spillLayers.append(l.layer) }
            }
            if spilled > 0 {
                let link = target.links.first { $0.to == first && $0.from != target.tiers[0].name }
                let cost = link.map { String(format: "; at least %.4g s per step over %@->%@", Double(spilled) / $0.bandwidth, $0.from, $0.to) } ?? ""
                out += "          \(bytes(spilled)) of KV lives beyond \(first) (layers \(ranges(spillLayers)))\(cost)\n"
            }
        }
        if let note = kv.replanned { out += "          \(note)\n" }
        for b in kv.baselines {
            if let f = b.fidelity, let by = b.bytes {
                out += "          vs " + left(b.policy, 9) + " \(bytes(by)), fidelity \(String(format: "%.4f (this layout %+.4f)", f, kv.fidelity - f))\n"
            } else {
                out += "          vs " + left(b.policy, 9) + " no layout within the budget\n"
            }
        }
        return out
    }

    /// `0–3, 7, 9–10` for sorted layer numbers.
    static func ranges(_ items: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < items.count {
            var j = i
            while j + 1 < items.count && items[j + 1] == items[j] + 1 { j += 1 }
            parts.append(i == j ? "\(items[i])" : "\(items[i])–\(items[j])")
            i = j + 1
        }
        return parts.joined(separator: ", ")
    }

    /// The summary line naming the weights stored in an interleaved layout (none: empty).
    static func layoutNote(_ schedule: ExecutionSchedule) -> String {
        let byLayout = Dictionary(grouping: schedule.weights.filter { $0.layout != nil }, by: { $0.layout! })
        guard !byLayout.isEmpty else { return "" }
        let parts = byLayout.keys.sorted().map { layout -> String in
            // A weight kept in parts counts once.
            let dtype = byLayout[layout]![0].dtype, count = Set(byLayout[layout]!.map(\.tensor)).count
            let total = Set(schedule.weights.filter { $0.dtype == dtype }.map(\.tensor)).count
            let parted = Set(byLayout[layout]!.filter { $0.part != nil }.map(\.tensor)).count
            return "\(count) of \(total) \(dtype) weights as \(layout)" + (parted > 0 ? " (\(parted) of them part by part)" : "")
        }
        return "layout    \(parts.joined(separator: ", ")): 16 rows interleaved block by block for the GEMV, the same bytes (Docs/codegen.md)\n"
    }

    /// The human summary: per-tier peaks, bytes per link, time, traffic, solver, baselines.
    static func summary(_ plan: Plan, directory: String, seconds: Double?) -> String {
        var out = "\(plan.model) on \(plan.target.name): \(plan.steps.count) steps, \(plan.values.count) values → \(directory)/plan.json, program.json\n"
        let gap = plan.solver.gap.map { String(format: ", window gap %.2f%%", $0 * 100) } ?? ""
        out += "solver    \(plan.solver.method) (\(plan.solver.status))\(gap)\(seconds.map { String(format: ", %.3f s", $0) } ?? "")\n"
        if let order = plan.solver.order { out += "order     \(order)\n" }
        if let kv = plan.kv { out += kvSummary(kv, target: plan.target) }
        for (t, tier) in plan.target.tiers.enumerated() {
            let peak = plan.estimate.peakBytes[t]
            out += "peak      \(tier.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(bytes(peak)) of \(bytes(tier.capacity))"
            out += String(format: " (%.1f%%)\n", tier.capacity > 0 ? 100 * Double(peak) / Double(tier.capacity) : 0)
        }
        for key in plan.estimate.linkBytes.keys.sorted() { out += "link      \(key.padding(toLength: 22, withPad: " ", startingAt: 0)) \(bytes(plan.estimate.linkBytes[key]!))\n" }
        out += String(format: "time      %.6f s estimated (compute alone %.6f s)\n", plan.estimate.seconds, plan.estimate.computeSeconds)
        if let simple = plan.estimate.lowerBoundSeconds, simple > 0 {
            let lp = plan.solver.lpBoundSeconds
            let bound = max(simple, lp ?? 0)
            let lpText = lp.map { String(format: "LP %.4g s (free-boundary windows), ", $0) } ?? ""
            out += String(format: "bound     %@compute/compulsory-transfer %.4g s; this plan is %.1f%% above the larger\n",
                          lpText, simple, 100 * (plan.estimate.seconds - bound) / bound)
        }
        out += "traffic   \(bytes(plan.estimate.nonCompulsoryBytes)) beyond the compulsory \(bytes(plan.estimate.compulsoryBytes))\n"
        let better = plan.objective == "traffic"
            ? plan.baselines.min { $0.estimate.nonCompulsoryBytes < $1.estimate.nonCompulsoryBytes }
            : plan.baselines.min { $0.estimate.seconds < $1.estimate.seconds }
        if let best = better {
            let e = best.estimate
            let timeCut = e.seconds > 0 ? 100 * (e.seconds - plan.estimate.seconds) / e.seconds : 0
            let trafficCut = e.nonCompulsoryBytes > 0 ? 100 * Double(e.nonCompulsoryBytes - plan.estimate.nonCompulsoryBytes) / Double(e.nonCompulsoryBytes) : 0
            out += String(format: "baseline  best other: %@, %.6f s, %@ non-compulsory (this plan: %.1f%% less time, %.1f%% less traffic)\n",
                          best.method, e.seconds, bytes(e.nonCompulsoryBytes), timeCut, trafficCut)
        }
        return out
    }

    /// What the staging area costs, when tiles read blocks the plan keeps in parts.
    static func stagingNote(_ schedule: ExecutionSchedule) -> String {
        let copied = schedule.actions.filter { $0.kind == "block" }.reduce(0) { $0 + $1.bytes! * $1.rows! }
        return "\(schedule.stagingBytes) B past '\(schedule.arenas[0].name)' capacity for blocks kept in parts; \(copied) B of in-tier copies per step (Docs/codegen.md)"
    }
}
