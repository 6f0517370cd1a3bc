/* Compact tensor frames (spec 6.11): one tensor, the archive's chunk coders, an XXH64 check. */
#include "codec_internal.h"

#include <math.h>

#define TF_VERSION 1
#define TF_FLAG_MASK 0x01u
#define TF_FIXED 9           /* magic, version, dtype, mode, flags, ndim */
#define TF_CHECK 8
#define TF_CHUNK_MAX ((uint64_t)1 << 30)
#define TF_TRIAL_MIN ((uint64_t)1 << 20) /* chunk bytes from which the plan comes from trials */
/* Scratch and buffers above this are released after a call rather than kept. */
#define TF_KEEP_MAX ((size_t)16 << 20)

/* ---- XXH64 (xxHash specification, doc/xxhash_spec.md), seed 0 --------------------------- */

static const uint64_t XP1 = 11400714785074694791ull, XP2 = 14029467366897019727ull,
                      XP3 = 1609587929392839161ull, XP4 = 9650029242287828579ull,
                      XP5 = 2870177450012600261ull;

static inline uint64_t xrotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}
static inline uint64_t xround(uint64_t acc, uint64_t in)
{
	return xrotl(acc + in * XP2, 31) * XP1;
}
static inline uint64_t xmerge(uint64_t h, uint64_t v)
{
	return (h ^ xround(0, v)) * XP1 + XP4;
}

uint64_t alcm_xxh64(const void *src, size_t len, uint64_t seed)
{
	const uint8_t *p = src, *end = p + len;
	uint64_t h;
	if (len >= 32) {
		uint64_t v1 = seed + XP1 + XP2, v2 = seed + XP2, v3 = seed, v4 = seed - XP1;
		do {
			v1 = xround(v1, alcm_load64(p));
			v2 = xround(v2, alcm_load64(p + 8));
			v3 = xround(v3, alcm_load64(p + 16));
			v4 = xround(v4, alcm_load64(p + 24));
			p += 32;
		} while ((size_t)(end - p) >= 32);
		h = xrotl(v1, 1) + xrotl(v2, 7) + xrotl(v3, 12) + xrotl(v4, 18);
		h = xmerge(xmerge(xmerge(xmerge(h, v1), v2), v3), v4);
	} else {
		h = seed + XP5;
	}
	h += (uint64_t)len;
	for (; end - p >= 8; p += 8)
		h = xrotl(h ^ xround(0, alcm_load64(p)), 27) * XP1 + XP4;
	if (end - p >= 4) {
		h = xrotl(h ^ ((uint64_t)alcm_load32(p) * XP1), 23) * XP2 + XP3;
		p += 4;
	}
	for (; p < end; p++)
		h = xrotl(h ^ (*p * XP5), 11) * XP1;
	h ^= h >> 33;
	h *= XP2;
	h ^= h >> 29;
	h *= XP3;
	h ^= h >> 32;
	return h;
}

/* ---- context ------------------------------------------------------------------------------ */

struct alcm_tensor_ctx {
	alcm_allocator alloc;
	alcm_coder *enc, *dec; /* zstd contexts: the encoder's, and a decoder's that refuses */
	uint32_t window_log;   /* windows above this (recreated when a call asks another) */
	alcm_buf out, tmp, data, mask;
	uint8_t *scratch;
	size_t scap;
	char detail[ALCM_DETAIL_MAX];
};

static int tfail(alcm_tensor_ctx *c, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int tfail(alcm_tensor_ctx *c, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(c->detail, fmt, ap);
	va_end(ap);
	return st;
}

int alcm_tensor_ctx_new(alcm_tensor_ctx **out, const alcm_allocator *alloc)
{
	if (!out)
		return ALCM_E_ARG;
	alcm_allocator a;
	alcm_alloc_copy(&a, alloc);
	alcm_tensor_ctx *c = alcm_mem_calloc(&a, 1, sizeof(*c));
	*out = c;
	if (!c)
		return ALCM_E_NOMEM;
	c->alloc = a;
	c->out.a = c->tmp.a = c->data.a = c->mask.a = &c->alloc;
	return ALCM_OK;
}

void alcm_tensor_ctx_free(alcm_tensor_ctx *c)
{
	if (!c)
		return;
	alcm_coder_free(c->enc);
	alcm_coder_free(c->dec);
	alcm_buf_free(&c->out);
	alcm_buf_free(&c->tmp);
	alcm_buf_free(&c->data);
	alcm_buf_free(&c->mask);
	alcm_mem_free(&c->alloc, c->scratch);
	alcm_allocator a = c->alloc;
	alcm_mem_free(&a, c);
}

const char *alcm_tensor_ctx_detail(const alcm_tensor_ctx *c)
{
	return c ? c->detail : "";
}

static int get_encoder(alcm_tensor_ctx *c)
{
	if (!c->enc && !(c->enc = alcm_coder_new(&c->alloc, NULL)))
		return tfail(c, ALCM_E_NOMEM, "out of memory");
	return ALCM_OK;
}

static int get_decoder(alcm_tensor_ctx *c, uint32_t window_log)
{
	if (c->dec && c->window_log == window_log)
		return ALCM_OK;
	alcm_coder_free(c->dec);
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.zstd_window_log_max = window_log;
	c->dec = alcm_coder_new(&c->alloc, &lim);
	c->window_log = window_log;
	return c->dec ? ALCM_OK : tfail(c, ALCM_E_NOMEM, "out of memory");
}

/* Large buffers are not kept between calls. */
static void trim(alcm_tensor_ctx *c)
{
	alcm_buf *b[4] = {&c->out, &c->tmp, &c->data, &c->mask};
	for (int i = 0; i < 4; i++)
		if (b[i]->cap > TF_KEEP_MAX)
			alcm_buf_free(b[i]);
	if (c->scap > TF_KEEP_MAX) {
		alcm_mem_free(&c->alloc, c->scratch);
		c->scratch = NULL;
		c->scap = 0;
	}
}

/* ---- encoding ----------------------------------------------------------------------------- */

static int put_f64(alcm_buf *b, double d)
{
	uint64_t u;
	uint8_t t[8];
	memcpy(&u, &d, 8);
	alcm_store64(t, u);
	return alcm_buf_put(b, t, 8);
}

/* Worst case of one lossless chunk of n elements of w bytes (spec 6.4): the elements, a
 * sparse bitmap (n / 8 + 1) or a palette's excess over the elements (at most 256 bytes),
 * and at most w + 1 stream headers of 21 bytes, a transform byte and a varint. */
static uint64_t chunk_bound(uint64_t n, size_t w)
{
	return n * w + n / 8 + 512;
}

/* The chunk geometry: elements per chunk, and 1 when one chunk holds every element (the
 * frame then stores 0). */
static uint64_t chunk_elems(uint64_t elems, size_t w, uint64_t chunk_bytes, int *one)
{
	uint64_t ce = chunk_bytes / w;
	if (ce < 1)
		ce = 1;
	*one = elems <= ce;
	return ce;
}

static int check_tensor(const alcm_tensor *t, uint64_t *elems)
{
	uint64_t nb;
	if (!t || !alcm_dtype_size(t->dtype) || t->ndim > ALCM_MAX_NDIM ||
	    alcm_shape_elements(t->shape, t->ndim, elems) ||
	    alcm_mul_u64(*elems, alcm_dtype_size(t->dtype), &nb) || nb != t->nbytes ||
	    (!t->data && nb))
		return 0;
	return 1;
}

static size_t header_max(uint32_t ndim)
{
	return TF_FIXED + 10 * (size_t)ndim + 10 + TF_CHECK;
}

size_t alcm_tensor_compress_bound(const alcm_tensor *t, const alcm_pack_options *opt)
{
	alcm_pack_options o;
	if (opt)
		o = *opt;
	else
		alcm_pack_options_default(&o);
	uint64_t elems;
	if (!check_tensor(t, &elems) || !alcm_pack_options_check(&o))
		return 0;
	size_t w = alcm_dtype_size(t->dtype);
	int one;
	uint64_t ce = chunk_elems(elems, w, o.chunk_bytes, &one);
	uint64_t full = elems / ce, rest = elems % ce, b = header_max(t->ndim), x;
	/* Every chunk but the last holds ce elements. */
	if (alcm_mul_u64(full, chunk_bound(ce, w), &x) || alcm_add_u64(b, x, &b) ||
	    (rest && alcm_add_u64(b, chunk_bound(rest, w), &b)) || b > SIZE_MAX)
		return 0;
	return (size_t)b;
}

static int put_header(alcm_buf *b, const alcm_tensor *t, int mode, unsigned flags, int one,
                      uint64_t ce)
{
	uint8_t h[TF_FIXED];
	memcpy(h, ALCM_TENSOR_FRAME_MAGIC, 4);
	h[4] = TF_VERSION;
	h[5] = (uint8_t)t->dtype;
	h[6] = (uint8_t)mode;
	h[7] = (uint8_t)flags;
	h[8] = (uint8_t)t->ndim;
	int st = alcm_buf_put(b, h, TF_FIXED);
	for (uint32_t i = 0; i < t->ndim && !st; i++)
		st = alcm_buf_put_varint(b, t->shape[i]);
	if (!st)
		st = alcm_buf_put_varint(b, one ? 0 : ce);
	return st;
}

/* Codes the tensor's chunks into c->out after the header; with p (a lossy mode) the steps
 * first, then each chunk's mask stream (when pruning) before its QDAT chunk. */
static int code_frame(alcm_tensor_ctx *c, const alcm_tensor *t, uint64_t elems,
                      const alcm_pack_options *o, alcm_tparams *p, alcm_qstats *tot)
{
	size_t w = alcm_dtype_size(t->dtype);
	int one;
	uint64_t ce = chunk_elems(elems, w, o->chunk_bytes, &one);
	unsigned flags = p && p->qp.prune_below > 0 ? TF_FLAG_MASK : 0;
	alcm_buf *out = &c->out;
	out->len = 0;
	int st = put_header(out, t, p ? p->mode : ALCM_MODE_LOSSLESS, flags, one, ce);
	for (uint64_t k = 0; p && k < p->nch && !st; k++)
		st = put_f64(out, p->step[k]);
	if (st)
		return tfail(c, st, "out of memory");
	const uint8_t *src = t->data;
	uint64_t first = 0;
	for (; first < elems && !st; first += ce) {
		uint64_t n = elems - first < ce ? elems - first : ce;
		if (!p) {
			/* Trials code a 64 KiB sample four or five times: on a chunk under 1 MiB that
			 * costs more than coding the chunk (the HDF5 filter's chunks are mostly 8 to
			 * 64 KiB), and the sample-based plan is as good on real checkpoints. */
			alcm_lplan plan = n * w >= TF_TRIAL_MIN
			                      ? alcm_lossless_choose(c->enc, &c->tmp, t->dtype,
			                                             src + first * w, n, o->level)
			                      : alcm_lossless_choose_fast(c->enc, t->dtype,
			                                                  src + first * w, n, o->level);
			st = alcm_lossless_encode(c->enc, out, t->dtype, &plan, src + first * w, n,
			                          o->level);
			continue;
		}
		c->data.len = c->mask.len = 0;
		st = alcm_quant_encode(c->enc, &c->data, &c->mask, &p->qp, src, first, n, tot,
		                       NULL);
		if (!st)
			st = alcm_buf_put(out, c->mask.p, c->mask.len);
		if (!st)
			st = alcm_buf_put(out, c->data.p, c->data.len);
		if (st)
			break;
	}
	if (st)
		return tfail(c, st, "coding the chunk at element %llu: %s", (unsigned long long)first,
		             alcm_strerror(st));
	return ALCM_OK;
}

int alcm_tensor_ctx_compress(alcm_tensor_ctx *c, void *dst, size_t cap, size_t *len,
                             const alcm_tensor *t, const alcm_pack_options *opt,
                             alcm_tensor_report *rep)
{
	if (!c)
		return ALCM_E_ARG;
	c->detail[0] = '\0';
	if (!len || (!dst && cap))
		return tfail(c, ALCM_E_ARG, "no output buffer");
	*len = 0;
	alcm_pack_options o;
	if (opt)
		o = *opt;
	else
		alcm_pack_options_default(&o);
	uint64_t elems;
	if (!check_tensor(t, &elems))
		return tfail(c, ALCM_E_ARG, "bad tensor: unknown dtype, rank above %d, or a byte "
		             "count that does not match the shape", ALCM_MAX_NDIM);
	if (!alcm_pack_options_check(&o))
		return tfail(c, ALCM_E_ARG, "options out of range");
	size_t bound = alcm_tensor_compress_bound(t, &o);
	if (!bound)
		return tfail(c, ALCM_E_ARG, "the tensor's size overflows");
	int st = get_encoder(c);
	if (st)
		return st;
	alcm_tparams p;
	memset(&p, 0, sizeof(p));
	p.elems = elems;
	alcm_qstats tot;
	memset(&tot, 0, sizeof(tot));
	int lossy = 0, downgraded = 0;
	if (o.mode != ALCM_MODE_LOSSLESS) {
		if (!alcm_dtype_is_float(t->dtype)) {
			if (o.int_policy == ALCM_INT_REFUSE)
				return tfail(c, ALCM_E_BOUND, "lossy coding of %s values is refused "
				             "(integers are always stored losslessly)",
				             alcm_dtype_name(t->dtype));
			downgraded = 1;
		} else if (elems > 0) {
			lossy = 1;
			p.mode = o.mode;
			if ((st = alcm_lossy_params(&c->alloc, &o, t, &p))) {
				alcm_lossy_params_free(&c->alloc, &p);
				return tfail(c, st, "out of memory");
			}
		}
	}
	st = code_frame(c, t, elems, &o, lossy ? &p : NULL, &tot);
	if (!st && lossy && c->out.len + TF_CHECK > bound) {
		/* Symbols wider than the values (a bound far under the values' spacing), or a
		 * step per channel of a few values: the lossless frame is smaller and exact. */
		lossy = 0;
		downgraded = 1;
		memset(&tot, 0, sizeof(tot));
		st = code_frame(c, t, elems, &o, NULL, &tot);
	}
	unsigned bits = lossy ? p.bits : 0;
	alcm_lossy_params_free(&c->alloc, &p);
	uint8_t ck[TF_CHECK];
	if (!st) {
		alcm_store64(ck, alcm_xxh64(c->out.p, c->out.len, 0));
		if (alcm_buf_put(&c->out, ck, TF_CHECK))
			st = tfail(c, ALCM_E_NOMEM, "out of memory");
	}
	if (!st && c->out.len > cap)
		st = tfail(c, ALCM_E_ARG, "the frame needs %zu bytes, the output holds %zu",
		           c->out.len, cap);
	if (!st) {
		memcpy(dst, c->out.p, c->out.len);
		*len = c->out.len;
		if (rep) {
			memset(rep, 0, sizeof(*rep));
			rep->raw_bytes = t->nbytes;
			rep->stored_bytes = c->out.len;
			rep->mode = lossy ? o.mode : ALCM_MODE_LOSSLESS;
			rep->bits = bits;
			rep->max_abs_error = tot.max_err;
			rep->snr_db = tot.noise > 0 ? 10 * log10(tot.sig / tot.noise) : INFINITY;
			rep->pruned = tot.pruned;
			rep->escapes = tot.escapes;
			rep->downgraded = downgraded;
		}
	}
	trim(c);
	return st;
}

int alcm_tensor_compress(void *dst, size_t cap, size_t *len, const alcm_tensor *t,
                         const alcm_pack_options *opt)
{
	alcm_tensor_ctx *c;
	int st = alcm_tensor_ctx_new(&c, NULL);
	if (!st)
		st = alcm_tensor_ctx_compress(c, dst, cap, len, t, opt, NULL);
	alcm_tensor_ctx_free(c);
	return st;
}

/* ---- decoding ----------------------------------------------------------------------------- */

/* A parsed header; the cursor stands at the first chunk (or step). */
typedef struct tf_head {
	alcm_tensor_info info;
	unsigned flags;
	uint64_t chunk_elems, nsteps;
	size_t body; /* offset of the steps */
} tf_head;

/* The channel count of a lossy mode (spec 6.5.1). */
static uint64_t channels(const alcm_tensor_info *ti)
{
	if (ti->mode == ALCM_MODE_LOSSLESS)
		return 0;
	return ti->ndim >= 2 && ti->mode != ALCM_MODE_MAX_ERROR && ti->mode != ALCM_MODE_SNR
	           ? ti->shape[0]
	           : 1;
}

/* Parses and checks everything before the steps, in the order of spec 6.11's rules.
 * why receives the reason (ALCM_DETAIL_MAX bytes). */
static int parse_head(const uint8_t *src, size_t len, const alcm_limits *lim, tf_head *h,
                      char *why)
{
	memset(h, 0, sizeof(*h));
	if (len < 4 || memcmp(src, ALCM_TENSOR_FRAME_MAGIC, 4) != 0) {
		alcm_detail_set(why, "not a compact tensor frame (no \\x89ALT at offset 0)");
		return ALCM_E_CORRUPT;
	}
	if (len < TF_FIXED + 1 + TF_CHECK) {
		alcm_detail_set(why, "frame of %zu bytes is shorter than a header and a check", len);
		return ALCM_E_CORRUPT;
	}
	if (src[4] != TF_VERSION) {
		alcm_detail_set(why, "frame version %u at offset 4 (this library reads %u)", src[4],
		                TF_VERSION);
		return ALCM_E_UNSUPPORTED;
	}
	alcm_tensor_info *ti = &h->info;
	ti->name = "";
	ti->dtype = src[5];
	ti->mode = src[6];
	h->flags = src[7];
	ti->ndim = src[8];
	size_t w = alcm_dtype_size(ti->dtype);
	if (!w) {
		alcm_detail_set(why, "unknown dtype %u at offset 5", src[5]);
		return ALCM_E_UNSUPPORTED;
	}
	if (ti->mode > ALCM_MODE_BITS) {
		alcm_detail_set(why, "unknown mode %u at offset 6", src[6]);
		return ALCM_E_UNSUPPORTED;
	}
	if (ti->mode != ALCM_MODE_LOSSLESS && !alcm_dtype_is_float(ti->dtype)) {
		alcm_detail_set(why, "mode %u at offset 6 on %s elements", src[6],
		                alcm_dtype_name(ti->dtype));
		return ALCM_E_CORRUPT;
	}
	if ((h->flags & ~TF_FLAG_MASK) || (h->flags && ti->mode == ALCM_MODE_LOSSLESS)) {
		alcm_detail_set(why, "flags 0x%02x at offset 7: reserved bits, or a mask on a "
		                "lossless frame", src[7]);
		return ALCM_E_CORRUPT;
	}
	if (ti->ndim > ALCM_MAX_NDIM || ti->ndim > lim->max_ndim) {
		alcm_detail_set(why, "rank %u at offset 8 exceeds the limit of %u", src[8],
		                lim->max_ndim < ALCM_MAX_NDIM ? lim->max_ndim : ALCM_MAX_NDIM);
		return ALCM_E_LIMIT;
	}
	/* The check is not part of the header: parse within len - 8. */
	alcm_cursor cur = {src, len - TF_CHECK, TF_FIXED};
	for (uint32_t i = 0; i < ti->ndim; i++) {
		size_t at = cur.pos;
		if (alcm_cur_varint(&cur, &ti->shape[i])) {
			alcm_detail_set(why, "dimension %u at offset %zu is truncated or not a minimal "
			                "varint", i, at);
			return ALCM_E_CORRUPT;
		}
	}
	if (alcm_shape_elements(ti->shape, ti->ndim, &ti->elements) ||
	    ti->elements > lim->max_elements ||
	    alcm_mul_u64(ti->elements, w, &ti->raw_bytes) || ti->raw_bytes > lim->max_decoded_bytes) {
		alcm_detail_set(why, "shape at offset %d exceeds the element or decoded-size limit",
		                TF_FIXED);
		return ALCM_E_LIMIT;
	}
	size_t at = cur.pos;
	uint64_t ce;
	if (alcm_cur_varint(&cur, &ce)) {
		alcm_detail_set(why, "chunk size at offset %zu is truncated or not a minimal varint",
		                at);
		return ALCM_E_CORRUPT;
	}
	uint64_t ce_bytes;
	if (ce == 0) {
		ce = ti->elements ? ti->elements : 1;
	} else if (ce >= ti->elements) {
		alcm_detail_set(why, "chunk size %llu at offset %zu: a single chunk is written as 0",
		                (unsigned long long)ce, at);
		return ALCM_E_CORRUPT;
	}
	if (alcm_mul_u64(ce, w, &ce_bytes) || ce_bytes > TF_CHUNK_MAX) {
		alcm_detail_set(why, "chunk of %llu elements at offset %zu exceeds 2^30 bytes",
		                (unsigned long long)ce, at);
		return ALCM_E_CORRUPT;
	}
	if (ti->mode != ALCM_MODE_LOSSLESS && ti->elements == 0) {
		alcm_detail_set(why, "mode %u at offset 6 on a tensor of no elements", src[6]);
		return ALCM_E_CORRUPT;
	}
	h->chunk_elems = ce;
	ti->chunks = (uint32_t)0;
	uint64_t nchunks = ti->elements ? (ti->elements - 1) / ce + 1 : 0;
	h->nsteps = channels(ti);
	/* Each chunk takes at least one byte, each step eight: a count the bytes left cannot
	 * hold is refused before anything is sized by it. */
	uint64_t left = cur.len - cur.pos;
	if (nchunks > left || h->nsteps > left / 8 || nchunks > UINT32_MAX) {
		alcm_detail_set(why, "%llu chunks and %llu steps cannot fit in the %llu bytes after "
		                "offset %zu", (unsigned long long)nchunks,
		                (unsigned long long)h->nsteps, (unsigned long long)left, cur.pos);
		return ALCM_E_CORRUPT;
	}
	ti->chunks = (uint32_t)nchunks;
	ti->scales = h->nsteps;
	ti->stored_bytes = len;
	h->body = cur.pos;
	return ALCM_OK;
}

int alcm_tensor_frame_info(alcm_tensor_info *info, const void *src, size_t len,
                           const alcm_limits *lim)
{
	if (!info || (!src && len))
		return ALCM_E_ARG;
	alcm_limits dl;
	if (!lim) {
		alcm_limits_default(&dl);
		lim = &dl;
	}
	tf_head h;
	char why[ALCM_DETAIL_MAX];
	int st = parse_head(src, len, lim, &h, why);
	if (!st)
		*info = h.info;
	return st;
}

/* Splits the coded stream at the cursor off as its own cursor (for a chunk's mask). */
static int take_stream(alcm_cursor *cur, alcm_cursor *sub)
{
	alcm_cursor c = *cur;
	uint8_t id;
	uint64_t raw, clen;
	int st;
	if ((st = alcm_cur_u8(&c, &id)) || (st = alcm_cur_varint(&c, &raw)) ||
	    (st = alcm_cur_varint(&c, &clen)))
		return st;
	if (clen > c.len - c.pos)
		return ALCM_E_CORRUPT;
	*sub = (alcm_cursor){cur->p + cur->pos, c.pos - cur->pos + (size_t)clen, 0};
	cur->pos = c.pos + (size_t)clen;
	return ALCM_OK;
}

static int load_steps(alcm_tensor_ctx *c, alcm_cursor *cur, const tf_head *h, double *steps)
{
	for (uint64_t k = 0; k < h->nsteps; k++) {
		size_t at = cur->pos;
		double s;
		alcm_cur_f64(cur, &s); /* parse_head checked that the steps fit */
		if (!(s >= 0) || !isfinite(s))
			return tfail(c, ALCM_E_CORRUPT, "frame: step %llu at offset %zu is not a finite "
			             "non-negative number", (unsigned long long)k, at);
		steps[k] = s;
	}
	return ALCM_OK;
}

static int decode_chunks(alcm_tensor_ctx *c, alcm_cursor *cur, const tf_head *h,
                         const alcm_qparams *qp, uint8_t *dst)
{
	const alcm_tensor_info *ti = &h->info;
	size_t w = alcm_dtype_size(ti->dtype);
	uint64_t ce = h->chunk_elems < ti->elements ? h->chunk_elems : ti->elements;
	uint64_t need = ti->mode == ALCM_MODE_LOSSLESS ? alcm_lossless_scratch(ce, w)
	                                               : alcm_quant_scratch(ce);
	if (need > c->scap) {
		alcm_mem_free(&c->alloc, c->scratch);
		c->scap = 0;
		c->scratch = alcm_mem_alloc(&c->alloc, (size_t)need);
		if (!c->scratch)
			return tfail(c, ALCM_E_NOMEM, "out of memory");
		c->scap = (size_t)need;
	}
	for (uint64_t k = 0; k < ti->chunks; k++) {
		uint64_t first = k * h->chunk_elems;
		uint64_t n = ti->elements - first < h->chunk_elems ? ti->elements - first
		                                                   : h->chunk_elems;
		size_t at = cur->pos;
		int st;
		if (ti->mode == ALCM_MODE_LOSSLESS) {
			st = alcm_lossless_decode(c->dec, cur, ti->dtype, dst + first * w, n,
			                          c->scratch);
		} else {
			alcm_cursor mc = {NULL, 0, 0};
			st = h->flags & TF_FLAG_MASK ? take_stream(cur, &mc) : ALCM_OK;
			if (!st)
				st = alcm_quant_decode(c->dec, cur, h->flags & TF_FLAG_MASK ? &mc : NULL,
				                       qp, dst, first, n, c->scratch, c->scap);
			if (!st && mc.pos != mc.len)
				st = ALCM_E_CORRUPT;
		}
		if (st == ALCM_E_CORRUPT)
			return tfail(c, st, "frame: chunk %llu at offset %zu is malformed",
			             (unsigned long long)k, at);
		if (st == ALCM_E_UNSUPPORTED)
			return tfail(c, st, "frame: chunk %llu at offset %zu uses a coding this reader "
			             "does not know (reader format %u.%u)", (unsigned long long)k, at,
			             ALCM_FORMAT_MAJOR, ALCM_FORMAT_MINOR);
		if (st)
			return tfail(c, st, "frame: chunk %llu at offset %zu: %s", (unsigned long long)k,
			             at, alcm_strerror(st));
	}
	if (cur->pos != cur->len)
		return tfail(c, ALCM_E_CORRUPT, "frame: %zu bytes after the last chunk at offset %zu",
		             cur->len - cur->pos, cur->pos);
	return ALCM_OK;
}

int alcm_tensor_ctx_decompress(alcm_tensor_ctx *c, void *dst, size_t cap, const void *src,
                               size_t len, const alcm_limits *lim, unsigned flags)
{
	if (!c)
		return ALCM_E_ARG;
	c->detail[0] = '\0';
	if (!src && len)
		return tfail(c, ALCM_E_ARG, "no input");
	alcm_limits dl;
	if (!lim) {
		alcm_limits_default(&dl);
		lim = &dl;
	}
	/* The check right after the magic and the version: a damaged frame is named as such,
	 * not as whatever the damage broke (a dtype or a shape alike). */
	const uint8_t *b = src;
	if (!(flags & ALCM_READ_NO_VERIFY) && len >= TF_FIXED + 1 + TF_CHECK &&
	    memcmp(b, ALCM_TENSOR_FRAME_MAGIC, 4) == 0 && b[4] == TF_VERSION) {
		uint64_t want = alcm_load64(b + len - TF_CHECK), got = alcm_xxh64(b, len - TF_CHECK, 0);
		if (want != got)
			return tfail(c, ALCM_E_DIGEST, "frame: check mismatch at offset %zu (stored "
			             "%016llx, computed %016llx)", len - TF_CHECK,
			             (unsigned long long)want, (unsigned long long)got);
	}
	tf_head h;
	char why[ALCM_DETAIL_MAX];
	int st = parse_head(src, len, lim, &h, why);
	if (st)
		return tfail(c, st, "frame: %s", why);
	if (cap < h.info.raw_bytes || (!dst && h.info.raw_bytes))
		return tfail(c, ALCM_E_ARG, "the output holds %zu bytes, the tensor needs %llu", cap,
		             (unsigned long long)h.info.raw_bytes);
	if ((st = get_decoder(c, lim->zstd_window_log_max)))
		return st;
	alcm_cursor cur = {src, len - TF_CHECK, h.body};
	double *steps = NULL;
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	if (h.nsteps) {
		steps = alcm_mem_alloc(&c->alloc, (size_t)h.nsteps * sizeof(double));
		if (!steps)
			return tfail(c, ALCM_E_NOMEM, "out of memory");
		st = load_steps(c, &cur, &h, steps);
		qp.dtype = h.info.dtype;
		qp.step = steps;
		qp.nsteps = h.nsteps;
		qp.inner = h.info.elements / h.nsteps;
	}
	if (!st)
		st = decode_chunks(c, &cur, &h, &qp, dst);
	alcm_mem_free(&c->alloc, steps);
	trim(c);
	return st;
}

int alcm_tensor_decompress(void *dst, size_t cap, const void *src, size_t len,
                           const alcm_limits *lim)
{
	alcm_tensor_ctx *c;
	int st = alcm_tensor_ctx_new(&c, NULL);
	if (!st)
		st = alcm_tensor_ctx_decompress(c, dst, cap, src, len, lim, 0);
	alcm_tensor_ctx_free(c);
	return st;
}
