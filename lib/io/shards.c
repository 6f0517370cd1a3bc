/*
 * Hugging Face sharded checkpoints: "<name>.safetensors.index.json", whose "weight_map"
 * maps each tensor to one of the shard files beside it, read and written as one set.
 *
 * Reading: the index (UTF-8 JSON, at most max_meta_bytes) names the shards; each must be a
 * plain file name in the index's directory ([A-Za-z0-9._-], not starting with '.', ending in
 * ".safetensors": never a path). Every shard's header is read when the input is opened, and
 * the weight_map must list exactly the shards' tensors, each under its own shard; then the
 * shards' tensors are read in order of the shard names, one shard open at a time. The
 * archive keeps the index file as it was (safetensors.index) and the layout: each shard's
 * name, tensor count and __metadata__ (safetensors.shards, spec 6.1.4).
 *
 * Writing: into a directory, each shard through the .safetensors writer with its
 * __metadata__ again, then the index, as it was. Every file is checked against the layout
 * before anything is written, and all are written to temporary files first and renamed at
 * the end, index last.
 */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARDS_MAX 65536u        /* shard files of one index */
#define SHARD_NAME_MAX 255u

/* ---- shared: names, the index's weight_map, the layout record ---- */

/* A plain file name ending in `suffix`: [A-Za-z0-9._-], not starting with '.'. */
static int plain_name(const uint8_t *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	if (n <= k || n > SHARD_NAME_MAX || s[0] == '.' || memcmp(s + n - k, suffix, k) != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static int shard_name_ok(const uint8_t *s, size_t n)
{
	return plain_name(s, n, ".safetensors");
}

typedef struct wm_pair {
	uint8_t *name;           /* decoded tensor name */
	size_t name_len;
	uint32_t shard;          /* index into the sorted shard list */
	uint8_t seen;
} wm_pair;

typedef struct shard {
	uint8_t name[SHARD_NAME_MAX + 1];
	size_t name_len;
	uint64_t tensors;
	uint8_t *meta;           /* the shard's __metadata__ as a JSON object, or NULL */
	size_t meta_len;
} shard;

typedef struct shard_set {
	wm_pair *wm;             /* sorted by name */
	size_t nwm;
	shard *s;                /* sorted by name */
	size_t ns;
} shard_set;

static void set_free(const alcm_allocator *a, shard_set *ss)
{
	for (size_t i = 0; i < ss->nwm; i++)
		alcm_mem_free(a, ss->wm[i].name);
	for (size_t i = 0; i < ss->ns; i++)
		alcm_mem_free(a, ss->s[i].meta);
	alcm_mem_free(a, ss->wm);
	alcm_mem_free(a, ss->s);
	memset(ss, 0, sizeof(*ss));
}

static int pair_cmp(const void *a, const void *b)
{
	const wm_pair *x = a, *y = b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = n ? memcmp(x->name, y->name, n) : 0;
	return c ? c : (x->name_len < y->name_len ? -1 : x->name_len > y->name_len);
}

static int shard_cmp(const void *a, const void *b)
{
	const shard *x = a, *y = b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);
	return c ? c : (x->name_len < y->name_len ? -1 : x->name_len > y->name_len);
}

static wm_pair *wm_find(const shard_set *ss, const uint8_t *name, size_t len)
{
	wm_pair key = {(uint8_t *)name, len, 0, 0};
	return bsearch(&key, ss->wm, ss->nwm, sizeof(*ss->wm), pair_cmp);
}

/* Decodes the string at j->pos into a new buffer. */
static int json_dup(alcm_io_json *j, const alcm_allocator *a, uint8_t **out, size_t *len)
{
	alcm_io_json_ws(j);
	size_t at = j->pos;
	if (alcm_io_json_string(j, NULL, 0, len))
		return j->status;
	*out = alcm_mem_alloc(a, *len ? *len : 1);
	if (!*out)
		return alcm_io_json_error(j, ALCM_E_NOMEM, "out of memory");
	j->pos = at;
	alcm_io_json_string(j, *out, *len, len);
	return ALCM_OK;
}

/*
 * Parses an index: an object whose "weight_map" is an object of tensor name -> shard file.
 * Other members are skipped (they are kept byte for byte anyway). Fills ss with the pairs
 * and the distinct shards, both sorted. why: the reason, with *at its offset.
 */
static int parse_index(const alcm_allocator *a, const uint8_t *p, size_t len, uint32_t max,
                       shard_set *ss, const char **why, size_t *at)
{
	alcm_io_json j = {.p = p, .len = len};
	size_t cap = 0, scap = 0;
	int seen = 0;
	*why = "";
	*at = 0;
	size_t bad;
	if (!alcm_io_utf8_valid(p, len, &bad)) {
		*why = "not UTF-8 text";
		*at = bad;
		return ALCM_E_CORRUPT;
	}
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
		if (kl != 10 || memcmp(k, "weight_map", 10) != 0) {
			if (alcm_io_json_skip(&j, ALCM_IO_JSON_DEPTH))
				goto bad;
		} else {
			if (seen++) {
				alcm_io_json_error(&j, ALCM_E_CORRUPT, "a second weight_map");
				goto bad;
			}
			if (alcm_io_json_expect(&j, '{'))
				goto bad;
			int c = alcm_io_json_peek(&j);
			if (c == '}')
				j.pos++;
			while (c != '}') {
				if (ss->nwm >= max) {
					alcm_io_json_error(&j, ALCM_E_LIMIT, "more tensors than max_tensors");
					goto bad;
				}
				if (ss->nwm == cap) {
					cap = cap ? 2 * cap : 64;
					wm_pair *w = alcm_mem_realloc(a, ss->wm, cap * sizeof(*w));
					if (!w) {
						alcm_io_json_error(&j, ALCM_E_NOMEM, "out of memory");
						goto bad;
					}
					ss->wm = w;
				}
				wm_pair *w = &ss->wm[ss->nwm];
				memset(w, 0, sizeof(*w));
				if (json_dup(&j, a, &w->name, &w->name_len))
					goto bad;
				ss->nwm++;
				uint8_t f[SHARD_NAME_MAX + 1];
				size_t fl;
				if (alcm_io_json_expect(&j, ':'))
					goto bad;
				alcm_io_json_ws(&j);
				size_t fat = j.pos;
				if (alcm_io_json_string(&j, f, sizeof(f), &fl))
					goto bad;
				if (!shard_name_ok(f, fl)) {
					j.pos = fat;
					alcm_io_json_error(&j, ALCM_E_UNSUPPORTED,
					                   "a shard that is not a plain *.safetensors file name "
					                   "([A-Za-z0-9._-], not starting with '.')");
					goto bad;
				}
				size_t s = 0;
				while (s < ss->ns && !(ss->s[s].name_len == fl &&
				                       memcmp(ss->s[s].name, f, fl) == 0))
					s++;
				if (s == ss->ns) {
					if (ss->ns >= SHARDS_MAX) {
						alcm_io_json_error(&j, ALCM_E_LIMIT, "more than 65536 shards");
						goto bad;
					}
					if (ss->ns == scap) {
						scap = scap ? 2 * scap : 16;
						shard *ns = alcm_mem_realloc(a, ss->s, scap * sizeof(*ns));
						if (!ns) {
							alcm_io_json_error(&j, ALCM_E_NOMEM, "out of memory");
							goto bad;
						}
						ss->s = ns;
					}
					memset(&ss->s[s], 0, sizeof(ss->s[s]));
					memcpy(ss->s[s].name, f, fl);
					ss->s[s].name_len = fl;
					ss->ns++;
				}
				w->shard = (uint32_t)s;
				c = alcm_io_json_peek(&j);
				j.pos++;
				if (c != ',' && c != '}') {
					j.pos--;
					alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or '}'");
					goto bad;
				}
			}
		}
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
	if (j.pos != j.len) {
		alcm_io_json_error(&j, ALCM_E_CORRUPT, "bytes after the object");
		goto bad;
	}
	if (!seen) {
		*why = "no \"weight_map\" object";
		return ALCM_E_CORRUPT;
	}
	/* Sort the shards, then renumber the pairs' shard indices. */
	uint32_t *rank = alcm_mem_calloc(a, ss->ns + 1, sizeof(*rank));
	shard *sorted = alcm_mem_calloc(a, ss->ns + 1, sizeof(*sorted));
	if (!rank || !sorted) {
		alcm_mem_free(a, rank);
		alcm_mem_free(a, sorted);
		*why = "out of memory";
		return ALCM_E_NOMEM;
	}
	memcpy(sorted, ss->s, ss->ns * sizeof(*sorted));
	qsort(sorted, ss->ns, sizeof(*sorted), shard_cmp);
	for (size_t i = 0; i < ss->ns; i++)
		for (size_t k = 0; k < ss->ns; k++)
			if (shard_cmp(&ss->s[i], &sorted[k]) == 0)
				rank[i] = (uint32_t)k;
	for (size_t i = 0; i < ss->nwm; i++)
		ss->wm[i].shard = rank[ss->wm[i].shard];
	memcpy(ss->s, sorted, ss->ns * sizeof(*sorted));
	alcm_mem_free(a, rank);
	alcm_mem_free(a, sorted);
	if (ss->nwm > 1)
		qsort(ss->wm, ss->nwm, sizeof(*ss->wm), pair_cmp);
	for (size_t i = 1; i < ss->nwm; i++)
		if (pair_cmp(&ss->wm[i - 1], &ss->wm[i]) == 0) {
			*why = "a tensor name appears twice in the weight_map";
			return ALCM_E_CORRUPT;
		}
	return ALCM_OK;
bad:
	*why = j.err ? j.err : "malformed";
	*at = j.err_pos;
	return j.status ? j.status : ALCM_E_CORRUPT;
}

/* ---- reader ---- */

struct shards_in {
	char *dir;               /* with a trailing '/' */
	shard_set ss;
	size_t cur;              /* shard being read */
	alcm_input *sub;
	uint64_t read;           /* tensors read in all */
};

static char *join(const alcm_allocator *a, const char *dir, const uint8_t *name, size_t len)
{
	size_t dl = strlen(dir);
	char *p = alcm_mem_alloc(a, dl + len + 1);
	if (p) {
		memcpy(p, dir, dl);
		memcpy(p + dl, name, len);
		p[dl + len] = '\0';
	}
	return p;
}

static int open_shard(alcm_input *in, struct shards_in *st, size_t k, alcm_input **sub)
{
	char q[ALCM_IO_QUOTE];
	alcm_io_quote(q, (const char *)st->ss.s[k].name, st->ss.s[k].name_len);
	char *path = join(&in->alloc, st->dir, st->ss.s[k].name, st->ss.s[k].name_len);
	if (!path)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	int rc = alcm_input_open(sub, path, &in->lim, &in->alloc);
	alcm_mem_free(&in->alloc, path);
	if (rc)
		return alcm_io_fail(in, rc, "shard %s", *sub ? alcm_input_detail(*sub) : "");
	if (alcm_input_format(*sub) != ALCM_FILE_SAFETENSORS)
		return alcm_io_fail(in, ALCM_E_UNSUPPORTED, "shard '%s' is a %s file, not .safetensors",
		                    q, alcm_format_name(alcm_input_format(*sub)));
	return ALCM_OK;
}

/* A shard's user.K records as a JSON object, or NULL. */
static int shard_meta(alcm_input *in, const alcm_input *sub, shard *s)
{
	alcm_io_sb b = {.a = &in->alloc};
	for (size_t i = 0; i < sub->meta.n; i++) {
		const alcm_io_meta *m = &sub->meta.m[i];
		if (strncmp(m->key, ALCM_IO_REC_USER, 5) != 0)
			continue;
		alcm_io_sb_put(&b, b.len ? "," : "{", 1);
		alcm_io_json_put_string(&b, m->key + 5, strlen(m->key) - 5);
		alcm_io_sb_put(&b, ":", 1);
		alcm_io_json_put_string(&b, (const char *)m->val, m->len);
	}
	if (b.len)
		alcm_io_sb_put(&b, "}", 1);
	if (b.oom) {
		alcm_io_sb_free(&b);
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	}
	s->meta = b.p;
	s->meta_len = b.len;
	return ALCM_OK;
}

/* Every shard's header against the weight_map. */
static int check_shards(alcm_input *in, struct shards_in *st)
{
	char q[ALCM_IO_QUOTE], f[ALCM_IO_QUOTE];
	uint64_t total = 0;
	for (size_t k = 0; k < st->ss.ns; k++) {
		alcm_input *sub = NULL;
		shard *s = &st->ss.s[k];
		alcm_io_quote(f, (const char *)s->name, s->name_len);
		int rc = open_shard(in, st, k, &sub);
		for (size_t i = 0; rc == ALCM_OK && i < alcm_io_st_count(sub); i++) {
			size_t len;
			const uint8_t *name = alcm_io_st_name(sub, i, &len);
			wm_pair *w = wm_find(&st->ss, name, len);
			alcm_io_quote(q, (const char *)name, len);
			if (!w)
				rc = alcm_io_fail(in, ALCM_E_CORRUPT, "tensor '%s' of shard '%s' is not in "
				                  "the weight_map", q, f);
			else if (w->shard != k)
				rc = alcm_io_fail(in, ALCM_E_CORRUPT, "tensor '%s' is in shard '%s', the "
				                  "weight_map puts it in another", q, f);
			else
				w->seen = 1;
		}
		if (rc == ALCM_OK) {
			s->tensors = alcm_io_st_count(sub);
			total += s->tensors;
			rc = shard_meta(in, sub, s);
		}
		alcm_input_free(sub);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < st->ss.nwm; i++)
		if (!st->ss.wm[i].seen)
			return alcm_io_fail(in, ALCM_E_CORRUPT, "the weight_map lists '%s', which its "
			                    "shard does not hold",
			                    alcm_io_quote(q, (const char *)st->ss.wm[i].name,
			                                  st->ss.wm[i].name_len));
	if (total > in->lim.max_tensors)
		return alcm_io_fail(in, ALCM_E_LIMIT, "%llu tensors exceed the limit of %u",
		                    (unsigned long long)total, (unsigned)in->lim.max_tensors);
	return ALCM_OK;
}

/* safetensors.shards: {"index": NAME, "files": [{"name", "tensors", "metadata"?}...]}. */
static int layout_record(alcm_input *in, struct shards_in *st, const char *index_name)
{
	alcm_io_sb b = {.a = &in->alloc};
	alcm_io_sb_str(&b, "{\"index\":");
	alcm_io_json_put_string(&b, index_name, strlen(index_name));
	alcm_io_sb_str(&b, ",\"files\":[");
	int same = st->ss.ns > 0;
	for (size_t k = 0; k < st->ss.ns; k++) {
		const shard *s = &st->ss.s[k];
		alcm_io_sb_str(&b, k ? ",{\"name\":" : "{\"name\":");
		alcm_io_json_put_string(&b, (const char *)s->name, s->name_len);
		alcm_io_sb_str(&b, ",\"tensors\":");
		alcm_io_sb_u64(&b, s->tensors);
		if (s->meta) {
			alcm_io_sb_str(&b, ",\"metadata\":");
			alcm_io_sb_put(&b, s->meta, s->meta_len);
		}
		alcm_io_sb_put(&b, "}", 1);
		const shard *s0 = &st->ss.s[0];
		same &= s->meta_len == s0->meta_len &&
		        (s->meta_len == 0 || memcmp(s->meta, s0->meta, s->meta_len) == 0);
	}
	alcm_io_sb_str(&b, "]}");
	int rc = b.oom ? ALCM_E_NOMEM : alcm_io_meta_put(&in->alloc, &in->meta, ALCM_IO_REC_SHARDS,
	                                                 strlen(ALCM_IO_REC_SHARDS), b.p, b.len);
	alcm_io_sb_free(&b);
	/* Metadata every shard shares is the archive's too (user.K, as a single file's). */
	if (rc == ALCM_OK && same && st->ss.s[0].meta) {
		alcm_input *sub = NULL;
		rc = open_shard(in, st, 0, &sub);
		for (size_t i = 0; rc == ALCM_OK && i < sub->meta.n; i++)
			if (strncmp(sub->meta.m[i].key, ALCM_IO_REC_USER, 5) == 0)
				rc = alcm_io_meta_put(&in->alloc, &in->meta, sub->meta.m[i].key,
				                      strlen(sub->meta.m[i].key), sub->meta.m[i].val,
				                      sub->meta.m[i].len);
		alcm_input_free(sub);
	}
	return rc == ALCM_E_NOMEM ? alcm_io_fail(in, rc, "out of memory") : rc;
}

static int shards_next(alcm_input *in, alcm_tensor *t, int *has)
{
	struct shards_in *st = in->state;
	for (;;) {
		if (!st->sub) {
			if (st->cur >= st->ss.ns)
				return ALCM_OK;
			int rc = open_shard(in, st, st->cur, &st->sub);
			if (rc)
				return rc;
		}
		int rc = alcm_input_next(st->sub, t, has);
		if (rc)
			return alcm_io_fail(in, rc, "shard %s", alcm_input_detail(st->sub));
		if (*has) {
			wm_pair *w = wm_find(&st->ss, (const uint8_t *)t->name, t->name_len);
			if (!w || w->shard != st->cur) { /* the file changed since it was opened */
				char q[ALCM_IO_QUOTE];
				*has = 0;
				return alcm_io_fail(in, ALCM_E_IO, "tensor '%s' of a shard changed while "
				                    "reading", alcm_io_quote(q, t->name, t->name_len));
			}
			return ALCM_OK;
		}
		alcm_input_free(st->sub);
		st->sub = NULL;
		st->cur++;
	}
}

static void shards_free(alcm_input *in)
{
	struct shards_in *st = in->state;
	if (!st)
		return;
	alcm_input_free(st->sub);
	set_free(&in->alloc, &st->ss);
	alcm_mem_free(&in->alloc, st->dir);
	alcm_mem_free(&in->alloc, st);
	in->state = NULL;
}

static const alcm_io_in_ops shards_in_ops = {shards_next, shards_free, NULL, NULL};

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n > k && strcmp(s + n - k, suffix) == 0;
}

/* The index of a directory: model.safetensors.index.json, else the only *.index.json. */
static int find_index(alcm_input *in, const char *dir, char **path)
{
	DIR *d = opendir(dir);
	if (!d)
		return alcm_io_fail(in, ALCM_E_IO, "cannot list the directory: %s", strerror(errno));
	char *found = NULL;
	int n = 0, model = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!ends_with(de->d_name, ".safetensors.index.json"))
			continue;
		int is_model = strcmp(de->d_name, "model.safetensors.index.json") == 0;
		n++;
		if (found && (model || !is_model))
			continue;
		alcm_mem_free(&in->alloc, found);
		found = join(&in->alloc, "", (const uint8_t *)de->d_name, strlen(de->d_name));
		model = is_model;
		if (!found)
			break;
	}
	closedir(d);
	if (!found && n)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	if (!found)
		return alcm_io_fail(in, ALCM_E_UNSUPPORTED, "a directory without a "
		                    "*.safetensors.index.json (a sharded checkpoint's index)");
	if (n > 1 && !model) {
		alcm_mem_free(&in->alloc, found);
		return alcm_io_fail(in, ALCM_E_ARG, "a directory with several "
		                    "*.safetensors.index.json: name the index to pack");
	}
	size_t dl = strlen(dir);
	*path = alcm_mem_alloc(&in->alloc, dl + strlen(found) + 2);
	if (*path)
		snprintf(*path, dl + strlen(found) + 2, "%s%s%s", dir,
		         dl && dir[dl - 1] == '/' ? "" : "/", found);
	alcm_mem_free(&in->alloc, found);
	return *path ? ALCM_OK : alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
}

int alcm_io_shards_open(alcm_input *in, const char *path)
{
	struct shards_in *st = alcm_mem_calloc(&in->alloc, 1, sizeof(*st));
	if (!st)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	in->state = st;
	in->ops = &shards_in_ops;
	if (!path)
		return alcm_io_fail(in, ALCM_E_UNSUPPORTED, "a shard index is read from a file, whose "
		                    "directory holds the shards, not from memory");
	char *index = NULL;
	int rc = ALCM_OK;
	struct stat sb;
	if (in->fd >= 0 && fstat(in->fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		if ((rc = find_index(in, path, &index)))
			return rc;
		close(in->fd);
		in->fd = open(index, O_RDONLY | O_CLOEXEC);
		if (in->fd < 0 || fstat(in->fd, &sb) != 0) {
			rc = alcm_io_fail(in, ALCM_E_IO, "cannot open '%s': %s", index, strerror(errno));
			alcm_mem_free(&in->alloc, index);
			return rc;
		}
		in->size = (uint64_t)sb.st_size;
		path = index;
	}
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	st->dir = join(&in->alloc, "", (const uint8_t *)path, slash ? (size_t)(slash - path) + 1 : 0);
	char *name = join(&in->alloc, "", (const uint8_t *)base, strlen(base));
	uint8_t *text = NULL;
	if (!st->dir || !name)
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	if (rc == ALCM_OK && in->size > in->lim.max_meta_bytes)
		rc = alcm_io_fail(in, ALCM_E_LIMIT, "an index of %llu bytes exceeds max_meta_bytes "
		                  "(%llu)", (unsigned long long)in->size,
		                  (unsigned long long)in->lim.max_meta_bytes);
	if (rc == ALCM_OK && !(text = alcm_mem_alloc(&in->alloc, in->size ? in->size : 1)))
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	if (rc == ALCM_OK)
		rc = alcm_io_read(in, text, (size_t)in->size, 0);
	if (rc == ALCM_OK) {
		const char *why;
		size_t at;
		rc = parse_index(&in->alloc, text, (size_t)in->size, in->lim.max_tensors, &st->ss,
		                 &why, &at);
		if (rc)
			rc = alcm_io_fail(in, rc, "shard index: %s at offset %zu", why, at);
	}
	if (rc == ALCM_OK && alcm_io_meta_put(&in->alloc, &in->meta, ALCM_IO_REC_INDEX,
	                                      strlen(ALCM_IO_REC_INDEX), text, (size_t)in->size))
		rc = alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	if (rc == ALCM_OK)
		rc = check_shards(in, st);
	if (rc == ALCM_OK)
		rc = layout_record(in, st, name);
	alcm_mem_free(&in->alloc, text);
	alcm_mem_free(&in->alloc, name);
	alcm_mem_free(&in->alloc, index);
	return rc;
}

/* ---- writer ---- */

/* A shard's own error, which already names its file. */
static int sub_fail(alcm_output *o, int rc, const alcm_output *sub)
{
	alcm_detail_set(o->detail, "%s", alcm_output_detail(sub));
	return rc;
}

struct shards_out {
	char *dir;               /* with a trailing '/' */
	shard_set ss;
	uint8_t index_name[SHARD_NAME_MAX + 1];
	size_t index_len;
	alcm_output **sub;       /* one per shard, opened at its first tensor */
	size_t cur;              /* shard of the next tensor */
	uint64_t in_cur;         /* tensors written to it */
};

/* "index" and "files" of safetensors.shards, checked. */
static int parse_layout(alcm_output *o, struct shards_out *so, const alcm_io_meta *m)
{
	alcm_io_json j = {.p = m->val, .len = m->len};
	size_t cap = 0;
	const char *err = NULL;
	if (alcm_io_json_expect(&j, '{'))
		goto bad;
	for (int first = 1;; first = 0) {
		int c = alcm_io_json_peek(&j);
		if (c == '}' && first) {
			j.pos++;
			break;
		}
		uint8_t k[16];
		size_t kl;
		if (alcm_io_json_string(&j, k, sizeof(k), &kl) || alcm_io_json_expect(&j, ':'))
			goto bad;
		if (kl == 5 && memcmp(k, "index", 5) == 0) {
			if (alcm_io_json_string(&j, so->index_name, SHARD_NAME_MAX, &so->index_len))
				goto bad;
			if (!plain_name(so->index_name, so->index_len, ".json")) {
				err = "an index that is not a plain *.json file name";
				goto fail;
			}
		} else if (kl == 5 && memcmp(k, "files", 5) == 0) {
			if (alcm_io_json_expect(&j, '['))
				goto bad;
			while (alcm_io_json_peek(&j) != ']') {
				if (so->ss.ns && alcm_io_json_expect(&j, ','))
					goto bad;
				if (so->ss.ns >= SHARDS_MAX) {
					err = "more than 65536 shards";
					goto fail;
				}
				if (so->ss.ns == cap) {
					cap = cap ? 2 * cap : 16;
					shard *ns = alcm_mem_realloc(&o->alloc, so->ss.s, cap * sizeof(*ns));
					if (!ns)
						return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
					so->ss.s = ns;
				}
				shard *s = &so->ss.s[so->ss.ns++];
				memset(s, 0, sizeof(*s));
				int got = 0;
				if (alcm_io_json_expect(&j, '{'))
					goto bad;
				for (int f2 = 1;; f2 = 0) {
					c = alcm_io_json_peek(&j);
					if (c == '}' && f2) {
						j.pos++;
						break;
					}
					if (alcm_io_json_string(&j, k, sizeof(k), &kl) ||
					    alcm_io_json_expect(&j, ':'))
						goto bad;
					if (kl == 4 && memcmp(k, "name", 4) == 0) {
						if (alcm_io_json_string(&j, s->name, SHARD_NAME_MAX, &s->name_len))
							goto bad;
						if (!shard_name_ok(s->name, s->name_len)) {
							err = "a shard that is not a plain *.safetensors file name";
							goto fail;
						}
						got |= 1;
					} else if (kl == 7 && memcmp(k, "tensors", 7) == 0) {
						if (alcm_io_json_u64(&j, &s->tensors))
							goto bad;
						got |= 2;
					} else if (kl == 8 && memcmp(k, "metadata", 8) == 0) {
						alcm_io_json_ws(&j);
						size_t at = j.pos;
						if (alcm_io_json_skip(&j, 2))
							goto bad;
						s->meta = (uint8_t *)(uintptr_t)(j.p + at); /* borrowed */
						s->meta_len = j.pos - at;
					} else if (alcm_io_json_skip(&j, ALCM_IO_JSON_DEPTH)) {
						goto bad;
					}
					c = alcm_io_json_peek(&j);
					j.pos++;
					if (c == '}')
						break;
					if (c != ',') {
						j.pos--;
						alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or '}'");
						goto bad;
					}
				}
				if (got != 3) {
					err = "a file without \"name\" and \"tensors\"";
					goto fail;
				}
			}
			j.pos++;
		} else if (alcm_io_json_skip(&j, ALCM_IO_JSON_DEPTH)) {
			goto bad;
		}
		c = alcm_io_json_peek(&j);
		j.pos++;
		if (c == '}')
			break;
		if (c != ',') {
			j.pos--;
			alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or '}'");
			goto bad;
		}
	}
	alcm_io_json_ws(&j);
	if (j.pos != j.len) {
		err = "bytes after the object";
		goto fail;
	}
	if (!so->index_len) {
		err = "no \"index\"";
		goto fail;
	}
	for (size_t i = 1; i < so->ss.ns; i++)
		if (shard_cmp(&so->ss.s[i - 1], &so->ss.s[i]) >= 0) {
			err = "shards not in order of their names, or one named twice";
			goto fail;
		}
	return ALCM_OK;
bad:
	return alcm_io_out_fail(o, j.status, "META key %s: %s at offset %zu", ALCM_IO_REC_SHARDS,
	                        j.err, j.err_pos);
fail:
	return alcm_io_out_fail(o, ALCM_E_CORRUPT, "META key %s: %s", ALCM_IO_REC_SHARDS, err);
}

/* Sets a sub-output's user.K records from a shard's "metadata" object. */
static int sub_meta(alcm_output *o, alcm_output *sub, const shard *s)
{
	if (!s->meta)
		return ALCM_OK;
	alcm_io_json j = {.p = s->meta, .len = s->meta_len};
	int c = alcm_io_json_peek(&j);
	if (c == 'n')
		return ALCM_OK;
	if (alcm_io_json_expect(&j, '{'))
		goto bad;
	if (alcm_io_json_peek(&j) == '}')
		return ALCM_OK;
	for (;;) {
		uint8_t *k = NULL, *v = NULL;
		size_t kl, vl;
		int rc = ALCM_OK;
		if (json_dup(&j, &o->alloc, &k, &kl) || alcm_io_json_expect(&j, ':') ||
		    json_dup(&j, &o->alloc, &v, &vl)) {
			alcm_mem_free(&o->alloc, k);
			alcm_mem_free(&o->alloc, v);
			goto bad;
		}
		char *key = alcm_mem_alloc(&o->alloc, kl + 6);
		if (!key || !alcm_io_user_key_ok(k, kl)) {
			rc = key ? alcm_io_out_fail(o, ALCM_E_CORRUPT, "META key %s: a metadata key with "
			                            "a NUL character", ALCM_IO_REC_SHARDS)
			         : alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
		} else {
			memcpy(key, ALCM_IO_REC_USER, 5);
			memcpy(key + 5, k, kl);
			key[kl + 5] = '\0';
			rc = alcm_output_set_meta(sub, key, v, vl);
			if (rc)
				rc = sub_fail(o, rc, sub);
		}
		alcm_mem_free(&o->alloc, key);
		alcm_mem_free(&o->alloc, k);
		alcm_mem_free(&o->alloc, v);
		if (rc)
			return rc;
		c = alcm_io_json_peek(&j);
		j.pos++;
		if (c == '}')
			return ALCM_OK;
		if (c != ',') {
			j.pos--;
			alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected ',' or '}'");
			goto bad;
		}
	}
bad:
	return alcm_io_out_fail(o, j.status ? j.status : ALCM_E_CORRUPT,
	                        "META key %s: a shard's metadata: %s", ALCM_IO_REC_SHARDS,
	                        j.err ? j.err : "not an object of strings");
}

static int shards_plan(alcm_output *o)
{
	struct shards_out *so = o->state;
	const alcm_io_meta *lay = alcm_io_meta_find(&o->meta, ALCM_IO_REC_SHARDS);
	const alcm_io_meta *idx = alcm_io_meta_find(&o->meta, ALCM_IO_REC_INDEX);
	if (!lay || !idx)
		return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED,
		                        "the archive was not packed from a sharded checkpoint (no %s "
		                        "and %s records): write it to one file instead",
		                        ALCM_IO_REC_SHARDS, ALCM_IO_REC_INDEX);
	int rc = parse_layout(o, so, lay);
	if (rc)
		return rc;
	/* The index as it was, checked against the layout and the plan. */
	shard_set ix;
	memset(&ix, 0, sizeof(ix));
	const char *why;
	size_t at;
	char q[ALCM_IO_QUOTE];
	rc = parse_index(&o->alloc, idx->val, idx->len, UINT32_MAX, &ix, &why, &at);
	if (rc) {
		set_free(&o->alloc, &ix);
		return alcm_io_out_fail(o, rc, "META key %s: %s at offset %zu", ALCM_IO_REC_INDEX, why,
		                        at);
	}
	uint64_t total = 0;
	for (size_t k = 0; k < so->ss.ns; k++)
		total += so->ss.s[k].tensors;
	if (total != o->plan_count || ix.nwm != o->plan_count || ix.ns != so->ss.ns)
		rc = alcm_io_out_fail(o, ALCM_E_CORRUPT,
		                      "the shard layout holds %llu tensors in %zu files, the index %zu "
		                      "in %zu, the archive %zu", (unsigned long long)total, so->ss.ns,
		                      ix.nwm, ix.ns, o->plan_count);
	for (size_t k = 0; rc == ALCM_OK && k < ix.ns; k++)
		if (shard_cmp(&ix.s[k], &so->ss.s[k]) != 0)
			rc = alcm_io_out_fail(o, ALCM_E_CORRUPT, "the index and the shard layout name "
			                      "different files");
	size_t k = 0;
	uint64_t in_k = 0;
	for (size_t i = 0; rc == ALCM_OK && i < o->plan_count; i++) {
		while (k < so->ss.ns && in_k == so->ss.s[k].tensors)
			k++, in_k = 0;
		const alcm_io_entry *e = &o->plan[i];
		wm_pair *w = wm_find(&ix, (const uint8_t *)e->name, e->name_len);
		if (!w || w->shard != k)
			rc = alcm_io_out_fail(o, ALCM_E_CORRUPT, "the index does not put tensor '%s' in "
			                      "the shard the layout gives it",
			                      alcm_io_quote(q, e->name, e->name_len));
		in_k++;
	}
	set_free(&o->alloc, &ix);
	if (rc)
		return rc;
	so->sub = alcm_mem_calloc(&o->alloc, so->ss.ns + 1, sizeof(*so->sub));
	if (!so->sub)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	/* Only now, when the records are known to be sound, does the directory appear. */
	so->dir[strlen(so->dir) - 1] = '\0';
	int made = mkdir(so->dir, 0777) == 0 || errno == EEXIST;
	int err = errno;
	so->dir[strlen(so->dir)] = '/';
	if (!made)
		return alcm_io_out_fail(o, ALCM_E_IO, "cannot create the directory: %s",
		                        strerror(err));
	/* Each shard's own plan: its slice of the archive's. */
	size_t first = 0;
	for (k = 0; k < so->ss.ns; k++) {
		const shard *s = &so->ss.s[k];
		char *path = join(&o->alloc, so->dir, s->name, s->name_len);
		alcm_tensor *plan = alcm_mem_calloc(&o->alloc, s->tensors + 1, sizeof(*plan));
		if (!path || !plan) {
			alcm_mem_free(&o->alloc, path);
			alcm_mem_free(&o->alloc, plan);
			return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
		}
		for (uint64_t i = 0; i < s->tensors; i++) {
			const alcm_io_entry *e = &o->plan[first + i];
			plan[i] = (alcm_tensor){.name = e->name, .name_len = e->name_len,
			                        .dtype = e->dtype, .ndim = e->ndim, .nbytes = e->nbytes};
			memcpy(plan[i].shape, e->shape, sizeof(e->shape[0]) * e->ndim);
		}
		first += (size_t)s->tensors;
		rc = alcm_output_open(&so->sub[k], path, ALCM_FILE_SAFETENSORS, o->flags, &o->alloc);
		if (rc == ALCM_OK)
			rc = sub_meta(o, so->sub[k], s);
		else
			rc = sub_fail(o, rc, so->sub[k]);
		if (rc == ALCM_OK && (rc = alcm_output_plan(so->sub[k], plan, (size_t)s->tensors)))
			rc = sub_fail(o, rc, so->sub[k]);
		alcm_mem_free(&o->alloc, path);
		alcm_mem_free(&o->alloc, plan);
		if (rc)
			return rc;
	}
	return ALCM_OK;
}

static int shards_write(alcm_output *o, const alcm_tensor *t)
{
	struct shards_out *so = o->state;
	if (!o->has_plan)
		return alcm_io_out_fail(o, ALCM_E_STATE, "a sharded output needs a plan");
	while (so->cur < so->ss.ns && so->in_cur == so->ss.s[so->cur].tensors)
		so->cur++, so->in_cur = 0;
	int rc = alcm_output_write(so->sub[so->cur], t);
	if (rc)
		return sub_fail(o, rc, so->sub[so->cur]);
	so->in_cur++;
	return ALCM_OK;
}

static int shards_commit(alcm_output *o)
{
	struct shards_out *so = o->state;
	if (!o->has_plan)
		return alcm_io_out_fail(o, ALCM_E_STATE, "a sharded output needs a plan");
	for (size_t k = 0; k < so->ss.ns; k++) {
		int rc = alcm_output_commit(so->sub[k]);
		if (rc)
			return sub_fail(o, rc, so->sub[k]);
	}
	/* The index last, as it was. */
	const alcm_io_meta *idx = alcm_io_meta_find(&o->meta, ALCM_IO_REC_INDEX);
	char *path = join(&o->alloc, so->dir, so->index_name, so->index_len);
	if (!path)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	int rc = alcm_atomic_open(&o->file, path, (o->flags & ALCM_WRITE_OVERWRITE) != 0,
	                          (o->flags & ALCM_WRITE_NO_SYNC) == 0, &o->alloc, o->detail);
	alcm_mem_free(&o->alloc, path);
	if (rc)
		return rc;
	o->file_open = 1;
	return alcm_io_out_write(o, idx->val, idx->len);
}

static void shards_out_free(alcm_output *o)
{
	struct shards_out *so = o->state;
	if (!so)
		return;
	for (size_t k = 0; so->sub && k < so->ss.ns; k++)
		alcm_output_free(so->sub[k]);
	alcm_mem_free(&o->alloc, so->sub);
	alcm_mem_free(&o->alloc, so->ss.s); /* metadata is borrowed from the record */
	alcm_mem_free(&o->alloc, so->dir);
	alcm_mem_free(&o->alloc, so);
	o->state = NULL;
}

static const alcm_io_out_ops shards_out_ops = {shards_plan, shards_write, shards_commit,
                                               shards_out_free, NULL, NULL, NULL};

int alcm_io_shards_out(alcm_output *o, const char *dir)
{
	struct shards_out *so = alcm_mem_calloc(&o->alloc, 1, sizeof(*so));
	if (!so)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	o->state = so;
	o->ops = &shards_out_ops;
	size_t n = strlen(dir);
	so->dir = alcm_mem_alloc(&o->alloc, n + 2);
	if (!so->dir)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	memcpy(so->dir, dir, n + 1);
	while (n > 1 && so->dir[n - 1] == '/')
		so->dir[--n] = '\0';
	struct stat sb;
	if (stat(so->dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
		return alcm_io_out_fail(o, ALCM_E_IO, "not a directory");
	so->dir[n] = '/';
	so->dir[n + 1] = '\0';
	return ALCM_OK;
}
