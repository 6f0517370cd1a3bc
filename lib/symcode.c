/*
 * The modelled symbol coding of QDAT chunks (spec 6.5.6 to 6.5.9): symbols become tokens (a
 * hybrid alphabet: small symbols as themselves, larger ones as an exponent and a few top
 * bits with the rest raw; or the index of the symbol in a palette of those that occur), the
 * element's channel picks one of up to 16 static token tables, and 32 interleaved rANS
 * states code the tokens.
 */
#include "alloc_internal.h"
#include "symcode_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

/* The encoder's work arrays, one slot each, kept with the coder from chunk to chunk and grown
 * only when a chunk needs more: allocating them per chunk cost page faults and zeroing
 * (model_refine's histograms alone: up to 4 MB a chunk). */
enum {
	SS_HIST, SS_HIST4, SS_COST, SS_NZT, SS_CNT, SS_FREQ, SS_ETAB, SS_RS,
	SS_RH, SS_RCL, SS_RLP, SS_RCC, SS_RPT, SS_ROFF, SS_RPT1, SS_ROFF1, SS_RGRP, SS_RPOS,
	SS_BSUM, SS_BLEN,
	SS_SUM, SS_SUMCNT = SS_SUM + ALCM_QP_AXES, SS_MEAN = SS_SUMCNT + ALCM_QP_AXES,
	SS_LEV = SS_MEAN + ALCM_QP_AXES, /* two per candidate model */
	SS_LH = SS_LEV + 2 * (ALCM_QP_AXES + 2), /* one per candidate model (refined) */
	SS_SLOTS = SS_LH + ALCM_QP_AXES + 2
};

struct alcm_symstate {
	alcm_rans_dtab *dt; /* ALCM_SYM_MAX_CLASSES decoder tables, made on first decode */
	size_t dtcap;
	int kind; /* the coder's block cache (alcm_coder_block_kind) */
	void *buf[SS_SLOTS];
	size_t cap[SS_SLOTS];
	alcm_buf tw, bw; /* the encoder's bit streams (tables, raw bits) */
};

void alcm_symstate_free(const alcm_allocator *a, alcm_symstate *s)
{
	if (!s)
		return;
	alcm_block_give_kind(a, s->kind, s->dt, s->dtcap);
	for (unsigned k = 0; k < SS_SLOTS; k++)
		alcm_block_give_kind(a, s->kind, s->buf[k], s->cap[k]);
	alcm_buf_free(&s->tw);
	alcm_buf_free(&s->bw);
	alcm_mem_free(a, s);
}

/* The coder's state, made on first use. */
static alcm_symstate *symstate(alcm_coder *c)
{
	alcm_symstate **ss = alcm_coder_symstate(c);
	const alcm_allocator *a = alcm_coder_alloc(c);
	if (!*ss && (*ss = alcm_mem_calloc(a, 1, sizeof(alcm_symstate)))) {
		(*ss)->tw.a = a;
		(*ss)->bw.a = a;
		(*ss)->kind = alcm_coder_block_kind(c);
		(*ss)->tw.cache = (*ss)->bw.cache = 1 + (*ss)->kind;
	}
	return *ss;
}

/* Work array `slot` of at least size bytes (contents undefined), or NULL. */
static void *ss_get(alcm_symstate *s, const alcm_allocator *a, unsigned slot, size_t size)
{
	size = size ? size : 1;
	if (size > s->cap[slot]) {
		alcm_block_give_kind(a, s->kind, s->buf[slot], s->cap[slot]);
		s->buf[slot] = alcm_block_take_kind(a, s->kind, size, &s->cap[slot]);
	}
	return s->buf[slot];
}

#define MIN(a, b) ((a) < (b) ? (a) : (b))

int alcm_sym_avx512 = 1;
int alcm_sym_refine_all = 0;
_Atomic unsigned long alcm_sym_refine_stops = 0;
int alcm_sym_rows_alike = 1;

/* ---- tokens (spec 6.5.7) ------------------------------------------------------------------ */

#define TOK_PALETTE 0x40 /* token byte flag: tokens index a palette of symbols */

/* Tokens of configuration (s, m): 2^s direct symbols, then 2^m tokens per power of two. */
static unsigned tok_count(unsigned s, unsigned m)
{
	return s == 8 ? 256 : (1u << s) + (31 - s) * (1u << m);
}

static int tok_valid(unsigned s, unsigned m)
{
	return s <= 8 && m <= 3 && m <= s && (s < 8 || m == 0) && tok_count(s, m) <= 256;
}

static inline unsigned tok_of(uint32_t z, unsigned s, unsigned m, unsigned *nb)
{
	if (z < (1u << s)) {
		*nb = 0;
		return z;
	}
	unsigned e = 31 - (unsigned)__builtin_clz(z);
	*nb = e - m;
	return (1u << s) + ((e - s) << m) + ((z >> (e - m)) & ((1u << m) - 1));
}

/* Tokens of sym[0..n) in configuration (s, m), into tok; lut: those of symbols under 256. */
static void tokens_portable(uint8_t *restrict tok, const uint32_t *restrict sym, uint64_t n,
                            unsigned s, unsigned m, const uint8_t *lut)
{
	for (uint64_t k = 0; k < n; k++) {
		uint32_t z = sym[k];
		unsigned nb;
		tok[k] = (uint8_t)(z < 256 ? lut[z] : tok_of(z, s, m, &nb));
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* tok_of() of eight symbols under 2^24, whose conversion to float is exact and so gives
 * their exponent. */
__attribute__((target("avx2"))) static inline __m256i tokens8(__m256i z, __m256i vs, __m256i vm,
                                                              __m256i first, __m256i low)
{
	__m256i e = _mm256_sub_epi32(
		_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(z)), 23), _mm256_set1_epi32(127));
	/* Direct symbols (under 2^s) are their own token; for them the shifts below are out
	 * of range, which AVX2 defines (0), and the blend drops them. */
	__m256i top = _mm256_and_si256(_mm256_srlv_epi32(z, _mm256_sub_epi32(e, vm)), low);
	__m256i t = _mm256_add_epi32(_mm256_add_epi32(first, _mm256_sllv_epi32(_mm256_sub_epi32(e, vs), vm)),
	                             top);
	return _mm256_blendv_epi8(t, z, _mm256_cmpgt_epi32(first, z));
}

/* Whole groups of 16 symbols under 2^24; @return how many were done (the caller does the
 * group that stopped them and goes on). */
__attribute__((target("avx2"))) static uint64_t tokens_avx2(uint8_t *tok, const uint32_t *sym,
                                                            uint64_t n, unsigned s, unsigned m)
{
	const __m256i vs = _mm256_set1_epi32((int)s), vm = _mm256_set1_epi32((int)m);
	const __m256i first = _mm256_set1_epi32(1 << s), low = _mm256_set1_epi32((1 << m) - 1);
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	uint64_t k = 0;
	for (; k + 16 <= n; k += 16) {
		__m256i z0 = _mm256_loadu_si256((const __m256i *)(const void *)(sym + k));
		__m256i z1 = _mm256_loadu_si256((const __m256i *)(const void *)(sym + k + 8));
		__m256i big = _mm256_srli_epi32(_mm256_or_si256(z0, z1), 24);
		if (!_mm256_testz_si256(big, big))
			break;
		__m256i t0 = tokens8(z0, vs, vm, first, low), t1 = tokens8(z1, vs, vm, first, low);
		/* Tokens are under 256: two packs, then the dwords back in order. */
		__m256i p16 = _mm256_packus_epi32(t0, t1);
		__m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p16, p16), order);
		_mm_storeu_si128((__m128i *)(void *)(tok + k), _mm256_castsi256_si128(p8));
	}
	return k;
}
#endif

/* The tokens of sym[0..n) in configuration (s, m): the AVX2 loop where the CPU has it (the
 * same tokens), the portable one where a symbol is 2^24 or more. */
static void tokens(uint8_t *tok, const uint32_t *sym, uint64_t n, unsigned s, unsigned m)
{
	uint8_t lut[256];
	for (unsigned z = 0; z < 256; z++) {
		unsigned nb;
		lut[z] = (uint8_t)tok_of(z, s, m, &nb);
	}
#if defined(__x86_64__) && defined(__GNUC__)
	if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx2")) {
		uint64_t k = 0;
		while (k < n) {
			k += tokens_avx2(tok + k, sym + k, n - k, s, m);
			uint64_t r = MIN(16, n - k);
			tokens_portable(tok + k, sym + k, r, s, m, lut);
			k += r;
		}
		return;
	}
#endif
	tokens_portable(tok, sym, n, s, m, lut);
}

/* The symbol a token starts at and the raw bits that follow it. */
static void tok_tables(unsigned s, unsigned m, uint32_t *base, uint8_t *nb)
{
	unsigned n = tok_count(s, m);
	for (unsigned t = 0; t < n; t++) {
		if (t < (1u << s)) {
			base[t] = t;
			nb[t] = 0;
			continue;
		}
		unsigned k = t - (1u << s), e = s + (k >> m), h = k & ((1u << m) - 1);
		nb[t] = (uint8_t)(e - m);
		base[t] = ((1u << m) + h) << (e - m);
	}
}

/* ---- channel axes (spec 6.5.6) ------------------------------------------------------------- */

/* Element g of a chunk is in entry ((g / run) - (first / run)) mod count of an axis's level
 * list, which has min(count, blocks) entries. */
typedef struct axis {
	uint64_t run, count, entries;
	uint64_t r, j; /* iteration: position in the current run, entry */
} axis;

static int axis_init(axis *x, uint64_t run, uint64_t count, uint64_t first, uint64_t elems)
{
	if (run < 1 || count < 1 || elems < 1)
		return ALCM_E_CORRUPT;
	uint64_t blocks = (first + elems - 1) / run - first / run + 1;
	x->run = run;
	x->count = count;
	x->entries = blocks < count ? blocks : count;
	x->r = first % run;
	x->j = 0;
	return ALCM_OK;
}

static inline void axis_next(axis *x)
{
	if (++x->r == x->run) {
		x->r = 0;
		if (++x->j == x->entries)
			x->j = 0;
	}
}

/* Skips len elements, len no more than what is left of the current run. */
static inline void axis_skip(axis *x, uint64_t len)
{
	x->r += len;
	if (x->r == x->run) {
		x->r = 0;
		if (++x->j == x->entries)
			x->j = 0;
	}
}

/* The axis positioned at element i of the chunk (a division: for sampling). */
static axis axis_at(const axis *x0, uint64_t first, uint64_t i)
{
	axis x = *x0;
	uint64_t g = first + i;
	x.r = g % x.run;
	x.j = (g / x.run - first / x.run) % x.count;
	return x;
}

static inline int pruned(const uint8_t *bits, uint64_t i)
{
	return bits && ((bits[i >> 3] >> (i & 7)) & 1);
}

/* c[q] = row[l[q]] for q < m; small: every l[q] under 16. */
static void lookup_portable(uint8_t *restrict c, const uint8_t *restrict l, uint64_t m,
                            const uint8_t *restrict row)
{
	for (uint64_t q = 0; q < m; q++)
		c[q] = row[l[q]];
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same for levels under 16, 32 a step with a byte shuffle. */
__attribute__((target("avx2"))) static void lookup_avx2(uint8_t *c, const uint8_t *l,
                                                        uint64_t m, const uint8_t *row)
{
	const __m256i r = _mm256_broadcastsi128_si256(
		_mm_loadu_si128((const __m128i *)(const void *)row));
	uint64_t q = 0;
	for (; q + 32 <= m; q += 32)
		_mm256_storeu_si256((__m256i *)(void *)(c + q),
		                    _mm256_shuffle_epi8(r, _mm256_loadu_si256(
		                                               (const __m256i *)(const void *)(l + q))));
	lookup_portable(c + q, l + q, m - q, row);
}
#endif

static inline void lookup(uint8_t *c, const uint8_t *l, uint64_t m, const uint8_t *row,
                          int small)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (small && m >= 32 && !alcm_rans_scalar_only && __builtin_cpu_supports("avx2")) {
		lookup_avx2(c, l, m, row);
		return;
	}
#endif
	(void)small;
	lookup_portable(c, l, m, row);
}

/* The class of each token: sc[sum of its element's levels] (sc: 512 entries). Stretches
 * where the levels stay the same are filled at once; a run-1 axis changes every element. */
static void fill_classes(uint8_t *cls, axis *x, unsigned A, uint8_t *const *lev,
                         const uint8_t *sc, const uint8_t *bits, uint64_t elems)
{
	const uint8_t *l0 = lev[0], *l1 = A > 1 ? lev[1] : NULL;
	uint64_t i = 0, si = 0, seen_at[256], *seen = NULL;
	int small1 = 0; /* every column level under 16 */
	if (l1 && !bits && x[1].run == 1) {
		unsigned any = 0;
		for (uint64_t j = 0; j < x[1].entries; j++)
			any |= l1[j];
		small1 = any < 16;
	}
	if (bits) {
		for (; i < elems; i++) {
			if (!pruned(bits, i))
				cls[si++] = sc[l0[x[0].j] + (l1 ? l1[x[1].j] : 0u)];
			axis_next(&x[0]);
			if (l1)
				axis_next(&x[1]);
		}
		return;
	}
	while (i < elems) {
		uint64_t len = MIN(x[0].run - x[0].r, elems - i);
		if (!l1 && x[0].run == 1) {
			/* One entry per element, cycling: one period, then copies of it. */
			uint64_t j = x[0].j, e0 = x[0].entries, k = 0;
			for (; k < e0 && i + k < elems; k++) {
				cls[i + k] = sc[l0[j]];
				j = j + 1 == e0 ? 0 : j + 1;
			}
			for (uint64_t at = i + k; at < elems; at += e0)
				memcpy(cls + at, cls + i, (size_t)MIN(e0, elems - at));
			x[0].j = (x[0].j + (elems - i)) % e0;
			return;
		} else if (!l1) {
			memset(cls + i, sc[l0[x[0].j]], (size_t)len);
		} else if (x[1].run == 1) {
			unsigned lv = l0[x[0].j];
			const uint8_t *row = sc + lv;
			uint64_t j = x[1].j, e1 = x[1].entries;
			/* A whole period of the column axis repeats the last one of the same row
			 * level: copied (the levels of rows take a few values). */
			if (j == 0 && len == e1) {
				if (!seen) {
					seen = seen_at;
					memset(seen_at, 0xff, sizeof(seen_at));
				}
				if (seen[lv] != UINT64_MAX) {
					memcpy(cls + i, cls + seen[lv], (size_t)len);
					axis_skip(&x[0], len);
					i += len;
					continue;
				}
				seen[lv] = i;
			}
			/* Stretches between wraps of the column axis: no test per element. */
			for (uint64_t k = 0; k < len;) {
				uint64_t m = MIN(len - k, e1 - j);
				lookup(cls + i + k, l1 + j, m, row, small1);
				k += m;
				j = j + m == e1 ? 0 : j + m;
			}
			x[1].j = j;
		} else {
			len = MIN(len, x[1].run - x[1].r);
			memset(cls + i, sc[l0[x[0].j] + l1[x[1].j]], (size_t)len);
			axis_skip(&x[1], len);
		}
		axis_skip(&x[0], len);
		i += len;
	}
}

/* ---- bit streams (least significant bit first) --------------------------------------------- */

typedef struct bitw {
	alcm_buf b;
	uint64_t acc;
	unsigned n;
	int st;
} bitw;

static inline void bitw_put(bitw *w, uint32_t v, unsigned n)
{
	w->acc |= (uint64_t)v << w->n;
	w->n += n;
	if (w->n >= 32) {
		uint8_t t[4];
		alcm_store32(t, (uint32_t)w->acc);
		if (!w->st)
			w->st = alcm_buf_put(&w->b, t, 4);
		w->acc >>= 32;
		w->n -= 32;
	}
}

static void bitw_flush(bitw *w)
{
	while (w->n > 0 && !w->st) {
		uint8_t t = (uint8_t)w->acc;
		w->st = alcm_buf_put(&w->b, &t, 1);
		w->acc >>= 8;
		w->n = w->n > 8 ? w->n - 8 : 0;
	}
	w->acc = 0;
}

typedef struct bitr {
	const uint8_t *p, *end;
	uint64_t acc;
	unsigned n;
	int bad; /* read past the end */
} bitr;

/* alcm_load64() as one load on little-endian hosts, always inlined (alcm_load64's byte
 * form was left as a call in the decoder's loops). */
ALCM_ALWAYS_INLINE uint64_t load64(const uint8_t *p)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
#else
	return alcm_load64(p);
#endif
}

ALCM_ALWAYS_INLINE uint32_t bitr_get(bitr *r, unsigned n)
{
	/* Eight bytes at once while eight are left: whole bytes counted, the bits of the next
	 * one (partly loaded) loaded again at the same place by the next refill, so acc holds
	 * only the stream's bits and bitr_done() sees the same state as byte by byte. */
	if (r->n < n && r->end - r->p >= 8) {
		r->acc |= load64(r->p) << r->n;
		r->p += (63 - r->n) >> 3;
		r->n |= 56;
	}
	while (r->n < n) {
		if (r->p == r->end) {
			r->bad = 1;
			r->n += 8;
			continue;
		}
		r->acc |= (uint64_t)*r->p++ << r->n;
		r->n += 8;
	}
	uint32_t v = (uint32_t)(r->acc & ((1ull << n) - 1));
	r->acc >>= n;
	r->n -= n;
	return v;
}

/* Moves r to bit pos after q (a byte inside the stream): the state bitr_get() reading byte
 * by byte would have there, the rest of a partly read byte in acc. */
static void bitr_seek(bitr *r, const uint8_t *q, uint64_t pos)
{
	r->p = q + (pos >> 3);
	r->acc = 0;
	r->n = 0;
	if (pos & 7) {
		r->acc = (uint64_t)*r->p++ >> (pos & 7);
		r->n = 8 - (unsigned)(pos & 7);
	}
}

/* Every bit used, nothing but zero padding left: a stream has one encoding. */
static int bitr_done(const bitr *r)
{
	return !r->bad && r->p == r->end && r->n < 8 && !r->acc;
}

/* Elias gamma code of v >= 1: floor(log2 v) zeros, a one, then the bits under the top one. */
static void gamma_put(bitw *w, uint32_t v)
{
	unsigned k = 31 - (unsigned)__builtin_clz(v);
	bitw_put(w, 1u << k, k + 1);
	if (k)
		bitw_put(w, v & ((1u << k) - 1), k);
}

/* @return the value, or 0 (never valid) for more than max zeros or a stream that ended. */
static uint32_t gamma_get(bitr *r, unsigned max)
{
	/* The zeros counted at once where max + 1 bits are loaded (a test per bit was
	 * mispredicted at about every code); bits of acc above n are the stream's or zero. */
	if (r->n <= max && r->end - r->p >= 8) {
		r->acc |= load64(r->p) << r->n;
		r->p += (63 - r->n) >> 3;
		r->n |= 56;
	}
	if (r->n > max && max < 63) {
		unsigned z = (unsigned)__builtin_ctzll(r->acc | (1ull << (max + 1)));
		if (z > max)
			return 0;
		r->acc >>= z + 1;
		r->n -= z + 1;
		return z ? (1u << z) | bitr_get(r, z) : 1;
	}
	unsigned k = 0;
	while (!bitr_get(r, 1))
		if (++k > max || r->bad)
			return 0;
	return k ? (1u << k) | bitr_get(r, k) : 1;
}

static inline uint32_t zz(int v)
{
	return v < 0 ? (uint32_t)(-2 * v - 1) : (uint32_t)(2 * v);
}

/* ---- token tables (spec 6.5.8) -------------------------------------------------------------- */

/* A frequency is sent as its bit length b (1..12; 0 for an absent token), as the change from
 * the previous one sent, then the 3 bits under its top bit (fewer when b < 4): frequencies
 * are kept to 4 significant bits, which costs about 0.1% in coded size. */
#define FREQ_MANT 3

static unsigned bitlen(uint32_t f)
{
	return f ? 32 - (unsigned)__builtin_clz(f) : 0;
}

/* The nearest frequency (or the next lower, down = 1) that the table code can send. */
static uint32_t freq_round(uint32_t f, int down)
{
	unsigned b = bitlen(f);
	if (b <= FREQ_MANT + 1)
		return f;
	unsigned sh = b - 1 - FREQ_MANT;
	return ((f + (down ? 0 : 1u << (sh - 1))) >> sh) << sh;
}

/* Writes the table of counts cnt[0..ntok) and returns its frequencies in freq (sum 4096). */
static void table_put(bitw *w, const uint64_t *cnt, unsigned ntok, uint32_t *freq)
{
	unsigned last = 0, a = 0;
	int any = 0;
	for (unsigned t = 0; t < ntok; t++) {
		freq[t] = 0;
		if (cnt[t]) {
			last = t;
			any = 1;
		}
	}
	if (!any) {
		/* An unused class still gets a valid table: everything on token 0. */
		freq[0] = ALCM_RANS_TOTAL;
	} else {
		alcm_rans_normalize(cnt, last + 1, freq);
		for (unsigned t = 1; t <= last; t++)
			a = freq[t] > freq[a] ? t : a;
		/* The others rounded to what the code can send, the largest takes the rest; if
		 * rounding up took more than half of it (flat tables of many tokens), they are
		 * rounded down instead, which only gives it more. */
		uint32_t fa = freq[a];
		for (int down = 0; down < 2; down++) {
			uint32_t sum = 0;
			for (unsigned t = 0; t <= last; t++)
				if (t != a)
					sum += freq_round(freq[t], down);
			if (down || sum + fa / 2 + 1 <= ALCM_RANS_TOTAL) {
				for (unsigned t = 0; t <= last; t++)
					if (t != a)
						freq[t] = freq_round(freq[t], down);
				freq[a] = ALCM_RANS_TOTAL - sum;
				break;
			}
		}
	}
	bitw_put(w, last, 8);
	bitw_put(w, a, 8);
	unsigned prev = 0;
	for (unsigned t = 0; t <= last; t++) {
		if (t == a)
			continue;
		unsigned b = bitlen(freq[t]);
		gamma_put(w, zz((int)b - (int)prev) + 1);
		if (b >= 2) {
			unsigned k = MIN(b - 1, FREQ_MANT);
			bitw_put(w, (freq[t] >> (b - 1 - k)) & ((1u << k) - 1), k);
		}
		prev = b;
	}
}

static int table_get(bitr *r, unsigned ntok, uint32_t *freq, unsigned *lastp)
{
	unsigned last = bitr_get(r, 8), a = bitr_get(r, 8);
	if (r->bad || last >= ntok || a > last)
		return ALCM_E_CORRUPT;
	uint32_t sum = 0;
	int prev = 0;
	for (unsigned t = 0; t <= last; t++) {
		if (t == a)
			continue;
		uint32_t g = gamma_get(r, 5);
		if (!g)
			return ALCM_E_CORRUPT;
		uint32_t u = g - 1;
		int b = prev + ((u & 1) ? -(int)((u + 1) / 2) : (int)(u / 2));
		if (b < 0 || b > 12)
			return ALCM_E_CORRUPT;
		uint32_t f = 0;
		if (b == 1) {
			f = 1;
		} else if (b >= 2) {
			unsigned k = MIN((unsigned)b - 1, FREQ_MANT);
			f = (1u << (b - 1)) | (bitr_get(r, k) << (b - 1 - k));
		}
		freq[t] = f;
		sum += f;
		prev = b;
	}
	/* The left-out frequency fills the total; the last token listed occurs (one encoding). */
	if (r->bad || sum >= ALCM_RANS_TOTAL || (last != a && freq[last] == 0))
		return ALCM_E_CORRUPT;
	freq[a] = ALCM_RANS_TOTAL - sum;
	*lastp = last;
	return ALCM_OK;
}

/* One table as a whole bit stream (for tests of the table code). */
int alcm_symtab_encode(alcm_buf *out, const uint64_t *cnt, unsigned ntok, uint32_t *freq)
{
	bitw w = {{NULL, 0, 0, out->a, 0}, 0, 0, 0};
	table_put(&w, cnt, ntok, freq);
	bitw_flush(&w);
	int st = w.st ? w.st : alcm_buf_put(out, w.b.p, w.b.len);
	alcm_buf_free(&w.b);
	return st;
}

int alcm_symtab_decode(const uint8_t *p, size_t len, unsigned ntok, uint32_t *freq,
                       unsigned *last)
{
	bitr r = {p, p + len, 0, 0, 0};
	int st = table_get(&r, ntok, freq, last);
	return st ? st : bitr_done(&r) ? ALCM_OK : ALCM_E_CORRUPT;
}

/* Appends the low nb[tok[k]] bits of each sym[k] (tokens under ntok, rawlen bits in all) to
 * w, which is empty:
 * the bytes bitw_put() and bitw_flush() would make, without a branch per symbol. */
static void raw_put(bitw *w, const uint32_t *restrict sym, const uint8_t *restrict tok,
                    uint64_t n, const uint8_t *nb, const uint32_t *cnt, unsigned ntok,
                    uint64_t rawlen)
{
	size_t bytes = (size_t)((rawlen + 7) / 8);
	if ((w->st = alcm_buf_reserve(&w->b, bytes + 8)))
		return;
	uint8_t *restrict o = w->b.p + w->b.len;
	uint32_t mask[ALCM_RANS_MAX_TOKENS];
	/* top: the widest raw field of a token that occurs (cnt: the tokens' counts); t0: the
	 * first token with raw bits (the direct tokens below it have none). */
	unsigned top = 0, t0 = ntok;
	for (unsigned t = 0; t < ntok; t++) {
		mask[t] = (uint32_t)((1ull << nb[t]) - 1);
		top = cnt[t] && nb[t] > top ? nb[t] : top;
		t0 = nb[t] && t < t0 ? t : t0;
	}
	uint64_t acc = 0;
	unsigned used = 0;
	size_t at = 0;
	uint64_t k = 0;
	/* Symbols joined in groups while a group's bits fit 56 (acc keeps at most 7 more): one
	 * step of the chain of shifts per group rather than per symbol. */
	const unsigned g = top <= 14 ? 4 : top <= 28 ? 2 : 1;
	enum { SKIP = 64 };
	while (k < n) {
		/* A block of tokens all below t0 adds no bits (most blocks, where the raw bits
		 * are few): passed over after one vectorised maximum. */
		uint64_t end = n - k >= SKIP ? k + SKIP : n;
		if (end - k == SKIP) {
			uint8_t mx = 0;
			for (unsigned u = 0; u < SKIP; u++)
				mx = tok[k + u] > mx ? tok[k + u] : mx;
			if (mx < t0) {
				k = end;
				continue;
			}
		}
		for (; g > 1 && k + g <= end; k += g) {
			uint64_t v = 0;
			unsigned len = 0;
			for (unsigned u = 0; u < g; u++) {
				unsigned t = tok[k + u];
				v |= (uint64_t)(sym[k + u] & mask[t]) << len;
				len += nb[t];
			}
			acc |= v << used;
			used += len;
			alcm_store64(o + at, acc);
			at += used >> 3;
			acc >>= used & ~7u;
			used &= 7;
		}
		for (; k < end; k++) {
			unsigned t = tok[k];
			acc |= (uint64_t)(sym[k] & mask[t]) << used;
			used += nb[t];
			/* Whole bytes out: at most 7 + 31 bits stay in acc. */
			alcm_store64(o + at, acc);
			at += used >> 3;
			acc >>= used & ~7u;
			used &= 7;
		}
	}
	if (used)
		alcm_store64(o + at, acc);
	w->b.len += bytes;
}

/* ---- encoder: estimates ---------------------------------------------------------------------- */

/* log2 to about 1e-4, for estimates only (choices, never the bytes' meaning): the exponent
 * from the bits, a series for the significand in [sqrt(1/2), sqrt(2)). */
static inline double fast_log2(double x)
{
	uint64_t u;
	memcpy(&u, &x, 8);
	int e = (int)((u >> 52) & 0x7ff) - 1023;
	u = (u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* m in [1, 2) */
	double m;
	memcpy(&m, &u, 8);
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e++;
	}
	double t = (m - 1) / (m + 1), t2 = t * t;
	return (double)e + t * (2.8853900817779268 + t2 * (0.96179669392597560 +
	                        t2 * (0.57707801635558536 + t2 * 0.41219858311113246)));
}

static inline double nlog2n(double n)
{
	return n > 0 ? n * fast_log2(n) : 0;
}

/* nlog2n(c) and fast_log2(c + 1/2) of the small counts c, made once (by whichever thread
 * comes first) with the same functions: the same doubles, without a division each. The
 * encoder calls log_tables_init() before any estimate. */
#define LOG_TAB 4096
static double nlog2n_tab[LOG_TAB], log2h_tab[LOG_TAB];
static void log_tables_fill(void)
{
	for (unsigned c = 0; c < LOG_TAB; c++) {
		nlog2n_tab[c] = nlog2n((double)c);
		log2h_tab[c] = fast_log2((double)c + 0.5);
	}
}
static void log_tables_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, log_tables_fill);
}
static inline double nlog2n_u(uint64_t c)
{
	return c < LOG_TAB ? nlog2n_tab[c] : nlog2n((double)c);
}
static inline double log2h_u(uint64_t c)
{
	return c < LOG_TAB ? log2h_tab[c] : fast_log2((double)c + 0.5);
}

/* Estimated bits of ntok tokens of counts cnt (total n) coded with their own table: their
 * entropy plus the table's bits, the code of 6.5.8 taking about 4.5 bits for a frequency of
 * 8 or more, 2.5 for a smaller one, 1.5 for an absent token inside the range (table bits:
 * 16 and those). One pass; choose_tokens() knows n before its counts (every configuration
 * counts the same symbols). */
static double coded_bits_n(const uint32_t *cnt, unsigned ntok, uint64_t n)
{
	if (!n)
		return 0;
	double s = 0, bits = 16, pending = 0, inv = (double)ALCM_RANS_TOTAL / (double)n;
	for (unsigned t = 0; t < ntok; t++) {
		uint32_t c = cnt[t];
		s += nlog2n_u(c);
		if (!c) {
			pending += 1.5;
			continue;
		}
		bits += pending + ((double)c * inv >= 8 ? 4.5 : 2.5);
		pending = 0;
	}
	return nlog2n_u(n) - s + bits;
}

/* coded_bits_n() of counts whose total is not known yet. */
static double coded_bits(const uint32_t *cnt, unsigned ntok)
{
	uint64_t n = 0;
	for (unsigned t = 0; t < ntok; t++)
		n += cnt[t];
	return coded_bits_n(cnt, ntok, n);
}

/* ---- encoder: the token alphabet ------------------------------------------------------------ */

/* A fine histogram: symbols under 256 as themselves, larger ones by exponent and three top
 * bits, enough to count the tokens of every configuration. */
#define FINE_BINS (256 + 23 * 8)

static inline unsigned fine_bin(uint32_t z)
{
	if (z < 256)
		return z;
	unsigned e = 31 - (unsigned)__builtin_clz(z);
	return 256 + (e - 8) * 8 + ((z >> (e - 3)) & 7);
}

static uint32_t fine_rep(unsigned b)
{
	if (b < 256)
		return b;
	unsigned e = 8 + (b - 256) / 8;
	return (uint32_t)(8 + (b - 256) % 8) << (e - 3);
}

/* The hybrid configuration (s, m) with the fewest estimated bits. Each of the 30
 * configurations walks the non-empty bins only (listed once: their representatives and
 * counts, in bin order, so the same sums in the same order): a 64-value float32 tensor at
 * --max-error 1e-3 spent a third of its pack walking a few hundred bins, most empty, 30
 * times. */
static double choose_tokens(const uint32_t *fine, unsigned *bs, unsigned *bm, double *rawp)
{
	unsigned maxbin = 0, nz = 0;
	uint32_t rep[FINE_BINS], cnt_of[FINE_BINS];
	uint64_t total = 0;
	for (unsigned b = 0; b < FINE_BINS; b++)
		if (fine[b]) {
			maxbin = b;
			rep[nz] = fine_rep(b);
			cnt_of[nz++] = fine[b];
			total += fine[b];
		}
	double best = INFINITY;
	*bs = 4;
	*bm = 3;
	for (unsigned s = 0; s <= 8; s++)
		for (unsigned m = 0; m <= 3; m++) {
			if (!tok_valid(s, m) || (s == 8 && maxbin >= 256))
				continue;
			/* Up to the last bin's token (tok_of() grows with the symbol): the tokens
			 * after it are absent, and add nothing to coded_bits() (see enc.ntok). A
			 * 64-value tensor's chunk spent 51K instructions here clearing and walking
			 * 256 tokens in each of the 30 configurations. */
			unsigned nb, nt = tok_of(fine_rep(maxbin), s, m, &nb) + 1;
			uint32_t cnt[ALCM_RANS_MAX_TOKENS];
			memset(cnt, 0, nt * sizeof(uint32_t));
			double raw = 0;
			for (unsigned k = 0; k < nz; k++) {
				unsigned t = tok_of(rep[k], s, m, &nb);
				cnt[t] += cnt_of[k];
				raw += (double)cnt_of[k] * nb;
			}
			double c = coded_bits_n(cnt, nt, total) + raw;
			if (c < best) {
				best = c;
				*bs = s;
				*bm = m;
				*rawp = raw;
			}
		}
	return best;
}

/* The distinct symbols when there are at most 256, for a palette: those under 256 from their
 * counts small[] (the fine histogram), the others through an open-addressing set (key, slot
 * -> count, then -> palette index) that gives up at the 257th distinct symbol in all. Fills
 * pal (sorted), cnt, and lut (palette index of each symbol under 256). @return their
 * number, 0 if more. */
#define PAL_EMPTY 0xffffffffu
static inline unsigned pal_slot(const uint32_t *key, uint32_t z)
{
	unsigned h = (z * 0x9e3779b1u) >> 23;
	while (key[h] != z && key[h] != PAL_EMPTY)
		h = (h + 1) & 511;
	return h;
}

static unsigned find_palette(const uint32_t *sym, uint64_t n, const uint32_t *small,
                             uint32_t *key, uint32_t *val, uint32_t *pal, uint32_t *cnt,
                             uint8_t *lut)
{
	unsigned used = 0;
	for (unsigned z = 0; z < 256; z++)
		used += small[z] != 0;
	memset(key, 0xff, 512 * sizeof(uint32_t));
	memset(val, 0, 512 * sizeof(uint32_t));
	enum { SKIP = 32 };
	for (uint64_t i = 0; i < n;) {
		/* Blocks of symbols all under 256 (most of them) passed over after one
		 * vectorised OR. */
		uint64_t end = n - i >= SKIP ? i + SKIP : n;
		if (end - i == SKIP) {
			uint32_t any = 0;
			for (unsigned u = 0; u < SKIP; u++)
				any |= sym[i + u];
			if (any < 256) {
				i = end;
				continue;
			}
		}
		for (; i < end; i++) {
			if (sym[i] < 256)
				continue;
			unsigned h = pal_slot(key, sym[i]);
			if (key[h] == PAL_EMPTY) {
				if (++used > 256)
					return 0;
				key[h] = sym[i];
			}
			val[h]++;
		}
	}
	unsigned k = 0;
	for (unsigned z = 0; z < 256; z++)
		if (small[z]) {
			lut[z] = (uint8_t)k;
			cnt[k] = small[z];
			pal[k++] = z;
		}
	unsigned k0 = k;
	for (unsigned h = 0; h < 512; h++)
		if (key[h] != PAL_EMPTY)
			pal[k++] = key[h];
	/* Insertion sort of the symbols from 256 on (those under 256 come first, in order),
	 * then counts in that order, then indices. */
	for (unsigned i = k0 + 1; i < k; i++)
		for (unsigned j = i; j > k0 && pal[j - 1] > pal[j]; j--) {
			uint32_t t = pal[j];
			pal[j] = pal[j - 1];
			pal[j - 1] = t;
		}
	for (unsigned i = k0; i < k; i++) {
		unsigned h = pal_slot(key, pal[i]);
		cnt[i] = val[h];
		val[h] = i;
	}
	return k;
}

/* Bytes of the palette's varints: the first symbol, then each gap minus one. */
static size_t palette_bytes(const uint32_t *pal, unsigned k)
{
	size_t b = 0;
	for (unsigned i = 0; i < k; i++) {
		uint32_t v = i ? pal[i] - pal[i - 1] - 1 : pal[0];
		b += v < 128 ? 1 : v < 16384 ? 2 : v < (1u << 21) ? 3 : v < (1u << 28) ? 4 : 5;
	}
	return b;
}

/* ---- encoder: channel classes ----------------------------------------------------------------- */

#define MAX_LEVELS 32
#define MAX_SUMS (2 * MAX_LEVELS)
#define SAMPLE_BLOCK 1024
#define SAMPLE_BLOCKS 64
/* Models on axes past axis 0 and the last that are refined (the best by estimate): two gave
 * the same bytes on the benchmark's files (tools/bench/entropy.sh) for one more pass. */
#define REFINE_FURTHER 1

/* A candidate model: levels per axis entry, a map from level sums to classes. */
typedef struct model {
	unsigned naxes, ax[2];   /* which of qp's axes */
	unsigned nlev;           /* level sums 0 .. nlev - 1 */
	uint8_t *lev[2];         /* per entry */
	uint8_t map[MAX_SUMS];
	unsigned k;              /* classes */
	double bits;             /* estimated size of the tokens and the model */
	int refined;
	unsigned id;             /* its index among the candidates */
	/* Once refined: its classes' counts over the whole chunk (K x ntok), which are its
	 * level histograms (levels are classes, map the identity); else NULL. */
	const uint32_t *lh;
} model;

typedef struct enc {
	const alcm_allocator *a; /* the coder's: the arena's arrays */
	alcm_symstate *ss;
	const alcm_qparams *qp;
	const uint8_t *bits;
	uint64_t first, elems, nsym;
	uint8_t *tok, *lvl; /* tokens; level sums (work array) */
	/* Tokens the estimates count: those up to the last that occurs in the chunk (the
	 * tokens after it are absent from every histogram, and add nothing to an estimate:
	 * coded_bits() gives the same doubles without them). ntok_all: the
	 * alphabet's, which the refinement's smoothing and its size limits use. */
	unsigned ntok, ntok_all;
	axis ax[ALCM_QP_AXES];
	double (*cost)[MAX_SUMS + 1];
	uint32_t *hist;
	/* The model whose level histograms over the whole chunk hist holds (the last one
	 * counted unsampled and not changed since), or NULL. */
	const model *hist_of;
	uint32_t *hist4; /* 4 x MAX_SUMS * ntok: four histograms filled in turn */
	uint16_t *nzt; /* MAX_SUMS * ntok */
} enc;

/* One chain of merge_levels(): the tokens of the merged levels in the order first seen
 * (tok), their counts (cnt) and n log n (lt) in that order, pos: token -> place (0xffff:
 * not seen). */
#define MERGE_CHAINS 4
typedef struct merge_chain {
	uint16_t pos[ALCM_RANS_MAX_TOKENS];
	uint32_t cnt[ALCM_RANS_MAX_TOKENS];
	double lt[ALCM_RANS_MAX_TOKENS];
	unsigned ns, last;
} merge_chain;

/* Adds count c of token t to chain ch: s loses the token's old n log n and gains its new one
 * (nlog2n(0) = 0 for a token not seen before), as merge_levels() always did. */
ALCM_ALWAYS_INLINE void chain_add(merge_chain *restrict ch, double *restrict s,
                                  uint64_t *restrict n, unsigned t, uint32_t c)
{
	unsigned p = ch->pos[t];
	if (p == 0xffff) {
		p = ch->ns++;
		ch->pos[t] = (uint16_t)p;
		ch->cnt[p] = 0;
		ch->lt[p] = 0;
		ch->last = t > ch->last ? t : ch->last;
	}
	*s -= ch->lt[p];
	ch->cnt[p] += c;
	ch->lt[p] = nlog2n_u(ch->cnt[p]);
	*s += ch->lt[p];
	*n += c;
}

/* The table bits of coded_bits_n() for a chain's counts: 16 + 1.5 per absent token below
 * its last + 4.5 or 2.5 per present one. Every term is a multiple of 1/2 far below 2^52, so
 * the sum is exact whatever its order: the same double as coded_bits_n()'s, without walking
 * the absent tokens (and the counts contiguous: a loop that vectorises). */
static inline int chain_big(uint32_t c, double inv)
{
	return (double)c * inv >= 8;
}

static double chain_table_bits(const merge_chain *ch, uint64_t n)
{
	double inv = n ? (double)ALCM_RANS_TOTAL / (double)n : 0;
	unsigned big = 0;
	/* (double)c * inv >= 8 holds from some count cmin on (the rounded product is monotone
	 * in c): cmin found from 8 / inv and checked with that same product, then the counts
	 * compared as integers (a loop that vectorises). */
	if (inv > 0 && chain_big(UINT32_MAX, inv)) {
		double g = ceil(8 / inv);
		uint32_t cmin = g < 1 ? 1 : g >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)g;
		while (cmin > 1 && chain_big(cmin - 1, inv))
			cmin--;
		while (!chain_big(cmin, inv))
			cmin++;
		const uint32_t *restrict cnt = ch->cnt;
		for (unsigned q = 0; q < ch->ns; q++)
			big += cnt[q] >= cmin;
	}
	return 16 + 1.5 * (double)(ch->last + 1 - ch->ns) + 2.5 * (double)ch->ns +
	       2.0 * (double)big;
}

/* Merges contiguous levels (nlev, histograms of ntok tokens each) into at most 16 classes of
 * the least estimated size (dynamic programming over the cuts); scale multiplies the coded
 * bits of a sample up to the chunk. */
static double merge_levels(enc *e, unsigned nlev, double scale, uint8_t *map, unsigned *nclass)
{
	const unsigned ntok = e->ntok;
	double (*cost)[MAX_SUMS + 1] = e->cost;
	/* The nonzero tokens of each level, as lists: level histograms are sparse. */
	uint16_t *nzt = e->nzt, nzoff[MAX_SUMS + 1];
	unsigned nz = 0;
	for (unsigned v = 0; v < nlev; v++) {
		nzoff[v] = (uint16_t)nz;
		const uint32_t *h = e->hist + (size_t)v * ntok;
		for (unsigned t = 0; t < ntok; t++)
			if (h[t])
				nzt[nz++] = (uint16_t)t;
	}
	nzoff[nlev] = (uint16_t)nz;
	/* The cost of each run of levels u..v-1: for each u, the levels from u on merged one at a
	 * time, the merged counts' n log n kept beside them (the same value as computing it
	 * again) and summed into s, one subtraction and one addition a token, in token order.
	 * That chain of additions is serial, so MERGE_CHAINS values of u are merged side by side,
	 * each chain its own arrays and its own additions in the same order as alone: the same
	 * doubles, several chains in flight. A chain keeps its tokens in the order first seen
	 * (pos: token -> place), their counts contiguous for the table's estimate. */
	for (unsigned u0 = 0; u0 < nlev; u0 += MERGE_CHAINS) {
		const unsigned G = MIN(MERGE_CHAINS, nlev - u0);
		merge_chain ch[MERGE_CHAINS];
		for (unsigned g = 0; g < G; g++) {
			memset(ch[g].pos, 0xff, ntok * sizeof(uint16_t));
			ch[g].ns = ch[g].last = 0;
		}
		double s[MERGE_CHAINS] = {0};
		uint64_t n[MERGE_CHAINS] = {0};
		for (unsigned v = u0 + 1; v <= nlev; v++) {
			/* Chains u0 .. u0 + A - 1 take level v - 1. */
			const unsigned A = MIN(G, v - u0);
			const uint32_t *h = e->hist + (size_t)(v - 1) * ntok;
			const unsigned q0 = nzoff[v - 1], q1 = nzoff[v];
			if (A == MERGE_CHAINS) {
				for (unsigned q = q0; q < q1; q++) {
					const unsigned t = nzt[q];
					const uint32_t c = h[t];
					for (unsigned g = 0; g < MERGE_CHAINS; g++)
						chain_add(&ch[g], &s[g], &n[g], t, c);
				}
			} else {
				for (unsigned q = q0; q < q1; q++) {
					const unsigned t = nzt[q];
					const uint32_t c = h[t];
					for (unsigned g = 0; g < A; g++)
						chain_add(&ch[g], &s[g], &n[g], t, c);
				}
			}
			for (unsigned g = 0; g < A; g++)
				cost[u0 + g][v] = n[g] ? scale * (nlog2n_u(n[g]) - s[g]) +
				                             chain_table_bits(&ch[g], n[g])
				                       : 0;
		}
	}
	double best[ALCM_SYM_MAX_CLASSES + 1][MAX_SUMS + 1];
	unsigned cut[ALCM_SYM_MAX_CLASSES + 1][MAX_SUMS + 1];
	for (unsigned v = 0; v <= nlev; v++)
		best[1][v] = v ? cost[0][v] : 0;
	unsigned bk = 1;
	for (unsigned k = 2; k <= ALCM_SYM_MAX_CLASSES && k <= nlev; k++) {
		for (unsigned v = 0; v <= nlev; v++) {
			best[k][v] = INFINITY;
			cut[k][v] = 0;
			for (unsigned u = k - 1; u < v; u++) {
				double c = best[k - 1][u] + cost[u][v];
				if (c < best[k][v]) {
					best[k][v] = c;
					cut[k][v] = u;
				}
			}
		}
		if (best[k][nlev] < best[bk][nlev])
			bk = k;
	}
	unsigned v = nlev;
	for (unsigned k = bk; k >= 1; k--) {
		unsigned u = k > 1 ? cut[k][v] : 0;
		for (unsigned l = u; l < v; l++)
			map[l] = (uint8_t)(k - 1);
		v = u;
	}
	*nclass = bk;
	return best[bk][nlev];
}

/* Levels 0..nlev-1 of per-entry means m (entries with weight 0 take level 0): buckets of
 * equal width between the smallest and largest mean. @return levels used. */
static unsigned quantize_means(const double *m, const uint64_t *w, uint64_t n, unsigned nlev,
                               uint8_t *lev)
{
	double lo = INFINITY, hi = -INFINITY;
	for (uint64_t j = 0; j < n; j++)
		if (w[j]) {
			lo = m[j] < lo ? m[j] : lo;
			hi = m[j] > hi ? m[j] : hi;
		}
	double width = hi > lo ? (hi - lo) / nlev : 1;
	if (width < 0.125)
		width = 0.125; /* finer than an eighth of a token: noise */
	unsigned top = 0;
	for (uint64_t j = 0; j < n; j++) {
		unsigned l = 0;
		if (w[j]) {
			double q = (m[j] - lo) / width;
			l = q >= nlev - 1 ? nlev - 1 : (unsigned)q;
		}
		lev[j] = (uint8_t)l;
		top = l > top ? l : top;
	}
	return top + 1;
}

/* The sum of rm[entry of axis y] over the elements of each entry of axis x, added into rsum
 * (zero on entry) in element order (pruned elements left out). */
static void residual_sums(const enc *e, axis x, axis y, const double *rm, double *rsum)
{
	if (e->bits) {
		for (uint64_t i = 0; i < e->elems; i++) {
			if (!pruned(e->bits, i))
				rsum[x.j] += rm[y.j];
			axis_next(&x);
			axis_next(&y);
		}
		return;
	}
	/* Whole rows of y (runs of y.run elements from a run's start) in which x, moving every
	 * element, passes each entry the same number of times from entry 0 (a matrix's columns
	 * in whole rows): every entry of x takes the same additions in the same order, so the
	 * same sum (rsum is zero on entry), made once: the digits MLP1024 gradients' [64, 1024]
	 * took 10 instructions a value below (2.6% of its pack, callgrind). */
	if (alcm_sym_rows_alike && x.run == 1 && x.j == 0 && y.r == 0 && y.run % x.entries == 0 &&
	    e->elems % y.run == 0) {
		double s = 0;
		for (uint64_t i = 0; i < e->elems; i += y.run) {
			const double v = rm[y.j];
			for (uint64_t k = y.run / x.entries; k > 0; k--)
				s += v;
			axis_skip(&y, y.run);
		}
		for (uint64_t q = 0; q < x.entries; q++)
			rsum[q] = s;
		return;
	}
	/* Stretches where y's entry stays the same (and x's, unless x moves every element): the
	 * same additions in the same order as element by element, without stepping two axes per
	 * element nor storing the running sum between them. */
	for (uint64_t i = 0, n = e->elems; i < n;) {
		const double v = rm[y.j];
		uint64_t len = MIN(y.run - y.r, n - i);
		if (x.run == 1) {
			/* Each entry once per period: stretches between wraps, no test per element. */
			uint64_t j = x.j, E = x.entries;
			for (uint64_t k = 0; k < len;) {
				uint64_t m = MIN(len - k, E - j);
				double *restrict r = rsum + j;
				for (uint64_t q = 0; q < m; q++)
					r[q] += v;
				k += m;
				j = j + m == E ? 0 : j + m;
			}
			x.j = j;
		} else {
			len = MIN(len, x.run - x.r);
			double r = rsum[x.j];
			for (uint64_t k = 0; k < len; k++)
				r += v;
			rsum[x.j] = r;
			axis_skip(&x, len);
		}
		axis_skip(&y, len);
		i += len;
	}
}

/* Sums and counts of the tokens of each entry of axis x. */
static void axis_sums(const enc *e, axis x, uint64_t *sum, uint64_t *cnt)
{
	const uint8_t *tok = e->tok;
	if (e->bits) {
		for (uint64_t i = 0, si = 0; i < e->elems; i++) {
			if (!pruned(e->bits, i)) {
				sum[x.j] += tok[si++];
				cnt[x.j]++;
			}
			axis_next(&x);
		}
		return;
	}
	uint64_t i = 0, n = e->elems;
	if (x.run == 1) {
		/* Up to the first entry 0, whole periods (a loop that vectorises), the rest. */
		uint64_t j = x.j, E = x.entries;
		for (; i < n && j != 0; i++) {
			sum[j] += tok[i];
			cnt[j]++;
			j = j + 1 == E ? 0 : j + 1;
		}
		uint64_t periods = 0;
		if (E < 32) {
			/* Few entries (a conv kernel's columns): blocks of L = a multiple of E of
			 * 32 or more tokens summed lane by lane (a loop that vectorises), the lanes
			 * folded into their entries after: the same integer sums. */
			const uint64_t per = (32 + E - 1) / E, L = per * E;
			uint64_t acc[64] = {0};
			for (; i + L <= n; i += L, periods += per)
				for (uint64_t k = 0; k < L; k++)
					acc[k] += tok[i + k];
			for (uint64_t k = 0; k < L; k++)
				sum[k % E] += acc[k];
		}
		for (; i + E <= n; i += E, periods++)
			for (uint64_t k = 0; k < E; k++)
				sum[k] += tok[i + k];
		for (uint64_t k = 0; periods && k < E; k++)
			cnt[k] += periods;
		for (j = 0; i < n; i++, j++) {
			sum[j] += tok[i];
			cnt[j]++;
		}
		return;
	}
	while (i < n) {
		uint64_t len = MIN(x.run - x.r, n - i), s = 0;
		for (uint64_t k = 0; k < len; k++)
			s += tok[i + k];
		sum[x.j] += s;
		cnt[x.j] += len;
		axis_skip(&x, len);
		i += len;
	}
}

/* The classes of model md from the level histograms in e->hist (scale: chunk symbols per
 * symbol counted), and its estimated size. */
static void model_score(enc *e, model *md, const uint64_t *entries, double scale)
{
	md->bits = merge_levels(e, md->nlev, scale, md->map, &md->k);
	/* The level lists: about log2(levels) bits an entry after zstd. */
	for (unsigned k = 0; k < md->naxes; k++)
		md->bits += (double)entries[k] * (log2((double)md->nlev) + 0.5) + 24;
}

/* Counts a stretch of tokens of one level sum into row's four histograms (lt apart), each
 * token to the next histogram in turn from *u. */
static inline void count_stretch(uint32_t *restrict row, size_t lt, const uint8_t *restrict tp,
                                 uint64_t len, unsigned *u)
{
	uint64_t q = 0;
	unsigned v = *u;
	for (; q + 4 <= len; q += 4)
		for (unsigned w = 0; w < 4; w++)
			row[((v + w) & 3) * lt + tp[q + w]]++;
	for (; q < len; q++, v++)
		row[(v & 3) * lt + tp[q]]++;
	*u = v;
}

/* Histograms of tokens per level sum of model md over the chunk, or over SAMPLE_BLOCKS
 * blocks spread over it when it is long; then its classes and estimated size. */
static void model_eval(enc *e, model *md, const uint64_t *entries)
{
	/* Four histograms, each symbol to the next in turn: a count seldom waits on the one
	 * before it (the same bin, most of the time on weights). */
	const unsigned ntok = e->ntok;
	const size_t LT = (size_t)md->nlev * ntok;
	uint32_t *restrict h4 = e->hist4;
	memset(h4, 0, 4 * LT * sizeof(uint32_t));
	uint8_t id[512];
	for (unsigned l = 0; l < 512; l++)
		id[l] = (uint8_t)(l < MAX_SUMS ? l : MAX_SUMS - 1);
	uint64_t seen = 0;
	int sample = !e->bits && e->nsym > 2 * SAMPLE_BLOCKS * SAMPLE_BLOCK;
	uint64_t nblk = sample ? SAMPLE_BLOCKS : 1;
	for (uint64_t b = 0; b < nblk; b++) {
		/* The level sum of each symbol of the block (of the chunk when not sampling). */
		uint64_t i0 = sample ? b * (e->nsym / SAMPLE_BLOCKS) : 0;
		uint64_t len = sample ? SAMPLE_BLOCK : e->elems;
		uint64_t ns = sample ? SAMPLE_BLOCK : e->nsym;
		axis x[2];
		for (unsigned k = 0; k < md->naxes; k++)
			x[k] = axis_at(&e->ax[md->ax[k]], e->first, i0);
		const uint8_t *restrict tp = e->tok + i0, *restrict lv = e->lvl;
		uint64_t k = 0;
		if (md->naxes == 1 && !e->bits && x[0].run > 1) {
			/* One axis, runs of one level: each run's tokens into its level's histogram
			 * directly (the same counts, without the pass that writes every token's
			 * level). */
			const uint8_t *l0 = md->lev[0];
			unsigned u = 0;
			while (k < ns) {
				uint64_t len1 = MIN(x[0].run - x[0].r, ns - k);
				count_stretch(h4 + (size_t)id[l0[x[0].j]] * ntok, LT, tp + k, len1, &u);
				axis_skip(&x[0], len1);
				k += len1;
			}
			seen += ns;
			continue;
		}
		if (md->naxes == 2 && !e->bits && x[1].run > 1) {
			/* Two axes of runs (a conv tensor's output and input channels): the level
			 * sum is the same over the stretches where neither axis moves, counted as
			 * above (the same counts, without writing and reading every token's level). */
			const uint8_t *l0 = md->lev[0], *l1 = md->lev[1];
			unsigned u = 0;
			while (k < ns) {
				uint64_t len1 = MIN(MIN(x[0].run - x[0].r, x[1].run - x[1].r), ns - k);
				count_stretch(h4 + (size_t)id[l0[x[0].j] + l1[x[1].j]] * ntok, LT, tp + k,
				              len1, &u);
				axis_skip(&x[0], len1);
				axis_skip(&x[1], len1);
				k += len1;
			}
			seen += ns;
			continue;
		}
		fill_classes(e->lvl, x, md->naxes, md->lev, id, sample ? NULL : e->bits, len);
		for (; k + 4 <= ns; k += 4)
			for (unsigned u = 0; u < 4; u++)
				h4[u * LT + (size_t)lv[k + u] * ntok + tp[k + u]]++;
		for (; k < ns; k++)
			h4[(size_t)lv[k] * ntok + tp[k]]++;
		seen += ns;
	}
	for (size_t j = 0; j < LT; j++)
		e->hist[j] = h4[j] + h4[LT + j] + h4[2 * LT + j] + h4[3 * LT + j];
	e->hist_of = sample ? NULL : md;
	model_score(e, md, entries, seen ? (double)e->nsym / (double)seen : 1);
}

/* model_eval() of a one-axis model over the whole chunk from its entries' (token, count)
 * pairs (entry_pairs()): each level's histogram is the sum of its entries' counts, the same
 * integers as counted token by token, without a pass over the chunk. */
static void model_eval_pairs(enc *e, model *md, const uint64_t *entries,
                             const uint32_t *restrict pt, const uint64_t *restrict off)
{
	const unsigned ntok = e->ntok;
	uint32_t *restrict h = e->hist;
	memset(h, 0, (size_t)md->nlev * ntok * sizeof(uint32_t));
	const uint8_t *l0 = md->lev[0];
	for (uint64_t j = 0; j < entries[0]; j++) {
		uint32_t *restrict row = h + (size_t)MIN(l0[j], MAX_SUMS - 1) * ntok;
		for (uint64_t q = off[j]; q < off[j + 1]; q++)
			row[pt[2 * q]] += pt[2 * q + 1];
	}
	e->hist_of = md;
	model_score(e, md, entries, 1);
}

/* The nonzero counts of h[0..ntok) as pairs at pt[2 nz...], branch-free (counts are
 * seldom zero where this runs); pt has room for ALCM_SYM_PAIRS_SLACK pairs more (writes past
 * the last: one by the portable loop, up to four by the vectorised one, whose store of a group
 * of zeros at the end lands wholly there: a slack of 3 is an ASan overflow in
 * test_symcode_paths). @return the new nz. */
static inline uint64_t put_pairs_scalar(uint32_t *pt, uint64_t nz, const uint32_t *h,
                                        unsigned t, unsigned ntok)
{
	for (; t < ntok; t++) {
		pt[2 * nz] = t;
		pt[2 * nz + 1] = h[t];
		nz += h[t] != 0;
	}
	return nz;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* Four counters at a time: each (token, count) pair a 64-bit lane, the nonzero ones moved to
 * the front by a permutation looked up from their mask, all four stored (the same pairs; up to
 * four written past the last). The torch MLP's weights (perf, in-process --max-error pack):
 * the pairs from about 5% of the cycles to 2.4%. */
__attribute__((target("avx2"))) static uint64_t put_pairs_avx2(uint32_t *pt, uint64_t nz,
                                                               const uint32_t *h, unsigned ntok)
{
	static const int32_t perm[16][8] = {
	    {0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}, {2, 3, 0, 1, 4, 5, 6, 7},
	    {0, 1, 2, 3, 4, 5, 6, 7}, {4, 5, 0, 1, 2, 3, 6, 7}, {0, 1, 4, 5, 2, 3, 6, 7},
	    {2, 3, 4, 5, 0, 1, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}, {6, 7, 0, 1, 2, 3, 4, 5},
	    {0, 1, 6, 7, 2, 3, 4, 5}, {2, 3, 6, 7, 0, 1, 4, 5}, {0, 1, 2, 3, 6, 7, 4, 5},
	    {4, 5, 6, 7, 0, 1, 2, 3}, {0, 1, 4, 5, 6, 7, 2, 3}, {2, 3, 4, 5, 6, 7, 0, 1},
	    {0, 1, 2, 3, 4, 5, 6, 7}};
	const __m256i four = _mm256_set1_epi64x(4), zero = _mm256_setzero_si256();
	__m256i tv = _mm256_set_epi64x(3, 2, 1, 0);
	unsigned t = 0;
	for (; t + 4 <= ntok; t += 4) {
		__m256i c = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(const void *)(h + t)));
		unsigned m = 15u ^ (unsigned)_mm256_movemask_pd(
		                       _mm256_castsi256_pd(_mm256_cmpeq_epi64(c, zero)));
		__m256i p = _mm256_or_si256(tv, _mm256_slli_epi64(c, 32));
		p = _mm256_permutevar8x32_epi32(
		    p, _mm256_loadu_si256((const __m256i *)(const void *)perm[m]));
		_mm256_storeu_si256((__m256i *)(void *)(pt + 2 * nz), p);
		nz += (uint64_t)__builtin_popcount(m);
		tv = _mm256_add_epi64(tv, four);
	}
	return put_pairs_scalar(pt, nz, h, t, ntok);
}
#endif

static inline uint64_t put_pairs(uint32_t *pt, uint64_t nz, const uint32_t *h, unsigned ntok)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx2"))
		return put_pairs_avx2(pt, nz, h, ntok);
#endif
	return put_pairs_scalar(pt, nz, h, 0, ntok);
}

uint64_t alcm_sym_put_pairs(uint32_t *pt, uint64_t nz, const uint32_t *h, unsigned ntok)
{
	return put_pairs(pt, nz, h, ntok);
}

/* entry_pairs() for a run-1 axis without mask (element i in entry i mod entries), counted
 * for a block of entries at a time so that the counters stay in the first-level cache (one
 * histogram of entries x ntok counters, touched at random, did not). */
static uint64_t pairs_run1(const uint8_t *tok, uint64_t elems, uint64_t entries, unsigned ntok,
                           uint32_t *pt, uint64_t *off)
{
	enum { BLK = 32 };
	uint32_t loc[BLK][ALCM_RANS_MAX_TOKENS];
	uint64_t nz = 0;
	for (uint64_t j0 = 0; j0 < entries; j0 += BLK) {
		unsigned nb = (unsigned)MIN(BLK, entries - j0);
		for (unsigned b = 0; b < nb; b++)
			memset(loc[b], 0, ntok * sizeof(uint32_t));
		for (uint64_t i = j0; i < elems; i += entries) {
			const uint8_t *p = tok + i;
			unsigned m = (unsigned)MIN(nb, elems - i);
			for (unsigned b = 0; b < m; b++)
				loc[b][p[b]]++;
		}
		for (unsigned b = 0; b < nb; b++) {
			off[j0 + b] = nz;
			nz = put_pairs(pt, nz, loc[b], ntok);
		}
	}
	off[entries] = nz;
	return nz;
}

/* The len tokens g[0], g[stride]... as pairs at pt[2 nz...] in increasing token order (loc:
 * zeros, left so). @return the new nz. */
ALCM_ALWAYS_INLINE uint64_t count_pairs(const uint8_t *g, uint64_t len, const uint64_t stride,
                                        uint32_t *restrict loc, uint32_t *restrict pt,
                                        uint64_t nz)
{
	uint64_t seen[ALCM_RANS_MAX_TOKENS / 64] = {0};
	for (uint64_t k = 0; k < len; k++) {
		unsigned t = g[k * stride];
		seen[t >> 6] |= (uint64_t)1 << (t & 63);
		loc[t]++;
	}
	for (unsigned w = 0; w < ALCM_RANS_MAX_TOKENS / 64; w++)
		for (uint64_t m = seen[w]; m; m &= m - 1) {
			unsigned t = 64 * w + (unsigned)__builtin_ctzll(m);
			pt[2 * nz] = t;
			pt[2 * nz + 1] = loc[t];
			loc[t] = 0;
			nz++;
		}
	return nz;
}

/* The tokens of each entry of axis x as (token, count) pairs in increasing token order, those
 * of entry j from off[j] (nonzero counts only; @return their number). A dense histogram per
 * entry when there are no more counters than tokens, else the tokens grouped by entry and
 * counted one entry at a time: clearing and scanning entries * ntok counters cost more than
 * the chunk's tokens where entries are many (a 64 x 1024 gradient: 1024 channels). NULL pt: out of memory. */
static uint64_t entry_pairs(enc *e, axis x, uint64_t entries, unsigned set, uint32_t **ptp,
                            uint64_t **offp)
{
	const unsigned ntok = e->ntok;
	const alcm_allocator *a = e->a;
	const uint8_t *tok = e->tok;
	uint64_t *off = ss_get(e->ss, a, set ? SS_ROFF1 : SS_ROFF,
	                       (size_t)(entries + 1) * sizeof(uint64_t));
	uint64_t cap = MIN(e->nsym, entries * ntok) + ALCM_SYM_PAIRS_SLACK;
	uint32_t *pt = ss_get(e->ss, a, set ? SS_RPT1 : SS_RPT, (size_t)cap * 2 * sizeof(uint32_t));
	*ptp = NULL;
	*offp = off;
	if (!off || !pt)
		return 0;
	uint64_t nz = 0;
	if (!e->bits && x.run == 1 && entries * ntok <= 2 * e->nsym) {
		*ptp = pt;
		return pairs_run1(tok, e->elems, entries, ntok, pt, off);
	}
	if (entries * ntok <= e->nsym) {
		uint32_t *h = ss_get(e->ss, a, SS_RH, (size_t)(entries * ntok) * sizeof(uint32_t));
		if (!h)
			return 0;
		memset(h, 0, (size_t)(entries * ntok) * sizeof(uint32_t));
		if (e->bits) {
			for (uint64_t i = 0, si = 0; i < e->elems; i++) {
				if (!pruned(e->bits, i))
					h[x.j * ntok + tok[si++]]++;
				axis_next(&x);
			}
		} else if (x.run == 1) {
			for (uint64_t i = 0, j = x.j; i < e->elems; i++) {
				h[j * ntok + tok[i]]++;
				j = j + 1 == x.entries ? 0 : j + 1;
			}
		} else {
			for (uint64_t i = 0; i < e->elems;) {
				uint64_t len = MIN(x.run - x.r, e->elems - i);
				uint32_t *row = h + x.j * ntok;
				const uint8_t *tp = tok + i;
				uint64_t k = 0;
				if (len >= 2 * (uint64_t)ntok) {
					/* Runs of a few tokens per counter and more: four histograms
					 * (their first ntok counters), so that a token repeated in a row
					 * does not wait on its own count. */
					uint32_t h4[4][ALCM_RANS_MAX_TOKENS];
					for (unsigned u = 0; u < 4; u++)
						memset(h4[u], 0, ntok * sizeof(uint32_t));
					for (; k + 4 <= len; k += 4)
						for (unsigned u = 0; u < 4; u++)
							h4[u][tp[k + u]]++;
					for (unsigned t = 0; t < ntok; t++)
						row[t] += h4[0][t] + h4[1][t] + h4[2][t] + h4[3][t];
				}
				for (; k < len; k++)
					row[tp[k]]++;
				axis_skip(&x, len);
				i += len;
			}
		}
		for (uint64_t j = 0; j < entries; j++) {
			off[j] = nz;
			nz = put_pairs(pt, nz, h + j * ntok, ntok);
		}
		off[entries] = nz;
		*ptp = pt;
		return nz;
	}
	/* Grouped: grp holds the tokens of entry j from pos[j] (a run-1 axis without mask reads
	 * them in place, every entries-th token). */
	const uint8_t *grp = tok;
	uint64_t *pos = NULL;
	int strided = !e->bits && x.run == 1;
	if (!strided) {
		uint8_t *g = ss_get(e->ss, a, SS_RGRP, (size_t)e->nsym);
		pos = ss_get(e->ss, a, SS_RPOS, (size_t)(entries + 1) * sizeof(uint64_t));
		if (!g || !pos)
			return 0;
		memset(pos, 0, (size_t)(entries + 1) * sizeof(uint64_t));
		axis y = x;
		if (e->bits) {
			for (uint64_t i = 0; i < e->elems; i++) {
				if (!pruned(e->bits, i))
					pos[y.j + 1]++;
				axis_next(&y);
			}
		} else {
			for (uint64_t i = 0; i < e->elems;) {
				uint64_t len = MIN(y.run - y.r, e->elems - i);
				pos[y.j + 1] += len;
				axis_skip(&y, len);
				i += len;
			}
		}
		for (uint64_t j = 0; j < entries; j++)
			pos[j + 1] += pos[j];
		if (e->bits) {
			for (uint64_t i = 0, si = 0; i < e->elems; i++) {
				if (!pruned(e->bits, i))
					g[pos[x.j]++] = tok[si++];
				axis_next(&x);
			}
		} else {
			for (uint64_t i = 0; i < e->elems;) {
				uint64_t len = MIN(x.run - x.r, e->elems - i);
				memcpy(g + pos[x.j], tok + i, (size_t)len);
				pos[x.j] += len;
				axis_skip(&x, len);
				i += len;
			}
		}
		/* pos[j] is now where entry j ends, which is where j + 1 starts. */
		grp = g;
	}
	uint32_t loc[ALCM_RANS_MAX_TOKENS] = {0};
	enum { BLK = 64, ROWS = ALCM_RANS_MAX_TOKENS / 2 + 1 };
	if (strided && (e->elems + entries - 1) / entries <= ROWS) {
		/* Blocks of entries: their tokens (at most 129 each here: entries * ntok > 2 nsym)
		 * copied out row by row, then counted entry by entry, rather than each entry read
		 * at a stride of `entries` bytes (a cache line a token). */
		uint8_t tr[BLK][ROWS];
		for (uint64_t j0 = 0; j0 < entries; j0 += BLK) {
			unsigned nb = (unsigned)MIN(BLK, entries - j0), r = 0;
			for (uint64_t i = j0; i < e->elems && r < ROWS; i += entries, r++) {
				const uint8_t *p = grp + i;
				unsigned m = (unsigned)MIN(nb, e->elems - i);
				for (unsigned b = 0; b < m; b++)
					tr[b][r] = p[b];
			}
			for (unsigned b = 0; b < nb; b++) {
				uint64_t j = j0 + b, len = (e->elems - j + entries - 1) / entries;
				off[j] = nz;
				nz = count_pairs(tr[b], len, 1, loc, pt, nz);
			}
		}
	} else if (strided) {
		/* (Not reached: a guard.) Each entry read in place. */
		for (uint64_t j = 0; j < entries; j++) {
			off[j] = nz;
			nz = count_pairs(grp + j, (e->elems - j + entries - 1) / entries, entries, loc,
			                 pt, nz);
		}
	} else {
		for (uint64_t j = 0, at = 0; j < entries; j++) {
			off[j] = nz;
			nz = count_pairs(grp + at, pos[j] - at, 1, loc, pt, nz);
			at = pos[j];
		}
	}
	off[entries] = nz;
	*ptp = pt;
	return nz;
}

/* Refines a one-axis model by moving each entry (channel) to the class whose table codes
 * its tokens in the fewest bits, and recomputing the tables, a few rounds (Lloyd's
 * algorithm on histograms), starting from the classes of the levels. Keeps the result (levels
 * become class numbers) when its estimate is smaller. Needs a histogram per entry: skipped
 * above 2^20 counters. */
/* c[0..nk) = the costs of pairs q0..q1 of pt in the first nk classes (lp: by token, then
 * class), summed from 0 in pair order. */
ALCM_ALWAYS_INLINE void refine_costs(double *restrict c, const double *restrict lp,
                                     const uint32_t *restrict pt, uint64_t q0, uint64_t q1,
                                     const unsigned nk)
{
	/* A loop of constant length rather than an initialiser: no string store per entry. */
	for (unsigned k = 0; k < nk; k++)
		c[k] = 0;
	for (uint64_t q = q0; q < q1; q++) {
		const double *l = lp + (size_t)pt[2 * q] * ALCM_SYM_MAX_CLASSES, w = pt[2 * q + 1];
		for (unsigned k = 0; k < nk; k++)
			c[k] += w * l[k];
	}
}

/* refine_costs() of two entries at once (pairs a0..a1 into ca, b0..b1 into cb): each sum
 * in its own pair order as alone, two chains of additions in flight instead of one. */
ALCM_ALWAYS_INLINE void refine_costs2(double *restrict ca, double *restrict cb,
                                      const double *restrict lp, const uint32_t *restrict pt,
                                      uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1,
                                      const unsigned nk)
{
	for (unsigned k = 0; k < nk; k++)
		ca[k] = cb[k] = 0;
	for (; a0 < a1 && b0 < b1; a0++, b0++) {
		const double *la = lp + (size_t)pt[2 * a0] * ALCM_SYM_MAX_CLASSES, wa = pt[2 * a0 + 1];
		const double *lb = lp + (size_t)pt[2 * b0] * ALCM_SYM_MAX_CLASSES, wb = pt[2 * b0 + 1];
		for (unsigned k = 0; k < nk; k++) {
			ca[k] += wa * la[k];
			cb[k] += wb * lb[k];
		}
	}
	for (; a0 < a1; a0++) {
		const double *la = lp + (size_t)pt[2 * a0] * ALCM_SYM_MAX_CLASSES, wa = pt[2 * a0 + 1];
		for (unsigned k = 0; k < nk; k++)
			ca[k] += wa * la[k];
	}
	for (; b0 < b1; b0++) {
		const double *lb = lp + (size_t)pt[2 * b0] * ALCM_SYM_MAX_CLASSES, wb = pt[2 * b0 + 1];
		for (unsigned k = 0; k < nk; k++)
			cb[k] += wb * lb[k];
	}
}

/* The cheapest class by costs c (the first K0), cur when none is finite: each class in turn
 * takes over when it costs less than the best so far minus 1e-9. */
ALCM_ALWAYS_INLINE unsigned pick_class(const double *c, unsigned cur, unsigned K0)
{
	double bc = INFINITY;
	unsigned bk = cur;
	for (unsigned k = 0; k < K0; k++)
		if (c[k] < bc - 1e-9) {
			bc = c[k];
			bk = k;
		}
	return bk;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* pick_class() without its chain of subtractions and comparisons (one after the other, K0
 * deep: a third of the refinement's time on a gradient of 1024 channels). Where the smallest
 * cost m is finite and only one class k has c[k] - 1e-9 <= m, the scan ends at k: it takes
 * over from any class before it (m < c[j] - 1e-9 for every other j), and no later class takes
 * over from it (c[j] >= m >= c[k] - 1e-9). The same subtraction gives the same doubles, so
 * the class is pick_class()'s; any other case (ties within 1e-9) goes to pick_class(). */
__attribute__((target("avx2"))) static inline unsigned pick_class_avx2(const double *c,
                                                                        unsigned cur, unsigned K0)
{
	const __m256d inf = _mm256_set1_pd(INFINITY), eps = _mm256_set1_pd(1e-9);
	__m256d v[ALCM_SYM_MAX_CLASSES / 4], mn = inf;
	unsigned G = (K0 + 3) / 4;
	for (unsigned g = 0; g < G; g++) {
		/* Classes from K0 on are not candidates (their costs may be unset). */
		__m256i lane = _mm256_setr_epi64x(4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3);
		__m256d in = _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_set1_epi64x(K0), lane));
		v[g] = _mm256_blendv_pd(inf, _mm256_maskload_pd(c + 4 * g, _mm256_castpd_si256(in)), in);
		mn = _mm256_min_pd(v[g], mn); /* a NaN cost (never chosen) leaves mn */
	}
	__m128d h = _mm_min_pd(_mm256_castpd256_pd128(mn), _mm256_extractf128_pd(mn, 1));
	double m = _mm_cvtsd_f64(_mm_min_sd(h, _mm_unpackhi_pd(h, h)));
	if (!(m < INFINITY))
		return pick_class(c, cur, K0);
	const __m256d vm = _mm256_set1_pd(m);
	unsigned mask = 0;
	for (unsigned g = 0; g < G; g++)
		mask |= (unsigned)_mm256_movemask_pd(
			_mm256_cmp_pd(_mm256_sub_pd(v[g], eps), vm, _CMP_LE_OQ)) << (4 * g);
	if ((mask & (mask - 1)) == 0 && mask)
		return (unsigned)__builtin_ctz(mask);
	return pick_class(c, cur, K0);
}
#endif

/* Moves entry j to its cheapest class by costs c (the first K0), counts cc kept up to date.
 * @return 1 when it moved. */
ALCM_ALWAYS_INLINE int assign_move(const double *c, const uint32_t *restrict pt,
                                   const uint64_t *restrict off, uint64_t j,
                                   uint8_t *restrict cl, uint64_t *restrict cc, unsigned ntok,
                                   unsigned K0, const int avx2)
{
	unsigned bk;
#if defined(__x86_64__) && defined(__GNUC__)
	if (avx2)
		bk = pick_class_avx2(c, cl[j], K0);
	else
#endif
		bk = pick_class(c, cl[j], K0);
	if (bk == cl[j])
		return 0;
	uint64_t *from = cc + (size_t)cl[j] * ntok, *to = cc + (size_t)bk * ntok;
	for (uint64_t q = off[j]; q < off[j + 1]; q++) {
		from[pt[2 * q]] -= pt[2 * q + 1];
		to[pt[2 * q]] += pt[2 * q + 1];
	}
	cl[j] = (uint8_t)bk;
	return 1;
}

/* One round of moves: each entry to its cheapest class (costs lp), counts cc kept up to date.
 * @return entries moved. Compiled twice, the second for AVX2 (chosen at run time): the same
 * additions and products in the same order per class, wider registers only. The costs use
 * lp alone, never cc, so two entries' costs are summed together and the moves made after,
 * in entry order (integer counts: the same whatever the order). */
ALCM_ALWAYS_INLINE int assign_body(const double *restrict lp, const uint32_t *restrict pt,
                                   const uint64_t *restrict off, uint64_t entries,
                                   uint8_t *restrict cl, uint64_t *restrict cc, unsigned ntok,
                                   unsigned K0, const int avx2)
{
	int moved = 0;
	uint64_t j = 0;
	/* The entry's cost in every class at once: a loop over the classes that compilers
	 * vectorise, in groups of 4 (the same sums as over all 16: each class's is its own,
	 * added in the same order). */
	for (; j + 2 <= entries; j += 2) {
		double c[2][ALCM_SYM_MAX_CLASSES];
		const uint64_t a0 = off[j], a1 = off[j + 1], b1 = off[j + 2];
		if (K0 <= 4)
			refine_costs2(c[0], c[1], lp, pt, a0, a1, a1, b1, 4);
		else if (K0 <= 8)
			refine_costs2(c[0], c[1], lp, pt, a0, a1, a1, b1, 8);
		else if (K0 <= 12)
			refine_costs2(c[0], c[1], lp, pt, a0, a1, a1, b1, 12);
		else
			refine_costs2(c[0], c[1], lp, pt, a0, a1, a1, b1, 16);
		moved += assign_move(c[0], pt, off, j, cl, cc, ntok, K0, avx2);
		moved += assign_move(c[1], pt, off, j + 1, cl, cc, ntok, K0, avx2);
	}
	for (; j < entries; j++) {
		double c[ALCM_SYM_MAX_CLASSES];
		if (K0 <= 4)
			refine_costs(c, lp, pt, off[j], off[j + 1], 4);
		else if (K0 <= 8)
			refine_costs(c, lp, pt, off[j], off[j + 1], 8);
		else if (K0 <= 12)
			refine_costs(c, lp, pt, off[j], off[j + 1], 12);
		else
			refine_costs(c, lp, pt, off[j], off[j + 1], 16);
		moved += assign_move(c, pt, off, j, cl, cc, ntok, K0, avx2);
	}
	return moved;
}

static int assign_portable(const double *lp, const uint32_t *pt, const uint64_t *off,
                           uint64_t entries, uint8_t *cl, uint64_t *cc, unsigned ntok, unsigned K0)
{
	return assign_body(lp, pt, off, entries, cl, cc, ntok, K0, 0);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static int assign_avx2(const double *lp, const uint32_t *pt,
                                                       const uint64_t *off, uint64_t entries,
                                                       uint8_t *cl, uint64_t *cc, unsigned ntok,
                                                       unsigned K0)
{
	return assign_body(lp, pt, off, entries, cl, cc, ntok, K0, 1);
}

/* The same again with 512-bit registers (eight classes a product and a sum instead of four;
 * products and sums are not fused: -ffp-contract=off). */
#ifdef __clang__
#define SYM_AVX512 __attribute__((target("avx2,avx512f,avx512vl"), min_vector_width(512)))
#else
#define SYM_AVX512 __attribute__((target("avx2,avx512f,avx512vl,prefer-vector-width=512")))
#endif
SYM_AVX512 static int
assign_avx512(const double *lp, const uint32_t *pt, const uint64_t *off, uint64_t entries,
              uint8_t *cl, uint64_t *cc, unsigned ntok, unsigned K0)
{
	return assign_body(lp, pt, off, entries, cl, cc, ntok, K0, 1);
}
#endif

static int refine_assign(const double *lp, const uint32_t *pt, const uint64_t *off,
                         uint64_t entries, uint8_t *cl, uint64_t *cc, unsigned ntok, unsigned K0)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512vl") && alcm_sym_avx512)
		return assign_avx512(lp, pt, off, entries, cl, cc, ntok, K0);
	if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx2"))
		return assign_avx2(lp, pt, off, entries, cl, cc, ntok, K0);
#endif
	return assign_portable(lp, pt, off, entries, cl, cc, ntok, K0);
}

/* Refines md's classes (up to six rounds of moves) and keeps them if their estimate is under
 * md's. target (at most md->bits): the estimate the classes must get under to be of use; a
 * refinement that cannot reach it stops early (i.i.d. float32 values, 2048 x 2560, 5 chunks:
 * all 10 refinements ran 6 rounds and none was kept; alcm-pack --max-error 0.001 468M ->
 * 413M instructions, the same archive). */
static int model_refine(enc *e, model *md, uint64_t entries, uint32_t *pt, uint64_t *off,
                        double target)
{
	const unsigned ntok = e->ntok, K0 = md->k;
	if (K0 < 2 || entries * e->ntok_all > ((uint64_t)1 << 20))
		return ALCM_OK;
	const alcm_allocator *a = e->a;
	uint8_t *cl = ss_get(e->ss, a, SS_RCL, (size_t)entries);
	double *lp = ss_get(e->ss, a, SS_RLP, (size_t)ALCM_SYM_MAX_CLASSES * ntok * sizeof(double));
	uint64_t *cc = ss_get(e->ss, a, SS_RCC, (size_t)K0 * ntok * sizeof(uint64_t));
	if (!cl || !lp || !cc)
		return ALCM_E_NOMEM;
	memset(lp, 0, (size_t)ALCM_SYM_MAX_CLASSES * ntok * sizeof(double));
	axis x = {0, 0, 0, 0, 0};
	axis_init(&x, e->qp->axis_run[md->ax[0]], e->qp->axis_count[md->ax[0]], e->first, e->elems);
	for (uint64_t j = 0; j < entries; j++)
		cl[j] = md->map[md->lev[0][j]];
	if (!pt)
		entry_pairs(e, x, entries, 0, &pt, &off);
	if (!pt)
		return ALCM_E_NOMEM;
	double bits = INFINITY, lv = (double)entries * (log2((double)K0) + 0.5) + 24, gain = 0;
	/* The counts per class, then kept up to date as entries move (integers: the same as
	 * counting again each round). */
	memset(cc, 0, (size_t)K0 * ntok * sizeof(uint64_t));
	for (uint64_t j = 0; j < entries; j++)
		for (uint64_t q = off[j]; q < off[j + 1]; q++)
			cc[(size_t)cl[j] * ntok + pt[2 * q]] += pt[2 * q + 1];
	for (int round = 0; round < 6; round++) {
		double b = 0;
		for (unsigned k = 0; k < K0; k++) {
			uint32_t c32[ALCM_RANS_MAX_TOKENS];
			uint64_t n = 0;
			for (unsigned t = 0; t < ntok; t++) {
				n += cc[(size_t)k * ntok + t];
				c32[t] = (uint32_t)MIN(cc[(size_t)k * ntok + t], UINT32_MAX);
			}
			b += coded_bits(c32, ntok);
			/* Costs per token, smoothed so that a token the class has not seen costs a lot
			 * but not infinitely. */
			double den = fast_log2((double)n + 0.5 * e->ntok_all);
			for (unsigned t = 0; t < ntok; t++) /* by token, then class: see below */
				lp[(size_t)t * ALCM_SYM_MAX_CLASSES + k] =
					den - log2h_u(cc[(size_t)k * ntok + t]);
		}
		if (!(b < bits - 8))
			break;
		/* Stopped where the rounds left, each gaining at most the most a round has gained
		 * yet, cannot bring the estimate under `target`: the classes would not be kept.
		 * Not before two rounds: a round's gain can exceed the one before (the torch MLP's
		 * gradients at --ratio 6, 64 rows in 5 classes: 1484 bits, then 10648), and a stop
		 * projecting the last gain alone changed that archive. */
		if (round > 0 && bits - b > gain)
			gain = bits - b;
		if (round > 1 && !alcm_sym_refine_all && b - gain * (double)(5 - round) + lv >= target) {
			atomic_fetch_add_explicit(&alcm_sym_refine_stops, 1, memory_order_relaxed);
			bits = INFINITY;
			break;
		}
		bits = b;
		int moved = refine_assign(lp, pt, off, entries, cl, cc, ntok, K0);
		if (!moved)
			break;
	}
	/* Classes as levels, with the map the identity (their list costs lv). */
	if (bits + lv < md->bits) {
		if (e->hist_of == md)
			e->hist_of = NULL; /* its levels change */
		md->bits = bits + lv;
		md->nlev = K0;
		for (unsigned k = 0; k < K0; k++)
			md->map[k] = (uint8_t)k;
		memcpy(md->lev[0], cl, (size_t)entries);
		/* Its classes' counts as its level histograms: those cc kept up to date as
		 * entries moved (the same integers as counting again: the pairs are of the whole
		 * chunk; a chunk's counts fit 32 bits, as in every histogram here). */
		uint32_t *lh = ss_get(e->ss, a, SS_LH + md->id, (size_t)K0 * ntok * sizeof(uint32_t));
		if (lh)
			for (size_t q = 0; q < (size_t)K0 * ntok; q++)
				lh[q] = (uint32_t)cc[q];
		md->lh = lh;
	}
	return ALCM_OK;
}

/* A lower bound on the estimate of a one-axis model of K classes over the entries whose
 * (token, count) pairs are pt, off, refined or not: the coded bits of a class are at least
 * the sum of those of its entries each with its own table, table cost left out (merging
 * counts never lowers n log n - sum c log c), plus the level lists as model_refine()
 * counts them (at most what model_score() counts for its K or more levels). */
static double refine_bound(const uint32_t *pt, const uint64_t *off, uint64_t entries,
                           unsigned K)
{
	double b = 0;
	for (uint64_t j = 0; j < entries; j++) {
		uint64_t n = 0;
		double s = 0;
		for (uint64_t q = off[j]; q < off[j + 1]; q++) {
			n += pt[2 * q + 1];
			s += nlog2n_u(pt[2 * q + 1]);
		}
		b += nlog2n_u(n) - s;
	}
	return b + (double)entries * (log2((double)K) + 0.5) + 24;
}

/* Whether models() tries axis k (entries of x) for a chunk of nsym symbols: not a single
 * channel, nor channels too short to pay for their level; and where cols (a tensor of 3
 * dimensions or more whose axes include one of columns: runs of one element, at least
 * KERNEL_ENTRIES entries), no axis but axis 0 of fewer than KERNEL_ENTRIES entries each a
 * run of fewer than KERNEL_ENTRIES elements: a PyTorch convolution's kernel rows, columns
 * and positions ([out, in, 3, 3]: 3 entries of runs of 3, 3 of 1, 9 of 1), whose classes
 * the columns (in, kh, kw) can take too. Their models cost a pass over the chunk each, a few
 * elements at a time (a sixth of the lossy pack of the digits CNN), and did not win on the
 * files of the size checks (96 archives the same bytes). A depthwise convolution ([C, 1, 3,
 * 3]: no columns but the positions) tries them still (one whose centre taps are 6x its
 * corners: 2.8% smaller than one table with them, no smaller without: test_symcode_axes),
 * and so does a TF convolution ([3, 3, in, out]: runs of in x out, passes a run at a time;
 * leaving them out changed faceapi's archives, tools/bench/run.sh ratios -0.03 to -0.05% in
 * 5 of 6 modes). */
#define KERNEL_ENTRIES 10
static int axis_tried(unsigned k, const axis *x, uint64_t nsym, int cols)
{
	if (x->entries < 2 || x->entries * 16 > nsym)
		return 0;
	return k == 0 || !cols || x->entries >= KERNEL_ENTRIES || x->run >= KERNEL_ENTRIES;
}

/* Candidates besides one table: classes along each axis the caller offers, and along the
 * two best of them (the first's mean token plus the second's mean of what the first leaves).
 * Fills md[1..], @return their count + 1. */
static int models(enc *e, model *md, unsigned *nm)
{
	const alcm_qparams *qp = e->qp;
	const alcm_allocator *a = e->a;
	unsigned nlev = e->nsym >= (1u << 20) ? 32 : e->nsym >= (1u << 16) ? 16 : 8;
	unsigned nax = MIN(qp->naxes, ALCM_QP_AXES);
	uint64_t entries[ALCM_QP_AXES] = {0}, *sum[ALCM_QP_AXES] = {NULL}, *cnt[ALCM_QP_AXES] = {NULL};
	double *mean[ALCM_QP_AXES] = {NULL}, *rs = NULL;
	int st = ALCM_OK;
	*nm = 1;
	/* Where model_eval() would count the whole chunk (no mask, no sampling), an axis's
	 * entries are counted once as (token, count) pairs, which give its sums, its model's
	 * level histograms and its refinement's input: one pass instead of three. */
	const int direct = !e->bits && e->nsym <= 2 * SAMPLE_BLOCKS * SAMPLE_BLOCK;
	/* With exactly two candidate axes (a matrix), the refinement of either may wait until
	 * the two-axis model is scored, and be left out when the model cannot win (below). The
	 * two-axis model is built from the same axes whatever their estimates (both are the two
	 * best; their order is by run, which must differ), so it is the same model. */
	unsigned ncand = 0, cand = 0;
	int cols = 0;
	for (unsigned k = 2; k < nax; k++) {
		axis x;
		cols |= !axis_init(&x, qp->axis_run[k], qp->axis_count[k], e->first, e->elems) &&
		        x.run == 1 && x.entries >= KERNEL_ENTRIES && axis_tried(k, &x, e->nsym, 0);
	}
	for (unsigned k = 0; k < nax; k++) {
		axis x;
		if (axis_init(&x, qp->axis_run[k], qp->axis_count[k], e->first, e->elems) ||
		    !axis_tried(k, &x, e->nsym, cols))
			continue;
		cand |= 1u << MIN(k, 2);
		ncand++;
	}
	/* Axes 0 and 1 only: their pairs stay at hand (each its own arrays) for a deferred
	 * refinement, and no other axis is refined (nor are pairs made again: a refinement
	 * without pairs is one of over 2^20 counters, which stops before making them). */
	const int may_defer = direct && ncand == 2 && cand == 3 &&
	                      qp->axis_run[0] != qp->axis_run[1];
	unsigned pend[2], npend = 0;
	double lb[ALCM_QP_AXES + 2];
	uint32_t *ppt[2] = {NULL, NULL};
	uint64_t *poff[2] = {NULL, NULL};
	/* Axes of runs that are multiples of the shortest run above 1 (the axes of a row-major
	 * tensor): their sums come from the sums of blocks of that run, one pass for all of
	 * them instead of one each. */
	uint64_t rmin = 0, *bs = NULL, *bl = NULL, nb = 0;
	unsigned nbig = 0;
	for (int pass = 0; pass < 2 && !e->bits; pass++)
		for (unsigned k = 0; k < nax; k++) {
			axis x;
			if (axis_init(&x, qp->axis_run[k], qp->axis_count[k], e->first, e->elems) ||
			    !axis_tried(k, &x, e->nsym, cols) || x.run < 2)
				continue;
			if (!pass) {
				rmin = !rmin || x.run < rmin ? x.run : rmin;
				nbig++;
			} else if (x.run % rmin) {
				nbig = 0;
			}
		}
	if (nbig >= 2) {
		nb = (e->first + e->elems - 1) / rmin - e->first / rmin + 1;
		bs = ss_get(e->ss, a, SS_BSUM, (size_t)nb * sizeof(uint64_t));
		bl = ss_get(e->ss, a, SS_BLEN, (size_t)nb * sizeof(uint64_t));
		if (!bs || !bl)
			return ALCM_E_NOMEM;
		const uint8_t *tok = e->tok;
		/* Blocks after the first start at multiples of rmin: one division (one a block
		 * of 9 was a sixth of the coder's own time on conv weights). */
		uint64_t at = e->first % rmin;
		for (uint64_t b = 0, i = 0; b < nb; b++) {
			uint64_t len = MIN(rmin - at, e->elems - i);
			at = 0;
			uint64_t s4[4] = {0, 0, 0, 0};
			uint64_t k = 0, s = 0;
			for (; k + 4 <= len; k += 4)
				for (unsigned u = 0; u < 4; u++)
					s4[u] += tok[i + k + u];
			for (; k < len; k++)
				s += tok[i + k];
			bs[b] = s + s4[0] + s4[1] + s4[2] + s4[3];
			bl[b] = len;
			i += len;
		}
	}
	for (unsigned k = 0; k < nax; k++) {
		if (axis_init(&e->ax[k], qp->axis_run[k], qp->axis_count[k], e->first, e->elems))
			continue;
		if (!axis_tried(k, &e->ax[k], e->nsym, cols))
			continue;
		entries[k] = e->ax[k].entries;
		sum[k] = ss_get(e->ss, a, SS_SUM + k, (size_t)entries[k] * sizeof(uint64_t));
		cnt[k] = ss_get(e->ss, a, SS_SUMCNT + k, (size_t)entries[k] * sizeof(uint64_t));
		mean[k] = ss_get(e->ss, a, SS_MEAN + k, (size_t)entries[k] * sizeof(double));
		if (!sum[k] || !cnt[k] || !mean[k])
			return ALCM_E_NOMEM;
		memset(sum[k], 0, (size_t)entries[k] * sizeof(uint64_t));
		memset(cnt[k], 0, (size_t)entries[k] * sizeof(uint64_t));
		/* Pairs only for the axes that the refinement counts anyway (axis 0 and the
		 * last): on the others (4-dimensional weights) the pairs' arrays outgrew the
		 * block cache (alloc_internal.h), and page faults cost more than the passes
		 * saved. */
		uint32_t *pt = NULL;
		uint64_t *off = NULL;
		if (direct && k < 2 && entries[k] * e->ntok_all <= ((uint64_t)1 << 20)) {
			/* The second arrays only while axis 0's wait for its deferred refinement
			 * (more arrays are more fresh pages for a new encoder). */
			entry_pairs(e, e->ax[k], entries[k], ppt[0] != NULL, &pt, &off);
			if (!pt)
				return ALCM_E_NOMEM;
			for (uint64_t j = 0; j < entries[k]; j++) {
				uint64_t s = 0, n = 0;
				for (uint64_t q = off[j]; q < off[j + 1]; q++) {
					s += (uint64_t)pt[2 * q] * pt[2 * q + 1];
					n += pt[2 * q + 1];
				}
				sum[k][j] = s;
				cnt[k][j] = n;
			}
		} else if (bs && e->ax[k].run > 1) {
			/* A block lies within one run of the axis: its run is a multiple of rmin. */
			axis x = e->ax[k];
			for (uint64_t b = 0; b < nb; b++) {
				sum[k][x.j] += bs[b];
				cnt[k][x.j] += bl[b];
				axis_skip(&x, bl[b]);
			}
		} else {
			axis_sums(e, e->ax[k], sum[k], cnt[k]);
		}
		for (uint64_t j = 0; j < entries[k]; j++)
			mean[k][j] = cnt[k][j] ? (double)sum[k][j] / (double)cnt[k][j] : 0;
		unsigned mi = (*nm)++;
		model *m = &md[mi];
		m->id = mi;
		m->naxes = 1;
		m->ax[0] = k;
		if (!(m->lev[0] = ss_get(e->ss, a, SS_LEV + 2 * mi, (size_t)entries[k])))
			return ALCM_E_NOMEM;
		m->nlev = quantize_means(mean[k], cnt[k], entries[k], nlev, m->lev[0]);
		uint64_t en[1] = {entries[k]};
		if (pt)
			model_eval_pairs(e, m, en, pt, off);
		else
			model_eval(e, m, en);
		/* Refined (a pass over the chunk and a few over the entries each): axis 0 and the
		 * last always, and (below) the best of the others (refining only the two best of
		 * all, as first tried, left axis 0 unrefined in a conv gradient [64, 32, 3, 3],
		 * 0.9% larger). A refinement changes its own model only, so refining here, while
		 * the pairs are at hand, gives what refining after every evaluation would. */
		if (k < 2) {
			m->refined = 1;
			/* Of use only under its own estimate, and, with no third axis to take its
			 * place in the two-axis model (whose test is against 0.98 of one table's),
			 * only under one table's: above it, it is neither chosen nor let into the
			 * two-axis model, refined or not. */
			double target = ncand <= 2 ? fmin(m->bits, md[0].bits) : m->bits;
			/* Deferred where its estimate already passes the two-axis model's test (so
			 * that the test comes out as after refining): see below. */
			if (may_defer && pt && m->k >= 2 && m->bits < 0.98 * md[0].bits) {
				lb[mi] = refine_bound(pt, off, entries[k], m->k);
				pend[npend++] = mi;
				ppt[k] = pt;
				poff[k] = off;
			} else if ((st = model_refine(e, m, entries[k], pt, off, target))) {
				return st;
			}
		}
	}
	for (int r = 0; r < REFINE_FURTHER; r++) {
		unsigned bk = 0;
		for (unsigned k = 1; k < *nm; k++)
			if (!md[k].refined && (!bk || md[k].bits < md[bk].bits))
				bk = k;
		if (!bk)
			break;
		md[bk].refined = 1;
		if ((st = model_refine(e, &md[bk], entries[md[bk].ax[0]], NULL, NULL, md[bk].bits)))
			return st;
	}
	/* Both of the two best axes only when each alone saves at least 2% on one table: where
	 * neither does (most weights), their sum would not either, and the pass is saved. */
	unsigned b1 = 0, b2 = 0;
	for (unsigned k = 1; k < *nm; k++) {
		if (!b1 || md[k].bits < md[b1].bits) {
			b2 = b1;
			b1 = k;
		} else if (!b2 || md[k].bits < md[b2].bits) {
			b2 = k;
		}
	}
	if (b2 && md[b1].bits < 0.98 * md[0].bits && md[b2].bits < 0.98 * md[0].bits) {
		/* The axis of the longer run first: classes are filled a run at a time. */
		unsigned x0 = md[b1].ax[0], x1 = md[b2].ax[0];
		if (qp->axis_run[x1] > qp->axis_run[x0]) {
			unsigned t = x0;
			x0 = x1;
			x1 = t;
		}
		unsigned mi = (*nm)++;
		model *m = &md[mi];
		m->id = mi;
		m->naxes = 2;
		m->ax[0] = x0;
		m->ax[1] = x1;
		unsigned half = nlev;
		uint64_t en[2] = {entries[x0], entries[x1]};
		m->lev[0] = ss_get(e->ss, a, SS_LEV + 2 * mi, (size_t)en[0]);
		m->lev[1] = ss_get(e->ss, a, SS_LEV + 2 * mi + 1, (size_t)en[1]);
		rs = ss_get(e->ss, a, SS_RS, (size_t)en[1] * sizeof(double));
		if (!m->lev[0] || !m->lev[1] || !rs)
			return ALCM_E_NOMEM;
		memset(rs, 0, (size_t)en[1] * sizeof(double));
		/* Residuals of the second axis: its entry's mean token minus the mean of the first
		 * axis's means over its elements (its sums and counts are those of its own model). */
		residual_sums(e, e->ax[x1], e->ax[x0], mean[x0], rs);
		for (uint64_t j = 0; j < en[1]; j++)
			rs[j] = cnt[x1][j] ? ((double)sum[x1][j] - rs[j]) / (double)cnt[x1][j] : 0;
		unsigned n0 = quantize_means(mean[x0], cnt[x0], en[0], half, m->lev[0]);
		unsigned n1 = quantize_means(rs, cnt[x1], en[1], half, m->lev[1]);
		m->nlev = n0 + n1 - 1;
		model_eval(e, m, en);
	}
	/* The deferred refinements, the one of the lower bound first: each left out when its
	 * bound exceeds the estimate of another model (that model or a better one is chosen
	 * whether it is refined or not; refining the other deferred one only lowers that
	 * estimate), with a margin far above the estimates' rounding. */
	if (npend == 2 && lb[pend[1]] < lb[pend[0]]) {
		unsigned t = pend[0];
		pend[0] = pend[1];
		pend[1] = t;
	}
	for (unsigned q = 0; q < npend; q++) {
		unsigned d = pend[q];
		double other = INFINITY;
		for (unsigned k = 0; k < *nm; k++)
			if (k != d && md[k].bits < other)
				other = md[k].bits;
		if (!alcm_sym_refine_all && lb[d] - (1e-3 * (double)e->nsym + 64) > other)
			continue;
		unsigned ax = md[d].ax[0];
		if ((st = model_refine(e, &md[d], entries[ax], ppt[ax], poff[ax],
		                       fmin(md[d].bits, other))))
			return st;
	}
	return st;
}

/* ---- encoder -------------------------------------------------------------------------------- */

int alcm_symcode_encode(alcm_coder *c, alcm_buf *data, const alcm_qparams *qp,
                        const uint32_t *sym, uint64_t nsym, const uint8_t *bits,
                        uint64_t first, uint64_t elems, unsigned lanes)
{
	const alcm_allocator *a = alcm_coder_alloc(c);
	enc e;
	memset(&e, 0, sizeof(e));
	e.a = a;
	e.qp = qp;
	e.bits = bits;
	e.first = first;
	e.elems = elems;
	e.nsym = nsym;
	int st = ALCM_OK;
	uint64_t *cnt = NULL;
	uint32_t *freq = NULL;
	uint8_t *cls = NULL, *rbuf = NULL;
	alcm_rans_etab *et = NULL;
	model md[ALCM_QP_AXES + 2];
	memset(md, 0, sizeof(md));
	alcm_symstate *ss = symstate(c);
	if (!ss)
		return ALCM_E_NOMEM;
	e.ss = ss;
	log_tables_init();
	/* The bit streams keep their buffers from chunk to chunk. */
	bitw bw = {ss->bw, 0, 0, 0}, tw = {ss->tw, 0, 0, 0};
	bw.b.len = tw.b.len = 0;
	uint32_t fine[4][FINE_BINS];
	memset(fine, 0, sizeof(fine));
	e.tok = alcm_coder_scratch(c, ALCM_SCRATCH_TOK, (size_t)nsym);
	if (!e.tok) {
		st = ALCM_E_NOMEM;
		goto out;
	}

	/* The token alphabet: a hybrid configuration, or a palette of the symbols. */
	uint64_t i = 0;
	for (; i + 4 <= nsym; i += 4)
		for (unsigned k = 0; k < 4; k++)
			fine[k][fine_bin(sym[i + k])]++;
	for (; i < nsym; i++)
		fine[0][fine_bin(sym[i])]++;
	unsigned bins = 0;
	for (unsigned b = 0; b < FINE_BINS; b++) {
		fine[0][b] += fine[1][b] + fine[2][b] + fine[3][b];
		bins += fine[0][b] != 0;
	}
	unsigned ts, tm, npal = 0, maxbin = 0;
	double raw = 0, hybrid = choose_tokens(fine[0], &ts, &tm, &raw);
	for (unsigned b = 0; b < FINE_BINS; b++)
		maxbin = fine[0][b] ? b : maxbin;
	/* A palette can only win where the hybrid tokens spend raw bits, or leave gaps (a
	 * tensor dequantized from 8 bits, on a grid coarser than the step). Under 256 the fine
	 * bins are the symbols; above, a pass of hashing finds them. */
	uint32_t pal[256], pcnt[256], key[512], val[512];
	uint8_t lut[256];
	if (bins > 1 && maxbin < 256) {
		for (unsigned b = 0; b <= maxbin; b++)
			if (fine[0][b]) {
				lut[b] = (uint8_t)npal;
				pcnt[npal] = fine[0][b];
				pal[npal++] = b;
			}
	} else if (bins > 1 && bins <= 256 && raw > 0.01 * hybrid) {
		npal = find_palette(sym, nsym, fine[0], key, val, pal, pcnt, lut);
	}
	if (npal && !(coded_bits(pcnt, npal) + 8.0 * (double)palette_bytes(pal, npal) + 24 < hybrid))
		npal = 0;
	uint32_t base[ALCM_RANS_MAX_TOKENS];
	uint8_t nb[ALCM_RANS_MAX_TOKENS];
	uint32_t hist0[ALCM_RANS_MAX_TOKENS];
	/* The tokens' counts come from the fine histogram (a fine bin lies in one token: below
	 * 256 it is the symbol, above it keeps three top bits and tokens at most three), so the
	 * pass that makes the tokens counts nothing. */
	if (npal) {
		e.ntok = npal;
		memcpy(hist0, pcnt, npal * sizeof(uint32_t));
		uint8_t *restrict tok = e.tok; /* a local: stores of bytes would reload e.tok */
		for (uint64_t k = 0; k < nsym; k++)
			tok[k] = (uint8_t)(sym[k] < 256 ? lut[sym[k]] : val[pal_slot(key, sym[k])]);
	} else {
		e.ntok = tok_count(ts, tm);
		tok_tables(ts, tm, base, nb);
		memset(hist0, 0, sizeof(hist0));
		for (unsigned b = 0; b <= maxbin; b++) {
			unsigned n;
			hist0[tok_of(fine_rep(b), ts, tm, &n)] += fine[0][b];
		}
		tokens(e.tok, sym, nsym, ts, tm);
	}

	/* Models: one table, or classes of channels. */
	e.hist = ss_get(ss, a, SS_HIST, MAX_SUMS * (size_t)e.ntok * sizeof(uint32_t));
	e.hist4 = ss_get(ss, a, SS_HIST4, 4 * MAX_SUMS * (size_t)e.ntok * sizeof(uint32_t));
	e.cost = ss_get(ss, a, SS_COST, (MAX_SUMS + 1) * sizeof(*e.cost));
	e.nzt = ss_get(ss, a, SS_NZT, MAX_SUMS * (size_t)e.ntok * sizeof(uint16_t));
	if (!e.hist || !e.hist4 || !e.cost || !e.nzt) {
		st = ALCM_E_NOMEM;
		goto out;
	}
	md[0].k = 1;
	md[0].nlev = 1;
	md[0].bits = coded_bits(hist0, e.ntok);
	unsigned nm = 1, best = 0, ntu = e.ntok;
	/* Classes cannot save much where one table already codes under 1/32 bit a symbol
	 * (tensors quantized to nearly all zeros): not worth the passes. */
	if (md[0].bits > (double)nsym / 32) {
		if (!(e.lvl = alcm_coder_scratch(c, ALCM_SCRATCH_CLS, (size_t)nsym))) {
			st = ALCM_E_NOMEM;
			goto out;
		}
		for (unsigned t = ntu = 0; t < e.ntok; t++)
			ntu = hist0[t] ? t + 1 : ntu;
		e.ntok_all = e.ntok;
		e.ntok = ntu;
		st = models(&e, md, &nm);
		e.ntok = e.ntok_all;
		if (st)
			goto out;
	}
	for (unsigned k = 1; k < nm; k++)
		if (md[k].bits < md[best].bits)
			best = k;
	model *m = &md[best];
	unsigned K = m->k, A = K > 1 ? m->naxes : 0;

	/* The classes of the symbols, counts per class, tables. */
	cnt = ss_get(ss, a, SS_CNT, (size_t)K * e.ntok * sizeof(uint64_t));
	freq = ss_get(ss, a, SS_FREQ, (size_t)K * e.ntok * sizeof(uint32_t));
	et = ss_get(ss, a, SS_ETAB, K * sizeof(alcm_rans_etab));
	rbuf = alcm_coder_scratch(c, ALCM_SCRATCH_RANS, alcm_rans_bound((size_t)nsym));
	if (A)
		cls = alcm_coder_scratch(c, ALCM_SCRATCH_CLS, (size_t)nsym);
	if (!cnt || !freq || !et || !rbuf || (A && !cls)) {
		st = ALCM_E_NOMEM;
		goto out;
	}
	memset(cnt, 0, (size_t)K * e.ntok * sizeof(uint64_t));
	uint8_t sc[512];
	for (unsigned l = 0; l < 512; l++)
		sc[l] = m->map[l < m->nlev ? l : m->nlev - 1];
	if (A) {
		axis x[2] = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
		for (unsigned k = 0; k < A; k++)
			axis_init(&x[k], qp->axis_run[m->ax[k]], qp->axis_count[m->ax[k]], first, elems);
		fill_classes(cls, x, A, m->lev, sc, bits, elems);
	}
	if (A && e.hist_of == m) {
		/* The counts of each class are the sums of those of its levels, counted over the
		 * whole chunk when the model was scored: the same integers as counting the
		 * tokens of each class again (a level sum is under 64 and under m->nlev, so
		 * model_eval()'s clamp and sc's leave it as it is). */
		/* (Rows of ntu tokens: models() counted those.) */
		for (unsigned l = 0; l < m->nlev; l++) {
			const uint32_t *restrict row = e.hist + (size_t)l * ntu;
			uint64_t *restrict to = cnt + (size_t)m->map[l] * e.ntok;
			for (unsigned t = 0; t < ntu; t++)
				to[t] += row[t];
		}
	} else if (A && m->lh) {
		/* A refined model: its classes' counts as its refinement kept them (the same
		 * integers as counting again). */
		for (unsigned l = 0; l < m->nlev; l++) {
			const uint32_t *restrict row = m->lh + (size_t)l * ntu;
			uint64_t *restrict to = cnt + (size_t)m->map[l] * e.ntok;
			for (unsigned t = 0; t < ntu; t++)
				to[t] += row[t];
		}
	} else if (A) {
		/* Four histograms (hist has room for 4 x 16 classes): a count seldom waits on the
		 * one before it. */
		const size_t KT = (size_t)K * e.ntok, ntok = e.ntok;
		uint32_t *restrict h = e.hist;
		const uint8_t *restrict tok = e.tok;
		memset(h, 0, 4 * KT * sizeof(uint32_t));
		uint64_t k = 0;
		axis y = {0, 0, 0, 0, 0};
		axis_init(&y, qp->axis_run[m->ax[0]], qp->axis_count[m->ax[0]], first, elems);
		if (A == 1 && !bits && y.run > 1) {
			/* Runs of one class (fill_classes() set them so): each run's tokens into its
			 * class's histograms, without reading the classes back. */
			unsigned u = 0;
			while (k < nsym) {
				uint64_t len = MIN(y.run - y.r, nsym - k), q = 0;
				uint32_t *restrict row = h + (size_t)sc[m->lev[0][y.j]] * ntok;
				for (; q + 4 <= len; q += 4)
					for (unsigned w = 0; w < 4; w++)
						row[((u + w) & 3) * KT + tok[k + q + w]]++;
				for (; q < len; q++, u++)
					row[(u & 3) * KT + tok[k + q]]++;
				axis_skip(&y, len);
				k += len;
			}
		}
		for (; k + 4 <= nsym; k += 4)
			for (unsigned u = 0; u < 4; u++)
				h[u * KT + cls[k + u] * ntok + tok[k + u]]++;
		for (; k < nsym; k++)
			h[cls[k] * ntok + tok[k]]++;
		for (size_t j = 0; j < KT; j++)
			cnt[j] = (uint64_t)h[j] + h[KT + j] + h[2 * KT + j] + h[3 * KT + j];
	} else {
		for (unsigned t = 0; t < e.ntok; t++)
			cnt[t] = hist0[t];
	}

	/* Header (spec 6.5.6): tokens, classes, axes, map, palette. */
	uint8_t h[3] = {(uint8_t)(npal ? TOK_PALETTE | 8 : ts | tm << 4), (uint8_t)K, (uint8_t)A};
	st = alcm_buf_put(data, h, 3);
	for (unsigned k = 0; k < A && !st; k++) {
		unsigned ax = m->ax[k];
		axis x = {0, 0, 0, 0, 0};
		axis_init(&x, qp->axis_run[ax], qp->axis_count[ax], first, elems);
		st = alcm_buf_put_varint(data, qp->axis_run[ax]);
		if (!st)
			st = alcm_buf_put_varint(data, qp->axis_count[ax]);
		if (!st)
			st = alcm_stream_put(c, data, m->lev[k], (size_t)x.entries, qp->level);
	}
	if (!st && A) {
		uint8_t nmap = (uint8_t)(m->nlev - 1);
		st = alcm_buf_put(data, &nmap, 1);
		if (!st)
			st = alcm_buf_put(data, m->map, m->nlev);
	}
	if (!st && npal) {
		st = alcm_buf_put_varint(data, npal - 1);
		for (unsigned k = 0; k < npal && !st; k++)
			st = alcm_buf_put_varint(data, k ? pal[k] - pal[k - 1] - 1 : pal[0]);
	}
	/* Tables, rANS words, raw bits. */
	for (unsigned k = 0; k < K; k++)
		table_put(&tw, cnt + (size_t)k * e.ntok, e.ntok, freq + (size_t)k * e.ntok);
	bitw_flush(&tw);
	if (!st && !(st = tw.st))
		st = alcm_buf_put_varint(data, tw.b.len);
	if (!st)
		st = alcm_buf_put(data, tw.b.p, tw.b.len);
	if (st)
		goto out;
	for (unsigned k = 0; k < K; k++)
		alcm_rans_etab_build(&et[k], freq + (size_t)k * e.ntok, e.ntok);
	size_t rlen = alcm_rans_encode_lanes(rbuf, alcm_rans_bound((size_t)nsym), e.tok, cls,
	                                     (size_t)nsym, et, lanes);
	st = alcm_buf_put_varint(data, rlen);
	if (!st)
		st = alcm_buf_put(data, rbuf, rlen);
	uint64_t rawlen = 0;
	for (unsigned t = 0; t < e.ntok && !npal; t++)
		rawlen += (uint64_t)hist0[t] * nb[t];
	if (rawlen)
		raw_put(&bw, sym, e.tok, nsym, nb, hist0, e.ntok, rawlen);
	bitw_flush(&bw);
	if (!st)
		st = bw.st;
	if (!st)
		st = alcm_buf_put_varint(data, bw.b.len);
	if (!st)
		st = alcm_buf_put(data, bw.b.p, bw.b.len);
out:
	ss->bw = bw.b;
	ss->tw = tw.b;
	return st;
}

/* ---- decoder -------------------------------------------------------------------------------- */

/* The value of symbol z (zigzag) at step s and offset off (coding 17; 0 otherwise, which
 * adds nothing), stored at out in the dtype. */
ALCM_ALWAYS_INLINE void put_symbol(const int dtype, uint8_t *out, uint32_t z, double s,
                                   double off)
{
	int64_t q = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
	double r = (double)q * s;
	if (off != 0)
		r += off;
	alcm_store_float(dtype, out, 0, r);
}

/* Bytes of a float dtype, as a constant once the dtype is one. */
#define DTYPE_W(dt)                                                                        \
	((dt) == ALCM_DTYPE_F16 || (dt) == ALCM_DTYPE_BF16 ? 2 : (dt) == ALCM_DTYPE_F32 ? 4 : 8)

/* Values of n zigzag symbols as float32 (f32 1) or float64 at o: put_symbol()'s operations
 * (q = (z >> 1) ^ -(z & 1) fits int32; the offset added only when there is one: -0.0 + 0
 * would be +0.0), four or eight at a time. */
static void put_symbols_portable(int f32, uint8_t *o, const uint32_t *z, size_t n, double s,
                                 double off)
{
	for (size_t i = 0; i < n; i++) {
		double r = (double)(int32_t)((z[i] >> 1) ^ (0u - (z[i] & 1))) * s;
		if (off != 0)
			r += off;
		alcm_store_float(f32 ? ALCM_DTYPE_F32 : ALCM_DTYPE_F64, o, i, r);
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PUT_AVX2 1
/* Eight zigzag symbols v to values at o. */
__attribute__((target("avx2"), always_inline)) static inline void
put8_avx2(int f32, uint8_t *o, __m256i v, __m256d S, __m256d OFF, int add)
{
	const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
	__m256i q = _mm256_xor_si256(_mm256_srli_epi32(v, 1),
	                             _mm256_sub_epi32(zero, _mm256_and_si256(v, one)));
	__m256d lo = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(q)), S);
	__m256d hi = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(q, 1)), S);
	if (add) {
		lo = _mm256_add_pd(lo, OFF);
		hi = _mm256_add_pd(hi, OFF);
	}
	if (f32) {
		__m256 f = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
		_mm256_storeu_ps((float *)(void *)o, f);
	} else {
		_mm256_storeu_pd((double *)(void *)o, lo);
		_mm256_storeu_pd((double *)(void *)(o + 32), hi);
	}
}

__attribute__((target("avx2"))) static void put_symbols_avx2(int f32, uint8_t *o,
                                                             const uint32_t *z, size_t n,
                                                             double s, double off)
{
	const __m256d S = _mm256_set1_pd(s), OFF = _mm256_set1_pd(off);
	const int add = off != 0;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		put8_avx2(f32, o + (f32 ? 4 : 8) * i,
		          _mm256_loadu_si256((const __m256i *)(const void *)(z + i)), S, OFF, add);
	put_symbols_portable(f32, o + (f32 ? 4 : 8) * i, z + i, n - i, s, off);
}
#endif

ALCM_ALWAYS_INLINE void put_symbols(const int dtype, uint8_t *o, const uint32_t *z, size_t n,
                                    double s, double off)
{
	if (dtype == ALCM_DTYPE_F32 || dtype == ALCM_DTYPE_F64) {
#if PUT_AVX2
		if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx2")) {
			put_symbols_avx2(dtype == ALCM_DTYPE_F32, o, z, n, s, off);
			return;
		}
#endif
		put_symbols_portable(dtype == ALCM_DTYPE_F32, o, z, n, s, off);
		return;
	}
	for (size_t i = 0; i < n; i++)
		put_symbol(dtype, o + i * DTYPE_W(dtype), z[i], s, off);
}

/* What the raw-bit readers need of a chunk's tokens: their symbols' bases and raw bit counts,
 * the most raw bits of any token that occurs, and the configuration (s, m) of spec 6.5.7
 * (palette: tokens index a palette, no raw bits). */
typedef struct rawtok {
	const uint32_t *base;
	const uint8_t *nb;
	unsigned maxnb, s, m;
	int palette;
} rawtok;

/* The symbols of n tokens (n <= 512, raw bits of at most 56 each), every token's bits read
 * at a position summed from the bit lengths: no branch and no refill per token, so that the
 * loads do not wait on each other (the reader's refill test was mispredicted at random, most
 * of all in a cold predictor). Only where every 8-byte load stays inside the stream: 0 when
 * it would not (the caller reads with bitr_get then), else 1 with *br moved past the bits
 * as bitr_get would have moved it. */
static int raw_at(uint32_t *restrict z, const uint8_t *restrict tp, uint64_t n,
                  const rawtok *rt, bitr *br)
{
	const uint32_t *restrict base = rt->base;
	const uint8_t *restrict nb = rt->nb;
	const unsigned maxnb = rt->maxnb;
	if (br->bad)
		return 0;
	/* The unread bits start n bits before p (acc holds them; those bytes are the stream's). */
	const uint8_t *q = br->p - ((br->n + 7) >> 3);
	uint64_t pos = (0u - br->n) & 7, room = 8 * (uint64_t)(br->end - q);
	if (pos + n * maxnb + 64 > room) {
		uint64_t bits = 0;
		for (uint64_t i = 0; i < n; i++)
			bits += nb[tp[i]];
		if (pos + bits + 64 > room)
			return 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		unsigned t = tp[i], k = nb[t];
		uint64_t v = load64(q + (pos >> 3)) >> (pos & 7);
		z[i] = base[t] | (uint32_t)(v & ((1ull << k) - 1));
		pos += k;
	}
	bitr_seek(br, q, pos);
	return 1;
}

#if PUT_AVX2
/* raw_at() then put_symbols() in one pass, for float32 (f32 1) and float64, eight tokens a
 * step: a token's raw bit count and base computed from it (spec 6.5.7: token t >= 2^s has
 * k = s - m + ((t - 2^s) >> m) raw bits over ((2^m + ((t - 2^s) mod 2^m)) << k)), the
 * positions summed in the register, and the bits of the eight (at most 7 + 8 * 25 bits) cut
 * out of one 32-byte load by two word permutes and shifts (a gather cost twice as much),
 * while that load stays inside the stream. @return the tokens done (whole groups). */
__attribute__((target("avx2"), always_inline)) static inline uint64_t
raw_values_avx2_t(const int f32, const int add, uint8_t *o, const uint8_t *tp, uint64_t n,
                  const rawtok *rt, const uint8_t *q, uint64_t room, uint64_t *posp, double s,
                  double off)
{
	const __m256d S = _mm256_set1_pd(s), OFF = _mm256_set1_pd(off);
	const __m256i S1 = _mm256_set1_epi32(1 << rt->s), Mb = _mm256_set1_epi32(1 << rt->m);
	const __m256i M1 = _mm256_set1_epi32((1 << rt->m) - 1);
	const __m256i SM = _mm256_set1_epi32((int)(rt->s - rt->m)), one = _mm256_set1_epi32(1);
	const __m256i m31 = _mm256_set1_epi32(31), n32 = _mm256_set1_epi32(32);
	const __m256i mid = _mm256_set1_epi32(3);
	const __m256i upper = _mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1);
	const __m128i mc = _mm_cvtsi32_si128((int)rt->m);
	uint64_t pos = *posp, i = 0;
	/* A group's load is inside the stream, and so are its bits (at most 207 from pos). */
	for (; i + 8 <= n && pos + 256 <= room; i += 8) {
		__m256i t = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(tp + i)));
		__m256i d = _mm256_sub_epi32(t, S1), direct = _mm256_cmpgt_epi32(S1, t);
		__m256i k = _mm256_andnot_si256(direct, _mm256_add_epi32(_mm256_sra_epi32(d, mc), SM));
		__m256i b = _mm256_blendv_epi8(
			_mm256_sllv_epi32(_mm256_or_si256(Mb, _mm256_and_si256(d, M1)), k), t, direct);
		/* Exclusive sums of k from the group's first bit (in each half, then across). */
		__m256i x = _mm256_add_epi32(k, _mm256_slli_si256(k, 4));
		x = _mm256_add_epi32(x, _mm256_slli_si256(x, 8));
		x = _mm256_add_epi32(x, _mm256_and_si256(_mm256_permutevar8x32_epi32(x, mid), upper));
		__m256i at = _mm256_add_epi32(_mm256_set1_epi32((int)(pos & 7)), _mm256_sub_epi32(x, k));
		__m256i win = _mm256_loadu_si256((const __m256i *)(const void *)(q + (pos >> 3)));
		__m256i wi = _mm256_srli_epi32(at, 5), sh = _mm256_and_si256(at, m31);
		__m256i lo = _mm256_permutevar8x32_epi32(win, wi);
		__m256i hi = _mm256_permutevar8x32_epi32(win, _mm256_add_epi32(wi, one));
		/* A shift by 32 gives 0: the high word adds nothing at bit 0 of the low one. */
		__m256i w = _mm256_or_si256(_mm256_srlv_epi32(lo, sh),
		                            _mm256_sllv_epi32(hi, _mm256_sub_epi32(n32, sh)));
		w = _mm256_and_si256(w, _mm256_sub_epi32(_mm256_sllv_epi32(one, k), one));
		pos += (uint32_t)_mm256_extract_epi32(x, 7);
		put8_avx2(f32, o + (f32 ? 4 : 8) * i, _mm256_or_si256(b, w), S, OFF, add);
	}
	*posp = pos;
	return i;
}

/* The n symbols' values at o: 0 (nothing done, the caller takes the portable path) for a
 * palette or tokens of more than 25 raw bits. */
__attribute__((target("avx2"))) static int raw_values_avx2(int f32, uint8_t *o,
                                                           const uint8_t *tp, uint64_t n,
                                                           const rawtok *rt, bitr *br, double s,
                                                           double off)
{
	if (br->bad || rt->palette || rt->maxnb > 25)
		return 0;
	const uint8_t *q = br->p - ((br->n + 7) >> 3);
	uint64_t pos = (0u - br->n) & 7, room = 8 * (uint64_t)(br->end - q), i;
	if (f32 && off == 0)
		i = raw_values_avx2_t(1, 0, o, tp, n, rt, q, room, &pos, s, off);
	else if (f32)
		i = raw_values_avx2_t(1, 1, o, tp, n, rt, q, room, &pos, s, off);
	else if (off == 0)
		i = raw_values_avx2_t(0, 0, o, tp, n, rt, q, room, &pos, s, off);
	else
		i = raw_values_avx2_t(0, 1, o, tp, n, rt, q, room, &pos, s, off);
	/* The last tokens of the block, or of the stream: 8-byte loads while they fit, then
	 * the byte reader (which marks a stream read past its end). */
	uint32_t z[512];
	uint64_t j = i;
	for (; j < n && pos + 64 <= room; j++) {
		unsigned t = tp[j], k = rt->nb[t];
		uint64_t v = load64(q + (pos >> 3)) >> (pos & 7);
		z[j - i] = rt->base[t] | (uint32_t)(v & ((1ull << k) - 1));
		pos += k;
	}
	bitr_seek(br, q, pos);
	for (; j < n; j++)
		z[j - i] = rt->base[tp[j]] | bitr_get(br, rt->nb[tp[j]]);
	put_symbols_avx2(f32, o + (f32 ? 4 : 8) * i, z, (size_t)(n - i), s, off);
	return 1;
}
#endif

#if PUT_AVX2
/* The float32 values of n tokens from tab (16 entries used: tokens of 16 and more get
 * arbitrary values, to be written over), 32 a step: tab split into its four byte planes, a
 * byte shuffle per plane, the planes interleaved back (a load and a store per token cost
 * three times as much). */
__attribute__((target("avx2"))) static void table_f32_avx2(uint8_t *o, const uint8_t *tp,
                                                           uint64_t n, const uint8_t *tab)
{
	const __m128i bytes = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
	__m128i r[4];
	for (int k = 0; k < 4; k++)
		r[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(tab + 16 * k)),
		                        bytes);
	__m128i a = _mm_unpacklo_epi32(r[0], r[1]), b = _mm_unpackhi_epi32(r[0], r[1]);
	__m128i c = _mm_unpacklo_epi32(r[2], r[3]), d = _mm_unpackhi_epi32(r[2], r[3]);
	const __m256i p0 = _mm256_broadcastsi128_si256(_mm_unpacklo_epi64(a, c));
	const __m256i p1 = _mm256_broadcastsi128_si256(_mm_unpackhi_epi64(a, c));
	const __m256i p2 = _mm256_broadcastsi128_si256(_mm_unpacklo_epi64(b, d));
	const __m256i p3 = _mm256_broadcastsi128_si256(_mm_unpackhi_epi64(b, d));
	uint64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		__m256i t = _mm256_loadu_si256((const __m256i *)(const void *)(tp + i));
		__m256i b0 = _mm256_shuffle_epi8(p0, t), b1 = _mm256_shuffle_epi8(p1, t);
		__m256i b2 = _mm256_shuffle_epi8(p2, t), b3 = _mm256_shuffle_epi8(p3, t);
		__m256i lo01 = _mm256_unpacklo_epi8(b0, b1), hi01 = _mm256_unpackhi_epi8(b0, b1);
		__m256i lo23 = _mm256_unpacklo_epi8(b2, b3), hi23 = _mm256_unpackhi_epi8(b2, b3);
		/* Per 128-bit half: tokens 0-3, 4-7, 8-11, 12-15 of the half's sixteen. */
		__m256i e0 = _mm256_unpacklo_epi16(lo01, lo23), e1 = _mm256_unpackhi_epi16(lo01, lo23);
		__m256i e2 = _mm256_unpacklo_epi16(hi01, hi23), e3 = _mm256_unpackhi_epi16(hi01, hi23);
		__m256i *out = (__m256i *)(void *)(o + 4 * i);
		_mm256_storeu_si256(out, _mm256_permute2x128_si256(e0, e1, 0x20));
		_mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(e2, e3, 0x20));
		_mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(e0, e1, 0x31));
		_mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(e2, e3, 0x31));
	}
	for (; i < n; i++)
		memcpy(o + 4 * i, tab + 4 * (size_t)tp[i], 4);
}
#endif

/* Tokens of tp[0..n) at or above direct (a power of two, at most 256): those with a bit at or
 * above it, eight at a time. */
static uint64_t count_raw_portable(const uint8_t *tp, uint64_t n, unsigned direct)
{
	const uint64_t raw = 0x0101010101010101ull * (uint8_t)~(direct - 1);
	uint64_t nraw = 0, i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t m = load64(tp + i) & raw;
		m |= m >> 4;
		m |= m >> 2;
		m |= m >> 1;
		nraw += ((m & 0x0101010101010101ull) * 0x0101010101010101ull) >> 56;
	}
	for (; i < n; i++)
		nraw += tp[i] >= direct;
	return nraw;
}

#if PUT_AVX2
/* The same, 32 at a time. */
__attribute__((target("avx2,popcnt"))) static uint64_t count_raw_avx2(const uint8_t *tp,
                                                                     uint64_t n,
                                                                     unsigned direct)
{
	const __m256i raw = _mm256_set1_epi8((char)(uint8_t)~(direct - 1));
	const __m256i zero = _mm256_setzero_si256();
	uint64_t ndirect = 0, i = 0;
	for (; i + 32 <= n; i += 32) {
		__m256i t = _mm256_loadu_si256((const __m256i *)(const void *)(tp + i));
		__m256i d = _mm256_cmpeq_epi8(_mm256_and_si256(t, raw), zero);
		ndirect += (unsigned)__builtin_popcount((unsigned)_mm256_movemask_epi8(d));
	}
	return i - ndirect + count_raw_portable(tp + i, n - i, direct);
}
#endif

static uint64_t count_raw(const uint8_t *tp, uint64_t n, unsigned direct)
{
#if PUT_AVX2
	if (!alcm_rans_scalar_only && __builtin_cpu_supports("avx2") &&
	    __builtin_cpu_supports("popcnt"))
		return count_raw_avx2(tp, n, direct);
#endif
	return count_raw_portable(tp, n, direct);
}

/* The values of n tokens without mask at o: direct ones from tab, the others computed. In
 * blocks: a block without raw bits (most, usually) is a plain table lookup. */
ALCM_ALWAYS_INLINE void dequant_run(const int dtype, uint8_t *restrict o,
                                    const uint8_t *restrict tp, uint64_t n,
                                    const uint8_t *restrict tab, unsigned direct,
                                    const uint32_t *restrict base, const uint8_t *restrict nb,
                                    const rawtok *rt, bitr *br, double s, double off)
{
	const size_t W = DTYPE_W(dtype);
	for (uint64_t b0 = 0; b0 < n; b0 += 512) {
		uint64_t b1 = n - b0 < 512 ? n : b0 + 512;
		const uint64_t raw = 0x0101010101010101ull * (uint8_t)~(direct - 1);
		uint64_t nraw = count_raw(tp + b0, b1 - b0, direct);
		if (8 * nraw <= b1 - b0) {
			/* None or few raw tokens: every value from the table (a raw token's entry is
			 * written over next), then the raw ones in order, found eight at a time. */
#if PUT_AVX2
			if (dtype == ALCM_DTYPE_F32 && direct <= 16 && !alcm_rans_scalar_only &&
			    __builtin_cpu_supports("avx2"))
				table_f32_avx2(o + b0 * W, tp + b0, b1 - b0, tab);
			else
#endif
				for (uint64_t i = b0; i < b1; i++)
					memcpy(o + i * W, tab + (size_t)tp[i] * W, W);
			if (!nraw)
				continue;
			bitr b = *br;
			uint64_t i = b0;
			for (; i + 8 <= b1; i += 8)
				for (uint64_t m = load64(tp + i) & raw; m;) {
					unsigned k = (unsigned)__builtin_ctzll(m) >> 3, t = tp[i + k];
					m &= ~(0xffull << (8 * k));
					put_symbol(dtype, o + (i + k) * W, base[t] | bitr_get(&b, nb[t]), s,
					           off);
				}
			for (; i < b1; i++)
				if (tp[i] >= direct)
					put_symbol(dtype, o + i * W, base[tp[i]] | bitr_get(&b, nb[tp[i]]), s,
					           off);
			*br = b;
			continue;
		}
		/* Many raw tokens (gradients coded finely: most): every token's bits read, direct
		 * ones reading none, then all values in one branch-free pass (a branch per
		 * element, mispredicted at each raw token, and a scalar conversion per value cost
		 * twice as much). */
#if PUT_AVX2
		if ((dtype == ALCM_DTYPE_F32 || dtype == ALCM_DTYPE_F64) && !alcm_rans_scalar_only &&
		    __builtin_cpu_supports("avx2") &&
		    raw_values_avx2(dtype == ALCM_DTYPE_F32, o + b0 * W, tp + b0, b1 - b0, rt, br, s,
		                    off))
			continue;
#endif
		uint32_t z[512];
		if (!raw_at(z, tp + b0, b1 - b0, rt, br)) {
			bitr b = *br;
			for (uint64_t i = b0; i < b1; i++)
				z[i - b0] = base[tp[i]] | bitr_get(&b, nb[tp[i]]);
			*br = b;
		}
		put_symbols(dtype, o + b0 * W, z, b1 - b0, s, off);
	}
}

/* Tokens to values, one copy per float dtype (ALCM_FLOAT_DISPATCH). A direct token's value
 * comes from a table of the dtype's bytes, made per step; tokens with raw bits are
 * computed. Channels shorter than the table compute every value. */
ALCM_ALWAYS_INLINE int dequant_t(const int dtype, const alcm_qparams *qp, uint8_t *dst,
                                 uint64_t first, uint64_t elems, const uint8_t *bits,
                                 const uint8_t *tok, const uint32_t *base, const uint8_t *nb,
                                 const rawtok *rt, unsigned direct, unsigned ntab, bitr *br)
{
	const size_t W = DTYPE_W(dtype);
	uint8_t tab[256 * 8];
	memset(tab, 0, sizeof(tab)); /* entries of raw tokens are read, then written over */
	double tab_step = NAN, off = qp->offset;
	uint64_t si = 0, i = 0;
	uint8_t *o = dst + first * W;
	while (i < elems) {
		uint64_t ch, seg_end = alcm_channel_run(qp, first, i, elems, &ch);
		double s = qp->step[ch];
		if (seg_end - i < ntab) {
			for (; i < seg_end; i++) {
				if (pruned(bits, i)) {
					alcm_store_float(dtype, o, i, 0.0);
					continue;
				}
				unsigned t = tok[si++];
				put_symbol(dtype, o + i * W, t < direct ? base[t] : base[t] | bitr_get(br, nb[t]), s,
				           off);
			}
			continue;
		}
		if (!(s == tab_step)) {
			for (unsigned t = 0; t < ntab; t++)
				put_symbol(dtype, tab + t * W, base[t], s, off);
			tab_step = s;
		}
		if (!bits) {
			dequant_run(dtype, o + i * W, tok + si, seg_end - i, tab, direct, base, nb, rt, br, s,
			            off);
			si += seg_end - i;
			i = seg_end;
			continue;
		}
		for (; i < seg_end; i++) {
			if (pruned(bits, i)) {
				alcm_store_float(dtype, o, i, 0.0);
				continue;
			}
			unsigned t = tok[si++];
			if (t < direct)
				memcpy(o + i * W, tab + t * W, W);
			else
				put_symbol(dtype, o + i * W, base[t] | bitr_get(br, nb[t]), s, off);
		}
	}
	return ALCM_OK;
}

/* Tokens a class below which a chunk's tokens are found by a search of the cumulative
 * frequencies (at most 8 steps a token) rather than through slot tables (4096 stores a
 * class): either way a chunk costs at most about 8 steps a token beyond its bytes. */
#define SEARCH_BELOW 512

/* Reads a varint list of the palette: the first symbol, then gaps minus one; strictly
 * increasing symbols under 2^31 (spec 6.5.7). */
static int get_palette(alcm_cursor *cur, uint32_t *pal, unsigned *npal)
{
	uint64_t n1, v;
	int st = alcm_cur_varint(cur, &n1);
	if (st)
		return st;
	if (n1 > 255)
		return ALCM_E_CORRUPT;
	uint64_t z = 0;
	for (unsigned k = 0; k <= n1; k++) {
		if ((st = alcm_cur_varint(cur, &v)))
			return st;
		z = k ? z + v + 1 : v;
		if (v >= (1u << 31) || z >= (1u << 31))
			return ALCM_E_CORRUPT;
		pal[k] = (uint32_t)z;
	}
	*npal = (unsigned)n1 + 1;
	return ALCM_OK;
}

int alcm_symcode_decode_values(alcm_coder *c, alcm_cursor *cur, const alcm_qparams *qp,
                               uint8_t *dst, uint64_t first, uint64_t elems,
                               const uint8_t *bits, uint64_t nsym, uint8_t *scratch,
                               size_t scratch_len, unsigned lanes)
{
	const uint8_t *hp;
	int st = alcm_cur_bytes(cur, 3, &hp);
	if (st)
		return st;
	unsigned ts = hp[0] & 15, tm = (hp[0] >> 4) & 3, K = hp[1], A = hp[2];
	int palette = (hp[0] & TOK_PALETTE) != 0;
	if ((hp[0] & 0x80) || !tok_valid(ts, tm) || (palette && ts != 8) || K < 1 ||
	    K > ALCM_SYM_MAX_CLASSES || A > 2 || (A == 0) != (K == 1) || nsym > elems || !elems)
		return ALCM_E_CORRUPT;
	/* Scratch: tokens, classes, then the level lists (each at most one byte an element). */
	if (scratch_len < 4 * elems)
		return ALCM_E_ARG;
	uint8_t *tok = scratch, *cls = scratch + nsym, *lev[2] = {NULL, NULL};
	uint8_t *lp = scratch + 2 * nsym;
	axis x[2] = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
	for (unsigned k = 0; k < A; k++) {
		uint64_t run, count;
		if ((st = alcm_cur_varint(cur, &run)) || (st = alcm_cur_varint(cur, &count)))
			return st;
		if ((st = axis_init(&x[k], run, count, first, elems)))
			return st;
		lev[k] = lp;
		if ((st = alcm_stream_get(c, cur, lev[k], (size_t)x[k].entries)))
			return st;
		lp += x[k].entries;
	}
	uint8_t sc[512];
	memset(sc, 0, sizeof(sc));
	if (A) {
		uint8_t b;
		const uint8_t *mp;
		if ((st = alcm_cur_u8(cur, &b)) || (st = alcm_cur_bytes(cur, b + 1u, &mp)))
			return st;
		for (unsigned l = 0; l < 512; l++) {
			sc[l] = mp[l <= b ? l : b];
			if (sc[l] >= K)
				return ALCM_E_CORRUPT;
		}
	}
	uint32_t base[ALCM_RANS_MAX_TOKENS];
	uint8_t nb[ALCM_RANS_MAX_TOKENS];
	unsigned ntok = tok_count(ts, tm);
	if (palette) {
		memset(nb, 0, sizeof(nb));
		if ((st = get_palette(cur, base, &ntok)))
			return st;
	} else {
		tok_tables(ts, tm, base, nb);
	}
	/* Tables: a bit stream of its own. Slot tables cost 4096 stores a class whatever the
	 * chunk's length (a forged archive of one-element chunks with 16 classes each decoded
	 * at 1.3 MB/s, all of it building tables): a chunk of fewer than SEARCH_BELOW tokens a
	 * class finds its tokens by a search instead, so that the work stays bounded by the
	 * chunk's bytes and tokens. */
	int search = nsym < (uint64_t)SEARCH_BELOW * K;
	alcm_symstate *ss = NULL;
	if (!search) {
		if (!(ss = symstate(c)))
			return ALCM_E_NOMEM;
		if (!ss->dt && !(ss->dt = alcm_block_take_kind(alcm_coder_alloc(c), ss->kind,
		                                               ALCM_SYM_MAX_CLASSES *
		                                                   sizeof(alcm_rans_dtab),
		                                               &ss->dtcap)))
			return ALCM_E_NOMEM;
	}
	uint64_t tlen, rlen, blen;
	const uint8_t *tp, *rp, *bp;
	if ((st = alcm_cur_varint(cur, &tlen)) || (st = alcm_cur_bytes(cur, (size_t)tlen, &tp)))
		return st;
	bitr tr = {tp, tp + tlen, 0, 0, 0};
	unsigned maxtok = 0, nt[ALCM_SYM_MAX_CLASSES];
	uint16_t cum[ALCM_SYM_MAX_CLASSES][ALCM_RANS_MAX_TOKENS + 1];
	for (unsigned k = 0; k < K; k++) {
		uint32_t f[ALCM_RANS_MAX_TOKENS];
		unsigned last;
		if ((st = table_get(&tr, ntok, f, &last)))
			return st;
		if (search) {
			nt[k] = last + 1;
			cum[k][0] = 0;
			for (unsigned t = 0; t <= last; t++)
				cum[k][t + 1] = (uint16_t)(cum[k][t] + f[t]);
		} else {
			alcm_rans_dtab_build(&ss->dt[k], f, last + 1);
		}
		maxtok = last > maxtok ? last : maxtok;
	}
	if (!bitr_done(&tr))
		return ALCM_E_CORRUPT;
	if ((st = alcm_cur_varint(cur, &rlen)) || (st = alcm_cur_bytes(cur, (size_t)rlen, &rp)) ||
	    (st = alcm_cur_varint(cur, &blen)) || (st = alcm_cur_bytes(cur, (size_t)blen, &bp)))
		return st;
	if (A)
		fill_classes(cls, x, A, lev, sc, bits, elems);
	st = search ? alcm_rans_decode_search_lanes(tok, A ? cls : NULL, (size_t)nsym, cum, nt, rp,
	                                            (size_t)rlen, lanes)
	            : alcm_rans_decode_lanes(tok, A ? cls : NULL, (size_t)nsym, ss->dt, rp,
	                                     (size_t)rlen, lanes);
	if (st)
		return st;
	unsigned direct = palette ? 256 : ts == 8 ? 256u : 1u << ts;
	bitr br = {bp, bp + blen, 0, 0, 0};
	rawtok rt = {base, nb, 0, ts, tm, palette};
	for (unsigned t = 0; t <= maxtok; t++)
		rt.maxnb = nb[t] > rt.maxnb ? nb[t] : rt.maxnb;
	if ((st = ALCM_FLOAT_DISPATCH(qp->dtype, dequant_t, qp, dst, first, elems, bits, tok, base,
	                              nb, &rt, direct, MIN(maxtok + 1, direct), &br)))
		return st;
	return bitr_done(&br) ? ALCM_OK : ALCM_E_CORRUPT;
}
