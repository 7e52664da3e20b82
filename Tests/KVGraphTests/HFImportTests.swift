import Foundation
import Testing
@testable import KVGraph

@Suite("Hugging Face import")
struct HFImportTests {
    /// Published parameter counts (Graphs/hf-configs, shared/model-configs/README.md).
    static let published: [String: Int] = [
        "llama-2-7b": 6_738_415_616, "llama-2-13b": 13_015_864_320, "llama-2-70b": 68_976_648_192,
        "llama-3.1-8b": 8_030_261_248, "mistral-7b-v0.1": 7_241_732_096, "tinyllama-1.1b": 1_100_048_384,
        "smollm2-135m": 134_515_008, "qwen2-1.5b": 1_543_714_304, "gpt2": 124_439_808, "gpt2-medium": 354_823_168,
    ]

    func importFile(_ name: String) throws -> String {
        let path = repositoryRoot.appendingPathComponent("Graphs/hf-configs/\(name).json").path
        return try HFImporter.importConfig(String(contentsOfFile: path, encoding: .utf8), path: path)
    }

    @Test("every config imports, checks, and has exactly its published parameter count",
          arguments: published.keys.sorted())
    func parameterCounts(_ name: String) throws {
        let g = lower(try importFile(name))!
        #expect(g.warnings.isEmpty)
        #expect(GraphSummary(g.graph).parameters == Self.published[name])
    }

    /// `--activations f32`: what generated kernels compute in. Weights keep the checkpoint's
    /// dtype (so the parameter count is the published one); the embedding's output and every
    /// KV cache become f32, and without the option the checkpoint's dtype stays everywhere.
    @Test("--activations f32: embedding outputs and caches in f32, weights as in the checkpoint, parameters unchanged",
          arguments: ["smollm2-135m", "qwen2-1.5b", "mistral-7b-v0.1", "gpt2"])
    func f32Activations(_ name: String) throws {
        let path = repositoryRoot.appendingPathComponent("Graphs/hf-configs/\(name).json").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let g = lower(try HFImporter.importConfig(text, path: path, f32Activations: true), dimensions: ["ctx": 64])!.graph
        #expect(GraphSummary(g).parameters == Self.published[name])
        let caches = g.tensors.filter { $0.kind == .cache }
        #expect(!caches.isEmpty && caches.allSatisfy { $0.dtype == .f32 })
        for op in g.ops where op.kind == .embed { #expect(g.tensors[op.results[0]].dtype == .f32) }
        let shipped = lower(try HFImporter.importConfig(text, path: path), dimensions: ["ctx": 64])!.graph
        let checkpoint = shipped.tensors.first { $0.kind == .weight }!.dtype
        #expect(g.tensors.filter { $0.kind == .weight }.allSatisfy { $0.dtype == checkpoint })
        #expect(shipped.tensors.filter { $0.kind == .cache }.allSatisfy { $0.dtype == checkpoint })
    }

    @Test("imported models keep their structure: GQA caches, sliding window, llama3 scaling, biases")
    func structure() throws {
        let mistral = lower(try importFile("mistral-7b-v0.1"), dimensions: ["ctx": 32768])!.graph
        #expect(mistral.tensor(named: "k_cache[0]")!.shape.sizes == [1, 4096, 8, 128])
        #expect(mistral.ops.first { $0.kind == .attention }!.attribute("window") == .int(4096))
        let llama3 = lower(try importFile("llama-3.1-8b"))!.graph
        #expect(llama3.ops.first { $0.kind == .rope }!.attribute("scaling") == .string("llama3"))
        #expect(llama3.tensor(named: "k_cache[31]")!.shape.sizes == [1, 131072, 8, 128])
        let qwen = lower(try importFile("qwen2-1.5b"))!.graph
        #expect(qwen.tensor(named: "q_bias[0]") != nil && qwen.tensor(named: "lm_head") == nil)
        let gpt2 = lower(try importFile("gpt2"))!.graph
        #expect(gpt2.tensor(named: "wpe")!.shape.sizes == [1024, 768])
        #expect(gpt2.ops.first { $0.kind == .gelu }!.attribute("approximate") == .string("tanh"))
    }

    @Test("committed imported graphs are up to date (KVPLAN_RECORD=1 re-records)",
          arguments: [("llama-2-7b", "llama-2-7b"), ("llama-3.1-8b", "llama-3.1-8b"), ("mistral-7b-v0.1", "mistral-7b"), ("gpt2", "gpt2")])
    func upToDate(_ pair: (String, String)) throws {
        let url = repositoryRoot.appendingPathComponent("Graphs/\(pair.1).graph")
        let fresh = try importFile(pair.0).replacingOccurrences(of: repositoryRoot.path + "/Graphs/hf-configs/", with: "")
        if isRecording { try fresh.write(to: url, atomically: true, encoding: .utf8) }
        #expect(try String(contentsOf: url, encoding: .utf8) == fresh, "Graphs/\(pair.1).graph is stale")
    }

    func refusal(_ json: String) -> String {
        do {
            _ = try HFImporter.importConfig(json, path: "config.json")
            return "imported"
        } catch {
            return "\(error.location): \(error.message)"
        }
    }

    static let llama = """
    {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
     "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "EXTRA": 1}
    """

    @Test("unmodelled features are refused at the field that asks for them")
    func refusals() {
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"x\": 0")) == "imported")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"num_local_experts\": 8")) ==
                "2:71: 'num_local_experts' asks for mixture of experts, which kvplan does not model")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"kv_lora_rank\": 512")) ==
                "2:71: 'kv_lora_rank' asks for multi-head latent attention, which kvplan does not model")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"final_logit_softcapping\": 30.0")) ==
                "2:71: 'final_logit_softcapping' asks for final logit soft-capping, which kvplan does not model")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}")) ==
                "2:101: 'rope_scaling.rope_type' \"yarn\" is not modelled (only \"llama3\" and \"default\")")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"rope_parameters\": {\"rope_theta\": 1e6, \"rope_type\": \"yarn\"}")) ==
                "2:123: 'rope_parameters.rope_type' \"yarn\" is not modelled (only \"llama3\" and \"default\")")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"rope_parameters\": [10000]")) ==
                "2:90: 'rope_parameters' must be an object or null")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: "\"hidden_act\": \"gelu\"")) ==
                "2:85: 'hidden_act' \"gelu\" is not modelled for LlamaForCausalLM (only \"silu\", the SwiGLU feed-forward)")
        #expect(refusal(Self.llama.replacingOccurrences(of: "LlamaForCausalLM", with: "GemmaForCausalLM")) ==
                "1:20: unsupported architecture 'GemmaForCausalLM' in 'architectures'; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"vocab_size\": 100, ", with: "")) == "1:1: missing required field 'vocab_size'")
        #expect(refusal(Self.llama.replacingOccurrences(of: "\"num_hidden_layers\": 2", with: "\"num_hidden_layers\": \"2\"")) ==
                "2:23: 'num_hidden_layers' must be an integer, found a string")
        #expect(refusal("{\"architectures\": [\"LlamaForCausalLM\"],}") == "1:40: expected a quoted key")
        #expect(refusal("[1]") == "1:1: a config.json must be a JSON object, found an array")
    }

    /// transformers ≥ 5 saves RoPE settings as `rope_parameters` ({rope_theta, rope_type, …}); an
    /// importer reading only `rope_theta` would silently build a model with theta 10000.
    @Test("transformers 5 configs: theta and llama3 scaling come from rope_parameters; type default is unscaled")
    func ropeParameters() throws {
        func rope(_ extra: String) throws -> Op {
            let text = try HFImporter.importConfig(Self.llama.replacingOccurrences(of: "\"EXTRA\": 1", with: extra), path: "config.json")
            return lower(text)!.graph.ops.first { $0.kind == .rope }!
        }
        let plain = try rope("\"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"default\"}")
        #expect(plain.attribute("theta") == .float(500000) && plain.attribute("scaling") == nil)
        let scaled = try rope("""
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
            """)
        #expect(scaled.attribute("theta") == .float(500000) && scaled.attribute("scaling") == .string("llama3"))
        #expect(scaled.attribute("factor") == .float(8) && scaled.attribute("original_max_positions") == .int(8192))
        let older = try rope("\"rope_theta\": 250000.0")
        #expect(older.attribute("theta") == .float(250000))
    }

    /// Issue 7: the bundled model's graph is what the importer makes of its trained checkpoint's
    /// config.json, so the runtime, the planner and transformers all see one model.
    @Test("kvplan import hf Graphs/tiny-llama/config.json reproduces Graphs/tiny-llama.graph byte for byte")
    func tinyLlama() throws {
        let config = repositoryRoot.appendingPathComponent("Graphs/tiny-llama/config.json").path
        let fresh = try HFImporter.importConfig(String(contentsOfFile: config, encoding: .utf8), path: config)
        let url = repositoryRoot.appendingPathComponent("Graphs/tiny-llama.graph")
        if isRecording { try fresh.write(to: url, atomically: true, encoding: .utf8) }
        #expect(try String(contentsOf: url, encoding: .utf8) == fresh, "Graphs/tiny-llama.graph is stale")
        let g = lower(fresh)!.graph
        #expect(GraphSummary(g).parameters == 2_951_424)  // the checkpoint's tensors, counted by torch
    }
}
