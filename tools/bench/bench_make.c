/* Bundle generators (alcm-bench --make-bundle NAME --out DIR). Real content where it suits,
 * read from files Debian packages ship, generated content elsewhere; deterministic for a
 * seed. The bytes are pinned by tools/bench/bundles/manifest.txt: if a package changes its
 * files, the manifest check fails loudly instead of the benchmark quietly changing. */
#include "bench_internal.h"
#include "../cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LICENSE_DIR "/usr/share/common-licenses"
#define DICT_FILE "/usr/share/dict/american-english"
#define ICON_DIR "/usr/share/icons/Adwaita/48x48/legacy"

/* Fixed order; links (GPL -> GPL-3, ...) are left out so that each text counts once. */
static const char *const license_files[] = {
	"Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.2", "GFDL-1.3", "GPL-1", "GPL-2",
	"GPL-3", "LGPL-2", "LGPL-2.1", "LGPL-3", "MPL-1.1", "MPL-2.0",
};

#define TEXT_VOCAB 768   /* rows of the bigram matrix: the 767 most frequent tokens + other */
#define TEXT_EMBED 64
#define DICT_WIDTH 16
#define ICONS 128
#define ICON_SIDE 48
#define FRAMES 6

typedef struct out_tensor {
	char name[64];
	int dtype;
	uint32_t ndim;
	uint64_t shape[4];
	void *data;
} out_tensor;

static uint64_t elems_of(const out_tensor *t)
{
	uint64_t e = 1;
	for (uint32_t i = 0; i < t->ndim; i++)
		e *= t->shape[i];
	return e;
}

static void *tensor_new(out_tensor *t, const char *name, int dtype, uint32_t ndim, uint64_t s0,
                        uint64_t s1, uint64_t s2, uint64_t s3)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->dtype = dtype;
	t->ndim = ndim;
	uint64_t s[4] = {s0, s1, s2, s3};
	memcpy(t->shape, s, sizeof(s));
	t->data = bench_xcalloc((size_t)elems_of(t), alcm_dtype_size(dtype));
	return t->data;
}

static int write_tensors(const char *dir, const char *file, out_tensor *ts, size_t n)
{
	size_t pl = strlen(dir) + strlen(file) + 2;
	char *path = bench_xmalloc(pl);
	snprintf(path, pl, "%s/%s", dir, file);
	alcm_tensor *at = bench_xcalloc(n, sizeof(alcm_tensor));
	for (size_t i = 0; i < n; i++) {
		at[i].name = ts[i].name;
		at[i].name_len = strlen(ts[i].name);
		at[i].dtype = ts[i].dtype;
		at[i].ndim = ts[i].ndim;
		memcpy(at[i].shape, ts[i].shape, sizeof(ts[i].shape));
		at[i].data = ts[i].data;
		at[i].nbytes = elems_of(&ts[i]) * alcm_dtype_size(ts[i].dtype);
	}
	alcm_output *o = NULL;
	int st = alcm_output_open(&o, path, alcm_format_from_extension(path),
	                          ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_output_plan(o, at, n);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_output_write(o, &at[i]);
	if (!st)
		st = alcm_output_commit(o);
	int rc = st ? cli_fail(st, "write", path, alcm_output_detail(o)) : 0;
	alcm_output_free(o);
	free(at);
	free(path);
	for (size_t i = 0; i < n; i++) {
		free(ts[i].data);
		ts[i].data = NULL;
	}
	return rc;
}

static int read_source(const char *path, uint8_t **buf, size_t *len, const char *package)
{
	int e = bench_read_file(path, (size_t)64 << 20, buf, len);
	if (e)
		cli_err("cannot read '%s': %s (Debian package %s; tools/bench/bundles/make_bundles.sh "
		        "installs it)", path, strerror(e), package);
	return e ? EXIT_IO : 0;
}

static void put_f32(void *p, size_t i, double v)
{
	float f = (float)v;
	memcpy((char *)p + 4 * i, &f, 4);
}

static void put_bf16(void *p, size_t i, double v)
{
	uint16_t h = bench_f32_to_bf16((float)v);
	memcpy((char *)p + 2 * i, &h, 2);
}

/* ---- text_medium -------------------------------------------------------------------------- */

typedef struct tok {
	const uint8_t *s;
	uint32_t len;
	uint32_t count;
	uint32_t id;
} tok;

typedef struct tok_table {
	tok *slot;
	size_t cap, n;
} tok_table;

static uint32_t tok_hash(const uint8_t *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

static tok *tok_probe(tok_table *t, const uint8_t *s, uint32_t n)
{
	size_t j = tok_hash(s, n) & (t->cap - 1);
	while (t->slot[j].s && !(t->slot[j].len == n && !memcmp(t->slot[j].s, s, n)))
		j = (j + 1) & (t->cap - 1);
	return &t->slot[j];
}

/* Finds or inserts a token. Only an insertion may grow the table (and move its entries). */
static tok *tok_find(tok_table *t, const uint8_t *s, uint32_t n)
{
	if (t->cap) {
		tok *e = tok_probe(t, s, n);
		if (e->s)
			return e;
	}
	if (2 * (t->n + 1) > t->cap) {
		tok_table g = {bench_xcalloc(t->cap ? 2 * t->cap : 4096, sizeof(tok)),
		               t->cap ? 2 * t->cap : 4096, t->n};
		for (size_t i = 0; i < t->cap; i++)
			if (t->slot[i].s)
				*tok_probe(&g, t->slot[i].s, t->slot[i].len) = t->slot[i];
		free(t->slot);
		*t = g;
	}
	tok *e = tok_probe(t, s, n);
	e->s = s;
	e->len = n;
	t->n++;
	return e;
}

static int tok_cmp(const void *a, const void *b)
{
	const tok *x = *(tok *const *)a, *y = *(tok *const *)b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	uint32_t m = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, m);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int is_alnum(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Words are runs of ASCII letters and digits, case-folded; every other non-space byte is a
 * token of its own. With seq NULL, counts tokens into the table; else stores each token's
 * entry (the table no longer grows then, so the pointers stay valid). */
static size_t tokenize(uint8_t *lower, size_t len, tok_table *tt, tok **seq)
{
	size_t nt = 0;
	for (size_t i = 0; i < len;) {
		uint8_t c = lower[i];
		if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
			i++;
			continue;
		}
		size_t j = i + 1;
		if (is_alnum(c))
			while (j < len && is_alnum(lower[j]) && j - i < 32)
				j++;
		tok *t = tok_find(tt, lower + i, (uint32_t)(j - i));
		if (seq)
			seq[nt] = t;
		else
			t->count++;
		nt++;
		i = j;
	}
	return nt;
}

static int make_text(const char *dir, bench_rng *rng)
{
	size_t total = 0, nf = sizeof(license_files) / sizeof(license_files[0]);
	uint8_t *parts[sizeof(license_files) / sizeof(license_files[0])];
	size_t lens[sizeof(license_files) / sizeof(license_files[0])];
	for (size_t i = 0; i < nf; i++) {
		char path[256];
		snprintf(path, sizeof(path), "%s/%s", LICENSE_DIR, license_files[i]);
		if (read_source(path, &parts[i], &lens[i], "base-files"))
			return EXIT_IO;
		total += lens[i];
	}
	out_tensor t[5];
	uint8_t *corpus = tensor_new(&t[0], "corpus", ALCM_DTYPE_U8, 1, total, 0, 0, 0);
	for (size_t i = 0, o = 0; i < nf; o += lens[i], i++) {
		memcpy(corpus + o, parts[i], lens[i]);
		free(parts[i]);
	}
	uint8_t *lower = bench_xmalloc(total);
	for (size_t i = 0; i < total; i++)
		lower[i] = corpus[i] >= 'A' && corpus[i] <= 'Z' ? (uint8_t)(corpus[i] + 32) : corpus[i];
	tok_table tt = {0};
	tok **seq = bench_xcalloc(total, sizeof(tok *));
	tokenize(lower, total, &tt, NULL);
	size_t nt = tokenize(lower, total, &tt, seq);
	tok **by_rank = bench_xcalloc(tt.n, sizeof(tok *));
	for (size_t i = 0, k = 0; i < tt.cap; i++)
		if (tt.slot[i].s)
			by_rank[k++] = &tt.slot[i];
	qsort(by_rank, tt.n, sizeof(tok *), tok_cmp);
	for (size_t i = 0; i < tt.n; i++)
		by_rank[i]->id = (uint32_t)i;
	int32_t *ids = tensor_new(&t[1], "tokens", ALCM_DTYPE_I32, 1, nt, 0, 0, 0);
	for (size_t i = 0; i < nt; i++)
		ids[i] = (int32_t)seq[i]->id;

	/* Next-token probabilities P[i][j] over the most frequent tokens (the last row and
	 * column gather the rest): a sparse, row-stochastic float matrix. */
	const size_t V = TEXT_VOCAB;
	uint32_t *cnt = bench_xcalloc(V * V, sizeof(uint32_t));
	for (size_t i = 0; i + 1 < nt; i++) {
		size_t a = ids[i] < (int32_t)V - 1 ? (size_t)ids[i] : V - 1;
		size_t b = ids[i + 1] < (int32_t)V - 1 ? (size_t)ids[i + 1] : V - 1;
		cnt[a * V + b]++;
	}
	void *big = tensor_new(&t[2], "bigram", ALCM_DTYPE_F32, 2, V, V, 0, 0);
	double *prob = bench_xcalloc(V * V, sizeof(double));
	for (size_t a = 0; a < V; a++) {
		uint64_t row = 0;
		for (size_t b = 0; b < V; b++)
			row += cnt[a * V + b];
		for (size_t b = 0; b < V; b++) {
			prob[a * V + b] = row ? (double)cnt[a * V + b] / (double)row : 0;
			put_f32(big, a * V + b, prob[a * V + b]);
		}
	}
	/* Embedding-like rows: a random +-1/8 projection of each token's sqrt next-token
	 * distribution, in float32, its bfloat16 copy, unigram frequencies and int64 counts. */
	out_tensor e[4];
	void *emb = tensor_new(&e[0], "embed.f32", ALCM_DTYPE_F32, 2, V, TEXT_EMBED, 0, 0);
	void *embh = tensor_new(&e[1], "embed.bf16", ALCM_DTYPE_BF16, 2, V, TEXT_EMBED, 0, 0);
	void *uni = tensor_new(&e[2], "unigram", ALCM_DTYPE_F32, 1, V, 0, 0, 0);
	int64_t *counts = tensor_new(&e[3], "token_counts", ALCM_DTYPE_I64, 1, tt.n, 0, 0, 0);
	double *proj = bench_xcalloc(V * TEXT_EMBED, sizeof(double));
	for (size_t i = 0; i < V * TEXT_EMBED; i++)
		proj[i] = (bench_rng_u64(rng) >> 63) ? 0.125 : -0.125;
	for (size_t a = 0; a < V; a++)
		for (size_t k = 0; k < TEXT_EMBED; k++) {
			double s = 0;
			for (size_t b = 0; b < V; b++)
				if (prob[a * V + b] > 0)
					s += sqrt(prob[a * V + b]) * proj[b * TEXT_EMBED + k];
			put_f32(emb, a * TEXT_EMBED + k, s);
			put_bf16(embh, a * TEXT_EMBED + k, s);
		}
	for (size_t i = 0; i < tt.n; i++)
		counts[i] = by_rank[i]->count;
	for (size_t a = 0; a < V; a++) {
		uint64_t c = 0;
		if (a < V - 1)
			c = a < tt.n ? by_rank[a]->count : 0;
		else
			for (size_t i = V - 1; i < tt.n; i++)
				c += by_rank[i]->count;
		put_f32(uni, a, (double)c / (double)nt);
	}
	free(proj);
	free(prob);
	free(cnt);
	free(by_rank);
	free(seq);
	free(tt.slot);
	free(lower);
	int rc = write_tensors(dir, "corpus.npy", &t[0], 1);
	if (!rc)
		rc = write_tensors(dir, "tokens.npy", &t[1], 1);
	if (!rc)
		rc = write_tensors(dir, "bigram.npy", &t[2], 1);
	if (!rc)
		rc = write_tensors(dir, "embed.safetensors", e, 4);
	if (rc)
		return rc;

	/* The word list: every third plain word (letters only, 1..16 of them) as a zero-padded
	 * uint8 matrix with int32 lengths, and int64 letter-bigram counts over all plain words
	 * (26 = word boundary). */
	uint8_t *dict;
	size_t dlen;
	if (read_source(DICT_FILE, &dict, &dlen, "wamerican"))
		return EXIT_IO;
	size_t nwords = 0, plain = 0;
	out_tensor d[3];
	int64_t *lb = tensor_new(&d[2], "letter_bigrams", ALCM_DTYPE_I64, 2, 27, 27, 0, 0);
	for (int pass = 0; pass < 2; pass++) {
		uint8_t *chars = NULL;
		int32_t *wl = NULL;
		if (pass) {
			chars = tensor_new(&d[0], "chars", ALCM_DTYPE_U8, 2, nwords, DICT_WIDTH, 0, 0);
			wl = tensor_new(&d[1], "lengths", ALCM_DTYPE_I32, 1, nwords, 0, 0, 0);
		}
		size_t w = 0;
		plain = 0;
		for (size_t i = 0; i < dlen;) {
			size_t j = i;
			while (j < dlen && dict[j] != '\n')
				j++;
			size_t n = j - i, ok = n >= 1 && n <= DICT_WIDTH;
			for (size_t q = i; ok && q < j; q++)
				ok = (dict[q] >= 'a' && dict[q] <= 'z') || (dict[q] >= 'A' && dict[q] <= 'Z');
			if (ok) {
				if (plain % 3 == 0) {
					if (pass) {
						memcpy(chars + w * DICT_WIDTH, dict + i, n);
						wl[w] = (int32_t)n;
					}
					w++;
				}
				if (pass) {
					int prev = 26;
					for (size_t q = i; q <= j; q++) {
						int c = q == j ? 26 : (dict[q] | 0x20) - 'a';
						lb[prev * 27 + c]++;
						prev = c;
					}
				}
				plain++;
			}
			i = j + 1;
		}
		nwords = w;
	}
	free(dict);
	return write_tensors(dir, "dict.npz", d, 3);
}

/* ---- image_small -------------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int make_images(const char *dir)
{
	DIR *dh = opendir(ICON_DIR);
	if (!dh) {
		cli_err("cannot read '%s': %s (Debian package adwaita-icon-theme; "
		        "tools/bench/bundles/make_bundles.sh installs it)", ICON_DIR, strerror(errno));
		return EXIT_IO;
	}
	size_t n = 0, cap = 0;
	char **names = NULL;
	struct dirent *de;
	while ((de = readdir(dh))) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".png") || strstr(de->d_name, "symbolic"))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			char **p = realloc(names, cap * sizeof(char *));
			if (!p)
				return EXIT_NOMEM;
			names = p;
		}
		names[n] = bench_xmalloc(l + 1);
		memcpy(names[n++], de->d_name, l + 1);
	}
	closedir(dh);
	qsort(names, n, sizeof(char *), name_cmp);
	int rc = 0;
	if (n < ICONS) {
		cli_err("'%s' holds %zu colour icons, the bundle needs %d", ICON_DIR, n, ICONS);
		rc = EXIT_IO;
	}
	const size_t S = ICON_SIDE, H = ICONS / 2;
	out_tensor t[3];
	uint8_t *u8 = tensor_new(&t[0], "icons", ALCM_DTYPE_U8, 4, ICONS, S, S, 4);
	void *f32 = tensor_new(&t[1], "icons_f32", ALCM_DTYPE_F32, 4, H, 3, S, S);
	uint16_t *f16 = tensor_new(&t[2], "icons_f16", ALCM_DTYPE_F16, 4, H, 3, S, S);
	for (size_t i = 0; i < ICONS && !rc; i++) {
		char path[512], err[128];
		snprintf(path, sizeof(path), "%s/%s", ICON_DIR, names[i]);
		uint8_t *png, *rgba;
		size_t len;
		uint32_t w, h;
		if (read_source(path, &png, &len, "adwaita-icon-theme")) {
			rc = EXIT_IO;
			break;
		}
		if (bench_png_decode(png, len, &rgba, &w, &h, err, sizeof(err)) || w != S || h != S) {
			cli_err("cannot decode '%s': %s", path, rgba ? "not 48x48" : err);
			free(png);
			free(rgba);
			rc = EXIT_MALFORMED;
			break;
		}
		free(png);
		memcpy(u8 + i * S * S * 4, rgba, S * S * 4);
		/* Premultiplied RGB in [0, 1], channels first; the first half as float32, the
		 * second as float16. */
		size_t img = i % H;
		for (size_t c = 0; c < 3; c++)
			for (size_t p = 0; p < S * S; p++) {
				double v = (double)(rgba[4 * p + c] * rgba[4 * p + 3]) / 65025.0;
				size_t o = (img * 3 + c) * S * S + p;
				if (i < H)
					put_f32(f32, o, v);
				else
					f16[o] = bench_f32_to_f16((float)v);
			}
		free(rgba);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc) {
		for (int i = 0; i < 3; i++)
			free(t[i].data);
		return rc;
	}
	rc = write_tensors(dir, "icons_u8.npy", &t[0], 1);
	if (!rc)
		rc = write_tensors(dir, "icons_f32.npy", &t[1], 1);
	if (!rc)
		rc = write_tensors(dir, "icons_f16.npy", &t[2], 1);
	return rc;
}

/* ---- mixed_stream -------------------------------------------------------------------------- */

static int make_mixed(const char *dir, bench_rng *rng)
{
	const size_t D = 256, B = 64, A = 1024, C = 512, L = 256, TOK = 32;
	double *mom = bench_xcalloc(D * D, sizeof(double)), *w = bench_xcalloc(D * D, sizeof(double));
	double *rs = bench_xcalloc(D, sizeof(double)), *cs = bench_xcalloc(A, sizeof(double));
	int64_t *ctr = bench_xcalloc(C, sizeof(int64_t));
	for (size_t r = 0; r < D; r++) {
		double u = bench_rng_uniform(rng);
		rs[r] = 1e-3 * (0.2 + u * u * 4);
	}
	for (size_t i = 0; i < D * D; i++)
		w[i] = 0.05 * bench_rng_heavy(rng);
	for (size_t c = 0; c < A; c++)
		cs[c] = 0.5 + bench_rng_uniform(rng);
	int rc = 0;
	for (int f = 0; f < FRAMES && !rc; f++) {
		out_tensor t[7];
		void *g = tensor_new(&t[0], "grad.w", ALCM_DTYPE_F32, 2, D, D, 0, 0);
		void *wb = tensor_new(&t[1], "weight.bf16", ALCM_DTYPE_BF16, 2, D, D, 0, 0);
		void *act = tensor_new(&t[2], "act.bf16", ALCM_DTYPE_BF16, 2, B, A, 0, 0);
		int64_t *cn = tensor_new(&t[3], "counters", ALCM_DTYPE_I64, 1, C, 0, 0, 0);
		uint8_t *mask = tensor_new(&t[4], "attn_mask", ALCM_DTYPE_BOOL, 2, B, L, 0, 0);
		int32_t *tk = tensor_new(&t[5], "token_ids", ALCM_DTYPE_I32, 2, B, TOK, 0, 0);
		int64_t *step = tensor_new(&t[6], "step", ALCM_DTYPE_I64, 0, 0, 0, 0, 0);
		for (size_t r = 0; r < D; r++)
			for (size_t c = 0; c < D; c++) {
				size_t i = r * D + c;
				mom[i] = 0.9 * mom[i] + 0.4358898943540674 * rs[r] * bench_rng_heavy(rng);
				w[i] -= 0.01 * mom[i];
				put_f32(g, i, mom[i]);
				put_bf16(wb, i, w[i]);
			}
		for (size_t b = 0; b < B; b++)
			for (size_t c = 0; c < A; c++) {
				double v = bench_rng_gauss(rng) * cs[c] + 0.1;
				put_bf16(act, b * A + c, v > 0 ? v : 0);
			}
		for (size_t i = 0; i < C; i++) {
			ctr[i] += 1 + (int64_t)(bench_rng_u64(rng) % (1 + i % 17)) * (int64_t)(i + 1);
			cn[i] = ctr[i];
		}
		for (size_t b = 0; b < B; b++) {
			size_t len = L / 4 + (size_t)(bench_rng_uniform(rng) * (double)(L - L / 4));
			for (size_t j = 0; j < L; j++)
				mask[b * L + j] = j < len;
		}
		for (size_t i = 0; i < B * TOK; i++) {
			double u = bench_rng_uniform(rng);
			tk[i] = (int32_t)(50000 * u * u * u * u);
		}
		*step = 1000 + 10 * (int64_t)f;
		char name[64];
		snprintf(name, sizeof(name), "frame_%03d.safetensors", f);
		rc = write_tensors(dir, name, t, 7);
	}
	free(mom);
	free(w);
	free(rs);
	free(cs);
	free(ctr);
	return rc;
}

/* ---- gradient_stream ----------------------------------------------------------------------- */

static int make_gradients(const char *dir, bench_rng *rng)
{
	const size_t EV = 1024, ED = 64, H1 = 256, IN = 256, H2 = 128, TOUCHED = 80;
	size_t n1 = H1 * IN, n2 = IN * H2;
	double *m1 = bench_xcalloc(n1, sizeof(double)), *m2 = bench_xcalloc(n2, sizeof(double));
	double *s1 = bench_xcalloc(H1, sizeof(double)), *s2 = bench_xcalloc(IN, sizeof(double));
	uint8_t *dead = bench_xcalloc(H1, 1);
	for (size_t r = 0; r < H1; r++) {
		double u = bench_rng_uniform(rng);
		s1[r] = 1e-3 * (0.1 + 3 * u * u);
		dead[r] = bench_rng_uniform(rng) < 0.1;
	}
	for (size_t r = 0; r < IN; r++) {
		double u = bench_rng_uniform(rng);
		s2[r] = 5e-4 * (0.1 + 3 * u * u);
	}
	int rc = 0;
	for (int f = 0; f < FRAMES && !rc; f++) {
		out_tensor t[5];
		void *eg = tensor_new(&t[0], "embed.grad", ALCM_DTYPE_F32, 2, EV, ED, 0, 0);
		void *g1 = tensor_new(&t[1], "fc1.grad", ALCM_DTYPE_F32, 2, H1, IN, 0, 0);
		void *b1 = tensor_new(&t[2], "fc1.bias.grad", ALCM_DTYPE_F32, 1, H1, 0, 0, 0);
		void *g2 = tensor_new(&t[3], "fc2.grad", ALCM_DTYPE_F32, 2, IN, H2, 0, 0);
		int64_t *step = tensor_new(&t[4], "step", ALCM_DTYPE_I64, 0, 0, 0, 0, 0);
		/* Only the rows of tokens in the batch get a gradient; frequent tokens more often. */
		for (size_t k = 0; k < TOUCHED; k++) {
			double u = bench_rng_uniform(rng);
			size_t row = (size_t)((double)EV * u * u * u);
			for (size_t c = 0; c < ED; c++)
				put_f32(eg, row * ED + c, 0.01 * bench_rng_gauss(rng));
		}
		for (size_t r = 0; r < H1; r++) {
			double bsum = 0;
			for (size_t c = 0; c < IN; c++) {
				size_t i = r * IN + c;
				m1[i] = dead[r] ? 0 : 0.8 * m1[i] + 0.6 * s1[r] * bench_rng_heavy(rng);
				put_f32(g1, i, m1[i]);
				bsum += m1[i];
			}
			put_f32(b1, r, bsum / 16);
		}
		for (size_t r = 0; r < IN; r++)
			for (size_t c = 0; c < H2; c++) {
				size_t i = r * H2 + c;
				m2[i] = 0.8 * m2[i] + 0.6 * s2[r] * bench_rng_heavy(rng);
				put_f32(g2, i, m2[i]);
			}
		*step = 100 * (int64_t)(f + 1);
		char name[64];
		snprintf(name, sizeof(name), "grad_%03d.npz", f);
		rc = write_tensors(dir, name, t, 5);
	}
	free(m1);
	free(m2);
	free(s1);
	free(s2);
	free(dead);
	return rc;
}

static int mkdir_p(const char *path)
{
	char *p = bench_xmalloc(strlen(path) + 1);
	strcpy(p, path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int r = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
	free(p);
	return r;
}

int bench_make_bundle(const char *name, const char *outdir, uint64_t seed)
{
	if (bench_bundle_index(name) < 0) {
		cli_err("unknown bundle '%s' (see --help)", name);
		return EXIT_USAGE;
	}
	if (!strcmp(name, "checkpoint_small")) {
		cli_err("checkpoint_small is made by alcm-make-checkpoint: run "
		        "tools/bench/bundles/make_bundles.sh");
		return EXIT_USAGE;
	}
	if (mkdir_p(outdir)) {
		cli_err("cannot create '%s': %s", outdir, strerror(errno));
		return EXIT_IO;
	}
	/* One stream per bundle: changing one generator never changes another's bytes. */
	bench_rng rng = {seed * 0x100000001b3ull};
	for (const char *p = name; *p; p++)
		rng.s = (rng.s ^ (uint8_t)*p) * 0x100000001b3ull;
	if (!strcmp(name, "text_medium"))
		return make_text(outdir, &rng);
	if (!strcmp(name, "image_small"))
		return make_images(outdir);
	if (!strcmp(name, "mixed_stream"))
		return make_mixed(outdir, &rng);
	return make_gradients(outdir, &rng);
}
