/*
 * Internals of the modelled symbol coding of QDAT chunks (spec 6.5.6 to 6.5.9): the
 * interleaved rANS coder with static tables (lib/rans.c) and the chunk coder that chooses
 * token alphabets and channel classes (lib/symcode.c).
 */
#ifndef ALCM_SYMCODE_INTERNAL_H
#define ALCM_SYMCODE_INTERNAL_H

#include "codec_internal.h"

/* The QDAT symbol coding byte that selects this coding (spec 6.5.4; 1, 2 and 4 are byte
 * planes). */
#define ALCM_QCODING_RANS 16
/* The same with an f64 offset added to every value (spec 6.5.11): values on a lattice. */
#define ALCM_QCODING_RANS_OFFSET 17
/* Codings 16 and 17 with fewer rANS states than 32, a byte giving their number (spec
 * 6.5.14, format 1.1). */
#define ALCM_QCODING_RANS_LANES 18
#define ALCM_QCODING_RANS_OFFSET_LANES 19

/* The rANS states a chunk of n tokens gets: 32 from 8192 tokens, fewer below. Each state
 * costs about 3 bytes beyond its information, whatever the chunk's length, while fewer states
 * decode slower, in proportion to the chunk's tokens: with AVX2, 16 states decode about 900
 * MB/s of tokens, 24 about 1300, 32 about 1550 (the portable loop, any number: 630). Giving
 * 8 states to chunks under 65536 tokens and 16 under 262144 saves 0.3% of the faceapi weights
 * of tools/bench/entropy.sh (1.0274x -> 1.0302x the order-0 ideal, over the target of 1.03x)
 * but costs 15-20% of their unpack speed and 30-45% of that of the benchmark's smaller files
 * (tensors of 18K to 131K values: digits CNN, torch MLP), which then miss unpack >= 1.5 GB/s:
 * not taken. */
static inline unsigned alcm_rans_lanes_for(uint64_t n)
{
	return n >= 8192 ? 32u : n >= 2048 ? 16u : n >= 512 ? 8u : 4u;
}

/* rANS parameters (spec 6.5.8): frequencies sum to 2^12, 32 interleaved 32-bit states kept
 * in [2^15, 2^31), renormalised 16 bits at a time (the encoder's reciprocal division is exact
 * below 2^31). */
#define ALCM_RANS_BITS 12
#define ALCM_RANS_TOTAL (1u << ALCM_RANS_BITS)
#define ALCM_RANS_LANES 32
#define ALCM_RANS_L (1u << 15)
#define ALCM_RANS_MAX_TOKENS 256
#define ALCM_SYM_MAX_CLASSES 16

/* One static table for the encoder: per token, what encoding it takes (ryg_rans's
 * reciprocal form: no division per symbol). */
typedef struct alcm_rans_esym {
	uint64_t x_max; /* 2^32 for a token of frequency 2^12: it never renormalises */
	uint32_t rcp, bias;
	uint16_t cmpl, shift;
} alcm_rans_esym;

typedef struct alcm_rans_etab {
	/* The same packed for the AVX2 encoder (one 8-byte load a token): the reciprocal, then bias |
	 * complement << 13 | (shift - 32) << 25. */
	uint32_t pk[ALCM_RANS_MAX_TOKENS][2];
	alcm_rans_esym s[ALCM_RANS_MAX_TOKENS];
} alcm_rans_etab;

/* One static table for the decoder: per slot, (freq - 1) << 20 | (slot - start) << 8 | token. */
typedef struct alcm_rans_dtab {
	uint32_t e[ALCM_RANS_TOTAL];
} alcm_rans_dtab;

/* Scales counts (ntok of them, some nonzero) to frequencies summing to ALCM_RANS_TOTAL,
 * every nonzero count getting at least 1, for the least coded size. */
void alcm_rans_normalize(const uint64_t *count, unsigned ntok, uint32_t *freq);
/* Builds the tables of frequencies that sum to ALCM_RANS_TOTAL (the caller checked it). The
 * encoder's table is filled for tokens 0..ntok-1 only: no other token may be coded with it. */
void alcm_rans_etab_build(alcm_rans_etab *t, const uint32_t *freq, unsigned ntok);
void alcm_rans_dtab_build(alcm_rans_dtab *t, const uint32_t *freq, unsigned ntok);

/* Bytes alcm_rans_encode() may need for n tokens: the states and 2 bytes per token. */
static inline size_t alcm_rans_bound(size_t n)
{
	return 4 * ALCM_RANS_LANES + 2 * n + 2;
}
/* Codes tok[0..n) (token i with table tabs[cls[i]], or tabs[0] when cls is NULL) into out. Every token must have a nonzero frequency in its table. @return the
 * coded length. */
size_t alcm_rans_encode(uint8_t *out, size_t cap, const uint8_t *tok, const uint8_t *cls,
                        size_t n, const alcm_rans_etab *tabs);
/* Decodes exactly n tokens from the len bytes at in. ALCM_E_CORRUPT when a state starts out
 * of range, the words run out, words are left over, or a final state is not the initial
 * one (a stream has one encoding). */
int alcm_rans_decode(uint8_t *tok, const uint8_t *cls, size_t n, const alcm_rans_dtab *tabs,
                     const uint8_t *in, size_t len);
/* The same decoding with each token found by a binary search of its table's cumulative
 * frequencies cum[k][0..ntok[k]] (cum[k][0] = 0, cum[k][ntok[k]] = ALCM_RANS_TOTAL) instead
 * of a 4096-slot table: for short chunks, where building the slot tables (4096 stores a
 * class) would cost more than decoding the tokens. Same result and same refusals. */
int alcm_rans_decode_search(uint8_t *tok, const uint8_t *cls, size_t n,
                            const uint16_t (*cum)[ALCM_RANS_MAX_TOKENS + 1], const unsigned *ntok,
                            const uint8_t *in, size_t len);
/* The same three with `lanes` states (1..32) instead of 32 (codings 18 and 19, spec
 * 6.5.14): fewer states for short chunks, whose 32 states would cost about 100 bytes. Below 32
 * the portable loops run. The decoders refuse lanes outside 1..32 as ALCM_E_CORRUPT. */
size_t alcm_rans_encode_lanes(uint8_t *out, size_t cap, const uint8_t *tok, const uint8_t *cls,
                              size_t n, const alcm_rans_etab *tabs, unsigned lanes);
int alcm_rans_decode_lanes(uint8_t *tok, const uint8_t *cls, size_t n,
                           const alcm_rans_dtab *tabs, const uint8_t *in, size_t len,
                           unsigned lanes);
int alcm_rans_decode_search_lanes(uint8_t *tok, const uint8_t *cls, size_t n,
                                  const uint16_t (*cum)[ALCM_RANS_MAX_TOKENS + 1],
                                  const unsigned *ntok, const uint8_t *in, size_t len,
                                  unsigned lanes);
/* Tests set it to 1 to run the portable coder where the AVX2 one would run (x86-64). */
extern int alcm_rans_scalar_only;
/* Tests set it to 0 to run the encoder's AVX2 paths where its AVX-512 ones would run. */
extern int alcm_sym_avx512;
/* Tests set it to 1 to refine every candidate class model the encoder would leave unrefined
 * by a lower bound (models() in lib/symcode.c), and to run every refinement its six rounds
 * where the rounds' gains show it cannot pay (model_refine()): the bytes must be the same. */
extern int alcm_sym_refine_all;
/* Refinements model_refine() stopped early, for tests (relaxed atomic increments). */
extern _Atomic unsigned long alcm_sym_refine_stops;
/* Tests set it to 0 to sum a two-axis model's residuals element by element where whole rows
 * give every column the same sum (residual_sums() in lib/symcode.c): the bytes must be the
 * same. */
extern int alcm_sym_rows_alike;

/* The nonzero counts of h[0..ntok) as (token, count) pairs at pt[2 nz...], in token order,
 * by the encoder's path (alcm_rans_scalar_only: the portable one), for tests. pt must have
 * room for ALCM_SYM_PAIRS_SLACK pairs past the last (the vectorised path stores four at a
 * time). @return the new nz. */
#define ALCM_SYM_PAIRS_SLACK 4
uint64_t alcm_sym_put_pairs(uint32_t *pt, uint64_t nz, const uint32_t *h, unsigned ntok);

/* ---- chunk coder (lib/symcode.c) ------------------------------------------------------ */

/* One token table (spec 6.5.8) alone, as a whole bit stream, for tests: the frequencies the
 * encoder chose for counts cnt, and the ones a decoder reads (ALCM_E_CORRUPT on a table it
 * must refuse, or bytes left over). */
int alcm_symtab_encode(alcm_buf *out, const uint64_t *cnt, unsigned ntok, uint32_t *freq);
int alcm_symtab_decode(const uint8_t *p, size_t len, unsigned ntok, uint32_t *freq,
                       unsigned *last);

/* Per-thread decoder state: the rANS tables of one chunk (allocated on first use). */
typedef struct alcm_symstate alcm_symstate;
void alcm_symstate_free(const alcm_allocator *a, alcm_symstate *s);
alcm_symstate **alcm_coder_symstate(alcm_coder *c);

/* Codes the nsym zigzag symbols of a chunk after its coding byte. bits (may be NULL): the
 * chunk's pruning mask, to place symbols on elements. */
int alcm_symcode_encode(alcm_coder *c, alcm_buf *data, const alcm_qparams *qp,
                        const uint32_t *sym, uint64_t nsym, const uint8_t *bits,
                        uint64_t first, uint64_t elems, unsigned lanes);
/* Decodes the symbols of a chunk (its coding byte and nsym already read) and stores their
 * values into dst (pruned elements: +0.0). scratch: at least 4 * elems bytes. */
int alcm_symcode_decode_values(alcm_coder *c, alcm_cursor *data, const alcm_qparams *qp,
                               uint8_t *dst, uint64_t first, uint64_t elems,
                               const uint8_t *bits, uint64_t nsym, uint8_t *scratch,
                               size_t scratch_len, unsigned lanes);

#endif
