/* alcm-bench --validate: checks a results document against the schema of
 * spec/leaderboard.md (types, required and unknown keys, references between sections),
 * recomputes every derived number from the raw ones it was derived from, then says
 * whether the run is eligible for the leaderboard. */
#include "bench_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct vctx {
	bench_buf *msgs;
	int errors, inelig;
} vctx;

static void verr(vctx *v, const bench_json *at, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void verr(vctx *v, const bench_json *at, const char *path, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (v->errors < 50)
		bench_buf_printf(v->msgs, "line %zu: %s: %s\n", at ? at->line : (size_t)1, path, msg);
	v->errors++;
}

static void vinelig(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vinelig(vctx *v, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (v->inelig < 50)
		bench_buf_printf(v->msgs, "not eligible: %s\n", msg);
	v->inelig++;
}

enum ftype {
	F_STR, F_STR_NULL, F_UINT, F_INT, F_UINT_NULL, F_NUM, F_NUM_NULL, F_BOOL, F_OBJ, F_ARR,
	F_HEX, F_HEX_NULL
};

typedef struct field {
	const char *key;
	int type;
	int required;
} field;

static const char *type_name(int t)
{
	switch (t) {
	case F_STR: return "a string";
	case F_STR_NULL: return "a string or null";
	case F_UINT: return "a non-negative integer";
	case F_INT: return "an integer";
	case F_UINT_NULL: return "a non-negative integer or null";
	case F_NUM: return "a finite non-negative number";
	case F_NUM_NULL: return "a non-negative number or null";
	case F_BOOL: return "true or false";
	case F_OBJ: return "an object";
	case F_ARR: return "an array";
	case F_HEX: return "64 lowercase hex digits";
	default: return "64 lowercase hex digits or null";
	}
}

static int type_ok(const bench_json *j, int t)
{
	int isnull = j->type == BJ_NULL;
	int isnum = j->type == BJ_NUMBER;
	int isuint = isnum && j->is_integer && j->num >= 0 && j->num <= 9007199254740992.0;
	switch (t) {
	case F_STR: return j->type == BJ_STRING && j->len > 0 && j->len <= 512;
	case F_STR_NULL: return isnull || (j->type == BJ_STRING && j->len <= 512);
	case F_UINT: return isuint;
	case F_INT: return isnum && j->is_integer && fabs(j->num) <= 9007199254740992.0;
	case F_UINT_NULL: return isnull || isuint;
	case F_NUM: return isnum && j->num >= 0;
	case F_NUM_NULL: return isnull || (isnum && j->num >= 0);
	case F_BOOL: return j->type == BJ_TRUE || j->type == BJ_FALSE;
	case F_OBJ: return j->type == BJ_OBJECT;
	case F_ARR: return j->type == BJ_ARRAY;
	case F_HEX: return j->type == BJ_STRING && bench_is_hex64(j->str);
	default: return isnull || (j->type == BJ_STRING && bench_is_hex64(j->str));
	}
}

/* Checks an object's keys: required ones present, each of its type, no unknown key except
 * extensions ("x-" prefix). @return 0 if all good. */
static int check_obj(vctx *v, const bench_json *o, const char *path, const field *f, size_t nf)
{
	int bad = 0;
	if (o->type != BJ_OBJECT) {
		verr(v, o, path, "must be an object");
		return -1;
	}
	for (size_t i = 0; i < nf; i++) {
		const bench_json *x = bench_json_get(o, f[i].key);
		if (!x) {
			if (f[i].required) {
				verr(v, o, path, "missing key \"%s\"", f[i].key);
				bad = -1;
			}
			continue;
		}
		if (!type_ok(x, f[i].type)) {
			verr(v, x, path, "\"%s\" must be %s", f[i].key, type_name(f[i].type));
			bad = -1;
		}
	}
	for (size_t k = 0; k < o->len; k++) {
		size_t i = 0;
		while (i < nf && strcmp(o->keys[k], f[i].key))
			i++;
		if (i == nf && strncmp(o->keys[k], "x-", 2)) {
			verr(v, &o->items[k], path, "unknown key \"%.60s\" (extensions start with \"x-\")",
			     o->keys[k]);
			bad = -1;
		}
	}
	return bad;
}

static double num(const bench_json *o, const char *k)
{
	const bench_json *x = bench_json_get(o, k);
	return x && x->type == BJ_NUMBER ? x->num : NAN;
}

static const char *str(const bench_json *o, const char *k)
{
	const bench_json *x = bench_json_get(o, k);
	return x && x->type == BJ_STRING ? x->str : NULL;
}

static int close_to(double got, double want)
{
	if (!isfinite(got) || !isfinite(want))
		return 0;
	return fabs(got - want) <= 1e-6 * fmax(fabs(want), 1e-12) + 1e-12;
}

static int date_ok(const char *s)
{
	/* YYYY-MM-DDTHH:MM:SSZ */
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
	if (strlen(s) != sizeof(pat) - 1)
		return 0;
	for (size_t i = 0; pat[i]; i++)
		if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i])
			return 0;
	return 1;
}

static const field top_fields[] = {
	{"schema", F_STR, 1}, {"schema_version", F_UINT, 1}, {"generator", F_OBJ, 1},
	{"date", F_STR, 1}, {"machine", F_OBJ, 1}, {"settings", F_OBJ, 1},
	{"wall_seconds", F_NUM, 1}, {"bundles", F_ARR, 1}, {"codecs", F_ARR, 1},
	{"results", F_ARR, 1}, {"summary", F_ARR, 1},
};
static const field gen_fields[] = {
	{"name", F_STR, 1}, {"version", F_STR, 1}, {"library", F_STR, 0}, {"zstd", F_STR, 0},
	{"zlib", F_STR, 0},
};
static const field machine_fields[] = {
	{"cpu", F_STR, 1}, {"cores", F_UINT, 1}, {"memory_bytes", F_UINT, 1}, {"arch", F_STR, 1},
	{"kernel", F_STR, 1}, {"os", F_STR, 1}, {"compiler", F_STR, 1},
};
static const field settings_fields[] = {
	{"runs", F_UINT, 1}, {"threads", F_UINT, 1}, {"quick", F_BOOL, 1},
	{"manifest_digest", F_HEX, 1},
};
static const field bundle_fields[] = {
	{"name", F_STR, 1}, {"files", F_UINT, 1}, {"tensors", F_UINT, 1}, {"raw_bytes", F_UINT, 1},
	{"file_bytes", F_UINT, 1}, {"digest", F_HEX, 1},
};
static const field codec_fields[] = {
	{"label", F_STR, 1}, {"name", F_STR, 1}, {"version", F_STR, 1},
	{"description", F_STR_NULL, 1}, {"source", F_STR, 1}, {"plugin_digest", F_HEX_NULL, 1},
	{"kind", F_STR, 1}, {"caps", F_ARR, 1}, {"params", F_OBJ, 1},
};
static const field params_fields[] = {
	{"mode", F_STR, 1}, {"max_abs_error", F_NUM, 1}, {"bits", F_UINT, 1}, {"level", F_INT, 1},
};
static const field failed_fields[] = {
	{"codec", F_STR, 1}, {"bundle", F_STR, 1}, {"status", F_STR, 1}, {"error", F_STR, 1},
};
static const field ok_fields[] = {
	{"codec", F_STR, 1}, {"bundle", F_STR, 1}, {"status", F_STR, 1},
	{"raw_bytes", F_UINT, 1}, {"stored_bytes", F_UINT, 1}, {"ratio", F_NUM, 1},
	{"pack_mb_s", F_NUM, 1}, {"unpack_mb_s", F_NUM, 1}, {"cpu_seconds", F_NUM, 1},
	{"caq", F_NUM, 1}, {"caq_spread_pct", F_NUM, 1}, {"max_abs_error", F_NUM, 1},
	{"snr_db", F_NUM_NULL, 1}, {"runs", F_OBJ, 1},
};
static const field runs_fields[] = {
	{"pack_seconds", F_ARR, 1}, {"unpack_seconds", F_ARR, 1}, {"cpu_seconds", F_ARR, 1},
	{"caq", F_ARR, 1},
};
static const field summary_fields[] = {
	{"codec", F_STR, 1}, {"kind", F_STR, 1}, {"rank", F_UINT_NULL, 1}, {"bundles", F_UINT, 1},
	{"ratio", F_NUM_NULL, 1}, {"pack_mb_s", F_NUM_NULL, 1}, {"unpack_mb_s", F_NUM_NULL, 1},
	{"caq", F_NUM_NULL, 1}, {"caq_spread_pct", F_NUM_NULL, 1},
	{"max_abs_error", F_NUM_NULL, 1}, {"snr_db", F_NUM_NULL, 1},
};
#define NF(a) (sizeof(a) / sizeof(a[0]))

static int index_of(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (names[i] && !strcmp(names[i], s))
			return (int)i;
	return -1;
}

/* Reads a runs array of `want` finite non-negative numbers into out. */
static int runs_array(vctx *v, const bench_json *a, const char *path, int want, double *out)
{
	if ((int)a->len != want) {
		verr(v, a, path, "holds %zu values, settings.runs is %d", a->len, want);
		return -1;
	}
	for (size_t i = 0; i < a->len; i++) {
		if (a->items[i].type != BJ_NUMBER || !(a->items[i].num >= 0)) {
			verr(v, &a->items[i], path, "values must be non-negative numbers");
			return -1;
		}
		out[i] = a->items[i].num;
	}
	return 0;
}

typedef struct codec_info {
	const char *label;
	int lossy, mode_max;
	double bound;
} codec_info;

static void check_result(vctx *v, const bench_json *r, const char *path, int runs,
                         const bench_json *bundle, const codec_info *ci)
{
	const char *status = str(r, "status");
	if (status && !strcmp(status, "failed")) {
		check_obj(v, r, path, failed_fields, NF(failed_fields));
		return;
	}
	if (!status || strcmp(status, "ok")) {
		verr(v, bench_json_get(r, "status"), path, "status must be \"ok\" or \"failed\"");
		return;
	}
	if (check_obj(v, r, path, ok_fields, NF(ok_fields)))
		return;
	const bench_json *rj = bench_json_get(r, "runs");
	if (check_obj(v, rj, path, runs_fields, NF(runs_fields)))
		return;
	double ps[BENCH_MAX_RUNS], us[BENCH_MAX_RUNS], cs[BENCH_MAX_RUNS], qs[BENCH_MAX_RUNS];
	if (runs_array(v, bench_json_get(rj, "pack_seconds"), path, runs, ps) ||
	    runs_array(v, bench_json_get(rj, "unpack_seconds"), path, runs, us) ||
	    runs_array(v, bench_json_get(rj, "cpu_seconds"), path, runs, cs) ||
	    runs_array(v, bench_json_get(rj, "caq"), path, runs, qs))
		return;
	double raw = num(r, "raw_bytes"), stored = num(r, "stored_bytes"), ratio = num(r, "ratio");
	if (bundle && raw != num(bundle, "raw_bytes"))
		verr(v, r, path, "raw_bytes %.0f differs from the bundle's %.0f", raw,
		     num(bundle, "raw_bytes"));
	if (!(stored > 0) || !close_to(ratio, raw / stored))
		verr(v, r, path, "ratio %.10g is not raw_bytes / stored_bytes", ratio);
	double pm = fmax(bench_median(ps, runs), 1e-9), um = fmax(bench_median(us, runs), 1e-9);
	if (!close_to(num(r, "pack_mb_s"), raw / 1e6 / pm))
		verr(v, r, path, "pack_mb_s is not raw_bytes / 1e6 / median(pack_seconds)");
	if (!close_to(num(r, "unpack_mb_s"), raw / 1e6 / um))
		verr(v, r, path, "unpack_mb_s is not raw_bytes / 1e6 / median(unpack_seconds)");
	double cpu = num(r, "cpu_seconds"), caq = num(r, "caq");
	if (!close_to(cpu, bench_median(cs, runs)))
		verr(v, r, path, "cpu_seconds is not the median of runs.cpu_seconds");
	if (!close_to(caq, ratio / (cpu + 1)))
		verr(v, r, path, "caq %.10g is not ratio / (cpu_seconds + 1)", caq);
	double lo = INFINITY, hi = -INFINITY;
	for (int i = 0; i < runs; i++) {
		if (!close_to(qs[i], ratio / (cs[i] + 1)))
			verr(v, r, path, "runs.caq[%d] is not ratio / (runs.cpu_seconds[%d] + 1)", i, i);
		lo = fmin(lo, qs[i]);
		hi = fmax(hi, qs[i]);
	}
	double spread = caq > 0 ? (hi - lo) / caq * 100 : 0;
	if (!(fabs(num(r, "caq_spread_pct") - spread) <= 1e-6 * fmax(spread, 1) ))
		verr(v, r, path, "caq_spread_pct is not (max - min) / caq * 100 of runs.caq");
	double maxe = num(r, "max_abs_error");
	const bench_json *snr = bench_json_get(r, "snr_db");
	if (ci && !ci->lossy && (maxe != 0 || snr->type != BJ_NULL))
		verr(v, r, path, "a lossless codec must have max_abs_error 0 and snr_db null");
	if (ci && ci->mode_max && !(maxe <= ci->bound * (1 + 1e-9)))
		verr(v, r, path, "max_abs_error %.6g exceeds the codec's bound %.6g", maxe, ci->bound);
}

static double geomean_of(const bench_json *results, const char *label, const char *key,
                         int *count)
{
	double s = 0;
	int n = 0;
	for (size_t i = 0; i < results->len; i++) {
		const bench_json *r = &results->items[i];
		const char *c = str(r, "codec"), *st = str(r, "status");
		if (!c || !st || strcmp(c, label) || strcmp(st, "ok"))
			continue;
		s += log(num(r, key));
		n++;
	}
	*count = n;
	return n ? exp(s / n) : NAN;
}

int bench_validate(const bench_json *doc, const bench_manifest *m, bench_buf *msgs)
{
	vctx v = {msgs, 0, 0};
	if (check_obj(&v, doc, "document", top_fields, NF(top_fields)))
		return 2;
	const char *schema = str(doc, "schema");
	if (strcmp(schema, "alcm-bench-results"))
		verr(&v, doc, "schema", "must be \"alcm-bench-results\"");
	if (num(doc, "schema_version") != 1) {
		verr(&v, doc, "schema_version", "this bench reads version 1");
		return 2;
	}
	const bench_json *gen = bench_json_get(doc, "generator"), *mach = bench_json_get(doc, "machine");
	const bench_json *set = bench_json_get(doc, "settings");
	check_obj(&v, gen, "generator", gen_fields, NF(gen_fields));
	check_obj(&v, mach, "machine", machine_fields, NF(machine_fields));
	if (!date_ok(str(doc, "date")))
		verr(&v, bench_json_get(doc, "date"), "date", "must be YYYY-MM-DDTHH:MM:SSZ (UTC)");
	if (check_obj(&v, set, "settings", settings_fields, NF(settings_fields)))
		return 2;
	int runs = (int)num(set, "runs");
	if (runs < 1 || runs > BENCH_MAX_RUNS) {
		verr(&v, set, "settings.runs", "must be 1..%d", BENCH_MAX_RUNS);
		return 2;
	}

	/* Bundles. */
	const bench_json *bundles = bench_json_get(doc, "bundles");
	const char *bnames[64] = {0};
	size_t nb = bundles->len < 64 ? bundles->len : 64;
	if (bundles->len > 64)
		verr(&v, bundles, "bundles", "more than 64 entries");
	for (size_t i = 0; i < nb; i++) {
		char path[48];
		snprintf(path, sizeof(path), "bundles[%zu]", i);
		const bench_json *b = &bundles->items[i];
		if (check_obj(&v, b, path, bundle_fields, NF(bundle_fields)))
			continue;
		const char *name = str(b, "name");
		if (index_of(bnames, i, name) >= 0)
			verr(&v, b, path, "bundle \"%.40s\" listed twice", name);
		bnames[i] = name;
		if (bench_bundle_index(name) < 0) {
			vinelig(&v, "bundle \"%.40s\" is not one of the leaderboard's", name);
			continue;
		}
		uint8_t d[32];
		char hex[65];
		if (!m) {
			vinelig(&v, "no manifest to check bundle \"%s\" against", name);
		} else if (bench_manifest_bundle_digest(m, name, d) == 0) {
			bench_hex(d, 32, hex);
			if (strcmp(hex, str(b, "digest")))
				vinelig(&v, "bundle \"%s\" was not the manifest's (digest %.16s..., expected "
				        "%.16s...)", name, str(b, "digest"), hex);
		}
	}

	/* Codecs. */
	const bench_json *codecs = bench_json_get(doc, "codecs");
	size_t nc = codecs->len < BENCH_MAX_CODECS ? codecs->len : BENCH_MAX_CODECS;
	if (codecs->len > BENCH_MAX_CODECS)
		verr(&v, codecs, "codecs", "more than %d entries", BENCH_MAX_CODECS);
	const char *labels[BENCH_MAX_CODECS] = {0};
	codec_info ci[BENCH_MAX_CODECS];
	memset(ci, 0, sizeof(ci));
	for (size_t i = 0; i < nc; i++) {
		char path[48];
		snprintf(path, sizeof(path), "codecs[%zu]", i);
		const bench_json *c = &codecs->items[i];
		if (check_obj(&v, c, path, codec_fields, NF(codec_fields)))
			continue;
		const char *label = str(c, "label"), *source = str(c, "source"), *k = str(c, "kind");
		if (index_of(labels, i, label) >= 0)
			verr(&v, c, path, "label \"%.40s\" used twice", label);
		labels[i] = label;
		ci[i].label = label;
		if (strcmp(source, "builtin") && strcmp(source, "plugin"))
			verr(&v, c, path, "source must be \"builtin\" or \"plugin\"");
		if (!strcmp(source, "plugin") != (bench_json_get(c, "plugin_digest")->type == BJ_STRING))
			verr(&v, c, path, "plugin_digest is required for a plugin and null otherwise");
		const bench_json *caps = bench_json_get(c, "caps");
		for (size_t j = 0; j < caps->len; j++) {
			static const char *known[] = {"lossless", "max-error", "bits", "float-only", "level"};
			const bench_json *x = &caps->items[j];
			if (x->type != BJ_STRING || index_of(known, 5, x->str) < 0)
				verr(&v, x, path, "unknown capability in caps");
		}
		const bench_json *p = bench_json_get(c, "params");
		if (check_obj(&v, p, path, params_fields, NF(params_fields)))
			continue;
		const char *mode = str(p, "mode");
		if (strcmp(mode, "exact") && strcmp(mode, "max-error") && strcmp(mode, "bits"))
			verr(&v, p, path, "params.mode must be \"exact\", \"max-error\" or \"bits\"");
		ci[i].lossy = strcmp(mode, "exact") != 0;
		ci[i].mode_max = !strcmp(mode, "max-error");
		ci[i].bound = num(p, "max_abs_error");
		if (ci[i].mode_max && !(ci[i].bound > 0))
			verr(&v, p, path, "params.max_abs_error must be > 0 in max-error mode");
		if (strcmp(k, ci[i].lossy ? "lossy" : "lossless"))
			verr(&v, c, path, "kind must be \"%s\" for mode \"%s\"",
			     ci[i].lossy ? "lossy" : "lossless", mode);
	}

	/* Results. */
	const bench_json *results = bench_json_get(doc, "results");
	unsigned char seen[BENCH_MAX_CODECS][64];
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < results->len; i++) {
		char path[48];
		snprintf(path, sizeof(path), "results[%zu]", i);
		const bench_json *r = &results->items[i];
		if (r->type != BJ_OBJECT) {
			verr(&v, r, path, "must be an object");
			continue;
		}
		int c = index_of(labels, nc, str(r, "codec")), b = index_of(bnames, nb, str(r, "bundle"));
		if (c < 0 || b < 0) {
			verr(&v, r, path, "codec and bundle must name entries of codecs and bundles");
			continue;
		}
		if (seen[c][b]++)
			verr(&v, r, path, "a second result for %s on %s", labels[c], bnames[b]);
		check_result(&v, r, path, runs, &bundles->items[b], &ci[c]);
		const char *st = str(r, "status");
		if (st && !strcmp(st, "failed"))
			vinelig(&v, "%s failed on %s", labels[c], bnames[b]);
	}
	for (size_t c = 0; c < nc; c++)
		for (size_t b = 0; b < nb; b++)
			if (labels[c] && bnames[b] && !seen[c][b])
				vinelig(&v, "no result for %s on %s", labels[c], bnames[b]);

	/* Summary: one entry per codec, its means recomputed from the results. */
	const bench_json *summary = bench_json_get(doc, "summary");
	unsigned char sum_seen[BENCH_MAX_CODECS] = {0};
	for (size_t i = 0; i < summary->len; i++) {
		char path[48];
		snprintf(path, sizeof(path), "summary[%zu]", i);
		const bench_json *s = &summary->items[i];
		if (check_obj(&v, s, path, summary_fields, NF(summary_fields)))
			continue;
		int c = index_of(labels, nc, str(s, "codec"));
		if (c < 0) {
			verr(&v, s, path, "codec must name an entry of codecs");
			continue;
		}
		if (sum_seen[c]++)
			verr(&v, s, path, "a second summary for %s", labels[c]);
		int n;
		double gr = geomean_of(results, labels[c], "ratio", &n);
		double gq = geomean_of(results, labels[c], "caq", &n);
		if (num(s, "bundles") != n)
			verr(&v, s, path, "bundles is %.0f, the results have %d ok", num(s, "bundles"), n);
		if (n && (!close_to(num(s, "ratio"), gr) || !close_to(num(s, "caq"), gq)))
			verr(&v, s, path, "ratio and caq must be the geometric means of the ok results");
		const bench_json *rank = bench_json_get(s, "rank");
		if ((rank->type == BJ_NULL) != ((size_t)n != nb || nb == 0))
			verr(&v, s, path, "rank is given exactly when every bundle has an ok result");
	}
	for (size_t c = 0; c < nc; c++)
		if (labels[c] && !sum_seen[c])
			verr(&v, summary, "summary", "no entry for codec %s", labels[c]);

	/* Eligibility. */
	if (bench_json_get(set, "quick")->type == BJ_TRUE)
		vinelig(&v, "a --quick run (slow codecs skipped)");
	if (runs < 5)
		vinelig(&v, "%d runs per result, the leaderboard needs 5 or more", runs);
	if (num(set, "threads") != 1)
		vinelig(&v, "%.0f threads, the leaderboard runs with 1", num(set, "threads"));
	for (size_t i = 0; i < bench_bundle_count; i++)
		if (index_of(bnames, nb, bench_bundles[i].name) < 0)
			vinelig(&v, "bundle %s is missing", bench_bundles[i].name);
	return v.errors ? 2 : v.inelig ? 1 : 0;
}
