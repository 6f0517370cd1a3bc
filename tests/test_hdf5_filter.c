/*
 * The alcm HDF5 filter as the bridge registers it in-process (lib/hdf5/h5_filter.c, spec
 * 6.6.13), without plugin loading: files written by the format-1.0 plugin (cd_values
 * version 1, tests/data/h5filter-v1.h5) keep reading; version 2 (compact frames) in every
 * mode and type; the messages on HDF5's error stack for bad cd_values and damaged chunks;
 * the stored chunks are frames of the chunk's shape with 17 bytes plus the shape of
 * overhead.
 */
#include "testutil.h"
#include "alcm_hdf5.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The frame check (lib/tframe.c), to forge it. */
uint64_t alcm_xxh64(const void *src, size_t len, uint64_t seed);

#define V1_FIXTURE ALCM_SOURCE_DIR "/tests/data/h5filter-v1.h5"

/* Any bridge call registers the filter in this process (plugin loading stays off). */
static void register_filter(void)
{
	alcm_h5_input *in = NULL;
	alcm_h5_input_open(&in, V1_FIXTURE, NULL, 0);
	alcm_h5_input_free(in);
	H5PLset_loading_state(0);
	assert_true(H5Zfilter_avail(ALCM_H5Z_FILTER_ID) > 0);
}

typedef struct stack_text {
	char all[8192];
} stack_text;

static herr_t collect(unsigned n, const H5E_error2_t *e, void *data)
{
	(void)n;
	stack_text *s = data;
	size_t len = strlen(s->all);
	if (e->desc)
		snprintf(s->all + len, sizeof(s->all) - len, "%s\n", e->desc);
	return 0;
}

/* The error stack's messages, one a line; clears the stack. */
static void stack_messages(stack_text *s)
{
	s->all[0] = '\0';
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, s);
	H5Eclear2(H5E_DEFAULT);
}

static double v1_f64(int i)
{
	return i * 0.001 + (i % 7) * 0.1;
}

/* The values tests/data/h5filter-v1.h5 holds (written by the format-1.0 plugin). */
static void check_v1_values(const char *name, const void *p, size_t nbytes)
{
	if (strcmp(name, "f32") == 0) {
		assert_int_equal(nbytes, 2000 * 4);
		for (int i = 0; i < 2000; i++)
			assert_true(((const float *)p)[i] == (float)((i % 97 - 48) / 64.0));
	} else if (strcmp(name, "f64be_lossy") == 0) {
		assert_int_equal(nbytes, 300 * 8);
		for (int i = 0; i < 300; i++)
			assert_true(fabs(((const double *)p)[i] - v1_f64(i)) <= 1e-3);
	} else if (strcmp(name, "i16") == 0) {
		for (int i = 0; i < 100; i++)
			assert_int_equal(((const int16_t *)p)[i], i * 7 - 300);
	} else {
		assert_string_equal(name, "pairs");
		assert_int_equal(nbytes, 30 * 8);
		for (int i = 0; i < 30; i++) {
			int32_t a;
			float b;
			memcpy(&a, (const uint8_t *)p + 8 * i, 4);
			memcpy(&b, (const uint8_t *)p + 8 * i + 4, 4);
			assert_int_equal(a, i);
			assert_true(b == i / 4.0f);
		}
	}
}

/* alcm-pack's path: the bridge decodes version-1 chunks itself, without --allow-plugins. */
static void test_v1_file_through_bridge(void **state)
{
	(void)state;
	alcm_h5_input *in = NULL;
	int st = alcm_h5_input_open(&in, V1_FIXTURE, NULL, 0);
	if (st)
		print_message("%s\n", alcm_h5_input_detail(in));
	assert_int_equal(st, ALCM_OK);
	alcm_tensor t;
	int has, n = 0;
	while (alcm_h5_input_next(in, &t, &has) == ALCM_OK && has) {
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)t.name_len, t.name);
		check_v1_values(name, t.data, t.nbytes);
		n++;
	}
	assert_int_equal(n, 4);
	alcm_h5_input_free(in);
}

/* Any HDF5 program in a process where the filter is registered (or the plugin loaded). */
static void test_v1_file_through_hdf5(void **state)
{
	(void)state;
	register_filter();
	hid_t f = H5Fopen(V1_FIXTURE, H5F_ACC_RDONLY, H5P_DEFAULT);
	assert_true(f >= 0);
	static const char *names[] = {"f32", "f64be_lossy", "i16"};
	static const hid_t *types[] = {&H5T_NATIVE_FLOAT_g, &H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_SHORT_g};
	for (int k = 0; k < 3; k++) {
		hid_t d = H5Dopen2(f, names[k], H5P_DEFAULT);
		uint8_t buf[2000 * 8];
		assert_true(H5Dread(d, *types[k], H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
		hid_t sp = H5Dget_space(d);
		check_v1_values(names[k], buf, (size_t)H5Sget_simple_extent_npoints(sp) *
		                                   H5Tget_size(*types[k]));
		H5Sclose(sp);
		H5Dclose(d);
	}
	H5Fclose(f);
}

static void split_bound(double b, unsigned *cd)
{
	uint64_t bits;
	memcpy(&bits, &b, 8);
	cd[2] = (unsigned)bits;
	cd[3] = (unsigned)(bits >> 32);
}

static stack_text *create_errors; /* when set, create() collects a failure's messages */

/* A chunked dataset with the filter; @return its id (or < 0 when creation failed). */
static hid_t create(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                    const hsize_t *chunk, const unsigned *cd, size_t ncd)
{
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, rank, chunk);
	H5Pset_filter(dcpl, ALCM_H5Z_FILTER_ID, H5Z_FLAG_MANDATORY, ncd, cd);
	hid_t sp = H5Screate_simple(rank, dims, NULL);
	hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (d < 0 && create_errors)
		stack_messages(create_errors); /* before the next call clears the stack */
	H5Sclose(sp);
	H5Pclose(dcpl);
	return d;
}

static hid_t reopen(hid_t f, hid_t d, const char *name)
{
	H5Dclose(d);
	return H5Dopen2(f, name, H5P_DEFAULT);
}

/* Version 2 in every mode, on float32, big-endian float64 and int16. */
static void test_v2_modes(void **state)
{
	(void)state;
	register_filter();
	const char *path = tu_path("h5filter_v2.h5");
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	size_t n = 64 * 100;
	float *v = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
	double *dv = malloc(n * sizeof(double)), *dback = malloc(n * sizeof(double));
	uint64_t seed = 3;
	for (size_t i = 0; i < n; i++) {
		v[i] = (float)(tu_gauss(&seed) * (1 + (double)(i / 100)));
		dv[i] = v[i] * 3.0;
	}
	v[1] = NAN, v[2] = -0.0f, v[3] = INFINITY;
	hsize_t dims[2] = {64, 100}, chunk[2] = {16, 100};
	static const double bounds[5] = {0, 1e-2, 1e-2, 30, 0};
	for (unsigned mode = 0; mode <= ALCM_MODE_BITS; mode++) {
		unsigned cd[6] = {2, mode, 0, 0, 8, 0};
		split_bound(bounds[mode], cd);
		char name[32];
		snprintf(name, sizeof(name), "f32_mode%u", mode);
		hid_t d = create(f, name, H5T_IEEE_F32LE, 2, dims, chunk, cd, 6);
		assert_true(d >= 0);
		assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
		d = reopen(f, d, name); /* else the read comes from the chunk cache, unfiltered */
		assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
		alcm_tensor t;
		memset(&t, 0, sizeof(t));
		t.dtype = ALCM_DTYPE_F32, t.ndim = 2, t.shape[0] = 64, t.shape[1] = 100;
		t.data = v, t.nbytes = n * 4;
		alcm_error_stats es;
		alcm_tensor_measure(&t, back, &es);
		assert_true(alcm_error_within(&es, (int)mode, bounds[mode]));
		assert_true(es.specials_exact);
		assert_int_equal(es.identical, mode == 0);
		H5Dclose(d);
		snprintf(name, sizeof(name), "f64be_mode%u", mode);
		d = create(f, name, H5T_IEEE_F64BE, 2, dims, chunk, cd, 6);
		assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dv) >= 0);
		d = reopen(f, d, name);
		assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dback) >= 0);
		t.dtype = ALCM_DTYPE_F64, t.data = dv, t.nbytes = n * 8;
		alcm_tensor_measure(&t, dback, &es);
		assert_true(alcm_error_within(&es, (int)mode, bounds[mode]));
		assert_int_equal(es.identical, mode == 0);
		H5Dclose(d);
	}
	/* integers stay exact in a lossy mode */
	unsigned cd[6] = {2, 1, 0, 0, 8, 0};
	split_bound(0.5, cd);
	short s[6400];
	for (int i = 0; i < 6400; i++)
		s[i] = (short)(i * 7 - 1000);
	hid_t d = create(f, "i16", H5T_STD_I16LE, 2, dims, chunk, cd, 6);
	assert_true(H5Dwrite(d, H5T_NATIVE_SHORT, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) >= 0);
	d = reopen(f, d, "i16");
	short sb[6400];
	assert_true(H5Dread(d, H5T_NATIVE_SHORT, H5S_ALL, H5S_ALL, H5P_DEFAULT, sb) >= 0);
	assert_memory_equal(s, sb, sizeof(s));
	H5Dclose(d);
	H5Fclose(f);
	free(v), free(back), free(dv), free(dback);
}

/* The stored chunk is one frame of the chunk's dtype and shape: 20 bytes of header and check
 * for 16 x 100 float32 (17 + the two dimensions' varints, 1 + 1, and 1 for chunk_elems 0
 * counted in the 17). */
static void test_v2_chunk_is_a_frame(void **state)
{
	(void)state;
	register_filter();
	const char *path = tu_path("h5filter_frame.h5");
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hsize_t dims[2] = {64, 100}, chunk[2] = {16, 100};
	unsigned cd[1] = {2};
	hid_t d = create(f, "x", H5T_IEEE_F32LE, 2, dims, chunk, cd, 1);
	float v[6400];
	uint64_t seed = 8;
	for (int i = 0; i < 6400; i++)
		v[i] = (float)tu_gauss(&seed);
	assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
	H5Dflush(d);
	hsize_t off[2] = {16, 0}, size;
	assert_true(H5Dget_chunk_storage_size(d, off, &size) >= 0);
	uint8_t raw[16 * 100 * 4 + 1024];
	uint32_t mask = 0;
	assert_true(H5Dread_chunk(d, H5P_DEFAULT, off, &mask, raw) >= 0);
	alcm_tensor_info ti;
	assert_int_equal(alcm_tensor_frame_info(&ti, raw, (size_t)size, NULL), ALCM_OK);
	assert_int_equal(ti.dtype, ALCM_DTYPE_F32);
	assert_int_equal(ti.ndim, 2);
	assert_int_equal(ti.shape[0], 16);
	assert_int_equal(ti.shape[1], 100);
	assert_memory_equal(raw, ALCM_TENSOR_FRAME_MAGIC, 4);
	/* header: 9 fixed bytes, dims 16 and 100 (one byte each), chunk_elems 0; then the LDAT
	 * chunk; then the 8-byte check */
	assert_int_equal(raw[11], 0);
	uint8_t back[16 * 100 * 4];
	assert_int_equal(alcm_tensor_decompress(back, sizeof(back), raw, (size_t)size, NULL), ALCM_OK);
	assert_memory_equal(back, v + 1600, sizeof(back));
	/* the dataset records cd_values version 2 */
	hid_t dcpl = H5Dget_create_plist(d);
	unsigned fl, got[64];
	size_t nc = 64;
	assert_int_equal(H5Pget_filter_by_id2(dcpl, ALCM_H5Z_FILTER_ID, &fl, &nc, got, 0, NULL, NULL),
	                 0);
	assert_int_equal(nc, ALCM_H5Z_CD_DIMS + 2);
	assert_int_equal(got[ALCM_H5Z_CD_VERSION], ALCM_H5Z_VERSION_FRAME);
	H5Pclose(dcpl);
	H5Dclose(d);
	H5Fclose(f);
}

/* Each bad cd_value fails H5Dcreate with its index, its value and the allowed range. */
static void test_bad_cd_values_messages(void **state)
{
	(void)state;
	register_filter();
	const char *path = tu_path("h5filter_bad.h5");
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hsize_t dims[1] = {100}, chunk[1] = {10};
	static const struct {
		unsigned cd[6];
		double bound;
		const char *want;
	} bad[] = {
		{{3, 0, 0, 0, 8, 0}, 0, "cd_values[0] (version) is 3, allowed 1..2"},
		{{2, 9, 0, 0, 8, 0}, 0, "cd_values[1] (mode) is 9, allowed 0..4"},
		{{2, 4, 0, 0, 1, 0}, 0, "cd_values[4] (bits) is 1, allowed 2..16 in mode 4"},
		{{2, 0, 0, 0, 8, 25}, 0, "cd_values[5] (zstd level) is 25, allowed 0..19"},
		{{2, 1, 0, 0, 8, 0}, 0, "cd_values[2..3] (bound) is 0, refused: mode 1 (max-error)"},
		{{2, 2, 0, 0, 8, 0}, 1.5, "cd_values[2..3] (bound) is 1.5, refused: mode 2 (rel-error)"},
		{{2, 3, 0, 0, 8, 0}, 400, "cd_values[2..3] (bound) is 400, refused: mode 3 (snr)"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned cd[6];
		memcpy(cd, bad[i].cd, sizeof(cd));
		split_bound(bad[i].bound, cd);
		stack_text s;
		create_errors = &s;
		H5E_BEGIN_TRY
		{
			hid_t d = create(f, "bad", H5T_IEEE_F32LE, 1, dims, chunk, cd, 6);
			assert_true(d < 0);
		}
		H5E_END_TRY;
		create_errors = NULL;
		if (!strstr(s.all, bad[i].want))
			print_message("wanted '%s' in:\n%s", bad[i].want, s.all);
		assert_non_null(strstr(s.all, bad[i].want));
		assert_non_null(strstr(s.all, "alcm filter 417: "));
	}
	H5Fclose(f);
}

/* A damaged chunk fails the read with a message naming it: the check (a flipped bit), the
 * frame's own detail (a forged check), another shape than cd_values give. */
static void test_damaged_chunk_messages(void **state)
{
	(void)state;
	register_filter();
	const char *path = tu_path("h5filter_damaged.h5");
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hsize_t dims[1] = {1000}, chunk[1] = {500};
	unsigned cd[1] = {2};
	hid_t d = create(f, "x", H5T_IEEE_F32LE, 1, dims, chunk, cd, 1);
	float v[1000], back[1000];
	uint64_t seed = 2;
	for (int i = 0; i < 1000; i++)
		v[i] = (float)tu_gauss(&seed);
	assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
	H5Dflush(d);
	hsize_t off[1] = {500}, size;
	H5Dget_chunk_storage_size(d, off, &size);
	uint8_t raw[4096], m[4096];
	uint32_t mask = 0;
	assert_true(H5Dread_chunk(d, H5P_DEFAULT, off, &mask, raw) >= 0);
	static const char *want[3] = {"check mismatch",
	                              "chunk 0 at offset 12 uses a coding this reader does not know",
	                              "it holds float32 of rank 1 and 400 bytes"};
	for (int k = 0; k < 3; k++) {
		size_t len = (size_t)size;
		memcpy(m, raw, len);
		if (k == 0) {
			m[len / 2] ^= 0x10; /* the check catches it */
		} else if (k == 1) {
			m[12] = 0x7f; /* an unknown transform, with the check forged: the decoder refuses */
			uint64_t h = alcm_xxh64(m, len - 8, 0);
			for (int b = 0; b < 8; b++)
				m[len - 8 + b] = (uint8_t)(h >> (8 * b));
		} else {
			/* a valid frame of 100 elements where 500 belong */
			alcm_tensor t;
			memset(&t, 0, sizeof(t));
			t.dtype = ALCM_DTYPE_F32, t.ndim = 1, t.shape[0] = 100, t.data = v, t.nbytes = 400;
			assert_int_equal(alcm_tensor_compress(m, sizeof(m), &len, &t, NULL), ALCM_OK);
		}
		assert_true(H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, len, m) >= 0);
		stack_text s;
		H5E_BEGIN_TRY
		{
			assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) < 0);
			stack_messages(&s);
		}
		H5E_END_TRY;
		if (!strstr(s.all, want[k]))
			print_message("wanted '%s' in:\n%s", want[k], s.all);
		assert_non_null(strstr(s.all, want[k]));
		assert_true(k == 2 || strstr(s.all, "alcm filter 417: corrupt chunk"));
	}
	H5Dclose(d);
	H5Fclose(f);
	/* through the bridge, the detail line carries the filter's message */
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, path, NULL, 0), ALCM_OK);
	alcm_tensor t;
	int has;
	assert_int_equal(alcm_h5_input_next(in, &t, &has), ALCM_E_CORRUPT);
	assert_non_null(strstr(alcm_h5_input_detail(in), "alcm filter 417"));
	alcm_h5_input_free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_file_through_bridge),
		cmocka_unit_test(test_v1_file_through_hdf5),
		cmocka_unit_test(test_v2_modes),
		cmocka_unit_test(test_v2_chunk_is_a_frame),
		cmocka_unit_test(test_bad_cd_values_messages),
		cmocka_unit_test(test_damaged_chunk_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
