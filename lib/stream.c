/* Gradient streams: frames, error feedback, and the CAQ scheduler (spec 6.8). */
#include "codec_internal.h"
#include "container.h"
#include "series_internal.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#define FRAM_BYTES (4 + 4 + 8 + 8 + 11 * 8 + 4 + 4)
#define MAX_WINDOW 64

typedef struct resid {
	uint8_t *r;   /* residual in the tensor's dtype-independent form: float64 per value */
	uint64_t n;
} resid;

struct alcm_stream {
	alcm_allocator alloc;
	alcm_stream_options opt;
	uint32_t frame;
	double aggr;
	double ceiling;   /* no raise above this: one step under a level that broke the floor */
	unsigned calm;    /* frames in a row whose SNR had room for one more step */
	double caq[MAX_WINDOW];
	unsigned ncaq;
	resid *res;
	size_t nres;
	/* The settings record (OPTS, spec 6.12.3): the archive's as resumed (has_rec), and
	 * whether this object has decided on writing its own yet. */
	alcm_stream_options rec;
	int has_rec, opts_done;
	char detail[ALCM_DETAIL_MAX];
};

void alcm_stream_options_default(alcm_stream_options *o)
{
	memset(o, 0, sizeof(*o));
	alcm_pack_options_default(&o->pack);
	o->window = 5;
	o->fidelity_floor_db = 20;
	o->trend_tolerance = 0.01;
}

int alcm_stream_new(alcm_stream **out, const alcm_stream_options *opt, const alcm_allocator *al)
{
	if (!out)
		return ALCM_E_ARG;
	*out = NULL;
	alcm_stream_options o;
	if (opt)
		o = *opt;
	else
		alcm_stream_options_default(&o);
	if (o.window < 2 || o.window > MAX_WINDOW || !(o.trend_tolerance >= 0) ||
	    !(o.trend_tolerance < 1))
		return ALCM_E_ARG;
	if (o.schedule && ((o.pack.mode != ALCM_MODE_MAX_ERROR && o.pack.mode != ALCM_MODE_REL_ERROR) ||
	                   !(o.bound_max >= o.pack.bound)))
		return ALCM_E_ARG;
	alcm_allocator a;
	alcm_alloc_copy(&a, al);
	alcm_stream *s = alcm_mem_calloc(&a, 1, sizeof(*s));
	if (!s)
		return ALCM_E_NOMEM;
	s->alloc = a;
	s->opt = o;
	s->ceiling = 1;
	*out = s;
	return ALCM_OK;
}

void alcm_stream_free(alcm_stream *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nres; i++)
		alcm_mem_free(&s->alloc, s->res[i].r);
	alcm_mem_free(&s->alloc, s->res);
	alcm_allocator a = s->alloc;
	alcm_mem_free(&a, s);
}

const char *alcm_stream_detail(const alcm_stream *s)
{
	return s ? s->detail : "";
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Least-squares slope of the last k CAQ values against their frame index; *mean gets their
 * mean. */
static double trend(const alcm_stream *s, double *mean)
{
	unsigned k = s->ncaq < s->opt.window ? s->ncaq : s->opt.window;
	*mean = k ? s->caq[s->ncaq - 1] : 0;
	if (k < 2)
		return 0;
	double mx = (k - 1) / 2.0, my = 0, sxy = 0, sxx = 0;
	for (unsigned i = 0; i < k; i++)
		my += s->caq[s->ncaq - k + i];
	my /= k;
	*mean = my;
	for (unsigned i = 0; i < k; i++) {
		double dx = i - mx;
		sxy += dx * (s->caq[s->ncaq - k + i] - my);
		sxx += dx * dx;
	}
	return sxy / sxx;
}

static void setting(const alcm_stream *s, double aggr, double *bound, double *prune)
{
	const alcm_pack_options *p = &s->opt.pack;
	if (!s->opt.schedule) {
		*bound = p->bound;
		*prune = p->prune;
		return;
	}
	/* Geometric between the starting bound and the most aggressive one. */
	*bound = p->bound * pow(s->opt.bound_max / p->bound, aggr);
	*prune = p->prune + (0.25 - p->prune) * aggr;
}

static void store_report(uint8_t *b, const alcm_frame_report *r)
{
	const double d[11] = {r->ratio, r->cpu_seconds, r->caq, r->caq_trend, r->snr_db,
	                      r->max_abs_error, r->bound, r->prune, r->aggressiveness,
	                      r->next_bound, r->next_prune};
	alcm_store32(b, 1);
	alcm_store32(b + 4, r->frame);
	alcm_store64(b + 8, r->raw_bytes);
	alcm_store64(b + 16, r->stored_bytes);
	for (int i = 0; i < 11; i++) {
		uint64_t u;
		memcpy(&u, &d[i], 8);
		alcm_store64(b + 24 + 8 * i, u);
	}
	alcm_store32(b + 24 + 88, (uint32_t)r->decision);
	alcm_store32(b + 28 + 88, 0);
}

int alcm_frame_report_load(alcm_frame_report *r, const uint8_t *b, size_t len)
{
	if (!r || !b || len != FRAM_BYTES || alcm_load32(b) != 1 || alcm_load32(b + 28 + 88))
		return ALCM_E_CORRUPT;
	double d[11];
	for (int i = 0; i < 11; i++) {
		uint64_t u = alcm_load64(b + 24 + 8 * i);
		memcpy(&d[i], &u, 8);
	}
	memset(r, 0, sizeof(*r));
	r->frame = alcm_load32(b + 4);
	r->raw_bytes = alcm_load64(b + 8);
	r->stored_bytes = alcm_load64(b + 16);
	r->ratio = d[0], r->cpu_seconds = d[1], r->caq = d[2], r->caq_trend = d[3];
	r->snr_db = d[4], r->max_abs_error = d[5], r->bound = d[6], r->prune = d[7];
	r->aggressiveness = d[8], r->next_bound = d[9], r->next_prune = d[10];
	r->decision = (int)alcm_load32(b + 24 + 88);
	if (r->decision > ALCM_DECIDE_BACKOFF_FIDELITY)
		return ALCM_E_CORRUPT;
	return ALCM_OK;
}

/* The CAQ the scheduler decides on: the frame's ratio over a nominal coding cost of 10 ns per
 * raw byte (about 100 MB/s) plus one, instead of the measured CPU seconds, which depend on the
 * machine's load: decisions, and with them every frame's bytes, are then the same from run to
 * run. FRAM records the measured CPU seconds and CAQ beside it. */
static double sched_caq(double ratio, uint64_t raw_bytes)
{
	return ratio / ((double)raw_bytes * 1e-8 + 1);
}

/* SNR a step of aggressiveness (0.1) costs, about: the bound grows by (bmax/b0)^0.1. */
static double step_db(const alcm_stream *s)
{
	return 2 * log10(s->opt.bound_max / s->opt.pack.bound) + 1;
}

/* Takes in a coded frame: its CAQ into the window, its SNR into the calm count. */
static void observe(alcm_stream *s, double caq, double snr_db)
{
	if (s->ncaq == MAX_WINDOW) {
		memmove(s->caq, s->caq + 1, (MAX_WINDOW - 1) * sizeof(double));
		s->ncaq--;
	}
	s->caq[s->ncaq++] = caq;
	s->calm = snr_db >= s->opt.fidelity_floor_db + step_db(s) ? s->calm + 1 : 0;
}

/* The decision for the frame after one coded at aggressiveness s->aggr whose CAQ was just
 * pushed. A back-off restarts the window: the frames before it were coded with another
 * setting, and the CAQ drop a back-off itself causes must not read as a reason to back off
 * again. A fidelity back-off also caps later raises one step under the failed level. */
static int decide(const alcm_stream *s, double snr_db, double *trend_out)
{
	double mean;
	*trend_out = trend(s, &mean);
	double band = s->opt.trend_tolerance * fabs(mean);
	if (!s->opt.schedule)
		return ALCM_DECIDE_HOLD;
	if (snr_db < s->opt.fidelity_floor_db)
		return ALCM_DECIDE_BACKOFF_FIDELITY;
	if (s->ncaq < 2)
		/* Short history: the stream's first frame, or a window a back-off emptied. */
		return s->frame == 0 ? ALCM_DECIDE_START : ALCM_DECIDE_HOLD;
	/* Under the ceiling; or at it with a whole window of SNR room for one more step, which
	 * lifts the ceiling (the frame that broke the floor may have been a passing one). */
	int room = s->aggr < 1 - 1e-9 &&
	           (s->aggr < s->ceiling - 1e-9 || s->calm >= s->opt.window);
	if (*trend_out > band)
		return room ? ALCM_DECIDE_RAISE : ALCM_DECIDE_HOLD;
	/* Flat over a whole window with fidelity held: probe one step up. A fall seen over
	 * two frames only is as likely the data's own jitter: wait for a third. */
	if (*trend_out >= -band || s->ncaq < 3)
		return room && s->ncaq >= s->opt.window ? ALCM_DECIDE_RAISE : ALCM_DECIDE_HOLD;
	return ALCM_DECIDE_BACKOFF_CAQ;
}

/* Applies a decision taken on a frame coded at aggressiveness a (also when resuming). */
static void apply(alcm_stream *s, int decision, double a)
{
	if (!s->opt.schedule) {
		s->aggr = 0;
		return;
	}
	switch (decision) {
	case ALCM_DECIDE_HOLD: break;
	case ALCM_DECIDE_BACKOFF_CAQ: a = fmax(0, a - 0.1); break;
	case ALCM_DECIDE_BACKOFF_FIDELITY:
		s->ceiling = fmax(0, a - 0.1);
		a = fmax(0, a - 0.25);
		break;
	case ALCM_DECIDE_RAISE:
		/* Only a probe from the ceiling itself lifts it; a raise from below stops at it. */
		if (a >= s->ceiling - 1e-9) {
			s->ceiling = fmin(1, a + 0.1);
			s->calm = 0;
		}
		a = fmin(s->ceiling, a + 0.1);
		break;
	default: a = fmin(s->ceiling, fmin(1, a + 0.1)); /* start */
	}
	if (decision == ALCM_DECIDE_BACKOFF_CAQ || decision == ALCM_DECIDE_BACKOFF_FIDELITY)
		s->ncaq = 0;
	s->aggr = a;
}

static int sfail(alcm_stream *s, int st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int sfail(alcm_stream *s, int st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	alcm_detail_vset(s->detail, fmt, ap);
	va_end(ap);
	return st;
}

/* Adds the stored residual to a float tensor: x + r, in a buffer of the tensor's dtype. */
static int with_feedback(alcm_stream *s, size_t i, const alcm_tensor *t, uint8_t *buf)
{
	size_t w = alcm_dtype_size(t->dtype);
	uint64_t n = t->nbytes / w;
	memcpy(buf, t->data, t->nbytes);
	if (i >= s->nres || !s->res[i].r)
		return ALCM_OK;
	if (s->res[i].n != n)
		return sfail(s, ALCM_E_ARG, "tensor %zu changed size between frames", i);
	const double *r = (const double *)s->res[i].r;
	for (uint64_t k = 0; k < n; k++) {
		if (alcm_is_special(t->dtype, buf, k))
			continue;
		double v = alcm_load_float(t->dtype, buf, k) + r[k];
		switch (t->dtype) {
		case ALCM_DTYPE_F16: alcm_store16(buf + 2 * k, alcm_float_to_half((float)v)); break;
		case ALCM_DTYPE_BF16: alcm_store16(buf + 2 * k, alcm_float_to_bf16((float)v)); break;
		case ALCM_DTYPE_F32: {
			float f = (float)v;
			memcpy(buf + 4 * k, &f, 4);
			break;
		}
		default: memcpy(buf + 8 * k, &v, 8);
		}
	}
	return ALCM_OK;
}

static int keep_residual(alcm_stream *s, size_t i, const alcm_tensor *x, const uint8_t *recon)
{
	size_t w = alcm_dtype_size(x->dtype);
	uint64_t n = x->nbytes / w;
	if (i >= s->nres) {
		resid *nr = alcm_mem_realloc(&s->alloc, s->res, (i + 1) * sizeof(resid));
		if (!nr)
			return ALCM_E_NOMEM;
		memset(nr + s->nres, 0, (i + 1 - s->nres) * sizeof(resid));
		s->res = nr;
		s->nres = i + 1;
	}
	if (!s->res[i].r) {
		s->res[i].r = alcm_mem_calloc(&s->alloc, n ? n : 1, sizeof(double));
		if (!s->res[i].r)
			return ALCM_E_NOMEM;
		s->res[i].n = n;
	}
	double *r = (double *)s->res[i].r;
	const uint8_t *a = x->data;
	for (uint64_t k = 0; k < n; k++)
		r[k] = alcm_is_special(x->dtype, a, k)
		           ? 0
		           : alcm_load_float(x->dtype, a, k) - alcm_load_float(x->dtype, recon, k);
	return ALCM_OK;
}

static void accumulate(const alcm_tensor *x, const uint8_t *y, double *sig, double *noise,
                       double *maxerr)
{
	size_t w = alcm_dtype_size(x->dtype);
	for (uint64_t k = 0; k < x->nbytes / w; k++) {
		if (alcm_is_special(x->dtype, x->data, k))
			continue;
		double u = alcm_load_float(x->dtype, x->data, k), v = alcm_load_float(x->dtype, y, k);
		*sig += u * u;
		*noise += (u - v) * (u - v);
		if (fabs(u - v) > *maxerr)
			*maxerr = fabs(u - v);
	}
}

/* Whether two streams' settings code alike (the fields OPTS records). */
static int same_settings(const alcm_stream_options *a, const alcm_stream_options *b)
{
	const alcm_pack_options *p = &a->pack, *q = &b->pack;
	return p->mode == q->mode && p->bound == q->bound && p->bits == q->bits &&
	       p->prune == q->prune && p->level == q->level && p->chunk_bytes == q->chunk_bytes &&
	       p->int_policy == q->int_policy && !a->schedule == !b->schedule &&
	       !a->error_feedback == !b->error_feedback && a->window == b->window &&
	       !a->record_cpu == !b->record_cpu && a->bound_max == b->bound_max &&
	       a->fidelity_floor_db == b->fidelity_floor_db &&
	       a->trend_tolerance == b->trend_tolerance;
}

/*
 * The first frame a stream object codes records its settings (an OPTS section, format 1.1)
 * when they are not the defaults and the archive has no record, or differ from its record
 * (settings given to an appender override the recorded ones and are recorded with the
 * frame). An append to a format 1.0 archive records nothing: its readers would meet an
 * unannounced section type.
 */
static int put_settings(alcm_stream *s, alcm_writer *w, alcm_encoder *e)
{
	if (s->opts_done)
		return ALCM_OK;
	s->opts_done = 1;
	/* Against the archive's record, or the defaults (which need no record: a default
	 * stream stays format 1.0). */
	alcm_stream_options ref;
	if (s->has_rec)
		ref = s->rec;
	else
		alcm_stream_options_default(&ref);
	if (same_settings(&s->opt, &ref) || !alcm_writer_can_require_minor(w, 1))
		return ALCM_OK;
	alcm_buf b = {NULL, 0, 0, &s->alloc, 0};
	int st = alcm_stream_opts_build(&b, &s->opt);
	if (!st)
		st = alcm_writer_require_minor(w, 1);
	if (!st)
		st = alcm_encoder_add_section(e, "OPTS", 0, b.p, b.len);
	alcm_mem_free(&s->alloc, b.p);
	return st;
}

int alcm_stream_encode(alcm_stream *s, alcm_writer *w, const alcm_tensor *t, size_t n,
                       alcm_frame_report *rep)
{
	if (!s || !w || (!t && n))
		return ALCM_E_ARG;
	alcm_frame_report fr;
	memset(&fr, 0, sizeof(fr));
	fr.frame = s->frame;
	fr.aggressiveness = s->aggr;
	setting(s, s->aggr, &fr.bound, &fr.prune);
	alcm_pack_options po = s->opt.pack;
	po.frame = s->frame;
	po.bound = fr.bound;
	po.prune = po.mode == ALCM_MODE_LOSSLESS ? 0 : fr.prune;
	alcm_encoder *e = NULL;
	uint8_t *in = NULL, *recon = NULL;
	double sig = 0, noise = 0, noise_first = 0;
	double c0 = cpu_now();
	uint64_t w0 = alcm_writer_bytes(w);
	/* The fidelity floor is kept, not only reacted to: the frame's noise may not exceed
	 * signal / 10^(floor / 10). Each tensor may use the budget of the signal seen so far (its
	 * own included) less the noise already spent; a tensor that would overdraw it is coded
	 * again at half the bound, until it fits (at the end, losslessly). The scheduler still
	 * decides on the SNR the frame would have had. */
	int keep_floor = s->opt.schedule && po.mode != ALCM_MODE_LOSSLESS;
	double budget_per_sig = pow(10, -s->opt.fidelity_floor_db / 10);
	int st = alcm_encoder_new(&e, w, &po, &s->alloc);
	for (size_t i = 0; i < n && !st; i++) {
		int fl = alcm_dtype_is_float(t[i].dtype);
		int fb = s->opt.error_feedback && fl && po.mode != ALCM_MODE_LOSSLESS;
		alcm_tensor x = t[i];
		alcm_mem_free(&s->alloc, in);
		alcm_mem_free(&s->alloc, recon);
		in = fb ? alcm_mem_alloc(&s->alloc, (size_t)x.nbytes) : NULL;
		recon = alcm_mem_alloc(&s->alloc, (size_t)x.nbytes);
		if ((fb && !in) || !recon) {
			st = sfail(s, ALCM_E_NOMEM, "out of memory");
			break;
		}
		if (fb && (st = with_feedback(s, i, &t[i], in)))
			break;
		if (fb)
			x.data = in;
		double si = 0, ni = 0, mi = 0, bound = po.bound;
		for (int attempt = 0;; attempt++) {
			alcm_tensor_report tr;
			if ((st = alcm_encoder_add_recon(e, &x, &tr, recon))) {
				sfail(s, st, "%s", alcm_encoder_detail(e));
				break;
			}
			/* Fidelity against what the training loop handed in, before feedback. */
			si = ni = mi = 0;
			if (fl)
				accumulate(&t[i], recon, &si, &ni, &mi);
			if (attempt == 0)
				noise_first += ni;
			int lossless = tr.mode == ALCM_MODE_LOSSLESS;
			if (!keep_floor || !fl || lossless ||
			    noise + ni <= (sig + si) * budget_per_sig)
				break;
			/* Over the budget: take the tensor back and code it again, safer. */
			if ((st = alcm_encoder_undo(e))) {
				sfail(s, st, "%s", alcm_encoder_detail(e));
				break;
			}
			bound *= 0.5;
			st = attempt < 12 ? alcm_encoder_set_mode(e, po.mode, bound, po.bits, 0)
			                  : alcm_encoder_set_mode(e, ALCM_MODE_LOSSLESS, 0, 0, 0);
			if (st) {
				sfail(s, st, "tensor %zu: cannot code it again at bound %g", i, bound);
				break;
			}
			fr.recoded += attempt == 0;
		}
		if (!st && bound != po.bound &&
		    (st = alcm_encoder_set_mode(e, po.mode, po.bound, po.bits, po.prune)))
			sfail(s, st, "cannot restore the frame's setting");
		if (st)
			break;
		if (fb && (st = keep_residual(s, i, &x, recon)))
			break;
		sig += si;
		noise += ni;
		if (mi > fr.max_abs_error)
			fr.max_abs_error = mi;
		fr.raw_bytes += t[i].nbytes;
	}
	fr.cpu_seconds = cpu_now() - c0;
	fr.stored_bytes = alcm_writer_bytes(w) - w0;
	fr.ratio = fr.stored_bytes ? (double)fr.raw_bytes / (double)fr.stored_bytes : 0;
	fr.caq = fr.ratio / (fr.cpu_seconds + 1);
	fr.snr_db = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
	/* What the frame's setting gave before any tensor was coded again. */
	double snr_setting = noise_first > 0 ? 10 * log10(sig / noise_first) : INFINITY;
	if (!st) {
		observe(s, sched_caq(fr.ratio, fr.raw_bytes), snr_setting);
		fr.decision = decide(s, snr_setting, &fr.caq_trend);
		apply(s, fr.decision, s->aggr);
		double a = s->aggr;
		setting(s, a, &fr.next_bound, &fr.next_prune);
		uint8_t fb[FRAM_BYTES];
		alcm_frame_report rec = fr;
		if (!s->opt.record_cpu) {
			rec.cpu_seconds = 0;
			rec.caq = sched_caq(fr.ratio, fr.raw_bytes);
		}
		store_report(fb, &rec);
		st = put_settings(s, w, e);
		if (!st)
			st = alcm_encoder_add_section(e, "FRAM", 0, fb, sizeof(fb));
		if (!st)
			st = alcm_encoder_finish(e);
		if (st)
			sfail(s, st, "%s", alcm_encoder_detail(e));
		/* The FRAM and directory bytes count too. */
		fr.stored_bytes = alcm_writer_bytes(w) - w0;
	}
	alcm_encoder_free(e);
	alcm_mem_free(&s->alloc, in);
	alcm_mem_free(&s->alloc, recon);
	if (!st) {
		s->frame++;
		if (rep)
			*rep = fr;
	}
	return st;
}

int alcm_stream_resume(alcm_stream *s, alcm_reader *r)
{
	if (!s || !r)
		return ALCM_E_ARG;
	uint32_t i = 0, k;
	s->frame = alcm_archive_frame_count(r);
	int rs = alcm_stream_options_load(r, &s->rec);
	if (rs && rs != ALCM_E_NOTFOUND)
		return sfail(s, rs, "the stream's settings record: %s", alcm_strerror(rs));
	s->has_rec = rs == ALCM_OK;
	s->opts_done = 0;
	s->ncaq = 0;
	s->calm = 0;
	s->ceiling = 1;
	while (alcm_reader_find_section(r, "FRAM", i, &k) == ALCM_OK) {
		uint8_t b[FRAM_BYTES];
		alcm_section_info si;
		alcm_frame_report fr;
		alcm_reader_section_info(r, k, &si);
		int st = si.length == FRAM_BYTES ? alcm_reader_section_read(r, k, b, sizeof(b))
		                                 : ALCM_E_CORRUPT;
		if (!st)
			st = alcm_frame_report_load(&fr, b, sizeof(b));
		if (st)
			return sfail(s, st, "FRAM section %u: %s", k, alcm_strerror(st));
		observe(s, sched_caq(fr.ratio, fr.raw_bytes), fr.snr_db);
		/* The decision stored with frame t sets frame t+1. */
		apply(s, fr.decision, fr.aggressiveness);
		i = k + 1;
	}
	return ALCM_OK;
}
