/*
 * A tensor packed again and again in one process (an encoder made, one tensor of a full 4 MiB
 * chunk added, the encoder freed: what a program packing checkpoints in a loop, or
 * tools/bench/entropy.sh, does) finds its chunk coder's work arrays already mapped: the
 * symbols (4 bytes a value: 4 MiB here), the rANS output, the tokens and the classes go back
 * to the process-wide block cache (lib/alloc.c) when the encoder is freed, instead of to
 * glibc, which unmapped or trimmed them, so that every pack faulted in about 5 MiB of fresh
 * pages (1300 page faults a pack of the faceapi weights, a third of its pack time on this
 * machine). A caller's allocator still sees every block come back.
 */
#include "alloc_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 1024
#define COLS 1024 /* 4 MiB of float32: one whole chunk at the default chunk size */
#define ROUNDS 4
#define BOUND 1e-3

/* Weights of a dense layer in PyTorch layout: rows with their own scales. */
static float *tensor(alcm_tensor *t)
{
	float *x = malloc((size_t)ROWS * COLS * sizeof(float));
	assert_non_null(x);
	uint64_t st = 11;
	for (unsigned r = 0; r < ROWS; r++)
		for (unsigned c = 0; c < COLS; c++)
			x[(size_t)r * COLS + c] = (float)(tu_gauss(&st) * 0.02 * (1 + (r % 7)));
	memset(t, 0, sizeof(*t));
	t->name = "w";
	t->name_len = 1;
	t->dtype = ALCM_DTYPE_F32;
	t->ndim = 2;
	t->shape[0] = ROWS;
	t->shape[1] = COLS;
	t->data = x;
	t->nbytes = (uint64_t)ROWS * COLS * sizeof(float);
	return x;
}

/* tu_pack() of t with encoder allocator al (NULL: the default one). */
static void pack(const alcm_tensor *t, const alcm_allocator *al, tu_packed *p)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = ALCM_MODE_MAX_ERROR;
	o.bound = BOUND;
	o.threads = 1;
	o.max_minor = 1;
	memset(p, 0, sizeof(*p));
	alcm_encoder *e = NULL;
	assert_int_equal(alcm_writer_open_memory(&p->w, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_new(&e, p->w, &o, al), ALCM_OK);
	assert_int_equal(alcm_encoder_add(e, t, NULL), ALCM_OK);
	assert_int_equal(alcm_encoder_finish(e), ALCM_OK);
	assert_int_equal(alcm_writer_commit(p->w), ALCM_OK);
	alcm_encoder_free(e);
	assert_int_equal(alcm_writer_memory(p->w, &p->buf, &p->len), ALCM_OK);
}

/* After the first pack, no large array of the later ones is allocated anew; the archives
 * are the same bytes. */
static void test_pack_again_takes_cached_blocks(void **state)
{
	(void)state;
	alcm_tensor t;
	float *x = tensor(&t);
	tu_packed p0, p;
	pack(&t, NULL, &p0);
	uint64_t misses = 0;
	for (int k = 0; k < ROUNDS; k++) {
		uint64_t m = alcm_block_misses();
		pack(&t, NULL, &p);
		misses += alcm_block_misses() - m;
		assert_int_equal(p.len, p0.len);
		assert_memory_equal(p.buf, p0.buf, p.len);
		alcm_writer_free(p.w);
	}
	assert_int_equal(misses, 0);
	alcm_writer_free(p0.w);
	free(x);
}

/* A caller's allocator gets every block back when the encoder is freed, and the archive is
 * the same. */
static void test_caller_allocator_not_cached(void **state)
{
	(void)state;
	alcm_tensor t;
	float *x = tensor(&t);
	tu_packed p0, p;
	pack(&t, NULL, &p0);
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	pack(&t, &ta.a, &p);
	assert_true(ta.calls > 0);
	assert_int_equal(ta.live, 0); /* the encoder is freed: every block went back */
	assert_int_equal(p.len, p0.len);
	assert_memory_equal(p.buf, p0.buf, p.len);
	alcm_writer_free(p.w);
	alcm_writer_free(p0.w);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_again_takes_cached_blocks),
		cmocka_unit_test(test_caller_allocator_not_cached),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
