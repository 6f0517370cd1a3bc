/*
 * H5Zalcm: an HDF5 filter plugin that stores each chunk with alcm's coding, lossless or
 * error-bounded. Built as libH5Zalcm.so; libhdf5 loads it from HDF5_PLUGIN_PATH when a
 * dataset names filter ALCM_H5Z_FILTER_ID (417, from the range HDF5 keeps for testing).
 *
 *   h5repack -f UD=417,0,6,1,0,0,0,0,3 in.h5 out.h5       lossless, zstd level 3
 *   h5repack -f UD=417,0,4,1,1,3539053052,1062232653 ...   max-error 1e-3 (the double's
 *                                                           low and high 32-bit words)
 *
 * cd_values (spec/alcm-format.md 6.6.13): [0] version 1, [1] mode, [2..3] bound as an
 * IEEE double (low word, high word), [4] bits, [5] zstd level; set_local appends [6] alcm
 * dtype, [7] big-endian flag, [8] chunk rank r, [9 .. 9+r) chunk dimensions.
 *
 * Each chunk is coded as a one-tensor in-memory .alcm archive (header, digests, table): the
 * public API, the same checks on decode as any archive, and a self-describing chunk that
 * alcm-inspect can read. Types that are not plain numbers are coded as uint8, losslessly.
 */
#include "alcm.h"
#include "alcm_hdf5.h"
#include "h5_hdf5.h"

#include <H5PLextern.h>
#include <hdf5.h>
#include <string.h>

#define CD_N_USER ALCM_H5Z_CD_USER
#define CD_N_MIN ALCM_H5Z_CD_DIMS

static void put_defaults(unsigned *cd, size_t n)
{
	static const unsigned def[CD_N_USER] = {1, ALCM_MODE_LOSSLESS, 0, 0, 8, 0};
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

/* The encoder's own ranges, checked when the dataset is created rather than at the first
 * chunk write (where libhdf5 reports a failure late and vaguely). */
static int params_ok(const unsigned *cd)
{
	unsigned mode = cd[ALCM_H5Z_CD_MODE];
	double b = cd_bound(cd);
	if (cd[ALCM_H5Z_CD_VERSION] != 1 || mode > ALCM_MODE_BITS || cd[ALCM_H5Z_CD_LEVEL] > 19)
		return 0;
	if (mode == ALCM_MODE_BITS && (cd[ALCM_H5Z_CD_BITS] < 2 || cd[ALCM_H5Z_CD_BITS] > 16))
		return 0;
	if ((mode == ALCM_MODE_MAX_ERROR || mode == ALCM_MODE_REL_ERROR || mode == ALCM_MODE_SNR) &&
	    !(b > 0 && b < 1e300))
		return 0;
	return 1;
}

/* Every type: a plain number is coded as such, anything else as bytes. */
static htri_t can_apply(hid_t dcpl, hid_t type, hid_t space)
{
	(void)dcpl, (void)space;
	return H5Tget_size(type) > 0 ? 1 : 0;
}

static herr_t set_local(hid_t dcpl, hid_t type, hid_t space)
{
	(void)space;
	unsigned flags = 0, cd[CD_N_MIN + H5S_MAX_RANK];
	size_t n = CD_N_MIN + H5S_MAX_RANK;
	if (H5Pget_filter_by_id2(dcpl, ALCM_H5Z_FILTER_ID, &flags, &n, cd, 0, NULL, NULL) < 0)
		return -1;
	if (n > CD_N_USER)
		n = CD_N_USER; /* values set_local appended before (a copied dcpl): recomputed */
	put_defaults(cd, n);
	if (!params_ok(cd))
		return -1;
	hsize_t dims[H5S_MAX_RANK];
	int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, dims);
	if (rank <= 0)
		return -1;
	/* The bridge's own classifier: the same rules as the .h5 reader. */
	ah5buf b;
	memset(&b, 0, sizeof(b));
	ah5_type_info ti;
	memset(&ti, 0, sizeof(ti));
	char why[ALCM_DETAIL_MAX];
	int plain = ah5_type_encode(type, &b, why) == ALCM_OK &&
	            ah5_type_classify(b.p, b.len, &ti, NULL) == ALCM_OK && ti.dtype;
	ah5buf_free(&b);
	size_t esize = H5Tget_size(type);
	cd[ALCM_H5Z_CD_DTYPE] = plain ? (unsigned)ti.dtype : ALCM_DTYPE_U8;
	cd[ALCM_H5Z_CD_SWAP] = plain && ti.swap;
	cd[ALCM_H5Z_CD_RANK] = (unsigned)rank + (plain ? 0 : 1);
	for (int i = 0; i < rank; i++)
		cd[ALCM_H5Z_CD_DIMS + i] = (unsigned)dims[i];
	if (!plain) {
		if (rank >= H5S_MAX_RANK)
			return -1;
		cd[ALCM_H5Z_CD_DIMS + rank] = (unsigned)esize;
	}
	return H5Pmodify_filter(dcpl, ALCM_H5Z_FILTER_ID, flags,
	                        CD_N_MIN + cd[ALCM_H5Z_CD_RANK], cd);
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

/* Shape of a chunk from cd_values; @return its byte size, 0 if cd_values are malformed. */
static uint64_t chunk_shape(size_t n, const unsigned *cd, alcm_tensor *t)
{
	if (n < CD_N_MIN || cd[ALCM_H5Z_CD_VERSION] != 1 || cd[ALCM_H5Z_CD_MODE] > ALCM_MODE_BITS)
		return 0;
	size_t es = alcm_dtype_size((int)cd[ALCM_H5Z_CD_DTYPE]);
	uint32_t r = cd[ALCM_H5Z_CD_RANK];
	if (!es || r == 0 || r > ALCM_MAX_NDIM || n != CD_N_MIN + r)
		return 0;
	memset(t, 0, sizeof(*t));
	t->dtype = (int)cd[ALCM_H5Z_CD_DTYPE];
	t->ndim = r;
	for (uint32_t i = 0; i < r; i++)
		t->shape[i] = cd[ALCM_H5Z_CD_DIMS + i];
	uint64_t el, nb;
	if (alcm_shape_elements(t->shape, r, &el) || alcm_mul_u64(el, es, &nb) || nb > UINT32_MAX)
		return 0;
	t->nbytes = nb;
	return nb;
}

static size_t encode(size_t n, const unsigned *cd, size_t nbytes, size_t *buf_size, void **buf)
{
	alcm_tensor t;
	uint64_t want = chunk_shape(n, cd, &t);
	if (!want)
		return 0;
	if (want != nbytes)
		return 0; /* libhdf5 hands over whole chunks; anything else is not ours to code */
	t.name = "chunk";
	t.name_len = 5;
	uint8_t *tmp = NULL;
	t.data = *buf;
	if (cd[ALCM_H5Z_CD_SWAP]) {
		tmp = H5allocate_memory(nbytes ? nbytes : 1, 0);
		if (!tmp)
			return 0;
		memcpy(tmp, *buf, nbytes);
		swap_bytes(tmp, nbytes, alcm_dtype_size(t.dtype));
		t.data = tmp;
	}
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = (int)cd[ALCM_H5Z_CD_MODE];
	o.bound = cd_bound(cd);
	o.bits = cd[ALCM_H5Z_CD_BITS];
	o.level = cd[ALCM_H5Z_CD_LEVEL] ? (int)cd[ALCM_H5Z_CD_LEVEL] : 3;
	o.threads = 1;
	o.chunk_bytes = nbytes < 4096 ? 4096 : nbytes > ((size_t)1 << 30) ? (size_t)1 << 30 : nbytes;
	o.producer = "H5Zalcm";
	o.source_format = "hdf5-chunk";
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	const void *mem;
	size_t len = 0, ret = 0;
	if (alcm_writer_open_memory(&w, 0, NULL) || alcm_encoder_new(&e, w, &o, NULL) ||
	    alcm_encoder_add(e, &t, NULL) || alcm_encoder_finish(e) || alcm_writer_commit(w) ||
	    alcm_writer_memory(w, &mem, &len))
		goto out;
	void *outb = H5allocate_memory(len, 0);
	if (!outb)
		goto out;
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

static size_t decode(size_t n, const unsigned *cd, size_t nbytes, size_t *buf_size, void **buf)
{
	alcm_tensor t;
	uint64_t want = chunk_shape(n, cd, &t);
	if (!want)
		return 0;
	/* A chunk is as untrusted as any archive; it may not decode to more than its chunk. */
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
	if (alcm_reader_open_memory(&r, *buf, nbytes, "chunk", &lim, NULL, 0) ||
	    alcm_archive_open(&a, r, NULL) || alcm_archive_tensor_count(a) != 1 ||
	    alcm_archive_tensor_info(a, 0, &ti) || ti.raw_bytes != want)
		goto out;
	outb = H5allocate_memory((size_t)want ? (size_t)want : 1, 0);
	if (!outb || alcm_archive_decode(a, 0, outb, (size_t)want))
		goto out;
	if (cd[ALCM_H5Z_CD_SWAP])
		swap_bytes(outb, (size_t)want, alcm_dtype_size(ti.dtype));
	H5free_memory(*buf);
	*buf = outb;
	outb = NULL;
	*buf_size = (size_t)want;
	ret = (size_t)want;
out:
	if (outb)
		H5free_memory(outb);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return ret;
}

static size_t filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                     size_t *buf_size, void **buf)
{
	if (flags & H5Z_FLAG_REVERSE)
		return decode(cd_nelmts, cd_values, nbytes, buf_size, buf);
	return encode(cd_nelmts, cd_values, nbytes, buf_size, buf);
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

__attribute__((visibility("default"))) H5PL_type_t H5PLget_plugin_type(void)
{
	return H5PL_TYPE_FILTER;
}

__attribute__((visibility("default"))) const void *H5PLget_plugin_info(void)
{
	return &alcm_class;
}
