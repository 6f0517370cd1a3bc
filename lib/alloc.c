/* The process-wide cache of coder work arrays (alloc_internal.h). */
#include "alloc_internal.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *p;
	size_t cap;
} cache[ALCM_BLOCK_CACHE_SLOTS];
static size_t cache_held;
static uint64_t cache_misses;

/* fork() while another thread holds cache_mu would leave the child's copy locked for ever
 * (a Python data loader forks beside compressing threads): the handlers take the lock
 * around fork() so that both sides get it free. glibc drops them when a dlopen()ed copy of
 * the library (the HDF5 filter plugin) is unloaded. */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	pthread_mutex_lock(&cache_mu);
}

static void fork_after(void)
{
	pthread_mutex_unlock(&cache_mu);
}

static void fork_register(void)
{
	(void)pthread_atfork(fork_prepare, fork_after, fork_after);
}

static void cache_lock(void)
{
	pthread_once(&fork_once, fork_register);
	pthread_mutex_lock(&cache_mu);
}

/* Only blocks of malloc are shared between coders: another allocator may count, fail or
 * be freed with its owner. */
static int libc(const alcm_allocator *a)
{
	return !a || !a->malloc_fn || alcm_alloc_is_libc(a);
}

static int cacheable(const alcm_allocator *a, size_t n)
{
	return libc(a) && n >= ALCM_BLOCK_CACHE_MIN && n <= ALCM_BLOCK_CACHE_MAX;
}

void *alcm_block_take(const alcm_allocator *a, size_t size, size_t *cap)
{
	size = size ? size : 1;
	if (cacheable(a, size)) {
		/* Up to twice the need: a block of an earlier large chunk must not stay beside a
		 * small tensor's output (the decode-memory bound of spec 5.6 is per tensor). */
		size_t most = 2 * size + ((size_t)64 << 10);
		void *p = NULL;
		cache_lock();
		unsigned best = ALCM_BLOCK_CACHE_SLOTS;
		for (unsigned k = 0; k < ALCM_BLOCK_CACHE_SLOTS; k++)
			if (cache[k].p && cache[k].cap >= size && cache[k].cap <= most &&
			    (best == ALCM_BLOCK_CACHE_SLOTS || cache[k].cap < cache[best].cap))
				best = k;
		if (best < ALCM_BLOCK_CACHE_SLOTS) {
			p = cache[best].p;
			*cap = cache[best].cap;
			cache_held -= cache[best].cap;
			cache[best].p = NULL;
			cache[best].cap = 0;
		}
		pthread_mutex_unlock(&cache_mu);
		if (p)
			return p;
	}
	if (libc(a) && size >= ALCM_BLOCK_CACHE_MIN) {
		cache_lock();
		cache_misses++;
		pthread_mutex_unlock(&cache_mu);
	}
	void *p = alcm_mem_alloc(a, size);
	*cap = p ? size : 0;
	return p;
}

void alcm_block_give(const alcm_allocator *a, void *p, size_t cap)
{
	if (!p)
		return;
	if (cacheable(a, cap)) {
		void *drop = NULL;
		cache_lock();
		/* A free slot, else the smallest block if smaller than this one (the larger
		 * arrays are the ones whose pages cost most to fault in again). */
		unsigned k = 0, small = 0;
		for (; k < ALCM_BLOCK_CACHE_SLOTS && cache[k].p; k++)
			if (cache[k].cap < cache[small].cap)
				small = k;
		if (k == ALCM_BLOCK_CACHE_SLOTS && cache[small].cap < cap &&
		    cache_held - cache[small].cap + cap <= ALCM_BLOCK_CACHE_BYTES) {
			drop = cache[small].p;
			cache_held -= cache[small].cap;
			cache[small].p = NULL;
			cache[small].cap = 0;
			k = small;
		}
		if (k < ALCM_BLOCK_CACHE_SLOTS && cache_held + cap <= ALCM_BLOCK_CACHE_BYTES) {
			cache[k].p = p;
			cache[k].cap = cap;
			cache_held += cap;
			p = NULL;
		}
		pthread_mutex_unlock(&cache_mu);
		free(drop);
		if (!p)
			return;
	}
	alcm_mem_free(a, p);
}

int alcm_block_grow(const alcm_allocator *a, uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return ALCM_OK;
	if (cacheable(a, need)) {
		alcm_block_give(a, *p, *cap);
		*p = alcm_block_take(a, need, cap);
		return *p ? ALCM_OK : ALCM_E_NOMEM;
	}
	/* Large buffers grow in place where they can (mremap), keeping their pages. */
	uint8_t *q = alcm_mem_realloc(a, *p, need);
	if (!q)
		return ALCM_E_NOMEM;
	*p = q;
	*cap = need;
	return ALCM_OK;
}

void alcm_block_cache_clear(void)
{
	cache_lock();
	for (unsigned k = 0; k < ALCM_BLOCK_CACHE_SLOTS; k++) {
		free(cache[k].p);
		cache[k].p = NULL;
		cache[k].cap = 0;
	}
	cache_held = 0;
	pthread_mutex_unlock(&cache_mu);
}

uint64_t alcm_block_misses(void)
{
	cache_lock();
	uint64_t n = cache_misses;
	pthread_mutex_unlock(&cache_mu);
	return n;
}

/* Valgrind and unloading (the HDF5 filter plugin) see no block left behind. */
__attribute__((destructor)) static void cache_fini(void)
{
	alcm_block_cache_clear();
}
