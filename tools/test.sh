#!/usr/bin/env bash
# The test command of README.md: installs what is missing, then builds and runs every test
# twice, in a plain -Werror release build (NDEBUG) and under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash tools/setup.sh
echo "== plain build (-Wall -Wextra -Werror, -DNDEBUG)"
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DALCM_WERROR=ON -DALCM_SANITIZE=address,undefined \
	-DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --output-on-failure -j"$(nproc)")

echo "tools/test.sh: all tests passed in $(( $(date +%s) - start )) s"
