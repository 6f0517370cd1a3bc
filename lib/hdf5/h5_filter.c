/*
 * The alcm HDF5 filter (spec 6.6.13): its H5Z class, shared by the plugin module
 * (plugin/H5Zalcm.c, libH5Zalcm.so) and by the bridge, which registers it in-process so that
 * alcm-pack decodes alcm-filtered datasets without loading plugins.
 *
 * cd_values version 2 stores each chunk as a compact tensor frame (spec 6.11); version 1, as
 * a whole one-tensor .alcm archive (format 1.0 files). Both are written and read. Every
 * failure pushes a message on HDF5's error stack: libhdf5 itself only says "error during
 * user callback" or "filter returned failure".
 */
#include "alcm.h"
#include "h5_hdf5.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#define CD_N_USER ALCM_H5Z_CD_USER
#define CD_N_MIN ALCM_H5Z_CD_DIMS

static const char *const mode_name[] = {"lossless", "max-error", "rel-error", "snr", "bits"};

/* Pushes "alcm filter: ..." on the default error stack under the pipeline major class. */
static void push(const char *func, hid_t minor, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void push(const char *func, hid_t minor, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(msg, sizeof(msg), "alcm filter %d: ", ALCM_H5Z_FILTER_ID);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	H5Epush2(H5E_DEFAULT, "H5Zalcm", func, __LINE__, H5E_ERR_CLS, H5E_PLINE, minor, "%s", msg);
}

/* ---- cd_values ---------------------------------------------------------------------------- */

static void put_defaults(unsigned *cd, size_t n)
{
	static const unsigned def[CD_N_USER] = {ALCM_H5Z_VERSION_FRAME, ALCM_MODE_LOSSLESS, 0, 0, 8,
	                                        0};
	for (size_t i = n; i < CD_N_USER; i++)
		cd[i] = def[i];
}

static double cd_bound(const unsigned *cd)
{
	uint64_t bits = (uint64_t)cd[ALCM_H5Z_CD_BOUND_LO] | ((uint64_t)cd[ALCM_H5Z_CD_BOUND_HI] << 32);
	double d;
	memcpy(&d, &bits, sizeof(d));
	return d;
}

/* The user's values against the encoder's ranges (alcm_pack_options), so that a bad value
 * fails H5Dcreate with its index rather than the first chunk write. @return 1 if valid, else
 * 0 with the reason in why. */
static int cd_user_ok(const unsigned *cd, char *why, size_t cap)
{
	unsigned v = cd[ALCM_H5Z_CD_VERSION], mode = cd[ALCM_H5Z_CD_MODE];
	double b = cd_bound(cd);
	if (v != ALCM_H5Z_VERSION_ARCHIVE && v != ALCM_H5Z_VERSION_FRAME)
		snprintf(why, cap, "cd_values[0] (version) is %u, allowed 1..2 (2: compact frames)", v);
	else if (mode > ALCM_MODE_BITS)
		snprintf(why, cap, "cd_values[1] (mode) is %u, allowed 0..4 (0 lossless, 1 max-error, "
		         "2 rel-error, 3 snr, 4 bits)", mode);
	else if (mode == ALCM_MODE_BITS &&
	         (cd[ALCM_H5Z_CD_BITS] < 2 || cd[ALCM_H5Z_CD_BITS] > 16))
		snprintf(why, cap, "cd_values[4] (bits) is %u, allowed 2..16 in mode 4 (bits)",
		         cd[ALCM_H5Z_CD_BITS]);
	else if (cd[ALCM_H5Z_CD_LEVEL] > 19)
		snprintf(why, cap, "cd_values[5] (zstd level) is %u, allowed 0..19 (0: 3)",
		         cd[ALCM_H5Z_CD_LEVEL]);
	else if ((mode == ALCM_MODE_MAX_ERROR || mode == ALCM_MODE_REL_ERROR) &&
	         !(b > 0 && isfinite(b)))
		snprintf(why, cap, "cd_values[2..3] (bound) is %g, refused: mode %u (%s) needs a "
		         "positive finite bound", b, mode, mode_name[mode]);
	else if (mode == ALCM_MODE_REL_ERROR && b >= 1)
		snprintf(why, cap, "cd_values[2..3] (bound) is %g, refused: mode 2 (rel-error) "
		         "needs a bound under 1", b);
	else if (mode == ALCM_MODE_SNR && !(b > 0 && b <= 300))
		snprintf(why, cap, "cd_values[2..3] (bound) is %g, refused: mode 3 (snr) needs "
		         "0 < dB <= 300", b);
	else
		return 1;
	return 0;
}

/* The chunk as a tensor, from the full cd_values. @return its byte size, or 0 with the
 * reason in why. */
static uint64_t chunk_shape(size_t n, const unsigned *cd, alcm_tensor *t, char *why, size_t cap)
{
	memset(t, 0, sizeof(*t));
	if (n < CD_N_MIN) {
		snprintf(why, cap, "%zu cd_values, at least %d expected (set_local did not run)", n,
		         CD_N_MIN);
		return 0;
	}
	if (!cd_user_ok(cd, why, cap))
		return 0;
	size_t es = alcm_dtype_size((int)cd[ALCM_H5Z_CD_DTYPE]);
	uint32_t r = cd[ALCM_H5Z_CD_RANK];
	if (!es) {
		snprintf(why, cap, "cd_values[6] (dtype) is %u, allowed 1..13", cd[ALCM_H5Z_CD_DTYPE]);
		return 0;
	}
	if (cd[ALCM_H5Z_CD_SWAP] > 1) {
		snprintf(why, cap, "cd_values[7] (big-endian) is %u, allowed 0..1", cd[ALCM_H5Z_CD_SWAP]);
		return 0;
	}
	if (r == 0 || r > ALCM_MAX_NDIM || n != CD_N_MIN + r) {
		snprintf(why, cap, "cd_values[8] (rank) is %u with %zu cd_values: allowed 1..%d, and "
		         "9 + rank values", r, n, ALCM_MAX_NDIM);
		return 0;
	}
	t->dtype = (int)cd[ALCM_H5Z_CD_DTYPE];
	t->ndim = r;
	for (uint32_t i = 0; i < r; i++)
		t->shape[i] = cd[ALCM_H5Z_CD_DIMS + i];
	uint64_t el, nb;
	if (alcm_shape_elements(t->shape, r, &el) || alcm_mul_u64(el, es, &nb) || nb == 0 ||
	    nb > UINT32_MAX) {
		snprintf(why, cap, "cd_values[9..%u] (chunk dimensions) give no chunk of 1 byte to "
		         "4 GiB", 8 + r);
		return 0;
	}
	t->nbytes = nb;
	t->name = "chunk";
	t->name_len = 5;
	return nb;
}

static void swap_bytes(uint8_t *p, size_t nbytes, size_t es)
{
	for (size_t i = 0; i + es <= nbytes; i += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			uint8_t t = p[i + a];
			p[i + a] = p[i + b];
			p[i + b] = t;
		}
}

static void chunk_options(const unsigned *cd, size_t nbytes, alcm_pack_options *o)
{
	alcm_pack_options_default(o);
	o->mode = (int)cd[ALCM_H5Z_CD_MODE];
	o->bound = cd_bound(cd);
	o->bits = cd[ALCM_H5Z_CD_BITS];
	o->level = cd[ALCM_H5Z_CD_LEVEL] ? (int)cd[ALCM_H5Z_CD_LEVEL] : 3;
	o->threads = 1;
	/* One coder chunk per HDF5 chunk (up to the coders' 1 GiB). */
	o->chunk_bytes = nbytes < 4096 ? 4096 : nbytes > ((size_t)1 << 30) ? (size_t)1 << 30 : nbytes;
	o->producer = "H5Zalcm";
	o->source_format = "hdf5-chunk";
}

/* ---- set_local ---------------------------------------------------------------------------- */

/* Every type: a plain number is coded as such, anything else as bytes. */
static htri_t can_apply(hid_t dcpl, hid_t type, hid_t space)
{
	(void)dcpl, (void)space;
	if (H5Tget_size(type) > 0)
		return 1;
	push("can_apply", H5E_BADTYPE, "a datatype without a fixed size cannot be filtered");
	return 0;
}

/* The predefined little-endian types of alcm's numbers: one H5Tequal, after the class and
 * size pick the candidates, stands for the full classification below, which takes a dozen
 * calls into libhdf5 (set_local runs at every H5Dcreate: on a checkpoint of small tensors
 * that was a fifth of the filter's CPU time). The full path gives these types the same
 * dtype (tests/test_hdf5_filter_types.c). @return the dtype, or 0 for any other type. */
static int quick_dtype(hid_t type, size_t size)
{
	H5T_class_t cls = H5Tget_class(type);
	hid_t a = -1, b = -1;
	int da = 0, db = 0;
	if (cls == H5T_FLOAT && size == 4)
		a = H5T_IEEE_F32LE, da = ALCM_DTYPE_F32;
	else if (cls == H5T_FLOAT && size == 8)
		a = H5T_IEEE_F64LE, da = ALCM_DTYPE_F64;
	else if (cls == H5T_INTEGER && size == 1)
		a = H5T_STD_I8LE, da = ALCM_DTYPE_I8, b = H5T_STD_U8LE, db = ALCM_DTYPE_U8;
	else if (cls == H5T_INTEGER && size == 2)
		a = H5T_STD_I16LE, da = ALCM_DTYPE_I16, b = H5T_STD_U16LE, db = ALCM_DTYPE_U16;
	else if (cls == H5T_INTEGER && size == 4)
		a = H5T_STD_I32LE, da = ALCM_DTYPE_I32, b = H5T_STD_U32LE, db = ALCM_DTYPE_U32;
	else if (cls == H5T_INTEGER && size == 8)
		a = H5T_STD_I64LE, da = ALCM_DTYPE_I64, b = H5T_STD_U64LE, db = ALCM_DTYPE_U64;
	if (a >= 0 && H5Tequal(type, a) > 0)
		return da;
	if (b >= 0 && H5Tequal(type, b) > 0)
		return db;
	return 0;
}

static herr_t set_local(hid_t dcpl, hid_t type, hid_t space)
{
	(void)space;
	unsigned flags = 0, cd[CD_N_MIN + H5S_MAX_RANK];
	size_t n = CD_N_MIN + H5S_MAX_RANK;
	char why[ALCM_DETAIL_MAX];
	if (H5Pget_filter_by_id2(dcpl, ALCM_H5Z_FILTER_ID, &flags, &n, cd, 0, NULL, NULL) < 0) {
		push("set_local", H5E_CANTGET, "cannot read the filter's cd_values");
		return -1;
	}
	if (n > CD_N_USER)
		n = CD_N_USER; /* values set_local appended before (a copied dcpl): recomputed */
	put_defaults(cd, n);
	if (!cd_user_ok(cd, why, sizeof(why))) {
		push("set_local", H5E_BADVALUE, "%s", why);
		return -1;
	}
	hsize_t dims[H5S_MAX_RANK];
	int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, dims);
	if (rank <= 0) {
		push("set_local", H5E_BADVALUE, "the dataset is not chunked");
		return -1;
	}
	/* Else the bridge's own classifier: the same rules as the .h5 reader. */
	size_t esize = H5Tget_size(type);
	ah5_type_info ti;
	memset(&ti, 0, sizeof(ti));
	ti.dtype = quick_dtype(type, esize);
	int plain = ti.dtype != 0;
	if (!plain) {
		ah5buf b;
		memset(&b, 0, sizeof(b));
		plain = ah5_type_encode(type, &b, why) == ALCM_OK &&
		        ah5_type_classify(b.p, b.len, &ti, NULL) == ALCM_OK && ti.dtype;
		ah5buf_free(&b);
	}
	cd[ALCM_H5Z_CD_DTYPE] = plain ? (unsigned)ti.dtype : ALCM_DTYPE_U8;
	cd[ALCM_H5Z_CD_SWAP] = plain && ti.swap;
	cd[ALCM_H5Z_CD_RANK] = (unsigned)rank + (plain ? 0 : 1);
	for (int i = 0; i < rank; i++)
		cd[ALCM_H5Z_CD_DIMS + i] = (unsigned)dims[i];
	if (!plain) {
		if (rank >= H5S_MAX_RANK) {
			push("set_local", H5E_BADVALUE, "a chunk of rank %d of non-numeric elements "
			     "needs rank %d as bytes, above %d", rank, rank + 1, H5S_MAX_RANK);
			return -1;
		}
		cd[ALCM_H5Z_CD_DIMS + rank] = (unsigned)esize;
	}
	if (H5Pmodify_filter(dcpl, ALCM_H5Z_FILTER_ID, flags, CD_N_MIN + cd[ALCM_H5Z_CD_RANK],
	                     cd) < 0) {
		push("set_local", H5E_CANTSET, "cannot store the filter's cd_values");
		return -1;
	}
	return 0;
}

/* ---- the frame coder's state, kept between chunks ------------------------------------------ */

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static alcm_tensor_ctx *ctx_cached;

/* The cached context when no other thread holds it, else a temporary one. */
static alcm_tensor_ctx *ctx_take(void)
{
	if (pthread_mutex_trylock(&ctx_lock) == 0) {
		if (ctx_cached || alcm_tensor_ctx_new(&ctx_cached, NULL) == ALCM_OK)
			return ctx_cached;
		pthread_mutex_unlock(&ctx_lock);
	}
	alcm_tensor_ctx *c = NULL;
	alcm_tensor_ctx_new(&c, NULL);
	return c;
}

static void ctx_give(alcm_tensor_ctx *c)
{
	if (c && c == ctx_cached)
		pthread_mutex_unlock(&ctx_lock);
	else
		alcm_tensor_ctx_free(c);
}

__attribute__((destructor)) static void ctx_fini(void)
{
	alcm_tensor_ctx_free(ctx_cached);
	ctx_cached = NULL;
}

/* ---- version 2: compact tensor frames ------------------------------------------------------ */

static size_t encode_frame(const unsigned *cd, const alcm_tensor *t0, size_t nbytes,
                           size_t *buf_size, void **buf)
{
	alcm_tensor t = *t0;
	alcm_pack_options o;
	chunk_options(cd, nbytes, &o);
	uint8_t *tmp = NULL;
	t.data = *buf;
	if (cd[ALCM_H5Z_CD_SWAP]) {
		tmp = H5allocate_memory(nbytes, 0);
		if (!tmp) {
			push("filter", H5E_CANTALLOC, "out of memory for a chunk of %zu bytes", nbytes);
			return 0;
		}
		memcpy(tmp, *buf, nbytes);
		swap_bytes(tmp, nbytes, alcm_dtype_size(t.dtype));
		t.data = tmp;
	}
	size_t cap = alcm_tensor_compress_bound(&t, &o), len = 0, ret = 0;
	void *out = cap ? H5allocate_memory(cap, 0) : NULL;
	alcm_tensor_ctx *c = out ? ctx_take() : NULL;
	if (!c) {
		push("filter", H5E_CANTALLOC, "out of memory for a chunk of %zu bytes", nbytes);
	} else {
		int st = alcm_tensor_ctx_compress(c, out, cap, &len, &t, &o, NULL);
		if (st)
			push("filter", st == ALCM_E_BOUND ? H5E_BADVALUE : H5E_CANTFILTER,
			     "cannot code a chunk of %zu bytes: %s (%s)", nbytes, alcm_strerror(st),
			     alcm_tensor_ctx_detail(c));
		else
			ret = len;
	}
	ctx_give(c);
	if (tmp)
		H5free_memory(tmp);
	if (!ret) {
		if (out)
			H5free_memory(out);
		return 0;
	}
	H5free_memory(*buf);
	*buf = out;
	*buf_size = cap;
	return ret;
}

static size_t decode_frame(const unsigned *cd, const alcm_tensor *t, size_t nbytes,
                           size_t *buf_size, void **buf)
{
	/* A chunk is as untrusted as any file; it may not decode to more than its chunk. */
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_decoded_bytes = t->nbytes;
	alcm_tensor_info ti;
	int st = alcm_tensor_frame_info(&ti, *buf, nbytes, &lim);
	int same = !st && ti.dtype == t->dtype && ti.ndim == t->ndim &&
	           memcmp(ti.shape, t->shape, t->ndim * sizeof(uint64_t)) == 0;
	if (!st && !same) {
		push("filter", H5E_BADVALUE, "corrupt chunk: it holds %s of rank %u and %llu bytes, "
		     "the dataset's cd_values say %s of rank %u and %llu bytes",
		     alcm_dtype_name(ti.dtype), ti.ndim, (unsigned long long)ti.raw_bytes,
		     alcm_dtype_name(t->dtype), t->ndim, (unsigned long long)t->nbytes);
		return 0;
	}
	void *out = H5allocate_memory(t->nbytes, 0);
	alcm_tensor_ctx *c = out ? ctx_take() : NULL;
	if (!c) {
		push("filter", H5E_CANTALLOC, "out of memory for a chunk of %llu bytes",
		     (unsigned long long)t->nbytes);
		if (out)
			H5free_memory(out);
		return 0;
	}
	st = alcm_tensor_ctx_decompress(c, out, t->nbytes, *buf, nbytes, &lim, 0);
	if (st)
		push("filter", st == ALCM_E_NOMEM ? H5E_CANTALLOC : H5E_CANTFILTER,
		     "%s chunk of %zu bytes: %s (%s)", st == ALCM_E_NOMEM ? "cannot decode a" : "corrupt",
		     nbytes, alcm_strerror(st), alcm_tensor_ctx_detail(c));
	ctx_give(c);
	if (st) {
		H5free_memory(out);
		return 0;
	}
	if (cd[ALCM_H5Z_CD_SWAP])
		swap_bytes(out, (size_t)t->nbytes, alcm_dtype_size(t->dtype));
	H5free_memory(*buf);
	*buf = out;
	*buf_size = (size_t)t->nbytes;
	return (size_t)t->nbytes;
}

/* ---- version 1: a one-tensor .alcm archive per chunk ---------------------------------------- */

static size_t encode_archive(const unsigned *cd, const alcm_tensor *t0, size_t nbytes,
                             size_t *buf_size, void **buf)
{
	alcm_tensor t = *t0;
	uint8_t *tmp = NULL;
	t.data = *buf;
	if (cd[ALCM_H5Z_CD_SWAP]) {
		tmp = H5allocate_memory(nbytes, 0);
		if (!tmp) {
			push("filter", H5E_CANTALLOC, "out of memory for a chunk of %zu bytes", nbytes);
			return 0;
		}
		memcpy(tmp, *buf, nbytes);
		swap_bytes(tmp, nbytes, alcm_dtype_size(t.dtype));
		t.data = tmp;
	}
	alcm_pack_options o;
	chunk_options(cd, nbytes, &o);
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	const void *mem;
	size_t len = 0, ret = 0;
	int st = alcm_writer_open_memory(&w, 0, NULL);
	if (!st)
		st = alcm_encoder_new(&e, w, &o, NULL);
	if (!st && (st = alcm_encoder_add(e, &t, NULL)) == ALCM_OK && !(st = alcm_encoder_finish(e)))
		st = alcm_writer_commit(w);
	if (!st)
		st = alcm_writer_memory(w, &mem, &len);
	if (st) {
		push("filter", H5E_CANTFILTER, "cannot code a chunk of %zu bytes: %s (%s)", nbytes,
		     alcm_strerror(st), e ? alcm_encoder_detail(e) : alcm_writer_detail(w));
		goto out;
	}
	void *outb = H5allocate_memory(len, 0);
	if (!outb) {
		push("filter", H5E_CANTALLOC, "out of memory for a chunk of %zu bytes", len);
		goto out;
	}
	memcpy(outb, mem, len);
	H5free_memory(*buf);
	*buf = outb;
	*buf_size = len;
	ret = len;
out:
	alcm_encoder_free(e);
	alcm_writer_free(w);
	if (tmp)
		H5free_memory(tmp);
	return ret;
}

static size_t decode_archive(const unsigned *cd, const alcm_tensor *t, size_t nbytes,
                             size_t *buf_size, void **buf)
{
	uint64_t want = t->nbytes;
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_tensors = 1;
	lim.max_sections = 64;
	lim.max_decoded_bytes = want;
	lim.max_meta_bytes = 1 << 20;
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	alcm_tensor_info ti;
	void *outb = NULL;
	size_t ret = 0;
	const char *what = "";
	int st = alcm_reader_open_memory(&r, *buf, nbytes, "chunk", &lim, NULL, 0);
	if (st) {
		what = alcm_reader_detail(r);
		goto out;
	}
	if ((st = alcm_archive_open(&a, r, NULL))) {
		what = alcm_archive_detail(a);
		goto out;
	}
	if (alcm_archive_tensor_count(a) != 1 || alcm_archive_tensor_info(a, 0, &ti) ||
	    ti.raw_bytes != want) {
		st = ALCM_E_CORRUPT;
		what = "the archive does not hold one tensor of the chunk's size";
		goto out;
	}
	outb = H5allocate_memory((size_t)want, 0);
	if (!outb) {
		st = ALCM_E_NOMEM;
		goto out;
	}
	if ((st = alcm_archive_decode(a, 0, outb, (size_t)want))) {
		what = alcm_archive_detail(a);
		goto out;
	}
	if (cd[ALCM_H5Z_CD_SWAP])
		swap_bytes(outb, (size_t)want, alcm_dtype_size(ti.dtype));
	H5free_memory(*buf);
	*buf = outb;
	outb = NULL;
	*buf_size = (size_t)want;
	ret = (size_t)want;
out:
	if (st)
		push("filter", st == ALCM_E_NOMEM ? H5E_CANTALLOC : H5E_CANTFILTER,
		     "corrupt chunk of %zu bytes (version 1, an archive): %s (%s)", nbytes,
		     alcm_strerror(st), what);
	if (outb)
		H5free_memory(outb);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return ret;
}

static size_t filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                     size_t *buf_size, void **buf)
{
	alcm_tensor t;
	char why[ALCM_DETAIL_MAX];
	if (!chunk_shape(cd_nelmts, cd_values, &t, why, sizeof(why))) {
		push("filter", H5E_BADVALUE, "%s", why);
		return 0;
	}
	int frame = cd_values[ALCM_H5Z_CD_VERSION] == ALCM_H5Z_VERSION_FRAME;
	if (flags & H5Z_FLAG_REVERSE)
		return frame ? decode_frame(cd_values, &t, nbytes, buf_size, buf)
		             : decode_archive(cd_values, &t, nbytes, buf_size, buf);
	if (nbytes != t.nbytes) {
		/* libhdf5 hands over whole chunks; anything else is not ours to code */
		push("filter", H5E_BADVALUE, "a chunk of %zu bytes, the cd_values' chunk holds %llu",
		     nbytes, (unsigned long long)t.nbytes);
		return 0;
	}
	return frame ? encode_frame(cd_values, &t, nbytes, buf_size, buf)
	             : encode_archive(cd_values, &t, nbytes, buf_size, buf);
}

static const H5Z_class2_t alcm_class = {
	H5Z_CLASS_T_VERS,
	(H5Z_filter_t)ALCM_H5Z_FILTER_ID,
	1,
	1,
	"alcm: lossless or error-bounded tensor coding",
	can_apply,
	set_local,
	filter,
};

const void *ah5_filter_class(void)
{
	return &alcm_class;
}

void ah5_filter_register(void)
{
	/* Plugin loading is off inside the guard (unless allowed): avail then only sees
	 * registered filters, ours or the application's. */
	H5E_BEGIN_TRY
	{
		if (H5Zfilter_avail(ALCM_H5Z_FILTER_ID) <= 0)
			H5Zregister(&alcm_class);
	}
	H5E_END_TRY;
	H5Eclear2(H5E_DEFAULT);
}
