#!/usr/bin/env python3
"""Reference logits for kvplan's cross-check, computed by Hugging Face transformers.

Loads the checkpoint next to this file (config.json + model.safetensors) with
LlamaForCausalLM in float32 (eager attention), feeds each fixed byte sequence below in one
forward pass and records the logits at every position. Writes

  reference-logits.bin   all logits, float32 little-endian, sequence after sequence,
                         position-major ([positions, 256] per sequence)
  reference-logits.json  {"transformers", "torch", "vocab", "sequences": [{"name", "bytes"
                         (base64), "positions", "offset" (in floats)}]}

kvplan's test (Tests/KVRuntimeTests/TransformersCrossCheckTests.swift) decodes the same bytes one
token at a time through its runtime with a full-precision KV cache and requires max |Δ| ≤ 1e-3.
CI needs no torch: the outputs are committed. Re-run after retraining:

    /tmp/kvplan-py/bin/python Graphs/tiny-llama/crosscheck.py
"""
import base64
import json
import pathlib

import numpy as np
import torch
import transformers
from transformers import LlamaForCausalLM

HERE = pathlib.Path(__file__).resolve().parent


def sequences():
    held_out = (HERE / "eval.txt").read_bytes()
    calibration = (HERE / "calibration.txt").read_bytes()
    return [
        ("prompt", b"def fibonacci(n):\n    "),
        ("eval-head", held_out[:96]),
        ("calibration-200", calibration[4096:4096 + 200]),
    ]


def main():
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(HERE, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    index = {"transformers": transformers.__version__, "torch": torch.__version__, "vocab": model.config.vocab_size,
             "sequences": []}
    chunks = []
    offset = 0
    with torch.no_grad():
        for name, data in sequences():
            ids = torch.tensor([list(data)], dtype=torch.long)
            logits = model(ids).logits[0].to(torch.float32).numpy()
            chunks.append(np.ascontiguousarray(logits, dtype="<f4"))
            index["sequences"].append({"name": name, "bytes": base64.b64encode(data).decode(), "positions": len(data),
                                       "offset": offset})
            offset += logits.size
    (HERE / "reference-logits.bin").write_bytes(b"".join(c.tobytes() for c in chunks))
    (HERE / "reference-logits.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {offset} logits for {len(index['sequences'])} sequences")


if __name__ == "__main__":
    main()
