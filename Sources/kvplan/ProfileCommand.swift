import ArgumentParser
import Foundation
import KVArtifact
import KVGraph
import KVPlanner
import KVRuntime

/// `kvplan profile`: a model's measured KV profile (Docs/kv-profile.md) from real weights and text.
struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a model's KV profile (retention per layer and KV head, K/V quantisation error) over a text.",
        discussion: """
        Runs the reference interpreter with a full-precision cache over consecutive windows of \
        --context bytes of the text (byte-level vocabulary), records at every decode step with at \
        least 32 cached tokens how much attention mass the most attended fraction of tokens \
        captures, per layer and KV head (the GQA group's query heads averaged), and at the end of \
        each window the relative error of the cached keys and values quantised at 8, 4 and 2 bits \
        in the runtime's packed layout. Writes a profile `kvplan compile --profile` reads.
        """
    )

    @OptionGroup var input: ByteModelInput

    @Option(help: "Windows measured at most.")
    var windows: Int = 4

    @Option(name: .shortAndLong, help: "Write the profile here.")
    var output: String

    @Option(help: ArgumentHelp("Also measure per-layer sensitivity: the loss increase when only one layer keeps this fraction of its tokens (fp16, the rest evicted), per unit of fidelity the profile predicts it loses; written as layerWeights (0: off).", valueName: "fraction"))
    var sensitivity: Double = 0

    @Option(help: "Worker threads for --sensitivity's runs.")
    var threads: Int = 2

    func run() throws {
        try reportingBadInput(execute)
    }

    private func execute() throws {
        guard windows >= 1 else { throw UserError("--windows: expected at least 1, got \(windows)") }
        guard sensitivity.isFinite, sensitivity >= 0, sensitivity < 1 else {
            throw UserError("--sensitivity: expected a fraction of the tokens in (0, 1), or 0 for off; got \(sensitivity)")
        }
        guard (1...64).contains(threads) else { throw UserError("--threads: expected 1...64, got \(threads)") }
        // With --sensitivity the cache is bound to the window, so the probe's token fraction is of the tokens streamed.
        let loaded = try input.load(command: "profile", minimumContext: 33, bindContext: sensitivity > 0)
        let (graph, program, values, bytes, window, attention) = (loaded.graph, loaded.program, loaded.weights, loaded.bytes, loaded.window, loaded.attention)
        if sensitivity > 0 { _ = try LayerSensitivity.uniformLayouts(graph: graph, ratio: sensitivity, flag: sensitivity) }
        let first = program.ops[attention[0]]
        let heads = first.int("heads") ?? 1, kvHeads = first.int("kv_heads") ?? heads
        let box = MeterBox(KVProfileMeter(layers: attention.count, kvHeads: kvHeads, group: heads / kvHeads))
        let layerOf: [Int: Int] = Dictionary(uniqueKeysWithValues: attention.enumerated().map { ($0.element, $0.offset) })
        let count = min(windows, bytes.count / window)
        let progress = ProgressLine("profile")
        progress.stage("calibration windows")
        let start = ContinuousClock.now
        do {
            for w in 0..<count {
                var interpreter = try ReferenceInterpreter(program: program, weights: values)
                interpreter.observeAttention = { (op: Int, weights: [[Double]]) -> Void in box.meter.observe(layer: layerOf[op]!, weights: weights) }
                var generator = try Generator(interpreter)
                for p in 0..<window {
                    _ = try generator.feed(Int(bytes[w * window + p]), position: p)
                    if p % 64 == 0 { progress.detail("window \(w + 1)/\(count) · token \(p)/\(window)") }
                }
                let state = generator.interpreter!
                for (l, i) in attention.enumerated() {
                    let op = program.ops[i]
                    let channels = program.tensors[op.operands[3]].shape[2] * program.tensors[op.operands[3]].shape[3]
                    let n = state.lengths[op.operands[3]]![0]
                    box.meter.observeCache(layer: l, keys: Array(state.values[op.operands[3]][0..<n * channels]),
                                           values: Array(state.values[op.operands[4]][0..<n * channels]), tokens: n, channels: channels)
                }
            }
        } catch {
            throw UserError("\(input.model): \(error.message)")
        }
        progress.finish()
        let meter = box.meter
        var layers: [KVProfile.Layer] = []
        let retention = meter.retention, errorsPerLayer = meter.errors
        for l in attention.indices {
            guard let curves = retention[l], let errors = errorsPerLayer[l] else {
                throw UserError("layer \(l): nothing measured (windows too short?)")
            }
            var mean: [[Double]] = []
            for (i, x) in KVProfileMeter.fractions.enumerated() {
                let total: Double = curves.reduce(0.0) { $0 + $1[i][1] }
                mean.append([x, (total / Double(curves.count) * 1e6).rounded() / 1e6])
            }
            layers.append(.init(retention: mean, heads: curves, keyError: errors.keys, valueError: errors.values))
        }
        var profile = KVProfile(model: graph.name, referenceContext: window, layers: layers)
        var sensitivityRows: [String] = []
        if sensitivity > 0 {
            let windowBytes = (0..<count).map { Array(bytes[($0 * window)..<(($0 + 1) * window)]) }
            let lockstep = try input.lockstepProgram(loaded, sequences: windowBytes.count)
            let measured = try LayerSensitivity.measure(profile: profile, graph: graph, program: program, lockstep: lockstep, weights: values, windows: windowBytes,
                                                        fraction: sensitivity, threads: threads, progress: progress)
            profile.layerWeights = measured.weights
            sensitivityRows = measured.rows
            progress.finish()
        }
        try writeAtomically(Self.json(profile), to: output)
        let seconds: Double = (ContinuousClock.now - start) / .seconds(1)
        printError(String(format: "profile: %d × %d-byte windows, %d layers × %d KV heads, %.1f s → %@\n", count, window, layers.count, kvHeads, seconds, output))
        for (l, layer) in layers.enumerated() {
            let r = layer.retention!
            print(String(format: "layer %d: R(10%%) %.3f, R(30%%) %.3f; key error 8/4/2-bit %.4f/%.4f/%.4f, value %.4f/%.4f/%.4f", l,
                         r[4][1], r[6][1], layer.keyError["8"]!, layer.keyError["4"]!, layer.keyError["2"]!,
                         layer.valueError["8"]!, layer.valueError["4"]!, layer.valueError["2"]!))
        }
        for row in sensitivityRows { print(row) }
    }
}

extension Profile {
    /// The profile as JSON in Docs/kv-profile.md's layout: one line per curve, keys in a fixed order.
    static func json(_ p: KVProfile) -> String {
        func number(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)" }
        func curve(_ c: [[Double]]) -> String { "[" + c.map { "[\(number($0[0])), \(number($0[1]))]" }.joined(separator: ", ") + "]" }
        func errors(_ e: [String: Double]) -> String {
            "{" + e.keys.sorted { Int($0)! > Int($1)! }.map { "\"\($0)\": \(number(e[$0]!))" }.joined(separator: ", ") + "}"
        }
        let name = String(decoding: try! JSONEncoder().encode(p.model), as: UTF8.self)
        var out = "{\n  \"version\": \(p.version),\n  \"model\": \(name),\n  \"referenceContext\": \(p.referenceContext),\n  \"layers\": [\n"
        out += p.layers.map { layer in
            var fields: [String] = []
            if let r = layer.retention { fields.append("      \"retention\": \(curve(r))") }
            if let heads = layer.heads { fields.append("      \"heads\": [\n" + heads.map { "        " + curve($0) }.joined(separator: ",\n") + "\n      ]") }
            fields.append("      \"keyError\": \(errors(layer.keyError))")
            fields.append("      \"valueError\": \(errors(layer.valueError))")
            return "    {\n" + fields.joined(separator: ",\n") + "\n    }"
        }.joined(separator: ",\n")
        out += "\n  ]"
        if let w = p.layerWeights { out += ",\n  \"layerWeights\": [" + w.map(number).joined(separator: ", ") + "]" }
        return out + "\n}\n"
    }
}

/// The meter the interpreter's attention observer adds to (a reference, so the closure can).
private final class MeterBox {
    var meter: KVProfileMeter
    init(_ meter: KVProfileMeter) { self.meter = meter }
}
