/*
 * Surface: the container reader (header, commit slots, table, section reads, verify,
 * signature check). Input: archive bytes, then one options byte (FUZZ_OPT_*).
 */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S "container"

static void walk(alcm_reader *r, int from_memory)
{
	uint64_t size = alcm_reader_file_size(r);
	uint32_t n = alcm_reader_section_count(r);
	unsigned major, minor;
	alcm_reader_version(r, &major, &minor);
	FUZZ_CHECK(S, major == ALCM_FORMAT_MAJOR, "opened a major version %u archive", major);
	(void)alcm_reader_flags(r);
	(void)alcm_reader_generation(r);
	FUZZ_CHECK(S, alcm_reader_tail_bytes(r) <= size, "tail larger than the file");
	uint64_t expect = 192;
	for (uint32_t i = 0; i < n; i++) {
		alcm_section_info si;
		FUZZ_CHECK(S, alcm_reader_section_info(r, i, &si) == ALCM_OK, "info %u", i);
		FUZZ_CHECK(S, si.offset == expect && si.offset % 64 == 0 && si.length <= size &&
		           si.offset <= size - si.length, "section %u outside the file", i);
		expect = (si.offset + si.length + 63) & ~(uint64_t)63;
		uint32_t k;
		FUZZ_CHECK(S, alcm_reader_find_section(r, si.type, 0, &k) == ALCM_OK && k <= i,
		           "find_section missed section %u", i);
		const uint8_t *direct = alcm_reader_section_data(r, i);
		FUZZ_CHECK(S, (direct != NULL) == from_memory, "section_data availability");
		if (direct)
			fuzz_touch(direct, (size_t)si.length);
		uint8_t *buf = malloc(si.length ? (size_t)si.length : 1);
		if (!buf)
			continue;
		int st = alcm_reader_section_read(r, i, buf, (size_t)si.length);
		if (st == ALCM_OK && direct)
			FUZZ_CHECK(S, memcmp(buf, direct, (size_t)si.length) == 0, "read != data");
		if (si.length) {
			uint8_t b2[16];
			size_t m = si.length < sizeof(b2) ? (size_t)si.length : sizeof(b2);
			if (alcm_reader_section_pread(r, i, si.length - m, b2, m) == ALCM_OK &&
			    st == ALCM_OK)
				FUZZ_CHECK(S, memcmp(b2, buf + si.length - m, m) == 0, "pread != read");
		}
		/* Reads past the section must be refused. */
		FUZZ_CHECK(S, alcm_reader_section_pread(r, i, si.length, buf, 1) == ALCM_E_ARG,
		           "pread past the end of section %u accepted", i);
		FUZZ_CHECK(S, alcm_reader_section_pread(r, i, UINT64_MAX, buf, 1) == ALCM_E_ARG,
		           "pread at 2^64-1 accepted");
		int vs = alcm_reader_verify_section(r, i);
		FUZZ_CHECK(S, vs == ALCM_OK || vs == ALCM_E_DIGEST || vs == ALCM_E_IO ||
		           vs == ALCM_E_NOMEM, "verify_section status %d", vs);
		alcm_section_info after;
		alcm_reader_section_info(r, i, &after);
		if (vs == ALCM_OK || vs == ALCM_E_DIGEST)
			FUZZ_CHECK(S, after.digest_state == (vs ? ALCM_DIGEST_BAD : ALCM_DIGEST_OK),
			           "digest state of section %u after verify", i);
		free(buf);
	}
	FUZZ_CHECK(S, alcm_reader_section_info(r, n, &(alcm_section_info){0}) == ALCM_E_ARG,
	           "info past the table");
	uint32_t bad;
	int vst = alcm_reader_verify(r, &bad);
	FUZZ_CHECK(S, vst != ALCM_OK || bad == UINT32_MAX, "verify ok but bad=%u", bad);
	int sig;
	(void)alcm_reader_check_signature(r, NULL, &sig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t opt;
	if (!fuzz_split(&data, &size, &opt))
		return 0;
	uint8_t *buf = fuzz_dup(data, size);
	if (!buf)
		return 0;
	if (ALCM_FUZZ_FIXUP && !(opt & FUZZ_OPT_RAW))
		fuzz_fixup_digests(buf, size);
	alcm_limits lim;
	if (opt & FUZZ_OPT_DEFAULTS)
		alcm_limits_default(&lim);
	else
		fuzz_limits_tight(&lim);
	unsigned flags = (opt & FUZZ_OPT_NO_VERIFY) ? ALCM_READ_NO_VERIFY : 0;
	alcm_reader *r = NULL;
	int st, fd = -1, from_memory = !(opt & FUZZ_OPT_FILE);
	if (from_memory) {
		st = alcm_reader_open_memory(&r, buf, size, "fuzz.alcm", &lim, NULL, flags);
	} else {
		char path[64];
		fd = fuzz_memfd(buf, size, path);
		if (fd < 0) {
			free(buf);
			return 0;
		}
		st = alcm_reader_open_file(&r, path, &lim, NULL, flags);
	}
	if (st == ALCM_OK) {
		FUZZ_CHECK(S, r != NULL, "ALCM_OK without a reader");
		walk(r, from_memory);
	} else {
		FUZZ_CHECK(S, st > ALCM_OK && st <= ALCM_E_SIGNATURE, "status %d", st);
		FUZZ_CHECK(S, alcm_strerror(st)[0] != '\0', "no message for status %d", st);
		FUZZ_CHECK(S, !r || alcm_reader_section_count(r) == 0,
		           "a failed open keeps a table");
		FUZZ_CHECK(S, !r || strlen(alcm_reader_detail(r)) > 0, "failure without a detail");
	}
	alcm_reader_free(r);
	if (fd >= 0)
		close(fd);
	free(buf);
	return 0;
}
