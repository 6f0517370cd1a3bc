#!/usr/bin/env bash
# The HDF5 filter's figures (issue 14): h5py writes of real checkpoints with the alcm filter
# against gzip-4 + shuffle, at h5py's automatic chunking and with 1 MiB chunks; the targets
# printed as holds/misses. Checkpoints: the faceapi weights (tools/bench/fetch_checkpoint.sh,
# npm) and the digits MLP gradients (tools/bench/digits_gradients.py, Debian's
# python3-sklearn). Not a test: timings depend on the machine and its load.
#
# usage: tools/bench/h5_filter_bench.sh [RUNS]      (default 5 runs per row, medians)
# environment: BUILD_DIR (default build), FACEAPI (default BUILD_DIR/data/faceapi.safetensors)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
runs=${1:-5}
py=/usr/bin/python3   # Debian's python with python3-h5py, -numpy, -sklearn
[ -f "$build/CMakeCache.txt" ] || cmake -B "$build" >/dev/null
cmake --build "$build" -j2 --target H5Zalcm H5Znull >/dev/null
"$py" -c 'import h5py, sklearn' 2>/dev/null ||
	{ echo "h5_filter_bench: needs python3-h5py and python3-sklearn" >&2; exit 1; }
face=${FACEAPI:-$build/data/faceapi.safetensors}
[ -s "$face" ] || bash "$here/fetch_checkpoint.sh" "$face" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/digits_gradients.py" "$tmp/digits" --epochs 10 >/dev/null
HDF5_PLUGIN_PATH=$root/$build/lib/plugin:$root/$build/lib/bench-plugin "$py" "$here/h5_filter_bench.py" --runs "$runs" \
	"faceapi=$face" "digits=$tmp/digits"
