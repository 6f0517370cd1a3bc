#!/usr/bin/env bash
# End-to-end speed of the tools on a large checkpoint (issue 18): alcm-pack and alcm-unpack run
# as a user runs them, timed by /usr/bin/time (wall, user, sys, peak RSS, minor page faults),
# next to zstd -3 on the same file, medians over RUNS runs, then holds/misses for the targets.
#
#   input  BUILD_DIR/bench/e2e.npz: 40 float32 tensors of 2048 x 2560, N(0, 0.02), numpy seed 18,
#          np.savez (stored, not deflated): 839 MB. Made once with /usr/bin/python3 + numpy.
#   also   a real checkpoint when there is one (FACEAPI, default build/data/faceapi.safetensors,
#          from tools/bench/fetch_checkpoint.sh; skipped when missing): the same rows, no targets.
#   codec  alcm-codec-bench --rows 'alcm lossless' on gen:gauss:5M (one tensor of the same size
#          and distribution) at -T1: the in-process figure the end-to-end one is held against.
#
# usage: tools/bench/e2e.sh [BUILD_DIR]          (default build)
# environment: RUNS (default 5; RUNS=1 for a quick check), PY (default /usr/bin/python3),
#              E2E_DIR (default BUILD_DIR/bench: inputs and outputs, about 3.3 GB while running),
#              MAXERR (the --max-error bound, default 0.001), RSS_BEFORE_KB (peak RSS of
#              alcm-pack -T1 on main before issue 18, default 60416: 59 MiB), E2E_BIG=0 to
#              leave out the 839 MB file (its targets then miss)
# Needs /usr/bin/time and zstd (Debian packages time, zstd). Prints Markdown tables.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
build=${1:-build}
B=$(cd "$build/bin" 2>/dev/null && pwd) || { echo "e2e: no $build/bin (build first)" >&2; exit 2; }
runs=${RUNS:-5}
py=${PY:-/usr/bin/python3}
dir=${E2E_DIR:-$build/bench}
maxerr=${MAXERR:-0.001}
rss_before=${RSS_BEFORE_KB:-60416}
faceapi=${FACEAPI:-$build/data/faceapi.safetensors}
for t in /usr/bin/time zstd "$B/alcm-pack" "$B/alcm-unpack"; do
	command -v "$t" >/dev/null || { echo "e2e: needs $t" >&2; exit 2; }
done
mkdir -p "$dir" || exit 2
T=$(mktemp -d)
trap 'rm -rf "$T"; rm -f "$dir"/e2e-out.*' EXIT

npz=$dir/e2e.npz
if [ ! -s "$npz" ]; then
	echo "e2e: making $npz (839 MB)" >&2
	"$py" - "$npz" <<'EOF' || { echo "e2e: could not make $npz (needs numpy)" >&2; exit 2; }
import sys
import numpy as np
rng = np.random.default_rng(18)
np.savez(sys.argv[1] + ".tmp.npz", **{
    "layer%02d.weight" % i: rng.normal(0.0, 0.02, (2048, 2560)).astype(np.float32)
    for i in range(40)})
EOF
	mv "$npz.tmp.npz" "$npz" || exit 2
fi
tiny=$dir/e2e-tiny.npy
"$py" -c "import numpy as np, sys; np.save(sys.argv[1], np.arange(10, dtype=np.float32))" \
	"$tiny" || exit 2

median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# measure KEY CMD...: runs CMD RUNS times (outputs are removed before each run, and $before
# is run, untimed, when set); keeps the medians of wall, user, sys (s), max RSS (kB) and minor
# faults in $T/KEY.
before=""
measure() {
	local key=$1
	shift
	: >"$T/$key.runs"
	for ((i = 0; i < runs; i++)); do
		rm -f "$dir"/e2e-out.*
		[ -z "$before" ] || eval "$before"
		if ! /usr/bin/time -o "$T/time" -f '%e %U %S %M %R' "$@" >/dev/null 2>"$T/err"; then
			echo "e2e: failed: $*" >&2
			cat "$T/err" >&2
			echo "- - - - -" >"$T/$key"
			return 1
		fi
		tail -n 1 "$T/time" >>"$T/$key.runs"
	done
	local out=""
	for c in 1 2 3 4 5; do
		out+="$(awk -v c=$c '{print $c}' "$T/$key.runs" | median) "
	done
	echo "$out" >"$T/$key"
}
get() { awk -v c="$2" '{print $c}' "$T/$1"; } # KEY COLUMN: 1 wall 2 user 3 sys 4 rss 5 faults

# row KEY LABEL RAW_BYTES
row() {
	local k=$1 label=$2 raw=$3
	if [ "$(get "$k" 1)" = - ]; then
		printf '| %s | failed | | | | | |\n' "$label"
		return
	fi
	awk -v l="$label" -v raw="$raw" '{
		printf "| %s | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f |\n", l, $1, $2, $3, $4 / 1024,
		       $5, ($1 > 0 ? raw / 1e6 / $1 : 0) }' "$T/$k"
}
header() {
	echo "| command | wall s | user s | sys s | peak RSS MiB | minor faults | MB/s |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
}

# suite TAG FILE EXT: the pack/unpack rows of one input (outputs in $dir/e2e-out.*).
suite() {
	local tag=$1 in=$2 ext=$3
	local a=$dir/e2e-$tag.alcm q=$dir/e2e-$tag-q.alcm
	for th in 1 2; do
		measure "$tag-pack-$th" "$B/alcm-pack" -q -f -T$th "$in" -o "$dir/e2e-out.alcm"
		measure "$tag-packq-$th" "$B/alcm-pack" -q -f -T$th --max-error "$maxerr" "$in" \
			-o "$dir/e2e-out.alcm"
	done
	"$B/alcm-pack" -q -f "$in" -o "$a" || return 1
	"$B/alcm-pack" -q -f --max-error "$maxerr" "$in" -o "$q" || return 1
	# Same bytes whatever the thread count (-T1 codes in the caller's thread, others queue).
	local same=1
	for th in 1 3; do
		"$B/alcm-pack" -q -f -T$th "$in" -o "$dir/e2e-out.alcm" || return 1
		cmp -s "$a" "$dir/e2e-out.alcm" || same=0
	done
	echo "$same" >"$T/$tag-same"
	# The unpacks, first with the archive in the page cache (read once before each run: what
	# the runs after the first measured before the cold rows existed), then not (its pages
	# dropped: an archive packed earlier, or copied from elsewhere).
	before="cat '$a' '$q' >/dev/null"
	for th in 1 2; do
		measure "$tag-unpack-npz-$th" "$B/alcm-unpack" -q -f -T$th "$a" -o "$dir/e2e-out.npz"
		measure "$tag-unpack-st-$th" "$B/alcm-unpack" -q -f -T$th "$a" \
			-o "$dir/e2e-out.safetensors"
		measure "$tag-unpackq-$th" "$B/alcm-unpack" -q -f -T$th "$q" -o "$dir/e2e-out.$ext"
	done
	before="dd if='$a' iflag=nocache count=0 status=none"
	for th in 1 2; do
		measure "$tag-cold-st-$th" "$B/alcm-unpack" -q -f -T$th "$a" \
			-o "$dir/e2e-out.safetensors"
	done
	before=
	measure "$tag-zstd-0" zstd -q -f -3 -T0 "$in" -o "$dir/e2e-out.zst"
	measure "$tag-zstd-1" zstd -q -f -3 -T1 "$in" -o "$dir/e2e-out.zst"
	zstd -q -f -3 "$in" -o "$dir/e2e-$tag.zst" || return 1
	before="cat '$dir/e2e-$tag.zst' >/dev/null"
	measure "$tag-unzstd" zstd -q -f -d "$dir/e2e-$tag.zst" -o "$dir/e2e-out.$ext"
	before="dd if='$dir/e2e-$tag.zst' iflag=nocache count=0 status=none"
	measure "$tag-cold-unzstd" zstd -q -f -d "$dir/e2e-$tag.zst" -o "$dir/e2e-out.$ext"
	before=""
	local raw
	raw=$(stat -L -c %s "$in")
	echo
	echo "### $(basename "$in"): $raw bytes; alcm lossless $(stat -L -c %s "$a") bytes" \
		"($(awk -v r="$raw" -v s="$(stat -L -c %s "$a")" 'BEGIN {printf "%.3f", r / s}')x)," \
		"--max-error $maxerr $(stat -L -c %s "$q") bytes, zstd -3 $(stat -L -c %s "$dir/e2e-$tag.zst")" \
		"bytes ($(awk -v r="$raw" -v s="$(stat -L -c %s "$dir/e2e-$tag.zst")" 'BEGIN {printf "%.3f", r / s}')x)"
	echo
	header
	for th in 1 2; do
		row "$tag-pack-$th" "alcm-pack -T$th" "$raw"
	done
	for th in 1 2; do
		row "$tag-packq-$th" "alcm-pack -T$th --max-error $maxerr" "$raw"
	done
	row "$tag-zstd-1" "zstd -3 -T1" "$raw"
	row "$tag-zstd-0" "zstd -3 -T0" "$raw"
	for th in 1 2; do
		row "$tag-unpack-npz-$th" "alcm-unpack -T$th -o .npz" "$raw"
	done
	for th in 1 2; do
		row "$tag-unpack-st-$th" "alcm-unpack -T$th -o .safetensors" "$raw"
	done
	for th in 1 2; do
		row "$tag-unpackq-$th" "alcm-unpack -T$th (max-error archive) -o .$ext" "$raw"
	done
	row "$tag-unzstd" "zstd -d" "$raw"
	for th in 1 2; do
		row "$tag-cold-st-$th" "alcm-unpack -T$th -o .safetensors, archive not cached" "$raw"
	done
	row "$tag-cold-unzstd" "zstd -d, .zst not cached" "$raw"
	rm -f "$a" "$q" "$dir/e2e-$tag.zst"
}

echo "# alcm end-to-end benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPU(s); medians of $runs run(s)"
echo "- $("$B/alcm-pack" --version 2>&1 | head -n 1); $(zstd --version)"
echo "- load at start: $(uptime | sed 's/.*load average/load average/')"
# What the output disk takes durably (O_DIRECT, then fsync): an upper bound for every row
# below, since each output is fsynced before the command returns.
disk_mbs() {
	dd if=/dev/zero of="$dir/e2e-out.dd" bs=4M count=100 oflag=direct conv=fsync 2>&1 |
		awk '/copied/ {for (i = 2; i <= NF; i++) if ($i == "s,") s = $(i - 1) + 0; print (s > 0 ? 419430400 / 1e6 / s : 0)}'
	rm -f "$dir/e2e-out.dd"
}
disk=$(disk_mbs)
echo "- output disk: ${disk:-?} MB/s durable (dd bs=4M count=100 oflag=direct conv=fsync into $dir)"
[ "${E2E_BIG:-1}" = 0 ] || suite big "$npz" npz
[ -s "$faceapi" ] && suite faceapi "$faceapi" safetensors

# Startup: a .npy of 10 float32 values (40 bytes of data), packed and unpacked 20 times in a
# loop per run (one run is below /usr/bin/time's 10 ms resolution); figures are per call.
loop() { # N CMD...
	local n=$1
	shift
	for ((j = 0; j < n; j++)); do "$@" || return 1; done
}
export -f loop
"$B/alcm-pack" -q -f "$tiny" -o "$dir/e2e-tiny.alcm"
measure tiny-pack bash -c 'loop 20 "$@"' _ "$B/alcm-pack" -q -f "$tiny" -o "$dir/e2e-out.alcm"
measure tiny-unpack bash -c 'loop 20 "$@"' _ "$B/alcm-unpack" -q -f "$dir/e2e-tiny.alcm" \
	-o "$dir/e2e-out.npy"
measure tiny-zstd bash -c 'loop 20 "$@"' _ zstd -q -f -3 "$tiny" -o "$dir/e2e-out.zst"
rm -f "$dir/e2e-tiny.alcm"
echo
echo "### startup: a $(stat -L -c %s "$tiny")-byte .npy (10 float32 values), per call (20 calls a run)"
echo
echo "| command | wall ms | user ms | sys ms | peak RSS MiB | minor faults |"
echo "|---|---:|---:|---:|---:|---:|"
for k in tiny-pack:alcm-pack tiny-unpack:alcm-unpack tiny-zstd:"zstd -3"; do
	awk -v l="${k#*:}" '{printf "| %s | %.1f | %.1f | %.1f | %.1f | %.0f |\n", l, 50 * $1,
		50 * $2, 50 * $3, $4 / 1024, $5 / 20}' "$T/${k%%:*}"
done

# The in-process codec figure on the same kind of data (one thread).
codec_pack=0 codec_unpack=0
if [ -x "$B/alcm-codec-bench" ]; then
	"$B/alcm-codec-bench" --runs "$runs" --rows "alcm lossless" gen:gauss:5M >"$T/codec" 2>&1
	read -r codec_pack codec_unpack < <(awk -F'|' '$2 ~ /^ alcm lossless $/ {
		gsub(/ /, "", $4); gsub(/ /, "", $5); print $4, $5; exit }' "$T/codec")
	echo
	echo "in-process (alcm-codec-bench --runs $runs --rows 'alcm lossless' gen:gauss:5M, -T1):" \
		"pack $codec_pack MB/s, unpack $codec_unpack MB/s"
fi

# Targets on the 839 MB file.
raw=$(stat -L -c %s "$npz")
mbs() { awk -v r="$raw" -v w="$(get "$1" 1)" 'BEGIN {printf "%.0f", (w > 0 ? r / 1e6 / w : 0)}'; }
status=0
[ -s "$T/big-pack-1" ] || { echo; echo "Targets: not checked (E2E_BIG=0)"; exit 1; }
verdict() { # CONDITION(awk expr, true = holds) TEXT
	if awk "BEGIN {exit !($1)}"; then
		echo "- $2: holds"
	else
		echo "- $2: MISSES"
		status=1
	fi
}
echo
echo "- load at end: $(uptime | sed 's/.*load average/load average/') (a shared machine: wall" \
	"figures are only comparable with the zstd rows of the same run)"
echo "- output disk at end: $(disk_mbs) MB/s durable (dd oflag=direct conv=fsync; at start ${disk:-?})"
echo
echo "Targets (839 MB file):"
verdict "$(cat "$T/big-same") == 1" "lossless archives byte-identical at -T1, -T2 (default) and -T3"
for k in big-pack-1 big-pack-2 big-packq-1 big-packq-2 big-unpack-npz-1 big-unpack-npz-2 \
	big-unpack-st-1 big-unpack-st-2 big-cold-st-1 big-cold-st-2; do
	verdict "$(get $k 3) <= 0.1 * $(get $k 2)" "sys <= 10% of user, $k: sys $(get $k 3) s, user $(get $k 2) s"
done
for k in big-pack big-packq big-unpack-npz big-unpack-st; do
	verdict "$(get $k-2 1) <= 0.6 * $(get $k-1 1)" \
		"-T2 wall <= 0.6x -T1 wall, $k: $(get $k-2 1) s vs $(get $k-1 1) s ($(awk -v a="$(get $k-2 1)" -v b="$(get $k-1 1)" 'BEGIN {printf "%.2f", a / b}')x)"
done
verdict "$(mbs big-pack-1) >= 350" "lossless pack -T1 >= 350 MB/s: $(mbs big-pack-1) MB/s"
verdict "$(mbs big-pack-2) >= 600" "lossless pack -T2 >= 600 MB/s: $(mbs big-pack-2) MB/s"
verdict "$(mbs big-unpack-npz-2) >= 800" "unpack -T2 to .npz >= 800 MB/s: $(mbs big-unpack-npz-2) MB/s"
verdict "$(mbs big-unpack-st-2) >= 800" "unpack -T2 to .safetensors >= 800 MB/s: $(mbs big-unpack-st-2) MB/s"
verdict "$(mbs big-packq-1) >= 400" "max-error pack -T1 >= 400 MB/s: $(mbs big-packq-1) MB/s"
if [ "${codec_pack:-0}" != 0 ]; then
	verdict "$(mbs big-pack-1) >= 0.85 * $codec_pack" \
		"pack -T1 within 15% of in-process: $(mbs big-pack-1) vs $codec_pack MB/s"
	verdict "$(mbs big-unpack-st-1) >= 0.85 * $codec_unpack" \
		"unpack -T1 (.safetensors) within 15% of in-process: $(mbs big-unpack-st-1) vs $codec_unpack MB/s"
fi
for k in big-pack-1 big-pack-2 big-packq-1 big-packq-2 big-unpack-npz-1 big-unpack-npz-2 \
	big-unpack-st-1 big-unpack-st-2; do
	verdict "$(get $k 4) <= 1.05 * $rss_before" \
		"peak RSS not above before ($rss_before kB + 5%), $k: $(get $k 4) kB"
done
exit $status
