#!/usr/bin/env bash
# alcm-pack --ratio on a small checkpoint of many small tensors (a two-layer transformer's 30
# bfloat16 tensors, 200 KB, as torch saves it), where what is not the tensors' own bytes
# (header, directory, section table: 3.1 KB) is a quarter of a --ratio 16 archive. The first
# attempt's estimate of it (overhead_bytes) must be the format's: fitted to an older layout
# it was 1 KB high, and the first attempts landed 4 to 14% under the budget, R 16 taking
# three. Now within 10% (R 16: 8.0%, the two 16384-value tensors whose samples measure no
# slope there keep the predictor's curves, 25% high) and one correction at most.
# Usage: cli_budget_small.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
cd "$T" || exit 1
python3 - <<'PY'
import json, random, struct
random.seed(7)
def bf16(x):  # round to nearest even, as torch does
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return struct.pack("<H", (u + 0x7FFF + ((u >> 16) & 1)) >> 16)
shapes = [("embed.weight", (64, 8), 0.3), ("embed.bias", (64,), 0.05)]
for l in range(2):
    p = "enc.%d." % l
    shapes += [(p + "attn.in_proj.weight", (192, 64), 0.1), (p + "attn.in_proj.bias", (192,), 0.01),
               (p + "attn.out_proj.weight", (64, 64), 0.1), (p + "attn.out_proj.bias", (64,), 0.01),
               (p + "linear1.weight", (256, 64), 0.08), (p + "linear1.bias", (256,), 0.02),
               (p + "linear2.weight", (64, 256), 0.05), (p + "linear2.bias", (64,), 0.02),
               (p + "norm1.weight", (64,), 0.1), (p + "norm1.bias", (64,), 0.02),
               (p + "norm2.weight", (64,), 0.1), (p + "norm2.bias", (64,), 0.02)]
shapes += [("head.weight", (10, 64), 0.2), ("head.bias", (10,), 0.01)]
hdr, blobs, off = {}, [], 0
for name, shape, sd in shapes:
    n = 1
    for d in shape:
        n *= d
    mean = 1.0 if "norm" in name and name.endswith("weight") else 0.0
    b = b"".join(bf16(random.gauss(mean, sd)) for _ in range(n))
    hdr[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open("small.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY
for r in 4 8 12 16; do
	if "$B/alcm-pack" -f -v --ratio $r small.safetensors -o s.alcm 2>err; then ok; else bad "--ratio $r: $(cat err)"; fi
	off=$(sed -n 's/.*budget, attempt 1: .*(\([-+0-9.]*\)%).*/\1/p' err)
	if python3 -c "import sys; sys.exit(not abs(float('$off')) < 10)"; then ok
	else bad "--ratio $r: the first attempt landed ${off}% off the budget"; fi
	n=$(grep -c "budget, attempt" err)
	if [ "$n" -le 2 ]; then ok; else bad "--ratio $r: $n attempts"; fi
done
echo "cli_budget_small: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
