/*
 * The META records (spec 6.1) that tensor files carry into an archive and get back from it:
 * the key/value lists of alcm_input and alcm_output, the alias record (alcm.alias) and the
 * writing of aliases as copies for formats that cannot share storage (.npz, .safetensors).
 * Every record's encoding and decoding lives here or in the module of its format (pt.c:
 * torch.state_dict; shards.c: safetensors.shards), so that they can be reconciled in one
 * place.
 */
#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

int alcm_io_meta_put(const alcm_allocator *a, alcm_io_meta_list *l, const char *key,
                     size_t key_len, const void *v, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		alcm_io_meta *m = alcm_mem_realloc(a, l->m, cap * sizeof(*m));
		if (!m)
			return ALCM_E_NOMEM;
		l->m = m;
		l->cap = cap;
	}
	alcm_io_meta *m = &l->m[l->n];
	m->key = alcm_mem_alloc(a, key_len + 1);
	m->val = alcm_mem_alloc(a, len ? len : 1);
	if (!m->key || !m->val) {
		alcm_mem_free(a, m->key);
		alcm_mem_free(a, m->val);
		return ALCM_E_NOMEM;
	}
	memcpy(m->key, key, key_len);
	m->key[key_len] = '\0';
	if (len)
		memcpy(m->val, v, len);
	m->len = len;
	l->n++;
	return ALCM_OK;
}

const alcm_io_meta *alcm_io_meta_find(const alcm_io_meta_list *l, const char *key)
{
	for (size_t i = l->n; i-- > 0;)
		if (strcmp(l->m[i].key, key) == 0)
			return &l->m[i];
	return NULL;
}

void alcm_io_meta_free(const alcm_allocator *a, alcm_io_meta_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		alcm_mem_free(a, l->m[i].key);
		alcm_mem_free(a, l->m[i].val);
	}
	alcm_mem_free(a, l->m);
	memset(l, 0, sizeof(*l));
}

/* ---- alcm.alias: u32 count, count x { u32 len; alias; u32 len; target } ---- */

void alcm_io_alias_put(alcm_io_sb *b, const char *alias, size_t alias_len, const char *target,
                       size_t target_len)
{
	uint8_t n[4];
	alcm_store32(n, (uint32_t)alias_len);
	alcm_io_sb_put(b, n, 4);
	alcm_io_sb_put(b, alias, alias_len);
	alcm_store32(n, (uint32_t)target_len);
	alcm_io_sb_put(b, n, 4);
	alcm_io_sb_put(b, target, target_len);
}

int alcm_io_alias_decode(const alcm_allocator *a, const uint8_t *v, size_t len,
                         alcm_io_alias **out, size_t *n, char *why)
{
	*out = NULL;
	*n = 0;
	if (len < 4) {
		alcm_detail_set(why, "META key alcm.alias: %zu bytes, at least 4 needed", len);
		return ALCM_E_CORRUPT;
	}
	uint32_t count = alcm_load32(v);
	if (count > (len - 4) / 8) {
		alcm_detail_set(why, "META key alcm.alias: count %u cannot fit in %zu bytes",
		                (unsigned)count, len);
		return ALCM_E_CORRUPT;
	}
	alcm_io_alias *al = alcm_mem_calloc(a, count ? count : 1, sizeof(*al));
	if (!al) {
		alcm_detail_set(why, "out of memory");
		return ALCM_E_NOMEM;
	}
	size_t pos = 4;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *s[2];
		size_t l[2];
		for (int k = 0; k < 2; k++) {
			if (len - pos < 4 || alcm_load32(v + pos) > len - pos - 4) {
				alcm_detail_set(why, "META key alcm.alias: pair %u runs past the value at "
				                "offset %zu", (unsigned)i, pos);
				alcm_mem_free(a, al);
				return ALCM_E_CORRUPT;
			}
			l[k] = alcm_load32(v + pos);
			s[k] = v + pos + 4;
			pos += 4 + l[k];
		}
		al[i] = (alcm_io_alias){.name = s[0], .name_len = l[0], .target = s[1], .target_len = l[1]};
	}
	if (pos != len) {
		alcm_detail_set(why, "META key alcm.alias: %zu bytes left over at offset %zu",
		                len - pos, pos);
		alcm_mem_free(a, al);
		return ALCM_E_CORRUPT;
	}
	*out = al;
	*n = count;
	return ALCM_OK;
}

static int ref_cmp(const void *a, const void *b)
{
	const alcm_io_name_ref *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n ? memcmp(x->p, y->p, n) : 0;
	return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

int alcm_io_alias_check(const alcm_allocator *a, const alcm_io_alias *al, size_t na,
                        alcm_io_name_ref *names, size_t n, char *why)
{
	char q[ALCM_IO_QUOTE];
	qsort(names, n, sizeof(*names), ref_cmp);
	alcm_io_name_ref *seen = alcm_mem_calloc(a, na + 1, sizeof(*seen));
	if (!seen) {
		alcm_detail_set(why, "out of memory");
		return ALCM_E_NOMEM;
	}
	int rc = ALCM_OK;
	for (size_t k = 0; k < na && rc == ALCM_OK; k++) {
		alcm_io_name_ref t = {al[k].target, al[k].target_len, 0};
		alcm_io_name_ref s = {al[k].name, al[k].name_len, k};
		if (!bsearch(&t, names, n, sizeof(*names), ref_cmp)) {
			alcm_detail_set(why, "META key alcm.alias: target '%s' is not a tensor of the "
			                "archive", alcm_io_quote(q, (const char *)t.p, t.len));
			rc = ALCM_E_CORRUPT;
		} else if (bsearch(&s, names, n, sizeof(*names), ref_cmp)) {
			alcm_detail_set(why, "META key alcm.alias: alias '%s' is also a tensor's name",
			                alcm_io_quote(q, (const char *)s.p, s.len));
			rc = ALCM_E_CORRUPT;
		}
		seen[k] = s;
	}
	if (rc == ALCM_OK && alcm_io_names_dup(seen, na) != SIZE_MAX) {
		alcm_detail_set(why, "META key alcm.alias: an alias named twice");
		rc = ALCM_E_CORRUPT;
	}
	alcm_mem_free(a, seen);
	return rc;
}

/* ---- aliases written as copies (.npz, .safetensors) ---- */

struct alias_out {
	alcm_tensor *plan;       /* the caller's plan with each alias right after its target */
	uint8_t *is_alias;
	size_t n;
};

static int same_name(const char *a, size_t al, const uint8_t *b, size_t bl)
{
	return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

int alcm_io_out_aliases_plan(alcm_output *o, const alcm_tensor *t, size_t count,
                             const alcm_tensor **plan, size_t *n)
{
	*plan = t;
	*n = count;
	alcm_io_out_aliases_free(o);
	const alcm_io_meta *m = alcm_io_meta_find(&o->meta, ALCM_IO_REC_ALIAS);
	if (!m || (o->format != ALCM_FILE_NPZ && o->format != ALCM_FILE_SAFETENSORS))
		return ALCM_OK;
	alcm_io_alias *al;
	size_t na;
	char why[ALCM_DETAIL_MAX];
	int rc = alcm_io_alias_decode(&o->alloc, m->val, m->len, &al, &na, why);
	alcm_io_name_ref *names = rc ? NULL : alcm_mem_calloc(&o->alloc, count + 1, sizeof(*names));
	if (!rc && !names) {
		alcm_detail_set(why, "out of memory");
		rc = ALCM_E_NOMEM;
	}
	for (size_t i = 0; !rc && i < count; i++)
		names[i] = (alcm_io_name_ref){(const uint8_t *)t[i].name, t[i].name_len, i};
	if (!rc)
		rc = alcm_io_alias_check(&o->alloc, al, na, names, count, why);
	alcm_mem_free(&o->alloc, names);
	if (rc) {
		alcm_mem_free(&o->alloc, al);
		return alcm_io_out_fail(o, rc, "%s", why);
	}
	struct alias_out *ao = alcm_mem_calloc(&o->alloc, 1, sizeof(*ao));
	size_t cap = count + na + 1;
	if (ao) {
		ao->plan = alcm_mem_calloc(&o->alloc, cap, sizeof(*ao->plan));
		ao->is_alias = alcm_mem_calloc(&o->alloc, cap, 1);
	}
	if (!ao || !ao->plan || !ao->is_alias) {
		if (ao) {
			alcm_mem_free(&o->alloc, ao->plan);
			alcm_mem_free(&o->alloc, ao->is_alias);
		}
		alcm_mem_free(&o->alloc, ao);
		alcm_mem_free(&o->alloc, al);
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	}
	/* Aliases are few (tied weights): a scan per tensor is cheap enough. */
	for (size_t i = 0; i < count; i++) {
		ao->plan[ao->n++] = t[i];
		for (size_t k = 0; k < na; k++) {
			if (!same_name(t[i].name, t[i].name_len, al[k].target, al[k].target_len))
				continue;
			alcm_tensor c = t[i];
			c.name = (const char *)al[k].name;
			c.name_len = al[k].name_len;
			ao->is_alias[ao->n] = 1;
			ao->plan[ao->n++] = c;
		}
	}
	alcm_mem_free(&o->alloc, al);
	o->aliases = ao;
	*plan = ao->plan;
	*n = ao->n;
	return ALCM_OK;
}

int alcm_io_out_aliases_write(alcm_output *o, const alcm_tensor *t)
{
	struct alias_out *ao = o->aliases;
	if (!ao)
		return ALCM_OK;
	while (o->written < ao->n && ao->is_alias[o->written]) {
		alcm_tensor c = *t;
		c.name = ao->plan[o->written].name;
		c.name_len = ao->plan[o->written].name_len;
		int rc = o->ops->write(o, &c);
		if (rc)
			return rc;
		o->written++;
	}
	return ALCM_OK;
}

void alcm_io_out_aliases_free(alcm_output *o)
{
	struct alias_out *ao = o->aliases;
	if (!ao)
		return;
	alcm_mem_free(&o->alloc, ao->plan);
	alcm_mem_free(&o->alloc, ao->is_alias);
	alcm_mem_free(&o->alloc, ao);
	o->aliases = NULL;
}

/* ---- user.K: string metadata (safetensors' __metadata__) ---- */

int alcm_io_user_key_ok(const uint8_t *k, size_t len)
{
	return memchr(k, 0, len) == NULL && len <= 65535 - 5;
}
