/*
 * alcm_rounding_escapes() counts the float16 and bfloat16 values that quantizing with a step
 * would leave outside the bound once the reconstruction is rounded to the dtype (the encoder
 * picks the step of a max-error coding by it, so the count decides the archive's bytes). With
 * AVX2 and F16C a loop takes four values at a time: it must give the portable loop's count
 * to the bit, on values of several scales with specials among them (NaN, infinities, -0,
 * subnormals), at steps on and off the dtype's grid, for tensors read whole and strided (over
 * 2^16 values), with tails of every length; an AVX-512 loop takes eight at a time and must
 * give the same count. Values under alcm_escape_floor()'s magnitude
 * are not tested: none of them may escape (every pattern under it, tried at many steps), and
 * the counts with and without the floor must be equal.
 */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* scalar 0: the fastest loop (AVX-512 where the CPU has it); 1: the portable loop; 2: the
 * portable loop testing every value (no floor); 3: the AVX2 loop. */
static double count(const alcm_tensor *t, uint64_t n, double s, double b, int scalar)
{
	int keep = alcm_quant_scalar_only, keep_off = alcm_escape_floor_off,
	    keep_wide = alcm_escapes_avx512;
	alcm_quant_scalar_only = scalar == 1 || scalar == 2;
	alcm_escape_floor_off = scalar == 2;
	alcm_escapes_avx512 = scalar != 3;
	double c = alcm_rounding_escapes(t, n, s, b);
	alcm_quant_scalar_only = keep;
	alcm_escape_floor_off = keep_off;
	alcm_escapes_avx512 = keep_wide;
	return c;
}

/* The steps dtype_step() tries for bound b (lib/encoder.c): twice the bound, and the
 * multiples of u / 2^j under it, u the dtype's spacing at magnitude m. */
static double grid_step(int dtype, double m, double b, int j)
{
	int e;
	frexp(m, &e);
	double u = ldexp(1.0, e - 1 - (dtype == ALCM_DTYPE_BF16 ? 7 : 10)), g = ldexp(u, -j);
	double k = floor(2 * b / g);
	return k >= 1 ? k * g : 2 * b;
}

static void avx2_equals_portable(int dtype)
{
	/* every tail of the sixteen- and eight-value loops (15, 23, 31, 47: one short of a
	 * group), and strided reads over 2^16 values */
	static const uint64_t sizes[] = {1,  2,  3,   4,    5,     7,     8,     9,     15,
	                                 16, 17, 23,  31,   33,    47,    100,   4099,  65536,
	                                 65537, 65539, 200003};
	static const double sds[] = {1e-3, 0.02, 1, 300};
	uint64_t rng = 0x9e3779b97f4a7c15ull + (uint64_t)dtype, nonzero = 0, cases = 0,
	         floored = 0;
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		uint64_t n = sizes[z];
		uint16_t *v = malloc(n * sizeof(uint16_t));
		assert_non_null(v);
		for (size_t d = 0; d < sizeof(sds) / sizeof(sds[0]); d++) {
			for (uint64_t i = 0; i < n; i++)
				v[i] = tu_h16_value(dtype, &rng, sds[d], 64);
			alcm_tensor t;
			tu_vector(&t, dtype, v, n);
			/* bounds from far under the values' spacing to over them; steps at twice the
			 * bound (off the grid) and at grid-like fractions of it */
			for (double b = sds[d] * 1e-4; b < sds[d] * 4; b *= 3.7)
				for (int k = 0; k < 8; k++) {
					double s = k == 0   ? 2 * b
					           : k == 1 ? 2 * b * 0.9921875
					           : k == 2 ? ldexp(1, ilogb(2 * b))
					           : k == 3 ? 2 * b * 0.75
					                    : grid_step(dtype, 4 * sds[d], b, k - 4);
					double fast = count(&t, n, s, b, 0), slow = count(&t, n, s, b, 1);
					assert_true(fast == slow);
					assert_true(slow == count(&t, n, s, b, 2));
					assert_true(slow == count(&t, n, s, b, 3));
					nonzero += slow > 0;
					floored += alcm_escape_floor(dtype == ALCM_DTYPE_BF16, s, b) > 0;
					cases++;
				}
		}
		free(v);
	}
	/* Not vacuous: many cases see escapes (bfloat16: 1332 of 6048 when written), some none,
	 * and many leave values under a floor (bfloat16 2415 of them, float16 2940). */
	assert_true(nonzero > cases / 8 && nonzero < cases);
	assert_true(floored > cases / 4);
}

/* Every pattern under the floor, of either sign, at steps on many grids (the powers of two
 * dividing them from the dtype's finest spacing up, bounds at half the step and over it):
 * none escapes when every value is tested. Not vacuous: 243 (bfloat16) and 360 (float16)
 * floors tried when written, 112 and 199 of them over 1.0. */
static void floor_is_sound(int dtype)
{
	int bf = dtype == ALCM_DTYPE_BF16;
	uint16_t *v = malloc(2 * 65536 * sizeof(uint16_t));
	assert_non_null(v);
	uint64_t rng = 12345, tried = 0, high = 0;
	int lo = bf ? -140 : -30, hi = bf ? 120 : 5; /* under the finest spacing: no floor */
	for (int ge = lo; ge <= hi; ge += bf ? 7 : 1)
		for (int r = 0; r < 12; r++) {
			/* s = k g, k from 1 to 2^12, odd or even */
			uint64_t k = 1 + tu_rand(&rng) % (r < 4 ? 8 : 4096);
			double s = ldexp((double)k, ge);
			double b = r % 3 == 0 ? s / 2 : s / 2 * (1 + (double)(tu_rand(&rng) % 1000) / 4000);
			uint32_t thr = alcm_escape_floor(bf, s, b);
			if (!thr)
				continue;
			uint64_t n = 0;
			for (uint32_t p = 0; p < thr; p++) {
				v[n++] = (uint16_t)p;
				v[n++] = (uint16_t)(p | 0x8000);
			}
			alcm_tensor t;
			tu_vector(&t, dtype, v, n);
			/* tested whole in slices of 2^16 (a longer tensor is counted strided) */
			for (uint64_t at = 0; at < n; at += 65536) {
				uint64_t m = n - at < 65536 ? n - at : 65536;
				alcm_tensor part = t;
				part.data = (const uint8_t *)t.data + 2 * at;
				part.shape[0] = m;
				part.nbytes = 2 * m;
				assert_true(count(&part, m, s, b, 2) == 0);
			}
			tried++;
			high += thr > (bf ? 0x3f80u : 0x3c00u); /* floors over 1.0 */
		}
	free(v);
	assert_true(tried > 200);
	assert_true(high > 20);
}

static void test_bf16_floor_is_sound(void **state)
{
	(void)state;
	floor_is_sound(ALCM_DTYPE_BF16);
}

static void test_f16_floor_is_sound(void **state)
{
	(void)state;
	floor_is_sound(ALCM_DTYPE_F16);
}

static void test_bf16_avx2_equals_portable(void **state)
{
	(void)state;
	avx2_equals_portable(ALCM_DTYPE_BF16);
}

static void test_f16_avx2_equals_portable(void **state)
{
	(void)state;
	avx2_equals_portable(ALCM_DTYPE_F16);
}

/* A bfloat16 value one step past a grid point rounds past a tight bound: counted. */
static void test_bf16_counts_rounding(void **state)
{
	(void)state;
	uint16_t v[8];
	/* 1.0078125 (1 + 2^-7) with step 0.01 and bound 0.005: the symbols' values, rounded to
	 * bfloat16 (spacing 2^-7 near 1), land 1/128 apart, so some are off by more than 0.005. */
	for (int i = 0; i < 8; i++)
		v[i] = alcm_float_to_bf16((float)(1 + i / 128.0));
	alcm_tensor t;
	tu_vector(&t, ALCM_DTYPE_BF16, v, 8);
	double fast = count(&t, 8, 0.01, 0.005, 0), slow = count(&t, 8, 0.01, 0.005, 1);
	assert_true(fast == slow);
	assert_true(slow > 0 && slow < 8);
	/* a step on the grid (2^-7) keeps every value: no escapes */
	assert_true(count(&t, 8, 0.0078125, 0.005, 0) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bf16_avx2_equals_portable),
		cmocka_unit_test(test_f16_avx2_equals_portable),
		cmocka_unit_test(test_bf16_counts_rounding),
		cmocka_unit_test(test_bf16_floor_is_sound),
		cmocka_unit_test(test_f16_floor_is_sound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
