/*
 * Faults: every allocation failing in turn during a full pack (input file -> encoder ->
 * memory or file writer) and a full unpack (reader -> archive -> decode -> output file),
 * lossless and lossy; every I/O call failing in turn (write, pwrite, pread, fsync, close,
 * ftruncate, rename, link, linkat, mkostemp, fstat, open with O_TMPFILE: interposed below),
 * or interrupted (EINTR), or short, both with unnamed temporary files (O_TMPFILE) and with
 * the named ones used where O_TMPFILE is refused; a full disk (a 64 KiB tmpfs when one can
 * be mounted, and RLIMIT_FSIZE short writes); a rename that fails; a target that appears
 * during a write. Each must end in a clean error: the right status, nothing left allocated,
 * no temporary file, no partial output, an existing target untouched, a stream archive still
 * readable after a failed append.
 */
#include "testutil.h"
#include "codec_internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fixtures ------------------------------------------------------------------------ */

#define NT 5

typedef struct fixture {
	char dir[4096];     /* private scratch directory */
	alcm_tensor t[NT];
	uint8_t *data[NT];
	char npz[4200], st[4200];         /* the tensors as input files */
	uint8_t *arch[2];                 /* lossless and lossy archives */
	size_t arch_len[2];
	char arch_path[2][4200];
} fixture;

static fixture fx;

/* 1: open(O_TMPFILE) fails with EOPNOTSUPP, as on NFS, so the named temporary files are
 * used. */
static int named_only;
/* 1: /proc/self/fd is missing (access() fails), so an unnamed file could not be named. */
static int no_proc;
/* 1: open(O_PATH) fails, so commit keeps the unnamed file through a duplicate. */
static int no_opath;

static void make_tensor(int i, const char *name, int dtype, uint32_t ndim, const uint64_t *shape,
                        uint64_t *seed)
{
	alcm_tensor *t = &fx.t[i];
	memset(t, 0, sizeof(*t));
	t->name = name;
	t->name_len = strlen(name);
	t->dtype = dtype;
	t->ndim = ndim;
	uint64_t n = 1;
	for (uint32_t d = 0; d < ndim; d++)
		n *= t->shape[d] = shape[d];
	size_t w = alcm_dtype_size(dtype);
	t->nbytes = n * w;
	fx.data[i] = malloc(t->nbytes ? t->nbytes : 1);
	for (uint64_t k = 0; k < n; k++) {
		double v = tu_gauss(seed);
		uint8_t *p = fx.data[i] + k * w;
		switch (dtype) {
		case ALCM_DTYPE_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
		case ALCM_DTYPE_F64: memcpy(p, &v, 8); break;
		case ALCM_DTYPE_F16: alcm_store16(p, alcm_float_to_half((float)v)); break;
		case ALCM_DTYPE_BOOL: *p = v > 0; break;
		default: { int32_t x = (int32_t)(v * 1000); memcpy(p, &x, w); }
		}
	}
	t->data = fx.data[i];
}

static const char *in_dir(const char *name)
{
	static char buf[4][4200];
	static int next;
	char *b = buf[next++ & 3];
	snprintf(b, sizeof(buf[0]), "%s/%s", fx.dir, name);
	return b;
}

/* Number of entries of fx.dir (or dir) whose name starts with ".<name>." (temp files). */
static int temps_in(const char *dir, const char *name)
{
	char prefix[512];
	snprintf(prefix, sizeof(prefix), ".%s.", name);
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	if (d)
		closedir(d);
	return n;
}

static int file_is(const char *path, const char *content)
{
	size_t len;
	uint8_t *p = tu_read_file(path, &len);
	int same = p && len == strlen(content) && memcmp(p, content, len) == 0;
	free(p);
	return same;
}

/* The fixture tensor of t's name, if t has its dtype and size (inputs may list tensors in
 * another order: safetensors sorts them). */
static const alcm_tensor *fixture_named(const alcm_tensor *t)
{
	for (int j = 0; j < NT; j++)
		if (fx.t[j].name_len == t->name_len && memcmp(fx.t[j].name, t->name, t->name_len) == 0)
			return fx.t[j].dtype == t->dtype && fx.t[j].nbytes == t->nbytes ? &fx.t[j] : NULL;
	return NULL;
}

static void default_options(alcm_pack_options *o, int lossy)
{
	alcm_pack_options_default(o);
	o->threads = 1;
	o->chunk_bytes = 4096; /* several chunks per tensor */
	if (lossy) {
		o->mode = ALCM_MODE_MAX_ERROR;
		o->bound = 1e-3;
		o->prune = 0.1;
	}
}

static int write_input(const char *path, int format)
{
	alcm_output *o = NULL;
	int st = alcm_output_open(&o, path, format, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_output_plan(o, fx.t, NT);
	for (int i = 0; i < NT && !st; i++)
		st = alcm_output_write(o, &fx.t[i]);
	if (!st)
		st = alcm_output_commit(o);
	alcm_output_free(o);
	return st;
}

static int pack_memory(const alcm_allocator *a, int lossy, uint8_t **out, size_t *len);

static int setup(void **state)
{
	(void)state;
	snprintf(fx.dir, sizeof(fx.dir), "%s", tu_path("faults.XXXXXX"));
	if (!mkdtemp(fx.dir))
		return -1;
	uint64_t seed = 42;
	make_tensor(0, "layer.weight", ALCM_DTYPE_F32, 2, (uint64_t[]){4, 1500}, &seed);
	make_tensor(1, "layer.bias", ALCM_DTYPE_F16, 1, (uint64_t[]){300}, &seed);
	make_tensor(2, "ids", ALCM_DTYPE_I32, 1, (uint64_t[]){100}, &seed);
	make_tensor(3, "mask", ALCM_DTYPE_BOOL, 2, (uint64_t[]){3, 5}, &seed);
	make_tensor(4, "scale", ALCM_DTYPE_F64, 0, NULL, &seed);
	snprintf(fx.npz, sizeof(fx.npz), "%s", in_dir("in.npz"));
	snprintf(fx.st, sizeof(fx.st), "%s", in_dir("in.safetensors"));
	if (write_input(fx.npz, ALCM_FILE_NPZ) || write_input(fx.st, ALCM_FILE_SAFETENSORS))
		return -1;
	for (int lossy = 0; lossy < 2; lossy++) {
		if (pack_memory(NULL, lossy, &fx.arch[lossy], &fx.arch_len[lossy]))
			return -1;
		snprintf(fx.arch_path[lossy], sizeof(fx.arch_path[0]), "%s",
		         in_dir(lossy ? "lossy.alcm" : "lossless.alcm"));
		if (tu_write_file(fx.arch_path[lossy], fx.arch[lossy], fx.arch_len[lossy]))
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NT; i++)
		free(fx.data[i]);
	for (int i = 0; i < 2; i++) {
		free(fx.arch[i]);
		unlink(fx.arch_path[i]);
	}
	unlink(fx.npz);
	unlink(fx.st);
	rmdir(fx.dir);
	return 0;
}

/* ---- operations ---------------------------------------------------------------------- */

/* Encodes the fixture tensors (from `in` when not NULL, else from memory) into w. */
static int encode_into(alcm_writer *w, alcm_input *in, const alcm_allocator *a, int lossy)
{
	alcm_pack_options o;
	default_options(&o, lossy);
	alcm_encoder *e = NULL;
	int st = alcm_encoder_new(&e, w, &o, a);
	if (!st)
		st = alcm_encoder_set_meta(e, "origin", "test_faults", 11);
	for (int i = 0; i < NT && !st; i++) {
		alcm_tensor t = fx.t[i];
		if (in) {
			int has = 0;
			st = alcm_input_next(in, &t, &has);
			if (!st && !has)
				st = ALCM_E_CORRUPT;
			if (st)
				break;
		}
		st = alcm_encoder_add(e, &t, NULL);
	}
	if (!st)
		st = alcm_encoder_finish(e);
	alcm_encoder_free(e);
	return st;
}

static int pack_memory(const alcm_allocator *a, int lossy, uint8_t **out, size_t *len)
{
	alcm_writer *w = NULL;
	int st = alcm_writer_open_memory(&w, 0, a);
	if (!st)
		st = encode_into(w, NULL, a, lossy);
	if (!st)
		st = alcm_writer_commit(w);
	if (!st && out) {
		const void *p;
		st = alcm_writer_memory(w, &p, len);
		*out = malloc(*len);
		memcpy(*out, p, *len);
	}
	alcm_writer_free(w);
	return st;
}

typedef struct op_ctx {
	int lossy;
	int format;          /* input or output file format */
	const char *target;  /* output path */
	int from_file;
} op_ctx;

typedef int (*alloc_op)(const alcm_allocator *a, const op_ctx *c);

/* An operation that succeeded with a wrong result returns CHECK_FAILED - status. */
#define CHECK_FAILED (-100)

/* Decodes every tensor of an archive and compares it with the fixture: bit-exact, or within
 * the bound when lossy. @return ALCM_OK or the first problem. */
static int check_archive(alcm_reader *r, int lossy)
{
	alcm_archive *ar = NULL;
	int st = alcm_archive_open(&ar, r, NULL);
	if (!st && alcm_archive_tensor_count(ar) != NT)
		st = ALCM_E_CORRUPT;
	for (size_t i = 0; i < NT && !st; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(ar, i, &ti);
		alcm_tensor named = {.name = ti.name, .name_len = ti.name_len, .dtype = ti.dtype,
		                     .nbytes = ti.raw_bytes};
		const alcm_tensor *x = fixture_named(&named);
		if (!x) {
			st = ALCM_E_CORRUPT;
			break;
		}
		uint8_t *buf = malloc(ti.raw_bytes ? ti.raw_bytes : 1);
		st = alcm_archive_decode(ar, i, buf, ti.raw_bytes);
		alcm_error_stats es;
		if (!st && (alcm_tensor_measure(x, buf, &es) ||
		            !alcm_error_within(&es, lossy ? ti.mode : ALCM_MODE_LOSSLESS, 1e-3)))
			st = ALCM_E_BOUND;
		free(buf);
	}
	alcm_archive_free(ar);
	return st;
}

/* A run that met a failed allocation and still succeeded must have produced a correct
 * archive (the encoder may fall back, e.g. when a trial compression fails). */
static int op_pack_memory(const alcm_allocator *a, const op_ctx *c)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int st = pack_memory(a, c->lossy, &buf, &len);
	if (!st) {
		alcm_reader *r = NULL;
		st = alcm_reader_open_memory(&r, buf, len, NULL, NULL, NULL, 0);
		if (!st)
			st = check_archive(r, c->lossy);
		if (st)
			st = CHECK_FAILED - st; /* not a status: fails the walk */
		alcm_reader_free(r);
	}
	free(buf);
	return st;
}

/* What alcm-pack does: input file -> encoder -> file writer, committed atomically. */
static int op_pack_file(const alcm_allocator *a, const op_ctx *c)
{
	alcm_input *in = NULL;
	alcm_writer *w = NULL;
	int st = alcm_input_open(&in, c->format == ALCM_FILE_NPZ ? fx.npz : fx.st, NULL, a);
	if (!st)
		st = alcm_writer_open_file(&w, c->target, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, a);
	if (!st)
		st = encode_into(w, in, a, c->lossy);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	alcm_input_free(in);
	if (!st) {
		alcm_reader *r = NULL;
		st = alcm_reader_open_file(&r, c->target, NULL, NULL, 0);
		if (!st)
			st = check_archive(r, c->lossy);
		if (st)
			st = CHECK_FAILED - st;
		alcm_reader_free(r);
	}
	return st;
}

/* What alcm-unpack does: reader -> archive -> decode each tensor -> output file. */
static int op_unpack(const alcm_allocator *a, const op_ctx *c)
{
	alcm_reader *r = NULL;
	alcm_archive *ar = NULL;
	alcm_output *o = NULL;
	int st = c->from_file
	             ? alcm_reader_open_file(&r, fx.arch_path[c->lossy], NULL, a, 0)
	             : alcm_reader_open_memory(&r, fx.arch[c->lossy], fx.arch_len[c->lossy], NULL,
	                                       NULL, a, 0);
	if (!st)
		st = alcm_reader_verify(r, NULL);
	if (!st)
		st = alcm_archive_open(&ar, r, a);
	if (!st && c->target)
		st = alcm_output_open(&o, c->target, c->format,
		                      ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, a);
	alcm_tensor plan[NT];
	size_t n = ar ? alcm_archive_tensor_count(ar) : 0;
	if (!st && n != NT)
		st = ALCM_E_CORRUPT;
	for (size_t i = 0; i < n && !st && o; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(ar, i, &ti);
		memset(&plan[i], 0, sizeof(plan[i]));
		plan[i].name = ti.name;
		plan[i].name_len = ti.name_len;
		plan[i].dtype = ti.dtype;
		plan[i].ndim = ti.ndim;
		memcpy(plan[i].shape, ti.shape, sizeof(ti.shape));
		plan[i].nbytes = ti.raw_bytes;
	}
	if (!st && o)
		st = alcm_output_plan(o, plan, n);
	for (size_t i = 0; i < n && !st; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(ar, i, &ti);
		uint8_t *buf = malloc(ti.raw_bytes ? ti.raw_bytes : 1);
		st = alcm_archive_decode(ar, i, buf, ti.raw_bytes);
		if (!st && !c->lossy && memcmp(buf, fx.t[i].data, ti.raw_bytes) != 0)
			st = ALCM_E_CORRUPT; /* never a wrong answer instead of an error */
		if (!st && o) {
			alcm_tensor t = plan[i];
			t.data = buf;
			st = alcm_output_write(o, &t);
		}
		free(buf);
	}
	if (!st && o)
		st = alcm_output_commit(o);
	alcm_output_free(o);
	alcm_archive_free(ar);
	alcm_reader_free(r);
	return st;
}

static int op_stream(const alcm_allocator *a, const op_ctx *c)
{
	(void)c;
	alcm_stream_options so;
	alcm_stream_options_default(&so);
	default_options(&so.pack, 1);
	so.pack.prune = 0;
	so.error_feedback = 1;
	so.schedule = 1;
	so.bound_max = 1e-2;
	alcm_stream *s = NULL;
	alcm_writer *w = NULL;
	int st = alcm_stream_new(&s, &so, a);
	if (!st)
		st = alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, a);
	for (int f = 0; f < 3 && !st; f++)
		st = alcm_stream_encode(s, w, fx.t, 2, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	alcm_stream_free(s);
	return st;
}

/*
 * Runs op with allocation k failing, for k = 1, 2, ... until a run makes fewer than k
 * allocations (and must then succeed). Every failing run must return ALCM_E_NOMEM, free
 * everything it allocated, and leave neither a temporary file nor the target behind; or,
 * where the library has a fallback, succeed with a correct result (the op checks it).
 * @return the number of allocations of a full run; *fallbacks the runs that succeeded.
 */
static long walk(alloc_op op, const op_ctx *c, const char *what, long *fallbacks)
{
	const char *base = c->target ? strrchr(c->target, '/') + 1 : NULL;
	*fallbacks = 0;
	for (long k = 1;; k++) {
		tu_alloc ta;
		tu_alloc_init(&ta, k);
		if (c->target)
			unlink(c->target);
		int st = op(&ta.a, c);
		if (ta.live != 0)
			fail_msg("%s: allocation %ld failing leaks %ld blocks (status %d)", what, k,
			         ta.live, st);
		if (base && temps_in(fx.dir, base) != 0)
			fail_msg("%s: allocation %ld failing leaves a temporary file", what, k);
		if (ta.calls < k) {
			if (st != ALCM_OK)
				fail_msg("%s: status %d (%s) without a failed allocation", what, st,
				         alcm_strerror(st));
			if (c->target)
				assert_true(tu_file_exists(c->target));
			return k - 1;
		}
		if (st == ALCM_OK) {
			++*fallbacks;
			continue;
		}
		if (st <= CHECK_FAILED)
			fail_msg("%s: allocation %ld of %ld failing: success, but the archive does not "
			         "decode right (%s)", what, k, ta.calls, alcm_strerror(CHECK_FAILED - st));
		if (st != ALCM_E_NOMEM)
			fail_msg("%s: allocation %ld of %ld failing gives status %d (%s), not "
			         "ALCM_E_NOMEM", what, k, ta.calls, st, alcm_strerror(st));
		if (c->target && tu_file_exists(c->target))
			fail_msg("%s: allocation %ld failing still publishes the target", what, k);
	}
}

/* ---- allocation failure tests -------------------------------------------------------- */

static void test_alloc_pack_memory(void **state)
{
	(void)state;
	for (int lossy = 0; lossy < 2; lossy++) {
		op_ctx c = {.lossy = lossy};
		long fb, n = walk(op_pack_memory, &c, lossy ? "lossy pack to memory" : "pack to memory",
		                  &fb);
		print_message("pack to memory (%s): %ld allocations, each failed in turn (%ld "
		              "fallbacks)\n", lossy ? "lossy" : "lossless", n, fb);
	}
}

static void test_alloc_pack_file(void **state)
{
	(void)state;
	/* With a named temporary file too (its path is allocated). */
	named_only = 1;
	op_ctx nc = {.lossy = 0, .format = ALCM_FILE_NPZ, .target = in_dir("out.alcm")};
	long nfb, nn = walk(op_pack_file, &nc, "pack a file (named temporary)", &nfb);
	print_message("pack npz to a file with a named temporary file: %ld allocations, each "
	              "failed in turn\n", nn);
	unlink(nc.target);
	named_only = 0;
	const int formats[2] = {ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	for (int lossy = 0; lossy < 2; lossy++)
		for (int f = 0; f < 2; f++) {
			op_ctx c = {.lossy = lossy, .format = formats[f], .target = in_dir("out.alcm")};
			long fb, n = walk(op_pack_file, &c, "pack a file", &fb);
			print_message("pack %s to a file (%s): %ld allocations, each failed in turn "
			              "(%ld fallbacks)\n", alcm_format_name(formats[f]),
			              lossy ? "lossy" : "lossless", n, fb);
			unlink(c.target);
		}
}

static void test_alloc_unpack(void **state)
{
	(void)state;
	for (int lossy = 0; lossy < 2; lossy++)
		for (int from_file = 0; from_file < 2; from_file++) {
			op_ctx c = {.lossy = lossy, .from_file = from_file};
			long fb, n = walk(op_unpack, &c, "unpack", &fb);
			assert_int_equal(fb, 0);
			print_message("unpack from %s (%s): %ld allocations, each failed in turn\n",
			              from_file ? "a file" : "memory", lossy ? "lossy" : "lossless", n);
		}
}

static void test_alloc_unpack_to_file(void **state)
{
	(void)state;
	const int formats[2] = {ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS};
	const char *names[2] = {"out.npz", "out.safetensors"};
	for (int lossy = 0; lossy < 2; lossy++)
		for (int f = 0; f < 2; f++) {
			op_ctx c = {.lossy = lossy, .from_file = 1, .format = formats[f],
			            .target = in_dir(names[f])};
			long fb, n = walk(op_unpack, &c, "unpack to a file", &fb);
			assert_int_equal(fb, 0);
			print_message("unpack to %s (%s): %ld allocations, each failed in turn\n",
			              names[f], lossy ? "lossy" : "lossless", n);
			unlink(c.target);
		}
}

static void test_alloc_stream(void **state)
{
	(void)state;
	op_ctx c = {0};
	long fb, n = walk(op_stream, &c, "stream encode", &fb);
	print_message("stream of 3 frames: %ld allocations, each failed in turn (%ld "
	              "fallbacks)\n", n, fb);
}

/* ---- I/O fault injection ------------------------------------------------------------- */

/*
 * The library's calls to these functions resolve to the definitions below (the test links
 * the static library, and an executable's definition wins); they pass through to libc's
 * (dlsym RTLD_NEXT) unless a fault is armed for that call. Only descriptors above 2 count,
 * so that the test's own output is never disturbed.
 */
typedef enum io_op {
	OP_WRITE, OP_PWRITE, OP_PREAD, OP_FSYNC, OP_CLOSE, OP_FTRUNCATE, OP_RENAME, OP_LINK,
	OP_MKOSTEMP, OP_FSTAT, OP_LINKAT, OP_TMPFILE, OP_FCNTL, OP_STATX, OP_COUNT
} io_op;
static const char *const op_names[OP_COUNT] = {
	"write", "pwrite", "pread", "fsync", "close", "ftruncate", "rename", "link", "mkostemp",
	"fstat", "linkat", "open(O_TMPFILE)", "fcntl", "statx",
};


enum { HOW_FAIL, HOW_EINTR, HOW_SHORT, HOW_ZERO };

static struct {
	io_op op;
	long at;     /* the call to fault, 1-based; 0: none */
	int how, err;
	long calls;
	int hit;
} inj;

static int inject(io_op op, int fd)
{
	if (!inj.at || op != inj.op || (fd >= 0 && fd <= 2))
		return 0;
	if (++inj.calls != inj.at)
		return 0;
	inj.hit = 1;
	return 1;
}

static void *real_fn(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	if (!f)
		abort();
	return f;
}
#define REAL(type, name) ((type)real_fn(#name))

/* For the calls that move bytes: fail, interrupt, shorten or return 0 as armed. *n is
 * shortened in place; @return 1 if the call must return *ret without doing anything. */
static int transfer_fault(io_op op, int fd, size_t *n, ssize_t *ret)
{
	if (!inject(op, fd))
		return 0;
	switch (inj.how) {
	case HOW_EINTR: errno = EINTR; *ret = -1; return 1;
	case HOW_ZERO: *ret = 0; return 1;
	case HOW_SHORT: if (*n > 1) *n /= 2; return 0;
	default: errno = inj.err; *ret = -1; return 1;
	}
}

ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t r;
	if (transfer_fault(OP_WRITE, fd, &n, &r))
		return r;
	return REAL(ssize_t (*)(int, const void *, size_t), write)(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t r;
	if (transfer_fault(OP_PWRITE, fd, &n, &r))
		return r;
	return REAL(ssize_t (*)(int, const void *, size_t, off_t), pwrite)(fd, buf, n, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r;
	if (transfer_fault(OP_PREAD, fd, &n, &r))
		return r;
	return REAL(ssize_t (*)(int, void *, size_t, off_t), pread)(fd, buf, n, off);
}

/* The calls that succeed or fail: an interruption is reported as EINTR too. */
static int simple_fault(io_op op, int fd)
{
	if (!inject(op, fd))
		return 0;
	errno = inj.how == HOW_EINTR ? EINTR : inj.err;
	return 1;
}

int fsync(int fd)
{
	if (simple_fault(OP_FSYNC, fd))
		return -1;
	return REAL(int (*)(int), fsync)(fd);
}

int close(int fd)
{
	int r = REAL(int (*)(int), close)(fd);
	/* Linux releases the descriptor even when close reports an error. */
	if (simple_fault(OP_CLOSE, fd))
		return -1;
	return r;
}

/* fcntl: the direct-I/O writer's F_GETFL/F_SETFL (format/atomic.c); a failure must fall
 * back to the page cache or report, never lose bytes. */
int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	if ((cmd == F_GETFL || cmd == F_SETFL) && simple_fault(OP_FCNTL, fd))
		return -1;
	return REAL(int (*)(int, int, ...), fcntl)(fd, cmd, arg);
}

/* statx: the direct-I/O alignment query; without it the writer assumes 4096. */
int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *sx)
{
	if (simple_fault(OP_STATX, dirfd))
		return -1;
	return REAL(int (*)(int, const char *, int, unsigned, struct statx *), statx)(dirfd, path,
	                                                                               flags, mask, sx);
}

int ftruncate(int fd, off_t len)
{
	if (simple_fault(OP_FTRUNCATE, fd))
		return -1;
	return REAL(int (*)(int, off_t), ftruncate)(fd, len);
}

int fstat(int fd, struct stat *sb)
{
	if (simple_fault(OP_FSTAT, fd))
		return -1;
	return REAL(int (*)(int, struct stat *), fstat)(fd, sb);
}

int rename(const char *from, const char *to)
{
	if (simple_fault(OP_RENAME, -1))
		return -1;
	return REAL(int (*)(const char *, const char *), rename)(from, to);
}

int link(const char *from, const char *to)
{
	if (simple_fault(OP_LINK, -1))
		return -1;
	return REAL(int (*)(const char *, const char *), link)(from, to);
}

int linkat(int dfd, const char *from, int tfd, const char *to, int flags)
{
	if (simple_fault(OP_LINKAT, -1))
		return -1;
	return REAL(int (*)(int, const char *, int, const char *, int), linkat)(dfd, from, tfd, to,
	                                                                         flags);
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if ((flags & O_TMPFILE) == O_TMPFILE) {
		if (named_only) {
			errno = EOPNOTSUPP;
			return -1;
		}
		if (simple_fault(OP_TMPFILE, -1))
			return -1;
	}
#ifdef O_PATH
	if ((flags & O_PATH) && no_opath) {
		errno = EMFILE;
		return -1;
	}
#endif
	return REAL(int (*)(const char *, int, ...), open)(path, flags, mode);
}

int access(const char *path, int how)
{
	if (no_proc && strncmp(path, "/proc/", 6) == 0) {
		errno = ENOENT;
		return -1;
	}
	return REAL(int (*)(const char *, int), access)(path, how);
}

int mkostemp(char *tmpl, int flags)
{
	if (simple_fault(OP_MKOSTEMP, -1))
		return -1;
	return REAL(int (*)(char *, int), mkostemp)(tmpl, flags);
}

/* A scenario runs one operation with whatever fault is armed and checks what it left. It
 * returns the operation's status, or CHECK_FAILED - status when it left a mess. */
typedef int (*io_scenario)(void);

static const char *io_target(const char *name)
{
	return in_dir(name);
}

/* Target states a failed operation must leave: absent (new) or the old bytes (replaced). */
static int target_ok(const char *target, int replaced, int st)
{
	if (temps_in(fx.dir, strrchr(target, '/') + 1) != 0)
		return 0;
	if (st == ALCM_OK)
		return tu_file_exists(target);
	return replaced ? file_is(target, "precious") : !tu_file_exists(target);
}

static int pack_to(const char *target, int replaced)
{
	if (replaced)
		tu_write_file(target, "precious", 8);
	else
		unlink(target);
	alcm_writer *w = NULL;
	int st = alcm_writer_open_file(&w, target, replaced ? ALCM_WRITE_OVERWRITE : 0, NULL);
	if (!st)
		st = encode_into(w, NULL, NULL, 1);
	if (!st)
		st = alcm_writer_commit(w);
	if (st && w && !strstr(alcm_writer_detail(w), strrchr(target, '/') + 1))
		st = CHECK_FAILED - st; /* the message must name the file */
	alcm_writer_free(w);
	if (st > CHECK_FAILED && !target_ok(target, replaced, st))
		return CHECK_FAILED - (st ? st : ALCM_E_IO);
	if (st == ALCM_OK) {
		alcm_reader *r = NULL;
		inj.at = 0; /* verify without faults */
		int vs = alcm_reader_open_file(&r, target, NULL, NULL, 0);
		if (!vs)
			vs = check_archive(r, 1);
		alcm_reader_free(r);
		if (vs)
			return CHECK_FAILED - vs;
	}
	return st;
}

static int sc_pack_new(void) { return pack_to(io_target("io.alcm"), 0); }
static int sc_pack_replace(void) { return pack_to(io_target("io-old.alcm"), 1); }

static int output_to(const char *target, int format, int replaced)
{
	if (replaced)
		tu_write_file(target, "precious", 8);
	else
		unlink(target);
	alcm_output *o = NULL;
	int st = alcm_output_open(&o, target, format, replaced ? ALCM_WRITE_OVERWRITE : 0, NULL);
	int n = format == ALCM_FILE_NPY ? 1 : NT;
	if (!st)
		st = alcm_output_plan(o, fx.t, n);
	for (int i = 0; i < n && !st; i++)
		st = alcm_output_write(o, &fx.t[i]);
	if (!st)
		st = alcm_output_commit(o);
	if (st && o && !strstr(alcm_output_detail(o), strrchr(target, '/') + 1))
		st = CHECK_FAILED - st;
	alcm_output_free(o);
	if (st > CHECK_FAILED && !target_ok(target, replaced, st))
		return CHECK_FAILED - (st ? st : ALCM_E_IO);
	if (st == ALCM_OK) {
		/* Read it back: every tensor, exactly. */
		inj.at = 0;
		alcm_input *in = NULL;
		int rs = alcm_input_open(&in, target, NULL, NULL);
		for (int i = 0; i < n && !rs; i++) {
			alcm_tensor t;
			int has = 0;
			rs = alcm_input_next(in, &t, &has);
			/* A lone .npy is named after its file. */
			const alcm_tensor *x = rs || !has ? NULL
			                       : format == ALCM_FILE_NPY ? &fx.t[0] : fixture_named(&t);
			if (x && (x->dtype != t.dtype || x->nbytes != t.nbytes))
				x = NULL;
			if (!rs && (!x || memcmp(t.data, x->data, t.nbytes) != 0))
				rs = ALCM_E_CORRUPT;
		}
		alcm_input_free(in);
		if (rs)
			return CHECK_FAILED - rs;
	}
	return st;
}

static int sc_npz_new(void) { return output_to(io_target("io.npz"), ALCM_FILE_NPZ, 0); }
static int sc_npz_replace(void) { return output_to(io_target("io-old.npz"), ALCM_FILE_NPZ, 1); }
static int sc_st_new(void)
{
	return output_to(io_target("io.safetensors"), ALCM_FILE_SAFETENSORS, 0);
}
static int sc_npy_new(void) { return output_to(io_target("io.npy"), ALCM_FILE_NPY, 0); }

/* Reading: an archive and an input file from disk. */
static int sc_unpack_file(void)
{
	op_ctx c = {.lossy = 1, .from_file = 1};
	return op_unpack(NULL, &c);
}

static int sc_read_npz(void)
{
	alcm_input *in = NULL;
	int st = alcm_input_open(&in, fx.npz, NULL, NULL);
	for (int i = 0; i < NT && !st; i++) {
		alcm_tensor t;
		int has = 0;
		st = alcm_input_next(in, &t, &has);
		if (!st && (!has || memcmp(t.data, fx.t[i].data, t.nbytes) != 0))
			st = CHECK_FAILED - ALCM_E_CORRUPT; /* a wrong answer, not an error */
	}
	alcm_input_free(in);
	return st;
}

/* Appending a frame to a stream archive: whatever fails, the file must still open and
 * verify, as the previous generation or the new one. */
static int sc_append(void)
{
	const char *path = io_target("io-stream.alcm");
	long at = inj.at; /* the setup below must not consume the armed fault */
	inj.at = 0;
	alcm_stream_options so;
	alcm_stream_options_default(&so);
	default_options(&so.pack, 1);
	so.pack.prune = 0;
	alcm_writer *w = NULL;
	alcm_stream *s = NULL;
	int st = alcm_writer_open_file(&w, path, ALCM_WRITE_OVERWRITE | ALCM_WRITE_STREAM, NULL);
	if (!st)
		st = alcm_stream_new(&s, &so, NULL);
	if (!st)
		st = alcm_stream_encode(s, w, fx.t, 2, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	w = NULL;
	if (st) {
		alcm_stream_free(s);
		return CHECK_FAILED - st;
	}
	inj.at = at;
	inj.calls = 0;
	st = alcm_writer_open_append(&w, path, NULL, NULL, 0);
	if (!st)
		st = alcm_stream_encode(s, w, fx.t, 2, NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	alcm_stream_free(s);
	inj.at = 0;
	alcm_reader *r = NULL;
	uint32_t bad;
	int vs = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	if (!vs)
		vs = alcm_reader_verify(r, &bad);
	uint64_t gen = vs ? 0 : alcm_reader_generation(r);
	uint32_t frames = vs ? 0 : alcm_archive_frame_count(r);
	alcm_reader_free(r);
	if (vs || !(gen == 1 || gen == 2) || frames != (gen == 2 ? 2u : 1u) ||
	    (st == ALCM_OK && gen != 2))
		return CHECK_FAILED - (vs ? vs : ALCM_E_CORRUPT);
	return st;
}

typedef struct io_case {
	const char *name;
	io_scenario run;
} io_case;

/* A file of more than two direct-I/O blocks (4 MiB, format/atomic.c) written in pieces of
 * odd sizes: the full blocks go through the direct-I/O writer thread, the tail through the
 * page cache. Read back exactly when the write succeeded. */
#define BIG_BYTES ((size_t)9 * 1024 * 1024 + 4099)
static const uint8_t *big_data(void)
{
	static uint8_t *b;
	if (!b) {
		uint64_t s = 7;
		if (!(b = malloc(BIG_BYTES)))
			abort();
		for (size_t i = 0; i < BIG_BYTES; i++)
			b[i] = (uint8_t)(tu_rand(&s) >> 56);
	}
	return b;
}

static int sc_big_direct(void)
{
	const char *target = io_target("io-big.bin");
	unlink(target);
	const uint8_t *b = big_data();
	alcm_atomic_file *f = NULL;
	int st = alcm_atomic_file_open(&f, target, 0, NULL);
	for (size_t off = 0, k = 0; !st && off < BIG_BYTES; k++) {
		size_t n = ((size_t)1 << 20) + k * 4093 % 65536;
		if (n > BIG_BYTES - off)
			n = BIG_BYTES - off;
		st = alcm_atomic_file_write(f, b + off, n);
		off += n;
	}
	if (!st)
		st = alcm_atomic_file_commit(f);
	if (st && f && !strstr(alcm_atomic_file_detail(f), "io-big.bin"))
		st = CHECK_FAILED - st; /* the message must name the file */
	alcm_atomic_file_free(f);
	if (st > CHECK_FAILED && !target_ok(target, 0, st))
		return CHECK_FAILED - (st ? st : ALCM_E_IO);
	if (st == ALCM_OK) {
		inj.at = 0;
		size_t len = 0;
		uint8_t *got = tu_read_file(target, &len);
		int same = got && len == BIG_BYTES && memcmp(got, b, len) == 0;
		free(got);
		if (!same)
			return CHECK_FAILED - ALCM_E_CORRUPT;
	}
	return st;
}

static const io_case io_cases[] = {
	{"pack to a new archive", sc_pack_new},
	{"pack over an old archive", sc_pack_replace},
	{"write a new .npz", sc_npz_new},
	{"write over an old .npz", sc_npz_replace},
	{"write a new .safetensors", sc_st_new},
	{"write a new .npy", sc_npy_new},
	{"unpack an archive file", sc_unpack_file},
	{"read an .npz file", sc_read_npz},
	{"append a frame to a stream archive", sc_append},
	{"write 9 MiB through direct I/O", sc_big_direct},
};

/*
 * Faults the n-th call of `op` for n = 1, 2, ... until a run makes fewer calls. A failure
 * must give ALCM_E_IO (the scenario checks the files); EINTR and short transfers must be
 * retried to success.
 */
static long io_walk(const io_case *c, io_op op, int how, int err)
{
	long n;
	for (n = 1;; n++) {
		memset(&inj, 0, sizeof(inj));
		inj.op = op;
		inj.at = n;
		inj.how = how;
		inj.err = err;
		int st = c->run();
		int hit = inj.hit;
		memset(&inj, 0, sizeof(inj));
		if (st <= CHECK_FAILED && !hit)
			fail_msg("%s: a wrong result or leftovers without a fault (%s)", c->name,
			         alcm_strerror(CHECK_FAILED - st));
		if (st <= CHECK_FAILED)
			fail_msg("%s, %s call %ld %s: a wrong result or leftovers (%s)", c->name,
			         op_names[op], n, how == HOW_FAIL ? strerror(err) : "interrupted",
			         alcm_strerror(CHECK_FAILED - st));
		if (!hit) {
			if (st != ALCM_OK)
				fail_msg("%s: status %d without a fault", c->name, st);
			return n - 1;
		}
		int retry = how == HOW_EINTR || how == HOW_SHORT;
		/* EINTR from fsync, close and the path calls is an error, not a retry. */
		if (how == HOW_EINTR && op != OP_WRITE && op != OP_PWRITE && op != OP_PREAD)
			retry = 0;
		/* Directory fsync and the close of a reader are best effort: ignoring is fine. */
		if (retry ? st != ALCM_OK : (st != ALCM_E_IO && st != ALCM_OK))
			fail_msg("%s, %s call %ld %s: status %d (%s)", c->name, op_names[op], n,
			         how == HOW_FAIL ? strerror(err) : how == HOW_EINTR ? "EINTR" :
			         how == HOW_SHORT ? "short" : "returns 0", st, alcm_strerror(st));
	}
}

static void test_io_faults(void **state)
{
	(void)state;
	static const struct { io_op op; int how, err; } faults[] = {
		/* EINVAL: a filesystem that refuses direct I/O late; the writer falls back */
		{OP_PWRITE, HOW_FAIL, EINVAL},
		{OP_PWRITE, HOW_FAIL, EIO},   {OP_PWRITE, HOW_FAIL, ENOSPC}, {OP_PWRITE, HOW_EINTR, 0},
		{OP_PWRITE, HOW_SHORT, 0},    {OP_PWRITE, HOW_ZERO, 0},      {OP_WRITE, HOW_FAIL, ENOSPC},
		{OP_WRITE, HOW_EINTR, 0},     {OP_WRITE, HOW_SHORT, 0},      {OP_WRITE, HOW_ZERO, 0},
		{OP_PREAD, HOW_FAIL, EIO},    {OP_PREAD, HOW_EINTR, 0},      {OP_PREAD, HOW_SHORT, 0},
		{OP_PREAD, HOW_ZERO, 0},      {OP_FSYNC, HOW_FAIL, EIO},     {OP_CLOSE, HOW_FAIL, EIO},
		{OP_FTRUNCATE, HOW_FAIL, EIO}, {OP_RENAME, HOW_FAIL, EXDEV}, {OP_LINK, HOW_FAIL, EPERM},
		{OP_MKOSTEMP, HOW_FAIL, EMFILE}, {OP_FSTAT, HOW_FAIL, EIO},
		{OP_LINKAT, HOW_FAIL, EPERM}, {OP_LINKAT, HOW_FAIL, ENOSPC}, {OP_FCNTL, HOW_FAIL, EINVAL},
		{OP_STATX, HOW_FAIL, ENOSYS},
		/* ENOENT from the /proc link: retried with AT_EMPTY_PATH (root's way) */
		{OP_LINKAT, HOW_FAIL, ENOENT},
		{OP_TMPFILE, HOW_FAIL, EMFILE},
	};
	long total = 0;
	for (size_t cm = 0; cm < 2 * sizeof(io_cases) / sizeof(io_cases[0]); cm++) {
		size_t c = cm / 2;
		named_only = (int)(cm & 1);
		/* Named temporary files concern the cases that write a new file (the first six). */
		if (named_only && c >= 6)
			continue;
		long runs = 0;
		for (size_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++) {
			long k = io_walk(&io_cases[c], faults[f].op, faults[f].how, faults[f].err);
			if (getenv("ALCM_TEST_VERBOSE"))
				print_message("  %s: %s %s x%ld\n", io_cases[c].name, op_names[faults[f].op],
				              faults[f].how == HOW_FAIL ? strerror(faults[f].err)
				              : faults[f].how == HOW_EINTR ? "EINTR"
				              : faults[f].how == HOW_SHORT ? "short" : "zero", k);
			runs += k;
		}
		print_message("%s (%s temporary file): %ld faulted calls, each handled\n",
		              io_cases[c].name, named_only ? "named" : "unnamed", runs);
		total += runs;
	}
	named_only = 0;
	unlink(io_target("io.alcm"));
	unlink(io_target("io-old.alcm"));
	unlink(io_target("io.npz"));
	unlink(io_target("io-old.npz"));
	unlink(io_target("io.safetensors"));
	unlink(io_target("io.npy"));
	unlink(io_target("io-stream.alcm"));
	unlink(io_target("io-big.bin"));
	assert_true(total > 100);
}

/* ---- full disk ------------------------------------------------------------------------ */

/* Checks run in a child process (a private mount, resource limits): they report by exit
 * status, not cmocka asserts. */
#define CHILD_SKIP 77
#define CHECK(cond, ...)                                                                 \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "test_faults: " __VA_ARGS__);                    \
			fputc('\n', stderr);                                             \
			return 1;                                                        \
		}                                                                        \
	} while (0)

/* Large enough not to fit in 64 KiB once compressed: noise. */
static alcm_tensor big_tensor(uint8_t **data)
{
	uint64_t seed = 7, n = 64 * 1024;
	*data = malloc(n * 4);
	for (uint64_t i = 0; i < n; i++) {
		float f = (float)tu_gauss(&seed);
		memcpy(*data + 4 * i, &f, 4);
	}
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "big";
	t.name_len = 3;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = n;
	t.data = *data;
	t.nbytes = n * 4;
	return t;
}


/* Packs the big tensor to dir/name; must fail with ALCM_E_IO naming the file. */
static int full_pack(const char *dir, const char *name, int overwrite)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint8_t *data;
	alcm_tensor t = big_tensor(&data);
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	alcm_pack_options o;
	default_options(&o, 0);
	char detail[1024] = "";
	int st = alcm_writer_open_file(&w, path, overwrite ? ALCM_WRITE_OVERWRITE : 0, NULL);
	if (!st)
		st = alcm_encoder_new(&e, w, &o, NULL);
	if (!st && (st = alcm_encoder_add(e, &t, NULL)))
		snprintf(detail, sizeof(detail), "%s", alcm_encoder_detail(e));
	if (!st && (st = alcm_encoder_finish(e)))
		snprintf(detail, sizeof(detail), "%s", alcm_encoder_detail(e));
	if (!st && (st = alcm_writer_commit(w)))
		snprintf(detail, sizeof(detail), "%s", alcm_writer_detail(w));
	int temps_before_free = temps_in(dir, name);
	alcm_encoder_free(e);
	alcm_writer_free(w);
	free(data);
	CHECK(st == ALCM_E_IO, "pack to a full disk (%s): status %d (%s), not ALCM_E_IO", path, st,
	      alcm_strerror(st));
	CHECK(strstr(detail, name) != NULL, "the message does not name the file: %s", detail);
	CHECK(temps_before_free <= 1, "%d temporary files", temps_before_free);
	CHECK(temps_in(dir, name) == 0, "a temporary file of %s is left after a failed write",
	      name);
	return 0;
}

/* Writes the big tensor as a tensor file; must fail with ALCM_E_IO. */
static int full_output(const char *dir, const char *name, int format)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint8_t *data;
	alcm_tensor t = big_tensor(&data);
	alcm_output *o = NULL;
	int st = alcm_output_open(&o, path, format, ALCM_WRITE_OVERWRITE, NULL);
	if (!st)
		st = alcm_output_plan(o, &t, 1);
	if (!st)
		st = alcm_output_write(o, &t);
	if (!st)
		st = alcm_output_commit(o);
	char detail[1024];
	snprintf(detail, sizeof(detail), "%s", alcm_output_detail(o));
	alcm_output_free(o);
	free(data);
	CHECK(st == ALCM_E_IO, "%s to a full disk: status %d (%s), not ALCM_E_IO", name, st,
	      alcm_strerror(st));
	CHECK(strstr(detail, name) != NULL, "the message does not name the file: %s", detail);
	CHECK(temps_in(dir, name) == 0, "a temporary file of %s is left", name);
	return 0;
}

static int full_disk_cases(const char *dir)
{
	char path[4200];
	/* A new target: nothing appears. */
	snprintf(path, sizeof(path), "%s/new.alcm", dir);
	if (full_pack(dir, "new.alcm", 0))
		return 1;
	CHECK(!tu_file_exists(path), "a partial new.alcm was published");
	/* An existing target is replaced only by a complete file. */
	snprintf(path, sizeof(path), "%s/old.alcm", dir);
	CHECK(tu_write_file(path, "precious", 8) == 0, "cannot write %s", path);
	if (full_pack(dir, "old.alcm", 1))
		return 1;
	CHECK(file_is(path, "precious"), "the existing old.alcm was modified");
	const struct { const char *name; int format; } outs[] = {
		{"new.npz", ALCM_FILE_NPZ}, {"new.safetensors", ALCM_FILE_SAFETENSORS},
		{"new.npy", ALCM_FILE_NPY}, {"old.npz", ALCM_FILE_NPZ},
	};
	snprintf(path, sizeof(path), "%s/old.npz", dir);
	CHECK(tu_write_file(path, "precious", 8) == 0, "cannot write %s", path);
	for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
		if (full_output(dir, outs[i].name, outs[i].format))
			return 1;
		snprintf(path, sizeof(path), "%s/%s", dir, outs[i].name);
		if (outs[i].name[0] == 'o')
			CHECK(file_is(path, "precious"), "the existing %s was modified", outs[i].name);
		else
			CHECK(!tu_file_exists(path), "a partial %s was published", outs[i].name);
	}
	return 0;
}

static int write_id_map(const char *file, const char *line)
{
	FILE *f = fopen(file, "w");
	if (!f)
		return -1;
	int ok = fputs(line, f) >= 0;
	return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Child: a private mount namespace with a 64 KiB tmpfs on `dir`. */
static int tmpfs_child(const char *dir)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (uid != 0) {
		char m[64];
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return CHILD_SKIP;
		snprintf(m, sizeof(m), "0 %u 1\n", (unsigned)uid);
		write_id_map("/proc/self/setgroups", "deny");
		if (write_id_map("/proc/self/uid_map", m))
			return CHILD_SKIP;
		snprintf(m, sizeof(m), "0 %u 1\n", (unsigned)gid);
		if (write_id_map("/proc/self/gid_map", m))
			return CHILD_SKIP;
	} else if (unshare(CLONE_NEWNS) != 0) {
		return CHILD_SKIP;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
		fprintf(stderr, "test_faults: cannot mount a tmpfs: %s\n", strerror(errno));
		return CHILD_SKIP;
	}
	return full_disk_cases(dir);
}

/* Child: files are limited to 48 KiB (writes past it are short, then fail with EFBIG). */
static int rlimit_child(const char *dir)
{
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl = {48 * 1024, 48 * 1024};
	if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
		return CHILD_SKIP;
	return full_disk_cases(dir);
}

static int in_child(int (*fn)(const char *), const char *dir)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn(dir));
	int ws;
	if (pid < 0 || waitpid(pid, &ws, 0) != pid)
		return -1;
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static void test_full_disk_tmpfs(void **state)
{
	(void)state;
	const char *dir = in_dir("tmpfs");
	assert_int_equal(mkdir(dir, 0755), 0);
	int rc = in_child(tmpfs_child, dir);
	rmdir(dir);
	if (rc == CHILD_SKIP) {
		print_message("cannot mount a tmpfs here (no privilege): full-disk case skipped; "
		              "RLIMIT_FSIZE case covers short writes\n");
		skip();
	}
	assert_int_equal(rc, 0);
}

static void test_full_disk_rlimit(void **state)
{
	(void)state;
	const char *dir = in_dir("rlimit");
	assert_int_equal(mkdir(dir, 0755), 0);
	int rc = in_child(rlimit_child, dir);
	unlink(in_dir("rlimit/old.alcm"));
	unlink(in_dir("rlimit/old.npz"));
	rmdir(dir);
	assert_int_equal(rc, 0);
}

/* ---- commit failures ----------------------------------------------------------------- */

/* The rename fails (the target is a directory): an I/O error, the temp file removed. */
static void test_rename_fails(void **state)
{
	(void)state;
	const char *target = in_dir("adir.alcm");
	assert_int_equal(mkdir(target, 0755), 0);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_file(&w, target, ALCM_WRITE_OVERWRITE, NULL), ALCM_OK);
	assert_int_equal(encode_into(w, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_E_IO);
	assert_non_null(strstr(alcm_writer_detail(w), "adir.alcm"));
	alcm_writer_free(w);
	assert_int_equal(temps_in(fx.dir, "adir.alcm"), 0);
	struct stat sb;
	assert_int_equal(stat(target, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	rmdir(target);
}

static void target_appears(void);

/* Without overwrite, a target that appears while the archive is written is kept. */
static void test_target_appears(void **state)
{
	(void)state;
	for (named_only = 0; named_only < 2; named_only++)
		target_appears();
	named_only = 0;
}

static void target_appears(void)
{
	const char *target = in_dir("race.alcm");
	unlink(target);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_file(&w, target, 0, NULL), ALCM_OK);
	assert_int_equal(encode_into(w, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(tu_write_file(target, "precious", 8), 0);
	assert_int_equal(alcm_writer_commit(w), ALCM_E_EXISTS);
	alcm_writer_free(w);
	assert_true(file_is(target, "precious"));
	assert_int_equal(temps_in(fx.dir, "race.alcm"), 0);
	unlink(target);
	/* The same for tensor files. */
	const char *npz = in_dir("race.npz");
	alcm_output *o = NULL;
	assert_int_equal(alcm_output_open(&o, npz, ALCM_FILE_NPZ, 0, NULL), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &fx.t[0]), ALCM_OK);
	assert_int_equal(tu_write_file(npz, "precious", 8), 0);
	assert_int_equal(alcm_output_commit(o), ALCM_E_EXISTS);
	alcm_output_free(o);
	assert_true(file_is(npz, "precious"));
	assert_int_equal(temps_in(fx.dir, "race.npz"), 0);
	unlink(npz);
}

/* An uncommitted writer or output that is freed removes its temporary file: an unnamed one
 * (O_TMPFILE) is never visible, a named one (O_TMPFILE refused) is while the file is written. */
static void test_abandoned_outputs(void **state)
{
	(void)state;
	for (named_only = 0; named_only < 2; named_only++) {
		const char *target = in_dir("abandoned.alcm");
		alcm_writer *w = NULL;
		assert_int_equal(alcm_writer_open_file(&w, target, 0, NULL), ALCM_OK);
		assert_int_equal(encode_into(w, NULL, NULL, 1), ALCM_OK);
		assert_int_equal(temps_in(fx.dir, "abandoned.alcm"), named_only);
		alcm_writer_free(w);
		assert_int_equal(temps_in(fx.dir, "abandoned.alcm"), 0);
		assert_false(tu_file_exists(target));
		const char *st = in_dir("abandoned.safetensors");
		alcm_output *o = NULL;
		assert_int_equal(alcm_output_open(&o, st, ALCM_FILE_SAFETENSORS, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_output_plan(o, fx.t, NT), ALCM_OK);
		assert_int_equal(alcm_output_write(o, &fx.t[0]), ALCM_OK);
		assert_int_equal(temps_in(fx.dir, "abandoned.safetensors"), named_only);
		alcm_output_free(o);
		assert_int_equal(temps_in(fx.dir, "abandoned.safetensors"), 0);
		assert_false(tu_file_exists(st));
		/* alcm_atomic_cleanup_all() (the signal handlers' call) removes live temp files. */
		assert_int_equal(alcm_writer_open_file(&w, target, 0, NULL), ALCM_OK);
		assert_int_equal(temps_in(fx.dir, "abandoned.alcm"), named_only);
		alcm_atomic_cleanup_all();
		assert_int_equal(temps_in(fx.dir, "abandoned.alcm"), 0);
		alcm_writer_free(w);
		assert_false(tu_file_exists(target));
	}
	named_only = 0;
}

/* More outputs at once than the signal-cleanup registry holds (64): each still removes its
 * temporary file when freed. (alcm_atomic_cleanup_all() only knows the registered ones.) */
static void test_many_outputs(void **state)
{
	(void)state;
	enum { N = 70 };
	for (named_only = 0; named_only < 2; named_only++) {
		alcm_writer *w[N];
		char name[64];
		for (int i = 0; i < N; i++) {
			snprintf(name, sizeof(name), "many%02d.alcm", i);
			assert_int_equal(alcm_writer_open_file(&w[i], in_dir(name), 0, NULL), ALCM_OK);
		}
		for (int i = 0; i < N; i++)
			alcm_writer_free(w[i]);
		for (int i = 0; i < N; i++) {
			snprintf(name, sizeof(name), "many%02d.alcm", i);
			assert_int_equal(temps_in(fx.dir, name), 0);
			assert_false(tu_file_exists(in_dir(name)));
		}
		/* A target named relative to the working directory (alcm-pack x -o out.alcm): the
		 * temp file goes next to it and the directory synced is ".". */
		char cwd[4096];
		assert_non_null(getcwd(cwd, sizeof(cwd)));
		assert_int_equal(chdir(fx.dir), 0);
		alcm_writer *rel = NULL;
		assert_int_equal(alcm_writer_open_file(&rel, "rel.alcm", 0, NULL), ALCM_OK);
		assert_int_equal(temps_in(".", "rel.alcm"), named_only);
		assert_int_equal(encode_into(rel, NULL, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_writer_commit(rel), ALCM_OK);
		alcm_writer_free(rel);
		assert_int_equal(temps_in(".", "rel.alcm"), 0);
		assert_true(tu_file_exists("rel.alcm"));
		/* And replaced (-f): by rename from a name that exists only for that moment. */
		assert_int_equal(alcm_writer_open_file(&rel, "rel.alcm", ALCM_WRITE_OVERWRITE, NULL),
		                 ALCM_OK);
		assert_int_equal(encode_into(rel, NULL, NULL, 0), ALCM_OK);
		assert_int_equal(alcm_writer_commit(rel), ALCM_OK);
		alcm_writer_free(rel);
		assert_int_equal(temps_in(".", "rel.alcm"), 0);
		unlink("rel.alcm");
		assert_int_equal(chdir(cwd), 0);
		/* Bad paths: nothing is created. */
		alcm_writer *bad = NULL;
		assert_int_equal(alcm_writer_open_file(&bad, in_dir("no/such/dir.alcm"), 0, NULL),
		                 ALCM_E_IO);
		assert_non_null(strstr(alcm_writer_detail(bad), "dir.alcm"));
		alcm_writer_free(bad);
		bad = NULL;
		assert_int_equal(alcm_writer_open_file(&bad, "", 0, NULL), ALCM_E_ARG);
		alcm_writer_free(bad);
	}
	named_only = 0;
}

/*
 * The rare turns of commit: no /proc (the unnamed file could not be named, so a named one is
 * used from the start), no O_PATH descriptor (a duplicate keeps the file), a random name of
 * the -f replacement already taken (another one is drawn), a commit after a commit.
 */
static void test_commit_turns(void **state)
{
	(void)state;
	no_proc = 1;
	assert_int_equal(sc_pack_new(), ALCM_OK);
	assert_int_equal(sc_pack_replace(), ALCM_OK);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_file(&w, in_dir("noproc.alcm"), 0, NULL), ALCM_OK);
	assert_int_equal(temps_in(fx.dir, "noproc.alcm"), 1); /* named: visible */
	alcm_writer_free(w);
	assert_int_equal(temps_in(fx.dir, "noproc.alcm"), 0);
	no_proc = 0;
	no_opath = 1;
	assert_int_equal(sc_pack_new(), ALCM_OK);
	assert_int_equal(sc_npz_replace(), ALCM_OK);
	no_opath = 0;
	/* The first name drawn for -f is taken: another is drawn. */
	memset(&inj, 0, sizeof(inj));
	inj.op = OP_LINKAT;
	inj.at = 1;
	inj.how = HOW_FAIL;
	inj.err = EEXIST;
	assert_int_equal(sc_pack_replace(), ALCM_OK);
	assert_true(inj.hit);
	memset(&inj, 0, sizeof(inj));
	/* Without -f, EEXIST from the link is the target that appeared: ALCM_E_EXISTS. */
	memset(&inj, 0, sizeof(inj));
	inj.op = OP_LINKAT;
	inj.at = 1;
	inj.how = HOW_FAIL;
	inj.err = EEXIST;
	int st = sc_pack_new();
	memset(&inj, 0, sizeof(inj));
	assert_int_equal(st, ALCM_E_EXISTS);
	/* The internal object refuses a second commit and a commit after abort. */
	for (named_only = 0; named_only < 2; named_only++) {
		alcm_atomic a;
		char detail[ALCM_DETAIL_MAX];
		const char *p = in_dir("twice.bin");
		unlink(p);
		assert_int_equal(alcm_atomic_open(&a, p, 0, 0, NULL, detail), ALCM_OK);
		assert_int_equal(alcm_atomic_write(&a, "x", 1, detail), ALCM_OK);
		assert_int_equal(alcm_atomic_commit(&a, detail), ALCM_OK);
		assert_int_equal(alcm_atomic_commit(&a, detail), ALCM_E_STATE);
		alcm_atomic_abort(&a);
		assert_true(file_is(p, "x"));
		unlink(p);
	}
	named_only = 0;
}

/* Several files published together: all, or none when staging fails, or the first k when
 * the publication of file k fails (done = k); nothing left behind in any case. */
static void test_commit_all(void **state)
{
	(void)state;
	for (named_only = 0; named_only < 2; named_only++) {
		const char *a = in_dir("pair.key"), *b = in_dir("pair.pub");
		unlink(a);
		unlink(b);
		alcm_atomic_file *f[2] = {NULL, NULL};
		size_t done = 9;
		assert_int_equal(alcm_atomic_file_open(&f[0], a, ALCM_WRITE_PRIVATE, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_open(&f[1], b, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f[0], "K", 1), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f[1], "P", 1), ALCM_OK);
		assert_int_equal(alcm_atomic_file_commit_all(f, 2, &done), ALCM_OK);
		assert_int_equal(done, 2);
		assert_int_equal(alcm_atomic_file_commit_all(f, 2, &done), ALCM_E_STATE);
		alcm_atomic_file_free(f[0]);
		alcm_atomic_file_free(f[1]);
		assert_true(file_is(a, "K") && file_is(b, "P"));
		/* Without overwrite, a target that appeared: nothing more is published. */
		unlink(a);
		f[0] = f[1] = NULL;
		assert_int_equal(alcm_atomic_file_open(&f[0], a, 0, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_open(&f[1], in_dir("pair.other"), 0, NULL), ALCM_OK);
		assert_int_equal(tu_write_file(a, "precious", 8), 0);
		assert_int_equal(alcm_atomic_file_commit_all(f, 2, &done), ALCM_E_EXISTS);
		assert_int_equal(done, 0);
		assert_non_null(strstr(alcm_atomic_file_detail(f[0]), "pair.key"));
		alcm_atomic_file_free(f[0]);
		alcm_atomic_file_free(f[1]);
		assert_true(file_is(a, "precious"));
		assert_false(tu_file_exists(in_dir("pair.other")));
		/* The second one cannot be published (a directory is in the way): the first is. */
		unlink(b);
		assert_int_equal(mkdir(b, 0755), 0);
		f[0] = f[1] = NULL;
		assert_int_equal(alcm_atomic_file_open(&f[0], a, ALCM_WRITE_OVERWRITE, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_open(&f[1], b, ALCM_WRITE_OVERWRITE, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f[0], "K2", 2), ALCM_OK);
		assert_int_equal(alcm_atomic_file_commit_all(f, 2, &done), ALCM_E_IO);
		assert_int_equal(done, 1);
		assert_non_null(strstr(alcm_atomic_file_detail(f[1]), "pair.pub"));
		alcm_atomic_file_free(f[0]);
		alcm_atomic_file_free(f[1]);
		assert_true(file_is(a, "K2"));
		assert_int_equal(rmdir(b), 0);
		assert_int_equal(temps_in(fx.dir, "pair.key"), 0);
		assert_int_equal(temps_in(fx.dir, "pair.pub"), 0);
		/* Staging fails (the link to a temporary name): nothing published, nothing left. */
		if (!named_only) {
			f[0] = f[1] = NULL;
			assert_int_equal(alcm_atomic_file_open(&f[0], a, ALCM_WRITE_OVERWRITE, NULL),
			                 ALCM_OK);
			assert_int_equal(alcm_atomic_file_open(&f[1], b, 0, NULL), ALCM_OK);
			memset(&inj, 0, sizeof(inj));
			inj.op = OP_LINKAT;
			inj.at = 2;
			inj.how = HOW_FAIL;
			inj.err = ENOSPC;
			assert_int_equal(alcm_atomic_file_commit_all(f, 2, &done), ALCM_E_IO);
			memset(&inj, 0, sizeof(inj));
			assert_int_equal(done, 0);
			alcm_atomic_file_free(f[0]);
			alcm_atomic_file_free(f[1]);
			assert_true(file_is(a, "K2"));
			assert_false(tu_file_exists(b));
			assert_int_equal(temps_in(fx.dir, "pair.key"), 0);
			assert_int_equal(temps_in(fx.dir, "pair.pub"), 0);
		}
		unlink(a);
		alcm_atomic_file *none[1] = {NULL};
		assert_int_equal(alcm_atomic_file_commit_all(none, 1, &done), ALCM_E_ARG);
		assert_int_equal(alcm_atomic_file_commit_all(NULL, 0, NULL), ALCM_E_ARG);
	}
	named_only = 0;
}

/* The public wrapper: private mode, no overwrite, discard on free. */
static void test_atomic_file(void **state)
{
	(void)state;
	for (named_only = 0; named_only < 2; named_only++) {
		const char *p = in_dir("secret.key");
		unlink(p);
		alcm_atomic_file *f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, p, ALCM_WRITE_PRIVATE, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f, "abc", 3), ALCM_OK);
		assert_false(tu_file_exists(p));
		assert_int_equal(alcm_atomic_file_commit(f), ALCM_OK);
		assert_int_equal(alcm_atomic_file_commit(f), ALCM_E_STATE);
		alcm_atomic_file_free(f);
		struct stat sb;
		assert_int_equal(stat(p, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
		assert_true(file_is(p, "abc"));
		f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, p, 0, NULL), ALCM_E_EXISTS);
		assert_non_null(strstr(alcm_atomic_file_detail(f), "secret.key"));
		alcm_atomic_file_free(f);
		f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, p, ALCM_WRITE_OVERWRITE, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f, "xyz!", 4), ALCM_OK);
		alcm_atomic_file_free(f); /* discarded */
		assert_true(file_is(p, "abc"));
		assert_int_equal(temps_in(fx.dir, "secret.key"), 0);
		f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, p, ALCM_WRITE_OVERWRITE, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f, "xyz!", 4), ALCM_OK);
		assert_int_equal(alcm_atomic_file_commit(f), ALCM_OK);
		alcm_atomic_file_free(f);
		assert_true(file_is(p, "xyz!"));
		assert_int_equal(stat(p, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0644);
		assert_int_equal(temps_in(fx.dir, "secret.key"), 0);
		/* sync, then commit; calls after a failure or on NULL */
		f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, p, ALCM_WRITE_OVERWRITE |
		                                       ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
		assert_int_equal(alcm_atomic_file_write(f, NULL, 1), ALCM_E_ARG);
		assert_int_equal(alcm_atomic_file_write(f, "s", 1), ALCM_OK);
		assert_int_equal(alcm_atomic_file_sync(f), ALCM_OK);
		assert_int_equal(alcm_atomic_file_commit(f), ALCM_OK);
		assert_int_equal(alcm_atomic_file_sync(f), ALCM_E_STATE);
		assert_int_equal(alcm_atomic_file_write(f, "s", 1), ALCM_E_STATE);
		alcm_atomic_file_free(f);
		assert_true(file_is(p, "s"));
		f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, in_dir("no/dir/k"), 0, NULL), ALCM_E_IO);
		assert_int_equal(alcm_atomic_file_write(f, "s", 1), ALCM_E_STATE);
		assert_int_equal(alcm_atomic_file_commit(f), ALCM_E_STATE);
		assert_int_equal(alcm_atomic_file_sync(f), ALCM_E_STATE);
		alcm_atomic_file_free(f);
		f = NULL;
		assert_int_equal(alcm_atomic_file_open(&f, NULL, 0, NULL), ALCM_E_ARG);
		alcm_atomic_file_free(f);
		assert_int_equal(alcm_atomic_file_open(NULL, p, 0, NULL), ALCM_E_ARG);
		assert_int_equal(alcm_atomic_file_write(NULL, "s", 1), ALCM_E_ARG);
		assert_int_equal(alcm_atomic_file_sync(NULL), ALCM_E_ARG);
		assert_int_equal(alcm_atomic_file_commit(NULL), ALCM_E_ARG);
		assert_string_equal(alcm_atomic_file_detail(NULL), "");
		alcm_atomic_file_free(NULL);
		unlink(p);
	}
	named_only = 0;
}

/* Direct-I/O output in its other modes: turned off by ALCM_DIRECT_IO=0, not used without
 * fsync, a file of exactly two blocks, one under a block, and empty writes: the same bytes
 * each time. */
static void test_direct_io_modes(void **state)
{
	(void)state;
	const uint8_t *b = big_data();
	const size_t sizes[] = {(size_t)8 << 20, 5000, BIG_BYTES};
	const unsigned flags[] = {0, ALCM_WRITE_NO_SYNC};
	const char *p = in_dir("dio-modes.bin");
	for (int env = 0; env < 2; env++) {
		if (env)
			setenv("ALCM_DIRECT_IO", "0", 1);
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			for (size_t j = 0; j < 2; j++) {
				alcm_atomic_file *f = NULL;
				assert_int_equal(alcm_atomic_file_open(&f, p, ALCM_WRITE_OVERWRITE | flags[j],
				                                       NULL), ALCM_OK);
				assert_int_equal(alcm_atomic_file_write(f, b, 0), ALCM_OK);
				assert_int_equal(alcm_atomic_file_write(f, b, sizes[i] / 3), ALCM_OK);
				assert_int_equal(alcm_atomic_file_write(f, b + sizes[i] / 3,
				                                        sizes[i] - sizes[i] / 3), ALCM_OK);
				assert_int_equal(alcm_atomic_file_write(f, b, 0), ALCM_OK);
				assert_int_equal(alcm_atomic_file_sync(f), ALCM_OK);
				assert_int_equal(alcm_atomic_file_commit(f), ALCM_OK);
				alcm_atomic_file_free(f);
				size_t len = 0;
				uint8_t *got = tu_read_file(p, &len);
				assert_non_null(got);
				assert_int_equal(len, sizes[i]);
				assert_memory_equal(got, b, len);
				free(got);
			}
	}
	unsetenv("ALCM_DIRECT_IO");
	unlink(p);
}

/* Zero-byte requests (zero-element tensors, empty sections) get a real block of their own,
 * with the caller's allocator and without one, never NULL that reads as out of memory. */
static void test_zero_byte_allocations(void **state)
{
	(void)state;
	alcm_allocator lib;
	alcm_alloc_copy(&lib, NULL);
	const alcm_allocator *as[] = {NULL, &lib};
	for (int i = 0; i < 2; i++) {
		void *p = alcm_mem_alloc(as[i], 0);
		assert_non_null(p);
		void *q = alcm_mem_realloc(as[i], p, 0);
		assert_non_null(q);
		alcm_mem_free(as[i], q);
	}
	/* The library's own functions, called directly as a caller's allocator may be. */
	void *p = lib.malloc_fn(lib.opaque, 0);
	assert_non_null(p);
	p = lib.realloc_fn(lib.opaque, p, 0);
	assert_non_null(p);
	lib.free_fn(lib.opaque, p);
	/* An allocator missing a function is replaced whole by the library's. */
	alcm_allocator part = lib, got;
	for (int miss = 0; miss < 3; miss++) {
		part = lib;
		if (miss == 0)
			part.malloc_fn = NULL;
		else if (miss == 1)
			part.realloc_fn = NULL;
		else
			part.free_fn = NULL;
		part.opaque = &part;
		alcm_alloc_copy(&got, &part);
		assert_ptr_equal(got.malloc_fn, lib.malloc_fn);
		assert_ptr_equal(got.realloc_fn, lib.realloc_fn);
		assert_ptr_equal(got.free_fn, lib.free_fn);
		assert_null(got.opaque);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_pack_memory),
		cmocka_unit_test(test_alloc_pack_file),
		cmocka_unit_test(test_alloc_unpack),
		cmocka_unit_test(test_alloc_unpack_to_file),
		cmocka_unit_test(test_alloc_stream),
		cmocka_unit_test(test_io_faults),
		cmocka_unit_test(test_full_disk_tmpfs),
		cmocka_unit_test(test_full_disk_rlimit),
		cmocka_unit_test(test_rename_fails),
		cmocka_unit_test(test_target_appears),
		cmocka_unit_test(test_abandoned_outputs),
		cmocka_unit_test(test_many_outputs),
		cmocka_unit_test(test_atomic_file),
		cmocka_unit_test(test_direct_io_modes),
		cmocka_unit_test(test_zero_byte_allocations),
		cmocka_unit_test(test_commit_turns),
		cmocka_unit_test(test_commit_all),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
