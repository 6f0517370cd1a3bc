/* Size-budget packing: per-tensor steps from predicted rates, by equal slope (reverse
 * water-filling), without trial-compressing every tensor at every step. */
#include "codec_internal.h"

#include <math.h>

int alcm_budget_scalar_only = 0;

/* A profile's sums in four lanes (value i in lane i % 4): the values shifted by the first
 * finite one (s1, s2) and the values themselves (sq: the signal energy), over the values
 * that are not special (NaN, infinities, -0, subnormals: the quantizer's signal). */
typedef struct spread_lanes {
	double s1[4], s2[4], sq[4];
	uint64_t cnt[4];
} spread_lanes;

/* The same sums as the lanes' fold, whatever the loop (it adds 0 in a special value's
 * lane): the variance, and the signal into *signal. */
static double spread_fold(const spread_lanes *L, double *signal)
{
	*signal = (L->sq[0] + L->sq[1]) + (L->sq[2] + L->sq[3]);
	uint64_t c = (L->cnt[0] + L->cnt[1]) + (L->cnt[2] + L->cnt[3]);
	if (c < 2)
		return 0;
	double m1 = ((L->s1[0] + L->s1[1]) + (L->s1[2] + L->s1[3])) / (double)c;
	double v = ((L->s2[0] + L->s2[1]) + (L->s2[2] + L->s2[3])) / (double)c - m1 * m1;
	return v > 0 ? v : 0;
}

/* One float32 value i into its lane, without a branch: a special value adds 0 (and its
 * square 0) to its lane and to the count. */
ALCM_ALWAYS_INLINE void spread_f32_one(spread_lanes *L, const uint8_t *src, uint64_t i,
                                       double shift)
{
	uint32_t u = alcm_load32(src + 4 * i), e = u & 0x7f800000u;
	float f;
	memcpy(&f, &u, 4);
	int ok = e != 0x7f800000u && (e != 0 || u == 0), l = (int)(i & 3);
	double d = ok ? (double)f - shift : 0.0;
	L->s1[l] += d;
	L->s2[l] += d * d;
	L->sq[l] += ok ? (double)f * f : 0.0;
	L->cnt[l] += (uint64_t)ok;
}

static void spread_f32_portable(spread_lanes *L, const uint8_t *src, uint64_t n4, double shift)
{
	for (uint64_t i = 0; i < n4; i += 4)
		for (uint64_t l = 0; l < 4; l++)
			spread_f32_one(L, src, i + l, shift);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The lanes as vectors of doubles (and counts), for the AVX2 loops below. */
typedef struct spread_vec {
	__m256d s1, s2, sq, sh;
	__m256i cnt;
} spread_vec;

__attribute__((target("avx2"))) static inline spread_vec spread_load(const spread_lanes *L,
                                                                      double shift)
{
	spread_vec v = {_mm256_loadu_pd(L->s1), _mm256_loadu_pd(L->s2), _mm256_loadu_pd(L->sq),
	                _mm256_set1_pd(shift),
	                _mm256_loadu_si256((const __m256i *)(const void *)L->cnt)};
	return v;
}

__attribute__((target("avx2"))) static inline void spread_store(spread_lanes *L,
                                                                const spread_vec *v)
{
	_mm256_storeu_pd(L->s1, v->s1);
	_mm256_storeu_pd(L->s2, v->s2);
	_mm256_storeu_pd(L->sq, v->sq);
	_mm256_storeu_si256((__m256i *)(void *)L->cnt, v->cnt);
}

/* Values f into their lanes where u (their bits, or 2-byte patterns, in 32-bit lanes; em the
 * exponent's mask) is not special: not inf/NaN, and normal or +0. A special value adds 0. */
__attribute__((target("avx2"))) static inline void spread_add4(spread_vec *v, __m256d f,
                                                               __m128i u, __m128i em)
{
	const __m128i zero = _mm_setzero_si128();
	__m128i e = _mm_and_si128(u, em);
	__m128i ok32 = _mm_andnot_si128(_mm_cmpeq_epi32(e, em),
	                                _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi32(e, zero),
	                                                              _mm_set1_epi32(-1)),
	                                             _mm_cmpeq_epi32(u, zero)));
	__m256i ok = _mm256_cvtepi32_epi64(ok32);
	__m256d okd = _mm256_castsi256_pd(ok);
	__m256d d = _mm256_and_pd(_mm256_sub_pd(f, v->sh), okd);
	v->s1 = _mm256_add_pd(v->s1, d);
	v->s2 = _mm256_add_pd(v->s2, _mm256_mul_pd(d, d));
	v->sq = _mm256_add_pd(v->sq, _mm256_and_pd(_mm256_mul_pd(f, f), okd));
	v->cnt = _mm256_sub_epi64(v->cnt, ok);
}

/* spread_f32_portable() with the four lanes as one vector of doubles: the same additions in
 * the same order, so the same sums to the bit (tests/test_budget.c). faceapi's 7M values
 * took 17 instructions each here and 15 more in alcm-pack's signal pass; now the profiles'
 * own instructions (all but features and predictions) are 42M against 121M before. */
__attribute__((target("avx2"))) static void spread_f32_avx2(spread_lanes *L,
                                                            const uint8_t *src, uint64_t n4,
                                                            double shift)
{
	spread_vec v = spread_load(L, shift);
	const __m128i em = _mm_set1_epi32(0x7f800000);
	for (uint64_t i = 0; i < n4; i += 4) {
		__m128i u = _mm_loadu_si128((const __m128i *)(const void *)(src + 4 * i));
		spread_add4(&v, _mm256_cvtps_pd(_mm_castsi128_ps(u)), u, em);
	}
	spread_store(L, &v);
}
#define HAVE_SPREAD_AVX2 1
#endif

#include "h16_simd.h"
#ifdef ALCM_H16_SIMD
/* The same for float16 and bfloat16 (bf), four values at a time: each value exactly a float
 * (alcm_h16_float_x8()), special values (alcm_is_special()) adding 0 to their lane, as
 * SPREAD_LOOP skips them. A sum is never -0 (x - shift is +0 when x is the shift; -0 is
 * special), so adding +0 leaves it as skipping does: the same sums to the bit
 * (tests/test_budget.c). The scalar loop took 18 instructions a value (callgrind): 2.9M of
 * the 68.7M of alcm-pack -T1 --ratio 12 of the torch transformer's bfloat16 gradients, 0.6M
 * now. */
__attribute__((target("avx2,f16c"))) static void spread_h16_avx2(spread_lanes *L, const int bf,
                                                                 const uint8_t *src,
                                                                 uint64_t n4, double shift)
{
	spread_vec v = spread_load(L, shift);
	const __m128i em = _mm_set1_epi32(bf ? 0x7f80 : 0x7c00);
	for (uint64_t i = 0; i < n4; i += 4) {
		__m128i h = _mm_loadl_epi64((const __m128i *)(const void *)(src + 2 * i));
		__m256d f = _mm256_cvtps_pd(_mm256_castps256_ps128(alcm_h16_float_x8(bf, h)));
		spread_add4(&v, f, _mm_cvtepu16_epi32(h), em);
	}
	spread_store(L, &v);
}
#endif

/* The 16- and 64-bit dtypes: the same lanes, skipping the special values. */
#define SPREAD_LOOP(LOAD)                                                                   \
	for (uint64_t i = i0; i < n; i++) {                                                     \
		if (alcm_is_special(dtype, src, i))                                                 \
			continue;                                                                       \
		double x = (LOAD), d = x - shift;                                                   \
		L.s1[i & 3] += d;                                                                   \
		L.s2[i & 3] += d * d;                                                               \
		L.sq[i & 3] += x * x;                                                               \
		L.cnt[i & 3]++;                                                                     \
	}

/* Variance of the finite, normal values (shifted by the first of them against
 * cancellation; 0 for fewer than two), and their sum of squares into *signal. */
static double spread(int dtype, const uint8_t *src, uint64_t n, double *signal)
{
	spread_lanes L;
	memset(&L, 0, sizeof(L));
	double shift = 0;
	uint64_t first = 0;
	while (first < n && alcm_is_special(dtype, src, first))
		first++;
	if (first < n)
		shift = alcm_load_float(dtype, src, first);
	uint64_t i0 = 0; /* where SPREAD_LOOP starts: after the values done four at a time */
#ifdef ALCM_H16_SIMD
	if ((dtype == ALCM_DTYPE_F16 || dtype == ALCM_DTYPE_BF16) && !alcm_budget_scalar_only &&
	    alcm_cpu_avx2_f16c()) {
		i0 = n - n % 4;
		spread_h16_avx2(&L, dtype == ALCM_DTYPE_BF16, src, i0, shift);
	}
#endif
	switch (dtype) {
	case ALCM_DTYPE_F16: SPREAD_LOOP(alcm_half_to_float(alcm_load16(src + 2 * i))) break;
	case ALCM_DTYPE_BF16: SPREAD_LOOP(alcm_load_float(ALCM_DTYPE_BF16, src, i)) break;
	case ALCM_DTYPE_F32: {
		uint64_t n4 = n - n % 4;
#ifdef HAVE_SPREAD_AVX2
		if (!alcm_budget_scalar_only && __builtin_cpu_supports("avx2"))
			spread_f32_avx2(&L, src, n4, shift);
		else
#endif
			spread_f32_portable(&L, src, n4, shift);
		for (uint64_t i = n4; i < n; i++)
			spread_f32_one(&L, src, i, shift);
		break;
	}
	default: SPREAD_LOOP(alcm_load_float(ALCM_DTYPE_F64, src, i)) break;
	}
	return spread_fold(&L, signal);
}

int alcm_budget_profile_make(const alcm_predictor *p, const alcm_tensor *t,
                             double lossless_bytes, alcm_budget_profile *prof)
{
	if (!t || !prof)
		return ALCM_E_ARG;
	memset(prof, 0, sizeof(*prof));
	size_t w = alcm_dtype_size(t->dtype);
	if (!w)
		return ALCM_E_ARG;
	prof->elements = t->nbytes / w;
	prof->fixed_bytes = lossless_bytes;
	if (!alcm_dtype_is_float(t->dtype) || prof->elements == 0)
		return ALCM_OK;
	prof->variance = spread(t->dtype, t->data, prof->elements, &prof->signal);
	if (!(prof->variance > 0) || !isfinite(prof->variance))
		return ALCM_OK;
	prof->lossy = 1;
	const alcm_predictor *pr = p ? p : alcm_predictor_default();
	double sd = sqrt(prof->variance);
	float f[ALCM_BUDGET_STEPS][ALCM_PRED_FEATURES];
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++)
		prof->step[k] = sd * pow(2.0, k / 2.0 - 16);
	alcm_pred_escapes esc;
	int st = alcm_tensor_features_esc(t, prof->step, ALCM_BUDGET_STEPS, f, &esc);
	if (st)
		return st;
	alcm_predict_bits_steps(pr, (const float(*)[ALCM_PRED_FEATURES])f, ALCM_BUDGET_STEPS, &esc,
	                        prof->bits);
	/* A coarser step never costs more: keep the curve monotone against predictor noise. */
	for (int k = 1; k < ALCM_BUDGET_STEPS; k++)
		if (prof->bits[k] > prof->bits[k - 1])
			prof->bits[k] = prof->bits[k - 1];
	return ALCM_OK;
}

/* Squared error of uniform quantization with step s, which cannot exceed the variance
 * (coding everything as the mean). */
static double distortion(const alcm_budget_profile *p, int k)
{
	double d = p->step[k] * p->step[k] / 12.0;
	return (double)p->elements * (d < p->variance ? d : p->variance);
}

static double rate_bytes(const alcm_budget_profile *p, int k, double scale)
{
	return (double)p->elements * p->bits[k] * scale / 8.0;
}

/* Each tensor's squared error and bytes at each step, computed once for
 * the bisection's picks: pick() took 7.6M instructions of a 170M --ratio 8 of the torch
 * transformer (29 tensors, 40 picks a solve, 10 solves). */
typedef struct cost_row {
	double d[ALCM_BUDGET_STEPS], r[ALCM_BUDGET_STEPS]; /* r[0]: a lossless tensor's bytes */
	int lossy;
} cost_row;

static void cost_rows(const alcm_budget_profile *prof, size_t n, const double *scale,
                      cost_row *row)
{
	for (size_t i = 0; i < n; i++) {
		const alcm_budget_profile *p = &prof[i];
		double sc = scale ? scale[i] : 1;
		row[i].lossy = p->lossy;
		row[i].r[0] = p->fixed_bytes;
		for (int k = 0; k < ALCM_BUDGET_STEPS && p->lossy; k++) {
			row[i].d[k] = distortion(p, k);
			row[i].r[k] = rate_bytes(p, k, sc);
		}
	}
}

/* The first step of least d + lambda r, among those under infinity (NaN is not), or the
 * last step if there is none. */
static int best_step(const cost_row *c, double lambda)
{
	int best = ALCM_BUDGET_STEPS - 1;
	double bcost = INFINITY;
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++) {
		double v = c->d[k] + lambda * c->r[k];
		if (v < bcost) {
			bcost = v;
			best = k;
		}
	}
	return best;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* best_step() four steps at a time: the same products and sums (a multiplication, then an
 * addition: no fused multiply-add here either); each lane keeps its least value under
 * infinity and the first step that has it, and the lanes' are merged to the first step of
 * the least of all: best_step()'s (-0 and +0 are equal in both). A solve picks about 40
 * times: the scalar loop took 3.8M of the 68.7M instructions of alcm-pack -T1 --ratio 12 of
 * the torch transformer's gradients, this one 0.9M (callgrind). */
__attribute__((target("avx2"))) static int best_step_avx2(const cost_row *c, double lambda)
{
	enum { K4 = ALCM_BUDGET_STEPS / 4 * 4 };
	const __m256d l = _mm256_set1_pd(lambda), inf = _mm256_set1_pd(INFINITY);
	/* each lane's least value and the first step that has it (its first: strictly less) */
	__m256d m = inf, at = _mm256_set1_pd(ALCM_BUDGET_STEPS), k4 = _mm256_setr_pd(0, 1, 2, 3);
	for (int k = 0; k < K4; k += 4, k4 = _mm256_add_pd(k4, _mm256_set1_pd(4))) {
		__m256d x = _mm256_add_pd(_mm256_loadu_pd(c->d + k),
		                          _mm256_mul_pd(l, _mm256_loadu_pd(c->r + k)));
		__m256d lt = _mm256_cmp_pd(x, m, _CMP_LT_OQ); /* false for NaN */
		m = _mm256_blendv_pd(m, x, lt);
		at = _mm256_blendv_pd(at, k4, lt);
	}
	double lm[4], la[4];
	_mm256_storeu_pd(lm, m);
	_mm256_storeu_pd(la, at);
	double least = INFINITY;
	int best = ALCM_BUDGET_STEPS - 1;
	for (int u = 0; u < 4; u++)
		if (lm[u] < least || (lm[u] == least && la[u] < best))
			least = lm[u], best = (int)la[u];
	for (int k = K4; k < ALCM_BUDGET_STEPS; k++) {
		double v = c->d[k] + lambda * c->r[k];
		if (v < least)
			least = v, best = k;
	}
	return best;
}
#endif

/* Each tensor's best step at slope lambda; returns the total predicted bytes. */
static double pick(const cost_row *row, size_t n, double lambda, int *k_out)
{
#if defined(__x86_64__) && defined(__GNUC__)
	const int vec = !alcm_budget_scalar_only && __builtin_cpu_supports("avx2");
#endif
	double total = 0;
	for (size_t i = 0; i < n; i++) {
		const cost_row *c = &row[i];
		if (!c->lossy) {
			total += c->r[0];
			k_out[i] = -1;
			continue;
		}
#if defined(__x86_64__) && defined(__GNUC__)
		int best = vec ? best_step_avx2(c, lambda) : best_step(c, lambda);
#else
		int best = best_step(c, lambda);
#endif
		k_out[i] = best;
		total += c->r[best];
	}
	return total;
}

int alcm_budget_solve(const alcm_budget_profile *prof, size_t n, double budget_bytes,
                      const double *scale, double *bound, double *predicted)
{
	if ((!prof && n) || !bound || !(budget_bytes > 0))
		return ALCM_E_ARG;
	int *k = alcm_mem_calloc(NULL, n ? n : 1, sizeof(int));
	cost_row *row = k ? alcm_mem_calloc(NULL, n ? n : 1, sizeof(cost_row)) : NULL;
	if (!row) {
		alcm_mem_free(NULL, k);
		return ALCM_E_NOMEM;
	}
	cost_rows(prof, n, scale, row);
	/* Slopes span squared error per byte from far below to far above any tensor's. */
	double lo = 1e-300, hi = 1e300, total;
	total = pick(row, n, hi, k);
	int st = ALCM_OK;
	if (total > budget_bytes) {
		st = ALCM_E_BOUND;
	} else {
		for (int it = 0; it < 200; it++) {
			double mid = sqrt(lo * hi);
			if (pick(row, n, mid, k) > budget_bytes)
				lo = mid;
			else
				hi = mid;
			if (hi / lo < 1 + 1e-9)
				break;
		}
		total = pick(row, n, hi, k);
	}
	for (size_t i = 0; i < n; i++)
		bound[i] = k[i] < 0 ? 0 : prof[i].step[k[i]] / 2;
	if (predicted)
		*predicted = total;
	alcm_mem_free(NULL, row);
	alcm_mem_free(NULL, k);
	return st;
}
