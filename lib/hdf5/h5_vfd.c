/*
 * A libhdf5 file driver that writes to a descriptor the bridge owns: the unnamed temporary
 * file of an atomic output (O_TMPFILE has no path for libhdf5 to open). It also keeps
 * H5Fclose() from failing after a write error: libhdf5 1.10 frees a file whose close failed
 * but keeps its id, and its exit handler then closes it again (a crash on a full disk). After
 * the first error, and when the output is abandoned, writes and truncations succeed without
 * touching the file, which is never published.
 */
#include "h5_hdf5.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<H5FDdevelop.h>)
#include <H5FDdevelop.h>
#endif
#endif

typedef struct sink_info {
	ah5_sink *sink;
} sink_info;

typedef struct sink_file {
	H5FD_t pub; /* first: libhdf5 sees a sink_file as an H5FD_t */
	ah5_sink *s;
	haddr_t eoa, eof;
} sink_file;

#define SINK_MAXADDR (((haddr_t)1 << (8 * sizeof(off_t) - 1)) - 1)

static H5FD_t *sink_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
	(void)name, (void)maxaddr;
	const sink_info *fi = H5Pget_driver_info(fapl);
	if (!fi || !fi->sink || fi->sink->fd < 0)
		return NULL;
	struct stat sb;
	if (fstat(fi->sink->fd, &sb) != 0)
		return NULL;
	if ((flags & H5F_ACC_TRUNC) && sb.st_size > 0) {
		if (ftruncate(fi->sink->fd, 0) != 0)
			return NULL;
		sb.st_size = 0;
	}
	sink_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->s = fi->sink;
	f->eof = (haddr_t)sb.st_size;
	return &f->pub;
}

static herr_t sink_close(H5FD_t *file)
{
	free(file); /* the descriptor belongs to the atomic output */
	return 0;
}

static int sink_cmp(const H5FD_t *a, const H5FD_t *b)
{
	const sink_file *x = (const sink_file *)a, *y = (const sink_file *)b;
	return x->s < y->s ? -1 : x->s > y->s;
}

static herr_t sink_query(const H5FD_t *file, unsigned long *flags)
{
	(void)file;
	/* The sec2 driver's allocation strategy, so the same file bytes. Not its
	 * POSIX_COMPAT_HANDLE: libhdf5 would then lstat() the name, and there is none. */
	*flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA |
	         H5FD_FEAT_DATA_SIEVE | H5FD_FEAT_AGGREGATE_SMALLDATA;
#ifdef H5FD_FEAT_DEFAULT_VFD_COMPATIBLE
	*flags |= H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
#endif
	return 0;
}

static haddr_t sink_get_eoa(const H5FD_t *file, H5FD_mem_t type)
{
	(void)type;
	return ((const sink_file *)file)->eoa;
}

static herr_t sink_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
	(void)type;
	((sink_file *)file)->eoa = addr;
	return 0;
}

static haddr_t sink_get_eof(const H5FD_t *file, H5FD_mem_t type)
{
	(void)type;
	return ((const sink_file *)file)->eof;
}

static herr_t sink_get_handle(H5FD_t *file, hid_t fapl, void **handle)
{
	(void)fapl;
	if (!handle)
		return -1;
	*handle = &((sink_file *)file)->s->fd;
	return 0;
}

static int bad_range(haddr_t addr, size_t size)
{
	return addr == HADDR_UNDEF || addr > SINK_MAXADDR || size > SINK_MAXADDR ||
	       addr + size > SINK_MAXADDR;
}

static herr_t sink_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                        void *buf)
{
	(void)type, (void)dxpl;
	sink_file *f = (sink_file *)file;
	if (bad_range(addr, size))
		return -1;
	uint8_t *p = buf;
	while (size && addr < f->eof) {
		size_t n = size;
		if ((haddr_t)n > f->eof - addr)
			n = (size_t)(f->eof - addr);
		ssize_t r = pread(f->s->fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n,
		                  (off_t)addr);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break; /* past the real end: zeros, as the sec2 driver gives */
		p += r;
		addr += (haddr_t)r;
		size -= (size_t)r;
	}
	memset(p, 0, size);
	return 0;
}

/* A failure is kept in the sink; the caller is told only when it may still stop cleanly. */
static herr_t sink_failed(sink_file *f, int e)
{
	f->s->err = e ? e : EIO;
	return f->s->lenient ? 0 : -1;
}

static herr_t sink_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                         const void *buf)
{
	(void)type, (void)dxpl;
	sink_file *f = (sink_file *)file;
	if (bad_range(addr, size))
		return -1;
	if (f->s->discard || f->s->err)
		return 0;
	int e = alcm_pwrite_all(f->s->fd, buf, size, addr);
	if (e)
		return sink_failed(f, e);
	if (addr + size > f->eof)
		f->eof = addr + size;
	return 0;
}

static herr_t sink_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing)
{
	(void)dxpl, (void)closing;
	sink_file *f = (sink_file *)file;
	if (f->s->discard || f->s->err || f->eoa == f->eof)
		return 0;
	if (ftruncate(f->s->fd, (off_t)f->eoa) != 0)
		return sink_failed(f, errno);
	f->eof = f->eoa;
	return 0;
}

static herr_t sink_lock(H5FD_t *file, hbool_t rw)
{
	(void)file, (void)rw;
	return 0; /* an unnamed file nobody else can open */
}

static herr_t sink_unlock(H5FD_t *file)
{
	(void)file;
	return 0;
}

static const H5FD_class_t sink_class = {
#ifdef H5FD_CLASS_VERSION
	.version = H5FD_CLASS_VERSION,
	.value = (H5FD_class_value_t)511, /* the private-testing range */
#endif
	.name = "alcm-sink",
	.maxaddr = SINK_MAXADDR,
	.fc_degree = H5F_CLOSE_WEAK,
	.fapl_size = sizeof(sink_info),
	.open = sink_open,
	.close = sink_close,
	.cmp = sink_cmp,
	.query = sink_query,
	.get_eoa = sink_get_eoa,
	.set_eoa = sink_set_eoa,
	.get_eof = sink_get_eof,
	.get_handle = sink_get_handle,
	.read = sink_read,
	.write = sink_write,
	.truncate = sink_truncate,
	.lock = sink_lock,
	.unlock = sink_unlock,
	.fl_map = H5FD_FLMAP_DICHOTOMY,
};

static hid_t sink_driver = H5I_INVALID_HID;

hid_t ah5_sink_fapl(ah5_sink *s)
{
	/* Registered once per libhdf5 session: H5close() by the host drops the id. */
	if (sink_driver < 0 || H5Iis_valid(sink_driver) <= 0)
		sink_driver = H5FDregister(&sink_class);
	if (sink_driver < 0)
		return H5I_INVALID_HID;
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	sink_info fi = {s};
	if (fapl >= 0 && H5Pset_driver(fapl, sink_driver, &fi) < 0) {
		H5Pclose(fapl);
		fapl = H5I_INVALID_HID;
	}
	return fapl;
}
