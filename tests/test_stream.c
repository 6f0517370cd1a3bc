/* Gradient streams: frames, error feedback, the CAQ scheduler and resuming. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 4096

static void gradient(float *g, uint64_t *seed, double scale)
{
	for (int i = 0; i < N; i++)
		g[i] = (float)(tu_gauss(seed) * scale);
}

static alcm_tensor tensor_of(float *g)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = "grad";
	t.name_len = 4;
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 2;
	t.shape[0] = 64;
	t.shape[1] = N / 64;
	t.data = g;
	t.nbytes = N * 4;
	return t;
}

static void decode_frame(const void *buf, size_t len, uint32_t frame, float *out)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "s", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open_frame(&a, r, frame, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_frame(a), frame);
	assert_int_equal(alcm_archive_decode(a, 0, out, N * 4), ALCM_OK);
	alcm_archive_free(a);
	alcm_reader_free(r);
}

/* Commits the in-memory stream archive and returns a copy of its bytes; frees w and s. */
static uint8_t *finish(alcm_writer *w, alcm_stream *s, size_t *len)
{
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	assert_int_equal(alcm_writer_memory(w, &b, len), ALCM_OK);
	uint8_t *copy = malloc(*len);
	memcpy(copy, b, *len);
	alcm_writer_free(w);
	alcm_stream_free(s);
	return copy;
}

/* Packs `frames` frames into one in-memory stream archive; returns its bytes. */
static uint8_t *run(int feedback, int frames, float (*in)[N], size_t *len,
                    alcm_frame_report *reps)
{
	alcm_stream_options o;
	alcm_stream_options_default(&o);
	o.pack.mode = ALCM_MODE_MAX_ERROR;
	o.pack.bound = 1e-3;
	o.pack.threads = 1;
	o.error_feedback = feedback;
	alcm_stream *s = NULL;
	assert_int_equal(alcm_stream_new(&s, &o, NULL), ALCM_OK);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	for (int f = 0; f < frames; f++) {
		alcm_tensor t = tensor_of(in[f]);
		assert_int_equal(alcm_stream_encode(s, w, &t, 1, &reps[f]), ALCM_OK);
		assert_int_equal(reps[f].frame, f);
	}
	return finish(w, s, len);
}

/* With error feedback the running sum of decoded frames stays within one bound of the
 * running sum of the true gradients: quantization error does not accumulate. */
static void test_error_feedback_bounds_accumulated_error(void **state)
{
	(void)state;
	enum { F = 12 };
	static float in[F][N], out[N];
	uint64_t seed = 3;
	for (int f = 0; f < F; f++)
		gradient(in[f], &seed, 1e-3); /* values of the order of the bound */
	alcm_frame_report reps[F];
	double worst[2] = {0, 0};
	for (int fb = 0; fb < 2; fb++) {
		size_t len;
		uint8_t *buf = run(fb, F, in, &len, reps);
		assert_int_equal(alcm_archive_frame_count(NULL), 0);
		static double sum_in[N], sum_out[N];
		memset(sum_in, 0, sizeof(sum_in));
		memset(sum_out, 0, sizeof(sum_out));
		for (int f = 0; f < F; f++) {
			decode_frame(buf, len, (uint32_t)f, out);
			for (int i = 0; i < N; i++) {
				sum_in[i] += in[f][i];
				sum_out[i] += out[i];
				worst[fb] = fmax(worst[fb], fabs(sum_in[i] - sum_out[i]));
			}
		}
		free(buf);
	}
	assert_true(worst[1] <= 1e-3 * 1.001);
	assert_true(worst[0] > 2 * worst[1]);
}

static void test_frames_and_reports(void **state)
{
	(void)state;
	enum { F = 3 };
	static float in[F][N];
	uint64_t seed = 5;
	for (int f = 0; f < F; f++)
		gradient(in[f], &seed, 0.01);
	alcm_frame_report reps[F];
	size_t len;
	uint8_t *buf = run(0, F, in, &len, reps);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "s", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_frame_count(r), F);
	alcm_archive *a = NULL;
	assert_int_equal(alcm_archive_open_frame(&a, r, 7, NULL), ALCM_E_NOTFOUND);
	alcm_archive_free(a);
	/* Each FRAM section holds the report the encoder returned. */
	uint32_t i = 0, k;
	int f = 0;
	while (alcm_reader_find_section(r, "FRAM", i, &k) == ALCM_OK) {
		uint8_t b[512];
		alcm_section_info si;
		alcm_reader_section_info(r, k, &si);
		assert_true(si.length < sizeof(b));
		assert_int_equal(alcm_reader_section_read(r, k, b, sizeof(b)), ALCM_OK);
		alcm_frame_report fr;
		assert_int_equal(alcm_frame_report_load(&fr, b, (size_t)si.length), ALCM_OK);
		assert_int_equal(fr.frame, f);
		assert_true(fr.ratio > 1 && fr.caq > 0 && fr.caq <= fr.ratio);
		assert_true(fabs(fr.ratio - reps[f].ratio) < 1e-12);
		b[0] ^= 1;
		assert_int_equal(alcm_frame_report_load(&fr, b, (size_t)si.length), ALCM_E_CORRUPT);
		i = k + 1;
		f++;
	}
	assert_int_equal(f, F);
	alcm_reader_free(r);
	free(buf);
}

/* Options of a scheduled stream, one thread. */
static void scheduled(alcm_stream_options *o, int mode, double bound, double bound_max,
                      double floor_db)
{
	alcm_stream_options_default(o);
	o->pack.mode = mode;
	o->pack.bound = bound;
	o->pack.threads = 1;
	o->schedule = 1;
	o->bound_max = bound_max;
	o->fidelity_floor_db = floor_db;
}

/* The scheduler raises aggressiveness while fidelity holds, never beyond the limits, and
 * backs off when the floor is not met; resuming from an archive continues the same way. */
static void test_scheduler_and_resume(void **state)
{
	(void)state;
	enum { F = 8 };
	static float g[N];
	uint64_t seed = 9;
	alcm_stream_options o;
	scheduled(&o, ALCM_MODE_MAX_ERROR, 1e-5, 1e-2, 10);
	alcm_stream *s = NULL;
	assert_int_equal(alcm_stream_new(&s, &o, NULL), ALCM_OK);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	alcm_frame_report rep[F];
	for (int f = 0; f < F; f++) {
		gradient(g, &seed, 0.01);
		alcm_tensor t = tensor_of(g);
		assert_int_equal(alcm_stream_encode(s, w, &t, 1, &rep[f]), ALCM_OK);
		assert_true(rep[f].bound >= 1e-5 * 0.999 && rep[f].bound <= 1e-2 * 1.001);
		assert_true(rep[f].prune >= 0 && rep[f].prune <= 0.25);
		if (rep[f].snr_db < 10)
			assert_int_equal(rep[f].decision, ALCM_DECIDE_BACKOFF_FIDELITY);
	}
	/* Coarser bounds shrink gradients of this size: the CAQ rises, so it raised first. */
	assert_int_equal(rep[1].decision, ALCM_DECIDE_RAISE);
	assert_true(rep[3].bound > rep[0].bound);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	size_t len;
	alcm_writer_memory(w, &b, &len);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, b, len, "s", NULL, NULL, 0), ALCM_OK);
	alcm_stream *s2 = NULL;
	assert_int_equal(alcm_stream_new(&s2, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_stream_resume(s2, r), ALCM_OK);
	alcm_writer *w2 = NULL;
	assert_int_equal(alcm_writer_open_memory(&w2, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	gradient(g, &seed, 0.01);
	alcm_tensor t = tensor_of(g);
	alcm_frame_report next;
	assert_int_equal(alcm_stream_encode(s2, w2, &t, 1, &next), ALCM_OK);
	assert_int_equal(next.frame, F);
	assert_true(fabs(next.bound - rep[F - 1].next_bound) < 1e-12 * rep[F - 1].next_bound + 1e-18);
	alcm_writer_free(w2);
	alcm_stream_free(s2);
	alcm_reader_free(r);
	alcm_writer_free(w);
	alcm_stream_free(s);
}

/* A scheduled stream that runs into its fidelity floor: it backs off, does not spiral down to
 * the starting bound (a back-off's own CAQ drop is not read as a reason to back off again),
 * does not break the floor again once it has learnt where it lies, settles with the SNR held
 * well above the starting setting, and
 * codes every frame to the same bytes when run again (timing noise stays in the dead band). */
static void run_floor(alcm_frame_report *rep, int frames, uint64_t *bytes)
{
	static float g[N];
	uint64_t seed = 21;
	alcm_stream_options o;
	scheduled(&o, ALCM_MODE_REL_ERROR, 1e-3, 1e-1, 25);
	o.error_feedback = 1;
	alcm_stream *s = NULL;
	assert_int_equal(alcm_stream_new(&s, &o, NULL), ALCM_OK);
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	for (int f = 0; f < frames; f++) {
		gradient(g, &seed, 0.01);
		alcm_tensor t = tensor_of(g);
		assert_int_equal(alcm_stream_encode(s, w, &t, 1, &rep[f]), ALCM_OK);
		bytes[f] = rep[f].stored_bytes;
	}
	alcm_writer_free(w);
	alcm_stream_free(s);
}

static void test_scheduler_settles_at_the_floor(void **state)
{
	(void)state;
	enum { F = 40 };
	alcm_frame_report a[F], b[F];
	uint64_t ba[F], bb[F];
	run_floor(a, F, ba);
	run_floor(b, F, bb);
	int first_fail = -1, late_fails = 0;
	double lowest = 2;
	for (int f = 0; f < F; f++) {
		assert_int_equal(ba[f], bb[f]);
		assert_int_equal(a[f].decision, b[f].decision);
		if (a[f].decision == ALCM_DECIDE_BACKOFF_FIDELITY && first_fail < 0)
			first_fail = f;
		else if (first_fail >= 0)
			lowest = fmin(lowest, a[f].aggressiveness);
		late_fails += f >= F / 3 && a[f].decision == ALCM_DECIDE_BACKOFF_FIDELITY;
	}
	assert_true(first_fail > 0);
	/* At most two fidelity back-offs from the level that broke the floor, no CAQ spiral. */
	assert_true(lowest >= a[first_fail].aggressiveness - 0.5 - 1e-9);
	/* The ceiling keeps later probes from breaking the floor again. */
	assert_int_equal(late_fails, 0);
	/* Settled: the last ten frames hold the floor, well above the starting setting. */
	for (int f = F - 10; f < F; f++) {
		assert_true(a[f].snr_db >= 25);
		assert_true(a[f].aggressiveness >= 0.5);
	}
}

/* The same frames give the same archive bytes (the scheduler decides on a nominal cost and
 * FRAM records no timing), unless the caller asks FRAM to record the CPU seconds. */
static uint8_t *stream_bytes(int record_cpu, size_t *len)
{
	static float g[N];
	uint64_t seed = 5;
	alcm_stream_options o;
	scheduled(&o, ALCM_MODE_REL_ERROR, 1e-3, 5e-2, 20);
	o.error_feedback = 1;
	o.record_cpu = record_cpu;
	alcm_stream *s = NULL;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_stream_new(&s, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	for (int f = 0; f < 8; f++) {
		gradient(g, &seed, 0.01 / (1 + f));
		alcm_tensor t = tensor_of(g);
		alcm_frame_report rep;
		assert_int_equal(alcm_stream_encode(s, w, &t, 1, &rep), ALCM_OK);
		assert_true(rep.cpu_seconds > 0); /* the caller always gets the measurement */
	}
	return finish(w, s, len);
}

static double last_fram_cpu(const uint8_t *b, size_t len)
{
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_memory(&r, b, len, "s", NULL, NULL, 0), ALCM_OK);
	uint32_t k = 0, from = 0;
	double cpu = -1;
	while (alcm_reader_find_section(r, "FRAM", from, &k) == ALCM_OK) {
		uint8_t fb[120]; /* spec 6.8 */
		alcm_section_info si;
		alcm_frame_report fr;
		assert_int_equal(alcm_reader_section_info(r, k, &si), ALCM_OK);
		assert_int_equal(si.length, sizeof(fb));
		assert_int_equal(alcm_reader_section_read(r, k, fb, sizeof(fb)), ALCM_OK);
		assert_int_equal(alcm_frame_report_load(&fr, fb, sizeof(fb)), ALCM_OK);
		cpu = fr.cpu_seconds;
		from = k + 1;
	}
	alcm_reader_free(r);
	return cpu;
}

static void test_same_frames_same_bytes(void **state)
{
	(void)state;
	size_t l1, l2, l3;
	uint8_t *a = stream_bytes(0, &l1), *b = stream_bytes(0, &l2), *c = stream_bytes(1, &l3);
	assert_int_equal(l1, l2);
	assert_memory_equal(a, b, l1);
	assert_true(last_fram_cpu(a, l1) == 0);
	assert_true(last_fram_cpu(c, l3) > 0);
	free(a);
	free(b);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_feedback_bounds_accumulated_error),
		cmocka_unit_test(test_frames_and_reports),
		cmocka_unit_test(test_scheduler_and_resume),
		cmocka_unit_test(test_scheduler_settles_at_the_floor),
		cmocka_unit_test(test_same_frames_same_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
