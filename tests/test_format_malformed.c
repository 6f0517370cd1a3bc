/*
 * The container reader against hostile bytes: every prefix, every bit flip, forged offsets
 * and lengths (re-digested so that only the intended check can fire), text-mode damage,
 * versions, reserved fields, commit slots and limits. Each case asserts the exact status,
 * and a detail substring where the spec names what the message must point at.
 */
#include "testutil.h"
#include "container.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The base archive (non-stream, 816 bytes):
 *   192 META  10 bytes, optional     -> padding 202..255
 *   256 LDAT 100 bytes, critical     -> padding 356..383
 *   384 XTRA   0 bytes, optional, unknown type
 *   384 SCAL  70 bytes, critical     -> padding 454..511
 *   512 table: 48 + 4 * 64 = 304 bytes
 */
#define BASE_LEN 816u
#define TOFF 512u
#define NSEC 4u

typedef struct img {
	uint8_t *p;
	size_t n;
} img;

static uint8_t base[BASE_LEN];

static const struct {
	const char *type;
	uint32_t flags, tag;
	size_t len;
} layout[NSEC] = {
	{"META", 0, 0, 10},
	{"LDAT", ALCM_SECTION_CRITICAL, 1, 100},
	{"XTRA", 0, 2, 0},
	{"SCAL", ALCM_SECTION_CRITICAL, 1, 70},
};
static const uint64_t sec_off[NSEC] = {192, 256, 384, 384};

static int build_base(void **state)
{
	(void)state;
	alcm_writer *w = NULL;
	uint8_t data[100];
	uint64_t seed = 11;
	const void *buf;
	size_t len;
	if (alcm_writer_open_memory(&w, ALCM_WRITE_NO_SYNC, NULL))
		return -1;
	for (unsigned i = 0; i < NSEC; i++) {
		for (size_t k = 0; k < layout[i].len; k++)
			data[k] = (uint8_t)(tu_rand(&seed) | 1); /* never zero: flips are visible */
		if (alcm_writer_add_section(w, layout[i].type, layout[i].flags, layout[i].tag, data,
		                            layout[i].len, NULL))
			return -1;
	}
	if (alcm_writer_commit(w) || alcm_writer_memory(w, &buf, &len) || len != BASE_LEN)
		return -1;
	memcpy(base, buf, len);
	alcm_writer_free(w);
	return 0;
}

static img copy_base(size_t extra)
{
	img m;
	m.n = BASE_LEN;
	m.p = calloc(1, BASE_LEN + extra + 1);
	assert_non_null(m.p);
	memcpy(m.p, base, BASE_LEN);
	return m;
}

/* Recomputes the header digest, then the digest of each non-empty slot. */
static void reseal_header(uint8_t *p)
{
	alcm_digest(p + 32, p, 32);
	for (unsigned off = ALCM_SLOT_A; off <= ALCM_SLOT_B; off += ALCM_SLOT_SIZE) {
		int used = 0;
		for (unsigned i = 0; i < ALCM_SLOT_SIZE; i++)
			used |= p[off + i];
		if (used) {
			uint8_t buf[ALCM_FIXED_SIZE + 32];
			memcpy(buf, p, ALCM_FIXED_SIZE);
			memcpy(buf + ALCM_FIXED_SIZE, p + off, 32);
			alcm_digest(p + off + 32, buf, sizeof(buf));
		}
	}
}

/* Recomputes the digest of a table of `count` entries at `toff`. */
static void reseal_table(uint8_t *p, uint64_t toff, uint32_t count)
{
	size_t n = (size_t)alcm_table_size(count);
	alcm_digest(p + toff + n - 32, p + toff, n - 32);
}

static uint8_t *entry(uint8_t *p, unsigned i)
{
	return p + TOFF + ALCM_TABLE_HEAD + (size_t)i * ALCM_TABLE_ENTRY;
}
static uint64_t entry_off(unsigned i)
{
	return TOFF + ALCM_TABLE_HEAD + (uint64_t)i * ALCM_TABLE_ENTRY;
}

/* Opens m (and verifies it when it opens); returns the first failing status. */
static int check(const img *m, const alcm_limits *lim, char *detail, uint32_t *bad)
{
	alcm_reader *r = NULL;
	int st = alcm_reader_open_memory(&r, m->p, m->n, "m.alcm", lim, NULL, 0);
	if (!st)
		st = alcm_reader_verify(r, bad);
	if (detail)
		snprintf(detail, ALCM_DETAIL_MAX, "%s", alcm_reader_detail(r));
	alcm_reader_free(r);
	return st;
}

static void expect(const img *m, int status, const char *substr)
{
	char d[ALCM_DETAIL_MAX];
	int st = check(m, NULL, d, NULL);
	if (st != status)
		fail_msg("status %d (%s), expected %d; detail: %s", st, alcm_strerror(st), status, d);
	if (substr && !strstr(d, substr))
		fail_msg("detail '%s' lacks '%s'", d, substr);
}

static void test_base_is_valid(void **state)
{
	(void)state;
	img m = copy_base(0);
	expect(&m, ALCM_OK, NULL);
	for (unsigned i = 0; i < NSEC; i++)
		assert_int_equal(alcm_load64(entry(m.p, i) + 16), sec_off[i]);
	assert_int_equal(alcm_load64(m.p + ALCM_SLOT_A + 8), TOFF);
	free(m.p);
}

/* Every proper prefix is refused as corrupt, from memory; a sample through files too. */
static void test_truncated_every_prefix(void **state)
{
	(void)state;
	img m = copy_base(0);
	for (size_t n = 0; n < BASE_LEN; n++) {
		img t = {m.p, n};
		char d[ALCM_DETAIL_MAX];
		int st = check(&t, NULL, d, NULL);
		if (st != ALCM_E_CORRUPT)
			fail_msg("prefix of %zu bytes: status %d (%s)", n, st, d);
		if (n == 0)
			assert_non_null(strstr(d, "empty file"));
		else if (n < ALCM_SIGNATURE_LEN)
			assert_non_null(strstr(d, "truncated inside the signature"));
		else if (n < 240)
			assert_non_null(strstr(d, "shorter than the smallest archive"));
		else
			assert_non_null(strstr(d, "runs past the end of the file"));
	}
	const char *path = tu_path("prefix.alcm");
	for (size_t n = 0; n < BASE_LEN; n += 37) {
		alcm_reader *r = NULL;
		assert_int_equal(tu_write_file(path, m.p, n), 0);
		assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_E_CORRUPT);
		alcm_reader_free(r);
	}
	unlink(path);
	free(m.p);
}

/* The status a flip of bit `bit` of byte `at` must give (spec chapter 5). */
static int predicted(size_t at, uint32_t *bad)
{
	*bad = UINT32_MAX;
	if (at < ALCM_SIGNATURE_LEN)
		return ALCM_E_CORRUPT;      /* signature */
	if (at == 9)
		return ALCM_E_UNSUPPORTED;  /* major version, checked before the header digest */
	if (at < ALCM_SLOT_A)
		return ALCM_E_DIGEST;       /* header digest */
	if (at < ALCM_SLOT_B)
		return ALCM_E_DIGEST;       /* slot A torn, and no other slot */
	if (at < ALCM_HEADER_SIZE)
		return ALCM_E_CORRUPT;      /* slot B used in a non-stream archive */
	if (at >= TOFF)
		return ALCM_E_DIGEST;       /* table digest */
	for (unsigned i = 0; i < NSEC; i++)
		if (at >= sec_off[i] && at < sec_off[i] + layout[i].len) {
			*bad = i;
			return ALCM_E_DIGEST;   /* section digest, found by verify */
		}
	return ALCM_E_CORRUPT;          /* padding, found by verify */
}

static void test_every_bit_flipped(void **state)
{
	(void)state;
	img m = copy_base(0);
	const char *path = tu_path("flip.alcm");
	int counts[16] = {0};
	for (size_t at = 0; at < BASE_LEN; at++) {
		for (int bit = 0; bit < 8; bit++) {
			uint32_t want_bad, bad = 0;
			int want = predicted(at, &want_bad);
			m.p[at] ^= (uint8_t)(1u << bit);
			char d[ALCM_DETAIL_MAX];
			int st = check(&m, NULL, d, &bad);
			if (st != want)
				fail_msg("bit %d of byte %zu: status %d (%s), expected %d", bit, at, st, d,
				         want);
			if (at >= ALCM_HEADER_SIZE && at < TOFF && bad != want_bad)
				fail_msg("bit %d of byte %zu: bad section %u, expected %u", bit, at, bad,
				         want_bad);
			counts[st]++;
			/* Through a file for a sample, which verifies with the streaming buffer. */
			if ((at * 8 + (size_t)bit) % 29 == 0) {
				alcm_reader *r = NULL;
				assert_int_equal(tu_write_file(path, m.p, m.n), 0);
				int fst = alcm_reader_open_file(&r, path, NULL, NULL, 0);
				if (!fst)
					fst = alcm_reader_verify(r, NULL);
				assert_int_equal(fst, want);
				alcm_reader_free(r);
			}
			m.p[at] ^= (uint8_t)(1u << bit);
		}
	}
	unlink(path);
	assert_int_equal(counts[ALCM_OK], 0);
	assert_true(counts[ALCM_E_DIGEST] > 0 && counts[ALCM_E_CORRUPT] > 0 &&
	            counts[ALCM_E_UNSUPPORTED] == 8);
	print_message("bit flips: %d corrupt, %d digest, %d unsupported\n", counts[ALCM_E_CORRUPT],
	              counts[ALCM_E_DIGEST], counts[ALCM_E_UNSUPPORTED]);
	free(m.p);
}

/* ---- forged table entries, re-digested -------------------------------------------- */

static void set_entry64(img *m, unsigned i, unsigned field, uint64_t v)
{
	alcm_store64(entry(m->p, i) + field, v);
	reseal_table(m->p, TOFF, NSEC);
}

static void expect_entry_case(unsigned i, unsigned field, uint64_t v, int status,
                              const char *substr)
{
	img m = copy_base(0);
	set_entry64(&m, i, field, v);
	expect(&m, status, substr);
	free(m.p);
}

static void test_lengths_and_offsets(void **state)
{
	(void)state;
	char want[256];
	/* 5 GiB declared in an 816-byte file: corrupt, found without allocating it. */
	snprintf(want, sizeof(want), "section 3 (SCAL): length 5368709120 at offset %llu runs into "
	         "the table at offset 512", (unsigned long long)entry_off(3) + 24);
	expect_entry_case(3, 24, (uint64_t)5 << 30, ALCM_E_CORRUPT, want);
	snprintf(want, sizeof(want), "section 1 (LDAT): length 5368709120 at offset %llu",
	         (unsigned long long)entry_off(1) + 24);
	expect_entry_case(1, 24, (uint64_t)5 << 30, ALCM_E_CORRUPT, want);
	/* Wrapping at 2^64: offset + length == 2^64 exactly, and UINT64_MAX. */
	snprintf(want, sizeof(want), "section 3 (SCAL): length %llu at offset %llu wraps past 2^64",
	         (unsigned long long)(0 - (uint64_t)384), (unsigned long long)entry_off(3) + 24);
	expect_entry_case(3, 24, 0 - (uint64_t)384, ALCM_E_CORRUPT, want);
	expect_entry_case(0, 24, UINT64_MAX, ALCM_E_CORRUPT, "section 0 (META): length "
	                  "18446744073709551615 at offset 552 wraps past 2^64");
	/* One byte too long: runs into the table. */
	expect_entry_case(3, 24, 129, ALCM_E_CORRUPT, "section 3 (SCAL): length 129 at offset 744 "
	                  "runs into the table at offset 512");
	/* Offsets: wrapped, past the end, and off by one alignment unit. */
	expect_entry_case(0, 16, UINT64_MAX - 63, ALCM_E_CORRUPT, "section 0 (META): offset "
	                  "18446744073709551552 at offset 544, expected 192");
	expect_entry_case(1, 16, 1 << 20, ALCM_E_CORRUPT, "section 1 (LDAT): offset 1048576 at "
	                  "offset 608, expected 256");
	expect_entry_case(1, 16, 320, ALCM_E_CORRUPT, "section 1 (LDAT): offset 320 at offset 608, "
	                  "expected 256");
	expect_entry_case(1, 16, 257, ALCM_E_CORRUPT, "expected 256");
	/* Overlap: section 3 placed on section 1, and section 1 grown over section 3. */
	expect_entry_case(3, 16, 256, ALCM_E_CORRUPT, "section 3 (SCAL): offset 256 at offset "
	                  "736, expected 384");
	expect_entry_case(1, 24, 150, ALCM_E_CORRUPT, "section 2 (XTRA): offset 384 at offset "
	                  "672, expected 448");
	/* A gap: section 1 shortened leaves bytes no section owns. */
	expect_entry_case(1, 24, 30, ALCM_E_CORRUPT, "section 2 (XTRA): offset 384 at offset 672, "
	                  "expected 320");
	/* The last section shortened: the table no longer follows it. */
	expect_entry_case(3, 24, 1, ALCM_E_CORRUPT, "table at offset 512 does not follow the last "
	                  "section (expected offset 448)");
}

/* The same section listed twice (same offset, length and digest). */
static void test_duplicate_entry(void **state)
{
	(void)state;
	img m = copy_base(0);
	memcpy(entry(m.p, 3), entry(m.p, 1), ALCM_TABLE_ENTRY);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "section 3 (LDAT): offset 256 at offset 736, expected 384");
	/* Zero-length sections may share an offset: that is not an overlap. */
	memcpy(m.p, base, BASE_LEN);
	expect(&m, ALCM_OK, NULL);
	free(m.p);
}

static void test_table_fields(void **state)
{
	(void)state;
	img m = copy_base(0);
	/* Reserved entry field. */
	alcm_store32(entry(m.p, 2) + 12, 1);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "section 2: reserved field at offset 668 is not zero");
	/* Reserved flag bits. */
	memcpy(m.p, base, BASE_LEN);
	alcm_store32(entry(m.p, 1) + 4, ALCM_SECTION_CRITICAL | 0x80000000u);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "section 1 (LDAT): reserved flag bits 0x80000000 set at "
	                           "offset 596");
	/* Types that are not four printable characters. */
	static const char bad_types[][4] = {{'M', 'E', 'T', 0}, {'M', ' ', 'T', 'A'},
	                                    {'M', 'E', 'T', 0x7f}, {'\xcd', 'E', 'T', 'A'}};
	for (size_t k = 0; k < 4; k++) {
		memcpy(m.p, base, BASE_LEN);
		memcpy(entry(m.p, 0), bad_types[k], 4);
		reseal_table(m.p, TOFF, NSEC);
		expect(&m, ALCM_E_CORRUPT, "section 0: type is not 4 printable characters (table "
		                           "entry at offset 528)");
	}
	/* Table head: magic, reserved field, count. */
	memcpy(m.p, base, BASE_LEN);
	memcpy(m.p + TOFF, "ATBX", 4);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "bad table head at offset 512");
	memcpy(m.p, base, BASE_LEN);
	alcm_store64(m.p + TOFF + 8, 1);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "bad table head at offset 512");
	memcpy(m.p, base, BASE_LEN);
	alcm_store32(m.p + TOFF + 4, 3);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "table count 3 at offset 516 disagrees with its size 304");
	memcpy(m.p, base, BASE_LEN);
	alcm_store32(m.p + TOFF + 4, UINT32_MAX);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_CORRUPT, "table count 4294967295");
	/* Table digest itself. */
	memcpy(m.p, base, BASE_LEN);
	m.p[BASE_LEN - 1] ^= 1;
	expect(&m, ALCM_E_DIGEST, "table digest mismatch at offset 784");
	free(m.p);
}

/* ---- forged commit slots, re-digested --------------------------------------------- */

static void set_slot(img *m, unsigned slot, uint64_t gen, uint64_t toff, uint64_t tsize)
{
	alcm_store64(m->p + slot, gen);
	alcm_store64(m->p + slot + 8, toff);
	alcm_store64(m->p + slot + 16, tsize);
	reseal_header(m->p);
}

static void test_slot_fields(void **state)
{
	(void)state;
	img m = copy_base(0);
	uint64_t ts = alcm_table_size(NSEC);
	set_slot(&m, ALCM_SLOT_A, 1, BASE_LEN + 16, ts);
	expect(&m, ALCM_E_CORRUPT, "table [832, +304) in slot at offset 64 runs past the end of the "
	                           "file (816 bytes)");
	/* Offset + size wraps at 2^64. */
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, UINT64_MAX - 63, ts);
	expect(&m, ALCM_E_CORRUPT, "table [18446744073709551552, +304) in slot at offset 64 runs "
	                           "past the end");
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, TOFF, 48 + 64 * (((uint64_t)1 << 58) - 1));
	expect(&m, ALCM_E_CORRUPT, "runs past the end of the file");
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, TOFF + 1, ts);
	expect(&m, ALCM_E_CORRUPT, "table offset 513 in slot at offset 64 is not an aligned offset");
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, 128, ts);
	expect(&m, ALCM_E_CORRUPT, "table offset 128 in slot at offset 64 is not an aligned offset "
	                           "after the header");
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, TOFF, ts - 1);
	expect(&m, ALCM_E_CORRUPT, "table size 303 in slot at offset 64 is not 48 + 64 * count");
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, TOFF, 16);
	expect(&m, ALCM_E_CORRUPT, "table size 16");
	/* A smaller table that is a valid size: the slot points at a shorter table, so bytes
	 * follow it and the table digest is wrong. */
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, TOFF, ts - 64);
	expect(&m, ALCM_E_CORRUPT, "64 trailing bytes after the table at offset 752");
	/* Generation 0 and the reserved field, with a correct digest: corrupt, not torn. */
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 0, TOFF, ts);
	expect(&m, ALCM_E_CORRUPT, "commit slot at offset 64 has generation 0");
	memcpy(m.p, base, BASE_LEN);
	alcm_store64(m.p + ALCM_SLOT_A + 24, 1);
	reseal_header(m.p);
	expect(&m, ALCM_E_CORRUPT, "reserved field of commit slot at offset 88 is not zero");
	/* Slot A damaged (digest). */
	memcpy(m.p, base, BASE_LEN);
	m.p[ALCM_SLOT_A + 8] ^= 0x40;
	expect(&m, ALCM_E_DIGEST, "commit slot A at offset 64: digest mismatch");
	/* Both slots empty: the archive was never finished. */
	memcpy(m.p, base, BASE_LEN);
	memset(m.p + ALCM_SLOT_A, 0, ALCM_SLOT_SIZE);
	expect(&m, ALCM_E_CORRUPT, "no committed table (commit slots empty)");
	/* Slot B used in a non-stream archive, even with a valid digest and generation. */
	memcpy(m.p, base, BASE_LEN);
	memcpy(m.p + ALCM_SLOT_B, m.p + ALCM_SLOT_A, ALCM_SLOT_SIZE);
	set_slot(&m, ALCM_SLOT_B, 2, TOFF, ts);
	expect(&m, ALCM_E_CORRUPT, "commit slot B at offset 128 is not empty in a non-stream "
	                           "archive");
	/* A slot bound to another header: the digest covers the fixed part too. */
	memcpy(m.p, base, BASE_LEN);
	m.p[12] = ALCM_FLAG_STREAM;
	alcm_digest(m.p + 32, m.p, 32);
	expect(&m, ALCM_E_DIGEST, "no valid commit slot: digest mismatch in slot A at offset 64");
	free(m.p);
}

/* ---- header ----------------------------------------------------------------------- */

static void test_header_fields(void **state)
{
	(void)state;
	img m = copy_base(0);
	/* Major version 2: unsupported, whether or not the digests were redone. */
	m.p[9] = 2;
	expect(&m, ALCM_E_UNSUPPORTED, "format version 2.0 at offset 9 is not supported (this "
	                               "reader knows 1.x)");
	reseal_header(m.p);
	expect(&m, ALCM_E_UNSUPPORTED, "format version 2.0");
	m.p[9] = 0;
	reseal_header(m.p);
	expect(&m, ALCM_E_UNSUPPORTED, "format version 0.0");
	m.p[9] = 255;
	alcm_store16(m.p + 10, 300);
	reseal_header(m.p);
	expect(&m, ALCM_E_UNSUPPORTED, "format version 255.300");
	/* A higher minor version is read. */
	for (unsigned minor = 1; minor < 65536; minor = minor * 7 + 1) {
		memcpy(m.p, base, BASE_LEN);
		alcm_store16(m.p + 10, (uint16_t)minor);
		reseal_header(m.p);
		alcm_reader *r = NULL;
		unsigned ma, mi;
		assert_int_equal(alcm_reader_open_memory(&r, m.p, m.n, NULL, NULL, NULL, 0), ALCM_OK);
		alcm_reader_version(r, &ma, &mi);
		assert_int_equal(ma, 1);
		assert_int_equal(mi, minor);
		assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
		alcm_reader_free(r);
	}
	/* Reserved flag bits. */
	for (int bit = 1; bit < 32; bit++) {
		char want[128];
		memcpy(m.p, base, BASE_LEN);
		alcm_store32(m.p + 12, 1u << bit);
		reseal_header(m.p);
		snprintf(want, sizeof(want), "reserved header flag bits 0x%08x set at offset 12",
		         1u << bit);
		expect(&m, ALCM_E_CORRUPT, want);
	}
	/* Reserved bytes. */
	for (int at = 21; at < 32; at++) {
		char want[128];
		memcpy(m.p, base, BASE_LEN);
		m.p[at] = 0x20;
		reseal_header(m.p);
		snprintf(want, sizeof(want), "reserved header byte at offset %d is not zero", at);
		expect(&m, ALCM_E_CORRUPT, want);
	}
	memcpy(m.p, base, BASE_LEN);
	alcm_store32(m.p + 16, 256);
	reseal_header(m.p);
	expect(&m, ALCM_E_CORRUPT, "header size 256 at offset 16 is not 192");
	memcpy(m.p, base, BASE_LEN);
	m.p[20] = 12;
	reseal_header(m.p);
	expect(&m, ALCM_E_CORRUPT, "alignment log2 12 at offset 20 is not 6");
	/* The header digest. */
	memcpy(m.p, base, BASE_LEN);
	m.p[40] ^= 1;
	expect(&m, ALCM_E_DIGEST, "header digest mismatch at offset 32");
	memcpy(m.p, base, BASE_LEN);
	m.p[11] = 1;
	expect(&m, ALCM_E_DIGEST, "header digest mismatch at offset 32");
	free(m.p);
}

static void test_wrong_magic(void **state)
{
	(void)state;
	img m = copy_base(0);
	static const char *others[] = {"PK\x03\x04", "\x93NUMPY", "\x89HDF\r\n\x1a\n", "{\"a\":",
	                               "\x89PNG\r\n\x1a\n", "\x89" "ALCN", "ALCM"};
	for (size_t k = 0; k < sizeof(others) / sizeof(others[0]); k++) {
		memcpy(m.p, base, BASE_LEN);
		memcpy(m.p, others[k], strlen(others[k]));
		expect(&m, ALCM_E_CORRUPT, "m.alcm: not an .alcm file (bad signature at offset 0)");
	}
	/* Nine bytes of signature, nothing else. */
	img t = {m.p, 9};
	memcpy(m.p, base, BASE_LEN);
	expect(&t, ALCM_E_CORRUPT, "file of 9 bytes is shorter than the smallest archive (240 "
	                           "bytes)");
	free(m.p);
}

/* ---- text-mode damage ------------------------------------------------------------- */

static img transform(int kind)
{
	img out;
	out.p = malloc(2 * BASE_LEN);
	out.n = 0;
	for (size_t i = 0; i < BASE_LEN; i++) {
		uint8_t c = base[i];
		switch (kind) {
		case 0: /* CR LF -> LF */
			if (c == 0x0d && i + 1 < BASE_LEN && base[i + 1] == 0x0a)
				continue;
			break;
		case 1: /* LF -> CR LF, every LF */
			if (c == 0x0a)
				out.p[out.n++] = 0x0d;
			break;
		case 2: /* LF -> CR LF, lone LF only */
			if (c == 0x0a && (i == 0 || base[i - 1] != 0x0d))
				out.p[out.n++] = 0x0d;
			break;
		case 3: /* 7-bit */
			c &= 0x7f;
			break;
		}
		out.p[out.n++] = c;
	}
	return out;
}

static void test_text_mode_damage(void **state)
{
	(void)state;
	static const char *msgs[] = {
		"bad signature at offset 5: CR LF became LF (file transferred in text mode)",
		"bad signature at offset 5: LF became CR LF (file transferred in text mode)",
		"bad signature at offset 8: LF became CR LF (file transferred in text mode)",
		"bad signature at offset 0: the high bit of byte 0 was stripped (7-bit transfer)",
	};
	for (int kind = 0; kind < 4; kind++) {
		img m = transform(kind);
		expect(&m, ALCM_E_CORRUPT, msgs[kind]);
		free(m.p);
	}
}

/* ---- sections, padding, trailing bytes -------------------------------------------- */

static void test_unknown_sections(void **state)
{
	(void)state;
	img m = copy_base(0);
	/* XTRA is unknown and optional in the base: listed, known = 0. */
	alcm_reader *r = NULL;
	alcm_section_info si;
	assert_int_equal(alcm_reader_open_memory(&r, m.p, m.n, NULL, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_info(r, 2, &si), ALCM_OK);
	assert_string_equal(si.type, "XTRA");
	assert_int_equal(si.known, 0);
	alcm_reader_free(r);
	/* Critical: the reader must refuse, naming it. */
	alcm_store32(entry(m.p, 2) + 4, ALCM_SECTION_CRITICAL);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_E_UNSUPPORTED, "section 2: unknown critical section type 'XTRA' at offset "
	                               "384");
	/* A known type stays readable whether critical or not. */
	memcpy(m.p, base, BASE_LEN);
	alcm_store32(entry(m.p, 1) + 4, 0);
	alcm_store32(entry(m.p, 0) + 4, ALCM_SECTION_CRITICAL);
	reseal_table(m.p, TOFF, NSEC);
	expect(&m, ALCM_OK, NULL);
	free(m.p);
}

static void test_padding(void **state)
{
	(void)state;
	img m = copy_base(0);
	static const size_t pads[] = {202, 255, 356, 383, 454, 511};
	for (size_t k = 0; k < sizeof(pads) / sizeof(pads[0]); k++) {
		char d[ALCM_DETAIL_MAX], want[64];
		uint32_t bad = 0;
		memcpy(m.p, base, BASE_LEN);
		m.p[pads[k]] = 0x80;
		/* Opening does not read the padding; verify does. */
		alcm_reader *r = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, m.p, m.n, NULL, NULL, NULL, 0), ALCM_OK);
		alcm_reader_free(r);
		assert_int_equal(check(&m, NULL, d, &bad), ALCM_E_CORRUPT);
		assert_int_equal(bad, UINT32_MAX);
		snprintf(want, sizeof(want), "non-zero padding byte at offset %zu", pads[k]);
		assert_non_null(strstr(d, want));
	}
	free(m.p);
}

static void test_trailing_bytes(void **state)
{
	(void)state;
	img m = copy_base(4096);
	m.n = BASE_LEN + 1;
	m.p[BASE_LEN] = '\n';
	expect(&m, ALCM_E_CORRUPT, "1 trailing bytes after the table at offset 816");
	m.n = BASE_LEN + 4096;
	expect(&m, ALCM_E_CORRUPT, "4096 trailing bytes after the table at offset 816");
	/* Even a second, complete copy of the archive after it. */
	memcpy(m.p + BASE_LEN, base, BASE_LEN);
	m.n = 2 * BASE_LEN;
	expect(&m, ALCM_E_CORRUPT, "816 trailing bytes");
	free(m.p);
}

/* ---- limits ----------------------------------------------------------------------- */

static void test_limits(void **state)
{
	(void)state;
	alcm_limits lim;
	char d[ALCM_DETAIL_MAX];
	img m = copy_base(0);
	/* max_sections 3 with 4 sections, and the spec's example, 2 with 3. */
	alcm_limits_default(&lim);
	lim.max_sections = 3;
	assert_int_equal(check(&m, &lim, d, NULL), ALCM_E_LIMIT);
	assert_non_null(strstr(d, "table of 4 sections (slot at offset 64) exceeds the limit of 3 "
	                          "sections"));
	lim.max_sections = 4;
	assert_int_equal(check(&m, &lim, d, NULL), ALCM_OK);

	alcm_writer *w = NULL;
	const void *buf;
	size_t len;
	assert_int_equal(alcm_writer_open_memory(&w, 0, NULL), ALCM_OK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, "abc", 3, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	assert_int_equal(alcm_writer_memory(w, &buf, &len), ALCM_OK);
	img three = {(uint8_t *)buf, len};
	lim.max_sections = 2;
	assert_int_equal(check(&three, &lim, d, NULL), ALCM_E_LIMIT);
	assert_non_null(strstr(d, "exceeds the limit of 2 sections"));
	lim.max_sections = 0;
	assert_int_equal(check(&three, &lim, d, NULL), ALCM_E_LIMIT);
	alcm_writer_free(w);

	/* Section length over max_section_bytes: LIMIT naming the section and field. */
	alcm_limits_default(&lim);
	lim.max_section_bytes = 99;
	assert_int_equal(check(&m, &lim, d, NULL), ALCM_E_LIMIT);
	assert_non_null(strstr(d, "section 1 (LDAT): length 100 at offset 616 exceeds the limit "
	                          "of 99 bytes"));
	lim.max_section_bytes = 100;
	assert_int_equal(check(&m, &lim, d, NULL), ALCM_OK);

	/* A corrupt length beyond the file is CORRUPT even when it also exceeds the limit. */
	set_entry64(&m, 3, 24, (uint64_t)5 << 30);
	lim.max_section_bytes = (uint64_t)4 << 30;
	assert_int_equal(check(&m, &lim, d, NULL), ALCM_E_CORRUPT);
	/* And a table larger than the file is CORRUPT even above max_sections. */
	memcpy(m.p, base, BASE_LEN);
	set_slot(&m, ALCM_SLOT_A, 1, TOFF, alcm_table_size(1000));
	lim.max_sections = 10;
	assert_int_equal(check(&m, &lim, d, NULL), ALCM_E_CORRUPT);
	free(m.p);
}

/* Forged sizes are refused before anything is allocated for them. */
typedef struct peak_alloc {
	alcm_allocator a;
	size_t peak;
} peak_alloc;
static void *pk_malloc(void *o, size_t n)
{
	peak_alloc *p = o;
	if (n > p->peak)
		p->peak = n;
	return malloc(n);
}
static void *pk_realloc(void *o, void *q, size_t n)
{
	peak_alloc *p = o;
	if (n > p->peak)
		p->peak = n;
	return realloc(q, n);
}
static void pk_free(void *o, void *q)
{
	(void)o;
	free(q);
}

static void test_no_allocation_from_forged_sizes(void **state)
{
	(void)state;
	peak_alloc pa = {{pk_malloc, pk_realloc, pk_free, NULL}, 0};
	pa.a.opaque = &pa;
	img m = copy_base(0);
	static const uint64_t sizes[] = {(uint64_t)5 << 30, UINT64_MAX - 47,
	                                 48 + 64 * (((uint64_t)1 << 32) - 1)};
	for (size_t k = 0; k < 3; k++) {
		memcpy(m.p, base, BASE_LEN);
		set_slot(&m, ALCM_SLOT_A, 1, TOFF, sizes[k] - (sizes[k] - 48) % 64);
		alcm_reader *r = NULL;
		assert_int_equal(alcm_reader_open_memory(&r, m.p, m.n, NULL, NULL, &pa.a, 0),
		                 ALCM_E_CORRUPT);
		alcm_reader_free(r);
	}
	memcpy(m.p, base, BASE_LEN);
	set_entry64(&m, 1, 24, (uint64_t)5 << 30);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, m.p, m.n, NULL, NULL, &pa.a, 0),
	                 ALCM_E_CORRUPT);
	alcm_reader_free(r);
	assert_true(pa.peak < 4096);
	free(m.p);
}

/* ---- stream archives: two generations ---------------------------------------------- */

/*
 * A stream archive after one append:
 *   192 META 10 | 256 table 1 (112 bytes) = PTBL | 384 LDAT 100 | 512 table 2 (240 bytes)
 * slot A: generation 1 -> table 1; slot B: generation 2 -> table 2. 752 bytes.
 */
static img stream_two_gen(void)
{
	const char *path = tu_path("stream2.alcm");
	uint8_t data[100];
	memset(data, 0x5a, sizeof(data));
	alcm_writer *w = NULL;
	unlink(path);
	assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM | ALCM_WRITE_NO_SYNC,
	                                       NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "META", 0, 0, data, 10, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC), ALCM_OK);
	assert_int_equal(alcm_writer_add_section(w, "LDAT", ALCM_SECTION_CRITICAL, 1, data, 100,
	                                         NULL),
	                 ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	img m;
	m.p = tu_read_file(path, &m.n);
	assert_non_null(m.p);
	assert_int_equal(m.n, 752);
	unlink(path);
	return m;
}

static void open_expect(const img *m, int status, uint64_t gen, uint64_t tail)
{
	alcm_reader *r = NULL;
	int st = alcm_reader_open_memory(&r, m->p, m->n, NULL, NULL, NULL, 0);
	if (st != status)
		fail_msg("status %d, expected %d: %s", st, status, alcm_reader_detail(r));
	if (!st) {
		assert_int_equal(alcm_reader_generation(r), gen);
		assert_int_equal(alcm_reader_tail_bytes(r), tail);
		assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	}
	alcm_reader_free(r);
}

static void test_stream_slots(void **state)
{
	(void)state;
	img m = stream_two_gen();
	uint8_t *orig = malloc(m.n);
	memcpy(orig, m.p, m.n);
	open_expect(&m, ALCM_OK, 2, 0);
	/* Torn newest slot (B): falls back to generation 1 and its table; the rest is tail. */
	m.p[ALCM_SLOT_B + 50] ^= 1;
	open_expect(&m, ALCM_OK, 1, 752 - 368);
	/* Torn older slot (A): generation 2 still rules. */
	memcpy(m.p, orig, m.n);
	m.p[ALCM_SLOT_A + 3] ^= 1;
	open_expect(&m, ALCM_OK, 2, 0);
	/* Both torn. */
	m.p[ALCM_SLOT_B + 3] ^= 1;
	open_expect(&m, ALCM_E_DIGEST, 0, 0);
	/* Both valid with the same generation. */
	memcpy(m.p, orig, m.n);
	alcm_store64(m.p + ALCM_SLOT_A, 2);
	reseal_header(m.p);
	expect(&m, ALCM_E_CORRUPT, "both commit slots claim generation 2");
	/* The older slot made newer by a forged generation: table 1 is read, rest is tail. */
	memcpy(m.p, orig, m.n);
	alcm_store64(m.p + ALCM_SLOT_A, 3);
	reseal_header(m.p);
	open_expect(&m, ALCM_OK, 3, 752 - 368);
	/* A slot with a valid digest but a bad field is corruption, not a torn write. */
	memcpy(m.p, orig, m.n);
	alcm_store64(m.p + ALCM_SLOT_A + 24, 5);
	reseal_header(m.p);
	expect(&m, ALCM_E_CORRUPT, "reserved field of commit slot at offset 88 is not zero");
	/* Slot A empty, slot B valid: read. */
	memcpy(m.p, orig, m.n);
	memset(m.p + ALCM_SLOT_A, 0, ALCM_SLOT_SIZE);
	open_expect(&m, ALCM_OK, 2, 0);
	/* Slot A empty, slot B torn: nothing valid. */
	m.p[ALCM_SLOT_B + 3] ^= 1;
	expect(&m, ALCM_E_DIGEST, "no valid commit slot: digest mismatch in slot B at offset 128");
	/* A stream archive may carry a tail; a truncated one may not lose its table. */
	memcpy(m.p, orig, m.n);
	for (size_t n = 0; n < m.n; n++) {
		img t = {m.p, n};
		assert_int_equal(check(&t, NULL, NULL, NULL), ALCM_E_CORRUPT);
	}
	free(orig);
	free(m.p);
}

/* Every bit of a two-generation stream archive: a flip in a commit slot may be survived
 * (that is the point of two slots), but then the archive read is intact. */
static void test_stream_every_bit_flipped(void **state)
{
	(void)state;
	img m = stream_two_gen();
	int survived = 0;
	for (size_t at = 0; at < m.n; at++) {
		for (int bit = 0; bit < 8; bit++) {
			m.p[at] ^= (uint8_t)(1u << bit);
			alcm_reader *r = NULL;
			int st = alcm_reader_open_memory(&r, m.p, m.n, NULL, NULL, NULL, 0);
			if (!st)
				st = alcm_reader_verify(r, NULL);
			if (st == ALCM_OK) {
				/* Only a flip in a slot: the other slot's generation is read. */
				assert_true(at >= ALCM_SLOT_A && at < ALCM_HEADER_SIZE);
				assert_int_equal(alcm_reader_generation(r), at < ALCM_SLOT_B ? 2 : 1);
				survived++;
			} else if (at >= 256 && at < 368) {
				/* Table 1 is now section 1 (PTBL): its digest catches the flip. */
				assert_int_equal(st, ALCM_E_DIGEST);
			}
			alcm_reader_free(r);
			m.p[at] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(survived, 2 * ALCM_SLOT_SIZE * 8);
	free(m.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_is_valid),
		cmocka_unit_test(test_truncated_every_prefix),
		cmocka_unit_test(test_every_bit_flipped),
		cmocka_unit_test(test_lengths_and_offsets),
		cmocka_unit_test(test_duplicate_entry),
		cmocka_unit_test(test_table_fields),
		cmocka_unit_test(test_slot_fields),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_wrong_magic),
		cmocka_unit_test(test_text_mode_damage),
		cmocka_unit_test(test_unknown_sections),
		cmocka_unit_test(test_padding),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_no_allocation_from_forged_sizes),
		cmocka_unit_test(test_stream_slots),
		cmocka_unit_test(test_stream_every_bit_flipped),
	};
	return cmocka_run_group_tests(tests, build_base, NULL);
}
