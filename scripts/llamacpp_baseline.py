#!/usr/bin/env python3
"""llama.cpp's decode speed on the same model shape, as a baseline for `kvplan bench run`.

Writes a llama-architecture GGUF with seeded weights for a Hugging Face config (the weights are
noise and the vocabulary empty: this measures speed, not text), then feeds it one token at a time
from an empty cache through llama-cpp-python and prints the median ms/token (best of three runs).
Per token the time includes the binding's Python call (tens of µs), which matters only for tiny
models. Not part of the tests; needs, in a virtual environment (it compiles llama.cpp for this
CPU, several minutes):

    python3 -m venv /tmp/llvenv && CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/llvenv/bin/pip install llama-cpp-python gguf numpy
    /tmp/llvenv/bin/python scripts/llamacpp_baseline.py Graphs/hf-configs/smollm2-135m.json --dtype q4_0 --tokens 128

Compare with the artifact of the same config (Docs/benchmarks.md, session 23), timed in turns.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def write_gguf(config: dict, path: str, dtype: str) -> None:
    import gguf

    d, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    ffn, vocab, head_dim = config["intermediate_size"], config["vocab_size"], config["hidden_size"] // config["num_attention_heads"]
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("seeded")
    w.add_context_length(2048)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-5))
    theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    w.add_rope_freq_base(float(theta))
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("none")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0 if dtype == "q4_0" else gguf.LlamaFileType.ALL_F32)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float32)

    def add(name: str, a: np.ndarray) -> None:
        if dtype == "q4_0" and a.ndim == 2:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q4_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        else:
            w.add_tensor(name, a)

    add("token_embd.weight", matrix(vocab, d))
    for l in range(layers):
        add(f"blk.{l}.attn_norm.weight", np.ones(d, np.float32))
        add(f"blk.{l}.attn_q.weight", matrix(heads * head_dim, d))
        add(f"blk.{l}.attn_k.weight", matrix(kv_heads * head_dim, d))
        add(f"blk.{l}.attn_v.weight", matrix(kv_heads * head_dim, d))
        add(f"blk.{l}.attn_output.weight", matrix(d, heads * head_dim))
        add(f"blk.{l}.ffn_norm.weight", np.ones(d, np.float32))
        add(f"blk.{l}.ffn_gate.weight", matrix(ffn, d))
        add(f"blk.{l}.ffn_up.weight", matrix(ffn, d))
        add(f"blk.{l}.ffn_down.weight", matrix(d, ffn))
    add("output_norm.weight", np.ones(d, np.float32))
    if not config.get("tie_word_embeddings", False):
        add("output.weight", matrix(vocab, d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a Hugging Face config.json of a Llama-family model")
    parser.add_argument("--dtype", choices=["q4_0", "f32"], default="q4_0")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    try:
        config = json.load(open(args.config))
        if config.get("model_type") not in ("llama", "mistral", "qwen2", None):
            print(f"{args.config}: model_type {config.get('model_type')!r}; this baseline writes Llama-family GGUFs only", file=sys.stderr)
            return 1
    except (OSError, json.JSONDecodeError) as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 1
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed (see this script's docstring)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.gguf")
        write_gguf(config, path, args.dtype)
        llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_batch=1, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
        best = float("inf")
        for _ in range(3):
            llm.reset()
            token, times = 1, []
            for _ in range(args.tokens):
                start = time.perf_counter()
                llm.eval([token])
                times.append(time.perf_counter() - start)
                token = (token * 31 + 7) % min(256, config["vocab_size"] - 1) + 1
            best = min(best, statistics.median(times))
        print(f"llama.cpp {llama_cpp.__version__}, {os.path.basename(args.config)} {args.dtype}, {args.threads} thread(s): "
              f"median {best * 1e3:.3f} ms/token over {args.tokens} tokens (best of 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
