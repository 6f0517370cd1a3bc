#!/usr/bin/env bash
# Makes the alcm-bench bundles and checks them against manifest.txt (beside this script),
# so that every run everywhere uses the same bytes. Deterministic for a seed; the manifest
# pins seed 1.
#
# usage: tools/bench/bundles/make_bundles.sh [OPTIONS] [BUNDLE...]   (default: all five)
#   --build DIR        build directory (default: $BUILD_DIR or build); binaries in DIR/bin
#   --bin DIR          take alcm-bench and alcm-make-checkpoint from DIR instead
#   --out DIR          write bundles to DIR/<bundle>/ (default: BUILD/bundles)
#   --seed N           another seed: writes to BUILD/bundles-seedN and skips the manifest
#                      check (the bench refuses such bundles: they are for experiments)
#   --no-install       never install Debian packages, fail instead
#   --update-manifest  rewrite manifest.txt from what was made (maintainers only: when a
#                      generator or a source package changed on purpose; commit the diff)
#
# Sources (installed with apt-get when missing and running as root):
#   text_medium      /usr/share/common-licenses (base-files), /usr/share/dict (wamerican)
#   image_small      /usr/share/icons/Adwaita/48x48/legacy (adwaita-icon-theme)
#   checkpoint_small alcm-make-checkpoint --seed 7 and --seed 8 --layers 2
#   mixed_stream, gradient_stream: generated (alcm-bench --make-bundle)
#
# If a Debian package ships different files one day, the check fails loudly and says which
# file differs: the benchmark must not change quietly. Exit status: 0 all made and checked,
# 1 a bundle differs from the manifest or could not be made, 2 usage.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
manifest=$here/manifest.txt
ALL=(text_medium image_small mixed_stream checkpoint_small gradient_stream)

build=${BUILD_DIR:-build}
bin="" out="" seed=1 install=1 update=0
bundles=()
say() { printf 'make_bundles: %s\n' "$*" >&2; }
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--no-install) install=0; shift ;;
	--update-manifest) update=1; shift ;;
	-h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) say "unknown option $1 (see --help)"; exit 2 ;;
	*) bundles+=("$1"); shift ;;
	esac
done
[ ${#bundles[@]} -gt 0 ] || bundles=("${ALL[@]}")
for b in "${bundles[@]}"; do
	case " ${ALL[*]} " in *" $b "*) ;; *) say "unknown bundle '$b' (${ALL[*]})"; exit 2 ;; esac
done
case $seed in ''|*[!0-9]*) say "invalid --seed '$seed'"; exit 2 ;; esac
if [ "$seed" != 1 ] && [ $update = 1 ]; then
	say "the manifest pins seed 1: --update-manifest with --seed $seed refused"
	exit 2
fi

case $build in /*) ;; *) build=$root/$build ;; esac
bin=${bin:-$build/bin}
if [ -z "$out" ]; then
	out=$build/bundles
	[ "$seed" = 1 ] || out=$build/bundles-seed$seed
fi
case $out in /*) ;; *) out=$PWD/$out ;; esac
out=$(realpath -m "$out")
# Generated data never goes into the git tree: inside it, only under build*/ or a CMake
# build directory (one holding CMakeCache.txt).
case $out/ in
"$root"/*)
	top=${out#"$root"/}
	top=$root/${top%%/*}
	case $top in
	"$root"/build*) ;;
	*) [ -f "$top/CMakeCache.txt" ] ||
		{ say "refusing to write bundles inside the source tree: $out (use build/...)"; exit 2; } ;;
	esac ;;
esac

bench=$bin/alcm-bench
mkckpt=$bin/alcm-make-checkpoint
for x in "$bench" "$mkckpt"; do
	[ -x "$x" ] || { say "$x not found: build it first (cmake --build $build --target alcm-bench alcm-make-checkpoint)"; exit 1; }
done
command -v b2sum >/dev/null || { say "b2sum not found (coreutils)"; exit 1; }

# need PATH PACKAGE: installs PACKAGE when PATH is missing (root only, unless --no-install).
need() {
	[ -e "$1" ] && return 0
	if [ $install = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		say "installing Debian package $2 (for $1)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1 ||
			{ apt-get update >/dev/null 2>&1 &&
			  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1; }
	fi
	[ -e "$1" ] && return 0
	say "$1 is missing: install the Debian package $2 (apt-get install $2)"
	return 1
}

# check NAME DIR: every manifest line of NAME matches DIR's file (size, BLAKE2b-256), and
# DIR holds no other file.
check() {
	local name=$1 dir=$2 bad=0 listed=0 b f size digest got gotsize
	while read -r b f size digest; do
		[ "$b" = "$name" ] || continue
		listed=$((listed + 1))
		if [ ! -f "$dir/$f" ]; then
			say "$name: $f was not made"
			bad=1
			continue
		fi
		gotsize=$(stat -c %s "$dir/$f")
		got=$(b2sum -l 256 "$dir/$f" | cut -d' ' -f1)
		if [ "$gotsize" != "$size" ] || [ "$got" != "$digest" ]; then
			say "$name: $f differs from the manifest: $gotsize bytes, BLAKE2b-256 $got; expected $size bytes, $digest"
			bad=1
		fi
	done < <(grep -v '^#' "$manifest" | grep -v '^alcm-bench-manifest')
	local made
	made=$(find "$dir" -maxdepth 1 -type f | wc -l)
	if [ "$listed" = 0 ]; then
		say "$name: the manifest lists no file"
		bad=1
	elif [ "$made" != "$listed" ]; then
		say "$name: made $made files, the manifest lists $listed"
		bad=1
	fi
	return $bad
}

# lines NAME DIR: manifest lines for what DIR holds.
lines() {
	local f
	for f in $(cd "$2" && LC_ALL=C ls); do
		printf '%s %s %s %s\n' "$1" "$f" "$(stat -c %s "$2/$f")" "$(b2sum -l 256 "$2/$f" | cut -d' ' -f1)"
	done
}

mkdir -p "$out" || exit 1
rc=0
newlines=""
for name in "${bundles[@]}"; do
	tmp=$out/.$name.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	ok=1
	case $name in
	text_medium)
		need /usr/share/common-licenses/GPL-3 base-files && need /usr/share/dict/american-english wamerican || ok=0 ;;
	image_small)
		need /usr/share/icons/Adwaita/48x48/legacy adwaita-icon-theme || ok=0 ;;
	esac
	if [ $ok = 1 ]; then
		case $name in
		checkpoint_small)
			"$mkckpt" --seed $((seed + 6)) "$tmp/ckpt.safetensors" >/dev/null 2>&1 &&
				"$mkckpt" --seed $((seed + 7)) --layers 2 "$tmp/ckpt_fp32.npz" >/dev/null 2>&1 || ok=0 ;;
		*)
			"$bench" --make-bundle "$name" --out "$tmp" --seed "$seed" || ok=0 ;;
		esac
	fi
	if [ $ok = 0 ]; then
		say "$name: could not be made"
		rm -rf "$tmp"
		rc=1
		continue
	fi
	if [ $update = 1 ]; then
		newlines+=$(lines "$name" "$tmp")$'\n'
	elif [ "$seed" = 1 ] && ! check "$name" "$tmp"; then
		say "$name: refused (see tools/bench/bundles/README.md, 'When the manifest check fails')"
		rm -rf "$tmp"
		rc=1
		continue
	fi
	rm -rf "${out:?}/$name"
	mv "$tmp" "$out/$name"
	say "$name: $(find "$out/$name" -type f | wc -l) files, $(du -sk "$out/$name" | cut -f1) kB in $out/$name"
done

if [ $update = 1 ] && [ $rc = 0 ]; then
	keep=$(grep -v '^#' "$manifest" | grep -v '^alcm-bench-manifest' | grep -v '^$' || true)
	for name in "${bundles[@]}"; do
		keep=$(printf '%s\n' "$keep" | awk -v n="$name" '$1 != n')
	done
	{
		grep '^#' "$manifest"
		echo "alcm-bench-manifest 1"
		for name in "${ALL[@]}"; do
			printf '%s\n%s' "$keep" "$newlines" | awk -v n="$name" '$1 == n'
		done
	} >"$manifest.new" && mv "$manifest.new" "$manifest"
	say "rewrote $manifest: review and commit the diff"
fi
[ "$seed" = 1 ] && cp "$manifest" "$out/manifest.txt"
exit $rc
