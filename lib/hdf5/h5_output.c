/* alcm_h5_output: tensors and a structure back into an HDF5 file, written atomically. */
#include "h5_hdf5.h"

#include <stdio.h>
#include <stdlib.h>

struct alcm_h5_output {
	hid_t file, lcpl;
	alcm_atomic f;
	ah5_sink sink;          /* libhdf5 writes to f.fd through it */
	int f_open, committed, poisoned;
	unsigned flags;
	alcm_h5_output_options opt;
	uint8_t *st;
	size_t st_len;
	int has_st;
	ah5_parsed ps;
	uint8_t *written;       /* per object of the structure */
	char *label;
	char detail[ALCM_DETAIL_MAX];
};

#define QUOTE 160
/* Compact layout holds the data in the object header: libhdf5 caps it below 64 KiB. */
#define COMPACT_MAX 60000u
/* Chunk target when a filter is asked for and neither the source nor the caller set one. */
#define DEFAULT_CHUNK ((uint64_t)1 << 20)

void alcm_h5_output_options_default(alcm_h5_output_options *opt)
{
	if (!opt)
		return;
	memset(opt, 0, sizeof(*opt));
	opt->gzip_level = -1;
}

static const char *quote(char *q, const void *s, size_t n)
{
	if (n == 0)
		return "/";
	alcm_detail_quote(q, QUOTE, s, n);
	return q;
}

static int ofail(alcm_h5_output *o, int status, int h5, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int ofail(alcm_h5_output *o, int status, int h5, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_detail_set(o->detail, "%s: %s", o->label ? o->label : "<output>", msg);
	/* libhdf5 refusing a dataset, group, link or attribute that no I/O error stopped: what
	 * the structure describes cannot be in an HDF5 file (it is malformed), or, without one,
	 * the tensor cannot (a dimension of 2^63). Only a failed read or write is i/o. */
	if (h5 && status == ALCM_E_IO && !o->sink.err && !ah5_error_is_io())
		status = o->has_st ? ALCM_E_CORRUPT : ALCM_E_UNSUPPORTED;
	if (o->sink.err) {
		/* The system's reason, not libhdf5's rephrasing of it. */
		size_t n = strlen(o->detail);
		snprintf(o->detail + n, ALCM_DETAIL_MAX - n, ": %s", strerror(o->sink.err));
		H5Eclear2(H5E_DEFAULT);
	} else if (h5) {
		ah5_append_hdf5_error(o->detail);
	}
	return status;
}

static char *cpath(const uint8_t *p, size_t n)
{
	/* "/" + path: absolute, so that no group id is needed. */
	char *c = malloc(n + 2);
	if (c) {
		c[0] = '/';
		memcpy(c + 1, p, n);
		c[n + 1] = '\0';
	}
	return c;
}

static char *cstr(const uint8_t *p, size_t n)
{
	char *c = malloc(n + 1);
	if (c) {
		memcpy(c, p, n);
		c[n] = '\0';
	}
	return c;
}

/*
 * Ancestor groups kept open while the sorted objects are visited, so that reaching an object
 * costs one lookup, not one per path component (a hostile structure may nest thousands of
 * groups). Objects come in byte order of paths, so an object's parent, when listed, is on
 * the stack or was popped by an interleaved sibling (then the absolute path is used).
 */
typedef struct pcache_entry {
	const uint8_t *p;
	size_t n;
	hid_t id;
} pcache_entry;

typedef struct pcache {
	pcache_entry *e;
	size_t n, cap;
} pcache;

static void pc_clear(pcache *c)
{
	while (c->n)
		H5Oclose(c->e[--c->n].id);
	free(c->e);
	c->e = NULL;
	c->cap = 0;
}

/* @return the location to open or create `path` from, and in *rel its name there. */
static hid_t pc_parent(alcm_h5_output *o, pcache *c, const uint8_t *p, size_t n, char **rel)
{
	size_t pn = n;
	while (pn > 0 && p[pn - 1] != '/')
		pn--;
	pn = pn ? pn - 1 : 0;
	while (c->n && !(c->e[c->n - 1].n == pn && memcmp(c->e[c->n - 1].p, p, pn) == 0))
		H5Oclose(c->e[--c->n].id);
	if (pn == 0) {
		*rel = cstr(p, n);
		return o->file;
	}
	if (c->n) {
		*rel = cstr(p + pn + 1, n - pn - 1);
		return c->e[c->n - 1].id;
	}
	*rel = cpath(p, n);
	return o->file;
}

/* Keeps group `id` open as a possible parent (closes it if it cannot be kept). */
static void pc_push(pcache *c, const uint8_t *p, size_t n, hid_t id)
{
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 16;
		pcache_entry *ne = realloc(c->e, nc * sizeof(*ne));
		if (!ne) {
			H5Oclose(id);
			return;
		}
		c->e = ne;
		c->cap = nc;
	}
	c->e[c->n].p = p;
	c->e[c->n].n = n;
	c->e[c->n].id = id;
	c->n++;
}

/* ---- storage ---- */

static void chunk_for(const ah5_space_info *si, uint64_t esize, uint64_t target, hsize_t *cd)
{
	uint64_t tel = target / (esize ? esize : 1);
	if (tel == 0)
		tel = 1;
	uint64_t inner = 1;
	int i = (int)si->rank - 1;
	for (; i >= 0; i--) {
		uint64_t d = si->dims[i] ? si->dims[i] : 1;
		if (d > UINT32_MAX)
			d = UINT32_MAX;
		if (inner * d <= tel) {
			cd[i] = d;
			inner *= d;
			continue;
		}
		cd[i] = tel / inner ? tel / inner : 1;
		for (int j = i - 1; j >= 0; j--)
			cd[j] = 1;
		break;
	}
}

static int chunk_fits(const ah5_space_info *si, const hsize_t *cd, uint64_t esize)
{
	uint64_t bytes = esize ? esize : 16;
	for (uint32_t i = 0; i < si->rank; i++) {
		if (si->maxdims[i] != UINT64_MAX && cd[i] > si->maxdims[i])
			return 0;
		if (alcm_mul_u64(bytes, cd[i], &bytes))
			return 0;
	}
	return bytes <= UINT32_MAX;
}

/*
 * Dataset creation properties: the source's layout and lossless built-in filters, or what
 * the options ask for. `storage` is the record's storage (NULL without a structure).
 */
static hid_t make_dcpl(alcm_h5_output *o, const uint8_t *storage, const ah5_space_info *si,
                       uint64_t esize)
{
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (dcpl < 0)
		return dcpl;
	unsigned lay = AH5_LAYOUT_CONTIGUOUS, nf = 0;
	hsize_t cd[H5S_MAX_RANK];
	ah5cur c = {storage, SIZE_MAX, 0, NULL, 0};
	if (storage) {
		lay = storage[0];
		c.pos = 2;
		if (lay == AH5_LAYOUT_CHUNKED)
			for (uint32_t i = 0; i < si->rank; i++) {
				cd[i] = alcm_load64(storage + c.pos);
				c.pos += 8;
			}
		nf = storage[c.pos++];
	}
	if (lay == AH5_LAYOUT_VIRTUAL)
		lay = AH5_LAYOUT_CONTIGUOUS;
	int can_chunk = si->cls == AH5_SPACE_SIMPLE;
	int unlimited = 0;
	for (uint32_t i = 0; i < si->rank && can_chunk; i++)
		unlimited |= si->maxdims[i] == UINT64_MAX;
	int want_filter = o->opt.gzip_level >= 0;
	if (can_chunk && (o->opt.chunk_bytes || (want_filter && lay != AH5_LAYOUT_CHUNKED) ||
	                  (unlimited && lay != AH5_LAYOUT_CHUNKED))) {
		chunk_for(si, esize, o->opt.chunk_bytes ? o->opt.chunk_bytes : DEFAULT_CHUNK, cd);
		lay = chunk_fits(si, cd, esize) ? AH5_LAYOUT_CHUNKED : AH5_LAYOUT_CONTIGUOUS;
	}
	if (lay == AH5_LAYOUT_CHUNKED && (!can_chunk || !chunk_fits(si, cd, esize)))
		lay = AH5_LAYOUT_CONTIGUOUS;
	if (lay == AH5_LAYOUT_COMPACT) {
		uint64_t bytes;
		if (!esize || alcm_mul_u64(si->count, esize, &bytes) || bytes > COMPACT_MAX)
			lay = AH5_LAYOUT_CONTIGUOUS;
	}
	int bad = 0;
	if (lay == AH5_LAYOUT_CHUNKED) {
		bad |= H5Pset_chunk(dcpl, (int)si->rank, cd) < 0;
		if (want_filter) {
			if (o->opt.shuffle)
				bad |= H5Pset_shuffle(dcpl) < 0;
			bad |= H5Pset_deflate(dcpl, (unsigned)o->opt.gzip_level) < 0;
		} else {
			for (unsigned k = 0; k < nf && storage; k++) {
				uint32_t id = alcm_load32(storage + c.pos);
				uint32_t ncd = alcm_load32(storage + c.pos + 8);
				const uint8_t *v = storage + c.pos + 12;
				c.pos += 12 + 4 * (size_t)ncd;
				/* Lossless and built in: anything else is recorded, not re-applied. */
				if (id == H5Z_FILTER_DEFLATE)
					bad |= H5Pset_deflate(dcpl, ncd && alcm_load32(v) <= 9 ? alcm_load32(v) : 6) < 0;
				else if (id == H5Z_FILTER_SHUFFLE)
					bad |= H5Pset_shuffle(dcpl) < 0;
				else if (id == H5Z_FILTER_FLETCHER32)
					bad |= H5Pset_fletcher32(dcpl) < 0;
				else if (id == H5Z_FILTER_NBIT)
					bad |= H5Pset_nbit(dcpl) < 0;
			}
		}
	} else if (lay == AH5_LAYOUT_COMPACT) {
		bad |= H5Pset_layout(dcpl, H5D_COMPACT) < 0;
	}
	if (bad) {
		H5Pclose(dcpl);
		return H5I_INVALID_HID;
	}
	return dcpl;
}

/* ---- types of plain tensors ---- */

static hid_t plain_type(int dtype)
{
	hid_t t = H5I_INVALID_HID;
	switch (dtype) {
	case ALCM_DTYPE_U8: return H5Tcopy(H5T_STD_U8LE);
	case ALCM_DTYPE_I8: return H5Tcopy(H5T_STD_I8LE);
	case ALCM_DTYPE_U16: return H5Tcopy(H5T_STD_U16LE);
	case ALCM_DTYPE_I16: return H5Tcopy(H5T_STD_I16LE);
	case ALCM_DTYPE_U32: return H5Tcopy(H5T_STD_U32LE);
	case ALCM_DTYPE_I32: return H5Tcopy(H5T_STD_I32LE);
	case ALCM_DTYPE_U64: return H5Tcopy(H5T_STD_U64LE);
	case ALCM_DTYPE_I64: return H5Tcopy(H5T_STD_I64LE);
	case ALCM_DTYPE_F32: return H5Tcopy(H5T_IEEE_F32LE);
	case ALCM_DTYPE_F64: return H5Tcopy(H5T_IEEE_F64LE);
	case ALCM_DTYPE_F16:
	case ALCM_DTYPE_BF16: {
		/* h5py's float16 recipe; bfloat16 is the same with 8 exponent bits. */
		int bf = dtype == ALCM_DTYPE_BF16;
		t = H5Tcopy(H5T_IEEE_F32LE);
		if (t < 0 || H5Tset_fields(t, 15, bf ? 7 : 10, bf ? 8 : 5, 0, bf ? 7 : 10) < 0 ||
		    H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, bf ? 127 : 15) < 0) {
			ah5_close(t);
			return H5I_INVALID_HID;
		}
		return t;
	}
	case ALCM_DTYPE_BOOL: {
		/* h5py's bool: an int8 enumeration FALSE = 0, TRUE = 1. */
		signed char f = 0, tr = 1;
		t = H5Tenum_create(H5T_STD_I8LE);
		if (t < 0 || H5Tenum_insert(t, "FALSE", &f) < 0 || H5Tenum_insert(t, "TRUE", &tr) < 0) {
			ah5_close(t);
			return H5I_INVALID_HID;
		}
		return t;
	}
	}
	return t;
}

/* ---- open ---- */

static int create_static(alcm_h5_output *o)
{
	char q[QUOTE], why[ALCM_DETAIL_MAX];
	pcache pc;
	memset(&pc, 0, sizeof(pc));
	int rc = ALCM_OK;
	for (uint32_t i = 0; i < o->ps.nobj && !rc; i++) {
		const ah5_obj *ob = &o->ps.obj[i];
		if (ob->path_len == 0 || (ob->kind != AH5_OBJ_GROUP && ob->kind != AH5_OBJ_DATATYPE))
			continue;
		char *rel = NULL;
		hid_t loc = pc_parent(o, &pc, ob->path, ob->path_len, &rel);
		if (!rel) {
			rc = ofail(o, ALCM_E_NOMEM, 0, "out of memory");
			break;
		}
		if (ob->kind == AH5_OBJ_GROUP) {
			hid_t g = H5Gcreate2(loc, rel, o->lcpl, H5P_DEFAULT, H5P_DEFAULT);
			if (g < 0)
				rc = ofail(o, ALCM_E_IO, 1, "cannot create group '%s'",
				           quote(q, ob->path, ob->path_len));
			else
				pc_push(&pc, ob->path, ob->path_len, g);
		} else {
			hid_t t = ah5_type_build(o->st + ob->type_off, ob->type_len, why);
			if (t < 0)
				rc = ofail(o, ALCM_E_UNSUPPORTED, 0, "datatype '%s': %s",
				           quote(q, ob->path, ob->path_len), why);
			else if (H5Tcommit2(loc, rel, t, o->lcpl, H5P_DEFAULT, H5P_DEFAULT) < 0)
				rc = ofail(o, ALCM_E_IO, 1, "cannot commit datatype '%s'",
				           quote(q, ob->path, ob->path_len));
			ah5_close(t);
		}
		free(rel);
		if (!rc)
			o->written[i] = 1;
	}
	pc_clear(&pc);
	return rc;
}

int alcm_h5_output_open(alcm_h5_output **out, const char *path, unsigned flags,
                        const void *structure, size_t structure_len,
                        const alcm_h5_output_options *opt)
{
	if (!out)
		return ALCM_E_ARG;
	alcm_h5_output *o = calloc(1, sizeof(*o));
	*out = o;
	if (!o)
		return ALCM_E_NOMEM;
	o->file = o->lcpl = H5I_INVALID_HID;
	o->f.fd = -1;
	o->sink.fd = -1;
	o->flags = flags;
	alcm_h5_output_options_default(&o->opt);
	if (opt)
		o->opt = *opt;
	o->label = cstr((const uint8_t *)(path ? path : "<output>"), strlen(path ? path : "<output>"));
	if (!o->label)
		return ALCM_E_NOMEM;
	o->poisoned = 1;
	if (!path || (!structure && structure_len) || o->opt.gzip_level < -1 ||
	    o->opt.gzip_level > 9 ||
	    (flags & ~(ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC | ALCM_H5_OUT_ALLOW_EXTERNAL |
	               ALCM_H5_OUT_PARTIAL)))
		return ofail(o, ALCM_E_ARG, 0, "bad argument");
	char why[ALCM_DETAIL_MAX];
	if (structure) {
		o->st = malloc(structure_len ? structure_len : 1);
		if (!o->st)
			return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
		memcpy(o->st, structure, structure_len);
		o->st_len = structure_len;
		o->has_st = 1;
		int rc = ah5_parse(o->st, o->st_len, &o->ps, 1, why);
		if (rc)
			return ofail(o, rc, 0, "%s", why);
		for (uint32_t i = 0; i < o->ps.nobj; i++) {
			const ah5_obj *ob = &o->ps.obj[i];
			char q[QUOTE];
			if (ob->kind == AH5_OBJ_EXTERNAL && !(flags & ALCM_H5_OUT_ALLOW_EXTERNAL))
				return ofail(o, ALCM_E_UNSUPPORTED, 0, "external link '%s' is created only "
				             "with ALCM_H5_OUT_ALLOW_EXTERNAL",
				             quote(q, ob->path, ob->path_len));
		}
		o->written = calloc(o->ps.nobj ? o->ps.nobj : 1, 1);
		if (!o->written)
			return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
	}
	int rc = alcm_atomic_open(&o->f, path, (flags & ALCM_WRITE_OVERWRITE) != 0,
	                          !(flags & ALCM_WRITE_NO_SYNC), NULL, why);
	if (rc)
		return ofail(o, rc, 0, "%s", why);
	o->f_open = 1;
	o->sink.fd = o->f.fd;
	ah5_guard g;
	ah5_guard_enter(&g, 0);
	hid_t fapl = ah5_sink_fapl(&o->sink);
	o->lcpl = H5Pcreate(H5P_LINK_CREATE);
	if (fapl < 0 || o->lcpl < 0 || H5Pset_create_intermediate_group(o->lcpl, 1) < 0 ||
	    H5Pset_char_encoding(o->lcpl, H5T_CSET_UTF8) < 0 ||
	    /* 1.8 file format: readable by HDF5 1.8 and later, and large attributes work. */
	    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) {
		rc = ofail(o, ALCM_E_NOMEM, 1, "cannot set up libhdf5 property lists");
		goto out;
	}
	o->file = H5Fcreate(o->label, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	if (o->file < 0) {
		rc = ofail(o, ALCM_E_IO, 1, "cannot create the HDF5 file");
		goto out;
	}
	if (o->has_st)
		rc = create_static(o);
	if (!rc)
		o->poisoned = 0;
out:
	ah5_close(fapl);
	ah5_guard_leave(&g);
	return rc;
}

/* ---- write ---- */

static void swap_copy(uint8_t *dst, const uint8_t *src, uint64_t nbytes, size_t es)
{
	for (uint64_t i = 0; i + es <= nbytes; i += es)
		for (size_t k = 0; k < es; k++)
			dst[i + k] = src[i + es - 1 - k];
}

static int write_dataset(alcm_h5_output *o, const uint8_t *path, size_t n, hid_t ftype,
                         const ah5_space_info *si, const uint8_t *storage, uint64_t esize,
                         const void *data, uint64_t nbytes, int swap, size_t swap_size)
{
	char q[QUOTE];
	const char *qp = quote(q, path, n);
	char *p = cpath(path, n);
	if (!p)
		return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
	hid_t sp = ah5_space_build(si);
	hid_t dcpl = sp >= 0 ? make_dcpl(o, storage, si, esize) : H5I_INVALID_HID;
	hid_t ds = H5I_INVALID_HID;
	uint8_t *tmp = NULL;
	int rc = ALCM_OK;
	if (sp < 0 || dcpl < 0) {
		rc = ofail(o, ALCM_E_IO, 1, "dataset '%s': cannot set up its dataspace or storage", qp);
		goto out;
	}
	if (H5Lexists(o->file, p, H5P_DEFAULT) > 0) {
		rc = ofail(o, ALCM_E_ARG, 0, "dataset '%s' written twice", qp);
		goto out;
	}
	H5Eclear2(H5E_DEFAULT);
	ds = H5Dcreate2(o->file, p, ftype, sp, o->lcpl, dcpl, H5P_DEFAULT);
	if (ds < 0) {
		rc = ofail(o, ALCM_E_IO, 1, "cannot create dataset '%s'", qp);
		goto out;
	}
	if (nbytes) {
		const void *src = data;
		if (swap) {
			tmp = malloc(nbytes);
			if (!tmp) {
				rc = ofail(o, ALCM_E_NOMEM, 0, "dataset '%s': out of memory", qp);
				goto out;
			}
			swap_copy(tmp, data, nbytes, swap_size);
			src = tmp;
		}
		/* The memory type is the file type: libhdf5 copies bytes, it converts nothing. */
		if (H5Dwrite(ds, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0)
			rc = ofail(o, ALCM_E_IO, 1, "cannot write dataset '%s'", qp);
	}
out:
	free(tmp);
	free(p);
	ah5_close(ds);
	ah5_close(dcpl);
	ah5_close(sp);
	return rc;
}

static int write_structured(alcm_h5_output *o, const alcm_tensor *t, const uint8_t *name,
                            size_t n)
{
	char q[QUOTE], why[ALCM_DETAIL_MAX];
	const char *qp = quote(q, name, n);
	long k = ah5_find(&o->ps, name, n);
	if (k < 0 || o->ps.obj[k].kind != AH5_OBJ_DATASET || o->ps.obj[k].repr == AH5_REPR_INLINE)
		return ofail(o, ALCM_E_ARG, 0, "tensor '%s' is not a dataset of the structure", qp);
	const ah5_obj *ob = &o->ps.obj[k];
	if (o->written[k])
		return ofail(o, ALCM_E_ARG, 0, "dataset '%s' written twice", qp);
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM + 1];
	ah5_tensor_shape(ob, &ndim, shape);
	int dt_ok = t->dtype == ob->dtype ||
	            (ob->repr == AH5_REPR_ENUM && ob->dtype == ALCM_DTYPE_BOOL &&
	             t->dtype == ALCM_DTYPE_I8) ||
	            (ob->repr == AH5_REPR_ENUM && ob->dtype == ALCM_DTYPE_I8 &&
	             t->dtype == ALCM_DTYPE_BOOL);
	if (!dt_ok || t->ndim != ndim || memcmp(t->shape, shape, ndim * sizeof(uint64_t)))
		return ofail(o, ALCM_E_ARG, 0, "tensor '%s': dtype or shape differs from the "
		             "structure's dataset", qp);
	hid_t ft = ah5_type_build(o->st + ob->type_off, ob->type_len, why);
	if (ft < 0)
		return ofail(o, ALCM_E_UNSUPPORTED, 0, "dataset '%s': %s", qp, why);
	int rc = write_dataset(o, name, n, ft, &ob->si, o->st + ob->storage_off, ob->ti.size,
	                       t->data, t->nbytes, ob->ti.swap, alcm_dtype_size(t->dtype));
	H5Tclose(ft);
	if (!rc)
		o->written[k] = 1;
	return rc;
}

static int write_plain(alcm_h5_output *o, const alcm_tensor *t, const uint8_t *name, size_t n)
{
	char q[QUOTE];
	hid_t ft = plain_type(t->dtype);
	if (ft < 0)
		return ofail(o, ALCM_E_ARG, 1, "tensor '%s': dtype %d has no HDF5 type",
		             quote(q, name, n), t->dtype);
	ah5_space_info si;
	memset(&si, 0, sizeof(si));
	si.cls = t->ndim ? AH5_SPACE_SIMPLE : AH5_SPACE_SCALAR;
	si.rank = t->ndim;
	si.count = 1;
	for (uint32_t i = 0; i < t->ndim; i++) {
		si.dims[i] = si.maxdims[i] = t->shape[i];
		si.count *= t->shape[i];
	}
	int rc = write_dataset(o, name, n, ft, &si, NULL, alcm_dtype_size(t->dtype), t->data,
	                       t->nbytes, 0, 0);
	H5Tclose(ft);
	return rc;
}

int alcm_h5_output_write(alcm_h5_output *o, const alcm_tensor *t)
{
	if (!o || !t)
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	char q[QUOTE];
	const uint8_t *name = (const uint8_t *)t->name;
	size_t n = t->name_len;
	if (n && name && name[0] == '/')
		name++, n--;
	uint64_t el, nb;
	if (!name || !ah5_path_ok(name, n))
		return ofail(o, ALCM_E_ARG, 0, "tensor '%s': its name is not a valid HDF5 path",
		             quote(q, t->name ? t->name : "", t->name ? t->name_len : 0));
	if (!alcm_dtype_size(t->dtype) || t->ndim > ALCM_MAX_NDIM ||
	    alcm_shape_elements(t->shape, t->ndim, &el) ||
	    alcm_mul_u64(el, alcm_dtype_size(t->dtype), &nb) || nb != t->nbytes ||
	    (nb && !t->data))
		return ofail(o, ALCM_E_ARG, 0, "tensor '%s': dtype, shape and size disagree",
		             quote(q, name, n));
	ah5_guard g;
	ah5_guard_enter(&g, 0);
	int rc = o->has_st ? write_structured(o, t, name, n) : write_plain(o, t, name, n);
	ah5_guard_leave(&g);
	return rc;
}

/* ---- plan ---- */

typedef struct pname {
	const uint8_t *p;
	size_t n;
	size_t idx;
} pname;

static int pname_cmp(const void *x, const void *y)
{
	const pname *a = x, *b = y;
	return ah5_cmp(a->p, a->n, b->p, b->n);
}

static int plan_names(alcm_h5_output *o, const alcm_tensor *t, size_t n, pname *pn)
{
	char q[QUOTE], q2[QUOTE];
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)t[i].name;
		size_t len = t[i].name_len;
		if (len && p && p[0] == '/')
			p++, len--;
		if (!p || !ah5_path_ok(p, len))
			return ofail(o, ALCM_E_UNSUPPORTED, 0, "tensor '%s': its name is not an HDF5 path "
			             "(empty, a NUL byte, an empty or '.' component, or a trailing '/')",
			             quote(q, t[i].name ? t[i].name : "", t[i].name ? t[i].name_len : 0));
		for (uint32_t d = 0; d < t[i].ndim; d++)
			if (t[i].shape[d] >= (uint64_t)1 << 63)
				return ofail(o, ALCM_E_UNSUPPORTED, 0, "tensor '%s': dimension %u of %llu: "
				             "HDF5 holds dimensions below 2^63", quote(q, p, len), d,
				             (unsigned long long)t[i].shape[d]);
		pn[i] = (pname){p, len, i};
	}
	qsort(pn, n, sizeof(*pn), pname_cmp);
	for (size_t i = 1; i < n; i++)
		if (pname_cmp(&pn[i - 1], &pn[i]) == 0)
			return ofail(o, ALCM_E_UNSUPPORTED, 0, "tensors '%s' and '%s' name the same HDF5 "
			             "path", quote(q, t[pn[i - 1].idx].name, t[pn[i - 1].idx].name_len),
			             quote(q2, t[pn[i].idx].name, t[pn[i].idx].name_len));
	/* "a" and "a/b": a link is a dataset or a group, not both. */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 1; k < pn[i].n; k++) {
			if (pn[i].p[k] != '/')
				continue;
			pname key = {pn[i].p, k, 0};
			const pname *hit = bsearch(&key, pn, n, sizeof(*pn), pname_cmp);
			if (hit)
				return ofail(o, ALCM_E_UNSUPPORTED, 0, "tensors '%s' and '%s' cannot both be "
				             "written: HDF5 would need '%s' to be a dataset and a group",
				             quote(q, hit->p, hit->n), quote(q2, pn[i].p, pn[i].n),
				             quote(q, hit->p, hit->n));
		}
	return ALCM_OK;
}

/* Each tensor is a dataset of the structure, and each of its datasets is in the plan unless
 * the output is partial: else the archive's ATTR and its tensors disagree. */
static int plan_structure(alcm_h5_output *o, const alcm_tensor *t, size_t n, const pname *pn)
{
	char q[QUOTE];
	uint8_t *seen = calloc(o->ps.nobj ? o->ps.nobj : 1, 1);
	if (!seen)
		return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
	int rc = ALCM_OK;
	for (size_t i = 0; i < n && !rc; i++) {
		const alcm_tensor *ti = &t[pn[i].idx];
		long k = ah5_find(&o->ps, pn[i].p, pn[i].n);
		const ah5_obj *ob = k >= 0 ? &o->ps.obj[k] : NULL;
		uint32_t nd;
		uint64_t shape[ALCM_MAX_NDIM + 1];
		if (!ob || ob->kind != AH5_OBJ_DATASET || ob->repr == AH5_REPR_INLINE) {
			rc = ofail(o, ALCM_E_CORRUPT, 0, "tensor '%s' is not a dataset of the archive's "
			           "HDF5 structure (ATTR)", quote(q, pn[i].p, pn[i].n));
			break;
		}
		ah5_tensor_shape(ob, &nd, shape);
		int dt_ok = ti->dtype == ob->dtype ||
		            (ob->repr == AH5_REPR_ENUM && ob->dtype == ALCM_DTYPE_BOOL &&
		             ti->dtype == ALCM_DTYPE_I8) ||
		            (ob->repr == AH5_REPR_ENUM && ob->dtype == ALCM_DTYPE_I8 &&
		             ti->dtype == ALCM_DTYPE_BOOL);
		if (!dt_ok || ti->ndim != nd || memcmp(ti->shape, shape, nd * sizeof(uint64_t)))
			rc = ofail(o, ALCM_E_CORRUPT, 0, "tensor '%s': its dtype or shape differs from "
			           "the dataset the archive's HDF5 structure (ATTR) records",
			           quote(q, pn[i].p, pn[i].n));
		seen[k] = 1;
	}
	for (uint32_t i = 0; i < o->ps.nobj && !rc && !(o->flags & ALCM_H5_OUT_PARTIAL); i++) {
		const ah5_obj *ob = &o->ps.obj[i];
		if (ob->kind == AH5_OBJ_DATASET && ob->repr != AH5_REPR_INLINE && !seen[i])
			rc = ofail(o, ALCM_E_CORRUPT, 0, "the archive's HDF5 structure (ATTR) lists "
			           "dataset '%s', which is not among its tensors",
			           quote(q, ob->path, ob->path_len));
	}
	free(seen);
	return rc;
}

int alcm_h5_output_plan(alcm_h5_output *o, const alcm_tensor *t, size_t n)
{
	if (!o || (!t && n))
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	pname *pn = malloc((n ? n : 1) * sizeof(*pn));
	if (!pn)
		return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
	int rc = plan_names(o, t, n, pn);
	if (!rc && o->has_st)
		rc = plan_structure(o, t, n, pn);
	free(pn);
	return rc;
}

/* ---- commit ---- */

static int write_attrs(alcm_h5_output *o, const ah5_obj *ob, pcache *pc)
{
	char q[QUOTE], qa[QUOTE], why[ALCM_DETAIL_MAX];
	if (ob->nattrs == 0 && ob->kind != AH5_OBJ_GROUP)
		return ALCM_OK;
	hid_t obj;
	if (ob->path_len == 0) {
		obj = H5Oopen(o->file, "/", H5P_DEFAULT);
	} else {
		char *rel = NULL;
		hid_t loc = pc_parent(o, pc, ob->path, ob->path_len, &rel);
		if (!rel)
			return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
		obj = H5Oopen(loc, rel, H5P_DEFAULT);
		free(rel);
	}
	if (obj < 0)
		return ofail(o, ALCM_E_IO, 1, "cannot open '%s' for its attributes",
		             quote(q, ob->path, ob->path_len));
	/* A group stays open as the parent of what follows. */
	int keep = ob->kind == AH5_OBJ_GROUP && ob->path_len;
	ah5cur c = {o->st, o->st_len, ob->attrs_off + 4, NULL, 0};
	int rc = ALCM_OK;
	for (uint32_t i = 0; i < ob->nattrs && !rc; i++) {
		uint32_t nl = alcm_load32(o->st + c.pos);
		char *name = cstr(o->st + c.pos + 4, nl);
		c.pos += 4 + nl;
		size_t toff = c.pos;
		ah5_type_info ti;
		ah5_space_info si;
		ah5_type_check(&c, &ti);
		size_t tlen = c.pos - toff;
		ah5_space_check(&c, &si);
		uint64_t vl = alcm_load64(o->st + c.pos);
		c.pos += 8;
		const uint8_t *val = o->st + c.pos;
		c.pos += (size_t)vl;
		if (!name) {
			rc = ofail(o, ALCM_E_NOMEM, 0, "out of memory");
			break;
		}
		hid_t ft = ah5_type_build(o->st + toff, tlen, why);
		hid_t sp = ft >= 0 ? ah5_space_build(&si) : H5I_INVALID_HID;
		hid_t at = sp >= 0 ? H5Acreate2(obj, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT)
		                   : H5I_INVALID_HID;
		if (ft < 0)
			rc = ofail(o, ALCM_E_UNSUPPORTED, 0, "attribute '%s' of '%s': %s",
			           quote(qa, name, nl), quote(q, ob->path, ob->path_len), why);
		else if (at < 0)
			rc = ofail(o, ALCM_E_IO, 1, "cannot create attribute '%s' of '%s'",
			           quote(qa, name, nl), quote(q, ob->path, ob->path_len));
		else if ((rc = ah5_value_write(at, 1, ft, &ti, si.count, val, vl, why)))
			rc = ofail(o, rc, 0, "attribute '%s' of '%s': %s", quote(qa, name, nl),
			           quote(q, ob->path, ob->path_len), why);
		ah5_close(at);
		ah5_close(sp);
		ah5_close(ft);
		free(name);
	}
	if (keep)
		pc_push(pc, ob->path, ob->path_len, obj);
	else
		H5Oclose(obj);
	return rc;
}

static int write_inline(alcm_h5_output *o, const ah5_obj *ob)
{
	char q[QUOTE], why[ALCM_DETAIL_MAX];
	const char *qp = quote(q, ob->path, ob->path_len);
	hid_t ft = ah5_type_build(o->st + ob->type_off, ob->type_len, why);
	if (ft < 0)
		return ofail(o, ALCM_E_UNSUPPORTED, 0, "dataset '%s': %s", qp, why);
	int rc = write_dataset(o, ob->path, ob->path_len, ft, &ob->si, o->st + ob->storage_off,
	                       ob->ti.variable ? 0 : ob->ti.size, NULL, 0, 0, 0);
	if (!rc && ob->si.count) {
		char *p = cpath(ob->path, ob->path_len);
		hid_t ds = p ? H5Dopen2(o->file, p, H5P_DEFAULT) : H5I_INVALID_HID;
		free(p);
		if (ds < 0)
			rc = ofail(o, ALCM_E_IO, 1, "cannot reopen dataset '%s'", qp);
		else if ((rc = ah5_value_write(ds, 0, ft, &ob->ti, ob->si.count, o->st + ob->value_off,
		                               ob->value_len, why)))
			rc = ofail(o, rc, 0, "dataset '%s': %s", qp, why);
		ah5_close(ds);
	}
	H5Tclose(ft);
	return rc;
}

static int write_link(alcm_h5_output *o, const ah5_obj *ob)
{
	char q[QUOTE];
	const char *qp = quote(q, ob->path, ob->path_len);
	char *p = cpath(ob->path, ob->path_len);
	char *a = NULL, *b = NULL;
	int rc = ALCM_OK;
	herr_t e = 0;
	if (!p)
		return ofail(o, ALCM_E_NOMEM, 0, "out of memory");
	if (ob->kind == AH5_OBJ_HARD) {
		a = cpath(ob->target, ob->target_len);
		long k = ah5_find(&o->ps, ob->target, ob->target_len);
		int present = k >= 0 && (o->written[k] || o->ps.obj[k].kind == AH5_OBJ_GROUP ||
		                         o->ps.obj[k].path_len == 0);
		if (a && !present && (o->flags & ALCM_H5_OUT_PARTIAL))
			goto out;
		if (a)
			e = H5Lcreate_hard(o->file, a, o->file, p, o->lcpl, H5P_DEFAULT);
	} else if (ob->kind == AH5_OBJ_SOFT) {
		a = cstr(ob->target, ob->target_len);
		if (a)
			e = H5Lcreate_soft(a, o->file, p, o->lcpl, H5P_DEFAULT);
	} else {
		a = cstr(ob->target, ob->target_len);
		b = cstr(ob->target2, ob->target2_len);
		if (a && b)
			e = H5Lcreate_external(a, b, o->file, p, o->lcpl, H5P_DEFAULT);
	}
	if (!a || (ob->kind == AH5_OBJ_EXTERNAL && !b))
		rc = ofail(o, ALCM_E_NOMEM, 0, "out of memory");
	else if (e < 0)
		rc = ofail(o, ALCM_E_IO, 1, "cannot create link '%s'", qp);
out:
	free(p);
	free(a);
	free(b);
	return rc;
}

static int commit_structure(alcm_h5_output *o)
{
	char q[QUOTE];
	for (uint32_t i = 0; i < o->ps.nobj; i++) {
		const ah5_obj *ob = &o->ps.obj[i];
		if (ob->kind == AH5_OBJ_DATASET && ob->repr != AH5_REPR_INLINE && !o->written[i] &&
		    !(o->flags & ALCM_H5_OUT_PARTIAL))
			return ofail(o, ALCM_E_STATE, 0, "dataset '%s' of the structure was not written",
			             quote(q, ob->path, ob->path_len));
	}
	int rc = ALCM_OK;
	for (uint32_t i = 0; i < o->ps.nobj && !rc; i++) {
		const ah5_obj *ob = &o->ps.obj[i];
		if (ob->kind == AH5_OBJ_DATASET && ob->repr == AH5_REPR_INLINE) {
			if (!(rc = write_inline(o, ob)))
				o->written[i] = 1;
		}
	}
	pcache pc;
	memset(&pc, 0, sizeof(pc));
	for (uint32_t i = 0; i < o->ps.nobj && !rc; i++) {
		const ah5_obj *ob = &o->ps.obj[i];
		if (ob->kind == AH5_OBJ_GROUP || ((ob->kind == AH5_OBJ_DATASET ||
		                                    ob->kind == AH5_OBJ_DATATYPE) && o->written[i]))
			rc = write_attrs(o, ob, &pc);
	}
	pc_clear(&pc);
	for (uint32_t i = 0; i < o->ps.nobj && !rc; i++) {
		const ah5_obj *ob = &o->ps.obj[i];
		if (ob->kind == AH5_OBJ_HARD || ob->kind == AH5_OBJ_SOFT || ob->kind == AH5_OBJ_EXTERNAL)
			rc = write_link(o, ob);
	}
	return rc;
}

int alcm_h5_output_commit(alcm_h5_output *o)
{
	if (!o)
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	ah5_guard g;
	ah5_guard_enter(&g, 0);
	int rc = o->has_st ? commit_structure(o) : ALCM_OK;
	/* Everything reaches the file here, where a failure can still be reported; the close
	 * after it then writes little, and whatever fails there lands in sink.err. */
	if (!rc && (H5Fflush(o->file, H5F_SCOPE_GLOBAL) < 0 || o->sink.err))
		rc = ofail(o, ALCM_E_IO, 1, "cannot write the HDF5 file");
	if (rc)
		o->sink.discard = 1;
	o->sink.lenient = 1;
	herr_t e = H5Fclose(o->file);
	o->file = H5I_INVALID_HID;
	if (!rc && (e < 0 || o->sink.err))
		rc = ofail(o, ALCM_E_IO, 1, "cannot close the HDF5 file");
	ah5_guard_leave(&g);
	if (!rc) {
		char why[ALCM_DETAIL_MAX];
		rc = alcm_atomic_commit(&o->f, why);
		if (rc)
			ofail(o, rc, 0, "%s", why);
		else
			o->f_open = 0;
	}
	if (rc)
		o->poisoned = 1;
	else
		o->committed = 1;
	return rc;
}

const char *alcm_h5_output_detail(const alcm_h5_output *o)
{
	return o ? o->detail : "";
}

void alcm_h5_output_free(alcm_h5_output *o)
{
	if (!o)
		return;
	if (o->file >= 0 || o->lcpl >= 0) {
		ah5_guard g;
		ah5_guard_enter(&g, 0);
		/* An abandoned file is never published: nothing more needs to reach it, and the
		 * close must not fail (see ah5_sink). */
		o->sink.discard = 1;
		o->sink.lenient = 1;
		ah5_close(o->file);
		ah5_close(o->lcpl);
		ah5_guard_leave(&g);
	}
	if (o->f_open)
		alcm_atomic_abort(&o->f);
	free(o->ps.obj);
	free(o->written);
	free(o->st);
	free(o->label);
	free(o);
}
