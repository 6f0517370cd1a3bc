/* Lossless chunk coding (spec 6.4): byte planes, with float bits rotated so that the
 * exponent fills one plane (the ZipNN observation: exponents are few and skewed); and a
 * palette for chunks of at most 256 distinct values (weights quantized to 8 bits and saved
 * dequantized, as TF.js and many converters ship them). */
#include "codec_internal.h"

#include <stdlib.h>

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

/* pl[k][i] = byte k of element i. Separate loops keep the rotation out of the hot path. */
static void join(uint8_t *dst, const uint8_t *const *pl, uint64_t n, size_t w, int rot)
{
	if (w == 2) {
		const uint8_t *a = pl[0], *b = pl[1];
		if (rot)
			for (uint64_t i = 0; i < n; i++)
				alcm_store16(dst + 2 * i, rotr16((uint16_t)(a[i] | (b[i] << 8))));
		else
			for (uint64_t i = 0; i < n; i++)
				alcm_store16(dst + 2 * i, (uint16_t)(a[i] | (b[i] << 8)));
	} else if (w == 4) {
		const uint8_t *a = pl[0], *b = pl[1], *c = pl[2], *d = pl[3];
		for (uint64_t i = 0; i < n; i++) {
			uint32_t v = (uint32_t)a[i] | ((uint32_t)b[i] << 8) | ((uint32_t)c[i] << 16) |
			             ((uint32_t)d[i] << 24);
			alcm_store32(dst + 4 * i, rot ? rotr32(v) : v);
		}
	} else {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t v = 0;
			for (size_t k = 0; k < 8; k++)
				v |= (uint64_t)pl[k][i] << (8 * k);
			alcm_store64(dst + 8 * i, rot ? rotr64(v) : v);
		}
	}
}

/* ---- palette ----------------------------------------------------------------------------- */

#define PAL_MAX 256
#define PAL_SLOTS 1024 /* open addressing, at most a quarter full */

typedef struct palette {
	uint64_t key[PAL_SLOTS];
	uint8_t used[PAL_SLOTS], idx[PAL_SLOTS];
	uint64_t val[PAL_MAX];
	unsigned m;
} palette;

static uint64_t elem_bits(const uint8_t *p, size_t w)
{
	return w == 2 ? alcm_load16(p) : w == 4 ? alcm_load32(p) : alcm_load64(p);
}

static unsigned pal_slot(const palette *p, uint64_t k)
{
	unsigned s = (unsigned)((k * 0x9E3779B97F4A7C15ull) >> 54);
	while (p->used[s] && p->key[s] != k)
		s = (s + 1) & (PAL_SLOTS - 1);
	return s;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Collects the distinct values of n elements, sorted; 0 if there are more than 256. */
static int pal_build(palette *p, const uint8_t *src, uint64_t n, size_t w)
{
	memset(p->used, 0, sizeof(p->used));
	p->m = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = elem_bits(src + i * w, w);
		unsigned s = pal_slot(p, k);
		if (p->used[s])
			continue;
		if (p->m == PAL_MAX)
			return 0;
		p->used[s] = 1;
		p->key[s] = k;
		p->val[p->m++] = k;
	}
	qsort(p->val, p->m, sizeof(uint64_t), cmp_u64);
	for (unsigned j = 0; j < p->m; j++)
		p->idx[pal_slot(p, p->val[j])] = (uint8_t)j;
	return 1;
}

/* Transform 3: varint m, the palette (m elements, ascending as unsigned integers), then one
 * index byte per element. */
static int pal_encode(alcm_coder *c, alcm_buf *out, const palette *p, const uint8_t *src,
                      uint64_t n, size_t w, unsigned zmask, int level)
{
	uint8_t pal[PAL_MAX * 8];
	for (unsigned j = 0; j < p->m; j++)
		for (size_t b = 0; b < w; b++)
			pal[j * w + b] = (uint8_t)(p->val[j] >> (8 * b));
	uint8_t *ix = alcm_mem_alloc(out->a, (size_t)(n ? n : 1));
	if (!ix)
		return ALCM_E_NOMEM;
	for (uint64_t i = 0; i < n; i++)
		ix[i] = p->idx[pal_slot(p, elem_bits(src + i * w, w))];
	int st = alcm_buf_put_varint(out, p->m);
	if (!st)
		st = alcm_stream_put2(c, out, pal, p->m * w, level, zmask & 1, NULL);
	if (!st)
		st = alcm_stream_put2(c, out, ix, (size_t)n, level, (zmask >> 1) & 1, NULL);
	alcm_mem_free(out->a, ix);
	return st;
}

static int pal_decode(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, uint64_t n, size_t w,
                      uint8_t *scratch)
{
	uint64_t m;
	uint8_t pal[PAL_MAX * 8];
	const uint8_t *ix;
	int st = alcm_cur_varint(cur, &m);
	if (st)
		return st;
	if (w < 2 || m < 1 || m > PAL_MAX || m > n)
		return ALCM_E_CORRUPT;
	if ((st = alcm_stream_get(c, cur, pal, (size_t)m * w)))
		return st;
	for (uint64_t j = 1; j < m; j++)
		if (elem_bits(pal + (j - 1) * w, w) >= elem_bits(pal + j * w, w))
			return ALCM_E_CORRUPT; /* not strictly ascending */
	if ((st = alcm_stream_view(c, cur, scratch, (size_t)n, &ix)))
		return st;
	for (uint64_t i = 0; i < n; i++) {
		if (ix[i] >= m)
			return ALCM_E_CORRUPT;
		memcpy(dst + i * w, pal + (size_t)ix[i] * w, w);
	}
	return ALCM_OK;
}

/* ---- chunks -------------------------------------------------------------------------------- */

int alcm_lossless_encode(alcm_coder *c, alcm_buf *out, int dtype, const alcm_lplan *plan,
                         const uint8_t *src, uint64_t elems, int level)
{
	unsigned transform = plan->transform;
	size_t w = alcm_dtype_size(dtype);
	size_t n = (size_t)(elems * w);
	palette *pal = NULL;
	if (transform == ALCM_TRANSFORM_PALETTE) {
		/* The plan came from a sample: the whole chunk may hold more values. */
		pal = w >= 2 ? alcm_mem_alloc(out->a, sizeof(*pal)) : NULL;
		if (w >= 2 && !pal)
			return ALCM_E_NOMEM;
		if (!pal || !pal_build(pal, src, elems, w)) {
			alcm_mem_free(out->a, pal);
			pal = NULL;
			transform = plan->fb_transform;
		}
	}
	uint8_t t = (uint8_t)transform;
	int st = alcm_buf_put(out, &t, 1);
	if (pal) {
		if (!st)
			st = pal_encode(c, out, pal, src, elems, w, plan->zmask, level);
		alcm_mem_free(out->a, pal);
		return st;
	}
	if (st)
		return st;
	unsigned zmask = plan->transform == ALCM_TRANSFORM_PALETTE ? plan->fb_zmask : plan->zmask;
	if (transform == ALCM_TRANSFORM_NONE || w == 1)
		return alcm_stream_put2(c, out, src, n, level, zmask & 1, NULL);
	uint8_t *planes = alcm_mem_alloc(out->a, n);
	if (!planes)
		return ALCM_E_NOMEM;
	split(planes, src, elems, w, transform == ALCM_TRANSFORM_FLOAT);
	for (size_t k = 0; k < w && !st; k++)
		st = alcm_stream_put2(c, out, planes + k * elems, (size_t)elems, level,
		                      (zmask >> k) & 1, NULL);
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
	if (t == ALCM_TRANSFORM_PALETTE)
		return pal_decode(c, cur, dst, elems, w, scratch);
	if (t > ALCM_TRANSFORM_FLOAT || (t == ALCM_TRANSFORM_FLOAT && !alcm_dtype_is_float(dtype)))
		return ALCM_E_CORRUPT;
	const uint8_t *pl[8];
	for (size_t k = 0; k < w; k++)
		if ((st = alcm_stream_view(c, cur, scratch + k * elems, (size_t)elems, &pl[k])))
			return st;
	join(dst, pl, elems, w, t == ALCM_TRANSFORM_FLOAT);
	return ALCM_OK;
}

/* Codes a sample with every plane offered to zstd, recording which planes shrank. */
static size_t trial(alcm_coder *c, alcm_buf *tmp, int dtype, unsigned transform,
                    const uint8_t *s, uint64_t ns, int level, unsigned *zmask)
{
	size_t w = alcm_dtype_size(dtype), planes = transform == ALCM_TRANSFORM_NONE ? 1 : w;
	alcm_lplan all = {.transform = transform, .zmask = 0xffu};
	tmp->len = 0;
	if (alcm_lossless_encode(c, tmp, dtype, &all, s, ns, level))
		return SIZE_MAX;
	/* Walk the stream headers: backend byte 1 means zstd won on that plane. */
	alcm_cursor cur = {tmp->p, tmp->len, 1};
	*zmask = 0;
	for (size_t k = 0; k < planes; k++) {
		uint8_t id;
		uint64_t raw, clen;
		const uint8_t *p;
		if (alcm_cur_u8(&cur, &id) || alcm_cur_varint(&cur, &raw) ||
		    alcm_cur_varint(&cur, &clen) || alcm_cur_bytes(&cur, (size_t)clen, &p))
			return SIZE_MAX;
		/* Keep zstd where it saved at least 1%: below that, raw decodes faster. */
		if (id == ALCM_BACKEND_ZSTD && clen < raw - raw / 100)
			*zmask |= 1u << k;
	}
	return tmp->len;
}

alcm_lplan alcm_lossless_choose(alcm_coder *c, alcm_buf *tmp, int dtype, const uint8_t *src,
                                uint64_t elems, int level)
{
	size_t w = alcm_dtype_size(dtype);
	alcm_lplan best = {.transform = ALCM_TRANSFORM_NONE, .zmask = 0xffu};
	unsigned alt = alcm_dtype_is_float(dtype) ? ALCM_TRANSFORM_FLOAT : ALCM_TRANSFORM_PLANES;
	/* A 64 KiB sample from the middle of the chunk decides; coding it twice costs a few
	 * percent of the chunk's time. */
	uint64_t ns = ((uint64_t)1 << 16) / w;
	if (ns > elems)
		ns = elems;
	if (ns < 256)
		return w == 1 ? best : (alcm_lplan){.transform = alt, .zmask = 0xffu};
	const uint8_t *s = src + (size_t)((elems - ns) / 2 * w);
	unsigned zm;
	size_t len = trial(c, tmp, dtype, ALCM_TRANSFORM_NONE, s, ns, level, &zm);
	best.zmask = zm;
	if (w > 1) {
		size_t len2 = trial(c, tmp, dtype, alt, s, ns, level, &zm);
		if (len2 <= len) {
			best.transform = alt;
			best.zmask = zm;
			len = len2;
		}
		/* A sample of at most 256 distinct values: try the palette (both streams offered
		 * to zstd; each is stored raw where zstd does not shrink it). */
		palette *pal = alcm_mem_alloc(tmp->a, sizeof(*pal));
		if (pal && pal_build(pal, s, ns, w)) {
			tmp->len = 0;
			uint8_t t = ALCM_TRANSFORM_PALETTE;
			if (!alcm_buf_put(tmp, &t, 1) &&
			    !pal_encode(c, tmp, pal, s, ns, w, 3u, level) && tmp->len < len)
				best = (alcm_lplan){ALCM_TRANSFORM_PALETTE, 3u, best.transform, best.zmask};
		}
		alcm_mem_free(tmp->a, pal);
	}
	return best;
}
