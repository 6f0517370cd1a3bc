/* The predictor's features against a plain reading of spec 6.7.2, computed anew for every
 * step: alcm_tensor_features_steps() (one pair of passes for all steps, memoised entropy,
 * guessed run ends) and alcm_tensor_features() must give the same floats, bit for bit, over
 * dtypes, sizes, shapes, densities, lattices and special values. The reference follows the
 * library's arithmetic where the spec leaves the order free (moments in four lanes a block
 * of 256 elements read, symbols through 1 / step). */
#include "testutil.h"
#include "codec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NF ALCM_PRED_FEATURES

static uint64_t ref_mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The elements read, in sample order (spec 6.7.2 "Sample"). */
static uint64_t *ref_sample(uint64_t n, uint64_t *T)
{
	uint64_t *el;
	if (n <= 8192) {
		el = malloc((n ? n : 1) * sizeof(*el));
		assert_non_null(el);
		for (uint64_t i = 0; i < n; i++)
			el[i] = i;
		*T = n;
		return el;
	}
	uint64_t R = n / 512 < 512 ? 512 : n / 512 > 16384 ? 16384 : n / 512;
	el = malloc(16 * R * sizeof(*el));
	assert_non_null(el);
	for (uint64_t k = 0; k < R; k++) {
		/* floor(k N / R) without overflow for these sizes */
		uint64_t lo = k * (n / R) + k * (n % R) / R;
		uint64_t hi = (k + 1) * (n / R) + (k + 1) * (n % R) / R;
		uint64_t s = lo + ref_mix64(k) % (hi - lo - 15);
		for (int j = 0; j < 16; j++)
			el[16 * k + (uint64_t)j] = s + (uint64_t)j;
	}
	*T = 16 * R;
	return el;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Order-0 entropy of sorted values, runs taken in order. */
static double ref_entropy_sorted_u64(const uint64_t *v, size_t n)
{
	double h = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && v[j] == v[i])
			j++;
		h += (double)(j - i) * log2((double)(j - i));
		i = j;
	}
	return log2((double)n) - h / (double)n;
}

/* D(t) and H(t) of the sorted entropy sample, one symbol at a time. */
static void ref_dh(const double *v, size_t c, double t, size_t *D, double *H)
{
	double inv = 1 / t, h = 0;
	size_t d = 0;
	for (size_t i = 0; i < c;) {
		double q = floor(v[i] * inv + 0.5);
		size_t j = i + 1;
		while (j < c && floor(v[j] * inv + 0.5) == q)
			j++;
		h += (double)(j - i) * log2((double)(j - i));
		d++;
		i = j;
	}
	*D = d;
	*H = log2((double)c) - h / (double)c;
}

static float ref_clamp(double v, double lo, double hi)
{
	return (float)(v < lo ? lo : v > hi ? hi : v);
}

/* C_a of one axis, or 0 with *used 0 when it takes no part. */
static double ref_channels(const alcm_tensor *t, uint64_t N, const uint64_t *idx,
                           const double *x, size_t n, uint64_t K, uint64_t L, double s,
                           int *used)
{
	*used = 0;
	uint64_t nb = K < 1024 ? K : 1024;
	if (n / 32 < nb)
		nb = n / 32;
	if (nb < 2)
		return 0;
	uint64_t w = (K + nb - 1) / nb, buckets = (K + w - 1) / w;
	double *S = calloc(buckets, sizeof(double));
	uint64_t *cnt = calloc(buckets, sizeof(uint64_t));
	assert_true(S && cnt);
	for (size_t i = 0; i < n; i++) {
		uint64_t b = ((idx[i] / L) % K) / w;
		S[b] += x[i] * x[i];
		cnt[b]++;
	}
	double sum = 0, tot = 0, h = 0;
	for (uint64_t b = 0; b < buckets; b++) {
		sum += S[b];
		tot += (double)cnt[b];
	}
	double c = 0;
	if (tot > 0 && sum > 0 && isfinite(sum)) {
		for (uint64_t b = 0; b < buckets; b++)
			if (cnt[b])
				h += (double)cnt[b] *
				     (0.5 * log2(1 + 17.079468445347132 * (S[b] / (double)cnt[b]) / (s * s)));
		c = 0.5 * log2(1 + 17.079468445347132 * (sum / tot) / (s * s)) - h / tot -
		    4.0 * (double)K / (double)N;
		*used = isfinite(c);
		if (!*used)
			c = 0;
	}
	(void)t;
	free(S);
	free(cnt);
	return c;
}

/* The seven features of t at step s, everything computed for this step alone. */
/* The sorted entropy sample, which does not depend on the step: sorted on the first call
 * for a tensor, kept for its other steps. */
typedef struct ref_sorted {
	double *v;
	size_t c;
} ref_sorted;

static void ref_features(const alcm_tensor *t, double s, float f[NF], ref_sorted *rs)
{
	size_t w = alcm_dtype_size(t->dtype);
	uint64_t N = t->nbytes / w, T;
	uint64_t *el = ref_sample(N, &T);
	double *x = malloc((T ? T : 1) * sizeof(double));
	uint64_t *idx = malloc((T ? T : 1) * sizeof(uint64_t));
	uint64_t *pat = malloc((T ? T : 1) * sizeof(uint64_t));
	assert_true(x && idx && pat);
	const uint8_t *src = t->data;
	/* Moments: four lanes, each block of 256 elements read starting again at lane 0. */
	double s1[4] = {0}, s2[4] = {0}, shift = 0, mean;
	size_t n = 0, nsp = 0;
	for (uint64_t b0 = 0; b0 < T; b0 += 256) {
		size_t first = n;
		for (uint64_t e = b0; e < T && e < b0 + 256; e++) {
			if (alcm_is_special(t->dtype, src, el[e])) {
				pat[nsp++] = w == 2 ? alcm_load16(src + 2 * el[e])
				             : w == 4 ? alcm_load32(src + 4 * el[e])
				                      : alcm_load64(src + 8 * el[e]);
				continue;
			}
			x[n] = alcm_load_float(t->dtype, src, el[e]);
			idx[n++] = el[e];
		}
		if (!first && n)
			shift = x[0];
		size_t got = n - first, full = got - got % 4;
		for (size_t i = 0; i < got; i++)
			s1[i < full ? i % 4 : 0] += x[first + i] - shift;
	}
	f[0] = (float)(N ? log2((double)N) : 0.0);
	double esc = T ? 1 - (double)n / (double)T : 0;
	if (!n) {
		f[1] = -30.0f;
		f[2] = 30.0f;
		f[3] = 1.0f;
		f[4] = (float)(N ? 8.0 * (double)w : 0.0);
		f[5] = -30.0f;
		f[6] = 0.0f;
		free(el);
		free(x);
		free(idx);
		free(pat);
		return;
	}
	double inv = 1.0 / (double)n;
	mean = shift + ((s1[0] + s1[1]) + (s1[2] + s1[3])) * inv;
	size_t done = 0;
	for (uint64_t b0 = 0; b0 < T; b0 += 256) {
		size_t got = 0;
		for (uint64_t e = b0; e < T && e < b0 + 256; e++)
			got += !alcm_is_special(t->dtype, src, el[e]);
		size_t full = got - got % 4;
		for (size_t i = 0; i < got; i++) {
			double d = x[done + i] - mean;
			s2[i < full ? i % 4 : 0] += d * d;
		}
		done += got;
	}
	double sd = sqrt(((s2[0] + s2[1]) + (s2[2] + s2[3])) * inv);
	f[1] = sd > 0 && isfinite(sd) ? ref_clamp(log2(sd / s), -30, 30) : -30.0f;
	f[2] = ref_clamp((t->dtype == ALCM_DTYPE_F16    ? 10
	                  : t->dtype == ALCM_DTYPE_BF16 ? 7
	                  : t->dtype == ALCM_DTYPE_F32  ? 23
	                                                : 52) -
	                     (double)f[1],
	                 -30, 30);
	uint64_t small = 0;
	for (size_t i = 0; i < n; i++)
		small += fabs(x[i]) < s / 2;
	f[3] = (float)((double)small * inv);

	/* Entropy sample, sorted. */
	if (!rs->v) {
		size_t m = (n + 4095) / 4096;
		rs->v = malloc(4096 * sizeof(double));
		assert_non_null(rs->v);
		for (size_t i = 0; i < n && rs->c < 4096; i += m)
			rs->v[rs->c++] = x[i];
		qsort(rs->v, rs->c, sizeof(double), cmp_double);
	}
	const double *v = rs->v;
	size_t c = rs->c;
	double tt = s, H, H2, E;
	size_t D;
	int j = 0;
	for (; j < 64 && isfinite(tt * 4); j++) {
		ref_dh(v, c, tt, &D, &H);
		if (!(D > c / 16 && D > 16))
			break;
		tt *= 2;
	}
	ref_dh(v, c, tt, &D, &H);
	E = H;
	if (j) {
		ref_dh(v, c, tt * 2, &D, &H2);
		double slope = H - H2;
		E = H + j * (slope < 0 ? 0 : slope > 1 ? 1 : slope);
	}
	/* Escapes: every q-th special pattern, at most 1024. */
	double P = 0;
	if (esc > 0) {
		size_t q = nsp > 1024 ? (nsp + 1023) / 1024 : 1, np = 0;
		for (size_t i = 0; i < nsp && np < 1024; i += q)
			pat[np++] = pat[i];
		qsort(pat, np, sizeof(uint64_t), cmp_u64);
		P = np ? ref_entropy_sorted_u64(pat, np) : 0;
	}
	f[4] = ref_clamp((1 - esc) * E + esc * P, 0, 64);
	double maxabs = fmax(fabs(v[0]), fabs(v[c - 1]));
	f[5] = maxabs > 0 ? ref_clamp(log2(maxabs / s), -30, 30) : -30.0f;
	double C = 0;
	if (t->ndim >= 2) {
		int u0, u1;
		double c0 = ref_channels(t, N, idx, x, n, t->shape[0], N / t->shape[0], s, &u0);
		double c1 = ref_channels(t, N, idx, x, n, t->shape[t->ndim - 1], 1, s, &u1);
		C = u0 && u1 ? (c1 > c0 ? c1 : c0) : u0 ? c0 : u1 ? c1 : 0;
	}
	f[6] = ref_clamp((1 - esc) * C, -8, 8);
	free(el);
	free(x);
	free(idx);
	free(pat);
}

/* ---- tensors ------------------------------------------------------------------------------ */

static void put(int dtype, uint8_t *buf, uint64_t i, double x)
{
	float f = (float)x;
	uint32_t u;
	memcpy(&u, &f, 4);
	switch (dtype) {
	case ALCM_DTYPE_F16: alcm_store16(buf + 2 * i, alcm_float_to_half(f)); break;
	case ALCM_DTYPE_BF16: alcm_store16(buf + 2 * i, (uint16_t)(u >> 16)); break;
	case ALCM_DTYPE_F32: alcm_store32(buf + 4 * i, u); break;
	default: memcpy(buf + 8 * i, &x, 8); break;
	}
}

enum { K_GAUSS, K_SPARSE, K_LATTICE, K_TAILS, K_CHANNELS, K_SPECIALS, K_CONST, K_SUBNORMAL,
       K_KINDS };

static double draw(int kind, uint64_t i, uint64_t *rs, double scale)
{
	double g = tu_gauss(rs), u = (double)(tu_rand(rs) >> 11) / 9007199254740992.0;
	switch (kind) {
	case K_GAUSS: return g * scale;
	case K_SPARSE: return u < 0.9 ? 0 : g * scale;
	case K_LATTICE: return round(g * 3) * 0.25 * scale + 2 * scale; /* on the steps' edges */
	case K_TAILS: return g * scale * (u < 0.01 ? 300 : 1);
	case K_CHANNELS: return g * scale * exp2((double)(i % 7) - (double)(i / 7 % 5));
	case K_SPECIALS:
		return u < 0.05 ? 1e-310 : u < 0.06 ? -0.0 : u < 0.065 ? NAN : u < 0.07 ? -INFINITY
		                                                                       : g * scale;
	case K_CONST: return 3 * scale;
	default: return g * (i % 3 ? 1e-39 : 1e-36); /* subnormal in float32 and below */
	}
}

/* Features at steps step[0 .. ns - 1] (increasing), all at once and one at a time, against
 * the reference. */
static void check_steps(const alcm_tensor *t, const double *step, int ns, const char *what)
{
	float got[ALCM_BUDGET_STEPS][NF], one[NF], want[NF];
	alcm_pred_escapes e1, e2;
	ref_sorted rs = {NULL, 0};
	assert_int_equal(alcm_tensor_features_esc(t, step, ns, got, &e1), ALCM_OK);
	assert_int_equal(alcm_tensor_escapes(t, &e2), ALCM_OK);
	assert_memory_equal(&e1, &e2, sizeof(e1));
	for (int k = 0; k < ns; k++) {
		ref_features(t, step[k], want, &rs);
		assert_int_equal(alcm_tensor_features(t, step[k], one), ALCM_OK);
		for (int q = 0; q < NF; q++)
			if (memcmp(&got[k][q], &want[q], 4) || memcmp(&one[q], &want[q], 4))
				fail_msg("%s, step %d (%.17g): feature %d: steps %.9g, one step %.9g, "
				         "reference %.9g",
				         what, k, step[k], q, (double)got[k][q], (double)one[q],
				         (double)want[q]);
	}
	free(rs.v);
}

static alcm_tensor tensor_of(int dtype, const uint8_t *buf, uint64_t n, int ndim,
                             const uint64_t *shape)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "t";
	t.name_len = 1;
	t.dtype = dtype;
	t.ndim = (uint32_t)ndim;
	for (int a = 0; a < ndim; a++)
		t.shape[a] = shape[a];
	t.data = buf;
	t.nbytes = n * alcm_dtype_size(dtype);
	return t;
}

static void check_tensor(int dtype, int kind, uint64_t n, int ndim, const uint64_t *shape,
                         uint64_t seed)
{
	size_t w = alcm_dtype_size(dtype);
	uint8_t *buf = malloc(n * w + 1);
	assert_non_null(buf);
	uint64_t rs = seed;
	double scale = exp2((double)(seed % 9) * 3 - 14);
	for (uint64_t i = 0; i < n; i++)
		put(dtype, buf, i, draw(kind, i, &rs, scale));
	alcm_tensor t = tensor_of(dtype, buf, n, ndim, shape);
	/* A profile's grid about the spread (steps half an octave apart, each doubling on the
	 * grid), and a grid a third of an octave apart with an offset. */
	double step[ALCM_BUDGET_STEPS], base = scale * exp2((double)(seed % 5) * 0.25);
	char what[160];
	for (int g = 0; g < 2; g++) {
		int ns = g ? 23 : ALCM_BUDGET_STEPS;
		for (int k = 0; k < ns; k++)
			step[k] = g ? base * exp2(k / 3.0 - 6.1) : base * exp2(k / 2.0 - 16);
		snprintf(what, sizeof(what), "dtype %d kind %d n %llu ndim %d seed %llu grid %d", dtype,
		         kind, (unsigned long long)n, ndim, (unsigned long long)seed, g);
		check_steps(&t, step, ns, what);
	}
	free(buf);
}

static void test_features_match_reference(void **state)
{
	(void)state;
	static const int dtypes[] = {ALCM_DTYPE_F32, ALCM_DTYPE_F16, ALCM_DTYPE_BF16,
	                             ALCM_DTYPE_F64};
	/* every element read up to 8192; 512 runs of 16 above (more in the [64, 4096] below) */
	static const uint64_t sizes[] = {1, 7, 17, 300, 4096, 8192, 8193, 40000};
	uint64_t seed = 1;
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
		for (size_t d = 0; d < 4; d++)
			for (int kind = 0; kind < K_KINDS; kind++, seed++) {
				uint64_t n = sizes[si], shape[3] = {n, 1, 1};
				int ndim = 1;
				if (seed % 3 == 1 && n % 7 == 0 && n >= 49) {
					ndim = 2; /* [n / 7, 7]: the last axis has 7 channels */
					shape[0] = n / 7;
					shape[1] = 7;
				} else if (seed % 3 == 2 && n >= 64) {
					ndim = 3; /* [k, n / k / 2, 2]: a long first axis */
					shape[0] = n >= 40000 ? 2000 : 16;
					shape[1] = n / shape[0] / 2;
					shape[2] = 2;
					if (shape[0] * shape[1] * shape[2] != n) {
						ndim = 1;
						shape[0] = n;
					}
				}
				check_tensor(dtypes[d], kind, n, ndim, shape, seed);
			}
}

/* Lattice values on the steps' edges (x / step + 1/2 an exact integer) send every run end
 * through the exact search; a [64, 4096] matrix has channels on both axes, a [16, 500] one
 * two channels a bucket on the last axis, whose rows end inside the blocks read. */
static void test_features_edges_and_channels(void **state)
{
	(void)state;
	uint64_t shape[2] = {64, 4096}, rows[2] = {16, 500}, odd[3] = {3, 5, 541};
	for (int d = 0; d < 4; d++) {
		int dt = d == 0 ? ALCM_DTYPE_F32 : d == 1 ? ALCM_DTYPE_F16 : d == 2 ? ALCM_DTYPE_BF16
		                                                                    : ALCM_DTYPE_F64;
		check_tensor(dt, K_LATTICE, 64 * 4096, 2, shape, 4);
		check_tensor(dt, K_CHANNELS, 64 * 4096, 2, shape, 5);
		check_tensor(dt, K_CHANNELS, 16 * 500, 2, rows, 6);
		check_tensor(dt, K_SPECIALS, 16 * 500, 2, rows, 7);
		check_tensor(dt, K_CHANNELS, 3 * 5 * 541, 3, odd, 8);
	}
}

/* Samples of exactly max(c / 16, 16) + 1 symbols between the first and the last, all of
 * them present (one too many: the step doubles) or one missing (it does not): the span of
 * the symbols alone does not decide. */
static void test_features_distinct_at_the_limit(void **state)
{
	(void)state;
	static const uint64_t sizes[] = {100, 4096, 8192};
	for (size_t si = 0; si < 3; si++)
		for (int missing = 0; missing < 2; missing++) {
			uint64_t n = sizes[si], c = n > 4096 ? 4096 : n;
			uint64_t lim = c / 16 > 16 ? c / 16 : 16;
			float *x = malloc(n * sizeof(float));
			assert_non_null(x);
			for (uint64_t i = 0; i < n; i++) {
				uint64_t q = i % (lim + 1);
				x[i] = (float)(missing && q == lim / 2 ? q + 1 : q) - 5.0f;
			}
			uint64_t shape[1] = {n};
			alcm_tensor t = tensor_of(ALCM_DTYPE_F32, (const uint8_t *)x, n, 1, shape);
			double step[12];
			for (int k = 0; k < 12; k++)
				step[k] = exp2(k / 2.0 - 3);
			char what[80];
			snprintf(what, sizeof(what), "n %llu, %s", (unsigned long long)n,
			         missing ? "one symbol missing" : "every symbol");
			check_steps(&t, step, 12, what);
			free(x);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_features_match_reference),
		cmocka_unit_test(test_features_edges_and_channels),
		cmocka_unit_test(test_features_distinct_at_the_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
