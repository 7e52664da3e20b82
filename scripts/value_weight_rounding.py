#!/usr/bin/env python3
"""How much error rounding the softmax weights adds to 4-bit KIVI values, at 16 and at 8 bits.

Issue 6's GQA-4 attention target on one Zen 4 core needs, among other things, 8-bit value
weights: the value products would take 8 VNNI slots per token and KV head instead of 16
(Docs/benchmarks.md, session 30). This script measures what that would cost in accuracy, next to
the error the 4-bit values themselves carry, on synthetic attention rows:

  * values: 4096 tokens x 128 channels, N(0, 1) with four outlier channels (x5), quantised as
    KIVI does (per token, groups of 32 channels, 4-bit asymmetric: scale = (max-min)/15);
  * weights: softmax of N(0, sigma^2) logits, sigma from flat (0.5) to peaked (8);
  * the value error: max over channels of |w.v_quantised - w.v| (the 4-bit values' own error);
  * the rounding error: max over channels of |output with rounded weights - w.v_quantised|, the
    weights times each token's value scale rounded per block of 32 tokens to int16 (32767
    levels, what the kernels do: KVQuant.ValueProductRounding), to uint8 (255 levels: weights
    are non-negative) or to int8 (127 levels).

Deterministic (seeded). Needs numpy.

    python3 scripts/value_weight_rounding.py [--trials 5] [--tokens 4096]
"""
import argparse
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("value_weight_rounding: needs numpy (pip install numpy)")

LEVELS = [("int16", 32767), ("uint8", 255), ("int8", 127)]


def rounded_per_block(x, levels, block=32):
    """x rounded to `levels` per block of `block` tokens, scale max|x|/levels, ties to even."""
    out = np.zeros_like(x)
    for b in range(0, len(x), block):
        a = np.abs(x[b:b + block]).max() / levels
        if a > 0:
            out[b:b + block] = np.rint(x[b:b + block] / a) * a
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="random rows per logit spread (default 5)")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per row, a multiple of 32 (default 4096)")
    args = parser.parse_args()
    if args.trials < 1 or args.tokens < 32 or args.tokens % 32:
        sys.exit("value_weight_rounding: --trials must be at least 1 and --tokens a positive multiple of 32")
    rng = np.random.default_rng(1)
    tokens, channels = args.tokens, 128
    print("| logit spread σ | 4-bit value error | " + " | ".join(f"{n} weights / value error" for n, _ in LEVELS) + " |")
    print("|---:|---:|" + "---:|" * len(LEVELS))
    for sigma in [0.5, 1, 2, 4, 8]:
        value_errors, ratios = [], {n: [] for n, _ in LEVELS}
        for _ in range(args.trials):
            logits = rng.standard_normal(tokens) * sigma
            w = np.exp(logits - logits.max())
            w /= w.sum()
            v = rng.standard_normal((tokens, channels))
            v[:, rng.integers(0, channels, 4)] *= 5
            codes, scales, zeros = np.empty_like(v), np.empty((tokens, channels // 32)), np.empty((tokens, channels // 32))
            for j in range(channels // 32):
                g = v[:, 32 * j:32 * j + 32]
                lo, hi = g.min(1, keepdims=True), g.max(1, keepdims=True)
                s = (hi - lo) / 15
                codes[:, 32 * j:32 * j + 32] = np.rint((g - lo) / s)
                scales[:, j], zeros[:, j] = s[:, 0], lo[:, 0]
            quantised = np.repeat(scales, 32, axis=1) * codes + np.repeat(zeros, 32, axis=1)
            reference = w @ quantised
            value_error = np.abs(reference - w @ v).max()
            value_errors.append(value_error)
            for name, levels in LEVELS:
                y = np.concatenate([rounded_per_block(w * scales[:, j], levels) @ codes[:, 32 * j:32 * j + 32] + w @ zeros[:, j]
                                    for j in range(channels // 32)])
                ratios[name].append(np.abs(y - reference).max() / value_error)
        print(f"| {sigma:g} | {np.mean(value_errors):.2e} | " + " | ".join(f"{np.mean(ratios[n]):.4f}" for n, _ in LEVELS) + " |")


if __name__ == "__main__":
    main()
