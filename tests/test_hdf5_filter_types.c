/*
 * What the filter's set_local records for each datatype (spec 6.6.13: cd_values[6] the alcm
 * dtype, cd_values[7] big-endian, a non-numeric element as a last dimension of bytes), and
 * that each type's chunks come back bit-exact. set_local takes a shortcut for the predefined
 * little-endian numbers (one H5Tequal instead of the full classification); this table pins
 * that both paths agree: the predefined types, their big-endian twins and native aliases,
 * and look-alikes the shortcut must not take (float32 with
 * another exponent bias, a 31-bit int32, float16, bitfields, an enum).
 */
#include "testutil.h"
#include "alcm_hdf5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V1_FIXTURE ALCM_SOURCE_DIR "/tests/data/h5filter-v1.h5"

static void register_filter(void)
{
	alcm_h5_input *in = NULL;
	alcm_h5_input_open(&in, V1_FIXTURE, NULL, 0);
	alcm_h5_input_free(in);
	H5PLset_loading_state(0);
	assert_true(H5Zfilter_avail(ALCM_H5Z_FILTER_ID) > 0);
}

typedef struct type_case {
	const char *name;
	hid_t type;   /* closed after use when own */
	int own;
	int dtype;    /* expected cd_values[6] */
	unsigned swap; /* expected cd_values[7] */
	unsigned bytes; /* > 0: stored as bytes, this many per element (an extra dimension) */
} type_case;

/* A float16 as h5py makes it (IEEE half, little-endian). */
static hid_t make_f16(void)
{
	hid_t t = H5Tcopy(H5T_IEEE_F32LE);
	H5Tset_fields(t, 15, 10, 5, 0, 10);
	H5Tset_size(t, 2);
	H5Tset_ebias(t, 15);
	return t;
}

/* Same class and size as a predefined type, not equal to it: float32 with another exponent
 * bias, int32 with 31 bits of precision. */
static hid_t make_f32_bias(void)
{
	hid_t t = H5Tcopy(H5T_IEEE_F32LE);
	H5Tset_ebias(t, 100);
	return t;
}

static hid_t make_i32_31bit(void)
{
	hid_t t = H5Tcopy(H5T_STD_I32LE);
	H5Tset_precision(t, 31);
	return t;
}

/* h5py's bool: an enum over int8 with FALSE = 0 and TRUE = 1. */
static hid_t make_bool(void)
{
	hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
	int8_t f = 0, v = 1;
	H5Tenum_insert(t, "FALSE", &f);
	H5Tenum_insert(t, "TRUE", &v);
	return t;
}

/* Creates a 2-D dataset of 12 x 40 elements in chunks of 6 x 40 with the filter (cd_values
 * version 2, lossless), checks the cd_values set_local stored, writes a pattern of the type's
 * size through the raw file type and reads it back. */
static void check_case(hid_t f, const type_case *tc)
{
	hsize_t dims[2] = {12, 40}, chunk[2] = {6, 40};
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, 2, chunk);
	unsigned cd0[1] = {2};
	H5Pset_filter(dcpl, ALCM_H5Z_FILTER_ID, H5Z_FLAG_MANDATORY, 1, cd0);
	hid_t sp = H5Screate_simple(2, dims, NULL);
	hid_t d = H5Dcreate2(f, tc->name, tc->type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	assert_true(d >= 0);
	hid_t got_dcpl = H5Dget_create_plist(d);
	unsigned fl, cd[64];
	size_t nc = 64;
	assert_int_equal(H5Pget_filter_by_id2(got_dcpl, ALCM_H5Z_FILTER_ID, &fl, &nc, cd, 0, NULL,
	                                      NULL), 0);
	H5Pclose(got_dcpl);
	print_message("%s: dtype %u swap %u rank %u\n", tc->name, cd[ALCM_H5Z_CD_DTYPE],
	              cd[ALCM_H5Z_CD_SWAP], cd[ALCM_H5Z_CD_RANK]);
	assert_int_equal(cd[ALCM_H5Z_CD_DTYPE], tc->dtype);
	assert_int_equal(cd[ALCM_H5Z_CD_SWAP], tc->swap);
	assert_int_equal(cd[ALCM_H5Z_CD_RANK], tc->bytes ? 3 : 2);
	assert_int_equal(nc, ALCM_H5Z_CD_DIMS + cd[ALCM_H5Z_CD_RANK]);
	assert_int_equal(cd[ALCM_H5Z_CD_DIMS], 6);
	assert_int_equal(cd[ALCM_H5Z_CD_DIMS + 1], 40);
	if (tc->bytes)
		assert_int_equal(cd[ALCM_H5Z_CD_DIMS + 2], tc->bytes);
	/* The bytes of each element as the file type holds them: a bool only 0 or 1, else a
	 * pattern with every byte value. */
	size_t es = H5Tget_size(tc->type), n = 12 * 40 * es;
	uint8_t *v = malloc(n), *back = malloc(n);
	uint64_t seed = (uint64_t)tc->dtype * 31 + es;
	for (size_t i = 0; i < n; i++)
		v[i] = tc->dtype == ALCM_DTYPE_BOOL ? (uint8_t)(i % 3 == 0)
		                                     : (uint8_t)((int)(tu_gauss(&seed) * 40) + (int)(i % es) * 50);
	if (tc->dtype == ALCM_DTYPE_F16 || H5Tget_class(tc->type) == H5T_FLOAT)
		for (size_t i = 0; i < n; i += es)
			v[i + (tc->swap ? 0 : es - 1)] &= 0x3f; /* finite, no NaN payloads to worry about */
	assert_true(H5Dwrite(d, tc->type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
	H5Dclose(d);
	d = H5Dopen2(f, tc->name, H5P_DEFAULT); /* else the read comes from the chunk cache */
	assert_true(H5Dread(d, tc->type, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
	assert_memory_equal(v, back, n);
	H5Dclose(d);
	H5Sclose(sp);
	H5Pclose(dcpl);
	free(v);
	free(back);
}

static void test_set_local_dtypes(void **state)
{
	(void)state;
	register_filter();
	const type_case cases[] = {
		{"f32le", H5T_IEEE_F32LE, 0, ALCM_DTYPE_F32, 0, 0},
		{"f32be", H5T_IEEE_F32BE, 0, ALCM_DTYPE_F32, 1, 0},
		{"f64le", H5T_IEEE_F64LE, 0, ALCM_DTYPE_F64, 0, 0},
		{"f64be", H5T_IEEE_F64BE, 0, ALCM_DTYPE_F64, 1, 0},
		{"native_float", H5T_NATIVE_FLOAT, 0, ALCM_DTYPE_F32, 0, 0},
		{"native_double", H5T_NATIVE_DOUBLE, 0, ALCM_DTYPE_F64, 0, 0},
		{"i8le", H5T_STD_I8LE, 0, ALCM_DTYPE_I8, 0, 0},
		{"i8be", H5T_STD_I8BE, 0, ALCM_DTYPE_I8, 0, 0},
		{"u8le", H5T_STD_U8LE, 0, ALCM_DTYPE_U8, 0, 0},
		{"u8be", H5T_STD_U8BE, 0, ALCM_DTYPE_U8, 0, 0},
		{"i16le", H5T_STD_I16LE, 0, ALCM_DTYPE_I16, 0, 0},
		{"i16be", H5T_STD_I16BE, 0, ALCM_DTYPE_I16, 1, 0},
		{"u16le", H5T_STD_U16LE, 0, ALCM_DTYPE_U16, 0, 0},
		{"u16be", H5T_STD_U16BE, 0, ALCM_DTYPE_U16, 1, 0},
		{"i32le", H5T_STD_I32LE, 0, ALCM_DTYPE_I32, 0, 0},
		{"i32be", H5T_STD_I32BE, 0, ALCM_DTYPE_I32, 1, 0},
		{"u32le", H5T_STD_U32LE, 0, ALCM_DTYPE_U32, 0, 0},
		{"u32be", H5T_STD_U32BE, 0, ALCM_DTYPE_U32, 1, 0},
		{"i64le", H5T_STD_I64LE, 0, ALCM_DTYPE_I64, 0, 0},
		{"i64be", H5T_STD_I64BE, 0, ALCM_DTYPE_I64, 1, 0},
		{"u64le", H5T_STD_U64LE, 0, ALCM_DTYPE_U64, 0, 0},
		{"u64be", H5T_STD_U64BE, 0, ALCM_DTYPE_U64, 1, 0},
		{"native_int", H5T_NATIVE_INT, 0, ALCM_DTYPE_I32, 0, 0},
		{"native_uchar", H5T_NATIVE_UCHAR, 0, ALCM_DTYPE_U8, 0, 0},
		{"f16", make_f16(), 1, ALCM_DTYPE_F16, 0, 0},
		{"f32_bias100", make_f32_bias(), 1, ALCM_DTYPE_U8, 0, 4},
		{"i32_31bit", make_i32_31bit(), 1, ALCM_DTYPE_U8, 0, 4},
		{"bitfield8", H5T_STD_B8LE, 0, ALCM_DTYPE_U8, 0, 1},
		{"bitfield32", H5T_STD_B32LE, 0, ALCM_DTYPE_U8, 0, 4},
		{"bool_enum", make_bool(), 1, ALCM_DTYPE_U8, 0, 1},
	};
	const char *path = tu_path("h5filter_types.h5");
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(f >= 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		check_case(f, &cases[i]);
		if (cases[i].own)
			H5Tclose(cases[i].type);
	}
	H5Fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_local_dtypes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
