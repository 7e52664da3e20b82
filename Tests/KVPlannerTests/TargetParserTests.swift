import Foundation
import Testing
import KVGraph
@testable import KVPlanner

let plannerRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite("Targets (.hw)")
struct TargetParserTests {
    func parse(_ text: String) throws -> Target { try TargetParser.parse(SourceFile(path: "t.hw", text: text)) }

    func errors(_ text: String) -> [String] {
        do { _ = try parse(text); return [] } catch let e as DiagnosticError {
            return e.diagnostics.filter { $0.severity == .error }.map { "\($0.location): \($0.message)" }
        } catch { return ["\(error)"] }
    }

    @Test("presets parse with the documented figures")
    func presets() throws {
        let edge = try parse(TargetPresets.source("edge-npu")!)
        #expect(edge.tiers.map(\.name) == ["sram", "lpddr", "host"])
        #expect(edge.tiers[0].capacity == 2 * 1_048_576)
        #expect(edge.tiers[1].capacity == 8 * 1_073_741_824)
        #expect(edge.link(from: "lpddr", to: "sram")?.bandwidth == 50e9)
        #expect(edge.link(from: "host", to: "lpddr")?.bandwidth == 8e9)
        let gpu = try parse(TargetPresets.source("datacenter-gpu")!)
        #expect(gpu.tiers[0].capacity == 50 * 1_048_576)
        #expect(gpu.tiers[1].capacity == 80 * 1_073_741_824)
        #expect(gpu.link(from: "hbm", to: "onchip")?.bandwidth == 3.35e12)
        #expect(gpu.link(from: "host", to: "hbm")?.bandwidth == 64e9)
        let cpu = try parse(TargetPresets.source("cpu")!)
        #expect(cpu.tiers[0].capacity == 1_048_576)
        #expect(cpu.throughput(for: .i4) == cpu.compute[.i8])
    }

    @Test("embedded presets equal Graphs/targets/*.hw (KVPLAN_RECORD=1 regenerates TargetPresets.swift)")
    func presetsUpToDate() throws {
        var generated = """
        // Generated from Graphs/targets/*.hw by `KVPLAN_RECORD=1 swift test --filter TargetParserTests`.
        // Do not edit by hand: edit the .hw file and re-record.

        /// The bundled target presets, by name, as .hw source.
        public enum TargetPresets {
            /// Preset names.
            public static let names: [String] = [\(TargetPresets.names.map { "\"\($0)\"" }.joined(separator: ", "))]

            /// The .hw source of preset `name`.
            public static func source(_ name: String) -> String? { sources[name] }

            static let sources: [String: String] = [

        """
        let files = try FileManager.default.contentsOfDirectory(atPath: plannerRoot.appendingPathComponent("Graphs/targets").path)
            .filter { $0.hasSuffix(".hw") }.sorted()
        #expect(files.map { String($0.dropLast(3)) } == TargetPresets.names)
        for f in files {
            let text = try String(contentsOf: plannerRoot.appendingPathComponent("Graphs/targets/\(f)"), encoding: .utf8)
            #expect(TargetPresets.source(String(f.dropLast(3))) == text, "\(f) differs from TargetPresets.swift")
            generated += "        \"\(f.dropLast(3))\": #\"\"\"\n\(text)\n\"\"\"#,\n"
        }
        generated += "    ]\n}\n"
        if ProcessInfo.processInfo.environment["KVPLAN_RECORD"] == "1" {
            try generated.write(to: plannerRoot.appendingPathComponent("Sources/KVPlanner/Targets/TargetPresets.swift"), atomically: true, encoding: .utf8)
        }
    }

    @Test("units: MiB, GB/s, ns, TFLOP/s")
    func units() {
        #expect(TargetParser.parseQuantity("2MiB", .bytes) == 2_097_152)
        #expect(TargetParser.parseQuantity("64", .bytes) == 64)
        #expect(TargetParser.parseQuantity("3.35TB/s", .bandwidth) == 3.35e12)
        #expect(abs(TargetParser.parseQuantity("90ns", .time)! - 90e-9) < 1e-20)
        #expect(TargetParser.parseQuantity("52GFLOP/s", .compute) == 52e9)
        #expect(TargetParser.parseQuantity("2MB/s", .bytes) == nil)
        #expect(TargetParser.parseQuantity("fast", .bandwidth) == nil)
    }

    @Test("every problem is positioned and reported")
    func errorsArePositioned() {
        let text = """
        target t
        tier a capacity=1MiB bandwidth=10GB/s alignment=48
        tier b capacity=lots bandwidth=1GB/s
        tier a capacity=1MiB bandwidth=1GB/s
        link a -> c bandwidth=1GB/s
        compute f64=1TFLOP/s
        frobnicate
        """
        #expect(errors(text) == [
            "2:6: alignment of tier 'a' must be a power of two, got 48",
            "3:17: invalid capacity 'lots' (a number with a unit: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
            "4:6: tier 'a' is already defined",
            "5:11: link to unknown tier 'c'",
            "6:9: expected dtype=throughput such as f16=100TFLOP/s (dtypes: f32, f16, bf16, i32, i8, i4, i2, q8_0, q4_0)",
            "7:1: unknown statement 'frobnicate' (expected target, tier, link or compute)",
        ])
        #expect(errors("target t\ntier a capacity=1MiB bandwidth=1GB/s\ntier b capacity=1GiB bandwidth=1GB/s\ncompute f32=1GFLOP/s") == [
            "2:6: no link from 'a' to 'b'; tiers are listed fastest first and each must reach its neighbours",
            "2:6: no link from 'b' to 'a'; tiers are listed fastest first and each must reach its neighbours",
        ])
    }
}
