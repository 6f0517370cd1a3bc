#!/usr/bin/env bash
# The HDF5 filter as users meet it: the README's h5py example runs as written (every mode,
# read back), a bad compression_opts fails naming the cd_values index and range, h5py-written
# files pack with alcm-pack without --allow-plugins, and `cmake --install` into a prefix puts
# the plugin where the message it prints says (HDF5 then reads through it).
# Usage: cli_h5filter.sh BIN_DIR SOURCE_DIR
set -u
B=$1 SRC=$2
build=$(dirname "$B")
P=$build/lib/plugin
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
py=/usr/bin/python3
export PYTHONPATH=$build/python${PYTHONPATH:+:$PYTHONPATH}
if [ ! -e "$P/libH5Zalcm.so" ] || ! command -v h5diff >/dev/null; then
	echo "cli_h5filter: no plugin or no hdf5-tools: skipped"
	exit 0
fi
if ldd "$P/libH5Zalcm.so" 2>/dev/null | grep -q 'libasan\|libubsan'; then
	# A sanitized plugin cannot load into the uninstrumented python or h5dump; the plain
	# build runs these checks.
	echo "cli_h5filter: sanitizer build: skipped"
	exit 0
fi
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() {
	local want=$1; shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "exit $got (want $want): $* :: $(head -c 600 "$T/err")"; fi
}
has() { if grep -q -- "$1" "$T/${2:-err}"; then ok; else bad "missing '$1' in ${2:-err}: $(head -c 600 "$T/${2:-err}")"; fi; }

if [ -x "$py" ] && "$py" -c 'import h5py' 2>/dev/null; then
	export HDF5_PLUGIN_PATH=$P
	# The README block marked "test: h5py", as written.
	awk '/<!-- test: h5py/ { on = 1; next } on && /^```python/ { code = 1; next }
	     code && /^```/ { exit } code { print }' "$SRC/README.md" >"$T/readme.py"
	if [ -s "$T/readme.py" ]; then ok; else bad "no h5py block in README.md"; fi
	(cd "$T" && expect 0 "$py" readme.py)
	has "'lossless'" out
	expect 0 h5dump -p -H "$T/ckpt.h5"
	has "FILTER_ID 417" out
	# A bad value names its index and range (libhdf5 alone says "error during user callback").
	expect 1 "$py" -c "
import h5py, numpy as np
with h5py.File('$T/bad.h5', 'w') as f:
    f.create_dataset('x', data=np.zeros(100, np.float32), chunks=True, compression=417,
                     compression_opts=(2, 9))"
	has "cd_values\[1\] (mode) is 9, allowed 0..4"
	expect 1 "$py" -c "
import h5py, numpy as np
with h5py.File('$T/bad.h5', 'w') as f:
    f.create_dataset('x', data=np.zeros(100, np.float32), chunks=True, compression=417,
                     compression_opts=(2, 0, 0, 0, 8, 40))"
	has "cd_values\[5\] (zstd level) is 40, allowed 0..19"
	unset HDF5_PLUGIN_PATH
	# alcm-pack decodes them with its own code, no plugin, no --allow-plugins; the .h5 it
	# writes back equals the lossless dataset bit for bit.
	expect 0 "$B/alcm-pack" "$T/ckpt.h5" -o "$T/ckpt.alcm" --check
	expect 0 "$B/alcm-unpack" "$T/ckpt.alcm" -o "$T/back.h5"
	HDF5_PLUGIN_PATH=$P expect 0 h5diff "$T/back.h5" "$T/ckpt.h5" /lossless /lossless
	HDF5_PLUGIN_PATH=$P expect 0 h5diff -d 1e-3 "$T/back.h5" "$T/ckpt.h5" /max_error /lossless
else
	echo "cli_h5filter: no python3-h5py: h5py checks skipped"
fi

# cmake --install into a prefix other than /usr: the plugin under <prefix>/lib/hdf5/plugin,
# and the HDF5_PLUGIN_PATH to set printed; HDF5 reads filtered data through it.
if command -v cmake >/dev/null && [ -f "$build/CMakeCache.txt" ]; then
	expect 0 cmake --install "$build" --prefix "$T/prefix"
	pdir=$(sed -n 's/.*export HDF5_PLUGIN_PATH=\(.*\)$/\1/p' "$T/out" | head -1)
	if [ -n "$pdir" ] && [ -e "$pdir/libH5Zalcm.so" ]; then ok; else bad "install: no plugin at '$pdir'"; fi
	HDF5_PLUGIN_PATH=$P expect 0 h5repack -f UD=417,0,6,2,0,0,0,0,0 "$SRC/tests/data/h5filter-v1.h5" "$T/r.h5"
	HDF5_PLUGIN_PATH=$pdir expect 0 h5diff "$SRC/tests/data/h5filter-v1.h5" "$T/r.h5"
	HDF5_PLUGIN_PATH=$T/nowhere expect 1 h5dump -d /f32 "$T/r.h5"
fi
echo "cli_h5filter: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
