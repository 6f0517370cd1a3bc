/*
 * torch.save files through alcm_input/alcm_output (lib/io/pt.c, pickle.c), the records they
 * carry (alcm.alias, torch.state_dict, user.K) and sharded output, without torch: pickles
 * and zips are built here byte by byte. tests/cli_torch.sh does the same with torch's files.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- a byte buffer ---- */

typedef struct bb {
	uint8_t p[1 << 16];
	size_t n;
} bb;

static void put(bb *b, const void *s, size_t n)
{
	assert_true(b->n + n <= sizeof(b->p));
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void puts_(bb *b, const char *s)
{
	put(b, s, strlen(s));
}

static void u16(bb *b, unsigned v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	put(b, x, 2);
}

static void u32(bb *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	put(b, x, 4);
}

/* ---- pickles ---- */

static void pk_str(bb *b, const char *s)
{
	puts_(b, "X");
	u32(b, (uint32_t)strlen(s));
	puts_(b, s);
}

static void pk_int(bb *b, int64_t v)
{
	if (v >= 0 && v < 256) {
		uint8_t x[2] = {'K', (uint8_t)v};
		put(b, x, 2);
	} else {
		uint8_t x[10] = {0x8a, 8};
		for (int i = 0; i < 8; i++)
			x[2 + i] = (uint8_t)((uint64_t)v >> (8 * i));
		put(b, x, 10);
	}
}

#define OD "ccollections\nOrderedDict\n"

/* _rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), off, size, stride, ...) */
static void pk_tensor(bb *b, const char *cls, const char *key, int64_t numel, int64_t off,
                      int nd, const int64_t *size, const int64_t *stride)
{
	puts_(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
	pk_str(b, "storage");
	puts_(b, "ctorch\n");
	puts_(b, cls);
	puts_(b, "\n");
	pk_str(b, key);
	pk_str(b, "cpu");
	pk_int(b, numel);
	puts_(b, "tQ");
	pk_int(b, off);
	puts_(b, "(");
	for (int i = 0; i < nd; i++)
		pk_int(b, size[i]);
	puts_(b, "t(");
	for (int i = 0; i < nd; i++)
		pk_int(b, stride[i]);
	puts_(b, "t\x89" OD ")RtR");
}

/* ---- a stored zip ---- */

typedef struct member {
	const char *name;
	const void *data;
	size_t len;
} member;

static uint8_t *zip_of(const member *m, size_t n, size_t *out_len)
{
	static bb z;
	bb cd;
	z.n = cd.n = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t crc = (uint32_t)crc32(0, m[i].data, (uInt)m[i].len);
		size_t off = z.n, nl = strlen(m[i].name);
		puts_(&z, "PK\x03\x04");
		u16(&z, 20), u16(&z, 0), u16(&z, 0), u16(&z, 0), u16(&z, 0);
		u32(&z, crc), u32(&z, (uint32_t)m[i].len), u32(&z, (uint32_t)m[i].len);
		u16(&z, (unsigned)nl), u16(&z, 0);
		put(&z, m[i].name, nl);
		put(&z, m[i].data, m[i].len);
		puts_(&cd, "PK\x01\x02");
		u16(&cd, 20), u16(&cd, 20), u16(&cd, 0), u16(&cd, 0), u16(&cd, 0), u16(&cd, 0);
		u32(&cd, crc), u32(&cd, (uint32_t)m[i].len), u32(&cd, (uint32_t)m[i].len);
		u16(&cd, (unsigned)nl), u16(&cd, 0), u16(&cd, 0), u16(&cd, 0), u16(&cd, 0);
		u32(&cd, 0), u32(&cd, (uint32_t)off);
		put(&cd, m[i].name, nl);
	}
	size_t cd_off = z.n;
	put(&z, cd.p, cd.n);
	puts_(&z, "PK\x05\x06");
	u16(&z, 0), u16(&z, 0), u16(&z, (unsigned)n), u16(&z, (unsigned)n);
	u32(&z, (uint32_t)cd.n), u32(&z, (uint32_t)cd_off), u16(&z, 0);
	*out_len = z.n;
	return z.p;
}

/* A .pt of the pickle `pkl` (without the PROTO and dict prefix: items, then 'u.') and one
 * storage record "0" of `data`. */
static const uint8_t *pt_file(const bb *items, const void *data, size_t dlen, size_t *len)
{
	static bb pkl;
	pkl.n = 0;
	puts_(&pkl, "\x80\x02" OD ")R(");
	put(&pkl, items->p, items->n);
	puts_(&pkl, "u.");
	member m[3] = {{"archive/data.pkl", pkl.p, pkl.n}, {"archive/data/0", data, dlen},
	               {"archive/version", "3\n", 2}};
	return zip_of(m, 3, len);
}

static int open_pt(alcm_input **in, const uint8_t *p, size_t len)
{
	return alcm_input_open_memory(in, p, len, 0, "t.pt", NULL, NULL);
}

static const float storage12[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

/* ---- tests ---- */

/* Views of one storage: the transposed view, a row, a strided slice, stride 0, and a view
 * that overlaps itself are each gathered into C order; the same view twice is an alias. */
static void test_views(void **state)
{
	(void)state;
	bb it = {.n = 0};
	int64_t s34[] = {3, 4}, st34[] = {4, 1}, s43[] = {4, 3}, st43[] = {1, 4};
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, s34, st34);
	pk_str(&it, "wT");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, s43, st43);
	pk_str(&it, "row1");
	pk_tensor(&it, "FloatStorage", "0", 12, 4, 1, (int64_t[]){4}, (int64_t[]){1});
	pk_str(&it, "cols");
	pk_tensor(&it, "FloatStorage", "0", 12, 1, 2, (int64_t[]){3, 2}, (int64_t[]){4, 2});
	pk_str(&it, "bcast");
	pk_tensor(&it, "FloatStorage", "0", 12, 5, 2, (int64_t[]){2, 3}, (int64_t[]){0, 1});
	pk_str(&it, "overlap");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, (int64_t[]){3, 3}, (int64_t[]){1, 1});
	pk_str(&it, "tied");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, s34, st34);
	size_t len;
	const uint8_t *f = pt_file(&it, storage12, sizeof(storage12), &len);
	alcm_input *in = NULL;
	assert_int_equal(open_pt(&in, f, len), ALCM_OK);
	assert_int_equal(alcm_input_format(in), ALCM_FILE_PT);
	static const struct {
		const char *name;
		float v[12];
		size_t n;
	} want[] = {
		{"w", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12},
		{"wT", {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}, 12},
		{"row1", {4, 5, 6, 7}, 4},
		{"cols", {1, 3, 5, 7, 9, 11}, 6},
		{"bcast", {5, 6, 7, 5, 6, 7}, 6},
		{"overlap", {0, 1, 2, 1, 2, 3, 2, 3, 4}, 9},
	};
	for (size_t k = 0; k < 6; k++) {
		alcm_tensor t;
		int has;
		assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
		assert_int_equal(has, 1);
		assert_int_equal(t.name_len, strlen(want[k].name));
		assert_memory_equal(t.name, want[k].name, t.name_len);
		assert_int_equal(t.nbytes, want[k].n * 4);
		assert_memory_equal(t.data, want[k].v, t.nbytes);
	}
	alcm_tensor t;
	int has;
	assert_int_equal(alcm_input_next(in, &t, &has), ALCM_OK);
	assert_int_equal(has, 0); /* "tied" is not read again */
	const char *k;
	const uint8_t *v;
	size_t vl;
	assert_int_equal(alcm_input_meta_count(in), 2);
	assert_int_equal(alcm_input_meta(in, 0, &k, &v, &vl), ALCM_OK);
	assert_string_equal(k, "alcm.alias");
	static const uint8_t alias[] = {1, 0, 0, 0, 4, 0, 0, 0, 't', 'i', 'e', 'd', 1, 0, 0, 0, 'w'};
	assert_int_equal(vl, sizeof(alias));
	assert_memory_equal(v, alias, vl);
	assert_int_equal(alcm_input_meta(in, 1, &k, &v, &vl), ALCM_OK);
	assert_string_equal(k, "torch.state_dict");
	assert_int_equal(vl, strlen("{\"alias_index\":[6]}"));
	assert_memory_equal(v, "{\"alias_index\":[6]}", vl);
	assert_int_equal(alcm_input_meta(in, 2, &k, &v, &vl), ALCM_E_ARG);
	alcm_input_free(in);
}

static void expect_refusal(const bb *items, const void *data, size_t dlen, int status,
                           const char *msg)
{
	size_t len;
	const uint8_t *f = pt_file(items, data, dlen, &len);
	alcm_input *in = NULL;
	int st = open_pt(&in, f, len);
	if (st == ALCM_OK) { /* refusals of a view come at open too: nothing is read */
		fail_msg("accepted, expected %d (%s)", status, msg);
	}
	assert_int_equal(st, status);
	if (!strstr(alcm_input_detail(in), msg))
		fail_msg("detail '%s' lacks '%s'", alcm_input_detail(in), msg);
	alcm_input_free(in);
}

static void test_refusals(void **state)
{
	(void)state;
	bb it;
	/* code */
	it.n = 0;
	pk_str(&it, "w");
	puts_(&it, "cos\nsystem\n");
	pk_str(&it, "echo");
	puts_(&it, "\x85R");
	expect_refusal(&it, storage12, 48, ALCM_E_UNSUPPORTED, "global 'os.system' is not allowed");
	/* a view past its storage */
	it.n = 0;
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 12, 9, 1, (int64_t[]){4}, (int64_t[]){1});
	expect_refusal(&it, storage12, 48, ALCM_E_CORRUPT, "reaches element 12 of a storage of 12");
	/* a storage that claims more than its record */
	it.n = 0;
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 13, 0, 1, (int64_t[]){4}, (int64_t[]){1});
	expect_refusal(&it, storage12, 48, ALCM_E_CORRUPT, "declares 13 float32 elements");
	/* elements past the limit, even on a stride-0 view of one element */
	it.n = 0;
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, (int64_t[]){1 << 16, 1 << 16},
	          (int64_t[]){0, 0});
	pk_str(&it, "x");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 3, (int64_t[]){1 << 20, 1 << 20, 1 << 20},
	          (int64_t[]){0, 0, 0});
	expect_refusal(&it, storage12, 48, ALCM_E_LIMIT, "tensor 'x': shape:");
	/* memo abuse */
	it.n = 0;
	pk_str(&it, "w");
	puts_(&it, "h\x07");
	expect_refusal(&it, storage12, 48, ALCM_E_CORRUPT, "memo key 7 was never stored");
	/* a view of a self-overlapping as_strided tensor spanning more than 64 MiB would be
	 * gathered from a buffer of that span: refused instead */
	it.n = 0;
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 1, (int64_t[]){3}, (int64_t[]){1});
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 1, (int64_t[]){3}, (int64_t[]){1});
	expect_refusal(&it, storage12, 48, ALCM_E_CORRUPT, "the name appears twice");
}

/* Every allocation failure of open + read is reported as NOMEM, and nothing leaks. */
static void test_alloc_failures(void **state)
{
	(void)state;
	bb it = {.n = 0};
	pk_str(&it, "w");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, (int64_t[]){4, 3}, (int64_t[]){1, 4});
	pk_str(&it, "v");
	pk_tensor(&it, "FloatStorage", "0", 12, 0, 2, (int64_t[]){4, 3}, (int64_t[]){1, 4});
	size_t len;
	const uint8_t *f = pt_file(&it, storage12, sizeof(storage12), &len);
	for (long k = 1;; k++) {
		tu_alloc ta;
		tu_alloc_init(&ta, k);
		alcm_input *in = NULL;
		int st = alcm_input_open_memory(&in, f, len, 0, "t.pt", NULL, &ta.a);
		int has = 1;
		while (st == ALCM_OK && has) {
			alcm_tensor t;
			st = alcm_input_next(in, &t, &has);
		}
		alcm_input_free(in);
		assert_int_equal(ta.live, 0);
		if (st == ALCM_OK) {
			assert_true(ta.calls < k);
			break;
		}
		assert_int_equal(st, ALCM_E_NOMEM);
	}
}

static const char *write_pt(const char *name, const alcm_tensor *t, size_t n,
                            const char *const *keys, const void *const *vals, const size_t *lens,
                            size_t nmeta, int plan)
{
	const char *p = tu_path(name);
	alcm_output *o = NULL;
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_PT, ALCM_WRITE_OVERWRITE | ALCM_WRITE_NO_SYNC,
	                                  NULL), ALCM_OK);
	for (size_t i = 0; i < nmeta; i++)
		assert_int_equal(alcm_output_set_meta(o, keys[i], vals[i], lens[i]), ALCM_OK);
	if (plan)
		assert_int_equal(alcm_output_plan(o, t, n), ALCM_OK);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(alcm_output_write(o, &t[i]), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	assert_int_equal(alcm_output_set_meta(o, "x", "", 0), ALCM_E_STATE);
	alcm_output_free(o);
	return p;
}

/* The writer's files read back: tensors, aliases in their place, parameters, _metadata and
 * the dict type, with and without a plan. */
static void test_write_read(void **state)
{
	(void)state;
	float w[6] = {1, 2, 3, 4, 5, 6};
	uint16_t bf[2] = {0x3f80, 0xc000};
	int64_t step = 42;
	alcm_tensor t[3] = {
		{.name = "w", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 2, .shape = {2, 3},
		 .data = w, .nbytes = 24},
		{.name = "bf", .name_len = 2, .dtype = ALCM_DTYPE_BF16, .ndim = 1, .shape = {2},
		 .data = bf, .nbytes = 4},
		{.name = "step", .name_len = 4, .dtype = ALCM_DTYPE_I64, .ndim = 0, .data = &step,
		 .nbytes = 8},
	};
	static const uint8_t alias[] = {1, 0, 0, 0, 4, 0, 0, 0, 't', 'i', 'e', 'd', 1, 0, 0, 0, 'w'};
	static const char state_in[] = "{\"type\":\"OrderedDict\",\"alias_index\":[3],"
	                               "\"parameters\":{\"w\":true,\"tied\":true},"
	                               "\"requires_grad\":[\"bf\"],"
	                               "\"metadata\":{\"\":{\"version\":1}},\"future\":[1]}";
	const char *keys[] = {"alcm.alias", "torch.state_dict", "user.ignored"};
	const void *vals[] = {alias, state_in, "x"};
	const size_t lens[] = {sizeof(alias), sizeof(state_in) - 1, 1};
	for (int plan = 0; plan < 2; plan++) {
		const char *p = write_pt("w.pt", t, 3, keys, vals, lens, 3, plan);
		alcm_input *in = NULL;
		assert_int_equal(alcm_input_open(&in, p, NULL, NULL), ALCM_OK);
		assert_int_equal(alcm_input_format(in), ALCM_FILE_PT);
		for (size_t i = 0; i < 3; i++) {
			alcm_tensor r;
			int has;
			assert_int_equal(alcm_input_next(in, &r, &has), ALCM_OK);
			assert_int_equal(has, 1);
			assert_int_equal(r.name_len, t[i].name_len);
			assert_memory_equal(r.name, t[i].name, r.name_len);
			assert_int_equal(r.dtype, t[i].dtype);
			assert_int_equal(r.ndim, t[i].ndim);
			assert_memory_equal(r.shape, t[i].shape, t[i].ndim * sizeof(uint64_t));
			assert_memory_equal(r.data, t[i].data, t[i].nbytes);
		}
		const char *k;
		const uint8_t *v;
		size_t vl;
		assert_int_equal(alcm_input_meta_count(in), 2);
		assert_int_equal(alcm_input_meta(in, 0, &k, &v, &vl), ALCM_OK);
		assert_int_equal(vl, sizeof(alias));
		assert_memory_equal(v, alias, vl);
		assert_int_equal(alcm_input_meta(in, 1, &k, &v, &vl), ALCM_OK);
		static const char state_out[] = "{\"alias_index\":[3],"
		                                "\"parameters\":{\"w\":true,\"tied\":true},"
		                                "\"requires_grad\":[\"bf\"],"
		                                "\"metadata\":{\"\":{\"version\":1}}}";
		assert_int_equal(vl, sizeof(state_out) - 1);
		assert_memory_equal(v, state_out, vl);
		alcm_input_free(in);
	}
	/* uint16 has no torch storage: refused naming the tensor, nothing written */
	uint16_t u[1] = {1};
	alcm_tensor tu = {.name = "u", .name_len = 1, .dtype = ALCM_DTYPE_U16, .ndim = 1,
	                  .shape = {1}, .data = u, .nbytes = 2};
	alcm_output *o = NULL;
	const char *p = tu_path("u.pt");
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_PT, ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, &tu, 1), ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(alcm_output_detail(o), "tensor 'u': torch has no uint16 storage"));
	alcm_output_free(o);
	assert_false(tu_file_exists(p));
	/* a malformed torch.state_dict is refused when it is used */
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_PT, ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_output_set_meta(o, "torch.state_dict", "{\"metadata\":[1,", 15),
	                 ALCM_OK);
	assert_int_equal(alcm_output_plan(o, t, 1), ALCM_E_CORRUPT);
	assert_non_null(strstr(alcm_output_detail(o), "META key torch.state_dict"));
	alcm_output_free(o);
	assert_false(tu_file_exists(p));
}

/* .npz and .safetensors cannot share storage: an alias is written as a copy. */
static void test_alias_copies(void **state)
{
	(void)state;
	float w[2] = {1, 2};
	alcm_tensor t = {.name = "w", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 1,
	                 .shape = {2}, .data = w, .nbytes = 8};
	static const uint8_t alias[] = {1, 0, 0, 0, 1, 0, 0, 0, 'a', 1, 0, 0, 0, 'w'};
	/* a target that is not written, an alias that is a tensor's name: corrupt records */
	static const uint8_t bad[2][14] = {{1, 0, 0, 0, 1, 0, 0, 0, 'b', 1, 0, 0, 0, 'z'},
	                                   {1, 0, 0, 0, 1, 0, 0, 0, 'w', 1, 0, 0, 0, 'w'}};
	static const char *const why[2] = {"target 'z' is not a tensor", "alias 'w' is also"};
	const int fmts[3] = {ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS, ALCM_FILE_PT};
	for (int f = 0; f < 3; f++)
		for (int b = 0; b < 2; b++) {
			alcm_output *o = NULL;
			const char *p = tu_path("bad-alias");
			assert_int_equal(alcm_output_open(&o, p, fmts[f], ALCM_WRITE_NO_SYNC, NULL),
			                 ALCM_OK);
			assert_int_equal(alcm_output_set_meta(o, "alcm.alias", bad[b], 14), ALCM_OK);
			assert_int_equal(alcm_output_plan(o, &t, 1), ALCM_E_CORRUPT);
			assert_non_null(strstr(alcm_output_detail(o), why[b]));
			alcm_output_free(o);
			assert_false(tu_file_exists(p));
		}
	for (int f = 0; f < 2; f++) {
		const char *p = tu_path(f ? "c.safetensors" : "c.npz");
		alcm_output *o = NULL;
		assert_int_equal(alcm_output_open(&o, p, fmts[f], ALCM_WRITE_OVERWRITE |
		                                  ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
		assert_int_equal(alcm_output_set_meta(o, "alcm.alias", alias, sizeof(alias)), ALCM_OK);
		assert_int_equal(alcm_output_plan(o, &t, 1), ALCM_OK);
		assert_int_equal(alcm_output_write(o, &t), ALCM_OK);
		assert_int_equal(alcm_output_commit(o), ALCM_OK);
		alcm_output_free(o);
		alcm_input *in = NULL;
		assert_int_equal(alcm_input_open(&in, p, NULL, NULL), ALCM_OK);
		for (int k = 0; k < 2; k++) {
			alcm_tensor r;
			int has;
			assert_int_equal(alcm_input_next(in, &r, &has), ALCM_OK);
			assert_int_equal(has, 1);
			assert_memory_equal(r.data, w, 8);
			assert_true(r.name_len == 1 && (r.name[0] == 'w' || r.name[0] == 'a'));
		}
		alcm_tensor r;
		int has;
		assert_int_equal(alcm_input_next(in, &r, &has), ALCM_OK);
		assert_int_equal(has, 0);
		alcm_input_free(in);
	}
}

/* A safetensors __metadata__ becomes user.K and comes back first in the header. */
static void test_safetensors_metadata(void **state)
{
	(void)state;
	float w[1] = {1};
	alcm_tensor t = {.name = "w", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 1,
	                 .shape = {1}, .data = w, .nbytes = 4};
	const char *p = tu_path("m.safetensors");
	alcm_output *o = NULL;
	assert_int_equal(alcm_output_open(&o, p, ALCM_FILE_SAFETENSORS, ALCM_WRITE_OVERWRITE |
	                                  ALCM_WRITE_NO_SYNC, NULL), ALCM_OK);
	assert_int_equal(alcm_output_set_meta(o, "user.format", "pt", 2), ALCM_OK);
	assert_int_equal(alcm_output_set_meta(o, "user.q\"", "a\nb", 3), ALCM_OK);
	assert_int_equal(alcm_output_set_meta(o, "alcm.producer", "x", 1), ALCM_OK);
	assert_int_equal(alcm_output_plan(o, &t, 1), ALCM_OK);
	assert_int_equal(alcm_output_write(o, &t), ALCM_OK);
	assert_int_equal(alcm_output_commit(o), ALCM_OK);
	alcm_output_free(o);
	size_t len;
	uint8_t *b = tu_read_file(p, &len);
	static const char head[] = "{\"__metadata__\":{\"format\":\"pt\",\"q\\\"\":\"a\\nb\"},"
	                           "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
	assert_memory_equal(b + 8, head, sizeof(head) - 1);
	alcm_input *in = NULL;
	assert_int_equal(alcm_input_open_memory(&in, b, len, 0, "m", NULL, NULL), ALCM_OK);
	const char *k;
	const uint8_t *v;
	size_t vl;
	assert_int_equal(alcm_input_meta_count(in), 2);
	assert_int_equal(alcm_input_meta(in, 1, &k, &v, &vl), ALCM_OK);
	assert_string_equal(k, "user.q\"");
	assert_int_equal(vl, 3);
	assert_memory_equal(v, "a\nb", 3);
	alcm_input_free(in);
	free(b);
	/* a key with a NUL cannot be a META key: refused, not dropped */
	static const char nul[] = "{\"__metadata__\":{\"a\\u0000b\":\"v\"}}";
	uint8_t f[64] = {sizeof(nul) - 1};
	memcpy(f + 8, nul, sizeof(nul) - 1);
	assert_int_equal(alcm_input_open_memory(&in, f, 8 + sizeof(nul) - 1, 0, "n", NULL, NULL),
	                 ALCM_E_UNSUPPORTED);
	assert_non_null(strstr(alcm_input_detail(in), "cannot be kept"));
	alcm_input_free(in);
}

/* A sharded output checks its records against the plan before anything is created. */
static void test_shards_out(void **state)
{
	(void)state;
	float w[1] = {1};
	alcm_tensor t[2] = {{.name = "a", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 1,
	                     .shape = {1}, .data = w, .nbytes = 4},
	                    {.name = "b", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 1,
	                     .shape = {1}, .data = w, .nbytes = 4}};
	static const char layout[] = "{\"index\":\"m.safetensors.index.json\",\"files\":["
	                             "{\"name\":\"s1.safetensors\",\"tensors\":1,"
	                             "\"metadata\":{\"format\":\"pt\"}},"
	                             "{\"name\":\"s2.safetensors\",\"tensors\":1}]}";
	static const char good[] = "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}";
	static const char swapped[] = "{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s1.safetensors\"}}";
	static const char escape[] = "{\"weight_map\":{\"a\":\"../s1.safetensors\",\"b\":\"s2.safetensors\"}}";
	static const char bad_layout[] = "{\"index\":\"../x.json\",\"files\":[]}";
	const struct {
		const char *layout, *index;
		int status;
		const char *msg;
	} cases[] = {
		{layout, swapped, ALCM_E_CORRUPT, "does not put tensor 'a'"},
		{layout, escape, ALCM_E_UNSUPPORTED, "not a plain *.safetensors file name"},
		{bad_layout, good, ALCM_E_CORRUPT, "not a plain *.json file name"},
		{layout, good, ALCM_OK, ""},
	};
	const char *dir = tu_path("shards");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		alcm_output *o = NULL;
		assert_int_equal(alcm_output_open(&o, dir, ALCM_FILE_SHARDS, ALCM_WRITE_NO_SYNC, NULL),
		                 ALCM_OK);
		assert_int_equal(alcm_output_set_meta(o, "safetensors.shards", cases[c].layout,
		                                      strlen(cases[c].layout)), ALCM_OK);
		assert_int_equal(alcm_output_set_meta(o, "safetensors.index", cases[c].index,
		                                      strlen(cases[c].index)), ALCM_OK);
		int st = alcm_output_plan(o, t, 2);
		assert_int_equal(st, cases[c].status);
		if (st) {
			if (!strstr(alcm_output_detail(o), cases[c].msg))
				fail_msg("'%s' lacks '%s'", alcm_output_detail(o), cases[c].msg);
			struct stat sb;
			assert_int_not_equal(stat(dir, &sb), 0); /* no directory made */
		} else {
			assert_int_equal(alcm_output_write(o, &t[0]), ALCM_OK);
			assert_int_equal(alcm_output_write(o, &t[1]), ALCM_OK);
			assert_int_equal(alcm_output_commit(o), ALCM_OK);
		}
		alcm_output_free(o);
	}
	/* what was written reads back as the same set, records and all */
	alcm_input *in = NULL;
	assert_int_equal(alcm_input_open(&in, dir, NULL, NULL), ALCM_OK);
	assert_int_equal(alcm_input_format(in), ALCM_FILE_SHARDS);
	const char *k;
	const uint8_t *v;
	size_t vl;
	assert_int_equal(alcm_input_meta_count(in), 2);
	assert_int_equal(alcm_input_meta(in, 0, &k, &v, &vl), ALCM_OK);
	assert_string_equal(k, "safetensors.index");
	assert_int_equal(vl, strlen(good));
	assert_memory_equal(v, good, vl);
	assert_int_equal(alcm_input_meta(in, 1, &k, &v, &vl), ALCM_OK);
	assert_string_equal(k, "safetensors.shards");
	assert_int_equal(vl, strlen(layout));
	assert_memory_equal(v, layout, vl);
	for (int i = 0; i < 2; i++) {
		alcm_tensor r;
		int has;
		assert_int_equal(alcm_input_next(in, &r, &has), ALCM_OK);
		assert_int_equal(has, 1);
		assert_int_equal(r.name[0], "ab"[i]);
	}
	alcm_input_free(in);
	/* an index in memory has no directory to find its shards in */
	assert_int_equal(alcm_input_open_memory(&in, good, strlen(good), 0, "i.json", NULL, NULL),
	                 ALCM_E_UNSUPPORTED);
	alcm_input_free(in);
}

static void test_formats(void **state)
{
	(void)state;
	assert_int_equal(alcm_format_from_extension("m.pt"), ALCM_FILE_PT);
	assert_int_equal(alcm_format_from_extension("m.PTH"), ALCM_FILE_PT);
	assert_int_equal(alcm_format_from_extension("pytorch_model.bin"), ALCM_FILE_PT);
	assert_int_equal(alcm_format_from_extension("model.safetensors.index.json"),
	                 ALCM_FILE_SHARDS);
	assert_string_equal(alcm_format_name(ALCM_FILE_PT), "pt");
	assert_string_equal(alcm_format_name(ALCM_FILE_SHARDS), "shards");
	static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46};
	assert_int_equal(alcm_detect_format(legacy, sizeof(legacy)), ALCM_FILE_PT);
	assert_int_equal(alcm_detect_format("{\"weight_map\"", 13), ALCM_FILE_SHARDS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_views),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_alias_copies),
		cmocka_unit_test(test_safetensors_metadata),
		cmocka_unit_test(test_shards_out),
		cmocka_unit_test(test_formats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
