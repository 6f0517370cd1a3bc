/*
 * A small tensor decoded right after packing it in the same process (an archive opened, the
 * tensor decoded, the archive freed, again and again) finds its decoder tables and scratch
 * already mapped: the coders' large work arrays go back to a bounded process-wide cache
 * (lib/alloc.c) instead of to glibc, which trimmed its heap or unmapped them, so that every
 * decode faulted in fresh pages (5 to 13 page faults a decode of the 64 x 1024 digits MLP
 * gradients, a third of its CPU time on this machine). A caller's allocator sees every
 * block come back.
 */
#include "alloc_internal.h"
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROWS 64
#define COLS 1024
#define ROUNDS 8
#define BOUND 1e-4

/* Gradients of a dense layer in TF layout: every column (output channel) with its scale,
 * heavy tails. */
static float *tensor(alcm_tensor *t)
{
	float *x = malloc(ROWS * COLS * sizeof(float));
	assert_non_null(x);
	uint64_t st = 7;
	for (unsigned r = 0; r < ROWS; r++)
		for (unsigned c = 0; c < COLS; c++)
			x[r * COLS + c] =
				(float)(tu_gauss(&st) * 1e-3 * exp(1.5 * tu_gauss(&st)) * (1 + (c % 13)));
	tu_matrix_f32(t, x, ROWS, COLS);
	return x;
}

static void pack(const alcm_tensor *t, tu_packed *p)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = BOUND;
	o.threads = 1;
	o.max_minor = 1;
	memset(p, 0, sizeof(*p));
	assert_int_equal(tu_pack(t, 1, &o, p, NULL), ALCM_OK);
}

/* Decodes the only tensor of p as alcm-unpack would (threads 1, no digests; or 2, digests),
 * through allocator al. @return the minor page faults of this thread meanwhile. */
static long decode(const tu_packed *p, const alcm_allocator *al, unsigned threads, float *out)
{
	struct rusage r0, r1;
	getrusage(RUSAGE_THREAD, &r0);
	alcm_reader *rd = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&rd, p->buf, p->len, "mem", NULL, al,
	                                         threads == 1 ? ALCM_READ_NO_VERIFY : 0),
	                 ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, rd, al), ALCM_OK);
	assert_int_equal(alcm_archive_set_threads(a, threads), ALCM_OK);
	assert_int_equal(alcm_archive_decode(a, 0, out, ROWS * COLS * sizeof(float)), ALCM_OK);
	alcm_archive_free(a);
	alcm_reader_free(rd);
	getrusage(RUSAGE_THREAD, &r1);
	return r1.ru_minflt - r0.ru_minflt;
}

static void check(const float *x, const float *y)
{
	for (size_t i = 0; i < ROWS * COLS; i++)
		assert_true(fabs((double)x[i] - (double)y[i]) <= BOUND);
}

static void pack_decode_rounds(unsigned threads)
{
	alcm_tensor t;
	float *x = tensor(&t);
	float *out = malloc(ROWS * COLS * sizeof(float));
	assert_non_null(out);
	memset(out, 0, ROWS * COLS * sizeof(float)); /* the caller's pages: mapped once */
	tu_packed p;
	pack(&t, &p);
	decode(&p, NULL, threads, out);
	check(x, out);
	long faults = 0;
	uint64_t misses = 0;
	for (int k = 0; k < ROUNDS; k++) {
		alcm_writer_free(p.w);
		pack(&t, &p); /* the encoder's arrays taken and given back, the writer's freed */
		uint64_t m = alcm_block_misses();
		faults += decode(&p, NULL, threads, out);
		misses += alcm_block_misses() - m;
		check(x, out);
	}
	/* Every large array of these decodes came from the cache. */
	assert_int_equal(misses, 0);
#if !defined(__SANITIZE_ADDRESS__)
	/* (ASan's allocator quarantines the small blocks, whose fresh pages fault.) Before the
	 * cache: 7 or 8 over the rounds here (5 to 13 a decode of real gradients); with it
	 * none, a few allowed for the kernel's bookkeeping. */
	assert_true(faults <= ROUNDS / 2);
#else
	(void)faults;
#endif
	alcm_writer_free(p.w);
	free(out);
	free(x);
}

/* Packing the same tensor again and again (a training loop saving its gradients each step):
 * the chunk's coded bytes and the symbol coder's bit streams grow in blocks of the encoders'
 * cache (alcm_buf's cache), which the next encoder takes back mapped. Through realloc they
 * faulted fresh pages in on every save: 113 over the rounds here, 60 a save of the torch
 * MLP's weights, whose pack in a loop ran 15% slower than with them mapped. */
static void test_pack_rounds_no_fresh_pages(void **state)
{
	(void)state;
	alcm_tensor t;
	float *x = tensor(&t);
	tu_packed p;
	pack(&t, &p);
	size_t len = p.len;
	alcm_writer_free(p.w);
	long faults = 0;
	for (int k = 0; k < ROUNDS; k++) {
		struct rusage r0, r1;
		getrusage(RUSAGE_THREAD, &r0);
		pack(&t, &p);
		getrusage(RUSAGE_THREAD, &r1);
		faults += r1.ru_minflt - r0.ru_minflt;
		assert_int_equal(p.len, len);
		alcm_writer_free(p.w);
	}
	print_message("pack faults over %d rounds: %ld\n", ROUNDS, faults);
#if !defined(__SANITIZE_ADDRESS__)
	assert_true(faults <= ROUNDS / 2);
#endif
	free(x);
}

/* The zstd contexts of an encoder or a decoder (the coders', the tensor directory's) are kept
 * when it is freed and taken by the next one: making one runs CPUID, which a virtual machine
 * traps (7.5 us a context on the machine of tools/bench/README.md, 4% of packing this
 * tensor). A caller's allocator's contexts are never kept; alcm_release_memory() frees the
 * idle ones, and the archives do not change. */
static void test_zstd_contexts_kept(void **state)
{
	(void)state;
	alcm_release_memory();
	alcm_tensor t;
	float *x = tensor(&t);
	float *out = malloc(ROWS * COLS * sizeof(float));
	assert_non_null(out);
	tu_packed p0, p;
	pack(&t, &p0);
	decode(&p0, NULL, 1, out);
	check(x, out);
	assert_true(alcm_obj_cache_held() > 0);
	assert_true(alcm_obj_cache_held() <= ALCM_OBJ_BYTES);
	uint64_t made = alcm_zstd_contexts_made();
	for (int k = 0; k < ROUNDS; k++) {
		pack(&t, &p);
		assert_int_equal(p.len, p0.len);
		assert_memory_equal(p.buf, p0.buf, p.len);
		alcm_writer_free(p.w);
		memset(out, 0, ROWS * COLS * sizeof(float));
		decode(&p0, NULL, k % 2 ? 2 : 1, out);
		check(x, out);
	}
	/* Two decoding threads may need one context more than one did. */
	assert_true(alcm_zstd_contexts_made() - made <= 1);
	made = alcm_zstd_contexts_made();
	size_t held = alcm_obj_cache_held();
	/* A caller's allocator: its contexts come back to it, the cache is not touched. */
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	decode(&p0, &ta.a, 1, out);
	check(x, out);
	assert_int_equal(ta.live, 0);
	assert_int_equal(alcm_obj_cache_held(), held);
	/* Released: the next encoder makes its contexts again, and writes the same bytes. */
	size_t blocks = alcm_block_cache_held(ALCM_BLOCK_ENC) + alcm_block_cache_held(ALCM_BLOCK_DEC);
	assert_int_equal(alcm_release_memory(), blocks + held);
	assert_int_equal(alcm_obj_cache_held(), 0);
	pack(&t, &p);
	assert_true(alcm_zstd_contexts_made() > made);
	assert_int_equal(p.len, p0.len);
	assert_memory_equal(p.buf, p0.buf, p.len);
	alcm_writer_free(p.w);
	alcm_writer_free(p0.w);
	free(out);
	free(x);
}

static void test_decode_after_pack_one_thread(void **state)
{
	(void)state;
	pack_decode_rounds(1);
}

static void test_decode_after_pack_two_threads_verified(void **state)
{
	(void)state;
	pack_decode_rounds(2);
}

/* A caller's allocator gets every block back when the archive is freed (none is kept for
 * later coders: it may count, fail or be freed), and the decode is the same. */
static void test_caller_allocator_not_cached(void **state)
{
	(void)state;
	alcm_tensor t;
	float *x = tensor(&t);
	float *out = malloc(ROWS * COLS * sizeof(float)), *ref = malloc(ROWS * COLS * sizeof(float));
	assert_non_null(out);
	assert_non_null(ref);
	tu_packed p;
	pack(&t, &p);
	decode(&p, NULL, 1, ref);
	for (unsigned threads = 1; threads <= 2; threads++) {
		tu_alloc ta;
		tu_alloc_init(&ta, 0);
		decode(&p, &ta.a, threads, out);
		assert_true(ta.calls > 0);
		assert_int_equal(ta.live, 0);
		assert_memory_equal(out, ref, ROWS * COLS * sizeof(float));
	}
	alcm_writer_free(p.w);
	free(ref);
	free(out);
	free(x);
}

/* Blocks of the default allocator: reused up to twice the need, the retained bytes capped,
 * other allocators' blocks never kept. */
static void test_block_cache_bounds(void **state)
{
	(void)state;
	alcm_block_cache_clear();
	size_t cap;
	uint8_t *a = alcm_block_take(NULL, 300000, &cap);
	assert_non_null(a);
	assert_int_equal(cap, 300000);
	memset(a, 1, cap);
	alcm_block_give(NULL, a, cap);
	/* Smaller need within 2x + 64 KiB: the same block, its whole capacity. */
	uint64_t m = alcm_block_misses();
	uint8_t *b = alcm_block_take(NULL, 140000, &cap);
	assert_ptr_equal(b, a);
	assert_int_equal(cap, 300000);
	assert_int_equal(alcm_block_misses(), m);
	alcm_block_give(NULL, b, cap);
	/* A much smaller need does not hold the large block. */
	uint8_t *c = alcm_block_take(NULL, 100000, &cap);
	assert_ptr_not_equal(c, a);
	assert_int_equal(cap, 100000);
	alcm_block_give(NULL, c, cap);
	/* More than the cap of retained bytes: the overflow is freed (ASan/valgrind see it). */
	uint8_t *big[ALCM_BLOCK_CACHE_SLOTS + 2];
	size_t bc[ALCM_BLOCK_CACHE_SLOTS + 2];
	for (unsigned k = 0; k < ALCM_BLOCK_CACHE_SLOTS + 2; k++)
		assert_non_null(big[k] = alcm_block_take(NULL, ALCM_BLOCK_CACHE_MAX / 2, &bc[k]));
	for (unsigned k = 0; k < ALCM_BLOCK_CACHE_SLOTS + 2; k++)
		alcm_block_give(NULL, big[k], bc[k]);
	/* ... so that taking them all again finds no more than the cap's worth. */
	m = alcm_block_misses();
	for (unsigned k = 0; k < ALCM_BLOCK_CACHE_SLOTS + 2; k++)
		assert_non_null(big[k] = alcm_block_take(NULL, ALCM_BLOCK_CACHE_MAX / 2, &bc[k]));
	assert_true(alcm_block_misses() - m >=
	            ALCM_BLOCK_CACHE_SLOTS + 2 - ALCM_BLOCK_CACHE_BYTES / (ALCM_BLOCK_CACHE_MAX / 2));
	for (unsigned k = 0; k < ALCM_BLOCK_CACHE_SLOTS + 2; k++)
		alcm_block_give(NULL, big[k], bc[k]);
	/* Blocks over ALCM_BLOCK_CACHE_MAX are never kept: allocated each time. */
	m = alcm_block_misses();
	for (int k = 0; k < 2; k++) {
		uint8_t *e = alcm_block_take(NULL, ALCM_BLOCK_CACHE_MAX + 1, &cap);
		assert_non_null(e);
		alcm_block_give(NULL, e, cap);
	}
	assert_int_equal(alcm_block_misses() - m, 2);
	/* A counting allocator's block goes back to it at once. */
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	uint8_t *d = alcm_block_take(&ta.a, 100000, &cap);
	assert_non_null(d);
	assert_int_equal(ta.live, 1);
	alcm_block_give(&ta.a, d, cap);
	assert_int_equal(ta.live, 0);
	alcm_block_cache_clear();
}

/* A training loop saving its gradients every step: a new encoder each save. From the second
 * save on, the encoders' work arrays (symbol arrays and planes of 4 MiB chunks, more than
 * the decoders' cache keeps) come from the encoders' cache: no new block, no fresh pages. */
#define BIG_ROWS 1024
#define BIG_COLS 1024

static void save_rounds(unsigned threads)
{
	float *x = malloc((size_t)BIG_ROWS * BIG_COLS * sizeof(float));
	assert_non_null(x);
	uint64_t st = 11;
	for (size_t i = 0; i < (size_t)BIG_ROWS * BIG_COLS; i++)
		x[i] = (float)(tu_gauss(&st) * 1e-3 * exp(1.5 * tu_gauss(&st)) * (1 + (i % 13)));
	alcm_tensor t = {.name = "g", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 2,
	                 .shape = {BIG_ROWS, BIG_COLS}, .data = x,
	                 .nbytes = (size_t)BIG_ROWS * BIG_COLS * sizeof(float)};
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = 1e-4;
	o.threads = threads;
	o.max_minor = 1;
	alcm_block_cache_clear();
	tu_packed p0;
	memset(&p0, 0, sizeof(p0));
	assert_int_equal(tu_pack(&t, 1, &o, &p0, NULL), ALCM_OK);
	uint64_t first = alcm_block_misses();
	for (int k = 0; k < 3; k++) {
		tu_packed p;
		memset(&p, 0, sizeof(p));
		uint64_t m = alcm_block_misses();
		assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
		/* With one thread the same coder order, so the same blocks; with two the
		 * threads' chunks may differ in size, and a block may miss the 2x rule once. */
		if (threads == 1)
			assert_int_equal(alcm_block_misses(), m);
		assert_int_equal(p.len, p0.len);
		assert_memory_equal(p.buf, p0.buf, p.len);
		alcm_writer_free(p.w);
	}
	if (threads > 1)
		assert_true(alcm_block_misses() - first <= 2);
	/* More than the decoders' cache would keep, within the encoders' bound. */
	assert_true(alcm_block_cache_held(ALCM_BLOCK_ENC) > ALCM_BLOCK_CACHE_BYTES);
	assert_true(alcm_block_cache_held(ALCM_BLOCK_ENC) <= ALCM_BLOCK_ENC_BYTES);
	/* A decode does not put its blocks in the encoders' cache, and the decoders' cache
	 * keeps its bound. */
	size_t held = alcm_block_cache_held(ALCM_BLOCK_ENC);
	float *out = malloc(t.nbytes);
	assert_non_null(out);
	alcm_reader *rd = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&rd, p0.buf, p0.len, "mem", NULL, NULL, 0),
	                 ALCM_OK);
	assert_int_equal(alcm_archive_open(&a, rd, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_set_threads(a, threads), ALCM_OK);
	assert_int_equal(alcm_archive_decode(a, 0, out, t.nbytes), ALCM_OK);
	alcm_archive_free(a);
	alcm_reader_free(rd);
	assert_true(alcm_block_cache_held(ALCM_BLOCK_ENC) <= held);
	assert_true(alcm_block_cache_held(ALCM_BLOCK_DEC) <= ALCM_BLOCK_CACHE_BYTES);
	for (size_t i = 0; i < (size_t)BIG_ROWS * BIG_COLS; i++)
		assert_true(fabs((double)x[i] - (double)out[i]) <= 1e-4);
	free(out);
	/* alcm_release_memory frees both caches and says how much; the next encoder then
	 * allocates its blocks again and writes the same archive. */
	size_t kept = alcm_block_cache_held(ALCM_BLOCK_ENC) + alcm_block_cache_held(ALCM_BLOCK_DEC);
	assert_true(kept > ALCM_BLOCK_CACHE_BYTES);
	kept += alcm_obj_cache_held(); /* and the zstd contexts */
	assert_int_equal(alcm_release_memory(), kept);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_ENC), 0);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_DEC), 0);
	assert_int_equal(alcm_release_memory(), 0);
	tu_packed p;
	memset(&p, 0, sizeof(p));
	uint64_t m = alcm_block_misses();
	assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
	assert_true(alcm_block_misses() > m);
	assert_int_equal(p.len, p0.len);
	assert_memory_equal(p.buf, p0.buf, p.len);
	alcm_writer_free(p.w);
	alcm_writer_free(p0.w);
	assert_true(alcm_release_memory() > 0);
	free(x);
}

static void test_second_encoder_takes_no_block(void **state)
{
	(void)state;
	save_rounds(1);
}

static void test_second_encoder_two_threads(void **state)
{
	(void)state;
	save_rounds(2);
}

/* The encoders' cache: blocks up to ALCM_BLOCK_ENC_MAX kept (the decoders' rule frees
 * them), its bytes capped, a caller's allocator's blocks never kept. */
static void test_encoder_cache_bounds(void **state)
{
	(void)state;
	alcm_block_cache_clear();
	size_t cap, n = ALCM_BLOCK_ENC_MAX;
	uint8_t *a = alcm_block_take_kind(NULL, ALCM_BLOCK_ENC, n, &cap);
	assert_non_null(a);
	alcm_block_give_kind(NULL, ALCM_BLOCK_ENC, a, cap);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_ENC), n);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_DEC), 0);
	uint64_t m = alcm_block_misses();
	uint8_t *b = alcm_block_take_kind(NULL, ALCM_BLOCK_ENC, n - 4096, &cap);
	assert_ptr_equal(b, a);
	assert_int_equal(alcm_block_misses(), m);
	/* Given back by a decoder, the same block is freed. */
	alcm_block_give(NULL, b, cap);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_ENC), 0);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_DEC), 0);
	/* At most ALCM_BLOCK_ENC_BYTES held. */
	enum { N = ALCM_BLOCK_ENC_BYTES / ALCM_BLOCK_ENC_MAX + 2 };
	uint8_t *big[N];
	size_t bc[N];
	for (unsigned k = 0; k < N; k++)
		assert_non_null(big[k] = alcm_block_take_kind(NULL, ALCM_BLOCK_ENC, n, &bc[k]));
	for (unsigned k = 0; k < N; k++)
		alcm_block_give_kind(NULL, ALCM_BLOCK_ENC, big[k], bc[k]);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_ENC), ALCM_BLOCK_ENC_BYTES);
	/* Larger blocks are not kept. */
	uint8_t *e = alcm_block_take_kind(NULL, ALCM_BLOCK_ENC, n + 1, &cap);
	assert_non_null(e);
	alcm_block_give_kind(NULL, ALCM_BLOCK_ENC, e, cap);
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_ENC), ALCM_BLOCK_ENC_BYTES);
	/* A counting allocator's block goes back to it at once. */
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	uint8_t *d = alcm_block_take_kind(&ta.a, ALCM_BLOCK_ENC, (size_t)1 << 20, &cap);
	assert_non_null(d);
	assert_int_equal(ta.live, 1);
	alcm_block_give_kind(&ta.a, ALCM_BLOCK_ENC, d, cap);
	assert_int_equal(ta.live, 0);
	alcm_block_cache_clear();
	assert_int_equal(alcm_block_cache_held(ALCM_BLOCK_ENC), 0);
}

/* A thread taking and giving blocks all the time, as a compressing thread does. */
static void *churn(void *arg)
{
	volatile int *stop = arg;
	while (!*stop) {
		size_t cap;
		void *b = alcm_block_take(NULL, (size_t)64 << 10, &cap);
		alcm_block_give(NULL, b, cap);
	}
	return NULL;
}

/* fork() beside that thread: every child can still use the cache (without the fork
 * handlers a child forked while the thread held the cache's lock waited for ever). */
static void test_fork_beside_cache_user(void **state)
{
	(void)state;
	volatile int stop = 0;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, churn, (void *)&stop), 0);
	int hung = 0;
	for (int i = 0; i < 200 && !hung; i++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			size_t cap;
			void *b = alcm_block_take(NULL, (size_t)64 << 10, &cap);
			alcm_block_give(NULL, b, cap);
			_exit(b ? 0 : 1);
		}
		int ws = 0, waited = 0;
		while (waitpid(pid, &ws, WNOHANG) == 0) {
			if (++waited > 2000) { /* 2 s */
				kill(pid, SIGKILL);
				waitpid(pid, &ws, 0);
				hung = 1;
				break;
			}
			nanosleep(&(struct timespec){0, 1000000}, NULL);
		}
		if (!hung)
			assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	}
	stop = 1;
	pthread_join(th, NULL);
	alcm_block_cache_clear();
	assert_false(hung);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_rounds_no_fresh_pages),
		cmocka_unit_test(test_zstd_contexts_kept),
		cmocka_unit_test(test_decode_after_pack_one_thread),
		cmocka_unit_test(test_decode_after_pack_two_threads_verified),
		cmocka_unit_test(test_caller_allocator_not_cached),
		cmocka_unit_test(test_block_cache_bounds),
		cmocka_unit_test(test_second_encoder_takes_no_block),
		cmocka_unit_test(test_second_encoder_two_threads),
		cmocka_unit_test(test_encoder_cache_bounds),
		cmocka_unit_test(test_fork_beside_cache_user),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
