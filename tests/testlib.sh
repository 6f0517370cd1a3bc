# Sourced by the shell tests (tests/cli_*.sh) right after `set -u`, with the script's
# arguments BIN_DIR SOURCE_DIR: B is the tools' directory, S the source tree, T a temporary
# directory removed on exit (TMPDIR points inside it, so that nothing is left elsewhere),
# and ok / bad count passed and failed checks (bad prints why).
B=$(cd "$1" && pwd)
S=$(cd "$2" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
