#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds programs against it as a user would:
# with find_package(alcm) (shared, static, HDF5 bridge) and with pkg-config (alcm, libalcm,
# alcm_hdf5; shared and fully static), and runs each.
# Usage: cli_consumer.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
build=$(dirname "$bin")
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pfx=$tmp/prefix
if ! cmake --install "$build" --prefix "$pfx" >"$tmp/install.log" 2>&1; then
	cat "$tmp/install.log"
	echo "cli_consumer: cmake --install failed"
	exit 1
fi
lib=$pfx/lib
[ -d "$lib" ] || lib=$(dirname "$(find "$pfx" -name libalcm.a | head -1)")
"$bin/alcm-make-checkpoint" -f "$tmp/m.safetensors" >/dev/null 2>&1

# A program that packs and unpacks the checkpoint: runs and round-trips exactly.
run_packer() { # label binary
	rm -f "$tmp/m.alcm" "$tmp/back.safetensors"
	if "$2" "$tmp/m.safetensors" "$tmp/m.alcm" "$tmp/back.safetensors" &&
		cmp -s "$tmp/m.safetensors" "$tmp/back.safetensors"; then ok; else
		bad "$1: the consumer program does not round-trip"
	fi
}

for target in alcm::alcm alcm::alcm_static alcm::alcm_hdf5; do
	b=$tmp/cmake-${target##*::}
	if cmake -S "$src/tests/consumer" -B "$b" -DCMAKE_PREFIX_PATH="$pfx" \
		-DCONSUMER_TARGET="$target" -DEXAMPLES_DIR="$src/examples" >"$b.log" 2>&1 &&
		cmake --build "$b" >>"$b.log" 2>&1; then ok; else
		bad "find_package + $target does not build:"; tail -20 "$b.log"
		continue
	fi
	case $target in
	alcm::alcm_hdf5) "$b/consumer" | grep -q 'hdf5 bridge linked' && ok || bad "$target program" ;;
	alcm::alcm_static)
		run_packer "$target" "$b/consumer"
		ldd "$b/consumer" | grep -q libalcm && bad "$target program loads libalcm.so" || ok ;;
	*)
		run_packer "$target" "$b/consumer"
		ldd "$b/consumer" | grep -q "$lib/libalcm.so" && ok || bad "$target program does not load the installed libalcm.so" ;;
	esac
done

export PKG_CONFIG_PATH=$lib/pkgconfig
for name in alcm libalcm; do
	if cc -std=c11 -o "$tmp/pc-$name" "$src/examples/pack_file.c" $(pkg-config --cflags --libs "$name") \
		-Wl,-rpath,"$lib" 2>"$tmp/pc.log"; then
		run_packer "pkg-config $name" "$tmp/pc-$name"
	else
		bad "pkg-config $name: $(cat "$tmp/pc.log")"
	fi
done
if cc -std=c11 -static -o "$tmp/pc-static" "$src/examples/pack_file.c" \
	$(pkg-config --static --cflags --libs alcm) 2>"$tmp/pc.log"; then
	run_packer "pkg-config --static alcm" "$tmp/pc-static"
	ldd "$tmp/pc-static" 2>&1 | grep -q 'not a dynamic executable' && ok || bad "-static program is dynamic"
else
	bad "pkg-config --static alcm: $(cat "$tmp/pc.log")"
fi
if [ -f "$lib/pkgconfig/alcm_hdf5.pc" ]; then
	if cc -std=c11 -o "$tmp/pc-h5" "$src/tests/consumer/h5_consumer.c" \
		$(pkg-config --cflags --libs alcm_hdf5) 2>"$tmp/pc.log" && "$tmp/pc-h5" >/dev/null; then ok; else
		bad "pkg-config alcm_hdf5: $(cat "$tmp/pc.log")"
	fi
fi
echo "cli_consumer: $checks checks, $fails failed"
[ $fails -eq 0 ]
