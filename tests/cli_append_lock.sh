#!/usr/bin/env bash
# Concurrent `alcm-pack --append` on one stream archive (spec 7.2): 8 rounds of three appenders
# started at once. Every appender must exit 0, every frame must land (the frame count grows
# by three per round, numbered 0, 1, 2, ... without gaps or repeats), and the archive must
# verify after each round. Without the lock, most rounds lose a frame silently.
# Usage: cli_append_lock.sh BIN_DIR SOURCE_DIR
set -u
B=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

"$B/alcm-make-checkpoint" "$T/ck.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$B/alcm-pack" -q "$T/ck.safetensors" -o "$T/ck.alcm" || { bad "pack"; exit 1; }
"$B/alcm-unpack" -q "$T/ck.alcm" -t layers.0.attn.proj.weight -o "$T/w.npy" || { bad "unpack"; exit 1; }
"$B/alcm-pack" -q --stream "$T/w.npy" -o "$T/s.alcm" || { bad "pack --stream"; exit 1; }

# frames FILE: the frame numbers FRAM records, one per line
frames() { "$B/alcm-inspect" --json "$1" | grep -o '"frame":[0-9]*' | cut -d: -f2; }

rounds=8 lost=0
for r in $(seq 1 $rounds); do
	pids=()
	for k in 1 2 3; do
		"$B/alcm-pack" -q --append "$T/w.npy" -o "$T/s.alcm" 2>"$T/err$k" &
		pids+=($!)
	done
	for k in 0 1 2; do
		wait "${pids[$k]}"
		rc=$?
		if [ $rc -eq 0 ]; then ok; else bad "round $r: appender $k exit $rc: $(head -c 300 "$T/err$((k + 1))")"; fi
	done
	want=$((1 + 3 * r))
	got=$(frames "$T/s.alcm" | wc -l)
	if [ "$got" -eq "$want" ]; then ok; else bad "round $r: $got frames, want $want"; lost=$((lost + 1)); fi
	if [ "$(frames "$T/s.alcm" | tr '\n' ' ')" = "$(seq 0 $((want - 1)) | tr '\n' ' ')" ]; then ok; else bad "round $r: frame numbers $(frames "$T/s.alcm" | tr '\n' ' ')"; fi
	if "$B/alcm-inspect" -q --verify "$T/s.alcm"; then ok; else bad "round $r: the archive does not verify"; fi
done
# The last frame decodes to the input, bit for bit.
"$B/alcm-unpack" -q "$T/s.alcm" -o "$T/back.npy" && cmp -s "$T/back.npy" "$T/w.npy" && ok || bad "the last frame does not decode to its input"
echo "cli_append_lock: $rounds rounds of 3 concurrent appenders, $lost rounds lost frames"

# A reader takes no lock: one that opened the archive just before an append commits must
# still read it. strace holds the reader's first read of the header for half a second while
# an append commits (the reader used to keep the size it saw at open and refuse the new
# table as running past the end of the file). LeakSanitizer cannot run under ptrace (it
# aborts the sanitizer build's reader at exit): leaks are checked everywhere else.
if command -v strace >/dev/null 2>&1; then
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	strace -o /dev/null -P "$T/s.alcm" -e trace=pread64 \
		-e inject=pread64:delay_enter=500000:when=1 \
		"$B/alcm-inspect" -q "$T/s.alcm" 2>"$T/rerr" &
	rp=$!
	sleep 0.2
	"$B/alcm-pack" -q --append "$T/w.npy" -o "$T/s.alcm" || bad "append beside a slow reader"
	if wait $rp; then ok; else bad "a reader open during an append: $(head -c 300 "$T/rerr")"; fi
else
	echo "cli_append_lock: strace not installed, the reader-during-append check skipped"
fi

# --no-wait without --append is a usage error.
"$B/alcm-pack" -q --no-wait "$T/w.npy" -o "$T/x.alcm" 2>/dev/null
rc=$?
if [ $rc -eq 2 ]; then ok; else bad "--no-wait without --append: exit $rc, want 2"; fi

echo "cli_append_lock.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
