/*
 * alcm_hdf5.h - the HDF5 bridge of libalcm: read .h5 files as tensor inputs and write
 * tensors back as .h5, keeping groups, attributes and links.
 *
 * Copyright (c) 2026 the alcm authors. MIT licence, see LICENSE.
 *
 * Overview
 * ========
 * The bridge is its own library (libalcm_hdf5) so that the core never links libhdf5. It
 * mirrors the core's streaming alcm_input / alcm_output (alcm.h) so that a tool treats an
 * .h5 file like any other tensor file:
 *
 *   - alcm_h5_input walks every object of a file at any depth. Each dataset whose data an
 *     alcm tensor can carry becomes one tensor named by its HDF5 path (without the leading
 *     '/': "model_weights/dense/dense/kernel:0"), in byte order of the paths. Everything
 *     else the archive must keep (groups, empty ones too, attributes of groups, datasets and
 *     named datatypes, the exact on-disk datatypes and dataspaces, chunk shapes and filters,
 *     hard, soft and external links, small variable-length datasets) goes into one
 *     "structure" byte string, the payload of the archive's optional ATTR section
 *     (spec/alcm-format.md, section 6.6).
 *   - alcm_h5_output takes that structure back and writes a file that h5diff finds
 *     identical to the source when the archive is lossless, attributes included.
 *
 * Packing an .h5 file
 * -------------------
 *   1. alcm_h5_input_open() opens the file and walks it: every object, datatype, dataspace,
 *      filter and attribute is checked against `lim` and the flags here, before any tensor
 *      data is read. An object the structure cannot describe fails the open with
 *      ALCM_E_UNSUPPORTED and a detail line naming it, or, with ALCM_H5_SKIP_UNSUPPORTED,
 *      is left out and listed (alcm_h5_input_skipped()).
 *   2. alcm_h5_input_next() until *has == 0: one dataset at a time, converted to the
 *      little-endian alcm dtype; pass each to alcm_encoder_add().
 *   3. alcm_h5_input_structure(), then alcm_encoder_add_section(e, "ATTR", 0, buf, len).
 *   4. alcm_encoder_finish(), alcm_writer_commit(), alcm_h5_input_free().
 *
 * Unpacking to .h5
 * ----------------
 *   1. Read the archive's ATTR section (alcm_reader_find_section(r, "ATTR", ...)), if any.
 *   2. alcm_h5_output_open() with it: it is parsed and checked completely (a hostile archive
 *      gets ALCM_E_CORRUPT before any file is created), then groups and named datatypes are
 *      created in a temporary file next to the target.
 *   3. alcm_h5_output_plan() with the tensors' names, dtypes and shapes: names HDF5 cannot
 *      hold, and tensors the structure does not match, are refused before any is decoded.
 *   4. alcm_h5_output_write() for each decoded tensor (any order).
 *   5. alcm_h5_output_commit(): attributes, links and variable-length datasets, then fsync
 *      and rename. alcm_h5_output_free() without commit removes the temporary file.
 *
 * Security
 * --------
 * libhdf5 is not designed to read hostile files safely: it has had memory-safety bugs in
 * its parsers of object headers, B-trees, heaps and datatypes, and they run inside this
 * process. The bridge narrows what libhdf5 is asked to do: it never follows external links,
 * never reads external raw-data storage or virtual datasets, and never loads filter
 * plugins unless the caller's flags allow it; it checks every rank, shape, element size,
 * chunk size and attribute size against alcm_limits before it allocates or reads; it walks
 * groups iteratively (no recursion on hostile depth) and visits each object once (hard-link
 * cycles end). What remains is libhdf5's own parsing of the file's metadata: with
 * ALCM_H5_ISOLATE that runs in a child process, whose answers are checked again, so that a
 * libhdf5 crash becomes an error; an over-read inside libhdf5 can still copy child memory
 * (a copy of the caller's at fork time) into attribute values. Convert untrusted .h5 files
 * with ALCM_H5_ISOLATE, in a short-lived, preferably sandboxed, process that holds no
 * secrets; the archive it writes can then be handled with the core library alone. Archives
 * (and their ATTR sections) are parsed by alcm's own checked code, not by libhdf5.
 *
 * Conventions
 * -----------
 * Those of alcm.h: functions return ALCM_OK or an enum alcm_status value, objects keep one
 * detail line, *_free(NULL) is a no-op, the library never prints. HDF5's own error printing
 * is switched off for the duration of each call and restored afterwards; its innermost
 * error message, when there is one, ends the detail line in parentheses.
 *
 * Threads: libhdf5 (serial build) is not thread-safe. Use the bridge from one thread at a
 * time, process-wide, and not concurrently with other HDF5 calls. The calls also toggle the
 * process-wide plugin loading state (H5PLset_loading_state) and restore it on return. An
 * input opened with ALCM_H5_ISOLATE makes its libhdf5 calls in its own child process.
 *
 * Memory: the bridge allocates with malloc (libhdf5 does too); there is no allocator
 * argument.
 */
#ifndef ALCM_HDF5_H
#define ALCM_HDF5_H

#include "alcm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the ATTR payload layout this library writes and reads (spec/alcm-format.md 6.6). */
#define ALCM_H5_STRUCT_MAJOR 1
#define ALCM_H5_STRUCT_MINOR 0

/** Section type of the structure in an archive: optional (not critical). */
#define ALCM_H5_SECTION "ATTR"

/* ------------------------------------------------------------------------------------ */
/* Reading .h5 files                                                                     */
/* ------------------------------------------------------------------------------------ */

/** Input flags. */
#define ALCM_H5_SKIP_UNSUPPORTED 0x1u /**< skip (and record) objects the spec cannot describe */
#define ALCM_H5_ALLOW_EXTERNAL 0x2u   /**< keep external links (recorded, never followed) and
                                           read datasets stored in external files or virtual
                                           datasets (off: refuse them) */
#define ALCM_H5_ALLOW_PLUGINS 0x4u    /**< let libhdf5 load filter plugins from
                                           HDF5_PLUGIN_PATH (off: H5PLset_loading_state(0)) */
#define ALCM_H5_ISOLATE 0x8u          /**< run libhdf5 in a child process (fork, POSIX): the
                                           tensors and the structure come back through a pipe
                                           and are checked again; a crash of libhdf5 on a
                                           malformed file becomes ALCM_E_CORRUPT instead of
                                           taking this process down, and a child silent
                                           for ALCM_H5_TIMEOUT seconds (environment,
                                           default 600; libhdf5 loops forever on some
                                           malformed files) is killed: ALCM_E_LIMIT.
                                           Recommended for files from strangers; the tools
                                           use it by default. */

typedef struct alcm_h5_input alcm_h5_input;

/**
 * Opens an HDF5 file read-only and walks it (see "Packing" above). The walk reads metadata
 * and attributes only; tensor data is read by alcm_h5_input_next().
 *
 * What becomes a tensor (spec/alcm-format.md 6.6.6):
 *  - datasets of a standard integer (8, 16, 32, 64 bits, signed or not) or IEEE float
 *    (16, 32, 64 bits; bfloat16 too, recognised by its bit fields) type, little- or
 *    big-endian: the alcm dtype of that width, data converted to little-endian;
 *  - enumerations over such an integer: the base integer dtype (bool for h5py's
 *    {FALSE = 0, TRUE = 1} int8 enumeration);
 *  - any other fixed-size type (compound, array, opaque, bitfield, fixed-length string,
 *    odd-precision numbers): uint8 with one more trailing dimension, the element size,
 *    holding the bytes exactly as stored;
 *  - datasets of variable-length strings or sequences, and datasets with a null dataspace,
 *    are no tensor: their values are kept in the structure.
 * Refused (or skipped with ALCM_H5_SKIP_UNSUPPORTED): references, variable-length data
 * nested inside a compound or array, the time class, VAX-order floats, user-defined link
 * classes, datasets using a filter this libhdf5 cannot decode, and, without
 * ALCM_H5_ALLOW_EXTERNAL, external links, external storage and virtual datasets.
 *
 * Limits (lim NULL: alcm_limits_default()): max_tensors (datasets carried as tensors),
 * max_name_bytes (every path), max_ndim (rank, +1 for the uint8 representation),
 * max_elements and max_decoded_bytes (each dataset, and each chunk of a chunked one),
 * max_meta_bytes (the whole structure, which bounds the number of objects and attributes
 * and the size of attribute values; checked as the walk goes).
 *
 * @param out   receives the input, also on failure (for alcm_h5_input_detail()); may
 *              receive NULL when out of memory. Free it in both cases.
 * @param flags ALCM_H5_* input flags.
 * With ALCM_H5_ISOLATE, all of this runs in a child process (fork) that stays alive until
 * the last tensor is sent or the input is freed; this process then makes no libhdf5 call at
 * all. A tensor is held twice meanwhile (child and caller), and the child starts as a copy of
 * the caller: open HDF5 inputs before loading secrets such as signing keys. The child
 * cannot dump core, and is tied to this process so that nothing leaves it running: on Linux the kernel kills it (PR_SET_PDEATHSIG) when the thread that opened the
 * input ends, so open, read and free an isolated input from one thread that outlives those
 * calls (a worker thread that opens the input and exits early kills the reader: the next
 * alcm_h5_input_next() then fails); and it has a CPU-time limit (RLIMIT_CPU) of
 * ALCM_H5_TIMEOUT seconds plus 1 s per 4 MiB of input, past which it is stopped
 * (ALCM_E_LIMIT) even if this process is stopped or stuck.
 *
 * @return ALCM_OK, ALCM_E_ARG, ALCM_E_IO (cannot open or not a regular file; with
 *         ALCM_H5_ISOLATE also: cannot start the reader process), ALCM_E_CORRUPT (not an
 *         HDF5 file, or libhdf5 refuses its metadata; with ALCM_H5_ISOLATE also: libhdf5
 *         crashed on it), ALCM_E_LIMIT, ALCM_E_UNSUPPORTED, ALCM_E_NOMEM.
 */
ALCM_API int alcm_h5_input_open(alcm_h5_input **out, const char *path, const alcm_limits *lim,
                                unsigned flags);

/**
 * Same as alcm_h5_input_open() on an HDF5 file image in memory (libhdf5's core driver with
 * H5Pset_file_image; the bytes are copied, `buf` may be freed after the call). Meant for
 * fuzzing and for files received over a network. External storage and external links are
 * resolved (when allowed) relative to the current directory.
 */
ALCM_API int alcm_h5_input_open_memory(alcm_h5_input **out, const void *buf, size_t len,
                                       const alcm_limits *lim, unsigned flags);

/**
 * Reads the next dataset, in byte order of the paths. *t (name, shape, data) stays valid
 * until the next call or alcm_h5_input_free(). A read error poisons the input.
 * @param has  receives 1 when a tensor was read, 0 after the last one.
 * @return ALCM_OK, ALCM_E_CORRUPT (libhdf5 cannot read the data: a damaged chunk, a bad
 *         checksum; with ALCM_H5_ISOLATE also: the reader process crashed or sent a malformed
 *         message), ALCM_E_IO (the reader process ended), ALCM_E_NOMEM, ALCM_E_STATE.
 */
ALCM_API int alcm_h5_input_next(alcm_h5_input *in, alcm_tensor *t, int *has);

/** Size of the source file in bytes (for progress); 0 if unknown. */
ALCM_API uint64_t alcm_h5_input_size(const alcm_h5_input *in);

/** Number of tensors alcm_h5_input_next() will return in all. */
ALCM_API size_t alcm_h5_input_tensor_count(const alcm_h5_input *in);

/**
 * The structure (spec/alcm-format.md 6.6): groups including empty ones, attributes of every object,
 * exact datatypes and dataspaces, storage hints (layout, chunk shape, filters), links,
 * values of variable-length datasets, and the list of skipped objects with reasons. Store
 * it as the archive's ATTR section. Built by alcm_h5_input_open(), so it may be fetched at
 * any time after a successful open. Owned by the input.
 * @return ALCM_OK, ALCM_E_STATE (the open failed).
 */
ALCM_API int alcm_h5_input_structure(alcm_h5_input *in, const void **buf, size_t *len);

/** Number of objects and attributes left out under ALCM_H5_SKIP_UNSUPPORTED. */
ALCM_API size_t alcm_h5_input_skipped(const alcm_h5_input *in);

/**
 * Skipped entry `i`: @return its display name ("group/dataset", or "group/dataset (attribute
 * 'units')"), NUL-terminated, owned by the input; NULL if i is out of range.
 * @param reason  receives why it was skipped (may be NULL).
 */
ALCM_API const char *alcm_h5_input_skipped_name(const alcm_h5_input *in, size_t i,
                                                const char **reason);

/** @return the detail line of the last error ("" if none). */
ALCM_API const char *alcm_h5_input_detail(const alcm_h5_input *in);

ALCM_API void alcm_h5_input_free(alcm_h5_input *in);

/* ------------------------------------------------------------------------------------ */
/* Writing .h5 files                                                                     */
/* ------------------------------------------------------------------------------------ */

/** Output flags, combined with ALCM_WRITE_OVERWRITE and ALCM_WRITE_NO_SYNC (alcm.h). */
#define ALCM_H5_OUT_ALLOW_EXTERNAL 0x100u /**< create the external links the structure lists
                                               (off: ALCM_E_UNSUPPORTED naming the first) */
#define ALCM_H5_OUT_PARTIAL 0x200u        /**< commit even if some datasets the structure
                                               lists were not written (an extraction of
                                               selected tensors); their attributes and the
                                               hard links to them are left out */

/** How datasets are stored. Defaults: alcm_h5_output_options_default(). */
typedef struct alcm_h5_output_options {
	/** 0: the source's chunk shape (contiguous if the source was contiguous, or without a
	 *  structure); > 0: every dataset of rank >= 1 with at least one element is chunked,
	 *  row-major, with chunks of at most this many bytes (at least one element). */
	uint64_t chunk_bytes;
	/** -1 (default): the source's filters, re-applied when they are lossless and built into
	 *  libhdf5 (deflate, shuffle, fletcher32, nbit); other filters are recorded in the
	 *  structure but not re-applied. 0..9: instead, deflate at this level (chunked: with
	 *  chunk_bytes 0, the source's chunk shape or 1 MiB chunks). */
	int gzip_level;
	/** With gzip_level >= 0: 1 puts the shuffle filter before deflate. */
	int shuffle;
} alcm_h5_output_options;

ALCM_API void alcm_h5_output_options_default(alcm_h5_output_options *opt);

typedef struct alcm_h5_output alcm_h5_output;

/**
 * Starts an HDF5 file at `path`, written atomically: a temporary file in the target's
 * directory, fsynced and renamed at commit (link + unlink without ALCM_WRITE_OVERWRITE, so
 * that an existing file is never replaced).
 * @param structure  the ATTR payload of the archive (borrowed: copied), or NULL: plain
 *                   datasets at the tensors' paths, parent groups created as needed, types
 *                   little-endian (bool as h5py's int8 enumeration, bfloat16 as a 16-bit
 *                   IEEE-style float with 8 exponent bits).
 * @param opt        NULL for the defaults.
 * @return ALCM_OK, ALCM_E_ARG, ALCM_E_EXISTS, ALCM_E_IO, ALCM_E_CORRUPT (the structure
 *         breaks spec/alcm-format.md 6.6; nothing is created), ALCM_E_UNSUPPORTED (a newer major
 *         version; external links without ALCM_H5_OUT_ALLOW_EXTERNAL), ALCM_E_NOMEM.
 *         *out is set in every case but NULL-allocation; free it.
 */
ALCM_API int alcm_h5_output_open(alcm_h5_output **out, const char *path, unsigned flags,
                                 const void *structure, size_t structure_len,
                                 const alcm_h5_output_options *opt);

/**
 * Declares the tensors to come (data ignored), so that what the file cannot hold is refused
 * before anything is decoded or written. Optional; alcm-unpack calls it right after open.
 * Every name must be an HDF5 path once one leading '/' is dropped (not empty, no NUL byte, no
 * empty or "." component, no trailing '/'), no two names the same path, no name a group on
 * the way to another ("a" and "a/b": a link is a dataset or a group), and every dimension
 * below 2^63 (libhdf5's limit). With a structure, every tensor must be one of its datasets,
 * of the dtype and shape it records, and, unless ALCM_H5_OUT_PARTIAL, every dataset it lists
 * must be planned.
 * @return ALCM_OK; ALCM_E_UNSUPPORTED for names or shapes an HDF5 file cannot hold (the
 *         tensors may be valid: write another format); ALCM_E_CORRUPT when the tensors and
 *         the structure disagree (an archive whose ATTR does not match its directory);
 *         ALCM_E_STATE, ALCM_E_NOMEM.
 */
ALCM_API int alcm_h5_output_plan(alcm_h5_output *o, const alcm_tensor *t, size_t n);

/**
 * Writes one tensor as the dataset at its name (an HDF5 path; a leading '/' is ignored).
 * With a structure, the name must be a dataset the structure lists with a tensor
 * representation, and dtype and shape must be the ones it implies; the dataset gets the
 * recorded datatype (byte order included), dataspace and storage.
 * @return ALCM_OK, ALCM_E_ARG (unknown name, wrong dtype or shape, written twice: what
 *         alcm_h5_output_plan() refuses first), ALCM_E_IO (a write failed), ALCM_E_CORRUPT
 *         (libhdf5 refuses what the structure describes), ALCM_E_UNSUPPORTED (libhdf5 refuses
 *         the plain dataset), ALCM_E_STATE.
 */
ALCM_API int alcm_h5_output_write(alcm_h5_output *o, const alcm_tensor *t);

/**
 * Writes variable-length datasets, attributes, hard, soft and external links from the
 * structure, closes the file, fsyncs and renames it into place.
 * @return ALCM_OK, ALCM_E_STATE (a dataset of the structure was not written, without
 *         ALCM_H5_OUT_PARTIAL), ALCM_E_IO, ALCM_E_EXISTS.
 */
ALCM_API int alcm_h5_output_commit(alcm_h5_output *o);

ALCM_API const char *alcm_h5_output_detail(const alcm_h5_output *o);

/** Frees the output; removes the temporary file if it was not committed. */
ALCM_API void alcm_h5_output_free(alcm_h5_output *o);

/* ------------------------------------------------------------------------------------ */
/* Structures (ATTR payloads) without libhdf5                                            */
/* ------------------------------------------------------------------------------------ */

/** What a structure holds, from alcm_h5_structure_check(). */
typedef struct alcm_h5_structure_stats {
	unsigned major, minor;     /**< payload version */
	uint64_t groups;           /**< the root group included */
	uint64_t datasets;         /**< all of them */
	uint64_t tensor_datasets;  /**< carried by a tensor of the archive */
	uint64_t datatypes;        /**< named (committed) datatypes */
	uint64_t links;            /**< hard (aliases), soft and external links */
	uint64_t attributes;
	uint64_t skipped;
} alcm_h5_structure_stats;

/**
 * Parses and checks a structure completely (every rule of spec/alcm-format.md 6.6 that does not need
 * libhdf5). Linear in `len`, allocation-free, safe on hostile bytes.
 * @param st   receives the counts (may be NULL).
 * @param why  receives a reason on failure (ALCM_DETAIL_MAX = 512 bytes, may be NULL).
 * @return ALCM_OK, ALCM_E_CORRUPT, ALCM_E_UNSUPPORTED (newer major version).
 */
ALCM_API int alcm_h5_structure_check(const void *buf, size_t len, alcm_h5_structure_stats *st,
                                     char *why);

/**
 * Skipped entry `i` of a structure that passed alcm_h5_structure_check(). Pointers are into
 * `buf`; strings are not NUL-terminated. `attr` is NULL for an object.
 * @return ALCM_OK, ALCM_E_NOTFOUND (i out of range), ALCM_E_CORRUPT.
 */
ALCM_API int alcm_h5_structure_skipped(const void *buf, size_t len, uint64_t i,
                                       const char **path, size_t *path_len, const char **attr,
                                       size_t *attr_len, const char **reason,
                                       size_t *reason_len);

/* ------------------------------------------------------------------------------------ */
/* The HDF5 filter (libH5Zalcm.so, and registered in-process by this bridge)             */
/* ------------------------------------------------------------------------------------ */

/**
 * Filter id of the alcm filter (plugin/H5Zalcm.c, lib/hdf5/h5_filter.c), taken from the range
 * HDF5 sets aside for testing (256-511; H5Zpublic.h) until one is registered with The HDF
 * Group. 305 and 307 (LZO, BZIP2) in that range are registered already; 417 is not. Spec
 * 6.6.13 says how a registered id would replace it while files with 417 keep reading.
 *
 * Every call of this bridge registers the filter in the calling process's libhdf5
 * (H5Zregister) when no filter of this id is registered yet, so that alcm_h5_input decodes
 * datasets stored with it by this library's own code, without loading any plugin. A filter
 * the application registered under this id first is left in place.
 */
#define ALCM_H5Z_FILTER_ID 417

/**
 * cd_values of the filter (spec 6.6.13). A user passes the first 6 (or fewer: the rest take
 * their defaults, 2, 0, 0, 0, 8, 0); the filter's set_local callback appends the rest from the
 * dataset. A value out of range fails H5Dcreate with a message on HDF5's error stack naming
 * the index and the allowed range.
 */
#define ALCM_H5Z_CD_VERSION 0  /**< chunk encoding: 2 (default) a compact tensor frame per
                                    chunk (alcm.h, spec 6.11); 1 a whole .alcm archive per
                                    chunk (format 1.0 files; about 2.9 KB more per chunk) */
#define ALCM_H5Z_CD_MODE 1     /**< enum alcm_mode (0 lossless, 1 max-error, 2 rel-error,
                                    3 snr, 4 bits); default 0 */
#define ALCM_H5Z_CD_BOUND_LO 2 /**< the bound, an IEEE double: low 32 bits of its bits */
#define ALCM_H5Z_CD_BOUND_HI 3 /**< high 32 bits */
#define ALCM_H5Z_CD_BITS 4     /**< for mode 4: 2..16 */
#define ALCM_H5Z_CD_LEVEL 5    /**< zstd level 1..19; 0: 3 */
#define ALCM_H5Z_CD_USER 6     /**< values a user sets */
#define ALCM_H5Z_CD_DTYPE 6    /**< set_local: enum alcm_dtype of the elements (uint8 when
                                    the type is no plain number) */
#define ALCM_H5Z_CD_SWAP 7     /**< set_local: 1 if elements are big-endian */
#define ALCM_H5Z_CD_RANK 8     /**< set_local: chunk rank r (1..32) */
#define ALCM_H5Z_CD_DIMS 9     /**< set_local: r chunk dimensions follow */

/** Values of cd_values[ALCM_H5Z_CD_VERSION]. */
#define ALCM_H5Z_VERSION_ARCHIVE 1
#define ALCM_H5Z_VERSION_FRAME 2

#ifdef __cplusplus
}
#endif
#endif /* ALCM_HDF5_H */
