#!/usr/bin/env bash
# Direct-I/O output (format/atomic.c): durable outputs of more than one 4 MiB block are written
# with O_DIRECT from aligned staging blocks, the unaligned tail buffered. The files must be
# byte-identical to buffered ones (ALCM_DIRECT_IO=0) at -T1/2/3, for archives (lossless and
# --max-error) and for unpacked .npz, .safetensors and .npy, with sizes that are not multiples
# of the block size and zero-length tensors; a write error part way (a file-size limit before
# and after the first direct block) exits 3 and leaves nothing; kill -9 while a direct block is
# being written leaves nothing. Then the HDF5 module (tools/cli_h5.c): alcm-pack does not link
# libhdf5, packs a .npy without the module, and names the missing module for a .h5 input or
# output (exit 7).
# Usage: cli_direct_io.sh BIN_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd)
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "cli_direct_io: no numpy: skipped"
	exit 0
fi
# Next to the build, not in /tmp: a disk file system that takes O_DIRECT (tmpfs may not).
T=$(mktemp -d "$B/../direct_io.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

/usr/bin/python3 - "$T" <<'PY' || exit 1
import sys, json, struct, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(18)
t = {}
# about 11 MB: three direct blocks and an odd tail; sizes not multiples of 4096
for i in range(3):
    t["layer%d.weight" % i] = rng.normal(0, 0.02, (1000 + 7 * i, 997)).astype(np.float32)
t["empty"] = np.zeros((0, 5), np.float32)
t["ids"] = rng.integers(0, 1000, 12345).astype(np.int32)
t["empty2"] = np.zeros((3, 0), np.float64)
t["half"] = rng.normal(0, 1, 30001).astype(np.float16)
np.savez(d + "/in.npz", **t)
np.save(d + "/big.npy", rng.normal(0, 1, (2111, 1001)).astype(np.float32))
np.save(d + "/kill.npy", rng.normal(0, 1, (10000, 4001)).astype(np.float32))
hdr, off, blobs = {}, 0, []
for k, v in t.items():
    b = v.tobytes()
    hdr[k] = {"dtype": {"float32": "F32", "int32": "I32", "float16": "F16",
                        "float64": "F64"}[str(v.dtype)], "shape": list(v.shape),
              "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(d + "/in.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY

# Direct I/O is used at all (else the comparisons below prove nothing): an output fd gets
# O_DIRECT and a 4 MiB block goes through it.
if command -v strace >/dev/null; then
	# LeakSanitizer cannot run under ptrace (the ASan build).
	saved_asan=${ASAN_OPTIONS:-}
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
	strace -f -e trace=fcntl,pwrite64 -o "$T/trace" "$B/alcm-pack" -q -f "$T/in.npz" \
		-o "$T/traced.alcm" || bad "pack under strace"
	if grep -q 'F_SETFL, .*O_DIRECT' "$T/trace" && grep -q 'pwrite64(.*, 4194304, ' "$T/trace"; then
		ok
	else
		bad "alcm-pack wrote no 4 MiB block with O_DIRECT"
	fi
	strace -f -e trace=fcntl -o "$T/trace" "$B/alcm-unpack" -q -f "$T/traced.alcm" \
		-o "$T/traced.npz" || bad "unpack under strace"
	grep -q 'F_SETFL, .*O_DIRECT' "$T/trace" && ok || bad "alcm-unpack did not use O_DIRECT"
	unset ASAN_OPTIONS
	[ -n "$saved_asan" ] && export ASAN_OPTIONS=$saved_asan
else
	echo "cli_direct_io: no strace: not checking that O_DIRECT is used"
fi

# Byte-identical to buffered output.
for in in in.npz in.safetensors big.npy; do
	for opt in "" "--max-error 1e-3"; do
		for th in 1 2 3; do
			# shellcheck disable=SC2086
			"$B/alcm-pack" -q -f -T$th $opt "$T/$in" -o "$T/d$th.alcm" &&
				ALCM_DIRECT_IO=0 "$B/alcm-pack" -q -f -T$th $opt "$T/$in" -o "$T/b$th.alcm" ||
				{ bad "pack -T$th $opt $in"; continue; }
			cmp -s "$T/d$th.alcm" "$T/b$th.alcm" && ok ||
				bad "pack -T$th $opt $in: direct and buffered archives differ"
		done
	done
done
"$B/alcm-pack" -q -f "$T/in.npz" -o "$T/a.alcm" || bad "pack a"
"$B/alcm-pack" -q -f "$T/big.npy" -o "$T/big.alcm" || bad "pack big"
for ext in npz safetensors npy; do
	a=$T/a.alcm
	[ $ext = npy ] && a=$T/big.alcm
	for th in 1 2 3; do
		"$B/alcm-unpack" -q -f -T$th "$a" -o "$T/d$th.$ext" &&
			ALCM_DIRECT_IO=0 "$B/alcm-unpack" -q -f -T$th "$a" -o "$T/b$th.$ext" ||
			{ bad "unpack -T$th .$ext"; continue; }
		cmp -s "$T/d$th.$ext" "$T/b$th.$ext" && ok ||
			bad "unpack -T$th .$ext: direct and buffered outputs differ"
	done
done
/usr/bin/python3 - "$T" <<'PY' && ok || bad "unpacked .npz/.npy do not hold the input"
import sys, numpy as np
d = sys.argv[1]
a, b = np.load(d + "/in.npz"), np.load(d + "/d2.npz")
assert sorted(a.files) == sorted(b.files), (a.files, b.files)
for k in a.files:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all(), k
assert (np.load(d + "/big.npy") == np.load(d + "/d1.npy")).all()
PY

# A write error part way: RLIMIT_FSIZE (SIGXFSZ ignored by the tools: EFBIG) inside the first
# block (staged, the error comes at commit) and after two direct blocks.
mkdir "$T/out"
for lim in 100k 9000k; do
	bytes=$((${lim%k} * 1024))
	for job in "alcm-pack -q -f $T/in.npz -o $T/out/x.alcm" \
		"alcm-unpack -q -f -T2 $T/a.alcm -o $T/out/x.npz" \
		"alcm-unpack -q -f -T2 $T/a.alcm -o $T/out/x.safetensors"; do
		# shellcheck disable=SC2086
		(ulimit -f $((bytes / 1024)) && exec "$B"/$job) 2>"$T/err"
		rc=$?
		left=$(find "$T/out" -mindepth 1 | wc -l)
		# The message names the output once ("cannot write 'x': cannot write 'x': ..." before).
		if [ $rc = 3 ] && [ "$left" = 0 ] && grep -q "cannot write" "$T/err" &&
			[ "$(grep -o "$T/out/x" "$T/err" | wc -l)" = 1 ]; then
			ok
		else
			bad "limit $lim: $job: exit $rc (want 3), $left files left: $(cat "$T/err")"
		fi
	done
done

# kill -9 while the output has O_DIRECT set (caught in /proc/PID/fdinfo): nothing is left.
"$B/alcm-pack" -q -f "$T/kill.npy" -o "$T/kill.alcm" || bad "pack kill.npy"
for job in "alcm-pack -q -f -T1 $T/kill.npy -o $T/out/k.alcm" \
	"alcm-unpack -q -f -T1 $T/kill.alcm -o $T/out/k.safetensors"; do
	caught=0
	for attempt in 1 2 3 4 5; do
		# shellcheck disable=SC2086
		"$B"/$job &
		pid=$!
		while kill -0 $pid 2>/dev/null; do
			direct=0
			for fi in /proc/$pid/fdinfo/*; do
				{ while read -r k v; do
					[ "$k" = flags: ] && (((8#$v) & 8#40000)) && direct=1
				done <"$fi"; } 2>/dev/null
			done
			if [ $direct = 1 ]; then
				kill -9 $pid 2>/dev/null && caught=1
				break
			fi
		done
		wait $pid 2>/dev/null
		[ $caught = 1 ] && break
		rm -f "$T"/out/*
	done
	left=$(find "$T/out" -mindepth 1 | wc -l)
	if [ $caught = 0 ]; then
		echo "cli_direct_io: the process ended before it could be killed mid-write: $job"
	elif [ "$left" = 0 ]; then
		ok
	else
		bad "kill -9 during a direct write left $left files: $(ls -A "$T/out")"
	fi
	rm -f "$T"/out/* "$T"/out/.[!.]*
done

# The HDF5 module: not linked, loaded only for .h5, a clear error when it is missing.
if ldd "$B/alcm-pack" | grep -q hdf5; then
	bad "alcm-pack links libhdf5 (it should load alcm-hdf5.so only for .h5 files)"
else
	ok
fi
printf '\211HDF\r\n\032\n-not-really-hdf5-' >"$T/fake.h5"
missing=$T/nowhere/alcm-hdf5.so
ALCM_HDF5_MODULE=$missing "$B/alcm-pack" -q -f "$T/big.npy" -o "$T/m.alcm" && ok ||
	bad "alcm-pack of a .npy fails without the HDF5 module"
ALCM_HDF5_MODULE=$missing "$B/alcm-pack" -q -f "$T/fake.h5" -o "$T/h.alcm" 2>"$T/err"
rc=$?
if [ $rc = 7 ] && grep -q "cannot load '$missing'" "$T/err" && [ ! -e "$T/h.alcm" ]; then
	ok
else
	bad "a .h5 input without the module: exit $rc (want 7), '$(cat "$T/err")'"
fi
ALCM_HDF5_MODULE=$missing "$B/alcm-unpack" -q -f "$T/big.alcm" -o "$T/m.h5" 2>"$T/err"
rc=$?
if [ $rc = 7 ] && grep -q "cannot load '$missing'" "$T/err" && [ ! -e "$T/m.h5" ]; then
	ok
else
	bad "a .h5 output without the module: exit $rc (want 7), '$(cat "$T/err")'"
fi
# A copy of the tool in a tree without the module (nor one in the install libdir).
mkdir -p "$T/tree/bin" "$T/tree/lib"
cp "$B/alcm-pack" "$T/tree/bin/"
if [ -e /usr/local/lib/alcm-hdf5.so ] || [ -e /usr/lib/alcm-hdf5.so ]; then
	echo "cli_direct_io: an installed alcm-hdf5.so exists: relocated-copy case skipped"
else
	"$T/tree/bin/alcm-pack" -q -f "$T/big.npy" -o "$T/m.alcm" && ok ||
		bad "a copy of alcm-pack without the module cannot pack a .npy"
	"$T/tree/bin/alcm-pack" -q -f "$T/fake.h5" -o "$T/m2.alcm" 2>"$T/err"
	rc=$?
	[ $rc = 7 ] && grep -q "alcm-hdf5.so" "$T/err" && ok ||
		bad "a copy without the module, .h5 input: exit $rc, '$(cat "$T/err")'"
	# and the module next to it is found relative to the executable
	if [ -e "$B/../lib/alcm-hdf5.so" ]; then
		cp "$B/../lib/alcm-hdf5.so" "$T/tree/lib/"
		"$T/tree/bin/alcm-pack" -q -f "$T/fake.h5" -o "$T/m2.alcm" 2>"$T/err"
		grep -q "cannot load" "$T/err" && bad "the module in ../lib was not found: $(cat "$T/err")" || ok
	fi
fi

echo "cli_direct_io: $pass passed, $fail failed"
[ $fail = 0 ]
