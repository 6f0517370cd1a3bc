/* alcm-codec-bench: one table per input comparing alcm with the codecs people use for weights
 * today, all run in this process on the same bytes: zstd and zlib on raw bytes, byte grouping
 * + zstd, ggml's Q8_0 and Q4_0 block quantization + zstd, and ZFP's fixed-accuracy mode.
 * Speeds are medians of several rounds; the rows of a round run one after the other, so a
 * noisy neighbour slows every codec of that round, not one codec's whole sample. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <zlib.h>
#include <zstd.h>
#ifdef ALCM_BENCH_HAVE_ZFP
#include <zfp.h>
#endif

static const char usage[] =
	"usage: alcm-codec-bench [--runs N] [--threads N] [--json FILE] [--rows LIST] INPUT...\n"
	"\n"
	"Prints one Markdown table per input: codec, ratio, pack MB/s, unpack MB/s, max abs\n"
	"error, SNR dB, then whether the alcm targets hold. All float tensors of an input are\n"
	"one unit (totals are reported); other tensors are skipped.\n"
	"\n"
	"INPUT is a .npy, .npz or .safetensors file, or a generated tensor:\n"
	"  gen:gauss         float32 N(0, 0.02)\n"
	"  gen:laplace-rows  float32, heavy-tailed rows with per-row scales and rare outliers\n"
	"  gen:bf16          bfloat16, Gaussian rows with per-row scales\n"
	"  gen:grad          float32 gradient-like: half zeros, some zero rows, heavy tails\n"
	"  gen:NAME:COUNT    COUNT values (k and M suffixes) instead of 4M\n"
	"\n"
	"  --runs N     rounds to take medians over (default 5)\n"
	"  --threads N  alcm encoder/decoder threads (default 1: the peers are single-threaded)\n"
	"  --json FILE  also write every number, and every run's time, as JSON\n"
	"  --rows LIST  time only the rows whose name contains one of these comma-separated\n"
	"               strings (the bounds are still calibrated); for profiling\n"
	"\n"
	"Exit status: 0 done (whether targets hold or not), 1 a codec failed or a bound was\n"
	"broken, 2 usage error, 3 an input could not be read.\n";

#define MAX_RUNS 99
#define MAX_SEGS 4
#define BLOCK 32 /* values per Q8_0/Q4_0 block, as in ggml */
#define MB 1e6

/* ---- small helpers ---------------------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		cli_err("out of memory (%zu bytes)", n);
		exit(EXIT_NOMEM);
	}
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		cli_err("out of memory (%zu bytes)", n);
		exit(EXIT_NOMEM);
	}
	return q;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double s[MAX_RUNS];
	memcpy(s, v, (size_t)n * sizeof(double));
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* ---- half precision, written here so that the peers do not borrow alcm's code ------------ */

static float half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0x1f) {
		u = s | 0x7f800000u | (m << 13);
	} else if (e) {
		u = s | ((e + 112) << 23) | (m << 13);
	} else if (m) {
		e = 113;
		while (!(m & 0x400)) {
			m <<= 1;
			e--;
		}
		u = s | (e << 23) | ((m & 0x3ff) << 13);
	} else {
		u = s;
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Round to nearest even, as F16C's vcvtps2ph (what ggml uses on x86). */
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
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000, shift = 126 - e;
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(s | r);
	}
	uint32_t r = a - 0x38000000u, v = r >> 13, rem = r & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
		v++;
	return (uint16_t)(s | v);
}

static float bf16_to_float(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint16_t float_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* Element i of a float array of `dtype` (little-endian host, as the library assumes). */
static double load_val(int dtype, const uint8_t *p, size_t i)
{
	uint16_t h;
	float f;
	double d;
	switch (dtype) {
	case ALCM_DTYPE_F16:
		memcpy(&h, p + 2 * i, 2);
		return half_to_float(h);
	case ALCM_DTYPE_BF16:
		memcpy(&h, p + 2 * i, 2);
		return bf16_to_float(h);
	case ALCM_DTYPE_F32:
		memcpy(&f, p + 4 * i, 4);
		return f;
	default:
		memcpy(&d, p + 8 * i, 8);
		return d;
	}
}

/* A float32 value as the output dtype stores it (peers decode to float32, then convert). */
static double as_dtype(int dtype, float v)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: return half_to_float(float_to_half(v));
	case ALCM_DTYPE_BF16: return bf16_to_float(float_to_bf16(v));
	default: return v;
	}
}

static void to_f32(int dtype, const uint8_t *src, size_t n, float *dst)
{
	if (dtype == ALCM_DTYPE_F32) {
		memcpy(dst, src, n * 4);
		return;
	}
	for (size_t i = 0; i < n; i++)
		dst[i] = (float)load_val(dtype, src, i);
}

static void from_f32(int dtype, const float *src, size_t n, uint8_t *dst)
{
	for (size_t i = 0; i < n; i++) {
		uint16_t h;
		double d;
		switch (dtype) {
		case ALCM_DTYPE_F16:
			h = float_to_half(src[i]);
			memcpy(dst + 2 * i, &h, 2);
			break;
		case ALCM_DTYPE_BF16:
			h = float_to_bf16(src[i]);
			memcpy(dst + 2 * i, &h, 2);
			break;
		case ALCM_DTYPE_F32:
			memcpy(dst + 4 * i, &src[i], 4);
			break;
		default:
			d = src[i];
			memcpy(dst + 8 * i, &d, 8);
		}
	}
}

/* ---- the unit: all float tensors of one input, concatenated per dtype -------------------- */

typedef struct seg {
	int dtype;
	uint8_t *data;
	size_t nbytes, cap, elems;
} seg;

typedef struct tens {
	char *name;
	size_t name_len;
	int dtype;
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM];
	size_t seg, off; /* byte offset of its data in its segment */
	size_t eoff;     /* the same in elements */
	uint64_t nbytes, elems;
	double sig;      /* sum of squares of its finite values */
} tens;

typedef struct unit {
	char label[512];
	tens *t;
	size_t nt, tcap, skipped;
	seg s[MAX_SEGS];
	size_t ns;
	uint64_t raw_bytes, elems;
	double gauss_sigma; /* gen:gauss: the values are i.i.d. N(0, sigma^2); else 0 */
} unit;

static seg *unit_seg(unit *u, int dtype)
{
	for (size_t i = 0; i < u->ns; i++)
		if (u->s[i].dtype == dtype)
			return &u->s[i];
	seg *s = &u->s[u->ns++];
	memset(s, 0, sizeof(*s));
	s->dtype = dtype;
	return s;
}

/* Appends a tensor (copying name and data); skips non-float ones. */
static void unit_add(unit *u, const alcm_tensor *t)
{
	if (!alcm_dtype_is_float(t->dtype)) {
		u->skipped++;
		return;
	}
	seg *s = unit_seg(u, t->dtype);
	if (s->nbytes + t->nbytes > s->cap) {
		size_t c = s->cap ? s->cap : (size_t)1 << 20;
		while (c < s->nbytes + t->nbytes)
			c *= 2;
		s->data = xrealloc(s->data, c);
		s->cap = c;
	}
	if (u->nt == u->tcap) {
		u->tcap = u->tcap ? 2 * u->tcap : 64;
		u->t = xrealloc(u->t, u->tcap * sizeof(tens));
	}
	tens *d = &u->t[u->nt++];
	memset(d, 0, sizeof(*d));
	d->name = xmalloc(t->name_len + 1);
	if (t->name_len)
		memcpy(d->name, t->name, t->name_len);
	d->name[t->name_len] = 0;
	d->name_len = t->name_len;
	d->dtype = t->dtype;
	d->ndim = t->ndim;
	memcpy(d->shape, t->shape, sizeof(d->shape));
	d->seg = (size_t)(s - u->s);
	d->off = s->nbytes;
	d->eoff = s->elems;
	d->nbytes = t->nbytes;
	d->elems = t->nbytes / alcm_dtype_size(t->dtype);
	if (t->nbytes)
		memcpy(s->data + s->nbytes, t->data, t->nbytes);
	size_t w = alcm_dtype_size(t->dtype);
	for (size_t i = 0; i < t->nbytes / w; i++) {
		double x = load_val(t->dtype, s->data + s->nbytes, i);
		if (isfinite(x))
			d->sig += x * x;
	}
	s->nbytes += t->nbytes;
	s->elems += t->nbytes / w;
	u->raw_bytes += t->nbytes;
	u->elems += t->nbytes / w;
}

static void unit_free(unit *u)
{
	for (size_t i = 0; i < u->nt; i++)
		free(u->t[i].name);
	free(u->t);
	for (size_t i = 0; i < u->ns; i++)
		free(u->s[i].data);
	memset(u, 0, sizeof(*u));
}

static alcm_tensor unit_tensor(const unit *u, size_t i)
{
	const tens *d = &u->t[i];
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = d->name;
	t.name_len = d->name_len;
	t.dtype = d->dtype;
	t.ndim = d->ndim;
	memcpy(t.shape, d->shape, sizeof(t.shape));
	t.data = u->s[d->seg].data + d->off;
	t.nbytes = d->nbytes;
	return t;
}

/* ---- generated inputs -------------------------------------------------------------------- */

typedef struct rng {
	uint64_t s;
	int have;
	double spare;
} rng;

static double urand(rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double gauss(rng *r)
{
	if (r->have) {
		r->have = 0;
		return r->spare;
	}
	double a = sqrt(-2 * log(urand(r))), b = 6.283185307179586 * urand(r);
	r->spare = a * sin(b);
	r->have = 1;
	return a * cos(b);
}

/* Laplace with unit variance. */
static double laplace(rng *r)
{
	double v = urand(r) - 0.5;
	return (v < 0 ? 1 : -1) * log(1 - 2 * fabs(v)) / sqrt(2.0);
}

/* gen:NAME[:COUNT] -> kind, count and base name. @return -1 if unknown. */
static int gen_parse(const char *spec, int *kind, uint64_t *n, char base[32])
{
	static const char *const names[] = {"gauss", "laplace-rows", "bf16", "grad"};
	const char *name = spec + 4;
	const char *colon = strchr(name, ':');
	size_t bl = colon ? (size_t)(colon - name) : strlen(name);
	*n = (uint64_t)4 << 20;
	if (strncmp(spec, "gen:", 4) || bl >= 32)
		return -1;
	memcpy(base, name, bl);
	base[bl] = 0;
	if (colon && (cli_parse_u64(colon + 1, n) || *n == 0 || *n > ((uint64_t)1 << 30)))
		return -1;
	for (int k = 0; k < 4; k++)
		if (!strcmp(base, names[k])) {
			*kind = k;
			return 0;
		}
	return -1;
}

static int gen_unit(unit *u, const char *spec)
{
	char base[32];
	uint64_t n;
	int kind;
	if (gen_parse(spec, &kind, &n, base))
		return -1;
	uint64_t cols = n % 2048 == 0 && n > 2048 ? 2048 : n, rows = n / cols;
	int dtype = kind == 2 ? ALCM_DTYPE_BF16 : ALCM_DTYPE_F32;
	size_t w = alcm_dtype_size(dtype);
	uint8_t *buf = xmalloc((size_t)n * w);
	rng r = {0x5eed0000u + (uint64_t)kind, 0, 0};
	for (uint64_t i = 0; i < rows; i++) {
		double rs = 1;
		int zero_row = 0;
		if (kind == 1 || kind == 2)
			rs = exp(0.5 * gauss(&r));
		else if (kind == 3) {
			rs = exp(gauss(&r));
			zero_row = urand(&r) < 0.1;
		}
		for (uint64_t j = 0; j < cols; j++) {
			double x;
			switch (kind) {
			case 0: x = 0.02 * gauss(&r); break;
			case 1:
				x = 0.02 * rs * laplace(&r);
				if (urand(&r) < 1e-4)
					x *= 10;
				break;
			case 2: x = 0.02 * rs * gauss(&r); break;
			default:
				x = zero_row || urand(&r) < 0.5 ? 0 : 1e-3 * rs * laplace(&r);
			}
			float f = (float)x;
			size_t k = (size_t)(i * cols + j);
			if (dtype == ALCM_DTYPE_BF16) {
				uint16_t h = float_to_bf16(f);
				memcpy(buf + 2 * k, &h, 2);
			} else {
				memcpy(buf + 4 * k, &f, 4);
			}
		}
	}
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = base;
	t.name_len = strlen(base);
	t.dtype = dtype;
	t.ndim = rows > 1 ? 2 : 1;
	t.shape[0] = rows > 1 ? rows : cols;
	t.shape[1] = cols;
	t.data = buf;
	t.nbytes = n * w;
	unit_add(u, &t);
	u->gauss_sigma = kind == 0 ? 0.02 : 0;
	free(buf);
	return 0;
}

static int file_unit(unit *u, const char *path)
{
	alcm_input *in = NULL;
	int st = alcm_input_open(&in, path, NULL, NULL);
	int has = 1;
	while (!st && has) {
		alcm_tensor t;
		st = alcm_input_next(in, &t, &has);
		if (!st && has)
			unit_add(u, &t);
	}
	if (st) {
		const char *d = in ? alcm_input_detail(in) : "";
		cli_err("cannot read '%s': %s", path, *d ? d : alcm_strerror(st));
	}
	alcm_input_free(in);
	return st;
}

/* ---- rows ---------------------------------------------------------------------------------- */

enum kind { K_ALCM, K_ZSTD, K_ZLIB, K_BYTEGROUP, K_Q8, K_Q4, K_ZFP };

/* Where a lossy row's per-tensor bounds come from: the max error (or, for B_Q8_SNR, the SNR)
 * another row reached on each tensor. A tensor that row reproduced exactly is coded
 * losslessly. */
enum bsrc { B_FIXED, B_Q8, B_Q4, B_ZFP_Q8, B_Q8_SNR };

typedef struct row {
	const char *label;
	int kind;
	int lossless;       /* decoded bytes must be identical */
	int peer;           /* a peer, not alcm */
	int level;          /* zstd or zlib level */
	int mode;           /* alcm mode */
	double bound;       /* alcm bound for fixed rows */
	unsigned bits;
	unsigned rflags;    /* alcm reader flags */
	int bsrc;
	/* per tensor, allocated per input */
	double *tb;         /* bound (alcm) or error target (zfp) */
	double *te;         /* measured max abs error */
	double *ts;         /* measured SNR in dB (INFINITY when exact) */
	double *tt;         /* zfp tolerance; 0 = reversible mode */
	/* results */
	int skip;           /* not run (zfp not built); `why` says why */
	const char *why;
	int failed;
	char err[200];
	int nruns;          /* rounds taken (slow rows stop at SLOW_RUNS) */
	size_t packed;
	double pack_s[MAX_RUNS], unpack_s[MAX_RUNS];
	double digest_s[MAX_RUNS]; /* alcm: BLAKE2b-256 of the whole archive, once per round */
	double max_err, snr;
	int exact;
	alcm_writer *w;     /* alcm: the archive between pack and unpack */
} row;

/* Designated, so that the result fields start at zero without a warning. */
#define ROW(lab, k, ll, pr, lv, md, bd, bt, rf, bs) \
	{.label = lab, .kind = k, .lossless = ll, .peer = pr, .level = lv, .mode = md, \
	 .bound = bd, .bits = bt, .rflags = rf, .bsrc = bs}

static const row row_defs[] = {
	ROW("alcm lossless", K_ALCM, 1, 0, 3, ALCM_MODE_LOSSLESS, 0, 0, 0, B_FIXED),
	ROW("alcm lossless (no verify)", K_ALCM, 1, 0, 3, ALCM_MODE_LOSSLESS, 0, 0,
	    ALCM_READ_NO_VERIFY, B_FIXED),
	ROW("zstd-3 raw", K_ZSTD, 1, 1, 3, 0, 0, 0, 0, B_FIXED),
	ROW("zstd-19 raw", K_ZSTD, 1, 1, 19, 0, 0, 0, 0, B_FIXED),
	ROW("zlib-6 raw (savez_compressed)", K_ZLIB, 1, 1, 6, 0, 0, 0, 0, B_FIXED),
	ROW("bytegroup+zstd-3", K_BYTEGROUP, 1, 1, 3, 0, 0, 0, 0, B_FIXED),
	ROW("Q8_0+zstd-3", K_Q8, 0, 1, 3, 0, 0, 0, 0, B_FIXED),
	ROW("Q4_0+zstd-3", K_Q4, 0, 1, 3, 0, 0, 0, 0, B_FIXED),
	ROW("zfp @ Q8_0's err", K_ZFP, 0, 1, 0, 0, 0, 0, 0, B_Q8),
	ROW("alcm max-error @ Q8_0's err", K_ALCM, 0, 0, 3, ALCM_MODE_MAX_ERROR, 0, 0, 0, B_Q8),
	ROW("alcm max-error @ zfp's err", K_ALCM, 0, 0, 3, ALCM_MODE_MAX_ERROR, 0, 0, 0, B_ZFP_Q8),
	ROW("zfp @ Q4_0's err", K_ZFP, 0, 1, 0, 0, 0, 0, 0, B_Q4),
	ROW("alcm max-error @ Q4_0's err", K_ALCM, 0, 0, 3, ALCM_MODE_MAX_ERROR, 0, 0, 0, B_Q4),
	ROW("alcm snr @ Q8_0's SNR", K_ALCM, 0, 0, 3, ALCM_MODE_SNR, 0, 0, 0, B_Q8_SNR),
	ROW("alcm bits 8 (per-channel scale)", K_ALCM, 0, 0, 3, ALCM_MODE_BITS, 0, 8, 0, B_FIXED),
	ROW("alcm rel-error 1e-2", K_ALCM, 0, 0, 3, ALCM_MODE_REL_ERROR, 1e-2, 0, 0, B_FIXED),
};
#define NROWS (sizeof(row_defs) / sizeof(row_defs[0]))
enum { R_ALCM_LL, R_ALCM_NV, R_ZSTD3, R_ZSTD19, R_ZLIB, R_BG, R_Q8, R_Q4, R_ZFP8, R_ALCM_Q8,
       R_ALCM_ZFP, R_ZFP4, R_ALCM_Q4, R_ALCM_SNR, R_ALCM_B8, R_ALCM_REL };

/* A row whose first round takes longer than SLOW_SECONDS (zstd -19) stops at SLOW_RUNS
 * rounds, so that a full run fits in minutes on two shared cores. */
#define SLOW_SECONDS 2.0
#define SLOW_RUNS 3

typedef struct opts {
	int runs;
	unsigned threads;
	const char *json;
	const char *rows; /* comma-separated label substrings; NULL: every row */
} opts;

static int row_selected(const opts *o, const char *label)
{
	if (!o->rows)
		return 1;
	const char *p = o->rows;
	while (*p) {
		size_t n = strcspn(p, ",");
		char pat[128];
		if (n && n < sizeof(pat)) {
			memcpy(pat, p, n);
			pat[n] = 0;
			if (strstr(label, pat))
				return 1;
		}
		p += n + (p[n] == ',');
	}
	return 0;
}

/* Scratch shared by the peers, allocated once per input and touched so that page faults do
 * not land in the first timed run. */
typedef struct ctx {
	const opts *o;
	ZSTD_CCtx *cc;
	ZSTD_DCtx *dc;
	uint8_t *comp;            /* compressed bytes of every segment, back to back */
	size_t comp_cap, comp_len[MAX_SEGS];
	uint8_t *tmp;             /* byte planes or quantized blocks */
	size_t tmp_cap;
	float *f32;               /* float32 copy of a non-float32 segment */
	float *tune;              /* zfp tuning: one decoded tensor */
	uint8_t *dec[MAX_SEGS];   /* decoded values, same dtype and layout as the segments */
} ctx;

static void *alloc_touched(size_t n)
{
	void *p = xmalloc(n);
	memset(p, 0, n);
	return p;
}

static void ctx_grow_comp(ctx *c, size_t need)
{
	if (need <= c->comp_cap)
		return;
	free(c->comp);
	c->comp = alloc_touched(need);
	c->comp_cap = need;
}

static size_t blocks_of(const unit *u, size_t seg_index)
{
	size_t nb = 0;
	for (size_t i = 0; i < u->nt; i++)
		if (u->t[i].seg == seg_index)
			nb += (size_t)(u->t[i].elems + BLOCK - 1) / BLOCK;
	return nb;
}

static void ctx_init(ctx *c, const unit *u, const opts *o)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->cc = ZSTD_createCCtx();
	c->dc = ZSTD_createDCtx();
	if (!c->cc || !c->dc) {
		cli_err("out of memory");
		exit(EXIT_NOMEM);
	}
	size_t comp = 0, tmp = 0, f = 0; /* f: values of the largest non-float32 segment */
	for (size_t i = 0; i < u->ns; i++) {
		const seg *s = &u->s[i];
		size_t q = blocks_of(u, i) * (2 + BLOCK); /* Q8_0: the largest quantized form */
		size_t b = ZSTD_compressBound(s->nbytes > q ? s->nbytes : q);
		size_t z = compressBound((uLong)s->nbytes);
		comp += (b > z ? b : z) + 1024 + 8 * u->nt;
		if (s->nbytes > tmp)
			tmp = s->nbytes;
		if (q > tmp)
			tmp = q;
		if (s->dtype != ALCM_DTYPE_F32 && s->elems > f)
			f = s->elems;
		c->dec[i] = alloc_touched(s->nbytes);
	}
	ctx_grow_comp(c, comp);
	c->tmp = alloc_touched(tmp);
	c->tmp_cap = tmp;
	c->f32 = alloc_touched(f * sizeof(float));
}

static void ctx_free(ctx *c)
{
	ZSTD_freeCCtx(c->cc);
	ZSTD_freeDCtx(c->dc);
	free(c->comp);
	free(c->tmp);
	free(c->f32);
	free(c->tune);
	for (size_t i = 0; i < MAX_SEGS; i++)
		free(c->dec[i]);
}

static int rfail(row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rfail(row *r, const char *fmt, ...)
{
	if (r->failed)
		return -1; /* keep the first message */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->failed = 1;
	return -1;
}

/* ---- zstd and zlib on raw bytes, and byte grouping ---------------------------------------- */

static int zstd_pack(ctx *c, row *r, const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                     size_t *len)
{
	size_t z = ZSTD_compressCCtx(c->cc, dst, cap, src, n, r->level);
	if (ZSTD_isError(z))
		return rfail(r, "zstd: %s", ZSTD_getErrorName(z));
	*len = z;
	return 0;
}

static int zstd_unpack(ctx *c, row *r, const uint8_t *src, size_t n, uint8_t *dst, size_t exact)
{
	size_t z = ZSTD_decompressDCtx(c->dc, dst, exact, src, n);
	if (ZSTD_isError(z) || z != exact)
		return rfail(r, "zstd: %s", ZSTD_isError(z) ? ZSTD_getErrorName(z) : "short output");
	return 0;
}

/* Planes of a segment: tmp[k * elems + i] = byte k of element i, no rotation. Each plane is
 * its own zstd frame, stored as an 8-byte length and the frame. */
static int bytegroup_pack(ctx *c, row *r, const seg *s, uint8_t *dst, size_t cap, size_t *len)
{
	size_t w = alcm_dtype_size(s->dtype), n = s->elems;
	const uint8_t *src = s->data;
	if (w == 4) {
		uint8_t *p0 = c->tmp, *p1 = p0 + n, *p2 = p1 + n, *p3 = p2 + n;
		for (size_t i = 0; i < n; i++) {
			p0[i] = src[4 * i];
			p1[i] = src[4 * i + 1];
			p2[i] = src[4 * i + 2];
			p3[i] = src[4 * i + 3];
		}
	} else {
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < w; k++)
				c->tmp[k * n + i] = src[w * i + k];
	}
	size_t pos = 0;
	for (size_t k = 0; k < w; k++) {
		size_t z = 0;
		if (cap - pos < 8)
			return rfail(r, "bytegroup: buffer too small");
		if (zstd_pack(c, r, c->tmp + k * n, n, dst + pos + 8, cap - pos - 8, &z))
			return -1;
		uint64_t l = z;
		memcpy(dst + pos, &l, 8);
		pos += 8 + z;
	}
	*len = pos;
	return 0;
}

static int bytegroup_unpack(ctx *c, row *r, const seg *s, const uint8_t *src, size_t len,
                            uint8_t *out)
{
	size_t w = alcm_dtype_size(s->dtype), n = s->elems, pos = 0;
	for (size_t k = 0; k < w; k++) {
		uint64_t l;
		if (len - pos < 8)
			return rfail(r, "bytegroup: truncated");
		memcpy(&l, src + pos, 8);
		if (zstd_unpack(c, r, src + pos + 8, (size_t)l, c->tmp + k * n, n))
			return -1;
		pos += 8 + (size_t)l;
	}
	if (w == 4) {
		const uint8_t *p0 = c->tmp, *p1 = p0 + n, *p2 = p1 + n, *p3 = p2 + n;
		for (size_t i = 0; i < n; i++) {
			out[4 * i] = p0[i];
			out[4 * i + 1] = p1[i];
			out[4 * i + 2] = p2[i];
			out[4 * i + 3] = p3[i];
		}
	} else {
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < w; k++)
				out[w * i + k] = c->tmp[k * n + i];
	}
	return 0;
}

/* ---- ggml's Q8_0 and Q4_0 (reference formulas of ggml-quants.c), + zstd -3 ---------------- */

/* Blocks of 32 values of one tensor: fp16 scale d, then 32 int8 (Q8_0) or 16 bytes of
 * nibbles (Q4_0). A tensor's last partial block is padded with zeros, as a row would be. */
static size_t q8_quantize(const float *x, size_t n, uint8_t *y)
{
	size_t nb = (n + BLOCK - 1) / BLOCK;
	for (size_t b = 0; b < nb; b++) {
		float v[BLOCK];
		size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
		memcpy(v, x + b * BLOCK, m * sizeof(float));
		for (size_t j = m; j < BLOCK; j++)
			v[j] = 0;
		float amax = 0;
		for (int j = 0; j < BLOCK; j++)
			amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
		const float d = amax / ((1 << 7) - 1);
		const float id = d ? 1.0f / d : 0.0f;
		uint16_t h = float_to_half(d);
		uint8_t *o = y + b * (2 + BLOCK);
		memcpy(o, &h, 2);
		for (int j = 0; j < BLOCK; j++)
			o[2 + j] = (uint8_t)(int8_t)roundf(v[j] * id);
	}
	return nb * (2 + BLOCK);
}

static size_t q8_dequantize(const uint8_t *y, size_t n, float *x)
{
	size_t nb = (n + BLOCK - 1) / BLOCK;
	for (size_t b = 0; b < nb; b++) {
		const uint8_t *o = y + b * (2 + BLOCK);
		uint16_t h;
		memcpy(&h, o, 2);
		const float d = half_to_float(h);
		size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
		for (size_t j = 0; j < m; j++)
			x[b * BLOCK + j] = (float)(int8_t)o[2 + j] * d;
	}
	return nb * (2 + BLOCK);
}

static size_t q4_quantize(const float *x, size_t n, uint8_t *y)
{
	size_t nb = (n + BLOCK - 1) / BLOCK;
	for (size_t b = 0; b < nb; b++) {
		float v[BLOCK];
		size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
		memcpy(v, x + b * BLOCK, m * sizeof(float));
		for (size_t j = m; j < BLOCK; j++)
			v[j] = 0;
		float amax = 0, max = 0;
		for (int j = 0; j < BLOCK; j++)
			if (amax < fabsf(v[j])) {
				amax = fabsf(v[j]);
				max = v[j];
			}
		const float d = max / -8;
		const float id = d ? 1.0f / d : 0.0f;
		uint16_t h = float_to_half(d);
		uint8_t *o = y + b * (2 + BLOCK / 2);
		memcpy(o, &h, 2);
		for (int j = 0; j < BLOCK / 2; j++) {
			const float x0 = v[j] * id, x1 = v[BLOCK / 2 + j] * id;
			const int8_t a = (int8_t)(x0 + 8.5f), c = (int8_t)(x1 + 8.5f);
			const uint8_t xi0 = (uint8_t)(a < 15 ? a : 15), xi1 = (uint8_t)(c < 15 ? c : 15);
			o[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
		}
	}
	return nb * (2 + BLOCK / 2);
}

static size_t q4_dequantize(const uint8_t *y, size_t n, float *x)
{
	size_t nb = (n + BLOCK - 1) / BLOCK;
	for (size_t b = 0; b < nb; b++) {
		const uint8_t *o = y + b * (2 + BLOCK / 2);
		uint16_t h;
		memcpy(&h, o, 2);
		const float d = half_to_float(h);
		float v[BLOCK];
		for (int j = 0; j < BLOCK / 2; j++) {
			v[j] = (float)((o[2 + j] & 0x0f) - 8) * d;
			v[j + BLOCK / 2] = (float)((o[2 + j] >> 4) - 8) * d;
		}
		size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
		memcpy(x + b * BLOCK, v, m * sizeof(float));
	}
	return nb * (2 + BLOCK / 2);
}

/* The float32 values of a segment: the segment itself, or a converted copy. */
static const float *seg_f32(ctx *c, const seg *s)
{
	if (s->dtype == ALCM_DTYPE_F32)
		return (const float *)(const void *)s->data;
	to_f32(s->dtype, s->data, s->elems, c->f32);
	return c->f32;
}

/* Where a peer decodes float32 values: straight into the output, or into f32 to convert. */
static float *out_f32(ctx *c, const seg *s, uint8_t *out)
{
	return s->dtype == ALCM_DTYPE_F32 ? (float *)(void *)out : c->f32;
}

static void finish_f32(ctx *c, const seg *s, uint8_t *out)
{
	if (s->dtype != ALCM_DTYPE_F32)
		from_f32(s->dtype, c->f32, s->elems, out);
}

static int quant_pack(ctx *c, row *r, const unit *u, size_t si, uint8_t *dst, size_t cap,
                      size_t *len)
{
	const float *x = seg_f32(c, &u->s[si]);
	size_t q = 0;
	for (size_t i = 0; i < u->nt; i++) {
		const tens *d = &u->t[i];
		if (d->seg != si)
			continue;
		q += r->kind == K_Q8 ? q8_quantize(x + d->eoff, (size_t)d->elems, c->tmp + q)
		                     : q4_quantize(x + d->eoff, (size_t)d->elems, c->tmp + q);
	}
	return zstd_pack(c, r, c->tmp, q, dst, cap, len);
}

static int quant_unpack(ctx *c, row *r, const unit *u, size_t si, const uint8_t *src,
                        size_t len, uint8_t *out)
{
	const seg *s = &u->s[si];
	size_t q = blocks_of(u, si) * (r->kind == K_Q8 ? 2 + BLOCK : 2 + BLOCK / 2);
	if (zstd_unpack(c, r, src, len, c->tmp, q))
		return -1;
	float *x = out_f32(c, s, out);
	q = 0;
	for (size_t i = 0; i < u->nt; i++) {
		const tens *d = &u->t[i];
		if (d->seg != si)
			continue;
		q += r->kind == K_Q8 ? q8_dequantize(c->tmp + q, (size_t)d->elems, x + d->eoff)
		                     : q4_dequantize(c->tmp + q, (size_t)d->elems, x + d->eoff);
	}
	finish_f32(c, s, out);
	return 0;
}

/* ---- ZFP on 1-D float32 arrays, one stream per tensor -------------------------------------- */

#ifdef ALCM_BENCH_HAVE_ZFP
/* tol > 0: fixed-accuracy mode; tol == 0: reversible (lossless) mode. */
static void zfp_set_mode(zfp_stream *z, double tol)
{
	if (tol > 0)
		zfp_stream_set_accuracy(z, tol);
	else
		zfp_stream_set_reversible(z);
}

static size_t zfp_bound(size_t n, double tol)
{
	zfp_field *f = zfp_field_1d(NULL, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	zfp_set_mode(z, tol);
	size_t b = zfp_stream_maximum_size(z, f);
	zfp_stream_close(z);
	zfp_field_free(f);
	return b;
}

static int zfp_run(row *r, double tol, float *data, size_t n, uint8_t *buf, size_t cap,
                   size_t *len, int decode)
{
	zfp_field *f = zfp_field_1d(data, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	bitstream *bs = stream_open(buf, cap);
	int st = 0;
	if (!f || !z || !bs) {
		st = rfail(r, "zfp: out of memory");
	} else {
		zfp_set_mode(z, tol);
		zfp_stream_set_execution(z, zfp_exec_serial);
		zfp_stream_set_bit_stream(z, bs);
		zfp_stream_rewind(z);
		size_t got = decode ? zfp_decompress(z, f) : zfp_compress(z, f);
		if (!got)
			st = rfail(r, "zfp: %s failed", decode ? "decompress" : "compress");
		else if (!decode)
			*len = got;
	}
	if (bs)
		stream_close(bs);
	if (z)
		zfp_stream_close(z);
	if (f)
		zfp_field_free(f);
	return st;
}
#endif

/* Each tensor of the segment: an 8-byte length, then its zfp stream. */
static int zfp_pack(ctx *c, row *r, const unit *u, size_t si, uint8_t *dst, size_t cap,
                    size_t *len)
{
#ifdef ALCM_BENCH_HAVE_ZFP
	/* zfp reads its input through a non-const pointer but does not write it. */
	float *x = (float *)(uintptr_t)seg_f32(c, &u->s[si]);
	size_t pos = 0;
	for (size_t i = 0; i < u->nt; i++) {
		const tens *d = &u->t[i];
		if (d->seg != si)
			continue;
		size_t z = 0;
		if (cap - pos < 8)
			return rfail(r, "zfp: buffer too small");
		if (d->elems && zfp_run(r, r->tt[i], x + d->eoff, (size_t)d->elems, dst + pos + 8,
		                        cap - pos - 8, &z, 0))
			return -1;
		uint64_t l = z;
		memcpy(dst + pos, &l, 8);
		pos += 8 + z;
	}
	*len = pos;
	return 0;
#else
	(void)c, (void)u, (void)si, (void)dst, (void)cap, (void)len;
	return rfail(r, "zfp: not built");
#endif
}

static int zfp_unpack(ctx *c, row *r, const unit *u, size_t si, const uint8_t *src, size_t len,
                      uint8_t *out)
{
#ifdef ALCM_BENCH_HAVE_ZFP
	const seg *s = &u->s[si];
	float *x = out_f32(c, s, out);
	size_t pos = 0;
	for (size_t i = 0; i < u->nt; i++) {
		const tens *d = &u->t[i];
		if (d->seg != si)
			continue;
		uint64_t l;
		if (len - pos < 8)
			return rfail(r, "zfp: truncated");
		memcpy(&l, src + pos, 8);
		size_t dummy;
		if (d->elems && zfp_run(r, r->tt[i], x + d->eoff, (size_t)d->elems,
		                        (uint8_t *)(uintptr_t)(src + pos + 8), (size_t)l, &dummy, 1))
			return -1;
		pos += 8 + (size_t)l;
	}
	finish_f32(c, s, out);
	return 0;
#else
	(void)c, (void)u, (void)si, (void)src, (void)len, (void)out;
	return rfail(r, "zfp: not built");
#endif
}

/* ---- alcm, through the public API --------------------------------------------------------- */

static int alcm_pack(ctx *c, row *r, const unit *u)
{
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	int per_tensor = r->bsrc != B_FIXED;
	o.mode = per_tensor ? ALCM_MODE_LOSSLESS : r->mode;
	o.bound = r->bound;
	o.bits = r->bits;
	o.level = r->level;
	o.threads = c->o->threads;
	int st = alcm_writer_open_memory(&w, 0, NULL);
	if (st)
		return rfail(r, "alcm writer: %s", alcm_strerror(st));
	st = alcm_encoder_new(&e, w, &o, NULL);
	if (st) {
		rfail(r, "alcm encoder: %s", alcm_strerror(st));
		goto out;
	}
	for (size_t i = 0; i < u->nt && !st; i++) {
		alcm_tensor t = unit_tensor(u, i);
		if (per_tensor) {
			/* SNR mode takes 0 < dB <= 300; an exact or near-zero tensor stays lossless. */
			double b = r->mode == ALCM_MODE_SNR && r->tb[i] > 300 ? 300 : r->tb[i];
			int m = b > 0 && isfinite(b) ? r->mode : ALCM_MODE_LOSSLESS;
			if ((st = alcm_encoder_set_mode(e, m, m == ALCM_MODE_LOSSLESS ? 0 : b, 0, 0))) {
				rfail(r, "alcm set_mode: %s", alcm_strerror(st));
				break;
			}
		}
		if ((st = alcm_encoder_add(e, &t, NULL)))
			rfail(r, "alcm encode: %s", alcm_encoder_detail(e));
	}
	if (!st && (st = alcm_encoder_finish(e)))
		rfail(r, "alcm finish: %s", alcm_encoder_detail(e));
	if (!st && (st = alcm_writer_commit(w)))
		rfail(r, "alcm commit: %s", alcm_writer_detail(w));
out:
	alcm_encoder_free(e);
	if (st) {
		alcm_writer_free(w);
		return -1;
	}
	r->w = w;
	return 0;
}

static int alcm_unpack(ctx *c, row *r, const unit *u)
{
	const void *buf;
	size_t len;
	alcm_reader *rd = NULL;
	alcm_archive *a = NULL;
	int st = alcm_writer_memory(r->w, &buf, &len);
	if (!st)
		st = alcm_reader_open_memory(&rd, buf, len, "bench", NULL, NULL, r->rflags);
	if (st) {
		rfail(r, "alcm reader: %s", rd ? alcm_reader_detail(rd) : alcm_strerror(st));
		goto out;
	}
	if ((st = alcm_archive_open(&a, rd, NULL))) {
		rfail(r, "alcm archive: %s", a ? alcm_archive_detail(a) : alcm_strerror(st));
		goto out;
	}
	alcm_archive_set_threads(a, c->o->threads);
	if (alcm_archive_tensor_count(a) != u->nt) {
		st = rfail(r, "alcm archive holds %zu tensors, not %zu", alcm_archive_tensor_count(a),
		           u->nt);
		goto out;
	}
	for (size_t i = 0; i < u->nt && !st; i++) {
		const tens *d = &u->t[i];
		if ((st = alcm_archive_decode(a, i, c->dec[d->seg] + d->off, (size_t)d->nbytes)))
			rfail(r, "alcm decode: %s", alcm_archive_detail(a));
	}
out:
	alcm_archive_free(a);
	alcm_reader_free(rd);
	return st ? -1 : 0;
}

/* ---- one row: pack, unpack, and (once) measure ---------------------------------------------- */

static int row_pack(ctx *c, row *r, const unit *u)
{
	if (r->kind == K_ALCM) {
		if (alcm_pack(c, r, u))
			return -1;
		const void *b;
		alcm_writer_memory(r->w, &b, &r->packed);
		return 0;
	}
	size_t pos = 0;
	for (size_t i = 0; i < u->ns; i++) {
		const seg *s = &u->s[i];
		uint8_t *dst = c->comp + pos;
		size_t cap = c->comp_cap - pos, len = 0;
		int st;
		switch (r->kind) {
		case K_ZSTD: st = zstd_pack(c, r, s->data, s->nbytes, dst, cap, &len); break;
		case K_ZLIB: {
			uLongf l = (uLongf)cap;
			st = compress2(dst, &l, s->data, (uLong)s->nbytes, r->level) == Z_OK
			         ? 0 : rfail(r, "zlib: compress2 failed");
			len = (size_t)l;
			break;
		}
		case K_BYTEGROUP: st = bytegroup_pack(c, r, s, dst, cap, &len); break;
		case K_Q8:
		case K_Q4: st = quant_pack(c, r, u, i, dst, cap, &len); break;
		default: st = zfp_pack(c, r, u, i, dst, cap, &len);
		}
		if (st)
			return -1;
		c->comp_len[i] = len;
		pos += len;
	}
	r->packed = pos;
	return 0;
}

static int row_unpack(ctx *c, row *r, const unit *u)
{
	if (r->kind == K_ALCM)
		return alcm_unpack(c, r, u);
	size_t pos = 0;
	for (size_t i = 0; i < u->ns; i++) {
		const seg *s = &u->s[i];
		const uint8_t *src = c->comp + pos;
		size_t len = c->comp_len[i];
		int st;
		switch (r->kind) {
		case K_ZSTD: st = zstd_unpack(c, r, src, len, c->dec[i], s->nbytes); break;
		case K_ZLIB: {
			uLongf l = (uLongf)s->nbytes;
			st = uncompress(c->dec[i], &l, src, (uLong)len) == Z_OK && l == s->nbytes
			         ? 0 : rfail(r, "zlib: uncompress failed");
			break;
		}
		case K_BYTEGROUP: st = bytegroup_unpack(c, r, s, src, len, c->dec[i]); break;
		case K_Q8:
		case K_Q4: st = quant_unpack(c, r, u, i, src, len, c->dec[i]); break;
		default: st = zfp_unpack(c, r, u, i, src, len, c->dec[i]);
		}
		if (st)
			return -1;
		pos += len;
	}
	return 0;
}

static void row_release(row *r)
{
	alcm_writer_free(r->w);
	r->w = NULL;
}

/* Max abs error, signal and noise energy of one tensor of a peer's output. */
static void measure_tensor(const unit *u, const tens *d, const uint8_t *dec, double *max_err,
                           double *noise)
{
	const seg *s = &u->s[d->seg];
	double me = 0, no = 0;
	for (size_t i = d->eoff; i < d->eoff + d->elems; i++) {
		double x = load_val(s->dtype, s->data, i);
		if (!isfinite(x))
			continue;
		double y = load_val(s->dtype, dec, i), e = fabs(x - y);
		if (isnan(e))
			e = INFINITY;
		no += (x - y) * (x - y);
		if (e > me)
			me = e;
	}
	*max_err = me;
	*noise = no;
}

/* Per tensor: peers with their own loop, alcm rows with alcm_tensor_measure(). The SNR of the
 * whole input is recombined from each tensor's signal and noise energy. */
static void row_measure(ctx *c, row *r, const unit *u)
{
	r->exact = 1;
	r->max_err = 0;
	double sig = 0, noise = 0;
	for (size_t i = 0; i < u->nt; i++) {
		const tens *d = &u->t[i];
		const uint8_t *dec = c->dec[d->seg];
		double me, no;
		if (memcmp(u->s[d->seg].data + d->off, dec + d->off, (size_t)d->nbytes))
			r->exact = 0;
		if (r->kind == K_ALCM) {
			alcm_tensor t = unit_tensor(u, i);
			alcm_error_stats es;
			if (alcm_tensor_measure(&t, dec + d->off, &es)) {
				rfail(r, "alcm_tensor_measure failed");
				return;
			}
			if (!es.specials_exact)
				rfail(r, "tensor '%s': special values changed", d->name);
			me = es.max_abs_error;
			if (isinf(es.snr_db) && es.snr_db > 0)
				no = 0;
			else if (isfinite(es.snr_db) && d->sig > 0)
				no = d->sig / pow(10.0, es.snr_db / 10);
			else /* no signal: the noise energy cannot be recovered from the SNR */
				measure_tensor(u, d, dec, &me, &no);
		} else {
			measure_tensor(u, d, dec, &me, &no);
		}
		r->te[i] = me;
		r->ts[i] = no > 0 ? 10 * log10(d->sig / no) : INFINITY;
		sig += d->sig;
		noise += no;
		if (me > r->max_err)
			r->max_err = me;
		if (r->bsrc == B_Q8_SNR) {
			double want = r->tb[i] > 300 ? 300 : r->tb[i];
			if (want > 0 && r->ts[i] < want - 1e-6)
				rfail(r, "tensor '%s': SNR %.3f dB below its bound %.3f dB", d->name,
				      r->ts[i], want);
		} else if (((r->kind == K_ALCM && r->bsrc != B_FIXED) || r->kind == K_ZFP) &&
		           me > r->tb[i]) {
			rfail(r, "tensor '%s': max error %.6g above its bound %.6g", d->name, me, r->tb[i]);
		}
	}
	r->snr = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
	if (r->lossless && !r->exact)
		rfail(r, "lossless row did not decode to identical bytes");
}

/* One untimed pack + unpack + measure (calibration). */
static int row_once(ctx *c, row *r, const unit *u)
{
	int st = row_pack(c, r, u);
	if (!st)
		st = row_unpack(c, r, u);
	if (!st)
		row_measure(c, r, u);
	row_release(r);
	return r->failed ? -1 : 0;
}

#ifdef ALCM_BENCH_HAVE_ZFP
/* Compresses and decompresses one tensor at `tol`; its max error after rounding to the
 * tensor's dtype, as the output would hold it. @return -1 if zfp failed. */
static int zfp_try(ctx *c, row *r, const unit *u, size_t i, double tol, double *err)
{
	const tens *d = &u->t[i];
	const seg *s = &u->s[d->seg];
	float *x;
	if (s->dtype == ALCM_DTYPE_F32) {
		x = (float *)(void *)(s->data + d->off);
	} else {
		to_f32(s->dtype, s->data + d->off, (size_t)d->elems, c->f32);
		x = c->f32;
	}
	size_t need = zfp_bound((size_t)d->elems, tol), len = 0;
	if (need > c->tmp_cap) {
		free(c->tmp);
		c->tmp = alloc_touched(need);
		c->tmp_cap = need;
	}
	if (zfp_run(r, tol, x, (size_t)d->elems, c->tmp, c->tmp_cap, &len, 0) ||
	    zfp_run(r, tol, c->tune, (size_t)d->elems, c->tmp, len, &len, 1))
		return -1;
	double me = 0;
	for (size_t k = 0; k < d->elems; k++) {
		double a = load_val(s->dtype, s->data + d->off, k);
		if (!isfinite(a))
			continue;
		double e = fabs(a - as_dtype(s->dtype, c->tune[k]));
		if (isnan(e))
			e = INFINITY;
		if (e > me)
			me = e;
	}
	*err = me;
	return 0;
}

/* zfp's accuracy mode keeps only the power of two at or below the tolerance (minexp), so
 * tuning walks the exponent: the largest 2^k whose measured max error on the tensor stays
 * within the target. A target of 0 (the peer was exact) takes the reversible mode. */
static void zfp_tune_tensor(ctx *c, row *r, const unit *u, size_t i)
{
	double target = r->tb[i], err;
	r->tt[i] = 0;
	r->te[i] = 0;
	if (!(target > 0) || !u->t[i].elems)
		return;
	int k = (int)floor(log2(target)), have = 0;
	for (int step = 0; step < 40; step++) {
		double tol = ldexp(1.0, k);
		if (zfp_try(c, r, u, i, tol, &err))
			return;
		if (err <= target) {
			r->tt[i] = tol;
			r->te[i] = err;
			have = 1;
			k++;
		} else if (have || step > 8) {
			break; /* if nothing met the target: reversible */
		} else {
			k--;
		}
	}
}
#endif

static int usable(const row *r)
{
	return !r->skip && !r->failed;
}

static void zfp_tune(ctx *c, row *r, const row *src, const unit *u)
{
#ifdef ALCM_BENCH_HAVE_ZFP
	size_t mx = 0;
	for (size_t i = 0; i < u->nt; i++)
		mx = u->t[i].elems > mx ? (size_t)u->t[i].elems : mx;
	if (!c->tune)
		c->tune = alloc_touched((mx ? mx : 1) * sizeof(float));
	for (size_t i = 0; i < u->nt && !r->failed; i++) {
		r->tb[i] = usable(src) ? src->te[i] : 0;
		zfp_tune_tensor(c, r, u, i);
	}
	size_t need = 0;
	for (size_t i = 0; i < u->nt; i++)
		need += zfp_bound((size_t)u->t[i].elems, r->tt[i]) + 8;
	ctx_grow_comp(c, need + 1024);
#else
	(void)c, (void)src, (void)u;
	r->skip = 1;
	r->why = "zfp: not built";
#endif
}

/* ---- the report ----------------------------------------------------------------------------- */

static double mbs(const unit *u, const row *r, int unpack)
{
	double m = median(unpack ? r->unpack_s : r->pack_s, r->nruns);
	return m > 0 ? (double)u->raw_bytes / m / MB : 0;
}

static double ratio(const unit *u, const row *r)
{
	return r->packed ? (double)u->raw_bytes / (double)r->packed : 0;
}

static void print_table(const unit *u, const row *rows, int runs)
{
	printf("| codec | ratio | pack MB/s | unpack MB/s | max abs err | SNR dB |\n");
	printf("|---|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < NROWS; i++) {
		const row *r = &rows[i];
		if (r->skip) {
			printf("| %s | %s | | | | |\n", r->label, r->why);
			continue;
		}
		if (r->failed) {
			printf("| %s | FAILED: %s | | | | |\n", r->label, r->err);
			continue;
		}
		char e[32], s[32], mark[32] = "";
		snprintf(e, sizeof(e), r->max_err == 0 ? "0" : "%.3g", r->max_err);
		snprintf(s, sizeof(s), isinf(r->snr) ? "inf" : "%.1f", r->snr);
		if (r->nruns < runs)
			snprintf(mark, sizeof(mark), " (%d runs)", r->nruns);
		printf("| %s%s | %.3f | %.0f | %.0f | %s | %s |\n", r->label, mark, ratio(u, r),
		       mbs(u, r, 0), mbs(u, r, 1), e, s);
	}
}

typedef struct target {
	char what[200];
	char detail[640];
	int holds;
} target;

typedef struct report {
	target t[16];
	int n, misses;
} report;

static void add_target(report *rp, int holds, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void add_target(report *rp, int holds, const char *what, const char *fmt, ...)
{
	target *t = &rp->t[rp->n++];
	snprintf(t->what, sizeof(t->what), "%s", what);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->detail, sizeof(t->detail), fmt, ap);
	va_end(ap);
	t->holds = holds;
	rp->misses += !holds;
}

static void speed_targets(report *rp, const unit *u, const row *r, const char *what,
                          double pack_min, double unpack_min, const row *ref)
{
	char w[200], rel[120] = "";
	for (int unpack = 0; unpack < 2; unpack++) {
		double min = unpack ? unpack_min : pack_min;
		snprintf(w, sizeof(w), "%s %s >= %.0f MB/s", what, unpack ? "unpack" : "pack", min);
		if (!usable(r)) {
			add_target(rp, 0, w, "row did not run (%s)", r->skip ? r->why : r->err);
			continue;
		}
		if (usable(ref))
			snprintf(rel, sizeof(rel), " (zstd-3 raw in the same rounds: %.0f MB/s)",
			         mbs(u, ref, unpack));
		double v = mbs(u, r, unpack);
		add_target(rp, v >= min, w, "%.0f MB/s%s", v, rel);
	}
}

/* alcm's ratio at per-tensor bounds against 1.3x the better of the peers given. */
static void lossy_target(report *rp, const unit *u, const row *a, const row *p1, const row *p2,
                         const char *at, double bound)
{
	char w[200];
	snprintf(w, sizeof(w), "lossy ratio @ %s >= 1.3x the better of %s and %s", at, p1->label,
	         p2->label);
	if (!usable(a)) {
		add_target(rp, 0, w, "alcm row did not run (%s)", a->skip ? a->why : a->err);
		return;
	}
	const row *best = NULL;
	if (usable(p1))
		best = p1;
	if (usable(p2) && (!best || ratio(u, p2) > ratio(u, best)))
		best = p2;
	if (!best) {
		add_target(rp, 0, w, "no peer ran");
		return;
	}
	double need = 1.3 * ratio(u, best), got = ratio(u, a);
	add_target(rp, got >= need, w, "%.3f vs 1.3 x %.3f (%s) = %.3f; alcm %.2fx the peer, every "
	           "tensor within its bound, SNR %.1f dB vs %.1f dB", got, ratio(u, best),
	           best->label, need, got / ratio(u, best), a->snr, best->snr);
	if (u->gauss_sigma > 0 && bound > 0) {
		/* Shannon's lower bound for a difference distortion: a code that keeps every value
		 * within E of i.i.d. N(0, s^2) needs at least h(X) - log2(2E) bits per value. */
		double h = 0.5 * log2(2 * M_PI * M_E * u->gauss_sigma * u->gauss_sigma);
		double bits = h - log2(2 * bound);
		target *t = &rp->t[rp->n - 1];
		size_t l = strlen(t->detail);
		if (bits > 0)
			snprintf(t->detail + l, sizeof(t->detail) - l,
			         "; no coder can do better than %.3f here (Shannon's lower bound for i.i.d. "
			         "N(0, %.3g^2) within %.4g: %.2f bits per value), so 1.3x needs a peer "
			         "below %.3f", 32 / bits, u->gauss_sigma, bound, bits, 32 / bits / 1.3);
	}
}

static void build_report(report *rp, const unit *u, const row *rows)
{
	memset(rp, 0, sizeof(*rp));
	const row *ll = &rows[R_ALCM_LL], *z3 = &rows[R_ZSTD3];
	const row *best = NULL;
	for (size_t i = 0; i < NROWS; i++)
		if (rows[i].peer && rows[i].lossless && usable(&rows[i]) &&
		    (!best || ratio(u, &rows[i]) > ratio(u, best)))
			best = &rows[i];
	if (!usable(ll))
		add_target(rp, 0, "lossless ratio >= best lossless peer", "alcm lossless failed");
	else if (!best)
		add_target(rp, 0, "lossless ratio >= best lossless peer", "no lossless peer ran");
	else
		add_target(rp, ratio(u, ll) >= ratio(u, best), "lossless ratio >= best lossless peer",
		           "%.4f vs %.4f (%s); alcm %.3fx the peer", ratio(u, ll), ratio(u, best),
		           best->label, ratio(u, ll) / ratio(u, best));
	speed_targets(rp, u, ll, "lossless", 300, 1000, z3);
	if (usable(ll) && rp->n > 0) {
		/* The unpack target: what digest verification alone allows, and the figure
		 * without it. */
		target *t = &rp->t[rp->n - 1];
		double d = median(ll->digest_s, ll->nruns);
		size_t l = strlen(t->detail);
		if (d > 0)
			snprintf(t->detail + l, sizeof(t->detail) - l,
			         "; BLAKE2b-256 of the archive alone, in the same rounds: %.0f MB/s of raw "
			         "input (the ceiling of a verified unpack on one core)",
			         (double)u->raw_bytes / d / MB);
		l = strlen(t->detail);
		if (usable(&rows[R_ALCM_NV]))
			snprintf(t->detail + l, sizeof(t->detail) - l, "; without digest checks %.0f MB/s",
			         mbs(u, &rows[R_ALCM_NV], 1));
	}
	lossy_target(rp, u, &rows[R_ALCM_Q8], &rows[R_Q8], &rows[R_ZFP8], "Q8_0's err",
	             rows[R_Q8].max_err);
	lossy_target(rp, u, &rows[R_ALCM_ZFP], &rows[R_Q8], &rows[R_ZFP8], "zfp's err",
	             rows[R_ZFP8].max_err);
	speed_targets(rp, u, &rows[R_ALCM_Q8], "lossy @ Q8_0's err", 200, 500, z3);
	speed_targets(rp, u, &rows[R_ALCM_ZFP], "lossy @ zfp's err", 200, 500, z3);
}

static void print_report(const report *rp, const unit *u, const row *rows, const opts *o)
{
	printf("\nBounds are per tensor: \"@ Q8_0's err\" means each tensor's bound is the max abs "
	       "error Q8_0 reached on that tensor (largest: %.4g), \"@ zfp's err\" the error zfp "
	       "reached on it; \"@ Q8_0's SNR\" each tensor's SNR target is Q8_0's SNR on that "
	       "tensor (no target: it shows what equal max error hides).", rows[R_Q8].max_err);
	const row *z = &rows[R_ZFP8];
	if (usable(z)) {
		int lo = 0, hi = 0, rev = 0, have = 0;
		for (size_t i = 0; i < u->nt; i++) {
			if (!(z->tt[i] > 0)) {
				rev++;
				continue;
			}
			int k = (int)lrint(log2(z->tt[i]));
			lo = have && lo < k ? lo : k;
			hi = have && hi > k ? hi : k;
			have = 1;
		}
		printf(" zfp (accuracy mode, 1-D, one stream per tensor) is tuned per tensor to the "
		       "largest tolerance 2^k whose measured error stays within the target");
		if (have)
			printf(" (k from %d to %d)", lo, hi);
		if (rev)
			printf("; %d tensor(s) in reversible mode (target 0)", rev);
		printf(".");
	}
	printf("\nMB/s = 10^6 raw input bytes per second, median over rounds; alcm with %u "
	       "thread(s) (0: all cores), peers single-threaded.\n", o->threads);
	printf("\nTargets:\n");
	for (int i = 0; i < rp->n; i++)
		printf("- %s: %s — %s\n", rp->t[i].what, rp->t[i].holds ? "HOLDS" : "MISSES",
		       rp->t[i].detail);
}

static void json_row(FILE *f, const unit *u, const row *r)
{
	fprintf(f, "{\"codec\": ");
	cli_json_string(f, r->label, strlen(r->label));
	if (r->skip || r->failed) {
		fprintf(f, ", \"error\": ");
		const char *e = r->skip ? r->why : r->err;
		cli_json_string(f, e, strlen(e));
		fprintf(f, "}");
		return;
	}
	fprintf(f, ", \"packed_bytes\": %zu, \"ratio\": %.6g, \"pack_mbs\": %.6g, "
	        "\"unpack_mbs\": %.6g, \"max_abs_err\": %.9g, \"snr_db\": ",
	        r->packed, ratio(u, r), mbs(u, r, 0), mbs(u, r, 1), r->max_err);
	if (isinf(r->snr))
		fprintf(f, "null");
	else
		fprintf(f, "%.6g", r->snr);
	if (r->kind == K_ALCM && r->bsrc == B_FIXED && r->mode != ALCM_MODE_LOSSLESS &&
	    r->mode != ALCM_MODE_BITS)
		fprintf(f, ", \"bound\": %.9g", r->bound);
	fprintf(f, ", \"runs\": %d, \"pack_s\": [", r->nruns);
	for (int i = 0; i < r->nruns; i++)
		fprintf(f, "%s%.6g", i ? ", " : "", r->pack_s[i]);
	fprintf(f, "], \"unpack_s\": [");
	for (int i = 0; i < r->nruns; i++)
		fprintf(f, "%s%.6g", i ? ", " : "", r->unpack_s[i]);
	fprintf(f, "]}");
}

static void json_input(FILE *f, const unit *u, const row *rows, const report *rp, int first)
{
	fprintf(f, "%s\n  {\"input\": ", first ? "" : ",");
	cli_json_string(f, u->label, strlen(u->label));
	fprintf(f, ", \"tensors\": %zu, \"skipped_tensors\": %zu, \"elements\": %llu, "
	        "\"raw_bytes\": %llu,\n   \"rows\": [", u->nt, u->skipped,
	        (unsigned long long)u->elems, (unsigned long long)u->raw_bytes);
	for (size_t i = 0; i < NROWS; i++) {
		fprintf(f, "%s\n    ", i ? "," : "");
		json_row(f, u, &rows[i]);
	}
	fprintf(f, "],\n   \"targets\": [");
	for (int i = 0; i < rp->n; i++) {
		fprintf(f, "%s\n    {\"target\": ", i ? "," : "");
		cli_json_string(f, rp->t[i].what, strlen(rp->t[i].what));
		fprintf(f, ", \"holds\": %s, \"detail\": ", rp->t[i].holds ? "true" : "false");
		cli_json_string(f, rp->t[i].detail, strlen(rp->t[i].detail));
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}

/* ---- one input ------------------------------------------------------------------------------- */

static void describe(const unit *u)
{
	printf("\n## %s\n\n", u->label);
	printf("%zu float tensor(s)", u->nt);
	if (u->skipped)
		printf(" (%zu non-float skipped)", u->skipped);
	printf(", %llu values, %.2f MB:", (unsigned long long)u->elems, (double)u->raw_bytes / MB);
	for (size_t i = 0; i < u->ns; i++)
		printf(" %s %.2f MB%s", alcm_dtype_name(u->s[i].dtype), (double)u->s[i].nbytes / MB,
		       i + 1 < u->ns ? "," : "");
	printf("\n\n");
}

static const row *bound_source(const row *rows, int src)
{
	switch (src) {
	case B_Q8: return &rows[R_Q8];
	case B_Q4: return &rows[R_Q4];
	case B_Q8_SNR: return &rows[R_Q8];
	default: return &rows[R_ZFP8];
	}
}

/* Every row once per round, so that a slow moment of the machine hits all codecs alike. */
static void timed_rounds(ctx *c, row *rows, const unit *u, int runs)
{
	int maxruns[NROWS];
	for (size_t i = 0; i < NROWS; i++)
		maxruns[i] = runs;
	for (int run = 0; run < runs; run++) {
		for (size_t i = 0; i < NROWS; i++) {
			row *r = &rows[i];
			if (r->skip || r->failed || run >= maxruns[i])
				continue;
			double t0 = now();
			int st = row_pack(c, r, u);
			double t1 = now();
			if (!st)
				st = row_unpack(c, r, u);
			double t2 = now();
			if (!st && r->kind == K_ALCM && r->w) {
				/* What verification alone costs: every byte of the archive through the
				 * digest the reader checks, in the same round. */
				const void *ab;
				size_t al;
				uint8_t h[32];
				alcm_writer_memory(r->w, &ab, &al);
				double d0 = now();
				crypto_generichash(h, sizeof(h), ab, al, NULL, 0);
				r->digest_s[run] = now() - d0;
			}
			if (!st && run == 0)
				row_measure(c, r, u);
			row_release(r);
			if (st)
				continue;
			r->pack_s[run] = t1 - t0;
			r->unpack_s[run] = t2 - t1;
			r->nruns = run + 1;
			if (run == 0 && t2 - t0 > SLOW_SECONDS && runs > SLOW_RUNS)
				maxruns[i] = SLOW_RUNS;
		}
	}
}

static int bench_unit(const unit *u, const opts *o, FILE *json, int first)
{
	ctx c;
	ctx_init(&c, u, o);
	row rows[NROWS];
	memcpy(rows, row_defs, sizeof(rows));
	for (size_t i = 0; i < NROWS; i++) {
		rows[i].tb = calloc(u->nt, sizeof(double));
		rows[i].te = calloc(u->nt, sizeof(double));
		rows[i].tt = calloc(u->nt, sizeof(double));
		rows[i].ts = calloc(u->nt, sizeof(double));
		if (!rows[i].tb || !rows[i].te || !rows[i].tt || !rows[i].ts) {
			cli_err("out of memory");
			exit(EXIT_NOMEM);
		}
	}
	describe(u);
	fflush(stdout);
	/* Calibration: the errors Q8_0 and Q4_0 reach on each tensor set the bounds of the other
	 * lossy rows; zfp is tuned to them, and its errors bound one more alcm row. */
	row_once(&c, &rows[R_Q8], u);
	row_once(&c, &rows[R_Q4], u);
	if (row_selected(o, rows[R_ZFP8].label) || row_selected(o, rows[R_ALCM_ZFP].label))
		zfp_tune(&c, &rows[R_ZFP8], &rows[R_Q8], u);
	if (row_selected(o, rows[R_ZFP4].label))
		zfp_tune(&c, &rows[R_ZFP4], &rows[R_Q4], u);
	for (size_t i = 0; i < NROWS; i++) {
		row *r = &rows[i];
		if (r->kind != K_ALCM || r->bsrc == B_FIXED)
			continue;
		const row *src = bound_source(rows, r->bsrc);
		if (!usable(src)) {
			r->skip = 1;
			r->why = src->skip ? src->why : "its peer failed";
			continue;
		}
		memcpy(r->tb, r->bsrc == B_Q8_SNR ? src->ts : src->te, u->nt * sizeof(double));
	}
	for (size_t i = 0; i < NROWS; i++)
		if (!rows[i].skip && !row_selected(o, rows[i].label)) {
			rows[i].skip = 1;
			rows[i].why = "not selected (--rows)";
		}
	timed_rounds(&c, rows, u, o->runs);
	report rp;
	build_report(&rp, u, rows);
	print_table(u, rows, o->runs);
	print_report(&rp, u, rows, o);
	fflush(stdout);
	if (json)
		json_input(json, u, rows, &rp, first);
	int bad = 0;
	for (size_t i = 0; i < NROWS; i++) {
		bad |= rows[i].failed;
		free(rows[i].tb);
		free(rows[i].te);
		free(rows[i].tt);
		free(rows[i].ts);
	}
	ctx_free(&c);
	return bad;
}

static void print_machine(const opts *o)
{
	char model[256] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[512];
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "model name", 10)) {
				char *p = strchr(line, ':');
				if (p) {
					p++;
					while (*p == ' ' || *p == '\t')
						p++;
					p[strcspn(p, "\n")] = 0;
					snprintf(model, sizeof(model), "%s", p);
				}
				break;
			}
		fclose(f);
	}
	char date[64];
	time_t t = time(NULL);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	printf("# alcm codec benchmark\n\n");
	printf("- date: %s\n", date);
	printf("- machine: %s, %ld core(s) online\n", model, sysconf(_SC_NPROCESSORS_ONLN));
	printf("- libalcm %s, zstd %s, zlib %s, ", alcm_version(), ZSTD_versionString(),
	       zlibVersion());
#ifdef ALCM_BENCH_HAVE_ZFP
	printf("zfp %s\n", ZFP_VERSION_STRING);
#else
	printf("zfp: not built\n");
#endif
	printf("- runs: median of %d rounds, every row once per round (a row slower than %.0f s "
	       "stops at %d); alcm threads: %u; peers: one thread\n", o->runs, SLOW_SECONDS,
	       SLOW_RUNS, o->threads);
}

int main(int argc, char **argv)
{
	cli_init("alcm-codec-bench");
	opts o = {5, 1, NULL, NULL};
	int first_input = argc;
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
			o.runs = (int)v;
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			if (cli_parse_u64(argv[++i], &v) || v > 256) {
				cli_err("--threads takes 0 to 256");
				return EXIT_USAGE;
			}
			o.threads = (unsigned)v;
		} else if (!strcmp(argv[i], "--rows") && i + 1 < argc) {
			o.rows = argv[++i];
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			o.json = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			cli_err("unknown option '%s'", argv[i]);
			fputs(usage, stderr);
			return EXIT_USAGE;
		} else {
			first_input = i;
			break;
		}
	}
	if (first_input >= argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	for (int i = first_input; i < argc; i++)
		if (argv[i][0] == '-') {
			cli_err("options go before the inputs ('%s')", argv[i]);
			return EXIT_USAGE;
		}
	FILE *json = NULL;
	if (o.json && !(json = fopen(o.json, "w"))) {
		cli_err("cannot write '%s': %s", o.json, strerror(errno));
		return EXIT_IO;
	}
	for (int i = first_input; i < argc; i++) {
		char base[32];
		uint64_t n;
		int kind;
		if (!strncmp(argv[i], "gen:", 4) && gen_parse(argv[i], &kind, &n, base)) {
			cli_err("unknown generated input '%s' (see --help)", argv[i]);
			return EXIT_USAGE;
		}
	}
	print_machine(&o);
	if (json) {
		fprintf(json, "{\"runs\": %d, \"threads\": %u, \"inputs\": [", o.runs, o.threads);
	}
	int rc = 0, first = 1;
	for (int i = first_input; i < argc; i++) {
		unit u;
		memset(&u, 0, sizeof(u));
		snprintf(u.label, sizeof(u.label), "%s", argv[i]);
		int st;
		if (!strncmp(argv[i], "gen:", 4)) {
			st = gen_unit(&u, argv[i]);
			if (st) {
				cli_err("unknown generated input '%s' (see --help)", argv[i]);
				return EXIT_USAGE;
			}
		} else {
			const char *base = strrchr(argv[i], '/');
			snprintf(u.label, sizeof(u.label), "%s", base ? base + 1 : argv[i]);
			if ((st = file_unit(&u, argv[i]))) {
				unit_free(&u);
				rc = rc ? rc : EXIT_IO;
				continue;
			}
		}
		if (!u.elems) {
			cli_err("'%s' holds no float tensor", argv[i]);
			unit_free(&u);
			rc = rc ? rc : EXIT_IO;
			continue;
		}
		if (bench_unit(&u, &o, json, first))
			rc = rc ? rc : EXIT_FAIL;
		first = 0;
		unit_free(&u);
	}
	if (json) {
		fprintf(json, "\n]}\n");
		if (fclose(json)) {
			cli_err("cannot write '%s': %s", o.json, strerror(errno));
			return EXIT_IO;
		}
	}
	return rc;
}
