#!/usr/bin/env bash
# `alcm-pack --append` with no coding options continues a stream archive with the settings it
# was created with (recorded in its OPTS section, spec 6.12.3): mode, bound, pruning, and the
# scheduler with its ceiling. Options given with --append override them for that frame and
# are recorded. (Appended frames used to fall back to lossless silently.)
# Usage: cli_stream_settings.sh BIN_DIR SOURCE_DIR
set -u
B=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

/usr/bin/python3 -c "
import numpy as np
np.save('$T/g.npy', np.random.default_rng(3).normal(0, 0.02, (64, 256)).astype(np.float32))" ||
	{ bad "numpy"; exit 1; }
# FIELD FILE: one line per frame, the FRAM field's value
field() {
	"$B/alcm-inspect" --json "$2" | /usr/bin/python3 -c "
import json, sys
for f in json.load(sys.stdin)['frames']:
    print(f['$1'])"
}

# A plain stream: frames 1 and 3 take the recorded bound; frame 2 overrides it.
"$B/alcm-pack" -q --stream --max-error 1e-3 --prune 0.05 "$T/g.npy" -o "$T/s.alcm" || bad "pack --stream"
"$B/alcm-pack" -q --append "$T/g.npy" -o "$T/s.alcm" || bad "append 1"
"$B/alcm-pack" -q --append --max-error 1e-2 "$T/g.npy" -o "$T/s.alcm" || bad "append 2"
"$B/alcm-pack" -q --append "$T/g.npy" -o "$T/s.alcm" || bad "append 3"
got=$(field bound "$T/s.alcm" | tr '\n' ' ')
if [ "$got" = "0.001 0.001 0.01 0.001 " ]; then ok; else bad "bounds of the frames: $got, want 0.001 0.001 0.01 0.001"; fi
got=$(field prune "$T/s.alcm" | tr '\n' ' ')
if [ "$got" = "0.05 0.05 0.05 0.05 " ]; then ok; else bad "pruning of the frames: $got, want 0.05 each"; fi
# The last frame decodes within the recorded bound, not bit-exact by accident.
"$B/alcm-unpack" -q "$T/s.alcm" -o "$T/back.npy" || bad "unpack"
/usr/bin/python3 -c "
import numpy as np, sys
a, b = np.load('$T/g.npy'), np.load('$T/back.npy')
e = np.abs(a - b)[b != 0].max()
sys.exit(0 if 0 < e <= 1e-3 else 1)" && ok || bad "last frame not within the recorded 1e-3"

# Any frame comes back with --frame, at its own bound (frame 2 was coded at 1e-2).
for k in 0 2; do
	"$B/alcm-unpack" -q -f --frame $k "$T/s.alcm" -o "$T/f$k.npy" || bad "unpack --frame $k"
done
/usr/bin/python3 -c "
import numpy as np, sys
a = np.load('$T/g.npy')
e0 = np.abs(a - np.load('$T/f0.npy'))[np.load('$T/f0.npy') != 0].max()
e2 = np.abs(a - np.load('$T/f2.npy'))[np.load('$T/f2.npy') != 0].max()
sys.exit(0 if e0 <= 1e-3 < e2 <= 1e-2 else 1)" && ok || bad "--frame 0 / 2 not at their bounds"

# A scheduled stream: appends with no options keep scheduling (the bound rises to its ceiling).
"$B/alcm-pack" -q --stream --max-error 1e-3 --schedule --bound-max 4e-3 "$T/g.npy" -o "$T/t.alcm" ||
	bad "pack --schedule"
for i in 1 2 3 4 5 6; do
	"$B/alcm-pack" -q --append "$T/g.npy" -o "$T/t.alcm" || bad "scheduled append $i"
done
if field bound "$T/t.alcm" | /usr/bin/python3 -c "
import sys
b = [float(x) for x in sys.stdin]
sys.exit(0 if len(b) == 7 and min(b) >= 1e-3 and b[-1] > b[0] and max(b) <= 4e-3 * 1.0001 else 1)"
then ok; else bad "scheduled bounds: $(field bound "$T/t.alcm" | tr '\n' ' ')"; fi

echo "cli_stream_settings.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
