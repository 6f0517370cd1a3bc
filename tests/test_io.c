/* Tensor file readers and writers: round trips, format details, output safety. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define WFLAGS (ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC)

static const int all_dtypes[] = {
	ALCM_DTYPE_BOOL, ALCM_DTYPE_U8,  ALCM_DTYPE_I8,  ALCM_DTYPE_U16, ALCM_DTYPE_I16,
	ALCM_DTYPE_U32,  ALCM_DTYPE_I32, ALCM_DTYPE_U64, ALCM_DTYPE_I64, ALCM_DTYPE_F16,
	ALCM_DTYPE_BF16, ALCM_DTYPE_F32, ALCM_DTYPE_F64,
};
#define NDTYPES (sizeof(all_dtypes) / sizeof(all_dtypes[0]))

static alcm_tensor mk(const char *name, size_t name_len, int dtype, uint32_t ndim,
                      const uint64_t *shape, uint64_t seed)
{
	alcm_tensor t;
	uint64_t el;
	memset(&t, 0, sizeof(t));
	t.name = name;
	t.name_len = name_len;
	t.dtype = dtype;
	t.ndim = ndim;
	memcpy(t.shape, shape, sizeof(uint64_t) * ndim);
	assert_int_equal(alcm_shape_elements(shape, ndim, &el), ALCM_OK);
	t.nbytes = el * alcm_dtype_size(dtype);
	uint8_t *d = malloc(t.nbytes ? t.nbytes : 1);
	for (uint64_t i = 0; i < t.nbytes; i++)
		d[i] = dtype == ALCM_DTYPE_BOOL ? (uint8_t)(tu_rand(&seed) & 1) : (uint8_t)tu_rand(&seed);
	t.data = d;
	return t;
}

static alcm_tensor mk_s(const char *name, int dtype, uint32_t ndim, const uint64_t *shape,
                        uint64_t seed)
{
	return mk(name, strlen(name), dtype, ndim, shape, seed);
}

static void free_ts(alcm_tensor *ts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((void *)ts[i].data);
}

static int write_ts(const char *path, int format, const alcm_tensor *ts, size_t n, int plan)
{
	alcm_output *o = NULL;
	int rc = alcm_output_open(&o, path, format, WFLAGS, NULL);
	if (rc == ALCM_OK && plan)
		rc = alcm_output_plan(o, ts, n);
	for (size_t i = 0; i < n && rc == ALCM_OK; i++)
		rc = alcm_output_write(o, &ts[i]);
	if (rc == ALCM_OK)
		rc = alcm_output_commit(o);
	if (rc)
		print_message("write %s: %s\n", path, alcm_output_detail(o));
	alcm_output_free(o);
	return rc;
}

static void same_tensor(const alcm_tensor *a, const alcm_tensor *b)
{
	assert_int_equal(a->name_len, b->name_len);
	if (a->name_len)
		assert_memory_equal(a->name, b->name, a->name_len);
	assert_int_equal(a->dtype, b->dtype);
	assert_int_equal(a->ndim, b->ndim);
	for (uint32_t k = 0; k < a->ndim; k++)
		assert_int_equal(a->shape[k], b->shape[k]);
	assert_int_equal(a->nbytes, b->nbytes);
	if (a->nbytes)
		assert_memory_equal(a->data, b->data, a->nbytes);
}

static const alcm_tensor *find(const alcm_tensor *ts, size_t n, const alcm_tensor *t)
{
	for (size_t i = 0; i < n; i++)
		if (ts[i].name_len == t->name_len &&
		    (t->name_len == 0 || memcmp(ts[i].name, t->name, t->name_len) == 0))
			return &ts[i];
	return NULL;
}

/* Reads every tensor of `in`; each must equal ts[i] (in order) or its namesake. */
static void check_input(alcm_input *in, const alcm_tensor *ts, size_t n, int by_name)
{
	size_t got = 0;
	for (;;) {
		alcm_tensor t;
		int has;
		int rc = alcm_input_next(in, &t, &has);
		if (rc)
			print_message("%s\n", alcm_input_detail(in));
		assert_int_equal(rc, ALCM_OK);
		if (!has)
			break;
		assert_true(got < n);
		const alcm_tensor *e = by_name ? find(ts, n, &t) : &ts[got];
		assert_non_null(e);
		same_tensor(&t, e);
		got++;
	}
	assert_int_equal(got, n);
	int has = 1;
	alcm_tensor t;
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(has, 0);
}

static void check_file(const char *path, int format, const alcm_tensor *ts, size_t n, int by_name)
{
	alcm_input *in = NULL;
	int rc = alcm_input_open(&in, path, NULL, NULL);
	if (rc)
		print_message("%s\n", alcm_input_detail(in));
	assert_int_equal(rc, ALCM_OK);
	assert_int_equal(alcm_input_format(in), format);
	if (format == ALCM_FILE_NPY && n == 1) {
		/* A lone .npy is named after its file. */
		char base[4096];
		const char *b = strrchr(path, '/');
		snprintf(base, sizeof(base), "%s", b ? b + 1 : path);
		*strrchr(base, '.') = '\0';
		alcm_tensor t = ts[0];
		t.name = base;
		t.name_len = strlen(base);
		check_input(in, &t, 1, 0);
	} else {
		check_input(in, ts, n, by_name);
	}
	alcm_input_free(in);
}

static int open_mem(alcm_input **in, const void *buf, size_t len, const char *name)
{
	int rc = alcm_input_open_memory(in, buf, len, 0, name, NULL, NULL);
	return rc;
}

/* Opens from memory and reads everything. @return the first error. */
static int read_mem(const void *buf, size_t len, char *detail, size_t cap)
{
	alcm_input *in = NULL;
	int rc = open_mem(&in, buf, len, "t");
	while (rc == ALCM_OK) {
		alcm_tensor t;
		int has;
		rc = alcm_input_next(in, &t, &has);
		if (!has)
			break;
	}
	if (detail)
		snprintf(detail, cap, "%s", alcm_input_detail(in));
	alcm_input_free(in);
	return rc;
}

/* A .npy made by hand: prefix, the dict, padding to 64, newline, data. */
static uint8_t *npy_bytes(const char *dict, int major, const void *data, size_t dlen,
                          size_t *len)
{
	size_t lb = major == 1 ? 2 : 4, pre = 8 + lb, n = strlen(dict);
	size_t hlen = n + 1;
	size_t pad = (64 - (pre + hlen) % 64) % 64;
	*len = pre + hlen + pad + dlen;
	uint8_t *b = malloc(*len);
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (uint8_t)major;
	b[7] = 0;
	uint32_t h = (uint32_t)(hlen + pad);
	for (size_t i = 0; i < lb; i++)
		b[8 + i] = (uint8_t)(h >> (8 * i));
	memcpy(b + pre, dict, n);
	memset(b + pre + n, ' ', pad);
	b[pre + n + pad] = '\n';
	if (dlen)
		memcpy(b + pre + hlen + pad, data, dlen);
	return b;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct zmember {
	const char *name;
	const uint8_t *data;
	size_t len;
	int deflate;
} zmember;

/* A plain (non-zip64) zip with stored or raw-deflated members and correct CRCs. */
static uint8_t *build_zip(const zmember *m, size_t n, size_t *out_len)
{
	size_t cap = 1024;
	for (size_t i = 0; i < n; i++)
		cap += 2 * (m[i].len + 128 + strlen(m[i].name));
	uint8_t *b = calloc(1, cap), *cd = calloc(1, cap);
	size_t pos = 0, cpos = 0;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(m[i].name);
		uLong crc = crc32(0, m[i].data, (uInt)m[i].len);
		uint8_t *comp = (uint8_t *)m[i].data;
		size_t clen = m[i].len;
		if (m[i].deflate) {
			z_stream z;
			memset(&z, 0, sizeof(z));
			assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
			clen = deflateBound(&z, (uLong)m[i].len);
			comp = malloc(clen);
			z.next_in = (Bytef *)m[i].data;
			z.avail_in = (uInt)m[i].len;
			z.next_out = comp;
			z.avail_out = (uInt)clen;
			assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
			clen = z.total_out;
			deflateEnd(&z);
		}
		uint8_t *l = b + pos;
		memcpy(l, "PK\x03\x04", 4);
		put16(l + 4, 20);
		put16(l + 8, m[i].deflate ? 8 : 0);
		put16(l + 12, 0x21);
		put32(l + 14, (uint32_t)crc);
		put32(l + 18, (uint32_t)clen);
		put32(l + 22, (uint32_t)m[i].len);
		put16(l + 26, (unsigned)nl);
		memcpy(l + 30, m[i].name, nl);
		memcpy(l + 30 + nl, comp, clen);
		uint8_t *c = cd + cpos;
		memcpy(c, "PK\x01\x02", 4);
		put16(c + 4, 20);
		put16(c + 6, 20);
		put16(c + 10, m[i].deflate ? 8 : 0);
		put16(c + 14, 0x21);
		put32(c + 16, (uint32_t)crc);
		put32(c + 20, (uint32_t)clen);
		put32(c + 24, (uint32_t)m[i].len);
		put16(c + 28, (unsigned)nl);
		put32(c + 42, (uint32_t)pos);
		memcpy(c + 46, m[i].name, nl);
		cpos += 46 + nl;
		pos += 30 + nl + clen;
		if (m[i].deflate)
			free(comp);
	}
	memcpy(b + pos, cd, cpos);
	uint8_t *e = b + pos + cpos;
	memcpy(e, "PK\x05\x06", 4);
	put16(e + 8, (unsigned)n);
	put16(e + 10, (unsigned)n);
	put32(e + 12, (uint32_t)cpos);
	put32(e + 16, (uint32_t)pos);
	*out_len = pos + cpos + 22;
	free(cd);
	return b;
}

/* The bytes of a tensor saved as a lone .npy by our writer. */
static uint8_t *npy_of(const alcm_tensor *t, size_t *len)
{
	const char *p = tu_path("member.npy");
	assert_int_equal(write_ts(p, ALCM_FILE_NPY, t, 1, 0), ALCM_OK);
	uint8_t *b = tu_read_file(p, len);
	assert_non_null(b);
	unlink(p);
	return b;
}

/* ---- detection ---- */

static void test_detect(void **state)
{
	(void)state;
	assert_int_equal(alcm_detect_format("\x93NUMPY\x01\x00", 8), ALCM_FILE_NPY);
	assert_int_equal(alcm_detect_format("PK\x03\x04", 4), ALCM_FILE_NPZ);
	assert_int_equal(alcm_detect_format("PK\x05\x06", 4), ALCM_FILE_NPZ);
	assert_int_equal(alcm_detect_format("\x89HDF\r\n\x1a\n", 8), ALCM_FILE_HDF5);
	assert_int_equal(alcm_detect_format("\x89" "ALCM\r\n\x1a", 8), ALCM_FILE_ALCM);
	assert_int_equal(alcm_detect_format("\x02\0\0\0\0\0\0\0{}", 10), ALCM_FILE_SAFETENSORS);
	assert_int_equal(alcm_detect_format("hello world", 11), ALCM_FILE_UNKNOWN);
	assert_int_equal(alcm_detect_format("PK", 2), ALCM_FILE_UNKNOWN);
	assert_int_equal(alcm_detect_format(NULL, 0), ALCM_FILE_UNKNOWN);
	assert_int_equal(alcm_format_from_extension("a/b.npy"), ALCM_FILE_NPY);
	assert_int_equal(alcm_format_from_extension("b.NPZ"), ALCM_FILE_NPZ);
	assert_int_equal(alcm_format_from_extension("m.safetensors"), ALCM_FILE_SAFETENSORS);
	assert_int_equal(alcm_format_from_extension("m.h5"), ALCM_FILE_HDF5);
	assert_int_equal(alcm_format_from_extension("m.hdf5"), ALCM_FILE_HDF5);
	assert_int_equal(alcm_format_from_extension("m.alcm"), ALCM_FILE_ALCM);
	assert_int_equal(alcm_format_from_extension("dir.npy/m"), ALCM_FILE_UNKNOWN);
	assert_int_equal(alcm_format_from_extension(".npy"), ALCM_FILE_UNKNOWN);
	assert_int_equal(alcm_format_from_extension(NULL), ALCM_FILE_UNKNOWN);
	assert_string_equal(alcm_format_name(ALCM_FILE_SAFETENSORS), "safetensors");
	assert_string_equal(alcm_format_name(ALCM_FILE_NPZ), "npz");
	assert_string_equal(alcm_format_name(99), "unknown");
}

static void test_unsupported_inputs(void **state)
{
	(void)state;
	char d[512];
	static const uint8_t h5[16] = "\x89HDF\r\n\x1a\n";
	static const uint8_t ac[16] = "\x89" "ALCM\r\n\x1a";
	assert_int_equal(read_mem(h5, sizeof(h5), d, sizeof(d)), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(d, "HDF5 bridge"));
	assert_int_equal(read_mem(ac, sizeof(ac), d, sizeof(d)), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(d, "alcm"));
	assert_int_equal(read_mem("just some text", 14, d, sizeof(d)), ALCM_E_UNSUPPORTED);
	assert_int_equal(read_mem("", 0, d, sizeof(d)), ALCM_E_UNSUPPORTED);
	/* A missing file is an I/O error that names it. */
	alcm_input *in = NULL;
	assert_int_equal(alcm_input_open(&in, tu_path("missing.npy"), NULL, NULL), ALCM_E_IO);
	assert_non_null(strstr(alcm_input_detail(in), "missing.npy"));
	alcm_tensor t;
	int has;
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_E_STATE);
	alcm_input_free(in);
	alcm_input_free(NULL);
	alcm_output_free(NULL);
	/* HDF5 and alcm outputs belong elsewhere. */
	alcm_output *o = NULL;
	assert_int_equal(alcm_output_open(&o, tu_path("x.h5"), ALCM_FILE_HDF5, WFLAGS, NULL),
	                 ALCM_E_UNSUPPORTED);
	alcm_output_free(o);
	assert_int_equal(alcm_output_open(&o, tu_path("x"), 42, WFLAGS, NULL), ALCM_E_ARG);
	alcm_output_free(o);
}

/* ---- .npy ---- */

static void test_npy_roundtrip_dtypes(void **state)
{
	(void)state;
	const char *p = tu_path("rt.npy");
	for (size_t i = 0; i < NDTYPES; i++) {
		uint64_t shape[2] = {2, 3};
		alcm_tensor t = mk_s("rt", all_dtypes[i], 2, shape, i + 1);
		int rc = write_ts(p, ALCM_FILE_NPY, &t, 1, i & 1);
		if (all_dtypes[i] == ALCM_DTYPE_BF16) {
			assert_int_equal(rc, ALCM_E_UNSUPPORTED);
		} else {
			assert_int_equal(rc, ALCM_OK);
			check_file(p, ALCM_FILE_NPY, &t, 1, 0);
		}
		free_ts(&t, 1);
	}
	unlink(p);
}

static void test_npy_exact_header(void **state)
{
	(void)state;
	/* numpy.save(f, numpy.zeros((3, 4), '<f4')): 128 header bytes, axis-0 growth room. */
	static const char want[] =
		"\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
	uint64_t shape[2] = {3, 4};
	alcm_tensor t = mk_s("z", ALCM_DTYPE_F32, 2, shape, 1);
	size_t len;
	uint8_t *b = npy_of(&t, &len);
	assert_int_equal(len, 128 + 48);
	assert_memory_equal(b, want, sizeof(want) - 1);
	for (size_t i = sizeof(want) - 1; i < 127; i++)
		assert_int_equal(b[i], ' ');
	assert_int_equal(b[127], '\n');
	free(b);
	free_ts(&t, 1);
	/* 0-d and 1-d shapes print as () and (5,). */
	alcm_tensor s = mk_s("s", ALCM_DTYPE_BOOL, 0, shape, 2);
	b = npy_of(&s, &len);
	assert_int_equal(len, 129);
	assert_non_null(memmem(b, len, "'descr': '|b1', 'fortran_order': False, 'shape': (), }", 54));
	free(b);
	free_ts(&s, 1);
	uint64_t five = 5;
	alcm_tensor v = mk_s("v", ALCM_DTYPE_I64, 1, &five, 3);
	b = npy_of(&v, &len);
	assert_non_null(memmem(b, len, "'shape': (5,), }", 16));
	assert_int_equal((len - 40) % 64, 0);
	free(b);
	free_ts(&v, 1);
}

static void test_npy_shapes(void **state)
{
	(void)state;
	const char *p = tu_path("shapes.npy");
	uint64_t s0[1] = {0}, z[2] = {0, 3}, r5[5] = {2, 1, 3, 2, 2};
	uint64_t big[ALCM_MAX_NDIM];
	for (int i = 0; i < ALCM_MAX_NDIM; i++)
		big[i] = 1;
	big[3] = 2;
	alcm_tensor ts[4] = {
		mk_s("shapes", ALCM_DTYPE_F64, 0, s0, 1), mk_s("shapes", ALCM_DTYPE_I16, 2, z, 2),
		mk_s("shapes", ALCM_DTYPE_U8, 5, r5, 3),
		mk_s("shapes", ALCM_DTYPE_F16, ALCM_MAX_NDIM, big, 4),
	};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(write_ts(p, ALCM_FILE_NPY, &ts[i], 1, 0), ALCM_OK);
		check_file(p, ALCM_FILE_NPY, &ts[i], 1, 0);
	}
	free_ts(ts, 4);
	unlink(p);
}

static void test_npy_one_tensor(void **state)
{
	(void)state;
	const char *p = tu_path("one.npy");
	uint64_t shape[1] = {4};
	alcm_tensor ts[2] = {mk_s("a", ALCM_DTYPE_F32, 1, shape, 1),
	                     mk_s("b", ALCM_DTYPE_F32, 1, shape, 2)};
	alcm_output *o;
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_NPY, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_E_STATE); /* nothing written yet */
	assert_int_equal(alcm_output_write(o, &ts[0]), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &ts[1]), ALCM_E_STATE);
	assert_non_null(strstr(alcm_output_detail(o), ".npz"));
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_E_STATE);
	alcm_output_free(o);
	check_file(p, ALCM_FILE_NPY, &ts[0], 1, 0 + 1);
	/* A plan of two is refused for .npy. */
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_NPY, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, ts, 2), ALCM_E_ARG);
	alcm_output_free(o);
	free_ts(ts, 2);
	unlink(p);
}

static void test_npy_bf16_refused(void **state)
{
	(void)state;
	uint64_t shape[1] = {4};
	alcm_tensor t = mk_s("w", ALCM_DTYPE_BF16, 1, shape, 1);
	int formats[2] = {ALCM_FILE_NPY, ALCM_FILE_NPZ};
	for (int i = 0; i < 2; i++) {
		const char *p = tu_path(i ? "bf.npz" : "bf.npy");
		alcm_output *o;
		assert_int_equal(alcm_output_open(&o, p, formats[i], WFLAGS, NULL), ALCM_OK);
		assert_int_equal(alcm_output_write(o, &t), ALCM_E_UNSUPPORTED);
		assert_non_null(strstr(alcm_output_detail(o), "safetensors"));
		alcm_output_free(o);
		assert_int_equal(alcm_output_open(&o, p, formats[i], WFLAGS, NULL), ALCM_OK);
		assert_int_equal(alcm_output_plan(o, &t, 1), ALCM_E_UNSUPPORTED);
		alcm_output_free(o);
		assert_false(tu_file_exists(p));
	}
	free_ts(&t, 1);
}

static void test_npy_big_endian(void **state)
{
	(void)state;
	const uint8_t be_f4[8] = {0x3f, 0x80, 0, 0, 0xc0, 0x00, 0, 0}; /* 1.0f, -2.0f */
	const uint8_t be_i2[6] = {0x01, 0x02, 0xff, 0xfe, 0x00, 0x07};
	size_t len;
	uint8_t *b = npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 1, be_f4,
	                       8, &len);
	alcm_input *in;
	alcm_tensor t;
	int has;
	assert_int_equal(open_mem(&in, b, len, "dir/be.npy"), ALCM_OK);
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(has, 1);
	assert_int_equal(t.name_len, 2);
	assert_memory_equal(t.name, "be", 2);
	assert_int_equal(t.dtype, ALCM_DTYPE_F32);
	float f[2];
	memcpy(f, t.data, 8);
	assert_true(f[0] == 1.0f && f[1] == -2.0f);
	alcm_input_free(in);
	free(b);
	b = npy_bytes("{'shape': (3,), 'descr': '>i2', 'fortran_order': False}", 2, be_i2, 6, &len);
	assert_int_equal(open_mem(&in, b, len, NULL), ALCM_OK);
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(t.name_len, 6);
	assert_memory_equal(t.name, "tensor", 6);
	int16_t v[3];
	memcpy(v, t.data, 6);
	assert_int_equal(v[0], 0x0102);
	assert_int_equal(v[1], -2);
	assert_int_equal(v[2], 7);
	alcm_input_free(in);
	free(b);
}

static void test_npy_fortran_order(void **state)
{
	(void)state;
	/* C-order [[0,1,2],[3,4,5]] stored column-major: 0 3 1 4 2 5. */
	const int32_t f2[6] = {0, 3, 1, 4, 2, 5};
	size_t len;
	uint8_t *b = npy_bytes("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", 1, f2,
	                       24, &len);
	alcm_input *in;
	alcm_tensor t;
	int has;
	assert_int_equal(open_mem(&in, b, len, "f.npy"), ALCM_OK);
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	int32_t c[6];
	memcpy(c, t.data, 24);
	for (int i = 0; i < 6; i++)
		assert_int_equal(c[i], i);
	alcm_input_free(in);
	free(b);
	/* Rank 3, big-endian and Fortran at once: element (i,j,k) = 100i + 10j + k. */
	uint64_t sh[3] = {2, 3, 4};
	uint16_t fdata[24];
	for (int k = 0, n = 0; k < 4; k++)
		for (int j = 0; j < 3; j++)
			for (int i = 0; i < 2; i++, n++) {
				uint16_t v = (uint16_t)(100 * i + 10 * j + k);
				fdata[n] = (uint16_t)((v >> 8) | (v << 8));
			}
	b = npy_bytes("{'descr': '>u2', 'fortran_order': True, 'shape': (2, 3, 4), }", 3, fdata,
	              48, &len);
	assert_int_equal(open_mem(&in, b, len, "f3.npy"), ALCM_OK);
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(t.ndim, 3);
	const uint16_t *o = t.data;
	for (uint64_t i = 0, n = 0; i < sh[0]; i++)
		for (uint64_t j = 0; j < sh[1]; j++)
			for (uint64_t k = 0; k < sh[2]; k++, n++)
				assert_int_equal(o[n], 100 * i + 10 * j + k);
	alcm_input_free(in);
	free(b);
}

static void test_npy_header_syntax(void **state)
{
	(void)state;
	static const struct {
		const char *dict;
		int major;
		size_t dlen;
		int want;
	} cases[] = {
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1, 12, ALCM_OK},
		{"{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(3,)}", 1, 12, ALCM_OK},
		{"  { 'fortran_order' : False ,\n 'shape' : ( 3 , ) , 'descr' : '<f4' }", 2, 12, ALCM_OK},
		{"{'descr': '|u1', 'fortran_order': False, 'shape': (), }", 1, 1, ALCM_OK},
		{"{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 3L), }", 1, 6, ALCM_OK},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'shape': (3,), }", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 1, 12,
		 ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } x", 1, 12, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1, 11, ALCM_E_CORRUPT},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1, 13, ALCM_E_CORRUPT},
		{"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", 1, 24, ALCM_E_UNSUPPORTED},
		{"{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", 1, 24, ALCM_E_UNSUPPORTED},
		{"{'descr': '<U5', 'fortran_order': False, 'shape': (3,), }", 1, 60, ALCM_E_UNSUPPORTED},
		{"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 1, 12,
		 ALCM_E_UNSUPPORTED},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 1,
		 12, ALCM_E_LIMIT},
		{"{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
		 1, 12, ALCM_E_LIMIT},
	};
	uint8_t data[64] = {0};
	char d[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *b = npy_bytes(cases[i].dict, cases[i].major, data, cases[i].dlen, &len);
		int rc = read_mem(b, len, d, sizeof(d));
		if (rc != cases[i].want)
			print_message("case %zu: %d %s\n", i, rc, d);
		assert_int_equal(rc, cases[i].want);
		if (rc)
			assert_non_null(strstr(d, "tensor 't'"));
		free(b);
	}
	/* Version 4.0, and a header length past the end. */
	size_t len;
	uint8_t *b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 1, data,
	                       4, &len);
	b[6] = 4;
	assert_int_equal(read_mem(b, len, d, sizeof(d)), ALCM_E_UNSUPPORTED);
	b[6] = 1;
	b[8] = 0xff;
	b[9] = 0xff;
	assert_int_equal(read_mem(b, len, d, sizeof(d)), ALCM_E_CORRUPT);
	free(b);
}

/* ---- .npz ---- */

static const char name_utf8[] = "Gewicht \xc3\xa4\xe2\x82\xac";
static const char name_bin[] = "bin\xff\x01name";

static void test_npz_roundtrip(void **state)
{
	(void)state;
	const char *p = tu_path("rt.npz");
	alcm_tensor ts[NDTYPES + 6];
	size_t n = 0;
	static char names[NDTYPES][16];
	uint64_t shape[2] = {3, 5}, z[2] = {4, 0}, r5[5] = {1, 2, 3, 2, 1};
	for (size_t i = 0; i < NDTYPES; i++) {
		if (all_dtypes[i] == ALCM_DTYPE_BF16)
			continue;
		snprintf(names[i], sizeof(names[i]), "t%zu", i);
		ts[n++] = mk_s(names[i], all_dtypes[i], 2, shape, i + 10);
	}
	ts[n++] = mk_s("scalar", ALCM_DTYPE_F64, 0, shape, 1);
	ts[n++] = mk_s("empty", ALCM_DTYPE_I32, 2, z, 2);
	ts[n++] = mk_s("layer/0 weight", ALCM_DTYPE_F32, 5, r5, 3);
	ts[n++] = mk(name_utf8, sizeof(name_utf8) - 1, ALCM_DTYPE_I8, 1, shape, 4);
	ts[n++] = mk(name_bin, sizeof(name_bin) - 1, ALCM_DTYPE_U16, 1, shape, 5);
	ts[n++] = mk("", 0, ALCM_DTYPE_U8, 1, shape, 6);
	assert_int_equal(write_ts(p, ALCM_FILE_NPZ, ts, n, 0), ALCM_OK);
	check_file(p, ALCM_FILE_NPZ, ts, n, 0);
	assert_int_equal(write_ts(p, ALCM_FILE_NPZ, ts, n, 1), ALCM_OK);
	check_file(p, ALCM_FILE_NPZ, ts, n, 0);
	if (access("/usr/bin/unzip", X_OK) == 0) {
		char cmd[4200];
		snprintf(cmd, sizeof(cmd), "/usr/bin/unzip -tqq '%s' >/dev/null 2>&1", p);
		assert_int_equal(system(cmd), 0);
	}
	free_ts(ts, n);
	/* No tensors at all: an empty zip, which reads back as nothing. */
	assert_int_equal(write_ts(p, ALCM_FILE_NPZ, NULL, 0, 0), ALCM_OK);
	size_t len;
	uint8_t *b = tu_read_file(p, &len);
	assert_int_equal(len, 22);
	assert_memory_equal(b, "PK\x05\x06", 4);
	free(b);
	check_file(p, ALCM_FILE_NPZ, NULL, 0, 0);
	unlink(p);
}

static void test_npz_layout(void **state)
{
	(void)state;
	/* What numpy.savez writes: zip64 extra in the local header, plain central entry. */
	uint64_t shape[1] = {2};
	alcm_tensor t = mk_s("a", ALCM_DTYPE_F32, 1, shape, 1);
	const char *p = tu_path("layout.npz");
	assert_int_equal(write_ts(p, ALCM_FILE_NPZ, &t, 1, 0), ALCM_OK);
	size_t len;
	uint8_t *b = tu_read_file(p, &len);
	assert_non_null(b);
	assert_memory_equal(b, "PK\x03\x04\x2d\x00", 6);
	assert_int_equal(b[12], 0x21); /* 1980-01-01 */
	assert_memory_equal(b + 18, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
	assert_memory_equal(b + 26, "\x05\x00\x14\x00", 4);
	assert_memory_equal(b + 30, "a.npy\x01\x00\x10\x00", 9);
	size_t usize = 128 + 8;
	assert_int_equal(b[39], usize);
	assert_int_equal(b[47], usize);
	assert_memory_equal(b + 55, "\x93NUMPY", 6);
	uint32_t crc = (uint32_t)crc32(0, b + 55, (uInt)usize);
	assert_int_equal(b[14] | b[15] << 8 | b[16] << 16 | (uint32_t)b[17] << 24, crc);
	const uint8_t *c = b + 55 + usize;
	assert_memory_equal(c, "PK\x01\x02\x2d\x03\x2d\x00", 8);
	assert_int_equal(c[20], usize); /* real sizes: no zip64 in the directory */
	assert_int_equal(len, 55 + usize + 46 + 5 + 22);
	free(b);
	free_ts(&t, 1);
	unlink(p);
}

static void test_npz_deflated(void **state)
{
	(void)state;
	uint64_t shape[2] = {64, 33}, s1 = 7;
	alcm_tensor ts[3] = {
		mk_s("w", ALCM_DTYPE_F32, 2, shape, 1),
		mk_s("b", ALCM_DTYPE_I64, 1, &s1, 2),
		mk_s("z", ALCM_DTYPE_U8, 2, shape, 3),
	};
	memset((void *)ts[2].data, 7, ts[2].nbytes); /* compresses well */
	size_t l[3];
	uint8_t *npy[3];
	for (int i = 0; i < 3; i++)
		npy[i] = npy_of(&ts[i], &l[i]);
	zmember m[3] = {{"w.npy", npy[0], l[0], 1}, {"b.npy", npy[1], l[1], 0},
	                {"z.npy", npy[2], l[2], 1}};
	size_t len;
	uint8_t *zip = build_zip(m, 3, &len);
	assert_true(len < l[0] + l[1] + l[2]);
	alcm_input *in;
	assert_int_equal(alcm_input_open_memory(&in, zip, len, 0, "d.npz", NULL, NULL), ALCM_OK);
	assert_int_equal(alcm_input_format(in), ALCM_FILE_NPZ);
	assert_int_equal(alcm_input_size(in), len);
	check_input(in, ts, 3, 0);
	alcm_input_free(in);
	/* The same archive from a file, read with pread. */
	const char *p = tu_path("deflated.npz");
	assert_int_equal(tu_write_file(p, zip, len), 0);
	check_file(p, ALCM_FILE_NPZ, ts, 3, 0);
	unlink(p);
	free(zip);
	for (int i = 0; i < 3; i++)
		free(npy[i]);
	free_ts(ts, 3);
}

/* ---- .safetensors ---- */

static int st_rank(int dtype)
{
	static const int order[] = {ALCM_DTYPE_BOOL, ALCM_DTYPE_U8,  ALCM_DTYPE_I8,  ALCM_DTYPE_I16,
	                            ALCM_DTYPE_U16,  ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_I32,
	                            ALCM_DTYPE_U32,  ALCM_DTYPE_F32, ALCM_DTYPE_F64, ALCM_DTYPE_I64,
	                            ALCM_DTYPE_U64};
	for (int i = 0; i < 13; i++)
		if (order[i] == dtype)
			return i;
	return -1;
}

static void test_st_roundtrip(void **state)
{
	(void)state;
	const char *p = tu_path("rt.safetensors");
	alcm_tensor ts[NDTYPES + 6];
	size_t n = 0;
	static char names[NDTYPES][16];
	uint64_t shape[2] = {3, 5}, z[2] = {4, 0}, r5[5] = {1, 2, 3, 2, 1};
	for (size_t i = 0; i < NDTYPES; i++) {
		snprintf(names[i], sizeof(names[i]), "t%zu", NDTYPES - i);
		ts[n++] = mk_s(names[i], all_dtypes[i], 2, shape, i + 10);
	}
	ts[n++] = mk_s("scalar", ALCM_DTYPE_F64, 0, shape, 1);
	ts[n++] = mk_s("empty", ALCM_DTYPE_I32, 2, z, 2);
	ts[n++] = mk_s("layer.0 \"w\"\\x\n\t\x01", ALCM_DTYPE_F32, 5, r5, 3);
	ts[n++] = mk(name_utf8, sizeof(name_utf8) - 1, ALCM_DTYPE_BF16, 1, shape, 4);
	ts[n++] = mk("", 0, ALCM_DTYPE_U8, 1, shape, 6);
	ts[n++] = mk("nul\0byte", 8, ALCM_DTYPE_U8, 1, shape, 7);
	assert_int_equal(write_ts(p, ALCM_FILE_SAFETENSORS, ts, n, 1), ALCM_OK);
	check_file(p, ALCM_FILE_SAFETENSORS, ts, n, 1);
	/* Layout order: descending dtype rank of the reference, then name. */
	alcm_input *in;
	assert_int_equal(alcm_input_open(&in, p, NULL, NULL), ALCM_OK);
	alcm_tensor t, prev;
	memset(&prev, 0, sizeof(prev));
	int has, first = 1;
	while (alcm_input_next(in, &t, &has) == ALCM_OK && has) {
		if (!first) {
			int a = st_rank(prev.dtype), b = st_rank(t.dtype);
			assert_true(a >= b);
			if (a == b) {
				size_t m = prev.name_len < t.name_len ? prev.name_len : t.name_len;
				int c = memcmp(prev.name, t.name, m);
				assert_true(c < 0 || (c == 0 && prev.name_len < t.name_len));
			}
		}
		prev = t;
		first = 0;
	}
	alcm_input_free(in);
	size_t len;
	uint8_t *b = tu_read_file(p, &len);
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)b[i] << (8 * i);
	assert_int_equal(hl % 8, 0);
	assert_int_equal(b[8], '{');
	static const char esc[] = "\\\"w\\\"\\\\x\\n\\t\\u0001";
	assert_non_null(memmem(b, 8 + hl, esc, strlen(esc)));
	free(b);
	free_ts(ts, n);
	unlink(p);
}

static void test_st_reference_bytes(void **state)
{
	(void)state;
	/* safetensors/src/tensor.rs: test_serialization and test_empty. */
	static const uint8_t want[] = {
		64,  0,   0,  0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34, 58,
		123, 34,  100, 116, 121, 112, 101, 34, 58,  34,  70,  51,  50,  34,  44,  34,  115, 104,
		97,  112, 101, 34, 58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,
		95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125,
		0,   0,   0,  0,   0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,
		128, 64,  0,   0,  160, 64};
	float v[6] = {0, 1, 2, 3, 4, 5};
	alcm_tensor t = {.name = "attn.0", .name_len = 6, .dtype = ALCM_DTYPE_F32, .ndim = 3,
	                 .shape = {1, 2, 3}, .data = v, .nbytes = 24};
	const char *p = tu_path("ref.safetensors");
	assert_int_equal(write_ts(p, ALCM_FILE_SAFETENSORS, &t, 1, 1), ALCM_OK);
	size_t len;
	uint8_t *b = tu_read_file(p, &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(b, want, sizeof(want));
	free(b);
	static const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
	assert_int_equal(write_ts(p, ALCM_FILE_SAFETENSORS, NULL, 0, 1), ALCM_OK);
	b = tu_read_file(p, &len);
	assert_int_equal(len, sizeof(empty));
	assert_memory_equal(b, empty, sizeof(empty));
	free(b);
	/* Without a plan, committing nothing also gives the empty file. */
	assert_int_equal(write_ts(p, ALCM_FILE_SAFETENSORS, NULL, 0, 0), ALCM_OK);
	b = tu_read_file(p, &len);
	assert_int_equal(len, sizeof(empty));
	free(b);
	check_file(p, ALCM_FILE_SAFETENSORS, NULL, 0, 0);
	unlink(p);
}

static uint8_t *st_bytes(const char *json, size_t pad, size_t data_len, size_t *len)
{
	size_t n = strlen(json);
	*len = 8 + n + pad + data_len;
	uint8_t *b = malloc(*len);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)(n + pad) >> (8 * i));
	memcpy(b + 8, json, n);
	memset(b + 8 + n, ' ', pad);
	for (size_t i = 0; i < data_len; i++)
		b[8 + n + pad + i] = (uint8_t)i;
	return b;
}

static void test_st_reader_variants(void **state)
{
	(void)state;
	/* Arbitrary key order, padding, metadata, unknown fields, escapes in names. */
	const char *json =
		"{\"b\":{\"shape\":[2],\"data_offsets\":[4,8],\"dtype\":\"U16\",\"extra\":[1,{\"x\":null}]},"
		"\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\\u00e9\"},"
		"\"a\\u00e4\\ud83d\\ude00\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		"\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]},"
		"\"z\" : { \"dtype\" : \"F32\" , \"shape\" : [ 0 , 3 ] , \"data_offsets\" : [ 16 , 16 ] }\n}";
	size_t len;
	uint8_t *b = st_bytes(json, 13, 16, &len);
	alcm_input *in;
	alcm_tensor t;
	int has;
	assert_int_equal(alcm_input_open_memory(&in, b, len, 0, "v.safetensors", NULL, NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_input_format(in), ALCM_FILE_SAFETENSORS);
	static const char *const names[] = {"a\xc3\xa4\xf0\x9f\x98\x80", "b", "s", "z"};
	static const uint64_t sizes[] = {4, 4, 8, 0};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
		assert_int_equal(has, 1);
		assert_int_equal(t.name_len, strlen(names[i]));
		assert_memory_equal(t.name, names[i], t.name_len);
		assert_int_equal(t.nbytes, sizes[i]);
		if (i == 1)
			assert_memory_equal(t.data, "\x04\x05\x06\x07", 4);
	}
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(has, 0);
	alcm_input_free(in);
	free(b);
	/* null metadata and an empty object. */
	b = st_bytes("{\"__metadata__\":null}", 0, 0, &len);
	assert_int_equal(read_mem(b, len, NULL, 0), ALCM_OK);
	free(b);
	b = st_bytes("{}", 6, 0, &len);
	assert_int_equal(read_mem(b, len, NULL, 0), ALCM_OK);
	free(b);
}

static void test_st_unsupported_dtype(void **state)
{
	(void)state;
	size_t len;
	char d[512];
	uint8_t *b = st_bytes("{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}",
	                      0, 2, &len);
	assert_int_equal(read_mem(b, len, d, sizeof(d)), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(d, "tensor 'q'"));
	assert_non_null(strstr(d, "F8_E4M3"));
	assert_non_null(strstr(d, "header offset"));
	free(b);
}

static void test_st_writer_rules(void **state)
{
	(void)state;
	const char *p = tu_path("rules.safetensors");
	uint64_t shape[1] = {3};
	alcm_tensor ts[2] = {mk_s("a", ALCM_DTYPE_F32, 1, shape, 1),
	                     mk_s("b", ALCM_DTYPE_U8, 1, shape, 2)};
	alcm_output *o;
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_SAFETENSORS, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &ts[0]), ALCM_E_STATE);
	assert_non_null(strstr(alcm_output_detail(o), "plan"));
	assert_int_equal(alcm_output_plan(o, ts, 2), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, ts, 2), ALCM_E_STATE);
	assert_int_equal(alcm_output_write(o, &ts[1]), ALCM_E_ARG); /* out of plan order */
	assert_int_equal(alcm_output_write(o, &ts[0]), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_E_STATE); /* b is missing */
	assert_int_equal(alcm_output_write(o, &ts[1]), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &ts[1]), ALCM_E_STATE);
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	alcm_output_free(o);
	check_file(p, ALCM_FILE_SAFETENSORS, ts, 2, 1);
	/* Duplicate names and invalid UTF-8 names are refused at plan time. */
	alcm_tensor dup[2] = {ts[0], ts[0]};
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_SAFETENSORS, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, dup, 2), ALCM_E_ARG);
	alcm_output_free(o);
	alcm_tensor bad = ts[0];
	bad.name = name_bin;
	bad.name_len = sizeof(name_bin) - 1;
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_SAFETENSORS, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, &bad, 1), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(alcm_output_detail(o), "UTF-8"));
	alcm_output_free(o);
	/* Bad tensors: nbytes disagreeing with the shape, unknown dtype. */
	alcm_tensor wrong = ts[0];
	wrong.nbytes = 5;
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_NPZ, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &wrong), ALCM_E_ARG);
	wrong = ts[0];
	wrong.dtype = 99;
	assert_int_equal(alcm_output_write(o, &wrong), ALCM_E_ARG);
	/* npz: a name written twice is refused at commit. */
	assert_int_equal(alcm_output_write(o, &ts[0]), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &ts[0]), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_E_ARG);
	alcm_output_free(o);
	free_ts(ts, 2);
	unlink(p);
}

/* ---- output safety ---- */

static int temp_files_of(const char *path)
{
	char dir[4096], prefix[4096];
	const char *slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	snprintf(prefix, sizeof(prefix), ".%s.", slash + 1);
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	if (d)
		closedir(d);
	return n;
}

static void test_no_overwrite(void **state)
{
	(void)state;
	uint64_t shape[1] = {3};
	alcm_tensor t = mk_s("a", ALCM_DTYPE_F32, 1, shape, 1);
	int formats[3] = {ALCM_FILE_NPY, ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	for (int i = 0; i < 3; i++) {
		const char *p = tu_path(i == 0 ? "keep.npy" : "keep.out");
		assert_int_equal(tu_write_file(p, "precious", 8), 0);
		alcm_output *o;
		assert_int_equal(alcm_output_open(&o, p, formats[i], ALCM_WRITE_NO_SYNC, NULL),
		                 ALCM_E_EXISTS);
		assert_non_null(strstr(alcm_output_detail(o), "keep."));
		alcm_output_free(o);
		size_t len;
		uint8_t *b = tu_read_file(p, &len);
		assert_int_equal(len, 8);
		assert_memory_equal(b, "precious", 8);
		free(b);
		/* The target appearing after open is not replaced either. */
		unlink(p);
		assert_int_equal(alcm_output_open(&o, p, formats[i], ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
		assert_int_equal(alcm_output_plan(o, &t, 1), ALCM_OK);
		assert_int_equal(alcm_output_write(o, &t), ALCM_OK);
		assert_int_equal(tu_write_file(p, "precious", 8), 0);
		assert_int_equal(alcm_output_commit(o), ALCM_E_EXISTS);
		alcm_output_free(o);
		b = tu_read_file(p, &len);
		assert_int_equal(len, 8);
		free(b);
		assert_int_equal(temp_files_of(p), 0);
		/* With overwrite it is replaced. */
		assert_int_equal(write_ts(p, formats[i], &t, 1, 1), ALCM_OK);
		check_file(p, formats[i], &t, 1, 1);
		unlink(p);
	}
	free_ts(&t, 1);
}

static void test_abort_leaves_nothing(void **state)
{
	(void)state;
	uint64_t shape[1] = {1000};
	alcm_tensor t = mk_s("a", ALCM_DTYPE_F32, 1, shape, 1);
	int formats[3] = {ALCM_FILE_NPY, ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	for (int i = 0; i < 3; i++) {
		const char *p = tu_path("aborted.out");
		unlink(p);
		alcm_output *o;
		assert_int_equal(alcm_output_open(&o, p, formats[i], WFLAGS, NULL), ALCM_OK);
		assert_int_equal(temp_files_of(p), tu_tmpfile_refused(p));
		assert_int_equal(alcm_output_plan(o, &t, 1), ALCM_OK);
		assert_int_equal(alcm_output_write(o, &t), ALCM_OK);
		alcm_output_free(o);
		assert_false(tu_file_exists(p));
		assert_int_equal(temp_files_of(p), 0);
	}
	free_ts(&t, 1);
}

static void test_deterministic(void **state)
{
	(void)state;
	uint64_t shape[2] = {5, 7};
	alcm_tensor ts[3] = {mk_s("x", ALCM_DTYPE_F32, 2, shape, 1),
	                     mk_s("y", ALCM_DTYPE_I16, 2, shape, 2),
	                     mk_s("w", ALCM_DTYPE_U8, 1, shape, 3)};
	int formats[3] = {ALCM_FILE_NPY, ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	for (int i = 0; i < 3; i++) {
		size_t n = formats[i] == ALCM_FILE_NPY ? 1 : 3;
		const char *p1 = tu_path("det1"), *p2 = tu_path("det2");
		assert_int_equal(write_ts(p1, formats[i], ts, n, 1), ALCM_OK);
		usleep(1100000 * (i == 1)); /* a clock-derived timestamp would now differ */
		assert_int_equal(write_ts(p2, formats[i], ts, n, 1), ALCM_OK);
		size_t l1, l2;
		uint8_t *a = tu_read_file(p1, &l1), *b = tu_read_file(p2, &l2);
		assert_int_equal(l1, l2);
		assert_memory_equal(a, b, l1);
		free(a);
		free(b);
		unlink(p1);
		unlink(p2);
	}
	free_ts(ts, 3);
}

static void test_limits_apply(void **state)
{
	(void)state;
	uint64_t shape[2] = {10, 10};
	alcm_tensor ts[3] = {mk_s("a", ALCM_DTYPE_F32, 2, shape, 1),
	                     mk_s("a-long-name", ALCM_DTYPE_F32, 2, shape, 2),
	                     mk_s("c", ALCM_DTYPE_F32, 2, shape, 3)};
	int formats[2] = {ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	for (int i = 0; i < 2; i++) {
		const char *p = tu_path("lim.out");
		assert_int_equal(write_ts(p, formats[i], ts, 3, 1), ALCM_OK);
		for (int which = 0; which < 4; which++) {
			alcm_limits lim;
			alcm_limits_default(&lim);
			if (which == 0)
				lim.max_tensors = 2;
			if (which == 1)
				lim.max_name_bytes = 4;
			if (which == 2)
				lim.max_decoded_bytes = 399;
			if (which == 3)
				lim.max_ndim = 1;
			alcm_input *in;
			int rc = alcm_input_open(&in, p, &lim, NULL);
			while (rc == ALCM_OK) {
				alcm_tensor t;
				int has;
				rc = alcm_input_next(in, &t, &has);
				if (!has)
					break;
			}
			if (rc != ALCM_E_LIMIT)
				print_message("format %d limit %d: %d %s\n", formats[i], which, rc,
				              alcm_input_detail(in));
			assert_int_equal(rc, ALCM_E_LIMIT);
			alcm_input_free(in);
		}
		unlink(p);
	}
	free_ts(ts, 3);
}

/* ---- tensors in pieces (alcm_input_next_begin, alcm_input_piece) ---- */

/* Reads buf (a file of ts[0..n), in order) in pieces, from memory and from a file, and
 * checks each tensor's description and bytes against ts. */
static void check_pieces_one(alcm_input *in, const alcm_tensor *ts, size_t n, int names)
{
	uint8_t *got = malloc(4 << 20);
	for (size_t i = 0; i <= n; i++) {
		alcm_tensor t;
		int has;
		assert_int_equal(alcm_input_next_begin(in, &t, &has), ALCM_OK);
		if (i == n) {
			assert_int_equal(has, 0);
			break;
		}
		assert_int_equal(has, 1);
		assert_null(t.data);
		if (names) {
			assert_int_equal(t.name_len, ts[i].name_len);
			assert_memory_equal(t.name, ts[i].name, t.name_len);
		}
		assert_int_equal(t.dtype, ts[i].dtype);
		assert_int_equal(t.ndim, ts[i].ndim);
		assert_int_equal(t.nbytes, ts[i].nbytes);
		assert_true(t.nbytes <= (4 << 20));
		uint64_t at = 0;
		int pieces = 0;
		for (;;) {
			const void *p;
			size_t len;
			if (at < t.nbytes) /* in the middle of a tensor, whole reads are refused */
				assert_int_equal(alcm_input_next(in, &(alcm_tensor){0}, &has), ALCM_E_STATE);
			assert_int_equal(alcm_input_piece(in, &p, &len), ALCM_OK);
			if (!len)
				break;
			assert_true(len <= ((size_t)1 << 20));
			memcpy(got + at, p, len);
			at += len;
			pieces++;
		}
		assert_int_equal(at, t.nbytes);
		assert_true(pieces == (int)((t.nbytes + (1 << 20) - 1) >> 20));
		if (t.nbytes)
			assert_memory_equal(got, ts[i].data, (size_t)t.nbytes);
	}
	free(got);
}

static void check_pieces(const void *buf, size_t len, const char *name, const alcm_tensor *ts,
                         size_t n)
{
	alcm_input *in = NULL;
	assert_int_equal(alcm_input_open_memory(&in, buf, len, 0, name, NULL, NULL), ALCM_OK);
	check_pieces_one(in, ts, n, 1);
	alcm_input_free(in);
	const char *p = tu_path(name);
	assert_int_equal(tu_write_file(p, buf, len), 0);
	assert_int_equal(alcm_input_open(&in, p, NULL, NULL), ALCM_OK);
	check_pieces_one(in, ts, n, alcm_input_format(in) != ALCM_FILE_NPY); /* named after p */
	alcm_input_free(in);
	unlink(p);
}

/* .npy, .npz (stored, deflated, Fortran order: read whole then given in pieces, empty) and
 * .safetensors in pieces give what alcm_input_next() gives. */
static void test_pieces(void **state)
{
	(void)state;
	uint64_t big[2] = {600, 1000}, small = 5, none = 0;
	alcm_tensor ts[4] = {
		mk_s("big", ALCM_DTYPE_F32, 2, big, 11),   /* 2.4 MB: three pieces */
		mk_s("small", ALCM_DTYPE_I16, 1, &small, 12),
		mk_s("none", ALCM_DTYPE_F64, 1, &none, 13),
		mk_s("big2", ALCM_DTYPE_U8, 2, big, 14),
	};
	size_t len;
	uint8_t *b = npy_of(&ts[0], &len);
	alcm_tensor one = ts[0];
	one.name = "x";
	one.name_len = 1;
	check_pieces(b, len, "x.npy", &one, 1);
	/* .npz: stored and deflated members. */
	size_t l[4];
	uint8_t *npy[4];
	for (int i = 0; i < 4; i++)
		npy[i] = npy_of(&ts[i], &l[i]);
	zmember m[4] = {{"big.npy", npy[0], l[0], 0}, {"small.npy", npy[1], l[1], 1},
	                {"none.npy", npy[2], l[2], 0}, {"big2.npy", npy[3], l[3], 1}};
	uint8_t *zip = build_zip(m, 4, &len);
	check_pieces(zip, len, "p.npz", ts, 4);
	/* A flipped byte in the last piece of a stored member: its CRC-32 fails there. */
	size_t at = (size_t)((uint8_t *)memmem(zip, len, npy[0] + l[0] - 64, 64) - zip) + 63;
	zip[at] ^= 1;
	alcm_input *in = NULL;
	assert_int_equal(alcm_input_open_memory(&in, zip, len, 0, "bad.npz", NULL, NULL), ALCM_OK);
	alcm_tensor t;
	int has;
	const void *p;
	assert_int_equal(alcm_input_next_begin(in, &t, &has), ALCM_OK);
	assert_int_equal(alcm_input_piece(in, &p, &len), ALCM_OK);
	assert_int_equal(alcm_input_piece(in, &p, &len), ALCM_OK);
	assert_int_equal(alcm_input_piece(in, &p, &len), ALCM_E_CORRUPT);
	assert_non_null(strstr(alcm_input_detail(in), "CRC-32"));
	assert_int_equal(alcm_input_piece(in, &p, &len), ALCM_E_STATE);
	assert_int_equal(alcm_input_next_begin(in, &t, &has), ALCM_E_STATE);
	assert_int_equal(alcm_input_piece(NULL, &p, &len), ALCM_E_ARG);
	assert_int_equal(alcm_input_next_begin(NULL, &t, &has), ALCM_E_ARG);
	alcm_input_free(in);
	free(zip);
	for (int i = 0; i < 4; i++)
		free(npy[i]);
	free(b);
	/* Fortran order: transposed on read, then given in pieces. */
	static const int32_t f2[6] = {1, 4, 2, 5, 3, 6}, c2[6] = {1, 2, 3, 4, 5, 6};
	b = npy_bytes("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", 1, f2,
	              sizeof(f2), &len);
	uint64_t s23[2] = {2, 3};
	alcm_tensor ft = {.name = "f", .name_len = 1, .dtype = ALCM_DTYPE_I32, .ndim = 2,
	                  .data = c2, .nbytes = sizeof(c2)};
	memcpy(ft.shape, s23, sizeof(s23));
	check_pieces(b, len, "f.npy", &ft, 1);
	free(b);
	/* .safetensors */
	const char *sp = tu_path("p.safetensors");
	assert_int_equal(write_ts(sp, ALCM_FILE_SAFETENSORS, ts, 4, 1), ALCM_OK);
	uint8_t *sb = tu_read_file(sp, &len);
	unlink(sp);
	/* The writer orders tensors as the reference implementation does: read them first. */
	alcm_tensor order[4];
	assert_int_equal(alcm_input_open_memory(&in, sb, len, 0, "p.safetensors", NULL, NULL),
	                 ALCM_OK);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
		order[i] = *find(ts, 4, &t);
	}
	alcm_input_free(in);
	check_pieces(sb, len, "p.safetensors", order, 4);
	free(sb);
	free_ts(ts, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_unsupported_inputs),
		cmocka_unit_test(test_npy_roundtrip_dtypes),
		cmocka_unit_test(test_npy_exact_header),
		cmocka_unit_test(test_npy_shapes),
		cmocka_unit_test(test_npy_one_tensor),
		cmocka_unit_test(test_npy_bf16_refused),
		cmocka_unit_test(test_npy_big_endian),
		cmocka_unit_test(test_npy_fortran_order),
		cmocka_unit_test(test_npy_header_syntax),
		cmocka_unit_test(test_npz_roundtrip),
		cmocka_unit_test(test_npz_layout),
		cmocka_unit_test(test_npz_deflated),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_st_roundtrip),
		cmocka_unit_test(test_st_reference_bytes),
		cmocka_unit_test(test_st_reader_variants),
		cmocka_unit_test(test_st_unsupported_dtype),
		cmocka_unit_test(test_st_writer_rules),
		cmocka_unit_test(test_no_overwrite),
		cmocka_unit_test(test_abort_leaves_nothing),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_limits_apply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
