#!/usr/bin/env bash
# CLI behaviour a user relies on: round trips through every format, refusal to overwrite,
# exit codes and messages for bad input, --tensor, inspect --json/--verify, signatures,
# stream appends. Usage: cli_tools.sh BIN_DIR SOURCE_DIR
set -u
B=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# expect CODE CMD...: runs CMD, checks its exit code, keeps stderr in $T/err
expect() {
	local want=$1; shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "exit $got (want $want): $* :: $(head -c 300 "$T/err")"; fi
}
has() { if grep -q -- "$1" "$T/${2:-err}"; then ok; else bad "missing '$1' in $2: $(head -c 300 "$T/${2:-err}")"; fi; }

expect 0 "$B/alcm-make-checkpoint" "$T/m.safetensors"
expect 0 "$B/alcm-make-checkpoint" "$T/m.npz"

# Lossless round trips are byte-identical through each format.
for ext in safetensors npz; do
	expect 0 "$B/alcm-pack" "$T/m.$ext" -o "$T/m-$ext.alcm" --check
	has "all bit-exact"
	expect 0 "$B/alcm-unpack" "$T/m-$ext.alcm" -o "$T/back.$ext"
	if cmp -s "$T/m.$ext" "$T/back.$ext"; then ok; else bad "$ext round trip differs"; fi
done
# Packing an archive again says what to do instead (exit 7, as an unsupported input).
expect 7 "$B/alcm-pack" "$T/m-npz.alcm" -o "$T/again.alcm"
has "is already an alcm archive: use alcm-unpack"
# Cross-format: .npz -> .alcm -> .safetensors -> .alcm keeps every tensor exactly (the
# order may change: safetensors sorts its entries).
expect 0 "$B/alcm-unpack" "$T/m-npz.alcm" -o "$T/x.safetensors"
expect 0 "$B/alcm-pack" "$T/x.safetensors" -o "$T/x.alcm"
for name in embed.weight layers.0.mlp.up.weight step; do
	expect 0 "$B/alcm-unpack" "$T/x.alcm" -o "$T/a.npy" -f --tensor "$name"
	expect 0 "$B/alcm-unpack" "$T/m-npz.alcm" -o "$T/b.npy" -f --tensor "$name"
	if cmp -s "$T/a.npy" "$T/b.npy"; then ok; else bad "tensor $name changed across formats"; fi
done

# Format detected from bytes, not the name.
cp "$T/m.safetensors" "$T/renamed.bin"
expect 0 "$B/alcm-pack" "$T/renamed.bin" -o "$T/renamed.alcm"

# --tensor extracts one tensor; .npy needs exactly one.
expect 0 "$B/alcm-unpack" "$T/m-npz.alcm" -o "$T/e.npy" --tensor embed.weight
expect 2 "$B/alcm-unpack" "$T/m-npz.alcm" -o "$T/all.npy"
has "use --tensor"
expect 2 "$B/alcm-unpack" "$T/m-npz.alcm" -o "$T/e2.npy" --tensor no.such.tensor
has "cannot find tensor 'no.such.tensor'"
# bfloat16 cannot go to numpy formats.
expect 7 "$B/alcm-unpack" "$T/m-safetensors.alcm" -o "$T/bf.npz"
if [ ! -e "$T/bf.npz" ]; then ok; else bad "partial bf.npz left behind"; fi

# Never overwrite without -f; the existing file is untouched.
echo precious >"$T/keep.alcm"
expect 8 "$B/alcm-pack" "$T/m.npz" -o "$T/keep.alcm"
has "exists"
if [ "$(cat "$T/keep.alcm")" = precious ]; then ok; else bad "existing output modified"; fi
expect 0 "$B/alcm-pack" "$T/m.npz" -o "$T/keep.alcm" -f
expect 8 "$B/alcm-unpack" "$T/keep.alcm" -o "$T/m.npz"

# Lossy: bound checked on every value by --check; integers stored losslessly with a warning.
expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/l.alcm" --max-error 1e-3 --prune 0.1 --check
has "within the bound"
has "stored losslessly"
expect 10 "$B/alcm-pack" "$T/m.safetensors" -o "$T/r.alcm" --max-error 1e-3 --int-lossy=refuse
if [ ! -e "$T/r.alcm" ]; then ok; else bad "refused pack left an output"; fi
for mode in "--rel-error 0.01" "--snr 30" "--bits 6"; do
	expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/mode.alcm" -f $mode --check
done

# Usage errors.
expect 2 "$B/alcm-pack"
expect 2 "$B/alcm-pack" "$T/m.npz" "$T/m.safetensors" -o "$T/two.alcm"
expect 2 "$B/alcm-pack" "$T/m.npz" -o "$T/u.alcm" --prune 0.5 --max-error 1
expect 2 "$B/alcm-pack" "$T/m.npz" -o "$T/u.alcm" --prune 0.1
expect 2 "$B/alcm-pack" "$T/m.npz" -o "$T/u.alcm" --max-error 1 --bits 4
expect 0 "$B/alcm-pack" --help
has "Exit status" out

# Threads never change the bytes.
expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/t1.alcm" -T 1 --chunk-size 64k
expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/t3.alcm" -T 3 --chunk-size 64k
if cmp -s "$T/t1.alcm" "$T/t3.alcm"; then ok; else bad "threads changed the archive"; fi

# inspect: text, JSON that parses, --verify on a damaged file names the section.
expect 0 "$B/alcm-inspect" "$T/l.alcm"
has "max-error" out
expect 0 "$B/alcm-inspect" --json "$T/l.alcm"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["tensors"] and d["sections"]' "$T/out"; then ok; else bad "inspect --json output is not the expected JSON"; fi
# Coding: quantized tensors say quant, lossless ones the transforms of their chunks.
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert all(t["coding"] == ("quant" if t["mode"] != "lossless" else t["coding"]) and t["coding"] for t in d["tensors"]); assert any(t["coding"] == "quant" for t in d["tensors"])' "$T/out"; then ok; else bad "inspect --json: coding missing or wrong for quantized tensors"; fi
expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/ll.alcm"
expect 0 "$B/alcm-inspect" --json "$T/ll.alcm"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); ok={"raw","planes","float","palette","sparse"}; assert all(set(t["coding"].split("+")) <= ok for t in d["tensors"])' "$T/out"; then ok; else bad "inspect --json: lossless coding names"; fi
cp "$T/l.alcm" "$T/dmg.alcm"
printf '\xff' | dd of="$T/dmg.alcm" bs=1 seek=300 conv=notrunc status=none
expect 5 "$B/alcm-inspect" --verify "$T/dmg.alcm"
has "digest mismatch in section 1"
expect 5 "$B/alcm-unpack" "$T/dmg.alcm" -o "$T/dmg.safetensors"
if [ ! -e "$T/dmg.safetensors" ]; then ok; else bad "partial output after digest error"; fi

# Malformed inputs: distinct codes, messages naming the file.
head -c 100 "$T/l.alcm" >"$T/short.alcm"
expect 4 "$B/alcm-inspect" "$T/short.alcm"
has "short.alcm"
printf 'hello' >"$T/junk.npy"
expect 7 "$B/alcm-pack" "$T/junk.npy" -o "$T/j.alcm"
has "unrecognized format"
head -c 200 "$T/e.npy" >"$T/trunc.npy"
expect 4 "$B/alcm-pack" "$T/trunc.npy" -o "$T/j.alcm"
has "trunc.npy"
expect 3 "$B/alcm-inspect" "$T/missing.alcm"

# Signatures.
expect 0 "$B/alcm-keygen" "$T/k"
if [ "$(stat -c %a "$T/k.key")" = 600 ]; then ok; else bad "secret key mode is not 0600"; fi
expect 0 "$B/alcm-keygen" "$T/other"
expect 0 "$B/alcm-pack" "$T/m.npz" -o "$T/s.alcm" --sign "$T/k.key"
expect 0 "$B/alcm-inspect" --verify --pubkey "$T/k.pub" "$T/s.alcm"
has "signature: valid" out
expect 11 "$B/alcm-inspect" --verify --pubkey "$T/other.pub" "$T/s.alcm"
has "another key"
expect 11 "$B/alcm-inspect" --require-signature --verify --pubkey "$T/k.pub" "$T/m-npz.alcm"
has "missing"

# Stream archives: frames appended without rewriting, scheduler decisions recorded.
expect 0 "$B/alcm-pack" "$T/m.npz" -o "$T/st.alcm" --stream --max-error 1e-4 --schedule --bound-max 1e-2
head -c "$(stat -c %s "$T/st.alcm")" "$T/st.alcm" >"$T/st0"
expect 0 "$B/alcm-make-checkpoint" --seed 2 "$T/m2.npz"
expect 0 "$B/alcm-pack" "$T/m2.npz" -o "$T/st.alcm" --append --max-error 1e-4 --schedule --bound-max 1e-2
has "frame 1"
# Every byte of the first archive but its inactive commit slot (offsets 128-191) is unchanged.
n0=$(( $(stat -c %s "$T/st0") - 192 ))
if cmp -s -n 128 "$T/st0" "$T/st.alcm" && cmp -s -i 192 -n "$n0" "$T/st0" "$T/st.alcm"; then
	ok; else bad "append rewrote earlier bytes"; fi
expect 0 "$B/alcm-inspect" --verify "$T/st.alcm"
has "frames:   2" out
expect 2 "$B/alcm-pack" "$T/m2.npz" -o "$T/st.alcm" --append -f

# inspect shows the predictor the archive carries and, with --features, what it sees. An
# archive carries one only when the caller named it (spec 6.7): alcm-pack names none, and the
# features are then those this build's default weights see. Lossless archives (format 1.0)
# carried the version 1 default weights until 2026-12-07 (alcm-test-forge pred-v1 writes one
# so): readers still show them.
expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/q0.alcm"
expect 0 "$B/alcm-inspect" --features "$T/q0.alcm"
has "predictor: none stored" out
if grep -E '^  embed\.weight +0\.002 +16\.97 ' "$T/out" >/dev/null; then ok; else bad "no features row for embed.weight: $(grep embed "$T/out")"; fi
if "$B/alcm-inspect" "$T/q0.alcm" | grep -q "PRED"; then bad "alcm-pack stored a PRED"; else ok; fi
expect 0 "$B/alcm-test-forge" pred-v1 "$T/m.safetensors" "$T/q.alcm"
expect 0 "$B/alcm-inspect" --features "$T/q.alcm"
has "format:   1.0" out
has "predictor: 6-64-1 MLP in PRED version 1" out
has "feature mean:" out
if grep -E '^  embed\.weight +0\.002 +16\.97 ' "$T/out" >/dev/null; then ok; else bad "no features row for embed.weight: $(grep embed "$T/out")"; fi
expect 0 "$B/alcm-inspect" --predictor "$T/q.alcm"
if [ "$(grep -c '^  hidden ' "$T/out")" -eq 64 ]; then ok; else bad "--predictor did not print 64 hidden units"; fi
expect 0 "$B/alcm-inspect" --json --features "$T/q.alcm"
if python3 - "$T/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["predictor"]
assert len(p["w1"]) == 64 and all(len(r) == 6 for r in p["w1"]) and len(p["w2"]) == 64
assert p["features"] == 6  # the version 1 weights of a 1.0 archive
f = [t for t in d["tensors"] if t["name"] == "embed.weight"][0]["features"]
assert len(f["values"]) == 7 and f["step"] == 0.002 and 0 < f["predicted_bits_per_value"] < 32
assert "features" not in [t for t in d["tensors"] if t["name"] == "step"][0]
PY
then ok; else bad "inspect --json --features: predictor or features missing"; fi

# Size budgets: the archive lands within 3% of --size, or of input / --ratio, and every
# value still meets the bound its tensor was given (--check).
raw=$(stat -c %s "$T/m.safetensors")
for target in 400000 650000 900000 ratio:8; do
	case $target in
	ratio:*) r=${target#ratio:}; want=$((raw / r)); expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/b.alcm" -f --ratio "$r" --check ;;
	*) want=$target; expect 0 "$B/alcm-pack" "$T/m.safetensors" -o "$T/b.alcm" -f --size "$target" --check ;;
	esac
	has "floats within the bound"
	got=$(stat -c %s "$T/b.alcm")
	if [ $(( (got - want) * 1000 / want )) -le 30 ] && [ $(( (want - got) * 1000 / want )) -le 30 ]; then
		ok; else bad "--size/--ratio $target: $got bytes for a budget of $want"; fi
done
# A budget under what the coarsest steps reach is refused, leaving no file.
expect 10 "$B/alcm-pack" "$T/m.safetensors" -o "$T/tiny.alcm" --size 2000
if [ ! -e "$T/tiny.alcm" ]; then ok; else bad "refused budget left a file"; fi

echo "cli_tools: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
