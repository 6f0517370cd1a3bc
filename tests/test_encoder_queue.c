/* alcm_encoder_queue(): the pipelined add writes the archive alcm_encoder_add writes, byte for
 * byte, whatever the thread count; it is done with a tensor's data once the next call
 * returns; names stay unique across the tensor in flight; errors and undo still hold. */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT 9

typedef struct set {
	alcm_tensor t[NT];
	uint8_t *data[NT];
	char names[NT][16];
} set;

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Tensors of several dtypes and sizes: some of many chunks (4 KiB chunks), one of none, one
 * of one element, integers (stored losslessly under a lossy mode). */
static void make_set(set *s)
{
	static const int dt[NT] = {ALCM_DTYPE_F32, ALCM_DTYPE_F32, ALCM_DTYPE_I32, ALCM_DTYPE_F16,
	                           ALCM_DTYPE_F32, ALCM_DTYPE_F64, ALCM_DTYPE_BF16, ALCM_DTYPE_U8,
	                           ALCM_DTYPE_F32};
	static const uint64_t n[NT] = {5000, 3, 7000, 20000, 0, 1500, 9000, 12345, 1};
	uint64_t r = 18;
	for (int i = 0; i < NT; i++) {
		alcm_tensor *t = &s->t[i];
		memset(t, 0, sizeof(*t));
		snprintf(s->names[i], sizeof(s->names[i]), "layer%d.w", i);
		t->name = s->names[i];
		t->name_len = strlen(s->names[i]);
		t->dtype = dt[i];
		t->ndim = 2;
		t->shape[0] = n[i] % 2 ? 1 : 2;
		t->shape[1] = n[i] / t->shape[0];
		size_t w = alcm_dtype_size(dt[i]);
		t->nbytes = n[i] * w;
		s->data[i] = malloc(t->nbytes ? t->nbytes : 1);
		assert_non_null(s->data[i]);
		for (uint64_t k = 0; k < n[i]; k++) {
			double x = ((double)(rng_next(&r) % 20001) - 10000) / 1e5;
			uint8_t *p = s->data[i] + k * w;
			if (dt[i] == ALCM_DTYPE_F32) {
				float f = (float)x;
				memcpy(p, &f, 4);
			} else if (dt[i] == ALCM_DTYPE_F64) {
				memcpy(p, &x, 8);
			} else {
				uint64_t v = rng_next(&r) & (dt[i] == ALCM_DTYPE_F16 ? 0x3bffu : 0x3effu);
				memcpy(p, &v, w); /* little-endian host; finite halves and bfloat16s */
			}
		}
		t->data = s->data[i];
	}
}

static void free_set(set *s)
{
	for (int i = 0; i < NT; i++)
		free(s->data[i]);
}

/* lossy: 0 lossless, 1 max-error with pruning (gathered whole when given in pieces), 2
 * max-error alone (float32 and float64 tensors go to the queue in pieces). */
static alcm_pack_options opts(int lossy, unsigned threads)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.chunk_bytes = 4096;
	o.threads = threads;
	if (lossy) {
		o.mode = ALCM_MODE_MAX_ERROR;
		o.bound = 1e-3;
		o.prune = lossy == 1 ? 0.05 : 0;
	}
	return o;
}

/* For max-error alone: tensor 0 (float32, 5000 values) on a lattice of 201 points, which
 * alcm_quant_lattice() takes (its first chunk decides for the whole tensor); tensor 7 made
 * float32, its first chunk (1024 values) on that lattice and the rest not (the first chunk
 * alone cannot decide: gathered whole). */
static void lattice_variants(set *s)
{
	uint64_t r = 7;
	float *a = (float *)(void *)s->data[0];
	for (uint64_t k = 0; k < 5000; k++)
		a[k] = (float)((double)(rng_next(&r) % 201) * 0.004 - 0.4);
	alcm_tensor *t = &s->t[7];
	free(s->data[7]);
	t->dtype = ALCM_DTYPE_F32;
	t->nbytes = 12345 * 4;
	float *b = malloc((size_t)t->nbytes);
	assert_non_null(b);
	for (uint64_t k = 0; k < 12345; k++)
		b[k] = k < 1024 ? (float)((double)(rng_next(&r) % 201) * 0.004 - 0.4)
		                : (float)(((double)(rng_next(&r) % 20001) - 10000) / 1e5);
	s->data[7] = (uint8_t *)b;
	t->data = b;
}

/* The set s made, a memory writer and an encoder on it with opts(lossy, threads). */
static void enc_open(set *s, int lossy, unsigned threads, alcm_writer **w, alcm_encoder **e)
{
	make_set(s);
	alcm_pack_options o = opts(lossy, threads);
	*w = NULL;
	*e = NULL;
	assert_int_equal(alcm_writer_open_memory(w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(e, *w, &o, NULL), ALCM_OK);
}

/* Packs s with add (queued = 0) or queue, an extra section after tensor 4; the archive in
 * *out (malloc'd). With `scribble`, each tensor's buffer is overwritten as soon as the
 * contract frees it (the next call returned), and restored before the end. */
static void pack(const set *s, int lossy, unsigned threads, int queued, int scribble,
                 uint8_t **out, size_t *len, alcm_tensor_report *rep)
{
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o = opts(lossy, threads);
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
	uint8_t *saved[NT] = {0};
	for (int i = 0; i < NT; i++) {
		int st = queued ? alcm_encoder_queue(e, &s->t[i], &rep[i])
		                : alcm_encoder_add(e, &s->t[i], &rep[i]);
		assert_int_equal(st, ALCM_OK);
		if (scribble && i > 0 && s->t[i - 1].nbytes) {
			size_t nb = (size_t)s->t[i - 1].nbytes;
			saved[i - 1] = malloc(nb);
			memcpy(saved[i - 1], s->data[i - 1], nb);
			memset(s->data[i - 1], 0x7f, nb);
		}
		if (i == 4)
			assert_int_equal(alcm_encoder_add_section(e, "XTRA", 0, "abc", 3), ALCM_OK);
	}
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	alcm_encoder_free(e);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	assert_int_equal(alcm_writer_memory(w, &b, len), ALCM_OK);
	*out = malloc(*len);
	memcpy(*out, b, *len);
	alcm_writer_free(w);
	for (int i = 0; i < NT; i++)
		if (saved[i]) {
			memcpy(s->data[i], saved[i], (size_t)s->t[i].nbytes);
			free(saved[i]);
		}
}

static void same_bytes(void **state, int lossy)
{
	(void)state;
	set s;
	make_set(&s);
	uint8_t *ref, *got;
	size_t rlen, glen;
	alcm_tensor_report rr[NT], gr[NT];
	pack(&s, lossy, 1, 0, 0, &ref, &rlen, rr);
	for (unsigned th = 1; th <= 3; th++) {
		pack(&s, lossy, th, 1, th == 2, &got, &glen, gr);
		assert_int_equal(glen, rlen);
		assert_memory_equal(got, ref, rlen);
		for (int i = 0; i < NT; i++) {
			assert_int_equal(gr[i].stored_bytes, rr[i].stored_bytes);
			assert_int_equal(gr[i].raw_bytes, s.t[i].nbytes);
			assert_true(gr[i].max_abs_error == rr[i].max_abs_error);
			assert_int_equal(gr[i].pruned, rr[i].pruned);
			assert_int_equal(gr[i].downgraded, rr[i].downgraded);
		}
		free(got);
	}
	/* The decoded values are the inputs (lossless) or within the bound. */
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, ref, rlen, "q", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_tensor_count(a), NT);
	if (!lossy)
		for (int i = 0; i < NT; i++) {
			uint8_t *d = malloc(s.t[i].nbytes + 1);
			assert_int_equal(alcm_archive_decode(a, (size_t)i, d, (size_t)s.t[i].nbytes),
			                 ALCM_OK);
			assert_memory_equal(d, s.data[i], (size_t)s.t[i].nbytes);
			free(d);
		}
	alcm_archive_free(a);
	alcm_reader_free(r);
	free(ref);
	free_set(&s);
}

static void test_same_bytes_lossless(void **state)
{
	same_bytes(state, 0);
}

static void test_same_bytes_lossy(void **state)
{
	same_bytes(state, 1);
}

/* A name equal to the tensor still in flight (not yet in the names table) is refused, as one
 * equal to an older tensor; the encoder stays usable (a bad argument does not poison). */
static void test_names(void **state)
{
	(void)state;
	set s;
	alcm_writer *w;
	alcm_encoder *e;
	enc_open(&s, 0, 2, &w, &e);
	alcm_tensor_report rep[3];
	assert_int_equal(alcm_encoder_queue(e, &s.t[0], &rep[0]), ALCM_OK);
	assert_int_equal(alcm_encoder_queue(e, &s.t[3], &rep[1]), ALCM_OK);
	alcm_tensor dup = s.t[6];
	dup.name = s.t[3].name; /* in flight */
	dup.name_len = s.t[3].name_len;
	assert_int_equal(alcm_encoder_queue(e, &dup, &rep[2]), ALCM_E_ARG);
	assert_non_null(strstr(alcm_encoder_detail(e), "names are unique"));
	dup.name = s.t[0].name; /* closed */
	dup.name_len = s.t[0].name_len;
	assert_int_equal(alcm_encoder_queue(e, &dup, &rep[2]), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_queue(e, &s.t[6], &rep[2]), ALCM_OK);
	/* Undo takes the last tensor queued, once it is finished. */
	assert_int_equal(alcm_encoder_undo(e), ALCM_OK);
	assert_int_equal(alcm_encoder_queue(e, &s.t[6], &rep[2]), ALCM_OK);
	assert_int_equal(alcm_encoder_flush(e), ALCM_OK);
	assert_int_equal(rep[2].raw_bytes, s.t[6].nbytes);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_encoder_queue(e, &s.t[7], &rep[2]), ALCM_E_STATE);
	alcm_encoder_free(e);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &b, &len), ALCM_OK);
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, b, len, "q", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_tensor_count(a), 3);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_writer_free(w);
	free_set(&s);
}

/* An encoder freed with tensors in flight stops its threads (no leak, no hang), and a
 * tensor the checks refuse is reported by the call that queues it. */
static void test_abandon(void **state)
{
	(void)state;
	set s;
	make_set(&s);
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o = opts(0, 3);
	alcm_tensor_report rep[2];
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
	alcm_tensor bad = s.t[0];
	bad.nbytes += 4;
	assert_int_equal(alcm_encoder_queue(e, &bad, &rep[0]), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_queue(e, &s.t[3], &rep[0]), ALCM_OK);
	assert_int_equal(alcm_encoder_queue(e, &s.t[6], &rep[1]), ALCM_OK);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	assert_int_equal(alcm_encoder_queue(NULL, &s.t[0], &rep[0]), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_flush(NULL), ALCM_E_ARG);
	free_set(&s);
}

/* ---- alcm_encoder_queue_begin / _append / _end ---- */

/* Packs s giving each tensor in pieces of sizes cycling through `sizes` (an empty append
 * first), from a scratch buffer scribbled over after each append (the encoder copies).
 * @return the first error (the archive in *out only on success). */
static int pack_pieces(const set *s, int lossy, unsigned threads, const size_t *sizes,
                       size_t nsizes, const alcm_allocator *alloc, uint8_t **out, size_t *len,
                       alcm_tensor_report *rep)
{
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o = opts(lossy, threads);
	*out = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	int st = alcm_encoder_new(&e, w, &o, alloc);
	uint8_t *scratch = malloc(1 << 17);
	assert_non_null(scratch);
	size_t z = 0;
	for (int i = 0; i < NT && !st; i++) {
		alcm_tensor t = s->t[i];
		t.data = NULL;
		if ((st = alcm_encoder_queue_begin(e, &t, &rep[i])))
			break;
		if ((st = alcm_encoder_queue_append(e, scratch, 0)))
			break;
		for (uint64_t at = 0; at < t.nbytes && !st;) {
			size_t n = sizes[z++ % nsizes];
			if (n > t.nbytes - at)
				n = (size_t)(t.nbytes - at);
			memcpy(scratch, s->data[i] + at, n);
			st = alcm_encoder_queue_append(e, scratch, n);
			memset(scratch, 0x7f, n);
			at += n;
		}
		if (!st)
			st = alcm_encoder_queue_end(e);
		if (!st && i == 4)
			st = alcm_encoder_add_section(e, "XTRA", 0, "abc", 3);
	}
	if (!st)
		st = alcm_encoder_finish(e);
	alcm_encoder_free(e);
	free(scratch);
	if (!st) {
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
		const void *b;
		assert_int_equal(alcm_writer_memory(w, &b, len), ALCM_OK);
		*out = malloc(*len);
		memcpy(*out, b, *len);
	}
	alcm_writer_free(w);
	return st;
}

/* Pieces of every size (one byte, odd sizes, a chunk exactly, more than a chunk, a whole
 * tensor) give the archive alcm_encoder_add() gives, and the same reports, at 1 to 3
 * threads; lossless, lossy gathered whole, and max-error in the queue's slots. */
static void pieces_same_bytes(int lossy)
{
	set s;
	make_set(&s);
	if (lossy == 2)
		lattice_variants(&s);
	uint8_t *ref, *got;
	size_t rlen, glen;
	alcm_tensor_report rr[NT], gr[NT];
	pack(&s, lossy, 1, 0, 0, &ref, &rlen, rr);
	static const size_t a[] = {1}, b[] = {3, 4096, 7, 4095, 4097, 1000},
	                    c[] = {1 << 17}, d[] = {4096};
	const size_t *sizes[] = {a, b, c, d};
	const size_t nsizes[] = {1, 6, 1, 1};
	for (unsigned th = 1; th <= 3; th++)
		for (int k = 0; k < 4; k++) {
			memset(gr, 0, sizeof(gr));
			assert_int_equal(pack_pieces(&s, lossy, th, sizes[k], nsizes[k], NULL, &got, &glen,
			                             gr),
			                 ALCM_OK);
			assert_int_equal(glen, rlen);
			assert_memory_equal(got, ref, rlen);
			for (int i = 0; i < NT; i++) {
				assert_int_equal(gr[i].stored_bytes, rr[i].stored_bytes);
				assert_int_equal(gr[i].raw_bytes, s.t[i].nbytes);
				assert_true(gr[i].max_abs_error == rr[i].max_abs_error);
				assert_int_equal(gr[i].downgraded, rr[i].downgraded);
				assert_int_equal(gr[i].bits, rr[i].bits);
				assert_int_equal(gr[i].escapes, rr[i].escapes);
			}
			free(got);
		}
	free(ref);
	free_set(&s);
}

static void test_pieces_lossless(void **state)
{
	(void)state;
	pieces_same_bytes(0);
}

static void test_pieces_lossy(void **state)
{
	(void)state;
	pieces_same_bytes(1);
}

static void test_pieces_max_error(void **state)
{
	(void)state;
	pieces_same_bytes(2);
}

/* A max-error tensor ended short inside its first chunk (which holds a slot until it decides)
 * is dropped and leaves the slot free: the next tensors in pieces, on the same slot, go on. */
static void test_pieces_max_error_short(void **state)
{
	(void)state;
	set s;
	alcm_writer *w;
	alcm_encoder *e;
	enc_open(&s, 2, 2, &w, &e);
	alcm_tensor_report rep[3];
	const alcm_tensor *t0 = &s.t[0]; /* float32, 20000 bytes: five chunks */
	for (int k = 0; k < 3; k++) {
		assert_int_equal(alcm_encoder_queue_begin(e, t0, &rep[0]), ALCM_OK);
		assert_int_equal(alcm_encoder_queue_append(e, s.data[0], 1000), ALCM_OK);
		assert_int_equal(alcm_encoder_queue_end(e), ALCM_E_ARG);
		assert_non_null(strstr(alcm_encoder_detail(e), "1000 of its 20000 bytes"));
	}
	for (int k = 0; k < 2; k++) {
		alcm_tensor t = k ? s.t[5] : *t0; /* float32, then float64 */
		assert_int_equal(alcm_encoder_queue_begin(e, &t, &rep[k]), ALCM_OK);
		assert_int_equal(alcm_encoder_queue_append(e, s.data[k ? 5 : 0], (size_t)t.nbytes),
		                 ALCM_OK);
		assert_int_equal(alcm_encoder_queue_end(e), ALCM_OK);
	}
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(rep[0].raw_bytes, t0->nbytes);
	assert_int_equal(rep[1].raw_bytes, s.t[5].nbytes);
	assert_true(rep[0].max_abs_error <= 1e-3 && rep[1].max_abs_error <= 1e-3);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	free_set(&s);
}

/* An allocator that knows the bytes it has out, and their peak (the encoder's threads call
 * it at once). */
typedef struct peak_alloc {
	alcm_allocator a;
	size_t now, peak;
} peak_alloc;

static void *pa_malloc(void *o, size_t n)
{
	peak_alloc *p = o;
	size_t *b = malloc(n + 16);
	if (!b)
		return NULL;
	b[0] = n;
	size_t now = __atomic_add_fetch(&p->now, n, __ATOMIC_SEQ_CST);
	size_t peak = __atomic_load_n(&p->peak, __ATOMIC_SEQ_CST);
	while (now > peak && !__atomic_compare_exchange_n(&p->peak, &peak, now, 0, __ATOMIC_SEQ_CST,
	                                                  __ATOMIC_SEQ_CST))
		;
	return (uint8_t *)b + 16;
}

static void pa_free(void *o, void *q)
{
	peak_alloc *p = o;
	if (!q)
		return;
	size_t *b = (size_t *)(void *)((uint8_t *)q - 16);
	__atomic_sub_fetch(&p->now, b[0], __ATOMIC_SEQ_CST);
	free(b);
}

static void *pa_realloc(void *o, void *q, size_t n)
{
	void *r = pa_malloc(o, n);
	if (r && q) {
		size_t old = ((size_t *)(void *)((uint8_t *)q - 16))[0];
		memcpy(r, q, old < n ? old : n);
		pa_free(o, q);
	}
	return r;
}

/* A max-error float32 tensor given in pieces is coded chunk by chunk: the encoder never
 * holds it whole (it did, gathered for statistics, until the first chunk could settle them);
 * one with pruning still is. */
static void test_pieces_max_error_memory(void **state)
{
	(void)state;
	enum { N = 1 << 20 }; /* 4 MiB of float32 */
	float *x = malloc(N * sizeof(float));
	assert_non_null(x);
	uint64_t r = 5;
	for (size_t i = 0; i < N; i++)
		x[i] = (float)(((double)(rng_next(&r) % 200001) - 100000) / 1e6);
	for (int lossy = 1; lossy <= 2; lossy++) {
		peak_alloc pa = {{pa_malloc, pa_realloc, pa_free, NULL}, 0, 0};
		pa.a.opaque = &pa;
		alcm_writer *w = NULL;
		alcm_encoder *e = NULL;
		alcm_pack_options o = opts(lossy, 2);
		alcm_tensor t = {.name = "big", .name_len = 3, .dtype = ALCM_DTYPE_F32, .ndim = 2,
		                 .shape = {1024, 1024}, .nbytes = N * sizeof(float)};
		alcm_tensor_report rep;
		assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_encoder_new(&e, w, &o, &pa.a), ALCM_OK);
		for (int k = 0; k < 2; k++) { /* two, as a checkpoint has many */
			t.name = k ? "big2" : "big";
			t.name_len = k ? 4 : 3;
			assert_int_equal(alcm_encoder_queue_begin(e, &t, &rep), ALCM_OK);
			for (size_t at = 0; at < t.nbytes; at += 5000) {
				size_t n = t.nbytes - at < 5000 ? (size_t)(t.nbytes - at) : 5000;
				assert_int_equal(alcm_encoder_queue_append(e, (uint8_t *)x + at, n), ALCM_OK);
			}
			assert_int_equal(alcm_encoder_queue_end(e), ALCM_OK);
		}
		assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
		alcm_encoder_free(e);
		alcm_writer_free(w);
		assert_int_equal(pa.now, 0);
		if (lossy == 2)
			assert_true(pa.peak < N * sizeof(float) / 2);
		else
			assert_true(pa.peak >= N * sizeof(float));
	}
	free(x);
}

/* Wrong totals and calls out of order. */
static void test_pieces_errors(void **state)
{
	(void)state;
	set s;
	alcm_writer *w;
	alcm_encoder *e;
	enc_open(&s, 0, 2, &w, &e);
	alcm_tensor_report rep[4];
	assert_int_equal(alcm_encoder_queue_append(e, s.data[0], 1), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_queue_end(e), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_queue_begin(NULL, &s.t[0], &rep[0]), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_queue_begin(e, NULL, &rep[0]), ALCM_E_ARG);
	alcm_tensor bad = s.t[0];
	bad.nbytes += 4; /* does not match its shape */
	assert_int_equal(alcm_encoder_queue_begin(e, &bad, &rep[0]), ALCM_E_ARG);
	/* A small tensor (gathered whole): too many bytes are refused and not taken; too few
	 * drop it, and the encoder goes on. */
	const alcm_tensor *t1 = &s.t[1];
	assert_int_equal(alcm_encoder_queue_begin(e, t1, &rep[0]), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_begin(e, t1, &rep[0]), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_queue(e, t1, &rep[0]), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_add(e, t1, &rep[0]), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_add_section(e, "XTRA", 0, "abc", 3), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_flush(e), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_finish(e), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_queue_append(e, NULL, 1), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_queue_append(e, s.data[1], (size_t)t1->nbytes + 1),
	                 ALCM_E_ARG);
	assert_non_null(strstr(alcm_encoder_detail(e), "beyond"));
	assert_int_equal(alcm_encoder_queue_append(e, s.data[1], 4), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_end(e), ALCM_E_ARG);
	assert_non_null(strstr(alcm_encoder_detail(e), "4 of its 12 bytes"));
	/* The encoder is usable: the whole tensor now, then a large one in pieces, whose name
	 * may not be the one in flight. */
	assert_int_equal(alcm_encoder_queue_begin(e, t1, &rep[0]), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_append(e, s.data[1], (size_t)t1->nbytes), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_end(e), ALCM_OK);
	const alcm_tensor *t3 = &s.t[3];
	assert_int_equal(alcm_encoder_queue_begin(e, t3, &rep[1]), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_append(e, s.data[3], (size_t)t3->nbytes), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_end(e), ALCM_OK);
	assert_int_equal(rep[0].raw_bytes, t1->nbytes);
	alcm_tensor dup = s.t[6];
	dup.name = t3->name;
	dup.name_len = t3->name_len;
	assert_int_equal(alcm_encoder_queue_begin(e, &dup, &rep[2]), ALCM_E_ARG);
	assert_non_null(strstr(alcm_encoder_detail(e), "names are unique"));
	/* A large lossless tensor ended short: its chunks are queued, the encoder is poisoned. */
	const alcm_tensor *t6 = &s.t[6];
	assert_int_equal(alcm_encoder_queue_begin(e, t6, &rep[2]), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_append(e, s.data[6], 10000), ALCM_OK);
	assert_int_equal(alcm_encoder_queue_end(e), ALCM_E_ARG);
	assert_int_equal(alcm_encoder_queue_begin(e, &s.t[7], &rep[3]), ALCM_E_STATE);
	assert_int_equal(alcm_encoder_finish(e), ALCM_E_STATE);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	free_set(&s);
}

/* Every allocation failure is reported (ALCM_E_NOMEM) and leaks nothing. */
static void test_pieces_alloc(void **state)
{
	(void)state;
	set s;
	make_set(&s);
	static const size_t sizes[] = {3000, 5000};
	alcm_tensor_report rep[NT];
	int ok = 0;
	for (long k = 1; k < 2000 && !ok; k++) {
		tu_alloc ta;
		tu_alloc_init(&ta, k);
		uint8_t *out;
		size_t len;
		int st = pack_pieces(&s, 0, 2, sizes, 2, &ta.a, &out, &len, rep);
		if (st == ALCM_OK) {
			ok = 1;
			free(out);
		} else {
			assert_int_equal(st, ALCM_E_NOMEM);
		}
		assert_int_equal(ta.live, 0);
	}
	assert_true(ok);
	free_set(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_bytes_lossless),
		cmocka_unit_test(test_same_bytes_lossy),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_abandon),
		cmocka_unit_test(test_pieces_lossless),
		cmocka_unit_test(test_pieces_lossy),
		cmocka_unit_test(test_pieces_max_error),
		cmocka_unit_test(test_pieces_max_error_memory),
		cmocka_unit_test(test_pieces_max_error_short),
		cmocka_unit_test(test_pieces_errors),
		cmocka_unit_test(test_pieces_alloc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
