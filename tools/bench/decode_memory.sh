#!/usr/bin/env bash
# Peak resident memory of alcm-unpack against the bound of spec 5.6:
#   peak <= raw_bytes + 8 * channels + S * (6 * chunk bytes + 1 KiB) + T * (2^27 + 320 KiB)
# (S chunks in flight: 1 with one thread, else 2T; plus the process's own few MB), on the
# issue's forged archives (escape blocks declaring 3.76 GB and 1 GiB) and on a legitimate
# archive whose every value is escaped. Prints one line per case and holds/misses.
#
#   tools/bench/decode_memory.sh [BUILD_DIR]      (default build; needs alcm-test-forge,
#                                                 built with the tests, and /usr/bin/time)
set -u
B=$(cd "${1:-build}/bin" && pwd) || exit 2
[ -x "$B/alcm-test-forge" ] && [ -x /usr/bin/time ] || {
	echo "decode_memory: needs $B/alcm-test-forge and /usr/bin/time" >&2
	exit 2
}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
base_kb=16384 # the process itself: libraries, zstd contexts, stdio
status=0

# run NAME ARCHIVE THREADS RAW_BYTES CHUNK_BYTES CHANNELS
run() {
	local name=$1 a=$2 th=$3 raw=$4 chunk=$5 ch=$6
	local s=$((th == 1 ? 1 : 2 * th))
	local chunks=$(((raw + chunk - 1) / chunk))
	[ $chunks -lt $s ] && s=$chunks
	[ $s -lt 1 ] && s=1
	local bound_kb=$(((raw + 8 * ch + s * (6 * chunk + 1024) + th * ((1 << 27) + 327680)) / 1024 + base_kb))
	rm -f "$T/out.npy"
	/usr/bin/time -v "$B/alcm-unpack" "$a" -o "$T/out.npy" -T "$th" -q 2>"$T/time" >/dev/null
	local rc=$?
	local rss wall
	rss=$(awk '/Maximum resident/ {print $6}' "$T/time")
	wall=$(awk '/Elapsed/ {print $8}' "$T/time")
	local verdict=holds
	[ "$rss" -le "$bound_kb" ] || { verdict=MISSES; status=1; }
	printf '%-44s -T %d  exit %d  max RSS %9d kB  bound %9d kB  %6s s  %s\n' "$name" "$th" \
		$rc "$rss" "$bound_kb" "$wall" "$verdict"
}

"$B/alcm-test-forge" escape "$T/esc1.alcm" 268435456 1 3758096394 21
"$B/alcm-test-forge" escape "$T/esc2.alcm" 536870912 2 1073741824 21
run "f32 [2^28], 1 chunk, escape block 3.76 GB" "$T/esc1.alcm" 1 $((1 << 30)) $((1 << 30)) 1
run "f32 [2^29], 2 chunks, escape blocks 1 GiB" "$T/esc2.alcm" 2 $((1 << 31)) $((1 << 30)) 1

# Legitimate: 64 Mi float32 NaNs with distinct payloads, every value escaped at
# --max-error, 4 MiB chunks (the default) and 64 MiB chunks.
nan_npy() { # a .npy of N (a power of 2, >= 256) float32 NaNs with 256 payloads
	local n=$1 f=$2
	local d="{'descr': '<f4', 'fortran_order': False, 'shape': ($n,), }"
	local pad=$(((64 - (10 + ${#d} + 1) % 64) % 64))
	for k in $(seq 0 255); do printf "\\x$(printf %02x $k)\\x00\\xc0\\x7f"; done >"$T/data"
	local have=256
	while [ $have -lt "$n" ]; do
		cat "$T/data" "$T/data" >"$T/data2" && mv "$T/data2" "$T/data"
		have=$((have * 2))
	done
	{
		printf '\x93NUMPY\x01\x00'
		printf "\\x$(printf %02x $(((${#d} + pad + 1) % 256)))\\x$(printf %02x $(((${#d} + pad + 1) / 256)))"
		printf '%s%*s\n' "$d" $pad ''
		cat "$T/data"
	} >"$f"
}
n=$((1 << 22))
nan_npy $n "$T/nan.npy"
for cb in 4M 64M; do
	"$B/alcm-pack" -q "$T/nan.npy" -o "$T/nan-$cb.alcm" --max-error 0.01 --chunk-size $cb -f
	bytes=$((4 * n))
	chunk=$([ $cb = 4M ] && echo $((4 << 20)) || echo $((64 << 20)))
	[ $chunk -gt $bytes ] && chunk=$bytes
	for th in 1 2; do
		run "f32 [2^22] all NaN (all escaped), $cb chunks" "$T/nan-$cb.alcm" $th $bytes $chunk 1
	done
done
[ $status -eq 0 ] && echo "decode_memory: every case holds" || echo "decode_memory: MISSES"
exit $status
