#!/usr/bin/env bash
# Checkpoint series on the command line (spec 6.12): --series, --append with the recorded
# settings, --keyframe-every, --delta-against, --delta-from with unpack --base, unpack
# --frame, inspect, and the exit codes for hostile chains. Usage: cli_series.sh BIN_DIR SRC_DIR
set -u
B=$1
S=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() {
	local want=$1; shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "exit $got (want $want): $* :: $(head -c 400 "$T/err")"; fi
}
has() { if grep -q -- "$1" "$T/${2:-err}"; then ok; else bad "missing '$1' in ${2:-err}: $(head -c 400 "$T/${2:-err}")"; fi; }
same() { if cmp -s "$1" "$2"; then ok; else bad "$1 and $2 differ"; fi; }

# Checkpoints: c0; c1, c0 moved by at most 1e-4 (a lossy round trip: a step of training);
# c2, c1 moved again; c3, other values and fewer layers (tensors disappear).
expect 0 "$B/alcm-make-checkpoint" "$T/c0.safetensors"
expect 0 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/q.alcm" --max-error 1e-4 -q
expect 0 "$B/alcm-unpack" "$T/q.alcm" -o "$T/c1.safetensors" -q
expect 0 "$B/alcm-pack" "$T/c1.safetensors" -o "$T/q2.alcm" --max-error 1e-4 -q
expect 0 "$B/alcm-unpack" "$T/q2.alcm" -o "$T/c2.safetensors" -q
expect 0 "$B/alcm-make-checkpoint" "$T/c3.safetensors" --seed 3 --layers 2

# A lossless series: frame 0 whole, then deltas; every frame comes back bit for bit.
expect 0 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/run.alcm" --series --check
has "frame 0: keyframe"
has "all bit-exact"
for k in 1 2 3; do
	expect 0 "$B/alcm-pack" "$T/c$k.safetensors" -o "$T/run.alcm" --append --check
	has "all bit-exact"
	if [ $k = 2 ]; then
		expect 0 "$B/alcm-inspect" "$T/run.alcm"
		has "series:   frame 2 is a delta against frame 0" out
		has "delta:" out
	fi
done
for k in 0 1 2 3; do
	expect 0 "$B/alcm-unpack" "$T/run.alcm" --frame $k -o "$T/back$k.safetensors"
	same "$T/c$k.safetensors" "$T/back$k.safetensors"
done
# The last frame is the default.
expect 0 "$B/alcm-unpack" "$T/run.alcm" -o "$T/last.safetensors"
same "$T/c3.safetensors" "$T/last.safetensors"
expect 0 "$B/alcm-inspect" "$T/run.alcm"
# c3 holds other values: no delta saves a quarter, the frame is stored whole (a delta that
# saves little would nearly double its decode time).
has "series:   frame 3 is a keyframe" out
expect 2 "$B/alcm-unpack" "$T/run.alcm" --frame 9 -o "$T/x.safetensors"
has "has no frame 9"
if [ ! -e "$T/x.safetensors" ]; then ok; else bad "partial output for a missing frame"; fi

# Settings recorded at creation come back on --append without options; options given then
# apply to that frame.
expect 0 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/lossy.alcm" --series --max-error 1e-3 \
	--delta-against previous --keyframe-every 1
expect 0 "$B/alcm-pack" "$T/c1.safetensors" -o "$T/lossy.alcm" --append --check
has "frame 1: delta against frame 0"
has "floats within the bound"
expect 0 "$B/alcm-pack" "$T/c2.safetensors" -o "$T/lossy.alcm" --append --check
has "frame 2: keyframe"
expect 0 "$B/alcm-pack" "$T/c1.safetensors" -o "$T/lossy.alcm" --append --level 9 --check
has "frame 3: delta against frame 2"
has "max error"
expect 0 "$B/alcm-unpack" "$T/lossy.alcm" --frame 1 -o "$T/l1.safetensors"

# A fine-tune stored against its base: unpacking needs the base, and only that one.
expect 0 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/base.alcm"
expect 0 "$B/alcm-pack" "$T/c3.safetensors" -o "$T/other.alcm"
expect 0 "$B/alcm-pack" "$T/c1.safetensors" -o "$T/ft.alcm" --delta-from "$T/base.alcm" --check
has "delta against frame 0 of the base archive"
expect 1 "$B/alcm-unpack" "$T/ft.alcm" -o "$T/ft.safetensors"
has "was not given"
has "give the base archive with --base BASE (it was packed against '$T/base.alcm')"
expect 5 "$B/alcm-unpack" "$T/ft.alcm" -o "$T/ft.safetensors" --base "$T/other.alcm"
has "coded against a base archive whose identity starts"
if [ ! -e "$T/ft.safetensors" ]; then ok; else bad "partial output without the base"; fi
expect 0 "$B/alcm-unpack" "$T/ft.alcm" -o "$T/ft.safetensors" --base "$T/base.alcm"
same "$T/c1.safetensors" "$T/ft.safetensors"
expect 0 "$B/alcm-inspect" "$T/ft.alcm"
has "of a base archive" out

# Usage errors.
expect 2 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/u.alcm" --series --snr 30
has "codes losslessly or with --max-error or --rel-error"
expect 2 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/u.alcm" --keyframe-every 3
has "go with --series or --append"
expect 2 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/u.alcm" --series --delta-against sideways
expect 2 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/u.alcm" --series --keyframe-every 1000
expect 0 "$B/alcm-pack" "$T/c0.safetensors" -o "$T/stream.alcm" --stream
expect 2 "$B/alcm-pack" "$T/c1.safetensors" -o "$T/stream.alcm" --append --delta-against previous
has "is not a checkpoint series"
expect 2 "$B/alcm-pack" "$T/c1.safetensors" -o "$T/run.alcm" --append --bits 8
has "is a checkpoint series"

# Hostile chains (spec 9.4): malformed is 4, unsupported 7, a base not given 1.
V=$S/spec/vectors
expect 4 "$B/alcm-unpack" "$V/series-forward.alcm" -o "$T/h.npz"
has "does not come before it"
expect 4 "$B/alcm-unpack" "$V/series-no-record.alcm" -o "$T/h.npz"
expect 4 "$B/alcm-unpack" "$V/series-shape.alcm" -o "$T/h.npz"
expect 7 "$B/alcm-unpack" "$V/series-unknown-kind.alcm" -o "$T/h.npz"
expect 1 "$B/alcm-unpack" "$V/series-base.alcm" -o "$T/h.npz"
has "give the base archive with --base BASE"
expect 0 "$B/alcm-unpack" "$V/series-lossless.alcm" -o "$T/h.npz"
if [ ! -e "$T/h.npz" ] || [ "$(stat -c %s "$T/h.npz")" -gt 0 ]; then ok; else bad "empty output"; fi

echo "cli_series: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
