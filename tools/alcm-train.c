/* alcm-train: fits the entropy predictor (spec 6.7) to coded sizes measured with the real
 * encoder, on generated tensor families plus any tensor files named, and can write the
 * result as lib/predict_default.h. Deterministic for a seed, whatever the thread count. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: alcm-train [options] [FILES...]\n"
	"\n"
	"Fits the 7-64-1 entropy predictor to coded sizes measured with the real encoder. The\n"
	"corpus is a set of generated tensor families (Gaussian, Laplace, Student-t, uniform,\n"
	"sparse, row-scaled heavy tails, low-rank, gradient-like, offset, lattice, outer\n"
	"(channels of very different scales), dense (a layer's batch gradient, any aspect);\n"
	"float32, float64, bfloat16, float16; 1K to 1M elements) plus every float tensor of FILES (.npy,\n"
	".npz, .safetensors, .h5). Each tensor is packed alone in max-error mode at 15 steps, std * 2^k\n"
	"for k in -12..2 (shifted by a per-tensor offset in [0, 1)); its bits per value are the\n"
	"label. One tensor in five is held out, the predictor (the mean of four nets of 16\n"
	"hidden units, spec 6.7.4) is trained on the rest, and the\n"
	"training time, training and held-out errors are printed. Smooth tensors (neighbours\n"
	"alike) are generated too but only evaluated: their features cannot tell them apart.\n"
	"With --holdout, the split is by network instead: every tensor of the --holdout files\n"
	"is held out, every tensor of FILES trained on, and the errors of each held-out file\n"
	"are printed for all its tensors and for those of at least 4096 values. File tensors\n"
	"under 1024 values are never trained on (their sections' fixed bytes dominate).\n"
	"\n"
	"  -s, --seed N          seed of the corpus and the training (default 1)\n"
	"  -e, --epochs N        training epochs (default 400)\n"
	"  -n, --samples N       generated samples: tensors * 15 steps (default 7200)\n"
	"  -o, --out-header FILE write the weights as a C initializer (lib/predict_default.h)\n"
	"      --eval            also compare the predictor's step choice with an exhaustive\n"
	"                        search (every quarter octave encoded) on held-out tensors for\n"
	"                        budgets of 1, 2, 4, 6 and 8 bits per value\n"
	"      --test-default    no training: evaluate the compiled-in weights, with every\n"
	"                        tensor held out (use another --seed than theirs)\n"
	"      --max-elements N  skip FILES tensors larger than N elements (default 4M)\n"
	"      --holdout FILE    hold out every tensor of FILE (a network); repeatable\n"
	"      --restarts N      choose the training seed among N (seed, seed + 1000, ..) by\n"
	"                        the error on each training network held out in turn (files\n"
	"                        of one directory and name up to '_' are one network; default\n"
	"                        1: no choice)\n"
	"  -T, --threads N       worker threads (default: the CPUs it may use); results do\n"
	"                        not depend on it\n"
	"  -q, --quiet           print nothing but errors\n"
	"  -v, --verbose         every tensor: its measured and predicted bits at each step\n"
	"  -h, --help            this help\n"
	"  -V, --version         print the version and exit\n"
	"\n"
	"The network learns the rate of the values that are not escapes (subnormals, NaN, -0);\n"
	"104 bytes per tensor and the escapes' cost are added apart (spec 6.7.3).\n"
	"The default weights are made by (from the source root, after building):\n"
	"  tools/bench/train_predictor.sh --write\n"
	"which runs alcm-train on generated tensors and real networks, some held out whole.\n"
	"\n" CLI_EXIT_CODES_HELP;

#define NF ALCM_PRED_FEATURES
#define NSTEPS 15
#define KMIN (-12)
/* Exhaustive grid: quarter octaves from std * 2^-13 to std * 2^3. */
#define NGRID 65
#define GRID_MIN (-13.0)
#define SPLIT 5 /* one tensor in SPLIT is held out */

/* F_SMOOTH tensors are only evaluated, never trained on: neighbouring values that vary
 * smoothly code far smaller than their six features say (zstd sees the correlation, the
 * features do not), and training on them biases every Gaussian-like tensor low. */
enum family { F_GAUSS, F_LAPLACE, F_STUDENT, F_UNIFORM, F_SPARSE, F_ROWS, F_LOWRANK, F_GRAD,
              F_OFFSET, F_LATTICE, F_OUTER, F_DENSE, F_SMOOTH, NFAM, F_FILE = NFAM };
static const char *const fam_name[NFAM + 1] = {
	"gaussian", "laplace", "student-t", "uniform", "sparse", "row-scaled", "low-rank",
	"gradient", "offset", "lattice", "outer", "dense", "smooth", "file"};

#define MAX_HOLDOUT 32
#define SMALL_TRAIN 1024 /* file tensors under this many values are only evaluated */
#define BIG_EVAL 4096    /* the held-out target counts tensors of at least this many */

typedef struct item {
	char name[96];
	int family, dtype, test;
	int network; /* 1 + index of its --holdout file, 0 otherwise */
	int group;   /* training file tensors: 1 + index of their network (select_seed) */
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM], elems, seed;
	uint8_t *data; /* files: owned copy; generated: made and freed by the worker */
	double sd, jitter;
	double step[NSTEPS];
	float feat[NSTEPS][NF], bits[NSTEPS];
	alcm_pred_escapes esc; /* step-independent (spec 6.7.3) */
	float *gfeat, *gbits; /* --eval on held-out tensors: NGRID entries */
	double gen_cpu, pack_cpu, feat_cpu;
	int status;
} item;

typedef struct corpus {
	item *it;
	size_t n, cap;
	int eval, all_test;
	size_t next;
	pthread_mutex_t lock;
} corpus;

/* ---- random numbers (splitmix64; no rand()) ------------------------------------------- */

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t rnext(rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static double unit(rng *r)
{
	return ((double)(rnext(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double uniform(rng *r, double a, double b)
{
	return a + (b - a) * unit(r);
}
static double gauss(rng *r)
{
	double u = unit(r), v = unit(r);
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
static double laplace(rng *r)
{
	double u = unit(r) - 0.5;
	return (u < 0 ? 1 : -1) * log(1 - 2 * fabs(u)) / sqrt(2.0);
}
static double student(rng *r, int dof)
{
	double chi = 0;
	for (int i = 0; i < dof; i++) {
		double g = gauss(r);
		chi += g * g;
	}
	return gauss(r) / sqrt(chi / dof);
}

/* ---- dtypes (tools see only the public header) ------------------------------------------ */

static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* Round to nearest even; finite inputs below 65504 only (the generators make no others). */
static uint16_t to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x477ff000u)
		return (uint16_t)(s | 0x7c00);
	if (a < 0x38800000u) {
		if (a < 0x33000000u)
			return s;
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000, sh = 126 - e;
		uint32_t q = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t)(s | q);
	}
	uint32_t r = a - 0x38000000u, v = r >> 13, rem = r & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
		v++;
	return (uint16_t)(s | v);
}

static void store(int dtype, uint8_t *p, uint64_t i, double v)
{
	float f = (float)v;
	uint16_t h;
	switch (dtype) {
	case ALCM_DTYPE_F16: h = to_half(f); memcpy(p + 2 * i, &h, 2); break;
	case ALCM_DTYPE_BF16: h = to_bf16(f); memcpy(p + 2 * i, &h, 2); break;
	case ALCM_DTYPE_F32: memcpy(p + 4 * i, &f, 4); break;
	default: memcpy(p + 8 * i, &v, 8);
	}
}

static double half_value(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY)
	                                            : ldexp(m | 0x400, e - 25);
	return h & 0x8000 ? -v : v;
}

static double load(int dtype, const uint8_t *p, uint64_t i)
{
	uint16_t h;
	uint32_t u;
	float f;
	double d;
	switch (dtype) {
	case ALCM_DTYPE_F16: memcpy(&h, p + 2 * i, 2); return half_value(h);
	case ALCM_DTYPE_BF16:
		memcpy(&h, p + 2 * i, 2);
		u = (uint32_t)h << 16;
		memcpy(&f, &u, 4);
		return f;
	case ALCM_DTYPE_F32: memcpy(&f, p + 4 * i, 4); return f;
	default: memcpy(&d, p + 8 * i, 8); return d;
	}
}

/* ---- generated families ------------------------------------------------------------------ */

/* The families in the order they repeat: weight-like tensors (Gaussian, Student-t,
 * row-scaled) come most often, as they do in checkpoints. */
static const uint8_t mix[] = {F_ROWS,   F_GAUSS,   F_STUDENT, F_SPARSE, F_ROWS,
                              F_LAPLACE, F_GRAD,   F_GAUSS,   F_OFFSET, F_STUDENT,
                              F_UNIFORM, F_ROWS,   F_LOWRANK, F_LATTICE, F_GAUSS,
                              F_LATTICE, F_OUTER, F_ROWS, F_OUTER, F_SMOOTH,
                              F_DENSE};

/* Picks the family, dtype, shape and scale of generated tensor i from (seed, i) alone. */
static void plan_generated(item *it, uint64_t seed, size_t i)
{
	rng r = {seed * 0x9e3779b97f4a7c15ull + i};
	rnext(&r);
	it->family = mix[i % (sizeof(mix) / sizeof(mix[0]))];
	double u = unit(&r);
	it->dtype = u < 0.5 ? ALCM_DTYPE_F32 : u < 0.75 ? ALCM_DTYPE_BF16
	          : u < 0.9 ? ALCM_DTYPE_F16 : ALCM_DTYPE_F64;
	/* float16 gradients underflow into subnormals (exact escapes), as they do in a float16
	 * network trained without loss scaling (tools/bench/torch_nets.py's CNN): the corpus
	 * keeps them, so that the escapes' cost is learnt (spec 6.7.2, feature 4). */
	uint64_t n = (uint64_t)llround(pow(2.0, uniform(&r, 10, 20)));
	int two_d = it->family == F_ROWS || it->family == F_LOWRANK || it->family == F_SMOOTH ||
	            it->family == F_OUTER || unit(&r) < 0.5;
	if (it->family == F_DENSE) {
		/* Any aspect: [64, 1024] and [1024, 10] layers alike. */
		uint64_t cols = (uint64_t)llround(pow(2.0, uniform(&r, 1, log2((double)n) - 1)));
		it->ndim = 2;
		it->shape[0] = n / cols;
		it->shape[1] = cols;
		it->elems = it->shape[0] * cols;
	} else if (two_d) {
		uint64_t cols = (uint64_t)1 << (5 + rnext(&r) % 8);
		while (cols * 4 > n)
			cols >>= 1;
		it->ndim = 2;
		it->shape[0] = n / cols;
		it->shape[1] = cols;
		it->elems = it->shape[0] * cols;
	} else {
		it->ndim = 1;
		it->shape[0] = it->elems = n;
	}
	it->seed = rnext(&r);
	it->jitter = unit(&r);
	it->test = i % SPLIT == SPLIT - 1 || it->family == F_SMOOTH;
	snprintf(it->name, sizeof(it->name), "%s#%zu", fam_name[it->family], i);
}

static int generate(item *it)
{
	rng r = {it->seed};
	uint64_t n = it->elems, cols = it->ndim == 2 ? it->shape[1] : n, rows = n / cols;
	double *v = malloc(n * sizeof(double));
	size_t w = alcm_dtype_size(it->dtype);
	it->data = malloc(n * w);
	if (!v || !it->data) {
		free(v);
		return ALCM_E_NOMEM;
	}
	double scale = it->dtype == ALCM_DTYPE_F16 ? pow(10, uniform(&r, -1.5, 0.5))
	                                          : pow(10, uniform(&r, -3, 0.5));
	switch (it->family) {
	case F_GAUSS:
		for (uint64_t i = 0; i < n; i++)
			v[i] = gauss(&r);
		break;
	case F_LAPLACE:
		for (uint64_t i = 0; i < n; i++)
			v[i] = laplace(&r);
		break;
	case F_STUDENT: {
		static const int dofs[] = {3, 4, 6, 10};
		int dof = dofs[rnext(&r) % 4];
		for (uint64_t i = 0; i < n; i++)
			v[i] = student(&r, dof);
		break;
	}
	case F_UNIFORM:
		for (uint64_t i = 0; i < n; i++)
			v[i] = uniform(&r, -1, 1);
		break;
	case F_SPARSE: {
		double zero = uniform(&r, 0.3, 0.97);
		int lap = unit(&r) < 0.5;
		for (uint64_t i = 0; i < n; i++)
			v[i] = unit(&r) < zero ? 0.0 : lap ? laplace(&r) : gauss(&r);
		break;
	}
	case F_ROWS: {
		/* Trained weights: rows with their own scales, heavy tails, a few outlier columns. */
		double spread = uniform(&r, 0.1, 0.8), share = unit(&r) < 0.5 ? 0.005 : 0;
		for (uint64_t i = 0; i < rows; i++) {
			double s = exp(spread * gauss(&r));
			for (uint64_t j = 0; j < cols; j++)
				v[i * cols + j] = s * student(&r, 5);
		}
		for (uint64_t j = 0; j < cols; j++)
			if (unit(&r) < share)
				for (uint64_t i = 0; i < rows; i++)
					v[i * cols + j] *= 10;
		break;
	}
	case F_LOWRANK: {
		/* Products of k random factors plus a little noise (adapter deltas, factorised
		 * layers). */
		int k = 1 + (int)(rnext(&r) % 8);
		double noise = pow(10, uniform(&r, -3, -1)), *b = malloc(cols * 8 * sizeof(double));
		if (!b) {
			free(v);
			return ALCM_E_NOMEM;
		}
		for (uint64_t j = 0; j < cols * 8; j++)
			b[j] = gauss(&r) / sqrt((double)k);
		for (uint64_t i = 0; i < rows; i++) {
			double a[8];
			for (int q = 0; q < k; q++)
				a[q] = gauss(&r);
			for (uint64_t j = 0; j < cols; j++) {
				double s = noise * gauss(&r);
				for (int q = 0; q < k; q++)
					s += a[q] * b[j * 8 + q];
				v[i * cols + j] = s;
			}
		}
		free(b);
		break;
	}
	case F_SMOOTH: {
		/* Smooth rank-k structure along rows plus a little noise. */
		int k = 1 + (int)(rnext(&r) % 8);
		double noise = pow(10, uniform(&r, -3, -1)), fq[8], ph[8];
		for (int q = 0; q < k; q++) {
			fq[q] = uniform(&r, 0.5, 6) * 6.283185307179586 / (double)cols;
			ph[q] = uniform(&r, 0, 6.283185307179586);
		}
		for (uint64_t i = 0; i < rows; i++) {
			double a[8];
			for (int q = 0; q < k; q++)
				a[q] = gauss(&r);
			for (uint64_t j = 0; j < cols; j++) {
				double s = noise * gauss(&r);
				for (int q = 0; q < k; q++)
					s += a[q] * sin(fq[q] * (double)j + ph[q]);
				v[i * cols + j] = s;
			}
		}
		break;
	}
	case F_OUTER: {
		/* Channels of very different scales, as in trained weights and gradients: log-normal
		 * row scales times log-normal column scales (either may be 1) times noise, or a
		 * linear layer's gradient, a sum of a few outer products of heavy-tailed rows and
		 * ReLU-like columns. */
		double sr = uniform(&r, 0, 2.5), sc = unit(&r) < 0.5 ? 0 : uniform(&r, 0, 2);
		int kind = (int)(rnext(&r) % 4), batch = 1 + (int)(rnext(&r) % 16);
		double *rs = malloc((rows + cols) * sizeof(double)), *cs;
		if (!rs) {
			free(v);
			return ALCM_E_NOMEM;
		}
		cs = rs + rows;
		/* Dead channels, half the time: a share of the rows exactly zero (inputs that are
		 * always 0, units that never fire), as in MLP gradients. */
		double dead = unit(&r) < 0.5 ? uniform(&r, 0, 0.3) : 0;
		for (uint64_t i = 0; i < rows; i++)
			rs[i] = i && unit(&r) < dead ? 0 : exp(sr * gauss(&r)); /* never all */
		for (uint64_t j = 0; j < cols; j++)
			cs[j] = exp(sc * gauss(&r));
		if (kind == 3) {
			double *a = malloc(cols * sizeof(double));
			if (!a) {
				free(rs);
				free(v);
				return ALCM_E_NOMEM;
			}
			for (uint64_t q = 0; q < n; q++)
				v[q] = 0;
			for (int b = 0; b < batch; b++) {
				for (uint64_t j = 0; j < cols; j++) /* activations: ReLU-like, sparse */
					a[j] = cs[j] * fmax(gauss(&r), 0);
				for (uint64_t i = 0; i < rows; i++) {
					double d = rs[i] * student(&r, 3);
					for (uint64_t j = 0; j < cols; j++)
						v[i * cols + j] += d * a[j];
				}
			}
			free(a);
		} else {
			for (uint64_t i = 0; i < rows; i++)
				for (uint64_t j = 0; j < cols; j++)
					v[i * cols + j] = rs[i] * cs[j] *
					                  (kind == 0 ? gauss(&r) : kind == 1 ? laplace(&r)
					                                                     : student(&r, 4));
		}
		free(rs);
		break;
	}
	case F_DENSE: {
		/* A dense layer's full-batch gradient, sum over a batch of outer products of an
		 * input side and an output side, each side either activations (inputs with their own
		 * scales, some always 0, non-negative half the time: pixels, ReLU outputs) or deltas
		 * (signed, heavy-tailed half the time, masked by a ReLU's derivative half the time),
		 * in either order and of any aspect ([64, 1024] and [1024, 10] layers alike). */
		uint64_t batch = (uint64_t)16 << (rnext(&r) % 4);
		while (batch > 4 && batch * n > ((uint64_t)1 << 25))
			batch >>= 1;
		uint64_t dim[2] = {rows, cols};
		double *side[2] = {NULL, NULL};
		for (int s = 0; s < 2; s++) {
			side[s] = malloc(batch * dim[s] * sizeof(double));
			double *sc = malloc(dim[s] * sizeof(double));
			if (!side[s] || !sc) {
				free(sc);
				free(side[0]);
				free(side[1]);
				free(v);
				return ALCM_E_NOMEM;
			}
			int act = unit(&r) < 0.5, nonneg = unit(&r) < 0.5, heavy = unit(&r) < 0.5;
			double spread = uniform(&r, 0, 2), dead = unit(&r) < 0.5 ? uniform(&r, 0, 0.3) : 0;
			double mask = act || unit(&r) < 0.5 ? 0 : uniform(&r, 0.2, 0.7);
			for (uint64_t i = 0; i < dim[s]; i++)
				sc[i] = i && unit(&r) < dead ? 0 : exp(spread * gauss(&r));
			for (uint64_t b = 0; b < batch; b++)
				for (uint64_t i = 0; i < dim[s]; i++) {
					double x = heavy ? student(&r, 3) : gauss(&r);
					if (act)
						x = nonneg ? fabs(x) : fmax(x, 0);
					else if (unit(&r) < mask)
						x = 0;
					side[s][b * dim[s] + i] = sc[i] * x;
				}
			free(sc);
		}
		for (uint64_t q = 0; q < n; q++)
			v[q] = 0;
		for (uint64_t b = 0; b < batch; b++)
			for (uint64_t i = 0; i < rows; i++) {
				double a = side[0][b * rows + i] / (double)batch;
				if (a != 0)
					for (uint64_t j = 0; j < cols; j++)
						v[i * cols + j] += a * side[1][b * cols + j];
			}
		free(side[0]);
		free(side[1]);
		break;
	}
	case F_GRAD: {
		/* Mostly tiny, a few large. */
		double tiny = pow(10, uniform(&r, -3.5, -1.5)), share = pow(10, uniform(&r, -3, -1.3));
		for (uint64_t i = 0; i < n; i++)
			v[i] = unit(&r) < share ? gauss(&r) : tiny * gauss(&r);
		break;
	}
	case F_LATTICE: {
		/* Weights already quantized (a grid of a few bits, as in faceapi): the coder codes
		 * the grid points (spec 6.5.11), whatever finer step it is asked for. */
		double d = pow(2, -uniform(&r, 0, 5));
		int lap = unit(&r) < 0.5;
		for (uint64_t i = 0; i < n; i++)
			v[i] = d * nearbyint((lap ? laplace(&r) : gauss(&r)) / d);
		break;
	}
	default: { /* F_OFFSET: norms near one, biases near a constant */
		double mu = unit(&r) < 0.7 ? 1 : uniform(&r, -2, 2), sd = pow(10, uniform(&r, -2.5, -0.5));
		for (uint64_t i = 0; i < n; i++)
			v[i] = mu + sd * gauss(&r);
		scale = it->dtype == ALCM_DTYPE_F16 ? 1 : pow(10, uniform(&r, -1, 0.5));
		break;
	}
	}
	for (uint64_t i = 0; i < n; i++)
		store(it->dtype, it->data, i, v[i] * scale);
	free(v);
	return ALCM_OK;
}

/* ---- measuring -------------------------------------------------------------------------- */

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void as_tensor(const item *it, alcm_tensor *t)
{
	memset(t, 0, sizeof(*t));
	t->name = it->name;
	t->name_len = strlen(it->name);
	t->dtype = it->dtype;
	t->ndim = it->ndim;
	memcpy(t->shape, it->shape, sizeof(t->shape));
	t->data = it->data;
	t->nbytes = it->elems * alcm_dtype_size(it->dtype);
}

/* Coded bits per value of t alone in max-error mode with bound step / 2, one thread. */
static int measure(const alcm_tensor *t, uint64_t elems, double step, float *bits)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = step / 2;
	o.threads = 1;
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_tensor_report rep;
	int st = alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_encoder_new(&e, w, &o, NULL);
	if (!st)
		st = alcm_encoder_add(e, t, &rep);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	if (!st)
		*bits = (float)((double)rep.stored_bytes * 8 / (double)elems);
	return st;
}

static double std_of(const item *it)
{
	double s = 0, s2 = 0;
	uint64_t m = 0;
	for (uint64_t i = 0; i < it->elems; i++) {
		double x = load(it->dtype, it->data, i);
		if (isfinite(x)) {
			s += x;
			m++;
		}
	}
	if (!m)
		return 0;
	double mu = s / (double)m;
	for (uint64_t i = 0; i < it->elems; i++) {
		double x = load(it->dtype, it->data, i);
		if (isfinite(x))
			s2 += (x - mu) * (x - mu);
	}
	return sqrt(s2 / (double)m);
}

static int label(item *it, int eval)
{
	alcm_tensor t;
	as_tensor(it, &t);
	it->sd = std_of(it);
	if (!(it->sd > 0) || !isfinite(it->sd))
		return ALCM_E_ARG;
	int st = alcm_tensor_escapes(&t, &it->esc);
	for (int k = 0; k < NSTEPS && !st; k++) {
		double step = it->sd * pow(2.0, KMIN + k + it->jitter);
		it->step[k] = step;
		double c0 = cpu_now();
		st = alcm_tensor_features(&t, step, it->feat[k]);
		double c1 = cpu_now();
		if (!st)
			st = measure(&t, it->elems, step, &it->bits[k]);
		it->feat_cpu += c1 - c0;
		it->pack_cpu += cpu_now() - c1;
	}
	if (!st && eval && it->test) {
		it->gfeat = malloc(NGRID * NF * sizeof(float));
		it->gbits = malloc(NGRID * sizeof(float));
		if (!it->gfeat || !it->gbits)
			return ALCM_E_NOMEM;
		for (int g = 0; g < NGRID && !st; g++) {
			double step = it->sd * pow(2.0, GRID_MIN + g / 4.0);
			st = alcm_tensor_features(&t, step, it->gfeat + g * NF);
			if (!st)
				st = measure(&t, it->elems, step, &it->gbits[g]);
		}
	}
	return st;
}

static void *worker(void *arg)
{
	corpus *c = arg;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		size_t i = c->next++;
		pthread_mutex_unlock(&c->lock);
		if (i >= c->n)
			return NULL;
		item *it = &c->it[i];
		int generated = it->family != F_FILE;
		double c0 = cpu_now();
		it->status = generated ? generate(it) : ALCM_OK;
		it->gen_cpu = cpu_now() - c0;
		if (!it->status)
			it->status = label(it, c->eval);
		if (generated) {
			free(it->data);
			it->data = NULL;
		}
	}
}

/* ---- files -------------------------------------------------------------------------------- */

static item *push(corpus *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 256;
		item *p = realloc(c->it, cap * sizeof(item));
		if (!p)
			return NULL;
		c->it = p;
		c->cap = cap;
	}
	item *it = &c->it[c->n++];
	memset(it, 0, sizeof(*it));
	return it;
}

/* Adds every float tensor of a file (up to max_elems elements). @return 0 or an exit code. */
static int add_file(corpus *c, const char *path, uint64_t max_elems, size_t *nfile,
                    size_t *skipped, int network, int by_network, int group)
{
	cli_input *in = NULL;
	int st = cli_input_open_or_fail(&in, path);
	if (st)
		return st;
	for (;;) {
		alcm_tensor t;
		int has = 0;
		st = cli_input_next(in, &t, &has);
		if (st || !has)
			break;
		uint64_t n;
		if (!alcm_dtype_is_float(t.dtype) || alcm_shape_elements(t.shape, t.ndim, &n) ||
		    n < 16 || n > max_elems) {
			(*skipped)++;
			continue;
		}
		item *it = push(c);
		if (!it || !(it->data = malloc(t.nbytes))) {
			cli_input_free(in);
			cli_err("out of memory");
			return EXIT_NOMEM;
		}
		memcpy(it->data, t.data, t.nbytes);
		it->family = F_FILE;
		it->dtype = t.dtype;
		it->ndim = t.ndim;
		memcpy(it->shape, t.shape, sizeof(it->shape));
		it->elems = n;
		it->test = by_network ? network > 0 || c->all_test
		                      : (*nfile)++ % SPLIT == SPLIT - 1 || c->all_test;
		if (by_network)
			(*nfile)++;
		it->network = network;
		it->group = group;
		it->jitter = 0.5;
		snprintf(it->name, sizeof(it->name), "%s", cli_name(t.name, t.name_len));
	}
	if (st) {
		int rc = cli_input_fail(in, st, path);
		cli_input_free(in);
		return rc;
	}
	cli_input_free(in);
	return 0;
}

/* Files of one network: the same directory and the same name up to its first '_' or '.'
 * (cnn/digits_cnn_grads.safetensors and cnn/digits_cnn_weights.safetensors,
 * mlp64/epoch_000.npz and mlp64/epoch_009.npz). */
static int same_network(const char *x, const char *y)
{
	const char *bx = strrchr(x, '/'), *by = strrchr(y, '/');
	bx = bx ? bx + 1 : x;
	by = by ? by + 1 : y;
	if (bx - x != by - y || memcmp(x, y, (size_t)(bx - x)))
		return 0;
	size_t nx = strcspn(bx, "_."), ny = strcspn(by, "_.");
	return nx == ny && memcmp(bx, by, nx) == 0;
}

/* 1 + the index of file a's network among the networks of files first..a, in order. */
static int file_group(char **argv, int first, int a)
{
	int g = 0;
	for (int b = first; b <= a; b++) {
		int fresh = 1;
		for (int c = first; c < b && fresh; c++)
			fresh = !same_network(argv[c], argv[b]);
		g += fresh;
		if (fresh && same_network(argv[b], argv[a]))
			return g;
	}
	return g;
}

/* ---- evaluation ------------------------------------------------------------------------- */

typedef struct errs {
	double se, ae, bias;
	size_t n;
} errs;

static void score(const alcm_predictor *p, const item *it, errs *e)
{
	for (int k = 0; k < NSTEPS; k++) {
		double d = alcm_predict_bits_escapes(p, it->feat[k], &it->esc) - it->bits[k];
		e->se += d * d;
		e->ae += fabs(d);
		e->bias += d;
		e->n++;
	}
}

static void print_errs(const char *what, const errs *e)
{
	if (e->n)
		printf("  %-26s %5zu samples  mse %7.4f bits^2/value  mae %6.3f  bias %+6.3f\n",
		       what, e->n, e->se / (double)e->n, e->ae / (double)e->n,
		       e->bias / (double)e->n);
}

/* Finest grid step whose bits are within the budget; -1 if none. */
static int pick(const float *bits, double budget)
{
	for (int g = 0; g < NGRID; g++)
		if (bits[g] <= budget)
			return g;
	return -1;
}

static void exhaustive(const alcm_predictor *p, const corpus *c, int smooth)
{
	static const double budgets[] = {1, 2, 4, 6, 8};
	printf("step choice against an exhaustive search (%s, %d quarter-octave steps each):\n",
	       smooth ? "smooth tensors, never trained on" : "held-out tensors", NGRID);
	printf("  budget  pairs  same-step  mean|octaves|  mean octaves  size error  over budget"
	       "  bits: predictor exhaustive  total/budget\n");
	for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++) {
		double B = budgets[b], alr = 0, lr = 0, rel = 0, got = 0, best = 0, tot = 0, want = 0;
		size_t pairs = 0, same = 0, over = 0;
		for (size_t i = 0; i < c->n; i++) {
			const item *it = &c->it[i];
			if (!it->gbits || it->status || (it->family == F_SMOOTH) != smooth)
				continue;
			float pred[NGRID];
			for (int g = 0; g < NGRID; g++)
				pred[g] = (float)alcm_predict_bits_escapes(p, it->gfeat + g * NF, &it->esc);
			int ge = pick(it->gbits, B), gp = pick(pred, B);
			if (ge < 0)
				continue; /* the budget is below what any step reaches */
			if (gp < 0)
				gp = NGRID - 1;
			pairs++;
			same += gp == ge;
			alr += abs(gp - ge) / 4.0;
			lr += (gp - ge) / 4.0;
			rel += fabs(it->gbits[gp] - it->gbits[ge]) / it->gbits[ge];
			over += it->gbits[gp] > B;
			got += it->gbits[gp];
			best += it->gbits[ge];
			tot += it->gbits[gp] * (double)it->elems;
			want += B * (double)it->elems;
		}
		if (!pairs)
			continue;
		double n = (double)pairs;
		printf("  %6.0f  %5zu  %8.1f%%  %13.3f  %12.3f  %9.1f%%  %10.1f%%  %15.3f %10.3f  %12.3f\n",
		       B, pairs, 100 * same / n, alr / n, lr / n, 100 * rel / n, 100 * over / n,
		       got / n, best / n, tot / want);
	}
	if (smooth)
		return;
	printf("  (octaves: log2 of the predictor's step over the exhaustive search's step, which is\n"
	       "   the finest step within the budget; size error: |bits at the predictor's step -\n"
	       "   bits at the exhaustive step| / the latter; over budget: the predictor's step codes\n"
	       "   to more bits than the budget; total/budget: all these tensors' bits at the\n"
	       "   predictor's steps over the budget times their values)\n");
}

/* ---- model selection -------------------------------------------------------------------- */

/*
 * --restarts R: the training seed is chosen among seed, seed + 1000, .. by the error on the
 * training networks, each held out in turn (trained on the rest, generated tensors
 * included): the mean absolute error on its tensors of at least BIG_EVAL values (all of them
 * if it has none), averaged over the networks. The held-out networks (--holdout) are never
 * looked at. Each (seed, network) fit is one job; jobs run on the worker threads and the
 * result does not depend on their count.
 */
typedef struct selector {
	const float (*x)[NF];
	const float *y;
	const alcm_pred_escapes *e;
	const int *group;
	const uint8_t *big;
	size_t n;
	int ngroup, restarts;
	uint64_t seed;
	unsigned epochs;
	double *score; /* restarts x ngroup */
	int status;
	size_t next;
	pthread_mutex_t lock;
} selector;

static uint64_t restart_seed(uint64_t seed, int c)
{
	return seed + 1000 * (uint64_t)c;
}

static void *select_worker(void *arg)
{
	selector *sl = arg;
	float(*x)[NF] = malloc(sl->n * sizeof(*x));
	float *y = malloc(sl->n * sizeof(float));
	alcm_pred_escapes *e = malloc(sl->n * sizeof(*e));
	for (;;) {
		pthread_mutex_lock(&sl->lock);
		size_t job = sl->next++;
		if (!x || !y || !e)
			sl->status = ALCM_E_NOMEM;
		int stop = sl->status || job >= (size_t)sl->restarts * (size_t)sl->ngroup;
		pthread_mutex_unlock(&sl->lock);
		if (stop)
			break;
		int c = (int)(job / (size_t)sl->ngroup), g = 1 + (int)(job % (size_t)sl->ngroup);
		size_t m = 0, nbig = 0;
		for (size_t i = 0; i < sl->n; i++) {
			nbig += sl->group[i] == g && sl->big[i];
			if (sl->group[i] == g)
				continue;
			memcpy(x[m], sl->x[i], sizeof(x[m]));
			y[m] = sl->y[i];
			e[m++] = sl->e[i];
		}
		alcm_predictor p;
		int st = m ? alcm_predictor_train_escapes(&p, (const float(*)[NF])x, y, e, m,
		                                          restart_seed(sl->seed, c), sl->epochs, NULL)
		           : ALCM_E_ARG;
		double ae = 0, cnt = 0;
		for (size_t i = 0; i < sl->n && !st; i++)
			if (sl->group[i] == g && (sl->big[i] || !nbig)) {
				ae += fabs(alcm_predict_bits_escapes(&p, sl->x[i], &sl->e[i]) - sl->y[i]);
				cnt++;
			}
		pthread_mutex_lock(&sl->lock);
		if (st)
			sl->status = st;
		else
			sl->score[job] = cnt ? ae / cnt : 0;
		pthread_mutex_unlock(&sl->lock);
	}
	free(x);
	free(y);
	free(e);
	return NULL;
}

/* @return the chosen seed's index, or -1 with *status set. */
static int select_seed(selector *sl, unsigned threads)
{
	pthread_mutex_init(&sl->lock, NULL);
	pthread_t th[256];
	unsigned nth = 0;
	for (; nth < threads; nth++)
		if (pthread_create(&th[nth], NULL, select_worker, sl))
			break;
	if (!nth)
		select_worker(sl);
	for (unsigned i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&sl->lock);
	if (sl->status)
		return -1;
	int best = 0;
	double best_s = INFINITY;
	for (int c = 0; c < sl->restarts; c++) {
		double sc = 0;
		for (int g = 0; g < sl->ngroup; g++)
			sc += sl->score[c * sl->ngroup + g];
		sc /= sl->ngroup;
		if (!cli_quiet) {
			printf("selection: seed %llu, validation mae by training network:",
			       (unsigned long long)restart_seed(sl->seed, c));
			for (int g = 0; g < sl->ngroup; g++)
				printf(" %.3f", sl->score[c * sl->ngroup + g]);
			printf("  mean %.3f\n", sc);
		}
		if (sc < best_s) {
			best_s = sc;
			best = c;
		}
	}
	return best;
}

/* ---- header output ---------------------------------------------------------------------- */

static void put_floats(FILE *f, const float *v, int n)
{
	for (int i = 0; i < n; i++)
		fprintf(f, "%s%.9g", i ? ", " : "", (double)v[i]);
}

static int write_header(const char *path, const alcm_predictor *p, const char *cmd,
                        const char *corpus_line, const char *result_line)
{
	/* Built in memory, then written atomically: a killed run leaves the old header. */
	char *text = NULL;
	size_t text_len = 0;
	FILE *f = open_memstream(&text, &text_len);
	if (!f)
		return EXIT_NOMEM;
	fprintf(f, "/* Default weights of the entropy predictor (spec 6.7). Generated by alcm-train; do\n"
	           " * not edit. Regenerate from the source root with\n"
	           " *   %s\n"
	           " * %s\n"
	           " * %s\n"
	           " * Labels are coded sizes measured with this library's encoder; another zstd\n"
	           " * version or libm may change the last digits. */\n{\n", cmd, corpus_line,
	        result_line);
	fprintf(f, "\t.mean = {");
	put_floats(f, p->mean, NF);
	fprintf(f, "},\n\t.scale = {");
	put_floats(f, p->scale, NF);
	fprintf(f, "},\n\t.w1 = {\n");
	for (int j = 0; j < ALCM_PRED_HIDDEN; j++) {
		fprintf(f, "\t\t{");
		put_floats(f, p->w1[j], NF);
		fprintf(f, "},\n");
	}
	fprintf(f, "\t},\n\t.b1 = {\n");
	for (int j = 0; j < ALCM_PRED_HIDDEN; j += 8) {
		fprintf(f, "\t\t");
		put_floats(f, p->b1 + j, 8);
		fprintf(f, ",\n");
	}
	fprintf(f, "\t},\n\t.w2 = {\n");
	for (int j = 0; j < ALCM_PRED_HIDDEN; j += 8) {
		fprintf(f, "\t\t");
		put_floats(f, p->w2 + j, 8);
		fprintf(f, ",\n");
	}
	fprintf(f, "\t},\n\t.b2 = %.9g,\n\t.version = 3,\n}\n", (double)p->b2);
	if (fclose(f)) {
		free(text);
		return EXIT_NOMEM;
	}
	alcm_atomic_file *af = NULL;
	int st = alcm_atomic_file_open(&af, path, ALCM_WRITE_OVERWRITE, NULL);
	if (!st)
		st = alcm_atomic_file_write(af, text, text_len);
	if (!st)
		st = alcm_atomic_file_commit(af);
	int rc = st ? cli_fail(st, "write", path, alcm_atomic_file_detail(af)) : 0;
	alcm_atomic_file_free(af);
	free(text);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

enum { OPT_EVAL = 256, OPT_MAXEL, OPT_TESTDEF, OPT_HOLDOUT, OPT_RESTARTS };

int main(int argc, char **argv)
{
	cli_init("alcm-train");
	argv[0] = (char *)cli_prog; /* getopt's messages name the tool, not its path */
	static const struct option opts[] = {
		{"seed", required_argument, NULL, 's'},    {"epochs", required_argument, NULL, 'e'},
		{"samples", required_argument, NULL, 'n'}, {"out-header", required_argument, NULL, 'o'},
		{"eval", no_argument, NULL, OPT_EVAL},     {"max-elements", required_argument, NULL, OPT_MAXEL},
		{"test-default", no_argument, NULL, OPT_TESTDEF},
		{"holdout", required_argument, NULL, OPT_HOLDOUT},
		{"restarts", required_argument, NULL, OPT_RESTARTS},
		{"threads", required_argument, NULL, 'T'}, {"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'},       {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
	};
	uint64_t seed = 1, epochs = 400, samples = 7200, max_el = (uint64_t)4 << 20, threads = 0;
	uint64_t restarts = 1;
	const char *header = NULL;
	int eval = 0, test_default = 0, c, nhold = 0;
	const char *hold[MAX_HOLDOUT];
	while ((c = getopt_long(argc, argv, "s:e:n:o:T:qvhV", opts, NULL)) != -1) {
		uint64_t *target = NULL;
		uint64_t lo = 0, hi = UINT64_MAX;
		switch (c) {
		case 's': target = &seed; break;
		case 'e': target = &epochs, lo = 1, hi = 100000; break;
		case 'n': target = &samples, lo = NSTEPS * SPLIT, hi = (uint64_t)1 << 24; break;
		case 'T': target = &threads, hi = 256; break;
		case OPT_MAXEL: target = &max_el, lo = 16; break;
		case OPT_RESTARTS: target = &restarts, lo = 1, hi = 64; break;
		case 'o': header = optarg; break;
		case OPT_EVAL: eval = 1; break;
		case OPT_TESTDEF: test_default = 1; break;
		case OPT_HOLDOUT:
			if (nhold == MAX_HOLDOUT) {
				cli_err("more than %d --holdout files", MAX_HOLDOUT);
				return EXIT_USAGE;
			}
			hold[nhold++] = optarg;
			break;
		case 'q': cli_quiet = 1; break;
		case 'v': cli_verbose = 1; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': return cli_version();
		default: return cli_usage_error(usage, NULL);
		}
		if (target && (cli_parse_u64(optarg, target) || *target < lo || *target > hi)) {
			const char *name = "?";
			for (const struct option *o = opts; o->name; o++)
				if (o->val == c)
					name = o->name;
			if (hi == UINT64_MAX)
				cli_err("invalid --%s '%s': expected a number", name, optarg);
			else
				cli_err("invalid --%s '%s': expected %llu..%llu", name, optarg,
				        (unsigned long long)lo, (unsigned long long)hi);
			return EXIT_USAGE;
		}
	}
	if (test_default && header) {
		cli_err("--test-default and --out-header exclude each other");
		return EXIT_USAGE;
	}
	if (!threads)
		threads = alcm_cpu_count();

	corpus co;
	memset(&co, 0, sizeof(co));
	co.eval = eval;
	co.all_test = test_default;
	pthread_mutex_init(&co.lock, NULL);
	size_t ngen = (size_t)((samples + NSTEPS - 1) / NSTEPS), nfile = 0, skipped = 0;
	for (size_t i = 0; i < ngen; i++) {
		item *it = push(&co);
		if (!it) {
			cli_err("out of memory");
			return EXIT_NOMEM;
		}
		plan_generated(it, seed, i);
		it->test |= test_default;
	}
	int ngroup = 0;
	for (int a = optind; a < argc; a++) {
		int g = file_group(argv, optind, a);
		ngroup = g > ngroup ? g : ngroup;
		int rc = add_file(&co, argv[a], max_el, &nfile, &skipped, 0, nhold > 0, g);
		if (rc)
			return rc;
	}
	for (int h = 0; h < nhold; h++) {
		int rc = add_file(&co, hold[h], max_el, &nfile, &skipped, h + 1, 1, 0);
		if (rc)
			return rc;
	}

	double t0 = cli_now();
	pthread_t th[256];
	unsigned nth = 0;
	for (; nth < threads; nth++)
		if (pthread_create(&th[nth], NULL, worker, &co))
			break;
	if (!nth)
		worker(&co);
	for (unsigned i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	double t_corpus = cli_now() - t0;

	size_t ntr = 0, nte = 0, nsmooth = 0, bad = 0;
	double pack_cpu = 0, feat_cpu = 0, gen_cpu = 0;
	for (size_t i = 0; i < co.n; i++) {
		item *it = &co.it[i];
		if (it->status) {
			if (it->status != ALCM_E_ARG || it->family != F_FILE) {
				cli_err("cannot label tensor %s: %s", it->name, alcm_strerror(it->status));
				return cli_exit_code(it->status);
			}
			bad++; /* a constant file tensor: no step relative to its spread */
			continue;
		}
		if (it->family == F_SMOOTH)
			nsmooth += NSTEPS;
		else if (it->test)
			nte += NSTEPS;
		else if (it->family != F_FILE || it->elems >= SMALL_TRAIN)
			ntr += NSTEPS;
		pack_cpu += it->pack_cpu;
		gen_cpu += it->gen_cpu;
		feat_cpu += it->feat_cpu;
	}
	float(*xtr)[NF] = malloc((ntr ? ntr : 1) * sizeof(*xtr));
	float *ytr = malloc((ntr ? ntr : 1) * sizeof(float));
	alcm_pred_escapes *etr = malloc((ntr ? ntr : 1) * sizeof(*etr));
	int *gtr = malloc((ntr ? ntr : 1) * sizeof(int));
	uint8_t *btr = malloc(ntr ? ntr : 1);
	if (!xtr || !ytr || !etr || !gtr || !btr) {
		cli_err("out of memory");
		return EXIT_NOMEM;
	}
	size_t m = 0;
	for (size_t i = 0; i < co.n; i++) {
		item *it = &co.it[i];
		if (it->status || it->test || (it->family == F_FILE && it->elems < SMALL_TRAIN))
			continue;
		for (int k = 0; k < NSTEPS; k++, m++) {
			memcpy(xtr[m], it->feat[k], sizeof(xtr[m]));
			ytr[m] = it->bits[k];
			etr[m] = it->esc;
			gtr[m] = it->group;
			btr[m] = it->elems >= BIG_EVAL;
		}
	}
	alcm_predictor p = *alcm_predictor_default();
	double t_train = 0;
	uint64_t tseed = seed; /* the training seed: seed, or the one --restarts chose */
	if (!test_default) {
		if (!ntr) {
			cli_err("no training samples");
			return EXIT_FAIL;
		}
		t0 = cli_now();
		if (restarts > 1 && ngroup >= 2) {
			selector sl = {.x = (const float(*)[NF])xtr, .y = ytr, .e = etr, .group = gtr,
			               .big = btr, .n = ntr, .ngroup = ngroup, .restarts = (int)restarts,
			               .seed = seed, .epochs = (unsigned)epochs};
			sl.score = calloc((size_t)restarts * (size_t)ngroup, sizeof(double));
			int pick = sl.score ? select_seed(&sl, (unsigned)threads) : -1;
			int sst = sl.score ? sl.status : ALCM_E_NOMEM;
			free(sl.score);
			if (pick < 0) {
				cli_err("model selection failed: %s", alcm_strerror(sst));
				return cli_exit_code(sst);
			}
			tseed = restart_seed(seed, pick);
		}
		int st = alcm_predictor_train_escapes(&p, (const float(*)[NF])xtr, ytr, etr, ntr,
		                                      tseed, (unsigned)epochs, NULL);
		t_train = cli_now() - t0;
		if (st) {
			cli_err("training failed: %s", alcm_strerror(st));
			return cli_exit_code(st);
		}
	}

	/* Inference cost: many calls over the held-out features, timed in bulk. */
	double t_inf = 0;
	volatile double sink = 0;
	{
		size_t calls = 0;
		double c0 = cpu_now();
		for (int rep = 0; rep < 20; rep++)
			for (size_t i = 0; i < co.n; i++)
				for (int k = 0; k < NSTEPS && !co.it[i].status; k++, calls++)
					sink += alcm_predict_bits_escapes(&p, co.it[i].feat[k], &co.it[i].esc);
		t_inf = calls ? (cpu_now() - c0) / (double)calls : 0;
	}

	errs tr = {0}, te = {0}, fam[NFAM + 1], dt[4], net[MAX_HOLDOUT + 1][2];
	memset(fam, 0, sizeof(fam));
	memset(net, 0, sizeof(net));
	memset(dt, 0, sizeof(dt));
	for (size_t i = 0; i < co.n; i++) {
		item *it = &co.it[i];
		if (it->status)
			continue;
		if (it->test)
			score(&p, it, &fam[it->family]);
		if (it->test && it->family == F_FILE) {
			score(&p, it, &net[it->network][0]);
			if (it->elems >= BIG_EVAL)
				score(&p, it, &net[it->network][1]);
		}
		if (it->family == F_SMOOTH)
			continue;
		score(&p, it, it->test ? &te : &tr);
		if (it->test)
			score(&p, it, &dt[it->dtype - ALCM_DTYPE_F16]);
	}
	for (size_t i = 0; i < co.n && cli_verbose; i++) {
		item *it = &co.it[i];
		if (it->status)
			continue;
		printf("%-24s %-8s %8llu values  sd %-9.3g  escapes %.3f at %.2f bits  "
		       "measured/predicted bits per value at std*2^%.2f..%+.2f:%s\n ", it->name,
		       alcm_dtype_name(it->dtype), (unsigned long long)it->elems, it->sd,
		       it->esc.share, it->esc.bits, KMIN + it->jitter,
		       KMIN + NSTEPS - 1 + it->jitter, it->test ? " (held out)" : "");
		for (int k = 0; k < NSTEPS; k++)
			printf(" %.2f/%.2f", (double)it->bits[k],
			       alcm_predict_bits_escapes(&p, it->feat[k], &it->esc));
		printf("\n");
	}
	if (!cli_quiet) {
		printf("corpus: %zu generated tensors (%zu samples), %zu file tensors, %zu skipped; "
		       "labelled in %.1f s on %u threads (cpu: generating %.1f s, packing %.1f s, "
		       "features %.2f s)\n", ngen, ngen * NSTEPS, nfile, skipped + bad, t_corpus,
		       nth ? nth : 1, gen_cpu, pack_cpu, feat_cpu);
		if (test_default)
			printf("the compiled-in weights, every tensor held out:\n");
		else
			printf("training: %zu samples, %llu epochs, seed %llu: %.2f s%s\n", ntr,
			       (unsigned long long)epochs, (unsigned long long)tseed, t_train,
			       restarts > 1 ? " (the choice included)" : "");
		print_errs("train", &tr);
		print_errs("held out", &te);
		for (int f = 0; f <= NFAM; f++) {
			char what[64];
			if (f == F_SMOOTH)
				continue;
			snprintf(what, sizeof(what), "held out %s", fam_name[f]);
			print_errs(what, &fam[f]);
		}
		for (int d = 0; d < 4; d++) {
			char what[64];
			snprintf(what, sizeof(what), "held out %s", alcm_dtype_name(ALCM_DTYPE_F16 + d));
			print_errs(what, &dt[d]);
		}
		print_errs("smooth (never trained on)", &fam[F_SMOOTH]);
		for (int h = 0; h <= nhold; h++) {
			char what[64];
			const char *nm = h ? hold[h - 1] : "file tensors, 1 in 5";
			const char *base = strrchr(nm, '/');
			if (h && nhold && !test_default && !net[h][0].n)
				continue;
			snprintf(what, sizeof(what), "net %.24s", base ? base + 1 : nm);
			print_errs(what, &net[h][0]);
			snprintf(what, sizeof(what), "net %.15s >=4K values", base ? base + 1 : nm);
			print_errs(what, &net[h][1]);
		}
		printf("cost: features %.2f%% and inference %.4f%% of single-thread packing time "
		       "(%.0f ns per prediction)\n", 100 * feat_cpu / pack_cpu,
		       100 * t_inf * (double)(ntr + nte + nsmooth) / pack_cpu, t_inf * 1e9);
		if (eval) {
			exhaustive(&p, &co, 0);
			exhaustive(&p, &co, 1);
		}
	}
	int rc = 0;
	if (header) {
		char cmd[1024], cl[256], rl[256];
		snprintf(cmd, sizeof(cmd), "alcm-train --seed %llu --epochs %llu --samples %llu "
		         "--out-header %s", (unsigned long long)seed, (unsigned long long)epochs,
		         (unsigned long long)samples, header);
		if (restarts > 1)
			snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " --restarts %llu",
			         (unsigned long long)restarts);
		if (optind < argc && max_el != (uint64_t)4 << 20)
			snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " --max-elements %llu",
			         (unsigned long long)max_el);
		for (int h = 0; h < nhold; h++) {
			strncat(cmd, " --holdout ", sizeof(cmd) - strlen(cmd) - 1);
			strncat(cmd, hold[h], sizeof(cmd) - strlen(cmd) - 1);
		}
		for (int a = optind; a < argc; a++) {
			strncat(cmd, " ", sizeof(cmd) - strlen(cmd) - 1);
			strncat(cmd, argv[a], sizeof(cmd) - strlen(cmd) - 1);
		}
		snprintf(cl, sizeof(cl), "Corpus: %zu generated tensors, %zu from files: %zu samples "
		         "trained on,\n * %zu held out, %zu smooth ones only evaluated.", ngen, nfile,
		         ntr, nte, nsmooth);
		snprintf(rl, sizeof(rl), "Train MSE %.4f, held-out MSE %.4f bits^2 per value.",
		         tr.se / (double)tr.n, te.n ? te.se / (double)te.n : 0.0);
		rc = write_header(header, &p, cmd, cl, rl);
		if (!rc && !cli_quiet)
			printf("wrote %s\n", header);
	}
	for (size_t i = 0; i < co.n; i++) {
		free(co.it[i].data);
		free(co.it[i].gfeat);
		free(co.it[i].gbits);
	}
	free(co.it);
	free(xtr);
	free(ytr);
	free(etr);
	free(gtr);
	free(btr);
	return rc;
}
