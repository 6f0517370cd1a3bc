/* The ATTR payload (spec/alcm-format.md 6.6): a growable writer and the checked parser. No libhdf5. */
#include "h5_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- writer ---- */

void ah5buf_put(ah5buf *b, const void *s, size_t n)
{
	if (b->oom || b->over || n == 0)
		return;
	if (n > SIZE_MAX - b->len || (b->max && b->len + n > b->max)) {
		b->over = 1;
		return;
	}
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->len + n)
			nc = nc > SIZE_MAX / 2 ? b->len + n : nc * 2;
		uint8_t *np = realloc(b->p, nc);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void ah5buf_u8(ah5buf *b, unsigned v)
{
	uint8_t x = (uint8_t)v;
	ah5buf_put(b, &x, 1);
}

void ah5buf_u32(ah5buf *b, uint32_t v)
{
	uint8_t x[4];
	alcm_store32(x, v);
	ah5buf_put(b, x, 4);
}

void ah5buf_u64(ah5buf *b, uint64_t v)
{
	uint8_t x[8];
	alcm_store64(x, v);
	ah5buf_put(b, x, 8);
}

void ah5buf_str(ah5buf *b, const void *s, size_t n)
{
	if (n > UINT32_MAX - 1) {
		b->over = 1;
		return;
	}
	ah5buf_u32(b, (uint32_t)n);
	ah5buf_put(b, s, n);
}

void ah5buf_free(ah5buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- cursor ---- */

int ah5cur_fail(ah5cur *c, const char *fmt, ...)
{
	if (!c->failed && c->why) {
		char msg[ALCM_DETAIL_MAX];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		alcm_detail_set(c->why, "structure: %s (at byte %zu)", msg, c->pos);
	}
	c->failed = 1;
	return ALCM_E_CORRUPT;
}

static int need(ah5cur *c, uint64_t n)
{
	if (c->failed)
		return ALCM_E_CORRUPT;
	if (n > c->len - c->pos)
		return ah5cur_fail(c, "%llu bytes needed, %zu left", (unsigned long long)n,
		                   c->len - c->pos);
	return ALCM_OK;
}

static int get_u8(ah5cur *c, unsigned *v)
{
	if (need(c, 1))
		return ALCM_E_CORRUPT;
	*v = c->p[c->pos++];
	return ALCM_OK;
}

static int get_u32(ah5cur *c, uint32_t *v)
{
	if (need(c, 4))
		return ALCM_E_CORRUPT;
	*v = alcm_load32(c->p + c->pos);
	c->pos += 4;
	return ALCM_OK;
}

static int get_u64(ah5cur *c, uint64_t *v)
{
	if (need(c, 8))
		return ALCM_E_CORRUPT;
	*v = alcm_load64(c->p + c->pos);
	c->pos += 8;
	return ALCM_OK;
}

static int get_bytes(ah5cur *c, uint64_t n, const uint8_t **out)
{
	if (need(c, n))
		return ALCM_E_CORRUPT;
	*out = c->p + c->pos;
	c->pos += (size_t)n;
	return ALCM_OK;
}

static int get_str(ah5cur *c, const uint8_t **s, size_t *n)
{
	uint32_t l;
	if (get_u32(c, &l) || get_bytes(c, l, s))
		return ALCM_E_CORRUPT;
	*n = l;
	return ALCM_OK;
}

static int has_nul(const uint8_t *s, size_t n)
{
	return n && memchr(s, 0, n) != NULL;
}

int ah5_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	size_t n = an < bn ? an : bn;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c < 0 ? -1 : 1;
	return an < bn ? -1 : an > bn;
}

int ah5_path_ok(const uint8_t *p, size_t n)
{
	if (n == 0 || has_nul(p, n) || p[0] == '/' || p[n - 1] == '/')
		return 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || p[i] == '/') {
			size_t l = i - start;
			if (l == 0 || (l == 1 && p[start] == '.'))
				return 0;
			start = i + 1;
		}
	}
	return 1;
}

/* ---- datatypes ---- */

static int plain_int(unsigned order, unsigned sign, uint32_t size, uint32_t prec, uint32_t off,
                     unsigned lsb, unsigned msb, int *swap)
{
	static const int u[] = {0, ALCM_DTYPE_U8, ALCM_DTYPE_U16, 0, ALCM_DTYPE_U32, 0, 0, 0,
	                        ALCM_DTYPE_U64};
	static const int s[] = {0, ALCM_DTYPE_I8, ALCM_DTYPE_I16, 0, ALCM_DTYPE_I32, 0, 0, 0,
	                        ALCM_DTYPE_I64};
	if (size > 8 || !u[size] || prec != 8 * size || off || lsb || msb)
		return 0;
	*swap = order == 1 && size > 1;
	return sign ? s[size] : u[size];
}

typedef struct float_fields {
	uint32_t spos, epos, esize, mpos, msize;
	uint64_t ebias;
} float_fields;

static int plain_float(uint32_t size, uint32_t prec, uint32_t off, unsigned lsb, unsigned msb,
                       unsigned inpad, unsigned norm, const float_fields *f)
{
	static const struct {
		uint32_t size, spos, epos, esize, mpos, msize;
		uint64_t ebias;
		int dtype;
	} known[] = {
		{2, 15, 10, 5, 0, 10, 15, ALCM_DTYPE_F16},
		{2, 15, 7, 8, 0, 7, 127, ALCM_DTYPE_BF16},
		{4, 31, 23, 8, 0, 23, 127, ALCM_DTYPE_F32},
		{8, 63, 52, 11, 0, 52, 1023, ALCM_DTYPE_F64},
	};
	if (prec != 8 * size || off || lsb || msb || inpad || norm)
		return 0;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].size == size && known[i].spos == f->spos && known[i].epos == f->epos &&
		    known[i].esize == f->esize && known[i].mpos == f->mpos &&
		    known[i].msize == f->msize && known[i].ebias == f->ebias)
			return known[i].dtype;
	return 0;
}

static int bit_fields(ah5cur *c, uint32_t size, unsigned *order, uint32_t *prec, uint32_t *off,
                      unsigned *lsb, unsigned *msb)
{
	if (get_u8(c, order) || get_u32(c, prec) || get_u32(c, off) || get_u8(c, lsb) ||
	    get_u8(c, msb))
		return ALCM_E_CORRUPT;
	if (*order > 1)
		return ah5cur_fail(c, "byte order %u is not 0 (little) or 1 (big)", *order);
	if (*prec == 0 || *prec > 8ull * size || *off > 8ull * size - *prec)
		return ah5cur_fail(c, "precision %u at bit offset %u does not fit %u bytes", *prec,
		                   *off, size);
	if (*lsb > 2 || *msb > 2)
		return ah5cur_fail(c, "padding kind %u/%u is out of range", *lsb, *msb);
	return ALCM_OK;
}

static int type_rec(ah5cur *c, ah5_type_info *ti, unsigned depth, int top)
{
	unsigned cls;
	uint32_t size;
	memset(ti, 0, sizeof(*ti));
	if (depth > AH5_MAX_TYPE_DEPTH)
		return ah5cur_fail(c, "datatype nested deeper than %d", AH5_MAX_TYPE_DEPTH);
	if (get_u8(c, &cls) || get_u32(c, &size))
		return ALCM_E_CORRUPT;
	ti->cls = (int)cls;
	ti->size = size;
	if (size > AH5_MAX_ELEM)
		return ah5cur_fail(c, "datatype of %u bytes exceeds %llu", size,
		                   (unsigned long long)AH5_MAX_ELEM);
	if (cls != AH5_T_STRING && cls != AH5_T_VLEN && size == 0)
		return ah5cur_fail(c, "datatype class %u of size 0", cls);
	switch (cls) {
	case AH5_T_INTEGER:
	case AH5_T_BITFIELD: {
		unsigned order, sign, lsb, msb;
		uint32_t prec, off;
		/* order, sign, precision, offset, lsb pad, msb pad */
		if (get_u8(c, &order) || get_u8(c, &sign) || get_u32(c, &prec) || get_u32(c, &off) ||
		    get_u8(c, &lsb) || get_u8(c, &msb))
			return ALCM_E_CORRUPT;
		if (order > 1)
			return ah5cur_fail(c, "byte order %u is not 0 (little) or 1 (big)", order);
		if (sign > 1 || (cls == AH5_T_BITFIELD && sign))
			return ah5cur_fail(c, "sign %u is out of range", sign);
		if (prec == 0 || prec > 8ull * size || off > 8ull * size - prec)
			return ah5cur_fail(c, "precision %u at bit offset %u does not fit %u bytes", prec,
			                   off, size);
		if (lsb > 2 || msb > 2)
			return ah5cur_fail(c, "padding kind %u/%u is out of range", lsb, msb);
		if (cls == AH5_T_INTEGER)
			ti->dtype = plain_int(order, sign, size, prec, off, lsb, msb, &ti->swap);
		break;
	}
	case AH5_T_FLOAT: {
		unsigned order, lsb, msb, inpad, norm;
		uint32_t prec, off;
		float_fields f;
		if (bit_fields(c, size, &order, &prec, &off, &lsb, &msb) || get_u8(c, &inpad) ||
		    get_u8(c, &norm) || get_u32(c, &f.spos) || get_u32(c, &f.epos) ||
		    get_u32(c, &f.esize) || get_u32(c, &f.mpos) || get_u32(c, &f.msize) ||
		    get_u64(c, &f.ebias))
			return ALCM_E_CORRUPT;
		if (inpad > 2 || norm > 2)
			return ah5cur_fail(c, "float padding %u or normalisation %u is out of range",
			                   inpad, norm);
		uint64_t bits = 8ull * size;
		if (f.spos >= bits || f.esize == 0 || f.msize == 0 || f.epos >= bits ||
		    f.esize > bits - f.epos || f.mpos >= bits || f.msize > bits - f.mpos)
			return ah5cur_fail(c, "float bit fields do not fit %u bytes", size);
		ti->dtype = plain_float(size, prec, off, lsb, msb, inpad, norm, &f);
		ti->swap = ti->dtype && order == 1;
		break;
	}
	case AH5_T_STRING: {
		unsigned var, cset, pad;
		if (get_u8(c, &var) || get_u8(c, &cset) || get_u8(c, &pad))
			return ALCM_E_CORRUPT;
		if (var > 1 || cset > 1 || pad > 2)
			return ah5cur_fail(c, "string flags %u/%u/%u are out of range", var, cset, pad);
		if (var ? size != 0 : size == 0)
			return ah5cur_fail(c, "string of size %u with variable = %u", size, var);
		if (var && !top)
			return ah5cur_fail(c, "variable-length string nested in another datatype");
		ti->variable = (int)var;
		break;
	}
	case AH5_T_OPAQUE: {
		const uint8_t *tag;
		size_t n;
		if (get_str(c, &tag, &n))
			return ALCM_E_CORRUPT;
		if (n > AH5_MAX_TAG || has_nul(tag, n))
			return ah5cur_fail(c, "opaque tag of %zu bytes or with a NUL byte", n);
		break;
	}
	case AH5_T_COMPOUND: {
		uint32_t n;
		if (get_u32(c, &n))
			return ALCM_E_CORRUPT;
		if (n == 0)
			return ah5cur_fail(c, "compound datatype without members");
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *name;
			size_t nl;
			uint32_t off;
			ah5_type_info mi;
			if (get_str(c, &name, &nl) || get_u32(c, &off))
				return ALCM_E_CORRUPT;
			if (nl == 0 || has_nul(name, nl))
				return ah5cur_fail(c, "compound member %u: empty name or NUL byte", i);
			if (type_rec(c, &mi, depth + 1, 0))
				return ALCM_E_CORRUPT;
			if ((uint64_t)off + mi.size > size)
				return ah5cur_fail(c, "compound member %u ends past the type's %u bytes", i,
				                   size);
		}
		break;
	}
	case AH5_T_ENUM: {
		ah5_type_info bi;
		uint32_t n;
		size_t base_pos = c->pos;
		if (type_rec(c, &bi, depth + 1, 0))
			return ALCM_E_CORRUPT;
		if (bi.cls != AH5_T_INTEGER || bi.size != size)
			return ah5cur_fail(c, "enumeration base is not an integer of %u bytes", size);
		if (get_u32(c, &n))
			return ALCM_E_CORRUPT;
		if (n == 0)
			return ah5cur_fail(c, "enumeration without members");
		int is_bool = bi.dtype && size == 1 && n == 2;
		int seen = 0;
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *name, *val;
			size_t nl;
			if (get_str(c, &name, &nl) || get_bytes(c, size, &val))
				return ALCM_E_CORRUPT;
			if (nl == 0 || has_nul(name, nl))
				return ah5cur_fail(c, "enumeration member %u: empty name or NUL byte", i);
			if (nl == 5 && memcmp(name, "FALSE", 5) == 0 && val[0] == 0)
				seen |= 1;
			else if (nl == 4 && memcmp(name, "TRUE", 4) == 0 && val[0] == 1)
				seen |= 2;
		}
		(void)base_pos;
		ti->enum_dtype = is_bool && seen == 3 ? ALCM_DTYPE_BOOL : bi.dtype;
		ti->swap = bi.swap;
		break;
	}
	case AH5_T_ARRAY: {
		uint32_t rank;
		uint64_t prod = 1;
		ah5_type_info bi;
		if (get_u32(c, &rank))
			return ALCM_E_CORRUPT;
		if (rank == 0 || rank > AH5_MAX_RANK)
			return ah5cur_fail(c, "array datatype of rank %u", rank);
		for (uint32_t i = 0; i < rank; i++) {
			uint64_t d;
			if (get_u64(c, &d))
				return ALCM_E_CORRUPT;
			if (d == 0 || alcm_mul_u64(prod, d, &prod) || prod > AH5_MAX_ELEM)
				return ah5cur_fail(c, "array datatype dimension %u is 0 or too large", i);
		}
		if (type_rec(c, &bi, depth + 1, 0))
			return ALCM_E_CORRUPT;
		if (alcm_mul_u64(prod, bi.size, &prod) || prod != size)
			return ah5cur_fail(c, "array datatype of %u bytes does not match its elements",
			                   size);
		break;
	}
	case AH5_T_VLEN: {
		ah5_type_info bi;
		if (size != 0)
			return ah5cur_fail(c, "variable-length datatype of size %u", size);
		if (!top)
			return ah5cur_fail(c, "variable-length datatype nested in another datatype");
		if (type_rec(c, &bi, depth + 1, 0))
			return ALCM_E_CORRUPT;
		ti->variable = 1;
		ti->base_size = bi.size;
		break;
	}
	default:
		return ah5cur_fail(c, "unknown datatype class %u", cls);
	}
	return c->failed ? ALCM_E_CORRUPT : ALCM_OK;
}

int ah5_type_check(ah5cur *c, ah5_type_info *ti)
{
	return type_rec(c, ti, 0, 1);
}

int ah5_type_classify(const uint8_t *p, size_t n, ah5_type_info *ti, char *why)
{
	ah5cur c = {p, n, 0, why, 0};
	if (ah5_type_check(&c, ti))
		return ALCM_E_CORRUPT;
	if (c.pos != n)
		return ah5cur_fail(&c, "datatype followed by %zu stray bytes", n - c.pos);
	return ALCM_OK;
}

/* ---- dataspaces and values ---- */

int ah5_space_check(ah5cur *c, ah5_space_info *si)
{
	unsigned cls, rank;
	memset(si, 0, sizeof(*si));
	if (get_u8(c, &cls))
		return ALCM_E_CORRUPT;
	si->cls = (int)cls;
	if (cls == AH5_SPACE_SCALAR) {
		si->count = 1;
		return ALCM_OK;
	}
	if (cls == AH5_SPACE_NULL)
		return ALCM_OK;
	if (cls != AH5_SPACE_SIMPLE)
		return ah5cur_fail(c, "unknown dataspace class %u", cls);
	if (get_u8(c, &rank))
		return ALCM_E_CORRUPT;
	if (rank == 0 || rank > AH5_MAX_RANK)
		return ah5cur_fail(c, "dataspace of rank %u", rank);
	si->rank = rank;
	uint64_t count = 1;
	int overflow = 0;
	for (unsigned i = 0; i < rank; i++) {
		if (get_u64(c, &si->dims[i]))
			return ALCM_E_CORRUPT;
		overflow |= alcm_mul_u64(count, si->dims[i], &count);
	}
	for (unsigned i = 0; i < rank; i++) {
		if (get_u64(c, &si->maxdims[i]))
			return ALCM_E_CORRUPT;
		if (si->maxdims[i] != UINT64_MAX && si->maxdims[i] < si->dims[i])
			return ah5cur_fail(c, "maximum dimension %u below the current one", i);
	}
	if (overflow)
		return ah5cur_fail(c, "dataspace element count overflows 64 bits");
	si->count = count;
	return ALCM_OK;
}

int ah5_value_check(ah5cur *c, const ah5_type_info *ti, uint64_t count, uint64_t value_len)
{
	if (need(c, value_len))
		return ALCM_E_CORRUPT;
	size_t end = c->pos + (size_t)value_len;
	if (!ti->variable) {
		uint64_t want;
		if (alcm_mul_u64(count, ti->size, &want) || want != value_len)
			return ah5cur_fail(c, "value of %llu bytes for %llu elements of %llu bytes",
			                   (unsigned long long)value_len, (unsigned long long)count,
			                   (unsigned long long)ti->size);
		c->pos = end;
		return ALCM_OK;
	}
	/* Each variable element takes at least its 4-byte length. */
	if (count > value_len / 4)
		return ah5cur_fail(c, "value of %llu bytes cannot hold %llu variable-length elements",
		                   (unsigned long long)value_len, (unsigned long long)count);
	ah5cur v = {c->p, end, c->pos, c->why, 0};
	for (uint64_t i = 0; i < count; i++) {
		uint32_t n;
		const uint8_t *s;
		if (get_u32(&v, &n))
			goto bad;
		if (ti->cls == AH5_T_STRING) {
			if (n == AH5_NULL_STRING)
				continue;
			if (get_bytes(&v, n, &s))
				goto bad;
			if (has_nul(s, n)) {
				ah5cur_fail(&v, "variable-length string %llu holds a NUL byte",
				            (unsigned long long)i);
				goto bad;
			}
		} else {
			uint64_t nb;
			if (alcm_mul_u64(n, ti->base_size, &nb) || get_bytes(&v, nb, &s))
				goto bad;
		}
	}
	if (v.pos != end) {
		ah5cur_fail(&v, "%zu stray bytes after a variable-length value", end - v.pos);
		goto bad;
	}
	c->pos = end;
	return ALCM_OK;
bad:
	c->failed = 1;
	return ALCM_E_CORRUPT;
}

static int storage_check(ah5cur *c, const ah5_space_info *si, const ah5_type_info *ti)
{
	unsigned layout, external, nf;
	if (get_u8(c, &layout) || get_u8(c, &external))
		return ALCM_E_CORRUPT;
	if (layout > AH5_LAYOUT_VIRTUAL || external > 1)
		return ah5cur_fail(c, "layout %u or external flag %u out of range", layout, external);
	if (layout == AH5_LAYOUT_CHUNKED) {
		if (si->cls != AH5_SPACE_SIMPLE)
			return ah5cur_fail(c, "chunked layout needs a simple dataspace");
		uint64_t bytes = ti->variable ? 16 : ti->size;
		for (uint32_t i = 0; i < si->rank; i++) {
			uint64_t d;
			if (get_u64(c, &d))
				return ALCM_E_CORRUPT;
			if (d == 0 || d > UINT32_MAX || alcm_mul_u64(bytes, d, &bytes))
				return ah5cur_fail(c, "chunk dimension %u is 0 or too large", i);
			if (si->maxdims[i] != UINT64_MAX && d > si->maxdims[i] && si->maxdims[i])
				return ah5cur_fail(c, "chunk dimension %u exceeds the maximum dimension", i);
		}
		if (bytes > UINT32_MAX)
			return ah5cur_fail(c, "chunk of %llu bytes exceeds 4 GiB",
			                   (unsigned long long)bytes);
	}
	if (get_u8(c, &nf))
		return ALCM_E_CORRUPT;
	if (nf > AH5_MAX_FILTERS || (nf && layout != AH5_LAYOUT_CHUNKED))
		return ah5cur_fail(c, "%u filters on a dataset with layout %u", nf, layout);
	for (unsigned i = 0; i < nf; i++) {
		uint32_t id, flags, ncd, v;
		if (get_u32(c, &id) || get_u32(c, &flags) || get_u32(c, &ncd))
			return ALCM_E_CORRUPT;
		if (id == 0 || id > 65535 || ncd > AH5_MAX_CD)
			return ah5cur_fail(c, "filter %u: id %u or %u parameters out of range", i, id, ncd);
		for (uint32_t k = 0; k < ncd; k++)
			if (get_u32(c, &v))
				return ALCM_E_CORRUPT;
	}
	return ALCM_OK;
}

static int attrs_check(ah5cur *c, uint32_t *count, alcm_h5_structure_stats *st)
{
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	if (get_u32(c, count))
		return ALCM_E_CORRUPT;
	if (*count > (c->len - c->pos) / 14)
		return ah5cur_fail(c, "%u attributes cannot fit in %zu bytes", *count, c->len - c->pos);
	for (uint32_t i = 0; i < *count; i++) {
		const uint8_t *name;
		size_t nl;
		ah5_type_info ti;
		ah5_space_info si;
		uint64_t vl;
		if (get_str(c, &name, &nl))
			return ALCM_E_CORRUPT;
		if (nl == 0 || has_nul(name, nl))
			return ah5cur_fail(c, "attribute %u: empty name or NUL byte", i);
		if (prev && ah5_cmp(prev, prev_len, name, nl) >= 0)
			return ah5cur_fail(c, "attribute %u: names not in strictly increasing order", i);
		prev = name;
		prev_len = nl;
		if (ah5_type_check(c, &ti) || ah5_space_check(c, &si) || get_u64(c, &vl) ||
		    ah5_value_check(c, &ti, si.count, vl))
			return ALCM_E_CORRUPT;
	}
	st->attributes += *count;
	return ALCM_OK;
}

static int dataset_check(ah5cur *c, ah5_obj *o, alcm_h5_structure_stats *st)
{
	unsigned repr, dtype;
	if (get_u8(c, &repr) || get_u8(c, &dtype))
		return ALCM_E_CORRUPT;
	o->repr = (int)repr;
	o->dtype = (int)dtype;
	o->type_off = c->pos;
	if (ah5_type_check(c, &o->ti))
		return ALCM_E_CORRUPT;
	o->type_len = c->pos - o->type_off;
	o->space_off = c->pos;
	if (ah5_space_check(c, &o->si))
		return ALCM_E_CORRUPT;
	o->space_len = c->pos - o->space_off;
	o->storage_off = c->pos;
	if (storage_check(c, &o->si, &o->ti))
		return ALCM_E_CORRUPT;
	o->storage_len = c->pos - o->storage_off;
	const ah5_type_info *ti = &o->ti;
	switch (repr) {
	case AH5_REPR_NUMERIC:
		if (!ti->dtype || (int)dtype != ti->dtype)
			return ah5cur_fail(c, "numeric dataset: dtype %u does not match its datatype",
			                   dtype);
		break;
	case AH5_REPR_ENUM:
		if (ti->cls != AH5_T_ENUM || !ti->enum_dtype ||
		    ((int)dtype != ti->enum_dtype &&
		     !(ti->enum_dtype == ALCM_DTYPE_BOOL && dtype == ALCM_DTYPE_I8)))
			return ah5cur_fail(c, "enumeration dataset: dtype %u does not match its datatype",
			                   dtype);
		break;
	case AH5_REPR_RAW:
		if (ti->variable || dtype != ALCM_DTYPE_U8)
			return ah5cur_fail(c, "raw dataset: variable-length datatype or dtype %u", dtype);
		if (o->si.rank + 1 > ALCM_MAX_NDIM)
			return ah5cur_fail(c, "raw dataset of rank %u has no tensor shape", o->si.rank);
		break;
	case AH5_REPR_INLINE:
		if (dtype != 0)
			return ah5cur_fail(c, "inline dataset with dtype %u", dtype);
		break;
	default:
		return ah5cur_fail(c, "unknown dataset representation %u", repr);
	}
	if (repr != AH5_REPR_INLINE) {
		if (o->si.cls == AH5_SPACE_NULL)
			return ah5cur_fail(c, "tensor dataset with a null dataspace");
		st->tensor_datasets++;
	} else {
		if (get_u64(c, &o->value_len))
			return ALCM_E_CORRUPT;
		o->value_off = c->pos;
		if (ah5_value_check(c, ti, o->si.count, o->value_len))
			return ALCM_E_CORRUPT;
	}
	st->datasets++;
	return ALCM_OK;
}

static int object_check(ah5cur *c, ah5_obj *o, alcm_h5_structure_stats *st)
{
	unsigned kind;
	memset(o, 0, sizeof(*o));
	if (get_u8(c, &kind) || get_str(c, &o->path, &o->path_len))
		return ALCM_E_CORRUPT;
	o->kind = (int)kind;
	if (kind < AH5_OBJ_GROUP || kind > AH5_OBJ_EXTERNAL)
		return ah5cur_fail(c, "unknown object kind %u", kind);
	int root = o->path_len == 0;
	if (root ? kind != AH5_OBJ_GROUP : !ah5_path_ok(o->path, o->path_len))
		return ah5cur_fail(c, "object path is not a valid HDF5 path");
	switch (kind) {
	case AH5_OBJ_GROUP:
		st->groups++;
		break;
	case AH5_OBJ_DATASET:
		if (dataset_check(c, o, st))
			return ALCM_E_CORRUPT;
		break;
	case AH5_OBJ_DATATYPE:
		o->type_off = c->pos;
		if (ah5_type_check(c, &o->ti))
			return ALCM_E_CORRUPT;
		o->type_len = c->pos - o->type_off;
		st->datatypes++;
		break;
	case AH5_OBJ_HARD:
		if (get_str(c, &o->target, &o->target_len))
			return ALCM_E_CORRUPT;
		if (!ah5_path_ok(o->target, o->target_len) &&
		    !(o->target_len == 0))
			return ah5cur_fail(c, "hard link target is not a valid HDF5 path");
		st->links++;
		return ALCM_OK;
	case AH5_OBJ_SOFT:
		if (get_str(c, &o->target, &o->target_len))
			return ALCM_E_CORRUPT;
		if (o->target_len == 0 || has_nul(o->target, o->target_len))
			return ah5cur_fail(c, "soft link target empty or with a NUL byte");
		st->links++;
		return ALCM_OK;
	case AH5_OBJ_EXTERNAL:
		if (get_str(c, &o->target, &o->target_len) ||
		    get_str(c, &o->target2, &o->target2_len))
			return ALCM_E_CORRUPT;
		if (o->target_len == 0 || has_nul(o->target, o->target_len) || o->target2_len == 0 ||
		    has_nul(o->target2, o->target2_len))
			return ah5cur_fail(c, "external link file or object empty or with a NUL byte");
		st->links++;
		return ALCM_OK;
	}
	o->attrs_off = c->pos;
	return attrs_check(c, &o->nattrs, st);
}

static int skip_check(ah5cur *c, alcm_h5_structure_stats *st)
{
	unsigned kind;
	const uint8_t *s;
	size_t n;
	if (get_u8(c, &kind) || get_str(c, &s, &n))
		return ALCM_E_CORRUPT;
	if (kind > AH5_SKIP_ATTRIBUTE)
		return ah5cur_fail(c, "unknown skipped-entry kind %u", kind);
	if (has_nul(s, n))
		return ah5cur_fail(c, "skipped path with a NUL byte");
	if (kind == AH5_SKIP_ATTRIBUTE && (get_str(c, &s, &n) || has_nul(s, n)))
		return c->failed ? ALCM_E_CORRUPT : ah5cur_fail(c, "skipped attribute name");
	if (get_str(c, &s, &n))
		return ALCM_E_CORRUPT;
	st->skipped++;
	return ALCM_OK;
}

static const uint8_t *parent_of(const uint8_t *p, size_t n, size_t *pn)
{
	size_t i = n;
	while (i > 0 && p[i - 1] != '/')
		i--;
	*pn = i ? i - 1 : 0;
	return p;
}

long ah5_find(const ah5_parsed *ps, const uint8_t *path, size_t len)
{
	size_t lo = 0, hi = ps->nobj;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ah5_cmp(ps->obj[mid].path, ps->obj[mid].path_len, path, len);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int ah5_parse(const uint8_t *p, size_t len, ah5_parsed *ps, int want_objs, char *why)
{
	ah5cur c = {p, len, 0, why, 0};
	const uint8_t *magic;
	unsigned major, minor;
	uint32_t flags16, nobj, nskip;
	memset(ps, 0, sizeof(*ps));
	if (!p && len)
		return ALCM_E_ARG;
	if (get_bytes(&c, 4, &magic) || get_u8(&c, &major) || get_u8(&c, &minor))
		return ALCM_E_CORRUPT;
	if (memcmp(magic, AH5_MAGIC, 4) != 0)
		return ah5cur_fail(&c, "bad magic (not an HDF5 structure)");
	if (major != ALCM_H5_STRUCT_MAJOR) {
		if (why)
			alcm_detail_set(why, "structure: version %u.%u, this library reads %d.x", major,
			                minor, ALCM_H5_STRUCT_MAJOR);
		return major > ALCM_H5_STRUCT_MAJOR ? ALCM_E_UNSUPPORTED : ALCM_E_CORRUPT;
	}
	uint8_t fl[2];
	const uint8_t *fp;
	if (get_bytes(&c, 2, &fp))
		return ALCM_E_CORRUPT;
	memcpy(fl, fp, 2);
	flags16 = alcm_load16(fl);
	if (flags16)
		return ah5cur_fail(&c, "reserved flags 0x%x set", flags16);
	if (get_u32(&c, &nobj) || get_u32(&c, &nskip))
		return ALCM_E_CORRUPT;
	/* The smallest object or skip record is 9 bytes: counts beyond what is left are lies. */
	if (nobj > (len - c.pos) / 9 || nskip > (len - c.pos - (size_t)nobj * 9) / 9)
		return ah5cur_fail(&c, "%u objects and %u skipped entries cannot fit", nobj, nskip);
	ps->major = major;
	ps->minor = minor;
	ps->st.major = major;
	ps->st.minor = minor;
	ps->nobj = nobj;
	ps->nskip = nskip;
	ah5_obj *objs = NULL;
	if (want_objs && nobj) {
		objs = calloc(nobj, sizeof(*objs));
		if (!objs) {
			if (why)
				alcm_detail_set(why, "structure: out of memory for %u objects", nobj);
			return ALCM_E_NOMEM;
		}
	}
	ah5_obj prev, cur;
	for (uint32_t i = 0; i < nobj; i++) {
		ah5_obj *o = objs ? &objs[i] : &cur;
		if (object_check(&c, o, &ps->st))
			goto bad;
		if (i > 0) {
			const ah5_obj *q = objs ? &objs[i - 1] : &prev;
			if (ah5_cmp(q->path, q->path_len, o->path, o->path_len) >= 0) {
				ah5cur_fail(&c, "object paths not in strictly increasing order");
				goto bad;
			}
		}
		if (!objs)
			prev = cur;
	}
	ps->skip_off = c.pos;
	for (uint32_t i = 0; i < nskip; i++)
		if (skip_check(&c, &ps->st))
			goto bad;
	if (c.pos != len) {
		ah5cur_fail(&c, "%zu stray bytes after the last record", len - c.pos);
		goto bad;
	}
	if (objs) {
		/* Cross-record rules: parents are groups, hard links name a real object. */
		ps->obj = objs;
		for (uint32_t i = 0; i < nobj; i++) {
			const ah5_obj *o = &objs[i];
			size_t pn;
			const uint8_t *pp = parent_of(o->path, o->path_len, &pn);
			if (o->path_len && pn) {
				long k = ah5_find(ps, pp, pn);
				if (k >= 0 && objs[k].kind != AH5_OBJ_GROUP) {
					if (why)
						alcm_detail_set(why, "structure: object %u lies under a parent that "
						                "is not a group", i);
					goto bad_cross;
				}
			}
			if (o->kind == AH5_OBJ_HARD) {
				long k = ah5_find(ps, o->target, o->target_len);
				if (k < 0 || objs[k].kind == AH5_OBJ_HARD || objs[k].kind == AH5_OBJ_SOFT ||
				    objs[k].kind == AH5_OBJ_EXTERNAL || (size_t)k == i) {
					if (why)
						alcm_detail_set(why, "structure: hard link %u does not name a "
						                "listed group, dataset or datatype", i);
					goto bad_cross;
				}
			}
		}
	}
	return ALCM_OK;
bad_cross:
	ps->obj = NULL;
	free(objs);
	return ALCM_E_CORRUPT;
bad:
	free(objs);
	return ALCM_E_CORRUPT;
}

int ah5_tensor_shape(const ah5_obj *o, uint32_t *ndim, uint64_t *shape)
{
	uint32_t r = o->si.cls == AH5_SPACE_SIMPLE ? o->si.rank : 0;
	memcpy(shape, o->si.dims, r * sizeof(uint64_t));
	if (o->repr == AH5_REPR_RAW)
		shape[r++] = o->ti.size;
	*ndim = r;
	return ALCM_OK;
}

/* ---- public, libhdf5-free ---- */

int alcm_h5_structure_check(const void *buf, size_t len, alcm_h5_structure_stats *st,
                            char *why)
{
	ah5_parsed ps;
	if (why)
		why[0] = '\0';
	if (!buf && len)
		return ALCM_E_ARG;
	/* The cross-record rules need the object index; it costs one allocation. */
	int rc = ah5_parse(buf, len, &ps, 1, why);
	if (rc == ALCM_OK && st)
		*st = ps.st;
	free(ps.obj);
	return rc;
}

int alcm_h5_structure_skipped(const void *buf, size_t len, uint64_t i, const char **path,
                              size_t *path_len, const char **attr, size_t *attr_len,
                              const char **reason, size_t *reason_len)
{
	ah5_parsed ps;
	int rc = ah5_parse(buf, len, &ps, 0, NULL);
	if (rc)
		return rc;
	if (i >= ps.nskip)
		return ALCM_E_NOTFOUND;
	ah5cur c = {buf, len, ps.skip_off, NULL, 0};
	for (uint64_t k = 0;; k++) {
		unsigned kind;
		const uint8_t *p = NULL, *a = NULL, *r;
		size_t pn, an = 0, rn;
		if (get_u8(&c, &kind) || get_str(&c, &p, &pn) ||
		    (kind == AH5_SKIP_ATTRIBUTE && get_str(&c, &a, &an)) || get_str(&c, &r, &rn))
			return ALCM_E_CORRUPT;
		if (k == i) {
			if (path)
				*path = (const char *)p, *path_len = pn;
			if (attr)
				*attr = (const char *)a, *attr_len = an;
			if (reason)
				*reason = (const char *)r, *reason_len = rn;
			return ALCM_OK;
		}
	}
}
