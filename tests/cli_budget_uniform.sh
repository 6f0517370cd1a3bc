#!/usr/bin/env bash
# alcm-pack --size near lossless (issue 6: the squared error no worse than one --max-error
# bound for every tensor at the same size), on a file like faceapi's separable convolutions:
# pointwise filters once quantized to 8 bits per output channel (spread 0.3), depthwise and
# plain filters, biases of spread 3e-8. A bound the plan wants for the pointwise filters lay
# below their profiled steps (sd 2^-17), where bounds stopped: the plan kept them there and
# gave the rest finer bounds, 45 times the squared error of one bound at --ratio 1.7 and 11
# times at 1.8. Now within 1.5 times it (1.28 and 1.37), by alcm-budget-bench's comparison
# (the uniform bound's error interpolated at the same size between two bracketing archives).
# Not yet the issue's "no worse": at 1.9, 2.2 times (3.8 before).
# Usage: cli_budget_uniform.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
cd "$T" || exit 1
[ -x "$B/alcm-budget-bench" ] ||
	{ echo "cli_budget_uniform: no alcm-budget-bench, skipped"; exit 0; }
python3 - "$S/tests" <<'PY'
import random, sys, zipfile
sys.path.insert(0, sys.argv[1])
from npyfile import npy
random.seed(3)
with zipfile.ZipFile("sep.npz", "w") as z:
    for k in range(6):
        cin, cout = 64, 128
        cols = [0.004 * 2 ** random.uniform(-1, 1) for _ in range(cout)]
        mins = [random.uniform(-0.5, -0.2) * c * 128 for c in cols]
        q = [random.randint(0, 255) * cols[i % cout] + mins[i % cout] for i in range(cin * cout)]
        z.writestr("blk%d/pointwise_filter.npy" % k, npy((1, 1, cin, cout), q))
        z.writestr("blk%d/depthwise_filter.npy" % k,
                   npy((3, 3, cin, 1), [random.gauss(0, 0.1) for _ in range(9 * cin)]))
        z.writestr("blk%d/bias.npy" % k, npy((cout,), [random.gauss(0, 3e-8) for _ in range(cout)]))
        z.writestr("blk%d/conv.npy" % k,
                   npy((3, 3, 32, 64), [random.gauss(0, 0.01) for _ in range(9 * 32 * 64)]))
PY
for r in 1.7 1.8; do
	if "$B/alcm-budget-bench" --pack "$B/alcm-pack" --ratios $r sep.npz >out 2>err; then ok
	else bad "alcm-budget-bench --ratios $r: $(cat err)"; fi
	row=$(grep "^| $r |" out)
	off=$(echo "$row" | awk -F'|' '{gsub(/[ %+]/, "", $5); print $5}')
	q=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $10); print $10}')
	if python3 -c "import sys; sys.exit(not abs(float('$off')) <= 3)"; then ok
	else bad "--size at ratio $r: $off% off the budget: $row"; fi
	if python3 -c "import sys; sys.exit(not float('$q') <= 1.5)"; then ok
	else bad "--size at ratio $r: $q times the squared error of one bound: $row"; fi
done
# Spreads 10^100 apart (float64): the plan's quarter of the way to the common bound pulled the
# large tensor hundreds of octaves under its floor, where the common move could not reach
# it: --ratio 8 kept 1136 bytes of a 24576-byte budget (squared error 8374); 5d62937 kept
# 19632 (20% under). Now within 3%.
python3 - "$S/tests" <<'PY'
import random, sys, zipfile
sys.path.insert(0, sys.argv[1])
from npyfile import npy
random.seed(5)
with zipfile.ZipFile("far.npz", "w") as z:
    a = [random.gauss(0, 1e-100) for _ in range(256 * 64)]
    z.writestr("a.npy", npy((256, 64), a, True))
    z.writestr("c.npy", npy((128, 64), [random.gauss(0, 1) for _ in range(128 * 64)], True))
PY
if "$B/alcm-pack" -f -q --ratio 8 far.npz -o far.alcm 2>err; then ok
else bad "far.npz: $(cat err)"; fi
got=$(stat -c %s far.alcm 2>/dev/null || echo 0)
if python3 -c "import sys; sys.exit(not abs($got - 24576) <= 0.03 * 24576)"; then ok
else bad "far.npz --ratio 8: $got bytes for a budget of 24576"; fi
echo "cli_budget_uniform: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
