#!/usr/bin/env bash
# `kvplan run --check` for every bundled target × KV policy on tiny-llama (--context 256,
# --kv-ratio 0.5, 245 steps, the trained checkpoint): the matrix Docs/runtime.md reports.
# Prints one line per cell (worst attention |Δ|, end-to-end logit drift, greedy agreement) and
# exits non-zero if any cell fails. Needs a release build (swift build -c release --product kvplan).
set -uo pipefail
cd "$(dirname "$0")/.."
kvplan=.build/release/kvplan
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
prompt=$'def read_lines(path):\n    with open(path) as f:\n'
for target in cpu edge-npu datacenter-gpu; do
  for policy in exact uniform pyramid prefixkv cake kivi2 kivi4 kvtuner; do
    dir="$work/$target-$policy"
    if ! "$kvplan" compile Graphs/tiny-llama.graph --target "$target" --context 256 --kv-ratio 0.5 --kv-policy "$policy" \
        --profile Graphs/tiny-llama/profile.json -o "$dir" >/dev/null 2>"$work/log"; then
      echo "$target $policy: compile FAILED"; cat "$work/log"; failed=1; continue
    fi
    if "$kvplan" run "$dir" --weights Graphs/tiny-llama/model.safetensors --prompt "$prompt" --max-tokens 200 --check >/dev/null 2>"$work/log"; then
      verdict=passed
    else
      verdict=FAILED; failed=1
    fi
    attention=$(grep -o 'attention max |Δ| [^ ]*' "$work/log" | awk '{print $4}')
    drift=$(grep -o 'max |Δ logit| [^,]*' "$work/log" | awk '{print $4}')
    greedy=$(grep -o 'greedy token equal in [0-9]* of [0-9]*' "$work/log" | awk '{print $5 "/" $7}')
    echo "$target $policy: $verdict (attention |Δ| ${attention:-–}, logit drift ${drift:-–}, greedy ${greedy:-–})"
    [ "$verdict" = FAILED ] && grep -A10 "check FAILED" "$work/log"
  done
done
exit $failed
