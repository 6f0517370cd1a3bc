#!/usr/bin/env bash
# The entropy-coding benchmark of issue 15: builds alcm-entropy-bench if needed, makes its
# inputs, runs it and tees the tables to build/bench/entropy.md (numbers in entropy.json).
#
#   faceapi weights     build/data/faceapi.safetensors (fetch_checkpoint.sh: npm, TF layout)
#   digits MLP grads    digits_gradients.py --hidden 1024, epoch 5 (64 -> 1024 -> 10, the
#                       [in, out] layout of TF: channels on the last axis)
#   digits CNN weights  digits_cnn.py: the network trained here (PyTorch layout)
#   digits CNN grads    the full-batch gradient of the same network at the end
#   torch MLP weights   torch_nets.py's mlp (64 -> 512 -> 256 -> 10, float32, PyTorch layout),
#   torch MLP grads     trained with Debian's python3-torch, and its full-batch gradient
#
# The Python scripts need Debian's python3-sklearn and python3-torch and run with
# /usr/bin/python3 (another python3 on PATH may lack them). No download but the npm package.
# About 3 minutes on two shared cores, most of it training the CNN (once; kept in
# build/data/).
#
# usage: tools/bench/entropy.sh [EXTRA FILE[:LAYOUT][:KIND]...]
# environment: BUILD_DIR (default build), RUNS (default 5), PY (default /usr/bin/python3);
# where the inputs are (made there when missing): FACEAPI (default $BUILD_DIR/data/
# faceapi.safetensors), MLP_DIR (data/digits-mlp1024), CNN_DIR (data/digits-cnn), TORCH_DIR
# (data/torchnets). The bench prints HOLDS/MISSES for every target of every file.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
build=${BUILD_DIR:-build}
runs=${RUNS:-5}
py=${PY:-/usr/bin/python3}
bench=$build/bin/alcm-entropy-bench
data=$build/data

say() { printf 'entropy.sh: %s\n' "$*" >&2; }

if [ ! -f "$build/CMakeCache.txt" ] || ! grep -q '^ALCM_BUILD_TOOLS:BOOL=ON' "$build/CMakeCache.txt"; then
	cmake -B "$build" -DALCM_BUILD_TOOLS=ON >/dev/null || { say "cmake configure failed"; exit 1; }
fi
cmake --build "$build" -j2 --target alcm-entropy-bench >/dev/null || {
	say "build failed: cmake --build $build --target alcm-entropy-bench"
	exit 1
}

inputs=()
face=${FACEAPI:-$data/faceapi.safetensors}
if [ -f "$face" ] || "$here/fetch_checkpoint.sh" "$face" >/dev/null; then
	inputs+=("$face:tf:weights")
else
	say "could not fetch the faceapi checkpoint; going on without it"
fi
mlp=${MLP_DIR:-$data/digits-mlp1024}
if [ ! -f "$mlp/epoch_005.npz" ]; then
	"$py" "$here/digits_gradients.py" "$mlp" --hidden 1024 --epochs 6 >/dev/null ||
		say "digits_gradients.py failed (needs python3-sklearn)"
fi
[ -f "$mlp/epoch_005.npz" ] && inputs+=("$mlp/epoch_005.npz:tf:grads")
cnn=${CNN_DIR:-$data/digits-cnn}
if [ ! -f "$cnn/digits_cnn_grads.safetensors" ]; then
	"$py" "$here/digits_cnn.py" "$cnn" >/dev/null ||
		say "digits_cnn.py failed (needs python3-torch and python3-sklearn)"
fi
if [ -f "$cnn/digits_cnn_grads.safetensors" ]; then
	inputs+=("$cnn/digits_cnn_weights.safetensors:torch:weights")
	inputs+=("$cnn/digits_cnn_grads.safetensors:torch:grads")
fi
tn=${TORCH_DIR:-$data/torchnets}
if [ ! -f "$tn/mlp_grads.safetensors" ]; then
	"$py" "$here/torch_nets.py" "$tn" >/dev/null ||
		say "torch_nets.py failed (needs python3-torch and python3-sklearn)"
fi
if [ -f "$tn/mlp_grads.safetensors" ]; then
	inputs+=("$tn/mlp_weights.safetensors:torch:weights")
	inputs+=("$tn/mlp_grads.safetensors:torch:grads")
fi
inputs+=("$@")
[ ${#inputs[@]} -gt 0 ] || { say "no input"; exit 1; }

mkdir -p "$build/bench"
"$bench" --runs "$runs" --json "$build/bench/entropy.json" "${inputs[@]}" | tee "$build/bench/entropy.md"
rc=${PIPESTATUS[0]}
say "tables in $build/bench/entropy.md, numbers in $build/bench/entropy.json"
exit "$rc"
