/*
 * Atomic output files. On Linux the data goes to an unnamed file (O_TMPFILE) in the target's
 * directory, which gets a name only at commit (linkat): a process killed at any point before
 * leaves nothing behind. Where O_TMPFILE is refused (an old kernel, NFS, some FUSE file
 * systems) or /proc is not mounted, a named temporary ".NAME.XXXXXX" is used, as before.
 */
#include "format_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- direct I/O staging (alcm_atomic.dio) ---- */

/* Blocks of 4 MiB: large enough that a direct write costs little kernel time per byte. Three
 * of them: the disk writes one while the caller fills another, and the third takes a burst
 * (peak RSS +12 MiB). With two, alcm-unpack -T2 of e2e.npz's archive to .safetensors waited
 * for the disk (2.7 GB/s, durable) in its bursts: 6 runs alternating, 0.47-0.58 s against
 * 0.45-0.47 s with three (four: 0.45-0.47 s, 4 MiB more). */
#define DIO_BLOCK ((size_t)4 << 20)
#define DIO_BUFS 3

struct alcm_dio {
	int fd;
	size_t align;                /* file offset and length alignment of direct writes */
	size_t mem_align;            /* buffer address alignment */
	void *raw[DIO_BUFS];         /* allocations (alloc) */
	uint8_t *buf[DIO_BUFS];      /* their aligned starts */
	unsigned cur;                /* the buffer being filled */
	size_t fill;                 /* bytes staged in buf[cur] */
	uint64_t base;               /* file offset of buf[cur][0] (aligned) */
	int submitted;               /* a block went to the disk directly */
	int fallback;                /* O_DIRECT was refused on a write: buffered from then on */
	/* The writer thread: queued blocks are buf[head], buf[head + 1], ... (mod DIO_BUFS). */
	pthread_t thread;
	int thread_on;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned head, queued;
	uint64_t job_off[DIO_BUFS];
	int err;                     /* the first write error (errno) */
	int stop;
};

static void set_direct(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, on ? (fl | O_DIRECT) : (fl & ~O_DIRECT));
}

/* Writes a staged block: directly, or buffered where the file system refuses the direct
 * write (EINVAL: an alignment it does not take), or after a short write (a full disk) left
 * the offset unaligned. @return 0 or errno. */
static int dio_pwrite(struct alcm_dio *d, const uint8_t *p, size_t len, uint64_t off)
{
	int e = alcm_pwrite_all(d->fd, p, len, off);
	/* A filesystem that refuses O_DIRECT: clear it and write the block again (a write at an
	 * offset may be repeated). */
	if (e == EINVAL && !d->fallback) {
		d->fallback = 1;
		set_direct(d->fd, 0);
		e = alcm_pwrite_all(d->fd, p, len, off);
	}
	return e;
}

static void *dio_thread(void *arg)
{
	struct alcm_dio *d = arg;
	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (!d->queued && !d->stop)
			pthread_cond_wait(&d->cv, &d->lock);
		if (!d->queued)
			break;
		unsigned i = d->head;
		int skip = d->err != 0;
		pthread_mutex_unlock(&d->lock);
		int e = skip ? 0 : dio_pwrite(d, d->buf[i], DIO_BLOCK, d->job_off[i]);
		pthread_mutex_lock(&d->lock);
		if (e && !d->err)
			d->err = e;
		d->head = (i + 1) % DIO_BUFS;
		d->queued--;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Waits for the queued blocks; ends the thread. @return the first write error or 0. */
static int dio_drain(struct alcm_dio *d, int cancel)
{
	if (d->thread_on) {
		pthread_mutex_lock(&d->lock);
		if (cancel && !d->err)
			d->err = ECANCELED;
		d->stop = 1;
		pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->thread, NULL);
		d->thread_on = 0;
	}
	return d->err;
}

static void dio_free(alcm_atomic *f)
{
	struct alcm_dio *d = f->dio;
	if (!d)
		return;
	(void)dio_drain(d, 1);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cv);
	for (int i = 0; i < DIO_BUFS; i++)
		alcm_mem_free(f->alloc, d->raw[i]);
	alcm_mem_free(f->alloc, d);
	f->dio = NULL;
}

/* buf[i], allocated on first use so that a small output costs one buffer. @return 0 or
 * ENOMEM. */
static int dio_buffer(alcm_atomic *f, unsigned i)
{
	struct alcm_dio *d = f->dio;
	if (d->buf[i])
		return 0;
	/* The first block may hold a few bytes; a second one means blocks are filled. */
	d->raw[i] = i ? alcm_mem_alloc_filled(f->alloc, DIO_BLOCK + d->mem_align)
	              : alcm_mem_alloc(f->alloc, DIO_BLOCK + d->mem_align);
	if (!d->raw[i])
		return ENOMEM;
	uintptr_t p = (uintptr_t)d->raw[i];
	d->buf[i] = (uint8_t *)((p + d->mem_align - 1) & ~(uintptr_t)(d->mem_align - 1));
	return 0;
}

int alcm_dio_alignment(int fd, size_t *align, size_t *mem_align)
{
	*align = 4096;
	*mem_align = 4096;
#ifdef STATX_DIOALIGN
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
		if (!sx.stx_dio_offset_align || !sx.stx_dio_mem_align)
			return -1;
		*align = sx.stx_dio_offset_align;
		*mem_align = sx.stx_dio_mem_align < 4096 ? 4096 : sx.stx_dio_mem_align;
	}
#endif
	if ((*align & (*align - 1)) || (*mem_align & (*mem_align - 1)) || *align > DIO_BLOCK ||
	    *mem_align > DIO_BLOCK)
		return -1;
	return 0;
}

/* Decides at the first write (at offset off) whether to stage: durable outputs only, unless
 * ALCM_DIRECT_IO=0, and where the file system takes O_DIRECT. */
static void dio_start(alcm_atomic *f, uint64_t off)
{
	f->dio_state = -1;
	const char *env = getenv("ALCM_DIRECT_IO");
	if (!f->sync || (env && strcmp(env, "0") == 0))
		return;
	size_t align, mem_align;
	if (alcm_dio_alignment(f->fd, &align, &mem_align))
		return;
	struct alcm_dio *d = alcm_mem_calloc(f->alloc, 1, sizeof(*d));
	if (!d)
		return;
	d->fd = f->fd;
	d->align = align;
	d->mem_align = mem_align;
	f->dio = d;
	int fl = fcntl(f->fd, F_GETFL);
	if (fl < 0 || fcntl(f->fd, F_SETFL, fl | O_DIRECT) != 0 || dio_buffer(f, 0) ||
	    pthread_mutex_init(&d->lock, NULL)) {
		for (int i = 0; i < DIO_BUFS; i++)
			alcm_mem_free(f->alloc, d->raw[i]);
		alcm_mem_free(f->alloc, d);
		f->dio = NULL;
		if (fl >= 0)
			(void)fcntl(f->fd, F_SETFL, fl);
		return;
	}
	if (pthread_cond_init(&d->cv, NULL)) {
		pthread_mutex_destroy(&d->lock);
		alcm_mem_free(f->alloc, d->raw[0]);
		alcm_mem_free(f->alloc, d);
		f->dio = NULL;
		(void)fcntl(f->fd, F_SETFL, fl);
		return;
	}
	/* The bytes before the first write (the archive header, written at commit) are zeros,
	 * as a hole would read. */
	d->base = off & ~(uint64_t)(align - 1);
	d->fill = (size_t)(off - d->base);
	memset(d->buf[0], 0, d->fill);
	f->dio_state = 1;
}

/* Hands the full buffer to the writer thread (or writes it here if there is none) and makes
 * the next one current. @return 0 or errno. */
static int dio_submit(alcm_atomic *f)
{
	struct alcm_dio *d = f->dio;
	unsigned i = d->cur;
	d->submitted = 1;
	if (!d->thread_on && pthread_create(&d->thread, NULL, dio_thread, d) == 0)
		d->thread_on = 1;
	if (!d->thread_on) {
		int e = dio_pwrite(d, d->buf[i], DIO_BLOCK, d->base);
		if (e)
			return e;
	} else {
		pthread_mutex_lock(&d->lock);
		d->job_off[i] = d->base;
		d->queued++;
		pthread_cond_broadcast(&d->cv);
		while (d->queued == DIO_BUFS && !d->err)
			pthread_cond_wait(&d->cv, &d->lock);
		int e = d->err;
		pthread_mutex_unlock(&d->lock);
		if (e)
			return e;
	}
	d->cur = (i + 1) % DIO_BUFS;
	d->base += DIO_BLOCK;
	d->fill = 0;
	return dio_buffer(f, d->cur);
}

static int dio_stage(alcm_atomic *f, const uint8_t *p, size_t len)
{
	struct alcm_dio *d = f->dio;
	while (len) {
		size_t n = DIO_BLOCK - d->fill < len ? DIO_BLOCK - d->fill : len;
		memcpy(d->buf[d->cur] + d->fill, p, n);
		d->fill += n;
		p += n;
		len -= n;
		if (d->fill == DIO_BLOCK) {
			int e = dio_submit(f);
			if (e)
				return e;
		}
	}
	return 0;
}

/* Writes what is staged (the aligned part directly when blocks went so before, the rest
 * buffered), leaves O_DIRECT and frees the staging. @return 0 or errno. */
static int dio_stop(alcm_atomic *f)
{
	struct alcm_dio *d = f->dio;
	int e = dio_drain(d, 0);
	if (!e) {
		size_t a = d->submitted && !d->fallback ? d->fill & ~(d->align - 1) : 0;
		if (a)
			e = dio_pwrite(d, d->buf[d->cur], a, d->base);
		set_direct(f->fd, 0);
		if (!e && d->fill > a)
			e = alcm_pwrite_all(f->fd, d->buf[d->cur] + a, d->fill - a, d->base + a);
	} else {
		set_direct(f->fd, 0);
	}
	dio_free(f);
	f->dio_state = -1;
	return e;
}

int alcm_atomic_flush(alcm_atomic *f, char *detail)
{
	if (f->dio_state != 1)
		return ALCM_OK;
	int e = dio_stop(f);
	if (e) {
		alcm_detail_set(detail, "cannot write '%s': %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
	return ALCM_OK;
}

/* Registry of live temp files for alcm_atomic_cleanup_all(): a fixed array so that the
 * signal handler needs neither locks nor allocation. */
#define ATOMIC_SLOTS 64
#define ATOMIC_PATH 4096
static char registry[ATOMIC_SLOTS][ATOMIC_PATH];
static volatile sig_atomic_t registry_used[ATOMIC_SLOTS];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static void registry_add(const char *tmp)
{
	size_t n = strlen(tmp);
	if (n >= ATOMIC_PATH)
		return;
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < ATOMIC_SLOTS; i++) {
		if (!registry_used[i]) {
			memcpy(registry[i], tmp, n + 1);
			registry_used[i] = 1;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(const char *tmp)
{
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < ATOMIC_SLOTS; i++) {
		if (registry_used[i] && strcmp(registry[i], tmp) == 0) {
			registry_used[i] = 0;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

void alcm_atomic_cleanup_all(void)
{
	for (int i = 0; i < ATOMIC_SLOTS; i++)
		if (registry_used[i])
			unlink(registry[i]);
}

int alcm_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return ENOSPC;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int alcm_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len,
		                   (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return ENOSPC;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int alcm_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len,
		                  (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static char *dup_str(const alcm_allocator *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = alcm_mem_alloc(a, n);
	if (d)
		memcpy(d, s, n);
	return d;
}

/* The directory part of path ("." when there is none), in buf. @return 0, or -1 if too long. */
static int dir_of(const char *path, char *buf, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		snprintf(buf, cap, ".");
		return 0;
	}
	size_t n = (size_t)(slash - path);
	if (n == 0)
		n = 1;
	if (n >= cap)
		return -1;
	memcpy(buf, path, n);
	buf[n] = '\0';
	return 0;
}

/* "<dir>/.<name>.XXXXXX" for path, in a buffer of strlen(path) + 16 bytes. */
static void temp_template(char *tmp, const char *path)
{
	size_t n = strlen(path);
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	memcpy(tmp, path, dirlen);
	snprintf(tmp + dirlen, n + 16 - dirlen, ".%s.XXXXXX", path + dirlen);
}

/* Replaces the trailing XXXXXX of a template by random letters and digits (the time and a
 * counter as well, should getrandom() fail). */
static void temp_fill(char *tmp)
{
	static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	static uint64_t counter;
	uint64_t g = 0, v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20) ^
	                    (__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15u);
	(void)getrandom(&g, sizeof(g), GRND_NONBLOCK);
	v ^= g;
	char *x = tmp + strlen(tmp) - 6;
	for (int i = 0; i < 6; i++, v /= sizeof(set) - 1)
		x[i] = set[v % (sizeof(set) - 1)];
}

/* The /proc path through which linkat() names an unnamed file. */
static void proc_path(char *buf, size_t cap, int fd)
{
	snprintf(buf, cap, "/proc/self/fd/%d", fd);
}

#ifdef O_TMPFILE

/* An unnamed file in the target's directory, or -1 where O_TMPFILE is refused or the file
 * could not be named later (no /proc). */
static int open_unnamed(const char *path, unsigned mode)
{
	char dir[PATH_MAX], pp[64];
	if (dir_of(path, dir, sizeof(dir)))
		return -1;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return -1;
	proc_path(pp, sizeof(pp), fd);
	if (access(pp, F_OK) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Gives the unnamed file the name `to`. Fails with EEXIST rather than replace a file. */
static int link_unnamed(int fd, const char *to)
{
	char pp[64];
	proc_path(pp, sizeof(pp), fd);
	if (linkat(AT_FDCWD, pp, AT_FDCWD, to, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	int e = errno;
	/* Without /proc (it was there at open), a process with CAP_DAC_READ_SEARCH can still. */
	if (e == ENOENT && linkat(fd, "", AT_FDCWD, to, AT_EMPTY_PATH) == 0)
		return 0;
	errno = e;
	return -1;
}
#else
static int open_unnamed(const char *path, unsigned mode)
{
	(void)path, (void)mode;
	return -1;
}
static int link_unnamed(int fd, const char *to)
{
	(void)fd, (void)to;
	errno = ENOTSUP;
	return -1;
}
#endif

int alcm_atomic_open_mode(alcm_atomic *f, const char *path, int overwrite, int sync,
                          unsigned mode, const alcm_allocator *alloc, char *detail)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->alloc = alloc;
	f->overwrite = overwrite;
	f->sync = sync;
	if (!*path) {
		alcm_detail_set(detail, "empty output path");
		return ALCM_E_ARG;
	}
	struct stat st;
	if (!overwrite && lstat(path, &st) == 0) {
		alcm_detail_set(detail, "'%s' exists (overwrite not requested)", path);
		return ALCM_E_EXISTS;
	}
	f->path = dup_str(alloc, path);
	if (!f->path) {
		alcm_detail_set(detail, "out of memory");
		return ALCM_E_NOMEM;
	}
	f->fd = open_unnamed(path, mode);
	if (f->fd < 0) {
		f->tmp = alcm_mem_alloc(alloc, strlen(path) + 16);
		if (!f->tmp) {
			alcm_atomic_abort(f);
			alcm_detail_set(detail, "out of memory");
			return ALCM_E_NOMEM;
		}
		temp_template(f->tmp, path);
		f->fd = mkostemp(f->tmp, O_CLOEXEC);
		if (f->fd < 0) {
			int e = errno;
			alcm_detail_set(detail, "cannot create a temporary file next to '%s': %s", path,
			                strerror(e));
			alcm_mem_free(alloc, f->tmp);
			f->tmp = NULL;
			alcm_atomic_abort(f);
			return ALCM_E_IO;
		}
		registry_add(f->tmp);
	}
	/* The mode does not depend on the umask, as before O_TMPFILE. */
	(void)fchmod(f->fd, (mode_t)mode);
	return ALCM_OK;
}

int alcm_atomic_open(alcm_atomic *f, const char *path, int overwrite, int sync,
                     const alcm_allocator *alloc, char *detail)
{
	return alcm_atomic_open_mode(f, path, overwrite, sync, 0644, alloc, detail);
}

void alcm_write_behind(int fd, size_t len)
{
#ifdef SYNC_FILE_RANGE_WRITE
	/* Starts the write-out of the file's dirty pages (not waiting), so that the disk writes
	 * while the output is still being made and the fsync at commit waits for the last ones
	 * only. Large writes only; errors are for the fsync to report. */
	if (len >= ((size_t)1 << 20))
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
	(void)fd;
	(void)len;
#endif
}

int alcm_atomic_write(alcm_atomic *f, const void *buf, size_t len, char *detail)
{
	int st = alcm_atomic_pwrite(f, buf, len, f->wpos, detail);
	if (!st)
		f->wpos += len;
	return st;
}

int alcm_atomic_pwrite(alcm_atomic *f, const void *buf, size_t len, uint64_t off, char *detail)
{
	if (!len)
		return ALCM_OK;
	if (f->dio_state == 0)
		dio_start(f, off);
	if (f->dio_state == 1) {
		if (off == f->dio->base + f->dio->fill) {
			int e = dio_stage(f, buf, len);
			if (e) {
				alcm_detail_set(detail, "cannot write '%s': %s", f->path, strerror(e));
				return ALCM_E_IO;
			}
			return ALCM_OK;
		}
		int st = alcm_atomic_flush(f, detail);
		if (st)
			return st;
	}
	int e = alcm_pwrite_all(f->fd, buf, len, off);
	if (e) {
		alcm_detail_set(detail, "cannot write '%s': %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
	if (f->sync)
		alcm_write_behind(f->fd, len);
	return ALCM_OK;
}

static void sync_dir(const char *path)
{
	char buf[PATH_MAX];
	if (dir_of(path, buf, sizeof(buf)))
		return;
	int dfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
}

/*
 * Replaces f->path by the unnamed file: linkat() never replaces, so the file is linked to a
 * fresh temporary name and renamed over the target at once. A kill -9 between the two calls
 * is the only moment a temporary name can be left behind (microseconds, against the whole
 * write with a named temporary file); SIGINT/SIGTERM handlers remove it.
 */
static int replace_unnamed(alcm_atomic *f, char *detail)
{
	size_t n = strlen(f->path) + 16;
	char *tmp = alcm_mem_alloc(f->alloc, n);
	if (!tmp) {
		alcm_detail_set(detail, "out of memory");
		return ALCM_E_NOMEM;
	}
	int rc = ALCM_E_IO, e = 0;
	for (int attempt = 0; attempt < 100; attempt++) {
		temp_template(tmp, f->path);
		temp_fill(tmp);
		registry_add(tmp);
		if (link_unnamed(f->fd, tmp) == 0) {
			if (rename(tmp, f->path) == 0) {
				rc = ALCM_OK;
			} else {
				e = errno;
				unlink(tmp);
			}
			registry_remove(tmp);
			break;
		}
		e = errno;
		registry_remove(tmp);
		if (e != EEXIST)
			break;
	}
	if (rc)
		alcm_detail_set(detail, "cannot rename to '%s': %s", f->path, strerror(e));
	alcm_mem_free(f->alloc, tmp);
	return rc;
}

static int commit_unnamed(alcm_atomic *f, char *detail)
{
	/* The descriptor that wrote is closed before the file is published, so that a write
	 * error reported only at close (NFS-like file systems) publishes nothing; an O_PATH
	 * descriptor keeps the unnamed file alive for the link. */
	int pfd = -1;
#ifdef O_PATH
	char pp[64];
	proc_path(pp, sizeof(pp), f->fd);
	pfd = open(pp, O_PATH | O_CLOEXEC);
#endif
	if (pfd < 0)
		pfd = fcntl(f->fd, F_DUPFD_CLOEXEC, 3);
	int pe = pfd < 0 ? errno : 0;
	int e = close(f->fd) != 0 ? errno : 0;
	f->fd = pfd;
	if (e || pe) {
		alcm_detail_set(detail, "cannot write '%s': close: %s", f->path, strerror(e ? e : pe));
		return ALCM_E_IO;
	}
	int rc = ALCM_OK;
	if (f->overwrite) {
		rc = replace_unnamed(f, detail);
	} else if (link_unnamed(f->fd, f->path) != 0) {
		e = errno;
		alcm_detail_set(detail, "cannot create '%s': %s", f->path, strerror(e));
		rc = e == EEXIST ? ALCM_E_EXISTS : ALCM_E_IO;
	}
	close(f->fd);
	f->fd = -1;
	return rc;
}

static int commit_named(alcm_atomic *f, char *detail)
{
	if (close(f->fd) != 0) {
		int e = errno;
		f->fd = -1;
		alcm_detail_set(detail, "cannot write '%s': close: %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
	f->fd = -1;
	if (f->overwrite) {
		if (rename(f->tmp, f->path) != 0) {
			int e = errno;
			alcm_detail_set(detail, "cannot rename to '%s': %s", f->path, strerror(e));
			return ALCM_E_IO;
		}
	} else {
		/* link() fails with EEXIST instead of replacing a file that appeared meanwhile. */
		if (link(f->tmp, f->path) != 0) {
			int e = errno;
			alcm_detail_set(detail, "cannot create '%s': %s", f->path, strerror(e));
			return e == EEXIST ? ALCM_E_EXISTS : ALCM_E_IO;
		}
		unlink(f->tmp);
	}
	registry_remove(f->tmp);
	alcm_mem_free(f->alloc, f->tmp);
	f->tmp = NULL;
	return ALCM_OK;
}

int alcm_atomic_commit(alcm_atomic *f, char *detail)
{
	if (f->fd < 0 || !f->path) {
		alcm_detail_set(detail, "output already committed or aborted");
		return ALCM_E_STATE;
	}
	int rc = alcm_atomic_flush(f, detail);
	if (rc)
		return rc;
	if (f->sync && fsync(f->fd) != 0) {
		int e = errno;
		alcm_detail_set(detail, "cannot write '%s': fsync: %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
	rc = f->tmp ? commit_named(f, detail) : commit_unnamed(f, detail);
	if (rc)
		return rc;
	if (f->sync)
		sync_dir(f->path);
	alcm_mem_free(f->alloc, f->path);
	f->path = NULL;
	return ALCM_OK;
}

/*
 * Several files published together (alcm_atomic_file_commit_all): everything that can fail
 * slowly or leave the targets inconsistent happens first, for every file (fsync, close of
 * the writing descriptor, a temporary name for an unnamed file), so that publishing them is
 * one rename after another. A kill between two renames is the only way to see some of them
 * new and others old; a kill after staging leaves the staged names (hidden, in the targets'
 * directories) and every target as it was.
 */
static int stage(alcm_atomic *f, char *detail)
{
	if (f->fd < 0 || !f->path) {
		alcm_detail_set(detail, "output already committed or aborted");
		return ALCM_E_STATE;
	}
	int rc = alcm_atomic_flush(f, detail);
	if (rc)
		return rc;
	if (f->sync && fsync(f->fd) != 0) {
		alcm_detail_set(detail, "cannot write '%s': fsync: %s", f->path, strerror(errno));
		return ALCM_E_IO;
	}
	if (!f->tmp) {
		size_t n = strlen(f->path) + 16;
		f->tmp = alcm_mem_alloc(f->alloc, n);
		if (!f->tmp) {
			alcm_detail_set(detail, "out of memory");
			return ALCM_E_NOMEM;
		}
		rc = ALCM_E_IO;
		for (int attempt = 0; attempt < 100; attempt++) {
			temp_template(f->tmp, f->path);
			temp_fill(f->tmp);
			registry_add(f->tmp);
			if (link_unnamed(f->fd, f->tmp) == 0) {
				rc = ALCM_OK;
				break;
			}
			int e = errno;
			registry_remove(f->tmp);
			errno = e;
			if (e != EEXIST)
				break;
		}
		if (rc) {
			alcm_detail_set(detail, "cannot create a temporary name next to '%s': %s", f->path,
			                strerror(errno));
			alcm_mem_free(f->alloc, f->tmp);
			f->tmp = NULL;
			return rc;
		}
	}
	if (close(f->fd) != 0) {
		f->fd = -1;
		alcm_detail_set(detail, "cannot write '%s': close: %s", f->path, strerror(errno));
		return ALCM_E_IO;
	}
	f->fd = -1;
	return ALCM_OK;
}

/* The staged name becomes the target: replacing it (overwrite), or not (RENAME_NOREPLACE,
 * or link and unlink where the file system lacks it). */
static int publish(alcm_atomic *f, char *detail)
{
	int r;
	if (f->overwrite) {
		r = rename(f->tmp, f->path);
	} else {
		r = -1;
		errno = ENOSYS;
#ifdef RENAME_NOREPLACE
		r = renameat2(AT_FDCWD, f->tmp, AT_FDCWD, f->path, RENAME_NOREPLACE);
#endif
		if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
			r = link(f->tmp, f->path);
			if (r == 0)
				unlink(f->tmp);
		}
	}
	if (r != 0) {
		int e = errno;
		alcm_detail_set(detail, "cannot create '%s': %s", f->path, strerror(e));
		return e == EEXIST ? ALCM_E_EXISTS : ALCM_E_IO;
	}
	registry_remove(f->tmp);
	alcm_mem_free(f->alloc, f->tmp);
	f->tmp = NULL;
	return ALCM_OK;
}

void alcm_atomic_abort(alcm_atomic *f)
{
	dio_free(f);
	f->dio_state = -1;
	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->tmp) {
		unlink(f->tmp);
		registry_remove(f->tmp);
		alcm_mem_free(f->alloc, f->tmp);
		f->tmp = NULL;
	}
	alcm_mem_free(f->alloc, f->path);
	f->path = NULL;
}

/* ---- the public wrapper ---- */

struct alcm_atomic_file {
	alcm_allocator alloc;
	alcm_atomic a;
	int state; /* 0 open, 1 committed, 2 failed */
	char detail[ALCM_DETAIL_MAX];
};

int alcm_atomic_file_open(alcm_atomic_file **out, const char *path, unsigned flags,
                          const alcm_allocator *alloc)
{
	if (!out)
		return ALCM_E_ARG;
	*out = NULL;
	alcm_allocator a;
	alcm_alloc_copy(&a, alloc);
	alcm_atomic_file *f = alcm_mem_calloc(&a, 1, sizeof(*f));
	if (!f)
		return ALCM_E_NOMEM;
	f->alloc = a;
	f->a.fd = -1;
	*out = f;
	if (!path)
		return ALCM_E_ARG;
	int st = alcm_atomic_open_mode(&f->a, path, (flags & ALCM_WRITE_OVERWRITE) != 0,
	                               !(flags & ALCM_WRITE_NO_SYNC),
	                               (flags & ALCM_WRITE_PRIVATE) ? 0600 : 0644, &f->alloc,
	                               f->detail);
	if (st)
		f->state = 2;
	return st;
}

int alcm_atomic_file_write(alcm_atomic_file *f, const void *buf, size_t len)
{
	if (!f || (!buf && len))
		return ALCM_E_ARG;
	if (f->state)
		return ALCM_E_STATE;
	int st = alcm_atomic_write(&f->a, buf, len, f->detail);
	if (st)
		f->state = 2;
	return st;
}

int alcm_atomic_file_sync(alcm_atomic_file *f)
{
	if (!f)
		return ALCM_E_ARG;
	if (f->state)
		return ALCM_E_STATE;
	if (alcm_atomic_flush(&f->a, f->detail)) {
		f->state = 2;
		return ALCM_E_IO;
	}
	if (fsync(f->a.fd) != 0) {
		alcm_detail_set(f->detail, "cannot write '%s': fsync: %s", f->a.path, strerror(errno));
		f->state = 2;
		return ALCM_E_IO;
	}
	return ALCM_OK;
}

int alcm_atomic_file_commit(alcm_atomic_file *f)
{
	if (!f)
		return ALCM_E_ARG;
	if (f->state)
		return ALCM_E_STATE;
	int st = alcm_atomic_commit(&f->a, f->detail);
	f->state = st ? 2 : 1;
	return st;
}

void alcm_atomic_file_free(alcm_atomic_file *f)
{
	if (!f)
		return;
	alcm_atomic_abort(&f->a);
	alcm_allocator a = f->alloc;
	alcm_mem_free(&a, f);
}

int alcm_atomic_file_commit_all(alcm_atomic_file *const *f, size_t n, size_t *done)
{
	if (done)
		*done = 0;
	if (!f)
		return ALCM_E_ARG;
	for (size_t i = 0; i < n; i++)
		if (!f[i])
			return ALCM_E_ARG;
	for (size_t i = 0; i < n; i++)
		if (f[i]->state)
			return ALCM_E_STATE;
	for (size_t i = 0; i < n; i++) {
		int st = stage(&f[i]->a, f[i]->detail);
		if (st) {
			f[i]->state = 2;
			return st;
		}
	}
	for (size_t i = 0; i < n; i++) {
		int st = publish(&f[i]->a, f[i]->detail);
		if (st) {
			f[i]->state = 2;
			return st;
		}
		f[i]->state = 1;
		if (done)
			*done = i + 1;
	}
	for (size_t i = 0; i < n; i++) {
		/* Each directory once would do; a repeat costs little for the few files this is for. */
		if (f[i]->a.sync)
			sync_dir(f[i]->a.path);
		alcm_mem_free(f[i]->a.alloc, f[i]->a.path);
		f[i]->a.path = NULL;
	}
	return ALCM_OK;
}

const char *alcm_atomic_file_detail(const alcm_atomic_file *f)
{
	return f ? f->detail : "";
}
