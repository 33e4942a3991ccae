#!/usr/bin/env bash
# razor's main job on the default model: probe for retrieval heads (writes the heads files), then
# generate with the head-wise compressed KV cache next to StreamingLLM at a similar budget, and
# evaluate the fidelity of each policy against the full cache.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/stories3M-q80.bin}
OUT=${OUT:-out}
if [ ! -e "$MODEL" ]; then
  echo "demo: $MODEL not found (razor reads its models from ../shared/models); pass a model path" >&2
  exit 1
fi
mkdir -p "$OUT"
RAZOR=./build/razor
PROMPT="Once upon a time there was a girl named Tilly. Tilly"

echo "== razor info"; $RAZOR info "$MODEL"
echo; echo "== razor probe"; $RAZOR probe "$MODEL" -o "$OUT/heads.pt" --json "$OUT/heads.json"
echo; echo "== razor heads show"; $RAZOR heads show "$OUT/heads.pt"
echo; echo "== razor generate, razor policy (retrieval heads full, others 4 sinks + 16 recent + compensation)"
$RAZOR generate "$MODEL" --prompt "$PROMPT" -n 160 --heads "$OUT/heads.pt" --window 16 --mode rolling
echo; echo "== razor generate, StreamingLLM (every head 4 sinks + 16 recent)"
$RAZOR generate "$MODEL" --prompt "$PROMPT" -n 160 --policy streaming --window 16 --mode rolling
echo; echo "== razor eval --task name-recall"
$RAZOR eval "$MODEL" --task name-recall --heads "$OUT/heads.pt"
