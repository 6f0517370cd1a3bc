#!/usr/bin/env bash
# The release promises that alcm never opens a network connection. Checks that the built
# library (shared and static, the HDF5 bridge too) and every tool import no socket, name
# resolution, HTTP or TLS symbol, and that no network library is loaded with them except
# through libhdf5 (whose Debian build links libcurl for its ROS3 driver; alcm never
# selects that driver: its symbols are checked for too).
# Usage: cli_offline.sh BIN_DIR SOURCE_DIR
set -u
B=$1
L=$(cd "$B/../lib" 2>/dev/null && pwd)
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

command -v nm >/dev/null || { echo "cli_offline.sh: nm not found (binutils)" >&2; exit 1; }

# Exact names, then prefixes.
forbidden='^(socket|socketpair|connect|bind|listen|accept|accept4|getaddrinfo|getnameinfo|gethostbyname|gethostbyname2|gethostbyname_r|gethostbyaddr|gethostent|getservbyname|sendto|recvfrom|sendmsg|recvmsg|send|recv|inet_aton|inet_addr|res_init|res_query|res_search|__res_init|__res_query|if_nametoindex)$|^(curl_|Curl_|SSL_|TLS_|BIO_|gnutls_|ssh_|ldap_|H5Pset_fapl_ros3|H5FD_ros3|H5Pset_fapl_hdfs|H5FD_hdfs|H5Pset_fapl_mirror|H5FD_mirror)'

# check LABEL SYMBOLS...: fails on any forbidden name (versions like @GLIBC_2.2.5 removed).
check() {
	local label=$1 hits
	hits=$(sed -E 's/@.*//' | grep -E "$forbidden" | sort -u | tr '\n' ' ')
	if [ -z "$hits" ]; then ok; else bad "$label imports network symbols: $hits"; fi
}

network_libs='lib(curl|ssl|gnutls|nghttp2|ssh2|ldap|rtmp|gssapi_krb5|krb5)[.-]'

# Dynamic libraries loaded with FILE that can talk to a network, except those libhdf5
# brings (listed with their carrier so that a release note can say it).
check_loaded() {
	local f=$1 loaded allowed=""
	loaded=$(ldd "$f" 2>/dev/null | awk '{print $1}')
	if readelf -d "$f" 2>/dev/null | grep -q 'NEEDED.*libhdf5'; then
		local h
		h=$(ldd "$f" | awk '/libhdf5/ {print $3; exit}')
		allowed=$(ldd "$h" 2>/dev/null | awk '{print $1}')
		if echo "$allowed" | grep -qE "$network_libs"; then
			echo "cli_offline: note: ${f##*/} loads libhdf5, which links $(echo "$allowed" |
				grep -oE "$network_libs" | tr -d '.-' | sort -u | tr '\n' ' ')(ROS3 driver, never selected)"
		fi
	fi
	local lib offenders=""
	for lib in $(echo "$loaded" | grep -E "$network_libs"); do
		echo "$allowed" | grep -qxF "$lib" || offenders="$offenders $lib"
	done
	if [ -z "$offenders" ]; then ok; else bad "${f##*/} loads network libraries:$offenders"; fi
}

n=0
for so in "$L"/libalcm.so "$L"/libalcm_hdf5.so; do
	[ -f "$so" ] || continue
	nm -D --undefined-only "$so" | awk '{print $NF}' | check "${so##*/}"
	check_loaded "$so"
	n=$((n + 1))
done
for a in "$L"/libalcm.a "$L"/libalcm_hdf5.a "$L"/libalcm_cli.a; do
	[ -f "$a" ] || continue
	nm -u "$a" 2>/dev/null | awk 'NF >= 2 {print $NF}' | check "${a##*/}"
	n=$((n + 1))
done
for t in "$B"/alcm-*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	nm -D --undefined-only "$t" | awk '{print $NF}' | check "${t##*/}"
	check_loaded "$t"
	n=$((n + 1))
done
if [ $n -ge 2 ]; then ok; else bad "found nothing to check in $B and $L"; fi

# The checker itself must see an import when there is one.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <sys/socket.h>\nint main(void) { return socket(0, 0, 0); }\n' >"$tmp/s.c"
if cc -o "$tmp/s" "$tmp/s.c" 2>/dev/null; then
	if nm -D --undefined-only "$tmp/s" | awk '{print $NF}' | sed -E 's/@.*//' | grep -qE "$forbidden"; then
		ok
	else
		bad "the check does not see socket() in a test program"
	fi
fi

echo "cli_offline.sh: $n files, $pass passed, $fail failed"
[ $fail -eq 0 ]
