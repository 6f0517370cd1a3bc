/*
 * Surface: the codec's promise. The first bytes choose a tensor and options, the rest are
 * the tensor's bytes; it is packed in memory (one thread, 4 KiB chunks, so a few KiB make
 * several chunks), unpacked, and compared: bit-exact when lossless, within the bound
 * (alcm_error_within) when lossy, and equal to the encoder's own reconstruction. Any
 * broken promise aborts.
 *
 * Header (5 bytes + name):
 *   0  bits 0-3 dtype (index into `dtypes`), 4 also code the tensor as a checkpoint series'
 *      delta (spec 6.12) against a base archive holding a perturbed copy of it (lossless, or
 *      max-/rel-error in the modes that have a bound), 5 with the base's copy of another
 *      shape (then stored whole)
 *   1  bits 0-2 mode (% 5), 3-4 prune share, 5 second tensor (the same bytes as uint8),
 *      6-7 zstd level - 1
 *   2  bits 0-1 rank (0..3), 2-5 rows - 1 (axis 0 of a rank 2 or 3 tensor), 6-7 (k > 0): no
 *      elements and a huge dimension instead, [2^61 + rows, 0], [2^63, 0, rows] or
 *      [0, 2^64 - 1] (stored losslessly whatever the mode; measured and profiled at once)
 *   3  bound parameter (see bound_of)
 *   4  name length (% 9); the name's bytes follow, then the tensor bytes
 */
#include "fuzz_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S "roundtrip"

static const int dtypes[16] = {
	ALCM_DTYPE_F32, ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F64,
	ALCM_DTYPE_F32, ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_BOOL,
	ALCM_DTYPE_U8,  ALCM_DTYPE_I8,  ALCM_DTYPE_U16,  ALCM_DTYPE_I16,
	ALCM_DTYPE_U32, ALCM_DTYPE_I32, ALCM_DTYPE_U64,  ALCM_DTYPE_I64,
};

static const double prunes[4] = {0, 0.05, 0.125, 0.25};

static double bound_of(int mode, uint8_t b, unsigned *bits)
{
	*bits = 0;
	switch (mode) {
	case ALCM_MODE_MAX_ERROR: return ldexp(1.0 + (b >> 6) * 0.3, (int)(b & 63) - 40);
	case ALCM_MODE_REL_ERROR: return ldexp(1.0 + (b >> 5) / 8.0, -1 - (int)(b & 31));
	case ALCM_MODE_SNR: return 1.0 + b * 0.5;
	case ALCM_MODE_BITS: *bits = 2 + b % 15; return 0;
	default: return 0;
	}
}

/* Shape of `elems` elements (at most; *used receives how many the shape holds). */
static uint32_t shape_of(uint8_t b, uint64_t elems, uint64_t *shape, uint64_t *used)
{
	uint32_t ndim = b & 3;
	uint64_t rows = 1 + ((b >> 2) & 15);
	*used = 0;
	switch (b >> 6) {
	case 1:
		shape[0] = ((uint64_t)1 << 61) + rows;
		shape[1] = 0;
		return 2;
	case 2:
		shape[0] = (uint64_t)1 << 63;
		shape[1] = 0;
		shape[2] = rows;
		return 3;
	case 3:
		shape[0] = 0;
		shape[1] = UINT64_MAX;
		return 2;
	}
	switch (ndim) {
	case 0:
		if (elems == 0) { /* a scalar needs one element: make it a rank-1 empty tensor */
			shape[0] = 0;
			*used = 0;
			return 1;
		}
		*used = 1;
		return 0;
	case 1:
		shape[0] = elems;
		*used = elems;
		return 1;
	case 2:
		shape[0] = rows;
		shape[1] = elems / rows;
		*used = shape[0] * shape[1];
		return 2;
	default:
		shape[0] = rows;
		shape[1] = 2;
		shape[2] = elems / (rows * 2);
		*used = shape[0] * shape[1] * shape[2];
		return 3;
	}
}

/*
 * The tensor as a frame coded against a base archive whose tensor of the same name is t with
 * every 7th byte changed (or, with `reshape`, of another shape): it must decode to within the
 * bound of t itself, through the base, and the base must be required.
 */
static void check_series(const alcm_tensor *t, const alcm_pack_options *po, uint8_t flip,
                         int reshape)
{
	alcm_tensor b = *t;
	uint8_t *bb = fuzz_dup(t->data, (size_t)t->nbytes);
	if (!bb && t->nbytes)
		return;
	for (uint64_t i = 0; i < t->nbytes; i += 7)
		bb[i] ^= flip | 1;
	b.data = bb;
	if (reshape) {
		b.ndim = 1;
		b.shape[0] = t->nbytes / alcm_dtype_size(t->dtype);
		if (t->ndim == 1) {
			b.ndim = 2;
			b.shape[1] = b.shape[0];
			b.shape[0] = 1;
		}
	}
	alcm_series_options so;
	alcm_series_options_default(&so);
	so.pack = *po;
	so.pack.prune = 0;
	if (so.pack.mode > ALCM_MODE_REL_ERROR)
		so.pack.mode = ALCM_MODE_LOSSLESS;
	alcm_writer *bw = NULL, *fw = NULL;
	alcm_encoder *be = NULL;
	alcm_reader *br = NULL, *fr = NULL;
	alcm_series *s = NULL;
	alcm_archive *a = NULL;
	const void *bp, *fp;
	size_t bl, fl;
	uint8_t *out = malloc(t->nbytes ? (size_t)t->nbytes : 1);
	FUZZ_CHECK(S, alcm_writer_open_memory(&bw, 0, NULL) == ALCM_OK, "base writer");
	FUZZ_CHECK(S, alcm_encoder_new(&be, bw, &so.pack, NULL) == ALCM_OK, "base encoder");
	int st = alcm_encoder_add(be, &b, NULL);
	if (st == ALCM_E_BOUND)
		goto out;
	FUZZ_CHECK(S, st == ALCM_OK && alcm_encoder_finish(be) == ALCM_OK &&
	           alcm_writer_commit(bw) == ALCM_OK && alcm_writer_memory(bw, &bp, &bl) == ALCM_OK,
	           "base archive: %s", alcm_encoder_detail(be));
	FUZZ_CHECK(S, alcm_reader_open_memory(&br, bp, bl, "base", NULL, NULL, 0) == ALCM_OK, "base");
	FUZZ_CHECK(S, alcm_writer_open_memory(&fw, 0, NULL) == ALCM_OK, "frame writer");
	st = alcm_series_begin(&s, fw, NULL, br, &so, NULL);
	FUZZ_CHECK(S, st == ALCM_OK, "series: %s", alcm_series_detail(s));
	alcm_series_report rep;
	st = alcm_series_add(s, t, NULL);
	if (st == ALCM_E_BOUND)
		goto out;
	FUZZ_CHECK(S, st == ALCM_OK && alcm_series_finish(s, &rep) == ALCM_OK,
	           "series frame: %s", alcm_series_detail(s));
	/* A delta only when the reference matches (a lossless one may still be stored whole,
	 * when coding against it would not pay). */
	FUZZ_CHECK(S, rep.delta_tensors <= (reshape || !t->nbytes ? 0u : 1u),
	           "%llu delta tensors", (unsigned long long)rep.delta_tensors);
	FUZZ_CHECK(S, alcm_writer_commit(fw) == ALCM_OK && alcm_writer_memory(fw, &fp, &fl) == ALCM_OK,
	           "commit");
	FUZZ_CHECK(S, alcm_reader_open_memory(&fr, fp, fl, "frame", NULL, NULL, 0) == ALCM_OK,
	           "reopen");
	FUZZ_CHECK(S, alcm_archive_open(&a, fr, NULL) == ALCM_OK, "frame archive");
	st = alcm_archive_decode(a, 0, out, (size_t)t->nbytes);
	FUZZ_CHECK(S, rep.delta_tensors ? st == ALCM_E_NOTFOUND : st == ALCM_OK,
	           "decode without the base: %s", alcm_strerror(st));
	if (rep.delta_tensors) {
		alcm_archive_free(a);
		a = NULL;
		FUZZ_CHECK(S, alcm_archive_open(&a, fr, NULL) == ALCM_OK &&
		           alcm_archive_set_base(a, br) == ALCM_OK, "set base");
		st = alcm_archive_decode(a, 0, out, (size_t)t->nbytes);
		FUZZ_CHECK(S, st == ALCM_OK, "decode through the base: %s", alcm_archive_detail(a));
	}
	alcm_error_stats es;
	alcm_tensor_info ti;
	alcm_archive_tensor_info(a, 0, &ti);
	FUZZ_CHECK(S, alcm_tensor_measure(t, out, &es) == ALCM_OK, "measure");
	FUZZ_CHECK(S, alcm_error_within(&es, ti.mode, so.pack.bound),
	           "series delta (%s, mode %d, bound %.17g) out of bound: identical %d, specials "
	           "exact %d, max abs %.17g, max rel %.17g", alcm_dtype_name(t->dtype), ti.mode,
	           so.pack.bound, es.identical, es.specials_exact, es.max_abs_error,
	           es.max_rel_error);
out:
	alcm_archive_free(a);
	alcm_reader_free(fr);
	alcm_series_free(s);
	alcm_writer_free(fw);
	alcm_reader_free(br);
	alcm_encoder_free(be);
	alcm_writer_free(bw);
	free(out);
	free(bb);
}

static void check_decoded(alcm_archive *a, size_t index, const alcm_tensor *t,
                          const alcm_tensor_report *rep, const uint8_t *recon, double bound,
                          double prune)
{
	alcm_tensor_info ti;
	FUZZ_CHECK(S, alcm_archive_tensor_info(a, index, &ti) == ALCM_OK, "no tensor %zu", index);
	FUZZ_CHECK(S, ti.dtype == t->dtype && ti.ndim == t->ndim && ti.raw_bytes == t->nbytes &&
	           ti.name_len == t->name_len && memcmp(ti.name, t->name, t->name_len) == 0,
	           "tensor %zu: directory entry differs from the tensor", index);
	for (uint32_t d = 0; d < t->ndim; d++)
		FUZZ_CHECK(S, ti.shape[d] == t->shape[d], "tensor %zu: shape differs", index);
	FUZZ_CHECK(S, ti.mode == rep->mode, "tensor %zu: mode %d stored, %d reported", index,
	           ti.mode, rep->mode);
	uint8_t *out = malloc(t->nbytes ? (size_t)t->nbytes : 1);
	if (!out)
		return;
	int st = alcm_archive_decode(a, index, out, (size_t)t->nbytes);
	FUZZ_CHECK(S, st == ALCM_OK, "tensor %zu: decode: %s (%s)", index, alcm_strerror(st),
	           alcm_archive_detail(a));
	FUZZ_CHECK(S, memcmp(out, recon, (size_t)t->nbytes) == 0,
	           "tensor %zu: decoded bytes differ from the encoder's reconstruction", index);
	alcm_error_stats es;
	FUZZ_CHECK(S, alcm_tensor_measure(t, out, &es) == ALCM_OK, "measure");
	if (rep->mode == ALCM_MODE_LOSSLESS)
		FUZZ_CHECK(S, es.identical, "tensor %zu: lossless but not bit-exact", index);
	FUZZ_CHECK(S, alcm_error_within(&es, rep->mode, bound),
	           "tensor %zu (%s, mode %d, bound %.17g): out of bound: identical %d, specials "
	           "exact %d, max abs %.17g, max rel %.17g, snr %.17g dB", index,
	           alcm_dtype_name(t->dtype), rep->mode, bound, es.identical, es.specials_exact,
	           es.max_abs_error, es.max_rel_error, es.snr_db);
	FUZZ_CHECK(S, es.max_abs_error <= rep->max_abs_error,
	           "tensor %zu: measured error %.17g above the reported %.17g", index,
	           es.max_abs_error, rep->max_abs_error);
	uint64_t elems = t->nbytes / alcm_dtype_size(t->dtype);
	FUZZ_CHECK(S, rep->pruned <= (uint64_t)(prune * (double)elems) + 1,
	           "tensor %zu: %llu of %llu values pruned at share %g", index,
	           (unsigned long long)rep->pruned, (unsigned long long)elems, prune);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	size_t name_len = data[4] % 9;
	if (size < 5 + name_len)
		return 0;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.threads = 1;
	o.chunk_bytes = 4096;
	o.mode = data[1] % 5;
	o.level = 1 + (data[1] >> 6);
	o.bound = bound_of(o.mode, data[3], &o.bits);
	o.prune = o.mode == ALCM_MODE_LOSSLESS ? 0 : prunes[(data[1] >> 3) & 3];
	int second = (data[1] >> 5) & 1;

	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = dtypes[data[0] & 15];
	t.name = (const char *)data + 5;
	t.name_len = name_len;
	size_t w = alcm_dtype_size(t.dtype);
	size_t avail = size - 5 - name_len;
	uint64_t used;
	t.ndim = shape_of(data[2], avail / w, t.shape, &used);
	t.nbytes = used * w;
	/* An exact-size copy: ASan then sees a read past the tensor. */
	uint8_t *x = fuzz_dup(data + 5 + name_len, (size_t)t.nbytes);
	uint8_t *recon = malloc(t.nbytes ? (size_t)t.nbytes : 1);
	uint8_t *recon2 = malloc(t.nbytes ? (size_t)t.nbytes : 1);
	alcm_writer *w8 = NULL;
	alcm_encoder *e = NULL;
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	if (!x || !recon || !recon2)
		goto out;
	t.data = x;
	alcm_tensor u = t;
	u.dtype = ALCM_DTYPE_U8;
	u.name = "second";
	u.name_len = 6;
	u.ndim = 1;
	u.shape[0] = t.nbytes;

	FUZZ_CHECK(S, alcm_writer_open_memory(&w8, 0, NULL) == ALCM_OK, "writer");
	int st = alcm_encoder_new(&e, w8, &o, NULL);
	FUZZ_CHECK(S, st == ALCM_OK, "encoder refused valid options (mode %d bound %g bits %u "
	           "prune %g): %s", o.mode, o.bound, o.bits, o.prune, alcm_strerror(st));
	alcm_tensor_report rep, rep2;
	st = alcm_encoder_add_recon(e, &t, &rep, recon);
	if (st == ALCM_E_BOUND)
		goto out; /* a lossy request it says it cannot honour: allowed */
	FUZZ_CHECK(S, st == ALCM_OK, "encode %s %llu bytes mode %d: %s (%s)",
	           alcm_dtype_name(t.dtype), (unsigned long long)t.nbytes, o.mode,
	           alcm_strerror(st), alcm_encoder_detail(e));
	FUZZ_CHECK(S, rep.raw_bytes == t.nbytes, "report raw bytes");
	FUZZ_CHECK(S, alcm_dtype_is_float(t.dtype) || rep.mode == ALCM_MODE_LOSSLESS,
	           "integer tensor stored lossy");
	FUZZ_CHECK(S, t.nbytes > 0 || rep.mode == ALCM_MODE_LOSSLESS,
	           "tensor without elements stored in mode %d (spec 6.3.2)", rep.mode);
	alcm_budget_profile prof;
	FUZZ_CHECK(S, t.nbytes || (alcm_budget_profile_make(NULL, &t, 0, &prof) == ALCM_OK &&
	                           !prof.lossy), "budget profile of a tensor without elements");
	if (second) {
		/* The first tensor may be named "second" too: names are unique, so the encoder must
		 * refuse the copy and still finish the archive with the first alone. */
		int dup = t.name_len == u.name_len && memcmp(t.name, u.name, u.name_len) == 0;
		st = alcm_encoder_add_recon(e, &u, &rep2, recon2);
		if (dup) {
			FUZZ_CHECK(S, st == ALCM_E_ARG && strstr(alcm_encoder_detail(e), "unique"),
			           "second tensor of the first's name: %s (%s)", alcm_strerror(st),
			           alcm_encoder_detail(e));
			second = 0;
		} else {
			FUZZ_CHECK(S, st == ALCM_OK, "encode second: %s (%s)", alcm_strerror(st),
			           alcm_encoder_detail(e));
		}
	}
	FUZZ_CHECK(S, alcm_encoder_finish(e) == ALCM_OK, "finish: %s", alcm_encoder_detail(e));
	FUZZ_CHECK(S, alcm_writer_commit(w8) == ALCM_OK, "commit: %s", alcm_writer_detail(w8));
	const void *arch;
	size_t arch_len;
	FUZZ_CHECK(S, alcm_writer_memory(w8, &arch, &arch_len) == ALCM_OK, "memory");

	st = alcm_reader_open_memory(&r, arch, arch_len, NULL, NULL, NULL, 0);
	FUZZ_CHECK(S, st == ALCM_OK, "reopen: %s", alcm_reader_detail(r));
	uint32_t bad;
	FUZZ_CHECK(S, alcm_reader_verify(r, &bad) == ALCM_OK, "verify: %s", alcm_reader_detail(r));
	st = alcm_archive_open(&a, r, NULL);
	FUZZ_CHECK(S, st == ALCM_OK, "archive: %s", alcm_archive_detail(a));
	FUZZ_CHECK(S, alcm_archive_tensor_count(a) == (size_t)(1 + second), "tensor count");
	check_decoded(a, 0, &t, &rep, recon, o.bound, o.prune);
	if (second)
		check_decoded(a, 1, &u, &rep2, recon2, 0, 0);
	if (data[0] & 0x10)
		check_series(&t, &o, data[3], (data[0] >> 5) & 1);
out:
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_encoder_free(e);
	alcm_writer_free(w8);
	free(recon2);
	free(recon);
	free(x);
	return 0;
}
