#!/usr/bin/env bash
# The learned parts' benchmarks, in one go:
#  1. alcm-stream-bench: the ALCM release's per-epoch table (savez_compressed baseline ratio
#     and CAQ against alcm's, and the gain) for synthetic 100x100 gradients over 10 epochs
#     and for real gradients of a 64-64-10 MLP trained on scikit-learn's digits
#     (tools/bench/digits_gradients.py; needs python3-numpy and python3-sklearn, installed
#     with apt-get when run as root);
#  2. alcm-budget-bench: --size at five budgets against one uniform --max-error bound at the
#     same size, on the bundled default checkpoint (alcm-make-checkpoint).
# Tees to build/bench/learned.md. Under a minute on two shared cores.
#
# usage: tools/bench/learned.sh
# environment: BUILD_DIR (default build), RUNS (default 5)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
build=${BUILD_DIR:-build}
runs=${RUNS:-5}
say() { printf 'learned.sh: %s\n' "$*" >&2; }

if [ ! -f "$build/CMakeCache.txt" ] || ! grep -q '^ALCM_BUILD_TOOLS:BOOL=ON' "$build/CMakeCache.txt"; then
	cmake -B "$build" -DALCM_BUILD_TOOLS=ON >/dev/null || { say "cmake configure failed"; exit 1; }
fi
cmake --build "$build" -j2 --target alcm-stream-bench alcm-budget-bench alcm-pack \
	alcm-make-checkpoint >/dev/null || { say "build failed"; exit 1; }

if ! /usr/bin/python3 -c 'import numpy, sklearn' 2>/dev/null; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		say "installing python3-sklearn (Debian) for the digits gradients"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			python3-numpy python3-sklearn >/dev/null 2>&1 || say "apt-get failed"
	fi
fi
frames=()
digits=$build/data/digits-gradients
if /usr/bin/python3 "$here/digits_gradients.py" "$digits" --epochs 10 --seed 0 >/dev/null; then
	frames=(--frames "$digits")
else
	say "no digits gradients (python3-sklearn missing?): synthetic gradients only"
fi
ckpt=$build/data/default-checkpoint.safetensors
mkdir -p "$build/bench" "$build/data"
"$build/bin/alcm-make-checkpoint" -f "$ckpt" >/dev/null 2>&1 || { say "alcm-make-checkpoint failed"; exit 1; }

out=$build/bench/learned.md
{
	echo "# alcm-stream-bench --runs $runs ${frames[*]}"
	echo
	"$build/bin/alcm-stream-bench" --runs "$runs" "${frames[@]}" --json "$build/bench/stream.json"
	rc1=$?
	echo "# alcm-budget-bench $ckpt"
	echo
	"$build/bin/alcm-budget-bench" --json "$build/bench/budget.json" "$ckpt"
	rc2=$?
	[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ]
} | tee "$out"
rc=${PIPESTATUS[0]}
say "tables in $out"
exit "$rc"
