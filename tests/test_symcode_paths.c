/*
 * The modelled symbol coder's encoder has paths chosen at run time (portable, AVX2, AVX-512);
 * an archive must not depend on the CPU that wrote it (issue 15: faster lossy pack, the same
 * bytes). Each chunk here is coded with the portable paths, the AVX2 ones and the AVX-512 ones
 * (where the CPU has them) and the bytes must be the same. The chunks are made to exercise
 * what those paths do: class models refined along one or two axes (up to 16 classes, channels
 * of equal cost that tie), a palette of large symbols, hybrid tokens with raw bits.
 * The bytes must also be those 1171e16 wrote (golden[]: a FNV-1a digest per chunk, in the
 * order the tests code them), so that a faster estimate that changes a choice shows here.
 * golden[] was made by this file built with -DGOLDEN_PRINT against 1171e16's libalcm.a, which
 * prints the digests instead. The pairs of a histogram (the encoder's per-channel counts) are
 * also checked alone on each path.
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct chunk {
	uint64_t rows, cols; /* a rows x cols matrix, row-major */
	int tf;              /* channels on the last axis (run 1) rather than the first */
	double scale;        /* symbol magnitude */
	int dup;             /* every channel is the same as channel 0 (costs tie) */
	int palette;         /* at most 200 distinct symbols, spread over 2^20 */
	int prune;           /* every fifth channel pruned whole: channels of no symbols, which
	                      * cost the same (nothing) in every class */
} chunk;

static uint32_t *symbols(const chunk *k, uint64_t seed)
{
	uint64_t n = k->rows * k->cols, st = seed;
	uint32_t *sym = malloc(n * sizeof(uint32_t));
	assert_non_null(sym);
	uint32_t pal[200];
	for (unsigned i = 0; i < 200; i++)
		pal[i] = (uint32_t)(tu_rand(&st) % (1u << 20));
	for (uint64_t r = 0; r < k->rows; r++)
		for (uint64_t c = 0; c < k->cols; c++) {
			uint64_t ch = k->tf ? c : r;
			/* Channel scales over a wide range: many classes pay. */
			double sc = k->dup ? k->scale : k->scale * exp2((double)(ch * 37 % 97) / 12.0);
			double row = 1 + (double)((k->tf ? r : c) % 5) * 0.25;
			long q = lround(tu_gauss(&st) * sc * row);
			sym[r * k->cols + c] = k->palette ? pal[(uint64_t)labs(q) % 200] : tu_zigzag(q);
		}
	if (k->dup)
		for (uint64_t r = 0; r < k->rows; r++)
			for (uint64_t c = 0; c < k->cols; c++)
				sym[r * k->cols + c] = k->tf ? sym[r * k->cols] : sym[c];
	return sym;
}

static int pruned(const chunk *k, uint64_t i)
{
	return k->prune && ((k->tf ? i % k->cols : i / k->cols) % 5) == 2;
}

/* The mask of pruned elements, and the symbols of the others moved to the front. */
static uint8_t *prune(const chunk *k, uint32_t *sym, uint64_t *nsym)
{
	uint64_t n = k->rows * k->cols, m = 0;
	uint8_t *bits = calloc(n / 8 + 1, 1);
	assert_non_null(bits);
	for (uint64_t i = 0; i < n; i++) {
		if (pruned(k, i))
			bits[i >> 3] |= (uint8_t)(1u << (i & 7));
		else
			sym[m++] = sym[i];
	}
	*nsym = m;
	return bits;
}

static void params(const chunk *k, alcm_qparams *qp)
{
	memset(qp, 0, sizeof(*qp));
	qp->dtype = ALCM_DTYPE_F32;
	qp->level = 3;
	qp->naxes = 2;
	qp->axis_run[0] = k->cols;
	qp->axis_count[0] = k->rows;
	qp->axis_run[1] = 1;
	qp->axis_count[1] = k->cols;
}

/* path 0: portable, 1: AVX2, 2: AVX-512 (each falls back to the one before where the CPU
 * lacks it). */
static void encode(const chunk *k, const uint32_t *sym, uint64_t nsym, const uint8_t *bits,
                   int path, alcm_buf *out)
{
	alcm_qparams qp;
	params(k, &qp);
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	alcm_rans_scalar_only = path == 0;
	alcm_quant_scalar_only = path == 0;
#ifndef GOLDEN_PRINT
	alcm_sym_avx512 = path == 2;
#endif
	uint64_t n = k->rows * k->cols;
	int st = alcm_symcode_encode(c, out, &qp, sym, nsym, bits, 0, n, 32);
	alcm_rans_scalar_only = 0;
	alcm_quant_scalar_only = 0;
#ifndef GOLDEN_PRINT
	alcm_sym_avx512 = 1;
#endif
	assert_int_equal(st, ALCM_OK);
	alcm_coder_free(c);
}

/* Built with -DGOLDEN_PRINT, the test prints the table instead of checking it. */
#ifndef GOLDEN_PRINT
static const uint64_t golden[] = {
#include "test_symcode_paths_golden.h"
};
#define GOLDEN_TABLE golden, sizeof(golden) / sizeof(golden[0])
#else
#define GOLDEN_TABLE NULL, 0
#endif
static size_t ngolden;

static void same_bytes(const chunk *k, uint64_t seed)
{
	uint32_t *sym = symbols(k, seed);
	uint64_t nsym = k->rows * k->cols;
	uint8_t *bits = k->prune ? prune(k, sym, &nsym) : NULL;
	alcm_buf out[3] = {{NULL, 0, 0, NULL, 0}, {NULL, 0, 0, NULL, 0}, {NULL, 0, 0, NULL, 0}};
	for (int p = 0; p < 3; p++)
		encode(k, sym, nsym, bits, p, &out[p]);
	tu_check_golden_paths(out, GOLDEN_TABLE, &ngolden);
	free(sym);
	free(bits);
}

/* Gradients and weights in both layouts, many channels (the refinement moves channels between
 * up to 16 classes) and few, several seeds. */
static void test_classes_same_bytes(void **state)
{
	(void)state;
	const chunk ks[] = {
		{64, 1024, 1, 2.0, 0, 0, 0},  /* a dense layer's gradient, TF layout */
		{1024, 64, 0, 2.0, 0, 0, 0},  /* the same in PyTorch layout */
		{256, 300, 1, 40.0, 0, 0, 0}, /* large symbols: hybrid tokens with raw bits */
		{96, 640, 0, 0.7, 0, 0, 0},   /* mostly small symbols */
		{32, 2048, 1, 5.0, 0, 0, 0},
		{200, 513, 0, 3.0, 0, 0, 0},  /* odd sizes: tails of every loop */
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		for (uint64_t seed = 1; seed <= 3; seed++)
			same_bytes(&ks[i], seed);
}

/* Channels that cost the same in every class (pruned whole, or all alike): the scan's ties
 * (within 1e-9) decide. */
static void test_ties_same_bytes(void **state)
{
	(void)state;
	const chunk ks[] = {
		{64, 1024, 1, 3.0, 0, 0, 1},
		{512, 128, 0, 3.0, 0, 0, 1},
		{64, 1024, 1, 3.0, 1, 0, 0},
		{512, 128, 0, 3.0, 1, 0, 0},
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		same_bytes(&ks[i], 7);
}

/* At most 200 distinct symbols spread up to 2^20: the palette search runs over the chunk. */
static void test_palette_same_bytes(void **state)
{
	(void)state;
	const chunk ks[] = {
		{64, 1024, 1, 30.0, 0, 1, 0},
		{300, 301, 0, 60.0, 0, 1, 0},
	};
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
		same_bytes(&ks[i], 11);
}

/* The (token, count) pairs of a histogram, after pairs already listed, on each path: the
 * nonzero counts in token order, the pairs before untouched, into an array of exactly the
 * pairs plus ALCM_SYM_PAIRS_SLACK (ASan reports a store past it). Every token count up to
 * the most, counts all zero, all nonzero, sparse, and nonzero only at either end. */
static void test_pairs_every_length(void **state)
{
	(void)state;
	uint64_t st = 41;
	uint32_t h[ALCM_RANS_MAX_TOKENS];
	for (unsigned ntok = 1; ntok <= ALCM_RANS_MAX_TOKENS; ntok++)
		for (int kind = 0; kind < 5; kind++) {
			uint64_t want = 0, before = tu_rand(&st) % 4;
			for (unsigned t = 0; t < ntok; t++) {
				int on = kind == 1 || (kind == 2 && tu_rand(&st) % 3 == 0) ||
				         (kind == 3 && t == 0) || (kind == 4 && t + 1 == ntok);
				h[t] = on ? 1 + (uint32_t)(tu_rand(&st) % 70000) : 0;
				want += on;
			}
			size_t room = (size_t)(before + want + ALCM_SYM_PAIRS_SLACK) * 2;
			for (int scalar = 0; scalar < 2; scalar++) {
				uint32_t *pt = malloc(room * sizeof(uint32_t));
				assert_non_null(pt);
				for (uint64_t q = 0; q < 2 * before; q++)
					pt[q] = 0xabc0000u + (uint32_t)q;
				alcm_rans_scalar_only = scalar;
				uint64_t nz = alcm_sym_put_pairs(pt, before, h, ntok);
				alcm_rans_scalar_only = 0;
				assert_int_equal(nz, before + want);
				for (uint64_t q = 0; q < 2 * before; q++)
					assert_int_equal(pt[q], 0xabc0000u + (uint32_t)q);
				uint64_t q = before;
				for (unsigned t = 0; t < ntok; t++)
					if (h[t]) {
						assert_int_equal(pt[2 * q], t);
						assert_int_equal(pt[2 * q + 1], h[t]);
						q++;
					}
				free(pt);
			}
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes_same_bytes),
		cmocka_unit_test(test_pairs_every_length),
		cmocka_unit_test(test_ties_same_bytes),
		cmocka_unit_test(test_palette_same_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
