/*
 * Locked appends (spec 7.2): an append writer holds an exclusive lock on the stream archive
 * from open to commit. A second writer waits, or fails with ALCM_E_BUSY under
 * ALCM_WRITE_NO_WAIT; threads and processes appending at once lose no frame; a process
 * killed while holding the lock releases it; a child forked while it is held does not keep
 * it after commit; alcm-pack --append --no-wait exits 12 and changes nothing. The same with
 * flock() (fcntl's OFD locks refused, as on Linux before 3.15), and a wait interrupted by a
 * signal goes on waiting.
 */
#include "testutil.h"
#include "container.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NVAL 512

/* 1: fcntl() refuses open file description locks (EINVAL), as an old kernel does. */
static int no_ofd;

/* The library's fcntl() calls land here (the test links the static library). */
int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
#ifdef F_OFD_SETLK
	if (no_ofd && (cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK)) {
		errno = EINVAL;
		return -1;
	}
#endif
	static int (*real)(int, int, ...);
	if (!real)
		real = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
	return real(fd, cmd, arg);
}

static float vals[NVAL];

static alcm_tensor frame_tensor(void)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "w";
	t.name_len = 1;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = NVAL;
	t.data = vals;
	t.nbytes = sizeof(vals);
	return t;
}

static int setup(void **state)
{
	(void)state;
	uint64_t seed = 3;
	for (int i = 0; i < NVAL; i++)
		vals[i] = (float)tu_gauss(&seed);
	return 0;
}

/* A stream archive with frame 0. */
static void make_stream(const char *path)
{
	unlink(path);
	alcm_stream_options so;
	alcm_stream_options_default(&so);
	alcm_stream *s = NULL;
	alcm_writer *w = NULL;
	alcm_tensor t = frame_tensor();
	assert_int_equal(alcm_stream_new(&s, &so, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM | ALCM_WRITE_NO_SYNC,
	                                       NULL), ALCM_OK);
	assert_int_equal(alcm_stream_encode(s, w, &t, 1, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	alcm_stream_free(s);
}

/* Encodes the next frame into an open append writer (the frame number comes from the
 * archive, read after the lock as alcm-pack does). */
static int encode_next(alcm_writer *w, const char *path)
{
	alcm_stream_options so;
	alcm_stream_options_default(&so);
	alcm_stream *s = NULL;
	alcm_reader *r = NULL;
	alcm_tensor t = frame_tensor();
	int st = alcm_stream_new(&s, &so, NULL);
	if (!st)
		st = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	if (!st)
		st = alcm_stream_resume(s, r);
	if (!st)
		st = alcm_stream_encode(s, w, &t, 1, NULL);
	alcm_reader_free(r);
	alcm_stream_free(s);
	return st;
}

static int append_frame(const char *path, unsigned flags)
{
	alcm_writer *w = NULL;
	int st = alcm_writer_open_append(&w, path, NULL, NULL, flags | ALCM_WRITE_NO_SYNC);
	if (!st)
		st = encode_next(w, path);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	return st;
}

/* Frames of the archive: their count, and 1 if they are 0, 1, ..., n-1 and every digest and
 * padding byte checks. */
static uint32_t frames_ok(const char *path, int *ok)
{
	alcm_reader *r = NULL;
	uint32_t bad, n = 0;
	*ok = 0;
	if (alcm_reader_open_file(&r, path, NULL, NULL, 0) == ALCM_OK &&
	    alcm_reader_verify(r, &bad) == ALCM_OK) {
		n = alcm_archive_frame_count(r);
		*ok = 1;
		for (uint32_t f = 0; f < n && *ok; f++) {
			alcm_archive *a = NULL;
			float out[NVAL];
			*ok = alcm_archive_open_frame(&a, r, f, NULL) == ALCM_OK &&
			      alcm_archive_tensor_count(a) == 1 &&
			      alcm_archive_decode(a, 0, out, sizeof(out)) == ALCM_OK &&
			      memcmp(out, vals, sizeof(out)) == 0;
			alcm_archive_free(a);
		}
	}
	alcm_reader_free(r);
	return n;
}

static uint64_t generation_of(const char *path)
{
	alcm_reader *r = NULL;
	uint64_t g = alcm_reader_open_file(&r, path, NULL, NULL, 0) ? 0 : alcm_reader_generation(r);
	alcm_reader_free(r);
	return g;
}

static void test_second_writer_busy(void **state)
{
	(void)state;
	const char *path = tu_path("busy.alcm");
	make_stream(path);
	alcm_writer *w1 = NULL, *w2 = NULL;
	assert_int_equal(alcm_writer_open_append(&w1, path, NULL, NULL, ALCM_WRITE_NO_SYNC),
	                 ALCM_OK);
	/* A second writer in the same process is excluded too (another open file description). */
	assert_int_equal(alcm_writer_open_append(&w2, path, NULL, NULL, ALCM_WRITE_NO_WAIT),
	                 ALCM_E_BUSY);
	assert_non_null(strstr(alcm_writer_detail(w2), "busy.alcm"));
	assert_non_null(strstr(alcm_writer_detail(w2), "lock"));
	alcm_writer_free(w2);
	w2 = NULL;
	/* The first writer's reader (its own descriptor, closed when freed) leaves the lock. */
	assert_int_equal(encode_next(w1, path), ALCM_OK);
	assert_int_equal(alcm_writer_open_append(&w2, path, NULL, NULL, ALCM_WRITE_NO_WAIT),
	                 ALCM_E_BUSY);
	alcm_writer_free(w2);
	w2 = NULL;
	assert_int_equal(alcm_writer_commit(w1), ALCM_OK);
	/* Released at commit, before the writer is freed. */
	assert_int_equal(alcm_writer_open_append(&w2, path, NULL, NULL,
	                                         ALCM_WRITE_NO_WAIT | ALCM_WRITE_NO_SYNC), ALCM_OK);
	alcm_writer_free(w1);
	assert_int_equal(encode_next(w2, path), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w2), ALCM_OK);
	alcm_writer_free(w2);
	int ok;
	assert_int_equal(frames_ok(path, &ok), 3);
	assert_true(ok);
	/* An abandoned append releases the lock too. */
	assert_int_equal(alcm_writer_open_append(&w1, path, NULL, NULL, 0), ALCM_OK);
	alcm_writer_free(w1);
	assert_int_equal(append_frame(path, ALCM_WRITE_NO_WAIT), ALCM_OK);
	assert_int_equal(frames_ok(path, &ok), 4);
	assert_true(ok);
	unlink(path);
}

typedef struct thread_arg {
	const char *path;
	int n, failures;
} thread_arg;

static void *appender(void *p)
{
	thread_arg *a = p;
	for (int i = 0; i < a->n; i++)
		a->failures += append_frame(a->path, 0) != ALCM_OK;
	return NULL;
}

/* Threads of one process appending at once: every frame lands, numbered in order. */
static void test_threads(void **state)
{
	(void)state;
	enum { NT = 4, PER = 6 };
	const char *path = tu_path("threads.alcm");
	make_stream(path);
	pthread_t th[NT];
	thread_arg arg[NT];
	for (int i = 0; i < NT; i++) {
		arg[i] = (thread_arg){path, PER, 0};
		assert_int_equal(pthread_create(&th[i], NULL, appender, &arg[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(arg[i].failures, 0);
	}
	int ok;
	assert_int_equal(frames_ok(path, &ok), 1 + NT * PER);
	assert_true(ok);
	assert_int_equal(generation_of(path), 1 + NT * PER);
	unlink(path);
}

/* Processes appending at once (fork): the same. */
static void test_processes(void **state)
{
	(void)state;
	enum { NP = 4, PER = 5 };
	const char *path = tu_path("procs.alcm");
	make_stream(path);
	pid_t pid[NP];
	for (int i = 0; i < NP; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			int bad = 0;
			for (int k = 0; k < PER; k++)
				bad += append_frame(path, 0) != ALCM_OK;
			_exit(bad);
		}
	}
	for (int i = 0; i < NP; i++) {
		int ws;
		assert_int_equal(waitpid(pid[i], &ws, 0), pid[i]);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
	}
	int ok;
	assert_int_equal(frames_ok(path, &ok), 1 + NP * PER);
	assert_true(ok);
	unlink(path);
}

/* A process killed (SIGKILL) while it holds the lock: the kernel releases it, and its
 * unfinished append leaves the archive as it was. */
static void test_killed_holder(void **state)
{
	(void)state;
	const char *path = tu_path("killed.alcm");
	make_stream(path);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(60);
		alcm_writer *w = NULL;
		if (alcm_writer_open_append(&w, path, NULL, NULL, 0) || encode_next(w, path))
			_exit(1);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c;
	assert_int_equal(read(p[0], &c, 1), 1);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_WAIT),
	                 ALCM_E_BUSY);
	alcm_writer_free(w);
	kill(pid, SIGKILL);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	close(p[0]);
	close(p[1]);
	assert_int_equal(append_frame(path, ALCM_WRITE_NO_WAIT), ALCM_OK);
	int ok;
	assert_int_equal(frames_ok(path, &ok), 2);
	assert_true(ok);
	unlink(path);
}

/* A child forked while the lock is held (an HDF5 reader process, say) shares the locked
 * descriptor; commit must still release the lock while the child lives on. */
static pid_t idle_child(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		alarm(60); /* never outlive a failed test */
		pause();
		_exit(0);
	}
	return pid;
}

static void test_forked_child(void **state)
{
	(void)state;
	const char *path = tu_path("forked.alcm");
	make_stream(path);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC),
	                 ALCM_OK);
	pid_t pid = idle_child();
	assert_true(pid >= 0);
	int st1 = encode_next(w, path);
	if (!st1)
		st1 = alcm_writer_commit(w);
	alcm_writer_free(w);
	int st2 = append_frame(path, ALCM_WRITE_NO_WAIT);
	/* The same for an abandoned append. */
	w = NULL;
	int st3 = alcm_writer_open_append(&w, path, NULL, NULL, 0);
	pid_t pid2 = idle_child();
	alcm_writer_free(w);
	int st4 = append_frame(path, ALCM_WRITE_NO_WAIT);
	kill(pid, SIGKILL);
	kill(pid2, SIGKILL);
	waitpid(pid, NULL, 0);
	waitpid(pid2, NULL, 0);
	assert_int_equal(st1, ALCM_OK);
	assert_int_equal(st2, ALCM_OK);
	assert_int_equal(st3, ALCM_OK);
	assert_int_equal(st4, ALCM_OK);
	int ok;
	assert_int_equal(frames_ok(path, &ok), 4);
	assert_true(ok);
	unlink(path);
}

/* Replacing the archive while an appender waits: the appender locks the file now at the
 * path, not the replaced one, and its frame lands there. */
static void test_replaced_while_waiting(void **state)
{
	(void)state;
	const char *path = tu_path("replaced.alcm");
	const char *fresh = tu_path("replaced-new.alcm");
	make_stream(path);
	make_stream(fresh);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC),
	                 ALCM_OK);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(60);
		_exit(append_frame(path, 0) == ALCM_OK ? 0 : 1);
	}
	struct timespec ts = {0, 200 * 1000 * 1000};
	nanosleep(&ts, NULL);
	/* The old file, still locked by w, is replaced; then w lets go of it. */
	assert_int_equal(rename(fresh, path), 0);
	alcm_writer_free(w);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	int ok;
	assert_int_equal(frames_ok(path, &ok), 2);
	assert_true(ok);
	unlink(path);
}

/* alcm-pack --append --no-wait against a held lock: exit 12, a message, nothing changed;
 * without --no-wait it waits, then appends. */
static void test_cli(void **state)
{
	(void)state;
	const char *path = tu_path("cli.alcm");
	const char *npz = tu_path("cli.npz");
	const char *err = tu_path("cli.err");
	make_stream(path);
	alcm_output *o = NULL;
	alcm_tensor t = frame_tensor();
	assert_int_equal(alcm_output_open(&o, npz, ALCM_FILE_NPZ, ALCM_WRITE_OVERWRITE, NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_output_write(o, &t), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	alcm_output_free(o);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC),
	                 ALCM_OK);
	struct stat before, after;
	assert_int_equal(stat(path, &before), 0);
	char cmd[3 * 4096];
	snprintf(cmd, sizeof(cmd), "'%s/alcm-pack' --append --no-wait '%s' -o '%s' 2>'%s'",
	         ALCM_BIN_DIR, npz, path, err);
	int rc = system(cmd);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 12);
	size_t n;
	char *msg = (char *)tu_read_file(err, &n);
	assert_non_null(msg);
	msg[n ? n - 1 : 0] = '\0';
	assert_non_null(strstr(msg, "cli.alcm"));
	assert_non_null(strstr(msg, "lock"));
	free(msg);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(before.st_size, after.st_size);
	assert_int_equal(generation_of(path), 1);
	/* Without --no-wait: it waits (and says so) until the lock is released. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(60);
		snprintf(cmd, sizeof(cmd), "'%s/alcm-pack' --append '%s' -o '%s' 2>'%s'",
		         ALCM_BIN_DIR, npz, path, err);
		rc = system(cmd);
		_exit(WIFEXITED(rc) ? WEXITSTATUS(rc) : 99);
	}
	struct timespec ts = {0, 500 * 1000 * 1000};
	nanosleep(&ts, NULL);
	assert_int_equal(waitpid(pid, &rc, WNOHANG), 0); /* still waiting */
	assert_int_equal(generation_of(path), 1);
	assert_int_equal(encode_next(w, path), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	assert_int_equal(waitpid(pid, &rc, 0), pid);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 0);
	msg = (char *)tu_read_file(err, &n);
	assert_non_null(msg);
	msg[n ? n - 1 : 0] = '\0';
	assert_non_null(strstr(msg, "waiting for another writer"));
	free(msg);
	int ok;
	assert_int_equal(frames_ok(path, &ok), 3);
	assert_true(ok);
	unlink(path);
	unlink(npz);
	unlink(err);
}

/* The flock() fallback: the same exclusion, in one process and across processes. */
static void test_flock_fallback(void **state)
{
	no_ofd = 1;
	test_second_writer_busy(state);
	test_threads(state);
	test_killed_holder(state);
	no_ofd = 0;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* A signal that interrupts the wait for the lock (no SA_RESTART) does not end it. */
static void test_wait_interrupted(void **state)
{
	(void)state;
	for (no_ofd = 0; no_ofd < 2; no_ofd++) {
		const char *path = tu_path("eintr.alcm");
		make_stream(path);
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			alarm(60);
			alcm_writer *w = NULL;
			if (alcm_writer_open_append(&w, path, NULL, NULL, 0) || write(p[1], "x", 1) != 1)
				_exit(1);
			struct timespec ts = {0, 600 * 1000 * 1000};
			nanosleep(&ts, NULL);
			alcm_writer_free(w);
			_exit(0);
		}
		char c;
		assert_int_equal(read(p[0], &c, 1), 1);
		struct sigaction sa, old;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_alarm;
		sigaction(SIGALRM, &sa, &old);
		struct itimerval it = {{0, 100 * 1000}, {0, 100 * 1000}};
		setitimer(ITIMER_REAL, &it, NULL);
		int st = append_frame(path, 0);
		memset(&it, 0, sizeof(it));
		setitimer(ITIMER_REAL, &it, NULL);
		sigaction(SIGALRM, &old, NULL);
		waitpid(pid, NULL, 0);
		close(p[0]);
		close(p[1]);
		assert_int_equal(st, ALCM_OK);
		int ok;
		assert_int_equal(frames_ok(path, &ok), 2);
		assert_true(ok);
		unlink(path);
	}
	no_ofd = 0;
}

/* What is not an archive to append to: a missing path, a FIFO, a descriptor that is not a
 * regular file for the internal reader. */
static void test_not_appendable(void **state)
{
	(void)state;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, tu_path("missing.alcm"), NULL, NULL, 0),
	                 ALCM_E_IO);
	assert_non_null(strstr(alcm_writer_detail(w), "missing.alcm"));
	alcm_writer_free(w);
	const char *fifo = tu_path("fifo.alcm");
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, fifo, NULL, NULL, 0), ALCM_E_IO);
	assert_non_null(strstr(alcm_writer_detail(w), "not a regular file"));
	alcm_writer_free(w);
	unlink(fifo);
	int p[2];
	assert_int_equal(pipe(p), 0);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_fd(&r, p[0], "pipe", NULL, NULL, 0), ALCM_E_IO);
	assert_non_null(strstr(alcm_reader_detail(r), "not a regular file"));
	alcm_reader_free(r);
	r = NULL;
	assert_int_equal(alcm_reader_open_fd(&r, -1, "bad", NULL, NULL, 0), ALCM_E_ARG);
	assert_int_equal(alcm_reader_open_fd(&r, p[0], NULL, NULL, NULL, 0), ALCM_E_ARG);
	close(p[0]);
	close(p[1]);
	assert_int_equal(alcm_reader_open_fd(&r, p[0], "closed", NULL, NULL, 0), ALCM_E_IO);
	alcm_reader_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_writer_busy),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_processes),
		cmocka_unit_test(test_killed_holder),
		cmocka_unit_test(test_forked_child),
		cmocka_unit_test(test_replaced_while_waiting),
		cmocka_unit_test(test_cli),
		cmocka_unit_test(test_flock_fallback),
		cmocka_unit_test(test_wait_interrupted),
		cmocka_unit_test(test_not_appendable),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
