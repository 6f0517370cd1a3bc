/*
 * Compact tensor frames (lib/tframe.c, spec 6.11): round trips of every dtype and mode, the
 * size bound, determinism, the lossless fallback, the XXH64 check, hostile frames (every
 * truncation, every bit flip with the check forged so that the damage reaches the decoders,
 * forged headers), allocation failures, and the spec's vectors.
 * ALCM_UPDATE_VECTORS=1 prints the vectors' current hex instead of comparing.
 */
#include "testutil.h"
#include "codec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_PATH ALCM_SOURCE_DIR "/spec/alcm-format.md"

static alcm_tensor mk(int dtype, uint32_t ndim, const uint64_t *shape, const void *data)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = dtype;
	t.ndim = ndim;
	uint64_t n = 1;
	for (uint32_t i = 0; i < ndim; i++) {
		t.shape[i] = shape[i];
		n *= shape[i];
	}
	t.data = data;
	t.nbytes = n * alcm_dtype_size(dtype);
	return t;
}

/* Compresses t with o (NULL: lossless), checks the bound and frame_info, decompresses. */
static uint8_t *frame_of(const alcm_tensor *t, const alcm_pack_options *o, size_t *len,
                         alcm_tensor_report *rep)
{
	size_t cap = alcm_tensor_compress_bound(t, o);
	assert_true(cap > 0);
	uint8_t *f = malloc(cap);
	alcm_tensor_ctx *c;
	assert_int_equal(alcm_tensor_ctx_new(&c, NULL), ALCM_OK);
	int st = alcm_tensor_ctx_compress(c, f, cap, len, t, o, rep);
	if (st)
		print_message("compress: %s\n", alcm_tensor_ctx_detail(c));
	assert_int_equal(st, ALCM_OK);
	assert_true(*len <= cap);
	alcm_tensor_ctx_free(c);
	return f;
}

static void *decode(const uint8_t *f, size_t len, const alcm_tensor *t)
{
	alcm_tensor_info ti;
	assert_int_equal(alcm_tensor_frame_info(&ti, f, len, NULL), ALCM_OK);
	assert_int_equal(ti.dtype, t->dtype);
	assert_int_equal(ti.ndim, t->ndim);
	for (uint32_t i = 0; i < t->ndim; i++)
		assert_int_equal(ti.shape[i], t->shape[i]);
	assert_int_equal(ti.raw_bytes, t->nbytes);
	assert_int_equal(ti.stored_bytes, len);
	void *out = malloc(t->nbytes ? t->nbytes : 1);
	assert_int_equal(alcm_tensor_decompress(out, t->nbytes, f, len, NULL), ALCM_OK);
	return out;
}

static void fill(uint8_t *p, size_t n, uint64_t seed, int kind)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t r = tu_rand(&seed);
		p[i] = kind == 0 ? (uint8_t)r : kind == 1 ? (uint8_t)(r % 3) : (r % 8 ? 0 : (uint8_t)r);
	}
}

static void test_xxh64_known_answers(void **state)
{
	(void)state;
	/* Reference values from libxxhash 0.8.1 (XXH64, seed 0). */
	uint8_t b[771];
	for (int i = 0; i < 768; i++)
		b[i] = (uint8_t)i;
	memcpy(b + 768, "xyz", 3);
	assert_true(alcm_xxh64("", 0, 0) == 0xef46db3751d8e999ull);
	assert_true(alcm_xxh64("abc", 3, 0) == 0x44bc2cf5ad770999ull);
	assert_true(alcm_xxh64(b, 37, 0) == 0xd93fa2dfee5c24c9ull);
	assert_true(alcm_xxh64(b, 771, 0) == 0xe921a1b45bd779f8ull);
}

/* Every dtype, shapes from scalar to rank 3, empty, random, palette-like and sparse bytes. */
static void test_lossless_round_trip(void **state)
{
	(void)state;
	static const int dts[] = {ALCM_DTYPE_BOOL, ALCM_DTYPE_U8,  ALCM_DTYPE_I8,  ALCM_DTYPE_U16,
	                          ALCM_DTYPE_I16,  ALCM_DTYPE_U32, ALCM_DTYPE_I32, ALCM_DTYPE_U64,
	                          ALCM_DTYPE_I64,  ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F32,
	                          ALCM_DTYPE_F64};
	static const uint64_t shapes[][3] = {{0, 0, 0}, {1, 0, 0}, {7, 0, 0}, {300, 0, 0},
	                                     {64, 65, 0}, {3, 0, 5}, {9, 40, 11}};
	static const uint32_t ranks[] = {0, 1, 1, 1, 2, 3, 3};
	for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++)
		for (size_t s = 0; s < sizeof(ranks) / sizeof(ranks[0]); s++)
			for (int kind = 0; kind < 3; kind++) {
				alcm_tensor t = mk(dts[d], ranks[s], shapes[s], NULL);
				uint8_t *data = malloc(t.nbytes + 1);
				fill(data, t.nbytes, 1000 * d + 10 * s + (uint64_t)kind, kind);
				if (dts[d] == ALCM_DTYPE_BOOL)
					for (size_t i = 0; i < t.nbytes; i++)
						data[i] &= 1;
				t.data = data;
				size_t len;
				alcm_tensor_report rep;
				uint8_t *f = frame_of(&t, NULL, &len, &rep);
				assert_int_equal(rep.stored_bytes, len);
				assert_int_equal(rep.mode, ALCM_MODE_LOSSLESS);
				void *back = decode(f, len, &t);
				assert_memory_equal(back, data, t.nbytes);
				free(back);
				free(f);
				free(data);
			}
}

/* Several coder chunks per frame (chunk_bytes 4096), lossless and lossy. */
static void test_multi_chunk(void **state)
{
	(void)state;
	uint64_t shape[2] = {40, 1000}, seed = 5;
	float *v = malloc(40000 * sizeof(float));
	for (int i = 0; i < 40000; i++)
		v[i] = (float)tu_gauss(&seed) * (1 + i / 1000);
	alcm_tensor t = mk(ALCM_DTYPE_F32, 2, shape, v);
	for (int mode = 0; mode <= ALCM_MODE_BITS; mode++) {
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.chunk_bytes = 4096;
		o.mode = mode;
		o.bound = mode == ALCM_MODE_SNR ? 30 : mode ? 1e-2 : 0;
		o.bits = 8;
		o.prune = mode ? 0.1 : 0;
		size_t len;
		alcm_tensor_report rep;
		uint8_t *f = frame_of(&t, &o, &len, &rep);
		alcm_tensor_info ti;
		assert_int_equal(alcm_tensor_frame_info(&ti, f, len, NULL), ALCM_OK);
		assert_int_equal(ti.chunks, 40);
		assert_int_equal(ti.mode, mode);
		float *back = decode(f, len, &t);
		alcm_error_stats es;
		assert_int_equal(alcm_tensor_measure(&t, back, &es), ALCM_OK);
		assert_true(alcm_error_within(&es, mode, o.bound));
		assert_true(rep.pruned == 0 || mode != ALCM_MODE_LOSSLESS);
		free(back);
		free(f);
	}
	free(v);
}

/* Lossy modes on every float dtype with specials: the bound holds on every value, NaN,
 * infinities, -0 and subnormals keep their bits, the report matches. */
static void test_lossy_modes(void **state)
{
	(void)state;
	static const int dts[] = {ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F32, ALCM_DTYPE_F64};
	uint64_t shape[2] = {16, 257};
	size_t n = 16 * 257;
	double *x = malloc(n * sizeof(double));
	uint64_t seed = 9;
	for (size_t i = 0; i < n; i++)
		x[i] = tu_gauss(&seed) * (1 + (double)(i / 257));
	x[3] = NAN, x[4] = INFINITY, x[5] = -INFINITY, x[6] = -0.0, x[7] = 1e-310, x[8] = 1e4;
	for (size_t d = 0; d < 4; d++) {
		size_t w = alcm_dtype_size(dts[d]);
		uint8_t *data = malloc(n * w);
		for (size_t i = 0; i < n; i++) {
			float f = (float)x[i];
			uint32_t u;
			memcpy(&u, &f, 4);
			if (dts[d] == ALCM_DTYPE_F64)
				memcpy(data + 8 * i, &x[i], 8);
			else if (dts[d] == ALCM_DTYPE_F32)
				memcpy(data + 4 * i, &f, 4);
			else if (dts[d] == ALCM_DTYPE_BF16) {
				uint16_t h = alcm_float_to_bf16(f);
				memcpy(data + 2 * i, &h, 2);
			} else {
				uint16_t h = alcm_float_to_half(f);
				memcpy(data + 2 * i, &h, 2);
			}
		}
		alcm_tensor t = mk(dts[d], 2, shape, data);
		for (int mode = 1; mode <= ALCM_MODE_BITS; mode++)
			for (int pr = 0; pr < 2; pr++) {
				alcm_pack_options o;
				alcm_pack_options_default(&o);
				o.mode = mode;
				o.bound = mode == ALCM_MODE_SNR ? 25 : mode == ALCM_MODE_REL_ERROR ? 1e-2 : 5e-2;
				o.bits = 6;
				o.prune = pr ? 0.2 : 0;
				size_t len;
				alcm_tensor_report rep;
				uint8_t *f = frame_of(&t, &o, &len, &rep);
				uint8_t *back = decode(f, len, &t);
				alcm_error_stats es;
				assert_int_equal(alcm_tensor_measure(&t, back, &es), ALCM_OK);
				assert_true(es.specials_exact);
				assert_true(alcm_error_within(&es, rep.mode, o.bound));
				if (!rep.downgraded) {
					assert_int_equal(rep.mode, mode);
					assert_true(rep.escapes >= 4); /* NaN, +-inf, -0 */
					assert_true(fabs(rep.max_abs_error - es.max_abs_error) <=
					            1e-12 * (1 + es.max_abs_error));
				}
				assert_true(len < t.nbytes); /* lossy frames of this data do shrink */
				/* the same input and options give the same bytes */
				size_t len2;
				uint8_t *f2 = frame_of(&t, &o, &len2, NULL);
				assert_int_equal(len, len2);
				assert_memory_equal(f, f2, len);
				free(f2);
				free(back);
				free(f);
			}
		free(data);
	}
	free(x);
}

/* Integers under a lossy mode: stored losslessly (downgraded), or refused when asked. */
static void test_integers_lossy(void **state)
{
	(void)state;
	int16_t v[100];
	for (int i = 0; i < 100; i++)
		v[i] = (int16_t)(i * 37 - 900);
	uint64_t shape = 100;
	alcm_tensor t = mk(ALCM_DTYPE_I16, 1, &shape, v);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 10;
	size_t len;
	alcm_tensor_report rep;
	uint8_t *f = frame_of(&t, &o, &len, &rep);
	assert_int_equal(rep.mode, ALCM_MODE_LOSSLESS);
	assert_int_equal(rep.downgraded, 1);
	void *back = decode(f, len, &t);
	assert_memory_equal(back, v, sizeof(v));
	free(back);
	o.int_policy = ALCM_INT_REFUSE;
	alcm_tensor_ctx *c;
	alcm_tensor_ctx_new(&c, NULL);
	assert_int_equal(alcm_tensor_ctx_compress(c, f, len, &len, &t, &o, NULL), ALCM_E_BOUND);
	assert_non_null(strstr(alcm_tensor_ctx_detail(c), "int16"));
	alcm_tensor_ctx_free(c);
	free(f);
}

/* A lossy frame larger than the lossless bound is stored losslessly: float16 with a bound
 * far under the values' spacing needs 4-byte symbols for 2-byte values. */
static void test_lossy_fallback(void **state)
{
	(void)state;
	uint16_t v[4096];
	uint64_t seed = 3, shape = 4096;
	for (int i = 0; i < 4096; i++)
		v[i] = alcm_float_to_half((float)(tu_gauss(&seed) * 1000));
	alcm_tensor t = mk(ALCM_DTYPE_F16, 1, &shape, v);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 1e-6;
	size_t len;
	alcm_tensor_report rep;
	uint8_t *f = frame_of(&t, &o, &len, &rep);
	assert_int_equal(rep.downgraded, 1);
	assert_int_equal(rep.mode, ALCM_MODE_LOSSLESS);
	assert_true(len <= alcm_tensor_compress_bound(&t, &o));
	void *back = decode(f, len, &t);
	assert_memory_equal(back, v, sizeof(v));
	free(back);
	free(f);
}

/* Inputs built against each transform's worst case stay within the bound; a capacity one
 * byte short is refused. */
static void test_bound(void **state)
{
	(void)state;
	size_t n = 70000;
	uint32_t *v = malloc(n * 4);
	uint64_t seed = 1;
	for (int kind = 0; kind < 4; kind++) {
		for (size_t i = 0; i < n; i++) {
			uint32_t r = (uint32_t)tu_rand(&seed);
			/* 0 random; 1 a sample of few values, the rest distinct (palette fallback);
			 * 2 zeros in the sample, random elsewhere (sparse on dense data); 3 all
			 * distinct values with one zero in 8 */
			v[i] = kind == 0 ? r
			       : kind == 1 ? (i > n / 2 - 600 && i < n / 2 + 600 ? r % 7 : r)
			       : kind == 2 ? (i > n / 2 - 600 && i < n / 2 + 600 ? (r % 2) * r : r | 1)
			                   : (i % 8 ? r | 1 : 0);
		}
		for (int dt = 0; dt < 2; dt++) {
			uint64_t shape = n;
			alcm_tensor t = mk(dt ? ALCM_DTYPE_F32 : ALCM_DTYPE_U32, 1, &shape, v);
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.chunk_bytes = dt ? 4096 : 1 << 20;
			size_t len, cap = alcm_tensor_compress_bound(&t, &o);
			uint8_t *f = frame_of(&t, &o, &len, NULL);
			assert_true(len <= cap);
			assert_int_equal(alcm_tensor_compress(f, len - 1, &len, &t, &o), ALCM_E_ARG);
			free(f);
		}
	}
	/* invalid tensors and options have no bound */
	uint64_t shape = 10;
	alcm_tensor t = mk(ALCM_DTYPE_F32, 1, &shape, v);
	t.nbytes = 39;
	assert_int_equal(alcm_tensor_compress_bound(&t, NULL), 0);
	t = mk(77, 1, &shape, v);
	assert_int_equal(alcm_tensor_compress_bound(&t, NULL), 0);
	free(v);
}

/* A frame of mostly coded bytes: the header and the check cost 17 bytes plus the shape. */
static void test_overhead(void **state)
{
	(void)state;
	uint8_t v[1000];
	fill(v, sizeof(v), 4, 0);
	uint64_t shape[2] = {10, 100};
	alcm_tensor t = mk(ALCM_DTYPE_U8, 2, shape, v);
	size_t len;
	uint8_t *f = frame_of(&t, NULL, &len, NULL);
	/* u8 random: transform 0, one raw stream (1 + 2 + 2 header bytes + 1000) */
	assert_int_equal(len, 9 + 1 + 1 + 1 + (1 + 1 + 2 + 2 + 1000) + 8);
	free(f);
}

static void forge(uint8_t *f, size_t len)
{
	alcm_store64(f + len - 8, alcm_xxh64(f, len - 8, 0));
}

/* A float32 [64, 65] frame of each mode, pruned, to attack. */
static uint8_t *victim(int mode, size_t *len, alcm_tensor *t, float **data)
{
	static uint64_t shape[2] = {64, 65};
	float *v = malloc(64 * 65 * sizeof(float));
	uint64_t seed = 77;
	for (int i = 0; i < 64 * 65; i++)
		v[i] = (float)tu_gauss(&seed);
	v[10] = NAN;
	*t = mk(ALCM_DTYPE_F32, 2, shape, v);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = mode;
	o.bound = 1e-2;
	o.prune = mode == ALCM_MODE_REL_ERROR ? 0.1 : 0;
	o.chunk_bytes = 4096;
	*data = v;
	return frame_of(t, &o, len, NULL);
}

/* Every truncation, every bit flip: an error (digest for flips), never a crash. With the
 * check forged each flip reaches the decoders, which must refuse it or decode something of
 * the declared size without reading or writing out of bounds (ASan watches). */
static void test_hostile_flips(void **state)
{
	(void)state;
	for (int mode = 0; mode <= ALCM_MODE_REL_ERROR; mode += ALCM_MODE_REL_ERROR) {
		size_t len;
		alcm_tensor t;
		float *v;
		uint8_t *f = victim(mode, &len, &t, &v);
		float *out = malloc(t.nbytes);
		alcm_tensor_ctx *c;
		alcm_tensor_ctx_new(&c, NULL);
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *p = malloc(cut ? cut : 1);
			memcpy(p, f, cut);
			int st = alcm_tensor_ctx_decompress(c, out, t.nbytes, p, cut, NULL, 0);
			assert_true(st == ALCM_E_CORRUPT || st == ALCM_E_DIGEST);
			free(p);
		}
		uint8_t *m = malloc(len);
		for (size_t bit = 0; bit < len * 8; bit += mode ? 3 : 1) {
			memcpy(m, f, len);
			m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			int st = alcm_tensor_ctx_decompress(c, out, t.nbytes, m, len, NULL, 0);
			if (bit / 8 >= 5 || bit / 8 == 4)
				assert_true(st == ALCM_E_DIGEST || (bit / 8 == 4 && st == ALCM_E_UNSUPPORTED));
			else
				assert_int_equal(st, ALCM_E_CORRUPT); /* the magic */
			if (bit / 8 >= len - 8)
				continue;
			forge(m, len);
			st = alcm_tensor_ctx_decompress(c, out, t.nbytes, m, len, NULL, 0);
			assert_true(st != ALCM_E_DIGEST && st != ALCM_E_NOMEM);
		}
		/* the undamaged frame still decodes with the same context */
		assert_int_equal(alcm_tensor_ctx_decompress(c, out, t.nbytes, f, len, NULL, 0), ALCM_OK);
		alcm_tensor_ctx_free(c);
		free(m);
		free(out);
		free(v);
		free(f);
	}
}

/* An allocator that records the largest block asked for. */
static size_t big_max;
static void *big_malloc(void *o, size_t n)
{
	(void)o;
	if (n > big_max)
		big_max = n;
	return malloc(n);
}
static void *big_realloc(void *o, void *p, size_t n)
{
	(void)o;
	if (n > big_max)
		big_max = n;
	return realloc(p, n);
}
static void big_free(void *o, void *p)
{
	(void)o;
	free(p);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

/* A frame of the given header fields and body, with a valid check. */
static size_t forge_frame(uint8_t *f, int version, int dtype, int mode, int flags,
                          uint32_t ndim, const uint64_t *shape, uint64_t ce,
                          const uint8_t *body, size_t blen)
{
	memcpy(f, ALCM_TENSOR_FRAME_MAGIC, 4);
	f[4] = (uint8_t)version, f[5] = (uint8_t)dtype, f[6] = (uint8_t)mode, f[7] = (uint8_t)flags;
	f[8] = (uint8_t)ndim;
	size_t n = 9;
	for (uint32_t i = 0; i < ndim; i++)
		n += put_varint(f + n, shape[i]);
	n += put_varint(f + n, ce);
	memcpy(f + n, body, blen);
	n += blen;
	forge(f, n + 8);
	return n + 8;
}

/* Forged headers get their class before anything is allocated for them. */
static void test_hostile_headers(void **state)
{
	(void)state;
	uint8_t f[256], out[64], body[32] = {2};
	alcm_tensor_info ti;
	alcm_limits lim;
	alcm_limits_default(&lim);
	uint64_t sh[3] = {4, 0, 0}, huge[2] = {1ull << 40, 1ull << 40}, ones[33];
	for (int i = 0; i < 33; i++)
		ones[i] = 1;
	size_t n;
#define DEC(want)                                                                          \
	do {                                                                                   \
		int st_ = alcm_tensor_decompress(out, sizeof(out), f, n, &lim);                    \
		if (st_ != (want))                                                                 \
			print_message("line %d: %d\n", __LINE__, st_);                                 \
		assert_int_equal(st_, (want));                                                     \
	} while (0)
	n = forge_frame(f, 2, ALCM_DTYPE_F32, 0, 0, 1, sh, 0, body, 1);
	DEC(ALCM_E_UNSUPPORTED); /* another frame version */
	n = forge_frame(f, 1, 14, 0, 0, 1, sh, 0, body, 1);
	DEC(ALCM_E_UNSUPPORTED); /* unknown dtype */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 5, 0, 1, sh, 0, body, 1);
	DEC(ALCM_E_UNSUPPORTED); /* unknown mode */
	n = forge_frame(f, 1, ALCM_DTYPE_I32, 1, 0, 1, sh, 0, body, 1);
	DEC(ALCM_E_CORRUPT); /* lossy integers */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 1, 1, sh, 0, body, 1);
	DEC(ALCM_E_CORRUPT); /* a mask on a lossless frame */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 1, 2, 1, sh, 0, body, 1);
	DEC(ALCM_E_CORRUPT); /* a reserved flag */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 33, ones, 0, body, 1);
	DEC(ALCM_E_LIMIT); /* rank above 32 */
	lim.max_ndim = 2;
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 3, sh, 0, body, 1);
	DEC(ALCM_E_LIMIT);
	alcm_limits_default(&lim);
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 2, huge, 0, body, 1);
	DEC(ALCM_E_LIMIT); /* 2^80 elements */
	assert_int_equal(alcm_tensor_frame_info(&ti, f, n, NULL), ALCM_E_LIMIT);
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 1, sh, 4, body, 1);
	DEC(ALCM_E_CORRUPT); /* a single chunk written as its size */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 1, sh, 0, body, 20);
	DEC(ALCM_E_CORRUPT); /* a malformed chunk and bytes after it */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 2, 0, 1, sh, 0, body, 0);
	DEC(ALCM_E_CORRUPT); /* no room for the step */
	sh[0] = 0;
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 1, 0, 1, sh, 0, body, 0);
	DEC(ALCM_E_CORRUPT); /* lossy with no elements */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 1, sh, 0, body, 0);
	DEC(ALCM_OK); /* an empty tensor: no chunk */
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 1, sh, 0, body, 1);
	DEC(ALCM_E_CORRUPT); /* a byte where no chunk is */
	/* a non-minimal varint in the shape */
	memcpy(f, ALCM_TENSOR_FRAME_MAGIC, 4);
	uint8_t h[] = {1, ALCM_DTYPE_U8, 0, 0, 1, 0x84, 0x00, 0x00, 0, 3, 4, 4, 1, 2, 3, 4};
	memcpy(f + 4, h, sizeof(h));
	n = 4 + sizeof(h) + 8;
	forge(f, n);
	DEC(ALCM_E_CORRUPT);
	/* A 256 MiB float32 tensor declared in 30 bytes: the caller is told its size, and
	 * decoding into a smaller buffer is refused before anything is allocated. */
	uint64_t big = 1ull << 26;
	n = forge_frame(f, 1, ALCM_DTYPE_F32, 0, 0, 1, &big, 0, body, 3);
	assert_int_equal(alcm_tensor_frame_info(&ti, f, n, NULL), ALCM_OK);
	assert_int_equal(ti.raw_bytes, 1ull << 28);
	DEC(ALCM_E_ARG);
	/* with a buffer of the declared size, the scratch is sized by the chunk (at most the
	 * chunk's bytes and an eighth), and the chunk's first stream is refused */
	alcm_allocator ba = {big_malloc, big_realloc, big_free, NULL};
	alcm_tensor_ctx *c;
	assert_int_equal(alcm_tensor_ctx_new(&c, &ba), ALCM_OK);
	uint8_t *dst = malloc(1u << 28);
	big_max = 0;
	if (dst) {
		int st = alcm_tensor_ctx_decompress(c, dst, 1u << 28, f, n, NULL, 0);
		assert_int_equal(st, ALCM_E_CORRUPT);
		assert_true(big_max <= ((size_t)1 << 28) + ((size_t)1 << 25) + 1);
		assert_non_null(strstr(alcm_tensor_ctx_detail(c), "chunk 0 at offset 14"));
	}
	free(dst);
	alcm_tensor_ctx_free(c);
#undef DEC
}

/* Every allocation of a compress and of a decompress fails in turn: an error, no leak. */
static void test_allocation_failures(void **state)
{
	(void)state;
	size_t len;
	alcm_tensor t;
	float *v;
	uint8_t *f = victim(ALCM_MODE_REL_ERROR, &len, &t, &v);
	float *out = malloc(t.nbytes);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_REL_ERROR;
	o.bound = 1e-2;
	o.prune = 0.1;
	o.chunk_bytes = 4096;
	size_t cap = alcm_tensor_compress_bound(&t, &o);
	uint8_t *g = malloc(cap);
	for (int which = 0; which < 2; which++)
		for (long k = 1;; k++) {
			tu_alloc ta;
			tu_alloc_init(&ta, k);
			alcm_tensor_ctx *c = NULL;
			int st = alcm_tensor_ctx_new(&c, &ta.a);
			size_t l2;
			if (!st)
				st = which ? alcm_tensor_ctx_decompress(c, out, t.nbytes, f, len, NULL, 0)
				           : alcm_tensor_ctx_compress(c, g, cap, &l2, &t, &o, NULL);
			alcm_tensor_ctx_free(c);
			assert_int_equal(ta.live, 0);
			if (st == ALCM_OK) {
				assert_true(k > 3);
				break;
			}
			assert_int_equal(st, ALCM_E_NOMEM);
		}
	free(g);
	free(out);
	free(v);
	free(f);
}

/* ---- the spec's vectors ---------------------------------------------------------------- */

typedef struct vec {
	const char *name;
	alcm_tensor t;
	alcm_pack_options o;
} vec;

static const float v1[6] = {1.0f, -2.5f, 0.0f, 3.25f, NAN, -0.0f};
static const float v2[5] = {0.0f, 0.1234f, -1.0f, INFINITY, 1e-3f};
static const float v3[8] = {0.5f, -0.25f, 0.01f, 1.0f, 8.0f, -4.0f, 0.05f, 2.0f};

static size_t vectors(vec *out)
{
	static const uint64_t s1[2] = {2, 3}, s2[1] = {5}, s3[2] = {2, 4};
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	out[0] = (vec){"tframe-lossless", mk(ALCM_DTYPE_F32, 2, s1, v1), o};
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 0.01;
	out[1] = (vec){"tframe-max-error", mk(ALCM_DTYPE_F32, 1, s2, v2), o};
	o.mode = ALCM_MODE_REL_ERROR;
	o.bound = 0.05;
	o.prune = 0.25;
	out[2] = (vec){"tframe-rel-error-pruned", mk(ALCM_DTYPE_F32, 2, s3, v3), o};
	return 3;
}

/* The hex of a frame as the spec shows it: 16 bytes a line, space-separated. */
static void hex_of(const uint8_t *p, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += (size_t)sprintf(out + k, "%02x%s", p[i], i + 1 == n || i % 16 == 15 ? "\n" : " ");
	out[k] = '\0';
}

static void test_spec_vectors(void **state)
{
	(void)state;
	size_t slen;
	char *spec = (char *)tu_read_file(SPEC_PATH, &slen);
	assert_non_null(spec);
	spec = realloc(spec, slen + 1);
	spec[slen] = '\0';
	const char *u = getenv("ALCM_UPDATE_VECTORS");
	int update = u && *u && strcmp(u, "0") != 0;
	vec v[8];
	size_t nv = vectors(v);
	for (size_t i = 0; i < nv; i++) {
		size_t len;
		uint8_t *f = frame_of(&v[i].t, &v[i].o, &len, NULL);
		void *back = decode(f, len, &v[i].t);
		alcm_error_stats es;
		alcm_tensor_measure(&v[i].t, back, &es);
		assert_true(alcm_error_within(&es, v[i].o.mode, v[i].o.bound));
		free(back);
		char hex[4096], marker[128];
		hex_of(f, len, hex);
		snprintf(marker, sizeof(marker), "%s (%zu bytes)\n\n```\n", v[i].name, len);
		if (update) {
			print_message("#### %s```\n", marker);
			print_message("%s```\n", hex);
		} else {
			const char *at = strstr(spec, marker);
			if (!at)
				print_message("spec 6.11 lacks '%s'\n", marker);
			assert_non_null(at);
			at += strlen(marker);
			assert_int_equal(strncmp(at, hex, strlen(hex)), 0);
			assert_int_equal(strncmp(at + strlen(hex), "```", 3), 0);
		}
		if (i == 0) {
			/* the refused frames the spec lists after the vectors */
			uint8_t m[80], out[24];
			static const struct { size_t at; uint8_t val; int forge_check, st; } e[] = {
				{20, 0x55, 0, ALCM_E_DIGEST},     {4, 2, 1, ALCM_E_UNSUPPORTED},
				{5, 14, 1, ALCM_E_UNSUPPORTED},   {6, 5, 1, ALCM_E_UNSUPPORTED},
				{7, 1, 1, ALCM_E_CORRUPT},        {8, 33, 1, ALCM_E_LIMIT},
				{11, 6, 1, ALCM_E_CORRUPT},       {0, 0, 2, ALCM_E_CORRUPT},
			};
			for (size_t k = 0; k < sizeof(e) / sizeof(e[0]); k++) {
				size_t ml = len;
				memcpy(m, f, len);
				if (e[k].forge_check == 2) { /* one byte added before the check */
					memmove(m + len - 7, m + len - 8, 8);
					m[len - 8] = 0;
					ml = len + 1;
				} else {
					m[e[k].at] = e[k].val;
				}
				if (e[k].forge_check)
					forge(m, ml);
				assert_int_equal(alcm_tensor_decompress(out, sizeof(out), m, ml, NULL), e[k].st);
			}
		}
		free(f);
	}
	free(spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xxh64_known_answers),
		cmocka_unit_test(test_lossless_round_trip),
		cmocka_unit_test(test_multi_chunk),
		cmocka_unit_test(test_lossy_modes),
		cmocka_unit_test(test_integers_lossy),
		cmocka_unit_test(test_lossy_fallback),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_overhead),
		cmocka_unit_test(test_hostile_flips),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_allocation_failures),
		cmocka_unit_test(test_spec_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
