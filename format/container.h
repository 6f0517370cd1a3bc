/*
 * Byte layout constants of the .alcm container (spec/alcm-format.md, chapter 4), shared
 * by the reader and the writer.
 */
#ifndef ALCM_CONTAINER_H
#define ALCM_CONTAINER_H

#include "format_internal.h"

#define ALCM_SIGNATURE_LEN 9
extern const uint8_t alcm_signature[ALCM_SIGNATURE_LEN];

#define ALCM_HEADER_SIZE 192u  /* fixed part + two commit slots */
#define ALCM_FIXED_SIZE 64u
#define ALCM_SLOT_SIZE 64u
#define ALCM_SLOT_A 64u
#define ALCM_SLOT_B 128u
#define ALCM_ALIGN_LOG2 6u
#define ALCM_ALIGN 64u
#define ALCM_DIGEST_LEN 32u
#define ALCM_TABLE_HEAD 16u
#define ALCM_TABLE_ENTRY 64u
#define ALCM_TABLE_MAGIC "ATBL"
#define ALCM_KNOWN_FLAGS ALCM_SECTION_CRITICAL
#define ALCM_KNOWN_HEADER_FLAGS ALCM_FLAG_STREAM

typedef struct alcm_entry {
	char type[4];
	uint32_t flags;
	uint32_t tag;
	uint64_t offset;
	uint64_t length;
	uint8_t digest[ALCM_DIGEST_LEN];
	uint8_t state; /* enum alcm_digest_state */
} alcm_entry;

static inline uint64_t alcm_align_up(uint64_t v)
{
	return (v + (ALCM_ALIGN - 1)) & ~(uint64_t)(ALCM_ALIGN - 1);
}

/* 1 if the library knows this section type (spec 4.6). */
int alcm_section_type_known(const char type[4]);
/* 1 if all four bytes are printable ASCII other than space. */
int alcm_section_type_valid(const char type[4]);

/* BLAKE2b-256 of one buffer. */
void alcm_digest(uint8_t out[ALCM_DIGEST_LEN], const void *buf, size_t len);

/* Fills the 64-byte fixed part of the header (magic, version, flags, digest). */
void alcm_header_fixed_build(uint8_t out[ALCM_FIXED_SIZE], uint32_t flags, unsigned minor);
/* Fills a commit slot bound to the fixed header. */
void alcm_slot_build(uint8_t out[ALCM_SLOT_SIZE], const uint8_t fixed[ALCM_FIXED_SIZE],
                     uint64_t generation, uint64_t table_offset, uint64_t table_size);
/* Serialises a section table; *out is allocated. */
int alcm_table_build(const alcm_allocator *a, const alcm_entry *e, uint32_t count,
                     uint8_t **out, size_t *len);
static inline uint64_t alcm_table_size(uint32_t count)
{
	return ALCM_TABLE_HEAD + (uint64_t)count * ALCM_TABLE_ENTRY + ALCM_DIGEST_LEN;
}

/* alcm_reader_open_file() on an open descriptor (duplicated; the caller keeps fd), so that
 * the append writer reads exactly the file it has locked. `name` is for messages. */
int alcm_reader_open_fd(alcm_reader **out, int fd, const char *name, const alcm_limits *lim,
                        const alcm_allocator *alloc, unsigned flags);

/* The committed table of a parsed archive, for the append writer. */
void alcm_reader_committed(const alcm_reader *r, const alcm_entry **e, uint32_t *count,
                           uint64_t *table_offset, uint64_t *table_size, uint64_t *generation,
                           unsigned *active_slot);

#endif
