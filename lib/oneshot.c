/* One call for the common cases: a tensor file to an archive, and back. */
#include "codec_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int say(char *detail, size_t cap, int st, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int say(char *detail, size_t cap, int st, const char *fmt, ...)
{
	if (detail && cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(detail, cap, fmt, ap);
		va_end(ap);
	}
	return st;
}

int alcm_file_pack(const char *in_path, const char *out_path, const alcm_pack_options *opt,
                   unsigned flags, char *detail, size_t detail_cap)
{
	if (detail && detail_cap)
		detail[0] = '\0';
	if (!in_path || !out_path)
		return say(detail, detail_cap, ALCM_E_ARG, "no input or output path");
	alcm_pack_options o;
	if (opt)
		o = *opt;
	else
		alcm_pack_options_default(&o);
	alcm_input *in = NULL;
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	int st = alcm_input_open(&in, in_path, NULL, NULL);
	if (st) {
		say(detail, detail_cap, st, "%s", alcm_input_detail(in));
		goto out;
	}
	if (!o.source_format)
		o.source_format = alcm_format_name(alcm_input_format(in));
	if ((st = alcm_writer_open_file(&w, out_path, flags & (ALCM_WRITE_OVERWRITE |
	                                                       ALCM_WRITE_STREAM |
	                                                       ALCM_WRITE_NO_SYNC), NULL))) {
		say(detail, detail_cap, st, "%s", alcm_writer_detail(w));
		goto out;
	}
	if ((st = alcm_encoder_new(&e, w, &o, NULL))) {
		say(detail, detail_cap, st, "%s", alcm_encoder_detail(e));
		goto out;
	}
	for (;;) {
		alcm_tensor t;
		int has;
		if ((st = alcm_input_next(in, &t, &has))) {
			say(detail, detail_cap, st, "%s", alcm_input_detail(in));
			goto out;
		}
		if (!has)
			break;
		if ((st = alcm_encoder_add(e, &t, NULL))) {
			say(detail, detail_cap, st, "%s", alcm_encoder_detail(e));
			goto out;
		}
	}
	if ((st = alcm_encoder_finish(e))) {
		say(detail, detail_cap, st, "%s", alcm_encoder_detail(e));
		goto out;
	}
	if ((st = alcm_writer_commit(w)))
		say(detail, detail_cap, st, "%s", alcm_writer_detail(w));
out:
	alcm_encoder_free(e);
	alcm_writer_free(w); /* removes the temporary file of an uncommitted writer */
	alcm_input_free(in);
	return st;
}

int alcm_file_unpack(const char *in_path, const char *out_path, unsigned flags, char *detail,
                     size_t detail_cap)
{
	if (detail && detail_cap)
		detail[0] = '\0';
	if (!in_path || !out_path)
		return say(detail, detail_cap, ALCM_E_ARG, "no input or output path");
	int fmt = alcm_format_from_extension(out_path);
	if (fmt != ALCM_FILE_NPY && fmt != ALCM_FILE_NPZ && fmt != ALCM_FILE_SAFETENSORS)
		return say(detail, detail_cap, ALCM_E_UNSUPPORTED, "'%s': the output's extension "
		           "names no format this library writes (.npy, .npz, .safetensors)", out_path);
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	alcm_output *o = NULL;
	alcm_tensor *plan = NULL;
	uint8_t *buf = NULL;
	int st = alcm_reader_open_file(&r, in_path, NULL, NULL, 0);
	if (st) {
		say(detail, detail_cap, st, "%s", alcm_reader_detail(r));
		goto out;
	}
	if ((st = alcm_archive_open(&a, r, NULL))) {
		say(detail, detail_cap, st, "%s", alcm_archive_detail(a));
		goto out;
	}
	size_t n = alcm_archive_tensor_count(a);
	plan = alcm_mem_calloc(NULL, n ? n : 1, sizeof(*plan));
	if (!plan) {
		st = say(detail, detail_cap, ALCM_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		plan[i].name = ti.name;
		plan[i].name_len = ti.name_len;
		plan[i].dtype = ti.dtype;
		plan[i].ndim = ti.ndim;
		memcpy(plan[i].shape, ti.shape, sizeof(ti.shape));
		plan[i].nbytes = ti.raw_bytes;
	}
	if ((st = alcm_output_open(&o, out_path, fmt, flags & (ALCM_WRITE_OVERWRITE |
	                                                       ALCM_WRITE_NO_SYNC), NULL)) ||
	    (st = alcm_output_plan(o, plan, n))) {
		say(detail, detail_cap, st, "%s", alcm_output_detail(o));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		/* One tensor in memory at a time; its size was checked against the limits. */
		alcm_mem_free(NULL, buf);
		buf = alcm_mem_alloc(NULL, (size_t)plan[i].nbytes);
		if (!buf) {
			st = say(detail, detail_cap, ALCM_E_NOMEM, "cannot allocate %llu bytes for a "
			         "tensor", (unsigned long long)plan[i].nbytes);
			goto out;
		}
		if ((st = alcm_archive_decode(a, i, buf, (size_t)plan[i].nbytes))) {
			say(detail, detail_cap, st, "%s", alcm_archive_detail(a));
			goto out;
		}
		plan[i].data = buf;
		st = alcm_output_write(o, &plan[i]);
		plan[i].data = NULL;
		if (st) {
			say(detail, detail_cap, st, "%s", alcm_output_detail(o));
			goto out;
		}
	}
	if ((st = alcm_output_commit(o)))
		say(detail, detail_cap, st, "%s", alcm_output_detail(o));
out:
	alcm_mem_free(NULL, buf);
	alcm_mem_free(NULL, plan);
	alcm_output_free(o);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return st;
}
