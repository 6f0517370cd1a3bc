/*
 * alcm_quant_lattice() first finds the distinct values of a float32 tensor and their counts
 * (alcm_quant_lattice_scan()); with AVX2, eight values at a time where all eight are already
 * at their home slot. Both paths must give the same table, counts and verdict: on values of
 * a lattice (a few hundred distinct, some off their home slot), with specials among them
 * (NaN, infinities, subnormals, -0, never counted), tails of every length, and past 256
 * distinct values.
 */
#include "codec_internal.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void put(uint8_t *p, uint64_t i, uint32_t v)
{
	memcpy(p + 4 * i, &v, 4);
}

static uint32_t bits_of(float f)
{
	uint32_t v;
	memcpy(&v, &f, 4);
	return v;
}

/* n values o + j d, j in [-k/2, k/2) from a peaked law; one in `sp` (0: none) a special. */
static void lattice(uint8_t *p, uint64_t n, unsigned k, unsigned sp)
{
	static const uint32_t specials[] = {0x7fc00000u, 0xffffffffu, 0x7f800000u, 0xff800000u,
	                                    0x00000001u, 0x807fffffu, 0x80000000u, 0x00400000u};
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = rnd();
		int j = (int)((r % k) * ((r >> 20) % k) / k) - (int)(k / 2);
		uint32_t v = bits_of(0.0013f + (float)j * 0.0039f);
		if (j == 0 && (r >> 40) % 3 == 0)
			v = 0; /* +0 is a value */
		if (sp && (r >> 32) % sp == 0)
			v = specials[(r >> 50) % 8];
		put(p, i, v);
	}
}

/* Both paths on src[0..n): the same verdict, and when the table is complete the same keys,
 * counts and number of values. @return the verdict. */
static int same_scan(const uint8_t *src, uint64_t n)
{
	static uint32_t key[2][ALCM_LAT_SLOTS];
	static uint64_t cnt[2][ALCM_LAT_SLOTS];
	uint32_t used[2] = {0, 0};
	int ok[2];
	int keep = alcm_quant_scalar_only;
	for (int k = 0; k < 2; k++) {
		memset(key[k], 0xff, sizeof(key[k]));
		memset(cnt[k], 0, sizeof(cnt[k]));
		alcm_quant_scalar_only = k;
		ok[k] = alcm_quant_lattice_scan(src, n, key[k], cnt[k], &used[k]);
	}
	alcm_quant_scalar_only = keep;
	assert_int_equal(ok[0], ok[1]);
	if (ok[0]) {
		assert_int_equal(used[0], used[1]);
		assert_memory_equal(key[0], key[1], sizeof(key[0]));
		for (unsigned h = 0; h < ALCM_LAT_SLOTS; h++)
			if (key[0][h] != ALCM_LAT_EMPTY)
				assert_int_equal(cnt[0][h], cnt[1][h]);
	}
	return ok[0];
}

static void test_lattice_values(void **state)
{
	(void)state;
	enum { N = 50000 };
	uint8_t *p = malloc(4 * N);
	assert_non_null(p);
	/* A few values, near 256 (some off their home slot), and every tail length. */
	static const unsigned ks[] = {5, 60, 250};
	for (size_t a = 0; a < sizeof(ks) / sizeof(ks[0]); a++)
		for (uint64_t n = N - 9; n <= N; n++) {
			lattice(p, n, ks[a], 0);
			assert_true(same_scan(p, n));
		}
	/* And the whole of it through alcm_quant_lattice(), both ways. */
	lattice(p, N, 60, 0);
	double s[2] = {0, 0}, o[2] = {0, 0};
	int r[2];
	for (int k = 0; k < 2; k++) {
		alcm_quant_scalar_only = k;
		r[k] = alcm_quant_lattice(p, N, 0.004, &s[k], &o[k]);
	}
	alcm_quant_scalar_only = 0;
	assert_int_equal(r[0], 1);
	assert_int_equal(r[1], 1);
	assert_memory_equal(s, s + 1, sizeof(double));
	assert_memory_equal(o, o + 1, sizeof(double));
	free(p);
}

static void test_specials_not_counted(void **state)
{
	(void)state;
	enum { N = 30000 };
	uint8_t *p = malloc(4 * N);
	assert_non_null(p);
	static const unsigned sp[] = {2, 7, 100};
	for (size_t a = 0; a < sizeof(sp) / sizeof(sp[0]); a++) {
		lattice(p, N, 40, sp[a]);
		assert_true(same_scan(p, N));
	}
	/* All special: nothing counted. */
	for (uint64_t i = 0; i < N; i++)
		put(p, i, i & 1 ? 0x7fc00000u : 0x80000000u);
	assert_true(same_scan(p, N));
	free(p);
}

static void test_past_256_values(void **state)
{
	(void)state;
	enum { N = 4096 };
	uint8_t *p = malloc(4 * N);
	assert_non_null(p);
	/* Exactly 256 distinct values, then a 257th at every position of a group of 8. */
	for (uint64_t i = 0; i < N; i++)
		put(p, i, bits_of(1.0f + (float)(i % 256)));
	assert_true(same_scan(p, N));
	for (uint64_t at = N - 16; at < N; at++) {
		uint32_t keep;
		memcpy(&keep, p + 4 * at, 4);
		put(p, at, bits_of(-7.5f));
		assert_false(same_scan(p, N));
		put(p, at, keep);
	}
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lattice_values),
		cmocka_unit_test(test_specials_not_counted),
		cmocka_unit_test(test_past_256_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
