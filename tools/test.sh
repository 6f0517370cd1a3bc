#!/usr/bin/env bash
# The test command of README.md: installs what is missing, then builds and runs every test
# twice, in a plain -Werror release build (NDEBUG) and under ASan+UBSan; then runs each
# libFuzzer harness for a short fixed time and prints the coverage of format/ and lib/io/.
# The Python package's tests are ctest tests too (python_pytest, python_pip_wheel): under
# ASan+UBSan pytest runs with the sanitizer runtimes preloaded into /usr/bin/python3 and
# without torch (python/CMakeLists.txt says why).
# ALCM_FUZZ_SECONDS (default 20) sets the fuzzing time per harness; 0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash tools/setup.sh
echo "== plain build (-Wall -Wextra -Werror, -DNDEBUG)"
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DALCM_WERROR=ON -DALCM_SANITIZE=address,undefined,float-cast-overflow \
	-DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --output-on-failure -j"$(nproc)")

secs=${ALCM_FUZZ_SECONDS:-20}
if [ "$secs" -gt 0 ]; then
	# The HDF5 harness runs libhdf5 in the bridge's child process here (as the tools do):
	# bugs inside libhdf5 itself (spec 6.6.14) end that child, and what is fuzzed is the
	# parent's side that checks every answer again. `fuzz/run.sh SECONDS hdf5` without the
	# variable fuzzes libhdf5 in process and sorts its own crashes apart.
	# One harness per core at a time: each still fuzzes `secs` seconds on a core of its own.
	echo "== fuzzing, ${secs} s per harness"
	ALCM_FUZZ_H5_ISOLATE=1 FUZZ_JOBS="${FUZZ_JOBS:-$(nproc)}" \
		bash fuzz/run.sh "$secs" container unpack npy npz safetensors pt hdf5 roundtrip tframe diff
fi

echo "== coverage (gcc --coverage, every ctest test and corpus replay)"
bash tools/coverage.sh

echo "tools/test.sh: all tests passed in $(( $(date +%s) - start )) s"
