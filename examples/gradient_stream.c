/* Append gradient frames to a stream archive, as a training loop would.
 *
 *     gradient_stream grads.alcm FRAMES
 *
 * Each frame is coded in max-error mode (1e-3) with error feedback: the coding error of frame
 * t is added to frame t+1 before it is coded, so what the frames lose does not accumulate
 * over the run (a frame may then differ from that step's gradients by more than 1e-3; the
 * running sum does not drift). Every frame is committed on its own: a crash keeps the frames
 * before it. Prints each frame's ratio and SNR. */
#include <alcm.h>

#include <stdio.h>
#include <stdlib.h>

#define N 65536

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: gradient_stream ARCHIVE FRAMES\n");
		return 2;
	}
	int frames = atoi(argv[2]);
	static float g[N];
	uint64_t shape[2] = {256, 256};
	alcm_tensor t = {.name = "layer1.grad", .name_len = 11, .dtype = ALCM_DTYPE_F32,
	                 .ndim = 2, .data = g, .nbytes = sizeof(g)};
	t.shape[0] = shape[0];
	t.shape[1] = shape[1];

	alcm_stream_options so;
	alcm_stream_options_default(&so);
	so.pack.mode = ALCM_MODE_MAX_ERROR;
	so.pack.bound = 1e-3;
	so.error_feedback = 1;
	alcm_stream *s = NULL;
	int st = alcm_stream_new(&s, &so, NULL);
	for (int f = 0; f < frames && st == ALCM_OK; f++) {
		uint64_t z = 0x9e3779b97f4a7c15u * (uint64_t)(f + 1);
		for (int i = 0; i < N; i++) { /* a stand-in for real gradients: noise, row-scaled */
			z ^= z << 13, z ^= z >> 7, z ^= z << 17;
			double u = (double)(z >> 11) * 0x1p-53 - 0.5;
			g[i] = (float)(0.02 * u * (1 + (i / 256) % 8));
		}
		alcm_writer *w = NULL;
		st = f == 0 ? alcm_writer_open_file(&w, argv[1], ALCM_WRITE_STREAM | ALCM_WRITE_OVERWRITE,
		                                    NULL)
		            : alcm_writer_open_append(&w, argv[1], NULL, NULL, 0);
		alcm_frame_report rep;
		if (st == ALCM_OK)
			st = alcm_stream_encode(s, w, &t, 1, &rep);
		if (st == ALCM_OK)
			st = alcm_writer_commit(w);
		if (st == ALCM_OK)
			printf("frame %u: %.2fx, snr %.1f dB\n", rep.frame, rep.ratio, rep.snr_db);
		else
			fprintf(stderr, "gradient_stream: %s: %s\n", alcm_strerror(st),
			        w ? alcm_writer_detail(w) : alcm_stream_detail(s));
		alcm_writer_free(w);
	}
	alcm_stream_free(s);
	return st == ALCM_OK ? 0 : 1;
}
