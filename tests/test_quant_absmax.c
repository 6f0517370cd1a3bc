/*
 * alcm_quant_absmax_f32() gives the largest magnitude of float32 values (as its bit pattern,
 * sign cleared) for the encoder's bounds and steps; with AVX2, sixteen values at a time.
 * alcm_quant_absmax_h16() the same for float16 and bfloat16, thirty-two at a time. Both
 * paths must give what a plain reading of the values gives: on values of wide range with
 * specials among them (NaN, infinities, subnormals, -0: never the maximum), the largest at
 * every position, tails of every length, and all values special.
 */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t pick(void)
{
	uint64_t r = tu_rand(&rng);
	switch (r % 16) {
	case 0:
		return 0x7fc00000u | (uint32_t)(r >> 40 & 1) << 31; /* NaN */
	case 1:
		return 0x7f800000u | (uint32_t)(r >> 40 & 1) << 31; /* infinity */
	case 2:
		return (uint32_t)(r >> 20) & 0x807fffffu;           /* subnormal or +-0 */
	case 3:
		return 0x80000000u;                                  /* -0 */
	default: {
		float f = (float)ldexp((double)(r >> 40) / 16777216.0, (int)(r >> 8 & 63) - 40);
		uint32_t u;
		memcpy(&u, &f, 4);
		return u | (uint32_t)(r >> 30 & 1) << 31;
	}
	}
}

/* The maximum by reading each value as a float. */
static uint32_t reference(const uint8_t *p, uint64_t n)
{
	float m = 0;
	for (uint64_t i = 0; i < n; i++) {
		float f;
		memcpy(&f, p + 4 * i, 4);
		if (isnormal(f) && fabsf(f) > m)
			m = fabsf(f);
	}
	uint32_t u;
	memcpy(&u, &m, 4);
	return u;
}

static void check(const uint8_t *p, uint64_t n)
{
	int keep = alcm_quant_scalar_only;
	uint32_t r[2];
	for (int k = 0; k < 2; k++) {
		alcm_quant_scalar_only = k;
		r[k] = alcm_quant_absmax_f32(p, n);
	}
	alcm_quant_scalar_only = keep;
	assert_int_equal(r[0], reference(p, n));
	assert_int_equal(r[1], r[0]);
}

static void test_lengths_and_positions(void **state)
{
	(void)state;
	enum { N = 300 };
	uint8_t *p = malloc(4 * N + 4);
	assert_non_null(p);
	for (uint64_t n = 0; n <= 70; n++)
		for (int round = 0; round < 20; round++) {
			/* From an odd address too: the loads are unaligned. */
			uint8_t *q = p + (round & 1) * 4;
			for (uint64_t i = 0; i < n; i++) {
				uint32_t v = pick();
				memcpy(q + 4 * i, &v, 4);
			}
			check(q, n);
		}
	/* The largest value at each position of a longer run, under each sign. */
	for (uint64_t at = 0; at < N; at++) {
		for (uint64_t i = 0; i < N; i++) {
			uint32_t v = pick();
			v = (v & 0x7f800000u) == 0x7f800000u ? v : v & 0x807fffffu ? 0x3f800000u : v;
			memcpy(p + 4 * i, &v, 4);
		}
		uint32_t big = 0x40490fdbu | (uint32_t)(at & 1) << 31; /* +-pi */
		memcpy(p + 4 * at, &big, 4);
		check(p, N);
		assert_int_equal(alcm_quant_absmax_f32(p, N), 0x40490fdbu);
	}
	free(p);
}

static void test_all_special(void **state)
{
	(void)state;
	enum { N = 100 };
	uint32_t v[N];
	for (unsigned i = 0; i < N; i++)
		v[i] = i % 4 == 0 ? 0x7f800000u : i % 4 == 1 ? 0xffc00001u : i % 4 == 2 ? 0x00000001u
		                                                                        : 0x807fffffu;
	check((const uint8_t *)v, N);
	assert_int_equal(alcm_quant_absmax_f32((const uint8_t *)v, N), 0);
	/* The largest normal float, and the smallest, each among specials. */
	v[37] = 0xff7fffffu;
	check((const uint8_t *)v, N);
	assert_int_equal(alcm_quant_absmax_f32((const uint8_t *)v, N), 0x7f7fffffu);
	v[37] = 0x80800000u;
	check((const uint8_t *)v, N);
	assert_int_equal(alcm_quant_absmax_f32((const uint8_t *)v, N), 0x00800000u);
}

/* A float16 (bf 0) or bfloat16 (bf 1) pattern's magnitude, read as the format defines it;
 * -1 for the specials (NaN, infinities, subnormals) and 0 for +-0. */
static double half_value(int bf, uint16_t h)
{
	unsigned mb = bf ? 7 : 10, eb = bf ? 8 : 5, emax = (1u << eb) - 1;
	unsigned e = (h >> mb) & emax, m = h & ((1u << mb) - 1);
	if (e == emax || (e == 0 && m))
		return -1;
	if (e == 0)
		return 0;
	return ldexp((double)((1u << mb) + m), (int)e - (int)(emax >> 1) - (int)mb);
}

static uint16_t pick16(int bf)
{
	uint64_t r = tu_rand(&rng);
	uint16_t sign = (uint16_t)((r >> 40 & 1) << 15), inf = bf ? 0x7f80u : 0x7c00u;
	switch (r % 16) {
	case 0:
		return (uint16_t)(inf | 1u | sign); /* NaN */
	case 1:
		return (uint16_t)(inf | sign);      /* infinity */
	case 2:
		return (uint16_t)((r >> 20) & (bf ? 0x807fu : 0x83ffu)); /* subnormal or +-0 */
	case 3:
		return 0x8000u; /* -0 */
	default:            /* any normal: exponents 1 to the largest */
		return (uint16_t)(((r >> 8) % (inf - (bf ? 0x0080u : 0x0400u))) +
		                  (bf ? 0x0080u : 0x0400u)) | sign;
	}
}

static void check16(int bf, const uint8_t *p, uint64_t n)
{
	double best = 0;
	uint16_t ref = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		double v = half_value(bf, h);
		if (v > best) {
			best = v;
			ref = h & 0x7fffu;
		}
	}
	int keep = alcm_quant_scalar_only;
	uint16_t r[2];
	for (int k = 0; k < 2; k++) {
		alcm_quant_scalar_only = k;
		r[k] = alcm_quant_absmax_h16(bf, p, n);
	}
	alcm_quant_scalar_only = keep;
	assert_int_equal(r[0], ref);
	assert_int_equal(r[1], ref);
}

static void test_half_widths(void **state)
{
	(void)state;
	enum { N = 300 };
	uint8_t *p = malloc(2 * N + 2);
	assert_non_null(p);
	for (int bf = 0; bf < 2; bf++) {
		for (uint64_t n = 0; n <= 100; n++)
			for (int round = 0; round < 20; round++) {
				uint8_t *q = p + (round & 1) * 2; /* unaligned loads too */
				for (uint64_t i = 0; i < n; i++) {
					uint16_t v = pick16(bf);
					memcpy(q + 2 * i, &v, 2);
				}
				check16(bf, q, n);
				/* In a buffer of exactly n values: under ASan a read past the last
				 * value is an error. */
				uint8_t *x = malloc(n ? 2 * n : 1);
				assert_non_null(x);
				memcpy(x, q, 2 * n);
				check16(bf, x, n);
				free(x);
			}
		/* The largest normal at each position, under each sign, among specials and
		 * smaller values; then all special. */
		uint16_t top = bf ? 0x7f7fu : 0x7bffu;
		for (uint64_t at = 0; at < N; at++) {
			for (uint64_t i = 0; i < N; i++) {
				uint16_t v = pick16(bf);
				v = half_value(bf, v) < 0 ? v : (uint16_t)(v & 0x8000u) | (bf ? 0x3f80u : 0x3c00u);
				memcpy(p + 2 * i, &v, 2);
			}
			uint16_t big = (uint16_t)(top | (at & 1) << 15);
			memcpy(p + 2 * at, &big, 2);
			check16(bf, p, N);
			assert_int_equal(alcm_quant_absmax_h16(bf, p, N), top);
		}
		for (uint64_t i = 0; i < N; i++) {
			uint16_t v = (uint16_t)(i % 3 == 0 ? (bf ? 0xff80u : 0xfc00u) : i % 3 == 1 ? 0x0001u
			                                                                          : 0x8000u);
			memcpy(p + 2 * i, &v, 2);
		}
		check16(bf, p, N);
		assert_int_equal(alcm_quant_absmax_h16(bf, p, N), 0);
		/* The largest normal, and the smallest, each alone among specials (in the vector
		 * part, and in the tail). */
		for (uint64_t at = 37; at < N; at += N - 38) {
			uint16_t keep, v = (uint16_t)(0x8000u | top);
			memcpy(&keep, p + 2 * at, 2);
			memcpy(p + 2 * at, &v, 2);
			check16(bf, p, N);
			assert_int_equal(alcm_quant_absmax_h16(bf, p, N), top);
			v = bf ? 0x8080u : 0x8400u;
			memcpy(p + 2 * at, &v, 2);
			check16(bf, p, N);
			assert_int_equal(alcm_quant_absmax_h16(bf, p, N), v & 0x7fffu);
			memcpy(p + 2 * at, &keep, 2);
		}
	}
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths_and_positions),
		cmocka_unit_test(test_all_special),
		cmocka_unit_test(test_half_widths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
