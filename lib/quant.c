/* Uniform quantization with per-channel steps, pruning masks and exact escapes (spec 6.5). */
#include "symcode_internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* ---- half and bfloat16 ------------------------------------------------------------------ */

float alcm_half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0x1f) {
		u = s | 0x7f800000u | (m << 13);
	} else if (e) {
		u = s | ((e + 112) << 23) | (m << 13);
	} else if (m) {
		/* Subnormal half: normalise into a float32 normal. */
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

uint16_t alcm_float_to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u)
		return (uint16_t)(s | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return (uint16_t)(s | 0x7c00);
	if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
		if (a < 0x33000000u)
			return s;
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(s | r);
	}
	uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15, keep 23-bit mantissa */
	uint32_t v = r >> 13, rem = r & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
		v++;
	return (uint16_t)(s | v);
}

float alcm_bf16_to_float(uint16_t h)
{
	return alcm_bf16_to_float_i(h);
}

uint16_t alcm_float_to_bf16(float f)
{
	return alcm_float_to_bf16_i(f);
}

static inline uint32_t zigzag(int64_t q)
{
	return (uint32_t)(((uint64_t)q << 1) ^ (uint64_t)(q >> 63));
}
static inline int64_t unzigzag(uint32_t z)
{
	return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* Symbols are kept within +-2^30 so that zigzag fits 31 bits. */
#define QMAX ((int64_t)1 << 30)

/* ---- chunk encoder ---------------------------------------------------------------------- */

static int put_escapes(alcm_coder *c, alcm_buf *data, alcm_buf *esc, int level)
{
	int st = alcm_buf_put_varint(data, esc->len);
	if (!st)
		st = alcm_stream_put(c, data, esc->p, esc->len, level);
	return st;
}

static int put_planes(alcm_coder *c, alcm_buf *data, const uint32_t *sym, uint64_t n,
                      int level)
{
	uint32_t maxz = 0;
	for (uint64_t i = 0; i < n; i++)
		maxz |= sym[i];
	uint8_t w = maxz < 0x100 ? 1 : maxz < 0x10000 ? 2 : 4;
	int st = alcm_buf_put(data, &w, 1);
	if (!st)
		st = alcm_buf_put_varint(data, n);
	if (st)
		return st;
	uint8_t *plane = alcm_coder_scratch(c, ALCM_SCRATCH_QPLANE, (size_t)n);
	if (!plane)
		return ALCM_E_NOMEM;
	for (unsigned k = 0; k < w && !st; k++) {
		for (uint64_t i = 0; i < n; i++)
			plane[i] = (uint8_t)(sym[i] >> (8 * k));
		st = alcm_stream_put_best(c, data, plane, (size_t)n, level);
	}
	return st;
}

/* Below this many symbols a chunk is also coded as byte planes, and the smaller kept: the
 * modelled coding's 128 bytes of rANS states and its tables can outweigh what they save. */
#define PLANES_TOO 4096

/* Order-0 entropy in bits of a histogram of `total` counts. */
static double hist_bits(const uint32_t *h, unsigned nb, double total)
{
	double b = 0;
	for (unsigned k = 0; k < nb; k++)
		if (h[k])
			b -= h[k] * log2(h[k] / total);
	return b;
}

/*
 * Whether the symbols look smooth (neighbours close: sampled data, ramps, sorted values),
 * where byte planes with zstd's matches beat the modelled coding's order-0 tables: on up to
 * 8192 leading symbols, the entropy of the differences is compared with that of the symbols
 * (both clamped to 512 bins). For independent values the differences have the larger
 * entropy, so weights and gradients are far from it; a false alarm only costs the planes'
 * trial, as the smaller coding is kept.
 */
static int symbols_smooth(const uint32_t *sym, uint64_t n)
{
	enum { SAMPLE = 8192, BINS = 512 };
	uint32_t hs[BINS], hd[BINS];
	memset(hs, 0, sizeof(hs));
	memset(hd, 0, sizeof(hd));
	uint64_t m = n < SAMPLE ? n : SAMPLE;
	for (uint64_t i = 1; i < m; i++) {
		uint32_t d = sym[i] - sym[i - 1];
		d = (d << 1) ^ (uint32_t)((int32_t)d >> 31); /* zigzag of the difference */
		hs[sym[i] < BINS ? sym[i] : BINS - 1]++;
		hd[d < BINS ? d : BINS - 1]++;
	}
	double t = (double)(m - 1);
	return m > 1 && hist_bits(hd, BINS, t) < 0.75 * hist_bits(hs, BINS, t);
}

/* The symbols of a chunk: modelled (format 1.1) when allowed and not larger, else planes. */
static int put_symbols(alcm_coder *c, alcm_buf *data, const alcm_qparams *qp,
                       const uint32_t *sym, uint64_t n, const uint8_t *bits, uint64_t first,
                       uint64_t elems, alcm_qstats *stt)
{
	if (!qp->symcoding || n == 0)
		return put_planes(c, data, sym, n, qp->level);
	size_t at = data->len;
	/* Fewer rANS states for a short chunk (codings 18 and 19, spec 6.5.14). */
	uint8_t lanes = (uint8_t)(qp->lanes >= 1 && qp->lanes <= ALCM_RANS_LANES
	                              ? qp->lanes : alcm_rans_lanes_for(n));
	uint8_t w = qp->offset != 0 ? ALCM_QCODING_RANS_OFFSET : ALCM_QCODING_RANS;
	if (lanes < ALCM_RANS_LANES)
		w += ALCM_QCODING_RANS_LANES - ALCM_QCODING_RANS;
	int st = alcm_buf_put(data, &w, 1);
	if (!st)
		st = alcm_buf_put_varint(data, n);
	if (!st && qp->offset != 0) {
		uint8_t ob[8];
		uint64_t u;
		memcpy(&u, &qp->offset, 8);
		alcm_store64(ob, u);
		st = alcm_buf_put(data, ob, 8);
	}
	if (!st && lanes < ALCM_RANS_LANES)
		st = alcm_buf_put(data, &lanes, 1);
	if (!st)
		st = alcm_symcode_encode(c, data, qp, sym, n, bits, first, elems, lanes);
	size_t l1 = data->len - at;
	/* An offset has no byte-plane coding: the modelled one is kept (alcm_quant_lattice()
	 * takes tensors of at most 256 values, whose tokens take at most a byte or so each). */
	if (st || qp->offset != 0) {
		stt->modelled += !st;
		return st;
	}
	/* Past PLANES_TOO symbols the planes are tried only if the modelled coding came out
	 * larger than byte planes can ever be (four raw streams): a chunk then always keeps
	 * within alcm_chunk_data_max(), which readers enforce), or if they look smooth. */
	if (st || ((n >= PLANES_TOO || qp->symcoding == 2) && l1 <= 4 * (n + 32) &&
	           !symbols_smooth(sym, n))) {
		stt->modelled += !st;
		return st;
	}
	if ((st = put_planes(c, data, sym, n, qp->level)))
		return st;
	size_t l2 = data->len - at - l1;
	if (l2 < l1) {
		memmove(data->p + at, data->p + at + l1, l2);
		data->len = at + l2;
	} else {
		data->len = at + l1;
		stt->modelled++;
	}
	return ALCM_OK;
}

enum { Q_SYMBOL, Q_PRUNED, Q_SPECIAL, Q_MISS };

/* The value symbol q stands for, before rounding to the dtype (spec 6.5.5, 6.5.11). */
static inline double qvalue(int64_t q, double s, double o)
{
	double r = (double)q * s;
	return o != 0 ? r + o : r;
}

/* What becomes of element k in a channel of step s and offset o (inv = 1 / s, 0 if s is 0),
 * bound b:
 * a symbol (*q, at distance *err from the value), pruned, or stored exactly (a special
 * value, or one the grid cannot bring within the bound). *x receives the value. */
ALCM_ALWAYS_INLINE int classify(const int dtype, const uint8_t *src, uint64_t k, double s,
                                double o, double inv, double b, double prune_below, int64_t *q,
                                double *x, double *err)
{
	if (alcm_is_special(dtype, src, k))
		return Q_SPECIAL;
	double v = alcm_load_float(dtype, src, k), av = fabs(v);
	*x = v;
	if (av < prune_below && av <= b)
		return Q_PRUNED;
	*q = 0;
	*err = av;
	if (s > 0) {
		double t = (o != 0 ? v - o : v) * inv;
		double qd = fabs(t) < 0x1p51 ? alcm_round_small(t) : t;
		if (!(fabs(qd) < (double)QMAX))
			return Q_MISS;
		int64_t qq = (int64_t)qd;
		double e = fabs(v - alcm_quant_value_at(dtype, qq, s, o));
		/* v * inv can land one step off; the neighbours fix it. */
		for (int d = -1; d <= 1 && e > b; d += 2) {
			double e2 = fabs(v - alcm_quant_value_at(dtype, qq + d, s, o));
			if (e2 < e) {
				qq += d;
				e = e2;
			}
		}
		*q = qq;
		*err = e;
	}
	return *err > b || (s <= 0 && v != 0) || !isfinite(*err) ? Q_MISS : Q_SYMBOL;
}

/* For 2-byte dtypes on long channels that alcm_quant_run_h16() does not take (a CPU without
 * AVX2 and F16C, or a mask of pruned values): what classify() says of each of the 65536 bit
 * patterns, filled on first sight, and how often each occurred (the statistics are summed
 * from the counts at the end of the channel). Where the run can take the channel it is
 * faster, and the memo is not made: each memo cost two 256 KB clears a chunk and a scalar
 * lookup a value (alcm-pack -T1 --max-error 0.001 of 16.8M bfloat16 values in [2048, 2560]
 * matrices: 1261M -> 1101M instructions, the same archive). */
#define MEMO_UNSEEN 0xffffffffu
#define MEMO_PRUNED 0xfffffffeu
#define MEMO_EXACT 0xfffffffdu
#define MEMO_MIN_ELEMS 32768
typedef struct memo {
	uint32_t code[65536]; /* zigzag symbol, or MEMO_* */
	uint32_t count[65536];
	uint16_t rec[65536];  /* the decoded bits of a symbol */
	double err[65536];
} memo;

typedef struct qsum {
	double maxe, sig, noise;
	uint64_t pruned;
} qsum;

ALCM_ALWAYS_INLINE uint32_t memo_fill(const int dtype, memo *m, const uint8_t *src, uint64_t k,
                                      double s, double o, double inv, double b,
                                      double prune_below)
{
	uint16_t pat = alcm_load16(src + 2 * k);
	int64_t q = 0;
	double x = 0, err = 0;
	int kind = classify(dtype, src, k, s, o, inv, b, prune_below, &q, &x, &err);
	uint32_t code = kind == Q_SYMBOL ? zigzag(q) : kind == Q_PRUNED ? MEMO_PRUNED : MEMO_EXACT;
	if (kind == Q_SYMBOL) {
		uint8_t r[8]; /* 8: the copies for the wider dtypes compile, never run */
		alcm_store_float(dtype, r, 0, qvalue(q, s, o));
		m->rec[pat] = alcm_load16(r);
	}
	/* The statistic each occurrence adds: its error; the value itself for a pruned one;
	 * none (NaN marks "no signal") for specials. */
	m->err[pat] = kind == Q_SYMBOL ? err : kind == Q_PRUNED ? fabs(x) : kind == Q_MISS ? -1 : NAN;
	m->code[pat] = code;
	return code;
}

/* Adds a channel's counts to the sums, in pattern order, and clears the memo. */
ALCM_ALWAYS_INLINE void memo_sum(const int dtype, memo *m, qsum *sum)
{
	for (uint32_t p = 0; p < 65536; p++) {
		if (m->code[p] == MEMO_UNSEEN)
			continue;
		double n = (double)m->count[p], e = m->err[p];
		uint8_t pb[8] = {(uint8_t)p, (uint8_t)(p >> 8), 0, 0, 0, 0, 0, 0};
		if (!isnan(e)) {
			double x = alcm_load_float(dtype, pb, 0);
			sum->sig += n * x * x;
			if (e >= 0) {
				sum->noise += n * e * e;
				sum->maxe = e > sum->maxe ? e : sum->maxe;
			}
		}
		if (m->code[p] == MEMO_PRUNED)
			sum->pruned += m->count[p];
	}
	memset(m->code, 0xff, sizeof(m->code));
	memset(m->count, 0, sizeof(m->count));
}

/* The chunk coder, one copy per float dtype (ALCM_FLOAT_DISPATCH). src holds the chunk's
 * values (element first at src[0]); recon is the whole tensor's. */
ALCM_ALWAYS_INLINE int quant_encode_t(const int dtype, alcm_coder *c, alcm_buf *data,
                                      alcm_buf *mask, const alcm_qparams *qp,
                                      const uint8_t *src, uint64_t first, uint64_t elems,
                                      alcm_qstats *stt, uint8_t *recon)
{
	const alcm_allocator *a = data->a;
	size_t w = alcm_dtype_size(dtype);
	int st = ALCM_OK;
	uint32_t *sym = alcm_coder_scratch(c, ALCM_SCRATCH_SYM, (size_t)elems * sizeof(uint32_t));
	uint8_t *bits = qp->prune_below > 0 ? alcm_mem_calloc(a, 1, (size_t)(elems / 8 + 1)) : NULL;
	alcm_buf esc = {NULL, 0, 0, a, 0};
	alcm_buf escval = {NULL, 0, 0, a, 0};
	memo *m = NULL;
	int h16_run = w == 2 && !bits && !alcm_quant_scalar_only && alcm_cpu_avx2_f16c();
	if (w == 2 && !h16_run && (qp->nsteps == 1 ? elems : qp->inner) >= MEMO_MIN_ELEMS) {
		m = alcm_mem_alloc(a, sizeof(*m));
		if (m) {
			memset(m->code, 0xff, sizeof(m->code));
			memset(m->count, 0, sizeof(m->count));
		}
	}
	if (!sym || (qp->prune_below > 0 && !bits)) {
		st = ALCM_E_NOMEM;
		goto out;
	}
	uint64_t nsym = 0, nesc = 0, last = 0;
	qsum sum = {0, 0, 0, 0};
	double pb = bits ? qp->prune_below : 0;
	uint64_t i = 0;
	while (i < elems && !st) {
		uint64_t ch, seg_end = alcm_channel_run(qp, first, i, elems, &ch);
		double s = qp->step[ch], o = qp->offset;
		double inv = s > 0 ? 1.0 / s : 0.0;
		double b = qp->bound_c ? qp->bound_c[ch] : INFINITY;
		memo *mm = m && seg_end - i >= MEMO_MIN_ELEMS ? m : NULL;
		/* Float16 and bfloat16 channels the memo takes are not run: its sums are in the
		 * patterns' order. */
		int fast = (dtype == ALCM_DTYPE_F32 || (w == 2 && !mm)) && !bits && s > 0;
		for (; i < seg_end; i++) {
			if (fast) {
				uint8_t *rp = recon ? recon + w * (first + i) : NULL;
				uint64_t n = w == 4 ? alcm_quant_run_f32(src + 4 * i, seg_end - i, s, o, inv, b,
				                                         sym + nsym, rp, &sum.sig, &sum.noise,
				                                         &sum.maxe)
				                    : alcm_quant_run_h16(dtype, src + 2 * i, seg_end - i, s, o,
				                                         inv, b, sym + nsym, rp, &sum.sig,
				                                         &sum.noise, &sum.maxe);
				i += n;
				nsym += n;
				if (i == seg_end)
					break;
			}
			uint64_t k = first + i;
			int64_t q = 0;
			double x = 0, err = 0;
			int kind;
			if (mm) {
				uint16_t pat = alcm_load16(src + 2 * i);
				uint32_t code = mm->code[pat];
				if (code == MEMO_UNSEEN)
					code = memo_fill(dtype, mm, src, i, s, o, inv, b, pb);
				mm->count[pat]++;
				if (code < MEMO_EXACT) {
					sym[nsym++] = code;
					if (recon)
						alcm_store16(recon + 2 * k, mm->rec[pat]);
					continue;
				}
				kind = code == MEMO_PRUNED ? Q_PRUNED : Q_MISS;
			} else {
				kind = classify(dtype, src, i, s, o, inv, b, pb, &q, &x, &err);
				if (kind != Q_SPECIAL)
					sum.sig += x * x;
			}
			if (kind == Q_PRUNED) {
				bits[i >> 3] |= (uint8_t)(1u << (i & 7));
				if (recon)
					alcm_store_float(dtype, recon, k, 0.0);
				if (!mm) {
					sum.pruned++;
					sum.noise += x * x;
					sum.maxe = fabs(x) > sum.maxe ? fabs(x) : sum.maxe;
				}
				continue;
			}
			if (kind != Q_SYMBOL) {
				/* Special, outlier or bound miss: store the value exactly. */
				st = alcm_buf_put_varint(&esc, i - last - (nesc ? 1 : 0));
				if (!st)
					st = alcm_buf_put(&escval, src + i * w, w);
				if (st)
					break;
				last = i;
				nesc++;
				sym[nsym++] = 0;
				if (recon)
					memcpy(recon + k * w, src + i * w, w);
				continue;
			}
			sum.maxe = err > sum.maxe ? err : sum.maxe;
			sum.noise += err * err;
			sym[nsym++] = zigzag(q);
			if (recon)
				alcm_store_float(dtype, recon, k, qvalue(q, s, o));
		}
		if (mm)
			memo_sum(dtype, mm, &sum);
	}
	if (!st) {
		/* Escape block: count, gaps, then the raw values. */
		alcm_buf blk = {NULL, 0, 0, a, 0};
		st = alcm_buf_put_varint(&blk, nesc);
		if (!st)
			st = alcm_buf_put(&blk, esc.p, esc.len);
		if (!st)
			st = alcm_buf_put(&blk, escval.p, escval.len);
		if (!st)
			st = put_symbols(c, data, qp, sym, nsym, bits, first, elems, stt);
		if (!st)
			st = put_escapes(c, data, &blk, qp->level);
		if (!st && bits)
			st = alcm_stream_put(c, mask, bits, (size_t)(elems / 8 + 1), qp->level);
		alcm_buf_free(&blk);
	}
	stt->pruned += sum.pruned;
	stt->escapes += nesc;
	if (sum.maxe > stt->max_err)
		stt->max_err = sum.maxe;
	stt->sig += sum.sig;
	stt->noise += sum.noise;
out:
	alcm_buf_free(&escval);
	alcm_buf_free(&esc);
	alcm_mem_free(a, m);
	alcm_mem_free(a, bits);
	return st;
}

int alcm_quant_encode(alcm_coder *c, alcm_buf *data, alcm_buf *mask, const alcm_qparams *qp,
                      const uint8_t *src, uint64_t first, uint64_t elems, alcm_qstats *stt,
                      uint8_t *recon)
{
	size_t w = alcm_dtype_size(qp->dtype);
	return ALCM_FLOAT_DISPATCH(qp->dtype, quant_encode_t, c, data, mask, qp,
	                           src ? src + first * w : NULL, first, elems, stt, recon);
}

int alcm_quant_encode_piece(alcm_coder *c, alcm_buf *data, alcm_buf *mask,
                            const alcm_qparams *qp, const uint8_t *piece, uint64_t first,
                            uint64_t elems, alcm_qstats *stt)
{
	return ALCM_FLOAT_DISPATCH(qp->dtype, quant_encode_t, c, data, mask, qp, piece, first, elems,
	                           stt, NULL);
}

/* ---- chunk decoder ---------------------------------------------------------------------- */

/* Symbols to values, one copy per float dtype (ALCM_FLOAT_DISPATCH). */
ALCM_ALWAYS_INLINE int dequant_t(const int dtype, const alcm_qparams *qp, uint8_t *dst,
                                 uint64_t first, uint64_t elems, const uint8_t *bits,
                                 const uint8_t *planes, unsigned width, uint64_t nsym)
{
	uint64_t si = 0, i = 0;
	while (i < elems) {
		uint64_t ch, seg_end = alcm_channel_run(qp, first, i, elems, &ch);
		double s = qp->step[ch];
		for (; i < seg_end; i++) {
			if (bits && ((bits[i >> 3] >> (i & 7)) & 1)) {
				alcm_store_float(dtype, dst, first + i, 0.0);
				continue;
			}
			uint32_t z = planes[si];
			if (width > 1)
				z |= (uint32_t)planes[nsym + si] << 8;
			if (width > 2)
				z |= ((uint32_t)planes[2 * nsym + si] << 16) |
				     ((uint32_t)planes[3 * nsym + si] << 24);
			si++;
			if (z >= (uint32_t)(2 * QMAX))
				return ALCM_E_CORRUPT;
			double r = (double)unzigzag(z) * s;
			alcm_store_float(dtype, dst, first + i, r);
		}
	}
	return ALCM_OK;
}

static unsigned varint_len(uint64_t v)
{
	unsigned n = 1;
	while (v >>= 7)
		n++;
	return n;
}

/*
 * The head of the escape block (spec 6.5.4), read as a stream before any symbol is decoded:
 * its declared length is checked against what the chunk can hold, then the count and the gaps
 * (positions go into `pos`, a bitmap of elems bits); the values are left in `sr` for
 * escapes_patch(). Nothing the size of the block is allocated (a block may legitimately
 * exceed the chunk's output when every value is escaped), and a forged block is refused
 * before the chunk's symbols are decoded.
 */
static int escapes_open(alcm_coder *c, alcm_cursor *data, size_t w, uint64_t elems,
                        uint64_t nsym, const uint8_t *bits, uint8_t *pos, alcm_sreader *sr,
                        uint64_t *count)
{
	uint64_t blen, nesc;
	int st;
	if ((st = alcm_cur_varint(data, &blen)))
		return st;
	/* Count, gaps (a minimal varint takes at most one byte per element it steps over), and
	 * at most nsym values: 10 + elems + nsym * w bytes at most. */
	if (blen == 0 || blen > 10 + elems + nsym * w)
		return ALCM_E_CORRUPT;
	if ((st = alcm_sreader_open(sr, c, data, blen)) || (st = alcm_sreader_varint(sr, &nesc)))
		return st;
	/* Escapes are unpruned elements, each with a placeholder symbol; the gaps take between
	 * one and ten bytes each and at most one byte per element they cover. */
	uint64_t gap_bytes = blen - varint_len(nesc);
	if (nesc > nsym || gap_bytes < nesc * w || (gap_bytes -= nesc * w) < nesc ||
	    gap_bytes > elems || gap_bytes > 10 * nesc)
		return ALCM_E_CORRUPT;
	memset(pos, 0, (size_t)(elems / 8 + 1));
	uint64_t p = 0;
	for (uint64_t k = 0; k < nesc; k++) {
		uint64_t gap;
		if ((st = alcm_sreader_varint(sr, &gap)))
			return st;
		if (k == 0 ? gap >= elems : gap >= elems - p - 1)
			return ALCM_E_CORRUPT;
		p = k == 0 ? gap : p + 1 + gap;
		if (bits && ((bits[p >> 3] >> (p & 7)) & 1))
			return ALCM_E_CORRUPT; /* a pruned element has no symbol to replace */
		pos[p >> 3] |= (uint8_t)(1u << (p & 7));
	}
	/* The values must fill the rest of the block exactly. */
	*count = nesc;
	return sr->left == nesc * w ? ALCM_OK : ALCM_E_CORRUPT;
}

/* The largest finite value of a float dtype: a coding-17 offset beyond it would make every
 * value of the chunk infinite (spec 6.5.11 refuses it). */
static double dtype_max(int dtype)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: return 65504.0;
	case ALCM_DTYPE_BF16: return 0x1.fep127;
	case ALCM_DTYPE_F32: return 0x1.fffffep127;
	default: return DBL_MAX;
	}
}

/* The escapes' exact values over their placeholders, in position order. */
static int escapes_patch(alcm_sreader *sr, size_t w, uint8_t *dst, uint64_t first,
                         uint64_t nesc, const uint8_t *pos)
{
	for (uint64_t i = 0, k = 0; k < nesc; i++) {
		if (!((pos[i >> 3] >> (i & 7)) & 1))
			continue;
		int st = alcm_sreader_read(sr, dst + (first + i) * w, w);
		if (st)
			return st;
		k++;
	}
	return alcm_sreader_end(sr);
}

int alcm_quant_decode(alcm_coder *c, alcm_cursor *data, alcm_cursor *mask,
                      const alcm_qparams *qp, uint8_t *dst, uint64_t first, uint64_t elems,
                      uint8_t *scratch, size_t scratch_len)
{
	size_t w = alcm_dtype_size(qp->dtype);
	size_t mbytes = (size_t)(elems / 8 + 1);
	uint8_t *bits = NULL, *pos = scratch + mbytes, *planes = scratch + 2 * mbytes;
	int st;
	if (scratch_len < alcm_quant_scratch(elems))
		return ALCM_E_ARG;
	uint64_t expect = elems;
	if (mask) {
		bits = scratch;
		uint64_t pruned;
		if ((st = alcm_bitmap_get(c, mask, bits, elems, &pruned)))
			return st;
		expect -= pruned;
	}
	uint8_t width;
	uint64_t nsym, nesc;
	if ((st = alcm_cur_u8(data, &width)) || (st = alcm_cur_varint(data, &nsym)))
		return st;
	if (nsym != expect)
		return ALCM_E_CORRUPT;
	alcm_sreader sr;
	alcm_qparams qo;
	unsigned lanes = ALCM_RANS_LANES;
	int has_lanes = width == ALCM_QCODING_RANS_LANES || width == ALCM_QCODING_RANS_OFFSET_LANES;
	if (has_lanes)
		width -= ALCM_QCODING_RANS_LANES - ALCM_QCODING_RANS;
	if (width == ALCM_QCODING_RANS_OFFSET) {
		/* Coding 16 with every value moved by an offset (spec 6.5.11). */
		uint64_t u;
		if ((st = alcm_cur_u64(data, &u)))
			return st;
		qo = *qp;
		memcpy(&qo.offset, &u, 8);
		if (!isfinite(qo.offset) || qo.offset == 0 ||
		    fabs(qo.offset) > dtype_max(qp->dtype))
			return ALCM_E_CORRUPT;
		qp = &qo;
		width = ALCM_QCODING_RANS;
	}
	if (has_lanes) {
		/* 1..31 states: 32 is coding 16 or 17 (spec 6.5.14). */
		uint8_t l;
		if ((st = alcm_cur_u8(data, &l)))
			return st;
		if (l < 1 || l >= ALCM_RANS_LANES)
			return ALCM_E_CORRUPT;
		lanes = l;
	}
	if (width == ALCM_QCODING_RANS) {
		/* The modelled coding's lengths are all inside it: the values first (bounded by
		 * the chunk's elements), then the escape block that follows them. */
		if ((st = alcm_symcode_decode_values(c, data, qp, dst, first, elems, bits, nsym,
		                                     planes, scratch_len - 2 * mbytes, lanes)) ||
		    (st = escapes_open(c, data, w, elems, nsym, bits, pos, &sr, &nesc)))
			return st;
		return escapes_patch(&sr, w, dst, first, nesc, pos);
	}
	if (width != 1 && width != 2 && width != 4)
		return ALCM_E_UNSUPPORTED; /* a symbol coding of a later version (spec 6.5.4) */
	/* The symbol streams' headers, then the escape block's head, then the symbols. */
	alcm_cursor syms = *data;
	for (unsigned k = 0; k < width; k++)
		if ((st = alcm_stream_skip(data, (size_t)nsym)))
			return st;
	if ((st = escapes_open(c, data, w, elems, nsym, bits, pos, &sr, &nesc)))
		return st;
	for (unsigned k = 0; k < width; k++)
		if ((st = alcm_stream_get(c, &syms, planes + k * nsym, (size_t)nsym)))
			return st;
	if ((st = ALCM_FLOAT_DISPATCH(qp->dtype, dequant_t, qp, dst, first, elems, bits, planes,
	                              width, nsym)))
		return st;
	return escapes_patch(&sr, w, dst, first, nesc, pos);
}

/* ---- lattices (spec 6.5.11) -------------------------------------------------------------- */

/* Bits of an order-0 code of the counts cnt[0..n). */
static double counts_bits(const uint64_t *cnt, unsigned n)
{
	double tot = 0, b = 0;
	for (unsigned i = 0; i < n; i++)
		tot += (double)cnt[i];
	for (unsigned i = 0; i < n; i++)
		if (cnt[i])
			b -= (double)cnt[i] * log2((double)cnt[i] / tot);
	return b;
}

/* Whether every value u[0..n) is within b of its reconstruction at step s and offset o, in
 * the float32 arithmetic the decoder uses. */
static int lattice_holds(const double *u, unsigned n, double s, double o, double b)
{
	for (unsigned i = 0; i < n; i++) {
		double q = alcm_round_small((u[i] - o) / s);
		double e = fabs(u[i] - alcm_quant_value_at(ALCM_DTYPE_F32, (int64_t)q, s, o));
		for (int d = -1; d <= 1 && e > b; d += 2)
			e = fmin(e, fabs(u[i] - alcm_quant_value_at(ALCM_DTYPE_F32, (int64_t)q + d, s, o)));
		if (!(e <= b))
			return 0;
	}
	return 1;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

#define LAT_MAX 256
#define LAT_WIDTHS 16
#define LAT_HS ALCM_LAT_SLOTS
#define LAT_EMPTY ALCM_LAT_EMPTY /* a NaN: never a key */

ALCM_ALWAYS_INLINE uint32_t lat_hash(uint32_t v)
{
	return (v * 0x9e3779b1u) >> 20;
}

/* Counts value v (bit pattern) in the table key/cnt unless it is special; @return 0 when it
 * is a new value past the LAT_MAX-th. Specials are escaped whatever the step: infinities and
 * NaNs, subnormals, -0. One test of the three (| not ||): zeros among the values made a
 * branch on the exponent alone mispredict. */
ALCM_ALWAYS_INLINE int lat_count(uint32_t *key, uint64_t *cnt, uint32_t *used, uint32_t v)
{
	uint32_t a = v & 0x7fffffffu;
	if ((a >= 0x7f800000u) | (a - 1u < 0x7fffffu) | (v == 0x80000000u))
		return 1;
	uint32_t h = lat_hash(v);
	while (key[h] != v && key[h] != LAT_EMPTY)
		h = (h + 1) & (LAT_HS - 1);
	if (key[h] == v) {
		cnt[h]++;
		return 1;
	}
	if (++*used > LAT_MAX)
		return 0;
	key[h] = v;
	cnt[h] = 1;
	return 1;
}

/* The distinct finite values of src[0..n) (at most LAT_MAX) and their counts, by bit pattern
 * (key/cnt, open addressing from lat_hash()). @return 0 past LAT_MAX values. */
static int lat_scan_portable(const uint8_t *src, uint64_t n, uint32_t *key, uint64_t *cnt,
                             uint32_t *used)
{
	for (uint64_t i = 0; i < n; i++)
		if (!lat_count(key, cnt, used, alcm_load32(src + 4 * i)))
			return 0;
	return 1;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* lat_scan_portable() eight values at a time: where none of the eight is special and all
 * are at their home slot already (their keys, loaded one by one), only their counts move; any
 * other group goes through lat_count() one value at a time, in order. The same table and
 * counts. */
__attribute__((target("avx2"))) static int lat_scan_avx2(const uint8_t *src, uint64_t n,
                                                          uint32_t *key, uint64_t *cnt,
                                                          uint32_t *used)
{
	const __m256i absm = _mm256_set1_epi32(0x7fffffff), one = _mm256_set1_epi32(1);
	const __m256i infm1 = _mm256_set1_epi32(0x7f800000 - 1);
	const __m256i sub = _mm256_set1_epi32(0x7fffff - 1), mz = _mm256_set1_epi32(INT32_MIN);
	const __m256i flip = _mm256_set1_epi32(INT32_MIN), mul = _mm256_set1_epi32((int)0x9e3779b1u);
	uint64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * i));
		__m256i a = _mm256_and_si256(v, absm);
		/* a >= 0x7f800000 (a is at most 2^31 - 1: signed compare); a - 1 < 0x7fffff
		 * unsigned (flip the sign bits for a signed compare); v == -0. */
		__m256i sp = _mm256_cmpgt_epi32(a, infm1);
		sp = _mm256_or_si256(sp, _mm256_cmpgt_epi32(_mm256_xor_si256(sub, flip),
		                                            _mm256_xor_si256(_mm256_sub_epi32(a, one), flip)));
		sp = _mm256_or_si256(sp, _mm256_cmpeq_epi32(v, mz));
		__m256i h = _mm256_srli_epi32(_mm256_mullo_epi32(v, mul), 20);
		/* Their keys by scalar loads: a gather took longer. */
		uint32_t hs[8];
		_mm256_storeu_si256((__m256i *)(void *)hs, h);
		__m256i k = _mm256_setr_epi32((int)key[hs[0]], (int)key[hs[1]], (int)key[hs[2]],
		                              (int)key[hs[3]], (int)key[hs[4]], (int)key[hs[5]],
		                              (int)key[hs[6]], (int)key[hs[7]]);
		__m256i miss = _mm256_or_si256(sp, _mm256_xor_si256(_mm256_cmpeq_epi32(k, v),
		                                                    _mm256_set1_epi32(-1)));
		if (!_mm256_testz_si256(miss, miss)) {
			for (unsigned u = 0; u < 8; u++)
				if (!lat_count(key, cnt, used, alcm_load32(src + 4 * (i + u))))
					return 0;
			continue;
		}
		for (unsigned u = 0; u < 8; u++)
			cnt[hs[u]]++;
	}
	return lat_scan_portable(src + 4 * i, n - i, key, cnt, used);
}
#define HAVE_LAT_AVX2 1
#endif

int alcm_quant_lattice_scan(const uint8_t *src, uint64_t n, uint32_t *key, uint64_t *cnt,
                            uint32_t *used)
{
#ifdef HAVE_LAT_AVX2
	if (!alcm_quant_scalar_only && __builtin_cpu_supports("avx2"))
		return lat_scan_avx2(src, n, key, cnt, used);
#endif
	return lat_scan_portable(src, n, key, cnt, used);
}

int alcm_quant_lattice(const uint8_t *src, uint64_t n, double b, double *step, double *offset)
{
	/* The distinct finite values (at most LAT_MAX) and their counts, by bit pattern. */
	enum { HS = LAT_HS };
	uint32_t key[HS], used = 0;
	uint64_t cnt[HS];
	if (!(b > 0) || !isfinite(b) || n < 2 * LAT_MAX)
		return 0; /* before clearing the table: 16 KB for a tensor of a few values */
	memset(key, 0xff, sizeof(key)); /* LAT_EMPTY */
	if (!alcm_quant_lattice_scan(src, n, key, cnt, &used))
		return 0;
	if (used < 3)
		return 0;
	/* Sorted values with their counts. */
	double u[LAT_MAX], pair[LAT_MAX][2];
	unsigned k = 0;
	for (unsigned h = 0; h < HS; h++)
		if (key[h] != 0xffffffffu) {
			float f;
			memcpy(&f, &key[h], 4);
			pair[k][0] = f;
			pair[k++][1] = (double)cnt[h];
		}
	qsort(pair, k, sizeof(pair[0]), cmp_double);
	double d = INFINITY;
	for (unsigned i = 0; i < k; i++) {
		u[i] = pair[i][0];
		if (i && u[i] - u[i - 1] < d)
			d = u[i] - u[i - 1];
	}
	/* The lattice o + j d through them: indices from the smallest gap, spacing and origin by
	 * least squares, every value within a thousandth of a spacing of its point. */
	double jm = 0, um = 0, sjj = 0, sju = 0;
	int64_t j[LAT_MAX];
	for (unsigned i = 0; i < k; i++) {
		double r = (u[i] - u[0]) / d;
		if (!(r < 1e6))
			return 0;
		j[i] = (int64_t)alcm_round_small(r);
		jm += (double)j[i];
		um += u[i];
	}
	jm /= k;
	um /= k;
	for (unsigned i = 0; i < k; i++) {
		sjj += ((double)j[i] - jm) * ((double)j[i] - jm);
		sju += ((double)j[i] - jm) * (u[i] - um);
	}
	d = sju / sjj;
	double o = um - d * jm;
	if (!(d > 0) || !isfinite(o))
		return 0;
	for (unsigned i = 0; i < k; i++)
		if (!(fabs(u[i] - (o + (double)j[i] * d)) <= 1e-3 * d))
			return 0;
	/* The plain grid's bits, to beat. */
	double best = INFINITY, bs = 0, bo = 0;
	{
		uint64_t c[LAT_MAX];
		unsigned nc = 0;
		double prev = NAN;
		for (unsigned i = 0; i < k; i++) {
			double q = alcm_round_small(u[i] / (2 * b));
			if (q != prev)
				c[nc++] = 0;
			c[nc - 1] += (uint64_t)pair[i][1];
			prev = q;
		}
		best = counts_bits(c, nc);
	}
	if (!(best > 0))
		return 0; /* one cell at step 2b already: no lattice codes in fewer bits */
	/* m lattice points a cell: the widest whose reconstructions hold the bound, each of its
	 * m alignments tried; at most 2^20 (2b / d may pass any integer's range), and the
	 * LAT_WIDTHS widest only: narrower cells rarely beat the plain grid where wider ones did
	 * not, and walking all of them took 35 s on 32 KB of two far clusters. */
	double mtop = floor(2 * b / d) + 1;
	int64_t m0 = mtop < (double)(1 << 20) ? (int64_t)mtop : 1 << 20;
	for (int64_t m = m0; m >= 2 && m > m0 - LAT_WIDTHS; m--) {
		double s = (double)m * d, found = INFINITY;
		for (int64_t a = 0; a < m && a < 64; a++) {
			uint64_t c[LAT_MAX];
			unsigned nc = 0;
			int64_t prev = INT64_MIN;
			for (unsigned i = 0; i < k; i++) {
				int64_t cell = (j[i] - a) >= 0 ? (j[i] - a) / m : -((a - j[i] + m - 1) / m);
				if (cell != prev)
					c[nc++] = 0;
				c[nc - 1] += (uint64_t)pair[i][1];
				prev = cell;
			}
			double bits = counts_bits(c, nc);
			if (!(bits < best))
				continue;
			/* Cell centres c s + off; off brought into [-s/2, s/2] so that symbol 0 is the
			 * cell nearest zero. */
			double off = o + d * ((double)a + (double)(m - 1) / 2);
			off -= s * alcm_round_small(off / s);
			if (!lattice_holds(u, k, s, off, b))
				continue;
			best = bits;
			bs = s;
			bo = off;
			found = bits;
		}
		if (found < INFINITY)
			break;
	}
	if (!(bs > 0) && mtop == 1) {
		/* A lattice coarser than the grid: the grid's cells hold one point each, as the
		 * lattice's own would, but the grid has more cells between the extremes, empty ones
		 * that a palette or the token tables pay for (a byte or 1.5 bits each). A step of one
		 * spacing leaves only the lattice's own, for the 8 bytes of the offset: on the
		 * faceapi weights (tools/bench/entropy.sh) its 26 such tensors take 3.8 KB fewer
		 * (0.3%). Taking it only where estimates of both tables said it pays did worse. */
		double off = o - d * alcm_round_small(o / d);
		if (off != 0 && lattice_holds(u, k, d, off, b)) {
			bs = d;
			bo = off;
		}
	}
	if (!(bs > 0))
		return 0;
	*step = bs;
	*offset = bo;
	return 1;
}
