/*
 * Internals of the HDF5 bridge (lib/hdf5/). Not installed.
 *
 * h5_struct.c   the ATTR payload: a growable writer, and the checked parser that the
 *               output and alcm_h5_structure_check() share (no libhdf5 calls)
 * h5_type.c     libhdf5 <-> payload: datatype descriptors, dataspaces, attribute values,
 *               the error-printing and plugin-loading guard
 * h5_input.c    alcm_h5_input: the walk and the tensor reads
 * h5_output.c   alcm_h5_output
 */
#ifndef ALCM_H5_INTERNAL_H
#define ALCM_H5_INTERNAL_H

#include "alcm_hdf5.h"
#include "format_internal.h"

#include <stddef.h>
#include <stdint.h>

/* ---- payload constants (spec/alcm-format.md 6.6) ---- */

#define AH5_MAGIC "ALH5"
#define AH5_HEADER_BYTES 16

enum { AH5_OBJ_GROUP = 1, AH5_OBJ_DATASET = 2, AH5_OBJ_DATATYPE = 3, AH5_OBJ_HARD = 4,
       AH5_OBJ_SOFT = 5, AH5_OBJ_EXTERNAL = 6 };
enum { AH5_REPR_NUMERIC = 0, AH5_REPR_ENUM = 1, AH5_REPR_RAW = 2, AH5_REPR_INLINE = 3 };
enum { AH5_T_INTEGER = 0, AH5_T_FLOAT = 1, AH5_T_STRING = 2, AH5_T_BITFIELD = 3,
       AH5_T_OPAQUE = 4, AH5_T_COMPOUND = 5, AH5_T_ENUM = 6, AH5_T_ARRAY = 7, AH5_T_VLEN = 8 };
enum { AH5_SPACE_SCALAR = 0, AH5_SPACE_SIMPLE = 1, AH5_SPACE_NULL = 2 };
enum { AH5_LAYOUT_CONTIGUOUS = 0, AH5_LAYOUT_CHUNKED = 1, AH5_LAYOUT_COMPACT = 2,
       AH5_LAYOUT_VIRTUAL = 3 };
enum { AH5_SKIP_OBJECT = 0, AH5_SKIP_ATTRIBUTE = 1 };

/* Largest element of any datatype: 16 MiB (HDF5 itself allows up to 4 GiB; an element that
 * large is an attack on the conversion buffers, not a checkpoint). */
#define AH5_MAX_ELEM ((uint64_t)16 << 20)
/* Nesting of compound, array, enum and vlen types. */
#define AH5_MAX_TYPE_DEPTH 8
#define AH5_MAX_RANK 32
#define AH5_MAX_FILTERS 32
#define AH5_MAX_CD 256
#define AH5_MAX_TAG 255
#define AH5_NULL_STRING 0xffffffffu

/* ---- growable output buffer ---- */

typedef struct ah5buf {
	uint8_t *p;
	size_t len, cap;
	uint64_t max;           /* bytes allowed in all; more sets `over` */
	int oom, over;
} ah5buf;

void ah5buf_put(ah5buf *b, const void *s, size_t n);
void ah5buf_u8(ah5buf *b, unsigned v);
void ah5buf_u32(ah5buf *b, uint32_t v);
void ah5buf_u64(ah5buf *b, uint64_t v);
void ah5buf_str(ah5buf *b, const void *s, size_t n); /* u32 length + bytes */
void ah5buf_free(ah5buf *b);
static inline int ah5buf_failed(const ah5buf *b)
{
	return b->oom || b->over;
}

/* ---- parsing ---- */

typedef struct ah5cur {
	const uint8_t *p;
	size_t len, pos;
	char *why;              /* ALCM_DETAIL_MAX bytes, or NULL */
	int failed;
} ah5cur;

int ah5cur_fail(ah5cur *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What a checked datatype descriptor is. */
typedef struct ah5_type_info {
	int cls;
	uint64_t size;          /* 0 for variable-length strings and vlen */
	int variable;           /* vlen string or vlen sequence (top level only) */
	uint64_t base_size;     /* vlen: element size of the base */
	int dtype;              /* alcm dtype when the type is a plain number, else 0 */
	int swap;               /* plain number (or enum base) stored big-endian */
	int enum_dtype;         /* ENUM over a plain integer: its dtype (bool for h5py's bool) */
} ah5_type_info;

typedef struct ah5_space_info {
	int cls;
	uint32_t rank;
	uint64_t dims[AH5_MAX_RANK];
	uint64_t maxdims[AH5_MAX_RANK];
	uint64_t count;         /* elements: 1 scalar, 0 null */
} ah5_space_info;

/* Checks one descriptor at c->pos (top level: variable-length allowed). */
int ah5_type_check(ah5cur *c, ah5_type_info *ti);
int ah5_space_check(ah5cur *c, ah5_space_info *si);
/* Checks a value of `count` elements of type ti, value_len bytes at c->pos. */
int ah5_value_check(ah5cur *c, const ah5_type_info *ti, uint64_t count, uint64_t value_len);
/* Classifies a checked descriptor (bytes [p, p+n)). */
int ah5_type_classify(const uint8_t *p, size_t n, ah5_type_info *ti, char *why);

/* One object record of a parsed payload; offsets are into the payload. */
typedef struct ah5_obj {
	int kind, repr, dtype;
	const uint8_t *path;
	size_t path_len;
	size_t type_off, type_len;
	size_t space_off, space_len;
	size_t storage_off, storage_len;
	size_t value_off;
	uint64_t value_len;
	size_t attrs_off;       /* the u32 count */
	uint32_t nattrs;
	const uint8_t *target;  /* hard, soft: target; external: file */
	size_t target_len;
	const uint8_t *target2; /* external: object path */
	size_t target2_len;
	ah5_type_info ti;
	ah5_space_info si;
} ah5_obj;

typedef struct ah5_parsed {
	unsigned major, minor;
	uint32_t nobj, nskip;
	size_t skip_off;        /* first skip record */
	ah5_obj *obj;           /* filled when non-NULL (nobj entries) */
	alcm_h5_structure_stats st;
} ah5_parsed;

/*
 * Parses and checks a payload. With objs == NULL only counts are computed (allocation-free);
 * else *objs receives a malloc'd array of every object record.
 */
int ah5_parse(const uint8_t *p, size_t len, ah5_parsed *ps, int want_objs, char *why);
/* Binary search of a path among the sorted objects. @return index or -1. */
long ah5_find(const ah5_parsed *ps, const uint8_t *path, size_t len);
/* Path rules: non-empty components, no NUL, no leading/trailing '/', no '.' component. */
int ah5_path_ok(const uint8_t *p, size_t n);
/* Byte-wise order of two byte strings (shorter first on a tie). */
int ah5_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn);

/* Tensor shape of a dataset record with a tensor representation. */
int ah5_tensor_shape(const ah5_obj *o, uint32_t *ndim, uint64_t *shape);

#endif
