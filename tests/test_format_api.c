/*
 * The container API's contract at its edges: every status has its own message, NULL and
 * out-of-range arguments are refused (never dereferenced), accessors of a failed open are
 * safe, a caller's allocator sees every block returned, and messages quote hostile names
 * safely. What a program embedding libalcm relies on when it handles errors.
 */
#include "testutil.h"
#include "format_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_strerror_distinct(void **state)
{
	(void)state;
	const char *seen[ALCM_E_BUSY + 1];
	for (int s = ALCM_OK; s <= ALCM_E_BUSY; s++) {
		seen[s] = alcm_strerror(s);
		assert_non_null(seen[s]);
		assert_true(strlen(seen[s]) > 3);
		for (int k = 0; k < s; k++)
			assert_string_not_equal(seen[k], seen[s]);
	}
	/* Statuses from a newer library or garbage still get a message. */
	const char *u = alcm_strerror(ALCM_E_BUSY + 1);
	assert_non_null(u);
	assert_string_equal(u, alcm_strerror(-7));
	for (int s = ALCM_OK; s <= ALCM_E_BUSY; s++)
		assert_string_not_equal(u, seen[s]);
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", ALCM_VERSION_MAJOR, ALCM_VERSION_MINOR,
	         ALCM_VERSION_PATCH);
	assert_string_equal(alcm_version(), want);
}

static void test_reader_arguments(void **state)
{
	(void)state;
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_file(NULL, "x.alcm", NULL, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_open_file(&r, NULL, NULL, NULL, 0), ALCM_E_ARG);
	alcm_reader_free(r);
	r = NULL;
	assert_int_equal(alcm_reader_open_memory(NULL, "", 0, NULL, NULL, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_open_memory(&r, NULL, 16, NULL, NULL, NULL, 0), ALCM_E_ARG);
	alcm_reader_free(r);
	r = NULL;
	/* Zero bytes with a NULL buffer is an empty file: malformed, not a crash. */
	assert_int_equal(alcm_reader_open_memory(&r, NULL, 0, NULL, NULL, NULL, 0), ALCM_E_CORRUPT);
	assert_true(strlen(alcm_reader_detail(r)) > 0);
	alcm_reader_free(r);

	/* Accessors on NULL answer zero, as documented, instead of crashing. */
	unsigned ma = 9, mi = 9;
	alcm_reader_version(NULL, &ma, &mi);
	assert_int_equal(ma, 0);
	assert_int_equal(mi, 0);
	alcm_reader_version(NULL, NULL, NULL);
	assert_int_equal(alcm_reader_flags(NULL), 0);
	assert_int_equal(alcm_reader_tail_bytes(NULL), 0);
	assert_int_equal(alcm_reader_generation(NULL), 0);
	assert_int_equal(alcm_reader_file_size(NULL), 0);
	assert_int_equal(alcm_reader_section_count(NULL), 0);
	assert_null(alcm_reader_section_data(NULL, 0));
	alcm_reader_free(NULL);
}

/* A valid two-section archive in memory. */
static uint8_t *two_sections(size_t *len)
{
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "AAAA", 0, 1, "hello", 5, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "BBBB", 0, 2, "", 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	assert_int_equal(alcm_writer_memory(w, &buf, len), ALCM_OK);
	uint8_t *copy = malloc(*len);
	assert_non_null(copy);
	memcpy(copy, buf, *len);
	alcm_writer_free(w);
	return copy;
}

static void test_reader_ranges(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = two_sections(&len);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, NULL, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_count(r), 2);
	alcm_section_info si;
	assert_int_equal(alcm_reader_section_info(r, 2, &si), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_info(NULL, 0, &si), ALCM_E_ARG);
	uint8_t out[8];
	/* Out of range, too small a buffer, a NULL buffer for a non-empty section. */
	assert_int_equal(alcm_reader_section_read(r, 2, out, sizeof(out)), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_read(r, 0, out, 4), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_read(r, 0, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_read(r, 1, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_read(r, 0, out, sizeof(out)), ALCM_OK);
	assert_memory_equal(out, "hello", 5);
	/* pread: inside the section only; pos + len overflowing 64 bits is refused too. */
	assert_int_equal(alcm_reader_section_pread(r, 0, 1, out, 4), ALCM_OK);
	assert_memory_equal(out, "ello", 4);
	assert_int_equal(alcm_reader_section_pread(r, 0, 2, out, 4), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_pread(r, 0, UINT64_MAX, out, 2), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_pread(r, 0, 0, NULL, 1), ALCM_E_ARG);
	assert_int_equal(alcm_reader_section_pread(r, 5, 0, out, 1), ALCM_E_ARG);
	assert_int_equal(alcm_reader_verify_section(r, 2), ALCM_E_ARG);
	assert_int_equal(alcm_reader_verify_section(NULL, 0), ALCM_E_ARG);
	assert_null(alcm_reader_section_data(r, 2));
	assert_non_null(alcm_reader_section_data(r, 0));
	uint32_t idx = 77;
	assert_int_equal(alcm_reader_find_section(r, "CCCC", 0, &idx), ALCM_E_NOTFOUND);
	assert_int_equal(alcm_reader_find_section(r, "BBBB", 0, &idx), ALCM_OK);
	assert_int_equal(idx, 1);
	assert_int_equal(alcm_reader_find_section(r, "AAAA", 1, &idx), ALCM_E_NOTFOUND);
	alcm_reader_free(r);
	free(buf);
}

static void test_writer_arguments(void **state)
{
	(void)state;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_file(NULL, "x.alcm", 0, NULL), ALCM_E_ARG);
	assert_int_equal(alcm_writer_open_file(&w, NULL, 0, NULL), ALCM_E_ARG);
	alcm_writer_free(w);
	w = NULL;
	assert_int_equal(alcm_writer_open_file(&w, "", 0, NULL), ALCM_E_ARG);
	alcm_writer_free(w);
	w = NULL;
	assert_int_equal(alcm_writer_open_append(NULL, "x.alcm", NULL, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	/* Writing outside a section, ending none, NULL data with a length: refused. */
	assert_int_equal(alcm_writer_section_write(w, "x", 1), ALCM_E_STATE);
	assert_int_equal(alcm_writer_section_end(w, NULL), ALCM_E_STATE);
	assert_int_equal(alcm_writer_section_begin(w, "DATA", 0, 0), ALCM_OK);
	assert_int_equal(alcm_writer_section_write(w, NULL, 3), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_write(w, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_writer_section_end(w, NULL), ALCM_OK);
	alcm_section_info si;
	assert_int_equal(alcm_writer_section_info(w, 1, &si), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_info(w, 0, &si), ALCM_OK);
	assert_int_equal(si.length, 0);
	/* The archive bytes exist only after commit. */
	const void *buf;
	size_t len;
	assert_int_not_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	assert_true(len > 0);
	alcm_writer_free(w);
	assert_int_equal(alcm_writer_bytes(NULL), 0);
	assert_int_equal(alcm_writer_flags(NULL), 0);
	assert_int_equal(alcm_writer_section_count(NULL), 0);
	alcm_writer_free(NULL);
}

/* Every block the library takes from a caller's allocator goes back to it. */
static void test_caller_allocator(void **state)
{
	(void)state;
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, &ta.a), ALCM_OK);
	uint8_t big[10000];
	memset(big, 7, sizeof(big));
	for (int i = 0; i < 40; i++)
		assert_int_equal(alcm_writer_add_section(w, "DATA", 0, (uint32_t)i, big, sizeof(big),
		                                         NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "mem", NULL, &ta.a, 0), ALCM_OK);
	uint32_t bad;
	assert_int_equal(alcm_reader_verify(r, &bad), ALCM_OK);
	assert_true(ta.calls > 2);
	assert_true(ta.live > 0);
	alcm_reader_free(r);
	alcm_writer_free(w);
	assert_int_equal(ta.live, 0);
	/* An allocator missing a function is not used half-way: the library falls back to libc
	 * for all three. */
	tu_alloc_init(&ta, 0);
	ta.a.realloc_fn = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, &ta.a), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "DATA", 0, 0, big, sizeof(big), NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	assert_int_equal(ta.calls, 0);
}

static void test_internal_helpers(void **state)
{
	(void)state;
	/* calloc's count * size overflow is an allocation failure, not a short block. */
	assert_null(alcm_mem_calloc(NULL, SIZE_MAX / 2, 3));
	void *p = alcm_mem_calloc(NULL, 0, 8); /* zero bytes: a valid, freeable pointer */
	assert_non_null(p);
	alcm_mem_free(NULL, p);
	/* Quoting a hostile name for a message: escaped, bounded, always terminated. */
	char q[16], wide[32];
	alcm_detail_quote(wide, sizeof(wide), "a\n'b", 4);
	assert_string_equal(wide, "a\\x0a\\x27b");
	alcm_detail_quote(q, sizeof(q), "abcdefghijklmnopqrstuvwxyz", 26);
	assert_true(strlen(q) < sizeof(q));
	assert_non_null(strstr(q, "..."));
	q[0] = 'z';
	alcm_detail_quote(q, 0, "abc", 3); /* no room at all: nothing written */
	assert_int_equal(q[0], 'z');
	alcm_detail_set(NULL, "%s", "ignored"); /* a NULL detail buffer is allowed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_distinct),
		cmocka_unit_test(test_reader_arguments),
		cmocka_unit_test(test_reader_ranges),
		cmocka_unit_test(test_writer_arguments),
		cmocka_unit_test(test_caller_allocator),
		cmocka_unit_test(test_internal_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
