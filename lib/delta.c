/* Delta chunks of checkpoint series (spec 6.12.4, 6.12.5): a tensor coded against the decoded
 * values of the same tensor in an earlier checkpoint. Consecutive checkpoints share their sign,
 * exponent and top mantissa bits; XOR or the difference of order keys turns those into zero
 * bits, which the lossless transforms of 6.4 then code as they code any integer planes. */
#include "series_internal.h"

#include <math.h>

int alcm_delta_udtype(size_t w)
{
	return w == 1 ? ALCM_DTYPE_U8 : w == 2 ? ALCM_DTYPE_U16 : w == 4 ? ALCM_DTYPE_U32
	                                                            : ALCM_DTYPE_U64;
}

static inline uint64_t ld(const uint8_t *p, size_t w)
{
	return w == 1 ? p[0] : w == 2 ? alcm_load16(p) : w == 4 ? alcm_load32(p) : alcm_load64(p);
}

static inline void sto(uint8_t *p, size_t w, uint64_t v)
{
	switch (w) {
	case 1: p[0] = (uint8_t)v; break;
	case 2: alcm_store16(p, (uint16_t)v); break;
	case 4: alcm_store32(p, (uint32_t)v); break;
	default: alcm_store64(p, v);
	}
}

static inline uint64_t wmask(size_t w)
{
	return w == 8 ? ~(uint64_t)0 : ((uint64_t)1 << (8 * w)) - 1;
}

/* Order key of a float's bits: an unsigned integer that grows with the value (negatives
 * reversed), so that neighbouring values have neighbouring keys across zero too: u XOR all
 * ones for a negative, u XOR the top bit otherwise. Integers are their own keys: the
 * difference modulo 2^(8w) is the same for either signedness. Branch-free: the sign of trained
 * weights is a coin toss. */
static inline uint64_t okey(uint64_t u, size_t w, int fl)
{
	uint64_t top = (uint64_t)1 << (8 * w - 1);
	return fl ? u ^ (((0 - (u >> (8 * w - 1))) & wmask(w)) | top) : u;
}

static inline uint64_t okey_inv(uint64_t k, size_t w, int fl)
{
	uint64_t top = (uint64_t)1 << (8 * w - 1);
	return fl ? k ^ (((0 - ((k >> (8 * w - 1)) ^ 1)) & wmask(w)) | top) : k;
}

static inline uint64_t zz(uint64_t d, size_t w)
{
	return ((d << 1) ^ (0 - ((d >> (8 * w - 1)) & 1))) & wmask(w);
}

static inline uint64_t unzz(uint64_t z, size_t w)
{
	return ((z >> 1) ^ (0 - (z & 1))) & wmask(w);
}

/* One element: the residual of x against r, and x back from r and the residual. */
static inline uint64_t residual(int kind, uint64_t x, uint64_t r, size_t w, int fl)
{
	if (kind == ALCM_DELTA_XOR)
		return x ^ r;
	return zz((okey(x, w, fl) - okey(r, w, fl)) & wmask(w), w);
}

static inline uint64_t restore(int kind, uint64_t r, uint64_t z, size_t w, int fl)
{
	if (kind == ALCM_DELTA_XOR)
		return r ^ z;
	return okey_inv((okey(r, w, fl) + unzz(z, w)) & wmask(w), w, fl);
}

/* The loops below take the width, the kind and float-ness as constants: WKIND calls them with
 * each combination, so that each compiles to a loop of a few instructions per element (a
 * chain of deltas runs one per frame). */
#define WKIND(w, kind, fl, fn, ...)                                                             \
	((w) == 1   ? ((kind) == ALCM_DELTA_XOR ? fn(1, ALCM_DELTA_XOR, 0, __VA_ARGS__)              \
	                                        : fn(1, ALCM_DELTA_DIFF, 0, __VA_ARGS__))            \
	 : (w) == 2 ? ((kind) == ALCM_DELTA_XOR ? fn(2, ALCM_DELTA_XOR, 0, __VA_ARGS__)              \
	               : (fl)                   ? fn(2, ALCM_DELTA_DIFF, 1, __VA_ARGS__)             \
	                                        : fn(2, ALCM_DELTA_DIFF, 0, __VA_ARGS__))            \
	 : (w) == 4 ? ((kind) == ALCM_DELTA_XOR ? fn(4, ALCM_DELTA_XOR, 0, __VA_ARGS__)              \
	               : (fl)                   ? fn(4, ALCM_DELTA_DIFF, 1, __VA_ARGS__)             \
	                                        : fn(4, ALCM_DELTA_DIFF, 0, __VA_ARGS__))            \
	            : ((kind) == ALCM_DELTA_XOR ? fn(8, ALCM_DELTA_XOR, 0, __VA_ARGS__)              \
	               : (fl)                   ? fn(8, ALCM_DELTA_DIFF, 1, __VA_ARGS__)             \
	                                        : fn(8, ALCM_DELTA_DIFF, 0, __VA_ARGS__)))

ALCM_ALWAYS_INLINE int residuals_t(const size_t w, const int kind, const int fl, uint8_t *out,
                                   const uint8_t *src, const uint8_t *ref, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		sto(out + i * w, w, residual(kind, ld(src + i * w, w), ld(ref + i * w, w), w, fl));
	return 0;
}

/* restore() on 32-bit lanes, for w <= 4: the loops below then vectorize (SSE2 has no 64-bit
 * lane arithmetic; with 64-bit lanes applying a float32 delta cost more than decoding it). */
static inline uint32_t restore32(int kind, uint32_t r, uint32_t z, size_t w, int fl)
{
	const uint32_t m = (uint32_t)wmask(w), top = (uint32_t)1 << (8 * w - 1);
	if (kind == ALCM_DELTA_XOR)
		return r ^ z;
	uint32_t k = fl ? r ^ (((0u - (r >> (8 * w - 1))) & m) | top) : r;
	k = (k + (((z >> 1) ^ (0u - (z & 1))) & m)) & m;
	return fl ? k ^ (((0u - ((k >> (8 * w - 1)) ^ 1)) & m) | top) : k;
}

/* Little-endian loads and stores of w <= 4 bytes; on a little-endian host one memcpy each, so
 * that the compiler sees the load and the store of an element as the same object and
 * vectorizes the loop (byte by byte, it assumes they may overlap the next elements). */
static inline uint32_t ld32(const uint8_t *p, size_t w)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (w == 2) {
		uint16_t v;
		memcpy(&v, p, 2);
		return v;
	}
	if (w == 4) {
		uint32_t v;
		memcpy(&v, p, 4);
		return v;
	}
#endif
	return w == 1 ? p[0] : w == 2 ? alcm_load16(p) : alcm_load32(p);
}

static inline void sto32(uint8_t *p, size_t w, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (w == 2) {
		uint16_t h = (uint16_t)v;
		memcpy(p, &h, 2);
		return;
	}
	if (w == 4) {
		memcpy(p, &v, 4);
		return;
	}
#endif
	if (w == 1)
		p[0] = (uint8_t)v;
	else if (w == 2)
		alcm_store16(p, (uint16_t)v);
	else
		alcm_store32(p, v);
}

/* Residuals res (joined) applied onto dst, which holds the reference. */
ALCM_ALWAYS_INLINE int apply_t(const size_t w, const int kind, const int fl, uint8_t *dst,
                               const uint8_t *res, uint64_t n)
{
	if (w <= 4) {
		for (uint64_t i = 0; i < n; i++)
			sto32(dst + i * w, w,
			      restore32(kind, ld32(dst + i * w, w), ld32(res + i * w, w), w, fl));
		return 0;
	}
	for (uint64_t i = 0; i < n; i++)
		sto(dst + i * w, w, restore(kind, ld(dst + i * w, w), ld(res + i * w, w), w, fl));
	return 0;
}

/* Residual planes (transform 1) applied as they are read, without joining them first. */
ALCM_ALWAYS_INLINE int apply_planes_t(const size_t w, const int kind, const int fl,
                                      uint8_t *dst, const uint8_t *const *pl, uint64_t n)
{
	if (w <= 4) {
		const uint8_t *p0 = pl[0], *p1 = pl[w > 1];
		const uint8_t *p2 = pl[w > 2 ? 2 : 0], *p3 = pl[w > 2 ? 3 : 0];
		for (uint64_t i = 0; i < n; i++) {
			uint32_t z = p0[i];
			if (w > 1)
				z |= (uint32_t)p1[i] << 8;
			if (w > 2)
				z |= ((uint32_t)p2[i] << 16) | ((uint32_t)p3[i] << 24);
			sto32(dst + i * w, w, restore32(kind, ld32(dst + i * w, w), z, w, fl));
		}
		return 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t z = 0;
		for (size_t k = 0; k < w; k++)
			z |= (uint64_t)pl[k][i] << (8 * k);
		sto(dst + i * w, w, restore(kind, ld(dst + i * w, w), z, w, fl));
	}
	return 0;
}

/*
 * Sparse residuals (transform 4: a bitmap of the elements whose residual is not zero, then
 * the planes of those residuals only) are expanded a block at a time into a small joined
 * buffer, zeros included, which the loop of apply_t() then applies: a zero residual keeps
 * the reference, and the buffer stays in the first-level cache. Branch-free: the bitmap of
 * trained weights is a coin toss, and a branch per element cost more than the delta saved.
 */
#define SPARSE_BLOCK 1024

/* Expands elements [i0, i0 + cnt) (i0 a multiple of 8) into z (w bytes each); j is the
 * index in the planes of the next value, returned advanced. The planes hold nz > 0 values. */
typedef uint64_t (*expand_fn)(uint8_t *z, size_t w, const uint8_t *bits,
                              const uint8_t *const *pl, uint64_t nz, uint64_t j, uint64_t i0,
                              uint64_t cnt);

static uint64_t expand_scalar(uint8_t *z, size_t w, const uint8_t *bits,
                              const uint8_t *const *pl, uint64_t nz, uint64_t j, uint64_t i0,
                              uint64_t cnt)
{
	const uint64_t last = nz - 1;
	for (uint64_t i = 0; i < cnt; i++) {
		uint64_t g = i0 + i, keep = (bits[g >> 3] >> (g & 7)) & 1;
		uint64_t jj = j < last ? j : last, v = 0;
		for (size_t k = 0; k < w; k++)
			v |= (uint64_t)pl[k][jj] << (8 * k);
		v &= 0 - keep;
		for (size_t k = 0; k < w; k++)
			z[i * w + k] = (uint8_t)(v >> (8 * k));
		j += keep;
	}
	return j;
}

ALCM_ALWAYS_INLINE int apply_sparse_t(const size_t w, const int kind, const int fl,
                                      uint8_t *dst, const uint8_t *bits,
                                      const uint8_t *const *pl, uint64_t nz, uint64_t n,
                                      expand_fn expand)
{
	uint8_t z[SPARSE_BLOCK * 8];
	uint64_t j = 0;
	for (uint64_t i0 = 0; i0 < n; i0 += SPARSE_BLOCK) {
		uint64_t cnt = n - i0 < SPARSE_BLOCK ? n - i0 : SPARSE_BLOCK;
		j = expand(z, w, bits, pl, nz, j, i0, cnt);
		(void)apply_t(w, kind, fl, dst + i0 * w, z, cnt);
	}
	return 0;
}

static void apply_res(size_t w, int kind, int fl, uint8_t *dst, const uint8_t *res, uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_t, dst, res, n);
}

static void apply_planes(size_t w, int kind, int fl, uint8_t *dst, const uint8_t *const *pl,
                         uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_planes_t, dst, pl, n);
}

static void apply_sparse(size_t w, int kind, int fl, uint8_t *dst, const uint8_t *bits,
                         const uint8_t *const *pl, uint64_t nz, uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_sparse_t, dst, bits, pl, nz, n, expand_scalar);
}

/* Palette residuals (transform 3): at most 256 values, looked up by index. */
ALCM_ALWAYS_INLINE int apply_palette_t(const size_t w, const int kind, const int fl,
                                       uint8_t *dst, const uint8_t *pal, const uint8_t *ix,
                                       uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		sto(dst + i * w, w,
		    restore(kind, ld(dst + i * w, w), ld(pal + (size_t)ix[i] * w, w), w, fl));
	return 0;
}

static void apply_palette(size_t w, int kind, int fl, uint8_t *dst, const uint8_t *pal,
                          const uint8_t *ix, uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_palette_t, dst, pal, ix, n);
}

int alcm_delta_scalar_only = 0;

#if defined(__x86_64__) && defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DELTA_AVX2 1
#include <immintrin.h>

/* For a bitmap byte b: the byte shuffle that moves the next popcount(b) packed values to the
 * positions of b's set bits, zero (0x80) at the others; and popcount(b). */
#define DB(b, p) (((b) >> (p)) & 1u)
#define POP8(b) \
	(DB(b, 0) + DB(b, 1) + DB(b, 2) + DB(b, 3) + DB(b, 4) + DB(b, 5) + DB(b, 6) + DB(b, 7))
#define CTL(b, p) ((uint64_t)(DB(b, p) ? POP8((b) & ((1u << (p)) - 1)) : 0x80u) << (8 * (p)))
#define SHUF(b) (CTL(b, 0) | CTL(b, 1) | CTL(b, 2) | CTL(b, 3) | CTL(b, 4) | CTL(b, 5) | \
                 CTL(b, 6) | CTL(b, 7))
#define LDX(k) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pl[k] + j)), ctl)
#define X4(f, b) f(b), f((b) + 1), f((b) + 2), f((b) + 3)
#define X16(f, b) X4(f, b), X4(f, (b) + 4), X4(f, (b) + 8), X4(f, (b) + 12)
#define X64(f, b) X16(f, b), X16(f, (b) + 16), X16(f, (b) + 32), X16(f, (b) + 48)
#define X256(f) X64(f, 0u), X64(f, 64u), X64(f, 128u), X64(f, 192u)
static const uint64_t shuf_lut[256] = {X256(SHUF)};
static const uint8_t pop_lut[256] = {X256(POP8)};

/* 16 elements a time while 16 bytes of each plane can be read, for w 2 and 4; the scalar
 * loop does the rest. */
__attribute__((target("avx2"))) static uint64_t expand_avx2(uint8_t *z, size_t w,
                                                             const uint8_t *bits,
                                                             const uint8_t *const *pl,
                                                             uint64_t nz, uint64_t j,
                                                             uint64_t i0, uint64_t cnt)
{
	uint64_t i = 0;
	if (w == 2 || w == 4) {
		for (; i + 16 <= cnt && j + 16 <= nz; i += 16) {
			unsigned b0 = bits[(i0 + i) >> 3], b1 = bits[((i0 + i) >> 3) + 1];
			__m128i ctl = _mm_set_epi64x(
				(long long)(shuf_lut[b1] + pop_lut[b0] * 0x0101010101010101ull),
				(long long)shuf_lut[b0]);
			__m128i e0 = LDX(0);
			__m128i e1 = LDX(1);
			__m128i lo = _mm_unpacklo_epi8(e0, e1), hi = _mm_unpackhi_epi8(e0, e1);
			__m128i *o = (__m128i *)(z + i * w);
			if (w == 2) {
				_mm_storeu_si128(o, lo);
				_mm_storeu_si128(o + 1, hi);
			} else {
				__m128i e2 = LDX(2);
				__m128i e3 = LDX(3);
				__m128i lo2 = _mm_unpacklo_epi8(e2, e3);
				__m128i hi2 = _mm_unpackhi_epi8(e2, e3);
				_mm_storeu_si128(o, _mm_unpacklo_epi16(lo, lo2));
				_mm_storeu_si128(o + 1, _mm_unpackhi_epi16(lo, lo2));
				_mm_storeu_si128(o + 2, _mm_unpacklo_epi16(hi, hi2));
				_mm_storeu_si128(o + 3, _mm_unpackhi_epi16(hi, hi2));
			}
			j += (uint64_t)pop_lut[b0] + pop_lut[b1];
		}
	}
	return i < cnt ? expand_scalar(z + i * w, w, bits, pl, nz, j, i0 + i, cnt - i) : j;
}

/* The same loops compiled for AVX2: they vectorize at 8 lanes of 32 bits. */
__attribute__((target("avx2"))) static void apply_res_avx2(size_t w, int kind, int fl,
                                                            uint8_t *dst, const uint8_t *res,
                                                            uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_t, dst, res, n);
}

__attribute__((target("avx2"))) static void apply_planes_avx2(size_t w, int kind, int fl,
                                                               uint8_t *dst,
                                                               const uint8_t *const *pl,
                                                               uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_planes_t, dst, pl, n);
}

__attribute__((target("avx2"))) static void apply_sparse_avx2(size_t w, int kind, int fl,
                                                               uint8_t *dst,
                                                               const uint8_t *bits,
                                                               const uint8_t *const *pl,
                                                               uint64_t nz, uint64_t n)
{
	(void)WKIND(w, kind, fl, apply_sparse_t, dst, bits, pl, nz, n, expand_avx2);
}

static int use_avx2(void)
{
	return !alcm_delta_scalar_only && __builtin_cpu_supports("avx2");
}
#endif

/*
 * The writer's decode-cost model (spec 6.12.7), in units of the time to read one stored byte
 * and check its digest (BLAKE2b: most of a lossless decode's time): a zstd stream costs
 * COST_ZSTD more per byte it decodes to, and each raw byte of the chunk COST_PLAIN to rebuild
 * from a plain coding's streams or COST_APPLY to apply a residual onto its reference (a
 * read-modify-write of the output, from a cold cache). Calibrated on the Adam float32 run
 * (perf, one thread): per stored byte BLAKE2b 754 samples a MB, pread and page faults 133
 * more; zstd 383 to 404 a decoded MB; joining and rotating a float32 chunk 50 a raw MB,
 * applying a sparse residual 38; COST_APPLY then raised from 0.05 until the estimates met
 * the bench's paired decodes (cold caches), which ran 0.1 above them.
 */
#define COST_ZSTD 0.45
#define COST_PLAIN 0.06
#define COST_APPLY 0.15
/* A residual is kept only when the reference's decode (estimated as the plain coding's) and
 * the residual's together cost at most COST_MAX times the plain coding. tools/bench/
 * series_bench.sh, one thread, CPU time, quiet machine: Adam float32, worst frame 1.72x its
 * checkpoint alone and the series 1.62x smaller than the checkpoints alone; SGD float32,
 * 1.78x and 1.36x. At 1.7 the SGD run was stored as keyframes only (1.00x); at 1.65 the
 * Adam run was 1.47x smaller (frames 3 to 5 became keyframes). */
#define COST_MAX 1.9

/* One coded stream of a trial: stored by zstd (z), its decoded and coded lengths. */
typedef struct tstream {
	int z;
	uint64_t raw, clen;
} tstream;

/* The streams of a chunk coded into tmp with transform t (spec 6.4); 0 when they cannot be
 * listed (the palette, whose streams this does not parse). */
static size_t trial_streams(const alcm_buf *tmp, unsigned t, size_t w, tstream *s)
{
	alcm_cursor cur = {tmp->p, tmp->len, 1};
	uint64_t skip;
	if (t == ALCM_TRANSFORM_PALETTE)
		return 0;
	if (t == ALCM_TRANSFORM_SPARSE && alcm_cur_varint(&cur, &skip))
		return 0;
	size_t n = alcm_lossless_streams(t, w);
	for (size_t k = 0; k < n; k++) {
		uint8_t id;
		const uint8_t *p;
		if (alcm_cur_u8(&cur, &id) || alcm_cur_varint(&cur, &s[k].raw) ||
		    alcm_cur_varint(&cur, &s[k].clen) || alcm_cur_bytes(&cur, (size_t)s[k].clen, &p))
			return 0;
		s[k].z = id == ALCM_BACKEND_ZSTD;
	}
	return n;
}

/* What zstd costs to decode a stream: COST_ZSTD a decoded byte, but at most ZSTD_RUN_CAP times
 * its coded bytes (runs of one byte, such as a plane of zeros, decode at memset speed: 0.02 ns
 * a byte, against 0.56 to 1.2 for planes coded 0.08 to 0.9 of their size). */
#define ZSTD_RUN_CAP 16
static double zstd_cost(const tstream *s)
{
	double d = (double)s->raw, c = (double)ZSTD_RUN_CAP * (double)s->clen;
	return s->z ? COST_ZSTD * (d < c ? d : c) : 0;
}

/* The decode cost of the trial coding in tmp (n elements of w bytes; per: COST_PLAIN or
 * COST_APPLY). A palette counts as one zstd stream of the whole chunk. */
static double trial_cost(const alcm_buf *tmp, unsigned t, size_t w, uint64_t n, double per)
{
	tstream s[9];
	size_t m = trial_streams(tmp, t, w, s);
	double c = (double)tmp->len + per * (double)n * (double)w;
	if (!m)
		return c + COST_ZSTD * (double)n * (double)w;
	for (size_t k = 0; k < m; k++)
		c += zstd_cost(&s[k]);
	return c;
}

/*
 * A residual's trial coding in tmp fitted to the cost budget: while it costs more, the zstd
 * stream that saves the smallest share of its bytes is stored raw instead (its zmask bit
 * cleared), as long as that lowers the cost. @return 1 if the coding then fits, with *len its
 * length; 0 if not.
 */
static int fit_budget(const alcm_buf *tmp, alcm_lplan *pl, size_t w, uint64_t n, double budget,
                      size_t *len)
{
	tstream s[9];
	size_t m = trial_streams(tmp, pl->transform, w, s);
	double cost = trial_cost(tmp, pl->transform, w, n, COST_APPLY);
	*len = tmp->len;
	while (m && cost > budget) {
		size_t best = m;
		double share = 2;
		for (size_t k = 0; k < m; k++) {
			double saved = (double)s[k].raw - (double)s[k].clen;
			if (s[k].z && s[k].raw && saved < zstd_cost(&s[k]) &&
			    saved / (double)s[k].raw < share) {
				share = saved / (double)s[k].raw;
				best = k;
			}
		}
		if (best == m)
			break;
		cost -= zstd_cost(&s[best]) - ((double)s[best].raw - (double)s[best].clen);
		s[best].z = 0;
		pl->zmask &= ~(1u << best);
		*len += (size_t)(s[best].raw - s[best].clen);
	}
	return cost <= budget;
}

/* A chunk keeps a residual when it codes the sample in at most CHUNK_KEEP of the plain
 * coding's bytes (a plain chunk decodes without its reference, and a tensor of plain chunks
 * needs no reference at all) and fits the cost budget above. A tensor is stored as a delta
 * only when its sample does the same (alcm_delta_worth): early frames of the Adam run, whose
 * deltas saved 20 to 25%, took 1.7 to 2.4 times their checkpoint alone to decode. */
#define CHUNK_KEEP 0.9

/* The sample pick() decides on: ns of the n elements in SAMPLE_SLICES runs spread evenly over
 * them, each from the middle of its share (the middle 64 KiB alone misjudged a layer whose
 * middle rows changed less than the rest: a delta 0.42 of the plain coding on the sample was
 * 0.60 on the whole). */
#define SAMPLE_SLICES 8
static void sample(uint8_t *out, const uint8_t *src, uint64_t n, uint64_t ns, size_t w)
{
	if (ns >= n || ns < SAMPLE_SLICES) {
		memcpy(out, src + (size_t)((n - ns) / 2 * w), (size_t)ns * w);
		return;
	}
	uint64_t share = n / SAMPLE_SLICES, done = 0;
	for (unsigned s = 0; s < SAMPLE_SLICES; s++) {
		uint64_t cnt = s + 1 < SAMPLE_SLICES ? ns / SAMPLE_SLICES : ns - done;
		uint64_t at = s * share + (share > cnt ? (share - cnt) / 2 : 0);
		if (at + cnt > n)
			at = n - cnt;
		memcpy(out + (size_t)done * w, src + (size_t)at * w, (size_t)cnt * w);
		done += cnt;
	}
}

/*
 * The kind for n elements against ref, chosen on their middle 64 KiB: each candidate (plain,
 * XOR, difference) is planned by the lossless chooser and coded at zstd level 1 (a residual
 * the chooser would code as one stream is also tried as byte planes, which decode faster);
 * a residual is kept only when, fitted to the cost budget, it codes in at most CHUNK_KEEP of
 * the plain coding's bytes. The plan holds for the whole chunk: the chooser looks at the same
 * middle 64 KiB of it.
 */
static int pick(alcm_coder *c, const alcm_allocator *a, int dtype, const uint8_t *src,
                const uint8_t *ref, uint64_t n, int level, int *kind, alcm_lplan *plan)
{
	size_t w = alcm_dtype_size(dtype);
	int fl = alcm_dtype_is_float(dtype), udt = alcm_delta_udtype(w);
	uint64_t ns = ((uint64_t)1 << 16) / w;
	if (ns > n)
		ns = n;
	uint8_t *smp = alcm_mem_alloc(a, (size_t)(ns ? ns : 1) * w);
	uint8_t *res = alcm_mem_alloc(a, (size_t)(ns ? ns : 1) * w);
	if (!smp || !res) {
		alcm_mem_free(a, smp);
		alcm_mem_free(a, res);
		return ALCM_E_NOMEM;
	}
	sample(smp, src, n, ns, w);
	alcm_buf tmp = {NULL, 0, 0, a, 0};
	size_t best = SIZE_MAX, plain = SIZE_MAX;
	double budget = 0;
	*kind = ALCM_DELTA_PLAIN;
	for (int k = 0; k < 3; k++) {
		int dt = k == ALCM_DELTA_PLAIN ? dtype : udt;
		const uint8_t *d = smp;
		if (k != ALCM_DELTA_PLAIN) {
			sample(res, ref, n, ns, w);
			(void)WKIND(w, k, fl, residuals_t, res, smp, res, ns);
			d = res;
		}
		alcm_lplan pl = alcm_lossless_choose(c, &tmp, dt, d, ns, level);
		for (int alt = 0; alt < 2; alt++) {
			if (alt) { /* one stream of a residual: also byte planes */
				if (k == ALCM_DELTA_PLAIN || w == 1 || pl.transform != ALCM_TRANSFORM_NONE)
					break;
				pl = (alcm_lplan){.transform = ALCM_TRANSFORM_PLANES, .zmask = 0x1ffu,
				                  .lmask = 0x1ffu};
			}
			tmp.len = 0;
			if (alcm_lossless_encode(c, &tmp, dt, &pl, d, ns, 1))
				continue;
			size_t len = tmp.len;
			if (k == ALCM_DELTA_PLAIN) {
				plain = len;
				budget = (COST_MAX - 1) * trial_cost(&tmp, pl.transform, w, ns, COST_PLAIN);
			} else if (!fit_budget(&tmp, &pl, w, ns, budget, &len) ||
			           (double)len > (double)plain * CHUNK_KEEP) {
				continue;
			}
			if (len < best) {
				best = len;
				*kind = k;
				*plan = pl;
			}
		}
	}
	alcm_buf_free(&tmp);
	alcm_mem_free(a, smp);
	alcm_mem_free(a, res);
	return ALCM_OK;
}

int alcm_delta_worth(alcm_coder *c, const alcm_allocator *a, int dtype, const uint8_t *src,
                     const uint8_t *ref, uint64_t n, int *worth)
{
	int kind;
	alcm_lplan plan;
	int st = pick(c, a, dtype, src, ref, n, 1, &kind, &plan);
	*worth = kind != ALCM_DELTA_PLAIN;
	return st;
}

int alcm_delta_encode(alcm_coder *c, alcm_buf *out, int dtype, const uint8_t *src,
                      const uint8_t *ref, uint64_t n, int level)
{
	size_t w = alcm_dtype_size(dtype);
	int fl = alcm_dtype_is_float(dtype), kind;
	alcm_lplan plan;
	int st = pick(c, out->a, dtype, src, ref, n, level, &kind, &plan);
	if (st)
		return st;
	uint8_t kb = (uint8_t)kind, *res = NULL;
	if (kind != ALCM_DELTA_PLAIN) {
		if (!(res = alcm_mem_alloc(out->a, (size_t)(n ? n : 1) * w)))
			return ALCM_E_NOMEM;
		(void)WKIND(w, kind, fl, residuals_t, res, src, ref, n);
	}
	st = alcm_buf_put(out, &kb, 1);
	if (!st)
		st = alcm_lossless_encode(c, out, res ? alcm_delta_udtype(w) : dtype, &plan,
		                          res ? res : src, n, level);
	alcm_mem_free(out->a, res);
	return st;
}

int alcm_delta_decode(alcm_coder *c, alcm_cursor *cur, int dtype, uint8_t *dst, uint64_t n,
                      uint8_t *scratch)
{
	size_t w = alcm_dtype_size(dtype);
	uint8_t kind, t;
	int st = alcm_cur_u8(cur, &kind);
	if (st)
		return st;
	if (kind == ALCM_DELTA_PLAIN)
		return alcm_lossless_decode(c, cur, dtype, dst, n, scratch);
	if (kind > ALCM_DELTA_DIFF)
		return ALCM_E_UNSUPPORTED; /* a delta coding of a later version (spec 6.12.4) */
	/* The residuals' transforms (spec 6.4) are read here with their checks, so that each is
	 * applied as it is read, within alcm_lossless_scratch(n, w) bytes of scratch: the
	 * reference's decode needed as much, and nothing grows between the two. */
	if ((st = alcm_cur_u8(cur, &t)))
		return st;
	int fl = alcm_dtype_is_float(dtype), simd = 0;
#ifdef DELTA_AVX2
	simd = use_avx2();
#endif
	const uint8_t *pl[8];
	if (t == ALCM_TRANSFORM_SPARSE) {
		uint64_t nz, ones;
		if ((st = alcm_cur_varint(cur, &nz)))
			return st;
		if (nz > n)
			return ALCM_E_CORRUPT;
		uint8_t *bits = scratch;
		if ((st = alcm_bitmap_get(c, cur, bits, n, &ones)))
			return st;
		if (ones != nz)
			return ALCM_E_CORRUPT;
		uint8_t *pd = scratch + n / 8 + 1;
		for (size_t k = 0; k < w; k++)
			if ((st = alcm_stream_view(c, cur, pd + k * nz, (size_t)nz, &pl[k])))
				return st;
		if (!nz)
			return ALCM_OK; /* every residual zero: the reference as it is */
#ifdef DELTA_AVX2
		if (simd) {
			apply_sparse_avx2(w, kind, fl, dst, bits, pl, nz, n);
			return ALCM_OK;
		}
#endif
		apply_sparse(w, kind, fl, dst, bits, pl, nz, n);
		return ALCM_OK;
	}
	if (w > 1 && t == ALCM_TRANSFORM_PLANES) {
		for (size_t k = 0; k < w; k++)
			if ((st = alcm_stream_view(c, cur, scratch + k * n, (size_t)n, &pl[k])))
				return st;
#ifdef DELTA_AVX2
		if (simd) {
			apply_planes_avx2(w, kind, fl, dst, pl, n);
			return ALCM_OK;
		}
#endif
		apply_planes(w, kind, fl, dst, pl, n);
		return ALCM_OK;
	}
	if (t == ALCM_TRANSFORM_PALETTE) {
		uint8_t pal[256 * 8];
		uint64_t m;
		const uint8_t *ix;
		if ((st = alcm_palette_get(c, cur, w, n, scratch, pal, &m, &ix)))
			return st;
		apply_palette(w, kind, fl, dst, pal, ix, n);
		return ALCM_OK;
	}
	if (t == ALCM_TRANSFORM_NONE || t == ALCM_TRANSFORM_PLANES) { /* planes of 1 byte: raw */
		if ((st = alcm_stream_get(c, cur, scratch, (size_t)n * w)))
			return st;
#ifdef DELTA_AVX2
		if (simd) {
			apply_res_avx2(w, kind, fl, dst, scratch, n);
			return ALCM_OK;
		}
#endif
		apply_res(w, kind, fl, dst, scratch, n);
		return ALCM_OK;
	}
	/* Float rotation on integer residuals, or a transform of a later version (spec 6.4). */
	return t == ALCM_TRANSFORM_FLOAT ? ALCM_E_CORRUPT : ALCM_E_UNSUPPORTED;
}

/* ---- quantized deltas ------------------------------------------------------------------- */

#define QMAX ((int64_t)1 << 30)

static inline uint32_t qzig(int64_t q)
{
	return (uint32_t)(((uint64_t)q << 1) ^ (uint64_t)(q >> 63));
}

/* The reconstruction of spec 6.12.5: ref + q * step in binary64, rounded to the dtype. */
static inline double rel_value(int dtype, double ref, int64_t q, double s)
{
	uint8_t b[8];
	alcm_store_float(dtype, b, 0, ref + (double)q * s);
	return alcm_load_float(dtype, b, 0);
}

static inline uint64_t channel_of(const alcm_qparams *qp, uint64_t g)
{
	return qp->nsteps == 1 ? 0 : g / qp->inner;
}

/* The symbol planes and escape block of a QDAT chunk (spec 6.5.4) for nsym symbols. */
static int put_chunk(alcm_coder *c, alcm_buf *out, const uint32_t *sym, uint64_t n,
                     const alcm_buf *gaps, const alcm_buf *vals, uint64_t nesc, int level)
{
	uint32_t maxz = 0;
	for (uint64_t i = 0; i < n; i++)
		maxz |= sym[i];
	uint8_t width = maxz < 0x100 ? 1 : maxz < 0x10000 ? 2 : 4;
	int st = alcm_buf_put(out, &width, 1);
	if (!st)
		st = alcm_buf_put_varint(out, n);
	uint8_t *plane = st ? NULL : alcm_mem_alloc(out->a, n ? (size_t)n : 1);
	if (!st && !plane)
		st = ALCM_E_NOMEM;
	for (unsigned k = 0; k < width && !st; k++) {
		for (uint64_t i = 0; i < n; i++)
			plane[i] = (uint8_t)(sym[i] >> (8 * k));
		st = alcm_stream_put_best(c, out, plane, (size_t)n, level);
	}
	alcm_mem_free(out->a, plane);
	alcm_buf blk = {NULL, 0, 0, out->a, 0};
	if (!st)
		st = alcm_buf_put_varint(&blk, nesc);
	if (!st)
		st = alcm_buf_put(&blk, gaps->p, gaps->len);
	if (!st)
		st = alcm_buf_put(&blk, vals->p, vals->len);
	if (!st)
		st = alcm_buf_put_varint(out, blk.len);
	if (!st)
		st = alcm_stream_put(c, out, blk.p, blk.len, level);
	alcm_buf_free(&blk);
	return st;
}

/* Steps added to the reference; recon (chunk-local, may be NULL) receives the values. */
static int rel_encode(alcm_coder *c, alcm_buf *out, const alcm_qparams *qp, const uint8_t *src,
                      const uint8_t *ref, uint64_t first, uint64_t n, alcm_qstats *stt,
                      uint8_t *recon)
{
	const alcm_allocator *a = out->a;
	int dtype = qp->dtype;
	size_t w = alcm_dtype_size(dtype);
	uint32_t *sym = alcm_mem_alloc(a, (size_t)(n ? n : 1) * sizeof(uint32_t));
	alcm_buf gaps = {NULL, 0, 0, a, 0}, vals = {NULL, 0, 0, a, 0};
	if (!sym)
		return ALCM_E_NOMEM;
	uint64_t nesc = 0, last = 0;
	int st = ALCM_OK;
	for (uint64_t i = 0; i < n && !st; i++) {
		uint64_t g = first + i, ch = channel_of(qp, g);
		double s = qp->step[ch], b = qp->bound_c ? qp->bound_c[ch] : INFINITY;
		double r = alcm_load_float(dtype, ref, g), x = 0, err = INFINITY;
		int64_t q = 0;
		int ok = 0;
		if (!alcm_is_special(dtype, src, g)) {
			x = alcm_load_float(dtype, src, g);
			double t = s > 0 ? (x - r) / s : 0;
			if (fabs(t) < (double)QMAX) {
				q = (int64_t)alcm_round_small(t);
				err = fabs(x - rel_value(dtype, r, q, s));
				for (int d = -1; d <= 1 && s > 0 && !(err <= b); d += 2) {
					double e2 = fabs(x - rel_value(dtype, r, q + d, s));
					if (e2 < err && fabs((double)(q + d)) < (double)QMAX) {
						q += d;
						err = e2;
					}
				}
				ok = err <= b;
			}
			stt->sig += x * x;
		}
		if (!ok) {
			/* Special, or out of the bound's reach: stored exactly. */
			st = alcm_buf_put_varint(&gaps, i - last - (nesc ? 1 : 0));
			if (!st)
				st = alcm_buf_put(&vals, src + g * w, w);
			last = i;
			nesc++;
			sym[i] = 0;
			if (recon)
				memcpy(recon + i * w, src + g * w, w);
			continue;
		}
		sym[i] = qzig(q);
		stt->noise += err * err;
		if (err > stt->max_err)
			stt->max_err = err;
		if (recon)
			alcm_store_float(dtype, recon, i, r + (double)q * s);
	}
	if (!st)
		st = put_chunk(c, out, sym, n, &gaps, &vals, nesc, qp->level);
	stt->escapes += nesc;
	alcm_buf_free(&gaps);
	alcm_buf_free(&vals);
	alcm_mem_free(a, sym);
	return st;
}

int alcm_delta_quant_encode(alcm_coder *c, alcm_buf *out, const alcm_qparams *qp,
                            const uint8_t *src, const uint8_t *ref, uint64_t first,
                            uint64_t elems, alcm_qstats *stt, uint8_t *recon)
{
	size_t w = alcm_dtype_size(qp->dtype);
	alcm_buf absb = {NULL, 0, 0, out->a, 0}, relb = {NULL, 0, 0, out->a, 0};
	alcm_buf mask = {NULL, 0, 0, out->a, 0};
	alcm_qstats sa, sr;
	memset(&sa, 0, sizeof(sa));
	memset(&sr, 0, sizeof(sr));
	uint8_t *rrec = recon ? alcm_mem_alloc(out->a, (size_t)(elems ? elems : 1) * w) : NULL;
	int st = recon && !rrec ? ALCM_E_NOMEM : ALCM_OK;
	if (!st)
		st = alcm_quant_encode(c, &absb, &mask, qp, src, first, elems, &sa, recon);
	if (!st)
		st = rel_encode(c, &relb, qp, src, ref, first, elems, &sr, rrec);
	if (!st) {
		int rel = relb.len <= absb.len / 10 * 9; /* as for lossless chunks */
		uint8_t kind = rel ? ALCM_DELTA_ADD : ALCM_DELTA_PLAIN;
		const alcm_buf *b = rel ? &relb : &absb;
		const alcm_qstats *s = rel ? &sr : &sa;
		st = alcm_buf_put(out, &kind, 1);
		if (!st)
			st = alcm_buf_put(out, b->p, b->len);
		if (rel && recon)
			memcpy(recon + first * w, rrec, (size_t)elems * w);
		stt->escapes += s->escapes;
		stt->sig += s->sig;
		stt->noise += s->noise;
		if (s->max_err > stt->max_err)
			stt->max_err = s->max_err;
	}
	alcm_mem_free(out->a, rrec);
	alcm_buf_free(&absb);
	alcm_buf_free(&relb);
	alcm_buf_free(&mask);
	return st;
}

/* The escape block of a chunk (spec 6.5.4), patched over dst. */
static int get_escapes(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, uint64_t first,
                       uint64_t elems, size_t w)
{
	uint64_t blen, nesc = 0;
	int st = alcm_cur_varint(cur, &blen);
	if (st)
		return st;
	/* What a block can hold (spec 6.5.4, nsym = elems here: no pruning): the count's
	 * varint, minimal gaps (at most n bytes in all) and the values. Checked before the
	 * block is allocated and inflated (5.6). */
	if (blen == 0 || blen > 10 + elems + elems * w)
		return ALCM_E_CORRUPT;
	uint8_t *blk = alcm_mem_alloc(alcm_coder_alloc(c), (size_t)blen);
	if (!blk)
		return ALCM_E_NOMEM;
	st = alcm_stream_get(c, cur, blk, (size_t)blen);
	alcm_cursor gc = {blk, (size_t)blen, 0};
	if (!st)
		st = alcm_cur_varint(&gc, &nesc);
	if (!st && nesc > elems)
		st = ALCM_E_CORRUPT;
	size_t gaps_at = gc.pos;
	for (uint64_t k = 0; k < nesc && !st; k++) {
		uint64_t gap;
		st = alcm_cur_varint(&gc, &gap);
	}
	if (!st && blen - gc.pos != nesc * w)
		st = ALCM_E_CORRUPT;
	alcm_cursor vc = {blk, (size_t)blen, gc.pos};
	gc.pos = gaps_at;
	uint64_t pos = 0;
	for (uint64_t k = 0; k < nesc && !st; k++) {
		uint64_t gap;
		const uint8_t *v;
		alcm_cur_varint(&gc, &gap);
		if (k == 0 ? gap >= elems : gap >= elems - pos - 1) {
			st = ALCM_E_CORRUPT;
			break;
		}
		pos = k == 0 ? gap : pos + 1 + gap;
		alcm_cur_bytes(&vc, w, &v);
		memcpy(dst + (first + pos) * w, v, w);
	}
	alcm_mem_free(alcm_coder_alloc(c), blk);
	return st;
}

ALCM_ALWAYS_INLINE int rel_apply_t(const int dtype, const alcm_qparams *qp, uint8_t *dst,
                                   uint64_t first, uint64_t elems, const uint8_t *planes,
                                   unsigned width)
{
	for (uint64_t i = 0; i < elems; i++) {
		uint32_t z = planes[i];
		if (width > 1)
			z |= (uint32_t)planes[elems + i] << 8;
		if (width > 2)
			z |= ((uint32_t)planes[2 * elems + i] << 16) | ((uint32_t)planes[3 * elems + i] << 24);
		if (z >= (uint32_t)(2 * QMAX))
			return ALCM_E_CORRUPT;
		int64_t q = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
		uint64_t g = first + i;
		double r = alcm_load_float(dtype, dst, g);
		alcm_store_float(dtype, dst, g, r + (double)q * qp->step[channel_of(qp, g)]);
	}
	return ALCM_OK;
}

int alcm_delta_quant_decode(alcm_coder *c, alcm_cursor *cur, const alcm_qparams *qp,
                            uint8_t *dst, uint64_t first, uint64_t elems, uint8_t *scratch,
                            size_t scratch_len)
{
	uint8_t kind, width;
	uint64_t nsym;
	int st = alcm_cur_u8(cur, &kind);
	if (st)
		return st;
	if (kind == ALCM_DELTA_PLAIN)
		return alcm_quant_decode(c, cur, NULL, qp, dst, first, elems, scratch, scratch_len);
	if (kind != ALCM_DELTA_ADD)
		return ALCM_E_UNSUPPORTED; /* a delta coding of a later version (spec 6.12.5) */
	if (scratch_len < 4 * elems)
		return ALCM_E_ARG;
	if ((st = alcm_cur_u8(cur, &width)) || (st = alcm_cur_varint(cur, &nsym)))
		return st;
	if (width != 1 && width != 2 && width != 4)
		return ALCM_E_UNSUPPORTED;
	if (nsym != elems)
		return ALCM_E_CORRUPT;
	for (unsigned k = 0; k < width; k++)
		if ((st = alcm_stream_get(c, cur, scratch + k * elems, (size_t)elems)))
			return st;
	if ((st = ALCM_FLOAT_DISPATCH(qp->dtype, rel_apply_t, qp, dst, first, elems, scratch,
	                              width)))
		return st;
	return get_escapes(c, cur, dst, first, elems, alcm_dtype_size(qp->dtype));
}

/* ---- estimates -------------------------------------------------------------------------- */

static inline unsigned bitlen(uint64_t v)
{
	return v ? 64 - (unsigned)__builtin_clzll(v) : 0;
}

double alcm_delta_estimate(int dtype, const uint8_t *x, const uint8_t *ref, uint64_t n,
                           double step)
{
	if (!n)
		return 0;
	size_t w = alcm_dtype_size(dtype);
	int fl = alcm_dtype_is_float(dtype);
	uint64_t stride = n > 4096 ? n / 4096 : 1, seen = 0;
	double bits = 0;
	for (uint64_t i = 0; i < n; i += stride, seen++) {
		uint64_t z;
		if (step > 0 && fl && !alcm_is_special(dtype, x, i) && !alcm_is_special(dtype, ref, i)) {
			double t = (alcm_load_float(dtype, x, i) - alcm_load_float(dtype, ref, i)) / step;
			z = fabs(t) < (double)QMAX ? qzig((int64_t)alcm_round_small(t)) : (uint64_t)1 << 40;
		} else {
			z = residual(ALCM_DELTA_DIFF, ld(x + i * w, w), ld(ref + i * w, w), w, fl);
		}
		/* A zero costs a fraction of a bit in a run; others their bits and a sign. */
		bits += z ? bitlen(z) + 1.0 : 0.25;
	}
	return bits * (double)n / (double)seen;
}
