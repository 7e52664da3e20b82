import Foundation
import KVPlanner
import Testing

/// `kvplan profile` and `kvplan eval` on the trained checkpoint, and their refusals.
@Suite("kvplan profile and eval", .serialized)
struct ProfileCLITests {
    let cli = CLITests()

    @Test("profile measures 4 layers × 2 KV heads; the file loads as a valid profile and compile --profile uses it")
    func measure() throws {
        let dir = try cli.temporaryDirectory()
        let out = dir.appendingPathComponent("profile.json").path
        let r = try cli.run(["profile", "Graphs/tiny-llama/config.json", "--weights", "Graphs/tiny-llama/model.safetensors",
                             "--text", "Graphs/tiny-llama/calibration.txt", "--context", "96", "--windows", "1", "-o", out])
        #expect(r.status == 0, "\(r.stderr)")
        let profile = try JSONDecoder().decode(KVProfile.self, from: Data(contentsOf: URL(fileURLWithPath: out)))
        try profile.validate()
        #expect(profile.layers.count == 4 && profile.referenceContext == 96 && profile.model == "tiny-llama")
        for (l, layer) in profile.layers.enumerated() {
            #expect(layer.heads?.count == 2)
            #expect(layer.keyError["2"]! > layer.keyError["4"]! && layer.keyError["4"]! > layer.keyError["8"]!)
            // A trained model concentrates attention: the top 10% of tokens hold more than 10% of it.
            #expect(profile.retention(layer: l, fraction: 0.1) > 0.1)
        }
        #expect(r.stdout.split(separator: "\n").count == 4)
        let compiled = try cli.run(["compile", "Graphs/tiny-llama.graph", "--profile", out, "--kv-ratio", "0.25", "--solver", "msa",
                                    "-o", dir.appendingPathComponent("out").path])
        #expect(compiled.status == 0, "\(compiled.stderr)")
    }

    @Test("profile --sensitivity: one run per layer with only that layer compressed; weights (mean 1) in the profile; refusals")
    func sensitivity() throws {
        let dir = try cli.temporaryDirectory()
        let out = dir.appendingPathComponent("profile.json").path
        let base = ["profile", "Graphs/tiny-llama.graph", "--weights", "Graphs/tiny-llama/model.safetensors",
                    "--text", "Graphs/tiny-llama/calibration.txt", "--context", "64", "--windows", "1", "-o", out]
        let r = try cli.run(base + ["--sensitivity", "0.75"])
        #expect(r.status == 0, "\(r.stderr)")
        let profile = try JSONDecoder().decode(KVProfile.self, from: Data(contentsOf: URL(fileURLWithPath: out)))
        try profile.validate()
        let weights = try #require(profile.layerWeights)
        #expect(weights.count == 4 && weights.allSatisfy { $0 > 0 })
        #expect(abs(weights.reduce(0, +) / 4 - 1) < 1e-3)
        // The floor: no layer below 5% of the heaviest.
        #expect(weights.min()! >= 0.05 * weights.max()! - 1e-4)
        #expect(r.stdout.contains("sensitivity: every layer complete (fp16)") && r.stdout.contains("one layer at 75% of its tokens"))
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("  layer ") && $0.contains("48 tokens kept") }.count == 4)
        // compile reads the weights.
        let compiled = try cli.run(["compile", "Graphs/tiny-llama.graph", "--profile", out, "--kv-ratio", "0.25", "--solver", "msa",
                                    "-o", dir.appendingPathComponent("out").path])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        try FileManager.default.removeItem(atPath: out)
        for (flag, message) in [("1.5", "--sensitivity: expected a fraction of the tokens in (0, 1)"),
                                ("0.1", "--sensitivity 0.1: a KV budget of")] {
            let refused = try cli.run(base + ["--sensitivity", flag])
            #expect(refused.status == 1 && refused.stderr.contains(message), "\(flag): \(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test("profile refuses bad input with a clear message and writes nothing")
    func refusals() throws {
        let dir = try cli.temporaryDirectory()
        let out = dir.appendingPathComponent("p.json").path
        let base = ["profile", "Graphs/tiny-llama.graph", "--weights", "Graphs/tiny-llama/model.safetensors", "--text", "Graphs/tiny-llama/calibration.txt", "-o", out]
        let cases: [([String], String)] = [
            (base + ["--context", "8"], "--context: expected at least 33 bytes"),
            (base + ["--context", "4096"], "--context 4096: the model's KV cache holds 1024 tokens"),
            (base + ["--windows", "0"], "--windows: expected at least 1, got 0"),
            (base.map { $0 == "Graphs/tiny-llama/calibration.txt" ? "missing.txt" : $0 }, "cannot read 'missing.txt'"),
            (base.map { $0 == "Graphs/tiny-llama/model.safetensors" ? "Graphs/tiny-llama/eval.txt" : $0 }, "Graphs/tiny-llama/eval.txt:"),
            (base.map { $0 == "Graphs/tiny-llama.graph" ? "Graphs/gpt2.graph" : $0 }, "a vocabulary of 256"),
        ]
        for (args, message) in cases {
            let r = try cli.run(args)
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("eval: the full cache is the reference; exact at 100% of fp16 bytes matches it; the report and plot name every cell")
    func evaluate() throws {
        let dir = try cli.temporaryDirectory()
        let md = dir.appendingPathComponent("r.md").path, svg = dir.appendingPathComponent("r.svg").path
        let r = try cli.run(["eval", "Graphs/tiny-llama/config.json", "--weights", "Graphs/tiny-llama/model.safetensors",
                             "--text", "Graphs/tiny-llama/eval.txt", "--context", "80", "--windows", "1", "--budgets", "60,100",
                             "--policies", "exact,uniform", "--precisions", "evict,kivi4", "--markdown", md, "--svg", svg])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try String(contentsOfFile: md, encoding: .utf8)
        #expect(report.contains("1 window of 80 bytes (79 next-byte predictions)"))
        // 8 cells, 6 distinct sets of layouts (at 100% exact and uniform keep the same tokens at
        // the same bits): one streaming run each, plus the reference, and equal cells read equal.
        #expect(report.contains("(7 streaming runs: the reference and 6 distinct sets of layer layouts"), "\(report)")
        // Every token kept in fp16: the packed cache holds the keys and values rounded to fp16, so
        // perplexity moves by far less than 0.1% from the f32 cache's.
        let full = try #require(report.firstMatch(of: /perplexity ([0-9.]+) \(/).map { Double($0.1)! })
        let exact = try #require(report.firstMatch(of: /\| exact \| [^|]+\| ([0-9.]+) \(/).map { Double($0.1)! })
        #expect(abs(exact / full - 1) < 1e-3, "\(exact) vs \(full)")
        let plot = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(plot.hasPrefix("<svg") && plot.contains("KIVI-4") && plot.components(separatedBy: "<polyline").count == 5)
        // Both axes are labelled in each panel.
        #expect(plot.components(separatedBy: ">perplexity (next byte)</text>").count == 3)
        #expect(plot.components(separatedBy: ">KV bytes, % of the fp16 cache</text>").count == 3)
    }

    @Test("eval refuses unknown policies, precisions and budgets by name")
    func evalRefusals() throws {
        let base = ["eval", "Graphs/tiny-llama.graph", "--weights", "Graphs/tiny-llama/model.safetensors", "--text", "Graphs/tiny-llama/eval.txt"]
        for (extra, message) in [(["--policies", "exact,kivi4"], "--policies: 'kivi4' is not one of exact, uniform, pyramid, prefixkv, cake"),
                                 (["--precisions", "fp8"], "--precisions: 'fp8' is not one of evict, kivi2, kivi4, mixed"),
                                 (["--budgets", "0,50"], "--budgets: '0' is not one of integers 1...100"),
                                 (["--threads", "0"], "--threads: expected 1...64, got 0")] {
            let r = try cli.run(base + extra)
            #expect(r.status == 1 && r.stderr.contains(message), "\(extra): \(r.stderr)")
        }
    }
}
