/* A small fork-join pool: the caller's thread works too, jobs are taken in index order. The
 * threads start at the first run with more than one job (a small file never starts them). */
#include "codec_internal.h"

#include <pthread.h>
#include <unistd.h>

struct alcm_pool {
	const alcm_allocator *a;
	unsigned nthreads; /* including the caller */
	unsigned want;     /* the threads asked for; started on first need */
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	alcm_pool_fn fn;
	void *arg;
	size_t njobs, next, finished;
	unsigned long round;
	int quit;
	pid_t pid; /* the process the threads run in: a child of fork() has only its caller */
};

typedef struct worker_arg {
	alcm_pool *p;
	unsigned id;
	unsigned long seen;
} worker_arg;

static void work(alcm_pool *p, unsigned id)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->next >= p->njobs) {
			pthread_mutex_unlock(&p->mu);
			return;
		}
		size_t j = p->next++;
		pthread_mutex_unlock(&p->mu);
		p->fn(p->arg, j, id);
		pthread_mutex_lock(&p->mu);
		if (++p->finished == p->njobs)
			pthread_cond_broadcast(&p->done);
		pthread_mutex_unlock(&p->mu);
	}
}

static void *worker_main(void *v)
{
	worker_arg *wa = v;
	alcm_pool *p = wa->p;
	unsigned id = wa->id;
	unsigned long seen = wa->seen;
	alcm_mem_free(p->a, wa);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->quit && p->round == seen)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->quit)
			break;
		seen = p->round;
		pthread_mutex_unlock(&p->mu);
		work(p, id);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int alcm_pool_new(alcm_pool **out, unsigned threads, const alcm_allocator *a)
{
	if (threads == 0)
		threads = alcm_cpu_count();
	if (threads > 256)
		threads = 256;
	alcm_pool *p = alcm_mem_calloc(a, 1, sizeof(*p));
	if (!p)
		return ALCM_E_NOMEM;
	p->a = a;
	p->nthreads = 1;
	p->want = threads;
	/* The pid tells a child of fork() (threads > 1 only: a pool of one thread has none to
	 * lose). getpid() is a system call: a pool of one thread asked it at every run and at
	 * its end, 5% of packing and decoding a small tensor. */
	p->pid = threads > 1 ? getpid() : 0;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	if (threads > 1 && !(p->th = alcm_mem_calloc(a, threads, sizeof(pthread_t)))) {
		alcm_pool_free(p);
		*out = NULL;
		return ALCM_E_NOMEM;
	}
	*out = p;
	return ALCM_OK;
}

/* Starts the threads not yet running. One that cannot start leaves fewer: the jobs are the
 * same whoever runs them. */
static void start_threads(alcm_pool *p)
{
	while (p->nthreads < p->want) {
		worker_arg *wa = alcm_mem_alloc(p->a, sizeof(*wa));
		if (!wa)
			break;
		wa->p = p;
		wa->id = p->nthreads;
		wa->seen = p->round;
		if (pthread_create(&p->th[p->nthreads], NULL, worker_main, wa) != 0) {
			alcm_mem_free(p->a, wa);
			break;
		}
		p->nthreads++;
	}
	p->want = p->nthreads;
}

void alcm_pool_run(alcm_pool *p, alcm_pool_fn fn, void *arg, size_t njobs)
{
	if (njobs == 0)
		return;
	/* In a child of fork() (a Python data loader forks beside open archives) the threads
	 * stayed with the parent, and a lock may be held for ever: the caller runs every job. */
	int forked = p->want > 1 && getpid() != p->pid;
	if (njobs > 1 && p->nthreads < p->want && !forked)
		start_threads(p);
	if (p->nthreads == 1 || njobs == 1 || forked) {
		for (size_t j = 0; j < njobs; j++)
			fn(arg, j, 0);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->njobs = njobs;
	p->next = 0;
	p->finished = 0;
	p->round++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	work(p, 0);
	pthread_mutex_lock(&p->mu);
	while (p->finished < p->njobs)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

unsigned alcm_pool_threads(const alcm_pool *p)
{
	return p->want > p->nthreads ? p->want : p->nthreads;
}

void alcm_pool_free(alcm_pool *p)
{
	if (!p)
		return;
	/* A child of fork() has no threads to stop (joining them, or destroying a condition
	 * they waited on, would wait for ever): only memory to free. */
	if (p->want == 1 || getpid() == p->pid) {
		pthread_mutex_lock(&p->mu);
		p->quit = 1;
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->mu);
		for (unsigned i = 1; i < p->nthreads; i++)
			pthread_join(p->th[i], NULL);
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->go);
		pthread_cond_destroy(&p->done);
	}
	alcm_mem_free(p->a, p->th);
	alcm_mem_free(p->a, p);
}
