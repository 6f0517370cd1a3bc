#!/usr/bin/env bash
# alcm-unpack writes lossless tensors chunk by chunk as they decode
# (alcm_archive_decode_pieces): a digest error in a later tensor, whose first chunks were
# already written to the temporary output, still leaves no output (file, .npy of one tensor,
# standard output) and exits 5, and so does one in the last section that only its digest
# shows (with -T2+ each thread checks a whole section before it decodes it: the relay); the
# outputs of a good archive are -T1's, byte for byte.
# Usage: cli_unpack_pieces.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "cli_unpack_pieces: no numpy: skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
/usr/bin/python3 -c '
import numpy as np
rng = np.random.default_rng(7)
np.savez("in.npz", **{"w%d" % i: rng.normal(0, 0.02, (64, 4096)).astype(np.float32)
                      for i in range(4)})' || exit 1
fail=0
bad() { echo "cli_unpack_pieces: $*"; fail=1; }
"$bin/alcm-pack" -q in.npz -o a.alcm --chunk-size 64k || exit 1
for ext in npz safetensors; do
	"$bin/alcm-unpack" -q -T1 a.alcm -o r1.$ext || bad "unpack -T1 .$ext failed"
	for th in 2 3; do
		"$bin/alcm-unpack" -q -f -T$th a.alcm -o r$th.$ext || bad "unpack -T$th .$ext failed"
		cmp -s r1.$ext r$th.$ext || bad "unpack -T$th .$ext differs from -T1"
	done
done
"$bin/alcm-unpack" -q -T2 a.alcm -t w2 -o w2.npy || bad "unpack -t w2 .npy failed"
/usr/bin/python3 -c '
import numpy as np
assert (np.load("w2.npy") == np.load("in.npz")["w2"]).all()' || bad ".npy of w2 differs"
# Damage the middle of tensor w2's section (the third LDAT): its first chunks decode and go
# out before its digest is known.
read -r off len < <("$bin/alcm-inspect" a.alcm | awk '$2 == "LDAT" && ++n == 3 {print $5, $6}')
cp a.alcm d.alcm
printf '\x55' | dd of=d.alcm bs=1 seek=$((off + len * 3 / 4)) conv=notrunc status=none
for th in 2 1; do
	for ext in npz safetensors; do
		"$bin/alcm-unpack" -q -T$th d.alcm -o d$th.$ext 2>err
		rc=$?
		[ $rc = 5 ] || bad "-T$th .$ext of a damaged archive: exit $rc, expected 5"
		grep -q "digest mismatch in section 2" err || bad "-T$th .$ext: $(cat err)"
		[ ! -e d$th.$ext ] || bad "-T$th .$ext: output left after a digest error"
	done
	"$bin/alcm-unpack" -q -T$th d.alcm -t w2 -o d$th.npy 2>/dev/null
	[ $? = 5 ] && [ ! -e d$th.npy ] || bad "-T$th .npy of a damaged tensor"
	"$bin/alcm-unpack" -q -T$th d.alcm -o - --format npz >out.bin 2>/dev/null
	[ $? = 5 ] && [ ! -s out.bin ] || bad "-T$th to standard output: bytes written"
done
# Damage the LAST section (w3's LDAT) where the chunks still decode (--no-verify unpacks it):
# only its digest tells. With threads, sections are hashed whole by the thread that then decodes
# them, apart from the tensor being written; the error found there must still come before
# w3's last piece is written, and leave nothing.
read -r off len < <("$bin/alcm-inspect" a.alcm | awk '$2 == "LDAT" && ++n == 4 {print $5, $6}')
cp a.alcm l.alcm
printf '\x55' | dd of=l.alcm bs=1 seek=$((off + len - 100)) conv=notrunc status=none
cmp -s a.alcm l.alcm && bad "the damage to the last section changed nothing"
"$bin/alcm-unpack" -q --no-verify -T2 l.alcm -o nv.npz || bad "the damaged chunk does not decode"
for th in 1 2 3; do
	for ext in npz safetensors; do
		"$bin/alcm-unpack" -q -T$th l.alcm -o l$th.$ext 2>err
		rc=$?
		[ $rc = 5 ] || bad "-T$th .$ext, last section damaged: exit $rc, expected 5"
		grep -q "digest mismatch in section 3" err || bad "-T$th .$ext, last section: $(cat err)"
		[ ! -e l$th.$ext ] || bad "-T$th .$ext: output left after a digest error in the last section"
	done
done
ls -a | grep -q '^\.[dl][0-9]' && bad "temporary files left: $(ls -a)"
# At -T1 too the tensor goes out chunk by chunk: one tensor of 48 MB unpacks in less memory
# than its own size (4 MiB chunks; whole, it took 64 MiB). Not under AddressSanitizer, whose
# shadow memory and quarantine count in the peak.
if [ -x /usr/bin/time ] && ! ldd "$bin/alcm-unpack" 2>/dev/null | grep -q libasan; then
	/usr/bin/python3 -c '
import numpy as np
np.save("big.npy", np.random.default_rng(8).normal(0, 0.02, 12 << 20).astype(np.float32))' || exit 1
	"$bin/alcm-pack" -q -T1 big.npy -o big.alcm || exit 1
	for ext in npy safetensors; do
		/usr/bin/time -o rss -f %M "$bin/alcm-unpack" -q -T1 big.alcm -o big1.$ext ||
			bad "unpack -T1 big.alcm -o .$ext failed"
		[ "$(cat rss)" -lt 40000 ] || bad "unpack -T1 of a 48 MB tensor to .$ext: peak RSS $(cat rss) kB"
	done
	cmp -s big.npy big1.npy || bad "unpack -T1 of big.alcm differs from its input"
fi
[ $fail = 0 ] && echo "cli_unpack_pieces: ok"
exit $fail
