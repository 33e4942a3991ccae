#!/usr/bin/env bash
# razor's main job on the default model: probe for retrieval heads, write the heads files, then
# generate and evaluate with the head-wise compressed KV cache.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/stories3M-q80.bin}
OUT=${OUT:-out}
if [ ! -e "$MODEL" ]; then
  echo "demo: $MODEL not found (razor reads its models from ../shared/models); pass a model path" >&2
  exit 1
fi
mkdir -p "$OUT"
./build/razor info "$MODEL"
./build/razor probe "$MODEL" -o "$OUT/heads.pt" --json "$OUT/heads.json"
./build/razor heads show "$OUT/heads.pt"
./build/razor generate "$MODEL" --prompt "Once upon a time" -n 120
