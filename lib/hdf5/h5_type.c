/* libhdf5 <-> ATTR payload: datatypes, dataspaces, values, and the guard around calls. */
#include "h5_hdf5.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- guard and errors ---- */

void ah5_guard_enter(ah5_guard *g, int allow_plugins)
{
	memset(g, 0, sizeof(*g));
	H5Eget_auto2(H5E_DEFAULT, &g->func, &g->data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	if (!allow_plugins && H5PLget_loading_state(&g->plugin_state) >= 0) {
		g->plugin_saved = 1;
		H5PLset_loading_state(0);
	}
	ah5_filter_register();
}

void ah5_guard_leave(ah5_guard *g)
{
	if (g->plugin_saved)
		H5PLset_loading_state(g->plugin_state);
	H5Eclear2(H5E_DEFAULT);
	H5Eset_auto2(H5E_DEFAULT, g->func, g->data);
}

typedef struct walk_ctx {
	char msg[256];
	int have;
} walk_ctx;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
	walk_ctx *w = data;
	/* H5E_WALK_UPWARD starts with the innermost, most specific error. */
	if (n == 0 && e && e->desc && e->desc[0]) {
		snprintf(w->msg, sizeof(w->msg), "%s", e->desc);
		w->have = 1;
	}
	return 0;
}

static herr_t io_cb(unsigned n, const H5E_error2_t *e, void *data)
{
	(void)n;
	int *io = data;
	if (e->maj_num == H5E_IO || e->min_num == H5E_SYSERRSTR || e->min_num == H5E_WRITEERROR ||
	    e->min_num == H5E_READERROR || e->min_num == H5E_SEEKERROR ||
	    e->min_num == H5E_CANTOPENFILE || e->min_num == H5E_CLOSEERROR ||
	    e->min_num == H5E_TRUNCATED || e->min_num == H5E_NOSPACE)
		*io = 1;
	return 0;
}

int ah5_error_is_io(void)
{
	int io = 0;
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, io_cb, &io);
	return io;
}

void ah5_append_hdf5_error(char *detail)
{
	walk_ctx w;
	memset(&w, 0, sizeof(w));
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
	H5Eclear2(H5E_DEFAULT);
	if (!w.have)
		return;
	size_t n = strlen(detail);
	if (n + 16 < ALCM_DETAIL_MAX) {
		char q[256];
		alcm_detail_quote(q, sizeof(q), w.msg, strlen(w.msg));
		snprintf(detail + n, ALCM_DETAIL_MAX - n, " (hdf5: %s)", q);
	}
}

void ah5_close(hid_t id)
{
	if (id < 0)
		return;
	switch (H5Iget_type(id)) {
	case H5I_FILE: H5Fclose(id); break;
	case H5I_GROUP: H5Gclose(id); break;
	case H5I_DATATYPE: H5Tclose(id); break;
	case H5I_DATASPACE: H5Sclose(id); break;
	case H5I_DATASET: H5Dclose(id); break;
	case H5I_ATTR: H5Aclose(id); break;
	case H5I_GENPROP_LST: H5Pclose(id); break;
	default: break;
	}
}

/* ---- datatype -> descriptor ---- */

static int unsup(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int unsup(char *why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(why, fmt, ap);
	va_end(ap);
	return ALCM_E_UNSUPPORTED;
}

static int enc_order(hid_t t, unsigned *o, char *why)
{
	H5T_order_t ord = H5Tget_order(t);
	if (ord == H5T_ORDER_LE || ord == H5T_ORDER_NONE)
		*o = 0;
	else if (ord == H5T_ORDER_BE)
		*o = 1;
	else
		return unsup(why, "byte order %d (VAX or mixed) is not supported", (int)ord);
	return ALCM_OK;
}

static int enc_bits(hid_t t, ah5buf *b, int with_sign, char *why)
{
	unsigned order = 0;
	H5T_pad_t lsb, msb;
	int rc = enc_order(t, &order, why);
	if (rc)
		return rc;
	size_t prec = H5Tget_precision(t);
	int off = H5Tget_offset(t);
	if (prec == 0 || off < 0 || H5Tget_pad(t, &lsb, &msb) < 0 || lsb < 0 || msb < 0)
		return unsup(why, "integer or bitfield with unreadable precision or padding");
	ah5buf_u8(b, order);
	if (with_sign >= 0)
		ah5buf_u8(b, (unsigned)with_sign);
	ah5buf_u32(b, (uint32_t)prec);
	ah5buf_u32(b, (uint32_t)off);
	ah5buf_u8(b, (unsigned)lsb);
	ah5buf_u8(b, (unsigned)msb);
	return ALCM_OK;
}

static int enc_name(ah5buf *b, char *name, char *why)
{
	if (!name)
		return unsup(why, "a member name cannot be read");
	ah5buf_str(b, name, strlen(name));
	H5free_memory(name);
	return ALCM_OK;
}

static int enc_rec(hid_t t, ah5buf *b, unsigned depth, char *why)
{
	if (depth > AH5_MAX_TYPE_DEPTH)
		return unsup(why, "datatype nested deeper than %d", AH5_MAX_TYPE_DEPTH);
	H5T_class_t cls = H5Tget_class(t);
	size_t size = H5Tget_size(t);
	int vstr = cls == H5T_STRING ? H5Tis_variable_str(t) : 0;
	if (vstr < 0)
		return unsup(why, "unreadable string datatype");
	if (cls != H5T_VLEN && !vstr && (size == 0 || size > AH5_MAX_ELEM))
		return unsup(why, "datatype of %zu bytes (at most %llu are supported)", size,
		             (unsigned long long)AH5_MAX_ELEM);
	int rc = ALCM_OK;
	switch (cls) {
	case H5T_INTEGER: {
		H5T_sign_t s = H5Tget_sign(t);
		if (s < 0)
			return unsup(why, "integer of unreadable sign");
		ah5buf_u8(b, AH5_T_INTEGER);
		ah5buf_u32(b, (uint32_t)size);
		return enc_bits(t, b, s == H5T_SGN_2, why);
	}
	case H5T_BITFIELD:
		ah5buf_u8(b, AH5_T_BITFIELD);
		ah5buf_u32(b, (uint32_t)size);
		return enc_bits(t, b, 0, why);
	case H5T_FLOAT: {
		size_t spos, epos, esize, mpos, msize;
		H5T_norm_t norm = H5Tget_norm(t);
		H5T_pad_t inpad = H5Tget_inpad(t);
		size_t ebias = H5Tget_ebias(t);
		if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0 || norm < 0 ||
		    inpad < 0)
			return unsup(why, "float of unreadable bit fields");
		ah5buf_u8(b, AH5_T_FLOAT);
		ah5buf_u32(b, (uint32_t)size);
		if ((rc = enc_bits(t, b, -1, why)))
			return rc;
		ah5buf_u8(b, (unsigned)inpad);
		ah5buf_u8(b, (unsigned)norm);
		ah5buf_u32(b, (uint32_t)spos);
		ah5buf_u32(b, (uint32_t)epos);
		ah5buf_u32(b, (uint32_t)esize);
		ah5buf_u32(b, (uint32_t)mpos);
		ah5buf_u32(b, (uint32_t)msize);
		ah5buf_u64(b, (uint64_t)ebias);
		return ALCM_OK;
	}
	case H5T_STRING: {
		H5T_cset_t cset = H5Tget_cset(t);
		H5T_str_t pad = H5Tget_strpad(t);
		if (cset < 0 || cset > H5T_CSET_UTF8 || pad < 0 || pad > H5T_STR_SPACEPAD)
			return unsup(why, "string of character set %d or padding %d", (int)cset,
			             (int)pad);
		ah5buf_u8(b, AH5_T_STRING);
		ah5buf_u32(b, vstr ? 0 : (uint32_t)size);
		ah5buf_u8(b, vstr ? 1 : 0);
		ah5buf_u8(b, (unsigned)cset);
		ah5buf_u8(b, (unsigned)pad);
		return ALCM_OK;
	}
	case H5T_OPAQUE: {
		char *tag = H5Tget_tag(t);
		ah5buf_u8(b, AH5_T_OPAQUE);
		ah5buf_u32(b, (uint32_t)size);
		if (tag) {
			size_t n = strlen(tag);
			if (n > AH5_MAX_TAG)
				rc = unsup(why, "opaque tag of %zu bytes", n);
			ah5buf_str(b, tag, n);
			H5free_memory(tag);
		} else {
			ah5buf_u32(b, 0);
		}
		return rc;
	}
	case H5T_COMPOUND: {
		int n = H5Tget_nmembers(t);
		if (n <= 0)
			return unsup(why, "compound datatype without members");
		ah5buf_u8(b, AH5_T_COMPOUND);
		ah5buf_u32(b, (uint32_t)size);
		ah5buf_u32(b, (uint32_t)n);
		for (int i = 0; i < n && !rc; i++) {
			if ((rc = enc_name(b, H5Tget_member_name(t, (unsigned)i), why)))
				break;
			ah5buf_u32(b, (uint32_t)H5Tget_member_offset(t, (unsigned)i));
			hid_t mt = H5Tget_member_type(t, (unsigned)i);
			if (mt < 0)
				return unsup(why, "compound member %d of unreadable type", i);
			rc = enc_rec(mt, b, depth + 1, why);
			H5Tclose(mt);
		}
		return rc;
	}
	case H5T_ENUM: {
		hid_t base = H5Tget_super(t);
		int n = H5Tget_nmembers(t);
		if (base < 0 || n <= 0) {
			ah5_close(base);
			return unsup(why, "enumeration without members or base type");
		}
		ah5buf_u8(b, AH5_T_ENUM);
		ah5buf_u32(b, (uint32_t)size);
		rc = enc_rec(base, b, depth + 1, why);
		H5Tclose(base);
		ah5buf_u32(b, (uint32_t)n);
		uint8_t *val = malloc(size);
		if (!val)
			return ALCM_E_NOMEM;
		for (int i = 0; i < n && !rc; i++) {
			if ((rc = enc_name(b, H5Tget_member_name(t, (unsigned)i), why)))
				break;
			if (H5Tget_member_value(t, (unsigned)i, val) < 0)
				rc = unsup(why, "enumeration member %d of unreadable value", i);
			ah5buf_put(b, val, size);
		}
		free(val);
		return rc;
	}
	case H5T_ARRAY: {
		int rank = H5Tget_array_ndims(t);
		hsize_t dims[H5S_MAX_RANK];
		if (rank <= 0 || rank > AH5_MAX_RANK || H5Tget_array_dims2(t, dims) < 0)
			return unsup(why, "array datatype of unreadable rank");
		ah5buf_u8(b, AH5_T_ARRAY);
		ah5buf_u32(b, (uint32_t)size);
		ah5buf_u32(b, (uint32_t)rank);
		for (int i = 0; i < rank; i++)
			ah5buf_u64(b, dims[i]);
		hid_t base = H5Tget_super(t);
		if (base < 0)
			return unsup(why, "array datatype of unreadable base");
		rc = enc_rec(base, b, depth + 1, why);
		H5Tclose(base);
		return rc;
	}
	case H5T_VLEN: {
		hid_t base = H5Tget_super(t);
		if (base < 0)
			return unsup(why, "variable-length datatype of unreadable base");
		ah5buf_u8(b, AH5_T_VLEN);
		ah5buf_u32(b, 0);
		rc = enc_rec(base, b, depth + 1, why);
		H5Tclose(base);
		return rc;
	}
	case H5T_REFERENCE:
		return unsup(why, "object and region references are not supported");
	case H5T_TIME:
		return unsup(why, "the time datatype class is not supported");
	default:
		return unsup(why, "datatype class %d is not supported", (int)cls);
	}
}

int ah5_type_encode(hid_t type, ah5buf *b, char *why)
{
	size_t start = b->len;
	int rc = enc_rec(type, b, 0, why);
	if (rc)
		return rc;
	if (b->oom) {
		alcm_detail_set(why, "out of memory");
		return ALCM_E_NOMEM;
	}
	if (b->over) {
		alcm_detail_set(why, "the structure exceeds max_meta_bytes");
		return ALCM_E_LIMIT;
	}
	/* What libhdf5 describes is not always what the spec allows (variable-length data nested
	 * in a compound, say): the checker is the judge, its reason the message. */
	ah5_type_info ti;
	char w[ALCM_DETAIL_MAX];
	if (ah5_type_classify(b->p + start, b->len - start, &ti, w)) {
		const char *m = strncmp(w, "structure: ", 11) == 0 ? w + 11 : w;
		char *at = strstr(m, " (at byte");
		alcm_detail_set(why, "%.*s", at ? (int)(at - m) : (int)strlen(m), m);
		return ALCM_E_UNSUPPORTED;
	}
	return ALCM_OK;
}

/* ---- descriptor -> datatype ---- */

static hid_t fail_type(hid_t t, char *why, const char *what)
{
	ah5_close(t);
	if (why && !why[0])
		alcm_detail_set(why, "libhdf5 refuses the %s datatype", what);
	return H5I_INVALID_HID;
}

static char *cstr(const uint8_t *s, size_t n)
{
	char *c = malloc(n + 1);
	if (c) {
		memcpy(c, s, n);
		c[n] = '\0';
	}
	return c;
}

/* The descriptor was checked: reads cannot run past the end, values are in range. */
static unsigned rd8(ah5cur *c)
{
	return c->p[c->pos++];
}
static uint32_t rd32(ah5cur *c)
{
	uint32_t v = alcm_load32(c->p + c->pos);
	c->pos += 4;
	return v;
}
static uint64_t rd64(ah5cur *c)
{
	uint64_t v = alcm_load64(c->p + c->pos);
	c->pos += 8;
	return v;
}

static hid_t build_rec(ah5cur *c, char *why)
{
	unsigned cls = rd8(c);
	uint32_t size = rd32(c);
	hid_t t = H5I_INVALID_HID;
	switch (cls) {
	case AH5_T_INTEGER:
	case AH5_T_BITFIELD: {
		unsigned order = rd8(c), sign = rd8(c);
		uint32_t prec = rd32(c), off = rd32(c);
		unsigned lsb = rd8(c), msb = rd8(c);
		t = H5Tcopy(cls == AH5_T_INTEGER ? H5T_STD_U8LE : H5T_STD_B8LE);
		if (t < 0 || H5Tset_size(t, size) < 0 || H5Tset_offset(t, 0) < 0 ||
		    H5Tset_precision(t, prec) < 0 || H5Tset_offset(t, off) < 0 ||
		    H5Tset_order(t, order ? H5T_ORDER_BE : H5T_ORDER_LE) < 0 ||
		    (cls == AH5_T_INTEGER && H5Tset_sign(t, sign ? H5T_SGN_2 : H5T_SGN_NONE) < 0) ||
		    H5Tset_pad(t, (H5T_pad_t)lsb, (H5T_pad_t)msb) < 0)
			return fail_type(t, why, "integer");
		return t;
	}
	case AH5_T_FLOAT: {
		unsigned order = rd8(c);
		uint32_t prec = rd32(c), off = rd32(c);
		unsigned lsb = rd8(c), msb = rd8(c), inpad = rd8(c), norm = rd8(c);
		uint32_t spos = rd32(c), epos = rd32(c), esize = rd32(c), mpos = rd32(c),
		         msize = rd32(c);
		uint64_t ebias = rd64(c);
		t = H5Tcopy(H5T_IEEE_F64LE);
		if (t < 0)
			return fail_type(t, why, "float");
		/* Fields must fit the precision at every step: grow first, shrink last. */
		if (size >= 8) {
			if (H5Tset_size(t, size) < 0 || H5Tset_precision(t, 8 * (size_t)size) < 0 ||
			    H5Tset_fields(t, spos, epos, esize, mpos, msize) < 0)
				return fail_type(t, why, "float");
		} else {
			if (H5Tset_fields(t, spos, epos, esize, mpos, msize) < 0 ||
			    H5Tset_size(t, size) < 0)
				return fail_type(t, why, "float");
		}
		if (H5Tset_offset(t, 0) < 0 || H5Tset_precision(t, prec) < 0 ||
		    H5Tset_offset(t, off) < 0 || H5Tset_order(t, order ? H5T_ORDER_BE : H5T_ORDER_LE) < 0 ||
		    H5Tset_ebias(t, (size_t)ebias) < 0 || H5Tset_norm(t, (H5T_norm_t)norm) < 0 ||
		    H5Tset_inpad(t, (H5T_pad_t)inpad) < 0 ||
		    H5Tset_pad(t, (H5T_pad_t)lsb, (H5T_pad_t)msb) < 0)
			return fail_type(t, why, "float");
		return t;
	}
	case AH5_T_STRING: {
		unsigned var = rd8(c), cset = rd8(c), pad = rd8(c);
		t = H5Tcopy(H5T_C_S1);
		if (t < 0 || H5Tset_size(t, var ? H5T_VARIABLE : size) < 0 ||
		    H5Tset_cset(t, (H5T_cset_t)cset) < 0 || H5Tset_strpad(t, (H5T_str_t)pad) < 0)
			return fail_type(t, why, "string");
		return t;
	}
	case AH5_T_OPAQUE: {
		uint32_t n = rd32(c);
		char *tag = cstr(c->p + c->pos, n);
		c->pos += n;
		t = H5Tcreate(H5T_OPAQUE, size);
		int bad = !tag || t < 0 || (n && H5Tset_tag(t, tag) < 0);
		free(tag);
		return bad ? fail_type(t, why, "opaque") : t;
	}
	case AH5_T_COMPOUND: {
		uint32_t n = rd32(c);
		t = H5Tcreate(H5T_COMPOUND, size);
		if (t < 0)
			return fail_type(t, why, "compound");
		for (uint32_t i = 0; i < n; i++) {
			uint32_t nl = rd32(c);
			char *name = cstr(c->p + c->pos, nl);
			c->pos += nl;
			uint32_t off = rd32(c);
			hid_t mt = build_rec(c, why);
			int bad = !name || mt < 0 || H5Tinsert(t, name, off, mt) < 0;
			free(name);
			ah5_close(mt);
			if (bad)
				return fail_type(t, why, "compound");
		}
		return t;
	}
	case AH5_T_ENUM: {
		hid_t base = build_rec(c, why);
		if (base < 0)
			return H5I_INVALID_HID;
		t = H5Tenum_create(base);
		H5Tclose(base);
		if (t < 0)
			return fail_type(t, why, "enumeration");
		uint32_t n = rd32(c);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t nl = rd32(c);
			char *name = cstr(c->p + c->pos, nl);
			c->pos += nl;
			int bad = !name || H5Tenum_insert(t, name, c->p + c->pos) < 0;
			c->pos += size;
			free(name);
			if (bad)
				return fail_type(t, why, "enumeration");
		}
		return t;
	}
	case AH5_T_ARRAY: {
		uint32_t rank = rd32(c);
		hsize_t dims[H5S_MAX_RANK];
		for (uint32_t i = 0; i < rank; i++)
			dims[i] = rd64(c);
		hid_t base = build_rec(c, why);
		if (base < 0)
			return H5I_INVALID_HID;
		t = H5Tarray_create2(base, rank, dims);
		H5Tclose(base);
		return t < 0 ? fail_type(t, why, "array") : t;
	}
	case AH5_T_VLEN: {
		hid_t base = build_rec(c, why);
		if (base < 0)
			return H5I_INVALID_HID;
		t = H5Tvlen_create(base);
		H5Tclose(base);
		return t < 0 ? fail_type(t, why, "variable-length") : t;
	}
	}
	return fail_type(t, why, "unknown");
}

hid_t ah5_type_build(const uint8_t *p, size_t n, char *why)
{
	ah5cur c = {p, n, 0, why, 0};
	if (why)
		why[0] = '\0';
	hid_t t = build_rec(&c, why);
	if (t < 0)
		return t;
	/* libhdf5 normalises some fields silently; a type that does not read back as the very
	 * descriptor it came from would not be the source's type. */
	ah5buf b;
	memset(&b, 0, sizeof(b));
	char w[ALCM_DETAIL_MAX];
	int rc = ah5_type_encode(t, &b, w);
	int same = rc == ALCM_OK && b.len == n && memcmp(b.p, p, n) == 0;
	ah5buf_free(&b);
	if (!same) {
		H5Tclose(t);
		if (why)
			alcm_detail_set(why, "the datatype cannot be reproduced by this libhdf5");
		return H5I_INVALID_HID;
	}
	return t;
}

/* ---- dataspaces ---- */

void ah5_space_encode(hid_t space, ah5buf *b, ah5_space_info *si)
{
	memset(si, 0, sizeof(*si));
	H5S_class_t cls = H5Sget_simple_extent_type(space);
	if (cls == H5S_SCALAR) {
		si->cls = AH5_SPACE_SCALAR;
		si->count = 1;
		ah5buf_u8(b, AH5_SPACE_SCALAR);
		return;
	}
	if (cls != H5S_SIMPLE) {
		si->cls = AH5_SPACE_NULL;
		ah5buf_u8(b, AH5_SPACE_NULL);
		return;
	}
	hsize_t dims[H5S_MAX_RANK], maxd[H5S_MAX_RANK];
	int rank = H5Sget_simple_extent_dims(space, dims, maxd);
	si->cls = AH5_SPACE_SIMPLE;
	si->rank = rank > 0 ? (uint32_t)rank : 0;
	ah5buf_u8(b, AH5_SPACE_SIMPLE);
	ah5buf_u8(b, si->rank);
	si->count = 1;
	for (uint32_t i = 0; i < si->rank; i++) {
		si->dims[i] = dims[i];
		si->maxdims[i] = maxd[i] == H5S_UNLIMITED ? UINT64_MAX : maxd[i];
		if (alcm_mul_u64(si->count, dims[i], &si->count))
			si->count = UINT64_MAX;
		ah5buf_u64(b, dims[i]);
	}
	for (uint32_t i = 0; i < si->rank; i++)
		ah5buf_u64(b, si->maxdims[i]);
}

hid_t ah5_space_build(const ah5_space_info *si)
{
	if (si->cls == AH5_SPACE_SCALAR)
		return H5Screate(H5S_SCALAR);
	if (si->cls == AH5_SPACE_NULL)
		return H5Screate(H5S_NULL);
	hsize_t dims[H5S_MAX_RANK], maxd[H5S_MAX_RANK];
	for (uint32_t i = 0; i < si->rank; i++) {
		dims[i] = si->dims[i];
		maxd[i] = si->maxdims[i] == UINT64_MAX ? H5S_UNLIMITED : si->maxdims[i];
	}
	return H5Screate_simple((int)si->rank, dims, maxd);
}

/* ---- values ---- */

static herr_t obj_read(hid_t obj, int is_attr, hid_t mt, void *buf)
{
	return is_attr ? H5Aread(obj, mt, buf) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

static herr_t obj_write(hid_t obj, int is_attr, hid_t mt, const void *buf)
{
	return is_attr ? H5Awrite(obj, mt, buf)
	               : H5Dwrite(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

static hid_t obj_space(hid_t obj, int is_attr)
{
	return is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
}

/* A memory type for reading variable-length data: vlen strings and sequences are built
 * afresh (a file type's copy keeps its on-disk location). */
static hid_t var_memtype(hid_t ftype, const ah5_type_info *ti)
{
	if (ti->cls == AH5_T_STRING) {
		hid_t t = H5Tcopy(H5T_C_S1);
		if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 ||
		               H5Tset_cset(t, H5Tget_cset(ftype)) < 0)) {
			H5Tclose(t);
			t = H5I_INVALID_HID;
		}
		return t;
	}
	hid_t base = H5Tget_super(ftype);
	if (base < 0)
		return base;
	hid_t t = H5Tvlen_create(base);
	H5Tclose(base);
	return t;
}

int ah5_value_read(hid_t obj, int is_attr, hid_t ftype, const ah5_type_info *ti,
                   uint64_t count, uint64_t budget, ah5buf *b, char *why)
{
	if (count == 0)
		return ALCM_OK;
	uint64_t nb;
	uint64_t esize = ti->variable ? (ti->cls == AH5_T_STRING ? sizeof(char *) : sizeof(hvl_t))
	                              : ti->size;
	if (alcm_mul_u64(count, esize, &nb) || nb > budget || nb > SIZE_MAX) {
		alcm_detail_set(why, "a value of %llu elements exceeds max_meta_bytes",
		                (unsigned long long)count);
		return ALCM_E_LIMIT;
	}
	void *buf = malloc((size_t)nb);
	if (!buf) {
		alcm_detail_set(why, "out of memory for a value of %llu bytes", (unsigned long long)nb);
		return ALCM_E_NOMEM;
	}
	int rc = ALCM_OK;
	if (!ti->variable) {
		hid_t mt = H5Tcopy(ftype);
		if (mt < 0 || obj_read(obj, is_attr, mt, buf) < 0) {
			alcm_detail_set(why, "cannot read the value");
			ah5_append_hdf5_error(why);
			rc = ALCM_E_CORRUPT;
		} else {
			ah5buf_put(b, buf, (size_t)nb);
		}
		ah5_close(mt);
		free(buf);
		return rc;
	}
	hid_t mt = var_memtype(ftype, ti);
	hid_t sp = obj_space(obj, is_attr);
	memset(buf, 0, (size_t)nb);
	if (mt < 0 || sp < 0 || obj_read(obj, is_attr, mt, buf) < 0) {
		alcm_detail_set(why, "cannot read the variable-length value");
		ah5_append_hdf5_error(why);
		ah5_close(mt);
		ah5_close(sp);
		free(buf);
		return ALCM_E_CORRUPT;
	}
	for (uint64_t i = 0; i < count && !ah5buf_failed(b); i++) {
		if (ti->cls == AH5_T_STRING) {
			const char *s = ((char **)buf)[i];
			if (!s) {
				ah5buf_u32(b, AH5_NULL_STRING);
				continue;
			}
			size_t n = strlen(s);
			if (n >= AH5_NULL_STRING) {
				b->over = 1;
				break;
			}
			ah5buf_str(b, s, n);
		} else {
			const hvl_t *v = &((hvl_t *)buf)[i];
			uint64_t vb;
			if (v->len > UINT32_MAX - 1 || alcm_mul_u64(v->len, ti->base_size, &vb) ||
			    vb > budget || (v->len && !v->p)) {
				b->over = 1;
				break;
			}
			ah5buf_u32(b, (uint32_t)v->len);
			ah5buf_put(b, v->p, (size_t)vb);
		}
	}
	ah5_reclaim(mt, sp, buf);
	ah5_close(mt);
	ah5_close(sp);
	free(buf);
	if (b->over) {
		alcm_detail_set(why, "the variable-length value exceeds max_meta_bytes");
		return ALCM_E_LIMIT;
	}
	return b->oom ? ALCM_E_NOMEM : ALCM_OK;
}

int ah5_value_write(hid_t obj, int is_attr, hid_t ftype, const ah5_type_info *ti,
                    uint64_t count, const uint8_t *val, uint64_t len, char *why)
{
	if (count == 0)
		return ALCM_OK;
	if (!ti->variable) {
		if (obj_write(obj, is_attr, ftype, val) < 0) {
			alcm_detail_set(why, "cannot write the value");
			ah5_append_hdf5_error(why);
			return ALCM_E_IO;
		}
		return ALCM_OK;
	}
	/* The value was checked: count elements, each length within len. */
	int str = ti->cls == AH5_T_STRING;
	size_t esize = str ? sizeof(char *) : sizeof(hvl_t);
	if (count > SIZE_MAX / esize || len > SIZE_MAX - count) {
		alcm_detail_set(why, "value too large for this address space");
		return ALCM_E_NOMEM;
	}
	void *ptrs = malloc((size_t)count * esize);
	char *text = str ? malloc((size_t)len + (size_t)count) : NULL;
	if (!ptrs || (str && !text)) {
		free(ptrs);
		free(text);
		alcm_detail_set(why, "out of memory for a variable-length value");
		return ALCM_E_NOMEM;
	}
	size_t pos = 0, tp = 0;
	for (uint64_t i = 0; i < count; i++) {
		uint32_t n = alcm_load32(val + pos);
		pos += 4;
		if (str) {
			if (n == AH5_NULL_STRING) {
				((char **)ptrs)[i] = NULL;
				continue;
			}
			memcpy(text + tp, val + pos, n);
			text[tp + n] = '\0';
			((char **)ptrs)[i] = text + tp;
			tp += n + 1;
			pos += n;
		} else {
			hvl_t *v = &((hvl_t *)ptrs)[i];
			v->len = n;
			v->p = n ? (void *)(uintptr_t)(val + pos) : NULL;
			pos += (size_t)n * (size_t)ti->base_size;
		}
	}
	hid_t mt = H5Tcopy(ftype);
	int rc = ALCM_OK;
	if (mt < 0 || obj_write(obj, is_attr, mt, ptrs) < 0) {
		alcm_detail_set(why, "cannot write the variable-length value");
		ah5_append_hdf5_error(why);
		rc = ALCM_E_IO;
	}
	ah5_close(mt);
	free(ptrs);
	free(text);
	return rc;
}
