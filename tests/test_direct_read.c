/* Direct reads (format/reader.c): an archive most of which is not in the page cache is read
 * with O_DIRECT, and decoding in pieces starts the next reads before it decodes. The same bytes
 * as reading through the page cache, at any offset, length and thread count; a damaged byte
 * still fails its digest; a file cut short under an open reader fails with an I/O error. */
#include "testutil.h"
#include "codec_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NT 4
#define N 250000

typedef tu_set set;

static void make_set(set *s, uint64_t seed)
{
	tu_set_make(s, NT, N, seed, -1);
}

/* The set packed (chunks of 2^18 bytes: sections of about 0.9 MB, chunks at odd offsets) into
 * the file `name`, lossless or at max error 1e-5. @return its path. */
static const char *pack_file(const set *s, const char *name, int lossy)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.chunk_bytes = (uint64_t)1 << 18;
	o.mode = lossy ? ALCM_MODE_MAX_ERROR : ALCM_MODE_LOSSLESS;
	o.bound = 1e-5;
	tu_packed p;
	assert_int_equal(tu_pack(s->t, NT, &o, &p, NULL), ALCM_OK);
	const char *path = tu_path(name);
	assert_int_equal(tu_write_file(path, p.buf, p.len), 0);
	alcm_writer_free(p.w);
	return path;
}

typedef struct sink {
	uint8_t *buf;
	size_t len, cap;
} sink;

static int collect(void *ctx, size_t pos, const void *data, size_t len)
{
	sink *k = ctx;
	(void)pos;
	assert_true(k->len + len <= k->cap);
	memcpy(k->buf + k->len, data, len);
	k->len += len;
	return ALCM_OK;
}

/* Opens path with direct reads forced (skips the test where its file system has none). */
static alcm_reader *open_direct(const char *path)
{
	alcm_reader *r;
	alcm_dio_read_force = 1;
	int st = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	alcm_dio_read_force = 0;
	assert_int_equal(st, ALCM_OK);
	if (!alcm_reader_dio_align(r)) {
		alcm_reader_free(r);
		print_message("no O_DIRECT where %s is: skipped\n", path);
		skip();
	}
	return r;
}

/* Reads through the page cache and direct reads agree at offsets around block boundaries
 * and lengths around ALCM_DIO_READ_MIN, whether the buffer is placed by alcm_reader_dio_shift
 * or one byte off; reads started on a queue (alcm_readq_*) agree too, waited for in any order; a read out
 * of the section, or one more than the queue's depth, is refused. */
static void test_direct_parts(void **state)
{
	(void)state;
	set s;
	make_set(&s, 3);
	const char *path = pack_file(&s, "parts.alcm", 0);
	size_t flen;
	uint8_t *file = tu_read_file(path, &flen);
	assert_non_null(file);
	alcm_reader *r = open_direct(path);
	uint32_t k;
	alcm_section_info si;
	assert_int_equal(alcm_reader_find_section(r, "LDAT", 0, &k), ALCM_OK);
	assert_int_equal(alcm_reader_section_info(r, k, &si), ALCM_OK);
	assert_true(si.length > 3 * ALCM_DIO_READ_MIN);
	size_t A = alcm_reader_dio_align(r);
	const uint64_t pos[] = {0, 1, A - 1, A, A + 1, 12345, si.length - ALCM_DIO_READ_MIN - 3};
	const size_t len[] = {1, 100, A, ALCM_DIO_READ_MIN - 1, ALCM_DIO_READ_MIN,
	                      ALCM_DIO_READ_MIN + 1, 3 * A + 7, 200001};
	uint8_t *raw = malloc(si.length + 2 * A);
	alcm_readq *q;
	assert_int_equal(alcm_readq_new(&q, r, 4), ALCM_OK);
	for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++)
		for (size_t j = 0; j < sizeof(len) / sizeof(len[0]); j++) {
			if (pos[i] + len[j] > si.length)
				continue;
			const uint8_t *want = file + si.offset + pos[i];
			for (int off = 0; off < 2; off++) {
				uint8_t *b = raw + alcm_reader_dio_shift(r, k, pos[i], raw) + (size_t)off;
				memset(raw, 0xa5, si.length + 2 * A);
				uint64_t before = alcm_dio_reads;
				assert_int_equal(alcm_reader_section_pread(r, k, pos[i], b, len[j]), ALCM_OK);
				assert_memory_equal(b, want, len[j]);
				/* direct: a placed read of ALCM_DIO_READ_MIN bytes or more past its head */
				uint64_t o = si.offset + pos[i], head = (A - o % A) % A;
				int direct = !off && len[j] >= head + ALCM_DIO_READ_MIN;
				assert_int_equal(alcm_dio_reads > before, direct);
				assert_int_equal(b[-1], 0xa5);
				assert_int_equal(b[len[j]], 0xa5);
				memset(raw, 0x5a, si.length + 2 * A);
				unsigned t;
				before = alcm_dio_reads;
				assert_int_equal(alcm_readq_start(q, k, pos[i], b, len[j], &t), ALCM_OK);
				assert_int_equal(alcm_readq_wait(q, t), ALCM_OK);
				assert_memory_equal(b, want, len[j]);
				assert_int_equal(b[-1], 0x5a);
				assert_int_equal(b[len[j]], 0x5a);
				assert_int_equal(alcm_dio_reads > before, direct);
			}
		}
	/* four reads in flight, waited for last first; a fifth is refused, as is one out of the
	 * section */
	uint8_t *mem[4], *bufs[4];
	unsigned tk[4], extra;
	const uint64_t at[4] = {7, 300000, 4096, si.length - 100000};
	for (int i = 0; i < 4; i++) {
		mem[i] = malloc(100000 + A);
		bufs[i] = mem[i] + alcm_reader_dio_shift(r, k, at[i], mem[i]);
		assert_int_equal(alcm_readq_start(q, k, at[i], bufs[i], 100000, &tk[i]), ALCM_OK);
	}
	assert_int_equal(alcm_readq_start(q, k, 0, raw, 10, &extra), ALCM_E_ARG);
	/* the second's place taken by a fifth read, started last (read last) */
	assert_int_equal(alcm_readq_wait(q, tk[1]), ALCM_OK);
	assert_memory_equal(bufs[1], file + si.offset + at[1], 100000);
	assert_int_equal(alcm_readq_start(q, k, 5, bufs[1], 100000, &tk[1]), ALCM_OK);
	for (int i = 3; i >= 0; i--) {
		assert_int_equal(alcm_readq_wait(q, tk[i]), ALCM_OK);
		assert_memory_equal(bufs[i], file + si.offset + (i == 1 ? 5 : at[i]), 100000);
		free(mem[i]);
	}
	assert_int_equal(alcm_readq_start(q, k, si.length - 10, raw, 11, &extra), ALCM_E_ARG);
	assert_int_equal(alcm_readq_start(q, k, UINT64_MAX, raw, 2, &extra), ALCM_E_ARG);
	assert_int_equal(alcm_readq_start(q, k, 0, raw, 0, &extra), ALCM_E_ARG);
	assert_int_equal(alcm_readq_start(q, alcm_reader_section_count(r), 0, raw, 1, &extra),
	                 ALCM_E_ARG);
	assert_int_equal(alcm_reader_dio_shift(r, alcm_reader_section_count(r), 0, raw + 1), 0);
	alcm_readq_free(q);
	alcm_reader_free(r);
	free(raw);
	free(file);
	tu_set_free(&s);
}

/* Decoding the set from its file with direct reads: in pieces at 1 to 3 threads (the relay at
 * two and three), whole, and the lossy archive whole: the bytes packed (the lossy ones those
 * of a memory reader), direct reads done at every thread count. */
static void test_direct_decode(void **state)
{
	(void)state;
	set s;
	make_set(&s, 5);
	for (int lossy = 0; lossy < 2; lossy++) {
		const char *path = pack_file(&s, lossy ? "dq.alcm" : "d.alcm", lossy);
		size_t flen;
		uint8_t *file = tu_read_file(path, &flen);
		for (unsigned th = 1; th <= 3; th++) {
			alcm_reader *r = open_direct(path), *rm;
			alcm_archive *a, *am;
			assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
			assert_int_equal(alcm_archive_set_threads(a, th), ALCM_OK);
			assert_int_equal(alcm_reader_open_memory(&rm, file, flen, "m", NULL, NULL, 0),
			                 ALCM_OK);
			assert_int_equal(alcm_archive_open(&am, rm, NULL), ALCM_OK);
			static const size_t order[NT] = {0, 1, 2, 3};
			uint64_t before = alcm_dio_reads, relayed = alcm_relay_taken;
			sink k = {malloc(s.total), 0, s.total};
			if (!lossy) {
				assert_int_equal(alcm_archive_decode_pieces(a, order, NT, collect, &k), ALCM_OK);
				assert_int_equal(k.len, s.total);
				assert_true(alcm_dio_reads > before);
				assert_int_equal(alcm_relay_taken - relayed, th == 1 ? 0 : NT);
				for (int i = 0; i < NT; i++)
					assert_memory_equal(k.buf + (size_t)i * N * 4, s.data[i], N * 4);
			}
			uint8_t *one = malloc(N * 4), *ref = malloc(N * 4);
			for (size_t i = 0; i < NT; i++) {
				assert_int_equal(alcm_archive_decode(a, i, one, N * 4), ALCM_OK);
				assert_int_equal(alcm_archive_decode(am, i, ref, N * 4), ALCM_OK);
				assert_memory_equal(one, ref, N * 4);
				if (!lossy)
					assert_memory_equal(one, s.data[i], N * 4);
			}
			free(one);
			free(ref);
			free(k.buf);
			alcm_archive_free(a);
			alcm_archive_free(am);
			alcm_reader_free(r);
			alcm_reader_free(rm);
		}
		free(file);
		unlink(path);
	}
	tu_set_free(&s);
}

/* Decodes the lossless set's file in pieces with direct reads at th threads. @return the
 * status; detail receives the archive's message. */
static int decode_file(const char *path, unsigned th, sink *k, char *detail, size_t dcap)
{
	alcm_reader *r = open_direct(path);
	alcm_archive *a;
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_set_threads(a, th), ALCM_OK);
	static const size_t order[NT] = {0, 1, 2, 3};
	int st = alcm_archive_decode_pieces(a, order, NT, collect, k);
	snprintf(detail, dcap, "%s", alcm_archive_detail(a));
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}

/* A byte of tensor 1's section damaged on disk, at its start, middle and end: read directly,
 * it fails its digest, named as through the page cache, with tensor 0 whole before it. */
static void test_direct_damaged(void **state)
{
	(void)state;
	set s;
	make_set(&s, 7);
	const char *path = pack_file(&s, "bad.alcm", 0);
	size_t flen;
	uint8_t *file = tu_read_file(path, &flen);
	alcm_reader *r = open_direct(path);
	uint32_t k1;
	alcm_section_info si;
	assert_int_equal(alcm_reader_find_section(r, "LDAT", 0, &k1), ALCM_OK);
	assert_int_equal(alcm_reader_find_section(r, "LDAT", k1 + 1, &k1), ALCM_OK);
	assert_int_equal(alcm_reader_section_info(r, k1, &si), ALCM_OK);
	alcm_reader_free(r);
	char want[64], d[512];
	snprintf(want, sizeof(want), "digest mismatch in section %u", k1);
	const uint64_t at[] = {3, si.length / 2, si.length - 1};
	for (int w = 0; w < 3; w++) {
		file[si.offset + at[w]] ^= 0x10;
		assert_int_equal(tu_write_file(path, file, flen), 0);
		file[si.offset + at[w]] ^= 0x10;
		for (unsigned th = 1; th <= 3; th++) {
			sink k = {malloc(s.total), 0, s.total};
			assert_int_equal(decode_file(path, th, &k, d, sizeof(d)), ALCM_E_DIGEST);
			assert_non_null(strstr(d, want));
			assert_true(k.len >= N * 4 && k.len < 2 * N * 4);
			assert_memory_equal(k.buf, s.data[0], N * 4);
			free(k.buf);
		}
	}
	unlink(path);
	free(file);
	tu_set_free(&s);
}

/* The file cut short while a reader has it open (another process truncating it): every thread
 * count fails with an I/O error that says so, and nothing past the cut is handed on. */
static void test_direct_shrunk(void **state)
{
	(void)state;
	set s;
	make_set(&s, 9);
	const char *path = pack_file(&s, "cut.alcm", 0);
	size_t flen;
	uint8_t *file = tu_read_file(path, &flen);
	for (unsigned th = 1; th <= 3; th++) {
		assert_int_equal(tu_write_file(path, file, flen), 0);
		alcm_reader *r = open_direct(path);
		alcm_archive *a;
		assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
		assert_int_equal(alcm_archive_set_threads(a, th), ALCM_OK);
		assert_int_equal(truncate(path, (off_t)(flen * 3 / 5)), 0);
		static const size_t order[NT] = {0, 1, 2, 3};
		sink k = {malloc(s.total), 0, s.total};
		assert_int_equal(alcm_archive_decode_pieces(a, order, NT, collect, &k), ALCM_E_IO);
		assert_non_null(strstr(alcm_archive_detail(a), "file shrank"));
		assert_true(k.len < s.total * 3 / 5);
		free(k.buf);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	unlink(path);
	free(file);
	tu_set_free(&s);
}

/* Direct reads only where they pay: not for a file under ALCM_DIO_FILE_MIN, not with
 * ALCM_DIRECT_IO=0 even when forced; the page-cache test sees a file just written as cached,
 * and not once its pages are dropped; a larger archive is read directly when it is not
 * cached, and only then. */
static void test_direct_when(void **state)
{
	(void)state;
	set s;
	make_set(&s, 11);
	const char *path = pack_file(&s, "when.alcm", 0);
	alcm_reader *r = open_direct(path); /* skips where there is no O_DIRECT */
	alcm_reader_free(r);
	setenv("ALCM_DIRECT_IO", "1", 1); /* not "0": as unset */
	r = open_direct(path);
	alcm_reader_free(r);
	unsetenv("ALCM_DIRECT_IO");
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_dio_align(r), 0);
	uint8_t odd[3];
	assert_int_equal(alcm_reader_dio_shift(r, 0, 1, odd + 1), 0);
	/* A reading thread reads through the page cache then; a reader of memory has none. */
	alcm_readq *q;
	assert_int_equal(alcm_readq_new(&q, r, 2), ALCM_OK);
	uint8_t got[100], want[100];
	unsigned tk;
	assert_int_equal(alcm_readq_start(q, 0, 5, got, sizeof(got), &tk), ALCM_OK);
	assert_int_equal(alcm_readq_wait(q, tk), ALCM_OK);
	assert_int_equal(alcm_reader_section_pread(r, 0, 5, want, sizeof(want)), ALCM_OK);
	assert_memory_equal(got, want, sizeof(got));
	alcm_readq_free(q);
	alcm_reader_free(r);
	size_t mlen;
	uint8_t *mem = tu_read_file(path, &mlen);
	assert_int_equal(alcm_reader_open_memory(&r, mem, mlen, "when", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_readq_new(&q, r, 2), ALCM_E_UNSUPPORTED);
	assert_null(q);
	alcm_reader_free(r);
	free(mem);
	setenv("ALCM_DIRECT_IO", "0", 1);
	alcm_dio_read_force = 1;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	alcm_dio_read_force = 0;
	unsetenv("ALCM_DIRECT_IO");
	assert_int_equal(alcm_reader_dio_align(r), 0);
	alcm_reader_free(r);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t size = lseek(fd, 0, SEEK_END);
	char *buf = malloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	assert_int_equal(alcm_file_mostly_cached(fd, (uint64_t)size), 1);
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	assert_int_equal(alcm_file_mostly_cached(fd, (uint64_t)size), 0);
	/* nothing to look at, or no mapping: counted as cached (read as before) */
	assert_int_equal(alcm_file_mostly_cached(fd, 0), 1);
	close(fd);
	assert_int_equal(alcm_file_mostly_cached(-1, (uint64_t)size), 1);
	free(buf);
	unlink(path);
	tu_set_free(&s);

	/* An archive over ALCM_DIO_FILE_MIN (36 MiB of random bytes, stored as they are): read
	 * through the cache just after it is written, directly once its pages are dropped. */
	uint64_t n = (uint64_t)36 << 20, seed = 17;
	uint8_t *big = malloc(n);
	for (uint64_t i = 0; i < n; i += 8) {
		uint64_t v = tu_rand(&seed);
		memcpy(big + i, &v, 8);
	}
	alcm_tensor t;
	tu_vector(&t, ALCM_DTYPE_U8, big, n);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	tu_packed p;
	assert_int_equal(tu_pack(&t, 1, &o, &p, NULL), ALCM_OK);
	assert_true(p.len >= ALCM_DIO_FILE_MIN);
	const char *bp = tu_path("big.alcm");
	assert_int_equal(tu_write_file(bp, p.buf, p.len), 0);
	alcm_writer_free(p.w);
	assert_int_equal(alcm_reader_open_file(&r, bp, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_dio_align(r), 0);
	alcm_reader_free(r);
	fd = open(bp, O_RDONLY);
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
	assert_int_equal(alcm_reader_open_file(&r, bp, NULL, NULL, 0), ALCM_OK);
	assert_true(alcm_reader_dio_align(r) > 0);
	alcm_archive *a;
	assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
	sink k = {malloc(n), 0, n};
	uint64_t before = alcm_dio_reads;
	static const size_t first = 0;
	assert_int_equal(alcm_archive_decode_pieces(a, &first, 1, collect, &k), ALCM_OK);
	assert_true(alcm_dio_reads > before);
	assert_int_equal(k.len, n);
	assert_memory_equal(k.buf, big, n);
	alcm_archive_free(a);
	alcm_reader_free(r);
	free(k.buf);
	free(big);
	unlink(bp);
}

/* A child of fork() decodes and frees an archive whose threads (reading, pool, hasher)
 * stayed with the parent (a Python data loader forks beside open archives): the same bytes,
 * no hang (alarm: 60 s), at 1 to 3 threads and at 3 without the relay; the parent decodes on
 * after it. */
static void test_direct_fork(void **state)
{
	(void)state;
	set s;
	make_set(&s, 13);
	const char *path = pack_file(&s, "fork.alcm", 0);
	static const size_t order[NT] = {0, 1, 2, 3};
	for (unsigned th = 1; th <= 4; th++) {
		alcm_relay_off = th == 4; /* the waves and the hasher at three threads */
		alcm_reader *r = open_direct(path);
		alcm_archive *a;
		assert_int_equal(alcm_archive_open(&a, r, NULL), ALCM_OK);
		assert_int_equal(alcm_archive_set_threads(a, th < 4 ? th : 3), ALCM_OK);
		sink k = {malloc(s.total), 0, s.total};
		assert_int_equal(alcm_archive_decode_pieces(a, order, NT, collect, &k), ALCM_OK);
		fflush(NULL); /* the child's exit() must not print the parent's output again */
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			alarm(60);
			k.len = 0;
			int ok = alcm_archive_decode_pieces(a, order, NT, collect, &k) == ALCM_OK &&
			         k.len == s.total;
			for (int i = 0; ok && i < NT; i++)
				ok = memcmp(k.buf + (size_t)i * N * 4, s.data[i], N * 4) == 0;
			alcm_archive_free(a);
#ifdef __SANITIZE_ADDRESS__
			_exit(ok ? 0 : 1); /* LeakSanitizer cannot follow a child of a threaded fork */
#else
			exit(ok ? 0 : 1); /* a coverage build writes the child's counts at exit */
#endif
		}
		int ws;
		assert_int_equal(waitpid(pid, &ws, 0), pid);
		if (!WIFEXITED(ws))
			print_message("th %u: signal %d\n", th, WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
		k.len = 0;
		assert_int_equal(alcm_archive_decode_pieces(a, order, NT, collect, &k), ALCM_OK);
		assert_memory_equal(k.buf, s.data[0], N * 4);
		free(k.buf);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	alcm_relay_off = 0;
	unlink(path);
	tu_set_free(&s);
}

/* The reading queue without memory (its first or its second allocation fails):
 * ALCM_E_NOMEM, nothing left allocated. */
static void test_direct_nomem(void **state)
{
	(void)state;
	set s;
	make_set(&s, 15);
	const char *path = pack_file(&s, "nomem.alcm", 0);
	tu_alloc ta;
	tu_alloc_init(&ta, 0);
	alcm_reader *r;
	alcm_dio_read_force = 1;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, &ta.a, 0), ALCM_OK);
	alcm_dio_read_force = 0;
	if (!alcm_reader_dio_align(r)) {
		alcm_reader_free(r);
		skip();
	}
	long live = ta.live;
	for (long f = 1; f <= 2; f++) {
		alcm_readq *q;
		ta.fail_at = ta.calls + f;
		assert_int_equal(alcm_readq_new(&q, r, 4), ALCM_E_NOMEM);
		assert_null(q);
		assert_int_equal(ta.live, live);
	}
	ta.fail_at = 0;
	alcm_reader_free(r);
	assert_int_equal(ta.live, 0);
	unlink(path);
	tu_set_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_direct_parts),
		cmocka_unit_test(test_direct_decode),
		cmocka_unit_test(test_direct_damaged),
		cmocka_unit_test(test_direct_shrunk),
		cmocka_unit_test(test_direct_when),
		cmocka_unit_test(test_direct_fork),
		cmocka_unit_test(test_direct_nomem),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
