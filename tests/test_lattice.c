/*
 * Values on a lattice (spec 6.5.11): alcm_quant_lattice() finds the lattice of weights saved
 * dequantized from 8 bits, chunk coding 17 codes them at a step above twice the bound with an
 * offset, every value stays within the bound in float32, the spec's vector, hostile chunks;
 * and a format 1.1 archive carries no default PRED section (spec 6.7).
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 7;

/* n float32 values o + j d, j a discrete Laplace of scale sc clipped to +-lim. */
static float *lattice_values(uint64_t n, double d, double o, double sc, int lim)
{
	float *x = malloc(n * sizeof(float));
	for (uint64_t i = 0; i < n; i++) {
		double u = ((double)(tu_rand(&rng) >> 11) + 0.5) / 9007199254740992.0;
		double g = (tu_rand(&rng) & 1 ? 1 : -1) * -log(u) * sc;
		double j = fmax(-lim, fmin(lim, round(g)));
		x[i] = (float)(o + j * d);
	}
	return x;
}

static void params(alcm_qparams *qp, double *step, double *bound, uint64_t n)
{
	memset(qp, 0, sizeof(*qp));
	qp->dtype = ALCM_DTYPE_F32;
	qp->step = step;
	qp->nsteps = 1;
	qp->inner = n;
	qp->max_err = *bound;
	qp->bound_c = bound;
	qp->level = 3;
	qp->symcoding = 1;
}

/* Codes x[0..n) as one chunk, decodes it; every value within the bound, the encoder's
 * reconstruction the decoder's to the bit. @return the chunk's bytes. */
static size_t roundtrip(const float *x, uint64_t n, double step, double offset, double bound,
                        int want_coding)
{
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	alcm_qparams qp;
	params(&qp, &step, &bound, n);
	qp.offset = offset;
	alcm_buf data = {NULL, 0, 0, NULL, 0}, mask = {NULL, 0, 0, NULL, 0};
	alcm_qstats st;
	memset(&st, 0, sizeof(st));
	float *rec = calloc(n, sizeof(float)), *y = calloc(n, sizeof(float));
	assert_int_equal(alcm_quant_encode(c, &data, &mask, &qp, (const uint8_t *)x, 0, n, &st,
	                                   (uint8_t *)rec),
	                 ALCM_OK);
	/* Fewer rANS states below alcm_rans_lanes_for()'s threshold: coding 18 or 19. */
	if (alcm_rans_lanes_for(n) < ALCM_RANS_LANES)
		want_coding += ALCM_QCODING_RANS_LANES - ALCM_QCODING_RANS;
	assert_int_equal(data.p[0], want_coding);
	uint8_t *scratch = malloc(alcm_quant_scratch(n));
	alcm_cursor dc = {data.p, data.len, 0};
	qp.offset = 0; /* the decoder takes it from the chunk */
	assert_int_equal(alcm_quant_decode(c, &dc, NULL, &qp, (uint8_t *)y, 0, n, scratch,
	                                   alcm_quant_scratch(n)),
	                 ALCM_OK);
	assert_int_equal(dc.pos, dc.len);
	for (uint64_t i = 0; i < n; i++)
		if (!(fabs((double)x[i] - (double)y[i]) <= bound))
			fail_msg("element %llu: %.9g decoded as %.9g, bound %g", (unsigned long long)i,
			         (double)x[i], (double)y[i], bound);
	assert_memory_equal(rec, y, n * sizeof(float));
	size_t len = data.len;
	alcm_buf_free(&data);
	alcm_buf_free(&mask);
	free(rec);
	free(y);
	free(scratch);
	alcm_coder_free(c);
	return len;
}

/* A lattice of spacing d under a bound of 0.75 d: cells of two lattice points, step 2 d,
 * every value within the bound, and a smaller chunk than at step 1.5 d. */
static void test_lattice_found(void **state)
{
	(void)state;
	double d = 0.0123, o = 0.00417, bound = 0.75 * d;
	uint64_t n = 50000;
	float *x = lattice_values(n, d, o, 12, 120);
	double step = 2 * bound, off = 0;
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, n, bound, &step, &off), 1);
	assert_true(fabs(step - 2 * d) < 1e-6 * d);
	assert_true(off != 0 && fabs(off) <= step / 2);
	size_t lat = roundtrip(x, n, step, off, bound, ALCM_QCODING_RANS_OFFSET);
	size_t plain = roundtrip(x, n, 2 * bound, 0, bound, ALCM_QCODING_RANS);
	if (!(lat * 100 < plain * 95))
		fail_msg("lattice chunk %zu bytes, plain %zu", lat, plain);
	/* Three points a cell at bounds from just over d (two spacings a cell wide). */
	for (double k = 1.0001; k < 1.3; k += 0.1) {
		bound = k * d;
		step = 2 * bound;
		off = 0;
		assert_int_equal(alcm_quant_lattice((const uint8_t *)x, n, bound, &step, &off), 1);
		assert_true(fabs(step - 3 * d) < 1e-6 * d);
		roundtrip(x, n, step, off, bound, off != 0 ? ALCM_QCODING_RANS_OFFSET
		                                          : ALCM_QCODING_RANS);
	}
	free(x);
}

/* Not a lattice, or nothing to gain: unchanged. */
static void test_lattice_refused(void **state)
{
	(void)state;
	double d = 0.01, o = 0.003;
	uint64_t n = 20000;
	float *x = lattice_values(n, d, o, 10, 100);
	double step = 7, off = 5;
	/* One value off the lattice by 0.3141 of a spacing. */
	float keep = x[123];
	x[123] = (float)(x[123] + 0.3141 * d);
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, n, 0.75 * d, &step, &off), 0);
	x[123] = keep;
	/* A bound under half the spacing: each point its own cell already, so one spacing a
	 * step (the symbols of the grid of step 2 * bound would leave empty cells between). */
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, n, 0.45 * d, &step, &off), 1);
	assert_true(fabs(step - d) < 1e-6 * d && fabs(off - o) < 1e-6 * d);
	step = 7;
	off = 5;
	/* More than 256 distinct values. */
	float *y = lattice_values(n, d, o, 40, 1000);
	assert_int_equal(alcm_quant_lattice((const uint8_t *)y, n, 0.75 * d, &step, &off), 0);
	/* Too few values, a bound that is not a number. */
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, 100, 0.75 * d, &step, &off), 0);
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, n, NAN, &step, &off), 0);
	assert_true(step == 7 && off == 5);
	/* Specials are left out of the lattice (and escaped by the chunk coder). */
	x[5] = NAN;
	x[6] = -0.0f;
	x[7] = INFINITY;
	x[8] = 1e-42f;
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, n, 0.75 * d, &step, &off), 1);
	assert_true(fabs(step - 2 * d) < 1e-6 * d);
	free(x);
	free(y);
}

/* ---- the spec's vector (6.5.12) and hostile chunks ---------------------------------------- */

#define VN 128

/* Values 0.125 j + 0.03125, j = ((37 k) mod 13) - 6: cells of two lattice points at step
 * 0.25 and offset 0.09375 reconstruct them within 0.0625, exactly in binary. */
static void vector_values(float *x)
{
	for (int k = 0; k < VN; k++)
		x[k] = (float)(0.125 * (double)((37 * k) % 13 - 6) + 0.03125);
}

static uint8_t *spec_hex(const char *heading, size_t *n)
{
	size_t len;
	char *spec = (char *)tu_read_file(ALCM_SOURCE_DIR "/spec/alcm-format.md", &len);
	assert_non_null(spec);
	char *h = strstr(spec, heading);
	if (!h)
		fail_msg("spec has no '%s'", heading);
	char *b = strstr(h, "```\n");
	assert_non_null(b);
	b += 4;
	char *e = strstr(b, "```");
	assert_non_null(e);
	uint8_t *out = malloc((size_t)(e - b) / 2 + 1);
	*n = 0;
	for (char *p = b; p + 1 < e;) {
		unsigned v;
		if (sscanf(p, "%2x", &v) == 1 && (p[2] == ' ' || p[2] == '\n')) {
			out[(*n)++] = (uint8_t)v;
			p += 3;
		} else {
			p++;
		}
	}
	free(spec);
	return out;
}

static int decode_vec(const uint8_t *p, size_t n, float *y)
{
	double step = 0.25, bound = 0.0625;
	alcm_qparams qp;
	params(&qp, &step, &bound, VN);
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	uint8_t *copy = malloc(n ? n : 1), scratch[VN * 5 + 64];
	float tmp[VN];
	memcpy(copy, p, n);
	alcm_cursor cur = {copy, n, 0};
	int st = alcm_quant_decode(c, &cur, NULL, &qp, (uint8_t *)(y ? y : tmp), 0, VN, scratch,
	                           sizeof(scratch));
	if (!st && cur.pos != cur.len)
		st = ALCM_E_CORRUPT;
	free(copy);
	alcm_coder_free(c);
	return st;
}

static void test_spec_vector(void **state)
{
	(void)state;
	float x[VN], y[VN];
	vector_values(x);
	double step = 0.25, bound = 0.0625;
	alcm_qparams qp;
	params(&qp, &step, &bound, VN);
	qp.offset = 0.09375;
	qp.symcoding = 2; /* the modelled coding even on 128 values */
	qp.lanes = 32;    /* coding 17, as the vector */
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	alcm_buf data = {NULL, 0, 0, NULL, 0}, mask = {NULL, 0, 0, NULL, 0};
	alcm_qstats st;
	memset(&st, 0, sizeof(st));
	assert_int_equal(alcm_quant_encode(c, &data, &mask, &qp, (const uint8_t *)x, 0, VN, &st,
	                                   NULL),
	                 ALCM_OK);
	if (getenv("ALCM_PRINT_VECTOR"))
		for (size_t i = 0; i < data.len; i++)
			printf("%02x%s", data.p[i], i % 16 == 15 || i + 1 == data.len ? "\n" : " ");
	size_t n;
	uint8_t *v = spec_hex("#### 6.5.12 Test vector", &n);
	assert_int_equal(n, data.len);
	assert_memory_equal(v, data.p, n);
	assert_int_equal(decode_vec(v, n, y), ALCM_OK);
	for (int k = 0; k < VN; k++) {
		double j = round((x[k] - 0.09375) / 0.25);
		assert_true((double)y[k] == 0.25 * j + 0.09375);
		assert_true(fabs((double)y[k] - (double)x[k]) <= 0.0625);
	}
	/* Hostile: the offset not finite, 0, or beyond float32's range (1e300, 4e38, -3.5e38:
	 * every value would decode infinite) (corrupt), coding 20 (unsupported), cut anywhere
	 * (refused), any bit flipped (refused or decoded, never a crash under ASan). */
	uint8_t *w = malloc(n);
	const uint64_t bad[] = {0x7ff8000000000000ull, 0x7ff0000000000000ull,
	                        0xfff0000000000000ull, 0,
	                        0x8000000000000000ull, 0x7e37e43c8800759cull,
	                        0x47f2ced32a16a1b1ull, 0xc7f074f8c4d3cd7bull};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		memcpy(w, v, n);
		alcm_store64(w + 3, bad[k]); /* after the coding byte and nsym's two bytes */
		assert_int_equal(decode_vec(w, n, NULL), ALCM_E_CORRUPT);
	}
	memcpy(w, v, n);
	w[0] = 20;
	assert_int_equal(decode_vec(w, n, NULL), ALCM_E_UNSUPPORTED);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_not_equal(decode_vec(v, cut, NULL), ALCM_OK);
	for (size_t i = 0; i < 8 * n; i++) {
		memcpy(w, v, n);
		w[i / 8] ^= (uint8_t)(1u << (i % 8));
		decode_vec(w, n, NULL);
	}
	free(w);
	free(v);
	alcm_buf_free(&data);
	alcm_buf_free(&mask);
	alcm_coder_free(c);
}

/* ---- archives ------------------------------------------------------------------------------ */

static int pack(const float *x, uint64_t rows, uint64_t cols, int mode, double bound,
                unsigned threads, uint8_t **out, size_t *len)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "w";
	t.name_len = 1;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 2;
	t.shape[0] = rows;
	t.shape[1] = cols;
	t.data = (const uint8_t *)x;
	t.nbytes = rows * cols * sizeof(float);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = mode;
	o.bound = bound;
	o.threads = threads;
	o.chunk_bytes = 64 * 1024; /* several chunks */
	alcm_writer *wr;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_memory(&wr, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, wr, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, &t, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(wr), ALCM_OK);
	const void *buf;
	alcm_writer_memory(wr, &buf, len);
	*out = malloc(*len);
	memcpy(*out, buf, *len);
	int minor = (int)alcm_writer_minor(wr);
	alcm_encoder_free(e);
	alcm_writer_free(wr);
	return minor;
}

/* A lattice tensor packed at a max error: every value within it after decoding, the same
 * bytes on 1 and 2 threads, format 1.1 without a PRED section; lossless (1.0) without one
 * too (no predictor named). */
static void test_archive(void **state)
{
	(void)state;
	uint64_t rows = 64, cols = 1000, n = rows * cols;
	double d = 0.0173, bound = 0.8 * d;
	float *x = lattice_values(n, d, -0.0061, 9, 127);
	uint8_t *a1, *a2, *l;
	size_t n1, n2, nl;
	assert_int_equal(pack(x, rows, cols, ALCM_MODE_MAX_ERROR, bound, 1, &a1, &n1), 1);
	assert_int_equal(pack(x, rows, cols, ALCM_MODE_MAX_ERROR, bound, 2, &a2, &n2), 1);
	assert_int_equal(n1, n2);
	assert_memory_equal(a1, a2, n1);
	assert_int_equal(a1[192], alcm_rans_lanes_for(n) < ALCM_RANS_LANES ? ALCM_QCODING_RANS_OFFSET_LANES
	                                                              : ALCM_QCODING_RANS_OFFSET);
	alcm_reader *rd;
	alcm_archive *ar;
	assert_int_equal(alcm_reader_open_memory(&rd, a1, n1, "x.alcm", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&ar, rd, NULL), ALCM_OK);
	float *y = malloc(n * sizeof(float));
	assert_int_equal(alcm_archive_decode(ar, 0, y, n * sizeof(float)), ALCM_OK);
	for (uint64_t i = 0; i < n; i++)
		if (!(fabs((double)x[i] - (double)y[i]) <= bound))
			fail_msg("element %llu: %.9g decoded as %.9g", (unsigned long long)i, (double)x[i],
			         (double)y[i]);
	alcm_predictor p;
	assert_int_equal(alcm_archive_predictor(ar, &p), ALCM_E_NOTFOUND);
	alcm_archive_free(ar);
	alcm_reader_free(rd);
	assert_int_equal(pack(x, rows, cols, ALCM_MODE_LOSSLESS, 0, 1, &l, &nl), 0);
	assert_int_equal(alcm_reader_open_memory(&rd, l, nl, "l.alcm", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&ar, rd, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_predictor(ar, &p), ALCM_E_NOTFOUND);
	alcm_archive_free(ar);
	alcm_reader_free(rd);
	free(a1);
	free(a2);
	free(l);
	free(y);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lattice_found),
		cmocka_unit_test(test_lattice_refused),
		cmocka_unit_test(test_spec_vector),
		cmocka_unit_test(test_archive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
