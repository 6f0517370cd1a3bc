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

static void decode(const tu_packed *p, void *out, size_t n)
{
	alcm_reader *rd = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&rd, p->buf, p->len, "mem", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, rd, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_decode(a, 0, out, n), ALCM_OK);
	alcm_archive_free(a);
	alcm_reader_free(rd);
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
				alcm_pack_options o;
				alcm_pack_options_default(&o);
				o.mode = ALCM_MODE_MAX_ERROR;
				o.bound = bounds[b];
				o.threads = 1;
				o.max_minor = 1;
				tu_packed p;
				memset(&p, 0, sizeof(p));
				assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
				alcm_rans_scalar_only = 1;
				decode(&p, y0, n);
				alcm_rans_scalar_only = 0;
				decode(&p, y1, n);
				assert_memory_equal(y0, y1, n);
				alcm_error_stats es;
				assert_int_equal(alcm_tensor_measure(&t, y1, &es), ALCM_OK);
				assert_true(alcm_error_within(&es, ALCM_MODE_MAX_ERROR, bounds[b]));
				alcm_writer_free(p.w);
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
