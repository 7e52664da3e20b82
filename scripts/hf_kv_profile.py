#!/usr/bin/env python3
"""A KV profile (Docs/kv-profile.md) of any Hugging Face causal LM, measured with transformers.

The same measurement as `kvplan profile` (Sources/KVRuntime/KVProfileMeter.swift), for models
kvplan cannot run itself (real checkpoints, GPUs):

* retention: consecutive windows of --context tokens of the text go through the model in one
  forward pass with eager attention; for every query position with at least 32 tokens before
  and including it, each KV head's weights are the mean of its GQA group's query heads' softmax
  weights, sorted descending; R(x) is the mass of the top ⌈x·n⌉ of the n tokens, averaged over
  positions and windows, at the fractions 0, .01, .02, .05, .1, .2, .3, .5, .7, 1;
* quantisation error: at the end of each window the cached keys and values (post-RoPE, as the
  model caches them) of whole 32-token groups are quantised as kvplan's runtime stores them —
  asymmetric min/max per group with an fp16 scale and zero point, keys per channel over 32
  tokens, values per token over 32 channels — and ‖x̂ − x‖ / ‖x‖ is accumulated over windows.

    python scripts/hf_kv_profile.py MODEL_DIR_OR_ID --text calibration.txt [--context 1024]
        [--windows 4] [--bytes] [--device cpu|cuda] -o profile.json

--bytes feeds raw bytes as token ids (kvplan's byte-level models, which have no tokenizer);
otherwise the model's tokenizer is used. Then: kvplan compile MODEL --profile profile.json.
"""
import argparse
import json
import math
import pathlib

import torch
from transformers import AutoModelForCausalLM

FRACTIONS = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1]
BITS = [8, 4, 2]


def quantise(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Dequantised x, groups along the last axis, as KVPack stores them (fp16 scale and zero)."""
    lo, hi = x.min(dim=-1, keepdim=True).values, x.max(dim=-1, keepdim=True).values
    scale = ((hi - lo) / (2 ** bits - 1)).to(torch.float16).to(torch.float32)
    zero = lo.to(torch.float16).to(torch.float32)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.where(scale > 0, torch.clamp(torch.round((x - zero) / safe), 0, 2 ** bits - 1), torch.zeros_like(x))
    return q * scale + zero


def relative_squares(x: torch.Tensor, kind: str, bits: int):
    """(Σ squared error, Σ squared value) of token-major x [T, C] quantised as `kind`."""
    t, c = x.shape
    if kind == "keys":   # per channel over groups of 32 tokens
        back = quantise(x.reshape(t // 32, 32, c).transpose(1, 2), bits).transpose(1, 2).reshape(t, c)
    else:                # per token over groups of 32 channels (a short last group if C % 32)
        back = torch.cat([quantise(x[:, i:i + 32], bits) for i in range(0, c, 32)], dim=1)
    return float(((back.double() - x.double()) ** 2).sum()), float((x.double() ** 2).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--text", required=True, type=pathlib.Path)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--bytes", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", required=True, type=pathlib.Path)
    args = parser.parse_args()

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32, attn_implementation="eager").to(args.device)
    model.eval()
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    group = heads // kv_heads
    data = args.text.read_bytes()
    if args.bytes:
        ids = list(data)
    else:
        from transformers import AutoTokenizer
        ids = AutoTokenizer.from_pretrained(args.model)(data.decode("utf-8", errors="replace"))["input_ids"]
    windows = min(args.windows, len(ids) // args.context)
    if windows < 1:
        raise SystemExit(f"{args.text}: {len(ids)} tokens; one window needs {args.context}")

    layers = config.num_hidden_layers
    mass = torch.zeros(layers, kv_heads, len(FRACTIONS), dtype=torch.float64)
    steps = 0
    squares = {(l, kind, b): [0.0, 0.0] for l in range(layers) for kind in ("keys", "values") for b in BITS}
    with torch.no_grad():
        for w in range(windows):
            x = torch.tensor([ids[w * args.context:(w + 1) * args.context]], device=args.device)
            out = model(x, output_attentions=True, use_cache=True)
            for l, attention in enumerate(out.attentions):  # [1, heads, T, T]
                a = attention[0].double().reshape(kv_heads, group, args.context, args.context).mean(dim=1)
                for t in range(31, args.context):
                    n = t + 1
                    top = torch.sort(a[:, t, :n], dim=-1, descending=True).values
                    prefix = torch.cat([torch.zeros(kv_heads, 1, dtype=torch.float64, device=top.device), top.cumsum(-1)], dim=-1)
                    prefix = prefix / prefix[:, -1:]
                    for i, f in enumerate(FRACTIONS):
                        k = min(n, math.ceil(f * n - 1e-9))
                        mass[l, :, i] += 1.0 if f >= 1 else prefix[:, max(0, k)].cpu()
                    if l == 0:
                        steps += 1
                cache = out.past_key_values
                keys, values = (cache.layers[l].keys, cache.layers[l].values) if hasattr(cache, "layers") else cache[l]
                whole = args.context // 32 * 32
                kx = keys[0].transpose(0, 1).reshape(args.context, -1)[:whole].float()   # [T, kv_heads·d]
                vx = values[0].transpose(0, 1).reshape(args.context, -1)[:whole].float()
                for b in BITS:
                    for kind, xs in (("keys", kx), ("values", vx)):
                        e, s = relative_squares(xs, kind, b)
                        squares[(l, kind, b)][0] += e
                        squares[(l, kind, b)][1] += s
            print(f"window {w + 1}/{windows}", flush=True)

    def r6(v):
        return round(float(v), 6)
    profile = {"version": 1, "model": pathlib.Path(args.model).name, "referenceContext": args.context, "layers": []}
    for l in range(layers):
        curves = [[[f, r6(mass[l, g, i] / steps)] for i, f in enumerate(FRACTIONS)] for g in range(kv_heads)]
        mean = [[f, r6(sum(c[i][1] for c in curves) / kv_heads)] for i, f in enumerate(FRACTIONS)]
        err = {kind: {str(b): r6(math.sqrt(squares[(l, kind, b)][0] / squares[(l, kind, b)][1])) for b in BITS}
               for kind in ("keys", "values")}
        profile["layers"].append({"retention": mean, "heads": curves, "keyError": err["keys"], "valueError": err["values"]})
    args.output.write_text(json.dumps(profile, indent=1) + "\n")
    print(f"wrote {args.output}: {layers} layers × {kv_heads} KV heads, {windows} windows of {args.context}")


if __name__ == "__main__":
    main()
