/*
 * Seeds of fuzz_tframe: compact tensor frames of every chunk coding (planes, palette, sparse,
 * each lossy mode, pruning, several chunks, no elements, a scalar, modelled symbols), each
 * ending with an options byte; and a few tensors for the round-trip mode (options 0x08).
 * usage: alcm-fuzz-corpus-tframe OUTDIR   (writes OUTDIR/tframe/)
 */
#include "alcm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[4096];

static void put(const char *name, const void *p, size_t n, unsigned opt)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s-o%02x", dir, name, opt);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fputc((int)opt, f) == EOF || fclose(f)) {
		fprintf(stderr, "alcm-fuzz-corpus-tframe: cannot write %s\n", path);
		exit(1);
	}
}

static void frame(const char *name, int dtype, uint32_t ndim, const uint64_t *shape,
                  const void *data, int mode, double bound, double prune, uint64_t chunk)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = dtype;
	t.ndim = ndim;
	uint64_t n = 1;
	for (uint32_t i = 0; i < ndim; i++)
		n *= (t.shape[i] = shape[i]);
	t.data = data;
	t.nbytes = n * alcm_dtype_size(dtype);
	alcm_pack_options o;
	alcm_pack_options_default(&o);
	o.mode = mode;
	o.bound = bound;
	o.bits = 6;
	o.prune = prune;
	o.chunk_bytes = chunk;
	size_t cap = alcm_tensor_compress_bound(&t, &o), len;
	uint8_t *f = malloc(cap);
	if (!f || alcm_tensor_compress(f, cap, &len, &t, &o) != ALCM_OK) {
		fprintf(stderr, "alcm-fuzz-corpus-tframe: cannot code %s\n", name);
		exit(1);
	}
	put(name, f, len, 0x00);
	if (mode == 0 && n > 100)
		put(name, f, len, 0x01);
	free(f);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: alcm-fuzz-corpus-tframe OUTDIR\n");
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s/tframe", argv[1]);
	mkdir(argv[1], 0755);
	mkdir(dir, 0755);
	uint64_t seed = 1;
	float g[2048], pal[2048], sp[2048];
	for (int i = 0; i < 2048; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		double u = (double)(seed >> 11) * 0x1p-53;
		g[i] = (float)((u - 0.5) * 0.1);
		pal[i] = (float)((int)(u * 37) - 18) * 0.01f;
		sp[i] = i % 3 ? 0.0f : g[i];
	}
	g[5] = NAN, g[6] = -0.0f, g[7] = INFINITY, g[8] = 1e-40f;
	uint64_t s2[2] = {32, 64}, s1 = 2048, s0 = 0, s3[3] = {4, 8, 16};
	frame("f32-planes", 12, 2, s2, g, 0, 0, 0, 4 << 20);
	frame("f32-palette", 12, 1, &s1, pal, 0, 0, 0, 4 << 20);
	frame("f32-sparse", 12, 1, &s1, sp, 0, 0, 0, 4 << 20);
	frame("f32-chunks", 12, 3, s3, g, 0, 0, 0, 4096);
	frame("f32-empty", 12, 1, &s0, g, 0, 0, 0, 4 << 20);
	frame("f32-scalar", 12, 0, NULL, g, 0, 0, 0, 4 << 20);
	frame("u8-raw", 2, 1, &s1, g, 0, 0, 0, 4 << 20);
	frame("i16-planes", 5, 2, s2, pal, 0, 0, 0, 4 << 20);
	frame("f32-maxerr", 12, 2, s2, g, 1, 1e-3, 0, 4 << 20);
	frame("f32-relerr-prune", 12, 2, s2, g, 2, 1e-2, 0.2, 4096);
	frame("f32-snr", 12, 2, s2, g, 3, 30, 0, 4 << 20);
	frame("f32-bits", 12, 2, s2, g, 4, 0, 0.1, 4096);
	frame("f64-maxerr", 13, 1, &s1, g, 1, 1e-4, 0, 4 << 20);
	/* Modelled symbols (QDAT coding 16, spec 6.5.6): chunks of 4096 elements, so that the
	 * modelled coding is kept: rows of scales 2^0 .. 2^7 (classes on axis 0, raw bits),
	 * with pruning (a mask), in bits mode over two chunks (the second not at element 0),
	 * and values on a grid coarser than the step (a palette). */
	static float rows[8192], grid[4096];
	for (int i = 0; i < 8192; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		double u = (double)(seed >> 11) * 0x1p-53 - 0.5;
		rows[i] = (float)(u * (double)(1 << (i / 128 % 8)));
		if (i < 4096)
			grid[i] = (float)((int)(u * 24) * 0.125);
	}
	uint64_t m2[2] = {32, 128}, m3[2] = {64, 128};
	frame("f32-maxerr-modelled", 12, 2, m2, rows, 1, 0.01, 0, 4 << 20);
	frame("f32-relerr-prune-modelled", 12, 2, m3, rows, 2, 0.02, 0.2, 4 << 20);
	frame("f32-bits-modelled-chunks", 12, 2, m3, rows, 4, 0, 0, 16384);
	frame("f32-grid-palette-modelled", 12, 2, m2, grid, 1, 0.001, 0, 4 << 20);
	/* round-trip seeds: dtype byte, mode/prune byte, bound byte, then elements */
	uint8_t rt[3 + 1024];
	memcpy(rt + 3, g, 1024);
	rt[0] = 0x10, rt[1] = 1, rt[2] = 30; /* float32, 3 rows, max-error 2^-10 */
	put("rt-f32-maxerr", rt, sizeof(rt), 0x08);
	rt[0] = 0x09, rt[1] = 2 | 0x10, rt[2] = 5; /* float16, 2 rows, rel-error, pruning */
	put("rt-f16-relerr", rt, sizeof(rt), 0x08);
	rt[0] = 0x06, rt[1] = 0, rt[2] = 0; /* uint32 lossless */
	put("rt-u32", rt, sizeof(rt), 0x08);
	return 0;
}
