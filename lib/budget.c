/* Size-budget packing: per-tensor steps from predicted rates, by equal slope (reverse
 * water-filling), without trial-compressing every tensor at every step. */
#include "codec_internal.h"

#include <math.h>

/* Sums of one dtype's values shifted by `shift`, skipping the special ones (NaN, inf, -0,
 * subnormals), in four lanes: a loop per dtype, as this pass reads every value. */
#define SPREAD_LOOP(LOAD)                                                                   \
	for (uint64_t i = 0; i < n; i++) {                                                      \
		if (alcm_is_special(dtype, src, i))                                                 \
			continue;                                                                       \
		double d = (LOAD) - shift;                                                          \
		s1[i & 3] += d;                                                                     \
		s2[i & 3] += d * d;                                                                 \
		cnt++;                                                                              \
	}

/* spread() of float32 values: the same sums in the same lanes (so the same result to the
 * bit), without a branch: a special value adds 0 to its lane and to the count. SPREAD_LOOP
 * stays scalar and branching: faceapi's 7M values at -T1 took 19-22 ms, this 13 ms (0.93 ->
 * 0.57 ns a value in cache). */
static double spread_f32(const uint8_t *src, uint64_t n, double shift)
{
	double s1[4] = {0, 0, 0, 0}, s2[4] = {0, 0, 0, 0};
	uint64_t cnt[4] = {0, 0, 0, 0}, i = 0;
	for (; i + 4 <= n; i += 4)
		for (int l = 0; l < 4; l++) {
			uint32_t u = alcm_load32(src + 4 * (i + l)), e = u & 0x7f800000u;
			float f;
			memcpy(&f, &u, 4);
			int ok = e != 0x7f800000u && (e != 0 || u == 0);
			double d = ok ? (double)f - shift : 0.0;
			s1[l] += d;
			s2[l] += d * d;
			cnt[l] += (uint64_t)ok;
		}
	for (; i < n; i++) {
		uint32_t u = alcm_load32(src + 4 * i), e = u & 0x7f800000u;
		float f;
		memcpy(&f, &u, 4);
		if (e == 0x7f800000u || (e == 0 && u != 0))
			continue;
		double d = (double)f - shift;
		s1[i & 3] += d;
		s2[i & 3] += d * d;
		cnt[0]++;
	}
	uint64_t c = (cnt[0] + cnt[1]) + (cnt[2] + cnt[3]);
	if (c < 2)
		return 0;
	double m1 = ((s1[0] + s1[1]) + (s1[2] + s1[3])) / (double)c;
	double v = ((s2[0] + s2[1]) + (s2[2] + s2[3])) / (double)c - m1 * m1;
	return v > 0 ? v : 0;
}

/* Variance of the finite, normal values (shifted by the first of them against
 * cancellation); 0 for fewer than two. */
static double spread(int dtype, const uint8_t *src, uint64_t n)
{
	double shift = 0, s1[4] = {0}, s2[4] = {0};
	uint64_t cnt = 0, first = 0;
	while (first < n && alcm_is_special(dtype, src, first))
		first++;
	if (first < n)
		shift = alcm_load_float(dtype, src, first);
	switch (dtype) {
	case ALCM_DTYPE_F16: SPREAD_LOOP(alcm_half_to_float(alcm_load16(src + 2 * i))) break;
	case ALCM_DTYPE_BF16: SPREAD_LOOP(alcm_load_float(ALCM_DTYPE_BF16, src, i)) break;
	case ALCM_DTYPE_F32: return spread_f32(src, n, shift);
	default: SPREAD_LOOP(alcm_load_float(ALCM_DTYPE_F64, src, i)) break;
	}
	if (cnt < 2)
		return 0;
	double m1 = ((s1[0] + s1[1]) + (s1[2] + s1[3])) / (double)cnt;
	double v = ((s2[0] + s2[1]) + (s2[2] + s2[3])) / (double)cnt - m1 * m1;
	return v > 0 ? v : 0;
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
	prof->variance = spread(t->dtype, t->data, prof->elements);
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
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++)
		prof->bits[k] = alcm_predict_bits_escapes(pr, f[k], &esc);
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

/* Each tensor's best step at slope lambda; returns the total predicted bytes. */
static double pick(const alcm_budget_profile *prof, size_t n, const double *scale,
                   double lambda, int *k_out)
{
	double total = 0;
	for (size_t i = 0; i < n; i++) {
		const alcm_budget_profile *p = &prof[i];
		double sc = scale ? scale[i] : 1;
		if (!p->lossy) {
			total += p->fixed_bytes;
			k_out[i] = -1;
			continue;
		}
		int best = ALCM_BUDGET_STEPS - 1;
		double bcost = INFINITY;
		for (int k = 0; k < ALCM_BUDGET_STEPS; k++) {
			double c = distortion(p, k) + lambda * rate_bytes(p, k, sc);
			if (c < bcost) {
				bcost = c;
				best = k;
			}
		}
		k_out[i] = best;
		total += rate_bytes(p, best, sc);
	}
	return total;
}

int alcm_budget_solve(const alcm_budget_profile *prof, size_t n, double budget_bytes,
                      const double *scale, double *bound, double *predicted)
{
	if ((!prof && n) || !bound || !(budget_bytes > 0))
		return ALCM_E_ARG;
	int *k = alcm_mem_calloc(NULL, n ? n : 1, sizeof(int));
	if (!k)
		return ALCM_E_NOMEM;
	/* Slopes span squared error per byte from far below to far above any tensor's. */
	double lo = 1e-300, hi = 1e300, total;
	total = pick(prof, n, scale, hi, k);
	int st = ALCM_OK;
	if (total > budget_bytes) {
		st = ALCM_E_BOUND;
	} else {
		for (int it = 0; it < 200; it++) {
			double mid = sqrt(lo * hi);
			if (pick(prof, n, scale, mid, k) > budget_bytes)
				lo = mid;
			else
				hi = mid;
			if (hi / lo < 1 + 1e-9)
				break;
		}
		total = pick(prof, n, scale, hi, k);
	}
	for (size_t i = 0; i < n; i++)
		bound[i] = k[i] < 0 ? 0 : prof[i].step[k[i]] / 2;
	if (predicted)
		*predicted = total;
	alcm_mem_free(NULL, k);
	return st;
}
