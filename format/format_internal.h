/*
 * Internals shared by format/ and lib/: allocation, little-endian access, detail lines,
 * checked arithmetic and atomic output files. Not installed.
 */
#ifndef ALCM_FORMAT_INTERNAL_H
#define ALCM_FORMAT_INTERNAL_H

#include "alcm.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Allocation through the optional allocator; a NULL allocator means libc. */
void *alcm_mem_alloc(const alcm_allocator *a, size_t n);
void *alcm_mem_calloc(const alcm_allocator *a, size_t count, size_t size);
void *alcm_mem_realloc(const alcm_allocator *a, void *p, size_t n);
void alcm_mem_free(const alcm_allocator *a, void *p);
/* The default allocator (a NULL or libc allocator): malloc and realloc, with blocks of
 * 2 ALCM_HUGE_BLOCK bytes or more aligned to ALCM_HUGE_BLOCK and, past their first
 * ALCM_HUGE_BLOCK, advised to transparent huge pages (format/common.c). Freed with free(). */
#define ALCM_HUGE_BLOCK ((size_t)2 << 20)
void *alcm_sys_alloc(size_t n);
void *alcm_sys_realloc(void *p, size_t n);
/* As alcm_sys_alloc, for a block its user fills whole (a coder's work array, a decoded
 * chunk): from ALCM_HUGE_BLOCK bytes up, rounded up to whole huge pages, all advised. */
void *alcm_sys_alloc_filled(size_t n);
/* alcm_mem_alloc of such a block: alcm_sys_alloc_filled for the default allocator. */
void *alcm_mem_alloc_filled(const alcm_allocator *a, size_t n);
/* 1 if *a is the libc allocator (alcm_alloc_copy of NULL). */
int alcm_alloc_is_libc(const alcm_allocator *a);
/* Copies *src (or the libc allocator when src is NULL) into *dst. */
void alcm_alloc_copy(alcm_allocator *dst, const alcm_allocator *src);

/* BLAKE2b (RFC 7693), unkeyed, digests of 1 to 64 bytes (format/blake2b.c): the
 * spec's digest(X) with 32 bytes, equal to libsodium's crypto_generichash without a key. */
typedef struct alcm_blake2b {
	uint64_t h[8], t[2];
	uint8_t buf[128];
	size_t buflen, outlen;
} alcm_blake2b;
void alcm_blake2b_init(alcm_blake2b *s, size_t outlen);
void alcm_blake2b_update(alcm_blake2b *s, const void *data, size_t len);
/* Writes s->outlen bytes. */
void alcm_blake2b_final(alcm_blake2b *s, uint8_t *out);
/* Tests: 0 (default) the faster of the two compression functions, timed once a process; 1 the
 * plain one, 2 the AVX2 one where the CPU has it. */
extern int alcm_blake2b_kind;

/* A section whose digest its writer computes elsewhere (the encoder hashes the sections of
 * several tensors at once, on its threads): bytes written without hashing, then the section
 * ended with the BLAKE2b-256 of everything written into it. A section is written one way or
 * the other, never both. */
struct alcm_writer;
int alcm_writer_section_write_unhashed(struct alcm_writer *w, const void *data, size_t len);
int alcm_writer_section_end_digest(struct alcm_writer *w, const uint8_t *digest,
                                   uint32_t *index);

/* printf into a detail buffer of ALCM_DETAIL_MAX bytes; always NUL-terminated. */
void alcm_detail_set(char *detail, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void alcm_detail_vset(char *detail, const char *fmt, va_list ap);
/* Writes a byte string for messages: printable ASCII as is, others as \xNN; truncates. */
void alcm_detail_quote(char *dst, size_t cap, const char *s, size_t len);

/* Whether two BLAKE2b-256 digests differ. A section's digest is no secret (whoever has the
 * file computes it), so a plain memcmp: sodium_memcmp's constant-time byte loop was 7% of a
 * small tensor's pack and decode (a dozen digests a round trip). */
static inline int alcm_digest_differs(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, 32) != 0;
}

static inline int alcm_add_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r);
}
static inline int alcm_mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

static inline uint16_t alcm_load16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t alcm_load32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}
static inline uint64_t alcm_load64(const uint8_t *p)
{
	return (uint64_t)alcm_load32(p) | ((uint64_t)alcm_load32(p + 4) << 32);
}
static inline void alcm_store16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
/* On little-endian hosts one unaligned store: compilers do not always merge the byte loop,
 * and element stores sit in the decoders' innermost loops. */
static inline void alcm_store32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 4);
#else
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
#endif
}
static inline void alcm_store64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 8);
#else
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
#endif
}

/*
 * An output file written atomically. On Linux the data goes to an unnamed file in the
 * target's directory (O_TMPFILE), linked to the target at commit: linkat() fails with EEXIST
 * rather than replace a file (even one that appeared after open); with overwrite, commit
 * links it to a fresh ".<name>.XXXXXX" and renames that over the target at once. A process
 * killed before commit leaves nothing. Where O_TMPFILE is refused (or /proc is missing) the
 * data goes to a named "<dir>/.<name>.XXXXXX" that commit renames (overwrite) or links and
 * unlinks; every named temp file alive in the process is registered so that a signal
 * handler can remove it (alcm_atomic_cleanup_all()). Commit fsyncs the file first and the
 * directory after, unless sync is 0.
 */
typedef struct alcm_atomic {
	int fd;
	int overwrite;
	int sync;
	char *path;
	char *tmp;  /* the named temporary file, or NULL for an unnamed one */
	const alcm_allocator *alloc;
	/* Direct I/O (durable outputs): sequential writes are staged in aligned blocks that a
	 * background thread writes with O_DIRECT, so that the data does not go through the page
	 * cache (whose copies and page allocation cost more kernel time than the codec spends);
	 * the unaligned tail, and everything after a write that is not sequential, go through
	 * the page cache as before. dio_state: 0 undecided, 1 staging, -1 buffered for good. */
	struct alcm_dio *dio;
	int dio_state;
	uint64_t wpos;  /* where alcm_atomic_write() writes next (the fd's offset is not used) */
} alcm_atomic;

/* @return ALCM_OK, ALCM_E_EXISTS (target exists, no overwrite), ALCM_E_IO, ALCM_E_NOMEM. */
int alcm_atomic_open(alcm_atomic *f, const char *path, int overwrite, int sync,
                     const alcm_allocator *alloc, char *detail);
/* The same with the file's mode (alcm_atomic_open: 0644; secret keys: 0600). */
int alcm_atomic_open_mode(alcm_atomic *f, const char *path, int overwrite, int sync,
                          unsigned mode, const alcm_allocator *alloc, char *detail);
/* Writes all of buf (retrying short writes). */
int alcm_atomic_write(alcm_atomic *f, const void *buf, size_t len, char *detail);
int alcm_atomic_pwrite(alcm_atomic *f, const void *buf, size_t len, uint64_t off, char *detail);
/* Writes out what direct I/O has staged and goes on buffered: call before any use of f->fd
 * other than alcm_atomic_write/pwrite (ftruncate, fsync, another writer of the fd).
 * @return ALCM_OK or ALCM_E_IO (the write error of a staged block). */
int alcm_atomic_flush(alcm_atomic *f, char *detail);
/* Publishes the file (fsync, link or rename, fsync of the directory). */
int alcm_atomic_commit(alcm_atomic *f, char *detail);
/* Removes the temp file if not committed; frees the paths. Safe to call twice. */
void alcm_atomic_abort(alcm_atomic *f);

/* 1 if alcm_writer_require_minor(w, minor) would succeed: a new archive can be raised, an
 * append only keeps the minor version it has. Encoders ask before they code with a feature
 * of that version (and code without it otherwise). */
int alcm_writer_can_require_minor(const alcm_writer *w, unsigned minor);

/* Writes all of buf with pwrite/write loops. @return 0 or errno. */
int alcm_write_all(int fd, const void *buf, size_t len);
int alcm_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* After a write of len bytes to a file that will be fsynced: starts the write-out of its
 * dirty pages when len is large (1 MiB or more), so that the fsync has little left to wait
 * for. Never fails (the fsync reports errors). */
void alcm_write_behind(int fd, size_t len);
/* Reads exactly len bytes at off. @return 0, errno, or -1 on a short file. */
int alcm_pread_all(int fd, void *buf, size_t len, uint64_t off);
/* The alignments direct I/O on fd needs: of file offsets and lengths, and of buffer addresses
 * (statx STATX_DIOALIGN, else 4096 for both; at most 4 MiB). @return 0, or -1 where the file
 * system does not do direct I/O. */
int alcm_dio_alignment(int fd, size_t *align, size_t *mem_align);
/* Direct reads (format/reader.c): an archive of at least ALCM_DIO_FILE_MIN bytes, most of it
 * not in the page cache, is read with O_DIRECT where a read allows it: at least
 * ALCM_DIO_READ_MIN bytes into a buffer placed by alcm_reader_dio_shift(). ALCM_DIRECT_IO=0
 * turns it off; tests set alcm_dio_read_force to read every file so. */
#define ALCM_DIO_FILE_MIN ((uint64_t)32 << 20)
#define ALCM_DIO_READ_MIN ((size_t)64 << 10)
extern int alcm_dio_read_force;
/* Tests: the direct reads of whole blocks done so far (one per read or part of a read). */
extern uint64_t alcm_dio_reads;
/* Whether at least half of the first size bytes of fd are in the page cache (mincore over a
 * mapping that is never touched; a file that cannot be mapped counts as cached). */
int alcm_file_mostly_cached(int fd, uint64_t size);
/* The slack a buffer needs beyond the bytes it takes for alcm_reader_dio_shift() (0: the
 * reader reads through the page cache). */
size_t alcm_reader_dio_align(const alcm_reader *r);
/* Where in buf the bytes from position pos of section i should start (an offset below
 * alcm_reader_dio_align(r)) for the reader to read them with O_DIRECT: the file offset and
 * the address then agree modulo the alignment. 0 when it reads through the page cache. */
size_t alcm_reader_dio_shift(const alcm_reader *r, uint32_t i, uint64_t pos, const void *buf);
/* Reads started now and waited for later, at most `depth` (> 0) at a time, by a thread of
 * their own (one user thread's queue), in the order started: direct reads where the reader
 * has them, else through the page cache. alcm_readq_new fails (ALCM_E_UNSUPPORTED) for a
 * reader of memory: the caller then reads as before; ALCM_E_NOMEM. */
typedef struct alcm_readq alcm_readq;
int alcm_readq_new(alcm_readq **q, alcm_reader *r, unsigned depth);
/* Starts reading len (> 0) bytes at pos of section i into buf, placed by
 * alcm_reader_dio_shift for a direct read. @return ALCM_OK with *ticket, or ALCM_E_ARG (out of
 * the section, or `depth` reads not yet waited for). */
int alcm_readq_start(alcm_readq *q, uint32_t i, uint64_t pos, void *buf, size_t len,
                     unsigned *ticket);
/* Waits for the read of ticket. @return ALCM_OK or ALCM_E_IO (the reader's detail says). */
int alcm_readq_wait(alcm_readq *q, unsigned ticket);
/* Ends q's thread (after the read under way; the reads not yet begun are dropped), frees q
 * (NULL: nothing). */
void alcm_readq_free(alcm_readq *q);

#endif
