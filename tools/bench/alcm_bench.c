/* alcm-bench: the CAQ leaderboard. Runs every codec (built in, or a plugin loaded through
 * include/alcm_codec.h) on every benchmark bundle, several times, checks every round trip,
 * and reports medians of ratio, pack and unpack speed and CAQ as Markdown, CSV, JSON and
 * SVG. Also makes bundles (--make-bundle) and checks submissions (--validate).
 * Definitions and the results schema: spec/leaderboard.md. */
#include "bench_internal.h"
#include "../cli.h"

#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef ALCM_BENCH_MANIFEST
#define ALCM_BENCH_MANIFEST ""
#endif

_Static_assert(ALCM_CODEC_DTYPE_F32 == ALCM_DTYPE_F32 && ALCM_CODEC_DTYPE_BF16 == ALCM_DTYPE_BF16 &&
               ALCM_CODEC_DTYPE_BOOL == ALCM_DTYPE_BOOL && ALCM_CODEC_DTYPE_F64 == ALCM_DTYPE_F64 &&
               ALCM_CODEC_MAX_NDIM == ALCM_MAX_NDIM,
               "alcm_codec.h must number dtypes as alcm.h does");

static void usage(FILE *f)
{
	fputs("usage: alcm-bench [OPTIONS]                   run the leaderboard, Markdown on stdout\n"
	      "       alcm-bench --validate RESULTS.json      check a submission\n"
	      "       alcm-bench --make-bundle NAME --out DIR [--seed N]\n"
	      "\n"
	      "Runs every codec on every bundle --runs times, checks each round trip, and reports\n"
	      "medians: ratio, pack and unpack MB/s, CPU seconds, CAQ = ratio / (CPU s + 1), the\n"
	      "CAQ spread across runs, and for lossy codecs max abs error and SNR.\n"
	      "\n"
	      "Bundles (made by tools/bench/bundles/make_bundles.sh, pinned by its manifest):\n", f);
	for (size_t i = 0; i < bench_bundle_count; i++)
		fprintf(f, "  %-17s %s\n", bench_bundles[i].name, bench_bundles[i].what);
	fputs("\nBuilt-in codecs:\n", f);
	for (size_t i = 0; i < bench_builtin_count(); i++) {
		bench_codec c;
		bench_builtin_get(i, &c);
		fprintf(f, "  %-20s %s%s\n", c.label, c.vt->description, c.slow ? " [slow: not with --quick]" : "");
	}
	fputs("\nOptions:\n"
	      "  --bundle LIST        comma-separated bundles (default: all)\n"
	      "  --codec LIST         comma-separated codec labels, plugins' included (default: all)\n"
	      "  --plugin PATH[,KEY=VALUE...]\n"
	      "                       also run the codec in this shared object (include/alcm_codec.h);\n"
	      "                       keys: max-error=E, bits=N, level=N; repeatable\n"
	      "  --runs N             runs per codec and bundle, medians over them (default 5)\n"
	      "  --threads N          threads a codec may use (default 1, the leaderboard's)\n"
	      "  --quick              skip the slow built-ins (zstd-19); not a leaderboard run\n"
	      "  --bundle-dir DIR     where the bundles are (default: $ALCM_BENCH_BUNDLES, else\n"
	      "                       ../bundles beside this program, else build/bundles)\n"
	      "  --manifest FILE      bundle manifest (default: the source tree's, else DIR/manifest.txt)\n"
	      "  --json FILE          also write the results as JSON (the submission format)\n"
	      "  --csv FILE           also write one CSV row per codec and bundle\n"
	      "  --svg FILE           also write a chart: ratio against pack speed, one mark per codec\n"
	      "  -f, --force          replace existing output files\n"
	      "  --list               list bundles and codecs, then exit\n"
	      "  -q, --quiet          no progress on stderr\n"
	      "  -h, --help           this text\n"
	      "\n"
	      "Exit status: 0 done; 1 a codec failed (a round trip, a bound, or ratios that differ\n"
	      "between runs), or --validate: valid but not eligible; 2 usage; 3 i/o (a bundle or plugin\n"
	      "missing); 4 malformed (manifest, or --validate: invalid document); 5 a bundle's bytes\n"
	      "differ from the manifest; 7 plugin ABI or capability refused; 8 output exists; 9 memory.\n",
	      f);
}

/* ---- options ------------------------------------------------------------------------------ */

typedef struct options {
	const char *bundles, *codecs, *bundle_dir, *manifest, *json, *csv, *svg, *validate;
	const char *make, *out;
	const char *plugins[BENCH_MAX_CODECS];
	int nplugins, runs, threads, quick, force, list;
	uint64_t seed;
} options;

static int in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && !strncmp(p, name, n))
			return 1;
		p += l + (e ? 1 : 0);
	}
	return 0;
}

/* Every name of a comma-separated list must pass `known`; prints the first that does not. */
static int check_list(const char *list, const char *what, int (*known)(const char *, void *),
                      void *ctx)
{
	char *copy = bench_xmalloc(strlen(list) + 1), *save = NULL;
	strcpy(copy, list);
	int rc = 0;
	for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
		if (!known(t, ctx)) {
			cli_err("unknown %s '%s' (see --list)", what, t);
			rc = EXIT_USAGE;
		}
	free(copy);
	return rc;
}

static int bundle_known(const char *name, void *ctx)
{
	(void)ctx;
	return bench_bundle_index(name) >= 0;
}

typedef struct codec_set {
	bench_codec *c;
	size_t n;
} codec_set;

static int codec_known(const char *name, void *ctx)
{
	codec_set *s = ctx;
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->c[i].label, name))
			return 1;
	return 0;
}

static int file_exists(const char *p)
{
	struct stat st;
	return p && *p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *default_bundle_dir(void)
{
	const char *env = getenv("ALCM_BENCH_BUNDLES");
	if (env && *env)
		return strdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 16);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			strcpy(slash, "/../bundles");
			struct stat st;
			if (stat(exe, &st) == 0 && S_ISDIR(st.st_mode))
				return strdup(exe);
		}
	}
	return strdup("build/bundles");
}

/* The manifest: --manifest, $ALCM_BENCH_MANIFEST, the source tree's (compiled in), or
 * the copy make_bundles.sh leaves beside the bundles. */
static char *find_manifest(const options *o, const char *dir)
{
	if (o->manifest)
		return strdup(o->manifest);
	const char *env = getenv("ALCM_BENCH_MANIFEST");
	if (env && *env)
		return strdup(env);
	if (file_exists(ALCM_BENCH_MANIFEST))
		return strdup(ALCM_BENCH_MANIFEST);
	size_t l = strlen(dir) + 16;
	char *p = bench_xmalloc(l);
	snprintf(p, l, "%s/manifest.txt", dir);
	return p;
}

/* ---- one codec on one bundle, one run ----------------------------------------------------- */

/* What a configuration gets of one file: all its tensors, or its float tensors only
 * (ALCM_CODEC_CAP_FLOAT_ONLY; the others are stored raw and counted). */
typedef struct plan {
	alcm_codec_tensor *t; /* descriptions with data */
	alcm_codec_tensor *d; /* the same, data NULL, for decompress() */
	size_t n;
	size_t *map;          /* index in the file */
	void **dst;
	uint64_t passthrough; /* raw bytes stored beside the codec's output */
	uint8_t *out;
	size_t cap;
} plan;

typedef struct job {
	bench_codec *c;
	const bench_bundle *b;
	bench_result *r;
	plan p[BENCH_MAX_FILES];
	void **dec[BENCH_MAX_FILES]; /* decode buffers, shared by every codec of the bundle */
	uint64_t stored0;
} job;

static void plan_make(job *j)
{
	int fo = (j->c->caps & ALCM_CODEC_CAP_FLOAT_ONLY) != 0;
	for (size_t f = 0; f < j->b->nf; f++) {
		const bench_file *bf = &j->b->f[f];
		plan *p = &j->p[f];
		p->t = bench_xcalloc(bf->nt, sizeof(alcm_codec_tensor));
		p->d = bench_xcalloc(bf->nt, sizeof(alcm_codec_tensor));
		p->map = bench_xcalloc(bf->nt, sizeof(size_t));
		p->dst = bench_xcalloc(bf->nt, sizeof(void *));
		for (size_t i = 0; i < bf->nt; i++) {
			if (fo && !alcm_dtype_is_float(bf->t[i].dtype)) {
				p->passthrough += bf->t[i].nbytes;
				continue;
			}
			p->t[p->n] = bf->t[i];
			p->d[p->n] = bf->t[i];
			p->d[p->n].data = NULL;
			p->map[p->n] = i;
			p->dst[p->n] = j->dec[f][i];
			p->n++;
		}
	}
}

static void plan_free(job *j)
{
	for (size_t f = 0; f < j->b->nf; f++) {
		free(j->p[f].t);
		free(j->p[f].d);
		free(j->p[f].map);
		free(j->p[f].dst);
		free(j->p[f].out);
	}
}

static int job_fail(job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int job_fail(job *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->r->error, sizeof(j->r->error), fmt, ap);
	va_end(ap);
	j->r->status = BENCH_FAILED;
	return -1;
}

static double load_float(int dtype, const uint8_t *p, size_t i)
{
	uint16_t h;
	float f;
	double d;
	switch (dtype) {
	case ALCM_DTYPE_F16: memcpy(&h, p + 2 * i, 2); return bench_f16_to_f32(h);
	case ALCM_DTYPE_BF16: memcpy(&h, p + 2 * i, 2); return bench_bf16_to_f32(h);
	case ALCM_DTYPE_F32: memcpy(&f, p + 4 * i, 4); return f;
	default: memcpy(&d, p + 8 * i, 8); return d;
	}
}

/* Compares a decoded tensor with its original; accumulates error statistics of lossy
 * configurations on float tensors. */
static int verify(job *j, const bench_file *bf, const alcm_codec_tensor *t, const uint8_t *y,
                  int measure)
{
	const uint8_t *x = t->data;
	int lossy = bench_codec_lossy(j->c);
	if (!lossy || !alcm_dtype_is_float(t->dtype)) {
		if (t->nbytes && memcmp(x, y, (size_t)t->nbytes)) {
			size_t k = 0;
			while (x[k] == y[k])
				k++;
			return job_fail(j, "%s tensor '%s' of %s differs after the round trip (byte %zu)",
			                lossy ? "integer" : "lossless:", cli_name(t->name, t->name_len),
			                bf->name, k);
		}
		return 0;
	}
	if (!measure)
		return 0;
	bench_result *r = j->r;
	size_t es = alcm_dtype_size(t->dtype), n = es ? (size_t)(t->nbytes / es) : 0;
	double maxe = 0;
	for (size_t i = 0; i < n; i++) {
		double a = load_float(t->dtype, x, i), b = load_float(t->dtype, y, i);
		if (!isfinite(a)) {
			if (memcmp(x + i * es, y + i * es, es))
				return job_fail(j, "tensor '%s' of %s: a NaN or infinity changed (value %zu)",
				                cli_name(t->name, t->name_len), bf->name, i);
			continue;
		}
		double d = fabs(a - b);
		if (!(d <= maxe))
			maxe = isnan(d) ? INFINITY : d;
		r->sig2 += a * a;
		r->err2 += isfinite(d) ? d * d : INFINITY;
	}
	r->has_float = 1;
	r->max_abs_error = fmax(r->max_abs_error, maxe);
	if (j->c->params.mode == ALCM_CODEC_MODE_MAX_ERROR && !(maxe <= j->c->params.max_abs_error))
		return job_fail(j, "tensor '%s' of %s: max abs error %.4g breaks the bound %.4g",
		                cli_name(t->name, t->name_len), bf->name, maxe,
		                j->c->params.max_abs_error);
	return 0;
}

static int run_file(job *j, size_t f, int measure, double *pack, double *cpu, double *unpack,
                    uint64_t *stored)
{
	bench_codec *c = j->c;
	plan *p = &j->p[f];
	const bench_file *bf = &j->b->f[f];
	if (!p->out) {
		uint64_t b = c->vt->compress_bound ? c->vt->compress_bound(c->state, p->t, p->n) : 0;
		if (!b)
			b = 2 * bf->raw_bytes + 65536;
		if (b > SIZE_MAX / 2)
			return job_fail(j, "compress_bound too large for %s", bf->name);
		p->cap = (size_t)b;
		p->out = bench_xmalloc(p->cap);
		memset(p->out, 0, p->cap);
	}
	size_t len = 0;
	int st;
	double w0, c0, w1, c1;
	for (int attempt = 0;; attempt++) {
		w0 = bench_wall_now();
		c0 = bench_cpu_now();
		st = c->vt->compress(c->state, p->t, p->n, p->out, p->cap, &len);
		c1 = bench_cpu_now();
		w1 = bench_wall_now();
		if (st != ALCM_CODEC_E_SPACE || attempt == 8)
			break;
		/* Grow and retry; the failed attempt's time is dropped. */
		size_t cap = len > p->cap ? len : 2 * p->cap;
		free(p->out);
		p->cap = cap;
		p->out = bench_xmalloc(cap);
		memset(p->out, 0, cap);
	}
	if (st)
		return job_fail(j, "compress %s: %s", bf->name, bench_codec_detail(c, st));
	if (len > p->cap)
		return job_fail(j, "compress %s: reported %zu bytes into a %zu-byte buffer", bf->name,
		                len, p->cap);
	*pack += w1 - w0;
	*cpu += c1 - c0;
	*stored += len + p->passthrough;
	/* Poison the outputs so that a codec that leaves bytes unwritten cannot pass on an
	 * earlier codec's output. */
	for (size_t i = 0; i < bf->nt; i++)
		memset(j->dec[f][i], 0xa5, (size_t)bf->t[i].nbytes);
	w0 = bench_wall_now();
	st = c->vt->decompress(c->state, p->out, len, p->d, p->n, p->dst);
	w1 = bench_wall_now();
	if (st)
		return job_fail(j, "decompress %s: %s", bf->name, bench_codec_detail(c, st));
	*unpack += w1 - w0;
	for (size_t i = 0; i < bf->nt; i++)
		if (c->caps & ALCM_CODEC_CAP_FLOAT_ONLY && !alcm_dtype_is_float(bf->t[i].dtype))
			memcpy(j->dec[f][i], bf->t[i].data, (size_t)bf->t[i].nbytes);
	for (size_t i = 0; i < bf->nt; i++)
		if (verify(j, bf, &bf->t[i], j->dec[f][i], measure))
			return -1;
	return 0;
}

/* One pass over the bundle's files. Run -1 is the warm-up: untimed, it measures the errors
 * and sets the size every timed run must reproduce. */
static void run_once(job *j, int run)
{
	bench_result *r = j->r;
	if (r->status == BENCH_FAILED)
		return;
	double pack = 0, cpu = 0, unpack = 0;
	uint64_t stored = 0;
	for (size_t f = 0; f < j->b->nf; f++)
		if (run_file(j, f, run < 0, &pack, &cpu, &unpack, &stored))
			return;
	if (run < 0) {
		r->stored_bytes = stored;
		return;
	}
	if (stored != r->stored_bytes) {
		job_fail(j, "not reproducible: %llu bytes in the warm-up run, %llu in run %d",
		         (unsigned long long)r->stored_bytes, (unsigned long long)stored, run + 1);
		return;
	}
	r->pack_s[run] = pack;
	r->unpack_s[run] = unpack;
	r->cpu_s[run] = cpu;
	r->runs = run + 1;
}

/* ---- the leaderboard ---------------------------------------------------------------------- */

static void utc_date(char *out, size_t cap)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int write_out(const char *path, const bench_buf *b, int force)
{
	return path ? bench_write_file(path, b->p, b->len, force) : 0;
}

static int run_board(const options *o, bench_codec *codecs, size_t nc, double t_start)
{
	char err[BENCH_ERR_MAX + 256];
	char *dir = o->bundle_dir ? strdup(o->bundle_dir) : default_bundle_dir();
	char *mpath = find_manifest(o, dir);
	bench_manifest man;
	int rc = bench_manifest_load(&man, mpath, err, sizeof(err));
	if (rc) {
		cli_err("%s", err);
		free(dir);
		free(mpath);
		return rc;
	}
	bench_bundle *bundles = bench_xcalloc(bench_bundle_count, sizeof(bench_bundle));
	size_t nb = 0;
	for (size_t i = 0; i < bench_bundle_count && !rc; i++) {
		if (o->bundles && !in_list(o->bundles, bench_bundles[i].name))
			continue;
		rc = bench_bundle_load(&bundles[nb], &man, bench_bundles[i].name, dir, err, sizeof(err));
		nb++;
		if (rc)
			cli_err("%s", err);
	}
	bench_report rep;
	memset(&rep, 0, sizeof(rep));
	rep.codecs = codecs;
	rep.nc = nc;
	rep.bundles = bundles;
	rep.nb = nb;
	rep.runs = o->runs;
	rep.threads = o->threads;
	rep.quick = o->quick;
	memcpy(rep.manifest_digest, man.digest, 32);
	bench_machine_probe(&rep.machine);
	utc_date(rep.date, sizeof(rep.date));
	rep.results = bench_xcalloc(nc * (nb ? nb : 1), sizeof(bench_result));
	int tty = !cli_quiet && isatty(STDERR_FILENO);
	for (size_t b = 0; b < nb && !rc; b++) {
		const bench_bundle *bd = &bundles[b];
		job *jobs = bench_xcalloc(nc, sizeof(job));
		void **dec[BENCH_MAX_FILES];
		for (size_t f = 0; f < bd->nf; f++) {
			dec[f] = bench_xcalloc(bd->f[f].nt, sizeof(void *));
			for (size_t i = 0; i < bd->f[f].nt; i++)
				dec[f][i] = bench_xcalloc(1, (size_t)bd->f[f].t[i].nbytes + 1);
		}
		for (size_t c = 0; c < nc; c++) {
			job *j = &jobs[c];
			j->c = &codecs[c];
			j->b = bd;
			j->r = &rep.results[c * nb + b];
			j->r->raw_bytes = bd->raw_bytes;
			memcpy(j->dec, dec, sizeof(dec));
			if (bench_codec_open(j->c, j->r->error, sizeof(j->r->error))) {
				j->r->status = BENCH_FAILED;
				continue;
			}
			plan_make(j);
		}
		/* Each run goes through every codec in turn, so a busy moment of a shared machine
		 * slows every codec of that run rather than all runs of one codec. */
		for (int run = -1; run < o->runs; run++)
			for (size_t c = 0; c < nc; c++) {
				if (tty && run < 0)
					fprintf(stderr, "\r%s: %s warm-up %-24s", cli_prog, bd->name, codecs[c].label);
				else if (tty)
					fprintf(stderr, "\r%s: %s run %d/%d %-24s", cli_prog, bd->name, run + 1,
					        o->runs, codecs[c].label);
				run_once(&jobs[c], run);
			}
		for (size_t c = 0; c < nc; c++) {
			if (jobs[c].r->status == BENCH_OK)
				bench_result_finish(jobs[c].r);
			else
				cli_err("%s on %s: %s", codecs[c].label, bd->name, jobs[c].r->error);
			if (jobs[c].p[0].t)
				plan_free(&jobs[c]);
			bench_codec_close(&codecs[c]);
		}
		for (size_t f = 0; f < bd->nf; f++) {
			for (size_t i = 0; i < bd->f[f].nt; i++)
				free(dec[f][i]);
			free(dec[f]);
		}
		free(jobs);
	}
	if (tty)
		fprintf(stderr, "\r%72s\r", "");
	int failed = 0;
	if (!rc) {
		rep.wall_seconds = bench_wall_now() - t_start;
		bench_summarize(&rep);
		for (size_t i = 0; i < nc * nb; i++)
			failed |= rep.results[i].status == BENCH_FAILED;
		bench_buf md = {0}, js = {0}, csv = {0}, svg = {0};
		bench_write_markdown(&rep, &md);
		fwrite(md.p, 1, md.len, stdout);
		fflush(stdout);
		if (o->json) {
			bench_write_json(&rep, &js);
			rc = write_out(o->json, &js, o->force);
		}
		if (!rc && o->csv) {
			bench_write_csv(&rep, &csv);
			rc = write_out(o->csv, &csv, o->force);
		}
		if (!rc && o->svg) {
			bench_write_svg(&rep, &svg);
			rc = write_out(o->svg, &svg, o->force);
		}
		bench_buf_free(&md);
		bench_buf_free(&js);
		bench_buf_free(&csv);
		bench_buf_free(&svg);
		if (!cli_quiet)
			fprintf(stderr, "%s: %zu codecs x %zu bundles x %d runs in %.1f s%s\n", cli_prog, nc,
			        nb, o->runs, rep.wall_seconds, failed ? "; some codecs FAILED" : "");
	}
	for (size_t b = 0; b < nb; b++)
		bench_bundle_free(&bundles[b]);
	free(bundles);
	free(rep.results);
	free(rep.summary);
	bench_manifest_free(&man);
	free(dir);
	free(mpath);
	return rc ? rc : failed ? EXIT_FAIL : 0;
}

static int do_validate(const options *o)
{
	uint8_t *buf;
	size_t len;
	int e = bench_read_file(o->validate, (size_t)64 << 20, &buf, &len);
	if (e) {
		cli_err("cannot read '%s': %s", o->validate, strerror(e));
		return EXIT_IO;
	}
	char err[256];
	bench_json doc;
	if (bench_json_parse((const char *)buf, len, &doc, err, sizeof(err))) {
		free(buf);
		cli_err("invalid '%s': not JSON: %s", o->validate, err);
		return EXIT_MALFORMED;
	}
	free(buf);
	char *dir = o->bundle_dir ? strdup(o->bundle_dir) : default_bundle_dir();
	char *mpath = find_manifest(o, dir);
	bench_manifest man;
	int have = bench_manifest_load(&man, mpath, err, sizeof(err)) == 0;
	if (!have)
		cli_warn("%s; bundle digests are not checked", err);
	bench_buf msgs = {0};
	int v = bench_validate(&doc, have ? &man : NULL, &msgs);
	if (msgs.len)
		fprintf(stderr, "%s", msgs.p);
	if (v == 2)
		cli_err("invalid '%s': it breaks the results schema (spec/leaderboard.md)", o->validate);
	else if (v == 1)
		printf("%s: valid, but not eligible for the leaderboard\n", o->validate);
	else
		printf("%s: valid and eligible\n", o->validate);
	bench_buf_free(&msgs);
	bench_json_free(&doc);
	if (have)
		bench_manifest_free(&man);
	free(dir);
	free(mpath);
	return v == 2 ? EXIT_MALFORMED : v == 1 ? EXIT_FAIL : 0;
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
	uint64_t v;
	if (cli_parse_u64(s, &v) || v < (uint64_t)lo || v > (uint64_t)hi) {
		cli_err("invalid %s '%s': expected %d..%d", opt, s, lo, hi);
		return EXIT_USAGE;
	}
	*out = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	double t_start = bench_wall_now();
	cli_init("alcm-bench");
	if (sodium_init() < 0) {
		cli_err("cannot initialise libsodium");
		return EXIT_FAIL;
	}
	enum { O_BUNDLE = 256, O_CODEC, O_PLUGIN, O_RUNS, O_THREADS, O_QUICK, O_DIR, O_MANIFEST,
	       O_JSON, O_CSV, O_SVG, O_VALIDATE, O_MAKE, O_OUT, O_SEED, O_LIST };
	static const struct option lo[] = {
		{"bundle", required_argument, NULL, O_BUNDLE}, {"codec", required_argument, NULL, O_CODEC},
		{"plugin", required_argument, NULL, O_PLUGIN}, {"runs", required_argument, NULL, O_RUNS},
		{"threads", required_argument, NULL, O_THREADS}, {"quick", no_argument, NULL, O_QUICK},
		{"bundle-dir", required_argument, NULL, O_DIR},
		{"manifest", required_argument, NULL, O_MANIFEST},
		{"json", required_argument, NULL, O_JSON}, {"csv", required_argument, NULL, O_CSV},
		{"svg", required_argument, NULL, O_SVG}, {"validate", required_argument, NULL, O_VALIDATE},
		{"make-bundle", required_argument, NULL, O_MAKE}, {"out", required_argument, NULL, O_OUT},
		{"seed", required_argument, NULL, O_SEED}, {"list", no_argument, NULL, O_LIST},
		{"force", no_argument, NULL, 'f'}, {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
	};
	options o;
	memset(&o, 0, sizeof(o));
	o.runs = 5;
	o.threads = 1;
	o.seed = 1;
	int ch, rc;
	while ((ch = getopt_long(argc, argv, "fqh", lo, NULL)) != -1) {
		switch (ch) {
		case O_BUNDLE: o.bundles = optarg; break;
		case O_CODEC: o.codecs = optarg; break;
		case O_PLUGIN:
			if (o.nplugins == BENCH_MAX_CODECS - 16) {
				cli_err("too many --plugin options");
				return EXIT_USAGE;
			}
			o.plugins[o.nplugins++] = optarg;
			break;
		case O_RUNS:
			if ((rc = parse_int("--runs", optarg, 1, BENCH_MAX_RUNS, &o.runs)))
				return rc;
			break;
		case O_THREADS:
			if ((rc = parse_int("--threads", optarg, 1, 256, &o.threads)))
				return rc;
			break;
		case O_QUICK: o.quick = 1; break;
		case O_DIR: o.bundle_dir = optarg; break;
		case O_MANIFEST: o.manifest = optarg; break;
		case O_JSON: o.json = optarg; break;
		case O_CSV: o.csv = optarg; break;
		case O_SVG: o.svg = optarg; break;
		case O_VALIDATE: o.validate = optarg; break;
		case O_MAKE: o.make = optarg; break;
		case O_OUT: o.out = optarg; break;
		case O_SEED:
			if (cli_parse_u64(optarg, &o.seed)) {
				cli_err("invalid --seed '%s'", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_LIST: o.list = 1; break;
		case 'f': o.force = 1; break;
		case 'q': cli_quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	if (o.validate)
		return do_validate(&o);
	if (o.make) {
		if (!o.out) {
			cli_err("--make-bundle needs --out DIR");
			return EXIT_USAGE;
		}
		return bench_make_bundle(o.make, o.out, o.seed);
	}
	if (o.bundles && (rc = check_list(o.bundles, "bundle", bundle_known, NULL)))
		return rc;

	bench_codec *codecs = bench_xcalloc(BENCH_MAX_CODECS, sizeof(bench_codec));
	size_t nc = 0, k = 0;
	for (size_t i = 0; i < bench_builtin_count(); i++)
		bench_builtin_get(i, &codecs[nc++]);
	for (int i = 0; i < o.nplugins; i++) {
		char err[512];
		rc = bench_plugin_load(&codecs[nc], o.plugins[i], err, sizeof(err));
		nc++;
		if (rc) {
			cli_err("%s", err);
			goto done;
		}
		for (size_t j = 0; j + 1 < nc; j++)
			if (!strcmp(codecs[j].label, codecs[nc - 1].label)) {
				cli_err("two codecs labelled '%s'", codecs[nc - 1].label);
				rc = EXIT_USAGE;
				goto done;
			}
	}
	for (size_t i = 0; i < nc; i++)
		codecs[i].params.threads = (uint32_t)o.threads;
	if (o.list) {
		printf("bundles:\n");
		for (size_t i = 0; i < bench_bundle_count; i++)
			printf("  %-17s %s\n", bench_bundles[i].name, bench_bundles[i].what);
		printf("codecs:\n");
		for (size_t i = 0; i < nc; i++)
			printf("  %-24s %s %s (%s)%s\n", codecs[i].label, codecs[i].vt->name,
			       codecs[i].vt->version, codecs[i].plugin ? codecs[i].plugin_path : "built in",
			       codecs[i].slow ? " [slow]" : "");
		goto done;
	}
	codec_set set = {codecs, nc};
	if (o.codecs && (rc = check_list(o.codecs, "codec", codec_known, &set)))
		goto done;
	/* Keep the selected configurations, in order; the others are moved to the end. */
	bench_codec *kept = bench_xcalloc(BENCH_MAX_CODECS, sizeof(bench_codec));
	size_t d = 0;
	for (size_t i = 0; i < nc; i++) {
		int keep = o.codecs ? in_list(o.codecs, codecs[i].label) : !(o.quick && codecs[i].slow);
		if (keep)
			kept[k++] = codecs[i];
	}
	for (size_t i = 0; i < nc; i++) {
		int keep = o.codecs ? in_list(o.codecs, codecs[i].label) : !(o.quick && codecs[i].slow);
		if (!keep)
			kept[k + d++] = codecs[i];
	}
	memcpy(codecs, kept, nc * sizeof(bench_codec));
	free(kept);
	if (!k) {
		cli_err("no codec selected");
		rc = EXIT_USAGE;
		goto done;
	}
	rc = run_board(&o, codecs, k, t_start);
done:
	for (size_t i = 0; i < nc; i++) {
		free(codecs[i].plugin_path);
		if (codecs[i].dl)
			dlclose(codecs[i].dl);
	}
	free(codecs);
	return rc;
}
