/* The encoder: tensor parameters, chunk jobs on the pool, sections, directory (spec 6). */
#include "alloc_internal.h"
#include "codec_internal.h"
#include "series_internal.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>

typedef struct job job;
typedef struct alcm_equeue alcm_equeue;

struct alcm_encoder {
	alcm_allocator alloc;
	alcm_writer *w;
	alcm_pack_options opt;
	alcm_pool *pool;
	alcm_coder **coders;
	unsigned ncoders;
	/* Chunks in flight, two per thread; their buffers live as long as the encoder (grown,
	 * never shrunk): chunk-sized memory is not allocated per chunk or per tensor. */
	job *jobs;
	unsigned njobs;
	alcm_equeue *queue; /* alcm_encoder_queue(): its threads, tensors in flight */
	alcm_buf tdir;
	uint32_t ntensors;
	/* Names so far, for the uniqueness rule (spec 6.3): where each sits in tdir, and an
	 * open-addressing table of tensor numbers + 1 (0: free), at most half full. */
	uint64_t *name_at;
	uint32_t *name_slot;
	size_t name_slots;
	alcm_buf meta;
	uint32_t nmeta;
	/* Where the last tensor began (writer sections, directory bytes), for undo. */
	uint32_t last_sections;
	size_t last_tdir;
	int can_undo;
	int minor1; /* alcm_writer_can_require_minor(w, 1) at creation */
	/* alcm_encoder_queue_begin(): the tensor being given in pieces. 1: into the queue's
	 * chunk slots (lossless, and max-error on float32 or float64), 2: into whole[turn],
	 * queued whole at the end (other lossy modes, or small before any queue), 3: its first
	 * chunk into a slot, which decides between 1 and 2 (late_decide). Names and whole
	 * buffers alternate: tensor N's are in use until the end of tensor N + 1 has finished
	 * it. */
	int piece;
	alcm_tensor pt;
	alcm_tensor_report *prep;
	uint64_t pgot;
	uint64_t pshown; /* the queue's chunks written when progress was last told (slot_wait) */
	alcm_buf pname[2], whole[2];
	unsigned turn;
	int finished, poisoned;
	char detail[ALCM_DETAIL_MAX];
};

static int efail(alcm_encoder *e, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int efail(alcm_encoder *e, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(e->detail, fmt, ap);
	va_end(ap);
	if (st != ALCM_E_ARG && st != ALCM_E_BOUND)
		e->poisoned = 1;
	return st;
}

void alcm_pack_options_default(alcm_pack_options *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = ALCM_MODE_LOSSLESS;
	o->level = 3;
	o->chunk_bytes = (uint64_t)4 << 20;
	o->max_minor = ALCM_FORMAT_MINOR;
}

int alcm_pack_options_check(const alcm_pack_options *o)
{
	if (o->mode < ALCM_MODE_LOSSLESS || o->mode > ALCM_MODE_BITS)
		return 0;
	if (o->mode == ALCM_MODE_MAX_ERROR || o->mode == ALCM_MODE_REL_ERROR)
		if (!(o->bound > 0) || !isfinite(o->bound))
			return 0;
	if (o->mode == ALCM_MODE_REL_ERROR && o->bound >= 1)
		return 0;
	if (o->mode == ALCM_MODE_SNR && (!(o->bound > 0) || o->bound > 300))
		return 0;
	if (o->mode == ALCM_MODE_BITS && (o->bits < 2 || o->bits > 16))
		return 0;
	if (!(o->prune >= 0 && o->prune <= 0.25))
		return 0;
	if (o->prune > 0 && o->mode == ALCM_MODE_LOSSLESS)
		return 0;
	if (o->level < 1 || o->level > 22)
		return 0;
	if (o->chunk_bytes < 4096 || o->chunk_bytes > ((uint64_t)1 << 30))
		return 0;
	if (o->max_minor > ALCM_FORMAT_MINOR)
		return 0;
	return 1;
}

int alcm_encoder_new(alcm_encoder **out, alcm_writer *w, const alcm_pack_options *opt,
                     const alcm_allocator *alloc)
{
	if (!out || !w)
		return ALCM_E_ARG;
	*out = NULL;
	alcm_pack_options o;
	if (opt)
		o = *opt;
	else
		alcm_pack_options_default(&o);
	if (!alcm_pack_options_check(&o))
		return ALCM_E_ARG;
	alcm_allocator a;
	alcm_alloc_copy(&a, alloc);
	alcm_encoder *e = alcm_mem_calloc(&a, 1, sizeof(*e));
	if (!e)
		return ALCM_E_NOMEM;
	e->alloc = a;
	e->w = w;
	e->opt = o;
	e->minor1 = alcm_writer_can_require_minor(w, 1);
	e->tdir.a = &e->alloc;
	e->meta.a = &e->alloc;
	for (int i = 0; i < 2; i++)
		e->pname[i].a = e->whole[i].a = &e->alloc;
	*out = e;
	if (alcm_pool_new(&e->pool, o.threads, &e->alloc))
		return efail(e, ALCM_E_NOMEM, "cannot start worker threads");
	e->ncoders = alcm_pool_threads(e->pool);
	e->coders = alcm_mem_calloc(&e->alloc, e->ncoders, sizeof(*e->coders));
	if (!e->coders)
		return efail(e, ALCM_E_NOMEM, "out of memory");
	for (unsigned i = 0; i < e->ncoders; i++) {
		if (!(e->coders[i] = alcm_coder_new(&e->alloc, NULL)))
			return efail(e, ALCM_E_NOMEM, "out of memory");
		alcm_coder_set_encoding(e->coders[i]);
	}
	return ALCM_OK;
}

static void jobs_free(alcm_encoder *e);
static void queue_free(alcm_encoder *e);
static int queue_drain(alcm_encoder *e);

void alcm_encoder_free(alcm_encoder *e)
{
	if (!e)
		return;
	queue_free(e);
	alcm_pool_free(e->pool);
	jobs_free(e);
	if (e->coders)
		for (unsigned i = 0; i < e->ncoders; i++)
			alcm_coder_free(e->coders[i]);
	alcm_mem_free(&e->alloc, e->coders);
	alcm_buf_free(&e->tdir);
	alcm_buf_free(&e->meta);
	for (int i = 0; i < 2; i++) {
		alcm_buf_free(&e->pname[i]);
		alcm_buf_free(&e->whole[i]);
	}
	alcm_mem_free(&e->alloc, e->name_at);
	alcm_mem_free(&e->alloc, e->name_slot);
	alcm_allocator a = e->alloc;
	alcm_mem_free(&a, e);
}

const char *alcm_encoder_detail(const alcm_encoder *e)
{
	return e ? e->detail : "";
}

static int put_u32(alcm_buf *b, uint32_t v)
{
	uint8_t t[4];
	alcm_store32(t, v);
	return alcm_buf_put(b, t, 4);
}
static int put_u64(alcm_buf *b, uint64_t v)
{
	uint8_t t[8];
	alcm_store64(t, v);
	return alcm_buf_put(b, t, 8);
}
static int put_f64(alcm_buf *b, double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return put_u64(b, u);
}

int alcm_encoder_set_meta(alcm_encoder *e, const char *key, const void *value, size_t len)
{
	if (!e || !key || (!value && len) || len > UINT32_MAX || strlen(key) > 65535)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned)
		return ALCM_E_STATE;
	int st = put_u32(&e->meta, (uint32_t)strlen(key));
	if (!st)
		st = alcm_buf_put(&e->meta, key, strlen(key));
	if (!st)
		st = put_u32(&e->meta, (uint32_t)len);
	if (!st)
		st = alcm_buf_put(&e->meta, value, len);
	if (st)
		return efail(e, st, "out of memory");
	e->nmeta++;
	return ALCM_OK;
}

/* ---- tensor parameters ------------------------------------------------------------------ */

typedef alcm_tparams tparams;

/* On the bits: for non-negative floats the order of the bit patterns is the order of the
 * values, so the largest magnitude is the largest pattern with the sign cleared, among the
 * normal ones (specials: infinities, NaN, subnormals are left out; zero counts as 0). float32,
 * float16 and bfloat16 (the common cases) in quant_fast.c, with AVX2 where the CPU has it. */
ALCM_ALWAYS_INLINE uint64_t absmax_t(const int dtype, const uint8_t *src, uint64_t n)
{
	if (dtype == ALCM_DTYPE_F32)
		return alcm_quant_absmax_f32(src, n);
	if (dtype == ALCM_DTYPE_F16 || dtype == ALCM_DTYPE_BF16)
		return alcm_quant_absmax_h16(dtype == ALCM_DTYPE_BF16, src, n);
	uint64_t m = 0;
	for (uint64_t i = 0; i < n; i++) { /* float64 */
		uint64_t a = alcm_load64(src + 8 * i) & 0x7fffffffffffffffull;
		a = a >= 0x0010000000000000ull && a < 0x7ff0000000000000ull ? a : 0;
		m = a > m ? a : m;
	}
	return m;
}

/* The value of such a pattern. */
static double pattern_value(int dtype, uint64_t m)
{
	uint8_t b[8];
	for (size_t k = 0; k < 8; k++)
		b[k] = (uint8_t)(m >> (8 * k));
	return alcm_load_float(dtype, b, 0);
}

ALCM_ALWAYS_INLINE int channel_max_t(const int dtype, const alcm_tensor *t, const tparams *p,
                                     double *mx)
{
	const uint8_t *src = t->data;
	const size_t w = alcm_dtype_size(dtype);
	for (uint64_t c = 0; c < p->nch; c++) {
		uint64_t lo = p->nch == 1 ? 0 : c * p->inner;
		uint64_t hi = p->nch == 1 ? p->elems : lo + p->inner;
		mx[c] = pattern_value(dtype, absmax_t(dtype, src + w * lo, hi - lo));
	}
	return 0;
}

static uint64_t absmax_pattern(int dtype, const uint8_t *src, uint64_t n)
{
	return ALCM_FLOAT_DISPATCH(dtype, absmax_t, src, n);
}

/* The width reported for the symbols: qmax (the largest magnitude over the step) is
 * infinite or huge when the range of the values dwarfs the step (1e300 with a bound of
 * 1e-300): escapes carry those, report 64. */
static unsigned symbol_width(const alcm_pack_options *o, double qmax)
{
	double w = ceil(log2(2 * ceil(qmax) + 1));
	return o->mode == ALCM_MODE_BITS ? o->bits : w < 64 ? (unsigned)w : 64;
}

static void channel_max(const alcm_tensor *t, const tparams *p, double *mx)
{
	(void)ALCM_FLOAT_DISPATCH(t->dtype, channel_max_t, t, p, mx);
}

/* Noise of quantizing with one step, exactly as the chunk coder reconstructs (one copy per
 * float dtype, ALCM_FLOAT_DISPATCH). With cnt, element i stands for cnt[i] values. */
ALCM_ALWAYS_INLINE double noise_t(const int dtype, const uint8_t *src, uint64_t elems,
                                  const uint64_t *cnt, double s)
{
	double noise = 0, inv = 1.0 / s;
	for (uint64_t i = 0; i < elems; i++) {
		if ((cnt && !cnt[i]) || alcm_is_special(dtype, src, i))
			continue;
		double x = alcm_load_float(dtype, src, i), t = x * inv;
		double q = fabs(t) < 0x1p51 ? alcm_round_small(t) : t;
		double r = fabs(q) < (double)((int64_t)1 << 30) ? alcm_quant_value(dtype, (int64_t)q, s)
		                                                 : x;
		noise += (x - r) * (x - r) * (cnt ? (double)cnt[i] : 1.0);
	}
	return noise;
}

ALCM_ALWAYS_INLINE double signal_t(const int dtype, const uint8_t *src, uint64_t elems,
                                   const uint64_t *cnt, uint64_t *n)
{
	double sig = 0;
	for (uint64_t i = 0; i < elems; i++) {
		if ((cnt && !cnt[i]) || alcm_is_special(dtype, src, i))
			continue;
		double x = alcm_load_float(dtype, src, i), k = cnt ? (double)cnt[i] : 1.0;
		sig += x * x * k;
		*n += cnt ? cnt[i] : 1;
	}
	return sig;
}

/* The step whose noise keeps the tensor's SNR at least db (0: none, store exactly). A float16
 * or bfloat16 tensor of 64k values or more is searched on the counts of its 65536 bit
 * patterns: each pass of the search then costs 65536 terms, not a pass over the tensor. */
static double pick_snr_step(const alcm_allocator *a, const alcm_tensor *t, uint64_t elems,
                            double db)
{
	const uint8_t *src = t->data;
	uint64_t n = 0, *cnt = NULL;
	uint8_t *pat = NULL;
	if (alcm_dtype_size(t->dtype) == 2 && elems >= 65536) {
		cnt = alcm_mem_calloc(a, 65536, sizeof(uint64_t));
		pat = alcm_mem_alloc(a, 2 * 65536);
		if (cnt && pat) {
			for (uint64_t i = 0; i < elems; i++)
				cnt[alcm_load16(src + 2 * i)]++;
			for (uint32_t k = 0; k < 65536; k++)
				alcm_store16(pat + 2 * k, (uint16_t)k);
			src = pat;
			elems = 65536;
		} else {
			alcm_mem_free(a, cnt);
			cnt = NULL;
		}
	}
	double sig = ALCM_FLOAT_DISPATCH(t->dtype, signal_t, src, elems, cnt, &n), found = 0;
	/* Uniform quantization noise is step^2 / 12 per value. Factored so that a signal near
	 * the top of the double range does not overflow (12 * 4.5e307 is infinite). A step that
	 * is not finite is no step: 0, every value then stored exactly. */
	double s = sig > 0 && isfinite(sig) ? sqrt(12.0 * pow(10.0, -db / 10.0)) *
	                                          sqrt(sig / (double)n)
	                                    : 0;
	for (int it = 0; it < 40 && s > 0 && isfinite(s); it++) {
		double noise = ALCM_FLOAT_DISPATCH(t->dtype, noise_t, src, elems, cnt, s);
		double got = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
		/* A hair of margin: the tensor's own sum runs in another order than the counts'. */
		if (got >= db + 1e-9) {
			found = s;
			break;
		}
		s *= pow(10.0, (got - db) / 20.0) * 0.97;
	}
	alcm_mem_free(a, cnt);
	alcm_mem_free(a, pat);
	return found;
}

/* Truncating float key of a magnitude: key < T (float T) iff a < T. */
static uint32_t mag_key(double a)
{
	float f = (float)a;
	if ((double)f > a)
		f = nextafterf(f, 0.0f);
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* One pass of the radix select: histogram of the top 16 bits of the keys (pass 0), or of the
 * low 16 bits of the keys whose top bits are hi (pass 1), over the values within their
 * channel's bound. Float16, bfloat16 and float32 magnitudes are floats exactly: their key is
 * their bits with the sign cleared. */
ALCM_ALWAYS_INLINE int prune_hist_t(const int dtype, const uint8_t *src, const tparams *p,
                                    int pass, uint32_t hi, uint64_t *h)
{
	for (uint64_t i = 0; i < p->elems; i++) {
		if (alcm_is_special(dtype, src, i))
			continue;
		double a = fabs(alcm_load_float(dtype, src, i));
		uint64_t c = p->nch == 1 ? 0 : i / p->inner;
		if (p->bound && a > p->bound[c])
			continue;
		uint32_t key;
		if (dtype == ALCM_DTYPE_F32)
			key = alcm_load32(src + 4 * i) & 0x7fffffffu;
		else if (dtype == ALCM_DTYPE_BF16)
			key = (uint32_t)(alcm_load16(src + 2 * i) & 0x7fff) << 16;
		else if (dtype == ALCM_DTYPE_F16) {
			float f = (float)a;
			memcpy(&key, &f, 4);
		} else
			key = mag_key(a);
		if (pass == 0)
			h[key >> 16]++;
		else if ((key >> 16) == hi)
			h[key & 0xffff]++;
	}
	return 0;
}

/* Largest P such that fewer than k candidates have |x| < P (radix select on float keys). */
static int prune_threshold(const alcm_allocator *a, const alcm_tensor *t, const tparams *p,
                           uint64_t k, double *out)
{
	const uint8_t *src = t->data;
	uint64_t *h = alcm_mem_calloc(a, 65536, sizeof(uint64_t));
	if (!h)
		return ALCM_E_NOMEM;
	uint64_t below = 0;
	uint32_t hi = 0, lo = 0;
	for (int pass = 0; pass < 2; pass++) {
		memset(h, 0, 65536 * sizeof(uint64_t));
		(void)ALCM_FLOAT_DISPATCH(t->dtype, prune_hist_t, src, p, pass, hi, h);
		uint64_t acc = pass == 0 ? 0 : below;
		uint32_t b = 0;
		for (; b < 65536; b++) {
			if (acc + h[b] >= k)
				break;
			acc += h[b];
		}
		if (b == 65536) { /* fewer than k candidates: prune them all */
			alcm_mem_free(a, h);
			*out = INFINITY;
			return ALCM_OK;
		}
		if (pass == 0) {
			hi = b;
			below = acc;
			if (t->dtype == ALCM_DTYPE_BF16)
				break; /* its keys' low 16 bits are zero: pass 1 would find lo = 0 */
		} else {
			lo = b;
		}
	}
	alcm_mem_free(a, h);
	uint32_t key = (hi << 16) | lo;
	float f;
	memcpy(&f, &key, 4);
	*out = f;
	return ALCM_OK;
}

/* The spacing of `dtype`'s values in the binade of magnitude m (0 if m is 0 or not finite). */
static double ulp_at(int dtype, double m)
{
	if (!(m > 0) || !isfinite(m))
		return 0;
	int e;
	frexp(m, &e); /* m = f * 2^e, 0.5 <= f < 1: the binade is [2^(e-1), 2^e) */
	if (dtype == ALCM_DTYPE_BF16)
		return ldexp(1.0, e - 1 - 7);
	return fmax(ldexp(1.0, e - 1 - 10), ldexp(1.0, -24)); /* float16; subnormal spacing */
}

/*
 * The magnitudes (16-bit patterns, sign cleared) under which no float16 or bfloat16 value can
 * escape at step s and bound b: 0 when every value must be tested. With s <= 2 b, let g be
 * the largest power of two dividing s, P the dtype's significand bits (8 or 11) and L =
 * min(g 2^P, 2^16 or 2^128). Every multiple of g under L in magnitude is a value of the dtype
 * when g is at least its finest spacing (2^-24 or 2^-133). Take a value x with |x| < L - s / 2.
 * x times 1 / s, as computed, is at most 2^-22 off x / s, so its q is at most 1/2 + 2^-22 off
 * and its nearest symbol q* is among the three the count tries; |q* s| <= |x| + s / 2 < L, so
 * the reconstruction is q* s exactly (q* s / g is an integer under 2^P: exact in double, float
 * and the dtype), at most s / 2 <= b from x, and x is not counted. The counts
 * (rounding_escapes_dt() and the AVX2 and AVX-512 loops) test only the magnitudes at or above
 * the returned pattern, and are those of testing every value. dtype_step()'s steps k g (g the
 * spacing at the tensor's largest magnitude, or a fraction of it) leave most values under it:
 * the torch transformer's bfloat16 gradients spent 41% of a max-error pack counting escapes.
 * (The finest-spacing test only keeps the argument whole: under it every value below the
 * floor is subnormal, which the count leaves out anyway. The margin of 2^-30 is not needed
 * either, a dtype's value being a double: it costs at most one pattern.)
 */
uint32_t alcm_escape_floor(int bf, double s, double b)
{
	if (!(s > 0) || !(s <= 2 * b) || !isfinite(s))
		return 0;
	int e;
	double f = frexp(s, &e); /* s = f 2^e, f in [0.5, 1): f 2^53 is an integer */
	uint64_t m = (uint64_t)ldexp(f, 53);
	int tz = __builtin_ctzll(m);
	double g = ldexp(1.0, e - 53 + tz);
	if (g < (bf ? 0x1p-133 : 0x1p-24))
		return 0;
	double lim = fmin(ldexp(g, bf ? 8 : 11), bf ? 0x1p128 : 0x1p16);
	double floor_mag = (lim - s / 2) * (1 - 0x1p-30); /* under the bound, whatever rounds */
	if (!(floor_mag > 0))
		return 0;
	uint32_t lo = 0, hi = bf ? 0x7f80 : 0x7c00; /* infinity: at or above any floor */
	while (lo < hi) { /* the first pattern whose magnitude reaches floor_mag */
		uint32_t mid = (lo + hi) / 2;
		float v = bf ? alcm_bf16_to_float_i((uint16_t)mid) : alcm_half_to_float((uint16_t)mid);
		if (v >= floor_mag)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* alcm_rounding_escapes() for one dtype, a constant where it is called, so that the dtype's
 * switches fold away, and alcm_round_small() for nearbyint() (the same integer under 2^30,
 * where it is used; a libm call before). The same counts, so the same steps and archives:
 * alcm-pack --max-error 0.1 of the torch transformer's bfloat16 weights 50.2M -> 47.4M
 * instructions (cachegrind). Magnitudes under the pattern `thr` are not tested
 * (alcm_escape_floor()). */
static inline __attribute__((always_inline)) uint64_t
rounding_escapes_dt(int dtype, const uint8_t *data, uint64_t n, uint64_t stride, double s,
                    double b, uint32_t thr, uint64_t *seen)
{
	uint64_t esc = 0, k = 0;
	double inv = 1 / s;
	for (uint64_t i = 0; i < n; i += stride) {
		k++;
		if ((alcm_load16(data + 2 * i) & 0x7fffu) < thr || alcm_is_special(dtype, data, i))
			continue;
		double x = alcm_load_float(dtype, data, i), y = x * inv;
		if (!(fabs(y) < (double)((int64_t)1 << 30)))
			continue; /* an outlier escapes whatever the step */
		double q = alcm_round_small(y);
		if (fabs(q) >= (double)((int64_t)1 << 30))
			continue;
		double err = fabs(x - alcm_quant_value(dtype, (int64_t)q, s));
		for (int d = -1; d <= 1 && err > b; d += 2)
			err = fmin(err, fabs(x - alcm_quant_value(dtype, (int64_t)q + d, s)));
		esc += err > b;
	}
	*seen = k;
	return esc;
}

#include "h16_simd.h"
#ifdef ALCM_H16_SIMD
/* The reconstructions of symbols q (doubles, integral) at step s, as alcm_quant_value()
 * makes them, back in double. */
__attribute__((target("avx2,f16c"))) static inline __m256d esc_values(const int bf, __m256d q,
                                                                     __m256d s)
{
	return alcm_h16_value_x4(bf, alcm_h16_round_x4(bf, _mm256_mul_pd(q, s)));
}

/* Two bits for each of the sixteen float16 or bfloat16 patterns at p whose magnitude is at
 * or above the floor (th: the floor pattern minus 1 in every 16-bit lane). */
__attribute__((target("avx2,f16c"))) static inline uint32_t floor_hits16(const uint8_t *p,
                                                                        __m256i th)
{
	__m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
	return (uint32_t)_mm256_movemask_epi8(
		_mm256_cmpgt_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7fff)), th));
}

/* The constants of esc_x4(). */
typedef struct esc_consts {
	__m256d inv, s, b, lim, one, big, absm;
} esc_consts;

/* rounding_escapes_dt()'s test on four patterns h (low 16 bits of 32-bit lanes): all ones in
 * the 64-bit lanes of the values it counts. The same tests in double on each value (the
 * neighbours' errors taken for all four when one of them is past the bound, where the loop
 * takes them for that one: the minimum of the three is over the bound exactly when the loop
 * finds it so), so the same count (tests/test_rounding_escapes.c). */
__attribute__((target("avx2,f16c"))) static inline __m256i esc_x4(const int bf, __m128i h,
                                                                  const esc_consts *c)
{
	__m128i sp = alcm_h16_special_x4(bf, h);
	__m128 xf = bf ? _mm_castsi128_ps(_mm_slli_epi32(h, 16))
	               : _mm_cvtph_ps(_mm_packus_epi32(h, _mm_setzero_si128()));
	__m256d x = _mm256_cvtps_pd(xf);
	__m256d y = _mm256_mul_pd(x, c->inv);
	__m256d ok = _mm256_cmp_pd(_mm256_and_pd(y, c->absm), c->lim, _CMP_LT_OQ);
	__m256d q = _mm256_sub_pd(_mm256_add_pd(y, c->big), c->big); /* alcm_round_small */
	ok = _mm256_and_pd(ok, _mm256_cmp_pd(_mm256_and_pd(q, c->absm), c->lim, _CMP_LT_OQ));
	__m256d e0 = _mm256_and_pd(_mm256_sub_pd(x, esc_values(bf, q, c->s)), c->absm);
	ok = _mm256_and_pd(ok, _mm256_cmp_pd(e0, c->b, _CMP_GT_OQ));
	ok = _mm256_andnot_pd(_mm256_castsi256_pd(_mm256_cvtepi32_epi64(sp)), ok);
	if (_mm256_testz_pd(ok, ok))
		return _mm256_setzero_si256();
	__m256d e1 = _mm256_and_pd(
		_mm256_sub_pd(x, esc_values(bf, _mm256_sub_pd(q, c->one), c->s)), c->absm);
	__m256d e2 = _mm256_and_pd(
		_mm256_sub_pd(x, esc_values(bf, _mm256_add_pd(q, c->one), c->s)), c->absm);
	ok = _mm256_and_pd(ok, _mm256_cmp_pd(_mm256_min_pd(e1, e2), c->b, _CMP_GT_OQ));
	return _mm256_castpd_si256(ok);
}

/* rounding_escapes_dt() four values at a time (bf: bfloat16, else float16), the values
 * under the pattern thr (alcm_escape_floor()) skipped sixteen at a time where the tensor is
 * read whole. The portable loop was half the instructions of a bfloat16 max-error pack: the torch
 * transformer's weights at 0.0585, 51.0M -> 33.2M instructions (callgrind, -T1), its --ratio
 * 8 151.7M -> 127.2M. Most groups have no value past the bound at its nearest symbol: their
 * neighbours are not computed. */
__attribute__((target("avx2,f16c"))) static inline uint64_t
rounding_escapes_x4(const int bf, const uint8_t *data, uint64_t n, uint64_t stride, double s,
                    double b, uint32_t thr)
{
	const esc_consts c = {_mm256_set1_pd(1 / s),
	                      _mm256_set1_pd(s),
	                      _mm256_set1_pd(b),
	                      _mm256_set1_pd((double)((int64_t)1 << 30)),
	                      _mm256_set1_pd(1),
	                      _mm256_set1_pd(6755399441055744.0),
	                      _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll))};
	const __m128i th4 = _mm_set1_epi32((int)thr - 1), mag4 = _mm_set1_epi32(0x7fff);
	__m256i acc = _mm256_setzero_si256();
	uint64_t i = 0, esc = 0;
	if (stride == 1 && thr) {
		const __m256i th = _mm256_set1_epi16((short)(thr - 1));
		for (; n >= 16 && i <= n - 16; i += 16) {
			uint32_t hit = floor_hits16(data + 2 * i, th);
			for (int g = 0; hit; g++, hit >>= 8)
				if (hit & 0xff)
					acc = _mm256_sub_epi64(
						acc, esc_x4(bf,
						            _mm_cvtepu16_epi32(_mm_loadl_epi64(
							            (const __m128i *)(const void *)(data + 2 * (i + 4 * g)))),
						            &c));
		}
	}
	for (; n >= 4 * stride && i <= n - 4 * stride; i += 4 * stride) {
		__m128i h = stride == 1
		                ? _mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(
		                      data + 2 * i)))
		                : _mm_setr_epi32(alcm_load16(data + 2 * i),
		                                 alcm_load16(data + 2 * (i + stride)),
		                                 alcm_load16(data + 2 * (i + 2 * stride)),
		                                 alcm_load16(data + 2 * (i + 3 * stride)));
		if (thr && _mm_testz_si128(_mm_cmpgt_epi32(_mm_and_si128(h, mag4), th4),
		                           _mm_set1_epi32(-1)))
			continue;
		acc = _mm256_sub_epi64(acc, esc_x4(bf, h, &c));
	}
	uint64_t lane[4];
	_mm256_storeu_si256((__m256i *)(void *)lane, acc);
	esc = (lane[0] + lane[1]) + (lane[2] + lane[3]);
	uint64_t seen;
	if (i < n)
		esc += rounding_escapes_dt(bf ? ALCM_DTYPE_BF16 : ALCM_DTYPE_F16, data + 2 * i, n - i,
		                           stride, s, b, thr, &seen);
	return esc;
}

/* esc_values() for eight values: q times s rounded to float, then to the dtype (bfloat16 as
 * alcm_h16_round_x4() rounds it, eight lanes), back in double. */
__attribute__((target("avx512f,avx2,f16c"))) static inline __m512d esc_values8(const int bf,
                                                                              __m512d q,
                                                                              __m512d s)
{
	__m256 f = _mm512_cvtpd_ps(_mm512_mul_pd(q, s));
	if (!bf)
		return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT)));
	__m256i u = _mm256_castps_si256(f);
	__m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
	                                 _mm256_set1_epi32(0x7f800000));
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	__m256i p = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
	                                                                  odd)),
	                              16);
	__m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
	p = _mm256_blendv_epi8(p, qn, nan);
	return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(p, 16)));
}

/* esc_x4() on eight patterns h (low 16 bits of 32-bit lanes): the mask of the values it
 * counts. The same operations on each value in double, so the same count. */
__attribute__((target("avx512f,avx2,f16c"))) static inline __mmask8 esc_x8(const int bf,
                                                                          __m256i h,
                                                                          const __m512d *c)
{
	const __m256i em = _mm256_set1_epi32(bf ? 0x7f80 : 0x7c00), zero = _mm256_setzero_si256();
	__m256i e = _mm256_and_si256(h, em);
	__m256i sp = _mm256_or_si256(_mm256_cmpeq_epi32(e, em),
	                             _mm256_andnot_si256(_mm256_cmpeq_epi32(h, zero),
	                                                 _mm256_cmpeq_epi32(e, zero)));
	__m256 xf = bf ? _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
	               : _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(
	                     _mm256_packus_epi32(h, zero), 0x08)));
	__m512d x = _mm512_cvtps_pd(xf);
	__m512d y = _mm512_mul_pd(x, c[0]);
	__mmask8 ok = _mm512_cmp_pd_mask(_mm512_abs_pd(y), c[3], _CMP_LT_OQ);
	__m512d q = _mm512_sub_pd(_mm512_add_pd(y, c[4]), c[4]); /* alcm_round_small */
	ok &= _mm512_cmp_pd_mask(_mm512_abs_pd(q), c[3], _CMP_LT_OQ);
	__m512d e0 = _mm512_abs_pd(_mm512_sub_pd(x, esc_values8(bf, q, c[1])));
	ok &= _mm512_cmp_pd_mask(e0, c[2], _CMP_GT_OQ);
	ok &= (__mmask8)~_mm256_movemask_ps(_mm256_castsi256_ps(sp));
	if (!ok)
		return 0;
	const __m512d one = _mm512_set1_pd(1);
	__m512d e1 = _mm512_abs_pd(_mm512_sub_pd(x, esc_values8(bf, _mm512_sub_pd(q, one), c[1])));
	__m512d e2 = _mm512_abs_pd(_mm512_sub_pd(x, esc_values8(bf, _mm512_add_pd(q, one), c[1])));
	return ok & _mm512_cmp_pd_mask(_mm512_min_pd(e1, e2), c[2], _CMP_GT_OQ);
}

/* rounding_escapes_x4() eight values at a time (AVX-512): the same count. The torch
 * transformer's 29 bfloat16 tensors, each packed alone in-process (medians of 300): its
 * gradients at --max-error 7.8e-6 1.34-1.45 ms (before the floor) -> 1.16-1.19 (the floor)
 * -> 1.00-1.01 (this loop), its weights at 0.056 0.83-0.84 -> 0.77-0.78 ms. */
__attribute__((target("avx512f,avx2,f16c"))) static inline uint64_t
rounding_escapes_x8(const int bf, const uint8_t *data, uint64_t n, uint64_t stride, double s,
                    double b, uint32_t thr)
{
	const __m512d c[5] = {_mm512_set1_pd(1 / s), _mm512_set1_pd(s), _mm512_set1_pd(b),
	                      _mm512_set1_pd((double)((int64_t)1 << 30)),
	                      _mm512_set1_pd(6755399441055744.0)};
	const __m256i th8 = _mm256_set1_epi32((int)thr - 1), mag8 = _mm256_set1_epi32(0x7fff);
	uint64_t i = 0, esc = 0;
	if (stride == 1 && thr) {
		const __m256i th = _mm256_set1_epi16((short)(thr - 1));
		for (; n >= 16 && i <= n - 16; i += 16) {
			uint32_t hit = floor_hits16(data + 2 * i, th);
			for (int g = 0; hit; g++, hit >>= 16)
				if (hit & 0xffff)
					esc += (uint64_t)__builtin_popcount(esc_x8(
						bf,
						_mm256_cvtepu16_epi32(_mm_loadu_si128(
							(const __m128i *)(const void *)(data + 2 * (i + 8 * g)))),
						c));
		}
	}
	for (; n >= 8 * stride && i <= n - 8 * stride; i += 8 * stride) {
		__m256i h;
		if (stride == 1) {
			h = _mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)(const void *)(data + 2 * i)));
		} else {
			int v[8];
			for (int l = 0; l < 8; l++)
				v[l] = alcm_load16(data + 2 * (i + (uint64_t)l * stride));
			h = _mm256_loadu_si256((const __m256i *)(void *)v);
		}
		if (thr && _mm256_testz_si256(_mm256_cmpgt_epi32(_mm256_and_si256(h, mag8), th8),
		                              _mm256_set1_epi32(-1)))
			continue;
		esc += (uint64_t)__builtin_popcount(esc_x8(bf, h, c));
	}
	uint64_t seen;
	if (i < n)
		esc += rounding_escapes_dt(bf ? ALCM_DTYPE_BF16 : ALCM_DTYPE_F16, data + 2 * i, n - i,
		                           stride, s, b, thr, &seen);
	return esc;
}

int alcm_escapes_avx512 = 1;

__attribute__((target("avx2,f16c"))) static uint64_t
rounding_escapes_avx2(int dtype, const uint8_t *data, uint64_t n, uint64_t stride, double s,
                      double b, uint32_t thr)
{
	if (alcm_escapes_avx512 && __builtin_cpu_supports("avx512f"))
		return dtype == ALCM_DTYPE_BF16 ? rounding_escapes_x8(1, data, n, stride, s, b, thr)
		                                : rounding_escapes_x8(0, data, n, stride, s, b, thr);
	return dtype == ALCM_DTYPE_BF16 ? rounding_escapes_x4(1, data, n, stride, s, b, thr)
	                                : rounding_escapes_x4(0, data, n, stride, s, b, thr);
}
#define HAVE_ESC_AVX2 1
#endif

/* Values of t that quantizing with step s would leave outside bound b once the
 * reconstruction is rounded to the dtype (the quantizer stores them as escapes), counted on
 * at most 2^16 evenly spaced values and scaled to the whole tensor. */
int alcm_escape_floor_off = 0;

double alcm_rounding_escapes(const alcm_tensor *t, uint64_t n, double s, double b)
{
	uint64_t esc, seen = 0, stride = n > 65536 ? n / 65536 : 1;
	const uint8_t *d = t->data;
	uint32_t thr = alcm_escape_floor_off ? 0 : alcm_escape_floor(t->dtype == ALCM_DTYPE_BF16, s, b);
#ifdef HAVE_ESC_AVX2
	if (!alcm_quant_scalar_only && alcm_cpu_avx2_f16c()) {
		esc = rounding_escapes_avx2(t->dtype, d, n, stride, s, b, thr);
		seen = (n + stride - 1) / stride;
	} else
#endif
	if (t->dtype == ALCM_DTYPE_BF16)
		esc = rounding_escapes_dt(ALCM_DTYPE_BF16, d, n, stride, s, b, thr, &seen);
	else
		esc = rounding_escapes_dt(ALCM_DTYPE_F16, d, n, stride, s, b, thr, &seen);
	return seen ? (double)esc * (double)n / (double)seen : 0;
}

/*
 * Max-error mode on float16 and bfloat16. With step = 2 * bound, a reconstruction q * step
 * rounded to the dtype can land past the bound (by up to half the dtype's spacing there), and
 * each such value is stored as an exact escape; how many depends on where the step falls on
 * the dtype's grid, so sizes rose and fell as the bound grew. A multiple k of the spacing u at
 * the tensor's largest magnitude is exact in the dtype for every |q * step| under the top of
 * that binade (it is m * u with m < 2^(significand bits)), so no value escapes for rounding;
 * when the top binades are coarser than twice the bound, the spacing of the highest binade
 * that is not is used (the few values above it can only be kept exactly anyway). Finer grids
 * u / 2^j bring the step closer to 2 * bound and let a few top values escape. A narrower
 * step costs log2(2 bound / step) bits on every value, an escape the value, its position and
 * a symbol: the candidates' escapes are counted and the cheapest is kept.
 */
static void dtype_step(const alcm_tensor *t, tparams *p, double max)
{
	if (t->dtype != ALCM_DTYPE_F16 && t->dtype != ALCM_DTYPE_BF16)
		return;
	double b2 = 2 * p->bound[0], u = ulp_at(t->dtype, max);
	if (u > b2) {
		int e;
		frexp(b2, &e);
		u = ldexp(1.0, e - 1);
		if (u < (t->dtype == ALCM_DTYPE_BF16 ? 0x1p-133 : 0x1p-24))
			return; /* under the dtype's finest spacing */
	}
	if (floor(b2 / u) * u == b2)
		return; /* 2 * bound is on the grid already: nothing rounds past it */
	double bits = 8 * (double)alcm_dtype_size(t->dtype) + 4, n = (double)p->elems;
	double best = b2, cost = alcm_rounding_escapes(t, p->elems, b2, p->bound[0]) * bits;
	for (int j = 0; j < 4 && cost > 0; j++) {
		double g = ldexp(u, -j), k = floor(b2 / g);
		if (k < 1 || k * g == b2 || k * g == best)
			continue;
		double cj = n * log2(b2 / (k * g));
		if (cj < cost)
			cj += alcm_rounding_escapes(t, p->elems, k * g, p->bound[0]) * bits;
		if (cj < cost) {
			cost = cj;
			best = k * g;
		}
	}
	p->step[0] = best;
}

/* More axes for the modelled coding's channel classes (spec 6.5.6 lets a chunk give any run
 * and count) for tensors of 3 dimensions or more, after axis 0 and the last: each inner axis
 * d (run: the product of the shape after d), the leading axes 0..d taken as one (in a TF
 * convolution [kh, kw, in, out], the kernel position and the (position, input) rows) and the
 * trailing axes d.. as one (in a PyTorch one [out, in, kh, kw], the kernel position and the
 * (input, position) columns). Repeats and single-entry axes are left out. */
static void symbol_axes(const alcm_tensor *t, uint64_t elems, alcm_qparams *qp)
{
	unsigned nd = t->ndim;
	for (unsigned kind = 0; kind < 3; kind++)
		for (unsigned d = 1; d + 1 < nd; d++) {
			uint64_t after = 1, upto = 1;
			for (unsigned k = d + 1; k < nd; k++)
				after *= t->shape[k];
			for (unsigned k = 0; k <= d; k++)
				upto *= t->shape[k];
			uint64_t run = kind == 2 ? 1 : after;
			uint64_t count = kind == 0 ? t->shape[d] : kind == 1 ? upto : elems / upto *
			                                                          t->shape[d];
			int dup = count < 2 || count >= elems || qp->naxes == ALCM_QP_AXES;
			for (unsigned a = 0; a < qp->naxes && !dup; a++)
				dup = qp->axis_run[a] == run && qp->axis_count[a] == count;
			if (dup)
				continue;
			qp->axis_run[qp->naxes] = run;
			qp->axis_count[qp->naxes] = count;
			qp->naxes++;
		}
}

int alcm_lossy_params(const alcm_allocator *a, const alcm_pack_options *o, const alcm_tensor *t,
                      tparams *p)
{
	p->nch = (t->ndim >= 2 && o->mode != ALCM_MODE_MAX_ERROR && o->mode != ALCM_MODE_SNR)
	             ? t->shape[0] : 1;
	p->inner = p->elems / p->nch;
	p->step = alcm_mem_calloc(a, p->nch, sizeof(double));
	p->bound = alcm_mem_calloc(a, p->nch, sizeof(double));
	if (!p->step || !p->bound)
		return ALCM_E_NOMEM;
	double qmax = 0;
	switch (o->mode) {
	case ALCM_MODE_MAX_ERROR:
		p->step[0] = 2 * o->bound;
		p->bound[0] = o->bound;
		if (!t->data) { /* float32 or float64 in pieces: the width at the end */
			p->bits_late = 1;
			break;
		}
		channel_max(t, p, &qmax);
		dtype_step(t, p, qmax);
		qmax /= p->step[0];
		break;
	case ALCM_MODE_REL_ERROR:
		channel_max(t, p, p->bound);
		for (uint64_t c = 0; c < p->nch; c++) {
			p->bound[c] *= o->bound;
			p->step[c] = 2 * p->bound[c];
		}
		qmax = 1 / (2 * o->bound);
		break;
	case ALCM_MODE_SNR:
		p->step[0] = pick_snr_step(a, t, p->elems, o->bound);
		p->bound[0] = p->step[0] / 2;
		channel_max(t, p, &qmax);
		qmax = p->step[0] > 0 ? qmax / p->step[0] : 0;
		break;
	default: /* bits */
		channel_max(t, p, p->step);
		for (uint64_t c = 0; c < p->nch; c++)
			p->step[c] /= (double)((1u << (o->bits - 1)) - 1);
		alcm_mem_free(a, p->bound);
		p->bound = NULL;
		qmax = (double)((1u << (o->bits - 1)) - 1);
		break;
	}
	/* Twice a bound near the top of the double range (max-error 1e308, or rel-error 0.6 of
	 * 1.7e308) overflows: a step must be finite (spec 6.5.1). The largest double keeps the
	 * symbols 0 and +-1 finite; values that need more are stored exactly. */
	for (uint64_t c = 0; c < p->nch; c++)
		if (!(p->step[c] <= DBL_MAX))
			p->step[c] = isnan(p->step[c]) ? 0 : DBL_MAX;
	p->bits = symbol_width(o, qmax);
	p->qp.dtype = t->dtype;
	p->qp.step = p->step;
	p->qp.nsteps = p->nch;
	p->qp.inner = p->inner;
	p->qp.bound_c = p->bound;
	p->qp.level = o->level;
	p->qp.prune_below = 0;
	/* The modelled symbol coding (format 1.1) if the options allow it (the encoder also asks
	 * its writer): its channel models may try axis 0 (PyTorch layouts) and the last axis
	 * (TF/Keras ones). */
	p->qp.symcoding = o->max_minor >= 1;
	p->qp.naxes = 0;
	if (t->ndim >= 2 && p->elems > 0) {
		p->qp.axis_run[0] = p->elems / t->shape[0];
		p->qp.axis_count[0] = t->shape[0];
		p->qp.axis_run[1] = 1;
		p->qp.axis_count[1] = t->shape[t->ndim - 1];
		p->qp.naxes = 2;
		symbol_axes(t, p->elems, &p->qp);
	}
	if (o->prune > 0) {
		uint64_t k = (uint64_t)floor(o->prune * (double)p->elems);
		if (k > 0) {
			int st = prune_threshold(a, t, p, k, &p->qp.prune_below);
			if (st)
				return st;
		}
	}
	return ALCM_OK;
}

/* ---- chunk jobs ------------------------------------------------------------------------- */

struct job {
	alcm_buf data, mask;
	alcm_qstats st;
	int status;
	int done; /* coded (under the wave's or the queue's lock) */
};

static void jobs_free(alcm_encoder *e)
{
	if (!e->jobs)
		return;
	for (unsigned i = 0; i < e->njobs; i++) {
		alcm_buf_free(&e->jobs[i].data);
		alcm_buf_free(&e->jobs[i].mask);
	}
	alcm_mem_free(&e->alloc, e->jobs);
	e->jobs = NULL;
}

/* Two chunks in flight per thread, allocated once. */
static int jobs_ensure(alcm_encoder *e)
{
	unsigned per = e->ncoders * 2;
	if (e->jobs)
		return ALCM_OK;
	if (!(e->jobs = alcm_mem_calloc(&e->alloc, per, sizeof(job))))
		return efail(e, ALCM_E_NOMEM, "out of memory");
	e->njobs = per;
	/* Their buffers through the encoders' block cache: the next encoder (a training loop's
	 * next save) finds them mapped. */
	for (unsigned i = 0; i < per; i++) {
		e->jobs[i].data.a = e->jobs[i].mask.a = &e->alloc;
		e->jobs[i].data.cache = e->jobs[i].mask.cache = 1 + ALCM_BLOCK_ENC;
	}
	return ALCM_OK;
}

/* Writes a coded chunk into the open data section and its tensor's chunk table, masks and
 * totals (one thread at a time); hashed: its tensor's digest has taken it already (queue).
 * @return 0, 1 (the chunk failed to code), 2 (the writer
 * failed: *wst) or 3 (out of memory). */
static int write_job(alcm_encoder *e, job *jb, alcm_buf *ctab, alcm_buf *masks,
                     alcm_qstats *tot, int *wst, int hashed)
{
	if (jb->status)
		return 1;
	if ((*wst = hashed ? alcm_writer_section_write_unhashed(e->w, jb->data.p, jb->data.len)
	                   : alcm_writer_section_write(e->w, jb->data.p, jb->data.len)))
		return 2;
	if (put_u64(ctab, jb->data.len) || put_u64(ctab, jb->mask.len) ||
	    alcm_buf_put(masks, jb->mask.p, jb->mask.len))
		return 3;
	tot->pruned += jb->st.pruned;
	tot->escapes += jb->st.escapes;
	tot->modelled += jb->st.modelled;
	tot->sig += jb->st.sig;
	tot->noise += jb->st.noise;
	if (jb->st.max_err > tot->max_err)
		tot->max_err = jb->st.max_err;
	if (jb->st.absmax > tot->absmax)
		tot->absmax = jb->st.absmax;
	memset(&jb->st, 0, sizeof(jb->st));
	return 0;
}

/* Codes chunk k of tensor t into jb with coder c. */
static void code_chunk(const alcm_encoder *e, const alcm_tensor *t, const tparams *p,
                       const uint8_t *ref, uint8_t *recon, uint64_t chunk_elems, uint64_t k,
                       job *jb, alcm_coder *c, const uint8_t *piece)
{
	uint64_t first = k * chunk_elems;
	uint64_t n = p->elems - first < chunk_elems ? p->elems - first : chunk_elems;
	const uint8_t *src = t->data;
	size_t w = alcm_dtype_size(t->dtype);
	jb->data.len = 0;
	jb->mask.len = 0;
	/* Its first block sized for the coded chunk (about the raw bytes, lossless), not for
	 * the trials of alcm_lossless_choose: one block of huge pages, not one grown by realloc
	 * out of small pages. */
	if (!jb->data.p && p->mode == ALCM_MODE_LOSSLESS && !ref) {
		size_t cap = (size_t)(n * w) + ((size_t)(n * w) >> 6) + 4096;
		if ((jb->data.p = alcm_mem_alloc_filled(jb->data.a, cap)))
			jb->data.cap = cap;
	}
	if (piece && p->mode == ALCM_MODE_LOSSLESS) { /* the chunk alone, given in pieces */
		alcm_lplan plan = alcm_lossless_choose(c, &jb->data, t->dtype, piece, n, e->opt.level);
		jb->data.len = 0;
		jb->status = alcm_lossless_encode(c, &jb->data, t->dtype, &plan, piece, n,
		                                  e->opt.level);
	} else if (piece) { /* the same, lossy: max-error on float32 or float64 (bits_late) */
		jb->status = alcm_quant_encode_piece(c, &jb->data, &jb->mask, &p->qp, piece, first, n,
		                                     &jb->st);
		jb->st.absmax = absmax_pattern(t->dtype, piece, n);
	} else if (ref) {
		jb->status = p->mode == ALCM_MODE_LOSSLESS
		                 ? alcm_delta_encode(c, &jb->data, t->dtype, src + first * w,
		                                     ref + first * w, n, e->opt.level)
		                 : alcm_delta_quant_encode(c, &jb->data, &p->qp, src, ref, first, n,
		                                           &jb->st, recon);
	} else if (p->mode == ALCM_MODE_LOSSLESS) {
		alcm_lplan plan = alcm_lossless_choose(c, &jb->data, t->dtype, src + first * w, n,
		                                       e->opt.level);
		jb->data.len = 0;
		jb->status = alcm_lossless_encode(c, &jb->data, t->dtype, &plan, src + first * w, n,
		                                  e->opt.level);
	} else {
		jb->status = alcm_quant_encode(c, &jb->data, &jb->mask, &p->qp, src, first, n, &jb->st,
		                               recon);
	}
}

/* A wave of chunks on the pool. Chunks are written (digest, file, chunk table) in order as
 * soon as they are coded, by the thread that codes the next one to write, while the others
 * go on coding: the section's digest no longer waits for the whole wave. */
typedef struct wave {
	alcm_encoder *e;
	const alcm_tensor *t;
	const tparams *p;
	uint64_t chunk_elems, first_chunk;
	job *jobs;
	uint8_t *recon;
	const uint8_t *ref; /* checkpoint series: the reference tensor of a DLTA (spec 6.12) */
	alcm_buf *ctab, *masks;
	alcm_qstats *tot;
	pthread_mutex_t mu;
	size_t nj, next; /* chunks in the wave; the next one to write */
	int writing;     /* a thread is writing */
	int fail;        /* 1: chunk `next` failed to code, 2: to write (wst), 3: out of memory */
	int wst;
} wave;

/* Marks chunk j coded; if it is the next to write and nobody writes, writes it and every
 * coded chunk after it. */
static void chunk_done(wave *wv, size_t j)
{
	pthread_mutex_lock(&wv->mu);
	wv->jobs[j].done = 1;
	if (!wv->writing && j == wv->next) {
		wv->writing = 1;
		while (!wv->fail && wv->next < wv->nj && wv->jobs[wv->next].done) {
			pthread_mutex_unlock(&wv->mu);
			int f = write_job(wv->e, &wv->jobs[wv->next], wv->ctab, wv->masks, wv->tot,
			                  &wv->wst, 0);
			pthread_mutex_lock(&wv->mu);
			if (f)
				wv->fail = f;
			else
				wv->next++;
		}
		wv->writing = 0;
	}
	pthread_mutex_unlock(&wv->mu);
}

static void run_chunk(void *arg, size_t j, unsigned worker)
{
	wave *wv = arg;
	code_chunk(wv->e, wv->t, wv->p, wv->ref, wv->recon, wv->chunk_elems, wv->first_chunk + j,
	           &wv->jobs[j], wv->e->coders[worker], NULL);
	chunk_done(wv, j);
}

static uint64_t name_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	return h;
}

/* The tdir offset of a name is 4 bytes past its entry's start (after name_len). */
static int name_equal(const alcm_encoder *e, uint32_t k, const char *s, size_t n)
{
	uint64_t at = e->name_at[k];
	return alcm_load32(e->tdir.p + at - 4) == n && (n == 0 || memcmp(e->tdir.p + at, s, n) == 0);
}

static size_t name_find(const alcm_encoder *e, const char *s, size_t n, int *found)
{
	size_t mask = e->name_slots - 1, i = (size_t)name_hash(s, n) & mask;
	while (e->name_slot[i]) {
		if (name_equal(e, e->name_slot[i] - 1, s, n)) {
			*found = 1;
			return i;
		}
		i = (i + 1) & mask;
	}
	*found = 0;
	return i;
}

/* Makes room for one more name in the table (and its offset). */
static int name_reserve(alcm_encoder *e)
{
	size_t n = (size_t)e->ntensors + 1;
	uint64_t *at = alcm_mem_realloc(&e->alloc, e->name_at, n * sizeof(*at));
	if (!at)
		return ALCM_E_NOMEM;
	e->name_at = at;
	if (2 * n <= e->name_slots)
		return ALCM_OK;
	size_t ns = e->name_slots ? 2 * e->name_slots : 64;
	uint32_t *old = e->name_slot, *slot = alcm_mem_calloc(&e->alloc, ns, sizeof(*slot));
	if (!slot)
		return ALCM_E_NOMEM;
	size_t olds = e->name_slots;
	e->name_slot = slot;
	e->name_slots = ns;
	for (size_t i = 0; i < olds; i++)
		if (old[i]) {
			uint64_t at2 = e->name_at[old[i] - 1];
			int f;
			size_t j = name_find(e, (const char *)e->tdir.p + at2,
			                     alcm_load32(e->tdir.p + at2 - 4), &f);
			slot[j] = old[i];
		}
	alcm_mem_free(&e->alloc, old);
	return ALCM_OK;
}

/* nodata: the bytes come later, in pieces (t->data is not looked at). */
static int check_tensor(alcm_encoder *e, const alcm_tensor *t, uint64_t *elems, int nodata)
{
	char q[96];
	alcm_detail_quote(q, sizeof(q), t->name ? t->name : "", t->name ? t->name_len : 0);
	if (!alcm_dtype_size(t->dtype))
		return efail(e, ALCM_E_ARG, "tensor '%s': unknown dtype %d", q, t->dtype);
	if (t->ndim > ALCM_MAX_NDIM || t->name_len > 65535 || (!t->name && t->name_len))
		return efail(e, ALCM_E_ARG, "tensor '%s': rank or name length out of range", q);
	uint64_t nb;
	if (alcm_shape_elements(t->shape, t->ndim, elems) ||
	    alcm_mul_u64(*elems, alcm_dtype_size(t->dtype), &nb) || nb != t->nbytes ||
	    (!t->data && nb && !nodata))
		return efail(e, ALCM_E_ARG, "tensor '%s': %llu bytes do not match its shape", q,
		             (unsigned long long)t->nbytes);
	if (e->ntensors == UINT32_MAX)
		return efail(e, ALCM_E_LIMIT, "too many tensors");
	if (name_reserve(e))
		return efail(e, ALCM_E_NOMEM, "out of memory");
	int found;
	name_find(e, t->name, t->name_len, &found);
	if (found)
		return efail(e, ALCM_E_ARG, "tensor '%s': a tensor of that name is in the archive "
		             "already (names are unique)", q);
	return ALCM_OK;
}

void alcm_lossy_params_free(const alcm_allocator *a, tparams *p)
{
	alcm_mem_free(a, p->step);
	alcm_mem_free(a, p->bound);
}

/* Codes all chunks in waves of a few per thread and streams them into the data section;
 * masks are kept (they are small) and written as their own section afterwards. */
static int code_chunks(alcm_encoder *e, const alcm_tensor *t, tparams *p, uint64_t chunk_elems,
                       uint64_t nchunks, alcm_buf *ctab, alcm_buf *masks, alcm_qstats *tot,
                       uint8_t *recon, const uint8_t *ref)
{
	unsigned per = e->ncoders * 2;
	int st = jobs_ensure(e);
	if (st)
		return st;
	job *jobs = e->jobs;
	wave wv = {.e = e, .t = t, .p = p, .chunk_elems = chunk_elems, .jobs = jobs,
	           .recon = recon, .ref = ref, .ctab = ctab, .masks = masks, .tot = tot};
	if (pthread_mutex_init(&wv.mu, NULL))
		return efail(e, ALCM_E_NOMEM, "cannot make a lock");
	for (uint64_t k = 0; k < nchunks && !st; k += per) {
		uint64_t nj = nchunks - k < per ? nchunks - k : per;
		wv.first_chunk = k;
		wv.nj = (size_t)nj;
		wv.next = 0;
		for (uint64_t j = 0; j < nj; j++)
			jobs[j].done = 0;
		alcm_pool_run(e->pool, run_chunk, &wv, (size_t)nj);
		/* Progress in the caller's thread, once per chunk written. */
		for (uint64_t j = 0; j < wv.next && e->opt.progress; j++) {
			uint64_t end = (k + j + 1) * chunk_elems, n = t->nbytes / alcm_dtype_size(t->dtype);
			e->opt.progress(e->opt.progress_opaque,
			                (end < n ? end : n) * alcm_dtype_size(t->dtype), t->nbytes);
		}
		if (wv.fail == 1)
			st = efail(e, jobs[wv.next].status, "coding chunk %llu: %s",
			           (unsigned long long)(k + wv.next), alcm_strerror(jobs[wv.next].status));
		else if (wv.fail == 2)
			st = efail(e, wv.wst, "%s", alcm_writer_detail(e->w));
		else if (wv.fail == 3)
			st = efail(e, ALCM_E_NOMEM, "out of memory");
	}
	pthread_mutex_destroy(&wv.mu);
	for (unsigned i = 0; i < per; i++)
		memset(&jobs[i].st, 0, sizeof(jobs[i].st));
	return st;
}

int alcm_encoder_set_mode(alcm_encoder *e, int mode, double bound, unsigned bits, double prune)
{
	if (!e)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	int st = queue_drain(e);
	if (st)
		return st;
	alcm_pack_options o = e->opt;
	o.mode = mode;
	o.bound = bound;
	o.bits = bits;
	o.prune = prune;
	if (!alcm_pack_options_check(&o))
		return ALCM_E_ARG;
	e->opt = o;
	return ALCM_OK;
}

int alcm_encoder_add_section(alcm_encoder *e, const char *type, int critical, const void *data,
                             size_t len)
{
	if (!e || !type || (!data && len))
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	int st = queue_drain(e);
	if (st)
		return st;
	e->can_undo = 0; /* an undo would take this section too */
	st = alcm_writer_add_section(e->w, type, critical ? ALCM_SECTION_CRITICAL : 0,
	                                 e->opt.frame, data, len, NULL);
	return st ? efail(e, st, "%s", alcm_writer_detail(e->w)) : ALCM_OK;
}

static int add_section(alcm_encoder *e, const char *type, const void *p, size_t n,
                       uint32_t *idx)
{
	int st = alcm_writer_add_section(e->w, type, ALCM_SECTION_CRITICAL, e->ntensors, p, n, idx);
	return st ? efail(e, st, "%s", alcm_writer_detail(e->w)) : ALCM_OK;
}

int alcm_encoder_add(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep)
{
	return alcm_encoder_add_recon(e, t, rep, NULL);
}

const alcm_pack_options *alcm_encoder_options(const alcm_encoder *e)
{
	return &e->opt;
}

static int add_tensor(alcm_encoder *e, const alcm_tensor *t, const uint8_t *ref,
                      alcm_tensor_report *rep, void *recon);

int alcm_encoder_add_recon(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep,
                           void *recon)
{
	return add_tensor(e, t, NULL, rep, recon);
}

int alcm_encoder_add_delta(alcm_encoder *e, const alcm_tensor *t, const void *ref,
                           alcm_tensor_report *rep, void *recon)
{
	if (!e || !ref || e->opt.prune > 0)
		return ALCM_E_ARG;
	return add_tensor(e, t, ref, rep, recon);
}

/* A tensor between its check and its directory entry. */
typedef struct tstate {
	alcm_tensor t; /* a copy; data and name are the caller's */
	const uint8_t *ref;
	tparams p;
	int downgraded;
	uint64_t chunk_elems, nchunks;
	alcm_buf ctab, masks;
	alcm_qstats tot;
	uint64_t before;          /* writer bytes before its first section */
	uint32_t sections_before; /* writer sections before it */
	size_t tdir_before;
	alcm_tensor_report *rep;
	uint64_t first, written; /* queue: global number of its first chunk; chunks written */
	int pieces;              /* its chunks are in the queue's slots (queue_begin) */
	/* Queue: the data section's digest, taken chunk by chunk in order as they are coded (by
	 * the thread that codes the next one, as writing goes), apart from the writing: the
	 * digests of two tensors in flight run at once, and only hashed chunks are written. */
	int ext;
	alcm_blake2b hs;
	uint64_t hashed;
	int hashing;
} tstate;

static void tstate_free(alcm_encoder *e, tstate *s)
{
	alcm_buf_free(&s->ctab);
	alcm_buf_free(&s->masks);
	alcm_lossy_params_free(&e->alloc, &s->p);
	memset(&s->p, 0, sizeof(s->p));
}

/* Checks t and chooses its parameters (nothing is written). nodata: t's bytes come later in
 * pieces, so the tensor must be one whose parameters need no data (lossless). */
static int tensor_prepare(alcm_encoder *e, const alcm_tensor *t, const uint8_t *ref,
                          alcm_tensor_report *rep, tstate *s, int nodata)
{
	memset(s, 0, sizeof(*s));
	s->ctab.a = s->masks.a = &e->alloc;
	uint64_t elems;
	int st = check_tensor(e, t, &elems, nodata);
	if (st)
		return st;
	s->t = *t;
	s->rep = rep;
	s->p.elems = elems;
	s->p.mode = ALCM_MODE_LOSSLESS;
	if (e->opt.mode != ALCM_MODE_LOSSLESS) {
		if (!alcm_dtype_is_float(t->dtype)) {
			if (e->opt.int_policy == ALCM_INT_REFUSE) {
				char q[96];
				alcm_detail_quote(q, sizeof(q), t->name, t->name_len);
				return efail(e, ALCM_E_BOUND, "tensor '%s': lossy coding of %s values is "
				             "refused (integers are always stored losslessly)", q,
				             alcm_dtype_name(t->dtype));
			}
			s->downgraded = 1;
		} else if (elems > 0) {
			s->p.mode = e->opt.mode;
			if ((st = alcm_lossy_params(&e->alloc, &e->opt, t, &s->p))) {
				tstate_free(e, s);
				return efail(e, st, "out of memory");
			}
			/* An append to a format 1.0 stream keeps to 1.0's codings (asked when the
			 * encoder was made: the writer may be busy with a queued tensor now). */
			if (!e->minor1)
				s->p.qp.symcoding = 0;
			/* Values on a lattice (weights saved dequantized from 8 bits): cells of
			 * several lattice points, a step above twice the bound (spec 6.5.11). */
			if (s->p.qp.symcoding && !ref && s->p.mode == ALCM_MODE_MAX_ERROR &&
			    t->dtype == ALCM_DTYPE_F32 && s->p.nch == 1 && !(s->p.qp.prune_below > 0) &&
			    !s->p.bits_late)
				alcm_quant_lattice(t->data, elems, s->p.bound[0], &s->p.step[0],
				                   &s->p.qp.offset);
		}
	}
	size_t w = alcm_dtype_size(t->dtype);
	s->chunk_elems = e->opt.chunk_bytes / w;
	s->nchunks = elems ? (elems - 1) / s->chunk_elems + 1 : 0;
	s->ref = elems ? ref : NULL; /* nothing to code against: the plain sections say it too */
	return ALCM_OK;
}

/* Begins the tensor's data section. */
static int tensor_open(alcm_encoder *e, tstate *s)
{
	s->before = alcm_writer_bytes(e->w);
	s->sections_before = alcm_writer_section_count(e->w);
	s->tdir_before = e->tdir.len;
	int st = alcm_writer_section_begin(e->w, s->ref ? "DLTA"
	                                         : s->p.mode == ALCM_MODE_LOSSLESS ? "LDAT" : "QDAT",
	                                   ALCM_SECTION_CRITICAL, e->ntensors);
	return st ? efail(e, st, "%s", alcm_writer_detail(e->w)) : ALCM_OK;
}

/* Ends the data section once every chunk is written, adds the scale and mask sections and
 * the directory entry, fills the report. */
static int tensor_close(alcm_encoder *e, tstate *s)
{
	const alcm_tensor *t = &s->t;
	tparams *p = &s->p;
	uint32_t data_idx = ALCM_NONE, scal_idx = ALCM_NONE, mask_idx = ALCM_NONE;
	alcm_buf sc = {NULL, 0, 0, &e->alloc, 0};
	int st = ALCM_OK;
	if (p->bits_late) /* as alcm_lossy_params() computes it from the whole tensor */
		p->bits = symbol_width(&e->opt, pattern_value(t->dtype, s->tot.absmax) /
		                                    (2 * e->opt.bound));
	for (uint64_t c = 0; p->mode != ALCM_MODE_LOSSLESS && c < p->nch && !st; c++)
		st = put_f64(&sc, p->step[c]);
	if (st)
		st = efail(e, st, "out of memory");
	/* A tensor whose chunks already need 1.1, or any once the archive is 1.1, carries its
	 * steps at the end of its QDAT (spec 6.5.13): a SCAL section costs a table entry and a
	 * padded payload, ~120 bytes. Archives without 1.1 codings stay 1.0. */
	int inline_steps = !st && (s->tot.modelled || alcm_writer_minor(e->w) >= 1) && !s->ref &&
	                   p->mode != ALCM_MODE_LOSSLESS;
	if (inline_steps && s->ext)
		alcm_blake2b_update(&s->hs, sc.p, sc.len);
	if (inline_steps && (st = s->ext ? alcm_writer_section_write_unhashed(e->w, sc.p, sc.len)
	                                 : alcm_writer_section_write(e->w, sc.p, sc.len)))
		st = efail(e, st, "%s", alcm_writer_detail(e->w));
	if (!st && s->ext) {
		uint8_t dg[32];
		alcm_blake2b_final(&s->hs, dg);
		if ((st = alcm_writer_section_end_digest(e->w, dg, &data_idx)))
			st = efail(e, st, "%s", alcm_writer_detail(e->w));
	} else if (!st && (st = alcm_writer_section_end(e->w, &data_idx))) {
		st = efail(e, st, "%s", alcm_writer_detail(e->w));
	}
	if (!st && s->tot.modelled && (st = alcm_writer_require_minor(e->w, 1)))
		st = efail(e, st, "%s", alcm_writer_detail(e->w));
	if (!st && p->mode != ALCM_MODE_LOSSLESS) {
		if (inline_steps)
			scal_idx = data_idx;
		else
			st = add_section(e, "SCAL", sc.p, sc.len, &scal_idx);
		if (!st && p->qp.prune_below > 0)
			st = add_section(e, "MASK", s->masks.p, s->masks.len, &mask_idx);
	}
	alcm_buf_free(&sc);
	uint64_t stored = alcm_writer_bytes(e->w) - s->before;
	/* Directory entry (spec 6.3). */
	alcm_buf *d = &e->tdir;
	if (!st) {
		uint8_t b4[4] = {(uint8_t)t->dtype, (uint8_t)p->mode, (uint8_t)t->ndim,
		                 (uint8_t)p->bits};
		double bound = p->mode == ALCM_MODE_BITS ? 0 : e->opt.bound;
		uint64_t name_at = d->len + 4;
		/* Reserved again: a queued tensor was checked before the one ahead of it closed. */
		if (name_reserve(e) || put_u32(d, (uint32_t)t->name_len) ||
		    alcm_buf_put(d, t->name, t->name_len) ||
		    alcm_buf_put(d, b4, 4))
			st = ALCM_E_NOMEM;
		if (!st) {
			int found;
			e->name_at[e->ntensors] = name_at;
			e->name_slot[name_find(e, t->name, t->name_len, &found)] = e->ntensors + 1;
		}
		for (uint32_t i = 0; i < t->ndim && !st; i++)
			st = put_u64(d, t->shape[i]);
		if (!st && (put_u32(d, data_idx) || put_u32(d, scal_idx) || put_u32(d, mask_idx) ||
		            put_u64(d, s->chunk_elems) || put_u64(d, s->nchunks) ||
		            put_f64(d, p->mode == ALCM_MODE_LOSSLESS ? 0 : bound) ||
		            put_f64(d, s->tot.max_err) || put_u64(d, s->tot.pruned) ||
		            put_u64(d, s->tot.escapes) || alcm_buf_put(d, s->ctab.p, s->ctab.len)))
			st = ALCM_E_NOMEM;
		if (st)
			efail(e, st, "out of memory");
	}
	if (!st) {
		e->ntensors++;
		e->last_sections = s->sections_before;
		e->last_tdir = s->tdir_before;
		e->can_undo = 1;
		if (s->rep) {
			alcm_tensor_report *rep = s->rep;
			memset(rep, 0, sizeof(*rep));
			rep->raw_bytes = t->nbytes;
			rep->stored_bytes = stored;
			rep->mode = p->mode;
			rep->bits = p->bits;
			rep->max_abs_error = s->tot.max_err;
			rep->snr_db = s->tot.noise > 0 ? 10 * log10(s->tot.sig / s->tot.noise) : INFINITY;
			rep->pruned = s->tot.pruned;
			rep->escapes = s->tot.escapes;
			rep->downgraded = s->downgraded;
		}
	}
	return st;
}

static int add_tensor(alcm_encoder *e, const alcm_tensor *t, const uint8_t *ref,
                      alcm_tensor_report *rep, void *recon)
{
	if (!e || !t)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	int st = queue_drain(e);
	if (st)
		return st;
	tstate s;
	e->can_undo = 0;
	if ((st = tensor_prepare(e, t, ref, rep, &s, 0)))
		return st;
	st = tensor_open(e, &s);
	if (!st)
		st = code_chunks(e, t, &s.p, s.chunk_elems, s.nchunks, &s.ctab, &s.masks, &s.tot,
		                 s.p.mode == ALCM_MODE_LOSSLESS ? NULL : recon, s.ref);
	if (!st && recon && s.p.mode == ALCM_MODE_LOSSLESS && recon != t->data && t->nbytes)
		memcpy(recon, t->data, t->nbytes);
	if (!st)
		st = tensor_close(e, &s);
	tstate_free(e, &s);
	return st;
}

/* ---- pipelined adds (alcm_encoder_queue) -------------------------------------------------
 * The encoder's own threads take chunks in one global order across the tensors queued; the
 * thread that codes the next chunk to write writes it, as in a wave, while the open tensor's
 * data section lasts. The caller's thread closes a tensor (its sections after the data, the
 * directory entry) and opens the next: only it touches the writer between data sections.
 * Chunk g uses job g % njobs, free once chunk g - njobs is written. */
#define QUEUE_MAX 2 /* tensors in flight: the one being finished and the one just queued */

struct alcm_equeue {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	pthread_t *th;
	unsigned nth;
	tstate q[QUEUE_MAX];
	unsigned head, count;
	uint64_t queued, taken, wnext; /* global chunk numbers */
	unsigned busy;                 /* chunks being coded */
	int open;                      /* q[head]'s data section is begun */
	int writing;                   /* a thread is writing chunks */
	int fail, wst;                 /* as in a wave; fail_k: the chunk in its tensor */
	uint64_t fail_k;
	int quit;
	/* alcm_encoder_queue_begin(): chunk g of a tensor given in pieces is copied into
	 * slot[g % nslots], busy from its first byte until it is coded (one per thread, and one
	 * being filled). Allocated on the first such tensor, chunk_bytes each. */
	uint8_t **slot;
	uint8_t *slot_busy;
	unsigned nslots;
};

typedef struct qworker_arg {
	alcm_encoder *e;
	unsigned id;
} qworker_arg;

static tstate *queue_find(alcm_equeue *q, uint64_t g)
{
	for (unsigned i = 0; i < q->count; i++) {
		tstate *s = &q->q[(q->head + i) % QUEUE_MAX];
		if (g >= s->first && g < s->first + s->nchunks)
			return s;
	}
	return NULL;
}

/* Writes the coded chunks that come next in the open tensor. Called with the lock held. */
static void queue_write(alcm_encoder *e)
{
	alcm_equeue *q = e->queue;
	if (q->writing)
		return;
	q->writing = 1;
	while (!q->fail && q->open && q->count) {
		tstate *s = &q->q[q->head];
		job *jb = &e->jobs[q->wnext % e->njobs];
		if (s->written == s->nchunks || q->wnext >= q->taken || s->written >= s->hashed)
			break;
		pthread_mutex_unlock(&q->mu);
		int f = write_job(e, jb, &s->ctab, &s->masks, &s->tot, &q->wst, 1);
		pthread_mutex_lock(&q->mu);
		if (f) {
			q->fail = f;
			q->fail_k = s->written;
			if (f == 1)
				q->wst = jb->status;
			break;
		}
		q->wnext++;
		s->written++;
		pthread_cond_broadcast(&q->work);
	}
	q->writing = 0;
	pthread_cond_broadcast(&q->done);
}

/* Takes the coded chunks of s that come next into its digest, unless a thread does already.
 * Called with the lock held; a chunk's job is not reused before it is written, which waits
 * for this. Counted as busy, so that a failed encoder waits for it too. */
static void queue_hash(alcm_encoder *e, tstate *s)
{
	alcm_equeue *q = e->queue;
	if (s->hashing)
		return;
	s->hashing = 1;
	q->busy++;
	while (s->hashed < s->nchunks) {
		uint64_t g = s->first + s->hashed;
		job *jb = &e->jobs[g % e->njobs];
		if (g >= q->taken || !jb->done)
			break;
		pthread_mutex_unlock(&q->mu);
		if (!jb->status) /* a chunk that failed fails the writer before the digest counts */
			alcm_blake2b_update(&s->hs, jb->data.p, jb->data.len);
		pthread_mutex_lock(&q->mu);
		s->hashed++;
	}
	s->hashing = 0;
	q->busy--;
	pthread_cond_broadcast(&q->done);
}

static void *queue_worker(void *v)
{
	qworker_arg *wa = v;
	alcm_encoder *e = wa->e;
	alcm_coder *c = e->coders[wa->id];
	alcm_mem_free(&e->alloc, wa);
	alcm_equeue *q = e->queue;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->quit && (q->fail || q->taken >= q->queued || q->taken >= q->wnext + e->njobs))
			pthread_cond_wait(&q->work, &q->mu);
		if (q->quit)
			break;
		uint64_t g = q->taken++;
		tstate *s = queue_find(q, g);
		job *jb = &e->jobs[g % e->njobs];
		const uint8_t *piece = s->pieces ? q->slot[g % q->nslots] : NULL;
		jb->done = 0;
		q->busy++;
		pthread_mutex_unlock(&q->mu);
		code_chunk(e, &s->t, &s->p, s->ref, NULL, s->chunk_elems, g - s->first, jb, c, piece);
		pthread_mutex_lock(&q->mu);
		jb->done = 1;
		q->busy--;
		if (piece) {
			q->slot_busy[g % q->nslots] = 0;
			pthread_cond_broadcast(&q->done);
		}
		queue_hash(e, s);
		queue_write(e);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static void queue_free(alcm_encoder *e)
{
	alcm_equeue *q = e->queue;
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->quit = 1;
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->mu);
	for (unsigned i = 0; i < q->nth; i++)
		pthread_join(q->th[i], NULL);
	for (unsigned i = 0; i < q->count; i++)
		tstate_free(e, &q->q[(q->head + i) % QUEUE_MAX]);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->work);
	pthread_cond_destroy(&q->done);
	for (unsigned i = 0; q->slot && i < q->nslots; i++)
		alcm_mem_free(&e->alloc, q->slot[i]);
	alcm_mem_free(&e->alloc, q->slot);
	alcm_mem_free(&e->alloc, q->slot_busy);
	alcm_mem_free(&e->alloc, q->th);
	alcm_mem_free(&e->alloc, q);
	e->queue = NULL;
}

static int queue_start(alcm_encoder *e)
{
	if (e->queue)
		return ALCM_OK;
	int st = jobs_ensure(e);
	if (st)
		return st;
	alcm_equeue *q = alcm_mem_calloc(&e->alloc, 1, sizeof(*q));
	if (!q)
		return efail(e, ALCM_E_NOMEM, "out of memory");
	if (!(q->th = alcm_mem_calloc(&e->alloc, e->ncoders, sizeof(pthread_t)))) {
		alcm_mem_free(&e->alloc, q);
		return efail(e, ALCM_E_NOMEM, "out of memory");
	}
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->work, NULL);
	pthread_cond_init(&q->done, NULL);
	e->queue = q;
	for (unsigned i = 0; i < e->ncoders; i++) {
		qworker_arg *wa = alcm_mem_alloc(&e->alloc, sizeof(*wa));
		if (!wa)
			break;
		wa->e = e;
		wa->id = i;
		if (pthread_create(&q->th[q->nth], NULL, queue_worker, wa) != 0) {
			alcm_mem_free(&e->alloc, wa);
			break;
		}
		q->nth++;
	}
	if (!q->nth) {
		queue_free(e);
		return efail(e, ALCM_E_NOMEM, "cannot start worker threads");
	}
	return ALCM_OK;
}

/* The progress callback for the head tensor s, `written` chunks of it written; called with
 * the queue's lock held, which it lets go meanwhile (only the caller's thread moves the
 * head). */
static void head_progress(alcm_encoder *e, const tstate *s, uint64_t written)
{
	alcm_equeue *q = e->queue;
	uint64_t end = written * s->chunk_elems;
	size_t w = alcm_dtype_size(s->t.dtype);
	pthread_mutex_unlock(&q->mu);
	e->opt.progress(e->opt.progress_opaque, (end < s->p.elems ? end : s->p.elems) * w,
	                s->t.nbytes);
	pthread_mutex_lock(&q->mu);
}

/* Closes finished tensors, oldest first, until at most `keep` are in flight; opens the next
 * one's data section each time. On a failure, waits for the chunks being coded (the caller's
 * buffers must not be read once it returns) and poisons the encoder. */
static int queue_settle(alcm_encoder *e, unsigned keep)
{
	alcm_equeue *q = e->queue;
	if (!q)
		return ALCM_OK;
	int st = ALCM_OK;
	pthread_mutex_lock(&q->mu);
	uint64_t shown = UINT64_MAX;
	while (q->count > keep && !q->fail) {
		tstate *s = &q->q[q->head];
		if (!q->open || s->written < s->nchunks) {
			if (e->opt.progress && s->written != shown && s->written) {
				shown = s->written;
				head_progress(e, s, shown);
				continue;
			}
			pthread_cond_wait(&q->done, &q->mu);
			continue;
		}
		/* Every chunk of the head is written and no thread touches the writer. */
		q->open = 0;
		pthread_mutex_unlock(&q->mu);
		st = tensor_close(e, s);
		tstate_free(e, s);
		shown = UINT64_MAX;
		tstate *n = q->count > 1 ? &q->q[(q->head + 1) % QUEUE_MAX] : NULL;
		if (!st && n)
			st = tensor_open(e, n);
		pthread_mutex_lock(&q->mu);
		q->head = (q->head + 1) % QUEUE_MAX;
		q->count--;
		if (st) {
			q->fail = 4;
			break;
		}
		q->open = n != NULL;
		queue_write(e);
	}
	if (q->fail) {
		while (q->busy)
			pthread_cond_wait(&q->done, &q->mu);
		q->queued = q->taken; /* nothing more is taken */
	}
	int fail = q->fail, wst = q->wst;
	uint64_t k = q->fail_k;
	pthread_mutex_unlock(&q->mu);
	if (fail == 1 && !e->poisoned)
		st = efail(e, wst, "coding chunk %llu: %s", (unsigned long long)k, alcm_strerror(wst));
	else if (fail == 2 && !e->poisoned)
		st = efail(e, wst, "%s", alcm_writer_detail(e->w));
	else if (fail == 3 && !e->poisoned)
		st = efail(e, ALCM_E_NOMEM, "out of memory");
	else if (fail)
		st = st ? st : ALCM_E_STATE;
	if (fail)
		e->poisoned = 1;
	return st;
}

static int queue_drain(alcm_encoder *e)
{
	return queue_settle(e, 0);
}

int alcm_encoder_flush(alcm_encoder *e)
{
	if (!e)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	return queue_drain(e);
}

/* Prepares tensor t for the queue (whole, or in pieces): its state in *s, refused if a tensor
 * of its name is still in flight (the names table holds closed tensors only), and opened when
 * the queue is empty (*first). The caller holds no lock. */
static int queue_admit(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep,
                       int pieces, tstate *s, int *first)
{
	alcm_equeue *q = e->queue;
	e->can_undo = 0;
	int st = tensor_prepare(e, t, NULL, rep, s, pieces);
	if (st)
		return st;
	for (unsigned i = 0; i < q->count; i++) {
		const alcm_tensor *o = &q->q[(q->head + i) % QUEUE_MAX].t;
		if (o->name_len == t->name_len && (!t->name_len ||
		                                   memcmp(o->name, t->name, t->name_len) == 0)) {
			char nq[96];
			alcm_detail_quote(nq, sizeof(nq), t->name, t->name_len);
			tstate_free(e, s);
			return efail(e, ALCM_E_ARG, "tensor '%s': a tensor of that name is in the archive "
			             "already (names are unique)", nq);
		}
	}
	s->ext = 1;
	alcm_blake2b_init(&s->hs, 32);
	*first = q->count == 0;
	if (*first && (st = tensor_open(e, s))) {
		tstate_free(e, s);
		return st;
	}
	return ALCM_OK;
}

int alcm_encoder_queue(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep)
{
	if (!e || !t)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	/* Until a tensor of more than one chunk comes, code in the caller's thread: a small
	 * file starts no thread. */
	if (!e->queue && t->nbytes <= e->opt.chunk_bytes)
		return add_tensor(e, t, NULL, rep, NULL);
	int st = queue_start(e);
	if (st)
		return st;
	/* Make room first: at most one tensor stays in flight beside this one. */
	if ((st = queue_settle(e, QUEUE_MAX - 1)))
		return st;
	alcm_equeue *q = e->queue;
	tstate s;
	int first;
	if ((st = queue_admit(e, t, rep, 0, &s, &first)))
		return st;
	pthread_mutex_lock(&q->mu);
	s.first = q->queued;
	q->q[(q->head + q->count) % QUEUE_MAX] = s;
	q->count++;
	q->queued += s.nchunks;
	if (first)
		q->open = 1;
	pthread_cond_broadcast(&q->work);
	queue_write(e); /* a tensor of no chunks is complete at once */
	pthread_mutex_unlock(&q->mu);
	/* Every tensor queued before this one is finished: their data is free. */
	return queue_settle(e, 1);
}

/* ---- tensors given in pieces (alcm_encoder_queue_begin) ----------------------------------
 * A lossless tensor larger than a chunk goes to the queue at once, its chunks copied into the
 * queue's slots as the bytes come and taken by the threads as each fills: only a few chunks
 * are in memory. So does a max-error one of float32 or float64 values without pruning, unless
 * its first chunk may be on a lattice (late_decide): its step needs no statistics, and the
 * width its report gives is taken from the chunks as they are coded. Any other tensor (the
 * other lossy modes read the whole tensor for their statistics; a small one before the queue
 * started is coded in the caller's thread) is gathered whole and given to
 * alcm_encoder_queue() at the end: the same archive bytes either way. */

static int slots_ensure(alcm_encoder *e)
{
	alcm_equeue *q = e->queue;
	if (q->slot)
		return ALCM_OK;
	unsigned n = e->ncoders + 1;
	if (!(q->slot = alcm_mem_calloc(&e->alloc, n, sizeof(*q->slot))) ||
	    !(q->slot_busy = alcm_mem_calloc(&e->alloc, n, 1)))
		return efail(e, ALCM_E_NOMEM, "out of memory");
	q->nslots = n;
	for (unsigned i = 0; i < n; i++)
		if (!(q->slot[i] = alcm_mem_alloc_filled(&e->alloc, (size_t)e->opt.chunk_bytes)))
			return efail(e, ALCM_E_NOMEM, "out of memory");
	return ALCM_OK;
}

/* Makes b hold n bytes (contents not kept; grown, never shrunk). */
static int buf_hold(alcm_buf *b, uint64_t n)
{
	b->len = 0;
	if (n <= b->cap)
		return ALCM_OK;
	if (n > SIZE_MAX)
		return ALCM_E_NOMEM;
	alcm_buf_free(b);
	return (b->p = alcm_mem_alloc_whole(b->a, (size_t)n, &b->cap)) ? ALCM_OK : ALCM_E_NOMEM;
}

static int gather_whole(alcm_encoder *e);
static int queue_pieces_open(alcm_encoder *e);

int alcm_encoder_queue_begin(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep)
{
	if (!e || !t)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	uint64_t elems;
	int st = check_tensor(e, t, &elems, 1);
	if (st)
		return st;
	alcm_buf *nm = &e->pname[e->turn];
	if (buf_hold(nm, t->name_len) || alcm_buf_put(nm, t->name, t->name_len))
		return efail(e, ALCM_E_NOMEM, "out of memory");
	e->pt = *t;
	e->pt.name = (const char *)nm->p;
	e->pt.data = NULL;
	e->prep = rep;
	e->pgot = 0;
	int lossless = e->opt.mode == ALCM_MODE_LOSSLESS || !alcm_dtype_is_float(t->dtype) ||
	               elems == 0;
	/* Max-error on float32 or float64 without pruning needs no statistics of the whole
	 * tensor but the lattice test (float32), which its first chunk settles (piece 3). */
	int late = !lossless && e->opt.mode == ALCM_MODE_MAX_ERROR && !(e->opt.prune > 0) &&
	           (t->dtype == ALCM_DTYPE_F32 || t->dtype == ALCM_DTYPE_F64) &&
	           t->nbytes > e->opt.chunk_bytes;
	if ((!lossless && !late) || (!e->queue && t->nbytes <= e->opt.chunk_bytes))
		return gather_whole(e);
	if ((st = queue_start(e)) || (st = slots_ensure(e)))
		return st;
	if ((st = queue_settle(e, QUEUE_MAX - 1)))
		return st;
	if (late) {
		e->piece = 3;
		return ALCM_OK;
	}
	return queue_pieces_open(e);
}

/* The tensor in pieces goes whole to alcm_encoder_queue() at its end (piece 2). */
static int gather_whole(alcm_encoder *e)
{
	if (buf_hold(&e->whole[e->turn], e->pt.nbytes))
		return efail(e, ALCM_E_NOMEM, "out of memory for %llu bytes",
		             (unsigned long long)e->pt.nbytes);
	e->piece = 2;
	return ALCM_OK;
}

/* Admits the tensor in pieces to the queue, its chunks to come into the slots (piece 1). */
static int queue_pieces_open(alcm_encoder *e)
{
	alcm_equeue *q = e->queue;
	tstate s;
	int first;
	int st = queue_admit(e, &e->pt, e->prep, 1, &s, &first);
	if (st)
		return st;
	s.pieces = 1;
	pthread_mutex_lock(&q->mu);
	s.first = q->queued;
	q->q[(q->head + q->count) % QUEUE_MAX] = s;
	q->count++;
	if (first)
		q->open = 1;
	queue_write(e); /* a tensor of no chunks is complete at once */
	pthread_mutex_unlock(&q->mu);
	e->piece = 1;
	return ALCM_OK;
}

static void slot_release(alcm_equeue *q, uint64_t g)
{
	pthread_mutex_lock(&q->mu);
	q->slot_busy[g % q->nslots] = 0;
	pthread_cond_broadcast(&q->done);
	pthread_mutex_unlock(&q->mu);
}

/* Piece 3: the first chunk is in slot g (its `len` bytes). A float32 one of at most
 * LAT_MAX distinct values may be on a lattice (alcm_quant_lattice(), which needs the whole
 * tensor): the tensor is gathered whole, as before. Otherwise it goes to the queue in
 * pieces, this chunk first: alcm_quant_lattice() stops at the same value on the whole. */
static int late_decide(alcm_encoder *e, uint64_t g, size_t len)
{
	alcm_equeue *q = e->queue;
	const uint8_t *c = q->slot[g % q->nslots];
	int scan = e->pt.dtype == ALCM_DTYPE_F32 && e->opt.max_minor >= 1 && e->minor1;
	if (scan) {
		uint32_t key[ALCM_LAT_SLOTS], used = 0;
		uint64_t cnt[ALCM_LAT_SLOTS];
		memset(key, 0xff, sizeof(key)); /* ALCM_LAT_EMPTY */
		scan = alcm_quant_lattice_scan(c, len / 4, key, cnt, &used);
	}
	int st;
	if (scan) {
		if (!(st = gather_whole(e)))
			memcpy(e->whole[e->turn].p, c, len);
		slot_release(q, g);
		return st;
	}
	if ((st = queue_pieces_open(e))) {
		slot_release(q, g);
		return st;
	}
	pthread_mutex_lock(&q->mu);
	q->queued++; /* chunk 0 of the tensor: its slot is g */
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->mu);
	return ALCM_OK;
}

/* Waits until slot g is free, closing the tensors ahead of the open one meanwhile as they
 * complete (the writer writes only the head tensor: until it is closed, the next tensor's
 * coded chunks hold their jobs, and the threads stop taking chunks njobs past the writer). */
static int slot_wait(alcm_encoder *e, uint64_t g)
{
	alcm_equeue *q = e->queue;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		const tstate *h = &q->q[q->head];
		/* The chunks written since the last call, for the progress callback: a tensor
		 * given in pieces is coded while its bytes come (q->wnext counts across tensors). */
		if (e->opt.progress && q->count && q->open && q->wnext != e->pshown) {
			e->pshown = q->wnext;
			head_progress(e, h, h->written);
			continue;
		}
		if (!q->slot_busy[g % q->nslots] || q->fail)
			break;
		/* Only a head that is complete is closed here (at once): waiting for the whole head
		 * to be written kept the next chunks from being filled meanwhile. */
		if (q->count > 1 && q->open && h->written == h->nchunks) {
			pthread_mutex_unlock(&q->mu);
			int st = queue_settle(e, 1);
			if (st)
				return st;
			pthread_mutex_lock(&q->mu);
			continue;
		}
		/* woken when a chunk is coded (its slot free) or written (the head may be done) */
		pthread_cond_wait(&q->done, &q->mu);
	}
	int fail = q->fail;
	if (!fail)
		q->slot_busy[g % q->nslots] = 1;
	pthread_mutex_unlock(&q->mu);
	return fail ? queue_settle(e, 1) : ALCM_OK;
}

/* Closes the tensors ahead of the open one that are fully written, without waiting: the
 * writer writes only the head tensor, so its successor's chunks wait for this. */
static int queue_close_done(alcm_encoder *e)
{
	alcm_equeue *q = e->queue;
	pthread_mutex_lock(&q->mu);
	const tstate *h = &q->q[q->head];
	int ready = q->count > 1 && q->open && h->written == h->nchunks;
	pthread_mutex_unlock(&q->mu);
	return ready ? queue_settle(e, 1) : ALCM_OK;
}

int alcm_encoder_queue_append(alcm_encoder *e, const void *data, size_t len)
{
	if (!e || (!data && len))
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || !e->piece)
		return ALCM_E_STATE;
	if (len > e->pt.nbytes - e->pgot) {
		char q[96];
		alcm_detail_quote(q, sizeof(q), e->pt.name, e->pt.name_len);
		return efail(e, ALCM_E_ARG, "tensor '%s': %llu bytes given beyond its %llu", q,
		             (unsigned long long)(e->pgot + len - e->pt.nbytes),
		             (unsigned long long)e->pt.nbytes);
	}
	const uint8_t *p = data;
	alcm_equeue *q = e->queue;
	if (e->piece == 3 && len) { /* the first chunk, into the slot that becomes chunk
	                             * q->queued's */
		uint64_t g = q->queued, cb = e->opt.chunk_bytes / alcm_dtype_size(e->pt.dtype) *
		                                 alcm_dtype_size(e->pt.dtype);
		int st;
		if (e->pgot == 0 && ((st = queue_close_done(e)) || (st = slot_wait(e, g)))) {
			e->piece = 0;
			return st;
		}
		size_t n = len < cb - e->pgot ? len : (size_t)(cb - e->pgot);
		memcpy(q->slot[g % q->nslots] + e->pgot, p, n);
		p += n;
		len -= n;
		e->pgot += n;
		if (e->pgot < cb)
			return ALCM_OK;
		if ((st = late_decide(e, g, (size_t)cb))) {
			e->piece = 0;
			return st;
		}
	}
	if (e->piece == 2) {
		if (len)
			memcpy(e->whole[e->turn].p + e->pgot, p, len);
		e->pgot += len;
		return ALCM_OK;
	}
	tstate *s = &q->q[(q->head + q->count - 1) % QUEUE_MAX];
	uint64_t cb = s->chunk_elems * alcm_dtype_size(s->t.dtype);
	while (len) {
		uint64_t k = e->pgot / cb, off = e->pgot % cb, g = s->first + k;
		int st;
		if (off == 0 && ((st = queue_close_done(e)) || (st = slot_wait(e, g)))) {
			e->piece = 0;
			return st;
		}
		uint64_t n = cb - off;
		if (n > e->pt.nbytes - e->pgot)
			n = e->pt.nbytes - e->pgot;
		if (n > len)
			n = len;
		memcpy(q->slot[g % q->nslots] + off, p, (size_t)n);
		p += n;
		len -= (size_t)n;
		e->pgot += n;
		if (off + n == cb || e->pgot == e->pt.nbytes) {
			pthread_mutex_lock(&q->mu);
			q->queued++;
			pthread_cond_broadcast(&q->work);
			pthread_mutex_unlock(&q->mu);
		}
	}
	return ALCM_OK;
}

int alcm_encoder_queue_end(alcm_encoder *e)
{
	if (!e)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || !e->piece)
		return ALCM_E_STATE;
	int mode = e->piece;
	e->piece = 0;
	if (e->pgot != e->pt.nbytes) {
		char q[96];
		alcm_detail_quote(q, sizeof(q), e->pt.name, e->pt.name_len);
		int st = efail(e, ALCM_E_ARG, "tensor '%s': %llu of its %llu bytes given", q,
		               (unsigned long long)e->pgot, (unsigned long long)e->pt.nbytes);
		if (mode == 1) /* its chunks are queued: the archive cannot be finished */
			e->poisoned = 1;
		if (mode == 3 && e->pgot) /* its first chunk's slot */
			slot_release(e->queue, e->queue->queued);
		return st;
	}
	unsigned turn = e->turn;
	e->turn ^= 1;
	if (mode == 2) {
		alcm_tensor t = e->pt;
		t.data = e->whole[turn].p;
		return alcm_encoder_queue(e, &t, e->prep);
	}
	/* Every tensor queued before this one is finished, as after alcm_encoder_queue(). */
	return queue_settle(e, 1);
}

int alcm_encoder_undo(alcm_encoder *e)
{
	if (!e)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	int st = queue_drain(e);
	if (st)
		return st;
	if (!e->can_undo)
		return ALCM_E_STATE;
	st = alcm_writer_rollback(e->w, e->last_sections);
	if (st)
		return efail(e, st, "%s", alcm_writer_detail(e->w));
	/* The name goes too. It was the table's last insert, so no probe chain passes over its
	 * slot: clearing it is safe with linear probing. */
	uint64_t at = e->name_at[e->ntensors - 1];
	int found;
	size_t slot = name_find(e, (const char *)e->tdir.p + at, alcm_load32(e->tdir.p + at - 4),
	                        &found);
	if (found)
		e->name_slot[slot] = 0;
	e->tdir.len = e->last_tdir;
	e->ntensors--;
	e->can_undo = 0;
	return ALCM_OK;
}

int alcm_encoder_finish(alcm_encoder *e)
{
	if (!e)
		return ALCM_E_ARG;
	if (e->finished || e->poisoned || e->piece)
		return ALCM_E_STATE;
	int st = queue_drain(e);
	if (st)
		return st;
	char prod[64];
	snprintf(prod, sizeof(prod), "libalcm %s", ALCM_VERSION_STRING);
	const char *producer = e->opt.producer ? e->opt.producer : prod;
	alcm_buf m = {NULL, 0, 0, &e->alloc, 0};
	st = put_u32(&m, e->nmeta + 1 + (e->opt.source_format ? 1 : 0));
	const char *k1 = "alcm.producer", *k2 = "alcm.source_format";
	if (!st)
		st = put_u32(&m, (uint32_t)strlen(k1)) || alcm_buf_put(&m, k1, strlen(k1)) ||
		     put_u32(&m, (uint32_t)strlen(producer)) ||
		     alcm_buf_put(&m, producer, strlen(producer));
	if (!st && e->opt.source_format)
		st = put_u32(&m, (uint32_t)strlen(k2)) || alcm_buf_put(&m, k2, strlen(k2)) ||
		     put_u32(&m, (uint32_t)strlen(e->opt.source_format)) ||
		     alcm_buf_put(&m, e->opt.source_format, strlen(e->opt.source_format));
	if (!st)
		st = alcm_buf_put(&m, e->meta.p, e->meta.len);
	if (st) {
		alcm_buf_free(&m);
		return efail(e, ALCM_E_NOMEM, "out of memory");
	}
	st = alcm_writer_add_section(e->w, "META", 0, e->opt.frame, m.p, m.len, NULL);
	alcm_buf_free(&m);
	/* The predictor weights that chose this archive's parameters, once per archive, only
	 * when the caller named a predictor: the default one is known from META's producer, and
	 * its 2.1 KB weighed on small archives (spec 6.7): 2108 of the 2992 bytes of a 64-value
	 * float32 tensor packed lossless, the archive of Python's alcm.compress(). Format 1.0
	 * archives stored the version 1 default weights until 2026-12-07. */
	int have_pred = !e->opt.predictor;
	for (uint32_t i = 0; i < alcm_writer_section_count(e->w) && !st; i++) {
		alcm_section_info si;
		alcm_writer_section_info(e->w, i, &si);
		have_pred |= memcmp(si.type, "PRED", 4) == 0;
	}
	/* Readers of 1.0 refuse a PRED of a version other than 1 (spec 6.7.1): weights of a
	 * later version that the caller named make a new archive 1.1, and are left out of an
	 * append to a 1.0 archive (PRED is optional). */
	const alcm_predictor *pred = e->opt.predictor;
	if (!st && !have_pred && pred->version != 1 && alcm_writer_minor(e->w) < 1) {
		if (alcm_writer_appending(e->w))
			pred = NULL;
		else
			st = alcm_writer_require_minor(e->w, 1);
	}
	if (!st && !have_pred && pred) {
		uint8_t pb[ALCM_PRED_BYTES];
		alcm_predictor_store(pred, pb);
		st = alcm_writer_add_section(e->w, "PRED", 0, 0, pb, alcm_predictor_bytes(pred), NULL);
	}
	uint8_t c[4];
	alcm_store32(c, e->ntensors);
	/* An archive that is 1.1 already stores its directory compressed when that is smaller
	 * (spec 6.3.1): names and shapes repeat, and the directory is most of a small lossy
	 * archive's overhead. A 1.0 archive keeps the TDIR its readers know. */
	alcm_buf z = {NULL, 0, 0, &e->alloc, 0};
	if (!st && alcm_writer_minor(e->w) >= 1)
		st = alcm_tdrz_pack(&e->alloc, &z, c, 4, e->tdir.p, e->tdir.len);
	if (!st && z.len && z.len < 4 + e->tdir.len) {
		st = alcm_writer_add_section(e->w, "TDRZ", ALCM_SECTION_CRITICAL, e->opt.frame, z.p,
		                             z.len, NULL);
	} else if (!st) {
		st = alcm_writer_section_begin(e->w, "TDIR", ALCM_SECTION_CRITICAL, e->opt.frame);
		if (!st)
			st = alcm_writer_section_write(e->w, c, 4);
		if (!st)
			st = alcm_writer_section_write(e->w, e->tdir.p, e->tdir.len);
		if (!st)
			st = alcm_writer_section_end(e->w, NULL);
	}
	alcm_buf_free(&z);
	if (st)
		return efail(e, st, "%s", alcm_writer_detail(e->w));
	e->finished = 1;
	return ALCM_OK;
}
