import Foundation
import Testing
@testable import KVGraph

/// SplitMix64: a small seeded generator so every run mutates the same way.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Robustness: mutated graphs end in a graph or diagnostics, never a crash")
struct RobustnessTests {
    static let mutationsPerGraph = 2_000

    static func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
        var bytes = Array(text.utf8)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let pieces: [String] = ["(", ")", "[", "]", "{", "}", ",", "=", "0", "-1", "99999999999999999999", "..<", "#", "\"",
                                "l", "x[0]", "matmul(", "for l in 0..<3 {", "\n", "let", "output", "cache", "f32[", "i4", "×", "é", "\u{0}"]
        switch Int.random(in: 0..<7, using: &rng) {
        case 0 where !bytes.isEmpty:  // delete a span
            let i = Int.random(in: 0..<bytes.count, using: &rng)
            bytes.removeSubrange(i..<min(bytes.count, i + Int.random(in: 1...12, using: &rng)))
            return String(decoding: bytes, as: UTF8.self)
        case 1 where !bytes.isEmpty:  // replace bytes at random
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            return String(decoding: bytes, as: UTF8.self)
        case 2:  // truncate
            return String(decoding: bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)), as: UTF8.self)
        case 3 where lines.count > 1:  // swap two lines
            let (a, b) = (Int.random(in: 0..<lines.count, using: &rng), Int.random(in: 0..<lines.count, using: &rng))
            lines.swapAt(a, b)
        case 4 where !lines.isEmpty:  // duplicate a line
            let i = Int.random(in: 0..<lines.count, using: &rng)
            lines.insert(lines[i], at: i)
        case 5 where !lines.isEmpty:  // delete a line
            lines.remove(at: Int.random(in: 0..<lines.count, using: &rng))
        default:  // insert a token
            let i = Int.random(in: 0...bytes.count, using: &rng)
            bytes.insert(contentsOf: Array(pieces.randomElement(using: &rng)!.utf8), at: i)
            return String(decoding: bytes, as: UTF8.self)
        }
        return lines.joined(separator: "\n")
    }

    @Test("2,000 mutations of each bundled graph", arguments: try bundledGraphs().map(\.lastPathComponent))
    func mutations(_ name: String) throws {
        let original = try String(contentsOf: repositoryRoot.appendingPathComponent("Graphs/\(name)"), encoding: .utf8)
        var rng = SplitMix64(state: UInt64(name.utf8.reduce(0) { $0 &* 31 &+ Int($1) }.magnitude))
        var outcomes = (graphs: 0, diagnostics: 0)
        for _ in 0..<Self.mutationsPerGraph {
            var text = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) { text = Self.mutate(text, &rng) }
            let file = SourceFile(path: name, text: text)
            do {
                let g = try GraphCompiler.compile(file)
                _ = IRPrinter.print(g.graph)
                _ = GraphSummary(g.graph)
                outcomes.graphs += 1
            } catch {
                // Every diagnostic is positioned inside the file (or just past its end) and renders.
                #expect(!error.diagnostics.isEmpty)
                for d in error.diagnostics {
                    #expect(d.location.line >= 1 && d.location.line <= file.lines.count + 1)
                    #expect(d.location.column >= 1)
                }
                #expect(error.description.contains("error:"))
                outcomes.diagnostics += 1
            }
        }
        #expect(outcomes.graphs + outcomes.diagnostics == Self.mutationsPerGraph)
        #expect(outcomes.diagnostics > 0)
    }
}
