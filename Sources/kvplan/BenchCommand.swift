import ArgumentParser
import Foundation
import KVAlloc

/// `kvplan bench`: the benchmarks behind Docs/benchmarks.md (run them from a release build).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (build with -c release first).",
        subcommands: [AllocateBench.self, PlannerBench.self, KVBench.self, KernelBench.self, RunBench.self]
    )
}

/// `kvplan bench allocate`: every allocator on a generated suite of tight instances.
struct AllocateBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allocate",
        abstract: "Pack generated tight instances (LOAD = capacity, a perfect packing exists) with every allocator.",
        discussion: """
        For each family, size and seed, an instance is generated (see TightInstances) and every \
        algorithm is asked to fit it within capacity = LOAD. Reported per algorithm: the fraction \
        packed, the median and largest time of those packed, and height/LOAD for the rest.
        """
    )

    @Option(help: "Buffer counts, comma-separated.")
    var sizes: String = "100,200,300,400,500"

    @Option(name: .customLong("per-size"), help: "Instances per family and size (seeds 1...N).")
    var perSize: Int = 4

    @Option(help: "Instance families: guillotine, churn.")
    var families: String = "guillotine,churn"

    @Option(help: "Algorithms, comma-separated.")
    var algorithms: String = Algorithm.allCases.map(\.rawValue).joined(separator: ",")

    @Option(name: .customLong("time-limit"), help: "Seconds per instance for the exact search.")
    var timeLimit: Double = 10

    @Option(name: .customLong("disable"), help: "Switch off an exact-search technique (repeatable).")
    var disabled: [String] = []

    @Option(name: .customLong("write-instances"), help: "Also write each instance as CSV into this directory.")
    var instanceDirectory: String?

    @Option(name: .customLong("instances"), help: ArgumentHelp(
        "Run the CSV files of this directory instead of the generated suite.",
        discussion: "Capacity: --capacity if given, else the number in a name of the form NAME.CAPACITY.csv (MiniMalloc's benchmark files), else LOAD."))
    var instancesFrom: String?

    @Option(help: "Capacity for every file of --instances, e.g. 1048576 or 1MiB.")
    var capacity: String?

    @Option(name: .shortAndLong, help: "Write the Markdown report here (default: standard output).")
    var output: String?

    func run() throws {
        try reportingBadInput(execute)
    }

    private struct Run { var packed: Bool; var seconds: Double; var ratio: Double; var nodes: Int }

    private func execute() throws {
        if capacity != nil, instancesFrom == nil { throw UserError("--capacity applies only with --instances") }
        let counts = sizes.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) >= 2 && ($0 ?? 0) <= 100_000 }) else {
            throw UserError("--sizes: expected comma-separated buffer counts between 2 and 100000, got '\(sizes)'")
        }
        let familyList = try families.split(separator: ",").map { name in
            guard let f = TightInstances.Family(rawValue: String(name)) else {
                throw UserError("--families: unknown '\(name)' (expected guillotine, churn)")
            }
            return f
        }
        let algorithmList = try algorithms.split(separator: ",").map { name in
            guard let a = Algorithm(rawValue: String(name)) else {
                throw UserError("--algorithms: unknown '\(name)' (expected \(Algorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return a
        }
        guard perSize >= 1, perSize <= 1000 else { throw UserError("--per-size: expected 1...1000, got \(perSize)") }
        guard timeLimit.isFinite, timeLimit > 0 else { throw UserError("--time-limit: expected positive seconds") }
        let options = try searchOptions(disabling: disabled)
        if instancesFrom != nil, instanceDirectory != nil {
            throw UserError("--instances and --write-instances cannot be combined (the instances are already files)")
        }
        if let dir = instanceDirectory {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }

        var instances: [(group: String, label: String, problem: Problem)] = []
        if let dir = instancesFrom {
            instances = try loadInstances(dir)
        } else {
            for family in familyList {
                for count in counts.map({ $0! }) {
                    let group = "\(family.rawValue) \(count)"
                    for seed in 1...perSize {
                        var problem = TightInstances.make(family, count: count, seed: UInt64(seed))
                        problem.capacity = problem.load
                        instances.append((group, "\(group) seed \(seed)", problem))
                        if let dir = instanceDirectory {
                            try writeAtomically(AllocationCSV.write(problem), to: "\(dir)/\(family.rawValue)-\(count)-\(seed).csv")
                        }
                    }
                }
            }
        }

        var runs: [Algorithm: [Run]] = [:]
        var perGroup: [String: [Algorithm: [Run]]] = [:]
        var groupOrder: [String] = []
        let progress = ProgressLine("bench allocate")
        defer { progress.finish() }
        var done = 0, packed = 0
        for (group, label, problem) in instances {
            if !groupOrder.contains(group) { groupOrder.append(group) }
            let capacity = problem.capacity!
            for algorithm in algorithmList {
                progress.stage("\(label) \(algorithm.rawValue)", "\(done)/\(instances.count * algorithmList.count) runs, \(packed) packed")
                let r = try Allocator.allocate(problem, goal: .fit(capacity: capacity), algorithm: algorithm,
                                               options: options, timeLimit: .milliseconds(Int64(timeLimit * 1000)))
                guard Validator.isValid(r.solution, for: problem, capacity: .max) else {
                    printError("internal error: invalid \(algorithm.rawValue) packing on \(label)\n")
                    throw ExitCode(2)
                }
                let seconds = Double(r.elapsed.components.seconds) + Double(r.elapsed.components.attoseconds) * 1e-18
                let run = Run(packed: r.verdict == .fits, seconds: seconds, ratio: Double(r.height) / Double(capacity), nodes: r.nodes)
                runs[algorithm, default: []].append(run)
                perGroup[group, default: [:]][algorithm, default: []].append(run)
                done += 1
                if run.packed { packed += 1 }
            }
        }

        progress.finish()
        var report = "| algorithm | instances | packed within capacity | median time (all) | median time (packed) | max time (packed) | median height/capacity (not packed) | max height/capacity (not packed) |\n"
        report += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        for algorithm in algorithmList {
            report += row(algorithm.rawValue, runs[algorithm] ?? [])
        }
        report += "\nPer family and size (\(algorithmList.contains(.exact) ? "exact search" : algorithmList[0].rawValue)):\n\n"
        report += "| instances | count | packed within capacity | median time (all) | median time (packed) | max time (packed) | median height/capacity (not packed) | max height/capacity (not packed) |\n"
        report += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        let focus = algorithmList.contains(.exact) ? Algorithm.exact : algorithmList[0]
        for group in groupOrder { report += row(group, perGroup[group]?[focus] ?? []) }
        if let output { try writeAtomically(report, to: output) } else { print(report, terminator: "") }
    }

    /// Reads every `*.csv` of `directory` (sorted by name), each with its capacity.
    private func loadInstances(_ directory: String) throws -> [(group: String, label: String, problem: Problem)] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw UserError("--instances: cannot read directory '\(directory)'")
        }
        let files = names.filter { $0.hasSuffix(".csv") }.sorted()
        guard !files.isEmpty else { throw UserError("--instances: no .csv files in '\(directory)'") }
        let fixed = try capacity.map(parseCapacity)
        return try files.map { name in
            let path = "\(directory)/\(name)"
            var problem = try loadAllocationProblem(path)
            let parts = name.dropLast(4).split(separator: ".")
            let fromName = parts.count >= 2 ? Int(parts.last!) : nil
            problem.capacity = fixed ?? fromName ?? problem.load
            let label = String(name.dropLast(4))
            return (label, label, problem)
        }
    }

    private func row(_ name: String, _ runs: [Run]) -> String {
        let packed = runs.filter(\.packed), rest = runs.filter { !$0.packed }
        func median(_ xs: [Double]) -> Double? {
            guard !xs.isEmpty else { return nil }
            let s = xs.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        func time(_ x: Double?) -> String { x.map { $0 < 1 ? String(format: "%.1f ms", $0 * 1000) : String(format: "%.2f s", $0) } ?? "–" }
        func ratio(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "–" }
        return "| \(name) | \(runs.count) | \(packed.count)/\(runs.count) (\(runs.isEmpty ? 0 : 100 * packed.count / runs.count)%) | "
            + "\(time(median(runs.map(\.seconds)))) | \(time(median(packed.map(\.seconds)))) | \(time(packed.map(\.seconds).max())) | "
            + "\(ratio(median(rest.map(\.ratio)))) | \(ratio(rest.map(\.ratio).max())) |\n"
    }
}
