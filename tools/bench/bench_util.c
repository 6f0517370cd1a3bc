/* Small helpers of alcm-bench: random numbers, half floats, medians, files, buffers. */
#include "bench_internal.h"
#include "../cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <math.h>

void *bench_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		cli_err("out of memory (%zu bytes)", n);
		exit(EXIT_NOMEM);
	}
	return p;
}

void *bench_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) {
		cli_err("out of memory (%zu x %zu bytes)", n, size);
		exit(EXIT_NOMEM);
	}
	return p;
}

void *bench_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		cli_err("out of memory (%zu bytes)", n);
		exit(EXIT_NOMEM);
	}
	return q;
}

uint64_t bench_rng_u64(bench_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double bench_rng_uniform(bench_rng *r)
{
	return ((double)(bench_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double bench_rng_gauss(bench_rng *r)
{
	double s = bench_rng_uniform(r) + bench_rng_uniform(r) + bench_rng_uniform(r) +
	           bench_rng_uniform(r);
	return (s - 2.0) * 1.7320508075688772;
}

double bench_rng_heavy(bench_rng *r)
{
	double chi = 0;
	for (int i = 0; i < 4; i++) {
		double g = bench_rng_gauss(r);
		chi += g * g;
	}
	return bench_rng_gauss(r) / sqrt(chi / 4 + 0.01);
}

/* Round to nearest even, as the F16C instructions do. */
uint16_t bench_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u)
		return (uint16_t)(s | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
	if (a >= 0x477ff000u)
		return (uint16_t)(s | 0x7c00);
	if (a < 0x38800000u) {
		if (a < 0x33000000u)
			return s;
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000, shift = 126 - e;
		uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t)(s | q);
	}
	uint32_t q = a - 0x38000000u, v = q >> 13, rem = q & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
		v++;
	return (uint16_t)(s | v);
}

float bench_f16_to_f32(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0x1f) {
		u = s | 0x7f800000u | (m << 13);
	} else if (e) {
		u = s | ((e + 112) << 23) | (m << 13);
	} else if (m) {
		e = 113;
		while (!(m & 0x400)) {
			m <<= 1;
			e--;
		}
		u = s | (e << 23) | ((m & 0x3ff) << 13);
	} else {
		u = s;
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t bench_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

float bench_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_median(const double *v, int n)
{
	double s[BENCH_MAX_RUNS];
	if (n <= 0)
		return 0;
	memcpy(s, v, (size_t)n * sizeof(double));
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

void bench_hex(const uint8_t *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int bench_is_hex64(const char *s)
{
	size_t i = 0;
	for (; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == 64;
}

double bench_cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_read_file(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return EFBIG;
	}
	size_t n = (size_t)st.st_size, got = 0;
	uint8_t *p = bench_xmalloc(n + 1);
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(p);
			close(fd);
			return e;
		}
		got += (size_t)r;
	}
	close(fd);
	p[n] = 0;
	*buf = p;
	*len = n;
	return 0;
}

int bench_write_file(const char *path, const void *buf, size_t len, int force)
{
	alcm_atomic_file *f = NULL;
	int st = alcm_atomic_file_open(&f, path, force ? ALCM_WRITE_OVERWRITE : 0, NULL);
	if (!st)
		st = alcm_atomic_file_write(f, buf, len);
	if (!st)
		st = alcm_atomic_file_commit(f);
	int rc = 0;
	if (st == ALCM_E_EXISTS) {
		cli_err("cannot write '%s': file exists (use -f)", path);
		rc = EXIT_EXISTS;
	} else if (st) {
		rc = cli_fail(st, "write", path, alcm_atomic_file_detail(f));
	}
	alcm_atomic_file_free(f);
	return rc;
}

static void buf_reserve(bench_buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		cli_err("out of memory (%zu bytes)", cap);
		exit(EXIT_NOMEM);
	}
	b->p = p;
	b->cap = cap;
}

void bench_buf_put(bench_buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void bench_buf_printf(bench_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* JSON string literal; bytes that are not UTF-8 become \u00XX (labels and details come from
 * plugins and must not break the document). */
void bench_buf_json_string(bench_buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	bench_buf_put(b, "\"", 1);
	while (*s) {
		unsigned char c = *s;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			bench_buf_put(b, e, 2);
			s++;
			continue;
		}
		if (c < 0x20 || c == 0x7f) {
			bench_buf_printf(b, "\\u%04x", c);
			s++;
			continue;
		}
		size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
		         : (c & 0xf8) == 0xf0 ? 4 : 0;
		int ok = l > 0 && !(c == 0xc0 || c == 0xc1 || c > 0xf4);
		for (size_t i = 1; ok && i < l; i++)
			ok = (s[i] & 0xc0) == 0x80;
		if (ok && l == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)))
			ok = 0; /* overlong or surrogate */
		if (ok && l == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)))
			ok = 0;
		if (!ok) {
			bench_buf_printf(b, "\\u00%02x", c);
			s++;
		} else {
			bench_buf_put(b, s, l);
			s += l;
		}
	}
	bench_buf_put(b, "\"", 1);
}

void bench_buf_free(bench_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
