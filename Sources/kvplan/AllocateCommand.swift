import ArgumentParser
import Foundation
import KVInspect
import KVAlloc
import KVPlanner

/// `kvplan allocate`: offsets for buffers with lifetimes, within a capacity or as low as possible.
struct Allocate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Assign offsets to buffers with lifetimes (static allocation).",
        discussion: """
        Input: CSV with header 'id,lower,upper,size' (optional columns 'alignment', 'fixed'); \
        lifetimes are half-open [lower, upper). Output (-o): 'id,lower,upper,size,offset'.

        With --capacity the allocator fits the buffers within it, proves that no packing fits, \
        or reports that none was found within the time limit. Without it (or with --minimize) \
        it minimises the height and reports the lower bound (LOAD) and the gap.

        Exit codes: 0 capacity met (or minimising), 3 no packing within the capacity, \
        1 bad input, 64 bad usage.
        """
    )

    @Argument(help: "The buffers (CSV).")
    var buffers: String

    @Option(help: "Bytes available, e.g. 1048576 or 1MiB.")
    var capacity: String?

    @Flag(help: "Minimise the height (the default when no capacity is given).")
    var minimize = false

    @Option(name: .customLong("time-limit"), help: "Seconds the exact search may take.")
    var timeLimit: Double = 10

    @Option(help: "greedy-size, greedy-conflicts, best-fit or exact.")
    var algorithm: String = "exact"

    @Option(name: .customLong("disable"), help: ArgumentHelp(
        "Switch off an exact-search technique (repeatable): \(SearchOptions.techniqueNames.joined(separator: ", ")).",
        valueName: "technique"))
    var disabled: [String] = []

    @Option(help: "Static preorders tried in turn, e.g. WAT,TAW,TWA (letters: W width, A area, T section total, Z size, C sections, O overlaps, L start, U end).")
    var preorder: String?

    @Option(name: .shortAndLong, help: "Write the placed buffers here ('-' for standard output).")
    var output: String?

    func run() throws {
        do {
            try execute()
        } catch let e as UserError {
            printError("error: \(e.message)\n")
            throw ExitCode(1)
        }
    }

    private func execute() throws {
        guard let algorithm = Algorithm(rawValue: algorithm) else {
            throw UserError("--algorithm: unknown '\(self.algorithm)' (expected \(Algorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard timeLimit.isFinite, timeLimit > 0, timeLimit <= 1e6 else {
            throw UserError("--time-limit: expected a positive number of seconds, got \(timeLimit)")
        }
        var options = try searchOptions(disabling: disabled)
        if let preorder {
            let orders = preorder.split(separator: ",").map { Preorder(String($0)) }
            guard !orders.isEmpty, orders.allSatisfy({ $0 != nil }) else {
                throw UserError("--preorder: expected comma-separated letters from WATZCOLU, got '\(preorder)'")
            }
            options.preorders = orders.map { $0! }
        }
        let capacityBytes = try capacity.map(parseCapacity)
        var problem = try loadAllocationProblem(buffers)
        problem.capacity = capacityBytes
        let goal: Goal = (minimize || capacityBytes == nil) ? .minimize : .fit(capacity: capacityBytes!)

        let result: AllocationResult
        let progress = ProgressLine("allocate")
        progress.stage("\(algorithm.rawValue) search", "\(problem.buffers.count) buffers")
        do {
            defer { progress.finish() }
            result = try Allocator.allocate(problem, goal: goal, algorithm: algorithm, options: options,
                                            timeLimit: .milliseconds(Int64(timeLimit * 1000))) { p in
                let gap = p.lowerBound > 0 ? Double(p.bestHeight - p.lowerBound) / Double(p.lowerBound) * 100 : 0
                progress.stage(p.stage == "fit" ? "searching within the capacity" : "lowering the height",
                               "trying \(p.probe) · best \(p.bestHeight) · bound \(p.lowerBound) · gap "
                               + String(format: "%.2f%%", gap) + " · \(grouped(p.nodes)) nodes")
            }
        } catch {
            throw UserError("\(buffers): \(error)")
        }
        // Never hand out a packing the independent validator rejects.
        let violations = Validator.violations(of: result.solution, for: problem, capacity: nil)
        guard violations.isEmpty else {
            printError("internal error: the \(algorithm.rawValue) packing is invalid: \(violations.prefix(3).map(\.description).joined(separator: "; "))\n")
            throw ExitCode(2)
        }

        let summaryToStandardError = output == "-"
        if let output {
            let csv = AllocationCSV.write(problem, result.solution)
            if output == "-" { print(csv, terminator: "") } else { try writeAtomically(csv, to: output) }
        }
        let summary = Self.summary(result, problem: problem, algorithm: algorithm, goal: goal)
        if summaryToStandardError { printError(summary) } else { print(summary, terminator: "") }
        if case .fit = goal, result.verdict != .fits { throw ExitCode(3) }
    }

    static func summary(_ r: AllocationResult, problem: Problem, algorithm: Algorithm, goal: Goal) -> String {
        let zero = problem.buffers.filter { $0.size == 0 }.count
        var lines: [(String, String)] = [
            ("buffers", "\(grouped(problem.buffers.count))" + (zero > 0 ? " (\(zero) zero-sized)" : "")),
            ("LOAD", bytes(r.load)),
            ("height", bytes(r.height) + (r.load > 0 ? String(format: "  = %.4f × LOAD", Double(r.height) / Double(r.load)) : "")),
        ]
        if let capacity = r.capacity {
            lines.append(("capacity", bytes(capacity) + (r.capacityMet ? "  met" : "  NOT met")))
        }
        let verdict: String
        switch r.verdict {
        case .fits: verdict = "fits within the capacity"
        case .infeasible:
            verdict = r.capacity.map { $0 < r.load ? "no packing fits: the capacity is below LOAD" : "no packing fits: proven by exhaustive search" } ?? "infeasible"
        case .notFound:
            verdict = algorithm == .exact ? "no packing within the capacity found before the time limit (best packing written)"
                : "\(algorithm.rawValue) found no packing within the capacity (a heuristic; try --algorithm exact)"
        case .optimal: verdict = "optimal (height = proven lower bound)"
        case .bestFound: verdict = String(format: "best found; proven lower bound %@, gap %.2f%%", grouped(r.lowerBound), r.gap * 100)
        }
        lines.append(("verdict", verdict))
        let seconds = Double(r.elapsed.components.seconds) + Double(r.elapsed.components.attoseconds) * 1e-18
        lines.append(("time", String(format: "%.3f s", seconds) + " (\(algorithm.rawValue)" + (algorithm == .exact ? ", \(grouped(r.nodes)) nodes)" : ")")))
        return lines.map { $0.0.padding(toLength: 10, withPad: " ", startingAt: 0) + $0.1 + "\n" }.joined()
    }
}

/// The default search options with the `--disable` techniques switched off.
func searchOptions(disabling names: [String]) throws -> SearchOptions {
    var options = SearchOptions.default
    for name in names {
        guard let changed = options.disabling(name) else {
            throw UserError("--disable: unknown technique '\(name)' (expected \(SearchOptions.techniqueNames.joined(separator: ", ")))")
        }
        options = changed
    }
    return options
}

/// Parses a `--capacity` value: whole bytes, with an optional unit (`1048576`, `1MiB`).
func parseCapacity(_ text: String) throws -> Int {
    guard let value = TargetParser.parseQuantity(text, .bytes), value >= 0, value == value.rounded(), value < 9e15 else {
        throw UserError("--capacity: expected a whole number of bytes such as 1048576 or 1MiB, got '\(text)'")
    }
    return Int(value)
}

/// Reads an allocation CSV, turning format errors into `path:line:column: message`.
func loadAllocationProblem(_ path: String) throws -> Problem {
    let text = try readText(path)
    do { return try AllocationCSV.parse(text) } catch {
        throw UserError("\(path):\(error.line):\(error.column): \(error.message)")
    }
}
