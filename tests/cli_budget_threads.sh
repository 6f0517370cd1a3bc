#!/usr/bin/env bash
# alcm-pack --ratio on several threads: pass 1 (profiles, samples taken) and the samples'
# codings run on --threads threads, each sample coder with its own writer; the archive is the
# same bytes whatever the thread count. Before the sample writers started at format 1.1, the
# first sample each writer took cost a SCAL section more, and the bounds depended on which
# thread took which tensor. The squared error -v reports (from the coder's SNR and each
# tensor's signal energy) is the one the archive decodes to.
# Usage: cli_budget_threads.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
cd "$T" || exit 1
python3 - "$S/tests" <<'PY'
import random, struct, sys, zipfile
sys.path.insert(0, sys.argv[1])
from npyfile import npy
random.seed(11)
with zipfile.ZipFile("t.npz", "w") as z:
    for i in range(24):  # small tensors first: each thread's first sample is a small one
        n = random.randint(64, 3000)
        s = 0.01 * 2 ** random.uniform(-3, 3)
        z.writestr("b%02d.npy" % i, npy((n,), [random.gauss(0, s) for _ in range(n)]))
    z.writestr("conv.npy", npy((64, 32, 3, 3), [random.gauss(0, 0.02) for _ in range(18432)]))
    z.writestr("fc.npy", npy((256, 320), [random.choice((-1, 1)) * random.expovariate(100)
                                          for _ in range(81920)]))
    z.writestr("ids.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + (
        "{'descr': '<i4', 'fortran_order': False, 'shape': (100,), }".ljust(117) + "\n").encode()
        + struct.pack("<100i", *range(100)))
PY
for r in 6 12; do
	for n in 1 2 3; do
		if "$B/alcm-pack" -f -v -T $n --ratio $r t.npz -o t$n.alcm 2>err$n; then ok
		else bad "--ratio $r -T $n: $(cat err$n)"; fi
	done
	for n in 2 3; do
		if cmp -s t1.alcm t$n.alcm; then ok; else bad "--ratio $r: -T 1 and -T $n archives differ"; fi
	done
	# The reported squared error against the decoded archive's.
	if "$B/alcm-unpack" -f -q t1.alcm -o u.npz; then ok; else bad "--ratio $r: unpack failed"; fi
	said=$(sed -n 's/.*kept .*squared error \([0-9.e+-]*\).*/\1/p' err1)
	if python3 - "$said" <<'PY'; then ok; else bad "--ratio $r: reported squared error $said"; fi
import struct, sys, zipfile
def load(path):
    out = {}
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            b = z.read(n)
            hl = struct.unpack("<H", b[8:10])[0]
            hdr, data = b[10:10 + hl].decode(), b[10 + hl:]
            if "<f4" in hdr:
                out[n] = struct.unpack("<%df" % (len(data) // 4), data)
    return out
a, b = load("t.npz"), load("u.npz")
sse = sum((x - y) ** 2 for k in a for x, y in zip(a[k], b[k]))
said = float(sys.argv[1])
sys.exit(not abs(said - sse) <= 1e-5 * sse)
PY
done
echo "cli_budget_threads: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
