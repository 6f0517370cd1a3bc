/*
 * More chunks for the modelled symbol coder's byte identity (issue 15: faster lossy pack, the
 * same bytes), beside test_symcode_paths.c: shapes that its chunks leave out and that the
 * encoder's faster counting of 712bc96's successors (enc9) rewrote:
 * - a palette of symbols both under 256 (counted from the fine histogram) and far above
 *   (hashed);
 * - a run-1 axis of many more counters than tokens (entry_pairs() copies 64 entries' tokens
 *   out row by row), in chunks that start inside the tensor (first > 0);
 * - three axes (a convolution's weights), where the best of the further axes is refined from
 *   pairs counted again, and the two-axis model's residuals come from a run above 1.
 * Each chunk is coded with the portable, AVX2 and AVX-512 paths (the same bytes), and the
 * bytes must be those 712bc96 wrote (golden[]: an FNV-1a digest per chunk, in order), made by
 * this file built with -DGOLDEN_PRINT against 712bc96's libalcm.a.
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
	uint64_t d[3];   /* shape (d[2] 0: a matrix d[0] x d[1]), row-major */
	int tf;          /* channels on the last axis */
	double scale;    /* symbol magnitude */
	int palette;     /* at most 200 distinct symbols, half under 256, half up to 2^20 */
	uint64_t first;  /* the chunk's first element in the tensor */
	int both;        /* scales varying along both axes (the two-axis model wins) */
} chunk;

static uint64_t elems(const chunk *k)
{
	return k->d[0] * k->d[1] * (k->d[2] ? k->d[2] : 1);
}

static uint32_t *symbols(const chunk *k, uint64_t seed)
{
	uint64_t n = elems(k), st = seed, inner = n / k->d[0];
	uint64_t last = k->d[2] ? k->d[2] : k->d[1];
	uint32_t *sym = malloc(n * sizeof(uint32_t));
	assert_non_null(sym);
	uint32_t pal[200];
	for (unsigned i = 0; i < 200; i++)
		pal[i] = i % 2 ? (uint32_t)(tu_rand(&st) % (1u << 20)) : (uint32_t)(tu_rand(&st) % 256);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t g = k->first + i;
		uint64_t ch = k->tf ? g % last : (g / inner) % k->d[0];
		double sc = k->scale * exp2((double)(ch * 37 % 97) / 12.0);
		uint64_t other = k->tf ? g / last : g % inner;
		double row = k->both ? exp2((double)(other * 53 % 89) / 16.0) : 1 + (double)(other % 5) * 0.25;
		long q = lround(tu_gauss(&st) * sc * row);
		sym[i] = k->palette ? pal[(uint64_t)labs(q) % 200] : tu_zigzag(q);
	}
	return sym;
}

/* The axes the encoder gives (lib/encoder.c): axis 0, the last, then for three dimensions
 * the middle one, the leading two as one, and the trailing two as one. */
static void params(const chunk *k, alcm_qparams *qp)
{
	memset(qp, 0, sizeof(*qp));
	qp->dtype = ALCM_DTYPE_F32;
	qp->level = 3;
	uint64_t n = elems(k);
	qp->axis_run[0] = n / k->d[0];
	qp->axis_count[0] = k->d[0];
	qp->axis_run[1] = 1;
	qp->axis_count[1] = k->d[2] ? k->d[2] : k->d[1];
	qp->naxes = 2;
	if (k->d[2]) {
		qp->axis_run[2] = k->d[2];
		qp->axis_count[2] = k->d[1];
		qp->axis_run[3] = k->d[2];
		qp->axis_count[3] = k->d[0] * k->d[1];
		qp->axis_run[4] = 1;
		qp->axis_count[4] = k->d[1] * k->d[2];
		qp->naxes = 5;
	}
}

/* path 0: portable, 1: AVX2, 2: AVX-512 (each falls back to the one before where the CPU
 * lacks it). */
static void encode(const chunk *k, const uint32_t *sym, int path, alcm_buf *out)
{
	alcm_qparams qp;
	params(k, &qp);
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	alcm_rans_scalar_only = path == 0;
	alcm_quant_scalar_only = path == 0;
	alcm_sym_avx512 = path == 2;
	uint64_t n = elems(k);
	int st = alcm_symcode_encode(c, out, &qp, sym, n, NULL, k->first, n, 32);
	alcm_rans_scalar_only = 0;
	alcm_quant_scalar_only = 0;
	alcm_sym_avx512 = 1;
	assert_int_equal(st, ALCM_OK);
	alcm_coder_free(c);
}

/* Built with -DGOLDEN_PRINT, the test prints the table instead of checking it. */
#ifndef GOLDEN_PRINT
static const uint64_t golden[] = {
#include "test_symcode_golden712.h"
};
#define GOLDEN_TABLE golden, sizeof(golden) / sizeof(golden[0])
#else
#define GOLDEN_TABLE NULL, 0
#endif
static size_t ngolden;

static void same_bytes(const chunk *k, uint64_t seed)
{
	uint32_t *sym = symbols(k, seed);
	alcm_buf out[3] = {{NULL, 0, 0, NULL, 0}, {NULL, 0, 0, NULL, 0}, {NULL, 0, 0, NULL, 0}};
	for (int p = 0; p < 3; p++)
		encode(k, sym, p, &out[p]);
	tu_check_golden_paths(out, GOLDEN_TABLE, &ngolden);
	free(sym);
}

static void test_palette_small_and_large(void **state)
{
	(void)state;
	const chunk ks[] = {
		{{64, 1024, 0}, 1, 30.0, 1, 0, 0},
		{{300, 301, 0}, 0, 60.0, 1, 0, 0},
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		for (uint64_t seed = 1; seed <= 2; seed++)
			same_bytes(&ks[i], seed);
}

/* Many channels on a run-1 axis (more counters than twice the tokens), chunks starting
 * inside the tensor. */
static void test_many_channels_offset(void **state)
{
	(void)state;
	const chunk ks[] = {
		{{32, 4096, 0}, 1, 40.0, 0, 0, 0},
		{{32, 4096, 0}, 1, 40.0, 0, 4096 * 3 + 100, 0},
		{{100, 3000, 0}, 1, 200.0, 0, 777, 0},
		{{2000, 40, 0}, 0, 20.0, 0, 333, 0},
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		for (uint64_t seed = 1; seed <= 2; seed++)
			same_bytes(&ks[i], seed);
}

/* Scales along both axes: the two-axis model, its residuals summed along a run-1 axis or
 * a longer run. */
static void test_two_axes(void **state)
{
	(void)state;
	const chunk ks[] = {
		{{64, 1024, 0}, 1, 2.0, 0, 0, 1},
		{{1024, 64, 0}, 0, 2.0, 0, 0, 1},
		{{200, 513, 0}, 0, 3.0, 0, 1000, 1},
		{{64, 32, 9}, 0, 3.0, 0, 0, 1},
		{{32, 96, 25}, 1, 3.0, 0, 77, 1},
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		for (uint64_t seed = 1; seed <= 2; seed++)
			same_bytes(&ks[i], seed);
}

/* Three dimensions: further axes, one refined from pairs counted again. */
static void test_three_axes(void **state)
{
	(void)state;
	const chunk ks[] = {
		{{64, 32, 9}, 0, 3.0, 0, 0, 0},
		{{128, 64, 9}, 0, 1.0, 0, 0, 0},
		{{9, 64, 128}, 1, 2.0, 0, 0, 0},
		{{32, 96, 25}, 0, 8.0, 0, 500, 0},
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		for (uint64_t seed = 1; seed <= 2; seed++)
			same_bytes(&ks[i], seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_palette_small_and_large),
		cmocka_unit_test(test_many_channels_offset),
		cmocka_unit_test(test_three_axes),
		cmocka_unit_test(test_two_axes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
