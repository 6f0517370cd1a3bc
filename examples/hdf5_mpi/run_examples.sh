#!/usr/bin/env bash
# ctest driver of the parallel HDF5 examples: one checkpoint written collectively by 2 and by
# 4 MPI ranks with the alcm filter, read back by the other count and serially; h5diff against
# an unfiltered copy: identical when lossless, within the bound (and not identical) in
# max-error mode. Then the h5py + mpi4py example the same way, when Debian's python3-h5py-mpi
# and python3-mpi4py are installed.
# usage: run_examples.sh H5MPI_CHECKPOINT MPI_PLUGIN_DIR SERIAL_PLUGIN_DIR SOURCE_DIR
set -u
ex=$1 pmpi=$2 pser=$3 src=$4
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
command -v mpirun >/dev/null || { echo "run_examples: no mpirun (openmpi-bin): skipped"; exit 0; }
# Root in a container needs --allow-run-as-root; 4 ranks on 2 cores need --oversubscribe.
mpi=(mpirun --oversubscribe -np)
[ "$(id -u)" -ne 0 ] || mpi=(mpirun --allow-run-as-root --oversubscribe -np)
# A sanitized plugin cannot load into the uninstrumented h5diff, h5dump or python: the
# sanitizer build runs the C example alone (instrumented), without leak checking, which would
# report Open MPI's own allocations at exit.
sanitized=0
if ldd "$pmpi/libH5Zalcm.so" 2>/dev/null | grep -q 'libasan\|libubsan'; then
	sanitized=1
	export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
fi
pass=0 fail=0
run() {
	local want=$1 plugin=$2
	shift 2
	if [ "$sanitized" = 1 ] && [ "$plugin" = "$pser" ]; then
		return # a tool that would load the sanitized plugin
	fi
	if HDF5_PLUGIN_PATH=$plugin timeout 120 "$@" >"$T/out" 2>&1; then got=0; else got=$?; fi
	if [ "$got" -eq "$want" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: exit $got (want $want): $*" >&2
		head -c 2000 "$T/out" >&2
	fi
}
# 300 rows of 257 floats in chunks of 63 rows: chunks straddle the ranks' slabs.
data=(--layers 3 --rows 300 --cols 257 --chunk-kib 64 --quiet)
run 0 "$pmpi" "${mpi[@]}" 1 "$ex" write "$T/ref.h5" "${data[@]}" --filter none
run 0 "$pmpi" "${mpi[@]}" 2 "$ex" write "$T/a2.h5" "${data[@]}"
run 0 "$pmpi" "${mpi[@]}" 4 "$ex" write "$T/a4.h5" "${data[@]}"
run 0 "$pmpi" "${mpi[@]}" 4 "$ex" read "$T/a2.h5" "${data[@]}"
run 0 "$pmpi" "${mpi[@]}" 2 "$ex" read "$T/a4.h5" "${data[@]}"
run 0 "$pser" h5diff "$T/ref.h5" "$T/a2.h5"
run 0 "$pser" h5diff "$T/ref.h5" "$T/a4.h5"
run 0 "$pser" bash -c "h5dump -p -H '$T/a4.h5' | grep -q 'FILTER_ID 417'"
run 0 "$pser" test "$(stat -c %s "$T/a4.h5")" -lt "$(stat -c %s "$T/ref.h5")"
run 0 "$pmpi" "${mpi[@]}" 4 "$ex" write "$T/l4.h5" "${data[@]}" --max-error 1e-3
run 0 "$pmpi" "${mpi[@]}" 2 "$ex" read "$T/l4.h5" "${data[@]}" --max-error 1e-3
run 1 "$pmpi" "${mpi[@]}" 2 "$ex" read "$T/l4.h5" "${data[@]}"
run 0 "$pser" h5diff -d 1e-3 "$T/ref.h5" "$T/l4.h5"
run 1 "$pser" h5diff -q "$T/ref.h5" "$T/l4.h5"
# Without the plugin (no HDF5_PLUGIN_PATH, and none installed) the read fails cleanly.
run 2 "/nonexistent" "${mpi[@]}" 2 "$ex" read "$T/a4.h5" "${data[@]}"

py=/usr/bin/python3
if [ "$sanitized" = 1 ]; then
	echo "run_examples: sanitizer build: h5diff, h5dump and the h5py example skipped"
elif [ -x "$py" ] && "$py" -c 'import mpi4py, h5py' 2>/dev/null; then
	pex=$src/h5py_mpi_checkpoint.py
	run 0 "$pmpi" "${mpi[@]}" 2 "$py" "$pex" write "$T/p2.h5"
	run 0 "$pmpi" "${mpi[@]}" 4 "$py" "$pex" read "$T/p2.h5"
	run 0 "$pser" "$py" "$pex" read "$T/p2.h5"
	run 0 "$pser" h5diff "$T/p2.h5" "$T/p2.h5"
	run 0 "$pmpi" "${mpi[@]}" 4 "$py" "$pex" write "$T/pl4.h5" --max-error 1e-3
	run 0 "$pmpi" "${mpi[@]}" 2 "$py" "$pex" read "$T/pl4.h5" --max-error 1e-3
	run 0 "$pser" "$py" "$pex" read "$T/pl4.h5" --max-error 1e-3
	run 0 "$pser" h5diff -d 1e-3 "$T/p2.h5" "$T/pl4.h5"
else
	echo "run_examples: no python3-h5py-mpi/python3-mpi4py: h5py example skipped"
fi
echo "run_examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
