/* Uniform quantization with per-channel steps, pruning masks and exact escapes (spec 6.5). */
#include "codec_internal.h"

#include <math.h>

/* ---- half and bfloat16 ------------------------------------------------------------------ */

float alcm_half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0x1f) {
		u = s | 0x7f800000u | (m << 13);
	} else if (e) {
		u = s | ((e + 112) << 23) | (m << 13);
	} else if (m) {
		/* Subnormal half: normalise into a float32 normal. */
		e = 113;
		while (!(m & 0x400)) {
			m <<= 1;
			e--;
		}
		u = s | (e << 23) | ((m & 0x3ff) << 13);
	} else {
		u = s;
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t alcm_float_to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u)
		return (uint16_t)(s | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return (uint16_t)(s | 0x7c00);
	if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
		if (a < 0x33000000u)
			return s;
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(s | r);
	}
	uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15, keep 23-bit mantissa */
	uint32_t v = r >> 13, rem = r & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
		v++;
	return (uint16_t)(s | v);
}

float alcm_bf16_to_float(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t alcm_float_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* ---- element access --------------------------------------------------------------------- */

double alcm_load_float(int dtype, const uint8_t *src, uint64_t i)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: return alcm_half_to_float(alcm_load16(src + 2 * i));
	case ALCM_DTYPE_BF16: return alcm_bf16_to_float(alcm_load16(src + 2 * i));
	case ALCM_DTYPE_F32: {
		uint32_t u = alcm_load32(src + 4 * i);
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	default: {
		uint64_t u = alcm_load64(src + 8 * i);
		double d;
		memcpy(&d, &u, 8);
		return d;
	}
	}
}

int alcm_is_special(int dtype, const uint8_t *src, uint64_t i)
{
	uint64_t bits, expmask, signbit;
	switch (dtype) {
	case ALCM_DTYPE_F16:
		bits = alcm_load16(src + 2 * i), expmask = 0x7c00, signbit = 0x8000;
		break;
	case ALCM_DTYPE_BF16:
		bits = alcm_load16(src + 2 * i), expmask = 0x7f80, signbit = 0x8000;
		break;
	case ALCM_DTYPE_F32:
		bits = alcm_load32(src + 4 * i), expmask = 0x7f800000u, signbit = 0x80000000u;
		break;
	default:
		bits = alcm_load64(src + 8 * i), expmask = 0x7ff0000000000000ull,
		signbit = 0x8000000000000000ull;
	}
	uint64_t e = bits & expmask;
	if (e == expmask)
		return 1; /* inf, NaN */
	if (e == 0)
		return bits != 0; /* -0 and subnormals; +0 codes as symbol 0 */
	(void)signbit;
	return 0;
}

static void store_value(int dtype, uint8_t *dst, uint64_t i, double v)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: alcm_store16(dst + 2 * i, alcm_float_to_half((float)v)); break;
	case ALCM_DTYPE_BF16: alcm_store16(dst + 2 * i, alcm_float_to_bf16((float)v)); break;
	case ALCM_DTYPE_F32: {
		float f = (float)v;
		uint32_t u;
		memcpy(&u, &f, 4);
		alcm_store32(dst + 4 * i, u);
		break;
	}
	default: {
		uint64_t u;
		memcpy(&u, &v, 8);
		alcm_store64(dst + 8 * i, u);
	}
	}
}

double alcm_quant_value(int dtype, int64_t q, double s)
{
	double r = (double)q * s;
	switch (dtype) {
	case ALCM_DTYPE_F16: return alcm_half_to_float(alcm_float_to_half((float)r));
	case ALCM_DTYPE_BF16: return alcm_bf16_to_float(alcm_float_to_bf16((float)r));
	case ALCM_DTYPE_F32: return (double)(float)r;
	default: return r;
	}
}

static inline uint32_t zigzag(int64_t q)
{
	return (uint32_t)(((uint64_t)q << 1) ^ (uint64_t)(q >> 63));
}
static inline int64_t unzigzag(uint32_t z)
{
	return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* Symbols are kept within +-2^30 so that zigzag fits 31 bits. */
#define QMAX ((int64_t)1 << 30)

/* ---- chunk encoder ---------------------------------------------------------------------- */

static int put_escapes(alcm_coder *c, alcm_buf *data, alcm_buf *esc, int level)
{
	int st = alcm_buf_put_varint(data, esc->len);
	if (!st)
		st = alcm_stream_put(c, data, esc->p, esc->len, level);
	return st;
}

static int put_symbols(alcm_coder *c, alcm_buf *data, const uint32_t *sym, uint64_t n,
                       int level)
{
	uint32_t maxz = 0;
	for (uint64_t i = 0; i < n; i++)
		maxz |= sym[i];
	uint8_t w = maxz < 0x100 ? 1 : maxz < 0x10000 ? 2 : 4;
	int st = alcm_buf_put(data, &w, 1);
	if (!st)
		st = alcm_buf_put_varint(data, n);
	if (st)
		return st;
	uint8_t *plane = alcm_mem_alloc(data->a, n ? (size_t)n : 1);
	if (!plane)
		return ALCM_E_NOMEM;
	for (unsigned k = 0; k < w && !st; k++) {
		for (uint64_t i = 0; i < n; i++)
			plane[i] = (uint8_t)(sym[i] >> (8 * k));
		st = alcm_stream_put(c, data, plane, (size_t)n, level);
	}
	alcm_mem_free(data->a, plane);
	return st;
}

static void store_value(int dtype, uint8_t *dst, uint64_t i, double v);

int alcm_quant_encode(alcm_coder *c, alcm_buf *data, alcm_buf *mask, const alcm_qparams *qp,
                      const uint8_t *src, uint64_t first, uint64_t elems, alcm_qstats *stt,
                      uint8_t *recon)
{
	const alcm_allocator *a = data->a;
	size_t w = alcm_dtype_size(qp->dtype);
	int st = ALCM_OK;
	uint32_t *sym = alcm_mem_alloc(a, (size_t)(elems ? elems : 1) * sizeof(uint32_t));
	uint8_t *bits = qp->prune_below > 0 ? alcm_mem_calloc(a, 1, (size_t)(elems / 8 + 1)) : NULL;
	alcm_buf esc = {NULL, 0, 0, a};
	if (!sym || (qp->prune_below > 0 && !bits)) {
		st = ALCM_E_NOMEM;
		goto out;
	}
	uint64_t nsym = 0, nesc = 0, last = 0;
	alcm_buf escval = {NULL, 0, 0, a};
	double maxe = 0, sig = 0, noise = 0;
	uint64_t pruned = 0;
	uint64_t i = 0;
	while (i < elems && !st) {
		uint64_t g = first + i;
		uint64_t ch = qp->nsteps == 1 ? 0 : g / qp->inner;
		uint64_t seg_end = qp->nsteps == 1 ? elems : (ch + 1) * qp->inner - first;
		if (seg_end > elems)
			seg_end = elems;
		double s = qp->step[ch];
		double inv = s > 0 ? 1.0 / s : 0.0;
		double b = qp->bound_c ? qp->bound_c[ch] : INFINITY;
		for (; i < seg_end; i++) {
			if (alcm_is_special(qp->dtype, src, first + i)) {
				st = alcm_buf_put_varint(&esc, i - last - (nesc ? 1 : 0));
				if (!st)
					st = alcm_buf_put(&escval, src + (first + i) * w, w);
				if (st)
					break;
				last = i;
				nesc++;
				sym[nsym++] = 0;
				if (recon)
					memcpy(recon + (first + i) * w, src + (first + i) * w, w);
				continue;
			}
			double x = alcm_load_float(qp->dtype, src, first + i);
			double ax = fabs(x);
			sig += x * x;
			if (bits && ax < qp->prune_below && ax <= b) {
				bits[i >> 3] |= (uint8_t)(1u << (i & 7));
				pruned++;
				noise += x * x;
				if (recon)
					store_value(qp->dtype, recon, first + i, 0.0);
				if (ax > maxe)
					maxe = ax;
				continue;
			}
			int64_t q = 0;
			double r = 0, err = ax;
			if (s > 0) {
				double qd = nearbyint(x * inv);
				if (fabs(qd) < (double)QMAX) {
					q = (int64_t)qd;
					r = alcm_quant_value(qp->dtype, q, s);
					err = fabs(x - r);
					/* x * inv can land one step off; the neighbours fix it. */
					for (int d = -1; d <= 1 && err > b; d += 2) {
						double r2 = alcm_quant_value(qp->dtype, q + d, s);
						if (fabs(x - r2) < err) {
							q += d;
							r = r2;
							err = fabs(x - r2);
						}
					}
				} else {
					err = INFINITY;
				}
			}
			if (err > b || (s <= 0 && x != 0) || !isfinite(err)) {
				/* Outlier or bound miss: store the value exactly. */
				st = alcm_buf_put_varint(&esc, i - last - (nesc ? 1 : 0));
				if (!st)
					st = alcm_buf_put(&escval, src + (first + i) * w, w);
				if (st)
					break;
				last = i;
				nesc++;
				sym[nsym++] = 0;
				if (recon)
					memcpy(recon + (first + i) * w, src + (first + i) * w, w);
				continue;
			}
			if (err > maxe)
				maxe = err;
			noise += err * err;
			sym[nsym++] = zigzag(q);
			if (recon)
				store_value(qp->dtype, recon, first + i, (double)q * s);
		}
	}
	if (!st) {
		/* Escape block: count, gaps, then the raw values. */
		alcm_buf blk = {NULL, 0, 0, a};
		st = alcm_buf_put_varint(&blk, nesc);
		if (!st)
			st = alcm_buf_put(&blk, esc.p, esc.len);
		if (!st)
			st = alcm_buf_put(&blk, escval.p, escval.len);
		if (!st)
			st = put_symbols(c, data, sym, nsym, qp->level);
		if (!st)
			st = put_escapes(c, data, &blk, qp->level);
		if (!st && bits)
			st = alcm_stream_put(c, mask, bits, (size_t)(elems / 8 + 1), qp->level);
		alcm_buf_free(&blk);
	}
	alcm_buf_free(&escval);
	stt->pruned += pruned;
	stt->escapes += nesc;
	if (maxe > stt->max_err)
		stt->max_err = maxe;
	stt->sig += sig;
	stt->noise += noise;
out:
	alcm_buf_free(&esc);
	alcm_mem_free(a, sym);
	alcm_mem_free(a, bits);
	return st;
}

/* ---- chunk decoder ---------------------------------------------------------------------- */

/*
 * scratch holds: mask bitmap (elems/8+1), then symbol planes (up to 4 * elems). The caller
 * sizes it with alcm_quant_scratch().
 */
int alcm_quant_decode(alcm_coder *c, alcm_cursor *data, alcm_cursor *mask,
                      const alcm_qparams *qp, uint8_t *dst, uint64_t first, uint64_t elems,
                      uint8_t *scratch, size_t scratch_len)
{
	size_t w = alcm_dtype_size(qp->dtype);
	size_t mbytes = (size_t)(elems / 8 + 1);
	uint8_t *bits = NULL;
	int st;
	if (scratch_len < mbytes + 4 * elems)
		return ALCM_E_ARG;
	uint64_t expect = elems;
	if (mask) {
		bits = scratch;
		uint64_t pruned;
		if ((st = alcm_bitmap_get(c, mask, bits, elems, &pruned)))
			return st;
		expect -= pruned;
	}
	uint8_t width;
	uint64_t nsym;
	if ((st = alcm_cur_u8(data, &width)) || (st = alcm_cur_varint(data, &nsym)))
		return st;
	if ((width != 1 && width != 2 && width != 4) || nsym != expect)
		return ALCM_E_CORRUPT;
	uint8_t *planes = scratch + mbytes;
	for (unsigned k = 0; k < width; k++)
		if ((st = alcm_stream_get(c, data, planes + k * nsym, (size_t)nsym)))
			return st;
	uint64_t si = 0, i = 0;
	while (i < elems) {
		uint64_t g = first + i;
		uint64_t ch = qp->nsteps == 1 ? 0 : g / qp->inner;
		uint64_t seg_end = qp->nsteps == 1 ? elems : (ch + 1) * qp->inner - first;
		if (seg_end > elems)
			seg_end = elems;
		double s = qp->step[ch];
		for (; i < seg_end; i++) {
			if (bits && ((bits[i >> 3] >> (i & 7)) & 1)) {
				store_value(qp->dtype, dst, first + i, 0.0);
				continue;
			}
			uint32_t z = planes[si];
			if (width > 1)
				z |= (uint32_t)planes[nsym + si] << 8;
			if (width > 2)
				z |= ((uint32_t)planes[2 * nsym + si] << 16) |
				     ((uint32_t)planes[3 * nsym + si] << 24);
			si++;
			if (z >= (uint32_t)(2 * QMAX))
				return ALCM_E_CORRUPT;
			double r = (double)unzigzag(z) * s;
			store_value(qp->dtype, dst, first + i, r);
		}
	}
	/* Escapes: exact values patched over their placeholders. */
	uint64_t blen, nesc;
	if ((st = alcm_cur_varint(data, &blen)))
		return st;
	if (blen > 10 + elems * (10 + w))
		return ALCM_E_CORRUPT;
	if (blen == 0)
		return ALCM_E_CORRUPT;
	uint8_t *blk = alcm_mem_alloc(alcm_coder_alloc(c), (size_t)blen);
	if (!blk)
		return ALCM_E_NOMEM;
	st = alcm_stream_get(c, data, blk, (size_t)blen);
	alcm_cursor ec = {blk, (size_t)blen, 0};
	if (!st)
		st = alcm_cur_varint(&ec, &nesc);
	if (!st && nesc > elems)
		st = ALCM_E_CORRUPT;
	if (!st) {
		/* Gaps first, then values: walk both with two cursors. */
		alcm_cursor gc = ec;
		size_t gaps_start = ec.pos;
		for (uint64_t k = 0; k < nesc && !st; k++) {
			uint64_t gap;
			st = alcm_cur_varint(&gc, &gap);
			(void)gap;
		}
		if (!st && (blen - gc.pos) != nesc * w)
			st = ALCM_E_CORRUPT;
		alcm_cursor vc = {blk, (size_t)blen, gc.pos};
		gc.pos = gaps_start;
		uint64_t pos = 0;
		for (uint64_t k = 0; k < nesc && !st; k++) {
			uint64_t gap;
			const uint8_t *v;
			alcm_cur_varint(&gc, &gap);
			if (k == 0 ? gap >= elems : gap >= elems - pos - 1) {
				st = ALCM_E_CORRUPT;
				break;
			}
			pos = k == 0 ? gap : pos + 1 + gap;
			if (bits && ((bits[pos >> 3] >> (pos & 7)) & 1)) {
				st = ALCM_E_CORRUPT;
				break;
			}
			alcm_cur_bytes(&vc, w, &v);
			memcpy(dst + (first + pos) * w, v, w);
		}
	}
	alcm_mem_free(alcm_coder_alloc(c), blk);
	return st;
}
