/*
 * BLAKE2b (RFC 7693), unkeyed, for section digests. libsodium's crypto_generichash computes the
 * same values, but after sodium_init() it switches to a vectorised compression function that is
 * about 1.8x slower than plain 64-bit code on this project's first machines (AMD EPYC: 400
 * against 730 MB/s), and digests are a third of a lossless pack. On a later EPYC (family 26,
 * AVX-512) the vectorised one is about 10% faster instead (1035-1076 against 919-971 MB/s on 4
 * KB to 4 MB, best of 50 to 200); neither is chosen by measuring at run time. tests/test_blake2b.c
 * checks this code against libsodium on every length that matters (block boundaries, split
 * updates).
 */
#include "format_internal.h"

static const uint64_t iv[8] = {
	0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
	0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull,
};

static const uint8_t sigma[12][16] = {
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	{14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
	{11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
	{7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
	{9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
	{2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
	{12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
	{13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
	{6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
	{10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	{14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t rotr64(uint64_t x, unsigned n)
{
	return (x >> n) | (x << (64 - n));
}

#define G(r, i, a, b, c, d)                                                                \
	do {                                                                               \
		a = a + b + m[sigma[r][2 * (i)]];                                          \
		d = rotr64(d ^ a, 32);                                                     \
		c = c + d;                                                                 \
		b = rotr64(b ^ c, 24);                                                     \
		a = a + b + m[sigma[r][2 * (i) + 1]];                                      \
		d = rotr64(d ^ a, 16);                                                     \
		c = c + d;                                                                 \
		b = rotr64(b ^ c, 63);                                                     \
	} while (0)

#define ROUND(r)                                                                           \
	do {                                                                               \
		G(r, 0, v[0], v[4], v[8], v[12]);                                          \
		G(r, 1, v[1], v[5], v[9], v[13]);                                          \
		G(r, 2, v[2], v[6], v[10], v[14]);                                         \
		G(r, 3, v[3], v[7], v[11], v[15]);                                         \
		G(r, 4, v[0], v[5], v[10], v[15]);                                         \
		G(r, 5, v[1], v[6], v[11], v[12]);                                         \
		G(r, 6, v[2], v[7], v[8], v[13]);                                          \
		G(r, 7, v[3], v[4], v[9], v[14]);                                          \
	} while (0)

/* Compresses `nblocks` 128-byte blocks, each counting `inc` bytes; `last` flags the final one
 * (it is then alone, and inc is its length: 0 to 128). Aligned to 256 bytes: its unrolled body
 * (6.5 KB) ran at a third of its speed where the link happened to place it 64 bytes past a
 * 128-byte boundary (AMD EPYC, family 26: alcm-pack -T1 of e2e.npz 1.35 -> 2.4 s after an
 * unrelated change elsewhere moved it there; aligned to 128, 256 or 4096: 1.30-1.39 s). */
__attribute__((aligned(256))) static void compress(alcm_blake2b *s, const uint8_t *p, size_t nblocks, uint64_t inc, int last)
{
	for (size_t k = 0; k < nblocks; k++, p += 128) {
		uint64_t m[16], v[16];
		for (int i = 0; i < 16; i++)
			m[i] = alcm_load64(p + 8 * i);
		s->t[0] += inc;
		s->t[1] += s->t[0] < inc;
		memcpy(v, s->h, sizeof(s->h));
		memcpy(v + 8, iv, sizeof(iv));
		v[12] ^= s->t[0];
		v[13] ^= s->t[1];
		if (last)
			v[14] = ~v[14];
		ROUND(0);
		ROUND(1);
		ROUND(2);
		ROUND(3);
		ROUND(4);
		ROUND(5);
		ROUND(6);
		ROUND(7);
		ROUND(8);
		ROUND(9);
		ROUND(10);
		ROUND(11);
		for (int i = 0; i < 8; i++)
			s->h[i] ^= v[i] ^ v[i + 8];
	}
}

void alcm_blake2b_init(alcm_blake2b *s, size_t outlen)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->h, iv, sizeof(iv));
	s->h[0] ^= 0x01010000ull ^ outlen; /* depth 1, fanout 1, no key */
	s->outlen = outlen;
}

void alcm_blake2b_update(alcm_blake2b *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (len == 0)
		return;
	/* The last block is compressed by final() with its flag, so a full buffer waits for more. */
	if (s->buflen + len > 128) {
		size_t fill = 128 - s->buflen;
		memcpy(s->buf + s->buflen, p, fill);
		compress(s, s->buf, 1, 128, 0);
		s->buflen = 0;
		p += fill;
		len -= fill;
		if (len > 128) {
			size_t n = (len - 1) / 128;
			compress(s, p, n, 128, 0);
			p += n * 128;
			len -= n * 128;
		}
	}
	memcpy(s->buf + s->buflen, p, len);
	s->buflen += len;
}

void alcm_blake2b_final(alcm_blake2b *s, uint8_t *out)
{
	uint8_t full[64];
	memset(s->buf + s->buflen, 0, 128 - s->buflen);
	compress(s, s->buf, 1, s->buflen, 1); /* an empty message: one zero block counting 0 */
	for (int i = 0; i < 8; i++)
		alcm_store64(full + 8 * i, s->h[i]);
	memcpy(out, full, s->outlen);
}
