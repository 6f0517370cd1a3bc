/*
 * HDF5 bridge: fixtures generated with the HDF5 C API (no binary blobs), round trips
 * through the encoder, an in-memory archive and alcm_h5_output, checked by h5diff; refusal
 * and skipping of what the structure cannot describe; limits; hostile .h5 files and hostile
 * structures.
 *
 * `test_hdf5 --fixture DIR` writes the fixtures into DIR and exits (for tests/cli_hdf5.sh).
 */
#include "testutil.h"
#include "alcm_hdf5.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Fixture helpers                                                                       */
/* ------------------------------------------------------------------------------------ */

static void ok(herr_t e)
{
	assert_true(e >= 0);
}

static hid_t f16_type(int big, int bf)
{
	hid_t t = H5Tcopy(H5T_IEEE_F32LE);
	ok(H5Tset_fields(t, 15, bf ? 7 : 10, bf ? 8 : 5, 0, bf ? 7 : 10));
	ok(H5Tset_size(t, 2));
	ok(H5Tset_ebias(t, bf ? 127 : 15));
	if (big)
		ok(H5Tset_order(t, H5T_ORDER_BE));
	return t;
}

/* Creates a dataset of rank r; data in memory type mt (may be H5I_INVALID_HID: no write). */
static void mk_ds(hid_t loc, const char *name, hid_t ft, hid_t mt, int r, const hsize_t *dims,
                  const hsize_t *maxd, hid_t dcpl, const void *data)
{
	hid_t sp = r < 0 ? H5Screate(H5S_NULL) : r == 0 ? H5Screate(H5S_SCALAR)
	                                               : H5Screate_simple(r, dims, maxd);
	assert_true(sp >= 0);
	hid_t ds = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl < 0 ? H5P_DEFAULT : dcpl,
	                      H5P_DEFAULT);
	assert_true(ds >= 0);
	if (mt >= 0 && data)
		ok(H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
	H5Sclose(sp);
	H5Dclose(ds);
}

static void mk_attr(hid_t loc, const char *name, hid_t ft, hid_t mt, int r, const hsize_t *dims,
                    const void *data)
{
	hid_t sp = r < 0 ? H5Screate(H5S_NULL) : r == 0 ? H5Screate(H5S_SCALAR)
	                                               : H5Screate_simple(r, dims, NULL);
	hid_t a = H5Acreate2(loc, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(a >= 0);
	if (data)
		ok(H5Awrite(a, mt, data));
	H5Aclose(a);
	H5Sclose(sp);
}

static hid_t str_type(size_t size, H5T_str_t pad, H5T_cset_t cset)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	ok(H5Tset_size(t, size));
	ok(H5Tset_strpad(t, pad));
	ok(H5Tset_cset(t, cset));
	return t;
}

/* Attributes of every supported kind. */
static void all_attrs(hid_t loc)
{
	hsize_t d3 = 3, d23[2] = {2, 3}, d2 = 2;
	signed char i8 = -7;
	unsigned char u8 = 200;
	short i16 = -1234;
	unsigned short u16 = 60000;
	int i32 = -123456;
	unsigned u32 = 4000000000u;
	long long i64 = -1234567890123ll;
	unsigned long long u64 = 18000000000000000000ull;
	float f32 = 3.25f;
	double f64 = -1e-300, arr[3] = {1.5, NAN, -INFINITY};
	int m23[6] = {1, 2, 3, 4, 5, 6};
	mk_attr(loc, "i8", H5T_STD_I8LE, H5T_NATIVE_SCHAR, 0, NULL, &i8);
	mk_attr(loc, "u8", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 0, NULL, &u8);
	mk_attr(loc, "i16", H5T_STD_I16BE, H5T_NATIVE_SHORT, 0, NULL, &i16);
	mk_attr(loc, "u16", H5T_STD_U16LE, H5T_NATIVE_USHORT, 0, NULL, &u16);
	mk_attr(loc, "i32", H5T_STD_I32LE, H5T_NATIVE_INT, 0, NULL, &i32);
	mk_attr(loc, "u32", H5T_STD_U32BE, H5T_NATIVE_UINT, 0, NULL, &u32);
	mk_attr(loc, "i64", H5T_STD_I64LE, H5T_NATIVE_LLONG, 0, NULL, &i64);
	mk_attr(loc, "u64", H5T_STD_U64LE, H5T_NATIVE_ULLONG, 0, NULL, &u64);
	mk_attr(loc, "f32", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 0, NULL, &f32);
	mk_attr(loc, "f64", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, &f64);
	mk_attr(loc, "f64_array", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &d3, arr);
	mk_attr(loc, "i32_matrix", H5T_STD_I32LE, H5T_NATIVE_INT, 2, d23, m23);
	hid_t s8 = str_type(8, H5T_STR_NULLTERM, H5T_CSET_ASCII);
	mk_attr(loc, "str_nullterm", s8, s8, 0, NULL, "units\0\0");
	hid_t s6 = str_type(6, H5T_STR_NULLPAD, H5T_CSET_ASCII);
	mk_attr(loc, "str_nullpad_array", s6, s6, 1, &d2, "abc\0\0\0defghi");
	hid_t s5 = str_type(5, H5T_STR_SPACEPAD, H5T_CSET_UTF8);
	mk_attr(loc, "str_spacepad_utf8", s5, s5, 0, NULL, "\xc3\xa9t\xc3\xa9");
	hid_t vs = str_type(H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_UTF8);
	const char *one = "variable-length \xe2\x9c\x93";
	const char *many[3] = {"a", "", "long string with spaces"};
	mk_attr(loc, "vstr", vs, vs, 0, NULL, &one);
	mk_attr(loc, "vstr_array", vs, vs, 1, &d3, many);
	mk_attr(loc, "null_space", H5T_STD_I32LE, H5T_NATIVE_INT, -1, NULL, NULL);
	hid_t vl = H5Tvlen_create(H5T_STD_I16LE);
	hvl_t seq[2] = {{2, (short[]){1, 2}}, {0, NULL}};
	hid_t vlm = H5Tvlen_create(H5T_NATIVE_SHORT);
	mk_attr(loc, "vlen_i16", vl, vlm, 1, &d2, seq);
	H5Tclose(vl);
	H5Tclose(vlm);
	H5Tclose(s8);
	H5Tclose(s6);
	H5Tclose(s5);
	H5Tclose(vs);
}

typedef struct rec {
	int a;
	double b;
	char s[8];
	short v[3];
} rec;

static hid_t rec_type(int big)
{
	hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(rec));
	hsize_t d3 = 3;
	hid_t s8 = str_type(8, H5T_STR_NULLPAD, H5T_CSET_ASCII);
	hid_t arr = H5Tarray_create2(big ? H5T_STD_I16BE : H5T_NATIVE_SHORT, 1, &d3);
	ok(H5Tinsert(t, "a", HOFFSET(rec, a), big ? H5T_STD_I32BE : H5T_NATIVE_INT));
	ok(H5Tinsert(t, "b", HOFFSET(rec, b), big ? H5T_IEEE_F64BE : H5T_NATIVE_DOUBLE));
	ok(H5Tinsert(t, "s", HOFFSET(rec, s), s8));
	ok(H5Tinsert(t, "v", HOFFSET(rec, v), arr));
	H5Tclose(s8);
	H5Tclose(arr);
	return t;
}

/* Everything the structure can describe: a lossless round trip must be identical. */
static void make_everything(const char *path)
{
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(f >= 0);
	all_attrs(f);
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
	ok(H5Pset_create_intermediate_group(lcpl, 1));
	hid_t g = H5Gcreate2(f, "a/b/c", lcpl, H5P_DEFAULT, H5P_DEFAULT);
	all_attrs(g);
	H5Gclose(g);
	H5Gclose(H5Gcreate2(f, "empty", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
	H5Gclose(H5Gcreate2(f, "chunked", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
	H5Gclose(H5Gcreate2(f, "shapes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
	H5Gclose(H5Gcreate2(f, "types", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
	g = H5Gcreate2(f, "a/empty_too", lcpl, H5P_DEFAULT, H5P_DEFAULT);
	int gi = 42;
	mk_attr(g, "only_attr", H5T_STD_I32LE, H5T_NATIVE_INT, 0, NULL, &gi);
	H5Gclose(g);
	uint64_t seed = 1;
	/* float32 2-D with specials */
	float m[6][5];
	for (int i = 0; i < 30; i++)
		m[i / 5][i % 5] = (float)tu_gauss(&seed);
	m[0][0] = NAN;
	m[0][1] = -0.0f;
	m[0][2] = INFINITY;
	m[0][3] = 1e-40f;
	hsize_t d65[2] = {6, 5};
	mk_ds(f, "a/b/c/matrix", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d65, NULL, -1, m);
	g = H5Gopen2(f, "a/b/c", H5P_DEFAULT);
	hid_t ds = H5Dopen2(g, "matrix", H5P_DEFAULT);
	all_attrs(ds);
	H5Dclose(ds);
	H5Gclose(g);
	/* every integer width, both byte orders */
	hid_t ints = H5Gcreate2(f, "ints", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	long long iv[16];
	for (int i = 0; i < 16; i++)
		iv[i] = (i * 37 - 300) * (i % 2 ? 1 : -1);
	hsize_t d16 = 16;
	const struct {
		const char *name;
		hid_t le, be, mem;
	} it[] = {
		{"i8", H5T_STD_I8LE, H5T_STD_I8BE, H5T_NATIVE_SCHAR},
		{"u8", H5T_STD_U8LE, H5T_STD_U8BE, H5T_NATIVE_UCHAR},
		{"i16", H5T_STD_I16LE, H5T_STD_I16BE, H5T_NATIVE_SHORT},
		{"u16", H5T_STD_U16LE, H5T_STD_U16BE, H5T_NATIVE_USHORT},
		{"i32", H5T_STD_I32LE, H5T_STD_I32BE, H5T_NATIVE_INT},
		{"u32", H5T_STD_U32LE, H5T_STD_U32BE, H5T_NATIVE_UINT},
		{"i64", H5T_STD_I64LE, H5T_STD_I64BE, H5T_NATIVE_LLONG},
		{"u64", H5T_STD_U64LE, H5T_STD_U64BE, H5T_NATIVE_ULLONG},
	};
	for (size_t k = 0; k < sizeof(it) / sizeof(it[0]); k++) {
		uint8_t buf[16 * 8];
		size_t es = H5Tget_size(it[k].mem);
		for (int i = 0; i < 16; i++)
			memcpy(buf + i * es, &iv[i], es); /* little-endian host: low bytes */
		char n[32];
		snprintf(n, sizeof(n), "%s_le", it[k].name);
		mk_ds(ints, n, it[k].le, it[k].mem, 1, &d16, NULL, -1, buf);
		snprintf(n, sizeof(n), "%s_be", it[k].name);
		mk_ds(ints, n, it[k].be, it[k].mem, 1, &d16, NULL, -1, buf);
	}
	H5Gclose(ints);
	/* every float width, both byte orders */
	hid_t fl = H5Gcreate2(f, "floats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	double dv[16];
	float fv[16];
	uint16_t hv[16], bv[16];
	for (int i = 0; i < 16; i++) {
		dv[i] = tu_gauss(&seed) * 100;
		fv[i] = (float)dv[i];
		uint32_t b32;
		memcpy(&b32, &fv[i], 4);
		bv[i] = (uint16_t)(b32 >> 16);
		hv[i] = (uint16_t)(0x3c00 + i * 17); /* float16 bit patterns */
	}
	dv[3] = NAN;
	fv[4] = -INFINITY;
	hv[5] = 0x7e00;
	mk_ds(fl, "f64_le", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &d16, NULL, -1, dv);
	mk_ds(fl, "f64_be", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, 1, &d16, NULL, -1, dv);
	mk_ds(fl, "f32_le", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &d16, NULL, -1, fv);
	mk_ds(fl, "f32_be", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 1, &d16, NULL, -1, fv);
	hid_t h_le = f16_type(0, 0), h_be = f16_type(1, 0), b_le = f16_type(0, 1),
	      b_be = f16_type(1, 1);
	mk_ds(fl, "f16_le", h_le, h_le, 1, &d16, NULL, -1, hv);
	mk_ds(fl, "f16_be", h_be, h_le, 1, &d16, NULL, -1, hv);
	mk_ds(fl, "bf16_le", b_le, b_le, 1, &d16, NULL, -1, bv);
	mk_ds(fl, "bf16_be", b_be, b_le, 1, &d16, NULL, -1, bv);
	H5Tclose(h_le), H5Tclose(h_be), H5Tclose(b_le), H5Tclose(b_be);
	H5Gclose(fl);
	/* chunked + shuffle + deflate + fletcher32, and an unlimited one */
	float big[8][16][4];
	for (int i = 0; i < 8 * 16 * 4; i++)
		(&big[0][0][0])[i] = (float)(tu_gauss(&seed) * 0.1);
	hsize_t dbig[3] = {8, 16, 4}, cbig[3] = {4, 8, 4};
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	ok(H5Pset_chunk(dcpl, 3, cbig));
	ok(H5Pset_shuffle(dcpl));
	ok(H5Pset_deflate(dcpl, 6));
	ok(H5Pset_fletcher32(dcpl));
	mk_ds(f, "chunked/deflate_shuffle", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dbig, NULL, dcpl,
	      big);
	H5Pclose(dcpl);
	hsize_t dun[2] = {10, 3}, mun[2] = {H5S_UNLIMITED, 3}, cun[2] = {4, 3};
	dcpl = H5Pcreate(H5P_DATASET_CREATE);
	ok(H5Pset_chunk(dcpl, 2, cun));
	ok(H5Pset_deflate(dcpl, 1));
	double d30[30];
	for (int i = 0; i < 30; i++)
		d30[i] = tu_gauss(&seed);
	mk_ds(f, "chunked/unlimited_be", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, 2, dun, mun, dcpl, d30);
	H5Pclose(dcpl);
	dcpl = H5Pcreate(H5P_DATASET_CREATE);
	ok(H5Pset_layout(dcpl, H5D_COMPACT));
	mk_ds(f, "compact", H5T_STD_I32LE, H5T_NATIVE_INT, 1, &d16, NULL, dcpl, iv);
	H5Pclose(dcpl);
	/* 0-d, zero-size and null dataspaces */
	double sc = 2.718281828;
	mk_ds(f, "shapes/scalar", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, NULL, -1, &sc);
	hsize_t dz[2] = {0, 5};
	mk_ds(f, "shapes/zero_size", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dz, NULL, -1, NULL);
	mk_ds(f, "shapes/null_space", H5T_STD_I32LE, H5T_NATIVE_INT, -1, NULL, NULL, -1, NULL);
	/* types carried as bytes or as enumerations */
	rec recs[4];
	memset(recs, 0, sizeof(recs));
	for (int i = 0; i < 4; i++) {
		recs[i].a = i * 1000 - 1;
		recs[i].b = i / 3.0;
		recs[i].s[0] = 'r';
		recs[i].s[1] = (char)('0' + i);
		for (int k = 0; k < 3; k++)
			recs[i].v[k] = (short)(i * 10 + k);
	}
	hsize_t d4 = 4;
	hid_t rt = rec_type(0), rtb = rec_type(1);
	mk_ds(f, "types/compound", rt, rt, 1, &d4, NULL, -1, recs);
	mk_ds(f, "types/compound_be", rtb, rt, 1, &d4, NULL, -1, recs);
	mk_attr(f, "compound_attr", rt, rt, 1, &d4, recs);
	hid_t op = H5Tcreate(H5T_OPAQUE, 3);
	ok(H5Tset_tag(op, "rgb pixel"));
	mk_ds(f, "types/opaque", op, op, 1, &d4, NULL, -1, "abcdefghijkl");
	hid_t eb = H5Tenum_create(H5T_STD_I8LE);
	signed char fv0 = 0, fv1 = 1;
	ok(H5Tenum_insert(eb, "FALSE", &fv0));
	ok(H5Tenum_insert(eb, "TRUE", &fv1));
	mk_ds(f, "types/bool", eb, eb, 1, &d4, NULL, -1, (signed char[]){1, 0, 0, 1});
	hid_t ec = H5Tenum_create(H5T_STD_U16BE);
	unsigned short cv[3] = {0, 10, 500};
	ok(H5Tenum_insert(ec, "red", &cv[0]));
	ok(H5Tenum_insert(ec, "green", &cv[1]));
	ok(H5Tenum_insert(ec, "blue", &cv[2]));
	hid_t ecm = H5Tenum_create(H5T_NATIVE_USHORT);
	ok(H5Tenum_insert(ecm, "red", &cv[0]));
	ok(H5Tenum_insert(ecm, "green", &cv[1]));
	ok(H5Tenum_insert(ecm, "blue", &cv[2]));
	mk_ds(f, "types/enum_be", ec, ecm, 1, &d4, NULL, -1, (unsigned short[]){500, 0, 10, 10});
	mk_attr(f, "enum_attr", ec, ecm, 0, NULL, &cv[1]);
	hid_t s7 = str_type(7, H5T_STR_NULLPAD, H5T_CSET_ASCII);
	mk_ds(f, "types/fixed_strings", s7, s7, 1, &d4, NULL, -1, "one\0\0\0\0twotwotthree\0\0four\0\0\0");
	hid_t vs = str_type(H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_UTF8);
	const char *vsd[4] = {"alpha", "", "\xce\xb2\xce\xb7\xcf\x84\xce\xb1", "delta delta"};
	mk_ds(f, "types/vlen_strings", vs, vs, 1, &d4, NULL, -1, vsd);
	hid_t vl = H5Tvlen_create(H5T_STD_I32LE);
	hid_t vlm = H5Tvlen_create(H5T_NATIVE_INT);
	hvl_t seq[4] = {{1, (int[]){7}}, {0, NULL}, {3, (int[]){1, 2, 3}}, {2, (int[]){-1, -2}}};
	mk_ds(f, "types/vlen_i32", vl, vlm, 1, &d4, NULL, -1, seq);
	hid_t bf = H5Tcopy(H5T_STD_B16LE);
	mk_ds(f, "types/bitfield", bf, bf, 1, &d4, NULL, -1, (uint16_t[]){1, 2, 0x8000, 0xffff});
	hid_t odd = H5Tcopy(H5T_STD_I16LE);
	ok(H5Tset_precision(odd, 12));
	ok(H5Tset_offset(odd, 2));
	mk_ds(f, "types/int12_in_16", odd, odd, 1, &d4, NULL, -1, (uint16_t[]){4, 8, 0x3ffc, 0});
	hsize_t d22[2] = {2, 2};
	hid_t at = H5Tarray_create2(H5T_IEEE_F32LE, 2, d22);
	float av[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}};
	mk_ds(f, "types/array_2x2", at, at, 1, (hsize_t[]){2}, NULL, -1, av);
	/* a named datatype with an attribute, used by a dataset */
	hid_t nt = rec_type(0);
	ok(H5Tcommit2(f, "types/named_record", nt, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
	mk_attr(nt, "about", H5T_STD_I32LE, H5T_NATIVE_INT, 0, NULL, &gi);
	H5Tclose(nt);
	/* links: a hard alias, a soft link, a hard-link cycle */
	ok(H5Lcreate_hard(f, "a/b/c/matrix", f, "alias_of_matrix", H5P_DEFAULT, H5P_DEFAULT));
	ok(H5Lcreate_soft("/a/b", f, "soft_to_b", H5P_DEFAULT, H5P_DEFAULT));
	ok(H5Lcreate_soft("/nowhere", f, "dangling", H5P_DEFAULT, H5P_DEFAULT));
	ok(H5Lcreate_hard(f, "a", f, "a/b/loop_to_a", H5P_DEFAULT, H5P_DEFAULT));
	H5Tclose(rt), H5Tclose(rtb), H5Tclose(op), H5Tclose(eb), H5Tclose(ec), H5Tclose(ecm);
	H5Tclose(s7), H5Tclose(vs), H5Tclose(vl), H5Tclose(vlm), H5Tclose(bf), H5Tclose(odd);
	H5Tclose(at);
	H5Pclose(lcpl);
	ok(H5Fclose(f));
}

/* A Keras 2 style checkpoint (model.save('x.h5') / save_weights). */
static const char *keras_layers[3] = {"dense", "batch_normalization", "dense_1"};

static void fixed_str_attr(hid_t loc, const char *name, const char *const *v, size_t n, int scalar)
{
	size_t w = 1;
	for (size_t i = 0; i < n; i++)
		if (strlen(v[i]) > w)
			w = strlen(v[i]);
	char *buf = calloc(n, w);
	for (size_t i = 0; i < n; i++)
		memcpy(buf + i * w, v[i], strlen(v[i]));
	hid_t t = str_type(w, H5T_STR_NULLPAD, H5T_CSET_ASCII);
	hsize_t d = n;
	mk_attr(loc, name, t, t, scalar ? 0 : 1, &d, buf);
	H5Tclose(t);
	free(buf);
}

static void make_keras(const char *path)
{
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	const char *ver[1] = {"2.13.1"}, *backend[1] = {"tensorflow"};
	const char *config[1] = {"{\"class_name\": \"Sequential\", \"config\": {\"name\": "
	                         "\"sequential\", \"layers\": [{\"class_name\": \"Dense\"}]}}"};
	fixed_str_attr(f, "keras_version", ver, 1, 1);
	fixed_str_attr(f, "backend", backend, 1, 1);
	fixed_str_attr(f, "model_config", config, 1, 1);
	hid_t mw = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	fixed_str_attr(mw, "layer_names", keras_layers, 3, 0);
	fixed_str_attr(mw, "keras_version", ver, 1, 1);
	fixed_str_attr(mw, "backend", backend, 1, 1);
	uint64_t seed = 7;
	const hsize_t shapes[3][2] = {{64, 32}, {32, 0}, {32, 10}};
	for (int l = 0; l < 3; l++) {
		hid_t lg = H5Gcreate2(mw, keras_layers[l], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
		hid_t inner = H5Gcreate2(lg, keras_layers[l], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
		char names[4][64];
		const char *np[4];
		size_t nw = 0;
		if (l == 1) {
			const char *bn[4] = {"gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"};
			for (int k = 0; k < 4; k++) {
				float v[32];
				for (int i = 0; i < 32; i++)
					v[i] = (float)(k == 0 || k == 3 ? 1 + 0.1 * tu_gauss(&seed) : 0.1 * tu_gauss(&seed));
				hsize_t d = 32;
				mk_ds(inner, bn[k], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &d, NULL, -1, v);
				snprintf(names[nw], 64, "%s/%s", keras_layers[l], bn[k]);
				np[nw] = names[nw];
				nw++;
			}
		} else {
			size_t ne = (size_t)(shapes[l][0] * shapes[l][1]);
			float *k = malloc(ne * sizeof(float));
			for (size_t i = 0; i < ne; i++)
				k[i] = (float)(tu_gauss(&seed) * 0.05);
			mk_ds(inner, "kernel:0", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, shapes[l], NULL, -1, k);
			hsize_t nb = shapes[l][1];
			mk_ds(inner, "bias:0", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &nb, NULL, -1, k);
			free(k);
			snprintf(names[0], 64, "%s/kernel:0", keras_layers[l]);
			snprintf(names[1], 64, "%s/bias:0", keras_layers[l]);
			np[0] = names[0], np[1] = names[1];
			nw = 2;
		}
		fixed_str_attr(lg, "weight_names", np, nw, 0);
		H5Gclose(inner);
		H5Gclose(lg);
	}
	H5Gclose(mw);
	hid_t ow = H5Gcreate2(f, "optimizer_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	const char *wn[2] = {"Adam/iter:0", "Adam/dense/kernel/m:0"};
	fixed_str_attr(ow, "weight_names", wn, 2, 0);
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
	ok(H5Pset_create_intermediate_group(lcpl, 1));
	long long iter = 1200;
	hid_t sp = H5Screate(H5S_SCALAR);
	hid_t ds = H5Dcreate2(ow, "Adam/iter:0", H5T_STD_I64LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
	ok(H5Dwrite(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, &iter));
	H5Dclose(ds);
	H5Sclose(sp);
	float m[64 * 32];
	for (int i = 0; i < 64 * 32; i++)
		m[i] = (float)(tu_gauss(&seed) * 1e-4);
	hsize_t dm[2] = {64, 32};
	sp = H5Screate_simple(2, dm, NULL);
	ds = H5Dcreate2(ow, "Adam/dense/kernel/m:0", H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
	ok(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m));
	H5Dclose(ds);
	H5Sclose(sp);
	H5Pclose(lcpl);
	H5Gclose(ow);
	ok(H5Fclose(f));
}

/* Objects the structure cannot describe, or that the flags forbid, one per file. */
enum { U_REF, U_VLEN_COMPOUND, U_EXTLINK, U_EXTSTORE, U_FILTER, U_REF_ATTR, U_COUNT };
static const char *u_names[U_COUNT] = {"data/refs", "data/vlen_in_compound", "data/ext_link",
                                       "data/ext_storage", "data/plugin_filtered",
                                       "data (attribute 'ref_attr')"};

#define DUMMY_FILTER 300
static size_t dummy_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                           size_t nbytes, size_t *buf_size, void **buf)
{
	(void)flags, (void)cd_nelmts, (void)cd_values, (void)buf_size, (void)buf;
	return nbytes;
}

static const H5Z_class2_t dummy_class = {H5Z_CLASS_T_VERS, DUMMY_FILTER, 1, 1, "dummy test filter",
                                         NULL, NULL, dummy_filter};

/* A plain dataset beside the unsupported object, so that skipping leaves something. */
static hid_t unsup_file(const char *path)
{
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gcreate2(f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	hsize_t d = 4;
	mk_ds(g, "plain", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &d, NULL, -1, (float[]){1, 2, 3, 4});
	H5Gclose(g);
	return f;
}

static void make_unsupported(const char *path, int which, const char *aux)
{
	hid_t f = unsup_file(path);
	hid_t g = H5Gopen2(f, "data", H5P_DEFAULT);
	hsize_t d2 = 2;
	switch (which) {
	case U_REF: {
		hobj_ref_t r[2];
		ok(H5Rcreate(&r[0], f, "/data/plain", H5R_OBJECT, -1));
		ok(H5Rcreate(&r[1], f, "/data", H5R_OBJECT, -1));
		mk_ds(g, "refs", H5T_STD_REF_OBJ, H5T_STD_REF_OBJ, 1, &d2, NULL, -1, r);
		break;
	}
	case U_VLEN_COMPOUND: {
		hid_t vs = str_type(H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_ASCII);
		hid_t t = H5Tcreate(H5T_COMPOUND, 2 * sizeof(char *));
		ok(H5Tinsert(t, "n", 0, H5T_NATIVE_INT));
		ok(H5Tinsert(t, "s", sizeof(char *), vs));
		mk_ds(g, "vlen_in_compound", t, -1, 1, &d2, NULL, -1, NULL);
		H5Tclose(t);
		H5Tclose(vs);
		break;
	}
	case U_EXTLINK: {
		hid_t o = H5Fcreate(aux, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
		hsize_t d = 3;
		mk_ds(o, "secret", H5T_STD_I32LE, H5T_NATIVE_INT, 1, &d, NULL, -1, (int[]){7, 8, 9});
		H5Fclose(o);
		ok(H5Lcreate_external(aux, "/secret", g, "ext_link", H5P_DEFAULT, H5P_DEFAULT));
		break;
	}
	case U_EXTSTORE: {
		int v[4] = {11, 22, 33, 44};
		FILE *x = fopen(aux, "wb");
		assert_non_null(x);
		fwrite(v, sizeof(v), 1, x);
		fclose(x);
		hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
		const char *base = strrchr(aux, '/') ? strrchr(aux, '/') + 1 : aux;
		ok(H5Pset_external(dcpl, base, 0, sizeof(v)));
		hsize_t d = 4;
		/* No write: the data already sits in the external file. */
		mk_ds(g, "ext_storage", H5T_STD_I32LE, -1, 1, &d, NULL, dcpl, NULL);
		H5Pclose(dcpl);
		break;
	}
	case U_FILTER: {
		ok(H5Zregister(&dummy_class));
		hsize_t d = 8, c = 4;
		hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
		ok(H5Pset_chunk(dcpl, 1, &c));
		ok(H5Pset_filter(dcpl, DUMMY_FILTER, H5Z_FLAG_MANDATORY, 0, NULL));
		mk_ds(g, "plugin_filtered", H5T_STD_I32LE, H5T_NATIVE_INT, 1, &d, NULL, dcpl,
		      (int[]){1, 2, 3, 4, 5, 6, 7, 8});
		H5Pclose(dcpl);
		break;
	}
	case U_REF_ATTR: {
		hobj_ref_t r;
		ok(H5Rcreate(&r, f, "/data/plain", H5R_OBJECT, -1));
		mk_attr(g, "ref_attr", H5T_STD_REF_OBJ, H5T_STD_REF_OBJ, 0, NULL, &r);
		break;
	}
	}
	H5Gclose(g);
	ok(H5Fclose(f));
	if (which == U_FILTER)
		ok(H5Zunregister(DUMMY_FILTER));
}

/* ------------------------------------------------------------------------------------ */
/* Round trips                                                                           */
/* ------------------------------------------------------------------------------------ */

typedef struct archive {
	alcm_writer *w;
	const void *buf;
	size_t len;
	size_t ntensors;
} archive;

/* .h5 -> archive in memory (tensors + ATTR section). */
static int pack_h5(const char *src, unsigned flags, int mode, double bound, archive *ar,
                   alcm_h5_input **keep)
{
	alcm_h5_input *in = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = mode;
	o.bound = bound;
	o.threads = 1;
	o.source_format = "hdf5";
	memset(ar, 0, sizeof(*ar));
	int st = alcm_h5_input_open(&in, src, NULL, flags);
	if (st) {
		print_message("open: %s\n", alcm_h5_input_detail(in));
		goto out;
	}
	assert_int_equal(alcm_writer_open_memory(&ar->w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, ar->w, &o, NULL), ALCM_OK);
	for (;;) {
		alcm_tensor t;
		int has;
		st = alcm_h5_input_next(in, &t, &has);
		if (st) {
			print_message("next: %s\n", alcm_h5_input_detail(in));
			goto out;
		}
		if (!has)
			break;
		assert_int_equal(alcm_encoder_add(e, &t, NULL), ALCM_OK);
		ar->ntensors++;
	}
	const void *sb;
	size_t sl;
	assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
	assert_int_equal(alcm_encoder_add_section(e, ALCM_H5_SECTION, 0, sb, sl), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(ar->w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(ar->w, &ar->buf, &ar->len), ALCM_OK);
out:
	alcm_encoder_free(e);
	if (keep)
		*keep = in;
	else
		alcm_h5_input_free(in);
	return st;
}

/* archive -> .h5 through alcm_h5_output with the ATTR section. */
static int unpack_h5(const archive *ar, const char *dst, unsigned flags,
                     const alcm_h5_output_options *opt, int use_structure)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	alcm_h5_output *o = NULL;
	uint8_t *st_buf = NULL, *buf = NULL;
	size_t st_len = 0;
	assert_int_equal(alcm_reader_open_memory(&r, ar->buf, ar->len, "mem", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	uint32_t idx;
	if (use_structure && alcm_reader_find_section(r, ALCM_H5_SECTION, 0, &idx) == ALCM_OK) {
		alcm_section_info si;
		assert_int_equal(alcm_reader_section_info(r, idx, &si), ALCM_OK);
		st_len = (size_t)si.length;
		st_buf = malloc(st_len ? st_len : 1);
		assert_int_equal(alcm_reader_section_read(r, idx, st_buf, st_len), ALCM_OK);
	}
	int st = alcm_h5_output_open(&o, dst, flags | ALCM_WRITE_NO_SYNC | ALCM_WRITE_OVERWRITE,
	                             st_buf, st_len, opt);
	if (st) {
		print_message("output open: %s\n", alcm_h5_output_detail(o));
		goto out;
	}
	for (size_t i = 0; i < alcm_archive_tensor_count(a); i++) {
		alcm_tensor_info ti;
		assert_int_equal(alcm_archive_tensor_info(a, i, &ti), ALCM_OK);
		free(buf);
		buf = malloc(ti.raw_bytes ? ti.raw_bytes : 1);
		assert_int_equal(alcm_archive_decode(a, i, buf, ti.raw_bytes), ALCM_OK);
		alcm_tensor t;
		memset(&t, 0, sizeof(t));
		t.name = ti.name;
		t.name_len = ti.name_len;
		t.dtype = ti.dtype;
		t.ndim = ti.ndim;
		memcpy(t.shape, ti.shape, sizeof(t.shape));
		t.data = buf;
		t.nbytes = ti.raw_bytes;
		if ((st = alcm_h5_output_write(o, &t))) {
			print_message("write: %s\n", alcm_h5_output_detail(o));
			goto out;
		}
	}
	if ((st = alcm_h5_output_commit(o)))
		print_message("commit: %s\n", alcm_h5_output_detail(o));
out:
	free(buf);
	free(st_buf);
	alcm_h5_output_free(o);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}

static void archive_free(archive *ar)
{
	alcm_writer_free(ar->w);
	memset(ar, 0, sizeof(*ar));
}

/* Runs h5diff; @return its exit status (0 identical, 1 different, 2 error). */
static int h5diff(const char *a, const char *b, const char *opts)
{
	char cmd[16384], log[4200];
	snprintf(log, sizeof(log), "%s.h5diff.log", b);
	snprintf(cmd, sizeof(cmd), "h5diff %s '%s' '%s' > '%s' 2>&1", opts ? opts : "", a, b, log);
	int rc = system(cmd);
	int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 99;
	if (code != 0) {
		size_t n;
		uint8_t *t = tu_read_file(log, &n);
		if (t) {
			print_message("%s -> %d\n%.*s\n", cmd, code, (int)(n > 3000 ? 3000 : n), (char *)t);
			free(t);
		}
	}
	unlink(log);
	return code;
}

/* ------------------------------------------------------------------------------------ */
/* Tests                                                                                 */
/* ------------------------------------------------------------------------------------ */

static void test_everything_lossless(void **state)
{
	(void)state;
	const char *src = tu_path("everything.h5");
	char dst[4096];
	snprintf(dst, sizeof(dst), "%s", tu_path("everything.out.h5"));
	make_everything(src);
	archive ar;
	alcm_h5_input *in = NULL;
	assert_int_equal(pack_h5(src, 0, ALCM_MODE_LOSSLESS, 0, &ar, &in), ALCM_OK);
	assert_int_equal(alcm_h5_input_skipped(in), 0);
	const void *sb;
	size_t sl;
	assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
	alcm_h5_structure_stats st;
	char why[512];
	assert_int_equal(alcm_h5_structure_check(sb, sl, &st, why), ALCM_OK);
	assert_true(st.groups >= 9);   /* /, a, a/b, a/b/c, a/empty_too, chunked, empty, ... */
	assert_int_equal(st.datatypes, 1);
	assert_int_equal(st.links, 4); /* alias, soft, dangling, loop */
	assert_true(st.attributes > 60);
	assert_int_equal(st.tensor_datasets, ar.ntensors);
	assert_int_equal(st.datasets, ar.ntensors + 3); /* null_space, vlen_strings, vlen_i32 */
	alcm_h5_input_free(in);
	/* The walk is depth-first in name order: an object reached by two hard links is named
	 * by the path met first ("a/..." before "alias_of_matrix"); the other is a link. */
	{
		alcm_reader *r = NULL;
		alcm_archive *a = NULL;
		size_t k;
		assert_int_equal(alcm_reader_open_memory(&r, ar.buf, ar.len, "m", NULL, NULL, 0), 0);
		assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
		assert_int_equal(alcm_archive_find(a, "a/b/c/matrix", 12, &k), ALCM_OK);
		assert_int_equal(alcm_archive_find(a, "alias_of_matrix", 15, &k), ALCM_E_NOTFOUND);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	assert_int_equal(unpack_h5(&ar, dst, 0, NULL, 1), ALCM_OK);
	assert_int_equal(h5diff(src, dst, NULL), 0);
	/* h5diff compares values; the datatypes themselves must be the source's too. */
	hid_t f1 = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT), f2 = H5Fopen(dst, H5F_ACC_RDONLY, H5P_DEFAULT);
	const char *check[] = {"floats/f32_be", "floats/bf16_be", "types/compound_be",
	                       "types/enum_be", "types/int12_in_16", "ints/i64_be",
	                       "types/vlen_strings", "chunked/unlimited_be"};
	for (size_t i = 0; i < sizeof(check) / sizeof(check[0]); i++) {
		hid_t d1 = H5Dopen2(f1, check[i], H5P_DEFAULT), d2 = H5Dopen2(f2, check[i], H5P_DEFAULT);
		hid_t t1 = H5Dget_type(d1), t2 = H5Dget_type(d2);
		assert_true(H5Tequal(t1, t2) > 0);
		H5Tclose(t1), H5Tclose(t2), H5Dclose(d1), H5Dclose(d2);
	}
	/* chunking and filters kept */
	hid_t d2 = H5Dopen2(f2, "chunked/deflate_shuffle", H5P_DEFAULT);
	hid_t dcpl = H5Dget_create_plist(d2);
	assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
	hsize_t cd[3];
	assert_int_equal(H5Pget_chunk(dcpl, 3, cd), 3);
	assert_true(cd[0] == 4 && cd[1] == 8 && cd[2] == 4);
	assert_int_equal(H5Pget_nfilters(dcpl), 3);
	H5Pclose(dcpl), H5Dclose(d2);
	/* hard links stay hard links to one object */
	H5O_info_t a1, a2;
	ok(H5Oget_info_by_name2(f2, "alias_of_matrix", &a1, H5O_INFO_BASIC, H5P_DEFAULT));
	ok(H5Oget_info_by_name2(f2, "a/b/c/matrix", &a2, H5O_INFO_BASIC, H5P_DEFAULT));
	assert_true(a1.addr == a2.addr);
	assert_int_equal(a1.rc, 2);
	H5L_info_t li;
	ok(H5Lget_info(f2, "soft_to_b", &li, H5P_DEFAULT));
	assert_int_equal(li.type, H5L_TYPE_SOFT);
	H5Fclose(f1), H5Fclose(f2);
	archive_free(&ar);
}

static void test_everything_lossy(void **state)
{
	(void)state;
	const char *src = tu_path("lossy.h5");
	char dst[4096];
	snprintf(dst, sizeof(dst), "%s", tu_path("lossy.out.h5"));
	make_everything(src);
	archive ar;
	assert_int_equal(pack_h5(src, 0, ALCM_MODE_MAX_ERROR, 1e-3, &ar, NULL), ALCM_OK);
	assert_int_equal(unpack_h5(&ar, dst, 0, NULL, 1), ALCM_OK);
	/* Within the bound everywhere; not identical (the floats were quantized). */
	assert_int_equal(h5diff(src, dst, "-d 1e-3"), 0);
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "h5diff -q '%s' '%s' a/b/c/matrix >/dev/null 2>&1", src, dst);
	int rc = system(cmd);
	assert_int_equal(WEXITSTATUS(rc), 1);
	archive_free(&ar);
}

static void test_keras(void **state)
{
	(void)state;
	const char *src = tu_path("keras.h5");
	char dst[4096], dst2[4096];
	snprintf(dst, sizeof(dst), "%s", tu_path("keras.out.h5"));
	snprintf(dst2, sizeof(dst2), "%s", tu_path("keras.gz.h5"));
	make_keras(src);
	archive ar;
	alcm_h5_input *in = NULL;
	assert_int_equal(pack_h5(src, 0, ALCM_MODE_LOSSLESS, 0, &ar, &in), ALCM_OK);
	assert_int_equal(ar.ntensors, 10);
	/* names are HDF5 paths, sorted */
	alcm_h5_input_free(in);
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, ar.buf, ar.len, "k", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	size_t k;
	const char *kn = "model_weights/dense/dense/kernel:0";
	assert_int_equal(alcm_archive_find(a, kn, strlen(kn), &k), ALCM_OK);
	alcm_tensor_info ti;
	assert_int_equal(alcm_archive_tensor_info(a, 0, &ti), ALCM_OK);
	assert_memory_equal(ti.name, "model_weights/batch_normalization/batch_normalization/beta:0",
	                    ti.name_len);
	alcm_archive_free(a);
	alcm_reader_free(r);
	assert_int_equal(unpack_h5(&ar, dst, 0, NULL, 1), ALCM_OK);
	assert_int_equal(h5diff(src, dst, NULL), 0);
	/* layer_names read back as the same fixed strings */
	hid_t f = H5Fopen(dst, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t at = H5Aopen_by_name(f, "model_weights", "layer_names", H5P_DEFAULT, H5P_DEFAULT);
	hid_t t = H5Aget_type(at);
	size_t w = H5Tget_size(t);
	assert_int_equal(w, strlen("batch_normalization"));
	char buf[3 * 32];
	ok(H5Aread(at, t, buf));
	for (int i = 0; i < 3; i++)
		assert_int_equal(strncmp(buf + i * w, keras_layers[i], w), 0);
	H5Tclose(t), H5Aclose(at), H5Fclose(f);
	/* --h5-chunk / --h5-gzip: chunked, compressed, still identical */
	alcm_h5_output_options opt;
	alcm_h5_output_options_default(&opt);
	opt.chunk_bytes = 2048;
	opt.gzip_level = 4;
	opt.shuffle = 1;
	assert_int_equal(unpack_h5(&ar, dst2, 0, &opt, 1), ALCM_OK);
	assert_int_equal(h5diff(src, dst2, NULL), 0);
	f = H5Fopen(dst2, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t ds = H5Dopen2(f, kn, H5P_DEFAULT);
	hid_t dcpl = H5Dget_create_plist(ds);
	assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
	hsize_t cd[2];
	H5Pget_chunk(dcpl, 2, cd);
	assert_true(cd[0] * cd[1] * 4 <= 2048 && cd[1] == 32);
	unsigned fl;
	size_t nc = 1;
	unsigned cv[1];
	assert_int_equal(H5Pget_filter2(dcpl, 0, &fl, &nc, cv, 0, NULL, NULL), H5Z_FILTER_SHUFFLE);
	nc = 1;
	assert_int_equal(H5Pget_filter2(dcpl, 1, &fl, &nc, cv, 0, NULL, NULL), H5Z_FILTER_DEFLATE);
	assert_int_equal(cv[0], 4);
	H5Pclose(dcpl), H5Dclose(ds), H5Fclose(f);
	archive_free(&ar);
}

static void test_unsupported(void **state)
{
	(void)state;
	char aux[4096];
	for (int u = 0; u < U_COUNT; u++) {
		char name[64];
		snprintf(name, sizeof(name), "unsup%d.h5", u);
		const char *src = tu_path(name);
		snprintf(name, sizeof(name), "unsup%d.aux", u);
		snprintf(aux, sizeof(aux), "%s", tu_path(name));
		make_unsupported(src, u, aux);
		alcm_h5_input *in = NULL;
		/* refused, naming the object */
		int st = alcm_h5_input_open(&in, src, NULL, 0);
		assert_int_equal(st, ALCM_E_UNSUPPORTED);
		const char *det = alcm_h5_input_detail(in);
		char want[128];
		snprintf(want, sizeof(want), "%s", u_names[u]);
		if (u == U_REF_ATTR)
			snprintf(want, sizeof(want), "'ref_attr' of 'data'");
		if (!strstr(det, want))
			print_message("detail: %s (want %s)\n", det, want);
		assert_non_null(strstr(det, want));
		alcm_h5_input_free(in);
		/* skipped and listed, the rest kept */
		in = NULL;
		assert_int_equal(alcm_h5_input_open(&in, src, NULL, ALCM_H5_SKIP_UNSUPPORTED), ALCM_OK);
		assert_int_equal(alcm_h5_input_skipped(in), 1);
		const char *reason = NULL;
		const char *sk = alcm_h5_input_skipped_name(in, 0, &reason);
		assert_string_equal(sk, u_names[u]);
		assert_true(reason && *reason);
		assert_null(alcm_h5_input_skipped_name(in, 1, NULL));
		const void *sb;
		size_t sl;
		assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
		alcm_h5_structure_stats stt;
		assert_int_equal(alcm_h5_structure_check(sb, sl, &stt, NULL), ALCM_OK);
		assert_int_equal(stt.skipped, 1);
		const char *p, *an, *rs;
		size_t pl, al, rl;
		assert_int_equal(alcm_h5_structure_skipped(sb, sl, 0, &p, &pl, &an, &al, &rs, &rl),
		                 ALCM_OK);
		assert_int_equal(rl, strlen(reason));
		assert_int_equal(alcm_h5_structure_skipped(sb, sl, 1, &p, &pl, &an, &al, &rs, &rl),
		                 ALCM_E_NOTFOUND);
		alcm_tensor t;
		int has, n = 0;
		while (alcm_h5_input_next(in, &t, &has) == ALCM_OK && has)
			n++;
		assert_int_equal(n, 1); /* data/plain */
		alcm_h5_input_free(in);
	}
}

static void test_external_allowed(void **state)
{
	(void)state;
	char aux[4096], dst[4096];
	/* external storage: read when allowed */
	const char *src = tu_path("extstore.h5");
	snprintf(aux, sizeof(aux), "%s", tu_path("extstore.raw"));
	make_unsupported(src, U_EXTSTORE, aux);
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, src, NULL, ALCM_H5_ALLOW_EXTERNAL), ALCM_OK);
	alcm_tensor t;
	int has, found = 0;
	while (alcm_h5_input_next(in, &t, &has) == ALCM_OK && has) {
		if (strncmp(t.name, "data/ext_storage", t.name_len) == 0) {
			assert_int_equal(t.dtype, ALCM_DTYPE_I32);
			assert_memory_equal(t.data, ((int[]){11, 22, 33, 44}), 16);
			found = 1;
		}
	}
	assert_true(found);
	alcm_h5_input_free(in);
	/* external link: kept as a link, never followed; recreated only when allowed */
	src = tu_path("extlink.h5");
	snprintf(aux, sizeof(aux), "%s", tu_path("extlink.target.h5"));
	make_unsupported(src, U_EXTLINK, aux);
	archive ar;
	assert_int_equal(pack_h5(src, ALCM_H5_ALLOW_EXTERNAL, 0, 0, &ar, NULL), ALCM_OK);
	assert_int_equal(ar.ntensors, 1);
	snprintf(dst, sizeof(dst), "%s", tu_path("extlink.out.h5"));
	assert_int_equal(unpack_h5(&ar, dst, 0, NULL, 1), ALCM_E_UNSUPPORTED);
	assert_false(tu_file_exists(dst));
	assert_int_equal(unpack_h5(&ar, dst, ALCM_H5_OUT_ALLOW_EXTERNAL, NULL, 1), ALCM_OK);
	hid_t f = H5Fopen(dst, H5F_ACC_RDONLY, H5P_DEFAULT);
	H5L_info_t li;
	ok(H5Lget_info(f, "data/ext_link", &li, H5P_DEFAULT));
	assert_int_equal(li.type, H5L_TYPE_EXTERNAL);
	H5Fclose(f);
	assert_int_equal(h5diff(src, dst, NULL), 0);
	archive_free(&ar);
}

static void test_plain_output(void **state)
{
	(void)state;
	const char *dst = tu_path("plain.h5");
	unlink(dst);
	alcm_h5_output *o = NULL;
	assert_int_equal(alcm_h5_output_open(&o, dst, ALCM_WRITE_NO_SYNC, NULL, 0, NULL), ALCM_OK);
	uint8_t bools[6] = {1, 0, 1, 1, 0, 0};
	uint16_t bf[4] = {0x3f80, 0xc000, 0x7fc0, 0x0000}, hf[4] = {0x3c00, 0xc000, 0x7e00, 0x8000};
	double sc = 1.25;
	const alcm_tensor ts[] = {
		{"/flags", 6, ALCM_DTYPE_BOOL, 2, {2, 3}, bools, 6},
		{"deep/er/bf16", 12, ALCM_DTYPE_BF16, 1, {4}, bf, 8},
		{"deep/f16", 8, ALCM_DTYPE_F16, 1, {4}, hf, 8},
		{"scalar", 6, ALCM_DTYPE_F64, 0, {0}, &sc, 8},
		{"empty", 5, ALCM_DTYPE_I32, 2, {0, 3}, NULL, 0},
	};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(alcm_h5_output_write(o, &ts[i]), ALCM_OK);
	assert_int_equal(alcm_h5_output_write(o, &ts[3]), ALCM_E_ARG); /* twice */
	alcm_tensor bad = ts[3];
	bad.name = "a//b";
	bad.name_len = 4;
	assert_int_equal(alcm_h5_output_write(o, &bad), ALCM_E_ARG);
	assert_false(tu_file_exists(dst));
	assert_int_equal(alcm_h5_output_commit(o), ALCM_OK);
	assert_int_equal(alcm_h5_output_commit(o), ALCM_E_STATE);
	alcm_h5_output_free(o);
	assert_true(tu_file_exists(dst));
	/* reads back with the same dtypes and bytes */
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, dst, NULL, 0), ALCM_OK);
	static const struct {
		const char *name;
		int dtype;
		size_t i;
	} want[] = {{"deep/er/bf16", ALCM_DTYPE_BF16, 1}, {"deep/f16", ALCM_DTYPE_F16, 2},
	            {"empty", ALCM_DTYPE_I32, 4}, {"flags", ALCM_DTYPE_BOOL, 0},
	            {"scalar", ALCM_DTYPE_F64, 3}};
	for (size_t k = 0; k < 5; k++) {
		alcm_tensor t;
		int has;
		assert_int_equal(alcm_h5_input_next(in, &t, &has), ALCM_OK);
		assert_true(has);
		assert_int_equal(t.name_len, strlen(want[k].name));
		assert_memory_equal(t.name, want[k].name, t.name_len);
		assert_int_equal(t.dtype, want[k].dtype);
		assert_int_equal(t.ndim, ts[want[k].i].ndim);
		assert_int_equal(t.nbytes, ts[want[k].i].nbytes);
		if (t.nbytes)
			assert_memory_equal(t.data, ts[want[k].i].data, t.nbytes);
	}
	alcm_h5_input_free(in);
	/* no overwrite without the flag; an uncommitted output leaves nothing */
	o = NULL;
	assert_int_equal(alcm_h5_output_open(&o, dst, 0, NULL, 0, NULL), ALCM_E_EXISTS);
	alcm_h5_output_free(o);
	const char *gone = tu_path("never.h5");
	o = NULL;
	assert_int_equal(alcm_h5_output_open(&o, gone, ALCM_WRITE_NO_SYNC, NULL, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_h5_output_write(o, &ts[3]), ALCM_OK);
	alcm_h5_output_free(o);
	assert_false(tu_file_exists(gone));
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", gone);
	*strrchr(dir, '/') = '\0';
	DIR *dd = opendir(dir);
	struct dirent *de;
	while ((de = readdir(dd)))
		assert_null(strstr(de->d_name, "never.h5."));
	closedir(dd);
}

static void test_structured_output_rules(void **state)
{
	(void)state;
	const char *src = tu_path("rules.h5");
	char dst[4096];
	snprintf(dst, sizeof(dst), "%s", tu_path("rules.out.h5"));
	make_keras(src);
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, src, NULL, 0), ALCM_OK);
	const void *sb;
	size_t sl;
	assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
	alcm_tensor t;
	int has;
	assert_int_equal(alcm_h5_input_next(in, &t, &has), ALCM_OK);
	alcm_h5_output *o = NULL;
	assert_int_equal(alcm_h5_output_open(&o, dst, ALCM_WRITE_NO_SYNC | ALCM_WRITE_OVERWRITE, sb,
	                                     sl, NULL), ALCM_OK);
	alcm_tensor w = t;
	w.dtype = ALCM_DTYPE_I32; /* same size, wrong dtype */
	assert_int_equal(alcm_h5_output_write(o, &w), ALCM_E_ARG);
	w = t;
	w.name = "not/in/structure";
	w.name_len = 16;
	assert_int_equal(alcm_h5_output_write(o, &w), ALCM_E_ARG);
	assert_int_equal(alcm_h5_output_write(o, &t), ALCM_OK);
	assert_int_equal(alcm_h5_output_commit(o), ALCM_E_STATE); /* others missing */
	assert_non_null(strstr(alcm_h5_output_detail(o), "was not written"));
	alcm_h5_output_free(o);
	assert_false(tu_file_exists(dst));
	o = NULL;
	unlink(dst);
	assert_int_equal(alcm_h5_output_open(&o, dst, ALCM_WRITE_NO_SYNC | ALCM_H5_OUT_PARTIAL, sb, sl,
	                                     NULL), ALCM_OK);
	assert_int_equal(alcm_h5_output_write(o, &t), ALCM_OK);
	assert_int_equal(alcm_h5_output_commit(o), ALCM_OK);
	alcm_h5_output_free(o);
	hid_t f = H5Fopen(dst, H5F_ACC_RDONLY, H5P_DEFAULT);
	assert_true(H5Aexists_by_name(f, "model_weights", "layer_names", H5P_DEFAULT) > 0);
	H5Fclose(f);
	alcm_h5_input_free(in);
}

static void test_limits(void **state)
{
	(void)state;
	const char *src = tu_path("limits.h5");
	make_keras(src);
	struct {
		int field;
		uint64_t v;
		const char *msg;
	} cases[] = {
		{0, 100, "element count exceeds"},      {1, 1000, "size exceeds"},
		{2, 1, "rank 2 exceeds"},               {3, 2048, "max_meta_bytes"},
		{4, 20, "over the limit"},              {5, 3, "more than 3 datasets"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		alcm_limits lim;
		alcm_limits_default(&lim);
		switch (cases[i].field) {
		case 0: lim.max_elements = cases[i].v; break;
		case 1: lim.max_decoded_bytes = cases[i].v; break;
		case 2: lim.max_ndim = (uint32_t)cases[i].v; break;
		case 3: lim.max_meta_bytes = cases[i].v; break;
		case 4: lim.max_name_bytes = (uint32_t)cases[i].v; break;
		case 5: lim.max_tensors = (uint32_t)cases[i].v; break;
		}
		alcm_h5_input *in = NULL;
		assert_int_equal(alcm_h5_input_open(&in, src, &lim, 0), ALCM_E_LIMIT);
		if (!strstr(alcm_h5_input_detail(in), cases[i].msg))
			print_message("case %zu: %s\n", i, alcm_h5_input_detail(in));
		assert_non_null(strstr(alcm_h5_input_detail(in), cases[i].msg));
		alcm_h5_input_free(in);
	}
	/* not a file, not HDF5 */
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, tu_path("missing.h5"), NULL, 0), ALCM_E_IO);
	alcm_h5_input_free(in);
	const char *junk = tu_path("junk.h5");
	assert_int_equal(tu_write_file(junk, "not an hdf5 file at all", 23), 0);
	in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, junk, NULL, 0), ALCM_E_CORRUPT);
	alcm_h5_input_free(in);
	in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, src, NULL, 0x80), ALCM_E_ARG);
	alcm_h5_input_free(in);
}

static void test_memory_matches_file(void **state)
{
	(void)state;
	const char *src = tu_path("mem.h5");
	make_everything(src);
	size_t n;
	uint8_t *img = tu_read_file(src, &n);
	assert_non_null(img);
	alcm_h5_input *a = NULL, *b = NULL;
	assert_int_equal(alcm_h5_input_open(&a, src, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_h5_input_open_memory(&b, img, n, NULL, 0), ALCM_OK);
	free(img);
	assert_int_equal(alcm_h5_input_size(b), n);
	assert_int_equal(alcm_h5_input_tensor_count(a), alcm_h5_input_tensor_count(b));
	const void *s1, *s2;
	size_t l1, l2;
	assert_int_equal(alcm_h5_input_structure(a, &s1, &l1), ALCM_OK);
	assert_int_equal(alcm_h5_input_structure(b, &s2, &l2), ALCM_OK);
	assert_int_equal(l1, l2);
	assert_memory_equal(s1, s2, l1);
	for (;;) {
		alcm_tensor x, y;
		int h1, h2;
		assert_int_equal(alcm_h5_input_next(a, &x, &h1), ALCM_OK);
		assert_int_equal(alcm_h5_input_next(b, &y, &h2), ALCM_OK);
		assert_int_equal(h1, h2);
		if (!h1)
			break;
		assert_int_equal(x.nbytes, y.nbytes);
		if (x.nbytes)
			assert_memory_equal(x.data, y.data, x.nbytes);
	}
	alcm_h5_input_free(a);
	alcm_h5_input_free(b);
}

/* Reads everything an input gives; any status is fine, a crash is not. */
static int drain(const uint8_t *img, size_t n, unsigned flags)
{
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_decoded_bytes = 1 << 20;
	lim.max_meta_bytes = 1 << 20;
	lim.max_elements = 1 << 18;
	alcm_h5_input *in = NULL;
	int st = alcm_h5_input_open_memory(&in, img, n, &lim, flags);
	if (st == ALCM_OK) {
		const void *sb;
		size_t sl;
		if (alcm_h5_input_structure(in, &sb, &sl) == ALCM_OK)
			assert_int_equal(alcm_h5_structure_check(sb, sl, NULL, NULL), ALCM_OK);
		alcm_tensor t;
		int has;
		while ((st = alcm_h5_input_next(in, &t, &has)) == ALCM_OK && has)
			;
	}
	assert_true(st == ALCM_OK || st == ALCM_E_CORRUPT || st == ALCM_E_LIMIT ||
	            st == ALCM_E_UNSUPPORTED || st == ALCM_E_IO || st == ALCM_E_NOMEM);
	alcm_h5_input_free(in);
	return st;
}

static void make_small(const char *path)
{
	/* Groups, attributes, a chunked deflated dataset and a vlen one: most parsers touched. */
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	all_attrs(g);
	float v[64];
	for (int i = 0; i < 64; i++)
		v[i] = (float)i / 7.0f;
	hsize_t d = 64, c = 16;
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	ok(H5Pset_chunk(dcpl, 1, &c));
	ok(H5Pset_deflate(dcpl, 5));
	mk_ds(g, "chunked", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 1, &d, NULL, dcpl, v);
	H5Pclose(dcpl);
	mk_ds(f, "plain", H5T_STD_I16LE, H5T_NATIVE_FLOAT, 1, &d, NULL, -1, v);
	hid_t vs = str_type(H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_ASCII);
	const char *s[2] = {"x", "yz"};
	hsize_t d2 = 2;
	mk_ds(f, "strings", vs, vs, 1, &d2, NULL, -1, s);
	H5Tclose(vs);
	H5Gclose(g);
	ok(H5Fclose(f));
}

/* Runs one in-process drain in a forked child. @return 1 if libhdf5 (or we) crashed. */
static int crashes_in_process(const uint8_t *img, size_t n)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		freopen("/dev/null", "w", stderr);
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGABRT, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		signal(SIGILL, SIG_DFL);
		alcm_limits lim;
		alcm_limits_default(&lim);
		lim.max_decoded_bytes = 1 << 20;
		lim.max_meta_bytes = 1 << 20;
		alcm_h5_input *in = NULL;
		if (alcm_h5_input_open_memory(&in, img, n, &lim, ALCM_H5_SKIP_UNSUPPORTED) == ALCM_OK) {
			alcm_tensor t;
			int has;
			while (alcm_h5_input_next(in, &t, &has) == ALCM_OK && has)
				;
		}
		alcm_h5_input_free(in);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	return !WIFEXITED(status);
}

static void test_hostile_h5(void **state)
{
	(void)state;
	const char *src = tu_path("hostile.h5");
	make_small(src);
	size_t n;
	uint8_t *img = tu_read_file(src, &n);
	assert_non_null(img);
	assert_int_equal(drain(img, n, ALCM_H5_ISOLATE), ALCM_OK);
	assert_int_equal(drain(img, n, 0), ALCM_OK);
	uint8_t *m = malloc(n);
	int errors = 0, cases = 0, crashes = 0;
	/* truncations: the first 64 lengths, then every 37th */
	for (size_t len = 1; len < n; len += (len < 64 ? 1 : 37)) {
		memcpy(m, img, len);
		errors += drain(m, len, ALCM_H5_ISOLATE) != ALCM_OK;
		crashes += crashes_in_process(m, len);
		cases++;
	}
	/* bit flips and random bytes at deterministic positions */
	uint64_t seed = 99;
	for (int k = 0; k < 300; k++) {
		memcpy(m, img, n);
		size_t at = (size_t)(tu_rand(&seed) % n);
		m[at] ^= (uint8_t)(1u << (tu_rand(&seed) % 8));
		if (k % 3 == 0) {
			size_t at2 = (size_t)(tu_rand(&seed) % n);
			m[at2] = (uint8_t)tu_rand(&seed);
		}
		errors += drain(m, n, ALCM_H5_ISOLATE | ALCM_H5_SKIP_UNSUPPORTED) != ALCM_OK;
		crashes += crashes_in_process(m, n);
		cases++;
	}
	print_message("hostile .h5: %d cases, %d refused with an error, %d would crash libhdf5 "
	              "in-process\n", cases, errors, crashes);
	assert_true(errors > 0);
	free(m);
	free(img);
}

static void test_hostile_structure(void **state)
{
	(void)state;
	const char *src = tu_path("hstruct.h5");
	make_everything(src);
	alcm_h5_input *in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, src, NULL, 0), ALCM_OK);
	const void *sb;
	size_t sl;
	assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
	uint8_t *m = malloc(sl);
	const char *dst = tu_path("hstruct.out.h5");
	int refused = 0, cases = 0;
	for (size_t len = 0; len < sl; len += 1 + len / 16) {
		assert_int_not_equal(alcm_h5_structure_check(sb, len, NULL, NULL), ALCM_OK);
		cases++;
	}
	uint64_t seed = 5;
	for (int k = 0; k < 400; k++) {
		memcpy(m, sb, sl);
		size_t at = (size_t)(tu_rand(&seed) % sl);
		m[at] ^= (uint8_t)(1u << (tu_rand(&seed) % 8));
		char why[512];
		int st = alcm_h5_structure_check(m, sl, NULL, why);
		cases++;
		if (st) {
			refused++;
			/* a refused structure creates no file */
			alcm_h5_output *o = NULL;
			unlink(dst);
			assert_int_not_equal(alcm_h5_output_open(&o, dst, ALCM_WRITE_NO_SYNC, m, sl, NULL),
			                     ALCM_OK);
			alcm_h5_output_free(o);
			assert_false(tu_file_exists(dst));
		} else if (k % 8 == 0) {
			/* accepted: libhdf5 may still refuse a type or a name; never crash */
			alcm_h5_output *o = NULL;
			if (alcm_h5_output_open(&o, dst, ALCM_WRITE_NO_SYNC | ALCM_WRITE_OVERWRITE |
			                                    ALCM_H5_OUT_PARTIAL, m, sl, NULL) == ALCM_OK)
				(void)alcm_h5_output_commit(o);
			alcm_h5_output_free(o);
		}
	}
	print_message("hostile structure: %d cases, %d flips refused\n", cases, refused);
	assert_true(refused > 100);
	free(m);
	alcm_h5_input_free(in);
}

static void test_error_printing_restored(void **state)
{
	(void)state;
	/* The bridge silences libhdf5 only during its calls, and restores plugin loading. */
	H5E_auto2_t f0;
	void *d0;
	unsigned pl0, pl1;
	H5Eget_auto2(H5E_DEFAULT, &f0, &d0);
	H5PLget_loading_state(&pl0);
	alcm_h5_input *in = NULL;
	const char *junk = tu_path("junk2.h5");
	tu_write_file(junk, "\x89HDF\r\n\x1a\n garbage", 17);
	assert_int_not_equal(alcm_h5_input_open(&in, junk, NULL, 0), ALCM_OK);
	assert_non_null(strstr(alcm_h5_input_detail(in), "hdf5:"));
	alcm_h5_input_free(in);
	H5E_auto2_t f1;
	void *d1;
	H5Eget_auto2(H5E_DEFAULT, &f1, &d1);
	H5PLget_loading_state(&pl1);
	assert_true(f0 == f1 && d0 == d1);
	assert_int_equal(pl0, pl1);
}

static void test_deep_and_wide(void **state)
{
	(void)state;
	/* 1500 nested groups (no recursion in the walk), 3000 links in one group. */
	const char *src = tu_path("deep.h5");
	hid_t f = H5Fcreate(src, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gopen2(f, "/", H5P_DEFAULT);
	for (int i = 0; i < 1500; i++) {
		hid_t c = H5Gcreate2(g, "d", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
		assert_true(c >= 0);
		H5Gclose(g);
		g = c;
	}
	int v = 5;
	mk_ds(g, "leaf", H5T_STD_I32LE, H5T_NATIVE_INT, 0, NULL, NULL, -1, &v);
	H5Gclose(g);
	g = H5Gcreate2(f, "wide", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	for (int i = 0; i < 3000; i++) {
		char n[16];
		snprintf(n, sizeof(n), "g%04d", i);
		H5Gclose(H5Gcreate2(g, n, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
	}
	H5Gclose(g);
	ok(H5Fclose(f));
	archive ar;
	alcm_h5_input *in = NULL;
	assert_int_equal(pack_h5(src, 0, ALCM_MODE_LOSSLESS, 0, &ar, &in), ALCM_OK);
	assert_int_equal(ar.ntensors, 1);
	const void *sb;
	size_t sl;
	alcm_h5_structure_stats st;
	assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
	assert_int_equal(alcm_h5_structure_check(sb, sl, &st, NULL), ALCM_OK);
	assert_int_equal(st.groups, 1 + 1500 + 1 + 3000);
	alcm_h5_input_free(in);
	in = NULL;
	char dst[4096];
	snprintf(dst, sizeof(dst), "%s", tu_path("deep.out.h5"));
	assert_int_equal(unpack_h5(&ar, dst, 0, NULL, 1), ALCM_OK);
	/* h5diff is quadratic in depth here: compare the structures the reader sees instead. */
	alcm_h5_input *back = NULL;
	const void *sb2;
	size_t sl2;
	assert_int_equal(alcm_h5_input_open(&back, dst, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_h5_input_structure(back, &sb2, &sl2), ALCM_OK);
	assert_int_equal(alcm_h5_input_open(&in, src, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_h5_input_structure(in, &sb, &sl), ALCM_OK);
	assert_int_equal(sl, sl2);
	assert_memory_equal(sb, sb2, sl);
	alcm_h5_input_free(back);
	alcm_h5_input_free(in);
	archive_free(&ar);
	/* max_meta_bytes bounds the walk before the wide group is listed in full */
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_meta_bytes = 40000;
	in = NULL;
	assert_int_equal(alcm_h5_input_open(&in, src, &lim, 0), ALCM_E_LIMIT);
	alcm_h5_input_free(in);
}

static void test_isolated_matches(void **state)
{
	(void)state;
	/* The isolated reader gives the same structure, skipped list and tensors. */
	const char *src = tu_path("iso.h5");
	make_everything(src);
	alcm_h5_input *a = NULL, *b = NULL;
	assert_int_equal(alcm_h5_input_open(&a, src, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_h5_input_open(&b, src, NULL, ALCM_H5_ISOLATE), ALCM_OK);
	const void *s1, *s2;
	size_t l1, l2;
	assert_int_equal(alcm_h5_input_structure(a, &s1, &l1), ALCM_OK);
	assert_int_equal(alcm_h5_input_structure(b, &s2, &l2), ALCM_OK);
	assert_int_equal(l1, l2);
	assert_memory_equal(s1, s2, l1);
	assert_int_equal(alcm_h5_input_tensor_count(a), alcm_h5_input_tensor_count(b));
	assert_int_equal(alcm_h5_input_size(a), alcm_h5_input_size(b));
	for (int k = 0;; k++) {
		alcm_tensor x, y;
		int h1, h2;
		assert_int_equal(alcm_h5_input_next(a, &x, &h1), ALCM_OK);
		assert_int_equal(alcm_h5_input_next(b, &y, &h2), ALCM_OK);
		assert_int_equal(h1, h2);
		if (!h1)
			break;
		assert_int_equal(x.name_len, y.name_len);
		assert_memory_equal(x.name, y.name, x.name_len);
		assert_int_equal(x.dtype, y.dtype);
		assert_int_equal(x.ndim, y.ndim);
		assert_int_equal(x.nbytes, y.nbytes);
		if (x.nbytes)
			assert_memory_equal(x.data, y.data, x.nbytes);
		if (k == 3) {
			/* stop early: free kills the reader process */
			break;
		}
	}
	alcm_h5_input_free(a);
	alcm_h5_input_free(b);
	/* errors come back with the child's detail; skipping works through the pipe */
	char aux[4096];
	const char *u = tu_path("iso_unsup.h5");
	snprintf(aux, sizeof(aux), "%s", tu_path("iso_unsup.aux"));
	make_unsupported(u, U_REF, aux);
	b = NULL;
	assert_int_equal(alcm_h5_input_open(&b, u, NULL, ALCM_H5_ISOLATE), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(alcm_h5_input_detail(b), "'data/refs'"));
	alcm_h5_input_free(b);
	b = NULL;
	assert_int_equal(alcm_h5_input_open(&b, u, NULL, ALCM_H5_ISOLATE | ALCM_H5_SKIP_UNSUPPORTED),
	                 ALCM_OK);
	assert_int_equal(alcm_h5_input_skipped(b), 1);
	const char *why = NULL;
	assert_string_equal(alcm_h5_input_skipped_name(b, 0, &why), "data/refs");
	assert_non_null(strstr(why, "references"));
	alcm_h5_input_free(b);
	b = NULL;
	assert_int_equal(alcm_h5_input_open(&b, tu_path("nope.h5"), NULL, ALCM_H5_ISOLATE),
	                 ALCM_E_IO);
	alcm_h5_input_free(b);
}

static int write_fixtures(const char *dir)
{
	char p[4096], aux[4096];
	snprintf(p, sizeof(p), "%s/everything.h5", dir);
	make_everything(p);
	snprintf(p, sizeof(p), "%s/keras.h5", dir);
	make_keras(p);
	snprintf(p, sizeof(p), "%s/reference.h5", dir);
	make_unsupported(p, U_REF, NULL);
	snprintf(p, sizeof(p), "%s/extlink.h5", dir);
	snprintf(aux, sizeof(aux), "%s/extlink-target.h5", dir);
	make_unsupported(p, U_EXTLINK, aux);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--fixture") == 0)
		return write_fixtures(argv[2]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_everything_lossless),
		cmocka_unit_test(test_everything_lossy),
		cmocka_unit_test(test_keras),
		cmocka_unit_test(test_unsupported),
		cmocka_unit_test(test_external_allowed),
		cmocka_unit_test(test_plain_output),
		cmocka_unit_test(test_structured_output_rules),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_memory_matches_file),
		cmocka_unit_test(test_deep_and_wide),
		cmocka_unit_test(test_isolated_matches),
		cmocka_unit_test(test_hostile_h5),
		cmocka_unit_test(test_hostile_structure),
		cmocka_unit_test(test_error_printing_restored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
