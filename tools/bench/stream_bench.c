/* alcm-stream-bench: the ALCM release's table, reproduced and then beaten. Per epoch of a
 * gradient stream it prints the NumPy savez_compressed baseline's ratio and CAQ, alcm's, and
 * the gain, for (a) synthetic 100x100 gradients over 10 epochs, as in the release, and (b)
 * real gradients written by tools/bench/digits_gradients.py (an MLP on scikit-learn's digits).
 * Every configuration runs --runs times from scratch: the ratios must come out identical (the
 * bench fails otherwise) and the CAQ gain's run-to-run spread is reported.
 *
 * CAQ = ratio / (cpu_seconds + 1), cpu_seconds being the process CPU time spent coding the
 * frame, measured in this process for both sides. The savez baseline is built here with zlib
 * exactly as numpy.savez_compressed lays it out (a zip of .npy members, deflate level 6,
 * zip64 local extra field); digits_gradients.py records numpy's own sizes and the bench checks
 * its baseline against them. */
#include "cli.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "bench_internal.h"

static const char usage[] =
	"usage: alcm-stream-bench [--runs N] [--epochs N] [--seed S] [--frames DIR]\n"
	"                         [--no-synthetic] [--json FILE]\n"
	"\n"
	"Reproduces the ALCM release's table: per epoch, the savez_compressed baseline's ratio\n"
	"and CAQ, alcm's ratio and CAQ (lossless, and lossy under the CAQ scheduler), and the CAQ\n"
	"gain; then the mean gain and its spread over runs. CAQ = ratio / (cpu_seconds + 1).\n"
	"\n"
	"  --runs N        runs of every configuration from scratch (default 5)\n"
	"  --epochs N      synthetic epochs (default 10, as in the release)\n"
	"  --seed S        synthetic data seed (default 1)\n"
	"  --frames DIR    also run the frames DIR/epoch_*.npz (any .npy/.npz/.safetensors,\n"
	"                  in name order), e.g. from tools/bench/digits_gradients.py DIR\n"
	"  --no-synthetic  only the --frames data\n"
	"  --json FILE     also write every number as JSON\n"
	"\n"
	"The scheduled stream starts at --rel-error 1e-3 with error feedback, may go to 5e-2 and\n"
	"pruning 0.25, and backs off under 20 dB SNR (alcm-pack --append --schedule defaults).\n"
	"\n"
	"Exit status: 0 done, 1 a ratio differed between runs or coding failed, 2 usage error,\n"
	"3 an input could not be read.\n";

#define MAX_RUNS 99
#define MAX_TENSORS 64

typedef struct frame {
	alcm_tensor t[MAX_TENSORS];
	char *name[MAX_TENSORS];
	uint8_t *data[MAX_TENSORS];
	size_t n;
} frame;

typedef struct seq {
	const char *label;
	frame *f;
	size_t nf;
	long numpy_size[1024]; /* numpy.savez_compressed sizes, -1 unknown */
} seq;

/* One configuration's results: [run][epoch]. */
typedef struct result {
	double ratio, caq, cpu, snr, maxerr, bound, prune;
	uint64_t stored;
	int decision;
} result;

enum { CFG_SAVEZ, CFG_LOSSLESS, CFG_SCHED, NCFG };
static const char *cfg_name[NCFG] = {"savez_compressed", "alcm lossless", "alcm scheduled"};
static const char *decision_name[] = {"start", "raise", "hold", "back off (caq)",
                                      "back off (snr)"};

/* ---- inputs --------------------------------------------------------------------------- */

static void frame_add(frame *f, const char *name, int dtype, uint32_t ndim,
                      const uint64_t *shape, const void *data, uint64_t nbytes)
{
	if (f->n == MAX_TENSORS) {
		fprintf(stderr, "alcm-stream-bench: more than %d tensors in a frame\n", MAX_TENSORS);
		exit(3);
	}
	size_t i = f->n++;
	f->name[i] = strdup(name);
	f->data[i] = bench_xmalloc(nbytes ? (size_t)nbytes : 1);
	if (!f->name[i]) {
		fprintf(stderr, "alcm-stream-bench: out of memory\n");
		exit(1);
	}
	memcpy(f->data[i], data, (size_t)nbytes);
	alcm_tensor *t = &f->t[i];
	memset(t, 0, sizeof(*t));
	t->name = f->name[i];
	t->name_len = strlen(name);
	t->dtype = dtype;
	t->ndim = ndim;
	memcpy(t->shape, shape, ndim * sizeof(uint64_t));
	t->data = f->data[i];
	t->nbytes = nbytes;
}

static void seq_free(seq *s)
{
	for (size_t e = 0; e < s->nf; e++)
		for (size_t i = 0; i < s->f[e].n; i++) {
			free(s->f[e].name[i]);
			free(s->f[e].data[i]);
		}
	free(s->f);
}

/* Synthetic gradients as in the release: one 100x100 float32 tensor per epoch. Each row has
 * its own scale (log-normal, fixed over the run, like a layer's channels) and the whole
 * gradient shrinks by 15% an epoch, as training converges. */
static void make_synthetic(seq *s, unsigned epochs, uint64_t seed)
{
	enum { R = 100, C = 100 };
	bench_rng rng = {seed};
	double row[R];
	for (int r = 0; r < R; r++)
		row[r] = exp(0.5 * bench_rng_gauss(&rng));
	s->label = "synthetic 100x100 gradients";
	s->nf = epochs;
	s->f = bench_xcalloc(epochs, sizeof(frame));
	static float g[R * C];
	double sigma = 0.01;
	for (unsigned e = 0; e < epochs; e++, sigma *= 0.85) {
		for (int r = 0; r < R; r++)
			for (int c = 0; c < C; c++)
				g[r * C + c] = (float)(sigma * row[r] * bench_rng_gauss(&rng));
		const uint64_t shape[2] = {R, C};
		frame_add(&s->f[e], "arr_0", ALCM_DTYPE_F32, 2, shape, g, sizeof(g));
	}
	for (size_t e = 0; e < 1024; e++)
		s->numpy_size[e] = -1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_frames(seq *s, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "alcm-stream-bench: cannot open %s\n", dir);
		return 3;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l < 5)
			continue;
		const char *x = strrchr(de->d_name, '.');
		if (!x || (strcmp(x, ".npz") && strcmp(x, ".npy") && strcmp(x, ".safetensors")))
			continue;
		names = bench_xrealloc(names, (n + 1) * sizeof(*names));
		names[n] = strdup(de->d_name);
		if (!names[n++]) {
			fprintf(stderr, "alcm-stream-bench: out of memory\n");
			exit(1);
		}
	}
	closedir(d);
	if (n == 0 || n > 1024) {
		fprintf(stderr, "alcm-stream-bench: %s holds %zu frames (1 to 1024 wanted)\n", dir, n);
		free(names);
		return 3;
	}
	qsort(names, n, sizeof(*names), cmp_str);
	s->label = dir;
	s->nf = n;
	s->f = bench_xcalloc(n, sizeof(frame));
	int rc = 0;
	for (size_t e = 0; e < n && !rc; e++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, names[e]);
		cli_input *in = NULL;
		int st = cli_input_open(&in, path);
		for (int has = 1; !st;) {
			alcm_tensor t;
			if ((st = cli_input_next(in, &t, &has)) || !has)
				break;
			char nm[256];
			snprintf(nm, sizeof(nm), "%.*s", (int)(t.name_len < 255 ? t.name_len : 255),
			         t.name);
			frame_add(&s->f[e], nm, t.dtype, t.ndim, t.shape, t.data, t.nbytes);
		}
		if (st) {
			fprintf(stderr, "alcm-stream-bench: %s: %s\n", path,
			        in ? cli_input_detail(in) : alcm_strerror(st));
			rc = 3;
		} else if (e > 0 && s->f[e].n != s->f[0].n) {
			fprintf(stderr, "alcm-stream-bench: %s has %zu tensors, the first frame %zu\n",
			        path, s->f[e].n, s->f[0].n);
			rc = 3;
		}
		cli_input_free(in);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	for (size_t e = 0; e < 1024; e++)
		s->numpy_size[e] = -1;
	char path[4096];
	snprintf(path, sizeof(path), "%s/savez_compressed.txt", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		long e, sz;
		while (fscanf(f, "%ld %ld", &e, &sz) == 2)
			if (e >= 0 && e < 1024)
				s->numpy_size[e] = sz;
		fclose(f);
	}
	return rc;
}

/* ---- the savez_compressed baseline ---------------------------------------------------- */

static const char *npy_descr(int dtype)
{
	switch (dtype) {
	case ALCM_DTYPE_F64: return "<f8";
	case ALCM_DTYPE_F16: return "<f2";
	case ALCM_DTYPE_F32: return "<f4";
	case ALCM_DTYPE_I64: return "<i8";
	case ALCM_DTYPE_I32: return "<i4";
	case ALCM_DTYPE_U8: return "|u1";
	default: return "|V2"; /* bfloat16 and others: numpy has no name; size is what counts */
	}
}

/* The .npy header numpy 1.24 writes: the dict, spare room for the first axis to grow to 21
 * digits, spaces to a multiple of 64 bytes with the newline. */
static size_t npy_header(const alcm_tensor *t, char *h, size_t cap)
{
	char shape[512] = "(";
	for (uint32_t d = 0; d < t->ndim; d++) {
		char x[32];
		snprintf(x, sizeof(x), "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
		strncat(shape, x, sizeof(shape) - strlen(shape) - 1);
	}
	strncat(shape, t->ndim == 1 ? ",)" : ")", sizeof(shape) - strlen(shape) - 1);
	char dict[1024];
	int n = snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
	                 npy_descr(t->dtype), shape);
	if (t->ndim) {
		char first[32];
		int fl = snprintf(first, sizeof(first), "%llu", (unsigned long long)t->shape[0]);
		for (int k = fl; k < 21 && n < (int)sizeof(dict) - 1; k++)
			dict[n++] = ' ';
		dict[n] = 0;
	}
	size_t total = 10 + (size_t)n + 1;
	size_t pad = (64 - total % 64) % 64;
	size_t hl = (size_t)n + pad + 1;
	if (10 + hl > cap)
		return 0;
	memcpy(h, "\x93NUMPY\x01\x00", 8);
	h[8] = (char)(hl & 0xff);
	h[9] = (char)(hl >> 8);
	memcpy(h + 10, dict, (size_t)n);
	memset(h + 10 + n, ' ', pad);
	h[10 + hl - 1] = '\n';
	return 10 + hl;
}

/* Size of numpy.savez_compressed of the frame: per member a local header with a zip64 extra
 * field (30 + name + 20), the deflated .npy (zlib level 6, raw deflate), a central directory
 * entry (46 + name); then the end record (22). */
static uint64_t savez_size(const frame *f, z_stream *z, uint8_t **out, size_t *cap)
{
	uint64_t total = 22;
	for (size_t i = 0; i < f->n; i++) {
		const alcm_tensor *t = &f->t[i];
		char h[4096];
		size_t hl = npy_header(t, h, sizeof(h));
		size_t need = (size_t)deflateBound(z, hl + t->nbytes) + 64;
		if (need > *cap) {
			*out = bench_xrealloc(*out, need);
			*cap = need;
		}
		deflateReset(z);
		z->next_out = *out;
		z->avail_out = (uInt)*cap;
		z->next_in = (Bytef *)h;
		z->avail_in = (uInt)hl;
		deflate(z, Z_NO_FLUSH);
		z->next_in = (Bytef *)t->data;
		z->avail_in = (uInt)t->nbytes;
		if (deflate(z, Z_FINISH) != Z_STREAM_END) {
			fprintf(stderr, "alcm-stream-bench: deflate failed\n");
			exit(1);
		}
		size_t nl = t->name_len + 4; /* NAME.npy */
		total += 30 + nl + 20 + z->total_out + 46 + nl;
	}
	return total;
}

/* ---- one run of one configuration ----------------------------------------------------- */

static uint64_t frame_raw(const frame *f)
{
	uint64_t n = 0;
	for (size_t i = 0; i < f->n; i++)
		n += f->t[i].nbytes;
	return n;
}

static int run_savez(const seq *s, result *res)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return 1;
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (size_t e = 0; e < s->nf; e++) {
		double c0 = bench_cpu_now();
		uint64_t sz = savez_size(&s->f[e], &z, &buf, &cap);
		double cpu = bench_cpu_now() - c0;
		result *r = &res[e];
		memset(r, 0, sizeof(*r));
		r->stored = sz;
		r->ratio = (double)frame_raw(&s->f[e]) / (double)sz;
		r->cpu = cpu;
		r->caq = r->ratio / (cpu + 1);
		r->snr = INFINITY;
		r->decision = -1;
	}
	free(buf);
	deflateEnd(&z);
	return 0;
}

static int run_alcm(const seq *s, int sched, result *res, uint64_t *archive_bytes)
{
	alcm_stream_options o;
	alcm_stream_options_default(&o);
	o.pack.threads = 1;
	if (sched) {
		o.pack.mode = ALCM_MODE_REL_ERROR;
		o.pack.bound = 1e-3;
		o.bound_max = 5e-2;
		o.schedule = 1;
		o.error_feedback = 1;
	}
	alcm_stream *st = NULL;
	alcm_writer *w = NULL;
	int rc = alcm_stream_new(&st, &o, NULL);
	if (!rc)
		rc = alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL);
	for (size_t e = 0; e < s->nf && !rc; e++) {
		alcm_frame_report fr;
		if ((rc = alcm_stream_encode(st, w, s->f[e].t, s->f[e].n, &fr))) {
			fprintf(stderr, "alcm-stream-bench: %s, frame %zu: %s\n", s->label, e,
			        alcm_stream_detail(st));
			break;
		}
		result *r = &res[e];
		r->stored = fr.stored_bytes;
		r->ratio = fr.ratio;
		r->caq = fr.caq;
		r->cpu = fr.cpu_seconds;
		r->snr = fr.snr_db;
		r->maxerr = fr.max_abs_error;
		r->bound = fr.bound;
		r->prune = fr.prune;
		r->decision = fr.decision;
	}
	if (!rc)
		rc = alcm_writer_commit(w);
	if (!rc) {
		const void *b;
		size_t len;
		alcm_writer_memory(w, &b, &len);
		*archive_bytes = len;
	}
	alcm_writer_free(w);
	alcm_stream_free(st);
	return rc ? 1 : 0;
}

/* ---- report --------------------------------------------------------------------------- */

static double mean_gain(const result *a, const result *base, size_t n)
{
	double g = 0;
	for (size_t e = 0; e < n; e++)
		g += a[e].caq / base[e].caq - 1;
	return g / (double)n;
}

static int bench_seq(seq *s, int runs, FILE *json, int first)
{
	size_t nf = s->nf;
	result *res[NCFG];
	uint64_t arch[NCFG][MAX_RUNS];
	for (int c = 0; c < NCFG; c++)
		res[c] = bench_xcalloc((size_t)runs * nf, sizeof(result));
	int rc = 0;
	/* Runs interleave the configurations, so that a noisy neighbour slows all of them. */
	for (int k = 0; k < runs && !rc; k++) {
		rc = run_savez(s, res[CFG_SAVEZ] + (size_t)k * nf);
		uint64_t total = 22;
		for (size_t e = 0; e < nf; e++)
			total += res[CFG_SAVEZ][(size_t)k * nf + e].stored - 22;
		arch[CFG_SAVEZ][k] = total; /* all epochs in one .npz, for the totals line */
		if (!rc)
			rc = run_alcm(s, 0, res[CFG_LOSSLESS] + (size_t)k * nf, &arch[CFG_LOSSLESS][k]);
		if (!rc)
			rc = run_alcm(s, 1, res[CFG_SCHED] + (size_t)k * nf, &arch[CFG_SCHED][k]);
	}
	if (rc)
		goto out;
	/* Ratios, bytes and decisions must be the same in every run. */
	int same = 1;
	for (int c = 0; c < NCFG; c++)
		for (int k = 1; k < runs; k++) {
			if (arch[c][k] != arch[c][0])
				same = 0;
			for (size_t e = 0; e < nf; e++) {
				const result *a = &res[c][(size_t)k * nf + e], *b = &res[c][e];
				if (a->stored != b->stored || a->ratio != b->ratio || a->decision != b->decision)
					same = 0;
			}
		}
	/* The table: per epoch, medians over runs of CPU-dependent columns. */
	uint64_t raw = 0;
	for (size_t e = 0; e < nf; e++)
		raw += frame_raw(&s->f[e]);
	printf("## %s: %zu epochs, %zu tensor%s, %llu bytes per epoch, %d runs\n\n", s->label, nf,
	       s->f[0].n, s->f[0].n == 1 ? "" : "s", (unsigned long long)frame_raw(&s->f[0]), runs);
	printf("| epoch | savez ratio | savez CAQ | lossless ratio | lossless CAQ | gain | "
	       "scheduled ratio | scheduled CAQ | gain | SNR dB | max abs err | rel bound | prune | "
	       "decision |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
	double *tmp = bench_xcalloc((size_t)runs, sizeof(double));
	double med_caq[NCFG][1024];
	for (size_t e = 0; e < nf; e++) {
		for (int c = 0; c < NCFG; c++) {
			for (int k = 0; k < runs; k++)
				tmp[k] = res[c][(size_t)k * nf + e].caq;
			med_caq[c][e] = bench_median(tmp, runs);
		}
		const result *b = &res[CFG_SAVEZ][e], *l = &res[CFG_LOSSLESS][e], *q = &res[CFG_SCHED][e];
		int d = q->decision;
		printf("| %zu | %.3f | %.3f | %.3f | %.3f | %+.1f%% | %.3f | %.3f | %+.1f%% | %.1f | "
		       "%.3g | %.3g | %.3f | %s |\n",
		       e, b->ratio, med_caq[CFG_SAVEZ][e], l->ratio, med_caq[CFG_LOSSLESS][e],
		       100 * (med_caq[CFG_LOSSLESS][e] / med_caq[CFG_SAVEZ][e] - 1), q->ratio,
		       med_caq[CFG_SCHED][e],
		       100 * (med_caq[CFG_SCHED][e] / med_caq[CFG_SAVEZ][e] - 1), q->snr, q->maxerr,
		       q->bound, q->prune, d >= 0 && d <= 4 ? decision_name[d] : "-");
	}
	/* Mean gain per run, then median and spread over runs. */
	double gl[MAX_RUNS], gs[MAX_RUNS];
	for (int k = 0; k < runs; k++) {
		gl[k] = mean_gain(res[CFG_LOSSLESS] + (size_t)k * nf, res[CFG_SAVEZ] + (size_t)k * nf, nf);
		gs[k] = mean_gain(res[CFG_SCHED] + (size_t)k * nf, res[CFG_SAVEZ] + (size_t)k * nf, nf);
	}
	double lo_l = gl[0], hi_l = gl[0], lo_s = gs[0], hi_s = gs[0];
	for (int k = 1; k < runs; k++) {
		lo_l = fmin(lo_l, gl[k]), hi_l = fmax(hi_l, gl[k]);
		lo_s = fmin(lo_s, gs[k]), hi_s = fmax(hi_s, gs[k]);
	}
	double mgl = bench_median(gl, runs), mgs = bench_median(gs, runs);
	printf("\nwhole stream: savez_compressed %.3fx (%llu bytes, one .npz of all epochs), "
	       "alcm lossless %.3fx (%llu bytes), alcm scheduled %.3fx (%llu bytes)\n",
	       (double)raw / (double)arch[CFG_SAVEZ][0], (unsigned long long)arch[CFG_SAVEZ][0],
	       (double)raw / (double)arch[CFG_LOSSLESS][0], (unsigned long long)arch[CFG_LOSSLESS][0],
	       (double)raw / (double)arch[CFG_SCHED][0], (unsigned long long)arch[CFG_SCHED][0]);
	printf("mean CAQ gain over savez_compressed (median of %d runs, spread = max - min):\n", runs);
	printf("  alcm lossless   %+.2f%%  (spread %.3f points)\n", 100 * mgl, 100 * (hi_l - lo_l));
	printf("  alcm scheduled  %+.2f%%  (spread %.3f points)\n", 100 * mgs, 100 * (hi_s - lo_s));
	printf("  release (ALCM vs NumPy savez, 100x100 x 10 epochs): +20.14%%, spread 4.37%% "
	       "(ratio 1.60x vs 1.33x)\n");
	printf("ratios identical in all %d runs: %s\n", runs, same ? "yes" : "NO");
	int checked = 0, match = 0;
	long worst = 0;
	for (size_t e = 0; e < nf && e < 1024; e++)
		if (s->numpy_size[e] >= 0) {
			long d = (long)res[CFG_SAVEZ][e].stored - s->numpy_size[e];
			checked++;
			match += d == 0;
			if (labs(d) > labs(worst))
				worst = d;
		}
	if (checked)
		printf("baseline against numpy.savez_compressed's own sizes: %d of %d epochs exact, "
		       "largest difference %+ld bytes\n",
		       match, checked, worst);
	printf("\n");
	if (json) {
		fprintf(json, "%s\n  {\"input\": ", first ? "" : ",");
		cli_json_string(json, s->label, strlen(s->label));
		fprintf(json, ", \"runs\": %d, \"ratios_identical\": %s, \"mean_gain_lossless\": %.6f, "
		              "\"spread_lossless\": %.6f, \"mean_gain_scheduled\": %.6f, "
		              "\"spread_scheduled\": %.6f, \"epochs\": [",
		        runs, same ? "true" : "false", mgl, hi_l - lo_l, mgs, hi_s - lo_s);
		for (size_t e = 0; e < nf; e++) {
			fprintf(json, "%s\n    {\"epoch\": %zu", e ? "," : "", e);
			for (int c = 0; c < NCFG; c++) {
				const result *r = &res[c][e];
				fprintf(json, ", \"%s\": {\"bytes\": %llu, \"ratio\": %.6f, \"caq\": %.6f",
				        cfg_name[c], (unsigned long long)r->stored, r->ratio, med_caq[c][e]);
				if (c == CFG_SCHED)
					fprintf(json, ", \"snr_db\": %.3f, \"max_abs_error\": %.6g, "
					              "\"bound\": %.6g, \"prune\": %.4f, \"decision\": %d",
					        r->snr, r->maxerr, r->bound, r->prune, r->decision);
				fprintf(json, "}");
			}
			fprintf(json, "}");
		}
		fprintf(json, "\n  ]}");
	}
	free(tmp);
	if (!same)
		rc = 1;
out:
	for (int c = 0; c < NCFG; c++)
		free(res[c]);
	return rc;
}

int main(int argc, char **argv)
{
	cli_init("alcm-stream-bench");
	int runs = 5, synthetic = 1;
	unsigned epochs = 10;
	uint64_t seed = 1;
	const char *frames = NULL, *json_path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		uint64_t v;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(a, "--no-synthetic")) {
			synthetic = 0;
		} else if (i + 1 < argc && !strcmp(a, "--frames")) {
			frames = argv[++i];
		} else if (i + 1 < argc && !strcmp(a, "--json")) {
			json_path = argv[++i];
		} else if (i + 1 < argc && !strcmp(a, "--runs") && !cli_parse_u64(argv[i + 1], &v) &&
		           v >= 1 && v <= MAX_RUNS) {
			runs = (int)v, i++;
		} else if (i + 1 < argc && !strcmp(a, "--epochs") && !cli_parse_u64(argv[i + 1], &v) &&
		           v >= 1 && v <= 1024) {
			epochs = (unsigned)v, i++;
		} else if (i + 1 < argc && !strcmp(a, "--seed") && !cli_parse_u64(argv[i + 1], &v)) {
			seed = v, i++;
		} else {
			fprintf(stderr, "alcm-stream-bench: bad argument '%s'\n%s", a, usage);
			return 2;
		}
	}
	if (!synthetic && !frames) {
		fprintf(stderr, "alcm-stream-bench: --no-synthetic needs --frames DIR\n");
		return 2;
	}
	FILE *json = NULL;
	if (json_path && !(json = fopen(json_path, "w"))) {
		fprintf(stderr, "alcm-stream-bench: cannot write %s\n", json_path);
		return 3;
	}
	if (json)
		fprintf(json, "{\"bench\": \"alcm-stream-bench\", \"inputs\": [");
	int rc = 0, first = 1;
	if (synthetic) {
		seq s;
		memset(&s, 0, sizeof(s));
		make_synthetic(&s, epochs, seed);
		rc = bench_seq(&s, runs, json, first);
		first = 0;
		seq_free(&s);
	}
	if (!rc && frames) {
		seq s;
		memset(&s, 0, sizeof(s));
		rc = load_frames(&s, frames);
		if (!rc)
			rc = bench_seq(&s, runs, json, first);
		seq_free(&s);
	}
	if (json) {
		fprintf(json, "\n]}\n");
		fclose(json);
	}
	return rc;
}
