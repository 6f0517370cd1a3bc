/* Lossless chunk coding (spec 6.4): byte planes, with float bits rotated so that the
 * exponent fills one plane (the ZipNN observation: exponents are few and skewed). */
#include "codec_internal.h"

static inline uint16_t rotl16(uint16_t v)
{
	return (uint16_t)((v << 1) | (v >> 15));
}
static inline uint16_t rotr16(uint16_t v)
{
	return (uint16_t)((v >> 1) | (v << 15));
}
static inline uint32_t rotl32(uint32_t v)
{
	return (v << 1) | (v >> 31);
}
static inline uint32_t rotr32(uint32_t v)
{
	return (v >> 1) | (v << 31);
}
static inline uint64_t rotl64(uint64_t v)
{
	return (v << 1) | (v >> 63);
}
static inline uint64_t rotr64(uint64_t v)
{
	return (v >> 1) | (v << 63);
}

/* planes[k * n + i] = byte k of element i (after rotation when `rot`). */
static void split(uint8_t *planes, const uint8_t *src, uint64_t n, size_t w, int rot)
{
	if (w == 2) {
		for (uint64_t i = 0; i < n; i++) {
			uint16_t v = alcm_load16(src + 2 * i);
			if (rot)
				v = rotl16(v);
			planes[i] = (uint8_t)v;
			planes[n + i] = (uint8_t)(v >> 8);
		}
	} else if (w == 4) {
		for (uint64_t i = 0; i < n; i++) {
			uint32_t v = alcm_load32(src + 4 * i);
			if (rot)
				v = rotl32(v);
			planes[i] = (uint8_t)v;
			planes[n + i] = (uint8_t)(v >> 8);
			planes[2 * n + i] = (uint8_t)(v >> 16);
			planes[3 * n + i] = (uint8_t)(v >> 24);
		}
	} else {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t v = alcm_load64(src + 8 * i);
			if (rot)
				v = rotl64(v);
			for (size_t k = 0; k < 8; k++)
				planes[k * n + i] = (uint8_t)(v >> (8 * k));
		}
	}
}

static void join(uint8_t *dst, const uint8_t *planes, uint64_t n, size_t w, int rot)
{
	if (w == 2) {
		for (uint64_t i = 0; i < n; i++) {
			uint16_t v = (uint16_t)(planes[i] | (planes[n + i] << 8));
			alcm_store16(dst + 2 * i, rot ? rotr16(v) : v);
		}
	} else if (w == 4) {
		for (uint64_t i = 0; i < n; i++) {
			uint32_t v = (uint32_t)planes[i] | ((uint32_t)planes[n + i] << 8) |
			             ((uint32_t)planes[2 * n + i] << 16) |
			             ((uint32_t)planes[3 * n + i] << 24);
			alcm_store32(dst + 4 * i, rot ? rotr32(v) : v);
		}
	} else {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t v = 0;
			for (size_t k = 0; k < 8; k++)
				v |= (uint64_t)planes[k * n + i] << (8 * k);
			alcm_store64(dst + 8 * i, rot ? rotr64(v) : v);
		}
	}
}

int alcm_lossless_encode(alcm_coder *c, alcm_buf *out, int dtype, unsigned transform,
                         const uint8_t *src, uint64_t elems, int level)
{
	size_t w = alcm_dtype_size(dtype);
	size_t n = (size_t)(elems * w);
	uint8_t t = (uint8_t)transform;
	int st = alcm_buf_put(out, &t, 1);
	if (st)
		return st;
	if (transform == ALCM_TRANSFORM_NONE || w == 1)
		return alcm_stream_put(c, out, src, n, level);
	uint8_t *planes = alcm_mem_alloc(out->a, n);
	if (!planes)
		return ALCM_E_NOMEM;
	split(planes, src, elems, w, transform == ALCM_TRANSFORM_FLOAT);
	for (size_t k = 0; k < w && !st; k++)
		st = alcm_stream_put(c, out, planes + k * elems, (size_t)elems, level);
	alcm_mem_free(out->a, planes);
	return st;
}

int alcm_lossless_decode(alcm_coder *c, alcm_cursor *cur, int dtype, uint8_t *dst,
                         uint64_t elems, uint8_t *scratch)
{
	size_t w = alcm_dtype_size(dtype);
	size_t n = (size_t)(elems * w);
	uint8_t t;
	int st = alcm_cur_u8(cur, &t);
	if (st)
		return st;
	if (t == ALCM_TRANSFORM_NONE || (w == 1 && t == ALCM_TRANSFORM_PLANES))
		return alcm_stream_get(c, cur, dst, n);
	if (t > ALCM_TRANSFORM_FLOAT || (t == ALCM_TRANSFORM_FLOAT && !alcm_dtype_is_float(dtype)))
		return ALCM_E_CORRUPT;
	for (size_t k = 0; k < w; k++)
		if ((st = alcm_stream_get(c, cur, scratch + k * elems, (size_t)elems)))
			return st;
	join(dst, scratch, elems, w, t == ALCM_TRANSFORM_FLOAT);
	return ALCM_OK;
}

unsigned alcm_lossless_choose(alcm_coder *c, alcm_buf *tmp, int dtype, const uint8_t *src,
                              uint64_t elems, int level)
{
	size_t w = alcm_dtype_size(dtype);
	if (w == 1)
		return ALCM_TRANSFORM_NONE;
	unsigned alt = alcm_dtype_is_float(dtype) ? ALCM_TRANSFORM_FLOAT : ALCM_TRANSFORM_PLANES;
	/* A 64 KiB sample from the middle of the chunk decides; coding it twice costs a few
	 * percent of the chunk's time. */
	uint64_t ns = ((uint64_t)1 << 16) / w;
	if (ns > elems)
		ns = elems;
	const uint8_t *s = src + (size_t)((elems - ns) / 2 * w);
	size_t best = SIZE_MAX;
	unsigned pick = alt;
	const unsigned cand[2] = {alt, ALCM_TRANSFORM_NONE};
	for (int i = 0; i < 2; i++) {
		tmp->len = 0;
		if (alcm_lossless_encode(c, tmp, dtype, cand[i], s, ns, level))
			return alt;
		if (tmp->len < best) {
			best = tmp->len;
			pick = cand[i];
		}
	}
	return pick;
}
