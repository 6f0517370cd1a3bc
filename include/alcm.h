/*
 * alcm.h - the public interface of libalcm, the .alcm tensor archive library.
 *
 * Copyright (c) 2026 the alcm authors. MIT licence, see LICENSE.
 *
 * Overview
 * ========
 * An .alcm file is a container of checksummed sections (see spec/alcm-format.md). The
 * library has three layers, and this header declares all of them:
 *
 *   1. The container (alcm_reader, alcm_writer): sections, BLAKE2b-256 digests, the section
 *      table, limits. It knows nothing of tensors.
 *   2. The codec (alcm_encoder, alcm_archive): turns tensors into sections and back, lossless
 *      by default, error-bounded lossy on request.
 *   3. File formats (alcm_input, alcm_output): .npy, .npz and .safetensors readers and
 *      writers, so that tools never parse those formats themselves.
 *
 * Decoding a file
 * ---------------
 *   1. alcm_limits_default(&lim), then tighten what your application allows.
 *   2. alcm_reader_open_file() (or _open_memory()) parses and checks the header, the commit
 *      slots and the section table against the file size and the limits. Nothing of the
 *      payload is read yet.
 *   3. alcm_archive_open() reads and checks the metadata and the tensor directory.
 *   4. alcm_archive_tensor_info() gives each tensor's name, dtype, shape and decoded size.
 *      The decoded size is computed from the shape, which the file declares: it was checked
 *      against lim.max_elements and lim.max_decoded_bytes, but it is still a number a
 *      stranger chose. Allocate it only if your application can afford it.
 *   5. alcm_archive_decode() decodes one tensor into a buffer you own. It reads only the
 *      sections of that tensor and verifies their digests as it reads them.
 *   6. alcm_archive_free(), then alcm_reader_free().
 *
 * Conventions
 * -----------
 * - Every function that can fail returns an int: ALCM_OK (0) or an enum alcm_status value.
 *   Objects keep one detail line (alcm_*_detail()) naming the file, section or tensor and
 *   the byte offset where the first problem was found.
 * - A fatal error while decoding poisons the object: later calls return ALCM_E_STATE.
 * - The library never prints, never aborts, and never opens a network connection.
 * - All multi-byte values in files are little-endian. Tensor data in memory is in C order,
 *   little-endian, packed, whatever the host (big-endian hosts are not supported in 1.0).
 * - Sizes are in bytes unless a name says otherwise ("elems", "count").
 * - *_free(NULL) is a no-op.
 */
#ifndef ALCM_H
#define ALCM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ALCM_STATIC_DEFINE)
#define ALCM_API
#elif defined(__GNUC__)
#define ALCM_API __attribute__((visibility("default")))
#else
#define ALCM_API
#endif

/** Library version (not the format version). */
#define ALCM_VERSION_MAJOR 0
#define ALCM_VERSION_MINOR 1
#define ALCM_VERSION_PATCH 0
#define ALCM_VERSION_STRING "0.1.0"

/** Newest container format version this library reads and writes (spec/alcm-format.md). A writer
 * puts the lowest minor version whose features the archive uses in the header (chapter 8). */
#define ALCM_FORMAT_MAJOR 1
#define ALCM_FORMAT_MINOR 1

/** Bytes of a detail line (the one-line reason of a failure) with its terminating NUL. */
#define ALCM_DETAIL_MAX 512

/** @return the library version string, e.g. "0.1.0". Static, never NULL. */
ALCM_API const char *alcm_version(void);

/**
 * The number of CPUs this process may run on: its affinity mask (taskset, numactl, a batch
 * scheduler's binding), capped by a cgroup CPU quota rounded up (cgroup v2 `cpu.max` on the
 * process's path, or v1 `cpu.cfs_quota_us`: container and Slurm limits). Every `threads = 0`
 * ("default") in this library means this many. At least 1.
 */
ALCM_API unsigned alcm_cpu_count(void);

/* ------------------------------------------------------------------------------------ */
/* Status codes                                                                          */
/* ------------------------------------------------------------------------------------ */

enum alcm_status {
	ALCM_OK = 0,
	ALCM_E_ARG = 1,         /**< a bad argument from the caller (NULL, out of range) */
	ALCM_E_IO = 2,          /**< the operating system refused a read, write, rename... */
	ALCM_E_CORRUPT = 3,     /**< the input is malformed: it breaks a rule of the spec */
	ALCM_E_DIGEST = 4,      /**< a section's or the table's BLAKE2b digest does not match */
	ALCM_E_LIMIT = 5,       /**< a size or count exceeds an alcm_limits field */
	ALCM_E_UNSUPPORTED = 6, /**< valid, but needs a feature this build lacks */
	ALCM_E_NOMEM = 7,       /**< an allocation failed */
	ALCM_E_STATE = 8,       /**< the object is poisoned by an earlier error or misused */
	ALCM_E_EXISTS = 9,      /**< the output exists and overwriting was not asked for */
	ALCM_E_NOTFOUND = 10,   /**< no tensor or section of that name */
	ALCM_E_BOUND = 11,      /**< a lossy request cannot be honoured (e.g. lossy integers) */
	ALCM_E_SIGNATURE = 12,  /**< no signature, a bad one, or one made by another key */
	ALCM_E_BUSY = 13        /**< another writer holds the archive's lock (ALCM_WRITE_NO_WAIT) */
};

/** @return a static, lowercase description of a status code. Never NULL. */
ALCM_API const char *alcm_strerror(int status);

/* ------------------------------------------------------------------------------------ */
/* Allocation and limits                                                                 */
/* ------------------------------------------------------------------------------------ */

/**
 * Optional allocator used for every allocation the library makes. Pass NULL anywhere an
 * allocator is accepted to use malloc/realloc/free. The functions must be thread-safe when
 * an encoder runs with several threads.
 */
typedef struct alcm_allocator {
	void *(*malloc_fn)(void *opaque, size_t size);
	void *(*realloc_fn)(void *opaque, void *ptr, size_t size);
	void (*free_fn)(void *opaque, void *ptr);
	void *opaque;
} alcm_allocator;

/**
 * Frees the memory the library keeps between calls and returns how many bytes that was.
 * Encoders and decoders keep their freed work arrays (symbol arrays, coder scratch, an
 * encoder's coded chunks; blocks of malloc only, never a caller's allocator's) in two
 * process-wide caches, up to 16 MiB for encoders and 2 MiB for decoders, and their zstd
 * contexts with their workspace (up to 8 MiB), so that the next one finds them mapped and
 * made: a training loop that saves every step pays their page faults once. A process that is done
 * compressing for a while (after a checkpoint save) may call this to hand them back; the next
 * encoder or decoder then allocates them again. Thread-safe; blocks in use by live encoders
 * and decoders are not touched and go to the caches when those are freed.
 */
ALCM_API size_t alcm_release_memory(void);

/**
 * Limits a reader enforces on untrusted input. Every count and size read from a file is
 * checked against these (and against the file size) before anything is allocated for it.
 * Defaults come from alcm_limits_default(); each field's comment there names the attack it
 * stops. A limit error (ALCM_E_LIMIT) is distinct from a corruption error: the file may be
 * valid, but larger than this application agreed to handle.
 */
typedef struct alcm_limits {
	uint32_t max_sections;       /**< entries in the section table */
	uint64_t max_section_bytes;  /**< stored length of any one section */
	uint64_t max_meta_bytes;     /**< metadata, directory, attribute and predictor sections */
	uint32_t max_tensors;        /**< tensors in a directory */
	uint32_t max_ndim;           /**< rank of a tensor (hard cap: ALCM_MAX_NDIM) */
	uint32_t max_name_bytes;     /**< length of a tensor name */
	uint64_t max_elements;       /**< elements of one tensor */
	uint64_t max_decoded_bytes;  /**< decoded bytes of one tensor */
	uint32_t zstd_window_log_max;/**< passed to ZSTD_d_windowLogMax */
	uint32_t max_chain;          /**< frames of a checkpoint series one tensor's decoding
	                                  may go through (spec 6.12.6) */
} alcm_limits;

/** Hard cap on tensor rank; limits can only lower it. */
#define ALCM_MAX_NDIM 32

/** Fills *lim with conservative defaults suited to checkpoints up to tens of GB. */
ALCM_API void alcm_limits_default(alcm_limits *lim);

/* ------------------------------------------------------------------------------------ */
/* Container: reader                                                                     */
/* ------------------------------------------------------------------------------------ */

/** Section flags, as stored in the table. */
#define ALCM_SECTION_CRITICAL 0x1u /**< a reader that does not know the type must refuse */

/** Digest state of a section as known to a reader. */
enum alcm_digest_state {
	ALCM_DIGEST_UNCHECKED = 0, /**< not read yet */
	ALCM_DIGEST_OK = 1,
	ALCM_DIGEST_BAD = 2
};

/** Header flags. */
#define ALCM_FLAG_STREAM 0x1u /**< appendable stream archive: an uncommitted tail is allowed */

typedef struct alcm_section_info {
	char type[5];            /**< four ASCII characters and a NUL */
	uint32_t flags;          /**< ALCM_SECTION_* */
	uint32_t tag;            /**< owner-defined number (tensor or frame index) */
	uint64_t offset;         /**< from the start of the file; a multiple of 64 */
	uint64_t length;         /**< stored bytes */
	uint8_t digest[32];      /**< BLAKE2b-256 of the stored bytes, as the table declares */
	int digest_state;        /**< enum alcm_digest_state */
	int known;               /**< 1 if this library knows the type */
} alcm_section_info;

typedef struct alcm_reader alcm_reader;

/** Reader open flags. */
#define ALCM_READ_NO_VERIFY 0x1u /**< skip digest checks on section reads (trusted input) */

/**
 * Opens an archive from a path, reading with pread(2); the file stays open until
 * alcm_reader_free(). Checks the header, the commit slots and the table (its digest, every
 * offset and length against the file size and lim).
 * @param out  receives the reader, also on failure (so that alcm_reader_detail() can say
 *             why); free it with alcm_reader_free() in both cases. May receive NULL if the
 *             reader itself could not be allocated.
 * @param lim  NULL for alcm_limits_default().
 * @return ALCM_OK, ALCM_E_IO, ALCM_E_CORRUPT, ALCM_E_DIGEST, ALCM_E_LIMIT,
 *         ALCM_E_UNSUPPORTED (newer major version, unknown critical section), ALCM_E_NOMEM.
 */
ALCM_API int alcm_reader_open_file(alcm_reader **out, const char *path, const alcm_limits *lim,
                                   const alcm_allocator *alloc, unsigned flags);

/**
 * Same as alcm_reader_open_file() on bytes in memory. The buffer is borrowed: it must
 * outlive the reader. `display_name` is used in messages (NULL: "<memory>").
 */
ALCM_API int alcm_reader_open_memory(alcm_reader **out, const void *buf, size_t len,
                                     const char *display_name, const alcm_limits *lim,
                                     const alcm_allocator *alloc, unsigned flags);

ALCM_API void alcm_reader_free(alcm_reader *r);

/** @return the detail line of the last error ("" if none). Valid until the next call. */
ALCM_API const char *alcm_reader_detail(const alcm_reader *r);

/** Format version read from the header. */
ALCM_API void alcm_reader_version(const alcm_reader *r, unsigned *major, unsigned *minor);
/** Header flags (ALCM_FLAG_*). */
ALCM_API uint32_t alcm_reader_flags(const alcm_reader *r);
/** Bytes after the committed table (only a stream archive may have them). */
ALCM_API uint64_t alcm_reader_tail_bytes(const alcm_reader *r);
/** Generation of the commit slot in use (1 for a new archive, +1 per append). */
ALCM_API uint64_t alcm_reader_generation(const alcm_reader *r);
ALCM_API uint64_t alcm_reader_file_size(const alcm_reader *r);

ALCM_API uint32_t alcm_reader_section_count(const alcm_reader *r);

/** @return ALCM_OK or ALCM_E_ARG if `index` is out of range. */
ALCM_API int alcm_reader_section_info(const alcm_reader *r, uint32_t index,
                                      alcm_section_info *info);

/**
 * Finds the first section of `type` (4 characters) at or after `start`.
 * @return ALCM_OK with *index set, or ALCM_E_NOTFOUND.
 */
ALCM_API int alcm_reader_find_section(const alcm_reader *r, const char *type, uint32_t start,
                                      uint32_t *index);

/**
 * Reads the stored bytes of one section into `out` (capacity `cap`, at least the section's
 * length) and verifies its digest unless the reader was opened with ALCM_READ_NO_VERIFY.
 * @return ALCM_OK, ALCM_E_ARG (cap too small), ALCM_E_IO, ALCM_E_DIGEST.
 */
ALCM_API int alcm_reader_section_read(alcm_reader *r, uint32_t index, void *out, size_t cap);

/**
 * Reads `len` bytes at `pos` inside a section, without verifying the digest (the caller
 * checks the data it gets, or verifies the whole section with alcm_reader_verify_section()).
 * @return ALCM_OK, ALCM_E_ARG (range outside the section), ALCM_E_IO.
 */
ALCM_API int alcm_reader_section_pread(alcm_reader *r, uint32_t index, uint64_t pos, void *out,
                                       size_t len);

/** Verifies one section's digest by streaming it (bounded memory). */
ALCM_API int alcm_reader_verify_section(alcm_reader *r, uint32_t index);

/**
 * Verifies every section's digest and that every byte between sections is zero padding.
 * Streams the file with a fixed buffer: memory does not grow with the archive.
 * @param bad  receives the index of the first bad section (UINT32_MAX for padding).
 * @return ALCM_OK, ALCM_E_DIGEST, ALCM_E_CORRUPT (non-zero padding), ALCM_E_IO.
 */
ALCM_API int alcm_reader_verify(alcm_reader *r, uint32_t *bad);

/**
 * @return a pointer to the section's bytes when the reader was opened from memory, else
 * NULL. Digest not verified.
 */
ALCM_API const uint8_t *alcm_reader_section_data(const alcm_reader *r, uint32_t index);

/* ------------------------------------------------------------------------------------ */
/* Container: writer                                                                     */
/* ------------------------------------------------------------------------------------ */

typedef struct alcm_writer alcm_writer;

/** Writer open flags. */
#define ALCM_WRITE_OVERWRITE 0x1u /**< replace an existing file (else ALCM_E_EXISTS) */
#define ALCM_WRITE_STREAM 0x2u    /**< set ALCM_FLAG_STREAM: the archive may be appended to */
#define ALCM_WRITE_NO_SYNC 0x4u   /**< skip fsync (tests, scratch files) */
#define ALCM_WRITE_NO_WAIT 0x8u   /**< append: fail with ALCM_E_BUSY instead of waiting while
                                       another writer holds the archive's lock */
#define ALCM_WRITE_PRIVATE 0x10u  /**< alcm_atomic_file_open(): mode 0600 (secret keys) */

/**
 * Starts a new archive at `path`. Data goes to an unnamed temporary file in the same
 * directory (O_TMPFILE; a named ".NAME.XXXXXX" where the file system refuses it); the target
 * appears only at alcm_writer_commit(), atomically (fsync, link or rename, fsync of the
 * directory). Freeing an uncommitted writer removes the temporary file; a process killed
 * before commit leaves none (with a named one: SIGKILL leaves it, alcm_atomic_cleanup_all()
 * removes it on other signals).
 */
ALCM_API int alcm_writer_open_file(alcm_writer **out, const char *path, unsigned flags,
                                   const alcm_allocator *alloc);

/** Starts a new archive in memory; fetch it with alcm_writer_memory() after commit. */
ALCM_API int alcm_writer_open_memory(alcm_writer **out, unsigned flags,
                                     const alcm_allocator *alloc);

/**
 * Opens an existing stream archive to append sections. Earlier sections are neither read
 * (beyond the table) nor rewritten. New sections go after the committed table; commit
 * writes a new table, fsyncs, then flips the inactive commit slot and fsyncs again, so a
 * crash at any point leaves the previous archive readable.
 *
 * The writer holds an exclusive lock on the file from this call until alcm_writer_commit()
 * returns or alcm_writer_free() (spec 7.2): an open file description lock (fcntl
 * F_OFD_SETLKW, which conflicts with POSIX fcntl/lockf locks of other programs; flock(2)
 * where the kernel lacks it). A second appender, in this process or another, waits for it,
 * or with ALCM_WRITE_NO_WAIT in `flags` fails with ALCM_E_BUSY at once. Two append writers
 * on one file in one thread therefore deadlock without ALCM_WRITE_NO_WAIT. Readers take no
 * lock and need none: they see the previous generation or the new one. The lock is released
 * by the kernel when the process dies; a child forked while it is held shares it until the
 * writer releases it (commit or free), however long the child lives.
 * @param flags  ALCM_WRITE_NO_SYNC, ALCM_WRITE_NO_WAIT.
 * @return ALCM_OK, ALCM_E_BUSY, ALCM_E_IO (also when the file system refuses locks),
 *         ALCM_E_STATE (not a stream archive), or a reader's error for the archive.
 */
ALCM_API int alcm_writer_open_append(alcm_writer **out, const char *path,
                                     const alcm_limits *lim, const alcm_allocator *alloc,
                                     unsigned flags);

/** Header flags (ALCM_FLAG_*) the archive will carry. */
ALCM_API uint32_t alcm_writer_flags(const alcm_writer *w);
/** The minor format version the archive's header carries (0 until a feature raises it). */
ALCM_API unsigned alcm_writer_minor(const alcm_writer *w);
/**
 * Declares that the archive uses a feature of format 1.`minor` (spec chapter 8: writers write
 * the lowest minor version whose features they use). A new archive's header is raised to it
 * (never lowered). An append cannot change the header: it returns ALCM_E_UNSUPPORTED when the
 * archive has a lower minor version, and the caller then codes without that feature.
 * @return ALCM_E_ARG for a minor above ALCM_FORMAT_MINOR, ALCM_E_STATE after commit.
 */
ALCM_API int alcm_writer_require_minor(alcm_writer *w, unsigned minor);
/** Sections so far, those of the archive being appended to included. */
ALCM_API uint32_t alcm_writer_section_count(const alcm_writer *w);
/** Reads back info about a section of this writer (old or new). */
ALCM_API int alcm_writer_section_info(const alcm_writer *w, uint32_t index,
                                      alcm_section_info *info);

/** Begins a section; the payload is streamed with _write() and digested as it goes. */
ALCM_API int alcm_writer_section_begin(alcm_writer *w, const char *type, uint32_t flags,
                                       uint32_t tag);
ALCM_API int alcm_writer_section_write(alcm_writer *w, const void *data, size_t len);
/** Ends the current section. @param index receives its table index (may be NULL). */
ALCM_API int alcm_writer_section_end(alcm_writer *w, uint32_t *index);

/** begin + write + end in one call. */
ALCM_API int alcm_writer_add_section(alcm_writer *w, const char *type, uint32_t flags,
                                     uint32_t tag, const void *data, size_t len,
                                     uint32_t *index);

/**
 * Drops the sections written since the writer had `count` of them (the value
 * alcm_writer_section_count() gave then): they are not committed, and their bytes are
 * overwritten or cut off. Only sections of this writer can be dropped, never those of the
 * archive being appended to. Used to code something again at another setting.
 * @return ALCM_E_ARG for a count outside [sections of the old archive, sections now],
 *         ALCM_E_STATE inside a section or after commit.
 */
ALCM_API int alcm_writer_rollback(alcm_writer *w, uint32_t count);

/** Writes the table and the commit slot, and publishes the file. */
ALCM_API int alcm_writer_commit(alcm_writer *w);

/** After commit of a memory writer: the archive bytes (owned by the writer). */
ALCM_API int alcm_writer_memory(const alcm_writer *w, const void **buf, size_t *len);

/** Bytes written so far (header and sections). */
ALCM_API uint64_t alcm_writer_bytes(const alcm_writer *w);

ALCM_API void alcm_writer_free(alcm_writer *w);
ALCM_API const char *alcm_writer_detail(const alcm_writer *w);

/* ------------------------------------------------------------------------------------ */
/* Tensors                                                                               */
/* ------------------------------------------------------------------------------------ */

/** Element types. The numbers are stored in files: never renumber. */
enum alcm_dtype {
	ALCM_DTYPE_BOOL = 1,
	ALCM_DTYPE_U8 = 2,
	ALCM_DTYPE_I8 = 3,
	ALCM_DTYPE_U16 = 4,
	ALCM_DTYPE_I16 = 5,
	ALCM_DTYPE_U32 = 6,
	ALCM_DTYPE_I32 = 7,
	ALCM_DTYPE_U64 = 8,
	ALCM_DTYPE_I64 = 9,
	ALCM_DTYPE_F16 = 10,
	ALCM_DTYPE_BF16 = 11,
	ALCM_DTYPE_F32 = 12,
	ALCM_DTYPE_F64 = 13
};

/** @return bytes per element, or 0 for an unknown dtype. */
ALCM_API size_t alcm_dtype_size(int dtype);
/** @return a short name ("float32", "bfloat16", "int8", "bool"...), or NULL if unknown. */
ALCM_API const char *alcm_dtype_name(int dtype);
/** @return 1 for the float types (f16, bf16, f32, f64). */
ALCM_API int alcm_dtype_is_float(int dtype);

/**
 * A tensor in memory: C order, little-endian. Names are byte strings of `name_len` bytes
 * (they may hold any byte; they are kept byte for byte).
 */
typedef struct alcm_tensor {
	const char *name;
	size_t name_len;
	int dtype;                      /**< enum alcm_dtype */
	uint32_t ndim;                  /**< 0 for a scalar */
	uint64_t shape[ALCM_MAX_NDIM];
	const void *data;               /**< nbytes bytes; may be NULL when nbytes == 0 */
	uint64_t nbytes;                /**< elements * dtype size */
} alcm_tensor;

/**
 * Element count of a shape, with overflow check.
 * @return ALCM_OK, or ALCM_E_LIMIT on overflow of 64 bits.
 */
ALCM_API int alcm_shape_elements(const uint64_t *shape, uint32_t ndim, uint64_t *elems);

/* ------------------------------------------------------------------------------------ */
/* Codec: encoding                                                                       */
/* ------------------------------------------------------------------------------------ */

typedef struct alcm_predictor alcm_predictor;

/** Coding modes. The numbers are stored in files. */
enum alcm_mode {
	ALCM_MODE_LOSSLESS = 0,  /**< bit-exact (the default) */
	ALCM_MODE_MAX_ERROR = 1, /**< |x - x'| <= bound for every value */
	ALCM_MODE_REL_ERROR = 2, /**< |x - x'| <= bound * max|x| of the value's channel */
	ALCM_MODE_SNR = 3,       /**< tensor SNR >= bound dB; also |x - x'| <= step/2 */
	ALCM_MODE_BITS = 4       /**< fixed width: `bits` bits per value, per-channel scale */
};

/** What to do when a lossy mode meets an integer or bool tensor. */
enum alcm_int_policy {
	ALCM_INT_LOSSLESS = 0, /**< store it losslessly and count it in the report (default) */
	ALCM_INT_REFUSE = 1    /**< fail with ALCM_E_BOUND */
};

typedef struct alcm_pack_options {
	int mode;             /**< enum alcm_mode */
	double bound;         /**< E, R or dB, depending on mode */
	unsigned bits;        /**< for ALCM_MODE_BITS: 2..16 */
	double prune;         /**< fraction of smallest magnitudes to drop into masks, 0..0.25 */
	int level;            /**< zstd level, 1..19 (default 3); lossless streams that
	                           code their chunk's sample smaller at level 1 use 1 */
	unsigned threads;     /**< worker threads; 0 = all cores */
	uint64_t chunk_bytes; /**< raw bytes per independently coded chunk (default 4 MiB) */
	int int_policy;       /**< enum alcm_int_policy */
	const char *producer; /**< stored in the metadata; NULL: "libalcm <version>" */
	const char *source_format; /**< stored in the metadata, e.g. "npz"; may be NULL */
	uint32_t frame;       /**< frame number of a stream archive (the TDIR's tag), else 0 */
	/** NULL: no PRED in a format 1.1 archive; in a 1.0 one the version 1 default weights
	 * (readers of 1.0 refuse other PRED versions). A predictor named here is stored in
	 * PRED; version 2 weights make a new archive format 1.1, and are left out of an append
	 * to a 1.0 archive (spec 6.7) */
	const alcm_predictor *predictor;
	/**
	 * Called on the caller's thread after each chunk's coded bytes are written, in order, with
	 * the raw bytes of the current tensor coded so far and the tensor's raw size: a progress
	 * bar moves within a large tensor. NULL: none. It must not call the encoder.
	 */
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	void *progress_opaque;
	/**
	 * Highest minor format version (1.x) whose codings the encoder may use: 0 keeps to the
	 * codings of format 1.0, so that 1.0 readers open the archive. Default
	 * ALCM_FORMAT_MINOR. Format 1.1 adds the modelled symbol coding of lossy chunks (spec
	 * 6.5.6): per-channel token tables and rANS, smaller than 1.0's byte planes. An archive
	 * is marked 1.1 only when a chunk uses it; an append to a 1.0 stream archive keeps to
	 * 1.0 codings whatever this says.
	 */
	unsigned max_minor;
} alcm_pack_options;

ALCM_API void alcm_pack_options_default(alcm_pack_options *opt);

/** What the encoder did with one tensor. */
typedef struct alcm_tensor_report {
	uint64_t raw_bytes;     /**< the tensor's bytes */
	uint64_t stored_bytes;  /**< bytes of its sections in the archive */
	int mode;               /**< mode used (lossless for integers under a lossy request) */
	unsigned bits;          /**< bits per symbol for lossy modes, 0 for lossless */
	double max_abs_error;   /**< largest |x - x'| over finite values (0 when lossless) */
	double snr_db;          /**< signal-to-noise ratio (INFINITY when exact) */
	uint64_t pruned;        /**< values dropped into the mask */
	uint64_t escapes;       /**< values stored exactly (NaN, inf, -0, subnormal, outliers) */
	int downgraded;         /**< 1 if a lossy request was stored losslessly (integers) */
} alcm_tensor_report;

typedef struct alcm_encoder alcm_encoder;

/**
 * Creates an encoder that writes tensors as sections of `w` (borrowed; the caller commits
 * it after alcm_encoder_finish()).
 * @return ALCM_OK, ALCM_E_ARG (options out of range), ALCM_E_NOMEM.
 */
ALCM_API int alcm_encoder_new(alcm_encoder **out, alcm_writer *w, const alcm_pack_options *opt,
                              const alcm_allocator *alloc);

/**
 * Codes one tensor and writes its sections. The tensor's data is only read during the call.
 * @param rep  receives what was done (may be NULL).
 */
ALCM_API int alcm_encoder_add(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep);

/**
 * Pipelined alcm_encoder_add(): the same sections and archive bytes, but the call returns once
 * the tensor is checked, its parameters chosen and its chunks queued for the encoder's own
 * threads (alcm_pack_options.threads of them, started on the first call), which go on
 * coding it while the caller reads the next tensor; the next tensor's chunks start while
 * this one's last are still coding, so threads do not wait at tensor boundaries. Until a
 * tensor larger than one chunk comes, tensors are coded during the call, in the caller's
 * thread (a small file starts no thread).
 *
 * Contract: t->data, t->name and *rep are borrowed, and must stay valid and unchanged until
 * the NEXT call on the encoder returns (alcm_encoder_queue, _add, _add_section, _set_mode,
 * _undo or _finish), which finishes this tensor and fills *rep; *t itself is copied. So a
 * reader needs two buffers, used in turn (alcm_input_keep_previous()).
 * The progress callback is called from the caller's thread, during those calls.
 * @return as alcm_encoder_add(), for this tensor's checks or for a tensor queued before it
 *         (the encoder is then poisoned, as after any coding or writing error).
 */
ALCM_API int alcm_encoder_queue(alcm_encoder *e, const alcm_tensor *t, alcm_tensor_report *rep);
/**
 * alcm_encoder_queue() with the tensor's bytes given in pieces, so that a reader need not
 * hold whole tensors: alcm_encoder_queue_begin() with t's name, dtype, shape and nbytes
 * (t->data is not read; t and t->name are copied), then alcm_encoder_queue_append() with its
 * bytes in order, in pieces of any size (empty ones too), then alcm_encoder_queue_end().
 * The same sections and archive bytes as alcm_encoder_add() of the whole tensor.
 *
 * Memory: a lossless tensor larger than one chunk (alcm_pack_options.chunk_bytes) is copied
 * chunk by chunk into threads + 1 slots of chunk_bytes, each coded by the encoder's threads
 * as soon as it is full; append waits while every slot is in use. So is a float32 or float64
 * tensor under ALCM_MODE_MAX_ERROR without pruning, unless its first chunk holds at most 256
 * distinct values (it may be on a lattice, which takes the whole tensor to tell: spec
 * 6.5.11). Other tensors are copied into a buffer of their size (two such buffers, used in
 * turn) and queued whole at the end: the other lossy codings choose their steps from
 * statistics of the whole tensor, and a small tensor before any large one is coded in the
 * caller's thread (as alcm_encoder_queue() does).
 *
 * No other call on the encoder may come between begin and end (ALCM_E_STATE). *rep is
 * borrowed as in alcm_encoder_queue(): it is filled by the time the end of the NEXT tensor,
 * or alcm_encoder_flush(), or alcm_encoder_finish() returns. The progress callback is
 * called from the caller's thread during these calls.
 * @return begin: as alcm_encoder_queue() for the tensor's checks (ALCM_E_ARG, ALCM_E_BOUND,
 *         ALCM_E_LIMIT, ALCM_E_NOMEM), ALCM_E_STATE (a tensor is open, or the encoder is
 *         finished or poisoned), or the error of a tensor queued before it.
 *         append: ALCM_E_ARG when the bytes would go past t->nbytes (nothing is taken, the
 *         tensor stays open), ALCM_E_STATE (no tensor open), or the error of a queued tensor.
 *         end: ALCM_E_ARG when fewer than t->nbytes were given (the tensor is dropped; the
 *         encoder is poisoned if its chunks were already queued), ALCM_E_STATE, or as
 *         alcm_encoder_queue().
 */
ALCM_API int alcm_encoder_queue_begin(alcm_encoder *e, const alcm_tensor *t,
                                      alcm_tensor_report *rep);
ALCM_API int alcm_encoder_queue_append(alcm_encoder *e, const void *data, size_t len);
ALCM_API int alcm_encoder_queue_end(alcm_encoder *e);
/**
 * Finishes every queued tensor (fills their reports); their data is then free. Call it
 * before using the encoder's writer directly (alcm_writer_require_minor() and the like).
 * @return ALCM_OK, or the error of a queued tensor.
 */
ALCM_API int alcm_encoder_flush(alcm_encoder *e);

/**
 * Same as alcm_encoder_add(), and writes into `recon` (t->nbytes bytes, may be NULL) the
 * exact values a decoder will produce, without decoding: training loops use it for error
 * feedback.
 */
ALCM_API int alcm_encoder_add_recon(alcm_encoder *e, const alcm_tensor *t,
                                    alcm_tensor_report *rep, void *recon);

/**
 * Adds a metadata key/value pair (bytes) to the archive's META section. Keys starting with
 * "alcm." are reserved for the library.
 */
ALCM_API int alcm_encoder_set_meta(alcm_encoder *e, const char *key, const void *value,
                                   size_t value_len);

/**
 * Changes the mode and bound for the tensors added next (budget packing and the stream
 * scheduler choose them per tensor). Same ranges as alcm_pack_options.
 */
ALCM_API int alcm_encoder_set_mode(alcm_encoder *e, int mode, double bound, unsigned bits,
                                   double prune);

/**
 * Adds an optional section (for example FRAM or ATTR) tagged with the frame number.
 * @param critical  1 if a reader that does not know `type` must refuse the archive.
 */
ALCM_API int alcm_encoder_add_section(alcm_encoder *e, const char *type, int critical,
                                      const void *data, size_t len);

/** Writes the metadata, predictor and tensor directory sections. Call once, then commit. */
ALCM_API int alcm_encoder_finish(alcm_encoder *e);
ALCM_API void alcm_encoder_free(alcm_encoder *e);
ALCM_API const char *alcm_encoder_detail(const alcm_encoder *e);

/** How far a decoded tensor is from its original (see alcm_tensor_measure()). */
typedef struct alcm_error_stats {
	int identical;          /**< 1 if the bytes are equal */
	int specials_exact;     /**< 1 if NaN, inf, -0 and subnormals kept their exact bits */
	double max_abs_error;   /**< over values that are not special */
	double max_rel_error;   /**< max over channels (axis 0) of max error / max |x| */
	double snr_db;          /**< 10 log10(sum x^2 / sum (x - y)^2); INFINITY when exact */
	double sq_error;        /**< sum (x - y)^2 over values that are not special */
} alcm_error_stats;

/**
 * Compares `y` (x->nbytes bytes, same dtype and shape) with the tensor x, value by value.
 * Integer and bool tensors are compared bytewise.
 */
ALCM_API int alcm_tensor_measure(const alcm_tensor *x, const void *y, alcm_error_stats *st);

/**
 * @return 1 if `st` meets what `mode` and `bound` promise (lossless: identical; max-error:
 * max_abs_error <= bound; rel-error: max_rel_error <= bound; snr: snr_db >= bound; bits:
 * always), with specials exact in every mode.
 */
ALCM_API int alcm_error_within(const alcm_error_stats *st, int mode, double bound);

/* ------------------------------------------------------------------------------------ */
/* Codec: decoding                                                                       */
/* ------------------------------------------------------------------------------------ */

typedef struct alcm_archive alcm_archive;

/** One directory entry, as stored. Pointers stay valid until alcm_archive_free(). */
typedef struct alcm_tensor_info {
	const char *name;
	size_t name_len;
	int dtype;
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM];
	uint64_t elements;
	uint64_t raw_bytes;     /**< decoded size: elements * dtype size */
	uint64_t stored_bytes;  /**< sum of the tensor's section lengths */
	int mode;               /**< enum alcm_mode */
	unsigned bits;
	double bound;
	double max_abs_error;   /**< as measured by the encoder */
	uint64_t scales;        /**< per-channel scales stored */
	uint64_t pruned;
	uint64_t escapes;
	uint32_t chunks;
} alcm_tensor_info;

/**
 * Reads the archive's metadata and tensor directory through `r` (borrowed; it must outlive
 * the archive). Checks every entry against the reader's limits and the table.
 */
ALCM_API int alcm_archive_open(alcm_archive **out, alcm_reader *r, const alcm_allocator *alloc);

/** Number of frames (tensor directories) in the archive: 1 unless it is a stream. */
ALCM_API uint32_t alcm_archive_frame_count(const alcm_reader *r);

/**
 * The first tensor directory at or after section `start`: a TDIR, or in format 1.1 its
 * compressed form TDRZ (spec 6.3.1). @return ALCM_E_NOTFOUND if there is none.
 */
ALCM_API int alcm_archive_find_dir(const alcm_reader *r, uint32_t start, uint32_t *index);

/**
 * Like alcm_archive_open() for frame `frame` of a stream archive (alcm_archive_open() takes
 * the last one). @return ALCM_E_NOTFOUND if there is no such frame.
 */
ALCM_API int alcm_archive_open_frame(alcm_archive **out, alcm_reader *r, uint32_t frame,
                                     const alcm_allocator *alloc);
/** The frame this archive object reads. */
ALCM_API uint32_t alcm_archive_frame(const alcm_archive *a);

/** The predictor weights the archive stores (PRED), if any. @return ALCM_E_NOTFOUND if none. */
ALCM_API int alcm_archive_predictor(const alcm_archive *a, alcm_predictor *p);
ALCM_API void alcm_archive_free(alcm_archive *a);
ALCM_API const char *alcm_archive_detail(const alcm_archive *a);

ALCM_API size_t alcm_archive_tensor_count(const alcm_archive *a);
ALCM_API int alcm_archive_tensor_info(const alcm_archive *a, size_t index, alcm_tensor_info *info);
/** Lossless transforms of a chunk (spec 6.4). */
enum alcm_transform {
	ALCM_TRANSFORM_NONE = 0,    /**< one stream of the raw bytes */
	ALCM_TRANSFORM_PLANES = 1,  /**< one stream per byte of the element */
	ALCM_TRANSFORM_FLOAT = 2,   /**< float bits rotated left by 1 (exponent first), then planes */
	ALCM_TRANSFORM_PALETTE = 3, /**< at most 256 distinct values: a sorted palette, byte indices */
	ALCM_TRANSFORM_SPARSE = 4   /**< a bitmap of the nonzero elements, then their planes */
};

/**
 * How a lossless tensor's chunks are coded: bit t of *transforms is set when some chunk uses
 * transform t (enum alcm_transform). 0 for a quantized tensor or one without chunks. Reads
 * the first byte of each chunk, without checking digests: for display (alcm-inspect), not
 * for trusting the data.
 * @return ALCM_OK, ALCM_E_ARG, or an I/O error from the reader.
 */
ALCM_API int alcm_archive_tensor_coding(alcm_archive *a, size_t index, uint32_t *transforms);

/** @return ALCM_OK with *index set, or ALCM_E_NOTFOUND. */
ALCM_API int alcm_archive_find(const alcm_archive *a, const char *name, size_t name_len,
                               size_t *index);

/**
 * Decodes tensor `index` into `out` (capacity `cap` >= info.raw_bytes). Reads that tensor's
 * sections (and, on 2+ threads when `index` follows the tensor decoded last, the next
 * tensor's, verified while this one decodes: spec 5.6); verifies their digests unless the
 * reader skips them. The archive keeps its chunk buffers (about twice the chunk size per
 * decoding thread) for the next call, until alcm_archive_free(). A tensor of a checkpoint
 * series stored as a delta is decoded through its reference chain (spec 6.12.6): one tensor
 * in memory, whatever the chain.
 * @return ALCM_OK, ALCM_E_ARG, ALCM_E_CORRUPT, ALCM_E_DIGEST, ALCM_E_LIMIT, ALCM_E_IO,
 *         ALCM_E_NOMEM. On a corrupt or digest error the archive is poisoned.
 */
ALCM_API int alcm_archive_decode(alcm_archive *a, size_t index, void *out, size_t cap);

/**
 * Takes the next `len` bytes of the tensor at position `pos` of the list given to
 * alcm_archive_decode_pieces(). `data` is valid during the call only.
 * @return ALCM_OK to go on; any other status stops the decode, which returns it.
 */
typedef int (*alcm_piece_fn)(void *ctx, size_t pos, const void *data, size_t len);

/**
 * Decodes the tensors index[0..n) in that order, as alcm_archive_decode() does, but hands
 * their bytes to fn in order, in pieces (a chunk each for a lossless tensor: spec 6.4),
 * instead of into buffers of the tensors' size: the memory in flight is two decoded and two
 * stored chunks per decoding thread. All pieces of index[i] come before those of index[i+1];
 * a tensor without elements gets no call. fn is called from one thread at a time (a decoding
 * thread, not always the caller's), while the next chunks decode.
 * Digests: a section's digest covers the whole section, so fn sees the first chunks of a
 * tensor BEFORE its digests are checked; it gets the tensor's last piece only after they are
 * right. On any error, discard what fn was given for the tensor that failed (an output
 * written through alcm_output_append() is then not committed).
 * Quantized tensors and series deltas are decoded whole and handed on in one piece.
 * With two threads or more and digests on, consecutive lossless tensors (not series deltas)
 * of 12 KiB to 24 MiB stored go round the threads instead: each reads one tensor's whole data
 * section and checks its digest, so that several sections are hashed at once, then, in its
 * turn, decodes those very bytes and hands them on; fn gets nothing of such a tensor before
 * its digest is right. Memory: one section per thread (at most 48 MiB in all) and one chunk.
 * For other lossless tensors, one more thread, at idle priority (SCHED_IDLE on Linux: it runs
 * only on a core the others leave idle), reads and hashes the next tensor's first chunks
 * (about 4 MiB) while this one decodes, so that two sections are hashed at once; that tensor
 * then decodes those very bytes. It lives until the archive is freed or its thread count set
 * again.
 * @return ALCM_OK, fn's status, or as alcm_archive_decode() (a status of fn does not poison
 *         the archive).
 */
ALCM_API int alcm_archive_decode_pieces(alcm_archive *a, const size_t *index, size_t n,
                                        alcm_piece_fn fn, void *ctx);

/**
 * Decodes the tensors index[0..n) into out[0..n) (out[i] holds cap[i] bytes, at least the
 * tensor's raw_bytes), as alcm_archive_decode() would one after another, but with two threads
 * or more and digests on, consecutive lossless tensors (not series deltas) of 12 KiB to 24 MiB
 * stored are decoded several at once: each thread reads one tensor's whole data section,
 * checks its digest, then decodes those very bytes into its buffer. Memory: one section and
 * one chunk's scratch per thread (at most 48 MiB of sections in all). The result is the same
 * for any thread count; on an error, the status and message are those of the first tensor of
 * the list that fails (its position in *failed, when failed is not NULL; n if none or if the
 * arguments are refused), the buffers of the tensors before it are complete and the others'
 * contents are unspecified.
 * @return ALCM_OK, ALCM_E_ARG (an index out of range, a buffer too small or NULL), or as
 *         alcm_archive_decode().
 */
ALCM_API int alcm_archive_decode_list(alcm_archive *a, const size_t *index, size_t n,
                                      void *const *out, const size_t *cap, size_t *failed);

/**
 * Decodes with `threads` threads (0: all cores; default 1). Chunks of a tensor are decoded in
 * parallel and the digest is computed beside them; the result is the same for any count.
 */
ALCM_API int alcm_archive_set_threads(alcm_archive *a, unsigned threads);

/** Number of META key/value pairs, and each pair (value bytes are not NUL-terminated). */
ALCM_API size_t alcm_archive_meta_count(const alcm_archive *a);
ALCM_API int alcm_archive_meta(const alcm_archive *a, size_t i, const char **key,
                               const uint8_t **value, size_t *value_len);

/* ------------------------------------------------------------------------------------ */
/* One tensor in one buffer: compact tensor frames                                       */
/* ------------------------------------------------------------------------------------ */

/*
 * A compact tensor frame (spec/alcm-format.md 6.11) holds one tensor in one byte string: its
 * dtype and shape, the same coded chunks as an archive's LDAT or QDAT section (byte planes,
 * palettes, zero elision, quantized symbols, pruning masks, exact escapes), the per-channel
 * steps of a lossy mode, and an XXH64 check of the whole frame. No name, metadata, predictor
 * weights, section table or digest per section: the frame costs 17 bytes plus the shape
 * (about 20 bytes for a matrix) beyond its coded chunks. It is what the HDF5 filter stores
 * per chunk, and the short way to compress one array:
 *
 *     size_t cap = alcm_tensor_compress_bound(&t, NULL), len;
 *     void *buf = malloc(cap);
 *     alcm_tensor_compress(buf, cap, &len, &t, NULL);            lossless
 *     ...
 *     alcm_tensor_info ti;
 *     alcm_tensor_frame_info(&ti, buf, len, NULL);               dtype, shape, raw_bytes
 *     void *x = malloc(ti.raw_bytes);                            (a number the frame chose)
 *     alcm_tensor_decompress(x, ti.raw_bytes, buf, len, NULL);
 *
 * Options are those of an archive (alcm_pack_options: mode, bound, bits, prune, level,
 * chunk_bytes, int_policy; threads, producer, source_format, frame and predictor are not
 * used): the same bound holds on every value, NaN, infinities, -0 and subnormals stay exact,
 * integers stay lossless. A lossy frame that would be larger than the lossless bound is
 * stored losslessly instead (the report says downgraded), so a frame never exceeds
 * alcm_tensor_compress_bound(). The same tensor and options give the same bytes.
 *
 * The check detects damage (bit rot, truncation, a bad copy), not tampering: anyone can
 * recompute it. The decoder treats every frame as hostile: each length is checked against
 * the bytes left and each size against `lim` before anything is allocated; the memory it
 * takes beyond the caller's output is about 4 bytes per element of one chunk.
 *
 * The one-call functions create and free their state each time. A program that codes many
 * small tensors (the HDF5 filter) keeps an alcm_tensor_ctx instead: it holds the zstd
 * contexts and buffers between calls, and a detail line for the last error.
 */

/** First bytes of every compact tensor frame: "\x89ALT". */
#define ALCM_TENSOR_FRAME_MAGIC "\x89" "ALT"

/**
 * The largest frame alcm_tensor_compress() can write for `t` with `opt` (NULL: the
 * defaults): the tensor's bytes, plus 1/8 and 512 bytes per chunk, plus the header.
 * @return the bound in bytes, or 0 if t or opt is invalid or the bound overflows size_t.
 */
ALCM_API size_t alcm_tensor_compress_bound(const alcm_tensor *t, const alcm_pack_options *opt);

/**
 * Compresses one tensor (t->name is not stored) into a compact tensor frame at dst.
 * @param cap  capacity of dst; alcm_tensor_compress_bound() is always enough.
 * @param len  receives the frame's length.
 * @param opt  NULL: lossless, zstd level 3, chunks of 4 MiB.
 * @return ALCM_OK, ALCM_E_ARG (bad tensor or options, or cap too small), ALCM_E_BOUND (a
 *         lossy mode on integers with ALCM_INT_REFUSE), ALCM_E_NOMEM.
 */
ALCM_API int alcm_tensor_compress(void *dst, size_t cap, size_t *len, const alcm_tensor *t,
                                  const alcm_pack_options *opt);

/**
 * Reads a frame's header: dtype, ndim, shape, elements, raw_bytes (the decoded size), mode,
 * scales (steps stored), chunks, and stored_bytes (the frame's length, check included). The
 * name is empty; bits, bound, max_abs_error, pruned and escapes are 0 (a frame does not
 * store them). The check is not verified and no chunk is read: raw_bytes is what a stranger
 * declared, checked against lim->max_elements and lim->max_decoded_bytes only.
 * @param lim  NULL for alcm_limits_default().
 * @return ALCM_OK, ALCM_E_CORRUPT (not a frame, a malformed header, a frame shorter than its
 *         header and check), ALCM_E_UNSUPPORTED (another frame version, an unknown dtype or
 *         mode), ALCM_E_LIMIT.
 */
ALCM_API int alcm_tensor_frame_info(alcm_tensor_info *info, const void *src, size_t len,
                                    const alcm_limits *lim);

/**
 * Decompresses a frame into dst (capacity cap, at least the frame's raw_bytes): little-endian
 * elements in C order. Verifies the check first, then decodes every chunk; src must be
 * exactly one frame (no bytes before or after).
 * @return ALCM_OK, ALCM_E_ARG (cap too small), ALCM_E_DIGEST (the check does not match),
 *         ALCM_E_CORRUPT, ALCM_E_UNSUPPORTED, ALCM_E_LIMIT, ALCM_E_NOMEM. On failure dst
 *         holds partial data.
 */
ALCM_API int alcm_tensor_decompress(void *dst, size_t cap, const void *src, size_t len,
                                    const alcm_limits *lim);

/** Reusable state of the frame coder: zstd contexts, buffers, a detail line. Not shared
 *  between threads (one per thread). */
typedef struct alcm_tensor_ctx alcm_tensor_ctx;

/** @return ALCM_OK or ALCM_E_NOMEM. */
ALCM_API int alcm_tensor_ctx_new(alcm_tensor_ctx **out, const alcm_allocator *alloc);
ALCM_API void alcm_tensor_ctx_free(alcm_tensor_ctx *c);
/** @return the detail line of the last failed call, naming the chunk and byte offset. */
ALCM_API const char *alcm_tensor_ctx_detail(const alcm_tensor_ctx *c);

/** alcm_tensor_compress() with c's state. @param rep  receives what was done (may be NULL). */
ALCM_API int alcm_tensor_ctx_compress(alcm_tensor_ctx *c, void *dst, size_t cap, size_t *len,
                                      const alcm_tensor *t, const alcm_pack_options *opt,
                                      alcm_tensor_report *rep);

/** alcm_tensor_decompress() with c's state. @param flags  ALCM_READ_NO_VERIFY skips the
 *  check (trusted input). An error does not poison c. */
ALCM_API int alcm_tensor_ctx_decompress(alcm_tensor_ctx *c, void *dst, size_t cap,
                                        const void *src, size_t len, const alcm_limits *lim,
                                        unsigned flags);

/* ------------------------------------------------------------------------------------ */
/* Tensor file formats                                                                   */
/* ------------------------------------------------------------------------------------ */

enum alcm_file_format {
	ALCM_FILE_UNKNOWN = 0,
	ALCM_FILE_ALCM = 1,
	ALCM_FILE_NPY = 2,
	ALCM_FILE_NPZ = 3,
	ALCM_FILE_SAFETENSORS = 4,
	ALCM_FILE_HDF5 = 5,
	ALCM_FILE_PT = 6,     /**< torch.save (zip, torch >= 1.6) of a state dict: .pt .pth .bin */
	ALCM_FILE_SHARDS = 7  /**< a sharded checkpoint: *.safetensors.index.json and its shards */
};

/** Guesses a format from the first bytes of a file (16 are enough). */
ALCM_API int alcm_detect_format(const void *head, size_t len);
/** Format named by a path's extension (.npy .npz .safetensors .h5 .hdf5 .alcm; .pt .pth
 * .bin: ALCM_FILE_PT; .json: ALCM_FILE_SHARDS). */
ALCM_API int alcm_format_from_extension(const char *path);
/** "npy", "npz", "safetensors", "hdf5", "alcm", "pt", "shards" or "unknown". */
ALCM_API const char *alcm_format_name(int format);

typedef struct alcm_input alcm_input;

/**
 * Opens a tensor file for reading, detecting its format from its magic bytes. Tensors are
 * then read one at a time with alcm_input_next(), so the whole file is never loaded.
 * Every header field is checked against `lim` and the file size before use.
 *
 * - .npy: versions 1-3, any byte order (big-endian data is swapped), Fortran order is
 *   transposed to C order. The tensor's name is the file's base name without ".npy".
 * - .npz: read through the central directory (zip64 included), stored and deflated members,
 *   CRC-32 checked; "x.npy" members give tensor "x".
 * - .safetensors: as strict as the reference implementation (header cap, offsets in order,
 *   no gap, overlap or trailing byte), and duplicate names refused; tensors come in data
 *   order. __metadata__ becomes the records user.K (alcm_input_meta()).
 * - torch.save files (ALCM_FILE_PT, told apart from .npz by their "<dir>/data.pkl"): state
 *   dicts only, read WITHOUT running pickle: a restricted reader accepts the opcodes and the
 *   globals a state dict needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 *   _rebuild_parameter, torch.Size, the torch.*Storage classes) and refuses anything else
 *   as ALCM_E_UNSUPPORTED naming it, before any tensor is read. Every storage record, offset,
 *   size and stride is checked at open. Tensors come in the dict's order; a name on the same
 *   view of the same storage as an earlier name (tied weights) is not read again but
 *   recorded as an alias (record alcm.alias); other views, strided or not, are read as
 *   tensors of their own. The legacy format (torch < 1.6) is ALCM_E_UNSUPPORTED.
 * - A sharded checkpoint (ALCM_FILE_SHARDS): path is a *.safetensors.index.json, or a
 *   directory holding one (model.safetensors.index.json preferred). Its weight_map must list
 *   exactly the tensors of the shard files beside it, each shard a plain file name; the
 *   tensors of all shards come in order of the shard names.
 * @return ALCM_OK, ALCM_E_IO, ALCM_E_CORRUPT, ALCM_E_LIMIT, ALCM_E_UNSUPPORTED (also for a
 *         file in none of these formats). On failure *out is still set (or NULL) so that
 *         alcm_input_detail() can explain; free it with alcm_input_free().
 */
ALCM_API int alcm_input_open(alcm_input **out, const char *path, const alcm_limits *lim,
                             const alcm_allocator *alloc);
/** Same, from bytes in memory (borrowed). `format` 0 means detect. */
ALCM_API int alcm_input_open_memory(alcm_input **out, const void *buf, size_t len, int format,
                                    const char *display_name, const alcm_limits *lim,
                                    const alcm_allocator *alloc);
/** @return the detected format. */
ALCM_API int alcm_input_format(const alcm_input *in);
/** Total size of the input in bytes (for progress). */
ALCM_API uint64_t alcm_input_size(const alcm_input *in);
/**
 * Reads the next tensor. *t stays valid until the next call or alcm_input_free().
 * @param has  receives 1 when a tensor was read, 0 at the end.
 */
ALCM_API int alcm_input_next(alcm_input *in, alcm_tensor *t, int *has);
/**
 * Makes alcm_input_next() use two data buffers in turn, so that a tensor's data stays valid
 * until the second call after the one that returned it (what alcm_encoder_queue() needs),
 * at the cost of a second buffer as large as the largest tensor.
 * @return ALCM_OK for .npy, .npz and .safetensors inputs; ALCM_E_UNSUPPORTED for the others
 *         (nothing changes).
 */
ALCM_API int alcm_input_keep_previous(alcm_input *in);
/**
 * Reads the next tensor in pieces, so that only one piece (at most 1 MiB) is in memory:
 * alcm_input_next_begin() fills *t as alcm_input_next() does but with t->data NULL (t->name
 * stays valid as with alcm_input_next()), then each alcm_input_piece() gives the next bytes
 * of its data in order, until t->nbytes were given (then *len is 0). *data is valid until
 * the next call on the input. The bytes are those alcm_input_next() gives. .npy, stored or
 * deflated .npz members and .safetensors are read piece by piece; a .npz member's CRC-32
 * is checked before its last piece is given (an error there means the earlier pieces were
 * not the file's). Other inputs, and Fortran-order or big-endian arrays (transposed or
 * swapped on read), are read whole at begin and then given in pieces from memory.
 * alcm_input_next() and _next_begin() while a tensor's pieces remain: ALCM_E_STATE.
 * @return ALCM_OK, or as alcm_input_next() (the input is then poisoned).
 */
ALCM_API int alcm_input_next_begin(alcm_input *in, alcm_tensor *t, int *has);
ALCM_API int alcm_input_piece(alcm_input *in, const void **data, size_t *len);
ALCM_API void alcm_input_free(alcm_input *in);
ALCM_API const char *alcm_input_detail(const alcm_input *in);

/*
 * Records the input carries besides its tensors, to keep in the archive's META (spec 6.1):
 * user.K (a safetensors __metadata__ pair), alcm.alias (tied tensors), torch.state_dict,
 * safetensors.shards and safetensors.index (a sharded checkpoint). Pass each pair to
 * alcm_encoder_set_meta(); alcm_output_set_meta() takes them back. Known once the input is
 * open; pointers stay valid until alcm_input_free().
 */
ALCM_API size_t alcm_input_meta_count(const alcm_input *in);
/** @return ALCM_OK, or ALCM_E_ARG for an index out of range. */
ALCM_API int alcm_input_meta(const alcm_input *in, size_t i, const char **key,
                             const uint8_t **value, size_t *value_len);

typedef struct alcm_output alcm_output;

/**
 * alcm_output flag: write tensor names that alcm_name_safe() refuses into formats whose names
 * become paths (.npz member names). Without it such a name is ALCM_E_UNSUPPORTED: an archive
 * is untrusted input, and "../../x" or "/etc/x" as a member name is a path out of the
 * directory a naive extractor unpacks into ("zip slip").
 */
#define ALCM_WRITE_UNSAFE_NAMES 0x100u

/**
 * Whether a tensor name is safe as a relative path (spec 6.3, "Names"): no NUL byte, no
 * backslash, not starting with '/' or a drive ("C:" as the first component), and no empty,
 * "." or ".." component between slashes. Names like "model/layer.0/kernel:0", the empty name
 * and names that are not UTF-8 are safe: none of them leads out of a directory.
 * @param why  receives a static phrase naming the rule broken (may be NULL).
 * @return 1 if safe, 0 if not.
 */
ALCM_API int alcm_name_safe(const char *name, size_t len, const char **why);

/**
 * Creates a tensor file, written atomically like an archive (temp file, fsync, rename).
 * Output is deterministic: .npy as numpy.save writes it, .npz as numpy.savez (stored
 * members, fixed timestamps), .safetensors as the reference implementation orders it,
 * .pt as torch.save lays it out (loadable with torch.load(weights_only=True)).
 * bfloat16 cannot be written to .npy/.npz (ALCM_E_UNSUPPORTED): numpy has no such type;
 * uint16/32/64 cannot be written to .pt: torch has no storage class for them.
 * Names the format cannot hold are ALCM_E_UNSUPPORTED (from alcm_output_plan() or _write()):
 * in .npz a name alcm_name_safe() refuses (unless ALCM_WRITE_UNSAFE_NAMES); in .safetensors a
 * name that is not UTF-8, or "__metadata__" (the header's metadata key).
 * ALCM_FILE_SHARDS writes a sharded checkpoint into the directory `path` (created if
 * missing): it needs the archive's safetensors.shards and safetensors.index records
 * (alcm_output_set_meta()) and a plan of all its tensors, writes every shard and then the
 * index, each atomically, and refuses (ALCM_E_CORRUPT) records that disagree with the plan.
 * @param flags  ALCM_WRITE_OVERWRITE, ALCM_WRITE_NO_SYNC, ALCM_WRITE_UNSAFE_NAMES.
 * @return as alcm_input_open(); *out is set on failure too: free it.
 */
ALCM_API int alcm_output_open(alcm_output **out, const char *path, int format, unsigned flags,
                              const alcm_allocator *alloc);
/**
 * Declares the tensors to come (data ignored), in order. Required before the first write for
 * formats whose header lists every tensor (.safetensors); accepted and checked for others.
 */
ALCM_API int alcm_output_plan(alcm_output *o, const alcm_tensor *tensors, size_t count);
/** Writes one tensor. .npy takes exactly one. */
ALCM_API int alcm_output_write(alcm_output *o, const alcm_tensor *t);
/**
 * Writes one tensor in pieces, as alcm_output_write() would write it whole (the same bytes):
 * alcm_output_begin() with t's name, dtype, shape and nbytes (t->data is not read), then
 * alcm_output_append() with its bytes in order until nbytes are given, which ends it. No
 * other write may come in between. .npy, .npz and .safetensors only, and not when the
 * output writes tied tensors as copies (an alias record): ALCM_E_UNSUPPORTED from begin, and
 * nothing is written, so the caller can use alcm_output_write() instead.
 * @return ALCM_OK, ALCM_E_UNSUPPORTED, ALCM_E_STATE (begin twice, append past nbytes), or as
 *         alcm_output_write().
 */
ALCM_API int alcm_output_begin(alcm_output *o, const alcm_tensor *t);
ALCM_API int alcm_output_append(alcm_output *o, const void *data, size_t len);
ALCM_API int alcm_output_commit(alcm_output *o);
ALCM_API void alcm_output_free(alcm_output *o);
ALCM_API const char *alcm_output_detail(const alcm_output *o);

/**
 * Gives the output one of the archive's META records, before the plan and the first write.
 * The output uses those its format can hold and ignores the others: user.K become a
 * .safetensors __metadata__; alcm.alias names are written as copies of their targets in
 * .npz and .safetensors, and share their target's storage in .pt; torch.state_dict restores
 * a .pt's dict type, parameters and _metadata. A malformed record the output uses is
 * ALCM_E_CORRUPT when it is used (plan, write or commit).
 * @return ALCM_OK, ALCM_E_ARG, ALCM_E_STATE (after the plan or a write), ALCM_E_NOMEM.
 */
ALCM_API int alcm_output_set_meta(alcm_output *o, const char *key, const void *value,
                                  size_t value_len);

/* ------------------------------------------------------------------------------------ */
/* One call: files                                                                       */
/* ------------------------------------------------------------------------------------ */

/**
 * Packs every tensor of a .npy, .npz or .safetensors file (format detected from its bytes)
 * into a new archive, in one call:
 *
 *     alcm_pack_options o;
 *     alcm_pack_options_default(&o);          // lossless; or o.mode, o.bound = ...
 *     int st = alcm_file_pack("model.safetensors", "model.alcm", &o, 0, NULL, 0);
 *
 * The archive is written atomically (a temporary file in the target's directory, fsynced,
 * then linked into place); on failure nothing is left behind. Inputs are read with the
 * default limits (alcm_limits_default).
 * @param opt     NULL for the defaults (lossless)
 * @param flags   ALCM_WRITE_OVERWRITE (else an existing out_path gives ALCM_E_EXISTS),
 *                ALCM_WRITE_STREAM, ALCM_WRITE_NO_SYNC
 * @param detail  receives the one-line reason of a failure (file, tensor or section,
 *                offset); may be NULL. ALCM_DETAIL_MAX bytes are enough.
 * @return ALCM_OK or the status of the first failure (alcm_strerror()).
 */
ALCM_API int alcm_file_pack(const char *in_path, const char *out_path,
                            const alcm_pack_options *opt, unsigned flags, char *detail,
                            size_t detail_cap);

/**
 * Decodes every tensor of an archive into a .npy (one tensor), .npz or .safetensors file,
 * the format named by out_path's extension, in one call. Every section is checked against
 * its digest; one tensor is held in memory at a time; the output is written atomically.
 * Archives are read with the default limits: use the full API (alcm_reader_open_file) to
 * set others. HDF5 output is in the HDF5 bridge (alcm_hdf5.h).
 * @param flags   ALCM_WRITE_OVERWRITE, ALCM_WRITE_NO_SYNC
 * @return ALCM_OK, ALCM_E_UNSUPPORTED for another extension (or a dtype the format cannot
 *         hold, such as bfloat16 in .npz), or the first failure; `detail` as above.
 */
ALCM_API int alcm_file_unpack(const char *in_path, const char *out_path, unsigned flags,
                              char *detail, size_t detail_cap);

/* ------------------------------------------------------------------------------------ */
/* Gradient streams                                                                      */
/* ------------------------------------------------------------------------------------ */

/**
 * A stream encoder for training loops: one call per step or epoch encodes a frame of the same
 * tensors, keeps the error-feedback residuals, and lets the CAQ scheduler tune how
 * aggressively the next frame is coded. CAQ = ratio / (cpu_seconds + 1) (Compression-Accuracy
 * Quotient); the scheduler raises aggressiveness (bound from `pack.bound` towards
 * `bound_max`, pruning share up to 0.25) while the CAQ trend over the last `window` frames
 * rises and every frame's SNR stays at or above `fidelity_floor_db`, holds while the trend is
 * flat, and backs off when the trend falls or the SNR breaks the floor; after breaking the
 * floor it stays a step under that level until a whole window shows room (spec 6.8).
 */
typedef struct alcm_stream_options {
	alcm_pack_options pack;   /**< starting mode and bound (max-error or rel-error to schedule) */
	int error_feedback;       /**< 1: add frame t's coding error to frame t+1 before coding */
	int schedule;             /**< 1: run the CAQ scheduler (needs a max- or rel-error mode) */
	double bound_max;         /**< most aggressive bound the scheduler may use */
	double fidelity_floor_db; /**< back off when a frame's SNR falls below this */
	unsigned window;          /**< frames in the CAQ trend window (default 5) */
	/**
	 * Dead band of the trend, relative to the window's mean CAQ per frame (default 0.01):
	 * a trend within +/- this share counts as flat and keeps the setting (0: none). The
	 * scheduler's CAQ takes a nominal coding cost of 10 ns per raw byte, not the measured CPU
	 * seconds (which alcm_frame_report and FRAM still give), so that its decisions, and with
	 * them every frame's bytes, are the same from run to run on any machine.
	 */
	double trend_tolerance;
	/**
	 * 1: FRAM records the measured CPU seconds and the CAQ from them. 0 (default): it records
	 * 0 CPU seconds and the scheduler's nominal CAQ, so that the same frames give the same
	 * archive bytes; the measured values still come back in alcm_frame_report.
	 */
	int record_cpu;
} alcm_stream_options;

ALCM_API void alcm_stream_options_default(alcm_stream_options *o);

/** Scheduler decisions, stored in each frame's FRAM section. */
enum alcm_decision {
	ALCM_DECIDE_START = 0,    /**< first frames: not enough history */
	ALCM_DECIDE_RAISE = 1,    /**< CAQ rising and fidelity held: more aggressive next */
	ALCM_DECIDE_HOLD = 2,     /**< CAQ flat (within the dead band), or rising at the most
	                               aggressive setting already: keep the setting */
	ALCM_DECIDE_BACKOFF_CAQ = 3,      /**< CAQ falling: less aggressive next */
	ALCM_DECIDE_BACKOFF_FIDELITY = 4  /**< SNR under the floor: less aggressive next */
};

/** What one frame did (also the FRAM payload, spec 6.8). */
typedef struct alcm_frame_report {
	uint32_t frame;
	uint64_t raw_bytes, stored_bytes;
	double ratio, cpu_seconds, caq, caq_trend, snr_db, max_abs_error;
	double bound, prune, aggressiveness;  /**< the setting this frame was coded with */
	int decision;                         /**< enum alcm_decision, for the next frame */
	double next_bound, next_prune;
	/**
	 * Tensors coded again at a safer bound (halved until they fit, at worst losslessly)
	 * because the frame's setting would have put its SNR under the fidelity floor: with the
	 * scheduler on, no frame is committed under the floor. Not stored in FRAM. The decision
	 * is taken on the SNR the setting gave (ALCM_DECIDE_BACKOFF_FIDELITY).
	 */
	uint32_t recoded;
} alcm_frame_report;

typedef struct alcm_stream alcm_stream;

ALCM_API int alcm_stream_new(alcm_stream **out, const alcm_stream_options *opt,
                             const alcm_allocator *alloc);
ALCM_API void alcm_stream_free(alcm_stream *s);
ALCM_API const char *alcm_stream_detail(const alcm_stream *s);

/**
 * Encodes one frame of `n` tensors as sections of `w` (a memory writer for in-memory use, or
 * an append writer on a stream archive file), with the frame number as tags, a FRAM section
 * recording the scheduler's state, and the frame's tensor directory. The caller commits `w`.
 * Tensors are matched across frames by position; their shapes must not change.
 */
ALCM_API int alcm_stream_encode(alcm_stream *s, alcm_writer *w, const alcm_tensor *t, size_t n,
                                alcm_frame_report *rep);

/**
 * Continues a stream archive written earlier (by another process): takes the frame number,
 * the CAQ history and the scheduler's next setting from its FRAM sections. Residuals of
 * error feedback are not stored in archives, so feedback restarts from zero.
 */
ALCM_API int alcm_stream_resume(alcm_stream *s, alcm_reader *r);

/**
 * Reads the settings a stream archive was created with, from its first OPTS record (spec
 * 6.12.3; streams written by this library since format 1.1 have one): the coding fields of
 * so->pack (mode, bound, bits, prune, level, chunk_bytes, int_policy) and the stream's
 * schedule, error_feedback, window, bound_max, fidelity_floor_db, trend_tolerance and
 * record_cpu; the other fields as alcm_stream_options_default(). An appender that is given
 * no settings continues with these.
 * @return ALCM_OK, ALCM_E_NOTFOUND (no record: a format 1.0 stream), ALCM_E_CORRUPT,
 *         ALCM_E_DIGEST, ALCM_E_IO, ALCM_E_LIMIT.
 */
ALCM_API int alcm_stream_options_load(alcm_reader *r, alcm_stream_options *so);

/** Parses a FRAM payload. */
ALCM_API int alcm_frame_report_load(alcm_frame_report *rep, const uint8_t *buf, size_t len);

/* ------------------------------------------------------------------------------------ */
/* Checkpoint series                                                                     */
/* ------------------------------------------------------------------------------------ */

/*
 * A checkpoint series (spec 6.12) is a stream archive whose frames are the checkpoints of a
 * training run. A *keyframe* is stored whole; a *delta* frame stores each tensor against the
 * decoded values of the same-named tensor in an earlier frame (its *reference*), or in a frame
 * of another archive (the *base*, for a fine-tune stored against its base model). Lossless by
 * default, bit-exact; in max-error and rel-error modes the delta is taken against the decoded
 * reference (closed loop), so every value of every frame stays within the bound of its own
 * original. Chunks for which the plain coding is smaller are stored plain.
 *
 * Reading needs nothing new: alcm_archive_open_frame() opens any frame and
 * alcm_archive_decode() follows the reference chain (one keyframe and the deltas after it)
 * tensor by tensor, holding one tensor in memory. A frame coded against a base archive also
 * needs alcm_archive_set_base().
 *
 * Writing: alcm_series_begin() on a writer (a new stream archive, an append writer, or a new
 * plain archive for a single fine-tune), alcm_series_add() per tensor, alcm_series_finish(),
 * then alcm_writer_commit(). Every frame records the settings it was coded with (an OPTS
 * record, spec 6.12.3); alcm_series_options_load() reads those of the first frame, so that a
 * writer continuing the series later codes as it was created.
 */

/** Which frame a delta frame refers to (series option `reference`). */
enum alcm_series_ref {
	ALCM_SERIES_REF_ANCHOR = 0,  /**< the last keyframe (or the base): any frame decodes from
	                                  one keyframe and one delta (the default) */
	ALCM_SERIES_REF_PREVIOUS = 1,/**< the frame before: smallest; a frame decodes from its
	                                  keyframe and every delta since */
	ALCM_SERIES_REF_TREE = 2     /**< frame k + o refers to frame k + (o with its lowest set
	                                  bit cleared), k the keyframe: about as small, and a frame
	                                  decodes from its keyframe and at most log2(o) + 1 deltas */
};

/** Longest run of deltas a writer may ask for with keyframe_every (the readers' default
 *  max_chain is 1000). */
#define ALCM_SERIES_MAX_KEYFRAME_EVERY 999

typedef struct alcm_series_options {
	alcm_pack_options pack;   /**< lossless (default), max-error or rel-error; no pruning;
	                               the frame number is the series' */
	uint32_t keyframe_every;  /**< a keyframe after this many delta frames; 0: automatic, a
	                               keyframe when it saves bytes (spec 6.12.7) */
	int reference;            /**< enum alcm_series_ref */
	const char *base_name;    /**< with a base: recorded beside its identity as a hint for
	                               messages (OPTS series.base_name); may be NULL */
} alcm_series_options;

ALCM_API void alcm_series_options_default(alcm_series_options *o);

/**
 * Reads the settings the archive was created with: the first OPTS record (spec 6.12.3).
 * Fills the coding fields of o->pack (mode, bound, bits, prune, level, chunk_bytes,
 * int_policy) and the series fields; leaves the others as alcm_series_options_default().
 * @return ALCM_OK, ALCM_E_NOTFOUND (no record), ALCM_E_CORRUPT, ALCM_E_DIGEST, ALCM_E_IO,
 *         ALCM_E_LIMIT (a record above max_meta_bytes).
 */
ALCM_API int alcm_series_options_load(alcm_reader *r, alcm_series_options *o);

/**
 * The identity a series records for a base archive: the BLAKE2b-256 digest of the base's
 * committed section table, which covers every section's digest. Appending to the base
 * changes it.
 */
ALCM_API int alcm_series_base_id(const alcm_reader *base, uint8_t id[32]);

/**
 * The base archive a series refers to, as its first OPTS record names it: its identity and
 * the path it was given as when the series was written (informative: a hint for messages,
 * never opened by the library). `name` receives at most cap - 1 bytes and a NUL.
 * @return ALCM_OK, ALCM_E_NOTFOUND (no base), or the errors of alcm_series_options_load().
 */
ALCM_API int alcm_series_base_hint(alcm_reader *r, uint8_t id[32], char *name, size_t cap);

/** A frame's series record (SERI, spec 6.12.2). */
typedef struct alcm_series_frame {
	uint32_t frame;
	int keyframe;             /**< 1: the frame decodes alone */
	uint32_t ref_frame;       /**< the frame its DLTA tensors refer to; 0xFFFFFFFF if key */
	int ref_base;             /**< 1: ref_frame is a frame of the base archive */
	uint8_t base_id[32];      /**< with ref_base: the base's identity (alcm_series_base_id) */
	uint64_t est_ref_bytes;   /**< informative: the frame's delta tensors' bytes */
	uint64_t est_prev_bytes;  /**< informative: the writer's estimate of those bytes coded
	                               against the frame before instead */
} alcm_series_frame;

/**
 * Reads the series record of frame `frame` (the last SERI whose tag is `frame`).
 * @return ALCM_OK, ALCM_E_NOTFOUND (none: a frame without a record is a keyframe),
 *         ALCM_E_CORRUPT (malformed), ALCM_E_UNSUPPORTED (a kind or reference of a later
 *         version), ALCM_E_DIGEST, ALCM_E_IO.
 */
ALCM_API int alcm_series_frame_read(alcm_reader *r, uint32_t frame, alcm_series_frame *f);

/**
 * Gives an archive the base archive its frame refers to (borrowed: it must outlive `a`).
 * Checks the base's identity against the frame's record when the frame refers to a base.
 * Without it, decoding a tensor whose chain reaches the base fails with ALCM_E_NOTFOUND.
 * @return ALCM_OK, ALCM_E_DIGEST (another base than the one the frame was coded against; the
 *         archive stays usable: give it the right one),
 *         ALCM_E_NOMEM, or an error reading the frame's record.
 */
ALCM_API int alcm_archive_set_base(alcm_archive *a, alcm_reader *base);

/** 1 if tensor `index` is stored as a delta (a DLTA section), else 0. */
ALCM_API int alcm_archive_tensor_delta(const alcm_archive *a, size_t index);

/** What alcm_series_finish() did. */
typedef struct alcm_series_report {
	uint32_t frame;
	int keyframe;
	uint32_t ref_frame;       /**< as in alcm_series_frame */
	int ref_base;
	uint64_t tensors, delta_tensors; /**< tensors, and those stored as deltas */
	uint64_t raw_bytes;       /**< the tensors' bytes */
	uint64_t stored_bytes;    /**< their sections' bytes */
	double max_abs_error;
} alcm_series_report;

typedef struct alcm_series alcm_series;

/**
 * Starts a frame of a series in `w`: a new stream archive (ALCM_WRITE_STREAM), an append
 * writer on a series, or a new plain archive for one frame coded against a base. Raises the
 * new archive's format to 1.1 (an append to a 1.0 archive: ALCM_E_UNSUPPORTED).
 * @param series  a reader of the archive `w` appends to (borrowed), or NULL for frame 0.
 *                Its frames' records and directories choose keyframe or delta, and its
 *                frames are decoded as references.
 * @param base    a reader of the base archive (borrowed), or NULL. Frame 0 of a new series
 *                is then a delta against the base's last frame; a later frame needs it when
 *                its reference chain reaches the base.
 * @param opt     NULL for the defaults. An append normally passes the loaded settings
 *                (alcm_series_options_load) with the caller's overrides.
 * @return ALCM_OK, ALCM_E_ARG (snr or bits mode, pruning, keyframe_every too large),
 *         ALCM_E_UNSUPPORTED, ALCM_E_NOTFOUND (the series refers to a base: none given),
 *         ALCM_E_DIGEST (a base other than the series'), ALCM_E_NOMEM, or a read error of
 *         `series`. *out is set on failure too (for alcm_series_detail); free it.
 */
ALCM_API int alcm_series_begin(alcm_series **out, alcm_writer *w, alcm_reader *series,
                               alcm_reader *base, const alcm_series_options *opt,
                               const alcm_allocator *alloc);
/**
 * Codes one tensor of the frame: against the same-named tensor of the reference when it has
 * the same dtype and shape (decoded for the purpose, one tensor at a time), else whole.
 */
ALCM_API int alcm_series_add(alcm_series *s, const alcm_tensor *t, alcm_tensor_report *rep);
/** The frame's encoder, for metadata (alcm_encoder_set_meta) and extra sections. */
ALCM_API alcm_encoder *alcm_series_encoder(alcm_series *s);
/** Writes the frame's series and settings records, metadata and directory. Then commit. */
ALCM_API int alcm_series_finish(alcm_series *s, alcm_series_report *rep);
ALCM_API void alcm_series_free(alcm_series *s);
ALCM_API const char *alcm_series_detail(const alcm_series *s);

/* ------------------------------------------------------------------------------------ */
/* Entropy predictor                                                                     */
/* ------------------------------------------------------------------------------------ */

#define ALCM_PRED_FEATURES 7
#define ALCM_PRED_HIDDEN 64

/**
 * A 7 -> 64 -> 1 multilayer perceptron (6 -> 64 -> 1 for PRED versions 1 and 2) that
 * predicts the coded size, in bits per value, of a float tensor quantized with a given step
 * (max-error mode with bound step/2). Inputs are normalised as (feature - mean) / scale; the
 * hidden layer uses tanh. The encoder uses it to choose parameters; it never sits in the
 * decoding path. Every archive stores the weights it used in its PRED section (spec 6.7).
 *
 * Version 3 (this library's default) added feature 6, what coding channels apart saves
 * (spec 6.7.2): ALCM_PRED_FEATURES grew from 6 to 7, and with it the arrays below and the
 * feature vectors every function here takes. Weights of versions 1 and 2 keep 6 features
 * (mean[6], scale[6], w1[j][6] and feat[6] are ignored) and their 2108-byte payload.
 */
struct alcm_predictor {
	float mean[ALCM_PRED_FEATURES], scale[ALCM_PRED_FEATURES];
	float w1[ALCM_PRED_HIDDEN][ALCM_PRED_FEATURES];
	float b1[ALCM_PRED_HIDDEN];
	float w2[ALCM_PRED_HIDDEN];
	float b2;
	/** The feature set the weights expect (PRED version, spec 6.7.1): 0 or 3 for the seven
	 * features alcm_tensor_features computes; 2 for the first six of them; 1 for the older
	 * set (skewness and the share beyond 4 sd where 2 has the sample entropy and the step
	 * against the dtype's resolution), which is loaded from old archives but no longer
	 * computed: alcm_predict_bits returns 64 for it. */
	uint32_t version;
};

/** The compiled-in default weights (produced by alcm-train; see tools/alcm-train.c). */
ALCM_API const alcm_predictor *alcm_predictor_default(void);

/**
 * Computes the seven features (PRED version 3) of a float tensor at quantization step
 * `step` (> 0): log2 of the element count; log2(std / step) clamped to [-30, 30]; the dtype's
 * mantissa bits minus that, clamped to [-30, 30]; the share of values with |x| < step / 2;
 * the order-0 entropy in bits of round(x / step) over at most 4096 sampled values
 * (extrapolated by the next octave's slope where the sample is too small to see it, and
 * with the values stored exactly, such as subnormals, at the entropy of their bit
 * patterns); log2(largest sampled |x| / step) clamped to [-30, 30]; what coding the
 * channels of axis 0 or of the last axis apart saves, in bits per value, less their class
 * table, clamped to [-8, 8] (0 for one dimension). Spec 6.7.2 defines them
 * exactly, including which elements of a large tensor are sampled. Special values (NaN,
 * infinities, -0, subnormals) are left out of the moments. Allocation-free (about 150 KB of
 * stack); O(elements) up to 8192 elements, about N/32 beyond.
 */
ALCM_API int alcm_tensor_features(const alcm_tensor *t, double step,
                                  float feat[ALCM_PRED_FEATURES]);

/** Predicted bits per value, in [0, 64]: the network's rate plus 104 bytes per tensor
 *  (2^feat[0] values) spread over its values (spec 6.7.3). Allocation-free, a few hundred
 *  flops. Returns 64 (the safe, pessimistic answer) when `p` or `feat` is NULL, a feature is
 *  not finite, or `p` is a version 1 predictor (older features, no longer computed). */
ALCM_API double alcm_predict_bits(const alcm_predictor *p, const float feat[ALCM_PRED_FEATURES]);

/**
 * Fits `p` to n samples (x[i] features, y[i] measured bits per value) with MSE and backprop
 * (Adam), deterministic for `seed`. `epochs` 0 means the default, 400. The 64 hidden units
 * are fitted as four nets of 16, one after the other, whose mean is `p` (spec 6.7.4).
 * @param mse receives the final training MSE (may be NULL).
 */
ALCM_API int alcm_predictor_train(alcm_predictor *p, const float (*x)[ALCM_PRED_FEATURES],
                                  const float *y, size_t n, uint64_t seed, unsigned epochs,
                                  double *mse);

/**
 * The escapes of a float tensor (spec 6.7.3): `share` is the fraction of its values the
 * quantizer stores exactly whatever the step (NaN, infinities, -0, subnormals), `bits` their
 * predicted coded cost in bits per escaped value (the escape block of spec 6.5.4: the bytes
 * of their bit patterns at their order-0 byte entropy, plus their gaps). Both come from the
 * sample alcm_tensor_features() reads; share is 0 (and bits 0) for a tensor without any.
 * The network predicts the rate of the other values only: a tensor of float16 gradients
 * that are nearly all subnormal costs what its escapes cost, which no step changes.
 */
typedef struct alcm_pred_escapes {
	double share; /**< in [0, 1] */
	double bits;  /**< bits per escaped value, in [0, 8 * dtype size + 40] */
} alcm_pred_escapes;

/** The escapes of `t` (see alcm_pred_escapes). Same sample, limits and cost as
 *  alcm_tensor_features(); ALCM_E_ARG for a NULL argument or a tensor that is not float. */
ALCM_API int alcm_tensor_escapes(const alcm_tensor *t, alcm_pred_escapes *esc);

/** alcm_predict_bits() of a tensor with escapes (spec 6.7.3): the fixed bytes, plus
 *  (1 - share) times the network's rate, plus share times esc->bits; in [0, 64]. `esc` NULL
 *  or a share of 0 gives alcm_predict_bits(); a share outside [0, 1] or a non-finite one
 *  gives 64. */
ALCM_API double alcm_predict_bits_escapes(const alcm_predictor *p,
                                          const float feat[ALCM_PRED_FEATURES],
                                          const alcm_pred_escapes *esc);

/** alcm_predictor_train() for samples with escapes: the network is fitted so that
 *  alcm_predict_bits_escapes(p, x[i], &esc[i]) meets y[i] (the squared error of the whole
 *  prediction, so that a sample that is nearly all escapes weighs little). `esc` NULL is
 *  alcm_predictor_train(). */
ALCM_API int alcm_predictor_train_escapes(alcm_predictor *p,
                                          const float (*x)[ALCM_PRED_FEATURES], const float *y,
                                          const alcm_pred_escapes *esc, size_t n, uint64_t seed,
                                          unsigned epochs, double *mse);

/** PRED payload of `p` (spec 6.7): alcm_predictor_bytes(p) bytes, little-endian float32;
 * ALCM_PRED_BYTES (2372) for version 3, ALCM_PRED_BYTES_V2 (2108, six features) for
 * versions 1 and 2. `out` must hold ALCM_PRED_BYTES. */
#define ALCM_PRED_BYTES_NF(nf) (8 + 4 * (2 * (nf) + ALCM_PRED_HIDDEN * (nf) + 2 * ALCM_PRED_HIDDEN + 1))
#define ALCM_PRED_BYTES ALCM_PRED_BYTES_NF(ALCM_PRED_FEATURES)
#define ALCM_PRED_BYTES_V2 ALCM_PRED_BYTES_NF(6)
ALCM_API void alcm_predictor_store(const alcm_predictor *p, uint8_t out[ALCM_PRED_BYTES]);
/** The size of `p`'s PRED payload: ALCM_PRED_BYTES_V2 for versions 1 and 2, else
 *  ALCM_PRED_BYTES; 0 for NULL. */
ALCM_API size_t alcm_predictor_bytes(const alcm_predictor *p);
/** Parses a PRED payload; refuses a size other than its version's, version 0 or a
 * non-finite weight (corrupt); a version above 3 is ALCM_E_UNSUPPORTED, a layout this
 * library does not know (spec 6.7.1). */
ALCM_API int alcm_predictor_load(alcm_predictor *p, const uint8_t *buf, size_t len);

/* ------------------------------------------------------------------------------------ */
/* Size budgets                                                                          */
/* ------------------------------------------------------------------------------------ */

#define ALCM_BUDGET_STEPS 41

/**
 * What the budget solver needs to know of one tensor: for float tensors, the predicted
 * coded bits per value at each candidate quantization step (std * 2^(k/2 - 16),
 * k = 0..40); for other tensors, the bytes they take losslessly. Made in one pass over the
 * tensor, so the tensor need not stay in memory.
 */
typedef struct alcm_budget_profile {
	uint64_t elements;
	int lossy;                          /**< 1 for float tensors with a non-zero spread */
	double variance;
	double step[ALCM_BUDGET_STEPS];
	double bits[ALCM_BUDGET_STEPS];
	double fixed_bytes;                 /**< bytes of a tensor that stays lossless */
	/** Float tensors: the sum of the squares of the values that are not special (NaN,
	 * infinities, -0, subnormals), the signal a coding's SNR is measured against
	 * (alcm_tensor_report.snr_db): its squared error is signal / 10^(snr_db / 10). */
	double signal;
} alcm_budget_profile;

/**
 * Profiles a tensor with the predictor (NULL: the default one). `lossless_bytes` is what the
 * tensor costs if it is not quantized (the caller measures or estimates it).
 */
ALCM_API int alcm_budget_profile_make(const alcm_predictor *p, const alcm_tensor *t,
                                      double lossless_bytes, alcm_budget_profile *prof);

/**
 * Chooses a max-error bound per tensor so that the predicted size meets `budget_bytes` with
 * the least total squared error (equal slope: every tensor at the step where one more bit
 * buys the same drop in squared error). `scale[i]` (NULL: 1) multiplies tensor i's predicted
 * rate, to calibrate against sizes measured in an earlier attempt.
 * @param bound  receives the max-error bound of each tensor (0: keep it lossless).
 * @param predicted  receives the predicted total bytes of the tensors.
 * @return ALCM_OK, or ALCM_E_BOUND if even the coarsest steps exceed the budget.
 */
ALCM_API int alcm_budget_solve(const alcm_budget_profile *prof, size_t n, double budget_bytes,
                               const double *scale, double *bound, double *predicted);

/* ------------------------------------------------------------------------------------ */
/* Signatures                                                                            */
/* ------------------------------------------------------------------------------------ */

#define ALCM_PUBLIC_KEY_BYTES 32
#define ALCM_SECRET_KEY_BYTES 64

/**
 * Creates an Ed25519 key pair (libsodium). `sk` is the 32-byte seed (RFC 8032's private key)
 * followed by `pk`; the key files of spec 6.10 hold them in hex. Wipe `sk` with alcm_wipe()
 * after use.
 */
ALCM_API int alcm_keypair_new(uint8_t pk[ALCM_PUBLIC_KEY_BYTES],
                              uint8_t sk[ALCM_SECRET_KEY_BYTES]);
/** Overwrites secret bytes so that the compiler cannot elide it (sodium_memzero). */
ALCM_API void alcm_wipe(void *p, size_t len);

/**
 * Adds a SIGN section: plain Ed25519 (not Ed25519ph) over the 64-byte BLAKE2b-512 hash of
 * the archive's manifest (spec 6.10). Algorithm 2, the default, covers header bytes 0..31
 * (both version fields and the flags) and every table entry's type, flags, tag, length and
 * digest in table order, the SIGN entry's own included (with a zero digest); it is a format
 * 1.1 feature, so a new archive's header says 1.1. An append to a 1.0 stream archive cannot
 * raise its version: it signs with algorithm 1, which covers neither the minor version nor
 * the SIGN entry. Call it last, right before alcm_writer_commit(): a section added after it
 * breaks the signature.
 * @return ALCM_OK, ALCM_E_ARG (a damaged secret key: its public half is not the key of its
 *         seed), ALCM_E_STATE (the archive is signed already), or a writer error.
 */
ALCM_API int alcm_writer_sign(alcm_writer *w, const uint8_t sk[ALCM_SECRET_KEY_BYTES]);

/** Signature state of an archive, from alcm_reader_check_signature(). */
enum alcm_signature_state {
	ALCM_SIG_NONE = 0,     /**< the archive carries no SIGN section */
	ALCM_SIG_VALID = 1,    /**< signed by the given key over these exact sections */
	ALCM_SIG_OTHER_KEY = 2,/**< a valid signature by a different key */
	ALCM_SIG_BAD = 3       /**< the signature does not match the sections */
};

/**
 * Checks the archive's signature against `pk`, the public key the caller trusts. Reads only
 * the SIGN section and the table: combine with alcm_reader_verify() (which streams every
 * section through its digest) to prove the bytes.
 *
 * A NULL pk checks the signature only against the key stored beside it: that proves the
 * archive is unchanged since *someone* signed it, and nothing about who. Anyone can change
 * an archive and sign it again with their own key, so ALCM_SIG_VALID with a NULL pk must
 * not be taken as authenticity.
 * @param state  receives an enum alcm_signature_state.
 * @return ALCM_OK whatever the state, or ALCM_E_CORRUPT (malformed or duplicate SIGN),
 *         ALCM_E_UNSUPPORTED (a signature algorithm this library does not know), ALCM_E_DIGEST,
 *         ALCM_E_IO.
 */
ALCM_API int alcm_reader_check_signature(alcm_reader *r, const uint8_t *pk, int *state);

/** What a SIGN section says of itself (spec 6.10). */
typedef struct alcm_signature_info {
	unsigned algorithm;                    /**< 1 or 2 */
	uint8_t signer[ALCM_PUBLIC_KEY_BYTES]; /**< the key stored beside the signature: who
	                                            claims to have signed, not proof of it */
} alcm_signature_info;

/**
 * Reads the SIGN section's algorithm and stored key, without checking the signature.
 * @return ALCM_OK, ALCM_E_NOTFOUND (unsigned), or as alcm_reader_check_signature().
 */
ALCM_API int alcm_reader_signature_info(alcm_reader *r, alcm_signature_info *info);

/* ------------------------------------------------------------------------------------ */
/* Atomic output files                                                                   */
/* ------------------------------------------------------------------------------------ */

/**
 * A file written atomically, as the library writes archives and tensor files: the data goes
 * to an unnamed temporary file in the target's directory (O_TMPFILE on Linux; a named
 * ".NAME.XXXXXX" where the file system refuses it), and the target appears only at commit,
 * complete: fsync, then link (which never replaces a file, even one that appeared meanwhile)
 * or, with ALCM_WRITE_OVERWRITE, rename over the target; then fsync of the directory. Freeing
 * an uncommitted file discards it; a process killed before commit leaves nothing behind.
 * For small files the tools write (keys, weights, reports).
 */
typedef struct alcm_atomic_file alcm_atomic_file;

/**
 * @param flags  ALCM_WRITE_OVERWRITE, ALCM_WRITE_NO_SYNC, ALCM_WRITE_PRIVATE (mode 0600;
 *               else 0644).
 * @param out    receives the object, also on failure (for the detail line); free it.
 * @return ALCM_OK, ALCM_E_EXISTS, ALCM_E_IO, ALCM_E_NOMEM, ALCM_E_ARG.
 */
ALCM_API int alcm_atomic_file_open(alcm_atomic_file **out, const char *path, unsigned flags,
                                   const alcm_allocator *alloc);
/** Appends `len` bytes. @return ALCM_OK, ALCM_E_IO; ALCM_E_STATE after a failure. */
ALCM_API int alcm_atomic_file_write(alcm_atomic_file *f, const void *buf, size_t len);
/**
 * Flushes the data to stable storage now, whatever ALCM_WRITE_NO_SYNC says. To publish
 * several files as close together as possible: open them with ALCM_WRITE_NO_SYNC, sync each,
 * commit them one after the other, then fsync their directory.
 * @return ALCM_OK, ALCM_E_IO.
 */
ALCM_API int alcm_atomic_file_sync(alcm_atomic_file *f);
/** Publishes the file. @return ALCM_OK, ALCM_E_EXISTS (no overwrite, the target appeared),
 *  ALCM_E_IO. */
ALCM_API int alcm_atomic_file_commit(alcm_atomic_file *f);
/**
 * Publishes `n` files as close together as the file system allows (a key pair, say): first,
 * for every file, what can fail or take time (fsync unless ALCM_WRITE_NO_SYNC, closing, a
 * hidden temporary name), then one rename after another, then the directories' fsync. A
 * failure before the renames publishes nothing; a failure at file k leaves files 0..k-1
 * published (*done = k, the caller may undo them) and the others not. A process killed
 * between two renames leaves some new and some old; killed after staging and before the
 * renames, it leaves the hidden names behind and every target as it was.
 * @return ALCM_OK, or the first failure (its file's detail line says what).
 */
ALCM_API int alcm_atomic_file_commit_all(alcm_atomic_file *const *f, size_t n, size_t *done);
/** Discards the file unless committed; frees the object. */
ALCM_API void alcm_atomic_file_free(alcm_atomic_file *f);
ALCM_API const char *alcm_atomic_file_detail(const alcm_atomic_file *f);

/* ------------------------------------------------------------------------------------ */
/* Process-wide                                                                          */
/* ------------------------------------------------------------------------------------ */

/**
 * Removes every named temporary file that an uncommitted writer or output of this process
 * holds (unnamed O_TMPFILE ones vanish with the process by themselves). Async-signal-safe
 * (only unlink(2)): call it from a SIGINT/SIGTERM handler so that an interrupted program
 * leaves no partial file behind.
 */
ALCM_API void alcm_atomic_cleanup_all(void);

#ifdef __cplusplus
}
#endif
#endif /* ALCM_H */
