#!/usr/bin/env bash
# alcm-pack interrupted or starved: SIGINT and SIGTERM remove the temporary file and leave
# the target absent (or the old file when -f replaces one); SIGKILL at random points never
# leaves a broken target; a full disk (file-size limit, and a small tmpfs when one can be
# mounted) gives exit 3 naming the file and no partial output.
# Usage: cli_faults.sh BIN_DIR SOURCE_DIR
set -u
B=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
note() { echo "cli_faults: $*"; }
# temps DIR NAME: temporary files of NAME (".NAME.XXXXXX") left in DIR
temps() { find "$1" -maxdepth 1 -name ".$2.??????" | wc -l; }
ms() { echo $(($(date +%s%N) / 1000000)); }

"$B/alcm-make-checkpoint" --layers 32 "$T/big.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$B/alcm-make-checkpoint" "$T/small.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$B/alcm-make-checkpoint" --seed 2 "$T/other.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$B/alcm-pack" -q "$T/other.safetensors" -o "$T/old.alcm" || { bad "pack old.alcm"; exit 1; }

# ---- SIGINT / SIGTERM: the handler removes the temporary file -----------------------
# Slow enough to be caught in the middle: one thread, zstd level 19, 17 MB.
interrupt() {
	local sig=$1 target=$2 force=$3
	local dir=${target%/*} name=${target##*/}
	"$B/alcm-pack" -q -T 1 -l 19 $force "$T/big.safetensors" -o "$target" 2>"$T/err" &
	local pid=$! waited=0
	# Signal once the temporary file exists: the pack is then surely under way.
	while [ "$(temps "$dir" "$name")" -eq 0 ] && [ $waited -lt 500 ] && kill -0 $pid 2>/dev/null; do
		sleep 0.01
		waited=$((waited + 1))
	done
	sleep 0.2
	kill -s "$sig" $pid 2>/dev/null
	wait $pid
	local rc=$?
	if [ $rc -eq 0 ]; then
		note "alcm-pack finished before SIG$sig arrived; case inconclusive"
		return 1
	fi
	local want=$((128 + $(kill -l "$sig")))
	if [ $rc -eq $want ]; then ok; else bad "SIG$sig: exit $rc, want $want: $(head -c 300 "$T/err")"; fi
	if [ "$(temps "$dir" "$name")" -eq 0 ]; then ok; else bad "SIG$sig left a temporary file of $name"; fi
	return 0
}
for sig in INT TERM; do
	rm -f "$T/new.alcm"
	if interrupt $sig "$T/new.alcm" ""; then
		if [ ! -e "$T/new.alcm" ]; then ok; else bad "SIG$sig: a partial new.alcm was published"; fi
	fi
	cp "$T/old.alcm" "$T/replace.alcm"
	if interrupt $sig "$T/replace.alcm" -f; then
		if cmp -s "$T/old.alcm" "$T/replace.alcm"; then ok; else bad "SIG$sig: the old file was replaced or damaged"; fi
	fi
done

# ---- SIGKILL at random points: the target is absent, the old file or the new one ----
# SIGKILL cannot be caught, so its temporary file stays (removed here); only the target
# counts. The pack of small.safetensors is timed first and the kills spread over 1.3x it.
level=15
"$B/alcm-pack" -q -T 1 -l $level "$T/small.safetensors" -o "$T/ref.alcm" || bad "reference pack"
t0=$(ms)
"$B/alcm-pack" -q -T 1 -l $level -f "$T/small.safetensors" -o "$T/ref.alcm"
span=$(( ($(ms) - t0) * 13 / 10 + 1 ))
RANDOM=$$
absent=0 old=0 new=0
for i in $(seq 1 20); do
	for force in "" -f; do
		if [ -n "$force" ]; then cp "$T/old.alcm" "$T/k.alcm"; else rm -f "$T/k.alcm"; fi
		"$B/alcm-pack" -q -T 1 -l $level $force "$T/small.safetensors" -o "$T/k.alcm" 2>/dev/null &
		pid=$!
		d=$((RANDOM % span))
		sleep "$(printf '0.%03d' $((d % 1000)))" 2>/dev/null
		[ $d -ge 1000 ] && sleep $((d / 1000))
		kill -KILL $pid 2>/dev/null
		wait $pid 2>/dev/null
		if [ ! -e "$T/k.alcm" ]; then
			if [ -z "$force" ]; then ok; absent=$((absent + 1)); else bad "kill $i: -f lost the old file"; fi
		elif cmp -s "$T/k.alcm" "$T/old.alcm"; then
			ok; old=$((old + 1))
		elif cmp -s "$T/k.alcm" "$T/ref.alcm" && "$B/alcm-inspect" -q --verify "$T/k.alcm"; then
			ok; new=$((new + 1))
		else
			bad "kill $i ($force): the target is neither absent, the old file nor the complete new one"
		fi
		find "$T" -maxdepth 1 -name '.k.alcm.??????' -delete
	done
done
note "SIGKILL x40 over ${span} ms: target absent $absent, old $old, complete new $new"

# ---- full disk ------------------------------------------------------------------------
# A file-size limit: writes past it are short, then fail with EFBIG (SIGXFSZ ignored, as
# a shell does with trap '' XFSZ).
full_disk() { # full_disk LABEL DIR CMD_PREFIX...
	local label=$1 dir=$2
	shift 2
	rm -f "$dir/full.alcm"
	"$@" "$B/alcm-pack" -T 1 "$T/big.safetensors" -o "$dir/full.alcm" >"$T/out" 2>"$T/err"
	local rc=$?
	if [ $rc -eq 3 ]; then ok; else bad "$label: exit $rc, want 3 (i/o): $(head -c 300 "$T/err")"; fi
	if grep -q "full.alcm" "$T/err"; then ok; else bad "$label: the message does not name the file: $(head -c 300 "$T/err")"; fi
	if [ ! -e "$dir/full.alcm" ]; then ok; else bad "$label: partial output published"; fi
	if [ "$(temps "$dir" full.alcm)" -eq 0 ]; then ok; else bad "$label: temporary file left"; fi
	cp "$T/old.alcm" "$dir/keep.alcm"
	"$@" "$B/alcm-pack" -q -f -T 1 "$T/big.safetensors" -o "$dir/keep.alcm" 2>/dev/null
	rc=$?
	if [ $rc -eq 3 ] && cmp -s "$T/old.alcm" "$dir/keep.alcm"; then ok; else bad "$label: -f over an existing file: exit $rc or the file changed"; fi
	if [ "$(temps "$dir" keep.alcm)" -eq 0 ]; then ok; else bad "$label: temporary file of keep.alcm left"; fi
}
limited() { (trap '' XFSZ; ulimit -f 1024; exec "$@"); }
full_disk "ulimit -f 1024 (SIGXFSZ ignored)" "$T" limited
# Without the trap the kernel sends SIGXFSZ, whose default action kills the process: the
# CLI must ignore it so that the write fails and the usual error path cleans up.
limited_default() { (ulimit -f 1024; exec "$@"); }
full_disk "ulimit -f 1024 (SIGXFSZ default)" "$T" limited_default

# A real ENOSPC: a 1 MiB tmpfs in a private mount namespace, when this host allows one.
mkdir -p "$T/tmpfs"
if unshare -m true 2>/dev/null || unshare -Urm true 2>/dev/null; then
	uflags=-m
	unshare -m true 2>/dev/null || uflags=-Urm
	cat >"$T/enospc.sh" <<-'EOF'
	set -u
	B=$1 T=$2
	mount -t tmpfs -o size=1m tmpfs "$T/tmpfs" || exit 77
	"$B/alcm-pack" -T 1 "$T/big.safetensors" -o "$T/tmpfs/full.alcm" >/dev/null 2>"$T/err"
	rc=$?
	echo "$rc $(find "$T/tmpfs" -maxdepth 1 -name '.full.alcm.??????' | wc -l) $(test -e "$T/tmpfs/full.alcm" && echo published || echo absent)"
	EOF
	res=$(unshare $uflags bash "$T/enospc.sh" "$B" "$T")
	urc=$?
	if [ $urc -eq 77 ]; then
		note "cannot mount a tmpfs: ENOSPC case skipped"
	else
		if [ "$res" = "3 0 absent" ]; then ok; else bad "tmpfs full: got '$res' (want exit 3, no temp file, absent): $(head -c 300 "$T/err")"; fi
		if grep -q "full.alcm" "$T/err"; then ok; else bad "tmpfs full: the message does not name the file"; fi
	fi
else
	note "no private mount namespace here: ENOSPC case skipped"
fi

echo "cli_faults.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
