/* alcm-bench's measurement loop catches codecs that break the rules of alcm_codec.h: sizes
 * that change between runs, bytes that do not come back, outputs left unwritten, broken
 * error bounds; it retries on E_SPACE and gives FLOAT_ONLY codecs their float tensors only.
 * Runs the whole leaderboard in-process on a generated bundle and reads the JSON it writes.
 *
 * The bench's sources are compiled into this test (they are not a library target). */
#include "testutil.h"

#define main alcm_bench_main
#include "../tools/bench/alcm_bench.c"
#undef main
#include "../tools/cli.c"
#include "../tools/cli_stdio.c"
#include "../tools/bench/bench_util.c"
#include "../tools/bench/bench_codec.c"
#include "../tools/bench/bench_builtin.c"
#include "../tools/bench/bench_stored.c"
#include "../tools/bench/bench_bundle.c"
#include "../tools/bench/bench_png.c"
#include "../tools/bench/bench_make.c"
#include "../tools/bench/bench_report.c"
#include "../tools/bench/bench_json.c"
#include "../tools/bench/bench_validate.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- misbehaving codecs: all are the identity, each with one fault --------------------- */

static int calls;

static uint64_t t_total(const alcm_codec_tensor *t, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += t[i].nbytes;
	return s;
}

static int t_copy_in(const alcm_codec_tensor *t, size_t n, void *out, size_t cap, size_t *len,
                     size_t extra)
{
	uint64_t need = t_total(t, n) + extra;
	*len = (size_t)need;
	if (need > cap)
		return ALCM_CODEC_E_SPACE;
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy((uint8_t *)out + pos, t[i].data, (size_t)t[i].nbytes);
		pos += (size_t)t[i].nbytes;
	}
	memset((uint8_t *)out + pos, 0, extra);
	return ALCM_CODEC_OK;
}

static int t_copy_out(const void *in, size_t len, const alcm_codec_tensor *t, size_t n,
                      void *const *dst, size_t skip_last)
{
	if (len < t_total(t, n))
		return ALCM_CODEC_E_CORRUPT;
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(skip_last && i == n - 1))
			memcpy(dst[i], (const uint8_t *)in + pos, (size_t)t[i].nbytes);
		pos += (size_t)t[i].nbytes;
	}
	return ALCM_CODEC_OK;
}

static int floatonly_c(void *s, const alcm_codec_tensor *t, size_t n, void *out, size_t cap,
                       size_t *len)
{
	(void)s;
	for (size_t i = 0; i < n; i++)
		if (!alcm_dtype_is_float(t[i].dtype))
			return ALCM_CODEC_E_UNSUPPORTED;
	return t_copy_in(t, n, out, cap, len, 0);
}

static int plain_c(void *s, const alcm_codec_tensor *t, size_t n, void *out, size_t cap,
                   size_t *len)
{
	(void)s;
	return t_copy_in(t, n, out, cap, len, 0);
}

static int flaky_c(void *s, const alcm_codec_tensor *t, size_t n, void *out, size_t cap,
                   size_t *len)
{
	(void)s;
	return t_copy_in(t, n, out, cap, len, (size_t)calls++); /* grows every call */
}

static int plain_d(void *s, const void *in, size_t len, const alcm_codec_tensor *t, size_t n,
                   void *const *dst)
{
	(void)s;
	return t_copy_out(in, len, t, n, dst, 0);
}

static int liar_d(void *s, const void *in, size_t len, const alcm_codec_tensor *t, size_t n,
                  void *const *dst)
{
	int rc = plain_d(s, in, len, t, n, dst);
	for (size_t i = 0; i < n; i++)
		if (t[i].nbytes > 8 && !alcm_dtype_is_float(t[i].dtype)) {
			((uint8_t *)dst[i])[3] ^= 1;
			break;
		}
	return rc;
}

static int lazy_d(void *s, const void *in, size_t len, const alcm_codec_tensor *t, size_t n,
                  void *const *dst)
{
	(void)s;
	return t_copy_out(in, len, t, n, dst, 1);
}

static int loose_d(void *s, const void *in, size_t len, const alcm_codec_tensor *t, size_t n,
                   void *const *dst)
{
	int rc = plain_d(s, in, len, t, n, dst);
	for (size_t i = 0; i < n; i++)
		if (t[i].dtype == ALCM_DTYPE_F32 && t[i].nbytes >= 4) {
			float v;
			memcpy(&v, dst[i], 4);
			v += 2e-3f;
			memcpy(dst[i], &v, 4);
			break;
		}
	return rc;
}

static uint64_t tiny_bound(void *s, const alcm_codec_tensor *t, size_t n)
{
	(void)s, (void)t, (void)n;
	return 1;
}

#define TABLE(nm, caps_, comp, decomp, bound) \
	{ALCM_CODEC_ABI_VERSION, sizeof(alcm_codec_v1), nm, "1", NULL, caps_, NULL, NULL, bound, \
	 comp, decomp, NULL}

static const alcm_codec_v1 t_floatonly = TABLE("floatonly", ALCM_CODEC_CAP_LOSSLESS |
                                               ALCM_CODEC_CAP_FLOAT_ONLY, floatonly_c, plain_d, NULL);
static const alcm_codec_v1 t_flaky = TABLE("flaky", ALCM_CODEC_CAP_LOSSLESS, flaky_c, plain_d, NULL);
static const alcm_codec_v1 t_liar = TABLE("liar", ALCM_CODEC_CAP_MAX_ERROR, plain_c, liar_d, NULL);
static const alcm_codec_v1 t_lazy = TABLE("lazy", ALCM_CODEC_CAP_LOSSLESS, plain_c, lazy_d, NULL);
static const alcm_codec_v1 t_loose = TABLE("loose", ALCM_CODEC_CAP_MAX_ERROR, plain_c, loose_d, NULL);
static const alcm_codec_v1 t_tiny = TABLE("tiny", ALCM_CODEC_CAP_LOSSLESS, plain_c, plain_d, tiny_bound);

static void add_codec(bench_codec *c, size_t *n, const alcm_codec_v1 *vt, int mode)
{
	char why[256];
	assert_int_equal(bench_codec_check(vt, why, sizeof(why)), 0);
	bench_codec *x = &c[(*n)++];
	memset(x, 0, sizeof(*x));
	snprintf(x->label, sizeof(x->label), "%s", vt->name);
	x->vt = vt;
	x->caps = vt->caps;
	x->params.struct_size = sizeof(x->params);
	x->params.mode = mode;
	x->params.max_abs_error = mode == ALCM_CODEC_MODE_MAX_ERROR ? 1e-3 : 0;
	x->params.threads = 1;
}

static const char *status_of(const bench_json *doc, const char *label, const char **error)
{
	const bench_json *res = bench_json_get(doc, "results");
	for (size_t i = 0; i < res->len; i++) {
		const bench_json *r = &res->items[i];
		if (!strcmp(bench_json_get(r, "codec")->str, label)) {
			const bench_json *e = bench_json_get(r, "error");
			*error = e ? e->str : "";
			return bench_json_get(r, "status")->str;
		}
	}
	return NULL;
}

static void test_faulty_codecs_are_caught(void **state)
{
	(void)state;
	const char *dir = tu_path("bundles");
	char out[1200], mpath[1200];
	snprintf(out, sizeof(out), "%s/mixed_stream", dir);
	snprintf(mpath, sizeof(mpath), "%s/tools/bench/bundles/manifest.txt", ALCM_SOURCE_DIR);
	assert_int_equal(bench_make_bundle("mixed_stream", out, 1), 0);

	bench_codec codecs[16];
	size_t n = 0;
	bench_builtin_get(6, &codecs[n++]); /* stored */
	add_codec(codecs, &n, &t_floatonly, ALCM_CODEC_MODE_EXACT);
	add_codec(codecs, &n, &t_flaky, ALCM_CODEC_MODE_EXACT);
	add_codec(codecs, &n, &t_liar, ALCM_CODEC_MODE_MAX_ERROR);
	add_codec(codecs, &n, &t_lazy, ALCM_CODEC_MODE_EXACT);
	add_codec(codecs, &n, &t_loose, ALCM_CODEC_MODE_MAX_ERROR);
	add_codec(codecs, &n, &t_tiny, ALCM_CODEC_MODE_EXACT);

	options o;
	memset(&o, 0, sizeof(o));
	o.bundles = "mixed_stream";
	o.bundle_dir = dir;
	o.manifest = mpath;
	o.runs = 2;
	o.threads = 1;
	o.force = 1;
	const char *json = tu_path("run.json");
	o.json = json;
	cli_quiet = 1;
	fflush(stdout);
	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	int rc = run_board(&o, codecs, n, bench_wall_now());
	fclose(stdout);
	stdout = saved;
	assert_int_equal(rc, EXIT_FAIL);

	size_t len;
	uint8_t *text = tu_read_file(json, &len);
	assert_non_null(text);
	char err[256];
	bench_json doc;
	assert_int_equal(bench_json_parse((const char *)text, len, &doc, err, sizeof(err)), 0);
	free(text);
	static const struct {
		const char *label, *status, *why;
	} want[] = {
		{"stored", "ok", ""},
		{"floatonly", "ok", ""},
		{"flaky", "failed", "not reproducible"},
		{"liar", "failed", "integer tensor"},
		{"lazy", "failed", "differs after the round trip"},
		{"loose", "failed", "breaks the bound"},
		{"tiny", "ok", ""},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *e = NULL, *st = status_of(&doc, want[i].label, &e);
		assert_non_null(st);
		if (strcmp(st, want[i].status) || !strstr(e, want[i].why))
			print_message("%s: %s '%s'\n", want[i].label, st, e);
		assert_string_equal(st, want[i].status);
		assert_non_null(strstr(e, want[i].why));
	}
	/* The document the bench wrote, failures included, is valid (not eligible). */
	bench_manifest m;
	assert_int_equal(bench_manifest_load(&m, mpath, err, sizeof(err)), 0);
	bench_buf msgs = {0};
	assert_int_equal(bench_validate(&doc, &m, &msgs), 1);
	assert_non_null(strstr(msgs.p, "flaky failed on mixed_stream"));
	bench_buf_free(&msgs);
	bench_manifest_free(&m);
	/* FLOAT_ONLY: the non-float tensors are stored raw, so the identity's ratio is 1 too. */
	const bench_json *res = bench_json_get(&doc, "results");
	for (size_t i = 0; i < res->len; i++) {
		const bench_json *r = &res->items[i];
		const char *c = bench_json_get(r, "codec")->str;
		if (!strcmp(c, "floatonly") || !strcmp(c, "stored") || !strcmp(c, "tiny"))
			assert_true(bench_json_get(r, "ratio")->num == 1.0);
	}
	bench_json_free(&doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_faulty_codecs_are_caught),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
