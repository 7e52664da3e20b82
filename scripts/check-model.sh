#!/usr/bin/env bash
# The main job on a bundled model: set-up, build, `kvplan check` of the model the
# runtime will execute and of a real Hugging Face config, then `kvplan compile`
# of the bundled model into out/tiny-llama.kvplan with a KV budget (25% of the fp16 cache, allocated
# with the checkpoint's measured profile and per-layer sensitivity), the
# independent verifier on it, and `kvplan run --check` (the generated kernels on tier arenas with
# the packed KV cache, every op compared with the reference interpreter) with the trained
# checkpoint Graphs/tiny-llama/model.safetensors: real Python continues the prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product kvplan
.build/release/kvplan check Graphs/tiny-llama.graph
.build/release/kvplan check Graphs/hf-configs/llama-3.1-8b.json --context 8192
mkdir -p out
.build/release/kvplan compile Graphs/tiny-llama.graph --kv-ratio 0.25 --profile Graphs/tiny-llama/profile.json -o out/tiny-llama.kvplan
.build/release/kvplan verify out/tiny-llama.kvplan
.build/release/kvplan run out/tiny-llama.kvplan --weights Graphs/tiny-llama/model.safetensors \
    --prompt $'def read_lines(path):\n    with open(path) as f:\n' --max-tokens 120 --check
