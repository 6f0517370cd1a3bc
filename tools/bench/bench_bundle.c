/* Bundles: their list, the manifest that pins their bytes, and loading a checked bundle. */
#include "bench_internal.h"
#include "../cli.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

const bench_bundle_def bench_bundles[] = {
	{"text_medium", "Debian licence texts and word list: int32 tokens, bigram, embeddings"},
	{"image_small", "128 Adwaita 48x48 icons: uint8 NHWC, float32 and float16 NCHW"},
	{"mixed_stream", "6 steps: float32 grads, bfloat16, int64 counters, bool, int32 ids"},
	{"checkpoint_small", "2 synthetic transformer checkpoints: float32, bfloat16, int64"},
	{"gradient_stream", "6 steps of float32 gradients: momentum, sparse rows, dead units"},
};
const size_t bench_bundle_count = sizeof(bench_bundles) / sizeof(bench_bundles[0]);

int bench_bundle_index(const char *name)
{
	for (size_t i = 0; i < bench_bundle_count; i++)
		if (strcmp(bench_bundles[i].name, name) == 0)
			return (int)i;
	return -1;
}

#define MANIFEST_MAX_BYTES (1u << 20)
#define MANIFEST_MAX_ENTRIES 1024

static int file_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= 64 || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

static void canonical_line(const bench_manifest_entry *e, char *line, size_t cap)
{
	char hex[65];
	bench_hex(e->digest, 32, hex);
	snprintf(line, cap, "%s %s %llu %s\n", e->bundle, e->file, (unsigned long long)e->size, hex);
}

static int parse_hex32(const char *s, uint8_t out[32])
{
	if (!bench_is_hex64(s))
		return -1;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		sscanf(s + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return 0;
}

int bench_manifest_load(bench_manifest *m, const char *path, char *err, size_t cap)
{
	memset(m, 0, sizeof(*m));
	uint8_t *buf;
	size_t len;
	int e = bench_read_file(path, MANIFEST_MAX_BYTES, &buf, &len);
	if (e)
		return snprintf(err, cap, "cannot read manifest '%s': %s", path, strerror(e)), EXIT_IO;
	m->e = bench_xcalloc(MANIFEST_MAX_ENTRIES, sizeof(bench_manifest_entry));
	int rc = 0, header = 0;
	size_t lineno = 0;
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, NULL, 0, 32);
	if (memchr(buf, '\0', len) || memchr(buf, '\r', len)) {
		rc = EXIT_MALFORMED;
		snprintf(err, cap, "manifest '%s': NUL or CR characters", path);
		goto out;
	}
	for (char *line = (char *)buf, *next; line < (char *)buf + len; line = next) {
		char *nl = strchr(line, '\n');
		next = nl ? nl + 1 : (char *)buf + len;
		if (nl)
			*nl = '\0';
		lineno++;
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (!header) {
			if (strcmp(line, "alcm-bench-manifest 1") != 0) {
				rc = EXIT_MALFORMED;
				snprintf(err, cap, "manifest '%s': first line must be 'alcm-bench-manifest 1'",
				         path);
				goto out;
			}
			header = 1;
			continue;
		}
		char b[64], f[128], sz[32], hx[80], extra[2];
		if (sscanf(line, "%63s %127s %31s %79s %1s", b, f, sz, hx, extra) != 4 ||
		    bench_bundle_index(b) < 0 || !file_name_ok(f) || strspn(sz, "0123456789") != strlen(sz) ||
		    strlen(sz) > 15 || m->n >= MANIFEST_MAX_ENTRIES) {
			rc = EXIT_MALFORMED;
			snprintf(err, cap, "manifest '%s' line %zu: expected 'BUNDLE FILE BYTES BLAKE2B-256'",
			         path, lineno);
			goto out;
		}
		bench_manifest_entry *me = &m->e[m->n];
		memcpy(me->bundle, b, strlen(b) + 1); /* both checked above: short enough */
		memcpy(me->file, f, strlen(f) + 1);
		me->size = strtoull(sz, NULL, 10);
		if (parse_hex32(hx, me->digest)) {
			rc = EXIT_MALFORMED;
			snprintf(err, cap, "manifest '%s' line %zu: digest is not 64 lowercase hex digits",
			         path, lineno);
			goto out;
		}
		for (size_t i = 0; i < m->n; i++)
			if (!strcmp(m->e[i].bundle, b) && !strcmp(m->e[i].file, f)) {
				rc = EXIT_MALFORMED;
				snprintf(err, cap, "manifest '%s' line %zu: %s/%s listed twice", path, lineno, b, f);
				goto out;
			}
		char cl[256];
		canonical_line(me, cl, sizeof(cl));
		crypto_generichash_update(&hs, (const uint8_t *)cl, strlen(cl));
		m->n++;
	}
	if (!header) {
		rc = EXIT_MALFORMED;
		snprintf(err, cap, "manifest '%s': empty", path);
	}
out:
	crypto_generichash_final(&hs, m->digest, 32);
	free(buf);
	if (rc)
		bench_manifest_free(m);
	return rc;
}

void bench_manifest_free(bench_manifest *m)
{
	free(m->e);
	m->e = NULL;
	m->n = 0;
}

int bench_manifest_bundle_digest(const bench_manifest *m, const char *bundle, uint8_t out[32])
{
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, NULL, 0, 32);
	int found = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->e[i].bundle, bundle))
			continue;
		char cl[256];
		canonical_line(&m->e[i], cl, sizeof(cl));
		crypto_generichash_update(&hs, (const uint8_t *)cl, strlen(cl));
		found = 1;
	}
	crypto_generichash_final(&hs, out, 32);
	return found ? 0 : -1;
}

static int load_tensors(bench_file *f, const uint8_t *buf, size_t len, const char *path,
                        char *err, size_t cap)
{
	alcm_input *in = NULL;
	int st = alcm_input_open_memory(&in, buf, len, 0, path, NULL, NULL);
	size_t alloc = 0;
	while (!st) {
		alcm_tensor t;
		int has = 0;
		if ((st = alcm_input_next(in, &t, &has)) || !has)
			break;
		if (f->nt == alloc) {
			alloc = alloc ? 2 * alloc : 16;
			alcm_codec_tensor *nt = realloc(f->t, alloc * sizeof(*nt));
			if (!nt) {
				st = ALCM_E_NOMEM;
				break;
			}
			f->t = nt;
		}
		alcm_codec_tensor *ct = &f->t[f->nt];
		memset(ct, 0, sizeof(*ct));
		char *name = bench_xmalloc(t.name_len + 1);
		memcpy(name, t.name, t.name_len);
		name[t.name_len] = '\0';
		void *data = bench_xmalloc((size_t)t.nbytes);
		if (t.nbytes)
			memcpy(data, t.data, (size_t)t.nbytes);
		ct->name = name;
		ct->name_len = t.name_len;
		ct->dtype = t.dtype;
		ct->ndim = t.ndim;
		memcpy(ct->shape, t.shape, sizeof(ct->shape));
		ct->data = data;
		ct->nbytes = t.nbytes;
		f->raw_bytes += t.nbytes;
		f->nt++;
	}
	if (st)
		snprintf(err, cap, "cannot read '%s': %s", path,
		         in && *alcm_input_detail(in) ? alcm_input_detail(in) : alcm_strerror(st));
	alcm_input_free(in);
	return st ? cli_exit_code(st) : 0;
}

int bench_bundle_load(bench_bundle *b, const bench_manifest *m, const char *name,
                      const char *dir, char *err, size_t cap)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "%s", name);
	if (bench_manifest_bundle_digest(m, name, b->digest))
		return snprintf(err, cap, "bundle '%s' is not in the manifest", name), EXIT_MALFORMED;
	for (size_t i = 0; i < m->n; i++) {
		const bench_manifest_entry *e = &m->e[i];
		if (strcmp(e->bundle, name))
			continue;
		if (b->nf == BENCH_MAX_FILES)
			return snprintf(err, cap, "bundle '%s' has more than %d files", name,
			                BENCH_MAX_FILES), EXIT_LIMIT;
		size_t pl = strlen(dir) + strlen(name) + strlen(e->file) + 3;
		char *path = bench_xmalloc(pl);
		snprintf(path, pl, "%s/%s/%s", dir, name, e->file);
		uint8_t *buf;
		size_t len;
		int x = bench_read_file(path, (size_t)1 << 30, &buf, &len);
		if (x) {
			snprintf(err, cap, "cannot read bundle file '%s': %s (make the bundles with "
			         "tools/bench/bundles/make_bundles.sh)", path, strerror(x));
			free(path);
			return EXIT_IO;
		}
		uint8_t d[32];
		crypto_generichash(d, sizeof(d), buf, len, NULL, 0);
		int rc = 0;
		if (len != e->size) {
			snprintf(err, cap, "refusing bundle '%s': '%s' has %zu bytes, the manifest says "
			         "%llu", name, path, len, (unsigned long long)e->size);
			rc = EXIT_DIGEST;
		} else if (memcmp(d, e->digest, 32)) {
			char want[65], got[65];
			bench_hex(e->digest, 32, want);
			bench_hex(d, 32, got);
			snprintf(err, cap, "refusing bundle '%s': BLAKE2b-256 of '%s' is %.16s..., the "
			         "manifest says %.16s...", name, path, got, want);
			rc = EXIT_DIGEST;
		}
		bench_file *f = &b->f[b->nf];
		snprintf(f->name, sizeof(f->name), "%s", e->file);
		f->file_bytes = len;
		if (!rc)
			rc = load_tensors(f, buf, len, path, err, cap);
		b->nf++;
		free(buf);
		free(path);
		if (rc)
			return rc;
		b->raw_bytes += f->raw_bytes;
		b->file_bytes += f->file_bytes;
		b->tensors += f->nt;
	}
	return 0;
}

void bench_bundle_free(bench_bundle *b)
{
	for (size_t i = 0; i < b->nf; i++) {
		for (size_t j = 0; j < b->f[i].nt; j++) {
			free((void *)(uintptr_t)b->f[i].t[j].name);
			free((void *)(uintptr_t)b->f[i].t[j].data);
		}
		free(b->f[i].t);
	}
	b->nf = 0;
}
