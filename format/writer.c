/*
 * The container writer: streams sections to a temporary file (or memory), digesting as it
 * goes, then writes the table and a commit slot. Appends flip the inactive slot last.
 */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { W_FILE, W_MEMORY, W_APPEND };

struct alcm_writer {
	alcm_allocator alloc;
	int kind;
	alcm_atomic atom;      /* W_FILE */
	int fd;                /* W_FILE (atom.fd) and W_APPEND (locked, spec 7.2) */
	char *path;            /* W_APPEND */
	uint8_t *mem;          /* W_MEMORY */
	size_t mem_cap, mem_hw; /* capacity; bytes up to the highest written */
	int mem_mapped;        /* mem is an anonymous mapping (mem_grow) */
	uint64_t pos;          /* end of the data written so far */
	uint32_t hflags;
	int sync;
	alcm_entry *e;
	uint32_t count, cap, base_count;
	int in_section;
	alcm_blake2b hs;
	uint64_t generation;
	unsigned next_slot;
	uint8_t fixed[ALCM_FIXED_SIZE]; /* the fixed header the commit slot is bound to */
	int committed, poisoned;
	int slot_touched;      /* W_APPEND: the new slot may be on disk, keep the new table */
	char detail[ALCM_DETAIL_MAX];
};

static int wfail(alcm_writer *w, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int wfail(alcm_writer *w, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(w->detail, fmt, ap);
	va_end(ap);
	if (status != ALCM_E_ARG)
		w->poisoned = 1;
	return status;
}

/* A memory archive of the libc allocator this large or more is an anonymous mapping: it grows
 * by mremap, without copying, and in transparent huge pages. Through malloc, each doubling
 * copied the archive into fresh pages and faulted every 4 KiB of it, and glibc's rising mmap
 * threshold gave back and refaulted them on every call: alcm.compress of a 20 MB array ran
 * at 44-51 MB/s against 300 for alcm-pack, 60% of it in page faults, memset and memmove. */
#define MEM_MAP_MIN ((size_t)1 << 21)

static int mem_grow(alcm_writer *w, uint64_t end)
{
	size_t nc = w->mem_cap ? w->mem_cap : 4096;
	while (nc < end)
		nc *= 2;
	uint8_t *m;
	if (w->mem_mapped || (nc >= MEM_MAP_MIN && alcm_alloc_is_libc(&w->alloc))) {
		void *p = w->mem_mapped ? mremap(w->mem, w->mem_cap, nc, MREMAP_MAYMOVE)
		                        : mmap(NULL, nc, PROT_READ | PROT_WRITE,
		                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return wfail(w, ALCM_E_NOMEM, "cannot grow the archive buffer to %zu bytes", nc);
		m = p;
		(void)madvise(m, nc, MADV_HUGEPAGE);
		if (!w->mem_mapped) {
			if (w->mem_hw)
				memcpy(m, w->mem, w->mem_hw);
			alcm_mem_free(&w->alloc, w->mem);
			w->mem_mapped = 1;
		}
	} else if (!(m = alcm_mem_realloc(&w->alloc, w->mem, nc))) {
		return wfail(w, ALCM_E_NOMEM, "cannot grow the archive buffer to %zu bytes", nc);
	}
	w->mem = m;
	w->mem_cap = nc;
	return ALCM_OK;
}

static int raw_pwrite(alcm_writer *w, const void *buf, size_t len, uint64_t off)
{
	if (w->kind == W_MEMORY) {
		uint64_t end;
		if (alcm_add_u64(off, len, &end) || end > SIZE_MAX / 2)
			return wfail(w, ALCM_E_NOMEM, "archive too large for memory");
		int st = end > w->mem_cap ? mem_grow(w, end) : ALCM_OK;
		if (st)
			return st;
		/* Bytes never written read as zero. */
		if (off > w->mem_hw)
			memset(w->mem + w->mem_hw, 0, (size_t)off - w->mem_hw);
		memcpy(w->mem + off, buf, len);
		if (end > w->mem_hw)
			w->mem_hw = (size_t)end;
		return ALCM_OK;
	}
	if (w->kind == W_FILE) {
		/* Through the atomic file, which stages sequential writes for direct I/O. */
		int st = alcm_atomic_pwrite(&w->atom, buf, len, off, w->detail);
		if (st) {
			w->poisoned = 1;
			return st;
		}
		return ALCM_OK;
	}
	int e = alcm_pwrite_all(w->fd, buf, len, off);
	if (e)
		return wfail(w, ALCM_E_IO, "cannot write '%s' at offset %llu: %s", w->path,
		             (unsigned long long)off, strerror(e));
	if (w->sync)
		alcm_write_behind(w->fd, len);
	return ALCM_OK;
}

static int pad_to_alignment(alcm_writer *w)
{
	static const uint8_t zero[ALCM_ALIGN];
	uint64_t to = alcm_align_up(w->pos);
	int st = to > w->pos ? raw_pwrite(w, zero, (size_t)(to - w->pos), w->pos) : ALCM_OK;
	if (!st)
		w->pos = to;
	return st;
}

static int writer_new(alcm_writer **out, int kind, unsigned flags, const alcm_allocator *alloc)
{
	alcm_allocator a;
	alcm_alloc_copy(&a, alloc);
	*out = NULL;
	alcm_writer *w = alcm_mem_calloc(&a, 1, sizeof(*w));
	if (!w)
		return ALCM_E_NOMEM;
	w->alloc = a;
	w->kind = kind;
	w->fd = -1;
	w->atom.fd = -1;
	w->hflags = (flags & ALCM_WRITE_STREAM) ? ALCM_FLAG_STREAM : 0;
	w->sync = !(flags & ALCM_WRITE_NO_SYNC);
	w->pos = ALCM_HEADER_SIZE;
	w->generation = 1;
	w->next_slot = ALCM_SLOT_A;
	alcm_header_fixed_build(w->fixed, w->hflags, 0);
	*out = w;
	return ALCM_OK;
}

int alcm_writer_open_file(alcm_writer **out, const char *path, unsigned flags,
                          const alcm_allocator *alloc)
{
	if (!out || !path)
		return ALCM_E_ARG;
	int st = writer_new(out, W_FILE, flags, alloc);
	if (st)
		return st;
	alcm_writer *w = *out;
	st = alcm_atomic_open(&w->atom, path, (flags & ALCM_WRITE_OVERWRITE) != 0, w->sync,
	                      &w->alloc, w->detail);
	if (st) {
		w->poisoned = 1;
		return st;
	}
	w->fd = w->atom.fd;
	return ALCM_OK;
}

int alcm_writer_open_memory(alcm_writer **out, unsigned flags, const alcm_allocator *alloc)
{
	if (!out)
		return ALCM_E_ARG;
	return writer_new(out, W_MEMORY, flags, alloc);
}

static int reserve_entries(alcm_writer *w, uint32_t need)
{
	if (need <= w->cap)
		return ALCM_OK;
	uint32_t nc = w->cap ? w->cap : 16;
	while (nc < need) {
		if (nc > UINT32_MAX / 2)
			return wfail(w, ALCM_E_LIMIT, "too many sections");
		nc *= 2;
	}
	alcm_entry *e = alcm_mem_realloc(&w->alloc, w->e, (size_t)nc * sizeof(*e));
	if (!e)
		return wfail(w, ALCM_E_NOMEM, "cannot grow the section table");
	w->e = e;
	w->cap = nc;
	return ALCM_OK;
}

/*
 * An exclusive lock on the whole file (spec 7.2). An open file description lock: unlike a
 * classic fcntl lock it is not dropped when the process closes another descriptor of the
 * file (the reader's), and it excludes a second writer in the same process; like one, it
 * conflicts with the POSIX locks of other programs (lockf, Python's fcntl.lockf) and works
 * over NFS. flock() where the kernel predates OFD locks (Linux < 3.15, other systems).
 * @return 0, EWOULDBLOCK when another writer holds it and wait is 0, or an errno.
 */
static int lock_whole(int fd, int wait)
{
#ifdef F_OFD_SETLKW
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	for (;;) {
		if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EACCES)
			return EWOULDBLOCK;
		if (errno != EINVAL)
			return errno;
		break; /* no OFD locks in this kernel */
	}
#endif
	while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

static void unlock_whole(int fd)
{
#ifdef F_OFD_SETLK
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_UNLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return;
#endif
	(void)flock(fd, LOCK_UN);
}

/* Releases the file of an append: an explicit unlock first, so that a child forked
 * meanwhile (which shares the lock through its copy of the descriptor) does not keep it. */
static void release_append(alcm_writer *w)
{
	if (w->fd < 0)
		return;
	unlock_whole(w->fd);
	close(w->fd);
	w->fd = -1;
}

/*
 * Opens and locks the archive at path for an append. Another process may replace the file
 * (a new archive written over it) while this one waits: the lock then covers a file that is
 * no longer at `path`, so the path is checked again after locking, and the open retried.
 */
static int open_locked(alcm_writer *w, const char *path, unsigned flags)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			return wfail(w, ALCM_E_IO, "%s: cannot open for appending: %s", path,
			             strerror(errno));
		struct stat a, b;
		int bad = fstat(fd, &a) != 0 ? errno : 0;
		if (bad || !S_ISREG(a.st_mode)) {
			close(fd);
			return wfail(w, ALCM_E_IO, "%s: %s", path,
			             bad ? strerror(bad) : "not a regular file");
		}
		int e = lock_whole(fd, !(flags & ALCM_WRITE_NO_WAIT));
		if (e) {
			close(fd);
			if (e == EWOULDBLOCK)
				return wfail(w, ALCM_E_BUSY, "%s: another writer holds its lock (spec 7.2)",
				             path);
			return wfail(w, ALCM_E_IO, "%s: cannot lock it for appending: %s", path,
			             strerror(e));
		}
		if (stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			w->fd = fd;
			return ALCM_OK;
		}
		unlock_whole(fd);
		close(fd);
	}
	return wfail(w, ALCM_E_IO, "%s: it keeps being replaced while this append waits", path);
}

int alcm_writer_open_append(alcm_writer **out, const char *path, const alcm_limits *lim,
                            const alcm_allocator *alloc, unsigned flags)
{
	if (!out || !path)
		return ALCM_E_ARG;
	int st = writer_new(out, W_APPEND, flags, alloc);
	if (st)
		return st;
	alcm_writer *w = *out;
	w->path = alcm_mem_alloc(&w->alloc, strlen(path) + 1);
	if (!w->path)
		return wfail(w, ALCM_E_NOMEM, "out of memory");
	strcpy(w->path, path);
	/* The lock comes first: the committed state read below is then the one this append
	 * extends, and no other writer moves it until commit. */
	if ((st = open_locked(w, path, flags)))
		return st;
	alcm_reader *r = NULL;
	st = alcm_reader_open_fd(&r, w->fd, path, lim, &w->alloc, ALCM_READ_NO_VERIFY);
	if (st) {
		wfail(w, st, "%s", r ? alcm_reader_detail(r) : alcm_strerror(st));
		alcm_reader_free(r);
		return st;
	}
	if (!(alcm_reader_flags(r) & ALCM_FLAG_STREAM)) {
		alcm_reader_free(r);
		return wfail(w, ALCM_E_STATE, "%s: not a stream archive (pack it with --stream to "
		             "append to it)", path);
	}
	const alcm_entry *old;
	uint32_t n;
	uint64_t toff, tsize;
	unsigned active;
	alcm_reader_committed(r, &old, &n, &toff, &tsize, &w->generation, &active);
	w->hflags = alcm_reader_flags(r);
	if (n >= UINT32_MAX - 1) {
		alcm_reader_free(r);
		return wfail(w, ALCM_E_LIMIT, "%s: too many sections to append to", path);
	}
	st = reserve_entries(w, n + 1);
	if (!st) {
		memcpy(w->e, old, (size_t)n * sizeof(*old));
		w->count = n;
	}
	alcm_reader_free(r);
	if (st)
		return st;
	/* The committed table stays where it is and becomes a section (PTBL), so an
	 * interrupted append leaves it valid and every byte stays accounted for. */
	uint8_t *tbl = alcm_mem_alloc(&w->alloc, (size_t)tsize);
	if (!tbl)
		return wfail(w, ALCM_E_NOMEM, "out of memory");
	/* The new slot is bound to the fixed header as the file has it (a higher minor version
	 * included), so it is read back rather than rebuilt. */
	int e = alcm_pread_all(w->fd, w->fixed, ALCM_FIXED_SIZE, 0);
	if (!e)
		e = alcm_pread_all(w->fd, tbl, (size_t)tsize, toff);
	if (e) {
		alcm_mem_free(&w->alloc, tbl);
		return wfail(w, ALCM_E_IO, "cannot read '%s' for appending: %s", path,
		             e == -1 ? "file shrank" : strerror(e));
	}
	alcm_entry *pe = &w->e[w->count];
	memset(pe, 0, sizeof(*pe));
	memcpy(pe->type, "PTBL", 4);
	pe->tag = (uint32_t)w->generation;
	pe->offset = toff;
	pe->length = tsize;
	alcm_digest(pe->digest, tbl, (size_t)tsize);
	alcm_mem_free(&w->alloc, tbl);
	w->count++;
	w->base_count = w->count;
	w->pos = toff + tsize;
	/* Drop an uncommitted tail left by an earlier interrupted append. */
	if (ftruncate(w->fd, (off_t)w->pos) != 0)
		return wfail(w, ALCM_E_IO, "cannot truncate '%s': %s", path, strerror(errno));
	w->next_slot = active == ALCM_SLOT_A ? ALCM_SLOT_B : ALCM_SLOT_A;
	w->generation++;
	return ALCM_OK;
}

uint32_t alcm_writer_section_count(const alcm_writer *w)
{
	return w ? w->count : 0;
}

int alcm_writer_section_info(const alcm_writer *w, uint32_t i, alcm_section_info *info)
{
	if (!w || !info || i >= w->count)
		return ALCM_E_ARG;
	const alcm_entry *e = &w->e[i];
	memcpy(info->type, e->type, 4);
	info->type[4] = '\0';
	info->flags = e->flags;
	info->tag = e->tag;
	info->offset = e->offset;
	info->length = e->length;
	memcpy(info->digest, e->digest, ALCM_DIGEST_LEN);
	info->digest_state = ALCM_DIGEST_OK;
	info->known = alcm_section_type_known(e->type);
	return ALCM_OK;
}

static int usable(alcm_writer *w)
{
	if (w->poisoned || w->committed)
		return ALCM_E_STATE;
	return ALCM_OK;
}

int alcm_writer_section_begin(alcm_writer *w, const char *type, uint32_t flags, uint32_t tag)
{
	if (!w || !type)
		return ALCM_E_ARG;
	if (usable(w) || w->in_section)
		return ALCM_E_STATE;
	if (strlen(type) != 4 || !alcm_section_type_valid(type) || (flags & ~ALCM_KNOWN_FLAGS))
		return wfail(w, ALCM_E_ARG, "bad section type or flags");
	int st = reserve_entries(w, w->count + 1);
	if (st)
		return st;
	if ((st = pad_to_alignment(w)))
		return st;
	alcm_entry *e = &w->e[w->count];
	memset(e, 0, sizeof(*e));
	memcpy(e->type, type, 4);
	e->flags = flags;
	e->tag = tag;
	e->offset = w->pos;
	alcm_blake2b_init(&w->hs, ALCM_DIGEST_LEN);
	w->in_section = 1;
	return ALCM_OK;
}

/* Appends to the open section; hash: into its digest too (else its writer takes the digest
 * elsewhere and gives it to alcm_writer_section_end_digest). */
static int section_put(alcm_writer *w, const void *data, size_t len, int hash)
{
	if (!w || (!data && len))
		return ALCM_E_ARG;
	if (usable(w) || !w->in_section)
		return ALCM_E_STATE;
	if (!len)
		return ALCM_OK;
	int st = raw_pwrite(w, data, len, w->pos);
	if (st)
		return st;
	if (hash)
		alcm_blake2b_update(&w->hs, data, len);
	w->pos += len;
	w->e[w->count].length += len;
	return ALCM_OK;
}

int alcm_writer_section_write(alcm_writer *w, const void *data, size_t len)
{
	return section_put(w, data, len, 1);
}

int alcm_writer_section_write_unhashed(alcm_writer *w, const void *data, size_t len)
{
	return section_put(w, data, len, 0);
}

int alcm_writer_section_end_digest(alcm_writer *w, const uint8_t *digest, uint32_t *index)
{
	if (!w || !digest)
		return ALCM_E_ARG;
	if (usable(w) || !w->in_section)
		return ALCM_E_STATE;
	memcpy(w->e[w->count].digest, digest, ALCM_DIGEST_LEN);
	w->in_section = 0;
	if (index)
		*index = w->count;
	w->count++;
	return ALCM_OK;
}

int alcm_writer_section_end(alcm_writer *w, uint32_t *index)
{
	if (!w)
		return ALCM_E_ARG;
	if (usable(w) || !w->in_section)
		return ALCM_E_STATE;
	alcm_blake2b_final(&w->hs, w->e[w->count].digest);
	w->in_section = 0;
	if (index)
		*index = w->count;
	w->count++;
	return ALCM_OK;
}

int alcm_writer_add_section(alcm_writer *w, const char *type, uint32_t flags, uint32_t tag,
                            const void *data, size_t len, uint32_t *index)
{
	int st = alcm_writer_section_begin(w, type, flags, tag);
	if (!st)
		st = alcm_writer_section_write(w, data, len);
	if (!st)
		st = alcm_writer_section_end(w, index);
	return st;
}

static int sync_fd(alcm_writer *w)
{
	if (w->kind == W_MEMORY || !w->sync)
		return ALCM_OK;
	if (fsync(w->fd) != 0)
		return wfail(w, ALCM_E_IO, "cannot write '%s': fsync: %s",
		             w->kind == W_FILE ? w->atom.path : w->path, strerror(errno));
	return ALCM_OK;
}

int alcm_writer_commit(alcm_writer *w)
{
	if (!w)
		return ALCM_E_ARG;
	if (usable(w) || w->in_section)
		return ALCM_E_STATE;
	uint8_t *tbl = NULL;
	size_t tlen = 0;
	uint8_t slot[ALCM_SLOT_SIZE];
	int st = pad_to_alignment(w);
	if (st)
		return st;
	if (alcm_table_build(&w->alloc, w->e, w->count, &tbl, &tlen))
		return wfail(w, ALCM_E_NOMEM, "cannot allocate the section table");
	uint64_t toff = w->pos;
	st = raw_pwrite(w, tbl, tlen, toff);
	alcm_mem_free(&w->alloc, tbl);
	if (st)
		return st;
	w->pos += tlen;
	alcm_slot_build(slot, w->fixed, w->generation, toff, tlen);
	if (w->kind == W_APPEND) {
		/* Table first, durable; only then the slot that points at it. Once the slot write
		 * has started, the new table must stay even if this commit reports an error. */
		if ((st = sync_fd(w)))
			return st;
		w->slot_touched = 1;
		if ((st = raw_pwrite(w, slot, ALCM_SLOT_SIZE, w->next_slot)) || (st = sync_fd(w)))
			return st;
		release_append(w);
	} else {
		uint8_t h[ALCM_HEADER_SIZE];
		memset(h, 0, sizeof(h));
		memcpy(h, w->fixed, ALCM_FIXED_SIZE);
		memcpy(h + ALCM_SLOT_A, slot, ALCM_SLOT_SIZE);
		if ((st = raw_pwrite(w, h, sizeof(h), 0)))
			return st;
		if (w->kind == W_FILE) {
			st = alcm_atomic_commit(&w->atom, w->detail);
			w->fd = -1;
			if (st) {
				w->poisoned = 1;
				return st;
			}
		}
	}
	w->committed = 1;
	return ALCM_OK;
}

int alcm_writer_memory(const alcm_writer *w, const void **buf, size_t *len)
{
	if (!w || !buf || !len || w->kind != W_MEMORY)
		return ALCM_E_ARG;
	if (!w->committed)
		return ALCM_E_STATE;
	*buf = w->mem;
	*len = (size_t)w->pos;
	return ALCM_OK;
}

int alcm_writer_rollback(alcm_writer *w, uint32_t count)
{
	if (!w)
		return ALCM_E_ARG;
	if (usable(w) || w->in_section)
		return ALCM_E_STATE;
	if (count < w->base_count || count > w->count)
		return ALCM_E_ARG;
	const alcm_entry *last = count ? &w->e[count - 1] : NULL;
	uint64_t pos = last ? last->offset + last->length : ALCM_HEADER_SIZE;
	/* Files are cut back, so that no byte of a dropped section can trail the table. */
	if (w->kind == W_FILE && alcm_atomic_flush(&w->atom, w->detail)) {
		w->poisoned = 1;
		return ALCM_E_IO;
	}
	if (w->kind != W_MEMORY && ftruncate(w->fd, (off_t)pos) != 0) {
		w->poisoned = 1;
		return wfail(w, ALCM_E_IO, "cannot truncate the archive to %llu bytes: %s",
		             (unsigned long long)pos, strerror(errno));
	}
	w->count = count;
	w->pos = pos;
	return ALCM_OK;
}

uint64_t alcm_writer_bytes(const alcm_writer *w)
{
	return w ? w->pos : 0;
}

void alcm_writer_free(alcm_writer *w)
{
	if (!w)
		return;
	alcm_allocator a = w->alloc;
	if (w->kind == W_FILE)
		alcm_atomic_abort(&w->atom);
	if (w->kind == W_APPEND && w->fd >= 0) {
		/* An unfinished append: cut the file back to the committed archive. */
		if (!w->committed && !w->slot_touched && w->base_count)
			(void)ftruncate(w->fd, (off_t)(w->e[w->base_count - 1].offset +
			                               w->e[w->base_count - 1].length));
		release_append(w);
	}
	alcm_mem_free(&a, w->path);
	if (w->mem_mapped)
		munmap(w->mem, w->mem_cap);
	else
		alcm_mem_free(&a, w->mem);
	alcm_mem_free(&a, w->e);
	alcm_mem_free(&a, w);
}

const char *alcm_writer_detail(const alcm_writer *w)
{
	return w ? w->detail : "";
}

uint32_t alcm_writer_flags(const alcm_writer *w)
{
	return w ? w->hflags : 0;
}

unsigned alcm_writer_minor(const alcm_writer *w)
{
	return w ? alcm_load16(w->fixed + 10) : 0;
}

int alcm_writer_can_require_minor(const alcm_writer *w, unsigned minor)
{
	return w && minor <= ALCM_FORMAT_MINOR && !w->poisoned && !w->committed &&
	       (w->kind != W_APPEND || minor <= alcm_writer_minor(w));
}

int alcm_writer_require_minor(alcm_writer *w, unsigned minor)
{
	if (!w || minor > ALCM_FORMAT_MINOR)
		return ALCM_E_ARG;
	if (w->poisoned || w->committed)
		return ALCM_E_STATE;
	unsigned have = alcm_writer_minor(w);
	if (minor <= have)
		return ALCM_OK;
	/* An append cannot raise the version: both commit slots are bound to the fixed header,
	 * and a reader of the lower minor version would meet the new feature unannounced. */
	if (w->kind == W_APPEND)
		return wfail(w, ALCM_E_UNSUPPORTED, "the archive is format %u.%u; this needs format "
		             "%u.%u, which an append cannot raise", ALCM_FORMAT_MAJOR, have,
		             ALCM_FORMAT_MAJOR, minor);
	alcm_header_fixed_build(w->fixed, w->hflags, minor);
	return ALCM_OK;
}

void alcm_writer_fixed_header(const alcm_writer *w, uint8_t out[32])
{
	memcpy(out, w->fixed, 32);
}

int alcm_writer_appending(const alcm_writer *w)
{
	return w->kind == W_APPEND;
}
