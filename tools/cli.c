/* Shared command-line code of the alcm tools. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

const char *cli_prog = "alcm";
int cli_quiet, cli_verbose;

static void on_signal(int sig)
{
	alcm_atomic_cleanup_all();
	cli_stdio_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

void cli_init(const char *prog)
{
	cli_prog = prog;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* Past RLIMIT_FSIZE a write fails with EFBIG and the atomic writer cleans up; the default
	 * action of SIGXFSZ would kill the process and leave the temporary file behind. */
	signal(SIGXFSZ, SIG_IGN);
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		fprintf(stderr, "%s: ", cli_prog);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	const char *nl = strchr(usage, '\n');
	fprintf(stderr, "%.*s\nTry '%s --help' for more information.\n",
	        (int)(nl ? (size_t)(nl - usage) : strlen(usage)), usage, cli_prog);
	return EXIT_USAGE;
}

int cli_run_each(int argc, char **argv, int first)
{
	for (int i = first; i < argc; i++)
		if (strcmp(argv[i], "-") == 0) {
			cli_err("standard input ('-') cannot be one of several inputs");
			return EXIT_USAGE;
		}
	char **v = malloc(((size_t)first + 3) * sizeof(*v));
	if (!v)
		return EXIT_NOMEM;
	memcpy(v, argv, (size_t)first * sizeof(*v));
	v[first] = (char *)"--";
	v[first + 2] = NULL;
	int rc = 0;
	for (int i = first; i < argc; i++) {
		v[first + 1] = argv[i];
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			execv("/proc/self/exe", v);
			_exit(EXIT_FAIL);
		}
		int status = 0, code = EXIT_FAIL;
		if (pid > 0) {
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			code = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAIL;
		} else {
			cli_err("cannot start a process for '%s': %s", argv[i], strerror(errno));
		}
		if (code && !rc)
			rc = code;
	}
	free(v);
	return rc;
}

char *cli_default_output(const char *in, const char *suffix)
{
	size_t n = strlen(in);
	if (strcmp(in, "-") == 0)
		return strdup("-");
	if (!suffix) {
		if (n <= 5 || strcmp(in + n - 5, ".alcm") != 0 || in[n - 6] == '/')
			return NULL;
		char *o = strdup(in);
		if (o)
			o[n - 5] = '\0';
		return o;
	}
	while (n > 1 && in[n - 1] == '/')
		n--;
	char *o = malloc(n + strlen(suffix) + 2);
	if (o)
		sprintf(o, "%.*s.%s", (int)n, in, suffix);
	return o;
}

int cli_version(void)
{
	printf("%s %s (format %d.%d)\n", cli_prog, alcm_version(), ALCM_FORMAT_MAJOR,
	       ALCM_FORMAT_MINOR);
	return 0;
}

static void vmsg(const char *prefix, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: %s", cli_prog, prefix);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
	if (cli_quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

void cli_info(const char *fmt, ...)
{
	if (!cli_verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

int cli_exit_code(int st)
{
	switch (st) {
	case ALCM_OK: return EXIT_OK_;
	case ALCM_E_ARG: return EXIT_USAGE;
	case ALCM_E_IO: return EXIT_IO;
	case ALCM_E_CORRUPT: return EXIT_MALFORMED;
	case ALCM_E_DIGEST: return EXIT_DIGEST;
	case ALCM_E_LIMIT: return EXIT_LIMIT;
	case ALCM_E_UNSUPPORTED: return EXIT_UNSUPPORTED;
	case ALCM_E_EXISTS: return EXIT_EXISTS;
	case ALCM_E_NOMEM: return EXIT_NOMEM;
	case ALCM_E_BOUND: return EXIT_BOUND;
	case ALCM_E_SIGNATURE: return EXIT_SIGNATURE;
	case ALCM_E_BUSY: return EXIT_BUSY;
	default: return EXIT_FAIL;
	}
}

int cli_fail(int st, const char *verb, const char *path, const char *detail)
{
	const char *d = detail && *detail ? detail : alcm_strerror(st);
	/* Library details often start with the path already: do not say it twice. */
	size_t pl = strlen(path);
	if (strncmp(d, path, pl) == 0 && d[pl] == ':' && d[pl + 1] == ' ')
		d += pl + 2;
	/* ... or the whole "cannot write 'PATH': " of an output file's detail. */
	char head[64];
	int hl = snprintf(head, sizeof(head), "cannot %s '", verb);
	if (hl > 0 && (size_t)hl < sizeof(head) && strncmp(d, head, (size_t)hl) == 0 &&
	    strncmp(d + hl, path, pl) == 0 && strncmp(d + hl + pl, "': ", 3) == 0)
		d += (size_t)hl + pl + 3;
	d = cli_strip_temp(d);
	cli_err("cannot %s '%s': %s", verb, cli_display(path), d);
	return cli_exit_code(st);
}

int cli_parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	if (*end == 'k' || *end == 'K')
		shift = 10, end++;
	else if (*end == 'M')
		shift = 20, end++;
	else if (*end == 'G')
		shift = 30, end++;
	if (*end || (shift && v > (~0ull >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

void *cli_alloc(size_t n)
{
	const size_t huge = (size_t)2 << 20;
	size_t r = (n + huge - 1) & ~(huge - 1);
	void *p;
	if (n < huge || r < n || posix_memalign(&p, huge, r))
		return malloc(n ? n : 1);
#ifdef MADV_HUGEPAGE
	(void)madvise(p, r, MADV_HUGEPAGE);
#endif
	return p;
}

double cli_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, const char *label, uint64_t total, uint64_t min_total)
{
	memset(p, 0, sizeof(*p));
	p->on = !cli_quiet && total >= min_total && isatty(STDERR_FILENO);
	p->total = total;
	p->label = label;
	p->start = p->last = cli_now();
}

static void progress_draw(cli_progress *p)
{
	double f = p->total ? (double)p->done / (double)p->total : 1;
	if (f > 1)
		f = 1;
	int w = 30, fill = (int)(f * w);
	double el = cli_now() - p->start;
	fprintf(stderr, "\r%s [%.*s%*s] %3d%% %8.1f MB/s", p->label, fill,
	        "##############################", w - fill, "", (int)(f * 100),
	        el > 0 ? (double)p->done / el / 1e6 : 0.0);
	fflush(stderr);
}

void cli_progress_add(cli_progress *p, uint64_t n)
{
	p->done += n;
	if (!p->on)
		return;
	double t = cli_now();
	if (t - p->last >= 0.1) {
		p->last = t;
		progress_draw(p);
	}
}

void cli_progress_end(cli_progress *p)
{
	if (!p->on)
		return;
	p->done = p->total; /* headers count in the total, not in what was coded */
	progress_draw(p);
	fputc('\n', stderr);
}

#define RING 8
static char ring[RING][256];
static int ring_next;
static char *ring_buf(void)
{
	return ring[ring_next++ % RING];
}

const char *cli_size(uint64_t b)
{
	char *s = ring_buf();
	if (b < 1000)
		snprintf(s, 256, "%llu B", (unsigned long long)b);
	else if (b < 1000000)
		snprintf(s, 256, "%.1f kB", (double)b / 1e3);
	else if (b < 1000000000)
		snprintf(s, 256, "%.1f MB", (double)b / 1e6);
	else
		snprintf(s, 256, "%.2f GB", (double)b / 1e9);
	return s;
}

const char *cli_shape(const uint64_t *shape, uint32_t ndim)
{
	char *s = ring_buf();
	size_t o = 0;
	o += (size_t)snprintf(s + o, 256 - o, "[");
	for (uint32_t i = 0; i < ndim && o < 200; i++)
		o += (size_t)snprintf(s + o, 256 - o, "%s%llu", i ? ", " : "",
		                      (unsigned long long)shape[i]);
	snprintf(s + o, 256 - o, o >= 200 ? ", ...]" : "]");
	return s;
}

const char *cli_name(const char *n, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *s = ring_buf();
	size_t o = 0;
	for (size_t i = 0; i < len && o < 240; i++) {
		unsigned char c = (unsigned char)n[i];
		if (c >= 0x20 && c != 0x7f && c != '\\') {
			s[o++] = (char)c;
		} else {
			s[o++] = '\\';
			s[o++] = 'x';
			s[o++] = hex[c >> 4];
			s[o++] = hex[c & 15];
		}
	}
	if (o >= 240)
		memcpy(s + o, "...", 3), o += 3;
	s[o] = '\0';
	return s;
}

/* Length of a valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t l = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (!l || l > n || s[0] == 0xc0 || s[0] == 0xc1 || s[0] > 0xf4)
		return 0;
	for (size_t i = 1; i < l; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return l;
}

void cli_json_string(FILE *f, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	fputc('"', f);
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else {
			size_t l = utf8_len(s + i, len - i);
			if (!l) {
				/* Not UTF-8: keep the byte visible and distinguishable. */
				fprintf(f, "\\u00%02x", c);
				i++;
			} else {
				fwrite(s + i, 1, l, f);
				i += l;
			}
		}
	}
	fputc('"', f);
}

static const char *key_label(int secret)
{
	return secret ? "alcm-ed25519-secret-key" : "alcm-ed25519-public-key";
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int cli_load_key(const char *path, int secret, uint8_t *key, size_t len)
{
	char buf[256];
	FILE *f = fopen(path, "rb");
	if (!f)
		return EXIT_IO;
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	/* Exactly "<label> <2 len lowercase hex digits>", then an optional LF (spec 6.10). */
	const char *label = key_label(secret);
	size_t ll = strlen(label), hl = ll + 1 + 2 * len;
	int ok = (n == hl || (n == hl + 1 && buf[hl] == '\n')) && memcmp(buf, label, ll) == 0 &&
	         buf[ll] == ' ';
	for (size_t i = 0; ok && i < len; i++) {
		int hi = hex_digit(buf[ll + 1 + 2 * i]), lo = hex_digit(buf[ll + 2 + 2 * i]);
		if (hi < 0 || lo < 0)
			ok = 0;
		else
			key[i] = (uint8_t)(hi << 4 | lo);
	}
	alcm_wipe(buf, sizeof(buf));
	if (!ok) {
		alcm_wipe(key, len);
		return EXIT_MALFORMED;
	}
	return 0;
}

int cli_read_key(const char *path, int secret, uint8_t *key, size_t len)
{
	int rc = cli_load_key(path, secret, key, len);
	if (rc == EXIT_IO)
		cli_err("cannot read key '%s': %s", path, strerror(errno));
	else if (rc)
		cli_err("cannot read key '%s': not an alcm %s key file (one line: '%s' and %zu "
		        "lowercase hex digits)", path, secret ? "secret" : "public", key_label(secret),
		        2 * len);
	return rc;
}

#define DETAIL_CAP 512

/* "<label> <hex>\n" into line (256 bytes). @return its length. */
static size_t key_line(char *line, int secret, const uint8_t *key, size_t len)
{
	int o = snprintf(line, 256, "%s ", key_label(secret));
	for (size_t i = 0; i < len; i++)
		o += snprintf(line + o, 256 - (size_t)o, "%02x", key[i]);
	line[o++] = '\n';
	return (size_t)o;
}

/* The bytes of an existing file, up to cap. @return 1 if read whole, 0 if absent, -1 if
 * unreadable or larger. */
static int file_snapshot(const char *path, char *buf, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	*len = fread(buf, 1, cap, f);
	int whole = !ferror(f) && *len < cap;
	fclose(f);
	return whole ? 1 : -1;
}

/* Writes `len` bytes to path atomically. @return an alcm status; *detail set on failure. */
static int put_file(const char *path, const void *buf, size_t len, unsigned flags,
                    char *detail, size_t cap)
{
	alcm_atomic_file *f = NULL;
	int st = alcm_atomic_file_open(&f, path, flags, NULL);
	if (!st)
		st = alcm_atomic_file_write(f, buf, len);
	if (!st)
		st = alcm_atomic_file_commit(f);
	if (st)
		snprintf(detail, cap, "%s", alcm_atomic_file_detail(f));
	alcm_atomic_file_free(f);
	return st;
}

static void dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, cap, ".");
	else
		snprintf(dir, cap, "%.*s", (int)(slash > path ? slash - path : 1), path);
}

/* fsync of a directory. */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int cli_write_keypair(const char *key_path, const char *pub_path,
                      const uint8_t sk[ALCM_SECRET_KEY_BYTES],
                      const uint8_t pk[ALCM_PUBLIC_KEY_BYTES], int force)
{
	/* Synced by hand below: both files before either is published, the directory after. */
	unsigned flags = (force ? ALCM_WRITE_OVERWRITE : 0) | ALCM_WRITE_NO_SYNC;
	alcm_atomic_file *fk = NULL, *fp = NULL;
	char line[256], old[4096], why[DETAIL_CAP] = "";
	size_t old_len = 0;
	int rc = 0, have_old = 0;
	const char *at = key_path;
	/* Both files are written and flushed before either is published: without -f an existing
	 * file of either name stops everything before a byte is written. */
	int st = alcm_atomic_file_open(&fk, key_path, flags | ALCM_WRITE_PRIVATE, NULL);
	if (!st) {
		size_t n = key_line(line, 1, sk, ALCM_SECRET_KEY_BYTES);
		st = alcm_atomic_file_write(fk, line, n);
		alcm_wipe(line, sizeof(line));
	}
	if (st) {
		snprintf(why, sizeof(why), "%s", alcm_atomic_file_detail(fk));
		goto out;
	}
	at = pub_path;
	if (!(st = alcm_atomic_file_open(&fp, pub_path, flags, NULL)))
		st = alcm_atomic_file_write(fp, line, key_line(line, 0, pk, ALCM_PUBLIC_KEY_BYTES));
	if (st) {
		snprintf(why, sizeof(why), "%s", alcm_atomic_file_detail(fp));
		goto out;
	}
	if ((st = alcm_atomic_file_sync(fk))) {
		at = key_path;
		snprintf(why, sizeof(why), "%s", alcm_atomic_file_detail(fk));
		goto out;
	}
	if ((st = alcm_atomic_file_sync(fp))) {
		snprintf(why, sizeof(why), "%s", alcm_atomic_file_detail(fp));
		goto out;
	}
	/* The old secret key, to put back if the public one cannot follow it. */
	if (force && (have_old = file_snapshot(key_path, old, sizeof(old), &old_len)) < 0) {
		cli_err("cannot replace key '%s': cannot read the old key to keep the pair whole: %s",
		        key_path, strerror(errno));
		rc = EXIT_IO;
		goto out;
	}
	/* Both published by two renames in a row: only a kill between them can tear the pair. */
	alcm_atomic_file *both[2] = {fk, fp};
	size_t done = 0;
	st = alcm_atomic_file_commit_all(both, 2, &done);
	at = done == 0 ? key_path : pub_path;
	if (st) {
		snprintf(why, sizeof(why), "%s", alcm_atomic_file_detail(both[done]));
		if (done == 1) {
			/* Undo the secret key: the pair on disk stays the old one (or none). */
			char why2[DETAIL_CAP];
			int undo = have_old ? put_file(key_path, old, old_len,
			                               ALCM_WRITE_OVERWRITE | ALCM_WRITE_PRIVATE, why2,
			                               sizeof(why2))
			                    : (unlink(key_path) == 0 ? ALCM_OK : ALCM_E_IO);
			if (undo) {
				cli_err("cannot write key '%s': %s; and '%s' could not be put back, so it does "
				        "not match '%s': run alcm-keygen -f again", pub_path,
				        why[0] ? why : alcm_strerror(st), key_path, pub_path);
				rc = cli_exit_code(st);
			}
		}
		goto out;
	}
	char kd[4096], pd[4096];
	dir_of(key_path, kd, sizeof(kd));
	dir_of(pub_path, pd, sizeof(pd));
	sync_dir(kd);
	if (strcmp(kd, pd) != 0)
		sync_dir(pd);
out:
	if (st && !rc) {
		if (st == ALCM_E_EXISTS)
			cli_err("cannot write key '%s': file exists (use -f); nothing written", at);
		else
			cli_err("cannot write key '%s': %s; nothing written", at,
			        why[0] ? why : alcm_strerror(st));
		rc = cli_exit_code(st);
	}
	alcm_wipe(old, sizeof(old));
	alcm_atomic_file_free(fk);
	alcm_atomic_file_free(fp);
	return rc;
}
