/* Ed25519 signatures over the manifest of an archive (spec 6.10). */
#include "codec_internal.h"

#include <sodium.h>

#define SIG_MAGIC "ALCMSIG1"
#define SIG_LEN (8 + 4 + 4 + 32 + 64)
#define MANIFEST_TAG_V1 "alcm-manifest-v1"
#define MANIFEST_TAG_V2 "alcm-manifest-v2"

int alcm_keypair_new(uint8_t pk[ALCM_PUBLIC_KEY_BYTES], uint8_t sk[ALCM_SECRET_KEY_BYTES])
{
	if (!pk || !sk)
		return ALCM_E_ARG;
	if (sodium_init() < 0)
		return ALCM_E_UNSUPPORTED;
	return crypto_sign_keypair(pk, sk) == 0 ? ALCM_OK : ALCM_E_UNSUPPORTED;
}

void alcm_wipe(void *p, size_t len)
{
	if (p)
		sodium_memzero(p, len);
}

/*
 * Streams the manifest into a BLAKE2b-512 hash: the signature signs that hash (plain
 * Ed25519 with the 64-byte hash as the message), so neither side needs the manifest in
 * memory whatever the section count.
 */
typedef struct manifest {
	crypto_generichash_state h;
	unsigned algorithm;
} manifest;

/* Algorithm 1: format major version, header flags, the count of sections but SIGN.
 * Algorithm 2: header bytes 0..31 (both version fields included), the count of all entries. */
static void manifest_begin(manifest *m, unsigned algorithm, const uint8_t fixed[32],
                           uint32_t count)
{
	uint8_t head[16 + 32 + 4];
	size_t n;
	m->algorithm = algorithm;
	if (algorithm == 1) {
		memcpy(head, MANIFEST_TAG_V1, 16);
		alcm_store32(head + 16, ALCM_FORMAT_MAJOR);
		alcm_store32(head + 20, alcm_load32(fixed + 12));
		alcm_store32(head + 24, count);
		n = 28;
	} else {
		memcpy(head, MANIFEST_TAG_V2, 16);
		memcpy(head + 16, fixed, 32);
		alcm_store32(head + 48, count);
		n = 52;
	}
	crypto_generichash_init(&m->h, NULL, 0, crypto_generichash_BYTES_MAX);
	crypto_generichash_update(&m->h, head, n);
}

static int is_sign(const alcm_section_info *si)
{
	return memcmp(si->type, "SIGN", 4) == 0;
}

/* One table entry. Algorithm 1 leaves SIGN out; algorithm 2 lists it with a zero digest
 * (its digest covers the signature itself), so its flags, tag, length and place count. */
static void manifest_add(manifest *m, const alcm_section_info *si)
{
	if (m->algorithm == 1 && is_sign(si))
		return;
	uint8_t e[4 + 4 + 4 + 8 + 32];
	memcpy(e, si->type, 4);
	alcm_store32(e + 4, si->flags);
	alcm_store32(e + 8, si->tag);
	alcm_store64(e + 12, si->length);
	if (is_sign(si))
		memset(e + 20, 0, 32);
	else
		memcpy(e + 20, si->digest, 32);
	crypto_generichash_update(&m->h, e, sizeof(e));
}

static void manifest_end(manifest *m, uint8_t out[crypto_generichash_BYTES_MAX])
{
	crypto_generichash_final(&m->h, out, crypto_generichash_BYTES_MAX);
}

/* Builds the SIGN payload for the sections of w so far plus the SIGN entry to come. */
static int sign_payload(alcm_writer *w, const uint8_t *sk, unsigned algorithm,
                        uint8_t payload[SIG_LEN])
{
	uint32_t n = alcm_writer_section_count(w);
	alcm_section_info si;
	for (uint32_t i = 0; i < n; i++) {
		alcm_writer_section_info(w, i, &si);
		if (is_sign(&si))
			return ALCM_E_STATE; /* one signature per archive */
	}
	uint8_t fixed[32], digest[crypto_generichash_BYTES_MAX];
	alcm_writer_fixed_header(w, fixed);
	manifest m;
	manifest_begin(&m, algorithm, fixed, algorithm == 1 ? n : n + 1);
	for (uint32_t i = 0; i < n; i++) {
		alcm_writer_section_info(w, i, &si);
		manifest_add(&m, &si);
	}
	memset(&si, 0, sizeof(si));
	memcpy(si.type, "SIGN", 5);
	si.length = SIG_LEN;
	manifest_add(&m, &si); /* flags 0, tag 0: as alcm_writer_add_section() below */
	manifest_end(&m, digest);
	memset(payload, 0, SIG_LEN);
	memcpy(payload, SIG_MAGIC, 8);
	alcm_store32(payload + 8, algorithm);
	crypto_sign_ed25519_sk_to_pk(payload + 16, sk);
	crypto_sign_detached(payload + 48, NULL, digest, sizeof(digest), sk);
	return ALCM_OK;
}

/* 1 if the secret key's second half is the public key of its first (its seed). */
static int secret_key_whole(const uint8_t *sk)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
	crypto_sign_seed_keypair(pk, sk2, sk);
	int ok = sodium_memcmp(pk, sk + 32, 32) == 0;
	sodium_memzero(sk2, sizeof(sk2));
	return ok;
}

int alcm_sign_with(alcm_writer *w, const uint8_t sk[ALCM_SECRET_KEY_BYTES], unsigned algorithm)
{
	if (!w || !sk || algorithm < 1 || algorithm > 2)
		return ALCM_E_ARG;
	if (sodium_init() < 0)
		return ALCM_E_UNSUPPORTED;
	/* A damaged key would sign with a public key that does not verify the signature. */
	if (!secret_key_whole(sk))
		return ALCM_E_ARG;
	uint8_t payload[SIG_LEN];
	int st = sign_payload(w, sk, algorithm, payload);
	if (!st)
		st = alcm_writer_add_section(w, "SIGN", 0, 0, payload, sizeof(payload), NULL);
	sodium_memzero(payload, sizeof(payload));
	return st;
}

int alcm_writer_sign(alcm_writer *w, const uint8_t sk[ALCM_SECRET_KEY_BYTES])
{
	if (!w || !sk)
		return ALCM_E_ARG;
	/* Algorithm 2 is a 1.1 feature. An append cannot raise the archive's version: on a 1.0
	 * stream archive the signature falls back to algorithm 1 (spec 6.10). */
	unsigned algorithm = 2;
	if (alcm_writer_minor(w) < 1) {
		if (alcm_writer_appending(w))
			algorithm = 1;
		else {
			int st = alcm_writer_require_minor(w, 1);
			if (st)
				return st;
		}
	}
	return alcm_sign_with(w, sk, algorithm);
}

/* The SIGN section of r: its index and payload. @return ALCM_OK, ALCM_E_NOTFOUND, or an
 * error for a malformed, duplicate or unreadable one. */
static int find_sign(alcm_reader *r, uint32_t *index, uint8_t payload[SIG_LEN])
{
	uint32_t n = alcm_reader_section_count(r), sig = ALCM_NONE;
	alcm_section_info si;
	for (uint32_t i = 0; i < n; i++) {
		alcm_reader_section_info(r, i, &si);
		if (!is_sign(&si))
			continue;
		if (sig != ALCM_NONE || si.length != SIG_LEN)
			return ALCM_E_CORRUPT;
		sig = i;
	}
	if (sig == ALCM_NONE)
		return ALCM_E_NOTFOUND;
	int st = alcm_reader_section_read(r, sig, payload, SIG_LEN);
	if (st)
		return st;
	if (memcmp(payload, SIG_MAGIC, 8) != 0 || alcm_load32(payload + 12) != 0)
		return ALCM_E_CORRUPT;
	unsigned algorithm = alcm_load32(payload + 8);
	if (algorithm < 1 || algorithm > 2)
		return ALCM_E_UNSUPPORTED;
	*index = sig;
	return ALCM_OK;
}

int alcm_reader_check_signature(alcm_reader *r, const uint8_t *pk, int *state)
{
	if (!r || !state)
		return ALCM_E_ARG;
	*state = ALCM_SIG_NONE;
	if (sodium_init() < 0)
		return ALCM_E_UNSUPPORTED;
	uint8_t payload[SIG_LEN], digest[crypto_generichash_BYTES_MAX], fixed[32];
	uint32_t sig;
	int st = find_sign(r, &sig, payload);
	if (st == ALCM_E_NOTFOUND)
		return ALCM_OK;
	if (st)
		return st;
	unsigned algorithm = alcm_load32(payload + 8);
	uint32_t n = alcm_reader_section_count(r);
	alcm_reader_fixed_header(r, fixed);
	manifest m;
	manifest_begin(&m, algorithm, fixed, algorithm == 1 ? n - 1 : n);
	alcm_section_info si;
	for (uint32_t i = 0; i < n; i++) {
		alcm_reader_section_info(r, i, &si);
		manifest_add(&m, &si);
	}
	manifest_end(&m, digest);
	const uint8_t *stored_pk = payload + 16;
	if (crypto_sign_verify_detached(payload + 48, digest, sizeof(digest), stored_pk) != 0)
		*state = ALCM_SIG_BAD;
	else if (pk && sodium_memcmp(pk, stored_pk, 32) != 0)
		*state = ALCM_SIG_OTHER_KEY;
	else
		*state = ALCM_SIG_VALID;
	return ALCM_OK;
}

int alcm_reader_signature_info(alcm_reader *r, alcm_signature_info *info)
{
	if (!r || !info)
		return ALCM_E_ARG;
	memset(info, 0, sizeof(*info));
	uint8_t payload[SIG_LEN];
	uint32_t sig;
	int st = find_sign(r, &sig, payload);
	if (st)
		return st;
	info->algorithm = alcm_load32(payload + 8);
	memcpy(info->signer, payload + 16, ALCM_PUBLIC_KEY_BYTES);
	return ALCM_OK;
}
