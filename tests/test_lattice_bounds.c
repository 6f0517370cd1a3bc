/* alcm_quant_lattice() (spec 6.5.11) on a bound far above the lattice's spacing, which a user
 * may name for any input file: it returns at once (the plain grid holds everything in one
 * cell, nothing beats it), without converting 2b / d past int64_t's range (undefined; UBSan
 * stops) and without walking m down from 2^20 with 64 alignments each (minutes). */
#include "codec_internal.h"
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

enum { N = 8192 };

static void on_alarm(int sig)
{
	(void)sig;
	static const char m[] = "test_lattice_bounds: alcm_quant_lattice() took too long (alarm)\n";
	ssize_t r = write(2, m, sizeof(m) - 1);
	(void)r;
	_exit(1);
}

static void test_huge_bound(void **state)
{
	(void)state;
	float *x = malloc(N * sizeof(float));
	assert_non_null(x);
	for (int i = 0; i < N; i++)
		x[i] = (float)(0.1 * (double)((i * 37) % 255 - 127)); /* 255 points of spacing 0.1 */
	double step = 0, off = 0;
	/* A bound the lattice serves: found (m = 3 points a cell), so the calls below test
	 * a function that works. */
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, N, 0.12, &step, &off), 1);
	assert_true(step > 0.29 && step < 0.31);
	signal(SIGALRM, on_alarm);
	alarm(60);
	const double big[] = {1e6, 1e12, 1e30, 1e300};
	for (size_t k = 0; k < sizeof(big) / sizeof(big[0]); k++) {
		step = off = 0;
		assert_int_equal(alcm_quant_lattice((const uint8_t *)x, N, big[k], &step, &off), 0);
		assert_true(step == 0 && off == 0);
	}
	alarm(0);
	free(x);
}

/* Two clusters of 128 lattice points far apart (spacing 2^-10, 999,000 points between):
 * at a bound of 400 the plain grid holds them in two cells and no width of lattice cell does
 * better, so every width from 2^20 down was tried with 64 alignments (35 s for 32 KB). */
static void test_two_clusters(void **state)
{
	(void)state;
	float *x = malloc(N * sizeof(float));
	assert_non_null(x);
	for (int i = 0; i < N; i++)
		x[i] = (float)((double)((i * 37) % 128 + (i < N / 2 ? 0 : 999000)) / 1024);
	double step = 0, off = 0;
	signal(SIGALRM, on_alarm);
	alarm(10);
	assert_int_equal(alcm_quant_lattice((const uint8_t *)x, N, 400, &step, &off), 0);
	alarm(0);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_huge_bound),
		cmocka_unit_test(test_two_clusters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
