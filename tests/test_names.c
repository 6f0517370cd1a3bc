/* Tensor names in outputs (spec 6.3, "Names"): which names are safe paths, .npz refusing the
 * others unless asked ("zip slip"), .safetensors refusing what its header cannot hold. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_name_safe_rules(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		size_t len; /* 0: strlen */
		int safe;
	} cases[] = {
		{"w", 0, 1},
		{"model/layer.0/kernel:0", 0, 1},
		{"a..b/c.d", 0, 1},
		{"...", 0, 1},
		{"w:0", 0, 1},
		{"x:/y", 0, 0},      /* a letter and a colon as the first component: a drive */
		{"xy:/z", 0, 1},
		{"Gewicht \xc3\xa4", 0, 1},
		{"bin\xff\x01name", 0, 1}, /* not UTF-8, a control byte: no way out of a directory */
		{"", 0, 1},
		{"../../x", 0, 0},
		{"a/../b", 0, 0},
		{"..", 0, 0},
		{"a/..", 0, 0},
		{"/abs/x", 0, 0},
		{"/", 0, 0},
		{"./x", 0, 0},
		{"a/./b", 0, 0},
		{"a//b", 0, 0},
		{"a/", 0, 0},
		{"a\\..\\b", 0, 0},
		{"C:", 0, 0},
		{"C:/Windows", 0, 0},
		{"a\0/../../etc", 12, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].name);
		const char *why = "unset";
		int safe = alcm_name_safe(cases[i].name, len, &why);
		if (safe != cases[i].safe)
			fail_msg("case %zu ('%s'): safe %d, want %d", i, cases[i].name, safe, cases[i].safe);
		assert_true(safe ? why == NULL : why != NULL && *why);
	}
}

static alcm_tensor one(const char *name, size_t len, const void *data)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = name;
	t.name_len = len;
	t.dtype = ALCM_DTYPE_U8;
	t.ndim = 1;
	t.shape[0] = 1;
	t.data = data;
	t.nbytes = 1;
	return t;
}

/* Writes the tensor to a fresh output of `format`: the status of plan (when `plan`) or write,
 * then of commit; the file exists only after a commit. */
static int write_one(int format, unsigned flags, const alcm_tensor *t, int plan, const char *p)
{
	alcm_output *o = NULL;
	unlink(p);
	int st = alcm_output_open(&o, p, format, flags | ALCM_WRITE_NO_SYNC, NULL);
	if (!st && plan)
		st = alcm_output_plan(o, t, 1);
	if (!st)
		st = alcm_output_write(o, t);
	if (!st)
		st = alcm_output_commit(o);
	alcm_output_free(o);
	return st;
}

static void test_npz_refuses_unsafe_names(void **state)
{
	(void)state;
	const char *p = tu_path("names.npz");
	const uint8_t v = 7;
	const char *bad[] = {"../../x", "/etc/x", "a//b", "C:/x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (int plan = 0; plan < 2; plan++) {
			alcm_tensor t = one(bad[i], strlen(bad[i]), &v);
			assert_int_equal(write_one(ALCM_FILE_NPZ, 0, &t, plan, p), ALCM_E_UNSUPPORTED);
			assert_false(tu_file_exists(p));
			/* Asked for: written byte for byte, and read back so. */
			assert_int_equal(write_one(ALCM_FILE_NPZ, ALCM_WRITE_UNSAFE_NAMES, &t, plan, p),
			                 ALCM_OK);
			alcm_input *in = NULL;
			alcm_tensor r;
			int has;
			assert_int_equal(alcm_input_open(&in, p, NULL, NULL), ALCM_OK);
			assert_int_equal(alcm_input_next(in, &r, &has), ALCM_OK);
			assert_true(has);
			assert_int_equal(r.name_len, strlen(bad[i]));
			assert_memory_equal(r.name, bad[i], r.name_len);
			alcm_input_free(in);
		}
	/* Other formats: .npy writes no name; .safetensors names are keys, not paths. */
	alcm_tensor t = one("../../x", 7, &v);
	assert_int_equal(write_one(ALCM_FILE_NPY, 0, &t, 0, tu_path("names.npy")), ALCM_OK);
	assert_int_equal(write_one(ALCM_FILE_SAFETENSORS, 0, &t, 1, tu_path("names.safetensors")),
	                 ALCM_OK);
	unlink(p);
	unlink(tu_path("names.npy"));
	unlink(tu_path("names.safetensors"));
}

/* "__metadata__" is the header's metadata entry: a tensor of that name would be read back as
 * metadata (or refused), so the writer refuses it. */
static void test_safetensors_metadata_name(void **state)
{
	(void)state;
	const char *p = tu_path("meta.safetensors");
	const uint8_t v = 1;
	alcm_tensor t = one("__metadata__", 12, &v);
	assert_int_equal(write_one(ALCM_FILE_SAFETENSORS, ALCM_WRITE_UNSAFE_NAMES, &t, 1, p),
	                 ALCM_E_UNSUPPORTED);
	assert_false(tu_file_exists(p));
	t = one("__metadata__x", 13, &v);
	assert_int_equal(write_one(ALCM_FILE_SAFETENSORS, 0, &t, 1, p), ALCM_OK);
	unlink(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_safe_rules),
		cmocka_unit_test(test_npz_refuses_unsafe_names),
		cmocka_unit_test(test_safetensors_metadata_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
