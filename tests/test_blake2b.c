/* format/blake2b.c: the section digests equal libsodium's BLAKE2b on every length around the
 * block size, however the input is split into updates, and RFC 7693's vector; each test runs
 * with the compression function the process picks, the plain one and the AVX2 one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <sodium.h>

#include "container.h"
#include "format_internal.h"

static uint8_t *pattern(size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	assert_non_null(b);
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
	return b;
}

static void ours(uint8_t *out, size_t outlen, const uint8_t *p, size_t n, size_t step)
{
	alcm_blake2b s;
	alcm_blake2b_init(&s, outlen);
	for (size_t i = 0; i < n; i += step)
		alcm_blake2b_update(&s, p + i, n - i < step ? n - i : step);
	alcm_blake2b_final(&s, out);
}

/* RFC 7693 appendix A: BLAKE2b-512("abc"). */
static void test_rfc_vector(void **state)
{
	(void)state;
	static const uint8_t want[64] = {
		0xBA, 0x80, 0xA5, 0x3F, 0x98, 0x1C, 0x4D, 0x0D, 0x6A, 0x27, 0x97, 0xB6, 0x9F,
		0x12, 0xF6, 0xE9, 0x4C, 0x21, 0x2F, 0x14, 0x68, 0x5A, 0xC4, 0xB7, 0x4B, 0x12,
		0xBB, 0x6F, 0xDB, 0xFF, 0xA2, 0xD1, 0x7D, 0x87, 0xC5, 0x39, 0x2A, 0xAB, 0x79,
		0x2D, 0xC2, 0x52, 0xD5, 0xDE, 0x45, 0x33, 0xCC, 0x95, 0x18, 0xD3, 0x8A, 0xA8,
		0xDB, 0xF1, 0x92, 0x5A, 0xB9, 0x23, 0x86, 0xED, 0xD4, 0x00, 0x99, 0x23};
	uint8_t got[64];
	ours(got, 64, (const uint8_t *)"abc", 3, 3);
	assert_memory_equal(got, want, 64);
}

/* Every length 0..600 (empty, partial, exact and multiple blocks), in one update and split
 * into pieces of 1, 7, 127, 128 and 129 bytes, against libsodium, for 32- and 64-byte digests. */
static void test_against_libsodium(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	uint8_t *p = pattern(600);
	static const size_t steps[] = {600, 1, 7, 127, 128, 129};
	for (size_t n = 0; n <= 600; n++) {
		for (size_t outlen = 32; outlen <= 64; outlen += 32) {
			uint8_t want[64], got[64];
			crypto_generichash(want, outlen, p, n, NULL, 0);
			for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
				memset(got, 0, sizeof(got));
				ours(got, outlen, p, n, steps[k]);
				assert_memory_equal(got, want, outlen);
			}
		}
	}
	free(p);
}

/* A large buffer in uneven updates, as the writer hashes a section chunk by chunk. */
static void test_large_uneven(void **state)
{
	(void)state;
	size_t n = (5u << 20) + 77;
	uint8_t *p = pattern(n);
	uint8_t want[32], got[32];
	crypto_generichash(want, 32, p, n, NULL, 0);
	alcm_blake2b s;
	alcm_blake2b_init(&s, 32);
	size_t i = 0, step = 1;
	while (i < n) {
		size_t k = n - i < step ? n - i : step;
		alcm_blake2b_update(&s, p + i, k);
		i += k;
		step = step * 3 + 1;
	}
	alcm_blake2b_final(&s, got);
	assert_memory_equal(got, want, 32);
	uint8_t one[32];
	alcm_digest(one, p, n);
	assert_memory_equal(one, want, 32);
	free(p);
}

static int kind_setup(void **state)
{
	alcm_blake2b_kind = (int)(intptr_t)*state;
	return 0;
}

static int kind_teardown(void **state)
{
	(void)state;
	alcm_blake2b_kind = 0;
	return 0;
}

#define KINDS(t)                                                                           \
	cmocka_unit_test_prestate_setup_teardown(t, kind_setup, kind_teardown, (void *)0),  \
	cmocka_unit_test_prestate_setup_teardown(t, kind_setup, kind_teardown, (void *)1),  \
	cmocka_unit_test_prestate_setup_teardown(t, kind_setup, kind_teardown, (void *)2)

int main(void)
{
	const struct CMUnitTest tests[] = {
		KINDS(test_rfc_vector),
		KINDS(test_against_libsodium),
		KINDS(test_large_uneven),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
