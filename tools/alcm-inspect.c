/* alcm-inspect: summary of an .alcm archive; --json; --verify checks every digest. */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: alcm-inspect [--json] [--verify] [--features] [--predictor] [-q] FILE.alcm\n"
	"\n"
	"Prints the format version, each section (type, offset, size, digest state) and each\n"
	"tensor (name, dtype, shape, mode, coding, bits, scales, pruned share, stored and original\n"
	"bytes, ratio). Coding is \"quant\" for a quantized tensor, else the lossless transforms\n"
	"of its chunks: raw, planes, float (byte planes of rotated float bits), palette, sparse\n"
	"(zeros elided). Then the metadata: every META pair, the user's metadata (a safetensors\n"
	"__metadata__) as 'metadata: KEY = VALUE' and tied weights as 'alias: NAME -> TARGET'. FILE '-' reads\n"
	"the archive from standard input.\n"
	"\n"
	"  --json       print the same as one JSON object\n"
	"  --verify     check every section digest and the zero padding; exit 5 naming the\n"
	"               first bad section\n"
	"  --pubkey F   with --verify: also check the archive's signature against the public\n"
	"               key file F (from alcm-keygen); exit 11 if unsigned, bad or another key's\n"
	"  --require-signature\n"
	"               with --pubkey F: say so when the archive is unsigned (exit 11, as\n"
	"               --pubkey alone does). A signature is checked only against a key you\n"
	"               trust: anyone can change an archive and sign it again with their own\n"
	"               key, so without --pubkey this is a usage error\n"
	"  --features   decode each float tensor and print the six features the entropy\n"
	"               predictor sees (spec 6.7.2) at the tensor's step (twice its bound; 2e-3\n"
	"               for lossless tensors), with predicted and stored bits per value (the\n"
	"               archive's predictor, or this build's default for a version 1 PRED)\n"
	"  --predictor  print every weight of the predictor the archive carries (PRED); the\n"
	"               summary shows its shape and feature normalisation\n"
	"  -q, --quiet  print nothing; only the exit status tells\n"
	"  -h, --help   this help        -V, --version   print the version\n"
	"\n" CLI_EXIT_CODES_HELP;

static const char *mode_name(int m)
{
	static const char *n[] = {"lossless", "max-error", "rel-error", "snr", "bits"};
	return m >= 0 && m <= 4 ? n[m] : "?";
}

/* How tensor i is coded: "quant" for a quantized tensor, else its chunks' lossless
 * transforms joined by '+' (spec 6.4), in transform order. */
static const char *coding_name(alcm_archive *a, size_t i, char *buf, size_t cap)
{
	static const char *n[] = {"raw", "planes", "float", "palette", "sparse"};
	alcm_tensor_info ti;
	uint32_t mask = 0;
	int delta = alcm_archive_tensor_delta(a, i); /* a checkpoint series' delta (6.12) */
	if (alcm_archive_tensor_info(a, i, &ti) || ti.mode != ALCM_MODE_LOSSLESS)
		return delta ? "delta:quant" : "quant";
	if (alcm_archive_tensor_coding(a, i, &mask) || !mask)
		return "-";
	snprintf(buf, cap, "%s", delta ? "delta:" : "");
	for (unsigned t = 0; t < 32; t++) {
		if (!(mask & (1u << t)))
			continue;
		size_t l = strlen(buf);
		int sep = l && buf[l - 1] != ':';
		if (t < 5)
			snprintf(buf + l, cap - l, "%s%s", sep ? "+" : "", n[t]);
		else
			snprintf(buf + l, cap - l, "%s%u", sep ? "+" : "", t);
	}
	return buf;
}

static const char *digest_name(int s)
{
	return s == ALCM_DIGEST_OK ? "ok" : s == ALCM_DIGEST_BAD ? "BAD" : "unchecked";
}

static void hex(FILE *f, const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", d[i]);
}

static double ratio(uint64_t raw, uint64_t stored)
{
	return stored ? (double)raw / (double)stored : 0;
}

static const char *sig_name(int s)
{
	static const char *n[] = {"none", "valid", "valid, but by another key", "BAD"};
	return s >= 0 && s <= 3 ? n[s] : "?";
}

static int sig_state = -1; /* -1: not checked */
static int sig_present;    /* the archive has a SIGN section */
static alcm_signature_info sig_info;

static const char *sig_hex(const uint8_t *k)
{
	static char buf[2 * ALCM_PUBLIC_KEY_BYTES + 1];
	for (int i = 0; i < ALCM_PUBLIC_KEY_BYTES; i++)
		snprintf(buf + 2 * i, 3, "%02x", k[i]);
	return buf;
}

/* What a signature of this algorithm covers (spec 6.10). */
static const char *sig_covers(unsigned algorithm)
{
	return algorithm == 2 ? "header, versions and every section"
	                      : "every section, not the minor version nor the SIGN entry";
}

static const char *decision_name(int d)
{
	static const char *n[] = {"start", "raise", "hold", "back off (caq)", "back off (snr)"};
	return d >= 0 && d <= 4 ? n[d] : "?";
}

/* Calls fn for each FRAM section that parses; a malformed one is reported and skipped. */
static void each_frame(alcm_reader *r, void (*fn)(const alcm_frame_report *, int first))
{
	uint32_t i = 0, k;
	int first = 1;
	while (alcm_reader_find_section(r, "FRAM", i, &k) == ALCM_OK) {
		alcm_section_info si;
		alcm_frame_report fr;
		uint8_t buf[256];
		alcm_reader_section_info(r, k, &si);
		if (si.length <= sizeof(buf) &&
		    alcm_reader_section_read(r, k, buf, (size_t)si.length) == ALCM_OK &&
		    alcm_frame_report_load(&fr, buf, (size_t)si.length) == ALCM_OK) {
			fn(&fr, first);
			first = 0;
		} else {
			cli_warn("section %u (FRAM) is malformed; skipped", k);
		}
		i = k + 1;
	}
}

static uint64_t frames_raw; /* raw bytes over every frame, for the total line */

static void frame_text(const alcm_frame_report *f, int first)
{
	frames_raw += f->raw_bytes;
	if (first)
		printf("  %5s  %8s  %8s  %8s  %9s  %7s  %10s  %6s  %s\n", "frame", "ratio", "cpu s",
		       "caq", "trend", "snr dB", "bound", "prune", "decision");
	printf("  %5u  %7.2fx  %8.3f  %8.3f  %+9.4f  %7.2f  %10.3g  %6.3f  %s\n", f->frame, f->ratio,
	       f->cpu_seconds, f->caq, f->caq_trend, f->snr_db, f->bound, f->prune,
	       decision_name(f->decision));
}

static void frame_json(const alcm_frame_report *f, int first)
{
	printf("%s{\"frame\":%u,\"raw_bytes\":%llu,\"stored_bytes\":%llu,\"ratio\":%.6g,"
	       "\"cpu_seconds\":%.6g,\"caq\":%.6g,\"caq_trend\":%.6g,\"snr_db\":%.6g,"
	       "\"max_abs_error\":%.6g,\"bound\":%.6g,\"prune\":%.6g,\"aggressiveness\":%.6g,"
	       "\"decision\":\"%s\",\"next_bound\":%.6g,\"next_prune\":%.6g}",
	       first ? "" : ",", f->frame, (unsigned long long)f->raw_bytes,
	       (unsigned long long)f->stored_bytes, f->ratio, f->cpu_seconds, f->caq, f->caq_trend,
	       isfinite(f->snr_db) ? f->snr_db : 999.0, f->max_abs_error, f->bound, f->prune,
	       f->aggressiveness, decision_name(f->decision), f->next_bound, f->next_prune);
}


/* ---- the entropy predictor and the features of each tensor ---------------------------- */

static int show_features, show_weights;

static void floats(const float *v, int n)
{
	for (int i = 0; i < n; i++)
		printf("%s%.9g", i ? (show_weights ? ", " : " ") : "", (double)v[i]);
}

static void json_floats(const float *v, int n)
{
	putchar('[');
	for (int i = 0; i < n; i++)
		printf("%s%.9g", i ? "," : "", (double)v[i]);
	putchar(']');
}

/* Features the weights read: 6 for PRED versions 1 and 2, ALCM_PRED_FEATURES since 3. */
static int pred_features(const alcm_predictor *p)
{
	return p->version == 1 || p->version == 2 ? 6 : ALCM_PRED_FEATURES;
}

static void predictor_text(alcm_archive *a)
{
	alcm_predictor p;
	if (alcm_archive_predictor(a, &p) != ALCM_OK) {
		printf("predictor: none stored\n");
		return;
	}
	int dflt = memcmp(&p, alcm_predictor_default(), sizeof(p)) == 0, nf = pred_features(&p);
	printf("predictor: %d-%d-1 MLP in PRED version %u (%s)\n", nf, ALCM_PRED_HIDDEN,
	       (unsigned)p.version,
	       dflt ? "this build's default weights" : "weights differ from this build's default");
	printf("  feature mean:  ");
	floats(p.mean, nf);
	printf("\n  feature scale: ");
	floats(p.scale, nf);
	printf("\n");
	if (!show_weights) {
		printf("  (--predictor prints all %d weights)\n", ALCM_PRED_HIDDEN * (nf + 2) + 1);
		return;
	}
	for (int j = 0; j < ALCM_PRED_HIDDEN; j++) {
		printf("  hidden %2d: w1 ", j);
		floats(p.w1[j], nf);
		printf("  b1 %.9g  w2 %.9g\n", (double)p.b1[j], (double)p.w2[j]);
	}
	printf("  output bias b2 %.9g\n", (double)p.b2);
}

static void predictor_json(alcm_archive *a)
{
	alcm_predictor p;
	if (!a || alcm_archive_predictor(a, &p) != ALCM_OK) {
		printf(",\"predictor\":null");
		return;
	}
	int nf = pred_features(&p);
	printf(",\"predictor\":{\"features\":%d,\"hidden\":%d,\"default\":%s,\"mean\":",
	       nf, ALCM_PRED_HIDDEN,
	       memcmp(&p, alcm_predictor_default(), sizeof(p)) == 0 ? "true" : "false");
	json_floats(p.mean, nf);
	printf(",\"scale\":");
	json_floats(p.scale, nf);
	printf(",\"w1\":[");
	for (int j = 0; j < ALCM_PRED_HIDDEN; j++) {
		printf("%s", j ? "," : "");
		json_floats(p.w1[j], nf);
	}
	printf("],\"b1\":");
	json_floats(p.b1, ALCM_PRED_HIDDEN);
	printf(",\"w2\":");
	json_floats(p.w2, ALCM_PRED_HIDDEN);
	printf(",\"b2\":%.9g}", (double)p.b2);
}

/* The step the features are taken at: the tensor's own (twice its max-error bound, or
 * twice the largest error it has), else 2e-3, the step of --max-error 1e-3. */
static double feature_step(const alcm_tensor_info *ti)
{
	if (ti->mode == ALCM_MODE_MAX_ERROR && ti->bound > 0)
		return 2 * ti->bound;
	if (ti->mode != ALCM_MODE_LOSSLESS && ti->max_abs_error > 0)
		return 2 * ti->max_abs_error;
	return 2e-3;
}

/* Decodes tensor i and computes its features. @return 0, 1 if not a float tensor, or an
 * exit code. */
static int tensor_features(alcm_archive *a, size_t i, const alcm_tensor_info *ti,
                           float feat[ALCM_PRED_FEATURES], double *step)
{
	if (!alcm_dtype_is_float(ti->dtype) || ti->elements == 0)
		return 1;
	uint8_t *buf = malloc(ti->raw_bytes);
	if (!buf)
		return EXIT_NOMEM;
	int st = alcm_archive_decode(a, i, buf, ti->raw_bytes);
	if (st) {
		free(buf);
		return cli_fail(st, "decode", "tensor", alcm_archive_detail(a));
	}
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	t.name = ti->name;
	t.name_len = ti->name_len;
	t.dtype = ti->dtype;
	t.ndim = ti->ndim;
	memcpy(t.shape, ti->shape, sizeof(t.shape));
	t.data = buf;
	t.nbytes = ti->raw_bytes;
	*step = feature_step(ti);
	st = alcm_tensor_features(&t, *step, feat);
	free(buf);
	return st ? cli_fail(st, "compute the features of", "tensor", "") : 0;
}

/* The weights that predict from the features: the archive's when they read these features
 * (PRED version 2); else this build's default, since version 1 weights (those a 1.0 archive
 * carries) read features no longer computed (spec 6.7.2.1). */
static const alcm_predictor *feature_predictor(alcm_archive *a, alcm_predictor *p)
{
	if (alcm_archive_predictor(a, p) == ALCM_OK && p->version != 1)
		return p;
	return alcm_predictor_default();
}

static int features_text(alcm_archive *a)
{
	alcm_predictor p;
	const alcm_predictor *pp = feature_predictor(a, &p);
	printf("features: at step = 2 x bound (2e-3 for lossless tensors); predicted and stored "
	       "bits per value\n");
	printf("  %-32s  %10s  %7s  %8s  %7s  %8s  %7s  %7s  %9s  %7s\n", "name", "step",
	       "log2 n", "log2 sd/s", "resol", "|x|<s/2", "entropy", "lg max", "predicted",
	       "stored");
	size_t nt = alcm_archive_tensor_count(a);
	for (size_t i = 0; i < nt; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		float f[ALCM_PRED_FEATURES];
		double step;
		int rc = tensor_features(a, i, &ti, f, &step);
		if (rc == 1)
			continue;
		if (rc)
			return rc;
		double stored = 8.0 * (double)ti.stored_bytes / (double)ti.elements;
		printf("  %-32s  %10.3g  %7.2f  %8.2f  %7.2f  %8.4f  %7.2f  %7.2f  ",
		       cli_name(ti.name, ti.name_len), step, (double)f[0], (double)f[1],
		       (double)f[2], (double)f[3], (double)f[4], (double)f[5]);
		printf("%9.2f", alcm_predict_bits(pp, f));
		printf("  %7.2f%s\n", stored, ti.mode == ALCM_MODE_LOSSLESS ? " (lossless)" : "");
	}
	return 0;
}

static int features_json(alcm_archive *a, size_t i, const alcm_tensor_info *ti)
{
	float f[ALCM_PRED_FEATURES];
	double step;
	int rc = tensor_features(a, i, ti, f, &step);
	if (rc == 1)
		return 0;
	if (rc)
		return rc;
	alcm_predictor p;
	printf(",\"features\":{\"step\":%.17g,\"values\":", step);
	json_floats(f, ALCM_PRED_FEATURES);
	printf(",\"predicted_bits_per_value\":%.6f", alcm_predict_bits(feature_predictor(a, &p), f));
	printf("}");
	return 0;
}

/*
 * The records of spec 6.1 read for people: user.K (metadata such as a safetensors
 * __metadata__) and alcm.alias (tied weights). Calls fn(key, key_len, value, value_len) for
 * each metadata pair (kind 0) and each alias with its target (kind 1), in order.
 */
static void each_record(const alcm_archive *a,
                        void (*fn)(int kind, const char *k, size_t kl, const char *v,
                                   size_t vl, int first))
{
	int first[2] = {1, 1};
	for (size_t i = 0; a && i < alcm_archive_meta_count(a); i++) {
		const char *k;
		const uint8_t *v;
		size_t vl;
		alcm_archive_meta(a, i, &k, &v, &vl);
		if (strncmp(k, "user.", 5) == 0) {
			fn(0, k + 5, strlen(k) - 5, (const char *)v, vl, first[0]);
			first[0] = 0;
		} else if (strcmp(k, "alcm.alias") == 0 && vl >= 4) {
			/* u32 count, then count x {u32 len, alias, u32 len, target}, checked as read */
			size_t n = (size_t)v[0] | (size_t)v[1] << 8 | (size_t)v[2] << 16 |
			           (size_t)v[3] << 24, pos = 4;
			for (size_t j = 0; j < n; j++) {
				const char *s[2];
				size_t l[2];
				for (int h = 0; h < 2; h++) {
					if (vl - pos < 4)
						return;
					l[h] = (size_t)v[pos] | (size_t)v[pos + 1] << 8 |
					       (size_t)v[pos + 2] << 16 | (size_t)v[pos + 3] << 24;
					if (l[h] > vl - pos - 4)
						return;
					s[h] = (const char *)v + pos + 4;
					pos += 4 + l[h];
				}
				fn(1, s[0], l[0], s[1], l[1], first[1]);
				first[1] = 0;
			}
		}
	}
}

static void record_text(int kind, const char *k, size_t kl, const char *v, size_t vl, int first)
{
	(void)first;
	if (kind == 0)
		printf("metadata: %s = %s\n", cli_name(k, kl), cli_name(v, vl));
	else
		printf("alias:    %s -> %s (stored once)\n", cli_name(k, kl), cli_name(v, vl));
}

static void records_text(const alcm_archive *a)
{
	each_record(a, record_text);
}

static int json_kind; /* which records record_json prints */

static void record_json(int kind, const char *k, size_t kl, const char *v, size_t vl, int first)
{
	if (kind != json_kind)
		return;
	if (!first)
		putchar(',');
	cli_json_string(stdout, k, kl);
	putchar(':');
	cli_json_string(stdout, v, vl);
}

static int print_text(alcm_reader *r, alcm_archive *a, const char *path, int verified)
{
	unsigned maj, min;
	alcm_reader_version(r, &maj, &min);
	uint32_t n = alcm_reader_section_count(r);
	printf("file:     %s\n", path);
	printf("format:   %u.%u%s, generation %llu, %llu bytes\n", maj, min,
	       (alcm_reader_flags(r) & ALCM_FLAG_STREAM) ? " (stream)" : "",
	       (unsigned long long)alcm_reader_generation(r),
	       (unsigned long long)alcm_reader_file_size(r));
	if (alcm_reader_tail_bytes(r))
		printf("tail:     %llu uncommitted bytes after the table (interrupted append)\n",
		       (unsigned long long)alcm_reader_tail_bytes(r));
	printf("digests:  %s\n", verified ? "all verified" : "not checked (use --verify)");
	if (sig_state >= 0 && sig_present)
		printf("signature: %s (algorithm %u: %s)\n", sig_name(sig_state), sig_info.algorithm,
		       sig_covers(sig_info.algorithm));
	else if (sig_state >= 0)
		printf("signature: %s\n", sig_name(sig_state));
	else if (sig_present)
		printf("signature: algorithm %u, claims key %s; not checked (use --verify --pubkey "
		       "KEY.pub)\n", sig_info.algorithm, sig_hex(sig_info.signer));
	printf("sections: %u\n", n);
	printf("  %4s  %-4s  %-8s  %6s  %12s  %12s  %s\n", "#", "type", "flags", "tag", "offset",
	       "length", "digest");
	for (uint32_t i = 0; i < n; i++) {
		alcm_section_info si;
		alcm_reader_section_info(r, i, &si);
		printf("  %4u  %-4s  %-8s  %6u  %12llu  %12llu  %s%s\n", i, si.type,
		       (si.flags & ALCM_SECTION_CRITICAL) ? "critical" : "optional", si.tag,
		       (unsigned long long)si.offset, (unsigned long long)si.length,
		       digest_name(si.digest_state), si.known ? "" : " (unknown type, skipped)");
	}
	if (!a) {
		printf("tensors:  none (no tensor directory)\n");
		return 0;
	}
	size_t nt = alcm_archive_tensor_count(a);
	uint64_t raw = 0, stored = 0;
	printf("tensors:  %zu\n", nt);
	printf("  %-32s  %-8s  %-16s  %-9s  %-14s  %4s  %6s  %7s  %10s  %10s  %7s\n", "name",
	       "dtype", "shape", "mode", "coding", "bits", "scales", "pruned", "stored", "original",
	       "ratio");
	for (size_t i = 0; i < nt; i++) {
		alcm_tensor_info ti;
		char cb[64];
		alcm_archive_tensor_info(a, i, &ti);
		raw += ti.raw_bytes;
		stored += ti.stored_bytes;
		printf("  %-32s  %-8s  %-16s  %-9s  %-14s  %4u  %6llu  %6.2f%%  %10llu  %10llu  %6.2fx\n",
		       cli_name(ti.name, ti.name_len), alcm_dtype_name(ti.dtype),
		       cli_shape(ti.shape, ti.ndim), mode_name(ti.mode), coding_name(a, i, cb, sizeof(cb)),
		       ti.bits,
		       (unsigned long long)ti.scales,
		       ti.elements ? 100.0 * (double)ti.pruned / (double)ti.elements : 0.0,
		       (unsigned long long)ti.stored_bytes, (unsigned long long)ti.raw_bytes,
		       ratio(ti.raw_bytes, ti.stored_bytes));
	}
	uint32_t nf = alcm_archive_frame_count(r);
	alcm_series_frame sf;
	if (alcm_series_frame_read(r, alcm_archive_frame(a), &sf) == ALCM_OK) {
		if (sf.keyframe)
			printf("series:   frame %u is a keyframe\n", sf.frame);
		else
			printf("series:   frame %u is a delta against frame %u%s\n", sf.frame, sf.ref_frame,
			       sf.ref_base ? " of a base archive (alcm-unpack --base)" : "");
	}
	if (nf > 1 || alcm_reader_find_section(r, "FRAM", 0, NULL) == ALCM_OK) {
		printf("frames:   %u (tensors above are frame %u)\n", nf, alcm_archive_frame(a));
		each_frame(r, frame_text);
		if (frames_raw) /* streams: every frame's tensors (a series has no FRAM) */
			raw = frames_raw;
	}
	printf("total:    %llu bytes of tensors in %llu bytes of file (%.2fx)\n",
	       (unsigned long long)raw, (unsigned long long)alcm_reader_file_size(r),
	       ratio(raw, alcm_reader_file_size(r)));
	size_t nm = alcm_archive_meta_count(a);
	for (size_t i = 0; i < nm; i++) {
		const char *k;
		const uint8_t *v;
		size_t vl;
		alcm_archive_meta(a, i, &k, &v, &vl);
		printf("meta:     %s = %s\n", cli_name(k, strlen(k)), cli_name((const char *)v, vl));
	}
	records_text(a);
	(void)stored;
	predictor_text(a);
	return show_features ? features_text(a) : 0;
}

static int print_json(alcm_reader *r, alcm_archive *a, const char *path, int verified)
{
	unsigned maj, min;
	alcm_reader_version(r, &maj, &min);
	uint32_t n = alcm_reader_section_count(r);
	printf("{\"file\":");
	cli_json_string(stdout, path, strlen(path));
	printf(",\"version\":\"%u.%u\",\"stream\":%s,\"generation\":%llu,\"file_bytes\":%llu,"
	       "\"tail_bytes\":%llu,\"verified\":%s,",
	       maj, min, (alcm_reader_flags(r) & ALCM_FLAG_STREAM) ? "true" : "false",
	       (unsigned long long)alcm_reader_generation(r),
	       (unsigned long long)alcm_reader_file_size(r),
	       (unsigned long long)alcm_reader_tail_bytes(r), verified ? "true" : "false");
	if (sig_state >= 0)
		printf("\"signature\":\"%s\",", sig_name(sig_state));
	if (sig_present)
		printf("\"signature_algorithm\":%u,\"signature_claimed_key\":\"%s\",",
		       sig_info.algorithm, sig_hex(sig_info.signer));
	printf("\"sections\":[");
	for (uint32_t i = 0; i < n; i++) {
		alcm_section_info si;
		alcm_reader_section_info(r, i, &si);
		printf("%s{\"index\":%u,\"type\":", i ? "," : "", i);
		cli_json_string(stdout, si.type, 4);
		printf(",\"critical\":%s,\"known\":%s,\"tag\":%u,\"offset\":%llu,\"length\":%llu,"
		       "\"digest\":\"",
		       (si.flags & ALCM_SECTION_CRITICAL) ? "true" : "false",
		       si.known ? "true" : "false", si.tag, (unsigned long long)si.offset,
		       (unsigned long long)si.length);
		hex(stdout, si.digest, 32);
		printf("\",\"digest_state\":\"%s\"}", digest_name(si.digest_state));
	}
	printf("],\"tensors\":[");
	size_t nt = a ? alcm_archive_tensor_count(a) : 0;
	for (size_t i = 0; i < nt; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, i, &ti);
		printf("%s{\"name\":", i ? "," : "");
		cli_json_string(stdout, ti.name, ti.name_len);
		printf(",\"dtype\":\"%s\",\"shape\":[", alcm_dtype_name(ti.dtype));
		for (uint32_t d = 0; d < ti.ndim; d++)
			printf("%s%llu", d ? "," : "", (unsigned long long)ti.shape[d]);
		char cb[64];
		printf("],\"mode\":\"%s\",\"coding\":\"%s\",\"bits\":%u,\"bound\":%.17g,\"max_abs_error\":%.17g,"
		       "\"scales\":%llu,\"pruned\":%llu,\"escapes\":%llu,\"chunks\":%u,"
		       "\"stored_bytes\":%llu,\"original_bytes\":%llu,\"ratio\":%.6f",
		       mode_name(ti.mode), coding_name(a, i, cb, sizeof(cb)), ti.bits, ti.bound,
		       ti.max_abs_error,
		       (unsigned long long)ti.scales, (unsigned long long)ti.pruned,
		       (unsigned long long)ti.escapes, ti.chunks, (unsigned long long)ti.stored_bytes,
		       (unsigned long long)ti.raw_bytes, ratio(ti.raw_bytes, ti.stored_bytes));
		int rc = show_features ? features_json(a, i, &ti) : 0;
		if (rc)
			return rc;
		putchar('}');
	}
	printf("],\"frames\":[");
	each_frame(r, frame_json);
	printf("]");
	alcm_series_frame sf;
	if (a && alcm_series_frame_read(r, alcm_archive_frame(a), &sf) == ALCM_OK) {
		printf(",\"series\":{\"frame\":%u,\"keyframe\":%s", sf.frame,
		       sf.keyframe ? "true" : "false");
		if (!sf.keyframe) {
			printf(",\"ref_frame\":%u,\"ref_base\":%s", sf.ref_frame,
			       sf.ref_base ? "true" : "false");
			if (sf.ref_base) {
				printf(",\"base_id\":\"");
				hex(stdout, sf.base_id, 32);
				putchar('"');
			}
		}
		putchar('}');
	}
	printf(",\"meta\":{");
	size_t nm = a ? alcm_archive_meta_count(a) : 0;
	for (size_t i = 0; i < nm; i++) {
		const char *k;
		const uint8_t *v;
		size_t vl;
		alcm_archive_meta(a, i, &k, &v, &vl);
		printf("%s", i ? "," : "");
		cli_json_string(stdout, k, strlen(k));
		putchar(':');
		cli_json_string(stdout, (const char *)v, vl);
	}
	printf("},\"metadata\":{");
	json_kind = 0;
	each_record(a, record_json);
	printf("},\"aliases\":{");
	json_kind = 1;
	each_record(a, record_json);
	putchar('}');
	predictor_json(a);
	printf("}\n");
	return 0;
}

int main(int argc, char **argv)
{
	cli_init("alcm-inspect");
	argv[0] = (char *)cli_prog; /* getopt's messages name the tool, not its path */
	int json = 0, verify = 0, require = 0;
	const char *pubkey = NULL;
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},  {"verify", no_argument, NULL, 'c'},
		{"pubkey", required_argument, NULL, 'p'},
		{"require-signature", no_argument, NULL, 'r'},
		{"features", no_argument, NULL, 'F'}, {"predictor", no_argument, NULL, 'P'},
		{"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "qhV", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'c': verify = 1; break;
		case 'p': pubkey = optarg; break;
		case 'r': require = 1, verify = 1; break;
		case 'F': show_features = 1; break;
		case 'P': show_weights = 1; break;
		case 'q': cli_quiet = 1; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': return cli_version();
		default: return cli_usage_error(usage, NULL);
		}
	}
	if (optind != argc - 1) {
		return cli_usage_error(usage, "expected one FILE argument");
	}
	const char *path = argv[optind];
	int rc = cli_stdin_path(path, &path);
	if (rc)
		return rc;
	uint8_t pk[ALCM_PUBLIC_KEY_BYTES];
	if (require && !pubkey) {
		cli_err("--require-signature needs --pubkey KEY.pub: a signature checked against the "
		        "key stored beside it proves nothing, since anyone can change an archive and "
		        "sign it again with their own key");
		return EXIT_USAGE;
	}
	if (pubkey) {
		if (!verify) {
			cli_err("--pubkey needs --verify: a signature proves nothing without the digests");
			return EXIT_USAGE;
		}
		int krc = cli_read_key(pubkey, 0, pk, sizeof(pk));
		if (krc)
			return krc;
	}
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	int st = alcm_reader_open_file(&r, path, NULL, NULL, 0);
	if (st) {
		rc = cli_fail(st, "read", path, alcm_reader_detail(r));
		goto out;
	}
	if (verify) {
		uint32_t bad;
		st = alcm_reader_verify(r, &bad);
		if (st) {
			rc = cli_fail(st, "verify", path, alcm_reader_detail(r));
			goto out;
		}
	}
	st = alcm_reader_signature_info(r, &sig_info);
	sig_present = st == ALCM_OK;
	if (pubkey) {
		st = alcm_reader_check_signature(r, pk, &sig_state);
		if (st) {
			rc = cli_fail(st, "check the signature of", path, alcm_reader_detail(r));
			goto out;
		}
		if (sig_state != ALCM_SIG_VALID) {
			cli_err("cannot verify '%s': signature %s%s%s", cli_display(path),
			        sig_state == ALCM_SIG_NONE ? "missing" : sig_name(sig_state),
			        sig_state == ALCM_SIG_OTHER_KEY ? ": it claims key " : "",
			        sig_state == ALCM_SIG_OTHER_KEY ? sig_hex(sig_info.signer) : "");
			rc = EXIT_SIGNATURE;
			goto out;
		}
	}
	uint32_t dummy;
	if (alcm_archive_find_dir(r, 0, &dummy) == ALCM_OK) {
		st = alcm_archive_open(&a, r, NULL);
		if (st) {
			rc = cli_fail(st, "read", path, alcm_archive_detail(a));
			goto out;
		}
	}
	if (!cli_quiet) {
		rc = json ? print_json(r, a, cli_display(path), verify)
		          : print_text(r, a, cli_display(path), verify);
		if (fflush(stdout) != 0) {
			cli_err("cannot write the output");
			rc = EXIT_IO;
		}
	}
out:
	alcm_archive_free(a);
	alcm_reader_free(r);
	return rc;
}
