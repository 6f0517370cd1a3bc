/*
 * .npz: a zip archive of .npy members, as numpy.savez and numpy.savez_compressed write it.
 *
 * The reader trusts only the central directory (found from the end record, with zip64
 * records when a locator is present), checks every offset and size against the file and
 * the limits, and that members neither overlap nor run into the directory. A member is
 * read when alcm_input_next() reaches it: stored (method 0) or deflated (method 8), its
 * CRC-32 checked, inflation held to the declared size. Encrypted and multi-disk archives
 * and other methods are refused as unsupported.
 *
 * The writer produces what numpy.savez writes: stored members "name.npy" with a zip64
 * extra field in every local header (numpy opens members with force_zip64), zip64 fields
 * in the central directory and end records only where Python's zipfile needs them, and a
 * fixed 1980-01-01 timestamp, so equal input gives equal bytes.
 */
#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

struct npz_in {
	alcm_io_zip zip;
	size_t next;
	alcm_io_zip_member m; /* the member being read */
};

/* The tensor name is the member name without ".npy", within max_name_bytes. */
static int npz_entry(alcm_input *in, alcm_io_zip_entry *e)
{
	size_t nlen = e->name_len;
	e->aux = nlen >= 4 && memcmp(e->name + nlen - 4, ".npy", 4) == 0 ? nlen - 4 : nlen;
	if (e->aux > in->lim.max_name_bytes)
		return alcm_io_zip_fail(in, e, ALCM_E_LIMIT, "name of %zu bytes exceeds the limit of %u",
		                        e->aux, (unsigned)in->lim.max_name_bytes);
	return ALCM_OK;
}

static int check_names(alcm_input *in, struct npz_in *st)
{
	size_t n = st->zip.count;
	if (n == 0)
		return ALCM_OK;
	alcm_io_name_ref *refs = alcm_mem_calloc(&in->alloc, n, sizeof(*refs));
	if (!refs)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		refs[i] = (alcm_io_name_ref){st->zip.e[i].name, st->zip.e[i].aux, i};
	int rc = ALCM_OK;
	size_t d = alcm_io_names_dup(refs, n);
	if (d != SIZE_MAX) {
		char q[ALCM_IO_QUOTE];
		const alcm_io_zip_entry *a = &st->zip.e[refs[d - 1].idx], *b = &st->zip.e[refs[d].idx];
		rc = alcm_io_fail(in, ALCM_E_CORRUPT,
		                  "tensor name '%s' appears twice (local headers at offsets %llu and "
		                  "%llu)", alcm_io_quote(q, (const char *)b->name, b->aux),
		                  (unsigned long long)a->local_off, (unsigned long long)b->local_off);
	}
	alcm_mem_free(&in->alloc, refs);
	return rc;
}

/* Opens the next member and reads its .npy header; whole: reads its data too. */
static int npz_open_next(alcm_input *in, alcm_tensor *t, int *has, int whole)
{
	struct npz_in *st = in->state;
	if (st->next >= st->zip.count)
		return ALCM_OK;
	const alcm_io_zip_entry *e = &st->zip.e[st->next];
	alcm_io_zip_member *m = &st->m;
	int rc = alcm_io_zip_member_open(in, &st->zip, e, m);
	if (rc)
		return rc;
	alcm_io_npy_src src = {alcm_io_zip_member_read, m, e->usize, (const char *)e->name, e->aux,
	                       e->local_off};
	alcm_io_npy_info info;
	rc = alcm_io_npy_read_header(in, &src, &info);
	if (rc)
		return rc;
	/* Pieces need the bytes as they are: C order, little-endian, and some to give. */
	whole = whole || info.fortran || info.swap || info.nbytes == 0;
	if (whole) {
		rc = alcm_io_reserve(in, info.nbytes);
		if (rc == ALCM_OK)
			rc = alcm_io_zip_member_read(in, m, in->buf, (size_t)info.nbytes);
		if (rc == ALCM_OK)
			rc = alcm_io_zip_member_finish(in, m);
		if (rc == ALCM_OK)
			rc = alcm_io_npy_fixup(in, &info);
		if (rc)
			return rc;
		t->data = in->buf;
	}
	st->next++;
	t->name = (const char *)e->name;
	t->name_len = e->aux;
	t->dtype = info.dtype;
	t->ndim = info.ndim;
	memcpy(t->shape, info.shape, sizeof(t->shape));
	t->nbytes = info.nbytes;
	*has = 1;
	return ALCM_OK;
}

static int npz_next(alcm_input *in, alcm_tensor *t, int *has)
{
	return npz_open_next(in, t, has, 1);
}

static int npz_begin_in(alcm_input *in, alcm_tensor *t, int *has)
{
	return npz_open_next(in, t, has, 0);
}

/* The member's CRC-32 (and a deflated member's end) is checked before its last piece is
 * handed out. */
static int npz_piece(alcm_input *in, void *dst, uint64_t at, size_t n, int last)
{
	struct npz_in *st = in->state;
	(void)at;
	int rc = alcm_io_zip_member_read(in, &st->m, dst, n);
	if (rc == ALCM_OK && last)
		rc = alcm_io_zip_member_finish(in, &st->m);
	return rc;
}

static void npz_free(alcm_input *in)
{
	struct npz_in *st = in->state;
	if (!st)
		return;
	alcm_io_zip_free(in, &st->zip);
	alcm_mem_free(&in->alloc, st);
	in->state = NULL;
}

static const alcm_io_in_ops npz_in_ops = {npz_next, npz_free, npz_begin_in, npz_piece};

int alcm_io_npz_open(alcm_input *in)
{
	struct npz_in *st = alcm_mem_calloc(&in->alloc, 1, sizeof(*st));
	if (!st)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	in->state = st;
	in->ops = &npz_in_ops;
	uint64_t cap = in->lim.max_decoded_bytes + ALCM_IO_NPY_HEADER_MAX + ALCM_IO_NPY_PREFIX_MAX;
	if (cap < in->lim.max_decoded_bytes)
		cap = UINT64_MAX;
	alcm_io_zip_limits zl = {in->lim.max_tensors, "tensors", cap, cap, npz_entry};
	int rc = alcm_io_zip_open(in, &st->zip, &zl);
	return rc ? rc : check_names(in, st);
}

/* ---- writer ---- */

/* Opens t's member and writes its .npy header. Whole (t->data given), the member's CRC-32
 * goes into its local header now; in pieces, it is known at the member's end only (npz_end)
 * and goes into the local header when the file is finished (alcm_io_zipw_finish). The bytes
 * are the same either way. */
static int npz_member(alcm_output *o, const alcm_tensor *t, int whole)
{
	alcm_io_zipw *z = o->state;
	uint8_t hdr[ALCM_IO_NPY_HEADER_BUF];
	char q[ALCM_IO_QUOTE];
	size_t hlen = alcm_io_npy_build_header(hdr, t->dtype, t->ndim, t->shape);
	if (!hlen)
		return alcm_io_npy_refuse_bf16(o, t->name, t->name_len);
	if (t->name_len > 65535 - 4)
		return alcm_io_out_fail(o, ALCM_E_ARG,
		                        "tensor '%s': a name of %zu bytes does not fit a zip member name",
		                        alcm_io_quote(q, t->name, t->name_len), t->name_len);
	char *name = alcm_mem_alloc(&o->alloc, t->name_len + 4);
	if (!name)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	if (t->name_len)
		memcpy(name, t->name, t->name_len);
	memcpy(name + t->name_len, ".npy", 4);
	uint32_t crc = alcm_io_crc32(0, hdr, hlen);
	if (whole)
		crc = alcm_io_crc32(crc, t->data, t->nbytes);
	int rc = alcm_io_zipw_begin(o, z, name, t->name_len + 4, hlen + t->nbytes, whole ? crc : 0,
	                            ALCM_IO_ZIPW_ZIP64);
	alcm_mem_free(&o->alloc, name);
	if (rc != ALCM_OK)
		return rc;
	if (!whole) {
		z->e[z->n - 1].crc_late = 1;
		z->crc = crc;
	}
	return alcm_io_out_write(o, hdr, hlen);
}

static int npz_write(alcm_output *o, const alcm_tensor *t)
{
	int rc = npz_member(o, t, 1);
	if (rc == ALCM_OK && t->nbytes)
		rc = alcm_io_out_write(o, t->data, (size_t)t->nbytes);
	return rc;
}

static int npz_begin(alcm_output *o, const alcm_tensor *t)
{
	return npz_member(o, t, 0);
}

static int npz_append(alcm_output *o, const void *p, size_t n)
{
	alcm_io_zipw *z = o->state;
	z->crc = alcm_io_crc32(z->crc, p, n);
	return alcm_io_out_write(o, p, n);
}

static int npz_end(alcm_output *o)
{
	alcm_io_zipw *z = o->state;
	z->e[z->n - 1].crc = z->crc;
	return ALCM_OK;
}

static int npz_commit(alcm_output *o)
{
	alcm_io_zipw *z = o->state;
	int rc = ALCM_OK;
	char q[ALCM_IO_QUOTE];
	alcm_io_name_ref *refs = alcm_mem_calloc(&o->alloc, z->n ? z->n : 1, sizeof(*refs));
	if (!refs)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < z->n; i++)
		refs[i] = (alcm_io_name_ref){(const uint8_t *)z->e[i].name, z->e[i].name_len, i};
	size_t d = alcm_io_names_dup(refs, z->n);
	if (d != SIZE_MAX)
		rc = alcm_io_out_fail(o, ALCM_E_ARG, "tensor name '%s' was written twice",
		                      alcm_io_quote(q, (const char *)refs[d].p, refs[d].len - 4));
	alcm_mem_free(&o->alloc, refs);
	return rc ? rc : alcm_io_zipw_finish(o, z);
}

static void npz_out_free(alcm_output *o)
{
	alcm_io_zipw *z = o->state;
	if (!z)
		return;
	alcm_io_zipw_free(o, z);
	alcm_mem_free(&o->alloc, z);
	o->state = NULL;
}

static int npz_plan(alcm_output *o)
{
	char q[ALCM_IO_QUOTE];
	for (size_t i = 0; i < o->plan_count; i++) {
		const alcm_io_entry *e = &o->plan[i];
		if (!alcm_io_npy_descr(e->dtype))
			return alcm_io_npy_refuse_bf16(o, e->name, e->name_len);
		if (e->name_len > 65535 - 4)
			return alcm_io_out_fail(o, ALCM_E_ARG,
			                        "tensor '%s': a name of %zu bytes does not fit a zip "
			                        "member name", alcm_io_quote(q, e->name, e->name_len),
			                        e->name_len);
	}
	return ALCM_OK;
}

static const alcm_io_out_ops npz_out_ops = {npz_plan,     npz_write,  npz_commit, npz_out_free,
                                             npz_begin,    npz_append, npz_end};

int alcm_io_npz_out(alcm_output *o)
{
	o->state = alcm_mem_calloc(&o->alloc, 1, sizeof(alcm_io_zipw));
	if (!o->state)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	o->ops = &npz_out_ops;
	return ALCM_OK;
}
