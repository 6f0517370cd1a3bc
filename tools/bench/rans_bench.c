/*
 * alcm-rans-bench: alcm's rANS coder (lib/rans.c) against htscodecs' rANS Nx16 order 0
 * (CRAM 3.1, Debian's libhtscodecs-dev), on the same token streams: coded size and speed,
 * median of 7 rounds of thread CPU time. The streams are zigzag codes of Laplace symbols of
 * a few scales (one static table each, so that both coders do the same job; alcm's coder
 * can also switch tables per token, which htscodecs' cannot). htscodecs' encode time
 * includes its histogram and table; alcm's table is made before (the chunk coder counts
 * while it tokenises).
 *
 *   alcm-rans-bench [SYMBOLS]          (default 1M)
 */
#include "symcode_internal.h"

#include <htscodecs/rANS_static4x16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#define ROUNDS 7

static double med(double *v)
{
	qsort(v, ROUNDS, sizeof(double), cmp);
	return v[ROUNDS / 2];
}

static uint64_t rng = 0x1234567;

static double unif(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : (size_t)1 << 20;
	if (n < 1024 || n > ((size_t)1 << 30)) {
		fprintf(stderr, "alcm-rans-bench: SYMBOLS must be in [1024, 2^30]\n");
		return 2;
	}
	uint8_t *in = malloc(n), *dec = malloc(n), *out = malloc(alcm_rans_bound(n) + n + 4096);
	alcm_rans_etab *et = malloc(sizeof(*et));
	alcm_rans_dtab *dt = malloc(sizeof(*dt));
	if (!in || !dec || !out || !et || !dt)
		return 1;
	printf("| stream | entropy bits/sym | coder | bits/sym | encode MB/s | decode MB/s |\n");
	printf("|---|---:|---|---:|---:|---:|\n");
	const double scales[] = {0.3, 3, 30};
	for (size_t k = 0; k < 3; k++) {
		uint64_t cnt[256] = {0};
		for (size_t i = 0; i < n; i++) {
			int q = (int)(-scales[k] * log(unif()) + 0.5);
			q = unif() < 0.5 ? -q : q;
			unsigned z = (unsigned)((q << 1) ^ (q >> 31));
			in[i] = (uint8_t)(z > 255 ? 255 : z);
			cnt[in[i]]++;
		}
		double h = 0;
		for (int t = 0; t < 256; t++)
			if (cnt[t])
				h -= (double)cnt[t] * log2((double)cnt[t] / (double)n);
		uint32_t f[256];
		alcm_rans_normalize(cnt, 256, f);
		alcm_rans_etab_build(et, f, 256);
		alcm_rans_dtab_build(dt, f, 256);
		const char *names[] = {"alcm (AVX2 where present)", "alcm (portable)",
		                       "htscodecs 4x16 o0", "htscodecs 32x16 o0 (SIMD)"};
		for (int c = 0; c < 4; c++) {
			double te[ROUNDS], td[ROUNDS];
			size_t len = 0;
			int bad = 0;
			alcm_rans_scalar_only = c == 1;
			for (int r = 0; r < ROUNDS; r++) {
				double t0 = cpu_now();
				if (c < 2) {
					len = alcm_rans_encode(out, alcm_rans_bound(n), in, NULL, n, et);
				} else {
					unsigned ol = rans_compress_bound_4x16((unsigned)n, c == 3 ? RANS_ORDER_X32 : 0);
					rans_compress_to_4x16(in, (unsigned)n, out, &ol, c == 3 ? RANS_ORDER_X32 : 0);
					len = ol;
				}
				te[r] = cpu_now() - t0;
				t0 = cpu_now();
				if (c < 2) {
					bad |= alcm_rans_decode(dec, NULL, n, dt, out, len) != ALCM_OK;
				} else {
					unsigned dl = (unsigned)n;
					bad |= !rans_uncompress_to_4x16(out, (unsigned)len, dec, &dl) || dl != n;
				}
				td[r] = cpu_now() - t0;
				bad |= memcmp(dec, in, n) != 0;
			}
			alcm_rans_scalar_only = 0;
			printf("| Laplace %.1f | %.4f | %s | %.4f | %.0f | %.0f |%s\n", scales[k],
			       h / (double)n, names[c], 8.0 * (double)len / (double)n,
			       (double)n / med(te) / 1e6, (double)n / med(td) / 1e6,
			       bad ? " FAILED" : "");
		}
	}
	free(in);
	free(dec);
	free(out);
	free(et);
	free(dt);
	return 0;
}
