/*
 * The modelled symbol coding of QDAT chunks (spec 6.5.6 to 6.5.9): the rANS coder on its
 * own, whole chunks through the quantizer, the spec's test vector, and hostile chunks.
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Laplace-ish tokens: small ones often, a long tail. */
static uint8_t rnd_tok(unsigned scale, unsigned ntok)
{
	uint64_t r = rnd();
	unsigned t = (unsigned)__builtin_ctzll(r | (1ull << 63)) * scale / 4 + (unsigned)(r >> 60) % 3;
	return (uint8_t)(t < ntok ? t : ntok - 1);
}

static void rans_roundtrip(size_t n, unsigned k, unsigned ntok)
{
	uint8_t *tok = malloc(n + 1), *cls = malloc(n + 1), *dec = malloc(n + 1);
	uint64_t cnt[ALCM_SYM_MAX_CLASSES][ALCM_RANS_MAX_TOKENS];
	memset(cnt, 0, sizeof(cnt));
	for (size_t i = 0; i < n; i++) {
		cls[i] = (uint8_t)((i / 7) % k);
		tok[i] = rnd_tok(1 + cls[i], ntok);
		cnt[cls[i]][tok[i]]++;
	}
	alcm_rans_etab *et = malloc(k * sizeof(*et));
	alcm_rans_dtab *dt = malloc(k * sizeof(*dt));
	for (unsigned c = 0; c < k; c++) {
		uint32_t f[ALCM_RANS_MAX_TOKENS];
		int any = 0;
		for (unsigned t = 0; t < ntok; t++)
			any |= cnt[c][t] != 0;
		if (!any)
			cnt[c][0] = 1;
		alcm_rans_normalize(cnt[c], ntok, f);
		uint32_t sum = 0;
		for (unsigned t = 0; t < ntok; t++) {
			sum += f[t];
			assert_true(!cnt[c][t] || f[t] > 0);
		}
		assert_int_equal(sum, ALCM_RANS_TOTAL);
		alcm_rans_etab_build(&et[c], f, ntok);
		alcm_rans_dtab_build(&dt[c], f, ntok);
	}
	size_t cap = alcm_rans_bound(n);
	uint8_t *out = malloc(cap);
	/* The AVX2 encoder (where the CPU has it) writes the portable one's bytes. */
	int keep = alcm_rans_scalar_only;
	alcm_rans_scalar_only = 0;
	size_t len = alcm_rans_encode(out, cap, tok, k > 1 ? cls : NULL, n, et);
	alcm_rans_scalar_only = 1;
	uint8_t *out2 = malloc(cap);
	size_t len2 = alcm_rans_encode(out2, cap, tok, k > 1 ? cls : NULL, n, et);
	alcm_rans_scalar_only = keep;
	assert_int_equal(len2, len);
	assert_memory_equal(out2, out, len);
	free(out2);
	assert_true(len <= cap);
	assert_int_equal(alcm_rans_decode(dec, k > 1 ? cls : NULL, n, dt, out, len), ALCM_OK);
	assert_memory_equal(dec, tok, n);
	/* One byte less, one byte more, or a flipped byte: refused or decoded differently,
	 * never read out of bounds (ASan). */
	assert_int_equal(alcm_rans_decode(dec, k > 1 ? cls : NULL, n, dt, out, len - 2),
	                 ALCM_E_CORRUPT);
	free(tok);
	free(cls);
	free(dec);
	free(et);
	free(dt);
	free(out);
}

static void test_rans_roundtrip(void **state)
{
	(void)state;
	size_t sizes[] = {0, 1, 31, 32, 33, 100, 1000, 65537, 300000};
	/* The AVX2 decoder where the CPU has it, then the portable one. */
	for (int scalar = 0; scalar < 2; scalar++) {
		alcm_rans_scalar_only = scalar;
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			rans_roundtrip(sizes[i], 1, 40);
			rans_roundtrip(sizes[i], 5, 200);
			rans_roundtrip(sizes[i], 16, 256);
		}
	}
	alcm_rans_scalar_only = 0;
}

/* A float32 tensor whose rows and columns have their own scales (like gradients), with
 * some exact zeros: values x[r][c] = g * rs[r] * cs[c]. */
static float *make_tensor(uint64_t rows, uint64_t cols, double zero_share)
{
	float *x = malloc(rows * cols * sizeof(float) + 1);
	for (uint64_t r = 0; r < rows; r++) {
		double rs = exp2((double)(rnd() % 1000) / 200.0 - 2);
		for (uint64_t c = 0; c < cols; c++) {
			double cs = exp2((double)((c * 7919) % 1000) / 250.0 - 2);
			double u = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
			double g = (rnd() & 1 ? 1 : -1) * -log(u);
			x[r * cols + c] = (double)(rnd() % 1000) < zero_share * 1000 ? 0.0f
			                                                            : (float)(g * rs * cs);
		}
	}
	return x;
}

/* Codes elements [first, first + n) of x as one chunk and decodes them again. */
static size_t chunk_roundtrip(const float *x, uint64_t rows, uint64_t cols, uint64_t first,
                              uint64_t n, double bound, double prune, int symcoding)
{
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	assert_non_null(c);
	double step = 2 * bound;
	alcm_qparams qp;
	memset(&qp, 0, sizeof(qp));
	qp.dtype = ALCM_DTYPE_F32;
	qp.step = &step;
	qp.nsteps = 1;
	qp.inner = rows * cols;
	qp.max_err = bound;
	qp.bound_c = &bound;
	qp.prune_below = prune;
	qp.level = 3;
	qp.symcoding = symcoding;
	qp.naxes = 2;
	qp.axis_run[0] = cols;
	qp.axis_count[0] = rows;
	qp.axis_run[1] = 1;
	qp.axis_count[1] = cols;
	alcm_buf data = {NULL, 0, 0, NULL, 0}, mask = {NULL, 0, 0, NULL, 0};
	alcm_qstats st;
	memset(&st, 0, sizeof(st));
	uint8_t *rec = calloc(rows * cols, sizeof(float));
	assert_int_equal(alcm_quant_encode(c, &data, &mask, &qp, (const uint8_t *)x, first, n, &st,
	                                   rec),
	                 ALCM_OK);
	uint8_t *out = calloc(rows * cols, sizeof(float));
	uint8_t *scratch = malloc(alcm_quant_scratch(n));
	alcm_cursor dc = {data.p, data.len, 0}, mc = {mask.p, mask.len, 0};
	int rc = alcm_quant_decode(c, &dc, prune > 0 ? &mc : NULL, &qp, out, first, n, scratch,
	                           alcm_quant_scratch(n));
	assert_int_equal(rc, ALCM_OK);
	assert_int_equal(dc.pos, dc.len);
	const float *y = (const float *)(void *)out;
	for (uint64_t i = first; i < first + n; i++)
		if (fabs((double)x[i] - (double)y[i]) > bound)
			fail_msg("element %llu: %g decoded as %g, bound %g", (unsigned long long)i,
			         (double)x[i], (double)y[i], bound);
	/* The encoder's reconstruction is what the decoder gives, to the bit (+0, never -0,
	 * for a value that rounds to symbol 0). */
	if (memcmp(rec + 4 * first, out + 4 * first, 4 * n))
		fail_msg("the encoder's reconstruction differs from the decoded values");
	free(rec);
	size_t len = data.len;
	/* nsym (varint) then, below alcm_rans_lanes_for()'s 32 states, a byte of fewer rANS
	 * states (spec 6.5.14). */
	uint64_t nsym = n - st.pruned;
	int few = alcm_rans_lanes_for(nsym) < ALCM_RANS_LANES;
	if (symcoding && n >= 4096)
		assert_int_equal(data.p[0], few ? ALCM_QCODING_RANS_LANES : ALCM_QCODING_RANS);
	if (symcoding && n >= 4096 && few)
		assert_int_equal(data.p[1 + (nsym < 128 ? 1 : nsym < 16384 ? 2 : 3)],
		                 alcm_rans_lanes_for(nsym));
	alcm_buf_free(&data);
	alcm_buf_free(&mask);
	free(out);
	free(scratch);
	alcm_coder_free(c);
	return len;
}

static void test_chunk_roundtrip(void **state)
{
	(void)state;
	struct {
		uint64_t rows, cols, first, n;
		double bound, prune, zeros;
	} cases[] = {
		{64, 256, 0, 64 * 256, 0.05, 0, 0},
		{64, 256, 0, 64 * 256, 0.05, 0.2, 0.1},
		{256, 64, 100, 5000, 0.01, 0, 0.3},
		{3, 100000, 77777, 150000, 0.2, 0, 0},
		{100000, 3, 12345, 150000, 0.001, 0.1, 0.5},
		{1000, 1000, 0, 1000000, 0.02, 0, 0.05},
		{7, 9, 0, 63, 0.1, 0, 0},
		{1, 20000, 0, 20000, 1e-4, 0, 0},
		{50, 50, 0, 2500, 100, 0, 0}, /* every symbol 0 */
	};
	/* The second time round with the portable quantizer loop. */
	for (size_t r = 0; r < 2 * sizeof(cases) / sizeof(cases[0]); r++) {
		size_t k = r % (sizeof(cases) / sizeof(cases[0]));
		alcm_quant_scalar_only = r >= sizeof(cases) / sizeof(cases[0]);
		float *x = make_tensor(cases[k].rows, cases[k].cols, cases[k].zeros);
		size_t l1 = chunk_roundtrip(x, cases[k].rows, cases[k].cols, cases[k].first,
		                            cases[k].n, cases[k].bound, cases[k].prune, 1);
		size_t l0 = chunk_roundtrip(x, cases[k].rows, cases[k].cols, cases[k].first,
		                            cases[k].n, cases[k].bound, cases[k].prune, 0);
		print_message("case %zu: %zu bytes modelled, %zu as planes\n", k, l1, l0);
		free(x);
	}
	alcm_quant_scalar_only = 0;
}

/* Token tables (spec 6.5.8) through their own code: sums, round trips, and flat tables of
 * many tokens, where rounding each frequency to what the code sends must not take more
 * than the largest has (a total that overflowed once made the encoder loop forever). */
static void table_roundtrip(const uint64_t *cnt, unsigned ntok)
{
	uint32_t f[ALCM_RANS_MAX_TOKENS], g[ALCM_RANS_MAX_TOKENS];
	alcm_buf b = {NULL, 0, 0, NULL, 0};
	assert_int_equal(alcm_symtab_encode(&b, cnt, ntok, f), ALCM_OK);
	uint32_t sum = 0;
	for (unsigned t = 0; t < ntok; t++) {
		sum += f[t];
		if (cnt[t] && !f[t])
			fail_msg("token %u occurs but has frequency 0", t);
	}
	assert_int_equal(sum, ALCM_RANS_TOTAL);
	unsigned last;
	memset(g, 0xee, sizeof(g));
	assert_int_equal(alcm_symtab_decode(b.p, b.len, ntok, g, &last), ALCM_OK);
	for (unsigned t = 0; t <= last; t++)
		assert_int_equal(g[t], f[t]);
	for (unsigned t = last + 1; t < ntok; t++)
		assert_int_equal(f[t], 0);
	alcm_buf_free(&b);
}

static void test_tables(void **state)
{
	(void)state;
	uint64_t cnt[ALCM_RANS_MAX_TOKENS];
	for (unsigned ntok = 1; ntok <= 256; ntok += 5) {
		for (unsigned t = 0; t < ntok; t++)
			cnt[t] = 17; /* flat: every frequency near 4096 / ntok */
		table_roundtrip(cnt, ntok);
		for (unsigned t = 0; t < ntok; t++)
			cnt[t] = 1 + (rnd() % 1000) * (t % 3 == 0); /* ragged */
		table_roundtrip(cnt, ntok);
		for (unsigned t = 0; t < ntok; t++)
			cnt[t] = t == ntok / 2 ? 1000000 : (t % 2 ? 0 : 1); /* one peak, gaps */
		table_roundtrip(cnt, ntok);
	}
}

/* ---- the spec's test vector (6.5.10) ------------------------------------------------- */

#define VEC_ROWS 2
#define VEC_COLS 64

/* Row 0 mostly zeros, row 1 spread over [-128, 128]: two classes pay. */
static void vector_values(float *x)
{
	for (unsigned k = 0; k < VEC_COLS; k++) {
		x[k] = k % 7 == 0 ? (float)((int)(k % 3) - 1) : 0.0f;
		x[VEC_COLS + k] = (float)((int)((k * 73) % 257) - 128);
	}
}

static void vector_params(alcm_qparams *qp, double *step, double *bound)
{
	*step = 1;
	*bound = 0.5;
	memset(qp, 0, sizeof(*qp));
	qp->dtype = ALCM_DTYPE_F32;
	qp->step = step;
	qp->nsteps = 1;
	qp->inner = VEC_ROWS * VEC_COLS;
	qp->max_err = *bound;
	qp->bound_c = bound;
	qp->level = 3;
	qp->symcoding = 2;
	qp->lanes = 32; /* coding 16, as the vector */
	qp->naxes = 2;
	qp->axis_run[0] = VEC_COLS;
	qp->axis_count[0] = VEC_ROWS;
	qp->axis_run[1] = 1;
	qp->axis_count[1] = VEC_COLS;
}

/* The hex bytes of the first ``` block after `heading` in the spec. */
static uint8_t *spec_hex(const char *heading, size_t *n)
{
	size_t len;
	char *spec = (char *)tu_read_file(ALCM_SOURCE_DIR "/spec/alcm-format.md", &len);
	assert_non_null(spec);
	char *h = strstr(spec, heading);
	if (!h)
		fail_msg("spec has no '%s'", heading);
	char *b = strstr(h, "```\n");
	assert_non_null(b);
	b += 4;
	char *e = strstr(b, "```");
	assert_non_null(e);
	uint8_t *out = malloc((size_t)(e - b) / 2 + 1);
	*n = 0;
	for (char *p = b; p + 1 < e;) {
		unsigned v;
		if (sscanf(p, "%2x", &v) == 1 && (p[2] == ' ' || p[2] == '\n')) {
			out[(*n)++] = (uint8_t)v;
			p += 3;
		} else {
			p++;
		}
	}
	free(spec);
	return out;
}

/* The vector of 6.5.10 (coding 16, 32 states) or of 6.5.15 (coding 18: the same symbols,
 * 4 states, as the encoder picks for 128 symbols). */
static void spec_vector(const char *heading, unsigned lanes)
{
	float x[VEC_ROWS * VEC_COLS];
	vector_values(x);
	double step, bound;
	alcm_qparams qp;
	vector_params(&qp, &step, &bound);
	qp.lanes = lanes;
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	alcm_buf data = {NULL, 0, 0, NULL, 0}, mask = {NULL, 0, 0, NULL, 0};
	alcm_qstats st;
	memset(&st, 0, sizeof(st));
	assert_int_equal(alcm_quant_encode(c, &data, &mask, &qp, (const uint8_t *)x, 0,
	                                   VEC_ROWS * VEC_COLS, &st, NULL),
	                 ALCM_OK);
	if (getenv("ALCM_PRINT_VECTOR")) {
		for (size_t i = 0; i < data.len; i++)
			printf("%02x%s", data.p[i], i % 16 == 15 || i + 1 == data.len ? "\n" : " ");
	}
	size_t n;
	uint8_t *v = spec_hex(heading, &n);
	assert_int_equal(n, data.len);
	assert_memory_equal(v, data.p, n);
	/* The spec's bytes decode to the values, exactly (they are on the grid). */
	float y[VEC_ROWS * VEC_COLS];
	uint8_t scratch[VEC_ROWS * VEC_COLS * 5 + 64];
	alcm_cursor cur = {v, n, 0};
	assert_int_equal(alcm_quant_decode(c, &cur, NULL, &qp, (uint8_t *)y, 0, VEC_ROWS * VEC_COLS,
	                                   scratch, sizeof(scratch)),
	                 ALCM_OK);
	assert_int_equal(cur.pos, n);
	assert_memory_equal(x, y, sizeof(x));
	free(v);
	alcm_buf_free(&data);
	alcm_buf_free(&mask);
	alcm_coder_free(c);
}

static int decode_chunk(const uint8_t *p, size_t n);

static void test_spec_vector(void **state)
{
	(void)state;
	spec_vector("#### 6.5.10 Test vector", 32);
}

/* Coding 18 (spec 6.5.14): the vector; a lanes byte of 0 or 32 and up is corrupt; cut
 * anywhere, refused; the states of the 32-lane coding (coding 16's bytes with a lanes byte
 * of 4 put in) refused. */
static void test_lanes_vector(void **state)
{
	(void)state;
	spec_vector("#### 6.5.15 Test vector (coding 18)", 0);
	size_t n;
	uint8_t *v = spec_hex("#### 6.5.15 Test vector (coding 18)", &n);
	assert_int_equal(v[0], ALCM_QCODING_RANS_LANES);
	assert_int_equal(v[3], 4);
	uint8_t *w = malloc(n + 1);
	static const uint8_t bad[] = {0, 32, 33, 255};
	for (size_t k = 0; k < sizeof(bad); k++) {
		memcpy(w, v, n);
		w[3] = bad[k];
		assert_int_equal(decode_chunk(w, n), ALCM_E_CORRUPT);
	}
	for (size_t cut = 0; cut < n; cut++)
		assert_int_not_equal(decode_chunk(v, cut), ALCM_OK);
	/* More lanes than the stream was written with: its words and states no longer match. */
	for (unsigned l = 1; l < 32; l++) {
		if (l == 4)
			continue;
		memcpy(w, v, n);
		w[3] = (uint8_t)l;
		assert_int_not_equal(decode_chunk(w, n), ALCM_OK);
	}
	size_t n16;
	uint8_t *v16 = spec_hex("#### 6.5.10 Test vector", &n16);
	uint8_t *x = malloc(n16 + 1);
	x[0] = ALCM_QCODING_RANS_LANES;
	memcpy(x + 1, v16 + 1, 2);
	x[3] = 4;
	memcpy(x + 4, v16 + 3, n16 - 3);
	assert_int_equal(decode_chunk(x, n16 + 1), ALCM_E_CORRUPT);
	free(x);
	free(v16);
	free(w);
	free(v);
}

/* ---- hostile input ------------------------------------------------------------------- */

/* rANS streams that must be refused: states out of range, words missing or left over, a
 * changed word (the final states then differ from the initial ones). */
static void test_rans_hostile(void **state)
{
	(void)state;
	size_t n = 5000;
	uint8_t *tok = malloc(n), *dec = malloc(n);
	uint64_t cnt[40] = {0};
	for (size_t i = 0; i < n; i++)
		cnt[tok[i] = rnd_tok(2, 40)]++;
	uint32_t f[40];
	alcm_rans_normalize(cnt, 40, f);
	alcm_rans_etab et;
	alcm_rans_dtab dt;
	alcm_rans_etab_build(&et, f, 40);
	alcm_rans_dtab_build(&dt, f, 40);
	size_t cap = alcm_rans_bound(n) + 4;
	uint8_t *out = malloc(cap), *bad = malloc(cap);
	size_t len = alcm_rans_encode(out, cap, tok, NULL, n, &et);
	for (int scalar = 0; scalar < 2; scalar++) {
		alcm_rans_scalar_only = scalar;
		assert_int_equal(alcm_rans_decode(dec, NULL, n, &dt, out, len), ALCM_OK);
		memcpy(bad, out, len);
		alcm_store32(bad + 8, ALCM_RANS_L - 1); /* a state under L */
		assert_int_equal(alcm_rans_decode(dec, NULL, n, &dt, bad, len), ALCM_E_CORRUPT);
		alcm_store32(bad + 8, 0x80000000u); /* a state at 2^31 */
		assert_int_equal(alcm_rans_decode(dec, NULL, n, &dt, bad, len), ALCM_E_CORRUPT);
		memcpy(bad, out, len);
		bad[len] = bad[len + 1] = 0; /* a word left over */
		assert_int_equal(alcm_rans_decode(dec, NULL, n, &dt, bad, len + 2), ALCM_E_CORRUPT);
		assert_int_equal(alcm_rans_decode(dec, NULL, n, &dt, bad, len + 1), ALCM_E_CORRUPT);
		for (size_t cut = 1; cut < 64 && cut < len; cut++) /* streams ending early */
			assert_int_not_equal(alcm_rans_decode(dec, NULL, n, &dt, out, len - cut), ALCM_OK);
		for (size_t k = 4 * ALCM_RANS_LANES; k < len; k += 97) {
			memcpy(bad, out, len);
			bad[k] ^= 0x10;
			assert_int_equal(alcm_rans_decode(dec, NULL, n, &dt, bad, len), ALCM_E_CORRUPT);
		}
	}
	alcm_rans_scalar_only = 0;
	free(tok);
	free(dec);
	free(out);
	free(bad);
}

/* Bit strings (least significant bit first) made by hand for the table code. */
typedef struct bits {
	uint8_t b[64];
	unsigned n;
} bits;

static void put_bits(bits *w, uint32_t v, unsigned k)
{
	for (unsigned i = 0; i < k; i++, w->n++)
		if ((v >> i) & 1)
			w->b[w->n / 8] |= (uint8_t)(1u << (w->n % 8));
}

static void put_gamma(bits *w, uint32_t x)
{
	unsigned k = 31 - (unsigned)__builtin_clz(x);
	put_bits(w, 1u << k, k + 1);
	put_bits(w, x & ((1u << k) - 1), k);
}

/* A table of `last` + 1 tokens, a = 0 left out, the others of bit length b each (mantissa
 * 0), so F = 2^(b - 1) each. */
static int table_of(unsigned ntok, unsigned last, unsigned a, unsigned b, int extra_byte)
{
	bits w;
	memset(&w, 0, sizeof(w));
	put_bits(&w, last, 8);
	put_bits(&w, a, 8);
	unsigned prev = 0;
	for (unsigned t = 0; t <= last; t++) {
		if (t == a)
			continue;
		int d = (int)b - (int)prev;
		put_gamma(&w, (d < 0 ? (uint32_t)(-2 * d - 1) : (uint32_t)(2 * d)) + 1);
		if (b >= 2)
			put_bits(&w, 0, b - 1 < 3 ? b - 1 : 3);
		prev = b;
	}
	uint32_t f[ALCM_RANS_MAX_TOKENS];
	unsigned l;
	return alcm_symtab_decode(w.b, (w.n + 7) / 8 + (extra_byte ? 1 : 0), ntok, f, &l);
}

static void test_tables_hostile(void **state)
{
	(void)state;
	assert_int_equal(table_of(16, 3, 0, 10, 0), ALCM_OK);        /* 3 x 512 + 2560 */
	assert_int_equal(table_of(16, 3, 0, 10, 1), ALCM_E_CORRUPT); /* a byte left over */
	assert_int_equal(table_of(16, 7, 0, 11, 0), ALCM_E_CORRUPT); /* 7 x 1024: no room for F(a) */
	assert_int_equal(table_of(16, 4, 0, 12, 0), ALCM_E_CORRUPT); /* 4 x 2048: F(a) = 0 */
	assert_int_equal(table_of(16, 16, 0, 4, 0), ALCM_E_CORRUPT); /* last >= ntok */
	assert_int_equal(table_of(16, 3, 5, 4, 0), ALCM_E_CORRUPT);  /* a > last */
	assert_int_equal(table_of(16, 3, 0, 13, 0), ALCM_E_CORRUPT); /* bit length 13 */
	assert_int_equal(table_of(16, 3, 1, 0, 0), ALCM_E_CORRUPT);  /* F(last) = 0, last != a */
	assert_int_equal(table_of(16, 3, 3, 0, 0), ALCM_OK);         /* zeros, then F(a) = 4096 */
	/* Too short: the first byte only; six leading zeros of a gamma code. */
	uint8_t one = 3, zeros[3] = {3, 0, 0x40};
	uint32_t f[ALCM_RANS_MAX_TOKENS];
	unsigned l;
	assert_int_equal(alcm_symtab_decode(&one, 1, 16, f, &l), ALCM_E_CORRUPT);
	assert_int_equal(alcm_symtab_decode(zeros, 3, 16, f, &l), ALCM_E_CORRUPT);
}

/* Decodes a chunk; @return the status (the output is thrown away). */
static int decode_chunk(const uint8_t *p, size_t n)
{
	float x[VEC_ROWS * VEC_COLS];
	double step, bound;
	alcm_qparams qp;
	vector_params(&qp, &step, &bound);
	alcm_coder *c = alcm_coder_new(NULL, NULL);
	uint8_t *copy = malloc(n ? n : 1), scratch[VEC_ROWS * VEC_COLS * 5 + 64];
	memcpy(copy, p, n);
	alcm_cursor cur = {copy, n, 0};
	int st = alcm_quant_decode(c, &cur, NULL, &qp, (uint8_t *)x, 0, VEC_ROWS * VEC_COLS,
	                           scratch, sizeof(scratch));
	if (!st && cur.pos != cur.len)
		st = ALCM_E_CORRUPT;
	free(copy);
	alcm_coder_free(c);
	return st;
}

/* The spec's vector with its fields changed: each refused with the class the spec names;
 * cut anywhere, refused; any bit flipped: refused or decoded, never a crash (ASan). */
static void test_chunk_hostile(void **state)
{
	(void)state;
	size_t n;
	uint8_t *v = spec_hex("#### 6.5.10 Test vector", &n);
	assert_int_equal(decode_chunk(v, n), ALCM_OK);
	/* Bytes of the vector: 0 coding, 1-2 nsym, 3 alphabet, 4 K, 5 A, 6 run, 7 count, 8-12
	 * the level stream, 13 map size - 1, 14-15 map. */
	struct {
		size_t at;
		uint8_t v;
		int want;
	} edits[] = {
		{0, 3, ALCM_E_UNSUPPORTED}, {0, 20, ALCM_E_UNSUPPORTED}, {0, 0, ALCM_E_UNSUPPORTED},
		{3, 0x82, ALCM_E_CORRUPT},  /* bit 7 */
		{3, 0x09, ALCM_E_CORRUPT},  /* s = 9 */
		{3, 0x42, ALCM_E_CORRUPT},  /* palette with s != 8 */
		{3, 0x35, ALCM_E_CORRUPT},  /* m = 3 > s... T > 256 */
		{4, 0, ALCM_E_CORRUPT},     {4, 17, ALCM_E_CORRUPT}, /* K */
		{5, 3, ALCM_E_CORRUPT},     {5, 0, ALCM_E_CORRUPT},  /* A: 3; 0 with K = 2 */
		{6, 0, ALCM_E_CORRUPT},     {7, 0, ALCM_E_CORRUPT},  /* run, count */
		{15, 2, ALCM_E_CORRUPT},    /* a class map entry >= K */
	};
	uint8_t *w = malloc(n);
	for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
		memcpy(w, v, n);
		w[edits[k].at] = edits[k].v;
		if (decode_chunk(w, n) != edits[k].want)
			fail_msg("byte %zu = 0x%02x: status %d, want %d", edits[k].at, edits[k].v,
			         decode_chunk(w, n), edits[k].want);
	}
	for (size_t cut = 0; cut < n; cut++)
		assert_int_not_equal(decode_chunk(v, cut), ALCM_OK);
	for (size_t i = 0; i < 8 * n; i++) {
		memcpy(w, v, n);
		w[i / 8] ^= (uint8_t)(1u << (i % 8));
		decode_chunk(w, n);
	}
	free(w);
	free(v);
}

/* A damaged modelled chunk inside an archive read without digest checks (as a forged
 * digest would let it through): refused as corrupt, the message naming the section and the
 * chunk's offset; the archive is then unusable. */
static void test_archive_hostile(void **state)
{
	(void)state;
	float x[64 * 256];
	for (size_t i = 0; i < 64 * 256; i++)
		x[i] = (float)(sin((double)i * 0.37) * exp2((double)(i / 256 % 8)));
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "w";
	t.name_len = 1;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 2;
	t.shape[0] = 64;
	t.shape[1] = 256;
	t.data = (const uint8_t *)x;
	t.nbytes = sizeof(x);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 0.01;
	o.threads = 1;
	alcm_writer *wr;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_memory(&wr, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, wr, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, &t, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(wr), ALCM_OK);
	const void *buf;
	size_t len;
	alcm_writer_memory(wr, &buf, &len);
	assert_int_equal(alcm_writer_minor(wr), 1);
	uint8_t *a = malloc(len);
	memcpy(a, buf, len);
	/* Section 0 (QDAT) starts at 192: its coding byte (coding 18 and a byte after nsym if
	 * 16384 symbols get fewer than 32 states), then a byte inside its tables. */
	int few = alcm_rans_lanes_for(64 * 256) < ALCM_RANS_LANES;
	assert_int_equal(a[192], few ? ALCM_QCODING_RANS_LANES : ALCM_QCODING_RANS);
	for (int pass = 0; pass < 2; pass++) {
		uint8_t *b = malloc(len);
		memcpy(b, a, len);
		if (pass == 0)
			b[192 + 6 + few] ^= 0x7f; /* the alphabet or class count */
		else
			alcm_store32(b + 192 + 40, 0); /* somewhere in the tables or states */
		alcm_reader *rd;
		alcm_archive *ar;
		assert_int_equal(alcm_reader_open_memory(&rd, b, len, "x.alcm", NULL, NULL,
		                                         ALCM_READ_NO_VERIFY),
		                 ALCM_OK);
		assert_int_equal(alcm_archive_open(&ar, rd, NULL), ALCM_OK);
		float y[64 * 256];
		int st = alcm_archive_decode(ar, 0, y, sizeof(y));
		if (st == ALCM_OK)
			fail_msg("pass %d: damaged chunk decoded", pass);
		assert_true(st == ALCM_E_CORRUPT || st == ALCM_E_UNSUPPORTED);
		const char *d = alcm_archive_detail(ar);
		if (!strstr(d, "section 0") || !strstr(d, "offset"))
			fail_msg("message does not name the section and offset: %s", d);
		assert_int_equal(alcm_archive_decode(ar, 0, y, sizeof(y)), st == ALCM_E_CORRUPT
		                                                                ? ALCM_E_STATE
		                                                                : st);
		alcm_archive_free(ar);
		alcm_reader_free(rd);
		free(b);
	}
	free(a);
	alcm_encoder_free(e);
	alcm_writer_free(wr);
}

/* The archive's size for a float32 tensor at max error `bound`, with codings up to minor. */
static size_t packed_size(const float *x, uint64_t n, double bound, unsigned max_minor)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "x";
	t.name_len = 1;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = n;
	t.data = (const uint8_t *)x;
	t.nbytes = n * 4;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = bound;
	o.threads = 1;
	o.max_minor = max_minor;
	alcm_writer *wr;
	alcm_encoder *e;
	assert_int_equal(alcm_writer_open_memory(&wr, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, wr, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, &t, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(wr), ALCM_OK);
	const void *buf;
	size_t len;
	alcm_writer_memory(wr, &buf, &len);
	alcm_encoder_free(e);
	alcm_writer_free(wr);
	return len;
}

/* Smooth data (a ramp: neighbours share symbols) codes smaller as byte planes, whose zstd
 * finds the runs; the modelled coding's order-0 tables cannot. Format 1.1 must not lose to
 * 1.0 there (it took 2.6x the bytes on a ramp before the encoder checked for smoothness),
 * and must still pick the modelled coding for noise-like values. */
static void test_smooth_keeps_planes(void **state)
{
	(void)state;
	enum { N = 65536 };
	float *x = malloc(N * sizeof(float));
	assert_non_null(x);
	for (size_t i = 0; i < N; i++)
		x[i] = (float)i / N;
	for (int k = 0; k < 3; k++) {
		double b = k == 0 ? 1e-4 : k == 1 ? 1e-3 : 1e-2;
		size_t m1 = packed_size(x, N, b, 1), m0 = packed_size(x, N, b, 0);
		if (m1 > m0 + 64)
			fail_msg("ramp at %g: %zu bytes with format 1.1 codings, %zu with 1.0's", b, m1, m0);
	}
	for (size_t i = 0; i < N; i++)
		x[i] = (float)(((double)(rnd() >> 11) / 9007199254740992.0 - 0.5) * 0.1);
	size_t m1 = packed_size(x, N, 1e-3, 1), m0 = packed_size(x, N, 1e-3, 0);
	if (m1 >= m0)
		fail_msg("noise: %zu bytes with format 1.1 codings, %zu with 1.0's", m1, m0);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rans_roundtrip),
		cmocka_unit_test(test_chunk_roundtrip),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_spec_vector),
		cmocka_unit_test(test_lanes_vector),
		cmocka_unit_test(test_rans_hostile),
		cmocka_unit_test(test_tables_hostile),
		cmocka_unit_test(test_chunk_hostile),
		cmocka_unit_test(test_archive_hostile),
		cmocka_unit_test(test_smooth_keeps_planes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
