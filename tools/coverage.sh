#!/usr/bin/env bash
# Line and branch coverage of format/ (the container) and lib/io/ (the input readers) from
# every ctest test, the fuzz corpus replays included, measured with gcc --coverage and gcov.
#
#   tools/coverage.sh [--no-build] [MIN_FORMAT_BRANCH_PERCENT]   (default 90)
#
# Builds build-cov/ (Debug, -O0, --coverage, static library only), runs ctest there, prints
# per-file and total figures, writes annotated sources to build-cov/coverage/, lists the
# branches of format/ never taken, and exits 1 if format/ branch coverage is below the
# minimum. Branches are gcov's "taken at least once" over the .c files (macros count where
# they expand; static inline helpers of headers are left out, gcov counts them per header).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
build=build-cov
do_build=1
if [ "${1:-}" = "--no-build" ]; then
	do_build=0
	shift
fi
min=${1:-90}

if [ $do_build -eq 1 ]; then
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc \
		-DCMAKE_C_FLAGS="--coverage -O0" -DCMAKE_EXE_LINKER_FLAGS=--coverage \
		-DALCM_BUILD_SHARED=OFF -DALCM_BUILD_FUZZERS=OFF >/dev/null
	if ! cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1; then
		# Measure what builds: a broken test must not hide the figures of the others.
		keep=-k
		grep -q 'CMAKE_GENERATOR:INTERNAL=Ninja' "$build/CMakeCache.txt" && keep="-k 0"
		# shellcheck disable=SC2086
		cmake --build "$build" -j"$(nproc)" -- $keep >>"$build/build.log" 2>&1 || true
		echo "coverage.sh: some targets do not build (see $build/build.log):" >&2
		grep -E 'error|Error [0-9]' "$build/build.log" | head -5 >&2
	fi
	find "$build" -name '*.gcda' -delete
	(cd "$build" && ctest -j"$(nproc)" --output-on-failure >ctest.log 2>&1) || {
		tail -40 "$build/ctest.log"
		echo "coverage.sh: tests failed (figures below still count what ran)" >&2
	}
	grep -E 'tests passed|tests failed' "$build/ctest.log" || true
fi

out="$build/coverage"
rm -rf "$out"
mkdir -p "$out"
objdir=$(find "$build" -type d -path '*alcm_static.dir' | head -1)
[ -n "$objdir" ] || { echo "coverage.sh: no alcm_static objects in $build" >&2; exit 2; }

# gcov writes annotated files (*.gcov) into the current directory: run it in $out.
summary="$out/summary.txt"
: >"$summary"
for dir in format lib/io lib; do
	for gcda in "$objdir/$dir"/*.gcda; do
		[ -e "$gcda" ] || continue
		(cd "$out" && gcov -b -c -p "$src/$gcda") \
			>>"$summary" 2>/dev/null || true
	done
done

# summary.txt holds blocks: File '...' / Lines executed:P% of N / Branches executed /
# Taken at least once:P% of N. Keep one entry per source file (the first seen).
report() { # report DIR LABEL: prints the table, writes the branch percentage to $out/LABEL.branch
	awk -v dir="$src/$1/" -v label="$2" -v res="$out/$(echo "$1" | tr / _).branch" '
	/^File / { f = $2; gsub(/\047/, "", f); cur = f; next }
	/^Lines executed:/ && cur != "" {
		split($2, a, "%"); sub(/.*:/, "", a[1]); lp[cur] = a[1]; ln[cur] = $4 }
	/^Taken at least once:/ && cur != "" {
		split($4, a, "%"); sub(/.*:/, "", a[1]); bp[cur] = a[1]; bn[cur] = $6; seen[cur] = 1 }
	/^No branches/ && cur != "" { bp[cur] = 100; bn[cur] = 0; seen[cur] = 1 }
	END {
		for (f in seen) {
			if (index(f, dir) != 1) continue
			rest = substr(f, length(dir) + 1)
			if (rest ~ /\//) continue            # a subdirectory (lib/io under lib)
			name = rest
			if (name ~ /\.h$/) continue
			printf "  %-22s lines %6.2f%% of %5d   branches %6.2f%% of %5d\n", name, lp[f], ln[f], bp[f], bn[f] | "sort"
			lt += ln[f]; lc += lp[f] * ln[f] / 100; bt += bn[f]; bc += bp[f] * bn[f] / 100
		}
		close("sort")
		printf "%s total: lines %.2f%% (%d of %d), branches %.2f%% (%d of %d)\n", label,
		       lt ? 100 * lc / lt : 0, lc + 0.5, lt, bt ? 100 * bc / bt : 0, bc + 0.5, bt
		printf "%.2f\n", bt ? 100 * bc / bt : 0 > res
	}' "$summary"
}

echo "== coverage of format/ (container)"
report format "format/"
fmt_branch=$(cat "$out/format.branch")
echo "== coverage of lib/io/ (input readers)"
report lib/io "lib/io/"
echo "== coverage of lib/ (codec; information)"
report lib "lib/" | tail -1

echo "== branches of format/ never taken (first 60; all in $out/*.gcov)"
for g in "$out"/*format#*.c.gcov; do
	[ -e "$g" ] || continue
	awk -v f="${g##*#}" '
	/^ *[0-9#=-]+\*?: *[0-9]+:/ { split($0, p, ":"); line = p[2] + 0; text = $0; sub(/^[^:]*:[^:]*:/, "", text) }
	/^branch +[0-9]+ (never executed|taken 0([^0-9]|$))/ && !(line in done) {
		done[line] = 1; gsub(/^[ \t]+/, "", text); printf "  %s:%d: %s\n", f, line, substr(text, 1, 90) }' "$g"
done | sed 's/\.gcov:/:/' | awk 'NR <= 60' # reads to the end: no SIGPIPE under pipefail

awk -v b="$fmt_branch" -v m="$min" 'BEGIN {
	printf "coverage.sh: format/ branch coverage %.2f%% (minimum %s%%)\n", b, m
	exit (b + 0 >= m + 0) ? 0 : 1 }'
