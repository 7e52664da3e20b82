import Foundation
import Testing

/// Runs the built `kvplan` binary end to end, as a user would.
@Suite("kvplan command line", .serialized)
struct CLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var binary: URL {
        // `swift test` builds the executable next to the test bundle.
        let bundleDir = Bundle.main.bundleURL
        for candidate in [bundleDir.appendingPathComponent("kvplan"), bundleDir.deletingLastPathComponent().appendingPathComponent("kvplan"),
                          root.appendingPathComponent(".build/debug/kvplan")]
        where FileManager.default.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
        return root.appendingPathComponent(".build/debug/kvplan")
    }

    func run(_ args: [String], environment: [String: String] = [:]) throws -> Run {
        let p = Process()
        p.executableURL = Self.binary
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.currentDirectoryURL = Self.root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kvplan-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("check works on every file in Graphs/ and exits 0")
    func checkEverything() throws {
        let files = try FileManager.default.subpathsOfDirectory(atPath: Self.root.appendingPathComponent("Graphs").path)
            .filter { $0.hasSuffix(".graph") || $0.hasSuffix(".hw") || $0.hasSuffix(".json") }
            .filter { !$0.hasPrefix("tiny-llama/") || $0 == "tiny-llama/config.json" }.sorted()  // the checkpoint's other files are data
        #expect(files.count >= 22)
        for f in files {
            let r = try run(["check", "Graphs/\(f)"])
            #expect(r.status == 0, "\(f): \(r.stderr)")
            #expect(r.stderr.isEmpty, "\(f) printed warnings: \(r.stderr)")
        }
    }

    @Test("check prints the published parameter count, and --json carries the same numbers")
    func checkSummary() throws {
        let text = try run(["check", "Graphs/hf-configs/llama-2-7b.json", "--context", "4096"])
        #expect(text.status == 0)
        #expect(text.stdout.contains("parameters  6,738,415,616"))
        #expect(text.stdout.contains("KV cache    524,288 B per token over 32 layers; 2,147,483,648 B (2.00 GiB) in total"))
        let json = try run(["check", "Graphs/tiny-llama.graph", "--json", "--batch", "2"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        #expect(object["parameters"] as? Int == 2_951_424)
        #expect((object["kvCache"] as! [String: Any])["totalBytes"] as? Int == 2 * 2_097_152)
    }

    @Test("malformed input: positioned errors on stderr, exit 1, nothing on stdout")
    func badGraph() throws {
        let dir = try temporaryDirectory()
        let bad = dir.appendingPathComponent("bad.graph")
        try "input x: f32[2, 8]\nweight w: f32[4, 4]\noutput y = matmul(x, w)\noutput z = relu(q)\n".write(to: bad, atomically: true, encoding: .utf8)
        let r = try run(["check", bad.path])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("bad.graph:3:22: error: 'matmul': inner dimensions differ"))
        #expect(r.stderr.contains("bad.graph:4:17: error: undefined tensor 'q'"))
        #expect(r.stderr.contains("2 errors"))
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("crashed"))
    }

    @Test("missing files, unknown dimensions and bad flags fail cleanly")
    func badUsage() throws {
        let missing = try run(["check", "nope.graph"])
        #expect(missing.status == 1 && missing.stderr == "error: cannot read 'nope.graph': no such file\n")
        let dim = try run(["check", "Graphs/resnet-50.graph", "--context", "8"])
        #expect(dim.status == 1 && dim.stderr.contains("--context: 'Graphs/resnet-50.graph' has no symbolic dimension 'ctx' (it declares: batch)"))
        let flag = try run(["check", "Graphs/tiny-llama.graph", "--dim", "ctx"])
        #expect(flag.status == 64 && flag.stderr.contains("--dim expects name=value"))
        let zero = try run(["check", "Graphs/tiny-llama.graph", "--context", "0"])
        #expect(zero.status == 64)
    }

    @Test("import hf writes the graph atomically with -o, and a refused config leaves no file")
    func importHF() throws {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("m.graph")
        let ok = try run(["import", "hf", "Graphs/hf-configs/qwen2-1.5b.json", "-o", out.path])
        #expect(ok.status == 0)
        let written = try String(contentsOf: out, encoding: .utf8)
        #expect(written.contains("weight q_bias[l]"))
        #expect(try run(["check", out.path]).stdout.contains("parameters  1,543,714,304"))

        let moe = dir.appendingPathComponent("moe.json")
        try """
        {"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "vocab_size": 100, "num_local_experts": 8}
        """.write(to: moe, atomically: true, encoding: .utf8)
        let target = dir.appendingPathComponent("moe.graph")
        let refused = try run(["import", "hf", moe.path, "-o", target.path])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("moe.json:2:47: error: 'num_local_experts' asks for mixture of experts"))
        #expect(!FileManager.default.fileExists(atPath: target.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["m.graph", "moe.json"])
        // check on the same config refuses it the same way
        #expect(try run(["check", moe.path]).status == 1)
    }

    /// A bf16 checkpoint's config imported with f32 activations compiles to generated code with
    /// q4_0 weights (without the option, codegen stops at the bf16 caches), and a dtype other
    /// than f32 is refused.
    @Test("import hf --activations f32: SmolLM2-135M compiles to generated code; other dtypes are refused")
    func importF32Activations() throws {
        let dir = try temporaryDirectory()
        let graph = dir.appendingPathComponent("smol.graph")
        let imported = try run(["import", "hf", "Graphs/hf-configs/smollm2-135m.json", "--activations", "f32", "-o", graph.path])
        #expect(imported.status == 0, "\(imported.stderr)")
        let compiled = try run(["compile", graph.path, "--context", "64", "--solver", "msa", "--weight-dtype", "q4_0", "-o", dir.appendingPathComponent("out").path])
        #expect(compiled.status == 0 && compiled.stdout.contains("codegen   Kernels.swift")
                && compiled.stdout.contains("layout    210 of 210 q4_0 weights as q4_0x16"), "\(compiled.stdout)\(compiled.stderr)")
        // Without the option the plan is written but codegen stops at the first bf16 activation, and says how to get code.
        let bf16 = dir.appendingPathComponent("smol-bf16.graph")
        #expect(try run(["import", "hf", "Graphs/hf-configs/smollm2-135m.json", "-o", bf16.path]).status == 0)
        let planned = try run(["compile", bf16.path, "--context", "64", "--solver", "msa", "-o", dir.appendingPathComponent("bf16").path])
        #expect(planned.status == 0 && planned.stdout.contains("codegen   none: 'logits#0' is bf16")
                && planned.stdout.contains("(a graph imported with `kvplan import hf --activations f32` has f32 inputs, outputs and caches)"), "\(planned.stdout)")
        let refused = try run(["import", "hf", "Graphs/hf-configs/smollm2-135m.json", "--activations", "bf16"])
        #expect(refused.status == 64 && refused.stderr.contains("--activations: expected f32, got 'bf16'"), "\(refused.stderr)")
    }

    @Test("--dump-ir prints the golden IR")
    func dumpIR() throws {
        let r = try run(["check", "Graphs/tiny-llama.graph", "--dump-ir"])
        let golden = try String(contentsOf: Self.root.appendingPathComponent("Tests/KVGraphTests/Golden/tiny-llama.ir"), encoding: .utf8)
        #expect(r.status == 0 && r.stdout == golden)
    }

    @Test("allocate: exit 0 within capacity and writes the placement; 3 when none fits; 1 with the line on bad input")
    func allocate() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("buffers.csv")
        // LOAD 50; b0 and b2 can share bytes because their lifetimes only touch.
        try "id,lower,upper,size\nb0,0,4,10\nb1,2,6,20\nb2,4,8,30\n".write(to: input, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("placed.csv")
        let fits = try run(["allocate", input.path, "--capacity", "50", "-o", out.path])
        #expect(fits.status == 0)
        #expect(fits.stdout.contains("LOAD      50 B"))
        #expect(fits.stdout.contains("fits within the capacity"))
        let placed = try String(contentsOf: out, encoding: .utf8)
        #expect(placed.hasPrefix("id,lower,upper,size,offset\nb0,0,4,10,"))
        #expect(placed.split(separator: "\n").count == 4)

        let tooSmall = try run(["allocate", input.path, "--capacity", "49"])
        #expect(tooSmall.status == 3)
        #expect(tooSmall.stdout.contains("below LOAD"))

        let minimized = try run(["allocate", input.path, "--algorithm", "greedy-size"])
        #expect(minimized.status == 0)
        #expect(minimized.stdout.contains("height"))

        try "id,lower,upper,size\nb0,0,4,10\nb0,2,6,20\n".write(to: input, atomically: true, encoding: .utf8)
        let bad = try run(["allocate", input.path, "--capacity", "1KiB", "-o", out.path])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("buffers.csv:3:1: duplicate id 'b0' (first on line 2)"))
        // The earlier output is left as it was: nothing half-written.
        #expect(try String(contentsOf: out, encoding: .utf8) == placed)

        let usage = try run(["allocate", input.path, "--algorithm", "magic"])
        #expect(usage.status == 1)
        #expect(usage.stderr.contains("unknown 'magic'"))
        let technique = try run(["allocate", input.path, "--disable", "luck"])
        #expect(technique.status == 1 && technique.stderr.contains("unknown technique 'luck'"))
    }

    @Test("bench allocate runs a small suite and reports every algorithm")
    func benchAllocate() throws {
        let r = try run(["bench", "allocate", "--sizes", "20", "--per-size", "1", "--time-limit", "2"])
        #expect(r.status == 0)
        for name in ["greedy-size", "greedy-conflicts", "best-fit", "exact"] { #expect(r.stdout.contains("| \(name) | 2 |")) }
        #expect(r.stdout.contains("| exact | 2 | 2/2 (100%)"))
    }

    @Test("bench allocate --instances runs a directory; capacity from NAME.CAPACITY.csv, --capacity, or LOAD")
    func benchInstances() throws {
        let dir = try temporaryDirectory()
        // Two buffers live together (LOAD 30) and one alone.
        try "buffer,start,end,size\n0,0,4,10\n1,2,6,20\n2,6,8,5\n".write(to: dir.appendingPathComponent("pair.30.csv"), atomically: true, encoding: .utf8)
        try "id,lower,upper,size\na,0,2,7\n".write(to: dir.appendingPathComponent("single.csv"), atomically: true, encoding: .utf8)
        let r = try run(["bench", "allocate", "--instances", dir.path, "--algorithms", "exact", "--time-limit", "2"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("| pair.30 | 1 | 1/1 (100%)"))
        #expect(r.stdout.contains("| single | 1 | 1/1 (100%)"))
        let tooSmall = try run(["bench", "allocate", "--instances", dir.path, "--capacity", "29", "--algorithms", "greedy-size"])
        #expect(tooSmall.status == 0)
        #expect(tooSmall.stdout.contains("| pair.30 | 1 | 0/1 (0%)"))
        let empty = try run(["bench", "allocate", "--instances", dir.appendingPathComponent("missing").path])
        #expect(empty.status == 1 && empty.stderr.contains("cannot read directory"))
        let stray = try run(["bench", "allocate", "--capacity", "1MiB"])
        #expect(stray.status == 1 && stray.stderr.contains("--capacity applies only with --instances"))
    }

    @Test("bench kernels refuses an unknown --family or a --threads outside 1...64 before measuring anything")
    func benchKernelsFamily() throws {
        let r = try run(["bench", "kernels", "--family", "convolutions"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--family: expected one of all, gemv, attention, rowwise, got 'convolutions'"))
        #expect(r.stdout.isEmpty)
        for bad in ["0", "65"] {
            let t = try run(["bench", "kernels", "--threads", bad])
            #expect(t.status == 64 && t.stderr.contains("--threads: expected 1...64, got \(bad)") && t.stdout.isEmpty)
        }
    }

    @Test("bench kernels' attention options are refused outside the attention family, with an unknown shape or a missing --sources directory")
    func benchKernelsAttentionOptions() throws {
        for flag in [["--attention-shape", "gqa-l2"], ["--save-sources", "/tmp/x"], ["--sources", "/tmp"], ["--no-scalar-timing"]] {
            let r = try run(["bench", "kernels", "--family", "gemv"] + flag)
            #expect(r.status == 64 && r.stderr.contains("\(flag[0]) applies only to the attention family (--family attention or all), not 'gemv'") && r.stdout.isEmpty,
                    "\(flag): \(r.stderr)")
        }
        let shape = try run(["bench", "kernels", "--family", "attention", "--attention-shape", "gqa"])
        #expect(shape.status == 64 && shape.stderr.contains("--attention-shape: expected one of gqa-l2, gqa-dram, mha-l2, mha-dram, got 'gqa'"))
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let same = try run(["bench", "kernels", "--family", "attention", "--sources", dir.path, "--save-sources", dir.path + "/."])
        #expect(same.status == 64 && same.stderr.contains("--save-sources and --sources name the same directory") && same.stdout.isEmpty, "\(same.stderr)")
        let missing = try run(["bench", "kernels", "--family", "attention", "--sources", "/nonexistent/kvplan-sources"])
        #expect(missing.status == 1 && missing.stderr.contains("--sources: '/nonexistent/kvplan-sources' is not a directory") && missing.stdout.isEmpty)
    }

    @Test("bench kernels saves an attention shape's emitted kernels, times an edited copy (its row says so) and names the edited file's line when it does not compile")
    func benchKernelsEditedAttention() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let saved = dir.appendingPathComponent("emitted")
        let base = ["bench", "kernels", "--family", "attention", "--attention-shape", "mha-l2", "--no-scalar-timing"]
        let first = try run(base + ["--save-sources", saved.path])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.split(separator: "\n").contains { $0.hasPrefix("host: ") && $0.contains("logical CPU") }, "\(first.stdout)")
        let row = first.stdout.split(separator: "\n").filter { $0.hasPrefix("| attention") }
        #expect(row.count == 1 && row[0].hasPrefix("| attention MHA, 4-bit K/V (L2) | ctx 512, 2/2 heads, d 128 | 160 KiB |"), "\(first.stdout)")
        #expect(row.first?.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }[5] == "–")  // the scalar loop was not timed
        let source = try String(contentsOf: saved.appendingPathComponent("attention-mha-l2.swift"), encoding: .utf8)
        #expect(source.hasPrefix("// Generated by kvplan (KVCodegen)") && source.contains("\nfunc k0("))
        #expect(!FileManager.default.fileExists(atPath: saved.appendingPathComponent("attention-gqa-l2.swift").path))  // only the shapes measured

        let edits = dir.appendingPathComponent("edited")
        try FileManager.default.createDirectory(at: edits, withIntermediateDirectories: true)
        let none = try run(base + ["--sources", edits.path])  // no file for the shape: the emitted kernels, said so
        #expect(none.status == 0 && none.stderr.contains("note: --sources: no '\(edits.path)/attention-mha-l2.swift'; the emitted kernels are timed for mha-l2"))
        #expect(none.stdout.contains("| attention MHA, 4-bit K/V (L2) |"))
        let file = edits.appendingPathComponent("attention-mha-l2.swift")
        try (source + "\n// an edit that changes nothing the kernels compute\n").write(to: file, atomically: true, encoding: .utf8)
        let edited = try run(base + ["--sources", edits.path])
        #expect(edited.status == 0, "\(edited.stderr)")
        #expect(edited.stdout.contains("| attention MHA, 4-bit K/V (L2) [edited source] |"))
        #expect(edited.stderr.contains("note: timing the kernels in '\(file.path)' for mha-l2, not the emitted ones"))
        #expect(!edited.stderr.contains("differ by"))  // the same kernels: the scalar loop agrees

        let lines = source.split(separator: "\n", omittingEmptySubsequences: false).count
        try (source + "func broken( {\n").write(to: file, atomically: true, encoding: .utf8)
        let broken = try run(base + ["--sources", edits.path])
        #expect(broken.status == 1 && broken.stdout.isEmpty)
        #expect(broken.stderr.contains("error: \(file.path): swiftc failed"), "\(broken.stderr)")
        #expect(broken.stderr.contains("\(file.path):\(lines):"), "\(broken.stderr)")  // swiftc's positions point into the user's file
    }

    @Test("bench run refuses --tokens and --threads out of range before loading or measuring anything")
    func benchRunRanges() throws {
        for (flag, bad, range) in [("--tokens", "0", "1...100000"), ("--threads", "0", "1...64"), ("--threads", "65", "1...64")] {
            let t = try run(["bench", "run", "Generated/tiny-llama/cpu", flag, bad])
            #expect(t.status == 64 && t.stderr.contains("\(flag): expected \(range), got \(bad)") && t.stdout.isEmpty, "\(flag) \(bad): \(t.stderr)")
        }
    }
}

@Suite("kvplan compile and verify")
struct CompileCLITests {
    let cli = CLITests()

    @Test("compile tiny-llama: verified, byte-identical twice; verify accepts it and rejects a tampered copy")
    func compileTiny() throws {
        let dir = try cli.temporaryDirectory()
        let a = dir.appendingPathComponent("a").path, b = dir.appendingPathComponent("b").path
        let graph = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let r = try cli.run(["compile", graph, "-o", a])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("tiny-llama on cpu"))
        #expect(try cli.run(["compile", graph, "-o", b]).status == 0)
        let first = try Data(contentsOf: URL(fileURLWithPath: a + "/plan.json"))
        #expect(first == (try Data(contentsOf: URL(fileURLWithPath: b + "/plan.json"))))
        #expect(try cli.run(["verify", a]).status == 0)

        // Tamper: claim one byte more on a link than the transfers add up to.
        var text = String(decoding: first, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"dram->scratchpad\" : ", with: "\"dram->scratchpad\" : 1")
        try text.write(toFile: b + "/plan.json", atomically: true, encoding: .utf8)
        let bad = try cli.run(["verify", b])
        #expect(bad.status == 1 && bad.stderr.contains("totals: link dram->scratchpad"))
    }

    @Test("compile --schedule optimize searches the order of a branching graph, says what it did, and the plan verifies")
    func scheduleOptimize() throws {
        let dir = try cli.temporaryDirectory()
        let nasnet = CLITests.root.appendingPathComponent("Graphs/nasnet-a.graph").path
        let r = try cli.run(["compile", nasnet, "--target", "edge-npu", "--solver", "msa", "--schedule", "optimize", "-o", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("order     optimized:"), "\(r.stdout)")
        #expect(try cli.run(["verify", dir.path]).status == 0)
    }

    @Test("compile with a KV budget: per-layer table, baselines, plan.json carries the layouts; bad KV input is refused")
    func kvBudget() throws {
        let dir = try cli.temporaryDirectory()
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let r = try cli.run(["compile", tiny, "--kv-ratio", "0.25", "--solver", "msa", "-o", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("kv        exact (optimal)") && r.stdout.contains("profile default") && r.stdout.contains("vs pyramid"), "\(r.stdout)")
        let json = try String(contentsOfFile: dir.path + "/plan.json", encoding: .utf8)
        #expect(json.contains("\"kv\"") && json.contains("\"keyBitsHigh\""))
        #expect(try cli.run(["verify", dir.path]).status == 0)
        let small = try cli.run(["compile", tiny, "--kv-budget", "1KiB", "-o", dir.path + "/x"])
        #expect(small.status == 1 && small.stderr.contains("below the minimum of 36864 B"), "\(small.stderr)")
        #expect(try cli.run(["compile", tiny, "--kv-policy", "best"]).stderr.contains("--kv-policy: expected exact"))
        #expect(try cli.run(["compile", tiny, "--kv-ratio", "1.5"]).stderr.contains("--kv-ratio: expected a fraction"))
        #expect(try cli.run(["compile", tiny, "--kv-ratio", "0.5", "--kv-tokens", "10"]).stderr.contains("at most one of"))
        let bad = dir.appendingPathComponent("bad.json").path
        try #"{"version": 1, "model": "x", "referenceContext": 4096, "layers": [{"retention": [[0, 0], [1, 1]], "keyError": {"8": 0.1}}]}"#
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let p = try cli.run(["compile", tiny, "--profile", bad])
        #expect(p.status == 1 && p.stderr.contains("missing 'valueError' at layers[0]"), "\(p.stderr)")
        #expect(try cli.run(["compile", tiny, "--profile-family", "bumpy"]).stderr.contains("--profile-family: expected standard, flat"))
        #expect(try cli.run(["compile", tiny, "--profile", bad, "--profile-family", "flat"]).stderr.contains("not both"))
        #expect(try cli.run(["compile", tiny, "--kv-precision", "fp8"]).stderr.contains("--kv-precision: expected any, evict"))
        #expect(try cli.run(["compile", tiny, "--kv-policy", "kivi4", "--kv-precision", "mixed"]).stderr.contains("not to kivi4"))
        let family = try cli.run(["compile", tiny, "--profile-family", "prefixkv-shape", "--kv-ratio", "0.2", "--solver", "msa", "-o", dir.path + "/f"])
        #expect(family.status == 0 && family.stdout.contains("profile family prefixkv-shape"), "\(family.stderr)")
        // A DRAM that holds the weights but not the sinks and windows: the default budget is refused with the figures.
        let cpu = try String(contentsOf: CLITests.root.appendingPathComponent("Graphs/targets/cpu.hw"), encoding: .utf8)
        let hw = dir.appendingPathComponent("small-dram.hw").path
        try cpu.replacingOccurrences(of: "capacity=24GiB", with: "capacity=12MiB").write(toFile: hw, atomically: true, encoding: .utf8)
        let room = try cli.run(["compile", tiny, "--target", hw, "--kv-policy", "exact", "-o", dir.path + "/r"])
        #expect(room.status == 1 && room.stderr.contains("the KV cache needs at least 36864 B. Give --kv-budget"), "\(room.stderr)")
        // An explicit budget beyond that DRAM spills: the table names the tiers and the summary the link time.
        let spill = try cli.run(["compile", tiny, "--target", hw, "--kv-ratio", "1", "--solver", "msa", "-o", dir.path + "/s"])
        #expect(spill.status == 0 && spill.stdout.contains("of KV lives beyond dram") && spill.stdout.contains("per step over host->dram"), "\(spill.stdout)\(spill.stderr)")
    }

    @Test("compile refuses what it cannot plan, naming the op and bytes, and writes nothing")
    func refusals() throws {
        let dir = try cli.temporaryDirectory()
        let out = dir.appendingPathComponent("x").path
        // A 1 KiB scratchpad cannot hold even one row of tiny-llama's norms with their weight.
        let cpu = try String(contentsOf: CLITests.root.appendingPathComponent("Graphs/targets/cpu.hw"), encoding: .utf8)
        let small = cpu.replacingOccurrences(of: "capacity=1MiB", with: "capacity=1KiB")
        let hw = dir.appendingPathComponent("small.hw").path
        try small.write(toFile: hw, atomically: true, encoding: .utf8)
        let tinyGraph = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        let r = try cli.run(["compile", tinyGraph, "--target", hw, "-o", out])
        #expect(r.status == 1)
        #expect(r.stderr.contains("cannot plan on") && r.stderr.contains("B at once") && r.stderr.contains("1024 B compute tier"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/plan.json"))
        let tiny = CLITests.root.appendingPathComponent("Graphs/tiny-llama.graph").path
        #expect(try cli.run(["compile", tiny, "--objective", "speed"]).stderr.contains("--objective: expected time or traffic"))
        #expect(try cli.run(["compile", tiny, "--target", "moon"]).stderr.contains("neither a preset"))
        #expect(try cli.run(["compile", tiny, "--schedule", "sideways"]).stderr.contains("--schedule: expected fixed or optimize"))
        #expect(try cli.run(["compile", tiny, "--addresses", "later"]).stderr.contains("--addresses: expected packed or joint"))
        #expect(try cli.run(["verify", dir.path]).status == 1)
    }
}

@Suite("kvplan inspect")
struct InspectCLITests {
    let cli = CLITests()

    @Test("inspect: tables on stdout, --json, --op/--tensor traces; unknown names suggest, bad input exits 1 or 64")
    func inspect() throws {
        let dir = "Generated/tiny-llama/cpu"
        let text = try cli.run(["inspect", dir])
        #expect(text.status == 0 && text.stderr.isEmpty, "\(text.stderr)")
        #expect(text.stdout.hasPrefix("tiny-llama on cpu: 63 steps"))
        for section in ["tiers", "links", "time", "KV cache", "10 costliest transfers", "10 ops with the highest time"] {
            #expect(text.stdout.contains("\n\(section)"), "missing \(section)")
        }
        let json = try cli.run(["inspect", dir, "--json", "--top", "3"])
        #expect(json.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((object?["costliestOps"] as? [Any])?.count == 3)
        let op = try cli.run(["inspect", dir, "--op", "a[0]"])
        #expect(op.status == 0 && op.stdout.hasPrefix("op a[0]:"))
        let tensor = try cli.run(["inspect", dir, "--tensor", "up_proj[0]", "--json"])
        #expect(tensor.status == 0 && tensor.stdout.contains("\"subject\" : \"tensor\""))
        let typo = try cli.run(["inspect", dir, "--op", "a[9]"])
        #expect(typo.status == 1 && typo.stdout.isEmpty && typo.stderr.contains("has no op 'a[9]'; did you mean 'a[0]'"), "\(typo.stderr)")
        let missing = try cli.run(["inspect", "no/such/dir"])
        #expect(missing.status == 1 && missing.stderr.contains("no such directory 'no/such/dir'"))
        let notArtifact = try cli.run(["inspect", "Graphs"])
        #expect(notArtifact.status == 1 && notArtifact.stderr.contains("cannot read 'Graphs/plan.json'"))
        let both = try cli.run(["inspect", dir, "--op", "a[0]", "--tensor", "x"])
        #expect(both.status == 64)
        let tmp = try cli.temporaryDirectory()
        try "{\"version\": 1}".write(to: tmp.appendingPathComponent("plan.json"), atomically: true, encoding: .utf8)
        let corrupt = try cli.run(["inspect", tmp.path])
        #expect(corrupt.status == 1 && corrupt.stderr.contains("not a valid plan"))
    }

    @Test("inspect --diff: a comparison on stdout or as JSON; a missing OTHER and conflicting flags are refused")
    func diff() throws {
        let text = try cli.run(["inspect", "Generated/tiny-llama/cpu", "--diff", "Generated/tiny-llama/edge-npu"])
        #expect(text.status == 0 && text.stdout.contains("B is 41.4% faster than A"), "\(text.stdout)")
        let json = try cli.run(["inspect", "Generated/tiny-llama/cpu", "--diff", "Generated/tiny-llama/edge-npu", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((object?["tensorsChanged"] as? Int ?? 0) > 0)
        let missing = try cli.run(["inspect", "Generated/tiny-llama/cpu", "--diff", "no/such"])
        #expect(missing.status == 1 && missing.stderr.contains("--diff: no such directory 'no/such'"), "\(missing.stderr)")
        #expect(try cli.run(["inspect", "Generated/tiny-llama/cpu", "--diff", "Generated/tiny-llama/edge-npu", "--op", "a[0]"]).status == 64)
    }

    @Test("inspect --svg / --html: both files written, deterministic; a missing directory writes neither")
    func pictures() throws {
        let dir = "Generated/tiny-llama/cpu"
        let tmp = try cli.temporaryDirectory()
        let svg = tmp.appendingPathComponent("plan.svg").path, html = tmp.appendingPathComponent("plan.html").path
        let made = try cli.run(["inspect", dir, "--svg", svg, "--html", html])
        #expect(made.status == 0 && made.stdout.isEmpty && made.stderr.contains("wrote \(svg)"), "\(made.stderr)")
        let first = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(first.hasPrefix("<svg ") && first.contains("scratchpad: capacity 1.00 MiB"))
        #expect(try String(contentsOfFile: html, encoding: .utf8).contains("<h2>Ops (63)</h2>"))
        #expect(try cli.run(["inspect", dir, "--svg", svg]).status == 0)
        #expect(try String(contentsOfFile: svg, encoding: .utf8) == first)
        let other = tmp.appendingPathComponent("other.svg").path
        let missing = try cli.run(["inspect", dir, "--svg", other, "--html", "no/such/dir/x.html"])
        #expect(missing.status == 1 && missing.stderr.contains("directory 'no/such/dir' does not exist (nothing written)"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: other))
        let conflicting = try cli.run(["inspect", dir, "--svg", other, "--json"])
        #expect(conflicting.status == 64 && conflicting.stderr.contains("--svg and --html draw the whole plan"))
        #expect(!FileManager.default.fileExists(atPath: other))
    }
}

/// Progress lines: on a terminal only, erased before the command's own output.
@Suite("Progress on terminals")
struct ProgressTests {
    let cli = CLITests()

    @Test("compile off a terminal writes no progress; forced on, stages are drawn in place and erased")
    func compileProgress() throws {
        let tmp = try cli.temporaryDirectory()
        let args = ["compile", "Graphs/tiny-llama.graph", "--kv-ratio", "0.25", "-o", tmp.appendingPathComponent("a").path]
        let quiet = try cli.run(args)
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
        let shown = try cli.run(args, environment: ["KVPLAN_PROGRESS": "always"])
        #expect(shown.status == 0)
        for stage in ["compile 0.", " · KV budget", " · placing (ilp + baselines)", " · verifying the plan", " · emitting kernels and schedule"] {
            #expect(shown.stderr.contains(stage), "missing '\(stage)' in \(shown.stderr.debugDescription)")
        }
        #expect(shown.stderr.hasSuffix("\r\u{1B}[K"), "the line is erased at the end")
        #expect(!shown.stderr.contains("\n"), "progress never scrolls")
        // The command's own output is the same (up to its measured planning time).
        #expect(shown.stdout.split(separator: "\n").count == quiet.stdout.split(separator: "\n").count)
        #expect(shown.stdout.split(separator: "\n").first == quiet.stdout.split(separator: "\n").first)
    }

    @Test("on a real terminal (util-linux script) allocate shows its search and erases it; never with KVPLAN_PROGRESS=never")
    func terminal() throws {
        let script = "/usr/bin/script"
        try #require(FileManager.default.isExecutableFile(atPath: script), "util-linux's script (Debian: bsdutils, essential) is missing")
        let tmp = try cli.temporaryDirectory()
        let csv = tmp.appendingPathComponent("b.csv").path
        try "id,size,start,end\na,10,0,2\nb,20,1,3\nc,5,2,4\n".write(toFile: csv, atomically: true, encoding: .utf8)
        func underTerminal(_ prefix: String) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: script)
            p.arguments = ["-qfec", "\(prefix)\(CLITests.binary.path) allocate \(csv) --minimize", "/dev/null"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            return String(decoding: data, as: UTF8.self)
        }
        let shown = try underTerminal("")
        #expect(shown.contains("\r\u{1B}[Kallocate 0.0 s · exact search · 3 buffers\r\u{1B}[Kbuffers   3"), "\(shown.debugDescription)")
        let hidden = try underTerminal("KVPLAN_PROGRESS=never ")
        #expect(!hidden.contains("\u{1B}[K") && hidden.contains("buffers   3"))
    }
}
