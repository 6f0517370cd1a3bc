/* Ed25519 signatures over the manifest of an archive (spec 6.10). */
#include "codec_internal.h"

#include <sodium.h>

#define SIG_MAGIC "ALCMSIG1"
#define SIG_LEN (8 + 4 + 4 + 32 + 64)
#define MANIFEST_TAG "alcm-manifest-v1"

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

/* Streams the manifest into a BLAKE2b-512 hash: the signature signs that hash, so neither
 * side needs the manifest in memory whatever the section count. */
typedef struct manifest {
	crypto_generichash_state h;
} manifest;

static void manifest_begin(manifest *m, uint32_t flags, uint32_t count)
{
	uint8_t head[16 + 12];
	memcpy(head, MANIFEST_TAG, 16);
	alcm_store32(head + 16, ALCM_FORMAT_MAJOR);
	alcm_store32(head + 20, flags);
	alcm_store32(head + 24, count);
	crypto_generichash_init(&m->h, NULL, 0, crypto_generichash_BYTES_MAX);
	crypto_generichash_update(&m->h, head, sizeof(head));
}

static void manifest_add(manifest *m, const alcm_section_info *si)
{
	uint8_t e[4 + 4 + 4 + 8 + 32];
	memcpy(e, si->type, 4);
	alcm_store32(e + 4, si->flags);
	alcm_store32(e + 8, si->tag);
	alcm_store64(e + 12, si->length);
	memcpy(e + 20, si->digest, 32);
	crypto_generichash_update(&m->h, e, sizeof(e));
}

static void manifest_end(manifest *m, uint8_t out[crypto_generichash_BYTES_MAX])
{
	crypto_generichash_final(&m->h, out, crypto_generichash_BYTES_MAX);
}

static int is_sign(const alcm_section_info *si)
{
	return memcmp(si->type, "SIGN", 4) == 0;
}

int alcm_writer_sign(alcm_writer *w, const uint8_t sk[ALCM_SECRET_KEY_BYTES])
{
	if (!w || !sk)
		return ALCM_E_ARG;
	if (sodium_init() < 0)
		return ALCM_E_UNSUPPORTED;
	uint32_t n = alcm_writer_section_count(w), count = 0;
	alcm_section_info si;
	for (uint32_t i = 0; i < n; i++) {
		alcm_writer_section_info(w, i, &si);
		if (is_sign(&si))
			return ALCM_E_STATE; /* one signature per archive */
		count++;
	}
	manifest m;
	uint8_t digest[crypto_generichash_BYTES_MAX], payload[SIG_LEN];
	manifest_begin(&m, alcm_writer_flags(w), count);
	for (uint32_t i = 0; i < n; i++) {
		alcm_writer_section_info(w, i, &si);
		manifest_add(&m, &si);
	}
	manifest_end(&m, digest);
	memset(payload, 0, sizeof(payload));
	memcpy(payload, SIG_MAGIC, 8);
	alcm_store32(payload + 8, 1); /* algorithm 1: Ed25519 over the BLAKE2b-512 manifest */
	crypto_sign_ed25519_sk_to_pk(payload + 16, sk);
	crypto_sign_detached(payload + 48, NULL, digest, sizeof(digest), sk);
	return alcm_writer_add_section(w, "SIGN", 0, 0, payload, sizeof(payload), NULL);
}

int alcm_reader_check_signature(alcm_reader *r, const uint8_t *pk, int *state)
{
	if (!r || !state)
		return ALCM_E_ARG;
	*state = ALCM_SIG_NONE;
	if (sodium_init() < 0)
		return ALCM_E_UNSUPPORTED;
	uint32_t n = alcm_reader_section_count(r), sig = ALCM_NONE, count = 0;
	alcm_section_info si;
	for (uint32_t i = 0; i < n; i++) {
		alcm_reader_section_info(r, i, &si);
		if (!is_sign(&si)) {
			count++;
			continue;
		}
		if (sig != ALCM_NONE || si.length != SIG_LEN)
			return ALCM_E_CORRUPT;
		sig = i;
	}
	if (sig == ALCM_NONE)
		return ALCM_OK;
	uint8_t payload[SIG_LEN], digest[crypto_generichash_BYTES_MAX];
	int st = alcm_reader_section_read(r, sig, payload, sizeof(payload));
	if (st)
		return st;
	if (memcmp(payload, SIG_MAGIC, 8) != 0 || alcm_load32(payload + 8) != 1 ||
	    alcm_load32(payload + 12) != 0)
		return ALCM_E_CORRUPT;
	manifest m;
	manifest_begin(&m, alcm_reader_flags(r), count);
	for (uint32_t i = 0; i < n; i++) {
		alcm_reader_section_info(r, i, &si);
		if (!is_sign(&si))
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
