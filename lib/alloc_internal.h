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
/* The work arrays of encoding coders (alcm_coder_set_encoding) have a cache of their own,
 * larger: a training loop saving its tensors every step creates an encoder per save, and
 * each would fault in its symbol and plane arrays again (a fresh 4 KiB page costs ~20 us
 * here). An encoder's arrays live while it packs anyway, so keeping them between encoders
 * adds no peak; a decoder's blocks never go there (alcm-unpack's peak RSS rose by 14-17 MiB
 * when they did). */
#define ALCM_BLOCK_ENC_MAX ((size_t)4 << 20)
#define ALCM_BLOCK_ENC_BYTES ((size_t)16 << 20)
#define ALCM_BLOCK_ENC_SLOTS 32

/* Which cache a block goes back to: the decoders' rule (the one above) or the encoders'. */
enum { ALCM_BLOCK_DEC = 0, ALCM_BLOCK_ENC = 1 };

/* A block of at least size bytes (contents undefined), its capacity in *cap; NULL when out
 * of memory. With the default allocator a cached block of size to 2 size + 64 KiB bytes is
 * reused (the smallest such, from either cache, when size is within `kind`'s range); with
 * any other allocator, or none cached, a new one is allocated with `a`. Thread-safe. */
void *alcm_block_take_kind(const alcm_allocator *a, int kind, size_t size, size_t *cap);
/* Gives back a block of cap bytes from alcm_block_take (or alcm_mem_alloc with the same
 * allocator): cached in `kind`'s cache when `a` is the default allocator and that cache has
 * room, else freed. NULL is a no-op. Thread-safe. */
void alcm_block_give_kind(const alcm_allocator *a, int kind, void *p, size_t cap);
/* The same with kind ALCM_BLOCK_DEC. */
void *alcm_block_take(const alcm_allocator *a, size_t size, size_t *cap);
void alcm_block_give(const alcm_allocator *a, void *p, size_t cap);
/* Grows *p (capacity *cap, from alcm_block_take or the allocator) to at least need bytes,
 * contents not kept: a cached block when need is in the cache's range, else realloc (large
 * buffers keep their pages); a first large block in huge pages (alcm_mem_alloc_filled) when
 * `filled` says its user fills all of it (decoded chunks, sections read), not a bound that
 * it may use a little of (scratch). ALCM_E_NOMEM leaves *p NULL and *cap 0, or unchanged. */
int alcm_block_grow(const alcm_allocator *a, uint8_t **p, size_t *cap, size_t need, int filled);
/* A block of at least n bytes that its user fills whole and keeps for larger needs later (a
 * reader's tensor buffer, an encoder's whole-tensor buffer): from ALCM_WHOLE_FROM bytes on,
 * rounded up to whole huge pages (alcm_mem_alloc_filled), so that growing it faults in a few
 * huge pages rather than every 4 KiB page, and the next needs up to that size reuse it.
 * Its capacity in *cap; NULL (and *cap 0) when out of memory. */
#define ALCM_WHOLE_FROM ((size_t)256 << 10)
void *alcm_mem_alloc_whole(const alcm_allocator *a, size_t n, size_t *cap);
/* Idle objects kept across coders, for the default allocator only (alcm_obj_*): zstd
 * contexts, with their workspace. Creating one runs CPUID (zstd's check for BMI2), which a
 * virtual machine traps: 7.5 us a context here, three for a small encoder (4% of packing a
 * 64 x 1024 gradient), one for each decoding thread. At most ALCM_OBJ_SLOTS of each kind,
 * ALCM_OBJ_MAX bytes each (a larger one is freed: a high level's tables, a streaming
 * context's window; level 3 after 1 MiB chunks holds 1.3 MB) and ALCM_OBJ_BYTES in all. */
enum { ALCM_OBJ_ZSTD_C = 0, ALCM_OBJ_ZSTD_D = 1, ALCM_OBJ_KINDS = 2 };
#define ALCM_OBJ_SLOTS 8
#define ALCM_OBJ_MAX ((size_t)4 << 20)
#define ALCM_OBJ_BYTES ((size_t)8 << 20)
/* An idle object of `kind` taken out of the cache; NULL if none. Thread-safe. */
void *alcm_obj_take(int kind);
/* Keeps p (its size `bytes`) for the next alcm_obj_take of `kind`, or calls drop(p) when the
 * cache has no room. drop frees it when the cache is cleared. Thread-safe. */
void alcm_obj_give(int kind, void *p, size_t bytes, void (*drop)(void *));
/* Bytes the idle objects hold now, for tests. */
size_t alcm_obj_cache_held(void);
/* Frees every cached block of both caches and every idle object (tests; also run when the
 * library is unloaded). */
void alcm_block_cache_clear(void);
/* Bytes held by the cache of `kind` now, for tests. */
size_t alcm_block_cache_held(int kind);
/* Blocks of ALCM_BLOCK_CACHE_MIN bytes or more of the default allocator that
 * alcm_block_take allocated since the process started (not found in the cache), for tests. */
uint64_t alcm_block_misses(void);

#endif
