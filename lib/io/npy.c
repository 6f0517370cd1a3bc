/*
 * .npy files (format versions 1.0, 2.0, 3.0): the header parser shared with .npz members,
 * the reader of a lone .npy, and a writer that produces what numpy.save writes.
 *
 * Read rules: the header dict must hold exactly 'descr', 'fortran_order' and 'shape' (any
 * order, Python literal syntax, trailing comma allowed, a 1-tuple needs its comma). Only
 * bool, integer and float16/32/64 descrs are read; big-endian data is byte-swapped and
 * Fortran-order data is transposed, so tensors always come out C order, little-endian.
 */
#include "io_internal.h"

#include <stdio.h>

typedef struct pylit {
	const uint8_t *p;
	size_t n, i;
	int status;
	const char *err;
	size_t at;
} pylit;

static int lit_fail(pylit *L, int status, const char *err)
{
	if (!L->status) {
		L->status = status;
		L->err = err;
		L->at = L->i;
	}
	return L->status;
}

static int lit_peek(const pylit *L)
{
	return L->i < L->n ? L->p[L->i] : -1;
}

static void lit_ws(pylit *L)
{
	while (L->i < L->n && (L->p[L->i] == ' ' || L->p[L->i] == '\t' || L->p[L->i] == '\n' ||
	                       L->p[L->i] == '\r'))
		L->i++;
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int lit_str(pylit *L, const uint8_t **s, size_t *len)
{
	int q = lit_peek(L);
	if (q != '\'' && q != '"')
		return lit_fail(L, ALCM_E_CORRUPT, "expected a quoted string");
	size_t start = ++L->i;
	while (L->i < L->n && L->p[L->i] != q) {
		if (L->p[L->i] == '\\')
			return lit_fail(L, ALCM_E_CORRUPT, "escape sequence in a string");
		if (L->p[L->i] == '\n')
			break;
		L->i++;
	}
	if (lit_peek(L) != q)
		return lit_fail(L, ALCM_E_CORRUPT, "unterminated string");
	*s = L->p + start;
	*len = L->i - start;
	L->i++;
	return ALCM_OK;
}

static int lit_uint(pylit *L, uint64_t *v)
{
	uint64_t x = 0;
	size_t start = L->i;
	if (!is_digit(lit_peek(L)))
		return lit_fail(L, ALCM_E_CORRUPT, "expected a non-negative integer");
	if (L->p[L->i] == '0' && L->i + 1 < L->n && is_digit(L->p[L->i + 1]))
		return lit_fail(L, ALCM_E_CORRUPT, "integer with a leading zero");
	while (is_digit(lit_peek(L))) {
		unsigned d = (unsigned)(L->p[L->i] - '0');
		if (x > (UINT64_MAX - d) / 10) {
			L->i = start;
			return lit_fail(L, ALCM_E_LIMIT, "dimension exceeds 2^64-1");
		}
		x = x * 10 + d;
		L->i++;
	}
	if (lit_peek(L) == 'L' || lit_peek(L) == 'l') /* Python 2 long literals */
		L->i++;
	*v = x;
	return ALCM_OK;
}

static int lit_shape(pylit *L, uint64_t *shape, uint32_t *ndim, uint32_t max)
{
	uint32_t k = 0;
	if (lit_peek(L) != '(')
		return lit_fail(L, ALCM_E_CORRUPT, "shape is not a tuple");
	L->i++;
	lit_ws(L);
	if (lit_peek(L) == ')') {
		L->i++;
		*ndim = 0;
		return ALCM_OK;
	}
	for (;;) {
		uint64_t v = 0;
		if (k >= max)
			return lit_fail(L, ALCM_E_LIMIT, "the shape has more dimensions than max_ndim");
		if (lit_uint(L, &v))
			return L->status;
		shape[k++] = v;
		lit_ws(L);
		if (lit_peek(L) == ',') {
			L->i++;
			lit_ws(L);
			if (lit_peek(L) == ')') {
				L->i++;
				break;
			}
			continue;
		}
		if (lit_peek(L) == ')') {
			if (k == 1)
				return lit_fail(L, ALCM_E_CORRUPT,
				                "shape (n) is not a tuple: a 1-tuple needs a trailing comma");
			L->i++;
			break;
		}
		return lit_fail(L, ALCM_E_CORRUPT, "expected ',' or ')' in the shape");
	}
	*ndim = k;
	return ALCM_OK;
}

static int lit_bool(pylit *L, int *b)
{
	if (L->n - L->i >= 4 && memcmp(L->p + L->i, "True", 4) == 0) {
		L->i += 4;
		*b = 1;
	} else if (L->n - L->i >= 5 && memcmp(L->p + L->i, "False", 5) == 0) {
		L->i += 5;
		*b = 0;
	} else {
		return lit_fail(L, ALCM_E_CORRUPT, "fortran_order is not True or False");
	}
	int c = lit_peek(L);
	if (is_digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return lit_fail(L, ALCM_E_CORRUPT, "fortran_order is not True or False");
	return ALCM_OK;
}

typedef struct npy_dict {
	const uint8_t *descr;
	size_t descr_len;
	int fortran;
	uint64_t *shape;
	uint32_t ndim;
} npy_dict;

static int lit_dict(pylit *L, npy_dict *d, uint32_t max_ndim)
{
	static const char *const keys[3] = {"descr", "fortran_order", "shape"};
	unsigned seen = 0;
	lit_ws(L);
	if (lit_peek(L) != '{')
		return lit_fail(L, ALCM_E_CORRUPT, "the header is not a dict");
	L->i++;
	for (;;) {
		lit_ws(L);
		if (lit_peek(L) == '}') {
			L->i++;
			break;
		}
		size_t key_at = L->i;
		const uint8_t *k;
		size_t kl;
		if (lit_str(L, &k, &kl))
			return L->status;
		int which = -1;
		for (int i = 0; i < 3; i++)
			if (kl == strlen(keys[i]) && memcmp(k, keys[i], kl) == 0)
				which = i;
		if (which < 0 || (seen & (1u << which))) {
			L->i = key_at;
			return lit_fail(L, ALCM_E_CORRUPT,
			                which < 0 ? "unexpected key in the header dict"
			                          : "duplicate key in the header dict");
		}
		seen |= 1u << which;
		lit_ws(L);
		if (lit_peek(L) != ':')
			return lit_fail(L, ALCM_E_CORRUPT, "expected ':'");
		L->i++;
		lit_ws(L);
		if (which == 0) {
			if (lit_peek(L) == '[')
				return lit_fail(L, ALCM_E_UNSUPPORTED,
				                "structured dtype (a list of fields) is not supported");
			if (lit_str(L, &d->descr, &d->descr_len))
				return L->status;
		} else if (which == 1) {
			if (lit_bool(L, &d->fortran))
				return L->status;
		} else if (lit_shape(L, d->shape, &d->ndim, max_ndim)) {
			return L->status;
		}
		lit_ws(L);
		if (lit_peek(L) == ',') {
			L->i++;
			continue;
		}
		if (lit_peek(L) == '}') {
			L->i++;
			break;
		}
		return lit_fail(L, ALCM_E_CORRUPT, "expected ',' or '}' in the header dict");
	}
	if (seen != 7)
		return lit_fail(L, ALCM_E_CORRUPT,
		                "the header dict lacks 'descr', 'fortran_order' or 'shape'");
	lit_ws(L);
	if (L->i != L->n)
		return lit_fail(L, ALCM_E_CORRUPT, "unexpected bytes after the header dict");
	return ALCM_OK;
}

static const struct {
	char kind;
	unsigned size;
	int dtype;
	const char *descr;
} npy_types[] = {
	{'b', 1, ALCM_DTYPE_BOOL, "|b1"}, {'u', 1, ALCM_DTYPE_U8, "|u1"},
	{'i', 1, ALCM_DTYPE_I8, "|i1"},   {'u', 2, ALCM_DTYPE_U16, "<u2"},
	{'i', 2, ALCM_DTYPE_I16, "<i2"},  {'u', 4, ALCM_DTYPE_U32, "<u4"},
	{'i', 4, ALCM_DTYPE_I32, "<i4"},  {'u', 8, ALCM_DTYPE_U64, "<u8"},
	{'i', 8, ALCM_DTYPE_I64, "<i8"},  {'f', 2, ALCM_DTYPE_F16, "<f2"},
	{'f', 4, ALCM_DTYPE_F32, "<f4"},  {'f', 8, ALCM_DTYPE_F64, "<f8"},
};

const char *alcm_io_npy_descr(int dtype)
{
	for (size_t i = 0; i < sizeof(npy_types) / sizeof(npy_types[0]); i++)
		if (npy_types[i].dtype == dtype)
			return npy_types[i].descr;
	return NULL;
}

static int map_descr(const uint8_t *s, size_t n, int *dtype, int *swap)
{
	if (n != 3 || !memchr("<>|=", s[0], 4) || !is_digit(s[2]))
		return ALCM_E_UNSUPPORTED;
	unsigned size = (unsigned)(s[2] - '0');
	for (size_t i = 0; i < sizeof(npy_types) / sizeof(npy_types[0]); i++) {
		if (npy_types[i].kind == (char)s[1] && npy_types[i].size == size) {
			*dtype = npy_types[i].dtype;
			*swap = size > 1 && s[0] == '>';
			return ALCM_OK;
		}
	}
	return ALCM_E_UNSUPPORTED;
}

__attribute__((format(printf, 5, 6)))
static int npy_fail(alcm_input *in, const alcm_io_npy_src *src, int status, uint64_t off,
                    const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX], q[ALCM_IO_QUOTE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_io_quote(q, src->tname, src->tname_len);
	if (src->member_off == UINT64_MAX)
		return alcm_io_fail(in, status, "tensor '%s': %s at offset %llu", q, msg,
		                    (unsigned long long)off);
	return alcm_io_fail(in, status,
	                    "tensor '%s': %s at offset %llu of its .npy member (local header at "
	                    "offset %llu)", q, msg, (unsigned long long)off,
	                    (unsigned long long)src->member_off);
}

static int parse_header(alcm_input *in, const alcm_io_npy_src *src, const uint8_t *h,
                        size_t hlen, size_t prefix, alcm_io_npy_info *info)
{
	npy_dict d = {.shape = info->shape};
	pylit L = {.p = h, .n = hlen};
	if (lit_dict(&L, &d, in->lim.max_ndim))
		return npy_fail(in, src, L.status, prefix + L.at, "header: %s", L.err);
	info->ndim = d.ndim;
	info->fortran = d.fortran;
	if (map_descr(d.descr, d.descr_len, &info->dtype, &info->swap)) {
		char q[ALCM_IO_QUOTE];
		alcm_io_quote(q, (const char *)d.descr, d.descr_len);
		return npy_fail(in, src, ALCM_E_UNSUPPORTED, prefix + (size_t)(d.descr - h),
		                "dtype '%s' is not supported (only bool, integer and float16/32/64 "
		                "arrays; not object, string, complex, datetime or structured dtypes)",
		                q);
	}
	return ALCM_OK;
}

int alcm_io_npy_read_header(alcm_input *in, const alcm_io_npy_src *src, alcm_io_npy_info *info)
{
	uint8_t pre[ALCM_IO_NPY_PREFIX_MAX];
	memset(info, 0, sizeof(*info));
	if (src->size < 10)
		return npy_fail(in, src, ALCM_E_CORRUPT, 0,
		                "%llu bytes are too few for a .npy header",
		                (unsigned long long)src->size);
	int rc = src->read(in, src->ctx, pre, 8);
	if (rc)
		return rc;
	if (memcmp(pre, "\x93" "NUMPY", 6) != 0)
		return npy_fail(in, src, ALCM_E_CORRUPT, 0, "bad .npy magic");
	unsigned major = pre[6], minor = pre[7];
	if (major < 1 || major > 3 || minor != 0)
		return npy_fail(in, src, ALCM_E_UNSUPPORTED, 6, ".npy format version %u.%u", major,
		                minor);
	size_t lb = major == 1 ? 2 : 4;
	size_t prefix = 8 + lb;
	if (src->size < prefix)
		return npy_fail(in, src, ALCM_E_CORRUPT, 8, "truncated .npy header length");
	rc = src->read(in, src->ctx, pre + 8, lb);
	if (rc)
		return rc;
	uint64_t hlen = major == 1 ? alcm_load16(pre + 8) : alcm_load32(pre + 8);
	if (hlen > ALCM_IO_NPY_HEADER_MAX)
		return npy_fail(in, src, ALCM_E_LIMIT, 8, "header length %llu exceeds %u",
		                (unsigned long long)hlen, ALCM_IO_NPY_HEADER_MAX);
	if (hlen > src->size - prefix)
		return npy_fail(in, src, ALCM_E_CORRUPT, 8,
		                "header length %llu runs past the end of the %llu-byte .npy",
		                (unsigned long long)hlen, (unsigned long long)src->size);
	uint8_t *h = alcm_mem_alloc(&in->alloc, (size_t)hlen);
	if (!h)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory for a .npy header");
	rc = src->read(in, src->ctx, h, (size_t)hlen);
	if (rc == ALCM_OK)
		rc = parse_header(in, src, h, (size_t)hlen, prefix, info);
	alcm_mem_free(&in->alloc, h);
	if (rc)
		return rc;
	char why[ALCM_DETAIL_MAX];
	info->data_off = prefix + hlen;
	rc = alcm_io_shape_bytes(&in->lim, info->dtype, info->ndim, info->shape, &info->nbytes,
	                         why);
	if (rc)
		return npy_fail(in, src, rc, prefix, "shape: %s", why);
	uint64_t have = src->size - info->data_off;
	if (have != info->nbytes)
		return npy_fail(in, src, ALCM_E_CORRUPT, info->data_off,
		                "%s: %llu bytes of data, the shape and dtype need %llu",
		                have < info->nbytes ? "truncated data" : "trailing bytes",
		                (unsigned long long)have, (unsigned long long)info->nbytes);
	return ALCM_OK;
}

static void byte_swap(uint8_t *p, uint64_t nbytes, size_t isz)
{
	for (uint64_t i = 0; i + isz <= nbytes; i += isz)
		for (size_t a = 0, b = isz - 1; a < b; a++, b--) {
			uint8_t t = p[i + a];
			p[i + a] = p[i + b];
			p[i + b] = t;
		}
}

/* Fortran order is C order of the reversed shape: walk the C index with an odometer and
 * follow the Fortran offset alongside. */
static void fortran_to_c(uint8_t *dst, const uint8_t *src, size_t isz, uint32_t ndim,
                         const uint64_t *shape)
{
	uint64_t fstride[ALCM_MAX_NDIM], idx[ALCM_MAX_NDIM] = {0};
	uint64_t total = 1, foff = 0;
	for (uint32_t k = 0; k < ndim; k++) {
		fstride[k] = total;
		total *= shape[k];
	}
	for (uint64_t c = 0; c < total; c++) {
		memcpy(dst + c * isz, src + foff * isz, isz);
		for (int k = (int)ndim - 1; k >= 0; k--) {
			if (++idx[k] < shape[k]) {
				foff += fstride[k];
				break;
			}
			foff -= fstride[k] * (shape[k] - 1);
			idx[k] = 0;
		}
	}
}

int alcm_io_npy_fixup(alcm_input *in, const alcm_io_npy_info *info)
{
	size_t isz = alcm_dtype_size(info->dtype);
	if (info->swap && isz > 1)
		byte_swap(in->buf, info->nbytes, isz);
	unsigned big = 0;
	for (uint32_t k = 0; k < info->ndim; k++)
		big += info->shape[k] > 1;
	if (!info->fortran || big < 2 || info->nbytes == 0)
		return ALCM_OK;
	uint8_t *dst = alcm_mem_alloc(&in->alloc, (size_t)info->nbytes);
	if (!dst)
		return alcm_io_fail(in, ALCM_E_NOMEM,
		                    "out of memory for %llu bytes to transpose a Fortran-order array",
		                    (unsigned long long)info->nbytes);
	fortran_to_c(dst, in->buf, isz, info->ndim, info->shape);
	alcm_mem_free(&in->alloc, in->buf);
	in->buf = dst;
	in->buf_cap = (size_t)info->nbytes;
	return ALCM_OK;
}

size_t alcm_io_npy_build_header(uint8_t *out, int dtype, uint32_t ndim, const uint64_t *shape)
{
	const char *descr = alcm_io_npy_descr(dtype);
	if (!descr || ndim > ALCM_MAX_NDIM)
		return 0;
	char d[ALCM_IO_NPY_HEADER_BUF];
	int n = snprintf(d, sizeof(d), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
	for (uint32_t k = 0; k < ndim; k++)
		n += snprintf(d + n, sizeof(d) - (size_t)n, k ? ", %llu" : "%llu",
		              (unsigned long long)shape[k]);
	n += snprintf(d + n, sizeof(d) - (size_t)n, "%s), }", ndim == 1 ? "," : "");
	if (ndim > 0) {
		/* numpy leaves room to grow axis 0 in place: 21 digits minus those it has. */
		char tmp[24];
		int digits = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)shape[0]);
		for (int i = digits; i < 21; i++)
			d[n++] = ' ';
	}
	size_t hlen = (size_t)n + 1;
	size_t pad = 64 - ((10 + hlen) % 64);
	memcpy(out, "\x93" "NUMPY\x01\x00", 8);
	alcm_store16(out + 8, (uint16_t)(hlen + pad));
	memcpy(out + 10, d, (size_t)n);
	memset(out + 10 + n, ' ', pad);
	out[10 + (size_t)n + pad] = '\n';
	return 10 + hlen + pad;
}

/* ---- a lone .npy ---- */

struct npy_in {
	alcm_io_npy_info info;
	uint64_t pos;
	int done;
};

static int file_src_read(alcm_input *in, void *ctx, void *dst, size_t n)
{
	uint64_t *pos = ctx;
	int rc = alcm_io_read(in, dst, n, *pos);
	if (rc == ALCM_OK)
		*pos += n;
	return rc;
}

/* The array's name, dtype, shape and size into *t (not its data); it is then given. */
static void npy_fill(alcm_input *in, struct npy_in *st, alcm_tensor *t, int *has)
{
	st->done = 1;
	t->name = in->base;
	t->name_len = strlen(in->base);
	t->dtype = st->info.dtype;
	t->ndim = st->info.ndim;
	memcpy(t->shape, st->info.shape, sizeof(t->shape));
	t->nbytes = st->info.nbytes;
	*has = 1;
}

static int npy_next(alcm_input *in, alcm_tensor *t, int *has)
{
	struct npy_in *st = in->state;
	if (st->done)
		return ALCM_OK;
	int rc = alcm_io_reserve(in, st->info.nbytes);
	if (rc == ALCM_OK)
		rc = alcm_io_read(in, in->buf, (size_t)st->info.nbytes, st->info.data_off);
	if (rc == ALCM_OK)
		rc = alcm_io_npy_fixup(in, &st->info);
	if (rc)
		return rc;
	npy_fill(in, st, t, has);
	t->data = in->buf;
	return ALCM_OK;
}

/* A C-order little-endian .npy is read in pieces; the others whole (transposed, swapped). */
static int npy_begin_in(alcm_input *in, alcm_tensor *t, int *has)
{
	struct npy_in *st = in->state;
	if (st->done || st->info.fortran || st->info.swap)
		return npy_next(in, t, has);
	npy_fill(in, st, t, has);
	return ALCM_OK;
}

static int npy_piece(alcm_input *in, void *dst, uint64_t at, size_t n, int last)
{
	struct npy_in *st = in->state;
	(void)last;
	return alcm_io_read(in, dst, n, st->info.data_off + at);
}

static void npy_free(alcm_input *in)
{
	alcm_mem_free(&in->alloc, in->state);
	in->state = NULL;
}

static const alcm_io_in_ops npy_in_ops = {npy_next, npy_free, npy_begin_in, npy_piece};

int alcm_io_npy_open(alcm_input *in)
{
	struct npy_in *st = alcm_mem_calloc(&in->alloc, 1, sizeof(*st));
	if (!st)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	in->state = st;
	in->ops = &npy_in_ops;
	size_t blen = strlen(in->base);
	if (blen > in->lim.max_name_bytes)
		return alcm_io_fail(in, ALCM_E_LIMIT, "tensor name of %zu bytes exceeds the limit of %u",
		                    blen, (unsigned)in->lim.max_name_bytes);
	alcm_io_npy_src src = {file_src_read, &st->pos, in->size, in->base, blen, UINT64_MAX};
	return alcm_io_npy_read_header(in, &src, &st->info);
}

/* ---- writer ---- */

static int npy_plan(alcm_output *o)
{
	if (o->plan_count != 1)
		return alcm_io_out_fail(o, ALCM_E_ARG,
		                        "a .npy file holds exactly one tensor, the plan has %zu "
		                        "(write .npz for several)", o->plan_count);
	if (!alcm_io_npy_descr(o->plan[0].dtype))
		return alcm_io_npy_refuse_bf16(o, o->plan[0].name, o->plan[0].name_len);
	return ALCM_OK;
}

int alcm_io_npy_refuse_bf16(alcm_output *o, const char *name, size_t name_len)
{
	char q[ALCM_IO_QUOTE];
	return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
	                        "tensor '%s': bfloat16 has no numpy dtype; write .safetensors to "
	                        "keep it as is", alcm_io_quote(q, name, name_len));
}

/* The .npy header of the file's one tensor; its data follow (npy_write, or in pieces). */
static int npy_begin(alcm_output *o, const alcm_tensor *t)
{
	uint8_t hdr[ALCM_IO_NPY_HEADER_BUF];
	if (o->written)
		return alcm_io_out_fail(o, ALCM_E_STATE,
		                        "a .npy file holds one tensor; write .npz for several");
	size_t n = alcm_io_npy_build_header(hdr, t->dtype, t->ndim, t->shape);
	if (!n)
		return alcm_io_npy_refuse_bf16(o, t->name, t->name_len);
	return alcm_io_out_write(o, hdr, n);
}

static int npy_write(alcm_output *o, const alcm_tensor *t)
{
	int rc = npy_begin(o, t);
	if (rc == ALCM_OK && t->nbytes)
		rc = alcm_io_out_write(o, t->data, (size_t)t->nbytes);
	return rc;
}

static int npy_append(alcm_output *o, const void *p, size_t n)
{
	return alcm_io_out_write(o, p, n);
}

static int npy_commit(alcm_output *o)
{
	if (!o->written)
		return alcm_io_out_fail(o, ALCM_E_STATE, "no tensor written: a .npy file holds one");
	return ALCM_OK;
}

static const alcm_io_out_ops npy_out_ops = {npy_plan,  npy_write,  npy_commit, NULL,
                                             npy_begin, npy_append, NULL};

int alcm_io_npy_out(alcm_output *o)
{
	o->ops = &npy_out_ops;
	return ALCM_OK;
}
