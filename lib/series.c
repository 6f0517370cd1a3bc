/* Checkpoint series (spec 6.12): frame and settings records, reference chains for the
 * decoder, and the writer that chooses keyframes and references. */
#include "series_internal.h"
#include "container.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SERI_BYTES 72
#define SERI_VERSION 1
#define ID_BYTES 32

/* ---- the frame record (SERI) ------------------------------------------------------------ */

static int id_zero(const uint8_t *id)
{
	uint8_t z = 0;
	for (int i = 0; i < ID_BYTES; i++)
		z |= id[i];
	return z == 0;
}

static void hex8(char *out, const uint8_t *id)
{
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void seri_store(uint8_t *b, const alcm_series_frame *f)
{
	memset(b, 0, SERI_BYTES);
	alcm_store32(b, SERI_VERSION);
	alcm_store32(b + 4, f->frame);
	alcm_store32(b + 8, f->keyframe ? 0 : 1);
	alcm_store32(b + 12, f->keyframe ? ALCM_NONE : f->ref_frame);
	alcm_store32(b + 16, f->ref_base ? 1 : 0);
	if (f->ref_base)
		memcpy(b + 24, f->base_id, ID_BYTES);
	alcm_store64(b + 56, f->est_ref_bytes);
	alcm_store64(b + 64, f->est_prev_bytes);
}

/* Parses SERI section idx (tag `tag`). detail receives the reason of a refusal. */
static int seri_parse(const uint8_t *b, size_t len, uint32_t tag, alcm_series_frame *f,
                      char *detail, uint32_t idx, uint64_t off)
{
#define BAD(st, ...) (alcm_detail_set(detail, __VA_ARGS__), (st))
	if (len != SERI_BYTES)
		return BAD(ALCM_E_CORRUPT, "SERI section %u at offset %llu: %zu bytes, expected %d",
		           idx, (unsigned long long)off, len, SERI_BYTES);
	uint32_t ver = alcm_load32(b), kind = alcm_load32(b + 8), src = alcm_load32(b + 16);
	memset(f, 0, sizeof(*f));
	f->frame = alcm_load32(b + 4);
	f->ref_frame = alcm_load32(b + 12);
	memcpy(f->base_id, b + 24, ID_BYTES);
	f->est_ref_bytes = alcm_load64(b + 56);
	f->est_prev_bytes = alcm_load64(b + 64);
	if (ver != SERI_VERSION)
		return BAD(ALCM_E_UNSUPPORTED, "SERI section %u at offset %llu: record version %u is "
		           "not supported", idx, (unsigned long long)off, ver);
	if (f->frame != tag)
		return BAD(ALCM_E_CORRUPT, "SERI section %u at offset %llu: frame %u in a record "
		           "tagged %u", idx, (unsigned long long)(off + 4), f->frame, tag);
	if (kind > 1)
		return BAD(ALCM_E_UNSUPPORTED, "SERI section %u at offset %llu: frame kind %u is not "
		           "supported", idx, (unsigned long long)(off + 8), kind);
	if (alcm_load32(b + 20))
		return BAD(ALCM_E_CORRUPT, "SERI section %u at offset %llu: reserved field is not "
		           "zero", idx, (unsigned long long)(off + 20));
	f->keyframe = kind == 0;
	if (f->keyframe) {
		if (f->ref_frame != ALCM_NONE || src != 0 || !id_zero(f->base_id))
			return BAD(ALCM_E_CORRUPT, "SERI section %u at offset %llu: a keyframe names a "
			           "reference", idx, (unsigned long long)(off + 12));
		return ALCM_OK;
	}
	if (src > 1)
		return BAD(ALCM_E_UNSUPPORTED, "SERI section %u at offset %llu: reference source %u is "
		           "not supported", idx, (unsigned long long)(off + 16), src);
	f->ref_base = src == 1;
	if (!f->ref_base && f->ref_frame >= f->frame)
		return BAD(ALCM_E_CORRUPT, "SERI section %u at offset %llu: frame %u refers to frame "
		           "%u, which does not come before it", idx, (unsigned long long)(off + 12),
		           f->frame, f->ref_frame);
	if (!f->ref_base && !id_zero(f->base_id))
		return BAD(ALCM_E_CORRUPT, "SERI section %u at offset %llu: base identity without a "
		           "base reference", idx, (unsigned long long)(off + 24));
	return ALCM_OK;
#undef BAD
}

/* The last section of `type` whose tag is `tag` (ALCM_NONE if none). */
static uint32_t last_tagged(alcm_reader *r, const char *type, uint32_t tag)
{
	uint32_t idx = ALCM_NONE, i = 0, k;
	while (alcm_reader_find_section(r, type, i, &k) == ALCM_OK) {
		alcm_section_info si;
		alcm_reader_section_info(r, k, &si);
		if (si.tag == tag)
			idx = k;
		i = k + 1;
	}
	return idx;
}

static int frame_read(alcm_reader *r, uint32_t frame, alcm_series_frame *f, char *detail)
{
	uint32_t idx = last_tagged(r, "SERI", frame);
	if (idx == ALCM_NONE)
		return ALCM_E_NOTFOUND;
	alcm_section_info si;
	uint8_t b[SERI_BYTES];
	alcm_reader_section_info(r, idx, &si);
	if (si.length != SERI_BYTES)
		return seri_parse(b, (size_t)(si.length < SIZE_MAX ? si.length : SIZE_MAX), frame, f,
		                  detail, idx, si.offset);
	int st = alcm_reader_section_read(r, idx, b, sizeof(b));
	if (st) {
		alcm_detail_set(detail, "%s", alcm_reader_detail(r));
		return st;
	}
	return seri_parse(b, sizeof(b), frame, f, detail, idx, si.offset);
}

int alcm_series_frame_read(alcm_reader *r, uint32_t frame, alcm_series_frame *f)
{
	char detail[ALCM_DETAIL_MAX];
	if (!r || !f)
		return ALCM_E_ARG;
	return frame_read(r, frame, f, detail);
}

int alcm_series_base_id(const alcm_reader *base, uint8_t id[32])
{
	if (!base || !id)
		return ALCM_E_ARG;
	const alcm_entry *e;
	uint32_t n;
	uint64_t toff, tsize, gen;
	unsigned slot;
	uint8_t *tbl;
	size_t len;
	alcm_reader_committed(base, &e, &n, &toff, &tsize, &gen, &slot);
	/* The entries are those of the table the reader checked: rebuilt, they are its bytes. */
	if (alcm_table_build(NULL, e, n, &tbl, &len))
		return ALCM_E_NOMEM;
	memcpy(id, tbl + len - ID_BYTES, ID_BYTES);
	alcm_mem_free(NULL, tbl);
	return ALCM_OK;
}

/* ---- the settings record (OPTS) --------------------------------------------------------- */

enum { V_U32, V_U64, V_F64, V_ID, V_STR };

static const struct okey {
	const char *key;
	int type;
} okeys[] = {
	{"mode", V_U32},          {"bound", V_F64},       {"bits", V_U32},
	{"prune", V_F64},         {"level", V_U32},       {"chunk_bytes", V_U64},
	{"int_policy", V_U32},    {"series.keyframe_every", V_U32},
	{"series.reference", V_U32}, {"series.base", V_ID}, {"series.base_name", V_STR},
};
#define NKEYS (sizeof(okeys) / sizeof(okeys[0]))

/* A gradient stream's settings (spec 6.12.3, 6.8): the coding keys above, then these. */
static const struct okey skeys[] = {
	{"stream.schedule", V_U32},         {"stream.error_feedback", V_U32},
	{"stream.window", V_U32},           {"stream.record_cpu", V_U32},
	{"stream.bound_max", V_F64},        {"stream.fidelity_floor_db", V_F64},
	{"stream.trend_tolerance", V_F64},
};
#define NSKEYS (sizeof(skeys) / sizeof(skeys[0]))

static size_t vlen(int type)
{
	return type == V_U32 ? 4 : type == V_ID ? ID_BYTES : 8;
}

static int put_pair(alcm_buf *b, const char *key, const void *v, size_t n)
{
	uint8_t t[4];
	alcm_store32(t, (uint32_t)strlen(key));
	int st = alcm_buf_put(b, t, 4);
	if (!st)
		st = alcm_buf_put(b, key, strlen(key));
	alcm_store32(t, (uint32_t)n);
	if (!st)
		st = alcm_buf_put(b, t, 4);
	if (!st)
		st = alcm_buf_put(b, v, n);
	return st;
}

/* The settings of a frame as an OPTS payload: META's layout (spec 6.1), keys of 6.12.3. */
static int opts_build(alcm_buf *b, const alcm_series_options *o, const uint8_t *base_id,
                      const char *base_name)
{
	const alcm_pack_options *p = &o->pack;
	uint64_t u[NKEYS];
	double d;
	uint32_t count = base_id ? NKEYS : NKEYS - 2;
	uint8_t v[8], c4[4];
	alcm_store32(c4, count);
	int st = alcm_buf_put(b, c4, 4);
	u[0] = (uint64_t)p->mode, u[2] = p->bits, u[4] = (uint64_t)p->level;
	u[5] = p->chunk_bytes, u[6] = (uint64_t)p->int_policy, u[7] = o->keyframe_every;
	u[8] = (uint64_t)o->reference;
	for (uint32_t k = 0; k < count && !st; k++) {
		switch (okeys[k].type) {
		case V_U32: alcm_store32(v, (uint32_t)u[k]); break;
		case V_U64: alcm_store64(v, u[k]); break;
		case V_F64:
			d = k == 1 ? p->bound : p->prune;
			memcpy(&u[k], &d, 8);
			alcm_store64(v, u[k]);
			break;
		default: break;
		}
		if (okeys[k].type == V_ID)
			st = put_pair(b, okeys[k].key, base_id, ID_BYTES);
		else if (okeys[k].type == V_STR)
			st = put_pair(b, okeys[k].key, base_name, base_name ? strlen(base_name) : 0);
		else
			st = put_pair(b, okeys[k].key, v, vlen(okeys[k].type));
	}
	return st;
}

static void stream_key(alcm_stream_options *so, size_t j, uint64_t u, double d)
{
	switch (j) {
	case 0: so->schedule = u != 0; break;
	case 1: so->error_feedback = u != 0; break;
	case 2: so->window = (unsigned)(u > 1000 ? 1000 : u); break;
	case 3: so->record_cpu = u != 0; break;
	case 4: so->bound_max = d; break;
	case 5: so->fidelity_floor_db = d; break;
	default: so->trend_tolerance = d; break;
	}
}

/* Parses an OPTS payload into o (and the stream keys into so, if not NULL); *id and the
 * name (may be NULL) receive the base. */
static int opts_parse(const uint8_t *p, size_t len, alcm_series_options *o,
                      alcm_stream_options *so, int *has_base, uint8_t *id, char *name,
                      size_t cap, char *detail, uint32_t idx)
{
	alcm_cursor c = {p, len, 0};
	uint32_t n;
	*has_base = 0;
	if (name && cap)
		name[0] = '\0';
	if (alcm_cur_u32(&c, &n) || n > len / 8)
		return alcm_detail_set(detail, "OPTS section %u: bad pair count", idx), ALCM_E_CORRUPT;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t kl, vl;
		const uint8_t *k, *v;
		if (alcm_cur_u32(&c, &kl) || alcm_cur_bytes(&c, kl, &k) || alcm_cur_u32(&c, &vl) ||
		    alcm_cur_bytes(&c, vl, &v))
			return alcm_detail_set(detail, "OPTS section %u: pair %u runs past the section",
			                       idx, i), ALCM_E_CORRUPT;
		size_t j = 0;
		while (j < NKEYS && (strlen(okeys[j].key) != kl || memcmp(okeys[j].key, k, kl)))
			j++;
		if (j == NKEYS) {
			size_t q = 0;
			while (so && q < NSKEYS &&
			       (strlen(skeys[q].key) != kl || memcmp(skeys[q].key, k, kl)))
				q++;
			if (!so || q == NSKEYS)
				continue; /* a key of a later version or of an application */
			if (vl != vlen(skeys[q].type))
				return alcm_detail_set(detail, "OPTS section %u: value of '%s' has %u bytes",
				                       idx, skeys[q].key, vl), ALCM_E_CORRUPT;
			uint64_t u = skeys[q].type == V_U32 ? alcm_load32(v) : alcm_load64(v);
			double d;
			memcpy(&d, &u, 8);
			stream_key(so, q, u, d);
			continue;
		}
		if (okeys[j].type != V_STR && vl != vlen(okeys[j].type))
			return alcm_detail_set(detail, "OPTS section %u: value of '%s' has %u bytes", idx,
			                       okeys[j].key, vl), ALCM_E_CORRUPT;
		uint64_t u = okeys[j].type == V_U32 ? alcm_load32(v)
		             : okeys[j].type == V_U64 || okeys[j].type == V_F64 ? alcm_load64(v) : 0;
		double d;
		memcpy(&d, &u, 8);
		switch (j) {
		case 0: o->pack.mode = (int)(u > 99 ? 99 : u); break;
		case 1: o->pack.bound = d; break;
		case 2: o->pack.bits = (unsigned)u; break;
		case 3: o->pack.prune = d; break;
		case 4: o->pack.level = (int)(u > 99 ? 99 : u); break;
		case 5: o->pack.chunk_bytes = u; break;
		case 6: o->pack.int_policy = (int)(u > 99 ? 99 : u); break;
		case 7: o->keyframe_every = (uint32_t)u; break;
		case 8: o->reference = (int)(u > 99 ? 99 : u); break;
		case 9:
			memcpy(id, v, ID_BYTES);
			*has_base = 1;
			break;
		default:
			if (name && cap) {
				size_t m = vl < cap - 1 ? vl : cap - 1;
				memcpy(name, v, m);
				name[m] = '\0';
			}
		}
	}
	if (c.pos != len)
		return alcm_detail_set(detail, "OPTS section %u: %zu trailing bytes", idx,
		                       len - c.pos), ALCM_E_CORRUPT;
	if (o->pack.mode > ALCM_MODE_BITS || o->reference > ALCM_SERIES_REF_TREE)
		return alcm_detail_set(detail, "OPTS section %u: a mode or reference this version "
		                       "does not know", idx), ALCM_E_UNSUPPORTED;
	return ALCM_OK;
}

void alcm_series_options_default(alcm_series_options *o)
{
	memset(o, 0, sizeof(*o));
	alcm_pack_options_default(&o->pack);
	o->keyframe_every = 0;
	o->reference = ALCM_SERIES_REF_ANCHOR;
}

static int first_opts(alcm_reader *r, alcm_series_options *o, alcm_stream_options *so,
                      int *has_base, uint8_t *id, char *name, size_t cap, char *detail)
{
	uint32_t idx;
	if (alcm_reader_find_section(r, "OPTS", 0, &idx) != ALCM_OK)
		return ALCM_E_NOTFOUND;
	alcm_section_info si;
	alcm_limits lim;
	alcm_reader_section_info(r, idx, &si);
	alcm_reader_limits(r, &lim);
	if (si.length > lim.max_meta_bytes)
		return alcm_detail_set(detail, "OPTS section %u: %llu bytes exceed the metadata "
		                       "limit", idx, (unsigned long long)si.length), ALCM_E_LIMIT;
	uint8_t *p = alcm_mem_alloc(NULL, si.length ? (size_t)si.length : 1);
	if (!p)
		return ALCM_E_NOMEM;
	int st = alcm_reader_section_read(r, idx, p, (size_t)si.length);
	if (st)
		alcm_detail_set(detail, "%s", alcm_reader_detail(r));
	else
		st = opts_parse(p, (size_t)si.length, o, so, has_base, id, name, cap, detail, idx);
	alcm_mem_free(NULL, p);
	return st;
}

int alcm_series_options_load(alcm_reader *r, alcm_series_options *o)
{
	char detail[ALCM_DETAIL_MAX];
	uint8_t id[ID_BYTES];
	int hb;
	if (!r || !o)
		return ALCM_E_ARG;
	alcm_series_options_default(o);
	return first_opts(r, o, NULL, &hb, id, NULL, 0, detail);
}

int alcm_stream_opts_build(alcm_buf *b, const alcm_stream_options *so)
{
	const alcm_pack_options *p = &so->pack;
	uint8_t v[8], c4[4];
	alcm_store32(c4, 7 + (uint32_t)NSKEYS);
	int st = alcm_buf_put(b, c4, 4);
	/* The coding keys of okeys[0..6], then skeys, in table order. */
	const double f[] = {p->bound, p->prune, so->bound_max, so->fidelity_floor_db,
	                    so->trend_tolerance};
	const uint64_t u[] = {(uint64_t)p->mode, p->bits, (uint64_t)p->level, p->chunk_bytes,
	                      (uint64_t)p->int_policy, (uint64_t)so->schedule,
	                      (uint64_t)so->error_feedback, so->window, (uint64_t)so->record_cpu};
	size_t fi = 0, ui = 0;
	for (size_t k = 0; k < 7 + NSKEYS && !st; k++) {
		const struct okey *key = k < 7 ? &okeys[k] : &skeys[k - 7];
		if (key->type == V_F64) {
			uint64_t bits;
			memcpy(&bits, &f[fi++], 8);
			alcm_store64(v, bits);
		} else if (key->type == V_U64) {
			alcm_store64(v, u[ui++]);
		} else {
			alcm_store32(v, (uint32_t)u[ui++]);
		}
		st = put_pair(b, key->key, v, vlen(key->type));
	}
	return st;
}

int alcm_stream_options_load(alcm_reader *r, alcm_stream_options *so)
{
	char detail[ALCM_DETAIL_MAX];
	uint8_t id[ID_BYTES];
	int hb;
	if (!r || !so)
		return ALCM_E_ARG;
	alcm_series_options o;
	alcm_series_options_default(&o);
	alcm_stream_options_default(so);
	int st = first_opts(r, &o, so, &hb, id, NULL, 0, detail);
	if (st)
		return st;
	so->pack.mode = o.pack.mode;
	so->pack.bound = o.pack.bound;
	so->pack.bits = o.pack.bits;
	so->pack.prune = o.pack.prune;
	so->pack.level = o.pack.level;
	so->pack.chunk_bytes = o.pack.chunk_bytes;
	so->pack.int_policy = o.pack.int_policy;
	return ALCM_OK;
}

int alcm_series_base_hint(alcm_reader *r, uint8_t id[32], char *name, size_t cap)
{
	char detail[ALCM_DETAIL_MAX];
	alcm_series_options o;
	int hb = 0;
	if (!r || !id)
		return ALCM_E_ARG;
	alcm_series_options_default(&o);
	int st = first_opts(r, &o, NULL, &hb, id, name, cap, detail);
	return st ? st : hb ? ALCM_OK : ALCM_E_NOTFOUND;
}

/* ---- reference chains (decoding) -------------------------------------------------------- */

typedef struct named {
	const char *name;
	size_t len, index;
} named;

/* A directory's tensors sorted by name, then index, for look-ups by name. */
typedef struct name_index {
	named *order;
	size_t n;
	int built;
} name_index;

/* A frame seen while following chains: its directory and its record. */
typedef struct frame_ent {
	alcm_reader *r;
	uint32_t frame;
	alcm_archive *a;     /* NULL for the archive the link belongs to */
	name_index names;
	int rec_state;       /* 0 not read, 1 none, 2 read */
	alcm_series_frame rec;
} frame_ent;

struct alcm_series_link {
	alcm_allocator alloc;
	alcm_reader *base;
	uint8_t base_id[ID_BYTES];
	frame_ent *f;
	size_t n, cap;
	/* The chain being followed: frames and tensor indices, newest first. */
	alcm_archive **sa;
	size_t *si;
	size_t scap;
};

static alcm_series_link *link_get(alcm_archive *a)
{
	alcm_series_link *l = alcm_archive_link(a);
	if (l)
		return l;
	const alcm_allocator *al = alcm_archive_allocator(a);
	l = alcm_mem_calloc(al, 1, sizeof(*l));
	if (!l)
		return NULL;
	l->alloc = *al;
	alcm_archive_set_link(a, l);
	return l;
}

void alcm_series_link_free(alcm_series_link *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		alcm_archive_free(l->f[i].a);
		alcm_mem_free(&l->alloc, l->f[i].names.order);
	}
	alcm_mem_free(&l->alloc, l->f);
	alcm_mem_free(&l->alloc, l->sa);
	alcm_mem_free(&l->alloc, l->si);
	alcm_allocator al = l->alloc;
	alcm_mem_free(&al, l);
}

static frame_ent *ent_find(alcm_series_link *l, alcm_reader *r, uint32_t frame)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->f[i].r == r && l->f[i].frame == frame)
			return &l->f[i];
	return NULL;
}

static frame_ent *ent_add(alcm_series_link *l, alcm_reader *r, uint32_t frame, alcm_archive *a)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 8;
		frame_ent *nf = alcm_mem_realloc(&l->alloc, l->f, nc * sizeof(*nf));
		if (!nf)
			return NULL;
		l->f = nf;
		l->cap = nc;
	}
	frame_ent *e = &l->f[l->n++];
	memset(e, 0, sizeof(*e));
	e->r = r;
	e->frame = frame;
	e->a = a;
	return e;
}

static int cmp_named(const void *x, const void *y)
{
	const named *a = x, *b = y;
	size_t m = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->name, b->name, m);
	if (c)
		return c;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* The first tensor named `name` in a's directory (ALCM_E_NOTFOUND if none), in O(log n)
 * once the index is built: a directory of a million tensors is looked up a million times. */
static int name_lookup(const alcm_allocator *al, name_index *x, alcm_archive *a,
                       const char *name, size_t len, size_t *index)
{
	size_t n = alcm_archive_tensor_count(a);
	if (!x->built) {
		x->order = alcm_mem_alloc(al, (n ? n : 1) * sizeof(named));
		if (!x->order)
			return ALCM_E_NOMEM;
		for (size_t i = 0; i < n; i++) {
			alcm_tensor_info ti;
			alcm_archive_tensor_info(a, i, &ti);
			x->order[i] = (named){ti.name, ti.name_len, i};
		}
		qsort(x->order, n, sizeof(named), cmp_named);
		x->n = n;
		x->built = 1;
	}
	named key = {name, len, 0};
	size_t lo = 0, hi = x->n;
	while (lo < hi) { /* the first entry not below (name, 0) */
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_named(&x->order[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < x->n && x->order[lo].len == len && !memcmp(x->order[lo].name, name, len)) {
		*index = x->order[lo].index;
		return ALCM_OK;
	}
	return ALCM_E_NOTFOUND;
}

static int ent_record(frame_ent *e, char *detail)
{
	if (e->rec_state)
		return e->rec_state == 2 ? ALCM_OK : ALCM_E_NOTFOUND;
	int st = frame_read(e->r, e->frame, &e->rec, detail);
	if (st == ALCM_OK || st == ALCM_E_NOTFOUND)
		e->rec_state = st ? 1 : 2;
	return st;
}

int alcm_archive_set_base(alcm_archive *a, alcm_reader *base)
{
	if (!a || !base)
		return ALCM_E_ARG;
	alcm_series_link *l = link_get(a);
	if (!l)
		return ALCM_E_NOMEM;
	uint8_t id[ID_BYTES];
	int st = alcm_series_base_id(base, id);
	if (st)
		return st;
	alcm_series_frame f;
	char detail[ALCM_DETAIL_MAX];
	st = frame_read(alcm_archive_reader(a), alcm_archive_frame(a), &f, detail);
	if (st && st != ALCM_E_NOTFOUND)
		return alcm_archive_fail(a, st, "%s", detail);
	if (!st && f.ref_base && memcmp(f.base_id, id, ID_BYTES)) {
		char want[17], got[17];
		hex8(want, f.base_id);
		hex8(got, id);
		/* Another archive than the base: a mistake of the caller, who may try again. */
		return alcm_archive_note(a, ALCM_E_DIGEST, "frame %u was coded against a base archive "
		                         "whose identity starts %s; the base given starts %s",
		                         f.frame, want, got);
	}
	l->base = base;
	memcpy(l->base_id, id, ID_BYTES);
	return ALCM_OK;
}

int alcm_archive_tensor_delta(const alcm_archive *a, size_t index)
{
	return alcm_archive_is_delta(a, index);
}

static int push_step(alcm_series_link *l, size_t k, alcm_archive *a, size_t i)
{
	if (k >= l->scap) {
		size_t nc = l->scap ? 2 * l->scap : 8;
		alcm_archive **na = alcm_mem_realloc(&l->alloc, l->sa, nc * sizeof(*na));
		if (!na)
			return ALCM_E_NOMEM;
		l->sa = na;
		size_t *ni = alcm_mem_realloc(&l->alloc, l->si, nc * sizeof(*ni));
		if (!ni)
			return ALCM_E_NOMEM;
		l->si = ni;
		l->scap = nc;
	}
	l->sa[k] = a;
	l->si[k] = i;
	return ALCM_OK;
}

/* The directory of frame `frame` of r, opened once per link. */
static int open_ref(alcm_series_link *l, alcm_reader *r, uint32_t frame, frame_ent **out,
                    char *detail)
{
	frame_ent *e = ent_find(l, r, frame);
	if (e) {
		*out = e;
		return ALCM_OK;
	}
	alcm_archive *a = NULL;
	int st = alcm_archive_open_frame(&a, r, frame, &l->alloc);
	if (st) {
		alcm_detail_set(detail, "%s", a ? alcm_archive_detail(a) : alcm_strerror(st));
		alcm_archive_free(a);
		return st;
	}
	if (!(e = ent_add(l, r, frame, a))) {
		alcm_archive_free(a);
		alcm_detail_set(detail, "out of memory");
		return ALCM_E_NOMEM;
	}
	*out = e;
	return ALCM_OK;
}

int alcm_series_reference(alcm_archive *top, size_t index, uint8_t *out, size_t cap)
{
	/* The whole chain is checked (6.12.6), but decoding starts at the newest delta whose
	 * chunks are all plain, if any: those overwrite every element. */
	int plain, top_plain;
	int st = alcm_archive_delta_plain(top, index, &top_plain);
	if (st)
		return st;
	size_t newest_plain = 0;
	alcm_limits lim;
	alcm_reader *tr = alcm_archive_reader(top);
	alcm_reader_limits(tr, &lim);
	alcm_series_link *l = link_get(top);
	if (!l)
		return alcm_archive_fail(top, ALCM_E_NOMEM, "out of memory");
	alcm_tensor_info ti;
	alcm_archive_tensor_info(top, index, &ti);
	char q[96], detail[ALCM_DETAIL_MAX];
	alcm_detail_quote(q, sizeof(q), ti.name, ti.name_len);
	alcm_archive *cur = top;
	size_t ci = index, depth = 0;
	int in_base = 0; /* past the one step into the base archive */
	for (;;) {
		alcm_reader *r = cur == top ? tr : NULL;
		uint32_t fr = alcm_archive_frame(cur);
		frame_ent *e = cur == top ? ent_find(l, tr, fr) : NULL;
		for (size_t k = 0; !e && k < l->n; k++)
			if (l->f[k].a == cur)
				e = &l->f[k];
		if (!e && !(e = ent_add(l, tr, fr, NULL)))
			return alcm_archive_fail(top, ALCM_E_NOMEM, "out of memory");
		r = e->r;
		if (++depth > lim.max_chain)
			return alcm_archive_fail(top, ALCM_E_LIMIT, "tensor '%s' of frame %u: its "
			                         "reference chain is longer than the limit of %u frames",
			                         q, alcm_archive_frame(top), lim.max_chain);
		if ((st = push_step(l, depth - 1, cur, ci)))
			return alcm_archive_fail(top, st, "out of memory");
		if (depth > 1 && !newest_plain) {
			if ((st = alcm_archive_delta_plain(cur, ci, &plain)))
				return alcm_archive_fail(top, st, "reference frame %u: %s", fr,
				                         alcm_archive_detail(cur));
			newest_plain = plain ? depth - 1 : 0;
		}
		st = ent_record(e, detail);
		if (st == ALCM_E_NOTFOUND)
			return alcm_archive_fail(top, ALCM_E_CORRUPT, "tensor '%s' of frame %u%s is a delta "
			                         "(DLTA) but the frame has no series record (SERI)", q, fr,
			                         in_base ? " of the base archive" : "");
		if (st)
			return alcm_archive_fail(top, st, "%s", detail);
		if (e->rec.keyframe)
			return alcm_archive_fail(top, ALCM_E_CORRUPT, "tensor '%s' of frame %u is a delta "
			                         "(DLTA) but the frame's series record says keyframe", q,
			                         fr);
		alcm_reader *rr = r;
		if (e->rec.ref_base) {
			char want[17];
			hex8(want, e->rec.base_id);
			if (in_base)
				return alcm_archive_fail(top, ALCM_E_UNSUPPORTED, "frame %u of the base "
				                         "archive refers to a base archive of its own: nested "
				                         "bases are not supported", fr);
			if (!l->base)
				return alcm_archive_fail(top, ALCM_E_NOTFOUND, "tensor '%s' of frame %u is a "
				                         "delta against frame %u of a base archive (identity "
				                         "%s...), which was not given", q, fr,
				                         e->rec.ref_frame, want);
			if (memcmp(l->base_id, e->rec.base_id, ID_BYTES)) {
				char got[17];
				hex8(got, l->base_id);
				return alcm_archive_fail(top, ALCM_E_DIGEST, "frame %u was coded against a "
				                         "base archive whose identity starts %s; the base "
				                         "given starts %s", fr, want, got);
			}
			rr = l->base;
			in_base = 1;
		}
		frame_ent *re;
		st = open_ref(l, rr, e->rec.ref_frame, &re, detail);
		if (st == ALCM_E_NOTFOUND)
			return alcm_archive_fail(top, ALCM_E_CORRUPT, "frame %u refers to frame %u, which "
			                         "the %s archive does not have", fr, e->rec.ref_frame,
			                         e->rec.ref_base ? "base" : "same");
		if (st)
			return alcm_archive_fail(top, st, "reference frame %u: %s", e->rec.ref_frame,
			                         detail);
		size_t j;
		st = name_lookup(&l->alloc, &re->names, re->a, ti.name, ti.name_len, &j);
		if (st == ALCM_E_NOMEM)
			return alcm_archive_fail(top, st, "out of memory");
		alcm_tensor_info rj;
		if (!st)
			alcm_archive_tensor_info(re->a, j, &rj);
		if (st || rj.dtype != ti.dtype || rj.ndim != ti.ndim ||
		    memcmp(rj.shape, ti.shape, ti.ndim * sizeof(uint64_t)))
			return alcm_archive_fail(top, ALCM_E_CORRUPT, "tensor '%s' of frame %u is a delta "
			                         "against frame %u, which has no tensor of that name, "
			                         "dtype and shape", q, fr, e->rec.ref_frame);
		cur = re->a;
		ci = j;
		if (!alcm_archive_is_delta(cur, ci))
			break;
	}
	if (top_plain) {
		memset(out, 0, (size_t)ti.raw_bytes);
		return ALCM_OK;
	}
	/* The whole tensor at the end of the chain, then each delta after it, oldest first, all
	 * with the top archive's workers (shared anew: its thread count may have changed). */
	for (size_t k = 1; k < depth; k++)
		if ((st = alcm_archive_share_workers(l->sa[k], top)))
			return alcm_archive_fail(top, st, "cannot start worker threads");
	if ((st = alcm_archive_share_workers(cur, top)))
		return alcm_archive_fail(top, st, "cannot start worker threads");
	alcm_archive *failed = cur;
	size_t from = depth;
	if (newest_plain) {
		from = newest_plain;
		memset(out, 0, (size_t)ti.raw_bytes);
		st = ALCM_OK;
	} else {
		st = alcm_archive_decode(cur, ci, out, cap);
	}
	for (size_t k = from + (newest_plain != 0); !st && k-- > 1;)
		st = alcm_archive_decode_onto(failed = l->sa[k], l->si[k], out, cap);
	if (st)
		return alcm_archive_fail(top, st, "reference of tensor '%s' (frame %u): %s", q,
		                         alcm_archive_frame(failed), alcm_archive_detail(failed));
	return ALCM_OK;
}

/* A section's digest checked on a thread of its own (alcm_series_decode): it only reads (the
 * reader's pread is safe across threads) and hashes into its own buffer. */
typedef struct digest_job {
	alcm_reader *r;
	uint32_t idx;
	int status;
} digest_job;

/* The helper's read block, on its stack: a buffer from the heap, fresh at each decode, cost
 * more in page faults than the digest took (glibc returns large blocks to the system). */
#define DIGEST_BLOCK ((size_t)1 << 16)

static void *digest_run(void *arg)
{
	digest_job *j = arg;
	alcm_section_info si;
	alcm_blake2b hs;
	uint8_t d[32], buf[DIGEST_BLOCK];
	alcm_reader_section_info(j->r, j->idx, &si);
	alcm_blake2b_init(&hs, sizeof(d));
	j->status = ALCM_OK;
	for (uint64_t pos = 0; pos < si.length && !j->status;) {
		size_t n = si.length - pos < DIGEST_BLOCK ? (size_t)(si.length - pos) : DIGEST_BLOCK;
		if (!(j->status = alcm_reader_section_pread(j->r, j->idx, pos, buf, n)))
			alcm_blake2b_update(&hs, buf, n);
		pos += n;
	}
	alcm_blake2b_final(&hs, d);
	if (!j->status && alcm_digest_differs(d, si.digest))
		j->status = ALCM_E_DIGEST;
	return NULL;
}

/* Below this, a thread costs more than the digest it would take off the decode's path. */
#define DIGEST_THREAD_MIN ((uint64_t)1 << 18)

int alcm_series_decode(alcm_archive *a, size_t i, uint8_t *out, size_t cap)
{
	/* With two threads or more, the reference's decode runs its digest job beside its chunks,
	 * and the thread that decoded them then waits on the digest: the delta's own digest is
	 * checked meanwhile, on a thread of its own, instead of after the reference. */
	alcm_reader *r = alcm_archive_reader(a);
	uint32_t idx = alcm_archive_data_section(a, i);
	alcm_section_info si;
	alcm_reader_section_info(r, idx, &si);
	digest_job j = {r, idx, ALCM_OK};
	pthread_t th;
	/* A thread that cannot start leaves the digest to the delta's decode, as without. */
	int threaded = !(alcm_reader_open_flags(r) & ALCM_READ_NO_VERIFY) &&
	               si.length >= DIGEST_THREAD_MIN && alcm_archive_workers(a) >= 2 &&
	               pthread_create(&th, NULL, digest_run, &j) == 0;
	int st = alcm_series_reference(a, i, out, cap);
	if (!st)
		st = alcm_archive_decode_onto2(a, i, out, cap, !threaded);
	if (threaded) {
		pthread_join(th, NULL);
		/* Checked again here for the reader's message (a digest mismatch names the section
		 * and offset; a read error its cause). */
		if (!st && j.status) {
			st = alcm_reader_verify_section(r, idx);
			st = alcm_archive_fail(a, st ? st : j.status, "%s", alcm_reader_detail(r));
		}
	}
	return st;
}

/* ---- the writer ----------------------------------------------------------------------- */

struct alcm_series {
	alcm_allocator alloc;
	alcm_series_options opt;
	alcm_writer *w;
	alcm_reader *arch, *base;
	uint8_t base_id[ID_BYTES];
	int has_base;
	char *base_name;
	alcm_encoder *e;
	alcm_series_frame rec;
	alcm_archive *ref;    /* the reference frame's directory */
	alcm_archive *prev;   /* the frame before, when estimates against it are wanted */
	name_index rnames, pnames;
	uint8_t *rbuf, *pbuf;
	size_t rcap, pcap;
	double est_prev;          /* estimated bits against the frame before */
	double cal_bytes, cal_est; /* delta tensors' bytes and estimated bits: the estimates' scale */
	uint64_t ref_bytes;       /* bytes of the tensors that have a reference, as stored */
	alcm_coder *coder;    /* for the whole-or-delta choice of lossless tensors */
	alcm_series_report rep;
	int finished, poisoned;
	char detail[ALCM_DETAIL_MAX];
};

static int sfail(alcm_series *s, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int sfail(alcm_series *s, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(s->detail, fmt, ap);
	va_end(ap);
	if (st != ALCM_E_ARG)
		s->poisoned = 1;
	return st;
}

const char *alcm_series_detail(const alcm_series *s)
{
	return s ? s->detail : "";
}

alcm_encoder *alcm_series_encoder(alcm_series *s)
{
	return s ? s->e : NULL;
}

void alcm_series_free(alcm_series *s)
{
	if (!s)
		return;
	alcm_encoder_free(s->e);
	alcm_coder_free(s->coder);
	alcm_archive_free(s->ref);
	alcm_archive_free(s->prev);
	alcm_mem_free(&s->alloc, s->rbuf);
	alcm_mem_free(&s->alloc, s->pbuf);
	alcm_mem_free(&s->alloc, s->base_name);
	alcm_mem_free(&s->alloc, s->rnames.order);
	alcm_mem_free(&s->alloc, s->pnames.order);
	alcm_allocator a = s->alloc;
	alcm_mem_free(&a, s);
}

/* Opens frame `frame` of r for decoding references, with the base when there is one. */
static int open_frame(alcm_series *s, alcm_reader *r, uint32_t frame, alcm_archive **out)
{
	int st = alcm_archive_open_frame(out, r, frame, &s->alloc);
	if (!st && s->base && r != s->base)
		st = alcm_archive_set_base(*out, s->base);
	if (!st)
		st = alcm_archive_set_threads(*out, s->opt.pack.threads);
	if (st)
		return sfail(s, st, "frame %u%s: %s", frame, r == s->base ? " of the base archive" : "",
		             *out ? alcm_archive_detail(*out) : alcm_strerror(st));
	return ALCM_OK;
}

/* Bytes of a frame's tensor sections (its directory's stored bytes). */
static int frame_bytes(alcm_series *s, alcm_reader *r, uint32_t frame, uint64_t *bytes)
{
	alcm_archive *a = NULL;
	int st = open_frame(s, r, frame, &a);
	*bytes = 0;
	for (size_t i = 0; !st && i < alcm_archive_tensor_count(a); i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		*bytes += ti.stored_bytes;
	}
	alcm_archive_free(a);
	return st;
}

static int check_opt(const alcm_series_options *o)
{
	const alcm_pack_options *p = &o->pack;
	return (p->mode == ALCM_MODE_LOSSLESS || p->mode == ALCM_MODE_MAX_ERROR ||
	        p->mode == ALCM_MODE_REL_ERROR) &&
	       p->prune == 0 && o->keyframe_every <= ALCM_SERIES_MAX_KEYFRAME_EVERY &&
	       o->reference >= ALCM_SERIES_REF_ANCHOR && o->reference <= ALCM_SERIES_REF_TREE;
}

/* Deltas a frame may be from its keyframe before the automatic rule makes a keyframe: against
 * the frame before, a decode goes through every one of them; in a tree, through at most
 * log2(TREE_RUN + 1) (spec 6.12.7). */
#define PREVIOUS_RUN 8
#define TREE_RUN 15

/*
 * Frame n of an existing series: keyframe or delta, and against which frame (spec 6.12.7).
 * The frames since the last keyframe (the anchor) are walked back; frame 0 coded against the
 * base makes the base's frame the anchor, and frame f then has offset f + 1 from it.
 */
static int choose(alcm_series *s, uint32_t n)
{
	alcm_series_frame f, last;
	char detail[ALCM_DETAIL_MAX];
	uint32_t since = 0, anchor = 0;
	int anchor_base = 0, st, pol = s->opt.reference;
	double cum = 0;
	memset(&last, 0, sizeof(last));
	for (uint32_t k = n; k-- > 0;) {
		st = frame_read(s->arch, k, &f, detail);
		if (st == ALCM_E_NOTFOUND || (!st && f.keyframe)) {
			anchor = k;
			break;
		}
		if (st)
			return sfail(s, st, "%s", detail);
		if (k == n - 1)
			last = f;
		since++;
		if (f.est_prev_bytes)
			cum += (double)f.est_ref_bytes - (double)f.est_prev_bytes;
		if (k == 0) {
			if (!f.ref_base)
				return sfail(s, ALCM_E_CORRUPT, "frame 0 is a delta against its own archive");
			anchor = f.ref_frame;
			anchor_base = 1;
			memcpy(s->rec.base_id, f.base_id, ID_BYTES);
		}
	}
	if (anchor_base && !s->base)
		return sfail(s, ALCM_E_NOTFOUND, "the series is coded against a base archive (identity "
		             "%02x%02x%02x%02x...): give it", s->rec.base_id[0], s->rec.base_id[1],
		             s->rec.base_id[2], s->rec.base_id[3]);
	if (anchor_base && memcmp(s->rec.base_id, s->base_id, ID_BYTES))
		return sfail(s, ALCM_E_DIGEST, "the base given is not the one the series is coded "
		             "against");
	int key;
	if (since + 1 > ALCM_SERIES_MAX_KEYFRAME_EVERY)
		key = 1; /* keep every chain under the readers' default max_chain */
	else if (s->opt.keyframe_every)
		key = since >= s->opt.keyframe_every;
	else if (pol == ALCM_SERIES_REF_PREVIOUS)
		key = since >= PREVIOUS_RUN;
	else if (pol == ALCM_SERIES_REF_TREE && since >= TREE_RUN)
		key = 1;
	else {
		/* Rent or buy: the bytes that referring to older frames than the one before cost
		 * since the anchor, against what a new keyframe costs over one delta. */
		uint64_t ab = 0;
		if ((st = frame_bytes(s, anchor_base ? s->base : s->arch, anchor, &ab)))
			return st;
		double price = (double)ab - (double)last.est_prev_bytes;
		key = since >= 2 && last.est_prev_bytes && cum >= price;
	}
	s->rec.keyframe = key;
	if (key)
		return ALCM_OK;
	uint32_t off = since + 1, roff;
	roff = pol == ALCM_SERIES_REF_ANCHOR ? 0 : pol == ALCM_SERIES_REF_PREVIOUS ? off - 1
	                                                                          : off & (off - 1);
	s->rec.ref_base = anchor_base && roff == 0;
	s->rec.ref_frame = anchor_base ? (roff ? roff - 1 : anchor) : anchor + roff;
	if (!s->rec.ref_base)
		memset(s->rec.base_id, 0, ID_BYTES);
	return ALCM_OK;
}

int alcm_series_begin(alcm_series **out, alcm_writer *w, alcm_reader *series,
                      alcm_reader *base, const alcm_series_options *opt,
                      const alcm_allocator *alloc)
{
	if (!out || !w)
		return ALCM_E_ARG;
	*out = NULL;
	alcm_allocator al;
	alcm_alloc_copy(&al, alloc);
	alcm_series *s = alcm_mem_calloc(&al, 1, sizeof(*s));
	if (!s)
		return ALCM_E_NOMEM;
	*out = s;
	s->alloc = al;
	s->w = w;
	s->arch = series;
	s->base = base;
	if (opt)
		s->opt = *opt;
	else
		alcm_series_options_default(&s->opt);
	if (s->opt.base_name) {
		size_t bl = strlen(s->opt.base_name);
		if (!(s->base_name = alcm_mem_alloc(&s->alloc, bl + 1)))
			return sfail(s, ALCM_E_NOMEM, "out of memory");
		memcpy(s->base_name, s->opt.base_name, bl + 1);
	}
	s->opt.base_name = NULL;
	if (!check_opt(&s->opt))
		return sfail(s, ALCM_E_ARG, "a series codes losslessly or with --max-error or "
		             "--rel-error, without pruning, and a keyframe at most every %d deltas",
		             ALCM_SERIES_MAX_KEYFRAME_EVERY);
	int st = alcm_writer_require_minor(w, 1);
	if (st)
		return sfail(s, st, "%s (checkpoint series are format 1.1)", alcm_writer_detail(w));
	uint32_t n = series ? alcm_archive_frame_count(series) : 0;
	uint32_t base_frame = 0;
	if (base) {
		alcm_archive *ba = NULL;
		if ((st = alcm_series_base_id(base, s->base_id)))
			return sfail(s, st, "cannot read the base archive's table");
		st = alcm_archive_open(&ba, base, &s->alloc);
		base_frame = alcm_archive_frame(ba);
		if (st)
			sfail(s, st, "base archive: %s", ba ? alcm_archive_detail(ba) : alcm_strerror(st));
		alcm_archive_free(ba);
		if (st)
			return st;
		s->has_base = 1;
	}
	s->rec.frame = n;
	s->rec.ref_frame = ALCM_NONE;
	if (n == 0) {
		s->rec.keyframe = !base;
		s->rec.ref_base = base != NULL;
		s->rec.ref_frame = base ? base_frame : ALCM_NONE;
		if (base)
			memcpy(s->rec.base_id, s->base_id, ID_BYTES);
	} else if ((st = choose(s, n))) {
		return st;
	}
	if (!s->rec.keyframe) {
		alcm_reader *rr = s->rec.ref_base ? base : series;
		if ((st = open_frame(s, rr, s->rec.ref_frame, &s->ref)))
			return st;
		/* Estimates against the frame before, for the next writer's keyframe choice. */
		if (!s->opt.keyframe_every && n > 0 && (s->rec.ref_base || s->rec.ref_frame != n - 1) &&
		    (st = open_frame(s, series, n - 1, &s->prev)))
			return st;
	}
	alcm_pack_options po = s->opt.pack;
	po.frame = n;
	if ((st = alcm_encoder_new(&s->e, w, &po, &s->alloc)))
		return sfail(s, st, "%s", s->e ? alcm_encoder_detail(s->e) : "invalid options");
	return ALCM_OK;
}

static int grow(alcm_series *s, uint8_t **p, size_t *cap, uint64_t need)
{
	if (need <= *cap)
		return ALCM_OK;
	if (need > SIZE_MAX)
		return ALCM_E_NOMEM;
	uint8_t *q = alcm_mem_realloc(&s->alloc, *p, (size_t)need);
	if (!q)
		return ALCM_E_NOMEM;
	*p = q;
	*cap = (size_t)need;
	return ALCM_OK;
}

/* Decodes the same-named tensor of frame archive a into *buf when it matches t; 0 if not. */
static int fetch(alcm_series *s, alcm_archive *a, name_index *x, const alcm_tensor *t,
                 uint8_t **buf, size_t *cap, int *found)
{
	size_t j;
	alcm_tensor_info ti;
	*found = 0;
	int st = a ? name_lookup(&s->alloc, x, a, t->name, t->name_len, &j) : ALCM_E_NOTFOUND;
	if (st == ALCM_E_NOMEM)
		return sfail(s, st, "out of memory");
	if (st)
		return ALCM_OK;
	alcm_archive_tensor_info(a, j, &ti);
	if (ti.dtype != t->dtype || ti.ndim != t->ndim ||
	    memcmp(ti.shape, t->shape, t->ndim * sizeof(uint64_t)) || !ti.raw_bytes)
		return ALCM_OK;
	if (grow(s, buf, cap, ti.raw_bytes))
		return sfail(s, ALCM_E_NOMEM, "out of memory");
	st = alcm_archive_decode(a, j, *buf, *cap);
	if (st)
		return sfail(s, st, "reference frame %u: %s", alcm_archive_frame(a),
		             alcm_archive_detail(a));
	*found = 1;
	return ALCM_OK;
}

/* The estimate's step: symbols of the lossy modes, order keys when lossless. */
static double est_step(const alcm_series *s, const alcm_tensor *t)
{
	const alcm_pack_options *p = alcm_encoder_options(s->e);
	if (p->mode == ALCM_MODE_LOSSLESS || !alcm_dtype_is_float(t->dtype))
		return 0;
	if (p->mode == ALCM_MODE_MAX_ERROR)
		return 2 * p->bound;
	size_t w = alcm_dtype_size(t->dtype);
	double m = 0;
	for (uint64_t i = 0; i < t->nbytes / w; i++)
		if (!alcm_is_special(t->dtype, t->data, i))
			m = fmax(m, fabs(alcm_load_float(t->dtype, t->data, i)));
	return 2 * p->bound * m;
}

int alcm_series_add(alcm_series *s, const alcm_tensor *t, alcm_tensor_report *rep)
{
	if (!s || !t)
		return ALCM_E_ARG;
	if (s->finished || s->poisoned || !s->e)
		return ALCM_E_STATE;
	alcm_tensor_report r;
	int found = 0, st;
	uint64_t n = t->nbytes / alcm_dtype_size(t->dtype);
	if (!s->rec.keyframe && t->nbytes && (st = fetch(s, s->ref, &s->rnames, t, &s->rbuf,
	                                                   &s->rcap, &found)))
		return st;
	/* What coding against the frame before would cost, for the next writer's keyframe choice
	 * (6.12.7): estimated for every tensor that has a reference, coded as a delta or not. */
	double er = 0, ep = 0;
	if (found && s->prev) {
		int pf = 0;
		double step = est_step(s, t);
		er = ep = alcm_delta_estimate(t->dtype, t->data, s->rbuf, n, step);
		if ((st = fetch(s, s->prev, &s->pnames, t, &s->pbuf, &s->pcap, &pf)))
			return st;
		if (pf)
			ep = alcm_delta_estimate(t->dtype, t->data, s->pbuf, n, step);
	}
	/* A lossless tensor whose delta would not fit the decode-cost budget (spec 6.12.7) is
	 * stored whole: it then decodes without its reference. */
	int delta = found;
	if (found && (alcm_encoder_options(s->e)->mode == ALCM_MODE_LOSSLESS ||
	              !alcm_dtype_is_float(t->dtype))) {
		if (!s->coder && !(s->coder = alcm_coder_new(&s->alloc, NULL)))
			return sfail(s, ALCM_E_NOMEM, "out of memory");
		if ((st = alcm_delta_worth(s->coder, &s->alloc, t->dtype, t->data, s->rbuf, n,
		                           &delta)))
			return sfail(s, st, "out of memory");
	}
	st = delta ? alcm_encoder_add_delta(s->e, t, s->rbuf, &r, NULL)
	           : alcm_encoder_add(s->e, t, &r);
	if (st)
		return sfail(s, st, "%s", alcm_encoder_detail(s->e));
	if (found) {
		s->ref_bytes += r.stored_bytes;
		s->est_prev += ep;
		if (delta) { /* estimates against actual bytes: the scale of the estimates */
			s->cal_bytes += r.stored_bytes;
			s->cal_est += er;
		}
	}
	s->rep.delta_tensors += (uint64_t)delta;
	s->rep.tensors++;
	s->rep.raw_bytes += t->nbytes;
	s->rep.stored_bytes += r.stored_bytes;
	if (r.max_abs_error > s->rep.max_abs_error)
		s->rep.max_abs_error = r.max_abs_error;
	if (rep)
		*rep = r;
	return ALCM_OK;
}

int alcm_series_finish(alcm_series *s, alcm_series_report *rep)
{
	if (!s)
		return ALCM_E_ARG;
	if (s->finished || s->poisoned || !s->e)
		return ALCM_E_STATE;
	/* A frame none of whose tensors came out as deltas decodes alone: a keyframe, which the
	 * next frames can refer to. */
	if (!s->rec.keyframe && s->rep.delta_tensors == 0) {
		s->rec.keyframe = 1;
		s->rec.ref_frame = ALCM_NONE;
		s->rec.ref_base = 0;
		memset(s->rec.base_id, 0, ID_BYTES);
	}
	/* The tensors that have a reference: their bytes, and what they would have cost against
	 * the frame before (estimates in bits, scaled to bytes by what the deltas really took;
	 * one byte per eight bits without a delta to go by). */
	if (s->rec.keyframe) {
		s->rec.est_ref_bytes = s->rec.est_prev_bytes = 0;
	} else {
		s->rec.est_ref_bytes = s->ref_bytes;
		double scale = s->cal_est > 0 ? s->cal_bytes / s->cal_est : 0.125;
		double prev = s->prev ? s->est_prev * scale : (double)s->ref_bytes;
		if (s->opt.keyframe_every)
			prev = 0;
		else if (prev > (double)s->ref_bytes)
			prev = (double)s->ref_bytes;
		s->rec.est_prev_bytes = (uint64_t)llround(prev);
	}
	uint8_t b[SERI_BYTES];
	seri_store(b, &s->rec);
	alcm_buf o = {NULL, 0, 0, &s->alloc, 0};
	const char *bn = s->base_name;
	int st = opts_build(&o, &s->opt, s->has_base ? s->base_id : NULL, bn);
	if (st) {
		alcm_buf_free(&o);
		return sfail(s, ALCM_E_NOMEM, "out of memory");
	}
	st = alcm_encoder_add_section(s->e, "SERI", 0, b, sizeof(b));
	if (!st)
		st = alcm_encoder_add_section(s->e, "OPTS", 0, o.p, o.len);
	alcm_buf_free(&o);
	if (!st)
		st = alcm_encoder_finish(s->e);
	if (st)
		return sfail(s, st, "%s", alcm_encoder_detail(s->e));
	s->finished = 1;
	s->rep.frame = s->rec.frame;
	s->rep.keyframe = s->rec.keyframe;
	s->rep.ref_frame = s->rec.keyframe ? ALCM_NONE : s->rec.ref_frame;
	s->rep.ref_base = s->rec.ref_base;
	if (rep)
		*rep = s->rep;
	return ALCM_OK;
}
