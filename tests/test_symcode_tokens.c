/*
 * The modelled symbol coder makes a chunk's tokens (spec 6.5.7) with AVX2 where the CPU has
 * it, sixteen symbols at a time, and with the portable loop for groups holding a symbol of
 * 2^24 or more and for the tail: both must give the same chunk bytes for every alphabet the
 * coder may choose (symbols spread over every exponent, so that tokens carry raw bits).
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define N 40000

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Symbols whose exponent is uniform in [0, top] (a tail the hybrid tokens code with raw
 * bits), and, one in `big` (0: never), one of 2^24 or more. */
static void symbols(uint32_t *sym, uint64_t n, unsigned top, unsigned big)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = rnd();
		unsigned e = (unsigned)(r % (top + 1));
		uint32_t z = (uint32_t)((r >> 8) & ((1ull << e) - 1)) | (uint32_t)(e ? 1u << (e - 1) : 0);
		/* Half of them just under a power of two, which a float rounds up to it. */
		if (big && (r >> 40) % big == 0)
			z = r & 1 ? (1u << (25 + (r >> 1) % 6)) - 1 - (uint32_t)((r >> 8) & 3)
			          : (1u << 24) + (uint32_t)((r >> 20) & 0x3fffffff);
		sym[i] = z;
	}
}

static void encode(const uint32_t *sym, uint64_t n, alcm_buf *out)
{
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	qp.dtype = ALCM_DTYPE_F32;
	qp.level = 3;
	qp.naxes = 1;
	qp.axis_run[0] = 1;
	qp.axis_count[0] = 100;
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	out->len = 0;
	assert_int_equal(alcm_symcode_encode(c, out, &qp, sym, n, NULL, 0, n, 32), ALCM_OK);
	alcm_coder_free(c);
}

/* The chunk's bytes with the AVX2 loops allowed and with the portable ones only. */
static void same_bytes(const uint32_t *sym, uint64_t n)
{
	alcm_buf a = {NULL, 0, 0, NULL, 0}, b = {NULL, 0, 0, NULL, 0};
	int keep = alcm_rans_scalar_only;
	alcm_rans_scalar_only = 0;
	encode(sym, n, &a);
	alcm_rans_scalar_only = 1;
	encode(sym, n, &b);
	alcm_rans_scalar_only = keep;
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.p, b.p, a.len);
	alcm_buf_free(&a);
	alcm_buf_free(&b);
}

static void test_every_spread(void **state)
{
	(void)state;
	uint32_t *sym = malloc(N * sizeof(uint32_t));
	assert_non_null(sym);
	/* Spreads from all-direct tokens (top 3) to exponents up to 2^23, which pick
	 * alphabets of every size and raw-bit widths up to 20 or so. */
	for (unsigned top = 1; top <= 24; top++) {
		symbols(sym, N, top, 0);
		same_bytes(sym, N);
		/* Lengths that leave a tail of every size after the groups of 16. */
		same_bytes(sym, N - 1 - top % 16);
	}
	free(sym);
}

static void test_symbols_past_2_24(void **state)
{
	(void)state;
	uint32_t *sym = malloc(N * sizeof(uint32_t));
	assert_non_null(sym);
	/* A few, many, and one in two groups of 16 holding one. */
	static const unsigned big[] = {5000, 40, 3};
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		symbols(sym, N, 12, big[i]);
		same_bytes(sym, N);
	}
	free(sym);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_spread),
		cmocka_unit_test(test_symbols_past_2_24),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
