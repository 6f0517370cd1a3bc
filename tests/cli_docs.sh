#!/usr/bin/env bash
# Documentation a user reaches from the shell: man pages render without warnings and list
# every option of --help, every installed tool has a page and answers --version, usage
# errors are short, and the bash completion offers each tool's options and files.
# Usage: cli_docs.sh BIN_DIR SOURCE_DIR
set -u
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

tools="pack unpack inspect keygen make-checkpoint train"
for t in $tools; do
	tool=alcm-$t
	page=$src/man/$tool.1
	if [ ! -f "$page" ]; then
		bad "$tool has no man page"
		continue
	fi
	ok
	warn=$(groff -ww -z -man "$page" 2>&1)
	[ -z "$warn" ] && ok || bad "$page renders with warnings: $warn"
	# Every long option of --help is in the page (--help and --version themselves aside).
	for o in $("$bin/$tool" --help | sed '/^Exit status:/,$d' | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u); do
		case $o in --help|--version) continue ;; esac
		esc=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
		if grep -qF -- "$o" "$page" || grep -q -- "$esc" "$page"; then ok; else
			bad "$tool --help lists $o but $page does not"
		fi
	done
	v=$("$bin/$tool" --version 2>&1)
	rc=$?
	[ $rc -eq 0 ] && [[ $v == "$tool "*"(format "* ]] && ok ||
		bad "$tool --version: exit $rc, '$v'"
	# A usage error: the problem, the usage line, a hint; exit 2; not the whole help.
	err=$("$bin/$tool" --no-such-option 2>&1 >/dev/null)
	rc=$?
	lines=$(printf '%s\n' "$err" | wc -l)
	if [ $rc -eq 2 ] && [ "$lines" -eq 3 ] && [[ $err == *"Try '$tool --help'"* ]] &&
		[[ $err == "$tool: "* ]]; then ok; else
		bad "$tool usage error: exit $rc, $lines lines: $err"
	fi
done

# Completion: options from --help, files by extension.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/a.alcm" "$tmp/b.npz" "$tmp/c.txt"
mkdir "$tmp/d"
comp() { # tool cword words...: prints COMPREPLY
	(cd "$tmp" && PATH="$bin:$PATH" bash -c '
		source "$0"; cw=$1; shift; COMP_WORDS=("$@"); COMP_CWORD=$cw; _alcm
		printf "%s\n" "${COMPREPLY[@]}"' "$src/tools/completion/alcm" "$@")
}
for t in $tools; do
	got=$(comp 1 "alcm-$t" --he)
	[ "$got" = "--help" ] && ok || bad "completion of alcm-$t --he gave '$got'"
done
got=$(comp 1 alcm-pack --thr)
[ "$got" = "--threads" ] && ok || bad "completion of alcm-pack --thr gave '$got'"
got=$(comp 1 alcm-unpack "" | sort | tr '\n' ' ')
[ "$got" = "a.alcm d/ " ] && ok || bad "alcm-unpack file completion gave '$got'"
got=$(comp 1 alcm-pack "" | sort | tr '\n' ' ')
[ "$got" = "b.npz d/ " ] && ok || bad "alcm-pack file completion gave '$got'"
got=$(comp 3 alcm-pack b.npz -o "" | sort | tr '\n' ' ')
[ "$got" = "a.alcm d/ " ] && ok || bad "alcm-pack -o completion gave '$got'"

echo "cli_docs: $checks checks, $fails failed"
[ $fails -eq 0 ]
