/* alcm_h5_output_plan(): what an HDF5 file cannot hold is refused before anything is decoded
 * or written (unsupported: write another format), and tensors that disagree with the
 * archive's structure are corrupt input; zero-element datasets with huge dimensions work. */
#include "testutil.h"
#include "alcm_hdf5.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static alcm_tensor ten(const char *name, size_t len, int dtype, uint32_t ndim,
                       const uint64_t *shape, const void *data)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = name;
	t.name_len = len;
	t.dtype = dtype;
	t.ndim = ndim;
	memcpy(t.shape, shape, ndim * sizeof(uint64_t));
	uint64_t el;
	alcm_shape_elements(shape, ndim, &el);
	t.nbytes = el * alcm_dtype_size(dtype);
	t.data = data;
	return t;
}

static int plan(const alcm_tensor *t, size_t n, const void *st, size_t stlen, unsigned flags)
{
	alcm_h5_output *o = NULL;
	const char *p = tu_path("plan.h5");
	unlink(p);
	int rc = alcm_h5_output_open(&o, p, flags | ALCM_WRITE_NO_SYNC, st, stlen, NULL);
	if (!rc)
		rc = alcm_h5_output_plan(o, t, n);
	alcm_h5_output_free(o);
	assert_false(tu_file_exists(p));
	return rc;
}

static void test_plan_names_and_shapes(void **state)
{
	(void)state;
	const uint64_t s1[1] = {1}, big[2] = {(uint64_t)1 << 63, 0}, ok[2] = {((uint64_t)1 << 63) - 1, 0};
	const uint8_t v = 1;
	alcm_tensor clash[2] = {ten("a/b", 3, ALCM_DTYPE_U8, 1, s1, &v),
	                        ten("a", 1, ALCM_DTYPE_U8, 1, s1, &v)};
	assert_int_equal(plan(clash, 2, NULL, 0, 0), ALCM_E_UNSUPPORTED);
	alcm_tensor deep[2] = {ten("a/b/c", 5, ALCM_DTYPE_U8, 1, s1, &v),
	                       ten("a/b", 3, ALCM_DTYPE_U8, 1, s1, &v)};
	assert_int_equal(plan(deep, 2, NULL, 0, 0), ALCM_E_UNSUPPORTED);
	alcm_tensor near[3] = {ten("a", 1, ALCM_DTYPE_U8, 1, s1, &v),
	                       ten("a-x", 3, ALCM_DTYPE_U8, 1, s1, &v),
	                       ten("a0/b", 4, ALCM_DTYPE_U8, 1, s1, &v)};
	assert_int_equal(plan(near, 3, NULL, 0, 0), ALCM_OK);
	alcm_tensor same[2] = {ten("/a", 2, ALCM_DTYPE_U8, 1, s1, &v),
	                       ten("a", 1, ALCM_DTYPE_U8, 1, s1, &v)};
	assert_int_equal(plan(same, 2, NULL, 0, 0), ALCM_E_UNSUPPORTED);
	const char *bad[] = {"", "a//b", "a/", "./a", "a\0b"};
	const size_t bad_len[] = {0, 4, 2, 3, 3};
	for (size_t i = 0; i < 5; i++) {
		alcm_tensor t = ten(bad[i], bad_len[i], ALCM_DTYPE_U8, 1, s1, &v);
		assert_int_equal(plan(&t, 1, NULL, 0, 0), ALCM_E_UNSUPPORTED);
	}
	alcm_tensor huge = ten("h", 1, ALCM_DTYPE_F32, 2, big, NULL);
	assert_int_equal(plan(&huge, 1, NULL, 0, 0), ALCM_E_UNSUPPORTED);
	/* Without a plan, the write is refused the same way (libhdf5 refuses the dataspace): the
	 * tensor is valid, the format cannot hold it. */
	alcm_h5_output *o = NULL;
	const char *p = tu_path("huge.h5");
	unlink(p);
	assert_int_equal(alcm_h5_output_open(&o, p, ALCM_WRITE_NO_SYNC, NULL, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_h5_output_write(o, &huge), ALCM_E_UNSUPPORTED);
	alcm_h5_output_free(o);
	/* 2^63 - 1 by 0: written, and read back with its shape. */
	alcm_tensor fine = ten("h", 1, ALCM_DTYPE_F32, 2, ok, NULL);
	assert_int_equal(alcm_h5_output_open(&o, p, ALCM_WRITE_NO_SYNC, NULL, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_h5_output_plan(o, &fine, 1), ALCM_OK);
	assert_int_equal(alcm_h5_output_write(o, &fine), ALCM_OK);
	assert_int_equal(alcm_h5_output_commit(o), ALCM_OK);
	alcm_h5_output_free(o);
	alcm_h5_input *in = NULL;
	alcm_tensor r;
	int has;
	assert_int_equal(alcm_h5_input_open(&in, p, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_h5_input_next(in, &r, &has), ALCM_OK);
	assert_true(has);
	assert_int_equal(r.ndim, 2);
	assert_true(r.shape[0] == ok[0] && r.shape[1] == 0 && r.nbytes == 0);
	alcm_h5_input_free(in);
	unlink(p);
}

/* A structure from a real file (dataset "g/x", float32 [2]) and tensors that do not match it. */
static void test_plan_against_structure(void **state)
{
	(void)state;
	const char *src = tu_path("src.h5");
	hid_t f = H5Fcreate(src, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hsize_t d[1] = {2};
	hid_t sp = H5Screate_simple(1, d, NULL);
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
	H5Pset_create_intermediate_group(lcpl, 1);
	hid_t ds = H5Dcreate2(f, "g/x", H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
	float x[2] = {1, 2};
	H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
	H5Dclose(ds);
	H5Pclose(lcpl);
	H5Sclose(sp);
	H5Fclose(f);
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, src, NULL, 0), ALCM_OK);
	const void *st;
	size_t stlen;
	alcm_tensor t;
	int has;
	assert_int_equal(alcm_h5_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(alcm_h5_input_structure(in, &st, &stlen), ALCM_OK);
	void *copy = malloc(stlen);
	memcpy(copy, st, stlen);
	alcm_h5_input_free(in);
	const uint64_t s2[1] = {2}, s3[1] = {3};
	alcm_tensor good = ten("g/x", 3, ALCM_DTYPE_F32, 1, s2, x);
	alcm_tensor other = ten("g/y", 3, ALCM_DTYPE_F32, 1, s2, x);
	alcm_tensor wide = ten("g/x", 3, ALCM_DTYPE_F64, 1, s2, NULL);
	alcm_tensor longer = ten("g/x", 3, ALCM_DTYPE_F32, 1, s3, NULL);
	alcm_tensor group = ten("g", 1, ALCM_DTYPE_F32, 1, s2, x);
	assert_int_equal(plan(&good, 1, copy, stlen, 0), ALCM_OK);
	assert_int_equal(plan(&other, 1, copy, stlen, 0), ALCM_E_CORRUPT);
	assert_int_equal(plan(&wide, 1, copy, stlen, 0), ALCM_E_CORRUPT);
	assert_int_equal(plan(&longer, 1, copy, stlen, 0), ALCM_E_CORRUPT);
	assert_int_equal(plan(&group, 1, copy, stlen, 0), ALCM_E_CORRUPT);
	/* The structure lists g/x: a plan without it is an inconsistent archive, unless the
	 * output is partial (--tensor). */
	assert_int_equal(plan(NULL, 0, copy, stlen, 0), ALCM_E_CORRUPT);
	assert_int_equal(plan(NULL, 0, copy, stlen, ALCM_H5_OUT_PARTIAL), ALCM_OK);
	free(copy);
	unlink(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_names_and_shapes),
		cmocka_unit_test(test_plan_against_structure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
