/*
 * Surface: the HDF5 bridge. Input: bytes, then one options byte:
 *   0x80 clear: the bytes are an HDF5 file image, read with alcm_h5_input_open_memory() and
 *        alcm_h5_input_next() until done; the structure it builds must pass
 *        alcm_h5_structure_check();
 *   0x80 set:   the bytes are an ATTR payload (what an archive carries), checked with
 *        alcm_h5_structure_check() and its skipped entries listed: alcm's own parser,
 *        no libhdf5;
 *   0x01 default limits instead of the tight ones; 0x02 ALCM_H5_SKIP_UNSUPPORTED.
 * External links, external storage and filter plugins stay off (their flags are never
 * set): libhdf5 would then read other files.
 *
 * After each input no HDF5 object may remain open: a bridge that forgets to close an id
 * fails here. Leaks inside libhdf5 itself (its metadata cache on some damaged object
 * headers, in the 1.10 series) are not ours: fuzz/run.sh suppresses leaks whose stack is
 * in libhdf5 (fuzz/lsan.supp), which this check makes safe.
 */
#include "fuzz_common.h"
#include "alcm_hdf5.h"

#include <hdf5.h>

#include <stdlib.h>
#include <string.h>

#define S "hdf5"

#define OPT_DEFAULTS 0x01u
#define OPT_SKIP 0x02u
#define OPT_STRUCTURE 0x80u

static void check_structure(const void *buf, size_t len, int must_pass)
{
	alcm_h5_structure_stats st;
	char why[512];
	int rc = alcm_h5_structure_check(buf, len, &st, why);
	if (must_pass)
		FUZZ_CHECK(S, rc == ALCM_OK, "the bridge built a structure it refuses: %s", why);
	if (rc != ALCM_OK) {
		FUZZ_CHECK(S, rc == ALCM_E_CORRUPT || rc == ALCM_E_UNSUPPORTED, "status %d", rc);
		FUZZ_CHECK(S, why[0] != '\0', "a refusal without a reason");
		return;
	}
	FUZZ_CHECK(S, st.tensor_datasets <= st.datasets, "%llu tensor datasets of %llu",
	           (unsigned long long)st.tensor_datasets, (unsigned long long)st.datasets);
	for (uint64_t i = 0; i < st.skipped && i < 256; i++) {
		const char *path, *attr, *reason;
		size_t pl, al, rl;
		rc = alcm_h5_structure_skipped(buf, len, i, &path, &pl, &attr, &al, &reason, &rl);
		FUZZ_CHECK(S, rc == ALCM_OK, "skipped entry %llu of %llu: status %d",
		           (unsigned long long)i, (unsigned long long)st.skipped, rc);
		FUZZ_CHECK(S, path >= (const char *)buf && path + pl <= (const char *)buf + len,
		           "skipped path outside the payload");
		fuzz_touch(path, pl);
		if (attr)
			fuzz_touch(attr, al);
		fuzz_touch(reason, rl);
	}
	FUZZ_CHECK(S, alcm_h5_structure_skipped(buf, len, st.skipped, NULL, NULL, NULL, NULL,
	                                        NULL, NULL) != ALCM_OK,
	           "a skipped entry past the count");
}

static void check_tensor(const alcm_tensor *t, const alcm_limits *lim)
{
	size_t w = alcm_dtype_size(t->dtype);
	uint64_t elems;
	FUZZ_CHECK(S, w != 0, "unknown dtype %d", t->dtype);
	FUZZ_CHECK(S, t->ndim <= ALCM_MAX_NDIM, "rank %u", t->ndim);
	FUZZ_CHECK(S, alcm_shape_elements(t->shape, t->ndim, &elems) == ALCM_OK &&
	           elems * w == t->nbytes, "shape and byte count disagree");
	FUZZ_CHECK(S, t->nbytes <= lim->max_decoded_bytes, "%llu bytes over the limit",
	           (unsigned long long)t->nbytes);
	FUZZ_CHECK(S, t->data || !t->nbytes, "no data");
	fuzz_touch(t->name, t->name_len);
	fuzz_touch(t->data, (size_t)t->nbytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t opt;
	if (!fuzz_split(&data, &size, &opt))
		return 0;
	uint8_t *buf = fuzz_dup(data, size);
	if (!buf)
		return 0;
	if (opt & OPT_STRUCTURE) {
		check_structure(buf, size, 0);
		free(buf);
		return 0;
	}
	alcm_limits lim;
	if (opt & OPT_DEFAULTS)
		alcm_limits_default(&lim);
	else
		fuzz_limits_tight(&lim);
	alcm_h5_input *in = NULL;
	/* ALCM_FUZZ_H5_ISOLATE=1 (CI): libhdf5 runs in the bridge's child process, so that a bug
	 * inside libhdf5 ends that child only; what is fuzzed is the parent's side, which checks
	 * every answer of the child again: the boundary the tools rely on. */
	static int isolate = -1;
	if (isolate < 0) {
		const char *e = getenv("ALCM_FUZZ_H5_ISOLATE");
		isolate = e && *e == '1';
	}
	unsigned flags = (opt & OPT_SKIP) ? ALCM_H5_SKIP_UNSUPPORTED : 0;
	int st = alcm_h5_input_open_memory(&in, buf, size, &lim,
	                                   flags | (isolate ? ALCM_H5_ISOLATE : 0));
	free(buf); /* the image is copied */
	if (st == ALCM_OK) {
		const void *sb;
		size_t sl;
		FUZZ_CHECK(S, alcm_h5_input_structure(in, &sb, &sl) == ALCM_OK, "no structure");
		FUZZ_CHECK(S, sl <= lim.max_meta_bytes, "structure of %zu bytes over the limit", sl);
		check_structure(sb, sl, 1);
		size_t count = alcm_h5_input_tensor_count(in), got = 0;
		FUZZ_CHECK(S, count <= lim.max_tensors, "%zu tensors over the limit", count);
		for (size_t i = 0; i < alcm_h5_input_skipped(in); i++) {
			const char *reason = NULL, *name = alcm_h5_input_skipped_name(in, i, &reason);
			FUZZ_CHECK(S, name != NULL, "skipped entry %zu has no name", i);
			fuzz_touch(name, strlen(name));
		}
		for (;;) {
			alcm_tensor t;
			int has = 0;
			st = alcm_h5_input_next(in, &t, &has);
			if (st != ALCM_OK || !has)
				break;
			check_tensor(&t, &lim);
			got++;
		}
		FUZZ_CHECK(S, st != ALCM_OK || got == count, "%zu tensors read, %zu announced", got,
		           count);
	} else {
		FUZZ_CHECK(S, st > ALCM_OK && st <= ALCM_E_SIGNATURE, "status %d", st);
	}
	alcm_h5_input_free(in);
	ssize_t open_ids = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
	FUZZ_CHECK(S, open_ids == 0, "%zd HDF5 objects left open", open_ids);
	return 0;
}
