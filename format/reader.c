/*
 * The container reader: every number read from the file is checked against the file size
 * and the limits before it is used (spec/alcm-format.md chapter 5, "conformance"), in the
 * order of 5.2, so that each malformed file gets the error class the spec gives it.
 */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct alcm_reader {
	alcm_allocator alloc;
	alcm_limits lim;
	int fd;
	int dfd;    /* the same file opened with O_DIRECT (-1: none) */
	size_t dio; /* its alignment of offsets and addresses (0: none) */
	const uint8_t *mem;
	uint64_t size;
	char *name;
	unsigned open_flags;
	unsigned major, minor;
	uint32_t hflags;
	uint8_t fixed[32];      /* header bytes 0..31, as checked */
	uint64_t generation;
	unsigned active_slot;
	uint64_t table_offset, table_size, tail;
	uint32_t count;
	alcm_entry *e;
	char detail[ALCM_DETAIL_MAX];
};

static int fail(alcm_reader *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(alcm_reader *r, int status, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_detail_set(r->detail, "%s: %s", r->name ? r->name : "<archive>", msg);
	return status;
}

int alcm_dio_read_force = 0;
uint64_t alcm_dio_reads = 0;

/* Reads len bytes at off, with O_DIRECT where the reader has it and buf agrees with off
 * modulo its alignment (alcm_reader_dio_shift): the whole blocks between go straight from the
 * disk into buf, the partial blocks at the two ends through the page cache. @return as
 * alcm_pread_all. */
static int direct_read(const alcm_reader *r, uint8_t *buf, size_t len, uint64_t off)
{
	uint64_t A = r->dfd >= 0 ? r->dio : 1, head = (A - off % A) % A;
	if (r->dfd < 0 || len < head + ALCM_DIO_READ_MIN || ((uintptr_t)buf + head) % A)
		return alcm_pread_all(r->fd, buf, len, off);
	size_t mid = (size_t)((len - head) / A * A); /* 0 only where A > ALCM_DIO_READ_MIN */
	int e = alcm_pread_all(r->fd, buf, (size_t)head, off);
	if (!e && (e = alcm_pread_all(r->dfd, buf + head, mid, off + head)) == EINVAL)
		e = alcm_pread_all(r->fd, buf + head, mid, off + head); /* refused after the open */
	if (!e) {
		__atomic_fetch_add(&alcm_dio_reads, 1, __ATOMIC_RELAXED);
		e = alcm_pread_all(r->fd, buf + head + mid, len - head - mid, off + head + mid);
	}
	return e;
}

int alcm_file_mostly_cached(int fd, uint64_t size)
{
	uint64_t pg = (uint64_t)getpagesize();
	void *m = size ? mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	if (m == MAP_FAILED)
		return 1;
	/* Windows of 8 pages at up to 128 places spread over the file: the whole file took 6-12
	 * ms for 705 MB (a page-cache lookup per page), 1024 pages take a few hundredths. */
	enum { WIN = 8, PLACES = 128 };
	unsigned char vec[WIN];
	uint64_t pages = (size + pg - 1) / pg, in = 0, seen = 0;
	uint64_t places = pages / WIN < PLACES ? (pages + WIN - 1) / WIN : PLACES;
	for (uint64_t i = 0; i < places; i++) {
		uint64_t p = i * (pages / places), n = pages - p < WIN ? pages - p : WIN;
		uint64_t len = p + n == pages ? size - p * pg : n * pg;
		memset(vec, 1, sizeof(vec)); /* a failed mincore counts as cached */
		(void)mincore((uint8_t *)m + p * pg, (size_t)len, vec);
		for (uint64_t k = 0; k < n; k++)
			in += vec[k] & 1;
		seen += n;
	}
	munmap(m, (size_t)size);
	return 2 * in >= seen;
}

/* Opens the file again with O_DIRECT for direct_read, if it is large and mostly not cached
 * (read through the page cache, each of its pages would be filled and then copied: on the
 * project's machine an unpack of a 705 MB archive not in the cache took up to 1.3 s of system
 * time, and 0.09-0.17 s when it was). Any failure leaves the reads as they were. */
static void dio_open(alcm_reader *r)
{
	const char *env = getenv("ALCM_DIRECT_IO");
	if ((env && strcmp(env, "0") == 0) ||
	    (!alcm_dio_read_force &&
	     (r->size < ALCM_DIO_FILE_MIN || alcm_file_mostly_cached(r->fd, r->size))))
		return;
	size_t align, mem_align;
	char path[48];
	if (alcm_dio_alignment(r->fd, &align, &mem_align))
		return;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", r->fd);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_DIRECT);
	struct stat a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0xff, sizeof(b)); /* a failed open or fstat leaves them apart */
	(void)fstat(r->fd, &a);
	(void)fstat(fd, &b);
	if ((a.st_dev != b.st_dev) | (a.st_ino != b.st_ino)) { /* not the same file */
		(void)close(fd);
		return;
	}
	r->dfd = fd;
	r->dio = align > mem_align ? align : mem_align;
	/* What is still read through the page cache (the ends of direct reads, tables, small
	 * sections) is read as asked, not ahead: the rest comes straight from the disk. */
	(void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_RANDOM);
}

size_t alcm_reader_dio_align(const alcm_reader *r)
{
	return r->dfd >= 0 ? r->dio : 0;
}

size_t alcm_reader_dio_shift(const alcm_reader *r, uint32_t i, uint64_t pos, const void *buf)
{
	if (r->dfd < 0 || i >= r->count)
		return 0;
	return (size_t)((r->e[i].offset + pos - (uint64_t)(uintptr_t)buf) & (r->dio - 1));
}

/* A read's outcome e (as alcm_pread_all's) at offset off, said. */
static int read_result(alcm_reader *r, int e, uint64_t off)
{
	if (e == -1)
		return fail(r, ALCM_E_IO, "file shrank while reading at offset %llu",
		            (unsigned long long)off);
	if (e)
		return fail(r, ALCM_E_IO, "read error at offset %llu: %s",
		            (unsigned long long)off, strerror(e));
	return ALCM_OK;
}

/* ---- reads started now and waited for later (a reading thread) ---- */

/* Linux AIO would need no thread, but each io_destroy waits for an RCU grace period: 31-32
 * ms a context on the project's machine, 63 ms at the end of every relay of two. */
typedef struct readq_item {
	uint8_t *dst;
	uint64_t off, seq;
	size_t len;
	int state; /* RQ_FREE, RQ_QUEUED, RQ_READING, RQ_DONE */
	int err;   /* as alcm_pread_all */
} readq_item;

enum { RQ_FREE, RQ_QUEUED, RQ_READING, RQ_DONE };

struct alcm_readq {
	alcm_reader *r;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned depth;
	uint64_t seq;
	int quit;
	pid_t pid; /* the process whose thread reads (after a fork, the child reads itself) */
	readq_item *q;
};

/* The reading thread: the queued reads in the order they were started. */
static void *readq_main(void *arg)
{
	alcm_readq *q = arg;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		readq_item *it = NULL;
		for (unsigned i = 0; i < q->depth; i++)
			if (q->q[i].state == RQ_QUEUED && (!it || q->q[i].seq < it->seq))
				it = &q->q[i];
		if (q->quit)
			break;
		if (!it) {
			pthread_cond_wait(&q->cv, &q->mu);
			continue;
		}
		it->state = RQ_READING;
		pthread_mutex_unlock(&q->mu);
		int e = direct_read(q->r, it->dst, it->len, it->off);
		pthread_mutex_lock(&q->mu);
		it->err = e;
		it->state = RQ_DONE;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

int alcm_readq_new(alcm_readq **out, alcm_reader *r, unsigned depth)
{
	*out = NULL;
	if (r->fd < 0)
		return ALCM_E_UNSUPPORTED;
	alcm_readq *q = alcm_mem_calloc(&r->alloc, 1, sizeof(*q));
	readq_item *items = alcm_mem_calloc(&r->alloc, depth, sizeof(*items));
	if (!q || !items) {
		alcm_mem_free(&r->alloc, items);
		alcm_mem_free(&r->alloc, q);
		return ALCM_E_NOMEM;
	}
	q->r = r;
	q->depth = depth;
	q->pid = getpid();
	q->q = items;
	/* with default attributes these two cannot fail (glibc) */
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	if (pthread_create(&q->th, NULL, readq_main, q)) {
		pthread_cond_destroy(&q->cv);
		pthread_mutex_destroy(&q->mu);
		alcm_mem_free(&r->alloc, items);
		alcm_mem_free(&r->alloc, q);
		return ALCM_E_NOMEM;
	}
	*out = q;
	return ALCM_OK;
}

int alcm_readq_start(alcm_readq *q, uint32_t i, uint64_t pos, void *buf, size_t len,
                     unsigned *ticket)
{
	alcm_reader *r = q->r;
	uint64_t end;
	if (i >= r->count || alcm_add_u64(pos, len, &end) || end > r->e[i].length || !len)
		return ALCM_E_ARG;
	/* A child of fork() has no reading thread, and maybe a lock held for ever: it reads
	 * now, alone, without the lock (a Python data loader forks beside open archives). */
	int forked = getpid() != q->pid;
	if (!forked)
		pthread_mutex_lock(&q->mu);
	unsigned slot = 0;
	while (slot < q->depth && q->q[slot].state != RQ_FREE)
		slot++;
	if (slot < q->depth) {
		readq_item *it = &q->q[slot];
		it->dst = buf;
		it->off = r->e[i].offset + pos;
		it->len = len;
		it->seq = q->seq++;
		it->err = 0;
		it->state = forked ? RQ_DONE : RQ_QUEUED;
		*ticket = slot;
		if (forked)
			it->err = direct_read(r, it->dst, it->len, it->off);
		else
			pthread_cond_broadcast(&q->cv);
	}
	if (!forked)
		pthread_mutex_unlock(&q->mu);
	return slot < q->depth ? ALCM_OK : ALCM_E_ARG;
}

int alcm_readq_wait(alcm_readq *q, unsigned ticket)
{
	readq_item *it = &q->q[ticket];
	/* In a child of fork() the read was done by alcm_readq_start: a caller waits only for
	 * its own reads, and the caller that forked had none in flight (every call that starts
	 * reads waits for them before it returns). */
	int forked = getpid() != q->pid;
	if (!forked) {
		pthread_mutex_lock(&q->mu);
		while (it->state != RQ_DONE)
			pthread_cond_wait(&q->cv, &q->mu);
	}
	int e = it->err;
	it->state = RQ_FREE;
	if (!forked)
		pthread_mutex_unlock(&q->mu);
	return read_result(q->r, e, it->off);
}

void alcm_readq_free(alcm_readq *q)
{
	if (!q)
		return;
	/* A read under way ends before the join; the queued ones are dropped. In a child of
	 * fork() there is no thread to stop (and the lock may be held): only memory to free. */
	if (getpid() == q->pid) {
		pthread_mutex_lock(&q->mu);
		q->quit = 1;
		pthread_cond_broadcast(&q->cv);
		pthread_mutex_unlock(&q->mu);
		pthread_join(q->th, NULL);
		pthread_cond_destroy(&q->cv);
		pthread_mutex_destroy(&q->mu);
	}
	alcm_reader *r = q->r;
	alcm_mem_free(&r->alloc, q->q);
	alcm_mem_free(&r->alloc, q);
}

static int src_read(alcm_reader *r, uint64_t off, void *buf, size_t len)
{
	uint64_t end;
	if (alcm_add_u64(off, len, &end) || end > r->size)
		return fail(r, ALCM_E_CORRUPT, "read of %zu bytes at offset %llu past end of file",
		            len, (unsigned long long)off);
	if (len == 0)
		return ALCM_OK; /* out may be NULL for an empty section */
	if (r->mem) {
		memcpy(buf, r->mem + off, len);
		return ALCM_OK;
	}
	return read_result(r, direct_read(r, buf, len, off), off);
}

/*
 * Text-mode transfers rewrite CR LF or LF, and 7-bit links clear bit 7: the signature's
 * bytes 0 and 5..8 tell which damage happened, so that the message can say it.
 */
static int check_signature(alcm_reader *r, const uint8_t *h, uint64_t avail)
{
	static const uint8_t crlf_to_lf[] = {0x89, 'A', 'L', 'C', 'M', 0x0a, 0x1a};
	static const uint8_t lf_to_crlf[] = {0x89, 'A', 'L', 'C', 'M', 0x0d, 0x0d, 0x0a};
	if (avail >= ALCM_SIGNATURE_LEN && memcmp(h, alcm_signature, ALCM_SIGNATURE_LEN) == 0)
		return ALCM_OK;
	if (avail == 0)
		return fail(r, ALCM_E_CORRUPT, "empty file (not an .alcm file)");
	if (avail < ALCM_SIGNATURE_LEN && memcmp(h, alcm_signature, (size_t)avail) == 0)
		return fail(r, ALCM_E_CORRUPT, "file of %llu bytes is truncated inside the signature",
		            (unsigned long long)avail);
	if (avail >= 5 && h[0] == 0x09 && memcmp(h + 1, "ALCM", 4) == 0)
		return fail(r, ALCM_E_CORRUPT, "bad signature at offset 0: the high bit of byte 0 "
		            "was stripped (7-bit transfer)");
	if (avail >= sizeof(crlf_to_lf) && memcmp(h, crlf_to_lf, sizeof(crlf_to_lf)) == 0)
		return fail(r, ALCM_E_CORRUPT, "bad signature at offset 5: CR LF became LF "
		            "(file transferred in text mode)");
	if (avail >= sizeof(lf_to_crlf) && memcmp(h, lf_to_crlf, sizeof(lf_to_crlf)) == 0)
		return fail(r, ALCM_E_CORRUPT, "bad signature at offset 5: LF became CR LF "
		            "(file transferred in text mode)");
	if (avail >= ALCM_SIGNATURE_LEN && memcmp(h, alcm_signature, 8) == 0 && h[8] == 0x0d)
		return fail(r, ALCM_E_CORRUPT, "bad signature at offset 8: LF became CR LF "
		            "(file transferred in text mode)");
	return fail(r, ALCM_E_CORRUPT, "not an .alcm file (bad signature at offset 0)");
}

static int parse_fixed(alcm_reader *r, const uint8_t *h)
{
	uint8_t d[ALCM_DIGEST_LEN];
	r->major = h[9];
	r->minor = alcm_load16(h + 10);
	if (r->major != ALCM_FORMAT_MAJOR)
		return fail(r, ALCM_E_UNSUPPORTED, "format version %u.%u at offset 9 is not "
		            "supported (this reader knows %u.x)", r->major, r->minor,
		            ALCM_FORMAT_MAJOR);
	alcm_digest(d, h, 32);
	if (alcm_digest_differs(d, h + 32))
		return fail(r, ALCM_E_DIGEST, "header digest mismatch at offset 32");
	r->hflags = alcm_load32(h + 12);
	if (r->hflags & ~ALCM_KNOWN_HEADER_FLAGS)
		return fail(r, ALCM_E_CORRUPT, "reserved header flag bits 0x%08x set at offset 12",
		            r->hflags & ~ALCM_KNOWN_HEADER_FLAGS);
	if (alcm_load32(h + 16) != ALCM_HEADER_SIZE)
		return fail(r, ALCM_E_CORRUPT, "header size %u at offset 16 is not %u",
		            alcm_load32(h + 16), ALCM_HEADER_SIZE);
	if (h[20] != ALCM_ALIGN_LOG2)
		return fail(r, ALCM_E_CORRUPT, "alignment log2 %u at offset 20 is not %u", h[20],
		            ALCM_ALIGN_LOG2);
	for (int i = 21; i < 32; i++)
		if (h[i])
			return fail(r, ALCM_E_CORRUPT, "reserved header byte at offset %d is not zero", i);
	memcpy(r->fixed, h, 32);
	return ALCM_OK;
}

enum { SLOT_EMPTY, SLOT_VALID, SLOT_TORN, SLOT_BAD };

/*
 * A digest mismatch is what a torn write leaves (SLOT_TORN); a slot whose digest matches
 * but whose fields break the rules was written that way (SLOT_BAD), which is corruption.
 */
static int slot_state(const uint8_t *fixed, const uint8_t *s)
{
	uint8_t buf[ALCM_FIXED_SIZE + 32], d[ALCM_DIGEST_LEN];
	int zero = 1;
	for (unsigned i = 0; i < ALCM_SLOT_SIZE; i++)
		zero &= s[i] == 0;
	if (zero)
		return SLOT_EMPTY;
	memcpy(buf, fixed, ALCM_FIXED_SIZE);
	memcpy(buf + ALCM_FIXED_SIZE, s, 32);
	alcm_digest(d, buf, sizeof(buf));
	if (alcm_digest_differs(d, s + 32))
		return SLOT_TORN;
	if (alcm_load64(s) == 0 || alcm_load64(s + 24) != 0)
		return SLOT_BAD;
	return SLOT_VALID;
}

static int slot_bad(alcm_reader *r, const uint8_t *h, unsigned off)
{
	if (alcm_load64(h + off) == 0)
		return fail(r, ALCM_E_CORRUPT, "commit slot at offset %u has generation 0", off);
	return fail(r, ALCM_E_CORRUPT, "reserved field of commit slot at offset %u is not zero",
	            off + 24);
}

/* Chooses the commit slot to read (spec 5.2 step 6): *soff receives its offset. */
static int choose_slot(alcm_reader *r, const uint8_t *h, unsigned *soff)
{
	int a = slot_state(h, h + ALCM_SLOT_A), b = slot_state(h, h + ALCM_SLOT_B);
	if (!(r->hflags & ALCM_FLAG_STREAM)) {
		if (b != SLOT_EMPTY)
			return fail(r, ALCM_E_CORRUPT, "commit slot B at offset %u is not empty in a "
			            "non-stream archive", ALCM_SLOT_B);
		if (a == SLOT_TORN)
			return fail(r, ALCM_E_DIGEST, "commit slot A at offset %u: digest mismatch",
			            ALCM_SLOT_A);
	}
	if (a == SLOT_BAD)
		return slot_bad(r, h, ALCM_SLOT_A);
	if (b == SLOT_BAD)
		return slot_bad(r, h, ALCM_SLOT_B);
	if (a == SLOT_VALID && b == SLOT_VALID) {
		uint64_t ga = alcm_load64(h + ALCM_SLOT_A), gb = alcm_load64(h + ALCM_SLOT_B);
		if (ga == gb)
			return fail(r, ALCM_E_CORRUPT, "both commit slots claim generation %llu",
			            (unsigned long long)ga);
		*soff = ga > gb ? ALCM_SLOT_A : ALCM_SLOT_B;
		return ALCM_OK;
	}
	if (a == SLOT_VALID || b == SLOT_VALID) {
		*soff = a == SLOT_VALID ? ALCM_SLOT_A : ALCM_SLOT_B;
		return ALCM_OK;
	}
	if (a == SLOT_TORN || b == SLOT_TORN)
		return fail(r, ALCM_E_DIGEST, "no valid commit slot: digest mismatch in slot %s at "
		            "offset %u", a == SLOT_TORN ? "A" : "B",
		            a == SLOT_TORN ? ALCM_SLOT_A : ALCM_SLOT_B);
	return fail(r, ALCM_E_CORRUPT, "no committed table (commit slots empty): the archive was "
	            "never finished");
}

static int pick_slot(alcm_reader *r, const uint8_t *h)
{
	unsigned soff = 0;
	int st = choose_slot(r, h, &soff);
	if (st)
		return st;
	const uint8_t *s = h + soff;
	r->active_slot = soff;
	r->generation = alcm_load64(s);
	r->table_offset = alcm_load64(s + 8);
	r->table_size = alcm_load64(s + 16);
	uint64_t end;
	if (r->table_offset < ALCM_HEADER_SIZE || r->table_offset % ALCM_ALIGN)
		return fail(r, ALCM_E_CORRUPT, "table offset %llu in slot at offset %u is not an "
		            "aligned offset after the header", (unsigned long long)r->table_offset,
		            soff);
	if (r->table_size < alcm_table_size(0) ||
	    (r->table_size - alcm_table_size(0)) % ALCM_TABLE_ENTRY)
		return fail(r, ALCM_E_CORRUPT, "table size %llu in slot at offset %u is not "
		            "48 + 64 * count", (unsigned long long)r->table_size, soff);
	/* Against the file first: a LIMIT error then always means the bytes are really there. */
	if (alcm_add_u64(r->table_offset, r->table_size, &end) || end > r->size)
		return fail(r, ALCM_E_CORRUPT, "table [%llu, +%llu) in slot at offset %u runs past "
		            "the end of the file (%llu bytes)", (unsigned long long)r->table_offset,
		            (unsigned long long)r->table_size, soff, (unsigned long long)r->size);
	r->tail = r->size - end;
	if (r->tail && !(r->hflags & ALCM_FLAG_STREAM))
		return fail(r, ALCM_E_CORRUPT, "%llu trailing bytes after the table at offset %llu",
		            (unsigned long long)r->tail, (unsigned long long)end);
	if ((r->table_size - alcm_table_size(0)) / ALCM_TABLE_ENTRY > r->lim.max_sections)
		return fail(r, ALCM_E_LIMIT, "table of %llu sections (slot at offset %u) exceeds the "
		            "limit of %u sections",
		            (unsigned long long)((r->table_size - alcm_table_size(0)) / ALCM_TABLE_ENTRY),
		            soff, r->lim.max_sections);
	return ALCM_OK;
}

static int check_entry(alcm_reader *r, const alcm_entry *e, uint32_t i, uint64_t expect)
{
	char t[5] = {e->type[0], e->type[1], e->type[2], e->type[3], 0};
	uint64_t eoff = r->table_offset + ALCM_TABLE_HEAD + (uint64_t)i * ALCM_TABLE_ENTRY;
	uint64_t end;
	if (!alcm_section_type_valid(e->type))
		return fail(r, ALCM_E_CORRUPT, "section %u: type is not 4 printable characters "
		            "(table entry at offset %llu)", i, (unsigned long long)eoff);
	if (e->flags & ~ALCM_KNOWN_FLAGS)
		return fail(r, ALCM_E_CORRUPT, "section %u (%s): reserved flag bits 0x%08x set at "
		            "offset %llu", i, t, e->flags & ~ALCM_KNOWN_FLAGS,
		            (unsigned long long)eoff + 4);
	if (e->offset != expect)
		return fail(r, ALCM_E_CORRUPT, "section %u (%s): offset %llu at offset %llu, "
		            "expected %llu (sections are packed in order at 64-byte alignment)", i,
		            t, (unsigned long long)e->offset, (unsigned long long)eoff + 16,
		            (unsigned long long)expect);
	if (alcm_add_u64(e->offset, e->length, &end))
		return fail(r, ALCM_E_CORRUPT, "section %u (%s): length %llu at offset %llu wraps "
		            "past 2^64", i, t, (unsigned long long)e->length,
		            (unsigned long long)eoff + 24);
	if (end > r->table_offset)
		return fail(r, ALCM_E_CORRUPT, "section %u (%s): length %llu at offset %llu runs "
		            "into the table at offset %llu", i, t, (unsigned long long)e->length,
		            (unsigned long long)eoff + 24, (unsigned long long)r->table_offset);
	if (e->length > r->lim.max_section_bytes)
		return fail(r, ALCM_E_LIMIT, "section %u (%s): length %llu at offset %llu exceeds "
		            "the limit of %llu bytes", i, t, (unsigned long long)e->length,
		            (unsigned long long)eoff + 24,
		            (unsigned long long)r->lim.max_section_bytes);
	if ((e->flags & ALCM_SECTION_CRITICAL) && !alcm_section_type_known(e->type))
		return fail(r, ALCM_E_UNSUPPORTED, "section %u: unknown critical section type '%s' "
		            "at offset %llu", i, t, (unsigned long long)e->offset);
	return ALCM_OK;
}

static int parse_table(alcm_reader *r)
{
	size_t n = (size_t)r->table_size;
	uint8_t d[ALCM_DIGEST_LEN];
	uint8_t *t = alcm_mem_alloc(&r->alloc, n);
	if (!t)
		return fail(r, ALCM_E_NOMEM, "cannot allocate %zu bytes for the table", n);
	int st = src_read(r, r->table_offset, t, n);
	if (st)
		goto out;
	alcm_digest(d, t, n - ALCM_DIGEST_LEN);
	if (alcm_digest_differs(d, t + n - ALCM_DIGEST_LEN)) {
		st = fail(r, ALCM_E_DIGEST, "table digest mismatch at offset %llu",
		          (unsigned long long)(r->table_offset + n - ALCM_DIGEST_LEN));
		goto out;
	}
	if (memcmp(t, ALCM_TABLE_MAGIC, 4) != 0 || alcm_load64(t + 8) != 0) {
		st = fail(r, ALCM_E_CORRUPT, "bad table head at offset %llu",
		          (unsigned long long)r->table_offset);
		goto out;
	}
	r->count = alcm_load32(t + 4);
	if ((uint64_t)r->count * ALCM_TABLE_ENTRY + alcm_table_size(0) != r->table_size) {
		st = fail(r, ALCM_E_CORRUPT, "table count %u at offset %llu disagrees with its "
		          "size %llu", r->count, (unsigned long long)r->table_offset + 4,
		          (unsigned long long)r->table_size);
		goto out;
	}
	r->e = alcm_mem_calloc(&r->alloc, r->count ? r->count : 1, sizeof(alcm_entry));
	if (!r->e) {
		st = fail(r, ALCM_E_NOMEM, "cannot allocate %u table entries", r->count);
		goto out;
	}
	uint64_t expect = ALCM_HEADER_SIZE;
	for (uint32_t i = 0; i < r->count; i++) {
		const uint8_t *p = t + ALCM_TABLE_HEAD + (size_t)i * ALCM_TABLE_ENTRY;
		alcm_entry *e = &r->e[i];
		memcpy(e->type, p, 4);
		e->flags = alcm_load32(p + 4);
		e->tag = alcm_load32(p + 8);
		e->offset = alcm_load64(p + 16);
		e->length = alcm_load64(p + 24);
		memcpy(e->digest, p + 32, ALCM_DIGEST_LEN);
		if (alcm_load32(p + 12) != 0) {
			st = fail(r, ALCM_E_CORRUPT, "section %u: reserved field at offset %llu is not "
			          "zero", i, (unsigned long long)(r->table_offset + (uint64_t)(p - t) + 12));
			goto out;
		}
		if ((st = check_entry(r, e, i, expect)))
			goto out;
		expect = alcm_align_up(e->offset + e->length);
	}
	if (expect != r->table_offset)
		st = fail(r, ALCM_E_CORRUPT, "table at offset %llu does not follow the last section "
		          "(expected offset %llu)", (unsigned long long)r->table_offset,
		          (unsigned long long)expect);
out:
	alcm_mem_free(&r->alloc, t);
	return st;
}

static int reader_new(alcm_reader **out, const char *name, const alcm_limits *lim,
                      const alcm_allocator *alloc, unsigned flags)
{
	alcm_allocator a;
	alcm_alloc_copy(&a, alloc);
	*out = NULL;
	alcm_reader *r = alcm_mem_calloc(&a, 1, sizeof(*r));
	if (!r)
		return ALCM_E_NOMEM;
	r->alloc = a;
	r->fd = -1;
	r->dfd = -1;
	r->open_flags = flags;
	if (lim)
		r->lim = *lim;
	else
		alcm_limits_default(&r->lim);
	size_t n = strlen(name) + 1;
	r->name = alcm_mem_alloc(&a, n);
	if (!r->name) {
		alcm_mem_free(&a, r);
		return ALCM_E_NOMEM;
	}
	memcpy(r->name, name, n);
	*out = r;
	return ALCM_OK;
}

static int refresh_size(alcm_reader *r)
{
	struct stat sb;
	if (fstat(r->fd, &sb) != 0)
		return fail(r, ALCM_E_IO, "cannot stat: %s", strerror(errno));
	if ((uint64_t)sb.st_size > r->size)
		r->size = (uint64_t)sb.st_size;
	return ALCM_OK;
}

static int reader_parse(alcm_reader *r)
{
	uint8_t h[ALCM_HEADER_SIZE];
	uint64_t avail = r->size < ALCM_HEADER_SIZE ? r->size : ALCM_HEADER_SIZE;
	int st = src_read(r, 0, h, (size_t)avail);
	if (st)
		return st;
	if ((st = check_signature(r, h, avail)))
		return st;
	/* An append may have committed since the open (readers take no lock, spec 7.2): its
	 * table and sections reach the disk before its slot does, so the size taken after
	 * the header is read covers whatever table either slot names. */
	if (!r->mem && (st = refresh_size(r)))
		return st;
	if (r->size < ALCM_HEADER_SIZE + alcm_table_size(0))
		return fail(r, ALCM_E_CORRUPT, "file of %llu bytes is shorter than the smallest "
		            "archive (%llu bytes)", (unsigned long long)r->size,
		            (unsigned long long)(ALCM_HEADER_SIZE + alcm_table_size(0)));
	if ((st = parse_fixed(r, h)) || (st = pick_slot(r, h)) || (st = parse_table(r))) {
		/* A reader that failed to open keeps only its detail line: no half-checked table. */
		alcm_mem_free(&r->alloc, r->e);
		r->e = NULL;
		r->count = 0;
	}
	return st;
}

int alcm_reader_open_file(alcm_reader **out, const char *path, const alcm_limits *lim,
                          const alcm_allocator *alloc, unsigned flags)
{
	if (!out || !path)
		return ALCM_E_ARG;
	int st = reader_new(out, path, lim, alloc, flags);
	if (st)
		return st;
	alcm_reader *r = *out;
	/* O_NONBLOCK: a FIFO must not hang the open; it is refused as not a regular file. */
	r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (r->fd < 0)
		return fail(r, ALCM_E_IO, "cannot open: %s", strerror(errno));
	struct stat sb;
	if (fstat(r->fd, &sb) != 0)
		return fail(r, ALCM_E_IO, "cannot stat: %s", strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return fail(r, ALCM_E_IO, "not a regular file");
	r->size = (uint64_t)sb.st_size;
	if ((st = reader_parse(r)) == ALCM_OK)
		dio_open(r);
	return st;
}

int alcm_reader_open_fd(alcm_reader **out, int fd, const char *name, const alcm_limits *lim,
                        const alcm_allocator *alloc, unsigned flags)
{
	if (!out || !name || fd < 0)
		return ALCM_E_ARG;
	int st = reader_new(out, name, lim, alloc, flags);
	if (st)
		return st;
	alcm_reader *r = *out;
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (r->fd < 0)
		return fail(r, ALCM_E_IO, "cannot open: %s", strerror(errno));
	struct stat sb;
	if (fstat(r->fd, &sb) != 0)
		return fail(r, ALCM_E_IO, "cannot stat: %s", strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return fail(r, ALCM_E_IO, "not a regular file");
	r->size = (uint64_t)sb.st_size;
	if ((st = reader_parse(r)) == ALCM_OK)
		dio_open(r);
	return st;
}

int alcm_reader_open_memory(alcm_reader **out, const void *buf, size_t len,
                            const char *display_name, const alcm_limits *lim,
                            const alcm_allocator *alloc, unsigned flags)
{
	if (!out || (!buf && len))
		return ALCM_E_ARG;
	int st = reader_new(out, display_name ? display_name : "<memory>", lim, alloc, flags);
	if (st)
		return st;
	(*out)->mem = buf ? buf : (const uint8_t *)"";
	(*out)->size = len;
	return reader_parse(*out);
}

void alcm_reader_free(alcm_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	if (r->dfd >= 0)
		close(r->dfd);
	alcm_allocator a = r->alloc;
	alcm_mem_free(&a, r->e);
	alcm_mem_free(&a, r->name);
	alcm_mem_free(&a, r);
}

const char *alcm_reader_detail(const alcm_reader *r)
{
	return r ? r->detail : "";
}

void alcm_reader_version(const alcm_reader *r, unsigned *major, unsigned *minor)
{
	if (major)
		*major = r ? r->major : 0;
	if (minor)
		*minor = r ? r->minor : 0;
}

uint32_t alcm_reader_flags(const alcm_reader *r)
{
	return r ? r->hflags : 0;
}
uint64_t alcm_reader_tail_bytes(const alcm_reader *r)
{
	return r ? r->tail : 0;
}
uint64_t alcm_reader_generation(const alcm_reader *r)
{
	return r ? r->generation : 0;
}
uint64_t alcm_reader_file_size(const alcm_reader *r)
{
	return r ? r->size : 0;
}
uint32_t alcm_reader_section_count(const alcm_reader *r)
{
	return r && r->e ? r->count : 0;
}

int alcm_reader_section_info(const alcm_reader *r, uint32_t i, alcm_section_info *info)
{
	if (!r || !info || !r->e || i >= r->count)
		return ALCM_E_ARG;
	const alcm_entry *e = &r->e[i];
	memcpy(info->type, e->type, 4);
	info->type[4] = '\0';
	info->flags = e->flags;
	info->tag = e->tag;
	info->offset = e->offset;
	info->length = e->length;
	memcpy(info->digest, e->digest, ALCM_DIGEST_LEN);
	info->digest_state = e->state;
	info->known = alcm_section_type_known(e->type);
	return ALCM_OK;
}

int alcm_reader_find_section(const alcm_reader *r, const char *type, uint32_t start,
                             uint32_t *index)
{
	if (!r || !type || !r->e)
		return ALCM_E_ARG;
	for (uint32_t i = start; i < r->count; i++)
		if (memcmp(r->e[i].type, type, 4) == 0) {
			if (index)
				*index = i;
			return ALCM_OK;
		}
	return ALCM_E_NOTFOUND;
}

static int digest_result(alcm_reader *r, uint32_t i, const uint8_t *d)
{
	alcm_entry *e = &r->e[i];
	if (alcm_digest_differs(d, e->digest)) {
		e->state = ALCM_DIGEST_BAD;
		char t[5] = {e->type[0], e->type[1], e->type[2], e->type[3], 0};
		return fail(r, ALCM_E_DIGEST, "digest mismatch in section %u (%s) at offset %llu", i,
		            t, (unsigned long long)e->offset);
	}
	e->state = ALCM_DIGEST_OK;
	return ALCM_OK;
}

int alcm_reader_section_read(alcm_reader *r, uint32_t i, void *out, size_t cap)
{
	if (!r || !r->e || i >= r->count || (!out && r->e[i].length))
		return ALCM_E_ARG;
	alcm_entry *e = &r->e[i];
	if (e->length > cap)
		return ALCM_E_ARG;
	int st = src_read(r, e->offset, out, (size_t)e->length);
	if (st || (r->open_flags & ALCM_READ_NO_VERIFY))
		return st;
	uint8_t d[ALCM_DIGEST_LEN];
	alcm_digest(d, out, (size_t)e->length);
	return digest_result(r, i, d);
}

int alcm_reader_section_pread(alcm_reader *r, uint32_t i, uint64_t pos, void *out, size_t len)
{
	uint64_t end;
	if (!r || !r->e || i >= r->count || alcm_add_u64(pos, len, &end) ||
	    end > r->e[i].length || (!out && len))
		return ALCM_E_ARG;
	return src_read(r, r->e[i].offset + pos, out, len);
}

#define VERIFY_BUF ((size_t)1 << 20)

int alcm_reader_verify_section(alcm_reader *r, uint32_t i)
{
	if (!r || !r->e || i >= r->count)
		return ALCM_E_ARG;
	alcm_entry *e = &r->e[i];
	alcm_blake2b hs;
	uint8_t d[ALCM_DIGEST_LEN];
	alcm_blake2b_init(&hs, ALCM_DIGEST_LEN);
	if (r->mem) {
		alcm_blake2b_update(&hs, r->mem + e->offset, e->length);
	} else {
		size_t bn = e->length < VERIFY_BUF ? (size_t)e->length : VERIFY_BUF;
		uint8_t *buf = alcm_mem_alloc(&r->alloc, bn);
		if (!buf)
			return fail(r, ALCM_E_NOMEM, "cannot allocate a verify buffer");
		for (uint64_t pos = 0; pos < e->length;) {
			size_t n = e->length - pos < bn ? (size_t)(e->length - pos) : bn;
			int st = src_read(r, e->offset + pos, buf, n);
			if (st) {
				alcm_mem_free(&r->alloc, buf);
				return st;
			}
			alcm_blake2b_update(&hs, buf, n);
			pos += n;
		}
		alcm_mem_free(&r->alloc, buf);
	}
	alcm_blake2b_final(&hs, d);
	return digest_result(r, i, d);
}

static int check_zero(alcm_reader *r, uint64_t from, uint64_t to)
{
	uint8_t buf[ALCM_ALIGN];
	if (to <= from)
		return ALCM_OK;
	int st = src_read(r, from, buf, (size_t)(to - from));
	if (st)
		return st;
	for (uint64_t k = 0; k < to - from; k++)
		if (buf[k])
			return fail(r, ALCM_E_CORRUPT, "non-zero padding byte at offset %llu",
			            (unsigned long long)(from + k));
	return ALCM_OK;
}

int alcm_reader_verify(alcm_reader *r, uint32_t *bad)
{
	if (bad)
		*bad = UINT32_MAX;
	if (!r || !r->e)
		return ALCM_E_STATE;
	for (uint32_t i = 0; i < r->count; i++) {
		int st = alcm_reader_verify_section(r, i);
		if (st) {
			if (bad)
				*bad = i;
			return st;
		}
		uint64_t end = r->e[i].offset + r->e[i].length;
		if ((st = check_zero(r, end, alcm_align_up(end))))
			return st;
	}
	return ALCM_OK;
}

const uint8_t *alcm_reader_section_data(const alcm_reader *r, uint32_t i)
{
	if (!r || !r->mem || !r->e || i >= r->count)
		return NULL;
	return r->mem + r->e[i].offset;
}

void alcm_reader_committed(const alcm_reader *r, const alcm_entry **e, uint32_t *count,
                           uint64_t *table_offset, uint64_t *table_size, uint64_t *generation,
                           unsigned *active_slot)
{
	*e = r->e;
	*count = r->count;
	*table_offset = r->table_offset;
	*table_size = r->table_size;
	*generation = r->generation;
	*active_slot = r->active_slot;
}

/* For the codec layer, which decodes under the limits and flags the caller chose. */
void alcm_reader_limits(const alcm_reader *r, alcm_limits *lim)
{
	*lim = r->lim;
}

unsigned alcm_reader_open_flags(const alcm_reader *r)
{
	return r->open_flags;
}

void alcm_reader_fixed_header(const alcm_reader *r, uint8_t out[32])
{
	memcpy(out, r->fixed, 32);
}
