import Foundation
import KVArtifact
import KVRuntime
import Testing

@Suite("kvplan run", .serialized)
struct RunCLITests {
    let cli = CLITests()

    @Test("compile then run: deterministic bytes; the same weights from a safetensors checkpoint give the same text; bad input refused")
    func generate() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        #expect(try cli.run(["compile", tiny, "--solver", "msa", "-o", dir.path]).status == 0)
        let first = try cli.run(["run", dir.path, "--prompt", "ab", "--max-tokens", "3"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasPrefix("ab") && first.stderr.contains("5 tokens in"), "\(first.stderr)")
        #expect(first.stderr.contains("reference interpreter") && first.stderr.contains("seeded weights (seed 0)"))
        #expect(try cli.run(["run", dir.path, "--prompt", "ab", "--max-tokens", "3"]).stdout == first.stdout)

        // The seeded weights written as an HF checkpoint (HF names, f32) must give the same text.
        let program = try JSONDecoder().decode(ModelProgram.self, from: Data(contentsOf: dir.appendingPathComponent("program.json")))
        let weights = SeededWeights.make(program, seed: 0)
        let tensors = program.tensors.filter { $0.kind == "weight" }.map {
            (name: HFTensorNames.candidates($0.name)[0], dtype: "F32", shape: $0.shape, bytes: SafetensorsFile.bytes(weights[$0.name]!))
        }
        let checkpoint = dir.appendingPathComponent("model.safetensors").path
        try SafetensorsFile.write(tensors, to: checkpoint)
        let loaded = try cli.run(["run", dir.path, "--weights", checkpoint, "--prompt", "ab", "--max-tokens", "3"])
        #expect(loaded.status == 0 && loaded.stdout == first.stdout && !loaded.stderr.contains("seeded"), "\(loaded.stderr)")

        // A checkpoint without one tensor is refused by name.
        try SafetensorsFile.write(tensors.filter { $0.name != "model.norm.weight" }, to: checkpoint)
        let missing = try cli.run(["run", dir.path, "--weights", checkpoint])
        #expect(missing.status == 1 && missing.stderr.contains("no tensor for 'norm' (looked for model.norm.weight)"), "\(missing.stderr)")
        let long = try cli.run(["run", dir.path, "--max-tokens", "5000"])
        #expect(long.status == 1 && long.stderr.contains("the KV cache holds 1024"), "\(long.stderr)")
        #expect(try cli.run(["run", dir.path + "/nothing"]).stderr.contains("is '\(dir.path)/nothing' a directory written by kvplan compile?"))
        #expect(try cli.run(["run", dir.path, "--temperature=-1"]).stderr.contains("--temperature: expected"))
    }

    @Test("a plan with KV layouts runs with the packed cache, and every layer holds exactly the planned bytes")
    func packedCache() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        #expect(try cli.run(["compile", tiny, "--solver", "msa", "--kv-ratio", "0.15", "-o", dir.path]).status == 0)
        let plan = try JSONDecoder().decode(Plan.self, from: Data(contentsOf: dir.appendingPathComponent("plan.json")))
        let layouts = try #require(plan.kv?.layers)
        let r = try cli.run(["run", dir.path, "--max-tokens", "3"])
        #expect(r.status == 0 && r.stderr.contains("KV cache held packed"), "\(r.stderr)")
        for l in layouts {
            // "layer  planned  in use  tokens held  evicted": planned = in use, 4 tokens held (1 prompt + 3).
            let row = String(format: "%5d  %16d  %6d  %11d  %7d", l.layer, l.bytes, l.bytes, 4, 0)
            #expect(r.stderr.contains(row), "\(row)\n\(r.stderr)")
        }
    }

    @Test("compile writes Kernels.swift and Schedule.swift, byte-identical on a second compile, with no model names in them")
    func generatedSources() throws {
        let (a, b) = (try cli.temporaryDirectory(), try cli.temporaryDirectory())
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        for dir in [a, b] { #expect(try cli.run(["compile", tiny, "--solver", "msa", "-o", dir.path]).status == 0) }
        for file in ["Kernels.swift", "Schedule.swift", "program.json", "plan.json"] {
            let first = try Data(contentsOf: a.appendingPathComponent(file)), second = try Data(contentsOf: b.appendingPathComponent(file))
            #expect(first == second, "\(file) differs between two compiles")
        }
        let source = try String(contentsOf: a.appendingPathComponent("Kernels.swift"), encoding: .utf8)
            + String(contentsOf: a.appendingPathComponent("Schedule.swift"), encoding: .utf8)
        for name in ["q_proj", "k_cache", "embed_tokens", "tiny-llama"] { #expect(!source.contains(name), "\(name) reached the source") }
    }
}
