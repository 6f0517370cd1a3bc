/*
 * What a modelled chunk (spec 6.5.6) costs its reader. Slot tables for rANS decoding take
 * 4096 entries a class whatever the chunk's length, so a forged archive of one-element
 * chunks that each declare 16 classes made the reader build 65536 entries per element: 28 MB
 * of such chunks decoded (to 512 KB of zeros) in 21 s, against 1.4 s for the same tensor
 * coded as byte planes. Short chunks now find their tokens by a search of the cumulative
 * frequencies and build no slot tables: the coder allocates no table memory for them, and
 * they decode to the same values. (The time itself is a benchmark:
 * tools/bench/decode_work.sh.)
 */
#include "codec_internal.h"
#include "forge.h"
#include "testutil.h"

#include <stdlib.h>

/* An allocator that records the largest block asked for. */
typedef struct big_alloc {
	alcm_allocator a;
	size_t largest;
} big_alloc;

static void *ba_malloc(void *o, size_t n)
{
	big_alloc *b = o;
	if (n > b->largest)
		b->largest = n;
	return malloc(n);
}
static void *ba_realloc(void *o, void *p, size_t n)
{
	big_alloc *b = o;
	if (n > b->largest)
		b->largest = n;
	return realloc(p, n);
}
static void ba_free(void *o, void *p)
{
	(void)o;
	free(p);
}

/* A coding-16 chunk of n elements: alphabet s = 0, K classes over one axis (run 1, count
 * n, every level 0), every table giving token 0 all of 4096 (each token then leaves its
 * state as it is: 32 states of 2^15 and no word), no raw bits, no escape. Decodes to n
 * zeros. */
static void chunk16(fg_buf *b, uint64_t n, unsigned K)
{
	fg_u8(b, 16);
	fg_varint(b, n);
	fg_u8(b, 0);
	fg_u8(b, K);
	fg_u8(b, K > 1 ? 1 : 0);
	if (K > 1) {
		uint8_t *lev = calloc(n, 1);
		fg_varint(b, 1);
		fg_varint(b, n);
		fg_stream(b, lev, n, 0);
		free(lev);
		fg_u8(b, K - 1);
		for (unsigned k = 0; k < K; k++)
			fg_u8(b, k);
	}
	fg_varint(b, 2 * K);
	for (unsigned k = 0; k < K; k++) {
		fg_u8(b, 0); /* last = 0 */
		fg_u8(b, 0); /* a = 0: F(0) = 4096 */
	}
	fg_varint(b, 128);
	for (int j = 0; j < 32; j++)
		fg_u32(b, 0x8000);
	fg_varint(b, 0);
	uint8_t z = 0;
	fg_varint(b, 1);
	fg_stream(b, &z, 1, 0);
}

/* Decodes the chunk; @return the status, *largest the largest block the coder allocated. */
static int decode(const fg_buf *b, uint64_t n, float *y, size_t *largest)
{
	big_alloc ba = {{ba_malloc, ba_realloc, ba_free, NULL}, 0};
	ba.a.opaque = &ba;
	alcm_coder *c = alcm_coder_new(&ba.a, NULL);
	assert_non_null(c);
	double step = 0.001;
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	qp.dtype = ALCM_DTYPE_F32;
	qp.step = &step;
	qp.nsteps = 1;
	qp.inner = n;
	size_t slen = (size_t)alcm_quant_scratch(n);
	uint8_t *scratch = malloc(slen);
	alcm_cursor cur = {b->p, b->len, 0};
	int st = alcm_quant_decode(c, &cur, NULL, &qp, (uint8_t *)y, 0, n, scratch, slen);
	if (!st && cur.pos != cur.len)
		st = ALCM_E_CORRUPT;
	free(scratch);
	alcm_coder_free(c);
	*largest = ba.largest;
	return st;
}

static void test_short_chunks_build_no_tables(void **state)
{
	(void)state;
	static const uint64_t ns[] = {1, 2, 31, 33, 500, 4095};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		for (unsigned K = 1; K <= 16; K += 15) {
			uint64_t n = ns[i];
			if (n >= 512u * K)
				continue;
			fg_buf b = {0};
			chunk16(&b, n, K);
			float *y = malloc(n * sizeof(float));
			for (uint64_t k = 0; k < n; k++)
				y[k] = 1.0f;
			size_t largest;
			assert_int_equal(decode(&b, n, y, &largest), ALCM_OK);
			for (uint64_t k = 0; k < n; k++)
				assert_true(y[k] == 0.0f);
			/* Not the 16 slot tables (256 KiB); the coder's zstd context takes 94 KiB. */
			if (largest >= 128 * 1024)
				fail_msg("n = %llu, K = %u: a block of %zu bytes was allocated",
				         (unsigned long long)n, K, largest);
			fg_free(&b);
			free(y);
		}
	}
}

/* Long chunks keep the slot tables (their cost is then at most 8 entries a token), and
 * give the same zeros. */
static void test_long_chunks(void **state)
{
	(void)state;
	uint64_t n = 16 * 512;
	fg_buf b = {0};
	chunk16(&b, n, 16);
	float *y = malloc(n * sizeof(float));
	size_t largest;
	assert_int_equal(decode(&b, n, y, &largest), ALCM_OK);
	for (uint64_t k = 0; k < n; k++)
		assert_true(y[k] == 0.0f);
	fg_free(&b);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_short_chunks_build_no_tables),
		cmocka_unit_test(test_long_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
