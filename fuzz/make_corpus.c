/*
 * Writes the seed corpus of every harness: small valid files made by the library's own
 * writers, a few hand-made variants the writers never produce (Fortran order, big-endian,
 * .npy 2.0/3.0, deflated .npz members, safetensors metadata), each followed by the
 * harness's options byte. Deterministic except the FRAM timings of the stream archive.
 *
 *   alcm-fuzz-corpus OUTDIR [VECTORS_DIR]
 *
 * writes OUTDIR/<surface>/<name>; .alcm files found in VECTORS_DIR (spec/vectors) are added
 * to the container and unpack corpora. fuzz/make_corpus.sh runs it into fuzz/corpus/.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "alcm.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static const char *outdir;
static int failures;

#define DIE(...)                                                                        \
	do {                                                                            \
		fprintf(stderr, "alcm-fuzz-corpus: " __VA_ARGS__);                      \
		fputc('\n', stderr);                                                    \
		exit(1);                                                                \
	} while (0)

static void put(const char *surface, const char *name, const void *buf, size_t len, int opt)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", outdir, surface);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, surface, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		DIE("cannot create '%s': %s", path, strerror(errno));
	fwrite(buf, 1, len, f);
	if (opt >= 0)
		fputc(opt, f);
	if (fclose(f) != 0)
		DIE("cannot write '%s'", path);
	/* The file readers' seeds with the default options also go through the pieces read
	 * (fuzz_input.c, option 0x08). */
	static const char *const piece_surfaces[] = {"npy", "npz", "safetensors", "pt"};
	for (size_t i = 0; opt == 0 && i < sizeof(piece_surfaces) / sizeof(*piece_surfaces); i++)
		if (strcmp(surface, piece_surfaces[i]) == 0) {
			char pname[512];
			snprintf(pname, sizeof(pname), "%s-pieces", name);
			put(surface, pname, buf, len, 0x08);
		}
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0, got;
	uint8_t *p = malloc(cap);
	while (p && (got = fread(p + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap)
			p = realloc(p, cap *= 2);
	}
	fclose(f);
	*len = n;
	return p;
}

static uint64_t rng = 0x5eedu;
static double gauss(void)
{
	uint64_t a, b;
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	a = rng >> 11;
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	b = rng >> 11;
	double u1 = (a + 1.0) / 9007199254740993.0, u2 = b / 9007199254740992.0;
	return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- tensors ---------------------------------------------------------------------- */

typedef struct tbuf {
	alcm_tensor t;
	uint8_t data[1 << 14];
} tbuf;

static void half_store(uint8_t *p, float f, int bf16)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t h;
	if (bf16) {
		h = (uint16_t)(u >> 16);
	} else {
		/* Round toward zero; enough for seeds. */
		uint32_t s = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, m = u & 0x7fffff;
		if (e == 0xff)
			h = (uint16_t)(s | 0x7c00 | (m ? 0x200 : 0));
		else if (e > 142)
			h = (uint16_t)(s | 0x7bff);
		else if (e < 113)
			h = (uint16_t)s;
		else
			h = (uint16_t)(s | ((e - 112) << 10) | (m >> 13));
	}
	p[0] = (uint8_t)h;
	p[1] = (uint8_t)(h >> 8);
}

/* Fills a tensor of `dtype` and shape with smooth values (compressible) or noise. */
static void make(tbuf *b, const char *name, int dtype, uint32_t ndim, const uint64_t *shape,
                 int noise, int specials)
{
	memset(&b->t, 0, sizeof(b->t));
	b->t.name = name;
	b->t.name_len = strlen(name);
	b->t.dtype = dtype;
	b->t.ndim = ndim;
	uint64_t n = 1;
	for (uint32_t d = 0; d < ndim; d++)
		n *= b->t.shape[d] = shape[d];
	size_t w = alcm_dtype_size(dtype);
	if (n * w > sizeof(b->data))
		DIE("seed tensor %s too large", name);
	b->t.nbytes = n * w;
	b->t.data = b->data;
	for (uint64_t i = 0; i < n; i++) {
		double v = noise ? gauss() : round(8 * sin((double)i / 7)) / 8;
		uint8_t *p = b->data + i * w;
		switch (dtype) {
		case ALCM_DTYPE_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
		case ALCM_DTYPE_F64: memcpy(p, &v, 8); break;
		case ALCM_DTYPE_F16: half_store(p, (float)v, 0); break;
		case ALCM_DTYPE_BF16: half_store(p, (float)v, 1); break;
		case ALCM_DTYPE_BOOL: p[0] = v > 0; break;
		default: {
			int64_t k = (int64_t)(v * 20);
			memcpy(p, &k, w); /* little-endian host: the low bytes */
		}
		}
	}
	if (specials && n >= 4 && dtype == ALCM_DTYPE_F32) {
		float sp[4] = {NAN, INFINITY, -0.0f, 1e-40f};
		for (int k = 0; k < 4; k++)
			memcpy(b->data + (size_t)(k * (n / 4)) * 4, &sp[k], 4);
	}
}

/* ---- archives --------------------------------------------------------------------- */

typedef struct pack {
	int mode;
	double bound;
	unsigned bits;
	double prune;
	unsigned flags;   /* writer flags */
	int meta, attr;   /* add metadata pairs, ATTR and an unknown optional section */
	int sign;
} pack;

static uint8_t *archive(const pack *pk, tbuf *const *t, size_t n, size_t *len)
{
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.threads = 1;
	o.chunk_bytes = 4096;
	o.mode = pk->mode;
	o.bound = pk->bound;
	o.bits = pk->bits;
	o.prune = pk->prune;
	o.producer = "alcm-fuzz-corpus";
	if (alcm_writer_open_memory(&w, pk->flags, NULL) || alcm_encoder_new(&e, w, &o, NULL))
		DIE("cannot start an archive");
	for (size_t i = 0; i < n; i++)
		if (alcm_encoder_add(e, &t[i]->t, NULL))
			DIE("encode %s: %s", t[i]->t.name, alcm_encoder_detail(e));
	if (pk->meta) {
		alcm_encoder_set_meta(e, "source", "fuzz seed", 9);
		alcm_encoder_set_meta(e, "empty", "", 0);
	}
	if (pk->attr) {
		static const uint8_t attr[] = "{\"note\": \"an attribute section\"}";
		alcm_encoder_add_section(e, "ATTR", 0, attr, sizeof(attr) - 1);
		alcm_encoder_add_section(e, "XTRA", 0, "unknown but optional", 20);
	}
	if (alcm_encoder_finish(e))
		DIE("finish: %s", alcm_encoder_detail(e));
	if (pk->sign) {
		uint8_t pub[32], sk[64], seed[32];
		memset(seed, 7, sizeof(seed));
		crypto_sign_seed_keypair(pub, sk, seed);
		if (alcm_writer_sign(w, sk))
			DIE("sign");
	}
	if (alcm_writer_commit(w))
		DIE("commit: %s", alcm_writer_detail(w));
	const void *p;
	alcm_writer_memory(w, &p, len);
	uint8_t *copy = malloc(*len);
	memcpy(copy, p, *len);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	return copy;
}

static void put_archive(const char *name, const uint8_t *a, size_t len, const int *copt,
                        size_t ncopt, const int *uopt, size_t nuopt)
{
	char nm[256];
	for (size_t i = 0; i < ncopt; i++) {
		snprintf(nm, sizeof(nm), "%s-o%02x", name, copt[i]);
		put("container", nm, a, len, copt[i]);
	}
	for (size_t i = 0; i < nuopt; i++) {
		snprintf(nm, sizeof(nm), "%s-o%02x", name, uopt[i]);
		put("unpack", nm, a, len, uopt[i]);
	}
}

static void archives(void)
{
	static tbuf a, b, c, d, e, f, g;
	const int c0[] = {0x00}, u0[] = {0x00};
	const int call[] = {0x00, 0x01, 0x02, 0x0c}, uall[] = {0x00, 0x06, 0x1d};
	size_t len;
	uint8_t *p;

	/* Lossless, one tensor of each kind. */
	make(&a, "w", ALCM_DTYPE_F32, 2, (uint64_t[]){4, 8}, 1, 0);
	make(&b, "ids", ALCM_DTYPE_I32, 1, (uint64_t[]){5}, 0, 0);
	make(&c, "mask", ALCM_DTYPE_BOOL, 1, (uint64_t[]){6}, 0, 0);
	make(&d, "step", ALCM_DTYPE_I64, 0, NULL, 0, 0);
	make(&e, "h", ALCM_DTYPE_F16, 1, (uint64_t[]){10}, 1, 0);
	make(&f, "bf", ALCM_DTYPE_BF16, 2, (uint64_t[]){2, 3}, 1, 0);
	make(&g, "empty", ALCM_DTYPE_F64, 2, (uint64_t[]){3, 0}, 0, 0);
	p = archive(&(pack){0}, (tbuf *[]){&a, &b, &c, &d, &e, &f, &g}, 7, &len);
	put_archive("lossless-mixed", p, len, call, 4, uall, 3);
	free(p);

	/* Lossless transforms 4 (sparse: a third of the values zero) and 3 (palette). */
	make(&a, "grad", ALCM_DTYPE_F32, 2, (uint64_t[]){2, 512}, 1, 1);
	for (size_t i = 4; i < 1024; i++)
		if (i % 3 == 0)
			memset(a.data + 4 * i, 0, 4);
	make(&b, "pal", ALCM_DTYPE_F16, 1, (uint64_t[]){600}, 0, 0);
	p = archive(&(pack){0}, (tbuf *[]){&a, &b}, 2, &len);
	put_archive("lossless-sparse-palette", p, len, c0, 1, uall, 3);
	free(p);

	/* Lossy modes: quantized data, scales, masks and escapes. */
	make(&a, "maxerr", ALCM_DTYPE_F32, 2, (uint64_t[]){8, 32}, 1, 1);
	p = archive(&(pack){.mode = ALCM_MODE_MAX_ERROR, .bound = 0.01, .prune = 0.1},
	            (tbuf *[]){&a}, 1, &len);
	put_archive("maxerr-prune-specials", p, len, c0, 1, uall, 3);
	free(p);
	make(&a, "rel", ALCM_DTYPE_F16, 2, (uint64_t[]){8, 16}, 1, 0);
	make(&b, "ints", ALCM_DTYPE_U8, 1, (uint64_t[]){7}, 0, 0);
	p = archive(&(pack){.mode = ALCM_MODE_REL_ERROR, .bound = 0.01}, (tbuf *[]){&a, &b}, 2, &len);
	put_archive("relerr-f16-and-int", p, len, c0, 1, u0, 1);
	free(p);
	make(&a, "snr", ALCM_DTYPE_BF16, 1, (uint64_t[]){200}, 1, 0);
	p = archive(&(pack){.mode = ALCM_MODE_SNR, .bound = 30}, (tbuf *[]){&a}, 1, &len);
	put_archive("snr-bf16", p, len, c0, 1, u0, 1);
	free(p);
	make(&a, "bits", ALCM_DTYPE_F64, 3, (uint64_t[]){4, 2, 8}, 1, 0);
	p = archive(&(pack){.mode = ALCM_MODE_BITS, .bits = 6, .prune = 0.25}, (tbuf *[]){&a}, 1,
	            &len);
	put_archive("bits6-f64-prune", p, len, c0, 1, u0, 1);
	free(p);

	/* Several chunks per tensor (4 KiB chunks), lossless and lossy. */
	make(&a, "long", ALCM_DTYPE_F32, 1, (uint64_t[]){2500}, 0, 0);
	p = archive(&(pack){0}, (tbuf *[]){&a}, 1, &len);
	put_archive("multichunk-lossless", p, len, c0, 1, uall, 3);
	free(p);
	p = archive(&(pack){.mode = ALCM_MODE_MAX_ERROR, .bound = 0.001, .prune = 0.05},
	            (tbuf *[]){&a}, 1, &len);
	put_archive("multichunk-lossy", p, len, c0, 1, uall, 3);
	free(p);

	/* Modelled symbols (format 1.1, spec 6.5.6): rows of very different scales (classes on
	 * axis 0, raw bits), columns of different scales (the last axis), values on a grid
	 * coarser than the step (a palette), and a pruned one over several chunks. */
	make(&a, "rows", ALCM_DTYPE_F32, 2, (uint64_t[]){16, 64}, 1, 0);
	make(&b, "cols", ALCM_DTYPE_F32, 2, (uint64_t[]){64, 16}, 1, 1);
	make(&c, "grid", ALCM_DTYPE_F32, 2, (uint64_t[]){8, 128}, 1, 0);
	for (size_t i = 0; i < 1024; i++) {
		float x;
		memcpy(&x, a.data + 4 * i, 4);
		x *= (float)(1 << (i / 64 % 12)) / 64;
		memcpy(a.data + 4 * i, &x, 4);
		if (i % 64 == 0)
			continue; /* keeps b's specials */
		memcpy(&x, b.data + 4 * i, 4);
		x *= (float)(1 << (i % 16 % 10)) / 16;
		memcpy(b.data + 4 * i, &x, 4);
		memcpy(&x, c.data + 4 * i, 4);
		x = (float)(0.03 * round(x * 30));
		memcpy(c.data + 4 * i, &x, 4);
	}
	p = archive(&(pack){.mode = ALCM_MODE_MAX_ERROR, .bound = 0.004}, (tbuf *[]){&a, &b, &c}, 3,
	            &len);
	put_archive("modelled-rows-cols-grid", p, len, c0, 1, uall, 3);
	free(p);
	make(&a, "pruned", ALCM_DTYPE_F32, 2, (uint64_t[]){40, 60}, 1, 1);
	p = archive(&(pack){.mode = ALCM_MODE_MAX_ERROR, .bound = 0.002, .prune = 0.2},
	            (tbuf *[]){&a}, 1, &len);
	put_archive("modelled-pruned-multichunk", p, len, c0, 1, uall, 3);
	free(p);
	/* Values on a lattice (spacing 0.03, origin 0.011) at a bound of 0.02: two lattice
	 * points a cell, chunk coding 17 with its offset (spec 6.5.11). */
	make(&a, "lattice", ALCM_DTYPE_F32, 2, (uint64_t[]){8, 128}, 1, 0);
	for (size_t i = 0; i < 1024; i++) {
		float x;
		memcpy(&x, a.data + 4 * i, 4);
		if (!isfinite(x))
			continue; /* specials stay, escaped */
		x = (float)(0.03 * round(x * 30) + 0.011);
		memcpy(a.data + 4 * i, &x, 4);
	}
	p = archive(&(pack){.mode = ALCM_MODE_MAX_ERROR, .bound = 0.02}, (tbuf *[]){&a}, 1, &len);
	put_archive("modelled-lattice", p, len, c0, 1, uall, 3);
	free(p);

	/* Metadata, ATTR, an unknown optional section, a signature, no tensors. */
	make(&a, "x", ALCM_DTYPE_I16, 1, (uint64_t[]){4}, 0, 0);
	p = archive(&(pack){.meta = 1, .attr = 1, .sign = 1}, (tbuf *[]){&a}, 1, &len);
	put_archive("meta-attr-signed", p, len, call, 4, u0, 1);
	free(p);
	p = archive(&(pack){0}, NULL, 0, &len);
	put_archive("no-tensors", p, len, c0, 1, u0, 1);
	free(p);

	/* A stream archive: two frames in one writer, then a raw container with no sections. */
	alcm_writer *w = NULL;
	alcm_stream *s = NULL;
	alcm_stream_options so;
	alcm_stream_options_default(&so);
	so.pack.mode = ALCM_MODE_MAX_ERROR;
	so.pack.bound = 0.01;
	so.pack.threads = 1;
	so.pack.chunk_bytes = 4096;
	so.error_feedback = 1;
	make(&a, "grad", ALCM_DTYPE_F32, 2, (uint64_t[]){4, 16}, 1, 0);
	if (alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL) || alcm_stream_new(&s, &so, NULL))
		DIE("stream");
	for (int fr = 0; fr < 2; fr++)
		if (alcm_stream_encode(s, w, &a.t, 1, NULL))
			DIE("stream frame %d: %s", fr, alcm_stream_detail(s));
	if (alcm_writer_commit(w))
		DIE("stream commit");
	const void *mp;
	alcm_writer_memory(w, &mp, &len);
	put_archive("stream-2frames", mp, len, call, 4, uall, 3);
	alcm_writer_free(w);
	alcm_stream_free(s);

	if (alcm_writer_open_memory(&w, 0, NULL) ||
	    alcm_writer_add_section(w, "XTRA", 0, 9, "payload", 7, NULL) ||
	    alcm_writer_add_section(w, "META", 0, 0, "\0\0\0\0", 4, NULL) || alcm_writer_commit(w))
		DIE("raw container");
	alcm_writer_memory(w, &mp, &len);
	put_archive("raw-sections", mp, len, call, 4, u0, 1);
	alcm_writer_free(w);
	if (alcm_writer_open_memory(&w, 0, NULL) || alcm_writer_commit(w))
		DIE("empty container");
	alcm_writer_memory(w, &mp, &len);
	put_archive("empty-container", mp, len, c0, 1, u0, 1);

	/* The damage a transfer does to the signature, which the reader names (raw: digests
	 * left alone). */
	uint8_t dmg[512];
	const int raw[] = {0x01};
	memcpy(dmg, mp, len);
	dmg[0] = 0x09; /* bit 7 stripped */
	put_archive("sig-7bit", dmg, len, raw, 1, NULL, 0);
	memcpy(dmg, mp, 5); /* CR LF -> LF */
	memcpy(dmg + 5, (const uint8_t *)mp + 6, len - 6);
	put_archive("sig-crlf-to-lf", dmg, len - 1, raw, 1, NULL, 0);
	memcpy(dmg, mp, 6); /* LF -> CR LF, at offset 6 */
	dmg[6] = 0x0d;
	memcpy(dmg + 7, (const uint8_t *)mp + 6, len - 6);
	put_archive("sig-lf-to-crlf", dmg, len + 1, raw, 1, NULL, 0);
	memcpy(dmg, mp, 8); /* LF -> CR LF, at offset 8 */
	dmg[8] = 0x0d;
	memcpy(dmg + 9, (const uint8_t *)mp + 8, len - 8);
	put_archive("sig-lf-to-crlf-end", dmg, len + 1, raw, 1, NULL, 0);
	put_archive("sig-truncated", mp, 5, raw, 1, NULL, 0);
	put_archive("empty-file", mp, 0, raw, 1, NULL, 0);
	put_archive("short-garbage", (const uint8_t *)"xyz", 3, raw, 1, NULL, 0);
	put_archive("sig-tab-not-alcm", (const uint8_t *)"\x09XLCM\r\n\x1a\n\x01\0\0\0\0\0\0", 16,
	            raw, 1, NULL, 0);
	alcm_writer_free(w);
}

/* ---- hostile archives ------------------------------------------------------------- */

/* Archives a writer never makes, with matching digests (written through alcm_writer), at
 * each class of declared length the decoder bounds (spec 6.3.2, 6.3.3, 6.5.4): the seeds
 * put the fuzzers next to each limit. */
typedef struct hb {
	uint8_t p[1 << 15];
	size_t n;
} hb;

static void hb_put(hb *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->p))
		DIE("hostile seed too large");
	memcpy(b->p + b->n, p, n);
	b->n += n;
}
static void hb_u8(hb *b, unsigned v)
{
	uint8_t c = (uint8_t)v;
	hb_put(b, &c, 1);
}
static void hb_le(hb *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		hb_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}
static void hb_varint(hb *b, uint64_t v)
{
	do {
		hb_u8(b, (unsigned)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v);
}
/* A coded stream of n bytes of `fill`: raw, or zstd with window log wlog (0: raw). */
static void hb_stream(hb *b, uint64_t n, uint8_t fill, int wlog)
{
	if (!wlog) {
		hb_u8(b, 0);
		hb_varint(b, n);
		hb_varint(b, n);
		for (uint64_t i = 0; i < n; i++)
			hb_u8(b, fill);
		return;
	}
	uint8_t *src = malloc(n ? n : 1), z[1 << 14];
	memset(src, fill, n);
	ZSTD_CCtx *c = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, wlog);
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
	size_t r = ZSTD_compress2(c, z, sizeof(z), src, n);
	ZSTD_freeCCtx(c);
	free(src);
	if (ZSTD_isError(r))
		DIE("zstd: %s", ZSTD_getErrorName(r));
	hb_u8(b, 1);
	hb_varint(b, n);
	hb_varint(b, r);
	hb_put(b, z, r);
}
/* One directory entry (spec 6.3) with `nchunks` chunk lengths from ctab. */
static void hb_entry(hb *d, const char *name, int dtype, int mode, uint32_t ndim,
                     const uint64_t *shape, uint32_t data, uint32_t scal, uint64_t ce,
                     uint64_t nchunks, const uint64_t *ctab)
{
	hb_le(d, strlen(name), 4);
	hb_put(d, name, strlen(name));
	hb_u8(d, (unsigned)dtype);
	hb_u8(d, (unsigned)mode);
	hb_u8(d, ndim);
	hb_u8(d, 0);
	for (uint32_t i = 0; i < ndim; i++)
		hb_le(d, shape[i], 8);
	hb_le(d, data, 4);
	hb_le(d, scal, 4);
	hb_le(d, 0xffffffffu, 4);
	hb_le(d, ce, 8);
	hb_le(d, nchunks, 8);
	for (int i = 0; i < 4; i++)
		hb_le(d, 0, 8);
	for (uint64_t k = 0; k < 2 * nchunks; k++)
		hb_le(d, ctab[k], 8);
}
/* An archive of `data` (LDAT or QDAT), a SCAL of one step when `scal`, and the directory. */
static void hb_archive(const char *name, const char *dtype_sec, const hb *data, int scal,
                       const hb *dir, uint32_t ntensors)
{
	alcm_writer *w = NULL;
	uint8_t count[4] = {(uint8_t)ntensors, 0, 0, 0}, step[8];
	double one = 1e-3;
	memcpy(step, &one, 8);
	hb full = {{0}, 0};
	hb_put(&full, count, 4);
	hb_put(&full, dir->p, dir->n);
	int st = alcm_writer_open_memory(&w, 0, NULL);
	if (!st)
		st = alcm_writer_add_section(w, dtype_sec, 1, 0, data->p, data->n, NULL);
	if (!st && scal)
		st = alcm_writer_add_section(w, "SCAL", 1, 0, step, 8, NULL);
	if (!st)
		st = alcm_writer_add_section(w, "TDIR", 1, 0, full.p, full.n, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (st)
		DIE("hostile seed %s: %s", name, alcm_writer_detail(w));
	const void *p;
	size_t len;
	alcm_writer_memory(w, &p, &len);
	const int uo[] = {0x00, 0x06};
	put_archive(name, p, len, NULL, 0, uo, 2);
	alcm_writer_free(w);
}

static void hostile_archives(void)
{
	static tbuf a, b;
	size_t len;
	uint8_t *p;
	const int uo[] = {0x00, 0x06, 0x1d};
	/* Zero-element tensors of huge dimensions, asked for lossy: stored lossless. */
	make(&a, "huge0", ALCM_DTYPE_F32, 2, (uint64_t[]){((uint64_t)1 << 61) + 5, 0}, 0, 0);
	make(&b, "huge63", ALCM_DTYPE_F16, 3, (uint64_t[]){(uint64_t)1 << 63, 0, 7}, 0, 0);
	p = archive(&(pack){.mode = ALCM_MODE_REL_ERROR, .bound = 0.01}, (tbuf *[]){&a, &b}, 2,
	            &len);
	put_archive("zero-elements-huge", p, len, NULL, 0, uo, 3);
	free(p);
	/* Every value escaped (NaN payloads): escape blocks at their largest. */
	make(&a, "nan", ALCM_DTYPE_F32, 2, (uint64_t[]){4, 256}, 0, 0);
	for (uint32_t i = 0; i < 1024; i++) {
		uint32_t u = 0x7fc00000u | (i * 2654435761u >> 12);
		memcpy(a.data + 4 * i, &u, 4);
	}
	p = archive(&(pack){.mode = ALCM_MODE_MAX_ERROR, .bound = 0.01}, (tbuf *[]){&a}, 1, &len);
	put_archive("escape-every-value", p, len, NULL, 0, uo, 3);
	free(p);

	hb data = {{0}, 0}, dir = {{0}, 0};
	uint64_t ctab[2];
	/* A rel-error tensor of shape [2^61 + 1, 0]: SCAL's 8 * shape[0] wraps to 8. */
	hb_entry(&dir, "w", ALCM_DTYPE_F32, ALCM_MODE_REL_ERROR, 2,
	         (uint64_t[]){((uint64_t)1 << 61) + 1, 0}, 0, 1, 1024, 0, NULL);
	hb_archive("hostile-zero-lossy", "QDAT", &data, 1, &dir, 1);
	/* Escape blocks: one byte past 10 + n + 4 nsym, exactly at it, and a zstd block with a
	 * count of 0 and bytes after it (refused once the count is read). */
	const uint64_t n = 64;
	const struct {
		const char *name;
		uint64_t len;
		int wlog;
	} esc[] = {{"hostile-escape-over", 10 + n + 4 * n + 1, 0},
	           {"hostile-escape-at", 10 + n + 4 * n, 0},
	           {"hostile-escape-zstd", 10 + n + 4 * n, 17}};
	for (size_t k = 0; k < 3; k++) {
		data.n = dir.n = 0;
		hb_u8(&data, 1);
		hb_varint(&data, n);
		hb_stream(&data, n, 0, 0);
		hb_varint(&data, esc[k].len);
		hb_stream(&data, esc[k].len, 0, esc[k].wlog);
		ctab[0] = data.n, ctab[1] = 0;
		hb_entry(&dir, "e", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 1, (uint64_t[]){n}, 0, 1, n, 1,
		         ctab);
		hb_archive(esc[k].name, "QDAT", &data, 1, &dir, 1);
	}
	/* A lossless chunk one byte past n (w + 1) + 256 (spec 6.3.3). */
	data.n = dir.n = 0;
	hb_u8(&data, 0);
	hb_stream(&data, 16 * 4, 0, 0);
	while (data.n < 16 * 5 + 257)
		hb_u8(&data, 0);
	ctab[0] = data.n, ctab[1] = 0;
	hb_entry(&dir, "c", ALCM_DTYPE_F32, 0, 1, (uint64_t[]){16}, 0, 0xffffffffu, 16, 1, ctab);
	hb_archive("hostile-chunk-over", "LDAT", &data, 0, &dir, 1);
	/* One zstd frame whose window (2^21) passes the fuzzers' limit (2^20). */
	data.n = dir.n = 0;
	hb_u8(&data, 0);
	hb_stream(&data, ((uint64_t)1 << 20) + 1, 0, 21);
	ctab[0] = data.n, ctab[1] = 0;
	hb_entry(&dir, "win", ALCM_DTYPE_U8, 0, 1, (uint64_t[]){((uint64_t)1 << 20) + 1}, 0,
	         0xffffffffu, ((uint64_t)1 << 20) + 1, 1, ctab);
	hb_archive("hostile-window", "LDAT", &data, 0, &dir, 1);
	/* Two tensors named alike. */
	data.n = dir.n = 0;
	hb_entry(&dir, "a", ALCM_DTYPE_U8, 0, 1, (uint64_t[]){0}, 0, 0xffffffffu, 16, 0, NULL);
	hb_entry(&dir, "a", ALCM_DTYPE_U8, 0, 1, (uint64_t[]){0}, 0, 0xffffffffu, 16, 0, NULL);
	hb_archive("hostile-duplicate-names", "LDAT", &data, 0, &dir, 2);
}

/* ---- checkpoint series (spec 6.12) ------------------------------------------------ */

/* Frame k of a series in the file `path` (new when k is 0), of the tensors t[0..n). */
static void series_frame(const char *path, int k, tbuf *const *t, size_t n,
                         const alcm_series_options *o, const uint8_t *base, size_t blen)
{
	alcm_writer *w = NULL;
	alcm_reader *r = NULL, *b = NULL;
	alcm_series *s = NULL;
	int st = k == 0 ? alcm_writer_open_file(&w, path, ALCM_WRITE_OVERWRITE | ALCM_WRITE_STREAM |
	                                                      ALCM_WRITE_NO_SYNC, NULL)
	                : alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC);
	if (!st && k)
		st = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	if (!st && base)
		st = alcm_reader_open_memory(&b, base, blen, "base", NULL, NULL, 0);
	if (!st)
		st = alcm_series_begin(&s, w, r, b, o, NULL);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_series_add(s, &t[i]->t, NULL);
	if (!st)
		st = alcm_series_finish(s, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (st)
		DIE("series frame %d: %s", k, s ? alcm_series_detail(s) : alcm_writer_detail(w));
	alcm_series_free(s);
	alcm_writer_free(w);
	alcm_reader_free(r);
	alcm_reader_free(b);
}

/* Moves every third value of a float32 tensor by a few units in the last place. */
static void drift(tbuf *t, int k)
{
	for (size_t i = 0; i < t->t.nbytes / 4; i += 3) {
		uint32_t u;
		memcpy(&u, t->data + 4 * i, 4);
		u += (uint32_t)(k * 37 + (int)i) % 200;
		memcpy(t->data + 4 * i, &u, 4);
	}
}

/* Unpack seeds (options: last frame; every frame; every frame with 2 threads; every frame
 * with the archive given as its own base): series of four frames against the keyframe, the
 * frame before and in a tree, lossless and max-error, tensors changing shape, and a frame
 * coded against a base archive the harness does not have. */
static void series_seeds(void)
{
	static tbuf a, b, c, base_t;
	const int uopt[] = {0x00, 0x08, 0x0c, 0x28};
	char path[4096];
	snprintf(path, sizeof(path), "%s/.series-seed.alcm", outdir);
	static const struct {
		const char *name;
		int reference, mode;
		uint32_t every;
	} runs[] = {
		{"series-keyframe", ALCM_SERIES_REF_ANCHOR, ALCM_MODE_LOSSLESS, 0},
		{"series-previous", ALCM_SERIES_REF_PREVIOUS, ALCM_MODE_LOSSLESS, 2},
		{"series-tree-maxerr", ALCM_SERIES_REF_TREE, ALCM_MODE_MAX_ERROR, 0},
	};
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		alcm_series_options o;
		alcm_series_options_default(&o);
		o.pack.threads = 1;
		o.pack.chunk_bytes = 4096;
		o.pack.mode = runs[r].mode;
		o.pack.bound = 1e-3;
		o.reference = runs[r].reference;
		o.keyframe_every = runs[r].every;
		make(&a, "w", ALCM_DTYPE_F32, 2, (uint64_t[]){8, 160}, 1, 1);
		make(&b, "h", ALCM_DTYPE_BF16, 1, (uint64_t[]){64}, 1, 0);
		make(&c, "n", ALCM_DTYPE_I32, 1, (uint64_t[]){12}, 0, 0);
		for (int k = 0; k < 4; k++) {
			drift(&a, k);
			if (k == 2) /* a tensor that changes shape is stored whole */
				make(&b, "h", ALCM_DTYPE_BF16, 2, (uint64_t[]){4, 8}, 1, 0);
			series_frame(path, k, (tbuf *[]){&a, &b, &c}, 3, &o, NULL, 0);
		}
		size_t len;
		uint8_t *p = slurp(path, &len);
		if (!p)
			DIE("cannot read the series seed");
		put_archive(runs[r].name, p, len, (const int[]){0x00}, 1, uopt, 4);
		free(p);
	}
	/* A fine-tune against a base archive (the base itself is not in the seed). */
	make(&base_t, "w", ALCM_DTYPE_F32, 2, (uint64_t[]){8, 160}, 1, 1);
	size_t blen;
	uint8_t *bp = archive(&(pack){0}, (tbuf *[]){&base_t}, 1, &blen);
	drift(&base_t, 1);
	alcm_series_options o;
	alcm_series_options_default(&o);
	o.pack.threads = 1;
	o.base_name = "base.alcm";
	series_frame(path, 0, (tbuf *[]){&base_t}, 1, &o, bp, blen);
	size_t len;
	uint8_t *p = slurp(path, &len);
	if (!p)
		DIE("cannot read the series seed");
	put_archive("series-against-base", p, len, (const int[]){0x00}, 1, uopt, 4);
	free(p);
	free(bp);
	unlink(path);
}

/* ---- tensor files ----------------------------------------------------------------- */

/* META records handed to the next tensor_file() (key, value, value length). */
static const struct seed_meta {
	const char *key;
	const void *val;
	size_t len;
} *seed_meta;
static size_t seed_nmeta;

/* Writes tensors with alcm_output into a temporary file and returns its bytes. */
static uint8_t *tensor_file(int format, tbuf *const *t, size_t n, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/.seed.%s", outdir, alcm_format_name(format));
	alcm_output *o = NULL;
	alcm_tensor plan[16];
	for (size_t i = 0; i < n; i++)
		plan[i] = t[i]->t;
	int st = alcm_output_open(&o, path, format, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL);
	for (size_t i = 0; i < seed_nmeta && !st; i++)
		st = alcm_output_set_meta(o, seed_meta[i].key, seed_meta[i].val, seed_meta[i].len);
	seed_nmeta = 0;
	if (!st)
		st = alcm_output_plan(o, plan, n);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_output_write(o, &t[i]->t);
	if (!st)
		st = alcm_output_commit(o);
	if (st)
		DIE("cannot write a %s seed: %s", alcm_format_name(format), alcm_output_detail(o));
	alcm_output_free(o);
	uint8_t *p = slurp(path, len);
	unlink(path);
	if (!p)
		DIE("cannot read back %s", path);
	return p;
}

/* A .npy file with a hand-written header dict (version 1, 2 or 3). */
static size_t npy_raw(uint8_t *out, int version, const char *dict, const void *data, size_t n)
{
	size_t pre = version == 1 ? 10 : 12, dl = strlen(dict);
	size_t hl = (pre + dl + 1 + 63) / 64 * 64 - pre;
	memcpy(out, "\x93NUMPY", 6);
	out[6] = (uint8_t)version;
	out[7] = 0;
	if (version == 1) {
		out[8] = (uint8_t)hl;
		out[9] = (uint8_t)(hl >> 8);
	} else {
		for (int i = 0; i < 4; i++)
			out[8 + i] = (uint8_t)(hl >> (8 * i));
	}
	memcpy(out + pre, dict, dl);
	memset(out + pre + dl, ' ', hl - dl - 1);
	out[pre + hl - 1] = '\n';
	memcpy(out + pre + hl, data, n);
	return pre + hl + n;
}

static void npy_seeds(void)
{
	static tbuf t;
	size_t len;
	uint8_t *p;
	struct { const char *name; int dtype; uint32_t ndim; uint64_t shape[3]; } v[] = {
		{"f32-2x3", ALCM_DTYPE_F32, 2, {2, 3}}, {"f64-scalar", ALCM_DTYPE_F64, 0, {0}},
		{"bool-4", ALCM_DTYPE_BOOL, 1, {4}},     {"i8-empty", ALCM_DTYPE_I8, 1, {0}},
		{"u16-3x1x2", ALCM_DTYPE_U16, 3, {3, 1, 2}}, {"f16-5", ALCM_DTYPE_F16, 1, {5}},
		{"i64-2", ALCM_DTYPE_I64, 1, {2}},       {"u32-2x2", ALCM_DTYPE_U32, 2, {2, 2}},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		make(&t, "x", v[i].dtype, v[i].ndim, v[i].shape, 1, 0);
		p = tensor_file(ALCM_FILE_NPY, (tbuf *[]){&t}, 1, &len);
		put("npy", v[i].name, p, len, 0);
		if (i == 0) {
			put("npy", "f32-2x3-defaults", p, len, 1);
			put("npy", "f32-2x3-detect-file", p, len, 6);
		}
		free(p);
	}
	uint8_t buf[512];
	const float f6[6] = {1, 2, 3, 4, 5, 6};
	const uint8_t be[12] = {0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xfd};
	len = npy_raw(buf, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f6, 24);
	put("npy", "fortran-f32", buf, len, 0);
	len = npy_raw(buf, 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }", be, 12);
	put("npy", "bigendian-i4", buf, len, 0);
	len = npy_raw(buf, 2, "{'shape': (6,), 'descr': '<f4', 'fortran_order': False}", f6, 24);
	put("npy", "v2-keys-reordered", buf, len, 0);
	len = npy_raw(buf, 3, "{\"descr\": \"|b1\", \"fortran_order\": False, \"shape\": (2,)}",
	              "\1\0", 2);
	put("npy", "v3-bool", buf, len, 0);
	len = npy_raw(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': ()}", f6, 8);
	put("npy", "scalar-f8", buf, len, 0);
}

/* Appends a little-endian number to a byte buffer. */
static void le(uint8_t **p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		*(*p)++ = (uint8_t)(v >> (8 * i));
}

/* A zip of .npy members, deflated (method 8) or stored, without zip64 fields. */
static size_t zip_build(uint8_t *out, const char *const *names, const uint8_t *const *data,
                        const size_t *lens, size_t n, int deflated)
{
	uint8_t *p = out, cd[2048], *q = cd;
	for (size_t i = 0; i < n; i++) {
		uint8_t comp[4096];
		size_t clen = lens[i];
		if (deflated) {
			z_stream z;
			memset(&z, 0, sizeof(z));
			deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
			z.next_in = (Bytef *)data[i];
			z.avail_in = (uInt)lens[i];
			z.next_out = comp;
			z.avail_out = sizeof(comp);
			deflate(&z, Z_FINISH);
			clen = z.total_out;
			deflateEnd(&z);
		} else {
			memcpy(comp, data[i], lens[i]);
		}
		uint32_t crc = (uint32_t)crc32(0, data[i], (uInt)lens[i]);
		size_t nl = strlen(names[i]);
		uint64_t off = (uint64_t)(p - out);
		le(&p, 0x04034b50, 4); le(&p, 20, 2); le(&p, 0, 2); le(&p, deflated ? 8 : 0, 2);
		le(&p, 0, 2); le(&p, 0x21, 2); le(&p, crc, 4); le(&p, clen, 4); le(&p, lens[i], 4);
		le(&p, nl, 2); le(&p, 0, 2);
		memcpy(p, names[i], nl); p += nl;
		memcpy(p, comp, clen); p += clen;
		le(&q, 0x02014b50, 4); le(&q, 20, 2); le(&q, 20, 2); le(&q, 0, 2);
		le(&q, deflated ? 8 : 0, 2); le(&q, 0, 2); le(&q, 0x21, 2); le(&q, crc, 4);
		le(&q, clen, 4); le(&q, lens[i], 4); le(&q, nl, 2); le(&q, 0, 2); le(&q, 0, 2);
		le(&q, 0, 2); le(&q, 0, 2); le(&q, 0, 4); le(&q, off, 4);
		memcpy(q, names[i], nl); q += nl;
	}
	uint64_t cdoff = (uint64_t)(p - out), cdlen = (uint64_t)(q - cd);
	memcpy(p, cd, cdlen);
	p += cdlen;
	le(&p, 0x06054b50, 4); le(&p, 0, 2); le(&p, 0, 2); le(&p, n, 2); le(&p, n, 2);
	le(&p, cdlen, 4); le(&p, cdoff, 4); le(&p, 0, 2);
	return (size_t)(p - out);
}

static void npz_seeds(void)
{
	static tbuf a, b, c;
	size_t len;
	make(&a, "a", ALCM_DTYPE_F32, 2, (uint64_t[]){2, 3}, 1, 0);
	make(&b, "b", ALCM_DTYPE_I32, 1, (uint64_t[]){4}, 0, 0);
	make(&c, "c", ALCM_DTYPE_BOOL, 0, NULL, 0, 0);
	uint8_t *p = tensor_file(ALCM_FILE_NPZ, (tbuf *[]){&a, &b, &c}, 3, &len);
	put("npz", "savez-3", p, len, 0);
	put("npz", "savez-3-defaults", p, len, 1);
	put("npz", "savez-3-detect-file", p, len, 6);
	free(p);
	p = tensor_file(ALCM_FILE_NPZ, NULL, 0, &len);
	put("npz", "savez-empty", p, len, 0);
	free(p);

	uint8_t m1[512], m2[512], zip[4096];
	const double d4[4] = {0.5, -1, 2, 1e300};
	const int16_t s3[3] = {1, -2, 300};
	size_t l1 = npy_raw(m1, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
	                    d4, sizeof(d4));
	size_t l2 = npy_raw(m2, 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (3,), }", s3,
	                    sizeof(s3));
	const char *names[2] = {"d.npy", "sub/s.npy"};
	const uint8_t *data[2] = {m1, m2};
	size_t lens[2] = {l1, l2};
	len = zip_build(zip, names, data, lens, 2, 1);
	put("npz", "deflated-2", zip, len, 0);
	len = zip_build(zip, names, data, lens, 2, 0);
	put("npz", "stored-plain-zip", zip, len, 0);
}

static void st_raw(const char *name, const char *json, const void *data, size_t n)
{
	uint8_t buf[2048];
	size_t jl = strlen(json), pad = (8 - jl % 8) % 8;
	uint64_t hl = jl + pad;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(hl >> (8 * i));
	memcpy(buf + 8, json, jl);
	memset(buf + 8 + jl, ' ', pad);
	memcpy(buf + 8 + hl, data, n);
	put("safetensors", name, buf, 8 + hl + n, 0);
}

static void safetensors_seeds(void)
{
	static tbuf t[7];
	size_t len;
	make(&t[0], "f32", ALCM_DTYPE_F32, 2, (uint64_t[]){2, 3}, 1, 0);
	make(&t[1], "bf16", ALCM_DTYPE_BF16, 1, (uint64_t[]){4}, 1, 0);
	make(&t[2], "i64", ALCM_DTYPE_I64, 0, NULL, 0, 0);
	make(&t[3], "u8", ALCM_DTYPE_U8, 1, (uint64_t[]){3}, 0, 0);
	make(&t[4], "bool", ALCM_DTYPE_BOOL, 1, (uint64_t[]){2}, 0, 0);
	make(&t[5], "f16", ALCM_DTYPE_F16, 2, (uint64_t[]){1, 2}, 1, 0);
	make(&t[6], "f64.empty", ALCM_DTYPE_F64, 1, (uint64_t[]){0}, 0, 0);
	uint8_t *p = tensor_file(ALCM_FILE_SAFETENSORS,
	                         (tbuf *[]){&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6]}, 7,
	                         &len);
	put("safetensors", "mixed-7", p, len, 0);
	put("safetensors", "mixed-7-defaults", p, len, 1);
	put("safetensors", "mixed-7-detect-file", p, len, 6);
	free(p);
	const uint8_t data[16] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 1, 2, 3, 4, 5, 6, 7, 8};
	st_raw("metadata", "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\\u00e9\"},"
	       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	       "\"b\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[8,12]},"
	       "\"c\":{\"dtype\":\"U16\",\"shape\":[2,1],\"data_offsets\":[12,16]}}", data, 16);
	st_raw("empty", "{}", NULL, 0);
	st_raw("escaped-name", "{\"n\\u0000\\\"\\\\\\/\\b\\f\\n\\r\\t\\ud83d\\ude00\":"
	       "{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]},\"__metadata__\":null}",
	       data, 8);
}

/* ---- round trip ------------------------------------------------------------------- */

static void roundtrip_seeds(void)
{
	/* Header bytes: dtype index, mode|prune|second|level, rank|rows, bound, name length. */
	static const char *mode_names[5] = {"lossless", "maxerr", "relerr", "snr", "bits"};
	static const char *dt_names[4] = {"f32", "f16", "bf16", "f64"};
	const uint8_t bounds[5] = {0, 30, 6, 40, 4};
	uint8_t buf[8192];
	char name[64];
	for (int dt = 0; dt < 4; dt++) {
		for (int mode = 0; mode < 5; mode++) {
			size_t w = dt == 0 ? 4 : dt == 3 ? 8 : 2, n = 96;
			buf[0] = (uint8_t)dt;
			buf[1] = (uint8_t)(mode | (mode ? (1 << 3) : 0) | ((mode == 2) << 5));
			buf[2] = (uint8_t)(2 | (3 << 2)); /* rank 2, 4 rows */
			buf[3] = bounds[mode];
			buf[4] = 1;
			buf[5] = 't';
			tbuf t;
			int dtype = dt == 0 ? ALCM_DTYPE_F32 : dt == 1 ? ALCM_DTYPE_F16
			          : dt == 2 ? ALCM_DTYPE_BF16 : ALCM_DTYPE_F64;
			make(&t, "t", dtype, 1, (uint64_t[]){n}, 1, mode == 1);
			memcpy(buf + 6, t.data, n * w);
			snprintf(name, sizeof(name), "%s-%s", dt_names[dt], mode_names[mode]);
			put("roundtrip", name, buf, 6 + n * w, -1);
		}
	}
	for (int dt = 7; dt < 16; dt++) {
		buf[0] = (uint8_t)dt;
		buf[1] = 1; /* lossy request on an integer: stored losslessly */
		buf[2] = 1;
		buf[3] = 20;
		buf[4] = 0;
		for (int i = 0; i < 64; i++)
			buf[5 + i] = (uint8_t)(i * 37 + dt);
		snprintf(name, sizeof(name), "int-%d", dt);
		put("roundtrip", name, buf, 5 + 64, -1);
	}
	/* Also coded as a series delta against a perturbed base (byte 0 bit 4; bit 5: the
	 * base's tensor has another shape). */
	static const struct {
		const char *name;
		uint8_t dt, mode, bound, rank;
	} ser[] = {
		{"series-f32-lossless", 0x10, 0, 0, 0x02},
		{"series-f32-maxerr", 0x10, 1, 30, 0x0e},
		{"series-bf16-relerr", 0x12, 2, 6, 0x01},
		{"series-f16-lossless-reshape", 0x31, 0, 0, 0x01},
		{"series-f64-maxerr", 0x13, 1, 20, 0x02},
		{"series-int", 0x1d, 0, 0, 0x01},
	};
	for (size_t i = 0; i < sizeof(ser) / sizeof(ser[0]); i++) {
		tbuf t;
		unsigned dt = ser[i].dt & 15;
		int dtype = dt == 0 ? ALCM_DTYPE_F32 : dt == 1 ? ALCM_DTYPE_F16
		          : dt == 2 ? ALCM_DTYPE_BF16 : dt == 3 ? ALCM_DTYPE_F64 : ALCM_DTYPE_I32;
		size_t w = alcm_dtype_size(dtype), n = 96;
		make(&t, "t", dtype, 1, (uint64_t[]){n}, 1, dt == 0);
		buf[0] = ser[i].dt;
		buf[1] = ser[i].mode;
		buf[2] = ser[i].rank;
		buf[3] = ser[i].bound;
		buf[4] = 1;
		buf[5] = 't';
		memcpy(buf + 6, t.data, n * w);
		put("roundtrip", ser[i].name, buf, 6 + n * w, -1);
	}
	/* Several 4 KiB chunks, and a scalar. */
	tbuf t;
	make(&t, "t", ALCM_DTYPE_F32, 1, (uint64_t[]){1500}, 1, 1);
	memcpy(buf, "\x00\x01\x01\x1e\x00", 5);
	memcpy(buf + 5, t.data, 6000);
	put("roundtrip", "f32-maxerr-multichunk", buf, 5 + 6000, -1);
	/* Rows of different scales, 16 rows: the modelled coding's classes (format 1.1). */
	for (size_t i = 0; i < 1500; i++) {
		float x;
		memcpy(&x, t.data + 4 * i, 4);
		x *= (float)(1 << (i * 16 / 1500 % 9)) / 8;
		memcpy(t.data + 4 * i, &x, 4);
	}
	memcpy(buf, "\x00\x01\x3e\x1c\x00", 5);
	memcpy(buf + 5, t.data, 6000);
	put("roundtrip", "f32-maxerr-rows-modelled", buf, 5 + 6000, -1);
	memcpy(buf, "\x03\x00\x00\x00\x03" "abc", 8);
	memcpy(buf + 8, t.data, 8);
	put("roundtrip", "f64-scalar", buf, 16, -1);
	/* No elements, huge dimensions (header byte 2, bits 6-7), in each lossy mode. */
	for (int k = 1; k <= 3; k++)
		for (int mode = 1; mode < 5; mode++) {
			memcpy(buf, "\x00\x00\x00\x06\x01z", 6);
			buf[1] = (uint8_t)(mode | (1 << 3));
			buf[2] = (uint8_t)(2 | (3 << 2) | (k << 6));
			snprintf(name, sizeof(name), "zero-elements-%d-%s", k, mode_names[mode]);
			put("roundtrip", name, buf, 6 + 64, -1);
		}
	/* Every value escaped: NaN payloads in float32, subnormals in float64. */
	for (int i = 0; i < 512; i++) {
		uint32_t u = 0x7fc00000u | (uint32_t)i;
		memcpy(buf + 5 + 4 * i, &u, 4);
	}
	memcpy(buf, "\x00\x01\x02\x1e\x00", 5);
	put("roundtrip", "f32-maxerr-all-nan", buf, 5 + 2048, -1);
	for (int i = 0; i < 256; i++) {
		uint64_t u = 1 + (uint64_t)i * 977;
		memcpy(buf + 5 + 8 * i, &u, 8);
	}
	memcpy(buf, "\x03\x02\x06\x06\x00", 5);
	put("roundtrip", "f64-relerr-all-subnormal", buf, 5 + 2048, -1);
}

/* ---- spec vectors ----------------------------------------------------------------- */

static void vectors(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 6 || strcmp(de->d_name + n - 5, ".alcm") != 0)
			continue;
		char path[4096], name[300];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		size_t len;
		uint8_t *p = slurp(path, &len);
		if (!p || len > 65536) {
			free(p);
			continue;
		}
		snprintf(name, sizeof(name), "vector-%.*s", (int)(n - 5), de->d_name);
		const int o0[] = {0x00};
		put_archive(name, p, len, o0, 1, o0, 1);
		free(p);
	}
	closedir(d);
}

/* torch.save files as the library writes them (torch's own come from
 * tests/torch_fixtures.py, through make_corpus.sh). */
static void pt_seeds(void)
{
	static tbuf t[6];
	size_t len;
	make(&t[0], "w", ALCM_DTYPE_F32, 2, (uint64_t[]){2, 3}, 1, 0);
	make(&t[1], "bf16", ALCM_DTYPE_BF16, 1, (uint64_t[]){4}, 1, 0);
	make(&t[2], "step", ALCM_DTYPE_I64, 0, NULL, 0, 0);
	make(&t[3], "mask", ALCM_DTYPE_BOOL, 1, (uint64_t[]){2}, 0, 0);
	make(&t[4], "f16", ALCM_DTYPE_F16, 2, (uint64_t[]){1, 2}, 1, 0);
	make(&t[5], "empty", ALCM_DTYPE_F64, 2, (uint64_t[]){0, 3}, 0, 0);
	tbuf *all[] = {&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]};
	uint8_t *p = tensor_file(ALCM_FILE_PT, all, 6, &len);
	put("pt", "mixed-6", p, len, 0);
	put("pt", "mixed-6-defaults", p, len, 1);
	put("pt", "mixed-6-detect-file", p, len, 6);
	free(p);
	/* tied weights, a parameter, _metadata */
	static const uint8_t alias[] = {1, 0, 0, 0, 4, 0, 0, 0, 't', 'i', 'e', 'd', 1, 0, 0, 0, 'w'};
	static const char state[] = "{\"alias_index\":[1],\"parameters\":{\"w\":true},"
	                            "\"requires_grad\":[\"mask\"],"
	                            "\"metadata\":{\"\":{\"version\":1},\"x\":{\"v\":[1,\"a\"]}}}";
	static const struct seed_meta m[] = {{"alcm.alias", alias, sizeof(alias)},
	                                     {"torch.state_dict", state, sizeof(state) - 1}};
	seed_meta = m;
	seed_nmeta = 2;
	p = tensor_file(ALCM_FILE_PT, all, 4, &len);
	put("pt", "tied-params-metadata", p, len, 0);
	free(p);
}

/* The differential harness replays what the others start from: every archive seed of
 * fuzz_unpack with options 0 and every tensor file, copied under the same name. */
static void diff_seeds(void)
{
	const char *from[] = {"unpack", "npy", "npz", "safetensors"};
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/%s", outdir, from[i]);
		DIR *d = opendir(dir);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			size_t n = strlen(de->d_name);
			if (de->d_name[0] == '.' || (i == 0 && (n < 4 || strcmp(de->d_name + n - 4, "-o00"))))
				continue;
			char path[4400], name[600];
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			size_t len;
			uint8_t *p = slurp(path, &len);
			if (!p || len == 0) {
				free(p);
				continue;
			}
			snprintf(name, sizeof(name), "%s-%s", from[i], de->d_name);
			put("diff", name, p, len - 1, 0x00);
			free(p);
		}
		closedir(d);
	}
}

/* A TF convolution [3, 3, 96, 256] (221184 values, chunks of 4096) whose (position, input)
 * rows are mostly zero: class axes beyond axis 0 and the last (rows), 16 rANS states (AVX2)
 * with coding 18 (spec 6.5.6, 6.5.14); and a PyTorch one [16, 16, 3, 3] in chunks of 1024
 * values whose input channels differ in scale (axis 1), 8 states. */
static void axes_seeds(void)
{
	static float x[3 * 3 * 96 * 256];
	const int c0[] = {0x00}, uall[] = {0x00, 0x06, 0x1d};
	const uint64_t rows = 3 * 3 * 96, co = 256;
	for (uint64_t r = 0; r < rows; r++) {
		int live = r % 37 == 5;
		for (uint64_t o = 0; o < co; o++)
			x[r * co + o] = live ? (float)(0.02 * gauss()) : 0.0f;
	}
	for (int k = 0; k < 2; k++) {
		alcm_tensor t;
		memset(&t, 0, sizeof(t));
		t.name = "conv";
		t.name_len = 4;
		t.dtype = ALCM_DTYPE_F32;
		t.ndim = 4;
		uint64_t n = k ? 16 * 16 * 9 : rows * co;
		if (k) {
			t.shape[0] = 16;
			t.shape[1] = 16;
			t.shape[2] = 3;
			t.shape[3] = 3;
			for (uint64_t i = 0; i < n; i++)
				x[i] = (float)(0.001 * (1 << (i / 9 % 16 % 5)) * gauss());
		} else {
			t.shape[0] = 3;
			t.shape[1] = 3;
			t.shape[2] = 96;
			t.shape[3] = 256;
		}
		t.data = (const uint8_t *)x;
		t.nbytes = n * 4;
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.threads = 1;
		o.chunk_bytes = k ? 4096 : 16384;
		o.mode = ALCM_MODE_MAX_ERROR;
		o.bound = 0.004;
		o.producer = "alcm-fuzz-corpus";
		alcm_writer *w;
		alcm_encoder *e;
		if (alcm_writer_open_memory(&w, 0, NULL) || alcm_encoder_new(&e, w, &o, NULL) ||
		    alcm_encoder_add(e, &t, NULL) || alcm_encoder_finish(e) || alcm_writer_commit(w))
			DIE("axes seed %d", k);
		const void *p;
		size_t len;
		alcm_writer_memory(w, &p, &len);
		put_archive(k ? "modelled-torch-conv-inputs" : "modelled-tf-conv-rows-16-states",
		            (const uint8_t *)p, len, c0, 1, uall, 3);
		alcm_encoder_free(e);
		alcm_writer_free(w);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: alcm-fuzz-corpus OUTDIR [VECTORS_DIR]\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
		DIE("cannot create '%s': %s", outdir, strerror(errno));
	if (sodium_init() < 0)
		DIE("sodium_init");
	archives();
	axes_seeds();
	npy_seeds();
	npz_seeds();
	safetensors_seeds();
	pt_seeds();
	roundtrip_seeds();
	hostile_archives();
	series_seeds();
	if (argc == 3) {
		char sub[4096];
		vectors(argv[2]);
		snprintf(sub, sizeof(sub), "%s/tensors", argv[2]);
		vectors(sub);
	}
	diff_seeds();
	return failures != 0;
}
