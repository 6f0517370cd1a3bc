/*
 * Helpers shared by the fuzz harnesses (fuzz/README.md): the options byte, tight limits,
 * the digest fix-up and checks that abort so that the fuzzer reports a broken invariant.
 *
 * Every harness takes its options from the LAST byte of the input and feeds the bytes before
 * it to the library, so a seed file is "<valid file><options byte>" (fuzz/make_corpus.c).
 */
#ifndef ALCM_FUZZ_COMMON_H
#define ALCM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "alcm.h"

/*
 * ALCM_FUZZ_FIXUP (default 1): before parsing, the container harnesses recompute the
 * header, commit slot, table and section digests of the mutated input, like libpng's
 * harness fixing CRCs, so that mutations reach the code behind the digest checks. Inputs
 * whose options byte has FUZZ_OPT_RAW set are parsed as they are, to test the checks.
 * Build with -DALCM_FUZZ_FIXUP=0 to never fix digests.
 */
#ifndef ALCM_FUZZ_FIXUP
#define ALCM_FUZZ_FIXUP 1
#endif

/* Bits of the options byte common to the container harnesses. */
#define FUZZ_OPT_RAW 0x01u       /* do not fix digests */
#define FUZZ_OPT_NO_VERIFY 0x02u /* open with ALCM_READ_NO_VERIFY */
#define FUZZ_OPT_DEFAULTS 0x04u  /* default limits instead of the tight ones (container) */
#define FUZZ_OPT_FILE 0x08u      /* read through a file descriptor (memfd), not memory */

/* Splits the options byte off the input. @return 0 when the input is empty. */
int fuzz_split(const uint8_t **data, size_t *size, uint8_t *opt);

/* Tight limits: 16 MiB decoded, 4M elements, 1024 sections, zstd window 2^20. */
void fuzz_limits_tight(alcm_limits *lim);

/*
 * Recomputes, in place, every digest a reader checks: each section's digest in each
 * plausible table, the table digests, the fixed header digest and the commit slot digests.
 * Fields that are out of range are left alone (the reader must refuse them anyway).
 */
void fuzz_fixup_digests(uint8_t *buf, size_t len);

/* Copies the input to an exact-size heap block, so that ASan sees any read past its end. */
uint8_t *fuzz_dup(const uint8_t *data, size_t size);

/* Reads every byte of [p, p+n) (so that ASan checks the range) and returns a checksum. */
uint64_t fuzz_touch(const void *p, size_t n);

/* A temporary in-memory file holding buf: @return its descriptor (or -1) and its path
 * ("/proc/self/fd/N") in path (64 bytes). */
int fuzz_memfd(const uint8_t *buf, size_t len, char *path);

/* Prints "fuzz: <surface>: <message>" and aborts: the fuzzer reports the input. */
void fuzz_fail(const char *surface, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

#define FUZZ_CHECK(surface, cond, ...)                                                  \
	do {                                                                            \
		if (!(cond))                                                            \
			fuzz_fail(surface, __VA_ARGS__);                                \
	} while (0)

/* libFuzzer's entry point; driver.c calls it in the replay and AFL++ builds. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
