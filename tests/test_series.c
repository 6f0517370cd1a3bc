/* Checkpoint series (spec 6.12): frames coded against earlier frames or a base archive, their
 * records and settings, closed-loop lossy frames, and readers against hostile chains. */
#include "testutil.h"
#include "container.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXT 8
#define N 3000

/* A checkpoint: up to MAXT tensors with their own buffers. */
typedef struct ck {
	alcm_tensor t[MAXT];
	uint8_t buf[MAXT][N * 8];
	char name[MAXT][16];
	size_t n;
} ck;

static void add(ck *c, const char *name, int dtype, uint32_t ndim, uint64_t d0, uint64_t d1)
{
	alcm_tensor *t = &c->t[c->n];
	memset(t, 0, sizeof(*t));
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", name);
	t->name = c->name[c->n];
	t->name_len = strlen(name);
	t->dtype = dtype;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	uint64_t e = ndim == 1 ? d0 : d0 * d1;
	t->nbytes = e * alcm_dtype_size(dtype);
	t->data = c->buf[c->n];
	c->n++;
}

static void put_float(int dtype, uint8_t *p, uint64_t i, double v)
{
	float f = (float)v;
	uint32_t u;
	memcpy(&u, &f, 4);
	switch (dtype) {
	case ALCM_DTYPE_F32: memcpy(p + 4 * i, &f, 4); break;
	case ALCM_DTYPE_F64: memcpy(p + 8 * i, &v, 8); break;
	case ALCM_DTYPE_BF16: {
		uint16_t h = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
		memcpy(p + 2 * i, &h, 2);
		break;
	}
	default: { /* float16 of a value in range, truncated: enough for test data */
		uint32_t s = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, m = u & 0x7fffff;
		uint16_t h = e < 113 ? (uint16_t)s : (uint16_t)(s | ((e - 112) << 10) | (m >> 13));
		memcpy(p + 2 * i, &h, 2);
	}
	}
}

/*
 * Checkpoint k of a run: weights that drift by a share `rate` of their magnitude per step,
 * a third of them frozen; float32 with specials, bfloat16, float16, float64 and an int32
 * counter. From checkpoint 3 a tensor appears ("late"); at 5 "b16" changes shape and "cnt"
 * its dtype; "gone" exists only before 4.
 */
static void checkpoint(ck *c, int k, double rate)
{
	memset(c, 0, sizeof(*c));
	static const int fdt[4] = {ALCM_DTYPE_F32, ALCM_DTYPE_BF16, ALCM_DTYPE_F16, ALCM_DTYPE_F64};
	static const char *names[4] = {"w32", "b16", "h16", "d64"};
	for (int d = 0; d < 4; d++) {
		if (d == 1 && k >= 5)
			add(c, names[d], fdt[d], 2, 50, 60);
		else
			add(c, names[d], fdt[d], 2, 30, 100);
		alcm_tensor *t = &c->t[c->n - 1];
		uint64_t e = t->shape[0] * t->shape[1], seed = 7 + (uint64_t)d;
		for (uint64_t i = 0; i < e; i++) {
			double v = tu_gauss(&seed) * 0.05;
			for (int s = 1; s <= k; s++) {
				uint64_t s2 = ((uint64_t)s << 32) ^ (i * 2654435761u) ^ (uint64_t)d;
				if (i % 3)
					v += tu_gauss(&s2) * rate * 0.05;
			}
			put_float(t->dtype, (uint8_t *)t->data, i, v);
		}
		if (d == 0) {
			float sp[4] = {NAN, INFINITY, -0.0f, 1e-40f};
			for (int s = 0; s < 4; s++)
				memcpy((uint8_t *)t->data + 4 * (size_t)(s * 700 + k), &sp[s], 4);
		}
	}
	int cdt = k >= 5 ? ALCM_DTYPE_I64 : ALCM_DTYPE_I32;
	add(c, "cnt", cdt, 1, 100, 0);
	for (int i = 0; i < 100; i++) {
		int64_t v = i * 1000 + k;
		memcpy(c->buf[c->n - 1] + (size_t)i * alcm_dtype_size(cdt), &v,
		       alcm_dtype_size(cdt));
	}
	if (k >= 3) {
		add(c, "late", ALCM_DTYPE_F32, 1, 64, 0);
		for (int i = 0; i < 64; i++)
			put_float(ALCM_DTYPE_F32, c->buf[c->n - 1], (uint64_t)i, i * 0.25 + k * 0.001);
	}
	if (k < 4) {
		add(c, "gone", ALCM_DTYPE_U8, 1, 10, 0);
		memset(c->buf[c->n - 1], k, 10);
	}
}

/* Frame k of the series at path (new when k is 0). */
static int frame_write(const char *path, const ck *c, int k, const alcm_series_options *o,
                       const char *base, alcm_series_report *rep)
{
	alcm_writer *w = NULL;
	alcm_reader *r = NULL, *b = NULL;
	alcm_series *s = NULL;
	int st = k == 0 ? alcm_writer_open_file(&w, path, ALCM_WRITE_OVERWRITE | ALCM_WRITE_STREAM |
	                                                     ALCM_WRITE_NO_SYNC, NULL)
	                : alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC);
	assert_int_equal(st, ALCM_OK);
	if (k)
		assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	if (base)
		assert_int_equal(alcm_reader_open_file(&b, base, NULL, NULL, 0), ALCM_OK);
	st = alcm_series_begin(&s, w, r, b, o, NULL);
	for (size_t i = 0; !st && i < c->n; i++)
		st = alcm_series_add(s, &c->t[i], NULL);
	if (!st)
		st = alcm_series_finish(s, rep);
	if (!st)
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_series_free(s);
	alcm_writer_free(w);
	alcm_reader_free(r);
	alcm_reader_free(b);
	return st;
}

/* Decodes frame `frame` and checks every tensor against c: bit for bit when mode is
 * lossless, else within the bound (specials exact). @return the number of delta tensors. */
static int frame_check(const char *path, uint32_t frame, const ck *c, const char *base,
                       int mode, double bound)
{
	alcm_reader *r = NULL, *b = NULL;
	alcm_archive *a = NULL;
	int deltas = 0;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open_frame(&a, r, frame, NULL), ALCM_OK);
	if (base) {
		assert_int_equal(alcm_reader_open_file(&b, base, NULL, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_archive_set_base(a, b), ALCM_OK);
	}
	assert_int_equal(alcm_archive_tensor_count(a), c->n);
	uint8_t *out = malloc(N * 8);
	for (size_t i = 0; i < c->n; i++) {
		alcm_tensor_info ti;
		assert_int_equal(alcm_archive_tensor_info(a, i, &ti), ALCM_OK);
		assert_int_equal(ti.dtype, c->t[i].dtype);
		assert_int_equal(ti.raw_bytes, c->t[i].nbytes);
		int st = alcm_archive_decode(a, i, out, N * 8);
		if (st)
			fail_msg("frame %u tensor %zu: %s", frame, i, alcm_archive_detail(a));
		alcm_error_stats es;
		assert_int_equal(alcm_tensor_measure(&c->t[i], out, &es), ALCM_OK);
		int m = alcm_dtype_is_float(ti.dtype) ? mode : ALCM_MODE_LOSSLESS;
		if (!alcm_error_within(&es, m, bound))
			fail_msg("frame %u tensor '%s': max error %g over %g (identical %d, specials %d)",
			         frame, c->name[i], es.max_abs_error, bound, es.identical,
			         es.specials_exact);
		if (m == ALCM_MODE_LOSSLESS)
			assert_true(es.identical);
		deltas += alcm_archive_tensor_delta(a, i);
	}
	free(out);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_reader_free(b);
	return deltas;
}

static void run_policy(int reference, uint32_t every, int mode, double bound, int frames)
{
	const char *path = tu_path("series.alcm");
	alcm_series_options o;
	alcm_series_options_default(&o);
	o.reference = reference;
	o.keyframe_every = every;
	o.pack.mode = mode;
	o.pack.bound = bound;
	o.pack.threads = 1;
	o.pack.chunk_bytes = 4096; /* several chunks per tensor */
	ck *c = malloc(sizeof(ck));
	int keys = 0, deltas = 0;
	uint32_t key = 0;
	for (int k = 0; k < frames; k++) {
		alcm_series_report rep;
		/* A drift small enough that w32, h16 and d64 stay deltas six frames from the keyframe
		 * within the writer's decode-cost budget (spec 6.12.7; at 1e-3 a float64 residual of six
		 * bytes a value is stored whole). */
		checkpoint(c, k, 2e-5);
		assert_int_equal(frame_write(path, c, k, &o, NULL, &rep), ALCM_OK);
		assert_int_equal(rep.frame, (uint32_t)k);
		keys += rep.keyframe;
		if (k == 0 || every)
			assert_int_equal(rep.keyframe, k == 0 || (every && k % (every + 1) == 0));
		if (rep.keyframe) {
			key = (uint32_t)k;
			continue;
		}
		/* The reference each policy names (spec 6.12.7). */
		uint32_t off = (uint32_t)k - key;
		uint32_t want = reference == ALCM_SERIES_REF_ANCHOR     ? key
		                : reference == ALCM_SERIES_REF_PREVIOUS ? (uint32_t)k - 1
		                                                        : key + (off & (off - 1));
		assert_int_equal(rep.ref_frame, want);
		assert_false(rep.ref_base);
		assert_true(rep.delta_tensors >= 3); /* w32, h16 and d64 keep dtype and shape */
	}
	/* Every frame decodes, in any order, with what it held. */
	for (int k = frames; k-- > 0;) {
		checkpoint(c, k, 2e-5);
		deltas += frame_check(path, (uint32_t)k, c, NULL, mode, bound);
	}
	assert_true(deltas > frames);
	assert_true(keys >= 1);
	free(c);
	unlink(path);
}

static void test_lossless_keyframe(void **state)
{
	(void)state;
	run_policy(ALCM_SERIES_REF_ANCHOR, 0, ALCM_MODE_LOSSLESS, 0, 7);
}

static void test_lossless_previous_every(void **state)
{
	(void)state;
	run_policy(ALCM_SERIES_REF_PREVIOUS, 2, ALCM_MODE_LOSSLESS, 0, 7);
}

static void test_lossless_tree(void **state)
{
	(void)state;
	run_policy(ALCM_SERIES_REF_TREE, 0, ALCM_MODE_LOSSLESS, 0, 8);
}

static void test_lossy_closed_loop(void **state)
{
	(void)state;
	/* Chains of deltas against decoded references: every frame within the bound of its own
	 * values, the last one through six deltas. */
	run_policy(ALCM_SERIES_REF_PREVIOUS, 0, ALCM_MODE_MAX_ERROR, 1e-3, 7);
	run_policy(ALCM_SERIES_REF_ANCHOR, 0, ALCM_MODE_REL_ERROR, 1e-2, 5);
}

/* A delta frame is smaller than its keyframe when little changed. */
static void test_deltas_are_smaller(void **state)
{
	(void)state;
	const char *p = tu_path("small.alcm");
	ck *c = malloc(sizeof(ck));
	alcm_series_report r0, r1;
	checkpoint(c, 5, 1e-4);
	assert_int_equal(frame_write(p, c, 0, NULL, NULL, &r0), ALCM_OK);
	checkpoint(c, 6, 1e-4);
	assert_int_equal(frame_write(p, c, 1, NULL, NULL, &r1), ALCM_OK);
	assert_true(r0.keyframe && !r1.keyframe);
	assert_true(r1.stored_bytes * 10 < r0.stored_bytes * 7);
	free(c);
	unlink(p);
}

/* The settings the series was created with come back from its first OPTS record; options
 * given for one frame are recorded with it only. */
static void test_settings_record(void **state)
{
	(void)state;
	const char *p = tu_path("opts.alcm");
	ck *c = malloc(sizeof(ck));
	alcm_series_options o, got;
	alcm_series_options_default(&o);
	o.pack.mode = ALCM_MODE_MAX_ERROR;
	o.pack.bound = 2e-3;
	o.pack.level = 5;
	o.pack.chunk_bytes = 8192;
	o.keyframe_every = 3;
	o.reference = ALCM_SERIES_REF_PREVIOUS;
	checkpoint(c, 0, 1e-4);
	assert_int_equal(frame_write(p, c, 0, &o, NULL, NULL), ALCM_OK);
	alcm_reader *r = NULL;
	for (int k = 1; k < 4; k++) {
		assert_int_equal(alcm_reader_open_file(&r, p, NULL, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_series_options_load(r, &got), ALCM_OK);
		alcm_reader_free(r);
		assert_int_equal(got.pack.mode, ALCM_MODE_MAX_ERROR);
		assert_true(got.pack.bound == 2e-3);
		assert_int_equal(got.pack.level, 5);
		assert_int_equal(got.pack.chunk_bytes, 8192);
		assert_int_equal(got.keyframe_every, 3);
		assert_int_equal(got.reference, ALCM_SERIES_REF_PREVIOUS);
		if (k == 2)
			got.pack.level = 1; /* one frame's override */
		checkpoint(c, k, 1e-4);
		assert_int_equal(frame_write(p, c, k, &got, NULL, NULL), ALCM_OK);
	}
	assert_int_equal(alcm_reader_open_file(&r, p, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_series_options_load(r, &got), ALCM_OK);
	assert_int_equal(got.pack.level, 5);
	alcm_series_frame f;
	assert_int_equal(alcm_series_frame_read(r, 3, &f), ALCM_OK);
	assert_true(!f.keyframe && f.ref_frame == 2 && !f.ref_base);
	assert_int_equal(alcm_series_frame_read(r, 9, &f), ALCM_E_NOTFOUND);
	alcm_reader_free(r);
	checkpoint(c, 3, 1e-4);
	frame_check(p, 3, c, NULL, ALCM_MODE_MAX_ERROR, 2e-3);
	free(c);
	unlink(p);
}

/* A fine-tune against a base archive: the base is recorded by its identity, needed to decode,
 * and another archive in its place is refused. */
static void test_base(void **state)
{
	(void)state;
	const char *bp = tu_path("base.alcm"), *op = tu_path("other.alcm"),
	           *fp = tu_path("ft.alcm");
	ck *c = malloc(sizeof(ck));
	checkpoint(c, 4, 1e-4);
	assert_int_equal(frame_write(bp, c, 0, NULL, NULL, NULL), ALCM_OK);
	checkpoint(c, 2, 1e-4);
	assert_int_equal(frame_write(op, c, 0, NULL, NULL, NULL), ALCM_OK);
	checkpoint(c, 4, 2e-5);
	memmove(c->buf[0], c->buf[0] + 4, 40); /* a fine-tune moved a few values */
	alcm_series_report rep;
	assert_int_equal(frame_write(fp, c, 0, NULL, bp, &rep), ALCM_OK);
	assert_true(!rep.keyframe && rep.ref_base && rep.delta_tensors >= 4);
	assert_true(frame_check(fp, 0, c, bp, ALCM_MODE_LOSSLESS, 0) >= 4);
	/* Without the base; with another one. */
	alcm_reader *r = NULL, *o = NULL;
	alcm_archive *a = NULL;
	uint8_t out[N * 8];
	assert_int_equal(alcm_reader_open_file(&r, fp, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_decode(a, 0, out, sizeof(out)), ALCM_E_NOTFOUND);
	assert_non_null(strstr(alcm_archive_detail(a), "was not given"));
	assert_int_equal(alcm_reader_open_file(&o, op, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_set_base(a, o), ALCM_E_DIGEST);
	uint8_t id[32];
	char name[256];
	assert_int_equal(alcm_series_base_hint(r, id, name, sizeof(name)), ALCM_OK);
	assert_int_equal(alcm_series_base_id(o, out), ALCM_OK);
	assert_memory_not_equal(id, out, 32);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_reader_free(o);
	/* A later frame of the fine-tune series decodes through the base too. */
	checkpoint(c, 5, 2e-5);
	assert_int_equal(frame_write(fp, c, 1, NULL, bp, &rep), ALCM_OK);
	assert_true(!rep.keyframe);
	frame_check(fp, 1, c, bp, ALCM_MODE_LOSSLESS, 0);
	/* Appending to the base changes its identity: the series no longer accepts it. */
	checkpoint(c, 5, 1e-4);
	assert_int_equal(frame_write(bp, c, 1, NULL, NULL, NULL), ALCM_OK);
	assert_int_equal(alcm_reader_open_file(&r, fp, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_open_file(&o, bp, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open_frame(&a, r, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_set_base(a, o), ALCM_E_DIGEST);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_reader_free(o);
	free(c);
	unlink(bp);
	unlink(op);
	unlink(fp);
}

/* Same checkpoints and settings, same bytes, whatever the thread count. */
static void test_deterministic(void **state)
{
	(void)state;
	const char *p1 = tu_path("t1.alcm"), *p2 = tu_path("t2.alcm");
	ck *c = malloc(sizeof(ck));
	alcm_series_options o;
	alcm_series_options_default(&o);
	o.pack.chunk_bytes = 4096;
	for (int k = 0; k < 3; k++) {
		checkpoint(c, k, 1e-4);
		o.pack.threads = 1;
		assert_int_equal(frame_write(p1, c, k, &o, NULL, NULL), ALCM_OK);
		o.pack.threads = 3;
		assert_int_equal(frame_write(p2, c, k, &o, NULL, NULL), ALCM_OK);
	}
	size_t n1, n2;
	uint8_t *a = tu_read_file(p1, &n1), *b = tu_read_file(p2, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(a, b, n1);
	free(a);
	free(b);
	free(c);
	unlink(p1);
	unlink(p2);
}

static void test_refusals(void **state)
{
	(void)state;
	const char *p = tu_path("ref.alcm");
	alcm_writer *w = NULL;
	alcm_series *s = NULL;
	alcm_series_options o;
	/* Modes without a per-value bound, pruning, and runs the readers would refuse. */
	static const int bad_mode[2] = {ALCM_MODE_SNR, ALCM_MODE_BITS};
	for (int i = 0; i < 4; i++) {
		alcm_series_options_default(&o);
		if (i < 2) {
			o.pack.mode = bad_mode[i];
			o.pack.bound = 30;
			o.pack.bits = 8;
		} else if (i == 2) {
			o.pack.mode = ALCM_MODE_MAX_ERROR;
			o.pack.bound = 1e-3;
			o.pack.prune = 0.1;
		} else {
			o.keyframe_every = ALCM_SERIES_MAX_KEYFRAME_EVERY + 1;
		}
		assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_series_begin(&s, w, NULL, NULL, &o, NULL), ALCM_E_ARG);
		assert_true(strlen(alcm_series_detail(s)) > 0);
		alcm_series_free(s);
		alcm_writer_free(w);
	}
	/* A series cannot continue a 1.0 archive: its header cannot announce 1.1. */
	ck *c = malloc(sizeof(ck));
	checkpoint(c, 0, 1e-4);
	alcm_encoder *e = NULL;
	assert_int_equal(alcm_writer_open_file(&w, p, ALCM_WRITE_OVERWRITE | ALCM_WRITE_STREAM |
	                                               ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, NULL, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, &c->t[0], NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	assert_int_equal(frame_write(p, c, 1, NULL, NULL, NULL), ALCM_E_UNSUPPORTED);
	free(c);
	unlink(p);
}

/* ---- hostile chains: records forged, digests recomputed so the series checks fire ---- */

/* Rewrites section i of an archive image in place and recomputes its digest and the table's. */
static void reseal(uint8_t *img, unsigned i)
{
	uint64_t toff = alcm_load64(img + ALCM_SLOT_A + 8), ts = alcm_load64(img + ALCM_SLOT_A + 16);
	uint64_t gen = alcm_load64(img + ALCM_SLOT_A), g2 = alcm_load64(img + ALCM_SLOT_B);
	unsigned slot = g2 > gen ? ALCM_SLOT_B : ALCM_SLOT_A;
	toff = alcm_load64(img + slot + 8);
	ts = alcm_load64(img + slot + 16);
	uint8_t *e = img + toff + 16 + 64 * i;
	alcm_digest(e + 32, img + alcm_load64(e + 16), (size_t)alcm_load64(e + 24));
	alcm_digest(img + toff + ts - 32, img + toff, (size_t)ts - 32);
}

/* Index of the last section of type `type` with tag `tag` in the committed table. */
static unsigned find_sec(const uint8_t *img, const char *type, uint32_t tag)
{
	uint64_t gen = alcm_load64(img + ALCM_SLOT_A), g2 = alcm_load64(img + ALCM_SLOT_B);
	unsigned slot = g2 > gen ? ALCM_SLOT_B : ALCM_SLOT_A;
	uint64_t toff = alcm_load64(img + slot + 8);
	uint32_t n = alcm_load32(img + toff + 4), found = UINT32_MAX;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = img + toff + 16 + 64 * i;
		if (!memcmp(e, type, 4) && alcm_load32(e + 8) == tag)
			found = i;
	}
	assert_true(found != UINT32_MAX);
	return found;
}

static uint8_t *sec_data(uint8_t *img, unsigned i)
{
	uint64_t gen = alcm_load64(img + ALCM_SLOT_A), g2 = alcm_load64(img + ALCM_SLOT_B);
	unsigned slot = g2 > gen ? ALCM_SLOT_B : ALCM_SLOT_A;
	uint64_t toff = alcm_load64(img + slot + 8);
	return img + alcm_load64(img + toff + 16 + 64 * i + 16);
}

/* Decodes the last frame of an archive image under lim: the first failing status. */
static int decode_last(const uint8_t *img, size_t n, const alcm_limits *lim, char *detail)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	uint8_t *out = malloc(N * 8);
	int st = alcm_reader_open_memory(&r, img, n, "forged.alcm", lim, NULL, 0);
	if (!st)
		st = alcm_archive_open(&a, r, NULL);
	for (size_t i = 0; !st && i < alcm_archive_tensor_count(a); i++)
		st = alcm_archive_decode(a, i, out, N * 8);
	snprintf(detail, 512, "%s", a ? alcm_archive_detail(a) : alcm_reader_detail(r));
	free(out);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}

static void test_hostile_chains(void **state)
{
	(void)state;
	const char *p = tu_path("hostile.alcm");
	ck *c = malloc(sizeof(ck));
	alcm_series_options o;
	alcm_series_options_default(&o);
	o.reference = ALCM_SERIES_REF_PREVIOUS;
	o.keyframe_every = 10;
	for (int k = 0; k < 4; k++) {
		checkpoint(c, k, 1e-4);
		assert_int_equal(frame_write(p, c, k, &o, NULL, NULL), ALCM_OK);
	}
	size_t n;
	uint8_t *good = tu_read_file(p, &n), *img;
	tu_plain_dir(&good, &n); /* directories as TDIRs, to edit in place */
	img = malloc(n);
	char detail[512];
	alcm_limits lim;
	alcm_limits_default(&lim);
	assert_int_equal(decode_last(good, n, &lim, detail), ALCM_OK);
	/* A chain of three deltas against a limit of two. */
	lim.max_chain = 2;
	assert_int_equal(decode_last(good, n, &lim, detail), ALCM_E_LIMIT);
	assert_non_null(strstr(detail, "longer than the limit"));
	alcm_limits_default(&lim);
	struct {
		unsigned off;   /* field of frame 3's SERI */
		uint32_t value;
		int status;
		const char *says;
	} forge[] = {
		{12, 3, ALCM_E_CORRUPT, "does not come before it"},  /* itself: a cycle */
		{12, 7, ALCM_E_CORRUPT, "does not come before it"},  /* forward */
		{0, 2, ALCM_E_UNSUPPORTED, "record version 2"},
		{8, 5, ALCM_E_UNSUPPORTED, "frame kind 5"},
		{16, 4, ALCM_E_UNSUPPORTED, "reference source 4"},
		{20, 1, ALCM_E_CORRUPT, "reserved field"},
		{4, 2, ALCM_E_CORRUPT, "tagged 3"},
		{16, 1, ALCM_E_NOTFOUND, "was not given"},           /* a base nobody gave */
		{8, 0, ALCM_E_CORRUPT, "a keyframe names a reference"},
	};
	for (size_t i = 0; i < sizeof(forge) / sizeof(forge[0]); i++) {
		memcpy(img, good, n);
		unsigned si = find_sec(img, "SERI", 3);
		alcm_store32(sec_data(img, si) + forge[i].off, forge[i].value);
		reseal(img, si);
		int st = decode_last(img, n, &lim, detail);
		if (st != forge[i].status || !strstr(detail, forge[i].says))
			fail_msg("forge %zu: %s (%s), expected %s '%s'", i, alcm_strerror(st), detail,
			         alcm_strerror(forge[i].status), forge[i].says);
	}
	/* The reference frame's directory tagged away: frame 2 is gone. */
	memcpy(img, good, n);
	{
		uint64_t gen = alcm_load64(img + ALCM_SLOT_A), g2 = alcm_load64(img + ALCM_SLOT_B);
		unsigned slot = g2 > gen ? ALCM_SLOT_B : ALCM_SLOT_A;
		uint64_t toff = alcm_load64(img + slot + 8), ts = alcm_load64(img + slot + 16);
		unsigned ti = find_sec(img, "TDIR", 2);
		alcm_store32(img + toff + 16 + 64 * ti + 8, 9);
		alcm_digest(img + toff + ts - 32, img + toff, (size_t)ts - 32);
	}
	assert_int_equal(decode_last(img, n, &lim, detail), ALCM_E_CORRUPT);
	assert_non_null(strstr(detail, "does not have"));
	/* A delta chunk's kind byte no version defines. */
	memcpy(img, good, n);
	unsigned di = find_sec(img, "DLTA", 0);
	sec_data(img, di)[0] = 0x7f;
	reseal(img, di);
	assert_int_equal(decode_last(img, n, &lim, detail), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(detail, "does not know"));
	free(good);
	free(img);
	free(c);
	unlink(p);
}

/* A quantized delta must not name a mask; a lossless one names no scales either (6.3). */
static void test_delta_directory(void **state)
{
	(void)state;
	const char *p = tu_path("dir.alcm");
	ck *c = malloc(sizeof(ck));
	alcm_series_options o;
	alcm_series_options_default(&o);
	o.pack.mode = ALCM_MODE_MAX_ERROR;
	o.pack.bound = 1e-3;
	for (int k = 0; k < 2; k++) {
		checkpoint(c, k, 1e-4);
		assert_int_equal(frame_write(p, c, k, &o, NULL, NULL), ALCM_OK);
	}
	size_t n;
	uint8_t *img = tu_read_file(p, &n);
	tu_plain_dir(&img, &n);
	/* Frame 1's first entry ("w32", float32): point its mask at its own SCAL. */
	unsigned ti = find_sec(img, "TDIR", 1);
	uint8_t *d = sec_data(img, ti);
	uint32_t nl = alcm_load32(d + 4);
	uint8_t *ent = d + 4 + 4 + nl + 4 + 8 * 2; /* past the name, 4 bytes, shape [30, 100] */
	assert_int_equal(d[4 + 4 + nl + 1], ALCM_MODE_MAX_ERROR);
	alcm_store32(ent + 8, alcm_load32(ent + 4));
	reseal(img, ti);
	char detail[512];
	alcm_limits lim;
	alcm_limits_default(&lim);
	assert_int_equal(decode_last(img, n, &lim, detail), ALCM_E_CORRUPT);
	assert_non_null(strstr(detail, "mask section"));
	free(img);
	free(c);
	unlink(p);
}

/* OPTS payloads: keys this version does not know are skipped, a known key of the wrong
 * length, a count that cannot fit and a mode of a later version are refused (6.12.3). */
static void put_pair(uint8_t *b, size_t *n, const char *k, const void *v, uint32_t vl)
{
	alcm_store32(b + *n, (uint32_t)strlen(k));
	memcpy(b + *n + 4, k, strlen(k));
	*n += 4 + strlen(k);
	alcm_store32(b + *n, vl);
	memcpy(b + *n + 4, v, vl);
	*n += 4 + vl;
}

static int load_opts(const uint8_t *payload, size_t len, alcm_series_options *o)
{
	alcm_writer *w = NULL;
	alcm_reader *r = NULL;
	const void *buf;
	size_t blen;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "OPTS", 0, 0, payload, len, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &buf, &blen), ALCM_OK);
	assert_int_equal(alcm_reader_open_memory(&r, buf, blen, "o", NULL, NULL, 0), ALCM_OK);
	int st = alcm_series_options_load(r, o);
	alcm_reader_free(r);
	alcm_writer_free(w);
	return st;
}

static void test_opts_payloads(void **state)
{
	(void)state;
	uint8_t b[256], four[4] = {9, 0, 0, 0}, eight[8] = {0};
	size_t n = 4;
	alcm_series_options o;
	alcm_store32(b, 3);
	put_pair(b, &n, "level", four, 4);
	put_pair(b, &n, "app.note", "anything", 8);
	put_pair(b, &n, "series.keyframe_every", (uint8_t[4]){4, 0, 0, 0}, 4);
	assert_int_equal(load_opts(b, n, &o), ALCM_OK);
	assert_int_equal(o.pack.level, 9);
	assert_int_equal(o.keyframe_every, 4);
	assert_int_equal(o.pack.mode, ALCM_MODE_LOSSLESS); /* absent: the default */
	n = 4;
	alcm_store32(b, 1);
	put_pair(b, &n, "level", eight, 8);
	assert_int_equal(load_opts(b, n, &o), ALCM_E_CORRUPT);
	alcm_store32(b, 1000);
	assert_int_equal(load_opts(b, n, &o), ALCM_E_CORRUPT);
	n = 4;
	alcm_store32(b, 1);
	put_pair(b, &n, "mode", (uint8_t[4]){9, 0, 0, 0}, 4);
	assert_int_equal(load_opts(b, n, &o), ALCM_E_UNSUPPORTED);
	b[n++] = 0; /* a byte after the last pair */
	assert_int_equal(load_opts(b, n, &o), ALCM_E_CORRUPT);
	assert_int_equal(load_opts(b, 2, &o), ALCM_E_CORRUPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lossless_keyframe),
		cmocka_unit_test(test_lossless_previous_every),
		cmocka_unit_test(test_lossless_tree),
		cmocka_unit_test(test_lossy_closed_loop),
		cmocka_unit_test(test_deltas_are_smaller),
		cmocka_unit_test(test_settings_record),
		cmocka_unit_test(test_base),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_hostile_chains),
		cmocka_unit_test(test_delta_directory),
		cmocka_unit_test(test_opts_payloads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
