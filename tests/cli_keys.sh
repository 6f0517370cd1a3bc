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

echo "cli_keys.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
