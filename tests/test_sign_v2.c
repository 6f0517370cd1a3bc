/*
 * Signature algorithm 2 (spec 6.10): it covers header bytes 0..31 (both version fields, the
 * flags) and the SIGN entry's own flags, tag, length and place, which algorithm 1 does not;
 * algorithm-1 archives still verify; an append to a 1.0 stream archive signs with algorithm
 * 1; an unknown algorithm is unsupported; a damaged secret key is refused; an archive changed
 * and signed again with another key never passes for the trusted key. And the signed test
 * vectors of spec 6.10.5 (spec/vectors/sign/): rebuilt byte for byte, shown in the spec.
 * ALCM_UPDATE_VECTORS=1 rewrites them and prints the spec text.
 */
#include "testutil.h"
#include "codec_internal.h"
#include "container.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VEC_DIR ALCM_SOURCE_DIR "/spec/vectors/sign"
#define SPEC_PATH ALCM_SOURCE_DIR "/spec/alcm-format.md"

/* RFC 8032, section 7.1, TEST 1: its secret key is the seed. */
static const uint8_t rfc_seed[32] = {
	0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
	0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
};
static uint8_t pk[32], sk[64], pk2[32], sk2[64];

static int setup(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	crypto_sign_seed_keypair(pk, sk, rfc_seed);
	alcm_keypair_new(pk2, sk2);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	alcm_wipe(sk, sizeof(sk));
	alcm_wipe(sk2, sizeof(sk2));
	return 0;
}

typedef struct bytes {
	uint8_t *p;
	size_t n;
} bytes;

/* The sections of the vector (those of two-sections.alcm, spec 9.1), signed with `alg`
 * (0: alcm_writer_sign()'s choice) by `key`, in memory. */
static bytes signed_archive(unsigned alg, const uint8_t *key)
{
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "alcm test vector", 16, NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "XTRA", 0, 7, "hello", 5, NULL), ALCM_OK);
	if (alg == 2)
		assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
	assert_int_equal(alg ? alcm_sign_with(w, key, alg) : alcm_writer_sign(w, key), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	bytes out;
	assert_int_equal(alcm_writer_memory(w, &b, &out.n), ALCM_OK);
	out.p = malloc(out.n);
	memcpy(out.p, b, out.n);
	alcm_writer_free(w);
	return out;
}

/* Full check, as alcm-inspect --verify --pubkey: ALCM_OK and a state, or an error. */
static int check(const bytes *a, const uint8_t *key, int *state)
{
	alcm_reader *r = NULL;
	*state = -1;
	int st = alcm_reader_open_memory(&r, a->p, a->n, "a", NULL, NULL, 0);
	if (!st)
		st = alcm_reader_verify(r, NULL);
	if (!st)
		st = alcm_reader_check_signature(r, key, state);
	alcm_reader_free(r);
	return st;
}

/* Recomputes the header and slot digests after an edit of header bytes 0..31. */
static void reseal_header(uint8_t *p)
{
	alcm_digest(p + 32, p, 32);
	for (unsigned off = ALCM_SLOT_A; off <= ALCM_SLOT_B; off += ALCM_SLOT_SIZE)
		if (alcm_load64(p + off))
			alcm_slot_build(p + off, p, alcm_load64(p + off), alcm_load64(p + off + 8),
			                alcm_load64(p + off + 16));
}

/* The table slot A points at, and its entry i. */
static uint8_t *entry(uint8_t *p, uint32_t i)
{
	return p + alcm_load64(p + ALCM_SLOT_A + 8) + ALCM_TABLE_HEAD + (size_t)i * ALCM_TABLE_ENTRY;
}

static void reseal_table(uint8_t *p)
{
	uint64_t off = alcm_load64(p + ALCM_SLOT_A + 8), size = alcm_load64(p + ALCM_SLOT_A + 16);
	alcm_digest(p + off + size - 32, p + off, (size_t)size - 32);
}

static void test_v2_valid(void **state)
{
	(void)state;
	bytes a = signed_archive(0, sk);
	int sig;
	assert_int_equal(a.p[10], 1); /* alcm_writer_sign() made it format 1.1 */
	assert_int_equal(check(&a, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_VALID);
	assert_int_equal(check(&a, pk2, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_OTHER_KEY);
	alcm_reader *r = NULL;
	alcm_signature_info info;
	assert_int_equal(alcm_reader_open_memory(&r, a.p, a.n, "a", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_signature_info(r, &info), ALCM_OK);
	assert_int_equal(info.algorithm, 2);
	assert_memory_equal(info.signer, pk, 32);
	alcm_reader_free(r);
	free(a.p);
	/* Unsigned: NOTFOUND from the info call, NONE from the check. */
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	size_t n;
	assert_int_equal(alcm_writer_memory(w, &b, &n), ALCM_OK);
	assert_int_equal(alcm_reader_open_memory(&r, b, n, "u", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_signature_info(r, &info), ALCM_E_NOTFOUND);
	assert_int_equal(alcm_reader_check_signature(r, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_NONE);
	alcm_reader_free(r);
	alcm_writer_free(w);
}

/*
 * What algorithm 1 left open: the minor version (a 1.1 archive relabelled 1.0 meets a 1.0
 * reader unannounced), the SIGN entry's flags (flagged critical, old readers refuse the
 * archive) and tag. Each edit keeps every digest right; algorithm 2 must refuse each,
 * algorithm 1 lets each through (which is why algorithm 2 exists).
 */
static void test_header_and_sign_entry_covered(void **state)
{
	(void)state;
	for (unsigned alg = 1; alg <= 2; alg++) {
		bytes a = signed_archive(alg, sk);
		uint32_t signi = 2;
		assert_memory_equal(entry(a.p, signi), "SIGN", 4);
		int sig, want = alg == 2 ? ALCM_SIG_BAD : ALCM_SIG_VALID;
		/* minor version */
		uint8_t keep = a.p[10];
		a.p[10] = alg == 2 ? 0 : 1;
		reseal_header(a.p);
		assert_int_equal(check(&a, pk, &sig), ALCM_OK);
		assert_int_equal(sig, want);
		a.p[10] = keep;
		reseal_header(a.p);
		assert_int_equal(check(&a, pk, &sig), ALCM_OK);
		assert_int_equal(sig, ALCM_SIG_VALID);
		/* the SIGN entry's flags, then its tag */
		for (int field = 4; field <= 8; field += 4) {
			uint8_t *e = entry(a.p, signi) + field;
			uint32_t old = alcm_load32(e);
			alcm_store32(e, field == 4 ? ALCM_SECTION_CRITICAL : 99);
			reseal_table(a.p);
			assert_int_equal(check(&a, pk, &sig), ALCM_OK);
			assert_int_equal(sig, want);
			alcm_store32(e, old);
			reseal_table(a.p);
		}
		assert_int_equal(check(&a, pk, &sig), ALCM_OK);
		assert_int_equal(sig, ALCM_SIG_VALID);
		free(a.p);
	}
}

/* SIGN moved to the front of the table (a rebuilt copy, every digest right): algorithm 2
 * covers its place. */
static void test_sign_moved(void **state)
{
	(void)state;
	for (unsigned alg = 1; alg <= 2; alg++) {
		bytes a = signed_archive(alg, sk);
		alcm_reader *r = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, a.p, a.n, "a", NULL, NULL, 0), ALCM_OK);
		uint8_t payload[112];
		assert_int_equal(alcm_reader_section_read(r, 2, payload, sizeof(payload)), ALCM_OK);
		alcm_reader_free(r);
		alcm_writer *w = NULL;
		assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
		if (alg == 2)
			assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
		assert_int_equal(alcm_writer_add_section(w, "SIGN", 0, 0, payload, 112, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "alcm test vector", 16, NULL),
		                 ALCM_OK);
		assert_int_equal(alcm_writer_add_section(w, "XTRA", 0, 7, "hello", 5, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
		bytes b;
		const void *m;
		assert_int_equal(alcm_writer_memory(w, &m, &b.n), ALCM_OK);
		b.p = (uint8_t *)m;
		int sig;
		assert_int_equal(check(&b, pk, &sig), ALCM_OK);
		assert_int_equal(sig, alg == 2 ? ALCM_SIG_BAD : ALCM_SIG_VALID);
		alcm_writer_free(w);
		free(a.p);
	}
}

/* An attacker changes an archive and signs it again with their own key: it is valid only
 * for their key, never for the trusted one; and a key-less check cannot tell. */
static void test_resigned_by_another_key(void **state)
{
	(void)state;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "alcm test vector", 16, NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "XTRA", 0, 7, "HELLO", 5, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_sign(w, sk2), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	bytes b;
	const void *m;
	assert_int_equal(alcm_writer_memory(w, &m, &b.n), ALCM_OK);
	b.p = (uint8_t *)m;
	int sig;
	assert_int_equal(check(&b, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_OTHER_KEY);
	assert_int_equal(check(&b, NULL, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_VALID); /* why tools require --pubkey */
	alcm_writer_free(w);
}

/* Algorithm 3 (from a future version), with every digest right: unsupported, not corrupt. */
static void test_unknown_algorithm(void **state)
{
	(void)state;
	bytes a = signed_archive(0, sk);
	uint8_t *e = entry(a.p, 2);
	uint8_t *payload = a.p + alcm_load64(e + 16);
	alcm_store32(payload + 8, 3);
	alcm_digest(e + 32, payload, 112);
	reseal_table(a.p);
	int sig;
	assert_int_equal(check(&a, pk, &sig), ALCM_E_UNSUPPORTED);
	alcm_store32(payload + 8, 0);
	alcm_digest(e + 32, payload, 112);
	reseal_table(a.p);
	assert_int_equal(check(&a, pk, &sig), ALCM_E_UNSUPPORTED);
	/* A reserved field is still corrupt. */
	alcm_store32(payload + 8, 2);
	alcm_store32(payload + 12, 1);
	alcm_digest(e + 32, payload, 112);
	reseal_table(a.p);
	assert_int_equal(check(&a, pk, &sig), ALCM_E_CORRUPT);
	free(a.p);
}

/* A secret key whose public half is not the key of its seed signs nothing. */
static void test_damaged_secret_key(void **state)
{
	(void)state;
	uint8_t bad[64];
	memcpy(bad, sk, 64);
	bad[40] ^= 1;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_sign(w, bad), ALCM_E_ARG);
	assert_int_equal(alcm_writer_section_count(w), 0);
	assert_int_equal(alcm_writer_sign(w, sk), ALCM_OK);
	alcm_writer_free(w);
	alcm_wipe(bad, sizeof(bad));
}

/* Appends: to a 1.0 stream archive the signature is algorithm 1 (the version cannot be
 * raised); to a 1.1 one, algorithm 2. Both verify. */
static void test_append_signatures(void **state)
{
	(void)state;
	for (unsigned minor = 0; minor <= 1; minor++) {
		const char *path = tu_path(minor ? "s11.alcm" : "s10.alcm");
		unlink(path);
		alcm_writer *w = NULL;
		assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM | ALCM_WRITE_NO_SYNC,
		                                       NULL), ALCM_OK);
		if (minor)
			assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
		assert_int_equal(alcm_writer_add_section(w, "XTRA", 0, 0, "frame0", 6, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
		alcm_writer_free(w);
		w = NULL;
		assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC),
		                 ALCM_OK);
		assert_int_equal(alcm_writer_add_section(w, "XTRA", 0, 1, "frame1", 6, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_sign(w, sk), ALCM_OK);
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
		alcm_writer_free(w);
		alcm_reader *r = NULL;
		assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
		unsigned maj, min;
		alcm_reader_version(r, &maj, &min);
		assert_int_equal(min, minor);
		alcm_signature_info info;
		assert_int_equal(alcm_reader_signature_info(r, &info), ALCM_OK);
		assert_int_equal(info.algorithm, minor ? 2 : 1);
		int sig;
		assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
		assert_int_equal(alcm_reader_check_signature(r, pk, &sig), ALCM_OK);
		assert_int_equal(sig, ALCM_SIG_VALID);
		alcm_reader_free(r);
		unlink(path);
	}
}

/* ---- the vectors of spec 6.10.5 ------------------------------------------------------ */

static char *xxd(const uint8_t *p, size_t n)
{
	char *out = malloc((n + 15) / 16 * 80 + 1), *o = out;
	for (size_t at = 0; at < n; at += 16) {
		size_t k = n - at < 16 ? n - at : 16;
		o += sprintf(o, "%08zx: ", at);
		for (size_t i = 0; i < 16; i++) {
			o += i < k ? sprintf(o, "%02x", p[at + i]) : sprintf(o, "  ");
			if (i % 2 == 1)
				*o++ = ' ';
		}
		*o++ = ' ';
		for (size_t i = 0; i < k; i++)
			*o++ = p[at + i] >= 0x20 && p[at + i] < 0x7f ? (char)p[at + i] : '.';
		*o++ = '\n';
	}
	*o = '\0';
	return out;
}

static char *key_file(const char *label, const uint8_t *k, size_t n)
{
	char *s = malloc(strlen(label) + 2 * n + 3), *o = s;
	o += sprintf(o, "%s ", label);
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%02x", k[i]);
	sprintf(o, "\n");
	return s;
}

/* The 52 + 52 n manifest bytes of algorithm 2 for the vector, for the spec's reader. */
static bytes manifest_v2(const bytes *a)
{
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, a->p, a->n, "a", NULL, NULL, 0), ALCM_OK);
	uint32_t n = alcm_reader_section_count(r);
	bytes m = {malloc(52 + 52 * (size_t)n), 52 + 52 * (size_t)n};
	memcpy(m.p, "alcm-manifest-v2", 16);
	memcpy(m.p + 16, a->p, 32);
	alcm_store32(m.p + 48, n);
	for (uint32_t i = 0; i < n; i++) {
		alcm_section_info si;
		alcm_reader_section_info(r, i, &si);
		uint8_t *e = m.p + 52 + 52 * (size_t)i;
		memcpy(e, si.type, 4);
		alcm_store32(e + 4, si.flags);
		alcm_store32(e + 8, si.tag);
		alcm_store64(e + 12, si.length);
		if (memcmp(si.type, "SIGN", 4) == 0)
			memset(e + 20, 0, 32);
		else
			memcpy(e + 20, si.digest, 32);
	}
	alcm_reader_free(r);
	return m;
}

typedef struct vec_file {
	const char *name;
	char *text; /* what the spec must show */
	bytes b;
} vec_file;

static void make_vectors(vec_file v[4])
{
	bytes a2 = signed_archive(0, sk), a1 = signed_archive(1, sk);
	v[0] = (vec_file){"signed.alcm", xxd(a2.p, a2.n), a2};
	v[1] = (vec_file){"signed-v1.alcm", xxd(a1.p, a1.n), a1};
	char *k = key_file("alcm-ed25519-secret-key", sk, 64);
	char *p = key_file("alcm-ed25519-public-key", pk, 32);
	v[2] = (vec_file){"signed.key", k, {(uint8_t *)strdup(k), strlen(k)}};
	v[3] = (vec_file){"signed.pub", p, {(uint8_t *)strdup(p), strlen(p)}};
}

static void free_vectors(vec_file v[4])
{
	for (int i = 0; i < 4; i++) {
		free(v[i].text);
		free(v[i].b.p);
	}
}

static void test_vectors(void **state)
{
	(void)state;
	vec_file v[4];
	make_vectors(v);
	const char *u = getenv("ALCM_UPDATE_VECTORS");
	if (u && *u && strcmp(u, "0") != 0) {
		mkdir(VEC_DIR, 0755);
		for (int i = 0; i < 4; i++) {
			char path[4200];
			snprintf(path, sizeof(path), "%s/%s", VEC_DIR, v[i].name);
			assert_int_equal(tu_write_file(path, v[i].b.p, v[i].b.n), 0);
		}
		bytes m = manifest_v2(&v[0].b);
		uint8_t h[64];
		crypto_generichash(h, 64, m.p, m.n, NULL, 0);
		char *md = xxd(m.p, m.n), *hd = xxd(h, 64);
		const char *out = tu_path("sign-vectors.md");
		FILE *f = fopen(out, "w");
		assert_non_null(f);
		fprintf(f, "manifest of signed.alcm:\n%s\nits BLAKE2b-512:\n%s\nsigned.alcm:\n%s\n"
		        "signed-v1.alcm:\n%s\n%s%s", md, hd, v[0].text, v[1].text, v[2].text, v[3].text);
		fclose(f);
		print_message("vectors rewritten in %s; the spec's text in %s\n", VEC_DIR, out);
		free(md);
		free(hd);
		free(m.p);
		free_vectors(v);
		return;
	}
	size_t slen;
	char *spec = (char *)tu_read_file(SPEC_PATH, &slen);
	assert_non_null(spec);
	spec = realloc(spec, slen + 1);
	spec[slen] = '\0';
	for (int i = 0; i < 4; i++) {
		char path[4200];
		size_t n;
		snprintf(path, sizeof(path), "%s/%s", VEC_DIR, v[i].name);
		uint8_t *f = tu_read_file(path, &n);
		if (!f)
			fail_msg("%s is missing: run ALCM_UPDATE_VECTORS=1 test_sign_v2", path);
		if (n != v[i].b.n || memcmp(f, v[i].b.p, n) != 0)
			fail_msg("%s differs from what the library writes now", path);
		free(f);
		if (!strstr(spec, v[i].text))
			fail_msg("spec 6.10.5 lacks the current text of %s", v[i].name);
	}
	/* Each file verifies as the spec says. */
	int sig;
	assert_int_equal(check(&v[0].b, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_VALID);
	assert_int_equal(check(&v[1].b, pk, &sig), ALCM_OK);
	assert_int_equal(sig, ALCM_SIG_VALID);
	/* The manifest hash and the signature the spec shows. */
	bytes m = manifest_v2(&v[0].b);
	uint8_t h[64];
	crypto_generichash(h, 64, m.p, m.n, NULL, 0);
	char *md = xxd(m.p, m.n), *hd = xxd(h, 64);
	if (!strstr(spec, md))
		fail_msg("spec 6.10.5 lacks the manifest of signed.alcm");
	if (!strstr(spec, hd))
		fail_msg("spec 6.10.5 lacks the manifest hash of signed.alcm");
	/* Plain Ed25519 over the 64 hash bytes verifies the stored signature. */
	alcm_reader *r = NULL;
	uint8_t payload[112];
	assert_int_equal(alcm_reader_open_memory(&r, v[0].b.p, v[0].b.n, "v", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_read(r, 2, payload, sizeof(payload)), ALCM_OK);
	alcm_reader_free(r);
	assert_int_equal(crypto_sign_verify_detached(payload + 48, h, 64, pk), 0);
	free(md);
	free(hd);
	free(m.p);
	free(spec);
	free_vectors(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v2_valid),
		cmocka_unit_test(test_header_and_sign_entry_covered),
		cmocka_unit_test(test_sign_moved),
		cmocka_unit_test(test_resigned_by_another_key),
		cmocka_unit_test(test_unknown_algorithm),
		cmocka_unit_test(test_damaged_secret_key),
		cmocka_unit_test(test_append_signatures),
		cmocka_unit_test(test_vectors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
