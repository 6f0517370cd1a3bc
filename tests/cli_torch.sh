#!/usr/bin/env bash
# PyTorch checkpoints, sharded checkpoints and metadata through the tools: real torch.save
# files (made here by Debian's torch) round trip bit-exact through alcm-pack/alcm-unpack and
# load back with torch.load(weights_only=True), tied weights share one storage again;
# hostile .pt files are refused with the documented exit code and a message naming what was
# refused; a sharded safetensors checkpoint and a safetensors __metadata__ come back byte for
# byte. Usage: cli_torch.sh BIN_DIR SOURCE_DIR
set -u
B=$1
S=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3 # Debian's python, with python3-torch (the first python3 may not have it)
FX="$S/tests/torch_fixtures.py"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() {
	local want=$1; shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "exit $got (want $want): $* :: $(head -c 400 "$T/err")"; fi
}
has() { if grep -q -- "$1" "$T/${2:-err}"; then ok; else bad "missing '$1' in ${2:-err}: $(head -c 400 "$T/${2:-err}")"; fi; }

mkdir -p "$T/h" "$T/g" "$T/s"

# ---- hostile .pt files (crafted without torch): refused, nothing written ----
"$PY" "$FX" hostile "$T/h" || bad "cannot make the hostile fixtures"
while read -r code name msg; do
	[ -z "$code" ] && continue
	expect "$code" "$B/alcm-pack" "$T/h/$name.pt" -o "$T/h/$name.alcm"
	[ -n "$msg" ] && has "$msg"
	if [ "$code" -ne 0 ] && [ -e "$T/h/$name.alcm" ]; then bad "$name: output left behind"; fi
	# the refusal comes before anything is decoded: no "cannot decode", no crash
	if grep -q "Sanitizer\|runtime error" "$T/err"; then bad "$name: $(cat "$T/err")"; fi
done <<'EOF'
7 os-system global 'os.system' is not allowed
7 builtins-eval global 'builtins.eval' is not allowed
7 posix-system-in-dict global 'posix.system' is not allowed
7 stack-global-exec global 'builtins.exec' is not allowed
7 torch-load-global global 'torch.load' is not allowed
7 reduce-tuple REDUCE calls a tuple
7 reduce-storage-class REDUCE calls torch.FloatStorage
7 reduce-ordereddict-args OrderedDict called with arguments
7 build-on-tensor BUILD (set state) of a tensor
7 build-other-attr BUILD sets attribute '__class__'
7 newobj pickle opcode 0x81
6 mark-bomb MARKs nested more than 64 deep
7 list-bomb holds a list, not a state dict
4 memo-get-missing memo key 5 was never stored
7 memo-put-far memo key 2147483647 skips ahead
7 long4 pickle opcode 0x8b
7 long1-9-bytes an integer of 9 bytes
4 stack-underflow REDUCE needs 2 values
4 no-stop ends without STOP
4 after-stop bytes after STOP
4 storage-past-record declares 8 float32 elements, the record holds 16 bytes
4 storage-missing has no record 'archive/data/7'
4 view-past-storage reaches element 5 of a storage of 4
4 stride-past-storage reaches element 4 of a storage of 4
4 stride-far reaches element 4611686018427387905
4 stride-overflow strides overflow 64 bits
4 offset-past-storage storage offset 5 lies past the 4 elements
4 negative-size the size holds the negative value -1
6 huge-shape overflows 64 bits
6 huge-expand exceed the limit of 68719476736
6 rank-33 33 dimensions
4 storage-redeclared storage '0' is declared twice
7 complex-storage torch.ComplexFloatStorage
4 duplicate-name the name appears twice
7 checkpoint-nested a training checkpoint, not a state dict
7 value-int 'epoch' holds a value of type int
7 top-list holds a list, not a state dict
6 metadata-deep _metadata nested more than 16 deep
6 metadata-dag _metadata shares containers
6 metadata-cycle _metadata shares containers
4 no-version no record 'archive/version'
7 version-99 file format version 99
7 legacy the legacy torch.save format
4 bad-crc CRC-32 mismatch
0 zero-huge-dims
EOF
# a zero-element tensor with huge dimensions is valid: it comes back with its shape
expect 0 "$B/alcm-inspect" --json "$T/h/zero-huge-dims.alcm"
has '"shape":\[0,4611686018427387904\]' out

# ---- real torch.save files ----
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
	echo "cli_torch: SKIPPED the torch round trips: /usr/bin/python3 has no torch (apt-get install python3-torch python3-numpy; tools/setup.sh does)"
else
	"$PY" "$FX" good "$T/g" || bad "cannot make the torch fixtures"
	for f in dtypes.pt views.pt module.pt params.pth tied.bin plain.pt big.pt deflated.pt \
	         littleendian.pt; do
		expect 0 "$B/alcm-pack" "$T/g/$f" -o "$T/g/$f.alcm" --check
		has "all bit-exact"
		expect 0 "$B/alcm-unpack" "$T/g/$f.alcm" -o "$T/g/back-$f.pt"
		expect 0 "$PY" "$FX" compare "$T/g/$f" "$T/g/back-$f.pt"
	done
	# the same bytes big-endian (byteorder "big") come back as the little-endian twin
	expect 0 "$B/alcm-pack" "$T/g/bigendian.pt" -o "$T/g/be.alcm"
	expect 0 "$B/alcm-unpack" "$T/g/be.alcm" -o "$T/g/be.pt"
	expect 0 "$PY" "$FX" compare "$T/g/littleendian.pt" "$T/g/be.pt"
	# tied weights: stored once, shared again
	expect 0 "$B/alcm-inspect" "$T/g/views.pt.alcm"
	has "alias:    head -> emb (stored once)" out
	has "alias:    head_view -> emb (stored once)" out
	has "format:   1.1" out # alcm.alias is a 1.1 record (spec 6.1)
	expect 0 "$B/alcm-inspect" "$T/g/module.pt.alcm"
	has "format:   1.0" out # torch.state_dict alone keeps 1.0
	expect 0 "$PY" "$FX" aliases "$T/g/back-views.pt.pt" emb head
	expect 0 "$PY" "$FX" aliases "$T/g/back-views.pt.pt" emb head_view
	expect 0 "$PY" "$FX" aliases "$T/g/back-tied.bin.pt" emb.weight head.weight
	# ... and written as copies where the format cannot share
	expect 0 "$B/alcm-unpack" "$T/g/views.pt.alcm" -o "$T/g/views.npz"
	expect 0 "$PY" -c "import numpy as n; z = n.load('$T/g/views.npz'); assert list(z) == ['emb', 'head', 'head_view', 'transposed', 'row2', 'cols', 'every_other', 'expand', 'alone'], list(z); assert (z['emb'] == z['head']).all()"
	# one tensor alone: no alias records with a selection
	expect 0 "$B/alcm-unpack" "$T/g/views.pt.alcm" -o "$T/g/one.pt" --tensor emb
	expect 0 "$PY" -c "import torch; d = torch.load('$T/g/one.pt', weights_only=True); assert list(d) == ['emb'], list(d)"
	# lossy: floats within the bound, integers exact
	expect 0 "$B/alcm-pack" "$T/g/dtypes.pt" -o "$T/g/lossy.alcm" --max-error 1e-2 --check
	# uint16 has no torch storage: refused, naming the tensor; other tensors of a file
	# written by numpy come back
	expect 0 "$PY" -c "import numpy as n; n.savez('$T/g/u.npz', a=n.arange(6, dtype=n.float32), u=n.arange(3, dtype=n.uint16))"
	expect 0 "$B/alcm-pack" "$T/g/u.npz" -o "$T/g/u.alcm"
	expect 7 "$B/alcm-unpack" "$T/g/u.alcm" -o "$T/g/u.pt"
	has "tensor 'u': torch has no uint16 storage"
	[ -e "$T/g/u.pt" ] && bad "u.pt left behind" || ok
	expect 0 "$B/alcm-unpack" "$T/g/u.alcm" -o "$T/g/a.pt" --tensor a
	expect 0 "$PY" -c "import torch; d = torch.load('$T/g/a.pt', weights_only=True); assert d['a'].tolist() == [0, 1, 2, 3, 4, 5]"
fi

# ---- a pickle that tried to run code never did ----
rm -f /tmp/alcm-pwned-$$
"$PY" -c "
import sys; sys.path.insert(0, '$S/tests'); import torch_fixtures as f
f.pt('$T/h/run.pt', b'\x80\x02cos\nsystem\n' + f.s('touch /tmp/alcm-pwned-$$') + b'\x85R.')"
expect 7 "$B/alcm-pack" "$T/h/run.pt" -o "$T/h/run.alcm"
if [ -e "/tmp/alcm-pwned-$$" ]; then bad "the pickle ran code"; rm -f "/tmp/alcm-pwned-$$"; else ok; fi

# ---- sharded checkpoints and safetensors metadata ----
"$PY" "$FX" shards "$T/s" || bad "cannot make the shards"
expect 0 "$B/alcm-pack" "$T/s/model.safetensors.index.json" -o "$T/sh.alcm" --check
has "6 tensors decoded, all bit-exact"
expect 0 "$B/alcm-pack" "$T/s" -o "$T/sh-dir.alcm"
if cmp -s "$T/sh.alcm" "$T/sh-dir.alcm"; then ok; else bad "directory and index give different archives"; fi
expect 0 "$B/alcm-unpack" "$T/sh.alcm" -o "$T/outdir/"
for f in "$T"/s/*; do
	if cmp -s "$f" "$T/outdir/${f##*/}"; then ok; else bad "shard ${f##*/} differs"; fi
done
[ "$(ls "$T/outdir" | wc -l)" -eq 4 ] && ok || bad "extra files in the output directory: $(ls "$T/outdir")"
expect 8 "$B/alcm-unpack" "$T/sh.alcm" -o "$T/outdir/"
has "exists"
expect 0 "$B/alcm-unpack" "$T/sh.alcm" -o "$T/outdir/" -f
expect 2 "$B/alcm-unpack" "$T/sh.alcm" -o "$T/out2/" --tensor lm_head.weight
# all in one file: the metadata every shard shares ({"format": "pt"}) is not shared here
expect 0 "$B/alcm-unpack" "$T/sh.alcm" -o "$T/one.safetensors"
expect 0 "$B/alcm-inspect" --json "$T/sh.alcm"
has '"metadata":{}' out
# a single file's __metadata__: kept, shown, written back byte for byte
expect 0 "$B/alcm-pack" "$T/meta.safetensors" -o "$T/meta.alcm"
expect 0 "$B/alcm-inspect" "$T/meta.alcm"
has "metadata: format = pt" out
has "format:   1.1" out
has 'metadata: a = tab\\x09here' out
expect 0 "$B/alcm-inspect" --json "$T/meta.alcm"
has '"metadata":{"format":"pt","b":"2","a":"tab\\u0009here"}' out
expect 0 "$B/alcm-unpack" "$T/meta.alcm" -o "$T/meta-back.safetensors"
if cmp -s "$T/meta.safetensors" "$T/meta-back.safetensors"; then ok; else bad "__metadata__ round trip differs"; fi
# a plain archive is not a sharded one
expect 7 "$B/alcm-unpack" "$T/meta.alcm" -o "$T/notsharded/"
has "not packed from a sharded checkpoint"
[ -e "$T/notsharded" ] && bad "a directory left behind" || ok
# hostile indexes: paths outside the directory, shards that disagree with the index
printf '{"weight_map": {"w": "../evil.safetensors"}}' >"$T/s/bad1.index.json"
expect 7 "$B/alcm-pack" "$T/s/bad1.index.json" -o "$T/bad.alcm"
has "not a plain \*.safetensors file name"
printf '{"weight_map": {"w": "/etc/passwd.safetensors"}}' >"$T/s/bad2.index.json"
expect 7 "$B/alcm-pack" "$T/s/bad2.index.json" -o "$T/bad.alcm"
sed 's/"lm_head.weight": "model-00003/"lm_head.weight": "model-00001/' "$T/s/model.safetensors.index.json" >"$T/s/bad3.index.json"
expect 4 "$B/alcm-pack" "$T/s/bad3.index.json" -o "$T/bad.alcm"
has "the weight_map lists 'lm_head.weight', which its shard does not hold"
sed 's/"model.layer0.b": "model-00001/"model.layer0.b": "model-00002/' "$T/s/model.safetensors.index.json" >"$T/s/bad3.index.json"
expect 4 "$B/alcm-pack" "$T/s/bad3.index.json" -o "$T/bad.alcm"
has "tensor 'model.layer0.b' is in shard 'model-00001-of-00003.safetensors', the weight_map puts it in another"
printf '{"weight_map": {"lm_head.weight": "model-00003-of-00003.safetensors", "x": "model-00003-of-00003.safetensors"}}' >"$T/s/bad4.index.json"
expect 4 "$B/alcm-pack" "$T/s/bad4.index.json" -o "$T/bad.alcm"
has "the weight_map lists 'x', which its shard does not hold"
printf '{"weight_map": {"lm_head.weight": "model-00003-of-00003.safetensors"}' >"$T/s/bad5.index.json"
expect 4 "$B/alcm-pack" "$T/s/bad5.index.json" -o "$T/bad.alcm"

echo "cli_torch: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
