/* Built-in codecs of alcm-bench, each behind the same alcm_codec_v1 table a plugin fills:
 *   alcm  - libalcm through its public API: one in-memory archive per bundle file (all its
 *           tensors), lossless, max-error or fixed-width mode; integer tensors always
 *           lossless; decoded with digest verification on (the library default).
 *   zstd  - one zstd frame per tensor, on the raw bytes.
 *   zlib  - one raw deflate stream per tensor: what numpy.savez_compressed stores in each
 *           zip member (zipfile's deflate at zlib's default level, 6), without the zip
 *           headers.
 * The peers get the tensors' bytes only; they store no names, dtypes or shapes (the bench
 * gives those back to decompress()), whereas alcm's archive is self-describing and the
 * bytes of its header, metadata and directory count against it. */
#include "bench_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

static int set_detail(char *d, size_t cap, int st, const char *fmt, const char *arg)
{
	snprintf(d, cap, fmt, arg ? arg : "");
	return st;
}

static uint64_t sum_bytes(const alcm_codec_tensor *t, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += t[i].nbytes;
	return s;
}

/* ---- alcm --------------------------------------------------------------------------------- */

typedef struct alcm_state {
	alcm_pack_options opt;
	unsigned threads;
	char detail[256];
} alcm_state;

static int alcm_c_create(void **state, const alcm_codec_params *p)
{
	alcm_state *s = calloc(1, sizeof(*s));
	if (!s)
		return ALCM_CODEC_E_NOMEM;
	alcm_pack_options_default(&s->opt);
	switch (p->mode) {
	case ALCM_CODEC_MODE_EXACT: s->opt.mode = ALCM_MODE_LOSSLESS; break;
	case ALCM_CODEC_MODE_MAX_ERROR:
		s->opt.mode = ALCM_MODE_MAX_ERROR;
		s->opt.bound = p->max_abs_error;
		break;
	case ALCM_CODEC_MODE_BITS:
		s->opt.mode = ALCM_MODE_BITS;
		s->opt.bits = p->bits;
		break;
	default: free(s); return ALCM_CODEC_E_UNSUPPORTED;
	}
	if (p->level)
		s->opt.level = p->level;
	s->threads = p->threads ? p->threads : 1;
	s->opt.threads = s->threads;
	s->opt.int_policy = ALCM_INT_LOSSLESS;
	/* A fixed producer string: the archive, and so the ratio, must not depend on anything
	 * but the tensors and the parameters. */
	s->opt.producer = "alcm-bench";
	*state = s;
	return ALCM_CODEC_OK;
}

static void alcm_c_destroy(void *state)
{
	free(state);
}

static uint64_t alcm_c_bound(void *state, const alcm_codec_tensor *t, size_t n)
{
	(void)state;
	/* Raw bytes, plus a generous allowance for container, directory, predictor and
	 * per-chunk overhead; the bench retries on ALCM_CODEC_E_SPACE if it is ever short. */
	uint64_t raw = sum_bytes(t, n);
	return raw + raw / 16 + 65536 + (uint64_t)n * 2048;
}

static int alcm_to_status(int st)
{
	switch (st) {
	case ALCM_OK: return ALCM_CODEC_OK;
	case ALCM_E_NOMEM: return ALCM_CODEC_E_NOMEM;
	case ALCM_E_ARG: return ALCM_CODEC_E_ARG;
	case ALCM_E_UNSUPPORTED: case ALCM_E_BOUND: return ALCM_CODEC_E_UNSUPPORTED;
	default: return ALCM_CODEC_E_INTERNAL;
	}
}

static alcm_tensor to_alcm(const alcm_codec_tensor *c)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = c->name;
	t.name_len = c->name_len;
	t.dtype = c->dtype;
	t.ndim = c->ndim;
	memcpy(t.shape, c->shape, sizeof(uint64_t) * (c->ndim < ALCM_MAX_NDIM ? c->ndim : ALCM_MAX_NDIM));
	t.data = c->data;
	t.nbytes = c->nbytes;
	return t;
}

static int alcm_c_compress(void *state, const alcm_codec_tensor *t, size_t n, void *out,
                           size_t cap, size_t *out_len)
{
	alcm_state *s = state;
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	*out_len = 0;
	int st = alcm_writer_open_memory(&w, 0, NULL);
	if (st)
		return set_detail(s->detail, sizeof(s->detail), alcm_to_status(st), "writer: %s",
		                  alcm_strerror(st));
	st = alcm_encoder_new(&e, w, &s->opt, NULL);
	if (st) {
		set_detail(s->detail, sizeof(s->detail), 0, "encoder: %s", alcm_strerror(st));
		goto out;
	}
	for (size_t i = 0; i < n && !st; i++) {
		alcm_tensor at = to_alcm(&t[i]);
		if ((st = alcm_encoder_add(e, &at, NULL)))
			set_detail(s->detail, sizeof(s->detail), 0, "encode: %s", alcm_encoder_detail(e));
	}
	if (!st && (st = alcm_encoder_finish(e)))
		set_detail(s->detail, sizeof(s->detail), 0, "finish: %s", alcm_encoder_detail(e));
	if (!st && (st = alcm_writer_commit(w)))
		set_detail(s->detail, sizeof(s->detail), 0, "commit: %s", alcm_writer_detail(w));
	if (!st) {
		const void *buf;
		size_t len;
		if ((st = alcm_writer_memory(w, &buf, &len)) == ALCM_OK) {
			*out_len = len;
			if (len > cap) {
				alcm_encoder_free(e);
				alcm_writer_free(w);
				return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_SPACE,
				                  "output buffer too small%s", NULL);
			}
			memcpy(out, buf, len);
		}
	}
out:
	alcm_encoder_free(e);
	alcm_writer_free(w);
	return alcm_to_status(st);
}

static int alcm_c_decompress(void *state, const void *in, size_t len, const alcm_codec_tensor *t,
                             size_t n, void *const *dst)
{
	alcm_state *s = state;
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	int rc = ALCM_CODEC_OK;
	int st = alcm_reader_open_memory(&r, in, len, "bench", NULL, NULL, 0);
	if (st) {
		set_detail(s->detail, sizeof(s->detail), 0, "open: %s",
		           r ? alcm_reader_detail(r) : alcm_strerror(st));
		rc = st == ALCM_E_NOMEM ? ALCM_CODEC_E_NOMEM : ALCM_CODEC_E_CORRUPT;
		goto out;
	}
	if ((st = alcm_archive_open(&a, r, NULL))) {
		set_detail(s->detail, sizeof(s->detail), 0, "archive: %s",
		           a ? alcm_archive_detail(a) : alcm_strerror(st));
		rc = st == ALCM_E_NOMEM ? ALCM_CODEC_E_NOMEM : ALCM_CODEC_E_CORRUPT;
		goto out;
	}
	alcm_archive_set_threads(a, s->threads);
	if (alcm_archive_tensor_count(a) != n) {
		rc = set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
		                "archive holds another number of tensors%s", NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		alcm_tensor_info info;
		if (alcm_archive_tensor_info(a, i, &info) || info.dtype != t[i].dtype ||
		    info.raw_bytes != t[i].nbytes) {
			rc = set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
			                "archive tensor differs from its description%s", NULL);
			goto out;
		}
		if ((st = alcm_archive_decode(a, i, dst[i], (size_t)t[i].nbytes))) {
			set_detail(s->detail, sizeof(s->detail), 0, "decode: %s", alcm_archive_detail(a));
			rc = st == ALCM_E_NOMEM ? ALCM_CODEC_E_NOMEM : ALCM_CODEC_E_CORRUPT;
			goto out;
		}
	}
out:
	alcm_archive_free(a);
	alcm_reader_free(r);
	return rc;
}

static const char *alcm_c_detail(void *state)
{
	return state ? ((alcm_state *)state)->detail : "";
}

static const alcm_codec_v1 alcm_vt = {
	.abi_version = ALCM_CODEC_ABI_VERSION,
	.struct_size = sizeof(alcm_codec_v1),
	.name = "alcm",
	.version = ALCM_VERSION_STRING,
	.description = "libalcm: one .alcm archive per file (lossless, max-error or fixed bits)",
	.caps = ALCM_CODEC_CAP_LOSSLESS | ALCM_CODEC_CAP_MAX_ERROR | ALCM_CODEC_CAP_BITS |
	        ALCM_CODEC_CAP_LEVEL,
	.create = alcm_c_create,
	.destroy = alcm_c_destroy,
	.compress_bound = alcm_c_bound,
	.compress = alcm_c_compress,
	.decompress = alcm_c_decompress,
	.detail = alcm_c_detail,
};

const alcm_codec_v1 *bench_alcm_codec(void)
{
	return &alcm_vt;
}

/* ---- zstd --------------------------------------------------------------------------------- */

typedef struct zstd_state {
	ZSTD_CCtx *cc;
	ZSTD_DCtx *dc;
	int level;
	char detail[256];
} zstd_state;

static void zstd_c_destroy(void *state)
{
	zstd_state *s = state;
	if (!s)
		return;
	ZSTD_freeCCtx(s->cc);
	ZSTD_freeDCtx(s->dc);
	free(s);
}

static int zstd_c_create(void **state, const alcm_codec_params *p)
{
	if (p->mode != ALCM_CODEC_MODE_EXACT)
		return ALCM_CODEC_E_UNSUPPORTED;
	if (p->level && (p->level < ZSTD_minCLevel() || p->level > ZSTD_maxCLevel()))
		return ALCM_CODEC_E_ARG;
	zstd_state *s = calloc(1, sizeof(*s));
	if (!s)
		return ALCM_CODEC_E_NOMEM;
	s->cc = ZSTD_createCCtx();
	s->dc = ZSTD_createDCtx();
	if (!s->cc || !s->dc) {
		zstd_c_destroy(s);
		return ALCM_CODEC_E_NOMEM;
	}
	s->level = p->level ? p->level : 3;
	*state = s;
	return ALCM_CODEC_OK;
}

static uint64_t zstd_c_bound(void *state, const alcm_codec_tensor *t, size_t n)
{
	(void)state;
	uint64_t b = 0;
	for (size_t i = 0; i < n; i++)
		b += ZSTD_compressBound((size_t)t[i].nbytes);
	return b;
}

static int zstd_c_compress(void *state, const alcm_codec_tensor *t, size_t n, void *out,
                           size_t cap, size_t *out_len)
{
	zstd_state *s = state;
	size_t pos = 0;
	*out_len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t r = ZSTD_compressCCtx(s->cc, (char *)out + pos, cap - pos, t[i].data,
		                             (size_t)t[i].nbytes, s->level);
		if (ZSTD_isError(r)) {
			int space = ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall;
			return set_detail(s->detail, sizeof(s->detail),
			                  space ? ALCM_CODEC_E_SPACE : ALCM_CODEC_E_INTERNAL, "zstd: %s",
			                  ZSTD_getErrorName(r));
		}
		pos += r;
	}
	*out_len = pos;
	return ALCM_CODEC_OK;
}

static int zstd_c_decompress(void *state, const void *in, size_t len, const alcm_codec_tensor *t,
                             size_t n, void *const *dst)
{
	zstd_state *s = state;
	const char *p = in;
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		size_t fl = ZSTD_findFrameCompressedSize(p + pos, len - pos);
		if (ZSTD_isError(fl))
			return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
			                  "zstd frame: %s", ZSTD_getErrorName(fl));
		unsigned long long cs = ZSTD_getFrameContentSize(p + pos, fl);
		if (cs != t[i].nbytes)
			return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
			                  "zstd frame of another size%s", NULL);
		size_t r = ZSTD_decompressDCtx(s->dc, dst[i], (size_t)t[i].nbytes, p + pos, fl);
		if (ZSTD_isError(r) || r != t[i].nbytes)
			return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
			                  "zstd: %s", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
		pos += fl;
	}
	if (pos != len)
		return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
		                  "trailing bytes after the last frame%s", NULL);
	return ALCM_CODEC_OK;
}

static const char *zstd_c_detail(void *state)
{
	return state ? ((zstd_state *)state)->detail : "";
}

static const alcm_codec_v1 zstd_vt = {
	.abi_version = ALCM_CODEC_ABI_VERSION,
	.struct_size = sizeof(alcm_codec_v1),
	.name = "zstd",
	.version = ZSTD_VERSION_STRING,
	.description = "zstd, one frame per tensor, on the raw bytes",
	.caps = ALCM_CODEC_CAP_LOSSLESS | ALCM_CODEC_CAP_LEVEL,
	.create = zstd_c_create,
	.destroy = zstd_c_destroy,
	.compress_bound = zstd_c_bound,
	.compress = zstd_c_compress,
	.decompress = zstd_c_decompress,
	.detail = zstd_c_detail,
};

const alcm_codec_v1 *bench_zstd_codec(void)
{
	return &zstd_vt;
}

/* ---- zlib --------------------------------------------------------------------------------- */

typedef struct zlib_state {
	z_stream def, inf;
	int def_ok, inf_ok;
	char detail[256];
} zlib_state;

static void zlib_c_destroy(void *state)
{
	zlib_state *s = state;
	if (!s)
		return;
	if (s->def_ok)
		deflateEnd(&s->def);
	if (s->inf_ok)
		inflateEnd(&s->inf);
	free(s);
}

static int zlib_c_create(void **state, const alcm_codec_params *p)
{
	if (p->mode != ALCM_CODEC_MODE_EXACT)
		return ALCM_CODEC_E_UNSUPPORTED;
	if (p->level < 0 || p->level > 9)
		return ALCM_CODEC_E_ARG;
	zlib_state *s = calloc(1, sizeof(*s));
	if (!s)
		return ALCM_CODEC_E_NOMEM;
	/* Raw deflate (windowBits -15) as in a zip member; memLevel 8 and the default
	 * strategy, as Python's zipfile (zlib.compressobj(level, DEFLATED, -15)). */
	s->def_ok = deflateInit2(&s->def, p->level ? p->level : 6, Z_DEFLATED, -15, 8,
	                         Z_DEFAULT_STRATEGY) == Z_OK;
	s->inf_ok = inflateInit2(&s->inf, -15) == Z_OK;
	if (!s->def_ok || !s->inf_ok) {
		zlib_c_destroy(s);
		return ALCM_CODEC_E_NOMEM;
	}
	*state = s;
	return ALCM_CODEC_OK;
}

static uint64_t zlib_c_bound(void *state, const alcm_codec_tensor *t, size_t n)
{
	zlib_state *s = state;
	uint64_t b = 0;
	for (size_t i = 0; i < n; i++)
		b += deflateBound(&s->def, (uLong)t[i].nbytes) + 16;
	return b;
}

/* zlib counts in uInt: feed at most this much per call. */
#define ZCHUNK ((size_t)1 << 30)

static int zlib_c_compress(void *state, const alcm_codec_tensor *t, size_t n, void *out,
                           size_t cap, size_t *out_len)
{
	zlib_state *s = state;
	size_t pos = 0;
	*out_len = 0;
	for (size_t i = 0; i < n; i++) {
		z_stream *z = &s->def;
		deflateReset(z);
		const unsigned char *src = t[i].data;
		size_t left = (size_t)t[i].nbytes;
		int r;
		do {
			size_t in = left < ZCHUNK ? left : ZCHUNK, room = cap - pos;
			if (room > ZCHUNK)
				room = ZCHUNK;
			z->next_in = (unsigned char *)(uintptr_t)src;
			z->avail_in = (uInt)in;
			z->next_out = (unsigned char *)out + pos;
			z->avail_out = (uInt)room;
			r = deflate(z, in == left ? Z_FINISH : Z_NO_FLUSH);
			size_t used = in - z->avail_in;
			src += used;
			left -= used;
			pos += room - z->avail_out;
			if (r == Z_STREAM_ERROR)
				return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_INTERNAL,
				                  "deflate failed%s", NULL);
			if (r != Z_STREAM_END && pos == cap)
				return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_SPACE,
				                  "output buffer too small%s", NULL);
		} while (r != Z_STREAM_END);
	}
	*out_len = pos;
	return ALCM_CODEC_OK;
}

static int zlib_c_decompress(void *state, const void *in, size_t len, const alcm_codec_tensor *t,
                             size_t n, void *const *dst)
{
	zlib_state *s = state;
	const unsigned char *src = in;
	size_t left = len;
	for (size_t i = 0; i < n; i++) {
		z_stream *z = &s->inf;
		inflateReset(z);
		unsigned char *o = dst[i];
		size_t want = (size_t)t[i].nbytes;
		int r;
		do {
			size_t ci = left < ZCHUNK ? left : ZCHUNK, co = want < ZCHUNK ? want : ZCHUNK;
			z->next_in = (unsigned char *)(uintptr_t)src;
			z->avail_in = (uInt)ci;
			z->next_out = o;
			z->avail_out = (uInt)co;
			r = inflate(z, Z_NO_FLUSH);
			size_t ui = ci - z->avail_in, uo = co - z->avail_out;
			src += ui;
			left -= ui;
			o += uo;
			want -= uo;
			if (r != Z_OK && r != Z_STREAM_END)
				return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
				                  "inflate: %s", z->msg ? z->msg : "bad stream");
			if (r == Z_OK && ui == 0 && uo == 0)
				return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
				                  "deflate stream %s", want ? "truncated" : "too long");
		} while (r != Z_STREAM_END);
		if (want)
			return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
			                  "deflate stream shorter than the tensor%s", NULL);
	}
	if (left)
		return set_detail(s->detail, sizeof(s->detail), ALCM_CODEC_E_CORRUPT,
		                  "trailing bytes after the last stream%s", NULL);
	return ALCM_CODEC_OK;
}

static const char *zlib_c_detail(void *state)
{
	return state ? ((zlib_state *)state)->detail : "";
}

static const alcm_codec_v1 zlib_vt = {
	.abi_version = ALCM_CODEC_ABI_VERSION,
	.struct_size = sizeof(alcm_codec_v1),
	.name = "zlib",
	.version = ZLIB_VERSION,
	.description = "raw deflate per tensor, as numpy.savez_compressed's zip members",
	.caps = ALCM_CODEC_CAP_LOSSLESS | ALCM_CODEC_CAP_LEVEL,
	.create = zlib_c_create,
	.destroy = zlib_c_destroy,
	.compress_bound = zlib_c_bound,
	.compress = zlib_c_compress,
	.decompress = zlib_c_decompress,
	.detail = zlib_c_detail,
};

const alcm_codec_v1 *bench_zlib_codec(void)
{
	return &zlib_vt;
}
