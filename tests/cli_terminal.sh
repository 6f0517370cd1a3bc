#!/usr/bin/env bash
# Binary output never goes to a terminal by accident (zstd's rule): `alcm-pack X -o -` and
# `alcm-unpack X.alcm -o - -F safetensors` on a terminal are refused (exit 2, nothing written), and
# -f writes anyway. script(1) gives the tools a terminal.
# Usage: cli_terminal.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
if ! command -v script >/dev/null; then
	echo "cli_terminal: no script(1): skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
"$bin/alcm-make-checkpoint" -f "$tmp/c.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$bin/alcm-pack" -q "$tmp/c.safetensors" -o "$tmp/c.alcm" || bad "pack"
# tty CMD: runs CMD on a terminal; prints its exit status and the bytes it drew
tty() {
	script -qec "$1; echo \"rc=\$?\"" "$tmp/tty.txt" >/dev/null 2>&1
	grep -ao 'rc=[0-9]*' "$tmp/tty.txt" | tail -1 | cut -d= -f2
}
for t in "'$bin/alcm-pack' '$tmp/c.safetensors' -o -" "'$bin/alcm-unpack' '$tmp/c.alcm' -o - -F safetensors"; do
	rc=$(tty "$t")
	if [ "$rc" = 2 ] && [ "$(wc -c <"$tmp/tty.txt")" -lt 2000 ]; then ok; else
		bad "on a terminal: exit $rc, $(wc -c <"$tmp/tty.txt") bytes drawn: $t"; fi
	rc=$(tty "$t -f")
	if [ "$rc" = 0 ] && [ "$(wc -c <"$tmp/tty.txt")" -gt 10000 ]; then ok; else
		bad "with -f on a terminal: exit $rc: $t"; fi
done
echo "cli_terminal.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
