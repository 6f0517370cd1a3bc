/*
 * Memory archives (format/writer.c): one large enough to be an anonymous mapping (2 MiB and
 * more, grown by mremap) holds the same bytes as the same archive written to a file and to
 * memory through a caller's allocator, and decodes; a mapping that cannot be made or grown
 * is a clean ALCM_E_NOMEM (mmap and mremap are interposed below).
 */
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* 1-based call of mmap (fail_mmap) or mremap (fail_mremap) to fail; 0: none. Only anonymous
 * mappings count: the loader's and libc's own mappings do not go through these symbols. */
static long fail_mmap, fail_mremap, n_mmap, n_mremap;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if ((flags & MAP_ANONYMOUS) && fail_mmap && ++n_mmap == fail_mmap) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	void *(*real)(void *, size_t, int, int, int, off_t) = dlsym(RTLD_NEXT, "mmap");
	return real(addr, len, prot, flags, fd, off);
}

void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	if (fail_mremap && ++n_mremap == fail_mremap) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	void *(*real)(void *, size_t, size_t, int, ...) = dlsym(RTLD_NEXT, "mremap");
	return real(old, old_len, new_len, flags);
}

#define NVAL (3u << 20) /* 12 MiB of float32: the archive passes 2 MiB and doubles a few times */

static float *values(void)
{
	float *v = malloc(NVAL * sizeof(float));
	assert_non_null(v);
	uint64_t s = 7;
	for (size_t i = 0; i < NVAL; i++)
		v[i] = (float)(0.02 * tu_gauss(&s));
	return v;
}

/* Packs v into w (lossless, one thread); @return the first failing status. */
static int pack(alcm_writer *w, const float *v)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.threads = 1;
	alcm_encoder *e = NULL;
	alcm_tensor t = {.name = "w", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 1,
	                 .shape = {NVAL}, .data = v, .nbytes = NVAL * sizeof(float)};
	int st = alcm_encoder_new(&e, w, &o, NULL);
	if (!st)
		st = alcm_encoder_add(e, &t, NULL);
	if (!st)
		st = alcm_encoder_finish(e);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_encoder_free(e);
	return st;
}

static void test_same_bytes(void **state)
{
	(void)state;
	float *v = values();
	/* To a file. */
	const char *path = tu_path("mem.alcm");
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_OVERWRITE, NULL), ALCM_OK);
	assert_int_equal(pack(w, v), ALCM_OK);
	alcm_writer_free(w);
	size_t flen;
	uint8_t *file = tu_read_file(path, &flen);
	assert_non_null(file);
	assert_true(flen > (2u << 20));
	/* To memory, mapped (libc allocator) and through a caller's allocator. */
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	const alcm_allocator *allocs[2] = {NULL, &ta.a};
	for (int k = 0; k < 2; k++) {
		assert_int_equal(alcm_writer_open_memory(&w, 0, allocs[k]), ALCM_OK);
		assert_int_equal(pack(w, v), ALCM_OK);
		const void *buf;
		size_t len;
		assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
		assert_int_equal(len, flen);
		assert_memory_equal(buf, file, flen);
		/* It decodes, digests checked. */
		alcm_reader *r = NULL;
		alcm_archive *a = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, buf, len, NULL, NULL, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
		float *out = malloc(NVAL * sizeof(float));
		assert_non_null(out);
		assert_int_equal(alcm_archive_decode(a, 0, out, NVAL * sizeof(float)), ALCM_OK);
		assert_memory_equal(out, v, NVAL * sizeof(float));
		free(out);
		alcm_archive_free(a);
		alcm_reader_free(r);
		alcm_writer_free(w);
	}
	assert_int_equal(ta.live, 0);
	free(file);
	remove(path);
	free(v);
}

/* The first mapping, then each growth, failing in turn: ALCM_E_NOMEM, nothing leaked (ASan),
 * and the writer refuses to go on. */
static void test_mapping_fails(void **state)
{
	(void)state;
	float *v = values();
	for (int which = 0; which < 2; which++) {
		for (long at = 1;; at++) {
			n_mmap = n_mremap = 0;
			fail_mmap = which == 0 ? at : 0;
			fail_mremap = which == 1 ? at : 0;
			alcm_writer *w = NULL;
			assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
			int st = pack(w, v);
			long hit = which == 0 ? n_mmap >= at : n_mremap >= at;
			fail_mmap = fail_mremap = 0;
			if (!hit) {
				assert_int_equal(st, ALCM_OK);
				alcm_writer_free(w);
				/* Only the first mapping is made by mmap; mremap grows it a few times. */
				assert_true(which == 0 ? at == 2 : at > 2);
				break;
			}
			assert_int_equal(st, ALCM_E_NOMEM);
			const void *buf;
			size_t len;
			assert_int_not_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
			alcm_writer_free(w);
		}
	}
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_bytes),
		cmocka_unit_test(test_mapping_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
