/* Helpers shared by the cmocka tests: temp paths, a counting allocator, data generators. */
#ifndef ALCM_TESTUTIL_H
#define ALCM_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "alcm.h"

/* A fresh path under $ALCM_TEST_TMP (or /tmp) for this process: "<tmp>/<pid>-<name>". */
const char *tu_path(const char *name);
/* Reads a whole file; *len receives its size. Caller frees. NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
int tu_write_file(const char *path, const void *buf, size_t len);
int tu_file_exists(const char *path);
/* 1 if the library's atomic outputs next to `path` use a named temporary file (O_TMPFILE
 * refused by its directory's file system), 0 if an unnamed, invisible one. */
int tu_tmpfile_refused(const char *path);

/*
 * Counting allocator: counts live blocks, and fails the allocation number `fail_at`
 * (1-based; 0 = never) so that every failure path can be walked.
 */
typedef struct tu_alloc {
	alcm_allocator a;
	long live;
	long calls;
	long fail_at;
} tu_alloc;
void tu_alloc_init(tu_alloc *t, long fail_at);

/* Bits per value of the 1-D tensor t packed alone in max-error mode with bound step / 2, one
 * thread, into memory (cmocka asserts on any failure): what the predictor is trained on. */
double tu_measured_bits(const alcm_tensor *t, double step);

/* Tensors packed into memory: the writer holds the bytes (buf, len) until freed. */
typedef struct tu_packed {
	const void *buf;
	size_t len;
	alcm_writer *w;
} tu_packed;

/* Packs the n tensors into memory with options o (reports into reps when not NULL).
 * @return the first failing status; out->w is set whatever happens (free it). */
int tu_pack(const alcm_tensor *t, size_t n, const alcm_pack_options *o, tu_packed *out,
            alcm_tensor_report *reps);

/* Packs the one tensor t at max error `bound` on one thread, decodes it with the portable
 * rANS decoder (into y0) and with the run-time choice, AVX2 where the CPU has it (into y1),
 * and asserts that both decodes are the same bytes and within the bound (cmocka asserts).
 * y0 and y1 take t->nbytes each. */
void tu_check_decode_paths(const alcm_tensor *t, double bound, void *y0, void *y1);

/* The coded bytes of one chunk by the three symbol-coder paths (out[0] portable, out[1] AVX2,
 * out[2] AVX-512) must be the same, and out[0]'s FNV-1a digest must be golden[*next] (of n
 * digests; with golden NULL the digest is printed as a line of a golden table instead: how
 * the tables were made). Advances *next and frees the three buffers (cmocka asserts). */
struct alcm_buf;
void tu_check_golden_paths(struct alcm_buf *out, const uint64_t *golden, size_t n, size_t *next);

/* Rebuilds the archive image *img (malloc'd, *n bytes) with every TDRZ replaced by the plain
 * TDIR it holds (spec 6.3.5), sections in the same order, so a test can edit directory
 * entries in place; the header's minor version and stream flag are kept, generations are
 * not (cmocka asserts on any failure). */
void tu_plain_dir(uint8_t **img, size_t *n);

/* *t describes the rows x cols float32 matrix x (row-major), named "w"; the rest zeroed. */
void tu_matrix_f32(alcm_tensor *t, const float *x, uint64_t rows, uint64_t cols);
/* A 1-D tensor "v" of n values of dtype at data. */
void tu_vector(alcm_tensor *t, int dtype, const void *data, uint64_t n);
/* The zigzag symbol of q (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), as the quantizer makes them. */
uint32_t tu_zigzag(long q);

/* Up to TU_SET_MAX float32 tensors "t0", "t1", ... of [100, values / 100], N(0, 0.05) from
 * seed; tensor `empty` (-1: none) has no elements. total: their bytes. */
#define TU_SET_MAX 8
typedef struct tu_set {
	int n;
	char names[TU_SET_MAX][16];
	alcm_tensor t[TU_SET_MAX];
	float *data[TU_SET_MAX];
	uint64_t total;
} tu_set;
void tu_set_make(tu_set *s, int n, uint64_t values, uint64_t seed, int empty);
void tu_set_free(tu_set *s);

/* Deterministic generator (splitmix64). */
uint64_t tu_rand(uint64_t *state);
double tu_gauss(uint64_t *state);
/* A float16 or bfloat16 (dtype) bit pattern: with special_in > 0, one in special_in is NaN,
 * -inf, -0, a subnormal or +0 (each one in 5 of those); the others N(0, sd^2) rounded to
 * the dtype, sd < 0 taking a scale over 2^24 (float16) or 2^60 (bfloat16) for each value. */
uint16_t tu_h16_value(int dtype, uint64_t *state, double sd, unsigned special_in);
#endif
