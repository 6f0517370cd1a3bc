/* Interleaved rANS with static tables and a table per token (spec 6.5.8). */
#include "symcode_internal.h"

#include <pthread.h>


/* ---- tables ------------------------------------------------------------------------------ */

/* Rounds each share to the nearest multiple of 1 / total (at least 1 for a token that occurs),
 * then takes the difference out of, or gives it to, the largest frequencies, where it costs
 * least relative to their size. */
void alcm_rans_normalize(const uint64_t *count, unsigned ntok, uint32_t *freq)
{
	uint64_t n = 0;
	for (unsigned t = 0; t < ntok; t++)
		n += count[t];
	int64_t diff = ALCM_RANS_TOTAL;
	for (unsigned t = 0; t < ntok; t++) {
		freq[t] = 0;
		if (count[t]) {
			uint64_t f = (count[t] * ALCM_RANS_TOTAL + n / 2) / n;
			freq[t] = f ? (uint32_t)f : 1;
			diff -= freq[t];
		}
	}
	while (diff) {
		unsigned big = 0;
		for (unsigned t = 1; t < ntok; t++)
			big = freq[t] > freq[big] ? t : big;
		int64_t mv = diff > 0 ? diff : -diff;
		/* A quarter of the largest at a time: a large deficit spreads over several. */
		if (diff < 0 && mv > (int64_t)freq[big] / 4)
			mv = freq[big] / 4 ? freq[big] / 4 : 1;
		freq[big] = (uint32_t)((int64_t)freq[big] + (diff > 0 ? mv : -mv));
		diff += diff > 0 ? -mv : mv;
	}
}

void alcm_rans_etab_build(alcm_rans_etab *t, const uint32_t *freq, unsigned ntok)
{
	uint32_t start = 0;
	/* Entries from ntok on are left as they are: no token there is ever coded (touching
	 * all 256 of 16 tables costs more than coding a short chunk). */
	memset(t->s, 0, ntok * sizeof(t->s[0]));
	for (unsigned k = 0; k < ntok; k++) {
		uint32_t f = freq[k];
		alcm_rans_esym *s = &t->s[k];
		if (!f)
			continue;
		/* x_new = (x / f) * M + x % f + start, computed as x + bias + q * (M - f) with
		 * q = x / f from a fixed-point reciprocal (exact for x < 2^32). */
		s->x_max = (uint64_t)((ALCM_RANS_L >> ALCM_RANS_BITS) << 16) * f;
		s->cmpl = (uint16_t)(ALCM_RANS_TOTAL - f);
		if (f < 2) {
			s->rcp = ~0u;
			s->shift = 0;
			s->bias = start + ALCM_RANS_TOTAL - 1;
		} else {
			uint32_t sh = 0;
			while (sh < ALCM_RANS_BITS && f > (1u << sh))
				sh++;
			s->rcp = (uint32_t)(((1ull << (sh + 31)) + f - 1) / f);
			s->shift = (uint16_t)(sh - 1);
			s->bias = start;
		}
		s->shift += 32;
		start += f;
	}
	for (unsigned k = 0; k < ntok; k++) {
		t->pk[k][0] = t->s[k].rcp;
		t->pk[k][1] = t->s[k].bias | (uint32_t)t->s[k].cmpl << 13 |
		              (uint32_t)(t->s[k].shift - 32) << 25;
	}
}

typedef uint32_t u32x4 __attribute__((vector_size(16)));

#if defined(__x86_64__) && defined(__GNUC__)
typedef uint32_t u32x8 __attribute__((vector_size(32)));

/* The same, eight slots a store (the tables of 16 classes are 256 KB written per chunk). */
__attribute__((target("avx2"))) static void dtab_build_avx2(alcm_rans_dtab *t,
                                                            const uint32_t *freq, unsigned ntok)
{
	uint32_t start = 0;
	for (unsigned k = 0; k < ntok; k++) {
		uint32_t f = freq[k], v = ((f - 1) << 20) | k, j = 0;
		if (f >= 8) {
			u32x8 e = {v, v + 256, v + 512, v + 768, v + 1024, v + 1280, v + 1536, v + 1792};
			const u32x8 step = {2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048};
			for (; j + 8 <= f; j += 8, e += step)
				memcpy(&t->e[start + j], &e, sizeof(e));
		}
		for (; j < f; j++)
			t->e[start + j] = v + (j << 8);
		start += f;
	}
}
#endif

void alcm_rans_dtab_build(alcm_rans_dtab *t, const uint32_t *freq, unsigned ntok)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx2")) {
		dtab_build_avx2(t, freq, ntok);
		return;
	}
#endif
	uint32_t start = 0;
	for (unsigned k = 0; k < ntok; k++) {
		uint32_t f = freq[k], v = ((f - 1) << 20) | k, j = 0;
		/* j << 8 stays under 2^20, so adding it is the OR; four slots a store. */
		if (f >= 4) {
			u32x4 e = {v, v + 256, v + 512, v + 768}, step = {1024, 1024, 1024, 1024};
			for (; j + 4 <= f; j += 4, e += step)
				memcpy(&t->e[start + j], &e, sizeof(e));
		}
		for (; j < f; j++)
			t->e[start + j] = v + (j << 8);
		start += f;
	}
}

/* ---- encoder ------------------------------------------------------------------------------ */

/* One encoding step. Branch-free: the word is stored whether or not it is emitted (the
 * buffer has room for one per token), and the pointer moves only when it is. */
static inline void enc_put(uint32_t *x, uint8_t **p, const alcm_rans_esym *s)
{
	uint32_t v = *x;
	uint32_t c = (uint64_t)v >= s->x_max;
	alcm_store16(*p - 2, (uint16_t)v);
	*p -= 2 * c;
	v >>= 16 * c;
	uint32_t q = (uint32_t)(((uint64_t)v * s->rcp) >> s->shift);
	*x = v + s->bias + q * s->cmpl;
}

#if defined(__x86_64__) && defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RANS_AVX2_ENC 1
#include <immintrin.h>

/* For an emitting mask m of 8 lanes: the emitting lanes, in increasing order, at the top
 * positions of a vector (the rest 0), so that one 16-byte store ending at the write
 * pointer puts their words where the portable loop would. */
static uint32_t emit_tab[256][8];
static void emit_init(void)
{
	for (unsigned m = 0; m < 256; m++) {
		unsigned c = (unsigned)__builtin_popcount(m), r = 0;
		for (unsigned k = 0; k < 8; k++)
			emit_tab[m][k] = 0;
		for (unsigned k = 0; k < 8; k++)
			if (m & (1u << k))
				emit_tab[m][8 - c + r++] = k;
	}
}
/* Built once, by whichever thread comes first (pthread_once: no two threads fill it). */
static const uint32_t *emit_lut(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, emit_init);
	return &emit_tab[0][0];
}

/* Whole groups of 8 V tokens [0, n) (8 V lanes), last group first, 8 lanes per register: the
 * same arithmetic and word order as enc_put(). pk: the first table's packed entries; a
 * class's table is sizeof(alcm_rans_etab) bytes further. */
__attribute__((target("avx2"), always_inline)) static inline void
encode_avx2_v(uint32_t *x, uint8_t **pp, const uint8_t *tok, const uint8_t *cls, size_t n,
              const uint32_t *pk, const int V)
{
	const uint32_t *lut = emit_lut();
	uint8_t *p = *pp;
	__m256i X[4];
	for (int v = 0; v < V; v++)
		X[v] = _mm256_loadu_si256((const __m256i *)(void *)(x + 8 * v));
	const __m256i m16 = _mm256_set1_epi32(0xffff), m13 = _mm256_set1_epi32(0x1fff);
	const __m256i m12 = _mm256_set1_epi32(0xfff), tot = _mm256_set1_epi32(ALCM_RANS_TOTAL);
	const __m256i lo32 = _mm256_set1_epi64x(0xffffffffll), s32 = _mm256_set1_epi64x(32);
	for (size_t i = n; i;) {
		i -= 8 * (size_t)V;
		for (int v = V - 1; v >= 0; v--) {
			/* The eight entries by scalar loads (two gathers took longer), then their
			 * reciprocals and packed words apart. */
			const uint8_t *tp = tok + i + 8 * v, *cp = cls ? cls + i + 8 * v : NULL;
			const uint8_t *e8[8];
			for (int u = 0; u < 8; u++)
				e8[u] = (const uint8_t *)pk + 8 * (size_t)tp[u] +
				        (cls ? sizeof(alcm_rans_etab) * (size_t)cp[u] : 0);
			__m128i q0 = _mm_loadl_epi64((const __m128i *)(const void *)e8[0]);
			__m128i q1 = _mm_loadl_epi64((const __m128i *)(const void *)e8[2]);
			__m128i q2 = _mm_loadl_epi64((const __m128i *)(const void *)e8[4]);
			__m128i q3 = _mm_loadl_epi64((const __m128i *)(const void *)e8[6]);
			q0 = _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(q0), (const double *)(const void *)e8[1]));
			q1 = _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(q1), (const double *)(const void *)e8[3]));
			q2 = _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(q2), (const double *)(const void *)e8[5]));
			q3 = _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(q3), (const double *)(const void *)e8[7]));
			/* lo = entries 0 1 4 5 (64-bit), hi = 2 3 6 7; dwords split by parity. */
			__m256i lo = _mm256_set_m128i(q2, q0), hi = _mm256_set_m128i(q3, q1);
			__m256i rcp = _mm256_castps_si256(_mm256_shuffle_ps(
				_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), _MM_SHUFFLE(2, 0, 2, 0)));
			__m256i b = _mm256_castps_si256(_mm256_shuffle_ps(
				_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), _MM_SHUFFLE(3, 1, 3, 1)));
			__m256i bias = _mm256_and_si256(b, m13);
			__m256i cmpl = _mm256_and_si256(_mm256_srli_epi32(b, 13), m12);
			__m256i sh = _mm256_srli_epi32(b, 25);
			__m256i f = _mm256_sub_epi32(tot, cmpl);
			__m256i x0 = X[v];
			/* Emit where x >= f * 2^19. */
			__m256i emit = _mm256_cmpgt_epi32(_mm256_srli_epi32(x0, 19),
			                                  _mm256_sub_epi32(f, _mm256_set1_epi32(1)));
			unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(emit));
			__m256i w = _mm256_permutevar8x32_epi32(
				_mm256_and_si256(x0, m16),
				_mm256_loadu_si256((const __m256i *)(const void *)(lut + 8 * m)));
			__m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
			_mm_storeu_si128((__m128i *)(void *)(p - 16), w16);
			p -= 2 * (unsigned)__builtin_popcount(m);
			x0 = _mm256_blendv_epi8(x0, _mm256_srli_epi32(x0, 16), emit);
			/* q = (x * rcp) >> (32 + sh), lanes by parity. */
			__m256i pe = _mm256_mul_epu32(x0, rcp);
			__m256i po = _mm256_mul_epu32(_mm256_srli_epi64(x0, 32), _mm256_srli_epi64(rcp, 32));
			__m256i qe = _mm256_srlv_epi64(pe, _mm256_add_epi64(_mm256_and_si256(sh, lo32), s32));
			__m256i qo = _mm256_srlv_epi64(po, _mm256_add_epi64(_mm256_srli_epi64(sh, 32), s32));
			__m256i q = _mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0xaa);
			X[v] = _mm256_add_epi32(_mm256_add_epi32(x0, bias), _mm256_mullo_epi32(q, cmpl));
		}
	}
	for (int v = 0; v < V; v++)
		_mm256_storeu_si256((__m256i *)(void *)(x + 8 * v), X[v]);
	*pp = p;
}

__attribute__((target("avx2"))) static void encode_avx2(uint32_t *x, uint8_t **pp,
                                                          const uint8_t *tok,
                                                          const uint8_t *cls, size_t n,
                                                          const uint32_t *pk, unsigned lanes)
{
	switch (lanes) {
	case 8:
		encode_avx2_v(x, pp, tok, cls, n, pk, 1);
		break;
	case 16:
		encode_avx2_v(x, pp, tok, cls, n, pk, 2);
		break;
	case 24:
		encode_avx2_v(x, pp, tok, cls, n, pk, 3);
		break;
	default:
		encode_avx2_v(x, pp, tok, cls, n, pk, 4);
	}
}
#endif

size_t alcm_rans_encode_lanes(uint8_t *out, size_t cap, const uint8_t *tok, const uint8_t *cls,
                              size_t n, const alcm_rans_etab *tabs, unsigned lanes)
{
	/* Words are written backwards from the end of out, then moved behind the states;
	 * little-endian 16-bit words throughout. */
	uint8_t *end = out + cap, *p = end;
	uint32_t x[ALCM_RANS_LANES];
	for (unsigned j = 0; j < ALCM_RANS_LANES; j++)
		x[j] = ALCM_RANS_L;
	size_t i = n;
	if (lanes % 8) {
		/* Fewer states for short chunks (spec 6.5.14), not a multiple of 8: the portable
		 * loop only. */
		while (i) {
			i--;
			enc_put(&x[i % lanes], &p, &tabs[cls ? cls[i] : 0].s[tok[i]]);
		}
		size_t bytes = (size_t)(end - p);
		memmove(out + 4 * lanes, p, bytes);
		for (unsigned j = 0; j < lanes; j++)
			alcm_store32(out + 4 * j, x[j]);
		return 4 * lanes + bytes;
	}
	/* The last partial group, then whole groups of `lanes`, each lane in reverse order. */
	while (i % lanes) {
		i--;
		enc_put(&x[i % lanes], &p, &tabs[cls ? cls[i] : 0].s[tok[i]]);
	}
#ifdef RANS_AVX2_ENC
	if (i && !alcm_rans_scalar_only && __builtin_cpu_supports("avx2")) {
		encode_avx2(x, &p, tok, cls, i, &tabs[0].pk[0][0], lanes);
		i = 0;
	}
#endif
	if (cls) {
		while (i) {
			i -= lanes;
			for (unsigned j = lanes; j-- > 0;)
				enc_put(&x[j], &p, &tabs[cls[i + j]].s[tok[i + j]]);
		}
	} else {
		const alcm_rans_esym *s = tabs[0].s;
		while (i) {
			i -= lanes;
			for (unsigned j = lanes; j-- > 0;)
				enc_put(&x[j], &p, &s[tok[i + j]]);
		}
	}
	size_t bytes = (size_t)(end - p);
	memmove(out + 4 * lanes, p, bytes);
	for (unsigned j = 0; j < lanes; j++)
		alcm_store32(out + 4 * j, x[j]);
	return 4 * lanes + bytes;
}

size_t alcm_rans_encode(uint8_t *out, size_t cap, const uint8_t *tok, const uint8_t *cls,
                        size_t n, const alcm_rans_etab *tabs)
{
	return alcm_rans_encode_lanes(out, cap, tok, cls, n, tabs, ALCM_RANS_LANES);
}

/* ---- decoder ------------------------------------------------------------------------------ */

/* One decoding step of state x with table entry e: then, if x fell under L, one 16-bit word
 * is shifted in. Branch-free: the renormalisation is taken about as often as not, and a
 * mispredicted branch costs more than the whole step. */
#if defined(__x86_64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RANS_RENORM(x, p)                                                                  \
	__asm__("movzwl (%0), %%eax\n\t"                                                  \
	        "mov %1, %%edx\n\t"                                                       \
	        "shl $16, %%edx\n\t"                                                      \
	        "or %%eax, %%edx\n\t"                                                     \
	        "cmp $0x8000, %1\n\t"                                                    \
	        "cmovb %%edx, %1\n\t"                                                     \
	        "lea 2(%0), %%rax\n\t"                                                    \
	        "cmovb %%rax, %0\n\t"                                                     \
	        : "=r"(p), "=r"(x)                                                        \
	        : "0"(p), "1"(x)                                                          \
	        : "eax", "edx", "cc")
#else
#define RANS_RENORM(x, p)                                                                  \
	do {                                                                               \
		uint32_t y_ = ((x) << 16) | alcm_load16(p), c_ = (x) < ALCM_RANS_L;        \
		uint32_t m_ = 0u - c_;                                                     \
		(x) = ((x) & ~m_) | (y_ & m_);                                             \
		(p) += 2 * c_;                                                             \
	} while (0)
#endif

static inline uint32_t dec_step(uint32_t x, uint32_t e)
{
	return ((e >> 20) + 1) * (x >> ALCM_RANS_BITS) + ((e >> 8) & (ALCM_RANS_TOTAL - 1));
}

int alcm_rans_scalar_only = 0;

#if defined(__x86_64__) && defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RANS_AVX2 1
#include <immintrin.h>

/* Lane k of a group of 8 takes the next word if bit k of the mask is set: the rank of k
 * among the set bits, for every mask. */
static uint32_t renorm_tab[256][8];
static void renorm_init(void)
{
	for (unsigned m = 0; m < 256; m++)
		for (unsigned k = 0; k < 8; k++)
			renorm_tab[m][k] = (uint32_t)__builtin_popcount(m & ((1u << k) - 1));
}
static const uint32_t *renorm_lut(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, renorm_init);
	return &renorm_tab[0][0];
}

/* Whole groups of 8 V tokens (V states' vectors of 8: 8 V lanes), 8 lanes per AVX2 register,
 * while 16 V bytes of words are left: the same steps and the same word order as the scalar
 * loop. @return tokens done. */
__attribute__((target("avx2"), always_inline)) static inline size_t
decode_avx2_v(uint32_t *x, const uint8_t **pp, const uint8_t *end, uint8_t *tok,
              const uint8_t *cls, size_t n, const alcm_rans_dtab *tabs, const int V)
{
	const uint32_t *lut = renorm_lut();
	const int *base = (const int *)tabs[0].e;
	const uint8_t *p = *pp;
	const size_t G = 8 * (size_t)V;
	__m256i X[4];
	for (int v = 0; v < V; v++)
		X[v] = _mm256_loadu_si256((const __m256i *)(void *)(x + 8 * v));
	const __m256i m12 = _mm256_set1_epi32(ALCM_RANS_TOTAL - 1), one = _mm256_set1_epi32(1);
	const __m256i L = _mm256_set1_epi32(ALCM_RANS_L), bmask = _mm256_set1_epi32(0xff);
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	const __m256i low8 = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	                                      -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
	                                      -1, -1, -1, -1);
	const __m256i pair = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
	size_t i = 0;
	for (; i + G <= n && (size_t)(end - p) >= 2 * G; i += G) {
		__m256i T[4];
		for (int v = 0; v < V; v++) {
			__m256i idx = _mm256_and_si256(X[v], m12);
			if (cls) {
				__m128i c8 = _mm_loadl_epi64((const __m128i *)(const void *)(cls + i + 8 * v));
				idx = _mm256_add_epi32(idx, _mm256_slli_epi32(_mm256_cvtepu8_epi32(c8),
				                                              ALCM_RANS_BITS));
			}
			__m256i e = _mm256_i32gather_epi32(base, idx, 4);
			__m256i f = _mm256_add_epi32(_mm256_srli_epi32(e, 20), one);
			__m256i off = _mm256_and_si256(_mm256_srli_epi32(e, 8), m12);
			__m256i y = _mm256_add_epi32(
				_mm256_mullo_epi32(f, _mm256_srli_epi32(X[v], ALCM_RANS_BITS)), off);
			__m256i lt = _mm256_cmpgt_epi32(L, y);
			unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(lt));
			__m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
			w = _mm256_permutevar8x32_epi32(
				w, _mm256_loadu_si256((const __m256i *)(const void *)(lut + 8 * m)));
			__m256i ys = _mm256_or_si256(_mm256_slli_epi32(y, 16), w);
			X[v] = _mm256_blendv_epi8(y, ys, lt);
			p += 2 * (unsigned)__builtin_popcount(m);
			T[v] = _mm256_and_si256(e, bmask);
		}
		if (V == 4) {
			__m256i a = _mm256_packus_epi32(T[0], T[1]), b = _mm256_packus_epi32(T[2], T[3]);
			__m256i c = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order);
			_mm256_storeu_si256((__m256i *)(void *)(tok + i), c);
		} else {
			/* Byte 0 of each lane's entry, the two halves' four bytes brought together. */
			for (int v = 0; v < V; v++) {
				__m256i c = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(T[v], low8), pair);
				_mm_storel_epi64((__m128i *)(void *)(tok + i + 8 * v), _mm256_castsi256_si128(c));
			}
		}
	}
	for (int v = 0; v < V; v++)
		_mm256_storeu_si256((__m256i *)(void *)(x + 8 * v), X[v]);
	*pp = p;
	return i;
}

__attribute__((target("avx2"))) static size_t decode_avx2(uint32_t *x, const uint8_t **pp,
                                                          const uint8_t *end, uint8_t *tok,
                                                          const uint8_t *cls, size_t n,
                                                          const alcm_rans_dtab *tabs,
                                                          unsigned lanes)
{
	switch (lanes) {
	case 16:
		return decode_avx2_v(x, pp, end, tok, cls, n, tabs, 2);
	case 24:
		return decode_avx2_v(x, pp, end, tok, cls, n, tabs, 3);
	default:
		return decode_avx2_v(x, pp, end, tok, cls, n, tabs, 4);
	}
}
#endif

/* Whole groups of `lanes` tokens, portable, while 2 * lanes bytes of words are left (each
 * step reads at most one word). @return tokens done. */
static size_t decode_groups(uint32_t *x, const uint8_t **pp, const uint8_t *end, uint8_t *tok,
                            const uint8_t *cls, size_t n, const alcm_rans_dtab *tabs,
                            unsigned lanes)
{
	const uint8_t *p = *pp;
	size_t i = 0;
	for (; i + lanes <= n && (size_t)(end - p) >= 2 * (size_t)lanes; i += lanes)
		for (unsigned j = 0; j < lanes; j++) {
			uint32_t v = x[j];
			const uint32_t *t = tabs[cls ? cls[i + j] : 0].e;
			uint32_t e = t[v & (ALCM_RANS_TOTAL - 1)];
			tok[i + j] = (uint8_t)e;
			v = dec_step(v, e);
			RANS_RENORM(v, p);
			x[j] = v;
		}
	*pp = p;
	return i;
}

/* lanes: a multiple of 8, at most 32. One register of 8 states decodes slower than the
 * portable loop (its steps wait on each other's gathers: 470 against 630 MB/s of tokens),
 * two about 1.4 times as fast as it, four 2.4 times. */
static size_t run_groups(uint32_t *x, const uint8_t **pp, const uint8_t *end, uint8_t *tok,
                         const uint8_t *cls, size_t n, const alcm_rans_dtab *tabs,
                         unsigned lanes)
{
#ifdef RANS_AVX2
	if (lanes >= 16 && !alcm_rans_scalar_only && __builtin_cpu_supports("avx2"))
		return decode_avx2(x, pp, end, tok, cls, n, tabs, lanes);
#endif
	return decode_groups(x, pp, end, tok, cls, n, tabs, lanes);
}

int alcm_rans_decode_lanes(uint8_t *tok, const uint8_t *cls, size_t n,
                           const alcm_rans_dtab *tabs, const uint8_t *in, size_t len,
                           unsigned lanes)
{
	if (lanes < 1 || lanes > ALCM_RANS_LANES || len < 4 * lanes || (len & 1))
		return ALCM_E_CORRUPT;
	uint32_t x[ALCM_RANS_LANES];
	for (unsigned j = 0; j < lanes; j++) {
		x[j] = alcm_load32(in + 4 * j);
		if (x[j] < ALCM_RANS_L || x[j] >= 0x80000000u)
			return ALCM_E_CORRUPT; /* a state outside [L, 2^31) */
	}
	const uint8_t *p = in + 4 * lanes, *end = in + len;
	/* Whole groups for 8, 16, 24 or 32 lanes; the tail loop alone for others. */
	const unsigned G = lanes % 8 ? 0 : lanes;
	size_t i = G ? run_groups(x, &p, end, tok, cls, n, tabs, G) : 0;
	/* The last words, copied into a buffer with 2 G zero bytes of slack, so that whole
	 * groups keep their fast loop: a group reads at most 2 G bytes, and one that reads past
	 * the real words (a damaged stream) is caught below. */
	uint8_t pad[4 * ALCM_RANS_LANES];
	size_t rest = (size_t)(end - p);
	if (G && i + G <= n && rest < 2 * (size_t)G) {
		memset(pad, 0, sizeof(pad));
		memcpy(pad, p, rest);
		const uint8_t *q = pad, *qend = pad + rest;
		while (i + G <= n && q <= qend) {
			/* end = q + 2 G: the group loop runs exactly one group per call. */
			size_t k = run_groups(x, &q, q + 2 * (size_t)G, tok + i, cls ? cls + i : NULL, G,
			                      tabs, G);
			i += k;
		}
		if (q > qend)
			return ALCM_E_CORRUPT;
		p += q - pad;
	}
	/* The tail (or all of a stream of fewer lanes), checking every word. */
	for (; i < n; i++) {
		unsigned j = (unsigned)(i % lanes);
		uint32_t e = tabs[cls ? cls[i] : 0].e[x[j] & (ALCM_RANS_TOTAL - 1)];
		tok[i] = (uint8_t)e;
		x[j] = dec_step(x[j], e);
		if (x[j] < ALCM_RANS_L) {
			if (end - p < 2)
				return ALCM_E_CORRUPT;
			x[j] = (x[j] << 16) | alcm_load16(p);
			p += 2;
		}
	}
	if (p != end)
		return ALCM_E_CORRUPT;
	for (unsigned j = 0; j < lanes; j++)
		if (x[j] != ALCM_RANS_L)
			return ALCM_E_CORRUPT;
	return ALCM_OK;
}

int alcm_rans_decode(uint8_t *tok, const uint8_t *cls, size_t n, const alcm_rans_dtab *tabs,
                     const uint8_t *in, size_t len)
{
	return alcm_rans_decode_lanes(tok, cls, n, tabs, in, len, ALCM_RANS_LANES);
}

int alcm_rans_decode_search_lanes(uint8_t *tok, const uint8_t *cls, size_t n,
                                  const uint16_t (*cum)[ALCM_RANS_MAX_TOKENS + 1],
                                  const unsigned *ntok, const uint8_t *in, size_t len,
                                  unsigned lanes)
{
	if (lanes < 1 || lanes > ALCM_RANS_LANES || len < 4 * lanes || (len & 1))
		return ALCM_E_CORRUPT;
	uint32_t x[ALCM_RANS_LANES];
	for (unsigned j = 0; j < lanes; j++) {
		x[j] = alcm_load32(in + 4 * j);
		if (x[j] < ALCM_RANS_L || x[j] >= 0x80000000u)
			return ALCM_E_CORRUPT;
	}
	const uint8_t *p = in + 4 * lanes, *end = in + len;
	for (size_t i = 0; i < n; i++) {
		unsigned j = (unsigned)(i % lanes), k = cls ? cls[i] : 0;
		const uint16_t *c = cum[k];
		uint32_t r = x[j] & (ALCM_RANS_TOTAL - 1);
		/* c[lo] <= r < c[hi]: ends on the token whose slots hold r (its frequency > 0). */
		unsigned lo = 0, hi = ntok[k];
		while (hi - lo > 1) {
			unsigned mid = (lo + hi) / 2;
			if (c[mid] <= r)
				lo = mid;
			else
				hi = mid;
		}
		tok[i] = (uint8_t)lo;
		x[j] = (uint32_t)(c[lo + 1] - c[lo]) * (x[j] >> ALCM_RANS_BITS) + r - c[lo];
		if (x[j] < ALCM_RANS_L) {
			if (end - p < 2)
				return ALCM_E_CORRUPT;
			x[j] = (x[j] << 16) | alcm_load16(p);
			p += 2;
		}
	}
	if (p != end)
		return ALCM_E_CORRUPT;
	for (unsigned j = 0; j < lanes; j++)
		if (x[j] != ALCM_RANS_L)
			return ALCM_E_CORRUPT;
	return ALCM_OK;
}

int alcm_rans_decode_search(uint8_t *tok, const uint8_t *cls, size_t n,
                            const uint16_t (*cum)[ALCM_RANS_MAX_TOKENS + 1], const unsigned *ntok,
                            const uint8_t *in, size_t len)
{
	return alcm_rans_decode_search_lanes(tok, cls, n, cum, ntok, in, len, ALCM_RANS_LANES);
}
