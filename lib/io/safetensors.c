/*
 * .safetensors: a u64 header length N, N bytes of JSON, then the data buffer.
 *
 * The reader is as strict as huggingface/safetensors (safetensors/src/tensor.rs): N at most
 * 100,000,000, UTF-8 JSON starting with '{', every tensor with dtype, shape and
 * data_offsets, offsets that tile the data buffer exactly (no gap, overlap or trailing
 * byte), sizes that match shape * dtype. It refuses more than the reference where the
 * reference silently picks one reading: duplicate keys are an error. Unknown fields inside
 * a tensor entry are skipped, as serde does.
 *
 * The writer lays tensors out like the reference: by descending dtype order of its Dtype
 * enum, then by name, with the header padded with spaces to a multiple of 8.
 */
#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* The reference implementation's MAX_HEADER_SIZE. */
#define ST_HEADER_MAX 100000000u

static const struct {
	const char *name;
	int dtype;
	int rank; /* position in the reference's Dtype enum, which orders the layout */
} st_dtypes[] = {
	{"BOOL", ALCM_DTYPE_BOOL, 0}, {"U8", ALCM_DTYPE_U8, 1},     {"I8", ALCM_DTYPE_I8, 2},
	{"I16", ALCM_DTYPE_I16, 5},   {"U16", ALCM_DTYPE_U16, 6},   {"F16", ALCM_DTYPE_F16, 7},
	{"BF16", ALCM_DTYPE_BF16, 8}, {"I32", ALCM_DTYPE_I32, 9},   {"U32", ALCM_DTYPE_U32, 10},
	{"F32", ALCM_DTYPE_F32, 11},  {"F64", ALCM_DTYPE_F64, 12},  {"I64", ALCM_DTYPE_I64, 13},
	{"U64", ALCM_DTYPE_U64, 14},
};
#define ST_NDTYPES (sizeof(st_dtypes) / sizeof(st_dtypes[0]))

static int st_dtype_index(int dtype)
{
	for (size_t i = 0; i < ST_NDTYPES; i++)
		if (st_dtypes[i].dtype == dtype)
			return (int)i;
	return -1;
}

/* ---- reader ---- */

struct st_entry {
	const uint8_t *name;
	size_t name_len;
	int dtype;
	uint32_t ndim;
	size_t shape_at;        /* index into shapes */
	uint64_t begin, end;
	uint64_t nbytes;
	size_t json_at;         /* header offset of the entry's key */
	size_t offsets_at;      /* header offset of its data_offsets */
};

struct st_in {
	uint8_t *hdr;
	uint64_t hlen;
	uint8_t *names;         /* decoded names; never more than the header's bytes */
	size_t names_used;
	struct st_entry *e;
	size_t n, cap;
	uint64_t *shapes;
	size_t nshapes, shapes_cap;
	uint64_t data_start;
	size_t next;
};

__attribute__((format(printf, 5, 6)))
static int st_fail(alcm_input *in, const struct st_entry *e, int status, size_t hpos,
                   const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX], q[ALCM_IO_QUOTE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!e)
		return alcm_io_fail(in, status, "%s at header offset %zu", msg, hpos);
	return alcm_io_fail(in, status, "tensor '%s': %s at header offset %zu",
	                    alcm_io_quote(q, (const char *)e->name, e->name_len), msg, hpos);
}

static int json_fail(alcm_input *in, const struct st_entry *e, const alcm_io_json *j)
{
	return st_fail(in, e, j->status, j->err_pos, "%s", j->err);
}

/* Grows an array to hold `need` items; @return the array, or NULL (detail set). */
static void *grow(alcm_input *in, void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	size_t bytes;
	void *q = NULL;
	if (!__builtin_mul_overflow(c, size, &bytes))
		q = alcm_mem_realloc(&in->alloc, p, bytes);
	if (!q) {
		alcm_io_fail(in, ALCM_E_NOMEM, "out of memory parsing the header");
		return NULL;
	}
	*cap = c;
	return q;
}

static int parse_dtype(alcm_input *in, struct st_entry *e, alcm_io_json *j)
{
	uint8_t v[16];
	size_t vl;
	alcm_io_json_ws(j);
	size_t at = j->pos;
	if (alcm_io_json_string(j, v, sizeof(v), &vl))
		return json_fail(in, e, j);
	for (size_t i = 0; i < ST_NDTYPES && vl <= sizeof(v); i++)
		if (vl == strlen(st_dtypes[i].name) && memcmp(v, st_dtypes[i].name, vl) == 0) {
			e->dtype = st_dtypes[i].dtype;
			return ALCM_OK;
		}
	char q[ALCM_IO_QUOTE];
	alcm_io_quote(q, (const char *)j->p + at + 1, j->pos - at - 2);
	return st_fail(in, e, ALCM_E_UNSUPPORTED, at, "dtype '%s' is not supported", q);
}

static int parse_shape(alcm_input *in, struct st_in *st, struct st_entry *e, alcm_io_json *j)
{
	if (alcm_io_json_expect(j, '['))
		return json_fail(in, e, j);
	e->shape_at = st->nshapes;
	e->ndim = 0;
	if (alcm_io_json_peek(j) == ']') {
		j->pos++;
		return ALCM_OK;
	}
	for (;;) {
		uint64_t v = 0;
		if (e->ndim >= in->lim.max_ndim)
			return st_fail(in, e, ALCM_E_LIMIT, j->pos,
			               "the shape has more than %u dimensions",
			               (unsigned)in->lim.max_ndim);
		if (alcm_io_json_u64(j, &v))
			return json_fail(in, e, j);
		uint64_t *sh = grow(in, st->shapes, &st->shapes_cap, st->nshapes + 1,
		                    sizeof(*st->shapes));
		if (!sh)
			return ALCM_E_NOMEM;
		st->shapes = sh;
		st->shapes[st->nshapes++] = v;
		e->ndim++;
		int c = alcm_io_json_peek(j);
		j->pos++;
		if (c == ']')
			return ALCM_OK;
		if (c != ',') {
			j->pos--;
			alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or ']' in the shape");
			return json_fail(in, e, j);
		}
	}
}

static int parse_offsets(alcm_input *in, struct st_entry *e, alcm_io_json *j)
{
	alcm_io_json_ws(j);
	e->offsets_at = j->pos;
	if (alcm_io_json_expect(j, '[') || alcm_io_json_u64(j, &e->begin) ||
	    alcm_io_json_expect(j, ',') || alcm_io_json_u64(j, &e->end) ||
	    alcm_io_json_expect(j, ']'))
		return json_fail(in, e, j);
	if (e->end < e->begin)
		return st_fail(in, e, ALCM_E_CORRUPT, e->offsets_at,
		               "data_offsets [%llu, %llu] out of order", (unsigned long long)e->begin,
		               (unsigned long long)e->end);
	return ALCM_OK;
}

static int parse_entry(alcm_input *in, struct st_in *st, struct st_entry *e, alcm_io_json *j)
{
	static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
	unsigned seen = 0;
	if (alcm_io_json_expect(j, '{'))
		return json_fail(in, e, j);
	if (alcm_io_json_peek(j) == '}') {
		j->pos++;
	} else {
		for (;;) {
			uint8_t k[16];
			size_t kl;
			alcm_io_json_ws(j);
			size_t at = j->pos;
			if (alcm_io_json_string(j, k, sizeof(k), &kl) || alcm_io_json_expect(j, ':'))
				return json_fail(in, e, j);
			int which = -1;
			for (int i = 0; i < 3; i++)
				if (kl == strlen(fields[i]) && memcmp(k, fields[i], kl) == 0)
					which = i;
			if (which >= 0 && (seen & (1u << which)))
				return st_fail(in, e, ALCM_E_CORRUPT, at, "duplicate field \"%s\"",
				               fields[which]);
			int rc;
			if (which == 0)
				rc = parse_dtype(in, e, j);
			else if (which == 1)
				rc = parse_shape(in, st, e, j);
			else if (which == 2)
				rc = parse_offsets(in, e, j);
			else
				rc = alcm_io_json_skip(j, ALCM_IO_JSON_DEPTH - 2) ? json_fail(in, e, j) : 0;
			if (rc)
				return rc;
			if (which >= 0)
				seen |= 1u << which;
			int c = alcm_io_json_peek(j);
			if (c == ',') {
				j->pos++;
				continue;
			}
			if (c == '}') {
				j->pos++;
				break;
			}
			alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or '}'");
			return json_fail(in, e, j);
		}
	}
	for (int i = 0; i < 3; i++)
		if (!(seen & (1u << i)))
			return st_fail(in, e, ALCM_E_CORRUPT, e->json_at, "no \"%s\" field", fields[i]);
	return ALCM_OK;
}

/* A __metadata__ pair becomes the record user.K (spec 6.1), in the file's order. */
static int keep_meta(alcm_input *in, alcm_io_json *j, const uint8_t *k, size_t klen, size_t kat,
                     size_t vat, size_t vlen)
{
	char q[ALCM_IO_QUOTE];
	if (!alcm_io_user_key_ok(k, klen))
		return st_fail(in, NULL, ALCM_E_UNSUPPORTED, kat,
		               "__metadata__ key '%s' cannot be kept (a NUL character, or longer than "
		               "65530 bytes)", alcm_io_quote(q, (const char *)k, klen));
	uint8_t *key = alcm_mem_alloc(&in->alloc, klen + 5);
	uint8_t *v = alcm_mem_alloc(&in->alloc, vlen ? vlen : 1);
	int rc = ALCM_OK;
	if (!key || !v) {
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
		goto out;
	}
	size_t end = j->pos;
	j->pos = vat;
	alcm_io_json_string(j, v, vlen, &vlen);
	j->pos = end;
	memcpy(key, ALCM_IO_REC_USER, 5);
	memcpy(key + 5, k, klen);
	if (alcm_io_meta_put(&in->alloc, &in->meta, (const char *)key, klen + 5, v, vlen))
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
out:
	alcm_mem_free(&in->alloc, key);
	alcm_mem_free(&in->alloc, v);
	return rc;
}

/* "__metadata__": null or an object of string values; keys must be distinct. */
static int parse_meta(alcm_input *in, struct st_in *st, alcm_io_json *j)
{
	alcm_io_name_ref *keys = NULL;
	size_t nkeys = 0, cap = 0;
	int rc = ALCM_OK;
	if (alcm_io_json_peek(j) == 'n') {
		if (j->len - j->pos < 4 || memcmp(j->p + j->pos, "null", 4) != 0) {
			alcm_io_json_error(j, ALCM_E_CORRUPT, "__metadata__ is not an object");
			return json_fail(in, NULL, j);
		}
		j->pos += 4;
		return ALCM_OK;
	}
	if (alcm_io_json_expect(j, '{'))
		return json_fail(in, NULL, j);
	if (alcm_io_json_peek(j) == '}') {
		j->pos++;
		return ALCM_OK;
	}
	for (;;) {
		size_t len, vlen;
		alcm_io_json_ws(j);
		size_t kat = j->pos;
		uint8_t *dst = st->names + st->names_used;
		if (alcm_io_json_string(j, dst, st->hlen - st->names_used, &len) ||
		    alcm_io_json_expect(j, ':')) {
			rc = json_fail(in, NULL, j);
			goto out;
		}
		if (len > st->hlen - st->names_used) {
			rc = st_fail(in, NULL, ALCM_E_CORRUPT, kat, "key too long");
			goto out;
		}
		if (alcm_io_json_peek(j) != '"') {
			rc = st_fail(in, NULL, ALCM_E_CORRUPT, j->pos,
			             "__metadata__ values must be strings");
			goto out;
		}
		size_t vat = j->pos;
		if (alcm_io_json_string(j, NULL, 0, &vlen)) {
			rc = json_fail(in, NULL, j);
			goto out;
		}
		if ((rc = keep_meta(in, j, dst, len, kat, vat, vlen)))
			goto out;
		st->names_used += len;
		alcm_io_name_ref *nk = grow(in, keys, &cap, nkeys + 1, sizeof(*keys));
		if (!nk) {
			rc = ALCM_E_NOMEM;
			goto out;
		}
		keys = nk;
		keys[nkeys++] = (alcm_io_name_ref){dst, len, kat};
		int c = alcm_io_json_peek(j);
		if (c == ',') {
			j->pos++;
			continue;
		}
		if (c == '}') {
			j->pos++;
			break;
		}
		alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or '}' in __metadata__");
		rc = json_fail(in, NULL, j);
		goto out;
	}
	size_t d = alcm_io_names_dup(keys, nkeys);
	if (d != SIZE_MAX) {
		char q[ALCM_IO_QUOTE];
		rc = st_fail(in, NULL, ALCM_E_CORRUPT, keys[d].idx, "duplicate __metadata__ key '%s'",
		             alcm_io_quote(q, (const char *)keys[d].p, keys[d].len));
	}
out:
	alcm_mem_free(&in->alloc, keys);
	return rc;
}

static int parse_header(alcm_input *in, struct st_in *st)
{
	alcm_io_json j = {.p = st->hdr, .len = (size_t)st->hlen, .pos = 1};
	int seen_meta = 0;
	if (alcm_io_json_peek(&j) == '}') {
		j.pos++;
	} else {
		for (;;) {
			size_t len;
			alcm_io_json_ws(&j);
			size_t at = j.pos;
			uint8_t *dst = st->names + st->names_used;
			if (alcm_io_json_string(&j, dst, st->hlen - st->names_used, &len) ||
			    alcm_io_json_expect(&j, ':'))
				return json_fail(in, NULL, &j);
			/* Cannot happen: a decoded string is never longer than its JSON text. */
			if (len > st->hlen - st->names_used)
				return st_fail(in, NULL, ALCM_E_CORRUPT, at, "name too long");
			int rc;
			if (len == 12 && memcmp(dst, "__metadata__", 12) == 0) {
				if (seen_meta)
					return st_fail(in, NULL, ALCM_E_CORRUPT, at,
					               "duplicate key \"__metadata__\"");
				seen_meta = 1;
				rc = parse_meta(in, st, &j);
			} else {
				if (st->n >= in->lim.max_tensors)
					return st_fail(in, NULL, ALCM_E_LIMIT, at,
					               "more than %u tensors",
					               (unsigned)in->lim.max_tensors);
				struct st_entry *ne = grow(in, st->e, &st->cap, st->n + 1,
				                           sizeof(*st->e));
				if (!ne)
					return ALCM_E_NOMEM;
				st->e = ne;
				struct st_entry *e = &st->e[st->n++];
				memset(e, 0, sizeof(*e));
				e->name = dst;
				e->name_len = len;
				e->json_at = at;
				st->names_used += len;
				if (len > in->lim.max_name_bytes)
					return st_fail(in, e, ALCM_E_LIMIT, at,
					               "name of %zu bytes exceeds the limit of %u", len,
					               (unsigned)in->lim.max_name_bytes);
				rc = parse_entry(in, st, e, &j);
			}
			if (rc)
				return rc;
			int c = alcm_io_json_peek(&j);
			if (c == ',') {
				j.pos++;
				continue;
			}
			if (c == '}') {
				j.pos++;
				break;
			}
			alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or '}'");
			return json_fail(in, NULL, &j);
		}
	}
	alcm_io_json_ws(&j);
	if (j.pos != j.len)
		return st_fail(in, NULL, ALCM_E_CORRUPT, j.pos,
		               "unexpected bytes after the header object");
	return ALCM_OK;
}

static int by_offsets(const void *a, const void *b)
{
	const struct st_entry *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->json_at < y->json_at ? -1 : (x->json_at > y->json_at);
}

static int validate(alcm_input *in, struct st_in *st)
{
	char why[ALCM_DETAIL_MAX];
	alcm_io_name_ref *refs = alcm_mem_calloc(&in->alloc, st->n ? st->n : 1, sizeof(*refs));
	if (!refs)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < st->n; i++)
		refs[i] = (alcm_io_name_ref){st->e[i].name, st->e[i].name_len, i};
	size_t d = alcm_io_names_dup(refs, st->n);
	size_t di = d != SIZE_MAX ? refs[d].idx : 0;
	alcm_mem_free(&in->alloc, refs);
	if (d != SIZE_MAX)
		return st_fail(in, &st->e[di], ALCM_E_CORRUPT, st->e[di].json_at,
		               "duplicate tensor name");
	for (size_t i = 0; i < st->n; i++) {
		struct st_entry *e = &st->e[i];
		/* All-scalar files have no shape array at all: no pointer arithmetic on NULL. */
		const uint64_t *shape = st->shapes ? st->shapes + e->shape_at : NULL;
		int rc = alcm_io_shape_bytes(&in->lim, e->dtype, e->ndim, shape, &e->nbytes, why);
		if (rc)
			return st_fail(in, e, rc, e->json_at, "shape: %s", why);
		if (e->end - e->begin != e->nbytes)
			return st_fail(in, e, ALCM_E_CORRUPT, e->offsets_at,
			               "data_offsets [%llu, %llu] span %llu bytes, shape and dtype need "
			               "%llu", (unsigned long long)e->begin, (unsigned long long)e->end,
			               (unsigned long long)(e->end - e->begin),
			               (unsigned long long)e->nbytes);
	}
	if (st->n > 1)
		qsort(st->e, st->n, sizeof(*st->e), by_offsets);
	uint64_t data_len = in->size - st->data_start, start = 0;
	for (size_t i = 0; i < st->n; i++) {
		const struct st_entry *e = &st->e[i];
		if (e->begin < start)
			return st_fail(in, e, ALCM_E_CORRUPT, e->offsets_at,
			               "data_offsets [%llu, %llu] overlap the previous tensor, which "
			               "ends at %llu", (unsigned long long)e->begin,
			               (unsigned long long)e->end, (unsigned long long)start);
		if (e->begin > start)
			return st_fail(in, e, ALCM_E_CORRUPT, e->offsets_at,
			               "data_offsets [%llu, %llu] leave a gap of %llu bytes after %llu",
			               (unsigned long long)e->begin, (unsigned long long)e->end,
			               (unsigned long long)(e->begin - start),
			               (unsigned long long)start);
		if (e->end > data_len)
			return st_fail(in, e, ALCM_E_CORRUPT, e->offsets_at,
			               "data_offsets [%llu, %llu] run past the end of the %llu-byte "
			               "data buffer", (unsigned long long)e->begin,
			               (unsigned long long)e->end, (unsigned long long)data_len);
		start = e->end;
	}
	if (start != data_len)
		return alcm_io_fail(in, ALCM_E_CORRUPT,
		                    "%llu trailing bytes after the last tensor at offset %llu",
		                    (unsigned long long)(data_len - start),
		                    (unsigned long long)(st->data_start + start));
	return ALCM_OK;
}

/* Entry e's name, dtype, shape and size into *t (not its data). */
static void st_fill(const struct st_in *st, const struct st_entry *e, alcm_tensor *t, int *has)
{
	t->name = (const char *)e->name;
	t->name_len = e->name_len;
	t->dtype = e->dtype;
	t->ndim = e->ndim;
	if (e->ndim)
		memcpy(t->shape, st->shapes + e->shape_at, sizeof(uint64_t) * e->ndim);
	t->nbytes = e->nbytes;
	*has = 1;
}

static int st_next(alcm_input *in, alcm_tensor *t, int *has)
{
	struct st_in *st = in->state;
	if (st->next >= st->n)
		return ALCM_OK;
	const struct st_entry *e = &st->e[st->next];
	int rc = alcm_io_reserve(in, e->nbytes);
	if (rc == ALCM_OK)
		rc = alcm_io_read(in, in->buf, (size_t)e->nbytes, st->data_start + e->begin);
	if (rc)
		return rc;
	st->next++;
	st_fill(st, e, t, has);
	t->data = in->buf;
	return ALCM_OK;
}

static int st_begin_in(alcm_input *in, alcm_tensor *t, int *has)
{
	struct st_in *st = in->state;
	if (st->next >= st->n)
		return ALCM_OK;
	st_fill(st, &st->e[st->next++], t, has);
	return ALCM_OK;
}

static int st_piece(alcm_input *in, void *dst, uint64_t at, size_t n, int last)
{
	struct st_in *st = in->state;
	(void)last;
	return alcm_io_read(in, dst, n, st->data_start + st->e[st->next - 1].begin + at);
}

static void st_free(alcm_input *in)
{
	struct st_in *st = in->state;
	if (!st)
		return;
	alcm_mem_free(&in->alloc, st->hdr);
	alcm_mem_free(&in->alloc, st->names);
	alcm_mem_free(&in->alloc, st->e);
	alcm_mem_free(&in->alloc, st->shapes);
	alcm_mem_free(&in->alloc, st);
	in->state = NULL;
}

static const alcm_io_in_ops st_in_ops = {st_next, st_free, st_begin_in, st_piece};

size_t alcm_io_st_count(const alcm_input *in)
{
	const struct st_in *st = in->state;
	return in->ops == &st_in_ops && st ? st->n : 0;
}

const uint8_t *alcm_io_st_name(const alcm_input *in, size_t i, size_t *len)
{
	const struct st_in *st = in->state;
	*len = st->e[i].name_len;
	return st->e[i].name;
}

int alcm_io_st_open(alcm_input *in)
{
	uint8_t len8[8];
	struct st_in *st = alcm_mem_calloc(&in->alloc, 1, sizeof(*st));
	if (!st)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	in->state = st;
	in->ops = &st_in_ops;
	if (in->size < 8)
		return alcm_io_fail(in, ALCM_E_CORRUPT,
		                    "%llu bytes are too few for a safetensors header length",
		                    (unsigned long long)in->size);
	int rc = alcm_io_read(in, len8, 8, 0);
	if (rc)
		return rc;
	uint64_t n = alcm_load64(len8);
	if (n > ST_HEADER_MAX)
		return alcm_io_fail(in, ALCM_E_LIMIT,
		                    "header length %llu at offset 0 exceeds the cap of %u bytes",
		                    (unsigned long long)n, ST_HEADER_MAX);
	if (n > in->lim.max_meta_bytes)
		return alcm_io_fail(in, ALCM_E_LIMIT,
		                    "header length %llu at offset 0 exceeds max_meta_bytes (%llu)",
		                    (unsigned long long)n, (unsigned long long)in->lim.max_meta_bytes);
	if (n > in->size - 8)
		return alcm_io_fail(in, ALCM_E_CORRUPT,
		                    "header length %llu at offset 0 runs past the end of the "
		                    "%llu-byte file", (unsigned long long)n,
		                    (unsigned long long)in->size);
	if (n < 2)
		return alcm_io_fail(in, ALCM_E_CORRUPT, "header length %llu at offset 0 is too short",
		                    (unsigned long long)n);
	st->hlen = n;
	st->data_start = 8 + n;
	st->hdr = alcm_mem_alloc(&in->alloc, (size_t)n);
	st->names = alcm_mem_alloc(&in->alloc, (size_t)n);
	if (!st->hdr || !st->names)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory for a %llu-byte header",
		                    (unsigned long long)n);
	rc = alcm_io_read(in, st->hdr, (size_t)n, 8);
	if (rc)
		return rc;
	size_t bad;
	if (!alcm_io_utf8_valid(st->hdr, (size_t)n, &bad))
		return st_fail(in, NULL, ALCM_E_CORRUPT, bad, "header is not valid UTF-8");
	if (st->hdr[0] != '{')
		return st_fail(in, NULL, ALCM_E_CORRUPT, 0, "header does not start with '{'");
	rc = parse_header(in, st);
	if (rc == ALCM_OK)
		rc = validate(in, st);
	return rc;
}

/* ---- writer ---- */

struct st_out {
	uint64_t data_start;
};

struct st_order {
	int rank;
	const alcm_io_entry *e;
};

static int by_layout(const void *a, const void *b)
{
	const struct st_order *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank > y->rank ? -1 : 1;
	size_t n = x->e->name_len < y->e->name_len ? x->e->name_len : y->e->name_len;
	int c = n ? memcmp(x->e->name, y->e->name, n) : 0;
	if (c)
		return c;
	return x->e->name_len < y->e->name_len ? -1 : (x->e->name_len > y->e->name_len);
}

/*
 * "{" and the "__metadata__" object made of the user.K records, first as the reference
 * writes it, in the records' order and escaped as serde_json does: a file written by the
 * reference comes back byte for byte.
 */
static int put_metadata(alcm_output *o, alcm_io_sb *b)
{
	char q[ALCM_IO_QUOTE];
	int any = 0;
	alcm_io_sb_put(b, "{", 1);
	for (size_t i = 0; i < o->meta.n; i++) {
		const alcm_io_meta *m = &o->meta.m[i];
		size_t kl = strlen(m->key);
		if (kl < 5 || memcmp(m->key, ALCM_IO_REC_USER, 5) != 0)
			continue;
		if (!alcm_io_utf8_valid((const uint8_t *)m->key, kl, NULL) ||
		    !alcm_io_utf8_valid(m->val, m->len, NULL))
			return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
			                        "metadata '%s' is not UTF-8 text, which a JSON header "
			                        "cannot hold", alcm_io_quote(q, m->key, kl));
		alcm_io_sb_str(b, any ? "," : "\"__metadata__\":{");
		alcm_io_json_put_string(b, m->key + 5, kl - 5);
		alcm_io_sb_put(b, ":", 1);
		alcm_io_json_put_string(b, (const char *)m->val, m->len);
		any = 1;
	}
	if (any)
		alcm_io_sb_put(b, "}", 1);
	return ALCM_OK;
}

static int st_plan(alcm_output *o)
{
	struct st_out *so = o->state;
	char q[ALCM_IO_QUOTE];
	for (size_t i = 0; i < o->plan_count; i++)
		if (!alcm_io_utf8_valid((const uint8_t *)o->plan[i].name, o->plan[i].name_len, NULL))
			return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
			                        "tensor name '%s' is not valid UTF-8, which a JSON "
			                        "header cannot hold",
			                        alcm_io_quote(q, o->plan[i].name, o->plan[i].name_len));
	size_t n = o->plan_count;
	struct st_order *ord = alcm_mem_calloc(&o->alloc, n ? n : 1, sizeof(*ord));
	if (!ord)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		ord[i] = (struct st_order){st_dtypes[st_dtype_index(o->plan[i].dtype)].rank,
		                           &o->plan[i]};
	qsort(ord, n, sizeof(*ord), by_layout);
	alcm_io_sb b = {.a = &o->alloc};
	uint64_t off = 0;
	int rc = put_metadata(o, &b);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		alcm_io_entry *e = (alcm_io_entry *)ord[i].e;
		if (alcm_add_u64(off, e->nbytes, &e->offset)) {
			rc = alcm_io_out_fail(o, ALCM_E_ARG, "tensors add up to more than 2^64 bytes");
			goto out;
		}
		uint64_t begin = off;
		off = e->offset;
		e->offset = begin;
		if (b.len > 1)
			alcm_io_sb_put(&b, ",", 1);
		alcm_io_json_put_string(&b, e->name, e->name_len);
		alcm_io_sb_str(&b, ":{\"dtype\":\"");
		alcm_io_sb_str(&b, st_dtypes[st_dtype_index(e->dtype)].name);
		alcm_io_sb_str(&b, "\",\"shape\":[");
		for (uint32_t k = 0; k < e->ndim; k++) {
			if (k)
				alcm_io_sb_put(&b, ",", 1);
			alcm_io_sb_u64(&b, e->shape[k]);
		}
		alcm_io_sb_str(&b, "],\"data_offsets\":[");
		alcm_io_sb_u64(&b, begin);
		alcm_io_sb_put(&b, ",", 1);
		alcm_io_sb_u64(&b, off);
		alcm_io_sb_str(&b, "]}");
	}
	alcm_io_sb_put(&b, "}", 1);
	while (!b.oom && b.len % 8)
		alcm_io_sb_put(&b, " ", 1);
	if (b.oom) {
		rc = alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory building the header");
		goto out;
	}
	uint8_t len8[8];
	alcm_store64(len8, b.len);
	so->data_start = 8 + (uint64_t)b.len;
	rc = alcm_io_out_write(o, len8, 8);
	if (rc == ALCM_OK)
		rc = alcm_io_out_write(o, b.p, b.len);
out:
	alcm_io_sb_free(&b);
	alcm_mem_free(&o->alloc, ord);
	return rc;
}

static int st_write(alcm_output *o, const alcm_tensor *t)
{
	struct st_out *so = o->state;
	if (!o->has_plan)
		return alcm_io_out_fail(o, ALCM_E_STATE,
		                        "a .safetensors header lists every tensor: call "
		                        "alcm_output_plan() before the first write");
	const alcm_io_entry *e = &o->plan[o->written];
	if (!t->nbytes)
		return ALCM_OK;
	return alcm_io_out_pwrite(o, t->data, (size_t)t->nbytes, so->data_start + e->offset);
}

static int st_begin(alcm_output *o, const alcm_tensor *t)
{
	struct st_out *so = o->state;
	(void)t;
	if (!o->has_plan)
		return alcm_io_out_fail(o, ALCM_E_STATE,
		                        "a .safetensors header lists every tensor: call "
		                        "alcm_output_plan() before the first write");
	o->piece_off = so->data_start + o->plan[o->written].offset;
	return ALCM_OK;
}

static int st_append(alcm_output *o, const void *p, size_t n)
{
	int rc = alcm_io_out_pwrite(o, p, n, o->piece_off);
	o->piece_off += n;
	return rc;
}

static int st_commit(alcm_output *o)
{
	if (o->has_plan)
		return ALCM_OK;
	o->has_plan = 1;
	return st_plan(o);
}

static void st_out_free(alcm_output *o)
{
	alcm_mem_free(&o->alloc, o->state);
	o->state = NULL;
}

static const alcm_io_out_ops st_out_ops = {st_plan,  st_write,  st_commit, st_out_free,
                                            st_begin, st_append, NULL};

int alcm_io_st_out(alcm_output *o)
{
	o->state = alcm_mem_calloc(&o->alloc, 1, sizeof(struct st_out));
	if (!o->state)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	o->ops = &st_out_ops;
	return ALCM_OK;
}
