/* The entropy predictor: tensor features, a 6-64-1 MLP, its training and its PRED payload
 * (spec 6.7). The encoder consults it; no decoder ever does. */
#include "codec_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define NF ALCM_PRED_FEATURES
#define NH ALCM_PRED_HIDDEN

/* Version 3: the seven features of spec 6.7.2; version 2 the first six of them (format 1.1);
 * version 1 weights (the older features) are still read, so that old archives open, but
 * predict nothing. */
#define PRED_VERSION 3
#define PRED_VERSION_2 2
#define PRED_VERSION_OLD 1
#define NF_V2 6

/* Features a predictor of this version reads. */
static int pred_nf(uint32_t version)
{
	return version == PRED_VERSION_OLD || version == PRED_VERSION_2 ? NF_V2 : NF;
}

/* Version 2 predicts a per-value rate and adds a fixed PRED_FIXED_BYTES per tensor (spec
 * 6.7.3): a tensor's sections cost 72 bytes when its values cost nothing and grow in 64-byte
 * steps, 32 wasted on average. Tiny tensors no longer dominate what the network learns. */
#define PRED_FIXED_BYTES 104.0

static double fixed_bits(float log2n)
{
	return 8 * PRED_FIXED_BYTES / exp2(log2n < 0 ? 0 : log2n);
}

static const alcm_predictor pred_default =
#include "predict_default.h"
	;

const alcm_predictor *alcm_predictor_default(void)
{
	return &pred_default;
}

static const alcm_predictor pred_default_v1 =
#include "predict_default_v1.h"
	;

const alcm_predictor *alcm_predictor_default_v1(void)
{
	return &pred_default_v1;
}

/* ---- features --------------------------------------------------------------------------- */

/*
 * Which elements are read (spec 6.7): every element of a tensor of up to SAMPLE_ALL; else
 * R = clamp(N / 512, 512, 16384) runs of RUN consecutive elements, one per stratum of N/R
 * elements at a pseudo-random place in it. About N/32 elements in a few hundred KB: the
 * second pass finds them in cache, features cost about 1% of packing, and a stride never
 * aliases with a row length.
 */
#define SAMPLE_ALL ((uint64_t)8192)
#define RUN 16
#define RUNS_MIN ((uint64_t)512)
#define RUNS_MAX ((uint64_t)16384)
#define BLOCK 256 /* values decoded at a time: 16 runs */

typedef struct sampler {
	uint64_t n, runs, q, r;
	int all;
} sampler;

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void sampler_init(sampler *sp, uint64_t n)
{
	uint64_t runs = n / 512;
	sp->n = n;
	sp->all = n <= SAMPLE_ALL;
	sp->runs = runs < RUNS_MIN ? RUNS_MIN : runs > RUNS_MAX ? RUNS_MAX : runs;
	sp->q = n / sp->runs;
	sp->r = n % sp->runs;
}

/* First element of run k. Stratum k is [floor(k n / R), floor((k + 1) n / R)), at least
 * 16 elements wide; q and r keep k n from overflowing. */
static uint64_t run_start(const sampler *sp, uint64_t k)
{
	uint64_t lo = k * sp->q + k * sp->r / sp->runs;
	uint64_t hi = (k + 1) * sp->q + (k + 1) * sp->r / sp->runs;
	return lo + mix64(k) % (hi - lo - (RUN - 1));
}

/* Every `every`-th special value's bit pattern, at most SPECIAL_MAX: the escapes' entropy. */
#define SPECIAL_MAX 1024
typedef struct specials {
	uint64_t v[SPECIAL_MAX], seen, every;
	uint64_t pair[2][2]; /* neighbours in the sample: [previous special][this one special] */
	size_t n;
} specials;

static uint64_t raw_bits(int dtype, const uint8_t *src, uint64_t i)
{
	switch (alcm_dtype_size(dtype)) {
	case 2: return alcm_load16(src + 2 * i);
	case 4: return alcm_load32(src + 4 * i);
	default: return alcm_load64(src + 8 * i);
	}
}

/* Decodes elements [i, i + cnt) to out[m...], dropping the values the quantizer stores
 * exactly (alcm_is_special: non-finite, -0, subnormal) into `sv` (may be NULL).
 * @return new m. */
static size_t decode(const alcm_tensor *t, uint64_t i, size_t cnt, double *out, uint64_t *idx,
                     size_t m, specials *sv)
{
	const uint8_t *src = t->data;
	int prev = -1;
	for (size_t j = 0; j < cnt; j++) {
		int special = alcm_is_special(t->dtype, src, i + j);
		out[m] = alcm_load_float(t->dtype, src, i + j);
		if (idx)
			idx[m] = i + j;
		m += !special;
		if (!sv)
			continue;
		if (prev >= 0)
			sv->pair[prev][special]++;
		prev = special;
		if (special && sv->seen++ % sv->every == 0 && sv->n < SPECIAL_MAX)
			sv->v[sv->n++] = raw_bits(t->dtype, src, i + j);
	}
	return m;
}

/* Element i as double, and whether alcm_is_special() holds for it (the value is then
 * meaningless); one copy per dtype through ALCM_FLOAT_DISPATCH. An element is not special
 * when it is +0 or its magnitude's bits lie in [smallest normal, infinity), one unsigned
 * comparison. A zero or normal half widens as alcm_half_to_float() widens it (exponent
 * rebased), without its call. */
ALCM_ALWAYS_INLINE double load_value(int dtype, const uint8_t *src, uint64_t i, int *special)
{
	uint32_t u;
	float f;
	switch (dtype) {
	case ALCM_DTYPE_F16: {
		uint32_t h = alcm_load16(src + 2 * i);
		*special = !(((h & 0x7fff) - 0x0400u < 0x7800u) | (h == 0));
		u = ((h & 0x8000) << 16) | (((h & 0x7fff) << 13) + (112u << 23));
		u &= 0u - (uint32_t)(h != 0);
		break;
	}
	case ALCM_DTYPE_BF16: {
		uint32_t h = alcm_load16(src + 2 * i);
		*special = !(((h & 0x7fff) - 0x0080u < 0x7f00u) | (h == 0));
		u = h << 16;
		break;
	}
	case ALCM_DTYPE_F32:
		u = alcm_load32(src + 4 * i);
		*special = !(((u & 0x7fffffffu) - 0x00800000u < 0x7f000000u) | (u == 0));
		break;
	default: {
		uint64_t b = alcm_load64(src + 8 * i);
		double d;
		*special = !(((b & 0x7fffffffffffffffull) - 0x0010000000000000ull <
		              0x7fe0000000000000ull) |
		             (b == 0));
		memcpy(&d, &b, 8);
		return d;
	}
	}
	memcpy(&f, &u, 4);
	return f;
}

/* decode() without idx and sv. */
ALCM_ALWAYS_INLINE size_t decode_plain_dt(int dtype, const uint8_t *src, uint64_t i, size_t cnt,
                                          double *out, size_t m)
{
	for (size_t j = 0; j < cnt; j++) {
		int special;
		out[m] = load_value(dtype, src, i + j, &special);
		m += !special;
	}
	return m;
}

#include "h16_simd.h"
#ifdef ALCM_H16_SIMD
/* decode_plain_dt() four values at a time where none of them is special (AVX2, F16C for
 * float16: every normal or zero value of the three dtypes converts exactly), the others one
 * at a time: the same values in out[m...]. Decoding was 20 instructions a value of the two
 * passes over a bfloat16 sample; alcm-pack -T1 --ratio 12 of the torch transformer's
 * gradients 62.8M -> 62.0M instructions (callgrind). */
__attribute__((target("avx2,f16c"))) static size_t decode_plain_avx2(int dtype,
                                                                    const uint8_t *src,
                                                                    uint64_t i, size_t cnt,
                                                                    double *out, size_t m)
{
	size_t j = 0;
	if (dtype == ALCM_DTYPE_F32) {
		const __m128i mag = _mm_set1_epi32(0x7fffffff), lo = _mm_set1_epi32(0x00800000);
		const __m128i flip = _mm_set1_epi32(INT32_MIN), zero = _mm_setzero_si128();
		/* 0x7f000000 with its top bit flipped: unsigned order as signed */
		const __m128i top = _mm_set1_epi32(-0x01000000);
		for (; j + 4 <= cnt; j += 4) {
			__m128i u = _mm_loadu_si128((const __m128i *)(const void *)(src + 4 * (i + j)));
			/* not special: |u| - lo < 0x7f000000 (unsigned: normal), or +0 (load_value) */
			__m128i d = _mm_xor_si128(_mm_sub_epi32(_mm_and_si128(u, mag), lo), flip);
			__m128i ok = _mm_or_si128(_mm_cmpgt_epi32(top, d), _mm_cmpeq_epi32(u, zero));
			if (_mm_movemask_ps(_mm_castsi128_ps(ok)) != 15) {
				m = decode_plain_dt(ALCM_DTYPE_F32, src, i + j, 4, out, m);
				continue;
			}
			_mm256_storeu_pd(out + m, _mm256_cvtps_pd(_mm_castsi128_ps(u)));
			m += 4;
		}
		return decode_plain_dt(ALCM_DTYPE_F32, src, i + j, cnt - j, out, m);
	}
	const int bf = dtype == ALCM_DTYPE_BF16;
	for (; j + 4 <= cnt; j += 4) {
		__m128i h = _mm_loadl_epi64((const __m128i *)(const void *)(src + 2 * (i + j)));
		__m128i sp = alcm_h16_special_x4(bf, _mm_cvtepu16_epi32(h));
		if (_mm_movemask_ps(_mm_castsi128_ps(sp))) {
			m = bf ? decode_plain_dt(ALCM_DTYPE_BF16, src, i + j, 4, out, m)
			       : decode_plain_dt(ALCM_DTYPE_F16, src, i + j, 4, out, m);
			continue;
		}
		_mm256_storeu_pd(out + m,
		                 _mm256_cvtps_pd(_mm256_castps256_ps128(alcm_h16_float_x8(bf, h))));
		m += 4;
	}
	return bf ? decode_plain_dt(ALCM_DTYPE_BF16, src, i + j, cnt - j, out, m)
	          : decode_plain_dt(ALCM_DTYPE_F16, src, i + j, cnt - j, out, m);
}
#endif

static size_t decode_plain(const alcm_tensor *t, uint64_t i, size_t cnt, double *out, size_t m)
{
#ifdef ALCM_H16_SIMD
	if (t->dtype != ALCM_DTYPE_F64 && !alcm_budget_scalar_only && alcm_cpu_avx2_f16c())
		return decode_plain_avx2(t->dtype, (const uint8_t *)t->data, i, cnt, out, m);
#endif
	return ALCM_FLOAT_DISPATCH(t->dtype, decode_plain_dt, (const uint8_t *)t->data, i, cnt, out,
	                           m);
}

/* The elements a block reads: n runs of len consecutive elements from start[j]. */
typedef struct segs {
	uint64_t start[BLOCK / RUN];
	size_t n, len;
} segs;

/* Number of blocks, and the values of block b that are not special in out; decode() with
 * idx and sv when either is given, else decode_plain(). `sg` (may be NULL) gets the
 * elements read. */
static uint64_t blocks(const sampler *sp)
{
	return sp->all ? (sp->n + BLOCK - 1) / BLOCK : (sp->runs + BLOCK / RUN - 1) / (BLOCK / RUN);
}

static size_t block(const alcm_tensor *t, const sampler *sp, uint64_t b, double *out,
                    uint64_t *idx, specials *sv, segs *sg)
{
	int plain = !idx && !sv;
	if (sp->all) {
		uint64_t i = b * BLOCK;
		size_t cnt = sp->n - i < BLOCK ? (size_t)(sp->n - i) : BLOCK;
		if (sg) {
			sg->start[0] = i;
			sg->n = 1;
			sg->len = cnt;
		}
		return plain ? decode_plain(t, i, cnt, out, 0) : decode(t, i, cnt, out, idx, 0, sv);
	}
	/* Runs are far apart: ask for all of their cache lines before decoding any. */
	uint64_t start[BLOCK / RUN], k0 = b * (BLOCK / RUN);
	size_t nr = sp->runs - k0 < BLOCK / RUN ? (size_t)(sp->runs - k0) : BLOCK / RUN, m = 0;
	size_t w = alcm_dtype_size(t->dtype);
	for (size_t j = 0; j < nr; j++) {
		start[j] = run_start(sp, k0 + j);
		const uint8_t *p = (const uint8_t *)t->data + start[j] * w;
		__builtin_prefetch(p);
		__builtin_prefetch(p + RUN * w - 1);
	}
	if (sg) {
		memcpy(sg->start, start, nr * sizeof(start[0]));
		sg->n = nr;
		sg->len = RUN;
	}
	for (size_t j = 0; j < nr; j++)
		m = plain ? decode_plain(t, start[j], RUN, out, m)
		          : decode(t, start[j], RUN, out, idx, m, sv);
	return m;
}

static float clampf(double v, double lo, double hi)
{
	return (float)(v < lo ? lo : v > hi ? hi : v);
}

/* Sums over the sample in four interleaved lanes, in a fixed order (results never vary
 * from run to run); each block's values start again at lane 0. */
typedef struct moments {
	double s1[4], s2[4];
	uint64_t cnt;
} moments;

static void pass1(const double *x, size_t n, double shift, moments *mo)
{
	size_t j = 0;
	for (; j + 4 <= n; j += 4)
		for (int l = 0; l < 4; l++)
			mo->s1[l] += x[j + l] - shift;
	for (; j < n; j++)
		mo->s1[0] += x[j] - shift;
	mo->cnt += n;
}

static void pass2(const double *x, size_t n, double mean, moments *mo)
{
	size_t j = 0;
	for (; j + 4 <= n; j += 4)
		for (int l = 0; l < 4; l++) {
			double d = x[j + l] - mean;
			mo->s2[l] += d * d;
		}
	for (; j < n; j++) {
		double d = x[j] - mean;
		mo->s2[0] += d * d;
	}
}

static double lanes(const double *v)
{
	return (v[0] + v[1]) + (v[2] + v[3]);
}

/* The share of a sample under each half step: hist[k] counts the values with k halves at
 * or below |x| (the smallest k with |x| < half[k]; the counts are integers: their sums do
 * not depend on the order the values come in). The halves, increasing, are padded with
 * +inf to HALVES. A value's binary exponent gives the halves at or below the start of its
 * binade (first[], over the binades from the smallest half's to the largest's); the few
 * halves inside the binade are then compared (a profile's are half an octave apart: two
 * at most, compared without a branch). The counts go to four histograms in turn (part[],
 * summed at the end), so that values landing on the same half do not wait for each
 * other's increment. */
#define HALVES 64

typedef struct halves {
	const double *hp;
	int elo, ehi; /* biased exponents of the smallest and largest half */
	uint8_t first[2048];
} halves;

static int exponent_of(double a)
{
	uint64_t u;
	memcpy(&u, &a, 8);
	return (int)((u >> 52) & 0x7ff);
}

static void halves_init(halves *h, const double *hp, int nstep)
{
	h->hp = hp;
	h->elo = exponent_of(hp[0]);
	h->ehi = exponent_of(hp[nstep - 1]);
	int k = 0;
	for (int e = h->elo; e <= h->ehi; e++) {
		uint64_t u = (uint64_t)e << 52; /* the binade's first value; 0 for the subnormals */
		double lo;
		memcpy(&lo, &u, 8);
		while (k < nstep && hp[k] <= lo)
			k++;
		h->first[e] = (uint8_t)k;
	}
}

static void count_small(const double *x, size_t n, const halves *h, int nstep,
                        uint32_t (*part)[HALVES])
{
	const double *hp = h->hp;
	for (size_t j = 0; j < n; j++) {
		double a = fabs(x[j]);
		int e = exponent_of(a);
		size_t p = e < h->elo ? 0 : e > h->ehi ? (size_t)nstep : h->first[e];
		p += hp[p] <= a;
		p += hp[p] <= a;
		while (hp[p] <= a)
			p++;
		part[j & 3][p]++;
	}
}

/*
 * The entropy feature (spec 6.7.2): at most ENT_MAX of the sampled values, every m-th in
 * sample order, sorted. Their order-0 entropy at a step is that of the symbols
 * floor(x / step + 1/2), one pass over the sorted values. Once more than one symbol in
 * ENT_SPARSE is distinct (and more than ENT_SPARSE symbols) the sample no longer sees the
 * distribution (its entropy saturates at log2 of its size): the step is doubled j times
 * until it does, and j times the entropy
 * lost over the next doubling (clamped to [0, 1]) is added: one bit per octave for a smooth
 * density, the share of non-zero values for a sparse one.
 */
#define ENT_MAX 4096
#define ENT_SPARSE 16
#define ENT_DOUBLINGS 64

/* Sorts n <= ENT_MAX finite values ascending: an LSD radix sort of their bits mapped to
 * unsigned order (negative: all bits flipped; positive: the sign bit set), 8 bits a pass,
 * the passes' counts taken in one read. A pass is skipped where every value has the same
 * byte (the low bytes of widened float16 and bfloat16 values): there a key's byte is that
 * byte or its complement as the value's sign is, and the sign is the last pass's, so the
 * pass would order no two keys that the later ones leave tied (when keys of both signs
 * were mapped, the byte differed between them and the pass ran: 4 passes, not 2, for a
 * bfloat16 sample; the torch transformer's 29 profiles 0.9M instructions fewer, callgrind).
 * Values of a dtype of at most 32 bits sort as float32 keys, exactly (they are float32
 * values), in half the passes. A profile sorts one sample per tensor; qsort's comparator
 * calls were 9% of alcm-pack --ratio on faceapi. */
#define SORT_BODY(T, BITS, LOAD, STORE)                                                     \
	do {                                                                                     \
		T a[ENT_MAX], b[ENT_MAX];                                                            \
		uint32_t cnt[BITS / 8][256];                                                         \
		memset(cnt, 0, sizeof(cnt));                                                         \
		const T top = (T)1 << (BITS - 1);                                                    \
		T any = 0, all = (T)~(T)0; /* the bits some value has, the bits every value has */    \
		for (size_t i = 0; i < n; i++) {                                                     \
			T u = LOAD(v[i]);                                                                \
			any |= u;                                                                        \
			all &= u;                                                                        \
			u = u & top ? ~u : u | top;                                                      \
			a[i] = u;                                                                        \
			for (int p = 0; p < BITS / 8; p++)                                               \
				cnt[p][(u >> (8 * p)) & 255]++;                                              \
		}                                                                                    \
		T *src = a, *dst = b, k0 = a[0];                                                     \
		for (int p = 0; p < BITS / 8; p++) {                                                 \
			uint32_t *c = cnt[p], sum = 0;                                                   \
			int sh = 8 * p;                                                                  \
			if (c[(k0 >> sh) & 255] == n || !(((any ^ all) >> sh) & 255))                    \
				continue; /* every key or every value has this byte: the order stands */    \
			for (int k = 0; k < 256; k++) {                                                  \
				uint32_t x = c[k];                                                           \
				c[k] = sum;                                                                  \
				sum += x;                                                                    \
			}                                                                                \
			for (size_t i = 0; i < n; i++)                                                   \
				dst[c[(src[i] >> sh) & 255]++] = src[i];                                     \
			T *tmp = src;                                                                    \
			src = dst;                                                                       \
			dst = tmp;                                                                       \
		}                                                                                    \
		for (size_t i = 0; i < n; i++)                                                       \
			v[i] = STORE(src[i] & top ? src[i] & ~top : ~src[i]);                            \
	} while (0)

static uint32_t f32_bits(double d)
{
	float f = (float)d;
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static double f32_value(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint64_t f64_bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return u;
}

static double f64_value(uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	return d;
}

static void sort_values(double *v, size_t n, int narrow)
{
	if (!n)
		return;
	if (narrow)
		SORT_BODY(uint32_t, 32, f32_bits, f32_value);
	else
		SORT_BODY(uint64_t, 64, f64_bits, f64_value);
}

static double symbol(double v, double inv)
{
	return floor(v * inv + 0.5);
}

/* The end of the run of symbol q that starts at i in the sorted sample: the symbols never
 * decrease, so a galloping search finds it in O(log run) evaluations of the same
 * expression, with the same result as a scan (coarse steps have long runs). */
static size_t run_end_exact(const double *v, size_t n, size_t i, double inv, double q)
{
	size_t lo = i, hi = i + 1, gap = 1; /* symbol(v[lo]) == q */
	while (hi < n && symbol(v[hi], inv) == q) {
		lo = hi;
		gap *= 2;
		hi = i + gap;
	}
	if (hi > n)
		hi = n;
	while (hi - lo > 1) { /* symbol(v[lo]) == q; hi == n or symbol(v[hi]) != q */
		size_t mid = lo + (hi - lo) / 2;
		if (symbol(v[mid], inv) == q)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

/* run_end_exact(), and the symbol at the end (*qend, unless the end is n). The same
 * galloping search compares values with `edge`, where the run should end ((q + 1/2) step),
 * instead of evaluating symbols; two symbols check the guess: the last value before it
 * has symbol q (then so has every value from i, as symbols never decrease) and the value
 * at it has not. When rounding puts a value on the wrong side of the edge (or the
 * symbols are past 2^53, infinite or NaN) the check fails and the exact search decides. */
static size_t run_end(const double *v, size_t n, size_t i, double inv, double q, double edge,
                      double *qend)
{
	size_t lo = i, hi = i + 1, gap = 1;
	while (hi < n && v[hi] <= edge) {
		lo = hi;
		gap *= 2;
		hi = i + gap;
	}
	if (hi > n)
		hi = n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] <= edge)
			lo = mid;
		else
			hi = mid;
	}
	if (hi - 1 == i || symbol(v[hi - 1], inv) == q) {
		if (hi == n)
			return n;
		double s = symbol(v[hi], inv);
		if (s != q) {
			*qend = s;
			return hi;
		}
	}
	hi = run_end_exact(v, n, i, inv, q);
	if (hi < n)
		*qend = symbol(v[hi], inv);
	return hi;
}

/*
 * Where runs are short, finding each end by a search costs more than computing every
 * symbol: after RUNS_GALLOP runs found by run_end() that average under RUN_SHORT values, the
 * rest of the sample is scanned value by value instead (four at a time with AVX2), each
 * symbol compared with the one before it. Symbols never decrease, so the runs are the same
 * either way: the same counts, the same entropies to the bit (tests/test_predict.c checks
 * the scan against the searches alone). Profiles, in-process, best of 20 to 100, a457e4d ->
 * this: the torch transformer's gradients 1.97 -> 1.72 ms, faceapi 30.2 -> 22.9 ms; a
 * [256, 64] bfloat16 tensor 292 -> 194 us. RUN_SHORT from 24 to 200 made no difference.
 */
#define RUNS_GALLOP 8
#define RUN_SHORT 48

/* c log2 c for run lengths up to ENT_MAX, as sample_entropy() computed each. */
static double xlog2x_tab[ENT_MAX + 1];
static pthread_once_t xlog2x_once = PTHREAD_ONCE_INIT;
static void xlog2x_fill(void)
{
	for (int c = 1; c <= ENT_MAX; c++)
		xlog2x_tab[c] = (double)c * log2((double)c);
}

/* Bit l set where the symbol of v[i + l] is not that of v[i + l - 1] (i >= 1). */
ALCM_ALWAYS_INLINE unsigned bounds4_portable(const double *v, size_t i, double inv)
{
	unsigned m = 0;
	for (unsigned l = 0; l < 4; l++)
		m |= (unsigned)!(symbol(v[i + l], inv) == symbol(v[i + l - 1], inv)) << l;
	return m;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static inline unsigned bounds4_avx2(const double *v, size_t i,
                                                                   double inv)
{
	const __m256d vi = _mm256_set1_pd(inv), half = _mm256_set1_pd(0.5);
	__m256d a = _mm256_floor_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_loadu_pd(v + i), vi), half));
	__m256d b = _mm256_floor_pd(
		_mm256_add_pd(_mm256_mul_pd(_mm256_loadu_pd(v + i - 1), vi), half));
	return (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_NEQ_UQ));
}
#define HAVE_BOUNDS_AVX2 1
#endif

/* The runs of the sorted v[from..n), a run starting at `from`: with `lim` (> 0), counts
 * them, stopping past lim; else adds c log2 c of each (in order) to *h. Returns the count. */
#define RUNS_SCAN_BODY(BOUNDS)                                                              \
	do {                                                                                     \
		size_t start = from, runs = 1, i = from + 1;                                         \
		for (; i + 4 <= n && !(lim && runs > lim); i += 4) {                                 \
			unsigned m = BOUNDS(v, i, inv);                                                  \
			while (m) {                                                                      \
				size_t j = i + (size_t)__builtin_ctz(m);                                     \
				m &= m - 1;                                                                  \
				if (!lim)                                                                    \
					*h += xlog2x_tab[j - start];                                             \
				start = j;                                                                   \
				runs++;                                                                      \
			}                                                                                \
		}                                                                                    \
		for (; i < n && !(lim && runs > lim); i++)                                           \
			if (!(symbol(v[i], inv) == symbol(v[i - 1], inv))) {                             \
				if (!lim)                                                                    \
					*h += xlog2x_tab[i - start];                                             \
				start = i;                                                                   \
				runs++;                                                                      \
			}                                                                                \
		if (!lim)                                                                            \
			*h += xlog2x_tab[n - start];                                                     \
		return runs;                                                                         \
	} while (0)

static size_t runs_scan_portable(const double *v, size_t from, size_t n, double inv, size_t lim,
                                 double *h)
{
	RUNS_SCAN_BODY(bounds4_portable);
}

#ifdef HAVE_BOUNDS_AVX2
__attribute__((target("avx2"))) static size_t runs_scan_avx2(const double *v, size_t from,
                                                             size_t n, double inv, size_t lim,
                                                             double *h)
{
	RUNS_SCAN_BODY(bounds4_avx2);
}
#endif

int alcm_predict_search_only = 0;

static size_t runs_scan(const double *v, size_t from, size_t n, double inv, size_t lim,
                        double *h)
{
#ifdef HAVE_BOUNDS_AVX2
	if (!alcm_budget_scalar_only && __builtin_cpu_supports("avx2"))
		return runs_scan_avx2(v, from, n, inv, lim, h);
#endif
	return runs_scan_portable(v, from, n, inv, lim, h);
}

/* Whether the runs found so far (d of them in v[0..i)) are short enough to scan the rest. */
static int runs_short(size_t d, size_t i)
{
	return !alcm_predict_search_only && d == RUNS_GALLOP && i < RUNS_GALLOP * RUN_SHORT;
}

/* Whether the sorted sample has at most max(n / ENT_SPARSE, ENT_SPARSE) runs of equal
 * symbols (distinct symbols) at a step, as entropy_feature asks. There are no more than
 * the span from the first symbol to the last allows (most coarse steps), and no fewer than
 * one plus the changes of symbol between lim + 1 values spread over the sample (most fine
 * steps, where nearly every value is distinct); else the runs are counted until one too
 * many. */
static int sample_sparse(const double *v, size_t n, double step)
{
	double inv = 1 / step, q = symbol(v[0], inv);
	size_t lim = n / ENT_SPARSE > ENT_SPARSE ? n / ENT_SPARSE : ENT_SPARSE, d = 0;
	if (symbol(v[n - 1], inv) - q < (double)lim)
		return 1;
	size_t gap = (n - 1) / lim, mid = lim / 2 * gap;
	if (gap && symbol(v[mid], inv) != symbol(v[mid + gap], inv)) {
		/* lim + 1 values gap apart, the last one at n - 1; first the two at the median,
		 * where symbols are densest */
		size_t j = 1;
		for (double prev = q; j <= lim; j++) {
			double s = symbol(v[j < lim ? j * gap : n - 1], inv);
			if (s == prev)
				break;
			prev = s;
		}
		if (j > lim)
			return 0;
	}
	for (size_t i = 0; i < n && d <= lim; d++) {
		if (runs_short(d, i))
			return d + runs_scan(v, i, n, inv, lim - d, NULL) <= lim;
		i = run_end(v, n, i, inv, q, (q + 0.5) * step, &q);
	}
	return d <= lim;
}

static double sample_entropy(const double *v, size_t n, double step)
{
	double inv = 1 / step, h = 0, q = symbol(v[0], inv);
	pthread_once(&xlog2x_once, xlog2x_fill);
	for (size_t i = 0, d = 0; i < n; d++) {
		if (runs_short(d, i)) {
			runs_scan(v, i, n, inv, 0, &h);
			break;
		}
		size_t j = run_end(v, n, i, inv, q, (q + 0.5) * step, &q);
		if (j - i > 1) { /* a run of one adds 1 log2(1) = 0 */
			double c = (double)(j - i);
			h += c * log2(c);
		}
		i = j;
	}
	return log2((double)n) - h / (double)n;
}

/* Sparseness and H of the sample at the grid's steps, each computed once: a profile asks
 * for 41 steps half an octave apart, and the doublings of step k land on step k + 2
 * exactly. */
typedef struct ent_memo {
	const double *step;
	int nstep;
	signed char sparse[ALCM_BUDGET_STEPS]; /* 0 not known yet, 1 sparse, -1 not */
	double h[ALCM_BUDGET_STEPS];
} ent_memo;

/* Grid index of step t reached from index k by doubling, or -1. */
static int memo_next(const ent_memo *em, int k, double t)
{
	return k >= 0 && k + 2 < em->nstep && em->step[k + 2] == t ? k + 2 : -1;
}

static int memo_sparse(ent_memo *em, int k, const double *v, size_t n, double t)
{
	if (k < 0)
		return sample_sparse(v, n, t);
	if (!em->sparse[k])
		em->sparse[k] = sample_sparse(v, n, t) ? 1 : -1;
	return em->sparse[k] > 0;
}

static double memo_entropy(ent_memo *em, int k, const double *v, size_t n, double t)
{
	if (k < 0)
		return sample_entropy(v, n, t);
	if (!(em->h[k] >= 0))
		em->h[k] = sample_entropy(v, n, t);
	return em->h[k];
}

static double entropy_feature(ent_memo *em, int k, const double *v, size_t n)
{
	if (!n)
		return 0;
	double step = em->step[k];
	int j = 0;
	for (; j < ENT_DOUBLINGS && isfinite(step * 4); j++) {
		if (memo_sparse(em, k, v, n, step)) /* a tiny sample is taken as it is */
			break;
		step *= 2;
		k = memo_next(em, k, step);
	}
	double h = memo_entropy(em, k, v, n, step);
	if (!j)
		return h;
	/* The slope of the last octave: 1 bit for a smooth density, the non-zero share for a
	 * sparse one. */
	double slope = h - memo_entropy(em, memo_next(em, k, step * 2), v, n, step * 2);
	return h + j * (slope < 0 ? 0 : slope > 1 ? 1 : slope);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

/* Order-0 entropy of the special values' bit patterns, sorted here. */
static double pattern_entropy(uint64_t *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(uint64_t), cmp_u64);
	double h = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && v[j] == v[i])
			j++;
		h += (double)(j - i) * log2((double)(j - i));
		i = j;
	}
	return log2((double)n) - h / (double)n;
}

static double xlog2x(double c)
{
	return c > 0 ? c * log2(c) : 0;
}

/*
 * What an escape costs in the escape block (spec 6.5.4, 6.7.3), in bits: the block holds
 * every escape's gap (a varint) then its raw bit pattern, coded by zstd, whose literals are
 * Huffman-coded bytes. The patterns cost `w` times the order-0 entropy of their bytes, all
 * byte positions pooled as zstd pools them, with the Miller-Madow correction ((distinct -
 * 1) / (2 N ln 2)) for a sample of at most 1024 patterns; the gaps cost the entropy rate of
 * "is this value special" (a first-order Markov chain fitted to neighbouring sampled values:
 * runs of subnormals cost little) per escape.
 */
static double escape_bits(const specials *sv, size_t w, double share)
{
	if (!sv->n || !(share > 0))
		return 0;
	uint64_t hist[256] = {0};
	for (size_t i = 0; i < sv->n; i++)
		for (size_t b = 0; b < w; b++)
			hist[(sv->v[i] >> (8 * b)) & 255]++;
	double nb = (double)(sv->n * w), h = 0;
	int distinct = 0;
	for (int k = 0; k < 256; k++) {
		h += xlog2x((double)hist[k]);
		distinct += hist[k] > 0;
	}
	h = log2(nb) - h / nb + (distinct - 1) / (2 * nb * 0.6931471805599453);
	/* Runs of escapes: a run's first gap is not 0, and zstd codes it as a new sequence
	 * whose cost grows with the run length L (measured on float16 tensors of subnormals with
	 * runs of 8 to 700 escapes: 5.3 log2 L - 3.6 bits a run). */
	double r1 = (double)(sv->pair[1][0] + sv->pair[1][1]);
	double start = r1 > 0 ? (double)sv->pair[1][0] / r1 : 1 - share;
	double run = start > 0 ? 5.3 * log2(1 / start) - 3.6 : 0;
	double gap = start * (run < 0 ? 0 : run > 40 ? 40 : run);
	return (double)w * (h < 8 ? h : 8) + gap;
}

/*
 * Feature 6 (PRED version 3, spec 6.7.2): what coding channels apart saves. The coder may
 * give each entry of axis 0 or of the last axis a class with its own table (spec 6.5.6);
 * channels of very different scales, as trained weights and gradients have, then cost far
 * less than their pooled entropy (feature 4) says. The sampled values are grouped into
 * at most CH_BUCKETS buckets of whole, consecutive channels, each bucket seeing at least
 * CH_MIN values on average; a bucket's spread is its mean square. The saving is the pooled
 * rate less the mean of the buckets' rates (each weighted by its share of the sample), a
 * rate being that of a Gaussian of that spread quantized with the step,
 * 0.5 log2(1 + 2 pi e (sd / step)^2) bits, less CH_CLASS_BITS per channel spread over the
 * tensor's values; the better of the two axes, clamped to [-8, 8]; 0 for a tensor of one
 * dimension or one whose axes have too few buckets.
 */
#define CH_BUCKETS 1024
#define CH_MIN 32
#define CH_CLASS_BITS 4.0
#define TWO_PI_E 17.079468445347132

typedef struct chan_axis {
	uint64_t count, run, width; /* channels, elements per channel entry, channels a bucket */
	size_t nb;                  /* buckets; < 2: the axis is not used */
	double s2[CH_BUCKETS];
	uint64_t n[CH_BUCKETS];
	/* chan_prepare(): the nu buckets with values, s2 then 2 pi e times their mean square, w
	 * their counts */
	double w[CH_BUCKETS];
	size_t nu;
	int ok;
	double tot, pool;
} chan_axis;

static void chan_init(chan_axis *ca, uint64_t count, uint64_t run, uint64_t sampled)
{
	uint64_t nb = sampled / CH_MIN;
	if (nb > CH_BUCKETS)
		nb = CH_BUCKETS;
	if (nb > count)
		nb = count;
	ca->count = count;
	ca->run = run;
	ca->nb = 0;
	if (nb < 2)
		return;
	ca->width = (count + nb - 1) / nb;
	ca->nb = (size_t)((count + ca->width - 1) / ca->width);
	for (size_t b = 0; b < ca->nb; b++) {
		ca->s2[b] = 0;
		ca->n[b] = 0;
	}
}

static void chan_add(chan_axis *ca, const double *x, const uint64_t *idx, size_t n)
{
	if (ca->nb < 2)
		return;
	for (size_t j = 0; j < n; j++) {
		/* floor(i / L) mod K: below K already on axis 0; i itself on the last axis. */
		uint64_t q = ca->run == 1 ? idx[j] : idx[j] / ca->run;
		size_t b = (size_t)((q < ca->count ? q : q % ca->count) / ca->width);
		ca->s2[b] += x[j] * x[j];
		ca->n[b]++;
	}
}

/* chan_add() for the values of elements start, start + 1, ...: the channel and its bucket
 * follow the element by counting, without chan_add's divisions per value. */
static void chan_add_run(chan_axis *ca, const double *x, uint64_t start, size_t n)
{
	if (ca->nb < 2 || !n)
		return;
	uint64_t q = ca->run == 1 ? start : start / ca->run;
	uint64_t c = q < ca->count ? q : q % ca->count, r = ca->run == 1 ? 0 : start % ca->run;
	uint64_t b = c / ca->width, cw = c % ca->width;
	/* The bucket's sum and count in registers while the bucket stays (the same additions
	 * in the same order: the same sums). */
	double s2 = ca->s2[b];
	uint64_t cnt = ca->n[b];
	for (size_t j = 0; j < n; j++) {
		s2 += x[j] * x[j];
		cnt++;
		if (++r < ca->run)
			continue;
		r = 0;
		uint64_t was = b;
		if (++c == ca->count)
			c = b = cw = 0;
		else if (++cw == ca->width) {
			cw = 0;
			b++;
		}
		if (b != was) {
			ca->s2[was] = s2;
			ca->n[was] = cnt;
			s2 = ca->s2[b];
			cnt = ca->n[b];
		}
	}
	ca->s2[b] = s2;
	ca->n[b] = cnt;
}

/* 2 pi e times a mean square over step^2 gives a Gaussian's rate. */
static double gauss_rate(double c, double step2)
{
	return 0.5 * log2(1 + c / step2);
}

/* What chan_saving needs at every step, once: the pooled and per-bucket mean squares times
 * 2 pi e, the empty buckets left out. */
static void chan_prepare(chan_axis *ca)
{
	if (ca->nb < 2)
		return;
	double s2 = 0, tot = 0;
	for (size_t b = 0; b < ca->nb; b++) {
		s2 += ca->s2[b];
		tot += (double)ca->n[b];
	}
	ca->ok = tot > 0 && s2 > 0 && isfinite(s2);
	ca->tot = tot;
	ca->pool = TWO_PI_E * (s2 / tot);
	ca->nu = 0;
	for (size_t b = 0; b < ca->nb; b++)
		if (ca->n[b]) {
			ca->s2[ca->nu] = TWO_PI_E * (ca->s2[b] / (double)ca->n[b]);
			/* a bucket's 2 pi e mean square beyond the doubles: no saving at any step
			 * (inf / step^2 or inf * 0 in chan_sum; log2_ge1(NaN) is finite) */
			if (!(ca->s2[ca->nu] <= DBL_MAX))
				ca->ok = 0;
			ca->w[ca->nu] = (double)ca->n[b];
			ca->n[ca->nu++] = ca->n[b];
		}
}

/* log2(x) for x >= 1 and finite, within 3e-14: the exponent, and the mantissa m taken to
 * [sqrt(1/2), sqrt(2)) by the series 2 atanh(t) / ln 2, t = (m - 1) / (m + 1), |t| < 0.172,
 * to t^17. Plain arithmetic (no libm call), so that chan_saving's loop over the buckets
 * vectorizes: libm's log2 and a division per bucket and step were half of a profile of the
 * torch transformer's [256, 64] tensors (41 steps x 320 buckets). */
#define LOG2_C0 2.8853900817779268 /* 2 / (1 ln 2) */
#define LOG2_C1 0.9617966939259756 /* 2 / (3 ln 2) */
#define LOG2_C2 0.5770780163555853 /* 2 / (5 ln 2) */
#define LOG2_C3 0.4121985831111324 /* 2 / (7 ln 2) */
#define LOG2_C4 0.3205988979753252 /* 2 / (9 ln 2) */
#define LOG2_C5 0.2623081892525388 /* 2 / (11 ln 2) */
#define LOG2_C6 0.22195308321368667 /* 2 / (13 ln 2) */
#define LOG2_C7 0.19235933878519512 /* 2 / (15 ln 2) */
#define LOG2_C8 0.16972882833987804 /* 2 / (17 ln 2) */
static double log2_ge1(double x)
{
	uint64_t u;
	memcpy(&u, &x, sizeof(u));
	double e = (double)(int64_t)((u >> 52) & 0x7ff) - 1023;
	u = (u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
	double m;
	memcpy(&m, &u, sizeof(m));
	double up = m > 1.4142135623730951 ? 1.0 : 0.0;
	m *= 1 - 0.5 * up;
	e += up;
	double t = (m - 1) / (m + 1), t2 = t * t;
	double p = LOG2_C7 + t2 * LOG2_C8;
	p = LOG2_C6 + t2 * p;
	p = LOG2_C5 + t2 * p;
	p = LOG2_C4 + t2 * p;
	p = LOG2_C3 + t2 * p;
	p = LOG2_C2 + t2 * p;
	p = LOG2_C1 + t2 * p;
	p = LOG2_C0 + t2 * p;
	return e + t * p;
}

/* The sum over the buckets of w log2(1 + s2 / step^2) in four lanes (bucket b in lane b mod 4
 * but the last n mod 4, in lane 0), the lanes added (0 + 1) + (2 + 3); the largest
 * 1 + s2 / step^2 in *top. */
static double chan_sum(const double *s2, const double *w, size_t n, double inv2, double *top)
{
	double h[4] = {0, 0, 0, 0}, t[4] = {0, 0, 0, 0};
	size_t b = 0;
	for (; b + 4 <= n; b += 4)
		for (int l = 0; l < 4; l++) {
			double x = 1 + s2[b + l] * inv2;
			t[l] = x > t[l] ? x : t[l];
			h[l] += w[b + l] * log2_ge1(x);
		}
	for (; b < n; b++) {
		double x = 1 + s2[b] * inv2;
		t[0] = x > t[0] ? x : t[0];
		h[0] += w[b] * log2_ge1(x);
	}
	*top = fmax(fmax(t[0], t[1]), fmax(t[2], t[3]));
	return (h[0] + h[1]) + (h[2] + h[3]);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* chan_sum() four buckets at a time: log2_ge1's operations in the same order on each lane
 * (the exponent made a double exactly by way of 2^52), so the same sums. */
__attribute__((target("avx2"))) static double chan_sum_avx2(const double *s2, const double *w,
                                                            size_t n, double inv2, double *top)
{
	const __m256d one = _mm256_set1_pd(1), half = _mm256_set1_pd(0.5), vinv = _mm256_set1_pd(inv2);
	const __m256d r2 = _mm256_set1_pd(1.4142135623730951), two52 = _mm256_set1_pd(0x1p52);
	const __m256d bias = _mm256_set1_pd(1023);
	const __m256i mant = _mm256_set1_epi64x(0x000fffffffffffffll);
	const __m256i onebits = _mm256_set1_epi64x(0x3ff0000000000000ll);
	const __m256i expmask = _mm256_set1_epi64x(0x7ff);
	const __m256i magic = _mm256_set1_epi64x(0x4330000000000000ll);
	__m256d h = _mm256_setzero_pd(), t = _mm256_setzero_pd();
	size_t b = 0;
	for (; b + 4 <= n; b += 4) {
		__m256d x = _mm256_add_pd(one, _mm256_mul_pd(_mm256_loadu_pd(s2 + b), vinv));
		t = _mm256_blendv_pd(t, x, _mm256_cmp_pd(x, t, _CMP_GT_OQ));
		__m256i u = _mm256_castpd_si256(x);
		__m256d e = _mm256_sub_pd(
		    _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(
		                      _mm256_and_si256(_mm256_srli_epi64(u, 52), expmask), magic)),
		                  two52),
		    bias);
		__m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(u, mant), onebits));
		__m256d up = _mm256_and_pd(_mm256_cmp_pd(m, r2, _CMP_GT_OQ), one);
		m = _mm256_mul_pd(m, _mm256_sub_pd(one, _mm256_mul_pd(half, up)));
		e = _mm256_add_pd(e, up);
		__m256d q = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one));
		__m256d q2 = _mm256_mul_pd(q, q);
		__m256d p = _mm256_add_pd(_mm256_set1_pd(LOG2_C7),
		                          _mm256_mul_pd(q2, _mm256_set1_pd(LOG2_C8)));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C6), _mm256_mul_pd(q2, p));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C5), _mm256_mul_pd(q2, p));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C4), _mm256_mul_pd(q2, p));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C3), _mm256_mul_pd(q2, p));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C2), _mm256_mul_pd(q2, p));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C1), _mm256_mul_pd(q2, p));
		p = _mm256_add_pd(_mm256_set1_pd(LOG2_C0), _mm256_mul_pd(q2, p));
		__m256d lg = _mm256_add_pd(e, _mm256_mul_pd(q, p));
		h = _mm256_add_pd(h, _mm256_mul_pd(_mm256_loadu_pd(w + b), lg));
	}
	double hl[4], tl[4];
	_mm256_storeu_pd(hl, h);
	_mm256_storeu_pd(tl, t);
	for (; b < n; b++) {
		double x = 1 + s2[b] * inv2;
		tl[0] = x > tl[0] ? x : tl[0];
		hl[0] += w[b] * log2_ge1(x);
	}
	*top = fmax(fmax(tl[0], tl[1]), fmax(tl[2], tl[3]));
	return (hl[0] + hl[1]) + (hl[2] + hl[3]);
}
#endif

static double chan_saving(const chan_axis *ca, double step, uint64_t elems, int *used)
{
	if (ca->nb < 2 || !ca->ok)
		return 0;
	double inv2 = 1 / (step * step), top, h;
	if (!(inv2 <= DBL_MAX)) {
		/* step^2 subnormal: 1 / step^2 overflows where s2 / step^2 need not (float64
		 * tensors of spread 1e-162 to 1e-154); libm's way, as before */
		double step2 = step * step;
		h = 0;
		for (size_t b = 0; b < ca->nu; b++)
			h += ca->w[b] * log2(1 + ca->s2[b] / step2);
		top = 1;
		if (!isfinite(h))
			return 0;
	} else
#if defined(__x86_64__) && defined(__GNUC__)
	if (!alcm_predict_scalar_only && __builtin_cpu_supports("avx2"))
		h = chan_sum_avx2(ca->s2, ca->w, ca->nu, inv2, &top);
	else
#endif
		h = chan_sum(ca->s2, ca->w, ca->nu, inv2, &top);
	/* Spreads beyond 2^1000 steps overflow the squares: no saving then (spec 6.7.2). */
	if (!(top <= DBL_MAX))
		return 0;
	double c = gauss_rate(ca->pool, step * step) - 0.5 * h / ca->tot -
	           CH_CLASS_BITS * (double)ca->count / (double)elems;
	if (!isfinite(c))
		return 0;
	*used = 1;
	return c;
}

/* Mantissa bits of a float dtype, its relative resolution. */
static int mantissa_bits(int dtype)
{
	return dtype == ALCM_DTYPE_F16 ? 10 : dtype == ALCM_DTYPE_BF16 ? 7
	                                    : dtype == ALCM_DTYPE_F32 ? 23 : 52;
}

/* Features at `nstep` steps (each > 0, increasing when nstep > 1) in two passes over the
 * sample: f[0] and f[2] do not depend on the step. */
static int features_at(const alcm_tensor *t, const double *step, int nstep,
                       float (*feat)[ALCM_PRED_FEATURES], alcm_pred_escapes *eo)
{
	uint64_t n, nb;
	if (!t || !feat || !step || nstep < 1 || nstep > ALCM_BUDGET_STEPS ||
	    !alcm_dtype_is_float(t->dtype) || t->ndim > ALCM_MAX_NDIM ||
	    alcm_shape_elements(t->shape, t->ndim, &n) ||
	    alcm_mul_u64(n, alcm_dtype_size(t->dtype), &nb) || nb != t->nbytes ||
	    (!t->data && n))
		return ALCM_E_ARG;
	double half[HALVES];
	for (int k = 0; k < nstep; k++) {
		if (!(step[k] > 0) || !isfinite(step[k]) || (k && !(step[k] > step[k - 1])))
			return ALCM_E_ARG;
		half[k] = step[k] / 2;
	}
	for (int k = nstep; k < HALVES; k++)
		half[k] = INFINITY;
	sampler sp;
	sampler_init(&sp, n);
	uint64_t nblk = blocks(&sp);
	double buf[BLOCK];

	/* Pass 1: mean and spread, shifted by the first finite value against cancellation. */
	moments a;
	memset(&a, 0, sizeof(a));
	double shift = 0;
	for (uint64_t b = 0; b < nblk; b++) {
		size_t got = block(t, &sp, b, buf, NULL, NULL, NULL);
		if (!a.cnt && got)
			shift = buf[0];
		pass1(buf, got, shift, &a);
	}
	float f0 = (float)(n ? log2((double)n) : 0.0);
	int mb = mantissa_bits(t->dtype);
	/* Special values are stored exactly: about their raw bits each. */
	double total = sp.all ? (double)n : (double)(sp.runs * RUN), raw = 8.0 * (double)alcm_dtype_size(t->dtype);
	double esc = total > 0 ? 1 - (double)a.cnt / total : 0;
	uint64_t nspecial = (uint64_t)total - a.cnt;
	specials sv;
	memset(sv.pair, 0, sizeof(sv.pair));
	sv.seen = 0;
	sv.n = 0;
	sv.every = nspecial > SPECIAL_MAX ? (nspecial + SPECIAL_MAX - 1) / SPECIAL_MAX : 1;
	if (eo)
		eo->share = eo->bits = 0;
	if (!a.cnt) {
		for (uint64_t b = 0; b < nblk && eo && n; b++)
			block(t, &sp, b, buf, NULL, &sv, NULL);
		if (eo && n) {
			eo->share = 1;
			eo->bits = escape_bits(&sv, alcm_dtype_size(t->dtype), 1);
		}
		for (int k = 0; k < nstep; k++) {
			feat[k][0] = f0;
			feat[k][1] = -30.0f;
			feat[k][2] = 30.0f;
			feat[k][3] = 1.0f;
			feat[k][4] = (float)(n ? raw : 0.0);
			feat[k][5] = -30.0f;
			feat[k][6] = 0.0f;
		}
		return ALCM_OK;
	}
	double inv = 1.0 / (double)a.cnt, s1 = lanes(a.s1) * inv;
	double mean = shift + s1;

	/* Pass 2: the spread about the mean, the share under half a step, the entropy sample
	 * (every `every`-th value), the channels' spreads. Without special values (pass 1 saw
	 * as many values as it read) the blocks' values are the elements of their runs in
	 * order, and the channels follow the runs; else decode() gives each value's element. */
	moments c;
	memset(&c, 0, sizeof(c));
	uint32_t part[4][HALVES];
	memset(part, 0, sizeof(part));
	double ent[ENT_MAX];
	uint64_t every = (a.cnt + ENT_MAX - 1) / ENT_MAX, skip = 0;
	size_t ne = 0;
	chan_axis ch[2];
	uint64_t idx[BLOCK];
	segs sg;
	halves hv;
	halves_init(&hv, half, nstep);
	int use_ch = t->ndim >= 2;
	if (use_ch) {
		chan_init(&ch[0], t->shape[0], n / t->shape[0], a.cnt);
		chan_init(&ch[1], t->shape[t->ndim - 1], 1, a.cnt);
	}
	for (uint64_t b = 0; b < nblk; b++) {
		size_t got = nspecial ? block(t, &sp, b, buf, idx, &sv, NULL)
		                      : block(t, &sp, b, buf, NULL, NULL, &sg);
		for (int ax = 0; ax < 2 && use_ch; ax++) {
			if (nspecial) {
				chan_add(&ch[ax], buf, idx, got);
				continue;
			}
			for (size_t j = 0, off = 0; j < sg.n && off + sg.len <= got; j++, off += sg.len)
				chan_add_run(&ch[ax], buf + off, sg.start[j], sg.len);
		}
		pass2(buf, got, mean, &c);
		count_small(buf, got, &hv, nstep, part);
		uint64_t j = skip;
		for (; j < got && ne < ENT_MAX; j += every)
			ent[ne++] = buf[j];
		skip = j < got ? 0 : j - got;
	}
	sort_values(ent, ne, alcm_dtype_size(t->dtype) <= 4);
	if (use_ch) {
		chan_prepare(&ch[0]);
		chan_prepare(&ch[1]);
	}
	double maxabs = ne ? fmax(fabs(ent[0]), fabs(ent[ne - 1])) : 0;
	if (eo && esc > 0) {
		eo->share = esc;
		eo->bits = escape_bits(&sv, alcm_dtype_size(t->dtype), esc);
	}
	double hesc = esc > 0 ? pattern_entropy(sv.v, sv.n) : 0;
	double m2 = lanes(c.s2) * inv;
	double sd = sqrt(m2);
	uint64_t hist[HALVES];
	for (int k = 0; k < HALVES; k++)
		hist[k] = (uint64_t)part[0][k] + part[1][k] + part[2][k] + part[3][k];
	uint64_t small = hist[0];
	ent_memo em;
	em.step = step;
	em.nstep = nstep;
	for (int k = 0; k < nstep; k++) {
		em.sparse[k] = 0;
		em.h[k] = -1;
	}
	for (int k = 0; k < nstep; k++) {
		float *f = feat[k];
		f[0] = f0;
		/* A spread under 2^-30 of the step (or none) codes like a constant. */
		f[1] = sd > 0 && isfinite(sd) ? clampf(log2(sd / step[k]), -30, 30) : -30.0f;
		/* How far the step sits above the dtype's resolution at one sd: below it the
		 * values are a lattice the coder sees (spec 6.5.11). */
		f[2] = clampf(mb - (double)f[1], -30, 30);
		if (k)
			small += hist[k];
		f[3] = (float)((double)small * inv);
		f[4] = clampf((1 - esc) * entropy_feature(&em, k, ent, ne) + esc * hesc, 0, 64);
		/* The largest symbol's size: wide symbols (an offset, heavy tails) cost more than
		 * their entropy. */
		f[5] = maxabs > 0 ? clampf(log2(maxabs / step[k]), -30, 30) : -30.0f;
		/* Channels apart: the better axis's saving. */
		double sv6 = 0;
		int used = 0;
		for (int ax = 0; ax < 2 && use_ch; ax++) {
			int u = 0;
			double g = chan_saving(&ch[ax], step[k], n, &u);
			if (u && (!used || g > sv6))
				sv6 = g;
			used |= u;
		}
		f[6] = clampf((1 - esc) * sv6, -8, 8);
	}
	return ALCM_OK;
}

int alcm_tensor_features(const alcm_tensor *t, double step, float feat[ALCM_PRED_FEATURES])
{
	if (!feat)
		return ALCM_E_ARG;
	return features_at(t, &step, 1, (float (*)[ALCM_PRED_FEATURES])feat, NULL);
}

int alcm_tensor_features_steps(const alcm_tensor *t, const double *step, int nstep,
                               float (*feat)[ALCM_PRED_FEATURES])
{
	return features_at(t, step, nstep, feat, NULL);
}

int alcm_tensor_features_esc(const alcm_tensor *t, const double *step, int nstep,
                             float (*feat)[ALCM_PRED_FEATURES], alcm_pred_escapes *esc)
{
	return features_at(t, step, nstep, feat, esc);
}

int alcm_tensor_escapes(const alcm_tensor *t, alcm_pred_escapes *esc)
{
	float f[1][ALCM_PRED_FEATURES];
	double step = 1;
	if (!esc)
		return ALCM_E_ARG;
	return features_at(t, &step, 1, f, esc);
}

/* ---- inference -------------------------------------------------------------------------- */

/*
 * The network runs on PRED_LANES feature vectors at once, one per lane of GCC's vector
 * extensions (AVX2 where the CPU has it, else SSE2): each lane takes the same operations in
 * the same order, with no fused multiply-add (-ffp-contract=off), so a step's prediction
 * does not depend on the lane it runs in nor on the CPU (tests/test_predict.c). A profile
 * predicts at 41 steps: one step at a time the network was a fifth of
 * alcm_budget_profile_make()'s time (a[j]'s sum over the features and y's over the units
 * are chains of dependent additions).
 */
#define PRED_LANES 4
int alcm_predict_scalar_only = 0;
typedef double vdbl __attribute__((vector_size(8 * PRED_LANES)));
typedef uint64_t vu64 __attribute__((vector_size(8 * PRED_LANES)));

/*
 * tanh for inference: (1 - t) / (1 + t) with t = e^(-2|a|), e^x as 2^k e^r (|r| <= ln2 / 2,
 * its Taylor series to r^12, under 2e-16 off), 2^k made from the bits of the rounding: no
 * branches, calls or conversions. Within 4e-16 of libm's tanh over [-40, 40]
 * (tests/test_predict.c); libm's tanh (expm1) took 8M of the 39M instructions of the torch
 * transformer's 29 profiles (alcm-pack --ratio 8, callgrind). tanh is +-1 to the last bit
 * beyond |a| = 19.1: |a| over TANH_EDGE is clamped to it first (a NaN stays a NaN).
 */
#define TANH_EDGE 350.0
/* The body of tanh_lanes() for a vector type VD of doubles (VU: its 64-bit integers). */
#define TANH_LANES_BODY(VD, VU)                                                              \
	do {                                                                                     \
		const VU sign = (VU){0} + 0x8000000000000000ull;                                     \
		VU ab = (VU)*a;                                                                      \
		VU big = (VU)((VD)(ab & ~sign) > TANH_EDGE);                                         \
		ab = (big & ((VU)((VD){0} + TANH_EDGE) | (ab & sign))) | (~big & ab);                \
		VD x = -2 * (VD)(ab & ~sign);                                                        \
		VD kd = x * 1.4426950408889634 + 0x1.8p52; /* x / ln 2 rounded, in the low bits */   \
		VD kf = kd - 0x1.8p52;                                                               \
		VD r = (x - kf * 6.93147180369123816490e-01) - kf * 1.90821492927058770002e-10;      \
		VD e = (VD){0} + 1.0 / 479001600;                                                    \
		e = e * r + 1.0 / 39916800;                                                          \
		e = e * r + 1.0 / 3628800;                                                           \
		e = e * r + 1.0 / 362880;                                                            \
		e = e * r + 1.0 / 40320;                                                             \
		e = e * r + 1.0 / 5040;                                                              \
		e = e * r + 1.0 / 720;                                                               \
		e = e * r + 1.0 / 120;                                                               \
		e = e * r + 1.0 / 24;                                                                \
		e = e * r + 1.0 / 6;                                                                 \
		e = e * r + 0.5;                                                                     \
		e = e * r + 1;                                                                       \
		e = e * r + 1;                                                                       \
		/* 2^k: k + 1023 in the exponent field (kd's low bits hold k + 2^51 + 2^52) */       \
		VD t = e * (VD)(((VU)kd - 0x4338000000000000ull + 1023u) << 52);                     \
		VD h = (1 - t) / (1 + t);                                                            \
		*a = (VD)((VU)h | (ab & sign));                                                      \
	} while (0)

/* In place: a vector argument or result would change the ABI between targets. */
static inline __attribute__((always_inline)) void tanh_lanes(vdbl *a)
{
	TANH_LANES_BODY(vdbl, vu64);
}

double alcm_pred_tanh(double a)
{
	vdbl v = (vdbl){0} + a;
	tanh_lanes(&v);
	return v[0];
}

/* The network on W feature vectors f[0 .. W - 1] into out, in vectors VD of W doubles. */
#define FORWARD_LANES_BODY(VD, W, TANH)                                                      \
	do {                                                                                     \
		int nf = pred_nf(p->version);                                                        \
		VD z[NF], h[NH];                                                                     \
		for (int k = 0; k < nf; k++)                                                         \
			for (int l = 0; l < (W); l++)                                                    \
				z[k][l] = ((double)f[l][k] - p->mean[k]) / p->scale[k];                      \
		for (int j = 0; j < NH; j++) {                                                       \
			VD a = (VD){0} + (double)p->b1[j];                                               \
			for (int k = 0; k < nf; k++)                                                     \
				a += (double)p->w1[j][k] * z[k];                                             \
			TANH(&a);                                                                        \
			h[j] = a;                                                                        \
		}                                                                                    \
		VD y = (VD){0} + (double)p->b2;                                                      \
		for (int j = 0; j < NH; j++)                                                         \
			y += (double)p->w2[j] * h[j];                                                    \
		for (int l = 0; l < (W); l++)                                                        \
			out[l] = y[l];                                                                   \
	} while (0)

static void forward_lanes(const alcm_predictor *p, const float *const f[PRED_LANES],
                          double out[PRED_LANES])
{
	FORWARD_LANES_BODY(vdbl, PRED_LANES, tanh_lanes);
}

/*
 * Eight lanes at once where the CPU has AVX-512 (PRED_WIDE), for a profile's 41 steps: six
 * runs of the network instead of eleven. Each lane still takes the same operations in the
 * same order, so the same predictions to the bit (tests/test_predict.c). A profile of 64
 * bfloat16 values (alcm_budget_profile_make, best of 5 runs of 300) 17.0 -> 12.8-13.5 us, the
 * network having been two thirds of it; one of 16384 values (144 us) is mostly features.
 */
#define PRED_WIDE 8
typedef double vdbl8 __attribute__((vector_size(8 * PRED_WIDE)));
typedef uint64_t vu64_8 __attribute__((vector_size(8 * PRED_WIDE)));
int alcm_predict_avx512 = 1;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void
forward_lanes_avx2(const alcm_predictor *p, const float *const f[PRED_LANES],
                   double out[PRED_LANES])
{
	FORWARD_LANES_BODY(vdbl, PRED_LANES, tanh_lanes);
}

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
tanh_lanes8(vdbl8 *a)
{
	TANH_LANES_BODY(vdbl8, vu64_8);
}

__attribute__((target("avx512f"))) static void
forward_lanes_avx512(const alcm_predictor *p, const float *const f[PRED_WIDE],
                     double out[PRED_WIDE])
{
	FORWARD_LANES_BODY(vdbl8, PRED_WIDE, tanh_lanes8);
}
#endif

/* How many feature vectors forward() takes at once: PRED_WIDE where the CPU has AVX-512,
 * else PRED_LANES. */
static int forward_width(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (!alcm_predict_scalar_only && alcm_predict_avx512 && __builtin_cpu_supports("avx512f"))
		return PRED_WIDE;
#endif
	return PRED_LANES;
}

/* The network on `width` (forward_width()) feature vectors f into out. */
static void forward(const alcm_predictor *p, int width, const float *const *f, double *out)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (width == PRED_WIDE) {
		forward_lanes_avx512(p, f, out);
		return;
	}
	if (!alcm_predict_scalar_only && __builtin_cpu_supports("avx2")) {
		forward_lanes_avx2(p, f, out);
		return;
	}
#endif
	forward_lanes(p, f, out);
}

/* An escape leaves symbol 0 in the symbol stream: what the stream costs more than the
 * other values' symbols alone, per value, when a share q0 of those are symbol 0 too
 * (feature 3): the entropy of the mixture less theirs. Nothing when they are all 0. */
static double placeholders(double share, double q0)
{
	q0 = q0 < 0 ? 0 : q0 > 1 ? 1 : q0;
	double keep = 1 - share, p0 = share + keep * q0;
	double h = -xlog2x(p0) + keep * xlog2x(q0) - keep * (1 - q0) * log2(keep > 0 ? keep : 1);
	return h > 0 ? h : 0;
}

/* The network's rate applies to the values that are not escapes (spec 6.7.3). A spread under
 * 2^-30 of the step (feature 1 at its floor) quantizes to one symbol: such values cost
 * nothing but the fixed bytes, and they are rare in training (the zeros among subnormal
 * gradients are); those steps, a feature that is not finite (64), and the lanes left over
 * in the last group of PRED_LANES take no lane of their own. */
void alcm_predict_bits_steps(const alcm_predictor *p, const float (*feat)[ALCM_PRED_FEATURES],
                             int n, const alcm_pred_escapes *esc, double *out)
{
	double share = esc ? esc->share : 0, eb = esc ? esc->bits : 0;
	int ok = p && feat && p->version != PRED_VERSION_OLD && share >= 0 && share <= 1 &&
	         eb >= 0 && isfinite(eb);
	int width = n > PRED_LANES ? forward_width() : PRED_LANES;
	int run[PRED_WIDE], nr = 0;
	for (int i = 0; i < n; i++) {
		int fin = ok;
		for (int k = 0; fin && k < pred_nf(p->version); k++)
			fin = isfinite(feat[i][k]);
		out[i] = fin ? 0 : -1; /* -1: not finite; 0: no network; else the network's */
		if (fin && feat[i][1] > -30)
			run[nr++] = i;
		if (nr == width || (i + 1 == n && nr)) {
			const float *f[PRED_WIDE];
			double y[PRED_WIDE];
			for (int l = 0; l < width; l++)
				f[l] = feat[run[l < nr ? l : 0]];
			forward(p, width, f, y);
			for (int l = 0; l < nr; l++)
				out[run[l]] = isnan(y[l]) ? 64 : y[l] > 0 ? y[l] : 0; /* a hand-made NaN */
			nr = 0;
		}
	}
	for (int i = 0; i < n; i++) {
		if (out[i] < 0) {
			out[i] = 64;
			continue;
		}
		double r = out[i];
		double y = (share > 0 ? (1 - share) * r + share * eb + placeholders(share, feat[i][3])
		                      : r) +
		           fixed_bits(feat[i][0]);
		out[i] = y < 64 ? y : 64;
	}
}

double alcm_predict_bits_escapes(const alcm_predictor *p, const float feat[ALCM_PRED_FEATURES],
                                 const alcm_pred_escapes *esc)
{
	double y = 64;
	if (feat)
		alcm_predict_bits_steps(p, (const float(*)[ALCM_PRED_FEATURES])feat, 1, esc, &y);
	return y;
}

double alcm_predict_bits(const alcm_predictor *p, const float feat[ALCM_PRED_FEATURES])
{
	return alcm_predict_bits_escapes(p, feat, NULL);
}

/* ---- training --------------------------------------------------------------------------- */

typedef struct rng {
	uint64_t s;
} rng;

/* splitmix64: the generator of the spec's sample (mix64), stepped. */
static uint64_t rng_next(rng *r)
{
	uint64_t z = mix64(r->s);
	r->s += 0x9e3779b97f4a7c15ull;
	return z;
}

static double rng_unit(rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_gauss(rng *r)
{
	double u = rng_unit(r), v = rng_unit(r);
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Parameters as one flat vector, in PRED order after the normalisation. */
#define NP (NH * NF + NH + NH + 1)
#define P_W1 0
#define P_B1 (NH * NF)
#define P_W2 (P_B1 + NH)
#define P_B2 (P_W2 + NH)

#define BATCH 32
#define MEMBERS 4 /* the network is the mean of this many nets of NH / MEMBERS units */
#define DEFAULT_EPOCHS 400

typedef struct trainer {
	double w[NP], g[NP], m[NP], v[NP];
	double mean[NF], scale[NF];
	double ymean, yscale;
} trainer;

/* The output of the member made of hidden units j0 .. j1 - 1 (its own output bias is b2). */
static double net(const trainer *tr, const double *z, double *h, int j0, int j1)
{
	double y = tr->w[P_B2];
	for (int j = j0; j < j1; j++) {
		double a = tr->w[P_B1 + j];
		for (int k = 0; k < NF; k++)
			a += tr->w[P_W1 + j * NF + k] * z[k];
		h[j] = tanh(a);
		y += tr->w[P_W2 + j] * h[j];
	}
	return y;
}

static void normalise(const trainer *tr, const float *x, double *z)
{
	for (int k = 0; k < NF; k++)
		z[k] = ((double)x[k] - tr->mean[k]) / tr->scale[k];
}

/* Mean and standard deviation of each feature; a feature that never varies gets scale 1. */
static void fit_normalisation(trainer *tr, const float (*x)[NF], const float *y,
                              const float *keep, size_t n)
{
	for (int k = 0; k < NF; k++) {
		double s = 0, s2 = 0;
		for (size_t i = 0; i < n; i++)
			s += x[i][k];
		double mu = s / (double)n;
		for (size_t i = 0; i < n; i++)
			s2 += ((double)x[i][k] - mu) * ((double)x[i][k] - mu);
		double sd = sqrt(s2 / (double)n);
		tr->mean[k] = (float)mu;
		tr->scale[k] = sd > 1e-6 * (fabs(mu) + 1) ? (float)sd : 1.0f;
	}
	/* The target's moments over the samples that are mostly not escapes. */
	double s = 0, s2 = 0, m = 0;
	for (size_t i = 0; i < n; i++)
		if (keep[i] >= 0.5f) {
			s += y[i];
			m++;
		}
	if (!m)
		m = 1;
	tr->ymean = s / m;
	for (size_t i = 0; i < n; i++)
		if (keep[i] >= 0.5f)
			s2 += (y[i] - tr->ymean) * (y[i] - tr->ymean);
	double sd = sqrt(s2 / m);
	tr->yscale = sd > 1e-6 ? sd : 1.0;
}

/* Trains the member made of hidden units j0 .. j1 - 1 alone, with its own output bias (b2,
 * from 0), Adam state and sample order: minibatch Adam on the squared error of the whole
 * prediction, the rate a cosine decay from lr0 to a tenth of it. */
static void fit_member(trainer *tr, const float (*x)[NF], const float *rate, const float *keep,
                       size_t n, size_t *order, rng *rg, unsigned epochs, int j0, int j1)
{
	const double b1 = 0.9, b2 = 0.999, eps = 1e-8, lr0 = 3e-3;
	uint64_t step = 0, total = (uint64_t)epochs * ((n + BATCH - 1) / BATCH);
	double z[NF], h[NH];
	tr->w[P_B2] = 0;
	memset(tr->m, 0, sizeof(tr->m));
	memset(tr->v, 0, sizeof(tr->v));
	for (unsigned ep = 0; ep < epochs; ep++) {
		for (size_t i = n - 1; i > 0; i--) {
			size_t j = (size_t)(rng_next(rg) % (i + 1));
			size_t tmp = order[i];
			order[i] = order[j];
			order[j] = tmp;
		}
		for (size_t s = 0; s < n; s += BATCH) {
			size_t nb = n - s < BATCH ? n - s : BATCH;
			memset(tr->g, 0, sizeof(tr->g));
			for (size_t b = 0; b < nb; b++) {
				size_t i = order[s + b];
				normalise(tr, x[i], z);
				double u = keep[i];
				double err = u * net(tr, z, h, j0, j1) -
				             (rate[i] - u * tr->ymean) / tr->yscale;
				double d = 2 * err * u / (double)nb;
				tr->g[P_B2] += d;
				for (int j = j0; j < j1; j++) {
					tr->g[P_W2 + j] += d * h[j];
					double dj = d * tr->w[P_W2 + j] * (1 - h[j] * h[j]);
					tr->g[P_B1 + j] += dj;
					for (int k = 0; k < NF; k++)
						tr->g[P_W1 + j * NF + k] += dj * z[k];
				}
			}
			/* Adam with a cosine decay to a tenth of the rate. */
			step++;
			double lr = lr0 * (0.1 + 0.45 * (1 + cos(3.141592653589793 * (double)step /
			                                         (double)total)));
			double c1 = 1 - pow(b1, (double)step), c2 = 1 - pow(b2, (double)step);
			for (int q = 0; q < NP; q++) {
				tr->m[q] = b1 * tr->m[q] + (1 - b1) * tr->g[q];
				tr->v[q] = b2 * tr->v[q] + (1 - b2) * tr->g[q] * tr->g[q];
				tr->w[q] -= lr * (tr->m[q] / c1) / (sqrt(tr->v[q] / c2) + eps);
			}
		}
	}
}

int alcm_predictor_train(alcm_predictor *p, const float (*x)[ALCM_PRED_FEATURES],
                         const float *y, size_t n, uint64_t seed, unsigned epochs,
                         double *mse)
{
	return alcm_predictor_train_escapes(p, x, y, NULL, n, seed, epochs, mse);
}

int alcm_predictor_train_escapes(alcm_predictor *p, const float (*x)[ALCM_PRED_FEATURES],
                                 const float *y, const alcm_pred_escapes *esc, size_t n,
                                 uint64_t seed, unsigned epochs, double *mse)
{
	if (!p || !x || !y || !n || n > SIZE_MAX / sizeof(size_t) / 4)
		return ALCM_E_ARG;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(y[i]) || !isfinite(x[i][0]))
			return ALCM_E_ARG;
		for (int k = 0; k < NF; k++)
			if (!isfinite(x[i][k]))
				return ALCM_E_ARG;
		if (esc && (!(esc[i].share >= 0 && esc[i].share <= 1) || !(esc[i].bits >= 0) ||
		            !isfinite(esc[i].bits)))
			return ALCM_E_ARG;
	}
	if (!epochs)
		epochs = DEFAULT_EPOCHS;
	trainer *tr = calloc(1, sizeof(*tr));
	size_t *order = malloc(n * sizeof(size_t));
	float *rate = malloc(n * sizeof(float)), *keep = malloc(n * sizeof(float));
	float *ebits = malloc(n * sizeof(float));
	if (!tr || !order || !rate || !keep || !ebits) {
		free(tr);
		free(order);
		free(rate);
		free(keep);
		free(ebits);
		return ALCM_E_NOMEM;
	}
	/* The network learns the per-value rate of the values that are not escapes; the fixed
	 * bytes and the escapes' bits are added at prediction. `keep` is that share: the error
	 * of the whole prediction is keep * network - (rate - escapes' bits). */
	for (size_t i = 0; i < n; i++) {
		double sh = esc ? esc[i].share : 0;
		keep[i] = (float)(1 - sh);
		ebits[i] = (float)(esc ? sh * esc[i].bits : 0);
		rate[i] = (float)(y[i] - fixed_bits(x[i][0]) - ebits[i]);
	}
	/* The target's moments are the network's own rate (ebits, no longer needed, holds it). */
	for (size_t i = 0; i < n; i++)
		ebits[i] = keep[i] >= 0.5f ? rate[i] / keep[i] : 0;
	fit_normalisation(tr, x, ebits, keep, n);
	rng r = {seed ^ 0x616c636d70726564ull}; /* "alcmpred" */
	/* Glorot-style initialisation for tanh (each member's NH / MEMBERS units); zero biases,
	 * zero output bias (targets are standardised). */
	const int members = MEMBERS, nh = NH / MEMBERS;
	double a1 = sqrt(1.0 / NF), a2 = sqrt(1.0 / nh), bsum = 0;
	for (int i = 0; i < NH * NF; i++)
		tr->w[P_W1 + i] = a1 * rng_gauss(&r);
	for (int j = 0; j < NH; j++)
		tr->w[P_W2 + j] = a2 * rng_gauss(&r);
	for (size_t i = 0; i < n; i++)
		order[i] = i;

	/* The members are trained one after the other and averaged: the one network of NH
	 * units below (its output weights divided by their count, its output bias their
	 * mean). An average of fits varies less from one training seed to another than one fit
	 * of NH units. */
	for (int mb = 0; mb < members; mb++) {
		fit_member(tr, x, rate, keep, n, order, &r, epochs, mb * nh, (mb + 1) * nh);
		bsum += tr->w[P_B2];
	}
	for (int j = 0; j < NH; j++)
		tr->w[P_W2 + j] /= members;
	tr->w[P_B2] = bsum / members;

	/* Fold the target standardisation into the output layer. */
	for (int k = 0; k < NF; k++) {
		p->mean[k] = (float)tr->mean[k];
		p->scale[k] = (float)tr->scale[k];
	}
	for (int j = 0; j < NH; j++) {
		for (int k = 0; k < NF; k++)
			p->w1[j][k] = (float)tr->w[P_W1 + j * NF + k];
		p->b1[j] = (float)tr->w[P_B1 + j];
		p->w2[j] = (float)(tr->w[P_W2 + j] * tr->yscale);
	}
	p->b2 = (float)(tr->w[P_B2] * tr->yscale + tr->ymean);
	p->version = PRED_VERSION;
	if (mse) {
		double se = 0;
		for (size_t i = 0; i < n; i++) {
			double e = alcm_predict_bits_escapes(p, x[i], esc ? &esc[i] : NULL) - y[i];
			se += e * e;
		}
		*mse = se / (double)n;
	}
	free(keep);
	free(ebits);
	free(rate);
	free(order);
	free(tr);
	return ALCM_OK;
}

/* ---- PRED payload ----------------------------------------------------------------------- */


static uint8_t *put_f32(uint8_t *o, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	alcm_store32(o, u);
	return o + 4;
}

size_t alcm_predictor_bytes(const alcm_predictor *p)
{
	return !p ? 0 : pred_nf(p->version) == NF ? ALCM_PRED_BYTES : ALCM_PRED_BYTES_V2;
}

/* Version 0 (a predictor made by hand or zeroed) is stored as the current version. */
void alcm_predictor_store(const alcm_predictor *p, uint8_t out[ALCM_PRED_BYTES])
{
	if (!p || !out)
		return;
	uint8_t *o = out;
	int nf = pred_nf(p->version);
	alcm_store32(o, p->version == PRED_VERSION_OLD || p->version == PRED_VERSION_2
	                    ? p->version : PRED_VERSION);
	alcm_store16(o + 4, (uint16_t)nf);
	alcm_store16(o + 6, NH);
	o += 8;
	for (int k = 0; k < nf; k++)
		o = put_f32(o, p->mean[k]);
	for (int k = 0; k < nf; k++)
		o = put_f32(o, p->scale[k]);
	for (int j = 0; j < NH; j++)
		for (int k = 0; k < nf; k++)
			o = put_f32(o, p->w1[j][k]);
	for (int j = 0; j < NH; j++)
		o = put_f32(o, p->b1[j]);
	for (int j = 0; j < NH; j++)
		o = put_f32(o, p->w2[j]);
	put_f32(o, p->b2);
}

/* Reads one float32; 0 if it is not finite. */
static int get_f32(const uint8_t **pp, float *f)
{
	uint32_t u = alcm_load32(*pp);
	*pp += 4;
	memcpy(f, &u, 4);
	return isfinite(*f);
}

int alcm_predictor_load(alcm_predictor *p, const uint8_t *buf, size_t len)
{
	if (!p || (!buf && len))
		return ALCM_E_ARG;
	uint32_t ver = len >= 4 ? alcm_load32(buf) : 0;
	/* A later version is a layout this reader does not know (spec 6.7.1): not corrupt. */
	if (len >= 4 && ver > PRED_VERSION)
		return ALCM_E_UNSUPPORTED;
	if (!ver)
		return ALCM_E_CORRUPT;
	int nf = pred_nf(ver);
	if (len != (size_t)ALCM_PRED_BYTES_NF(nf) || alcm_load16(buf + 4) != nf ||
	    alcm_load16(buf + 6) != NH)
		return ALCM_E_CORRUPT;
	alcm_predictor q;
	memset(&q, 0, sizeof(q));
	q.version = ver;
	const uint8_t *s = buf + 8;
	int ok = 1;
	for (int k = 0; k < nf; k++)
		ok &= get_f32(&s, &q.mean[k]);
	for (int k = 0; k < nf; k++)
		ok &= get_f32(&s, &q.scale[k]) && q.scale[k] > 0;
	for (int j = 0; j < NH; j++)
		for (int k = 0; k < nf; k++)
			ok &= get_f32(&s, &q.w1[j][k]);
	for (int j = 0; j < NH; j++)
		ok &= get_f32(&s, &q.b1[j]);
	for (int j = 0; j < NH; j++)
		ok &= get_f32(&s, &q.w2[j]);
	ok &= get_f32(&s, &q.b2);
	if (!ok)
		return ALCM_E_CORRUPT;
	*p = q;
	return ALCM_OK;
}
