/*
 * Internals of checkpoint series (spec 6.12): delta chunks (lib/delta.c), the frame and
 * settings records and reference chains (lib/series.c), and the hooks they need in the
 * encoder (lib/encoder.c) and the decoder (lib/archive.c).
 */
#ifndef ALCM_SERIES_INTERNAL_H
#define ALCM_SERIES_INTERNAL_H

#include "codec_internal.h"

/* A gradient stream's settings as an OPTS payload (spec 6.12.3): the coding keys and the
 * stream.* keys; alcm_stream_options_load() reads them back. */
int alcm_stream_opts_build(alcm_buf *b, const alcm_stream_options *so);

/* ---- delta chunks (lib/delta.c) --------------------------------------------------------- */

/* The kind byte that opens every chunk of a DLTA section (spec 6.12.4, 6.12.5). */
enum alcm_delta_kind {
	ALCM_DELTA_PLAIN = 0, /* the chunk as LDAT or QDAT would hold it: no reference */
	ALCM_DELTA_XOR = 1,   /* lossless: the bits XOR the reference's bits */
	ALCM_DELTA_DIFF = 2,  /* lossless: zigzag of the difference of the order keys */
	ALCM_DELTA_ADD = 1    /* lossy: symbols are steps added to the reference */
};
/* The reference writer keeps a residual only when it codes the chunk's sample at least a
 * tenth smaller than the plain coding and its decode, after its reference's, fits the cost
 * budget of spec 6.12.7; a tensor whose chunks are all plain needs no reference to decode
 * (spec 6.12.6). */

/* The unsigned integer dtype of w bytes (residuals are coded as these). */
int alcm_delta_udtype(size_t w);

/*
 * A lossless delta chunk of n elements: tries the plain coding, XOR and difference on a
 * sample and keeps the smallest that fits the decode-cost budget (spec 6.12.7). src and ref
 * point at the chunk's first element.
 */
int alcm_delta_encode(alcm_coder *c, alcm_buf *out, int dtype, const uint8_t *src,
                      const uint8_t *ref, uint64_t n, int level);
/* *worth = 1 when a residual codes the sample of the n elements at least a tenth smaller than
 * the plain coding, within the decode-cost budget: the writer stores a tensor whole
 * otherwise. */
int alcm_delta_worth(alcm_coder *c, const alcm_allocator *a, int dtype, const uint8_t *src,
                     const uint8_t *ref, uint64_t n, int *worth);
/* Tests set it to run the portable apply loops where AVX2 would be used. */
extern int alcm_delta_scalar_only;
/* dst holds the reference on entry and the chunk's values on return. scratch:
 * alcm_delta_scratch(n, w) bytes. */
int alcm_delta_decode(alcm_coder *c, alcm_cursor *cur, int dtype, uint8_t *dst, uint64_t n,
                      uint8_t *scratch);
static inline uint64_t alcm_delta_scratch(uint64_t elems, size_t w)
{
	return alcm_lossless_scratch(elems, w);
}

/*
 * A quantized delta chunk: the absolute coding (alcm_quant_encode) or steps added to the
 * reference, whichever codes smaller; src, ref and recon are the whole tensors' bases, as
 * for alcm_quant_encode. qp->prune_below must be 0 (a DLTA has no mask).
 */
int alcm_delta_quant_encode(alcm_coder *c, alcm_buf *out, const alcm_qparams *qp,
                            const uint8_t *src, const uint8_t *ref, uint64_t first,
                            uint64_t elems, alcm_qstats *st, uint8_t *recon);
/* dst: the whole tensor, holding the reference on entry. scratch: alcm_quant_scratch(). */
int alcm_delta_quant_decode(alcm_coder *c, alcm_cursor *cur, const alcm_qparams *qp,
                            uint8_t *dst, uint64_t first, uint64_t elems, uint8_t *scratch,
                            size_t scratch_len);

/*
 * What a delta of x against ref would cost, estimated from a sample of at most 4096
 * elements: bits of the zigzag differences of the order keys (step 0), or of the symbols
 * round((x - ref) / step), scaled to the n elements. For the writer's keyframe choice.
 */
double alcm_delta_estimate(int dtype, const uint8_t *x, const uint8_t *ref, uint64_t n,
                           double step);

/* ---- encoder hook (lib/encoder.c) ------------------------------------------------------- */

/* Like alcm_encoder_add_recon(), coding t against ref (the decoded values of the reference
 * tensor: same dtype and shape) into a DLTA section. The encoder's prune share must be 0. */
int alcm_encoder_add_delta(alcm_encoder *e, const alcm_tensor *t, const void *ref,
                           alcm_tensor_report *rep, void *recon);
/* The encoder's current options (mode, bound, ...). */
const alcm_pack_options *alcm_encoder_options(const alcm_encoder *e);

/* ---- decoder hooks (lib/archive.c) ------------------------------------------------------ */

typedef struct alcm_series_link alcm_series_link;

alcm_reader *alcm_archive_reader(const alcm_archive *a);
const alcm_allocator *alcm_archive_allocator(const alcm_archive *a);
/* The archive's series state (NULL until set), and setting it (the archive frees it). */
alcm_series_link *alcm_archive_link(const alcm_archive *a);
void alcm_archive_set_link(alcm_archive *a, alcm_series_link *l);
/* 1 if tensor i's data section is a DLTA. */
int alcm_archive_is_delta(const alcm_archive *a, size_t i);
/* *plain = 1 if tensor i is a DLTA whose chunks all have kind 0 (read from their first bytes,
 * unverified: the decode that follows reads the same bytes and checks them). */
int alcm_archive_delta_plain(alcm_archive *a, size_t i, int *plain);
/* Decodes tensor i's own chunks onto out: for a DLTA tensor out must hold its reference
 * (nothing is fetched), for others it is overwritten. */
int alcm_archive_decode_onto(alcm_archive *a, size_t i, void *out, size_t cap);
/* Sets the detail line and poisons the archive for corrupt, digest, unsupported errors. */
int alcm_archive_fail(alcm_archive *a, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sets the detail line only: for a refusal that says nothing of the archive itself. */
int alcm_archive_note(alcm_archive *a, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* alcm_archive_decode_onto() that checks section digests only when `digest` (the caller
 * checks them otherwise: a DLTA tensor has no mask section, only its data section). */
int alcm_archive_decode_onto2(alcm_archive *a, size_t i, void *out, size_t cap, int digest);
/* Threads a's decodes run on (its pool, started if need be; 1 if it cannot start). */
unsigned alcm_archive_workers(alcm_archive *a);
/* The index of tensor i's data section in a's reader. */
uint32_t alcm_archive_data_section(const alcm_archive *a, size_t i);
/* Lets `a` decode with the worker pool and coders of `owner` (which must outlive it). */
int alcm_archive_share_workers(alcm_archive *a, alcm_archive *owner);

/* ---- reference chains (lib/series.c) ---------------------------------------------------- */

/* Fills out with the reference of DLTA tensor i of a: the same-named tensor of the frame
 * the series record names, decoded through its own chain (spec 6.12.6). */
int alcm_series_reference(alcm_archive *a, size_t i, uint8_t *out, size_t cap);
/* Decodes DLTA tensor i of a into out: its reference (alcm_series_reference), then its own
 * chunks onto it; with two threads or more, its data section's digest is checked on a thread
 * of its own while the reference decodes (the reference's digest job runs beside the
 * reference's chunks already, the delta's had to wait for them). */
int alcm_series_decode(alcm_archive *a, size_t i, uint8_t *out, size_t cap);
void alcm_series_link_free(alcm_series_link *l);

#endif
