/*
 * Work arrays of the coders kept across coders (lib/alloc.c): a process-wide cache of large
 * blocks for the default allocator, so that a short-lived decoder (an archive opened, one
 * small tensor decoded, the archive freed) finds its tables and scratch already mapped
 * instead of faulting in fresh pages that glibc gave back to the kernel (heap trimmed, or
 * blocks above the mmap threshold unmapped) when the previous coder was freed.
 */
#ifndef ALCM_ALLOC_INTERNAL_H
#define ALCM_ALLOC_INTERNAL_H

#include "format_internal.h"

/* Blocks below ALCM_BLOCK_CACHE_MIN are left to malloc (its bins keep them), blocks above
 * ALCM_BLOCK_CACHE_MAX too (the buffers of large chunks: kept by their coder or archive
 * while it lives, and not worth a peak RSS beyond it); at most ALCM_BLOCK_CACHE_BYTES are
 * held, in at most ALCM_BLOCK_CACHE_SLOTS blocks, whatever the threads and coders: the
 * tables and scratch of two decoding threads of small chunks. */
#define ALCM_BLOCK_CACHE_MIN ((size_t)32 << 10)
#define ALCM_BLOCK_CACHE_MAX ((size_t)1 << 20)
#define ALCM_BLOCK_CACHE_BYTES ((size_t)2 << 20)
#define ALCM_BLOCK_CACHE_SLOTS 16

/* A block of at least size bytes (contents undefined), its capacity in *cap; NULL when out
 * of memory. With the default allocator a cached block of size to 2 size + 64 KiB bytes is
 * reused (the smallest such); with any other allocator, or none cached, a new one is
 * allocated with `a`. Thread-safe. */
void *alcm_block_take(const alcm_allocator *a, size_t size, size_t *cap);
/* Gives back a block of cap bytes from alcm_block_take (or alcm_mem_alloc with the same
 * allocator): cached when `a` is the default allocator and the cache has room, else freed.
 * NULL is a no-op. Thread-safe. */
void alcm_block_give(const alcm_allocator *a, void *p, size_t cap);
/* Grows *p (capacity *cap, from alcm_block_take or the allocator) to at least need bytes,
 * contents not kept: a cached block when need is in the cache's range, else realloc (large
 * buffers keep their pages). ALCM_E_NOMEM leaves *p NULL and *cap 0, or unchanged. */
int alcm_block_grow(const alcm_allocator *a, uint8_t **p, size_t *cap, size_t need);
/* Frees every cached block (tests; also run when the library is unloaded). */
void alcm_block_cache_clear(void);
/* Blocks of ALCM_BLOCK_CACHE_MIN bytes or more of the default allocator that
 * alcm_block_take allocated since the process started (not found in the cache), for tests. */
uint64_t alcm_block_misses(void);

#endif
