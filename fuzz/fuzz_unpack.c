/*
 * Surface: a full in-memory unpack under tight limits: reader, archive (metadata, predictor,
 * directory), every frame of a stream, every tensor decoded, FRAM reports, stream resume.
 * Input: archive bytes, then one options byte:
 *   FUZZ_OPT_RAW, FUZZ_OPT_NO_VERIFY as in fuzz_common.h;
 *   0x04  decode each tensor again with 2 threads, whole and in pieces
 *         (alcm_archive_decode_pieces, one tensor and then the whole list): same status and
 *         bytes (the decoder promises the same result for any thread count and either way);
 *   0x08  open every frame, not only the last;
 *   0x10  resume a stream encoder from the archive;
 *   0x20  give every frame the archive itself as its base archive (spec 6.12): a series'
 *         base references then reach the identity check and the chain code.
 */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S "unpack"

#define OPT_THREADS 0x04u
#define OPT_FRAMES 0x08u
#define OPT_RESUME 0x10u
#define OPT_SELF_BASE 0x20u

/* The least data section the archive's relay takes (lib/codec_internal.h): 1 byte here, so
 * that the list decoded with 2 threads goes through the relay whatever the input's size. */
extern uint64_t alcm_relay_min;
/* format/reader.c: direct reads for every file reader (tests only). */
extern int alcm_dio_read_force;

/* Collects the pieces of one tensor (list position pos_want), or only counts them (buf
 * NULL: a list of several tensors, whose pieces must come in list order). */
typedef struct piece_sink {
	uint8_t *buf;
	size_t cap, len, pos;
} piece_sink;

static int piece_take(void *ctx, size_t pos, const void *data, size_t len)
{
	piece_sink *s = ctx;
	FUZZ_CHECK(S, pos >= s->pos, "piece of list position %zu after one of %zu", pos, s->pos);
	if (pos != s->pos) {
		s->pos = pos;
		s->len = 0;
	}
	FUZZ_CHECK(S, !s->buf || len <= s->cap - s->len, "pieces past the tensor's %zu bytes",
	           s->cap);
	if (s->buf)
		memcpy(s->buf + s->len, data, len);
	else
		fuzz_touch(data, len);
	s->len += len;
	return ALCM_OK;
}

static void decode_all(alcm_archive *a, const alcm_limits *lim, int twice)
{
	size_t n = alcm_archive_tensor_count(a);
	int all_ok = 1;
	for (size_t i = 0; i < n; i++) {
		alcm_tensor_info ti;
		FUZZ_CHECK(S, alcm_archive_tensor_info(a, i, &ti) == ALCM_OK, "info %zu", i);
		FUZZ_CHECK(S, ti.ndim <= lim->max_ndim && ti.elements <= lim->max_elements &&
		           ti.raw_bytes <= lim->max_decoded_bytes &&
		           ti.raw_bytes == ti.elements * alcm_dtype_size(ti.dtype),
		           "tensor %zu: directory entry breaks the limits", i);
		fuzz_touch(ti.name, ti.name_len);
		size_t k;
		FUZZ_CHECK(S, alcm_archive_find(a, ti.name, ti.name_len, &k) == ALCM_OK && k <= i,
		           "find missed tensor %zu", i);
		uint8_t *out = malloc(ti.raw_bytes ? (size_t)ti.raw_bytes : 1);
		if (!out)
			return;
		int st = alcm_archive_decode(a, i, out, (size_t)ti.raw_bytes);
		if (st == ALCM_OK) {
			fuzz_touch(out, (size_t)ti.raw_bytes);
		} else {
			all_ok = 0;
			FUZZ_CHECK(S, st != ALCM_E_ARG, "tensor %zu: ALCM_E_ARG from a valid call", i);
			FUZZ_CHECK(S, strlen(alcm_archive_detail(a)) > 0, "failure without a detail");
		}
		if (twice && st == ALCM_OK) {
			uint8_t *again = malloc(ti.raw_bytes ? (size_t)ti.raw_bytes : 1);
			if (again) {
				alcm_archive_set_threads(a, 2);
				int st2 = alcm_archive_decode(a, i, again, (size_t)ti.raw_bytes);
				alcm_archive_set_threads(a, 1);
				FUZZ_CHECK(S, st2 == st, "tensor %zu: status %d with 1 thread, %d with 2",
				           i, st, st2);
				FUZZ_CHECK(S, memcmp(out, again, (size_t)ti.raw_bytes) == 0,
				           "tensor %zu: 1 and 2 threads decode differently", i);
				piece_sink ps = {again, (size_t)ti.raw_bytes, 0, 0};
				memset(again, 0, ps.cap);
				alcm_archive_set_threads(a, 2);
				int st3 = alcm_archive_decode_pieces(a, &i, 1, piece_take, &ps);
				alcm_archive_set_threads(a, 1);
				FUZZ_CHECK(S, st3 == st, "tensor %zu: status %d whole, %d in pieces", i, st,
				           st3);
				FUZZ_CHECK(S, ps.len == ps.cap && memcmp(out, again, ps.cap) == 0,
				           "tensor %zu: decoded in pieces, %zu of %zu bytes or others", i,
				           ps.len, ps.cap);
				free(again);
			}
		}
		free(out);
		if (st == ALCM_E_CORRUPT || st == ALCM_E_DIGEST) {
			FUZZ_CHECK(S, alcm_archive_decode(a, i, NULL, 0) != ALCM_OK || ti.raw_bytes == 0,
			           "poisoned archive decodes");
			return;
		}
	}
	/* Every tensor decoded: the whole list in pieces, tensors handed on across waves. */
	size_t *index = twice && all_ok && n > 1 ? malloc(n * sizeof(*index)) : NULL;
	if (index) {
		for (size_t i = 0; i < n; i++)
			index[n - 1 - i] = i; /* backwards: any order is allowed */
		piece_sink ps = {NULL, 0, 0, 0};
		alcm_archive_set_threads(a, 2);
		int st = alcm_archive_decode_pieces(a, index, n, piece_take, &ps);
		alcm_archive_set_threads(a, 1);
		FUZZ_CHECK(S, st == ALCM_OK, "%zu tensors decode one by one, not as a list (%d)", n,
		           st);
		free(index);
	}
}

static void open_and_decode(alcm_reader *r, uint32_t frame, int all, const alcm_limits *lim,
                            int twice, int self_base)
{
	alcm_archive *a = NULL;
	int st = all ? alcm_archive_open_frame(&a, r, frame, NULL) : alcm_archive_open(&a, r, NULL);
	if (st == ALCM_OK && self_base) {
		st = alcm_archive_set_base(a, r);
		FUZZ_CHECK(S, st != ALCM_E_ARG, "set_base refused a valid call");
		if (st == ALCM_E_DIGEST)
			st = ALCM_OK; /* refused, and the archive stays usable without a base */
	}
	alcm_series_frame sf;
	if (st == ALCM_OK && alcm_series_frame_read(r, alcm_archive_frame(a), &sf) == ALCM_OK)
		FUZZ_CHECK(S, sf.frame == alcm_archive_frame(a) &&
		           (sf.keyframe || sf.ref_base || sf.ref_frame < sf.frame),
		           "frame %u: a record that does not go back was accepted", sf.frame);
	if (st == ALCM_OK) {
		size_t nm = alcm_archive_meta_count(a);
		for (size_t i = 0; i < nm; i++) {
			const char *key;
			const uint8_t *val;
			size_t vlen;
			FUZZ_CHECK(S, alcm_archive_meta(a, i, &key, &val, &vlen) == ALCM_OK, "meta %zu", i);
			fuzz_touch(key, strlen(key));
			fuzz_touch(val, vlen);
		}
		alcm_predictor p;
		(void)alcm_archive_predictor(a, &p);
		(void)alcm_archive_frame(a);
		alcm_archive_set_threads(a, 1);
		decode_all(a, lim, twice);
	}
	alcm_archive_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t opt;
	if (!fuzz_split(&data, &size, &opt))
		return 0;
	alcm_relay_min = 1;
	uint8_t *buf = fuzz_dup(data, size);
	if (!buf)
		return 0;
	if (ALCM_FUZZ_FIXUP && !(opt & FUZZ_OPT_RAW))
		fuzz_fixup_digests(buf, size);
	alcm_limits lim;
	fuzz_limits_tight(&lim);
	unsigned flags = (opt & FUZZ_OPT_NO_VERIFY) ? ALCM_READ_NO_VERIFY : 0;
	alcm_reader *r = NULL;
	if (alcm_reader_open_memory(&r, buf, size, "fuzz.alcm", &lim, NULL, flags) == ALCM_OK) {
		uint32_t frames = alcm_archive_frame_count(r);
		int twice = (opt & OPT_THREADS) != 0;
		if ((opt & OPT_FRAMES) && frames > 0) {
			for (uint32_t f = 0; f < frames && f < 8; f++) {
				alcm_section_info si;
				uint32_t k = 0, idx = 0;
				/* Frames are named by their directories' tags. */
				for (uint32_t seen = 0;
				     alcm_archive_find_dir(r, idx, &k) == ALCM_OK; seen++) {
					if (seen == f)
						break;
					idx = k + 1;
				}
				alcm_reader_section_info(r, k, &si);
				open_and_decode(r, si.tag, 1, &lim, twice, (opt & OPT_SELF_BASE) != 0);
			}
		} else {
			open_and_decode(r, 0, 0, &lim, twice, (opt & OPT_SELF_BASE) != 0);
		}
		alcm_series_options sopt;
		(void)alcm_series_options_load(r, &sopt);
		uint32_t k = 0, from = 0;
		while (alcm_reader_find_section(r, "FRAM", from, &k) == ALCM_OK) {
			const uint8_t *p = alcm_reader_section_data(r, k);
			alcm_section_info si;
			alcm_frame_report rep;
			alcm_reader_section_info(r, k, &si);
			(void)alcm_frame_report_load(&rep, p, (size_t)si.length);
			from = k + 1;
		}
		if (opt & OPT_RESUME) {
			alcm_stream *s = NULL;
			alcm_stream_options so;
			alcm_stream_options_default(&so);
			if (alcm_stream_new(&s, &so, NULL) == ALCM_OK)
				(void)alcm_stream_resume(s, r);
			alcm_stream_free(s);
		}
	}
	alcm_reader_free(r);
	/* With ALCM_FUZZ_DIRECT=DIR (the replay test fuzz_replay_unpack_direct), the same bytes
	 * once more from a file in DIR, read with O_DIRECT into placed buffers: the direct
	 * reads, the reading threads and the relay's queued pieces meet the hostile archives. */
	const char *dir = getenv("ALCM_FUZZ_DIRECT");
	char path[4096];
	FILE *f;
	if (dir && snprintf(path, sizeof(path), "%s/fuzz-%ld.alcm", dir, (long)getpid()) <
	               (int)sizeof(path) && (f = fopen(path, "wb"))) {
		int ok = fwrite(buf, 1, size, f) == size;
		ok &= fclose(f) == 0;
		alcm_dio_read_force = 1;
		if (ok && alcm_reader_open_file(&r, path, &lim, NULL, flags) == ALCM_OK)
			open_and_decode(r, 0, 0, &lim, (opt & OPT_THREADS) != 0, 0);
		alcm_dio_read_force = 0;
		alcm_reader_free(r);
		unlink(path);
	}
	free(buf);
	return 0;
}
