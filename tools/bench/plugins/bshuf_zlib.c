/* bshuf-zlib: a sample alcm-bench codec plugin (include/alcm_codec.h).
 *
 * Byte shuffle, then deflate, per tensor: byte k of every element goes to plane k (the
 * "shuffle" filter of Blosc and HDF5), so that the slowly varying sign and exponent bytes of
 * floats sit together and compress, where plain deflate (zlib-6, numpy.savez_compressed)
 * sees them interleaved with noisy mantissa bytes. Lossless. Built by the project as a
 * MODULE library (build/lib/alcm_codec_bshuf_zlib.so); outside the project:
 *
 *   cc -O2 -shared -fPIC -fvisibility=hidden -I include \
 *      -o bshuf_zlib.so tools/bench/plugins/bshuf_zlib.c -lz
 *   alcm-bench --plugin ./bshuf_zlib.so            # level 6
 *   alcm-bench --plugin ./bshuf_zlib.so,level=9    # labelled bshuf-zlib-9
 *
 * Format: for each tensor in order, one raw deflate stream (RFC 1951) of its shuffled
 * bytes. Nothing else: decompress() receives the descriptions, so each stream's decoded
 * length and element size are known. */
#include "alcm_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct state {
	z_stream def, inf;
	int def_ok, inf_ok;
	unsigned char *scratch;
	size_t scratch_cap;
	char detail[160];
} state;

static int fail(state *s, int status, const char *msg)
{
	snprintf(s->detail, sizeof(s->detail), "%s", msg);
	return status;
}

static size_t elem_size(int dtype)
{
	switch (dtype) {
	case ALCM_CODEC_DTYPE_BOOL: case ALCM_CODEC_DTYPE_U8: case ALCM_CODEC_DTYPE_I8: return 1;
	case ALCM_CODEC_DTYPE_U16: case ALCM_CODEC_DTYPE_I16: case ALCM_CODEC_DTYPE_F16:
	case ALCM_CODEC_DTYPE_BF16: return 2;
	case ALCM_CODEC_DTYPE_U32: case ALCM_CODEC_DTYPE_I32: case ALCM_CODEC_DTYPE_F32: return 4;
	case ALCM_CODEC_DTYPE_U64: case ALCM_CODEC_DTYPE_I64: case ALCM_CODEC_DTYPE_F64: return 8;
	default: return 0;
	}
}

static void bz_destroy(void *p)
{
	state *s = p;
	if (!s)
		return;
	if (s->def_ok)
		deflateEnd(&s->def);
	if (s->inf_ok)
		inflateEnd(&s->inf);
	free(s->scratch);
	free(s);
}

static int bz_create(void **out, const alcm_codec_params *p)
{
	*out = NULL;
	if (p->mode != ALCM_CODEC_MODE_EXACT)
		return ALCM_CODEC_E_UNSUPPORTED;
	int level = p->level ? p->level : 6;
	if (level < 1 || level > 9)
		return ALCM_CODEC_E_ARG;
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return ALCM_CODEC_E_NOMEM;
	s->def_ok = deflateInit2(&s->def, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
	s->inf_ok = inflateInit2(&s->inf, -15) == Z_OK;
	if (!s->def_ok || !s->inf_ok) {
		bz_destroy(s);
		return ALCM_CODEC_E_NOMEM;
	}
	*out = s;
	return ALCM_CODEC_OK;
}

static int scratch(state *s, uint64_t n)
{
	if (n <= s->scratch_cap)
		return 0;
	if (n > SIZE_MAX || n > (uint64_t)UINT32_MAX) /* one deflate call per tensor below */
		return -1;
	unsigned char *p = realloc(s->scratch, (size_t)n);
	if (!p)
		return -1;
	s->scratch = p;
	s->scratch_cap = (size_t)n;
	return 0;
}

static uint64_t bz_bound(void *p, const alcm_codec_tensor *t, size_t n)
{
	state *s = p;
	uint64_t b = 0;
	for (size_t i = 0; i < n; i++)
		b += deflateBound(&s->def, (uLong)t[i].nbytes) + 16;
	return b;
}

static int bz_compress(void *p, const alcm_codec_tensor *t, size_t n, void *out, size_t cap,
                       size_t *out_len)
{
	state *s = p;
	size_t pos = 0;
	*out_len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t es = elem_size(t[i].dtype), nb = (size_t)t[i].nbytes;
		if (!es || nb % es)
			return fail(s, ALCM_CODEC_E_UNSUPPORTED, "unknown dtype");
		if (scratch(s, nb))
			return fail(s, ALCM_CODEC_E_NOMEM, "tensor too large for one deflate call");
		const unsigned char *src = t[i].data;
		size_t ne = nb / es;
		for (size_t k = 0; k < es; k++)
			for (size_t e = 0; e < ne; e++)
				s->scratch[k * ne + e] = src[e * es + k];
		size_t room = cap - pos;
		if (room > UINT32_MAX)
			room = UINT32_MAX;
		deflateReset(&s->def);
		s->def.next_in = s->scratch;
		s->def.avail_in = (uInt)nb;
		s->def.next_out = (unsigned char *)out + pos;
		s->def.avail_out = (uInt)room;
		int r = deflate(&s->def, Z_FINISH);
		if (r != Z_STREAM_END)
			return fail(s, r == Z_OK || r == Z_BUF_ERROR ? ALCM_CODEC_E_SPACE
			                                             : ALCM_CODEC_E_INTERNAL,
			            "deflate did not finish");
		pos += room - s->def.avail_out;
	}
	*out_len = pos;
	return ALCM_CODEC_OK;
}

static int bz_decompress(void *p, const void *in, size_t len, const alcm_codec_tensor *t,
                         size_t n, void *const *dst)
{
	state *s = p;
	const unsigned char *src = in;
	size_t left = len;
	for (size_t i = 0; i < n; i++) {
		size_t es = elem_size(t[i].dtype), nb = (size_t)t[i].nbytes;
		if (!es || nb % es)
			return fail(s, ALCM_CODEC_E_UNSUPPORTED, "unknown dtype");
		if (scratch(s, nb + 1))
			return fail(s, ALCM_CODEC_E_NOMEM, "tensor too large");
		inflateReset(&s->inf);
		s->inf.next_in = (unsigned char *)(uintptr_t)src;
		s->inf.avail_in = (uInt)(left > UINT32_MAX ? UINT32_MAX : left);
		s->inf.next_out = s->scratch;
		s->inf.avail_out = (uInt)(nb + 1); /* one spare byte catches a stream too long */
		int r = inflate(&s->inf, Z_FINISH);
		if (r != Z_STREAM_END || s->inf.avail_out != 1)
			return fail(s, ALCM_CODEC_E_CORRUPT, "bad or truncated deflate stream");
		size_t used = (size_t)(s->inf.next_in - src);
		src += used;
		left -= used;
		unsigned char *o = dst[i];
		size_t ne = nb / es;
		for (size_t k = 0; k < es; k++)
			for (size_t e = 0; e < ne; e++)
				o[e * es + k] = s->scratch[k * ne + e];
	}
	if (left)
		return fail(s, ALCM_CODEC_E_CORRUPT, "trailing bytes after the last stream");
	return ALCM_CODEC_OK;
}

static const char *bz_detail(void *p)
{
	return p ? ((state *)p)->detail : "";
}

static const alcm_codec_v1 codec = {
	.abi_version = ALCM_CODEC_ABI_VERSION,
	.struct_size = sizeof(alcm_codec_v1),
	.name = "bshuf-zlib",
	.version = "1.0",
	.description = "sample plugin: byte shuffle + raw deflate per tensor",
	.caps = ALCM_CODEC_CAP_LOSSLESS | ALCM_CODEC_CAP_LEVEL,
	.create = bz_create,
	.destroy = bz_destroy,
	.compress_bound = bz_bound,
	.compress = bz_compress,
	.decompress = bz_decompress,
	.detail = bz_detail,
};

ALCM_CODEC_EXPORT const alcm_codec_v1 *alcm_codec_plugin_v1(void);
const alcm_codec_v1 *alcm_codec_plugin_v1(void)
{
	return &codec;
}
