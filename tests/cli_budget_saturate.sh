#!/usr/bin/env bash
# alcm-pack --ratio near lossless, on weights once quantized to 8 bits with one scale per
# output channel (faceapi's kind): finer bounds stop costing more where the predictor says
# 0.1 to 0.4 bit per value per octave. The samples coded before the first attempt (at half
# the bound too, again where the plan moved) see it, so one attempt lands within 3% of the
# budget; before, the first attempt landed 3.5% to 3.8% under at --ratio 4 and 8 and a second
# whole pack followed.
# Usage: cli_budget_saturate.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
cd "$T" || exit 1
python3 - "$S/tests" <<'PY'
import random, sys, zipfile
sys.path.insert(0, sys.argv[1])
from npyfile import npy
random.seed(7)
cols = [0.0005 * 2 ** random.uniform(-1, 1) for _ in range(256)]
q = [max(-127, min(127, round(random.gauss(0, 25)))) * cols[i % 256] for i in range(3 * 3 * 256 * 256)]
g = [random.gauss(0, 0.02) for _ in range(256 * 512)]
with zipfile.ZipFile("sat.npz", "w") as z:
    z.writestr("conv.npy", npy((3, 3, 256, 256), q))
    z.writestr("fc.npy", npy((256, 512), g))
PY
raw=$(( (3 * 3 * 256 * 256 + 256 * 512) * 4 ))
for r in 4 8; do
	if "$B/alcm-pack" -f -v --check --ratio $r sat.npz -o s.alcm 2>err; then ok; else bad "--ratio $r: $(cat err)"; fi
	n=$(grep -c "budget, attempt" err)
	if [ "$n" -eq 1 ]; then ok; else bad "--ratio $r: $n attempts: $(grep attempt err)"; fi
	got=$(stat -c %s s.alcm)
	if python3 -c "import sys; sys.exit(not abs($got - $raw / $r) <= 0.03 * $raw / $r)"; then ok
	else bad "--ratio $r: $got bytes for a budget of $((raw / r))"; fi
done
echo "cli_budget_saturate: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
