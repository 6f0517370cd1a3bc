/* Error measurement between an original tensor and its decoded form. */
#include "codec_internal.h"

#include <math.h>

int alcm_tensor_measure(const alcm_tensor *x, const void *yv, alcm_error_stats *st)
{
	uint64_t el;
	size_t w = x ? alcm_dtype_size(x->dtype) : 0;
	if (!x || !st || (!yv && x->nbytes) || !w || x->ndim > ALCM_MAX_NDIM ||
	    alcm_shape_elements(x->shape, x->ndim, &el) || el > UINT64_MAX / w ||
	    el * w != x->nbytes)
		return ALCM_E_ARG;
	memset(st, 0, sizeof(*st));
	st->identical = x->nbytes == 0 || memcmp(x->data, yv, x->nbytes) == 0;
	st->specials_exact = 1;
	st->snr_db = INFINITY;
	if (!alcm_dtype_is_float(x->dtype)) {
		st->specials_exact = st->identical;
		return ALCM_OK;
	}
	/* Channels along axis 0, never more than there are elements: an empty tensor of shape
	 * [2^61, 0] has no channel to loop over. */
	uint64_t n = el;
	uint64_t nch = x->ndim >= 2 && n ? x->shape[0] : 1, inner = n / nch;
	const uint8_t *a = x->data, *b = yv;
	double sig = 0, noise = 0;
	for (uint64_t c = 0; c < nch; c++) {
		double mx = 0, me = 0;
		for (uint64_t i = c * inner; i < (c + 1) * inner; i++) {
			if (alcm_is_special(x->dtype, a, i)) {
				if (memcmp(a + i * w, b + i * w, w))
					st->specials_exact = 0;
				continue;
			}
			double u = alcm_load_float(x->dtype, a, i), v = alcm_load_float(x->dtype, b, i);
			double e = fabs(u - v);
			if (isnan(e))
				e = INFINITY;
			sig += u * u;
			noise += (u - v) * (u - v);
			if (fabs(u) > mx)
				mx = fabs(u);
			if (e > me)
				me = e;
		}
		if (me > st->max_abs_error)
			st->max_abs_error = me;
		double rel = me > 0 ? (mx > 0 ? me / mx : INFINITY) : 0;
		if (rel > st->max_rel_error)
			st->max_rel_error = rel;
	}
	st->snr_db = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
	st->sq_error = noise;
	return ALCM_OK;
}

int alcm_error_within(const alcm_error_stats *st, int mode, double bound)
{
	if (!st || !st->specials_exact)
		return 0;
	switch (mode) {
	case ALCM_MODE_LOSSLESS: return st->identical;
	case ALCM_MODE_MAX_ERROR: return st->max_abs_error <= bound;
	case ALCM_MODE_REL_ERROR: return st->max_rel_error <= bound;
	case ALCM_MODE_SNR: return st->snr_db >= bound;
	case ALCM_MODE_BITS: return 1;
	default: return 0;
	}
}
