/*
 * Steps inside the data section (spec 6.5.13): a tensor whose chunks use the modelled codings
 * keeps its steps at the end of its QDAT, with no SCAL section; the bound holds on every value
 * after decoding, 1 and 2 threads give the same bytes, an append to a 1.0 archive keeps a SCAL,
 * and forged steps, lengths and indices are refused with the right class.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE 0xFFFFFFFFu

static uint64_t rng = 11;

/* rows x cols float32 values, each row a Laplace of its own scale. */
static float *values(uint64_t rows, uint64_t cols)
{
	float *x = malloc(rows * cols * sizeof(float));
	for (uint64_t r = 0; r < rows; r++) {
		double sc = 0.01 * (1 + (double)(r % 7));
		for (uint64_t c = 0; c < cols; c++) {
			double u = ((double)(tu_rand(&rng) >> 11) + 0.5) / 9007199254740992.0;
			x[r * cols + c] = (float)((tu_rand(&rng) & 1 ? 1 : -1) * -log(u) * sc);
		}
	}
	return x;
}

/* Packs x into a new archive. @return the header's minor version. */
static int pack_flags(const float *x, uint64_t rows, uint64_t cols, int mode, double bound,
                      unsigned threads, unsigned flags, uint8_t **out, size_t *len)
{
	alcm_tensor t;
	tu_matrix_f32(&t, x, rows, cols);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = mode;
	o.bound = bound;
	o.threads = threads;
	o.chunk_bytes = 64 * 1024; /* several chunks */
	alcm_writer *wr;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_memory(&wr, flags, NULL), ALCM_OK);
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

static int pack(const float *x, uint64_t rows, uint64_t cols, int mode, double bound,
                unsigned threads, uint8_t **out, size_t *len)
{
	return pack_flags(x, rows, cols, mode, bound, threads, 0, out, len);
}

/* The index of the first section of `type`, or NONE. */
static uint32_t find_section(alcm_reader *r, const char *type, alcm_section_info *si)
{
	for (uint32_t i = 0; i < alcm_reader_section_count(r); i++) {
		assert_int_equal(alcm_reader_section_info(r, i, si), ALCM_OK);
		if (memcmp(si->type, type, 4) == 0)
			return i;
	}
	return NONE;
}

/* Decodes tensor 0 of the archive in `a`. @return the status of open or decode. */
static int decode(const uint8_t *a, size_t n, unsigned flags, float *y, size_t cap)
{
	alcm_reader *rd;
	alcm_archive *ar = NULL;
	int st = alcm_reader_open_memory(&rd, a, n, "x.alcm", NULL, NULL, flags);
	if (st)
		return st;
	st = alcm_archive_open(&ar, rd, NULL);
	if (!st)
		st = alcm_archive_decode(ar, 0, y, cap);
	alcm_archive_free(ar);
	alcm_reader_free(rd);
	return st;
}

/* Max-error (one channel) and rel-error (one step per row): no SCAL, the steps end the QDAT,
 * every value within its bound, the same bytes on 1 and 2 threads. */
static void test_layout(void **state)
{
	(void)state;
	uint64_t rows = 48, cols = 700, n = rows * cols;
	float *x = values(rows, cols), *y = malloc(n * sizeof(float));
	static const int modes[2] = {ALCM_MODE_MAX_ERROR, ALCM_MODE_REL_ERROR};
	static const double bounds[2] = {0.004, 0.02};
	for (int m = 0; m < 2; m++) {
		uint8_t *a1, *a2;
		size_t n1, n2;
		assert_int_equal(pack(x, rows, cols, modes[m], bounds[m], 1, &a1, &n1), 1);
		assert_int_equal(pack(x, rows, cols, modes[m], bounds[m], 2, &a2, &n2), 1);
		assert_int_equal(n1, n2);
		assert_memory_equal(a1, a2, n1);
		alcm_reader *rd;
		alcm_archive *ar;
		alcm_section_info si;
		assert_int_equal(alcm_reader_open_memory(&rd, a1, n1, "x.alcm", NULL, NULL, 0), ALCM_OK);
		assert_true(find_section(rd, "SCAL", &si) == NONE);
		assert_true(find_section(rd, "QDAT", &si) != NONE);
		assert_int_equal(alcm_archive_open(&ar, rd, NULL), ALCM_OK);
		alcm_tensor_info ti;
		assert_int_equal(alcm_archive_tensor_info(ar, 0, &ti), ALCM_OK);
		uint64_t nch = modes[m] == ALCM_MODE_REL_ERROR ? rows : 1;
		assert_int_equal(ti.scales, nch);
		assert_true(ti.chunks > 1);
		/* The steps are the section's last 8 * channels bytes: finite, positive. */
		uint8_t *tail = malloc(nch * 8);
		assert_int_equal(alcm_reader_section_pread(rd, find_section(rd, "QDAT", &si),
		                                           si.length - nch * 8, tail, nch * 8),
		                 ALCM_OK);
		for (uint64_t c = 0; c < nch; c++) {
			double s;
			memcpy(&s, tail + 8 * c, 8);
			assert_true(isfinite(s) && s > 0);
		}
		free(tail);
		assert_int_equal(alcm_archive_decode(ar, 0, y, n * sizeof(float)), ALCM_OK);
		for (uint64_t r = 0; r < rows; r++) {
			double amax = 0;
			for (uint64_t c = 0; c < cols; c++)
				amax = fmax(amax, fabs((double)x[r * cols + c]));
			double b = modes[m] == ALCM_MODE_REL_ERROR ? bounds[m] * amax : bounds[m];
			for (uint64_t c = 0; c < cols; c++) {
				uint64_t i = r * cols + c;
				if (!(fabs((double)x[i] - (double)y[i]) <= b))
					fail_msg("mode %d element %llu: %.9g decoded as %.9g, bound %g",
					         modes[m], (unsigned long long)i, (double)x[i], (double)y[i], b);
			}
		}
		alcm_archive_free(ar);
		alcm_reader_free(rd);
		free(a1);
		free(a2);
	}
	free(x);
	free(y);
}

/* Tiny tensors take byte planes (format 1.0): alone they keep a SCAL and the archive stays
 * 1.0; once a modelled tensor made the archive 1.1, the next tiny one inlines its step too. */
static void test_tiny_after_modelled(void **state)
{
	(void)state;
	uint64_t rows = 32, cols = 600;
	float *x = values(rows, cols), *y = malloc(rows * cols * sizeof(float));
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 0.004;
	o.threads = 1;
	for (int order = 0; order < 2; order++) {
		alcm_writer *wr;
		alcm_encoder *e;
		assert_int_equal(alcm_writer_open_memory(&wr, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_encoder_new(&e, wr, &o, NULL), ALCM_OK);
		alcm_tensor tiny, big, tiny2;
		tu_matrix_f32(&tiny, x, 1, 4);
		tiny.name = "a";
		tu_matrix_f32(&tiny2, x + 4, 1, 4);
		tiny2.name = "c";
		tu_matrix_f32(&big, x, rows, cols);
		big.name = "b";
		assert_int_equal(alcm_encoder_add(e, &tiny, NULL), ALCM_OK);
		if (order)
			assert_int_equal(alcm_encoder_add(e, &big, NULL), ALCM_OK);
		assert_int_equal(alcm_encoder_add(e, &tiny2, NULL), ALCM_OK);
		assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
		assert_int_equal(alcm_writer_commit(wr), ALCM_OK);
		assert_int_equal(alcm_writer_minor(wr), (unsigned)order);
		const void *buf;
		size_t len;
		alcm_writer_memory(wr, &buf, &len);
		alcm_reader *rd;
		alcm_archive *ar;
		assert_int_equal(alcm_reader_open_memory(&rd, buf, len, "x.alcm", NULL, NULL, 0),
		                 ALCM_OK);
		unsigned scal = 0;
		for (uint32_t i = 0; i < alcm_reader_section_count(rd); i++) {
			alcm_section_info si;
			assert_int_equal(alcm_reader_section_info(rd, i, &si), ALCM_OK);
			scal += memcmp(si.type, "SCAL", 4) == 0;
		}
		/* Without the big tensor: a SCAL each; with it: only the first tiny one's. */
		assert_int_equal(scal, order ? 1 : 2);
		assert_int_equal(alcm_archive_open(&ar, rd, NULL), ALCM_OK);
		for (size_t t = 0; t < alcm_archive_tensor_count(ar); t++) {
			alcm_tensor_info ti;
			assert_int_equal(alcm_archive_tensor_info(ar, t, &ti), ALCM_OK);
			assert_int_equal(alcm_archive_decode(ar, t, y, ti.raw_bytes), ALCM_OK);
			const float *src = ti.name[0] == 'c' ? x + 4 : x;
			for (uint64_t i = 0; i < ti.elements; i++)
				assert_true(fabs((double)src[i] - (double)y[i]) <= 0.004);
		}
		alcm_archive_free(ar);
		alcm_reader_free(rd);
		alcm_encoder_free(e);
		alcm_writer_free(wr);
	}
	free(x);
	free(y);
}

/* A lossy tensor appended to a format 1.0 archive keeps 1.0's codings and a SCAL section. */
static void test_append_to_1_0(void **state)
{
	(void)state;
	uint64_t rows = 8, cols = 300, n = rows * cols;
	float *x = values(rows, cols), *y = malloc(n * sizeof(float));
	uint8_t *a;
	size_t len;
	assert_int_equal(pack_flags(x, rows, cols, ALCM_MODE_LOSSLESS, 0, 1, ALCM_WRITE_STREAM, &a, &len),
	                 0);
	const char *path = tu_path("inline-append.alcm");
	assert_int_equal(tu_write_file(path, a, len), 0);
	alcm_writer *wr;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_append(&wr, path, NULL, NULL, 0), ALCM_OK);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 0.004;
	o.threads = 1;
	assert_int_equal(alcm_encoder_new(&e, wr, &o, NULL), ALCM_OK);
	alcm_tensor t;
	tu_matrix_f32(&t, x, rows, cols);
	t.name = "v";
	assert_int_equal(alcm_encoder_add(e, &t, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(wr), ALCM_OK);
	assert_int_equal(alcm_writer_minor(wr), 0);
	alcm_encoder_free(e);
	alcm_writer_free(wr);
	free(a);
	a = tu_read_file(path, &len);
	alcm_reader *rd;
	alcm_section_info si;
	assert_int_equal(alcm_reader_open_memory(&rd, a, len, "x.alcm", NULL, NULL, 0), ALCM_OK);
	assert_true(find_section(rd, "SCAL", &si) != NONE);
	alcm_reader_free(rd);
	free(a);
	free(x);
	free(y);
}

/* Forged steps reach the decoder (digests not checked): NaN, infinite and negative steps are
 * corrupt; with digests on, the same bytes are a digest mismatch. A scale index that names
 * neither a SCAL nor the tensor's own QDAT is corrupt when the directory is read. */
static void test_hostile(void **state)
{
	(void)state;
	uint64_t rows = 16, cols = 500, n = rows * cols;
	float *x = values(rows, cols), *y = malloc(n * sizeof(float));
	uint8_t *a;
	size_t len;
	assert_int_equal(pack(x, rows, cols, ALCM_MODE_REL_ERROR, 0.02, 1, &a, &len), 1);
	tu_plain_dir(&a, &len); /* its directory as a TDIR, to edit in place */
	alcm_reader *rd;
	alcm_section_info qs, ts;
	assert_int_equal(alcm_reader_open_memory(&rd, a, len, "x.alcm", NULL, NULL, 0), ALCM_OK);
	uint32_t qi = find_section(rd, "QDAT", &qs), ti = find_section(rd, "TDIR", &ts);
	assert_true(qi != NONE && ti != NONE);
	alcm_reader_free(rd);
	assert_int_equal(decode(a, len, 0, y, n * sizeof(float)), ALCM_OK);
	static const double bad[3] = {NAN, INFINITY, -0.5};
	for (int k = 0; k < 3; k++) {
		uint8_t *b = malloc(len);
		memcpy(b, a, len);
		/* The step of row 5. */
		memcpy(b + qs.offset + qs.length - (rows - 5) * 8, &bad[k], 8);
		assert_int_equal(decode(b, len, ALCM_READ_NO_VERIFY, y, n * sizeof(float)),
		                 ALCM_E_CORRUPT);
		assert_int_equal(decode(b, len, 0, y, n * sizeof(float)), ALCM_E_DIGEST);
		free(b);
	}
	/* The entry: u32 count, u32 name_len, "w", 4 bytes, 2 x u64 shape, then data_section at
	 * 29 and scale_section at 33. */
	uint8_t *b = malloc(len);
	memcpy(b, a, len);
	uint32_t data_idx, scal_idx;
	memcpy(&data_idx, b + ts.offset + 29, 4);
	memcpy(&scal_idx, b + ts.offset + 33, 4);
	assert_int_equal(data_idx, qi);
	assert_int_equal(scal_idx, qi);
	memcpy(b + ts.offset + 33, &ti, 4);
	assert_int_equal(decode(b, len, ALCM_READ_NO_VERIFY, y, n * sizeof(float)), ALCM_E_CORRUPT);
	uint32_t none = NONE;
	memcpy(b + ts.offset + 33, &none, 4);
	assert_int_equal(decode(b, len, ALCM_READ_NO_VERIFY, y, n * sizeof(float)), ALCM_E_CORRUPT);
	free(b);
	free(a);
	free(x);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_tiny_after_modelled),
		cmocka_unit_test(test_append_to_1_0),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
