#!/usr/bin/env bash
# A full disk for every output the tools write: alcm-unpack to .h5, .npz, .npy and
# .safetensors (new, and -f over an old file), alcm-pack to a new archive and --append to a
# stream archive. Each must exit 3 with a message naming the file, never crash (alcm-unpack
# -o x.h5 died with SIGSEGV in libhdf5's exit handler), leave no temporary file, leave the
# target absent or the old file unchanged, and leave an appended archive as it was (it still
# verifies, same generation). Under a file-size limit (ulimit -f, SIGXFSZ ignored and
# default), and on a small tmpfs (a private mount namespace, when the host allows one).
# Usage: cli_fulldisk.sh BIN_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

"$B/alcm-make-checkpoint" "$T/ck.safetensors" >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$B/alcm-pack" -q "$T/ck.safetensors" -o "$T/ck.alcm" || { bad "pack"; exit 1; }
"$B/alcm-unpack" -q "$T/ck.alcm" -t embed.weight -t layers.0.attn.qkv.weight -o "$T/f32.npz" || { bad "unpack"; exit 1; }
"$B/alcm-pack" -q "$T/f32.npz" -o "$T/f32.alcm" || { bad "pack f32"; exit 1; }
"$B/alcm-unpack" -q "$T/ck.alcm" -t embed.weight -o "$T/embed.npy" || { bad "unpack embed"; exit 1; }
# 430 kB: over the file-size limit already, and fills most of the tmpfs
"$B/alcm-pack" -q --stream "$T/embed.npy" -o "$T/stream.alcm" || { bad "pack --stream"; exit 1; }
printf precious >"$T/old"
formats="npz npy safetensors"
[ -x "$B/test_hdf5" ] && formats="h5 $formats"

# The cases, run by cases.sh in DIR under whatever limit the caller set; one line per case:
# "LABEL EXIT LEFTOVERS STATE", STATE = absent, old, same (append: archive unchanged), or bad.
cat >"$T/cases.sh" <<'EOF'
B=$1 T=$2 D=$3 formats=$4
leftovers() { find "$D" -mindepth 1 -maxdepth 1 -name ".$1.*" | wc -l; }
for f in $formats; do
	sel=""
	[ $f = npy ] && sel="-t embed.weight"
	rm -f "$D/new.$f"
	"$B/alcm-unpack" -q -T 1 $sel "$T/f32.alcm" -o "$D/new.$f" 2>"$T/err-new-$f"
	rc=$?
	st=absent; [ -e "$D/new.$f" ] && st=bad
	echo "unpack-.$f $rc $(leftovers new.$f) $st"
	cp "$T/old" "$D/old.$f"
	"$B/alcm-unpack" -q -f -T 1 $sel "$T/f32.alcm" -o "$D/old.$f" 2>"$T/err-old-$f"
	rc=$?
	st=bad; cmp -s "$D/old.$f" "$T/old" && st=old
	echo "unpack-f-.$f $rc $(leftovers old.$f) $st"
	rm -f "$D/old.$f"
done
case " $formats " in *" h5 "*)
	# chunked and deflated: the chunk cache is flushed when each dataset closes
	"$B/alcm-unpack" -q -T 1 --h5-chunk 65536 --h5-gzip 1 "$T/f32.alcm" -o "$D/new.h5" 2>"$T/err-new-h5c"
	rc=$?
	st=absent; [ -e "$D/new.h5" ] && st=bad
	echo "unpack-.h5-chunked $rc $(leftovers new.h5) $st"
esac
rm -f "$D/new.alcm"
"$B/alcm-pack" -q -T 1 "$T/ck.safetensors" -o "$D/new.alcm" 2>"$T/err-pack"
rc=$?
st=absent; [ -e "$D/new.alcm" ] && st=bad
echo "pack $rc $(leftovers new.alcm) $st"
# --append: the stream archive is in place already (copied by the caller before any limit).
"$B/alcm-pack" -q -T 1 --append "$T/embed.npy" -o "$D/s.alcm" 2>"$T/err-append"
rc=$?
st=bad
cmp -s "$D/s.alcm" "$T/stream.alcm" && "$B/alcm-inspect" -q --verify "$D/s.alcm" && st=same
echo "append $rc $(leftovers s.alcm) $st"
EOF

# check LABEL RESULTS_FILE: every case exited 3, left nothing, kept the target's state
check() {
	local label=$1 n=0
	while read -r name rc left st; do
		n=$((n + 1))
		if [ "$rc" -eq 3 ]; then ok; else bad "$label: $name: exit $rc, want 3$([ "$rc" -ge 128 ] && echo " (killed by signal $((rc - 128)))")"; fi
		if [ "$left" -eq 0 ]; then ok; else bad "$label: $name: $left temporary files left"; fi
		if [ "$st" != bad ]; then ok; else bad "$label: $name: the target was published or changed"; fi
	done <"$2"
	for e in "$T"/err-*; do
		local what=${e##*/err-}
		case $what in new-h5c) want=new.h5 ;; new-*) want=new.${what#new-} ;; old-*) want=old.${what#old-} ;;
			pack) want=new.alcm ;; append) want=s.alcm ;; esac
		if grep -q "$want" "$e"; then ok; else bad "$label: $what: the message does not name $want: $(head -c 300 "$e")"; fi
	done
	echo "cli_fulldisk: $label: $n cases"
	[ "$n" -ge 4 ] && ok || bad "$label: only $n cases ran"
}

# ---- a file-size limit: 200 KiB ------------------------------------------------------------
for how in ignored default; do
	mkdir -p "$T/lim"
	cp "$T/stream.alcm" "$T/lim/s.alcm"
	rm -f "$T"/err-*
	if [ $how = ignored ]; then
		(trap '' XFSZ; ulimit -f 200; exec bash "$T/cases.sh" "$B" "$T" "$T/lim" "$formats") >"$T/res"
	else
		(ulimit -f 200; exec bash "$T/cases.sh" "$B" "$T" "$T/lim" "$formats") >"$T/res"
	fi
	check "ulimit -f 200 (SIGXFSZ $how)" "$T/res"
	rm -rf "$T/lim"
done

# ---- a real ENOSPC: a 640 KiB tmpfs in a private mount namespace --------------------------
mkdir -p "$T/tmpfs"
uflags=""
if unshare -m true 2>/dev/null; then uflags=-m
elif unshare -Urm true 2>/dev/null; then uflags=-Urm; fi
if [ -n "$uflags" ]; then
	cat >"$T/enospc.sh" <<'EOF'
	B=$1 T=$2 formats=$3
	mount -t tmpfs -o size=640k tmpfs "$T/tmpfs" || exit 77
	cp "$T/stream.alcm" "$T/tmpfs/s.alcm" 2>/dev/null || { umount "$T/tmpfs"; exit 78; }
	bash "$T/cases.sh" "$B" "$T" "$T/tmpfs" "$formats"
	umount "$T/tmpfs"
EOF
	rm -f "$T"/err-*
	unshare $uflags bash "$T/enospc.sh" "$B" "$T" "$formats" >"$T/res"
	urc=$?
	if [ $urc -eq 77 ] || [ $urc -eq 78 ]; then
		echo "cli_fulldisk: cannot mount a tmpfs here: ENOSPC cases skipped"
	else
		check "tmpfs of 640 KiB" "$T/res"
	fi
else
	echo "cli_fulldisk: no private mount namespace here: ENOSPC cases skipped"
fi

echo "cli_fulldisk.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
