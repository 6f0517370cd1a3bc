/* Decode one tensor of a large archive without reading the others.
 *
 *     random_access model.alcm NAME
 *
 * Opening reads the header and the section table; decoding reads that tensor's sections only,
 * each checked against its digest. Prints the tensor's dtype, shape and first values. */
#include <alcm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: random_access ARCHIVE NAME\n");
		return 2;
	}
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	void *buf = NULL;
	size_t i;
	alcm_tensor_info ti;
	int st = alcm_reader_open_file(&r, argv[1], NULL, NULL, 0);
	if (st == ALCM_OK)
		st = alcm_archive_open(&a, r, NULL);
	if (st == ALCM_OK)
		st = alcm_archive_find(a, argv[2], strlen(argv[2]), &i);
	if (st == ALCM_OK)
		st = alcm_archive_tensor_info(a, i, &ti);
	if (st == ALCM_OK && !(buf = malloc(ti.raw_bytes ? ti.raw_bytes : 1)))
		st = ALCM_E_NOMEM;
	if (st == ALCM_OK)
		st = alcm_archive_decode(a, i, buf, ti.raw_bytes);
	if (st == ALCM_E_NOTFOUND) {
		fprintf(stderr, "random_access: no tensor '%s' in '%s'\n", argv[2], argv[1]);
	} else if (st != ALCM_OK) {
		fprintf(stderr, "random_access: %s: %s\n", alcm_strerror(st),
		        a ? alcm_archive_detail(a) : alcm_reader_detail(r));
	} else {
		printf("%s %s [", argv[2], alcm_dtype_name(ti.dtype));
		for (uint32_t d = 0; d < ti.ndim; d++)
			printf("%s%llu", d ? ", " : "", (unsigned long long)ti.shape[d]);
		printf("]");
		if (ti.dtype == ALCM_DTYPE_F32)
			for (uint64_t k = 0; k < ti.elements && k < 4; k++)
				printf(" %g", (double)((const float *)buf)[k]);
		printf("\n");
	}
	free(buf);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st == ALCM_OK ? 0 : 1;
}
