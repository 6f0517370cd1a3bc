/*
 * alcm-test-forge: writes hostile archives whose digests all match, for the CLI tests and the
 * decode-memory benchmark. Not installed.
 *
 *   alcm-test-forge escape OUT ELEMS CHUNKS ESC_LEN [WLOG]
 *       one float32 tensor of ELEMS elements in CHUNKS lossy chunks, each with zero symbols
 *       and an escape block of ESC_LEN zero bytes (zstd, window log WLOG, default 21)
 *   alcm-test-forge zero-lossy OUT      a rel-error tensor of shape [2^61 + 1, 0], 8-byte SCAL
 *   alcm-test-forge chunk-len OUT       a chunk declaring 4 MiB for 16 elements
 *   alcm-test-forge dup OUT             two tensors named "a"
 *   alcm-test-forge attr OUT            a valid tensor and an ATTR section of junk
 *   alcm-test-forge names OUT NAME...   one uint8 tensor [1] per name (names as given)
 *   alcm-test-forge window OUT WLOG     a lossless uint8 tensor of 2^WLOG + 1 zeros, one zstd
 *                                       frame asking for a window of 2^WLOG bytes
 *   alcm-test-forge flip IN OUT TYPE POS XOR
 *       IN rewritten with byte POS of its last TYPE section xored with XOR (digests match)
 *   alcm-test-forge pred-v1 IN OUT
 *       IN's tensors packed lossless with the version 1 default predictor named: a format 1.0
 *       archive carrying PRED version 1, as every lossless archive did until 2026-12-07
 *   alcm-test-forge classes OUT ELEMS CHUNK_ELEMS K
 *       one float32 tensor of ELEMS zeros at max-error in chunks of CHUNK_ELEMS elements,
 *       each a modelled chunk (QDAT coding 16) declaring K classes (K >= 2: over an axis
 *       of run 1), or with K = 0 byte planes of width 1: the same tensor, for comparison
 */
#include "codec_internal.h"
#include "forge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
	fputs("usage: alcm-test-forge escape|zero-lossy|chunk-len|dup|attr|names|window|flip|classes"
	      "|pred-v1 OUT ...\n", stderr);
	return 2;
}

static int write_out(const char *out, const fg_section *s, size_t n, unsigned flags)
{
	int st = fg_archive_file(out, s, n, flags | ALCM_WRITE_OVERWRITE);
	if (st)
		fprintf(stderr, "alcm-test-forge: cannot write '%s': %s\n", out, alcm_strerror(st));
	return st ? 1 : 0;
}

static int escape(const char *out, uint64_t elems, uint64_t chunks, uint64_t esc_len, int wlog)
{
	uint64_t ce = (elems + chunks - 1) / chunks;
	fg_buf data = {0}, scal = {0}, dir = {0}, esc = {0};
	uint64_t *ctab = calloc(2 * chunks, sizeof(uint64_t));
	fg_zero_stream(&esc, esc_len, wlog);
	for (uint64_t k = 0; k < chunks; k++) {
		uint64_t n = elems - k * ce < ce ? elems - k * ce : ce;
		size_t at = data.len;
		fg_u8(&data, 1);
		fg_varint(&data, n);
		fg_zero_stream(&data, n, wlog);
		fg_varint(&data, esc_len);
		fg_put(&data, esc.p, esc.len);
		ctab[2 * k] = data.len - at;
	}
	fg_u64(&scal, 0x3f50624dd2f1a9fcull); /* step 0.001 */
	fg_entry e = {"w", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 1, {elems}, 0, 1, FG_NONE, ce,
	              chunks, ctab};
	fg_tdir(&dir, &e, 1);
	fg_section s[3] = {{"QDAT", 1, 0, data.p, data.len}, {"SCAL", 1, 0, scal.p, scal.len},
	                   {"TDIR", 1, 0, dir.p, dir.len}};
	int rc = write_out(out, s, 3, 0);
	free(ctab);
	fg_free(&data);
	fg_free(&scal);
	fg_free(&dir);
	fg_free(&esc);
	return rc;
}

static int zero_lossy(const char *out)
{
	fg_buf scal = {0}, dir = {0};
	fg_u64(&scal, 0x3ff0000000000000ull);
	fg_entry e = {"w", ALCM_DTYPE_F32, ALCM_MODE_REL_ERROR, 2, {((uint64_t)1 << 61) + 1, 0}, 0,
	              1, FG_NONE, 1024, 0, NULL};
	fg_tdir(&dir, &e, 1);
	fg_section s[3] = {{"QDAT", 1, 0, NULL, 0}, {"SCAL", 1, 0, scal.p, scal.len},
	                   {"TDIR", 1, 0, dir.p, dir.len}};
	int rc = write_out(out, s, 3, 0);
	fg_free(&scal);
	fg_free(&dir);
	return rc;
}

static int chunk_len(const char *out)
{
	fg_buf data = {0}, dir = {0};
	uint8_t *junk = calloc(1, (size_t)4 << 20);
	fg_put(&data, junk, (size_t)4 << 20);
	free(junk);
	uint64_t ctab[2] = {data.len, 0};
	fg_entry e = {"w", ALCM_DTYPE_F32, 0, 1, {16}, 0, FG_NONE, FG_NONE, 16, 1, ctab};
	fg_tdir(&dir, &e, 1);
	fg_section s[2] = {{"LDAT", 1, 0, data.p, data.len}, {"TDIR", 1, 0, dir.p, dir.len}};
	int rc = write_out(out, s, 2, 0);
	fg_free(&data);
	fg_free(&dir);
	return rc;
}

/* Lossless uint8 tensors of one element each, named as given; `extra` sections first. */
static int named(const char *out, const char *const *names, size_t n, const fg_section *extra,
                 size_t nextra, unsigned flags)
{
	fg_buf chunk = {0}, dir = {0};
	uint8_t one = 1;
	fg_u8(&chunk, 0);
	fg_stream(&chunk, &one, 1, 0);
	fg_section *s = calloc(n + nextra + 1, sizeof(*s));
	fg_entry *e = calloc(n ? n : 1, sizeof(*e));
	uint64_t ctab[2] = {chunk.len, 0};
	for (size_t i = 0; i < nextra; i++)
		s[i] = extra[i];
	for (size_t i = 0; i < n; i++) {
		s[nextra + i] = (fg_section){"LDAT", 1, (uint32_t)i, chunk.p, chunk.len};
		e[i] = (fg_entry){names[i], ALCM_DTYPE_U8, 0, 1, {1}, (uint32_t)(nextra + i),
		                  FG_NONE, FG_NONE, 1, 1, ctab};
	}
	fg_tdir(&dir, e, n);
	s[nextra + n] = (fg_section){"TDIR", 1, 0, dir.p, dir.len};
	int rc = write_out(out, s, nextra + n + 1, flags);
	free(s);
	free(e);
	fg_free(&chunk);
	fg_free(&dir);
	return rc;
}

static int window(const char *out, int wlog)
{
	uint64_t n = ((uint64_t)1 << wlog) + 1;
	fg_buf data = {0}, dir = {0};
	fg_u8(&data, 0);
	fg_zero_stream(&data, n, wlog);
	uint64_t ctab[2] = {data.len, 0};
	fg_entry e = {"w", ALCM_DTYPE_U8, 0, 1, {n}, 0, FG_NONE, FG_NONE, n, 1, ctab};
	fg_tdir(&dir, &e, 1);
	fg_section s[2] = {{"LDAT", 1, 0, data.p, data.len}, {"TDIR", 1, 0, dir.p, dir.len}};
	int rc = write_out(out, s, 2, 0);
	fg_free(&data);
	fg_free(&dir);
	return rc;
}

static int flip(const char *in, const char *out, const char *type, uint64_t pos, unsigned x)
{
	alcm_reader *r = NULL;
	int st = alcm_reader_open_file(&r, in, NULL, NULL, 0);
	if (st) {
		fprintf(stderr, "alcm-test-forge: %s\n", alcm_reader_detail(r));
		alcm_reader_free(r);
		return 1;
	}
	uint32_t n = alcm_reader_section_count(r), last = n;
	fg_section *s = calloc(n ? n : 1, sizeof(*s));
	alcm_section_info *si = calloc(n ? n : 1, sizeof(*si));
	uint8_t **p = calloc(n ? n : 1, sizeof(*p));
	for (uint32_t i = 0; i < n; i++) {
		alcm_reader_section_info(r, i, &si[i]);
		p[i] = malloc(si[i].length ? si[i].length : 1);
		alcm_reader_section_read(r, i, p[i], si[i].length);
		s[i] = (fg_section){si[i].type, (si[i].flags & ALCM_SECTION_CRITICAL) != 0, si[i].tag,
		                    p[i], si[i].length};
		if (strcmp(si[i].type, type) == 0)
			last = i;
	}
	int rc = 1;
	if (last < n && pos < si[last].length) {
		p[last][pos] ^= (uint8_t)x;
		rc = write_out(out, s, n, alcm_reader_flags(r) & ALCM_FLAG_STREAM ? ALCM_WRITE_STREAM
		                                                                   : 0);
	} else {
		fprintf(stderr, "alcm-test-forge: no byte %llu in a %s section\n",
		        (unsigned long long)pos, type);
	}
	for (uint32_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
	free(si);
	free(s);
	alcm_reader_free(r);
	return rc;
}

/* A modelled chunk of n zeros: K classes (an axis of run 1 and count n when K >= 2), every
 * table giving token 0 all of 4096, so that 32 states of 2^15 and no word code it. */
static void classes_chunk(fg_buf *b, uint64_t n, unsigned K)
{
	fg_u8(b, 16);
	fg_varint(b, n);
	fg_u8(b, 0); /* alphabet s = 0, m = 0 */
	fg_u8(b, K);
	fg_u8(b, K > 1);
	if (K > 1) {
		uint8_t *lev = calloc(n, 1);
		fg_varint(b, 1);
		fg_varint(b, n);
		fg_stream(b, lev, n, 0);
		free(lev);
		fg_u8(b, K - 1);
		for (unsigned k = 0; k < K; k++)
			fg_u8(b, k);
	}
	fg_varint(b, 2 * K);
	for (unsigned k = 0; k < 2 * K; k++)
		fg_u8(b, 0); /* last 0, a 0 */
	fg_varint(b, 128);
	for (int j = 0; j < 32; j++)
		fg_u32(b, 0x8000);
	fg_varint(b, 0);
}

static int classes(const char *out, uint64_t elems, uint64_t ce, unsigned K)
{
	if (!elems || !ce || K > 16 || K == 1)
		return usage();
	uint64_t chunks = (elems + ce - 1) / ce;
	fg_buf data = {0}, scal = {0}, dir = {0};
	uint64_t *ctab = calloc(2 * chunks, sizeof(uint64_t));
	uint8_t *zeros = calloc(ce, 1);
	for (uint64_t k = 0; k < chunks; k++) {
		uint64_t n = elems - k * ce < ce ? elems - k * ce : ce;
		size_t at = data.len;
		if (K) {
			classes_chunk(&data, n, K);
		} else {
			fg_u8(&data, 1);
			fg_varint(&data, n);
			fg_stream(&data, zeros, n, 0);
		}
		fg_varint(&data, 1); /* the escape block: count 0 */
		fg_stream(&data, zeros, 1, 0);
		ctab[2 * k] = data.len - at;
	}
	fg_u64(&scal, 0x3f50624dd2f1a9fcull); /* step 0.001 */
	fg_entry e = {"w", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 1, {elems}, 0, 1, FG_NONE, ce,
	              chunks, ctab};
	fg_tdir(&dir, &e, 1);
	fg_section s[3] = {{"QDAT", 1, 0, data.p, data.len}, {"SCAL", 1, 0, scal.p, scal.len},
	                   {"TDIR", 1, 0, dir.p, dir.len}};
	int rc = write_out(out, s, 3, 0);
	free(zeros);
	free(ctab);
	fg_free(&data);
	fg_free(&scal);
	fg_free(&dir);
	return rc;
}

static int pred_v1(const char *in, const char *out)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.predictor = alcm_predictor_default_v1();
	alcm_input *ai = NULL;
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	int has = 1, st = alcm_input_open(&ai, in, NULL, NULL);
	if (!st)
		st = alcm_writer_open_memory(&w, 0, NULL);
	if (!st)
		st = alcm_encoder_new(&e, w, &o, NULL);
	while (!st && has) {
		alcm_tensor t;
		if ((st = alcm_input_next(ai, &t, &has)) || !has)
			break;
		st = alcm_encoder_add(e, &t, NULL);
	}
	if (!st)
		st = alcm_encoder_finish(e);
	if (!st)
		st = alcm_writer_commit(w);
	const void *buf = NULL;
	size_t len = 0;
	if (!st)
		st = alcm_writer_memory(w, &buf, &len);
	FILE *f = st ? NULL : fopen(out, "wb");
	if (!st && (!f || fwrite(buf, 1, len, f) != len))
		st = ALCM_E_IO;
	if (f && fclose(f))
		st = ALCM_E_IO;
	alcm_encoder_free(e);
	alcm_writer_free(w);
	alcm_input_free(ai);
	if (st)
		fprintf(stderr, "alcm-test-forge: pred-v1 '%s' -> '%s': %s\n", in, out, alcm_strerror(st));
	return st ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	const char *cmd = argv[1], *out = argv[2];
	if (strcmp(cmd, "escape") == 0 && (argc == 6 || argc == 7))
		return escape(out, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
		              strtoull(argv[5], NULL, 0), argc == 7 ? atoi(argv[6]) : 21);
	if (strcmp(cmd, "zero-lossy") == 0)
		return zero_lossy(out);
	if (strcmp(cmd, "chunk-len") == 0)
		return chunk_len(out);
	if (strcmp(cmd, "dup") == 0) {
		const char *n[2] = {"a", "a"};
		return named(out, n, 2, NULL, 0, 0);
	}
	if (strcmp(cmd, "attr") == 0) {
		const char junk[] = "not an ATTR payload";
		fg_section a = {"ATTR", 0, 0, junk, sizeof(junk)};
		const char *n[1] = {"data"};
		return named(out, n, 1, &a, 1, 0);
	}
	if (strcmp(cmd, "window") == 0 && argc == 4)
		return window(out, atoi(argv[3]));
	if (strcmp(cmd, "flip") == 0 && argc == 7)
		return flip(argv[2], argv[3], argv[4], strtoull(argv[5], NULL, 0),
		            (unsigned)strtoul(argv[6], NULL, 0));
	if (strcmp(cmd, "classes") == 0 && argc == 6)
		return classes(out, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
		               (unsigned)atoi(argv[5]));
	if (strcmp(cmd, "pred-v1") == 0 && argc == 4)
		return pred_v1(argv[2], argv[3]);
	if (strcmp(cmd, "names") == 0)
		return named(out, (const char *const *)argv + 3, (size_t)(argc - 3), NULL, 0, 0);
	return usage();
}
