/* alcm_h5_input: walks an HDF5 file into tensors and a structure (spec/alcm-format.md 6.6). */
#include "h5_hdf5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A dataset carried by a tensor. */
typedef struct ds_entry {
	char *path;
	size_t path_len;
	int repr, dtype, swap;
	uint32_t ndim;
	uint64_t shape[ALCM_MAX_NDIM];
	uint64_t nbytes;
	uint64_t file_elem;     /* element size in the file, checked again at read */
} ds_entry;

/* An object record inside `recs`. */
typedef struct rec_ref {
	char *path;
	size_t path_len;
	size_t off, len;
} rec_ref;

typedef struct skip_entry {
	int kind;
	char *path, *attr, *reason, *display;
	size_t path_len;
} skip_entry;

/* Objects already visited, by address: aliases become hard links and cycles end. */
typedef struct addr_entry {
	ah5_addr_t addr;
	char *path;
	size_t path_len;
	int skipped;
} addr_entry;

struct alcm_h5_input {
	hid_t file, lapl, dapl;
	unsigned flags;
	alcm_limits lim;
	uint64_t size;
	char *label;
	int opened, poisoned;
	ds_entry *ds;
	size_t nds, ds_cap, next;
	ah5buf recs;
	rec_ref *refs;
	size_t nrefs, refs_cap;
	skip_entry *skip;
	size_t nskip, skip_cap;
	uint64_t skip_bytes;    /* their size in the payload */
	uint64_t pending;       /* links listed but not visited yet */
	addr_entry *addrs;
	size_t naddrs, addrs_cap;
	size_t *htab;           /* open addressing, indices + 1 into addrs */
	size_t hcap;
	ah5buf structure;
	uint8_t *buf;
	size_t buf_cap;
	/* ALCM_H5_ISOLATE: libhdf5 runs in `child`, messages arrive on `fd`. */
	int isolated, fd, done;
	int timeout_s, timed_out; /* seconds the child may stay silent (ALCM_H5_TIMEOUT) */
	unsigned cpu_s;           /* the child's CPU-time limit (RLIMIT_CPU) */
	pid_t child;
	char *tname;
	size_t received;
	char detail[ALCM_DETAIL_MAX];
};

#define QUOTE 160

static const char *quote(char *q, const char *s, size_t n)
{
	if (n == 0)
		return "/";
	alcm_detail_quote(q, QUOTE, s, n);
	return q;
}

static int fail(alcm_h5_input *in, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(alcm_h5_input *in, int status, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_detail_set(in->detail, "%s: %s", in->label ? in->label : "<input>", msg);
	return status;
}

static int fail_h5(alcm_h5_input *in, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_h5(alcm_h5_input *in, int status, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_detail_set(in->detail, "%s: %s", in->label ? in->label : "<input>", msg);
	ah5_append_hdf5_error(in->detail);
	return status;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 16;
	if (nc > SIZE_MAX / elem)
		return -1;
	void *q = realloc(*p, nc * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = nc;
	return 0;
}

/* Bytes of max_meta_bytes still free for the structure. */
static uint64_t budget(const alcm_h5_input *in)
{
	uint64_t used = AH5_HEADER_BYTES + in->recs.len + in->skip_bytes + in->pending;
	return used >= in->lim.max_meta_bytes ? 0 : in->lim.max_meta_bytes - used;
}

static int oom(alcm_h5_input *in)
{
	return fail(in, ALCM_E_NOMEM, "out of memory");
}

static int over(alcm_h5_input *in, const char *what, const char *path, size_t n)
{
	char q[QUOTE];
	return fail(in, ALCM_E_LIMIT, "%s '%s': the structure exceeds max_meta_bytes (%llu)", what,
	            quote(q, path, n), (unsigned long long)in->lim.max_meta_bytes);
}

/*
 * An object or attribute the spec cannot describe, or that the flags forbid: a skip with
 * ALCM_H5_SKIP_UNSUPPORTED, else an error naming it. @return ALCM_OK when skipped.
 */
static int unsupported(alcm_h5_input *in, const char *what, const char *path, size_t plen,
                       const char *attr, const char *reason)
{
	char q[QUOTE], qa[QUOTE];
	if (!(in->flags & ALCM_H5_SKIP_UNSUPPORTED)) {
		if (attr)
			return fail(in, ALCM_E_UNSUPPORTED, "attribute '%s' of '%s': %s",
			            quote(qa, attr, strlen(attr)), quote(q, path, plen), reason);
		return fail(in, ALCM_E_UNSUPPORTED, "%s '%s': %s", what, quote(q, path, plen), reason);
	}
	if (grow((void **)&in->skip, &in->skip_cap, in->nskip, sizeof(*in->skip)))
		return oom(in);
	skip_entry *s = &in->skip[in->nskip];
	memset(s, 0, sizeof(*s));
	s->kind = attr ? AH5_SKIP_ATTRIBUTE : AH5_SKIP_OBJECT;
	s->path = dupn(path, plen);
	s->path_len = plen;
	s->attr = attr ? dupn(attr, strlen(attr)) : NULL;
	s->reason = dupn(reason, strlen(reason));
	size_t dl = plen + (attr ? strlen(attr) : 0) + 32;
	s->display = malloc(dl);
	if (!s->path || (attr && !s->attr) || !s->reason || !s->display) {
		free(s->path), free(s->attr), free(s->reason), free(s->display);
		return oom(in);
	}
	if (attr)
		snprintf(s->display, dl, "%s (attribute '%s')", plen ? s->path : "/", attr);
	else
		snprintf(s->display, dl, "%s", plen ? s->path : "/");
	in->nskip++;
	in->skip_bytes += 1 + 4 + plen + (attr ? 4 + strlen(attr) : 0) + 4 + strlen(reason);
	if (budget(in) == 0)
		return over(in, what, path, plen);
	return ALCM_OK;
}

/* ---- visited objects ---- */

static uint64_t addr_hash(const ah5_addr_t *a)
{
	const uint8_t *p = (const uint8_t *)a;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof(*a); i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static addr_entry *addr_find(alcm_h5_input *in, const ah5_addr_t *a)
{
	if (!in->hcap)
		return NULL;
	size_t m = in->hcap - 1, i = (size_t)addr_hash(a) & m;
	while (in->htab[i]) {
		addr_entry *e = &in->addrs[in->htab[i] - 1];
		if (memcmp(&e->addr, a, sizeof(*a)) == 0)
			return e;
		i = (i + 1) & m;
	}
	return NULL;
}

static int addr_add(alcm_h5_input *in, const ah5_addr_t *a, const char *path, size_t n)
{
	if (grow((void **)&in->addrs, &in->addrs_cap, in->naddrs, sizeof(*in->addrs)))
		return oom(in);
	if (2 * (in->naddrs + 1) > in->hcap) {
		size_t nc = in->hcap ? in->hcap * 2 : 64;
		size_t *t = calloc(nc, sizeof(size_t));
		if (!t)
			return oom(in);
		for (size_t k = 0; k < in->naddrs; k++) {
			size_t i = (size_t)addr_hash(&in->addrs[k].addr) & (nc - 1);
			while (t[i])
				i = (i + 1) & (nc - 1);
			t[i] = k + 1;
		}
		free(in->htab);
		in->htab = t;
		in->hcap = nc;
	}
	addr_entry *e = &in->addrs[in->naddrs];
	memset(e, 0, sizeof(*e));
	memcpy(&e->addr, a, sizeof(*a));
	e->path = dupn(path, n);
	e->path_len = n;
	if (!e->path)
		return oom(in);
	size_t i = (size_t)addr_hash(a) & (in->hcap - 1);
	while (in->htab[i])
		i = (i + 1) & (in->hcap - 1);
	in->htab[i] = ++in->naddrs;
	return ALCM_OK;
}

/* ---- records ---- */

static int rec_begin(alcm_h5_input *in, int kind, const char *path, size_t n, size_t *start)
{
	*start = in->recs.len;
	in->recs.max = in->lim.max_meta_bytes;
	ah5buf_u8(&in->recs, (unsigned)kind);
	ah5buf_str(&in->recs, path, n);
	return ALCM_OK;
}

static int rec_end(alcm_h5_input *in, const char *what, const char *path, size_t n, size_t start)
{
	if (in->recs.oom)
		return oom(in);
	if (in->recs.over || budget(in) == 0)
		return over(in, what, path, n);
	if (grow((void **)&in->refs, &in->refs_cap, in->nrefs, sizeof(*in->refs)))
		return oom(in);
	rec_ref *r = &in->refs[in->nrefs];
	r->path = dupn(path, n);
	if (!r->path)
		return oom(in);
	r->path_len = n;
	r->off = start;
	r->len = in->recs.len - start;
	in->nrefs++;
	return ALCM_OK;
}

/* Drops a record begun but not finished (the object was skipped). */
static void rec_drop(alcm_h5_input *in, size_t start)
{
	in->recs.len = start;
	in->recs.over = 0;
}

/* ---- attributes ---- */

typedef struct attr_rec {
	char *name;
	size_t name_len, off, len;
} attr_rec;

typedef struct attr_ctx {
	alcm_h5_input *in;
	const char *path;
	size_t path_len;
	const char *what;
	ah5buf b;
	attr_rec *a;
	size_t n, cap;
	int rc;
} attr_ctx;

static int one_attr(attr_ctx *ac, hid_t loc, const char *name)
{
	alcm_h5_input *in = ac->in;
	char why[ALCM_DETAIL_MAX], q[QUOTE], qa[QUOTE];
	size_t nl = strlen(name);
	if (nl == 0)
		return unsupported(in, ac->what, ac->path, ac->path_len, "",
		                   "an attribute with an empty name");
	hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
	hid_t ft = at >= 0 ? H5Aget_type(at) : H5I_INVALID_HID;
	hid_t sp = at >= 0 ? H5Aget_space(at) : H5I_INVALID_HID;
	int rc = ALCM_OK;
	if (at < 0 || ft < 0 || sp < 0) {
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot open attribute '%s' of '%s'",
		             quote(qa, name, nl), quote(q, ac->path, ac->path_len));
		goto out;
	}
	uint64_t left = budget(in);
	left = left > ac->b.len ? left - ac->b.len : 0;
	ac->b.max = ac->b.len + left;
	size_t start = ac->b.len;
	ah5buf_str(&ac->b, name, nl);
	ah5_type_info ti;
	size_t tstart = ac->b.len;
	rc = ah5_type_encode(ft, &ac->b, why);
	if (rc == ALCM_OK)
		rc = ah5_type_classify(ac->b.p + tstart, ac->b.len - tstart, &ti, NULL);
	if (rc == ALCM_E_UNSUPPORTED) {
		ac->b.len = start;
		rc = unsupported(in, ac->what, ac->path, ac->path_len, name, why);
		goto out;
	}
	if (rc == ALCM_E_LIMIT || ac->b.over) {
		rc = over(in, "attribute of", ac->path, ac->path_len);
		goto out;
	}
	if (rc) {
		rc = rc == ALCM_E_NOMEM ? oom(in) : fail(in, rc, "attribute '%s': %s", name, why);
		goto out;
	}
	ah5_space_info si;
	ah5_space_encode(sp, &ac->b, &si);
	size_t lpos = ac->b.len;
	ah5buf_u64(&ac->b, 0);
	size_t vstart = ac->b.len;
	if (ah5buf_failed(&ac->b)) {
		rc = ac->b.oom ? oom(in) : over(in, "attribute of", ac->path, ac->path_len);
		goto out;
	}
	rc = ah5_value_read(at, 1, ft, &ti, si.count, ac->b.max - ac->b.len, &ac->b, why);
	if (rc) {
		if (rc == ALCM_E_LIMIT)
			rc = over(in, "attribute of", ac->path, ac->path_len);
		else
			rc = fail(in, rc, "attribute '%s' of '%s': %s", quote(qa, name, nl),
			          quote(q, ac->path, ac->path_len), why);
		goto out;
	}
	if (ah5buf_failed(&ac->b)) {
		rc = ac->b.oom ? oom(in) : over(in, "attribute of", ac->path, ac->path_len);
		goto out;
	}
	alcm_store64(ac->b.p + lpos, (uint64_t)(ac->b.len - vstart));
	if (grow((void **)&ac->a, &ac->cap, ac->n, sizeof(*ac->a))) {
		rc = oom(in);
		goto out;
	}
	attr_rec *r = &ac->a[ac->n];
	r->name = dupn(name, nl);
	if (!r->name) {
		rc = oom(in);
		goto out;
	}
	r->name_len = nl;
	r->off = start;
	r->len = ac->b.len - start;
	ac->n++;
out:
	ah5_close(sp);
	ah5_close(ft);
	ah5_close(at);
	return rc;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
	(void)info;
	attr_ctx *ac = data;
	ac->rc = one_attr(ac, loc, name);
	return ac->rc ? -1 : 0;
}

static int cmp_attr(const void *a, const void *b)
{
	const attr_rec *x = a, *y = b;
	return ah5_cmp((const uint8_t *)x->name, x->name_len, (const uint8_t *)y->name, y->name_len);
}

/*
 * libhdf5 1.10-1.14 builds a table of an object's compact attributes to iterate them; when
 * an attribute message fails to decode halfway, it frees the table's uninitialised tail and
 * crashes (H5A__compact_build_table / H5A__attr_release_table). Looking up a name that no
 * attribute has decodes every message first, failing cleanly; decoded messages stay cached,
 * so the table is then built from good messages. Two names, in case a file holds one.
 */
static herr_t preflight_attrs(hid_t obj)
{
	htri_t a = H5Aexists(obj, "\x01" "alcm preflight \x02");
	if (a < 0)
		return -1;
	if (a == 0)
		return 0;
	a = H5Aexists(obj, "\x03" "alcm preflight \x04");
	return a == 0 ? 0 : -1;
}

/* Appends "u32 count, attributes sorted by name" of obj to the current record. */
static int put_attrs(alcm_h5_input *in, hid_t obj, const char *what, const char *path, size_t n)
{
	attr_ctx ac;
	memset(&ac, 0, sizeof(ac));
	ac.in = in;
	ac.path = path;
	ac.path_len = n;
	ac.what = what;
	hsize_t idx = 0;
	herr_t e = preflight_attrs(obj);
	if (e >= 0)
		e = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &ac);
	int rc = ac.rc;
	if (!rc && e < 0) {
		char q[QUOTE];
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot list the attributes of '%s'",
		             quote(q, path, n));
	}
	if (!rc) {
		if (ac.n > 1)
			qsort(ac.a, ac.n, sizeof(*ac.a), cmp_attr);
		ah5buf_u32(&in->recs, (uint32_t)ac.n);
		for (size_t i = 0; i < ac.n; i++)
			ah5buf_put(&in->recs, ac.b.p + ac.a[i].off, ac.a[i].len);
	}
	for (size_t i = 0; i < ac.n; i++)
		free(ac.a[i].name);
	free(ac.a);
	ah5buf_free(&ac.b);
	return rc;
}

/* ---- objects ---- */

static int do_group(alcm_h5_input *in, hid_t g, const char *path, size_t n)
{
	size_t start;
	rec_begin(in, AH5_OBJ_GROUP, path, n, &start);
	int rc = put_attrs(in, g, "group", path, n);
	if (rc) {
		rec_drop(in, start);
		return rc;
	}
	return rec_end(in, "group", path, n, start);
}

static int do_datatype(alcm_h5_input *in, hid_t loc, const char *name, const char *path, size_t n)
{
	char why[ALCM_DETAIL_MAX], q[QUOTE];
	hid_t t = H5Topen2(loc, name, H5P_DEFAULT);
	if (t < 0)
		return fail_h5(in, ALCM_E_CORRUPT, "cannot open the datatype '%s'", quote(q, path, n));
	size_t start;
	rec_begin(in, AH5_OBJ_DATATYPE, path, n, &start);
	int rc = ah5_type_encode(t, &in->recs, why);
	if (rc == ALCM_E_UNSUPPORTED) {
		rec_drop(in, start);
		rc = unsupported(in, "datatype", path, n, NULL, why);
		H5Tclose(t);
		return rc == ALCM_OK ? 1 : rc;
	}
	if (!rc)
		rc = put_attrs(in, t, "datatype", path, n);
	H5Tclose(t);
	if (rc) {
		rec_drop(in, start);
		return rc == ALCM_E_LIMIT ? over(in, "datatype", path, n) : rc;
	}
	return rec_end(in, "datatype", path, n, start);
}

/* Storage hints; also judges external storage, virtual layout and filters. @return 1 when
 * the dataset was skipped. */
static int put_storage(alcm_h5_input *in, hid_t dcpl, const ah5_space_info *si,
                       const ah5_type_info *ti, const char *path, size_t n)
{
	char q[QUOTE], why[ALCM_DETAIL_MAX];
	H5D_layout_t layout = H5Pget_layout(dcpl);
	int ext = H5Pget_external_count(dcpl);
	if (layout < 0 || ext < 0)
		return fail_h5(in, ALCM_E_CORRUPT, "dataset '%s': unreadable storage properties",
		               quote(q, path, n));
	if ((ext > 0 || layout == H5D_VIRTUAL) && !(in->flags & ALCM_H5_ALLOW_EXTERNAL)) {
		int rc = unsupported(in, "dataset", path, n, NULL,
		                     ext > 0 ? "its data is stored in external files (allowed only "
		                               "with ALCM_H5_ALLOW_EXTERNAL)"
		                             : "a virtual dataset maps other datasets (allowed only "
		                               "with ALCM_H5_ALLOW_EXTERNAL)");
		return rc ? rc : 1;
	}
	unsigned lay = layout == H5D_CHUNKED ? AH5_LAYOUT_CHUNKED
	             : layout == H5D_COMPACT ? AH5_LAYOUT_COMPACT
	             : layout == H5D_VIRTUAL ? AH5_LAYOUT_VIRTUAL : AH5_LAYOUT_CONTIGUOUS;
	if (lay == AH5_LAYOUT_CHUNKED && si->cls != AH5_SPACE_SIMPLE)
		lay = AH5_LAYOUT_CONTIGUOUS;
	ah5buf_u8(&in->recs, lay);
	ah5buf_u8(&in->recs, ext > 0);
	if (lay == AH5_LAYOUT_CHUNKED) {
		hsize_t cd[H5S_MAX_RANK];
		int r = H5Pget_chunk(dcpl, H5S_MAX_RANK, cd);
		uint64_t bytes = ti->variable ? 16 : ti->size;
		if (r != (int)si->rank)
			return fail_h5(in, ALCM_E_CORRUPT, "dataset '%s': chunk rank %d, dataset rank %u",
			               quote(q, path, n), r, si->rank);
		for (int i = 0; i < r; i++) {
			if (cd[i] == 0 || cd[i] > UINT32_MAX || alcm_mul_u64(bytes, cd[i], &bytes) ||
			    (si->maxdims[i] != UINT64_MAX && si->maxdims[i] && cd[i] > si->maxdims[i]))
				return fail(in, ALCM_E_CORRUPT, "dataset '%s': chunk dimension %d is %llu",
				            quote(q, path, n), i, (unsigned long long)cd[i]);
			ah5buf_u64(&in->recs, cd[i]);
		}
		if (bytes > in->lim.max_decoded_bytes || bytes > UINT32_MAX)
			return fail(in, ALCM_E_LIMIT, "dataset '%s': chunks of %llu bytes exceed the "
			            "limit", quote(q, path, n), (unsigned long long)bytes);
	}
	int nf = H5Pget_nfilters(dcpl);
	if (nf < 0 || nf > AH5_MAX_FILTERS || (nf && lay != AH5_LAYOUT_CHUNKED))
		return fail_h5(in, ALCM_E_CORRUPT, "dataset '%s': %d filters", quote(q, path, n), nf);
	ah5buf_u8(&in->recs, (unsigned)nf);
	for (int i = 0; i < nf; i++) {
		unsigned flags = 0, cd[AH5_MAX_CD], config = 0;
		size_t ncd = AH5_MAX_CD;
		char fname[80] = "";
		H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof(fname),
		                                 fname, &config);
		if (id < 0 || id > 65535)
			return fail_h5(in, ALCM_E_CORRUPT, "dataset '%s': unreadable filter %d",
			               quote(q, path, n), i);
		if (ncd > AH5_MAX_CD)
			ncd = AH5_MAX_CD; /* a hint only: the filter itself reads its own values */
		htri_t avail = H5Zfilter_avail(id);
		unsigned fconf = 0;
		if (avail > 0 && H5Zget_filter_info(id, &fconf) < 0)
			fconf = 0;
		H5Eclear2(H5E_DEFAULT);
		if (avail <= 0 || !(fconf & H5Z_FILTER_CONFIG_DECODE_ENABLED)) {
			char fq[96];
			alcm_detail_quote(fq, sizeof(fq), fname, strnlen(fname, sizeof(fname)));
			snprintf(why, sizeof(why), "filter %d ('%s') cannot be decoded by this libhdf5%s",
			         (int)id, fq,
			         (in->flags & ALCM_H5_ALLOW_PLUGINS) ? " nor by a plugin in HDF5_PLUGIN_PATH"
			                                            : " (plugins not allowed: "
			                                              "ALCM_H5_ALLOW_PLUGINS)");
			int rc = unsupported(in, "dataset", path, n, NULL, why);
			return rc ? rc : 1;
		}
		ah5buf_u32(&in->recs, (uint32_t)id);
		ah5buf_u32(&in->recs, flags);
		ah5buf_u32(&in->recs, (uint32_t)ncd);
		for (size_t k = 0; k < ncd; k++)
			ah5buf_u32(&in->recs, cd[k]);
	}
	return ALCM_OK;
}

/* Tensor shape and size of a dataset, checked against the limits. */
static int tensor_of(alcm_h5_input *in, ds_entry *d, const ah5_space_info *si,
                     const ah5_type_info *ti, const char *path, size_t n)
{
	char q[QUOTE];
	uint32_t r = si->cls == AH5_SPACE_SIMPLE ? si->rank : 0;
	d->ndim = r + (d->repr == AH5_REPR_RAW);
	if (d->ndim > in->lim.max_ndim || d->ndim > ALCM_MAX_NDIM)
		return fail(in, ALCM_E_LIMIT, "dataset '%s': rank %u exceeds the limit of %u",
		            quote(q, path, n), d->ndim, in->lim.max_ndim);
	memcpy(d->shape, si->dims, r * sizeof(uint64_t));
	if (d->repr == AH5_REPR_RAW)
		d->shape[r] = ti->size;
	uint64_t el, nb;
	if (alcm_shape_elements(d->shape, d->ndim, &el) || el > in->lim.max_elements)
		return fail(in, ALCM_E_LIMIT, "dataset '%s': its element count exceeds the limit of %llu",
		            quote(q, path, n), (unsigned long long)in->lim.max_elements);
	if (alcm_mul_u64(el, alcm_dtype_size(d->dtype), &nb) || nb > in->lim.max_decoded_bytes ||
	    nb > SIZE_MAX)
		return fail(in, ALCM_E_LIMIT, "dataset '%s': its size exceeds the limit of %llu bytes",
		            quote(q, path, n), (unsigned long long)in->lim.max_decoded_bytes);
	d->nbytes = nb;
	d->file_elem = ti->size;
	return ALCM_OK;
}

static int do_dataset(alcm_h5_input *in, hid_t loc, const char *name, const char *path, size_t n)
{
	char why[ALCM_DETAIL_MAX], q[QUOTE];
	hid_t ds = H5Dopen2(loc, name, in->dapl);
	hid_t ft = ds >= 0 ? H5Dget_type(ds) : H5I_INVALID_HID;
	hid_t sp = ds >= 0 ? H5Dget_space(ds) : H5I_INVALID_HID;
	hid_t dcpl = ds >= 0 ? H5Dget_create_plist(ds) : H5I_INVALID_HID;
	size_t start = 0;
	int rc = ALCM_OK, begun = 0;
	if (ds < 0 || ft < 0 || sp < 0 || dcpl < 0) {
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot open dataset '%s'", quote(q, path, n));
		goto out;
	}
	rec_begin(in, AH5_OBJ_DATASET, path, n, &start);
	begun = 1;
	size_t hdr = in->recs.len;
	ah5buf_u8(&in->recs, 0); /* repr, dtype: patched below */
	ah5buf_u8(&in->recs, 0);
	size_t tstart = in->recs.len;
	ah5_type_info ti;
	rc = ah5_type_encode(ft, &in->recs, why);
	if (rc == ALCM_OK)
		rc = ah5_type_classify(in->recs.p + tstart, in->recs.len - tstart, &ti, NULL);
	if (rc == ALCM_E_UNSUPPORTED) {
		rec_drop(in, start);
		begun = 0;
		rc = unsupported(in, "dataset", path, n, NULL, why);
		goto out;
	}
	if (rc)
		goto fail_rc;
	ah5_space_info si;
	ah5_space_encode(sp, &in->recs, &si);
	if ((rc = put_storage(in, dcpl, &si, &ti, path, n))) {
		if (rc == 1) {
			rec_drop(in, start);
			begun = 0;
			rc = ALCM_OK;
		}
		goto out;
	}
	ds_entry d;
	memset(&d, 0, sizeof(d));
	if (si.cls == AH5_SPACE_NULL || ti.variable) {
		d.repr = AH5_REPR_INLINE;
	} else if (ti.dtype) {
		d.repr = AH5_REPR_NUMERIC;
		d.dtype = ti.dtype;
		d.swap = ti.swap;
	} else if (ti.cls == AH5_T_ENUM && ti.enum_dtype) {
		d.repr = AH5_REPR_ENUM;
		d.dtype = ti.enum_dtype;
		d.swap = ti.swap;
	} else {
		d.repr = AH5_REPR_RAW;
		d.dtype = ALCM_DTYPE_U8;
	}
	if (in->recs.p && !in->recs.oom && !in->recs.over) {
		in->recs.p[hdr] = (uint8_t)d.repr;
		in->recs.p[hdr + 1] = (uint8_t)d.dtype;
	}
	if (d.repr == AH5_REPR_INLINE) {
		size_t lpos = in->recs.len;
		ah5buf_u64(&in->recs, 0);
		size_t vstart = in->recs.len;
		if (ah5buf_failed(&in->recs)) {
			rc = in->recs.oom ? ALCM_E_NOMEM : ALCM_E_LIMIT;
			goto fail_rc;
		}
		rc = ah5_value_read(ds, 0, ft, &ti, si.count, budget(in), &in->recs, why);
		if (rc == ALCM_E_CORRUPT) {
			rc = fail(in, rc, "dataset '%s': %s", quote(q, path, n), why);
			goto out;
		}
		if (rc || ah5buf_failed(&in->recs)) {
			rc = rc ? rc : in->recs.oom ? ALCM_E_NOMEM : ALCM_E_LIMIT;
			goto fail_rc;
		}
		alcm_store64(in->recs.p + lpos, (uint64_t)(in->recs.len - vstart));
	} else {
		if ((rc = tensor_of(in, &d, &si, &ti, path, n)))
			goto out;
		if (in->nds >= in->lim.max_tensors) {
			rc = fail(in, ALCM_E_LIMIT, "dataset '%s': more than %u datasets",
			          quote(q, path, n), in->lim.max_tensors);
			goto out;
		}
		if (grow((void **)&in->ds, &in->ds_cap, in->nds, sizeof(*in->ds))) {
			rc = oom(in);
			goto out;
		}
		d.path = dupn(path, n);
		d.path_len = n;
		if (!d.path) {
			rc = oom(in);
			goto out;
		}
		in->ds[in->nds++] = d;
	}
	if ((rc = put_attrs(in, ds, "dataset", path, n)))
		goto out;
	begun = 0;
	rc = rec_end(in, "dataset", path, n, start);
	goto out;
fail_rc:
	if (rc == ALCM_E_NOMEM)
		rc = oom(in);
	else if (rc == ALCM_E_LIMIT)
		rc = over(in, "dataset", path, n);
	else
		rc = fail(in, rc, "dataset '%s': %s", quote(q, path, n), why);
out:
	if (begun && rc)
		rec_drop(in, start);
	ah5_close(dcpl);
	ah5_close(sp);
	ah5_close(ft);
	ah5_close(ds);
	return rc;
}

/* ---- the walk ---- */

typedef struct link_item {
	char *name;
	H5L_type_t type;
	ah5_addr_t addr;
	size_t val_size;
} link_item;

typedef struct link_list {
	alcm_h5_input *in;
	link_item *l;
	size_t n, cap;
	uint64_t bytes, max;
	int rc;
} link_list;

static herr_t link_cb(hid_t g, const char *name, const ah5_linfo_t *info, void *data)
{
	(void)g;
	link_list *ll = data;
	size_t nl = strlen(name);
	ll->bytes += nl + sizeof(link_item) + 1;
	if (ll->bytes > ll->max) {
		ll->rc = ALCM_E_LIMIT;
		return -1;
	}
	if (grow((void **)&ll->l, &ll->cap, ll->n, sizeof(*ll->l))) {
		ll->rc = ALCM_E_NOMEM;
		return -1;
	}
	link_item *it = &ll->l[ll->n];
	memset(it, 0, sizeof(*it));
	it->name = dupn(name, nl);
	if (!it->name) {
		ll->rc = ALCM_E_NOMEM;
		return -1;
	}
	it->type = info->type;
	if (info->type == H5L_TYPE_HARD)
		memcpy(&it->addr, &AH5_LINFO_ADDR(info), sizeof(it->addr));
	else
		it->val_size = info->u.val_size;
	ll->n++;
	return 0;
}

static int do_link_value(alcm_h5_input *in, hid_t g, const link_item *it, const char *path,
                         size_t n)
{
	char q[QUOTE];
	size_t vs = it->val_size;
	if (vs == 0 || vs > 2 * (size_t)in->lim.max_name_bytes + 16)
		return fail(in, vs ? ALCM_E_LIMIT : ALCM_E_CORRUPT,
		            "link '%s': its value of %zu bytes is empty or exceeds the name limit",
		            quote(q, path, n), vs);
	char *v = calloc(vs + 1, 1);
	if (!v)
		return oom(in);
	int rc = ALCM_OK;
	if (H5Lget_val(g, it->name, v, vs, H5P_DEFAULT) < 0) {
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot read link '%s'", quote(q, path, n));
		goto out;
	}
	size_t start;
	if (it->type == H5L_TYPE_SOFT) {
		size_t tl = strnlen(v, vs);
		if (tl == 0) {
			rc = fail(in, ALCM_E_CORRUPT, "soft link '%s' with an empty target",
			          quote(q, path, n));
			goto out;
		}
		rec_begin(in, AH5_OBJ_SOFT, path, n, &start);
		ah5buf_str(&in->recs, v, tl);
		rc = rec_end(in, "link", path, n, start);
	} else {
		unsigned fl;
		const char *file = NULL, *obj = NULL;
		if (H5Lunpack_elink_val(v, vs, &fl, &file, &obj) < 0 || !file || !obj || !*file ||
		    !*obj) {
			rc = fail_h5(in, ALCM_E_CORRUPT, "external link '%s' has an unreadable value",
			             quote(q, path, n));
			goto out;
		}
		rec_begin(in, AH5_OBJ_EXTERNAL, path, n, &start);
		ah5buf_str(&in->recs, file, strlen(file));
		ah5buf_str(&in->recs, obj, strlen(obj));
		rc = rec_end(in, "link", path, n, start);
	}
out:
	free(v);
	return rc;
}

/*
 * The walk: depth-first, pre-order, links of each group in name order, with an explicit
 * stack of groups being listed (no recursion: a hostile file may nest groups thousands
 * deep). A group's links are listed when it is entered; their bytes count against
 * max_meta_bytes until the walk leaves the group.
 */
typedef struct frame {
	char *path;
	size_t n;
	hid_t g;
	link_list ll;
	size_t next;
} frame;

typedef struct walk_stack {
	frame *f;
	size_t n, cap;
} walk_stack;

static void frame_free(frame *f)
{
	for (size_t i = 0; i < f->ll.n; i++)
		free(f->ll.l[i].name);
	free(f->ll.l);
	free(f->path);
	if (f->g >= 0)
		H5Gclose(f->g);
}

/* Opens group `g` (owned from here on) at `path` and lists its links onto the stack. */
static int enter_group(alcm_h5_input *in, walk_stack *st, hid_t g, const char *path, size_t n)
{
	char q[QUOTE];
	if (grow((void **)&st->f, &st->cap, st->n, sizeof(*st->f))) {
		H5Gclose(g);
		return oom(in);
	}
	frame *f = &st->f[st->n];
	memset(f, 0, sizeof(*f));
	f->g = g;
	f->path = dupn(path, n);
	f->n = n;
	st->n++;
	if (!f->path)
		return oom(in);
	f->ll.in = in;
	f->ll.max = budget(in);
	hsize_t idx = 0;
	herr_t e = ah5_literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, link_cb, &f->ll);
	in->pending += f->ll.bytes;
	if (f->ll.rc == ALCM_E_LIMIT)
		return over(in, "group", path, n);
	if (f->ll.rc == ALCM_E_NOMEM)
		return oom(in);
	if (e < 0)
		return fail_h5(in, ALCM_E_CORRUPT, "cannot list the links of group '%s'",
		               quote(q, path, n));
	return ALCM_OK;
}

static int visit_hard(alcm_h5_input *in, walk_stack *st, const link_item *it,
                      const char *cpath, size_t cn);

/* One link of the group on top of the stack. */
static int visit(alcm_h5_input *in, walk_stack *st, const link_item *it)
{
	char q[QUOTE];
	const frame *f = &st->f[st->n - 1];
	hid_t g = f->g;
	size_t gn = f->n, nl = strlen(it->name);
	size_t cn = gn ? gn + 1 + nl : nl;
	if (cn > in->lim.max_name_bytes)
		return fail(in, ALCM_E_LIMIT, "a path under '%s' is %zu bytes, over the limit of %u",
		            quote(q, f->path, gn), cn, in->lim.max_name_bytes);
	char *cpath = malloc(cn + 1);
	if (!cpath)
		return oom(in);
	if (gn) {
		memcpy(cpath, f->path, gn);
		cpath[gn] = '/';
	}
	memcpy(cpath + (gn ? gn + 1 : 0), it->name, nl + 1);
	int rc = ALCM_OK;
	if (nl == 0 || strcmp(it->name, ".") == 0 || strchr(it->name, '/')) {
		rc = unsupported(in, "link", cpath, cn, NULL,
		                 "its name cannot be used as an HDF5 path component");
	} else if (it->type == H5L_TYPE_SOFT) {
		rc = do_link_value(in, g, it, cpath, cn);
	} else if (it->type == H5L_TYPE_EXTERNAL) {
		if (!(in->flags & ALCM_H5_ALLOW_EXTERNAL))
			rc = unsupported(in, "external link", cpath, cn, NULL,
			                 "external links are kept only with ALCM_H5_ALLOW_EXTERNAL");
		else
			rc = do_link_value(in, g, it, cpath, cn);
	} else if (it->type != H5L_TYPE_HARD) {
		rc = unsupported(in, "link", cpath, cn, NULL,
		                 "user-defined link classes are not supported");
	} else {
		rc = visit_hard(in, st, it, cpath, cn);
	}
	free(cpath);
	return rc;
}

static int visit_hard(alcm_h5_input *in, walk_stack *st, const link_item *it,
                      const char *cpath, size_t cn)
{
	char q[QUOTE];
	hid_t g = st->f[st->n - 1].g;
	addr_entry *seen = addr_find(in, &it->addr);
	if (seen) {
		if (seen->skipped) {
			char why[ALCM_DETAIL_MAX], sq[QUOTE];
			snprintf(why, sizeof(why), "a hard link to the skipped object '%s'",
			         quote(sq, seen->path, seen->path_len));
			return unsupported(in, "link", cpath, cn, NULL, why);
		}
		size_t start;
		rec_begin(in, AH5_OBJ_HARD, cpath, cn, &start);
		ah5buf_str(&in->recs, seen->path, seen->path_len);
		return rec_end(in, "link", cpath, cn, start);
	}
	ah5_oinfo_t oi;
	if (ah5_oinfo_by_name(g, it->name, &oi, in->lapl) < 0)
		return fail_h5(in, ALCM_E_CORRUPT, "cannot read the object '%s'", quote(q, cpath, cn));
	int rc = addr_add(in, &it->addr, cpath, cn);
	if (rc)
		return rc;
	size_t mine = in->naddrs - 1, nskip = in->nskip;
	switch (oi.type) {
	case H5O_TYPE_GROUP: {
		hid_t cg = H5Gopen2(g, it->name, H5P_DEFAULT);
		if (cg < 0)
			return fail_h5(in, ALCM_E_CORRUPT, "cannot open group '%s'", quote(q, cpath, cn));
		rc = do_group(in, cg, cpath, cn);
		if (rc)
			H5Gclose(cg);
		else
			rc = enter_group(in, st, cg, cpath, cn);
		break;
	}
	case H5O_TYPE_DATASET:
		rc = do_dataset(in, g, it->name, cpath, cn);
		break;
	case H5O_TYPE_NAMED_DATATYPE:
		rc = do_datatype(in, g, it->name, cpath, cn);
		if (rc == 1)
			rc = ALCM_OK;
		break;
	default:
		rc = unsupported(in, "object", cpath, cn, NULL, "an object of unknown type");
		break;
	}
	/* The object itself (not one of its attributes) was skipped: so are its aliases. */
	if (!rc && in->nskip > nskip && in->skip[in->nskip - 1].kind == AH5_SKIP_OBJECT &&
	    in->skip[in->nskip - 1].path_len == cn &&
	    memcmp(in->skip[in->nskip - 1].path, cpath, cn) == 0)
		in->addrs[mine].skipped = 1;
	return rc;
}

static int cmp_ref(const void *a, const void *b)
{
	const rec_ref *x = a, *y = b;
	return ah5_cmp((const uint8_t *)x->path, x->path_len, (const uint8_t *)y->path, y->path_len);
}

static int cmp_ds(const void *a, const void *b)
{
	const ds_entry *x = a, *y = b;
	return ah5_cmp((const uint8_t *)x->path, x->path_len, (const uint8_t *)y->path, y->path_len);
}

static int cmp_skip(const void *a, const void *b)
{
	const skip_entry *x = a, *y = b;
	int c = ah5_cmp((const uint8_t *)x->path, x->path_len, (const uint8_t *)y->path,
	                y->path_len);
	if (c)
		return c;
	if (!x->attr || !y->attr)
		return !!x->attr - !!y->attr;
	return strcmp(x->attr, y->attr);
}

static int assemble(alcm_h5_input *in)
{
	if (in->nrefs > 1)
		qsort(in->refs, in->nrefs, sizeof(*in->refs), cmp_ref);
	if (in->nds > 1)
		qsort(in->ds, in->nds, sizeof(*in->ds), cmp_ds);
	if (in->nskip > 1)
		qsort(in->skip, in->nskip, sizeof(*in->skip), cmp_skip);
	ah5buf *b = &in->structure;
	b->max = in->lim.max_meta_bytes;
	ah5buf_put(b, AH5_MAGIC, 4);
	ah5buf_u8(b, ALCM_H5_STRUCT_MAJOR);
	ah5buf_u8(b, ALCM_H5_STRUCT_MINOR);
	ah5buf_u8(b, 0);
	ah5buf_u8(b, 0);
	ah5buf_u32(b, (uint32_t)in->nrefs);
	ah5buf_u32(b, (uint32_t)in->nskip);
	for (size_t i = 0; i < in->nrefs; i++)
		ah5buf_put(b, in->recs.p + in->refs[i].off, in->refs[i].len);
	for (size_t i = 0; i < in->nskip; i++) {
		const skip_entry *s = &in->skip[i];
		ah5buf_u8(b, (unsigned)s->kind);
		ah5buf_str(b, s->path, s->path_len);
		if (s->attr)
			ah5buf_str(b, s->attr, strlen(s->attr));
		ah5buf_str(b, s->reason, strlen(s->reason));
	}
	if (b->oom)
		return oom(in);
	if (b->over || in->nrefs > UINT32_MAX || in->nskip > UINT32_MAX)
		return over(in, "file", "", 0);
	/* The walk's records are no longer needed. */
	ah5buf_free(&in->recs);
	char why[ALCM_DETAIL_MAX];
	int rc = alcm_h5_structure_check(b->p, b->len, NULL, why);
	if (rc)
		return fail(in, ALCM_E_CORRUPT, "internal error: %s", why);
	return ALCM_OK;
}

static int walk(alcm_h5_input *in)
{
	walk_stack st;
	memset(&st, 0, sizeof(st));
	hid_t root = H5Gopen2(in->file, "/", H5P_DEFAULT);
	if (root < 0)
		return fail_h5(in, ALCM_E_CORRUPT, "cannot open the root group");
	ah5_oinfo_t oi;
	int rc = ALCM_OK;
	if (ah5_oinfo_by_name(in->file, "/", &oi, in->lapl) < 0)
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot read the root group");
	if (!rc)
		rc = addr_add(in, &AH5_OINFO_ADDR(oi), "", 0);
	if (!rc)
		rc = do_group(in, root, "", 0);
	if (rc)
		H5Gclose(root);
	else
		rc = enter_group(in, &st, root, "", 0);
	while (!rc && st.n) {
		frame *f = &st.f[st.n - 1];
		if (f->next == f->ll.n) {
			in->pending -= f->ll.bytes;
			frame_free(f);
			st.n--;
			continue;
		}
		/* visit() may push a frame and move st.f: copy the item's address out first. */
		link_item it = f->ll.l[f->next++];
		rc = visit(in, &st, &it);
	}
	for (size_t i = 0; i < st.n; i++)
		frame_free(&st.f[i]);
	free(st.f);
	in->pending = 0;
	return rc ? rc : assemble(in);
}

/* ---- public ---- */

static herr_t deny_elink(const char *parent_file, const char *parent_group,
                         const char *child_file, const char *child_object, unsigned *acc_flags,
                         hid_t fapl, void *op_data)
{
	(void)parent_file, (void)parent_group, (void)child_file, (void)child_object;
	(void)acc_flags, (void)fapl, (void)op_data;
	return -1;
}

static int open_common(alcm_h5_input **out, const char *path, const void *buf, size_t len,
                       const alcm_limits *lim, unsigned flags)
{
	if (!out)
		return ALCM_E_ARG;
	*out = NULL;
	alcm_h5_input *in = calloc(1, sizeof(*in));
	if (!in)
		return ALCM_E_NOMEM;
	*out = in;
	in->file = in->lapl = in->dapl = H5I_INVALID_HID;
	in->fd = -1;
	in->flags = flags;
	if (lim)
		in->lim = *lim;
	else
		alcm_limits_default(&in->lim);
	if (in->lim.max_ndim > ALCM_MAX_NDIM)
		in->lim.max_ndim = ALCM_MAX_NDIM;
	in->label = dupn(path ? path : "<memory>", strlen(path ? path : "<memory>"));
	if (!in->label)
		return ALCM_E_NOMEM;
	if ((!path && !buf) || (buf && !len) ||
	    (flags & ~(ALCM_H5_SKIP_UNSUPPORTED | ALCM_H5_ALLOW_EXTERNAL | ALCM_H5_ALLOW_PLUGINS |
	               ALCM_H5_ISOLATE)))
		return fail(in, ALCM_E_ARG, "bad argument");
	if (path) {
		/* Say why a file cannot be opened before libhdf5 guesses. */
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat sb;
		if (fd < 0 || fstat(fd, &sb) != 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return fail(in, ALCM_E_IO, "cannot open: %s", strerror(e));
		}
		close(fd);
		if (!S_ISREG(sb.st_mode))
			return fail(in, ALCM_E_IO, "not a regular file");
		in->size = (uint64_t)sb.st_size;
	} else {
		in->size = len;
	}
	ah5_guard g;
	ah5_guard_enter(&g, (flags & ALCM_H5_ALLOW_PLUGINS) != 0);
	int rc = ALCM_OK;
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	in->lapl = H5Pcreate(H5P_LINK_ACCESS);
	in->dapl = H5Pcreate(H5P_DATASET_ACCESS);
	if (fapl < 0 || in->lapl < 0 || in->dapl < 0 ||
	    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
	    H5Pset_elink_cb(in->lapl, deny_elink, NULL) < 0 ||
	    H5Pset_elink_cb(in->dapl, deny_elink, NULL) < 0 ||
	    ((flags & ALCM_H5_ALLOW_EXTERNAL) &&
	     (H5Pset_efile_prefix(in->dapl, "${ORIGIN}") < 0 ||
	      H5Pset_virtual_prefix(in->dapl, "${ORIGIN}") < 0))) {
		rc = fail_h5(in, ALCM_E_NOMEM, "cannot set up libhdf5 property lists");
		goto out;
	}
	if (buf && (H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
	            H5Pset_file_image(fapl, (void *)(uintptr_t)buf, len) < 0)) {
		rc = fail_h5(in, ALCM_E_NOMEM, "cannot hand the file image to libhdf5");
		goto out;
	}
	in->file = H5Fopen(path ? path : "alcm-memory-image.h5", H5F_ACC_RDONLY, fapl);
	if (in->file < 0) {
		rc = fail_h5(in, ALCM_E_CORRUPT, "not an HDF5 file, or its superblock is damaged");
		goto out;
	}
	rc = walk(in);
	if (!rc)
		in->opened = 1;
out:
	ah5_close(fapl);
	ah5_guard_leave(&g);
	return rc;
}

static int isolate_open(alcm_h5_input **out, const char *path, const void *buf, size_t len,
                        const alcm_limits *lim, unsigned flags);

int alcm_h5_input_open(alcm_h5_input **out, const char *path, const alcm_limits *lim,
                       unsigned flags)
{
	if (!path)
		return out ? (*out = NULL, ALCM_E_ARG) : ALCM_E_ARG;
	if (flags & ALCM_H5_ISOLATE)
		return isolate_open(out, path, NULL, 0, lim, flags);
	return open_common(out, path, NULL, 0, lim, flags);
}

int alcm_h5_input_open_memory(alcm_h5_input **out, const void *buf, size_t len,
                              const alcm_limits *lim, unsigned flags)
{
	if (!buf || !len)
		return out ? (*out = NULL, ALCM_E_ARG) : ALCM_E_ARG;
	if (flags & ALCM_H5_ISOLATE)
		return isolate_open(out, NULL, buf, len, lim, flags);
	return open_common(out, NULL, buf, len, lim, flags);
}

static void swap_bytes(uint8_t *p, uint64_t nbytes, size_t es)
{
	for (uint64_t i = 0; i + es <= nbytes; i += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			uint8_t t = p[i + a];
			p[i + a] = p[i + b];
			p[i + b] = t;
		}
}

static int read_tensor(alcm_h5_input *in, const ds_entry *d)
{
	char q[QUOTE];
	const char *qp = quote(q, d->path, d->path_len);
	if (d->nbytes > in->buf_cap || !in->buf) {
		free(in->buf);
		in->buf_cap = 0;
		in->buf = malloc(d->nbytes ? (size_t)d->nbytes : 1);
		if (!in->buf)
			return fail(in, ALCM_E_NOMEM, "dataset '%s': out of memory for %llu bytes", qp,
			            (unsigned long long)d->nbytes);
		in->buf_cap = d->nbytes ? (size_t)d->nbytes : 1;
	}
	char *full = malloc(d->path_len + 2);
	if (!full)
		return oom(in);
	full[0] = '/';
	memcpy(full + 1, d->path, d->path_len + 1);
	hid_t ds = H5Dopen2(in->file, full, in->dapl);
	free(full);
	hid_t ft = ds >= 0 ? H5Dget_type(ds) : H5I_INVALID_HID;
	hid_t sp = ds >= 0 ? H5Dget_space(ds) : H5I_INVALID_HID;
	hid_t mt = ft >= 0 ? H5Tcopy(ft) : H5I_INVALID_HID;
	int rc = ALCM_OK;
	if (ds < 0 || ft < 0 || sp < 0 || mt < 0) {
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot open dataset '%s'", qp);
		goto out;
	}
	hssize_t np = H5Sget_simple_extent_npoints(sp);
	uint64_t want = d->nbytes / (d->repr == AH5_REPR_RAW ? d->file_elem : alcm_dtype_size(d->dtype));
	if (np < 0 || (uint64_t)np != want || H5Tget_size(ft) != d->file_elem) {
		rc = fail(in, ALCM_E_CORRUPT, "dataset '%s' changed since the file was opened", qp);
		goto out;
	}
	if (d->nbytes && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, in->buf) < 0) {
		rc = fail_h5(in, ALCM_E_CORRUPT, "cannot read dataset '%s'", qp);
		goto out;
	}
	if (d->swap)
		swap_bytes(in->buf, d->nbytes, alcm_dtype_size(d->dtype));
out:
	ah5_close(mt);
	ah5_close(sp);
	ah5_close(ft);
	ah5_close(ds);
	return rc;
}

static int isolate_next(alcm_h5_input *in, alcm_tensor *t, int *has);
static void isolate_stop(alcm_h5_input *in);

int alcm_h5_input_next(alcm_h5_input *in, alcm_tensor *t, int *has)
{
	if (!in || !t || !has)
		return ALCM_E_ARG;
	*has = 0;
	if (!in->opened || in->poisoned)
		return ALCM_E_STATE;
	if (in->isolated)
		return isolate_next(in, t, has);
	if (in->next >= in->nds)
		return ALCM_OK;
	const ds_entry *d = &in->ds[in->next];
	ah5_guard g;
	ah5_guard_enter(&g, (in->flags & ALCM_H5_ALLOW_PLUGINS) != 0);
	int rc = read_tensor(in, d);
	ah5_guard_leave(&g);
	if (rc) {
		in->poisoned = 1;
		return rc;
	}
	memset(t, 0, sizeof(*t));
	t->name = d->path;
	t->name_len = d->path_len;
	t->dtype = d->dtype;
	t->ndim = d->ndim;
	memcpy(t->shape, d->shape, d->ndim * sizeof(uint64_t));
	t->data = in->buf;
	t->nbytes = d->nbytes;
	in->next++;
	*has = 1;
	return ALCM_OK;
}

uint64_t alcm_h5_input_size(const alcm_h5_input *in)
{
	return in ? in->size : 0;
}

size_t alcm_h5_input_tensor_count(const alcm_h5_input *in)
{
	return in && in->opened ? in->nds : 0;
}

int alcm_h5_input_structure(alcm_h5_input *in, const void **buf, size_t *len)
{
	if (!in || !buf || !len)
		return ALCM_E_ARG;
	if (!in->opened)
		return ALCM_E_STATE;
	*buf = in->structure.p;
	*len = in->structure.len;
	return ALCM_OK;
}

size_t alcm_h5_input_skipped(const alcm_h5_input *in)
{
	return in ? in->nskip : 0;
}

const char *alcm_h5_input_skipped_name(const alcm_h5_input *in, size_t i, const char **reason)
{
	if (!in || i >= in->nskip)
		return NULL;
	if (reason)
		*reason = in->skip[i].reason;
	return in->skip[i].display;
}

const char *alcm_h5_input_detail(const alcm_h5_input *in)
{
	return in ? in->detail : "";
}

void alcm_h5_input_free(alcm_h5_input *in)
{
	if (!in)
		return;
	isolate_stop(in);
	free(in->tname);
	if (in->file >= 0 || in->lapl >= 0 || in->dapl >= 0) {
		ah5_guard g;
		ah5_guard_enter(&g, 1);
		ah5_close(in->file);
		ah5_close(in->lapl);
		ah5_close(in->dapl);
		ah5_guard_leave(&g);
	}
	for (size_t i = 0; in->ds && i < in->nds; i++)
		free(in->ds[i].path);
	free(in->ds);
	for (size_t i = 0; i < in->nrefs; i++)
		free(in->refs[i].path);
	free(in->refs);
	for (size_t i = 0; i < in->nskip; i++) {
		free(in->skip[i].path);
		free(in->skip[i].attr);
		free(in->skip[i].reason);
		free(in->skip[i].display);
	}
	free(in->skip);
	for (size_t i = 0; i < in->naddrs; i++)
		free(in->addrs[i].path);
	free(in->addrs);
	free(in->htab);
	ah5buf_free(&in->recs);
	ah5buf_free(&in->structure);
	free(in->buf);
	free(in->label);
	free(in);
}

/* ---- ALCM_H5_ISOLATE: libhdf5 in a child process ---- */

/*
 * The child runs the in-process reader and sends its results through a pipe as messages
 * "u8 type, u64 length, payload". The parent trusts none of it: a hostile file may have
 * taken control of the child, so every message is checked against the limits like file
 * data, and the structure passes alcm_h5_structure_check() again.
 */
enum { MSG_OPENED = 'O', MSG_TENSOR = 'T', MSG_END = 'E', MSG_ERROR = 'X' };

static void child_put(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(1);
		b += w;
		n -= (size_t)w;
	}
}

static void child_msg(int fd, int type, const void *a, size_t an, const void *b, size_t bn)
{
	uint8_t h[9];
	h[0] = (uint8_t)type;
	alcm_store64(h + 1, (uint64_t)an + bn);
	child_put(fd, h, 9);
	if (an)
		child_put(fd, a, an);
	if (bn)
		child_put(fd, b, bn);
}

static void child_error(int fd, int rc, const char *detail)
{
	uint8_t m[4 + ALCM_DETAIL_MAX];
	size_t n = strnlen(detail, ALCM_DETAIL_MAX - 1);
	alcm_store32(m, (uint32_t)rc);
	memcpy(m + 4, detail, n);
	child_msg(fd, MSG_ERROR, m, 4 + n, NULL, 0);
	_exit(0);
}

/* Present only in sanitizer builds (weak: NULL otherwise). A host such as a fuzzer registers
 * a death callback that reports a crash as its own; in the reader child it must not run. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/*
 * Ties the reader process to its parent, so that no path leaves it running: libhdf5 loops
 * forever on some malformed files, and a parent killed meanwhile (SIGKILL, or SIGTERM to its
 * pid only, as job schedulers send) would leave it spinning. The kernel kills it when the
 * parent dies (the check after prctl catches a parent that died before it), and a CPU-time
 * limit stops it whatever happens. (Inherited descriptors stay open: libhdf5's state, copied
 * from the host, may use them for a file the host has open too.)
 */
static void child_bind(pid_t parent, unsigned cpu_seconds)
{
#ifdef PR_SET_PDEATHSIG
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		_exit(1);
#endif
	if (getppid() != parent)
		_exit(1);
	struct rlimit cpu = {cpu_seconds, cpu_seconds + 5};
	struct rlimit core = {0, 0};
	(void)setrlimit(RLIMIT_CPU, &cpu);
	(void)setrlimit(RLIMIT_CORE, &core); /* no core file of a hostile input's crash */
}

static void child_run(int fd, pid_t parent, unsigned cpu_seconds, const char *path,
                      const void *buf, size_t len, const alcm_limits *lim, unsigned flags)
{
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(NULL);
	/* The host's handlers (temp-file cleanup, crash reporters, test harnesses) are not for
	 * this process: a crash must end it, visibly, for the parent. */
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGSEGV, SIGBUS, SIGILL,
	                           SIGFPE, SIGABRT, SIGSYS, SIGXCPU};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	/* The library never prints: neither may libc's abort messages from a corrupted heap. */
	int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (dn >= 0) {
		dup2(dn, 1);
		dup2(dn, 2);
		if (dn > 2)
			close(dn);
	}
	child_bind(parent, cpu_seconds);
	alcm_h5_input *in = NULL;
	int rc = open_common(&in, path, buf, len, lim, flags & ~ALCM_H5_ISOLATE);
	if (rc)
		child_error(fd, rc, in ? in->detail : "out of memory");
	ah5buf m;
	memset(&m, 0, sizeof(m));
	ah5buf_u64(&m, in->nds);
	ah5buf_u64(&m, in->structure.len);
	ah5buf_put(&m, in->structure.p, in->structure.len);
	ah5buf_u32(&m, (uint32_t)in->nskip);
	for (size_t i = 0; i < in->nskip; i++) {
		ah5buf_str(&m, in->skip[i].display, strlen(in->skip[i].display));
		ah5buf_str(&m, in->skip[i].reason, strlen(in->skip[i].reason));
	}
	if (m.oom)
		child_error(fd, ALCM_E_NOMEM, "out of memory");
	child_msg(fd, MSG_OPENED, m.p, m.len, NULL, 0);
	for (;;) {
		alcm_tensor t;
		int has;
		if ((rc = alcm_h5_input_next(in, &t, &has)))
			child_error(fd, rc, in->detail);
		if (!has)
			break;
		m.len = 0;
		ah5buf_str(&m, t.name, t.name_len);
		ah5buf_u8(&m, (unsigned)t.dtype);
		ah5buf_u8(&m, t.ndim);
		for (uint32_t i = 0; i < t.ndim; i++)
			ah5buf_u64(&m, t.shape[i]);
		ah5buf_u64(&m, t.nbytes);
		if (m.oom)
			child_error(fd, ALCM_E_NOMEM, "out of memory");
		child_msg(fd, MSG_TENSOR, m.p, m.len, t.data, (size_t)t.nbytes);
	}
	child_msg(fd, MSG_END, NULL, 0, NULL, 0);
	_exit(0);
}

/* Seconds the reader child may stay silent before it is stopped: libhdf5 loops forever on
 * some malformed files. ALCM_H5_TIMEOUT overrides the default of 600. */
static int child_timeout(void)
{
	const char *e = getenv("ALCM_H5_TIMEOUT");
	char *end;
	long v = e ? strtol(e, &end, 10) : 0;
	return e && *e && !*end && v > 0 && v <= 86400 ? (int)v : 600;
}

/* Reads exactly n bytes. @return 0, or -1 at end of file, on an error, or when the child
 * said nothing for timeout_s seconds (then it is killed and timed_out set). */
static int parent_get(alcm_h5_input *in, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		struct pollfd pf = {in->fd, POLLIN, 0};
		int pr = poll(&pf, 1, in->timeout_s * 1000);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			in->timed_out = 1;
			if (in->child > 0)
				kill(in->child, SIGKILL);
			return -1;
		}
		ssize_t r = read(in->fd, b, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static void isolate_stop(alcm_h5_input *in)
{
	if (in->fd >= 0) {
		close(in->fd);
		in->fd = -1;
	}
	if (in->child > 0) {
		int status;
		kill(in->child, SIGKILL);
		while (waitpid(in->child, &status, 0) < 0 && errno == EINTR)
			;
		in->child = 0;
	}
}

/* The pipe ended early: say how the child died. */
static int child_died(alcm_h5_input *in)
{
	int status = 0;
	pid_t pid = in->child;
	if (in->fd >= 0) {
		close(in->fd);
		in->fd = -1;
	}
	in->child = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (in->timed_out)
		return fail(in, ALCM_E_LIMIT,
		            "libhdf5 gave no answer for %d s reading the file (it loops on some "
		            "malformed files): stopped; ALCM_H5_TIMEOUT=SECONDS sets the limit",
		            in->timeout_s);
	if (pid > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU)
		return fail(in, ALCM_E_LIMIT,
		            "libhdf5 used %u s of CPU time reading the file (it loops on some "
		            "malformed files): stopped; ALCM_H5_TIMEOUT=SECONDS raises the limit",
		            in->cpu_s);
	if (pid > 0 && WIFSIGNALED(status))
		return fail(in, WTERMSIG(status) == SIGKILL ? ALCM_E_NOMEM : ALCM_E_CORRUPT,
		            "libhdf5 died reading the file (signal %d): the file is malformed, or the "
		            "reader ran out of memory", WTERMSIG(status));
	return fail(in, ALCM_E_IO, "the reader process ended without an answer (status %d)",
	            pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static int bad_msg(alcm_h5_input *in, const char *what)
{
	isolate_stop(in);
	return fail(in, ALCM_E_CORRUPT, "the reader process sent a malformed message (%s)", what);
}

/* Reads a message header; ERROR messages are consumed and turned into the status. */
static int msg_head(alcm_h5_input *in, int *type, uint64_t *len)
{
	uint8_t h[9];
	if (parent_get(in, h, 9))
		return child_died(in);
	*type = h[0];
	*len = alcm_load64(h + 1);
	if (*type != MSG_ERROR)
		return ALCM_OK;
	uint8_t m[4 + ALCM_DETAIL_MAX];
	if (*len < 4 || *len > sizeof(m) - 1 || parent_get(in, m, (size_t)*len))
		return bad_msg(in, "error");
	int rc = (int)alcm_load32(m);
	m[*len] = '\0';
	/* The child's detail already starts with the label; keep it printable. */
	size_t dn = (size_t)*len - 4;
	for (size_t i = 0; i < dn; i++)
		in->detail[i] = m[4 + i] < 0x20 || m[4 + i] == 0x7f ? '?' : (char)m[4 + i];
	in->detail[dn] = '\0';
	if (rc <= ALCM_OK || rc > ALCM_E_SIGNATURE)
		rc = ALCM_E_CORRUPT;
	isolate_stop(in);
	return rc;
}

static int isolate_opened(alcm_h5_input *in, uint64_t len)
{
	uint64_t cap = 2 * in->lim.max_meta_bytes + 4096;
	if (len < 20 || len > cap || len > SIZE_MAX)
		return bad_msg(in, "size");
	uint8_t *m = malloc((size_t)len);
	if (!m) {
		isolate_stop(in);
		return oom(in);
	}
	int rc = ALCM_OK;
	if (parent_get(in, m, (size_t)len)) {
		free(m);
		return child_died(in);
	}
	ah5cur c = {m, (size_t)len, 0, NULL, 0};
	uint64_t nt = alcm_load64(m), sl = alcm_load64(m + 8);
	c.pos = 16;
	alcm_h5_structure_stats st;
	if (sl > len - 16 || sl > in->lim.max_meta_bytes || len - 16 - sl < 4 ||
	    alcm_h5_structure_check(m + 16, (size_t)sl, &st, NULL) || st.tensor_datasets != nt ||
	    nt > in->lim.max_tensors) {
		rc = bad_msg(in, "structure");
		goto out;
	}
	c.pos = 16 + (size_t)sl;
	uint32_t ns = alcm_load32(m + c.pos);
	c.pos += 4;
	if (ns != st.skipped) {
		rc = bad_msg(in, "skipped count");
		goto out;
	}
	for (uint32_t i = 0; i < ns; i++) {
		char *s[2] = {NULL, NULL};
		for (int k = 0; k < 2; k++) {
			if (c.len - c.pos < 4) {
				rc = bad_msg(in, "skipped entry");
				goto out;
			}
			uint32_t n = alcm_load32(m + c.pos);
			c.pos += 4;
			if (n > c.len - c.pos || memchr(m + c.pos, 0, n)) {
				free(s[0]);
				rc = bad_msg(in, "skipped entry");
				goto out;
			}
			s[k] = dupn((const char *)m + c.pos, n);
			c.pos += n;
		}
		if (grow((void **)&in->skip, &in->skip_cap, in->nskip, sizeof(*in->skip)) || !s[0] ||
		    !s[1]) {
			free(s[0]), free(s[1]);
			isolate_stop(in);
			rc = oom(in);
			goto out;
		}
		skip_entry *e = &in->skip[in->nskip++];
		memset(e, 0, sizeof(*e));
		e->display = s[0];
		e->reason = s[1];
	}
	if (c.pos != c.len) {
		rc = bad_msg(in, "trailing bytes");
		goto out;
	}
	ah5buf_put(&in->structure, m + 16, (size_t)sl);
	if (in->structure.oom) {
		isolate_stop(in);
		rc = oom(in);
		goto out;
	}
	in->nds = (size_t)nt;
out:
	free(m);
	return rc;
}

static int isolate_open(alcm_h5_input **out, const char *path, const void *buf, size_t len,
                        const alcm_limits *lim, unsigned flags)
{
	if (!out)
		return ALCM_E_ARG;
	alcm_h5_input *in = calloc(1, sizeof(*in));
	*out = in;
	if (!in)
		return ALCM_E_NOMEM;
	in->file = in->lapl = in->dapl = H5I_INVALID_HID;
	in->fd = -1;
	in->flags = flags;
	in->isolated = 1;
	if (lim)
		in->lim = *lim;
	else
		alcm_limits_default(&in->lim);
	if (in->lim.max_ndim > ALCM_MAX_NDIM)
		in->lim.max_ndim = ALCM_MAX_NDIM;
	in->label = dupn(path ? path : "<memory>", strlen(path ? path : "<memory>"));
	if (!in->label)
		return ALCM_E_NOMEM;
	in->size = len;
	if (path) {
		struct stat sb;
		if (stat(path, &sb) != 0)
			return fail(in, ALCM_E_IO, "cannot open: %s", strerror(errno));
		in->size = (uint64_t)sb.st_size;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return fail(in, ALCM_E_IO, "cannot create a pipe: %s", strerror(errno));
#ifdef F_SETPIPE_SZ
	/* 1 MiB (Linux's default ceiling for unprivileged pipes) instead of 64 KiB: tensors
	 * cross in 16 times fewer wake-ups of each side. A refusal only costs speed. */
	(void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
#endif
	in->timeout_s = child_timeout();
	/* CPU time: the silence timeout, plus 1 s per 4 MiB of input for large files (libhdf5
	 * decompresses at hundreds of MB/s: a real file never comes near it). */
	uint64_t cpu = (uint64_t)in->timeout_s + (in->size >> 22);
	in->cpu_s = cpu > 1000000 ? 1000000u : (unsigned)cpu;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return fail(in, ALCM_E_IO, "cannot start the reader process: %s", strerror(e));
	}
	if (pid == 0) {
		close(p[0]);
		child_run(p[1], parent, in->cpu_s, path, buf, len, lim, flags);
		_exit(0);
	}
	close(p[1]);
	in->fd = p[0];
	in->child = pid;
	int type;
	uint64_t n;
	int rc = msg_head(in, &type, &n);
	if (rc)
		return rc;
	if (type != MSG_OPENED)
		return bad_msg(in, "expected the structure");
	if ((rc = isolate_opened(in, n)))
		return rc;
	in->opened = 1;
	return ALCM_OK;
}

static int isolate_next(alcm_h5_input *in, alcm_tensor *t, int *has)
{
	int type, rc;
	uint64_t len;
	if (in->done)
		return ALCM_OK;
	if ((rc = msg_head(in, &type, &len))) {
		in->poisoned = 1;
		return rc;
	}
	if (type == MSG_END) {
		if (len != 0 || in->received != in->nds) {
			in->poisoned = 1;
			return bad_msg(in, "end");
		}
		in->done = 1;
		isolate_stop(in);
		return ALCM_OK;
	}
	if (type != MSG_TENSOR || in->received >= in->nds || len < 4) {
		in->poisoned = 1;
		return bad_msg(in, "tensor");
	}
	uint8_t h[4 + 2 + 8 * ALCM_MAX_NDIM + 8];
	uint32_t nl;
	rc = ALCM_E_CORRUPT;
	if (parent_get(in, h, 4))
		goto died;
	nl = alcm_load32(h);
	if (nl > in->lim.max_name_bytes || nl > len - 4)
		goto bad;
	free(in->tname);
	in->tname = malloc(nl + 1);
	if (!in->tname) {
		in->poisoned = 1;
		isolate_stop(in);
		return oom(in);
	}
	if (parent_get(in, in->tname, nl) || parent_get(in, h, 2))
		goto died;
	in->tname[nl] = '\0';
	int dtype = h[0];
	uint32_t ndim = h[1];
	uint64_t shape[ALCM_MAX_NDIM], nbytes, el, want;
	if (!alcm_dtype_size(dtype) || ndim > in->lim.max_ndim || ndim > ALCM_MAX_NDIM)
		goto bad;
	if (parent_get(in, h, 8 * (size_t)ndim + 8))
		goto died;
	for (uint32_t i = 0; i < ndim; i++)
		shape[i] = alcm_load64(h + 8 * i);
	nbytes = alcm_load64(h + 8 * ndim);
	if (alcm_shape_elements(shape, ndim, &el) || el > in->lim.max_elements ||
	    alcm_mul_u64(el, alcm_dtype_size(dtype), &want) || want != nbytes ||
	    nbytes > in->lim.max_decoded_bytes || nbytes > SIZE_MAX ||
	    len != 4 + (uint64_t)nl + 2 + 8 * (uint64_t)ndim + 8 + nbytes)
		goto bad;
	if (nbytes > in->buf_cap || !in->buf) {
		free(in->buf);
		in->buf_cap = 0;
		in->buf = malloc(nbytes ? (size_t)nbytes : 1);
		if (!in->buf) {
			in->poisoned = 1;
			isolate_stop(in);
			return fail(in, ALCM_E_NOMEM, "tensor '%s': out of memory for %llu bytes",
			            in->tname, (unsigned long long)nbytes);
		}
		in->buf_cap = nbytes ? (size_t)nbytes : 1;
	}
	if (parent_get(in, in->buf, (size_t)nbytes))
		goto died;
	memset(t, 0, sizeof(*t));
	t->name = in->tname;
	t->name_len = nl;
	t->dtype = dtype;
	t->ndim = ndim;
	memcpy(t->shape, shape, ndim * sizeof(uint64_t));
	t->data = in->buf;
	t->nbytes = nbytes;
	in->received++;
	*has = 1;
	return ALCM_OK;
bad:
	in->poisoned = 1;
	return bad_msg(in, "tensor");
died:
	in->poisoned = 1;
	return child_died(in);
}
