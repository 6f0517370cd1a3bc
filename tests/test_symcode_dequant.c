/*
 * The modelled-chunk decoder turns tokens into values three ways: a table for blocks of
 * direct tokens, the table plus fixes for blocks with few raw-bit tokens, and all symbols
 * then one vectorised conversion (AVX2 where the CPU has it, a portable loop otherwise) for
 * blocks with many. Every dtype, with and without a lattice offset, decodes the same bytes
 * both ways and within its bound.
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 48
#define COLS 700

/* Values of one of three shapes: heavy tails everywhere (raw bits in most tokens), small
 * values with a rare outlier (a few raw tokens a block), or multiples of 0.25 plus 0.1 (a
 * lattice with an offset, spec 6.5.11). */
static double value(int kind, uint64_t *st, unsigned r, unsigned c)
{
	double g = tu_gauss(st);
	switch (kind) {
	case 0: return g * 1e-2 * exp(1.5 * tu_gauss(st)) * (1 + (c % 5));
	case 1: return (tu_rand(st) % 97 == 0 ? 40 : 1) * g * 1e-2 * (1 + (r % 3));
	default: return 0.1 + 0.25 * (double)((long)(g * 30));
	}
}

static void fill(void *x, int dtype, int kind)
{
	uint64_t st = 11 + (uint64_t)kind;
	for (unsigned r = 0; r < ROWS; r++)
		for (unsigned c = 0; c < COLS; c++) {
			double v = value(kind, &st, r, c);
			size_t i = (size_t)r * COLS + c;
			switch (dtype) {
			case ALCM_DTYPE_F64: ((double *)x)[i] = v; break;
			case ALCM_DTYPE_F32: ((float *)x)[i] = (float)v; break;
			case ALCM_DTYPE_F16: alcm_store16((uint8_t *)x + 2 * i, alcm_float_to_half((float)v)); break;
			default: alcm_store16((uint8_t *)x + 2 * i, alcm_float_to_bf16_i((float)v)); break;
			}
		}
}

static void test_dequant_paths_agree(void **state)
{
	(void)state;
	const int dtypes[] = {ALCM_DTYPE_F32, ALCM_DTYPE_F64, ALCM_DTYPE_F16, ALCM_DTYPE_BF16};
	const double bounds[] = {1e-4, 3e-3};
	for (unsigned d = 0; d < 4; d++)
		for (int kind = 0; kind < 3; kind++)
			for (unsigned b = 0; b < 2; b++) {
				size_t w = alcm_dtype_size(dtypes[d]), n = (size_t)ROWS * COLS * w;
				uint8_t *x = malloc(n), *y0 = malloc(n), *y1 = malloc(n);
				assert_non_null(x);
				assert_non_null(y0);
				assert_non_null(y1);
				fill(x, dtypes[d], kind);
				alcm_tensor t = {"t", 1, dtypes[d], 2, {ROWS, COLS}, x, n};
				tu_check_decode_paths(&t, bounds[b], y0, y1);
				free(x);
				free(y0);
				free(y1);
			}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dequant_paths_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
