#!/usr/bin/env bash
# A damaged delta of a checkpoint series is refused at every thread count: with two threads
# or more, alcm-unpack checks the digest of a large delta's data section on a thread of its
# own while the reference decodes (lib/series.c, alcm_series_decode); that check must still
# name the section, exit 5 (digest mismatch) and leave no output. The same archive undamaged
# decodes to the checkpoint at -T1 and -T2.
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
# c1: c0 moved by at most 1e-4, so that frame 1 is a delta whose largest section exceeds the
# 256 KiB from which its digest gets a thread.
expect 0 "$B/alcm-make-checkpoint" c0.safetensors
expect 0 "$B/alcm-pack" c0.safetensors -o q.alcm --max-error 1e-4 -q
expect 0 "$B/alcm-unpack" q.alcm -o c1.safetensors -q
expect 0 "$B/alcm-pack" c0.safetensors -o s.alcm --series -q
expect 0 "$B/alcm-pack" c1.safetensors -o s.alcm --append -q
for t in 1 2; do
	expect 0 "$B/alcm-unpack" s.alcm --frame 1 -T $t -o "back$t.safetensors"
	if cmp -s c1.safetensors "back$t.safetensors"; then ok; else bad "-T $t: frame 1 differs"; fi
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
