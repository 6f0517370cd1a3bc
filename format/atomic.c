/* Atomic output files: temp file in the target's directory, fsync, rename or link. */
#include "format_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

int alcm_atomic_open(alcm_atomic *f, const char *path, int overwrite, int sync,
                     const alcm_allocator *alloc, char *detail)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->alloc = alloc;
	f->overwrite = overwrite;
	f->sync = sync;
	if (!path || !*path) {
		alcm_detail_set(detail, "empty output path");
		return ALCM_E_ARG;
	}
	struct stat st;
	if (!overwrite && lstat(path, &st) == 0) {
		alcm_detail_set(detail, "'%s' exists (overwrite not requested)", path);
		return ALCM_E_EXISTS;
	}
	f->path = dup_str(alloc, path);
	size_t n = strlen(path);
	f->tmp = alcm_mem_alloc(alloc, n + 16);
	if (!f->path || !f->tmp) {
		alcm_atomic_abort(f);
		alcm_detail_set(detail, "out of memory");
		return ALCM_E_NOMEM;
	}
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	memcpy(f->tmp, path, dirlen);
	snprintf(f->tmp + dirlen, n + 16 - dirlen, ".%s.XXXXXX", path + dirlen);
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
	(void)fchmod(f->fd, 0644);
	return ALCM_OK;
}

int alcm_atomic_write(alcm_atomic *f, const void *buf, size_t len, char *detail)
{
	int e = alcm_write_all(f->fd, buf, len);
	if (e) {
		alcm_detail_set(detail, "cannot write '%s': %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
	return ALCM_OK;
}

int alcm_atomic_pwrite(alcm_atomic *f, const void *buf, size_t len, uint64_t off, char *detail)
{
	int e = alcm_pwrite_all(f->fd, buf, len, off);
	if (e) {
		alcm_detail_set(detail, "cannot write '%s': %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
	return ALCM_OK;
}

static void sync_dir(const char *path)
{
	char buf[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (slash) {
		size_t n = (size_t)(slash - path);
		if (n == 0)
			n = 1;
		if (n >= sizeof(buf))
			return;
		memcpy(buf, path, n);
		buf[n] = '\0';
	} else {
		strcpy(buf, ".");
	}
	int dfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
}

int alcm_atomic_commit(alcm_atomic *f, char *detail)
{
	if (f->fd < 0 || !f->tmp) {
		alcm_detail_set(detail, "output already committed or aborted");
		return ALCM_E_STATE;
	}
	if (f->sync && fsync(f->fd) != 0) {
		int e = errno;
		alcm_detail_set(detail, "cannot write '%s': fsync: %s", f->path, strerror(e));
		return ALCM_E_IO;
	}
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
	if (f->sync)
		sync_dir(f->path);
	alcm_mem_free(f->alloc, f->tmp);
	f->tmp = NULL;
	alcm_mem_free(f->alloc, f->path);
	f->path = NULL;
	return ALCM_OK;
}

void alcm_atomic_abort(alcm_atomic *f)
{
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
