#!/usr/bin/env bash
# Every refusal maps to the exit code its cause documents (tools/cli.h, each --help): a table
# of tools x classes of bad input, each row run and its code checked, and no output left
# behind by a refused run. Hostile archives come from alcm-test-forge (digests match, so the
# payload reaches the decoders). Also: "-" as INPUT and "-o -" for every tool and format.
# Usage: cli_exitcodes.sh BIN_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/testlib.sh"
# row CODE WHAT CMD...: CMD (run by bash -c, stopped after 120 s: exit 124) exits CODE;
# stderr is kept in $T/err.
row() {
	local want=$1 what=$2
	shift 2
	timeout 120 bash -c "$*" >"$T/out" 2>"$T/err" </dev/null
	local got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "$what: exit $got, want $want: $* :: $(head -c 300 "$T/err")"; fi
}
has() { if grep -q -- "$1" "$T/${2:-err}"; then ok; else bad "missing '$1' in ${2:-err}: $(head -c 300 "$T/${2:-err}")"; fi; }
absent() { if [ ! -e "$1" ]; then ok; else bad "$1 left behind by a refused run"; fi; }

P=$B/alcm-pack U=$B/alcm-unpack I=$B/alcm-inspect F=$B/alcm-test-forge
cd "$T" || exit 1
"$B/alcm-make-checkpoint" m.npz >/dev/null 2>&1 || { bad "make-checkpoint"; exit 1; }
"$P" -q m.npz -o m.alcm || { bad "pack m.alcm"; exit 1; }
"$B/alcm-keygen" k >/dev/null 2>&1 || { bad "keygen"; exit 1; }

# ---- inputs -------------------------------------------------------------------------
printf 'not a tensor file at all' >junk.bin
: >empty.bin
head -c 100 m.npz >trunc.npz
# .npy headers: a shape whose element count overflows; a zero-element shape with huge
# dimensions (valid: 0 elements); a float32 payload cut short.
npy() { # npy FILE SHAPE-TEXT PAYLOAD-BYTES
	local d="{'descr': '<f4', 'fortran_order': False, 'shape': ($2), }"
	local pad=$(( (64 - (10 + ${#d} + 1) % 64) % 64 ))
	{ printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#d} + pad + 1) % 256 )))\\x$(printf %02x $(( (${#d} + pad + 1) / 256 )))";
	  printf '%s%*s\n' "$d" $pad ''; head -c "$3" /dev/zero; } >"$1"
}
npy overflow.npy "4294967296, 4294967297" 0
npy huge0.npy "2305843009213693957, 0" 0
npy huge63.npy "9223372036854775808, 0" 0
npy short.npy "4, 4" 12
npy ok.npy "2, 3" 24
"$F" zero-lossy zero-lossy.alcm
"$F" chunk-len chunk-len.alcm
"$F" dup dup.alcm
"$F" attr attr.alcm
"$F" escape escape.alcm 65536 1 655371 17   # past 10 + n + 4 nsym
"$F" window window.alcm 28                  # a zstd window of 2^28 > the 2^27 limit
"$F" names unsafe.alcm "../../x" "/abs/x" "a/b"
"$F" names meta.alcm "__metadata__"
"$F" names clash.alcm "a" "a/b"
"$P" -q huge63.npy -o huge63.alcm
"$P" -q huge0.npy -o huge0.alcm
cp m.alcm digest.alcm
printf '\xff' | dd of=digest.alcm bs=1 seek=300 conv=notrunc 2>/dev/null  # inside LDAT 0
sz=$(stat -c %s m.alcm)
head -c $((sz - 10)) m.alcm >truncated.alcm
"$P" -q m.npz -o stream.alcm --stream
"$P" -q m.npz -o signed.alcm --stream --sign k.key

# ---- alcm-pack ----------------------------------------------------------------------
row 0 "pack: zero-element [2^61+5, 0]" "$P" huge0.npy -o p1.alcm --check
row 0 "pack: zero-element, lossy with --check" "$P" huge0.npy -o p2.alcm --rel-error 0.01 --check
row 10 "pack: zero-element under --size (cannot fit 200 bytes)" "$P" huge0.npy -o p3.alcm --size 200
absent p3.alcm
row 6 "pack: shape overflowing 64 bits" "$P" overflow.npy -o x.alcm
row 4 "pack: .npy payload cut short" "$P" short.npy -o x.alcm
row 4 "pack: .npz cut short" "$P" trunc.npz -o x.alcm
row 7 "pack: unknown format" "$P" junk.bin -o x.alcm
row 7 "pack: empty file" "$P" empty.bin -o x.alcm
row 7 "pack: an archive as input" "$P" m.alcm -o x.alcm
row 3 "pack: missing input" "$P" nosuch.npz -o x.alcm
absent x.alcm
row 8 "pack: output exists" "$P" ok.npy -o m.alcm
row 2 "pack: unknown option" "$P" ok.npy -o x.alcm --bogus
row 7 "pack: --append to a non-stream archive" "$P" m.npz -o m.alcm --append
has "not a stream archive"
row 7 "pack: --append --sign to a signed stream" "$P" m.npz -o signed.alcm --append --sign k.key
has "signed already"
row 0 "pack: --append to a stream" "$P" m.npz -o stream.alcm --append
row 2 "pack: --append -o -" "$P" m.npz -o - --append
# Standard input: formats from the bytes, spooled; standard output once complete.
row 0 "pack: a valid .npz on a pipe" "cat m.npz | $P - -o pipe.alcm"
row 0 "pack: .npy on a pipe, archive to a pipe" "cat ok.npy | $P - -o - >pipe2.alcm"
row 0 "inspect: the piped archive" "$I pipe2.alcm | grep -q 'tensor  *float32  *\[2, 3\]'"
row 7 "pack: junk on a pipe" "cat junk.bin | $P - -o x.alcm"
row 7 "pack: nothing on a pipe" "$P - -o x.alcm"
row 4 "pack: a cut .npz on a pipe" "cat trunc.npz | $P - -o - >x.alcm"
has "cannot read '-'"
if [ ! -s x.alcm ]; then ok; else bad "a refused pack wrote to standard output"; fi
rm -f x.alcm

# ---- alcm-unpack and alcm-inspect, on hostile archives ------------------------------
for tool in unpack inspect; do
	if [ $tool = unpack ]; then run="$U %s -o out.npz -f"; else run="$I %s"; fi
	r() { row "$1" "$tool: $2" "$(printf "$run" "$3")"; }
	r 4 "zero-element tensor in a lossy mode" zero-lossy.alcm
	has "without elements"
	r 4 "chunk longer than it can be" chunk-len.alcm
	r 4 "duplicate names" dup.alcm
	r 4 "truncated archive" truncated.alcm
	r 4 "not an archive" junk.bin
	r 4 "a tensor file" m.npz
	r 3 "missing archive" nosuch.alcm
done
row 4 "unpack: escape block longer than the chunk can hold" "$U" escape.alcm -o out.npz -f
row 0 "inspect --verify: the same (digests are right)" "$I" --verify escape.alcm
row 6 "unpack: zstd window past the limit" "$U" window.alcm -o out.npz -f
row 5 "unpack: digest mismatch" "$U" digest.alcm -o out.npz -f
row 5 "inspect --verify: digest mismatch" "$I" --verify digest.alcm
rm -f out.npz
h5=0
[ -x "$B/test_hdf5" ] && h5=1   # the HDF5 bridge is built
if [ $h5 = 1 ]; then
	row 4 "unpack: malformed ATTR to .h5" "$U" attr.alcm -o attr.h5
	absent attr.h5
fi
row 0 "unpack: malformed ATTR to .npz (ATTR unused)" "$U" attr.alcm -o attr.npz
# Valid archives a format cannot hold: exit 7 before decoding, nothing written.
if [ $h5 = 1 ]; then
	row 7 "unpack: 'a' and 'a/b' to .h5" "$U" clash.alcm -o clash.h5
	has "dataset and a group"
	absent clash.h5
	row 7 "unpack: a dimension of 2^63 to .h5" "$U" huge63.alcm -o huge63.h5
	absent huge63.h5
	row 0 "unpack: zero-element [2^61+5, 0] to .h5" "$U" huge0.alcm -o huge0.h5
	row 0 "unpack: .h5 to a pipe" "$U huge0.alcm -o - --format h5 >pipe.h5"
fi
row 0 "unpack: 'a' and 'a/b' to .npz" "$U" clash.alcm -o clash.npz
row 0 "unpack: zero-element to .npz" "$U" huge0.alcm -o huge0.npz
row 7 "unpack: unsafe names to .npz" "$U" unsafe.alcm -o unsafe.npz
has "allow-unsafe-names"
absent unsafe.npz
row 0 "unpack: unsafe names to .npz, allowed" "$U" unsafe.alcm -o unsafe.npz --allow-unsafe-names
row 0 "unpack: unsafe names to .safetensors (names are keys there)" "$U" unsafe.alcm -o unsafe.safetensors
row 7 "unpack: a tensor named __metadata__ to .safetensors" "$U" meta.alcm -o meta.safetensors
absent meta.safetensors
row 0 "unpack: one unsafe name to .npy (no name is written)" "$U" unsafe.alcm -o one.npy --tensor ../../x
row 2 "unpack: -o - without --format" "$U" m.alcm -o -
row 2 "unpack: unknown --format" "$U" m.alcm -o x --format tar
row 0 "unpack: archive from a pipe to a pipe" "cat m.alcm | $U - -o - --format npz >pipe.npz"
row 0 "unpack: the piped .npz is the packed one" cmp -s m.npz pipe.npz
row 0 "unpack: .npz to a pipe, packed again from it, unpacked from a pipe" \
	"$U m.alcm -o - -F npz | $P - -o - | $U - -o back.npz -F npz"
row 0 "unpack: the round trip through pipes is exact" cmp -s m.npz back.npz
row 0 "unpack: .safetensors to a pipe, packed from it" "$U m.alcm -o - -F safetensors | $P - -o st.alcm"
row 0 "unpack: --format with another extension" "$U" m.alcm -o m.bin --format npz
row 4 "unpack: a cut archive on a pipe, nothing written" "cat truncated.alcm | $U - -o - -F npz >x.npz"
if [ ! -s x.npz ]; then ok; else bad "a refused unpack wrote to standard output"; fi
row 0 "inspect: archive on a pipe" "cat m.alcm | $I - --verify"

# No temporary file or directory is left in $TMPDIR by any run above.
left=$(find "$TMPDIR" -mindepth 1 | head -5)
if [ -z "$left" ]; then ok; else bad "left in TMPDIR: $left"; fi

echo "cli_exitcodes: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
