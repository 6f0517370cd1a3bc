#!/usr/bin/env bash
# alcm-pack --ratio holds a small input's tensors in memory to profile them on several threads,
# but a file's size does not bound its tensors': a deflated .npz of ten 32 MiB tensors of
# zeros is under a megabyte. Read whole, the profiles held all of them (and 1.38 GB for twenty
# 64 MiB ones); tensors over 16 MiB are now profiled where the input holds them, so the peak
# stays that of one tensor, as a plain --max-error pack of the file has it (measured beside it,
# so that a sanitizer's own memory counts on both sides). The archive is the same bytes at one
# thread and at two.
# Usage: cli_budget_memory.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
cd "$T" || exit 1
python3 - "$S/tests" <<'PY'
import struct, sys, zipfile
sys.path.insert(0, sys.argv[1])
from npyfile import npy
n = 8 << 20  # 32 MiB of float32 zeros
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % n
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode()
with zipfile.ZipFile("z.npz", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(10):
        z.writestr("t%d.npy" % i, head + bytes(4 * n))
    z.writestr("small.npy", npy((4,), [0.5, -0.25, 1.0, 2.0]))
PY
peak() { # KB of the largest child's peak RSS after running "$@"
	python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.buffer.write(r.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)' "$@"
}
one=$(peak "$B/alcm-pack" -q --max-error 0.001 z.npz -o m.alcm)
if [ "$one" -gt 0 ]; then ok; else bad "--max-error 0.001 failed"; fi
for n in 1 2; do
	kb=$(peak "$B/alcm-pack" -q -T $n --ratio 8 z.npz -o t$n.alcm)
	if [ "$kb" -gt 0 ]; then ok; else bad "--ratio 8 -T $n failed"; fi
	# 96 MiB over: three tensors' worth (read whole: ten)
	if [ "$kb" -lt $((one + 96 * 1024)) ]; then ok
	else bad "-T $n: peak RSS $kb KB against $one KB for one pack"; fi
done
if cmp -s t1.alcm t2.alcm; then ok; else bad "-T 1 and -T 2 archives differ"; fi
echo "cli_budget_memory: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
