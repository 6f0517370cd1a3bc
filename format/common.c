/* Allocation, detail lines, status strings and limits: the base of the library. */
#include "format_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Blocks of the default allocator of 2 ALCM_HUGE_BLOCK bytes or more (chunk buffers, work
 * arrays, I/O blocks, tensors) start on a 2 MiB boundary and their whole 2 MiB pieces but
 * the first are madvised MADV_HUGEPAGE (transparent huge pages in "madvise" mode, the usual
 * default): a fresh 4 KiB page costs a fault and its zeroing (about 20 us on a virtual
 * machine), a huge page one fault for 512 of them. The first piece and the tail past the
 * last whole one stay in small pages: a block sized for the most it may hold (a 4 MiB I/O
 * block for a 40-byte file) makes resident only what is touched, and past 2 MiB a block is
 * being filled (rounding its resident bytes up to 2 MiB costs little beside them). They stay
 * plain malloc blocks (free, realloc and sanitizers see them as usual); where THP is off or
 * missing the advice is refused or ignored and the block is an ordinary one. */
static void huge_advise(void *p, size_t n, size_t from)
{
#ifdef MADV_HUGEPAGE
	size_t whole = n & ~(ALCM_HUGE_BLOCK - 1);
	if (whole > from && !((uintptr_t)p & (ALCM_HUGE_BLOCK - 1)))
		(void)madvise((uint8_t *)p + from, whole - from, MADV_HUGEPAGE);
#else
	(void)p;
	(void)n;
	(void)from;
#endif
}

void *alcm_sys_alloc(size_t n)
{
	if (n >= 2 * ALCM_HUGE_BLOCK) {
		void *p;
		if (!posix_memalign(&p, ALCM_HUGE_BLOCK, n)) {
			huge_advise(p, n, ALCM_HUGE_BLOCK);
			return p;
		}
	}
	return malloc(n ? n : 1);
}

/* A block its user fills (a decoded chunk, a chunk's compressed bytes, a coder's work
 * array, an I/O block after the first) is advised whole, first piece included, from one
 * huge page up: rounded up to whole huge pages, it makes resident at most 2 MiB more than it
 * holds, and saves up to 512 faults per piece (alcm-unpack -T2 of e2e.npz: 9298 -> 1272
 * faults, peak RSS 43.9 -> 46.4 MiB). Not for blocks that may hold far less than their size
 * (a scratch sized for the worst chunk; the coders' cached work arrays, which decoders also
 * take: in huge pages, a repeated in-process unpack of faceapi fell from 3300 to 2100 MB/s). */
void *alcm_sys_alloc_filled(size_t n)
{
	if (n >= ALCM_HUGE_BLOCK && n <= SIZE_MAX - ALCM_HUGE_BLOCK) {
		size_t r = (n + ALCM_HUGE_BLOCK - 1) & ~(ALCM_HUGE_BLOCK - 1);
		void *p;
		if (!posix_memalign(&p, ALCM_HUGE_BLOCK, r)) {
			huge_advise(p, r, 0);
			return p;
		}
	}
	return malloc(n ? n : 1);
}

void *alcm_sys_realloc(void *p, size_t n)
{
	/* A large block that grows keeps its resident pages (glibc moves them with mremap), not
	 * always the boundary: when it lands on one, its new pieces are advised too. A copy to a
	 * new aligned block would make resident all of the old capacity, used or not (buffers
	 * grown for a worst-case bound hold far less). realloc(NULL) stays a plain malloc: the
	 * coders' buffers grown to a chunk's bound (alcm_block_grow) are filled to its stored
	 * size, often 20% less, and a huge page would round that up (alcm-unpack -T2 of
	 * e2e.npz: peak RSS 43.7 -> 46.1 MiB, for 3600 faults fewer). */
	void *q = realloc(p, n ? n : 1);
	if (q && n >= 2 * ALCM_HUGE_BLOCK)
		huge_advise(q, n, ALCM_HUGE_BLOCK);
	return q;
}

static void *libc_malloc(void *o, size_t n)
{
	(void)o;
	return alcm_sys_alloc(n);
}
static void *libc_realloc(void *o, void *p, size_t n)
{
	(void)o;
	return alcm_sys_realloc(p, n);
}
static void libc_free(void *o, void *p)
{
	(void)o;
	free(p);
}

int alcm_alloc_is_libc(const alcm_allocator *a)
{
	return a->malloc_fn == libc_malloc && a->realloc_fn == libc_realloc &&
	       a->free_fn == libc_free;
}

void alcm_alloc_copy(alcm_allocator *dst, const alcm_allocator *src)
{
	if (src && src->malloc_fn && src->realloc_fn && src->free_fn) {
		*dst = *src;
		return;
	}
	dst->malloc_fn = libc_malloc;
	dst->realloc_fn = libc_realloc;
	dst->free_fn = libc_free;
	dst->opaque = NULL;
}

void *alcm_mem_alloc(const alcm_allocator *a, size_t n)
{
	if (a && a->malloc_fn)
		return a->malloc_fn(a->opaque, n ? n : 1);
	return alcm_sys_alloc(n);
}

void *alcm_mem_alloc_filled(const alcm_allocator *a, size_t n)
{
	if (!a || !a->malloc_fn || alcm_alloc_is_libc(a))
		return alcm_sys_alloc_filled(n);
	return a->malloc_fn(a->opaque, n ? n : 1);
}

void *alcm_mem_calloc(const alcm_allocator *a, size_t count, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(count, size, &n))
		return NULL;
	void *p = alcm_mem_alloc(a, n);
	if (p)
		memset(p, 0, n);
	return p;
}

void *alcm_mem_realloc(const alcm_allocator *a, void *p, size_t n)
{
	if (a && a->realloc_fn)
		return a->realloc_fn(a->opaque, p, n ? n : 1);
	return alcm_sys_realloc(p, n);
}

void alcm_mem_free(const alcm_allocator *a, void *p)
{
	if (!p)
		return;
	if (a && a->free_fn)
		a->free_fn(a->opaque, p);
	else
		free(p);
}

void alcm_detail_vset(char *detail, const char *fmt, va_list ap)
{
	if (!detail)
		return;
	vsnprintf(detail, ALCM_DETAIL_MAX, fmt, ap);
}

void alcm_detail_set(char *detail, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(detail, fmt, ap);
	va_end(ap);
}

void alcm_detail_quote(char *dst, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (cap == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 8 >= cap) {
			if (o + 4 < cap) {
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
}

const char *alcm_strerror(int status)
{
	switch (status) {
	case ALCM_OK: return "success";
	case ALCM_E_ARG: return "invalid argument";
	case ALCM_E_IO: return "i/o error";
	case ALCM_E_CORRUPT: return "malformed input";
	case ALCM_E_DIGEST: return "digest mismatch";
	case ALCM_E_LIMIT: return "limit exceeded";
	case ALCM_E_UNSUPPORTED: return "unsupported feature";
	case ALCM_E_NOMEM: return "out of memory";
	case ALCM_E_STATE: return "invalid state";
	case ALCM_E_EXISTS: return "file exists";
	case ALCM_E_NOTFOUND: return "not found";
	case ALCM_E_BOUND: return "lossy bound not applicable";
	case ALCM_E_SIGNATURE: return "signature check failed";
	case ALCM_E_BUSY: return "locked by another writer";
	default: return "unknown error";
	}
}

const char *alcm_version(void)
{
	return ALCM_VERSION_STRING;
}

void alcm_limits_default(alcm_limits *lim)
{
	/* A forged count makes the reader allocate count * 64 bytes of table: 1M entries
	 * (64 MiB) is far above any real archive and caps that allocation. */
	lim->max_sections = 1u << 20;
	/* One section is read whole into memory when a tensor chunk is decoded: 64 GiB
	 * stops a length field from claiming the address space. */
	lim->max_section_bytes = (uint64_t)64 << 30;
	/* Metadata, directory and attribute sections are parsed in memory: 256 MiB bounds a
	 * forged length before it is allocated. */
	lim->max_meta_bytes = (uint64_t)256 << 20;
	/* Each directory entry costs a few hundred bytes of state. */
	lim->max_tensors = 1u << 20;
	/* Shape arrays are fixed-size; a rank above this is refused before it is read. */
	lim->max_ndim = ALCM_MAX_NDIM;
	/* Names are copied for messages and lookups. */
	lim->max_name_bytes = 65535;
	/* A shape product drives the decode buffer: 2^36 elements (256 GiB of float32) keeps a
	 * forged shape from overflowing size arithmetic downstream. */
	lim->max_elements = (uint64_t)1 << 36;
	/* The caller allocates the decoded tensor: 64 GiB unless the application says more. */
	lim->max_decoded_bytes = (uint64_t)64 << 30;
	/* zstd's decoder allocates its window: 2^27 = 128 MiB, the encoder's maximum at
	 * the levels alcm uses, stops a frame from demanding 2 GiB. */
	lim->zstd_window_log_max = 27;
	/* Each frame of a series' reference chain is a pass over the tensor: a chain of
	 * tiny deltas of a large tensor would otherwise cost frames x elements. The reference
	 * writer keeps its chains shorter (spec 6.12.7). */
	lim->max_chain = 1000;
}
