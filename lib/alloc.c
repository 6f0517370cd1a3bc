/* The process-wide cache of coder work arrays (alloc_internal.h). */
#include "alloc_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
typedef struct {
	void *p;
	size_t cap;
} slot;
/* The decoders' cache and the encoders' (alloc_internal.h), both under cache_mu. */
static slot dec_slots[ALCM_BLOCK_CACHE_SLOTS], enc_slots[ALCM_BLOCK_ENC_SLOTS];
static struct pool {
	slot *s;
	unsigned n;
	size_t held, bytes, max;
} pools[2] = {
	[ALCM_BLOCK_DEC] = {dec_slots, ALCM_BLOCK_CACHE_SLOTS, 0, ALCM_BLOCK_CACHE_BYTES,
	                    ALCM_BLOCK_CACHE_MAX},
	[ALCM_BLOCK_ENC] = {enc_slots, ALCM_BLOCK_ENC_SLOTS, 0, ALCM_BLOCK_ENC_BYTES,
	                    ALCM_BLOCK_ENC_MAX},
};
static uint64_t cache_misses;
/* The idle objects (alcm_obj_give), also under cache_mu. */
static struct obj {
	void *p;
	size_t bytes;
	void (*drop)(void *);
} objs[ALCM_OBJ_KINDS][ALCM_OBJ_SLOTS];
static unsigned nobjs[ALCM_OBJ_KINDS];
static size_t objs_held;

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

static struct pool *pool_of(int kind)
{
	return &pools[kind == ALCM_BLOCK_ENC ? ALCM_BLOCK_ENC : ALCM_BLOCK_DEC];
}

static int cacheable(const alcm_allocator *a, int kind, size_t n)
{
	return libc(a) && n >= ALCM_BLOCK_CACHE_MIN && n <= pool_of(kind)->max;
}

/* The smallest block of q of size to most bytes, taken out of q; NULL if none. */
static void *pool_take(struct pool *q, size_t size, size_t most, size_t *cap)
{
	unsigned best = q->n;
	for (unsigned k = 0; k < q->n; k++)
		if (q->s[k].p && q->s[k].cap >= size && q->s[k].cap <= most &&
		    (best == q->n || q->s[k].cap < q->s[best].cap))
			best = k;
	if (best == q->n)
		return NULL;
	void *p = q->s[best].p;
	*cap = q->s[best].cap;
	q->held -= q->s[best].cap;
	q->s[best].p = NULL;
	q->s[best].cap = 0;
	return p;
}

void *alcm_block_take_kind(const alcm_allocator *a, int kind, size_t size, size_t *cap)
{
	size = size ? size : 1;
	if (cacheable(a, kind, size)) {
		/* Up to twice the need: a block of an earlier large chunk must not stay beside a
		 * small tensor's output (the decode-memory bound of spec 5.6 is per tensor). A
		 * coder's own cache first, then the other's (a block taken is memory no longer
		 * held idle, whoever takes it). */
		size_t most = 2 * size + ((size_t)64 << 10);
		cache_lock();
		void *p = pool_take(pool_of(kind), size, most, cap);
		if (!p)
			p = pool_take(pool_of(!kind), size, most, cap);
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

void *alcm_block_take(const alcm_allocator *a, size_t size, size_t *cap)
{
	return alcm_block_take_kind(a, ALCM_BLOCK_DEC, size, cap);
}

void alcm_block_give_kind(const alcm_allocator *a, int kind, void *p, size_t cap)
{
	if (!p)
		return;
	if (cacheable(a, kind, cap)) {
		struct pool *q = pool_of(kind);
		void *drop = NULL;
		cache_lock();
		/* A free slot, else the smallest block if smaller than this one (the larger
		 * arrays are the ones whose pages cost most to fault in again). */
		unsigned k = 0, small = 0;
		for (; k < q->n && q->s[k].p; k++)
			if (q->s[k].cap < q->s[small].cap)
				small = k;
		if (k == q->n && q->s[small].cap < cap &&
		    q->held - q->s[small].cap + cap <= q->bytes) {
			drop = q->s[small].p;
			q->held -= q->s[small].cap;
			q->s[small].p = NULL;
			q->s[small].cap = 0;
			k = small;
		}
		if (k < q->n && q->held + cap <= q->bytes) {
			q->s[k].p = p;
			q->s[k].cap = cap;
			q->held += cap;
			p = NULL;
		}
		pthread_mutex_unlock(&cache_mu);
		free(drop);
		if (!p)
			return;
	}
	alcm_mem_free(a, p);
}

void alcm_block_give(const alcm_allocator *a, void *p, size_t cap)
{
	alcm_block_give_kind(a, ALCM_BLOCK_DEC, p, cap);
}

int alcm_block_grow(const alcm_allocator *a, uint8_t **p, size_t *cap, size_t need, int filled)
{
	if (need <= *cap)
		return ALCM_OK;
	if (cacheable(a, ALCM_BLOCK_DEC, need)) {
		alcm_block_give(a, *p, *cap);
		*p = alcm_block_take(a, need, cap);
		return *p ? ALCM_OK : ALCM_E_NOMEM;
	}
	/* Large buffers grow in place where they can (mremap), keeping their pages. */
	uint8_t *q = *p || !filled ? alcm_mem_realloc(a, *p, need) : alcm_mem_alloc_filled(a, need);
	if (!q)
		return ALCM_E_NOMEM;
	*p = q;
	*cap = need;
	return ALCM_OK;
}

void *alcm_mem_alloc_whole(const alcm_allocator *a, size_t n, size_t *cap)
{
	size_t want = n ? n : 1;
	if (want >= ALCM_WHOLE_FROM && want <= SIZE_MAX - ALCM_HUGE_BLOCK)
		want = (want + ALCM_HUGE_BLOCK - 1) & ~(ALCM_HUGE_BLOCK - 1);
	void *p = want >= ALCM_HUGE_BLOCK ? alcm_mem_alloc_filled(a, want) : alcm_mem_alloc(a, want);
	*cap = p ? want : 0;
	return p;
}

/* Last in, first out: an encoder's coder takes the context its coder of the previous encoder
 * gave back last (after the tensor directory's), so each keeps the workspace its level made. */
void *alcm_obj_take(int kind)
{
	void *p = NULL;
	cache_lock();
	if (nobjs[kind]) {
		struct obj *o = &objs[kind][--nobjs[kind]];
		p = o->p;
		objs_held -= o->bytes;
		memset(o, 0, sizeof(*o));
	}
	pthread_mutex_unlock(&cache_mu);
	return p;
}

void alcm_obj_give(int kind, void *p, size_t bytes, void (*drop)(void *))
{
	if (!p)
		return;
	if (bytes <= ALCM_OBJ_MAX) {
		cache_lock();
		if (nobjs[kind] < ALCM_OBJ_SLOTS && objs_held + bytes <= ALCM_OBJ_BYTES) {
			objs[kind][nobjs[kind]++] = (struct obj){p, bytes, drop};
			objs_held += bytes;
			p = NULL;
		}
		pthread_mutex_unlock(&cache_mu);
	}
	if (p)
		drop(p);
}

size_t alcm_obj_cache_held(void)
{
	cache_lock();
	size_t n = objs_held;
	pthread_mutex_unlock(&cache_mu);
	return n;
}

size_t alcm_release_memory(void)
{
	struct obj idle[ALCM_OBJ_KINDS * ALCM_OBJ_SLOTS];
	unsigned ni = 0;
	cache_lock();
	size_t n = pools[0].held + pools[1].held + objs_held;
	for (unsigned i = 0; i < ALCM_OBJ_KINDS; i++) {
		for (unsigned k = 0; k < nobjs[i]; k++) {
			idle[ni++] = objs[i][k];
			memset(&objs[i][k], 0, sizeof(objs[i][k]));
		}
		nobjs[i] = 0;
	}
	objs_held = 0;
	pthread_mutex_unlock(&cache_mu);
	/* Outside the lock: a zstd context gives its workspace back to the blocks' cache,
	 * which takes the lock (and is emptied next; its bytes were counted with the object).
	 * Blocks another thread gives back meanwhile are freed too, not counted. */
	for (unsigned k = 0; k < ni; k++)
		idle[k].drop(idle[k].p);
	cache_lock();
	for (unsigned i = 0; i < 2; i++) {
		for (unsigned k = 0; k < pools[i].n; k++) {
			free(pools[i].s[k].p);
			pools[i].s[k].p = NULL;
			pools[i].s[k].cap = 0;
		}
		pools[i].held = 0;
	}
	pthread_mutex_unlock(&cache_mu);
	return n;
}

void alcm_block_cache_clear(void)
{
	(void)alcm_release_memory();
}

size_t alcm_block_cache_held(int kind)
{
	cache_lock();
	size_t n = pool_of(kind)->held;
	pthread_mutex_unlock(&cache_mu);
	return n;
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
