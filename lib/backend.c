/* Entropy backends behind one interface, and the coded-stream framing (spec 6.2). */
#define ZSTD_STATIC_LINKING_ONLY
#include "alloc_internal.h"
#include "symcode_internal.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <stdatomic.h>

struct alcm_coder {
	const alcm_allocator *a;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
	int kind;           /* ALCM_BLOCK_ENC for an encoder's coder (alcm_coder_set_encoding) */
	int literals;       /* zstd_encode codes literals only (alcm_stream_put2's try_zstd 2) */
	unsigned wlog_max;  /* zstd_window_log_max of the reader's limits */
	ZSTD_DCtx *sdctx;   /* alcm_sreader's own context (one-shot decodes go on meanwhile) */
	uint8_t *sbuf;      /* ALCM_SREADER_BUF bytes for alcm_sreader; both made on first use */
	alcm_symstate *sym; /* tables of the modelled symbol coding, made on first use */
	uint8_t *scratch[ALCM_CODER_SCRATCH];
	size_t scratch_cap[ALCM_CODER_SCRATCH];
};

/* zstd's own allocations go through the caller's allocator too, so that a counting or
 * failing allocator sees every byte the codec takes. */
static void *zstd_alloc(void *opaque, size_t size)
{
	return alcm_mem_alloc(opaque, size);
}

static void zstd_free(void *opaque, void *p)
{
	alcm_mem_free(opaque, p);
}

static ZSTD_customMem zstd_mem(const alcm_allocator *a)
{
	return (ZSTD_customMem){zstd_alloc, zstd_free, (void *)a};
}

/* zstd contexts. With the default allocator: an idle one if there is one (alloc_internal.h),
 * else a new one whose memory does not name the coder's allocator struct (the context may
 * outlive it in the cache): a compressing one's workspace from the encoders' block cache, so
 * that a context that grows or shrinks its workspace (the tensor directory's level, then a
 * coder's) finds the blocks mapped; a decompressing one's from malloc (a decoder's blocks stay
 * out of that cache: alloc_internal.h). Back to the cache when freed, so that the next encoder,
 * or the next decoding thread, finds it with its workspace. With another allocator: made and
 * freed through it, never cached. A header before each block keeps its capacity. */
#define ZSTD_BLK_HDR 64

static void *zstd_blk_alloc(void *opaque, size_t size)
{
	(void)opaque;
	size_t cap;
	uint8_t *p = alcm_block_take_kind(NULL, ALCM_BLOCK_ENC, size + ZSTD_BLK_HDR, &cap);
	if (!p)
		return NULL;
	memcpy(p, &cap, sizeof(cap));
	return p + ZSTD_BLK_HDR;
}

static void zstd_blk_free(void *opaque, void *q)
{
	(void)opaque;
	if (!q)
		return;
	uint8_t *p = (uint8_t *)q - ZSTD_BLK_HDR;
	size_t cap;
	memcpy(&cap, p, sizeof(cap));
	alcm_block_give_kind(NULL, ALCM_BLOCK_ENC, p, cap);
}

static const ZSTD_customMem zstd_blk_mem = {zstd_blk_alloc, zstd_blk_free, NULL};
static const ZSTD_customMem zstd_sys_mem = {zstd_alloc, zstd_free, NULL};
static atomic_ulong contexts_made;

static int libc_alloc(const alcm_allocator *a)
{
	return !a || !a->malloc_fn || alcm_alloc_is_libc(a);
}

static void cctx_drop(void *p)
{
	ZSTD_freeCCtx(p);
}

static void dctx_drop(void *p)
{
	ZSTD_freeDCtx(p);
}

static ZSTD_CCtx *cctx_new(const alcm_allocator *a)
{
	if (!libc_alloc(a))
		return ZSTD_createCCtx_advanced(zstd_mem(a));
	ZSTD_CCtx *c = alcm_obj_take(ALCM_OBJ_ZSTD_C);
	if (c) {
		ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
		return c;
	}
	atomic_fetch_add_explicit(&contexts_made, 1, memory_order_relaxed);
	return ZSTD_createCCtx_advanced(zstd_blk_mem);
}

/* A compressing context is charged what its memory may really be: its workspace is a block
 * of the encoders' cache, which may hold up to twice the size asked and 64 KiB more. */
static void cctx_free(const alcm_allocator *a, ZSTD_CCtx *c)
{
	if (c && libc_alloc(a))
		alcm_obj_give(ALCM_OBJ_ZSTD_C, c, 2 * ZSTD_sizeof_CCtx(c) + ((size_t)64 << 10),
		              cctx_drop);
	else
		ZSTD_freeCCtx(c);
}

/* A decoding context with a window of at most 2^wlog bytes. */
static ZSTD_DCtx *dctx_new(const alcm_allocator *a, unsigned wlog)
{
	ZSTD_DCtx *d = NULL;
	if (!libc_alloc(a)) {
		d = ZSTD_createDCtx_advanced(zstd_mem(a));
	} else if ((d = alcm_obj_take(ALCM_OBJ_ZSTD_D))) {
		ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
	} else {
		atomic_fetch_add_explicit(&contexts_made, 1, memory_order_relaxed);
		d = ZSTD_createDCtx_advanced(zstd_sys_mem);
	}
	if (d)
		ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, (int)wlog);
	return d;
}

/* Cached only without stream buffers (a one-shot context is about 94 KiB): a context that
 * streamed keeps its buffers, which the next reader taking it would hold whatever its own
 * window limit (alcm_sreader's memory bound). `keep` 0: freed (alcm_sreader's own). */
#define DCTX_KEEP_MAX ((size_t)160 << 10)
static void dctx_free(const alcm_allocator *a, ZSTD_DCtx *d, int keep)
{
	if (d && keep && libc_alloc(a) && ZSTD_sizeof_DCtx(d) <= DCTX_KEEP_MAX)
		alcm_obj_give(ALCM_OBJ_ZSTD_D, d, ZSTD_sizeof_DCtx(d), dctx_drop);
	else
		ZSTD_freeDCtx(d);
}

uint64_t alcm_zstd_contexts_made(void)
{
	return atomic_load_explicit(&contexts_made, memory_order_relaxed);
}

alcm_coder *alcm_coder_new(const alcm_allocator *a, const alcm_limits *lim)
{
	alcm_coder *c = alcm_mem_calloc(a, 1, sizeof(*c));
	if (!c)
		return NULL;
	c->a = a;
	c->wlog_max = lim ? lim->zstd_window_log_max : 27;
	return c;
}

const alcm_allocator *alcm_coder_alloc(const alcm_coder *c)
{
	return c->a;
}

void alcm_coder_set_encoding(alcm_coder *c)
{
	c->kind = ALCM_BLOCK_ENC;
}

int alcm_coder_block_kind(const alcm_coder *c)
{
	return c->kind;
}

alcm_symstate **alcm_coder_symstate(alcm_coder *c)
{
	return &c->sym;
}

void *alcm_coder_scratch(alcm_coder *c, unsigned slot, size_t size)
{
	if (slot >= ALCM_CODER_SCRATCH)
		return NULL;
	size = size ? size : 1;
	if (size > c->scratch_cap[slot]) {
		alcm_block_give_kind(c->a, c->kind, c->scratch[slot], c->scratch_cap[slot]);
		c->scratch[slot] = alcm_block_take_kind(c->a, c->kind, size, &c->scratch_cap[slot]);
	}
	return c->scratch[slot];
}

void alcm_coder_free(alcm_coder *c)
{
	if (!c)
		return;
	cctx_free(c->a, c->cctx);
	dctx_free(c->a, c->dctx, 1);
	dctx_free(c->a, c->sdctx, 0);
	alcm_mem_free(c->a, c->sbuf);
	alcm_symstate_free(c->a, c->sym);
	for (unsigned k = 0; k < ALCM_CODER_SCRATCH; k++)
		alcm_block_give_kind(c->a, c->kind, c->scratch[k], c->scratch_cap[k]);
	alcm_mem_free(c->a, c);
}

static size_t raw_bound(size_t n)
{
	return n;
}

static int raw_encode(alcm_coder *c, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                      int level, size_t *out_len)
{
	(void)c;
	(void)level;
	if (cap < n)
		return ALCM_E_ARG;
	memcpy(dst, src, n);
	*out_len = n;
	return ALCM_OK;
}

static int raw_decode(alcm_coder *c, uint8_t *dst, size_t exact, const uint8_t *src, size_t n)
{
	(void)c;
	if (n != exact)
		return ALCM_E_CORRUPT;
	memcpy(dst, src, n);
	return ALCM_OK;
}

static size_t zstd_bound(size_t n)
{
	return ZSTD_compressBound(n);
}

static int zstd_encode(alcm_coder *c, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                       int level, size_t *out_len)
{
	if (!c->cctx) {
		c->cctx = cctx_new(c->a);
		if (!c->cctx)
			return ALCM_E_NOMEM;
		c->level = 0;
	}
	if (c->level != level) {
		ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);
		/* Frames carry their size so a reader can check it against what it expects;
		 * no checksum: the section digest covers the bytes. */
		ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1);
		ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
		/* Chunks are at most a few MiB: a 2^24 window is enough and keeps decoding
		 * within the default window limit. */
		ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_windowLog, 24);
		/* For frames of literals only (c->literals): no sequences means all input is literals. */
		ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_blockDelimiters, ZSTD_sf_noBlockDelimiters);
		c->level = level;
	}
	size_t r = c->literals ? ZSTD_compressSequences(c->cctx, dst, cap, NULL, 0, src, n)
	                       : ZSTD_compress2(c->cctx, dst, cap, src, n);
	if (ZSTD_isError(r))
		return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? ALCM_E_ARG
		                                                             : ALCM_E_NOMEM;
	*out_len = r;
	return ALCM_OK;
}

/* The frame header checks of spec 6.2: one frame, exactly `exact` bytes of content, a window
 * within the limit. One-shot decoding needs no window buffer and zstd does not check it
 * there: the limit is applied here so that every reader refuses the same frames, and so that
 * the streaming reader (which needs the window) accepts what one-shot decoding accepts. */
static int zstd_frame_ok(const alcm_coder *c, size_t exact, const uint8_t *src, size_t n)
{
	ZSTD_frameHeader fh;
	if (ZSTD_getFrameHeader(&fh, src, n) != 0 || fh.frameType != ZSTD_frame ||
	    fh.frameContentSize != exact || ZSTD_findFrameCompressedSize(src, n) != n)
		return ALCM_E_CORRUPT;
	if (c->wlog_max < 64 && fh.windowSize > ((unsigned long long)1 << c->wlog_max))
		return ALCM_E_LIMIT;
	return ALCM_OK;
}

static int zstd_decode(alcm_coder *c, uint8_t *dst, size_t exact, const uint8_t *src, size_t n)
{
	int st = zstd_frame_ok(c, exact, src, n);
	if (st)
		return st;
	if (!c->dctx && !(c->dctx = dctx_new(c->a, c->wlog_max)))
		return ALCM_E_NOMEM;
	size_t r = ZSTD_decompressDCtx(c->dctx, dst, exact, src, n);
	if (ZSTD_isError(r)) {
		ZSTD_ErrorCode e = ZSTD_getErrorCode(r);
		if (e == ZSTD_error_frameParameter_windowTooLarge)
			return ALCM_E_LIMIT;
		if (e == ZSTD_error_memory_allocation)
			return ALCM_E_NOMEM;
		return ALCM_E_CORRUPT;
	}
	return r == exact ? ALCM_OK : ALCM_E_CORRUPT;
}

static const alcm_backend backends[] = {
	{ALCM_BACKEND_RAW, "raw", raw_bound, raw_encode, raw_decode},
	{ALCM_BACKEND_ZSTD, "zstd", zstd_bound, zstd_encode, zstd_decode},
};

const alcm_backend *alcm_backend_get(unsigned id)
{
	return id < sizeof(backends) / sizeof(backends[0]) ? &backends[id] : NULL;
}

/* ---- buffers and cursors ---------------------------------------------------------------- */

int alcm_buf_reserve(alcm_buf *b, size_t extra)
{
	size_t need;
	if (__builtin_add_overflow(b->len, extra, &need))
		return ALCM_E_NOMEM;
	if (need <= b->cap)
		return ALCM_OK;
	size_t nc = b->cap ? b->cap : 256;
	while (nc < need) {
		if (nc > SIZE_MAX / 2)
			return ALCM_E_NOMEM;
		nc *= 2;
	}
	if (b->cache && (!b->a || alcm_alloc_is_libc(b->a))) { /* a caller's allocator: realloc */
		size_t got;
		uint8_t *p = alcm_block_take_kind(b->a, b->cache - 1, nc, &got);
		if (!p)
			return ALCM_E_NOMEM;
		if (b->len)
			memcpy(p, b->p, b->len);
		alcm_block_give_kind(b->a, b->cache - 1, b->p, b->cap);
		b->p = p;
		b->cap = got;
		return ALCM_OK;
	}
	uint8_t *p = alcm_mem_realloc(b->a, b->p, nc);
	if (!p)
		return ALCM_E_NOMEM;
	b->p = p;
	b->cap = nc;
	return ALCM_OK;
}

int alcm_buf_put(alcm_buf *b, const void *p, size_t n)
{
	int st = alcm_buf_reserve(b, n);
	if (st)
		return st;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return ALCM_OK;
}

int alcm_buf_put_varint(alcm_buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			t[n] |= 0x80;
		n++;
	} while (v);
	return alcm_buf_put(b, t, n);
}

void alcm_buf_free(alcm_buf *b)
{
	if (b->cache)
		alcm_block_give_kind(b->a, b->cache - 1, b->p, b->cap);
	else
		alcm_mem_free(b->a, b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int alcm_cur_varint(alcm_cursor *c, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (c->pos >= c->len)
			return ALCM_E_CORRUPT;
		uint8_t b = c->p[c->pos++];
		if (i == 9 && b > 1)
			return ALCM_E_CORRUPT;
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			/* Minimal encoding only, so that every value has one byte string. */
			if (i > 0 && b == 0)
				return ALCM_E_CORRUPT;
			*v = r;
			return ALCM_OK;
		}
	}
	return ALCM_E_CORRUPT;
}

int alcm_cur_bytes(alcm_cursor *c, size_t n, const uint8_t **p)
{
	if (n > c->len - c->pos)
		return ALCM_E_CORRUPT;
	*p = c->p + c->pos;
	c->pos += n;
	return ALCM_OK;
}

int alcm_cur_u8(alcm_cursor *c, uint8_t *v)
{
	const uint8_t *p;
	int st = alcm_cur_bytes(c, 1, &p);
	if (!st)
		*v = p[0];
	return st;
}

int alcm_cur_u32(alcm_cursor *c, uint32_t *v)
{
	const uint8_t *p;
	int st = alcm_cur_bytes(c, 4, &p);
	if (!st)
		*v = alcm_load32(p);
	return st;
}

int alcm_cur_u64(alcm_cursor *c, uint64_t *v)
{
	const uint8_t *p;
	int st = alcm_cur_bytes(c, 8, &p);
	if (!st)
		*v = alcm_load64(p);
	return st;
}

int alcm_cur_f64(alcm_cursor *c, double *v)
{
	uint64_t u;
	int st = alcm_cur_u64(c, &u);
	if (!st)
		memcpy(v, &u, 8);
	return st;
}

/* ---- coded streams ---------------------------------------------------------------------- */

int alcm_stream_put(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n, int level)
{
	return alcm_stream_put2(c, out, src, n, level, 1, NULL);
}

/* Bytes alcm_buf_put_varint takes for v (7 bits a byte). */
static size_t varint_bytes(uint64_t v)
{
	size_t k = 1;
	while (v >= 0x80) {
		v >>= 7;
		k++;
	}
	return k;
}

int alcm_stream_put2(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n, int level,
                     int try_zstd, int *zstd_used)
{
	const alcm_backend *z = alcm_backend_get(ALCM_BACKEND_ZSTD);
	size_t bound = z->bound(n);
	/* Header: backend byte + two varints of at most 10 bytes. */
	int st = alcm_buf_reserve(out, 21 + bound);
	if (st)
		return st;
	size_t hdr = out->len;
	/* The coded bytes go where a header with clen's varint as long as n's puts them: always
	 * so for raw, and for zstd unless its output is a varint byte shorter (then one move). */
	size_t guess = 1 + 2 * varint_bytes(n);
	uint8_t *dst = out->p + hdr + guess;
	size_t clen = 0;
	unsigned id = ALCM_BACKEND_RAW;
	if (n >= 64 && level > 0 && try_zstd) {
		c->literals = try_zstd == ALCM_ZSTD_LITERALS && n <= ALCM_ZSTD_LITERALS_MAX;
		st = z->encode(c, dst, bound, src, n, level, &clen);
		c->literals = 0;
		if (st)
			return st;
		if (clen < n)
			id = ALCM_BACKEND_ZSTD;
	}
	if (id == ALCM_BACKEND_RAW) {
		memcpy(dst, src, n);
		clen = n;
	}
	uint8_t h[21];
	alcm_buf hb = {h, 0, sizeof(h), NULL, 0};
	h[0] = (uint8_t)id;
	hb.len = 1;
	alcm_buf_put_varint(&hb, n);
	alcm_buf_put_varint(&hb, clen);
	if (hb.len != guess)
		memmove(out->p + hdr + hb.len, dst, clen);
	memcpy(out->p + hdr, h, hb.len);
	out->len = hdr + hb.len + clen;
	if (zstd_used)
		*zstd_used = id == ALCM_BACKEND_ZSTD;
	return ALCM_OK;
}

int alcm_stream_get(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, size_t exact)
{
	const uint8_t *p;
	int st = alcm_stream_view(c, cur, dst, exact, &p);
	if (!st && p != dst)
		memcpy(dst, p, exact);
	return st;
}

int alcm_stream_view(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, size_t exact,
                     const uint8_t **out)
{
	uint8_t id;
	uint64_t raw, clen;
	const uint8_t *p;
	int st;
	if ((st = alcm_cur_u8(cur, &id)) || (st = alcm_cur_varint(cur, &raw)) ||
	    (st = alcm_cur_varint(cur, &clen)))
		return st;
	/* An id this reader does not know is a feature it lacks (spec 6.2), checked first. */
	const alcm_backend *b = alcm_backend_get(id);
	if (!b)
		return ALCM_E_UNSUPPORTED;
	/* No backend may take more room than the raw bytes (writers store raw then), so a
	 * chunk's length is bounded by what it decodes to (spec 6.3). */
	if (raw != exact || clen > raw || clen > cur->len - cur->pos)
		return ALCM_E_CORRUPT;
	if ((st = alcm_cur_bytes(cur, (size_t)clen, &p)))
		return st;
	if (id == ALCM_BACKEND_RAW) {
		if (clen != exact)
			return ALCM_E_CORRUPT;
		*out = p;
		return ALCM_OK;
	}
	*out = dst;
	return b->decode(c, dst, exact, p, (size_t)clen);
}

int alcm_bitmap_get(alcm_coder *c, alcm_cursor *cur, uint8_t *bits, uint64_t n, uint64_t *ones)
{
	int st = alcm_stream_get(c, cur, bits, (size_t)(n / 8 + 1));
	if (st)
		return st;
	if (bits[n / 8] >> (n % 8))
		return ALCM_E_CORRUPT; /* bits past the end must be zero */
	/* Eight bytes a step, without the popcnt instruction the portable build may not use
	 * (__builtin_popcount is then a libgcc call per byte: 2% of a sparse delta's decode). */
	uint64_t k = 0, i = 0, nb = n / 8 + 1;
	for (; i + 8 <= nb; i += 8) {
		uint64_t x;
		memcpy(&x, bits + i, 8);
		x = x - ((x >> 1) & 0x5555555555555555ull);
		x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
		x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
		k += (x * 0x0101010101010101ull) >> 56;
	}
	for (; i < nb; i++)
		k += (uint64_t)__builtin_popcount(bits[i]);
	*ones = k;
	return ALCM_OK;
}

int alcm_stream_put_best(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n, int level)
{
	const size_t sample = (size_t)1 << 16;
	if (level == 1 || n < 64)
		return alcm_stream_put(c, out, src, n, level);
	size_t at = out->len;
	/* Short: code it both ways and keep the smaller. */
	const uint8_t *s = n <= sample ? src : src + (n - sample) / 2;
	size_t sn = n <= sample ? n : sample;
	int st = alcm_stream_put(c, out, s, sn, 1);
	if (st)
		return st;
	size_t l1 = out->len - at;
	if ((st = alcm_stream_put(c, out, s, sn, level)))
		return st;
	size_t l2 = out->len - at - l1;
	if (n <= sample) {
		if (l2 < l1)
			memmove(out->p + at, out->p + at + l1, l2);
		out->len = at + (l2 < l1 ? l2 : l1);
		return ALCM_OK;
	}
	out->len = at;
	return alcm_stream_put(c, out, src, n, l2 < l1 ? level : 1);
}

int alcm_stream_skip(alcm_cursor *cur, size_t exact)
{
	uint8_t id;
	uint64_t raw, clen;
	const uint8_t *p;
	int st;
	if ((st = alcm_cur_u8(cur, &id)) || (st = alcm_cur_varint(cur, &raw)) ||
	    (st = alcm_cur_varint(cur, &clen)))
		return st;
	if (raw != exact || clen > raw || !alcm_backend_get(id) ||
	    (id == ALCM_BACKEND_RAW && clen != raw))
		return ALCM_E_CORRUPT;
	return alcm_cur_bytes(cur, (size_t)clen, &p);
}

/* ---- streaming reads ----------------------------------------------------------------------- */

int alcm_sreader_open(alcm_sreader *s, alcm_coder *c, alcm_cursor *cur, uint64_t exact)
{
	uint8_t id;
	uint64_t raw, clen;
	const uint8_t *p;
	int st;
	memset(s, 0, sizeof(*s));
	if ((st = alcm_cur_u8(cur, &id)) || (st = alcm_cur_varint(cur, &raw)) ||
	    (st = alcm_cur_varint(cur, &clen)))
		return st;
	if (raw != exact || clen > raw || clen > cur->len - cur->pos || !alcm_backend_get(id))
		return ALCM_E_CORRUPT;
	if ((st = alcm_cur_bytes(cur, (size_t)clen, &p)))
		return st;
	s->c = c;
	s->src = p;
	s->srclen = (size_t)clen;
	s->left = raw;
	s->zstd = id == ALCM_BACKEND_ZSTD;
	if (!s->zstd)
		return clen == raw ? ALCM_OK : ALCM_E_CORRUPT;
	if ((st = zstd_frame_ok(c, (size_t)raw, p, (size_t)clen)))
		return st;
	if (!c->sdctx && !(c->sdctx = dctx_new(c->a, c->wlog_max)))
		return ALCM_E_NOMEM;
	if (!c->sbuf && !(c->sbuf = alcm_mem_alloc(c->a, ALCM_SREADER_BUF)))
		return ALCM_E_NOMEM;
	ZSTD_DCtx_reset(c->sdctx, ZSTD_reset_session_only);
	return ALCM_OK;
}

/* Refills the decoded buffer of a zstd stream. */
static int sreader_fill(alcm_sreader *s)
{
	ZSTD_inBuffer in = {s->src, s->srclen, s->srcpos};
	ZSTD_outBuffer out = {s->c->sbuf, ALCM_SREADER_BUF, 0};
	while (out.pos == 0) {
		if (s->done)
			return ALCM_E_CORRUPT; /* the frame ended before its content size */
		size_t before = in.pos;
		size_t r = ZSTD_decompressStream(s->c->sdctx, &out, &in);
		if (ZSTD_isError(r)) {
			ZSTD_ErrorCode e = ZSTD_getErrorCode(r);
			return e == ZSTD_error_frameParameter_windowTooLarge ? ALCM_E_LIMIT
			       : e == ZSTD_error_memory_allocation           ? ALCM_E_NOMEM
			                                                     : ALCM_E_CORRUPT;
		}
		s->done = r == 0;
		if (out.pos == 0 && in.pos == before && !s->done)
			return ALCM_E_CORRUPT; /* no progress: the input is cut short */
	}
	s->srcpos = in.pos;
	s->buf = s->c->sbuf;
	s->bufpos = 0;
	s->buflen = out.pos;
	return ALCM_OK;
}

int alcm_sreader_read(alcm_sreader *s, uint8_t *dst, size_t n)
{
	if (n > s->left)
		return ALCM_E_CORRUPT;
	if (!s->zstd) {
		memcpy(dst, s->src + s->srcpos, n);
		s->srcpos += n;
		s->left -= n;
		return ALCM_OK;
	}
	while (n) {
		if (s->bufpos == s->buflen) {
			int st = sreader_fill(s);
			if (st)
				return st;
		}
		size_t k = s->buflen - s->bufpos < n ? s->buflen - s->bufpos : n;
		memcpy(dst, s->buf + s->bufpos, k);
		s->bufpos += k;
		dst += k;
		n -= k;
		s->left -= k;
	}
	return ALCM_OK;
}

int alcm_sreader_varint(alcm_sreader *s, uint64_t *v)
{
	/* The same rules as alcm_cur_varint(): at most 10 bytes, minimal. */
	uint8_t b[10];
	for (unsigned i = 0; i < 10; i++) {
		int st = alcm_sreader_read(s, b + i, 1);
		if (st)
			return st;
		if (!(b[i] & 0x80)) {
			alcm_cursor c = {b, i + 1, 0};
			return alcm_cur_varint(&c, v);
		}
	}
	return ALCM_E_CORRUPT;
}

int alcm_sreader_end(alcm_sreader *s)
{
	if (s->left)
		return ALCM_E_CORRUPT;
	if (!s->zstd)
		return ALCM_OK;
	if (s->bufpos != s->buflen)
		return ALCM_E_CORRUPT;
	/* The content is complete: the frame must end here (a checksum may follow the last
	 * block), and no byte may follow it. */
	if (!s->done) {
		uint8_t extra;
		ZSTD_inBuffer in = {s->src, s->srclen, s->srcpos};
		ZSTD_outBuffer out = {&extra, 1, 0};
		size_t r = ZSTD_decompressStream(s->c->sdctx, &out, &in);
		if (ZSTD_isError(r) || r != 0 || out.pos != 0)
			return ALCM_E_CORRUPT;
		s->srcpos = in.pos;
	}
	return s->srcpos == s->srclen ? ALCM_OK : ALCM_E_CORRUPT;
}

/* ---- TDRZ: the compressed tensor directory (spec 6.3.1) ------------------------------- */

int alcm_tdrz_pack(const alcm_allocator *a, alcm_buf *out, const uint8_t *head, size_t hn,
                   const uint8_t *body, size_t bn)
{
	size_t raw = hn + bn;
	int st = alcm_buf_reserve(out, 8 + ZSTD_compressBound(raw));
	if (st)
		return st;
	ZSTD_CCtx *cc = cctx_new(a);
	if (!cc)
		return ALCM_E_NOMEM;
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, ALCM_TDRZ_LEVEL);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setPledgedSrcSize(cc, raw);
	uint8_t *p = out->p + out->len;
	alcm_store64(p, raw);
	ZSTD_outBuffer o = {p + 8, out->cap - out->len - 8, 0};
	ZSTD_inBuffer i1 = {head, hn, 0}, i2 = {body, bn, 0};
	size_t r = ZSTD_compressStream2(cc, &o, &i1, ZSTD_e_continue);
	if (!ZSTD_isError(r))
		r = ZSTD_compressStream2(cc, &o, &i2, ZSTD_e_end);
	cctx_free(a, cc);
	/* The output was reserved at the bound, so the frame ends in one call and zstd can
	 * only fail for want of memory. */
	if (ZSTD_isError(r) || r != 0)
		return ALCM_E_NOMEM;
	out->len += 8 + o.pos;
	return ALCM_OK;
}

int alcm_tdrz_unpack(const alcm_allocator *a, const uint8_t *src, size_t n, uint64_t limit,
                     uint8_t **out, size_t *outlen, const char **why)
{
	*out = NULL;
	*outlen = 0;
	if (n < 8) {
		*why = "is shorter than its 8-byte length";
		return ALCM_E_CORRUPT;
	}
	uint64_t raw = alcm_load64(src);
	if (raw > limit) {
		*why = "declares a directory larger than the metadata limit";
		return ALCM_E_LIMIT;
	}
	unsigned long long fcs = ZSTD_getFrameContentSize(src + 8, n - 8);
	if (fcs != raw) {
		*why = "holds no zstd frame of the declared length";
		return ALCM_E_CORRUPT;
	}
	/* The buffer grows with what the frame really yields, so a forged length costs no more
	 * memory than the bytes that decompress (at most twice, and at most the limit). */
	size_t cap = raw < 65536 ? (size_t)raw : 65536;
	uint8_t *buf = alcm_mem_alloc(a, cap ? cap : 1);
	ZSTD_DCtx *dc = buf ? dctx_new(a, 27) : NULL;
	int st = dc ? ALCM_OK : ALCM_E_NOMEM;
	ZSTD_inBuffer in = {src + 8, n - 8, 0};
	ZSTD_outBuffer o = {buf, cap, 0};
	uint8_t extra;
	while (!st) {
		/* Once the declared bytes are out, a one-byte window lets the frame end (its last
		 * block header) and catches a frame that would yield more. */
		int full = o.pos == raw;
		ZSTD_outBuffer x = {&extra, 1, 0};
		size_t r = ZSTD_decompressStream(dc, full ? &x : &o, &in);
		if (ZSTD_isError(r)) {
			st = ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? ALCM_E_NOMEM
			                                                           : ALCM_E_CORRUPT;
			*why = "holds a damaged zstd frame";
		} else if (x.pos) {
			st = ALCM_E_CORRUPT;
			*why = "holds more bytes than it declares";
		} else if (r == 0) {
			break;
		} else if (!full && o.pos == o.size) {
			size_t ncap = o.size > raw / 2 ? (size_t)raw : o.size * 2;
			uint8_t *nb = alcm_mem_alloc(a, ncap);
			if (!nb) {
				st = ALCM_E_NOMEM;
				break;
			}
			memcpy(nb, buf, o.pos);
			alcm_mem_free(a, buf);
			buf = nb;
			o.dst = buf;
			o.size = ncap;
		} else if (in.pos == in.size) {
			st = ALCM_E_CORRUPT;
			*why = "ends inside its zstd frame";
		}
	}
	if (!st && (o.pos != raw || in.pos != in.size)) {
		st = ALCM_E_CORRUPT;
		*why = o.pos != raw ? "yields fewer bytes than it declares"
		                    : "has bytes after its zstd frame";
	}
	dctx_free(a, dc, 1);
	if (st) {
		alcm_mem_free(a, buf);
		return st;
	}
	*out = buf;
	*outlen = (size_t)raw;
	return ALCM_OK;
}
