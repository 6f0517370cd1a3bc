/* Signed archives: a valid signature verifies; every tampering an attacker can make while
 * keeping the digests consistent (re-ordering, removing, adding, swapping sections, another
 * key, a stripped signature) is caught. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

typedef struct sec {
	char type[5];
	uint32_t flags, tag;
	uint8_t *data;
	size_t len;
} sec;

static uint8_t pk[32], sk[64], pk2[32], sk2[64];

/* Builds an archive in memory from sections, optionally signed with `key`. A copy that
 * carries a SIGN section keeps the format 1.1 header the signature covers (spec 6.10). */
static void build(const sec *s, size_t n, const uint8_t *key, uint8_t **out, size_t *len)
{
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	for (size_t i = 0; i < n; i++)
		if (!key && strcmp(s[i].type, "SIGN") == 0)
			assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(alcm_writer_add_section(w, s[i].type, s[i].flags, s[i].tag, s[i].data,
		                                         s[i].len, NULL), ALCM_OK);
	if (key)
		assert_int_equal(alcm_writer_sign(w, key), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	assert_int_equal(alcm_writer_memory(w, &b, len), ALCM_OK);
	*out = malloc(*len);
	memcpy(*out, b, *len);
	alcm_writer_free(w);
}

/* Reads every section of an archive back (what an attacker can copy). */
static sec *sections(const uint8_t *buf, size_t len, size_t *n)
{
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "a", NULL, NULL, 0), ALCM_OK);
	*n = alcm_reader_section_count(r);
	sec *s = calloc(*n, sizeof(sec));
	for (size_t i = 0; i < *n; i++) {
		alcm_section_info si;
		alcm_reader_section_info(r, (uint32_t)i, &si);
		memcpy(s[i].type, si.type, 5);
		s[i].flags = si.flags;
		s[i].tag = si.tag;
		s[i].len = si.length;
		s[i].data = malloc(si.length + 1);
		assert_int_equal(alcm_reader_section_read(r, (uint32_t)i, s[i].data, si.length), 0);
	}
	alcm_reader_free(r);
	return s;
}

static void free_sections(sec *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i].data);
	free(s);
}

/* Full check as alcm-inspect --verify --pubkey does it. */
static int check(const uint8_t *buf, size_t len, const uint8_t *key, int *state)
{
	alcm_reader *r = NULL;
	int st = alcm_reader_open_memory(&r, buf, len, "a", NULL, NULL, 0);
	if (!st)
		st = alcm_reader_verify(r, NULL);
	if (!st)
		st = alcm_reader_check_signature(r, key, state);
	alcm_reader_free(r);
	return st;
}

static sec base[3];

static int setup(void **state)
{
	(void)state;
	alcm_keypair_new(pk, sk);
	alcm_keypair_new(pk2, sk2);
	const char *types[3] = {"LDAT", "LDAT", "TDIR"};
	for (int i = 0; i < 3; i++) {
		memcpy(base[i].type, types[i], 5);
		base[i].flags = ALCM_SECTION_CRITICAL;
		base[i].tag = (uint32_t)i;
		base[i].len = 100 + 37 * (size_t)i;
		base[i].data = malloc(base[i].len);
		for (size_t k = 0; k < base[i].len; k++)
			base[i].data[k] = (uint8_t)(k * 7 + (size_t)i);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		free(base[i].data);
	alcm_wipe(sk, sizeof(sk));
	alcm_wipe(sk2, sizeof(sk2));
	return 0;
}

static void test_valid_and_wrong_key(void **state)
{
	(void)state;
	uint8_t *a;
	size_t len;
	int sig;
	build(base, 3, sk, &a, &len);
	assert_int_equal(check(a, len, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_VALID);
	assert_int_equal(check(a, len, pk2, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_OTHER_KEY);
	free(a);
}

static void test_every_byte_changed(void **state)
{
	(void)state;
	uint8_t *a;
	size_t len;
	int sig;
	build(base, 3, sk, &a, &len);
	for (size_t pos = 0; pos < len; pos++) {
		a[pos] ^= 0x20;
		int st = check(a, len, pk, &sig);
		assert_true(st != ALCM_OK || sig != ALCM_SIG_VALID);
		a[pos] ^= 0x20;
	}
	free(a);
}

/* Rebuilds the archive from copied sections with a permutation; digests stay consistent,
 * only the signature can tell. */
static void tamper(const int *order, size_t n, int add, int *sig_out)
{
	uint8_t *a, *b;
	size_t len, blen, ns;
	build(base, 3, sk, &a, &len);
	sec *s = sections(a, len, &ns); /* 3 data sections + SIGN */
	sec *t = calloc(ns + 1, sizeof(sec));
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		t[k++] = s[order[i]];
	if (add)
		t[k++] = s[0];
	t[k++] = s[3];
	build(t, k, NULL, &b, &blen);
	int st = check(b, blen, pk, sig_out);
	assert_int_equal(st, ALCM_OK);
	free(t);
	free_sections(s, ns);
	free(a);
	free(b);
}

static void test_reordered_removed_added_swapped(void **state)
{
	(void)state;
	int sig;
	const int reorder[3] = {1, 0, 2}, removed[2] = {0, 2}, same[3] = {0, 1, 2};
	tamper(same, 3, 0, &sig);
	assert_int_equal(sig, ALCM_SIG_VALID); /* the copy itself is faithful */
	tamper(reorder, 3, 0, &sig);
	assert_int_equal(sig, ALCM_SIG_BAD);
	tamper(removed, 2, 0, &sig);
	assert_int_equal(sig, ALCM_SIG_BAD);
	tamper(same, 3, 1, &sig);
	assert_int_equal(sig, ALCM_SIG_BAD);
	/* Swapped content: section 0's bytes under section 1's entry. */
	uint8_t *a, *b;
	size_t len, blen, ns;
	build(base, 3, sk, &a, &len);
	sec *s = sections(a, len, &ns);
	sec t[4] = {s[0], s[1], s[2], s[3]};
	t[1].data = s[0].data;
	t[1].len = s[0].len;
	build(t, 4, NULL, &b, &blen);
	assert_int_equal(check(b, blen, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_BAD);
	free(b);
	/* Stripped: the same sections without SIGN. */
	build(s, 3, NULL, &b, &blen);
	assert_int_equal(check(b, blen, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_NONE);
	free(b);
	free_sections(s, ns);
	free(a);
}

static void test_one_signature_only(void **state)
{
	(void)state;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_sign(w, sk), ALCM_OK);
	assert_int_equal(alcm_writer_sign(w, sk), ALCM_E_STATE);
	alcm_writer_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_and_wrong_key),
		cmocka_unit_test(test_every_byte_changed),
		cmocka_unit_test(test_reordered_removed_added_swapped),
		cmocka_unit_test(test_one_signature_only),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
