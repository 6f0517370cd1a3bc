/*
 * Checks fuzz_fixup_digests(): a seed archive with one payload byte or one table tag
 * changed must fail to verify as it is, and open and verify cleanly once fixed up. If the
 * fix-up broke, the fuzzers would silently stop reaching the code behind the digests.
 *
 *   fuzz_fixup_check DIR    (DIR: fuzz/corpus/unpack; each file ends with an options byte)
 */
#include "fuzz_common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* @return 1 on failure, 0 when checked, -1 when the seed is not a valid archive (the
 * corpus also holds the malformed spec vectors). */
static int check(const char *path, uint8_t *buf, size_t len)
{
	alcm_reader *r = NULL;
	uint32_t badi;
	int st = alcm_reader_open_memory(&r, buf, len, path, NULL, NULL, 0);
	if (!st)
		st = alcm_reader_verify(r, &badi);
	uint32_t n = st ? 0 : alcm_reader_section_count(r);
	alcm_section_info *si = calloc(n ? n : 1, sizeof(*si));
	for (uint32_t i = 0; i < n; i++)
		alcm_reader_section_info(r, i, &si[i]);
	alcm_reader_free(r);
	if (st) {
		free(si);
		return -1;
	}
	/* The committed table follows the last section. */
	uint64_t toff = n ? (si[n - 1].offset + si[n - 1].length + 63) & ~(uint64_t)63 : 192;
	int bad = 0;
	uint8_t *m = malloc(len);
	for (uint32_t i = 0; i < n && !bad; i++) {
		for (int what = 0; what < 2; what++) {
			if (what == 0 && si[i].length == 0)
				continue;
			memcpy(m, buf, len);
			if (what == 0) {
				m[si[i].offset + si[i].length / 2] ^= 0x5a;
			} else {
				m[toff + 16 + 64 * (uint64_t)i + 8] ^= 0x01;
			}
			r = NULL;
			st = alcm_reader_open_memory(&r, m, len, path, NULL, NULL, 0);
			if (!st)
				st = alcm_reader_verify(r, &badi);
			alcm_reader_free(r);
			if (st != ALCM_E_DIGEST) {
				fprintf(stderr, "%s: section %u, mutation %d not caught by a digest (%s)\n",
				        path, i, what, alcm_strerror(st));
				bad = 1;
			}
			fuzz_fixup_digests(m, len);
			r = NULL;
			st = alcm_reader_open_memory(&r, m, len, path, NULL, NULL, 0);
			if (!st)
				st = alcm_reader_verify(r, &badi);
			alcm_reader_free(r);
			if (st != ALCM_OK) {
				fprintf(stderr, "%s: section %u, mutation %d: fixed up, still %s\n", path, i,
				        what, alcm_strerror(st));
				bad = 1;
			}
		}
	}
	free(m);
	free(si);
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_fixup_check DIR\n");
		return 2;
	}
	DIR *d = opendir(argv[1]);
	if (!d) {
		perror(argv[1]);
		return 1;
	}
	int bad = 0, files = 0, skipped = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		uint8_t *buf = malloc(1 << 20);
		size_t len = fread(buf, 1, 1 << 20, f);
		fclose(f);
		if (len > 0) {
			int rc = check(path, buf, len - 1); /* the last byte is the options byte */
			if (rc < 0)
				skipped++;
			else
				files++;
			bad |= rc > 0;
		}
		free(buf);
	}
	closedir(d);
	printf("fuzz_fixup_check: %d archives checked, %d invalid seeds skipped, %s\n", files,
	       skipped, bad ? "FAILED" : "fix-up ok");
	return bad || files == 0;
}
