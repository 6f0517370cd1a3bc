/* alcm-bench codecs: the built-in codecs and the sample plugin keep the rules of
 * include/alcm_codec.h (round trips, bounds, integer tensors exact, E_SPACE, corrupt input
 * refused), the table checks refuse bad plugins, the manifest parser is strict, and the
 * generated bundles are byte-identical to the committed manifest.
 *
 * The bench's sources are compiled into this test (they are not a library target), so that
 * it needs nothing from tools/bench/CMakeLists.txt. */
#include "testutil.h"

#include "../tools/cli.c"
#include "../tools/cli_stdio.c"
#include "../tools/bench/bench_util.c"
#include "../tools/bench/bench_codec.c"
#include "../tools/bench/bench_builtin.c"
#include "../tools/bench/bench_stored.c"
#include "../tools/bench/bench_bundle.c"
#include "../tools/bench/bench_png.c"
#include "../tools/bench/bench_make.c"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT 8

typedef struct fixture {
	alcm_codec_tensor t[NT];
	alcm_codec_tensor d[NT];
	void *dst[NT];
	uint8_t *buf[NT];
} fixture;

static void add(fixture *f, size_t i, const char *name, int dtype, uint32_t ndim, uint64_t s0,
                uint64_t s1, uint64_t *rng)
{
	alcm_codec_tensor *t = &f->t[i];
	memset(t, 0, sizeof(*t));
	t->name = name;
	t->name_len = strlen(name);
	t->dtype = dtype;
	t->ndim = ndim;
	t->shape[0] = s0;
	t->shape[1] = s1;
	uint64_t el = ndim == 0 ? 1 : ndim == 1 ? s0 : s0 * s1;
	size_t es = alcm_dtype_size(dtype);
	t->nbytes = el * es;
	uint8_t *p = calloc(1, (size_t)t->nbytes + 1);
	for (uint64_t k = 0; k < el; k++) {
		double g = 0.1 * tu_gauss(rng);
		if (dtype == ALCM_DTYPE_F32) {
			float v = (float)g;
			if (k == 5)
				v = NAN;
			if (k == 6)
				v = INFINITY;
			memcpy(p + 4 * k, &v, 4);
		} else if (dtype == ALCM_DTYPE_BF16) {
			uint16_t h = bench_f32_to_bf16((float)g);
			memcpy(p + 2 * k, &h, 2);
		} else if (dtype == ALCM_DTYPE_F16) {
			uint16_t h = bench_f32_to_f16((float)g);
			memcpy(p + 2 * k, &h, 2);
		} else if (dtype == ALCM_DTYPE_BOOL) {
			p[k] = (uint8_t)(tu_rand(rng) & 1);
		} else {
			uint64_t v = tu_rand(rng) % 1000;
			memcpy(p + es * k, &v, es);
		}
	}
	t->data = p;
	f->buf[i] = p;
	f->d[i] = *t;
	f->d[i].data = NULL;
	f->dst[i] = calloc(1, (size_t)t->nbytes + 1);
}

static void fixture_make(fixture *f)
{
	uint64_t rng = 42;
	memset(f, 0, sizeof(*f));
	add(f, 0, "w", ALCM_DTYPE_F32, 2, 64, 33, &rng);
	add(f, 1, "w.bf16", ALCM_DTYPE_BF16, 2, 17, 8, &rng);
	add(f, 2, "h", ALCM_DTYPE_F16, 1, 40, 0, &rng);
	add(f, 3, "step", ALCM_DTYPE_I64, 0, 0, 0, &rng);
	add(f, 4, "counts", ALCM_DTYPE_I64, 1, 10, 0, &rng);
	add(f, 5, "mask", ALCM_DTYPE_BOOL, 1, 13, 0, &rng);
	add(f, 6, "empty", ALCM_DTYPE_U8, 1, 0, 0, &rng);
	add(f, 7, "ids", ALCM_DTYPE_I32, 2, 3, 5, &rng);
}

static void fixture_free(fixture *f)
{
	for (int i = 0; i < NT; i++) {
		free(f->buf[i]);
		free(f->dst[i]);
	}
}

static double value(int dtype, const uint8_t *p, size_t i)
{
	uint16_t h;
	float v;
	if (dtype == ALCM_DTYPE_F32) {
		memcpy(&v, p + 4 * i, 4);
		return v;
	}
	memcpy(&h, p + 2 * i, 2);
	return dtype == ALCM_DTYPE_BF16 ? bench_bf16_to_f32(h) : bench_f16_to_f32(h);
}

/* Round trip of one configuration; checks what its mode promises. */
static void roundtrip(bench_codec *c, fixture *f)
{
	char err[256];
	assert_int_equal(bench_codec_open(c, err, sizeof(err)), 0);
	uint64_t b = c->vt->compress_bound ? c->vt->compress_bound(c->state, f->t, NT) : 0;
	size_t cap = b ? (size_t)b : 1 << 20;
	uint8_t *out = malloc(cap);
	size_t len = 0, len2 = 0;
	assert_int_equal(c->vt->compress(c->state, f->t, NT, out, cap, &len), ALCM_CODEC_OK);
	assert_true(len > 0 && len <= cap);
	/* Deterministic: a second call gives the same size. */
	uint8_t *out2 = malloc(cap);
	assert_int_equal(c->vt->compress(c->state, f->t, NT, out2, cap, &len2), ALCM_CODEC_OK);
	assert_int_equal(len, len2);
	free(out2);
	assert_int_equal(c->vt->decompress(c->state, out, len, f->d, NT, f->dst), ALCM_CODEC_OK);
	for (int i = 0; i < NT; i++) {
		const alcm_codec_tensor *t = &f->t[i];
		if (!bench_codec_lossy(c) || !alcm_dtype_is_float(t->dtype)) {
			assert_memory_equal(t->data, f->dst[i], (size_t)t->nbytes ? (size_t)t->nbytes : 1);
			continue;
		}
		size_t n = (size_t)(t->nbytes / alcm_dtype_size(t->dtype));
		for (size_t k = 0; k < n; k++) {
			double x = value(t->dtype, t->data, k), y = value(t->dtype, f->dst[i], k);
			if (!isfinite(x)) {
				assert_memory_equal((const uint8_t *)t->data + 4 * k,
				                    (uint8_t *)f->dst[i] + 4 * k, 4);
				continue;
			}
			if (c->params.mode == ALCM_CODEC_MODE_MAX_ERROR)
				assert_true(fabs(x - y) <= c->params.max_abs_error);
		}
	}
	/* Truncated input, and a byte too many, are refused, never crash. */
	assert_int_equal(c->vt->decompress(c->state, out, len - 1, f->d, NT, f->dst),
	                 ALCM_CODEC_E_CORRUPT);
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, out, len);
	longer[len] = 0;
	assert_int_equal(c->vt->decompress(c->state, longer, len + 1, f->d, NT, f->dst),
	                 ALCM_CODEC_E_CORRUPT);
	free(longer);
	/* An output buffer too small gives E_SPACE. */
	size_t need = 0;
	assert_int_equal(c->vt->compress(c->state, f->t, NT, out, 16, &need), ALCM_CODEC_E_SPACE);
	free(out);
	bench_codec_close(c);
}

static void test_builtin_roundtrips(void **state)
{
	(void)state;
	fixture f;
	fixture_make(&f);
	assert_true(bench_builtin_count() >= 7);
	for (size_t i = 0; i < bench_builtin_count(); i++) {
		bench_codec c;
		bench_builtin_get(i, &c);
		char why[256];
		assert_int_equal(bench_codec_check(c.vt, why, sizeof(why)), 0);
		roundtrip(&c, &f);
	}
	fixture_free(&f);
}

/* alcm's archive is digest-checked: a flipped payload byte is corruption, not garbage. */
static void test_alcm_detects_damage(void **state)
{
	(void)state;
	fixture f;
	fixture_make(&f);
	bench_codec c;
	bench_builtin_get(0, &c);
	assert_string_equal(c.label, "alcm-lossless");
	char err[256];
	assert_int_equal(bench_codec_open(&c, err, sizeof(err)), 0);
	size_t cap = (size_t)c.vt->compress_bound(c.state, f.t, NT), len;
	uint8_t *out = malloc(cap);
	assert_int_equal(c.vt->compress(c.state, f.t, NT, out, cap, &len), ALCM_CODEC_OK);
	out[len / 3] ^= 0x40;
	assert_int_equal(c.vt->decompress(c.state, out, len, f.d, NT, f.dst), ALCM_CODEC_E_CORRUPT);
	assert_true(strlen(c.vt->detail(c.state)) > 0);
	free(out);
	bench_codec_close(&c);
	fixture_free(&f);
}

static void test_modes_refused(void **state)
{
	(void)state;
	alcm_codec_params p = {sizeof(p), ALCM_CODEC_MODE_MAX_ERROR, 1e-3, 0, 0, 1};
	void *s = NULL;
	assert_int_equal(bench_stored_codec()->create(&s, &p), ALCM_CODEC_E_UNSUPPORTED);
	assert_int_equal(bench_zstd_codec()->create(&s, &p), ALCM_CODEC_E_UNSUPPORTED);
	assert_int_equal(bench_zlib_codec()->create(&s, &p), ALCM_CODEC_E_UNSUPPORTED);
	p.mode = ALCM_CODEC_MODE_EXACT;
	p.level = 99;
	assert_int_equal(bench_zstd_codec()->create(&s, &p), ALCM_CODEC_E_ARG);
	assert_int_equal(bench_zlib_codec()->create(&s, &p), ALCM_CODEC_E_ARG);
}

static alcm_codec_v1 good_table(void)
{
	alcm_codec_v1 t = *bench_stored_codec();
	t.name = "mine";
	return t;
}

static void test_table_checks(void **state)
{
	(void)state;
	char why[256];
	alcm_codec_v1 t = good_table();
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), 0);
	assert_int_equal(bench_codec_check(NULL, why, sizeof(why)), -1);
	t.abi_version = 2;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "ABI version 2"));
	t = good_table();
	t.struct_size = 16;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	const char *names[] = {"", "Upper", "9lives", "has space", "waaaaaaaaaaaaaaaaaaaaaaaaaaaaaaay"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		t = good_table();
		t.name = names[i];
		assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	}
	t = good_table();
	t.version = "";
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	t = good_table();
	t.caps = ALCM_CODEC_CAP_FLOAT_ONLY;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	t = good_table();
	t.caps |= 0x100;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	t = good_table();
	t.decompress = NULL;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1);
	t = good_table();
	t.create = NULL;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), -1); /* destroy without create */
	t.destroy = NULL;
	assert_int_equal(bench_codec_check(&t, why, sizeof(why)), 0);
}

static void test_plugins(void **state)
{
	(void)state;
	char err[512], path[1024];
	bench_codec c;
	assert_int_equal(bench_plugin_load(&c, "/nonexistent/x.so", err, sizeof(err)), EXIT_IO);
	free(c.plugin_path);
	assert_int_equal(bench_plugin_load(&c, "/nonexistent/x.so,bits=99", err, sizeof(err)),
	                 EXIT_USAGE);
	free(c.plugin_path);
	assert_int_equal(bench_plugin_load(&c, "/nonexistent/x.so,max-error=-1", err, sizeof(err)),
	                 EXIT_USAGE);
	free(c.plugin_path);
	snprintf(path, sizeof(path), "%s/../lib/alcm_codec_bshuf_zlib.so", ALCM_BIN_DIR);
	if (!tu_file_exists(path)) {
		print_message("sample plugin not built (%s): load test skipped\n", path);
		return;
	}
	assert_int_equal(bench_plugin_load(&c, path, err, sizeof(err)), 0);
	assert_string_equal(c.label, "bshuf-zlib");
	assert_true(bench_is_hex64(c.plugin_digest));
	fixture f;
	fixture_make(&f);
	roundtrip(&c, &f);
	fixture_free(&f);
	free(c.plugin_path);
	char spec[1100];
	snprintf(spec, sizeof(spec), "%s,level=9", path);
	assert_int_equal(bench_plugin_load(&c, spec, err, sizeof(err)), 0);
	assert_string_equal(c.label, "bshuf-zlib-9");
	free(c.plugin_path);
	snprintf(spec, sizeof(spec), "%s,bits=8", path);
	assert_int_equal(bench_plugin_load(&c, spec, err, sizeof(err)), EXIT_UNSUPPORTED);
	free(c.plugin_path);
}

static int manifest_from(const char *text, bench_manifest *m, char *err, size_t cap)
{
	const char *p = tu_path("manifest.txt");
	tu_write_file(p, text, strlen(text));
	return bench_manifest_load(m, p, err, cap);
}

static void test_manifest_parser(void **state)
{
	(void)state;
	char err[512];
	bench_manifest m;
	const char *d = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char good[512];
	snprintf(good, sizeof(good), "# comment\nalcm-bench-manifest 1\n\nmixed_stream a.npz 10 %s\n"
	         "gradient_stream b.npy 0 %s\n", d, d);
	assert_int_equal(manifest_from(good, &m, err, sizeof(err)), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(m.e[0].size, 10);
	uint8_t bd[32];
	assert_int_equal(bench_manifest_bundle_digest(&m, "mixed_stream", bd), 0);
	assert_int_equal(bench_manifest_bundle_digest(&m, "text_medium", bd), -1);
	bench_manifest_free(&m);
	const char *bad[] = {
		"",
		"alcm-bench-manifest 2\n",
		"alcm-bench-manifest 1\nmixed_stream a.npz 10\n",
		"alcm-bench-manifest 1\nno_bundle a.npz 10 %s\n",
		"alcm-bench-manifest 1\nmixed_stream ../a.npz 10 %s\n",
		"alcm-bench-manifest 1\nmixed_stream a.npz -1 %s\n",
		"alcm-bench-manifest 1\nmixed_stream a.npz 10 %s extra\n",
		"alcm-bench-manifest 1\nmixed_stream a.npz 10 %s\nmixed_stream a.npz 10 %s\n",
		"alcm-bench-manifest 1\r\nmixed_stream a.npz 10 %s\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text), bad[i], d, d);
		assert_int_equal(manifest_from(text, &m, err, sizeof(err)), EXIT_MALFORMED);
	}
	snprintf(good, sizeof(good), "alcm-bench-manifest 1\nmixed_stream a.npz 10 %.63sX\n", d);
	assert_int_equal(manifest_from(good, &m, err, sizeof(err)), EXIT_MALFORMED);
	assert_non_null(strstr(err, "line 2"));
}

/* The generated bundles are the committed manifest's bytes, and a bundle that differs is
 * refused with a digest error. */
static void test_generated_bundles_match_manifest(void **state)
{
	(void)state;
	char err[512], mpath[1024];
	snprintf(mpath, sizeof(mpath), "%s/tools/bench/bundles/manifest.txt", ALCM_SOURCE_DIR);
	bench_manifest m;
	assert_int_equal(bench_manifest_load(&m, mpath, err, sizeof(err)), 0);
	const char *dir = tu_path("bundles");
	const char *names[] = {"mixed_stream", "gradient_stream"};
	for (int k = 0; k < 2; k++) {
		char out[1200];
		snprintf(out, sizeof(out), "%s/%s", dir, names[k]);
		assert_int_equal(bench_make_bundle(names[k], out, 1), 0);
		bench_bundle b;
		int rc = bench_bundle_load(&b, &m, names[k], dir, err, sizeof(err));
		if (rc)
			print_message("%s\n", err);
		assert_int_equal(rc, 0);
		assert_true(b.nf == 6 && b.raw_bytes > 3000000);
		bench_bundle_free(&b);
	}
	/* Another seed: other bytes, refused. */
	char out[1200];
	snprintf(out, sizeof(out), "%s/mixed_stream", dir);
	assert_int_equal(bench_make_bundle("mixed_stream", out, 2), 0);
	bench_bundle b;
	assert_int_equal(bench_bundle_load(&b, &m, "mixed_stream", dir, err, sizeof(err)), EXIT_DIGEST);
	assert_non_null(strstr(err, "refusing bundle 'mixed_stream'"));
	bench_bundle_free(&b);
	bench_manifest_free(&m);
}

static void test_png(void **state)
{
	(void)state;
	/* A 2x1 RGB PNG with filter 1 (sub), made here: zlib stream of the filtered rows. */
	uint8_t raw[] = {1, 10, 20, 30, 5, 5, 5};
	uint8_t z[64];
	uLongf zl = sizeof(z);
	assert_int_equal(compress2(z, &zl, raw, sizeof(raw), 9), Z_OK);
	uint8_t png[256];
	size_t n = 0;
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	memcpy(png, sig, 8);
	n = 8;
#define CHUNK(type, data, len) \
	do { \
		uint32_t l_ = (uint32_t)(len); \
		png[n] = (uint8_t)(l_ >> 24); png[n + 1] = (uint8_t)(l_ >> 16); \
		png[n + 2] = (uint8_t)(l_ >> 8); png[n + 3] = (uint8_t)l_; \
		memcpy(png + n + 4, type, 4); \
		if (l_) memcpy(png + n + 8, data, l_); \
		uint32_t c_ = (uint32_t)crc32(0, png + n + 4, l_ + 4); \
		png[n + 8 + l_] = (uint8_t)(c_ >> 24); png[n + 9 + l_] = (uint8_t)(c_ >> 16); \
		png[n + 10 + l_] = (uint8_t)(c_ >> 8); png[n + 11 + l_] = (uint8_t)c_; \
		n += 12 + l_; \
	} while (0)
	uint8_t ihdr[13] = {0, 0, 0, 2, 0, 0, 0, 1, 8, 2, 0, 0, 0};
	CHUNK("IHDR", ihdr, 13);
	CHUNK("IDAT", z, zl);
	static const uint8_t none[1] = {0};
	CHUNK("IEND", none, 0);
	uint8_t *rgba;
	uint32_t w, h;
	char err[128];
	assert_int_equal(bench_png_decode(png, n, &rgba, &w, &h, err, sizeof(err)), 0);
	assert_int_equal(w, 2);
	assert_int_equal(h, 1);
	uint8_t want[8] = {10, 20, 30, 255, 15, 25, 35, 255};
	assert_memory_equal(rgba, want, 8);
	free(rgba);
	png[20] ^= 1; /* IHDR byte: CRC mismatch */
	assert_int_equal(bench_png_decode(png, n, &rgba, &w, &h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "CRC"));
	assert_int_equal(bench_png_decode(png, 30, &rgba, &w, &h, err, sizeof(err)), -1);
#undef CHUNK
}

static void test_rng_is_exact(void **state)
{
	(void)state;
	/* Fixed outputs: the generators' bytes depend on these exact values. */
	bench_rng r = {1};
	assert_true(bench_rng_u64(&r) == 0x910a2dec89025cc1ull);
	r.s = 7;
	double u = bench_rng_uniform(&r);
	assert_true(u > 0 && u < 1);
	double g = 0;
	for (int i = 0; i < 10000; i++)
		g += bench_rng_gauss(&r);
	assert_true(fabs(g / 10000) < 0.05);
	assert_int_equal(bench_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(bench_f32_to_bf16(1.0f), 0x3f80);
	assert_true(bench_f16_to_f32(0x3555) > 0.333f && bench_f16_to_f32(0x3555) < 0.334f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_roundtrips),
		cmocka_unit_test(test_alcm_detects_damage),
		cmocka_unit_test(test_modes_refused),
		cmocka_unit_test(test_table_checks),
		cmocka_unit_test(test_plugins),
		cmocka_unit_test(test_manifest_parser),
		cmocka_unit_test(test_generated_bundles_match_manifest),
		cmocka_unit_test(test_png),
		cmocka_unit_test(test_rng_is_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
