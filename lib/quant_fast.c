/* The quantizer's common case on float32 (no pruning): a tight loop that stops at the first
 * value needing more care, which quant.c then handles. On x86-64 with AVX2, eight values at
 * a time with the same arithmetic (binary64 products, round to nearest even), so that the
 * symbols and the largest error do not depend on the CPU. */
#include "codec_internal.h"

#include <math.h>

/* The loops below promise the same symbols, reconstructions and sums on every path: no
 * multiply and add fused into one rounding, whatever flags a build passes (the AVX-512 target
 * has FMA, the AVX2 one does not; CMakeLists.txt passes -ffp-contract=off too). */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

int alcm_quant_scalar_only = 0;

static uint64_t run_f32(const uint8_t *src, uint64_t n, double s, double o, double inv, double b,
                        uint32_t *sym, uint8_t *recon, double *sig, double *noise, double *maxe)
{
	double sg = 0, ns = 0, mx = *maxe;
	uint64_t k = 0;
	for (; k < n; k++) {
		uint32_t u = alcm_load32(src + 4 * k);
		uint32_t ex = u & 0x7f800000u;
		/* NaN, infinities, subnormals and -0 are escapes (alcm_is_special()). */
		if (ex == 0x7f800000u || (ex == 0 && u != 0))
			break;
		float f;
		memcpy(&f, &u, 4);
		double x = f, t = (x - o) * inv; /* x - 0 is x: offset 0 changes nothing */
		if (!(fabs(t) < 0x1p30 - 1))
			break; /* near or past the symbol range: the careful path decides */
		double q = alcm_round_small(t); /* +0 for every value that rounds to 0 */
		float rf = (float)(q * s + o); /* + 0 keeps q * s, never -0 (q is +0 or nonzero) */
		double err = fabs(x - (double)rf);
		if (!(err <= b))
			break; /* a neighbour may fit, or the value escapes */
		sg += x * x;
		ns += err * err;
		mx = err > mx ? err : mx;
		int32_t qi = (int32_t)q;
		sym[k] = ((uint32_t)qi << 1) ^ (uint32_t)(qi >> 31);
		if (recon) {
			uint32_t rb;
			memcpy(&rb, &rf, 4);
			alcm_store32(recon + 4 * k, rb);
		}
	}
	*sig += sg;
	*noise += ns;
	*maxe = mx;
	return k;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__FAST_MATH__)
#include <immintrin.h>

/* Whether any of eight float32 patterns is special (alcm_is_special(): NaN, infinities,
 * subnormals, -0): those stop a run. */
__attribute__((target("avx2"))) static inline int special_f32_x8(__m256i u)
{
	const __m256i expm = _mm256_set1_epi32(0x7f800000), zero = _mm256_setzero_si256();
	__m256i ex = _mm256_and_si256(u, expm);
	__m256i sp = _mm256_or_si256(_mm256_cmpeq_epi32(ex, expm),
	                             _mm256_andnot_si256(_mm256_cmpeq_epi32(u, zero),
	                                                 _mm256_cmpeq_epi32(ex, zero)));
	return !_mm256_testz_si256(sp, sp);
}

/* A group of eight values' statistics into a run's lanes: the signal and squared error of its
 * first four into sg[0] and ns[0], of its last four into sg[1] and ns[1] (two chains of
 * dependent additions each instead of one: 2-3% of a max-error pack of small float32
 * tensors), the largest error into mx. */
__attribute__((target("avx2"))) static inline void run_add(__m256d sg[2], __m256d ns[2],
                                                           __m256d *mx, const __m256d x[2],
                                                           const __m256d err[2])
{
	for (int h = 0; h < 2; h++) {
		sg[h] = _mm256_add_pd(sg[h], _mm256_mul_pd(x[h], x[h]));
		ns[h] = _mm256_add_pd(ns[h], _mm256_mul_pd(err[h], err[h]));
	}
	*mx = _mm256_max_pd(*mx, _mm256_max_pd(err[0], err[1]));
}

/* A run's lanes of signal, squared error and largest error added to the totals. */
__attribute__((target("avx2"))) static inline void run_fold(const __m256d sg2[2],
                                                            const __m256d ns2[2], __m256d mx,
                                                            double *sig, double *noise,
                                                            double *maxe)
{
	double a[4], c[4], m[4];
	_mm256_storeu_pd(a, _mm256_add_pd(sg2[0], sg2[1]));
	_mm256_storeu_pd(c, _mm256_add_pd(ns2[0], ns2[1]));
	_mm256_storeu_pd(m, mx);
	*sig += (a[0] + a[1]) + (a[2] + a[3]);
	*noise += (c[0] + c[1]) + (c[2] + c[3]);
	for (int h = 0; h < 4; h++)
		*maxe = m[h] > *maxe ? m[h] : *maxe;
}

/* Whole groups of eight that need no care; the caller finishes with run_f32(). */
__attribute__((target("avx2"))) static uint64_t run_f32_avx2(const uint8_t *src, uint64_t n,
                                                             double s, double o, double inv,
                                                             double b,
                                                             uint32_t *sym, uint8_t *recon,
                                                             double *sig, double *noise,
                                                             double *maxe)
{
	const __m256d vinv = _mm256_set1_pd(inv), vs = _mm256_set1_pd(s), vb = _mm256_set1_pd(b);
	const __m256d vo = _mm256_set1_pd(o);
	const __m256d lim = _mm256_set1_pd(0x1p30 - 1);
	const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
	__m256d sg[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()}, ns[2] = {sg[0], sg[0]};
	__m256d mx = _mm256_set1_pd(*maxe);
	uint64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * k));
		if (special_f32_x8(u))
			break;
		__m256 f = _mm256_castsi256_ps(u);
		__m256d x[2] = {_mm256_cvtps_pd(_mm256_castps256_ps128(f)),
		                _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1))};
		__m256d q[2], err[2];
		__m128 rf[2];
		int ok = 1;
		for (int h = 0; h < 2; h++) {
			__m256d t = _mm256_mul_pd(_mm256_sub_pd(x[h], vo), vinv);
			ok &= _mm256_movemask_pd(_mm256_cmp_pd(_mm256_and_pd(t, absm), lim, _CMP_LT_OQ)) == 15;
			q[h] = _mm256_add_pd(_mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
			                     _mm256_setzero_pd());
			rf[h] = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(q[h], vs), vo));
			err[h] = _mm256_and_pd(_mm256_sub_pd(x[h], _mm256_cvtps_pd(rf[h])), absm);
			ok &= _mm256_movemask_pd(_mm256_cmp_pd(err[h], vb, _CMP_LE_OQ)) == 15;
		}
		if (!ok)
			break;
		run_add(sg, ns, &mx, x, err);
		__m256i qi = _mm256_set_m128i(_mm256_cvtpd_epi32(q[1]), _mm256_cvtpd_epi32(q[0]));
		__m256i z = _mm256_xor_si256(_mm256_slli_epi32(qi, 1), _mm256_srai_epi32(qi, 31));
		_mm256_storeu_si256((__m256i *)(void *)(sym + k), z);
		if (recon)
			_mm256_storeu_ps((float *)(void *)(recon + 4 * k), _mm256_set_m128(rf[1], rf[0]));
	}
	run_fold(sg, ns, mx, sig, noise, maxe);
	return k;
}
#define HAVE_AVX2_RUN 1

/* run_f32_avx2() with AVX-512: a group of eight as one vector of doubles, the same arithmetic.
 * Its statistics go into lanes laid out as run_add()'s (lanes 0-3: the group's first four
 * values, 4-7: its last four), added in the same order, so the sums are run_f32_avx2()'s to
 * the bit. Where the CPU runs 512-bit vectors at full width, half the instructions: the
 * quantizer was a tenth of a max-error pack of small float32 tensors. */
__attribute__((target("avx512f"))) static uint64_t run_f32_avx512(const uint8_t *src,
                                                                  uint64_t n, double s,
                                                                  double o, double inv,
                                                                  double b, uint32_t *sym,
                                                                  uint8_t *recon, double *sig,
                                                                  double *noise, double *maxe)
{
	const __m512d vinv = _mm512_set1_pd(inv), vs = _mm512_set1_pd(s), vb = _mm512_set1_pd(b);
	const __m512d vo = _mm512_set1_pd(o), lim = _mm512_set1_pd(0x1p30 - 1);
	__m512d sg = _mm512_setzero_pd(), ns = sg, mx = _mm512_set1_pd(*maxe);
	uint64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * k));
		if (special_f32_x8(u))
			break;
		__m512d x = _mm512_cvtps_pd(_mm256_castsi256_ps(u));
		__m512d t = _mm512_mul_pd(_mm512_sub_pd(x, vo), vinv);
		__mmask8 ok = _mm512_cmp_pd_mask(_mm512_abs_pd(t), lim, _CMP_LT_OQ);
		__m512d q = _mm512_add_pd(
			_mm512_roundscale_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
			_mm512_setzero_pd());
		__m256 rf = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(q, vs), vo));
		__m512d err = _mm512_abs_pd(_mm512_sub_pd(x, _mm512_cvtps_pd(rf)));
		ok &= _mm512_cmp_pd_mask(err, vb, _CMP_LE_OQ);
		if (ok != 0xff)
			break;
		sg = _mm512_add_pd(sg, _mm512_mul_pd(x, x));
		ns = _mm512_add_pd(ns, _mm512_mul_pd(err, err));
		mx = _mm512_max_pd(mx, err);
		__m256i qi = _mm512_cvtpd_epi32(q);
		__m256i z = _mm256_xor_si256(_mm256_slli_epi32(qi, 1), _mm256_srai_epi32(qi, 31));
		_mm256_storeu_si256((__m256i *)(void *)(sym + k), z);
		if (recon)
			_mm256_storeu_ps((float *)(void *)(recon + 4 * k), rf);
	}
	const __m256d sg2[2] = {_mm512_castpd512_pd256(sg), _mm512_extractf64x4_pd(sg, 1)};
	const __m256d ns2[2] = {_mm512_castpd512_pd256(ns), _mm512_extractf64x4_pd(ns, 1)};
	run_fold(sg2, ns2,
	         _mm256_max_pd(_mm512_castpd512_pd256(mx), _mm512_extractf64x4_pd(mx, 1)), sig,
	         noise, maxe);
	return k;
}
#endif

/* Tests set it to 0 to run the AVX2 loop where the AVX-512 one would run. */
int alcm_quant_avx512 = 1;

uint64_t alcm_quant_run_f32(const uint8_t *src, uint64_t n, double s, double o, double inv,
                            double b,
                            uint32_t *sym, uint8_t *recon, double *sig, double *noise,
                            double *maxe)
{
#ifdef HAVE_AVX2_RUN
	if (!alcm_quant_scalar_only && __builtin_cpu_supports("avx2")) {
		/* Groups of eight; the group that stopped them, one by one up to the value that
		 * needs care; then groups again. */
		const int wide = alcm_quant_avx512 && __builtin_cpu_supports("avx512f");
		uint64_t k = 0;
		while (k < n) {
			k += (wide ? run_f32_avx512 : run_f32_avx2)(src + 4 * k, n - k, s, o, inv, b,
			                                            sym + k, recon ? recon + 4 * k : NULL,
			                                            sig, noise, maxe);
			uint64_t lim = n - k < 8 ? n - k : 8;
			uint64_t d = run_f32(src + 4 * k, lim, s, o, inv, b, sym + k,
			                     recon ? recon + 4 * k : NULL, sig, noise, maxe);
			k += d;
			if (d < lim)
				break;
		}
		return k;
	}
#endif
	return run_f32(src, n, s, o, inv, b, sym, recon, sig, noise, maxe);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <pthread.h>
static int avx2_f16c;
static void avx2_f16c_init(void)
{
	unsigned a, b, c, d;
	/* F16C: CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports has no "f16c") */
	avx2_f16c = __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) &&
	            ((c >> 29) & 1);
}
#endif

int alcm_cpu_avx2_f16c(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, avx2_f16c_init);
	return avx2_f16c;
#else
	return 0;
#endif
}

/* ---- float16 and bfloat16 ------------------------------------------------------------------ */

#include "h16_simd.h"
#ifdef ALCM_H16_SIMD
/* Whole groups of eight 2-byte values (bf: bfloat16, else float16) that need no care, with
 * quant.c's classify() arithmetic: t = (x - o) / s as x * inv, the symbol alcm_round_small(t),
 * its value q s + o rounded to float then to the dtype, the error |x - value|. The statistics
 * are summed in lanes, as run_f32_avx2() sums them (run_add), and added to the totals at the
 * end.
 * Added one value at a time in order (the careful path's sums to the bit), they were a chain
 * of dependent additions, a fifth of a bfloat16 max-error pack's instructions. */
__attribute__((target("avx2,f16c"))) static inline uint64_t
run_h16_x8(const int bf, const uint8_t *src, uint64_t n, double s, double o, double inv,
           double b, uint32_t *sym, uint8_t *recon, double *sig, double *noise, double *maxe)
{
	const __m128i em = _mm_set1_epi16((short)(bf ? 0x7f80 : 0x7c00)), zero = _mm_setzero_si128();
	const __m256d vinv = _mm256_set1_pd(inv), vs = _mm256_set1_pd(s), vb = _mm256_set1_pd(b);
	const __m256d vo = _mm256_set1_pd(o), big = _mm256_set1_pd(6755399441055744.0);
	const __m256d lim = _mm256_set1_pd(0x1p30 - 1);
	const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
	__m256d sg[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()}, ns[2] = {sg[0], sg[0]};
	__m256d mx = _mm256_set1_pd(*maxe);
	uint64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * k));
		__m128i e = _mm_and_si128(h, em);
		/* NaN, infinities, subnormals and -0 are escapes (alcm_is_special()) */
		__m128i sp = _mm_or_si128(_mm_cmpeq_epi16(e, em),
		                          _mm_andnot_si128(_mm_cmpeq_epi16(h, zero),
		                                           _mm_cmpeq_epi16(e, zero)));
		if (!_mm_testz_si128(sp, sp))
			break;
		__m256 f = alcm_h16_float_x8(bf, h);
		__m256d x[2] = {_mm256_cvtps_pd(_mm256_castps256_ps128(f)),
		                _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1))};
		__m256d q[2], err[2];
		__m128i p[2];
		int ok = 1;
		for (int j = 0; j < 2; j++) {
			__m256d t = _mm256_mul_pd(_mm256_sub_pd(x[j], vo), vinv);
			ok &= _mm256_movemask_pd(_mm256_cmp_pd(_mm256_and_pd(t, absm), lim, _CMP_LT_OQ)) == 15;
			q[j] = _mm256_sub_pd(_mm256_add_pd(t, big), big); /* alcm_round_small */
			/* + o: q s is never -0 (q is +0 or not 0), so adding +0 changes nothing */
			p[j] = alcm_h16_round_x4(bf, _mm256_add_pd(_mm256_mul_pd(q[j], vs), vo));
			err[j] = _mm256_and_pd(_mm256_sub_pd(x[j], alcm_h16_value_x4(bf, p[j])), absm);
			ok &= _mm256_movemask_pd(_mm256_cmp_pd(err[j], vb, _CMP_LE_OQ)) == 15;
		}
		if (!ok)
			break; /* a neighbour may fit, or a value escapes: the careful path decides */
		run_add(sg, ns, &mx, x, err);
		__m256i qi = _mm256_set_m128i(_mm256_cvtpd_epi32(q[1]), _mm256_cvtpd_epi32(q[0]));
		__m256i z = _mm256_xor_si256(_mm256_slli_epi32(qi, 1), _mm256_srai_epi32(qi, 31));
		_mm256_storeu_si256((__m256i *)(void *)(sym + k), z);
		if (recon)
			_mm_storeu_si128((__m128i *)(void *)(recon + 2 * k), _mm_packus_epi32(p[0], p[1]));
	}
	run_fold(sg, ns, mx, sig, noise, maxe);
	return k;
}

__attribute__((target("avx2,f16c"))) static uint64_t
run_h16_avx2(int dtype, const uint8_t *src, uint64_t n, double s, double o, double inv,
             double b, uint32_t *sym, uint8_t *recon, double *sig, double *noise, double *maxe)
{
	return dtype == ALCM_DTYPE_BF16
	           ? run_h16_x8(1, src, n, s, o, inv, b, sym, recon, sig, noise, maxe)
	           : run_h16_x8(0, src, n, s, o, inv, b, sym, recon, sig, noise, maxe);
}
#endif

uint64_t alcm_quant_run_h16(int dtype, const uint8_t *src, uint64_t n, double s, double o,
                            double inv, double b, uint32_t *sym, uint8_t *recon, double *sig,
                            double *noise, double *maxe)
{
#ifdef ALCM_H16_SIMD
	if (!alcm_quant_scalar_only && alcm_cpu_avx2_f16c())
		return run_h16_avx2(dtype, src, n, s, o, inv, b, sym, recon, sig, noise, maxe);
#endif
	(void)dtype, (void)src, (void)n, (void)s, (void)o, (void)inv, (void)b, (void)sym;
	(void)recon, (void)sig, (void)noise, (void)maxe;
	return 0;
}

/* ---- the largest magnitude of float32 values ------------------------------------------------ */

/* On the bits: for non-negative floats the order of the bit patterns is the order of the
 * values. Signed 32-bit lanes (the sign is cleared). */
static uint32_t absmax_f32(const uint8_t *src, uint64_t n)
{
	int32_t m = 0, lo = 0x00800000, inf = 0x7f800000;
	for (uint64_t i = 0; i < n; i++) {
		int32_t a = (int32_t)(alcm_load32(src + 4 * i) & 0x7fffffffu);
		a = a >= lo && a < inf ? a : 0;
		m = a > m ? a : m;
	}
	return (uint32_t)m;
}

#ifdef HAVE_AVX2_RUN
/* The same maximum, sixteen values at a time (SSE2 has no 32-bit max: the portable loop as
 * compiled for the baseline was about 4% of a lossy pack of small files). */
__attribute__((target("avx2"))) static uint32_t absmax_f32_avx2(const uint8_t *src, uint64_t n)
{
	const __m256i keep = _mm256_set1_epi32(0x7fffffff), below = _mm256_set1_epi32(0x007fffff),
	              inf = _mm256_set1_epi32(0x7f800000);
	__m256i m0 = _mm256_setzero_si256(), m1 = m0;
	uint64_t k = 0;
	for (; k + 16 <= n; k += 16) {
		__m256i a = _mm256_and_si256(
			_mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * k)), keep);
		__m256i b = _mm256_and_si256(
			_mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * k + 32)), keep);
		/* Normal: above the subnormals and below the infinities. */
		__m256i oka = _mm256_and_si256(_mm256_cmpgt_epi32(a, below), _mm256_cmpgt_epi32(inf, a));
		__m256i okb = _mm256_and_si256(_mm256_cmpgt_epi32(b, below), _mm256_cmpgt_epi32(inf, b));
		m0 = _mm256_max_epi32(m0, _mm256_and_si256(a, oka));
		m1 = _mm256_max_epi32(m1, _mm256_and_si256(b, okb));
	}
	int32_t l[8];
	_mm256_storeu_si256((__m256i *)(void *)l, _mm256_max_epi32(m0, m1));
	uint32_t m = absmax_f32(src + 4 * k, n - k);
	for (int h = 0; h < 8; h++)
		m = (uint32_t)l[h] > m ? (uint32_t)l[h] : m;
	return m;
}
#endif

uint32_t alcm_quant_absmax_f32(const uint8_t *src, uint64_t n)
{
#ifdef HAVE_AVX2_RUN
	if (!alcm_quant_scalar_only && __builtin_cpu_supports("avx2"))
		return absmax_f32_avx2(src, n);
#endif
	return absmax_f32(src, n);
}

/* ---- the largest magnitude of float16 and bfloat16 values ------------------------------- */

/* The same on 16-bit patterns: normal from `lo` (the smallest normal's pattern) up to `inf`
 * (the infinities'), exclusive; the sign cleared, every pattern fits a signed 16-bit lane. */
static uint16_t absmax_h16(const uint8_t *src, uint64_t n, uint16_t lo, uint16_t inf)
{
	uint16_t m = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint16_t a = (uint16_t)(alcm_load16(src + 2 * i) & 0x7fffu);
		a = a >= lo && a < inf ? a : 0;
		m = a > m ? a : m;
	}
	return m;
}

#ifdef HAVE_AVX2_RUN
/* Thirty-two values at a time (the scalar loop was 11 instructions a value, 7% of a lossy
 * pack of bfloat16 weights). */
__attribute__((target("avx2"))) static uint16_t absmax_h16_avx2(const uint8_t *src, uint64_t n,
                                                                uint16_t lo, uint16_t inf)
{
	const __m256i keep = _mm256_set1_epi16(0x7fff), below = _mm256_set1_epi16((short)(lo - 1)),
	              top = _mm256_set1_epi16((short)inf);
	__m256i m0 = _mm256_setzero_si256(), m1 = m0;
	uint64_t k = 0;
	for (; k + 32 <= n; k += 32) {
		__m256i a = _mm256_and_si256(
			_mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * k)), keep);
		__m256i b = _mm256_and_si256(
			_mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * k + 32)), keep);
		__m256i oka = _mm256_and_si256(_mm256_cmpgt_epi16(a, below), _mm256_cmpgt_epi16(top, a));
		__m256i okb = _mm256_and_si256(_mm256_cmpgt_epi16(b, below), _mm256_cmpgt_epi16(top, b));
		m0 = _mm256_max_epi16(m0, _mm256_and_si256(a, oka));
		m1 = _mm256_max_epi16(m1, _mm256_and_si256(b, okb));
	}
	int16_t l[16];
	_mm256_storeu_si256((__m256i *)(void *)l, _mm256_max_epi16(m0, m1));
	uint16_t m = absmax_h16(src + 2 * k, n - k, lo, inf);
	for (int h = 0; h < 16; h++)
		m = (uint16_t)l[h] > m ? (uint16_t)l[h] : m;
	return m;
}
#endif

uint16_t alcm_quant_absmax_h16(int bf, const uint8_t *src, uint64_t n)
{
	uint16_t lo = bf ? 0x0080u : 0x0400u, inf = bf ? 0x7f80u : 0x7c00u;
#ifdef HAVE_AVX2_RUN
	if (!alcm_quant_scalar_only && __builtin_cpu_supports("avx2"))
		return absmax_h16_avx2(src, n, lo, inf);
#endif
	return absmax_h16(src, n, lo, inf);
}
