/*
 * alcm_quant_absmax_f32() gives the largest magnitude of float32 values (as its bit pattern,
 * sign cleared) for the encoder's bounds and steps; with AVX2, sixteen values at a time. Both
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths_and_positions),
		cmocka_unit_test(test_all_special),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
