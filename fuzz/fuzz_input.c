/*
 * Surfaces: the tensor file readers (.npy, .npz, .safetensors, .pt), one harness each, built from
 * this file with FUZZ_FORMAT set to an enum alcm_file_format value. Input: file bytes, then
 * one options byte:
 *   0x01  default limits instead of the tight ones (a reader must still check every size
 *         against the file before allocating: the fuzzer's malloc limit catches it if not);
 *   0x02  detect the format from the bytes instead of forcing it;
 *   0x04  read through a file descriptor (memfd) instead of memory;
 *   0x08  also read every tensor in pieces (alcm_input_next_begin, alcm_input_piece) from a
 *         second input over the same bytes: the pieces must be the whole read's bytes, and a
 *         tensor the whole read refuses must fail in the pieces read too (at its begin or
 *         a piece: a .npz member's CRC-32 is checked before its last piece), with the same
 *         status.
 */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FUZZ_FORMAT
#error "build with -DFUZZ_FORMAT=<enum alcm_file_format> -DFUZZ_SURFACE=\"name\""
#endif
#define S FUZZ_SURFACE

#define OPT_DEFAULTS 0x01u
#define OPT_DETECT 0x02u
#define OPT_FILE 0x04u
#define OPT_PIECES 0x08u

static void check_tensor(const alcm_tensor *t, const alcm_limits *lim)
{
	size_t w = alcm_dtype_size(t->dtype);
	FUZZ_CHECK(S, w != 0, "tensor of unknown dtype %d", t->dtype);
	FUZZ_CHECK(S, t->ndim <= lim->max_ndim && t->ndim <= ALCM_MAX_NDIM, "rank %u", t->ndim);
	uint64_t elems;
	FUZZ_CHECK(S, alcm_shape_elements(t->shape, t->ndim, &elems) == ALCM_OK &&
	           elems <= lim->max_elements, "element count over the limit");
	FUZZ_CHECK(S, elems * w == t->nbytes && t->nbytes <= lim->max_decoded_bytes,
	           "%llu bytes for %llu elements of %zu bytes", (unsigned long long)t->nbytes,
	           (unsigned long long)elems, w);
	FUZZ_CHECK(S, t->data || !t->nbytes, "no data for %llu bytes",
	           (unsigned long long)t->nbytes);
	FUZZ_CHECK(S, t->name || !t->name_len, "no name for %zu bytes", t->name_len);
	FUZZ_CHECK(S, t->name_len <= lim->max_name_bytes, "name of %zu bytes over the limit",
	           t->name_len);
	fuzz_touch(t->name, t->name_len);
	fuzz_touch(t->data, (size_t)t->nbytes);
}

/* Reads tensor t's bytes (or the error that stops them) from the pieces input pc, which
 * must agree with the whole read's status st and tensor t (when st is ALCM_OK and has). */
static void check_pieces(alcm_input *pc, int st, int has, const alcm_tensor *t)
{
	alcm_tensor u;
	int uhas = 0;
	int pst = alcm_input_next_begin(pc, &u, &uhas);
	uint64_t at = 0;
	if (pst == ALCM_OK && uhas) {
		FUZZ_CHECK(S, u.data == NULL, "data at the begin of a pieces read");
		for (;;) {
			const void *d;
			size_t len;
			pst = alcm_input_piece(pc, &d, &len);
			if (pst != ALCM_OK || !len)
				break;
			FUZZ_CHECK(S, at + len <= u.nbytes, "pieces past %llu bytes",
			           (unsigned long long)u.nbytes);
			if (st == ALCM_OK && has)
				FUZZ_CHECK(S, memcmp((const uint8_t *)t->data + at, d, len) == 0,
				           "piece at %llu differs from the whole read",
				           (unsigned long long)at);
			at += len;
		}
	}
	FUZZ_CHECK(S, pst == st, "pieces read status %d, whole read %d", pst, st);
	if (st != ALCM_OK || !has) {
		FUZZ_CHECK(S, st != ALCM_OK || !uhas, "the pieces read has a tensor the whole has not");
		return;
	}
	FUZZ_CHECK(S, uhas && u.dtype == t->dtype && u.ndim == t->ndim && u.nbytes == t->nbytes &&
	           at == t->nbytes && u.name_len == t->name_len &&
	           memcmp(u.shape, t->shape, sizeof(u.shape)) == 0 &&
	           (!t->name_len || memcmp(u.name, t->name, t->name_len) == 0),
	           "the pieces read's tensor differs from the whole read's");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t opt;
	if (!fuzz_split(&data, &size, &opt))
		return 0;
	alcm_limits lim;
	if (opt & OPT_DEFAULTS)
		alcm_limits_default(&lim);
	else
		fuzz_limits_tight(&lim);
	int format = (opt & OPT_DETECT) ? ALCM_FILE_UNKNOWN : FUZZ_FORMAT;
	alcm_input *in = NULL;
	int st, fd = -1;
	uint8_t *buf = NULL;
	char path[64];
	if (opt & OPT_FILE) {
		fd = fuzz_memfd(data, size, path);
		if (fd < 0)
			return 0;
		st = alcm_input_open(&in, path, &lim, NULL);
	} else {
		buf = fuzz_dup(data, size);
		if (!buf)
			return 0;
		st = alcm_input_open_memory(&in, buf, size, format, "fuzz." S, &lim, NULL);
	}
	/* The pieces read opens the same bytes the same way (a file's tensors are named after it). */
	alcm_input *pc = NULL;
	uint8_t *pbuf = NULL;
	if (st == ALCM_OK && (opt & OPT_PIECES)) {
		int pst = ALCM_E_NOMEM;
		if (opt & OPT_FILE)
			pst = alcm_input_open(&pc, path, &lim, NULL);
		else if ((pbuf = fuzz_dup(data, size)))
			pst = alcm_input_open_memory(&pc, pbuf, size, format, "fuzz." S, &lim, NULL);
		FUZZ_CHECK(S, pst == ALCM_OK || pst == ALCM_E_NOMEM, "a second open of the bytes: %d",
		           pst);
		if (pst != ALCM_OK) {
			alcm_input_free(pc);
			pc = NULL;
		}
	}
	if (st == ALCM_OK) {
		FUZZ_CHECK(S, in != NULL, "ALCM_OK without an input");
		if (!(opt & (OPT_DETECT | OPT_FILE)))
			FUZZ_CHECK(S, alcm_input_format(in) == FUZZ_FORMAT, "format %d",
			           alcm_input_format(in));
		for (;;) {
			alcm_tensor t;
			int has = 0;
			st = alcm_input_next(in, &t, &has);
			if (pc)
				check_pieces(pc, st, has, &t);
			if (st != ALCM_OK) {
				FUZZ_CHECK(S, !has, "a tensor with an error");
				FUZZ_CHECK(S, strlen(alcm_input_detail(in)) > 0, "failure without a detail");
				FUZZ_CHECK(S, alcm_input_next(in, &t, &has) == ALCM_E_STATE,
				           "a failed input goes on");
				break;
			}
			if (!has) {
				/* The records the input carries: well-formed keys, readable values. */
				for (size_t i = 0; i < alcm_input_meta_count(in); i++) {
					const char *k;
					const uint8_t *v;
					size_t vl;
					FUZZ_CHECK(S, alcm_input_meta(in, i, &k, &v, &vl) == ALCM_OK,
					           "record %zu", i);
					fuzz_touch(k, strlen(k) + 1);
					fuzz_touch(v, vl);
				}
				break;
			}
			check_tensor(&t, &lim);
		}
	} else {
		FUZZ_CHECK(S, st > ALCM_OK && st <= ALCM_E_SIGNATURE, "status %d", st);
		FUZZ_CHECK(S, alcm_strerror(st)[0] != '\0', "no message for status %d", st);
		FUZZ_CHECK(S, !in || strlen(alcm_input_detail(in)) > 0, "failure without a detail");
	}
	alcm_input_free(pc);
	free(pbuf);
	alcm_input_free(in);
	if (fd >= 0)
		close(fd);
	free(buf);
	return 0;
}
