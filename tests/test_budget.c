/* Budget profiles: the features at all 41 steps in one pass equal the features at each step
 * alone, bit for bit (the predictions a --size plan rests on do not change), for every float
 * dtype, tensors read whole and sampled, with zeros and non-finite values; the variance and
 * the signal energy. */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void fill(int dtype, uint8_t *p, uint64_t n, uint64_t seed)
{
	uint64_t s = seed;
	for (uint64_t i = 0; i < n; i++) {
		double x = tu_gauss(&s) * 0.02;
		if (i % 7 == 0)
			x = 0; /* many values quantize to zero at every step */
		if (i % 997 == 3)
			x = i % 2 ? NAN : INFINITY;
		switch (dtype) {
		case ALCM_DTYPE_F16: alcm_store16(p + 2 * i, alcm_float_to_half((float)x)); break;
		case ALCM_DTYPE_BF16: alcm_store16(p + 2 * i, alcm_float_to_bf16((float)x)); break;
		case ALCM_DTYPE_F32: {
			float f = (float)x;
			memcpy(p + 4 * i, &f, 4);
			break;
		}
		default: memcpy(p + 8 * i, &x, 8);
		}
	}
}

static void check(int dtype, uint64_t n)
{
	size_t w = alcm_dtype_size(dtype);
	uint8_t *buf = malloc(n * w);
	assert_non_null(buf);
	fill(dtype, buf, n, n + (uint64_t)dtype);
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = dtype;
	t.ndim = 1;
	t.shape[0] = n;
	t.data = buf;
	t.nbytes = n * w;
	double step[ALCM_BUDGET_STEPS];
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++)
		step[k] = 0.02 * pow(2.0, k / 2.0 - 16);
	float all[ALCM_BUDGET_STEPS][ALCM_PRED_FEATURES], one[ALCM_PRED_FEATURES];
	assert_int_equal(alcm_tensor_features_steps(&t, step, ALCM_BUDGET_STEPS, all), ALCM_OK);
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++) {
		assert_int_equal(alcm_tensor_features(&t, step[k], one), ALCM_OK);
		assert_memory_equal(all[k], one, sizeof(one));
	}
	/* The share under half a step grows with the step: the counts are cumulative. */
	assert_true(all[0][3] < all[ALCM_BUDGET_STEPS - 1][3]);
	free(buf);
}

static void features_at_all_steps_equal_one_at_a_time(void **state)
{
	(void)state;
	static const int dt[] = {ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F32, ALCM_DTYPE_F64};
	for (int d = 0; d < 4; d++) {
		check(dt[d], 5000);    /* read whole */
		check(dt[d], 300000);  /* sampled */
	}
}

static void steps_must_increase(void **state)
{
	(void)state;
	float x[4] = {1, 2, 3, 4}, f[2][ALCM_PRED_FEATURES];
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = 4;
	t.data = x;
	t.nbytes = sizeof(x);
	double down[2] = {1, 0.5}, bad[2] = {1, NAN}, ok[2] = {0.5, 1};
	assert_int_equal(alcm_tensor_features_steps(&t, down, 2, f), ALCM_E_ARG);
	assert_int_equal(alcm_tensor_features_steps(&t, bad, 2, f), ALCM_E_ARG);
	assert_int_equal(alcm_tensor_features_steps(&t, ok, 0, f), ALCM_E_ARG);
	assert_int_equal(alcm_tensor_features_steps(&t, ok, 2, f), ALCM_OK);
	assert_true(f[0][3] == 0.0f && f[1][3] == 0.0f); /* no |x| under 0.25 or 0.5 */
}

/* The profile's variance skips special values and equals the plain two-pass one. */
static void profile_variance(void **state)
{
	(void)state;
	float x[6] = {1, 2, NAN, 3, -0.0f, 4};
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = 6;
	t.data = x;
	t.nbytes = sizeof(x);
	alcm_budget_profile p;
	assert_int_equal(alcm_budget_profile_make(NULL, &t, 24, &p), ALCM_OK);
	assert_true(p.lossy);
	assert_true(fabs(p.variance - 1.25) < 1e-12);
	for (int k = 1; k < ALCM_BUDGET_STEPS; k++)
		assert_true(p.bits[k] <= p.bits[k - 1] && p.step[k] > p.step[k - 1]);
}

/* Sum of squares of the values that are not special, value i in lane i % 4, the lanes
 * folded in pairs: what alcm-pack's budget_signal() and the SNR's signal add up. */
static double lane_signal(int dtype, const uint8_t *p, uint64_t n)
{
	double s[4] = {0, 0, 0, 0};
	for (uint64_t i = 0; i < n; i++)
		if (!alcm_is_special(dtype, p, i)) {
			double x = alcm_load_float(dtype, p, i);
			s[i & 3] += x * x;
		}
	return (s[0] + s[1]) + (s[2] + s[3]);
}

/* The profile's signal is that sum to the bit, for every float dtype, and a float32,
 * float16 or bfloat16 tensor's variance and signal are the same doubles from the AVX2 loop
 * as from the portable one (n not a multiple of 4; NaN, infinities, -0 and subnormals among
 * them). */
static void profile_signal(void **state)
{
	(void)state;
	static const int dt[] = {ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F32, ALCM_DTYPE_F64};
	for (int d = 0; d < 4; d++)
		for (uint64_t n = 1; n <= 100003; n = n * 7 + 3) {
			size_t w = alcm_dtype_size(dt[d]);
			uint8_t *buf = malloc(n * w);
			assert_non_null(buf);
			fill(dt[d], buf, n, n);
			if (dt[d] == ALCM_DTYPE_F32)
				for (uint64_t i = 5; i < n; i += 101) {
					uint32_t odd[4] = {0x80000000u, 0x00000001u, 0x807fffffu, 0xff800000u};
					alcm_store32(buf + 4 * i, odd[i % 4]);
				}
			/* -0, a subnormal, a negative one, an infinity and a NaN of each 2-byte dtype */
			uint16_t odd16[2][5] = {{0x8000, 0x0001, 0x83ff, 0xfc00, 0x7e00},
			                        {0x8000, 0x0001, 0x807f, 0xff80, 0x7fc0}};
			if (w == 2)
				for (uint64_t i = 3; i < n; i += 67)
					alcm_store16(buf + 2 * i, odd16[dt[d] == ALCM_DTYPE_BF16][i % 5]);
			alcm_tensor t;
			tu_vector(&t, dt[d], buf, n);
			alcm_budget_profile p, q;
			alcm_budget_scalar_only = 0;
			assert_int_equal(alcm_budget_profile_make(NULL, &t, (double)t.nbytes, &p), ALCM_OK);
			alcm_budget_scalar_only = 1;
			assert_int_equal(alcm_budget_profile_make(NULL, &t, (double)t.nbytes, &q), ALCM_OK);
			alcm_budget_scalar_only = 0;
			assert_true(p.signal == lane_signal(dt[d], buf, n));
			assert_true(p.signal == q.signal && p.variance == q.variance);
			assert_true(n < 3 || p.signal > 0);
			free(buf);
		}
}

/* Values of several shapes for the entropy feature's runs: Gaussian (short runs at fine
 * steps), on a lattice of 37 points (long runs at every step), heavy-tailed (a few far
 * values: symbols spread, runs long in the middle), and 0 * inf symbols at a step of
 * 1e-310 (float64: NaN symbols, each a run of its own). */
static void fill_shape(uint8_t *p, uint64_t n, int shape, uint64_t seed)
{
	uint64_t s = seed;
	for (uint64_t i = 0; i < n; i++) {
		double g = tu_gauss(&s), x = shape == 1 ? floor(g * 6) / 64
		                                  : shape == 2 ? g * g * g * 1e-3
		                                               : g * 0.02;
		memcpy(p + 8 * i, &x, 8);
	}
}

/* The runs of equal symbols scanned value by value (past the first few searched) give the
 * profiles the searches alone give, to the bit: float32 and float64 tensors read whole and
 * sampled, at every step of a profile (steps from far under the values' spacing to over
 * their range), with AVX2 and without. */
static void profile_runs_scanned(void **state)
{
	(void)state;
	static const uint64_t sizes[] = {5, 70, 700, 5000, 40000, 300000};
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
		for (int shape = 0; shape < 3; shape++)
			for (int dt = 0; dt < 2; dt++) {
				uint64_t n = sizes[z];
				double *v = malloc(n * 8);
				assert_non_null(v);
				fill_shape((uint8_t *)v, n, shape, n * 3 + (uint64_t)shape);
				float *f = (float *)(void *)v; /* float32 in place, from the front */
				for (uint64_t i = 0; dt == 0 && i < n; i++)
					f[i] = (float)v[i];
				alcm_tensor t;
				tu_vector(&t, dt ? ALCM_DTYPE_F64 : ALCM_DTYPE_F32, v, n);
				alcm_budget_profile scan[2], search;
				for (int scalar = 0; scalar < 2; scalar++) {
					alcm_budget_scalar_only = scalar;
					assert_int_equal(alcm_budget_profile_make(NULL, &t, 1, &scan[scalar]), 0);
				}
				alcm_predict_search_only = 1;
				assert_int_equal(alcm_budget_profile_make(NULL, &t, 1, &search), ALCM_OK);
				alcm_predict_search_only = 0;
				alcm_budget_scalar_only = 0;
				assert_memory_equal(&scan[0], &search, sizeof(search));
				assert_memory_equal(&scan[1], &search, sizeof(search));
				free(v);
			}
	/* Steps so fine that 1 / step is infinite: the symbol of 0 is NaN. */
	double x[64];
	uint64_t s = 5;
	for (int i = 0; i < 64; i++)
		x[i] = i % 3 ? tu_gauss(&s) * 1e-300 : 0;
	alcm_tensor t;
	tu_vector(&t, ALCM_DTYPE_F64, x, 64);
	double step[3] = {1e-320, 1e-310, 1e-300};
	float a[3][ALCM_PRED_FEATURES], b[3][ALCM_PRED_FEATURES];
	assert_int_equal(alcm_tensor_features_steps(&t, step, 3, a), ALCM_OK);
	alcm_predict_search_only = 1;
	assert_int_equal(alcm_tensor_features_steps(&t, step, 3, b), ALCM_OK);
	alcm_predict_search_only = 0;
	assert_memory_equal(a, b, sizeof(a));
}

/* A solve's picks are the same from the AVX2 loop as from the scalar one (the first step
 * of least d + lambda r under infinity): profiles with flat runs of bits (ties between
 * steps), steps past the variance (equal distortions), zero bits, NaN and infinite bits,
 * tensors that stay lossless, at budgets from nothing to everything. */
static void solve_same_picks(void **state)
{
	(void)state;
	uint64_t rs = 12345;
	for (int round = 0; round < 300; round++) {
		size_t n = 1 + (size_t)(tu_rand(&rs) % 40);
		alcm_budget_profile *p = calloc(n, sizeof(*p));
		double *b0 = malloc(n * sizeof(double)), *b1 = malloc(n * sizeof(double));
		assert_true(p && b0 && b1);
		double raw = 0;
		for (size_t i = 0; i < n; i++) {
			p[i].elements = 1 + tu_rand(&rs) % 100000;
			p[i].fixed_bytes = (double)(p[i].elements * 4);
			p[i].lossy = tu_rand(&rs) % 8 != 0;
			double sd = exp2((double)(tu_rand(&rs) % 40) - 20);
			p[i].variance = sd * sd;
			double bits = 20 + (double)(tu_rand(&rs) % 12);
			for (int k = 0; k < ALCM_BUDGET_STEPS; k++) {
				p[i].step[k] = sd * exp2(k / 2.0 - 16);
				uint64_t r = tu_rand(&rs) % 16;
				if (r < 6) /* else the same bits as the step before: a tie */
					bits = fmax(0, bits - (double)(tu_rand(&rs) % 4) * 0.5);
				p[i].bits[k] = r == 15 && round % 5 == 0 ? NAN
				               : r == 14 && round % 7 == 0 ? INFINITY : bits;
			}
			raw += p[i].fixed_bytes;
		}
		for (int q = 0; q <= 20; q++) {
			double budget = raw * exp2(-(double)q * 0.6), pr0 = 0, pr1 = 0;
			alcm_budget_scalar_only = 1;
			int s0 = alcm_budget_solve(p, n, budget, NULL, b0, &pr0);
			alcm_budget_scalar_only = 0;
			int s1 = alcm_budget_solve(p, n, budget, NULL, b1, &pr1);
			assert_int_equal(s0, s1);
			assert_memory_equal(b0, b1, n * sizeof(double));
			assert_memory_equal(&pr0, &pr1, sizeof(double));
		}
		free(p);
		free(b0);
		free(b1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(features_at_all_steps_equal_one_at_a_time),
		cmocka_unit_test(steps_must_increase),
		cmocka_unit_test(profile_variance),
		cmocka_unit_test(profile_signal),
		cmocka_unit_test(profile_runs_scanned),
		cmocka_unit_test(solve_same_picks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
