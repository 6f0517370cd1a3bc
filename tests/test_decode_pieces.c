/* Decoding in pieces (alcm_archive_decode_pieces) and writing in pieces (alcm_output_begin,
 * alcm_output_append): the same bytes as decoding and writing whole, at any thread count;
 * a damaged section never gets its last piece out; a status of the caller's function stops
 * the decode without poisoning the archive. */
#include "testutil.h"
#include "codec_internal.h"
#include "forge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef tu_packed packed;

#define NT 4

typedef tu_set set;

/* NT float32 tensors of n values each, N(0, 0.05); tensor 2 has no elements when empty2. */
static void make_set(set *s, uint64_t n, uint64_t seed, int empty2)
{
	tu_set_make(s, NT, n, seed, empty2 ? 2 : -1);
}

/* Chunks of 2^18 bytes: a tensor of 250000 values has 4. */
static void pack_mode(const set *s, int mode, packed *p)
{
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.chunk_bytes = (uint64_t)1 << 18;
	o.mode = mode == 0 ? ALCM_MODE_LOSSLESS : mode == 1 ? ALCM_MODE_REL_ERROR
	                                                    : ALCM_MODE_MAX_ERROR;
	o.bound = mode == 1 ? 1e-4 : 1e-5;
	o.prune = mode == 1 ? 0.2 : 0;
	assert_int_equal(tu_pack(s->t, NT, &o, p, NULL), ALCM_OK);
}

/* Collects pieces; fails with `fail_st` at piece number `fail_at` (0: never). Positions must
 * not go back; `last` is the last one seen. */
typedef struct sink {
	uint8_t *buf;
	size_t len, cap, pieces;
	size_t fail_at;
	int fail_st;
	size_t last;
	size_t per[NT]; /* bytes per position */
} sink;

static int collect(void *ctx, size_t pos, const void *data, size_t len)
{
	sink *k = ctx;
	if (k->fail_at && k->pieces + 1 == k->fail_at)
		return k->fail_st;
	assert_true(pos >= k->last);
	k->last = pos;
	assert_true(pos < NT);
	k->per[pos] += len;
	assert_true(k->len + len <= k->cap);
	memcpy(k->buf + k->len, data, len);
	k->len += len;
	k->pieces++;
	return ALCM_OK;
}

static void open_archive(const void *buf, size_t len, unsigned threads, alcm_reader **r,
                         alcm_archive **a)
{
	*r = NULL;
	*a = NULL;
	assert_int_equal(alcm_reader_open_memory(r, buf, len, "m", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open(a, *r, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_set_threads(*a, threads), ALCM_OK);
}

/* Pieces in order make the tensor alcm_archive_decode gives, a chunk each when lossless and
 * one piece when quantized, at 1 to 3 threads, mixed with whole decodes (which read ahead at
 * two threads) in the same archive. */
static void test_pieces_same_bytes(void **state)
{
	(void)state;
	for (int empty = 0; empty < 2; empty++) {
		set s;
		make_set(&s, 250000, 11, empty);
		for (int mode = 0; mode < 3; mode++) {
			packed p;
			pack_mode(&s, mode, &p);
			for (unsigned th = 1; th <= 3; th++)
				for (int mix = 0; mix < 2; mix++) {
					alcm_reader *r;
					alcm_archive *a;
					open_archive(p.buf, p.len, th, &r, &a);
					for (size_t i = 0; i < NT; i++) {
						alcm_tensor_info ti;
						assert_int_equal(alcm_archive_tensor_info(a, i, &ti), ALCM_OK);
						uint8_t *ref = malloc(ti.raw_bytes + 1);
						sink k = {malloc(ti.raw_bytes + 1), 0, ti.raw_bytes, 0, 0, 0, 0, {0}};
						if (mix && i % 2) {
							assert_int_equal(alcm_archive_decode(a, i, k.buf, ti.raw_bytes),
							                 ALCM_OK);
							k.len = ti.raw_bytes;
						} else {
							assert_int_equal(alcm_archive_decode_pieces(a, &i, 1, collect, &k),
							                 ALCM_OK);
							size_t want = !ti.raw_bytes ? 0 : mode ? 1 : ti.chunks;
							assert_int_equal(k.pieces, want);
						}
						assert_int_equal(k.len, ti.raw_bytes);
						alcm_reader *r1;
						alcm_archive *a1;
						open_archive(p.buf, p.len, 1, &r1, &a1);
						assert_int_equal(alcm_archive_decode(a1, i, ref, ti.raw_bytes), ALCM_OK);
						alcm_archive_free(a1);
						alcm_reader_free(r1);
						if (ti.raw_bytes)
							assert_memory_equal(k.buf, ref, ti.raw_bytes);
						if (!mode && ti.raw_bytes)
							assert_memory_equal(k.buf, s.data[i], ti.raw_bytes);
						free(ref);
						free(k.buf);
					}
					alcm_archive_free(a);
					alcm_reader_free(r);
				}
			alcm_writer_free(p.w);
		}
		tu_set_free(&s);
	}
}

/* The data section of tensor t of the lossless archive p (its LDAT number t): its index. */
static uint32_t tensor_section(const packed *p, int t, alcm_section_info *si)
{
	alcm_reader *r;
	alcm_archive *a;
	open_archive(p->buf, p->len, 1, &r, &a);
	uint32_t k = 0;
	for (int i = 0; i <= t; i++)
		assert_int_equal(alcm_reader_find_section(r, "LDAT", i ? k + 1 : 0, &k), ALCM_OK);
	assert_int_equal(alcm_reader_section_info(r, k, si), ALCM_OK);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return k;
}

/* A list of tensors in one call, in any order, one of them without elements: the pieces of
 * each position make its tensor, positions in order (the last chunks of a tensor are handed on
 * during the next one's first wave). A digest error in the list's second tensor, in its first
 * chunk, its second, its middle or its last byte, at one to three threads: the first tensor is
 * whole, the second short, nothing of the others. */
static void test_pieces_list(void **state)
{
	(void)state;
	set s;
	make_set(&s, 250000, 23, 1);
	for (int mode = 0; mode < 3; mode++) {
		packed p;
		pack_mode(&s, mode, &p);
		static const size_t orders[2][NT] = {{0, 1, 2, 3}, {3, 2, 1, 0}};
		uint64_t total = 0;
		for (int i = 0; i < NT; i++)
			total += s.t[i].nbytes;
		for (unsigned th = 1; th <= 3; th++)
			for (int o = 0; o < 2; o++) {
				alcm_reader *r;
				alcm_archive *a;
				open_archive(p.buf, p.len, th, &r, &a);
				sink k = {malloc(total), 0, total, 0, 0, 0, 0, {0}};
				assert_int_equal(alcm_archive_decode_pieces(a, orders[o], NT, collect, &k),
				                 ALCM_OK);
				assert_int_equal(k.len, total);
				uint64_t at = 0;
				for (size_t i = 0; i < NT; i++) {
					size_t t = orders[o][i];
					assert_int_equal(k.per[i], s.t[t].nbytes);
					uint8_t *ref = malloc(s.t[t].nbytes + 1);
					assert_int_equal(alcm_archive_decode(a, t, ref, s.t[t].nbytes), ALCM_OK);
					if (s.t[t].nbytes)
						assert_memory_equal(k.buf + at, ref, s.t[t].nbytes);
					at += s.t[t].nbytes;
					free(ref);
				}
				free(k.buf);
				alcm_archive_free(a);
				alcm_reader_free(r);
			}
		alcm_section_info si;
		memset(&si, 0, sizeof(si));
		uint32_t k1 = mode == 0 ? tensor_section(&p, 1, &si) : 0;
		char want[64];
		snprintf(want, sizeof(want), "digest mismatch in section %u", k1);
		/* chunks of about 220 KB: 8 and 200000 in the first, 300000 in the second */
		const uint64_t ats[] = {8, 200000, 300000, si.length / 2, si.length - 1};
		for (int w = 0; mode == 0 && w < 5; w++) {
			uint8_t *bad = malloc(p.len);
			memcpy(bad, p.buf, p.len);
			bad[si.offset + ats[w]] ^= 0x10;
			for (unsigned th = 1; th <= 3; th++) {
				alcm_reader *r;
				alcm_archive *a;
				open_archive(bad, p.len, th, &r, &a);
				sink k = {malloc(total), 0, total, 0, 0, 0, 0, {0}};
				assert_int_equal(alcm_archive_decode_pieces(a, orders[0], NT, collect, &k),
				                 ALCM_E_DIGEST);
				assert_non_null(strstr(alcm_archive_detail(a), want));
				assert_int_equal(k.per[0], s.t[0].nbytes);
				assert_memory_equal(k.buf, s.data[0], (size_t)s.t[0].nbytes);
				assert_true(k.per[1] < s.t[1].nbytes);
				assert_int_equal(k.per[2] + k.per[3], 0);
				free(k.buf);
				alcm_archive_free(a);
				alcm_reader_free(r);
			}
			free(bad);
		}
		alcm_writer_free(p.w);
	}
	tu_set_free(&s);
}

/* Decoding in pieces at two and three threads, the next tensor's first chunks read and hashed
 * ahead by the archive's hasher (made to finish them before they are taken, and in one case to
 * stop inside a chunk): the same bytes; a damaged byte in tensor 1, in a chunk hashed ahead (the
 * first, and the fourth: chunks of about 0.9 MB), beyond them, or in its last byte, or in the
 * first chunk of tensor 2 (hashed ahead while tensor 1 decodes): a digest mismatch naming the
 * section, the tensors before it whole, not its last piece, nothing after it. */
static void test_pieces_hash_ahead(void **state)
{
	(void)state;
	set s;
	make_set(&s, 1500000, 37, 0);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.chunk_bytes = (uint64_t)1 << 20;
	packed p;
	assert_int_equal(tu_pack(s.t, NT, &o, &p, NULL), ALCM_OK);
	alcm_section_info si, s2;
	memset(&si, 0, sizeof(si));
	uint32_t k1 = tensor_section(&p, 1, &si), k2 = k1 + 1;
	{
		alcm_reader *r;
		alcm_archive *a;
		open_archive(p.buf, p.len, 1, &r, &a);
		assert_int_equal(alcm_reader_find_section(r, "LDAT", k1 + 1, &k2), ALCM_OK);
		assert_int_equal(alcm_reader_section_info(r, k2, &s2), ALCM_OK);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	static const size_t order[NT] = {0, 1, 2, 3};
	uint64_t total = 0;
	for (int i = 0; i < NT; i++)
		total += s.t[i].nbytes;
	alcm_hash_ahead_wait = 1;
	alcm_relay_off = 1;
	/* bad: -1 none; 0..3 offsets into tensor 1's section; 4 tensor 2's first byte */
	for (int bad = -1; bad < 5; bad++)
		for (unsigned th = 2; th <= 3; th++)
			for (int lim = 0; lim < 2; lim++) {
				const uint64_t ats[] = {8, 3 * (si.length / 5), si.length - 300000,
				                        si.length - 1, 0};
				uint8_t *buf = malloc(p.len);
				memcpy(buf, p.buf, p.len);
				if (bad >= 0)
					buf[(bad < 4 ? si.offset : s2.offset) + ats[bad]] ^= 0x10;
				alcm_hash_ahead_limit = lim ? 300000 : 0; /* stops inside chunk 0 */
				uint64_t taken = alcm_hash_ahead_taken;
				alcm_reader *r;
				alcm_archive *a;
				open_archive(buf, p.len, th, &r, &a);
				sink k = {malloc(total), 0, total, 0, 0, 0, 0, {0}};
				int st = alcm_archive_decode_pieces(a, order, NT, collect, &k);
				assert_true(alcm_hash_ahead_taken - taken >= (lim ? 300000 : 3000000));
				if (bad < 0) {
					assert_int_equal(st, ALCM_OK);
					assert_int_equal(k.len, total);
					for (int i = 0, at = 0; i < NT; at += (int)s.t[i].nbytes, i++)
						assert_memory_equal(k.buf + at, s.data[i], (size_t)s.t[i].nbytes);
				} else {
					int t = bad < 4 ? 1 : 2;
					char want[64];
					snprintf(want, sizeof(want), "digest mismatch in section %u", t == 1 ? k1
					                                                                   : k2);
					assert_int_equal(st, ALCM_E_DIGEST);
					assert_non_null(strstr(alcm_archive_detail(a), want));
					for (int i = 0, at = 0; i < t; at += (int)s.t[i].nbytes, i++) {
						assert_int_equal(k.per[i], s.t[i].nbytes);
						assert_memory_equal(k.buf + at, s.data[i], (size_t)s.t[i].nbytes);
					}
					assert_true(k.per[t] < s.t[t].nbytes);
					for (int i = t + 1; i < NT; i++)
						assert_int_equal(k.per[i], 0);
				}
				free(k.buf);
				alcm_archive_free(a);
				alcm_reader_free(r);
				free(buf);
			}
	alcm_hash_ahead_wait = 0;
	alcm_hash_ahead_limit = 0;
	alcm_relay_off = 0;
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* A damaged byte in chunk c of tensor 1's section: a digest mismatch, and the tensor's last
 * piece never reaches the function (so a writer behind it never has the whole tensor). */
static void test_pieces_damaged(void **state)
{
	(void)state;
	set s;
	make_set(&s, 250000, 13, 0);
	packed p;
	pack_mode(&s, 0, &p);
	alcm_reader *r;
	alcm_archive *a;
	alcm_section_info si;
	(void)tensor_section(&p, 1, &si);
	uint64_t raw = s.t[1].nbytes;
	for (int where = 0; where < 3; where++) {
		uint8_t *bad = malloc(p.len);
		memcpy(bad, p.buf, p.len);
		/* the first bytes, the middle, the last byte */
		uint64_t at = where == 0 ? 8 : where == 1 ? si.length / 2 : si.length - 1;
		bad[si.offset + at] ^= 0x10;
		for (unsigned th = 1; th <= 2; th++) {
			open_archive(bad, p.len, th, &r, &a);
			sink k0s = {malloc(raw), 0, raw, 0, 0, 0, 0, {0}};
			size_t i0 = 0, i1 = 1, i2 = 2;
			assert_int_equal(alcm_archive_decode_pieces(a, &i0, 1, collect, &k0s), ALCM_OK);
			sink k = {malloc(raw), 0, raw, 0, 0, 0, 0, {0}};
			assert_int_equal(alcm_archive_decode_pieces(a, &i1, 1, collect, &k), ALCM_E_DIGEST);
			assert_non_null(strstr(alcm_archive_detail(a), "digest mismatch in section"));
			assert_true(k.len < raw);
			/* poisoned, as after alcm_archive_decode */
			assert_int_equal(alcm_archive_decode_pieces(a, &i2, 1, collect, &k0s), ALCM_E_STATE);
			free(k.buf);
			free(k0s.buf);
			alcm_archive_free(a);
			alcm_reader_free(r);
		}
		free(bad);
	}
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* The function's status stops the decode and comes back as it is; the archive goes on. */
static void test_pieces_fn_status(void **state)
{
	(void)state;
	set s;
	make_set(&s, 250000, 17, 0);
	packed p;
	pack_mode(&s, 0, &p);
	for (unsigned th = 1; th <= 2; th++)
		for (size_t at = 1; at <= 4; at++) {
			alcm_reader *r;
			alcm_archive *a;
			open_archive(p.buf, p.len, th, &r, &a);
			sink k = {malloc(s.t[0].nbytes), 0, s.t[0].nbytes, 0, at, ALCM_E_IO, 0, {0}};
			size_t i0 = 0, i1 = 1;
			assert_int_equal(alcm_archive_decode_pieces(a, &i0, 1, collect, &k), ALCM_E_IO);
			assert_int_equal(k.pieces, at - 1);
			k.len = k.pieces = 0;
			k.fail_at = 0;
			assert_int_equal(alcm_archive_decode_pieces(a, &i1, 1, collect, &k), ALCM_OK);
			assert_memory_equal(k.buf, s.data[1], s.t[1].nbytes);
			free(k.buf);
			alcm_archive_free(a);
			alcm_reader_free(r);
		}
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* Decodes the list 0..NT-1 of archive buf in pieces at th threads into k (cap: total bytes).
 * @return the status; *taken: the tensors relays handed on. */
static int relay_list(const uint8_t *buf, size_t len, unsigned th, sink *k, uint64_t cap,
                      char *detail, size_t dcap, uint64_t *taken)
{
	static const size_t order[NT] = {0, 1, 2, 3};
	alcm_reader *r;
	alcm_archive *a;
	open_archive(buf, len, th, &r, &a);
	memset(k, 0, sizeof(*k));
	k->buf = malloc(cap);
	k->cap = cap;
	uint64_t before = alcm_relay_taken;
	int st = alcm_archive_decode_pieces(a, order, NT, collect, k);
	*taken = alcm_relay_taken - before;
	snprintf(detail, dcap, "%s", alcm_archive_detail(a));
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}

/* The relay (two threads or more, digests on, lossless sections of 12 KiB or more): each
 * thread verifies a whole tensor, then hands it on in its turn. The same pieces as at one
 * thread; a damaged byte in tensor 2: a digest mismatch naming its section, tensors 0 and 1
 * whole and nothing of tensor 2 (its digest is checked before any of it goes out); a chunk of
 * tensor 2 that does not decode, its digests made to match: the status and message of one
 * thread, tensors 0 and 1 whole, tensor 2 short, nothing of tensor 3; the function's status
 * stops the relay as it is. */
static void test_pieces_relay(void **state)
{
	(void)state;
	set s;
	make_set(&s, 250000, 41, 0);
	packed p;
	pack_mode(&s, 0, &p);
	uint64_t total = 0, taken;
	for (int i = 0; i < NT; i++)
		total += s.t[i].nbytes;
	alcm_section_info si;
	uint32_t k2 = tensor_section(&p, 2, &si);
	assert_true(si.length >= ((uint64_t)12 << 10));
	char d1[512], d1d[512], d[512], want[64];
	snprintf(want, sizeof(want), "digest mismatch in section %u", k2);
	uint8_t *bad = malloc(p.len);
	memcpy(bad, p.buf, p.len);
	bad[si.offset + si.length / 2] ^= 0x10;
	/* chunk 1 of tensor 2 starts after chunk 0: its first byte names its coding */
	size_t flen;
	uint64_t c1;
	{
		/* chunk 0's length: what decoding it from the section's start takes */
		alcm_limits lim;
		alcm_limits_default(&lim);
		alcm_coder *c = alcm_coder_new(NULL, &lim);
		uint64_t n0 = ((uint64_t)1 << 18) / 4;
		uint8_t *out = malloc(n0 * 4), *x = malloc(alcm_lossless_scratch(n0, 4));
		alcm_cursor cur = {p.buf + si.offset, (size_t)si.length, 0};
		assert_int_equal(alcm_lossless_decode(c, &cur, ALCM_DTYPE_F32, out, n0, x), ALCM_OK);
		assert_memory_equal(out, s.data[2], n0 * 4);
		c1 = cur.pos;
		free(out);
		free(x);
		alcm_coder_free(c);
	}
	uint8_t *forged = fg_flip(p.buf, p.len, k2, c1, 0xff, &flen);
	assert_non_null(forged);
	int st1 = 0;
	for (unsigned th = 1; th <= 3; th++) {
		sink k;
		assert_int_equal(relay_list(p.buf, p.len, th, &k, total, d, sizeof(d), &taken), ALCM_OK);
		assert_int_equal(taken, th == 1 ? 0 : NT);
		assert_int_equal(k.len, total);
		assert_int_equal(k.pieces, NT * 4);
		for (int i = 0, at = 0; i < NT; at += (int)s.t[i].nbytes, i++)
			assert_memory_equal(k.buf + at, s.data[i], (size_t)s.t[i].nbytes);
		free(k.buf);

		assert_int_equal(relay_list(bad, p.len, th, &k, total, th == 1 ? d1d : d, sizeof(d),
		                            &taken), ALCM_E_DIGEST);
		assert_non_null(strstr(th == 1 ? d1d : d, want));
		if (th > 1)
			assert_string_equal(d, d1d);
		assert_int_equal(k.per[0] + k.per[1], s.t[0].nbytes + s.t[1].nbytes);
		assert_memory_equal(k.buf, s.data[0], (size_t)s.t[0].nbytes);
		assert_true(k.per[2] < s.t[2].nbytes);
		if (th > 1)
			assert_int_equal(k.per[2], 0);
		assert_int_equal(k.per[3], 0);
		free(k.buf);

		int st = relay_list(forged, flen, th, &k, total, th == 1 ? d1 : d, sizeof(d), &taken);
		if (th == 1)
			st1 = st;
		assert_true(st == ALCM_E_CORRUPT || st == ALCM_E_UNSUPPORTED);
		assert_int_equal(st, st1);
		if (th > 1) {
			assert_string_equal(d, d1);
			assert_int_equal(taken, 2);
		}
		assert_non_null(strstr(th == 1 ? d1 : d, "chunk 1 at offset"));
		assert_int_equal(k.per[0] + k.per[1], s.t[0].nbytes + s.t[1].nbytes);
		assert_true(k.per[2] < s.t[2].nbytes);
		assert_int_equal(k.per[3], 0);
		free(k.buf);
	}
	/* The function fails at the second chunk of tensor 1, then nothing more is decoded. */
	for (unsigned th = 2; th <= 3; th++) {
		alcm_reader *r;
		alcm_archive *a;
		open_archive(p.buf, p.len, th, &r, &a);
		static const size_t order[NT] = {0, 1, 2, 3};
		sink k = {malloc(total), 0, total, 0, 6, ALCM_E_IO, 0, {0}};
		assert_int_equal(alcm_archive_decode_pieces(a, order, NT, collect, &k), ALCM_E_IO);
		assert_int_equal(k.pieces, 5);
		k.len = k.pieces = k.last = 0;
		k.fail_at = 0;
		memset(k.per, 0, sizeof(k.per));
		assert_int_equal(alcm_archive_decode_pieces(a, order, NT, collect, &k), ALCM_OK);
		assert_int_equal(k.len, total);
		free(k.buf);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	free(forged);
	free(bad);
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* Decodes list[0..n) of archive buf at th threads with alcm_archive_decode_list into bufs
 * (each `cap` bytes). @return the status; *taken: the tensors relays decoded. */
static int list_into(const uint8_t *buf, size_t len, unsigned th, const size_t *list, size_t n,
                     uint8_t **bufs, size_t cap, char *detail, size_t dcap, uint64_t *taken)
{
	alcm_reader *r;
	alcm_archive *a;
	open_archive(buf, len, th, &r, &a);
	size_t caps[NT];
	for (size_t i = 0; i < n; i++) {
		caps[i] = cap;
		memset(bufs[i], 0xee, cap);
	}
	uint64_t before = alcm_relay_taken;
	size_t failed;
	int st = alcm_archive_decode_list(a, list, n, (void *const *)bufs, caps, &failed);
	*taken = alcm_relay_taken - before;
	assert_int_equal(failed, st ? 2 : n); /* the tests' failures are in tensor 2, third */
	snprintf(detail, dcap, "%s", alcm_archive_detail(a));
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}

/* alcm_archive_decode_list: the tensors of a list (one twice) into their buffers, the same
 * bytes at 1 to 3 threads, two threads or more decoding several at once; a damaged byte in
 * tensor 2, or a forged chunk of it that does not decode: the status and message of one
 * thread, the buffers of the tensors before it whole; a buffer too small: ALCM_E_ARG. */
static void test_decode_list(void **state)
{
	(void)state;
	set s;
	make_set(&s, 250000, 43, 0);
	packed p;
	pack_mode(&s, 0, &p);
	size_t raw = (size_t)s.t[0].nbytes;
	alcm_section_info si;
	uint32_t k2 = tensor_section(&p, 2, &si);
	uint8_t *bad = malloc(p.len);
	memcpy(bad, p.buf, p.len);
	bad[si.offset + si.length / 3] ^= 0x04;
	size_t flen;
	uint8_t *forged = fg_flip(p.buf, p.len, k2, 0, 0xff, &flen);
	assert_non_null(forged);
	uint8_t *bufs[NT];
	for (int i = 0; i < NT; i++)
		bufs[i] = malloc(raw);
	static const size_t list[NT] = {3, 1, 1, 0}, inorder[NT] = {0, 1, 2, 3};
	char d[512], d1[512], d1f[512];
	uint64_t taken;
	int st1 = 0, st1f = 0;
	for (unsigned th = 1; th <= 3; th++) {
		assert_int_equal(list_into(p.buf, p.len, th, list, NT, bufs, raw, d, sizeof(d), &taken),
		                 ALCM_OK);
		assert_int_equal(taken, th == 1 ? 0 : NT);
		for (int i = 0; i < NT; i++)
			assert_memory_equal(bufs[i], s.data[list[i]], raw);

		int st = list_into(bad, p.len, th, inorder, NT, bufs, raw, th == 1 ? d1 : d,
		                   sizeof(d), &taken);
		if (th == 1)
			st1 = st;
		assert_int_equal(st, ALCM_E_DIGEST);
		assert_int_equal(st, st1);
		if (th > 1)
			assert_string_equal(d, d1);
		assert_memory_equal(bufs[0], s.data[0], raw);
		assert_memory_equal(bufs[1], s.data[1], raw);

		st = list_into(forged, flen, th, inorder, NT, bufs, raw, th == 1 ? d1f : d, sizeof(d),
		               &taken);
		if (th == 1)
			st1f = st;
		assert_true(st == ALCM_E_CORRUPT || st == ALCM_E_UNSUPPORTED);
		assert_int_equal(st, st1f);
		if (th > 1)
			assert_string_equal(d, d1f);
		assert_non_null(strstr(th == 1 ? d1f : d, "chunk 0 at offset 0"));
		assert_memory_equal(bufs[0], s.data[0], raw);
		assert_memory_equal(bufs[1], s.data[1], raw);
	}
	{
		alcm_reader *r;
		alcm_archive *a;
		open_archive(p.buf, p.len, 2, &r, &a);
		size_t caps[NT] = {raw, raw, raw - 1, raw};
		size_t failed = 0;
		assert_int_equal(alcm_archive_decode_list(a, inorder, NT, (void *const *)bufs, caps,
		                                          &failed), ALCM_E_ARG);
		assert_int_equal(failed, NT);
		alcm_archive_free(a);
		alcm_reader_free(r);
	}
	for (int i = 0; i < NT; i++)
		free(bufs[i]);
	free(forged);
	free(bad);
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* Threads of this process, from /proc/self/status. */
static int threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* Tensors of a few KB in pieces at two threads: each one-chunk wave runs on the caller, and
 * no thread starts (as for alcm_archive_decode). */
static void test_pieces_small_no_thread(void **state)
{
	(void)state;
	set s;
	make_set(&s, 2000, 29, 0);
	packed p;
	pack_mode(&s, 0, &p);
	alcm_reader *r;
	alcm_archive *a;
	open_archive(p.buf, p.len, 2, &r, &a);
	int before = threads_now();
	size_t all[NT] = {0, 1, 2, 3};
	sink k = {malloc(NT * 8000), 0, NT * 8000, 0, 0, 0, 0, {0}};
	assert_int_equal(alcm_archive_decode_pieces(a, all, NT, collect, &k), ALCM_OK);
	assert_int_equal(threads_now(), before);
	for (int i = 0; i < NT; i++)
		assert_memory_equal(k.buf + 8000 * i, s.data[i], 8000);
	free(k.buf);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_writer_free(p.w);
	tu_set_free(&s);
}

/* Writes the set whole, or in pieces of `step` bytes (0: whole), to path. */
static int write_set(const set *s, const char *path, int fmt, size_t n, size_t step)
{
	alcm_output *o = NULL;
	int st = alcm_output_open(&o, path, fmt, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL);
	if (!st)
		st = alcm_output_plan(o, s->t, n);
	for (size_t i = 0; i < n && !st; i++) {
		if (!step) {
			st = alcm_output_write(o, &s->t[i]);
			continue;
		}
		alcm_tensor t = s->t[i];
		t.data = NULL;
		st = alcm_output_begin(o, &t);
		const uint8_t *d = s->t[i].data;
		for (uint64_t k = 0; !st && k < s->t[i].nbytes; k += step) {
			size_t len = s->t[i].nbytes - k < step ? (size_t)(s->t[i].nbytes - k) : step;
			st = alcm_output_append(o, d + k, len);
		}
	}
	if (!st)
		st = alcm_output_commit(o);
	alcm_output_free(o);
	return st;
}

/* .npy, .npz and .safetensors written in pieces are the files written whole, byte for byte
 * (the .npz members' CRC-32s are set at the end); .pt refuses pieces before writing any. */
static void test_output_pieces(void **state)
{
	(void)state;
	set s;
	make_set(&s, 2000, 19, 1);
	static const int fmts[] = {ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS, ALCM_FILE_NPY};
	static const char *const ext[] = {"npz", "safetensors", "npy"};
	for (int f = 0; f < 3; f++) {
		char a[64], b[64];
		snprintf(a, sizeof(a), "pieces_whole.%s", ext[f]);
		snprintf(b, sizeof(b), "pieces_parts.%s", ext[f]);
		size_t n = fmts[f] == ALCM_FILE_NPY ? 1 : NT;
		assert_int_equal(write_set(&s, tu_path(a), fmts[f], n, 0), ALCM_OK);
		size_t la, lb;
		uint8_t *fa = tu_read_file(tu_path(a), &la);
		for (size_t step = 1000; step <= 9000; step += 4000) {
			assert_int_equal(write_set(&s, tu_path(b), fmts[f], n, step), ALCM_OK);
			uint8_t *fb = tu_read_file(tu_path(b), &lb);
			assert_int_equal(la, lb);
			assert_memory_equal(fa, fb, la);
			free(fb);
		}
		free(fa);
		remove(tu_path(a));
		remove(tu_path(b));
	}
	/* misuse: commit or a whole write while a tensor is open, too many bytes, .pt */
	alcm_output *o = NULL;
	assert_int_equal(alcm_output_open(&o, tu_path("pieces_bad.npz"), ALCM_FILE_NPZ,
	                                  ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_output_begin(o, &s.t[0]), ALCM_OK);
	assert_int_equal(alcm_output_append(o, s.data[0], 400), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_E_STATE);
	assert_int_equal(alcm_output_write(o, &s.t[1]), ALCM_E_STATE);
	assert_int_equal(alcm_output_append(o, s.data[0], (size_t)s.t[0].nbytes), ALCM_E_STATE);
	alcm_output_free(o);
	assert_false(tu_file_exists(tu_path("pieces_bad.npz")));
	o = NULL;
	assert_int_equal(alcm_output_open(&o, tu_path("pieces.pt"), ALCM_FILE_PT,
	                                  ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, s.t, NT), ALCM_OK);
	assert_int_equal(alcm_output_begin(o, &s.t[0]), ALCM_E_UNSUPPORTED);
	for (int i = 0; i < NT; i++)
		assert_int_equal(alcm_output_write(o, &s.t[i]), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	alcm_output_free(o);
	remove(tu_path("pieces.pt"));
	tu_set_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pieces_same_bytes),
		cmocka_unit_test(test_pieces_list),
		cmocka_unit_test(test_pieces_hash_ahead),
		cmocka_unit_test(test_pieces_damaged),
		cmocka_unit_test(test_pieces_fn_status),
		cmocka_unit_test(test_pieces_relay),
		cmocka_unit_test(test_decode_list),
		cmocka_unit_test(test_pieces_small_no_thread),
		cmocka_unit_test(test_output_pieces),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
