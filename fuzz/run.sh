#!/usr/bin/env bash
# Runs every libFuzzer harness for a fixed time, one after the other, one core each.
#
#   fuzz/run.sh SECONDS [SURFACE...]     e.g. fuzz/run.sh 25 (CI: 8 harnesses, ~3.5 minutes)
#
# Builds build-fuzz/ with clang (-DALCM_BUILD_FUZZERS=ON) when needed. Each harness fuzzes
# its working corpus build-fuzz/corpus/<surface>/ (seeded from fuzz/corpus/ and
# fuzz/regression/, kept between runs so that long runs accumulate); the source tree is
# never written except that a new crasher is copied to fuzz/regression/<surface>/ under a
# descriptive name, to be committed with its fix. Prints, per harness, the executions, the
# time and the crashes, and exits 1 if any harness crashed.
#
# Environment: FUZZ_BUILD (default build-fuzz), FUZZ_KEEP_GOING=1 (fork mode: carry on
# after a crash, to collect several), FUZZ_MINIMIZE=1 (minimize each new crasher),
# FUZZ_JOBS=N (run N harnesses at once; default 1).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: fuzz/run.sh SECONDS [SURFACE...]}
shift
build=${FUZZ_BUILD:-build-fuzz}

if [ ! -f "$build/CMakeCache.txt" ]; then
	CC=${CC:-clang} cmake -S . -B "$build" -DALCM_BUILD_FUZZERS=ON -DALCM_BUILD_TESTS=OFF \
		-DALCM_BUILD_TOOLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
fi
# Only the harnesses: a broken unrelated target must not stop the fuzzing.
targets=$(cmake --build "$build" --target help 2>/dev/null | sed -n 's/^\.\.\. \(fuzz_[a-z0-9]*\)$/\1/p' | grep -v fuzz_fixup_check | sort -u)
[ -n "$targets" ] || { echo "fuzz/run.sh: no fuzz targets in $build" >&2; exit 2; }
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target $targets >"$build/build.log" 2>&1 ||
	{ tail -30 "$build/build.log"; exit 2; }

surfaces=("$@")
if [ ${#surfaces[@]} -eq 0 ]; then
	for s in container unpack npy npz safetensors pt hdf5 roundtrip tframe diff; do
		[ -x "$build/bin/fuzz_$s" ] && surfaces+=("$s")
	done
fi

max_len() {
	case $1 in
	npy|safetensors) echo 4096 ;;
	npz|pt) echo 8192 ;;
	*) echo 16384 ;;
	esac
}

# A file name saying what broke: sanitizer error and function, or the harness's message.
describe() {
	local log=$1 kind=$2 what=
	local sum
	sum=$(grep -m1 -E '^SUMMARY: [A-Za-z]+Sanitizer: ' "$log")
	if [ -n "$sum" ]; then
		# "SUMMARY: AddressSanitizer: heap-buffer-overflow /x/y.c:12:3 in func"
		what=$(echo "$sum" | awk '{ k = $3; loc = $4; fn = ($5 == "in" && $6 != "") ? $6 : "";
			sub(/.*\//, "", loc); sub(/:[0-9]+$/, "", loc); gsub(/:/, "-", loc);
			print k (fn != "" ? "-" fn : (loc != "" ? "-" loc : "")) }')
	fi
	[ -z "$what" ] && what=$(grep -m1 -oE '^fuzz: [a-z0-9]+: [^(:%]{1,60}' "$log" |
		sed -E 's/^fuzz: [a-z0-9]+: //')
	[ -z "$what" ] && what=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+' "$log" | sed 's/.*: //')
	[ -z "$what" ] && what=$kind
	echo "$what" | tr -c 'A-Za-z0-9_.\n-' '-' | tr -s '-' | cut -c1-60
}

# 1 if the first frame of the log's stack that is neither a sanitizer interceptor nor libc
# lies in libhdf5: a bug of libhdf5 itself (alcm_hdf5.h, "Security"), not of alcm.
in_libhdf5() {
	awk '/^ +#[0-9]+ / {
		if ($0 ~ /__interceptor_|__asan_|__sanitizer|fuzzer::|in (malloc|calloc|realloc|free|operator new)|libc\.so|sysdeps\/|string\//) next
		print ($0 ~ /libhdf5/) ? "1" : "0"; found = 1; exit }
		END { if (!found) print "0" }' "$1"
}

run_one() {
	local s=$1 exe="$build/bin/fuzz_$1" work="$build/corpus/$1" art="$build/artifacts/$1/"
	local log="$build/logs/$1.log"
	mkdir -p "$work" "$art" "$build/logs" "fuzz/regression/$s"
	local extra=() asan=${ASAN_OPTIONS:-detect_leaks=1}
	# libhdf5 crashes on hostile files within seconds (heap overflows in its object
	# header code, huge allocations from sizes it reads): fork mode carries on after
	# them, and a huge malloc returns NULL to libhdf5 as it would without ASan.
	[ "$s" = hdf5 ] && asan="$asan:allocator_may_return_null=1"
	# With ALCM_FUZZ_H5_ISOLATE=1 libhdf5 runs in the bridge's child, a fork of this process
	# that inherits libFuzzer's malloc hook: a huge allocation libhdf5 attempts there (and
	# gets NULL for) must not be reported as this harness's out-of-memory.
	local mlimit=512
	[ "$s" = hdf5 ] && [ "${ALCM_FUZZ_H5_ISOLATE:-0}" = 1 ] && mlimit=1048576
	# libhdf5 loops forever on some files: the isolated reader is stopped well before
	# libFuzzer's own 10 s timeout would report the harness as hung.
	export ALCM_H5_TIMEOUT=${ALCM_H5_TIMEOUT:-3}
	if [ "${FUZZ_KEEP_GOING:-0}" = 1 ] || [ "$s" = hdf5 ]; then
		extra=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
	fi
	local lsan=${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}
	local ubsan=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	local t0 t1
	t0=$(date +%s)
	ASAN_OPTIONS=$asan UBSAN_OPTIONS=$ubsan LSAN_OPTIONS=$lsan \
	"$exe" -max_total_time="$secs" -max_len="$(max_len "$s")" -dict=fuzz/alcm.dict \
		-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=$mlimit -print_final_stats=1 \
		-artifact_prefix="$art" "${extra[@]}" \
		"$work" "fuzz/corpus/$s" "fuzz/regression/$s" >"$log" 2>&1
	local rc=$?
	t1=$(date +%s)
	local execs
	execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
	[ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
	local crashes=0 third=0 f name kind
	for f in "$art"*; do
		kind=${f##*/}
		[[ $kind =~ ^(crash|leak|timeout|oom)-[0-9a-f]{40}$ ]] || continue
		kind=${kind%%-*}
		if [ "${FUZZ_MINIMIZE:-0}" = 1 ]; then
			ASAN_OPTIONS=$asan LSAN_OPTIONS=$lsan "$exe" -minimize_crash=1 -max_total_time=60 \
				-runs=100000 -exact_artifact_path="$f.min" "$f" >"$f.minlog" 2>&1 &&
				[ -s "$f.min" ] && mv "$f.min" "$f"
		fi
		ASAN_OPTIONS=$asan UBSAN_OPTIONS=$ubsan LSAN_OPTIONS=$lsan \
			"$exe" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=$mlimit "$f" >"$f.log" 2>&1
		if [ "$(in_libhdf5 "$f.log")" = 1 ]; then
			third=$((third + 1))
			mkdir -p "$art/libhdf5"
			mv "$f" "$f.log" "$art/libhdf5/"
			continue
		fi
		crashes=$((crashes + 1))
		local sum known=""
		sum=$(sha1sum <"$f" | cut -c1-40)
		for r in fuzz/regression/"$s"/*; do
			[ -f "$r" ] && [ "$(sha1sum <"$r" | cut -c1-40)" = "$sum" ] && known=$r && break
		done
		if [ -n "$known" ]; then
			echo "  still fails: $known (log: $f.log)"
		else
			name="$kind-$(describe "$f.log" "$kind")-${sum:0:8}"
			cp "$f" "fuzz/regression/$s/$name"
			echo "  new crasher: fuzz/regression/$s/$name (log: $f.log)"
		fi
		mv "$f" "$f.seen"
	done
	# Died without an artifact (and not in fork mode, which reports crashes it ignored).
	[ $rc -ne 0 ] && [ $crashes -eq 0 ] && [ ${#extra[@]} -eq 0 ] && crashes=1
	printf '%-12s %10s execs %5d s %8s exec/s  corpus %5d  crashes %d' "$s" "${execs:-?}" \
		$((t1 - t0)) "$(( ${execs:-0} / ( t1 > t0 ? t1 - t0 : 1 ) ))" \
		"$(ls "$work" | wc -l)" "$crashes"
	[ $third -gt 0 ] && printf '  (+%d in libhdf5 itself: %s)' $third "$art"libhdf5/
	printf '\n'
	[ $crashes -eq 0 ]
}

echo "fuzz/run.sh: ${#surfaces[@]} harnesses, $secs s each (logs in $build/logs/)"
status=0
jobs=${FUZZ_JOBS:-1}
if [ "$jobs" -le 1 ]; then
	for s in "${surfaces[@]}"; do
		run_one "$s" || status=1
	done
else
	pids=()
	for s in "${surfaces[@]}"; do
		run_one "$s" &
		pids+=($!)
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
	done
	for p in "${pids[@]}"; do wait "$p" || status=1; done
fi
[ $status -eq 0 ] && echo "fuzz/run.sh: no crash" || echo "fuzz/run.sh: CRASHES FOUND (see above)"
exit $status
