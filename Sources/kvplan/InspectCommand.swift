import ArgumentParser
import Foundation
import KVArtifact
import KVInspect

/// `kvplan inspect DIR`: a plan at a glance, or one op / tensor followed through every slot.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a compiled plan: tiers, links, time vs baselines, the KV layout, costliest transfers and ops.",
        discussion: """
        Reads DIR/plan.json (written by `kvplan compile`). --op NAME follows one op through its steps \
        (every value it reads and writes: where it lives, what moves in its slots and why); --tensor NAME \
        follows one tensor (all its tiles) through every slot. --diff OTHER compares this plan (A) with OTHER's \
        (B): totals, the tensors whose placement or traffic changed, the ops whose time changed, the KV \
        layers whose layout changed. --json prints the same as JSON. --svg FILE draws \
        the memory timeline of every tier, occupancy against capacity and the per-layer KV bars; --html FILE \
        writes one self-contained page with the summary, the timeline and sortable tables (Docs/inspect.md). \
        Exit codes: 0 success, 1 unreadable plan or unknown name, 64 bad usage.
        """
    )

    @Argument(help: "An artifact directory written by `kvplan compile`.")
    var directory: String

    @Flag(help: "Print JSON instead of tables.")
    var json = false

    @Option(help: "Follow this op (an op name from the plan; tiles `name#j` are grouped).")
    var op: String?

    @Option(help: "Follow this tensor (all of its tiles) through every slot.")
    var tensor: String?

    @Option(help: "How many transfers and ops the costliest lists keep.")
    var top = 10

    @Option(help: ArgumentHelp("Write the memory timeline per tier, occupancy and KV bars as SVG to FILE.", valueName: "file"))
    var svg: String?

    @Option(help: ArgumentHelp("Compare with the plan in OTHER (an artifact directory): totals, tensors that moved, ops, KV layers.", valueName: "other"))
    var diff: String?

    @Option(help: ArgumentHelp("Write a self-contained HTML report (summary, timeline, sortable ops/tensors/transfers) to FILE.", valueName: "file"))
    var html: String?

    func validate() throws {
        if op != nil && tensor != nil { throw ValidationError("--op and --tensor: give one of them") }
        if (svg != nil || html != nil) && (json || op != nil || tensor != nil) {
            throw ValidationError("--svg and --html draw the whole plan: give them without --json, --op or --tensor")
        }
        if diff != nil && (op != nil || tensor != nil || svg != nil || html != nil) {
            throw ValidationError("--diff compares whole plans: give it without --op, --tensor, --svg or --html")
        }
        if top < 0 { throw ValidationError("--top must be 0 or more, got \(top)") }
    }

    func run() throws { try reportingBadInput(execute) }

    private func execute() throws {
        let plan = try ArtifactDirectory(path: directory).plan()
        if let other = diff {
            let otherPlan: Plan
            do { otherPlan = try ArtifactDirectory(path: other).plan() } catch let error as UserError { throw UserError("--diff: \(error.message)") }
            let comparison = PlanDiff(plan, otherPlan, labelA: directory, labelB: other, limit: top)
            try emit(comparison, text: InspectionText.render(comparison))
            return
        }
        if svg != nil || html != nil {
            // Both drawn and both destinations checked before either file is written.
            let outputs = [svg.map { ($0, TimelineSVG.render(plan)) }, html.map { ($0, HTMLReport.render(plan)) }].compactMap { $0 }
            for (path, _) in outputs {
                let parent = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
                    throw UserError("cannot write '\(path)': directory '\(parent)' does not exist (nothing written)")
                }
            }
            for (path, text) in outputs {
                try writeAtomically(text, to: path)
                printError("wrote \(path)\n")
            }
            return
        }
        if let name = op {
            guard let trace = PlanTrace.op(name, in: plan) else { throw unknown("op", name, PlanTrace.opNames(plan)) }
            try emit(trace, text: InspectionText.render(trace))
        } else if let name = tensor {
            guard let trace = PlanTrace.tensor(name, in: plan) else { throw unknown("tensor", name, PlanTrace.tensorNames(plan)) }
            try emit(trace, text: InspectionText.render(trace))
        } else {
            let inspection = PlanInspection(plan, limit: top)
            try emit(inspection, text: InspectionText.render(inspection))
        }
    }

    private func unknown(_ kind: String, _ name: String, _ known: [String]) -> UserError {
        let close = NameSuggestions.nearest(name, in: known)
        let hint = close.isEmpty ? " (\(known.count) \(kind)s; e.g. \(known.prefix(3).joined(separator: ", ")))"
                                 : "; did you mean \(close.map { "'\($0)'" }.joined(separator: ", "))?"
        return UserError("\(directory)/plan.json has no \(kind) '\(name)'\(hint)")
    }

    private func emit<T: Encodable>(_ value: T, text: String) throws {
        if json {
            var data = try ArtifactJSON.encode(value)
            data.append(0x0A)
            FileHandle.standardOutput.write(data)
        } else {
            print(text, terminator: "")
        }
    }
}
