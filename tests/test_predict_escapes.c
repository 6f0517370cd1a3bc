/* The predictor on tensors whose values are mostly escapes (spec 6.7.3): float16 gradients
 * nearly all subnormal, which the quantizer stores exactly whatever the step. Before the
 * escapes were costed apart, the default predicted 0.02 bit per value where 8.6 were coded
 * (torch CNN float16 gradients, held out: mean error 8.5 bits per value). */
#include "testutil.h"
#include "codec_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static alcm_tensor tensor_of(int dtype, const void *data, uint64_t n)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "t";
	t.name_len = 1;
	t.dtype = dtype;
	t.ndim = 1;
	t.shape[0] = n;
	t.data = data;
	t.nbytes = n * alcm_dtype_size(dtype);
	return t;
}

/* n float16 gradients: a share `normal` of them Gaussian with sd 1e-3, the others Gaussian
 * with sd `tiny` (1e-6: subnormal, under float16's 6.1e-5), in runs of 32 as a layer's
 * rows are. */
static uint16_t *f16_gradients(uint64_t n, uint64_t seed, double normal, double tiny)
{
	uint16_t *v = malloc(n * sizeof(uint16_t));
	assert_non_null(v);
	int big = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (i % 32 == 0)
			big = (double)(tu_rand(&seed) >> 11) * 0x1p-53 < normal;
		double x = (big ? 1e-3 : tiny) * tu_gauss(&seed);
		v[i] = alcm_float_to_half((float)x);
	}
	return v;
}

/* What --size relies on: the profile of a tensor of subnormal gradients (3% of it normal,
 * so that it can be quantized at all) predicts the encoder's size within 0.35 bit per value
 * at the steps the budget chooses from. The profile predicted 0.1 to 0.5 bit per value,
 * where 8 to 9 were coded, before the escapes were costed. */
static void test_profile_subnormal_gradients(void **state)
{
	(void)state;
	uint64_t n = 65536;
	uint16_t *v = f16_gradients(n, 0x5b0e, 0.03, 1e-6);
	alcm_tensor t = tensor_of(ALCM_DTYPE_F16, v, n);
	alcm_budget_profile prof;
	assert_int_equal(alcm_budget_profile_make(NULL, &t, (double)t.nbytes, &prof), ALCM_OK);
	assert_true(prof.lossy);
	static const int ks[] = {16, 20, 24, 28};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		double step = prof.step[ks[i]], got = tu_measured_bits(&t, step);
		print_message("step %.3g: predicted %.2f, measured %.2f bits per value\n", step,
		              prof.bits[ks[i]], got);
		assert_true(fabs(prof.bits[ks[i]] - got) < 0.35);
	}
	free(v);
}

/* Every value subnormal: the escapes are all the tensor costs, at any step. */
static void test_all_subnormal(void **state)
{
	(void)state;
	uint64_t n = 32768;
	static const double tiny[] = {2e-7, 1e-6, 8e-6};
	for (size_t j = 0; j < sizeof(tiny) / sizeof(tiny[0]); j++) {
		uint16_t *v = f16_gradients(n, 0xa11 + j, 0, tiny[j]);
		alcm_tensor t = tensor_of(ALCM_DTYPE_F16, v, n);
		alcm_pred_escapes esc;
		assert_int_equal(alcm_tensor_escapes(&t, &esc), ALCM_OK);
		assert_true(esc.share > 0.9 && esc.share <= 1);
		float f[ALCM_PRED_FEATURES];
		assert_int_equal(alcm_tensor_features(&t, 1e-3, f), ALCM_OK);
		double pred = alcm_predict_bits_escapes(alcm_predictor_default(), f, &esc);
		double got = tu_measured_bits(&t, 1e-3);
		print_message("sd %.3g: escapes %.3f at %.2f bits, predicted %.2f, measured %.2f bits "
		              "per value\n", tiny[j], esc.share, esc.bits, pred, got);
		assert_true(fabs(pred - got) < 0.35);
		free(v);
	}
}

/* A tensor without escapes predicts as before; bad escapes give the pessimistic 64. */
static void test_escapes_arguments(void **state)
{
	(void)state;
	uint64_t seed = 3;
	float x[4096];
	for (int i = 0; i < 4096; i++)
		x[i] = (float)tu_gauss(&seed);
	alcm_tensor t = tensor_of(ALCM_DTYPE_F32, x, 4096);
	alcm_pred_escapes esc = {0.5, 3};
	assert_int_equal(alcm_tensor_escapes(&t, &esc), ALCM_OK);
	assert_float_equal(esc.share, 0, 0);
	assert_float_equal(esc.bits, 0, 0);
	assert_int_equal(alcm_tensor_escapes(NULL, &esc), ALCM_E_ARG);
	assert_int_equal(alcm_tensor_escapes(&t, NULL), ALCM_E_ARG);
	float f[ALCM_PRED_FEATURES];
	assert_int_equal(alcm_tensor_features(&t, 0.1, f), ALCM_OK);
	const alcm_predictor *p = alcm_predictor_default();
	double plain = alcm_predict_bits(p, f);
	assert_float_equal(alcm_predict_bits_escapes(p, f, NULL), plain, 0);
	assert_float_equal(alcm_predict_bits_escapes(p, f, &esc), plain, 0);
	alcm_pred_escapes bad[] = {{-0.1, 1}, {1.5, 1}, {NAN, 1}, {0.5, NAN}, {0.5, INFINITY},
	                           {0.5, -1}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_float_equal(alcm_predict_bits_escapes(p, f, &bad[i]), 64, 0);
	/* All escapes: the fixed bytes plus their bits, whatever the network says. */
	alcm_pred_escapes all = {1, 9};
	assert_float_equal(alcm_predict_bits_escapes(p, f, &all),
	                   9 + 8 * 104.0 / exp2(f[0]), 1e-6);
	uint16_t h[64];
	memset(h, 0, sizeof(h)); /* +0 is not an escape */
	alcm_tensor z = tensor_of(ALCM_DTYPE_F16, h, 64);
	assert_int_equal(alcm_tensor_escapes(&z, &esc), ALCM_OK);
	assert_float_equal(esc.share, 0, 0);
	for (int i = 0; i < 64; i++)
		h[i] = 0x8000; /* -0 is */
	assert_int_equal(alcm_tensor_escapes(&z, &esc), ALCM_OK);
	assert_float_equal(esc.share, 1, 0);
	/* The vectors of spec 6.7.5. */
	for (int i = 0; i < 64; i++)
		h[i] = 0x0001;
	assert_int_equal(alcm_tensor_escapes(&z, &esc), ALCM_OK);
	assert_float_equal(esc.share, 1, 0);
	assert_float_equal(esc.bits, 2.01127106, 1e-8);
	assert_float_equal(alcm_predict_bits_escapes(p, f, &esc), 2.01127106 + 8 * 104.0 / exp2(f[0]),
	                   1e-6);
	for (int i = 48; i < 64; i++)
		h[i] = 0x3c00;
	assert_int_equal(alcm_tensor_escapes(&z, &esc), ALCM_OK);
	assert_float_equal(esc.share, 0.75, 0);
	assert_float_equal(esc.bits, 2.55670102, 1e-8);
	int32_t ints[4] = {1, 2, 3, 4};
	alcm_tensor it = tensor_of(ALCM_DTYPE_I32, ints, 4);
	assert_int_equal(alcm_tensor_escapes(&it, &esc), ALCM_E_ARG);
}

/* Training with escapes: NULL escapes train as alcm_predictor_train() does, bit for bit;
 * with escapes the network fits the values that are not, so the whole prediction meets
 * the measured size on samples that mix the two. */
static void test_train_with_escapes(void **state)
{
	(void)state;
	size_t n = 256;
	float(*x)[ALCM_PRED_FEATURES] = malloc(n * sizeof(*x));
	float *y = malloc(n * sizeof(float));
	alcm_pred_escapes *e = malloc(n * sizeof(*e));
	assert_non_null(x);
	assert_non_null(y);
	assert_non_null(e);
	uint64_t seed = 11;
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < ALCM_PRED_FEATURES; k++)
			x[i][k] = (float)tu_gauss(&seed);
		x[i][0] = 16;
		x[i][3] = 1; /* every other value is symbol 0: no placeholder cost */
		double rate = 4 + x[i][1], share = (double)(i % 8) / 8;
		e[i].share = share;
		e[i].bits = 10;
		y[i] = (float)((1 - share) * rate + share * 10 + 8 * 104.0 / 65536);
	}
	alcm_predictor a, b;
	double ma, mb;
	assert_int_equal(alcm_predictor_train(&a, (const float(*)[ALCM_PRED_FEATURES])x, y, n, 5,
	                                      30, &ma), ALCM_OK);
	assert_int_equal(alcm_predictor_train_escapes(&b, (const float(*)[ALCM_PRED_FEATURES])x, y,
	                                              NULL, n, 5, 30, &mb), ALCM_OK);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(alcm_predictor_train_escapes(&b, (const float(*)[ALCM_PRED_FEATURES])x, y,
	                                              e, n, 5, 200, &mb), ALCM_OK);
	print_message("mse without escapes %.4f, with %.4f\n", ma, mb);
	assert_true(mb < 0.05);
	assert_true(mb < ma);
	e[3].share = 1.5;
	assert_int_equal(alcm_predictor_train_escapes(&b, (const float(*)[ALCM_PRED_FEATURES])x, y,
	                                              e, n, 5, 1, NULL), ALCM_E_ARG);
	e[3].share = 0.5;
	e[3].bits = NAN;
	assert_int_equal(alcm_predictor_train_escapes(&b, (const float(*)[ALCM_PRED_FEATURES])x, y,
	                                              e, n, 5, 1, NULL), ALCM_E_ARG);
	free(x);
	free(y);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profile_subnormal_gradients),
		cmocka_unit_test(test_all_subnormal),
		cmocka_unit_test(test_escapes_arguments),
		cmocka_unit_test(test_train_with_escapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
