#!/usr/bin/env bash
# The programs of examples/ do what their comments say.
# Usage: cli_examples.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
"$bin/alcm-make-checkpoint" -f m.safetensors >/dev/null 2>&1

# One tensor in memory: lossless is bit-exact, max-error within the bound and smaller.
out=$("$bin/example_roundtrip") && [[ $out == *"bit-exact"* ]] && ok || bad "roundtrip lossless: $out"
out2=$("$bin/example_roundtrip" 1e-4) && [[ $out2 == *"within the bound"* ]] &&
	awk -v e="$(sed 's/.*largest error \([^,]*\),.*/\1/' <<<"$out2")" 'BEGIN{exit !(e <= 1e-4)}' &&
	ok || bad "roundtrip max-error: $out2"

# One call each way: lossless is byte-identical, max-error smaller and within the bound.
"$bin/example_pack_file" m.safetensors m.alcm back.safetensors && cmp -s m.safetensors back.safetensors &&
	ok || bad "pack_file lossless round trip"
"$bin/example_pack_file" m.safetensors lossy.alcm lossy.safetensors 1e-3 && ok || bad "pack_file lossy"
[ "$(stat -c %s lossy.alcm)" -lt "$(stat -c %s m.alcm)" ] && ok || bad "lossy archive not smaller"
"$bin/alcm-pack" lossy.safetensors -o again.alcm -f -q 2>/dev/null
"$bin/alcm-pack" m.safetensors -o check.alcm -f -q --max-error 1e-3 --check 2>/dev/null && ok ||
	bad "max-error 1e-3 --check"
"$bin/example_pack_file" m.safetensors m.alcm x.npz 2>err.txt
[ $? -eq 1 ] && grep -q bfloat16 err.txt && ok || bad "pack_file to .npz with bfloat16: $(cat err.txt)"
[ ! -e x.npz ] && ok || bad "a failed unpack left x.npz"

# Random access: one tensor, by name.
out=$("$bin/example_random_access" m.alcm embed.weight) && [[ $out == "embed.weight float32 [1000, 128] "* ]] &&
	ok || bad "random_access: $out"
"$bin/example_random_access" m.alcm nope 2>err.txt
[ $? -eq 1 ] && grep -q "no tensor 'nope'" err.txt && ok || bad "random_access of a missing name"

# Gradient frames: each committed, the archive verifies and lists them.
"$bin/example_gradient_stream" g.alcm 4 >out.txt && [ "$(grep -c '^frame ' out.txt)" -eq 4 ] &&
	ok || bad "gradient_stream: $(cat out.txt)"
"$bin/alcm-inspect" --verify --json g.alcm >g.json 2>/dev/null && grep -q '"frame":3' g.json &&
	ok || bad "gradient stream archive does not verify or lacks frame 3"

# Tight limits: refused (exit 3, a limit) under them, decoded above them.
"$bin/example_tight_limits" m.alcm 1000 2>err.txt
[ $? -eq 3 ] && grep -q 'limit' err.txt && ok || bad "tight_limits under the limit: $(cat err.txt)"
"$bin/example_tight_limits" m.alcm 10000000 >out.txt && grep -q '31 tensors' out.txt && ok ||
	bad "tight_limits within the limit"

echo "cli_examples: $checks checks, $fails failed"
[ $fails -eq 0 ]
