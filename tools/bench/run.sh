#!/usr/bin/env bash
# Runs the codec benchmark: builds alcm-codec-bench if needed, fetches the real checkpoint
# (npm: @vladmandic/face-api, converted to build/data/faceapi.safetensors), then benchmarks
# it and the generated inputs, teeing the tables to build/bench/codec.md (and every number
# to build/bench/codec.json). About 5 minutes on two shared cores.
#
# usage: tools/bench/run.sh [EXTRA INPUT...]
# environment: BUILD_DIR (default build), RUNS (default 5), THREADS (alcm threads, default 1)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
build=${BUILD_DIR:-build}
runs=${RUNS:-5}
threads=${THREADS:-1}
bench=$build/bin/alcm-codec-bench

say() { printf 'run.sh: %s\n' "$*" >&2; }

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -B "$build" -DALCM_BUILD_TOOLS=ON >/dev/null || { say "cmake configure failed"; exit 1; }
fi
# Incremental: a no-op when the bench is up to date. -DALCM_BUILD_TOOLS=ON in case an
# existing build directory turned tools off (the bench is built with the tools).
if ! grep -q '^ALCM_BUILD_TOOLS:BOOL=ON' "$build/CMakeCache.txt"; then
	cmake -B "$build" -DALCM_BUILD_TOOLS=ON >/dev/null || { say "cmake configure failed"; exit 1; }
fi
cmake --build "$build" -j2 --target alcm-codec-bench >/dev/null || {
	say "build failed: cmake --build $build --target alcm-codec-bench"
	exit 1
}

inputs=()
ckpt=$build/data/faceapi.safetensors
if "$here/fetch_checkpoint.sh" "$ckpt"; then
	inputs+=("$ckpt")
else
	say "could not fetch the checkpoint; continuing with generated inputs only"
fi
inputs+=(gen:gauss gen:laplace-rows gen:bf16 gen:grad "$@")

mkdir -p "$build/bench"
"$bench" --runs "$runs" --threads "$threads" --json "$build/bench/codec.json" "${inputs[@]}" |
	tee "$build/bench/codec.md"
rc=${PIPESTATUS[0]}
say "tables in $build/bench/codec.md, numbers in $build/bench/codec.json"
exit "$rc"
