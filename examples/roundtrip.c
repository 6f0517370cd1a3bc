/* Compress one float array in memory and back: the short way for one tensor.
 *
 *     roundtrip [MAX_ERROR]
 *
 * Lossless by default (the array comes back bit for bit); with MAX_ERROR every value comes
 * back within it. Prints the sizes and the largest error. */
#include <alcm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 256
#define COLS 512

int main(int argc, char **argv)
{
	static float w[ROWS * COLS], back[ROWS * COLS];
	for (int i = 0; i < ROWS * COLS; i++) /* a stand-in for trained weights */
		w[i] = (float)(0.02 * sin(0.37 * i) * cos(0.011 * i));

	alcm_tensor t = {.name = "w", .name_len = 1, .dtype = ALCM_DTYPE_F32, .ndim = 2,
	                 .shape = {ROWS, COLS}, .data = w, .nbytes = sizeof(w)};
	alcm_pack_options opt;
	alcm_pack_options_default(&opt);
	if (argc > 1) {
		opt.mode = ALCM_MODE_MAX_ERROR;
		opt.bound = atof(argv[1]);
	}
	size_t cap = alcm_tensor_compress_bound(&t, &opt), len = 0;
	void *frame = malloc(cap);
	int st = frame ? alcm_tensor_compress(frame, cap, &len, &t, &opt) : ALCM_E_NOMEM;
	if (st == ALCM_OK)
		st = alcm_tensor_decompress(back, sizeof(back), frame, len, NULL);
	if (st != ALCM_OK) {
		fprintf(stderr, "roundtrip: %s\n", alcm_strerror(st));
		free(frame);
		return 1;
	}
	double err = 0;
	for (int i = 0; i < ROWS * COLS; i++)
		err = fmax(err, fabs((double)w[i] - back[i]));
	printf("%zu bytes -> %zu bytes (%.2fx), largest error %g, %s\n", sizeof(w), len,
	       (double)sizeof(w) / (double)len, err,
	       memcmp(w, back, sizeof(w)) == 0 ? "bit-exact" : "within the bound");
	free(frame);
	return 0;
}
