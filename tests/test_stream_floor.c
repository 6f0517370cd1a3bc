/* The fidelity floor of a scheduled stream is a promise: no frame is committed under it. And
 * the writer's rollback, which makes coding a tensor again possible. */
#include "codec_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 4096
#define F 16

static alcm_tensor tensor_of(const char *name, float *g, uint64_t n)
{
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = name;
	t.name_len = strlen(name);
	t.dtype = ALCM_DTYPE_F32;
	t.ndim = 1;
	t.shape[0] = n;
	t.data = g;
	t.nbytes = n * 4;
	return t;
}

/* SNR of frame f's tensors, decoded from the archive, against the inputs. */
static double frame_snr(const void *buf, size_t len, uint32_t f, float (*in)[N], size_t nt)
{
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	static float out[N];
	double sig = 0, noise = 0;
	assert_int_equal(alcm_reader_open_memory(&r, buf, len, "s", NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_archive_open_frame(&a, r, f, NULL), ALCM_OK);
	assert_int_equal(alcm_archive_tensor_count(a), nt);
	for (size_t i = 0; i < nt; i++) {
		assert_int_equal(alcm_archive_decode(a, i, out, sizeof(out)), ALCM_OK);
		for (int k = 0; k < N; k++) {
			sig += (double)in[i][k] * in[i][k];
			noise += ((double)in[i][k] - out[k]) * ((double)in[i][k] - out[k]);
		}
	}
	alcm_archive_free(a);
	alcm_reader_free(r);
	return noise > 0 ? 10 * log10(sig / noise) : INFINITY;
}

/*
 * Gaussian gradients (sigma 0.01) under a scheduler that raises the max-error bound from 1e-4
 * towards 1e-2 while the CAQ rises: near 2.5e-3 a frame's SNR falls under 20 dB. The frame
 * that would have is coded again before it is committed, the decision still backs off, and
 * every frame decoded from the archive holds the floor. Two tensors per frame, one 30 times
 * weaker than the other, so that the budget is shared.
 */
static void run(int feedback)
{
	static float g[F][2][N];
	uint64_t seed = 5;
	for (int f = 0; f < F; f++)
		for (int k = 0; k < N; k++) {
			g[f][0][k] = (float)(tu_gauss(&seed) * 0.01);
			g[f][1][k] = (float)(tu_gauss(&seed) * 0.0003);
		}
	alcm_stream_options o;
	alcm_stream_options_default(&o);
	o.pack.mode = ALCM_MODE_MAX_ERROR;
	o.pack.bound = 1e-4;
	o.pack.threads = 1;
	o.schedule = 1;
	o.bound_max = 1e-2;
	o.fidelity_floor_db = 20;
	o.error_feedback = feedback;
	alcm_stream *s = NULL;
	alcm_writer *w = NULL;
	assert_int_equal(alcm_stream_new(&s, &o, NULL), ALCM_OK);
	assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL), ALCM_OK);
	alcm_frame_report rep[F];
	int backoffs = 0;
	uint32_t recoded = 0;
	for (int f = 0; f < F; f++) {
		alcm_tensor t[2] = {tensor_of("w", g[f][0], N), tensor_of("b", g[f][1], N)};
		assert_int_equal(alcm_stream_encode(s, w, t, 2, &rep[f]), ALCM_OK);
		assert_true(rep[f].snr_db >= 20);
		backoffs += rep[f].decision == ALCM_DECIDE_BACKOFF_FIDELITY;
		recoded += rep[f].recoded;
		/* A frame is only coded again when its setting broke the floor. */
		if (rep[f].recoded)
			assert_int_equal(rep[f].decision, ALCM_DECIDE_BACKOFF_FIDELITY);
	}
	assert_true(backoffs >= 1);
	assert_true(recoded >= 1);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	const void *b;
	size_t len;
	assert_int_equal(alcm_writer_memory(w, &b, &len), ALCM_OK);
	for (int f = 0; f < F; f++) {
		double snr = frame_snr(b, len, (uint32_t)f, g[f], 2);
		/* With feedback the decoded frame carries the last frame's residual too: the report's
		 * SNR is against what the loop handed in, which is what the archive holds. */
		if (!feedback)
			assert_true(snr >= 20);
		assert_true(fabs(snr - rep[f].snr_db) < 1e-6 * fabs(snr) + 1e-9 || feedback);
	}
	alcm_writer_free(w);
	alcm_stream_free(s);
}

static void test_floor_kept(void **state)
{
	(void)state;
	run(0);
}

static void test_floor_kept_with_feedback(void **state)
{
	(void)state;
	run(1);
}

/* Sections dropped by a rollback leave no trace: the archive lists what remains, its file is
 * no longer than that, and an append cannot drop the sections it appends to. */
static void test_writer_rollback(void **state)
{
	(void)state;
	const char *path = tu_path("rollback.alcm");
	static const char big[5000];
	for (int kind = 0; kind < 2; kind++) {
		alcm_writer *w = NULL;
		unlink(path);
		if (kind)
			assert_int_equal(alcm_writer_open_file(&w, path, ALCM_WRITE_STREAM |
			                                                     ALCM_WRITE_NO_SYNC, NULL),
			                 ALCM_OK);
		else
			assert_int_equal(alcm_writer_open_memory(&w, ALCM_WRITE_STREAM, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_add_section(w, "ABCD", 0, 0, "keep", 4, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_rollback(w, 2), ALCM_E_ARG);
		assert_int_equal(alcm_writer_add_section(w, "EFGH", 0, 0, big, sizeof(big), NULL),
		                 ALCM_OK);
		assert_int_equal(alcm_writer_section_begin(w, "IJKL", 0, 0), ALCM_OK);
		assert_int_equal(alcm_writer_rollback(w, 1), ALCM_E_STATE);
		assert_int_equal(alcm_writer_section_end(w, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_rollback(w, 1), ALCM_OK);
		assert_int_equal(alcm_writer_section_count(w), 1);
		assert_int_equal(alcm_writer_add_section(w, "MNOP", 0, 0, "new", 3, NULL), ALCM_OK);
		assert_int_equal(alcm_writer_commit(w), ALCM_OK);
		assert_int_equal(alcm_writer_rollback(w, 1), ALCM_E_STATE);
		alcm_reader *r = NULL;
		if (kind) {
			alcm_writer_free(w);
			assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
		} else {
			const void *b;
			size_t len;
			assert_int_equal(alcm_writer_memory(w, &b, &len), ALCM_OK);
			assert_int_equal(alcm_reader_open_memory(&r, b, len, "m", NULL, NULL, 0), ALCM_OK);
		}
		/* Two sections, then the table: 192 + 64 + 64 + 48 + 2 * 64 bytes, nothing more. */
		assert_int_equal(alcm_reader_section_count(r), 2);
		assert_int_equal(alcm_reader_file_size(r), 192 + 64 + 64 + 48 + 128);
		alcm_section_info si;
		assert_int_equal(alcm_reader_section_info(r, 1, &si), ALCM_OK);
		assert_string_equal(si.type, "MNOP");
		assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
		alcm_reader_free(r);
		if (!kind)
			alcm_writer_free(w);
	}
	/* An append drops only its own sections. */
	alcm_writer *w = NULL;
	assert_int_equal(alcm_writer_open_append(&w, path, NULL, NULL, ALCM_WRITE_NO_SYNC), ALCM_OK);
	uint32_t base = alcm_writer_section_count(w); /* the old sections and the PTBL */
	assert_int_equal(alcm_writer_add_section(w, "QRST", 0, 1, big, sizeof(big), NULL), ALCM_OK);
	assert_int_equal(alcm_writer_rollback(w, base - 1), ALCM_E_ARG);
	assert_int_equal(alcm_writer_rollback(w, base), ALCM_OK);
	assert_int_equal(alcm_writer_commit(w), ALCM_OK);
	alcm_writer_free(w);
	alcm_reader *r = NULL;
	assert_int_equal(alcm_reader_open_file(&r, path, NULL, NULL, 0), ALCM_OK);
	assert_int_equal(alcm_reader_section_count(r), base);
	assert_int_equal(alcm_reader_tail_bytes(r), 0);
	assert_int_equal(alcm_reader_verify(r, NULL), ALCM_OK);
	alcm_reader_free(r);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_rollback),
		cmocka_unit_test(test_floor_kept),
		cmocka_unit_test(test_floor_kept_with_feedback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
