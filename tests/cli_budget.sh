#!/usr/bin/env bash
# alcm-pack --size when the predictor is far off: np.linspace(0, 1, 5000) codes to a few
# dozen bytes at most bounds (the predictor says over a thousand) and jumps from about 3.9 kB
# to 11 kB between two bounds. The search still meets the budget from the sizes it measures,
# keeps the least error no more than 3% over it, and every value meets its bound; a budget
# under the smallest archive is refused, leaving no file.
# Usage: cli_budget.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
cd "$T" || exit 1
python3 - "$S/tests" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from npyfile import npy
n = 5000
with open("lin.npy", "wb") as f:
    f.write(npy((n,), [i / (n - 1) for i in range(n)]))
PY
# json FILE KEY: a number of the first tensor in alcm-inspect --json
json() { "$B/alcm-inspect" --json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['tensors'][0]['$2'])"; }
for size in 4000 6000; do
	if "$B/alcm-pack" -f -v --check --size $size lin.npy -o l.alcm 2>err; then ok; else bad "--size $size: $(cat err)"; fi
	got=$(stat -c %s l.alcm)
	if [ "$got" -le $((size * 103 / 100)) ]; then ok; else bad "--size $size: $got bytes"; fi
	e=$(json l.alcm max_abs_error)
	if python3 -c "import sys; sys.exit(not float('$e') < 0.01)"; then ok; else bad "--size $size: max error $e"; fi
	n=$(grep -c "budget, attempt" err)
	if [ "$n" -le 8 ]; then ok; else bad "--size $size: $n attempts"; fi
done
# A format 1.1 archive (normal values: modelled symbols) carries no PRED, with --ratio as with
# --max-error: readers of format 1.0 refuse any PRED but version 1 (spec 6.7.1), and this
# build's default weights are version 2.
python3 - "$S/tests" <<'PY'
import random, sys
sys.path.insert(0, sys.argv[1])
from npyfile import npy
random.seed(5)
n = 20000
with open("nrm.npy", "wb") as f:
    f.write(npy((n,), [random.gauss(0, 0.02) for _ in range(n)]))
PY
"$B/alcm-pack" -f --ratio 6 nrm.npy -o r.alcm 2>err || bad "--ratio 6: $(cat err)"
"$B/alcm-inspect" r.alcm >out 2>&1
if grep -q "format:   1.1" out && ! grep -q "PRED" out; then ok
else bad "--ratio 6: PRED in a 1.1 archive: $(head -3 out)"; fi
"$B/alcm-pack" -f --max-error 1e-3 nrm.npy -o m.alcm 2>err || bad "--max-error: $(cat err)"
if ! "$B/alcm-inspect" m.alcm | grep -q "PRED"; then ok; else bad "--max-error stored PRED"; fi
# A budget above the lossless archive keeps it: no error.
lossless=$("$B/alcm-pack" -f lin.npy -o z.alcm >/dev/null 2>&1; stat -c %s z.alcm)
"$B/alcm-pack" -f --size $((lossless + 500)) lin.npy -o l.alcm 2>err || bad "--size lossless + 500: $(cat err)"
if cmp -s l.alcm z.alcm; then ok; else bad "--size above lossless did not keep the lossless archive"; fi
# Under the coarsest archive: exit 10, no file.
"$B/alcm-pack" --size 500 lin.npy -o tiny.alcm 2>err
rc=$?
if [ $rc -eq 10 ] && [ ! -e tiny.alcm ] && grep -q "cannot fit" err; then ok; else bad "--size 500: exit $rc"; fi
echo "cli_budget: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
