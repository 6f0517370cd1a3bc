/* Results: medians and CAQ, the summary ranking, and the four outputs (Markdown, CSV, JSON,
 * SVG). Definitions are in spec/leaderboard.md; keep both in step. */
#include "bench_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* ---- machine ------------------------------------------------------------------------------ */

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	size_t i = 0;
	while (s[i] == ' ' || s[i] == '\t')
		i++;
	memmove(s, s + i, n - i + 1);
}

/* Value of the first line of `path` that starts with `key` and then ':' or '=' (spaces
 * allowed before it), quotes removed. */
static int read_key(const char *path, const char *key, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[512];
	size_t kl = strlen(key);
	int found = -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl))
			continue;
		char *p = line + kl;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != ':' && *p != '=')
			continue;
		p++;
		trim(p);
		size_t n = strlen(p);
		if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
			p[n - 1] = '\0';
			p++;
		}
		snprintf(out, cap, "%s", p);
		found = 0;
		break;
	}
	fclose(f);
	return found;
}

void bench_machine_probe(bench_machine *m)
{
	memset(m, 0, sizeof(*m));
	if (read_key("/proc/cpuinfo", "model name", m->cpu, sizeof(m->cpu)) &&
	    read_key("/proc/cpuinfo", "Hardware", m->cpu, sizeof(m->cpu)))
		snprintf(m->cpu, sizeof(m->cpu), "unknown");
	m->cores = sysconf(_SC_NPROCESSORS_ONLN);
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	m->memory_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
	struct utsname u;
	if (uname(&u) == 0) {
		snprintf(m->kernel, sizeof(m->kernel), "%.40s %.80s", u.sysname, u.release);
		snprintf(m->arch, sizeof(m->arch), "%.31s", u.machine);
	} else {
		snprintf(m->kernel, sizeof(m->kernel), "unknown");
		snprintf(m->arch, sizeof(m->arch), "unknown");
	}
	if (read_key("/etc/os-release", "PRETTY_NAME", m->os, sizeof(m->os)))
		snprintf(m->os, sizeof(m->os), "unknown");
#if defined(__clang__)
	snprintf(m->compiler, sizeof(m->compiler), "clang %s", __clang_version__);
#elif defined(__GNUC__)
	snprintf(m->compiler, sizeof(m->compiler), "gcc %s", __VERSION__);
#else
	snprintf(m->compiler, sizeof(m->compiler), "unknown");
#endif
	trim(m->compiler);
}

/* ---- numbers ------------------------------------------------------------------------------ */

void bench_result_finish(bench_result *r)
{
	int n = r->runs;
	double pack = bench_median(r->pack_s, n), unpack = bench_median(r->unpack_s, n);
	/* A run faster than the clock's resolution still gets a finite speed. */
	if (pack < 1e-9)
		pack = 1e-9;
	if (unpack < 1e-9)
		unpack = 1e-9;
	r->ratio = r->stored_bytes ? (double)r->raw_bytes / (double)r->stored_bytes : 0;
	r->pack_mb_s = (double)r->raw_bytes / 1e6 / pack;
	r->unpack_mb_s = (double)r->raw_bytes / 1e6 / unpack;
	r->cpu_seconds = bench_median(r->cpu_s, n);
	r->caq = r->ratio / (r->cpu_seconds + 1);
	double lo = INFINITY, hi = -INFINITY;
	for (int i = 0; i < n; i++) {
		r->caq_r[i] = r->ratio / (r->cpu_s[i] + 1);
		lo = fmin(lo, r->caq_r[i]);
		hi = fmax(hi, r->caq_r[i]);
	}
	r->caq_spread_pct = n > 0 && r->caq > 0 ? (hi - lo) / r->caq * 100 : 0;
	r->snr_db = r->err2 > 0 ? 10 * log10(r->sig2 / r->err2) : INFINITY;
}

/* qsort has no context argument in C11: the report being sorted. */
static const bench_report *sort_rep;

static int summary_cmp(const void *a, const void *b)
{
	const bench_summary *x = a, *y = b;
	int lx = bench_codec_lossy(&sort_rep->codecs[x->codec]);
	int ly = bench_codec_lossy(&sort_rep->codecs[y->codec]);
	if (lx != ly)
		return lx - ly;
	if (x->bundles != y->bundles)
		return y->bundles - x->bundles;
	if (x->caq != y->caq)
		return x->caq > y->caq ? -1 : 1;
	return x->codec - y->codec;
}

void bench_summarize(bench_report *rep)
{
	rep->summary = bench_xcalloc(rep->nc, sizeof(bench_summary));
	for (size_t c = 0; c < rep->nc; c++) {
		bench_summary *s = &rep->summary[c];
		double lr = 0, lq = 0, raw = 0, pt = 0, ut = 0;
		s->codec = (int)c;
		s->max_abs_error = 0;
		s->snr_db = INFINITY;
		for (size_t b = 0; b < rep->nb; b++) {
			const bench_result *r = &rep->results[c * rep->nb + b];
			if (r->status != BENCH_OK)
				continue;
			s->bundles++;
			lr += log(r->ratio);
			lq += log(r->caq);
			raw += (double)r->raw_bytes;
			pt += (double)r->raw_bytes / 1e6 / r->pack_mb_s;
			ut += (double)r->raw_bytes / 1e6 / r->unpack_mb_s;
			s->caq_spread_pct = fmax(s->caq_spread_pct, r->caq_spread_pct);
			if (r->has_float) {
				s->has_float = 1;
				s->max_abs_error = fmax(s->max_abs_error, r->max_abs_error);
				s->snr_db = fmin(s->snr_db, r->snr_db);
			}
		}
		if (s->bundles) {
			s->ratio = exp(lr / s->bundles);
			s->caq = exp(lq / s->bundles);
			s->pack_mb_s = raw / 1e6 / pt;
			s->unpack_mb_s = raw / 1e6 / ut;
		}
	}
	sort_rep = rep;
	qsort(rep->summary, rep->nc, sizeof(bench_summary), summary_cmp);
	int rank[2] = {0, 0};
	for (size_t i = 0; i < rep->nc; i++) {
		bench_summary *s = &rep->summary[i];
		if (s->bundles == (int)rep->nb && rep->nb)
			s->rank = ++rank[bench_codec_lossy(&rep->codecs[s->codec])];
	}
}

static const char *kind(const bench_codec *c)
{
	return bench_codec_lossy(c) ? "lossy" : "lossless";
}

/* ---- Markdown ----------------------------------------------------------------------------- */

static void md_speed(bench_buf *o, double v)
{
	bench_buf_printf(o, v >= 100 ? " %.0f |" : v >= 10 ? " %.1f |" : " %.2f |", v);
}

static void md_err(bench_buf *o, const bench_codec *c, int has_float, double maxe, double snr)
{
	if (!bench_codec_lossy(c))
		bench_buf_printf(o, " 0 | exact |");
	else if (!has_float)
		bench_buf_printf(o, " 0 (no floats) | exact |");
	else if (isinf(snr))
		bench_buf_printf(o, " %.3g | exact |", maxe);
	else
		bench_buf_printf(o, " %.3g | %.1f |", maxe, snr);
}

static const char *mb(uint64_t b, char *s, size_t cap)
{
	snprintf(s, cap, "%.2f MB", (double)b / 1e6);
	return s;
}

void bench_write_markdown(const bench_report *rep, bench_buf *o)
{
	const bench_machine *m = &rep->machine;
	char s1[32];
	bench_buf_printf(o, "# alcm-bench leaderboard\n\n");
	bench_buf_printf(o, "- run: %s, %d run%s per codec and bundle (medians), %d thread%s%s, "
	                 "wall time %.1f s\n", rep->date, rep->runs, rep->runs == 1 ? "" : "s",
	                 rep->threads, rep->threads == 1 ? "" : "s",
	                 rep->quick ? ", **quick** (slow codecs skipped; not a leaderboard run)" : "",
	                 rep->wall_seconds);
	bench_buf_printf(o, "- machine: %s, %ld cores, %.1f GB, %s %s, %s\n", m->cpu, m->cores,
	                 (double)m->memory_bytes / 1e9, m->kernel, m->arch, m->os);
	bench_buf_printf(o, "- software: alcm-bench %s (libalcm %s, zstd %s, zlib %s), built with %s\n",
	                 ALCM_VERSION_STRING, alcm_version(), ZSTD_versionString(), zlibVersion(),
	                 m->compiler);
	bench_buf_printf(o, "- bundles:");
	for (size_t b = 0; b < rep->nb; b++)
		bench_buf_printf(o, "%s %s (%s, %zu files)", b ? "," : "", rep->bundles[b].name,
		                 mb(rep->bundles[b].raw_bytes, s1, sizeof(s1)), rep->bundles[b].nf);
	bench_buf_printf(o, "\n- CAQ = ratio / (CPU seconds of compress for the bundle + 1); "
	                 "see spec/leaderboard.md\n\n");

	bench_buf_printf(o, "## Summary (geometric means over %zu bundle%s)\n\n", rep->nb,
	                 rep->nb == 1 ? "" : "s");
	bench_buf_printf(o, "| rank | codec | kind | ratio | pack MB/s | unpack MB/s | CAQ | "
	                 "CAQ spread %% | max abs err | SNR dB |\n");
	bench_buf_printf(o, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < rep->nc; i++) {
		const bench_summary *s = &rep->summary[i];
		const bench_codec *c = &rep->codecs[s->codec];
		if (!s->bundles) {
			bench_buf_printf(o, "| - | %s | %s | FAILED on every bundle | | | | | | |\n",
			                 c->label, kind(c));
			continue;
		}
		if (s->rank)
			bench_buf_printf(o, "| %d | %s | %s |", s->rank, c->label, kind(c));
		else
			bench_buf_printf(o, "| - | %s (%d/%zu bundles) | %s |", c->label, s->bundles,
			                 rep->nb, kind(c));
		bench_buf_printf(o, " %.3f |", s->ratio);
		md_speed(o, s->pack_mb_s);
		md_speed(o, s->unpack_mb_s);
		bench_buf_printf(o, " %.3f | %.2f |", s->caq, s->caq_spread_pct);
		md_err(o, c, s->has_float, s->max_abs_error, s->snr_db);
		bench_buf_printf(o, "\n");
	}
	for (size_t b = 0; b < rep->nb; b++) {
		const bench_bundle *bd = &rep->bundles[b];
		bench_buf_printf(o, "\n## %s (%s of tensors in %zu file%s, %llu tensors)\n\n", bd->name,
		                 mb(bd->raw_bytes, s1, sizeof(s1)), bd->nf, bd->nf == 1 ? "" : "s",
		                 (unsigned long long)bd->tensors);
		bench_buf_printf(o, "| codec | ratio | pack MB/s | unpack MB/s | CPU s | CAQ | "
		                 "CAQ spread %% | max abs err | SNR dB |\n");
		bench_buf_printf(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
		for (size_t i = 0; i < rep->nc; i++) {
			size_t c = (size_t)rep->summary[i].codec;
			const bench_codec *cd = &rep->codecs[c];
			const bench_result *r = &rep->results[c * rep->nb + b];
			if (r->status == BENCH_NOT_RUN)
				continue;
			if (r->status == BENCH_FAILED) {
				bench_buf_printf(o, "| %s | FAILED: %s | | | | | | | |\n", cd->label, r->error);
				continue;
			}
			bench_buf_printf(o, "| %s | %.3f |", cd->label, r->ratio);
			md_speed(o, r->pack_mb_s);
			md_speed(o, r->unpack_mb_s);
			bench_buf_printf(o, " %.3f | %.3f | %.2f |", r->cpu_seconds, r->caq, r->caq_spread_pct);
			md_err(o, cd, r->has_float, r->max_abs_error, r->snr_db);
			bench_buf_printf(o, "\n");
		}
	}
}

/* ---- CSV ---------------------------------------------------------------------------------- */

static void csv_field(bench_buf *o, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) {
		bench_buf_put(o, s, strlen(s));
		return;
	}
	bench_buf_put(o, "\"", 1);
	for (; *s; s++)
		bench_buf_put(o, *s == '"' ? "\"\"" : s, *s == '"' ? 2 : 1);
	bench_buf_put(o, "\"", 1);
}

void bench_write_csv(const bench_report *rep, bench_buf *o)
{
	bench_buf_printf(o, "bundle,codec,kind,status,raw_bytes,stored_bytes,ratio,pack_mb_s,"
	                 "unpack_mb_s,cpu_seconds,caq,caq_spread_pct,max_abs_error,snr_db,runs\n");
	for (size_t b = 0; b < rep->nb; b++)
		for (size_t c = 0; c < rep->nc; c++) {
			const bench_result *r = &rep->results[c * rep->nb + b];
			if (r->status == BENCH_NOT_RUN)
				continue;
			csv_field(o, rep->bundles[b].name);
			bench_buf_put(o, ",", 1);
			csv_field(o, rep->codecs[c].label);
			bench_buf_printf(o, ",%s,%s", kind(&rep->codecs[c]),
			                 r->status == BENCH_OK ? "ok" : "failed");
			if (r->status != BENCH_OK) {
				bench_buf_printf(o, ",,,,,,,,,,,%d\n", r->runs);
				continue;
			}
			bench_buf_printf(o, ",%llu,%llu,%.6f,%.3f,%.3f,%.6f,%.6f,%.4f,",
			                 (unsigned long long)r->raw_bytes, (unsigned long long)r->stored_bytes,
			                 r->ratio, r->pack_mb_s, r->unpack_mb_s, r->cpu_seconds, r->caq,
			                 r->caq_spread_pct);
			if (bench_codec_lossy(&rep->codecs[c]) && r->has_float)
				bench_buf_printf(o, "%.6g,", r->max_abs_error);
			else
				bench_buf_printf(o, "0,");
			if (isfinite(r->snr_db) && bench_codec_lossy(&rep->codecs[c]))
				bench_buf_printf(o, "%.3f", r->snr_db);
			else
				bench_buf_printf(o, "inf");
			bench_buf_printf(o, ",%d\n", r->runs);
		}
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void jnum(bench_buf *o, double v)
{
	if (isfinite(v))
		bench_buf_printf(o, "%.10g", v);
	else
		bench_buf_printf(o, "null");
}

static void jarr(bench_buf *o, const double *v, int n)
{
	bench_buf_printf(o, "[");
	for (int i = 0; i < n; i++) {
		if (i)
			bench_buf_printf(o, ", ");
		jnum(o, v[i]);
	}
	bench_buf_printf(o, "]");
}

static void jkey(bench_buf *o, const char *indent, const char *k)
{
	bench_buf_printf(o, "%s\"%s\": ", indent, k);
}

static void caps_json(bench_buf *o, uint32_t caps)
{
	static const char *names[] = {"lossless", "max-error", "bits", "float-only", "level"};
	bench_buf_printf(o, "[");
	int first = 1;
	for (int i = 0; i < 5; i++)
		if (caps & (1u << i)) {
			bench_buf_printf(o, "%s\"%s\"", first ? "" : ", ", names[i]);
			first = 0;
		}
	bench_buf_printf(o, "]");
}

void bench_write_json(const bench_report *rep, bench_buf *o)
{
	const bench_machine *m = &rep->machine;
	char hex[65];
	bench_buf_printf(o, "{\n  \"schema\": \"alcm-bench-results\",\n  \"schema_version\": 1,\n");
	bench_buf_printf(o, "  \"generator\": {\"name\": \"alcm-bench\", \"version\": ");
	bench_buf_json_string(o, ALCM_VERSION_STRING);
	bench_buf_printf(o, ", \"library\": ");
	bench_buf_json_string(o, alcm_version());
	bench_buf_printf(o, ", \"zstd\": ");
	bench_buf_json_string(o, ZSTD_versionString());
	bench_buf_printf(o, ", \"zlib\": ");
	bench_buf_json_string(o, zlibVersion());
	bench_buf_printf(o, "},\n  \"date\": ");
	bench_buf_json_string(o, rep->date);
	bench_buf_printf(o, ",\n  \"machine\": {\"cpu\": ");
	bench_buf_json_string(o, m->cpu);
	bench_buf_printf(o, ", \"cores\": %ld, \"memory_bytes\": %llu, \"arch\": ", m->cores,
	                 (unsigned long long)m->memory_bytes);
	bench_buf_json_string(o, m->arch);
	bench_buf_printf(o, ", \"kernel\": ");
	bench_buf_json_string(o, m->kernel);
	bench_buf_printf(o, ", \"os\": ");
	bench_buf_json_string(o, m->os);
	bench_buf_printf(o, ", \"compiler\": ");
	bench_buf_json_string(o, m->compiler);
	bench_hex(rep->manifest_digest, 32, hex);
	bench_buf_printf(o, "},\n  \"settings\": {\"runs\": %d, \"threads\": %d, \"quick\": %s, "
	                 "\"manifest_digest\": \"%s\"},\n", rep->runs, rep->threads,
	                 rep->quick ? "true" : "false", hex);
	bench_buf_printf(o, "  \"wall_seconds\": ");
	jnum(o, rep->wall_seconds);
	bench_buf_printf(o, ",\n  \"bundles\": [\n");
	for (size_t b = 0; b < rep->nb; b++) {
		const bench_bundle *bd = &rep->bundles[b];
		bench_hex(bd->digest, 32, hex);
		bench_buf_printf(o, "    {\"name\": ");
		bench_buf_json_string(o, bd->name);
		bench_buf_printf(o, ", \"files\": %zu, \"tensors\": %llu, \"raw_bytes\": %llu, "
		                 "\"file_bytes\": %llu, \"digest\": \"%s\"}%s\n", bd->nf,
		                 (unsigned long long)bd->tensors, (unsigned long long)bd->raw_bytes,
		                 (unsigned long long)bd->file_bytes, hex, b + 1 < rep->nb ? "," : "");
	}
	bench_buf_printf(o, "  ],\n  \"codecs\": [\n");
	for (size_t c = 0; c < rep->nc; c++) {
		const bench_codec *cd = &rep->codecs[c];
		bench_buf_printf(o, "    {\"label\": ");
		bench_buf_json_string(o, cd->label);
		bench_buf_printf(o, ", \"name\": ");
		bench_buf_json_string(o, cd->vt->name);
		bench_buf_printf(o, ", \"version\": ");
		bench_buf_json_string(o, cd->vt->version);
		bench_buf_printf(o, ", \"description\": ");
		if (cd->vt->description)
			bench_buf_json_string(o, cd->vt->description);
		else
			bench_buf_printf(o, "null");
		bench_buf_printf(o, ",\n     \"source\": \"%s\", \"plugin_digest\": ",
		                 cd->plugin ? "plugin" : "builtin");
		if (cd->plugin)
			bench_buf_printf(o, "\"%s\"", cd->plugin_digest);
		else
			bench_buf_printf(o, "null");
		bench_buf_printf(o, ", \"kind\": \"%s\", \"caps\": ", kind(cd));
		caps_json(o, cd->caps);
		bench_buf_printf(o, ",\n     \"params\": {\"mode\": \"%s\", \"max_abs_error\": ",
		                 bench_mode_name(cd->params.mode));
		jnum(o, cd->params.max_abs_error);
		bench_buf_printf(o, ", \"bits\": %u, \"level\": %d}}%s\n", cd->params.bits,
		                 cd->params.level, c + 1 < rep->nc ? "," : "");
	}
	bench_buf_printf(o, "  ],\n  \"results\": [\n");
	int first = 1;
	for (size_t c = 0; c < rep->nc; c++)
		for (size_t b = 0; b < rep->nb; b++) {
			const bench_result *r = &rep->results[c * rep->nb + b];
			const bench_codec *cd = &rep->codecs[c];
			if (r->status == BENCH_NOT_RUN)
				continue;
			bench_buf_printf(o, "%s    {\"codec\": ", first ? "" : ",\n");
			first = 0;
			bench_buf_json_string(o, cd->label);
			bench_buf_printf(o, ", \"bundle\": ");
			bench_buf_json_string(o, rep->bundles[b].name);
			if (r->status != BENCH_OK) {
				bench_buf_printf(o, ", \"status\": \"failed\", \"error\": ");
				bench_buf_json_string(o, r->error);
				bench_buf_printf(o, "}");
				continue;
			}
			const char *in = "     ";
			bench_buf_printf(o, ", \"status\": \"ok\",\n");
			jkey(o, in, "raw_bytes");
			bench_buf_printf(o, "%llu, \"stored_bytes\": %llu, \"ratio\": ",
			                 (unsigned long long)r->raw_bytes, (unsigned long long)r->stored_bytes);
			jnum(o, r->ratio);
			bench_buf_printf(o, ", \"pack_mb_s\": ");
			jnum(o, r->pack_mb_s);
			bench_buf_printf(o, ", \"unpack_mb_s\": ");
			jnum(o, r->unpack_mb_s);
			bench_buf_printf(o, ",\n");
			jkey(o, in, "cpu_seconds");
			jnum(o, r->cpu_seconds);
			bench_buf_printf(o, ", \"caq\": ");
			jnum(o, r->caq);
			bench_buf_printf(o, ", \"caq_spread_pct\": ");
			jnum(o, r->caq_spread_pct);
			bench_buf_printf(o, ", \"max_abs_error\": ");
			jnum(o, bench_codec_lossy(cd) && r->has_float ? r->max_abs_error : 0);
			bench_buf_printf(o, ", \"snr_db\": ");
			jnum(o, bench_codec_lossy(cd) ? r->snr_db : INFINITY);
			bench_buf_printf(o, ",\n");
			jkey(o, in, "runs");
			bench_buf_printf(o, "{\"pack_seconds\": ");
			jarr(o, r->pack_s, r->runs);
			bench_buf_printf(o, ",\n       \"unpack_seconds\": ");
			jarr(o, r->unpack_s, r->runs);
			bench_buf_printf(o, ",\n       \"cpu_seconds\": ");
			jarr(o, r->cpu_s, r->runs);
			bench_buf_printf(o, ",\n       \"caq\": ");
			jarr(o, r->caq_r, r->runs);
			bench_buf_printf(o, "}}");
		}
	bench_buf_printf(o, "\n  ],\n  \"summary\": [\n");
	for (size_t i = 0; i < rep->nc; i++) {
		const bench_summary *s = &rep->summary[i];
		const bench_codec *cd = &rep->codecs[s->codec];
		bench_buf_printf(o, "    {\"codec\": ");
		bench_buf_json_string(o, cd->label);
		bench_buf_printf(o, ", \"kind\": \"%s\", \"rank\": ", kind(cd));
		if (s->rank)
			bench_buf_printf(o, "%d", s->rank);
		else
			bench_buf_printf(o, "null");
		bench_buf_printf(o, ", \"bundles\": %d, \"ratio\": ", s->bundles);
		jnum(o, s->bundles ? s->ratio : NAN);
		bench_buf_printf(o, ", \"pack_mb_s\": ");
		jnum(o, s->bundles ? s->pack_mb_s : NAN);
		bench_buf_printf(o, ", \"unpack_mb_s\": ");
		jnum(o, s->bundles ? s->unpack_mb_s : NAN);
		bench_buf_printf(o, ",\n     \"caq\": ");
		jnum(o, s->bundles ? s->caq : NAN);
		bench_buf_printf(o, ", \"caq_spread_pct\": ");
		jnum(o, s->bundles ? s->caq_spread_pct : NAN);
		bench_buf_printf(o, ", \"max_abs_error\": ");
		jnum(o, !s->bundles ? NAN : bench_codec_lossy(cd) && s->has_float ? s->max_abs_error : 0);
		bench_buf_printf(o, ", \"snr_db\": ");
		jnum(o, s->bundles && bench_codec_lossy(cd) ? s->snr_db : NAN);
		bench_buf_printf(o, "}%s\n", i + 1 < rep->nc ? "," : "");
	}
	bench_buf_printf(o, "  ]\n}\n");
}

/* ---- SVG ---------------------------------------------------------------------------------- */

static void xml_text(bench_buf *o, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': bench_buf_printf(o, "&amp;"); break;
		case '<': bench_buf_printf(o, "&lt;"); break;
		case '>': bench_buf_printf(o, "&gt;"); break;
		case '"': bench_buf_printf(o, "&quot;"); break;
		default:
			if ((unsigned char)*s >= 0x20)
				bench_buf_put(o, s, 1);
		}
	}
}

#define SVG_W 960
#define SVG_H 600
#define PL 80.0  /* plot area */
#define PR 760.0
#define PT 70.0
#define PB 520.0

typedef struct axis {
	double lo, hi; /* log10 */
} axis;

static double ax_map(const axis *a, double v, double p0, double p1)
{
	return p0 + (log10(v) - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

static axis make_axis(double mn, double mx, int decades)
{
	axis a;
	if (decades) {
		a.lo = floor(log10(mn));
		a.hi = ceil(log10(mx));
	} else {
		a.lo = log10(mn) - 0.05 * (log10(mx) - log10(mn) + 0.2);
		a.hi = log10(mx) + 0.05 * (log10(mx) - log10(mn) + 0.2);
	}
	if (a.hi - a.lo < 0.3) {
		double mid = 0.5 * (a.lo + a.hi);
		a.lo = mid - 0.15;
		a.hi = mid + 0.15;
	}
	return a;
}

void bench_write_svg(const bench_report *rep, bench_buf *o)
{
	double xmn = INFINITY, xmx = 0, ymn = INFINITY, ymx = 0;
	int n = 0;
	for (size_t i = 0; i < rep->nc; i++) {
		const bench_summary *s = &rep->summary[i];
		if (!s->bundles)
			continue;
		xmn = fmin(xmn, s->pack_mb_s);
		xmx = fmax(xmx, s->pack_mb_s);
		ymn = fmin(ymn, s->ratio);
		ymx = fmax(ymx, s->ratio);
		n++;
	}
	if (!n)
		xmn = 1, xmx = 10, ymn = 1, ymx = 2;
	axis ax = make_axis(xmn, xmx, 1), ay = make_axis(ymn, ymx, 0);
	bench_buf_printf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	                 "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n",
	                 SVG_W, SVG_H, SVG_W, SVG_H);
	bench_buf_printf(o, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", SVG_W, SVG_H);
	bench_buf_printf(o, "<text x=\"%g\" y=\"28\" font-size=\"17\" font-weight=\"bold\">"
	                 "alcm-bench: compression ratio against pack speed</text>\n", PL);
	bench_buf_printf(o, "<text x=\"%g\" y=\"48\" fill=\"#555\">geometric mean ratio and "
	                 "aggregate pack speed over %zu bundle%s, %d run%s, ", PL, rep->nb,
	                 rep->nb == 1 ? "" : "s", rep->runs, rep->runs == 1 ? "" : "s");
	xml_text(o, rep->machine.cpu);
	bench_buf_printf(o, ", %s</text>\n", rep->date);
	/* Grid and ticks: decades (and 2x, 5x) of MB/s on x; ratio steps 1, 1.2, 1.5, 2, 3, 5, 7
	 * times powers of ten on y, thinned to at least 24 px apart. */
	bench_buf_printf(o, "<g stroke=\"#ddd\" stroke-width=\"1\">\n");
	for (int d = (int)ax.lo; d <= (int)ax.hi; d++)
		for (int k = 0; k < 3; k++) {
			double v = (k == 0 ? 1 : k == 1 ? 2 : 5) * pow(10, d);
			if (log10(v) > ax.hi + 1e-9)
				continue;
			double x = ax_map(&ax, v, PL, PR);
			bench_buf_printf(o, "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\"%s/>\n", x, PT, x,
			                 PB, k ? " stroke-dasharray=\"3,3\"" : "");
		}
	static const double mant[] = {1, 1.2, 1.5, 2, 3, 5, 7};
	double yt[64];
	int nyt = 0;
	double lasty = 1e9;
	for (int d = (int)floor(ay.lo) - 1; d <= (int)ceil(ay.hi) && nyt < 64; d++)
		for (int k = 0; k < 7 && nyt < 64; k++) {
			double v = mant[k] * pow(10, d);
			if (log10(v) < ay.lo || log10(v) > ay.hi)
				continue;
			double y = ax_map(&ay, v, PB, PT);
			if (lasty - y < 24)
				continue;
			lasty = y;
			yt[nyt++] = v;
			bench_buf_printf(o, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\"/>\n", PL, y, PR, y);
		}
	bench_buf_printf(o, "</g>\n<g fill=\"#333\">\n");
	for (int d = (int)ax.lo; d <= (int)ax.hi; d++) {
		double v = pow(10, d);
		bench_buf_printf(o, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%g</text>\n",
		                 ax_map(&ax, v, PL, PR), PB + 20, v);
	}
	for (int i = 0; i < nyt; i++)
		bench_buf_printf(o, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", PL - 8,
		                 ax_map(&ay, yt[i], PB, PT) + 4, yt[i]);
	bench_buf_printf(o, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">pack speed, MB/s "
	                 "(log scale; right is faster)</text>\n", (PL + PR) / 2, PB + 44);
	bench_buf_printf(o, "<text transform=\"translate(22 %g) rotate(-90)\" text-anchor=\"middle\">"
	                 "compression ratio (log scale; higher: smaller output)</text>\n", (PT + PB) / 2);
	bench_buf_printf(o, "</g>\n<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" "
	                 "stroke=\"#333\"/>\n", PL, PT, PR - PL, PB - PT);
	/* Marks and labels; a label moves up or down until it overlaps no earlier one. */
	double boxes[BENCH_MAX_CODECS][4];
	int nbox = 0;
	for (size_t i = 0; i < rep->nc; i++) {
		const bench_summary *s = &rep->summary[i];
		const bench_codec *c = &rep->codecs[s->codec];
		if (!s->bundles)
			continue;
		double x = ax_map(&ax, s->pack_mb_s, PL, PR), y = ax_map(&ay, s->ratio, PB, PT);
		int lossy = bench_codec_lossy(c);
		const char *col = c->plugin ? "#2ca02c" : lossy ? "#d62728" : "#1f77b4";
		bench_buf_printf(o, "<g>\n<title>");
		xml_text(o, c->label);
		bench_buf_printf(o, ": ratio %.3f, pack %.1f MB/s, unpack %.1f MB/s, CAQ %.3f</title>\n",
		                 s->ratio, s->pack_mb_s, s->unpack_mb_s, s->caq);
		if (lossy)
			bench_buf_printf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"11\" height=\"11\" "
			                 "fill=\"%s\" transform=\"rotate(45 %.1f %.1f)\"/>\n", x - 5.5,
			                 y - 5.5, col, x, y);
		else
			bench_buf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/>\n", x, y,
			                 col);
		double tw = 7.2 * (double)strlen(c->label), tx = x + 10, ty = y + 4;
		if (tx + tw > SVG_W - 6)
			tx = x - 10 - tw;
		for (int k = 0; k < 40; k++) {
			double dy = (k % 2 ? 1 : -1) * 14.0 * ((k + 1) / 2), cy = y + 4 + dy;
			int clash = 0;
			for (int j = 0; j < nbox && !clash; j++)
				clash = tx < boxes[j][2] && tx + tw > boxes[j][0] && cy - 11 < boxes[j][3] &&
				        cy + 3 > boxes[j][1];
			if (!clash) {
				ty = cy;
				break;
			}
		}
		if (nbox < BENCH_MAX_CODECS) {
			boxes[nbox][0] = tx;
			boxes[nbox][1] = ty - 11;
			boxes[nbox][2] = tx + tw;
			boxes[nbox][3] = ty + 3;
			nbox++;
		}
		bench_buf_printf(o, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">", tx, ty, col);
		xml_text(o, c->label);
		bench_buf_printf(o, "</text>\n</g>\n");
	}
	double lx = PR + 24;
	bench_buf_printf(o, "<g font-size=\"13\">\n"
	                 "<circle cx=\"%g\" cy=\"%g\" r=\"6\" fill=\"#1f77b4\"/><text x=\"%g\" y=\"%g\">"
	                 "lossless (built in)</text>\n", lx, PT + 10, lx + 12, PT + 14);
	bench_buf_printf(o, "<rect x=\"%g\" y=\"%g\" width=\"11\" height=\"11\" fill=\"#d62728\" "
	                 "transform=\"rotate(45 %g %g)\"/><text x=\"%g\" y=\"%g\">lossy (built in)"
	                 "</text>\n", lx - 5.5, PT + 34.5, lx, PT + 40, lx + 12, PT + 44);
	bench_buf_printf(o, "<circle cx=\"%g\" cy=\"%g\" r=\"6\" fill=\"#2ca02c\"/><text x=\"%g\" "
	                 "y=\"%g\">plugin</text>\n", lx, PT + 70, lx + 12, PT + 74);
	bench_buf_printf(o, "<text x=\"%g\" y=\"%g\" fill=\"#555\" font-size=\"11\">Best is up and "
	                 "to the right.</text>\n", lx - 6, PT + 104);
	bench_buf_printf(o, "<text x=\"%g\" y=\"%g\" fill=\"#555\" font-size=\"11\">Hover a mark for "
	                 "its numbers.</text>\n</g>\n</svg>\n", lx - 6, PT + 120);
}
