/* The decoder: directory parsing against the table and limits, tensor decoding (spec 6). */
#include "alloc_internal.h"
#include "codec_internal.h"
#include "series_internal.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct tentry {
	alcm_tensor_info info;
	uint32_t data_idx, scal_idx, mask_idx;
	uint64_t chunk_elems;
	const uint8_t *ctab; /* chunk_count * 16 bytes inside the directory copy */
	int delta;           /* the data section is a DLTA (spec 6.12) */
	int steps_inline;    /* the steps end the QDAT instead of a SCAL (spec 6.5.13) */
} tentry;

typedef struct dslot dslot;

/* The next tensor's sections, read and verified ahead by a worker while this one decodes, so
 * that two threads hash two sections at once (a section's BLAKE2b is one sequential stream).
 * The decode then uses these very bytes: what was verified is what is decoded. */
typedef struct ahead {
	uint8_t *buf; /* data section, then mask section */
	size_t cap;
	size_t index;        /* the tensor */
	uint64_t dlen, mlen; /* section lengths */
	int filled;          /* the job ran: st holds its outcome */
	int st;              /* ALCM_OK, ALCM_E_DIGEST (section `bad`), or another failure (unused) */
	uint32_t bad;
} ahead;

/*
 * Decoding in pieces on two threads or more, digests on: a section's BLAKE2b is one
 * sequential stream, and the wave's digest job was the longest, the other threads waiting at
 * the end of every wave. A helper thread at idle priority (SCHED_IDLE: it runs only on a core
 * nothing else wants, so it never slows the waves) reads the next tensor's first chunks and
 * hashes them meanwhile, so that two sections are hashed at once. It publishes its digest
 * state every HASH_AHEAD_PIECE bytes; the next tensor takes the last one published (it never
 * waits for the helper) and decodes the chunks it covers from buf: what was hashed is what
 * is decoded. A helper that has not finished its piece by then is left to finish alone, and
 * no new work is given until it has.
 */
typedef struct hasher {
	pthread_t th;
	int started;
	pid_t pid; /* where it runs: a child of fork() forgets it (hasher_forked) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int job, busy, stop, quit;
	alcm_reader *r;
	size_t index;      /* the tensor of the job (SIZE_MAX: none) */
	uint32_t sec;      /* its data section */
	const uint8_t *ctab;
	uint64_t nchunks, want; /* its chunks; bytes to read and hash at most */
	uint8_t *buf;      /* its first chunks, as in the section, from base (inside buf) */
	uint8_t *base;
	size_t cap;
	alcm_blake2b h;    /* published: the digest of the section's first `hashed` bytes */
	uint64_t hashed;
} hasher;

typedef struct meta_pair {
	char *key;
	const uint8_t *val;
	size_t len;
} meta_pair;

struct alcm_archive {
	alcm_allocator alloc;
	alcm_reader *r;
	alcm_limits lim;
	uint8_t *dir, *meta;
	tentry *t;
	size_t count;
	meta_pair *m;
	size_t nmeta;
	uint32_t frame;
	alcm_predictor pred;
	int has_pred;
	alcm_pool *pool;
	alcm_coder **coders;
	unsigned ncoders, threads;
	int threads_set;
	int shared;               /* pool and coders borrowed from another archive */
	alcm_series_link *link;   /* checkpoint series: base archive, reference chains */
	/* Chunks in flight (one, or two per thread) and their buffers, kept from one tensor to
	 * the next with the pool (grown as needed, see slots_fit); an archive that shares
	 * another's workers (a series' base) uses that archive's slots. */
	dslot *slots;
	size_t nslots;
	alcm_archive *slot_owner;
	ahead ah;
	size_t next_whole; /* the tensor after the last one decoded whole (0: none decoded yet) */
	hasher hs;
	/* Decoding in pieces from a reader with direct reads: the next wave's reads, started
	 * before the wave runs and waited for after it (NULL: read by a job of the wave). */
	alcm_readq *rq;
	size_t rq_depth;
	int rq_tried;
	int poisoned;
	char detail[ALCM_DETAIL_MAX];
};

static int afail(alcm_archive *a, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int afail(alcm_archive *a, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(a->detail, fmt, ap);
	va_end(ap);
	return st;
}

/* Reads a whole metadata-class section, bounded by max_meta_bytes. */
static int load_small(alcm_archive *a, uint32_t idx, uint8_t **out, size_t *len)
{
	alcm_section_info si;
	alcm_reader_section_info(a->r, idx, &si);
	if (si.length > a->lim.max_meta_bytes)
		return afail(a, ALCM_E_LIMIT, "section %u (%s) at offset %llu: %llu bytes exceed the "
		             "metadata limit of %llu", idx, si.type, (unsigned long long)si.offset,
		             (unsigned long long)si.length,
		             (unsigned long long)a->lim.max_meta_bytes);
	*out = alcm_mem_alloc(&a->alloc, (size_t)si.length);
	if (!*out)
		return afail(a, ALCM_E_NOMEM, "out of memory");
	*len = (size_t)si.length;
	int st = alcm_reader_section_read(a->r, idx, *out, *len);
	if (st)
		return afail(a, st, "%s", alcm_reader_detail(a->r));
	return ALCM_OK;
}

static int parse_meta(alcm_archive *a, uint32_t idx)
{
	size_t len;
	int st = load_small(a, idx, &a->meta, &len);
	if (st)
		return st;
	alcm_cursor c = {a->meta, len, 0};
	uint32_t n;
	alcm_section_info si;
	alcm_reader_section_info(a->r, idx, &si);
	if (alcm_cur_u32(&c, &n) || n > len / 8)
		return afail(a, ALCM_E_CORRUPT, "META section %u at offset %llu: bad pair count", idx,
		             (unsigned long long)si.offset);
	a->m = alcm_mem_calloc(&a->alloc, n ? n : 1, sizeof(meta_pair));
	if (!a->m)
		return afail(a, ALCM_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		uint32_t kl, vl;
		const uint8_t *k, *v;
		size_t at = c.pos;
		if (alcm_cur_u32(&c, &kl) || alcm_cur_bytes(&c, kl, &k) || alcm_cur_u32(&c, &vl) ||
		    alcm_cur_bytes(&c, vl, &v) || memchr(k, 0, kl))
			return afail(a, ALCM_E_CORRUPT, "META section %u: pair %u at offset %llu runs "
			             "past the section or has a NUL in its key", idx, i,
			             (unsigned long long)(si.offset + at));
		a->m[i].key = alcm_mem_alloc(&a->alloc, (size_t)kl + 1);
		if (!a->m[i].key)
			return afail(a, ALCM_E_NOMEM, "out of memory");
		memcpy(a->m[i].key, k, kl);
		a->m[i].key[kl] = '\0';
		a->m[i].val = v;
		a->m[i].len = vl;
		a->nmeta++;
	}
	if (c.pos != len)
		return afail(a, ALCM_E_CORRUPT, "META section %u: %zu trailing bytes", idx,
		             len - c.pos);
	return ALCM_OK;
}

static int ref_ok(alcm_archive *a, uint32_t idx, const char *type)
{
	alcm_section_info si;
	if (alcm_reader_section_info(a->r, idx, &si))
		return 0;
	return memcmp(si.type, type, 4) == 0;
}

static int parse_entry(alcm_archive *a, alcm_cursor *c, tentry *te, size_t i, uint64_t base)
{
	const alcm_limits *L = &a->lim;
	alcm_tensor_info *ti = &te->info;
	uint32_t nl;
	const uint8_t *name, *ctab;
	uint8_t b4[4];
	const uint8_t *p4;
	size_t at = c->pos;
#define BAD(st, ...) afail(a, st, __VA_ARGS__)
	if (alcm_cur_u32(c, &nl))
		return BAD(ALCM_E_CORRUPT, "TDIR: entry %zu at offset %llu is truncated", i,
		           (unsigned long long)(base + at));
	if (nl > L->max_name_bytes)
		return BAD(ALCM_E_LIMIT, "TDIR: entry %zu at offset %llu: name of %u bytes exceeds "
		           "the limit", i, (unsigned long long)(base + at), nl);
	if (alcm_cur_bytes(c, nl, &name) || alcm_cur_bytes(c, 4, &p4))
		return BAD(ALCM_E_CORRUPT, "TDIR: entry %zu at offset %llu is truncated", i,
		           (unsigned long long)(base + at));
	memcpy(b4, p4, 4);
	ti->name = (const char *)name;
	ti->name_len = nl;
	ti->dtype = b4[0];
	ti->mode = b4[1];
	ti->ndim = b4[2];
	ti->bits = b4[3];
	char q[96];
	alcm_detail_quote(q, sizeof(q), (const char *)name, nl);
	if (!alcm_dtype_size(ti->dtype))
		return BAD(ALCM_E_UNSUPPORTED, "tensor '%s': unknown dtype %u at offset %llu", q,
		           b4[0], (unsigned long long)(base + at + 4 + nl));
	if (ti->mode > ALCM_MODE_BITS)
		return BAD(ALCM_E_UNSUPPORTED, "tensor '%s': unknown mode %u at offset %llu", q, b4[1],
		           (unsigned long long)(base + at + 5 + nl));
	if (ti->mode && !alcm_dtype_is_float(ti->dtype))
		return BAD(ALCM_E_CORRUPT, "tensor '%s': mode %u at offset %llu is not valid for "
		           "dtype %s", q, b4[1], (unsigned long long)(base + at + 5 + nl),
		           alcm_dtype_name(ti->dtype));
	if (ti->ndim > L->max_ndim || ti->ndim > ALCM_MAX_NDIM)
		return BAD(ALCM_E_LIMIT, "tensor '%s': rank %u at offset %llu exceeds the limit", q,
		           ti->ndim, (unsigned long long)(base + at + 6 + nl));
	for (uint32_t d = 0; d < ti->ndim; d++)
		if (alcm_cur_u64(c, &ti->shape[d]))
			return BAD(ALCM_E_CORRUPT, "tensor '%s': truncated shape", q);
	uint64_t chunks;
	if (alcm_cur_u32(c, &te->data_idx) || alcm_cur_u32(c, &te->scal_idx) ||
	    alcm_cur_u32(c, &te->mask_idx) || alcm_cur_u64(c, &te->chunk_elems) ||
	    alcm_cur_u64(c, &chunks) || alcm_cur_f64(c, &ti->bound) ||
	    alcm_cur_f64(c, &ti->max_abs_error) || alcm_cur_u64(c, &ti->pruned) ||
	    alcm_cur_u64(c, &ti->escapes))
		return BAD(ALCM_E_CORRUPT, "tensor '%s': truncated directory entry at offset %llu", q,
		           (unsigned long long)(base + at));
	size_t w = alcm_dtype_size(ti->dtype);
	if (alcm_shape_elements(ti->shape, ti->ndim, &ti->elements) ||
	    ti->elements > L->max_elements ||
	    alcm_mul_u64(ti->elements, w, &ti->raw_bytes) || ti->raw_bytes > L->max_decoded_bytes)
		return BAD(ALCM_E_LIMIT, "tensor '%s': shape at offset %llu exceeds the element or "
		           "decoded-size limit", q, (unsigned long long)(base + at + 8 + nl));
	uint64_t ce_bytes;
	if (te->chunk_elems == 0 || alcm_mul_u64(te->chunk_elems, w, &ce_bytes) ||
	    ce_bytes > ((uint64_t)1 << 30))
		return BAD(ALCM_E_CORRUPT, "tensor '%s': chunk size %llu out of range", q,
		           (unsigned long long)te->chunk_elems);
	uint64_t want = ti->elements ? (ti->elements - 1) / te->chunk_elems + 1 : 0;
	if (chunks != want || chunks > (c->len - c->pos) / 16)
		return BAD(ALCM_E_CORRUPT, "tensor '%s': %llu chunks declared, %llu expected", q,
		           (unsigned long long)chunks, (unsigned long long)want);
	/* A tensor without elements has nothing to quantize: it is stored losslessly, so that no
	 * per-channel quantity is ever derived from a dimension of an empty shape (spec 6.3). */
	if (ti->elements == 0 && ti->mode != ALCM_MODE_LOSSLESS)
		return BAD(ALCM_E_CORRUPT, "tensor '%s': mode %u at offset %llu on a tensor without "
		           "elements (it must be 0, lossless)", q, b4[1],
		           (unsigned long long)(base + at + 5 + nl));
	ti->chunks = (uint32_t)chunks;
	if (alcm_cur_bytes(c, (size_t)chunks * 16, &ctab))
		return BAD(ALCM_E_CORRUPT, "tensor '%s': truncated chunk table", q);
	te->ctab = ctab;
	/* Section references must name sections of the right type, and the chunk table must
	 * tile them exactly. */
	int lossless = ti->mode == ALCM_MODE_LOSSLESS;
	te->delta = ref_ok(a, te->data_idx, "DLTA");
	if (!te->delta && !ref_ok(a, te->data_idx, lossless ? "LDAT" : "QDAT"))
		return BAD(ALCM_E_CORRUPT, "tensor '%s': data section %u is missing or of the wrong "
		           "type", q, te->data_idx);
	uint64_t nch = 1;
	if (!lossless) {
		nch = (ti->ndim >= 2 && ti->mode != ALCM_MODE_MAX_ERROR && ti->mode != ALCM_MODE_SNR)
		          ? ti->shape[0] : 1;
		alcm_section_info si;
		te->steps_inline = !te->delta && te->scal_idx == te->data_idx;
		if (!te->steps_inline &&
		    (!ref_ok(a, te->scal_idx, "SCAL") || alcm_reader_section_info(a->r, te->scal_idx, &si) ||
		     si.length != nch * 8))
			return BAD(ALCM_E_CORRUPT, "tensor '%s': scale section %u is missing, of the "
			           "wrong type or not %llu bytes", q, te->scal_idx,
			           (unsigned long long)(nch * 8));
		ti->scales = nch;
		if (te->mask_idx != ALCM_NONE && (te->delta || !ref_ok(a, te->mask_idx, "MASK")))
			return BAD(ALCM_E_CORRUPT, "tensor '%s': mask section %u is of the wrong type", q,
			           te->mask_idx);
	} else if (te->scal_idx != ALCM_NONE || te->mask_idx != ALCM_NONE) {
		return BAD(ALCM_E_CORRUPT, "tensor '%s': lossless entry names scale or mask sections",
		           q);
	}
	uint64_t dsum = 0, msum = 0;
	for (uint64_t k = 0; k < chunks; k++) {
		uint64_t dl = alcm_load64(ctab + 16 * k), ml = alcm_load64(ctab + 16 * k + 8);
		uint64_t n = ti->elements - k * te->chunk_elems;
		n = n < te->chunk_elems ? n : te->chunk_elems;
		/* Bounded by what the chunk decodes to, before anything is read or allocated. */
		if (dl > alcm_chunk_data_max(ti->mode, n, w) || ml > alcm_chunk_mask_max(n))
			return BAD(ALCM_E_CORRUPT, "tensor '%s': chunk %llu declares %llu data and %llu "
			           "mask bytes, more than a chunk of %llu elements can take", q,
			           (unsigned long long)k, (unsigned long long)dl,
			           (unsigned long long)ml, (unsigned long long)n);
		if (alcm_add_u64(dsum, dl, &dsum) || alcm_add_u64(msum, ml, &msum))
			return BAD(ALCM_E_CORRUPT, "tensor '%s': chunk lengths overflow", q);
	}
	alcm_section_info ds, ms;
	alcm_reader_section_info(a->r, te->data_idx, &ds);
	uint64_t mlen = 0;
	if (te->mask_idx != ALCM_NONE) {
		alcm_reader_section_info(a->r, te->mask_idx, &ms);
		mlen = ms.length;
	}
	/* Inline steps follow the last chunk (nch <= elements, so 8 * nch cannot overflow). */
	if (te->steps_inline && alcm_add_u64(dsum, nch * 8, &dsum))
		return BAD(ALCM_E_CORRUPT, "tensor '%s': chunk lengths overflow", q);
	if (dsum != ds.length || msum != mlen)
		return BAD(ALCM_E_CORRUPT, "tensor '%s': chunk table does not add up to its sections "
		           "(%llu vs %llu bytes)", q, (unsigned long long)dsum,
		           (unsigned long long)ds.length);
	ti->stored_bytes = ds.length + mlen + (lossless || te->steps_inline ? 0 : nch * 8);
	return ALCM_OK;
#undef BAD
}

static int by_name(const void *x, const void *y)
{
	const alcm_tensor_info *a = &(*(const tentry *const *)x)->info;
	const alcm_tensor_info *b = &(*(const tentry *const *)y)->info;
	size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = n ? memcmp(a->name, b->name, n) : 0;
	if (c)
		return c;
	return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

/* Names are unique in a directory (spec 6.3): a name must say which tensor it means. */
static int unique_names(alcm_archive *a, uint32_t idx)
{
	if (a->count < 2)
		return ALCM_OK;
	tentry **s = alcm_mem_alloc(&a->alloc, a->count * sizeof(*s));
	if (!s)
		return afail(a, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < a->count; i++)
		s[i] = &a->t[i];
	qsort(s, a->count, sizeof(*s), by_name);
	int st = ALCM_OK;
	for (size_t i = 1; i < a->count && !st; i++)
		if (by_name(&s[i - 1], &s[i]) == 0) {
			char q[96];
			alcm_detail_quote(q, sizeof(q), s[i]->info.name, s[i]->info.name_len);
			st = afail(a, ALCM_E_CORRUPT, "directory section %u: tensor name '%s' appears twice",
			           idx, q);
		}
	alcm_mem_free(&a->alloc, s);
	return st;
}

static int parse_dir(alcm_archive *a, uint32_t idx)
{
	size_t len;
	int st = load_small(a, idx, &a->dir, &len);
	if (st)
		return st;
	alcm_section_info si;
	alcm_reader_section_info(a->r, idx, &si);
	if (memcmp(si.type, "TDRZ", 4) == 0) {
		uint8_t *raw;
		const char *why = "";
		st = alcm_tdrz_unpack(&a->alloc, a->dir, len, a->lim.max_meta_bytes, &raw, &len, &why);
		alcm_mem_free(&a->alloc, a->dir);
		a->dir = raw;
		if (st)
			return afail(a, st, "TDRZ section %u at offset %llu %s", idx,
			             (unsigned long long)si.offset, st == ALCM_E_NOMEM ? "(out of memory)"
			                                                                : why);
	}
	alcm_cursor c = {a->dir, len, 0};
	uint32_t n;
	if (alcm_cur_u32(&c, &n))
		return afail(a, ALCM_E_CORRUPT, "%s section %u at offset %llu is truncated", si.type,
		             idx, (unsigned long long)si.offset);
	if (n > a->lim.max_tensors)
		return afail(a, ALCM_E_LIMIT, "%s section %u at offset %llu: %u tensors exceed the "
		             "limit of %u", si.type, idx, (unsigned long long)si.offset, n,
		             a->lim.max_tensors);
	if (n > len / 60)
		return afail(a, ALCM_E_CORRUPT, "%s section %u at offset %llu: %u tensors cannot "
		             "fit in %zu bytes", si.type, idx, (unsigned long long)si.offset, n, len);
	a->t = alcm_mem_calloc(&a->alloc, n ? n : 1, sizeof(tentry));
	if (!a->t)
		return afail(a, ALCM_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if ((st = parse_entry(a, &c, &a->t[i], i, si.offset)))
			return st;
		a->count++;
	}
	if (c.pos != len)
		return afail(a, ALCM_E_CORRUPT, "%s section %u: %zu trailing bytes", si.type, idx,
		             len - c.pos);
	return unique_names(a, idx);
}

static uint32_t last_section(alcm_reader *r, const char *type)
{
	uint32_t idx = ALCM_NONE, i = 0, k;
	while (alcm_reader_find_section(r, type, i, &k) == ALCM_OK) {
		idx = k;
		i = k + 1;
	}
	return idx;
}

int alcm_archive_find_dir(const alcm_reader *r, uint32_t start, uint32_t *index)
{
	uint32_t n = alcm_reader_section_count(r);
	for (uint32_t i = start; i < n; i++) {
		alcm_section_info si;
		alcm_reader_section_info(r, i, &si);
		if (memcmp(si.type, "TDIR", 4) == 0 || memcmp(si.type, "TDRZ", 4) == 0) {
			*index = i;
			return ALCM_OK;
		}
	}
	return ALCM_E_NOTFOUND;
}

uint32_t alcm_archive_frame_count(const alcm_reader *r)
{
	uint32_t n = 0, i = 0, k;
	while (r && alcm_archive_find_dir(r, i, &k) == ALCM_OK) {
		n++;
		i = k + 1;
	}
	return n;
}

/* The directory of a frame: the last TDIR or TDRZ whose tag is `frame` (ALCM_NONE: the last
 * one). */
static uint32_t frame_dir(alcm_reader *r, uint32_t frame)
{
	uint32_t idx = ALCM_NONE, i = 0, k;
	while (alcm_archive_find_dir(r, i, &k) == ALCM_OK) {
		alcm_section_info si;
		alcm_reader_section_info(r, k, &si);
		if (frame == ALCM_NONE || si.tag == frame)
			idx = k;
		i = k + 1;
	}
	return idx;
}

int alcm_archive_open(alcm_archive **out, alcm_reader *r, const alcm_allocator *alloc)
{
	return alcm_archive_open_frame(out, r, ALCM_NONE, alloc);
}

uint32_t alcm_archive_frame(const alcm_archive *a)
{
	return a ? a->frame : 0;
}

int alcm_archive_predictor(const alcm_archive *a, alcm_predictor *p)
{
	if (!a || !p)
		return ALCM_E_ARG;
	if (!a->has_pred)
		return ALCM_E_NOTFOUND;
	*p = a->pred;
	return ALCM_OK;
}

int alcm_archive_open_frame(alcm_archive **out, alcm_reader *r, uint32_t frame,
                            const alcm_allocator *alloc)
{
	if (!out || !r)
		return ALCM_E_ARG;
	alcm_allocator al;
	alcm_alloc_copy(&al, alloc);
	alcm_archive *a = alcm_mem_calloc(&al, 1, sizeof(*a));
	*out = a;
	if (!a)
		return ALCM_E_NOMEM;
	a->alloc = al;
	a->r = r;
	/* The reader's limits are the ones the caller chose. */
	alcm_limits_default(&a->lim);
	alcm_reader_limits(r, &a->lim);
	uint32_t m = last_section(r, "META"), d = frame_dir(r, frame), pi = last_section(r, "PRED");
	int st = ALCM_OK;
	if (m != ALCM_NONE)
		st = parse_meta(a, m);
	if (!st && d == ALCM_NONE)
		st = frame == ALCM_NONE ? afail(a, ALCM_E_CORRUPT, "no tensor directory (TDIR section)")
		                        : afail(a, ALCM_E_NOTFOUND, "no frame %u", frame);
	if (!st) {
		alcm_section_info si;
		alcm_reader_section_info(r, d, &si);
		a->frame = si.tag;
		st = parse_dir(a, d);
	}
	if (!st && pi != ALCM_NONE) {
		uint8_t *pb = NULL;
		size_t pl;
		st = load_small(a, pi, &pb, &pl);
		int ps = st ? st : alcm_predictor_load(&a->pred, pb, pl);
		/* A later PRED version is ignored as by a reader that does not interpret PRED
		 * (spec 6.7.1): no tensor needs it. */
		if (!st && ps != ALCM_OK && ps != ALCM_E_UNSUPPORTED)
			st = afail(a, ALCM_E_CORRUPT, "PRED section %u is malformed", pi);
		a->has_pred = !st && ps == ALCM_OK;
		alcm_mem_free(&a->alloc, pb);
	}
	if (st)
		a->poisoned = 1;
	return st;
}

static void hasher_quit(alcm_archive *a);

void alcm_archive_free(alcm_archive *a)
{
	if (!a)
		return;
	hasher_quit(a); /* first: it may still read the directory (after a failed decode) */
	for (size_t i = 0; i < a->nmeta; i++)
		alcm_mem_free(&a->alloc, a->m[i].key);
	alcm_mem_free(&a->alloc, a->m);
	alcm_mem_free(&a->alloc, a->t);
	alcm_mem_free(&a->alloc, a->dir);
	alcm_mem_free(&a->alloc, a->meta);
	alcm_series_link_free(a->link);
	alcm_archive_set_threads(a, 1);
	alcm_allocator al = a->alloc;
	alcm_mem_free(&al, a);
}

const char *alcm_archive_detail(const alcm_archive *a)
{
	return a ? a->detail : "";
}

size_t alcm_archive_tensor_count(const alcm_archive *a)
{
	return a ? a->count : 0;
}

int alcm_archive_tensor_info(const alcm_archive *a, size_t i, alcm_tensor_info *info)
{
	if (!a || !info || i >= a->count)
		return ALCM_E_ARG;
	*info = a->t[i].info;
	return ALCM_OK;
}

int alcm_archive_tensor_coding(alcm_archive *a, size_t i, uint32_t *transforms)
{
	if (!a || !transforms || i >= a->count)
		return ALCM_E_ARG;
	*transforms = 0;
	const tentry *te = &a->t[i];
	if (te->info.mode != ALCM_MODE_LOSSLESS)
		return ALCM_OK;
	uint64_t pos = 0;
	for (uint32_t k = 0; k < te->info.chunks; k++) {
		uint64_t dl = alcm_load64(te->ctab + 16 * (size_t)k);
		uint8_t t[2];
		/* A series delta's chunk starts with its kind (spec 6.12.4), then the transform. */
		size_t at = te->delta ? 1 : 0;
		if (dl > at) {
			int st = alcm_reader_section_pread(a->r, te->data_idx, pos, t, at + 1);
			if (st)
				return afail(a, st, "tensor %zu: cannot read chunk %u of section %u", i, k,
				             te->data_idx);
			*transforms |= t[at] < 32 ? 1u << t[at] : 0;
		}
		pos += dl;
	}
	return ALCM_OK;
}

int alcm_archive_find(const alcm_archive *a, const char *name, size_t len, size_t *index)
{
	if (!a || (!name && len))
		return ALCM_E_ARG;
	for (size_t i = 0; i < a->count; i++)
		if (a->t[i].info.name_len == len && memcmp(a->t[i].info.name, name, len) == 0) {
			if (index)
				*index = i;
			return ALCM_OK;
		}
	return ALCM_E_NOTFOUND;
}

size_t alcm_archive_meta_count(const alcm_archive *a)
{
	return a ? a->nmeta : 0;
}

int alcm_archive_meta(const alcm_archive *a, size_t i, const char **key, const uint8_t **value,
                      size_t *len)
{
	if (!a || i >= a->nmeta)
		return ALCM_E_ARG;
	*key = a->m[i].key;
	*value = a->m[i].val;
	*len = a->m[i].len;
	return ALCM_OK;
}

/* ---- decoding --------------------------------------------------------------------------- */

/* One chunk in flight: its bytes, its decoder scratch, its outcome. */
struct dslot {
	uint8_t *cbuf, *mbuf, *scratch;
	const uint8_t *cdata, *mdata; /* the chunk's bytes: cbuf/mbuf, or inside the ahead buffer */
	size_t ccap, mcap, scap;
	uint64_t k, dl, ml, dpos;
	int status;
	/* Decoding in pieces (alcm_archive_decode_pieces): the chunk decodes into obuf[w % 2] in
	 * wave w, and is handed on (olen[w % 2] bytes) during wave w + 1. */
	uint8_t *obuf[2];
	size_t ocap[2], olen[2];
	/* ... and its bytes are read into cin[w % 2] (cbuf or cbuf1) during wave w - 1, from
	 * where the chunk nk of the next wave starts (ndpos, ndl bytes). */
	uint8_t *cbuf1;
	size_t ccap1;
	uint64_t nk, ndl, ndpos;
	size_t nshift; /* where in its buffer chunk nk starts (alcm_reader_dio_shift) */
	unsigned ticket; /* its read, started (reading) and not yet waited for */
	int reading;
};

typedef struct dec {
	alcm_archive *a;
	tentry *te;
	alcm_qparams qp;
	double *steps;
	uint8_t *raw_steps; /* inline steps as stored, for the digest (spec 6.5.13) */
	uint8_t *out;
	alcm_blake2b hd, hm;
	int verify;
	const uint8_t *pre; /* the sections, verified ahead (NULL: read chunk by chunk) */
	ahead *fill;        /* the next tensor's sections to read and verify in this wave */
	dslot *slots;
	size_t nslots, wave_n;
	/* Decoding in pieces: fn takes the decoded chunks in order; the chunks of wave `wave`
	 * decode into obuf[wave % 2] while emit_n chunks of the wave before are handed on. */
	alcm_piece_fn fn;
	void *ctx;
	uint64_t wave;
	size_t emit_n, next_n; /* chunks of the wave before, of the wave after */
	size_t pos, emit_pos;  /* the list positions of this tensor and of the chunks handed on */
	int fn_st, read_st;
	int reading;           /* the next wave's reads are in flight (read_start) */
	/* ... the tensor decoded next in pieces (SIZE_MAX: none), whose first chunks the hasher
	 * takes once this one's are out of its buffer; this tensor's first pre_bytes bytes were
	 * hashed by it, and its first pre_n chunks are in its buffer (pre_buf). */
	size_t next_index;
	int hs_given;
	uint64_t pre_bytes, pre_n;
	const uint8_t *pre_buf;
} dec;

static int decode_tensor(alcm_archive *a, size_t index, void *out, dec *carry, int digest);
static int wave_status(dec *d, size_t nj);
static void run_piece(void *arg, size_t j, unsigned worker);
static void read_next(dec *d);

static int grow(alcm_archive *a, uint8_t **p, size_t *cap, uint64_t need)
{
	/* Contents are not kept: every user fills its buffer anew (all of it: decoded chunks,
	 * sections read). */
	return alcm_block_grow(&a->alloc, p, cap, (size_t)need, 1);
}

/* A scratch buffer, sized for the most a chunk may need. */
static int grow_scratch(alcm_archive *a, uint8_t **p, size_t *cap, uint64_t need)
{
	return alcm_block_grow(&a->alloc, p, cap, (size_t)need, 0);
}

static void decode_slot(dec *d, dslot *sl, alcm_coder *coder)
{
	tentry *te = d->te;
	alcm_tensor_info *ti = &te->info;
	size_t w = alcm_dtype_size(ti->dtype);
	uint64_t first = sl->k * te->chunk_elems;
	uint64_t n = ti->elements - first < te->chunk_elems ? ti->elements - first : te->chunk_elems;
	alcm_cursor dc = {sl->cdata, (size_t)sl->dl, 0}, mc = {sl->mdata, (size_t)sl->ml, 0};
	int st;
	if (d->fn) /* pieces: lossless and not a delta (see alcm_archive_decode_pieces) */
		st = alcm_lossless_decode(coder, &dc, ti->dtype, sl->obuf[d->wave % 2], n, sl->scratch);
	else if (te->delta && ti->mode == ALCM_MODE_LOSSLESS)
		st = alcm_delta_decode(coder, &dc, ti->dtype, d->out + first * w, n, sl->scratch);
	else if (te->delta)
		st = alcm_delta_quant_decode(coder, &dc, &d->qp, d->out, first, n, sl->scratch,
		                             sl->scap);
	else if (ti->mode == ALCM_MODE_LOSSLESS)
		st = alcm_lossless_decode(coder, &dc, ti->dtype, d->out + first * w, n, sl->scratch);
	else
		st = alcm_quant_decode(coder, &dc, te->mask_idx != ALCM_NONE ? &mc : NULL, &d->qp,
		                       d->out, first, n, sl->scratch, sl->scap);
	if (!st && (dc.pos != dc.len || mc.pos != mc.len))
		st = ALCM_E_CORRUPT;
	sl->status = st;
}

static int ahead_section(alcm_archive *a, uint32_t idx, uint8_t *p, uint64_t len)
{
	alcm_section_info si;
	uint8_t h[32];
	alcm_blake2b s;
	/* Reads no shared state of the reader but its table: safe beside the caller's reads. */
	if (alcm_reader_section_info(a->r, idx, &si) || si.length != len ||
	    alcm_reader_section_pread(a->r, idx, 0, p, (size_t)len))
		return ALCM_E_IO;
	alcm_blake2b_init(&s, 32);
	alcm_blake2b_update(&s, p, (size_t)len);
	alcm_blake2b_final(&s, h);
	return alcm_digest_differs(h, si.digest) ? ALCM_E_DIGEST : ALCM_OK;
}

static void ahead_run(alcm_archive *a, ahead *ah)
{
	const tentry *te = &a->t[ah->index];
	ah->bad = te->data_idx;
	ah->st = ahead_section(a, te->data_idx, ah->buf, ah->dlen);
	if (!ah->st && ah->mlen) {
		ah->bad = te->mask_idx;
		ah->st = ahead_section(a, te->mask_idx, ah->buf + ah->dlen, ah->mlen);
	}
	ah->filled = 1;
}

/* Hands on the chunks decoded in the wave before, in order (one job: fn is never called from
 * two threads at once, and the pool's join orders its calls). */
static void emit_wave(dec *d, uint64_t wave)
{
	for (size_t i = 0; i < d->emit_n && !d->fn_st; i++) {
		dslot *sl = &d->slots[i];
		if (sl->olen[wave % 2])
			d->fn_st = d->fn(d->ctx, d->emit_pos, sl->obuf[wave % 2], sl->olen[wave % 2]);
	}
}

/* Jobs of a wave in pieces, longest first: the digest, the hand-on, the read, the chunks. */
static void run_piece(void *arg, size_t j, unsigned worker)
{
	dec *d = arg;
	if (d->verify && j-- == 0) {
		for (size_t i = 0; i < d->wave_n; i++) {
			const dslot *sl = &d->slots[i];
			uint64_t skip = sl->dpos < d->pre_bytes ? d->pre_bytes - sl->dpos : 0;
			if (skip < sl->dl)
				alcm_blake2b_update(&d->hd, sl->cdata + skip, (size_t)(sl->dl - skip));
		}
		return;
	}
	if (d->emit_n && j-- == 0) {
		emit_wave(d, d->wave - 1);
		return;
	}
	if (d->next_n && !d->reading && j-- == 0) {
		read_next(d);
		return;
	}
	decode_slot(d, &d->slots[j], d->a->coders[worker]);
}

static void run_slot(void *arg, size_t j, unsigned worker)
{
	dec *d = arg;
	/* With digests, job 0 is the digest job, taken first so that it runs beside the
	 * decoders (last, it ran alone at the end of every wave); then the read-ahead of the
	 * next tensor, taken by the second thread. */
	size_t j0 = 0;
	if (d->verify) {
		if (j == 0) {
			for (size_t i = 0; i < d->wave_n; i++) {
				alcm_blake2b_update(&d->hd, d->slots[i].cdata, d->slots[i].dl);
				if (d->slots[i].ml)
					alcm_blake2b_update(&d->hm, d->slots[i].mdata, d->slots[i].ml);
			}
			return;
		}
		j0 = 1;
	}
	if (d->fill) {
		if (j == j0) {
			ahead_run(d->a, d->fill);
			return;
		}
		j0++;
	}
	decode_slot(d, &d->slots[j - j0], d->a->coders[worker]);
}

static int read_slot(dec *d, dslot *sl, uint64_t mpos)
{
	alcm_archive *a = d->a;
	tentry *te = d->te;
	uint64_t ce = te->chunk_elems < te->info.elements ? te->chunk_elems : te->info.elements;
	size_t w = alcm_dtype_size(te->info.dtype);
	uint64_t scratch = te->info.mode != ALCM_MODE_LOSSLESS ? alcm_quant_scratch(ce)
	                   : te->delta ? alcm_delta_scratch(ce, w) : alcm_lossless_scratch(ce, w);
	if (grow_scratch(a, &sl->scratch, &sl->scap, scratch ? scratch : 1))
		return afail(a, ALCM_E_NOMEM, "out of memory");
	if (d->pre) {
		uint64_t dlen = a->ah.dlen;
		sl->cdata = d->pre + sl->dpos;
		sl->mdata = d->pre + dlen + mpos;
		return ALCM_OK;
	}
	if (grow(a, &sl->cbuf, &sl->ccap, sl->dl ? sl->dl : 1) ||
	    grow(a, &sl->mbuf, &sl->mcap, sl->ml ? sl->ml : 1))
		return afail(a, ALCM_E_NOMEM, "out of memory");
	sl->cdata = sl->cbuf;
	sl->mdata = sl->mbuf;
	int st = alcm_reader_section_pread(a->r, te->data_idx, sl->dpos, sl->cbuf, (size_t)sl->dl);
	if (!st && sl->ml)
		st = alcm_reader_section_pread(a->r, te->mask_idx, mpos, sl->mbuf, (size_t)sl->ml);
	if (st)
		return afail(a, st, "%s", alcm_reader_detail(a->r));
	return ALCM_OK;
}

/* Below this many stored bytes a lone chunk's digest is cheaper to compute on the caller's
 * thread (BLAKE2b, about 1 GB/s: 0.25 ms) than to hand to a worker, which must wake, may not
 * get a core on a busy machine, and must be joined at the end. */
#define HASH_ALONE_MIN ((uint64_t)256 << 10)

/* A wave of one chunk has nothing to split but its digest: it runs on the caller, so that a
 * file of small tensors never starts, wakes or joins a thread. */
static int wave_inline(const dec *d, size_t nj)
{
	if (d->a->ncoders == 1 || nj == 0)
		return 1;
	if (d->fill)
		return 0;
	if (nj > 1)
		return 0;
	return !d->verify || d->slots[0].dl + d->slots[0].ml < HASH_ALONE_MIN;
}

static int decode_chunks(dec *d)
{
	tentry *te = d->te;
	alcm_tensor_info *ti = &te->info;
	uint64_t dpos = 0, mpos = 0;
	char q[96];
	alcm_detail_quote(q, sizeof(q), ti->name, ti->name_len);
	for (uint64_t k0 = 0; k0 < ti->chunks; k0 += d->nslots) {
		size_t nj = (size_t)(ti->chunks - k0 < d->nslots ? ti->chunks - k0 : d->nslots);
		for (size_t j = 0; j < nj; j++) {
			dslot *sl = &d->slots[j];
			sl->k = k0 + j;
			sl->dl = alcm_load64(te->ctab + 16 * sl->k);
			sl->ml = alcm_load64(te->ctab + 16 * sl->k + 8);
			sl->dpos = dpos;
			int st = read_slot(d, sl, mpos);
			if (st)
				return st;
			dpos += sl->dl;
			mpos += sl->ml;
		}
		d->wave_n = nj;
		size_t njobs = nj + (d->verify ? 1 : 0) + (d->fill ? 1 : 0) + (d->emit_n ? 1 : 0);
		if (wave_inline(d, nj)) {
			for (size_t j = 0; j < njobs; j++)
				run_slot(d, j, 0);
		} else {
			alcm_pool_run(d->a->pool, run_slot, d, njobs);
		}
		d->fill = NULL;
		int st = wave_status(d, nj);
		if (st)
			return st;
	}
	return ALCM_OK;
}

/* Names chunk k of te (at offset dpos of its data section), which failed with status st. */
static int chunk_fail(alcm_archive *a, const tentry *te, uint64_t k, uint64_t dpos, int st)
{
	char q[96];
	alcm_detail_quote(q, sizeof(q), te->info.name, te->info.name_len);
	if (st == ALCM_E_CORRUPT)
		return afail(a, st, "tensor '%s': chunk %llu at offset %llu of section %u is "
		             "malformed", q, (unsigned long long)k, (unsigned long long)dpos,
		             te->data_idx);
	if (st == ALCM_E_UNSUPPORTED) {
		unsigned major, minor;
		alcm_reader_version(a->r, &major, &minor);
		return afail(a, st, "tensor '%s': chunk %llu at offset %llu of section %u uses a "
		             "coding this reader does not know (archive format %u.%u, reader "
		             "%u.%u)", q, (unsigned long long)k, (unsigned long long)dpos,
		             te->data_idx, major, minor, ALCM_FORMAT_MAJOR, ALCM_FORMAT_MINOR);
	}
	return afail(a, st, "tensor '%s': chunk %llu: %s", q, (unsigned long long)k,
	             alcm_strerror(st));
}

/* The first failed chunk of a wave of nj, named. */
static int wave_status(dec *d, size_t nj)
{
	for (size_t j = 0; j < nj; j++)
		if (d->slots[j].status)
			return chunk_fail(d->a, d->te, d->slots[j].k, d->slots[j].dpos,
			                  d->slots[j].status);
	return ALCM_OK;
}

/* Plans wave w + 1 of a tensor decoded in pieces (chunks from k0, section position dpos):
 * the slots' next chunks and read buffers. @return the number of chunks, or SIZE_MAX when out
 * of memory. */
static size_t plan_next(dec *d, uint64_t k0, uint64_t dpos)
{
	const tentry *te = d->te;
	size_t n = (size_t)(te->info.chunks - k0 < d->nslots ? te->info.chunks - k0 : d->nslots);
	for (size_t j = 0; j < n; j++) {
		dslot *sl = &d->slots[j];
		sl->nk = k0 + j;
		sl->ndl = alcm_load64(te->ctab + 16 * sl->nk);
		sl->ndpos = dpos;
		dpos += sl->ndl;
		uint8_t **b = (d->wave + 1) % 2 ? &sl->cbuf1 : &sl->cbuf;
		size_t *cap = (d->wave + 1) % 2 ? &sl->ccap1 : &sl->ccap;
		sl->nshift = 0;
		if (sl->nk < d->pre_n)
			continue;
		if (grow(d->a, b, cap, (sl->ndl ? sl->ndl : 1) + alcm_reader_dio_align(d->a->r)))
			return SIZE_MAX;
		sl->nshift = alcm_reader_dio_shift(d->a->r, te->data_idx, sl->ndpos, *b);
	}
	return n;
}

/* The job that reads the next wave's chunks (one pread each, in section order). */
static void read_next(dec *d)
{
	for (size_t j = 0; j < d->next_n && !d->read_st; j++) {
		dslot *sl = &d->slots[j];
		if (sl->nk < d->pre_n) /* read by the hasher */
			continue;
		uint8_t *b = ((d->wave + 1) % 2 ? sl->cbuf1 : sl->cbuf) + sl->nshift;
		d->read_st = alcm_reader_section_pread(d->a->r, d->te->data_idx, sl->ndpos, b,
		                                       (size_t)sl->ndl);
	}
}

/* Starts the next wave's reads on the archive's queue (read_finish waits for them): the
 * disk reads them while the wave decodes, and no thread of the pool waits for it. */
static void read_start(dec *d)
{
	d->reading = 1;
	for (size_t j = 0; j < d->next_n && !d->read_st; j++) {
		dslot *sl = &d->slots[j];
		if (sl->nk < d->pre_n || !sl->ndl)
			continue;
		uint8_t *b = ((d->wave + 1) % 2 ? sl->cbuf1 : sl->cbuf) + sl->nshift;
		d->read_st = alcm_readq_start(d->a->rq, d->te->data_idx, sl->ndpos, b,
		                              (size_t)sl->ndl, &sl->ticket);
		sl->reading = !d->read_st;
	}
}

static void read_finish(dec *d)
{
	for (size_t j = 0; j < d->next_n; j++) {
		dslot *sl = &d->slots[j];
		if (sl->reading) {
			sl->reading = 0;
			int st = alcm_readq_wait(d->a->rq, sl->ticket);
			d->read_st = d->read_st ? d->read_st : st;
		}
	}
	d->reading = 0;
}

/* Makes the chunks read for the next wave the current ones, with their output buffers (free:
 * they were handed on during the wave that ended). */
static int take_next(dec *d)
{
	const tentry *te = d->te;
	size_t w = alcm_dtype_size(te->info.dtype);
	uint64_t ce = te->chunk_elems < te->info.elements ? te->chunk_elems : te->info.elements;
	uint64_t scratch = alcm_lossless_scratch(ce, w);
	size_t p = (size_t)(d->wave % 2);
	for (size_t j = 0; j < d->next_n; j++) {
		dslot *sl = &d->slots[j];
		uint64_t first = sl->nk * te->chunk_elems;
		uint64_t n = te->info.elements - first < ce ? te->info.elements - first : ce;
		sl->k = sl->nk;
		sl->dl = sl->ndl;
		sl->ml = 0;
		sl->dpos = sl->ndpos;
		sl->cdata = sl->k < d->pre_n ? d->pre_buf + sl->dpos
		                             : (p ? sl->cbuf1 : sl->cbuf) + sl->nshift;
		sl->mdata = NULL;
		if (grow(d->a, &sl->obuf[p], &sl->ocap[p], n * w) ||
		    grow_scratch(d->a, &sl->scratch, &sl->scap, scratch))
			return afail(d->a, ALCM_E_NOMEM, "out of memory");
		sl->olen[p] = (size_t)(n * w);
	}
	return ALCM_OK;
}

/* The bytes of the chunks decoded in `wave` that are still to hand on. */
static uint64_t emit_bytes(const dec *d, uint64_t wave)
{
	uint64_t bytes = 0;
	for (size_t i = 0; i < d->emit_n; i++)
		bytes += d->slots[i].olen[wave % 2];
	return bytes;
}

/* Whether a tensor's first read of n chunks and the hand-on of the wave before (d->wave is
 * that wave's) are too few bytes to wake a thread for (HASH_ALONE_MIN, as pieces_small). */
static int first_small(const dec *d, size_t n)
{
	uint64_t bytes = emit_bytes(d, d->wave);
	for (size_t j = 0; j < n; j++)
		bytes += d->slots[j].nk < d->pre_n ? 0 : d->slots[j].ndl;
	return bytes < HASH_ALONE_MIN;
}

/* A tensor's first read (job 0) and the hand-on of the last wave before it (job 1). */
static void run_first(void *arg, size_t j, unsigned worker)
{
	dec *d = arg;
	(void)worker;
	if (j == 0)
		read_next(d);
	else
		emit_wave(d, d->wave);
}

/* A wave of one chunk with few bytes to hash, hand on and read runs on the caller, as in
 * wave_inline: a file of small tensors never wakes or joins a thread for them. */
static int pieces_small(const dec *d, size_t n, size_t nn)
{
	if (n > 1)
		return 0;
	uint64_t bytes = d->slots[0].dl + (nn ? d->slots[0].ndl : 0) + emit_bytes(d, d->wave - 1);
	return bytes < HASH_ALONE_MIN;
}

#define HASH_AHEAD_PIECE ((size_t)256 << 10)
/* The hasher takes the next tensor's first chunk, and the chunks after it while they stay
 * under this many bytes in all. One chunk of e2e.npz's archive (3.5 MB of its 17.6 MB
 * sections) is about what the waves leave idle: with two, alcm-unpack -T2 was no faster and
 * its peak RSS 8 MB more (58.8 against 50.5 MB). */
#define HASH_AHEAD_MAX ((uint64_t)4 << 20)

int alcm_hash_ahead_wait = 0;
uint64_t alcm_hash_ahead_limit = 0, alcm_hash_ahead_taken = 0;

static uint64_t ahead_max(const alcm_archive *a, const tentry *te);

static void *hasher_main(void *arg)
{
	alcm_archive *a = arg;
	hasher *hs = &a->hs;
#ifdef SCHED_IDLE
	struct sched_param sp;
	memset(&sp, 0, sizeof(sp));
	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp); /* else it shares fairly */
#endif
	pthread_mutex_lock(&hs->mu);
	for (;;) {
		while (!hs->job && !hs->quit)
			pthread_cond_wait(&hs->cv, &hs->mu);
		if (hs->quit)
			break;
		hs->job = 0;
		hs->busy = 1;
		uint64_t want = hs->want, n = hs->nchunks, off = 0;
		const uint8_t *ctab = hs->ctab;
		uint32_t sec = hs->sec;
		pthread_mutex_unlock(&hs->mu);
		alcm_blake2b h;
		alcm_blake2b_init(&h, 32);
		int stop = 0;
		for (uint64_t k = 0; k < n && !stop; k++) {
			uint64_t dl = alcm_load64(ctab + 16 * k);
			if (dl > want - off)
				break;
			/* Read whole before any of it is hashed (the caller decodes from buf every
			 * chunk it takes a digest of), a piece at a time: at idle priority on a busy
			 * machine a piece may take long, and a stop waits for the piece. */
			for (uint64_t p = 0; p < dl && !stop; p += HASH_AHEAD_PIECE) {
				size_t len = dl - p < HASH_AHEAD_PIECE ? (size_t)(dl - p) : HASH_AHEAD_PIECE;
				if (alcm_reader_section_pread(hs->r, sec, off + p, hs->base + off + p, len))
					stop = 1; /* the caller reads it again, and names the failure */
				pthread_mutex_lock(&hs->mu);
				stop |= hs->stop;
				pthread_mutex_unlock(&hs->mu);
			}
			for (uint64_t p = 0; p < dl && !stop; p += HASH_AHEAD_PIECE) {
				size_t len = dl - p < HASH_AHEAD_PIECE ? (size_t)(dl - p) : HASH_AHEAD_PIECE;
				alcm_blake2b_update(&h, hs->base + off + p, len);
				pthread_mutex_lock(&hs->mu);
				stop = hs->stop;
				if (!stop) {
					hs->h = h;
					hs->hashed = off + p + len;
					stop = alcm_hash_ahead_limit && hs->hashed >= alcm_hash_ahead_limit;
				}
				pthread_mutex_unlock(&hs->mu);
			}
			off += dl;
		}
		pthread_mutex_lock(&hs->mu);
		hs->busy = 0;
		pthread_cond_broadcast(&hs->cv);
	}
	pthread_mutex_unlock(&hs->mu);
	return NULL;
}

/* In a child of fork() the hasher stayed with the parent (its lock maybe held): forget it
 * (its buffer given back), so that a new one starts if needed and none is joined. */
static void hasher_forked(alcm_archive *a)
{
	if (a->hs.started && a->hs.pid != getpid()) {
		alcm_block_give(&a->alloc, a->hs.buf, a->hs.cap);
		memset(&a->hs, 0, sizeof(a->hs));
	}
}

/* Gives the hasher tensor `index` (its first chunks: HASH_AHEAD_MAX), if it is idle (else
 * nothing: the tensor hashes its own chunks). */
static void hasher_give(alcm_archive *a, size_t index)
{
	hasher *hs = &a->hs;
	const tentry *nx = &a->t[index];
	uint64_t want = 0;
	for (uint64_t k = 0; k < nx->info.chunks; k++) {
		uint64_t dl = alcm_load64(nx->ctab + 16 * k);
		if (k && dl > HASH_AHEAD_MAX - want)
			break;
		want += dl;
	}
	/* Not worth a thread, or a first chunk too large to hold twice, or more than a
	 * read-ahead may hold (spec 5.6's decode memory) */
	if (want < HASH_ALONE_MIN || want > 2 * HASH_AHEAD_MAX || want > ahead_max(a, nx))
		return;
	hasher_forked(a);
	if (!hs->started) {
		if (pthread_mutex_init(&hs->mu, NULL))
			return;
		if (pthread_cond_init(&hs->cv, NULL)) {
			pthread_mutex_destroy(&hs->mu);
			return;
		}
		hs->index = SIZE_MAX;
		hs->pid = getpid();
		if (pthread_create(&hs->th, NULL, hasher_main, a)) {
			pthread_cond_destroy(&hs->cv);
			pthread_mutex_destroy(&hs->mu);
			return;
		}
		hs->started = 1;
	}
	pthread_mutex_lock(&hs->mu);
	int idle = !hs->busy && !hs->job;
	pthread_mutex_unlock(&hs->mu);
	if (!idle || grow(a, &hs->buf, &hs->cap, want + alcm_reader_dio_align(a->r)))
		return;
	pthread_mutex_lock(&hs->mu);
	hs->base = hs->buf + alcm_reader_dio_shift(a->r, nx->data_idx, 0, hs->buf);
	hs->r = a->r;
	hs->index = index;
	hs->sec = nx->data_idx;
	hs->ctab = nx->ctab;
	hs->nchunks = nx->info.chunks;
	hs->want = want;
	hs->hashed = 0;
	hs->stop = 0;
	hs->job = 1;
	pthread_cond_broadcast(&hs->cv);
	pthread_mutex_unlock(&hs->mu);
}

/* Takes what the hasher published of tensor d->te, if it was given it. */
static void hasher_take(dec *d)
{
	alcm_archive *a = d->a;
	hasher *hs = &a->hs;
	hasher_forked(a);
	if (!hs->started)
		return;
	pthread_mutex_lock(&hs->mu);
	while (alcm_hash_ahead_wait && hs->index == (size_t)(d->te - a->t) && (hs->busy || hs->job))
		pthread_cond_wait(&hs->cv, &hs->mu);
	if (hs->index == (size_t)(d->te - a->t)) {
		hs->stop = 1;
		hs->job = 0;
		hs->index = SIZE_MAX;
		if (hs->hashed) {
			d->hd = hs->h;
			d->pre_bytes = hs->hashed;
			d->pre_buf = hs->base;
			if (alcm_hash_ahead_wait) /* tests only: one archive at a time */
				alcm_hash_ahead_taken += hs->hashed;
		}
	}
	pthread_mutex_unlock(&hs->mu);
	/* The chunks it started: all read whole before their first byte was hashed. */
	for (uint64_t dpos = 0; d->pre_n < d->te->info.chunks && dpos < d->pre_bytes; d->pre_n++)
		dpos += alcm_load64(d->te->ctab + 16 * d->pre_n);
}

/* Stops the hasher and waits for it (its buffer and the reader are about to go). */
static void hasher_quit(alcm_archive *a)
{
	hasher *hs = &a->hs;
	hasher_forked(a);
	if (hs->started) {
		pthread_mutex_lock(&hs->mu);
		hs->quit = hs->stop = 1;
		pthread_cond_broadcast(&hs->cv);
		pthread_mutex_unlock(&hs->mu);
		pthread_join(hs->th, NULL);
		pthread_cond_destroy(&hs->cv);
		pthread_mutex_destroy(&hs->mu);
	}
	alcm_block_give(&a->alloc, hs->buf, hs->cap);
	memset(hs, 0, sizeof(*hs));
}

/* Decoding in pieces (a lossless tensor, not a delta): in wave w, one job hashes the wave's
 * chunks in order, one hands on the chunks of wave w - 1, one reads those of wave w + 1, and
 * the others decode; the chunks of the last wave stay for the caller to hand on after the
 * digest check. */
static int decode_chunks_pieces(dec *d)
{
	const tentry *te = d->te;
	alcm_archive *a = d->a;
	uint64_t dpos = 0;
	if (d->verify)
		hasher_take(d);
	if (a->rq && a->rq_depth < d->nslots) {
		alcm_readq_free(a->rq);
		a->rq = NULL;
		a->rq_tried = 0;
	}
	/* A reading thread for a tensor of more than one wave: the next wave's chunks are read
	 * (copied from the page cache, or read directly) while this one decodes, off the
	 * decoding threads. alcm-unpack -T1 of e2e.npz's archive, in the cache: 1.24 -> 1.17 s
	 * (medians of 7 alternating runs). */
	if (!a->rq_tried && te->info.chunks > d->nslots) {
		a->rq_tried = 1;
		a->rq_depth = d->nslots;
		if (alcm_readq_new(&a->rq, a->r, (unsigned)d->nslots))
			a->rq = NULL;
	}
	/* The wave count goes on from the tensor before, whose last chunks are handed on during
	 * this one's first wave (from the other buffers). */
	d->wave--; /* plan_next and read_next work on wave + 1 */
	size_t n = plan_next(d, 0, 0);
	d->wave++;
	if (n == SIZE_MAX)
		return afail(d->a, ALCM_E_NOMEM, "out of memory");
	d->next_n = n;
	d->wave--;
	if (d->emit_n && d->a->ncoders >= 2 && !first_small(d, n)) {
		/* The read beside the hand-on of the tensor before's last chunks (its digests are
		 * checked), which wave 0 would do: the read no longer waits alone. */
		alcm_pool_run(d->a->pool, run_first, d, 2);
		d->emit_n = 0;
	} else {
		read_next(d);
	}
	d->wave++;
	if (d->fn_st)
		return d->fn_st;
	for (uint64_t k0 = 0; k0 < te->info.chunks; k0 += n) {
		if (d->read_st)
			return afail(d->a, d->read_st, "%s", alcm_reader_detail(d->a->r));
		int st = take_next(d);
		if (st)
			return st;
		n = d->next_n;
		for (size_t j = 0; j < n; j++)
			dpos += d->slots[j].dl;
		size_t nn = k0 + n < te->info.chunks ? plan_next(d, k0 + n, dpos) : 0;
		if (nn == SIZE_MAX)
			return afail(d->a, ALCM_E_NOMEM, "out of memory");
		d->next_n = nn;
		d->wave_n = n;
		/* The hasher's buffer is free once this tensor's chunks in it are decoded. */
		if (!d->hs_given && k0 >= d->pre_n && d->verify && d->next_index != SIZE_MAX &&
		    d->a->ncoders >= 2) {
			d->hs_given = 1;
			hasher_give(d->a, d->next_index);
		}
		if (nn && a->rq)
			read_start(d);
		size_t njobs = n + (d->verify ? 1 : 0) + (d->emit_n ? 1 : 0) + (nn && !d->reading);
		if (d->a->ncoders == 1 || pieces_small(d, n, nn)) {
			for (size_t j = 0; j < njobs; j++)
				run_piece(d, j, 0);
		} else {
			alcm_pool_run(d->a->pool, run_piece, d, njobs);
		}
		if (d->reading)
			read_finish(d);
		if (d->fn_st)
			return d->fn_st;
		if ((st = wave_status(d, n)))
			return st;
		d->emit_n = n;
		d->emit_pos = d->pos;
		d->wave++;
	}
	return ALCM_OK;
}

static void slots_free(alcm_archive *a)
{
	for (size_t j = 0; a->slots && j < a->nslots; j++) {
		alcm_block_give(&a->alloc, a->slots[j].cbuf, a->slots[j].ccap);
		alcm_block_give(&a->alloc, a->slots[j].mbuf, a->slots[j].mcap);
		alcm_block_give(&a->alloc, a->slots[j].scratch, a->slots[j].scap);
		alcm_block_give(&a->alloc, a->slots[j].obuf[0], a->slots[j].ocap[0]);
		alcm_block_give(&a->alloc, a->slots[j].obuf[1], a->slots[j].ocap[1]);
		alcm_block_give(&a->alloc, a->slots[j].cbuf1, a->slots[j].ccap1);
	}
	alcm_mem_free(&a->alloc, a->slots);
	a->slots = NULL;
	a->nslots = 0;
	alcm_block_give(&a->alloc, a->ah.buf, a->ah.cap);
	memset(&a->ah, 0, sizeof(a->ah));
	hasher_quit(a);
	alcm_readq_free(a->rq);
	a->rq = NULL;
	a->rq_tried = 0;
}

/* The slots' buffers are kept between tensors, but not when they are more than twice what
 * this tensor's chunks can need (a 1 GiB chunk earlier must not stay beside a small tensor's
 * output: the decode-memory bound of spec 5.6 is per tensor). */
static void slots_fit(alcm_archive *a, const tentry *te, int busy)
{
	size_t w = alcm_dtype_size(te->info.dtype);
	uint64_t ce = te->chunk_elems < te->info.elements ? te->chunk_elems : te->info.elements;
	uint64_t data = alcm_chunk_data_max(te->info.mode, ce, w), mask = alcm_chunk_mask_max(ce);
	uint64_t scratch = te->info.mode == ALCM_MODE_LOSSLESS ? alcm_lossless_scratch(ce, w)
	                                                       : alcm_quant_scratch(ce);
	for (size_t j = 0; j < a->nslots; j++) {
		dslot *sl = &a->slots[j];
		if (sl->ccap > 2 * data) {
			alcm_block_give(&a->alloc, sl->cbuf, sl->ccap);
			sl->cbuf = NULL;
			sl->ccap = 0;
		}
		if (sl->ccap1 > 2 * data) {
			alcm_block_give(&a->alloc, sl->cbuf1, sl->ccap1);
			sl->cbuf1 = NULL;
			sl->ccap1 = 0;
		}
		if (sl->mcap > 2 * mask) {
			alcm_block_give(&a->alloc, sl->mbuf, sl->mcap);
			sl->mbuf = NULL;
			sl->mcap = 0;
		}
		if (sl->scap > 2 * scratch) {
			alcm_block_give(&a->alloc, sl->scratch, sl->scap);
			sl->scratch = NULL;
			sl->scap = 0;
		}
		for (int p = 0; p < 2; p++)
			if (p != busy && sl->ocap[p] > 2 * ce * w) {
				alcm_block_give(&a->alloc, sl->obuf[p], sl->ocap[p]);
				sl->obuf[p] = NULL;
				sl->ocap[p] = 0;
			}
	}
}

int alcm_archive_set_threads(alcm_archive *a, unsigned threads)
{
	if (!a)
		return ALCM_E_ARG;
	if (a->shared) {
		a->pool = NULL, a->coders = NULL, a->ncoders = 0, a->shared = 0;
		a->slot_owner = NULL;
	}
	slots_free(a);
	if (a->coders)
		for (unsigned i = 0; i < a->ncoders; i++)
			alcm_coder_free(a->coders[i]);
	alcm_mem_free(&a->alloc, a->coders);
	a->coders = NULL;
	alcm_pool_free(a->pool);
	a->pool = NULL;
	a->threads = threads ? threads : 0;
	a->threads_set = 1;
	return ALCM_OK;
}

static int ensure_pool(alcm_archive *a)
{
	if (a->pool)
		return ALCM_OK;
	if (alcm_pool_new(&a->pool, a->threads_set ? a->threads : 1, &a->alloc))
		return afail(a, ALCM_E_NOMEM, "cannot start worker threads");
	a->ncoders = alcm_pool_threads(a->pool);
	a->coders = alcm_mem_calloc(&a->alloc, a->ncoders, sizeof(*a->coders));
	if (!a->coders)
		return afail(a, ALCM_E_NOMEM, "out of memory");
	for (unsigned i = 0; i < a->ncoders; i++)
		if (!(a->coders[i] = alcm_coder_new(&a->alloc, &a->lim)))
			return afail(a, ALCM_E_NOMEM, "out of memory");
	return ALCM_OK;
}

static int check_digest(dec *d, uint32_t idx, alcm_blake2b *h)
{
	alcm_section_info si;
	uint8_t out[32];
	if (!d->verify)
		return ALCM_OK;
	alcm_blake2b_final(h, out);
	alcm_reader_section_info(d->a->r, idx, &si);
	if (alcm_digest_differs(out, si.digest))
		return afail(d->a, ALCM_E_DIGEST, "digest mismatch in section %u (%s) at offset %llu",
		             idx, si.type, (unsigned long long)si.offset);
	return ALCM_OK;
}

static int load_steps(dec *d)
{
	tentry *te = d->te;
	size_t n = (size_t)te->info.scales;
	d->steps = alcm_mem_alloc(&d->a->alloc, n * 8);
	if (!d->steps)
		return afail(d->a, ALCM_E_NOMEM, "out of memory");
	int st;
	if (te->steps_inline) {
		/* The section's last 8 n bytes (spec 6.5.13); hashed after the chunks. */
		alcm_section_info si;
		alcm_reader_section_info(d->a->r, te->data_idx, &si);
		if (d->pre) {
			memcpy(d->steps, d->pre + si.length - n * 8, n * 8);
			st = ALCM_OK;
		} else {
			st = alcm_reader_section_pread(d->a->r, te->data_idx, si.length - n * 8,
			                               d->steps, n * 8);
		}
		if (!st && d->verify && !(d->raw_steps = alcm_mem_alloc(&d->a->alloc, n * 8)))
			return afail(d->a, ALCM_E_NOMEM, "out of memory");
		if (!st && d->raw_steps)
			memcpy(d->raw_steps, d->steps, n * 8);
	} else {
		st = alcm_reader_section_read(d->a->r, te->scal_idx, d->steps, n * 8);
	}
	if (st)
		return afail(d->a, st, "%s", alcm_reader_detail(d->a->r));
	for (size_t c = 0; c < n; c++) {
		double s;
		uint64_t u = alcm_load64((const uint8_t *)&d->steps[c]);
		memcpy(&s, &u, 8);
		if (!(s >= 0) || !isfinite(s))
			return afail(d->a, ALCM_E_CORRUPT, "tensor scale %zu in section %u is not a "
			             "finite non-negative number", c, te->scal_idx);
		d->steps[c] = s;
	}
	d->qp.dtype = te->info.dtype;
	d->qp.step = d->steps;
	d->qp.nsteps = n;
	d->qp.inner = n ? te->info.elements / n : 1;
	return ALCM_OK;
}

/* The read-ahead buffer holds at most twice the chunks in flight (S chunks of this tensor's
 * chunk size): with T threads decode memory stays within the multiple of the chunks in flight
 * that spec 5.6 states. */
static uint64_t ahead_max(const alcm_archive *a, const tentry *te)
{
	uint64_t ce = te->chunk_elems < te->info.elements ? te->chunk_elems : te->info.elements;
	return 2 * (uint64_t)a->nslots * ce * alcm_dtype_size(te->info.dtype);
}

/* Forgets a read-ahead and its buffer: decoding in pieces keeps chunks, not sections, in
 * memory. */
static void ahead_drop(alcm_archive *a)
{
	alcm_block_give(&a->alloc, a->ah.buf, a->ah.cap);
	memset(&a->ah, 0, sizeof(a->ah));
}

/* Takes this tensor's sections if a worker verified them ahead; else, when this call hashes
 * its own sections on two threads and the caller decodes in order (this tensor follows the
 * one decoded last), plans the next tensor's read-ahead: then every other call hashes two
 * sections at once and the next one none. A tensor taken alone (alcm.open(path)[name], or
 * the first of a run) reads nothing ahead: reading and hashing the next one whole cost its
 * section in memory (28 MiB more for a 32 MiB tensor in python_bench.py's RSS check: peak RSS
 * growth 78.7 -> 50.4 MiB) and its hash on another core, for a tensor maybe never asked for. */
static int ahead_take(dec *d, size_t index)
{
	alcm_archive *a = d->a;
	ahead *ah = &a->ah;
	int in_order = a->next_whole && index == a->next_whole;
	a->next_whole = index + 1;
	int had = ah->filled && ah->index == index;
	ah->filled = 0;
	if (!had && ah->cap > ahead_max(a, d->te)) {
		alcm_block_give(&a->alloc, ah->buf, ah->cap);
		ah->buf = NULL;
		ah->cap = 0;
	}
	if (had && ah->st == ALCM_E_DIGEST) {
		alcm_section_info si;
		alcm_reader_section_info(a->r, ah->bad, &si);
		return afail(a, ALCM_E_DIGEST, "digest mismatch in section %u (%s) at offset %llu",
		             ah->bad, si.type, (unsigned long long)si.offset);
	}
	if (had && ah->st == ALCM_OK) {
		d->pre = ah->buf;
		d->verify = 0;
		return ALCM_OK;
	}
	if (!in_order || !d->verify || a->ncoders < 2 || a->shared || a->slot_owner || a->link ||
	    d->te->delta || index + 1 >= a->count || a->t[index + 1].delta)
		return ALCM_OK;
	const tentry *nx = &a->t[index + 1];
	alcm_section_info ds, ms;
	alcm_reader_section_info(a->r, nx->data_idx, &ds);
	uint64_t mlen = 0;
	if (nx->mask_idx != ALCM_NONE && !alcm_reader_section_info(a->r, nx->mask_idx, &ms))
		mlen = ms.length;
	uint64_t tot = ds.length + mlen; /* both within the file */
	if (tot < HASH_ALONE_MIN || tot > ahead_max(a, d->te) || grow(a, &ah->buf, &ah->cap, tot))
		return ALCM_OK; /* not worth it, or no memory for it: the next call reads as usual */
	__atomic_fetch_add(&alcm_ahead_planned, 1, __ATOMIC_RELAXED);
	ah->index = index + 1;
	ah->dlen = ds.length;
	ah->mlen = mlen;
	ah->st = ALCM_E_IO;
	d->fill = ah;
	return ALCM_OK;
}

int alcm_archive_decode(alcm_archive *a, size_t index, void *out, size_t cap)
{
	if (!a || index >= a->count || (!out && a->t[index].info.raw_bytes))
		return ALCM_E_ARG;
	if (a->poisoned)
		return ALCM_E_STATE;
	if (cap < a->t[index].info.raw_bytes)
		return ALCM_E_ARG;
	/* A delta of a checkpoint series: its reference first, then its chunks onto it. */
	if (a->t[index].delta)
		return alcm_series_decode(a, index, out, cap);
	return alcm_archive_decode_onto(a, index, out, cap);
}

/* ---- checkpoint series hooks (series_internal.h) ------------------------------------------ */

alcm_reader *alcm_archive_reader(const alcm_archive *a)
{
	return a->r;
}

const alcm_allocator *alcm_archive_allocator(const alcm_archive *a)
{
	return &a->alloc;
}

alcm_series_link *alcm_archive_link(const alcm_archive *a)
{
	return a->link;
}

void alcm_archive_set_link(alcm_archive *a, alcm_series_link *l)
{
	a->link = l;
}

int alcm_archive_is_delta(const alcm_archive *a, size_t i)
{
	return a && i < a->count && a->t[i].delta;
}

int alcm_archive_delta_plain(alcm_archive *a, size_t i, int *plain)
{
	const tentry *te = &a->t[i];
	uint64_t pos = 0;
	*plain = te->delta;
	for (uint32_t k = 0; k < te->info.chunks && *plain; k++) {
		uint64_t dl = alcm_load64(te->ctab + 16 * (size_t)k);
		uint8_t kind = 1;
		if (dl) {
			int st = alcm_reader_section_pread(a->r, te->data_idx, pos, &kind, 1);
			if (st)
				return afail(a, st, "%s", alcm_reader_detail(a->r));
		}
		*plain = kind == 0;
		pos += dl;
	}
	return ALCM_OK;
}

int alcm_archive_fail(alcm_archive *a, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(a->detail, fmt, ap);
	va_end(ap);
	if (st == ALCM_E_CORRUPT || st == ALCM_E_DIGEST || st == ALCM_E_UNSUPPORTED)
		a->poisoned = 1;
	return st;
}

int alcm_archive_note(alcm_archive *a, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(a->detail, fmt, ap);
	va_end(ap);
	return st;
}

int alcm_archive_share_workers(alcm_archive *a, alcm_archive *owner)
{
	int st = ensure_pool(owner);
	if (st)
		return st;
	alcm_archive_set_threads(a, 1);
	a->pool = owner->pool;
	a->coders = owner->coders;
	a->ncoders = owner->ncoders;
	a->shared = 1;
	a->slot_owner = owner;
	return ALCM_OK;
}

int alcm_archive_decode_onto(alcm_archive *a, size_t index, void *out, size_t cap)
{
	return alcm_archive_decode_onto2(a, index, out, cap, 1);
}

unsigned alcm_archive_workers(alcm_archive *a)
{
	return ensure_pool(a) ? 1 : a->ncoders;
}

uint32_t alcm_archive_data_section(const alcm_archive *a, size_t i)
{
	return a->t[i].data_idx;
}

int alcm_archive_decode_onto2(alcm_archive *a, size_t index, void *out, size_t cap, int digest)
{
	if (!a || index >= a->count || (!out && a->t[index].info.raw_bytes))
		return ALCM_E_ARG;
	if (a->poisoned)
		return ALCM_E_STATE;
	if (cap < a->t[index].info.raw_bytes)
		return ALCM_E_ARG;
	return decode_tensor(a, index, out, NULL, digest);
}

/* Hands on the chunks of the last wave decoded (their digests were checked). */
static int flush_pieces(dec *c)
{
	if (c->emit_n && !c->fn_st)
		emit_wave(c, c->wave - 1);
	c->emit_n = 0;
	return c->fn_st;
}

/* Quantized tensors and series deltas decode whole, into a buffer of the tensor's size. */
static int decode_whole_piece(alcm_archive *a, size_t index, dec *c)
{
	uint64_t n = a->t[index].info.raw_bytes;
	if (n == 0)
		return ALCM_OK;
	uint8_t *buf = alcm_mem_alloc(&a->alloc, (size_t)n);
	if (!buf)
		return afail(a, ALCM_E_NOMEM, "out of memory");
	int st = alcm_archive_decode(a, index, buf, (size_t)n);
	if (!st)
		st = c->fn(c->ctx, c->pos, buf, (size_t)n);
	alcm_mem_free(&a->alloc, buf);
	return st;
}

/*
 * The relay: decoding a list in pieces on T >= 2 threads with digests on, the chunk waves
 * above leave one thread hashing a section (one sequential BLAKE2b stream, the larger part of
 * a lossless tensor's decode) while the others wait for it. For a run of lossless tensors of
 * alcm_relay_min to RELAY_MAX stored bytes, each thread instead takes the next tensor of the
 * run, reads its whole data section and hashes it, then, in its turn (the tensors before it
 * handed on), decodes those very bytes chunk by chunk and hands them on: T sections are hashed
 * at once, and nothing of a tensor is handed on before its digest is right. Memory: one
 * section per thread (RELAY_MEM in all) and one chunk's output and scratch, used by the
 * thread whose turn it is. Decoding a list into the caller's buffers
 * (alcm_archive_decode_list), there is no turn: each thread decodes its tensor into its
 * buffer once verified, with a scratch of its own.
 */
/* Below about 9 KiB a section's hash and decode take less than handing the turn from thread
 * to thread: 3000 tensors of 6.9 KiB stored took 37 ms at -T2 in a relay against 26 ms on the
 * waves (which run such tensors on the caller), 3000 of 13.5 KiB 23 against 44 ms, 1000 of
 * 135 KiB 74 against 155 ms (alcm_archive_decode_pieces into a function that drops them). */
#define RELAY_MIN ((uint64_t)12 << 10)
#define RELAY_MEM ((uint64_t)48 << 20)
#define RELAY_MAX (RELAY_MEM / 2)

int alcm_relay_off = 0;
uint64_t alcm_ahead_planned = 0;
uint64_t alcm_relay_taken = 0, alcm_relay_min = RELAY_MIN;

typedef struct relay {
	alcm_archive *a;
	const size_t *index; /* the run */
	size_t n, pos;       /* its length; the list position of index[0] */
	alcm_piece_fn fn;    /* in pieces: fn takes each chunk, in order */
	void *ctx;
	void *const *out;    /* else: each tensor's buffer */
	uint8_t **sec;       /* a section buffer per job, */
	size_t *scap;
	size_t *shift;       /* where in it the section starts (alcm_reader_dio_shift), */
	alcm_readq **rq;     /* and its reads' queue (NULL: none, read a piece at a time) */
	uint8_t **scratch;   /* the turn's (in pieces), or one per job */
	size_t *xcap;
	uint8_t *obuf;       /* the turn's decoded chunk (in pieces) */
	size_t ocap;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t next, turn;   /* the next tensor to take; (in pieces) the one handed on now */
	size_t done;         /* tensors decoded (into buffers) */
	size_t bad;          /* the first tensor whose read or digest failed (n: none) */
	int fn_st;           /* fn's status */
	size_t dec_t;        /* the first tensor a chunk of which failed to decode (n: none), */
	int dec_st;          /* its status, */
	uint64_t dec_k, dec_pos; /* the chunk */
} relay;

/* Whether tensor index can go in a relay; its section's length. */
static int relay_fits(alcm_archive *a, size_t index, uint64_t *len)
{
	const tentry *te = &a->t[index];
	alcm_section_info si;
	if (te->delta || te->info.mode != ALCM_MODE_LOSSLESS || te->mask_idx != ALCM_NONE ||
	    !te->info.chunks || alcm_reader_section_info(a->r, te->data_idx, &si) ||
	    si.length < alcm_relay_min || si.length > RELAY_MAX)
		return 0;
	uint64_t sum = 0;
	for (uint64_t k = 0; k < te->info.chunks; k++) {
		uint64_t dl = alcm_load64(te->ctab + 16 * k);
		if (alcm_load64(te->ctab + 16 * k + 8) || dl > si.length - sum)
			return 0; /* what the usual path names */
		sum += dl;
	}
	*len = si.length;
	return sum == si.length;
}

/* With direct reads, a relay job keeps this many pieces of its section in flight, and
 * hashes each as it lands. */
#define RELAY_RQ_PIECE ((size_t)1 << 20)
#define RELAY_RQ_DEPTH 8

/* Job j's section from the disk, RELAY_RQ_PIECE at a time, each hashed once read. */
static int relay_read_queued(relay *r, size_t j, uint32_t sec, uint64_t len, alcm_blake2b *h)
{
	alcm_readq *q = r->rq[j];
	uint8_t *b = r->sec[j] + r->shift[j];
	unsigned tk[RELAY_RQ_DEPTH];
	uint64_t next = 0, done = 0;
	int st = ALCM_OK;
	while (done < len) {
		for (; !st && next < len && next - done < RELAY_RQ_DEPTH * RELAY_RQ_PIECE;
		     next += RELAY_RQ_PIECE) {
			size_t n = len - next < RELAY_RQ_PIECE ? (size_t)(len - next) : RELAY_RQ_PIECE;
			st = alcm_readq_start(q, sec, next, b + next, n, &tk[next / RELAY_RQ_PIECE %
			                                                     RELAY_RQ_DEPTH]);
			if (st)
				break;
		}
		if (done == next)
			break; /* none started: st says why */
		size_t n = len - done < RELAY_RQ_PIECE ? (size_t)(len - done) : RELAY_RQ_PIECE;
		int ws = alcm_readq_wait(q, tk[done / RELAY_RQ_PIECE % RELAY_RQ_DEPTH]);
		st = st ? st : ws;
		if (!st)
			alcm_blake2b_update(h, b + done, n);
		done += n; /* after a failure, the reads in flight are waited for all the same */
	}
	return st ? ALCM_E_IO : ALCM_OK;
}

/* Reads tensor t's data section into job j's buffer and checks its digest, a piece at a time
 * (each piece hashed while it is in the cache). @return ALCM_OK or a failure to name again. */
static int relay_read(relay *r, size_t j, size_t t)
{
	alcm_archive *a = r->a;
	const tentry *te = &a->t[r->index[t]];
	alcm_section_info si;
	if (alcm_reader_section_info(a->r, te->data_idx, &si))
		return ALCM_E_IO;
	alcm_blake2b h;
	alcm_blake2b_init(&h, 32);
	r->shift[j] = r->rq[j] ? alcm_reader_dio_shift(a->r, te->data_idx, 0, r->sec[j]) : 0;
	if (r->rq[j] && si.length && relay_read_queued(r, j, te->data_idx, si.length, &h))
		return ALCM_E_IO;
	for (uint64_t p = 0; !r->rq[j] && p < si.length; p += HASH_AHEAD_PIECE) {
		size_t len = si.length - p < HASH_AHEAD_PIECE ? (size_t)(si.length - p)
		                                              : HASH_AHEAD_PIECE;
		if (alcm_reader_section_pread(a->r, te->data_idx, p, r->sec[j] + p, len))
			return ALCM_E_IO;
		alcm_blake2b_update(&h, r->sec[j] + p, len);
	}
	uint8_t out[32];
	alcm_blake2b_final(&h, out);
	return alcm_digest_differs(out, si.digest) ? ALCM_E_DIGEST : ALCM_OK;
}

/* Decodes tensor t from job j's buffer, a chunk at a time: into its buffer, or handed on.
 * @return ALCM_OK, fn's status (*fn_st set), or a chunk's (*k at *dpos). */
static int relay_out(relay *r, size_t j, size_t t, unsigned worker, int *fn_st, uint64_t *k,
                     uint64_t *dpos)
{
	alcm_archive *a = r->a;
	const tentry *te = &a->t[r->index[t]];
	size_t w = alcm_dtype_size(te->info.dtype);
	uint8_t *scratch = r->scratch[r->out ? j : 0];
	*dpos = 0;
	for (*k = 0; *k < te->info.chunks; ++*k) {
		uint64_t dl = alcm_load64(te->ctab + 16 * *k), first = *k * te->chunk_elems;
		uint64_t n = te->info.elements - first < te->chunk_elems ? te->info.elements - first
		                                                         : te->chunk_elems;
		uint8_t *dst = r->out ? (uint8_t *)r->out[t] + first * w : r->obuf;
		alcm_cursor dc = {r->sec[j] + r->shift[j] + *dpos, (size_t)dl, 0};
		int st = alcm_lossless_decode(a->coders[worker], &dc, te->info.dtype, dst, n, scratch);
		if (!st && dc.pos != dc.len)
			st = ALCM_E_CORRUPT;
		if (st)
			return st;
		if (!r->out && (*fn_st = r->fn(r->ctx, r->pos + t, dst, (size_t)(n * w))))
			return *fn_st;
		*dpos += dl;
	}
	return ALCM_OK;
}

/* Whether tensor t may still be decoded (before the first failure; in pieces, its turn
 * come). Under the lock. */
static int relay_go(const relay *r, size_t t)
{
	return t < r->bad && t < r->dec_t && !r->fn_st && (r->out || r->turn == t);
}

/* A relay job: tensors one after another until the run is taken or stopped. */
static void relay_job(void *arg, size_t j, unsigned worker)
{
	relay *r = arg;
	pthread_mutex_lock(&r->mu);
	while (r->next < r->bad && r->next < r->dec_t && !r->fn_st) {
		size_t t = r->next++;
		pthread_mutex_unlock(&r->mu);
		int st = relay_read(r, j, t);
		pthread_mutex_lock(&r->mu);
		if (st && t < r->bad)
			r->bad = t;
		while (!relay_go(r, t) && t < r->bad && t < r->dec_t && !r->fn_st)
			pthread_cond_wait(&r->cv, &r->mu);
		if (!relay_go(r, t))
			break;
		pthread_mutex_unlock(&r->mu);
		int fn_st = ALCM_OK;
		uint64_t k, dpos;
		st = relay_out(r, j, t, worker, &fn_st, &k, &dpos);
		pthread_mutex_lock(&r->mu);
		if (fn_st) {
			r->fn_st = fn_st;
		} else if (st && t < r->dec_t) {
			r->dec_t = t;
			r->dec_st = st;
			r->dec_k = k;
			r->dec_pos = dpos;
		} else if (!st) {
			r->turn = t + 1;
			r->done++;
		}
		pthread_cond_broadcast(&r->cv);
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* The run of tensors from index[0] that a relay takes: at least two, on `jobs` threads
 * (0: none). */
static size_t relay_run(alcm_archive *a, const size_t *index, size_t n, unsigned *jobs)
{
	*jobs = 0;
	if (alcm_relay_off || a->ncoders < 2 || a->shared || a->slot_owner || a->link ||
	    (alcm_reader_open_flags(a->r) & ALCM_READ_NO_VERIFY))
		return 0;
	uint64_t most = 0, len;
	size_t m = 0;
	while (m < n && relay_fits(a, index[m], &len)) {
		most = len > most ? len : most;
		m++;
	}
	uint64_t fit = RELAY_MEM / (most ? most : 1);
	*jobs = (unsigned)(fit < a->ncoders ? fit : a->ncoders);
	if (*jobs > m)
		*jobs = (unsigned)m;
	return *jobs >= 2 ? m : 0;
}

/* Allocates what r's `jobs` threads need for index[0..m). @return 0 or nonzero (no memory). */
static int relay_alloc(relay *r, unsigned jobs)
{
	alcm_archive *a = r->a;
	unsigned nx = r->out ? jobs : 1;
	uint64_t most = 0, out = 0, scratch = 0;
	for (size_t t = 0; t < r->n; t++) {
		const tentry *te = &a->t[r->index[t]];
		alcm_section_info si;
		alcm_reader_section_info(a->r, te->data_idx, &si);
		size_t w = alcm_dtype_size(te->info.dtype);
		uint64_t ce = te->chunk_elems < te->info.elements ? te->chunk_elems : te->info.elements;
		most = si.length > most ? si.length : most;
		out = ce * w > out ? ce * w : out;
		scratch = alcm_lossless_scratch(ce, w) > scratch ? alcm_lossless_scratch(ce, w) : scratch;
	}
	r->sec = alcm_mem_calloc(&a->alloc, jobs, sizeof(*r->sec));
	r->scap = alcm_mem_calloc(&a->alloc, jobs, sizeof(*r->scap));
	r->scratch = alcm_mem_calloc(&a->alloc, nx, sizeof(*r->scratch));
	r->xcap = alcm_mem_calloc(&a->alloc, nx, sizeof(*r->xcap));
	r->shift = alcm_mem_calloc(&a->alloc, jobs, sizeof(*r->shift));
	r->rq = alcm_mem_calloc(&a->alloc, jobs, sizeof(*r->rq));
	if (!r->sec || !r->scap || !r->scratch || !r->xcap || !r->shift || !r->rq ||
	    (!r->out && grow(a, &r->obuf, &r->ocap, out)))
		return 1;
	size_t slack = alcm_reader_dio_align(a->r);
	for (unsigned j = 0; j < jobs; j++) {
		if (grow(a, &r->sec[j], &r->scap[j], most + slack) ||
		    (j < nx && grow_scratch(a, &r->scratch[j], &r->xcap[j], scratch ? scratch : 1)))
			return 1;
		if (slack && alcm_readq_new(&r->rq[j], a->r, RELAY_RQ_DEPTH))
			r->rq[j] = NULL;
	}
	return 0;
}

static void relay_free(relay *r, unsigned jobs)
{
	alcm_archive *a = r->a;
	for (unsigned j = 0; r->rq && j < jobs; j++)
		alcm_readq_free(r->rq[j]);
	alcm_mem_free(&a->alloc, r->rq);
	alcm_mem_free(&a->alloc, r->shift);
	for (unsigned j = 0; r->sec && j < jobs; j++)
		alcm_block_give(&a->alloc, r->sec[j], r->scap[j]);
	for (unsigned j = 0; r->scratch && j < (r->out ? jobs : 1); j++)
		alcm_block_give(&a->alloc, r->scratch[j], r->xcap[j]);
	alcm_mem_free(&a->alloc, r->sec);
	alcm_mem_free(&a->alloc, r->scap);
	alcm_mem_free(&a->alloc, r->scratch);
	alcm_mem_free(&a->alloc, r->xcap);
	alcm_block_give(&a->alloc, r->obuf, r->ocap);
}

/* Names the failure of section sec, which failed to read or verify in a relay, as the usual
 * path does: read again on the caller. @return its status, or ALCM_OK if it reads right now. */
static int relay_failed(alcm_archive *a, uint32_t sec)
{
	int st = alcm_reader_verify_section(a->r, sec);
	alcm_section_info si;
	if (st == ALCM_E_DIGEST && !alcm_reader_section_info(a->r, sec, &si))
		return afail(a, st, "digest mismatch in section %u (%s) at offset %llu", sec, si.type,
		             (unsigned long long)si.offset);
	return st ? afail(a, st, "%s", alcm_reader_detail(a->r)) : ALCM_OK;
}

/* Decodes r's run on `jobs` threads. @return the tensors decoded whole before the first that
 * failed (all of the run, or those before one that failed to read once but reads and verifies
 * right when read again: the caller decodes it again), or SIZE_MAX with *st set (fn's status,
 * a chunk that failed, a section that does not read or verify, named as the usual path names
 * it, no memory). */
static size_t relay_decode(relay *r, unsigned jobs, int *st)
{
	alcm_archive *a = r->a;
	size_t m = r->n;
	r->bad = r->dec_t = m;
	*st = ALCM_OK;
	/* The chunk slots of the usual path, and its hasher, are not used here. */
	slots_free(a);
	size_t done = SIZE_MAX;
	if (relay_alloc(r, jobs) || pthread_mutex_init(&r->mu, NULL)) {
		*st = afail(a, ALCM_E_NOMEM, "out of memory");
	} else if (pthread_cond_init(&r->cv, NULL)) {
		pthread_mutex_destroy(&r->mu);
		*st = afail(a, ALCM_E_NOMEM, "out of memory");
	} else {
		alcm_pool_run(a->pool, relay_job, r, jobs);
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		if (r->fn_st)
			*st = r->fn_st;
		else if (r->dec_t < r->bad)
			*st = chunk_fail(a, &a->t[r->index[r->dec_t]], r->dec_k, r->dec_pos, r->dec_st);
		else if (r->bad < m)
			*st = relay_failed(a, a->t[r->index[r->bad]].data_idx);
		if (!*st)
			done = r->bad; /* m, or one the usual path decodes again */
		/* for the tests; atomic, as archives may decode in several threads at once */
		__atomic_fetch_add(&alcm_relay_taken, (uint64_t)r->done, __ATOMIC_RELAXED);
	}
	relay_free(r, jobs);
	return done;
}

int alcm_archive_decode_pieces(alcm_archive *a, const size_t *index, size_t n, alcm_piece_fn fn,
                               void *ctx)
{
	if (!a || (!index && n) || !fn)
		return ALCM_E_ARG;
	for (size_t i = 0; i < n; i++)
		if (index[i] >= a->count)
			return ALCM_E_ARG;
	if (a->poisoned)
		return ALCM_E_STATE;
	dec c;
	memset(&c, 0, sizeof(c));
	c.fn = fn;
	c.ctx = ctx;
	int st = ensure_pool(a);
	for (size_t i = 0; i < n && !st; i++) {
		const tentry *te = &a->t[index[i]];
		c.pos = i;
		unsigned jobs;
		size_t m = relay_run(a, index + i, n - i, &jobs);
		if (m && !(st = flush_pieces(&c))) {
			relay r = {.a = a, .index = index + i, .n = m, .pos = i, .fn = fn, .ctx = ctx};
			size_t done = relay_decode(&r, jobs, &st);
			if (done == SIZE_MAX)
				break;
			if (done == m) {
				i += m - 1;
				continue;
			}
			i += done; /* decoded again below, to name its failure */
			te = &a->t[index[i]];
			c.pos = i;
		}
		if (st)
			break;
		const tentry *nx = i + 1 < n ? &a->t[index[i + 1]] : NULL;
		unsigned nj;
		c.next_index = nx && !nx->delta && nx->info.mode == ALCM_MODE_LOSSLESS && !a->link &&
		                       !a->shared && !a->slot_owner && index[i + 1] != index[i] &&
		                       !relay_run(a, index + i + 1, n - i - 1, &nj)
		                   ? index[i + 1]
		                   : SIZE_MAX;
		if (te->delta || te->info.mode != ALCM_MODE_LOSSLESS || a->link) {
			st = flush_pieces(&c);
			if (!st)
				st = decode_whole_piece(a, index[i], &c);
		} else {
			st = decode_tensor(a, index[i], NULL, &c, 1);
		}
	}
	return st ? st : flush_pieces(&c);
}

int alcm_archive_decode_list(alcm_archive *a, const size_t *index, size_t n, void *const *out,
                             const size_t *cap, size_t *failed)
{
	if (failed)
		*failed = n;
	if (!a || (n && (!index || !out || !cap)))
		return ALCM_E_ARG;
	for (size_t i = 0; i < n; i++)
		if (index[i] >= a->count || cap[i] < a->t[index[i]].info.raw_bytes ||
		    (!out[i] && a->t[index[i]].info.raw_bytes))
			return ALCM_E_ARG;
	if (a->poisoned)
		return ALCM_E_STATE;
	int st = ensure_pool(a);
	size_t i = 0;
	while (i < n && !st) {
		unsigned jobs;
		size_t m = relay_run(a, index + i, n - i, &jobs);
		if (m) {
			relay r = {.a = a, .index = index + i, .n = m, .out = out + i};
			size_t done = relay_decode(&r, jobs, &st);
			if (done == SIZE_MAX) {
				i += r.dec_t < r.bad ? r.dec_t : r.bad;
				break;
			}
			i += done;
			if (done == m)
				continue;
		}
		if ((st = alcm_archive_decode(a, index[i], out[i], cap[i])))
			break;
		i++;
	}
	if (st && failed)
		*failed = i < n ? i : n;
	return st;
}

/* Decodes into out, or in pieces (carry: the state handed from one tensor of the list to
 * the next, with the last wave of the one before still to hand on). */
static int decode_tensor(alcm_archive *a, size_t index, void *out, dec *carry, int digest)
{
	tentry *te = &a->t[index];
	int st = ensure_pool(a);
	if (st)
		return st;
	dec d;
	memset(&d, 0, sizeof(d));
	alcm_piece_fn fn = carry ? carry->fn : NULL;
	if (carry) {
		d.fn = fn;
		d.ctx = carry->ctx;
		d.wave = carry->wave;
		d.emit_n = carry->emit_n;
		d.emit_pos = carry->emit_pos;
		d.pos = carry->pos;
	}
	d.next_index = carry ? carry->next_index : SIZE_MAX;
	d.a = a;
	d.te = te;
	d.out = out;
	int verify = !(alcm_reader_open_flags(a->r) & ALCM_READ_NO_VERIFY);
	d.verify = verify && digest;
	alcm_blake2b_init(&d.hd, 32);
	alcm_blake2b_init(&d.hm, 32);
	alcm_archive *keep = a->slot_owner ? a->slot_owner : a;
	if (!keep->slots) {
		size_t n = a->ncoders == 1 ? 1 : (size_t)a->ncoders * 2;
		if ((keep->slots = alcm_mem_calloc(&keep->alloc, n, sizeof(dslot))))
			keep->nslots = n;
	}
	/* In pieces, one chunk per thread in a wave (each slot holds two decoded chunks): what is
	 * in flight stays a few chunks, not a tensor. */
	d.nslots = fn && keep->nslots > a->ncoders ? a->ncoders : keep->nslots;
	d.slots = keep->slots;
	if (!d.slots)
		st = afail(a, ALCM_E_NOMEM, "out of memory");
	else
		slots_fit(keep, te, d.emit_n ? (int)((d.wave - 1) % 2) : -1);
	if (!st && fn)
		ahead_drop(a);
	else if (!st)
		st = ahead_take(&d, index);
	if (!st && te->info.mode != ALCM_MODE_LOSSLESS)
		st = load_steps(&d);
	if (!st)
		st = fn ? decode_chunks_pieces(&d) : decode_chunks(&d);
	/* A damaged chunk usually shows first as a decoding error: name the digest instead
	 * when the section's bytes are not the ones the table promises. */
	if (!d.fn_st && (st == ALCM_E_CORRUPT || st == ALCM_E_UNSUPPORTED) && verify &&
	    (alcm_reader_verify_section(a->r, te->data_idx) == ALCM_E_DIGEST ||
	     (te->mask_idx != ALCM_NONE &&
	      alcm_reader_verify_section(a->r, te->mask_idx) == ALCM_E_DIGEST)))
		st = afail(a, ALCM_E_DIGEST, "%s", alcm_reader_detail(a->r));
	if (!st && d.raw_steps)
		alcm_blake2b_update(&d.hd, d.raw_steps, (size_t)te->info.scales * 8);
	if (!st)
		st = check_digest(&d, te->data_idx, &d.hd);
	if (!st && te->mask_idx != ALCM_NONE)
		st = check_digest(&d, te->mask_idx, &d.hm);
	/* The last chunks are handed on once the digests are right: during the next tensor's
	 * first wave, or by flush_pieces. */
	if (carry) {
		carry->wave = d.wave;
		carry->emit_n = st ? 0 : d.emit_n;
		carry->emit_pos = d.emit_pos;
		carry->fn_st = d.fn_st;
		carry->slots = d.slots;
	}
	alcm_mem_free(&a->alloc, d.steps);
	alcm_mem_free(&a->alloc, d.raw_steps);
	/* A status of fn is the caller's: the archive is not poisoned by it. */
	if (!d.fn_st && (st == ALCM_E_CORRUPT || st == ALCM_E_DIGEST || st == ALCM_E_UNSUPPORTED))
		a->poisoned = 1;
	return st;
}
