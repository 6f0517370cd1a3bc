/*
 * alcm_rounding_escapes() counts the float16 and bfloat16 values that quantizing with a step
 * would leave outside the bound once the reconstruction is rounded to the dtype (the encoder
 * picks the step of a max-error coding by it, so the count decides the archive's bytes). With
 * AVX2 and F16C a loop takes four values at a time: it must give the portable loop's count
 * to the bit, on values of several scales with specials among them (NaN, infinities, -0,
 * subnormals), at steps on and off the dtype's grid, for tensors read whole and strided (over
 * 2^16 values), with tails of every length.
 */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double count(const alcm_tensor *t, uint64_t n, double s, double b, int scalar)
{
	int keep = alcm_quant_scalar_only;
	alcm_quant_scalar_only = scalar;
	double c = alcm_rounding_escapes(t, n, s, b);
	alcm_quant_scalar_only = keep;
	return c;
}

static void avx2_equals_portable(int dtype)
{
	static const uint64_t sizes[] = {1,    2,     3,     4,     5,     7,     8,
	                                 9,    100,   4099,  65536, 65537, 65539, 200003};
	static const double sds[] = {1e-3, 0.02, 1, 300};
	uint64_t rng = 0x9e3779b97f4a7c15ull + (uint64_t)dtype, nonzero = 0, cases = 0;
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
				for (int k = 0; k < 4; k++) {
					double s = k == 0   ? 2 * b
					           : k == 1 ? 2 * b * 0.9921875
					           : k == 2 ? ldexp(1, ilogb(2 * b))
					                    : 2 * b * 0.75;
					double fast = count(&t, n, s, b, 0), slow = count(&t, n, s, b, 1);
					assert_true(fast == slow);
					nonzero += slow > 0;
					cases++;
				}
		}
		free(v);
	}
	/* Not vacuous: many cases see escapes (bfloat16: 451 of 2016 when written), some none. */
	assert_true(nonzero > cases / 8 && nonzero < cases);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
