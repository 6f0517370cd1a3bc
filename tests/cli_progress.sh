#!/usr/bin/env bash
# The progress bar of alcm-pack moves within one large tensor (chunk by chunk), not from 0 to
# 100% at its end. Needs a terminal: script(1) gives the tool one.
# Usage: cli_progress.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
if ! command -v script >/dev/null || ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "cli_progress: no script(1) or numpy: skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One tensor of 120 MB in a deflated .npz of 111 MB (the bar shows from 100 MiB of input): the
# tool inflates it piece by piece while the threads code its chunks, about 0.3 s here, which
# the bar (redrawn every 0.1 s) must show. A .npy of it packs in 0.18 s at two threads, too
# fast for two redraws.
/usr/bin/python3 -c "
import numpy as np, zipfile
a = np.random.default_rng(0).standard_normal(30_000_000).astype(np.float32)
with zipfile.ZipFile('$tmp/big.npz', 'w', compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    with z.open('w.npy', 'w', force_zip64=True) as f:
        np.lib.format.write_array(f, a)"
script -qec "'$bin/alcm-pack' '$tmp/big.npz' -o '$tmp/big.alcm' --chunk-size 1M --max-error 1e-3" \
	"$tmp/tty.txt" >/dev/null
rc=$?
# The distinct percentages drawn while the one tensor was coded.
seen=$(tr '\r' '\n' <"$tmp/tty.txt" | grep -o '\] *[0-9]*%' | grep -o '[0-9]*' | sort -un)
mid=$(printf '%s\n' "$seen" | awk '$1 > 0 && $1 < 100' | wc -l)
last=$(printf '%s\n' "$seen" | tail -1)
echo "cli_progress: exit $rc, percentages drawn: $(echo $seen)"
[ $rc -eq 0 ] && [ "$mid" -ge 2 ] && [ "$last" = 100 ]
