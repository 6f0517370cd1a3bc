#!/usr/bin/env bash
# A damaged delta of a checkpoint series is refused at every thread count: with two threads
# or more, alcm-unpack checks the digest of a large delta's data section on a thread of its
# own while the reference decodes (lib/series.c, alcm_series_decode); that check must still
# name the section, exit 5 (digest mismatch) and leave no output. The same archive undamaged
# decodes to the checkpoint at -T1, -T2 and -T3.
# Usage: cli_series_digest.sh BIN_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() {
	local want=$1
	shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" = "$want" ]; then ok; else bad "exit $got, not $want: $* ($(cat "$T/err"))"; fi
}
cd "$T" || exit 1
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "cli_series_digest: no numpy: skipped"
	exit 0
fi
# c0: a 1024 x 1024 float32 layer; c1: each value moved by up to 2^9 units in the last place
# (its order key, spec 6.12.4), 40% of them not at all, as between two checkpoints of a
# training run: frame 1 is a delta the writer's cost rule keeps (spec 6.12.7), and its data
# section exceeds the 256 KiB from which its digest gets a thread.
/usr/bin/python3 - <<'PY' || exit 1
import json, struct, numpy as np
rng = np.random.default_rng(17)
u = rng.normal(0, 0.05, (1024, 1024)).astype(np.float32).view(np.uint32)
key = np.where(u >> 31, ~u, u | np.uint32(0x80000000)).astype(np.int64)
d = rng.integers(-512, 512, u.shape) * (rng.random(u.shape) < 0.6)
k2 = ((key + d) & 0xFFFFFFFF).astype(np.uint32)
u2 = np.where(k2 >> 31, k2 ^ np.uint32(0x80000000), ~k2).astype(np.uint32)
for name, v in (("c0", u), ("c1", u2)):
    b = v.tobytes()
    h = json.dumps({"w": {"dtype": "F32", "shape": [1024, 1024],
                          "data_offsets": [0, len(b)]}}).encode()
    h += b" " * (-len(h) % 8)
    open(name + ".safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b)
PY
# What alcm-unpack writes for c1 (its header layout may differ from the one above).
expect 0 "$B/alcm-pack" c1.safetensors -o c1.alcm -q
expect 0 "$B/alcm-unpack" c1.alcm -o c1u.safetensors -q
expect 0 "$B/alcm-pack" c0.safetensors -o s.alcm --series -q
expect 0 "$B/alcm-pack" c1.safetensors -o s.alcm --append -q
for t in 1 2 3; do
	expect 0 "$B/alcm-unpack" s.alcm --frame 1 -T $t -o "back$t.safetensors"
	if cmp -s c1u.safetensors "back$t.safetensors"; then ok; else bad "-T $t: frame 1 differs"; fi
done
# The largest DLTA section: its offset and length from alcm-inspect's table.
read -r off len < <("$B/alcm-inspect" s.alcm | awk '$2 == "DLTA" {print $5, $6}' | sort -k2 -n | tail -1)
if [ "${len:-0}" -ge 262144 ]; then ok; else bad "largest DLTA section is ${len:-none} bytes"; fi
cp s.alcm bad.alcm
pos=$((off + len / 2))
b=$(od -An -tu1 -j "$pos" -N1 bad.alcm | tr -d ' ')
printf "$(printf '\\%03o' $(((b + 1) % 256)))" | dd of=bad.alcm bs=1 seek="$pos" conv=notrunc status=none
for t in 1 2 3; do
	expect 5 "$B/alcm-unpack" bad.alcm --frame 1 -T $t -o "x$t.safetensors"
	if grep -q "digest mismatch in section" "$T/err"; then ok; else bad "-T $t: $(cat "$T/err")"; fi
	if [ ! -e "x$t.safetensors" ]; then ok; else bad "-T $t: partial output"; fi
done
echo "cli_series_digest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
