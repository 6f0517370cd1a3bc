/*
 * The container test vectors of spec/vectors/: each is rebuilt by make_vectors.c and must
 * equal the checked-in file byte for byte; each checked-in file must give the result its
 * manifest line names; and the spec must show each one's hex dump as it is.
 * ALCM_UPDATE_VECTORS=1 rewrites the checked-in files instead of comparing them.
 */
#define ALCM_VECTORS_NO_MAIN
#include "../spec/vectors/make_vectors.c"

#include "testutil.h"

#include <dirent.h>

#define VEC_DIR ALCM_SOURCE_DIR "/spec/vectors"
#define SPEC_PATH ALCM_SOURCE_DIR "/spec/alcm-format.md"

static int updating(void)
{
	const char *u = getenv("ALCM_UPDATE_VECTORS");
	return u && *u && strcmp(u, "0") != 0;
}

static const char *scratch_dir(void)
{
	const char *d = tu_path("vectors");
	mkdir(d, 0755);
	return d;
}

/* The chapter 9 text for the spec: one subsection per vector with its dump. */
static void write_chapter(const char *path)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < MV_COUNT; i++) {
		char vp[4096];
		size_t n;
		snprintf(vp, sizeof(vp), "%s/%s", VEC_DIR, mv_vectors[i].name);
		uint8_t *p = tu_read_file(vp, &n);
		assert_non_null(p);
		char *dump = mv_xxd(p, n);
		const mv_vector *v = &mv_vectors[i];
		fprintf(f, "#### %s (%zu bytes)\n\n%s\n\n", v->name, n, v->what);
		if (strcmp(v->stage, "decode") == 0 && v->status == ALCM_OK)
			fprintf(f, "Expected: opens, verifies and decodes to `%s` (each tensor's bytes in "
			        "hex).\n\n", v->expect);
		else if (strcmp(v->stage, "decode") == 0)
			fprintf(f, "Expected: opens and verifies; decoding is refused, class **%s**; the "
			        "message names `%s`.\n\n", mv_status_name(v->status), v->expect);
		else if (v->status == ALCM_OK)
			fprintf(f, "Expected: opens and verifies; `%s`.\n\n", v->expect);
		else
			fprintf(f, "Expected: refused at %s, class **%s**; the message names `%s`.\n\n",
			        strcmp(v->stage, "open") == 0 ? "open" : "verification",
			        mv_status_name(v->status), v->expect);
		fprintf(f, "```\n%s```\n\n", dump);
		free(dump);
		free(p);
	}
	fclose(f);
}

static void test_regenerate(void **state)
{
	(void)state;
	const char *scratch = scratch_dir();
	if (updating()) {
		char chapter[4200];
		assert_int_equal(mv_make_all(VEC_DIR, scratch), 0);
		snprintf(chapter, sizeof(chapter), "%s/vectors-chapter.md", scratch);
		write_chapter(chapter);
		print_message("vectors rewritten in %s; chapter 9 dumps in %s\n", VEC_DIR, chapter);
		return;
	}
	assert_int_equal(mv_make_all(scratch, scratch), 0);
	static const char *extra[] = {"expected.txt"};
	for (size_t i = 0; i < MV_COUNT + 1; i++) {
		const char *name = i < MV_COUNT ? mv_vectors[i].name : extra[i - MV_COUNT];
		char a[4200], b[4200];
		size_t na, nb;
		snprintf(a, sizeof(a), "%s/%s", scratch, name);
		snprintf(b, sizeof(b), "%s/%s", VEC_DIR, name);
		uint8_t *pa = tu_read_file(a, &na), *pb = tu_read_file(b, &nb);
		if (!pb)
			fail_msg("%s is missing: run ALCM_UPDATE_VECTORS=1 test_vectors", b);
		if (na != nb || memcmp(pa, pb, na) != 0)
			fail_msg("%s differs from what make_vectors.c builds now (%zu vs %zu bytes)", b, nb,
			         na);
		free(pa);
		free(pb);
		unlink(a);
	}
	rmdir(scratch);
}

typedef struct manifest_line {
	char name[128], stage[16], status[16], expect[256];
} manifest_line;

/* Parses expected.txt. @return the number of lines read into out. */
static size_t read_manifest(manifest_line *out, size_t cap)
{
	size_t len, n = 0;
	char *text = (char *)tu_read_file(VEC_DIR "/expected.txt", &len);
	assert_non_null(text);
	text = realloc(text, len + 1);
	text[len] = '\0';
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		assert_true(n < cap);
		manifest_line *m = &out[n++];
		assert_int_equal(sscanf(line, "%127[^\t]\t%15[^\t]\t%15[^\t]\t%255[^\n]", m->name,
		                        m->stage, m->status, m->expect),
		                 4);
	}
	free(text);
	return n;
}

static int status_of(const char *name)
{
	static const int all[] = {ALCM_OK, ALCM_E_CORRUPT, ALCM_E_DIGEST, ALCM_E_LIMIT,
	                          ALCM_E_UNSUPPORTED, ALCM_E_NOTFOUND};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(mv_status_name(all[i]), name) == 0)
			return all[i];
	fail_msg("unknown status '%s' in expected.txt", name);
	return -1;
}

/* A "decode" vector: every tensor decodes to the listed bytes, or the first failure has the
 * listed class and message. */
static void check_decode(const manifest_line *m, alcm_reader *r, int want)
{
	alcm_archive *a = NULL;
	char got[256] = "";
	size_t n = 0;
	int st = alcm_archive_open(&a, r, NULL);
	for (size_t i = 0; !st && i < alcm_archive_tensor_count(a); i++) {
		alcm_tensor_info ti;
		uint8_t out[64];
		assert_int_equal(alcm_archive_tensor_info(a, i, &ti), ALCM_OK);
		assert_true(ti.raw_bytes <= sizeof(out));
		st = alcm_archive_decode(a, i, out, sizeof(out));
		if (st)
			break;
		n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%.*s=", n ? " " : "",
		                      (int)ti.name_len, ti.name);
		for (uint64_t k = 0; k < ti.raw_bytes; k++)
			n += (size_t)snprintf(got + n, sizeof(got) - n, "%02x", out[k]);
	}
	const char *detail = a ? alcm_archive_detail(a) : "";
	if (st != want)
		fail_msg("%s: decoding gave %s (%s), expected %s", m->name, mv_status_name(st), detail,
		         m->status);
	if (st ? !strstr(detail, m->expect) : strcmp(got, m->expect) != 0)
		fail_msg("%s: decoding gave '%s', expected '%s'", m->name, st ? detail : got,
		         m->expect);
	alcm_archive_free(a);
}

static void check_vector(const manifest_line *m, const char *path, const uint8_t *mem,
                         size_t len)
{
	alcm_reader *r = NULL;
	int st = mem ? alcm_reader_open_memory(&r, mem, len, m->name, NULL, NULL, 0)
	             : alcm_reader_open_file(&r, path, NULL, NULL, 0);
	int want = status_of(m->status);
	const char *stage = "open";
	if (!st) {
		stage = "verify";
		st = alcm_reader_verify(r, NULL);
	}
	if (!st)
		stage = "ok";
	if (!st && strcmp(m->stage, "decode") == 0) {
		check_decode(m, r, want);
		alcm_reader_free(r);
		return;
	}
	if (strcmp(stage, m->stage) != 0 || st != want)
		fail_msg("%s: %s gave %s (%s), expected %s at %s", m->name, stage, mv_status_name(st),
		         alcm_reader_detail(r), m->status, m->stage);
	if (st) {
		if (!strstr(alcm_reader_detail(r), m->expect))
			fail_msg("%s: detail '%s' lacks '%s'", m->name, alcm_reader_detail(r), m->expect);
	} else {
		char got[256];
		snprintf(got, sizeof(got), "generation=%llu tail=%llu sections=%u",
		         (unsigned long long)alcm_reader_generation(r),
		         (unsigned long long)alcm_reader_tail_bytes(r), alcm_reader_section_count(r));
		if (strcmp(got, m->expect) != 0)
			fail_msg("%s: %s, expected %s", m->name, got, m->expect);
	}
	alcm_reader_free(r);
}

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static void test_checked_in_vectors(void **state)
{
	(void)state;
	manifest_line lines[64];
	size_t n = read_manifest(lines, 64);
	assert_int_equal(n, MV_COUNT);
	int ok = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4200];
		size_t len;
		snprintf(path, sizeof(path), "%s/%.127s", VEC_DIR, lines[i].name);
		uint8_t *p = tu_read_file(path, &len);
		if (!p)
			fail_msg("%s is listed in expected.txt but missing", path);
		check_vector(&lines[i], path, NULL, 0);
		check_vector(&lines[i], path, p, len);
		free(p);
		if (strcmp(lines[i].stage, "ok") == 0)
			ok++;
		else
			bad++;
	}
	assert_true(ok >= 2 && bad >= 3);
	/* Every .alcm in the directory is listed. */
	DIR *d = opendir(VEC_DIR);
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (!has_suffix(de->d_name, ".alcm"))
			continue;
		int found = 0;
		for (size_t i = 0; i < n; i++)
			found |= strcmp(lines[i].name, de->d_name) == 0;
		if (!found)
			fail_msg("%s/%s is not listed in expected.txt", VEC_DIR, de->d_name);
	}
	closedir(d);
}

/* The spec shows every vector's dump exactly as the file is. */
static void test_spec_dumps(void **state)
{
	(void)state;
	size_t slen;
	char *spec = (char *)tu_read_file(SPEC_PATH, &slen);
	assert_non_null(spec);
	spec = realloc(spec, slen + 1);
	spec[slen] = '\0';
	for (size_t i = 0; i < MV_COUNT; i++) {
		char path[4200], head[256];
		size_t n;
		snprintf(path, sizeof(path), "%s/%s", VEC_DIR, mv_vectors[i].name);
		uint8_t *p = tu_read_file(path, &n);
		assert_non_null(p);
		char *dump = mv_xxd(p, n);
		snprintf(head, sizeof(head), "#### %s (%zu bytes)", mv_vectors[i].name, n);
		if (!strstr(spec, head))
			fail_msg("spec/alcm-format.md lacks the heading '%s'", head);
		if (!strstr(spec, dump))
			fail_msg("spec/alcm-format.md lacks the current dump of %s", mv_vectors[i].name);
		free(dump);
		free(p);
	}
	free(spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regenerate),
		cmocka_unit_test(test_checked_in_vectors),
		cmocka_unit_test(test_spec_dumps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
