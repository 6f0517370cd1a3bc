/*
 * make_vectors.c - builds the container test vectors of spec/alcm-format.md, chapter 9, and
 * their manifest (expected.txt).
 *
 * The vectors are checked in. tests/test_vectors.c includes this file, rebuilds every vector
 * in its scratch directory and compares it byte for byte with the checked-in copy, so the
 * files, the manifest and the hex dumps in the spec cannot drift from the library. After a
 * deliberate change, regenerate them with
 *
 *     ALCM_UPDATE_VECTORS=1 build/bin/test_vectors
 *
 * which rewrites spec/vectors/ and writes the spec's chapter 9 dumps to
 * $ALCM_TEST_TMP/vectors-chapter.md. This file can also be built on its own:
 *
 *     cc -std=c11 -D_GNU_SOURCE -Iinclude -Iformat spec/vectors/make_vectors.c \
 *        build/lib/libalcm.a -lsodium -lzstd -lz -lm -lpthread -o make_vectors
 *     ./make_vectors spec/vectors
 *
 * Every vector is made with the library's own writer (ALCM_WRITE_NO_SYNC, deterministic),
 * then damaged, where it must be, by the edits below, with the digests recomputed wherever
 * a vector is meant to test one rule only.
 */
#include "alcm.h"
#include "container.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct mv_bytes {
	uint8_t *p;
	size_t n;
} mv_bytes;

typedef struct mv_section {
	const char *type;
	uint32_t flags;
	uint32_t tag;
	const char *data;
} mv_section;

/* A vector: how to build it and what a conforming reader must say. */
typedef struct mv_vector {
	const char *name;
	/* "ok": opens and verifies; "open": refused when opened; "verify": opens, but
	 * alcm_reader_verify() fails; "decode": opens and verifies, then decoding its tensors
	 * (6.3 to 6.5) gives the status. */
	const char *stage;
	int status;
	/* For failures, a substring of the detail line; for "ok", "generation=G tail=T
	 * sections=N"; for a "decode" that succeeds, "NAME=HEX ..." per tensor in directory
	 * order, the hex of its decoded bytes. */
	const char *expect;
	int (*build)(mv_bytes *out, const char *scratch);
	const char *what; /* for the spec */
} mv_vector;

static int mv_pack(unsigned flags, const mv_section *s, size_t n, mv_bytes *out)
{
	alcm_writer *w = NULL;
	const void *buf;
	size_t len;
	int st = alcm_writer_open_memory(&w, flags | ALCM_WRITE_NO_SYNC, NULL);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_writer_add_section(w, s[i].type, s[i].flags, s[i].tag, s[i].data,
		                             strlen(s[i].data), NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (!st)
		st = alcm_writer_memory(w, &buf, &len);
	if (!st) {
		/* Room for the edits that lengthen a vector. */
		out->p = calloc(1, 2 * len + 64);
		if (!out->p)
			st = ALCM_E_NOMEM;
		else
			memcpy(out->p, buf, len);
		out->n = len;
	}
	alcm_writer_free(w);
	return st;
}

/* Header digest, then the digest of each used slot: after an edit of the fixed header. */
static void mv_reseal_header(uint8_t *p)
{
	alcm_digest(p + 32, p, 32);
	for (unsigned off = ALCM_SLOT_A; off <= ALCM_SLOT_B; off += ALCM_SLOT_SIZE)
		if (alcm_load64(p + off))
			alcm_slot_build(p + off, p, alcm_load64(p + off), alcm_load64(p + off + 8),
			                alcm_load64(p + off + 16));
}

/* Table digest of the table that slot A points at: after an edit of an entry. */
static void mv_reseal_table(uint8_t *p)
{
	uint64_t off = alcm_load64(p + ALCM_SLOT_A + 8), size = alcm_load64(p + ALCM_SLOT_A + 16);
	alcm_digest(p + off + size - 32, p + off, (size_t)size - 32);
}

/* Digest of section i, then the table's: after an edit of the section's bytes. */
static void mv_reseal_section(uint8_t *p, unsigned i)
{
	uint64_t off = alcm_load64(p + ALCM_SLOT_A + 8);
	uint8_t *e = p + off + 16 + 64 * i;
	alcm_digest(e + 32, p + alcm_load64(e + 16), (size_t)alcm_load64(e + 24));
	mv_reseal_table(p);
}

static const mv_section two_sections[] = {
	{"META", 0, 0, "alcm test vector"},
	{"XTRA", 0, 7, "hello"},
};

static int v_empty(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_pack(0, NULL, 0, o);
}

static int v_two(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_pack(0, two_sections, 2, o);
}

/* Written, then appended to once, through files (append works on files only). */
static int v_stream(mv_bytes *o, const char *scratch)
{
	static const mv_section first[] = {{"META", 0, 0, "generation 1"}};
	static const mv_section second[] = {{"XTRA", 0, 2, "generation 2"}};
	char path[4096];
	snprintf(path, sizeof(path), "%s/stream-vector.alcm", scratch);
	unlink(path);
	alcm_writer *w = NULL;
	int st = alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_writer_add_section(w, first[0].type, first[0].flags, first[0].tag,
		                             first[0].data, strlen(first[0].data), NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	w = NULL;
	if (!st)
		st = alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC);
	if (!st)
		st = alcm_writer_add_section(w, second[0].type, second[0].flags, second[0].tag,
		                             second[0].data, strlen(second[0].data), NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	if (st)
		return st;
	FILE *f = fopen(path, "rb");
	if (!f)
		return ALCM_E_IO;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	o->p = calloc(1, (size_t)n + 64);
	o->n = (size_t)n;
	if (!o->p || fread(o->p, 1, o->n, f) != o->n)
		st = ALCM_E_IO;
	fclose(f);
	unlink(path);
	return st;
}

/* The stream vector after a crash while its slot B was being written: the last 16 bytes
 * of the slot never reached the disk. */
static int v_torn(mv_bytes *o, const char *scratch)
{
	int st = v_stream(o, scratch);
	if (!st)
		memset(o->p + ALCM_SLOT_B + 48, 0, 16);
	return st;
}

static int v_minor(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		alcm_store16(o->p + 10, 1);
		mv_reseal_header(o->p);
	}
	return st;
}

static int v_bad_digest(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->p[192] = 'A'; /* "alcm..." -> "Alcm..." */
	return st;
}

static int v_bad_table(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->p[320 + 16 + 8] = 8; /* tag of section 0: 0 -> 8, table digest not redone */
	return st;
}

static int v_unknown_critical(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		alcm_store32(o->p + 320 + 16 + 64 + 4, ALCM_SECTION_CRITICAL);
		mv_reseal_table(o->p);
	}
	return st;
}

/* ESCP is a reserved name, not a known type: flagged critical, it stops a reader at open. */
static int v_critical_escp(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		memcpy(o->p + 320 + 16 + 64, "ESCP", 4);
		alcm_store32(o->p + 320 + 16 + 64 + 4, ALCM_SECTION_CRITICAL);
		mv_reseal_table(o->p);
	}
	return st;
}

static int v_overlap(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		alcm_store64(o->p + 320 + 16 + 64 + 16, 192); /* section 1 placed on section 0 */
		mv_reseal_table(o->p);
	}
	return st;
}

static int v_trailing(mv_bytes *o, const char *scratch)
{
	int st = v_empty(o, scratch);
	if (!st)
		o->p[o->n++] = '\n'; /* what an editor adds at the end of a "text" file */
	return st;
}

static int v_crlf(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	size_t k = 0;
	if (st)
		return st;
	for (size_t i = 0; i < o->n; i++)
		if (!(o->p[i] == 0x0d && i + 1 < o->n && o->p[i + 1] == 0x0a))
			o->p[k++] = o->p[i];
	o->n = k;
	return ALCM_OK;
}

static int v_major(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		o->p[9] = 2;
		mv_reseal_header(o->p);
	}
	return st;
}

static int v_truncated(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->n = 400;
	return st;
}

static int v_padding(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->p[192 + 16] = 0x01; /* first padding byte after section 0 */
	return st;
}

static int v_unfinished(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		memset(o->p + ALCM_SLOT_A, 0, ALCM_SLOT_SIZE);
	return st;
}

/* ---- payload vectors: tensors whose decoding every reader must agree on -------------- */

/* A byte string built field by field (little-endian). */
typedef struct mv_buf {
	uint8_t p[512];
	size_t n;
} mv_buf;

static void mv_put(mv_buf *b, const void *p, size_t n)
{
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void mv_u8(mv_buf *b, unsigned v)
{
	b->p[b->n++] = (uint8_t)v;
}

static void mv_u32(mv_buf *b, uint32_t v)
{
	alcm_store32(b->p + b->n, v);
	b->n += 4;
}

static void mv_u64(mv_buf *b, uint64_t v)
{
	alcm_store64(b->p + b->n, v);
	b->n += 8;
}

static void mv_f64(mv_buf *b, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	mv_u64(b, u);
}

/* A one-dimensional tensor of one chunk: its directory entry (6.3). */
typedef struct mv_tensor {
	const char *name;
	unsigned dtype, mode;
	uint64_t elems;
	uint32_t data, scale; /* section indices; scale NONE for lossless */
	double bound;
	size_t data_len;
} mv_tensor;

static void mv_entry(mv_buf *d, const mv_tensor *t)
{
	mv_u32(d, (uint32_t)strlen(t->name));
	mv_put(d, t->name, strlen(t->name));
	mv_u8(d, t->dtype);
	mv_u8(d, t->mode);
	mv_u8(d, 1);                  /* ndim */
	mv_u8(d, 0);                  /* bits, informative */
	mv_u64(d, t->elems);          /* shape[0] */
	mv_u32(d, t->data);
	mv_u32(d, t->scale);
	mv_u32(d, 0xFFFFFFFFu);       /* no mask */
	mv_u64(d, t->elems);          /* chunk_elems: one chunk */
	mv_u64(d, 1);                 /* chunk_count */
	mv_f64(d, t->bound);
	mv_f64(d, 0);                 /* max_abs_error, informative */
	mv_u64(d, 0);                 /* pruned */
	mv_u64(d, 0);                 /* escapes */
	mv_u64(d, t->data_len);
	mv_u64(d, 0);                 /* mask_len */
}

/* A TDRZ payload (6.3.5) holding `dir`: its length, then a zstd frame of one raw block (the
 * simplest frame a zstd decoder takes; dir < 256 bytes), declaring `skew` more bytes than the
 * frame holds. */
static void mv_tdrz(mv_buf *z, const mv_buf *dir, unsigned skew)
{
	static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
	mv_u64(z, dir->n + skew);
	mv_put(z, magic, 4);
	mv_u8(z, 0x20);                      /* frame header: single segment, 1-byte size */
	mv_u8(z, (unsigned)dir->n);          /* frame content size */
	uint32_t bh = (uint32_t)dir->n << 3 | 1; /* block: last, raw, dir->n bytes */
	mv_u8(z, bh & 0xff);
	mv_u8(z, bh >> 8 & 0xff);
	mv_u8(z, bh >> 16);
	mv_put(z, dir->p, dir->n);
}

/* Writes sections (type, critical, bytes) then a TDIR of the given entries, in an archive
 * of format 1.minor; with tdrz > 0, a TDRZ (declaring tdrz - 1 bytes too many) instead. */
static int mv_tensor_archive_dir(mv_bytes *o, unsigned minor, unsigned tdrz,
                                 const char *const *types, const mv_buf *secs, size_t nsecs,
                                 const mv_tensor *t, size_t nt)
{
	alcm_writer *w = NULL;
	const void *buf;
	size_t len;
	mv_buf dir = {{0}, 0};
	mv_u32(&dir, (uint32_t)nt);
	for (size_t i = 0; i < nt; i++)
		mv_entry(&dir, &t[i]);
	int st = alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, NULL);
	if (!st && minor)
		st = alcm_writer_require_minor(w, minor);
	for (size_t i = 0; i < nsecs && !st; i++)
		st = alcm_writer_add_section(w, types[i], ALCM_SECTION_CRITICAL, 0, secs[i].p,
		                             secs[i].n, NULL);
	mv_buf z = {{0}, 0};
	if (tdrz)
		mv_tdrz(&z, &dir, tdrz - 1);
	if (!st)
		st = alcm_writer_add_section(w, tdrz ? "TDRZ" : "TDIR", ALCM_SECTION_CRITICAL, 0,
		                             tdrz ? z.p : dir.p, tdrz ? z.n : dir.n, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (!st)
		st = alcm_writer_memory(w, &buf, &len);
	if (!st) {
		o->p = malloc(len);
		o->n = len;
		if (!o->p)
			st = ALCM_E_NOMEM;
		else
			memcpy(o->p, buf, len);
	}
	alcm_writer_free(w);
	return st;
}

static int mv_tensor_archive(mv_bytes *o, const char *const *types, const mv_buf *secs,
                             size_t nsecs, const mv_tensor *t, size_t nt)
{
	return mv_tensor_archive_dir(o, 0, 0, types, secs, nsecs, t, nt);
}

/* A coded stream (6.2) with the raw backend, or another backend id over the same bytes. */
static void mv_stream(mv_buf *b, unsigned backend, const void *p, size_t n)
{
	mv_u8(b, backend);
	mv_u8(b, (unsigned)n); /* varints of one byte: n < 128 */
	mv_u8(b, (unsigned)n);
	mv_put(b, p, n);
}

/* A QDAT chunk of one symbol q = 1 (zigzag 2) and no escapes (6.5.4). */
static void mv_one_symbol(mv_buf *b)
{
	static const uint8_t sym = 2, count = 0;
	mv_u8(b, 1);          /* width */
	mv_u8(b, 1);          /* nsym */
	mv_stream(b, 0, &sym, 1);
	mv_u8(b, 1);          /* esc_len */
	mv_stream(b, 0, &count, 1);
}

/* Two max-error tensors of one value, 1 x step, whose steps lie a hair above the midpoint of
 * two float16 (bfloat16) neighbours: rounding through binary32 lands on the midpoint, and ties
 * to even give 1.0; rounding the binary64 product directly would give the next value up. */
static int v_narrow_rounding(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	static const char *const types[] = {"QDAT", "SCAL", "QDAT", "SCAL"};
	mv_buf s[4] = {{{0}, 0}, {{0}, 0}, {{0}, 0}, {{0}, 0}};
	const double h = 1 + 0x1p-11 + 0x1p-40, bf = 1 + 0x1p-8 + 0x1p-40;
	mv_one_symbol(&s[0]);
	mv_f64(&s[1], h);
	mv_one_symbol(&s[2]);
	mv_f64(&s[3], bf);
	const mv_tensor t[2] = {
		{"h", ALCM_DTYPE_F16, ALCM_MODE_MAX_ERROR, 1, 0, 1, h / 2, s[0].n},
		{"b", ALCM_DTYPE_BF16, ALCM_MODE_MAX_ERROR, 1, 2, 3, bf / 2, s[2].n},
	};
	return mv_tensor_archive(o, types, s, 4, t, 2);
}

/* A float32 max-error tensor of one element, the symbol 2 (q = 1) at step 1.5, whose step
 * ends its QDAT instead of a SCAL (6.5.13); `cut` bytes of the step left out. */
static int mv_inline_steps(mv_bytes *o, size_t cut)
{
	static const char *const types[] = {"QDAT"};
	mv_buf s[1] = {{{0}, 0}};
	mv_one_symbol(&s[0]);
	mv_f64(&s[0], 1.5);
	s[0].n -= cut;
	const mv_tensor t = {"s", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 1, 0, 0, 0.75, s[0].n - 8 + cut};
	return mv_tensor_archive_dir(o, 1, 0, types, s, 1, &t, 1);
}

static int v_inline_steps(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_inline_steps(o, 0);
}

static int v_inline_steps_short(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_inline_steps(o, 4);
}

/* A lossless int8 tensor of 4 elements whose one stream names backend `backend`, with `extra`
 * bytes left in the chunk after it; its directory a TDRZ when tdrz > 0 (mv_tensor_archive_dir). */
static int mv_lossless_chunk_dir(mv_bytes *o, unsigned backend, size_t extra, unsigned tdrz)
{
	static const char *const types[] = {"LDAT"};
	static const uint8_t v[4] = {1, 2, 3, 4};
	mv_buf s[1] = {{{0}, 0}};
	mv_u8(&s[0], 0); /* transform 0 */
	mv_stream(&s[0], backend, v, sizeof(v));
	for (size_t i = 0; i < extra; i++)
		mv_u8(&s[0], 0);
	const mv_tensor t = {"x", ALCM_DTYPE_I8, ALCM_MODE_LOSSLESS, 4, 0, 0xFFFFFFFFu, 0, s[0].n};
	return mv_tensor_archive_dir(o, tdrz ? 1 : 0, tdrz, types, s, 1, &t, 1);
}

static int mv_lossless_chunk(mv_bytes *o, unsigned backend, size_t extra)
{
	return mv_lossless_chunk_dir(o, backend, extra, 0);
}

static int v_tdrz(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_lossless_chunk_dir(o, 0, 0, 1);
}

static int v_tdrz_long(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_lossless_chunk_dir(o, 0, 0, 2);
}

static int v_lossless_chunk(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_lossless_chunk(o, 0, 0);
}

static int v_unknown_backend(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_lossless_chunk(o, 9, 0);
}

/* A lossless chunk with a transform code no version defines yet. */
static int v_unknown_transform(mv_bytes *o, const char *scratch)
{
	int st = v_lossless_chunk(o, scratch);
	if (!st) {
		o->p[192] = 9;
		mv_reseal_section(o->p, 0);
	}
	return st;
}

/* A QDAT chunk whose symbol width no version defines yet (3 bytes per symbol). */
static int v_unknown_width(mv_bytes *o, const char *scratch)
{
	int st = v_narrow_rounding(o, scratch);
	if (!st) {
		o->p[192] = 3;
		mv_reseal_section(o->p, 0);
	}
	return st;
}

/* A tensor mode no version defines yet: refused when the directory is read. */
static int v_unknown_mode(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	static const char *const types[] = {"LDAT"};
	mv_buf s[1] = {{{0}, 0}};
	mv_u8(&s[0], 0);
	mv_stream(&s[0], 0, "\x01\x02\x03\x04", 4);
	const mv_tensor t = {"x", ALCM_DTYPE_I8, 7, 4, 0, 0xFFFFFFFFu, 0, s[0].n};
	return mv_tensor_archive(o, types, s, 1, &t, 1);
}

static int v_chunk_leftover(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_lossless_chunk(o, 0, 1);
}

/* ---- checkpoint series (6.12): two frames, the second coded against the first ---------- */

enum { SV_LOSSLESS, SV_QUANT, SV_FORWARD, SV_NO_RECORD, SV_MISSING_FRAME, SV_BASE,
       SV_UNKNOWN_KIND, SV_SHAPE, SV_KEY_RECORD };

/* The order key of a float32's bits (6.12.4), and the zigzag of a 32-bit difference: written
 * here from the spec's definitions, apart from the library's. */
static uint32_t mv_okey(uint32_t u)
{
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static uint32_t mv_zz32(uint32_t d)
{
	return (d << 1) ^ ((d & 0x80000000u) ? 0xFFFFFFFFu : 0);
}

static uint32_t mv_f32(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* A SERI record (6.12.2). */
static void mv_seri(mv_buf *b, uint32_t frame, int delta, uint32_t ref, unsigned src)
{
	mv_u32(b, 1);
	mv_u32(b, frame);
	mv_u32(b, delta ? 1 : 0);
	mv_u32(b, delta ? ref : 0xFFFFFFFFu);
	mv_u32(b, src);
	mv_u32(b, 0);
	for (int i = 0; i < 32; i++)
		mv_u8(b, src ? 0xB5 : 0); /* the base archive's identity */
	mv_u64(b, 0);                 /* informative estimates */
	mv_u64(b, 0);
}

/* A directory entry of one chunk, rank 1 or (rows > 0) rank 2 (6.3). */
static void mv_entry_rows(mv_buf *d, const mv_tensor *t, uint64_t rows)
{
	mv_u32(d, (uint32_t)strlen(t->name));
	mv_put(d, t->name, strlen(t->name));
	mv_u8(d, t->dtype);
	mv_u8(d, t->mode);
	mv_u8(d, rows ? 2 : 1);
	mv_u8(d, 0);
	if (rows)
		mv_u64(d, rows);
	mv_u64(d, rows ? t->elems / rows : t->elems);
	mv_u32(d, t->data);
	mv_u32(d, t->scale);
	mv_u32(d, 0xFFFFFFFFu);
	mv_u64(d, t->elems);
	mv_u64(d, 1);
	mv_f64(d, t->bound);
	mv_f64(d, 0);
	mv_u64(d, 0);
	mv_u64(d, 0);
	mv_u64(d, t->data_len);
	mv_u64(d, 0);
}

/*
 * Frame 0 (tag 0): `w` float32 [4] = 1, -2, 0.5, 3 and `n` int16 [4] = 1, -1, 300, 7, raw
 * LDAT chunks, a keyframe record. Frame 1 (tag 1): `w` = 1, -1.9999999, 0.50000006, -3 as the
 * zigzag differences of order keys (kind 2; the last crosses zero), `n` = 1, 0, 301, -7 as XOR
 * residuals (kind 1), both raw streams, a delta record against frame 0. SV_QUANT instead
 * codes a max-error tensor `q`: frame 0 = 0, 1, -1, 10; frame 1 steps of 0.5 added to it,
 * symbols 0, 1, -2, 0, and an escape holding 10.25. The other variants each break one rule.
 */
static int mv_series(mv_bytes *o, int v)
{
	static const float w0[4] = {1.0f, -2.0f, 0.5f, 3.0f};
	static const int16_t n0[4] = {1, -1, 300, 7}, n1[4] = {1, 0, 301, -7};
	const uint32_t w1[4] = {mv_f32(1.0f), 0xBFFFFFFFu, 0x3F000001u, mv_f32(-3.0f)};
	mv_buf sec[10];
	const char *type[10];
	uint32_t tag[10];
	size_t ns = 0;
	memset(sec, 0, sizeof(sec));
#define SEC(ty, tg) (type[ns] = (ty), tag[ns] = (tg), &sec[ns++])
	mv_buf *b, *dir0, *dir1;
	if (v == SV_QUANT) {
		static const float q0[4] = {0.0f, 1.0f, -1.0f, 10.0f};
		b = SEC("LDAT", 0);                                    /* 0 */
		mv_u8(b, 0);
		mv_stream(b, 0, q0, 16);
		mv_seri(SEC("SERI", 0), 0, 0, 0, 0);                   /* 1 */
		dir0 = SEC("TDIR", 0);                                 /* 2 */
		mv_u32(dir0, 1);
		mv_entry(dir0, &(mv_tensor){"q", ALCM_DTYPE_F32, 0, 4, 0, 0xFFFFFFFFu, 0, sec[0].n});
		b = SEC("DLTA", 0);                                    /* 3 */
		static const uint8_t sym[4] = {0, 2, 3, 0}, blk[6] = {1, 3, 0, 0, 0x24, 0x41};
		mv_u8(b, 1);                                           /* kind 1: added */
		mv_u8(b, 1);                                           /* width */
		mv_u8(b, 4);                                           /* nsym */
		mv_stream(b, 0, sym, 4);
		mv_u8(b, 6);                                           /* esc_len */
		mv_stream(b, 0, blk, 6);                               /* 1 escape at 3: 10.25f */
		mv_f64(SEC("SCAL", 0), 0.5);                           /* 4 */
		mv_seri(SEC("SERI", 1), 1, 1, 0, 0);                   /* 5 */
		dir1 = SEC("TDIR", 1);                                 /* 6 */
		mv_u32(dir1, 1);
		mv_entry(dir1, &(mv_tensor){"q", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 4, 3, 4, 0.25,
		                           sec[3].n});
	} else {
		b = SEC("LDAT", 0);                                    /* 0 */
		mv_u8(b, 0);
		mv_stream(b, 0, w0, 16);
		b = SEC("LDAT", 1);                                    /* 1 */
		mv_u8(b, 0);
		mv_stream(b, 0, n0, 8);
		mv_seri(SEC("SERI", 0), 0, 0, 0, 0);                   /* 2 */
		dir0 = SEC("TDIR", v == SV_MISSING_FRAME ? 2 : 0);     /* 3 */
		mv_u32(dir0, 2);
		mv_entry_rows(dir0, &(mv_tensor){"w", ALCM_DTYPE_F32, 0, 4, 0, 0xFFFFFFFFu, 0,
		                                 sec[0].n}, v == SV_SHAPE ? 2 : 0);
		mv_entry(dir0, &(mv_tensor){"n", ALCM_DTYPE_I16, 0, 4, 1, 0xFFFFFFFFu, 0, sec[1].n});
		uint8_t r[16];
		for (int i = 0; i < 4; i++)
			alcm_store32(r + 4 * i, mv_zz32(mv_okey(w1[i]) - mv_okey(mv_f32(w0[i]))));
		b = SEC("DLTA", 0);                                    /* 4 */
		mv_u8(b, v == SV_UNKNOWN_KIND ? 9 : 2);                /* kind 2: difference */
		mv_u8(b, 0);                                           /* transform 0 */
		mv_stream(b, 0, r, 16);
		for (int i = 0; i < 4; i++)
			alcm_store16(r + 2 * i, (uint16_t)((uint16_t)n0[i] ^ (uint16_t)n1[i]));
		b = SEC("DLTA", 1);                                    /* 5 */
		mv_u8(b, 1);                                           /* kind 1: XOR */
		mv_u8(b, 0);
		mv_stream(b, 0, r, 8);
		if (v != SV_NO_RECORD)
			mv_seri(SEC("SERI", 1), 1, v != SV_KEY_RECORD, v == SV_FORWARD ? 1 : 0,
			        v == SV_BASE);
		dir1 = SEC("TDIR", 1);
		mv_u32(dir1, 2);
		mv_entry(dir1, &(mv_tensor){"w", ALCM_DTYPE_F32, 0, 4, 4, 0xFFFFFFFFu, 0, sec[4].n});
		mv_entry(dir1, &(mv_tensor){"n", ALCM_DTYPE_I16, 0, 4, 5, 0xFFFFFFFFu, 0, sec[5].n});
	}
#undef SEC
	alcm_writer *w = NULL;
	const void *buf;
	size_t len;
	int st = alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_writer_require_minor(w, 1);
	for (size_t i = 0; i < ns && !st; i++)
		st = alcm_writer_add_section(w, type[i], strcmp(type[i], "SERI") ? ALCM_SECTION_CRITICAL
		                                                                 : 0,
		                             tag[i], sec[i].p, sec[i].n, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (!st)
		st = alcm_writer_memory(w, &buf, &len);
	if (!st) {
		o->p = malloc(len);
		o->n = len;
		if (!o->p)
			st = ALCM_E_NOMEM;
		else
			memcpy(o->p, buf, len);
	}
	alcm_writer_free(w);
	return st;
}

#define MV_SERIES(fn, variant)                                                             \
	static int fn(mv_bytes *o, const char *scratch)                                        \
	{                                                                                      \
		(void)scratch;                                                                     \
		return mv_series(o, variant);                                                      \
	}
MV_SERIES(v_series_lossless, SV_LOSSLESS)
MV_SERIES(v_series_quant, SV_QUANT)
MV_SERIES(v_series_forward, SV_FORWARD)
MV_SERIES(v_series_no_record, SV_NO_RECORD)
MV_SERIES(v_series_missing_frame, SV_MISSING_FRAME)
MV_SERIES(v_series_base, SV_BASE)
MV_SERIES(v_series_unknown_kind, SV_UNKNOWN_KIND)
MV_SERIES(v_series_shape, SV_SHAPE)
MV_SERIES(v_series_key_record, SV_KEY_RECORD)

static const mv_vector mv_vectors[] = {
	{"empty-archive.alcm", "ok", ALCM_OK, "generation=1 tail=0 sections=0", v_empty,
	 "A non-stream archive with no sections: the header, slot A (generation 1, table at "
	 "offset 192, 48 bytes) and a table of 0 entries."},
	{"two-sections.alcm", "ok", ALCM_OK, "generation=1 tail=0 sections=2", v_two,
	 "Section 0: META, optional, tag 0, the 16 bytes `alcm test vector` at offset 192 (a "
	 "container example only: not a valid META payload). Section 1: XTRA, an unknown optional "
	 "type, tag 7, the 5 bytes `hello` at offset 256. The table is at offset 320. A reader "
	 "lists XTRA with known = 0."},
	{"stream-appended.alcm", "ok", ALCM_OK, "generation=2 tail=0 sections=3", v_stream,
	 "A stream archive written with section 0 (META, `generation 1`), then appended to once. "
	 "Section 1 is the first table, now a PTBL section (tag 1, offset 256, 112 bytes); "
	 "section 2 is XTRA, tag 2, `generation 2`. Slot A holds generation 1, slot B generation "
	 "2, whose table is at offset 448."},
	{"torn-append.alcm", "ok", ALCM_OK, "generation=1 tail=320 sections=1", v_torn,
	 "stream-appended.alcm with the last 16 bytes of slot B zeroed, as a crash during the "
	 "slot write leaves it. Slot B fails its digest, so slot A (generation 1) is used: one "
	 "section, and the 320 bytes after the first table are an uncommitted tail."},
	{"minor-version.alcm", "ok", ALCM_OK, "generation=1 tail=0 sections=2", v_minor,
	 "two-sections.alcm with version_minor = 1, header and slot digests recomputed. A 1.0 "
	 "reader reads it."},
	{"bad-digest.alcm", "verify", ALCM_E_DIGEST,
	 "digest mismatch in section 0 (META) at offset 192", v_bad_digest,
	 "two-sections.alcm with byte 192 changed from `a` to `A`. The table is intact, so the "
	 "archive opens; reading or verifying section 0 fails."},
	{"bad-padding.alcm", "verify", ALCM_E_CORRUPT, "non-zero padding byte at offset 208",
	 v_padding,
	 "two-sections.alcm with the padding byte at offset 208 set to 0x01. It opens; full "
	 "verification refuses it."},
	{"bad-table-digest.alcm", "open", ALCM_E_DIGEST, "table digest mismatch at offset 464",
	 v_bad_table,
	 "two-sections.alcm with the tag of section 0 (offset 344) changed to 8, table digest "
	 "left as it was."},
	{"unknown-critical.alcm", "open", ALCM_E_UNSUPPORTED,
	 "section 1: unknown critical section type 'XTRA' at offset 256", v_unknown_critical,
	 "two-sections.alcm with section 1 (XTRA) flagged critical, table digest recomputed."},
	{"critical-escp.alcm", "open", ALCM_E_UNSUPPORTED,
	 "section 1: unknown critical section type 'ESCP' at offset 256", v_critical_escp,
	 "two-sections.alcm with section 1 renamed ESCP and flagged critical, table digest "
	 "recomputed. ESCP is a reserved name whose contents this version does not define "
	 "(6.5.3), so it is an unknown type."},
	{"overlap.alcm", "open", ALCM_E_CORRUPT,
	 "section 1 (XTRA): offset 192 at offset 416, expected 256", v_overlap,
	 "two-sections.alcm with the offset of section 1 set to 192, on top of section 0, table "
	 "digest recomputed."},
	{"trailing-bytes.alcm", "open", ALCM_E_CORRUPT,
	 "1 trailing bytes after the table at offset 240", v_trailing,
	 "empty-archive.alcm followed by one LF byte, as an editor leaves a \"text\" file."},
	{"crlf.alcm", "open", ALCM_E_CORRUPT, "CR LF became LF", v_crlf,
	 "two-sections.alcm after a text-mode transfer turned every CR LF into LF: one byte "
	 "shorter, the signature's CR gone."},
	{"major-version.alcm", "open", ALCM_E_UNSUPPORTED, "format version 2.0", v_major,
	 "two-sections.alcm with version_major = 2, header and slot digests recomputed."},
	{"truncated.alcm", "open", ALCM_E_CORRUPT, "runs past the end of the file", v_truncated,
	 "The first 400 bytes of two-sections.alcm."},
	{"unfinished.alcm", "open", ALCM_E_CORRUPT, "no committed table", v_unfinished,
	 "two-sections.alcm with slot A zeroed, as a writer that never committed would leave "
	 "it."},
	{"lossless-int8.alcm", "decode", ALCM_OK, "x=01020304", v_lossless_chunk,
	 "The smallest tensor archive: an LDAT (section 0) holding one chunk, transform 0 and one "
	 "raw stream of the bytes 01 02 03 04, and a TDIR (section 1) of one int8 tensor `x` of "
	 "shape [4]. No META, no PRED: neither is needed to decode."},
	{"narrow-rounding.alcm", "decode", ALCM_OK, "h=003c b=803f", v_narrow_rounding,
	 "Two max-error tensors of one element each, both the symbol 2 (q = 1): `h`, float16, step "
	 "1 + 2^-11 + 2^-40 (sections 0 and 1), and `b`, bfloat16, step 1 + 2^-8 + 2^-40 "
	 "(sections 2 and 3). Each product lies above the midpoint of 1.0 and the next value of "
	 "its dtype by 2^-40; rounded to binary32 first (6.5.5) it becomes the midpoint, which "
	 "rounds to even: 1.0 (`00 3c`, `80 3f`). A reader that rounds the binary64 product "
	 "straight to the narrow type gets `01 3c` and `81 3f`, and is not conforming."},
	{"inline-steps.alcm", "decode", ALCM_OK, "s=0000c03f", v_inline_steps,
	 "Format 1.1 (6.5.13): a float32 tensor `s` of shape [1] in max-error mode (bound 0.75) "
	 "whose directory entry names its QDAT (section 0) as its scale section too: the QDAT "
	 "holds the 11-byte chunk of narrow-rounding.alcm (width 1, the symbol 2, no escapes) "
	 "followed by the step 1.5 as a little-endian f64 (`00 00 00 00 00 00 f8 3f`, offset 203): "
	 "data_len 11, section length 19. No SCAL. Decodes to 1 x 1.5 = 1.5."},
	{"inline-steps-short.alcm", "decode", ALCM_E_CORRUPT, "does not add up",
	 v_inline_steps_short,
	 "inline-steps.alcm with only 4 bytes of the step after the chunk: the QDAT's length is not "
	 "the chunk lengths plus 8 x channels, refused as corrupt when the directory is read "
	 "(6.5.13)."},
	{"unknown-backend.alcm", "decode", ALCM_E_UNSUPPORTED, "coding this reader does not know",
	 v_unknown_backend,
	 "lossless-int8.alcm with the stream's backend byte (offset 193) set to 9, an id no "
	 "version defines yet: the archive opens and verifies, and decoding the tensor is "
	 "refused as unsupported (6.2)."},
	{"unknown-transform.alcm", "decode", ALCM_E_UNSUPPORTED, "coding this reader does not know",
	 v_unknown_transform,
	 "lossless-int8.alcm with the chunk's transform byte (offset 192) set to 9 and the "
	 "digests recomputed: unsupported (6.4)."},
	{"unknown-width.alcm", "decode", ALCM_E_UNSUPPORTED, "coding this reader does not know",
	 v_unknown_width,
	 "narrow-rounding.alcm with the first QDAT chunk's symbol width (offset 192) set to 3 and "
	 "the digests recomputed: unsupported (6.5.4)."},
	{"unknown-mode.alcm", "decode", ALCM_E_UNSUPPORTED, "unknown mode 7", v_unknown_mode,
	 "lossless-int8.alcm with the tensor's mode (offset 266) set to 7, a mode no version "
	 "defines yet: refused as unsupported when the directory is read (6.3), before the mode is "
	 "checked against the dtype."},
	{"chunk-leftover.alcm", "decode", ALCM_E_CORRUPT, "is malformed", v_chunk_leftover,
	 "lossless-int8.alcm with one zero byte after the chunk's last stream, counted in the "
	 "chunk's data_len and the LDAT's length: refused as corrupt (6.4)."},
	{"tdrz.alcm", "decode", ALCM_OK, "x=01020304", v_tdrz,
	 "Format 1.1 (6.3.5): lossless-int8.alcm with its directory compressed. Section 1 is a "
	 "TDRZ: the directory's length, 97 (`61 00 00 00 00 00 00 00`), then a zstd frame: the "
	 "magic `28 b5 2f fd`, a frame header byte 20 (single segment, so the content size "
	 "follows in one byte: 61), a block header `09 03 00` (last block, raw, 97 bytes) and the "
	 "97 bytes of lossless-int8.alcm's TDIR. A real writer's frame holds compressed blocks; "
	 "any valid zstd frame will do."},
	{"tdrz-long.alcm", "decode", ALCM_E_CORRUPT, "no zstd frame of the declared length",
	 v_tdrz_long,
	 "tdrz.alcm whose TDRZ declares 98 bytes while its frame holds 97: refused as corrupt "
	 "before anything is allocated for it (6.3.5)."},
	/* 9.4: checkpoint series (6.12) */
	{"series-lossless.alcm", "decode", ALCM_OK,
	 "w=0000803fffffffbf0100003f000040c0 n=010000002d01f9ff", v_series_lossless,
	 "A series of two frames, format 1.1. Frame 0 (tag 0): `w` float32 [4] = 1, -2, 0.5, 3 "
	 "(LDAT, section 0) and `n` int16 [4] = 1, -1, 300, 7 (LDAT, section 1), raw streams; a "
	 "keyframe record (SERI, section 2); its TDIR (section 3). Frame 1 (tag 1): `w` = 1, "
	 "-1.9999999, 0.50000006, -3 as a DLTA chunk of kind 2 (section 4): zigzag differences of "
	 "the order keys, 0, 2, 2 and fe ff ff fe (the last value crosses zero), in one raw "
	 "stream of uint32 residuals; `n` = 1, 0, 301, -7 as a DLTA chunk of kind 1, XOR "
	 "residuals (section 5); a delta record against frame 0 (section 6); its TDIR (section 7). "
	 "A reader decodes the last frame by decoding each tensor of frame 0 and applying the "
	 "residuals (6.12.4, 6.12.6)."},
	{"series-quant.alcm", "decode", ALCM_OK, "q=000000000000c03f000000c000002441",
	 v_series_quant,
	 "Frame 0: `q` float32 [4] = 0, 1, -1, 10, lossless. Frame 1: `q` in max-error mode (bound "
	 "0.25) as a DLTA chunk of kind 1 (6.12.5): symbols 0, 2, 3, 0 (q = 0, 1, -2, 0) at step "
	 "0.5 (SCAL) added to frame 0's values, and one escape at position 3 holding 10.25 "
	 "exactly: 0, 1.5, -2, 10.25."},
	{"series-forward.alcm", "decode", ALCM_E_CORRUPT, "does not come before it",
	 v_series_forward,
	 "series-lossless.alcm whose frame 1 record refers to frame 1 itself: a chain must go "
	 "back (6.12.2); a reference to a later frame or to itself could make a cycle."},
	{"series-no-record.alcm", "decode", ALCM_E_CORRUPT, "no series record",
	 v_series_no_record,
	 "series-lossless.alcm without frame 1's SERI: its DLTA tensors have no reference."},
	{"series-missing-frame.alcm", "decode", ALCM_E_CORRUPT, "does not have",
	 v_series_missing_frame,
	 "series-lossless.alcm with frame 0's TDIR tagged 2: frame 1 refers to a frame 0 the "
	 "archive does not have."},
	{"series-base.alcm", "decode", ALCM_E_NOTFOUND, "which was not given", v_series_base,
	 "series-lossless.alcm whose frame 1 record refers to frame 0 of a base archive whose "
	 "identity is 32 bytes b5: a reader given no base archive cannot decode it (6.12.6); given "
	 "one, it checks that archive's identity first (class digest when it differs)."},
	{"series-unknown-kind.alcm", "decode", ALCM_E_UNSUPPORTED,
	 "coding this reader does not know", v_series_unknown_kind,
	 "series-lossless.alcm with the kind byte of `w`'s DLTA chunk set to 9, a kind no version "
	 "defines yet: unsupported (6.12.4)."},
	{"series-shape.alcm", "decode", ALCM_E_CORRUPT, "no tensor of that name, dtype and shape",
	 v_series_shape,
	 "series-lossless.alcm whose frame 0 stores `w` with shape [2, 2]: a delta's reference "
	 "must have the same name, dtype and shape (6.12.6)."},
	{"series-key-record.alcm", "decode", ALCM_E_CORRUPT, "says keyframe",
	 v_series_key_record,
	 "series-lossless.alcm whose frame 1 record says keyframe while its tensors are DLTA "
	 "sections."},
};
#define MV_COUNT (sizeof(mv_vectors) / sizeof(mv_vectors[0]))

static const char *mv_status_name(int st)
{
	switch (st) {
	case ALCM_OK: return "ok";
	case ALCM_E_CORRUPT: return "corrupt";
	case ALCM_E_DIGEST: return "digest";
	case ALCM_E_LIMIT: return "limit";
	case ALCM_E_UNSUPPORTED: return "unsupported";
	case ALCM_E_NOTFOUND: return "notfound";
	default: return "other";
	}
}

/* The manifest: one line per vector, tab-separated: name, stage, status, expectation. */
static char *mv_manifest(void)
{
	size_t cap = 8192, n = 0;
	char *m = malloc(cap);
	if (!m)
		return NULL;
	n += (size_t)snprintf(m + n, cap - n,
	                      "# alcm container test vectors: spec/alcm-format.md chapter 9.\n"
	                      "# file\tstage\tstatus\tdetail substring, or what an ok vector holds\n");
	for (size_t i = 0; i < MV_COUNT; i++)
		n += (size_t)snprintf(m + n, cap - n, "%s\t%s\t%s\t%s\n", mv_vectors[i].name,
		                      mv_vectors[i].stage, mv_status_name(mv_vectors[i].status),
		                      mv_vectors[i].expect);
	return m;
}

/* One xxd(1) line per 16 bytes, exactly as `xxd file` prints them (used by the test). */
__attribute__((unused)) static char *mv_xxd(const uint8_t *p, size_t n)
{
	size_t lines = (n + 15) / 16;
	char *out = malloc(lines * 80 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t at = 0; at < n; at += 16) {
		size_t k = n - at < 16 ? n - at : 16;
		o += sprintf(o, "%08zx: ", at);
		for (size_t i = 0; i < 16; i++) {
			if (i < k)
				o += sprintf(o, "%02x", p[at + i]);
			else
				o += sprintf(o, "  ");
			if (i % 2 == 1)
				*o++ = ' ';
		}
		*o++ = ' ';
		for (size_t i = 0; i < k; i++)
			*o++ = p[at + i] >= 0x20 && p[at + i] < 0x7f ? (char)p[at + i] : '.';
		*o++ = '\n';
	}
	*o = '\0';
	return out;
}

static int mv_write(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(p, 1, n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Writes every vector and expected.txt into dir. @return 0 or -1. */
static int mv_make_all(const char *dir, const char *scratch)
{
	char path[4096];
	for (size_t i = 0; i < MV_COUNT; i++) {
		mv_bytes b = {0};
		int st = mv_vectors[i].build(&b, scratch);
		snprintf(path, sizeof(path), "%s/%s", dir, mv_vectors[i].name);
		if (st || mv_write(path, b.p, b.n)) {
			fprintf(stderr, "make_vectors: cannot make '%s': %s\n", path, alcm_strerror(st));
			free(b.p);
			return -1;
		}
		free(b.p);
	}
	char *m = mv_manifest();
	snprintf(path, sizeof(path), "%s/expected.txt", dir);
	int r = m ? mv_write(path, m, strlen(m)) : -1;
	free(m);
	return r;
}

#ifndef ALCM_VECTORS_NO_MAIN
int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_vectors DIR\n");
		return 2;
	}
	return mv_make_all(argv[1], argv[1]) ? 1 : 0;
}
#endif
