#!/usr/bin/env python3
"""Where the quantised attention kernel's time goes, phase by phase.

Saves the emitted attention kernels of `kvplan bench kernels` (--save-sources), derives
variants of their driver function `k0` with phases removed, times each variant with
`bench kernels --sources` in turns (every variant once per round, several rounds: this host's
speed drifts between runs), and prints per shape the median GB/s and ns per token and KV head
of each variant, and the phase costs they imply:

  full             the emitted kernels, unchanged
  no-prefetch      without the software prefetches (the driver's and the kernels')
  query-once       the query's per-group rescaling and rounding as in `products` only
  weights-once     the weights' per-tile rescaling and rounding as in `products` only
                   (prepareWeightsH4 where the driver takes the token-major path)
  no-softmax       without the softmax (and the attention each slot received)
  products         only the integer key and value products: the query's per-group rescaling
                   and rounding run for the first key group of the first KV head only, the
                   weights' per-tile rescaling and rounding for its first tile only (so that
                   the products read sane operands), no softmax
  keys             `products` without the value products
  values           `products` without the key products
  skeleton         `products` without either: loops, prefetches, the step around them

  overhead of rescaling, rounding, softmax = full − products;
  key products = products − values; value products = products − keys.

At L2 size (512 tokens, 2 KV heads, 2 tiles of 256) the weights' preparation kept for the first
tile is a quarter of it, so `products`, `keys`, `values` and `skeleton` still include that quarter
there; at DRAM size it is one part in a thousand. The variants compute wrong results on purpose (the bench's check warns); only their times
matter. Each pattern below must match the emitted driver exactly once: if the emitter
changes, the script stops and names the pattern.

Run on a quiet machine, from the repository root, after `swift build -c release`:

    python3 scripts/attention_phases.py [--shape gqa-l2 --shape gqa-dram] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

SHAPES = ["gqa-l2", "gqa-dram", "mha-l2", "mha-dram"]
# bytes of packed 4-bit cache per token and KV head (d = 128): key codes 64 + value codes 64,
# key group headers 128·4/32 = 16, value headers 4·4 = 16.
BYTES_PER_TOKEN_HEAD = 160


def guarded(source, pattern, condition, name):
    """Wraps each statement matching `pattern` (a whole line) in `if condition { ... }`: one, or
    one per branch where the driver has an AVX-512 VNNI path and another under #if/#else."""
    regex = re.compile(r"(\n[ \t]*)(" + pattern + r".*)")
    if len(regex.findall(source)) not in (1, 2):
        sys.exit(f"attention_phases: the pattern for {name} ({pattern!r}) does not match the emitted driver once or twice; the emitter changed")
    return regex.sub(lambda m: f"{m.group(1)}if {condition} {{ {m.group(2)} }}", source)


def without_prefetch(source):
    """The whole file with every software prefetch made a no-op: the driver's bursts and the
    integer kernels' prefetches spread over their loops alike (all go through the C module's
    kvplan_prefetch / kvplan_prefetch_l2)."""
    stripped, count = re.subn(r"\bkvplan_prefetch(?:_l2)?\(", "_ = (", source)
    if count == 0:
        sys.exit("attention_phases: no kvplan_prefetch call in the emitted kernels; the emitter changed")
    return stripped


def variants(emitted):
    """The variants' full sources: only the driver k0 (the file's last function) is edited."""
    start = emitted.index("\nfunc k0(")
    head, k0 = emitted[:start], emitted[start:]
    def query_once(s):
        if "prepareQueriesH4(qg" in s:
            # the fused preparation (FusedQueryPreparation) under AVX-512 VNNI, once per 4 heads
            s = guarded(s, r"prepareQueriesH4\(qg", "g == gLo && grp == 0", "the fused query preparation")
        s = guarded(s, r"scaleQueriesH\d+\(qg", "g == gLo && grp == 0", "the query rescaling")
        return guarded(s, r"roundQueries\(scaled", "g == gLo && grp == 0", "the query rounding")

    def weights_once(s):
        if "prepareWeightsH4(lg" in s:
            # the token-major path (TokenMajorWeights) prepares a tile's weights in one call
            s = guarded(s, r"prepareWeightsH4\(lg", "g == gLo && t0 == 0", "the token-major weight preparation")
        s = guarded(s, r"scaleWeightsH\d+\(lg", "g == gLo && t0 == 0", "the weight rescaling")
        return guarded(s, r"roundWeights\(scaled", "g == gLo && t0 == 0", "the weight rounding")

    def no_softmax(s):
        return guarded(s, r"slotSoftmaxH\d+\(lg", "g < 0", "the softmax")

    products = no_softmax(weights_once(query_once(k0)))
    keys = guarded(products, r"valueGroupAccumulateI16[HT]\d+\(", "g < 0", "the value products")
    values = guarded(products, r"keyGroupLogitsI8H\d+\(", "g < 0", "the key products")
    skeleton = guarded(keys, r"keyGroupLogitsI8H\d+\(", "g < 0", "the key products")
    bodies = {"full": k0, "no-prefetch": k0, "query-once": query_once(k0), "weights-once": weights_once(k0),
              "no-softmax": no_softmax(k0), "products": products, "keys": keys, "values": values, "skeleton": skeleton}
    return {name: without_prefetch(head + body) if name == "no-prefetch" else head + body for name, body in bodies.items()}


def bench(kvplan, shapes, sources=None, save=None):
    """GB/s and the best copy's GB/s per shape from one `bench kernels` run."""
    command = [kvplan, "bench", "kernels", "--family", "attention", "--no-scalar-timing"]
    for shape in shapes:
        command += ["--attention-shape", shape]
    if sources:
        command += ["--sources", sources]
    if save:
        command += ["--save-sources", save]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"attention_phases: {' '.join(command)} failed:\n{run.stderr}")
    rows = [line for line in run.stdout.splitlines() if line.startswith("| attention")]
    if len(rows) != len(shapes):
        sys.exit(f"attention_phases: expected {len(shapes)} attention rows, got:\n{run.stdout}")
    results = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        results.append((float(cells[3]), max(float(cells[7]), float(cells[8]))))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append", choices=SHAPES, help="repeatable (default: gqa-l2 and gqa-dram)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kvplan", default=".build/release/kvplan")
    args = parser.parse_args()
    shapes = args.shape or ["gqa-l2", "gqa-dram"]
    if args.rounds < 1:
        sys.exit("attention_phases: --rounds must be at least 1")
    if not os.access(args.kvplan, os.X_OK):
        sys.exit(f"attention_phases: no {args.kvplan}; run `swift build -c release` first")

    with tempfile.TemporaryDirectory(prefix="attention-phases-") as work:
        emitted_dir = os.path.join(work, "emitted")
        bench(args.kvplan, shapes, save=emitted_dir)
        names = None
        for shape in shapes:
            with open(os.path.join(emitted_dir, f"attention-{shape}.swift")) as f:
                sources = variants(f.read())
            names = list(sources)
            for name, text in sources.items():
                os.makedirs(os.path.join(work, name), exist_ok=True)
                with open(os.path.join(work, name, f"attention-{shape}.swift"), "w") as f:
                    f.write(text)
        gbs = {(n, s): [] for n in names for s in shapes}
        copies = {s: [] for s in shapes}
        for round_ in range(args.rounds):
            for name in names:
                print(f"round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr)
                for shape, (gb, copy) in zip(shapes, bench(args.kvplan, shapes, sources=os.path.join(work, name))):
                    gbs[(name, shape)].append(gb)
                    copies[shape].append(copy)

    for shape in shapes:
        copy = statistics.median(copies[shape])
        ns = {n: BYTES_PER_TOKEN_HEAD / statistics.median(gbs[(n, shape)]) for n in names}
        print(f"\n{shape}: median of {args.rounds} rounds, copy {copy:.1f} GB/s (median of every run)\n")
        print("| variant | GB/s (median, min–max) | ns per token and KV head | of the copy |")
        print("|---|---:|---:|---:|")
        for n in names:
            values = gbs[(n, shape)]
            print(f"| {n} | {statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}) | {ns[n]:.2f} | {statistics.median(values) / copy:.2f} |")
        print(f"\nrescaling, rounding and softmax: {ns['full'] - ns['products']:.2f} ns (the query's: {ns['full'] - ns['query-once']:.2f}, "
              f"the weights': {ns['full'] - ns['weights-once']:.2f}, the softmax: {ns['full'] - ns['no-softmax']:.2f}); "
              f"key products: {ns['products'] - ns['values']:.2f} ns; value products: {ns['products'] - ns['keys']:.2f} ns; "
              f"skeleton: {ns['skeleton']:.2f} ns; the copy's pace: {BYTES_PER_TOKEN_HEAD / copy:.2f} ns")


if __name__ == "__main__":
    main()
