/* Lossless chunk coding (spec 6.4): byte planes, with float bits rotated so that the
 * exponent fills one plane (the ZipNN observation: exponents are few and skewed); and a
 * palette for chunks of at most 256 distinct values (weights quantized to 8 bits and saved
 * dequantized, as TF.js and many converters ship them). */
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

/* Stream k of a chunk: zstd at the level the plan gives it (level 1 where its bit of lmask
 * is set, else the caller's), or raw where zmask says zstd does not pay. A byte plane (`plane`)
 * coded at level 1 is a frame of literals only when short: its bytes repeat too little for
 * matches to pay (the digits gradients' chunks of 8 KiB: 286,361 -> 286,459 bytes), and the
 * frame costs less than half the time. Palettes and bitmaps keep the match search. */
static int put_k(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n,
                 const alcm_lplan *pl, unsigned k, int level, int plane)
{
	int lv = (pl->lmask >> k) & 1 ? 1 : level;
	int z = (pl->zmask >> k) & 1;
	return alcm_stream_put2(c, out, src, n, lv, z && lv == 1 && plane ? ALCM_ZSTD_LITERALS : z,
	                        NULL);
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

static inline uint64_t elem_bits(const uint8_t *p, size_t w)
{
	return w == 1 ? p[0] : w == 2 ? alcm_load16(p) : w == 4 ? alcm_load32(p) : alcm_load64(p);
}

static unsigned pal_slot(const palette *p, uint64_t k)
{
	unsigned s = (unsigned)((k * 0x9E3779B97F4A7C15ull) >> 54);
	while (p->used[s] && p->key[s] != k)
		s = (s + 1) & (PAL_SLOTS - 1);
	return s;
}

/* Sorts at most PAL_MAX values: a bottom-up merge sort (qsort's callback per comparison
 * cost a tenth of coding small palette chunks). */
static void sort_u64(uint64_t *v, unsigned m)
{
	uint64_t tmp[PAL_MAX], *a = v, *b = tmp;
	for (unsigned run = 1; run < m; run *= 2) {
		for (unsigned lo = 0; lo < m; lo += 2 * run) {
			unsigned mid = lo + run < m ? lo + run : m, hi = lo + 2 * run < m ? lo + 2 * run : m;
			unsigned i = lo, j = mid, k = lo;
			while (i < mid && j < hi)
				b[k++] = a[j] < a[i] ? a[j++] : a[i++];
			while (i < mid)
				b[k++] = a[i++];
			while (j < hi)
				b[k++] = a[j++];
		}
		uint64_t *t = a;
		a = b;
		b = t;
	}
	if (a != v)
		memcpy(v, a, m * sizeof(uint64_t));
}

/* Collects the distinct values of n elements, sorted; 0 if there are more than 256. When ix
 * is not NULL it receives each element's index into the sorted palette: one hash lookup per
 * element, in first-seen order, then a byte remap. Without ix only the count is wanted:
 * the values are left unsorted. */
static int pal_build(palette *p, const uint8_t *src, uint64_t n, size_t w, uint8_t *ix)
{
	uint8_t remap[PAL_MAX];
	memset(p->used, 0, sizeof(p->used));
	p->m = 0;
	if (n == 0)
		return 0; /* a palette holds at least one entry (spec 6.4) */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = elem_bits(src + i * w, w);
		unsigned s = pal_slot(p, k);
		if (!p->used[s]) {
			if (p->m == PAL_MAX)
				return 0;
			p->used[s] = 1;
			p->key[s] = k;
			p->idx[s] = (uint8_t)p->m;
			p->val[p->m++] = k;
		}
		if (ix)
			ix[i] = p->idx[s];
		/* A sample (no ix) of at most 256 values repeats 27 times or more on average
		 * in its first 128 elements; 124 distinct there means plain floats: stop
		 * (half the work on them). */
		else if (i == 127 && p->m >= 124)
			return 0;
	}
	if (!ix)
		return 1;
	sort_u64(p->val, p->m);
	for (unsigned j = 0; j < p->m; j++) {
		unsigned s = pal_slot(p, p->val[j]);
		remap[p->idx[s]] = (uint8_t)j;
		p->idx[s] = (uint8_t)j;
	}
	if (ix)
		for (uint64_t i = 0; i < n; i++)
			ix[i] = remap[ix[i]];
	return 1;
}

/* Transform 3: varint m, the palette (m elements, ascending as unsigned integers), then one
 * index byte per element (ix, from pal_build). */
static int pal_encode(alcm_coder *c, alcm_buf *out, const palette *p, const uint8_t *ix,
                      uint64_t n, size_t w, const alcm_lplan *pl, int level)
{
	uint8_t pal[PAL_MAX * 8];
	for (unsigned j = 0; j < p->m; j++)
		for (size_t b = 0; b < w; b++)
			pal[j * w + b] = (uint8_t)(p->val[j] >> (8 * b));
	int st = alcm_buf_put_varint(out, p->m);
	if (!st)
		st = put_k(c, out, pal, p->m * w, pl, 0, level, 0);
	if (!st)
		st = put_k(c, out, ix, (size_t)n, pl, 1, level, 0);
	return st;
}

int alcm_palette_get(alcm_coder *c, alcm_cursor *cur, size_t w, uint64_t n, uint8_t *scratch,
                     uint8_t *pal, uint64_t *m, const uint8_t **ix)
{
	int st = alcm_cur_varint(cur, m);
	if (st)
		return st;
	if (w < 2 || *m < 1 || *m > PAL_MAX || *m > n)
		return ALCM_E_CORRUPT;
	if ((st = alcm_stream_get(c, cur, pal, (size_t)*m * w)))
		return st;
	for (uint64_t j = 1; j < *m; j++)
		if (elem_bits(pal + (j - 1) * w, w) >= elem_bits(pal + j * w, w))
			return ALCM_E_CORRUPT; /* not strictly ascending */
	if ((st = alcm_stream_view(c, cur, scratch, (size_t)n, ix)))
		return st;
	for (uint64_t i = 0; i < n; i++)
		if ((*ix)[i] >= *m)
			return ALCM_E_CORRUPT;
	return ALCM_OK;
}

static int pal_decode(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, uint64_t n, size_t w,
                      uint8_t *scratch)
{
	uint64_t m;
	uint8_t pal[PAL_MAX * 8];
	const uint8_t *ix;
	int st = alcm_palette_get(c, cur, w, n, scratch, pal, &m, &ix);
	if (st)
		return st;
	if (w == 4) {
		uint32_t v[PAL_MAX];
		for (uint64_t j = 0; j < m; j++)
			v[j] = alcm_load32(pal + 4 * j);
		for (uint64_t i = 0; i < n; i++)
			alcm_store32(dst + 4 * i, v[ix[i]]);
	} else {
		for (uint64_t i = 0; i < n; i++)
			memcpy(dst + i * w, pal + (size_t)ix[i] * w, w);
	}
	return ALCM_OK;
}

/* ---- sparse -------------------------------------------------------------------------------- */

static inline uint64_t rotl_w(uint64_t v, size_t w)
{
	return w == 2 ? rotl16((uint16_t)v) : w == 4 ? rotl32((uint32_t)v) : w == 8 ? rotl64(v) : v;
}
static inline uint64_t rotr_w(uint64_t v, size_t w)
{
	return w == 2 ? rotr16((uint16_t)v) : w == 4 ? rotr32((uint32_t)v) : w == 8 ? rotr64(v) : v;
}

/* Transform 4: varint nz, a bitmap stream of floor(n / 8) + 1 bytes (bit i set: element i is
 * not all zero bits), then w streams of nz bytes, the planes of the nonzero elements (bits
 * rotated as in transform 2 for floats). Gradients with many exact zeros, pruned weights. */
static int sparse_encode(alcm_coder *c, alcm_buf *out, const uint8_t *src, uint64_t n,
                         size_t w, int rot, const alcm_lplan *pl0, int level)
{
	size_t mb = (size_t)(n / 8 + 1);
	uint8_t *bits = alcm_coder_scratch(c, ALCM_SCRATCH_PLANES, mb + (size_t)n * w);
	if (!bits)
		return ALCM_E_NOMEM;
	uint8_t *pl = bits + mb;
	memset(bits, 0, mb);
	uint64_t nz = 0;
	/* Branch-free: every element is written at the next free slot, which only a nonzero one
	 * keeps (zeros are as frequent as not in gradients, a branch would mispredict). */
	if (w == 4) {
		uint8_t *a = pl, *b = pl + n, *cc = pl + 2 * n, *d = pl + 3 * n;
		for (uint64_t i = 0; i < n; i++) {
			uint32_t v = alcm_load32(src + 4 * i);
			uint32_t keep = v != 0;
			bits[i >> 3] |= (uint8_t)(keep << (i & 7));
			if (rot)
				v = rotl32(v);
			a[nz] = (uint8_t)v;
			b[nz] = (uint8_t)(v >> 8);
			cc[nz] = (uint8_t)(v >> 16);
			d[nz] = (uint8_t)(v >> 24);
			nz += keep;
		}
	} else {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t v = elem_bits(src + i * w, w);
			uint64_t keep = v != 0;
			bits[i >> 3] |= (uint8_t)(keep << (i & 7));
			if (rot)
				v = rotl_w(v, w);
			for (size_t k = 0; k < w; k++)
				pl[k * n + nz] = (uint8_t)(v >> (8 * k));
			nz += keep;
		}
	}
	int st = alcm_buf_put_varint(out, nz);
	if (!st)
		st = put_k(c, out, bits, mb, pl0, 0, level, 0);
	for (size_t k = 0; k < w && !st; k++)
		st = put_k(c, out, pl + k * n, (size_t)nz, pl0, (unsigned)k + 1, level, 1);
	return st;
}

static int sparse_decode(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, uint64_t n, size_t w,
                         int rot, uint8_t *scratch)
{
	uint64_t nz;
	size_t mb = (size_t)(n / 8 + 1);
	int st = alcm_cur_varint(cur, &nz);
	if (st)
		return st;
	if (nz > n)
		return ALCM_E_CORRUPT;
	uint8_t *bits = scratch;
	uint64_t ones;
	if ((st = alcm_bitmap_get(c, cur, bits, n, &ones)))
		return st;
	if (ones != nz)
		return ALCM_E_CORRUPT;
	const uint8_t *pl[8];
	for (size_t k = 0; k < w; k++)
		if ((st = alcm_stream_view(c, cur, scratch + mb + k * nz, (size_t)nz, &pl[k])))
			return st;
	if (!nz) {
		memset(dst, 0, (size_t)n * w);
		return ALCM_OK;
	}
	/* Branch-free as the encoder: j stops at the last value, a zero element masks it out. */
	uint64_t j = 0, last = nz - 1;
	if (w == 4) {
		const uint8_t *a = pl[0], *b = pl[1], *cc = pl[2], *d = pl[3];
		for (uint64_t i = 0; i < n; i++) {
			uint32_t keep = (bits[i >> 3] >> (i & 7)) & 1;
			uint64_t jj = j < last ? j : last;
			uint32_t v = (uint32_t)a[jj] | ((uint32_t)b[jj] << 8) | ((uint32_t)cc[jj] << 16) |
			             ((uint32_t)d[jj] << 24);
			if (rot)
				v = rotr32(v);
			alcm_store32(dst + 4 * i, v & (0u - keep));
			j += keep;
		}
		return ALCM_OK;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t keep = (bits[i >> 3] >> (i & 7)) & 1;
		uint64_t jj = j < last ? j : last, v = 0;
		for (size_t k = 0; k < w; k++)
			v |= (uint64_t)pl[k][jj] << (8 * k);
		if (rot)
			v = rotr_w(v, w);
		v &= 0 - keep;
		for (size_t k = 0; k < w; k++)
			dst[i * w + k] = (uint8_t)(v >> (8 * k));
		j += keep;
	}
	return ALCM_OK;
}

/* ---- chunks -------------------------------------------------------------------------------- */

size_t alcm_lossless_streams(unsigned transform, size_t w)
{
	switch (transform) {
	case ALCM_TRANSFORM_NONE: return 1;
	case ALCM_TRANSFORM_PALETTE: return 2;
	case ALCM_TRANSFORM_SPARSE: return w + 1;
	default: return w;
	}
}

int alcm_lossless_encode(alcm_coder *c, alcm_buf *out, int dtype, const alcm_lplan *plan,
                         const uint8_t *src, uint64_t elems, int level)
{
	size_t w = alcm_dtype_size(dtype);
	size_t n = (size_t)(elems * w);
	int fl = alcm_dtype_is_float(dtype);
	if (plan->transform == ALCM_TRANSFORM_PALETTE) {
		/* The plan came from a sample: the whole chunk may hold more values. */
		palette *pal = w >= 2 ? alcm_mem_alloc(out->a, sizeof(*pal)) : NULL;
		uint8_t *ix = pal ? alcm_coder_scratch(c, ALCM_SCRATCH_PLANES, (size_t)elems) : NULL;
		if (w >= 2 && !ix) {
			alcm_mem_free(out->a, pal);
			return ALCM_E_NOMEM;
		}
		int fits = pal && pal_build(pal, src, elems, w, ix), st = ALCM_OK;
		if (fits) {
			uint8_t t = ALCM_TRANSFORM_PALETTE;
			st = alcm_buf_put(out, &t, 1);
			if (!st)
				st = pal_encode(c, out, pal, ix, elems, w, plan, level);
		}
		alcm_mem_free(out->a, pal);
		if (fits)
			return st;
		/* A fallback that is the palette again means none (the chooser's trial). */
		if (plan->fb_transform == ALCM_TRANSFORM_PALETTE)
			return ALCM_E_ARG;
		alcm_lplan fb = {plan->fb_transform, plan->fb_zmask, plan->fb_lmask, 0, 0, 0};
		return alcm_lossless_encode(c, out, dtype, &fb, src, elems, level);
	}
	uint8_t t = (uint8_t)plan->transform;
	int st = alcm_buf_put(out, &t, 1);
	if (st)
		return st;
	if (t == ALCM_TRANSFORM_SPARSE)
		return sparse_encode(c, out, src, elems, w, fl, plan, level);
	if (t == ALCM_TRANSFORM_NONE || w == 1)
		return put_k(c, out, src, n, plan, 0, level, 0);
	uint8_t *planes = alcm_coder_scratch(c, ALCM_SCRATCH_PLANES, n);
	if (!planes)
		return ALCM_E_NOMEM;
	split(planes, src, elems, w, t == ALCM_TRANSFORM_FLOAT);
	for (size_t k = 0; k < w && !st; k++)
		st = put_k(c, out, planes + k * elems, (size_t)elems, plan, (unsigned)k, level, 1);
	return st;
}

int alcm_lossless_decode(alcm_coder *c, alcm_cursor *cur, int dtype, uint8_t *dst,
                         uint64_t elems, uint8_t *scratch)
{
	size_t w = alcm_dtype_size(dtype);
	size_t n = (size_t)(elems * w);
	int fl = alcm_dtype_is_float(dtype);
	uint8_t t;
	int st = alcm_cur_u8(cur, &t);
	if (st)
		return st;
	if (t == ALCM_TRANSFORM_NONE || (w == 1 && t == ALCM_TRANSFORM_PLANES))
		return alcm_stream_get(c, cur, dst, n);
	if (t == ALCM_TRANSFORM_PALETTE)
		return pal_decode(c, cur, dst, elems, w, scratch);
	if (t == ALCM_TRANSFORM_SPARSE)
		return sparse_decode(c, cur, dst, elems, w, fl, scratch);
	if (t > ALCM_TRANSFORM_FLOAT)
		return ALCM_E_UNSUPPORTED; /* a transform of a later version (spec 6.4) */
	if (t == ALCM_TRANSFORM_FLOAT && !fl)
		return ALCM_E_CORRUPT;
	const uint8_t *pl[8];
	for (size_t k = 0; k < w; k++)
		if ((st = alcm_stream_view(c, cur, scratch + k * elems, (size_t)elems, &pl[k])))
			return st;
	join(dst, pl, elems, w, t == ALCM_TRANSFORM_FLOAT);
	return ALCM_OK;
}

/* A trial of one transform on a sample: its coded length (SIZE_MAX if the transform does not
 * apply, as a palette of more than 256 values, or failed), and per stream whether zstd won
 * and the stream's coded length. */
typedef struct trial_out {
	size_t len;
	unsigned zmask;
	size_t slen[9];
} trial_out;

/* Codes the sample with every stream offered to zstd at one level. */
static void trial(alcm_coder *c, alcm_buf *tmp, int dtype, unsigned transform,
                  const uint8_t *s, uint64_t ns, int level, trial_out *r)
{
	size_t w = alcm_dtype_size(dtype), streams = alcm_lossless_streams(transform, w);
	alcm_lplan all = {transform, 0x1ffu, 0, ALCM_TRANSFORM_PALETTE, 0, 0};
	memset(r, 0, sizeof(*r));
	r->len = SIZE_MAX;
	tmp->len = 0;
	if (alcm_lossless_encode(c, tmp, dtype, &all, s, ns, level))
		return;
	/* Walk the stream headers: backend byte 1 means zstd won on that stream. */
	alcm_cursor cur = {tmp->p, tmp->len, 1};
	uint64_t skip;
	if ((transform == ALCM_TRANSFORM_PALETTE || transform == ALCM_TRANSFORM_SPARSE) &&
	    alcm_cur_varint(&cur, &skip))
		return;
	r->zmask = 0;
	for (size_t k = 0; k < streams; k++) {
		uint8_t id;
		uint64_t raw, clen;
		const uint8_t *p;
		if (alcm_cur_u8(&cur, &id) || alcm_cur_varint(&cur, &raw) ||
		    alcm_cur_varint(&cur, &clen) || alcm_cur_bytes(&cur, (size_t)clen, &p))
			return;
		/* Keep zstd where it saved at least 1%: below that, raw decodes faster. */
		if (id == ALCM_BACKEND_ZSTD && clen < raw - raw / 100)
			r->zmask |= 1u << k;
		r->slen[k] = (size_t)clen;
	}
	r->len = tmp->len;
}

/* Elements of the sample whose bits are all zero, in 1/64ths. */
static unsigned zero_share(const uint8_t *s, uint64_t ns, size_t w)
{
	uint64_t z = 0;
	for (uint64_t i = 0; i < ns; i++)
		z += elem_bits(s + i * w, w) == 0;
	return (unsigned)(z * 64 / ns);
}

alcm_lplan alcm_lossless_choose(alcm_coder *c, alcm_buf *tmp, int dtype, const uint8_t *src,
                                uint64_t elems, int level)
{
	size_t w = alcm_dtype_size(dtype);
	alcm_lplan best = {.transform = ALCM_TRANSFORM_NONE, .zmask = 0x1ffu};
	unsigned alt = alcm_dtype_is_float(dtype) ? ALCM_TRANSFORM_FLOAT : ALCM_TRANSFORM_PLANES;
	/* A 64 KiB sample from the middle of the chunk decides; coding it a few times costs a
	 * few percent of a 4 MiB chunk's time. */
	uint64_t ns = ((uint64_t)1 << 16) / w;
	if (ns > elems)
		ns = elems;
	if (ns < 256)
		return w == 1 ? best : (alcm_lplan){.transform = alt, .zmask = 0x1ffu};
	const uint8_t *s = src + (size_t)((elems - ns) / 2 * w);
	/* The transform is chosen on zstd level 1 (fast, and on byte planes of floats, which
	 * are nearly all literals, often smaller than the higher levels). Candidates: byte
	 * planes; zeros elided when at least 1/8 of the sample is zero; the palette when the
	 * sample holds at most 256 distinct values (its fallback, for a chunk that holds more,
	 * is the best plan without it). */
	trial_out r, b;
	trial(c, tmp, dtype, ALCM_TRANSFORM_NONE, s, ns, 1, &b);
	best.zmask = b.zmask;
	unsigned cand[3] = {alt, ALCM_TRANSFORM_SPARSE, ALCM_TRANSFORM_PALETTE};
	for (unsigned i = 0; w > 1 && i < 3; i++) {
		if (cand[i] == ALCM_TRANSFORM_SPARSE && zero_share(s, ns, w) < 8)
			continue;
		trial(c, tmp, dtype, cand[i], s, ns, 1, &r);
		if (r.len > b.len || (r.len == b.len && cand[i] == ALCM_TRANSFORM_PALETTE))
			continue;
		if (cand[i] == ALCM_TRANSFORM_PALETTE)
			best = (alcm_lplan){ALCM_TRANSFORM_PALETTE, r.zmask, 0, best.transform,
			                    best.zmask, (1u << 9) - 1};
		else
			best = (alcm_lplan){.transform = cand[i], .zmask = r.zmask};
		b = r;
	}
	/* Then each stream of the chosen transform keeps the caller's level where that codes
	 * the sample smaller, else level 1. */
	best.lmask = (1u << 9) - 1;
	if (level != 1 && b.len != SIZE_MAX) {
		trial(c, tmp, dtype, best.transform, s, ns, level, &r);
		size_t streams = alcm_lossless_streams(best.transform, w);
		for (size_t k = 0; r.len != SIZE_MAX && k < streams; k++) {
			if (r.slen[k] >= b.slen[k])
				continue;
			best.lmask &= ~(1u << k);
			best.zmask = (best.zmask & ~(1u << k)) | (r.zmask & (1u << k));
		}
	}
	return best;
}

/* 1024 elements: the sample costs a tenth of an 8-64 KiB chunk and chose as well as 4096
 * on faceapi and the digits gradients. */
#define FAST_SAMPLE_LOG 10

/* Whether zstd is worth trying on a stream of n bytes of order-0 entropy e bits a byte. */
static int zstd_pays(double n, double e)
{
	return n * (8 - e) / 8 > 64 + n / 100;
}

/* The terms p log2 p of one sample size n (p = count / n), each computed on its first use:
 * a plane's 256 bins hold a few dozen distinct counts, so log2 runs that often instead of
 * once per bin (it was half the chooser's time, the chooser half the HDF5 filter's on small
 * chunks). A term is the double the direct formula gives and entropy8 adds them in bin
 * order, so the entropies, the plans and the bytes coded do not change. */
typedef struct plogp {
	uint64_t n;
	double inv;
	uint8_t have[((size_t)1 << FAST_SAMPLE_LOG) + 1];
	double term[((size_t)1 << FAST_SAMPLE_LOG) + 1];
} plogp;

static void plogp_init(plogp *m, uint64_t n)
{
	m->n = n;
	m->inv = n ? 1.0 / (double)n : 0;
	memset(m->have, 0, (size_t)n + 1);
}

/* Order-0 entropy of a byte histogram of m->n bytes, in bits per byte. */
static double entropy8(const uint32_t *h, plogp *m)
{
	if (!m->n)
		return 0;
	double s = 0, inv = m->inv;
	for (unsigned b = 0; b < 256; b++) {
		uint32_t k = h[b];
		if (!k)
			continue;
		if (!m->have[k]) {
			m->term[k] = (double)k * inv * log2((double)k * inv);
			m->have[k] = 1;
		}
		s -= m->term[k];
	}
	return s;
}

alcm_lplan alcm_lossless_choose_fast(alcm_coder *c, int dtype, const uint8_t *src, uint64_t elems,
                                     int level)
{
	size_t w = alcm_dtype_size(dtype);
	unsigned alt = w == 1 ? ALCM_TRANSFORM_NONE
	               : alcm_dtype_is_float(dtype) ? ALCM_TRANSFORM_FLOAT : ALCM_TRANSFORM_PLANES;
	/* Levels up to 3 (the default) code at level 1: on byte planes and palette indices it
	 * is as small or smaller (faceapi in 8-64 KiB chunks: 5,908,710 bytes at level 1,
	 * 5,950,562 at 3) and faster. A higher level is the caller's explicit choice. */
	unsigned lmask = level <= 3 ? (1u << 9) - 1 : 0;
	alcm_lplan best = {.transform = alt, .zmask = 0x1ffu, .lmask = lmask};
	uint64_t ns = ((uint64_t)1 << FAST_SAMPLE_LOG) < elems ? (uint64_t)1 << FAST_SAMPLE_LOG : elems;
	if (ns < 64)
		return best;
	const uint8_t *s = src + (size_t)((elems - ns) / 2 * w);
	/* The palette when the sample holds at most 256 distinct values; the encoder falls back
	 * to planes when the whole chunk holds more. */
	palette *pal = w >= 2 ? alcm_mem_alloc(alcm_coder_alloc(c), sizeof(*pal)) : NULL;
	int fits = pal && pal_build(pal, s, ns, w, NULL) && pal->m * 2 <= ns;
	alcm_mem_free(alcm_coder_alloc(c), pal);
	if (fits)
		return (alcm_lplan){ALCM_TRANSFORM_PALETTE, 0x1ffu, lmask, alt, 0x1ffu, lmask};
	if (w == 1)
		return (alcm_lplan){.transform = alt, .zmask = 1u, .lmask = lmask};
	/* Byte histograms of the sample's planes (rotated as the transform rotates them), all
	 * elements and nonzero ones: from them the order-0 sizes of planes against zero
	 * elision, and which planes zstd cannot shrink by 1% (stored raw without trying). */
	uint32_t h[8][256];
	memset(h, 0, w * sizeof(h[0]));
	uint64_t zeros = 0;
	int rot = alt == ALCM_TRANSFORM_FLOAT;
	if (w == 4) {
		for (uint64_t i = 0; i < ns; i++) {
			uint32_t v = alcm_load32(s + 4 * i);
			zeros += v == 0;
			v = rot ? rotl32(v) : v;
			h[0][v & 0xff]++;
			h[1][(v >> 8) & 0xff]++;
			h[2][(v >> 16) & 0xff]++;
			h[3][v >> 24]++;
		}
	} else {
		for (uint64_t i = 0; i < ns; i++) {
			uint64_t v = elem_bits(s + i * w, w);
			zeros += v == 0;
			if (rot)
				v = rotl_w(v, w);
			for (size_t k = 0; k < w; k++)
				h[k][(v >> (8 * k)) & 0xff]++;
		}
	}
	/* zstd pays for a stream when the order-0 estimate saves more than its fixed cost (a
	 * frame header and a Huffman table, about 64 bytes) plus the 1% the trials ask for;
	 * short planes of nearly random bytes are stored raw without trying (on the digits
	 * gradients' 8 KiB chunks this halves the coding time for 2.7% more bytes). Zero
	 * elision is a candidate from 1/8 of the sample zero; below that its sizes are not
	 * needed. */
	plogp m;
	double planes = 0;
	unsigned zall = 0;
	plogp_init(&m, ns);
	for (size_t k = 0; k < w; k++) {
		double e = entropy8(h[k], &m);
		planes += e * (double)ns;
		zall |= (zstd_pays((double)elems, e) ? 1u : 0u) << k;
	}
	if (zeros * 8 < ns)
		return (alcm_lplan){.transform = alt, .zmask = zall, .lmask = lmask};
	double sparse = 0, nzs = (double)(ns - zeros) / (double)ns;
	unsigned znz = 0;
	plogp_init(&m, ns - zeros);
	for (size_t k = 0; k < w; k++) {
		h[k][0] -= (uint32_t)zeros;
		double hz = entropy8(h[k], &m);
		sparse += hz * (double)(ns - zeros);
		znz |= (zstd_pays((double)elems * nzs, hz) ? 1u : 0u) << (k + 1);
	}
	double p = (double)zeros / (double)ns;
	double hb = p > 0 && p < 1 ? -(p * log2(p) + (1 - p) * log2(1 - p)) : 0;
	sparse += hb * (double)ns;
	if (sparse < planes)
		return (alcm_lplan){.transform = ALCM_TRANSFORM_SPARSE, .zmask = znz | 1u, .lmask = lmask};
	return (alcm_lplan){.transform = alt, .zmask = zall, .lmask = lmask};
}
