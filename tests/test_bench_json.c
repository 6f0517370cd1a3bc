/* alcm-bench --validate: the strict JSON parser refuses what RFC 8259 leaves open, and the
 * results validator accepts what the bench writes, recomputes every derived number, and
 * tells an invalid document (schema broken) from an ineligible run.
 *
 * The bench's sources are compiled into this test (they are not a library target). */
#include "testutil.h"

#include "../tools/cli.c"
#include "../tools/cli_stdio.c"
#include "../tools/bench/bench_util.c"
#include "../tools/bench/bench_codec.c"
#include "../tools/bench/bench_builtin.c"
#include "../tools/bench/bench_stored.c"
#include "../tools/bench/bench_bundle.c"
#include "../tools/bench/bench_report.c"
#include "../tools/bench/bench_json.c"
#include "../tools/bench/bench_validate.c"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parses(const char *text, char *err, size_t cap)
{
	bench_json v;
	int rc = bench_json_parse(text, strlen(text), &v, err, cap);
	if (!rc)
		bench_json_free(&v);
	return rc;
}

static void test_json_accepts(void **state)
{
	(void)state;
	char err[256];
	const char *text = " {\"a\": [1, -0, 2.5e-3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"],\n"
	                   "  \"b\": {}, \"c\": [], \"d\": \"\\\"\\\\\\/\"} ";
	bench_json v;
	assert_int_equal(bench_json_parse(text, strlen(text), &v, err, sizeof(err)), 0);
	const bench_json *a = bench_json_get(&v, "a");
	assert_non_null(a);
	assert_int_equal(a->len, 7);
	assert_true(a->items[0].is_integer && a->items[0].num == 1);
	assert_false(a->items[2].is_integer);
	assert_true(fabs(a->items[2].num - 2.5e-3) < 1e-18);
	assert_string_equal(a->items[6].str, "x\xc3\xa9\xf0\x9f\x98\x80\n");
	assert_string_equal(bench_json_get(&v, "d")->str, "\"\\/");
	assert_null(bench_json_get(&v, "zz"));
	bench_json_free(&v);
	char deep[41];
	memset(deep, '[', 20);
	memset(deep + 20, ']', 20);
	deep[40] = '\0';
	assert_int_equal(parses(deep, err, sizeof(err)), 0);
}

static void test_json_refuses(void **state)
{
	(void)state;
	static const struct {
		const char *text, *why;
	} bad[] = {
		{"", "value expected"},
		{"{\"a\": 1,}", "trailing comma"},
		{"[1, 2,]", "trailing comma"},
		{"{\"a\": 1, \"a\": 2}", "duplicate key"},
		{"01", "leading zero"},
		{"1.", "digit expected"},
		{".5", "bad number"},
		{"+1", "bad number"},
		{"1e", "exponent"},
		{"NaN", "bad number"},
		{"Infinity", "bad number"},
		{"1e999", "out of range"},
		{"\"\\x\"", "bad escape"},
		{"\"\\ud800\"", "unpaired high surrogate"},
		{"\"\\udc00\"", "unpaired low surrogate"},
		{"\"\\u0000\"", "NUL"},
		{"\"a\tb\"", "control character"},
		{"\"\xc3\"", "invalid UTF-8"},
		{"\"\xed\xa0\x80\"", "invalid UTF-8"},
		{"\"\xc0\xaf\"", "invalid UTF-8"},
		{"\"abc", "unterminated string"},
		{"[1 2]", "',' or ']'"},
		{"{\"a\" 1}", "':' expected"},
		{"{1: 2}", "string key"},
		{"tru", "unexpected character"},
		{"{} {}", "bytes after"},
		{"\xef\xbb\xbf{}", "byte order mark"},
	};
	char err[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parses(bad[i].text, err, sizeof(err));
		if (rc != -1 || !strstr(err, bad[i].why))
			print_message("case %zu (%s): rc %d, '%s'\n", i, bad[i].why, rc, err);
		assert_int_equal(rc, -1);
		assert_non_null(strstr(err, bad[i].why));
	}
	char deep[300];
	memset(deep, '[', 150);
	memset(deep + 150, ']', 150);
	deep[299] = '\0';
	assert_int_equal(parses(deep, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "nesting deeper"));
	assert_int_equal(parses("{\n\n  \"a\": tru}", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "line 3"));
}

/* ---- a synthetic report, as the bench would write it ------------------------------------- */

typedef struct synth {
	bench_codec codecs[2];
	bench_bundle bundles[5];
	bench_result results[10];
	bench_manifest man;
	bench_manifest_entry entries[5];
	bench_buf json;
} synth;

static void synth_make(synth *s, int runs)
{
	memset(s, 0, sizeof(*s));
	bench_builtin_get(6, &s->codecs[0]);
	assert_string_equal(s->codecs[0].label, "stored");
	bench_builtin_get(1, &s->codecs[1]);
	assert_string_equal(s->codecs[1].label, "alcm-max-error-1e-3");
	s->man.e = s->entries;
	s->man.n = 5;
	for (size_t b = 0; b < 5; b++) {
		bench_manifest_entry *e = &s->entries[b];
		snprintf(e->bundle, sizeof(e->bundle), "%s", bench_bundles[b].name);
		snprintf(e->file, sizeof(e->file), "f%zu.npz", b);
		e->size = 1000 + b;
		e->digest[0] = (uint8_t)b;
		bench_bundle *bd = &s->bundles[b];
		snprintf(bd->name, sizeof(bd->name), "%s", bench_bundles[b].name);
		bd->nf = 1;
		bd->raw_bytes = 1000000 * (b + 1);
		bd->file_bytes = bd->raw_bytes + 128;
		bd->tensors = 3;
		bench_manifest_bundle_digest(&s->man, bd->name, bd->digest);
		for (size_t c = 0; c < 2; c++) {
			bench_result *r = &s->results[c * 5 + b];
			r->raw_bytes = bd->raw_bytes;
			r->stored_bytes = c ? bd->raw_bytes / 3 + b : bd->raw_bytes;
			r->runs = runs;
			for (int k = 0; k < runs; k++) {
				r->pack_s[k] = 0.01 * (k + 1);
				r->unpack_s[k] = 0.002 * (k + 2);
				r->cpu_s[k] = 0.009 * (k + 1) + 0.001 * (double)b;
			}
			if (c) {
				r->has_float = 1;
				r->max_abs_error = 9e-4;
				r->sig2 = 10;
				r->err2 = 0.001;
			}
			bench_result_finish(r);
		}
	}
	bench_report rep;
	memset(&rep, 0, sizeof(rep));
	rep.codecs = s->codecs;
	rep.nc = 2;
	rep.bundles = s->bundles;
	rep.nb = 5;
	rep.results = s->results;
	rep.runs = runs;
	rep.threads = 1;
	memcpy(rep.manifest_digest, s->man.digest, 32);
	bench_machine_probe(&rep.machine);
	snprintf(rep.date, sizeof(rep.date), "2026-01-02T03:04:05Z");
	rep.wall_seconds = 12.5;
	bench_summarize(&rep);
	bench_write_json(&rep, &s->json);
	/* The other outputs run on the same report without trouble. */
	bench_buf md = {0}, csv = {0}, svg = {0};
	bench_write_markdown(&rep, &md);
	bench_write_csv(&rep, &csv);
	bench_write_svg(&rep, &svg);
	assert_non_null(strstr(md.p, "| 1 | stored | lossless |"));
	assert_non_null(strstr(md.p, "| 1 | alcm-max-error-1e-3 | lossy |"));
	assert_non_null(strstr(csv.p, "gradient_stream,alcm-max-error-1e-3,lossy,ok,5000000,"));
	assert_non_null(strstr(svg.p, "</svg>"));
	bench_buf_free(&md);
	bench_buf_free(&csv);
	bench_buf_free(&svg);
	free(rep.summary);
}

/* Validates text, optionally after replacing the first `from` by `to`. */
static int validate_text(synth *s, const char *from, const char *to, const char *want_msg)
{
	const char *text = s->json.p;
	char *edited = NULL;
	if (from) {
		const char *at = strstr(text, from);
		assert_non_null(at);
		size_t pre = (size_t)(at - text), fl = strlen(from), tl = strlen(to);
		edited = malloc(strlen(text) - fl + tl + 1);
		memcpy(edited, text, pre);
		memcpy(edited + pre, to, tl);
		strcpy(edited + pre + tl, at + fl);
		text = edited;
	}
	char err[256];
	bench_json doc;
	int rc = bench_json_parse(text, strlen(text), &doc, err, sizeof(err));
	if (rc) {
		print_message("parse: %s\n", err);
		free(edited);
		return -1;
	}
	bench_buf msgs = {0};
	rc = bench_validate(&doc, &s->man, &msgs);
	if (want_msg && (!msgs.p || !strstr(msgs.p, want_msg))) {
		print_message("wanted '%s' in:\n%s\n", want_msg, msgs.p ? msgs.p : "(nothing)");
		rc = -2;
	}
	bench_buf_free(&msgs);
	bench_json_free(&doc);
	free(edited);
	return rc;
}

static void test_validate_own_output(void **state)
{
	(void)state;
	synth s;
	synth_make(&s, 5);
	assert_int_equal(validate_text(&s, NULL, NULL, NULL), 0);
	/* Extensions are allowed anywhere an object is. */
	assert_int_equal(validate_text(&s, "\"schema_version\": 1,",
	                               "\"schema_version\": 1, \"x-submitter\": \"me\",", NULL), 0);
	/* An even number of runs: medians are means of the middle pair, and still check. */
	bench_buf_free(&s.json);
	synth_make(&s, 4);
	assert_int_equal(validate_text(&s, NULL, NULL, "4 runs per result"), 1);
	bench_buf_free(&s.json);
}

static void test_validate_refuses(void **state)
{
	(void)state;
	synth s;
	synth_make(&s, 5);
	static const struct {
		const char *from, *to, *msg;
	} invalid[] = {
		{"\"schema\": \"alcm-bench-results\"", "\"schema\": \"other\"", "must be"},
		{"\"schema_version\": 1", "\"schema_version\": 2", "reads version 1"},
		{"\"schema_version\": 1,", "\"schema_version\": 1, \"extra\": 0,", "unknown key \"extra\""},
		{"\"date\": \"2026-01-02T03:04:05Z\"", "\"date\": \"yesterday\"", "YYYY-MM-DD"},
		{"\"cores\": ", "\"cores\": -", "non-negative integer"},
		{"\"runs\": 5,", "\"runs\": 0,", "settings.runs"},
		{"\"stored_bytes\": 1000000,", "\"stored_bytes\": 900000,", "not raw_bytes / stored_bytes"},
		{"\"caq\": 0.9", "\"caq\": 0.8", "not ratio / (cpu_seconds + 1)"},
		{"\"caq_spread_pct\": ", "\"caq_spread_pct\": 1", "caq_spread_pct"},
		{"\"pack_mb_s\": ", "\"pack_mb_s\": 1", "pack_mb_s"},
		{"\"max_abs_error\": 0.0009,", "\"max_abs_error\": 0.002,", "exceeds the codec's bound"},
		{"\"label\": \"alcm-max-error-1e-3\"", "\"label\": \"stored\"", "used twice"},
		{"\"kind\": \"lossy\", \"caps\"", "\"kind\": \"lossless\", \"caps\"", "kind must be"},
		{"\"source\": \"builtin\"", "\"source\": \"plugin\"", "plugin_digest"},
		{"\"codec\": \"stored\", \"bundle\"", "\"codec\": \"nope\", \"bundle\"", "must name entries"},
		{"\"status\": \"ok\"", "\"status\": \"maybe\"", "status must be"},
		{"\"rank\": 1", "\"rank\": null", "rank is given exactly"},
		{"\"bundles\": 5, \"ratio\"", "\"bundles\": 4, \"ratio\"", "the results have 5 ok"},
	};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		int rc = validate_text(&s, invalid[i].from, invalid[i].to, invalid[i].msg);
		if (rc != 2)
			print_message("case %zu (%s): rc %d\n", i, invalid[i].msg, rc);
		assert_int_equal(rc, 2);
	}
	/* Valid documents that are not leaderboard runs. */
	static const struct {
		const char *from, *to, *msg;
	} inelig[] = {
		{"\"quick\": false", "\"quick\": true", "a --quick run"},
		{"\"threads\": 1", "\"threads\": 2", "the leaderboard runs with 1"},
		{"\"digest\": \"", "\"digest\": \"0", "was not the manifest's"},
	};
	for (size_t i = 0; i < sizeof(inelig) / sizeof(inelig[0]); i++) {
		const char *to = inelig[i].to;
		char buf[128];
		if (!strcmp(inelig[i].msg, "was not the manifest's")) {
			/* Keep 64 hex digits: replace the first digest digit. */
			const char *at = strstr(s.json.p, "\"digest\": \"") + 11;
			snprintf(buf, sizeof(buf), "\"digest\": \"%c", *at == '0' ? '1' : '0');
			char from[32];
			snprintf(from, sizeof(from), "\"digest\": \"%c", *at);
			assert_int_equal(validate_text(&s, from, buf, inelig[i].msg), 1);
			continue;
		}
		assert_int_equal(validate_text(&s, inelig[i].from, to, inelig[i].msg), 1);
	}
	bench_buf_free(&s.json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_accepts),
		cmocka_unit_test(test_json_refuses),
		cmocka_unit_test(test_validate_own_output),
		cmocka_unit_test(test_validate_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
