#!/usr/bin/env bash
# Installs the Debian 12 packages alcm needs (when missing) and builds into build/.
# Usage: tools/setup.sh [extra cmake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config libzstd-dev libsodium-dev zlib1g-dev libdeflate-dev libhdf5-dev
      hdf5-tools libcmocka-dev libzfp-dev clang groff-base strace time zstd
      python3-dev python3-numpy python3-pytest python3-pip python3-torch
      libhdf5-openmpi-dev openmpi-bin python3-h5py python3-h5py-mpi python3-mpi4py)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	sudo_cmd=()
	[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]}" apt-get update -qq
	"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B build -DALCM_WERROR=ON "$@" >/dev/null
cmake --build build -j"$(nproc)"
