#!/usr/bin/env python3
"""Train kvplan's bundled tiny-llama: a byte-level Llama decoder on the Python standard library.

Corpus: the .py files of the CPython standard library that runs this script (every machine of
kvplan's kind has CPython 3.11.7 under pyenv; tests and site-packages excluded), under the PSF
License Version 2 (LICENSE-PSF.txt next to this file). Files are split by a hash of their path:
bucket 0 of 64 is held out for evaluation (eval.txt), bucket 1 for calibration
(calibration.txt), the rest is training text, so the three texts are disjoint by file.

Model: LlamaForCausalLM, vocab 256 (bytes), hidden 256, 4 layers, 8 query heads, 2 KV heads
(head_dim 32), SwiGLU 704, context 1024, untied lm_head; ≈ 2.95 M parameters, f32.

Training: AdamW (β 0.9/0.95, weight decay 0.1), peak LR 3e-3 after 200 warm-up steps, cosine
decay to 10 %, batches of 8 windows of 1024 bytes drawn from the training text by a seeded
generator, gradient clipping at 1.0, a fixed step count (--steps) so the run is deterministic
for a given torch build. Two CPU threads. Writes config.json, model.safetensors, eval.txt,
calibration.txt and train-log.json to the output directory (default: this file's directory).

    python3 -m venv /tmp/kvplan-py && /tmp/kvplan-py/bin/pip install torch transformers safetensors numpy
    /tmp/kvplan-py/bin/python Graphs/tiny-llama/train.py --steps 1200
"""
import argparse
import hashlib
import json
import math
import pathlib
import sysconfig
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

HERE = pathlib.Path(__file__).resolve().parent
EXCLUDED = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


def corpus(limit_eval: int, limit_calibration: int):
    """(training bytes, eval bytes, calibration bytes, file lists) from the stdlib sources."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")
                   if not EXCLUDED.intersection(p.relative_to(root).parts))
    buckets = {0: [], 1: [], 2: []}
    for rel in files:
        b = int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 64
        buckets[min(b, 2)].append(rel)
    def text(names, limit=None):
        out = bytearray()
        for rel in names:
            out += (root / rel).read_bytes()
            if limit and len(out) >= limit:
                return bytes(out[:limit])
        return bytes(out)
    return (text(buckets[2]), text(buckets[0], limit_eval), text(buckets[1], limit_calibration),
            {"eval": buckets[0], "calibration": buckets[1], "train_files": len(buckets[2]), "root": str(root)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=HERE)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    train, held_out, calibration, files = corpus(limit_eval=65536, limit_calibration=65536)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.txt").write_bytes(held_out)
    (args.out / "calibration.txt").write_bytes(calibration)

    config = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                         attention_bias=False, mlp_bias=False, hidden_act="silu",
                         bos_token_id=None, eos_token_id=None, pad_token_id=None, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    data = torch.from_numpy(np.frombuffer(train, dtype=np.uint8).astype(np.int64))
    evaluation = torch.from_numpy(np.frombuffer(held_out, dtype=np.uint8).astype(np.int64))
    rng = np.random.default_rng(args.seed)
    warmup = 200

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def held_out_bits_per_byte():
        model.eval()
        with torch.no_grad():
            n = (len(evaluation) - 1) // args.context
            windows = evaluation[: n * args.context + 1]
            total = 0.0
            for i in range(n):
                x = windows[i * args.context:(i + 1) * args.context + 1]
                logits = model(x[None, :-1]).logits[0]
                total += torch.nn.functional.cross_entropy(logits, x[1:], reduction="sum").item()
        model.train()
        return total / (n * args.context) / math.log(2)

    log = {"parameters": parameters, "train_bytes": len(train), "eval_bytes": len(held_out),
           "calibration_bytes": len(calibration), "files": files, "args": {k: str(v) for k, v in vars(args).items()},
           "torch": torch.__version__, "steps": []}
    start = time.time()
    model.train()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        offsets = rng.integers(0, len(data) - args.context - 1, size=args.batch)
        batch = torch.stack([data[o:o + args.context + 1] for o in offsets])
        logits = model(batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            entry = {"step": step, "loss_bits_per_byte": loss.item() / math.log(2), "seconds": round(time.time() - start, 1)}
            if step % 400 == 0 or step == args.steps - 1:
                entry["eval_bits_per_byte"] = held_out_bits_per_byte()
            log["steps"].append(entry)
            print(json.dumps(entry), flush=True)
    log["seconds"] = round(time.time() - start, 1)
    model.save_pretrained(args.out, safe_serialization=True)
    (args.out / "train-log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"saved {args.out} ({parameters} parameters, {log['seconds']} s)")


if __name__ == "__main__":
    main()
