/*
 * The tensor directory vectors of spec/alcm-format.md 6.3.4 (spec/vectors/tensors/): each is
 * rebuilt here and must equal the checked-in file byte for byte, must give the result its
 * manifest line names, and the spec must show its TDIR payload as it is.
 * ALCM_UPDATE_VECTORS=1 rewrites the checked-in files and prints the spec's dumps instead.
 */
#include "testutil.h"
#include "forge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VEC_DIR ALCM_SOURCE_DIR "/spec/vectors/tensors"
#define SPEC_PATH ALCM_SOURCE_DIR "/spec/alcm-format.md"

typedef struct tvec {
	const char *name;
	const char *stage; /* "ok", "archive" (alcm_archive_open refuses), "decode" */
	int status;
	const char *expect; /* detail substring of a refusal */
	void (*build)(fg_buf *tdir, fg_section *s, size_t *n, fg_buf *data, fg_buf *scal);
} tvec;

static const uint64_t huge0 = ((uint64_t)1 << 61) + 5;

static void v_zero(fg_buf *tdir, fg_section *s, size_t *n, fg_buf *data, fg_buf *scal)
{
	(void)data, (void)scal;
	fg_entry e = {"w", ALCM_DTYPE_F32, 0, 2, {huge0, 0}, 0, FG_NONE, FG_NONE, 1 << 20, 0, NULL};
	fg_tdir(tdir, &e, 1);
	s[0] = (fg_section){"LDAT", 1, 0, NULL, 0};
	s[1] = (fg_section){"TDIR", 1, 0, tdir->p, tdir->len};
	*n = 2;
}

static void v_zero_lossy(fg_buf *tdir, fg_section *s, size_t *n, fg_buf *data, fg_buf *scal)
{
	(void)data;
	fg_u64(scal, 0x3ff0000000000000ull); /* 1.0: the 8 bytes 8 * (2^61 + 5) wraps to 40 */
	fg_u64(scal, 0x3ff0000000000000ull);
	fg_u64(scal, 0x3ff0000000000000ull);
	fg_u64(scal, 0x3ff0000000000000ull);
	fg_u64(scal, 0x3ff0000000000000ull);
	fg_entry e = {"w", ALCM_DTYPE_F32, ALCM_MODE_REL_ERROR, 2, {huge0, 0}, 0, 1, FG_NONE,
	              1 << 20, 0, NULL};
	fg_tdir(tdir, &e, 1);
	s[0] = (fg_section){"QDAT", 1, 0, NULL, 0};
	s[1] = (fg_section){"SCAL", 1, 0, scal->p, scal->len};
	s[2] = (fg_section){"TDIR", 1, 0, tdir->p, tdir->len};
	*n = 3;
}

static void v_dup(fg_buf *tdir, fg_section *s, size_t *n, fg_buf *data, fg_buf *scal)
{
	(void)data, (void)scal;
	fg_entry e[2] = {{"a", ALCM_DTYPE_U8, 0, 1, {0}, 0, FG_NONE, FG_NONE, 1 << 20, 0, NULL},
	                 {"a", ALCM_DTYPE_U8, 0, 1, {0}, 1, FG_NONE, FG_NONE, 1 << 20, 0, NULL}};
	fg_tdir(tdir, e, 2);
	s[0] = (fg_section){"LDAT", 1, 0, NULL, 0};
	s[1] = (fg_section){"LDAT", 1, 1, NULL, 0};
	s[2] = (fg_section){"TDIR", 1, 0, tdir->p, tdir->len};
	*n = 3;
}

/* float32 [16], max-error, one chunk: 16 zero symbols, then an escape block of 91 bytes,
 * one more than 10 + n + nsym * w = 90. */
static void v_escape(fg_buf *tdir, fg_section *s, size_t *n, fg_buf *data, fg_buf *scal)
{
	static const uint8_t zero[128];
	fg_u8(data, 1);
	fg_varint(data, 16);
	fg_stream(data, zero, 16, 0);
	fg_varint(data, 91);
	fg_stream(data, zero, 91, 0);
	fg_u64(scal, 0x3f50624dd2f1a9fcull); /* 0.001 */
	static uint64_t ctab[2];
	ctab[0] = data->len;
	fg_entry e = {"w", ALCM_DTYPE_F32, ALCM_MODE_MAX_ERROR, 1, {16}, 0, 1, FG_NONE, 16, 1, ctab};
	fg_tdir(tdir, &e, 1);
	s[0] = (fg_section){"QDAT", 1, 0, data->p, data->len};
	s[1] = (fg_section){"SCAL", 1, 0, scal->p, scal->len};
	s[2] = (fg_section){"TDIR", 1, 0, tdir->p, tdir->len};
	*n = 3;
}

static const tvec vecs[] = {
	{"zero-elements.alcm", "ok", ALCM_OK, "", v_zero},
	{"zero-elements-lossy.alcm", "archive", ALCM_E_CORRUPT, "on a tensor without elements",
	 v_zero_lossy},
	{"duplicate-names.alcm", "archive", ALCM_E_CORRUPT, "tensor name 'a' appears twice", v_dup},
	{"escape-too-long.alcm", "decode", ALCM_E_CORRUPT, "chunk 0 at offset 0 of section 0",
	 v_escape},
};

static int updating(void)
{
	const char *u = getenv("ALCM_UPDATE_VECTORS");
	return u && *u && strcmp(u, "0") != 0;
}

/* xxd-style lines, as chapter 9 shows archives. */
static char *xxd(const uint8_t *p, size_t n)
{
	char *out = malloc((n + 15) / 16 * 80 + 1), *o = out;
	for (size_t at = 0; at < n; at += 16) {
		size_t k = n - at < 16 ? n - at : 16;
		o += sprintf(o, "%08zx: ", at);
		for (size_t i = 0; i < 16; i++) {
			o += i < k ? sprintf(o, "%02x", p[at + i]) : sprintf(o, "  ");
			if (i % 2 == 1)
				*o++ = ' ';
		}
		*o++ = ' ';
		for (size_t i = 0; i < k; i++)
			*o++ = p[at + i] >= 0x20 && p[at + i] < 0x7f ? (char)p[at + i] : '.';
		*o++ = '\n';
	}
	*o = '\0';
	return out;
}

/* The result a reader gives: stage reached and status, with the detail of a refusal. */
static int outcome(const uint8_t *p, size_t len, const char **stage, char *detail)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	int st = alcm_reader_open_memory(&r, p, len, "v", NULL, NULL, 0);
	*stage = "open";
	if (!st && !(st = alcm_reader_verify(r, NULL))) {
		*stage = "archive";
		st = alcm_archive_open(&a, r, NULL);
		snprintf(detail, 512, "%s", alcm_archive_detail(a));
	}
	for (size_t i = 0; !st && i < alcm_archive_tensor_count(a); i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		uint8_t *out = malloc(ti.raw_bytes ? ti.raw_bytes : 1);
		*stage = "decode";
		st = alcm_archive_decode(a, i, out, ti.raw_bytes);
		snprintf(detail, 512, "%s", alcm_archive_detail(a));
		free(out);
	}
	if (!st)
		*stage = "ok";
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}

static void test_tensor_vectors(void **state)
{
	(void)state;
	size_t speclen;
	char *spec = (char *)tu_read_file(SPEC_PATH, &speclen);
	assert_non_null(spec);
	spec = realloc(spec, speclen + 1);
	spec[speclen] = '\0';
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		fg_buf tdir = {0}, data = {0}, scal = {0};
		fg_section s[4];
		size_t n = 0, len;
		vecs[i].build(&tdir, s, &n, &data, &scal);
		uint8_t *p = fg_archive(s, n, 0, &len);
		assert_non_null(p);
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", VEC_DIR, vecs[i].name);
		char *dump = xxd(tdir.p, tdir.len);
		if (updating()) {
			assert_int_equal(tu_write_file(path, p, len), 0);
			printf("#### %s (%zu bytes)\n\nTDIR payload:\n\n```\n%s```\n\n", vecs[i].name, len,
			       dump);
		} else {
			size_t flen;
			uint8_t *f = tu_read_file(path, &flen);
			if (!f || flen != len || memcmp(f, p, len) != 0)
				fail_msg("%s differs from what the library builds (ALCM_UPDATE_VECTORS=1 "
				         "rewrites it)", vecs[i].name);
			free(f);
			if (!strstr(spec, dump))
				fail_msg("the spec does not show the TDIR payload of %s:\n%s", vecs[i].name,
				         dump);
		}
		const char *stage;
		char detail[512] = "";
		int st = outcome(p, len, &stage, detail);
		if (st != vecs[i].status || strcmp(stage, vecs[i].stage) != 0 ||
		    (st && !strstr(detail, vecs[i].expect)))
			fail_msg("%s: %s status %d (%s), want %s status %d (%s)", vecs[i].name, stage, st,
			         detail, vecs[i].stage, vecs[i].status, vecs[i].expect);
		free(dump);
		free(p);
		fg_free(&tdir);
		fg_free(&data);
		fg_free(&scal);
	}
	free(spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tensor_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
