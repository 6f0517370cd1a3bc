/*
 * make_vectors.c - builds the container test vectors of spec/alcm-format.md, chapter 9, and
 * their manifest (expected.txt).
 *
 * The vectors are checked in. tests/test_vectors.c includes this file, rebuilds every vector
 * in its scratch directory and compares it byte for byte with the checked-in copy, so the
 * files, the manifest and the hex dumps in the spec cannot drift from the library. After a
 * deliberate change, regenerate them with
 *
 *     ALCM_UPDATE_VECTORS=1 build/bin/test_vectors
 *
 * which rewrites spec/vectors/ and writes the spec's chapter 9 dumps to
 * $ALCM_TEST_TMP/vectors-chapter.md. This file can also be built on its own:
 *
 *     cc -std=c11 -D_GNU_SOURCE -Iinclude -Iformat spec/vectors/make_vectors.c \
 *        build/lib/libalcm.a -lsodium -lzstd -lz -lm -lpthread -o make_vectors
 *     ./make_vectors spec/vectors
 *
 * Every vector is made with the library's own writer (ALCM_WRITE_NO_SYNC, deterministic),
 * then damaged, where it must be, by the edits below, with the digests recomputed wherever
 * a vector is meant to test one rule only.
 */
#include "alcm.h"
#include "container.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct mv_bytes {
	uint8_t *p;
	size_t n;
} mv_bytes;

typedef struct mv_section {
	const char *type;
	uint32_t flags;
	uint32_t tag;
	const char *data;
} mv_section;

/* A vector: how to build it and what a conforming reader must say. */
typedef struct mv_vector {
	const char *name;
	/* "ok": opens and verifies; "open": refused when opened; "verify": opens, but
	 * alcm_reader_verify() fails. */
	const char *stage;
	int status;
	/* For failures, a substring of the detail line; for "ok", "generation=G tail=T
	 * sections=N". */
	const char *expect;
	int (*build)(mv_bytes *out, const char *scratch);
	const char *what; /* for the spec */
} mv_vector;

static int mv_pack(unsigned flags, const mv_section *s, size_t n, mv_bytes *out)
{
	alcm_writer *w = NULL;
	const void *buf;
	size_t len;
	int st = alcm_writer_open_memory(&w, flags | ALCM_WRITE_NO_SYNC, NULL);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_writer_add_section(w, s[i].type, s[i].flags, s[i].tag, s[i].data,
		                             strlen(s[i].data), NULL);
	if (!st)
		st = alcm_writer_commit(w);
	if (!st)
		st = alcm_writer_memory(w, &buf, &len);
	if (!st) {
		/* Room for the edits that lengthen a vector. */
		out->p = calloc(1, 2 * len + 64);
		if (!out->p)
			st = ALCM_E_NOMEM;
		else
			memcpy(out->p, buf, len);
		out->n = len;
	}
	alcm_writer_free(w);
	return st;
}

/* Header digest, then the digest of each used slot: after an edit of the fixed header. */
static void mv_reseal_header(uint8_t *p)
{
	alcm_digest(p + 32, p, 32);
	for (unsigned off = ALCM_SLOT_A; off <= ALCM_SLOT_B; off += ALCM_SLOT_SIZE)
		if (alcm_load64(p + off))
			alcm_slot_build(p + off, p, alcm_load64(p + off), alcm_load64(p + off + 8),
			                alcm_load64(p + off + 16));
}

/* Table digest of the table that slot A points at: after an edit of an entry. */
static void mv_reseal_table(uint8_t *p)
{
	uint64_t off = alcm_load64(p + ALCM_SLOT_A + 8), size = alcm_load64(p + ALCM_SLOT_A + 16);
	alcm_digest(p + off + size - 32, p + off, (size_t)size - 32);
}

static const mv_section two_sections[] = {
	{"META", 0, 0, "alcm test vector"},
	{"XTRA", 0, 7, "hello"},
};

static int v_empty(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_pack(0, NULL, 0, o);
}

static int v_two(mv_bytes *o, const char *scratch)
{
	(void)scratch;
	return mv_pack(0, two_sections, 2, o);
}

/* Written, then appended to once, through files (append works on files only). */
static int v_stream(mv_bytes *o, const char *scratch)
{
	static const mv_section first[] = {{"META", 0, 0, "generation 1"}};
	static const mv_section second[] = {{"XTRA", 0, 2, "generation 2"}};
	char path[4096];
	snprintf(path, sizeof(path), "%s/stream-vector.alcm", scratch);
	unlink(path);
	alcm_writer *w = NULL;
	int st = alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_writer_add_section(w, first[0].type, first[0].flags, first[0].tag,
		                             first[0].data, strlen(first[0].data), NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	w = NULL;
	if (!st)
		st = alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC);
	if (!st)
		st = alcm_writer_add_section(w, second[0].type, second[0].flags, second[0].tag,
		                             second[0].data, strlen(second[0].data), NULL);
	if (!st)
		st = alcm_writer_commit(w);
	alcm_writer_free(w);
	if (st)
		return st;
	FILE *f = fopen(path, "rb");
	if (!f)
		return ALCM_E_IO;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	o->p = calloc(1, (size_t)n + 64);
	o->n = (size_t)n;
	if (!o->p || fread(o->p, 1, o->n, f) != o->n)
		st = ALCM_E_IO;
	fclose(f);
	unlink(path);
	return st;
}

/* The stream vector after a crash while its slot B was being written: the last 16 bytes
 * of the slot never reached the disk. */
static int v_torn(mv_bytes *o, const char *scratch)
{
	int st = v_stream(o, scratch);
	if (!st)
		memset(o->p + ALCM_SLOT_B + 48, 0, 16);
	return st;
}

static int v_minor(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		alcm_store16(o->p + 10, 1);
		mv_reseal_header(o->p);
	}
	return st;
}

static int v_bad_digest(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->p[192] = 'A'; /* "alcm..." -> "Alcm..." */
	return st;
}

static int v_bad_table(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->p[320 + 16 + 8] = 8; /* tag of section 0: 0 -> 8, table digest not redone */
	return st;
}

static int v_unknown_critical(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		alcm_store32(o->p + 320 + 16 + 64 + 4, ALCM_SECTION_CRITICAL);
		mv_reseal_table(o->p);
	}
	return st;
}

static int v_overlap(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		alcm_store64(o->p + 320 + 16 + 64 + 16, 192); /* section 1 placed on section 0 */
		mv_reseal_table(o->p);
	}
	return st;
}

static int v_trailing(mv_bytes *o, const char *scratch)
{
	int st = v_empty(o, scratch);
	if (!st)
		o->p[o->n++] = '\n'; /* what an editor adds at the end of a "text" file */
	return st;
}

static int v_crlf(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	size_t k = 0;
	if (st)
		return st;
	for (size_t i = 0; i < o->n; i++)
		if (!(o->p[i] == 0x0d && i + 1 < o->n && o->p[i + 1] == 0x0a))
			o->p[k++] = o->p[i];
	o->n = k;
	return ALCM_OK;
}

static int v_major(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st) {
		o->p[9] = 2;
		mv_reseal_header(o->p);
	}
	return st;
}

static int v_truncated(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->n = 400;
	return st;
}

static int v_padding(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		o->p[192 + 16] = 0x01; /* first padding byte after section 0 */
	return st;
}

static int v_unfinished(mv_bytes *o, const char *scratch)
{
	int st = v_two(o, scratch);
	if (!st)
		memset(o->p + ALCM_SLOT_A, 0, ALCM_SLOT_SIZE);
	return st;
}

static const mv_vector mv_vectors[] = {
	{"empty-archive.alcm", "ok", ALCM_OK, "generation=1 tail=0 sections=0", v_empty,
	 "A non-stream archive with no sections: the header, slot A (generation 1, table at "
	 "offset 192, 48 bytes) and a table of 0 entries."},
	{"two-sections.alcm", "ok", ALCM_OK, "generation=1 tail=0 sections=2", v_two,
	 "Section 0: META, optional, tag 0, the 16 bytes `alcm test vector` at offset 192 (a "
	 "container example only: not a valid META payload). Section 1: XTRA, an unknown optional "
	 "type, tag 7, the 5 bytes `hello` at offset 256. The table is at offset 320. A reader "
	 "lists XTRA with known = 0."},
	{"stream-appended.alcm", "ok", ALCM_OK, "generation=2 tail=0 sections=3", v_stream,
	 "A stream archive written with section 0 (META, `generation 1`), then appended to once. "
	 "Section 1 is the first table, now a PTBL section (tag 1, offset 256, 112 bytes); "
	 "section 2 is XTRA, tag 2, `generation 2`. Slot A holds generation 1, slot B generation "
	 "2, whose table is at offset 448."},
	{"torn-append.alcm", "ok", ALCM_OK, "generation=1 tail=320 sections=1", v_torn,
	 "stream-appended.alcm with the last 16 bytes of slot B zeroed, as a crash during the "
	 "slot write leaves it. Slot B fails its digest, so slot A (generation 1) is used: one "
	 "section, and the 320 bytes after the first table are an uncommitted tail."},
	{"minor-version.alcm", "ok", ALCM_OK, "generation=1 tail=0 sections=2", v_minor,
	 "two-sections.alcm with version_minor = 1, header and slot digests recomputed. A 1.0 "
	 "reader reads it."},
	{"bad-digest.alcm", "verify", ALCM_E_DIGEST,
	 "digest mismatch in section 0 (META) at offset 192", v_bad_digest,
	 "two-sections.alcm with byte 192 changed from `a` to `A`. The table is intact, so the "
	 "archive opens; reading or verifying section 0 fails."},
	{"bad-padding.alcm", "verify", ALCM_E_CORRUPT, "non-zero padding byte at offset 208",
	 v_padding,
	 "two-sections.alcm with the padding byte at offset 208 set to 0x01. It opens; full "
	 "verification refuses it."},
	{"bad-table-digest.alcm", "open", ALCM_E_DIGEST, "table digest mismatch at offset 464",
	 v_bad_table,
	 "two-sections.alcm with the tag of section 0 (offset 344) changed to 8, table digest "
	 "left as it was."},
	{"unknown-critical.alcm", "open", ALCM_E_UNSUPPORTED,
	 "section 1: unknown critical section type 'XTRA' at offset 256", v_unknown_critical,
	 "two-sections.alcm with section 1 (XTRA) flagged critical, table digest recomputed."},
	{"overlap.alcm", "open", ALCM_E_CORRUPT,
	 "section 1 (XTRA): offset 192 at offset 416, expected 256", v_overlap,
	 "two-sections.alcm with the offset of section 1 set to 192, on top of section 0, table "
	 "digest recomputed."},
	{"trailing-bytes.alcm", "open", ALCM_E_CORRUPT,
	 "1 trailing bytes after the table at offset 240", v_trailing,
	 "empty-archive.alcm followed by one LF byte, as an editor leaves a \"text\" file."},
	{"crlf.alcm", "open", ALCM_E_CORRUPT, "CR LF became LF", v_crlf,
	 "two-sections.alcm after a text-mode transfer turned every CR LF into LF: one byte "
	 "shorter, the signature's CR gone."},
	{"major-version.alcm", "open", ALCM_E_UNSUPPORTED, "format version 2.0", v_major,
	 "two-sections.alcm with version_major = 2, header and slot digests recomputed."},
	{"truncated.alcm", "open", ALCM_E_CORRUPT, "runs past the end of the file", v_truncated,
	 "The first 400 bytes of two-sections.alcm."},
	{"unfinished.alcm", "open", ALCM_E_CORRUPT, "no committed table", v_unfinished,
	 "two-sections.alcm with slot A zeroed, as a writer that never committed would leave "
	 "it."},
};
#define MV_COUNT (sizeof(mv_vectors) / sizeof(mv_vectors[0]))

static const char *mv_status_name(int st)
{
	switch (st) {
	case ALCM_OK: return "ok";
	case ALCM_E_CORRUPT: return "corrupt";
	case ALCM_E_DIGEST: return "digest";
	case ALCM_E_LIMIT: return "limit";
	case ALCM_E_UNSUPPORTED: return "unsupported";
	default: return "other";
	}
}

/* The manifest: one line per vector, tab-separated: name, stage, status, expectation. */
static char *mv_manifest(void)
{
	size_t cap = 8192, n = 0;
	char *m = malloc(cap);
	if (!m)
		return NULL;
	n += (size_t)snprintf(m + n, cap - n,
	                      "# alcm container test vectors: spec/alcm-format.md chapter 9.\n"
	                      "# file\tstage\tstatus\tdetail substring, or what an ok vector holds\n");
	for (size_t i = 0; i < MV_COUNT; i++)
		n += (size_t)snprintf(m + n, cap - n, "%s\t%s\t%s\t%s\n", mv_vectors[i].name,
		                      mv_vectors[i].stage, mv_status_name(mv_vectors[i].status),
		                      mv_vectors[i].expect);
	return m;
}

/* One xxd(1) line per 16 bytes, exactly as `xxd file` prints them (used by the test). */
__attribute__((unused)) static char *mv_xxd(const uint8_t *p, size_t n)
{
	size_t lines = (n + 15) / 16;
	char *out = malloc(lines * 80 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t at = 0; at < n; at += 16) {
		size_t k = n - at < 16 ? n - at : 16;
		o += sprintf(o, "%08zx: ", at);
		for (size_t i = 0; i < 16; i++) {
			if (i < k)
				o += sprintf(o, "%02x", p[at + i]);
			else
				o += sprintf(o, "  ");
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

static int mv_write(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(p, 1, n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Writes every vector and expected.txt into dir. @return 0 or -1. */
static int mv_make_all(const char *dir, const char *scratch)
{
	char path[4096];
	for (size_t i = 0; i < MV_COUNT; i++) {
		mv_bytes b = {0};
		int st = mv_vectors[i].build(&b, scratch);
		snprintf(path, sizeof(path), "%s/%s", dir, mv_vectors[i].name);
		if (st || mv_write(path, b.p, b.n)) {
			fprintf(stderr, "make_vectors: cannot make '%s': %s\n", path, alcm_strerror(st));
			free(b.p);
			return -1;
		}
		free(b.p);
	}
	char *m = mv_manifest();
	snprintf(path, sizeof(path), "%s/expected.txt", dir);
	int r = m ? mv_write(path, m, strlen(m)) : -1;
	free(m);
	return r;
}

#ifndef ALCM_VECTORS_NO_MAIN
int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_vectors DIR\n");
		return 2;
	}
	return mv_make_all(argv[1], argv[1]) ? 1 : 0;
}
#endif
