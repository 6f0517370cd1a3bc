/*
 * The modelled symbol coder keeps its work arrays with the coder (issue 18: nothing of chunk
 * size allocated per chunk): chunks no larger than ones it coded before allocate nothing, and
 * what the arrays held before never shows in the bytes (a chunk codes the same with a used
 * coder as with a new one).
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 96
#define COLS 640

/* Zigzag symbols of a ROWS x COLS matrix whose columns and rows have their own scales (so that
 * the coder builds and refines class models along both axes), from seed. */
static void symbols(uint32_t *sym, uint64_t seed)
{
	uint64_t st = seed;
	for (unsigned r = 0; r < ROWS; r++)
		for (unsigned c = 0; c < COLS; c++) {
			double sc = (1 + (c % 7)) * (1 + (r % 3)) * 0.8;
			long q = lround(tu_gauss(&st) * sc);
			sym[r * COLS + c] = q < 0 ? (uint32_t)(-2 * q - 1) : (uint32_t)(2 * q);
		}
}

static void params(alcm_qparams *qp)
{
	memset(qp, 0, sizeof(*qp));
	qp->dtype = ALCM_DTYPE_F32;
	qp->level = 3;
	qp->naxes = 2;
	qp->axis_run[0] = COLS;
	qp->axis_count[0] = ROWS;
	qp->axis_run[1] = 1;
	qp->axis_count[1] = COLS;
}

static void encode(alcm_coder *c, alcm_buf *out, const uint32_t *sym)
{
	alcm_qparams qp;
	params(&qp);
	out->len = 0;
	assert_int_equal(alcm_symcode_encode(c, out, &qp, sym, ROWS * COLS, NULL, 0, ROWS * COLS, 32),
	                 ALCM_OK);
}

static void test_second_chunk_allocates_nothing(void **state)
{
	(void)state;
	uint32_t *a = malloc(ROWS * COLS * sizeof(uint32_t)), *b = malloc(ROWS * COLS * sizeof(uint32_t));
	assert_non_null(a);
	assert_non_null(b);
	symbols(a, 1);
	symbols(b, 2);
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	alcm_coder *c = alcm_coder_new(&ta.a, NULL);
	assert_non_null(c);
	/* The output through the same allocator: the coder may take its arrays from either. */
	alcm_buf out = {NULL, 0, 0, &ta.a, 0}, fresh = {NULL, 0, 0, NULL, 0};
	/* Once each (the arrays grow to the larger need of the two), then again: no allocation. */
	encode(c, &out, a);
	encode(c, &out, b);
	long calls = ta.calls;
	encode(c, &out, a);
	encode(c, &out, b);
	assert_int_equal(ta.calls - calls, 0);
	/* The same chunk with a coder that never coded anything. */
	alcm_coder *c2 = alcm_coder_new(NULL, NULL);
	assert_non_null(c2);
	encode(c2, &fresh, b);
	assert_int_equal(out.len, fresh.len);
	assert_memory_equal(out.p, fresh.p, out.len);
	alcm_coder_free(c2);
	alcm_coder_free(c);
	alcm_buf_free(&out);
	alcm_buf_free(&fresh);
	assert_int_equal(ta.live, 0);
	free(a);
	free(b);
}

/* Every allocation of a first chunk failing in turn: a clear ALCM_E_NOMEM, then the same
 * coder codes the chunk as a new one would (nothing half-grown is trusted). */
static void test_failed_allocation_then_reuse(void **state)
{
	(void)state;
	uint32_t *a = malloc(ROWS * COLS * sizeof(uint32_t));
	assert_non_null(a);
	symbols(a, 3);
	alcm_buf ref = {NULL, 0, 0, NULL, 0};
	alcm_coder *c0 = alcm_coder_new(NULL, NULL);
	assert_non_null(c0);
	encode(c0, &ref, a);
	alcm_coder_free(c0);
	alcm_qparams qp;
	params(&qp);
	for (long k = 1;; k++) {
		tu_alloc ta;
		tu_alloc_init(&ta, 0);
		alcm_coder *c = alcm_coder_new(&ta.a, NULL);
		assert_non_null(c);
		ta.fail_at = ta.calls + k;
		alcm_buf out = {NULL, 0, 0, NULL, 0};
		int st = alcm_symcode_encode(c, &out, &qp, a, ROWS * COLS, NULL, 0, ROWS * COLS, 32);
		ta.fail_at = 0;
		if (st == ALCM_OK) {
			alcm_buf_free(&out);
			alcm_coder_free(c);
			break;
		}
		assert_int_equal(st, ALCM_E_NOMEM);
		encode(c, &out, a);
		assert_int_equal(out.len, ref.len);
		assert_memory_equal(out.p, ref.p, out.len);
		alcm_buf_free(&out);
		alcm_coder_free(c);
		assert_int_equal(ta.live, 0);
	}
	alcm_buf_free(&ref);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_chunk_allocates_nothing),
		cmocka_unit_test(test_failed_allocation_then_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
