/* Hostile directories and chunks with correct digests: zero-element tensors with huge
 * dimensions, declared lengths beyond what a chunk can hold, and the memory a decoder spends
 * on them (spec 5.6, 6.3, 6.5.4). */
#include "testutil.h"
#include "forge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- an allocator that knows the peak of its live bytes ---- */

typedef struct peak_alloc {
	alcm_allocator a;
	size_t live, peak, cap; /* cap: refuse a block that would take live bytes past it */
} peak_alloc;

static void *pa_malloc(void *o, size_t n)
{
	peak_alloc *p = o;
	if (p->cap && (n > p->cap || p->live + n > p->cap))
		return NULL;
	size_t *b = malloc(n + 16);
	if (!b)
		return NULL;
	b[0] = n;
	p->live += n;
	if (p->live > p->peak)
		p->peak = p->live;
	return (uint8_t *)b + 16;
}
static void pa_free(void *o, void *q)
{
	peak_alloc *p = o;
	if (!q)
		return;
	size_t *b = (size_t *)((uint8_t *)q - 16);
	p->live -= b[0];
	free(b);
}
static void *pa_realloc(void *o, void *q, size_t n)
{
	if (!q)
		return pa_malloc(o, n);
	size_t old = ((size_t *)((uint8_t *)q - 16))[0];
	void *r = pa_malloc(o, n);
	if (!r)
		return NULL;
	memcpy(r, q, old < n ? old : n);
	pa_free(o, q);
	return r;
}
static void pa_init(peak_alloc *p, size_t cap)
{
	memset(p, 0, sizeof(*p));
	p->a = (alcm_allocator){pa_malloc, pa_realloc, pa_free, p};
	p->cap = cap;
}

/* ---- helpers ---- */

typedef struct opened {
	uint8_t *bytes;
	size_t len;
	alcm_reader *r;
	alcm_archive *a;
	int st;
} opened;

static opened open_sections(const fg_section *s, size_t n, const alcm_allocator *al)
{
	opened o = {0};
	o.bytes = fg_archive(s, n, 0, &o.len);
	assert_non_null(o.bytes);
	o.st = alcm_reader_open_memory(&o.r, o.bytes, o.len, "forged", NULL, al, 0);
	assert_int_equal(o.st, ALCM_OK);
	o.st = alcm_archive_open(&o.a, o.r, al);
	return o;
}

static void close_opened(opened *o)
{
	alcm_archive_free(o->a);
	alcm_reader_free(o->r);
	free(o->bytes);
}

/* An archive of one tensor: its data section, an optional SCAL, the directory. */
static opened one_tensor(const fg_entry *e, const fg_buf *data, const fg_buf *scal,
                         const alcm_allocator *al)
{
	fg_buf dir = {0};
	fg_tdir(&dir, e, 1);
	fg_section s[3] = {
		{e->mode ? "QDAT" : "LDAT", 1, 0, data->p, data->len},
		{"SCAL", 1, 0, scal ? scal->p : NULL, scal ? scal->len : 0},
		{"TDIR", 1, 0, dir.p, dir.len},
	};
	if (!scal)
		s[1] = s[2];
	opened o = open_sections(s, scal ? 3 : 2, al);
	fg_free(&dir);
	return o;
}

/* ---- zero-element tensors ---- */

/* The archive: a rel-error tensor of shape [2^61 + 1, 0]. SCAL's required length
 * 8 * shape[0] wraps to 8 bytes; the old reader accepted the directory and then read 2^61
 * steps out of an 8-byte block. A tensor without elements is stored losslessly (spec 6.3),
 * so every lossy mode on it is refused at the directory, whatever its SCAL. */
static void test_zero_elements_lossy_refused(void **state)
{
	(void)state;
	const uint64_t dims[] = {((uint64_t)1 << 61) + 1, (uint64_t)1 << 63, 0, 5};
	for (int mode = 1; mode <= 4; mode++)
		for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
			fg_entry e = {"w", ALCM_DTYPE_F32, mode, 2, {dims[d], 0}, 0, 1, FG_NONE, 1024, 0,
			              NULL};
			fg_buf data = {0}, scal = {0};
			fg_u64(&scal, 0x3ff0000000000000ull); /* one step of 1.0: 8 bytes */
			opened o = one_tensor(&e, &data, &scal, NULL);
			if (o.st != ALCM_E_CORRUPT)
				fail_msg("mode %d, shape [%llu, 0]: status %d, want corrupt", mode,
				         (unsigned long long)dims[d], o.st);
			assert_non_null(strstr(alcm_archive_detail(o.a), "without elements"));
			close_opened(&o);
			fg_free(&scal);
		}
}

/* What writers store for a zero-element tensor in every mode: lossless, an empty LDAT, no
 * chunk; it reads back, measures and compares at once, whatever its dimensions. */
static void test_zero_elements_every_mode(void **state)
{
	(void)state;
	const uint64_t shapes[][3] = {
		{((uint64_t)1 << 61) + 5, 0, 0}, {(uint64_t)1 << 63, 0, 0}, {0, (uint64_t)1 << 62, 3},
		{7, 0, 0}};
	const uint32_t ranks[] = {2, 2, 3, 2};
	for (int mode = 0; mode <= 4; mode++)
		for (size_t k = 0; k < 4; k++) {
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.mode = mode;
			o.bound = mode == ALCM_MODE_SNR ? 40 : 0.01;
			o.bits = 8;
			o.prune = mode ? 0.1 : 0;
			alcm_tensor t;
			memset(&t, 0, sizeof(t));
			t.name = "empty";
			t.name_len = 5;
			t.dtype = ALCM_DTYPE_F16;
			t.ndim = ranks[k];
			memcpy(t.shape, shapes[k], sizeof(shapes[k]));
			alcm_writer *w = NULL;
			alcm_encoder *e = NULL;
			alcm_tensor_report rep;
			uint8_t recon[1];
			assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
			assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
			assert_int_equal(alcm_encoder_add_recon(e, &t, &rep, recon), ALCM_OK);
			assert_int_equal(rep.mode, ALCM_MODE_LOSSLESS);
			assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
			assert_int_equal(alcm_writer_commit(w), ALCM_OK);
			const void *buf;
			size_t len;
			assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
			alcm_reader *r = NULL;
			alcm_archive *a = NULL;
			assert_int_equal(alcm_reader_open_memory(&r, buf, len, "z", NULL, NULL, 0), ALCM_OK);
			assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
			alcm_tensor_info ti;
			assert_int_equal(alcm_archive_tensor_info(a, 0, &ti), ALCM_OK);
			assert_int_equal(ti.mode, ALCM_MODE_LOSSLESS);
			assert_int_equal(ti.elements, 0);
			assert_int_equal(ti.chunks, 0);
			assert_int_equal(ti.scales, 0);
			assert_int_equal(ti.stored_bytes, 0);
			assert_memory_equal(ti.shape, shapes[k], ranks[k] * sizeof(uint64_t));
			uint8_t out[1];
			assert_int_equal(alcm_archive_decode(a, 0, out, 0), ALCM_OK);
			alcm_error_stats es;
			assert_int_equal(alcm_tensor_measure(&t, out, &es), ALCM_OK);
			assert_true(alcm_error_within(&es, mode, o.bound));
			alcm_section_info si;
			assert_int_equal(alcm_reader_section_info(r, 0, &si), ALCM_OK);
			assert_string_equal(si.type, "LDAT");
			assert_int_equal(si.length, 0);
			alcm_archive_free(a);
			alcm_reader_free(r);
			alcm_encoder_free(e);
			alcm_writer_free(w);
		}
}

/* alcm_tensor_measure() walks channels of axis 0, never more than the elements: a shape of
 * [2^63, 0] is one empty pass (it looped 2^63 times), and a shape that disagrees with the
 * byte count is refused. */
static void test_measure_bounded_by_elements(void **state)
{
	(void)state;
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 2;
	t.shape[0] = (uint64_t)1 << 63;
	alcm_error_stats es;
	assert_int_equal(alcm_tensor_measure(&t, NULL, &es), ALCM_OK);
	assert_true(es.identical);
	assert_true(alcm_error_within(&es, ALCM_MODE_REL_ERROR, 0.01));
	float x[4] = {1, 2, 3, 4};
	t.data = x;
	t.shape[1] = 4;
	t.nbytes = sizeof(x);
	assert_int_equal(alcm_tensor_measure(&t, x, &es), ALCM_E_ARG);
	t.shape[0] = 2;
	t.shape[1] = 2;
	assert_int_equal(alcm_tensor_measure(&t, x, &es), ALCM_OK);
}

/* ---- declared lengths ---- */

/* A QDAT chunk of n float32 elements: symbols (width 1, all zero) then an escape block. */
static void qdat_chunk(fg_buf *b, uint64_t n, const fg_buf *escape_stream, uint64_t esc_len)
{
	uint8_t *zeros = calloc(n ? n : 1, 1);
	fg_u8(b, 1);
	fg_varint(b, n);
	fg_stream(b, zeros, n, 3);
	fg_varint(b, esc_len);
	fg_put(b, escape_stream->p, escape_stream->len);
	free(zeros);
}

/* Decodes tensor 0 of a one-tensor QDAT archive under the counting allocator. */
static int decode_qdat(uint64_t n, const fg_buf *chunk, peak_alloc *pa, size_t *peak)
{
	uint64_t ctab[2] = {chunk->len, 0};
	fg_entry e = {"t", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 1, {n}, 0, 1, FG_NONE, n, 1, ctab};
	fg_buf scal = {0};
	fg_u64(&scal, 0x3f50624dd2f1a9fcull); /* step 0.001 */
	opened o = one_tensor(&e, chunk, &scal, &pa->a);
	int st = o.st;
	if (!st) {
		float *out = malloc(n * 4);
		size_t base = pa->live;
		pa->peak = base;
		st = alcm_archive_decode(o.a, 0, out, n * 4);
		*peak = pa->peak - base; /* what decoding took beyond the open archive */
		free(out);
	}
	close_opened(&o);
	fg_free(&scal);
	return st;
}

/*
 * The escape blocks, scaled down to a 1 MiB chunk: a length past what the chunk can
 * hold (10 + n + nsym * 4) is refused before anything is decoded; a length within it whose
 * block is zeros (no escape, then bytes left) is refused as soon as its count is read. The
 * old decoder allocated and inflated the whole declared block first (3.7 MB, then 1.3 MB
 * here; 3.76 GB in the issue).
 */
static void test_escape_length_bounded(void **state)
{
	(void)state;
	const uint64_t n = (uint64_t)1 << 18;
	const uint64_t lens[] = {10 + n * 14, 10 + n + n * 4 + 1, 10 + n + n * 4, n};
	const size_t scratch = n / 8 + 1 + 4 * n;
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		fg_buf esc = {0}, chunk = {0};
		fg_zero_stream(&esc, lens[k], 17); /* a 128 KiB window */
		qdat_chunk(&chunk, n, &esc, lens[k]);
		peak_alloc pa;
		pa_init(&pa, 0);
		size_t peak = 0;
		int st = decode_qdat(n, &chunk, &pa, &peak);
		if (st != ALCM_E_CORRUPT)
			fail_msg("escape block of %llu bytes: status %d, want corrupt",
			         (unsigned long long)lens[k], st);
		/* The chunk's bytes, its scratch, the zstd contexts and buffers: not the block. */
		if (peak > chunk.len + scratch + ((size_t)1 << 20))
			fail_msg("escape block of %llu bytes: decoding took %zu bytes (chunk %zu, "
			         "scratch %zu)", (unsigned long long)lens[k], peak, chunk.len, scratch);
		assert_int_equal(pa.live, 0);
		fg_free(&esc);
		fg_free(&chunk);
	}
}

/* Every value escaped (NaN): the block is about 5 bytes per element, more than the chunk's
 * scratch; it decodes exactly, streamed, and the decoder's memory stays within the chunk's
 * bytes and scratch plus the zstd window. */
static void test_escape_every_value(void **state)
{
	(void)state;
	const uint64_t n = (uint64_t)1 << 18;
	uint32_t *x = malloc(n * 4);
	for (uint64_t i = 0; i < n; i++)
		x[i] = 0x7fc00000u | (uint32_t)(i & 0xfffff);
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "nan";
	t.name_len = 3;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = n;
	t.data = x;
	t.nbytes = n * 4;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 0.01;
	o.chunk_bytes = n * 4;
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_tensor_report rep;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, &t, &rep), ALCM_OK);
	assert_int_equal(rep.escapes, n);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	peak_alloc pa;
	pa_init(&pa, 0);
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "nan", NULL, &pa.a, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, &pa.a), ALCM_OK);
	uint32_t *y = malloc(n * 4);
	pa.peak = pa.live;
	assert_int_equal(alcm_archive_decode(a, 0, y, n * 4), ALCM_OK);
	assert_memory_equal(x, y, n * 4);
	size_t took = pa.peak - pa.live;
	/* chunk (under 5n + 2n bytes) + scratch (4n) + window (the block, 5n) + contexts */
	if (took > 17 * n + ((size_t)1 << 20))
		fail_msg("decoding took %zu bytes for a chunk of %llu elements", took,
		         (unsigned long long)n);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	free(x);
	free(y);
}

/* A chunk table declaring more bytes than a chunk of its elements can take is refused at the
 * directory: the reader never allocates a chunk buffer of a forged size (here 4 MB of real
 * bytes for a tensor of 16 values). */
static void test_chunk_length_bounded(void **state)
{
	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		const uint64_t n = 16;
		fg_buf data = {0}, scal = {0};
		uint8_t *junk = calloc(1, (size_t)4 << 20);
		fg_put(&data, junk, (size_t)4 << 20);
		free(junk);
		fg_u64(&scal, 0x3f50624dd2f1a9fcull);
		uint64_t ctab[2] = {data.len, 0};
		fg_entry e = {"t", ALCM_DTYPE_F32, mode ? ALCM_MODE_MAX_ERROR : 0, 1, {n}, 0,
		              mode ? 1 : FG_NONE, FG_NONE, n, 1, ctab};
		peak_alloc pa;
		pa_init(&pa, 0);
		opened o = one_tensor(&e, &data, mode ? &scal : NULL, &pa.a);
		assert_int_equal(o.st, ALCM_E_CORRUPT);
		assert_non_null(strstr(alcm_archive_detail(o.a), "more than a chunk"));
		assert_true(pa.peak < ((size_t)1 << 20));
		close_opened(&o);
		fg_free(&data);
		fg_free(&scal);
	}
}

/* A zstd frame asking for a window past zstd_window_log_max is a limit error (spec 6.2), also
 * when decoded in one shot, which needs no window (zstd itself does not check it there); a
 * zstd payload longer than its raw length is corrupt (a writer stores raw bytes instead). */
static void test_window_and_coded_length(void **state)
{
	(void)state;
	const uint64_t n = (uint64_t)1 << 20; /* 4 MiB of float32 zeros */
	for (int k = 0; k < 3; k++) {
		fg_buf chunk = {0};
		fg_u8(&chunk, 0); /* transform 0: one stream of the element bytes */
		if (k < 2) {
			fg_zero_stream(&chunk, n * 4, k == 0 ? 20 : 23); /* windows 2^20, 2^22 */
		} else {
			uint8_t z[4] = {0};
			fg_zstd_stream(&chunk, z, 4); /* a valid frame of 4 bytes takes more than 4 */
		}
		uint64_t elems = k < 2 ? n : 1;
		uint64_t ctab[2] = {chunk.len, 0};
		fg_entry e = {"t", ALCM_DTYPE_F32, 0, 1, {elems}, 0, FG_NONE, FG_NONE, elems, 1, ctab};
		fg_buf dir = {0};
		fg_tdir(&dir, &e, 1);
		fg_section s[2] = {{"LDAT", 1, 0, chunk.p, chunk.len}, {"TDIR", 1, 0, dir.p, dir.len}};
		size_t len;
		uint8_t *bytes = fg_archive(s, 2, 0, &len);
		alcm_limits lim;
		alcm_limits_default(&lim);
		lim.zstd_window_log_max = 21;
		alcm_reader *r = NULL;
		alcm_archive *a = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, bytes, len, "w", &lim, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
		float *out = malloc(elems * 4);
		int st = alcm_archive_decode(a, 0, out, elems * 4);
		int want = k == 0 ? ALCM_OK : k == 1 ? ALCM_E_LIMIT : ALCM_E_CORRUPT;
		if (st != want)
			fail_msg("case %d: status %d, want %d (%s)", k, st, want, alcm_archive_detail(a));
		free(out);
		alcm_archive_free(a);
		alcm_reader_free(r);
		free(bytes);
		fg_free(&dir);
		fg_free(&chunk);
	}
}

/* ---- names ---- */

/* A directory naming two tensors alike is refused (which one would "a" be?), and the encoder
 * never writes one. */
static void test_duplicate_names(void **state)
{
	(void)state;
	uint64_t ctab[2] = {0, 0};
	fg_buf dir = {0};
	fg_entry e[2] = {
		{"a", ALCM_DTYPE_U8, 0, 1, {0}, 0, FG_NONE, FG_NONE, 16, 0, ctab},
		{"a", ALCM_DTYPE_U8, 0, 1, {0}, 1, FG_NONE, FG_NONE, 16, 0, ctab},
	};
	fg_tdir(&dir, e, 2);
	fg_section s[3] = {{"LDAT", 1, 0, NULL, 0}, {"LDAT", 1, 1, NULL, 0}, {"TDIR", 1, 0, dir.p, dir.len}};
	opened o = open_sections(s, 3, NULL);
	assert_int_equal(o.st, ALCM_E_CORRUPT);
	assert_non_null(strstr(alcm_archive_detail(o.a), "appears twice"));
	close_opened(&o);
	fg_free(&dir);

	alcm_writer *w = NULL;
	alcm_encoder *enc = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&enc, w, NULL, NULL), ALCM_OK);
	uint8_t v[3] = {1, 2, 3};
	char name[16];
	for (int i = 0; i < 300; i++) { /* past the first growth of the name table */
		alcm_tensor t = {name, (size_t)snprintf(name, sizeof(name), "t%d", i), ALCM_DTYPE_U8, 1,
		                 {3}, v, 3};
		assert_int_equal(alcm_encoder_add(enc, &t, NULL), ALCM_OK);
	}
	alcm_tensor t = {"t17", 3, ALCM_DTYPE_U8, 1, {3}, v, 3};
	assert_int_equal(alcm_encoder_add(enc, &t, NULL), ALCM_E_ARG);
	assert_non_null(strstr(alcm_encoder_detail(enc), "unique"));
	alcm_tensor t2 = {"", 0, ALCM_DTYPE_U8, 1, {3}, v, 3};
	assert_int_equal(alcm_encoder_add(enc, &t2, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(enc, &t2, NULL), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_finish(enc), ALCM_OK);
	alcm_encoder_free(enc);
	alcm_writer_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_elements_lossy_refused),
		cmocka_unit_test(test_zero_elements_every_mode),
		cmocka_unit_test(test_measure_bounded_by_elements),
		cmocka_unit_test(test_escape_length_bounded),
		cmocka_unit_test(test_escape_every_value),
		cmocka_unit_test(test_chunk_length_bounded),
		cmocka_unit_test(test_window_and_coded_length),
		cmocka_unit_test(test_duplicate_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
