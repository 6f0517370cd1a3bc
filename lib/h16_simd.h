/* Float16 and bfloat16 values in AVX2 lanes (with F16C), rounded as alcm_quant_value_at()
 * rounds them: shared by the encoder's escape count (lib/encoder.c) and the quantizer's
 * common case (lib/quant_fast.c), so both see the dtype's grid the same way. Include only
 * where ALCM_H16_SIMD is defined after it. */
#ifndef ALCM_H16_SIMD_H
#define ALCM_H16_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__FAST_MATH__)
#include <immintrin.h>
#define ALCM_H16_SIMD 1

/* Doubles r rounded to float, then to bfloat16 (bf) or float16, nearest even: bfloat16 by
 * adding 0x7fff and the last kept bit, a NaN kept quiet (alcm_float_to_bf16_i()); float16 by
 * F16C's conversion, which rounds as alcm_float_to_half() does, subnormals and overflow
 * included. The four patterns in the low 16 bits of 32-bit lanes. */
__attribute__((target("avx2,f16c"))) static inline __m128i alcm_h16_round_x4(const int bf,
                                                                           __m256d r)
{
	__m128 f = _mm256_cvtpd_ps(r);
	if (!bf)
		return _mm_cvtepu16_epi32(_mm_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
	__m128i u = _mm_castps_si128(f);
	__m128i nan = _mm_cmpgt_epi32(_mm_and_si128(u, _mm_set1_epi32(0x7fffffff)),
	                              _mm_set1_epi32(0x7f800000));
	__m128i odd = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
	__m128i p = _mm_srli_epi32(_mm_add_epi32(u, _mm_add_epi32(_mm_set1_epi32(0x7fff), odd)), 16);
	__m128i qn = _mm_or_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(0x40));
	return _mm_blendv_epi8(p, qn, nan);
}

/* Four patterns (low 16 bits of 32-bit lanes) as doubles. */
__attribute__((target("avx2,f16c"))) static inline __m256d alcm_h16_value_x4(const int bf,
                                                                           __m128i p)
{
	if (!bf)
		return _mm256_cvtps_pd(_mm_cvtph_ps(_mm_packus_epi32(p, _mm_setzero_si128())));
	return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(p, 16)));
}

/* All ones in the 32-bit lanes of the four patterns u (low 16 bits) that alcm_is_special()
 * takes: exponent all ones (infinities, NaN), or zero with bits (-0, subnormals). */
__attribute__((target("avx2,f16c"))) static inline __m128i alcm_h16_special_x4(const int bf,
                                                                             __m128i u)
{
	const __m128i em = _mm_set1_epi32(bf ? 0x7f80 : 0x7c00), zero = _mm_setzero_si128();
	__m128i e = _mm_and_si128(u, em);
	return _mm_or_si128(_mm_cmpeq_epi32(e, em),
	                    _mm_andnot_si128(_mm_cmpeq_epi32(u, zero), _mm_cmpeq_epi32(e, zero)));
}

/* Eight patterns (16-bit lanes) as floats: exact, every value of either dtype is a float. */
__attribute__((target("avx2,f16c"))) static inline __m256 alcm_h16_float_x8(const int bf,
                                                                          __m128i h)
{
	if (!bf)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

#endif
