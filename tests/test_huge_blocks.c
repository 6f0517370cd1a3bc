/*
 * Large blocks of the default allocator (format/common.c): 2 MiB-aligned and, past their
 * first 2 MiB, advised to transparent huge pages, so that a chunk buffer or a tensor faults
 * in 2 MiB at a time, not 4 KiB (about 20 us a fault on a virtual machine: most of alcm-pack's system time). They
 * stay ordinary malloc blocks: realloc keeps their contents, free releases them. Where THP
 * is disabled the advice is refused and the coders work as before. A caller's allocator is
 * never bypassed: with one, every block of the coders is its own and comes back.
 */
#include "alloc_internal.h"
#include "format_internal.h"
#include "testutil.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)
#define ROWS 1536
#define COLS 1024 /* 6 MiB of float32: chunks and buffers of several MiB */

static int aligned(const void *p)
{
	return !((uintptr_t)p & (ALCM_HUGE_BLOCK - 1));
}

/* 1 if the mapping holding p is advised MADV_HUGEPAGE ("hg" in its VmFlags), 0 if not, -1
 * if that cannot be told here (no smaps, no THP in this kernel, or THP disabled for this
 * process by a parent). */
static int advised(const void *p)
{
	if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) ||
	    prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) > 0)
		return -1;
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	int in = 0, r = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			r = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return r;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131 + seed + (i >> 12));
}

static int same(const uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(i * 131 + seed + (i >> 12)))
			return 0;
	return 1;
}

/* Through a NULL allocator or the libc one: large blocks aligned and advised, small ones
 * plain; realloc keeps the contents growing and shrinking, across the 2 MiB line both ways;
 * calloc zeroes. */
static void test_default_blocks(void **state)
{
	(void)state;
	alcm_allocator libc;
	alcm_alloc_copy(&libc, NULL);
	const alcm_allocator *as[2] = {NULL, &libc};
	for (int k = 0; k < 2; k++) {
		const alcm_allocator *a = as[k];
		uint8_t *p = alcm_mem_alloc(a, 5 * MIB + 123);
		assert_non_null(p);
		assert_true(aligned(p));
		fill(p, 5 * MIB + 123, 1);
		/* past the first 2 MiB (which stay small pages: a block may be sized for far
		 * more than it gets) */
		assert_true(advised(p + ALCM_HUGE_BLOCK) != 0);
		assert_true(advised(p) != 1);
		assert_true(same(p, 5 * MIB + 123, 1));
		alcm_mem_free(a, p);

		p = alcm_mem_alloc(a, 300 << 10);
		assert_non_null(p);
		fill(p, 300 << 10, 2);
		p = alcm_mem_realloc(a, p, 7 * MIB);
		assert_non_null(p);
		assert_true(same(p, 300 << 10, 2));
		fill(p, 7 * MIB, 3);
		p = alcm_mem_realloc(a, p, 9 * MIB + 5);
		assert_non_null(p);
		assert_true(same(p, 7 * MIB, 3));
		p = alcm_mem_realloc(a, p, 3 * MIB);
		assert_non_null(p);
		assert_true(same(p, 3 * MIB, 3));
		p = alcm_mem_realloc(a, p, 100 << 10);
		assert_non_null(p);
		assert_true(same(p, 100 << 10, 3));
		alcm_mem_free(a, p);

		uint8_t *z = alcm_mem_calloc(a, 5, MIB);
		assert_non_null(z);
		assert_true(aligned(z));
		for (size_t i = 0; i < 5 * MIB; i++)
			assert_int_equal(z[i], 0);
		alcm_mem_free(a, z);
		alcm_mem_free(a, NULL);
	}
	/* Zero bytes is one byte, as before. */
	uint8_t *one = alcm_mem_alloc(NULL, 0);
	assert_non_null(one);
	alcm_mem_free(NULL, one);
}

/* Blocks a user fills (alcm_mem_alloc_filled: coders' buffers, I/O blocks after the first)
 * are advised whole from 2 MiB up, their first 2 MiB included; smaller ones are plain. A
 * caller's allocator gets the call. */
static void test_filled_blocks(void **state)
{
	(void)state;
	alcm_allocator libc;
	alcm_alloc_copy(&libc, NULL);
	const alcm_allocator *as[2] = {NULL, &libc};
	for (int k = 0; k < 2; k++) {
		size_t sizes[] = {ALCM_HUGE_BLOCK, 3 * MIB + 77, 4 * MIB + 4096};
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint8_t *p = alcm_mem_alloc_filled(as[k], sizes[i]);
			assert_non_null(p);
			assert_true(aligned(p));
			assert_true(advised(p) != 0);
			fill(p, sizes[i], 5);
			assert_true(same(p, sizes[i], 5));
			p = alcm_mem_realloc(as[k], p, sizes[i] + 5 * MIB);
			assert_non_null(p);
			assert_true(same(p, sizes[i], 5));
			alcm_mem_free(as[k], p);
		}
		uint8_t *s = alcm_mem_alloc_filled(as[k], ALCM_HUGE_BLOCK - 1);
		assert_non_null(s);
		fill(s, ALCM_HUGE_BLOCK - 1, 6);
		assert_true(same(s, ALCM_HUGE_BLOCK - 1, 6));
		alcm_mem_free(as[k], s);
		assert_non_null(s = alcm_mem_alloc_filled(as[k], 0));
		alcm_mem_free(as[k], s);
	}
#ifndef __SANITIZE_ADDRESS__ /* (ASan aborts on such a request) */
	/* A size that cannot be rounded up to huge pages goes to malloc, which refuses it. */
	assert_null(alcm_mem_alloc_filled(NULL, SIZE_MAX - 5));
#endif
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	uint8_t *c = alcm_mem_alloc_filled(&ta.a, 3 * MIB);
	assert_non_null(c);
	assert_int_equal(ta.live, 1);
	alcm_mem_free(&ta.a, c);
	assert_int_equal(ta.live, 0);
}

/* Buffers kept for the larger tensors that come later (alcm_mem_alloc_whole: the readers'
 * tensor buffer, the encoder's whole-tensor buffer) are their size under 256 KiB, and from
 * there whole huge pages, aligned and advised: the capacity returned is usable to its last
 * byte (ASan checks it) and covers what was asked. A caller's allocator gets the call. */
static void test_whole_blocks(void **state)
{
	(void)state;
	alcm_allocator libc;
	alcm_alloc_copy(&libc, NULL);
	const alcm_allocator *as[2] = {NULL, &libc};
	size_t cap;
	for (int k = 0; k < 2; k++) {
		uint8_t *p = alcm_mem_alloc_whole(as[k], ALCM_WHOLE_FROM - 1, &cap);
		assert_non_null(p);
		assert_int_equal(cap, ALCM_WHOLE_FROM - 1);
		alcm_mem_free(as[k], p);
		size_t sizes[] = {ALCM_WHOLE_FROM, ALCM_HUGE_BLOCK, ALCM_HUGE_BLOCK + 1, 3 * MIB + 77};
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			p = alcm_mem_alloc_whole(as[k], sizes[i], &cap);
			assert_non_null(p);
			assert_true(cap >= sizes[i] && cap < sizes[i] + ALCM_HUGE_BLOCK);
			assert_int_equal(cap % ALCM_HUGE_BLOCK, 0);
			assert_true(aligned(p));
			assert_true(advised(p) != 0);
			fill(p, cap, 8);
			assert_true(same(p, cap, 8));
			alcm_mem_free(as[k], p);
		}
		assert_non_null(p = alcm_mem_alloc_whole(as[k], 0, &cap));
		assert_int_equal(cap, 1);
		alcm_mem_free(as[k], p);
	}
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	uint8_t *c = alcm_mem_alloc_whole(&ta.a, MIB, &cap);
	assert_non_null(c);
	assert_int_equal(cap, ALCM_HUGE_BLOCK);
	assert_int_equal(ta.live, 1);
	fill(c, cap, 9);
	alcm_mem_free(&ta.a, c);
	assert_int_equal(ta.live, 0);
}

static float *tensor(alcm_tensor *t)
{
	float *x = malloc(ROWS * COLS * sizeof(float));
	assert_non_null(x);
	uint64_t st = 15;
	for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
		x[i] = (float)(0.02 * tu_gauss(&st));
	tu_matrix_f32(t, x, ROWS, COLS);
	return x;
}

/* Packs t (lossless, or max error 1e-3) on `threads` threads and decodes it back with
 * digests into y (t->nbytes), every object on allocator a (NULL: the default). @return 0 when the decode is
 * the same bytes (lossless) or within the bound, else the first failing step. */
static int round_trip(const alcm_tensor *t, const alcm_allocator *a, int lossy, unsigned threads,
                      float *y)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.threads = threads;
	if (lossy) {
		o.mode = ALCM_MODE_MAX_ERROR;
		o.bound = 1e-3;
	}
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_reader *rd = NULL;
	alcm_archive *ar = NULL;
	const void *buf;
	size_t len;
	int r = 1;
	if (alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, a) ||
	    alcm_encoder_new(&e, w, &o, a) || alcm_encoder_add(e, t, NULL) ||
	    alcm_encoder_finish(e) || alcm_writer_commit(w) || alcm_writer_memory(w, &buf, &len))
		goto out;
	r = 2;
	if (alcm_reader_open_memory(&rd, buf, len, "mem", NULL, a, 0) ||
	    alcm_archive_open(&ar, rd, a) || alcm_archive_set_threads(ar, threads) ||
	    alcm_archive_decode(ar, 0, y, t->nbytes))
		goto out;
	r = 3;
	const float *x = t->data;
	for (size_t i = 0; i < t->nbytes / sizeof(float); i++)
		if (lossy ? !(y[i] - x[i] <= 1e-3f && x[i] - y[i] <= 1e-3f) : y[i] != x[i])
			goto out;
	r = 0;
out:
	alcm_archive_free(ar);
	alcm_reader_free(rd);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	return r;
}

/* With THP disabled for the process (as "never" in /sys/kernel/mm/transparent_hugepage),
 * the advice is refused or has no effect: packing and unpacking work the same. */
static void test_thp_disabled(void **state)
{
	(void)state;
	alcm_tensor t;
	float *x = tensor(&t);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		(void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
		float *y = malloc(t.nbytes);
		if (!y)
			_exit(9);
		uint8_t *p = alcm_mem_alloc(NULL, 4 * MIB);
		if (!p)
			_exit(10);
		fill(p, 4 * MIB, 4);
		if (!same(p, 4 * MIB, 4))
			_exit(11);
		alcm_mem_free(NULL, p);
		for (int lossy = 0; lossy < 2; lossy++)
			for (unsigned th = 1; th <= 2; th++) {
				int r = round_trip(&t, NULL, lossy, th, y);
				if (r)
					_exit(20 + 10 * lossy + 3 * (int)th + r);
			}
		_exit(0);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 0);
	free(x);
}

/* A caller's allocator outside glibc's heap (its own mappings), counting: every block the
 * coders take comes from it and goes back to it, and glibc's heap and mappings do not grow
 * by a chunk meanwhile (no large block of the coders went to the default allocator). */
typedef struct mapped_alloc {
	alcm_allocator a;
	atomic_long live, calls;
	atomic_size_t most;
	size_t base;          /* glibc's bytes in use when the test began */
	atomic_size_t excess; /* the most they rose above base in a call */
} mapped_alloc;

#define HEAD 64

static size_t glibc_in_use(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

static void note(mapped_alloc *m)
{
	size_t u = glibc_in_use(), d = u > m->base ? u - m->base : 0;
	size_t e = atomic_load(&m->excess);
	while (d > e && !atomic_compare_exchange_weak(&m->excess, &e, d))
		;
}

static void *ma_malloc(void *o, size_t n)
{
	mapped_alloc *m = o;
	atomic_fetch_add(&m->calls, 1);
	note(m);
	uint8_t *p = mmap(NULL, n + HEAD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memcpy(p, &n, sizeof(n));
	atomic_fetch_add(&m->live, 1);
	size_t most = atomic_load(&m->most);
	while (n > most && !atomic_compare_exchange_weak(&m->most, &most, n))
		;
	return p + HEAD;
}

static void ma_free(void *o, void *q)
{
	mapped_alloc *m = o;
	note(m);
	if (!q)
		return;
	uint8_t *p = (uint8_t *)q - HEAD;
	size_t n;
	memcpy(&n, p, sizeof(n));
	munmap(p, n + HEAD);
	atomic_fetch_sub(&m->live, 1);
}

static void *ma_realloc(void *o, void *q, size_t n)
{
	if (!q)
		return ma_malloc(o, n);
	size_t old;
	memcpy(&old, (uint8_t *)q - HEAD, sizeof(old));
	void *r = ma_malloc(o, n);
	if (!r)
		return NULL;
	memcpy(r, q, old < n ? old : n);
	ma_free(o, q);
	return r;
}

static void test_caller_allocator_sees_every_block(void **state)
{
	(void)state;
	alcm_tensor t;
	float *x = tensor(&t), *y = malloc(t.nbytes);
	assert_non_null(y);
	for (int lossy = 0; lossy < 2; lossy++)
		for (unsigned th = 1; th <= 2; th++) {
			mapped_alloc m = {{ma_malloc, ma_realloc, ma_free, NULL}, 0, 0, 0, 0, 0};
			m.a.opaque = &m;
			m.base = glibc_in_use();
			assert_int_equal(round_trip(&t, &m.a, lossy, th, y), 0);
			assert_int_equal(atomic_load(&m.live), 0);
			assert_true(atomic_load(&m.calls) > 0);
			/* the chunk buffers and work arrays of MiBs were the caller's */
			assert_true(atomic_load(&m.most) >= MIB);
			assert_true(atomic_load(&m.excess) < MIB);
		}
	free(x);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_blocks),
		cmocka_unit_test(test_filled_blocks),
		cmocka_unit_test(test_whole_blocks),
		cmocka_unit_test(test_thp_disabled),
		cmocka_unit_test(test_caller_allocator_sees_every_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
