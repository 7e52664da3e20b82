import Foundation
import Testing
@testable import KVGraph

/// The repository root (Tests/KVGraphTests/ is two levels down).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Compiles `text`; fails the test on errors.
func lower(_ text: String, dimensions: [String: Int] = [:], sourceLocation: Testing.SourceLocation = #_sourceLocation) -> LoweredGraph? {
    do {
        return try GraphCompiler.compile(SourceFile(path: "t.graph", text: text), dimensions: dimensions)
    } catch {
        Issue.record("unexpected diagnostics:\n\(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The errors of compiling `text`, as `line:col: message` (empty when it compiles).
func errors(_ text: String) -> [String] {
    do {
        _ = try GraphCompiler.compile(SourceFile(path: "t.graph", text: text))
        return []
    } catch {
        return error.diagnostics.filter { $0.severity == .error }.map { "\($0.location): \($0.message)" }
    }
}

/// Warnings of a graph that compiles.
func warnings(_ text: String) -> [String] {
    (try? GraphCompiler.compile(SourceFile(path: "t.graph", text: text)))?.warnings.map { "\($0.location): \($0.message)" } ?? ["<did not compile>"]
}

/// True when KVPLAN_RECORD=1: golden tests rewrite their files instead of comparing.
let isRecording = ProcessInfo.processInfo.environment["KVPLAN_RECORD"] == "1"

/// The bundled .graph files.
func bundledGraphs() throws -> [URL] {
    try FileManager.default.contentsOfDirectory(at: repositoryRoot.appendingPathComponent("Graphs"), includingPropertiesForKeys: nil)
        .filter { $0.pathExtension == "graph" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
}

/// A tiny graph prefix used by many tests.
let prelude = """
dim batch = 2
input x: f32[batch, 8]
weight w: f32[8, 4]

"""
