/* Codec round trips: lossless bit-exactness, lossy bounds on every element, specials,
 * determinism across thread counts, integer policy, hostile section bytes. */
#include "testutil.h"
#include "codec_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef tu_packed packed;

/* Decodes tensor i; the caller frees the result. */
static uint8_t *unpack_one(const packed *p, size_t i, alcm_tensor_info *info, int *status)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	uint8_t *out = NULL;
	int st = alcm_reader_open_memory(&r, p->buf, p->len, "t", NULL, NULL, 0);
	if (!st)
		st = alcm_archive_open(&a, r, NULL);
	if (!st)
		st = alcm_archive_tensor_info(a, i, info);
	if (!st) {
		/* info->name points into the archive, which is freed below. */
		static char name[256];
		memcpy(name, info->name, info->name_len < 256 ? info->name_len : 256);
		info->name = name;
		out = malloc(info->raw_bytes ? info->raw_bytes : 1);
		st = alcm_archive_decode(a, i, out, info->raw_bytes);
	}
	alcm_archive_free(a);
	alcm_reader_free(r);
	*status = st;
	if (st) {
		free(out);
		return NULL;
	}
	return out;
}

/* Length of zstd at `level` on n raw bytes, as one coded stream with its framing: the peer a
 * lossless tensor is measured against. */
static size_t zstd_len(const void *data, size_t n, int level)
{
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	alcm_buf b = {NULL, 0, 0, NULL, 0};
	assert_int_equal(alcm_stream_put(c, &b, data, n, level), ALCM_OK);
	size_t len = b.len;
	alcm_buf_free(&b);
	alcm_coder_free(c);
	return len;
}

/* Packs t losslessly (chunks of chunk_bytes; 0: the default), decodes it and checks that
 * every byte came back. The caller frees p->w. */
static void lossless_exact(const alcm_tensor *t, uint64_t chunk_bytes, packed *p,
                           alcm_tensor_report *rep)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	if (chunk_bytes)
		o.chunk_bytes = chunk_bytes;
	assert_int_equal(tu_pack(t, 1, &o, p, rep), ALCM_OK);
	alcm_tensor_info info;
	int st;
	uint8_t *back = unpack_one(p, 0, &info, &st);
	assert_int_equal(st, ALCM_OK);
	assert_memory_equal(back, t->data, t->nbytes);
	free(back);
}

/* The lossless transforms tensor i's chunks use (alcm_archive_tensor_coding), 0 on error. */
static uint32_t coding_of(const packed *p, size_t i)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	uint32_t mask = 0;
	if (alcm_reader_open_memory(&r, p->buf, p->len, "t", NULL, NULL, 0) ||
	    alcm_archive_open(&a, r, NULL) || alcm_archive_tensor_coding(a, i, &mask))
		mask = 0;
	alcm_archive_free(a);
	alcm_reader_free(r);
	return mask;
}

static void fill_float(int dtype, uint8_t *p, uint64_t n, uint64_t *seed, double scale)
{
	for (uint64_t i = 0; i < n; i++) {
		double v = tu_gauss(seed) * scale;
		switch (dtype) {
		case ALCM_DTYPE_F16: alcm_store16(p + 2 * i, alcm_float_to_half((float)v)); break;
		case ALCM_DTYPE_BF16: alcm_store16(p + 2 * i, alcm_float_to_bf16((float)v)); break;
		case ALCM_DTYPE_F32: {
			float f = (float)v;
			memcpy(p + 4 * i, &f, 4);
			break;
		}
		default: memcpy(p + 8 * i, &v, 8);
		}
	}
}

/* A tensor over bytes the caller owns. */
static alcm_tensor view(const char *name, int dtype, uint32_t ndim, const uint64_t *shape,
                        const void *data)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = name;
	t.name_len = strlen(name);
	t.dtype = dtype;
	t.ndim = ndim;
	uint64_t n = 1;
	for (uint32_t i = 0; i < ndim; i++) {
		t.shape[i] = shape[i];
		n *= shape[i];
	}
	t.nbytes = n * alcm_dtype_size(dtype);
	t.data = data;
	return t;
}

static alcm_tensor make(const char *name, int dtype, uint32_t ndim, const uint64_t *shape,
                        uint8_t **data, uint64_t *seed)
{
	alcm_tensor t = view(name, dtype, ndim, shape, NULL);
	uint64_t n = t.nbytes / alcm_dtype_size(dtype);
	*data = malloc(t.nbytes ? t.nbytes : 1);
	if (alcm_dtype_is_float(dtype))
		fill_float(dtype, *data, n, seed, 0.05);
	else
		for (uint64_t i = 0; i < t.nbytes; i++)
			(*data)[i] = (uint8_t)(tu_rand(seed) % 7);
	if (dtype == ALCM_DTYPE_BOOL)
		for (uint64_t i = 0; i < t.nbytes; i++)
			(*data)[i] &= 1;
	t.data = *data;
	return t;
}

static void test_lossless_all_dtypes(void **state)
{
	(void)state;
	uint64_t seed = 1;
	const uint64_t shapes[][5] = {{0}, {1}, {1000}, {3, 0, 2}, {2, 3, 4, 5, 6}, {70000}};
	const uint32_t ranks[] = {0, 1, 1, 3, 5, 1};
	for (int dt = ALCM_DTYPE_BOOL; dt <= ALCM_DTYPE_F64; dt++) {
		for (size_t s = 0; s < 6; s++) {
			uint8_t *data;
			alcm_tensor t = make("layer.0/weight", dt, ranks[s], shapes[s], &data, &seed);
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.chunk_bytes = 4096; /* many chunks */
			packed p;
			assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
			alcm_tensor_info info;
			int st;
			uint8_t *back = unpack_one(&p, 0, &info, &st);
			assert_int_equal(st, ALCM_OK);
			assert_int_equal(info.dtype, dt);
			assert_int_equal(info.ndim, ranks[s]);
			assert_int_equal(info.raw_bytes, t.nbytes);
			assert_memory_equal(info.name, t.name, t.name_len);
			assert_true(t.nbytes == 0 || memcmp(back, data, t.nbytes) == 0);
			free(back);
			free(data);
			alcm_writer_free(p.w);
		}
	}
}

/* Float bit patterns that must survive every mode exactly. */
static void put_specials(int dtype, uint8_t *p)
{
	uint64_t pat[8];
	int n = 0;
	switch (dtype) {
	case ALCM_DTYPE_F16:
	case ALCM_DTYPE_BF16: {
		uint16_t f16[] = {0x7e01, 0xfc00, 0x7c00, 0x8000, 0x0001, 0x8003, 0x03ff, 0x7d55};
		uint16_t b16[] = {0x7fc1, 0xff80, 0x7f80, 0x8000, 0x0001, 0x8003, 0x007f, 0xffc3};
		for (n = 0; n < 8; n++)
			pat[n] = dtype == ALCM_DTYPE_F16 ? f16[n] : b16[n];
		for (int i = 0; i < n; i++)
			alcm_store16(p + 2 * (size_t)i * 37, (uint16_t)pat[i]);
		return;
	}
	case ALCM_DTYPE_F32: {
		uint32_t f[] = {0x7fc00001u, 0xff800000u, 0x7f800000u, 0x80000000u,
		                0x00000001u, 0x80000003u, 0x007fffffu, 0xffc12345u};
		for (int i = 0; i < 8; i++)
			alcm_store32(p + 4 * (size_t)i * 37, f[i]);
		return;
	}
	default: {
		uint64_t f[] = {0x7ff8000000000001ull, 0xfff0000000000000ull, 0x7ff0000000000000ull,
		                0x8000000000000000ull, 1ull, 0x8000000000000003ull,
		                0x000fffffffffffffull, 0x7ff0000000000001ull};
		for (int i = 0; i < 8; i++)
			alcm_store64(p + 8 * (size_t)i * 37, f[i]);
	}
	}
}

static int same_bits(int dtype, const uint8_t *a, const uint8_t *b, uint64_t i)
{
	size_t w = alcm_dtype_size(dtype);
	return memcmp(a + i * w, b + i * w, w) == 0;
}

/* Checks |x - x'| <= bound(i) on every finite non-special element, exactness elsewhere. */
static void check_bound(int dtype, const uint8_t *x, const uint8_t *y, uint64_t n,
                        const double *bound_c, uint64_t inner)
{
	for (uint64_t i = 0; i < n; i++) {
		if (alcm_is_special(dtype, x, i)) {
			assert_true(same_bits(dtype, x, y, i));
			continue;
		}
		double a = alcm_load_float(dtype, x, i), b = alcm_load_float(dtype, y, i);
		double bnd = bound_c[inner ? i / inner : 0];
		if (!(fabs(a - b) <= bnd))
			fail_msg("element %llu: %.9g vs %.9g exceeds %.9g", (unsigned long long)i, a, b,
			         bnd);
	}
}

static void test_max_error_every_element(void **state)
{
	(void)state;
	const int dts[] = {ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F32, ALCM_DTYPE_F64};
	const double bounds[] = {1e-4, 1e-3, 0.02};
	uint64_t seed = 7;
	for (int d = 0; d < 4; d++) {
		for (int b = 0; b < 3; b++) {
			for (int prune = 0; prune < 2; prune++) {
				uint64_t shape[2] = {64, 300};
				uint8_t *data;
				alcm_tensor t = make("w", dts[d], 2, shape, &data, &seed);
				put_specials(dts[d], data);
				alcm_pack_options o;
				alcm_pack_options_default(&o);
				o.mode = ALCM_MODE_MAX_ERROR;
				o.bound = bounds[b];
				o.prune = prune ? 0.25 : 0;
				o.chunk_bytes = 8192;
				packed p;
				alcm_tensor_report rep;
				assert_int_equal(tu_pack(&t, 1, &o, &p, &rep), ALCM_OK);
				assert_true(rep.max_abs_error <= bounds[b]);
				assert_true(rep.pruned <= (uint64_t)(0.25 * 64 * 300));
				assert_true(rep.escapes >= 8);
				alcm_tensor_info info;
				int st;
				uint8_t *back = unpack_one(&p, 0, &info, &st);
				assert_int_equal(st, ALCM_OK);
				assert_int_equal(info.mode, ALCM_MODE_MAX_ERROR);
				check_bound(dts[d], data, back, 64 * 300, &bounds[b], 0);
				free(back);
				free(data);
				alcm_writer_free(p.w);
			}
		}
	}
}

/* Near a narrow dtype's own resolution, a coarser bound must not give a bigger tensor: the
 * steps are chosen on the dtype's grid, not left to escapes whose number rises and falls with
 * where 2 * bound lands on it. Every value still meets its bound. */
static void test_narrow_dtype_bound_sweep(void **state)
{
	(void)state;
	const int dts[] = {ALCM_DTYPE_BF16, ALCM_DTYPE_F16};
	for (int d = 0; d < 2; d++) {
		uint64_t seed = 11, shape[2] = {128, 512};
		uint8_t *data = malloc(128 * 512 * 2);
		/* Gaussian with scale 0.3: the top values sit in the binade [0.5, 1) and above,
		 * where bfloat16's spacing is 2^-8; the bounds sweep across it. */
		fill_float(dts[d], data, 128 * 512, &seed, dts[d] == ALCM_DTYPE_BF16 ? 0.3 : 0.3 / 16);
		alcm_tensor t = view("w", dts[d], 2, shape, data);
		double scale = dts[d] == ALCM_DTYPE_BF16 ? 1 : 1.0 / 16 / 8; /* f16: 3 more bits */
		size_t smallest = SIZE_MAX;
		for (int k = 0; k <= 12; k++) {
			double bound = (0.0038 + 0.0001 * k) * scale;
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.mode = ALCM_MODE_MAX_ERROR;
			o.bound = bound;
			o.threads = 1;
			packed p;
			alcm_tensor_report rep;
			assert_int_equal(tu_pack(&t, 1, &o, &p, &rep), ALCM_OK);
			if (p.len > smallest + smallest / 100)
				fail_msg("%s bound %.6g: %zu bytes, a finer bound took %zu",
				         alcm_dtype_name(dts[d]), bound, p.len, smallest);
			if (p.len < smallest)
				smallest = p.len;
			alcm_tensor_info info;
			int st;
			uint8_t *back = unpack_one(&p, 0, &info, &st);
			assert_int_equal(st, ALCM_OK);
			check_bound(dts[d], data, back, 128 * 512, &bound, 0);
			free(back);
			alcm_writer_free(p.w);
		}
		free(data);
	}
}

/* float16 and bfloat16 channels of 32k values or more are quantized by looking each bit
 * pattern up once; shorter ones value by value. The decoded values and the report (error,
 * pruned, escapes, SNR) must not depend on which: the same tensor packed in one chunk and
 * in chunks of 4096 values, with specials and pruning, in max-error and rel-error modes. */
static void test_chunking_same_values(void **state)
{
	(void)state;
	const int dts[] = {ALCM_DTYPE_BF16, ALCM_DTYPE_F16};
	for (int d = 0; d < 2; d++) {
		for (int rel = 0; rel < 2; rel++) {
			uint64_t seed = 41, shape[2] = {2, 40000}, n = 80000;
			uint8_t *data = malloc(n * 2);
			fill_float(dts[d], data, n, &seed, 0.05);
			put_specials(dts[d], data);
			alcm_tensor t = view("w", dts[d], 2, shape, data);
			alcm_tensor_report rep[2];
			uint8_t *back[2];
			for (int k = 0; k < 2; k++) {
				alcm_pack_options o;
				alcm_pack_options_default(&o);
				o.mode = rel ? ALCM_MODE_REL_ERROR : ALCM_MODE_MAX_ERROR;
				o.bound = rel ? 0.01 : 1e-3;
				o.prune = 0.2;
				o.chunk_bytes = k ? 4096 * 2 : n * 2;
				packed p;
				assert_int_equal(tu_pack(&t, 1, &o, &p, &rep[k]), ALCM_OK);
				alcm_tensor_info info;
				int st;
				back[k] = unpack_one(&p, 0, &info, &st);
				assert_int_equal(st, ALCM_OK);
				alcm_writer_free(p.w);
			}
			assert_memory_equal(back[0], back[1], n * 2);
			assert_true(rep[0].max_abs_error == rep[1].max_abs_error);
			assert_int_equal(rep[0].pruned, rep[1].pruned);
			assert_int_equal(rep[0].escapes, rep[1].escapes);
			assert_true(rep[0].pruned > 100 && rep[0].escapes >= 4);
			if (!(fabs(rep[0].snr_db - rep[1].snr_db) < 1e-9))
				fail_msg("%s: SNR %.12g vs %.12g", alcm_dtype_name(dts[d]), rep[0].snr_db,
				         rep[1].snr_db);
			free(back[0]);
			free(back[1]);
			free(data);
		}
	}
}

/* Values and bounds near the top of the double range: twice the bound, or the SNR search's
 * first guess, overflow to infinity, which no reader accepts as a step. The archive must
 * open, and every value come back within its bound (found by the fuzzer). */
static void test_huge_bounds_readable(void **state)
{
	(void)state;
	const double v[4] = {1.7e308, -5.6e307, 1.0, -6.7e153};
	const struct {
		int mode;
		double bound, abs; /* abs: the absolute bound every value must meet */
	} cases[] = {
		{ALCM_MODE_MAX_ERROR, 1e308, 1e308},
		{ALCM_MODE_MAX_ERROR, 1.7e308, 1.7e308},
		{ALCM_MODE_REL_ERROR, 0.6, 0.6 * 1.7e308},
		{ALCM_MODE_SNR, 13.5, INFINITY},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		for (int one = 0; one < 2; one++) { /* all four values, then the last alone */
			uint64_t shape[1] = {one ? 1 : 4};
			alcm_tensor t = view("big", ALCM_DTYPE_F64, 1, shape, (const void *)(v + 3 * one));
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.mode = cases[k].mode;
			o.bound = cases[k].bound;
			packed p;
			alcm_tensor_report rep;
			assert_int_equal(tu_pack(&t, 1, &o, &p, &rep), ALCM_OK);
			alcm_tensor_info info;
			int st;
			double *back = (double *)unpack_one(&p, 0, &info, &st);
			if (st != ALCM_OK)
				fail_msg("case %zu: decode status %d", k, st);
			for (uint64_t i = 0; i < shape[0]; i++)
				if (!(fabs(back[i] - v[3 * one + i]) <= cases[k].abs))
					fail_msg("case %zu: %.17g came back as %.17g", k, v[3 * one + i], back[i]);
			free(back);
			alcm_writer_free(p.w);
		}
	}
}

static void test_rel_error_per_channel(void **state)
{
	(void)state;
	uint64_t seed = 9, shape[3] = {16, 8, 32};
	uint8_t *data;
	alcm_tensor t = make("conv", ALCM_DTYPE_F32, 3, shape, &data, &seed);
	/* Channels of very different magnitude: a per-tensor scale would crush the small ones. */
	float *f = (float *)data;
	for (uint64_t c = 0; c < 16; c++)
		for (uint64_t i = 0; i < 256; i++)
			f[c * 256 + i] *= powf(10.0f, (float)c - 8.0f);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_REL_ERROR;
	o.bound = 0.01;
	o.prune = 0.1;
	packed p;
	assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
	alcm_tensor_info info;
	int st;
	uint8_t *back = unpack_one(&p, 0, &info, &st);
	assert_int_equal(st, ALCM_OK);
	assert_int_equal(info.scales, 16);
	double bound[16];
	for (int c = 0; c < 16; c++) {
		double m = 0;
		for (int i = 0; i < 256; i++)
			m = fmax(m, fabs(f[c * 256 + i]));
		bound[c] = 0.01 * m;
	}
	check_bound(ALCM_DTYPE_F32, data, back, 16 * 256, bound, 256);
	free(back);
	free(data);
	alcm_writer_free(p.w);
}

/* The SNR floor holds on the decoded tensor: float32, and float16/bfloat16 tensors of 64k
 * values or more, whose step search runs on the counts of their bit patterns (specials kept
 * exactly). Then --bits: every value within half a step of its channel's scale. */
static void test_snr_floor_and_bits(void **state)
{
	(void)state;
	uint64_t seed = 11, shape[2] = {32, 1000};
	const struct {
		int dtype;
		uint64_t rows, cols;
		double db[3];
	} cases[] = {
		{ALCM_DTYPE_F32, 32, 1000, {20, 40, 60}},
		{ALCM_DTYPE_BF16, 4, 20000, {15, 30, 45}},
		{ALCM_DTYPE_F16, 4, 20000, {15, 30, 45}},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int k = 0; k < 3; k++) {
			int dt = cases[c].dtype;
			uint64_t sh[2] = {cases[c].rows, cases[c].cols}, n = sh[0] * sh[1];
			uint8_t *data;
			alcm_tensor t;
			if (dt == ALCM_DTYPE_F32) {
				t = make("g", dt, 2, sh, &data, &seed);
			} else {
				data = malloc(n * 2);
				fill_float(dt, data, n, &seed, 0.05);
				put_specials(dt, data);
				t = view("w", dt, 2, sh, data);
			}
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.mode = ALCM_MODE_SNR;
			o.bound = cases[c].db[k];
			packed p;
			assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
			alcm_tensor_info info;
			int st;
			uint8_t *back = unpack_one(&p, 0, &info, &st);
			assert_int_equal(st, ALCM_OK);
			alcm_error_stats es;
			assert_int_equal(alcm_tensor_measure(&t, back, &es), ALCM_OK);
			assert_true(es.specials_exact);
			if (!(es.snr_db >= cases[c].db[k]))
				fail_msg("%s: SNR %.3f dB under the floor %g", alcm_dtype_name(dt), es.snr_db,
				         cases[c].db[k]);
			free(back);
			free(data);
			alcm_writer_free(p.w);
		}
	}
	for (unsigned bits = 2; bits <= 12; bits += 5) {
		uint8_t *data;
		alcm_tensor t = make("b", ALCM_DTYPE_F32, 2, shape, &data, &seed);
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.mode = ALCM_MODE_BITS;
		o.bits = bits;
		packed p;
		alcm_tensor_report rep;
		assert_int_equal(tu_pack(&t, 1, &o, &p, &rep), ALCM_OK);
		alcm_tensor_info info;
		int st;
		uint8_t *back = unpack_one(&p, 0, &info, &st);
		assert_int_equal(st, ALCM_OK);
		assert_int_equal(info.bits, bits);
		/* Every value lies within half a step of its channel's scale, plus half a float32 ulp:
		 * the reconstruction is rounded to the dtype. */
		const float *x = (const float *)data, *y = (const float *)back;
		for (int c = 0; c < 32; c++) {
			double m = 0;
			for (int i = 0; i < 1000; i++)
				m = fmax(m, fabs(x[c * 1000 + i]));
			double half = m / ((1u << (bits - 1)) - 1) / 2 * (1 + 1e-6);
			for (int i = 0; i < 1000; i++)
				if (!(fabs(x[c * 1000 + i] - y[c * 1000 + i]) <=
				      half + fabs(x[c * 1000 + i]) * 0x1p-24))
					fail_msg("bits %u, channel %d: %.9g -> %.9g, half step %.9g", bits, c,
					         x[c * 1000 + i], y[c * 1000 + i], half);
		}
		free(back);
		free(data);
		alcm_writer_free(p.w);
	}
}

static void test_constant_and_tiny_tensors(void **state)
{
	(void)state;
	float one[1] = {3.25f}, zeros[100], wide[6] = {1e-30f, -1e30f, 5.0f, 0.0f, 1e38f, -1e-38f};
	memset(zeros, 0, sizeof(zeros));
	float *bufs[] = {one, zeros, wide};
	uint64_t lens[] = {1, 100, 6};
	for (int mode = ALCM_MODE_LOSSLESS; mode <= ALCM_MODE_BITS; mode++) {
		for (int k = 0; k < 3; k++) {
			alcm_tensor t;
			memset(&t, 0, sizeof(t));
			t.name = "c";
			t.name_len = 1;
			t.dtype = ALCM_DTYPE_F32;
			t.ndim = 1;
			t.shape[0] = lens[k];
			t.data = bufs[k];
			t.nbytes = lens[k] * 4;
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.mode = mode;
			o.bound = mode == ALCM_MODE_SNR ? 30 : 0.001;
			o.bits = 8;
			packed p;
			assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
			alcm_tensor_info info;
			int st;
			uint8_t *back = unpack_one(&p, 0, &info, &st);
			assert_int_equal(st, ALCM_OK);
			const float *y = (const float *)back;
			for (uint64_t i = 0; i < lens[k]; i++) {
				double err = fabs((double)bufs[k][i] - y[i]);
				if (mode == ALCM_MODE_LOSSLESS)
					assert_true(memcmp(&bufs[k][i], &y[i], 4) == 0);
				else if (mode == ALCM_MODE_MAX_ERROR)
					assert_true(err <= 0.001);
				else if (mode == ALCM_MODE_REL_ERROR)
					assert_true(err <= 0.001 * 1e38 * 1.0000001);
			}
			free(back);
			alcm_writer_free(p.w);
		}
	}
}

static void test_threads_identical_bytes(void **state)
{
	(void)state;
	uint64_t seed = 3, shape[2] = {512, 1024};
	uint8_t *data;
	alcm_tensor t[2];
	t[0] = make("a", ALCM_DTYPE_F32, 2, shape, &data, &seed);
	uint8_t *data2;
	t[1] = make("b", ALCM_DTYPE_BF16, 2, shape, &data2, &seed);
	for (int mode = 0; mode < 2; mode++) {
		packed ref;
		memset(&ref, 0, sizeof(ref));
		for (unsigned th = 1; th <= 4; th++) {
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.threads = th;
			o.chunk_bytes = 65536;
			o.mode = mode ? ALCM_MODE_MAX_ERROR : ALCM_MODE_LOSSLESS;
			o.bound = 1e-3;
			packed p;
			assert_int_equal(tu_pack(t, 2, &o, &p, NULL), ALCM_OK);
			if (th == 1) {
				ref = p;
				continue;
			}
			assert_int_equal(p.len, ref.len);
			assert_memory_equal(p.buf, ref.buf, p.len);
			alcm_writer_free(p.w);
		}
		alcm_writer_free(ref.w);
	}
	free(data);
	free(data2);
}

static void test_decode_threads_same_result(void **state)
{
	(void)state;
	uint64_t seed = 23, shape[2] = {300, 1000};
	uint8_t *data;
	alcm_tensor t = make("d", ALCM_DTYPE_F32, 2, shape, &data, &seed);
	for (int mode = 0; mode < 2; mode++) {
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.chunk_bytes = 16384;
		o.mode = mode ? ALCM_MODE_REL_ERROR : ALCM_MODE_LOSSLESS;
		o.bound = 0.01;
		o.prune = mode ? 0.2 : 0;
		packed p;
		assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
		uint8_t *ref = NULL;
		for (unsigned th = 1; th <= 3; th++) {
			alcm_reader *r = NULL;
			alcm_archive *a = NULL;
			assert_int_equal(alcm_reader_open_memory(&r, p.buf, p.len, "m", NULL, NULL, 0), 0);
			assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
			assert_int_equal(alcm_archive_set_threads(a, th), ALCM_OK);
			uint8_t *out = malloc(t.nbytes);
			assert_int_equal(alcm_archive_decode(a, 0, out, t.nbytes), ALCM_OK);
			if (!mode)
				assert_memory_equal(out, data, t.nbytes);
			if (ref) {
				assert_memory_equal(out, ref, t.nbytes);
				free(out);
			} else {
				ref = out;
			}
			alcm_archive_free(a);
			alcm_reader_free(r);
		}
		free(ref);
		alcm_writer_free(p.w);
	}
	free(data);
}

static void test_integer_policy(void **state)
{
	(void)state;
	uint64_t seed = 5, shape[1] = {999};
	uint8_t *data;
	alcm_tensor t = make("steps", ALCM_DTYPE_I64, 1, shape, &data, &seed);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 0.5;
	packed p;
	alcm_tensor_report rep;
	assert_int_equal(tu_pack(&t, 1, &o, &p, &rep), ALCM_OK);
	assert_int_equal(rep.downgraded, 1);
	assert_int_equal(rep.mode, ALCM_MODE_LOSSLESS);
	alcm_tensor_info info;
	int st;
	uint8_t *back = unpack_one(&p, 0, &info, &st);
	assert_int_equal(st, ALCM_OK);
	assert_memory_equal(back, data, t.nbytes);
	free(back);
	alcm_writer_free(p.w);
	o.int_policy = ALCM_INT_REFUSE;
	assert_int_equal(tu_pack(&t, 1, &o, &p, &rep), ALCM_E_BOUND);
	alcm_writer_free(p.w);
	free(data);
}

static void test_lossless_not_worse_than_zstd(void **state)
{
	(void)state;
	uint64_t seed = 13, shape[1] = {1 << 18};
	uint8_t *data;
	alcm_tensor t = make("w", ALCM_DTYPE_F32, 1, shape, &data, &seed);
	packed p;
	alcm_tensor_report rep;
	lossless_exact(&t, 0, &p, &rep);
	/* Exponent-plane coding must beat zstd on the raw bytes of Gaussian weights. */
	assert_true(rep.stored_bytes < zstd_len(data, t.nbytes, 3));
	alcm_writer_free(p.w);
	free(data);
}

/* Every byte of the coded sections flipped in turn: decode fails cleanly or, where the
 * digest is skipped, returns some tensor, and never crashes. */
/* Weights quantized to 8 bits and saved dequantized (TF.js, many converters): at most 256
 * distinct values per tensor. Lossless must stay bit-exact and beat zstd -19 on the raw
 * bytes, in float32 and float16, and a chunk whose sample looked like a palette but which
 * holds more values must still round-trip. */
static void fill_dequantized(int dtype, uint8_t *p, uint64_t n, uint64_t *seed)
{
	for (uint64_t i = 0; i < n; i++) {
		double q = nearbyint(tu_gauss(seed) * 30 + 128);
		q = q < 0 ? 0 : q > 255 ? 255 : q;
		float v = (float)((q - 128) * 0.0021 - 0.0003);
		if (dtype == ALCM_DTYPE_F16)
			alcm_store16(p + 2 * i, alcm_float_to_half(v));
		else
			memcpy(p + 4 * i, &v, 4);
	}
}

static void test_palette_dequantized_weights(void **state)
{
	(void)state;
	const int dts[] = {ALCM_DTYPE_F32, ALCM_DTYPE_F16};
	for (int d = 0; d < 2; d++) {
		for (int mixed = 0; mixed < 2; mixed++) {
			uint64_t seed = 23, n = 1 << 17, shape[2] = {128, 1 << 10};
			size_t w = alcm_dtype_size(dts[d]);
			uint8_t *data = malloc(n * w);
			fill_dequantized(dts[d], data, n, &seed);
			if (mixed) /* the head of the chunk holds many values, the sampled middle few */
				fill_float(dts[d], data, 4096, &seed, 0.05);
			alcm_tensor t = view("q", dts[d], 2, shape, data);
			packed p;
			alcm_tensor_report rep;
			lossless_exact(&t, 1 << 18, &p, &rep); /* several chunks */
			if (!mixed) {
				assert_int_equal(coding_of(&p, 0), 1u << ALCM_TRANSFORM_PALETTE);
				size_t z = zstd_len(data, n * w, 19);
				if (!(rep.stored_bytes < z))
					fail_msg("%s: %llu bytes, zstd -19 %zu", alcm_dtype_name(dts[d]),
					         (unsigned long long)rep.stored_bytes, z);
			}
			free(data);
			alcm_writer_free(p.w);
		}
	}
}

/* A probability table (float32, a bigram matrix of 50 distinct values): the chunk's middle,
 * which the coder samples, holds few distinct values and its head many, so the palette is
 * planned and then impossible. The chunk must fall back to what the sample found best
 * without the palette, and so never cost more than zstd on the raw bytes plus framing. */
static void test_palette_fallback_not_worse(void **state)
{
	(void)state;
	uint64_t seed = 29, n = 1 << 16, shape[2] = {256, 256};
	float *p = malloc(n * 4);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = tu_rand(&seed);
		if (i < 2048)
			p[i] = (float)(r % 1000003) * 1e-6f;
		else
			p[i] = (float)(1 + r % 50) / 64.0f;
	}
	{
		/* The coder's own view: a palette planned, the fallback written. */
		alcm_coder *c = alcm_coder_new(NULL, NULL);
		alcm_buf b = {NULL, 0, 0, NULL, 0};
		alcm_lplan plan = alcm_lossless_choose(c, &b, ALCM_DTYPE_F32, (const uint8_t *)p, n, 3);
		assert_int_equal(plan.transform, ALCM_TRANSFORM_PALETTE);
		assert_int_not_equal(plan.fb_transform, ALCM_TRANSFORM_PALETTE);
		b.len = 0;
		assert_int_equal(alcm_lossless_encode(c, &b, ALCM_DTYPE_F32, &plan, (const uint8_t *)p,
		                                      n, 3),
		                 ALCM_OK);
		assert_int_equal(b.p[0], plan.fb_transform);
		alcm_buf_free(&b);
		alcm_coder_free(c);
	}
	alcm_tensor t = view("bigram", ALCM_DTYPE_F32, 2, shape, p);
	packed pk;
	alcm_tensor_report rep;
	lossless_exact(&t, 0, &pk, &rep);
	size_t z = zstd_len(p, n * 4, 3);
	if (!(rep.stored_bytes <= z + 64))
		fail_msg("%llu bytes, zstd -3 on the raw bytes %zu", (unsigned long long)rep.stored_bytes,
		         z);
	alcm_writer_free(pk.w);
	free(p);
}

/* Palette chunks a reader must refuse: no values, more than 256, a palette out of order or
 * with a repeat, an index past the palette, a palette on 1-byte elements. */
static void test_palette_hostile(void **state)
{
	(void)state;
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	const struct {
		int dtype;
		uint64_t m;
		uint32_t pal[3];
		uint8_t ix[4];
		int want;
	} cases[] = {
		{ALCM_DTYPE_F32, 3, {1, 2, 3}, {0, 1, 2, 1}, ALCM_OK},
		{ALCM_DTYPE_F32, 0, {1, 2, 3}, {0, 0, 0, 0}, ALCM_E_CORRUPT},
		{ALCM_DTYPE_F32, 257, {1, 2, 3}, {0, 0, 0, 0}, ALCM_E_CORRUPT},
		{ALCM_DTYPE_F32, 5, {1, 2, 3}, {0, 0, 0, 0}, ALCM_E_CORRUPT}, /* m > elements */
		{ALCM_DTYPE_F32, 3, {1, 3, 2}, {0, 1, 2, 1}, ALCM_E_CORRUPT},
		{ALCM_DTYPE_F32, 3, {1, 1, 2}, {0, 1, 2, 1}, ALCM_E_CORRUPT},
		{ALCM_DTYPE_F32, 3, {1, 2, 3}, {0, 1, 3, 1}, ALCM_E_CORRUPT},
		{ALCM_DTYPE_U8, 3, {1, 2, 3}, {0, 1, 2, 1}, ALCM_E_CORRUPT},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		size_t w = alcm_dtype_size(cases[k].dtype);
		uint8_t pal[3 * 8];
		for (int j = 0; j < 3; j++)
			for (size_t b = 0; b < w; b++)
				pal[j * w + b] = (uint8_t)(cases[k].pal[j] >> (8 * b));
		alcm_buf b = {NULL, 0, 0, NULL, 0};
		uint8_t t = ALCM_TRANSFORM_PALETTE;
		size_t plen = cases[k].m <= 3 ? (size_t)cases[k].m * w : 3 * w;
		assert_int_equal(alcm_buf_put(&b, &t, 1), ALCM_OK);
		assert_int_equal(alcm_buf_put_varint(&b, cases[k].m), ALCM_OK);
		assert_int_equal(alcm_stream_put(c, &b, pal, plen, 0), ALCM_OK);
		assert_int_equal(alcm_stream_put(c, &b, cases[k].ix, 4, 0), ALCM_OK);
		uint8_t out[32], scratch[32];
		alcm_cursor cur = {b.p, b.len, 0};
		int st = alcm_lossless_decode(c, &cur, cases[k].dtype, out, 4, scratch);
		if (st != cases[k].want)
			fail_msg("case %zu: status %d, want %d", k, st, cases[k].want);
		if (st == ALCM_OK)
			for (int i = 0; i < 4; i++)
				assert_int_equal(alcm_load32(out + 4 * i), cases[k].pal[cases[k].ix[i]]);
		alcm_buf_free(&b);
	}
	alcm_coder_free(c);
}

/* Gradients and pruned weights: most elements exactly zero. Lossless stays bit-exact in
 * every dtype (negative zeros, NaN and infinities kept; a chunk of only zeros and one with
 * none), and float32 gradients with half their values zero take less room than zstd -19 on
 * the raw bytes. */
static void test_sparse_gradients(void **state)
{
	(void)state;
	const int dts[] = {ALCM_DTYPE_F32, ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F64,
	                   ALCM_DTYPE_I32};
	for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
		uint64_t seed = 31 + d, rows = 64, cols = 1024, n = rows * cols;
		uint64_t shape[2] = {rows, cols};
		size_t w = alcm_dtype_size(dts[d]);
		uint8_t *data = malloc(n * w);
		if (dts[d] == ALCM_DTYPE_I32)
			for (uint64_t i = 0; i < n; i++)
				alcm_store32(data + 4 * i, (uint32_t)(tu_rand(&seed) % 2000) - 1000);
		else
			fill_float(dts[d], data, n, &seed, 1e-3);
		put_specials(dts[d], data); /* NaN, infinities, -0.0, subnormals */
		for (uint64_t i = 16; i < n; i++) {
			uint64_t row = i / cols;
			/* rows 8-15: only zeros (a whole chunk); rows 16-23: no zeros */
			int zero = row >= 8 && row < 16 ? 1 : row >= 16 && row < 24 ? 0
			                                                             : tu_rand(&seed) % 2 == 0;
			if (zero)
				memset(data + i * w, 0, w);
		}
		alcm_tensor t = view("g", dts[d], 2, shape, data);
		packed p;
		alcm_tensor_report rep;
		lossless_exact(&t, 8 * cols * w, &p, &rep); /* a chunk per 8 rows */
		/* Half-zero chunks are coded sparse; inspect's view says so. */
		assert_true(coding_of(&p, 0) & (1u << ALCM_TRANSFORM_SPARSE));
		if (dts[d] == ALCM_DTYPE_F32) {
			size_t z = zstd_len(data, n * w, 19);
			if (!(rep.stored_bytes < z))
				fail_msg("%llu bytes, zstd -19 %zu", (unsigned long long)rep.stored_bytes, z);
		}
		free(data);
		alcm_writer_free(p.w);
	}
}

/* Sparse chunks (transform 4) a reader must refuse: more nonzero elements than elements, a
 * count that differs from the bitmap's, bits set past the end, planes of the wrong length;
 * and a valid one decodes zeros where the bitmap is clear. */
static void test_sparse_hostile(void **state)
{
	(void)state;
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	const struct {
		uint64_t nz;
		uint8_t bits[2];
		size_t plane_len;
		int want;
	} cases[] = {
		{3, {0x2d, 0}, 3, ALCM_E_CORRUPT}, /* bitmap has 4 ones */
		{4, {0x2d, 0}, 4, ALCM_OK},
		{11, {0x2d, 0}, 11, ALCM_E_CORRUPT}, /* more than the 10 elements */
		{5, {0x2d, 0x04}, 5, ALCM_E_CORRUPT}, /* bit 10 set, past the end */
		{4, {0x2d, 0}, 3, ALCM_E_CORRUPT},    /* planes shorter than the count */
		{0, {0, 0}, 0, ALCM_OK},
	};
	const uint32_t vals[4] = {0x3f800000u, 0x80000000u, 0x7fc00000u, 0x00000001u};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		alcm_buf b = {NULL, 0, 0, NULL, 0};
		uint8_t t = ALCM_TRANSFORM_SPARSE, planes[4][16] = {{0}};
		for (size_t j = 0; j < 4; j++) {
			uint32_t v = (vals[j] << 1) | (vals[j] >> 31); /* rotated as transform 2 */
			for (int q = 0; q < 4; q++)
				planes[q][j] = (uint8_t)(v >> (8 * q));
		}
		assert_int_equal(alcm_buf_put(&b, &t, 1), ALCM_OK);
		assert_int_equal(alcm_buf_put_varint(&b, cases[k].nz), ALCM_OK);
		assert_int_equal(alcm_stream_put(c, &b, cases[k].bits, 2, 0), ALCM_OK);
		for (int q = 0; q < 4; q++)
			assert_int_equal(alcm_stream_put(c, &b, planes[q], cases[k].plane_len, 0), ALCM_OK);
		uint8_t out[40], scratch[64];
		memset(out, 0xee, sizeof(out));
		alcm_cursor cur = {b.p, b.len, 0};
		int st = alcm_lossless_decode(c, &cur, ALCM_DTYPE_F32, out, 10, scratch);
		if (st != cases[k].want)
			fail_msg("case %zu: status %d, want %d", k, st, cases[k].want);
		if (st == ALCM_OK) {
			size_t j = 0;
			for (int i = 0; i < 10; i++) {
				int set = (cases[k].bits[i / 8] >> (i % 8)) & 1;
				assert_int_equal(alcm_load32(out + 4 * i), set ? vals[j++] : 0u);
			}
		}
		alcm_buf_free(&b);
	}
	alcm_coder_free(c);
}

static void test_hostile_chunks(void **state)
{
	(void)state;
	uint64_t seed = 17, shape[2] = {8, 40};
	uint8_t *data;
	alcm_tensor t = make("h", ALCM_DTYPE_F32, 2, shape, &data, &seed);
	put_specials(ALCM_DTYPE_F32, data);
	/* mode 2: lossless on few distinct values, so that the chunks are palettes */
	for (int mode = 0; mode < 3; mode++) {
		if (mode == 2)
			fill_dequantized(ALCM_DTYPE_F32, data, 8 * 40, &seed);
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.mode = mode == 1 ? ALCM_MODE_REL_ERROR : ALCM_MODE_LOSSLESS;
		o.bound = 0.01;
		o.prune = mode == 1 ? 0.2 : 0;
		o.chunk_bytes = 4096;
		packed p;
		assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
		uint8_t *copy = malloc(p.len);
		for (size_t pos = 192; pos < p.len; pos++) {
			for (unsigned verify = 0; verify < 2; verify++) {
				memcpy(copy, p.buf, p.len);
				copy[pos] ^= (uint8_t)(1u << (pos % 8));
				alcm_reader *r = NULL;
				alcm_archive *a = NULL;
				int st = alcm_reader_open_memory(&r, copy, p.len, "x", NULL, NULL,
				                                 verify ? 0 : ALCM_READ_NO_VERIFY);
				if (!st)
					st = alcm_archive_open(&a, r, NULL);
				if (!st) {
					uint8_t *out = malloc(t.nbytes);
					st = alcm_archive_decode(a, 0, out, t.nbytes);
					/* Padding is outside every digest: only a full verify sees it. */
					if (verify && st == ALCM_OK)
						assert_int_not_equal(alcm_reader_verify(r, NULL), ALCM_OK);
					free(out);
				}
				alcm_archive_free(a);
				alcm_reader_free(r);
			}
		}
		free(copy);
		alcm_writer_free(p.w);
	}
	free(data);
}

static void test_allocation_failures(void **state)
{
	(void)state;
	uint64_t seed = 19, shape[2] = {4, 3000};
	uint8_t *data;
	alcm_tensor t = make("f", ALCM_DTYPE_F32, 2, shape, &data, &seed);
	for (int mode = 0; mode < 2; mode++) {
		int ok_seen = 0;
		for (long fail = 1; fail < 400 && !ok_seen; fail++) {
			tu_alloc ta;
			tu_alloc_init(&ta, fail);
			alcm_pack_options o;
			alcm_pack_options_default(&o);
			o.threads = 1;
			o.chunk_bytes = 8192;
			o.mode = mode ? ALCM_MODE_MAX_ERROR : ALCM_MODE_LOSSLESS;
			o.bound = 1e-3;
			o.prune = mode ? 0.1 : 0;
			alcm_writer *w = NULL;
			alcm_encoder *e = NULL;
			int st = alcm_writer_open_memory(&w, 0, &ta.a);
			if (!st)
				st = alcm_encoder_new(&e, w, &o, &ta.a);
			if (!st)
				st = alcm_encoder_add(e, &t, NULL);
			if (!st)
				st = alcm_encoder_finish(e);
			if (!st)
				st = alcm_writer_commit(w);
			const void *buf;
			size_t len;
			if (!st) {
				alcm_writer_memory(w, &buf, &len);
				alcm_reader *r = NULL;
				alcm_archive *a = NULL;
				st = alcm_reader_open_memory(&r, buf, len, "m", NULL, &ta.a, 0);
				if (!st)
					st = alcm_archive_open(&a, r, &ta.a);
				uint8_t *out = malloc(t.nbytes);
				if (!st)
					st = alcm_archive_decode(a, 0, out, t.nbytes);
				if (!st)
					ok_seen = 1;
				free(out);
				alcm_archive_free(a);
				alcm_reader_free(r);
			}
			alcm_encoder_free(e);
			alcm_writer_free(w);
			if (!ok_seen)
				assert_true(st == ALCM_E_NOMEM || st == ALCM_E_STATE);
			assert_int_equal(ta.live, 0);
		}
		assert_true(ok_seen);
	}
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lossless_all_dtypes),
		cmocka_unit_test(test_max_error_every_element),
		cmocka_unit_test(test_narrow_dtype_bound_sweep),
		cmocka_unit_test(test_palette_dequantized_weights),
		cmocka_unit_test(test_palette_hostile),
		cmocka_unit_test(test_palette_fallback_not_worse),
		cmocka_unit_test(test_sparse_gradients),
		cmocka_unit_test(test_sparse_hostile),
		cmocka_unit_test(test_chunking_same_values),
		cmocka_unit_test(test_huge_bounds_readable),
		cmocka_unit_test(test_rel_error_per_channel),
		cmocka_unit_test(test_snr_floor_and_bits),
		cmocka_unit_test(test_constant_and_tiny_tensors),
		cmocka_unit_test(test_threads_identical_bytes),
		cmocka_unit_test(test_decode_threads_same_result),
		cmocka_unit_test(test_integer_policy),
		cmocka_unit_test(test_lossless_not_worse_than_zstd),
		cmocka_unit_test(test_hostile_chunks),
		cmocka_unit_test(test_allocation_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
