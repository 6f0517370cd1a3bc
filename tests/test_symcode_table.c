/*
 * Blocks of mostly direct tokens take their values from a table; with AVX2 and a float32
 * tensor whose direct tokens number 16 or fewer (small symbols, as in converged gradients),
 * the table is read with byte shuffles, 32 tokens a step, and the few raw tokens are written
 * over afterwards. Both paths must give the same bytes, within the bound, for every
 * direct-token count from 2 to 16 and with a lattice offset.
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 40
#define COLS 1000

/* Symbols spread over about `spread` steps of 2E, with an outlier one time in 200 (raw
 * tokens, few a block), per-row scales so that channels differ; offset: a lattice shift. */
static void fill(float *x, double E, double spread, double offset)
{
	uint64_t st = 7 + (uint64_t)spread;
	for (unsigned r = 0; r < ROWS; r++)
		for (unsigned c = 0; c < COLS; c++) {
			double g = tu_gauss(&st) * spread * (1 + (r % 4)) / 4;
			if (tu_rand(&st) % 200 == 0)
				g *= 300;
			x[(size_t)r * COLS + c] = (float)(offset + 2 * E * g);
		}
}

static void test_table_paths_agree(void **state)
{
	(void)state;
	const double spreads[] = {0.3, 0.7, 1.5, 3, 6};
	const double offsets[] = {0, 0.37};
	const double E = 1e-3;
	size_t n = (size_t)ROWS * COLS * 4;
	float *x = malloc(n), *y0 = malloc(n), *y1 = malloc(n);
	assert_non_null(x);
	assert_non_null(y0);
	assert_non_null(y1);
	for (unsigned k = 0; k < 5; k++)
		for (unsigned f = 0; f < 2; f++) {
			fill(x, E, spreads[k], offsets[f]);
			alcm_tensor t = {"t", 1, ALCM_DTYPE_F32, 2, {ROWS, COLS}, x, n};
			tu_check_decode_paths(&t, E, y0, y1);
		}
	free(x);
	free(y0);
	free(y1);
}

/* Rows and columns both scaled (as gradients of a dense layer are): the coder gives the
 * chunk a level list on each axis, and the classes of a row are looked up from the column
 * levels (16 bytes at a time with AVX2 when they are all under 16). */
static void test_row_and_column_levels(void **state)
{
	(void)state;
	enum { R = 64, C = 1024 };
	size_t n = (size_t)R * C * 4;
	float *x = malloc(n), *y0 = malloc(n), *y1 = malloc(n);
	double rs[R], cs[C];
	assert_non_null(x);
	assert_non_null(y0);
	assert_non_null(y1);
	uint64_t st = 5;
	for (unsigned r = 0; r < R; r++)
		rs[r] = exp(1.5 * tu_gauss(&st));
	for (unsigned c = 0; c < C; c++)
		cs[c] = exp(1.5 * tu_gauss(&st));
	for (unsigned r = 0; r < R; r++)
		for (unsigned c = 0; c < C; c++)
			x[(size_t)r * C + c] = (float)(1e-3 * tu_gauss(&st) * rs[r] * cs[c]);
	const double bounds[] = {1e-5, 1e-4};
	for (unsigned b = 0; b < 2; b++) {
		alcm_tensor t = {"g", 1, ALCM_DTYPE_F32, 2, {R, C}, x, n};
		tu_check_decode_paths(&t, bounds[b], y0, y1);
	}
	free(x);
	free(y0);
	free(y1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_paths_agree),
		cmocka_unit_test(test_row_and_column_levels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
