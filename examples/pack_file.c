/* Pack a tensor file into an archive and back, one call each.
 *
 *     pack_file model.safetensors model.alcm back.safetensors [MAX_ERROR]
 *
 * Lossless (bit-exact) unless MAX_ERROR is given: then every value comes back within it. */
#include <alcm.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: pack_file IN OUT.alcm BACK [MAX_ERROR]\n");
		return 2;
	}
	alcm_pack_options opt;
	alcm_pack_options_default(&opt);
	if (argc == 5) {
		opt.mode = ALCM_MODE_MAX_ERROR;
		opt.bound = atof(argv[4]);
	}
	char why[ALCM_DETAIL_MAX];
	int st = alcm_file_pack(argv[1], argv[2], &opt, ALCM_WRITE_OVERWRITE, why, sizeof(why));
	if (st == ALCM_OK)
		st = alcm_file_unpack(argv[2], argv[3], ALCM_WRITE_OVERWRITE, why, sizeof(why));
	if (st != ALCM_OK) {
		fprintf(stderr, "pack_file: %s: %s\n", alcm_strerror(st), why);
		return 1;
	}
	return 0;
}
