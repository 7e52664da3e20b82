#!/usr/bin/env bash
# Re-records the committed artifacts in Generated/ with the current kvplan (debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --product kvplan
for target in cpu edge-npu; do
  .build/debug/kvplan compile Graphs/tiny-llama.graph --target "$target" --kv-ratio 0.25 -o "Generated/tiny-llama/$target" | tail -1
done
# The timeline shown in Docs/inspect.md (a test requires it to match the committed plan).
.build/debug/kvplan inspect Generated/tiny-llama/edge-npu --svg Docs/inspect-tiny-llama-edge-npu.svg
