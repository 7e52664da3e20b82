#!/usr/bin/env python3
"""Each quantised-attention kernel timed alone, in units of 512-bit multiply-add issue slots.

attention_phases.py takes the GQA-4 kernel's time apart by removing phases from the whole
kernel; its differences are as noisy as the host. This script times each kernel the driver
calls, alone, on data in the second-level cache, many times, and keeps the best of seven
rounds — the instrument sessions 27 and 28 used, now in the repository:

  prepareQueriesH4           the query's rescaling and rounding, once per 32-token key group
  keyGroupLogitsI8H4         the integer key products of one key group
  prepareWeightsH4           the softmax weights' rescaling and rounding, once per 256-token tile
  valueGroupAccumulateI16T4  the integer value products of one tile and 32-channel value group
  slotSoftmaxH4              the softmax over every slot (run again on its own output)

Each is reported in ns per token and KV head (head_dim 128, 4 query heads per KV head, 4-bit keys
and values) and in *VNNI slots*: the same time divided by the time of one 512-bit `vpdpbusd`
issued from twelve independent accumulators, measured in the same process. The products need
8 slots per token and KV head for the keys and 16 for the values (Docs/benchmarks.md), so the
slots say how far each kernel is from the multiply-adds it must issue, on any x86 host.

The sources are the ones `kvplan bench kernels --attention-shape gqa-dram --save-sources`
emits, compiled with the flags the runtime uses for this CPU: the script runs the bench once with
SWIFTC pointing at a wrapper that records them. It needs AVX-512 VNNI (the kernels above exist
only there) and stops with a message otherwise.

It also prints a hash of every output the driver reads back (logits, the query's codes, scales
and bias, the value outputs, the softmax rows, `received`): equal before and after an edit of the
kernels means the same results bit for bit. `--runs N` runs the harness N times and reports each
kernel's minimum and median: on a shared host single runs move by 10-20%, so compare builds by the
minimum of five or more.

`--sources DIR` times the kernels in DIR/attention-gqa-dram.swift instead of the emitted ones (save
them with `kvplan bench kernels --family attention --attention-shape gqa-dram --save-sources DIR`,
edit, time): the way to try a change to a kernel before changing the emitter.

Run from the repository root, after `swift build -c release`:

    python3 scripts/attention_kernel_cycles.py [--kvplan .build/release/kvplan] [--runs N] [--sources DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HARNESS = r'''
import Foundation
#if KVPLAN_AVX512VNNI
import _Builtin_intrinsics.intel
@inline(never) func vnniSlot(_ operands: UnsafePointer<Int32>, _ n: Int) -> Int32 {
    let u = unsafeBitCast(SIMD16<Int32>(repeating: operands[0]), to: __m512i.self), s = unsafeBitCast(SIMD16<Int32>(repeating: operands[1]), to: __m512i.self)
    var a0 = u, a1 = u, a2 = u, a3 = u, a4 = u, a5 = u, a6 = u, a7 = u, a8 = u, a9 = u, a10 = u, a11 = u
    for _ in 0..<n {
        a0 = _mm512_dpbusd_epi32(a0, u, s); a1 = _mm512_dpbusd_epi32(a1, u, s); a2 = _mm512_dpbusd_epi32(a2, u, s)
        a3 = _mm512_dpbusd_epi32(a3, u, s); a4 = _mm512_dpbusd_epi32(a4, u, s); a5 = _mm512_dpbusd_epi32(a5, u, s)
        a6 = _mm512_dpbusd_epi32(a6, u, s); a7 = _mm512_dpbusd_epi32(a7, u, s); a8 = _mm512_dpbusd_epi32(a8, u, s)
        a9 = _mm512_dpbusd_epi32(a9, u, s); a10 = _mm512_dpbusd_epi32(a10, u, s); a11 = _mm512_dpbusd_epi32(a11, u, s)
    }
    let all = [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11].map { unsafeBitCast($0, to: SIMD16<Int32>.self) }
    return all.reduce(SIMD16<Int32>(repeating: 0), &+).wrappedSum()
}

@main struct Harness {
    /// Best of seven rounds of `reps` calls of `body`, in ns per call.
    static func best(reps: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<7 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<reps { body() }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(reps))
        }
        return best
    }

    static func main() {
        var rng: UInt64 = 1
        func next() -> UInt32 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return UInt32(truncatingIfNeeded: rng >> 33) }
        func noise(_ p: UnsafeMutableRawPointer, _ n: Int) { for i in 0..<n { p.storeBytes(of: UInt8(truncatingIfNeeded: next()), toByteOffset: i, as: UInt8.self) } }
        // fp16 scale 0.01 and zero −0.1 at the head of every 20-byte code row
        func headers(_ p: UnsafeMutableRawPointer, rows: Int) {
            for r in 0..<rows {
                p.storeBytes(of: Float16(0.01).bitPattern, toByteOffset: r * 20, as: UInt16.self)
                p.storeBytes(of: Float16(-0.1).bitPattern, toByteOffset: r * 20 + 2, as: UInt16.self)
            }
        }
        var results: [String: Double] = [:]
        let operands = UnsafeMutablePointer<Int32>.allocate(capacity: 2); operands[0] = 0x0101_0101; operands[1] = 0x0202_0202
        var sink: Int32 = 0
        let slot = best(reps: 20) { sink &+= vnniSlot(operands, 100_000) } / 1_200_000
        results["vnni slot"] = slot

        // 64 key groups (2,048 tokens, 160 KiB) and their queries
        let groups = 64
        let keys = UnsafeMutableRawPointer.allocate(byteCount: (groups + 4) * 2560, alignment: 64)
        noise(keys, (groups + 4) * 2560); headers(keys, rows: (groups + 4) * 128)
        let q = UnsafeMutablePointer<Float>.allocate(capacity: 512); for i in 0..<512 { q[i] = Float(Int(next() % 2000)) / 1000 - 1 }
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: 512), scales = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        let bias = UnsafeMutablePointer<Float>.allocate(capacity: 16), stage = UnsafeMutablePointer<Float>.allocate(capacity: 1024)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 4 * 2048), tmp = UnsafeMutablePointer<Float>.allocate(capacity: 256)
        results["prepareQueriesH4"] = best(reps: 200) {
            for g in 0..<groups { prepareQueriesH4(q, keys + g * 2560, codes, scales, bias, stage) }
        } / Double(32 * groups)
        results["keyGroupLogitsI8H4"] = best(reps: 200) {
            for g in 0..<groups {
                keyGroupLogitsI8H4(codes, scales, keys + g * 2560, rowBytes: 20, d: 128, bias, scale: 0.088, out + g * 32, stride: 2048, tmp, ahead: keys + (g + 2) * 2560)
            }
        } / Double(32 * groups)

        // 8 tiles of 256 tokens (2,048 tokens, 160 KiB of value rows) and softmax weights
        let n = 256, tiles = 8
        let values = UnsafeMutableRawPointer.allocate(byteCount: (tiles + 1) * n * 80, alignment: 64)
        noise(values, (tiles + 1) * n * 80); headers(values, rows: (tiles + 1) * n * 4)
        let e = UnsafeMutablePointer<Float>.allocate(capacity: 4 * 2048); for i in 0..<(4 * 2048) { e[i] = Float(next() % 1000) / 1e6 }
        let factors = UnsafeMutablePointer<Float>.allocate(capacity: 16); for i in 0..<16 { factors[i] = 1 }
        let tileCodes = UnsafeMutablePointer<Int16>.allocate(capacity: 4096), tileScales = UnsafeMutablePointer<Float>.allocate(capacity: 128)
        let tileBias = UnsafeMutablePointer<Float>.allocate(capacity: 16), received = UnsafeMutablePointer<Float>.allocate(capacity: 2048)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: 512); for i in 0..<512 { y[i] = 0 }
        results["prepareWeightsH4"] = best(reps: 200) {
            for t in 0..<tiles { prepareWeightsH4(e + t * n, stride: 2048, factors, values + t * n * 80, tokens: n, tileCodes, tileScales, tileBias, received + t * n, stage) }
        } / Double(n * tiles)
        results["valueGroupAccumulateI16T4"] = best(reps: 200) {
            for t in 0..<tiles {
                for j in 0..<4 {
                    valueGroupAccumulateI16T4(tileCodes + j * 8, tileScales + j * 4, tokens: n, values + t * n * 80 + j * 20, rowBytes: 80, tileBias + j * 4, y + j * 32, dv: 128, tmp, ahead: values + (t + 1) * n * 80)
                }
            }
        } / Double(n * tiles)

        // the softmax over 2,048 slots of 4 heads, all held; run again on its own output
        let slots = 2048, stride = 2064
        let occupancy = UnsafeMutablePointer<Int32>.allocate(capacity: slots); for i in 0..<slots { occupancy[i] = 0 }
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: 4 * stride); for i in 0..<(4 * stride) { logits[i] = Float(i % 97) / 50 }
        let newLogits = UnsafeMutablePointer<Float>.allocate(capacity: 4), inverses = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        results["slotSoftmaxH4"] = best(reps: 200) {
            for h in 0..<4 { newLogits[h] = 0.5 }
            slotSoftmaxH4(logits, stride: stride, occupancy, slots, newLogits, received, inverses: inverses)
        } / Double(slots)

        // FNV-1a over every output the driver reads back (not the weights' private tile layout):
        // equal before and after an edit of the kernels means the same results bit for bit.
        var hash: UInt64 = 1469598103934665603
        func mix(_ p: UnsafeRawPointer, _ n: Int) { for i in 0..<n { hash = (hash ^ UInt64(p.load(fromByteOffset: i, as: UInt8.self))) &* 1099511628211 } }
        mix(out, 4 * 2048 * 4); mix(codes, 512); mix(scales, 16 * 4); mix(bias, 4 * 4); mix(y, 512 * 4)
        for h in 0..<4 { mix(logits + h * stride, slots * 4) }
        mix(received, 2048 * 4); mix(inverses, 4 * 4)
        results["outputs"] = Double(hash >> 11)
        results["sink"] = Double(sink & 1)
        let json = try! JSONSerialization.data(withJSONObject: results, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}
#else
@main struct Harness {
    static func main() { print("{\"error\": \"no AVX-512 VNNI\"}") }
}
#endif
'''

# (kernel, what it does, VNNI slots it must issue per token and KV head)
KERNELS = [
    ("prepareQueriesH4", "query rescaling and rounding, per key group", None),
    ("keyGroupLogitsI8H4", "integer key products", 8),
    ("slotSoftmaxH4", "softmax over the slots", None),
    ("prepareWeightsH4", "weight rescaling and rounding, per tile", None),
    ("valueGroupAccumulateI16T4", "integer value products (4 channel groups)", 16),
]

WRAPPER = """#!/bin/sh
# Records the runtime's swiftc flags (between -O and -I) and its prefetch module, then compiles.
python3 - "$@" <<'PY'
import json, os, shutil, sys
args = sys.argv[1:]
include = args[args.index("-I") + 1]
with open(os.environ["KVPLAN_FLAGS_LOG"], "w") as f:
    json.dump(args[args.index("-O") + 1:args.index("-I")], f)
for name in ("kvplan_prefetch.h", "module.modulemap"):
    shutil.copy(os.path.join(include, name), os.environ["KVPLAN_FLAGS_INCLUDE"])
PY
exec "$KVPLAN_REAL_SWIFTC" "$@"
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvplan", default=".build/release/kvplan")
    parser.add_argument("--runs", type=int, default=1,
                        help="run the harness this many times and report each kernel's minimum and median (the host's "
                             "noise moves single runs by 10-20%%; compare builds by the minimum of 5 or more)")
    parser.add_argument("--sources", help="time DIR/attention-gqa-dram.swift (saved by `bench kernels --save-sources`, "
                                           "then edited) instead of the kernels this build emits")
    args = parser.parse_args()
    if args.sources and not os.path.isfile(os.path.join(args.sources, "attention-gqa-dram.swift")):
        sys.exit(f"attention_kernel_cycles: no {os.path.join(args.sources, 'attention-gqa-dram.swift')}")
    if args.runs < 1:
        sys.exit("attention_kernel_cycles: --runs must be at least 1")
    if not os.access(args.kvplan, os.X_OK):
        sys.exit(f"attention_kernel_cycles: no {args.kvplan}; run `swift build -c release` first")
    swiftc = shutil.which(os.environ.get("SWIFTC", "swiftc"))
    if not swiftc:
        sys.exit("attention_kernel_cycles: no swiftc on PATH")

    with tempfile.TemporaryDirectory(prefix="attention-cycles-") as work:
        include, sources = os.path.join(work, "include"), os.path.join(work, "sources")
        os.makedirs(include)
        wrapper = os.path.join(work, "swiftc-recording")
        with open(wrapper, "w") as f:
            f.write(WRAPPER)
        os.chmod(wrapper, 0o755)
        env = dict(os.environ, SWIFTC=wrapper, KVPLAN_REAL_SWIFTC=swiftc, KVPLAN_CACHE=os.path.join(work, "cache"),
                   KVPLAN_FLAGS_LOG=os.path.join(work, "flags.json"), KVPLAN_FLAGS_INCLUDE=include)
        command = [args.kvplan, "bench", "kernels", "--family", "attention", "--attention-shape", "gqa-dram",
                   "--no-scalar-timing", "--save-sources", sources]
        run = subprocess.run(command, capture_output=True, text=True, env=env)
        if run.returncode != 0 or not os.path.exists(env["KVPLAN_FLAGS_LOG"]):
            sys.exit(f"attention_kernel_cycles: {' '.join(command)} failed or compiled nothing:\n{run.stderr}")
        with open(env["KVPLAN_FLAGS_LOG"]) as f:
            flags = json.load(f)
        if "KVPLAN_AVX512VNNI" not in flags:
            sys.exit("attention_kernel_cycles: the runtime compiles without AVX-512 VNNI here (the CPU lacks it, or KVPLAN_AVX512=0); "
                     "the kernels this script times are emitted only for it")
        if args.sources:
            sources = args.sources
        harness = os.path.join(work, "Harness.swift")
        with open(harness, "w") as f:
            f.write(HARNESS)
        binary = os.path.join(work, "harness")
        compile_command = [swiftc, "-O", "-wmo"] + flags + ["-I", include, "-parse-as-library", "-module-name", "AttentionCycles",
                                                           os.path.join(sources, "attention-gqa-dram.swift"), harness, "-o", binary]
        build = subprocess.run(compile_command, capture_output=True, text=True)
        if build.returncode != 0:
            errors = "\n".join(line for line in build.stderr.splitlines() if "error:" in line)
            sys.exit("attention_kernel_cycles: the harness no longer compiles against the emitted kernels "
                     f"(a kernel's name or signature changed):\n{errors or build.stderr[-4000:]}")
        runs = []
        for _ in range(args.runs):
            timed = subprocess.run([binary], capture_output=True, text=True)
            if timed.returncode != 0:
                sys.exit(f"attention_kernel_cycles: the harness failed:\n{timed.stderr}")
            runs.append(json.loads(timed.stdout))

    hashes = {int(r["outputs"]) for r in runs}
    if len(hashes) != 1:
        sys.exit(f"attention_kernel_cycles: the kernels' outputs differ between runs ({len(hashes)} hashes): "
                 "they read something uninitialised or depend on timing")
    # Each run's figures in slots (its own slot time), then per kernel the minimum and the median.
    slots = {name: sorted(r[name] / r["vnni slot"] for r in runs) for name, _, _ in KERNELS}
    slots["sum"] = sorted(sum(r[name] for name, _, _ in KERNELS) / r["vnni slot"] for r in runs)
    slot = min(r["vnni slot"] for r in runs)
    median = lambda v: v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    print(f"one 512-bit vpdpbusd issue slot: {slot:.3f} ns (twelve independent accumulators)")
    print(f"outputs hash: {hashes.pop():x} (equal across builds = the same results bit for bit)\n")
    if args.runs == 1:
        print("| kernel (alone, data in L2) | ns per token and KV head | VNNI slots | of which multiply-adds |")
        print("|---|---:|---:|---:|")
        for name, what, needed in KERNELS:
            print(f"| `{name}` ({what}) | {runs[0][name]:.2f} | {slots[name][0]:.1f} | {needed if needed else '–'} |")
        total = sum(runs[0][name] for name, _, _ in KERNELS)
        print(f"| sum | {total:.2f} | {slots['sum'][0]:.1f} | 24 |")
    else:
        print(f"| kernel (alone, data in L2), {args.runs} runs | VNNI slots, minimum | median | of which multiply-adds |")
        print("|---|---:|---:|---:|")
        for name, what, needed in KERNELS:
            print(f"| `{name}` ({what}) | {slots[name][0]:.1f} | {median(slots[name]):.1f} | {needed if needed else '–'} |")
        print(f"| sum | {slots['sum'][0]:.1f} | {median(slots['sum']):.1f} | 24 |")
    pace = slots["sum"][0] * slot
    print(f"\n160 bytes per token and KV head at that pace: {160 / pace:.2f} GB/s; the products alone (24 slots): {160 / (24 * slot):.2f} GB/s")


if __name__ == "__main__":
    main()
