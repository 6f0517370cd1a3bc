#!/usr/bin/env bash
# alcm-bench as a user meets it: the bundle script and its manifest check, a quick
# leaderboard with the sample plugins, the four outputs, --validate on good and bad
# submissions, refusal of altered bundles, plugin errors, exit codes.
# Usage: cli_bench.sh BIN_DIR SOURCE_DIR
set -u
B=$1
S=$2
L=$(cd "$B/../lib" 2>/dev/null && pwd)
if [ ! -x "$B/alcm-bench" ]; then
	# Built only once tools/bench/leaderboard.cmake is included (ALCM_BUILD_TOOLS=ON).
	echo "cli_bench: $B/alcm-bench not built, nothing to test"
	echo "cli_bench: 0 passed, 0 failed"
	exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# expect CODE CMD...: runs CMD, checks its exit code; stdout in $T/out, stderr in $T/err
expect() {
	local want=$1; shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "exit $got (want $want): $* :: $(head -c 400 "$T/err")"; fi
}
has() { if grep -q -- "$1" "$T/${2:-err}"; then ok; else bad "missing '$1' in ${2:-err}: $(head -c 300 "$T/${2:-err}")"; fi; }

bench=$B/alcm-bench
mk=$S/tools/bench/bundles/make_bundles.sh
plugin=$L/alcm_codec_bshuf_zlib.so
stored=$L/alcm_codec_stored.so
for p in "$plugin" "$stored"; do
	# Built with alcm-bench (add_dependencies in tools/bench/leaderboard.cmake).
	[ -f "$p" ] || { echo "cli_bench: $p not built" >&2; echo "cli_bench: 0 passed, 1 failed"; exit 1; }
done

# --help lists every bundle and built-in codec.
expect 0 "$bench" --help
for w in text_medium image_small mixed_stream checkpoint_small gradient_stream \
	alcm-lossless alcm-max-error-1e-3 alcm-bits-8 zstd-3 zstd-19 zlib-6 stored; do
	has "$w" out
done

# Bundles that need no Debian package, made and checked against the committed manifest.
expect 0 "$mk" --bin "$B" --out "$T/bundles" checkpoint_small gradient_stream
[ -f "$T/bundles/manifest.txt" ] && ok || bad "no manifest copy beside the bundles"
# Deterministic: a second make gives the same bytes; another seed gives others and is
# not checked against the manifest.
expect 0 "$mk" --bin "$B" --out "$T/again" gradient_stream
if cmp -s "$T/bundles/gradient_stream/grad_003.npz" "$T/again/gradient_stream/grad_003.npz"; then
	ok; else bad "gradient_stream differs between two makes"; fi
expect 0 "$mk" --bin "$B" --out "$T/seed2" --seed 2 gradient_stream
if cmp -s "$T/bundles/gradient_stream/grad_003.npz" "$T/seed2/gradient_stream/grad_003.npz"; then
	bad "seed 2 made the same bytes as seed 1"; else ok; fi
expect 2 "$mk" --bin "$B" --out "$S/tools/bench/bundles/x" gradient_stream
has "refusing to write bundles inside the source tree"
expect 2 "$mk" --bin "$B" --out "$T/x" no_such_bundle

# A quick leaderboard on one bundle with both sample plugins and every output.
run=("$bench" --bundle-dir "$T/bundles" --bundle checkpoint_small --runs 1 --quick -q)
expect 0 "${run[@]}" --plugin "$plugin" --plugin "$stored" \
	--json "$T/r.json" --csv "$T/r.csv" --svg "$T/r.svg"
for w in "## Summary" "## checkpoint_small" "| alcm-lossless |" "| bshuf-zlib |" \
	"| stored-plugin |" "| zlib-6 |" "quick"; do
	has "$w" out
done
if grep -q "zstd-19" "$T/out"; then bad "--quick ran zstd-19"; else ok; fi
if grep -q "FAILED" "$T/out"; then bad "a codec failed: $(grep FAILED "$T/out")"; else ok; fi
# The ratios of the identity codecs are 1, and the plugin's is above 1.
grep -q '^| stored | 1.000 |' "$T/out" && ok || bad "stored ratio is not 1.000"
grep -q '^| stored-plugin | 1.000 |' "$T/out" && ok || bad "stored-plugin ratio is not 1.000"
[ "$(wc -l <"$T/r.csv")" -eq 9 ] && ok || bad "CSV has $(wc -l <"$T/r.csv") lines, want 9"
head -1 "$T/r.csv" | grep -q '^bundle,codec,kind,status,raw_bytes,stored_bytes,ratio,' && ok ||
	bad "CSV header"
grep -q '^<?xml' "$T/r.svg" && grep -q '</svg>' "$T/r.svg" && grep -q 'bshuf-zlib' "$T/r.svg" &&
	ok || bad "SVG incomplete"
if command -v xmllint >/dev/null; then
	xmllint --noout "$T/r.svg" 2>"$T/err" && ok || bad "SVG not well-formed: $(head -c 200 "$T/err")"
fi
# A quick run validates, but is not eligible for the leaderboard.
expect 1 "$bench" --validate "$T/r.json" --bundle-dir "$T/bundles"
has "valid, but not eligible" out
has "not eligible: a --quick run"
has "not eligible: 1 runs per result"
has "bundle text_medium is missing"
# Outputs are not replaced without -f.
expect 8 "${run[@]}" --codec stored --json "$T/r.json"
has "exists"

# Two runs: every timed run must reproduce the warm-up's sizes; medians and spread present.
expect 0 "$bench" --bundle-dir "$T/bundles" --bundle gradient_stream --runs 2 -q \
	--codec alcm-lossless,alcm-max-error-1e-3,zstd-3 --json "$T/g.json"
has "| alcm-max-error-1e-3 |" out
grep -q '"caq_spread_pct"' "$T/g.json" && ok || bad "no caq_spread_pct in JSON"

# Submissions that break the schema are refused (exit 4) with the reason.
sed 's/"ratio": \([0-9.]*\)/"ratio": 9\1/' "$T/r.json" >"$T/bad1.json"
expect 4 "$bench" --validate "$T/bad1.json" --bundle-dir "$T/bundles"
has "is not raw_bytes / stored_bytes"
sed 's/"schema_version": 1,/"schema_version": 1, "extra": 1,/' "$T/r.json" >"$T/bad2.json"
expect 4 "$bench" --validate "$T/bad2.json" --bundle-dir "$T/bundles"
has 'unknown key "extra"'
sed 's/"schema_version": 1,/"schema_version": 1, "x-note": "ok",/' "$T/r.json" >"$T/ext.json"
expect 1 "$bench" --validate "$T/ext.json" --bundle-dir "$T/bundles"
printf '{"a": 1,}' >"$T/bad3.json"
expect 4 "$bench" --validate "$T/bad3.json"
has "trailing comma"
printf '{"a": 1, "a": 2}' >"$T/bad4.json"
expect 4 "$bench" --validate "$T/bad4.json"
has "duplicate key"
expect 3 "$bench" --validate "$T/none.json"

# Altered bundles are refused before anything runs.
cp -r "$T/bundles" "$T/tampered"
printf '\x01' | dd of="$T/tampered/checkpoint_small/ckpt.safetensors" bs=1 seek=100000 conv=notrunc 2>/dev/null
expect 5 "$bench" --bundle-dir "$T/tampered" --bundle checkpoint_small --runs 1 --quick
has "refusing bundle 'checkpoint_small'"
has "BLAKE2b-256"
truncate -s -1 "$T/tampered/checkpoint_small/ckpt_fp32.npz"
expect 5 "$bench" --bundle-dir "$T/tampered" --bundle checkpoint_small --runs 1
rm "$T/tampered/checkpoint_small/ckpt.safetensors"
expect 3 "$bench" --bundle-dir "$T/tampered" --bundle checkpoint_small --runs 1
has "make_bundles.sh"
printf 'not a manifest\n' >"$T/m.txt"
expect 4 "$bench" --bundle-dir "$T/bundles" --manifest "$T/m.txt" --bundle checkpoint_small
has "alcm-bench-manifest 1"

# Plugins: parameters, capability checks, load errors.
expect 0 "$bench" --list --plugin "$plugin,level=9"
has "bshuf-zlib-9" out
expect 7 "$bench" --list --plugin "$plugin,max-error=1e-3"
has "does not offer mode max-error"
expect 7 "$bench" --list --plugin "$stored,level=3"
has "takes no level"
expect 2 "$bench" --list --plugin "$plugin,speed=3"
has "unknown plugin parameter 'speed'"
expect 3 "$bench" --list --plugin "$T/no-such.so"
expect 3 "$bench" --list --plugin "$T/r.csv"
expect 2 "$bench" --list --plugin "$plugin" --plugin "$plugin"
has "two codecs labelled 'bshuf-zlib'"

# Usage errors.
expect 2 "$bench" --bundle no_such_bundle
has "unknown bundle 'no_such_bundle'"
expect 2 "$bench" --codec no_such_codec
expect 2 "$bench" --runs 0
expect 2 "$bench" --make-bundle mixed_stream
expect 2 "$bench" --make-bundle checkpoint_small --out "$T/c"

# alcm-stream-bench: the release's table, with every ratio the same in every run (it exits 1
# otherwise), a JSON twin, and a frames directory read in name order.
sb=$B/alcm-stream-bench
expect 0 "$sb" --runs 3 --json "$T/s.json"
has "ratios identical in all 3 runs: yes" out
has "| 9 |" out
has "release (ALCM vs NumPy savez" out
has '"ratios_identical": true' s.json
mkdir "$T/frames"
for e in 0 1 2; do
	"$B/alcm-make-checkpoint" --seed $((e + 3)) --layers 1 "$T/frames/epoch_00$e.safetensors" >/dev/null 2>&1 || bad "make frame $e"
done
expect 0 "$sb" --runs 2 --no-synthetic --frames "$T/frames"
has "3 epochs" out
has "ratios identical in all 2 runs: yes" out
expect 3 "$sb" --no-synthetic --frames "$T/no-such-dir"
expect 2 "$sb" --no-synthetic
expect 2 "$sb" --runs 0

# alcm-budget-bench: --size lands within 3% and the table compares it with one bound.
bb=$B/alcm-budget-bench
"$B/alcm-make-checkpoint" --layers 1 "$T/ck.safetensors" >/dev/null 2>&1 || bad "make checkpoint"
expect 0 "$bb" --ratios 8 "$T/ck.safetensors"
has "| 8 |" out
has "every archive within 3% of its budget: yes" out
expect 2 "$bb" --ratios 0.5 "$T/ck.safetensors"
expect 3 "$bb" "$T/no-such.npy"

echo "cli_bench: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
