#!/usr/bin/env bash
# Parallel HDF5 with the alcm filter (issue 14): one shared checkpoint written and read by 1,
# 2 and 4 MPI ranks through the MPI-IO driver (examples/hdf5_mpi/h5mpi_checkpoint.c), against
# the same writes with no filter and with deflate (level 4 + shuffle). Prints write and read
# MB/s (raw tensor bytes over the slowest rank's wall time, file open to close), the file
# size and its ratio to the unfiltered file; medians of RUNS runs. Not a test: on a machine with fewer cores than ranks, the ranks
# share cores (mpirun --oversubscribe) and the figures show that, not the scaling.
#
# usage: tools/bench/h5_mpi_bench.sh [RUNS] [-- h5mpi_checkpoint data options]
#   default data: --layers 16 --rows 1024 --cols 1024 (64 MiB of float32 weights plus biases),
#   1 MiB chunks; e.g. `-- --from build/data/faceapi.safetensors` for a real checkpoint
# environment: BUILD_DIR (default build), RANKS (default "1 2 4"), MPIRUN_OPTS (default
#   "--bind-to none --mca mpi_yield_when_idle 1")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
runs=${1:-3}
shift || true
[ "${1:-}" = "--" ] && shift
data=("$@")
[ ${#data[@]} -gt 0 ] || data=(--layers 16 --rows 1024 --cols 1024)
command -v mpirun >/dev/null || { echo "h5_mpi_bench: needs openmpi-bin" >&2; exit 1; }
[ -f "$build/CMakeCache.txt" ] || cmake -B "$build" >/dev/null
cmake --build "$build" -j2 --target h5mpi_checkpoint >/dev/null ||
	{ echo "h5_mpi_bench: cannot build h5mpi_checkpoint (libhdf5-openmpi-dev?)" >&2; exit 1; }
ex=$build/bin/h5mpi_checkpoint
export HDF5_PLUGIN_PATH=$root/$build/lib/plugin-mpi
# Ranks that wait in a collective yield their core instead of spinning, and are not pinned:
# on a machine shared with other work, spinning ranks starve each other (2 ranks writing
# 32 MB unfiltered: 18 MB/s pinned and spinning, 41 MB/s yielding, at load 16 on 2 cores).
read -r -a extra <<<"${MPIRUN_OPTS:---bind-to none --mca mpi_yield_when_idle 1}"
mpi=(mpirun --oversubscribe "${extra[@]}" -np)
[ "$(id -u)" -ne 0 ] || mpi=(mpirun --allow-run-as-root --oversubscribe "${extra[@]}" -np)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/h5mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "h5_mpi_bench: ${data[*]}, $runs runs, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%5s  %-22s %12s %8s %12s %12s\n' ranks filter "file bytes" "vs none" "write MB/s" "read MB/s"
raw=
for np in ${RANKS:-1 2 4}; do
	for f in none deflate alcm alcm-maxerr; do
		opts=(--filter "${f%-maxerr}")
		[ "$f" = alcm-maxerr ] && opts+=(--max-error 1e-3)
		: >"$tmp/w" && : >"$tmp/r"
		for ((i = 0; i < runs; i++)); do
			"${mpi[@]}" "$np" "$ex" write "$tmp/c.h5" "${data[@]}" "${opts[@]}" >"$tmp/out"
			printf '%s %s\n' "$(stat -c %s "$tmp/c.h5")" \
				"$(sed -n 's/.* \([0-9.]*\) MB\/s$/\1/p' "$tmp/out")" >>"$tmp/w"
			"${mpi[@]}" "$np" "$ex" read "$tmp/c.h5" "${data[@]}" "${opts[@]:2}" >"$tmp/out"
			sed -n 's/.*, \([0-9.]*\) MB\/s, .*/\1/p' "$tmp/out" >>"$tmp/r"
		done
		file=$(awk 'NR == 1 { print $1 }' "$tmp/w")
		[ -n "$raw" ] || raw=$file # the unfiltered file is the first row
		wm=$(awk '{ print $2 }' "$tmp/w" | median)
		rm_=$(median <"$tmp/r")
		label=$f
		[ "$f" = deflate ] && label="deflate-4+shuffle"
		[ "$f" = alcm ] && label="alcm lossless"
		[ "$f" = alcm-maxerr ] && label="alcm max-error 1e-3"
		printf '%5s  %-22s %12s %8.3f %12s %12s\n' "$np" "$label" "$file" \
			"$(awk -v a="$raw" -v b="$file" 'BEGIN { print a / b }')" "$wm" "$rm_"
	done
done
