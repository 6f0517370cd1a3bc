/* Open an archive from a stranger with tight limits: a program that expects small tensors
 * says so, and a file that claims more is refused before anything is allocated for it.
 *
 *     tight_limits untrusted.alcm MAX_ELEMENTS
 *
 * Exit 0 when every tensor decodes within the limits, 3 when a limit refuses the file (the
 * same file may open with higher limits), 1 for any other refusal. */
#include <alcm.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: tight_limits ARCHIVE MAX_ELEMENTS\n");
		return 2;
	}
	alcm_limits lim;
	alcm_limits_default(&lim);
	lim.max_elements = strtoull(argv[2], NULL, 10);
	lim.max_decoded_bytes = 8 * lim.max_elements;
	lim.max_tensors = 1000;
	lim.max_sections = 4096;
	lim.max_meta_bytes = 1 << 20;
	lim.zstd_window_log_max = 23; /* 8 MiB */

	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	void *buf = NULL;
	int st = alcm_reader_open_file(&r, argv[1], &lim, NULL, 0);
	if (st == ALCM_OK)
		st = alcm_archive_open(&a, r, NULL);
	for (size_t i = 0; st == ALCM_OK && i < alcm_archive_tensor_count(a); i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		void *p = realloc(buf, ti.raw_bytes ? ti.raw_bytes : 1);
		if (!p) {
			st = ALCM_E_NOMEM;
			break;
		}
		buf = p;
		st = alcm_archive_decode(a, i, buf, ti.raw_bytes);
	}
	if (st != ALCM_OK)
		fprintf(stderr, "tight_limits: %s: %s\n", alcm_strerror(st),
		        a ? alcm_archive_detail(a) : alcm_reader_detail(r));
	else
		printf("%zu tensors decoded within the limits\n", alcm_archive_tensor_count(a));
	free(buf);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st == ALCM_OK ? 0 : st == ALCM_E_LIMIT ? 3 : 1;
}
