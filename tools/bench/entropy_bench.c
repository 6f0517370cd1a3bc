/*
 * alcm-entropy-bench: how close alcm's lossy coding comes to the entropy of its symbols
 * (issue 15), measured the same way on every file: the float tensors of at least 16K values,
 * E = the median over them of the max abs error GGUF Q8_0 makes on each, one archive at
 * --max-error E on one thread, compared with the order-0 ideal (sum over tensors of the
 * order-0 entropy of round(x / 2E)), the per-channel ideal (the same per slice along the
 * output-channel axis), a held-out estimate of what per-channel tables can really get, and
 * a lower bound on any code within the achieved error. Prints one table per file and the
 * targets (HOLDS/MISSES).
 */
#include "alcm.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#ifdef ALCM_BENCH_HAVE_ZFP
#include <zfp.h>
#endif

static const char usage[] =
	"usage: alcm-entropy-bench [--runs N] [--json FILE] [-v] FILE[:LAYOUT][:KIND]...\n"
	"\n"
	"Measures alcm's lossy coding against the entropy of its symbols, per file (issue 15).\n"
	"Takes the float tensors of at least 16384 values; E = median over them of the max abs\n"
	"error of GGUF Q8_0; packs them as one archive with --max-error E on one thread (format\n"
	"1.1 codings: 'alcm', and 1.0 codings only: 'alcm 1.0'), and compares with:\n"
	"  order-0 ideal      sum over tensors of n * H(round(x / 2E))\n"
	"  per-channel ideal  the same per slice along the output-channel axis (plug-in: table\n"
	"                     cost ignored, and optimistic on short channels)\n"
	"  per-channel (held-out)  channel tables learnt on half of each channel's values and\n"
	"                     scored on the other half (mixed with the tensor's table, best mix)\n"
	"  Shannon bound      per tensor, a lower bound on the bits of any code of its values\n"
	"                     (as a memoryless source) within alcm's achieved max error\n"
	"  Q8_0+zstd-3, zfp @ E (fixed accuracy tuned per tensor to stay within E)\n"
	"  zstd-3 of the raw bytes, timed in the same rounds: the speed peer of pack and unpack\n"
	"\n"
	"LAYOUT: torch (output channels on axis 0, the default) or tf (last axis).\n"
	"KIND: weights (default) or grads; the targets differ.\n"
	"\n"
	"Options:\n"
	"  --runs N     timed rounds, median reported (default 5)\n"
	"  --json FILE  every number, per file\n"
	"  -v           one line per tensor\n"
	"\n"
	"Exit status: 0 done (whether targets hold or not), 1 a decode failed or broke the bound,\n"
	"2 usage, 3 i/o.\n";

#define MB 1e6
#define BLOCK 32
#define MIN_ELEMS 16384
#define MAX_RUNS 99

/* ---- small helpers ------------------------------------------------------------------------ */

static double wall(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		cli_err("out of memory");
		exit(EXIT_NOMEM);
	}
	return p;
}

static void *xcalloc(size_t n, size_t s)
{
	void *p = calloc(n ? n : 1, s ? s : 1);
	if (!p) {
		cli_err("out of memory");
		exit(EXIT_NOMEM);
	}
	return p;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double t[MAX_RUNS];
	memcpy(t, v, (size_t)n * sizeof(double));
	qsort(t, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static float half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0x1f)
		u = s | 0x7f800000u | (m << 13);
	else if (e)
		u = s | ((e + 112) << 23) | (m << 13);
	else if (m) {
		e = 113;
		while (!(m & 0x400)) {
			m <<= 1;
			e--;
		}
		u = s | (e << 23) | ((m & 0x3ff) << 13);
	} else
		u = s;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint16_t float_to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u)
		return (uint16_t)(s | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
	if (a >= 0x477ff000u)
		return (uint16_t)(s | 0x7c00);
	if (a < 0x38800000u) {
		if (a < 0x33000000u)
			return s;
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000, sh = 126 - e;
		uint32_t r = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(s | r);
	}
	uint32_t r = a - 0x38000000u, v = r >> 13, rem = r & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
		v++;
	return (uint16_t)(s | v);
}

/* ---- inputs -------------------------------------------------------------------------------- */

typedef struct tens {
	char *name;
	alcm_tensor t;   /* t.data points at data */
	uint8_t *data;
	float *f;        /* the values as float32 (Q8_0 and zfp work on these) */
	double *x;       /* the values as double */
	uint64_t n;
	uint64_t channels, inner, stride; /* channel c: elements c*inner + k*stride... */
	double q8err, alcm_err[2];
	uint64_t stored[2]; /* bytes of the tensor's sections */
} tens;

typedef struct input {
	char label[96];
	int tf, grads;
	tens *t;
	size_t nt;
	uint64_t raw, values, skipped;
} input;

static double load_value(int dtype, const uint8_t *p, uint64_t i)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		return half_to_float(h);
	}
	case ALCM_DTYPE_BF16: {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		uint32_t u = (uint32_t)h << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	case ALCM_DTYPE_F32: {
		float f;
		memcpy(&f, p + 4 * i, 4);
		return f;
	}
	default: {
		double d;
		memcpy(&d, p + 8 * i, 8);
		return d;
	}
	}
}

static int load_input(input *in, const char *spec)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", spec);
	for (int k = 0; k < 2; k++) {
		char *c = strrchr(path, ':');
		if (!c)
			break;
		if (!strcmp(c + 1, "tf"))
			in->tf = 1;
		else if (!strcmp(c + 1, "grads"))
			in->grads = 1;
		else if (strcmp(c + 1, "torch") && strcmp(c + 1, "weights"))
			break;
		*c = 0;
	}
	const char *base = strrchr(path, '/');
	snprintf(in->label, sizeof(in->label), "%.95s", base ? base + 1 : path);
	alcm_input *ai = NULL;
	int st = alcm_input_open(&ai, path, NULL, NULL), has = 1;
	while (!st && has) {
		alcm_tensor t;
		if ((st = alcm_input_next(ai, &t, &has)) || !has)
			break;
		uint64_t n = 1;
		for (unsigned d = 0; d < t.ndim; d++)
			n *= t.shape[d];
		int fl = t.dtype == ALCM_DTYPE_F16 || t.dtype == ALCM_DTYPE_BF16 ||
		         t.dtype == ALCM_DTYPE_F32 || t.dtype == ALCM_DTYPE_F64;
		if (!fl || n < MIN_ELEMS) {
			in->skipped++;
			continue;
		}
		in->t = realloc(in->t, (in->nt + 1) * sizeof(tens));
		if (!in->t) {
			cli_err("out of memory");
			exit(EXIT_NOMEM);
		}
		tens *d = &in->t[in->nt++];
		memset(d, 0, sizeof(*d));
		d->name = xmalloc(t.name_len + 1);
		memcpy(d->name, t.name, t.name_len);
		d->name[t.name_len] = 0;
		d->t = t;
		d->data = xmalloc(t.nbytes);
		memcpy(d->data, t.data, t.nbytes);
		d->t.name = d->name;
		d->t.data = d->data;
		d->n = n;
		d->f = xmalloc(n * sizeof(float));
		d->x = xmalloc(n * sizeof(double));
		for (uint64_t i = 0; i < n; i++) {
			d->x[i] = load_value(t.dtype, d->data, i);
			d->f[i] = (float)d->x[i];
		}
		/* The output-channel axis: 0 in PyTorch layouts, the last in TF/Keras ones. */
		uint64_t ax = t.ndim < 2 ? 1 : in->tf ? t.shape[t.ndim - 1] : t.shape[0];
		d->channels = ax;
		d->inner = in->tf ? 1 : n / ax;
		d->stride = in->tf ? ax : 1;
		in->raw += t.nbytes;
		in->values += n;
	}
	if (st) {
		const char *dd = ai ? alcm_input_detail(ai) : "";
		cli_err("cannot read '%s': %s", path, *dd ? dd : alcm_strerror(st));
	}
	alcm_input_free(ai);
	return st;
}

/* ---- ggml's Q8_0 (reference of ggml-quants.c), + zstd -3 ---------------------------------- */

static size_t q8_quantize(const float *x, size_t n, uint8_t *y)
{
	size_t nb = (n + BLOCK - 1) / BLOCK;
	for (size_t b = 0; b < nb; b++) {
		float v[BLOCK] = {0};
		size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
		memcpy(v, x + b * BLOCK, m * sizeof(float));
		float amax = 0;
		for (int j = 0; j < BLOCK; j++)
			amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
		const float d = amax / 127;
		const float id = d ? 1.0f / d : 0.0f;
		uint16_t h = float_to_half(d);
		uint8_t *o = y + b * (2 + BLOCK);
		memcpy(o, &h, 2);
		for (int j = 0; j < BLOCK; j++)
			o[2 + j] = (uint8_t)(int8_t)roundf(v[j] * id);
	}
	return nb * (2 + BLOCK);
}

/* Max abs error of Q8_0 on a tensor. */
static double q8_error(const tens *d)
{
	uint8_t *y = xmalloc((d->n / BLOCK + 1) * (2 + BLOCK));
	q8_quantize(d->f, d->n, y);
	double e = 0;
	for (uint64_t i = 0; i < d->n; i++) {
		const uint8_t *o = y + (i / BLOCK) * (2 + BLOCK);
		uint16_t h;
		memcpy(&h, o, 2);
		double r = (double)((float)(int8_t)o[2 + i % BLOCK] * half_to_float(h));
		double err = fabs(d->x[i] - r);
		e = err > e ? err : e;
	}
	free(y);
	return e;
}

/* ---- entropies ----------------------------------------------------------------------------- */

/* Symbols of a tensor at step s: round(x / s), as int64 (values far out clamp; they would be
 * escapes for any coder). */
static int64_t *symbols(const tens *d, double s, int64_t *lo, int64_t *hi)
{
	int64_t *q = xmalloc(d->n * sizeof(int64_t));
	*lo = INT64_MAX;
	*hi = INT64_MIN;
	for (uint64_t i = 0; i < d->n; i++) {
		double v = d->x[i] / s;
		v = isfinite(v) ? nearbyint(v) : 0;
		v = v > 1e15 ? 1e15 : v < -1e15 ? -1e15 : v;
		q[i] = (int64_t)v;
		*lo = q[i] < *lo ? q[i] : *lo;
		*hi = q[i] > *hi ? q[i] : *hi;
	}
	return q;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double nlog2n(double n)
{
	return n > 0 ? n * log2(n) : 0;
}

/* Symbols mapped to 0 .. m-1 (sorted distinct values): dense ids for count arrays. */
static uint32_t *dense_ids(const int64_t *q, uint64_t n, uint32_t *m)
{
	int64_t *s = xmalloc(n * sizeof(int64_t));
	memcpy(s, q, n * sizeof(int64_t));
	qsort(s, n, sizeof(int64_t), cmp_i64);
	uint64_t k = 0;
	for (uint64_t i = 0; i < n; i++)
		if (!k || s[i] != s[k - 1])
			s[k++] = s[i];
	uint32_t *id = xmalloc(n * sizeof(uint32_t));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t a = 0, b = k;
		while (a < b) {
			uint64_t c = (a + b) / 2;
			if (s[c] < q[i])
				a = c + 1;
			else
				b = c;
		}
		id[i] = (uint32_t)a;
	}
	free(s);
	*m = (uint32_t)k;
	return id;
}

/* Index of element k of channel c. */
static inline uint64_t chan_elem(const tens *d, uint64_t c, uint64_t k)
{
	return d->stride == 1 ? c * d->inner + k : k * d->stride + c;
}

typedef struct ideal {
	double order0, channel, heldout; /* bits */
} ideal;

/* Order-0, per-channel and held-out per-channel bits of one tensor at step s. */
static void ideals(const tens *d, double s, ideal *r)
{
	int64_t lo, hi;
	int64_t *q = symbols(d, s, &lo, &hi);
	uint32_t m;
	uint32_t *id = dense_ids(q, d->n, &m);
	free(q);
	uint64_t *cnt = xcalloc(m, sizeof(uint64_t));
	for (uint64_t i = 0; i < d->n; i++)
		cnt[id[i]]++;
	double h = nlog2n((double)d->n);
	for (uint32_t k = 0; k < m; k++)
		h -= nlog2n((double)cnt[k]);
	r->order0 = h;
	/* Per channel, plug-in. */
	uint64_t per = d->n / d->channels;
	memset(cnt, 0, m * sizeof(uint64_t));
	double hc = 0;
	for (uint64_t c = 0; c < d->channels; c++) {
		for (uint64_t k = 0; k < per; k++)
			cnt[id[chan_elem(d, c, k)]]++;
		hc += nlog2n((double)per);
		for (uint64_t k = 0; k < per; k++) {
			uint32_t v = id[chan_elem(d, c, k)];
			if (cnt[v]) {
				hc -= nlog2n((double)cnt[v]);
				cnt[v] = 0;
			}
		}
	}
	r->channel = hc;
	/* Held out: train on one parity of each channel's positions, score the other, both ways;
	 * P = lambda * channel + (1 - lambda) * tensor (+1/2 smoothing), the best lambda. */
	static const double lams[] = {0, 0.1, 0.2, 0.4, 0.6};
	double best = INFINITY;
	uint64_t *tot = xcalloc(m, sizeof(uint64_t));
	double cost[5] = {0};
	for (int par = 0; par < 2; par++) {
		memset(tot, 0, m * sizeof(uint64_t));
		uint64_t ntr = 0;
		for (uint64_t c = 0; c < d->channels; c++)
			for (uint64_t k = par; k < per; k += 2) {
				tot[id[chan_elem(d, c, k)]]++;
				ntr++;
			}
		for (uint64_t c = 0; c < d->channels; c++) {
			uint64_t nc = 0;
			for (uint64_t k = par; k < per; k += 2) {
				cnt[id[chan_elem(d, c, k)]]++;
				nc++;
			}
			for (uint64_t k = 1 - par; k < per; k += 2) {
				uint32_t v = id[chan_elem(d, c, k)];
				double pt = ((double)tot[v] + 0.5) / ((double)ntr + 0.5 * m);
				double pc = nc ? (double)cnt[v] / (double)nc : 0;
				for (int l = 0; l < 5; l++)
					cost[l] -= log2(lams[l] * pc + (1 - lams[l]) * pt);
			}
			for (uint64_t k = par; k < per; k += 2)
				cnt[id[chan_elem(d, c, k)]] = 0;
		}
	}
	for (int l = 0; l < 5; l++)
		best = cost[l] < best ? cost[l] : best;
	r->heldout = best;
	free(tot);
	free(cnt);
	free(id);
}

/* A lower bound on the bits of any code that keeps every value of the tensor (taken as a
 * memoryless source with the tensor's empirical distribution) within D: for a grid of bins
 * of width delta, I(X; Y) >= H(bin(X)) - H(bin(X) | Y), and given Y = y, X lies in
 * [y - D, y + D], whose bins are at most floor(2D / delta) + 2 consecutive ones, of which
 * at most M are occupied: R(D) >= H(bin) - log2 M. The best over delta = 2D / 2^k. Exact
 * (= the entropy of the values) for values on a lattice coarser than 2D; about
 * h(X) - log2(2D) for smooth densities. */
static double shannon_bound(const tens *d, double D)
{
	if (!(D > 0))
		return 0;
	double best = 0;
	for (int k = 0; k <= 6; k++) {
		double delta = 2 * D / (double)(1 << k);
		int64_t lo, hi;
		int64_t *q = symbols(d, delta, &lo, &hi);
		qsort(q, d->n, sizeof(int64_t), cmp_i64);
		double h = nlog2n((double)d->n);
		uint64_t run = 1, occ = 0;
		for (uint64_t i = 1; i <= d->n; i++) {
			if (i < d->n && q[i] == q[i - 1]) {
				run++;
				continue;
			}
			h -= nlog2n((double)run);
			run = 1;
			q[occ++] = q[i - 1];
		}
		/* Most occupied bins among W consecutive bin indices. */
		int64_t W = (int64_t)(1 << k) + 2;
		uint64_t M = 0, a = 0;
		for (uint64_t b = 0; b < occ; b++) {
			while (q[b] - q[a] >= W)
				a++;
			M = b - a + 1 > M ? b - a + 1 : M;
		}
		double bound = h - (double)d->n * log2((double)(M ? M : 1));
		best = bound > best ? bound : best;
		free(q);
	}
	return best;
}

/* ---- alcm ------------------------------------------------------------------------------- */

typedef struct coded {
	alcm_writer *w;
	const void *buf;
	size_t len;
} coded;

static int alcm_pack_input(input *in, double E, unsigned minor, coded *out)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = E;
	o.threads = 1;
	o.max_minor = minor;
	alcm_encoder *e = NULL;
	int st = alcm_writer_open_memory(&out->w, 0, NULL);
	if (!st)
		st = alcm_encoder_new(&e, out->w, &o, NULL);
	for (size_t i = 0; i < in->nt && !st; i++) {
		alcm_tensor_report rep;
		st = alcm_encoder_add(e, &in->t[i].t, &rep);
		in->t[i].stored[minor ? 1 : 0] = rep.stored_bytes;
	}
	if (!st)
		st = alcm_encoder_finish(e);
	if (st)
		cli_err("pack: %s", e ? alcm_encoder_detail(e) : alcm_strerror(st));
	if (!st && (st = alcm_writer_commit(out->w)))
		cli_err("commit: %s", alcm_writer_detail(out->w));
	alcm_encoder_free(e);
	if (!st)
		st = alcm_writer_memory(out->w, &out->buf, &out->len);
	return st;
}

static int alcm_unpack_input(const input *in, const coded *c, int verify, unsigned threads,
                             uint8_t **dec)
{
	alcm_reader *rd = NULL;
	alcm_archive *a = NULL;
	int st = alcm_reader_open_memory(&rd, c->buf, c->len, "bench", NULL, NULL,
	                                 verify ? 0 : ALCM_READ_NO_VERIFY);
	if (!st)
		st = alcm_archive_open(&a, rd, NULL);
	if (!st)
		st = alcm_archive_set_threads(a, threads);
	for (size_t i = 0; i < in->nt && !st; i++)
		st = alcm_archive_decode(a, i, dec[i], in->t[i].t.nbytes);
	if (st)
		cli_err("unpack: %s", a ? alcm_archive_detail(a)
		                        : rd ? alcm_reader_detail(rd) : alcm_strerror(st));
	alcm_archive_free(a);
	alcm_reader_free(rd);
	return st;
}

/* ---- zfp ----------------------------------------------------------------------------------- */

#ifdef ALCM_BENCH_HAVE_ZFP
static size_t zfp_code(float *data, size_t n, double tol, uint8_t *buf, size_t cap, int decode)
{
	zfp_field *f = zfp_field_1d(data, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	bitstream *bs = stream_open(buf, cap);
	zfp_stream_set_accuracy(z, tol);
	zfp_stream_set_bit_stream(z, bs);
	zfp_stream_rewind(z);
	size_t got = decode ? zfp_decompress(z, f) : zfp_compress(z, f);
	stream_close(bs);
	zfp_stream_close(z);
	zfp_field_free(f);
	return got;
}

/* Bytes of the largest accuracy 2^k whose max error stays within E (8 bytes of length too). */
static double zfp_bytes(const tens *d, double E)
{
	zfp_field *f = zfp_field_1d(d->f, zfp_type_float, d->n);
	zfp_stream *z = zfp_stream_open(NULL);
	zfp_stream_set_accuracy(z, E);
	size_t cap = zfp_stream_maximum_size(z, f) + 64;
	zfp_stream_close(z);
	zfp_field_free(f);
	uint8_t *buf = xmalloc(cap);
	float *y = xmalloc(d->n * sizeof(float));
	double best = 0;
	for (int k = (int)floor(log2(E)); k < (int)floor(log2(E)) + 4; k++) {
		double tol = ldexp(1.0, k);
		size_t len = zfp_code(d->f, d->n, tol, buf, cap, 0);
		if (!len)
			break;
		zfp_code(y, d->n, tol, buf, cap, 1);
		double err = 0;
		for (uint64_t i = 0; i < d->n; i++)
			err = fmax(err, fabs(d->x[i] - (double)y[i]));
		if (err > E)
			break;
		best = (double)len + 8;
	}
	free(buf);
	free(y);
	return best > 0 ? best : (double)d->n * 4 + 8;
}
#endif

/* ---- one file ------------------------------------------------------------------------------ */

typedef struct result {
	double E, order0, channel, heldout, shannon, q8, zfp;
	size_t bytes[2];                    /* alcm 1.0 codings, alcm: the archive */
	uint64_t tensor_bytes[2];           /* the same, the tensors' sections only */
	double pack[2], unpack[2], unpack2v[2];       /* MB/s, wall medians */
	double pack_cpu[2], unpack_cpu[2];            /* MB/s, CPU-time medians */
	double zstd, zpack, zunpack; /* the peer: zstd -3 of the raw bytes, ratio and MB/s */
	int failed;
} result;

typedef struct target {
	char what[256], detail[512];
	int holds;
} target;

static void bench_input(input *in, int runs, int verbose, result *r, target *tg, int *ntg)
{
	memset(r, 0, sizeof(*r));
	double *errs = xmalloc(in->nt * sizeof(double));
	for (size_t i = 0; i < in->nt; i++)
		errs[i] = in->t[i].q8err = q8_error(&in->t[i]);
	qsort(errs, in->nt, sizeof(double), cmp_double);
	double E = in->nt % 2 ? errs[in->nt / 2] : (errs[in->nt / 2 - 1] + errs[in->nt / 2]) / 2;
	free(errs);
	r->E = E;
	/* Q8_0 + zstd -3, over all tensors. */
	size_t q8b = 0;
	ZSTD_CCtx *zc = ZSTD_createCCtx();
	for (size_t i = 0; i < in->nt; i++) {
		tens *d = &in->t[i];
		size_t qn = (d->n / BLOCK + 1) * (2 + BLOCK);
		uint8_t *y = xmalloc(qn), *z = xmalloc(ZSTD_compressBound(qn));
		qn = q8_quantize(d->f, d->n, y);
		q8b += ZSTD_compressCCtx(zc, z, ZSTD_compressBound(qn), y, qn, 3);
		free(y);
		free(z);
	}
	ZSTD_freeCCtx(zc);
	r->q8 = (double)in->raw / (double)q8b;
#ifdef ALCM_BENCH_HAVE_ZFP
	double zb = 0;
	for (size_t i = 0; i < in->nt; i++)
		zb += zfp_bytes(&in->t[i], E);
	r->zfp = (double)in->raw / zb;
#endif
	/* alcm, 1.0 codings (k = 0) and all codings (k = 1); timed rounds. */
	coded c[2];
	memset(c, 0, sizeof(c));
	uint8_t **dec = xmalloc(in->nt * sizeof(uint8_t *));
	for (size_t i = 0; i < in->nt; i++)
		dec[i] = xmalloc(in->t[i].t.nbytes);
	double tp[2][MAX_RUNS], tu[2][MAX_RUNS], tv[2][MAX_RUNS], cp[2][MAX_RUNS], cu[2][MAX_RUNS];
	double zp[MAX_RUNS], zu[MAX_RUNS];
	ZSTD_CCtx *zcc = ZSTD_createCCtx();
	ZSTD_DCtx *zdc = ZSTD_createDCtx();
	size_t zcap = 0, zlen = 0;
	for (size_t i = 0; i < in->nt; i++)
		if (ZSTD_compressBound(in->t[i].t.nbytes) > zcap)
			zcap = ZSTD_compressBound(in->t[i].t.nbytes);
	uint8_t *zbuf = xmalloc(zcap);
	for (int run = 0; run < runs && !r->failed; run++) {
		/* The peer in the same rounds: zstd -3 of each tensor's bytes, one thread. */
		double z0 = wall(), zd = 0;
		zlen = 0;
		for (size_t i = 0; i < in->nt; i++) {
			size_t zn = ZSTD_compressCCtx(zcc, zbuf, zcap, in->t[i].t.data, in->t[i].t.nbytes, 3);
			zlen += zn;
			double d0 = wall();
			if (ZSTD_isError(zn) ||
			    ZSTD_decompressDCtx(zdc, dec[i], in->t[i].t.nbytes, zbuf, zn) != in->t[i].t.nbytes)
				r->failed = 1;
			zd += wall() - d0;
		}
		zp[run] = wall() - z0 - zd;
		zu[run] = zd;
		for (int k = 0; k < 2 && !r->failed; k++) {
			alcm_writer_free(c[k].w);
			memset(&c[k], 0, sizeof(c[k]));
			double w0 = wall(), c0 = cpu();
			if (alcm_pack_input(in, E, (unsigned)k, &c[k])) {
				r->failed = 1;
				break;
			}
			tp[k][run] = wall() - w0;
			cp[k][run] = cpu() - c0;
			w0 = wall();
			c0 = cpu();
			if (alcm_unpack_input(in, &c[k], 0, 1, dec)) {
				r->failed = 1;
				break;
			}
			tu[k][run] = wall() - w0;
			cu[k][run] = cpu() - c0;
			w0 = wall();
			if (alcm_unpack_input(in, &c[k], 1, 2, dec)) {
				r->failed = 1;
				break;
			}
			tv[k][run] = wall() - w0;
			if (run == 0) {
				/* Bound check and achieved error, from the verified decode. */
				for (size_t i = 0; i < in->nt; i++) {
					alcm_error_stats es;
					alcm_tensor_measure(&in->t[i].t, dec[i], &es);
					in->t[i].alcm_err[k] = es.max_abs_error;
					if (!(es.max_abs_error <= E) || !es.specials_exact) {
						cli_err("%s: tensor '%s' decoded with error %g > %g",
						        in->label, in->t[i].name, es.max_abs_error, E);
						r->failed = 1;
					}
				}
			}
		}
	}
	ZSTD_freeCCtx(zcc);
	ZSTD_freeDCtx(zdc);
	free(zbuf);
	if (!r->failed) {
		r->zstd = (double)in->raw / (double)zlen;
		r->zpack = (double)in->raw / MB / median(zp, runs);
		r->zunpack = (double)in->raw / MB / median(zu, runs);
	}
	for (int k = 0; k < 2 && !r->failed; k++) {
		double raw = (double)in->raw / MB;
		r->bytes[k] = c[k].len;
		for (size_t i = 0; i < in->nt; i++)
			r->tensor_bytes[k] += in->t[i].stored[k];
		r->pack[k] = raw / median(tp[k], runs);
		r->unpack[k] = raw / median(tu[k], runs);
		r->unpack2v[k] = raw / median(tv[k], runs);
		r->pack_cpu[k] = raw / median(cp[k], runs);
		r->unpack_cpu[k] = raw / median(cu[k], runs);
	}
	for (int k = 0; k < 2; k++)
		alcm_writer_free(c[k].w);
	for (size_t i = 0; i < in->nt; i++)
		free(dec[i]);
	free(dec);
	/* Ideals and the bound, per tensor. */
	for (size_t i = 0; i < in->nt; i++) {
		tens *d = &in->t[i];
		ideal id;
		ideals(d, 2 * E, &id);
		double sb = shannon_bound(d, d->alcm_err[1]);
		r->order0 += id.order0;
		r->channel += id.channel;
		r->heldout += id.heldout;
		r->shannon += sb;
		if (verbose)
			printf("  %s [%llu ch x %llu]: Q8_0 err %.4g; bits/value order-0 %.4f, "
			       "per-channel %.4f (held-out %.4f), bound %.4f at err %.4g; alcm %.4f, "
			       "1.0 codings %.4f\n", d->name,
			       (unsigned long long)d->channels, (unsigned long long)(d->n / d->channels),
			       d->q8err, id.order0 / (double)d->n, id.channel / (double)d->n,
			       id.heldout / (double)d->n, sb / (double)d->n, d->alcm_err[1],
			       8.0 * (double)d->stored[1] / (double)d->n,
			       8.0 * (double)d->stored[0] / (double)d->n);
	}
	if (r->failed)
		return;
	/* Targets. */
	double raw = (double)in->raw, nv = (double)in->values;
	double o0 = raw * 8 / r->order0, got = raw / (double)r->bytes[1];
	double need = in->grads ? 1.15 : 1.03;
	target *t = &tg[(*ntg)++];
	snprintf(t->what, sizeof(t->what), "%s: ratio >= %.2fx the order-0 ideal", in->label, need);
	snprintf(t->detail, sizeof(t->detail), "%.3f vs %.2f x %.3f = %.3f (%.4fx; tensor "
	         "sections only %.4fx; per-channel ideal %.4fx, held-out %.4fx; 1.0 codings "
	         "%.4fx)", got, need, o0, need * o0, got / o0,
	         raw / (double)r->tensor_bytes[1] / o0, r->order0 / r->channel,
	         r->order0 / r->heldout, raw / (double)r->bytes[0] / o0);
	t->holds = got >= need * o0;
	if (!in->grads) {
		double gap = ((double)r->bytes[1] * 8 - r->shannon) / nv;
		t = &tg[(*ntg)++];
		snprintf(t->what, sizeof(t->what), "%s: gap to Shannon's bound <= 0.30 bit/value",
		         in->label);
		snprintf(t->detail, sizeof(t->detail), "%.3f bit/value (alcm %.4f, bound %.4f "
		         "bits/value at the achieved error)", gap, (double)r->bytes[1] * 8 / nv,
		         r->shannon / nv);
		t->holds = gap <= 0.30;
	}
	struct {
		const char *what;
		double v, vc, min;
	} sp[] = {
		{"pack (1 thread)", r->pack[1], r->pack_cpu[1], 500},
		{"unpack without digest checks (1 thread)", r->unpack[1], r->unpack_cpu[1], 1500},
		{"unpack with digest checks (2 threads)", r->unpack2v[1], 0, 1200},
	};
	for (size_t k = 0; k < 3; k++) {
		t = &tg[(*ntg)++];
		snprintf(t->what, sizeof(t->what), "%s: %s >= %.0f MB/s", in->label, sp[k].what,
		         sp[k].min);
		double peer = k == 0 ? r->zpack : k == 1 ? r->zunpack : 0;
		if (sp[k].vc > 0)
			snprintf(t->detail, sizeof(t->detail), "%.0f MB/s wall (%.0f MB/s of CPU time; "
			         "zstd-3 of the raw bytes in the same rounds: %.0f MB/s)", sp[k].v, sp[k].vc,
			         peer);
		else
			snprintf(t->detail, sizeof(t->detail), "%.0f MB/s wall", sp[k].v);
		t->holds = sp[k].v >= sp[k].min;
	}
	t = &tg[(*ntg)++];
	snprintf(t->what, sizeof(t->what), "%s: no ratio regression against 1.0 codings",
	         in->label);
	snprintf(t->detail, sizeof(t->detail), "%zu bytes vs %zu", r->bytes[1], r->bytes[0]);
	t->holds = r->bytes[1] <= r->bytes[0];
}

static void print_table(const input *in, const result *r)
{
	double raw = (double)in->raw, nv = (double)in->values;
	printf("\n## %s (%s, %s layout): %zu float tensors of >= %d values, %.1f MB; "
	       "E = %.4g\n\n", in->label, in->grads ? "gradients" : "weights",
	       in->tf ? "TF/Keras" : "PyTorch", in->nt, MIN_ELEMS, raw / MB, r->E);
	printf("| coder | ratio | bits/value | vs order-0 ideal | pack MB/s | unpack MB/s | "
	       "unpack 2 thr, verified |\n|---|---:|---:|---:|---:|---:|---:|\n");
	double o0 = raw * 8 / r->order0;
	struct {
		const char *name;
		double bits;
	} ref[] = {
		{"order-0 ideal", r->order0},
		{"per-channel ideal (plug-in)", r->channel},
		{"per-channel tables, held-out", r->heldout},
		{"Shannon bound at alcm's error", r->shannon},
	};
	for (size_t k = 0; k < 4; k++)
		printf("| %s | %.3f | %.4f | %.4fx | | | |\n", ref[k].name, raw * 8 / ref[k].bits,
		       ref[k].bits / nv, raw * 8 / ref[k].bits / o0);
	const char *names[2] = {"alcm, 1.0 codings (before)", "alcm (after)"};
	for (int k = 0; k < 2; k++) {
		double ratio = raw / (double)r->bytes[k];
		printf("| %s | %.3f | %.4f | %.4fx | %.0f (cpu %.0f) | %.0f (cpu %.0f) | %.0f |\n",
		       names[k], ratio, (double)r->bytes[k] * 8 / nv, ratio / o0, r->pack[k],
		       r->pack_cpu[k], r->unpack[k], r->unpack_cpu[k], r->unpack2v[k]);
	}
	for (int k = 0; k < 2; k++) {
		double ratio = raw / (double)r->tensor_bytes[k];
		printf("| %s, tensor sections only | %.3f | %.4f | %.4fx | | | |\n", names[k], ratio,
		       (double)r->tensor_bytes[k] * 8 / nv, ratio / o0);
	}
	printf("| Q8_0+zstd-3 | %.3f | %.4f | %.4fx | | | |\n", r->q8, 32 / r->q8 * raw / nv / 4,
	       r->q8 / o0);
	printf("| zstd-3 (lossless, raw bytes; speed peer) | %.3f | %.4f | %.4fx | %.0f | %.0f | |\n",
	       r->zstd, 32 / r->zstd * raw / nv / 4, r->zstd / o0, r->zpack, r->zunpack);
	if (r->zfp > 0)
		printf("| zfp @ E | %.3f | %.4f | %.4fx | | | |\n", r->zfp, 32 / r->zfp * raw / nv / 4,
		       r->zfp / o0);
	else
		printf("| zfp @ E | not built | | | | | |\n");
}

int main(int argc, char **argv)
{
	cli_init("alcm-entropy-bench");
	int runs = 5, verbose = 0, first = argc;
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
			if (cli_parse_u64(argv[++i], &v) || v < 1 || v > MAX_RUNS) {
				cli_err("--runs takes 1 to %d", MAX_RUNS);
				return EXIT_USAGE;
			}
			runs = (int)v;
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json = argv[++i];
		} else if (!strcmp(argv[i], "-v")) {
			verbose = 1;
		} else if (argv[i][0] == '-') {
			cli_err("unknown option '%s'", argv[i]);
			fputs(usage, stderr);
			return EXIT_USAGE;
		} else {
			first = i;
			break;
		}
	}
	if (first >= argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	FILE *jf = NULL;
	if (json && !(jf = fopen(json, "w"))) {
		cli_err("cannot write '%s': %s", json, strerror(errno));
		return EXIT_IO;
	}
	char model[256] = "unknown";
	FILE *ci = fopen("/proc/cpuinfo", "r");
	if (ci) {
		char line[512];
		while (fgets(line, sizeof(line), ci))
			if (!strncmp(line, "model name", 10)) {
				char *p = strchr(line, ':');
				if (p) {
					p += 2;
					p[strcspn(p, "\n")] = 0;
					snprintf(model, sizeof(model), "%s", p);
				}
				break;
			}
		fclose(ci);
	}
	printf("# alcm entropy benchmark (issue 15)\n\n- machine: %s, %ld core(s) online\n- "
	       "libalcm %s; median of %d rounds; MB = 10^6 bytes of raw input; cpu = the same "
	       "over process CPU time (what the machine's other load does not take away)\n",
	       model, sysconf(_SC_NPROCESSORS_ONLN), alcm_version(), runs);
	target tg[256];
	int ntg = 0, rc = 0;
	if (jf)
		fprintf(jf, "{\"runs\": %d, \"files\": [", runs);
	for (int i = first; i < argc; i++) {
		input in;
		memset(&in, 0, sizeof(in));
		if (load_input(&in, argv[i])) {
			rc = EXIT_IO;
			continue;
		}
		if (!in.nt) {
			cli_err("'%s' holds no float tensor of %d values or more", argv[i], MIN_ELEMS);
			rc = EXIT_IO;
			continue;
		}
		result r;
		if (ntg > 240)
			ntg = 240;
		bench_input(&in, runs, verbose, &r, tg, &ntg);
		if (r.failed) {
			rc = 1;
		} else {
			print_table(&in, &r);
			if (jf)
				fprintf(jf, "%s\n {\"file\": \"%s\", \"kind\": \"%s\", \"layout\": \"%s\", "
				        "\"tensors\": %zu, \"values\": %llu, \"raw_bytes\": %llu, \"E\": %.17g, "
				        "\"order0_bits\": %.17g, \"channel_bits\": %.17g, \"heldout_bits\": "
				        "%.17g, \"shannon_bits\": %.17g, \"alcm_bytes\": %zu, "
				        "\"alcm_1_0_bytes\": %zu, \"q8_ratio\": %.6g, \"zfp_ratio\": %.6g, "
				        "\"pack_mb_s\": %.1f, \"unpack_mb_s\": %.1f, \"unpack_2t_verified_mb_s\": "
				        "%.1f, \"pack_cpu_mb_s\": %.1f, \"unpack_cpu_mb_s\": %.1f, "
				        "\"zstd3_ratio\": %.6g, \"zstd3_pack_mb_s\": %.1f, "
				        "\"zstd3_unpack_mb_s\": %.1f}",
				        i > first ? "," : "", in.label, in.grads ? "grads" : "weights",
				        in.tf ? "tf" : "torch", in.nt, (unsigned long long)in.values,
				        (unsigned long long)in.raw, r.E, r.order0, r.channel, r.heldout,
				        r.shannon, r.bytes[1], r.bytes[0], r.q8, r.zfp, r.pack[1], r.unpack[1],
				        r.unpack2v[1], r.pack_cpu[1], r.unpack_cpu[1], r.zstd, r.zpack,
				        r.zunpack);
		}
		for (size_t k = 0; k < in.nt; k++) {
			free(in.t[k].name);
			free(in.t[k].data);
			free(in.t[k].f);
			free(in.t[k].x);
		}
		free(in.t);
	}
	printf("\nTargets:\n");
	for (int k = 0; k < ntg; k++)
		printf("- %s: %s — %s\n", tg[k].what, tg[k].holds ? "HOLDS" : "MISSES", tg[k].detail);
	if (jf) {
		fprintf(jf, "\n]}\n");
		fclose(jf);
	}
	return rc;
}
