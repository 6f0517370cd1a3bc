/*
 * alcm_quant_run_f32(), the quantizer's common case on float32, has three loops: the portable
 * one, AVX2 (eight values at a time) and AVX-512 (a group of eight as one vector of doubles).
 * All three must stop at the same value (the first special one, out of the symbol range, or
 * not within the bound of its nearest reconstruction) and give the same symbols,
 * reconstructions and largest error; AVX2 and AVX-512 sum the signal and the squared error in
 * the same lanes in the same order, so their sums are the same to the bit (the portable loop
 * adds in another order: within a relative 1e-12). On values at a step with specials and
 * values at cell edges spread among them, at every length of a run and every start, with
 * offsets (a lattice's) and without, finite bounds and none (INFINITY: no per-channel
 * bound), with and without reconstructions. The file is built with -ffp-contract=off as the
 * library is, and lib/quant_fast.c forbids fused multiply-adds itself.
 */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* A value about `scale` in size; one in `rare` is special or at a cell's edge. */
static uint32_t pick(double scale, double step, unsigned rare)
{
	uint64_t r = tu_rand(&rng);
	float f;
	if (rare && r % rare == 0) {
		switch (r >> 32 & 7) {
		case 0:
			return 0x7fc00000u; /* NaN */
		case 1:
			return 0xff800000u; /* -infinity */
		case 2:
			return 0x00000123u; /* subnormal */
		case 3:
			return 0x80000000u; /* -0 */
		case 4:
			f = (float)(step * 0x1p31); /* past the symbol range */
			break;
		default:
			f = (float)(step * ((double)(r >> 40 & 255) + 0.5)); /* a cell's edge */
			break;
		}
	} else {
		f = (float)(tu_gauss(&rng) * scale);
	}
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

typedef struct run {
	uint64_t done;
	uint32_t *sym;
	uint8_t *recon;
	double sig, noise, maxe;
} run;

/* path 0: portable, 1: AVX2, 2: AVX-512 (each falls back to the one before it where the CPU
 * lacks it: then the comparison holds trivially); offset o, reconstructions if `rec`. */
static void quantize(int path, const uint8_t *src, uint64_t n, double s, double o, double b,
                     int rec, run *r)
{
	int keep_s = alcm_quant_scalar_only, keep_w = alcm_quant_avx512;
	alcm_quant_scalar_only = path == 0;
	alcm_quant_avx512 = path == 2;
	r->sym = calloc(n + 1, sizeof(uint32_t));
	r->recon = calloc(n + 1, 4);
	assert_non_null(r->sym);
	assert_non_null(r->recon);
	r->sig = 1.5, r->noise = 0.25, r->maxe = 0; /* totals from earlier runs */
	r->done = alcm_quant_run_f32(src, n, s, o, 1 / s, b, r->sym, rec ? r->recon : NULL, &r->sig,
	                             &r->noise, &r->maxe);
	alcm_quant_scalar_only = keep_s;
	alcm_quant_avx512 = keep_w;
}

static void compare_one(const uint8_t *src, uint64_t n, double s, double o, double b, int rec)
{
	run r[3];
	for (int p = 0; p < 3; p++)
		quantize(p, src, n, s, o, b, rec, &r[p]);
	for (int p = 1; p < 3; p++) {
		assert_int_equal(r[p].done, r[0].done);
		assert_memory_equal(r[p].sym, r[0].sym, (size_t)r[0].done * 4);
		assert_memory_equal(r[p].recon, r[0].recon, (size_t)r[0].done * 4);
		assert_true(r[p].maxe == r[0].maxe);
		assert_true(fabs(r[p].sig - r[0].sig) <= 1e-12 * r[0].sig);
		assert_true(fabs(r[p].noise - r[0].noise) <= 1e-12 * r[0].noise);
	}
	assert_memory_equal(&r[2].sig, &r[1].sig, sizeof(double));
	assert_memory_equal(&r[2].noise, &r[1].noise, sizeof(double));
	for (int p = 0; p < 3; p++) {
		free(r[p].sym);
		free(r[p].recon);
	}
}

/* Offset 0 and a lattice's offset (a third of a step), bound b and none, with and without
 * reconstructions. */
static void compare(const uint8_t *src, uint64_t n, double s, double b)
{
	for (int k = 0; k < 2; k++) {
		compare_one(src, n, s, k ? s / 3 : 0, b, 1);
		compare_one(src, n, s, k ? -0.37 * s : 0, INFINITY, k);
	}
}

/* Every length up to 80 and every start, with no value that stops a run, then with one. */
static void test_lengths_and_stops(void **state)
{
	(void)state;
	enum { N = 80 };
	uint32_t v[N];
	const double s = 1.0 / 64, b = s / 2;
	for (int rare = 0; rare < 2; rare++)
		for (uint64_t n = 0; n <= N; n++) {
			for (uint64_t i = 0; i < N; i++)
				v[i] = pick(0.3, s, 0);
			if (rare && n)
				v[tu_rand(&rng) % n] = pick(0.3, s, 1);
			for (uint64_t start = 0; start < 9 && start <= n; start++)
				compare((const uint8_t *)(v + start), n - start, s, b);
		}
}

/* Long runs as the encoder gives them (a chunk), stops now and then; bounds under half a
 * step so that values near a cell's edge stop a run too. */
static void test_long_runs(void **state)
{
	(void)state;
	enum { N = 1 << 16 };
	uint32_t *v = malloc(N * sizeof(uint32_t)), *sym = malloc(N * sizeof(uint32_t));
	assert_non_null(v);
	assert_non_null(sym);
	const double steps[] = {1e-4, 1.0 / 3, 2.5};
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		double s = steps[k];
		for (uint64_t i = 0; i < N; i++)
			v[i] = pick(40 * s, s, 5000);
		for (double b = s / 2; b > s / 2 * 0.999; b -= s * 1e-4) {
			uint64_t at = 0;
			/* Each run from where the last stopped, one past the value that stopped it. */
			for (int j = 0; j < 50 && at < N; j++) {
				compare((const uint8_t *)(v + at), N - at, s, b);
				double sg = 0, ns = 0, mx = 0;
				uint64_t done = alcm_quant_run_f32((const uint8_t *)(v + at), N - at, s, 0,
				                                   1 / s, b, sym, NULL, &sg, &ns, &mx);
				at += done + 1;
			}
		}
	}
	free(sym);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths_and_stops),
		cmocka_unit_test(test_long_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
