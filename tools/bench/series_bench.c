/* alcm-series-bench: checkpoint series (spec 6.12) against packing each checkpoint alone and
 * against zstd -19 --patch-from of each checkpoint against the one before, on real training
 * runs (tools/bench/series_train.py; tools/bench/series_bench.sh makes them and runs this).
 *
 * Per run it prints the bytes and ratio of each coding, pack and unpack MB/s, how long
 * decoding each frame takes against decoding the same checkpoint packed alone, and the time
 * to decode the last frame; then the changes between checkpoints that explain the ratios;
 * then, for the run named with --target, whether the targets hold. Every archive is
 * decoded and compared with its checkpoint (bit for bit when lossless, within the bound when
 * lossy); the series are rebuilt each round and must come out byte for byte the same. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_internal.h"

static const char usage[] =
	"usage: alcm-series-bench [--runs N] [--threads N] [--target NAME] [--max-error E]\n"
	"                         [--tmp DIR] RUN...\n"
	"\n"
	"RUN is NAME=DIR (the checkpoints DIR/*.safetensors in name order, one series) or\n"
	"NAME=BASE+FINETUNE (two .safetensors: FINETUNE stored against BASE, alcm-pack --delta-from).\n"
	"\n"
	"  --runs N        rounds; times are medians (default 3)\n"
	"  --threads N     coding threads (default 1)\n"
	"  --decode-threads N  decoding threads, for every decode (default 1; 0: all cores)\n"
	"  --pairs N       decode pairs (frame, checkpoint alone) per frame; the ratio is their\n"
	"                  median (default 7)\n"
	"  --wall          decode times on the wall clock (default: process CPU time, which\n"
	"                  with one thread is the work done and robust on a busy machine)\n"
	"  --target NAME   print whether the issue's targets hold on run NAME\n"
	"  --max-error E   also code every run lossy at this bound (closed loop)\n"
	"  --tmp DIR       where archives are written (default $TMPDIR or /tmp)\n"
	"\n"
	"zstd -19 --patch-from runs the zstd command line (it must be on PATH).\n"
	"Exit status: 0 done (targets may miss), 1 a coding failed or decoded wrong, 2 usage.\n";

#define MAX_CKPT 512
#define MAX_RUNS 31

typedef struct ckpt {
	char *path;
	alcm_tensor *t;
	size_t n;
	uint64_t raw;
	int dtype; /* of the first float tensor */
} ckpt;

typedef struct cfg {
	const char *label;
	int reference;
	uint32_t keyframe_every;
	int mode;
	double bound;
} cfg;

static unsigned g_threads = 1, g_runs = 3, g_pairs = 7, g_dthreads = 1;
static int g_wall; /* decode times on the wall clock (else process CPU time) */
static const char *g_tmp;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("alcm-series-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void load(const char *path, ckpt *c)
{
	alcm_input *in = NULL;
	int st = alcm_input_open(&in, path, NULL, NULL);
	if (st)
		die("cannot read '%s': %s", path, in ? alcm_input_detail(in) : alcm_strerror(st));
	memset(c, 0, sizeof(*c));
	c->path = strdup(path);
	c->dtype = 0;
	for (;;) {
		alcm_tensor t;
		int has;
		if ((st = alcm_input_next(in, &t, &has)))
			die("cannot read '%s': %s", path, alcm_input_detail(in));
		if (!has)
			break;
		c->t = bench_xrealloc(c->t, (c->n + 1) * sizeof(alcm_tensor));
		alcm_tensor *d = &c->t[c->n++];
		*d = t;
		char *nm = bench_xmalloc(t.name_len + 1);
		memcpy(nm, t.name, t.name_len);
		d->name = nm;
		void *data = bench_xmalloc(t.nbytes ? t.nbytes : 1);
		memcpy(data, t.data, t.nbytes);
		d->data = data;
		c->raw += t.nbytes;
		if (!c->dtype && alcm_dtype_is_float(t.dtype))
			c->dtype = t.dtype;
	}
	alcm_input_free(in);
}

static uint64_t file_size(const char *path)
{
	struct stat sb;
	if (stat(path, &sb))
		die("cannot stat '%s': %s", path, strerror(errno));
	return (uint64_t)sb.st_size;
}

/* One checkpoint packed alone (lossless unless mode), to a file. */
static double pack_alone(const ckpt *c, const char *out, int mode, double bound)
{
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.threads = g_threads;
	o.mode = mode;
	o.bound = bound;
	double t0 = bench_cpu_now();
	int st = alcm_writer_open_file(&w, out, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_encoder_new(&e, w, &o, NULL);
	for (size_t i = 0; i < c->n && !st; i++)
		st = alcm_encoder_add(e, &c->t[i], NULL);
	if (!st)
		st = alcm_encoder_finish(e);
	if (!st)
		st = alcm_writer_commit(w);
	if (st)
		die("packing '%s' alone: %s", c->path, e ? alcm_encoder_detail(e) : alcm_writer_detail(w));
	alcm_encoder_free(e);
	alcm_writer_free(w);
	return bench_cpu_now() - t0;
}

/* Every decode starts with cold CPU caches, as a random access would: otherwise the frames
 * of a series that share a keyframe find it in the cache and look faster than they are. */
static void evict_caches(void)
{
	static uint8_t *junk;
	static size_t n = (size_t)64 << 20;
	if (!junk)
		junk = bench_xcalloc(n, 1);
	for (size_t i = 0; i < n; i += 64)
		junk[i]++;
}

static double now(void)
{
	return g_wall ? bench_wall_now() : bench_cpu_now();
}

/* Frame `frame` of archive `path` (UINT32_MAX: the last) decoded with g_dthreads threads and,
 * when check, compared with c. @return the time (CPU or wall, g_wall). */
static double decode(const char *path, uint32_t frame, const char *base_path, const ckpt *c,
                     int check, int mode, double bound)
{
	alcm_reader *r = NULL, *b = NULL;
	evict_caches();
	alcm_archive *a = NULL;
	double t0 = now();
	int st = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	if (!st)
		st = frame == UINT32_MAX ? alcm_archive_open(&a, r, NULL)
		                         : alcm_archive_open_frame(&a, r, frame, NULL);
	if (!st && base_path && !(st = alcm_reader_open_file(&b, base_path, NULL, NULL, 0)))
		st = alcm_archive_set_base(a, b);
	if (!st)
		st = alcm_archive_set_threads(a, g_dthreads);
	if (st)
		die("decoding '%s' frame %u: %s", path, frame, a ? alcm_archive_detail(a)
		                                                : alcm_reader_detail(r));
	size_t n = alcm_archive_tensor_count(a);
	if (check && n != c->n)
		die("'%s' frame %u has %zu tensors, the checkpoint %zu", path, frame, n, c->n);
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (size_t i = 0; i < n; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		if (ti.raw_bytes > cap)
			buf = bench_xrealloc(buf, cap = ti.raw_bytes);
		if ((st = alcm_archive_decode(a, i, buf, cap)))
			die("decoding '%s' frame %u: %s", path, frame, alcm_archive_detail(a));
		if (check) {
			double c0 = now(); /* the comparison is not decoding: not timed */
			alcm_error_stats es;
			alcm_tensor_measure(&c->t[i], buf, &es);
			if (ti.raw_bytes != c->t[i].nbytes || !alcm_error_within(&es, mode, bound))
				die("'%s' frame %u: tensor %zu decodes wrong (max error %g)", path, frame, i,
				    es.max_abs_error);
			t0 += now() - c0;
		}
	}
	free(buf);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_reader_free(b);
	return now() - t0;
}

/* Frame k of a series at `path`: new when k is 0, else appended. */
static void series_frame(const char *path, const ckpt *c, size_t k, const cfg *g,
                         const char *base_path, int *keyframe)
{
	alcm_writer *w = NULL;
	alcm_reader *r = NULL, *b = NULL;
	alcm_series *s = NULL;
	alcm_series_options so;
	alcm_series_options_default(&so);
	so.pack.threads = g_threads;
	so.pack.mode = g->mode;
	so.pack.bound = g->bound;
	so.reference = g->reference;
	so.keyframe_every = g->keyframe_every;
	so.base_name = base_path;
	int st = k == 0 ? alcm_writer_open_file(&w, path, ALCM_WRITE_OVERWRITE | ALCM_WRITE_STREAM |
	                                                      ALCM_WRITE_NO_SYNC, NULL)
	                : alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC);
	if (!st && k)
		st = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	if (!st && base_path)
		st = alcm_reader_open_file(&b, base_path, NULL, NULL, 0);
	if (st)
		die("series '%s' frame %zu: %s", path, k, r ? alcm_reader_detail(r) : alcm_writer_detail(w));
	if ((st = alcm_series_begin(&s, w, r, b, &so, NULL)))
		die("series '%s' frame %zu: %s", path, k, alcm_series_detail(s));
	for (size_t i = 0; i < c->n && !st; i++)
		st = alcm_series_add(s, &c->t[i], NULL);
	alcm_series_report rep;
	if (!st)
		st = alcm_series_finish(s, &rep);
	if (st)
		die("series '%s' frame %zu: %s", path, k, alcm_series_detail(s));
	if ((st = alcm_writer_commit(w)))
		die("series '%s' frame %zu: %s", path, k, alcm_writer_detail(w));
	*keyframe = rep.keyframe;
	alcm_series_free(s);
	alcm_writer_free(w);
	alcm_reader_free(r);
	alcm_reader_free(b);
}

/* zstd -19 --patch-from=prev cur (or without prev), through the command line. */
static uint64_t zstd_cli(const char *prev, const char *cur, const char *out, double *secs)
{
	char cmd[8192];
	for (const char *p = prev ? prev : ""; *p; p++)
		if (*p == '\'')
			die("path with a quote: %s", prev);
	for (const char *p = cur; *p; p++)
		if (*p == '\'')
			die("path with a quote: %s", cur);
	if (prev)
		snprintf(cmd, sizeof(cmd), "zstd -q -f -19 --patch-from='%s' '%s' -o '%s' 2>/dev/null",
		         prev, cur, out);
	else
		snprintf(cmd, sizeof(cmd), "zstd -q -f -19 '%s' -o '%s' 2>/dev/null", cur, out);
	/* The CPU time of the zstd process. */
	struct rusage r0, r1;
	getrusage(RUSAGE_CHILDREN, &r0);
	if (system(cmd) != 0)
		die("'%s' failed (is zstd installed?)", cmd);
	getrusage(RUSAGE_CHILDREN, &r1);
	*secs += (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
	                  r0.ru_stime.tv_sec) +
	         (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
	                  r0.ru_stime.tv_usec) * 1e-6;
	uint64_t n = file_size(out);
	unlink(out);
	return n;
}

/* Changes between checkpoints: the share of float values whose bits did not change, and the
 * mean log2 of the distance in units in the last place of those that did. */
static void changes(const ckpt *a, const ckpt *b, double *same, double *lbits, int *w)
{
	uint64_t n = 0, eq = 0;
	double sl = 0;
	*w = 0;
	for (size_t i = 0; i < b->n; i++) {
		const alcm_tensor *y = &b->t[i];
		const alcm_tensor *x = NULL;
		for (size_t j = 0; j < a->n && !x; j++)
			if (a->t[j].name_len == y->name_len && !memcmp(a->t[j].name, y->name, y->name_len) &&
			    a->t[j].nbytes == y->nbytes && a->t[j].dtype == y->dtype)
				x = &a->t[j];
		if (!x || !alcm_dtype_is_float(y->dtype))
			continue;
		size_t ws = alcm_dtype_size(y->dtype);
		*w = (int)(8 * ws);
		for (uint64_t k = 0; k < y->nbytes / ws; k++) {
			uint64_t u = 0, v = 0;
			memcpy(&u, (const uint8_t *)x->data + k * ws, ws);
			memcpy(&v, (const uint8_t *)y->data + k * ws, ws);
			uint64_t top = (uint64_t)1 << (8 * ws - 1), m = ws == 8 ? ~0ull : (top << 1) - 1;
			uint64_t ku = (u & top) ? (~u & m) : (u | top), kv = (v & top) ? (~v & m) : (v | top);
			uint64_t d = ku > kv ? ku - kv : kv - ku;
			n++;
			if (!d)
				eq++;
			else
				sl += log2((double)d);
		}
	}
	*same = n ? (double)eq / (double)n : 0;
	*lbits = n > eq ? sl / (double)(n - eq) : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t list_dir(const char *dir, char **out)
{
	DIR *d = opendir(dir);
	if (!d)
		die("cannot open '%s': %s", dir, strerror(errno));
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors") || !strcmp(e->d_name, "finetune.safetensors"))
			continue;
		if (n == MAX_CKPT)
			die("more than %d checkpoints in '%s'", MAX_CKPT, dir);
		out[n] = bench_xmalloc(strlen(dir) + l + 2);
		sprintf(out[n], "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	qsort(out, n, sizeof(char *), cmp_str);
	return n;
}

typedef struct row {
	char label[96];
	uint64_t bytes;
	double pack_s[MAX_RUNS], unpack_s[MAX_RUNS], last_s[MAX_RUNS];
	double worst_ratio, median_ratio;
	uint32_t keyframes, chain;
	int worst_frame;
	int lossless;
} row;

static const char *mbs(char *buf, double bytes, const double *s, unsigned n)
{
	double m = bench_median(s, (int)n);
	if (m <= 0)
		snprintf(buf, 32, "-");
	else
		snprintf(buf, 32, "%.1f", bytes / m / 1e6);
	return buf;
}

static void print_row(const row *r, uint64_t raw, uint64_t alone)
{
	char p[32], u[32];
	double last = bench_median(r->last_s, (int)g_runs);
	printf("| %s | %llu | %.3fx | %.2f | %s | %s |", r->label, (unsigned long long)r->bytes,
	       (double)raw / (double)r->bytes, (double)alone / (double)r->bytes,
	       mbs(p, (double)raw, r->pack_s, g_runs), mbs(u, (double)raw, r->unpack_s, g_runs));
	if (r->median_ratio > 0)
		printf(" %.2f / %.2f (frame %d) | %.2f | %u / %u |\n", r->median_ratio, r->worst_ratio,
		       r->worst_frame, last * 1e3,
		       r->keyframes, r->chain);
	else
		printf(" - | %s | - |\n", last > 0 ? "" : "-");
}

/*
 * Decode time of frame `frame` of `ser` (with base archive `base` or NULL) against that of
 * the same checkpoint packed alone (`alone`): one untimed decode of each first (page faults
 * of fresh buffers, the file cache), then g_pairs pairs, the two decodes of a pair one right
 * after the other and their order alternating, so that the machine's load weighs on both
 * alike. @return the median of the pairs' ratios (pr: g_pairs doubles of scratch).
 */
static double paired(const char *ser, uint32_t frame, const char *base, const char *alone,
                     const ckpt *c, double *pr)
{
	(void)decode(ser, frame, base, c, 0, 0, 0);
	(void)decode(alone, UINT32_MAX, NULL, c, 0, 0, 0);
	for (unsigned p = 0; p < g_pairs; p++) {
		double ts, ta;
		if (p & 1) {
			ta = decode(alone, UINT32_MAX, NULL, c, 0, 0, 0);
			ts = decode(ser, frame, base, c, 0, 0, 0);
		} else {
			ts = decode(ser, frame, base, c, 0, 0, 0);
			ta = decode(alone, UINT32_MAX, NULL, c, 0, 0, 0);
		}
		pr[p] = ts / ta;
	}
	return bench_median(pr, (int)g_pairs);
}

/* A series run: every configuration over the checkpoints. */
static int run_series(const char *name, char **files, size_t n, int target, double lossy)
{
	ckpt *c = bench_xcalloc(n, sizeof(ckpt));
	uint64_t raw = 0;
	for (size_t k = 0; k < n; k++) {
		load(files[k], &c[k]);
		raw += c[k].raw;
	}
	char alone_p[4096], ser_p[4096], tmp_p[4096];
	snprintf(tmp_p, sizeof(tmp_p), "%s/alcm-series-bench.%d.zst", g_tmp, (int)getpid());
	snprintf(ser_p, sizeof(ser_p), "%s/alcm-series-bench.%d.alcm", g_tmp, (int)getpid());
	printf("\n### %s: %zu checkpoints, %s, %.2f MB each, %.1f MB in all\n\n", name, n,
	       c[0].dtype ? alcm_dtype_name(c[0].dtype) : "?", (double)c[0].raw / 1e6,
	       (double)raw / 1e6);
	/* Each checkpoint alone: bytes, pack and decode times per frame. */
	row alone = {.label = "each checkpoint alone, lossless", .lossless = 1};
	for (unsigned rr = 0; rr < g_runs; rr++) {
		double ps = 0, us = 0;
		alone.bytes = 0;
		for (size_t k = 0; k < n; k++) {
			snprintf(alone_p, sizeof(alone_p), "%s/alcm-series-bench.%d.%zu.alcm", g_tmp,
			         (int)getpid(), k);
			ps += pack_alone(&c[k], alone_p, ALCM_MODE_LOSSLESS, 0);
			alone.bytes += file_size(alone_p);
		}
		for (size_t k = 0; k < n; k++) {
			snprintf(alone_p, sizeof(alone_p), "%s/alcm-series-bench.%d.%zu.alcm", g_tmp,
			         (int)getpid(), k);
			double t = decode(alone_p, UINT32_MAX, NULL, &c[k], rr == 0, ALCM_MODE_LOSSLESS, 0);
			us += t;
			if (k == n - 1)
				alone.last_s[rr] = t;
		}
		alone.pack_s[rr] = ps;
		alone.unpack_s[rr] = us;
	}
	/* zstd -19 --patch-from over the same pairs: the first checkpoint alone, then each
	 * against the one before. */
	row patch = {.label = "zstd -19 --patch-from (each against the one before)"};
	for (unsigned rr = 0; rr < 1; rr++) {
		double s = 0;
		for (size_t k = 0; k < n; k++)
			patch.bytes += zstd_cli(k ? files[k - 1] : NULL, files[k], tmp_p, &s);
		for (unsigned q = 0; q < g_runs; q++)
			patch.pack_s[q] = s;
	}
	cfg cfgs[8];
	size_t ncfg = 0;
	for (int l = 0; l < 1 + (lossy > 0); l++) {
		int m = l ? ALCM_MODE_MAX_ERROR : ALCM_MODE_LOSSLESS;
		double b = l ? lossy : 0;
		cfgs[ncfg++] = (cfg){l ? "series max-error, --delta-against keyframe" : "series, --delta-against keyframe (default)",
		                     ALCM_SERIES_REF_ANCHOR, 0, m, b};
		cfgs[ncfg++] = (cfg){l ? "series max-error, --delta-against tree" : "series, --delta-against tree",
		                     ALCM_SERIES_REF_TREE, 0, m, b};
		cfgs[ncfg++] = (cfg){l ? "series max-error, --delta-against previous" : "series, --delta-against previous",
		                     ALCM_SERIES_REF_PREVIOUS, 0, m, b};
		if (!l)
			cfgs[ncfg++] = (cfg){"series, against previous, one keyframe (long chain)",
			                     ALCM_SERIES_REF_PREVIOUS, ALCM_SERIES_MAX_KEYFRAME_EVERY, m, b};
	}
	row rows[8];
	memset(rows, 0, sizeof(rows));
	for (size_t g = 0; g < ncfg; g++) {
		row *r = &rows[g];
		snprintf(r->label, sizeof(r->label), "%s", cfgs[g].label);
		r->lossless = cfgs[g].mode == ALCM_MODE_LOSSLESS;
		uint8_t d0[32] = {0};
		double *ratio = bench_xcalloc(n, sizeof(double)), *ra = bench_xcalloc(g_pairs, sizeof(double));
		for (unsigned rr = 0; rr < g_runs; rr++) {
			double t0 = bench_cpu_now();
			uint32_t keys = 0, since = 0, chain = 0;
			for (size_t k = 0; k < n; k++) {
				int key;
				series_frame(ser_p, &c[k], k, &cfgs[g], NULL, &key);
				keys += key;
				since = key ? 0 : since + 1;
				/* Deltas a decode of this frame goes through. */
				uint32_t depth = cfgs[g].reference == ALCM_SERIES_REF_ANCHOR ? since > 0
				                 : cfgs[g].reference == ALCM_SERIES_REF_PREVIOUS
				                     ? since : (uint32_t)__builtin_popcount(since);
				chain = depth > chain ? depth : chain;
			}
			r->pack_s[rr] = bench_cpu_now() - t0;
			r->keyframes = keys;
			r->chain = chain;
			r->bytes = file_size(ser_p);
			/* Same bytes every round. */
			uint8_t *fb;
			size_t fl;
			if (bench_read_file(ser_p, (size_t)1 << 32, &fb, &fl))
				die("cannot read '%s'", ser_p);
			uint8_t dg[32];
			crypto_generichash(dg, 32, fb, fl, NULL, 0);
			free(fb);
			if (rr && memcmp(dg, d0, 32))
				die("%s: the series came out differently in round %u", name, rr + 1);
			memcpy(d0, dg, 32);
			double us = 0;
			for (size_t k = 0; k < n; k++) {
				double t = decode(ser_p, (uint32_t)k, NULL, &c[k], rr == 0, cfgs[g].mode,
				                  cfgs[g].bound);
				us += t;
				if (k == n - 1)
					r->last_s[rr] = t;
			}
			r->unpack_s[rr] = us;
		}
		/* Each frame against the same checkpoint packed alone, in pairs. */
		r->worst_ratio = 0;
		for (size_t k = 0; k < n; k++) {
			snprintf(alone_p, sizeof(alone_p), "%s/alcm-series-bench.%d.%zu.alcm", g_tmp,
			         (int)getpid(), k);
			ratio[k] = paired(ser_p, (uint32_t)k, NULL, alone_p, &c[k], ra);
			if (ratio[k] > r->worst_ratio) {
				r->worst_ratio = ratio[k];
				r->worst_frame = (int)k;
			}
		}
		r->median_ratio = bench_median(ratio, (int)n);
		free(ratio);
		free(ra);
	}
	printf("| coding | bytes | ratio | vs alone | pack MB/s | unpack MB/s (all frames) | "
	       "decode frame / alone (median / worst) | last frame ms | keyframes / longest "
	       "chain |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	alone.median_ratio = 1, alone.worst_ratio = 1;
	print_row(&alone, raw, alone.bytes);
	print_row(&patch, raw, alone.bytes);
	for (size_t g = 0; g < ncfg; g++)
		print_row(&rows[g], raw, alone.bytes);
	/* What the ratios come from. */
	double same[MAX_CKPT], lb[MAX_CKPT];
	int wbits = 0;
	for (size_t k = 1; k < n; k++)
		changes(&c[k - 1], &c[k], &same[k - 1], &lb[k - 1], &wbits);
	if (n > 1)
		printf("\nBetween consecutive checkpoints (median over %zu pairs): %.1f%% of the values "
		       "keep their bits; the others move by 2^%.1f units in the last place (of %d-bit "
		       "values): about %.1f bits of each changed value are new.\n", n - 1,
		       100 * bench_median(same, (int)n - 1), bench_median(lb, (int)n - 1), wbits,
		       bench_median(lb, (int)n - 1) + 1);
	int rc = 0;
	if (target) {
		const row *d = &rows[0];
		double vs = (double)alone.bytes / (double)d->bytes;
		int h1 = vs >= 1.5, h2 = d->bytes < patch.bytes, h3 = d->worst_ratio <= 2;
		printf("\nTargets (%s, lossless series, the defaults: --delta-against keyframe, keyframes "
		       "chosen by size, deltas within the decode-cost budget):\n", name);
		printf("- series >= 1.5x smaller than each checkpoint packed alone: %.2fx: %s\n", vs,
		       h1 ? "holds" : "MISSES");
		printf("- smaller than zstd -19 --patch-from on the same pairs: %llu vs %llu bytes "
		       "(%.2fx): %s\n", (unsigned long long)d->bytes, (unsigned long long)patch.bytes,
		       (double)patch.bytes / (double)d->bytes, h2 ? "holds" : "MISSES");
		printf("- decoding any checkpoint within 2x decoding it packed alone (%s, %u decoding "
		       "thread%s%s, median of %u pairs a frame): worst %.2fx (frame %d), median %.2fx: "
		       "%s\n", g_wall ? "wall clock" : "CPU time", g_dthreads,
		       g_dthreads == 1 ? "" : "s", g_dthreads ? "" : " (all cores)", g_pairs,
		       d->worst_ratio, d->worst_frame, d->median_ratio, h3 ? "holds" : "MISSES");
		/* The writer's cost budget (spec 6.12.7) is 1.9 by its estimate, measured 1.72x
		 * (Adam) and 1.78x (SGD) at one thread: the worst frame within 1.8x leaves the 2x
		 * above a margin for a slower or busier machine. */
		printf("- with a margin: the worst frame within 1.8x: %.2fx: %s\n", d->worst_ratio,
		       d->worst_ratio <= 1.8 ? "holds" : "MISSES");
	}
	unlink(ser_p);
	for (size_t k = 0; k < n; k++) {
		snprintf(alone_p, sizeof(alone_p), "%s/alcm-series-bench.%d.%zu.alcm", g_tmp,
		         (int)getpid(), k);
		unlink(alone_p);
	}
	return rc;
}

/* A fine-tune stored against its base. */
static int run_finetune(const char *name, const char *base, const char *ft)
{
	ckpt b, f;
	load(base, &b);
	load(ft, &f);
	char bp[4096], fp[4096], ap[4096], tp[4096];
	snprintf(bp, sizeof(bp), "%s/alcm-series-bench.%d.base.alcm", g_tmp, (int)getpid());
	snprintf(fp, sizeof(fp), "%s/alcm-series-bench.%d.ft.alcm", g_tmp, (int)getpid());
	snprintf(ap, sizeof(ap), "%s/alcm-series-bench.%d.alone.alcm", g_tmp, (int)getpid());
	snprintf(tp, sizeof(tp), "%s/alcm-series-bench.%d.zst", g_tmp, (int)getpid());
	printf("\n### %s: a fine-tune stored against its base, %s, %.2f MB\n\n", name,
	       f.dtype ? alcm_dtype_name(f.dtype) : "?", (double)f.raw / 1e6);
	pack_alone(&b, bp, ALCM_MODE_LOSSLESS, 0);
	row alone = {.label = "fine-tune alone, lossless"}, patch = {.label = "zstd -19 --patch-from=base"},
	    ser = {.label = "alcm-pack --delta-from base"};
	for (unsigned rr = 0; rr < g_runs; rr++) {
		alone.pack_s[rr] = pack_alone(&f, ap, ALCM_MODE_LOSSLESS, 0);
		alone.bytes = file_size(ap);
		alone.unpack_s[rr] = alone.last_s[rr] =
			decode(ap, UINT32_MAX, NULL, &f, rr == 0, ALCM_MODE_LOSSLESS, 0);
		double t0 = bench_cpu_now();
		/* A plain (non-stream) archive of one frame, as alcm-pack --delta-from makes. */
		alcm_writer *w = NULL;
		alcm_reader *br = NULL;
		alcm_series *s = NULL;
		alcm_series_options so;
		alcm_series_options_default(&so);
		so.pack.threads = g_threads;
		so.base_name = base;
		int st = alcm_writer_open_file(&w, fp, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL);
		if (!st)
			st = alcm_reader_open_file(&br, bp, NULL, NULL, 0);
		if (!st)
			st = alcm_series_begin(&s, w, NULL, br, &so, NULL);
		for (size_t i = 0; i < f.n && !st; i++)
			st = alcm_series_add(s, &f.t[i], NULL);
		if (!st)
			st = alcm_series_finish(s, NULL);
		if (!st)
			st = alcm_writer_commit(w);
		if (st)
			die("%s: %s", name, s ? alcm_series_detail(s) : alcm_writer_detail(w));
		alcm_series_free(s);
		alcm_writer_free(w);
		alcm_reader_free(br);
		ser.pack_s[rr] = bench_cpu_now() - t0;
		ser.bytes = file_size(fp);
		ser.unpack_s[rr] = ser.last_s[rr] = decode(fp, UINT32_MAX, bp, &f, rr == 0,
		                                           ALCM_MODE_LOSSLESS, 0);
	}
	ser.chain = 1;
	double *pr = bench_xcalloc(g_pairs, sizeof(double));
	ser.median_ratio = ser.worst_ratio = paired(fp, UINT32_MAX, bp, ap, &f, pr);
	free(pr);
	double zs = 0;
	patch.bytes = zstd_cli(base, ft, tp, &zs);
	for (unsigned rr = 0; rr < g_runs; rr++)
		patch.pack_s[rr] = zs;
	printf("| coding | bytes | ratio | vs alone | pack MB/s | unpack MB/s | decode / alone | "
	       "ms | keyframes / chain |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	alone.median_ratio = alone.worst_ratio = 1;
	print_row(&alone, f.raw, alone.bytes);
	print_row(&patch, f.raw, alone.bytes);
	print_row(&ser, f.raw, alone.bytes);
	double same, lb;
	int wbits;
	changes(&b, &f, &same, &lb, &wbits);
	printf("\nBase to fine-tune: %.1f%% of the values keep their bits; the others move by "
	       "2^%.1f units in the last place (of %d-bit values).\n", 100 * same, lb, wbits);
	unlink(bp);
	unlink(fp);
	unlink(ap);
	return 0;
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	double lossy = 0;
	int i = 1;
	g_tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	for (; i < argc && argv[i][0] == '-'; i++) {
		uint64_t u;
		if (!strcmp(argv[i], "--runs") && i + 1 < argc && !cli_parse_u64(argv[i + 1], &u) &&
		    u >= 1 && u <= MAX_RUNS)
			g_runs = (unsigned)u, i++;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc &&
		         !cli_parse_u64(argv[i + 1], &u) && u <= 256)
			g_threads = (unsigned)u, i++;
		else if (!strcmp(argv[i], "--decode-threads") && i + 1 < argc &&
		         !cli_parse_u64(argv[i + 1], &u) && u <= 256)
			g_dthreads = (unsigned)u, i++;
		else if (!strcmp(argv[i], "--pairs") && i + 1 < argc &&
		         !cli_parse_u64(argv[i + 1], &u) && u >= 1 && u <= 101)
			g_pairs = (unsigned)u, i++;
		else if (!strcmp(argv[i], "--wall"))
			g_wall = 1;
		else if (!strcmp(argv[i], "--target") && i + 1 < argc)
			target = argv[++i];
		else if (!strcmp(argv[i], "--max-error") && i + 1 < argc &&
		         !cli_parse_double(argv[i + 1], &lossy) && lossy > 0)
			i++;
		else if (!strcmp(argv[i], "--tmp") && i + 1 < argc)
			g_tmp = argv[++i];
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (i == argc) {
		fputs(usage, stderr);
		return 2;
	}
	printf("## alcm-series-bench: %u rounds, %u coding thread%s, %u decoding thread%s%s\n\n"
	       "Pack times are process CPU seconds, decode times %s; MB/s from the median round. "
	       "Decode ratios: each frame against the "
	       "same checkpoint packed alone, same settings (threads, digest checks, cold CPU "
	       "caches), one untimed decode of each, then %u pairs one right after the other in "
	       "alternating order; the median of the pairs' ratios.\n", g_runs, g_threads,
	       g_threads == 1 ? "" : "s", g_dthreads, g_dthreads == 1 ? "" : "s",
	       g_dthreads ? "" : " (all cores)",
	       g_wall ? "wall-clock seconds" : "process CPU seconds (robust on a shared machine; with "
	       "one thread they are the work done)", g_pairs);
	int rc = 0;
	for (; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			die("expected NAME=DIR or NAME=BASE+FINETUNE, got '%s'", argv[i]);
		*eq = '\0';
		const char *name = argv[i], *what = eq + 1;
		char *plus = strchr(what, '+');
		if (plus) {
			*plus = '\0';
			rc |= run_finetune(name, what, plus + 1);
		} else {
			char **files = bench_xcalloc(MAX_CKPT, sizeof(char *));
			size_t n = list_dir(what, files);
			if (n < 2)
				die("'%s' holds fewer than two .safetensors", what);
			rc |= run_series(name, files, n, target && !strcmp(target, name), lossy);
			for (size_t k = 0; k < n; k++)
				free(files[k]);
			free(files);
		}
	}
	return rc;
}
