#include "testutil.h"

#include "symcode_internal.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

const char *tu_path(const char *name)
{
	static char buf[8][4096];
	static int next;
	const char *dir = getenv("ALCM_TEST_TMP");
	if (!dir || !*dir)
		dir = "/tmp";
	mkdir(dir, 0755);
	char *b = buf[next++ & 7];
	snprintf(b, 4096, "%s/%ld-%s", dir, (long)getpid(), name);
	return b;
}

int tu_tmpfile_refused(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash > path ? slash - path : 1), path);
#ifdef O_TMPFILE
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0) {
		close(fd);
		return access("/proc/self/fd", F_OK) != 0;
	}
#endif
	return 1;
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
	if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	if (p)
		*len = (size_t)n;
	return p;
}

int tu_write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(buf, 1, len, f);
	return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int tu_file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void *ta_malloc(void *o, size_t n)
{
	tu_alloc *t = o;
	t->calls++;
	if (t->fail_at && t->calls == t->fail_at)
		return NULL;
	void *p = malloc(n);
	if (p)
		t->live++;
	return p;
}
static void *ta_realloc(void *o, void *p, size_t n)
{
	tu_alloc *t = o;
	t->calls++;
	if (t->fail_at && t->calls == t->fail_at)
		return NULL;
	void *q = realloc(p, n);
	if (q && !p)
		t->live++;
	return q;
}
static void ta_free(void *o, void *p)
{
	tu_alloc *t = o;
	if (p)
		t->live--;
	free(p);
}

void tu_alloc_init(tu_alloc *t, long fail_at)
{
	memset(t, 0, sizeof(*t));
	t->a.malloc_fn = ta_malloc;
	t->a.realloc_fn = ta_realloc;
	t->a.free_fn = ta_free;
	t->a.opaque = t;
	t->fail_at = fail_at;
}

uint64_t tu_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double tu_gauss(uint64_t *s)
{
	double u1 = ((tu_rand(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
	double u2 = (tu_rand(s) >> 11) * (1.0 / 9007199254740992.0);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_set_make(tu_set *s, int n, uint64_t values, uint64_t seed, int empty)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	for (int i = 0; i < n; i++) {
		uint64_t m = i == empty ? 0 : values;
		snprintf(s->names[i], sizeof(s->names[i]), "t%d", i);
		s->data[i] = malloc(m ? m * 4 : 1);
		for (uint64_t k = 0; k < m; k++)
			s->data[i][k] = (float)(tu_gauss(&seed) * 0.05);
		alcm_tensor *t = &s->t[i];
		t->name = s->names[i];
		t->name_len = strlen(s->names[i]);
		t->dtype = ALCM_DTYPE_F32;
		t->ndim = 2;
		t->shape[0] = m ? 100 : 0;
		t->shape[1] = values / 100;
		t->data = s->data[i];
		t->nbytes = m * 4;
		s->total += t->nbytes;
	}
}

void tu_set_free(tu_set *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->data[i]);
}

uint16_t tu_h16_value(int dtype, uint64_t *s, double sd, unsigned special_in)
{
	uint64_t r = tu_rand(s);
	int bf = dtype == ALCM_DTYPE_BF16;
	switch (special_in ? r % special_in : 99) {
	case 0: return bf ? 0x7fc0 : 0x7e00;                         /* NaN */
	case 1: return bf ? 0xff80 : 0xfc00;                         /* -inf */
	case 2: return 0x8000;                                       /* -0 */
	case 3: return (uint16_t)(0x0001 + r % (bf ? 0x7f : 0x3ff)); /* subnormal */
	case 4: return 0x0000;                                       /* +0 */
	default: {
		if (sd < 0)
			sd = exp2((double)(tu_rand(s) % 1000) / 1000 * (bf ? 60 : 24) - (bf ? 30 : 12));
		float f = (float)(tu_gauss(s) * sd);
		return bf ? alcm_float_to_bf16(f) : alcm_float_to_half(f);
	}
	}
}

double tu_measured_bits(const alcm_tensor *t, double step)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = step / 2;
	o.threads = 1;
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_tensor_report rep;
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, w, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, t, &rep), ALCM_OK);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	return (double)rep.stored_bytes * 8 / (double)t->shape[0];
}

void tu_plain_dir(uint8_t **img, size_t *n)
{
	alcm_reader *r;
	alcm_writer *w;
	assert_int_equal(alcm_reader_open_memory(&r, *img, *n, "plain.alcm", NULL, NULL, 0),
	                 ALCM_OK);
	unsigned flags = alcm_reader_flags(r) & ALCM_FLAG_STREAM ? ALCM_WRITE_STREAM : 0;
	assert_int_equal(alcm_writer_open_memory(&w, flags | ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_require_minor(w, (*img)[10]), ALCM_OK);
	for (uint32_t i = 0; i < alcm_reader_section_count(r); i++) {
		alcm_section_info si;
		assert_int_equal(alcm_reader_section_info(r, i, &si), ALCM_OK);
		uint8_t *p = malloc(si.length ? (size_t)si.length : 1), *raw = NULL;
		assert_non_null(p);
		assert_int_equal(alcm_reader_section_read(r, i, p, (size_t)si.length), ALCM_OK);
		size_t len = (size_t)si.length;
		int z = memcmp(si.type, "TDRZ", 4) == 0;
		if (z) {
			assert_true(len >= 8);
			size_t want = 0;
			for (int b = 7; b >= 0; b--)
				want = want << 8 | p[b];
			raw = malloc(want ? want : 1);
			assert_int_equal(ZSTD_decompress(raw, want, p + 8, len - 8), want);
			len = want;
		}
		assert_int_equal(alcm_writer_add_section(w, z ? "TDIR" : si.type, si.flags, si.tag,
		                                         z ? raw : p, len, NULL),
		                 ALCM_OK);
		free(p);
		free(raw);
	}
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *buf;
	assert_int_equal(alcm_writer_memory(w, &buf, n), ALCM_OK);
	free(*img);
	*img = malloc(*n);
	assert_non_null(*img);
	memcpy(*img, buf, *n);
	alcm_writer_free(w);
	alcm_reader_free(r);
}

int tu_pack(const alcm_tensor *t, size_t n, const alcm_pack_options *o, tu_packed *out,
            alcm_tensor_report *reps)
{
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	int st = alcm_writer_open_memory(&w, 0, NULL);
	if (!st)
		st = alcm_encoder_new(&e, w, o, NULL);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_encoder_add(e, &t[i], reps ? &reps[i] : NULL);
	if (!st)
		st = alcm_encoder_finish(e);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_encoder_free(e);
	if (!st)
		st = alcm_writer_memory(w, &out->buf, &out->len);
	out->w = w;
	return st;
}

static void decode_first(const tu_packed *p, void *out, size_t n)
{
	alcm_reader *rd = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&rd, p->buf, p->len, "mem", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, rd, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_decode(a, 0, out, n), ALCM_OK);
	alcm_archive_free(a);
	alcm_reader_free(rd);
}

void tu_check_decode_paths(const alcm_tensor *t, double bound, void *y0, void *y1)
{
	size_t n = (size_t)t->nbytes;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = bound;
	o.threads = 1;
	o.max_minor = 1;
	tu_packed p;
	memset(&p, 0, sizeof(p));
	assert_int_equal(tu_pack(t, 1, &o, &p, NULL), ALCM_OK);
	alcm_rans_scalar_only = 1;
	decode_first(&p, y0, n);
	alcm_rans_scalar_only = 0;
	decode_first(&p, y1, n);
	assert_memory_equal(y0, y1, n);
	alcm_error_stats es;
	assert_int_equal(alcm_tensor_measure(t, y1, &es), ALCM_OK);
	assert_true(alcm_error_within(&es, ALCM_MODE_MAX_ERROR, bound));
	alcm_writer_free(p.w);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

void tu_check_golden_paths(struct alcm_buf *out, const uint64_t *golden, size_t n, size_t *next)
{
	uint64_t h = fnv1a(out[0].p, out[0].len);
	if (golden) {
		assert_true(*next < n);
		assert_true(h == golden[*next]);
	} else {
		printf("\t0x%016llxull,\n", (unsigned long long)h);
	}
	(*next)++;
	for (int p = 1; p < 3; p++) {
		assert_int_equal(out[p].len, out[0].len);
		assert_memory_equal(out[p].p, out[0].p, out[0].len);
	}
	for (int p = 0; p < 3; p++)
		alcm_buf_free(&out[p]);
}

void tu_vector(alcm_tensor *t, int dtype, const void *data, uint64_t n)
{
	memset(t, 0, sizeof(*t));
	t->name = "v";
	t->name_len = 1;
	t->dtype = dtype;
	t->ndim = 1;
	t->shape[0] = n;
	t->data = (const uint8_t *)data;
	t->nbytes = n * alcm_dtype_size(dtype);
}

void tu_matrix_f32(alcm_tensor *t, const float *x, uint64_t rows, uint64_t cols)
{
	tu_vector(t, ALCM_DTYPE_F32, x, rows * cols);
	t->name = "w";
	t->ndim = 2;
	t->shape[0] = rows;
	t->shape[1] = cols;
}

uint32_t tu_zigzag(long q)
{
	return q < 0 ? (uint32_t)(-2 * q - 1) : (uint32_t)(2 * q);
}
