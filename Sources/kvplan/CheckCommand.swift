import ArgumentParser
import Foundation
import KVInspect
import KVGraph
import KVPlanner

/// `kvplan check`: parse, check and summarise a model or a target.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a .graph, a Hugging Face config.json or a .hw target, and summarise it.",
        discussion: """
        For a model: op and tensor counts, parameters, weight bytes by dtype, KV \
        bytes per token per layer and in total at the context length, the largest \
        single-op working set and the peak of live activation bytes over the \
        operator order (the LOAD lower bound of any memory plan).
        """
    )

    @Argument(help: "A .graph file, a Hugging Face config.json, or a .hw target.")
    var file: String

    @OptionGroup var dimensions: ModelOptions

    @Flag(help: "Print the summary as JSON.")
    var json = false

    @Flag(name: .customLong("dump-ir"), help: "Print the checked IR as text instead of the summary.")
    var dumpIR = false

    @Flag(name: .customLong("no-warnings"), help: "Do not print warnings.")
    var noWarnings = false

    func validate() throws {
        if json && dumpIR { throw ValidationError("--json and --dump-ir cannot be combined") }
    }

    func run() throws {
        let (values, flags) = try dimensions.bindings()
        let input: InputFile
        do {
            input = try loadInput(file, dimensions: values, flagNames: flags)
        } catch let error as DiagnosticError {
            printError(error.description)
            let n = error.diagnostics.filter { $0.severity == .error }.count
            printError("\(n) error\(n == 1 ? "" : "s")\n")
            throw ExitCode(1)
        } catch let error as UserError {
            printError("error: \(error.message)\n")
            throw ExitCode(1)
        }
        switch input {
        case let .target(target):
            if !values.isEmpty {
                printError("error: --context, --batch and --dim apply to models, not to targets\n")
                throw ExitCode(1)
            }
            if dumpIR { printError("error: --dump-ir applies to models, not to targets\n"); throw ExitCode(1) }
            print(json ? try encodeJSON(TargetSummary(target)) : formatTarget(target), terminator: "")
        case let .graph(lowered, source):
            if !noWarnings && !lowered.warnings.isEmpty {
                printError(DiagnosticRenderer.render(lowered.warnings, in: source))
            }
            if dumpIR {
                print(IRPrinter.print(lowered.graph), terminator: "")
            } else {
                let summary = GraphSummary(lowered.graph, warnings: lowered.warnings.count)
                print(json ? try encodeJSON(summary) : formatSummary(summary, path: file), terminator: "")
            }
        }
    }
}

/// Sorted-key, pretty JSON with a trailing newline.
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
}

/// A target as JSON (dtype keys as strings).
struct TargetSummary: Encodable {
    var name: String
    var tiers: [MemoryTier]
    var links: [MemoryLink]
    var compute: [String: Double]

    init(_ t: Target) {
        name = t.name
        tiers = t.tiers
        links = t.links
        compute = Dictionary(uniqueKeysWithValues: t.compute.map { ($0.key.rawValue, $0.value) })
    }
}

func formatTarget(_ t: Target) -> String {
    var out = "target \(t.name)\n\ntiers (fastest first)\n"
    var rows = [["  tier", "capacity", "bandwidth", "alignment", "latency"]]
    for tier in t.tiers {
        rows.append(["  \(tier.name)", bytes(tier.capacity), "\(siCount(tier.bandwidth))B/s", "\(tier.alignment) B",
                     seconds(tier.latency)])
    }
    out += table(rows)
    out += "\nlinks\n"
    rows = [["  from", "to", "bandwidth", "latency"]]
    for l in t.links { rows.append(["  \(l.from)", l.to, "\(siCount(l.bandwidth))B/s", seconds(l.latency)]) }
    out += table(rows)
    out += "\ncompute\n"
    rows = t.compute.sorted { $0.key < $1.key }.map { ["  \($0.key.rawValue)", "\(siCount($0.value))\($0.key.isFloatingPoint ? "FLOP" : "OP")/s"] }
    out += table(rows)
    return out
}

func seconds(_ s: Double) -> String {
    if s == 0 { return "0" }
    if s < 1e-6 { return String(format: "%g ns", s * 1e9) }
    if s < 1e-3 { return String(format: "%g us", s * 1e6) }
    if s < 1 { return String(format: "%g ms", s * 1e3) }
    return String(format: "%g s", s)
}

func formatSummary(_ s: GraphSummary, path: String) -> String {
    var out = "\(s.graph)  (\(path))\n"
    if !s.dimensions.isEmpty {
        out += "  dimensions  " + s.dimensions.map { "\($0.name)=\($0.value)" }.joined(separator: ", ") + "\n"
    }
    let kinds = s.opsByKind.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) \($0.value)" }
    out += "  ops         \(grouped(s.ops))  (\(kinds.joined(separator: ", ")))\n"
    let tk = TensorKind.allCases.compactMap { k in s.tensorsByKind[k.rawValue].map { "\($0) \(k.rawValue)" } }
    out += "  tensors     \(grouped(s.tensors))  (\(tk.joined(separator: ", ")))\n"
    out += "  parameters  \(grouped(s.parameters))\n"
    out += "  weights     \(bytes(s.weightBytes))\n"
    if s.weightsByDType.count > 1 || (s.weightsByDType.first.map { _ in true } ?? false) {
        var rows = [["    dtype", "tensors", "parameters", "bytes"]]
        for g in s.weightsByDType { rows.append(["    \(g.dtype)", grouped(g.tensors), grouped(g.parameters), grouped(g.bytes)]) }
        out += table(rows, rightAligned: [1, 2, 3])
    }
    out += "  FLOPs       \(grouped(s.flops)) per step (\(siCount(Double(s.flops)))FLOP)\n"
    if s.kvCache.layers.isEmpty {
        out += "  KV cache    none (no 'cache' tensors)\n"
    } else {
        out += "  KV cache    \(fractionalBytes(s.kvCache.bytesPerToken)) B per token over \(s.kvCache.layers.count) layers; \(bytes(s.kvCache.totalBytes)) in total\n"
        var rows = [["    layer", "bytes/token", "tokens", "bytes"]]
        let allSame = Set(s.kvCache.layers.map { "\($0.bytesPerToken)/\($0.tokens)" }).count == 1
        let shown = allSame && s.kvCache.layers.count > 4 ? [s.kvCache.layers[0]] : s.kvCache.layers
        for l in shown {
            rows.append(["    \(allSame && shown.count == 1 && s.kvCache.layers.count > 1 ? "each of \(s.kvCache.layers.count)" : l.layer)",
                         fractionalBytes(l.bytesPerToken), grouped(l.tokens), grouped(l.bytes)])
        }
        out += table(rows, rightAligned: [1, 2, 3])
    }
    if let w = s.largestWorkingSet {
        out += "  largest op  \(w.kind) '\(w.result)' at \(w.location) (step \(w.step)): \(bytes(w.bytes)) of operands and results\n"
    }
    if let p = s.peakActivations {
        out += "  peak live   \(bytes(p.bytes)) of activations at step \(p.step) (\(p.kind) '\(p.result)', \(p.location)); the LOAD lower bound\n"
    }
    if s.planningOnlyOps > 0 {
        out += "  note        \(s.planningOnlyOps) opaque op\(s.planningOnlyOps == 1 ? "" : "s"): plannable, not executable by the runtime\n"
    }
    if s.warnings > 0 { out += "  warnings    \(s.warnings)\n" }
    return out
}
