/* Hostile archives for the tests (forge.h). */
#include "forge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static void die(const char *what)
{
	fprintf(stderr, "forge: %s\n", what);
	abort();
}

void fg_put(fg_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q)
			die("out of memory");
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

void fg_u8(fg_buf *b, unsigned v)
{
	uint8_t c = (uint8_t)v;
	fg_put(b, &c, 1);
}

void fg_u32(fg_buf *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		fg_u8(b, (v >> (8 * i)) & 0xff);
}

void fg_u64(fg_buf *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		fg_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

void fg_varint(fg_buf *b, uint64_t v)
{
	do {
		fg_u8(b, (unsigned)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

void fg_stream(fg_buf *b, const void *src, size_t n, int level)
{
	if (level > 0 && n > 0) {
		size_t cap = ZSTD_compressBound(n);
		uint8_t *z = malloc(cap);
		ZSTD_CCtx *c = ZSTD_createCCtx();
		if (!z || !c)
			die("out of memory");
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
		size_t r = ZSTD_compress2(c, z, cap, src, n);
		ZSTD_freeCCtx(c);
		if (!ZSTD_isError(r) && r < n) {
			fg_u8(b, 1);
			fg_varint(b, n);
			fg_varint(b, r);
			fg_put(b, z, r);
			free(z);
			return;
		}
		free(z);
	}
	fg_u8(b, 0);
	fg_varint(b, n);
	fg_varint(b, n);
	fg_put(b, src, n);
}

void fg_zero_stream(fg_buf *b, uint64_t n, int wlog)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	static uint8_t zero[1 << 16];
	uint8_t out[1 << 16];
	fg_buf z = {0};
	if (!c)
		die("out of memory");
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
	if (wlog)
		ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, wlog);
	ZSTD_CCtx_setPledgedSrcSize(c, n);
	for (uint64_t left = n;;) {
		size_t k = left < sizeof(zero) ? (size_t)left : sizeof(zero);
		ZSTD_inBuffer in = {zero, k, 0};
		ZSTD_EndDirective end = k == left ? ZSTD_e_end : ZSTD_e_continue;
		size_t r;
		do {
			ZSTD_outBuffer o = {out, sizeof(out), 0};
			r = ZSTD_compressStream2(c, &o, &in, end);
			if (ZSTD_isError(r))
				die(ZSTD_getErrorName(r));
			fg_put(&z, out, o.pos);
		} while (in.pos < in.size || (end == ZSTD_e_end && r != 0));
		left -= k;
		if (end == ZSTD_e_end)
			break;
	}
	ZSTD_freeCCtx(c);
	fg_u8(b, 1);
	fg_varint(b, n);
	fg_varint(b, z.len);
	fg_put(b, z.p, z.len);
	fg_free(&z);
}

void fg_zstd_stream(fg_buf *b, const void *src, size_t n)
{
	size_t cap = ZSTD_compressBound(n);
	uint8_t *z = malloc(cap);
	if (!z)
		die("out of memory");
	size_t r = ZSTD_compress(z, cap, src, n, 3);
	if (ZSTD_isError(r))
		die(ZSTD_getErrorName(r));
	fg_u8(b, 1);
	fg_varint(b, n);
	fg_varint(b, r);
	fg_put(b, z, r);
	free(z);
}

void fg_free(fg_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void fg_tdir(fg_buf *b, const fg_entry *e, size_t n)
{
	fg_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(e[i].name);
		fg_u32(b, (uint32_t)nl);
		fg_put(b, e[i].name, nl);
		fg_u8(b, (unsigned)e[i].dtype);
		fg_u8(b, (unsigned)e[i].mode);
		fg_u8(b, e[i].ndim);
		fg_u8(b, 0);
		for (uint32_t d = 0; d < e[i].ndim; d++)
			fg_u64(b, e[i].shape[d]);
		fg_u32(b, e[i].data);
		fg_u32(b, e[i].scal);
		fg_u32(b, e[i].mask);
		fg_u64(b, e[i].chunk_elems);
		fg_u64(b, e[i].chunk_count);
		fg_u64(b, 0); /* bound */
		fg_u64(b, 0); /* max_abs_error */
		fg_u64(b, 0); /* pruned */
		fg_u64(b, 0); /* escapes */
		for (uint64_t k = 0; k < 2 * e[i].chunk_count; k++)
			fg_u64(b, e[i].ctab[k]);
	}
}

static int write_all(alcm_writer *w, const fg_section *s, size_t n)
{
	int st = ALCM_OK;
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_writer_add_section(w, s[i].type, s[i].critical ? ALCM_SECTION_CRITICAL : 0,
		                             s[i].tag, s[i].p, s[i].len, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	return st;
}

uint8_t *fg_archive(const fg_section *s, size_t n, unsigned wflags, size_t *len)
{
	alcm_writer *w = NULL;
	uint8_t *out = NULL;
	const void *p;
	if (alcm_writer_open_memory(&w, wflags, NULL) == ALCM_OK && write_all(w, s, n) == ALCM_OK &&
	    alcm_writer_memory(w, &p, len) == ALCM_OK && (out = malloc(*len ? *len : 1)))
		memcpy(out, p, *len);
	alcm_writer_free(w);
	return out;
}

int fg_archive_file(const char *path, const fg_section *s, size_t n, unsigned wflags)
{
	alcm_writer *w = NULL;
	int st = alcm_writer_open_file(&w, path, wflags | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = write_all(w, s, n);
	alcm_writer_free(w);
	return st;
}

uint8_t *fg_flip(const uint8_t *buf, size_t len, uint32_t sec, uint64_t at, uint8_t x,
                 size_t *out_len)
{
	alcm_reader *r = NULL;
	if (alcm_reader_open_memory(&r, buf, len, "flip", NULL, NULL, 0) != ALCM_OK)
		die("fg_flip: the archive does not open");
	uint32_t n = alcm_reader_section_count(r);
	fg_section *s = calloc(n ? n : 1, sizeof(*s));
	alcm_section_info *si = calloc(n ? n : 1, sizeof(*si));
	uint8_t **pay = calloc(n ? n : 1, sizeof(*pay));
	if (!s || !si || !pay)
		die("out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if (alcm_reader_section_info(r, i, &si[i]) != ALCM_OK ||
		    !(pay[i] = malloc(si[i].length ? si[i].length : 1)) ||
		    alcm_reader_section_read(r, i, pay[i], si[i].length) != ALCM_OK)
			die("fg_flip: a section does not read");
		if (i == sec && at < si[i].length)
			pay[i][at] ^= x;
		s[i] = (fg_section){si[i].type, (si[i].flags & ALCM_SECTION_CRITICAL) != 0, si[i].tag,
		                    pay[i], (size_t)si[i].length};
	}
	uint8_t *out = fg_archive(s, n, 0, out_len);
	for (uint32_t i = 0; i < n; i++)
		free(pay[i]);
	free(pay);
	free(si);
	free(s);
	alcm_reader_free(r);
	return out;
}
