/* Lossless delta chunks (spec 6.12.4) decoded bit for bit by each apply loop: the residual
 * planes (transform 1), the sparse residuals (transform 4, expanded a block at a time, 16
 * elements a step with AVX2) and the joined residuals of the other transforms, for every
 * element width, with the AVX2 loops and with the portable ones. */
#include "testutil.h"
#include "series_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

enum { SAME, SPARSE, DENSE, NOISE, FEW, NPAT };

/* ref: any bits; src: ref changed by pattern. SPARSE: a share `keep`/64 of the elements keep
 * their bits, the others move a few units in the last place; DENSE: every element moves;
 * FEW: every element moves by one of three steps (a palette of residuals). */
static void make(uint8_t *src, uint8_t *ref, size_t w, uint64_t n, int pat, unsigned keep)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = next(), x = r;
		if (w < 8)
			r &= ((uint64_t)1 << (8 * w)) - 1;
		/* Sign and exponent bits alike across elements, as in trained weights. */
		if (w > 1)
			r = (r & ~((uint64_t)0x7f << (8 * w - 8))) | ((uint64_t)0x3c << (8 * w - 8));
		uint64_t d = (next() % 64 < keep && pat == SPARSE) ? 0 : next() % 9 + 1;
		if (pat == SAME)
			x = r;
		else if (pat == FEW)
			x = r ^ (next() % 3 + 1);
		else if (pat == NOISE)
			x = next();
		else
			x = next() & 1 ? r + d : r - d;
		for (size_t k = 0; k < w; k++) {
			ref[i * w + k] = (uint8_t)(r >> (8 * k));
			src[i * w + k] = (uint8_t)(x >> (8 * k));
		}
	}
}

static unsigned seen[8][2]; /* [transform][simd]: chunks decoded through each path */

/* Codes src against ref, decodes it onto a copy of ref with the AVX2 loops (where the CPU
 * has them) and with the portable ones: both give src, bit for bit. */
static void round_trip(alcm_coder *c, int dtype, const uint8_t *src, const uint8_t *ref,
                       uint64_t n)
{
	size_t w = alcm_dtype_size(dtype);
	alcm_buf b = {NULL, 0, 0, NULL, 0};
	assert_int_equal(alcm_delta_encode(c, &b, dtype, src, ref, n, 1), ALCM_OK);
	uint8_t *dst = malloc(n * w + 1);
	uint8_t *scratch = malloc((size_t)alcm_delta_scratch(n, w));
	assert_non_null(dst);
	assert_non_null(scratch);
	int keep = alcm_delta_scalar_only;
	for (int scalar = 0; scalar < 2; scalar++) {
		alcm_delta_scalar_only = scalar;
		memcpy(dst, ref, n * w);
		alcm_cursor cur = {b.p, b.len, 0};
		assert_int_equal(alcm_delta_decode(c, &cur, dtype, dst, n, scratch), ALCM_OK);
		assert_int_equal(cur.pos, b.len);
		assert_memory_equal(dst, src, n * w);
		if (b.len > 1 && b.p[0] != ALCM_DELTA_PLAIN && b.p[1] < 8)
			seen[b.p[1]][scalar]++;
	}
	alcm_delta_scalar_only = keep;
	free(scratch);
	free(dst);
	alcm_buf_free(&b);
}

static void test_apply_bit_exact(void **state)
{
	(void)state;
	static const int dtypes[] = {ALCM_DTYPE_U8,  ALCM_DTYPE_I16, ALCM_DTYPE_F16, ALCM_DTYPE_BF16,
	                             ALCM_DTYPE_U32, ALCM_DTYPE_F32, ALCM_DTYPE_I64, ALCM_DTYPE_F64};
	/* Lengths around the 16-element steps and the 1024-element blocks. */
	static const uint64_t lens[] = {1, 15, 16, 17, 255, 1023, 1024, 1025, 3001, 5000};
	static const unsigned keeps[] = {8, 26, 40, 60};
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	uint8_t *src = malloc(5000 * 8), *ref = malloc(5000 * 8);
	for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
			for (int pat = 0; pat < NPAT; pat++)
				for (size_t k = 0; k < (pat == SPARSE ? 4u : 1u); k++) {
					size_t w = alcm_dtype_size(dtypes[d]);
					make(src, ref, w, lens[l], pat, keeps[k]);
					round_trip(c, dtypes[d], src, ref, lens[l]);
				}
	free(src);
	free(ref);
	alcm_coder_free(c);
	/* Each residual path was taken, by both sets of loops. */
	for (int scalar = 0; scalar < 2; scalar++) {
		assert_true(seen[ALCM_TRANSFORM_PLANES][scalar] > 0);
		assert_true(seen[ALCM_TRANSFORM_SPARSE][scalar] > 0);
		assert_true(seen[ALCM_TRANSFORM_PALETTE][scalar] > 0);
		assert_true(seen[ALCM_TRANSFORM_NONE][scalar] > 0);
	}
}

/* A sparse chunk whose planes end where a 16-byte read would run past them: the last values
 * come from the portable loop, and ASan sees any read beyond the planes. */
static void test_sparse_tail(void **state)
{
	(void)state;
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	uint64_t n = 2048 + 40;
	uint8_t *src = malloc(n * 4), *ref = malloc(n * 4);
	for (unsigned keep = 8; keep <= 56; keep += 4) {
		make(src, ref, 4, n, SPARSE, keep);
		/* The last elements all change: the planes' last values sit at the chunk's end. */
		for (uint64_t i = n - 24; i < n; i++)
			src[i * 4] ^= 1;
		round_trip(c, ALCM_DTYPE_F32, src, ref, n);
		round_trip(c, ALCM_DTYPE_BF16, src, ref, n);
	}
	free(src);
	free(ref);
	alcm_coder_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply_bit_exact),
		cmocka_unit_test(test_sparse_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
