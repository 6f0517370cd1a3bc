/*
 * The compressed tensor directory (spec 6.3.5): a 1.1 archive stores its directory as a TDRZ
 * when that is smaller and reads back the same tensors; an archive that is 1.0 keeps its
 * TDIR; frames count TDIR and TDRZ alike; forged TDRZ payloads under valid digests are
 * refused with the right class, naming the section, and a forged length costs no memory.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define NT 40
#define NO_FRAME 0xffffffffu /* alcm_archive_open_frame: the last frame */
#define ROWS 8
#define COLS 64

static float vals[NT][ROWS * COLS];
static char names[NT][32];

static void make_values(void)
{
	uint64_t s = 15;
	for (int t = 0; t < NT; t++) {
		snprintf(names[t], sizeof(names[t]), "model.layers.%d.mlp.weight", t);
		for (int i = 0; i < ROWS * COLS; i++)
			vals[t][i] = (float)(0.02 * tu_gauss(&s));
	}
}

/* Packs the NT tensors (max-error 0.001, or lossless) into memory. @return the minor. */
static unsigned pack_all(int lossy, unsigned threads, uint8_t **out, size_t *len)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	if (lossy) {
		o.mode = ALCM_MODE_MAX_ERROR;
		o.bound = 0.001;
	}
	o.threads = threads;
	alcm_writer *w;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
	for (int t = 0; t < NT; t++) {
		alcm_tensor x;
		memset(&x, 0, sizeof(x));
		x.name = names[t];
		x.name_len = strlen(names[t]);
		x.dtype = ALCM_DTYPE_F32;
		x.ndim = 2;
		x.shape[0] = ROWS;
		x.shape[1] = COLS;
		x.data = (const uint8_t *)vals[t];
		x.nbytes = sizeof(vals[t]);
		assert_int_equal(alcm_encoder_add(e, &x, NULL), ALCM_OK);
	}
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	assert_int_equal(alcm_writer_memory(w, &buf, len), ALCM_OK);
	*out = malloc(*len);
	memcpy(*out, buf, *len);
	unsigned minor = alcm_writer_minor(w);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	return minor;
}

/* How many sections of `type` the archive has; *last gets the last one's info, *at its index. */
static int count_type(alcm_reader *r, const char *type, alcm_section_info *last, uint32_t *at)
{
	int n = 0;
	for (uint32_t i = 0; i < alcm_reader_section_count(r); i++) {
		alcm_section_info si;
		assert_int_equal(alcm_reader_section_info(r, i, &si), ALCM_OK);
		if (memcmp(si.type, type, 4) == 0) {
			n++;
			if (last)
				*last = si;
			if (at)
				*at = i;
		}
	}
	return n;
}

/* A lossy archive is 1.1 and stores a TDRZ, at most a quarter of its directory; the same
 * bytes at 1 and 2 threads; every name, shape and value (within the bound) reads back. */
static void test_lossy_archive(void **state)
{
	(void)state;
	uint8_t *a, *b;
	size_t n, nb;
	assert_int_equal(pack_all(1, 1, &a, &n), 1);
	assert_int_equal(pack_all(1, 2, &b, &nb), 1);
	assert_int_equal(n, nb);
	assert_memory_equal(a, b, n);
	alcm_reader *r;
	assert_int_equal(alcm_reader_open_memory(&r, a, n, "d.alcm", NULL, NULL, 0), ALCM_OK);
	alcm_section_info z = {0};
	uint32_t zi = 0;
	assert_int_equal(count_type(r, "TDIR", NULL, NULL), 0);
	assert_int_equal(count_type(r, "TDRZ", &z, &zi), 1);
	assert_true(z.known);
	uint8_t len8[8];
	assert_int_equal(alcm_reader_section_pread(r, zi, 0, len8, 8), ALCM_OK);
	uint64_t raw = 0;
	for (int i = 7; i >= 0; i--)
		raw = raw << 8 | len8[i];
	assert_true(raw > 4 * z.length);
	assert_int_equal(alcm_archive_frame_count(r), 1);
	alcm_archive *ar;
	assert_int_equal(alcm_archive_open(&ar, r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_tensor_count(ar), NT);
	static float y[ROWS * COLS];
	for (int t = 0; t < NT; t++) {
		alcm_tensor_info ti;
		assert_int_equal(alcm_archive_tensor_info(ar, (size_t)t, &ti), ALCM_OK);
		assert_int_equal(ti.name_len, strlen(names[t]));
		assert_memory_equal(ti.name, names[t], ti.name_len);
		assert_int_equal(ti.ndim, 2);
		assert_int_equal(ti.shape[0], ROWS);
		assert_int_equal(ti.shape[1], COLS);
		assert_int_equal(alcm_archive_decode(ar, (size_t)t, y, sizeof(y)), ALCM_OK);
		for (int i = 0; i < ROWS * COLS; i++)
			assert_true(fabs((double)y[i] - vals[t][i]) <= 0.001);
	}
	alcm_archive_free(ar);
	alcm_reader_free(r);
	free(a);
	free(b);
}

/* An archive that uses no other 1.1 feature stays 1.0 with a plain TDIR. */
static void test_lossless_keeps_tdir(void **state)
{
	(void)state;
	uint8_t *a;
	size_t n;
	assert_int_equal(pack_all(0, 1, &a, &n), 0);
	alcm_reader *r;
	assert_int_equal(alcm_reader_open_memory(&r, a, n, "d.alcm", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(count_type(r, "TDIR", NULL, NULL), 1);
	assert_int_equal(count_type(r, "TDRZ", NULL, NULL), 0);
	alcm_reader_free(r);
	free(a);
}

/* The lossless archive's first LDAT and its directory payload (which names that LDAT as
 * section 0 only when the tensor count is 1: so a one-tensor archive is made here). */
static void one_tensor(uint8_t **ldat, size_t *nl, uint8_t **dir, size_t *nd)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	alcm_writer *w;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
	alcm_tensor x;
	memset(&x, 0, sizeof(x));
	x.name = names[0];
	x.name_len = strlen(names[0]);
	x.dtype = ALCM_DTYPE_F32;
	x.ndim = 1;
	x.shape[0] = ROWS * COLS;
	x.data = (const uint8_t *)vals[0];
	x.nbytes = sizeof(vals[0]);
	assert_int_equal(alcm_encoder_add(e, &x, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	alcm_reader *r;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "o.alcm", NULL, NULL, 0), ALCM_OK);
	alcm_section_info si;
	assert_int_equal(alcm_reader_section_info(r, 0, &si), ALCM_OK);
	assert_memory_equal(si.type, "LDAT", 4);
	*nl = (size_t)si.length;
	*ldat = malloc(*nl);
	assert_int_equal(alcm_reader_section_read(r, 0, *ldat, *nl), ALCM_OK);
	uint32_t di = 0;
	assert_int_equal(count_type(r, "TDIR", &si, &di), 1);
	*nd = (size_t)si.length;
	*dir = malloc(*nd);
	assert_int_equal(alcm_reader_section_read(r, di, *dir, *nd), ALCM_OK);
	alcm_reader_free(r);
	alcm_encoder_free(e);
	alcm_writer_free(w);
}

/* A TDRZ payload: `declared` as the length, then `dir` as a zstd frame (content size written
 * when `csize`), `cut` bytes cut off its end and `extra` zero bytes after it. */
static size_t tdrz(uint8_t *out, size_t cap, uint64_t declared, const uint8_t *dir, size_t nd,
                   int csize, size_t cut, size_t extra)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, csize);
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
	size_t f = ZSTD_compress2(c, out + 8, cap - 8 - extra, dir, nd);
	ZSTD_freeCCtx(c);
	assert_false(ZSTD_isError(f));
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(declared >> (8 * i));
	memset(out + 8 + f - cut, 0, extra);
	return 8 + f - cut + extra;
}

typedef struct peak_alloc {
	alcm_allocator a;
	size_t biggest;
} peak_alloc;

static void *pk_malloc(void *o, size_t n)
{
	peak_alloc *p = o;
	if (n > p->biggest)
		p->biggest = n;
	return malloc(n);
}

static void *pk_realloc(void *o, void *q, size_t n)
{
	peak_alloc *p = o;
	if (n > p->biggest)
		p->biggest = n;
	return realloc(q, n);
}

static void pk_free(void *o, void *q)
{
	(void)o;
	free(q);
}

/* Writes [LDAT, extra directory sections...] and opens frame `frame` through an allocator that
 * records its biggest block. @return the open status; *detail gets the message. */
static int open_forged(const uint8_t *ldat, size_t nl, const char *const *types,
                       const uint8_t *const *pay, const size_t *np, const uint32_t *tags,
                       size_t nsec, uint32_t frame, const alcm_limits *lim, size_t *biggest,
                       char *detail, size_t dcap, uint32_t *frames)
{
	alcm_writer *w;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_require_minor(w, 1), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "LDAT", ALCM_SECTION_CRITICAL, 0, ldat, nl,
	                                         NULL),
	                 ALCM_OK);
	for (size_t i = 0; i < nsec; i++)
		assert_int_equal(alcm_writer_add_section(w, types[i], ALCM_SECTION_CRITICAL, tags[i],
		                                         pay[i], np[i], NULL),
		                 ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	alcm_reader *r;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "f.alcm", lim, NULL, 0), ALCM_OK);
	if (frames)
		*frames = alcm_archive_frame_count(r);
	peak_alloc pk = {{pk_malloc, pk_realloc, pk_free, NULL}, 0};
	pk.a.opaque = &pk;
	alcm_archive *ar = NULL;
	int st = alcm_archive_open_frame(&ar, r, frame, &pk.a);
	static float y[ROWS * COLS];
	if (!st)
		st = alcm_archive_decode(ar, 0, y, sizeof(y));
	if (!st)
		assert_memory_equal(y, vals[0], sizeof(y));
	snprintf(detail, dcap, "%s", st ? alcm_archive_detail(ar) : "");
	*biggest = pk.biggest;
	alcm_archive_free(ar);
	alcm_reader_free(r);
	alcm_writer_free(w);
	return st;
}

static int open_one(const uint8_t *ldat, size_t nl, const uint8_t *p, size_t n,
                    const alcm_limits *lim, size_t *biggest, char *detail, size_t dcap)
{
	static const char *const types[1] = {"TDRZ"};
	const uint8_t *pay[1] = {p};
	size_t np[1] = {n};
	uint32_t tags[1] = {0};
	return open_forged(ldat, nl, types, pay, np, tags, 1, NO_FRAME, lim, biggest, detail,
	                   dcap, NULL);
}

/* Frames are the tags of TDIR and TDRZ sections alike: frame 0 a TDIR, frame 1 a TDRZ of the
 * same directory, and frame 0 again superseded by a later TDRZ. */
static void test_frames(void **state)
{
	(void)state;
	uint8_t *ldat, *dir;
	size_t nl, nd, big;
	one_tensor(&ldat, &nl, &dir, &nd);
	uint8_t z[4096];
	size_t nz = tdrz(z, sizeof(z), nd, dir, nd, 1, 0, 0);
	static const char *const types[3] = {"TDIR", "TDRZ", "TDRZ"};
	const uint8_t *pay[3] = {dir, z, z};
	size_t np[3] = {nd, nz, nz};
	uint32_t tags[3] = {0, 1, 0}, frames;
	char d[256];
	for (uint32_t f = 0; f < 2; f++)
		assert_int_equal(open_forged(ldat, nl, types, pay, np, tags, 2, f, NULL, &big, d,
		                             sizeof(d), &frames),
		                 ALCM_OK);
	assert_int_equal(frames, 2);
	assert_int_equal(open_forged(ldat, nl, types, pay, np, tags, 2, 2, NULL, &big, d, sizeof(d),
	                             &frames),
	                 ALCM_E_NOTFOUND);
	assert_int_equal(open_forged(ldat, nl, types, pay, np, tags, 3, 0, NULL, &big, d, sizeof(d),
	                             &frames),
	                 ALCM_OK);
	assert_int_equal(frames, 3);
	free(ldat);
	free(dir);
}

/* Forged payloads, each under a valid digest, refused with their class; the message names
 * the section; no forged length makes the reader allocate it. */
static void test_forged(void **state)
{
	(void)state;
	uint8_t *ldat, *dir;
	size_t nl, nd, big;
	one_tensor(&ldat, &nl, &dir, &nd);
	uint8_t z[4096];
	char d[256];
	size_t n = tdrz(z, sizeof(z), nd, dir, nd, 1, 0, 0);
	assert_int_equal(open_one(ldat, nl, z, n, NULL, &big, d, sizeof(d)), ALCM_OK);
	struct {
		uint64_t declared;
		int csize;
		size_t cut, extra;
		int status;
		const char *why;
	} cases[] = {
		{nd + 1, 1, 0, 0, ALCM_E_CORRUPT, "no zstd frame of the declared length"},
		{nd - 1, 1, 0, 0, ALCM_E_CORRUPT, "no zstd frame of the declared length"},
		{nd, 0, 0, 0, ALCM_E_CORRUPT, "no zstd frame of the declared length"},
		{nd, 1, 3, 0, ALCM_E_CORRUPT, "ends inside its zstd frame"},
		{nd, 1, 0, 1, ALCM_E_CORRUPT, "has bytes after its zstd frame"},
		{(uint64_t)1 << 40, 1, 0, 0, ALCM_E_LIMIT, "larger than the metadata limit"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = tdrz(z, sizeof(z), cases[i].declared, dir, nd, cases[i].csize, cases[i].cut,
		         cases[i].extra);
		assert_int_equal(open_one(ldat, nl, z, n, NULL, &big, d, sizeof(d)), cases[i].status);
		if (!strstr(d, cases[i].why) || !strstr(d, "TDRZ section 1"))
			fail_msg("case %zu: '%s'", i, d);
		assert_true(big < (size_t)1 << 20); /* the decoder context, never the length */
	}
	/* Shorter than its length field. */
	assert_int_equal(open_one(ldat, nl, z, 7, NULL, &big, d, sizeof(d)), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "shorter than its 8-byte length"));
	/* A damaged block: zstd's own checks refuse it. */
	n = tdrz(z, sizeof(z), nd, dir, nd, 1, 0, 0);
	z[n - 2] ^= 0xff;
	z[14] ^= 0x40;
	assert_int_equal(open_one(ldat, nl, z, n, NULL, &big, d, sizeof(d)), ALCM_E_CORRUPT);
	/* A valid frame of a directory that breaks 6.3: the TDIR rules apply to what it yields. */
	uint8_t bad[8] = {2, 0, 0, 0, 0, 0, 0, 0};
	n = tdrz(z, sizeof(z), sizeof(bad), bad, sizeof(bad), 1, 0, 0);
	assert_int_equal(open_one(ldat, nl, z, n, NULL, &big, d, sizeof(d)), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "TDRZ section 1"));
	/* A directory bigger than a tightened limit. */
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_meta_bytes = nd - 1;
	n = tdrz(z, sizeof(z), nd, dir, nd, 1, 0, 0);
	assert_int_equal(open_one(ldat, nl, z, n, &lim, &big, d, sizeof(d)), ALCM_E_LIMIT);
	free(ldat);
	free(dir);
}

/* A frame that declares 64 MiB, and yields them, as zeros: the buffer grows as bytes come,
 * never to more than the declared length; a frame that declares 64 MiB and stops after one
 * block never costs more than the block it yielded. */
static void test_forged_length_memory(void **state)
{
	(void)state;
	uint8_t *ldat, *dir;
	size_t nl, nd, big;
	one_tensor(&ldat, &nl, &dir, &nd);
	size_t huge = (size_t)64 << 20;
	uint8_t *zeros = calloc(1, huge);
	size_t cap = ZSTD_compressBound(huge) + 16;
	uint8_t *z = malloc(cap);
	char d[256];
	size_t n = tdrz(z, cap, huge, zeros, huge, 1, 0, 0);
	assert_int_equal(open_one(ldat, nl, z, n, NULL, &big, d, sizeof(d)), ALCM_E_CORRUPT);
	assert_true(big <= huge);
	/* The same frame cut after its first compressed block (2 KiB in): refused, small. */
	n = tdrz(z, cap, huge, zeros, huge, 1, 0, 0);
	size_t keep = 8 + 64 < n ? 8 + 64 : n - 1;
	assert_int_equal(open_one(ldat, nl, z, keep, NULL, &big, d, sizeof(d)), ALCM_E_CORRUPT);
	assert_true(big <= (size_t)4 << 20);
	free(zeros);
	free(z);
	free(ldat);
	free(dir);
}

int main(void)
{
	make_values();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lossy_archive),
		cmocka_unit_test(test_lossless_keeps_tdir),
		cmocka_unit_test(test_frames),
		cmocka_unit_test(test_forged),
		cmocka_unit_test(test_forged_length_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
