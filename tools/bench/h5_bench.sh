#!/usr/bin/env bash
# The HDF5 bridge's figures: importing and packing a Keras-shaped .h5 of MB megabytes
# (default 128) against packing the same tensors from .npz (target: within 1.5x), and the
# H5Zalcm filter plugin against HDF5's deflate+shuffle through h5repack (ratio, MB/s).
# Prints what build/bin/test_hdf5_bench measures in that mode (the ctest run of the same
# program only checks that both paths give the same tensors, at 8 MB).
#
# usage: tools/bench/h5_bench.sh [MB]
# environment: BUILD_DIR (default build)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
build=${BUILD_DIR:-build}
mb=${1:-128}
[ -f "$build/CMakeCache.txt" ] || cmake -B "$build" >/dev/null || exit 1
cmake --build "$build" -j2 --target test_hdf5_bench H5Zalcm >/dev/null || {
	echo "h5_bench.sh: build failed (is libhdf5-dev installed?)" >&2
	exit 1
}
command -v h5repack >/dev/null || echo "h5_bench.sh: h5repack missing (hdf5-tools): no plugin figures" >&2
plugin=$(dirname "$(find "$build" -name libH5Zalcm.so | head -1)")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ALCM_TEST_TMP=$tmp ALCM_H5_BENCH_MB=$mb ALCM_H5_BENCH_PLUGIN=$plugin \
	"$build/bin/test_hdf5_bench" 2>&1 | grep -v '^\[' 
