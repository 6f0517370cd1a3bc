/* alcm-unpack: decode an .alcm archive into .npy, .npz, .safetensors, .pt, .h5, or the
 * files of a sharded checkpoint. */
#include "cli.h"
#include "cli_h5.h"

#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
	"usage: alcm-unpack IN.alcm [-o OUTPUT.{npz,npy,safetensors,pt,h5}] [options]\n"
	"       alcm-unpack IN.alcm... [options]\n"
	"       alcm-unpack IN.alcm -o DIR/ [options]\n"
	"\n"
	"Decodes the tensors of an archive and writes them in the format named by OUTPUT's\n"
	"extension (or --format; .pt, .pth and .bin: a torch.save file that\n"
	"torch.load(weights_only=True) reads). Every section read is checked against its BLAKE2b\n"
	"digest. An archive packed from .h5 gives back its groups, attributes, links, datatypes\n"
	"and storage in .h5 output. IN '-' reads the archive from standard input (spooled to\n"
	"$TMPDIR). The archive's records come back where the format holds them: a safetensors\n"
	"__metadata__; tied weights, which share one storage again in .pt and are written as\n"
	"copies in .npz and .safetensors; a .pt's parameters and _metadata.\n"
	"\n"
	"An archive packed from a sharded checkpoint (a *.safetensors.index.json) is written back\n"
	"as the same shard files and index with -o DIR/ (a directory: a trailing slash, or one\n"
	"that exists; created if missing), byte for byte when it was packed losslessly from files\n"
	"the safetensors library wrote. Any OUTPUT file instead gets all its tensors in one file.\n"
	"\n"
	"  -o, --output FILE    file (or DIR/) to write (default: IN without .alcm, so that\n"
	"                       model.safetensors.alcm gives model.safetensors; several INPUTs\n"
	"                       without -o each give theirs); written atomically; '-' writes\n"
	"                       standard output once every tensor is decoded (needs --format)\n"
	"  -F, --format FMT     npz, npy, safetensors, pt or h5, whatever OUTPUT's extension\n"
	"  -f, --force          replace OUTPUT if it exists (with -o -: write to a terminal)\n"
	"  -t, --tensor NAME    extract only this tensor (repeatable); the others are not decoded\n"
	"      --frame N        decode frame N of a stream or series archive (default: the last);\n"
	"                       a series frame decodes from its keyframe and the deltas after it\n"
	"      --base BASE      the base archive a series frame was coded against (alcm-pack\n"
	"                       --delta-from); its identity is checked\n"
	"      --no-verify      skip digest checks (trusted archives only)\n"
	"      --allow-unsafe-names  write .npz member names that are not safe relative paths\n"
	"                       (absolute, a drive, '..', '.' or empty components, backslashes,\n"
	"                       NUL bytes): refused by default, as a zip extractor could write\n"
	"                       them outside its directory\n"
	"      --pubkey F       write nothing unless the archive is signed by the public key in\n"
	"                       file F (from alcm-keygen): exit 11 if unsigned, signed by another\n"
	"                       key, or changed since it was signed\n"
	"  -T, --threads N      decoding threads (default: the CPUs it may use)\n"
	"HDF5 output (.h5, .hdf5):\n"
	"      --h5-chunk BYTES chunk every dataset, chunks of at most BYTES (k, M suffixes)\n"
	"      --h5-gzip N      deflate level 0..9 on every dataset instead of the source's filters\n"
	"      --h5-shuffle     with --h5-gzip: the shuffle filter before deflate\n"
	"      --allow-external recreate the external links the archive records (never followed)\n"
	"  -q, --quiet          no summary    -v, --verbose   one line per tensor\n"
	"  -h, --help           this help     -V, --version   print the version\n"
	"\n"
	".npy holds exactly one tensor: use --tensor when the archive has several.\n"
	"bfloat16 tensors can be written to .safetensors and .pt only (numpy has no bfloat16);\n"
	"uint16/32/64 tensors not to .pt (torch has no storage for them). An archive the output\n"
	"format cannot hold (names, shapes) is refused with exit 7 before anything is decoded.\n"
	"\n" CLI_EXIT_CODES_HELP;

/* Where decoded tensors go: the core's writers, or the HDF5 bridge for .h5. */
typedef struct sink {
	int fmt;
	alcm_output *o;
#ifdef ALCM_HAVE_HDF5
	alcm_h5_output *h5;
	const cli_h5_api *h5api; /* set with h5 */
#endif
} sink;

/* A thread that writes one tensor at a time to a core sink, behind the decoder. */
typedef struct writer_thread {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	sink *k;
	const alcm_tensor *t; /* the tensor to write, NULL when idle */
	int st, quit, started;
} writer_thread;

static void *wr_main(void *v)
{
	writer_thread *wr = v;
	pthread_mutex_lock(&wr->mu);
	for (;;) {
		while (!wr->t && !wr->quit)
			pthread_cond_wait(&wr->cv, &wr->mu);
		if (!wr->t)
			break;
		const alcm_tensor *t = wr->t;
		pthread_mutex_unlock(&wr->mu);
		int st = wr->st ? wr->st : alcm_output_write(wr->k->o, t);
		pthread_mutex_lock(&wr->mu);
		wr->st = st;
		wr->t = NULL;
		pthread_cond_broadcast(&wr->cv);
	}
	pthread_mutex_unlock(&wr->mu);
	return NULL;
}

/* @return 0, or nonzero if the thread cannot start (then the caller writes). */
static int wr_start(writer_thread *wr, sink *k)
{
	wr->k = k;
	wr->t = NULL;
	wr->st = wr->quit = 0;
	if (pthread_mutex_init(&wr->mu, NULL))
		return 1;
	if (pthread_cond_init(&wr->cv, NULL)) {
		pthread_mutex_destroy(&wr->mu);
		return 1;
	}
	if (pthread_create(&wr->th, NULL, wr_main, wr)) {
		pthread_cond_destroy(&wr->cv);
		pthread_mutex_destroy(&wr->mu);
		return 1;
	}
	wr->started = 1;
	return 0;
}

/* Waits for the tensor being written, then hands over t (NULL: only waits).
 * @return the status of the writes so far. */
static int wr_put(writer_thread *wr, const alcm_tensor *t)
{
	pthread_mutex_lock(&wr->mu);
	while (wr->t)
		pthread_cond_wait(&wr->cv, &wr->mu);
	int st = wr->st;
	if (!st && t) {
		wr->t = t;
		pthread_cond_broadcast(&wr->cv);
	}
	pthread_mutex_unlock(&wr->mu);
	return st;
}

static void wr_stop(writer_thread *wr)
{
	if (!wr->started)
		return;
	pthread_mutex_lock(&wr->mu);
	while (wr->t)
		pthread_cond_wait(&wr->cv, &wr->mu);
	wr->quit = 1;
	pthread_cond_broadcast(&wr->cv);
	pthread_mutex_unlock(&wr->mu);
	pthread_join(wr->th, NULL);
	pthread_cond_destroy(&wr->cv);
	pthread_mutex_destroy(&wr->mu);
	wr->started = 0;
}

/* Decoded pieces of plan[0..n) go straight to the output, each tensor begun when its first
 * piece comes (or at the end: those without elements); st keeps the output's status apart
 * from the archive's. */
typedef struct piece_sink {
	alcm_output *o;
	const alcm_tensor *plan;
	size_t n, begun;
	int st;
	cli_progress *p;
} piece_sink;

static int piece_begin(piece_sink *ps, size_t upto)
{
	while (!ps->st && ps->begun < upto)
		ps->st = alcm_output_begin(ps->o, &ps->plan[ps->begun++]);
	return ps->st;
}

static int piece_out(void *ctx, size_t pos, const void *data, size_t len)
{
	piece_sink *ps = ctx;
	if (piece_begin(ps, pos + 1))
		return ps->st;
	ps->st = alcm_output_append(ps->o, data, len);
	cli_progress_add(ps->p, len);
	return ps->st;
}

typedef struct h5_args {
	uint64_t chunk;
	int gzip, shuffle, external, given;
} h5_args;

#ifdef ALCM_HAVE_HDF5
/* The archive's ATTR payload (malloc'd) or NULL. @return 0 or an exit code. */
static int read_structure(alcm_reader *r, const char *in, void **buf, size_t *len)
{
	uint32_t idx;
	alcm_section_info si;
	*buf = NULL;
	*len = 0;
	if (alcm_reader_find_section(r, "ATTR", 0, &idx) != ALCM_OK)
		return 0;
	/* The last ATTR wins, as for every single-instance section (spec 5.5). */
	for (uint32_t j = idx; alcm_reader_find_section(r, "ATTR", j + 1, &j) == ALCM_OK;)
		idx = j;
	if (alcm_reader_section_info(r, idx, &si))
		return EXIT_FAIL;
	*buf = malloc(si.length ? (size_t)si.length : 1);
	if (!*buf)
		return EXIT_NOMEM;
	int st = alcm_reader_section_read(r, idx, *buf, (size_t)si.length);
	if (st) {
		free(*buf);
		*buf = NULL;
		return cli_fail(st, "read", in, alcm_reader_detail(r));
	}
	*len = (size_t)si.length;
	return 0;
}
#endif

/* The archive's META records go to the output, which keeps those its format holds. Not
 * for a selection of tensors: aliases and layouts describe the whole archive. */
static int give_meta(alcm_output *o, const alcm_archive *a)
{
	for (size_t i = 0; i < alcm_archive_meta_count(a); i++) {
		const char *key;
		const uint8_t *v;
		size_t vl;
		int st = alcm_archive_meta(a, i, &key, &v, &vl);
		if (!st)
			st = alcm_output_set_meta(o, key, v, vl);
		if (st)
			return st;
	}
	return ALCM_OK;
}

static int sink_open(sink *k, const char *out, unsigned wflags, const h5_args *h,
                     alcm_reader *r, const alcm_archive *a, const char *in,
                     const alcm_tensor *plan, size_t n, int partial)
{
	if (k->fmt != ALCM_FILE_HDF5) {
		int st = alcm_output_open(&k->o, out, k->fmt, wflags, NULL);
		if (!st && !partial)
			st = give_meta(k->o, a);
		if (!st)
			st = alcm_output_plan(k->o, plan, n);
		return st ? cli_fail(st, "write", out, alcm_output_detail(k->o)) : 0;
	}
#ifdef ALCM_HAVE_HDF5
	void *sbuf;
	size_t slen;
	int rc = read_structure(r, in, &sbuf, &slen);
	if (rc)
		return rc;
	char why[4200];
	const cli_h5_api *h5api = cli_h5(why, sizeof(why));
	if (!h5api) {
		free(sbuf);
		cli_err("cannot write '%s': the HDF5 support of the tools is missing: %s",
		        cli_display(out), why);
		return EXIT_UNSUPPORTED;
	}
	k->h5api = h5api;
	alcm_h5_output_options opt;
	h5api->output_options_default(&opt);
	opt.chunk_bytes = h->chunk;
	if (h->gzip >= 0) {
		opt.gzip_level = h->gzip;
		opt.shuffle = h->shuffle;
	}
	unsigned f = wflags | (h->external ? ALCM_H5_OUT_ALLOW_EXTERNAL : 0) |
	             (partial ? ALCM_H5_OUT_PARTIAL : 0);
	int st = h5api->output_open(&k->h5, out, f, sbuf, slen, &opt);
	free(sbuf);
	if (!st)
		st = k->h5api->output_plan(k->h5, plan, n);
	return st ? cli_fail(st, "write", out, k->h5api->output_detail(k->h5)) : 0;
#else
	(void)wflags, (void)h, (void)r, (void)a, (void)in, (void)plan, (void)n, (void)partial;
	cli_err("cannot write '%s': this build has no HDF5 support (ALCM_WITH_HDF5=OFF)", out);
	return EXIT_UNSUPPORTED;
#endif
}

static int sink_write(sink *k, const alcm_tensor *t)
{
#ifdef ALCM_HAVE_HDF5
	if (k->h5)
		return k->h5api->output_write(k->h5, t);
#endif
	return alcm_output_write(k->o, t);
}

static int sink_commit(sink *k)
{
#ifdef ALCM_HAVE_HDF5
	if (k->h5)
		return k->h5api->output_commit(k->h5);
#endif
	return alcm_output_commit(k->o);
}

static const char *sink_detail(const sink *k)
{
#ifdef ALCM_HAVE_HDF5
	if (k->h5)
		return k->h5api->output_detail(k->h5);
#endif
	return k->o ? alcm_output_detail(k->o) : "";
}

static void sink_free(sink *k)
{
#ifdef ALCM_HAVE_HDF5
	if (k->h5)
		k->h5api->output_free(k->h5);
#endif
	alcm_output_free(k->o);
}

/* Reports a failed decode (with the --base hint a series frame needs). @return the exit code. */
static int decode_failed(int st, alcm_archive *a, alcm_reader *r, const alcm_reader *base,
                         const char *in)
{
	int rc = cli_fail(st, "read", in, alcm_archive_detail(a));
	char hint[4096] = "";
	uint8_t id[32];
	if (st == ALCM_E_NOTFOUND && !base) {
		if (alcm_series_base_hint(r, id, hint, sizeof(hint)) != ALCM_OK)
			hint[0] = '\0';
		cli_err("give the base archive with --base BASE%s%s%s",
		        hint[0] ? " (it was packed against '" : "", hint, hint[0] ? "')" : "");
	}
	return rc;
}

enum { OPT_H5CHUNK = 256, OPT_H5GZIP, OPT_H5SHUFFLE, OPT_EXTERNAL, OPT_UNSAFE, OPT_PUBKEY, OPT_FRAME,
       OPT_BASE };

/* .npz member names become paths when extracted: refuse the unsafe ones before decoding. */
static int names_safe(const alcm_tensor *plan, size_t n, const char *out)
{
	for (size_t j = 0; j < n; j++) {
		const char *why;
		if (!alcm_name_safe(plan[j].name, plan[j].name_len, &why)) {
			cli_err("cannot write '%s': tensor '%s' has a name that is not a safe member path "
			        "(%s): a zip extractor could write it outside its directory; "
			        "--allow-unsafe-names writes it anyway", cli_display(out),
			        cli_name(plan[j].name, plan[j].name_len), why);
			return EXIT_UNSUPPORTED;
		}
	}
	return 0;
}

static int format_named(const char *s)
{
	static const char *const names[] = {"npy", "npz", "safetensors", "h5", "hdf5", "pt"};
	static const int fmts[] = {ALCM_FILE_NPY, ALCM_FILE_NPZ, ALCM_FILE_SAFETENSORS,
	                           ALCM_FILE_HDF5, ALCM_FILE_HDF5, ALCM_FILE_PT};
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return fmts[i];
	return ALCM_FILE_UNKNOWN;
}

int main(int argc, char **argv)
{
	cli_init("alcm-unpack");
	argv[0] = (char *)cli_prog; /* getopt's messages name the tool, not its path */
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		{"tensor", required_argument, NULL, 't'}, {"no-verify", no_argument, NULL, 'n'},
		{"threads", required_argument, NULL, 'T'},
		{"h5-chunk", required_argument, NULL, OPT_H5CHUNK},
		{"h5-gzip", required_argument, NULL, OPT_H5GZIP},
		{"h5-shuffle", no_argument, NULL, OPT_H5SHUFFLE},
		{"allow-external", no_argument, NULL, OPT_EXTERNAL},
		{"allow-unsafe-names", no_argument, NULL, OPT_UNSAFE},
		{"format", required_argument, NULL, 'F'},
		{"pubkey", required_argument, NULL, OPT_PUBKEY},
		{"frame", required_argument, NULL, OPT_FRAME}, {"base", required_argument, NULL, OPT_BASE},
		{"quiet", no_argument, NULL, 'q'}, {"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *out = NULL, *pubkey = NULL, *base_path = NULL;
	int force = 0, c, fmt = ALCM_FILE_UNKNOWN, unsafe = 0, frame_set = 0;
	uint64_t frame = 0;
	uint64_t threads = 0, u;
	unsigned rflags = 0;
	h5_args h = {0, -1, 0, 0, 0};
	const char **names = calloc((size_t)argc, sizeof(char *));
	size_t nnames = 0;
	if (!names)
		return EXIT_NOMEM;
	while ((c = getopt_long(argc, argv, "o:F:ft:T:qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'F':
			if ((fmt = format_named(optarg)) == ALCM_FILE_UNKNOWN) {
				cli_err("invalid --format '%s': expected npz, npy, safetensors or h5", optarg);
				free(names);
				return EXIT_USAGE;
			}
			break;
		case OPT_UNSAFE: unsafe = 1; break;
		case 'f': force = 1; break;
		case 't': names[nnames++] = optarg; break;
		case 'n': rflags |= ALCM_READ_NO_VERIFY; break;
		case 'T':
			if (cli_parse_u64(optarg, &threads) || threads > 256) {
				cli_err("invalid --threads '%s': expected 0..256", optarg);
				free(names);
				return EXIT_USAGE;
			}
			break;
		case OPT_H5CHUNK:
			if (cli_parse_u64(optarg, &h.chunk) || h.chunk == 0) {
				cli_err("invalid --h5-chunk '%s': expected bytes (suffixes k, M, G)", optarg);
				free(names);
				return EXIT_USAGE;
			}
			h.given = 1;
			break;
		case OPT_H5GZIP:
			if (cli_parse_u64(optarg, &u) || u > 9) {
				cli_err("invalid --h5-gzip '%s': expected a level 0..9", optarg);
				free(names);
				return EXIT_USAGE;
			}
			h.gzip = (int)u;
			h.given = 1;
			break;
		case OPT_H5SHUFFLE: h.shuffle = 1, h.given = 1; break;
		case OPT_EXTERNAL: h.external = 1, h.given = 1; break;
		case OPT_PUBKEY: pubkey = optarg; break;
		case OPT_FRAME:
			if (cli_parse_u64(optarg, &frame) || frame > UINT32_MAX - 1) {
				cli_err("invalid --frame '%s': expected a frame number", optarg);
				free(names);
				return EXIT_USAGE;
			}
			frame_set = 1;
			break;
		case OPT_BASE: base_path = optarg; break;
		case 'q': cli_quiet = 1; break;
		case 'v': cli_verbose = 1; break;
		case 'h': fputs(usage, stdout); free(names); return 0;
		case 'V': free(names); return cli_version();
		default: free(names); return cli_usage_error(usage, NULL);
		}
	}
	if (optind >= argc) {
		cli_usage_error(usage, "expected IN.alcm");
		free(names);
		return EXIT_USAGE;
	}
	if (optind < argc - 1) {
		free(names);
		if (out)
			return cli_usage_error(usage, "-o names one output: give one IN.alcm with -o, or "
			                       "several without (each gets IN without .alcm)");
		return cli_run_each(argc, argv, optind);
	}
	const char *in = argv[optind];
	/* The default name, IN without .alcm (zstd's way), lives as long as the process. */
	static char *default_out;
	if (!out && !(out = default_out = cli_default_output(in, NULL))) {
		cli_err("cannot name the output of '%s': it does not end in .alcm (give -o OUTPUT)",
		        in);
		free(names);
		return EXIT_USAGE;
	}
	sink k;
	memset(&k, 0, sizeof(k));
	int to_stdout = strcmp(out, "-") == 0;
	k.fmt = fmt ? fmt : to_stdout ? ALCM_FILE_UNKNOWN : alcm_format_from_extension(out);
	struct stat sb;
	if (!fmt && !to_stdout &&
	    ((*out && out[strlen(out) - 1] == '/') || (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode))))
		k.fmt = ALCM_FILE_SHARDS;
	else if (k.fmt == ALCM_FILE_SHARDS)
		k.fmt = ALCM_FILE_UNKNOWN;
	if (k.fmt != ALCM_FILE_NPY && k.fmt != ALCM_FILE_NPZ && k.fmt != ALCM_FILE_SAFETENSORS &&
	    k.fmt != ALCM_FILE_HDF5 && k.fmt != ALCM_FILE_PT && k.fmt != ALCM_FILE_SHARDS) {
		if (to_stdout)
			cli_err("standard output has no extension to tell the format: use --format");
		else
			cli_err("cannot tell the output format of '%s': use .npz, .npy, .safetensors, .pt, "
			        ".h5, DIR/ for the shards of a sharded checkpoint, or --format", out);
		free(names);
		return EXIT_USAGE;
	}
	if (k.fmt == ALCM_FILE_SHARDS && nnames) {
		cli_err("a sharded checkpoint is written whole: --tensor goes with a file OUTPUT");
		free(names);
		return EXIT_USAGE;
	}
	if (h.given && k.fmt != ALCM_FILE_HDF5) {
		cli_err("--h5-chunk, --h5-gzip, --h5-shuffle and --allow-external apply to .h5 "
		        "output only");
		free(names);
		return EXIT_USAGE;
	}
	if (h.shuffle && h.gzip < 0) {
		cli_err("--h5-shuffle goes with --h5-gzip N");
		free(names);
		return EXIT_USAGE;
	}
	if (pubkey && (rflags & ALCM_READ_NO_VERIFY)) {
		cli_err("--pubkey cannot go with --no-verify: the signature vouches for the sections "
		        "through their digests");
		free(names);
		return EXIT_USAGE;
	}
	uint8_t pk[ALCM_PUBLIC_KEY_BYTES];
	int rc = 0, st;
	if (pubkey && (rc = cli_read_key(pubkey, 0, pk, sizeof(pk)))) {
		free(names);
		return rc;
	}
	alcm_reader *r = NULL, *base = NULL;
	alcm_archive *a = NULL;
	size_t *sel = NULL, nsel = 0;
	alcm_tensor *plan = NULL;
	uint8_t *bufs[2] = {NULL, NULL};
	uint64_t caps[2] = {0, 0};
	writer_thread wr = {.started = 0};
	if ((rc = cli_stdout_path(out, alcm_format_name(k.fmt), force, &out)) ||
	    (rc = cli_stdin_path(in, &in))) {
		free(names);
		return rc;
	}
	if ((st = alcm_reader_open_file(&r, in, NULL, NULL, rflags))) {
		rc = cli_fail(st, "read", in, alcm_reader_detail(r));
		goto out;
	}
	/* The signature covers every section's digest, and every section read below is checked
	 * against its digest: so nothing reaches the output that the key's owner did not sign
	 * (an output whose later tensor fails its digest is never published). */
	if (pubkey) {
		int sig;
		if ((st = alcm_reader_check_signature(r, pk, &sig))) {
			rc = cli_fail(st, "check the signature of", in, alcm_reader_detail(r));
			goto out;
		}
		if (sig != ALCM_SIG_VALID) {
			cli_err("cannot unpack '%s': %s; nothing written", in,
			        sig == ALCM_SIG_NONE ? "it is not signed"
			        : sig == ALCM_SIG_OTHER_KEY ? "it is signed by another key than the one in "
			                                      "--pubkey"
			        : "its signature does not match its contents (changed after signing)");
			rc = EXIT_SIGNATURE;
			goto out;
		}
	}
	st = frame_set ? alcm_archive_open_frame(&a, r, (uint32_t)frame, NULL)
	               : alcm_archive_open(&a, r, NULL);
	if (st == ALCM_E_NOTFOUND && frame_set) {
		cli_err("cannot read '%s': it has no frame %llu (it has %u)", in,
		        (unsigned long long)frame, alcm_archive_frame_count(r));
		rc = EXIT_USAGE;
		goto out;
	}
	if (st) {
		rc = cli_fail(st, "read", in, alcm_archive_detail(a));
		goto out;
	}
	if (base_path && (st = alcm_reader_open_file(&base, base_path, NULL, NULL, rflags))) {
		rc = cli_fail(st, "read", base_path, alcm_reader_detail(base));
		goto out;
	}
	if (base && (st = alcm_archive_set_base(a, base))) {
		rc = cli_fail(st, "use", base_path, alcm_archive_detail(a));
		goto out;
	}
	alcm_archive_set_threads(a, (unsigned)threads);
	size_t nt = alcm_archive_tensor_count(a);
	sel = calloc(nt + nnames + 1, sizeof(size_t));
	plan = calloc(nt + nnames + 1, sizeof(alcm_tensor));
	if (!sel || !plan) {
		rc = EXIT_NOMEM;
		goto out;
	}
	if (nnames) {
		for (size_t j = 0; j < nnames; j++) {
			if (alcm_archive_find(a, names[j], strlen(names[j]), &sel[nsel]) != ALCM_OK) {
				cli_err("cannot find tensor '%s' in '%s'", names[j], cli_display(in));
				rc = EXIT_USAGE;
				goto out;
			}
			nsel++;
		}
	} else {
		for (size_t i = 0; i < nt; i++)
			sel[nsel++] = i;
	}
	if (k.fmt == ALCM_FILE_NPY && nsel != 1) {
		cli_err("'%s' holds one tensor, the selection has %zu: use --tensor NAME or .npz",
		        cli_display(out), nsel);
		rc = EXIT_USAGE;
		goto out;
	}
	for (size_t j = 0; j < nsel; j++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, sel[j], &ti);
		plan[j].name = ti.name;
		plan[j].name_len = ti.name_len;
		plan[j].dtype = ti.dtype;
		plan[j].ndim = ti.ndim;
		memcpy(plan[j].shape, ti.shape, sizeof(ti.shape));
		plan[j].nbytes = ti.raw_bytes;
	}
	if (k.fmt == ALCM_FILE_NPZ && !unsafe && (rc = names_safe(plan, nsel, out)))
		goto out;
	unsigned wflags = (force && !to_stdout ? ALCM_WRITE_OVERWRITE : 0) |
	                  (to_stdout ? ALCM_WRITE_NO_SYNC : 0) | (unsafe ? ALCM_WRITE_UNSAFE_NAMES : 0);
	if ((rc = sink_open(&k, out, wflags, &h, r, a, in, plan, nsel, nnames > 0)))
		goto out;
	uint64_t total = 0;
	for (size_t j = 0; j < nsel; j++)
		total += plan[j].nbytes;
	cli_progress p;
	cli_progress_start(&p, "unpacking", total, (uint64_t)100 << 20);
	double t0 = cli_now();
	/* With more than one thread, a writer thread writes tensor j (CRC-32, file) while this
	 * one decodes tensor j + 1 into the other buffer. The HDF5 bridge keeps to this thread. */
	int overlap = threads != 1 && nsel > 1 && k.o && !wr_start(&wr, &k);
	/* A lossless tensor goes to the output chunk by chunk as it decodes (a chunk is written
	 * while the next ones decode): a few chunks in memory, not one or two tensors. Its
	 * digests are checked before its last chunk is written; a later digest error leaves the
	 * output uncommitted, so nothing unverified is published. At -T1 too: a whole tensor
	 * handed to the output at once waited for the disk (the output's writer thread takes
	 * two 4 MiB blocks): e2e.npz's archive to .safetensors, 1.04-1.12 -> 0.84-0.93 s. */
	int pieces = k.o != NULL;
	for (size_t j = 0; j < nsel; j++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, sel[j], &ti);
		if (pieces && ti.mode == ALCM_MODE_LOSSLESS) {
			/* the run of lossless tensors from j, in one call */
			size_t e = j + 1;
			while (e < nsel && alcm_archive_tensor_info(a, sel[e], &ti) == ALCM_OK &&
			       ti.mode == ALCM_MODE_LOSSLESS)
				e++;
			if (overlap && (st = wr_put(&wr, NULL))) {
				rc = cli_fail(st, "write", out, sink_detail(&k));
				goto out;
			}
			piece_sink ps = {k.o, plan + j, e - j, 1, 0, &p};
			st = alcm_output_begin(k.o, &plan[j]);
			if (st == ALCM_E_UNSUPPORTED) {
				pieces = 0; /* the format or its aliases take whole tensors */
			} else if (st) {
				rc = cli_fail(st, "write", out, sink_detail(&k));
				goto out;
			} else {
				st = alcm_archive_decode_pieces(a, sel + j, e - j, piece_out, &ps);
				if (!st)
					st = piece_begin(&ps, ps.n);
				if (st && ps.st) {
					rc = cli_fail(st, "write", out, sink_detail(&k));
					goto out;
				}
				if (st) {
					rc = decode_failed(st, a, r, base, in);
					goto out;
				}
				for (; j + 1 < e; j++)
					cli_info("%s: %s %s", cli_name(plan[j].name, plan[j].name_len),
					         alcm_dtype_name(plan[j].dtype),
					         cli_shape(plan[j].shape, plan[j].ndim));
				cli_info("%s: %s %s", cli_name(plan[j].name, plan[j].name_len),
				         alcm_dtype_name(plan[j].dtype), cli_shape(plan[j].shape, plan[j].ndim));
				continue;
			}
		}
		/* One tensor in memory at a time (two when writing overlaps); its size was checked
		 * against the limits. A buffer is kept for the next tensor when it is large enough
		 * (not twice too large). */
		int b = overlap ? (int)(j % 2) : 0;
		if (!bufs[b] || plan[j].nbytes > caps[b] || plan[j].nbytes < caps[b] / 2) {
			free(bufs[b]);
			caps[b] = plan[j].nbytes ? plan[j].nbytes : 1;
			bufs[b] = cli_alloc(caps[b]);
		}
		if (!bufs[b]) {
			cli_err("cannot allocate %s for tensor '%s'", cli_size(plan[j].nbytes),
			        cli_name(plan[j].name, plan[j].name_len));
			rc = EXIT_NOMEM;
			goto out;
		}
		if ((st = alcm_archive_decode(a, sel[j], bufs[b], plan[j].nbytes))) {
			rc = decode_failed(st, a, r, base, in);
			goto out;
		}
		plan[j].data = bufs[b];
		/* Overlapped: the tensor before is written (its buffer is the next one's). */
		if ((st = overlap ? wr_put(&wr, &plan[j]) : sink_write(&k, &plan[j]))) {
			rc = cli_fail(st, "write", out, sink_detail(&k));
			goto out;
		}
		cli_progress_add(&p, plan[j].nbytes);
		cli_info("%s: %s %s", cli_name(plan[j].name, plan[j].name_len),
		         alcm_dtype_name(plan[j].dtype), cli_shape(plan[j].shape, plan[j].ndim));
	}
	if (overlap && (st = wr_put(&wr, NULL))) {
		rc = cli_fail(st, "write", out, sink_detail(&k));
		goto out;
	}
	if ((st = sink_commit(&k))) {
		rc = cli_fail(st, "write", out, sink_detail(&k));
		goto out;
	}
	cli_progress_end(&p);
	if ((rc = cli_stdout_commit()))
		goto out;
	double dt = cli_now() - t0;
	if (!cli_quiet)
		fprintf(stderr, "%s: %zu tensors, %s -> %s, %.1f MB/s\n", cli_prog, nsel,
		        cli_size(alcm_reader_file_size(r)), cli_size(total),
		        dt > 0 ? (double)total / dt / 1e6 : 0.0);
out:
	wr_stop(&wr);
	free(bufs[0]);
	free(bufs[1]);
	free(plan);
	free(sel);
	free(names);
	sink_free(&k);
	alcm_archive_free(a);
	alcm_reader_free(r);
	alcm_reader_free(base);
	return rc;
}
