/* Tensor file readers on hostile input: truncation, bit flips, forged sizes, failing malloc. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define WFLAGS (ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC)

/* An allocator that records the largest request, to prove forged sizes allocate nothing. */
typedef struct max_alloc {
	alcm_allocator a;
	size_t max;
} max_alloc;

static void *ma_malloc(void *o, size_t n)
{
	max_alloc *m = o;
	if (n > m->max)
		m->max = n;
	return malloc(n);
}
static void *ma_realloc(void *o, void *p, size_t n)
{
	max_alloc *m = o;
	if (n > m->max)
		m->max = n;
	return realloc(p, n);
}
static void ma_free(void *o, void *p)
{
	(void)o;
	free(p);
}

/* Opens bytes (copied to an exact-size heap block so ASan sees overreads) and reads all. */
static int read_all(const uint8_t *buf, size_t len, int format, const alcm_limits *lim,
                    const alcm_allocator *alloc, char *detail)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (len)
		memcpy(copy, buf, len);
	alcm_input *in = NULL;
	int rc = alcm_input_open_memory(&in, copy, len, format, "h.bin", lim, alloc);
	while (rc == ALCM_OK) {
		alcm_tensor t;
		int has;
		rc = alcm_input_next(in, &t, &has);
		if (rc == ALCM_OK && has) {
			/* touch every byte handed out */
			volatile uint8_t x = 0;
			for (uint64_t i = 0; i < t.nbytes; i++)
				x ^= ((const uint8_t *)t.data)[i];
			(void)x;
			assert_true(t.name_len == 0 || t.name != NULL);
		}
		if (!has)
			break;
	}
	if (detail)
		snprintf(detail, 512, "%s", in ? alcm_input_detail(in) : "");
	if (rc)
		assert_true(!in || alcm_input_detail(in)[0] != '\0');
	alcm_input_free(in);
	free(copy);
	return rc;
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
static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t *write_file_bytes(int format, const alcm_tensor *ts, size_t n, size_t *len)
{
	const char *p = tu_path(format == ALCM_FILE_NPY ? "h.npy" : "h.out");
	alcm_output *o = NULL;
	assert_int_equal(alcm_output_open(&o, p, format, WFLAGS, NULL), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, ts, n), ALCM_OK);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(alcm_output_write(o, &ts[i]), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	alcm_output_free(o);
	uint8_t *b = tu_read_file(p, len);
	assert_non_null(b);
	unlink(p);
	return b;
}

static float fdata[24];
static int16_t idata[5] = {1, -2, 3, -4, 5};
static uint8_t bdata[3] = {1, 0, 1};

static void sample(alcm_tensor ts[3])
{
	for (int i = 0; i < 24; i++)
		fdata[i] = (float)i * 0.5f;
	memset(ts, 0, 3 * sizeof(*ts));
	ts[0] = (alcm_tensor){.name = "w", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 2,
	                      .shape = {2, 3}, .data = fdata, .nbytes = 24};
	ts[1] = (alcm_tensor){.name = "b/i", .name_len = 3, .dtype = ALCM_DTYPE_I16, .ndim = 1,
	                      .shape = {5}, .data = idata, .nbytes = 10};
	ts[2] = (alcm_tensor){.name = "m", .name_len = 1, .dtype = ALCM_DTYPE_BOOL, .ndim = 1,
	                      .shape = {3}, .data = bdata, .nbytes = 3};
}

typedef struct zmember {
	const char *name;
	const uint8_t *data;
	size_t len;
	int deflate;
	uint64_t fake_usize;    /* when set: central usize is this, through a zip64 extra */
} zmember;

static uint8_t *build_zip(const zmember *m, size_t n, size_t *out_len)
{
	size_t cap = 1024;
	for (size_t i = 0; i < n; i++)
		cap += 2 * (m[i].len + 160 + strlen(m[i].name));
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
			assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
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
		put32(c + 16, (uint32_t)crc);
		put32(c + 20, (uint32_t)clen);
		put32(c + 24, m[i].fake_usize ? 0xffffffffu : (uint32_t)m[i].len);
		put16(c + 28, (unsigned)nl);
		put32(c + 42, (uint32_t)pos);
		memcpy(c + 46, m[i].name, nl);
		size_t xl = 0;
		if (m[i].fake_usize) {
			put16(c + 46 + nl, 1);
			put16(c + 48 + nl, 8);
			put64(c + 50 + nl, m[i].fake_usize);
			xl = 12;
		}
		put16(c + 30, (unsigned)xl);
		cpos += 46 + nl + xl;
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

/* The test corpus: small valid files of each format. */
enum { F_NPY, F_NPZ, F_NPZ_DEFL, F_ST, NFILES };
static uint8_t *files[NFILES];
static size_t file_len[NFILES];
static uint8_t *npy_member[3];
static size_t npy_member_len[3];

static int setup(void **state)
{
	(void)state;
	alcm_tensor ts[3];
	sample(ts);
	files[F_NPY] = write_file_bytes(ALCM_FILE_NPY, ts, 1, &file_len[F_NPY]);
	files[F_NPZ] = write_file_bytes(ALCM_FILE_NPZ, ts, 2, &file_len[F_NPZ]);
	files[F_ST] = write_file_bytes(ALCM_FILE_SAFETENSORS, ts, 3, &file_len[F_ST]);
	for (int i = 0; i < 3; i++)
		npy_member[i] = write_file_bytes(ALCM_FILE_NPY, &ts[i], 1, &npy_member_len[i]);
	zmember m[3] = {{"w.npy", npy_member[0], npy_member_len[0], 1, 0},
	                {"b/i.npy", npy_member[1], npy_member_len[1], 0, 0},
	                {"m.npy", npy_member[2], npy_member_len[2], 1, 0}};
	files[F_NPZ_DEFL] = build_zip(m, 3, &file_len[F_NPZ_DEFL]);
	for (int i = 0; i < NFILES; i++)
		assert_int_equal(read_all(files[i], file_len[i], 0, NULL, NULL, NULL), ALCM_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NFILES; i++)
		free(files[i]);
	for (int i = 0; i < 3; i++)
		free(npy_member[i]);
	return 0;
}

static const int file_format[NFILES] = {ALCM_FILE_NPY, ALCM_FILE_NPZ, ALCM_FILE_NPZ,
                                        ALCM_FILE_SAFETENSORS};

static void test_truncation(void **state)
{
	(void)state;
	for (int f = 0; f < NFILES; f++) {
		for (size_t len = 0; len < file_len[f]; len++) {
			tu_alloc ta;
			tu_alloc_init(&ta, 0);
			int rc = read_all(files[f], len, 0, NULL, &ta.a, NULL);
			if (rc == ALCM_OK)
				print_message("file %d truncated to %zu bytes was accepted\n", f, len);
			assert_int_not_equal(rc, ALCM_OK);
			assert_int_equal(ta.live, 0);
			rc = read_all(files[f], len, file_format[f], NULL, &ta.a, NULL);
			assert_int_not_equal(rc, ALCM_OK);
			assert_int_equal(ta.live, 0);
		}
	}
}

/* The same through a file, read with pread: a few cuts per format. */
static void test_file_truncation(void **state)
{
	(void)state;
	const char *p = tu_path("cut.bin");
	for (int f = 0; f < NFILES; f++) {
		size_t cuts[4] = {0, 9, file_len[f] / 2, file_len[f] - 1};
		for (int i = 0; i < 4; i++) {
			assert_int_equal(tu_write_file(p, files[f], cuts[i]), 0);
			tu_alloc ta;
			tu_alloc_init(&ta, 0);
			alcm_input *in = NULL;
			int rc = alcm_input_open(&in, p, NULL, &ta.a);
			while (rc == ALCM_OK) {
				alcm_tensor t;
				int has;
				rc = alcm_input_next(in, &t, &has);
				if (!has)
					break;
			}
			assert_int_not_equal(rc, ALCM_OK);
			assert_non_null(strstr(alcm_input_detail(in), "cut.bin"));
			alcm_input_free(in);
			assert_int_equal(ta.live, 0);
		}
	}
	unlink(p);
}

static void test_bit_flips(void **state)
{
	(void)state;
	for (int f = 0; f < NFILES; f++) {
		uint8_t *b = malloc(file_len[f]);
		size_t caught = 0;
		for (size_t bit = 0; bit < file_len[f] * 8; bit++) {
			memcpy(b, files[f], file_len[f]);
			b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			tu_alloc ta;
			tu_alloc_init(&ta, 0);
			caught += read_all(b, file_len[f], 0, NULL, &ta.a, NULL) != ALCM_OK;
			assert_int_equal(ta.live, 0);
		}
		/* Structure and CRCs catch most flips; raw data bytes of npy/safetensors cannot. */
		print_message("file %d: %zu of %zu flips refused\n", f, caught, file_len[f] * 8);
		if (f == F_NPZ || f == F_NPZ_DEFL)
			assert_true(caught > file_len[f] * 8 * 8 / 10);
		free(b);
	}
}

static void test_failing_allocations(void **state)
{
	(void)state;
	for (int f = 0; f < NFILES; f++) {
		int done = 0;
		for (long fail = 1; !done && fail < 1000; fail++) {
			tu_alloc ta;
			tu_alloc_init(&ta, fail);
			char d[512];
			int rc = read_all(files[f], file_len[f], 0, NULL, &ta.a, d);
			if (ta.calls < fail) {
				assert_int_equal(rc, ALCM_OK);
				done = 1;
			} else {
				if (rc != ALCM_E_NOMEM)
					print_message("file %d fail_at %ld: %d %s\n", f, fail, rc, d);
				assert_int_equal(rc, ALCM_E_NOMEM);
			}
			assert_int_equal(ta.live, 0);
		}
		assert_true(done);
	}
}

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

static void test_failing_allocations_write(void **state)
{
	(void)state;
	alcm_tensor ts[3];
	sample(ts);
	static const int formats[3] = {ALCM_FILE_NPY, ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	for (int f = 0; f < 3; f++) {
		const char *p = tu_path("failw.out");
		size_t n = formats[f] == ALCM_FILE_NPY ? 1 : 3;
		int done = 0;
		for (long fail = 1; !done && fail < 1000; fail++) {
			unlink(p);
			tu_alloc ta;
			tu_alloc_init(&ta, fail);
			alcm_output *o = NULL;
			int rc = alcm_output_open(&o, p, formats[f], WFLAGS, &ta.a);
			if (rc == ALCM_OK)
				rc = alcm_output_plan(o, ts, n);
			for (size_t i = 0; i < n && rc == ALCM_OK; i++)
				rc = alcm_output_write(o, &ts[i]);
			if (rc == ALCM_OK)
				rc = alcm_output_commit(o);
			alcm_output_free(o);
			assert_int_equal(ta.live, 0);
			assert_int_equal(temp_files_of(p), 0);
			if (ta.calls < fail) {
				assert_int_equal(rc, ALCM_OK);
				assert_true(tu_file_exists(p));
				done = 1;
			} else {
				assert_int_equal(rc, ALCM_E_NOMEM);
				assert_false(tu_file_exists(p));
			}
		}
		assert_true(done);
		unlink(p);
	}
}

/* ---- forged sizes: refused before any allocation of that size ---- */

static uint8_t *npy_bytes(const char *dict, const void *data, size_t dlen, size_t *len)
{
	size_t n = strlen(dict), hlen = n + 1, pad = (64 - (10 + hlen) % 64) % 64;
	*len = 10 + hlen + pad + dlen;
	uint8_t *b = malloc(*len);
	memcpy(b, "\x93NUMPY\x01\x00", 8);
	put16(b + 8, (unsigned)(hlen + pad));
	memcpy(b + 10, dict, n);
	memset(b + 10 + n, ' ', pad);
	b[10 + n + pad] = '\n';
	if (dlen)
		memcpy(b + 10 + hlen + pad, data, dlen);
	return b;
}

static int read_max(const uint8_t *b, size_t len, int format, size_t *max, char *d)
{
	max_alloc m = {{ma_malloc, ma_realloc, ma_free, NULL}, 0};
	m.a.opaque = &m;
	int rc = read_all(b, len, format, NULL, &m.a, d);
	*max = m.max;
	return rc;
}

static void test_forged_sizes(void **state)
{
	(void)state;
	char d[512];
	size_t len, max;
	uint8_t data[16] = {0};
	/* npy: a shape whose product overflows, and one merely above the limits. */
	static const char *const dicts[] = {
		"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967297), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }",
		"{'descr': '<u1', 'fortran_order': False, 'shape': (68719476737,), }",
	};
	for (size_t i = 0; i < 4; i++) {
		uint8_t *b = npy_bytes(dicts[i], data, 16, &len);
		assert_int_equal(read_max(b, len, 0, &max, d), ALCM_E_LIMIT);
		assert_true(max < 100000);
		assert_non_null(strstr(d, "shape"));
		free(b);
	}
	/* npz: declared uncompressed size 2^62 through a zip64 extra. */
	zmember m = {"big.npy", npy_member[0], npy_member_len[0], 1, (uint64_t)1 << 62};
	uint8_t *z = build_zip(&m, 1, &len);
	assert_int_equal(read_max(z, len, 0, &max, d), ALCM_E_LIMIT);
	assert_true(max < 100000);
	assert_non_null(strstr(d, "big.npy"));
	free(z);
	/* Stored, the same size cannot match the compressed size. */
	m.deflate = 0;
	z = build_zip(&m, 1, &len);
	assert_int_equal(read_max(z, len, 0, &max, d), ALCM_E_CORRUPT);
	assert_true(max < 100000);
	free(z);
	/* 2^30, within the limits but not what the member holds. */
	m.fake_usize = (uint64_t)1 << 30;
	z = build_zip(&m, 1, &len);
	assert_int_equal(read_max(z, len, 0, &max, d), ALCM_E_CORRUPT);
	assert_true(max < 100000);
	free(z);
	m.deflate = 1;
	z = build_zip(&m, 1, &len);
	assert_int_equal(read_max(z, len, 0, &max, d), ALCM_E_CORRUPT);
	assert_true(max < 100000);
	free(z);
	/* safetensors: header length 2^63, then one just over the reference's cap. */
	uint8_t st[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
	assert_int_equal(read_max(st, 16, 0, &max, d), ALCM_E_LIMIT);
	assert_true(max < 100000);
	assert_int_equal(read_max(st, 16, ALCM_FILE_SAFETENSORS, &max, d), ALCM_E_LIMIT);
	put64(st, 100000001);
	assert_int_equal(read_max(st, 16, 0, &max, d), ALCM_E_LIMIT);
	put64(st, 1000);
	assert_int_equal(read_max(st, 16, 0, &max, d), ALCM_E_CORRUPT);
	assert_true(max < 100000);
}

/* ---- safetensors headers ---- */

static uint8_t *st_bytes(const char *json, size_t data_len, size_t *len)
{
	size_t n = strlen(json);
	*len = 8 + n + data_len;
	uint8_t *b = calloc(1, *len);
	put64(b, n);
	memcpy(b + 8, json, n);
	return b;
}

static void test_st_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		size_t data;
		int want;
		const char *says;
	} cases[] = {
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}", 12, ALCM_E_CORRUPT, "gap"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
		 "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 12, ALCM_E_CORRUPT,
		 "overlap"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8, ALCM_E_CORRUPT,
		 "tensor 'a': data_offsets [8, 4] out of order at header offset"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 5, ALCM_E_CORRUPT,
		 "trailing"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3, ALCM_E_CORRUPT,
		 "past the end"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		 "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, ALCM_E_CORRUPT,
		 "duplicate"},
		{"{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_CORRUPT, "duplicate"},
		{"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, ALCM_E_CORRUPT, "duplicate"},
		{"{\"__metadata__\":{},\"__metadata__\":{}}", 0, ALCM_E_CORRUPT, "duplicate"},
		{"{\"__metadata__\":{\"k\":1}}", 0, ALCM_E_CORRUPT, "strings"},
		{"{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "UTF-8"},
		{"{\"a\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_CORRUPT, "UTF-8"},
		{"{\"a\\ud800\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_CORRUPT, "surrogate"},
		{"{\"a\\udc00\\ud800\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_CORRUPT, "surrogate"},
		{"{\"a\\x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "escape"},
		{"{\"a\t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "control"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[04],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "leading zero"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-0,4]}}", 4, ALCM_E_CORRUPT,
		 "negative"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4.0],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "fraction"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4e0]}}", 4, ALCM_E_CORRUPT,
		 "fraction"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_LIMIT, "2^64"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_LIMIT, "overflows"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "need 16"},
		{"{\"a\":{\"shape\":[4],\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT, "dtype"},
		{"{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT, "shape"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, ALCM_E_CORRUPT,
		 "array"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 4, ALCM_E_CORRUPT,
		 "']'"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},}", 4, ALCM_E_CORRUPT,
		 "string"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}} x", 4, ALCM_E_CORRUPT,
		 "after"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}", 4, ALCM_E_CORRUPT, ""},
		{"{\"a\":[{\"dtype\":\"U8\"}]}", 0, ALCM_E_CORRUPT, "object"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"x\":[1,2,tru]}}", 4,
		 ALCM_E_CORRUPT, ""},
		{"{\"a\":{\"dtype\":\"F8_E5M2\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
		 ALCM_E_UNSUPPORTED, "F8_E5M2"},
		{"{\"a\":{\"dtype\":\"C64\",\"shape\":[4],\"data_offsets\":[0,32]}}", 32,
		 ALCM_E_UNSUPPORTED, "C64"},
	};
	char d[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *b = st_bytes(cases[i].json, cases[i].data, &len);
		int rc = read_all(b, len, 0, NULL, NULL, d);
		if (rc != cases[i].want || !strstr(d, cases[i].says))
			print_message("case %zu: %d %s\n", i, rc, d);
		assert_int_equal(rc, cases[i].want);
		assert_non_null(strstr(d, cases[i].says));
		assert_non_null(strstr(d, "h.bin: "));
		free(b);
	}
	/* A header that does not start with '{' (only readable when the format is forced). */
	size_t len;
	uint8_t *b = st_bytes(" {}", 0, &len);
	assert_int_equal(read_all(b, len, ALCM_FILE_SAFETENSORS, NULL, NULL, d), ALCM_E_CORRUPT);
	free(b);
	/* Too many tensors for the limit. */
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_tensors = 1;
	assert_int_equal(read_all(files[F_ST], file_len[F_ST], 0, &lim, NULL, d), ALCM_E_LIMIT);
}

static void test_st_nesting_bomb(void **state)
{
	(void)state;
	size_t depth = 100000;
	const char *pre = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"x\":";
	size_t n = strlen(pre);
	char *json = malloc(n + 2 * depth + 3);
	memcpy(json, pre, n);
	memset(json + n, '[', depth);
	memset(json + n + depth, ']', depth);
	memcpy(json + n + 2 * depth, "}}", 3);
	size_t len;
	char d[512];
	max_alloc m = {{ma_malloc, ma_realloc, ma_free, NULL}, 0};
	m.a.opaque = &m;
	uint8_t *b = st_bytes(json, 4, &len);
	assert_int_equal(read_all(b, len, 0, NULL, &m.a, d), ALCM_E_LIMIT);
	assert_non_null(strstr(d, "nesting"));
	free(b);
	/* Nesting within the bound is skipped. */
	memset(json + n, '[', 10);
	memset(json + n + 10, ']', 10);
	memcpy(json + n + 20, "}}", 3);
	b = st_bytes(json, 4, &len);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_OK);
	free(b);
	/* As the tensor's value it is simply not an object. */
	memcpy(json, "{\"a\":", 5);
	memset(json + 5, '[', depth);
	json[5 + depth] = '\0';
	b = st_bytes(json, 0, &len);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	free(b);
	free(json);
}

/* ---- npz structure ---- */

static uint8_t *copy_of(int f, size_t *len)
{
	*len = file_len[f];
	uint8_t *b = malloc(*len);
	memcpy(b, files[f], *len);
	return b;
}

static void test_npz_malformed(void **state)
{
	(void)state;
	char d[512];
	size_t len;
	/* The deflated corpus file: a plain end record, known layout. */
	uint8_t *b = copy_of(F_NPZ_DEFL, &len);
	uint8_t *eocd = b + len - 22;
	uint32_t cd_off = get32(eocd + 16);
	uint8_t *c0 = b + cd_off;
	/* Central directory offset past the end of the file. */
	put32(eocd + 16, (uint32_t)len + 100);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "central directory"));
	put32(eocd + 16, cd_off);
	/* A huge entry count. */
	put16(eocd + 8, 0xffff);
	put16(eocd + 10, 0xffff);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_tensors = 1000;
	assert_int_equal(read_all(b, len, 0, &lim, NULL, d), ALCM_E_LIMIT);
	put16(eocd + 8, 3);
	put16(eocd + 10, 3);
	/* Multi-disk. */
	put16(eocd + 4, 1);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_UNSUPPORTED);
	put16(eocd + 4, 0);
	/* Encrypted, then an unknown method. */
	c0[8] = 1;
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(d, "encrypted"));
	c0[8] = 0;
	c0[10] = 12;
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(d, "method 12"));
	c0[10] = 8;
	/* A CRC that does not match. */
	c0[16] ^= 1;
	b[14] ^= 1;
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "CRC-32"));
	assert_non_null(strstr(d, "w.npy"));
	c0[16] ^= 1;
	b[14] ^= 1;
	/* The second entry pointing at the first member: overlap. */
	uint8_t *c1 = c0 + 46 + 5;
	uint32_t off1 = get32(c1 + 42);
	put32(c1 + 42, 0);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "overlaps"));
	/* ... or past the central directory. */
	put32(c1 + 42, cd_off - 10);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	put32(c1 + 42, off1);
	/* A local name that differs from the central one. */
	b[30] = 'v';
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "name differs"));
	b[30] = 'w';
	/* Trailing bytes after the end record hide it. */
	uint8_t *t = malloc(len + 3);
	memcpy(t, b, len);
	memcpy(t + len, "xyz", 3);
	assert_int_equal(read_all(t, len + 3, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	free(t);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_OK);
	free(b);

	/* Our writer's file: zip64 local extras; forge the local sizes. */
	b = copy_of(F_NPZ, &len);
	b[39] ^= 1;
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "sizes"));
	free(b);

	/* Members: not a .npy, duplicate names, a deflate stream with trailing junk. */
	uint8_t junk[40] = "not an npy file at all, really";
	zmember m[2] = {{"a.npy", junk, sizeof(junk), 0, 0}, {"a", npy_member[0], npy_member_len[0], 0, 0}};
	b = build_zip(m, 1, &len);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "tensor 'a'"));
	free(b);
	m[0].data = npy_member[0];
	m[0].len = npy_member_len[0];
	b = build_zip(m, 2, &len);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "twice"));
	free(b);
	/* A zip64 end record with an entry count of 2^40. */
	b = copy_of(F_NPZ_DEFL, &len);
	uint8_t *z = malloc(len + 76);
	size_t cd_end = len - 22;
	memcpy(z, b, cd_end);
	uint8_t *r = z + cd_end;
	memcpy(r, "PK\x06\x06", 4);
	put64(r + 4, 44);
	put16(r + 12, 45);
	put16(r + 14, 45);
	put32(r + 16, 0);
	put32(r + 20, 0);
	put64(r + 24, (uint64_t)1 << 40);
	put64(r + 32, (uint64_t)1 << 40);
	put64(r + 40, cd_end - cd_off);
	put64(r + 48, cd_off);
	memcpy(r + 56, "PK\x06\x07", 4);
	put32(r + 60, 0);
	put64(r + 64, cd_end);
	put32(r + 72, 1);
	memcpy(r + 76, b + cd_end, 22);
	size_t max;
	assert_int_equal(read_max(z, len + 76, 0, &max, d), ALCM_E_LIMIT);
	assert_true(max < 100000);
	put64(r + 24, 3);
	put64(r + 32, 3);
	assert_int_equal(read_all(z, len + 76, 0, NULL, NULL, d), ALCM_OK);
	put64(r + 4, 45);
	assert_int_equal(read_all(z, len + 76, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	free(z);
	free(b);
}

static void test_deflate_disagrees(void **state)
{
	(void)state;
	char d[512];
	size_t len;
	/* The stream holds 4 bytes fewer, then 4 bytes more, than the sizes declare. */
	for (int more = 0; more < 2; more++) {
		size_t n = npy_member_len[0];
		uint8_t *content = calloc(1, n + 4);
		memcpy(content, npy_member[0], n);
		zmember m = {"w.npy", content, more ? n + 4 : n - 4, 1, 0};
		uint8_t *b = build_zip(&m, 1, &len);
		uint8_t *c0 = b + get32(b + len - 6);
		put32(c0 + 24, (uint32_t)n);
		put32(b + 22, (uint32_t)n);
		assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
		assert_non_null(strstr(d, more ? "more than the declared" : "deflate stream ends"));
		free(b);
		free(content);
	}
	/* Deflate data followed by extra compressed bytes the directory counts. */
	zmember m = {"w.npy", npy_member[0], npy_member_len[0], 1, 0};
	uint8_t *b = build_zip(&m, 1, &len);
	uint32_t cd = get32(b + len - 6);
	uint8_t *x = malloc(len + 4);
	memcpy(x, b, cd);
	memset(x + cd, 0, 4);
	memcpy(x + cd + 4, b + cd, len - cd);
	uint8_t *c0 = x + cd + 4;
	put32(c0 + 20, get32(c0 + 20) + 4);
	put32(x + 18, get32(x + 18) + 4);
	put32(x + len + 4 - 6, cd + 4);
	assert_int_equal(read_all(x, len + 4, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	assert_non_null(strstr(d, "after the end of the deflate stream"));
	free(x);
	free(b);
}

static void test_npy_hostile(void **state)
{
	(void)state;
	char d[512];
	size_t len;
	uint8_t data[64] = {0};
	/* A header length field larger than the cap (v2 with a 4-byte length). */
	uint8_t v2[16] = "\x93NUMPY\x02\x00";
	put32(v2 + 8, 0x10000);
	assert_int_equal(read_all(v2, 16, 0, NULL, NULL, d), ALCM_E_LIMIT);
	put32(v2 + 8, 0xffffffffu);
	assert_int_equal(read_all(v2, 16, 0, NULL, NULL, d), ALCM_E_LIMIT);
	/* Rank above the limit: 33 dimensions. */
	char dict[512] = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
	for (int i = 0; i < 33; i++)
		strcat(dict, "1, ");
	strcat(dict, "), }");
	uint8_t *b = npy_bytes(dict, data, 4, &len);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_LIMIT);
	free(b);
	/* Strings that never end, a NUL in the header. */
	b = npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", data, 4, &len);
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	free(b);
	b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", data, 4, &len);
	b[10 + 58] = '\0';
	assert_int_equal(read_all(b, len, 0, NULL, NULL, d), ALCM_E_CORRUPT);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_file_truncation),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_failing_allocations),
		cmocka_unit_test(test_failing_allocations_write),
		cmocka_unit_test(test_forged_sizes),
		cmocka_unit_test(test_st_malformed),
		cmocka_unit_test(test_st_nesting_bomb),
		cmocka_unit_test(test_npz_malformed),
		cmocka_unit_test(test_deflate_disagrees),
		cmocka_unit_test(test_npy_hostile),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
