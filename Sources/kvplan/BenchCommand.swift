import ArgumentParser
import Foundation
import KVAlloc

/// `kvplan bench`: the benchmarks behind Docs/benchmarks.md (run them from a release build).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (build with -c release first).",
        subcommands: [AllocateBench.self]
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

    @Option(help: "Algorithms, comma-separated (default: all).")
    var algorithms: String = Algorithm.allCases.map(\.rawValue).joined(separator: ",")

    @Option(name: .customLong("time-limit"), help: "Seconds per instance for the exact search.")
    var timeLimit: Double = 10

    @Option(name: .customLong("disable"), help: "Switch off an exact-search technique (repeatable).")
    var disabled: [String] = []

    @Option(name: .customLong("write-instances"), help: "Also write each instance as CSV into this directory.")
    var instanceDirectory: String?

    @Option(name: .shortAndLong, help: "Write the Markdown report here (default: standard output).")
    var output: String?

    func run() throws {
        do { try execute() } catch let e as UserError {
            printError("error: \(e.message)\n")
            throw ExitCode(1)
        }
    }

    private struct Run { var packed: Bool; var seconds: Double; var ratio: Double; var nodes: Int }

    private func execute() throws {
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
        if let dir = instanceDirectory {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }

        var runs: [Algorithm: [Run]] = [:]
        var perGroup: [String: [Algorithm: [Run]]] = [:]
        var groupOrder: [String] = []
        for family in familyList {
            for count in counts.map({ $0! }) {
                let group = "\(family.rawValue) \(count)"
                groupOrder.append(group)
                for seed in 1...perSize {
                    var problem = TightInstances.make(family, count: count, seed: UInt64(seed))
                    let load = problem.load
                    problem.capacity = load
                    if let dir = instanceDirectory {
                        try writeAtomically(AllocationCSV.write(problem), to: "\(dir)/\(family.rawValue)-\(count)-\(seed).csv")
                    }
                    for algorithm in algorithmList {
                        let r = try Allocator.allocate(problem, goal: .fit(capacity: load), algorithm: algorithm,
                                                       options: options, timeLimit: .milliseconds(Int64(timeLimit * 1000)))
                        guard Validator.isValid(r.solution, for: problem, capacity: .max) else {
                            printError("internal error: invalid \(algorithm.rawValue) packing on \(group) seed \(seed)\n")
                            throw ExitCode(2)
                        }
                        let seconds = Double(r.elapsed.components.seconds) + Double(r.elapsed.components.attoseconds) * 1e-18
                        let run = Run(packed: r.verdict == .fits, seconds: seconds, ratio: Double(r.height) / Double(load), nodes: r.nodes)
                        runs[algorithm, default: []].append(run)
                        perGroup[group, default: [:]][algorithm, default: []].append(run)
                        printError(String(format: "%@ seed %d  %@: %@ in %.3f s, height/LOAD %.4f\n",
                                          group, seed, algorithm.rawValue, run.packed ? "packed" : "not packed", seconds, run.ratio))
                    }
                }
            }
        }

        var report = "| algorithm | instances | packed at LOAD | median time (all) | median time (packed) | max time (packed) | median height/LOAD (not packed) | max height/LOAD (not packed) |\n"
        report += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        for algorithm in algorithmList {
            report += row(algorithm.rawValue, runs[algorithm] ?? [])
        }
        report += "\nPer family and size (\(algorithmList.contains(.exact) ? "exact search" : algorithmList[0].rawValue)):\n\n"
        report += "| instances | count | packed at LOAD | median time (all) | median time (packed) | max time (packed) | median height/LOAD (not packed) | max height/LOAD (not packed) |\n"
        report += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        let focus = algorithmList.contains(.exact) ? Algorithm.exact : algorithmList[0]
        for group in groupOrder { report += row(group, perGroup[group]?[focus] ?? []) }
        if let output { try writeAtomically(report, to: output) } else { print(report, terminator: "") }
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
