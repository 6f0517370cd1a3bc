/*
 * BLAKE2b (RFC 7693), unkeyed, for section digests. libsodium's crypto_generichash computes the
 * same values, but after sodium_init() it switches to a vectorised compression function that is
 * about 1.8x slower than plain 64-bit code on this project's first machines (AMD EPYC: 400
 * against 730 MB/s), and digests are a third of a lossless pack. On a later EPYC (family 26,
 * AVX-512) the vectorised one is about 10% faster instead (1035-1076 against 919-971 MB/s on 4
 * KB to 4 MB, best of 50 to 200). So this file has both kinds, and the first large update of a
 * process times them on its own bytes and keeps the faster (compress_pick): where 256-bit
 * permutes are slow the plain one wins. tests/test_blake2b.c checks both against libsodium on
 * every length that matters (block boundaries, split updates).
 */
#include "format_internal.h"

#include <pthread.h>
#include <time.h>

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
__attribute__((aligned(256))) static void compress_plain(alcm_blake2b *s, const uint8_t *p,
                                                         size_t nblocks, uint64_t inc, int last)
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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_COMPRESS_AVX2 1

/* The 16 words as four rows of four (a = v0..3, b = v4..7, c = v8..11, d = v12..15): one G
 * on each column at once, then on each diagonal. The diagonal step turns rows a, c and d, not
 * b: b's last rotation ends the column step, so turning it would wait on it (as libsodium's
 * AVX2 code does). Lane j then holds the diagonal G whose b is v[4 + j], G number (j + 3) % 4,
 * whose message words are sigma 8 + 2((j + 3) % 4) and the next: 14, 8, 10, 12 and 15, 9, 11,
 * 13. Rotations by 32, 24 and 16 are byte shuffles; by 63, a shift and an addition. 1090-1125
 * MB/s on AMD EPYC family 26, 4 KB to 4 MB, against 875-959 for compress_plain there;
 * AVX-512's vprorq for the rotations was slower (1033-1039). */
#define ROR32(x) _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1))
#define ROR24(x) _mm256_shuffle_epi8(x, r24)
#define ROR16(x) _mm256_shuffle_epi8(x, r16)
#define ROR63(x) _mm256_or_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x))
#define MSG4(r, i0, i1, i2, i3)                                                            \
	_mm256_set_epi64x((long long)m[sigma[r][i3]], (long long)m[sigma[r][i2]],          \
	                  (long long)m[sigma[r][i1]], (long long)m[sigma[r][i0]])
#define HALF(mm, RD, RB)                                                                   \
	do {                                                                               \
		a = _mm256_add_epi64(_mm256_add_epi64(a, mm), b);                          \
		d = RD(_mm256_xor_si256(d, a));                                            \
		c = _mm256_add_epi64(c, d);                                                \
		b = RB(_mm256_xor_si256(b, c));                                            \
	} while (0)
#define VROUND(r)                                                                          \
	do {                                                                               \
		__m256i m0 = MSG4(r, 0, 2, 4, 6), m1 = MSG4(r, 1, 3, 5, 7);                \
		__m256i m2 = MSG4(r, 14, 8, 10, 12), m3 = MSG4(r, 15, 9, 11, 13);          \
		HALF(m0, ROR32, ROR24);                                                    \
		HALF(m1, ROR16, ROR63);                                                    \
		a = _mm256_permute4x64_epi64(a, _MM_SHUFFLE(2, 1, 0, 3));                  \
		d = _mm256_permute4x64_epi64(d, _MM_SHUFFLE(1, 0, 3, 2));                  \
		c = _mm256_permute4x64_epi64(c, _MM_SHUFFLE(0, 3, 2, 1));                  \
		HALF(m2, ROR32, ROR24);                                                    \
		HALF(m3, ROR16, ROR63);                                                    \
		a = _mm256_permute4x64_epi64(a, _MM_SHUFFLE(0, 3, 2, 1));                  \
		d = _mm256_permute4x64_epi64(d, _MM_SHUFFLE(1, 0, 3, 2));                  \
		c = _mm256_permute4x64_epi64(c, _MM_SHUFFLE(2, 1, 0, 3));                  \
	} while (0)

__attribute__((target("avx2"), aligned(256))) static void compress_avx2(alcm_blake2b *s,
                                                                       const uint8_t *p,
                                                                       size_t nblocks,
                                                                       uint64_t inc, int last)
{
	const __m256i r24 = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10,
	                                     3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
	const __m256i r16 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9,
	                                     2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
	const __m256i iv0 = _mm256_loadu_si256((const __m256i *)iv);
	const __m256i iv1 = _mm256_loadu_si256((const __m256i *)(iv + 4));
	__m256i h0 = _mm256_loadu_si256((const __m256i *)s->h);
	__m256i h1 = _mm256_loadu_si256((const __m256i *)(s->h + 4));
	for (size_t k = 0; k < nblocks; k++, p += 128) {
		uint64_t m[16];
		for (int i = 0; i < 16; i++)
			m[i] = alcm_load64(p + 8 * i);
		s->t[0] += inc;
		s->t[1] += s->t[0] < inc;
		__m256i a = h0, b = h1, c = iv0;
		__m256i d = _mm256_xor_si256(iv1, _mm256_set_epi64x(0, last ? -1LL : 0,
		                                                    (long long)s->t[1],
		                                                    (long long)s->t[0]));
		VROUND(0);
		VROUND(1);
		VROUND(2);
		VROUND(3);
		VROUND(4);
		VROUND(5);
		VROUND(6);
		VROUND(7);
		VROUND(8);
		VROUND(9);
		VROUND(10);
		VROUND(11);
		h0 = _mm256_xor_si256(h0, _mm256_xor_si256(a, c));
		h1 = _mm256_xor_si256(h1, _mm256_xor_si256(b, d));
	}
	_mm256_storeu_si256((__m256i *)s->h, h0);
	_mm256_storeu_si256((__m256i *)(s->h + 4), h1);
}
#endif

typedef void (*compress_fn)(alcm_blake2b *s, const uint8_t *p, size_t nblocks, uint64_t inc,
                            int last);
int alcm_blake2b_kind = 0;
static compress_fn picked = compress_plain; /* atomic: read by short updates meanwhile */
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;

/* The faster of the two on PICK_BYTES (into a scratch state; their time does not depend on the
 * bytes), best of PICK_ROUNDS each, alternating: about 0.1 ms, once a process, at its first
 * update of PICK_BYTES or more. */
#define PICK_BYTES ((size_t)16 << 10)
#define PICK_ROUNDS 3
#ifdef HAVE_COMPRESS_AVX2
static double seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint8_t pick_data[PICK_BYTES];
static volatile uint64_t pick_sink; /* so that the timed calls are not left out */
#endif

static void pick(void)
{
#ifdef HAVE_COMPRESS_AVX2
	if (!__builtin_cpu_supports("avx2"))
		return;
	double best[2] = {1e30, 1e30};
	for (int r = 0; r < PICK_ROUNDS; r++)
		for (int k = 0; k < 2; k++) {
			alcm_blake2b tmp;
			memset(&tmp, 0, sizeof(tmp));
			double t0 = seconds();
			(k ? compress_avx2 : compress_plain)(&tmp, pick_data, PICK_BYTES / 128, 128, 0);
			double t = seconds() - t0;
			pick_sink ^= tmp.h[0];
			if (t < best[k])
				best[k] = t;
		}
	if (best[1] < best[0])
		__atomic_store_n(&picked, compress_avx2, __ATOMIC_RELAXED);
#endif
}

/* Test hook alcm_blake2b_kind: 1 the plain code, 2 the AVX2 code (where the CPU has it). */
static void compress(alcm_blake2b *s, const uint8_t *p, size_t nblocks, uint64_t inc, int last)
{
#ifdef HAVE_COMPRESS_AVX2
	if (alcm_blake2b_kind == 2 && __builtin_cpu_supports("avx2")) {
		compress_avx2(s, p, nblocks, inc, last);
		return;
	}
#endif
	if (alcm_blake2b_kind) {
		compress_plain(s, p, nblocks, inc, last);
		return;
	}
	if (nblocks >= PICK_BYTES / 128)
		pthread_once(&pick_once, pick);
	__atomic_load_n(&picked, __ATOMIC_RELAXED)(s, p, nblocks, inc, last);
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
