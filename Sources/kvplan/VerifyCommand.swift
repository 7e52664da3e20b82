import ArgumentParser
import Foundation
import KVArtifact
import KVPlanner

/// `kvplan verify DIR`: run the independent plan verifier on an existing artifact directory.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check DIR/plan.json with the independent verifier.",
        discussion: "Exit codes: 0 valid, 1 unreadable or invalid (each violation printed), 64 bad usage."
    )

    @Argument(help: "An artifact directory written by `kvplan compile`.")
    var directory: String

    func run() throws { try reportingBadInput(execute) }

    private func execute() throws {
        let plan = try ArtifactDirectory(path: directory).plan()
        let path = "\(directory)/plan.json"
        let failures = PlanVerifier.check(plan)
        if failures.isEmpty {
            print("\(path): valid (\(plan.steps.count) steps, \(plan.values.count) values, \(plan.transfers.count) transfers)")
            return
        }
        for f in failures { printError("\(path): \(f)\n") }
        printError("\(failures.count) violation\(failures.count == 1 ? "" : "s")\(failures.count == 100 ? " (first 100)" : "")\n")
        throw ExitCode(1)
    }
}
