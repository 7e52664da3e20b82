#!/usr/bin/env bash
# The main job on a bundled model: set-up, build, and `kvplan check` of the
# model the runtime will execute and of a real Hugging Face config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product kvplan
.build/release/kvplan check Graphs/tiny-llama.graph
.build/release/kvplan check Graphs/hf-configs/llama-3.1-8b.json --context 8192
