/*
 * Hostile archives for the tests: sections with any payload, written through alcm_writer so
 * that every digest matches and the payload reaches the decoders, and tensor directories
 * (spec 6.3) with any field. Used by the cmocka tests and by alcm-test-forge (the CLI tests).
 */
#ifndef ALCM_TEST_FORGE_H
#define ALCM_TEST_FORGE_H

#include <stddef.h>
#include <stdint.h>

#include "alcm.h"

/* A growable byte string. */
typedef struct fg_buf {
	uint8_t *p;
	size_t len, cap;
} fg_buf;
void fg_put(fg_buf *b, const void *p, size_t n);
void fg_u8(fg_buf *b, unsigned v);
void fg_u32(fg_buf *b, uint32_t v);
void fg_u64(fg_buf *b, uint64_t v);
void fg_varint(fg_buf *b, uint64_t v);
/* A coded stream (spec 6.2) of n bytes: zstd at `level` when it is shorter, else raw;
 * level 0: raw. */
void fg_stream(fg_buf *b, const void *src, size_t n, int level);
/* A zstd coded stream of n zero bytes made with window log `wlog` (0: zstd's choice),
 * declaring raw_len n; zero bytes are never held in memory whole. */
void fg_zero_stream(fg_buf *b, uint64_t n, int wlog);
/* A zstd coded stream of n bytes whatever its length (a writer would store it raw). */
void fg_zstd_stream(fg_buf *b, const void *src, size_t n);
void fg_free(fg_buf *b);

#define FG_NONE 0xffffffffu

/* One directory entry; ctab holds chunk_count pairs (data_len, mask_len). */
typedef struct fg_entry {
	const char *name;
	int dtype, mode;
	uint32_t ndim;
	uint64_t shape[4];
	uint32_t data, scal, mask;
	uint64_t chunk_elems, chunk_count;
	const uint64_t *ctab;
} fg_entry;
void fg_tdir(fg_buf *b, const fg_entry *e, size_t n);

/* A section of an archive to forge. */
typedef struct fg_section {
	const char *type;
	int critical;
	uint32_t tag;
	const void *p;
	size_t len;
} fg_section;

/*
 * Writes the sections in order as a complete archive (header, table, digests) in memory.
 * @return malloc'd bytes (*len set), or NULL if the writer refused.
 */
uint8_t *fg_archive(const fg_section *s, size_t n, unsigned wflags, size_t *len);
int fg_archive_file(const char *path, const fg_section *s, size_t n, unsigned wflags);

/*
 * The archive buf of len bytes written again with byte `at` of section `sec` XORed with x and
 * every digest made to match, so that the changed byte reaches the decoders.
 * @return malloc'd bytes (*out_len set), or NULL if the writer refused.
 */
uint8_t *fg_flip(const uint8_t *buf, size_t len, uint32_t sec, uint64_t at, uint8_t x,
                 size_t *out_len);

#endif
