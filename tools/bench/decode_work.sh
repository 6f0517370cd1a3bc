#!/usr/bin/env bash
# Decode time of forged modelled chunks (QDAT coding 16, spec 6.5.6) against the same
# tensor in byte planes: one float32 tensor of 131072 zeros in chunks of one element, each
# chunk declaring 16 classes (16 rANS tables), and its twin coded as width-1 planes. Slot
# tables cost 4096 entries a class whatever the chunk's length; the reader must keep a
# chunk's work bounded by its bytes and tokens (it built 65536 entries per element and took
# 15x the twin's time). Target: at most 4x the twin's time (the forged archive is 8x
# larger). Medians of RUNS (default 3) runs, one thread, in the same script.
#
#   tools/bench/decode_work.sh [BUILD_DIR]      (default build; needs alcm-test-forge)
set -u
B=$(cd "${1:-build}/bin" && pwd) || exit 2
[ -x "$B/alcm-test-forge" ] || { echo "decode_work: needs $B/alcm-test-forge" >&2; exit 2; }
RUNS=${RUNS:-3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$B/alcm-test-forge" classes "$T/k16.alcm" 131072 1 16 || exit 2
"$B/alcm-test-forge" classes "$T/planes.alcm" 131072 1 0 || exit 2

# median_ms ARCHIVE: the median wall time of alcm-unpack -T 1, in ms (exit status checked)
median_ms() {
	local t=()
	for _ in $(seq 1 "$RUNS"); do
		local s e
		s=$(date +%s%N)
		"$B/alcm-unpack" -q -f -T 1 "$1" -o "$T/out.npy" || { echo "decode_work: $1 refused" >&2; exit 2; }
		e=$(date +%s%N)
		t+=($(((e - s) / 1000000)))
	done
	printf '%s\n' "${t[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}
p=$(median_ms "$T/planes.alcm")
k=$(median_ms "$T/k16.alcm")
ratio=$(awk -v k="$k" -v p="$p" 'BEGIN { printf "%.2f", k / (p > 0 ? p : 1) }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 4 ? "holds" : "MISSES") }')
printf 'decode_work: 131072 one-element chunks: planes %d ms (%d B), 16 classes each %d ms (%d B): %sx, target <= 4x: %s\n' \
	"$p" "$(stat -c %s "$T/planes.alcm")" "$k" "$(stat -c %s "$T/k16.alcm")" "$ratio" "$verdict"
[ "$verdict" = holds ]
