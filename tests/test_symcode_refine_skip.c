/*
 * The modelled symbol coder's encoder leaves out the refinement of a one-axis class model
 * when a lower bound on its estimate shows that another model wins anyway (issue 15: faster
 * lossy pack of small gradients, the same bytes). Each chunk here is coded as the encoder
 * does and with every such refinement run (alcm_sym_refine_all), and the bytes must be the
 * same. The chunks are matrices of both layouts whose channels and rows differ in scale by
 * more or less, so that the one-axis models, the two-axis one and one table each win
 * somewhere, and some by little: a bound that is not one (5% too high) changes bytes here.
 * Likewise the two-axis model's residuals summed once for all columns of whole rows, and
 * element by element (alcm_sym_rows_alike 0): columns given the wrong sum change bytes here.
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
	uint64_t rows, cols; /* a rows x cols matrix, row-major */
	int tf;              /* channels on the last axis (run 1) rather than the first */
	double scale;        /* symbol magnitude */
	double chan, row;    /* spread of the channels' and the rows' scales (log2) */
} chunk;

static uint32_t *symbols(const chunk *k, uint64_t seed)
{
	uint64_t n = k->rows * k->cols, st = seed;
	uint32_t *sym = malloc(n * sizeof(uint32_t));
	assert_non_null(sym);
	for (uint64_t r = 0; r < k->rows; r++)
		for (uint64_t c = 0; c < k->cols; c++) {
			uint64_t ch = k->tf ? c : r, o = k->tf ? r : c;
			double sc = k->scale * exp2(k->chan * (double)(ch * 37 % 97) / 96.0) *
			            exp2(k->row * (double)(o * 13 % 31) / 30.0);
			sym[r * k->cols + c] = tu_zigzag(lround(tu_gauss(&st) * sc));
		}
	return sym;
}

static void encode(const chunk *k, const uint32_t *sym, int all, int alike, alcm_buf *out)
{
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	qp.dtype = ALCM_DTYPE_F32;
	qp.level = 3;
	qp.naxes = 2;
	qp.axis_run[0] = k->cols;
	qp.axis_count[0] = k->rows;
	qp.axis_run[1] = 1;
	qp.axis_count[1] = k->cols;
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	alcm_sym_refine_all = all;
	alcm_sym_rows_alike = alike;
	uint64_t n = k->rows * k->cols;
	int st = alcm_symcode_encode(c, out, &qp, sym, n, NULL, 0, n, 32);
	alcm_sym_refine_all = 0;
	alcm_sym_rows_alike = 1;
	assert_int_equal(st, ALCM_OK);
	alcm_coder_free(c);
}

static void test_same_bytes(void **state)
{
	(void)state;
	const uint64_t shapes[][2] = {{64, 1024}, {1024, 64}, {128, 512}, {300, 200}};
	const double chans[] = {0, 0.5, 1, 2, 4}, rows[] = {0, 0.5, 1, 3};
	const double scales[] = {1.5, 6};
	unsigned n = 0;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (int tf = 0; tf < 2; tf++)
			for (size_t a = 0; a < sizeof(chans) / sizeof(chans[0]); a++)
				for (size_t b = 0; b < sizeof(rows) / sizeof(rows[0]); b++) {
					chunk k = {shapes[s][0], shapes[s][1], tf, scales[n % 2],
					           chans[a], rows[b]};
					uint32_t *sym = symbols(&k, 1 + n);
					alcm_buf out[3] = {{NULL, 0, 0, NULL, 0}, {NULL, 0, 0, NULL, 0},
					                   {NULL, 0, 0, NULL, 0}};
					encode(&k, sym, 0, 1, &out[0]);
					encode(&k, sym, 1, 1, &out[1]);
					encode(&k, sym, 0, 0, &out[2]);
					for (int v = 1; v < 3; v++) {
						assert_int_equal(out[0].len, out[v].len);
						assert_memory_equal(out[0].p, out[v].p, out[0].len);
					}
					for (int v = 0; v < 3; v++)
						alcm_buf_free(&out[v]);
					free(sym);
					n++;
				}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
