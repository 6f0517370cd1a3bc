#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/<surface>/ with the library's own writers
# (fuzz/make_corpus.c) plus the spec test vectors (spec/vectors/*.alcm).
# Usage: fuzz/make_corpus.sh [BUILD_DIR]   (default build/; built there if needed)
# Every seed ends with the harness's options byte (fuzz/README.md). The corpus is small
# (about 250 KB) and committed, so that every ctest run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S . -B "$build" >/dev/null
fi
cmake --build "$build" --target alcm-fuzz-corpus alcm-fuzz-corpus-tframe -j"$(nproc)" >/dev/null
# Only when the HDF5 bridge is built (the target does not exist otherwise).
cmake --build "$build" --target alcm-fuzz-corpus-hdf5 -j"$(nproc)" >/dev/null 2>&1 || true
gen="$build/bin/alcm-fuzz-corpus"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$gen" "$tmp" spec/vectors
"$build/bin/alcm-fuzz-corpus-tframe" "$tmp"
# HDF5 seeds (fuzz/make_corpus_hdf5.c, libhdf5) when the HDF5 bridge is built.
if [ -x "$build/bin/alcm-fuzz-corpus-hdf5" ]; then
	"$build/bin/alcm-fuzz-corpus-hdf5" "$tmp"
fi
# torch.save files made by torch itself and hostile ones (tests/torch_fixtures.py), with
# the options byte 0x00, when Debian's python has torch.
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
	mkdir -p "$tmp/torch" "$tmp/pt"
	/usr/bin/python3 tests/torch_fixtures.py good "$tmp/torch"
	/usr/bin/python3 tests/torch_fixtures.py hostile "$tmp/torch"
	for f in "$tmp"/torch/*.p* "$tmp"/torch/*.bin; do
		[ "$(stat -c %s "$f")" -le 16384 ] || continue
		n=${f##*/}
		{ cat "$f"; printf '\0'; } >"$tmp/pt/torch-${n%.*}"
	done
	rm -rf "$tmp/torch"
fi
for dir in "$tmp"/*/; do
	s=$(basename "$dir")
	rm -rf "fuzz/corpus/$s"
	mkdir -p "fuzz/corpus/$s"
	cp "$dir"* "fuzz/corpus/$s/"
	printf '%-12s %3d files %7d bytes\n' "$s" "$(ls "fuzz/corpus/$s" | wc -l)" \
		"$(cat "fuzz/corpus/$s"/* | wc -c)"
done
