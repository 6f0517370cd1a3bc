/* Decoding on two threads: small tensors stay on the caller's thread, and the next tensor's
 * sections read and verified ahead (lib/archive.c) decode to the same bytes and fail the same
 * way as when each tensor reads its own. */
#include "codec_internal.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef tu_packed packed;

#define NT 4

typedef tu_set set;

/* NT float32 tensors of n values each, N(0, 0.05). */
static void make_set(set *s, uint64_t n, uint64_t seed)
{
	tu_set_make(s, NT, n, seed, -1);
}

/* Threads of this process, from /proc/self/status. */
static int threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* Decodes every tensor (order: 1 ascending, -1 descending) with `threads`; statuses in st[],
 * outputs in out[] (the caller frees them). */
static void decode_all(const void *buf, size_t len, unsigned threads, int order, int *st,
                       uint8_t **out, int *peak_threads)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "m", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_set_threads(a, threads), ALCM_OK);
	size_t n = alcm_archive_tensor_count(a);
	for (size_t j = 0; j < n; j++) {
		size_t i = order > 0 ? j : n - 1 - j;
		alcm_tensor_info ti;
		assert_int_equal(alcm_archive_tensor_info(a, i, &ti), ALCM_OK);
		out[i] = calloc(1, ti.raw_bytes);
		st[i] = alcm_archive_decode(a, i, out[i], ti.raw_bytes);
		if (st[i] == ALCM_E_DIGEST)
			assert_non_null(strstr(alcm_archive_detail(a), "digest mismatch in section"));
	}
	if (peak_threads)
		*peak_threads = threads_now();
	alcm_archive_free(a);
	alcm_reader_free(r);
}

/* Tensors of a few KB: the second thread would cost more than it gives, so none starts. Old
 * code started one for every run with a digest (the digest was a job of its own). */
static void test_small_tensors_start_no_thread(void **state)
{
	(void)state;
	set s;
	make_set(&s, 2000, 5);
	for (int mode = 0; mode < 2; mode++) {
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.mode = mode ? ALCM_MODE_MAX_ERROR : ALCM_MODE_LOSSLESS;
		o.bound = 1e-3;
		packed p;
		assert_int_equal(tu_pack(s.t, NT, &o, &p, NULL), ALCM_OK);
		int st[NT], th = 0;
		uint8_t *out[NT];
		int before = threads_now();
		decode_all(p.buf, p.len, 2, 1, st, out, &th);
		assert_int_equal(th, before);
		for (int i = 0; i < NT; i++) {
			assert_int_equal(st[i], ALCM_OK);
			if (!mode)
				assert_memory_equal(out[i], s.data[i], s.t[i].nbytes);
			free(out[i]);
		}
		alcm_writer_free(p.w);
	}
	tu_set_free(&s);
}

/* Two shapes of file: tensors of 250000 values in 4 chunks (the next tensor's sections are
 * verified ahead), and of 25000 values in one chunk (each decoded on the caller's thread,
 * digest included). */
static const uint64_t sizes[2] = {250000, 25000};

static void pack_modes(const set *s, int mode, packed *p)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	/* 4 chunks a tensor of the first size; read-ahead up to 2 MB at T=2 */
	o.chunk_bytes = (uint64_t)1 << 18;
	o.mode = mode == 0 ? ALCM_MODE_LOSSLESS : mode == 1 ? ALCM_MODE_REL_ERROR
	                                                    : ALCM_MODE_MAX_ERROR;
	o.bound = mode == 1 ? 1e-4 : 1e-5;
	o.prune = mode == 1 ? 0.2 : 0; /* MASK sections */
	assert_int_equal(tu_pack(s->t, NT, &o, p, NULL), ALCM_OK);
}

/* Sections read and verified ahead decode to the bytes each tensor's own reads give, in
 * any order and at any thread count. */
static void test_ahead_same_result(void **state)
{
	(void)state;
	for (int z = 0; z < 2; z++) {
	set s;
	make_set(&s, sizes[z], 7);
	for (int mode = 0; mode < 3; mode++) {
		packed p;
		pack_modes(&s, mode, &p);
		int st[NT];
		uint8_t *ref[NT], *out[NT];
		decode_all(p.buf, p.len, 1, 1, st, ref, NULL);
		for (int i = 0; i < NT; i++)
			assert_int_equal(st[i], ALCM_OK);
		for (unsigned th = 2; th <= 3; th++)
			for (int order = -1; order <= 1; order += 2) {
				decode_all(p.buf, p.len, th, order, st, out, NULL);
				for (int i = 0; i < NT; i++) {
					assert_int_equal(st[i], ALCM_OK);
					assert_memory_equal(out[i], ref[i], s.t[i].nbytes);
					free(out[i]);
				}
			}
		for (int i = 0; i < NT; i++)
			free(ref[i]);
		alcm_writer_free(p.w);
	}
	tu_set_free(&s);
	}
}

/* A damaged byte in tensor 2's data or mask section: tensors 0 and 1 decode, tensor 2 fails
 * with a digest mismatch, at one thread and at two (where tensor 2 is read ahead while tensor
 * 1 decodes). A damaged mask used to show as a malformed chunk (only the data section was
 * checked after a decode error). */
static void test_ahead_damaged_next(void **state)
{
	(void)state;
	for (int z = 0; z < 2; z++) {
	set s;
	make_set(&s, sizes[z], 9);
	for (int mode = 0; mode < 3; mode++)
		for (int in_mask = 0; in_mask < (mode == 1 ? 2 : 1); in_mask++) {
			packed p;
			pack_modes(&s, mode, &p);
			uint8_t *bad = malloc(p.len);
			memcpy(bad, p.buf, p.len);
			alcm_reader *r = NULL;
			assert_int_equal(alcm_reader_open_memory(&r, p.buf, p.len, "m", NULL, NULL, 0),
			                 ALCM_OK);
			const char *type = in_mask ? "MASK" : mode ? "QDAT" : "LDAT";
			uint32_t k = 0;
			for (int i = 0; i < 3; i++)
				assert_int_equal(alcm_reader_find_section(r, type, i ? k + 1 : 0, &k), ALCM_OK);
			alcm_section_info si;
			assert_int_equal(alcm_reader_section_info(r, k, &si), ALCM_OK);
			alcm_reader_free(r);
			bad[si.offset + si.length / 2] ^= 0x10;
			int st1[NT], st2[NT];
			uint8_t *o1[NT], *o2[NT];
			uint64_t planned = alcm_ahead_planned;
			decode_all(bad, p.len, 1, 1, st1, o1, NULL);
			decode_all(bad, p.len, 2, 1, st2, o2, NULL);
			if (z == 0) /* tensors of 4 chunks: tensor 2 read ahead */
				assert_int_equal(alcm_ahead_planned - planned, 1);
			for (int i = 0; i < 2; i++) {
				assert_int_equal(st1[i], ALCM_OK);
				assert_int_equal(st2[i], ALCM_OK);
				assert_memory_equal(o1[i], o2[i], s.t[i].nbytes);
			}
			assert_int_equal(st1[2], ALCM_E_DIGEST);
			assert_int_equal(st2[2], ALCM_E_DIGEST);
			assert_int_equal(st2[3], st1[3]); /* poisoned: bad state */
			for (int i = 0; i < NT; i++) {
				free(o1[i]);
				free(o2[i]);
			}
			free(bad);
			alcm_writer_free(p.w);
		}
	tu_set_free(&s);
	}
}

/* Only a caller decoding in order has the next tensor read ahead: a tensor decoded alone
 * (the first, one in the middle, or after a jump back) reads nothing more, so that loading
 * one tensor holds that tensor's chunks, not the next one's whole section too (78.7 MiB
 * of peak RSS growth for a 32 MiB tensor before, alcm.open(path)[name] in python_bench.py).
 * In order from tensor 0 of 4: tensor 1 plans tensor 2, tensor 2 takes it, tensor 3 is the
 * last; 3, 1, 2, 3: tensor 2 follows 1 and plans 3. */
static void test_ahead_only_in_order(void **state)
{
	(void)state;
	set s;
	make_set(&s, sizes[0], 13);
	packed p;
	pack_modes(&s, 0, &p);
	static const int runs[][NT] = {{2, -1}, {0, -1}, {3, 2, 1, -1}, {1, 0, -1},
	                               {0, 1, 2, 3}, {3, 1, 2, 3}};
	static const uint64_t want[] = {0, 0, 0, 0, 1, 1};
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
		alcm_reader *r = NULL;
		alcm_archive *a = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, p.buf, p.len, "m", NULL, NULL, 0),
		                 ALCM_OK);
		assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
		assert_int_equal(alcm_archive_set_threads(a, 2), ALCM_OK);
		uint64_t planned = alcm_ahead_planned;
		for (int j = 0; j < NT && runs[k][j] >= 0; j++) {
			int i = runs[k][j];
			uint8_t *out = malloc(s.t[i].nbytes);
			assert_int_equal(alcm_archive_decode(a, (size_t)i, out, s.t[i].nbytes), ALCM_OK);
			assert_memory_equal(out, s.data[i], s.t[i].nbytes);
			free(out);
		}
		assert_int_equal(alcm_ahead_planned - planned, want[k]);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* The archive in `src` rewritten section by section with byte `at` of section `idx` set to
 * `v`: every digest matches, so the change reaches the decoder. */
static void rewrite(const packed *src, uint32_t idx, uint64_t at, uint8_t v, packed *out)
{
	alcm_reader *r = NULL;
	alcm_writer *w = NULL;
	unsigned major, minor;
	assert_int_equal(alcm_reader_open_memory(&r, src->buf, src->len, "m", NULL, NULL, 0),
	                 ALCM_OK);
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	alcm_reader_version(r, &major, &minor);
	assert_int_equal(alcm_writer_require_minor(w, minor), ALCM_OK);
	for (uint32_t i = 0; i < alcm_reader_section_count(r); i++) {
		alcm_section_info si;
		assert_int_equal(alcm_reader_section_info(r, i, &si), ALCM_OK);
		uint8_t *b = malloc(si.length ? si.length : 1);
		assert_int_equal(alcm_reader_section_read(r, i, b, si.length), ALCM_OK);
		if (i == idx)
			b[at] = v;
		uint32_t k;
		assert_int_equal(alcm_writer_add_section(w, si.type, si.flags, si.tag, b, si.length,
		                                         &k), ALCM_OK);
		assert_int_equal(k, i);
		free(b);
	}
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &out->buf, &out->len), ALCM_OK);
	out->w = w;
	alcm_reader_free(r);
}

/* A chunk whose digest matches but whose coding is unknown fails with the same status and
 * message at one thread and at two. */
static void test_ahead_bad_chunk_same_error(void **state)
{
	(void)state;
	set s;
	make_set(&s, sizes[1], 11);
	for (int mode = 0; mode < 3; mode += 2) {
		packed p, bad;
		pack_modes(&s, mode, &p);
		alcm_reader *r = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, p.buf, p.len, "m", NULL, NULL, 0),
		                 ALCM_OK);
		uint32_t k0, k1;
		const char *type = mode ? "QDAT" : "LDAT";
		assert_int_equal(alcm_reader_find_section(r, type, 0, &k0), ALCM_OK);
		assert_int_equal(alcm_reader_find_section(r, type, k0 + 1, &k1), ALCM_OK);
		alcm_reader_free(r);
		rewrite(&p, k1, 0, 0xEE, &bad); /* the chunk's first byte: its transform or coding */
		char detail[2][512];
		int st[2][NT];
		for (unsigned th = 1; th <= 2; th++) {
			alcm_archive *a = NULL;
			assert_int_equal(alcm_reader_open_memory(&r, bad.buf, bad.len, "m", NULL, NULL, 0),
			                 ALCM_OK);
			assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
			assert_int_equal(alcm_archive_set_threads(a, th), ALCM_OK);
			uint8_t *out = malloc(s.t[0].nbytes);
			for (int i = 0; i < NT; i++) {
				st[th - 1][i] = alcm_archive_decode(a, (size_t)i, out, s.t[0].nbytes);
				if (i == 1)
					snprintf(detail[th - 1], sizeof(detail[0]), "%s", alcm_archive_detail(a));
			}
			free(out);
			alcm_archive_free(a);
			alcm_reader_free(r);
		}
		assert_int_equal(st[0][0], ALCM_OK);
		assert_true(st[0][1] == ALCM_E_CORRUPT || st[0][1] == ALCM_E_UNSUPPORTED);
		assert_memory_equal(st[0], st[1], sizeof(st[0]));
		assert_string_equal(detail[0], detail[1]);
		alcm_writer_free(bad.w);
		alcm_writer_free(p.w);
	}
	tu_set_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_tensors_start_no_thread),
		cmocka_unit_test(test_ahead_same_result),
		cmocka_unit_test(test_ahead_damaged_next),
		cmocka_unit_test(test_ahead_only_in_order),
		cmocka_unit_test(test_ahead_bad_chunk_same_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
