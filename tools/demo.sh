#!/usr/bin/env bash
# The main job on a bundled default input: build, generate a small checkpoint, pack it,
# unpack it, check the round trip and show what the archive holds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
mkdir -p build/demo
bin=build/bin
ckpt=build/demo/checkpoint.safetensors
"$bin/alcm-make-checkpoint" -f "$ckpt"
echo
echo "== lossless: pack, unpack, compare"
"$bin/alcm-pack" "$ckpt" -o build/demo/checkpoint.alcm -f --check
"$bin/alcm-unpack" build/demo/checkpoint.alcm -o build/demo/roundtrip.safetensors -f
cmp "$ckpt" build/demo/roundtrip.safetensors && echo "demo: round trip is byte-identical"
echo
echo "== lossy: every value within 1e-3"
"$bin/alcm-pack" "$ckpt" -o build/demo/checkpoint-lossy.alcm -f --max-error 1e-3 --check
echo
"$bin/alcm-inspect" --verify build/demo/checkpoint.alcm
