// HFImporter: a Hugging Face `config.json` → a .graph decode step.
//
// What it solves: real models in. The importer writes .graph source (not IR
// directly) so that what kvplan plans is something a user can read, diff and
// edit, and so imported models go through the same checker as hand-written
// ones.
//
// Scope: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and
// GPT2LMHeadModel, with the fields listed in Docs/hf-import.md. Anything that
// changes the computation and is not modelled — mixture of experts, latent
// attention, q/k norms, logit soft-capping, other RoPE scalings, other
// activations, unknown architectures — is refused with an error at the field
// that asks for it, never silently approximated. Weight names and layouts
// follow the checkpoints' tensor names (`model.layers.N.self_attn.q_proj` →
// `q_proj[N]`, [out, in]) so a later loader maps them one to one.

/// A config that cannot be imported, with the field's position.
public struct ImportError: Error, Sendable {
    /// Where in the config.
    public var location: SourceLocation
    /// Why.
    public var message: String
}

/// Imports Hugging Face model configs.
public enum HFImporter {
    /// Architectures the importer models.
    public static let supportedArchitectures = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel"]

    /// Fields whose presence (with a non-null, non-zero, non-false value) means a computation the importer does not model.
    static let refusedFields: [(String, String)] = [
        ("num_local_experts", "mixture of experts"), ("num_experts", "mixture of experts"),
        ("n_routed_experts", "mixture of experts"), ("num_experts_per_tok", "mixture of experts"),
        ("moe_intermediate_size", "mixture of experts"),
        ("kv_lora_rank", "multi-head latent attention"), ("q_lora_rank", "multi-head latent attention"),
        ("qk_norm", "q/k normalisation"), ("use_qk_norm", "q/k normalisation"), ("qk_layernorm", "q/k normalisation"),
        ("attn_logit_softcapping", "attention logit soft-capping"),
        ("final_logit_softcapping", "final logit soft-capping"),
    ]

    /// Parses `text` (the contents of `path`) and returns .graph source, or the first problem.
    /// `f32Activations`: the embedding's output and the KV caches in f32 whatever the checkpoint's
    /// dtype (weights keep it) — what generated kernels compute in, so `kvplan run` can run it.
    public static func importConfig(_ text: String, path: String, f32Activations: Bool = false) throws(ImportError) -> String {
        let root: JSONValue
        do { root = try JSONReader.parse(text) } catch {
            throw ImportError(location: error.location, message: error.message)
        }
        guard case .object = root else {
            throw ImportError(location: root.location, message: "a config.json must be a JSON object, found \(root.typeName)")
        }
        let c = Config(root: root)
        for (field, what) in refusedFields {
            if let v = root[field], c.isActive(v) {
                throw ImportError(location: root.keyLocation(field)!, message: "'\(field)' asks for \(what), which kvplan does not model")
            }
        }
        guard let archValue = root["architectures"] else {
            throw ImportError(location: root.location, message: "missing field 'architectures' (one of \(supportedArchitectures.joined(separator: ", ")))")
        }
        guard case let .array(items, _) = archValue, items.count == 1, case let .string(arch, archLoc) = items[0] else {
            throw ImportError(location: archValue.location, message: "'architectures' must be a list with exactly one architecture name")
        }
        let source = path.split(separator: "/").last.map(String.init) ?? path
        switch arch {
        case "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM":
            return try LlamaFamily(c: c, architecture: arch, source: source, f32Activations: f32Activations).emit()
        case "GPT2LMHeadModel":
            return try GPT2(c: c, source: source, f32Activations: f32Activations).emit()
        default:
            throw ImportError(location: archLoc, message: "unsupported architecture '\(arch)' in 'architectures'; supported: \(supportedArchitectures.joined(separator: ", "))")
        }
    }
}

/// Typed field access with positioned errors.
struct Config {
    let root: JSONValue

    func isActive(_ v: JSONValue) -> Bool {
        switch v {
        case .null: return false
        case let .bool(b, _): return b
        case let .number(n, _): return Double(n) != 0
        case let .array(a, _): return !a.isEmpty
        default: return true
        }
    }

    func missing(_ field: String) -> ImportError {
        ImportError(location: root.location, message: "missing required field '\(field)'")
    }

    func int(_ field: String, default d: Int? = nil, min lower: Int = 1) throws(ImportError) -> Int {
        guard let v = root[field], !v.isNull else {
            if let d { return d }
            throw missing(field)
        }
        guard case let .number(text, loc) = v, let i = Int(text) ?? Double(text).flatMap({ $0.rounded() == $0 && abs($0) < 9e15 ? Int($0) : nil }) else {
            throw ImportError(location: v.location, message: "'\(field)' must be an integer, found \(v.typeName)")
        }
        guard i >= lower else { throw ImportError(location: loc, message: "'\(field)' must be at least \(lower), got \(i)") }
        return i
    }

    func optionalInt(_ field: String) throws(ImportError) -> Int? {
        guard let v = root[field], !v.isNull else { return nil }
        return try int(field)
    }

    func double(_ field: String, default d: Double) throws(ImportError) -> Double {
        guard let v = root[field], !v.isNull else { return d }
        guard case let .number(text, _) = v, let x = Double(text) else {
            throw ImportError(location: v.location, message: "'\(field)' must be a number, found \(v.typeName)")
        }
        return x
    }

    func bool(_ field: String, default d: Bool) throws(ImportError) -> Bool {
        guard let v = root[field], !v.isNull else { return d }
        guard case let .bool(b, _) = v else {
            throw ImportError(location: v.location, message: "'\(field)' must be true or false, found \(v.typeName)")
        }
        return b
    }

    func string(_ field: String) throws(ImportError) -> (String, SourceLocation)? {
        guard let v = root[field], !v.isNull else { return nil }
        guard case let .string(s, loc) = v else {
            throw ImportError(location: v.location, message: "'\(field)' must be a string, found \(v.typeName)")
        }
        return (s, loc)
    }

    /// The weight/activation dtype from `torch_dtype` (f32 when absent).
    func dtype() throws(ImportError) -> String {
        guard let (s, loc) = try string("torch_dtype") else { return "f32" }
        switch s {
        case "float32": return "f32"
        case "float16": return "f16"
        case "bfloat16": return "bf16"
        default: throw ImportError(location: loc, message: "unsupported 'torch_dtype' \"\(s)\" (float32, float16 or bfloat16)")
        }
    }
}

/// Formats a double for .graph source so it reads back exactly.
func graphNumber(_ d: Double) -> String { formatFloat(d) }

/// Llama, Mistral and Qwen2: pre-norm decoder, RMSNorm, RoPE, GQA, SwiGLU.
struct LlamaFamily {
    let c: Config
    let architecture: String
    let source: String
    /// Embedding output and caches in f32 (`kvplan import hf --activations f32`).
    var f32Activations = false

    func emit() throws(ImportError) -> String {
        let hidden = try c.int("hidden_size")
        let ffn = try c.int("intermediate_size")
        let layers = try c.int("num_hidden_layers")
        let heads = try c.int("num_attention_heads")
        let vocab = try c.int("vocab_size")
        let kvHeads = try c.int("num_key_value_heads", default: heads)
        guard heads % kvHeads == 0 else {
            throw ImportError(location: c.root.keyLocation("num_key_value_heads")!, message: "'num_key_value_heads' (\(kvHeads)) must divide 'num_attention_heads' (\(heads))")
        }
        var headDim = hidden / heads
        if let hd = try c.optionalInt("head_dim") { headDim = hd }
        else if hidden % heads != 0 {
            throw ImportError(location: c.root.keyLocation("num_attention_heads")!, message: "'hidden_size' (\(hidden)) is not divisible by 'num_attention_heads' (\(heads)); give 'head_dim'")
        }
        guard headDim % 2 == 0 else {
            throw ImportError(location: c.root.location, message: "head size \(headDim) must be even for RoPE")
        }
        let defaultContext = architecture == "MistralForCausalLM" ? 131072 : (architecture == "Qwen2ForCausalLM" ? 32768 : 2048)
        let context = try c.int("max_position_embeddings", default: defaultContext)
        let eps = try c.double("rms_norm_eps", default: 1e-6)
        // transformers ≥ 5 writes RoPE settings in `rope_parameters` (theta, type, scaling).
        let ropeParameters = c.root["rope_parameters"].flatMap { $0.isNull ? nil : $0 }
        if let p = ropeParameters, case .object = p {} else if let p = ropeParameters {
            throw ImportError(location: p.location, message: "'rope_parameters' must be an object or null")
        }
        let thetaConfig = ropeParameters?["rope_theta"] != nil ? Config(root: ropeParameters!) : c
        let theta = try thetaConfig.double("rope_theta", default: 10000)
        guard theta > 1 else { throw ImportError(location: thetaConfig.root["rope_theta"]!.location, message: "'rope_theta' must be greater than 1") }
        let tied = try c.bool("tie_word_embeddings", default: false)
        let dtype = try c.dtype()
        if let (act, loc) = try c.string("hidden_act"), act != "silu" {
            throw ImportError(location: loc, message: "'hidden_act' \"\(act)\" is not modelled for \(architecture) (only \"silu\", the SwiGLU feed-forward)")
        }
        if let v = c.root["partial_rotary_factor"], try c.double("partial_rotary_factor", default: 1) != 1 {
            throw ImportError(location: v.location, message: "'partial_rotary_factor' other than 1 is not modelled")
        }
        if let v = c.root["rope_interleaved"], try c.bool("rope_interleaved", default: false) {
            throw ImportError(location: v.location, message: "'rope_interleaved' RoPE is not modelled")
        }
        let qkvBias = architecture == "Qwen2ForCausalLM" ? true : try c.bool("attention_bias", default: false)
        let oBias = architecture == "Qwen2ForCausalLM" ? false : qkvBias
        let mlpBias = try c.bool("mlp_bias", default: false)
        var window: Int?
        switch architecture {
        case "MistralForCausalLM":
            window = try c.optionalInt("sliding_window")
        case "Qwen2ForCausalLM":
            if try c.bool("use_sliding_window", default: false) {
                let w = try c.int("sliding_window")
                let from = try c.int("max_window_layers", default: layers, min: 0)
                if from < layers {
                    throw ImportError(location: c.root.keyLocation("max_window_layers") ?? c.root.location, message: "'use_sliding_window' with 'max_window_layers' (\(from)) below 'num_hidden_layers' (\(layers)) mixes windowed and full layers, which is not modelled")
                }
                _ = w
            }
        default:
            if let v = c.root["sliding_window"], !v.isNull {
                throw ImportError(location: v.location, message: "'sliding_window' is not part of \(architecture)")
            }
        }
        let rope = try ropeAttributes(theta: theta, parameters: ropeParameters)

        var g = "# \(architecture) imported by `kvplan import hf` from \(source).\n"
        g += "# One decode step: each sequence feeds one token, attends over its KV cache\n"
        g += "# (appending to it) and yields next-token logits. Weights keep the\n"
        g += "# checkpoint's [out, in] layout; `linear` multiplies by the transpose.\n"
        if f32Activations { g += "# Activations and KV caches in f32 (--activations f32); weights keep \(dtype).\n" }
        g += "\n"
        g += "let vocab = \(vocab)\nlet d_model = \(hidden)\nlet layers = \(layers)\nlet heads = \(heads)\n"
        g += "let kv_heads = \(kvHeads)\nlet head_dim = \(headDim)\nlet ffn = \(ffn)\n"
        g += "let eps = \(graphNumber(eps))\nlet theta = \(graphNumber(theta))\n"
        if let window { g += "let window = \(window)           # sliding_window\n" }
        g += "\ndim batch = 1\ndim ctx = \(context)           # max_position_embeddings\n\n"
        g += "input tokens: i32[batch]\ninput pos: i32[batch]\n\n"
        g += "weight embed_tokens: \(dtype)[vocab, d_model]\n"
        g += "x[0] = embed(embed_tokens, tokens\(f32Activations ? ", dtype=\"f32\"" : ""))\n\n"
        let cacheLen = window != nil ? "min(ctx, window)" : "ctx"
        let w = dtype, cache = f32Activations ? "f32" : dtype
        g += "for l in 0..<layers {\n"
        g += "  weight input_layernorm[l]: \(w)[d_model]\n"
        g += "  weight q_proj[l]: \(w)[heads * head_dim, d_model]\n"
        g += "  weight k_proj[l]: \(w)[kv_heads * head_dim, d_model]\n"
        g += "  weight v_proj[l]: \(w)[kv_heads * head_dim, d_model]\n"
        if qkvBias {
            g += "  weight q_bias[l]: \(w)[heads * head_dim]\n"
            g += "  weight k_bias[l]: \(w)[kv_heads * head_dim]\n"
            g += "  weight v_bias[l]: \(w)[kv_heads * head_dim]\n"
        }
        g += "  weight o_proj[l]: \(w)[d_model, heads * head_dim]\n"
        if oBias { g += "  weight o_bias[l]: \(w)[d_model]\n" }
        g += "  weight post_attention_layernorm[l]: \(w)[d_model]\n"
        g += "  weight gate_proj[l]: \(w)[ffn, d_model]\n"
        g += "  weight up_proj[l]: \(w)[ffn, d_model]\n"
        g += "  weight down_proj[l]: \(w)[d_model, ffn]\n"
        if mlpBias {
            g += "  weight gate_bias[l]: \(w)[ffn]\n  weight up_bias[l]: \(w)[ffn]\n  weight down_bias[l]: \(w)[d_model]\n"
        }
        g += "  cache k_cache[l]: \(cache)[batch, \(cacheLen), kv_heads, head_dim]\n"
        g += "  cache v_cache[l]: \(cache)[batch, \(cacheLen), kv_heads, head_dim]\n\n"
        func bias(_ on: Bool, _ name: String) -> String { on ? ", bias=\(name)[l]" : "" }
        g += "  h = rmsnorm(x[l], input_layernorm[l], eps=eps)\n"
        g += "  q = rope(linear(h, q_proj[l]\(bias(qkvBias, "q_bias"))), pos, heads=heads\(rope))\n"
        g += "  k = rope(linear(h, k_proj[l]\(bias(qkvBias, "k_bias"))), pos, heads=kv_heads\(rope))\n"
        g += "  v = linear(h, v_proj[l]\(bias(qkvBias, "v_bias")))\n"
        g += "  a = attention(q, k, v, k_cache[l], v_cache[l], heads=heads, kv_heads=kv_heads\(window != nil ? ", window=window" : ""))\n"
        g += "  r = add(x[l], linear(a, o_proj[l]\(bias(oBias, "o_bias"))))\n"
        g += "  m = rmsnorm(r, post_attention_layernorm[l], eps=eps)\n"
        g += "  f = linear(silu_mul(linear(m, gate_proj[l]\(bias(mlpBias, "gate_bias"))), linear(m, up_proj[l]\(bias(mlpBias, "up_bias")))), down_proj[l]\(bias(mlpBias, "down_bias")))\n"
        g += "  x[l + 1] = add(r, f)\n"
        g += "}\n\n"
        g += "weight norm: \(w)[d_model]\n"
        if tied {
            g += "# tie_word_embeddings: the output projection reuses embed_tokens\n"
            g += "output logits = linear(rmsnorm(x[layers], norm, eps=eps), embed_tokens)\n"
        } else {
            g += "weight lm_head: \(w)[vocab, d_model]\n"
            g += "output logits = linear(rmsnorm(x[layers], norm, eps=eps), lm_head)\n"
        }
        return g
    }

    /// The RoPE attributes after `heads=`: theta and, for llama3 scaling, its parameters (from
    /// `rope_scaling`, or transformers ≥ 5's `rope_parameters`, where type "default" is no scaling).
    func ropeAttributes(theta: Double, parameters: JSONValue?) throws(ImportError) -> String {
        var s = ", theta=theta"
        let field: String, scaling: JSONValue
        if let v = c.root["rope_scaling"], !v.isNull {
            (field, scaling) = ("rope_scaling", v)
        } else if let p = parameters {
            if let t = p["rope_type"] ?? p["type"], case .string("default", _) = t { return s }
            if p["rope_type"] == nil && p["type"] == nil { return s }
            (field, scaling) = ("rope_parameters", p)
        } else {
            return s
        }
        guard case .object = scaling else {
            throw ImportError(location: scaling.location, message: "'\(field)' must be an object or null")
        }
        let typeField = scaling["rope_type"] != nil ? "rope_type" : "type"
        guard let t = scaling[typeField], case let .string(kind, loc) = t else {
            throw ImportError(location: scaling.location, message: "'\(field)' needs 'rope_type'")
        }
        guard kind == "llama3" else {
            throw ImportError(location: loc, message: "'\(field).\(typeField)' \"\(kind)\" is not modelled (only \"llama3\" and \"default\")")
        }
        let sc = Config(root: scaling)
        let factor = try sc.double("factor", default: .nan)
        let low = try sc.double("low_freq_factor", default: .nan)
        let high = try sc.double("high_freq_factor", default: .nan)
        let original = try sc.int("original_max_position_embeddings")
        for (name, v) in [("factor", factor), ("low_freq_factor", low), ("high_freq_factor", high)] where v.isNaN {
            throw ImportError(location: scaling.location, message: "'\(field)' is missing '\(name)'")
        }
        guard factor >= 1, high > low else {
            throw ImportError(location: scaling.location, message: "'\(field)' needs factor ≥ 1 and high_freq_factor > low_freq_factor")
        }
        s += ", scaling=\"llama3\", factor=\(graphNumber(factor)), low_freq_factor=\(graphNumber(low))"
        s += ", high_freq_factor=\(graphNumber(high)), original_max_positions=\(original)"
        return s
    }
}

/// GPT-2: learned positions, pre-LayerNorm, fused QKV (Conv1D, [in, out]), GELU, tied output.
struct GPT2 {
    let c: Config
    let source: String
    /// Embedding outputs and caches in f32 (`kvplan import hf --activations f32`).
    var f32Activations = false

    func emit() throws(ImportError) -> String {
        let hidden = try c.int("n_embd")
        let layers = try c.int("n_layer")
        let heads = try c.int("n_head")
        let vocab = try c.int("vocab_size")
        let positions = try c.int("n_positions")
        let ffn = try c.optionalInt("n_inner") ?? 4 * hidden
        let eps = try c.double("layer_norm_epsilon", default: 1e-5)
        let dtype = try c.dtype()
        guard hidden % heads == 0, (hidden / heads) > 0 else {
            throw ImportError(location: c.root.keyLocation("n_head")!, message: "'n_embd' (\(hidden)) is not divisible by 'n_head' (\(heads))")
        }
        if let v = c.root["tie_word_embeddings"], try !c.bool("tie_word_embeddings", default: true) {
            throw ImportError(location: v.location, message: "GPT2LMHeadModel always ties its output projection to 'wte'; untied is not modelled")
        }
        var approximate = "tanh"
        if let (act, loc) = try c.string("activation_function") {
            switch act {
            case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": approximate = "tanh"
            case "gelu": approximate = "none"
            default: throw ImportError(location: loc, message: "'activation_function' \"\(act)\" is not modelled (gelu, gelu_new)")
            }
        }
        for field in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
            if let v = c.root[field], try c.bool(field, default: false) {
                throw ImportError(location: v.location, message: "'\(field)' is not modelled")
            }
        }
        let w = dtype
        var g = "# GPT2LMHeadModel imported by `kvplan import hf` from \(source).\n"
        g += "# One decode step with learned positions and a tied output projection.\n"
        g += "# Conv1D weights keep their [in, out] layout, so they use `matmul`.\n"
        if f32Activations { g += "# Activations and KV caches in f32 (--activations f32); weights keep \(dtype).\n" }
        g += "\n"
        g += "let vocab = \(vocab)\nlet d_model = \(hidden)\nlet layers = \(layers)\nlet heads = \(heads)\n"
        g += "let head_dim = d_model / heads\nlet ffn = \(ffn)\nlet positions = \(positions)\nlet eps = \(graphNumber(eps))\n\n"
        g += "dim batch = 1\ndim ctx = \(positions)           # n_positions\n\n"
        g += "input tokens: i32[batch]\ninput pos: i32[batch]\n\n"
        g += "weight wte: \(w)[vocab, d_model]\nweight wpe: \(w)[positions, d_model]\n"
        let f32 = f32Activations ? ", dtype=\"f32\"" : "", cache = f32Activations ? "f32" : w
        g += "x[0] = add(embed(wte, tokens\(f32)), embed(wpe, pos\(f32)))\n\n"
        g += "for l in 0..<layers {\n"
        g += "  weight ln_1_weight[l]: \(w)[d_model]\n  weight ln_1_bias[l]: \(w)[d_model]\n"
        g += "  weight c_attn_weight[l]: \(w)[d_model, 3 * d_model]\n  weight c_attn_bias[l]: \(w)[3 * d_model]\n"
        g += "  weight attn_c_proj_weight[l]: \(w)[d_model, d_model]\n  weight attn_c_proj_bias[l]: \(w)[d_model]\n"
        g += "  weight ln_2_weight[l]: \(w)[d_model]\n  weight ln_2_bias[l]: \(w)[d_model]\n"
        g += "  weight c_fc_weight[l]: \(w)[d_model, ffn]\n  weight c_fc_bias[l]: \(w)[ffn]\n"
        g += "  weight mlp_c_proj_weight[l]: \(w)[ffn, d_model]\n  weight mlp_c_proj_bias[l]: \(w)[d_model]\n"
        g += "  cache k_cache[l]: \(cache)[batch, ctx, heads, head_dim]\n"
        g += "  cache v_cache[l]: \(cache)[batch, ctx, heads, head_dim]\n\n"
        g += "  h = layernorm(x[l], ln_1_weight[l], ln_1_bias[l], eps=eps)\n"
        g += "  q, k, v = split(matmul(h, c_attn_weight[l], bias=c_attn_bias[l]), sizes=[d_model, d_model, d_model])\n"
        g += "  a = attention(q, k, v, k_cache[l], v_cache[l], heads=heads)\n"
        g += "  r = add(x[l], matmul(a, attn_c_proj_weight[l], bias=attn_c_proj_bias[l]))\n"
        g += "  m = layernorm(r, ln_2_weight[l], ln_2_bias[l], eps=eps)\n"
        g += "  f = matmul(gelu(matmul(m, c_fc_weight[l], bias=c_fc_bias[l]), approximate=\"\(approximate)\"), mlp_c_proj_weight[l], bias=mlp_c_proj_bias[l])\n"
        g += "  x[l + 1] = add(r, f)\n"
        g += "}\n\n"
        g += "weight ln_f_weight: \(w)[d_model]\nweight ln_f_bias: \(w)[d_model]\n"
        g += "# the output projection is tied to the token embedding\n"
        g += "output logits = linear(layernorm(x[layers], ln_f_weight, ln_f_bias, eps=eps), wte)\n"
        return g
    }
}
