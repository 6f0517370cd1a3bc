/*
 * The container (format/): round trips through memory and files, section access, digest
 * state, append and its crash points, the atomic file writer, allocation failures, and a
 * sparse file with a section over 4 GiB.
 */
#include "testutil.h"
#include "container.h"
#include "format_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NO_SYNC ALCM_WRITE_NO_SYNC

static const size_t sizes[] = {0, 1, 63, 64, 65, 4096, (size_t)1 << 20};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

typedef struct sec {
	const char *type;
	uint32_t flags;
	uint32_t tag;
	uint8_t *data;
	size_t len;
} sec;

/* One section per size; known types are critical, the unknown one optional. */
static void make_secs(sec *s, uint64_t seed)
{
	static const char *types[] = {"META", "LDAT", "XTRA", "QDAT", "SCAL", "zz9!", "MASK"};
	for (size_t i = 0; i < NSIZES; i++) {
		s[i].type = types[i];
		s[i].flags = alcm_section_type_known(types[i]) ? ALCM_SECTION_CRITICAL : 0;
		s[i].tag = i == 3 ? UINT32_MAX : (uint32_t)(i * 7 + 1);
		s[i].len = sizes[i];
		s[i].data = malloc(sizes[i] ? sizes[i] : 1);
		assert_non_null(s[i].data);
		for (size_t k = 0; k < sizes[i]; k++)
			s[i].data[k] = (uint8_t)tu_rand(&seed);
	}
}

static void free_secs(sec *s)
{
	for (size_t i = 0; i < NSIZES; i++)
		free(s[i].data);
}

static void add_all(alcm_writer *w, const sec *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t idx = 99;
		assert_int_equal(alcm_writer_add_section(w, s[i].type, s[i].flags, s[i].tag, s[i].data,
		                                         s[i].len, &idx),
		                 ALCM_OK);
		assert_int_equal(idx, alcm_writer_section_count(w) - 1);
	}
}

/* Writes sections into memory; returns a malloc'ed copy of the archive. */
static uint8_t *pack_mem(const sec *s, size_t n, unsigned flags, size_t *len)
{
	alcm_writer *w = NULL;
	const void *buf;
	assert_int_equal(alcm_writer_open_memory(&w, flags | NO_SYNC, NULL), ALCM_OK);
	add_all(w, s, n);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &buf, len), ALCM_OK);
	assert_int_equal(*len, alcm_writer_bytes(w));
	uint8_t *p = malloc(*len);
	memcpy(p, buf, *len);
	alcm_writer_free(w);
	return p;
}

static void pack_file(const char *path, const sec *s, size_t n, unsigned flags)
{
	alcm_writer *w = NULL;
	unlink(path);
	assert_int_equal(alcm_writer_open_file(&w, path, flags | NO_SYNC, NULL), ALCM_OK);
	add_all(w, s, n);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
}

/* Everything a reader says about sections s[0..n) at table indices first.. */
static void check_reader(alcm_reader *r, const sec *s, size_t n, uint32_t first)
{
	uint64_t prev_end = ALCM_HEADER_SIZE;
	for (size_t i = 0; i < n; i++) {
		uint32_t idx = first + (uint32_t)i;
		alcm_section_info si;
		uint8_t d[32];
		assert_int_equal(alcm_reader_section_info(r, idx, &si), ALCM_OK);
		assert_string_equal(si.type, s[i].type);
		assert_int_equal(si.flags, s[i].flags);
		assert_int_equal(si.tag, s[i].tag);
		assert_int_equal(si.length, s[i].len);
		assert_int_equal(si.offset % 64, 0);
		if (first == 0)
			assert_int_equal(si.offset, alcm_align_up(prev_end));
		prev_end = si.offset + si.length;
		assert_int_equal(si.known, alcm_section_type_known(s[i].type));
		assert_int_equal(si.digest_state, ALCM_DIGEST_UNCHECKED);
		alcm_digest(d, s[i].data, s[i].len);
		assert_memory_equal(si.digest, d, 32);

		uint8_t *out = malloc(s[i].len + 1);
		assert_int_equal(alcm_reader_section_read(r, idx, out, s[i].len), ALCM_OK);
		if (s[i].len)
			assert_memory_equal(out, s[i].data, s[i].len);
		assert_int_equal(alcm_reader_section_info(r, idx, &si), ALCM_OK);
		assert_int_equal(si.digest_state, ALCM_DIGEST_OK);
		/* pread: the last byte, a middle slice, an empty read at the end, then past it. */
		if (s[i].len) {
			size_t mid = s[i].len / 3, ml = s[i].len - mid;
			memset(out, 0, s[i].len);
			assert_int_equal(alcm_reader_section_pread(r, idx, mid, out, ml), ALCM_OK);
			assert_memory_equal(out, s[i].data + mid, ml);
			assert_int_equal(alcm_reader_section_pread(r, idx, s[i].len - 1, out, 1), ALCM_OK);
			assert_int_equal(out[0], s[i].data[s[i].len - 1]);
		}
		assert_int_equal(alcm_reader_section_pread(r, idx, s[i].len, out, 0), ALCM_OK);
		assert_int_equal(alcm_reader_section_pread(r, idx, s[i].len, out, 1), ALCM_E_ARG);
		assert_int_equal(alcm_reader_section_pread(r, idx, UINT64_MAX, out, 2), ALCM_E_ARG);
		if (s[i].len)
			assert_int_equal(alcm_reader_section_read(r, idx, out, s[i].len - 1), ALCM_E_ARG);
		assert_int_equal(alcm_reader_verify_section(r, idx), ALCM_OK);
		free(out);
	}
}

static void test_roundtrip_memory(void **state)
{
	(void)state;
	sec s[NSIZES];
	size_t len;
	make_secs(s, 1);
	uint8_t *p = pack_mem(s, NSIZES, 0, &len);
	assert_int_equal(len % 16, 0);
	assert_memory_equal(p, alcm_signature, ALCM_SIGNATURE_LEN);

	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, p, len, "mem", NULL, NULL, 0), ALCM_OK);
	assert_string_equal(alcm_reader_detail(r), "");
	unsigned major = 9, minor = 9;
	alcm_reader_version(r, &major, &minor);
	assert_int_equal(major, 1);
	assert_int_equal(minor, 0);
	assert_int_equal(alcm_reader_flags(r), 0);
	assert_int_equal(alcm_reader_generation(r), 1);
	assert_int_equal(alcm_reader_tail_bytes(r), 0);
	assert_int_equal(alcm_reader_file_size(r), len);
	assert_int_equal(alcm_reader_section_count(r), NSIZES);
	check_reader(r, s, NSIZES, 0);
	for (uint32_t i = 0; i < NSIZES; i++) {
		alcm_section_info si;
		alcm_reader_section_info(r, i, &si);
		assert_ptr_equal(alcm_reader_section_data(r, i), p + si.offset);
	}
	assert_null(alcm_reader_section_data(r, NSIZES));
	uint32_t bad = 0;
	assert_int_equal(alcm_reader_verify(r, &bad), ALCM_OK);
	assert_int_equal(bad, UINT32_MAX);
	alcm_reader_free(r);
	free(p);
	free_secs(s);
}

static void test_roundtrip_file(void **state)
{
	(void)state;
	sec s[NSIZES];
	make_secs(s, 2);
	const char *path = tu_path("roundtrip.alcm");
	pack_file(path, s, NSIZES, 0);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_count(r), NSIZES);
	check_reader(r, s, NSIZES, 0);
	assert_null(alcm_reader_section_data(r, 0));
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);

	/* The memory writer and the file writer give the same bytes. */
	size_t mlen, flen;
	uint8_t *m = pack_mem(s, NSIZES, 0, &mlen);
	uint8_t *f = tu_read_file(path, &flen);
	assert_non_null(f);
	assert_int_equal(mlen, flen);
	assert_memory_equal(m, f, mlen);
	free(m);
	free(f);
	unlink(path);
	free_secs(s);
}

/* A section streamed in uneven pieces is the same as one written whole. */
static void test_streamed_section(void **state)
{
	(void)state;
	uint8_t data[10000];
	uint64_t seed = 3;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)tu_rand(&seed);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_section_begin(w, "LDAT", ALCM_SECTION_CRITICAL, 5), ALCM_OK);
	for (size_t pos = 0, step = 1; pos < sizeof(data); pos += step, step = step * 3 + 1) {
		size_t n = sizeof(data) - pos < step ? sizeof(data) - pos : step;
		assert_int_equal(alcm_writer_section_write(w, data + pos, n), ALCM_OK);
		assert_int_equal(alcm_writer_section_write(w, NULL, 0), ALCM_OK);
	}
	uint32_t idx = 7;
	assert_int_equal(alcm_writer_section_end(w, &idx), ALCM_OK);
	assert_int_equal(idx, 0);
	alcm_section_info wi;
	assert_int_equal(alcm_writer_section_info(w, 0, &wi), ALCM_OK);
	uint8_t d[32];
	alcm_digest(d, data, sizeof(data));
	assert_memory_equal(wi.digest, d, 32);
	assert_int_equal(wi.length, sizeof(data));
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, NULL, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	assert_memory_equal(alcm_reader_section_data(r, 0), data, sizeof(data));
	alcm_reader_free(r);
	alcm_writer_free(w);
}

/* A section whose digest the encoder takes on its own threads (format_internal.h): its bytes
 * written unhashed, then ended with the digest given. The archive reads and verifies as the
 * same section written the usual way; a wrong digest is what the reader then rejects; misuse
 * is refused without poisoning the writer. */
static void test_section_hashed_elsewhere(void **state)
{
	(void)state;
	uint8_t data[3000], d[32];
	uint64_t seed = 5;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)tu_rand(&seed);
	alcm_digest(d, data, sizeof(data));
	for (int wrong = 0; wrong < 2; wrong++) {
		alcm_writer *w = NULL;
		assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_section_write_unhashed(NULL, data, 1), ALCM_E_ARG);
		assert_int_equal(alcm_writer_section_write_unhashed(w, data, 1), ALCM_E_STATE);
		assert_int_equal(alcm_writer_section_end_digest(NULL, d, NULL), ALCM_E_ARG);
		assert_int_equal(alcm_writer_section_end_digest(w, d, NULL), ALCM_E_STATE);
		assert_int_equal(alcm_writer_section_begin(w, "LDAT", ALCM_SECTION_CRITICAL, 1),
		                 ALCM_OK);
		assert_int_equal(alcm_writer_section_write_unhashed(w, NULL, 1), ALCM_E_ARG);
		assert_int_equal(alcm_writer_section_end_digest(w, NULL, NULL), ALCM_E_ARG);
		assert_int_equal(alcm_writer_section_write_unhashed(w, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_writer_section_write_unhashed(w, data, 1000), ALCM_OK);
		assert_int_equal(alcm_writer_section_write_unhashed(w, data + 1000, 2000), ALCM_OK);
		uint8_t given[32];
		memcpy(given, d, 32);
		given[31] ^= (uint8_t)wrong;
		uint32_t idx = 9;
		assert_int_equal(alcm_writer_section_end_digest(w, given, &idx), ALCM_OK);
		assert_int_equal(idx, 0);
		assert_int_equal(alcm_writer_section_end_digest(w, given, NULL), ALCM_E_STATE);
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
		assert_int_equal(alcm_writer_section_write_unhashed(w, data, 1), ALCM_E_STATE);
		const void *buf;
		size_t len;
		assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
		alcm_reader *r = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, buf, len, NULL, NULL, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_reader_verify(r, NULL), wrong ? ALCM_E_DIGEST : ALCM_OK);
		if (!wrong)
			assert_memory_equal(alcm_reader_section_data(r, 0), data, sizeof(data));
		alcm_reader_free(r);
		alcm_writer_free(w);
	}
}

static uint8_t *small_archive(size_t *len)
{
	static uint8_t a[5] = "aaaa", b[3] = "bb", c[1] = "c", x[9] = "xxxxxxxx";
	sec s[] = {
		{"META", 0, 0, a, 4}, {"LDAT", ALCM_SECTION_CRITICAL, 1, b, 2},
		{"XTRA", 0, 42, x, 8}, {"LDAT", ALCM_SECTION_CRITICAL, 2, c, 1},
		{"SCAL", ALCM_SECTION_CRITICAL, 2, c, 0},
	};
	return pack_mem(s, 5, 0, len);
}

static void test_find_section(void **state)
{
	(void)state;
	size_t len;
	uint8_t *p = small_archive(&len);
	alcm_reader *r = NULL;
	uint32_t idx = 99;
	assert_int_equal(alcm_reader_open_memory(&r, p, len, NULL, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_find_section(r, "LDAT", 0, &idx), ALCM_OK);
	assert_int_equal(idx, 1);
	assert_int_equal(alcm_reader_find_section(r, "LDAT", 1, &idx), ALCM_OK);
	assert_int_equal(idx, 1);
	assert_int_equal(alcm_reader_find_section(r, "LDAT", 2, &idx), ALCM_OK);
	assert_int_equal(idx, 3);
	idx = 99;
	assert_int_equal(alcm_reader_find_section(r, "LDAT", 4, &idx), ALCM_E_NOTFOUND);
	assert_int_equal(idx, 99);
	assert_int_equal(alcm_reader_find_section(r, "QDAT", 0, &idx), ALCM_E_NOTFOUND);
	assert_int_equal(alcm_reader_find_section(r, "META", UINT32_MAX, &idx), ALCM_E_NOTFOUND);
	assert_int_equal(alcm_reader_find_section(r, "SCAL", 0, NULL), ALCM_OK);
	assert_int_equal(alcm_reader_find_section(r, NULL, 0, &idx), ALCM_E_ARG);
	assert_int_equal(alcm_reader_find_section(NULL, "META", 0, &idx), ALCM_E_ARG);
	alcm_reader_free(r);
	free(p);
}

/* Unknown optional sections are listed with known = 0; tags are kept as written. */
static void test_unknown_optional_and_tags(void **state)
{
	(void)state;
	size_t len;
	uint8_t *p = small_archive(&len);
	alcm_reader *r = NULL;
	alcm_section_info si;
	assert_int_equal(alcm_reader_open_memory(&r, p, len, NULL, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_count(r), 5);
	assert_int_equal(alcm_reader_section_info(r, 2, &si), ALCM_OK);
	assert_string_equal(si.type, "XTRA");
	assert_int_equal(si.known, 0);
	assert_int_equal(si.flags, 0);
	assert_int_equal(si.tag, 42);
	static const uint32_t tags[] = {0, 1, 42, 2, 2};
	for (uint32_t i = 0; i < 5; i++) {
		assert_int_equal(alcm_reader_section_info(r, i, &si), ALCM_OK);
		assert_int_equal(si.tag, tags[i]);
		assert_int_equal(si.known, i != 2);
	}
	/* An empty section reads into no buffer at all. */
	assert_int_equal(alcm_reader_section_read(r, 4, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_pread(r, 4, 0, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_read(r, 3, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_info(r, 4, &si), ALCM_OK);
	assert_int_equal(si.digest_state, ALCM_DIGEST_OK);
	assert_int_equal(alcm_reader_section_info(r, 5, &si), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_info(r, 0, NULL), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_info(NULL, 0, &si), ALCM_E_ARG);
	alcm_reader_free(r);
	free(p);
}

static void test_digest_state(void **state)
{
	(void)state;
	size_t len;
	uint8_t *p = small_archive(&len);
	alcm_reader *r = NULL;
	alcm_section_info si;
	uint8_t out[16];
	uint32_t bad = 0;
	/* Damage section 3's only byte: the table still opens. */
	assert_int_equal(alcm_reader_open_memory(&r, p, len, NULL, NULL, NULL, 0), ALCM_OK);
	alcm_reader_section_info(r, 3, &si);
	alcm_reader_free(r);
	p[si.offset] ^= 0x40;

	assert_int_equal(alcm_reader_open_memory(&r, p, len, "d.alcm", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_read(r, 1, out, sizeof(out)), ALCM_OK);
	assert_int_equal(alcm_reader_section_read(r, 3, out, sizeof(out)), ALCM_E_DIGEST);
	assert_non_null(strstr(alcm_reader_detail(r), "d.alcm: digest mismatch in section 3 (LDAT) "
	                                              "at offset 384"));
	alcm_reader_section_info(r, 3, &si);
	assert_int_equal(si.digest_state, ALCM_DIGEST_BAD);
	alcm_reader_section_info(r, 1, &si);
	assert_int_equal(si.digest_state, ALCM_DIGEST_OK);
	alcm_reader_section_info(r, 0, &si);
	assert_int_equal(si.digest_state, ALCM_DIGEST_UNCHECKED);
	/* pread does not verify. */
	assert_int_equal(alcm_reader_section_pread(r, 3, 0, out, 1), ALCM_OK);
	assert_int_equal(alcm_reader_verify_section(r, 3), ALCM_E_DIGEST);
	assert_int_equal(alcm_reader_verify(r, &bad), ALCM_E_DIGEST);
	assert_int_equal(bad, 3);
	alcm_reader_free(r);

	/* NO_VERIFY: reads succeed and leave the state unchecked; verify still checks. */
	assert_int_equal(alcm_reader_open_memory(&r, p, len, NULL, NULL, NULL, ALCM_READ_NO_VERIFY),
	                 ALCM_OK);
	assert_int_equal(alcm_reader_section_read(r, 3, out, sizeof(out)), ALCM_OK);
	alcm_reader_section_info(r, 3, &si);
	assert_int_equal(si.digest_state, ALCM_DIGEST_UNCHECKED);
	assert_int_equal(alcm_reader_verify_section(r, 3), ALCM_E_DIGEST);
	alcm_reader_free(r);

	/* The same through a file, which verifies with a streaming buffer. */
	const char *path = tu_path("digest.alcm");
	assert_int_equal(tu_write_file(path, p, len), 0);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_verify(r, &bad), ALCM_E_DIGEST);
	assert_int_equal(bad, 3);
	assert_non_null(strstr(alcm_reader_detail(r), "section 3 (LDAT)"));
	alcm_reader_free(r);
	unlink(path);
	free(p);
}

/* File verification streams a section through a bounded buffer: a section of several
 * buffers, damaged in its last byte, must still be caught. */
static void test_verify_large_section(void **state)
{
	(void)state;
	size_t n = (5u << 20) / 2 + 3, len;
	uint8_t *big = malloc(n);
	uint64_t seed = 9;
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)tu_rand(&seed);
	sec s[] = {{"LDAT", ALCM_SECTION_CRITICAL, 0, big, n}, {"META", 0, 0, big, 5}};
	uint8_t *p = pack_mem(s, 2, 0, &len);
	const char *path = tu_path("large.alcm");
	alcm_reader *r = NULL;
	uint32_t bad = 0;
	assert_int_equal(tu_write_file(path, p, len), 0);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_verify(r, &bad), ALCM_OK);
	alcm_reader_free(r);
	p[ALCM_HEADER_SIZE + n - 1] ^= 0x01;
	assert_int_equal(tu_write_file(path, p, len), 0);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_verify(r, &bad), ALCM_E_DIGEST);
	assert_int_equal(bad, 0);
	alcm_reader_free(r);
	unlink(path);
	free(p);
	free(big);
}

static void test_empty_archive(void **state)
{
	(void)state;
	size_t len;
	uint8_t *p = pack_mem(NULL, 0, 0, &len);
	assert_int_equal(len, ALCM_HEADER_SIZE + alcm_table_size(0));
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, p, len, NULL, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_count(r), 0);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	assert_int_equal(alcm_reader_find_section(r, "META", 0, NULL), ALCM_E_NOTFOUND);
	alcm_reader_free(r);
	free(p);
}

static void test_writer_misuse(void **state)
{
	(void)state;
	alcm_writer *w = NULL;
	const void *buf;
	size_t len;
	uint8_t b[4] = {1, 2, 3, 4};
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_E_STATE);
	assert_int_equal(alcm_writer_section_write(w, b, 4), ALCM_E_STATE);
	assert_int_equal(alcm_writer_section_end(w, NULL), ALCM_E_STATE);
	static const char *bad_types[] = {"ABC", "ABCDE", "AB D", "AB\x01D", "ABC\x7f", "\xc3\xa9" "AB", ""};
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++)
		assert_int_equal(alcm_writer_section_begin(w, bad_types[i], 0, 0), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_begin(w, "META", 0x2, 0), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_begin(w, NULL, 0, 0), ALCM_E_ARG);
	/* ARG errors do not poison the writer. */
	assert_int_equal(alcm_writer_section_begin(w, "META", 0, 0), ALCM_OK);
	assert_int_equal(alcm_writer_section_begin(w, "META", 0, 0), ALCM_E_STATE);
	assert_int_equal(alcm_writer_section_write(w, NULL, 1), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_write(w, b, 4), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_E_STATE);
	assert_int_equal(alcm_writer_section_end(w, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_bytes(w), ALCM_HEADER_SIZE + 4);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_E_STATE);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, b, 4, NULL), ALCM_E_STATE);
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, NULL, &len), ALCM_E_ARG);
	alcm_section_info si;
	assert_int_equal(alcm_writer_section_info(w, 1, &si), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_info(w, 0, &si), ALCM_OK);
	assert_string_equal(si.type, "META");
	alcm_writer_free(w);

	assert_int_equal(alcm_writer_open_memory(NULL, 0, NULL), ALCM_E_ARG);
	assert_int_equal(alcm_writer_open_file(&w, NULL, 0, NULL), ALCM_E_ARG);
	assert_int_equal(alcm_writer_add_section(NULL, "META", 0, 0, b, 4, NULL), ALCM_E_ARG);
	assert_int_equal(alcm_writer_commit(NULL), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_count(NULL), 0);
	assert_int_equal(alcm_writer_bytes(NULL), 0);
	assert_string_equal(alcm_writer_detail(NULL), "");
	alcm_writer_free(NULL);

	/* alcm_writer_memory() is for memory writers only. */
	const char *path = tu_path("misuse.alcm");
	unlink(path);
	assert_int_equal(alcm_writer_open_file(&w, path, NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_E_ARG);
	alcm_writer_free(w);
	unlink(path);
}

static void test_reader_misuse(void **state)
{
	(void)state;
	alcm_reader *r = NULL;
	uint8_t junk[300] = {0};
	assert_int_equal(alcm_reader_open_memory(NULL, junk, 1, NULL, NULL, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_open_memory(&r, NULL, 1, NULL, NULL, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_open_file(&r, NULL, NULL, NULL, 0), ALCM_E_ARG);
	alcm_reader_free(NULL);
	assert_string_equal(alcm_reader_detail(NULL), "");
	assert_int_equal(alcm_reader_section_count(NULL), 0);
	assert_int_equal(alcm_reader_verify(NULL, NULL), ALCM_E_STATE);

	/* A failed open leaves a reader that explains, and offers no sections. */
	assert_int_equal(alcm_reader_open_memory(&r, junk, sizeof(junk), "junk", NULL, NULL, 0),
	                 ALCM_E_CORRUPT);
	assert_non_null(r);
	assert_string_equal(alcm_reader_detail(r), "junk: not an .alcm file (bad signature at "
	                                           "offset 0)");
	assert_int_equal(alcm_reader_section_count(r), 0);
	alcm_section_info si;
	assert_int_equal(alcm_reader_section_info(r, 0, &si), ALCM_E_ARG);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_E_STATE);
	alcm_reader_free(r);

	/* A table that fails half-way is not half-visible either. */
	size_t len;
	uint8_t *p = small_archive(&len);
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_section_bytes = 7;
	assert_int_equal(alcm_reader_open_memory(&r, p, len, NULL, &lim, NULL, 0), ALCM_E_LIMIT);
	assert_int_equal(alcm_reader_section_count(r), 0);
	assert_int_equal(alcm_reader_find_section(r, "META", 0, NULL), ALCM_E_ARG);
	alcm_reader_free(r);
	free(p);

	/* Paths that are not regular files. */
	assert_int_equal(alcm_reader_open_file(&r, tu_path("does-not-exist"), NULL, NULL, 0),
	                 ALCM_E_IO);
	assert_non_null(strstr(alcm_reader_detail(r), "cannot open"));
	alcm_reader_free(r);
	const char *dir = tu_path("a-dir");
	mkdir(dir, 0755);
	assert_int_equal(alcm_reader_open_file(&r, dir, NULL, NULL, 0), ALCM_E_IO);
	assert_non_null(strstr(alcm_reader_detail(r), "not a regular file"));
	alcm_reader_free(r);
	rmdir(dir);
	const char *fifo = tu_path("a-fifo");
	unlink(fifo);
	if (mkfifo(fifo, 0600) == 0) {
		/* Must not block waiting for a writer. */
		assert_int_equal(alcm_reader_open_file(&r, fifo, NULL, NULL, 0), ALCM_E_IO);
		assert_non_null(strstr(alcm_reader_detail(r), "not a regular file"));
		alcm_reader_free(r);
		unlink(fifo);
	}
}

/* ---- atomic file writer ------------------------------------------------------------ */

static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static const char *fresh_dir(const char *name)
{
	const char *dir = tu_path(name);
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(mkdir(dir, 0755), 0);
	return dir;
}

static void test_atomic_writer(void **state)
{
	(void)state;
	const char *dir = fresh_dir("atomic");
	char path[4200];
	snprintf(path, sizeof(path), "%s/out.alcm", dir);
	uint8_t b[100] = {7};
	alcm_writer *w = NULL;

	/* Not there until commit; meanwhile nothing (O_TMPFILE), or a hidden temp file. */
	int named = tu_tmpfile_refused(path);
	assert_int_equal(alcm_writer_open_file(&w, path, NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, b, sizeof(b), NULL), ALCM_OK);
	assert_false(tu_file_exists(path));
	assert_int_equal(dir_entries(dir), named);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_true(tu_file_exists(path));
	assert_int_equal(dir_entries(dir), 1);
	alcm_writer_free(w);
	assert_int_equal(dir_entries(dir), 1);
	size_t len1;
	uint8_t *first = tu_read_file(path, &len1);

	/* Freed without commit: no target, no temp file. */
	char other[4200];
	snprintf(other, sizeof(other), "%s/never.alcm", dir);
	assert_int_equal(alcm_writer_open_file(&w, other, NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, b, sizeof(b), NULL), ALCM_OK);
	assert_int_equal(dir_entries(dir), 1 + named);
	alcm_writer_free(w);
	assert_false(tu_file_exists(other));
	assert_int_equal(dir_entries(dir), 1);

	/* An existing file is not replaced without ALCM_WRITE_OVERWRITE. */
	assert_int_equal(alcm_writer_open_file(&w, path, NO_SYNC, NULL), ALCM_E_EXISTS);
	assert_non_null(strstr(alcm_writer_detail(w), "exists"));
	assert_int_equal(alcm_writer_commit(w), ALCM_E_STATE);
	alcm_writer_free(w);
	size_t len2;
	uint8_t *now = tu_read_file(path, &len2);
	assert_int_equal(len1, len2);
	assert_memory_equal(first, now, len1);
	free(now);
	assert_int_equal(dir_entries(dir), 1);

	/* A target that appears between open and commit is not replaced either. */
	assert_int_equal(alcm_writer_open_file(&w, other, NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(tu_write_file(other, "precious", 8), 0);
	assert_int_equal(alcm_writer_commit(w), ALCM_E_EXISTS);
	alcm_writer_free(w);
	now = tu_read_file(other, &len2);
	assert_int_equal(len2, 8);
	assert_memory_equal(now, "precious", 8);
	free(now);
	unlink(other);
	assert_int_equal(dir_entries(dir), 1);

	/* With it, the file is replaced. */
	assert_int_equal(alcm_writer_open_file(&w, path, NO_SYNC | ALCM_WRITE_OVERWRITE, NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "LDAT", 0, 0, b, 10, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	now = tu_read_file(path, &len2);
	assert_true(len2 != len1 || memcmp(now, first, len1) != 0);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, now, len2, NULL, NULL, NULL, 0), ALCM_OK);
	alcm_section_info si;
	alcm_reader_section_info(r, 0, &si);
	assert_string_equal(si.type, "LDAT");
	alcm_reader_free(r);
	free(now);
	free(first);
	assert_int_equal(dir_entries(dir), 1);

	/* A directory that does not exist: an I/O error naming the path. */
	char nodir[4200];
	snprintf(nodir, sizeof(nodir), "%s/no/such/dir.alcm", dir);
	assert_int_equal(alcm_writer_open_file(&w, nodir, NO_SYNC, NULL), ALCM_E_IO);
	assert_non_null(strstr(alcm_writer_detail(w), "no/such/dir.alcm"));
	alcm_writer_free(w);
	unlink(path);
	rmdir(dir);
}

/* A synced write (the default) works too. */
static void test_synced_write(void **state)
{
	(void)state;
	const char *path = tu_path("synced.alcm");
	alcm_writer *w = NULL;
	unlink(path);
	assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "x", 1, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 1, "y", 1, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 2);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);
	unlink(path);
}

/* ---- append ------------------------------------------------------------------------ */

static void append_secs(const char *path, const sec *s, size_t n, int commit)
{
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_OK);
	assert_int_equal(alcm_writer_flags(w), ALCM_FLAG_STREAM);
	add_all(w, s, n);
	if (commit)
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
}

static void expect_ptbl(alcm_reader *r, uint32_t idx, uint64_t gen, uint64_t off, uint64_t size)
{
	alcm_section_info si;
	assert_int_equal(alcm_reader_section_info(r, idx, &si), ALCM_OK);
	assert_string_equal(si.type, "PTBL");
	assert_int_equal(si.flags, 0);
	assert_int_equal(si.tag, gen);
	assert_int_equal(si.offset, off);
	assert_int_equal(si.length, size);
	assert_int_equal(si.known, 1);
	/* A PTBL holds the old table exactly: its head is "ATBL". */
	uint8_t head[4];
	assert_int_equal(alcm_reader_section_pread(r, idx, 0, head, 4), ALCM_OK);
	assert_memory_equal(head, "ATBL", 4);
}

static void test_append(void **state)
{
	(void)state;
	sec s[NSIZES];
	make_secs(s, 4);
	const char *path = tu_path("append.alcm");
	pack_file(path, s, 2, ALCM_WRITE_STREAM);
	size_t len0;
	uint8_t *v0 = tu_read_file(path, &len0);
	assert_int_equal(len0, 192 + 64 + alcm_table_size(2));
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_flags(r), ALCM_FLAG_STREAM);
	assert_int_equal(alcm_reader_generation(r), 1);
	alcm_reader_free(r);

	/* First append: the old table becomes section 2 (PTBL, tag = its generation). */
	append_secs(path, s + 2, 3, 1);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 2);
	assert_int_equal(alcm_reader_tail_bytes(r), 0);
	assert_int_equal(alcm_reader_section_count(r), 6);
	check_reader(r, s, 2, 0);
	expect_ptbl(r, 2, 1, 256, alcm_table_size(2));
	check_reader(r, s + 2, 3, 3);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);
	/* Earlier bytes were not rewritten: only slot B changed. */
	size_t len1;
	uint8_t *v1 = tu_read_file(path, &len1);
	assert_memory_equal(v1, v0, ALCM_SLOT_B);
	assert_memory_equal(v1 + ALCM_HEADER_SIZE, v0 + ALCM_HEADER_SIZE, len0 - ALCM_HEADER_SIZE);
	uint64_t t1 = alcm_load64(v1 + ALCM_SLOT_B + 8), t1size = alcm_load64(v1 + ALCM_SLOT_B + 16);

	/* Second append: slot A flips to generation 3. */
	append_secs(path, s + 5, 2, 1);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 3);
	assert_int_equal(alcm_reader_section_count(r), 9);
	check_reader(r, s, 2, 0);
	expect_ptbl(r, 2, 1, 256, alcm_table_size(2));
	check_reader(r, s + 2, 3, 3);
	expect_ptbl(r, 6, 2, t1, t1size);
	check_reader(r, s + 5, 2, 7);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);
	size_t len2;
	uint8_t *v2 = tu_read_file(path, &len2);
	assert_memory_equal(v2 + ALCM_SLOT_B, v1 + ALCM_SLOT_B, len1 - ALCM_SLOT_B);
	assert_int_equal(alcm_load64(v2 + ALCM_SLOT_A), 3);
	assert_int_equal(alcm_load64(v2 + ALCM_SLOT_B), 2);

	/* An append that adds nothing still commits a new generation. */
	append_secs(path, NULL, 0, 1);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 4);
	assert_int_equal(alcm_reader_section_count(r), 10);
	alcm_reader_free(r);

	free(v0);
	free(v1);
	free(v2);
	unlink(path);
	free_secs(s);
}

static void test_append_refused(void **state)
{
	(void)state;
	const char *path = tu_path("nonstream.alcm");
	pack_file(path, NULL, 0, 0);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_E_STATE);
	assert_non_null(strstr(alcm_writer_detail(w), "not a stream archive"));
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "x", 1, NULL), ALCM_E_STATE);
	alcm_writer_free(w);
	/* A damaged archive is refused with the reader's reason. */
	assert_int_equal(tu_write_file(path, "\x89" "ALCM", 5), 0);
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_E_CORRUPT);
	assert_non_null(strstr(alcm_writer_detail(w), "truncated inside the signature"));
	alcm_writer_free(w);
	unlink(path);
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_E_IO);
	alcm_writer_free(w);
	assert_int_equal(alcm_writer_open_append(&w, NULL, NULL, NULL, NO_SYNC), ALCM_E_ARG);
}

static void expect_file(const char *path, const uint8_t *want, size_t len)
{
	size_t n;
	uint8_t *got = tu_read_file(path, &n);
	assert_non_null(got);
	assert_int_equal(n, len);
	assert_memory_equal(got, want, len);
	free(got);
}

static void test_append_crash(void **state)
{
	(void)state;
	sec s[NSIZES];
	make_secs(s, 5);
	const char *path = tu_path("crash.alcm");
	pack_file(path, s, 3, ALCM_WRITE_STREAM);
	size_t len0, len1;
	uint8_t *v0 = tu_read_file(path, &len0);

	/* Sections written, never committed: freeing the writer cuts the file back. */
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_OK);
	add_all(w, s + 3, 3);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_true((size_t)sb.st_size > len0);
	alcm_writer_free(w);
	expect_file(path, v0, len0);

	/* A section left open is dropped too. */
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_OK);
	assert_int_equal(alcm_writer_section_begin(w, "LDAT", 0, 0), ALCM_OK);
	assert_int_equal(alcm_writer_section_write(w, s[6].data, 1000), ALCM_OK);
	alcm_writer_free(w);
	expect_file(path, v0, len0);

	/* The new table written but not the slot (a crash between the two fsyncs): readers
	 * see the old archive and report the new bytes as an uncommitted tail. */
	append_secs(path, s + 3, 2, 1);
	uint8_t *v1 = tu_read_file(path, &len1);
	uint8_t *torn = malloc(len1);
	memcpy(torn, v1, len1);
	memcpy(torn, v0, ALCM_HEADER_SIZE);
	assert_int_equal(tu_write_file(path, torn, len1), 0);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 1);
	assert_int_equal(alcm_reader_section_count(r), 3);
	assert_int_equal(alcm_reader_tail_bytes(r), len1 - len0);
	check_reader(r, s, 3, 0);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);

	/* A torn slot write (half of slot B): the digest fails, slot A still rules. */
	memcpy(torn, v1, len1);
	memset(torn + ALCM_SLOT_B + 40, 0, 24);
	assert_int_equal(tu_write_file(path, torn, len1), 0);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 1);
	assert_int_equal(alcm_reader_tail_bytes(r), len1 - len0);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);

	/* The next append drops the tail and commits over the torn slot. */
	append_secs(path, s + 5, 1, 1);
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_generation(r), 2);
	assert_int_equal(alcm_reader_tail_bytes(r), 0);
	assert_int_equal(alcm_reader_section_count(r), 5);
	check_reader(r, s, 3, 0);
	check_reader(r, s + 5, 1, 4);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);

	free(torn);
	free(v0);
	free(v1);
	unlink(path);
	free_secs(s);
}

/* Appending to an archive of a higher minor version keeps its header and binds the new
 * slot to it. */
static void test_append_higher_minor(void **state)
{
	(void)state;
	const char *path = tu_path("minor.alcm");
	sec s[NSIZES];
	make_secs(s, 6);
	pack_file(path, s, 2, ALCM_WRITE_STREAM);
	size_t len;
	uint8_t *v = tu_read_file(path, &len);
	alcm_store16(v + 10, 7);
	alcm_digest(v + 32, v, 32);
	alcm_slot_build(v + ALCM_SLOT_A, v, 1, alcm_load64(v + ALCM_SLOT_A + 8),
	                alcm_load64(v + ALCM_SLOT_A + 16));
	assert_int_equal(tu_write_file(path, v, len), 0);
	append_secs(path, s + 2, 1, 1);
	alcm_reader *r = NULL;
	unsigned major, minor;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	alcm_reader_version(r, &major, &minor);
	assert_int_equal(major, 1);
	assert_int_equal(minor, 7);
	assert_int_equal(alcm_reader_generation(r), 2);
	assert_int_equal(alcm_reader_section_count(r), 4);
	alcm_reader_free(r);
	free(v);
	unlink(path);
	free_secs(s);
}

/* A new archive takes the minor version its features need; an append cannot raise it. */
static void test_require_minor(void **state)
{
	(void)state;
	const char *path = tu_path("require-minor.alcm");
	sec s[NSIZES];
	make_secs(s, 3);
	pack_file(path, s, 1, ALCM_WRITE_STREAM);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_OK);
	assert_int_equal(alcm_writer_minor(w), 0);
	assert_int_equal(alcm_writer_require_minor(w, 0), ALCM_OK);
	assert_int_equal(alcm_writer_require_minor(w, ALCM_FORMAT_MINOR + 1), ALCM_E_ARG);
	assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(alcm_writer_detail(w), "format 1.0"));
	alcm_writer_free(w);

	unlink(path);
	assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM | NO_SYNC, NULL), ALCM_OK);
	add_all(w, s, 1);
	assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
	assert_int_equal(alcm_writer_require_minor(w, 0), ALCM_OK);
	assert_int_equal(alcm_writer_minor(w), 1);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_E_STATE);
	alcm_writer_free(w);
	alcm_reader *r = NULL;
	unsigned major, minor;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	alcm_reader_version(r, &major, &minor);
	assert_int_equal(minor, 1);
	check_reader(r, s, 1, 0);
	alcm_reader_free(r);
	/* The raised header survives appends, which keep the file's fixed header. */
	append_secs(path, s + 1, 1, 1);
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, NO_SYNC), ALCM_OK);
	assert_int_equal(alcm_writer_minor(w), 1);
	assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
	alcm_writer_free(w);
	unlink(path);
	free_secs(s);
}

/* ---- allocation failures ----------------------------------------------------------- */

typedef int (*alloc_op)(const alcm_allocator *a, void *ctx);

/* Runs op with allocation k failing, for k = 1, 2, ... until op needs no more. Every
 * failing run must end with ALCM_E_NOMEM and free everything. */
static long walk_failures(alloc_op op, void *ctx, void (*reset)(void *ctx))
{
	for (long k = 1;; k++) {
		tu_alloc ta;
		tu_alloc_init(&ta, k);
		if (reset)
			reset(ctx);
		int st = op(&ta.a, ctx);
		assert_int_equal(ta.live, 0);
		if (ta.calls < k) {
			assert_int_equal(st, ALCM_OK);
			return k - 1;
		}
		if (st != ALCM_E_NOMEM)
			fail_msg("allocation %ld of %ld failed: status %d, not ALCM_E_NOMEM", k, ta.calls,
			         st);
	}
}

typedef struct mem_ctx {
	const uint8_t *p;
	size_t len;
	const char *path;
	const uint8_t *orig;
	size_t orig_len;
	const sec *s;
	size_t n;
} mem_ctx;

static int op_open_memory(const alcm_allocator *a, void *v)
{
	mem_ctx *c = v;
	alcm_reader *r = NULL;
	uint8_t out[16];
	int st = alcm_reader_open_memory(&r, c->p, c->len, "x", NULL, a, 0);
	if (!st)
		st = alcm_reader_section_read(r, 1, out, sizeof(out));
	if (!st)
		st = alcm_reader_verify(r, NULL);
	alcm_reader_free(r);
	return st;
}

static int op_open_file(const alcm_allocator *a, void *v)
{
	mem_ctx *c = v;
	alcm_reader *r = NULL;
	uint8_t out[16];
	int st = alcm_reader_open_file(&r, c->path, NULL, a, 0);
	if (!st)
		st = alcm_reader_section_read(r, 1, out, sizeof(out));
	if (!st)
		st = alcm_reader_verify_section(r, 2);
	if (!st)
		st = alcm_reader_verify(r, NULL);
	alcm_reader_free(r);
	return st;
}

static int op_write_memory(const alcm_allocator *a, void *v)
{
	mem_ctx *c = v;
	alcm_writer *w = NULL;
	int st = alcm_writer_open_memory(&w, NO_SYNC, a);
	for (size_t i = 0; i < c->n && !st; i++)
		st = alcm_writer_add_section(w, c->s[i].type, c->s[i].flags, c->s[i].tag, c->s[i].data,
		                             c->s[i].len, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (st && w) {
		/* Poisoned: every later call says so. */
		assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "x", 1, NULL), ALCM_E_STATE);
		assert_int_equal(alcm_writer_commit(w), ALCM_E_STATE);
	}
	alcm_writer_free(w);
	return st;
}

static int op_write_file(const alcm_allocator *a, void *v)
{
	mem_ctx *c = v;
	alcm_writer *w = NULL;
	int st = alcm_writer_open_file(&w, c->path, NO_SYNC | ALCM_WRITE_OVERWRITE, a);
	for (size_t i = 0; i < c->n && !st; i++)
		st = alcm_writer_add_section(w, c->s[i].type, c->s[i].flags, c->s[i].tag, c->s[i].data,
		                             c->s[i].len, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	if (st)
		assert_false(tu_file_exists(c->path));
	return st;
}

static void reset_file(void *v)
{
	mem_ctx *c = v;
	unlink(c->path);
}

static int op_append(const alcm_allocator *a, void *v)
{
	mem_ctx *c = v;
	alcm_writer *w = NULL;
	int st = alcm_writer_open_append(&w, c->path, NULL, a, NO_SYNC);
	for (size_t i = 0; i < c->n && !st; i++)
		st = alcm_writer_add_section(w, c->s[i].type, c->s[i].flags, c->s[i].tag, c->s[i].data,
		                             c->s[i].len, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	if (st)
		expect_file(c->path, c->orig, c->orig_len);
	return st;
}

static void reset_append(void *v)
{
	mem_ctx *c = v;
	assert_int_equal(tu_write_file(c->path, c->orig, c->orig_len), 0);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	sec s[NSIZES];
	make_secs(s, 7);
	mem_ctx c = {0};
	c.s = s;
	c.n = NSIZES;
	c.p = pack_mem(s, NSIZES, 0, &c.len);
	c.path = tu_path("alloc.alcm");
	assert_int_equal(tu_write_file(c.path, c.p, c.len), 0);

	assert_true(walk_failures(op_open_memory, &c, NULL) >= 3);
	assert_true(walk_failures(op_open_file, &c, NULL) >= 4);
	assert_true(walk_failures(op_write_memory, &c, NULL) >= 3);
	unlink(c.path);
	c.path = tu_path("alloc-w.alcm");
	assert_true(walk_failures(op_write_file, &c, reset_file) >= 4);
	unlink(c.path);

	/* Append to a small stream archive: the file is untouched by every failed attempt. */
	c.path = tu_path("alloc-a.alcm");
	pack_file(c.path, s, 2, ALCM_WRITE_STREAM);
	c.orig = tu_read_file(c.path, &c.orig_len);
	c.s = s + 2;
	c.n = 3;
	assert_true(walk_failures(op_append, &c, reset_append) >= 5);
	unlink(c.path);
	free((void *)c.orig);
	free((void *)c.p);
	free_secs(s);
}

/* ---- a real section over 4 GiB, in a sparse file ---------------------------------- */

typedef struct peak_alloc {
	alcm_allocator a;
	size_t peak;
} peak_alloc;
static void *pk_malloc(void *o, size_t n)
{
	peak_alloc *p = o;
	if (n > p->peak)
		p->peak = n;
	return malloc(n);
}
static void *pk_realloc(void *o, void *q, size_t n)
{
	peak_alloc *p = o;
	if (n > p->peak)
		p->peak = n;
	return realloc(q, n);
}
static void pk_free(void *o, void *q)
{
	(void)o;
	free(q);
}

static void test_sparse_5gib(void **state)
{
	(void)state;
	const uint64_t big = (uint64_t)5 << 30;
	const char *path = tu_path("sparse.alcm");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint64_t toff = alcm_align_up(ALCM_HEADER_SIZE + big);
	if (ftruncate(fd, (off_t)toff) != 0) {
		close(fd);
		unlink(path);
		skip();
	}
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	if ((uint64_t)sb.st_blocks * 512 > ((uint64_t)1 << 20)) {
		/* No sparse files here: do not spend 5 GiB of disk on this. */
		close(fd);
		unlink(path);
		skip();
	}
	alcm_entry e;
	memset(&e, 0, sizeof(e));
	memcpy(e.type, "XBIG", 4);
	e.offset = ALCM_HEADER_SIZE;
	e.length = big;
	uint8_t *tbl;
	size_t tlen;
	assert_int_equal(alcm_table_build(NULL, &e, 1, &tbl, &tlen), ALCM_OK);
	uint8_t h[ALCM_HEADER_SIZE] = {0};
	alcm_header_fixed_build(h, 0, 0);
	alcm_slot_build(h + ALCM_SLOT_A, h, 1, toff, tlen);
	assert_int_equal(alcm_pwrite_all(fd, tbl, tlen, toff), 0);
	assert_int_equal(alcm_pwrite_all(fd, h, sizeof(h), 0), 0);
	close(fd);
	free(tbl);

	peak_alloc pa = {{pk_malloc, pk_realloc, pk_free, NULL}, 0};
	pa.a.opaque = &pa;
	alcm_reader *r = NULL;
	alcm_section_info si;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, &pa.a, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_info(r, 0, &si), ALCM_OK);
	assert_int_equal(si.length, big);
	uint8_t out[8] = {1};
	assert_int_equal(alcm_reader_section_pread(r, 0, big - 8, out, 8), ALCM_OK);
	assert_int_equal(out[7], 0);
	assert_int_equal(alcm_reader_section_pread(r, 0, big - 7, out, 8), ALCM_E_ARG);
	/* section_read refuses a buffer smaller than the section without touching it. */
	assert_int_equal(alcm_reader_section_read(r, 0, out, sizeof(out)), ALCM_E_ARG);
	alcm_reader_free(r);
	assert_true(pa.peak < 4096);

	/* Over the limit: LIMIT, not CORRUPT, since the bytes are really there. */
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_section_bytes = (uint64_t)4 << 30;
	assert_int_equal(alcm_reader_open_file(&r, path, &lim, &pa.a, 0), ALCM_E_LIMIT);
	char want[200];
	snprintf(want, sizeof(want), "section 0 (XBIG): length 5368709120 at offset %llu exceeds "
	         "the limit of 4294967296 bytes", (unsigned long long)toff + 16 + 24);
	assert_non_null(strstr(alcm_reader_detail(r), want));
	alcm_reader_free(r);
	assert_true(pa.peak < 4096);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_memory),
		cmocka_unit_test(test_roundtrip_file),
		cmocka_unit_test(test_streamed_section),
		cmocka_unit_test(test_section_hashed_elsewhere),
		cmocka_unit_test(test_find_section),
		cmocka_unit_test(test_unknown_optional_and_tags),
		cmocka_unit_test(test_digest_state),
		cmocka_unit_test(test_verify_large_section),
		cmocka_unit_test(test_empty_archive),
		cmocka_unit_test(test_writer_misuse),
		cmocka_unit_test(test_reader_misuse),
		cmocka_unit_test(test_atomic_writer),
		cmocka_unit_test(test_synced_write),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_append_refused),
		cmocka_unit_test(test_append_crash),
		cmocka_unit_test(test_append_higher_minor),
		cmocka_unit_test(test_require_minor),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_sparse_5gib),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
