/*
 * Surface: the one-shot memory readers against the file readers. The same bytes are opened
 * from memory (alcm_reader_open_memory, alcm_input_open_memory) and through a file descriptor
 * (a memfd: alcm_reader_open_file, alcm_input_open): both must give the same verdict at every
 * step (status of open, verify, each section read, the archive, each frame, each tensor) and
 * the same tensors (directory entries and decoded bytes), and a refusal must come with a
 * detail line. Any difference aborts.
 * Input: bytes, then one options byte:
 *   FUZZ_OPT_RAW, FUZZ_OPT_NO_VERIFY as in fuzz_common.h;
 *   0x04  the file side decodes with 2 threads (the memory side with 1);
 *   0x08  every frame of a stream, not only the last.
 */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S "diff"

#define OPT_THREADS 0x04u
#define OPT_FRAMES 0x08u

static void same_info(const alcm_tensor_info *a, const alcm_tensor_info *b, size_t i)
{
	FUZZ_CHECK(S, a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0 &&
	           a->dtype == b->dtype && a->ndim == b->ndim &&
	           memcmp(a->shape, b->shape, a->ndim * sizeof(uint64_t)) == 0 &&
	           a->elements == b->elements && a->raw_bytes == b->raw_bytes &&
	           a->stored_bytes == b->stored_bytes && a->mode == b->mode && a->bits == b->bits &&
	           a->scales == b->scales && a->chunks == b->chunks,
	           "tensor %zu: the directory entries differ", i);
}

static void refusal(int st, const char *detail, const char *what)
{
	FUZZ_CHECK(S, st == ALCM_OK || (detail && *detail), "%s: status %d without a detail", what,
	           st);
}

/* One archive object per reader, for the same frame: same tensors, decoded alike. */
static void same_archive(alcm_reader *rm, alcm_reader *rf, uint32_t frame, int all, int threads)
{
	alcm_archive *am = NULL, *af = NULL;
	int sm = all ? alcm_archive_open_frame(&am, rm, frame, NULL) : alcm_archive_open(&am, rm, NULL);
	int sf = all ? alcm_archive_open_frame(&af, rf, frame, NULL) : alcm_archive_open(&af, rf, NULL);
	FUZZ_CHECK(S, sm == sf, "archive open: memory %d, file %d (%s | %s)", sm, sf,
	           alcm_archive_detail(am), alcm_archive_detail(af));
	refusal(sm, alcm_archive_detail(am), "archive open");
	if (sm) {
		alcm_archive_free(am);
		alcm_archive_free(af);
		return;
	}
	size_t n = alcm_archive_tensor_count(am);
	FUZZ_CHECK(S, n == alcm_archive_tensor_count(af), "tensor counts differ");
	FUZZ_CHECK(S, alcm_archive_meta_count(am) == alcm_archive_meta_count(af), "meta counts");
	alcm_archive_set_threads(am, 1);
	alcm_archive_set_threads(af, threads);
	for (size_t i = 0; i < n; i++) {
		alcm_tensor_info im, in;
		FUZZ_CHECK(S, alcm_archive_tensor_info(am, i, &im) == ALCM_OK &&
		           alcm_archive_tensor_info(af, i, &in) == ALCM_OK, "info %zu", i);
		same_info(&im, &in, i);
		uint32_t cm = 0, cf = 0;
		int tm = alcm_archive_tensor_coding(am, i, &cm), tf = alcm_archive_tensor_coding(af, i, &cf);
		FUZZ_CHECK(S, tm == tf && cm == cf, "tensor %zu: coding %d/%u vs %d/%u", i, tm, cm, tf,
		           cf);
		size_t cap = (size_t)im.raw_bytes;
		uint8_t *bm = malloc(cap ? cap : 1), *bf = malloc(cap ? cap : 1);
		if (!bm || !bf) {
			free(bm);
			free(bf);
			break;
		}
		int dm = alcm_archive_decode(am, i, bm, cap), df = alcm_archive_decode(af, i, bf, cap);
		FUZZ_CHECK(S, dm == df, "tensor %zu: decode status memory %d, file %d (%s | %s)", i, dm,
		           df, alcm_archive_detail(am), alcm_archive_detail(af));
		refusal(dm, alcm_archive_detail(am), "decode");
		FUZZ_CHECK(S, dm || memcmp(bm, bf, cap) == 0, "tensor %zu: decoded bytes differ", i);
		free(bm);
		free(bf);
	}
	alcm_archive_free(am);
	alcm_archive_free(af);
}

static void same_container(const uint8_t *buf, size_t size, int fd, const char *path,
                           uint8_t opt)
{
	alcm_limits lim;
	fuzz_limits_tight(&lim);
	unsigned flags = (opt & FUZZ_OPT_NO_VERIFY) ? ALCM_READ_NO_VERIFY : 0;
	alcm_reader *rm = NULL, *rf = NULL;
	int sm = alcm_reader_open_memory(&rm, buf, size, path, &lim, NULL, flags);
	int sf = alcm_reader_open_file(&rf, path, &lim, NULL, flags);
	FUZZ_CHECK(S, sm == sf, "reader open: memory %d, file %d (%s | %s)", sm, sf,
	           alcm_reader_detail(rm), alcm_reader_detail(rf));
	refusal(sm, alcm_reader_detail(rm), "reader open");
	if (!sm) {
		uint32_t n = alcm_reader_section_count(rm);
		FUZZ_CHECK(S, n == alcm_reader_section_count(rf) &&
		           alcm_reader_generation(rm) == alcm_reader_generation(rf) &&
		           alcm_reader_tail_bytes(rm) == alcm_reader_tail_bytes(rf) &&
		           alcm_reader_flags(rm) == alcm_reader_flags(rf) &&
		           alcm_reader_file_size(rm) == alcm_reader_file_size(rf),
		           "the containers differ");
		for (uint32_t i = 0; i < n; i++) {
			alcm_section_info a, b;
			alcm_reader_section_info(rm, i, &a);
			alcm_reader_section_info(rf, i, &b);
			FUZZ_CHECK(S, memcmp(a.type, b.type, 5) == 0 && a.flags == b.flags &&
			           a.tag == b.tag && a.offset == b.offset && a.length == b.length &&
			           memcmp(a.digest, b.digest, 32) == 0 && a.known == b.known,
			           "section %u differs", i);
			if (a.length > ((uint64_t)1 << 20))
				continue;
			uint8_t *pm = malloc(a.length ? (size_t)a.length : 1);
			uint8_t *pf = malloc(a.length ? (size_t)a.length : 1);
			if (pm && pf) {
				int qm = alcm_reader_section_read(rm, i, pm, (size_t)a.length);
				int qf = alcm_reader_section_read(rf, i, pf, (size_t)a.length);
				FUZZ_CHECK(S, qm == qf && (qm || memcmp(pm, pf, (size_t)a.length) == 0),
				           "section %u reads differently (%d, %d)", i, qm, qf);
			}
			free(pm);
			free(pf);
		}
		uint32_t bm = 0, bf = 0;
		int vm = alcm_reader_verify(rm, &bm), vf = alcm_reader_verify(rf, &bf);
		FUZZ_CHECK(S, vm == vf && (vm == ALCM_OK || bm == bf),
		           "verify: memory %d (section %u), file %d (section %u)", vm, bm, vf, bf);
		int gm = 0, gf = 0;
		int cm = alcm_reader_check_signature(rm, NULL, &gm);
		int cf = alcm_reader_check_signature(rf, NULL, &gf);
		FUZZ_CHECK(S, cm == cf && gm == gf, "signature: %d/%d vs %d/%d", cm, gm, cf, gf);
		int threads = (opt & OPT_THREADS) ? 2 : 1;
		uint32_t frames = alcm_archive_frame_count(rm);
		FUZZ_CHECK(S, frames == alcm_archive_frame_count(rf), "frame counts differ");
		if ((opt & OPT_FRAMES) && frames > 0) {
			uint32_t k = 0, from = 0;
			for (uint32_t f = 0; f < 8 && alcm_archive_find_dir(rm, from, &k) == ALCM_OK;
			     f++, from = k + 1) {
				alcm_section_info si;
				alcm_reader_section_info(rm, k, &si);
				same_archive(rm, rf, si.tag, 1, threads);
			}
		} else {
			same_archive(rm, rf, 0, 0, threads);
		}
	}
	alcm_reader_free(rm);
	alcm_reader_free(rf);
	(void)fd;
}

/* The tensor-file readers: format, then every tensor or refusal, in the same order. */
static void same_inputs(const uint8_t *buf, size_t size, const char *path)
{
	alcm_limits lim;
	fuzz_limits_tight(&lim);
	alcm_input *im = NULL, *in = NULL;
	/* The memory side is named as the file, so that a .npy's tensor gets the same name. */
	int sm = alcm_input_open_memory(&im, buf, size, 0, path, &lim, NULL);
	int sf = alcm_input_open(&in, path, &lim, NULL);
	refusal(sm, alcm_input_detail(im), "input open");
	/* A sharded checkpoint's index names shard files beside it: the memory reader refuses
	 * it unread (unsupported, by design), whatever the file reader then finds in it. */
	if (alcm_detect_format(buf, size) == ALCM_FILE_SHARDS) {
		FUZZ_CHECK(S, sm == ALCM_E_UNSUPPORTED, "input open: a shard index from memory: %d",
		           sm);
		alcm_input_free(im);
		alcm_input_free(in);
		return;
	}
	FUZZ_CHECK(S, sm == sf, "input open: memory %d, file %d (%s | %s)", sm, sf,
	           alcm_input_detail(im), alcm_input_detail(in));
	if (!sm) {
		FUZZ_CHECK(S, alcm_input_format(im) == alcm_input_format(in), "formats differ");
		for (int k = 0; k < 1024; k++) {
			alcm_tensor a, b;
			int ha = 0, hb = 0;
			int na = alcm_input_next(im, &a, &ha), nb = alcm_input_next(in, &b, &hb);
			FUZZ_CHECK(S, na == nb && ha == hb, "tensor %d: memory %d/%d, file %d/%d (%s | %s)",
			           k, na, ha, nb, hb, alcm_input_detail(im), alcm_input_detail(in));
			refusal(na, alcm_input_detail(im), "input next");
			if (na || !ha)
				break;
			FUZZ_CHECK(S, a.name_len == b.name_len &&
			           (a.name_len == 0 || memcmp(a.name, b.name, a.name_len) == 0) &&
			           a.dtype == b.dtype && a.ndim == b.ndim &&
			           memcmp(a.shape, b.shape, a.ndim * sizeof(uint64_t)) == 0 &&
			           a.nbytes == b.nbytes &&
			           (a.nbytes == 0 || memcmp(a.data, b.data, (size_t)a.nbytes) == 0),
			           "tensor %d differs between the memory and the file reader", k);
		}
	}
	alcm_input_free(im);
	alcm_input_free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t opt;
	if (!fuzz_split(&data, &size, &opt))
		return 0;
	uint8_t *buf = fuzz_dup(data, size);
	if (!buf)
		return 0;
	if (ALCM_FUZZ_FIXUP && !(opt & FUZZ_OPT_RAW))
		fuzz_fixup_digests(buf, size);
	char path[64];
	int fd = fuzz_memfd(buf, size, path);
	if (fd >= 0) {
		same_container(buf, size, fd, path, opt);
		same_inputs(buf, size, path);
		close(fd);
	}
	free(buf);
	return 0;
}
