#!/usr/bin/env bash
# kill -9 at random points of every kind of output the tools write (.alcm new and over an old
# file, --append, .npz, .npy, .safetensors, .h5, key pairs): nothing may be left in the
# output's directory but the target (absent, the old file or the complete new one). On Linux
# outputs are unnamed (O_TMPFILE) until committed; only the instant between linking them to
# a temporary name and renaming that over an old file (-f) can leave a name behind, so at
# most one leftover is tolerated per case. The old build left a temporary file in about half
# of the runs.
# Usage: cli_killtemp.sh BIN_DIR SOURCE_DIR [KILLS_PER_CASE]
set -u
B=$1
K=${3:-8}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
ms() { echo $(($(date +%s%N) / 1000000)); }
RANDOM=$$

"$B/alcm-make-checkpoint" "$T/ck.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$B/alcm-pack" -q "$T/ck.safetensors" -o "$T/ck.alcm" || { bad "pack"; exit 1; }
# float32 only, for the numpy outputs (the checkpoint has bfloat16 tensors)
"$B/alcm-unpack" -q "$T/ck.alcm" -t embed.weight -t layers.0.attn.qkv.weight \
	-t layers.1.attn.qkv.weight -o "$T/f32.npz" || { bad "unpack f32"; exit 1; }
"$B/alcm-pack" -q "$T/f32.npz" -o "$T/f32.alcm" || { bad "pack f32"; exit 1; }
# old files that -f replaces, different from any new output
"$B/alcm-unpack" -q "$T/ck.alcm" -t final_norm.weight -o "$T/old.npz" || { bad "unpack old"; exit 1; }
"$B/alcm-pack" -q --stream "$T/f32.npz" -o "$T/stream.alcm" || { bad "pack --stream"; exit 1; }
have_h5=0
"$B/alcm-unpack" -q "$T/ck.alcm" -t final_norm.weight -o "$T/old.h5" 2>/dev/null && have_h5=1

# same_output FILE COMPLETE: FILE is the complete output. .h5 files carry object times
# (libhdf5's default), so they are compared by size and by libhdf5 reading them whole.
same_output() {
	case $1 in
	*.h5) [ "$(stat -c %s "$1")" = "$(stat -c %s "$2")" ] &&
		{ ! command -v h5dump >/dev/null || h5dump "$1" >/dev/null 2>&1; } ;;
	*) cmp -s "$1" "$2" ;;
	esac
}

# run_kills LABEL TARGET OLD_OR_EMPTY CMD...: K runs of CMD killed at random points spread
# over 1.3x its duration. OLD_OR_EMPTY: a file copied to TARGET before each run (-f cases).
run_kills() {
	local label=$1 target=$2 old=$3
	shift 3
	local dir=${target%/*}
	rm -rf "$dir"
	mkdir -p "$dir"
	[ -n "$old" ] && cp "$old" "$target"
	local t0 span
	t0=$(ms)
	"$@" >/dev/null 2>&1 || { bad "$label: the command fails without a kill"; return; }
	span=$(( ($(ms) - t0) * 13 / 10 + 1 ))
	cp "$target" "$T/complete"
	local left=0 absent=0 kept=0 done_=0
	for i in $(seq 1 "$K"); do
		rm -rf "$dir"
		mkdir -p "$dir"
		[ -n "$old" ] && cp "$old" "$target"
		"$@" >/dev/null 2>&1 &
		local pid=$! d=$((RANDOM % span))
		sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
		kill -KILL $pid 2>/dev/null
		wait $pid 2>/dev/null
		# everything in the directory but the target is a leftover
		local extra
		extra=$(find "$dir" -mindepth 1 -maxdepth 1 ! -name "${target##*/}" | wc -l)
		left=$((left + extra))
		if [ ! -e "$target" ]; then absent=$((absent + 1))
		elif [ -n "$old" ] && cmp -s "$target" "$old"; then kept=$((kept + 1))
		elif same_output "$target" "$T/complete"; then done_=$((done_ + 1))
		else bad "$label: kill $i left a target that is neither absent, the old file nor the complete new one"; fi
	done
	echo "cli_killtemp: $label: $K kills over ${span} ms: $left leftovers; target absent $absent, old $kept, new $done_"
	if [ "$left" -le $([ -n "$old" ] && echo 1 || echo 0) ]; then ok; else bad "$label: $left files left behind in $K kills"; fi
}

run_kills "pack .alcm" "$T/o1/x.alcm" "" "$B/alcm-pack" -q -T 1 -l 6 "$T/ck.safetensors" -o "$T/o1/x.alcm"
run_kills "pack -f .alcm" "$T/o2/x.alcm" "$T/f32.alcm" "$B/alcm-pack" -q -f -T 1 -l 6 "$T/ck.safetensors" -o "$T/o2/x.alcm"
for ext in npz npy safetensors; do
	sel=""
	[ $ext = npy ] && sel="-t embed.weight"
	run_kills "unpack .$ext" "$T/u-$ext/x.$ext" "" "$B/alcm-unpack" -q -T 1 $sel "$T/f32.alcm" -o "$T/u-$ext/x.$ext"
done
run_kills "unpack -f .npz" "$T/uf/x.npz" "$T/old.npz" "$B/alcm-unpack" -q -f -T 1 "$T/f32.alcm" -o "$T/uf/x.npz"
if [ $have_h5 -eq 1 ]; then
	run_kills "unpack .h5" "$T/h/x.h5" "" "$B/alcm-unpack" -q -T 1 "$T/f32.alcm" -o "$T/h/x.h5"
	run_kills "unpack -f .h5" "$T/hf/x.h5" "$T/old.h5" "$B/alcm-unpack" -q -f -T 1 "$T/f32.alcm" -o "$T/hf/x.h5"
fi

# Key pairs. alcm-keygen gives both files hidden names, then renames them into place one
# right after the other (k.key first). Every kill must leave one of: the old pair (or none),
# the new pair, or, killed during the first rename, the new k.key beside the old k.pub (or
# alone) with its own public key under the hidden name ".k.pub.XXXXXX" beside it, from which
# the pair can be finished. A kill in the microseconds between naming the files and the
# first rename leaves the old pair with up to two hidden names (counted, tolerated once).
# Nothing else may be left.
hexof() { cut -d' ' -f2 "$1" | tr -d '\n'; }
keygen_kills() { # LABEL FORCE
	local label=$1 force=$2 t0 span whole=0 none=0 torn=0 broken=0 staged=0
	mkdir -p "$T/k"
	rm -f "$T/k/"*
	t0=$(ms)
	"$B/alcm-keygen" "$T/k/k" 2>/dev/null || bad "$label: keygen without a kill"
	span=$(( ($(ms) - t0) * 13 / 10 + 1 ))
	for i in $(seq 1 "$K"); do
		rm -rf "$T/k"
		mkdir -p "$T/k"
		[ -n "$force" ] && "$B/alcm-keygen" "$T/k/k" 2>/dev/null
		"$B/alcm-keygen" $force "$T/k/k" 2>/dev/null &
		local pid=$! d=$((RANDOM % span))
		sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
		kill -KILL $pid 2>/dev/null
		wait $pid 2>/dev/null
		local sk="" pk="" hidden=() others
		[ -e "$T/k/k.key" ] && sk=$(hexof "$T/k/k.key")
		[ -e "$T/k/k.pub" ] && pk=$(hexof "$T/k/k.pub")
		mapfile -t hidden < <(find "$T/k" -mindepth 1 -maxdepth 1 -name '.k.*.??????')
		others=$(find "$T/k" -mindepth 1 -maxdepth 1 ! -name k.key ! -name k.pub ! -name '.k.*.??????' | wc -l)
		if [ "$others" -ne 0 ]; then
			broken=$((broken + 1))
		elif [ -n "$sk" ] && [ "${sk:64:64}" = "$pk" ] && [ ${#hidden[@]} -eq 0 ]; then
			whole=$((whole + 1))
		elif [ -z "$sk" ] && [ -z "$pk" ] && [ ${#hidden[@]} -eq 0 ]; then
			none=$((none + 1))
		elif { [ -z "$sk$pk" ] || [ "${sk:64:64}" = "$pk" ]; } && [ ${#hidden[@]} -le 2 ]; then
			staged=$((staged + 1))
		elif [ -n "$sk" ] && [ ${#hidden[@]} -eq 1 ] && [ "${hidden[0]##*/.k.}" != "${hidden[0]##*/.k.pub.}" ] &&
			[ "$(hexof "${hidden[0]}")" = "${sk:64:64}" ]; then
			torn=$((torn + 1)) # finishable: the hidden .k.pub.* is k.key's public half
		else
			broken=$((broken + 1))
			echo "cli_killtemp: $label kill $i left: $(ls -A "$T/k" | tr '\n' ' ')" >&2
		fi
	done
	echo "cli_killtemp: $label: $K kills over ${span} ms: matching pair $whole, no pair $none, new key with its public key still hidden $torn, old pair and hidden names $staged, anything else $broken"
	if [ "$broken" -eq 0 ] && [ "$staged" -le 1 ]; then ok; else bad "$label: $broken kills left an unfinishable state, $staged left hidden names"; fi
}
keygen_kills "keygen" ""
keygen_kills "keygen -f" "-f"

# --append writes in place: a kill leaves the archive readable (the old generation or the
# new one) and nothing beside it.
mkdir -p "$T/a"
cp "$T/stream.alcm" "$T/a/s.alcm"
t0=$(ms)
"$B/alcm-pack" -q -T 1 --append "$T/f32.npz" -o "$T/a/s.alcm" || bad "append without a kill"
span=$(( ($(ms) - t0) * 13 / 10 + 1 ))
broken=0
for i in $(seq 1 "$K"); do
	"$B/alcm-pack" -q -T 1 --append "$T/f32.npz" -o "$T/a/s.alcm" 2>/dev/null &
	pid=$!
	d=$((RANDOM % span))
	sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
	kill -KILL $pid 2>/dev/null
	wait $pid 2>/dev/null
	"$B/alcm-inspect" -q --verify "$T/a/s.alcm" || broken=$((broken + 1))
done
extra=$(find "$T/a" -mindepth 1 -maxdepth 1 ! -name s.alcm | wc -l)
echo "cli_killtemp: append: $K kills over ${span} ms: $extra leftovers, $broken archives that do not verify"
if [ "$broken" -eq 0 ] && [ "$extra" -eq 0 ]; then ok; else bad "append: $broken broken, $extra leftovers"; fi
# and the next append completes
"$B/alcm-pack" -q --append "$T/f32.npz" -o "$T/a/s.alcm" && "$B/alcm-inspect" -q --verify "$T/a/s.alcm" && ok || bad "append after the kills"

echo "cli_killtemp.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
