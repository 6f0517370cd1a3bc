/*
 * Surface: compact tensor frames (spec 6.11), what the HDF5 filter decodes for every chunk.
 * Input: frame bytes, then one options byte:
 *   0x01  do not forge the check (FUZZ_OPT_RAW): the XXH64 check itself is tested; by
 *         default the last 8 bytes are recomputed so that every mutation reaches the decoders
 *   0x02  ALCM_READ_NO_VERIFY
 *   0x04  default limits (a declared size above 64 MiB is then only checked, not decoded)
 *   0x08  round trip instead: the bytes are a tensor (byte 0 dtype, byte 1 mode and pruning,
 *         byte 2 the bound, then the elements), compressed (within the bound the API
 *         promises), decompressed, and compared: bit-exact, or within the bound
 * A frame that decodes is compressed again losslessly and must come back bit for bit.
 */
#include "fuzz_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S "tframe"

#define OPT_DEFAULT_LIMITS 0x04u
#define OPT_ROUNDTRIP 0x08u

/* The frame check (lib/tframe.c; internal, reachable in the static library). */
uint64_t alcm_xxh64(const void *src, size_t len, uint64_t seed);

static alcm_tensor_ctx *ctx;

static void forge(uint8_t *b, size_t n)
{
	if (n < 8)
		return;
	uint64_t h = alcm_xxh64(b, n - 8, 0);
	for (int k = 0; k < 8; k++)
		b[n - 8 + k] = (uint8_t)(h >> (8 * k));
}

/* Compresses t losslessly (or with o), decompresses, and checks the promise. */
static void round_trip(const alcm_tensor *t, const alcm_pack_options *o, const alcm_limits *lim)
{
	size_t cap = alcm_tensor_compress_bound(t, o), len;
	FUZZ_CHECK(S, cap > 0, "no bound for a valid tensor");
	uint8_t *f = malloc(cap);
	uint8_t *back = malloc(t->nbytes ? (size_t)t->nbytes : 1);
	if (!f || !back) {
		free(f);
		free(back);
		return;
	}
	alcm_tensor_report rep;
	int st = alcm_tensor_ctx_compress(ctx, f, cap, &len, t, o, &rep);
	FUZZ_CHECK(S, st == ALCM_OK, "compress: %s", alcm_tensor_ctx_detail(ctx));
	FUZZ_CHECK(S, len <= cap && rep.stored_bytes == len, "frame of %zu bytes, bound %zu", len,
	           cap);
	st = alcm_tensor_ctx_decompress(ctx, back, (size_t)t->nbytes, f, len, lim, 0);
	FUZZ_CHECK(S, st == ALCM_OK, "decompress of a fresh frame: %s", alcm_tensor_ctx_detail(ctx));
	alcm_error_stats es;
	FUZZ_CHECK(S, alcm_tensor_measure(t, back, &es) == ALCM_OK, "measure");
	int mode = o ? rep.mode : ALCM_MODE_LOSSLESS;
	FUZZ_CHECK(S, mode == ALCM_MODE_LOSSLESS ? es.identical
	                                        : alcm_error_within(&es, mode, o->bound),
	           "mode %d bound %g: max error %g, snr %g, specials %d", mode, o ? o->bound : 0,
	           es.max_abs_error, es.snr_db, es.specials_exact);
	free(f);
	free(back);
}

static const int dtypes[8] = {ALCM_DTYPE_F32, ALCM_DTYPE_F16, ALCM_DTYPE_BF16, ALCM_DTYPE_F64,
                              ALCM_DTYPE_U8,  ALCM_DTYPE_I16, ALCM_DTYPE_U32, ALCM_DTYPE_I64};

static void tensor_mode(const uint8_t *d, size_t n)
{
	if (n < 3)
		return;
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = dtypes[d[0] & 7];
	size_t w = alcm_dtype_size(t.dtype);
	uint64_t elems = (n - 3) / w, rows = 1 + ((d[0] >> 3) & 7);
	t.ndim = 2;
	t.shape[0] = rows;
	t.shape[1] = elems / rows;
	t.nbytes = t.shape[0] * t.shape[1] * w;
	t.data = d + 3;
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = d[1] % 5;
	o.prune = o.mode ? ((d[1] >> 3) & 3) * 0.08 : 0;
	o.chunk_bytes = 4096;
	o.bits = 2 + d[2] % 15;
	o.bound = o.mode == ALCM_MODE_SNR ? 1 + d[2] * 0.5
	          : o.mode == ALCM_MODE_REL_ERROR ? ldexp(1.0, -1 - (d[2] & 31))
	                                          : ldexp(1.0, (int)(d[2] & 63) - 40);
	round_trip(&t, &o, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t opt;
	if (!fuzz_split(&data, &size, &opt))
		return 0;
	if (!ctx && alcm_tensor_ctx_new(&ctx, NULL) != ALCM_OK)
		return 0;
	if (opt & OPT_ROUNDTRIP) {
		tensor_mode(data, size);
		return 0;
	}
	uint8_t *buf = fuzz_dup(data, size);
	if (!buf)
		return 0;
	if (!(opt & FUZZ_OPT_RAW))
		forge(buf, size);
	alcm_limits lim;
	if (opt & OPT_DEFAULT_LIMITS)
		alcm_limits_default(&lim);
	else {
		/* tighter than the other harnesses: a frame declares its size in a few bytes, and
		 * decoding buffers of 16 MiB per input slowed fuzzing to 200 runs a second */
		fuzz_limits_tight(&lim);
		lim.max_decoded_bytes = 1 << 20;
	}
	alcm_tensor_info ti;
	int st = alcm_tensor_frame_info(&ti, buf, size, &lim);
	if (st == ALCM_OK) {
		FUZZ_CHECK(S, ti.ndim <= lim.max_ndim && ti.elements <= lim.max_elements &&
		           ti.raw_bytes <= lim.max_decoded_bytes &&
		           ti.raw_bytes == ti.elements * alcm_dtype_size(ti.dtype) &&
		           ti.stored_bytes == size, "frame info breaks the limits");
		if (ti.raw_bytes <= ((uint64_t)64 << 20)) {
			size_t n = (size_t)ti.raw_bytes;
			uint8_t *out = malloc(n ? n : 1);
			if (out) {
				unsigned fl = opt & FUZZ_OPT_NO_VERIFY ? ALCM_READ_NO_VERIFY : 0;
				if (n)
					FUZZ_CHECK(S, alcm_tensor_ctx_decompress(ctx, out, n - 1, buf, size, &lim,
					                                         fl) != ALCM_OK,
					           "a buffer one byte short was accepted");
				st = alcm_tensor_ctx_decompress(ctx, out, n, buf, size, &lim, fl);
				if (st == ALCM_OK) {
					fuzz_touch(out, n);
					alcm_tensor t;
					memset(&t, 0, sizeof(t));
					t.dtype = ti.dtype;
					t.ndim = ti.ndim;
					memcpy(t.shape, ti.shape, sizeof(t.shape));
					t.data = out;
					t.nbytes = ti.raw_bytes;
					round_trip(&t, NULL, &lim);
				} else {
					FUZZ_CHECK(S, st != ALCM_E_ARG, "ALCM_E_ARG from a valid call");
					FUZZ_CHECK(S, strlen(alcm_tensor_ctx_detail(ctx)) > 0,
					           "failure without a detail");
				}
				free(out);
			}
		}
	}
	free(buf);
	return 0;
}
