import Foundation
import KVArtifact
import KVRuntime
import Testing

@Suite("kvplan run", .serialized)
struct RunCLITests {
    let cli = CLITests()

    /// Writes the seeded weights (seed 0) of the artifact in `dir` as an HF checkpoint at `path`
    /// (HF names, f32, each tensor in the checkpoint's layout) and returns its tensors.
    @discardableResult
    static func seededCheckpoint(of dir: URL, to path: String) throws -> [(name: String, dtype: String, shape: [Int], bytes: [UInt8])] {
        let program = try JSONDecoder().decode(ModelProgram.self, from: Data(contentsOf: dir.appendingPathComponent("program.json")))
        let weights = SeededWeights.make(program, seed: 0)
        let tensors = program.tensors.filter { $0.kind == "weight" }.map {
            (name: HFTensorNames.candidates($0.name)[0], dtype: "F32", shape: $0.checkpointShape, bytes: SafetensorsFile.bytes($0.toCheckpoint(weights[$0.name]!)))
        }
        try SafetensorsFile.write(tensors, to: path)
        return tensors
    }

    @Test("compile then run: deterministic bytes; the same weights from a safetensors checkpoint give the same text; bad input refused")
    func generate() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        #expect(try cli.run(["compile", tiny, "--solver", "msa", "-o", dir.path]).status == 0)
        let first = try cli.run(["run", dir.path, "--prompt", "ab", "--max-tokens", "3"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasPrefix("ab") && first.stderr.contains("5 tokens in"), "\(first.stderr)")
        #expect(first.stderr.contains("generated schedule on 3 tier arenas") && first.stderr.contains("seeded weights (seed 0)"), "\(first.stderr)")
        #expect(try cli.run(["run", dir.path, "--prompt", "ab", "--max-tokens", "3"]).stdout == first.stdout)

        // The seeded weights written as an HF checkpoint (HF names, f32) must give the same text.
        let checkpoint = dir.appendingPathComponent("model.safetensors").path
        let tensors = try Self.seededCheckpoint(of: dir, to: checkpoint)
        let loaded = try cli.run(["run", dir.path, "--weights", checkpoint, "--prompt", "ab", "--max-tokens", "3"])
        #expect(loaded.status == 0 && loaded.stdout == first.stdout && !loaded.stderr.contains("seeded"), "\(loaded.stderr)")

        // A checkpoint without one tensor is refused by name.
        try SafetensorsFile.write(tensors.filter { $0.name != "model.norm.weight" }, to: checkpoint)
        let missing = try cli.run(["run", dir.path, "--weights", checkpoint])
        #expect(missing.status == 1 && missing.stderr.contains("no tensor for 'norm' (looked for model.norm.weight)"), "\(missing.stderr)")
        // The f32-cache schedule agrees with the interpreter op by op, and moves the planned bytes.
        let checked = try cli.run(["run", dir.path, "--prompt", "ab", "--max-tokens", "6", "--check"])
        #expect(checked.status == 0 && checked.stderr.contains("check passed") && checked.stderr.contains("bytes per link: equal to the plan over 8 steps"),
                "\(checked.stderr)")
        let interpreted = try cli.run(["run", dir.path, "--prompt", "ab", "--max-tokens", "3", "--interpreter"])
        #expect(interpreted.status == 0 && interpreted.stderr.contains("reference interpreter (plain f32 ops)"), "\(interpreted.stderr)")
        #expect(try cli.run(["run", dir.path, "--threads", "0"]).stderr.contains("--threads: expected 1...256"))
        #expect(try cli.run(["run", dir.path, "--check", "--interpreter"]).stderr.contains("give --interpreter or --check, not both"))
        let long = try cli.run(["run", dir.path, "--max-tokens", "5000"])
        #expect(long.status == 1 && long.stderr.contains("the KV cache holds 1024"), "\(long.stderr)")
        #expect(try cli.run(["run", dir.path + "/nothing"]).stderr.contains("is '\(dir.path)/nothing' a directory written by kvplan compile?"))
        #expect(try cli.run(["run", dir.path, "--temperature=-1"]).stderr.contains("--temperature: expected"))
        // Token ids instead of text: the same model fed ids 97, 98 ("ab") generates the same tokens.
        let ids = try cli.run(["run", dir.path, "--prompt-tokens", "97, 98", "--max-tokens", "3"])
        #expect(ids.status == 0, "\(ids.stderr)")
        let generated = ids.stdout.split(separator: " ").map { UInt8($0.trimmingCharacters(in: .whitespacesAndNewlines))! }
        #expect(generated.count == 5 && generated.prefix(2) == [97, 98])
        #expect(String(decoding: generated + [10], as: UTF8.self) == first.stdout, "\(ids.stdout) vs \(first.stdout)")
        #expect(try cli.run(["run", dir.path, "--prompt-tokens", "97,x"]).stderr.contains("--prompt-tokens: item 2 is 'x', not a token id"))
        #expect(try cli.run(["run", dir.path, "--prompt-tokens", "300"]).stderr.contains("token id 300 is outside the vocabulary of 256"))
        #expect(try cli.run(["run", dir.path, "--prompt-tokens", "1", "--prompt", "a"]).stderr.contains("give one of --prompt, --prompt-file, --prompt-tokens"))
    }

    @Test("weights that are not finite are refused at load by tensor and index; weights that overflow stop the run at the first broken step, not in a crash")
    func nonFiniteWeights() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        // A packed KV cache: the cache manager quantises what the broken step produced.
        #expect(try cli.run(["compile", tiny, "--solver", "msa", "--kv-ratio", "0.25", "-o", dir.path]).status == 0)
        let program = try JSONDecoder().decode(ModelProgram.self, from: Data(contentsOf: dir.appendingPathComponent("program.json")))
        let weights = SeededWeights.make(program, seed: 0)
        func checkpoint(_ change: (String, inout [Float]) -> Void) throws -> String {
            let tensors = program.tensors.filter { $0.kind == "weight" }.map { t in
                var values = weights[t.name]!
                change(t.name, &values)
                return (name: HFTensorNames.candidates(t.name)[0], dtype: "F32", shape: t.shape, bytes: SafetensorsFile.bytes(values))
            }
            let path = dir.appendingPathComponent("model.safetensors").path
            try SafetensorsFile.write(tensors, to: path)
            return path
        }
        let nan = try checkpoint { name, values in if name == "k_proj[0]" { values[70] = .nan } }
        let refused = try cli.run(["run", dir.path, "--weights", nan, "--prompt", "ab", "--max-tokens", "3"])
        #expect(refused.status == 1 && refused.stderr.contains("'model.layers.0.self_attn.k_proj.weight' element 70 (index [0, 70]) is nan; weights must be finite"),
                "\(refused.stderr)")
        // Finite but huge: the activations overflow to inf and NaN inside the first step.
        let huge = try checkpoint { name, values in if name == "k_proj[0]" || name == "v_proj[0]" { values = values.map { $0 * 1e37 } } }
        for flags in [[], ["--interpreter"]] {
            let broken = try cli.run(["run", dir.path, "--weights", huge, "--prompt", "ab", "--max-tokens", "3"] + flags)
            #expect(broken.status == 1 && broken.stderr.contains("position 1: logit 0 of 'logits' is") && broken.stderr.contains("the weights or the activations are not finite"),
                    "\(flags): \(broken.stderr)")
        }
    }

    @Test("a model without a byte vocabulary (GPT-2) asks for --prompt-tokens instead of text")
    func tokenIdModels() throws {
        let dir = try cli.temporaryDirectory()
        #expect(try cli.run(["compile", "Graphs/gpt2.graph", "--solver", "naive", "-o", dir.path]).status == 0)
        let text = try cli.run(["run", dir.path, "--prompt", "hello"])
        #expect(text.status == 1 && text.stderr.contains("not a byte-level model (its logits have 50257 entries, not 256): give the prompt as --prompt-tokens ids"), "\(text.stderr)")
        #expect(try cli.run(["run", dir.path, "--prompt-tokens", "50257"]).stderr.contains("token id 50257 is outside the vocabulary of 50257"))
    }

    @Test("GPT-2 Conv1D weights under --weight-dtype: stored transposed, read from an [in, out] checkpoint, and checked against the interpreter")
    func conv1DWeights() throws {
        let dir = try cli.temporaryDirectory()
        let config = dir.appendingPathComponent("config.json"), graph = dir.appendingPathComponent("gpt2.graph")
        try Data(#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "n_embd": 64, "n_head": 2, "n_layer": 2, "n_positions": 64, "vocab_size": 256}"#.utf8).write(to: config)
        #expect(try cli.run(["import", "hf", config.path, "--activations", "f32", "-o", graph.path]).status == 0)
        let plain = dir.appendingPathComponent("f32"), quantised = dir.appendingPathComponent("q8_0")
        #expect(try cli.run(["compile", graph.path, "--solver", "msa", "-o", plain.path]).status == 0)
        let compiled = try cli.run(["compile", graph.path, "--solver", "msa", "--weight-dtype", "q8_0", "-o", quantised.path])
        #expect(compiled.status == 0 && compiled.stdout.contains("weights   8 linear weights as q8_0 (8 of them [in, out] in the checkpoint, stored transposed)")
                && compiled.stdout.contains("layout    8 of 8 q8_0 weights as q8_0x16"), "\(compiled.stdout)\(compiled.stderr)")
        let program = try JSONDecoder().decode(ModelProgram.self, from: Data(contentsOf: quantised.appendingPathComponent("program.json")))
        let qkv = try #require(program.tensors.first { $0.name == "c_attn_weight[0]" })
        #expect(qkv.shape == [192, 64] && qkv.storedTransposed == true && qkv.checkpointShape == [64, 192])
        // The f32 program's seeded weights, written as the HF checkpoint holds them ([in, out]),
        // give the quantised artifact the same tokens as its own seeded weights (drawn in the
        // checkpoint's layout, then transposed).
        let checkpoint = dir.appendingPathComponent("model.safetensors").path
        try Self.seededCheckpoint(of: plain, to: checkpoint)
        let seeded = try cli.run(["run", quantised.path, "--prompt-tokens", "1,2,3", "--max-tokens", "6"])
        let loaded = try cli.run(["run", quantised.path, "--weights", checkpoint, "--prompt-tokens", "1,2,3", "--max-tokens", "6"])
        #expect(seeded.status == 0 && loaded.status == 0 && loaded.stdout == seeded.stdout, "\(seeded.stdout) vs \(loaded.stdout) \(loaded.stderr)")
        let checked = try cli.run(["run", quantised.path, "--weights", checkpoint, "--prompt-tokens", "1,2,3", "--max-tokens", "4", "--check"])
        #expect(checked.status == 0 && checked.stderr.contains("check passed"), "\(checked.stderr)")
    }

    @Test("a plan with KV layouts runs with the packed cache, and every layer holds exactly the planned bytes")
    func packedCache() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        #expect(try cli.run(["compile", tiny, "--solver", "msa", "--kv-ratio", "0.15", "-o", dir.path]).status == 0)
        let plan = try JSONDecoder().decode(Plan.self, from: Data(contentsOf: dir.appendingPathComponent("plan.json")))
        let layouts = try #require(plan.kv?.layers)
        for engine in ["--check", "--interpreter"] {
            let r = try cli.run(["run", dir.path, "--max-tokens", "3", engine])
            #expect(r.status == 0 && r.stderr.contains("KV cache packed in the plan's layouts"), "\(r.stderr)")
            for l in layouts {
                // "layer  planned  in use  tokens held": planned = in use, 4 tokens held (1 prompt + 3).
                let row = String(format: "%5d  %16d  %6d  %11d", l.layer, l.bytes, l.bytes, 4)
                #expect(r.stderr.contains(row), "\(row)\n\(r.stderr)")
            }
            if engine == "--check" { #expect(r.stderr.contains("check passed"), "\(r.stderr)") }
        }
    }

    @Test("--check passes op by op for KV policies that evict (cake), quantise every token (kivi2) and mix bit widths (exact), past the window",
          arguments: ["cake", "kivi2", "exact"])
    func everyPolicyChecks(policy: String) throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let compiled = try cli.run(["compile", tiny, "--solver", "msa", "--kv-policy", policy, "--kv-ratio", "0.4", "--context", "160", "-o", dir.path])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        // 75 steps: the sinks and window (36 tokens) fill, then tokens are evicted, quantised or demoted.
        let checked = try cli.run(["run", dir.path, "--prompt", "Hello", "--max-tokens", "70", "--check"])
        #expect(checked.status == 0 && checked.stderr.contains("check passed")
                && checked.stderr.contains("greedy token equal in 75 of 75 steps"), "\(checked.stderr)")
    }

    @Test("--weight-dtype: linear weights stored as f16, bf16, q8_0 or q4_0 take exactly their bytes in weights.json, and --check passes",
          arguments: [("f16", 2), ("bf16", 2), ("q8_0", 34), ("q4_0", 18)])
    func weightFormats(dtype: String, blockBytes: Int) throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let compiled = try cli.run(["compile", tiny, "--solver", "msa", "--weight-dtype", dtype, "--kv-ratio", "0.25", "-o", dir.path])
        #expect(compiled.status == 0 && compiled.stdout.contains("29 linear weights as \(dtype)"), "\(compiled.stdout)\(compiled.stderr)")
        let manifest = try JSONDecoder().decode(WeightsManifest.self, from: Data(contentsOf: dir.appendingPathComponent("weights.json")))
        let q = try #require(manifest.tensors.first { $0.name == "q_proj[0]" })
        #expect(q.dtype == dtype && q.bytes == 256 * 256 / (blockBytes > 2 ? 32 : 1) * blockBytes)
        #expect(manifest.tensors.first { $0.name == "embed_tokens" }?.dtype == "f32")
        // q8_0 / q4_0 linear weights are interleaved for the GEMV (every tiny-llama row count is a
        // multiple of 16); the summary and the manifest say so, the float formats stay row by row.
        let interleaved = blockBytes > 2 ? "\(dtype)x16" : nil
        #expect(manifest.tensors.filter { $0.layout != nil }.count == (interleaved == nil ? 0 : 29))
        #expect(q.layout == interleaved && manifest.tensors.first { $0.name == "embed_tokens" }?.layout == nil)
        #expect(compiled.stdout.contains("layout    29 of 29 \(dtype) weights as \(dtype)x16") == (interleaved != nil), "\(compiled.stdout)")
        let checked = try cli.run(["run", dir.path, "--prompt", "Hi", "--max-tokens", "5", "--check"])
        #expect(checked.status == 0 && checked.stderr.contains("check passed"), "\(checked.stderr)")
    }

    @Test("--weight-dtype refuses unknown formats and rows that are not whole blocks, writing nothing")
    func weightFormatRefusals() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let unknown = try cli.run(["compile", tiny, "--weight-dtype", "i4", "-o", dir.appendingPathComponent("a").path])
        #expect(unknown.status == 1 && unknown.stderr.contains("--weight-dtype: expected f32, f16, bf16, q8_0, q4_0, got 'i4'"), "\(unknown.stderr)")
        let graph = dir.appendingPathComponent("odd.graph")
        try "input x: f32[1, 48]\nweight w: f32[8, 48]\noutput y = linear(x, w)\n".write(to: graph, atomically: true, encoding: .utf8)
        let odd = try cli.run(["compile", graph.path, "--weight-dtype", "q4_0", "-o", dir.appendingPathComponent("b").path])
        #expect(odd.status == 1 && odd.stderr.contains("odd.graph:2:8: --weight-dtype q4_0: 'w' has rows of 48 values; q4_0 stores whole blocks of 32"), "\(odd.stderr)")
        let tiedAlone = try cli.run(["compile", tiny, "--weight-dtype-tied", "-o", dir.appendingPathComponent("c").path])
        #expect(tiedAlone.status == 1 && tiedAlone.stderr.contains("--weight-dtype-tied needs --weight-dtype"), "\(tiedAlone.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("a").path))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("b").path))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("c").path))
    }

    @Test("compile writes Kernels.swift and Schedule.swift, byte-identical on a second compile, with no model names in them")
    func generatedSources() throws {
        let (a, b) = (try cli.temporaryDirectory(), try cli.temporaryDirectory())
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        for dir in [a, b] { #expect(try cli.run(["compile", tiny, "--solver", "msa", "-o", dir.path]).status == 0) }
        for file in ["Kernels.swift", "Schedule.swift", "schedule.json", "weights.json", "summary.txt", "program.json", "plan.json"] {
            let first = try Data(contentsOf: a.appendingPathComponent(file)), second = try Data(contentsOf: b.appendingPathComponent(file))
            #expect(first == second, "\(file) differs between two compiles")
        }
        let source = try String(contentsOf: a.appendingPathComponent("Kernels.swift"), encoding: .utf8)
            + String(contentsOf: a.appendingPathComponent("Schedule.swift"), encoding: .utf8)
        for name in ["q_proj", "k_cache", "embed_tokens", "tiny-llama"] { #expect(!source.contains(name), "\(name) reached the source") }
    }

    @Test("Generated/tiny-llama/{cpu,edge-npu} are what kvplan compile writes today (re-record: scripts/regenerate.sh)", arguments: ["cpu", "edge-npu"])
    func committedArtifacts(target: String) throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        #expect(try cli.run(["compile", tiny, "--target", target, "--kv-ratio", "0.25", "-o", dir.path]).status == 0)
        let committed = CLITests.root.appendingPathComponent("Generated/tiny-llama/\(target)")
        for file in ["plan.json", "program.json", "schedule.json", "weights.json", "summary.txt", "Kernels.swift", "Schedule.swift"] {
            let fresh = try Data(contentsOf: dir.appendingPathComponent(file)), old = try Data(contentsOf: committed.appendingPathComponent(file))
            #expect(fresh == old, "Generated/tiny-llama/\(target)/\(file) is stale: run scripts/regenerate.sh")
        }
    }

    @Test("names that are Swift keywords or generated identifiers never reach the source, and the schedule still checks out")
    func hostileNames() throws {
        let dir = try cli.temporaryDirectory()
        var text = try String(contentsOf: CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph"), encoding: .utf8)
        let renames = ["q_proj": "func", "k_proj": "self", "v_proj": "return", "embed_tokens": "kvplan_step", "k_cache": "import", "down_proj": "deinit", "up_proj": "t0", "gate_proj": "k0"]
        for (old, new) in renames { text = text.replacingOccurrences(of: old, with: new) }
        let graph = dir.appendingPathComponent("hostile.graph")
        try text.write(to: graph, atomically: true, encoding: .utf8)
        let compiled = try cli.run(["compile", graph.path, "--solver", "msa", "--kv-ratio", "0.3", "-o", dir.path])
        #expect(compiled.status == 0 && compiled.stdout.contains("codegen   Kernels.swift"), "\(compiled.stdout)\(compiled.stderr)")
        let source = try String(contentsOf: dir.appendingPathComponent("Kernels.swift"), encoding: .utf8)
            + String(contentsOf: dir.appendingPathComponent("Schedule.swift"), encoding: .utf8)
        for name in ["deinit", "import[", "self[", "func["] { #expect(!source.contains(name), "\(name) reached the source") }
        let r = try cli.run(["run", dir.path, "--max-tokens", "2", "--check"])
        #expect(r.status == 0 && r.stderr.contains("check passed"), "\(r.stderr)")
    }
}
