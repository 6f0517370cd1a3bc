#!/usr/bin/env bash
# Fetches a real pretrained checkpoint for alcm-codec-bench: the TensorFlow.js weights that
# ship inside the npm package @vladmandic/face-api (MIT), converted to one float32
# .safetensors file. Nothing is committed: the output goes under build/ by default.
#
# usage: tools/bench/fetch_checkpoint.sh [-f] [OUTPUT.safetensors]
#   default OUTPUT: build/data/faceapi.safetensors (relative to the repository root)
#   -f  fetch and convert again even if OUTPUT exists
#
# Models: every model of the package but ssd_mobilenetv1 (which alone would add 22 MB), about
# 28 MB of float32. Most of the package's weights are stored uint8-quantized in their
# manifests (value = q * scale + min); they are dequantized to float32, as TF.js loads them,
# so those tensors hold at most 256 distinct values each. The converter says how many.
set -euo pipefail

PKG=@vladmandic/face-api
VERSION=1.7.15
MODELS=(face_recognition_model age_gender_model face_expression_model face_landmark_68_model
	face_landmark_68_tiny_model tiny_face_detector_model)

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
force=0
if [ "${1:-}" = "-f" ]; then
	force=1
	shift
fi
out=${1:-$root/build/data/faceapi.safetensors}
case $out in
/*) ;;
*) out=$PWD/$out ;;
esac

say() { printf 'fetch_checkpoint: %s\n' "$*" >&2; }

# Weights never go into the git tree, except under build*/ (ignored build output).
outdir=$(realpath -m "$(dirname "$out")")
case $outdir/ in
"$root"/build*/*) ;;
"$root"/*) say "refusing to write weights inside the source tree: $out (use build/...)"; exit 2 ;;
esac
mkdir -p "$outdir"
out=$outdir/$(basename "$out")

if [ -s "$out" ] && [ $force = 0 ]; then
	say "$out exists (use -f to fetch again)"
	exit 0
fi

command -v npm >/dev/null || { say "npm not found (apt-get install npm)"; exit 1; }
PY=$(command -v python3 || echo /usr/bin/python3)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "npm pack $PKG@$VERSION"
# npm checks the tarball against the registry's integrity hash.
tgz=$(cd "$tmp" && npm pack --silent "$PKG@$VERSION" 2>/dev/null | tail -n 1)
[ -s "$tmp/$tgz" ] || { say "npm pack $PKG@$VERSION failed"; exit 1; }
tar -xzf "$tmp/$tgz" -C "$tmp"
pj=$tmp/package/package.json
name=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$pj")
ver=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pj")
lic=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("license","unknown"))' "$pj")

manifests=()
for m in "${MODELS[@]}"; do
	f=$tmp/package/model/$m-weights_manifest.json
	[ -f "$f" ] || { say "the package has no $m-weights_manifest.json"; exit 1; }
	manifests+=("$f")
done

echo "source: npm package $name $ver (licence $lic), models: ${MODELS[*]}"
"$PY" "$here/tfjs_to_safetensors.py" --prefix-models \
	--meta "source=npm:$name@$ver" --meta "license=$lic" \
	--meta "note=uint8-quantized TF.js weights dequantized to float32" \
	"$out" "${manifests[@]}"
echo "wrote $out ($(stat -c %s "$out") bytes)"
