#!/usr/bin/env bash
# Archives are byte-identical whatever the thread count, now that alcm-pack queues tensors
# piece by piece (alcm_input_next_begin, alcm_encoder_queue_begin): a
# multi-tensor .npz (stored and deflated) and .safetensors of several dtypes, tensors of many
# chunks and of none, one larger than a 1 MiB read piece, one in Fortran order (read whole),
# a lone .npy, lossless, --max-error, --bits and --rel-error, packed at -T1/2/3 (-T1 queues
# the lossless and --max-error tensors in pieces too, and codes them on one thread). A .npz
# member whose CRC-32 fails in its last piece fails the pack and leaves no archive.
# alcm-unpack writes the same .npz and .safetensors at -T1 (no writer thread) and -T2/3
# (the writer thread writes a tensor while the next is decoded).
# Usage: cli_threads_identical.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "cli_threads_identical: no numpy: skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp" <<'PY' || exit 1
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(18)
t = {}
for i in range(7):
    t["layer%d.weight" % i] = rng.normal(0, 0.02, (64, 1000 + 37 * i)).astype(np.float32)
t["empty"] = np.zeros((0, 5), np.float32)
t["ids"] = rng.integers(0, 1000, 20000).astype(np.int32)
t["half"] = rng.normal(0, 1, 30000).astype(np.float16)
t["one"] = np.ones(1, np.float64)
t["big"] = rng.normal(0, 0.02, (600, 1000)).astype(np.float32)
t["big2"] = rng.normal(0, 0.02, (400, 1000)).astype(np.float32)
t["fortran"] = np.asfortranarray(rng.normal(0, 0.02, (300, 200)).astype(np.float32))
np.savez(d + "/in.npz", **t)
np.savez_compressed(d + "/inz.npz", **t)
np.save(d + "/in.npy", t["big"])
t["fortran"] = np.ascontiguousarray(t["fortran"])
# safetensors by hand (no safetensors module needed): header, then data in order.
import json, struct
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
fail=0
for in in in.npz inz.npz in.safetensors in.npy; do
	for opt in "" "--max-error 1e-3" "--bits 6" "--rel-error 0.01"; do
		for th in 1 2 3; do
			# shellcheck disable=SC2086
			"$bin/alcm-pack" -q -f -T$th --chunk-size 64k $opt "$tmp/$in" -o "$tmp/T$th.alcm" ||
				{ echo "cli_threads_identical: pack -T$th $opt $in failed"; fail=1; }
		done
		for th in 2 3; do
			cmp -s "$tmp/T1.alcm" "$tmp/T$th.alcm" ||
				{ echo "cli_threads_identical: $in $opt: -T$th archive differs from -T1"; fail=1; }
		done
	done
done
# A flipped byte near the end of the stored member big.npy: its CRC-32 fails once its last
# piece is read, after earlier pieces were coded; the pack fails and writes nothing.
/usr/bin/python3 - "$tmp" <<'PY' || fail=1
import struct, sys, zipfile
d = sys.argv[1]
b = bytearray(open(d + "/in.npz", "rb").read())
i = zipfile.ZipFile(d + "/in.npz").getinfo("big.npy")
# its data ends at the local header + name + extra + compressed size
n, x = struct.unpack("<HH", b[i.header_offset + 26:i.header_offset + 30])
stop = i.header_offset + 30 + n + x + i.compress_size
b[stop - 10] ^= 1
open(d + "/crc.npz", "wb").write(b)
PY
for th in 1 2; do
	"$bin/alcm-pack" -q -f -T$th --chunk-size 64k "$tmp/crc.npz" -o "$tmp/crc.alcm" 2>"$tmp/err"
	rc=$?
	{ [ $rc != 0 ] && grep -q "CRC-32" "$tmp/err" && [ ! -e "$tmp/crc.alcm" ]; } ||
		{ echo "cli_threads_identical: -T$th: bad CRC-32 gave exit $rc: $(cat "$tmp/err")"; fail=1; }
done
"$bin/alcm-pack" -q -f -T2 --chunk-size 64k "$tmp/in.npz" -o "$tmp/a.alcm" || fail=1
for ext in npz safetensors; do
	for th in 1 2 3; do
		"$bin/alcm-unpack" -q -f -T$th "$tmp/a.alcm" -o "$tmp/U$th.$ext" ||
			{ echo "cli_threads_identical: unpack -T$th .$ext failed"; fail=1; }
	done
	for th in 2 3; do
		cmp -s "$tmp/U1.$ext" "$tmp/U$th.$ext" ||
			{ echo "cli_threads_identical: unpack -T$th .$ext differs from -T1"; fail=1; }
	done
done
/usr/bin/python3 - "$tmp" <<'PY' || fail=1
import sys, numpy as np
d = sys.argv[1]
a, b = np.load(d + "/in.npz"), np.load(d + "/U2.npz")
assert sorted(a.files) == sorted(b.files), (a.files, b.files)
for k in a.files:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all(), k
PY
[ $fail = 0 ] && echo "cli_threads_identical: ok"
exit $fail
