#!/usr/bin/env bash
# The isolated HDF5 reader process (ALCM_H5_ISOLATE, the tools' default) dies with its
# parent and carries its own CPU-time limit. tests/data/libhdf5-loops.h5 makes libhdf5 1.10
# loop forever; alcm-pack is killed while its reader child spins on it:
# - SIGKILL, and SIGTERM to the parent's pid only (as a job scheduler sends): the child
#   must be gone (or a zombie) within 2 s; before, it was orphaned and spun at 100% CPU;
# - the child's RLIMIT_CPU is set (600 s by default, ALCM_H5_TIMEOUT + 1 s per 4 MiB);
# - with the parent stopped (SIGSTOP, so its own silence timeout cannot fire), the child
#   stops at its CPU limit, and the parent, continued, reports it: exit 6, no output.
# Usage: cli_h5child.sh BIN_DIR SOURCE_DIR
set -u
B=$1
S=${2:-.}
T=$(mktemp -d)
loops=$S/tests/data/libhdf5-loops.h5
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
if [ ! -x "$B/test_hdf5" ] || [ ! -f "$loops" ]; then
	echo "cli_h5child: no HDF5 build or no $loops: skipped"
	exit 0
fi
# A private copy: cli_hdf5.sh, which may run at the same time, looks for processes reading
# the original by name.
cp "$loops" "$T/loops.h5"
loops=$T/loops.h5
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# child_of PID: the reader process of alcm-pack PID (waits up to 3 s for it)
child_of() {
	local c="" i
	for i in $(seq 1 30); do
		c=$(pgrep -P "$1" | head -1)
		[ -n "$c" ] && break
		sleep 0.1
	done
	echo "$c"
}
# gone PID: the process no longer runs (absent, or a zombie waiting for init)
gone() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)
	[ -z "$st" ] || [ "$st" = Z ]
}

for sig in KILL TERM; do
	"$B/alcm-pack" -q "$loops" -o "$T/x.alcm" 2>/dev/null &
	p=$!
	c=$(child_of $p)
	if [ -z "$c" ]; then
		echo "cli_h5child: no reader process (libhdf5 does not loop on the file here?): skipped"
		exit 0
	fi
	pids+=("$c")
	sleep 0.5
	if gone "$c"; then
		echo "cli_h5child: the reader process ended by itself (libhdf5 does not loop here): skipped"
		exit 0
	fi
	if [ $sig = KILL ]; then
		lim=$(awk '/^Max cpu time/ {print $4}' "/proc/$c/limits")
		if [ "$lim" = 600 ]; then ok; else bad "the reader's CPU-time limit is '$lim', want 600"; fi
	fi
	kill -$sig $p
	wait $p 2>/dev/null
	for i in $(seq 1 20); do gone "$c" && break; sleep 0.1; done
	if gone "$c"; then ok; else bad "SIG$sig to alcm-pack: its reader process $c still runs: $(ps -o pid,ppid,stat,time -p "$c" | tail -1)"; fi
	kill -KILL "$c" 2>/dev/null
	[ -e "$T/x.alcm" ] && bad "SIG$sig: output published" || ok
done

# RLIMIT_CPU alone: the parent is stopped, so only the child's own limit can end it.
ALCM_H5_TIMEOUT=2 "$B/alcm-pack" "$loops" -o "$T/y.alcm" 2>"$T/err" &
p=$!
c=$(child_of $p)
pids+=("$c" "$p")
kill -STOP $p
# 2 s of CPU time; on a loaded machine that can take much longer in wall time
for i in $(seq 1 600); do gone "$c" && break; sleep 0.1; done
if gone "$c"; then ok; else bad "the reader process outlived its CPU-time limit (2 s of CPU in 60 s)"; fi
kill -CONT $p
wait $p
rc=$?
if [ $rc -eq 6 ]; then ok; else bad "CPU limit: exit $rc, want 6: $(head -c 300 "$T/err")"; fi
if grep -q "CPU time\|no answer" "$T/err"; then ok; else bad "CPU limit: the message does not say why: $(head -c 300 "$T/err")"; fi
[ -e "$T/y.alcm" ] && bad "CPU limit: output published" || ok

echo "cli_h5child.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
