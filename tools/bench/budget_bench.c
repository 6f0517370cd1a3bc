/* alcm-budget-bench: size budgets against one uniform bound. For each budget it runs
 * `alcm-pack --size` (the per-tensor bounds the predictor plans by equal slope), then finds by
 * bisection the single --max-error bound whose archive has the same size, and compares the
 * total squared error of the two over every float value. Both archives come from the same
 * alcm-pack binary and are decoded with the library; sizes are file sizes. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_internal.h"

static const char usage[] =
	"usage: alcm-budget-bench [--ratios LIST] [--pack PATH] [--json FILE] INPUT...\n"
	"\n"
	"For each INPUT (.npy, .npz, .safetensors, .h5) and each target ratio R (budget = float\n"
	"bytes / R + the non-float tensors' bytes), prints: the target size, what\n"
	"`alcm-pack --size` wrote and how far off it is, its total squared error (SSE), the one\n"
	"--max-error bound that gives an archive of the same size, that archive's SSE (log-log\n"
	"interpolated at exactly the budget archive's size between the two bisection points\n"
	"around it), and SSE budget / SSE uniform. Then whether every archive is within 3% of its\n"
	"budget and never worse than the uniform bound.\n"
	"\n"
	"  --ratios LIST  comma-separated target ratios (default 4,6,8,12,16)\n"
	"  --pack PATH    the alcm-pack to run (default: the one beside this program)\n"
	"  --json FILE    also write every number as JSON\n"
	"\n"
	"Exit status: 0 done (whether the targets hold or not), 1 a pack or decode failed,\n"
	"2 usage error, 3 an input could not be read.\n";

#define MAX_TENSORS 4096
#define MAX_RATIOS 16

typedef struct input {
	size_t n;
	alcm_tensor t[MAX_TENSORS];
	uint8_t *data[MAX_TENSORS];
	char *name[MAX_TENSORS];
	uint64_t float_bytes, other_bytes;
} input;

static char pack_path[4096], tmp_path[4096];

static int load(input *in, const char *path)
{
	cli_input *ci = NULL;
	int st = cli_input_open(&ci, path);
	for (int has = 1; !st;) {
		alcm_tensor t;
		if ((st = cli_input_next(ci, &t, &has)) || !has)
			break;
		if (in->n == MAX_TENSORS) {
			fprintf(stderr, "alcm-budget-bench: %s: more than %d tensors\n", path, MAX_TENSORS);
			cli_input_free(ci);
			return 3;
		}
		size_t i = in->n++;
		in->t[i] = t;
		in->data[i] = bench_xmalloc(t.nbytes ? (size_t)t.nbytes : 1);
		in->name[i] = bench_xmalloc(t.name_len + 1);
		memcpy(in->data[i], t.data, (size_t)t.nbytes);
		memcpy(in->name[i], t.name, t.name_len);
		in->name[i][t.name_len] = 0;
		in->t[i].data = in->data[i];
		in->t[i].name = in->name[i];
		*(alcm_dtype_is_float(t.dtype) ? &in->float_bytes : &in->other_bytes) += t.nbytes;
	}
	if (st)
		fprintf(stderr, "alcm-budget-bench: %s: %s\n", path,
		        ci ? cli_input_detail(ci) : alcm_strerror(st));
	cli_input_free(ci);
	return st ? 3 : 0;
}

static void input_free(input *in)
{
	for (size_t i = 0; i < in->n; i++) {
		free(in->data[i]);
		free(in->name[i]);
	}
}

/* Runs alcm-pack INPUT -o tmp ARGS; returns the archive's size, 0 on failure. */
static uint64_t pack(const char *input_path, const char *mode, const char *arg)
{
	pid_t pid = fork();
	if (pid == 0) {
		execl(pack_path, pack_path, input_path, "-o", tmp_path, "-f", "-q", "--threads", "2",
		      mode, arg, (char *)NULL);
		_exit(127);
	}
	int ws = 0;
	if (pid < 0 || waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		fprintf(stderr, "alcm-budget-bench: %s %s %s %s failed (status %d)\n", pack_path,
		        input_path, mode, arg, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
		return 0;
	}
	struct stat sb;
	return stat(tmp_path, &sb) ? 0 : (uint64_t)sb.st_size;
}

/* Total squared error of the archive at tmp_path over every float value; -1 on failure. */
static double sse_of_archive(const input *in)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	double sse = 0;
	int st = alcm_reader_open_file(&r, tmp_path, NULL, NULL, 0);
	if (!st)
		st = alcm_archive_open(&a, r, NULL);
	if (!st && alcm_archive_tensor_count(a) != in->n)
		st = ALCM_E_CORRUPT;
	uint8_t *buf = NULL;
	for (size_t i = 0; i < in->n && !st; i++) {
		const alcm_tensor *t = &in->t[i];
		alcm_tensor_info ti;
		if ((st = alcm_archive_tensor_info(a, i, &ti)))
			break;
		if (ti.name_len != t->name_len || memcmp(ti.name, t->name, t->name_len) ||
		    ti.raw_bytes != t->nbytes) {
			st = ALCM_E_CORRUPT;
			break;
		}
		buf = bench_xrealloc(buf, t->nbytes ? (size_t)t->nbytes : 1);
		if ((st = alcm_archive_decode(a, i, buf, (size_t)t->nbytes)))
			break;
		alcm_error_stats es;
		if ((st = alcm_tensor_measure(t, buf, &es)))
			break;
		if (!alcm_dtype_is_float(t->dtype) && !es.identical)
			st = ALCM_E_CORRUPT; /* integers are always lossless */
		sse += es.sq_error;
	}
	if (st)
		fprintf(stderr, "alcm-budget-bench: decoding %s: %s\n", tmp_path,
		        a ? alcm_archive_detail(a) : alcm_strerror(st));
	free(buf);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st ? -1 : sse;
}

typedef struct row {
	double ratio;
	uint64_t target, got;
	double sse_budget;
	double bound_lo, bound_hi; /* uniform bounds around the budget archive's size */
	uint64_t size_lo, size_hi; /* size_lo >= got >= size_hi */
	double sse_lo, sse_hi, sse_uniform;
	int ok;
} row;

static int bench_ratio(const char *path, const input *in, row *rw)
{
	char arg[64];
	rw->target = (uint64_t)((double)in->float_bytes / rw->ratio) + in->other_bytes;
	snprintf(arg, sizeof(arg), "%llu", (unsigned long long)rw->target);
	if (!(rw->got = pack(path, "--size", arg)) || (rw->sse_budget = sse_of_archive(in)) < 0)
		return 1;
	/* Bisection on log(bound): lo gives an archive at least as big as the budget's. */
	double lo = 1e-12, hi = 10;
	rw->size_lo = rw->size_hi = 0;
	for (int it = 0; it < 40 && hi / lo > 1.0005; it++) {
		double mid = sqrt(lo * hi);
		snprintf(arg, sizeof(arg), "%.9g", mid);
		uint64_t sz = pack(path, "--max-error", arg);
		double sse = sz ? sse_of_archive(in) : -1;
		if (!sz || sse < 0)
			return 1;
		if (sz >= rw->got) {
			lo = mid, rw->size_lo = sz, rw->sse_lo = sse, rw->bound_lo = mid;
		} else {
			hi = mid, rw->size_hi = sz, rw->sse_hi = sse, rw->bound_hi = mid;
		}
		if (sz == rw->got)
			break;
	}
	if (!rw->size_lo || !rw->size_hi || rw->size_lo == rw->got) {
		rw->sse_uniform = rw->size_lo == rw->got ? rw->sse_lo : rw->size_lo ? rw->sse_lo : rw->sse_hi;
	} else {
		/* log SSE is close to linear in log size between two nearby points. */
		double f = log((double)rw->got / (double)rw->size_hi) /
		           log((double)rw->size_lo / (double)rw->size_hi);
		rw->sse_uniform = exp(log(rw->sse_hi) + f * (log(rw->sse_lo) - log(rw->sse_hi)));
	}
	rw->ok = 1;
	return 0;
}

int main(int argc, char **argv)
{
	cli_init("alcm-budget-bench");
	double ratios[MAX_RATIOS] = {4, 6, 8, 12, 16};
	int nr = 5;
	const char *json_path = NULL;
	int first_input = argc;
	pack_path[0] = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		} else if (i + 1 < argc && !strcmp(a, "--json")) {
			json_path = argv[++i];
		} else if (i + 1 < argc && !strcmp(a, "--pack")) {
			snprintf(pack_path, sizeof(pack_path), "%s", argv[++i]);
		} else if (i + 1 < argc && !strcmp(a, "--ratios")) {
			nr = 0;
			for (char *s = argv[++i], *e; *s && nr < MAX_RATIOS; s = *e ? e + 1 : e) {
				double v = strtod(s, &e);
				if (e == s || (*e && *e != ',') || !(v > 1) || v > 1e6) {
					fprintf(stderr, "alcm-budget-bench: bad --ratios '%s'\n", argv[i]);
					return 2;
				}
				ratios[nr++] = v;
			}
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "alcm-budget-bench: bad argument '%s'\n%s", a, usage);
			return 2;
		} else {
			first_input = i;
			break;
		}
	}
	if (first_input >= argc || nr == 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (!pack_path[0]) {
		snprintf(pack_path, sizeof(pack_path), "%s", argv[0]);
		char *sl = strrchr(pack_path, '/');
		snprintf(sl ? sl + 1 : pack_path, sizeof(pack_path) - (size_t)(sl ? sl + 1 - pack_path : 0),
		         "alcm-pack");
	}
	if (access(pack_path, X_OK)) {
		fprintf(stderr, "alcm-budget-bench: %s: %s (use --pack PATH)\n", pack_path,
		        strerror(errno));
		return 2;
	}
	const char *td = getenv("TMPDIR");
	snprintf(tmp_path, sizeof(tmp_path), "%s/alcm-budget-bench-%ld.alcm", td && *td ? td : "/tmp",
	         (long)getpid());
	FILE *json = NULL;
	if (json_path && !(json = fopen(json_path, "w"))) {
		fprintf(stderr, "alcm-budget-bench: cannot write %s\n", json_path);
		return 3;
	}
	if (json)
		fprintf(json, "{\"bench\": \"alcm-budget-bench\", \"inputs\": [");
	int rc = 0, within = 1, better = 1;
	for (int f = first_input; f < argc && !rc; f++) {
		static input in;
		memset(&in, 0, sizeof(in));
		if ((rc = load(&in, argv[f])))
			break;
		printf("## %s: %zu tensors, %llu float bytes, %llu other bytes\n\n", argv[f], in.n,
		       (unsigned long long)in.float_bytes, (unsigned long long)in.other_bytes);
		printf("| ratio | budget bytes | --size wrote | off | SSE (--size) | uniform "
		       "--max-error | uniform bytes around | SSE (uniform, same size) | SSE "
		       "--size / uniform |\n");
		printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
		if (json)
			fprintf(json, "%s\n  {\"input\": \"%s\", \"rows\": [", f == first_input ? "" : ",",
			        argv[f]);
		for (int k = 0; k < nr && !rc; k++) {
			row rw;
			memset(&rw, 0, sizeof(rw));
			rw.ratio = ratios[k];
			if ((rc = bench_ratio(argv[f], &in, &rw)))
				break;
			double off = 100.0 * ((double)rw.got / (double)rw.target - 1);
			double q = rw.sse_uniform > 0 ? rw.sse_budget / rw.sse_uniform : 1;
			within &= fabs(off) <= 3;
			better &= q <= 1;
			printf("| %g | %llu | %llu | %+.2f%% | %.4g | %.3g..%.3g | %llu..%llu | %.4g | "
			       "%.3f |\n",
			       rw.ratio, (unsigned long long)rw.target, (unsigned long long)rw.got, off,
			       rw.sse_budget, rw.bound_lo, rw.bound_hi, (unsigned long long)rw.size_hi,
			       (unsigned long long)rw.size_lo, rw.sse_uniform, q);
			fflush(stdout);
			if (json)
				fprintf(json, "%s\n    {\"ratio\": %g, \"budget\": %llu, \"bytes\": %llu, "
				              "\"sse\": %.9g, \"uniform_bound\": [%.9g, %.9g], "
				              "\"uniform_bytes\": [%llu, %llu], \"uniform_sse\": %.9g}",
				        k ? "," : "", rw.ratio, (unsigned long long)rw.target,
				        (unsigned long long)rw.got, rw.sse_budget, rw.bound_lo, rw.bound_hi,
				        (unsigned long long)rw.size_hi, (unsigned long long)rw.size_lo,
				        rw.sse_uniform);
		}
		if (json)
			fprintf(json, "\n  ]}");
		printf("\n");
		input_free(&in);
	}
	unlink(tmp_path);
	if (json) {
		fprintf(json, "\n]}\n");
		fclose(json);
	}
	if (rc)
		return rc;
	printf("every archive within 3%% of its budget: %s\n", within ? "yes" : "NO");
	printf("SSE never above one uniform bound at the same size: %s\n", better ? "yes" : "NO");
	return 0;
}
