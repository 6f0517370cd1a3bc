/* A lossy delta chunk (DLTA kind 1, spec 6.12.5) whose escape block declares more bytes than
 * a block can hold (6.5.4: esc_len <= 10 + n + nsym * w) is refused before anything is
 * allocated or inflated for it (5.6): a few bytes of zstd must not make the reader allocate
 * and fill about 12 times the chunk's decoded size. */
#include "testutil.h"
#include "series_internal.h"

#include <stdlib.h>
#include <string.h>

/* An allocator that refuses any single allocation above `cap` bytes. */
static size_t cap;
static void *cap_malloc(void *o, size_t n)
{
	(void)o;
	return n > cap ? NULL : malloc(n ? n : 1);
}
static void *cap_realloc(void *o, void *p, size_t n)
{
	(void)o;
	return n > cap ? NULL : realloc(p, n ? n : 1);
}
static void cap_free(void *o, void *p)
{
	(void)o;
	free(p);
}

/* Kind 1, width 1, n zero symbols, then an escape block of `blen` zero bytes
 * coded with zstd (a few bytes in the chunk whatever blen). */
static void chunk(alcm_coder *c, alcm_buf *b, uint64_t n, uint64_t blen)
{
	uint8_t *z = calloc((size_t)(blen > n ? blen : n), 1);
	assert_non_null(z);
	uint8_t h[2] = {ALCM_DELTA_ADD, 1};
	assert_int_equal(alcm_buf_put(b, h, 2), ALCM_OK);
	assert_int_equal(alcm_buf_put_varint(b, n), ALCM_OK);
	assert_int_equal(alcm_stream_put(c, b, z, (size_t)n, 3), ALCM_OK);
	assert_int_equal(alcm_buf_put_varint(b, blen), ALCM_OK);
	assert_int_equal(alcm_stream_put(c, b, z, (size_t)blen, 3), ALCM_OK);
	free(z);
}

static void test_escape_block_bound(void **state)
{
	(void)state;
	const uint64_t n = 1 << 16; /* float16: 128 KiB decoded */
	const size_t w = 2;
	alcm_coder *enc = alcm_coder_new(NULL, NULL);
	alcm_allocator a = {cap_malloc, cap_realloc, cap_free, NULL};
	cap = SIZE_MAX;
	alcm_coder *c = alcm_coder_new(&a, NULL);
	assert_non_null(enc);
	assert_non_null(c);
	double step = 0.5;
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	qp.dtype = ALCM_DTYPE_F16;
	qp.step = &step;
	qp.nsteps = 1;
	qp.inner = n;
	uint8_t *dst = calloc(n, w), *scratch = malloc(4 * n);
	assert_non_null(dst);
	assert_non_null(scratch);
	/* Every allocation the decoder needs is within the bound a block can reach. */
	cap = 10 + n + n * w;
	const uint64_t lens[] = {10 + n + n * w + 1, 10 + n * (10 + w)};
	for (size_t k = 0; k < 2; k++) {
		alcm_buf b = {NULL, 0, 0, NULL, 0};
		chunk(enc, &b, n, lens[k]);
		assert_true(b.len < 4096);
		alcm_cursor cur = {b.p, b.len, 0};
		assert_int_equal(alcm_delta_quant_decode(c, &cur, &qp, dst, 0, n, scratch, 4 * n),
		                 ALCM_E_CORRUPT);
		alcm_buf_free(&b);
	}
	/* The largest legal length still reaches the block (here: refused as it holds no
	 * escapes but declares bytes, not for memory). */
	alcm_buf b = {NULL, 0, 0, NULL, 0};
	chunk(enc, &b, n, 10 + n + n * w);
	alcm_cursor cur = {b.p, b.len, 0};
	assert_int_equal(alcm_delta_quant_decode(c, &cur, &qp, dst, 0, n, scratch, 4 * n),
	                 ALCM_E_CORRUPT);
	alcm_buf_free(&b);
	free(dst);
	free(scratch);
	alcm_coder_free(c);
	alcm_coder_free(enc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_block_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
