#!/usr/bin/env bash
# Default output names, zstd's way: `alcm-pack X` writes X.alcm and `alcm-unpack X.alcm`
# writes X (the inner extension names the format); several inputs each get their own output,
# one after the other, and the exit status is the first failure's; -o with several inputs,
# an IN without .alcm and --append without -o are usage errors; nothing is overwritten
# without -f. (Before: every command needed -o, and several inputs were a usage error.)
# Usage: cli_default_names.sh BIN_DIR SOURCE_DIR
set -u
B=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() { # WANT_RC WHAT COMMAND...
	local want=$1 what=$2
	shift 2
	"$@" >/dev/null 2>"$T/err"
	local rc=$?
	if [ $rc -eq "$want" ]; then ok; else bad "$what: exit $rc, want $want: $(head -c 300 "$T/err")"; fi
}

"$B/alcm-make-checkpoint" -f a.safetensors >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
/usr/bin/python3 -c "import numpy as np; np.savez('b.npz', x=np.arange(1000, dtype=np.float32), y=np.ones((3, 4)))" ||
	bad "make b.npz"
mkdir d
expect 0 "pack one input, no -o" "$B/alcm-pack" -q a.safetensors
[ -f a.safetensors.alcm ] && ok || bad "a.safetensors.alcm not written"
expect 8 "pack again without -f" "$B/alcm-pack" -q a.safetensors
expect 0 "pack again with -f" "$B/alcm-pack" -q -f a.safetensors
expect 0 "pack two inputs" "$B/alcm-pack" -q -f a.safetensors b.npz
[ -f b.npz.alcm ] && ok || bad "b.npz.alcm not written"
mv a.safetensors b.npz d/
expect 0 "unpack two inputs, no -o" "$B/alcm-unpack" -q a.safetensors.alcm b.npz.alcm
cmp -s a.safetensors d/a.safetensors && ok || bad "a.safetensors differs from the packed file"
/usr/bin/python3 -c "
import numpy as np, sys
a, b = np.load('b.npz'), np.load('d/b.npz')
sys.exit(0 if sorted(a) == sorted(b) and all((a[k] == b[k]).all() for k in a) else 1)" &&
	ok || bad "b.npz's tensors differ from the packed ones"
expect 8 "unpack again without -f" "$B/alcm-unpack" -q a.safetensors.alcm
# One input fails, the next is still packed, and the status is the failure's.
rm -f a.safetensors.alcm
expect 3 "a missing input among several" "$B/alcm-pack" -q missing.npy a.safetensors
[ -f a.safetensors.alcm ] && ok || bad "the input after a failing one was not packed"
expect 2 "-o with several inputs" "$B/alcm-pack" -q a.safetensors b.npz -o x.alcm
expect 2 "unpack -o with several inputs" "$B/alcm-unpack" -q a.safetensors.alcm b.npz.alcm -o x.npz
expect 2 "unpack an IN without .alcm and no -o" "$B/alcm-unpack" -q b.npz
expect 2 "--append without -o" "$B/alcm-pack" -q --append a.safetensors
expect 2 "'-' among several inputs" "$B/alcm-pack" -q - a.safetensors
# A directory's archive drops its trailing slash.
mkdir e && cp d/b.npz e/
expect 0 "pack a file named by a path" "$B/alcm-pack" -q e/b.npz
[ -f e/b.npz.alcm ] && ok || bad "e/b.npz.alcm not written beside its input"

echo "cli_default_names.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
