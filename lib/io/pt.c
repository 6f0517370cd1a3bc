/*
 * PyTorch's torch.save files (torch >= 1.6): a zip of "<root>/data.pkl" (the pickle of the
 * object), "<root>/data/<key>" (one record per storage, raw little-endian elements),
 * "<root>/version" and, from torch 2.0, "<root>/byteorder". Only state dicts are read: the
 * pickle goes through the restricted reader of pickle.c, never through Python.
 *
 * Reading: every storage record must exist and hold exactly numel * element size bytes;
 * every tensor's offset, sizes and strides must stay inside its storage, and its element
 * count and bytes within the limits, all checked when the input is opened. Tensors come in
 * the dict's order. A name whose tensor is the very same view of the same storage (offset,
 * shape and strides) as an earlier name's - tied weights - is an alias: stored once, and
 * recorded in alcm.alias. Other views are read as tensors of their own: contiguous ones with
 * one read, strided ones gathered through a window of ALCM_IO_PT_WINDOW bytes that moves
 * forward through the storage, so memory stays the tensor's size plus the window. A record's
 * CRC-32 is checked the first time it is used.
 *
 * Writing: one record per tensor, in the layout torch.save uses (records aligned to 64
 * bytes, data.pkl first when the tensors are planned), loadable by
 * torch.load(weights_only=True); aliases share their target's storage again.
 */
#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* The legacy (torch < 1.6) format: a pickle starting with this magic number. */
static const uint8_t legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                       0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

struct pt_in {
	alcm_io_zip zip;
	const alcm_io_zip_entry **by_name; /* zip entries sorted by name */
	const uint8_t *root;               /* "<root>/" of every record */
	size_t root_len;
	uint8_t *pkl;
	size_t pkl_len;
	alcm_io_pk_result r;
	const alcm_io_zip_entry **rec;     /* per storage */
	uint8_t *crc_done;                 /* per storage */
	size_t *emit;                      /* entries read as tensors, in dict order */
	size_t nemit, next;
	int swap;                          /* byteorder "big" */
	uint8_t *window;
	size_t window_cap;
	alcm_io_zip_member m;              /* the record being read forward, if any */
	const alcm_io_zip_entry *m_e;
	char label[ALCM_IO_QUOTE + 32];
};

static int name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	return c ? c : (al < bl ? -1 : al > bl);
}

static int by_name(const void *a, const void *b)
{
	const alcm_io_zip_entry *x = *(const alcm_io_zip_entry *const *)a;
	const alcm_io_zip_entry *y = *(const alcm_io_zip_entry *const *)b;
	return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* Compares an entry's name with the concatenation a + b + c. */
static int name_cmp3(const alcm_io_zip_entry *e, const uint8_t *a, size_t al, const char *b,
                     const uint8_t *c, size_t cl)
{
	const uint8_t *part[3] = {a, (const uint8_t *)b, c};
	size_t len[3] = {al, strlen(b), cl}, pos = 0;
	for (int k = 0; k < 3; k++) {
		size_t n = len[k];
		if (e->name_len - pos < n) {
			int r = memcmp(e->name + pos, part[k], e->name_len - pos);
			return r ? r : -1;
		}
		int r = n ? memcmp(e->name + pos, part[k], n) : 0;
		if (r)
			return r;
		pos += n;
	}
	return e->name_len > pos;
}

/* The record "<root><a><b>", or NULL. */
static const alcm_io_zip_entry *find(const struct pt_in *st, const char *a, const uint8_t *b,
                                     size_t bl)
{
	size_t lo = 0, hi = st->zip.count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const alcm_io_zip_entry *e = st->by_name[mid];
		int c = name_cmp3(e, st->root, st->root_len, a, b, bl);
		if (c == 0)
			return e;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* A whole small record (data.pkl, version, byteorder) into *out. */
static int read_record(alcm_input *in, struct pt_in *st, const alcm_io_zip_entry *e,
                       uint64_t max, uint8_t **out, size_t *len)
{
	char q[ALCM_IO_QUOTE];
	if (e->usize > max)
		return alcm_io_fail(in, ALCM_E_LIMIT, "record '%s' of %llu bytes exceeds the limit of "
		                    "%llu", alcm_io_quote(q, (const char *)e->name, e->name_len),
		                    (unsigned long long)e->usize, (unsigned long long)max);
	*out = alcm_mem_alloc(&in->alloc, e->usize ? (size_t)e->usize : 1);
	if (!*out)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	*len = (size_t)e->usize;
	alcm_io_zip_member m;
	int rc = alcm_io_zip_member_open(in, &st->zip, e, &m);
	if (rc == ALCM_OK)
		rc = alcm_io_zip_member_read(in, &m, *out, *len);
	if (rc == ALCM_OK)
		rc = alcm_io_zip_member_finish(in, &m);
	st->m_e = NULL;
	if (rc) {
		alcm_mem_free(&in->alloc, *out);
		*out = NULL;
	}
	return rc;
}

/* Finds the root, then version and byteorder. */
static int read_layout(alcm_input *in, struct pt_in *st)
{
	size_t n = st->zip.count;
	if (n == 0)
		return alcm_io_fail(in, ALCM_E_CORRUPT, "an empty zip, not a torch.save file");
	st->by_name = alcm_mem_calloc(&in->alloc, n, sizeof(*st->by_name));
	if (!st->by_name)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		st->by_name[i] = &st->zip.e[i];
	qsort(st->by_name, n, sizeof(*st->by_name), by_name);
	char q[ALCM_IO_QUOTE];
	for (size_t i = 1; i < n; i++)
		if (by_name(&st->by_name[i - 1], &st->by_name[i]) == 0)
			return alcm_io_zip_fail(in, st->by_name[i], ALCM_E_CORRUPT,
			                        "a second record of that name");
	/* As torch's reader: the root is the first entry's directory. */
	const alcm_io_zip_entry *first = &st->zip.e[0];
	const uint8_t *slash = memchr(first->name, '/', first->name_len);
	if (!slash)
		return alcm_io_zip_fail(in, first, ALCM_E_CORRUPT,
		                        "not in a directory, as every record of torch.save is");
	st->root = first->name;
	st->root_len = (size_t)(slash - first->name) + 1;
	alcm_io_quote(q, (const char *)st->root, st->root_len);
	snprintf(st->label, sizeof(st->label), "record '%sdata.pkl'", q);
	const alcm_io_zip_entry *pkl = find(st, "data.pkl", NULL, 0);
	if (!pkl)
		return alcm_io_fail(in, ALCM_E_CORRUPT, "no record '%sdata.pkl'", q);
	const alcm_io_zip_entry *ver = find(st, "version", NULL, 0);
	if (!ver)
		ver = find(st, ".data/version", NULL, 0);
	if (!ver)
		return alcm_io_fail(in, ALCM_E_CORRUPT, "no record '%sversion'", q);
	uint8_t *b = NULL;
	size_t len = 0;
	int rc = read_record(in, st, ver, 32, &b, &len);
	uint64_t v = 0;
	size_t i = 0;
	while (rc == ALCM_OK && i < len && b[i] >= '0' && b[i] <= '9' && v < 1000)
		v = v * 10 + (uint64_t)(b[i++] - '0');
	if (rc == ALCM_OK && (i == 0 || (i < len && !(i + 1 == len && b[i] == '\n'))))
		rc = alcm_io_zip_fail(in, ver, ALCM_E_CORRUPT, "not a version number");
	alcm_mem_free(&in->alloc, b);
	if (rc)
		return rc;
	/* torch 1.13 reads versions 1 to 10 (kMaxSupportedFileFormatVersion). */
	if (v < 1 || v > 10)
		return alcm_io_zip_fail(in, ver, ALCM_E_UNSUPPORTED, "file format version %llu "
		                        "(1 to 10 are known)", (unsigned long long)v);
	const alcm_io_zip_entry *bo = find(st, "byteorder", NULL, 0);
	if (bo) {
		if ((rc = read_record(in, st, bo, 16, &b, &len)))
			return rc;
		if (len == 3 && memcmp(b, "big", 3) == 0)
			st->swap = 1;
		else if (!(len == 6 && memcmp(b, "little", 6) == 0))
			rc = alcm_io_zip_fail(in, bo, ALCM_E_CORRUPT, "byte order is neither 'little' nor "
			                      "'big'");
		alcm_mem_free(&in->alloc, b);
		if (rc)
			return rc;
	}
	uint64_t max = in->lim.max_meta_bytes < UINT32_MAX ? in->lim.max_meta_bytes : UINT32_MAX;
	if (pkl->usize > max)
		return alcm_io_zip_fail(in, pkl, ALCM_E_LIMIT, "a pickle of %llu bytes exceeds "
		                        "max_meta_bytes (%llu)", (unsigned long long)pkl->usize,
		                        (unsigned long long)max);
	return read_record(in, st, pkl, max, &st->pkl, &st->pkl_len);
}

static const uint64_t *shape_of(const struct pt_in *st, const alcm_io_pk_tensor *t)
{
	return st->r.dims ? st->r.dims + t->dims_at : NULL;
}

__attribute__((format(printf, 4, 5)))
static int tensor_fail(alcm_input *in, const alcm_io_pk_entry *e, int status, const char *fmt,
                       ...)
{
	char msg[ALCM_DETAIL_MAX], q[ALCM_IO_QUOTE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return alcm_io_fail(in, status, "tensor '%s': %s",
	                    alcm_io_quote(q, (const char *)e->name, e->name_len), msg);
}

static int check_storages(alcm_input *in, struct pt_in *st)
{
	size_t n = st->r.nstorages;
	st->rec = alcm_mem_calloc(&in->alloc, n ? n : 1, sizeof(*st->rec));
	st->crc_done = alcm_mem_calloc(&in->alloc, n ? n : 1, 1);
	if (!st->rec || !st->crc_done)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const alcm_io_pk_storage *s = &st->r.storages[i];
		char q[ALCM_IO_QUOTE], r[ALCM_IO_QUOTE];
		alcm_io_quote(q, (const char *)s->key, s->key_len);
		alcm_io_quote(r, (const char *)st->root, st->root_len);
		st->rec[i] = find(st, "data/", s->key, s->key_len);
		if (!st->rec[i])
			return alcm_io_fail(in, ALCM_E_CORRUPT, "storage '%s' (pickle offset %zu) has no "
			                    "record '%sdata/%s'", q, s->at, r, q);
		uint64_t bytes;
		if (alcm_mul_u64(s->numel, alcm_dtype_size(s->dtype), &bytes) ||
		    bytes != st->rec[i]->usize)
			return alcm_io_zip_fail(in, st->rec[i], ALCM_E_CORRUPT,
			                        "storage '%s' declares %llu %s elements, the record holds "
			                        "%llu bytes", q, (unsigned long long)s->numel,
			                        alcm_dtype_name(s->dtype),
			                        (unsigned long long)st->rec[i]->usize);
	}
	return ALCM_OK;
}

/* Every tensor inside its storage and the limits; duplicate names refused. */
static int check_tensors(alcm_input *in, struct pt_in *st)
{
	char why[ALCM_DETAIL_MAX];
	for (size_t i = 0; i < st->r.nentries; i++) {
		const alcm_io_pk_entry *e = &st->r.entries[i];
		const alcm_io_pk_tensor *t = &st->r.tensors[e->tensor];
		const alcm_io_pk_storage *s = &st->r.storages[t->storage];
		const uint64_t *shape = shape_of(st, t), *stride = shape ? shape + t->ndim : NULL;
		uint64_t nbytes, last = t->offset;
		int rc = alcm_io_shape_bytes(&in->lim, s->dtype, t->ndim, shape, &nbytes, why);
		if (rc)
			return tensor_fail(in, e, rc, "shape: %s", why);
		if (t->offset > s->numel)
			return tensor_fail(in, e, ALCM_E_CORRUPT,
			                   "storage offset %llu lies past the %llu elements of its storage",
			                   (unsigned long long)t->offset, (unsigned long long)s->numel);
		if (nbytes == 0)
			continue;
		for (uint32_t d = 0; d < t->ndim; d++) {
			uint64_t step;
			if (alcm_mul_u64(shape[d] - 1, stride[d], &step) || alcm_add_u64(last, step, &last))
				return tensor_fail(in, e, ALCM_E_CORRUPT, "its strides overflow 64 bits");
		}
		if (last >= s->numel)
			return tensor_fail(in, e, ALCM_E_CORRUPT,
			                   "its view reaches element %llu of a storage of %llu",
			                   (unsigned long long)last, (unsigned long long)s->numel);
	}
	size_t n = st->r.nentries;
	alcm_io_name_ref *refs = alcm_mem_calloc(&in->alloc, n ? n : 1, sizeof(*refs));
	if (!refs)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		refs[i] = (alcm_io_name_ref){st->r.entries[i].name, st->r.entries[i].name_len, i};
	size_t d = alcm_io_names_dup(refs, n);
	size_t di = d != SIZE_MAX ? refs[d].idx : 0;
	alcm_mem_free(&in->alloc, refs);
	if (d != SIZE_MAX)
		return tensor_fail(in, &st->r.entries[di], ALCM_E_CORRUPT, "the name appears twice");
	return ALCM_OK;
}

/* Order of views: storage, offset, rank, shape, strides. */
static const struct pt_in *sort_st;

static int view_cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	const alcm_io_pk_tensor *x = &sort_st->r.tensors[sort_st->r.entries[i].tensor];
	const alcm_io_pk_tensor *y = &sort_st->r.tensors[sort_st->r.entries[j].tensor];
	if (x->storage != y->storage)
		return x->storage < y->storage ? -1 : 1;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->ndim != y->ndim)
		return x->ndim < y->ndim ? -1 : 1;
	const uint64_t *dx = shape_of(sort_st, x), *dy = shape_of(sort_st, y);
	for (uint32_t k = 0; k < 2 * x->ndim; k++)
		if (dx[k] != dy[k])
			return dx[k] < dy[k] ? -1 : 1;
	return i < j ? -1 : (i > j);
}

static int same_view(const struct pt_in *st, size_t i, size_t j)
{
	const alcm_io_pk_tensor *x = &st->r.tensors[st->r.entries[i].tensor];
	const alcm_io_pk_tensor *y = &st->r.tensors[st->r.entries[j].tensor];
	return x->storage == y->storage && x->offset == y->offset && x->ndim == y->ndim &&
	       (x->ndim == 0 || memcmp(shape_of(st, x), shape_of(st, y),
	                               2 * x->ndim * sizeof(uint64_t)) == 0);
}

static int json_name(alcm_input *in, alcm_io_sb *b, const alcm_io_pk_entry *e)
{
	if (!alcm_io_utf8_valid(e->name, e->name_len, NULL))
		return tensor_fail(in, e, ALCM_E_UNSUPPORTED, "the name is not UTF-8, which the "
		                   "archive's torch.state_dict record (JSON) cannot hold");
	alcm_io_json_put_string(b, (const char *)e->name, e->name_len);
	return ALCM_OK;
}

/* torch.state_dict: a JSON object of what a .pt needs besides tensors (spec 6.1.4). */
static int state_record(alcm_input *in, struct pt_in *st, const size_t *alias_of)
{
	alcm_io_sb b = {.a = &in->alloc};
	int rc = ALCM_OK, any = 0;
	const char *sep = "{";
#define MEMBER(k) (alcm_io_sb_str(&b, sep), alcm_io_sb_str(&b, "\"" k "\":"), sep = ",", any = 1)
	if (!st->r.ordered)
		MEMBER("type"), alcm_io_sb_str(&b, "\"dict\"");
	int first = 1;
	for (size_t i = 0; i < st->r.nentries; i++) {
		if (alias_of[i] == SIZE_MAX)
			continue;
		if (first)
			MEMBER("alias_index"), alcm_io_sb_put(&b, "[", 1);
		else
			alcm_io_sb_put(&b, ",", 1);
		alcm_io_sb_u64(&b, i);
		first = 0;
	}
	if (!first)
		alcm_io_sb_put(&b, "]", 1);
	for (int pass = 0; pass < 2 && rc == ALCM_OK; pass++) {
		first = 1;
		for (size_t i = 0; i < st->r.nentries && rc == ALCM_OK; i++) {
			const alcm_io_pk_tensor *t = &st->r.tensors[st->r.entries[i].tensor];
			if (pass == 0 ? !t->parameter : (t->parameter || !t->requires_grad))
				continue;
			if (first) {
				if (pass == 0)
					MEMBER("parameters"), alcm_io_sb_put(&b, "{", 1);
				else
					MEMBER("requires_grad"), alcm_io_sb_put(&b, "[", 1);
			} else {
				alcm_io_sb_put(&b, ",", 1);
			}
			first = 0;
			rc = json_name(in, &b, &st->r.entries[i]);
			if (pass == 0)
				alcm_io_sb_str(&b, t->requires_grad ? ":true" : ":false");
		}
		if (!first)
			alcm_io_sb_put(&b, pass == 0 ? "}" : "]", 1);
	}
	if (st->r.metadata) {
		MEMBER("metadata");
		alcm_io_sb_put(&b, st->r.metadata, st->r.metadata_len);
	}
#undef MEMBER
	if (any)
		alcm_io_sb_put(&b, "}", 1);
	if (rc == ALCM_OK && b.oom)
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	if (rc == ALCM_OK && any &&
	    alcm_io_meta_put(&in->alloc, &in->meta, ALCM_IO_REC_TORCH, strlen(ALCM_IO_REC_TORCH), b.p,
	                     b.len))
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	alcm_io_sb_free(&b);
	return rc;
}

/* Names on the very same view as an earlier name become aliases; the others are read. */
static int find_aliases(alcm_input *in, struct pt_in *st)
{
	size_t n = st->r.nentries;
	size_t *order = alcm_mem_calloc(&in->alloc, n ? n : 1, sizeof(*order));
	size_t *alias_of = alcm_mem_calloc(&in->alloc, n ? n : 1, sizeof(*alias_of));
	st->emit = alcm_mem_calloc(&in->alloc, n ? n : 1, sizeof(*st->emit));
	int rc = ALCM_OK;
	if (!order || !alias_of || !st->emit) {
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = i, alias_of[i] = SIZE_MAX;
	sort_st = st;
	qsort(order, n, sizeof(*order), view_cmp);
	for (size_t k = 1; k < n; k++)
		if (same_view(st, order[k - 1], order[k]))
			alias_of[order[k]] = alias_of[order[k - 1]] != SIZE_MAX ? alias_of[order[k - 1]]
			                                                         : order[k - 1];
	alcm_io_sb b = {.a = &in->alloc};
	uint8_t cnt[4] = {0};
	alcm_io_sb_put(&b, cnt, 4);
	uint32_t na = 0;
	for (size_t i = 0; i < n; i++) {
		const alcm_io_pk_entry *e = &st->r.entries[i];
		if (alias_of[i] == SIZE_MAX) {
			st->emit[st->nemit++] = i;
			continue;
		}
		const alcm_io_pk_entry *t = &st->r.entries[alias_of[i]];
		alcm_io_alias_put(&b, (const char *)e->name, e->name_len, (const char *)t->name,
		                  t->name_len);
		na++;
	}
	if (b.oom) {
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	} else if (na) {
		alcm_store32(b.p, na);
		if (alcm_io_meta_put(&in->alloc, &in->meta, ALCM_IO_REC_ALIAS,
		                     strlen(ALCM_IO_REC_ALIAS), b.p, b.len))
			rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	}
	alcm_io_sb_free(&b);
	if (rc == ALCM_OK)
		rc = state_record(in, st, alias_of);
out:
	alcm_mem_free(&in->alloc, order);
	alcm_mem_free(&in->alloc, alias_of);
	return rc;
}

/* n bytes at offset off of a record. Stored records are read in place; deflated ones are
 * inflated forward, from the start again if off lies behind. */
static int rec_read(alcm_input *in, struct pt_in *st, const alcm_io_zip_entry *e, uint64_t off,
                    void *dst, size_t n)
{
	int rc;
	if (st->m_e != e || (e->method == 8 && st->m.produced > off)) {
		st->m_e = NULL;
		if ((rc = alcm_io_zip_member_open(in, &st->zip, e, &st->m)))
			return rc;
		st->m_e = e;
	}
	if (e->method == 0)
		return alcm_io_read(in, dst, n, st->m.data_off + off);
	if ((rc = alcm_io_zip_member_skip(in, &st->m, off - st->m.produced)))
		return rc;
	return alcm_io_zip_member_read(in, &st->m, dst, n);
}

/* Reads a whole record once to check its CRC-32, through the window buffer. */
static int crc_pass(alcm_input *in, struct pt_in *st, const alcm_io_zip_entry *e)
{
	alcm_io_zip_member m;
	st->m_e = NULL;
	int rc = alcm_io_zip_member_open(in, &st->zip, e, &m);
	for (uint64_t left = e->usize; rc == ALCM_OK && left;) {
		size_t k = left < st->window_cap ? (size_t)left : st->window_cap;
		rc = alcm_io_zip_member_read(in, &m, st->window, k);
		left -= k;
	}
	return rc ? rc : alcm_io_zip_member_finish(in, &m);
}

static int window_reserve(alcm_input *in, struct pt_in *st, uint64_t n)
{
	if (n <= st->window_cap)
		return ALCM_OK;
	alcm_mem_free(&in->alloc, st->window);
	st->window_cap = 0;
	st->window = alcm_mem_alloc(&in->alloc, (size_t)n);
	if (!st->window)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	st->window_cap = (size_t)n;
	return ALCM_OK;
}

/*
 * A strided view into dst (C order). Dimensions are walked by decreasing stride so that the
 * source offsets never go back when the view does not overlap itself: the window then moves
 * forward only. A view that overlaps itself (as_strided) is read whole if it spans at most
 * ALCM_IO_PT_SPAN_MAX bytes.
 */
static int gather(alcm_input *in, struct pt_in *st, const alcm_io_pk_entry *en,
                  const alcm_io_zip_entry *rec, const alcm_io_pk_tensor *t, size_t es,
                  uint8_t *dst)
{
	const uint64_t *shape = shape_of(st, t), *stride = shape + t->ndim;
	uint32_t nd = t->ndim, perm[ALCM_MAX_NDIM];
	uint64_t cstride[ALCM_MAX_NDIM], idx[ALCM_MAX_NDIM] = {0};
	uint64_t c = 1;
	for (uint32_t d = nd; d-- > 0;) {
		cstride[d] = c;
		c *= shape[d];
	}
	for (uint32_t d = 0; d < nd; d++) {
		uint32_t k = d;
		while (k > 0 && stride[perm[k - 1]] < stride[d]) {
			perm[k] = perm[k - 1];
			k--;
		}
		perm[k] = d;
	}
	int monotone = 1;
	uint64_t inner = 0, span = 0; /* elements */
	for (uint32_t k = nd; k-- > 0;) {
		uint32_t d = perm[k];
		if (shape[d] > 1 && stride[d] < inner)
			monotone = 0;
		inner += (shape[d] - 1) * stride[d];
	}
	span = inner + 1;
	uint64_t lo = t->offset * es, end = (t->offset + span) * es, wlo = 0, whi = 0;
	if (!monotone) {
		if (end - lo > ALCM_IO_PT_SPAN_MAX)
			return tensor_fail(in, en, ALCM_E_UNSUPPORTED,
			                   "a view that overlaps itself across %llu bytes of its storage "
			                   "(at most %u)", (unsigned long long)(end - lo),
			                   (unsigned)ALCM_IO_PT_SPAN_MAX);
		int rc = window_reserve(in, st, end - lo);
		if (rc == ALCM_OK)
			rc = rec_read(in, st, rec, lo, st->window, (size_t)(end - lo));
		if (rc)
			return rc;
		wlo = lo, whi = end;
	}
	uint32_t last = perm[nd - 1];
	uint64_t src = t->offset, di = 0;
	for (;;) {
		uint64_t b = src * es;
		if (b < wlo || b + es > whi) {
			/* Load up to the end of this run of the innermost dimension, at most a window;
			 * one element when elements lie more than a window apart. */
			uint64_t left = shape[last] - idx[nd - 1];
			uint64_t want = stride[last] * es > ALCM_IO_PT_WINDOW
			                        ? es : ((left - 1) * stride[last] + 1) * es;
			if (want > ALCM_IO_PT_WINDOW)
				want = ALCM_IO_PT_WINDOW;
			if (want > end - b)
				want = end - b;
			int rc = rec_read(in, st, rec, b, st->window, (size_t)want);
			if (rc)
				return rc;
			wlo = b, whi = b + want;
		}
		memcpy(dst + di * es, st->window + (b - wlo), es);
		uint32_t k = nd - 1;
		for (;;) {
			uint32_t d = perm[k];
			if (++idx[k] < shape[d]) {
				src += stride[d];
				di += cstride[d];
				break;
			}
			src -= (shape[d] - 1) * stride[d];
			di -= (shape[d] - 1) * cstride[d];
			idx[k] = 0;
			if (k-- == 0)
				return ALCM_OK;
		}
	}
}

static void swap_bytes(uint8_t *p, uint64_t n, size_t es)
{
	for (uint64_t i = 0; i + es <= n; i += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			uint8_t x = p[i + a];
			p[i + a] = p[i + b];
			p[i + b] = x;
		}
}

static int pt_next(alcm_input *in, alcm_tensor *t, int *has)
{
	struct pt_in *st = in->state;
	if (st->next >= st->nemit)
		return ALCM_OK;
	const alcm_io_pk_entry *e = &st->r.entries[st->emit[st->next]];
	const alcm_io_pk_tensor *pt = &st->r.tensors[e->tensor];
	const alcm_io_pk_storage *s = &st->r.storages[pt->storage];
	const alcm_io_zip_entry *rec = st->rec[pt->storage];
	const uint64_t *shape = shape_of(st, pt), *stride = shape ? shape + pt->ndim : NULL;
	size_t es = alcm_dtype_size(s->dtype);
	char why[ALCM_DETAIL_MAX];
	uint64_t nbytes;
	int rc = alcm_io_shape_bytes(&in->lim, s->dtype, pt->ndim, shape, &nbytes, why);
	if (rc == ALCM_OK)
		rc = alcm_io_reserve(in, nbytes ? nbytes : 1);
	if (rc)
		return rc;
	if (nbytes) {
		int contiguous = 1;
		uint64_t want = 1;
		for (uint32_t d = pt->ndim; d-- > 0;) {
			if (shape[d] != 1 && stride[d] != want)
				contiguous = 0;
			want *= shape[d];
		}
		if (contiguous && pt->offset == 0 && nbytes == rec->usize) {
			/* The whole record: read it once and check its CRC on the way. */
			alcm_io_zip_member m;
			st->m_e = NULL;
			rc = alcm_io_zip_member_open(in, &st->zip, rec, &m);
			if (rc == ALCM_OK)
				rc = alcm_io_zip_member_read(in, &m, in->buf, (size_t)nbytes);
			if (rc == ALCM_OK)
				rc = alcm_io_zip_member_finish(in, &m);
			st->crc_done[pt->storage] = 1;
		} else {
			rc = window_reserve(in, st, ALCM_IO_PT_WINDOW);
			if (rc == ALCM_OK && !st->crc_done[pt->storage]) {
				rc = crc_pass(in, st, rec);
				st->crc_done[pt->storage] = 1;
			}
			if (rc == ALCM_OK)
				rc = contiguous ? rec_read(in, st, rec, pt->offset * es, in->buf,
				                           (size_t)nbytes)
				                : gather(in, st, e, rec, pt, es, in->buf);
		}
		if (rc)
			return rc;
		if (st->swap)
			swap_bytes(in->buf, nbytes, es);
	}
	st->next++;
	t->name = (const char *)e->name;
	t->name_len = e->name_len;
	t->dtype = s->dtype;
	t->ndim = pt->ndim;
	if (pt->ndim)
		memcpy(t->shape, shape, pt->ndim * sizeof(uint64_t));
	t->data = in->buf;
	t->nbytes = nbytes;
	*has = 1;
	return ALCM_OK;
}

static void pt_free(alcm_input *in)
{
	struct pt_in *st = in->state;
	if (!st)
		return;
	alcm_io_pickle_free(in, &st->r);
	alcm_io_zip_free(in, &st->zip);
	alcm_mem_free(&in->alloc, st->by_name);
	alcm_mem_free(&in->alloc, st->pkl);
	alcm_mem_free(&in->alloc, st->rec);
	alcm_mem_free(&in->alloc, st->crc_done);
	alcm_mem_free(&in->alloc, st->emit);
	alcm_mem_free(&in->alloc, st->window);
	alcm_mem_free(&in->alloc, st);
	in->state = NULL;
}

static const alcm_io_in_ops pt_in_ops = {pt_next, pt_free, NULL, NULL};

int alcm_io_pt_open(alcm_input *in)
{
	uint8_t head[sizeof(legacy_magic)];
	if (in->size >= sizeof(head) && alcm_io_read(in, head, sizeof(head), 0) == ALCM_OK &&
	    memcmp(head, legacy_magic, sizeof(head)) == 0)
		return alcm_io_fail(in, ALCM_E_UNSUPPORTED,
		                    "the legacy torch.save format (torch < 1.6); load and save it "
		                    "again with a newer torch (torch.save(torch.load(f), g))");
	struct pt_in *st = alcm_mem_calloc(&in->alloc, 1, sizeof(*st));
	if (!st)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	in->state = st;
	in->ops = &pt_in_ops;
	uint64_t entries = (uint64_t)in->lim.max_tensors + 64;
	alcm_io_zip_limits zl = {entries, "records", in->lim.max_decoded_bytes, UINT64_MAX, NULL};
	int rc = alcm_io_zip_open(in, &st->zip, &zl);
	if (rc == ALCM_OK)
		rc = read_layout(in, st);
	if (rc == ALCM_OK)
		rc = alcm_io_pickle_load(in, st->label, st->pkl, st->pkl_len, &st->r);
	if (rc == ALCM_OK)
		rc = check_storages(in, st);
	if (rc == ALCM_OK)
		rc = check_tensors(in, st);
	if (rc == ALCM_OK)
		rc = find_aliases(in, st);
	return rc;
}

int alcm_io_pt_sniff(alcm_input *in, int *is_pt)
{
	*is_pt = 0;
	uint8_t head[sizeof(legacy_magic)];
	if (in->size >= sizeof(head) && alcm_io_read(in, head, sizeof(head), 0) == ALCM_OK &&
	    memcmp(head, legacy_magic, sizeof(head)) == 0) {
		*is_pt = 1;
		return ALCM_OK;
	}
	/* The central directory, not the first member: a zip rewritten by other tools may put
	 * data.pkl anywhere. A torch file has "<dir>/data.pkl" and no .npy member. A zip that
	 * does not parse is left to the .npz reader to report. */
	char detail[ALCM_DETAIL_MAX];
	memcpy(detail, in->detail, sizeof(detail));
	alcm_io_zip z;
	alcm_io_zip_limits zl = {in->lim.max_tensors + (uint64_t)64, "records", UINT64_MAX,
	                         UINT64_MAX, NULL};
	int pt = 0, npy = 0, rc = alcm_io_zip_open(in, &z, &zl);
	for (size_t i = 0; rc == ALCM_OK && i < z.count; i++) {
		const alcm_io_zip_entry *e = &z.e[i];
		const uint8_t *slash = memchr(e->name, '/', e->name_len);
		if (e->name_len >= 4 && memcmp(e->name + e->name_len - 4, ".npy", 4) == 0)
			npy = 1;
		if (slash && slash > e->name && (size_t)(slash - e->name) + 9 == e->name_len &&
		    memcmp(slash + 1, "data.pkl", 8) == 0)
			pt = 1;
	}
	alcm_io_zip_free(in, &z);
	if (rc == ALCM_E_NOMEM || rc == ALCM_E_IO)
		return rc;
	memcpy(in->detail, detail, sizeof(detail));
	*is_pt = pt && !npy;
	return ALCM_OK;
}

/* ---- writer ---- */

#define PT_ROOT "archive/"

struct pt_w {
	char *name;
	size_t name_len;
	int dtype;
	uint32_t ndim;
	size_t dims_at;          /* shape, then strides */
	uint64_t numel;
	uint32_t key;            /* storage record "archive/data/<key>" */
	int parameter, requires_grad;
};

struct pt_out {
	alcm_io_zipw z;
	struct pt_w *w;          /* entries of the dict in order: tensors and aliases */
	size_t n, cap;
	uint64_t *dims;
	size_t ndims, dims_cap;
	uint32_t nkeys;
	int pickled;             /* data.pkl written (at plan time when there is a plan) */
};

static int grow_out(alcm_output *o, void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return ALCM_OK;
	size_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	size_t bytes;
	void *q = NULL;
	if (!__builtin_mul_overflow(c, size, &bytes))
		q = alcm_mem_realloc(&o->alloc, *p, bytes);
	if (!q)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	*p = q;
	*cap = c;
	return ALCM_OK;
}

/* Appends an entry; strides as torch gives a contiguous tensor (sizes of 0 count as 1). */
static int add_entry(alcm_output *o, const char *name, size_t name_len, int dtype,
                     uint32_t ndim, const uint64_t *shape)
{
	struct pt_out *so = o->state;
	char q[ALCM_IO_QUOTE];
	alcm_io_quote(q, name, name_len);
	if (!alcm_io_pickle_storage_class(dtype))
		return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
		                        "tensor '%s': torch has no %s storage that torch.load reads "
		                        "(bool, uint8, int8/16/32/64, float16, bfloat16, float32 and "
		                        "float64 have one)", q, alcm_dtype_name(dtype));
	if (!alcm_io_utf8_valid((const uint8_t *)name, name_len, NULL))
		return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
		                        "tensor '%s': the name is not UTF-8, which a pickled str needs",
		                        q);
	int rc = grow_out(o, (void **)&so->w, &so->cap, so->n + 1, sizeof(*so->w));
	if (rc == ALCM_OK)
		rc = grow_out(o, (void **)&so->dims, &so->dims_cap, so->ndims + 2 * (size_t)ndim + 1,
		              sizeof(*so->dims));
	if (rc)
		return rc;
	struct pt_w *w = &so->w[so->n];
	memset(w, 0, sizeof(*w));
	w->name = alcm_mem_alloc(&o->alloc, name_len ? name_len : 1);
	if (!w->name)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	if (name_len)
		memcpy(w->name, name, name_len);
	w->name_len = name_len;
	w->dtype = dtype;
	w->ndim = ndim;
	w->dims_at = so->ndims;
	uint64_t *sh = so->dims + so->ndims, *sd = sh + ndim, c = 1, el = 1;
	for (uint32_t d = ndim; d-- > 0;) {
		sh[d] = shape[d];
		sd[d] = c;
		uint64_t m = shape[d] ? shape[d] : 1;
		if (alcm_mul_u64(c, m, &c) || c > INT64_MAX) {
			alcm_mem_free(&o->alloc, w->name);
			return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
			                        "tensor '%s': its strides do not fit in 64 bits", q);
		}
		el *= shape[d];
	}
	w->numel = el;
	w->key = so->nkeys++;
	so->ndims += 2 * (size_t)ndim;
	so->n++;
	return ALCM_OK;
}

/* torch.state_dict's members that the writer uses. */
typedef struct pt_state {
	int plain_dict;
	uint64_t *alias_index;
	size_t nalias_index;
	const uint8_t *meta;     /* "metadata": the JSON value's text */
	size_t meta_len;
} pt_state;

static int find_entry(const struct pt_out *so, const uint8_t *name, size_t len, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (so->w[i].name_len == len && (len == 0 || memcmp(so->w[i].name, name, len) == 0))
			return (int)i;
	return -1;
}

/* Marks entries listed under "parameters" or "requires_grad". */
static int state_flags(alcm_output *o, alcm_io_json *j, int params)
{
	struct pt_out *so = o->state;
	int close = params ? '}' : ']';
	if (alcm_io_json_expect(j, params ? '{' : '['))
		return j->status;
	if (alcm_io_json_peek(j) == close) {
		j->pos++;
		return ALCM_OK;
	}
	for (;;) {
		size_t len, at = (alcm_io_json_ws(j), j->pos);
		if (alcm_io_json_string(j, NULL, 0, &len))
			return j->status;
		uint8_t *name = alcm_mem_alloc(&o->alloc, len ? len : 1);
		if (!name)
			return alcm_io_json_error(j, ALCM_E_NOMEM, "out of memory");
		j->pos = at;
		alcm_io_json_string(j, name, len, &len);
		int rg = 1;
		if (params) {
			if (alcm_io_json_expect(j, ':')) {
				alcm_mem_free(&o->alloc, name);
				return j->status;
			}
			int c = alcm_io_json_peek(j);
			const char *w = c == 't' ? "true" : "false";
			if ((c != 't' && c != 'f') || j->len - j->pos < strlen(w) ||
			    memcmp(j->p + j->pos, w, strlen(w)) != 0) {
				alcm_mem_free(&o->alloc, name);
				return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected true or false");
			}
			j->pos += strlen(w);
			rg = c == 't';
		}
		for (size_t i = 0; i < so->n; i++)
			if (so->w[i].name_len == len && (len == 0 || memcmp(so->w[i].name, name, len) == 0)) {
				so->w[i].parameter |= params;
				so->w[i].requires_grad = rg;
			}
		alcm_mem_free(&o->alloc, name);
		int c = alcm_io_json_peek(j);
		j->pos++;
		if (c == close)
			return ALCM_OK;
		if (c != ',') {
			j->pos--;
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or a closing bracket");
		}
	}
}

/* Parses torch.state_dict; flags go straight to the entries (which must all be there). */
static int parse_state(alcm_output *o, const alcm_io_meta *m, pt_state *ps, int flags)
{
	alcm_io_json j = {.p = m->val, .len = m->len};
	if (alcm_io_json_expect(&j, '{'))
		goto bad;
	if (alcm_io_json_peek(&j) == '}') {
		j.pos++;
		goto end;
	}
	for (;;) {
		uint8_t k[16];
		size_t kl;
		if (alcm_io_json_string(&j, k, sizeof(k), &kl) || alcm_io_json_expect(&j, ':'))
			goto bad;
#define IS(s) (kl == strlen(s) && memcmp(k, s, kl) == 0)
		if (IS("type")) {
			uint8_t v[16];
			size_t vl;
			if (alcm_io_json_string(&j, v, sizeof(v), &vl))
				goto bad;
			ps->plain_dict = vl == 4 && memcmp(v, "dict", 4) == 0;
		} else if (IS("alias_index") && !flags) {
			if (alcm_io_json_expect(&j, '['))
				goto bad;
			if (alcm_io_json_peek(&j) == ']') {
				j.pos++;
			} else {
				for (;;) {
					uint64_t v;
					if (alcm_io_json_u64(&j, &v))
						goto bad;
					size_t cap = ps->nalias_index;
					void *p = alcm_mem_realloc(&o->alloc, ps->alias_index,
					                           (cap + 1) * sizeof(uint64_t));
					if (!p) {
						alcm_io_json_error(&j, ALCM_E_NOMEM, "out of memory");
						goto bad;
					}
					ps->alias_index = p;
					ps->alias_index[ps->nalias_index++] = v;
					int c = alcm_io_json_peek(&j);
					j.pos++;
					if (c == ']')
						break;
					if (c != ',') {
						j.pos--;
						alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or ']'");
						goto bad;
					}
				}
			}
		} else if ((IS("parameters") || IS("requires_grad")) && flags) {
			if (state_flags(o, &j, IS("parameters")))
				goto bad;
		} else if (IS("metadata")) {
			alcm_io_json_ws(&j);
			size_t at = j.pos;
			if (alcm_io_json_skip(&j, ALCM_IO_PK_JSON_DEPTH))
				goto bad;
			ps->meta = j.p + at;
			ps->meta_len = j.pos - at;
		} else if (alcm_io_json_skip(&j, ALCM_IO_JSON_DEPTH)) {
			goto bad;
		}
#undef IS
		int c = alcm_io_json_peek(&j);
		j.pos++;
		if (c == '}')
			break;
		if (c != ',') {
			j.pos--;
			alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or '}'");
			goto bad;
		}
	}
end:
	alcm_io_json_ws(&j);
	if (j.pos == j.len)
		return ALCM_OK;
	alcm_io_json_error(&j, ALCM_E_CORRUPT, "bytes after the object");
bad:
	return alcm_io_out_fail(o, j.status, "META key %s: %s at offset %zu", ALCM_IO_REC_TORCH,
	                        j.err, j.err_pos);
}

/*
 * Appends the aliases (alcm.alias, checked against the entries), then puts them in place:
 * at the positions torch.state_dict's alias_index gives when it fits, else right after
 * their targets.
 */
static int place_aliases(alcm_output *o, const pt_state *ps)
{
	struct pt_out *so = o->state;
	const alcm_io_meta *m = alcm_io_meta_find(&o->meta, ALCM_IO_REC_ALIAS);
	if (!m)
		return ALCM_OK;
	alcm_io_alias *al;
	size_t na, ntensors = so->n;
	char why[ALCM_DETAIL_MAX];
	int rc = alcm_io_alias_decode(&o->alloc, m->val, m->len, &al, &na, why);
	if (rc)
		return alcm_io_out_fail(o, rc, "%s", why);
	size_t *target = alcm_mem_calloc(&o->alloc, na + 1, sizeof(*target));
	alcm_io_name_ref *names = alcm_mem_calloc(&o->alloc, ntensors + 1, sizeof(*names));
	if (!target || !names) {
		rc = alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	} else {
		for (size_t i = 0; i < ntensors; i++)
			names[i] = (alcm_io_name_ref){(const uint8_t *)so->w[i].name, so->w[i].name_len, i};
		if ((rc = alcm_io_alias_check(&o->alloc, al, na, names, ntensors, why)))
			rc = alcm_io_out_fail(o, rc, "%s", why);
	}
	alcm_mem_free(&o->alloc, names);
	size_t used = 0;
	for (size_t k = 0; rc == ALCM_OK && k < na; k++) {
		int t = find_entry(so, al[k].target, al[k].target_len, ntensors);
		const struct pt_w tw = so->w[t];
		uint64_t shape[ALCM_MAX_NDIM]; /* add_entry() may move dims */
		memcpy(shape, so->dims + tw.dims_at, tw.ndim * sizeof(uint64_t));
		rc = add_entry(o, (const char *)al[k].name, al[k].name_len, tw.dtype, tw.ndim, shape);
		if (rc)
			break;
		so->nkeys--;
		so->w[so->n - 1].key = tw.key;
		target[used++] = (size_t)t;
	}
	alcm_mem_free(&o->alloc, al);
	/* The dict order: alias_index when it names distinct slots for exactly these
	 * aliases, else each alias after its target. */
	size_t total = so->n;
	struct pt_w *ord = rc ? NULL : alcm_mem_calloc(&o->alloc, total + 1, sizeof(*ord));
	uint8_t *taken = rc ? NULL : alcm_mem_calloc(&o->alloc, total + 1, 1);
	if (!rc && (!ord || !taken))
		rc = alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	if (rc == ALCM_OK && used) {
		int fits = ps->nalias_index == used;
		for (size_t k = 0; fits && k < used; k++) {
			uint64_t i = ps->alias_index[k];
			if (i >= total || taken[i])
				fits = 0;
			else
				taken[i] = 1;
		}
		if (fits) {
			for (size_t k = 0; k < used; k++)
				ord[ps->alias_index[k]] = so->w[ntensors + k];
			size_t t = 0;
			for (size_t i = 0; i < total; i++)
				if (!taken[i])
					ord[i] = so->w[t++];
		} else {
			size_t p = 0;
			for (size_t i = 0; i < ntensors; i++) {
				ord[p++] = so->w[i];
				for (size_t k = 0; k < used; k++)
					if (target[k] == i)
						ord[p++] = so->w[ntensors + k];
			}
		}
		memcpy(so->w, ord, total * sizeof(*ord));
	}
	alcm_mem_free(&o->alloc, ord);
	alcm_mem_free(&o->alloc, taken);
	alcm_mem_free(&o->alloc, target);
	return rc;
}

static int write_small(alcm_output *o, const char *name, const void *p, size_t n)
{
	struct pt_out *so = o->state;
	int rc = alcm_io_zipw_begin(o, &so->z, name, strlen(name), n, alcm_io_crc32(0, p, n),
	                            ALCM_IO_ZIPW_ALIGN64);
	return rc ? rc : alcm_io_out_write(o, p, n);
}

/* The dict as a pickle, written as data.pkl. The entries are all known. */
static int write_pickle(alcm_output *o)
{
	struct pt_out *so = o->state;
	pt_state ps = {0, NULL, 0, NULL, 0};
	const alcm_io_meta *m = alcm_io_meta_find(&o->meta, ALCM_IO_REC_TORCH);
	int rc = m ? parse_state(o, m, &ps, 0) : ALCM_OK;
	if (rc == ALCM_OK)
		rc = place_aliases(o, &ps);
	if (rc == ALCM_OK && m)
		rc = parse_state(o, m, &(pt_state){0, NULL, 0, NULL, 0}, 1);
	alcm_io_pkw_tensor *t = rc ? NULL : alcm_mem_calloc(&o->alloc, so->n + 1, sizeof(*t));
	char (*keys)[12] = rc ? NULL : alcm_mem_calloc(&o->alloc, so->n + 1, sizeof(*keys));
	if (!rc && (!t || !keys))
		rc = alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; rc == ALCM_OK && i < so->n; i++) {
		const struct pt_w *w = &so->w[i];
		int kl = snprintf(keys[i], sizeof(keys[i]), "%u", (unsigned)w->key);
		t[i] = (alcm_io_pkw_tensor){w->name, w->name_len, w->dtype, keys[i], (size_t)kl,
		                            w->numel, 0, w->ndim, so->dims + w->dims_at,
		                            so->dims + w->dims_at + w->ndim, w->parameter,
		                            w->requires_grad};
	}
	alcm_io_sb b = {.a = &o->alloc};
	if (rc == ALCM_OK) {
		size_t bad = 0;
		const char *why = "";
		rc = alcm_io_pickle_write(&b, t, so->n, !ps.plain_dict, ps.meta, ps.meta_len, &bad,
		                          &why);
		if (rc == ALCM_E_NOMEM)
			rc = alcm_io_out_fail(o, rc, "out of memory");
		else if (rc)
			rc = alcm_io_out_fail(o, rc, "META key %s: metadata: %s at offset %zu",
			                      ALCM_IO_REC_TORCH, why, (size_t)(ps.meta - m->val) + bad);
	}
	if (rc == ALCM_OK)
		rc = write_small(o, PT_ROOT "data.pkl", b.p, b.len);
	alcm_io_sb_free(&b);
	alcm_mem_free(&o->alloc, t);
	alcm_mem_free(&o->alloc, keys);
	alcm_mem_free(&o->alloc, ps.alias_index);
	so->pickled = rc == ALCM_OK;
	return rc;
}

/* With a plan, the pickle comes first, as torch.save lays files out. */
static int pt_plan(alcm_output *o)
{
	for (size_t i = 0; i < o->plan_count; i++) {
		const alcm_io_entry *e = &o->plan[i];
		int rc = add_entry(o, e->name, e->name_len, e->dtype, e->ndim, e->shape);
		if (rc)
			return rc;
	}
	return write_pickle(o);
}

static int pt_write(alcm_output *o, const alcm_tensor *t)
{
	struct pt_out *so = o->state;
	uint32_t key;
	if (o->has_plan) {
		key = (uint32_t)o->written; /* keys were given in plan order */
	} else {
		int rc = add_entry(o, t->name, t->name_len, t->dtype, t->ndim, t->shape);
		if (rc)
			return rc;
		key = so->w[so->n - 1].key;
	}
	char name[32];
	snprintf(name, sizeof(name), PT_ROOT "data/%u", (unsigned)key);
	int rc = alcm_io_zipw_begin(o, &so->z, name, strlen(name), t->nbytes,
	                            alcm_io_crc32(0, t->data, t->nbytes), ALCM_IO_ZIPW_ALIGN64);
	if (rc == ALCM_OK && t->nbytes)
		rc = alcm_io_out_write(o, t->data, (size_t)t->nbytes);
	return rc;
}

static int pt_commit(alcm_output *o)
{
	struct pt_out *so = o->state;
	int rc = so->pickled ? ALCM_OK : write_pickle(o);
	if (rc == ALCM_OK)
		rc = write_small(o, PT_ROOT "byteorder", "little", 6);
	if (rc == ALCM_OK)
		rc = write_small(o, PT_ROOT "version", "3\n", 2);
	return rc ? rc : alcm_io_zipw_finish(o, &so->z);
}

static void pt_out_free(alcm_output *o)
{
	struct pt_out *so = o->state;
	if (!so)
		return;
	alcm_io_zipw_free(o, &so->z);
	for (size_t i = 0; i < so->n; i++)
		alcm_mem_free(&o->alloc, so->w[i].name);
	alcm_mem_free(&o->alloc, so->w);
	alcm_mem_free(&o->alloc, so->dims);
	alcm_mem_free(&o->alloc, so);
	o->state = NULL;
}

static const alcm_io_out_ops pt_out_ops = {pt_plan, pt_write, pt_commit, pt_out_free, NULL, NULL,
                                            NULL};

int alcm_io_pt_out(alcm_output *o)
{
	o->state = alcm_mem_calloc(&o->alloc, 1, sizeof(struct pt_out));
	if (!o->state)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	o->ops = &pt_out_ops;
	return ALCM_OK;
}
