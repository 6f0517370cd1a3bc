/*
 * Internals shared by the tensor file readers and writers in lib/io/. Not installed.
 *
 * An alcm_input holds the source (a file read with pread, or borrowed memory), the limits,
 * one detail line and one data buffer that alcm_input_next() reuses. Each format plugs in
 * through alcm_io_in_ops / alcm_io_out_ops and keeps its own state behind `state`.
 */
#ifndef ALCM_IO_INTERNAL_H
#define ALCM_IO_INTERNAL_H

#include "format_internal.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Room for a quoted tensor or member name in a message. */
#define ALCM_IO_QUOTE 128
/* numpy's largest header length field we accept (a .npy header of rank 32 is < 1 KiB). */
#define ALCM_IO_NPY_HEADER_MAX 65535u
/* Longest prefix before the header text: magic, version, 4-byte length. */
#define ALCM_IO_NPY_PREFIX_MAX 12u

/* META records a tensor file carries (records.c). */
typedef struct alcm_io_meta {
	char *key;              /* NUL-terminated */
	uint8_t *val;
	size_t len;
} alcm_io_meta;

typedef struct alcm_io_meta_list {
	alcm_io_meta *m;
	size_t n, cap;
} alcm_io_meta_list;

/* The bytes of alcm_input_piece(): read ALCM_IO_PIECE at a time into in->buf. */
#define ALCM_IO_PIECE ((size_t)1 << 20)

typedef struct alcm_io_in_ops {
	int (*next)(alcm_input *in, alcm_tensor *t, int *has);
	void (*free)(alcm_input *in);
	/* Reading in pieces (optional): begin is next without reading the data (t->data NULL),
	 * or, for a tensor that must be read whole (transposed, byte-swapped), next itself;
	 * piece reads the n bytes at `at` of the tensor begun, `last` when they end it. */
	int (*begin)(alcm_input *in, alcm_tensor *t, int *has);
	int (*piece)(alcm_input *in, void *dst, uint64_t at, size_t n, int last);
} alcm_io_in_ops;

struct alcm_input {
	alcm_allocator alloc;
	alcm_limits lim;
	int format;
	int fd;                 /* -1 for memory input */
	const uint8_t *mem;
	uint64_t size;
	char *label;            /* the path or display name, for messages */
	char *base;             /* base name without extension: the name of a lone .npy */
	int poisoned;
	uint8_t *buf;           /* tensor data handed out by alcm_input_next() */
	size_t buf_cap;
	uint8_t *prev;          /* alcm_input_keep_previous(): the other buffer, used in turn */
	size_t prev_cap;
	int keep_prev;
	int piece;              /* alcm_input_next_begin(): 1 read by ops->piece, 2 whole in buf */
	uint64_t piece_at, piece_left; /* bytes of the tensor handed out, and still to come */
	const uint8_t *piece_src;      /* piece 2: the data next() gave (in buf, or a reader's) */
	const alcm_io_in_ops *ops;
	void *state;
	alcm_io_meta_list meta; /* records for the archive's META (alcm_input_meta) */
	char detail[ALCM_DETAIL_MAX];
};

/* One planned or written tensor of an output. */
typedef struct alcm_io_entry {
	char *name;
	size_t name_len;
	int dtype;
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM];
	uint64_t nbytes;
	uint64_t offset;        /* format-specific: data offset (safetensors) */
} alcm_io_entry;

typedef struct alcm_io_out_ops {
	int (*plan)(alcm_output *o);                        /* after o->plan is filled */
	int (*write)(alcm_output *o, const alcm_tensor *t); /* t is validated */
	int (*commit)(alcm_output *o);                      /* before the atomic commit */
	void (*free)(alcm_output *o);
	/* Writing in pieces (optional): begin with t validated, t->data unused; append the
	 * bytes in order; end once t->nbytes were appended (may be NULL). */
	int (*begin)(alcm_output *o, const alcm_tensor *t);
	int (*append)(alcm_output *o, const void *p, size_t n);
	int (*end)(alcm_output *o);
} alcm_io_out_ops;

struct alcm_output {
	alcm_allocator alloc;
	int format;
	unsigned flags;
	alcm_atomic file;
	int file_open;
	int poisoned;
	int committed;
	uint64_t pos;           /* bytes written sequentially so far */
	alcm_io_entry *plan;
	size_t plan_count;      /* valid when has_plan */
	int has_plan;
	size_t written;         /* tensors written */
	int piece_open;         /* a tensor is being written in pieces (alcm_output_begin) */
	uint64_t piece_left;    /* its bytes still to come */
	uint64_t piece_off;     /* format-specific: where the next piece goes (safetensors) */
	const alcm_io_out_ops *ops;
	void *state;
	alcm_io_meta_list meta; /* the archive's META (alcm_output_set_meta) */
	void *aliases;          /* aliases written as copies (records.c) */
	char detail[ALCM_DETAIL_MAX];
};

/* ---- input helpers (io.c) ---- */

/* Sets in->detail to "<label>: <message>". @return status. */
int alcm_io_fail(alcm_input *in, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Reads exactly n bytes at off; a range past the end is ALCM_E_CORRUPT. */
int alcm_io_read(alcm_input *in, void *dst, size_t n, uint64_t off);
/* Makes in->buf hold at least n bytes (contents not kept). */
int alcm_io_reserve(alcm_input *in, uint64_t n);
/* Quotes a byte-string name into q (ALCM_IO_QUOTE bytes) and returns q. */
const char *alcm_io_quote(char *q, const char *s, size_t len);
/*
 * Byte size of a tensor, checked for overflow and against lim (elements, decoded bytes).
 * @return ALCM_OK or ALCM_E_LIMIT with a reason in why (ALCM_DETAIL_MAX bytes).
 */
int alcm_io_shape_bytes(const alcm_limits *lim, int dtype, uint32_t ndim, const uint64_t *shape,
                        uint64_t *nbytes, char *why);
/* @return 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF); else 0
 * with *bad at the first offending byte. */
int alcm_io_utf8_valid(const uint8_t *s, size_t n, size_t *bad);
/* A name to sort for a duplicate check; idx is the caller's. */
typedef struct alcm_io_name_ref {
	const uint8_t *p;
	size_t len;
	size_t idx;
} alcm_io_name_ref;
/* Sorts refs by name bytes. @return the position in refs of the second of two equal
 * neighbours, or SIZE_MAX when all names differ. */
size_t alcm_io_names_dup(alcm_io_name_ref *refs, size_t n);

/* ---- output helpers (io.c) ---- */

int alcm_io_out_fail(alcm_output *o, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int alcm_io_out_write(alcm_output *o, const void *buf, size_t len);
int alcm_io_out_pwrite(alcm_output *o, const void *buf, size_t len, uint64_t off);

/* A growable byte buffer; an allocation failure sets oom and drops later appends. */
typedef struct alcm_io_sb {
	uint8_t *p;
	size_t len, cap;
	const alcm_allocator *a;
	int oom;
} alcm_io_sb;
void alcm_io_sb_put(alcm_io_sb *b, const void *s, size_t n);
void alcm_io_sb_str(alcm_io_sb *b, const char *s);
void alcm_io_sb_u64(alcm_io_sb *b, uint64_t v);
void alcm_io_sb_free(alcm_io_sb *b);

/* ---- .npy (npy.c), also used for the members of .npz ---- */

typedef struct alcm_io_npy_info {
	int dtype;
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM];
	int fortran;            /* data in Fortran order: transposed on read */
	int swap;               /* big-endian data: byte-swapped on read */
	uint64_t data_off;      /* offset of the data from the start of the .npy bytes */
	uint64_t nbytes;
} alcm_io_npy_info;

/* A forward-only source of .npy bytes (a file range, or an inflating zip member). */
typedef struct alcm_io_npy_src {
	int (*read)(alcm_input *in, void *ctx, void *dst, size_t n);
	void *ctx;
	uint64_t size;          /* bytes of the whole .npy */
	const char *tname;      /* tensor name, for messages */
	size_t tname_len;
	uint64_t member_off;    /* local header offset inside a zip, or UINT64_MAX */
} alcm_io_npy_src;

/* Reads and checks the magic and header; the data size must be exactly what remains. */
int alcm_io_npy_read_header(alcm_input *in, const alcm_io_npy_src *src, alcm_io_npy_info *info);
/* Byte-swaps and transposes in->buf (info->nbytes bytes) into C order, little-endian. */
int alcm_io_npy_fixup(alcm_input *in, const alcm_io_npy_info *info);
/* numpy's descr for a dtype, or NULL (bfloat16 has none). */
const char *alcm_io_npy_descr(int dtype);
/* Builds the exact header numpy.save writes for a C-order little-endian array.
 * @return its length, or 0 if the dtype has no descr. out needs 1024 bytes. */
size_t alcm_io_npy_build_header(uint8_t *out, int dtype, uint32_t ndim, const uint64_t *shape);
#define ALCM_IO_NPY_HEADER_BUF 1024

/* Refuses a bfloat16 tensor for .npy/.npz with ALCM_E_UNSUPPORTED and a hint. */
int alcm_io_npy_refuse_bf16(alcm_output *o, const char *name, size_t name_len);

int alcm_io_npy_open(alcm_input *in);
int alcm_io_npz_open(alcm_input *in);
int alcm_io_st_open(alcm_input *in);
int alcm_io_pt_open(alcm_input *in);
/* A .safetensors input's tensors, known from its header (shards.c checks them). */
size_t alcm_io_st_count(const alcm_input *in);
const uint8_t *alcm_io_st_name(const alcm_input *in, size_t i, size_t *len);
/* *is_pt = 1 if the zip has a "<dir>/data.pkl" record and no .npy member, as torch.save
 * writes it (or is the legacy torch format). @return ALCM_OK, or NOMEM/IO. */
int alcm_io_pt_sniff(alcm_input *in, int *is_pt);
/* A shard index (path: the .index.json, or a directory holding one). */
int alcm_io_shards_open(alcm_input *in, const char *path);

int alcm_io_npy_out(alcm_output *o);
int alcm_io_npz_out(alcm_output *o);
int alcm_io_st_out(alcm_output *o);
int alcm_io_pt_out(alcm_output *o);
int alcm_io_shards_out(alcm_output *o, const char *dir);

/* ---- zip (zip.c): the reader and writer shared by .npz and .pt ---- */

/* Holds the end-of-archive tail (22 + 65535 bytes) and is the inflate input buffer. */
#define ALCM_IO_ZIP_BUF 65600

typedef struct alcm_io_zip_entry {
	uint64_t local_off;
	uint64_t csize, usize;
	uint64_t limit;          /* where the next member or the central directory starts */
	uint64_t cd_at;          /* file offset of the central directory entry */
	uint32_t crc;
	uint16_t method, flags;
	const uint8_t *name;     /* into the central directory buffer */
	uint16_t name_len;
	size_t aux;              /* the caller's (npz: the tensor name's length) */
} alcm_io_zip_entry;

typedef struct alcm_io_zip_limits {
	uint64_t max_entries;
	const char *entries_what;        /* "tensors", for the message */
	uint64_t max_inflated;           /* a deflated member declaring more: limit error */
	uint64_t max_stored;             /* a stored member declaring more: limit error */
	/* Optional, called for each entry once its method is known to be readable. */
	int (*check_entry)(alcm_input *in, alcm_io_zip_entry *e);
} alcm_io_zip_limits;

typedef struct alcm_io_zip {
	uint8_t *cd;
	alcm_io_zip_entry *e;    /* in central directory order */
	size_t count;
	uint64_t cd_off;
	uint8_t *buf;            /* ALCM_IO_ZIP_BUF bytes */
	struct z_stream_s *z;    /* one inflater, reset for each deflated member */
} alcm_io_zip;

/* A member being read forward. */
typedef struct alcm_io_zip_member {
	alcm_io_zip *zip;
	const alcm_io_zip_entry *e;
	uint64_t data_off;       /* file offset of the member's compressed bytes */
	uint64_t cpos;           /* compressed bytes fed to inflate */
	uint64_t produced;
	unsigned long crc;
	int ended;
} alcm_io_zip_member;

int alcm_io_zip_fail(alcm_input *in, const alcm_io_zip_entry *e, int status, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));
/* Reads and checks the central directory: entries, sizes, no overlap (names unchecked). */
int alcm_io_zip_open(alcm_input *in, alcm_io_zip *z, const alcm_io_zip_limits *zl);
void alcm_io_zip_free(alcm_input *in, alcm_io_zip *z);
/* Checks the member's local header and starts reading it (one member at a time). */
int alcm_io_zip_member_open(alcm_input *in, alcm_io_zip *z, const alcm_io_zip_entry *e,
                            alcm_io_zip_member *m);
/* The next n bytes (ctx: the alcm_io_zip_member); reading past the declared size: CORRUPT. */
int alcm_io_zip_member_read(alcm_input *in, void *ctx, void *dst, size_t n);
int alcm_io_zip_member_skip(alcm_input *in, alcm_io_zip_member *m, uint64_t n);
/* After the last byte: the deflate stream must end there, and the CRC-32 match. */
int alcm_io_zip_member_finish(alcm_input *in, alcm_io_zip_member *m);

uint32_t alcm_io_crc32(uint32_t crc, const void *p, uint64_t n);

typedef struct alcm_io_zipw_entry {
	char *name;
	size_t name_len;
	uint32_t crc;
	uint64_t size;
	uint64_t off;
	uint16_t flags;
	int crc_late; /* written in pieces: the local header's CRC-32 is set at the finish */
} alcm_io_zipw_entry;

typedef struct alcm_io_zipw {
	alcm_io_zipw_entry *e;
	size_t n, cap;
	uint32_t crc; /* of the member being written in pieces */
} alcm_io_zipw;

#define ALCM_IO_ZIPW_ZIP64 1u   /* a zip64 extra in the local header (numpy's force_zip64) */
#define ALCM_IO_ZIPW_ALIGN64 2u /* data on a multiple of 64, padded as PyTorch does */
/* Writes the local header of a stored member of `size` bytes and CRC `crc` at the output's
 * position; the caller writes the bytes next. */
int alcm_io_zipw_begin(alcm_output *o, alcm_io_zipw *z, const char *name, size_t name_len,
                       uint64_t size, uint32_t crc, unsigned flags);
/* Writes the central directory and the end records. */
int alcm_io_zipw_finish(alcm_output *o, alcm_io_zipw *z);
void alcm_io_zipw_free(alcm_output *o, alcm_io_zipw *z);

/* ---- META records (records.c) ---- */

#define ALCM_IO_REC_ALIAS "alcm.alias"        /* tied tensors: (alias, target) pairs */
#define ALCM_IO_REC_USER "user."              /* user.K: string metadata */
#define ALCM_IO_REC_TORCH "torch.state_dict"  /* pt.c: what a .pt needs besides tensors */
#define ALCM_IO_REC_SHARDS "safetensors.shards" /* shards.c: the shard layout */
#define ALCM_IO_REC_INDEX "safetensors.index"   /* shards.c: the index file, as it was */

int alcm_io_meta_put(const alcm_allocator *a, alcm_io_meta_list *l, const char *key,
                     size_t key_len, const void *v, size_t len);
/* The last record of that key, or NULL. */
const alcm_io_meta *alcm_io_meta_find(const alcm_io_meta_list *l, const char *key);
void alcm_io_meta_free(const alcm_allocator *a, alcm_io_meta_list *l);

typedef struct alcm_io_alias {
	const uint8_t *name, *target; /* into the record's value */
	size_t name_len, target_len;
} alcm_io_alias;
void alcm_io_alias_put(alcm_io_sb *b, const char *alias, size_t alias_len, const char *target,
                       size_t target_len);
/* Parses an alcm.alias value into *out (free with alcm_mem_free). @return ALCM_OK, CORRUPT
 * or NOMEM with the reason in why (ALCM_DETAIL_MAX bytes). */
int alcm_io_alias_decode(const alcm_allocator *a, const uint8_t *v, size_t len,
                         alcm_io_alias **out, size_t *n, char *why);
/* Checks pairs against the names written (sorted here): every target is one, no alias is
 * one, no alias repeats (spec 6.1.2). @return ALCM_OK, CORRUPT or NOMEM with why set. */
int alcm_io_alias_check(const alcm_allocator *a, const alcm_io_alias *al, size_t na,
                        alcm_io_name_ref *names, size_t n, char *why);
/* .npz and .safetensors output: the plan with each alias (alcm.alias) right after its
 * target; alcm_io_out_aliases_write() then writes the copies after the target. */
int alcm_io_out_aliases_plan(alcm_output *o, const alcm_tensor *t, size_t count,
                             const alcm_tensor **plan, size_t *n);
int alcm_io_out_aliases_write(alcm_output *o, const alcm_tensor *t);
void alcm_io_out_aliases_free(alcm_output *o);
/* 1 if a user.K key K can be stored (no NUL, fits a META key). */
int alcm_io_user_key_ok(const uint8_t *k, size_t len);

/* ---- restricted pickle of state dicts (pickle.c) ---- */

#define ALCM_IO_PK_MARKS 64              /* MARK nesting; a state dict needs 3 */
#define ALCM_IO_PK_OBJECTS_PER_TENSOR 64 /* pickle objects allowed per max_tensors */
#define ALCM_IO_PK_JSON_DEPTH 16         /* nesting of state_dict._metadata */
#define ALCM_IO_PT_WINDOW ((uint64_t)1 << 20)  /* storage bytes read at once for a strided view */
#define ALCM_IO_PT_SPAN_MAX (64u << 20)        /* a self-overlapping view is read whole up to this */

typedef struct alcm_io_pk_storage {
	const uint8_t *key;      /* into the pickle bytes: the record is <root>/data/<key> */
	size_t key_len;
	int dtype;
	uint64_t numel;          /* elements the storage declares */
	size_t at;               /* pickle offset of its first persistent id */
} alcm_io_pk_storage;

typedef struct alcm_io_pk_tensor {
	uint32_t storage;        /* index into storages */
	uint32_t ndim;
	uint64_t offset;         /* in elements */
	size_t dims_at;          /* shape at dims[dims_at], strides right after */
	uint8_t requires_grad, parameter;
} alcm_io_pk_tensor;

typedef struct alcm_io_pk_entry {
	const uint8_t *name;     /* into the pickle bytes */
	size_t name_len;
	size_t tensor;           /* index into tensors */
} alcm_io_pk_entry;

typedef struct alcm_io_pk_result {
	alcm_io_pk_storage *storages;
	size_t nstorages;
	alcm_io_pk_tensor *tensors;
	size_t ntensors;
	alcm_io_pk_entry *entries; /* the dict, in order */
	size_t nentries;
	uint64_t *dims;
	size_t ndims;
	int ordered;             /* an OrderedDict (1) or a dict (0) */
	uint8_t *metadata;       /* state_dict._metadata as JSON, or NULL */
	size_t metadata_len;
} alcm_io_pk_result;

/* Reads a state dict from pickle bytes p (borrowed: r points into them). label names the
 * record in messages. @return ALCM_OK, or CORRUPT, UNSUPPORTED (a global, opcode or value a
 * state dict does not have), LIMIT, NOMEM with in->detail set. Free r in any case. */
int alcm_io_pickle_load(alcm_input *in, const char *label, const uint8_t *p, size_t len,
                        alcm_io_pk_result *r);
void alcm_io_pickle_free(alcm_input *in, alcm_io_pk_result *r);

/* One entry of a state dict to write. */
typedef struct alcm_io_pkw_tensor {
	const char *name;
	size_t name_len;
	int dtype;               /* one alcm_io_pickle_storage_class() knows */
	const char *key;         /* storage record key */
	size_t key_len;
	uint64_t numel, offset;
	uint32_t ndim;
	const uint64_t *shape, *stride;
	int parameter, requires_grad;
} alcm_io_pkw_tensor;

/* "FloatStorage" etc., or NULL for a dtype torch has no storage class for. */
const char *alcm_io_pickle_storage_class(int dtype);
/* Appends the pickle of a state dict (protocol 2, as torch.save writes it) to b. meta: JSON
 * of state_dict._metadata (an object), or NULL. @return ALCM_OK, NOMEM, or the JSON's error
 * (CORRUPT, LIMIT, UNSUPPORTED) with its offset and reason. */
int alcm_io_pickle_write(alcm_io_sb *b, const alcm_io_pkw_tensor *t, size_t n, int ordered,
                         const uint8_t *meta, size_t meta_len, size_t *bad_at,
                         const char **why);

/* ---- strict JSON lexing (json.c), for the safetensors header ---- */

typedef struct alcm_io_json {
	const uint8_t *p;
	size_t len;
	size_t pos;
	int status;             /* first error: ALCM_E_CORRUPT or ALCM_E_LIMIT */
	const char *err;        /* static reason */
	size_t err_pos;
} alcm_io_json;

#define ALCM_IO_JSON_DEPTH 64

int alcm_io_json_error(alcm_io_json *j, int status, const char *err);
void alcm_io_json_ws(alcm_io_json *j);
/* Skips whitespace; @return the next byte or -1 at the end. */
int alcm_io_json_peek(alcm_io_json *j);
/* Skips whitespace and consumes c, or fails. */
int alcm_io_json_expect(alcm_io_json *j, char c);
/*
 * Parses a string at pos (after whitespace), decoding escapes into out (up to cap bytes;
 * more is parsed but dropped). *len receives the full decoded length. Raw bytes are copied
 * as is: the caller has checked that the text is UTF-8.
 */
int alcm_io_json_string(alcm_io_json *j, uint8_t *out, size_t cap, size_t *len);
/* An unsigned integer without sign, fraction, exponent or leading zero; > 2^64-1: LIMIT. */
int alcm_io_json_u64(alcm_io_json *j, uint64_t *v);
/* Skips one value of any kind, nesting at most `depth` containers (deeper: LIMIT). */
int alcm_io_json_skip(alcm_io_json *j, unsigned depth);
/* Appends s as a JSON string, escaped as serde_json does (\b \f \n \r \t, \u00xx for other
 * controls; other bytes as they are). */
void alcm_io_json_put_string(alcm_io_sb *b, const char *s, size_t n);

#endif
