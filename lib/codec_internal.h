/*
 * Internals of the codec layer: entropy backends, coded streams, chunk coders, the worker
 * pool. Layouts are those of spec/alcm-format.md chapter 6.
 */
#ifndef ALCM_CODEC_INTERNAL_H
#define ALCM_CODEC_INTERNAL_H

#include "format_internal.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#define ALCM_NONE 0xffffffffu

/* Defined in format/reader.c: the limits and open flags a reader was given. */
void alcm_reader_limits(const alcm_reader *r, alcm_limits *lim);
unsigned alcm_reader_open_flags(const alcm_reader *r);
/* Header bytes 0..31 (signature, versions, flags, header size, alignment, reserved) of an
 * open archive, and of the archive a writer will commit (spec 6.10, algorithm 2). */
void alcm_reader_fixed_header(const alcm_reader *r, uint8_t out[32]);
void alcm_writer_fixed_header(const alcm_writer *w, uint8_t out[32]);
/* 1 for an append writer (whose header, and so minor version, is fixed). */
int alcm_writer_appending(const alcm_writer *w);

/* alcm_writer_sign() with a given algorithm (1 or 2; spec 6.10), for tests and vectors. */
int alcm_sign_with(alcm_writer *w, const uint8_t sk[ALCM_SECRET_KEY_BYTES], unsigned algorithm);

/* ---- entropy backends ---------------------------------------------------------------- */

/* Backend ids stored in every coded stream (spec 6.2). */
enum alcm_backend_id { ALCM_BACKEND_RAW = 0, ALCM_BACKEND_ZSTD = 1 };

/* Per-thread state of every backend (zstd contexts). */
typedef struct alcm_coder alcm_coder;

typedef struct alcm_backend {
	uint8_t id;
	const char *name;
	/* Worst-case coded size of n bytes. */
	size_t (*bound)(size_t n);
	/* Codes src into dst (capacity cap). @return ALCM_OK or ALCM_E_ARG when cap is short. */
	int (*encode)(alcm_coder *c, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
	              int level, size_t *out_len);
	/* Decodes exactly `exact` bytes; any other size is ALCM_E_CORRUPT. */
	int (*decode)(alcm_coder *c, uint8_t *dst, size_t exact, const uint8_t *src, size_t n);
} alcm_backend;

const alcm_backend *alcm_backend_get(unsigned id);

alcm_coder *alcm_coder_new(const alcm_allocator *a, const alcm_limits *lim);
void alcm_coder_free(alcm_coder *c);
/* zstd contexts made (not taken idle from the cache of alloc_internal.h) since the process
 * started, with the default allocator; for tests. */
uint64_t alcm_zstd_contexts_made(void);
const alcm_allocator *alcm_coder_alloc(const alcm_coder *c);
/* Marks c as an encoder's coder: its work arrays go back to the encoders' block cache
 * (alloc_internal.h), kept between encoders. Call before the first use. */
void alcm_coder_set_encoding(alcm_coder *c);
/* ALCM_BLOCK_ENC after alcm_coder_set_encoding, else ALCM_BLOCK_DEC. */
int alcm_coder_block_kind(const alcm_coder *c);
/* A buffer of at least size bytes that the coder keeps between calls (one per slot, grown
 * when needed, freed with the coder): chunk-sized work arrays of the encoders, allocated
 * once per thread instead of once per chunk. NULL when out of memory. */
#define ALCM_CODER_SCRATCH 6
enum { ALCM_SCRATCH_SYM, ALCM_SCRATCH_TOK, ALCM_SCRATCH_CLS, ALCM_SCRATCH_RANS,
       ALCM_SCRATCH_PLANES /* lossless planes */, ALCM_SCRATCH_QPLANE /* quant planes */ };
void *alcm_coder_scratch(alcm_coder *c, unsigned slot, size_t size);

/* ---- growable byte buffer -------------------------------------------------------------- */

typedef struct alcm_buf {
	uint8_t *p;
	size_t len, cap;
	const alcm_allocator *a;
	/* 0: storage by the allocator's realloc; else 1 + a block cache's kind (alloc_internal.h):
	 * storage taken from that cache as it grows and given back to it when freed, so that the
	 * next coder's buffers of that size fault no fresh pages in. */
	int cache;
} alcm_buf;

int alcm_buf_reserve(alcm_buf *b, size_t extra);
int alcm_buf_put(alcm_buf *b, const void *p, size_t n);
int alcm_buf_put_varint(alcm_buf *b, uint64_t v);
void alcm_buf_free(alcm_buf *b);

/* TDRZ, the compressed tensor directory (spec 6.3.1): the u64 length of the directory, then
 * one zstd frame of it. Pack writes head then body as one frame; unpack refuses a length over
 * `limit` (ALCM_E_LIMIT), any damaged, short, long or trailing frame (ALCM_E_CORRUPT, with
 * *why saying which), and grows its buffer only as the frame yields bytes. */
#define ALCM_TDRZ_LEVEL 6
int alcm_tdrz_pack(const alcm_allocator *a, alcm_buf *out, const uint8_t *head, size_t hn,
                   const uint8_t *body, size_t bn);
int alcm_tdrz_unpack(const alcm_allocator *a, const uint8_t *src, size_t n, uint64_t limit,
                     uint8_t **out, size_t *outlen, const char **why);

/* A bounds-checked cursor over untrusted bytes. */
typedef struct alcm_cursor {
	const uint8_t *p;
	size_t len, pos;
} alcm_cursor;

int alcm_cur_varint(alcm_cursor *c, uint64_t *v);
int alcm_cur_bytes(alcm_cursor *c, size_t n, const uint8_t **p);
int alcm_cur_u8(alcm_cursor *c, uint8_t *v);
int alcm_cur_u32(alcm_cursor *c, uint32_t *v);
int alcm_cur_u64(alcm_cursor *c, uint64_t *v);
int alcm_cur_f64(alcm_cursor *c, double *v);

/*
 * A coded stream (spec 6.2): u8 backend, varint raw length, varint coded length, bytes.
 * The encoder tries zstd and keeps raw bytes when zstd does not shrink them.
 */
int alcm_stream_put(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n, int level);
/* Same, at zstd level 1 or `level`, whichever codes the stream (a 64 KiB sample of it from
 * the middle, when longer) smaller: level 1 often wins on literal-heavy symbol planes. */
int alcm_stream_put_best(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n, int level);
/* Same, storing raw without trying zstd when try_zstd is 0, and with ALCM_ZSTD_LITERALS a
 * zstd frame of literals only (Huffman-coded, no match search) when n is at most
 * ALCM_ZSTD_LITERALS_MAX: on short byte planes of floats, whose matches save next to
 * nothing, it takes less than half the instructions of a level-1 frame (51K against 122K
 * for a 2 KiB exponent plane). Readers see an ordinary zstd frame. @param zstd_used
 * receives 1 if zstd was used (may be NULL). */
#define ALCM_ZSTD_LITERALS 2
#define ALCM_ZSTD_LITERALS_MAX ((size_t)16 << 10)
int alcm_stream_put2(alcm_coder *c, alcm_buf *out, const uint8_t *src, size_t n, int level,
                     int try_zstd, int *zstd_used);
/* Decodes a bitmap stream of n elements (floor(n / 8) + 1 bytes, bit i % 8 of byte i / 8,
 * bits past n zero, else corrupt) into bits, and counts its set bits into *ones. */
int alcm_bitmap_get(alcm_coder *c, alcm_cursor *cur, uint8_t *bits, uint64_t n, uint64_t *ones);
/* Decodes a stream whose raw length must be `exact` into dst. */
int alcm_stream_get(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, size_t exact);
/* Same, but a raw stream is not copied: *out points into the cursor's bytes, else to dst. */
int alcm_stream_view(alcm_coder *c, alcm_cursor *cur, uint8_t *dst, size_t exact,
                     const uint8_t **out);

/* Steps over a stream whose raw length must be `exact`, checking its header only. */
int alcm_stream_skip(alcm_cursor *cur, size_t exact);

/*
 * A coded stream read front to back in small pieces, for blocks whose decoded size can reach
 * several times the chunk's (escape blocks): memory is the zstd window (at most
 * 2^zstd_window_log_max, checked against the frame header) and ALCM_SREADER_BUF bytes of the
 * coder, not the stream's length. Raw streams are read in place.
 */
#define ALCM_SREADER_BUF ((size_t)1 << 16)
typedef struct alcm_sreader {
	alcm_coder *c;
	const uint8_t *src, *buf;
	size_t srclen, srcpos, bufpos, buflen;
	uint64_t left;
	int zstd, done;
} alcm_sreader;
/* Reads the stream's header at cur (its raw length must be `exact`) and starts decoding. */
int alcm_sreader_open(alcm_sreader *s, alcm_coder *c, alcm_cursor *cur, uint64_t exact);
/* The next n bytes; ALCM_E_CORRUPT past the end. */
int alcm_sreader_read(alcm_sreader *s, uint8_t *dst, size_t n);
int alcm_sreader_varint(alcm_sreader *s, uint64_t *v);
/* Every byte read and the frame complete, else ALCM_E_CORRUPT. */
int alcm_sreader_end(alcm_sreader *s);

/* ---- predictor --------------------------------------------------------------------------- */

/* alcm_tensor_features() at `nstep` (1..ALCM_BUDGET_STEPS) increasing steps in one pair of
 * passes over the sample: feat[k] equals alcm_tensor_features(t, step[k]) bit for bit. */
int alcm_tensor_features_steps(const alcm_tensor *t, const double *step, int nstep,
                               float (*feat)[ALCM_PRED_FEATURES]);
/* The same, also giving the tensor's escapes (alcm_tensor_escapes(); esc may be NULL). */
int alcm_tensor_features_esc(const alcm_tensor *t, const double *step, int nstep,
                             float (*feat)[ALCM_PRED_FEATURES], alcm_pred_escapes *esc);

/* alcm_predict_bits_escapes() of each of feat[0..n) into out[], bit for bit, the network
 * run on several steps at once (the version-1 predictor and bad arguments give 64). */
void alcm_predict_bits_steps(const alcm_predictor *p, const float (*feat)[ALCM_PRED_FEATURES],
                             int n, const alcm_pred_escapes *esc, double *out);
/* Tests: alcm_hash_ahead_wait = 1 makes a tensor decoded in pieces wait for the hasher to
 * finish the chunks it was given (lib/archive.c) before taking them; the hasher stops once it
 * has hashed alcm_hash_ahead_limit bytes (0: no limit; it stops at a multiple of 256 KiB);
 * alcm_hash_ahead_taken counts the bytes taken so. */
extern int alcm_hash_ahead_wait;
extern uint64_t alcm_hash_ahead_limit, alcm_hash_ahead_taken;
/* Tests: alcm_relay_off = 1 keeps lists decoded in pieces on the chunk waves (and the hasher)
 * instead of the relay (lib/archive.c); alcm_relay_taken counts the tensors relays hand on;
 * alcm_relay_min (default 12 KiB) is the least data section a relay takes (the fuzz harness
 * lowers it so that its small inputs reach the relay). */
extern int alcm_relay_off;
extern uint64_t alcm_relay_taken, alcm_relay_min;
/* Tests: read-aheads of a next tensor's sections planned by whole decodes (lib/archive.c,
 * ahead_take). */
extern uint64_t alcm_ahead_planned;

/* Tests set it to 1 to run alcm_predict_bits_steps()'s portable lanes where the AVX2 ones
 * would run (x86-64). */
extern int alcm_predict_scalar_only;
/* Tests set it to 0 to run a profile's predictions four at a time (AVX2) where eight at a
 * time (AVX-512) would run: the same predictions. */
extern int alcm_predict_avx512;

/* Tests set it to 1 to run alcm_budget_profile_make()'s portable loops (the float32 sums, the
 * entropy sample's run scan) where the AVX2 ones would run (x86-64). */
extern int alcm_budget_scalar_only;
/* Tests set it to 1 to find every run of the entropy feature's sample by a search, as
 * before the scan (lib/predict.c, runs_scan). */
extern int alcm_predict_search_only;

/* The tanh of the predictor's hidden units at inference (within 4e-16 of libm's). */
double alcm_pred_tanh(double a);

/* The PRED version 1 default weights (lib/predict_default_v1.h) that format 1.0 archives
 * store: readers of 1.0 refuse any other PRED version (spec 6.7.1). */
const alcm_predictor *alcm_predictor_default_v1(void);

/* ---- scalar conversions ---------------------------------------------------------------- */

float alcm_half_to_float(uint16_t h);
uint16_t alcm_float_to_half(float f);
float alcm_bf16_to_float(uint16_t h);
uint16_t alcm_float_to_bf16(float f);

/* ---- chunk coders ---------------------------------------------------------------------- */

/* Lossless transforms: enum alcm_transform (alcm.h, spec 6.4). */

/* A lossless plan: the transform; which streams are worth giving to zstd (bit k set: stream
 * k; the others are stored raw without trying); which streams zstd codes at level 1 instead
 * of the caller's level (bit k of lmask). */
typedef struct alcm_lplan {
	unsigned transform;
	unsigned zmask;
	unsigned lmask;
	/* For the palette, chosen from a sample: the plan for a chunk of more than 256 values. */
	unsigned fb_transform, fb_zmask, fb_lmask;
} alcm_lplan;

int alcm_lossless_encode(alcm_coder *c, alcm_buf *out, int dtype, const alcm_lplan *plan,
                         const uint8_t *src, uint64_t elems, int level);
/* scratch: alcm_lossless_scratch(elems, dtype size) bytes. */
int alcm_lossless_decode(alcm_coder *c, alcm_cursor *cur, int dtype, uint8_t *dst,
                         uint64_t elems, uint8_t *scratch);
static inline uint64_t alcm_lossless_scratch(uint64_t elems, size_t w)
{
	return elems * w + elems / 8 + 1;
}
/* Transform 3 after its byte (spec 6.4): the m <= 256 palette values (w bytes each, into pal)
 * and a view of the n indices (decoded into scratch, n bytes, when coded), all checked. */
int alcm_palette_get(alcm_coder *c, alcm_cursor *cur, size_t w, uint64_t n, uint8_t *scratch,
                     uint8_t *pal, uint64_t *m, const uint8_t **ix);
/* The number of coded streams of a chunk in this transform. */
size_t alcm_lossless_streams(unsigned transform, size_t w);
/* Picks a transform for a tensor from a sample of its bytes. */
alcm_lplan alcm_lossless_choose(alcm_coder *c, alcm_buf *tmp, int dtype, const uint8_t *src,
                                uint64_t elems, int level);
/* Picks one without coding: from the distinct values, zero share and byte histograms of a
 * 1024-element sample (for small chunks, where trials cost more than the chunk); zstd at
 * level 1 for levels up to 3. */
alcm_lplan alcm_lossless_choose_fast(alcm_coder *c, int dtype, const uint8_t *src,
                                     uint64_t elems, int level);

/*
 * The most bytes a chunk of n elements of w bytes can take in its data section (LDAT for
 * lossless, QDAT otherwise) and in the MASK section, whatever it holds (spec 6.3): each
 * stream is at most its raw length plus a 21-byte header, and every length inside is bounded
 * by n. A directory declaring more is corrupt, and a reader never allocates more for a chunk.
 */
static inline uint64_t alcm_chunk_data_max(int mode, uint64_t n, size_t w)
{
	return n * (w + (mode == ALCM_MODE_LOSSLESS ? 1 : 5)) + 256;
}
static inline uint64_t alcm_chunk_mask_max(uint64_t n)
{
	return n / 8 + 64;
}

/* Parameters of a quantized tensor, shared read-only by its chunk jobs. */
/* Most channel axes a modelled chunk's writer may try (its models use one or two). */
#define ALCM_QP_AXES 8

typedef struct alcm_qparams {
	int dtype;
	const double *step;    /* per channel; step 0 codes every value as zero */
	uint64_t nsteps;
	uint64_t inner;        /* elements per channel (product of shape[1:]) */
	double max_err;        /* per-value bound: |x - x'| <= max_err_c (see bound_c) */
	const double *bound_c; /* per channel bound on |x - x'|; NULL: no bound (bits mode) */
	double prune_below;    /* |x| < this (and within the bound) goes to the mask; 0: none */
	/* Added to every symbol's value, q * step + offset (chunk coding 17, spec 6.5.11): set
	 * by alcm_quant_lattice() for values on a lattice; 0 otherwise (codings 1, 2, 4, 16). */
	double offset;
	int level;
	/* Encoder only: 1 to let chunks use the modelled symbol coding (format 1.1, spec
	 * 6.5.6) where it is not larger than byte planes, 2 to use it always (tests); and the
	 * channel axes its models may try: element g is in channel (g / axis_run[a]) %
	 * axis_count[a]; naxes 0..ALCM_QP_AXES (axis 0, the last axis, then for tensors of 3
	 * dimensions or more the inner axes and runs of adjacent axes: see lib/encoder.c). */
	int symcoding;
	/* Encoder only: the rANS states of a modelled chunk, 1..32; 0 lets the chunk's length
	 * choose (alcm_rans_lanes_for(), spec 6.5.14). */
	unsigned lanes;
	unsigned naxes;
	uint64_t axis_run[ALCM_QP_AXES], axis_count[ALCM_QP_AXES];
} alcm_qparams;

typedef struct alcm_qstats {
	uint64_t pruned, escapes;
	uint64_t modelled; /* chunks coded with the modelled symbol coding (format 1.1) */
	double max_err, sig, noise;
	/* A tensor given in pieces (alcm_tparams.bits_late): the bit pattern of the largest
	 * magnitude among its normal finite values so far (0: none). */
	uint64_t absmax;
} alcm_qstats;

/* Codes elements [first, first+elems) of the tensor at src (the whole tensor's base). */
/* recon (may be NULL) receives the values a decoder will produce, at the same offsets. */
int alcm_quant_encode(alcm_coder *c, alcm_buf *data, alcm_buf *mask, const alcm_qparams *qp,
                      const uint8_t *src, uint64_t first, uint64_t elems, alcm_qstats *st,
                      uint8_t *recon);
/* The same, with piece holding the chunk's values alone (element first at piece[0]): a
 * tensor given in pieces (alcm_encoder_queue_begin). The same bytes. */
int alcm_quant_encode_piece(alcm_coder *c, alcm_buf *data, alcm_buf *mask,
                            const alcm_qparams *qp, const uint8_t *piece, uint64_t first,
                            uint64_t elems, alcm_qstats *st);
/* Quantizes float32 values from src (n of them) at step s and offset o (inv = 1 / s > 0),
 * bound b, until the first that is special, out of the symbol range, or not within b of its
 * nearest reconstruction: those need alcm_quant_encode()'s careful path. Writes their zigzag
 * symbols (and reconstructions, if recon), adds to the statistics. @return values done. */
uint64_t alcm_quant_run_f32(const uint8_t *src, uint64_t n, double s, double o, double inv,
                            double b, uint32_t *sym, uint8_t *recon, double *sig, double *noise,
                            double *maxe);
/* alcm_quant_run_f32() for float16 and bfloat16 (dtype): the same contract (the statistics
 * summed in lanes, as alcm_quant_run_f32() with AVX2 sums them). Without AVX2 and F16C
 * (or with alcm_quant_scalar_only) it does nothing and returns 0. */
uint64_t alcm_quant_run_h16(int dtype, const uint8_t *src, uint64_t n, double s, double o,
                            double inv, double b, uint32_t *sym, uint8_t *recon, double *sig,
                            double *noise, double *maxe);
/* 1 if the CPU has AVX2 and F16C (x86-64), tested once. */
int alcm_cpu_avx2_f16c(void);
/* The bit pattern, sign cleared, of the largest magnitude among the n float32 values at src
 * that are normal or zero (NaN, infinities and subnormals count as zero). */
uint32_t alcm_quant_absmax_f32(const uint8_t *src, uint64_t n);
/* The same for n bfloat16 (bf 1) or float16 (bf 0) values: the pattern of the largest
 * normal magnitude, or 0. */
uint16_t alcm_quant_absmax_h16(int bf, const uint8_t *src, uint64_t n);
/* Tests set it to 1 to run the portable loop where the AVX2 one would run (x86-64): here and
 * in alcm_rounding_escapes(). */
extern int alcm_quant_scalar_only;
/* Tests set it to 0 to run alcm_quant_run_f32()'s AVX2 loop where its AVX-512 one would run
 * (the same symbols, reconstructions, largest error and sums). */
extern int alcm_quant_avx512;
/* Float16 or bfloat16 tensor t (n values): how many of its values quantizing with step s
 * would leave outside bound b once the reconstruction is rounded to the dtype, counted on at
 * most 2^16 evenly spaced values and scaled to n (lib/encoder.c, dtype_step). */
double alcm_rounding_escapes(const alcm_tensor *t, uint64_t n, double s, double b);
/* The magnitude (a 16-bit pattern, sign cleared) under which no bfloat16 (bf 1) or float16
 * value can escape at step s and bound b, or 0: alcm_rounding_escapes() tests only the
 * others. Tests set alcm_escape_floor_off to 1 to test every value (the same count). */
uint32_t alcm_escape_floor(int bf, double s, double b);
extern int alcm_escape_floor_off;
/* Tests set it to 0 to run alcm_rounding_escapes()'s AVX2 loop where its AVX-512 one would
 * run (the same count). */
extern int alcm_escapes_avx512;
/* For the n float32 values at src, if they lie on a lattice o + j d (at most 256 distinct
 * finite values) with d under twice the bound b: the step (a multiple of d above 2 b) and
 * offset whose cells hold the most lattice points while every value stays within b of its
 * reconstruction (checked in float32 on each distinct value), chosen for the fewest order-0
 * bits, if fewer than at step 2 b. @return 1 and sets *step and *offset, or 0 (unchanged).
 * The chunks then need coding 17 (spec 6.5.11). */
int alcm_quant_lattice(const uint8_t *src, uint64_t n, double b, double *step, double *offset);
/* alcm_quant_lattice()'s first pass: the distinct finite, normal-or-zero values of the n
 * float32 at src (bit patterns; not -0) in key[ALCM_LAT_SLOTS] (ALCM_LAT_EMPTY where none;
 * the caller fills key with it first), their counts at the same index of cnt, *used of
 * them. @return 0 as soon as a 257th distinct value is seen. With AVX2 (unless
 * alcm_quant_scalar_only) eight values at a time: the same tables. */
#define ALCM_LAT_SLOTS 4096
#define ALCM_LAT_EMPTY 0xffffffffu
int alcm_quant_lattice_scan(const uint8_t *src, uint64_t n, uint32_t *key, uint64_t *cnt,
                            uint32_t *used);
/* Scratch bytes alcm_quant_decode() needs for a chunk of `elems` elements: the mask and the
 * escapes' positions (a bitmap each), and the symbol planes. */
static inline uint64_t alcm_quant_scratch(uint64_t elems)
{
	return 2 * (elems / 8 + 1) + 4 * elems;
}
int alcm_quant_decode(alcm_coder *c, alcm_cursor *data, alcm_cursor *mask,
                      const alcm_qparams *qp, uint8_t *dst, uint64_t first, uint64_t elems,
                      uint8_t *scratch, size_t scratch_len);
/* Element access on the float dtypes, inline: a loop written as an always-inline function
 * of the dtype and called through ALCM_FLOAT_DISPATCH gets one copy per dtype with the
 * switches folded away (the per-element switch cost about a third of quantizing). */
#define ALCM_ALWAYS_INLINE static inline __attribute__((always_inline))
#define ALCM_FLOAT_DISPATCH(dt, fn, ...)                                                   \
	((dt) == ALCM_DTYPE_F16    ? fn(ALCM_DTYPE_F16, __VA_ARGS__)                         \
	 : (dt) == ALCM_DTYPE_BF16 ? fn(ALCM_DTYPE_BF16, __VA_ARGS__)                        \
	 : (dt) == ALCM_DTYPE_F32  ? fn(ALCM_DTYPE_F32, __VA_ARGS__)                         \
	                           : fn(ALCM_DTYPE_F64, __VA_ARGS__))

static inline float alcm_bf16_to_float_i(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint16_t alcm_float_to_bf16_i(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* Reads element i of src as double. */
static inline double alcm_load_float(int dtype, const uint8_t *src, uint64_t i)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: return alcm_half_to_float(alcm_load16(src + 2 * i));
	case ALCM_DTYPE_BF16: return alcm_bf16_to_float_i(alcm_load16(src + 2 * i));
	case ALCM_DTYPE_F32: {
		uint32_t u = alcm_load32(src + 4 * i);
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	default: {
		uint64_t u = alcm_load64(src + 8 * i);
		double d;
		memcpy(&d, &u, 8);
		return d;
	}
	}
}

/* 1 if element i must be stored exactly: NaN, inf, -0, subnormal (+0 codes as symbol 0). */
static inline int alcm_is_special(int dtype, const uint8_t *src, uint64_t i)
{
	uint64_t bits, expmask;
	switch (dtype) {
	case ALCM_DTYPE_F16: bits = alcm_load16(src + 2 * i), expmask = 0x7c00; break;
	case ALCM_DTYPE_BF16: bits = alcm_load16(src + 2 * i), expmask = 0x7f80; break;
	case ALCM_DTYPE_F32: bits = alcm_load32(src + 4 * i), expmask = 0x7f800000u; break;
	default: bits = alcm_load64(src + 8 * i), expmask = 0x7ff0000000000000ull;
	}
	uint64_t e = bits & expmask;
	return e == expmask || (e == 0 && bits != 0);
}

/* The reconstruction of symbol q in channel step s plus off, as the dtype stores it, in
 * double: the product and the sum each rounded to binary64 (-ffp-contract=off, spec 6.5.11);
 * off 0 adds nothing (not even to a -0.0). */
static inline double alcm_quant_value_at(int dtype, int64_t q, double s, double off)
{
	double r = (double)q * s;
	if (off != 0)
		r += off;
	switch (dtype) {
	case ALCM_DTYPE_F16: return alcm_half_to_float(alcm_float_to_half((float)r));
	case ALCM_DTYPE_BF16: return alcm_bf16_to_float_i(alcm_float_to_bf16_i((float)r));
	case ALCM_DTYPE_F32: return (double)(float)r;
	default: return r;
	}
}
static inline double alcm_quant_value(int dtype, int64_t q, double s)
{
	return alcm_quant_value_at(dtype, q, s, 0);
}

/* Stores v as element i of dst in the float dtype (rounding to nearest even). */
static inline void alcm_store_float(int dtype, uint8_t *dst, uint64_t i, double v)
{
	switch (dtype) {
	case ALCM_DTYPE_F16: alcm_store16(dst + 2 * i, alcm_float_to_half((float)v)); break;
	case ALCM_DTYPE_BF16: alcm_store16(dst + 2 * i, alcm_float_to_bf16_i((float)v)); break;
	case ALCM_DTYPE_F32: {
		float f = (float)v;
		uint32_t u;
		memcpy(&u, &f, 4);
		alcm_store32(dst + 4 * i, u);
		break;
	}
	default: {
		uint64_t u;
		memcpy(&u, &v, 8);
		alcm_store64(dst + 8 * i, u);
	}
	}
}

/* Element i of a chunk of elems elements starting at element first: its channel (*ch) and
 * where that channel's run inside the chunk ends. */
static inline uint64_t alcm_channel_run(const alcm_qparams *qp, uint64_t first, uint64_t i,
                                   uint64_t elems, uint64_t *ch)
{
	*ch = qp->nsteps == 1 ? 0 : (first + i) / qp->inner;
	uint64_t end = qp->nsteps == 1 ? elems : (*ch + 1) * qp->inner - first;
	return end < elems ? end : elems;
}

/* nearbyint() for |x| < 2^51 without a libm call: adding 1.5 * 2^52 rounds to an integer in
 * the current (nearest-even) mode, subtracting it again is exact. Needs IEEE arithmetic as
 * C specifies it (no -ffast-math, which would fold the two operations away). */
static inline double alcm_round_small(double x)
{
#if defined(__FAST_MATH__) || (defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0)
	return nearbyint(x); /* -ffast-math folds the trick away; x87 rounds it twice */
#else
	const double big = 6755399441055744.0;
	return (x + big) - big;
#endif
}

/* ---- tensor parameters (lib/encoder.c) ------------------------------------------------- */

/* alcm_encoder_new()'s range check of pack options. @return 1 if they are valid. */
int alcm_pack_options_check(const alcm_pack_options *o);

/* What a lossy mode decides for one float tensor: channels, steps, bounds, pruning. */
typedef struct alcm_tparams {
	int mode;
	unsigned bits;
	uint64_t elems, nch, inner;
	double *step, *bound;
	alcm_qparams qp;
	/* Max-error on float32 or float64 values that come later, in pieces (alcm_lossy_params()
	 * got no data): bits, the width reported for the symbols, waits for the chunks' largest
	 * magnitude (alcm_qstats.absmax). Nothing else depends on the data. */
	int bits_late;
} alcm_tparams;

/* Fills p (elems set by the caller, the rest zeroed) for a float tensor with elements under
 * the lossy mode of o; free with alcm_lossy_params_free() also on failure. t->data may be
 * NULL only under max-error, for float32 or float64 without pruning (p->bits_late). */
int alcm_lossy_params(const alcm_allocator *a, const alcm_pack_options *o, const alcm_tensor *t,
                      alcm_tparams *p);
void alcm_lossy_params_free(const alcm_allocator *a, alcm_tparams *p);

/* ---- compact tensor frames (lib/tframe.c) ------------------------------------------------ */

/* XXH64 of len bytes (the xxHash specification's 64-bit hash): the frame check. */
uint64_t alcm_xxh64(const void *src, size_t len, uint64_t seed);

/* ---- worker pool ----------------------------------------------------------------------- */

/* The tightest cgroup CPU quota (v2 cpu.max along the process's path, else v1 cfs quota)
 * under `root` ("" for the real /proc and /sys; tests pass a fake tree), in whole CPUs
 * rounded up; 0 when there is none. */
unsigned alcm_cpu_quota(const char *root);

/* Takes back the last tensor alcm_encoder_add*() added: its sections and its directory
 * entry. Once per add. @return ALCM_E_STATE when there is nothing to take back. */
int alcm_encoder_undo(alcm_encoder *e);

typedef struct alcm_pool alcm_pool;
/* Runs fn(arg, job, worker) for job in [0, njobs) on the pool's threads; returns when done. */
typedef void (*alcm_pool_fn)(void *arg, size_t job, unsigned worker);
int alcm_pool_new(alcm_pool **out, unsigned threads, const alcm_allocator *a);
void alcm_pool_run(alcm_pool *p, alcm_pool_fn fn, void *arg, size_t njobs);
unsigned alcm_pool_threads(const alcm_pool *p);
void alcm_pool_free(alcm_pool *p);

#endif
