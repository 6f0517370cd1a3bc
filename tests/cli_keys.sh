#!/usr/bin/env bash
# Key pairs and signatures from the command line.
# - alcm-keygen writes NAME.key and NAME.pub both or neither: an existing file of either name
#   stops it (exit 8) before anything is written; a public key that cannot be published
#   after the secret one puts the old secret key back; a full disk publishes nothing.
# - Signatures (spec 6.10): --require-signature needs --pubkey; alcm-unpack --pubkey writes
#   nothing from an archive that is unsigned, signed by another key, re-signed after
#   tampering, or whose header or SIGN entry was changed after signing.
# Usage: cli_keys.sh BIN_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# expect CODE CMD...: runs CMD, checks its exit code; stderr in $T/err
expect() {
	local want=$1
	shift
	"$@" >"$T/out" 2>"$T/err"
	local rc=$?
	if [ $rc -eq "$want" ]; then ok; else bad "exit $rc, want $want: $* : $(head -c 400 "$T/err")"; fi
}
hexof() { cut -d' ' -f2 "$1" | tr -d '\n'; }
# pair_ok NAME: NAME.key and NAME.pub exist and match (the public key is the secret key's
# second half, spec 6.10)
pair_ok() { [ -e "$1.key" ] && [ -e "$1.pub" ] && [ "$(hexof "$1.key" | cut -c65-128)" = "$(hexof "$1.pub")" ]; }

# ---- alcm-keygen: both or neither ----------------------------------------------------------
cd "$T" || exit 1
expect 0 "$B/alcm-keygen" a
pair_ok a && ok || bad "keygen: the pair does not match"
[ "$(stat -c %a a.key)" = 600 ] && ok || bad "keygen: a.key has mode $(stat -c %a a.key)"
[ "$(stat -c %a a.pub)" = 644 ] && ok || bad "keygen: a.pub has mode $(stat -c %a a.pub)"
grep -qx 'alcm-ed25519-secret-key [0-9a-f]\{128\}' a.key && ok || bad "keygen: a.key is not one line of the spec's format"
grep -qx 'alcm-ed25519-public-key [0-9a-f]\{64\}' a.pub && ok || bad "keygen: a.pub is not one line of the spec's format"
cp a.key a.key.orig
cp a.pub a.pub.orig
# Only the public key is left: no new secret key may appear beside it.
mkdir lone && cp a.pub lone/k.pub
expect 8 "$B/alcm-keygen" lone/k
[ ! -e lone/k.key ] && cmp -s lone/k.pub a.pub && ok || bad "keygen: a lone k.pub got a new k.key beside it"
# Only the secret key is left: it is not touched, no public key appears.
mkdir lone2 && cp a.key lone2/k.key
expect 8 "$B/alcm-keygen" lone2/k
[ ! -e lone2/k.pub ] && cmp -s lone2/k.key a.key && ok || bad "keygen: a lone k.key was changed or got a k.pub"
# -f, and the public key cannot be published (a directory is in the way): the old secret key
# comes back, byte for byte.
rm a.pub
mkdir a.pub
expect 3 "$B/alcm-keygen" -f a
cmp -s a.key a.key.orig && ok || bad "keygen -f: the old secret key was lost when the public key could not be written"
grep -q "nothing written\|could not be put back" "$T/err" && ok || bad "keygen -f: the message does not say what was left: $(cat "$T/err")"
rmdir a.pub
cp a.pub.orig a.pub
# A full disk (file size limit): nothing published, the old pair intact.
(trap '' XFSZ; ulimit -f 0; exec "$B/alcm-keygen" -f a) >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 3 ] && ok || bad "keygen -f on a full disk: exit $rc, want 3: $(cat "$T/err")"
cmp -s a.key a.key.orig && cmp -s a.pub a.pub.orig && ok || bad "keygen -f on a full disk: the old pair changed"
[ "$(find . -maxdepth 1 -name '.a.*' | wc -l)" -eq 0 ] && ok || bad "keygen: temporary files left"
# -f replaces both.
expect 0 "$B/alcm-keygen" -f a
pair_ok a && ! cmp -s a.key a.key.orig && ok || bad "keygen -f: not a new matching pair"
cd - >/dev/null || exit 1

# ---- signatures ------------------------------------------------------------------------------
K=$T/a
"$B/alcm-keygen" "$T/evil" >/dev/null 2>&1 || bad "keygen evil"
# Two small inputs (one 64 KiB tensor each, different seeds): fast under ASan too.
for seed in 1 9; do
	"$B/alcm-make-checkpoint" --seed $seed "$T/full$seed.safetensors" >/dev/null 2>&1 || bad "make-checkpoint"
	"$B/alcm-pack" -q "$T/full$seed.safetensors" -o "$T/full$seed.alcm" || bad "pack"
	"$B/alcm-unpack" -q "$T/full$seed.alcm" -t layers.0.attn.proj.weight -o "$T/ck$seed.npz" || bad "unpack"
done
mv "$T/ck1.npz" "$T/ck.npz"
mv "$T/ck9.npz" "$T/ck2.npz"
expect 0 "$B/alcm-pack" -q "$T/ck.npz" -o "$T/s.alcm" --sign "$K.key"
expect 0 "$B/alcm-inspect" --verify --pubkey "$K.pub" "$T/s.alcm"
grep -q "signature: valid (algorithm 2" "$T/out" && ok || bad "inspect does not say what it checked: $(grep signature "$T/out")"
grep -q "^format:   1.1" "$T/out" && ok || bad "a signed archive is not format 1.1: $(grep format "$T/out")"
# Without a trusted key the signature is only listed, never called valid.
expect 0 "$B/alcm-inspect" "$T/s.alcm"
grep -q "not checked" "$T/out" && ! grep -q "valid" "$T/out" && ok || bad "inspect without --pubkey: $(grep signature "$T/out")"
expect 2 "$B/alcm-inspect" --require-signature "$T/s.alcm"
grep -q "pubkey" "$T/err" && ok || bad "--require-signature without --pubkey: $(cat "$T/err")"
expect 0 "$B/alcm-inspect" --require-signature --verify --pubkey "$K.pub" "$T/s.alcm"
# An attacker changes the checkpoint and signs it again with their own key.
expect 0 "$B/alcm-pack" -q "$T/ck2.npz" -o "$T/forged.alcm" --sign "$T/evil.key"
expect 11 "$B/alcm-inspect" --verify --pubkey "$K.pub" "$T/forged.alcm"
grep -q "another key" "$T/err" && ok || bad "forged: $(cat "$T/err")"
expect 0 "$B/alcm-pack" -q "$T/ck.npz" -o "$T/unsigned.alcm"
# alcm-unpack --pubkey: writes only what the trusted key signed.
for f in npz safetensors; do
	expect 0 "$B/alcm-unpack" -q --pubkey "$K.pub" "$T/s.alcm" -o "$T/ok.$f"
	[ -s "$T/ok.$f" ] && ok || bad "unpack --pubkey of a good archive wrote no $f"
	for bad_arch in forged unsigned; do
		expect 11 "$B/alcm-unpack" -q --pubkey "$K.pub" "$T/$bad_arch.alcm" -o "$T/x-$bad_arch.$f"
		[ ! -e "$T/x-$bad_arch.$f" ] && ok || bad "unpack --pubkey wrote $f from the $bad_arch archive"
		grep -q "nothing written" "$T/err" && ok || bad "unpack --pubkey $bad_arch: $(cat "$T/err")"
	done
done
# A byte of tensor data changed after signing (digest and signature no longer agree).
cp "$T/s.alcm" "$T/flip.alcm"
printf '\x55' | dd of="$T/flip.alcm" bs=1 seek=4000 conv=notrunc 2>/dev/null
"$B/alcm-unpack" -q --pubkey "$K.pub" "$T/flip.alcm" -o "$T/flip.npz" 2>"$T/err"
rc=$?
{ [ $rc -eq 5 ] || [ $rc -eq 11 ]; } && [ ! -e "$T/flip.npz" ] && ok || bad "unpack --pubkey of a changed archive: exit $rc, output $(ls "$T/flip.npz" 2>/dev/null)"
expect 2 "$B/alcm-unpack" -q --pubkey "$K.pub" --no-verify "$T/s.alcm" -o "$T/nv.npz"
[ ! -e "$T/nv.npz" ] && ok || bad "--pubkey --no-verify wrote something"
# Key files: exactly the spec's line; anything else is malformed (exit 4).
printf 'alcm-ed25519-public-key %s\n' "$(hexof "$K.pub" | tr a-f A-F)" >"$T/upper.pub"
expect 4 "$B/alcm-inspect" --verify --pubkey "$T/upper.pub" "$T/s.alcm"
{ cat "$K.pub"; echo extra; } >"$T/long.pub"
expect 4 "$B/alcm-inspect" --verify --pubkey "$T/long.pub" "$T/s.alcm"
printf 'alcm-ed25519-public-key %s' "$(hexof "$K.pub")" >"$T/nolf.pub"
expect 0 "$B/alcm-inspect" --verify --pubkey "$T/nolf.pub" "$T/s.alcm"
# A damaged secret key (its public half changed) signs nothing.
sk=$(hexof "$K.key")
printf 'alcm-ed25519-secret-key %s%s\n' "${sk:0:64}" "$(hexof "$T/evil.pub")" >"$T/damaged.key"
expect 4 "$B/alcm-pack" -q "$T/ck.npz" -o "$T/d.alcm" --sign "$T/damaged.key"
[ ! -e "$T/d.alcm" ] && ok || bad "a damaged key signed an archive"
# NAME.pub beside NAME.key that is not its public half: a warning.
mkdir "$T/mix" && cp "$K.key" "$T/mix/k.key" && cp "$T/evil.pub" "$T/mix/k.pub"
expect 0 "$B/alcm-pack" "$T/ck.npz" -o "$T/mix.alcm" --sign "$T/mix/k.key"
grep -q "is not the public key" "$T/err" && ok || bad "no warning for a mismatched k.pub: $(cat "$T/err")"
# An append to a 1.0 stream archive signs with algorithm 1, and says so.
expect 0 "$B/alcm-pack" -q --stream "$T/ck.npz" -o "$T/st.alcm"
expect 0 "$B/alcm-pack" --append "$T/ck.npz" -o "$T/st.alcm" --sign "$K.key"
grep -q "algorithm 1" "$T/err" && ok || bad "append --sign on 1.0: no note: $(cat "$T/err")"
expect 0 "$B/alcm-inspect" --verify --pubkey "$K.pub" "$T/st.alcm"
grep -q "signature: valid (algorithm 1" "$T/out" && ok || bad "append --sign: $(grep signature "$T/out")"
# JSON stays valid JSON with the signature fields.
expect 0 "$B/alcm-inspect" --json --verify --pubkey "$K.pub" "$T/s.alcm"
if command -v python3 >/dev/null; then
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["signature"]=="valid" and d["signature_algorithm"]==2' "$T/out" && ok || bad "inspect --json: $(head -c 300 "$T/out")"
fi

echo "cli_keys.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
