#!/usr/bin/env bash
# pip builds the package offline from this checkout (a copy of python/, so the checkout stays
# clean), installs the wheel, and the installed module writes the same archive bytes as the
# one CMake built. Usage: pip_wheel.sh SOURCE_DIR PYTHON CMAKE_PYTHONPATH
set -euo pipefail
src=$1 py=$2 built=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/python" "$work/python"
rm -rf "$work/python/build" "$work/python/"*.egg-info "$work/python/dist"
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
ALCM_SOURCE_DIR=$src "$py" -m pip wheel -q --no-build-isolation --no-deps -w "$work/dist" \
	"$work/python"
"$py" -m pip install -q --no-deps --target "$work/site" "$work"/dist/alcm-*.whl
probe='
import hashlib, numpy as np, alcm
x = np.random.default_rng(0).normal(size=(64, 1000)).astype(np.float32)
h = hashlib.sha256(alcm.compress(x, max_error=1e-3) + alcm.compress(x)).hexdigest()
print(alcm.__file__, h)'
a=$(cd "$work" && PYTHONPATH="$work/site" "$py" -c "$probe")
b=$(cd "$work" && PYTHONPATH="$built" "$py" -c "$probe")
echo "pip:   $a"
echo "cmake: $b"
case $a in "$work/site/alcm/"*) ;; *) echo "pip_wheel.sh: the wheel's module was not the one imported" >&2; exit 1 ;; esac
[ "${a##* }" = "${b##* }" ] || { echo "pip_wheel.sh: the two builds write different bytes" >&2; exit 1; }
echo "pip_wheel.sh: wheel built offline, installed, same archive bytes as the CMake build"
