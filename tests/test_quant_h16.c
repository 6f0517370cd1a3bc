/*
 * The quantizer's common case on float16 and bfloat16 (alcm_quant_run_h16: eight values at a
 * time with AVX2 and F16C) must give what its careful path gives value by value: the same
 * chunk bytes, the same reconstructions, and the same statistics (the squared error and the
 * signal energy, which decide which attempt `--size` keeps, to a relative 1e-12: the run sums
 * them in four lanes). Values of several scales with specials among them, bounds on and off
 * the dtype's grid, offsets, channels of their own steps, lengths with tails of every size.
 */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct coded {
	alcm_buf data;
	alcm_qstats st;
	uint16_t *recon;
} coded;

static void code(const uint16_t *v, uint64_t n, const alcm_qparams *qp, int scalar, coded *out)
{
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	alcm_buf mask = {NULL, 0, 0, NULL, 0};
	memset(out, 0, sizeof(*out));
	out->recon = calloc(n + 1, sizeof(uint16_t));
	assert_non_null(out->recon);
	alcm_quant_scalar_only = scalar;
	int st = alcm_quant_encode(c, &out->data, &mask, qp, (const uint8_t *)v, 0, n, &out->st,
	                           (uint8_t *)out->recon);
	alcm_quant_scalar_only = 0;
	assert_int_equal(st, ALCM_OK);
	alcm_buf_free(&mask);
	alcm_coder_free(c);
}

/* The counts and the largest error the same; the squared error and the signal summed in
 * another order (the run in four lanes), so equal to a relative 1e-12. */
static void same_stats(const alcm_qstats *a, const alcm_qstats *c)
{
	assert_int_equal(a->pruned, c->pruned);
	assert_int_equal(a->escapes, c->escapes);
	assert_int_equal(a->modelled, c->modelled);
	assert_int_equal(a->absmax, c->absmax);
	assert_true(a->max_err == c->max_err);
	assert_true(fabs(a->sig - c->sig) <= 1e-12 * fabs(a->sig));
	assert_true(fabs(a->noise - c->noise) <= 1e-12 * fabs(a->noise));
}

/* Codes v (n values of dtype) at bound b by both paths and compares them: one step (2 b, or
 * just under it when `under`), or two channels of their own steps and bounds (`two`); offset o.
 * @return 1 if some value was stored exactly. */
static int same_both_ways(int dtype, const uint16_t *v, uint64_t n, double b, int under, int two,
                          double o)
{
	double step[2] = {under ? 2 * b * 0.9921875 : 2 * b, 3 * b}, bound[2] = {b, 1.5 * b};
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	qp.dtype = dtype;
	qp.step = step;
	qp.bound_c = bound;
	qp.max_err = b;
	qp.nsteps = two ? 2 : 1;
	qp.inner = n / qp.nsteps;
	qp.offset = o;
	qp.level = 3;
	qp.symcoding = 1;
	coded a, c;
	code(v, n, &qp, 1, &a);
	code(v, n, &qp, 0, &c);
	assert_int_equal(a.data.len, c.data.len);
	assert_memory_equal(a.data.p, c.data.p, a.data.len);
	assert_memory_equal(a.recon, c.recon, n * sizeof(uint16_t));
	same_stats(&a.st, &c.st);
	int escaped = a.st.escapes > 0;
	alcm_buf_free(&a.data);
	alcm_buf_free(&c.data);
	free(a.recon);
	free(c.recon);
	return escaped;
}

static void same_as_careful(int dtype)
{
	static const uint64_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 100, 1000, 4099};
	static const double sds[] = {1e-3, 0.02, 1, 300, -1};
	static const unsigned specials[] = {0, 500, 40};
	uint64_t rng = 0x243f6a8885a308d3ull + (uint64_t)dtype, cases = 0, escaped = 0;
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		uint64_t n = sizes[z];
		uint16_t *v = malloc(n * sizeof(uint16_t));
		assert_non_null(v);
		for (size_t d = 0; d < sizeof(sds) / sizeof(sds[0]); d++)
			for (size_t p = 0; p < sizeof(specials) / sizeof(specials[0]); p++) {
				for (uint64_t i = 0; i < n; i++)
					v[i] = tu_h16_value(dtype, &rng, sds[d], specials[p]);
				double sd = sds[d] > 0 ? sds[d] : 1;
				for (double b = sd * 1e-3; b < sd * 4; b *= 5.3)
					for (int k = 0; k < 4; k++) {
						/* one step, or two channels of their own steps and bounds
						 * (covering the tensor: an even length) */
						if (k == 3 && (n < 2 || n % 2))
							continue;
						escaped += same_both_ways(dtype, v, n, b, k == 1, k == 3,
						                          k == 2 ? 0.375 * b : 0);
						cases++;
					}
			}
		free(v);
	}
	/* Not vacuous: some cases stored values exactly (the careful path between runs). */
	assert_true(escaped > 0 && escaped < cases);
}

static void test_bf16_same_as_careful(void **state)
{
	(void)state;
	same_as_careful(ALCM_DTYPE_BF16);
}

static void test_f16_same_as_careful(void **state)
{
	(void)state;
	same_as_careful(ALCM_DTYPE_F16);
}

/* Channels of 32K values or more: without AVX2 (here: the portable path) a table of what each
 * bit pattern quantizes to is filled as patterns are met and its counts summed at the end (by
 * pattern, not by value); the run codes them eight at a time. */
static void same_as_memo(int dtype)
{
	const uint64_t n = 2 * 40000;
	uint16_t *v = malloc(n * sizeof(uint16_t));
	assert_non_null(v);
	uint64_t rng = 0x9e3779b97f4a7c15ull + (uint64_t)dtype, escaped = 0;
	for (int k = 0; k < 6; k++) {
		double sd = k < 3 ? 0.02 : 3;
		for (uint64_t i = 0; i < n; i++)
			v[i] = tu_h16_value(dtype, &rng, sd, k % 3 == 2 ? 300 : 0);
		double b = sd * (k % 3 == 0 ? 1e-3 : 1e-2);
		/* k 4 and 5: two channels of 40000, each its own step */
		escaped += same_both_ways(dtype, v, n, b, k % 2, k >= 4, 0);
	}
	assert_true(escaped > 0); /* specials among the values: stored exactly */
	free(v);
}

static void test_bf16_same_as_memo(void **state)
{
	(void)state;
	same_as_memo(ALCM_DTYPE_BF16);
}

static void test_f16_same_as_memo(void **state)
{
	(void)state;
	same_as_memo(ALCM_DTYPE_F16);
}

/* The run takes whole groups of eight up to the first that needs care, and nothing where the
 * CPU lacks AVX2 or F16C. */
static void test_run_stops_at_care(void **state)
{
	(void)state;
	uint16_t v[64];
	uint32_t sym[64];
	uint64_t rng = 7;
	for (int i = 0; i < 64; i++)
		v[i] = tu_h16_value(ALCM_DTYPE_BF16, &rng, 0.02, 0);
	v[37] = 0x7fc0; /* NaN */
	double sig = 0, noise = 0, maxe = 0;
	uint64_t got = alcm_quant_run_h16(ALCM_DTYPE_BF16, (const uint8_t *)v, 64, 0x1p-9, 0, 512,
	                                  0x1p-10, sym, NULL, &sig, &noise, &maxe);
	if (!alcm_cpu_avx2_f16c()) {
		assert_int_equal(got, 0);
		return;
	}
	assert_int_equal(got, 32);
	assert_true(sig > 0 && maxe <= 0x1p-10);
	alcm_quant_scalar_only = 1;
	assert_int_equal(alcm_quant_run_h16(ALCM_DTYPE_BF16, (const uint8_t *)v, 64, 0x1p-9, 0, 512,
	                                    0x1p-10, sym, NULL, &sig, &noise, &maxe),
	                 0);
	alcm_quant_scalar_only = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bf16_same_as_careful),
		cmocka_unit_test(test_f16_same_as_careful),
		cmocka_unit_test(test_bf16_same_as_memo),
		cmocka_unit_test(test_f16_same_as_memo),
		cmocka_unit_test(test_run_stops_at_care),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
