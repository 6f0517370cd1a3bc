#!/usr/bin/env bash
# Checkpoint series (issue 17) on real training runs: trains them once (cached), then runs
# alcm-series-bench, which prints per run the ratio of each checkpoint packed alone, of the
# series under each reference policy and of zstd -19 --patch-from on the same pairs, pack and
# unpack MB/s, decode time of every frame against decoding it packed alone, and whether the
# issue's targets hold on the Adam float32 run.
#
#   tools/bench/series_bench.sh [ROUNDS [BENCH OPTIONS]]     (default 3)
#
# Decode ratios: each frame and the same checkpoint packed alone are decoded once untimed,
# then in PAIRS pairs (--pairs, default 7), one right after the other in alternating order;
# the ratio is the median of the pairs'. Times are process CPU seconds with one decoding
# thread unless BENCH OPTIONS say --decode-threads N (0: all cores) and --wall.
#
# Runs (tools/bench/series_train.py, PyTorch on scikit-learn's digits, a CNN of 1.08M
# parameters, checkpoints every 100 optimizer steps over 2000 steps):
#   adam-f32, adam-bf16  Adam, lr 1e-3, float32 and the same run saved in bfloat16
#   sgd-f32, sgd-bf16    SGD with momentum 0.9, lr 0.05
#   finetune             the last adam-f32 checkpoint fine-tuned for 300 steps (lr 1e-4) on
#                        the digits 0-4, stored against it (alcm-pack --delta-from)
# Environment: BUILD_DIR (default build), DATA_DIR (default $BUILD_DIR/series-data).
# Needs Debian's python3-torch, python3-sklearn and zstd:
#   apt-get install -y python3-torch python3-sklearn zstd
# Output: stdout and $BUILD_DIR/bench/series.md. About 10 minutes of CPU to train, 10 to bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
shift || true
build=${BUILD_DIR:-build}
data=${DATA_DIR:-$build/series-data}
py=/usr/bin/python3

if ! $py -c 'import torch, sklearn' 2>/dev/null; then
	echo "series_bench.sh: needs Debian's python3-torch and python3-sklearn:" \
		"apt-get install -y python3-torch python3-sklearn" >&2
	exit 2
fi
command -v zstd >/dev/null || { echo "series_bench.sh: needs zstd: apt-get install -y zstd" >&2; exit 2; }

# One training run into $1 (and its bfloat16 copy into $2, or -), once.
train() {
	local dir=$1 bf=$2
	shift 2
	if [ ! -f "$dir/.done" ]; then
		echo "series_bench.sh: training $dir" >&2
		rm -rf "$dir"
		[ "$bf" = - ] || rm -rf "$bf"
		if [ "$bf" = - ]; then
			$py tools/bench/series_train.py "$dir" "$@" >&2
		else
			$py tools/bench/series_train.py "$dir" --bf16-out "$bf" "$@" >&2
			touch "$bf/.done"
		fi
		touch "$dir/.done"
	fi
}
train "$data/adam-f32" "$data/adam-bf16" --opt adam --lr 1e-3 --steps 2000 --every 100
train "$data/sgd-f32" "$data/sgd-bf16" --opt sgd --lr 0.05 --steps 2000 --every 100
train "$data/finetune" - --finetune "$data/adam-f32/ckpt_002000.safetensors" \
	--ft-steps 300 --ft-lr 1e-4

cmake --build "$build" --target alcm-series-bench -j2 >/dev/null
mkdir -p "$build/bench"
"$build/bin/alcm-series-bench" --runs "$rounds" --target adam-f32 "$@" \
	adam-f32="$data/adam-f32" adam-bf16="$data/adam-bf16" \
	sgd-f32="$data/sgd-f32" sgd-bf16="$data/sgd-bf16" \
	finetune="$data/finetune/base.safetensors+$data/finetune/finetune.safetensors" |
	tee "$build/bench/series.md"
