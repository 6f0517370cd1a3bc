/* alcm-pack: pack a tensor file (.npy, .npz, .safetensors, .pt, .h5, a sharded checkpoint)
 * into an .alcm archive. */
#include "cli.h"
#include "alcm_hdf5.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: alcm-pack INPUT [-o OUTPUT.alcm] [options]\n"
	"       alcm-pack INPUT... [options]\n"
	"\n"
	"Packs every tensor of INPUT (.npy, .npz, .safetensors, .h5, a torch.save state dict .pt,\n"
	".pth or .bin; detected from its bytes) into an archive. Lossless (bit-exact) unless a\n"
	"bound, a width or a budget is named. Lossy modes apply to float tensors; integer and\n"
	"bool tensors are always stored losslessly. INPUT '-' reads standard input (spooled to\n"
	"$TMPDIR; a .npy read so is named 'tensor').\n"
	"\n"
	"A .pt file is read without running pickle: only what a state dict needs is accepted, any\n"
	"other global or opcode is refused naming it (exit 7). Tied weights are stored once. A\n"
	"sharded checkpoint (INPUT is its *.safetensors.index.json, or the directory holding it)\n"
	"becomes one archive that alcm-unpack -o DIR/ turns back into the same files. A\n"
	"safetensors __metadata__ is kept.\n"
	"\n"
	"Output:\n"
	"  -o, --output FILE     archive to write (default INPUT.alcm beside INPUT; '-' when\n"
	"                        INPUT is '-'); written atomically; '-' writes standard output\n"
	"                        once the archive is complete. Several INPUTs (no -o): each gets\n"
	"                        its own INPUT.alcm, one after the other; the exit status is the\n"
	"                        first failure's\n"
	"  -f, --force           replace OUTPUT if it exists (with -o -: write to a terminal)\n"
	"      --stream          make an appendable stream archive; INPUT is its frame 0\n"
	"      --append          add INPUT as the next frame of an existing stream archive,\n"
	"                        without rewriting earlier frames (crash-safe); the archive is\n"
	"                        locked for the whole append: a second appender waits. The\n"
	"                        frame is coded with the settings the stream was created with\n"
	"                        (mode, bound, pruning, schedule); options given override them\n"
	"                        for this frame and are recorded with it\n"
	"      --no-wait         with --append: exit 12 at once if another writer holds the\n"
	"                        archive's lock, instead of waiting for it\n"
	"      --schedule        let the CAQ scheduler tune the bound per frame, between the\n"
	"                        bound given and --bound-max B, pruning up to 0.25; no frame\n"
	"                        is written under --fidelity-floor DB (default 20): tensors\n"
	"                        that would break it are coded again at a safer bound, and\n"
	"                        the scheduler backs off\n"
	"      --sign KEY        sign the archive with a secret key from alcm-keygen\n"
	"Checkpoint series (format 1.1; lossless, --max-error or --rel-error):\n"
	"      --series          make a series archive; INPUT is its frame 0. Each --append then\n"
	"                        stores the next checkpoint as a delta of an earlier one, with the\n"
	"                        settings the series was created with (options given with --append\n"
	"                        apply to that frame and are recorded with it)\n"
	"      --keyframe-every K  store a frame whole after K deltas (default 0: when that saves\n"
	"                        bytes, and after 8 deltas against the frame before, 15 in a tree)\n"
	"      --delta-against keyframe|previous|tree  code a delta against the last keyframe\n"
	"                        (default: any frame decodes from one keyframe and one delta), the\n"
	"                        frame before (smallest; decoding goes through every delta since the\n"
	"                        keyframe) or a tree (decoding goes through at most log2 of the\n"
	"                        frames since the keyframe)\n"
	"      --delta-from BASE code INPUT against the last frame of another archive (a fine-tune\n"
	"                        against its base model), recorded by BASE's identity; unpacking it\n"
	"                        then needs BASE (alcm-unpack --base)\n"
	"Lossy modes (choose at most one; NaN, inf, -0 and subnormals always stay exact):\n"
	"      --max-error E     |x - x'| <= E for every value\n"
	"      --rel-error R     |x - x'| <= R * max|x| of the value's channel (axis 0), R < 1\n"
	"      --snr DB          signal-to-noise ratio of every tensor >= DB decibels\n"
	"      --bits N          fixed width: N-bit symbols (2..16), per-channel scale\n"
	"      --size BYTES      fit the archive in BYTES (within 3%), choosing a max-error bound\n"
	"                        per tensor from predicted rates (least total squared error),\n"
	"                        corrected from the measured size (-v shows each attempt)\n"
	"      --ratio R         the same, for a size of (input bytes / R)\n"
	"      --prune F         drop up to a share F (<= 0.25) of the smallest values into masks;\n"
	"                        a pruned value still meets the bound\n"
	"      --int-lossy=MODE  integers under a lossy mode: 'store' losslessly with a warning\n"
	"                        (default) or 'refuse' (exit 10)\n"
	"Coding:\n"
	"  -l, --level N         zstd level 1..19 (default 3); a lossless stream that the\n"
	"                        chunk's sample codes smaller at level 1 uses level 1\n"
	"  -T, --threads N       worker threads (default: the CPUs it may use); above 1 they\n"
	"                        code each chunk as it is read; the output is the same\n"
	"                        for every N\n"
	"      --chunk-size B    bytes per independently coded chunk (default 4M)\n"
	"      --check           decode the archive after writing and compare with INPUT\n"
	"HDF5 inputs (every dataset at any depth; groups, attributes and links kept in ATTR):\n"
	"      --skip-unsupported  leave out objects the format cannot describe (references,\n"
	"                        ...), list them in the summary and the archive's metadata\n"
	"      --allow-external  keep external links (recorded, never followed) and read\n"
	"                        external or virtual datasets; refused by default\n"
	"      --allow-plugins   let libhdf5 load filter plugins from HDF5_PLUGIN_PATH (alcm's\n"
	"                        own filter, id 417, is decoded without plugins)\n"
	"      --h5-in-process   run libhdf5 in this process instead of an isolated child (faster\n"
	"                        for trusted files; a libhdf5 crash then takes alcm-pack down)\n"
	"Messages:\n"
	"  -q, --quiet           no summary, no warnings     -v, --verbose  one line per tensor\n"
	"  -h, --help            this help                   -V, --version  print the version\n"
	"\n"
	"After packing, one summary line: tensors, bytes in and out, ratio, MB/s, largest error.\n"
	"\n" CLI_EXIT_CODES_HELP;

enum { OPT_MAXERR = 256, OPT_RELERR, OPT_SNR, OPT_BITS, OPT_PRUNE, OPT_INT, OPT_CHUNK,
       OPT_CHECK, OPT_STREAM, OPT_SIGN, OPT_APPEND, OPT_SCHEDULE, OPT_BOUNDMAX, OPT_FLOOR,
       OPT_SIZE, OPT_RATIO, OPT_SKIP, OPT_EXTERNAL, OPT_PLUGINS, OPT_INPROC, OPT_NOWAIT,
       OPT_SERIES, OPT_KEYEVERY, OPT_AGAINST, OPT_DELTAFROM };

typedef struct pack_args {
	const char *in, *out, *sign; /* in and out: files ("-" is replaced by a temporary one) */
	int force, stream, check, modes, append, schedule, no_wait;
	/* Checkpoint series, and which coding options were given (they override a series'
	 * recorded settings on --append). */
	int series, against, level_set, chunk_set, int_set, key_set, against_set, prune_set;
	unsigned keyframe_every;
	const char *delta_from, *base_path;
	double bound_max, floor_db, ratio;
	uint64_t size;
	alcm_pack_options o;
} pack_args;

static int parse_args(int argc, char **argv, pack_args *a)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		{"stream", no_argument, NULL, OPT_STREAM}, {"sign", required_argument, NULL, OPT_SIGN},
		{"append", no_argument, NULL, OPT_APPEND}, {"schedule", no_argument, NULL, OPT_SCHEDULE},
		{"no-wait", no_argument, NULL, OPT_NOWAIT},
		{"bound-max", required_argument, NULL, OPT_BOUNDMAX},
		{"fidelity-floor", required_argument, NULL, OPT_FLOOR},
		{"size", required_argument, NULL, OPT_SIZE}, {"ratio", required_argument, NULL, OPT_RATIO}, {"max-error", required_argument, NULL, OPT_MAXERR},
		{"rel-error", required_argument, NULL, OPT_RELERR}, {"snr", required_argument, NULL, OPT_SNR},
		{"bits", required_argument, NULL, OPT_BITS}, {"prune", required_argument, NULL, OPT_PRUNE},
		{"int-lossy", required_argument, NULL, OPT_INT}, {"level", required_argument, NULL, 'l'},
		{"threads", required_argument, NULL, 'T'}, {"chunk-size", required_argument, NULL, OPT_CHUNK},
		{"check", no_argument, NULL, OPT_CHECK}, {"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"skip-unsupported", no_argument, NULL, OPT_SKIP},
		{"allow-external", no_argument, NULL, OPT_EXTERNAL},
		{"allow-plugins", no_argument, NULL, OPT_PLUGINS},
		{"h5-in-process", no_argument, NULL, OPT_INPROC},
		{"series", no_argument, NULL, OPT_SERIES},
		{"keyframe-every", required_argument, NULL, OPT_KEYEVERY},
		{"delta-against", required_argument, NULL, OPT_AGAINST},
		{"delta-from", required_argument, NULL, OPT_DELTAFROM}, {NULL, 0, NULL, 0},
	};
	alcm_pack_options_default(&a->o);
	int c;
	uint64_t u;
	double d;
	while ((c = getopt_long(argc, argv, "o:fl:T:qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': a->out = optarg; break;
		case 'f': a->force = 1; break;
		case OPT_STREAM: a->stream = 1; break;
		case OPT_CHECK: a->check = 1; break;
		case OPT_SIGN: a->sign = optarg; break;
		case OPT_APPEND: a->append = 1; break;
		case OPT_NOWAIT: a->no_wait = 1; break;
		case OPT_SERIES: a->series = 1; break;
		case OPT_DELTAFROM: a->delta_from = optarg; break;
		case OPT_KEYEVERY:
			if (cli_parse_u64(optarg, &u) || u > ALCM_SERIES_MAX_KEYFRAME_EVERY) {
				cli_err("invalid --keyframe-every '%s': expected 0..%d (0: when that saves "
				        "bytes)", optarg, ALCM_SERIES_MAX_KEYFRAME_EVERY);
				return EXIT_USAGE;
			}
			a->keyframe_every = (unsigned)u;
			a->key_set = 1;
			break;
		case OPT_AGAINST:
			if (strcmp(optarg, "keyframe") && strcmp(optarg, "previous") &&
			    strcmp(optarg, "tree")) {
				cli_err("invalid --delta-against '%s': expected 'keyframe', 'previous' or "
				        "'tree'", optarg);
				return EXIT_USAGE;
			}
			a->against = !strcmp(optarg, "keyframe")   ? ALCM_SERIES_REF_ANCHOR
			             : !strcmp(optarg, "previous") ? ALCM_SERIES_REF_PREVIOUS
			                                           : ALCM_SERIES_REF_TREE;
			a->against_set = 1;
			break;
		case OPT_SIZE:
			if (cli_parse_u64(optarg, &a->size) || a->size == 0) {
				cli_err("invalid --size '%s': expected bytes (suffixes k, M, G)", optarg);
				return EXIT_USAGE;
			}
			a->modes++;
			break;
		case OPT_RATIO:
			if (cli_parse_double(optarg, &a->ratio) || !(a->ratio > 1)) {
				cli_err("invalid --ratio '%s': expected a number above 1", optarg);
				return EXIT_USAGE;
			}
			a->modes++;
			break;
		case OPT_SCHEDULE: a->schedule = 1; break;
		case OPT_SKIP: cli_h5_flags |= ALCM_H5_SKIP_UNSUPPORTED; break;
		case OPT_EXTERNAL: cli_h5_flags |= ALCM_H5_ALLOW_EXTERNAL; break;
		case OPT_PLUGINS: cli_h5_flags |= ALCM_H5_ALLOW_PLUGINS; break;
		case OPT_INPROC: cli_h5_flags &= ~ALCM_H5_ISOLATE; break;
		case OPT_BOUNDMAX:
		case OPT_FLOOR:
			if (cli_parse_double(optarg, &d) || !(d > 0)) {
				cli_err("invalid value '%s': expected a positive number", optarg);
				return EXIT_USAGE;
			}
			*(c == OPT_BOUNDMAX ? &a->bound_max : &a->floor_db) = d;
			break;
		case 'q': cli_quiet = 1; break;
		case 'v': cli_verbose = 1; break;
		case 'h': fputs(usage, stdout); exit(0);
		case 'V': exit(cli_version());
		case OPT_MAXERR:
		case OPT_RELERR:
		case OPT_SNR:
			if (cli_parse_double(optarg, &d) || !(d > 0)) {
				cli_err("invalid bound '%s': expected a positive number", optarg);
				return EXIT_USAGE;
			}
			a->o.mode = c == OPT_MAXERR ? ALCM_MODE_MAX_ERROR
			          : c == OPT_RELERR ? ALCM_MODE_REL_ERROR : ALCM_MODE_SNR;
			a->o.bound = d;
			a->modes++;
			break;
		case OPT_BITS:
			if (cli_parse_u64(optarg, &u) || u < 2 || u > 16) {
				cli_err("invalid --bits '%s': expected 2..16", optarg);
				return EXIT_USAGE;
			}
			a->o.mode = ALCM_MODE_BITS;
			a->o.bits = (unsigned)u;
			a->modes++;
			break;
		case OPT_PRUNE:
			if (cli_parse_double(optarg, &d) || d < 0 || d > 0.25) {
				cli_err("invalid --prune '%s': expected a share between 0 and 0.25", optarg);
				return EXIT_USAGE;
			}
			a->o.prune = d;
			a->prune_set = 1;
			break;
		case OPT_INT:
			if (strcmp(optarg, "store") == 0)
				a->o.int_policy = ALCM_INT_LOSSLESS;
			else if (strcmp(optarg, "refuse") == 0)
				a->o.int_policy = ALCM_INT_REFUSE;
			else {
				cli_err("invalid --int-lossy '%s': expected 'store' or 'refuse'", optarg);
				return EXIT_USAGE;
			}
			a->int_set = 1;
			break;
		case 'l':
			if (cli_parse_u64(optarg, &u) || u < 1 || u > 19) {
				cli_err("invalid --level '%s': expected 1..19", optarg);
				return EXIT_USAGE;
			}
			a->o.level = (int)u;
			a->level_set = 1;
			break;
		case 'T':
			if (cli_parse_u64(optarg, &u) || u > 256) {
				cli_err("invalid --threads '%s': expected 0..256", optarg);
				return EXIT_USAGE;
			}
			a->o.threads = (unsigned)u;
			break;
		case OPT_CHUNK:
			if (cli_parse_u64(optarg, &u) || u < 4096 || u > ((uint64_t)1 << 30)) {
				cli_err("invalid --chunk-size '%s': expected 4k..1G", optarg);
				return EXIT_USAGE;
			}
			a->o.chunk_bytes = u;
			a->chunk_set = 1;
			break;
		default: return cli_usage_error(usage, NULL);
		}
	}
	if (optind >= argc)
		return cli_usage_error(usage, "expected INPUT");
	if (optind < argc - 1 && a->out)
		return cli_usage_error(usage, "-o names one archive: give one INPUT with -o, or "
		                       "several without (each gets INPUT.alcm)");
	if (!a->out && (a->append || a->delta_from)) {
		cli_err("%s needs -o ARCHIVE", a->append ? "--append" : "--delta-from");
		return EXIT_USAGE;
	}
	if ((a->size || a->ratio > 0) && (a->stream || a->append)) {
		cli_err("--size and --ratio apply to whole archives, not stream frames");
		return EXIT_USAGE;
	}
	if (a->no_wait && !a->append) {
		cli_err("--no-wait applies to --append only");
		return EXIT_USAGE;
	}
	if (a->append && a->force) {
		cli_err("--append adds to OUTPUT: it cannot be combined with -f");
		return EXIT_USAGE;
	}
	if (a->append && strcmp(a->out, "-") == 0) {
		cli_err("--append adds to an archive file: it cannot write standard output");
		return EXIT_USAGE;
	}
	if (a->modes > 1) {
		cli_err("choose one of --max-error, --rel-error, --snr, --bits, --size, --ratio");
		return EXIT_USAGE;
	}
	if (a->o.prune > 0 && a->o.mode == ALCM_MODE_LOSSLESS) {
		cli_err("--prune is lossy: name a bound (--max-error, --rel-error, --snr) or --bits");
		return EXIT_USAGE;
	}
	if ((a->series || a->delta_from) &&
	    (a->stream || a->schedule || a->size || a->ratio > 0 || a->o.prune > 0 ||
	     a->o.mode == ALCM_MODE_SNR || a->o.mode == ALCM_MODE_BITS)) {
		cli_err("a checkpoint series (--series, --delta-from) codes losslessly or with "
		        "--max-error or --rel-error; it does not take --stream, --schedule, --size, "
		        "--ratio, --snr, --bits or --prune");
		return EXIT_USAGE;
	}
	if ((a->key_set || a->against_set) && !a->series && !a->append) {
		cli_err("--keyframe-every and --delta-against go with --series or --append");
		return EXIT_USAGE;
	}
	a->in = argv[optind];
	if (optind < argc - 1)
		return 0; /* main runs the tool once per input */
	/* The default name, INPUT.alcm, lives as long as the process (a static keeps it). */
	static char *default_out;
	if (!a->out && !(a->out = default_out = cli_default_output(a->in, "alcm")))
		return EXIT_NOMEM;
	return 0;
}

/* 1 if the decoded tensor y keeps x's identity and meets the promise of its mode. */
static int roundtrip_ok(const alcm_tensor *x, const alcm_tensor_info *ti, const uint8_t *y,
                        alcm_error_stats *es)
{
	if (x->dtype != ti->dtype || x->ndim != ti->ndim || x->nbytes != ti->raw_bytes ||
	    x->name_len != ti->name_len || memcmp(x->name, ti->name, x->name_len) ||
	    memcmp(x->shape, ti->shape, x->ndim * sizeof(uint64_t)))
		return 0;
	alcm_tensor_measure(x, y, es);
	return alcm_error_within(es, ti->mode, ti->bound);
}

/* The input's next tensor (*has 0 at the end), or the failure's exit code, said. */
static int next_tensor(const pack_args *a, cli_input *in, alcm_tensor *t, int *has)
{
	int st = cli_input_next(in, t, has);
	return st ? cli_input_fail(in, st, a->in) : 0;
}

static int check_roundtrip(const pack_args *a, int lossless)
{
	cli_input *in = NULL;
	alcm_reader *r = NULL, *base = NULL;
	alcm_archive *ar = NULL;
	uint8_t *buf = NULL;
	int st, rc = cli_input_open_or_fail(&in, a->in);
	if (rc)
		return rc;
	st = alcm_reader_open_file(&r, a->out, NULL, NULL, 0);
	if (!st)
		st = alcm_archive_open(&ar, r, NULL);
	if (st) {
		rc = cli_fail(st, "check", a->out, ar ? alcm_archive_detail(ar) : alcm_reader_detail(r));
		goto out;
	}
	/* A series frame coded against a base decodes through it. */
	if (a->base_path && ((st = alcm_reader_open_file(&base, a->base_path, NULL, NULL, 0)) ||
	                     (st = alcm_archive_set_base(ar, base)))) {
		rc = cli_fail(st, "check", a->out, alcm_archive_detail(ar)[0] ? alcm_archive_detail(ar)
		                                                            : alcm_reader_detail(base));
		goto out;
	}
	size_t i = 0, n = alcm_archive_tensor_count(ar);
	for (;; i++) {
		alcm_tensor t;
		int has;
		if ((rc = next_tensor(a, in, &t, &has)))
			goto out;
		if (!has)
			break;
		alcm_tensor_info ti;
		if (i >= n || alcm_archive_tensor_info(ar, i, &ti)) {
			cli_err("check failed: '%s' has fewer tensors than '%s'", cli_display(a->out),
			        cli_display(a->in));
			rc = EXIT_FAIL;
			goto out;
		}
		free(buf);
		buf = cli_alloc(ti.raw_bytes);
		if (!buf) {
			rc = EXIT_NOMEM;
			goto out;
		}
		if ((st = alcm_archive_decode(ar, i, buf, ti.raw_bytes))) {
			rc = cli_fail(st, "check", a->out, alcm_archive_detail(ar));
			goto out;
		}
		alcm_error_stats es;
		if (!roundtrip_ok(&t, &ti, buf, &es)) {
			cli_err("check failed: tensor '%s' breaks its %s promise after decoding "
			        "(max error %.6g, snr %.2f dB)", cli_name(t.name, t.name_len),
			        ti.mode == ALCM_MODE_LOSSLESS ? "bit-exact" : "error-bound",
			        es.max_abs_error, es.snr_db);
			rc = EXIT_FAIL;
			goto out;
		}
	}
	if (i != n) {
		cli_err("check failed: '%s' has more tensors than '%s'", cli_display(a->out),
		        cli_display(a->in));
		rc = EXIT_FAIL;
	} else if (!cli_quiet) {
		fprintf(stderr, "%s: check: %zu tensors decoded, %s\n", cli_prog, n,
		        lossless ? "all bit-exact" : "integers bit-exact, floats within the bound, "
		                                     "specials exact");
	}
out:
	free(buf);
	alcm_archive_free(ar);
	alcm_reader_free(r);
	alcm_reader_free(base);
	cli_input_free(in);
	return rc;
}

/* Tensors of one frame, copied out of the input (which reuses its buffers). */
typedef struct frame_buf {
	alcm_tensor *t;
	size_t n, cap;
} frame_buf;

static int frame_add(frame_buf *f, const alcm_tensor *t)
{
	if (f->n == f->cap) {
		size_t nc = f->cap ? 2 * f->cap : 16;
		alcm_tensor *nt = realloc(f->t, nc * sizeof(*nt));
		if (!nt)
			return -1;
		f->t = nt;
		f->cap = nc;
	}
	alcm_tensor c = *t;
	char *name = malloc(t->name_len + 1);
	void *data = cli_alloc(t->nbytes);
	if (!name || !data) {
		free(name);
		free(data);
		return -1;
	}
	memcpy(name, t->name, t->name_len);
	memcpy(data, t->data, t->nbytes);
	c.name = name;
	c.data = data;
	f->t[f->n++] = c;
	return 0;
}

static void frame_free(frame_buf *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free((void *)f->t[i].name);
		free((void *)f->t[i].data);
	}
	free(f->t);
}

typedef struct totals {
	uint64_t raw, ntensors, downgraded;
	double maxerr;
} totals;

/* Counts one packed tensor into the summary line's totals. */
static void totals_add(totals *tot, const alcm_tensor *t, const alcm_tensor_report *rep)
{
	tot->ntensors++;
	tot->raw += t->nbytes;
	tot->downgraded += (uint64_t)rep->downgraded;
	if (rep->max_abs_error > tot->maxerr)
		tot->maxerr = rep->max_abs_error;
}

/*
 * An .h5 input: its groups, attributes and links go into the ATTR section, and the objects
 * left out under --skip-unsupported into the metadata key "hdf5.skipped" (one
 * "name: reason" line each) and the summary, so that nothing is dropped silently.
 */
static int add_h5_structure(const pack_args *a, cli_input *in, alcm_encoder *e)
{
	const void *buf;
	size_t len;
	if (cli_input_structure(in, &buf, &len) != ALCM_OK)
		return 0;
	int st = alcm_encoder_add_section(e, "ATTR", 0, buf, len);
	size_t n = cli_input_skipped(in), cap = 1, used = 0;
	char *list = NULL;
	for (size_t i = 0; !st && i < n; i++) {
		const char *why = NULL, *name = cli_input_skipped_name(in, i, &why);
		if (!name)
			continue;
		if (!cli_quiet)
			fprintf(stderr, "%s: skipped '%s': %s\n", cli_prog, name, why ? why : "");
		size_t need = strlen(name) + (why ? strlen(why) : 0) + 4;
		if (used + need >= cap) {
			cap = 2 * (used + need);
			char *nl = realloc(list, cap);
			if (!nl) {
				free(list);
				return EXIT_NOMEM;
			}
			list = nl;
		}
		used += (size_t)snprintf(list + used, cap - used, "%s: %s\n", name, why ? why : "");
	}
	if (!st && used)
		st = alcm_encoder_set_meta(e, "hdf5.skipped", list, used);
	free(list);
	if (st)
		return cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
	if (n)
		cli_warn("%zu HDF5 objects skipped (listed in the archive's metadata, "
		         "key hdf5.skipped)", n);
	return 0;
}

/* The input's records (safetensors metadata, aliases, torch and shard layout) into META.
 * alcm.alias and user.K make the archive format 1.1 (spec 6.1). */
static int add_input_meta(const pack_args *a, cli_input *in, alcm_writer *w, alcm_encoder *e)
{
	for (size_t i = 0; i < cli_input_meta_count(in); i++) {
		const char *k;
		const uint8_t *v;
		size_t vl;
		int st = cli_input_meta(in, i, &k, &v, &vl);
		if (!st && (strcmp(k, "alcm.alias") == 0 || strncmp(k, "user.", 5) == 0) &&
		    (st = alcm_writer_require_minor(w, 1)))
			return cli_fail(st, "write", a->out, alcm_writer_detail(w));
		if (!st)
			st = alcm_encoder_set_meta(e, k, v, vl);
		if (st)
			return cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
	}
	return 0;
}

/* The bar moves chunk by chunk: the tensors before the current one, plus its coded part. */
typedef struct chunk_progress {
	cli_progress bar;
	uint64_t before;
} chunk_progress;

static void on_chunk(void *opaque, uint64_t done, uint64_t total)
{
	chunk_progress *cp = opaque;
	(void)total;
	if (cp->before + done > cp->bar.done)
		cli_progress_add(&cp->bar, cp->before + done - cp->bar.done);
}

/* Prints a tensor's line and counts it. */
static void tensor_done(totals *tot, const alcm_tensor *t, const alcm_tensor_report *rep)
{
	totals_add(tot, t, rep);
	cli_info("%s: %s %s, %s -> %s (%.2fx), max error %.3g, %llu pruned, %llu exact",
	         cli_name(t->name, t->name_len), alcm_dtype_name(t->dtype),
	         cli_shape(t->shape, t->ndim), cli_size(rep->raw_bytes),
	         cli_size(rep->stored_bytes),
	         rep->stored_bytes ? (double)rep->raw_bytes / (double)rep->stored_bytes : 0.0,
	         rep->max_abs_error, (unsigned long long)rep->pruned,
	         (unsigned long long)rep->escapes);
}

/* Reads the next tensor piece by piece into the encoder (alcm_encoder_queue_begin): only a
 * few chunks of it are in memory. *in_failed tells whose error it is. */
static int queue_pieces(cli_input *in, alcm_encoder *e, alcm_tensor *t, alcm_tensor_report *rep,
                        int *has, int *in_failed)
{
	int st;
	*in_failed = 1;
	if ((st = cli_input_next_begin(in, t, has)) || !*has)
		return st;
	*in_failed = 0;
	if ((st = alcm_encoder_queue_begin(e, t, rep)))
		return st;
	for (;;) {
		const void *p;
		size_t len;
		if ((st = cli_input_piece(in, &p, &len))) {
			*in_failed = 1;
			return st;
		}
		if (!len)
			break;
		if ((st = alcm_encoder_queue_append(e, p, len)))
			return st;
	}
	return alcm_encoder_queue_end(e);
}

/* One archive (or one more frame) from every tensor of the input, streamed. With more than
 * one thread, and an input read by alcm_input in pieces (.npy, .npz, .safetensors), tensors
 * are queued piece by piece (alcm_encoder_queue_begin): the encoder's threads code each chunk
 * as it is read, across tensor boundaries, and only a few chunks are in memory. Same
 * archive bytes. One thread codes so too, for the modes that stream; the caller's thread
 * reads meanwhile. */
static int pack_plain(const pack_args *a, cli_input *in, alcm_writer *w, totals *tot)
{
	alcm_encoder *e = NULL;
	chunk_progress cp = {.before = 0};
	cli_progress_start(&cp.bar, "packing", cli_input_size(in), (uint64_t)100 << 20);
	cli_progress *bar = &cp.bar;
	alcm_pack_options o = a->o;
	/* On one thread too where the tensors stream through the queue (lossless, max-error
	 * without pruning): the caller reads each piece while the thread codes, and no tensor
	 * is whole in memory. Other lossy modes gather each tensor whole: in the caller's
	 * thread, one at a time. */
	int streams = o.mode == ALCM_MODE_LOSSLESS ||
	              (o.mode == ALCM_MODE_MAX_ERROR && !(o.prune > 0));
	int queued = (o.threads != 1 || streams) && cli_input_keep_previous(in) == ALCM_OK;
	o.progress = on_chunk; /* queued: called for the oldest tensor in flight, whose
	                        * predecessors cp.before counts */
	o.progress_opaque = &cp;
	alcm_tensor qt[2];
	alcm_tensor_report qrep[2];
	size_t n = 0;
	int rc = 0, st = alcm_encoder_new(&e, w, &o, NULL);
	if (st) {
		rc = cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
		goto out;
	}
	for (;; n++) {
		alcm_tensor *t = &qt[n % 2];
		alcm_tensor_report *rep = &qrep[n % 2];
		int has, in_failed = 1;
		if (queued)
			st = queue_pieces(in, e, t, rep, &has, &in_failed);
		else if (!(st = cli_input_next(in, t, &has)) && has) {
			in_failed = 0;
			st = alcm_encoder_add(e, t, rep);
		}
		if (st) {
			rc = in_failed ? cli_input_fail(in, st, a->in)
			               : cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
			goto out;
		}
		if (!has)
			break;
		/* Queued: the call finished the tensor before this one. */
		const alcm_tensor *d = queued ? (n ? &qt[(n + 1) % 2] : NULL) : t;
		if (d) {
			tensor_done(tot, d, queued ? &qrep[(n + 1) % 2] : rep);
			cp.before += d->nbytes;
			if (cp.before > bar->done)
				cli_progress_add(bar, cp.before - bar->done);
		}
	}
	if (queued && n) {
		if ((st = alcm_encoder_flush(e))) {
			rc = cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
			goto out;
		}
		tensor_done(tot, &qt[(n + 1) % 2], &qrep[(n + 1) % 2]);
		cp.before += qt[(n + 1) % 2].nbytes;
		if (cp.before > bar->done)
			cli_progress_add(bar, cp.before - bar->done);
	}
	if ((rc = add_h5_structure(a, in, e)) || (rc = add_input_meta(a, in, w, e)))
		goto out;
	if ((st = alcm_encoder_finish(e)))
		rc = cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
	cli_progress_end(bar);
out:
	alcm_encoder_free(e);
	return rc;
}

static const char *decision_name(int d)
{
	static const char *n[] = {"start", "raise", "hold", "back off (caq falling)",
	                          "back off (snr under floor)"};
	return d >= 0 && d <= 4 ? n[d] : "?";
}

/* 1 if the archive's last frame was coded lossy (its FRAM's bound). A stream without a
 * settings record is one of the defaults (lossless), or was written before format 1.1. */
static int last_frame_lossy(alcm_reader *r)
{
	uint32_t i = 0, k, last = UINT32_MAX;
	while (alcm_reader_find_section(r, "FRAM", i, &k) == ALCM_OK)
		last = k, i = k + 1;
	alcm_section_info si;
	uint8_t b[256];
	alcm_frame_report fr;
	if (last == UINT32_MAX)
		return 0;
	alcm_reader_section_info(r, last, &si);
	return si.length <= sizeof(b) &&
	       alcm_reader_section_read(r, last, b, (size_t)si.length) == ALCM_OK &&
	       alcm_frame_report_load(&fr, b, (size_t)si.length) == ALCM_OK && fr.bound > 0;
}

/*
 * The settings of a frame: those given, and on --append the ones the stream recorded (OPTS,
 * spec 6.12.3) for every setting not given. A stream written before format 1.1 records none:
 * its frames are then coded as the options say, with a warning when they name no mode.
 */
static int frame_settings(pack_args *a, alcm_reader *r, alcm_stream_options *so)
{
	alcm_stream_options_default(so);
	int st = r ? alcm_stream_options_load(r, so) : ALCM_E_NOTFOUND;
	if (st && st != ALCM_E_NOTFOUND)
		return cli_fail(st, "read the settings of", a->out, alcm_reader_detail(r));
	int rec = st == ALCM_OK;
	if (r && !rec && !a->modes && last_frame_lossy(r))
		cli_warn("'%s' does not record the settings it was created with (written before "
		         "format 1.1): this frame is lossless unless a mode is given", a->out);
	alcm_pack_options p = so->pack;
	so->pack = a->o;
	if (rec && !a->modes) {
		so->pack.mode = p.mode;
		so->pack.bound = p.bound;
		so->pack.bits = p.bits;
	}
	if (rec && !a->prune_set)
		so->pack.prune = p.prune;
	if (rec && !a->level_set)
		so->pack.level = p.level;
	if (rec && !a->chunk_set)
		so->pack.chunk_bytes = p.chunk_bytes;
	if (rec && !a->int_set)
		so->pack.int_policy = p.int_policy;
	if (!rec || a->schedule || a->modes)
		so->schedule = a->schedule;
	if (!rec || a->bound_max > 0)
		so->bound_max = a->bound_max;
	if (a->floor_db > 0)
		so->fidelity_floor_db = a->floor_db;
	/* What the frame is coded with, for the summary and --check. */
	a->o.mode = so->pack.mode;
	a->o.bound = so->pack.bound;
	a->o.bits = so->pack.bits;
	return 0;
}

/* One frame of a stream archive, through the stream encoder and its scheduler. */
static int pack_frame(pack_args *a, cli_input *in, alcm_writer *w, totals *tot)
{
	frame_buf f;
	memset(&f, 0, sizeof(f));
	alcm_stream *s = NULL;
	alcm_reader *r = NULL;
	alcm_stream_options so;
	int rc = 0, st;
	if (a->append && (st = alcm_reader_open_file(&r, a->out, NULL, NULL, 0))) {
		rc = cli_fail(st, "read", a->out, alcm_reader_detail(r));
		goto out;
	}
	if ((rc = frame_settings(a, r, &so)))
		goto out;
	if ((st = alcm_stream_new(&s, &so, NULL))) {
		cli_err("invalid stream options: --schedule needs --max-error or --rel-error and "
		        "--bound-max at least the bound");
		rc = EXIT_USAGE;
		goto out;
	}
	if (r && (st = alcm_stream_resume(s, r))) {
		rc = cli_fail(st, "read", a->out, alcm_stream_detail(s));
		goto out;
	}
	for (;;) {
		alcm_tensor t;
		int has;
		if ((rc = next_tensor(a, in, &t, &has)))
			goto out;
		if (!has)
			break;
		if (frame_add(&f, &t)) {
			rc = EXIT_NOMEM;
			goto out;
		}
		tot->raw += t.nbytes;
		tot->ntensors++;
	}
	const void *sb;
	size_t sl;
	if (cli_input_structure(in, &sb, &sl) == ALCM_OK)
		cli_warn("stream frames keep the HDF5 datasets as tensors, not their groups and "
		         "attributes");
	if (cli_input_meta_count(in))
		cli_warn("stream frames keep tensors only, not the input's metadata, aliases or "
		         "shard layout");
	alcm_frame_report fr;
	if ((st = alcm_stream_encode(s, w, f.t, f.n, &fr))) {
		rc = cli_fail(st, "pack", a->in, alcm_stream_detail(s));
		goto out;
	}
	tot->maxerr = fr.max_abs_error;
	if (!cli_quiet)
		fprintf(stderr, "%s: frame %u: ratio %.2fx, cpu %.3f s, caq %.3f, trend %+.4f, snr %.1f dB, "
		        "bound %.3g, prune %.3f%s%.0u%s; next: %s\n", cli_prog, fr.frame, fr.ratio,
		        fr.cpu_seconds, fr.caq, fr.caq_trend, fr.snr_db, fr.bound, fr.prune,
		        fr.recoded ? ", " : "", fr.recoded,
		        fr.recoded ? " tensors coded again to keep the floor" : "",
		        decision_name(fr.decision));
out:
	alcm_reader_free(r);
	alcm_stream_free(s);
	frame_free(&f);
	return rc;
}

static int regular_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/*
 * One frame of a checkpoint series: a new series (r NULL) or the next frame of the series r
 * reads, coded with the settings the series was created with and the options given here.
 * The base archive of a fine-tune is --delta-from, or else the path the series recorded for
 * it (opened only if it is a regular file; its identity is checked either way).
 */
static int pack_series(pack_args *a, cli_input *in, alcm_writer *w, alcm_reader *r, totals *tot)
{
	alcm_series_options so;
	alcm_series_options_default(&so);
	alcm_series *s = NULL;
	alcm_reader *base = NULL;
	char hint[4096] = "";
	uint8_t id[32];
	int rc = 0, st;
	if (r && (st = alcm_series_options_load(r, &so)) && st != ALCM_E_NOTFOUND)
		return cli_fail(st, "read the settings of", a->out, alcm_reader_detail(r));
	if (!r || a->modes) {
		so.pack.mode = a->o.mode;
		so.pack.bound = a->o.bound;
		so.pack.bits = a->o.bits;
	}
	if (!r || a->level_set)
		so.pack.level = a->o.level;
	if (!r || a->chunk_set)
		so.pack.chunk_bytes = a->o.chunk_bytes;
	if (!r || a->int_set)
		so.pack.int_policy = a->o.int_policy;
	if (!r || a->key_set)
		so.keyframe_every = a->keyframe_every;
	if (!r || a->against_set)
		so.reference = a->against;
	a->o.mode = so.pack.mode; /* what the frame is coded with, for the summary and --check */
	a->o.bound = so.pack.bound;
	so.pack.threads = a->o.threads;
	so.pack.source_format = a->o.source_format;
	so.pack.predictor = a->o.predictor;
	const char *bp = a->delta_from;
	if (!bp && r && alcm_series_base_hint(r, id, hint, sizeof(hint)) == ALCM_OK && hint[0] &&
	    regular_file(hint))
		bp = hint;
	if (bp && (st = alcm_reader_open_file(&base, bp, NULL, NULL, 0))) {
		rc = cli_fail(st, "read", bp, alcm_reader_detail(base));
		goto out;
	}
	so.base_name = bp;
	if (bp && !(a->base_path = strdup(bp))) {
		rc = EXIT_NOMEM;
		goto out;
	}
	if ((st = alcm_series_begin(&s, w, r, base, &so, NULL))) {
		rc = cli_fail(st, "pack", a->in, alcm_series_detail(s));
		if (st == ALCM_E_NOTFOUND)
			cli_err("give the base archive with --delta-from BASE");
		if (st == ALCM_E_ARG)
			rc = EXIT_USAGE;
		goto out;
	}
	cli_progress p;
	cli_progress_start(&p, "packing", cli_input_size(in), (uint64_t)100 << 20);
	for (;;) {
		alcm_tensor t;
		int has;
		if ((rc = next_tensor(a, in, &t, &has)))
			goto out;
		if (!has)
			break;
		alcm_tensor_report rep;
		if ((st = alcm_series_add(s, &t, &rep))) {
			rc = cli_fail(st, "pack", a->in, alcm_series_detail(s));
			goto out;
		}
		totals_add(tot, &t, &rep);
		cli_progress_add(&p, t.nbytes);
		cli_info("%s: %s %s, %s -> %s (%.2fx), max error %.3g", cli_name(t.name, t.name_len),
		         alcm_dtype_name(t.dtype), cli_shape(t.shape, t.ndim), cli_size(rep.raw_bytes),
		         cli_size(rep.stored_bytes),
		         rep.stored_bytes ? (double)rep.raw_bytes / (double)rep.stored_bytes : 0.0,
		         rep.max_abs_error);
	}
	cli_progress_end(&p);
	if ((rc = add_h5_structure(a, in, alcm_series_encoder(s))))
		goto out;
	alcm_series_report sr;
	if ((st = alcm_series_finish(s, &sr))) {
		rc = cli_fail(st, "pack", a->in, alcm_series_detail(s));
		goto out;
	}
	if (!cli_quiet && sr.keyframe)
		fprintf(stderr, "%s: frame %u: keyframe\n", cli_prog, sr.frame);
	else if (!cli_quiet)
		fprintf(stderr, "%s: frame %u: delta against frame %u%s (%llu of %llu tensors)\n",
		        cli_prog, sr.frame, sr.ref_frame, sr.ref_base ? " of the base archive" : "",
		        (unsigned long long)sr.delta_tensors, (unsigned long long)sr.tensors);
out:
	alcm_series_free(s);
	alcm_reader_free(base);
	return rc;
}

/* Bytes of everything but the tensors' own sections (a tensor's measured bytes include the
 * padding before its sections): the header, the metadata, the directory (a TDRZ: spec 6.3.5,
 * ~20 bytes a tensor and a fifth of its name compressed), the section table (64 bytes a
 * section) and the padding before them. An estimate for the first attempt; the measured size
 * replaces it. Fitted to --ratio 4, 8 and 16 archives at 7a2d00c, measured (estimated):
 * faceapi 27790-28271 (30155) for 313 tensors with 16067 bytes of names, the torch
 * transformer 3232-3360 (3233) for 29 with 737, the torch CNN 2148-2317 (2017) for 16, the
 * digits CNN 1520-1581 (1510) for 10, the torch MLP 1152-1214 (1162) for 6, the digits
 * MLP1024 967-1007 (988) for 4. The fit before, 900 + 112 a tensor + 0.15 of the names,
 * counted the padding that the tensors' bytes already hold: 1 KB over on the torch
 * transformer, whose --ratio 16 archive is a quarter overhead, and its first attempts landed
 * 3 to 14% under the budget (tests/cli_budget_small.sh). */
static double overhead_bytes(size_t ntensors, double name_bytes)
{
	return 650.0 + 84.0 * (double)ntensors + 0.2 * name_bytes;
}

/*
 * Sum of x^2 over the values that are not special (NaN, infinities, subnormals, -0:
 * alcm_tensor_measure()'s and the quantizer's signal). With the report's SNR it gives a
 * coding's squared error, sig / 10^(snr / 10), to about 1e-14 of it, without the
 * reconstruction and a pass comparing it to the input (alcm_encoder_add_recon,
 * alcm_tensor_measure): those were 12% of alcm-pack --ratio 8's CPU time on faceapi (perf).
 */
static double budget_signal(int dtype, const uint8_t *p, uint64_t n)
{
	double s[4] = {0, 0, 0, 0};
	switch (dtype) {
	case ALCM_DTYPE_F32: {
		/* Four values at a time into their lanes, as the tail does: the same sums, and a
		 * loop the compiler vectorizes (faceapi's profile pass at -T1: 9-11 -> 7 ms). */
		uint64_t i = 0;
		for (; i + 4 <= n; i += 4)
			for (int l = 0; l < 4; l++) {
				uint32_t u;
				float f;
				memcpy(&u, p + 4 * (i + l), 4);
				memcpy(&f, &u, 4);
				uint32_t e = u & 0x7f800000u;
				s[l] += e == 0x7f800000u || e == 0 ? 0.0 : (double)f * f;
			}
		for (; i < n; i++) {
			uint32_t u;
			float f;
			memcpy(&u, p + 4 * i, 4);
			memcpy(&f, &u, 4);
			uint32_t e = u & 0x7f800000u;
			s[i & 3] += e == 0x7f800000u || e == 0 ? 0.0 : (double)f * f;
		}
		break;
	}
	case ALCM_DTYPE_F64:
		for (uint64_t i = 0; i < n; i++) {
			uint64_t u;
			double f;
			memcpy(&u, p + 8 * i, 8);
			memcpy(&f, &u, 8);
			uint64_t e = u & 0x7ff0000000000000ull;
			s[i & 3] += e == 0x7ff0000000000000ull || e == 0 ? 0.0 : f * f;
		}
		break;
	case ALCM_DTYPE_BF16:
	case ALCM_DTYPE_F16:
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			double f;
			if (dtype == ALCM_DTYPE_BF16) {
				if ((h & 0x7f80) == 0x7f80 || (h & 0x7f80) == 0)
					continue;
				uint32_t u = (uint32_t)h << 16;
				float g;
				memcpy(&g, &u, 4);
				f = g;
			} else {
				unsigned e = (h >> 10) & 31;
				if (e == 31 || e == 0)
					continue;
				f = ldexp(1024 + (h & 1023), (int)e - 25);
			}
			s[i & 3] += f * f;
		}
		break;
	default: break;
	}
	return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Squared error of a coding from its report and the tensor's signal energy. */
static double budget_sq_error(const alcm_tensor_report *rep, double sig)
{
	return rep->mode == ALCM_MODE_LOSSLESS || !(rep->snr_db < INFINITY) || !(sig > 0)
	           ? 0
	           : sig / pow(10, rep->snr_db / 10);
}

typedef struct budget_sample {
	uint8_t *data; /* NULL: none (small, not lossy) */
	uint64_t n;    /* its values */
	uint64_t cols; /* its runs' values are rows of `cols` (the tensor's last axis), or 1 */
	int flat2;     /* cols 1, each run within one entry of axis 0: may be coded as 2-D */
	double at;     /* the bound it was last coded at, or 0 */
	int dtype;
	int whole;     /* the whole tensor (fewer than SAMPLE_WHOLE values), in its own shape */
	int slope;     /* a tensor under SAMPLE_MIN values: its sample measures lam only */
	double lam;    /* squared error saved per byte spent over the octave below `at`, or 0 */
	double alpha;  /* log2 of its squared error at `at` over that at half of it */
	double rise;   /* bits per value more at half of `at` */
	double prev_at; /* the bound it was coded at before `at`, or 0 */
	unsigned ndim;
	uint64_t shape[ALCM_MAX_NDIM];
} budget_sample;

typedef struct equal_at {
	double l2lam, lo, hi;
} equal_at;

typedef struct budget_state {
	alcm_budget_profile *prof;
	double *bound, *actual, *shape;
	double *sig;    /* each tensor's signal energy (its profile's: budget_signal) */
	equal_at *eq;   /* budget_equalise's scratch, a tensor each */
	budget_sample *samp;
	size_t n;
	double names;   /* bytes of the tensors' names */
	int lossy;      /* some tensor can be quantized */
	int used;       /* the writer holds an attempt: reopen it before the next */
	double sse;     /* total squared error of the last attempt, over float values */
	double nq;      /* float values that can be quantized */
	double wall_enc; /* seconds spent in budget_encode */
	int slope_only;  /* budget_sample_calibrate codes the slope samples only */
	int calibrated;  /* the plan is made from a measured attempt (budget_calibrate) */
	double near;     /* octaves whole and slope samples' bounds may move, or 0 (EQUAL_MOVE_MAX) */
	uint64_t in_bytes; /* the input file's size (budget_threads) */
	struct budget_crew *crew;   /* the passes' threads, or NULL: the caller alone */
	struct sample_coder *coder; /* one per thread of the crew (budget_sample_worker) */
	size_t *sorder;             /* the tensors, largest sample first */
} budget_state;

/* Octaves below its profiled steps (sd 2^-16 and up) a tensor's bound may go, its rate growing
 * there as the curve's first half octave does (flat for values on a lattice the finest step
 * meets, about a bit a value an octave for others), up to the dtype's raw bits. Near lossless
 * one bound for every tensor can be finer than a large tensor's finest step: bounds stopped
 * there, and the plan kept faceapi's pointwise filters (sd 0.3) at 2.5e-6 where one bound of
 * 9e-8 for all fit the same size (--ratio 6); tests/cli_budget_uniform.sh has such a file. A
 * rate growing a bit an octave whatever the curve made faceapi --ratio 4 (beyond reach: the
 * lossless archive is kept) try 5 attempts instead of 1. */
#define BUDGET_BELOW 8.0
static double bound_floor(const alcm_budget_profile *p)
{
	return p->step[0] / 2 * exp2(-BUDGET_BELOW);
}

/* Predicted bytes of a profiled tensor at quantization step `step`: the predicted curve
 * interpolated linearly in log step (below it, as BUDGET_BELOW says). */
static double predicted_at(const alcm_budget_profile *p, double step)
{
	if (!p->lossy)
		return p->fixed_bytes;
	double x = 2 * log2(step / p->step[0]), bits;
	if (x < 0)
		bits = fmin(p->bits[0] - x * fmax(p->bits[0] - p->bits[1], 0),
		            fmax(8 * p->fixed_bytes / (double)p->elements, p->bits[0]));
	else if (!(x > 0))
		bits = p->bits[0];
	else if (x >= ALCM_BUDGET_STEPS - 1)
		bits = p->bits[ALCM_BUDGET_STEPS - 1];
	else {
		int k = (int)x;
		bits = p->bits[k] + (x - k) * (p->bits[k + 1] - p->bits[k]);
	}
	return (double)p->elements * bits / 8;
}

/* Bound x within tensor p's bounds: BUDGET_BELOW under its steps, half its coarsest step. */
static double within_steps(const alcm_budget_profile *p, double x)
{
	return fmin(fmax(x, bound_floor(p)), p->step[ALCM_BUDGET_STEPS - 1] / 2);
}


/* Predicted bytes of the tensors with bounds bound(b, i, x): the quantized ones' curves, the
 * others' fixed bytes. */
typedef double (*bound_fn)(const budget_state *b, size_t i, double x);
static double predicted_with(const budget_state *b, bound_fn bound, double x)
{
	double total = 0;
	for (size_t i = 0; i < b->n; i++)
		total += b->shape[i] > 0 ? predicted_at(&b->prof[i], 2 * bound(b, i, x))
		                         : b->prof[i].fixed_bytes;
	return total;
}

/* Bound i of the plan `shape` times f, within the profiled steps. */
static double scaled_bound(const budget_state *b, size_t i, double f)
{
	return b->shape[i] > 0 ? within_steps(&b->prof[i], b->shape[i] * f) : 0;
}

/* Predicted bytes of the tensors with every bound of `shape` moved by 2^u: 2^u taken once a
 * sum, not once a tensor (the torch transformer's --ratio 4: 461 sums of 29 tensors in its 7
 * plans). */
static double predicted_moved(const budget_state *b, double u)
{
	return predicted_with(b, scaled_bound, exp2(u));
}

/* One step of a bisection between *lo and *hi at their midpoint: `above` moves *lo there,
 * else *hi. @return 1 once the interval no longer changes (the midpoint is an end it was to
 * replace), when every step left would change nothing either: stopping then gives the bounds
 * of running all of them, in some 55 steps of the 80 (one sum of the tensors' curves each). */
static int bisect_step(double *lo, double *hi, double mid, int above)
{
	double *end = above ? lo : hi;
	if (*end == mid)
		return 1;
	*end = mid;
	return 0;
}

/*
 * The plan's bounds of the sampled tensors (budget_sample_calibrate codes each sample at its
 * bound `at` and at half of it: lam, the squared error saved per byte over that octave; alpha,
 * log2 of the squared error's fall over it; rise, the bits per value it cost) moved to where
 * their squared error per byte is the same, 2^c: each by (c - log2 lam) / alpha octaves from
 * `at`, at most EQUAL_MOVE_MAX (samples whose bound moved by half an octave or more are coded
 * again there, up to SAMPLE_ROUNDS), c such that their bytes, at the measured rise per
 * octave, are what the plan gave them. The other tensors keep the plan's bounds. The plan
 * (predicted rates, squared error step^2 / 12 per value) misjudged what bytes buy where
 * values are coded at under a bit each or many are zero: faceapi --ratio 16 spent 9 KB on
 * conv256_down_out/conv1 ([3, 3, 256, 256]) for 79% of its variance left as error and 35 KB
 * on conv256_down_out/conv2 for 4%. Squared error (tools/bench/budget_passes.py, d4f55b4 ->
 * this): faceapi --ratio 16 10.53 -> 9.95 at 0.3% fewer bytes, 12 2.03 -> 2.00; the digits
 * CNN gradients --ratio 4 2.77e-14 -> 2.64e-14, 16 9.97e-8 -> 9.82e-8; the same at 6 and 8.
 * Keeping their bytes by the predicted curves instead landed those archives 1-2% lower (the
 * curves' slope away from the sampled octave is the predictor's); moving the bounds before
 * the plan's common move, or at most half an octave, kept less of the gain.
 * Samples whose squared error fell more than 2^EQUAL_ALPHA_MAX-fold over the octave (values
 * once quantized on a grid the half bound meets: faceapi's 8-bit weights, 2^45 to 2^57)
 * measured no local slope: their plan stands (budget_saturate). So does a sample (not a whole
 * small tensor, whose size is measured) whose squared error fell less than
 * 2^EQUAL_ALPHA_MIN-fold: its bound is over most of its values, which quantize to zero at
 * half of it as well, and the slope of that octave says nothing of where bytes start to buy
 * error. The torch transformer's bfloat16 linear1 weights at --ratio 12 (0.24 bit per value,
 * the fall 2^0.05 and 2^0.09) were moved by the octave the slope allowed, and the first
 * attempt's squared error was 12% over what the plan made again from its measured sizes gave
 * at equal bytes (the old overhead estimate had always forced that second plan); over nearby
 * sizes against 1171e16, +6.4% -> -1.4%, other check files within 0.5%
 * (tools/bench/budget_passes.py --sweep 5).
 * Tensors under SAMPLE_WHOLE values, coded whole, are measured at half their bound too and
 * take part (a bound may then fall below the profiled steps): faceapi's 236 of them kept
 * the plan's bounds before, and --ratio 6 had 1.6 times the squared error at the same bytes
 * (3.27e-7 -> 2.09e-7; --ratio 8, 12, 16 and the digits CNN gradients within 0.4%, its
 * --ratio 12 against 1171e16 at equal bytes +1.2% -> +0.2%). Not when the budget is beyond
 * reach (every bound at its finest: budget_predict_plan): the bounds equalise moved coarser
 * then had room to move finer, and the search tried a second, futile attempt (faceapi
 * --ratio 4, where the lossless archive is kept).
 */
#define EQUAL_ALPHA_MIN 0.5
#define EQUAL_ALPHA_MAX 4.0
#define EQUAL_MOVE_MAX 1.0 /* octaves from where the sample was coded */
static int budget_equal_in(const budget_state *b, size_t i)
{
	const budget_sample *sm = &b->samp[i];
	return b->shape[i] > 0 && sm->lam > 0 && sm->at > 0 &&
	       (sm->whole || sm->alpha >= EQUAL_ALPHA_MIN) && sm->alpha <= EQUAL_ALPHA_MAX &&
	       sm->rise > 0 &&
	       (!sm->slope || (!b->calibrated && fabs(log2(b->shape[i] / sm->at)) <= EQUAL_MOVE_MAX));
}

/* Where bound i may go from its sample's measurement: log2 of its lam, and the octaves from
 * where it was coded (lo, hi) its bound may move. */
static void budget_equal_range(const budget_state *b, size_t i, equal_at *q)
{
	const budget_sample *sm = &b->samp[i];
	double m = b->near > 0 && (sm->whole || sm->slope) ? b->near : EQUAL_MOVE_MAX;
	/* A sample of SAMPLE_MIN values or more coded again after its bound moved by half an
	 * octave or more goes back at most halfway to where it was coded before. The digits CNN
	 * gradients' fc1 measured 0.06 bit per value over the octave below 8.8e-8 and 0.52 below
	 * 1.8e-7 (its sizes are not monotone: 58352 bytes at 6.25e-8, 58608 at 8e-8), and at
	 * --size 115460 its bound went back and forth an octave each sample round, conv3's
	 * against it, the plan ending an octave from their samples: 4.9% under the budget with
	 * 1.4 times its neighbours' squared error, two more attempts after it. Now one attempt
	 * at each of 11 sizes around raw / 8. */
	double lo = -m, hi = m;
	if (!sm->whole && !sm->slope && sm->prev_at > 0) {
		double back = log2(sm->prev_at / sm->at);
		if (back <= -0.5)
			lo = fmax(lo, back / 2);
		else if (back >= 0.5)
			hi = fmin(hi, back / 2);
	}
	q->l2lam = log2(sm->lam);
	q->lo = lo;
	q->hi = hi;
}

/* Bound i at slope 2^c (log2 of squared error per byte), from its sample's measurement. */
static double budget_equal_bound(const budget_sample *sm, const equal_at *q, double c)
{
	double d = (c - q->l2lam) / fmax(sm->alpha, 0.25);
	return sm->at * exp2(fmin(fmax(d, q->lo), q->hi));
}

/* The tensors that take part (budget_equal_in) and their ranges are found once (b->eq; lam
 * NAN: not in), not in each of the bisection's sums. */
static void budget_equalise(budget_state *b)
{
	double lo = INFINITY, hi = -INFINITY;
	equal_at *q = b->eq;
	for (size_t i = 0; b->samp && i < b->n; i++) {
		q[i].l2lam = NAN;
		if (budget_equal_in(b, i)) {
			budget_equal_range(b, i, &q[i]);
			lo = fmin(lo, q[i].l2lam);
			hi = fmax(hi, q[i].l2lam);
		}
	}
	if (!(hi >= lo))
		return;
	lo -= 64, hi += 64; /* every bound at its limit at either end */
	for (int it = 0; it < 80; it++) {
		double mid = (lo + hi) / 2, got = 0;
		for (size_t i = 0; i < b->n; i++)
			if (!isnan(q[i].l2lam))
				got -= (double)b->prof[i].elements * b->samp[i].rise *
				       log2(budget_equal_bound(&b->samp[i], &q[i], mid) / b->shape[i]);
		/* a larger slope: coarser bounds, fewer bytes */
		if (bisect_step(&lo, &hi, mid, got > 0))
			break;
	}
	for (size_t i = 0; i < b->n; i++)
		if (!isnan(q[i].l2lam))
			b->shape[i] = budget_equal_bound(&b->samp[i], &q[i], hi);
}

/* One bound e for tensor i: within its bounds (BUDGET_BELOW under its steps, half its
 * coarsest step), where its curve says something of it: a float64 tensor of spread 1e-60
 * beside one of 1 gave both 3e-10, and the second took 110% more than its curve, extrapolated
 * 30 octaves below its steps, said. */
static double uniform_at(const budget_state *b, size_t i, double e)
{
	return b->shape[i] > 0 ? within_steps(&b->prof[i], e) : 0;
}

/* Squared error of bounds `bound` (NULL: one bound `one`, as uniform_at() gives it) by the
 * plan's distortion model: step^2 / 12 a value (step twice the bound), at most the tensor's
 * variance. */
static double budget_model_sse(const budget_state *b, const double *bound, double one)
{
	double d = 0;
	for (size_t i = 0; i < b->n; i++) {
		double x = bound ? bound[i] : uniform_at(b, i, one);
		if (x > 0)
			d += (double)b->prof[i].elements * fmin(x * x / 3, b->prof[i].variance);
	}
	return d;
}

/*
 * One bound for every quantized tensor in place of the plan when the plan's squared error is
 * UNIFORM_SUSPECT times what that bound gives at the same predicted bytes, both by the same
 * model (issue 6: no worse than one bound at the same size). The solver's steps stop at each
 * tensor's finest profiled one (bounds at sd 2^-17); near lossless the plan then held large tensors
 * there and gave small ones far finer bounds: faceapi --ratio 6 kept its pointwise filters
 * at 2.5e-6 and biases at 1e-13, 3.15e-7 of squared error, 353 times that of one bound at
 * the same size (alcm-budget-bench); with this and BUDGET_BELOW, one attempt as before, 5.7e-10
 * (1.9 times; the one bound's archive sizes jump between 4.72 and 4.94 MB there). Over 11
 * check files (tools/bench) at R 4 to 16 the model's ratio is at most 1.2 but there (20 to
 * 980); the only other archive that changed is the digits CNN gradients' at R 4 (BUDGET_BELOW:
 * 1.020 -> 1.004 times one bound's squared error). Tensors of spreads 10^10 to 10^150 apart
 * (float64 gradients of 1e-60 beside weights of 1, say) mostly gain (1.6e-7 -> 2e-9 to
 * 2e-12 at --ratio 8, and budgets that could not be met before are), but at a --size
 * between --ratio 8 and 16 some take up to 8 attempts and twice the squared error.
 * @return the predicted bytes of the tensors under the plan kept.
 */
#define UNIFORM_SUSPECT 4.0
static double budget_guard(budget_state *b, double budget, double predicted)
{
	double lo = INFINITY, hi = 0;
	for (size_t i = 0; i < b->n; i++)
		if (b->shape[i] > 0) {
			lo = fmin(lo, bound_floor(&b->prof[i]));
			hi = fmax(hi, b->prof[i].step[ALCM_BUDGET_STEPS - 1] / 2);
		}
	if (!(hi > 0))
		return predicted;
	double l = log(lo), h = log(hi);
	if (predicted_with(b, uniform_at, lo) <= budget || predicted_with(b, uniform_at, hi) >= budget)
		return predicted; /* beyond reach at every bound */
	for (int it = 0; it < 60; it++) {
		double mid = (l + h) / 2;
		if (bisect_step(&l, &h, mid, predicted_with(b, uniform_at, exp(mid)) > budget))
			break;
	}
	double e = exp(h), plan = budget_model_sse(b, b->shape, 0), one = budget_model_sse(b, NULL, e);
	if (plan > UNIFORM_SUSPECT * one) {
		cli_info("budget: one bound for all, %.4g: the plan's squared error by the model is "
		         "%.3g, this bound's %.3g", e, plan, one);
		for (size_t i = 0; i < b->n; i++)
			b->shape[i] = uniform_at(b, i, e);
		predicted = predicted_moved(b, 0);
	}
	return predicted;
}

/*
 * The plan for `budget` bytes of tensors, into shape[]: each tensor's bound a quarter of the
 * way (in log) from its equal-slope bound to the common one (their mean log2 over the
 * values), then all moved by one factor so that the predicted size is the budget itself (the
 * solver's steps are half an octave apart, up to a fifth of a small input's size). With the
 * PRED version 2 predictor (held-out error about 0.3 bit per value), on faceapi at ratios
 * 8/12/16 a quarter gave squared errors 0.32/3.10/14.7 against 0.29/3.24/15.2 halfway (the
 * rule of the version 1 predictor, off by 1 to 3 bits per value) and 0.34/4.46/20.0 at one
 * common bound; full equal slope 0.27/2.99/16.0 (alcm-pack -v; tools/bench/budget_passes.py).
 * Then the sampled tensors' bounds are moved by what their samples measured (budget_equalise),
 * unless the budget is beyond reach (the predicted size at the finest steps under it).
 * Returns the predicted bytes.
 */
static double budget_predict_plan(budget_state *b, double budget)
{
	double predicted = 0;
	if (alcm_budget_solve(b->prof, b->n, fmax(budget, 1), NULL, b->shape, &predicted) ==
	    ALCM_E_BOUND)
		cli_info("budget: predicted %.0f bytes at the coarsest steps", predicted);
	double s = 0, w = 0;
	for (size_t i = 0; i < b->n; i++)
		if (b->shape[i] > 0) {
			s += (double)b->prof[i].elements * log2(b->shape[i]);
			w += (double)b->prof[i].elements;
		}
	for (size_t i = 0; i < b->n; i++)
		if (b->shape[i] > 0)
			b->shape[i] = exp2(0.75 * log2(b->shape[i]) + 0.25 * (s / w));
	/* Within each tensor's bounds before the common move, else a tensor pulled far below its
	 * floor by the others' mean (float64 spreads of 1e-100 and 1: hundreds of octaves) never
	 * moves with them: --ratio 8 kept 1136 bytes of 19632, or could not fit. */
	for (size_t i = 0; i < b->n; i++)
		b->shape[i] = scaled_bound(b, i, 1);
	double lo = -20, hi = 20;
	for (int it = 0; it < 80; it++) {
		double mid = (lo + hi) / 2;
		if (bisect_step(&lo, &hi, mid, predicted_moved(b, mid) > budget))
			break;
	}
	for (size_t i = 0; i < b->n; i++)
		b->shape[i] = scaled_bound(b, i, exp2(hi));
	if (predicted_moved(b, -20) > budget) /* else every bound is at its finest already */
		budget_equalise(b);
	return budget_guard(b, budget, predicted_moved(b, 0));
}

/*
 * Samples: on a network it never saw the predictor is off by a few tenths of a bit per value,
 * the same way on many tensors (faceapi: bounds from the predictions alone landed 4.5% under
 * the budget at --ratio 6 and 2.9% over at 16, and a second attempt costs a whole pack).
 * Each tensor of at least SAMPLE_MIN values keeps SAMPLE_RUNS runs of contiguous values
 * spread over it, a sixteenth of it (at most SAMPLE_MAX values), coded before the first
 * attempt at the planned bound (budget_sample_calibrate): about 9% of the values of faceapi
 * coded once more. Smaller samples (a quarter of tensors of 8K to 64K values, or the whole
 * of them) made the torch MLP, transformer and digits CNN land 5% to 7% under at --ratio 12
 * and 16: a small sample's tables cost more than the half-sample difference removes.
 * The plan made from the samples may move a tensor's bound far from where its sample was
 * coded (near lossless, 5 octaves on faceapi's 3x3 convolutions at --ratio 6, where the
 * predicted curve was 17% high): the samples of tensors whose bound moved by half an octave
 * or more are coded again at the new bound and the plan made again, up to SAMPLE_ROUNDS times
 * in all (faceapi --ratio 6: 23, 23 and 14 samples, first attempt -3.2% -> -1.1%).
 * A tensor's last axis of SAMPLE_COLS values or more is taken as its channel axis
 * (budget_sample_take); a narrower one (a 3x3 kernel's width) is not: 3-D samples of the
 * digits CNN's [128, 64, 3, 3] weights landed its first attempts 2 to 3% lower.
 * A tensor of 2 dimensions or more whose sample is 1-D all the same (runs shorter than two
 * rows: the digits CNN's conv3 [128, 64, 3, 3] and fc1 [256, 512]), with SAMPLE_COLS
 * entries or more in axis 0 (a channel axis, not a kernel's height: faceapi's [3, 3, in,
 * out] and [1, 1, in, out] keep their sixteenth, which costs less than a quarter coded
 * twice: 0.30 -> 0.34 s of CPU at --ratio 16), keeps a quarter of its
 * values (SAMPLE_FLAT_SHARE), each run within one entry of axis 0, and its sample is coded
 * both as 1-D and as (runs, values), the smaller kept: where channels differ (gradients, with
 * dead units: 88 of fc1's 256 rows are zero) the 1-D sample lost the per-channel classes the
 * whole tensor gets and over-estimated it by 6 to 38%, so the digits CNN gradients' first
 * attempt landed 9 to 15% under the budget at every --ratio, and a sixteenth as (runs,
 * values) was still 5 to 8% off (a sixteenth of 256 rows is few of them).
 * A matrix's runs shorter than its rows start at the same place in each row (the first
 * run's columns, then the next run's where there are fewer rows than runs), the rows
 * spread evenly, so that a column of the (runs, values) sample is one of the matrix's
 * columns, whose classes the coder takes (a TF layout's output channels). Spread evenly over
 * the values they started 12 columns further into each row: the digits MLP1024 gradients'
 * [64, 1024] weights (1024 hidden units as columns) were estimated 11% over, and every
 * first attempt landed 4 to 11% under (two attempts at each of R 4 to 16); now within 1.2%,
 * one attempt each (tests/cli_budget_tf.sh). Not a convolution's rows:
 * half of each row of the (runs, values) sample then held half its input channels, and
 * cli_budget_flat.sh's, whose scales span 2^6, took 7 attempts over R 4 to 16 (5 before).
 */
#define SAMPLE_MIN ((uint64_t)65536)
/* A lossy tensor of fewer values is its own sample, coded whole in its shape at its planned
 * bound (no half: the size is measured, not estimated) and at half of it (its squared error
 * per byte, for budget_equalise; no budget_saturate). With PRED
 * version 3 the predictor alone was 60% over on faceapi's tensors under 4096 values at
 * --ratio 6 (and 6% over on its unsampled ones of 4K to 64K values): the first attempt landed
 * 3.4% under the budget and a second pack followed; 256 such tensors coded whole cost 0.03 s
 * (--ratio 6 wall 0.57 -> 0.40 s, one attempt at -1.9%). */
#define SAMPLE_WHOLE ((uint64_t)4096)
/* A lossy tensor of more than SLOPE_MIN values and under SAMPLE_MIN (s->slope) keeps a quarter
 * of it (SAMPLE_SLOPE_SHARE, in SAMPLE_RUNS runs as the large ones' samples), coded at its bound
 * and at half of it for its squared error per byte only (the tables' cost falls out of the
 * difference; its predicted curve stays: a quarter's size estimate landed the torch MLP,
 * transformer and digits CNN 5-7% under, see above), so that budget_equalise moves it with
 * the others when the plan is within an octave of where it was coded. Before, these tensors
 * kept the predictor's plan: just under full precision faceapi's [3, 3, 64, 64] filters were
 * bound at ~2e-7 (8.6 KB more for 6e-9 less squared error) while 256-value biases were
 * starved. The plan moves the samples an octave at most from where they were coded, so after
 * the SAMPLE_ROUNDS, up to SLOPE_ROUNDS more code only these and the whole small tensors
 * whose bound moved by half an octave (cheap: under 5% of faceapi's values), the last plan
 * moving them SLOPE_NEAR octave at most, so that their planned sizes are measured ones.
 * Only before a measured attempt (budget_calibrate): after it, their samples' slopes moved
 * the second attempt of torch's transformer weights at --size raw / 16 8% over the budget,
 * and 8 attempts followed (that one keeping its first, 7% under).
 * faceapi --size 4600000 squared error 3.89e-7 -> 1.19e-7 (1171e16 3.75e-7), --size 4500000
 * 1.18e-6 -> 5.06e-7, one attempt each (tools/bench/budget_passes.py --sweep: bud16 report).
 * Over SLOPE_MIN values, not over 16384 as first: torch's transformer gradients'
 * [256, 64] and [192, 64] tensors kept the predictor's plan, one of them bound at 2.4e-5 where
 * 1171e16 gave 6.8e-6, 3x its squared error for 1.3 KB (5% of the archive): squared error at
 * equal bytes +3.5% (--ratio 8) and +2.4% (12) over 1171e16's, fitted over nearby sizes;
 * sampled, -0.7% and -2.6% (every row of budget_passes.py's seven check files within 1%). */
#define SAMPLE_MAX ((uint64_t)1 << 18)
#define SAMPLE_RUNS ((uint64_t)64)
#define SAMPLE_ROUNDS 3
#define SLOPE_ROUNDS 3
#define SLOPE_NEAR 0.49 /* under the half octave a sample is coded again beyond */
#define SAMPLE_COLS ((uint64_t)16)
#define SAMPLE_FLAT_SHARE ((uint64_t)4)
#define SAMPLE_SLOPE_SHARE ((uint64_t)4)
#define SLOPE_MIN ((uint64_t)8192) /* tensors of more values only */
#define SECTION_ALIGN 64 /* sections start at multiples of it (alcm_section_info) */

/*
 * The order in which budget_sample_take() spreads its runs over the entries of axis 0 of
 * tensor t (n values of w bytes): where some entries are all zeros, +0.0 or -0.0 (the
 * gradient rows of dead units) and some not, the live ones first, in order, then the dead ones, so that the sample
 * holds each kind in its share; else none (*order NULL: the tensor's own order). With the
 * tensor's own order the evenly spaced runs of the digits CNN gradients' fc1 ([256, 512], 88
 * rows dead) caught 26 dead rows of 64 where 22 is their share, its size estimate 16% under
 * (46721 bytes predicted, 54186 coded at --ratio 8): the first attempt landed 4.1% over the
 * budget and a second followed. In their share, 50369 predicted and 50374 coded, one attempt
 * at R 4 to 16 (squared error at equal bytes against 1171e16, single archive: R 4 +1.4% ->
 * -2.4%, R 8 +0.5% -> -1.7%). Taking the live rows only, the dead as free, was 9% over: dead
 * rows still cost (fc1's 88 take 3.7 KB of 54 KB at 1.25e-7). Sets *ent, an entry's values.
 */
static int sample_order(const alcm_tensor *t, uint64_t n, uint64_t w, uint64_t **order,
                        uint64_t *ent)
{
	*order = NULL;
	if (t->ndim < 2 || t->shape[0] < SAMPLE_COLS)
		return 0;
	uint64_t rows = t->shape[0], e = n / rows, nlive = 0;
	uint64_t *o = malloc((size_t)rows * sizeof(uint64_t));
	uint8_t *dead = malloc((size_t)rows);
	if (!o || !dead) {
		free(o);
		free(dead);
		return EXIT_NOMEM;
	}
	for (uint64_t r = 0; r < rows; r++) { /* +0.0 or -0.0 (little-endian: the sign bit is
	                                         * the top bit of an element's last byte) */
		const uint8_t *q = (const uint8_t *)t->data + r * e * w;
		uint64_t j = 0;
		while (j < e * w && !(q[j] & ((j + 1) % w ? 0xff : 0x7f)))
			j++;
		dead[r] = j == e * w;
		nlive += !dead[r];
	}
	if (nlive && nlive < rows) {
		uint64_t a = 0, b = nlive;
		for (uint64_t r = 0; r < rows; r++)
			o[dead[r] ? b++ : a++] = r;
		*order = o, *ent = e;
	} else {
		free(o);
	}
	free(dead);
	return 0;
}

static int budget_sample_take(const alcm_tensor *t, const alcm_budget_profile *p,
                              budget_sample *s)
{
	memset(s, 0, sizeof(*s));
	int st;
	uint64_t n = p->elements, w = alcm_dtype_size(t->dtype);
	if (p->lossy && n > 0 && n < SAMPLE_WHOLE) {
		if (!(s->data = malloc((size_t)(n * w))))
			return EXIT_NOMEM;
		memcpy(s->data, t->data, (size_t)(n * w));
		s->n = n;
		s->cols = 1;
		s->dtype = t->dtype;
		s->whole = 1;
		s->ndim = t->ndim;
		memcpy(s->shape, t->shape, sizeof(s->shape));
		return 0;
	}
	if (!p->lossy || p->elements <= SLOPE_MIN)
		return 0;
	s->slope = n < SAMPLE_MIN; /* a quarter, for its squared error per byte only */
	uint64_t *order = NULL, ent = 0;
	if ((st = sample_order(t, n, w, &order, &ent)))
		return st;
	uint64_t share = s->slope ? SAMPLE_SLOPE_SHARE : 16;
	uint64_t run = (n / share < SAMPLE_MAX ? n / share : SAMPLE_MAX) / SAMPLE_RUNS;
	uint64_t cols = t->ndim >= 2 ? t->shape[t->ndim - 1] : 1;
	uint64_t slice = 0; /* values of an entry of axis 0, for a 2-D sample */
	if (cols >= SAMPLE_COLS && run >= 2 * cols) {
		run -= run % cols;
	} else {
		cols = 1;
		uint64_t r4 = (n / SAMPLE_FLAT_SHARE < SAMPLE_MAX ? n / SAMPLE_FLAT_SHARE : SAMPLE_MAX) /
		              SAMPLE_RUNS;
		if (t->ndim >= 2 && t->shape[0] >= SAMPLE_COLS && r4 >= 2 && n / t->shape[0] >= r4)
			run = r4, slice = n / t->shape[0];
	}
	uint64_t m = run * SAMPLE_RUNS;
	if (!(s->data = malloc((size_t)(m * w)))) {
		free(order);
		return EXIT_NOMEM;
	}
	int align = slice && t->ndim == 2 && run < slice; /* a matrix's columns in place */
	for (uint64_t k = 0; k < SAMPLE_RUNS; k++) {
		uint64_t at = k * ((n - run) / (SAMPLE_RUNS - 1));
		at -= at % cols;
		if (align) { /* within one entry of axis 0, at the same place in each */
			uint64_t rows = n / slice, nb = (SAMPLE_RUNS + rows - 1) / rows;
			uint64_t blk = k % nb, cnt = (SAMPLE_RUNS - blk + nb - 1) / nb;
			at = (cnt > 1 ? k / nb * (rows - 1) / (cnt - 1) : 0) * slice + blk * run;
		} else if (slice && at % slice + run > slice) /* within one entry of axis 0 */
			at += slice - at % slice - run;
		for (uint64_t v = at, left = run; left;) { /* v: a place in the entries' order */
			uint64_t o = order ? v % ent : v, len = order && ent - o < left ? ent - o : left;
			uint64_t from = order ? order[v / ent] * ent + o : o;
			memcpy(s->data + (k * run + v - at) * w, (const uint8_t *)t->data + from * w,
			       (size_t)(len * w));
			v += len;
			left -= len;
		}
	}
	free(order);
	s->n = m;
	s->cols = cols;
	s->flat2 = slice > 0;
	s->dtype = t->dtype;
	return 0;
}

/* Bytes of sample s coded alone at `bound`, as tensor i's (with `two`, a flat2 sample as
 * (runs, values)), and how many values that was; with `half`, only the first half of each
 * run (in whole rows), so that a 3-D sample keeps its runs and their class tables, every
 * other value of each run of a 2-D one (its runs whole rows of a matrix, its columns keep
 * their share: the first half of fc1's rows coded 3.47 bits per value, the second 3.00), or
 * every other run of a 1-D one. The bytes are the section's own and half the alignment
 (SECTION_ALIGN) on average: a sample's size with its padding, which depends on where the
 * last one ended, moved the estimate (which takes 30 times the sample-minus-half
 * difference) by up to 10% of a tensor at --ratio 16. */
static int budget_sample_code(alcm_encoder *e, alcm_writer *w, const budget_sample *s,
                              size_t i, int half, int two, uint8_t *tmp, double bound,
                              double *bytes, uint64_t *values, double *sse)
{
	size_t vw = alcm_dtype_size(s->dtype);
	uint64_t run = s->n / SAMPLE_RUNS, n = 0;
	const uint8_t *src = s->data;
	if (half && two) {
		uint64_t hr = run / 2;
		for (uint64_t k = 0; k < SAMPLE_RUNS; k++)
			for (uint64_t j = 0; j < hr; j++, n++)
				memcpy(tmp + n * vw, s->data + (k * run + 2 * j) * vw, vw);
		run = hr;
		src = tmp;
	} else if (half && s->cols == 1) {
		for (uint64_t k = 0; k < SAMPLE_RUNS; k += 2, n += run)
			memcpy(tmp + n * vw, s->data + k * run * vw, (size_t)(run * vw));
		src = tmp;
	} else if (half) {
		uint64_t hr = run / 2 - run / 2 % s->cols;
		for (uint64_t k = 0; k < SAMPLE_RUNS; k++, n += hr)
			memcpy(tmp + n * vw, s->data + k * run * vw, (size_t)(hr * vw));
		run = hr;
		src = tmp;
	} else {
		n = s->n;
	}
	*values = n;
	alcm_tensor t;
	memset(&t, 0, sizeof(t));
	char name[96]; /* names are unique in an archive (the encoder codes one round) */
	snprintf(name, sizeof(name), "sample%zu/%d/%d/%a", i, half, two, bound);
	t.name = name;
	t.name_len = strlen(name);
	t.dtype = s->dtype;
	t.ndim = 1;
	t.shape[0] = n;
	if (s->whole) {
		t.ndim = s->ndim;
		memcpy(t.shape, s->shape, sizeof(t.shape));
	} else if (two) {
		t.ndim = 2;
		t.shape[0] = SAMPLE_RUNS;
		t.shape[1] = run;
	} else if (s->cols > 1) {
		t.ndim = 3;
		t.shape[0] = n / run;
		t.shape[1] = run / s->cols;
		t.shape[2] = s->cols;
	}
	t.data = src;
	t.nbytes = n * vw;
	alcm_tensor_report rep;
	uint64_t pad = (SECTION_ALIGN - alcm_writer_bytes(w) % SECTION_ALIGN) % SECTION_ALIGN;
	uint32_t nsec = alcm_writer_section_count(w);
	int st = alcm_encoder_set_mode(e, ALCM_MODE_MAX_ERROR, bound, 0, 0);
	if (!st)
		st = alcm_encoder_add(e, &t, &rep);
	if (!st && sse)
		*sse = budget_sq_error(&rep, budget_signal(t.dtype, t.data, n));
	if (!st)
		*bytes = (double)(rep.stored_bytes - pad) + SECTION_ALIGN / 2;
	/* Only its size was wanted: the writer drops its sections, so that its memory stays
	 * one sample's instead of growing with every sample coded (faceapi --ratio 8: ~100
	 * page faults fewer of ~6900). The same sizes: a sample's leave out the padding. */
	if (!st)
		st = alcm_writer_rollback(w, nsec);
	return st;
}

/* A tensor whose size measured `got` bits per value more over the octave of steps below x0
 * where `want` were predicted, under a quarter of it, has reached what its values hold
 * (values once quantized, near lossless): its curve below x0 rises by `got` per octave, and
 * no more than predicted, instead. Elsewhere a slope from one sample's octave was too noisy
 * to help: made the measured one everywhere, faceapi's --ratio 8 archive had 10% more
 * squared error at equal bytes. Keeps the curve monotone. */
static void budget_saturate(alcm_budget_profile *p, double x0, double got, double want)
{
	if (!(got < 0.25 * want && want >= 0.1))
		return;
	double d = got - want, rise[ALCM_BUDGET_STEPS];
	for (int k = 0; k + 1 < ALCM_BUDGET_STEPS; k++)
		rise[k] = p->bits[k] - p->bits[k + 1];
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++) {
		double t = fmin(fmax(log2(x0 / p->step[k]), -1), 1);
		p->bits[k] = fmax(0, p->bits[k] + d * t);
	}
	for (int k = ALCM_BUDGET_STEPS - 2; k >= 0; k--)
		if (p->step[k] < x0 / 2 * 0.999)
			p->bits[k] = p->bits[k + 1] + fmin(rise[k], fmax(got, 0) / 2);
	for (int k = 1; k < ALCM_BUDGET_STEPS; k++)
		if (p->bits[k] > p->bits[k - 1])
			p->bits[k] = p->bits[k - 1];
}

/* One sample calibrated (budget_sample_calibrate), with encoder e writing into w; adds
 * 1 to *used and the tensor's values to *seen when it was coded. Touches tensor i's profile
 * and sample only, so that threads may take different tensors. */
static int budget_sample_one(budget_state *b, size_t i, alcm_encoder *e, alcm_writer *w,
                             uint8_t *tmp, size_t *used, double *seen)
{
	budget_sample *s = &b->samp[i];
	alcm_budget_profile *p = &b->prof[i];
	int st;
	if (!s->data || !(b->bound[i] > 0) || (b->slope_only && !s->slope && !s->whole) ||
	    (s->at > 0 && fabs(log2(b->bound[i] / s->at)) < 0.5)) /* coded near there */
		return 0;
	s->prev_at = s->at;
	s->at = b->bound[i];
	double all, half, fine, all2, sse = 0, sse2 = 0, sse_fine = 0;
	uint64_t nall, nhalf;
	int two = 0;
	if ((st = budget_sample_code(e, w, s, i, 0, 0, tmp, b->bound[i], &all, &nall, &sse)))
		return st;
	int sized = !s->whole && !s->slope; /* the sample also corrects the size curve */
	if (s->whole) {
		double off = 8 * (all - predicted_at(p, 2 * b->bound[i])) / (double)p->elements;
		for (int k = 0; k < ALCM_BUDGET_STEPS; k++)
			p->bits[k] = fmax(0, p->bits[k] + off);
	} else if (s->flat2) {
		if ((st = budget_sample_code(e, w, s, i, 0, 1, tmp, b->bound[i], &all2, &nall, &sse2)))
			return st;
		if (all2 < all)
			all = all2, sse = sse2, two = 1;
	}
	if (sized) {
		if ((st = budget_sample_code(e, w, s, i, 1, two, tmp, b->bound[i], &half, &nhalf,
		                             NULL)))
			return st;
		double rate = fmax(0, 8 * (all - half) / (double)(nall - nhalf));
		double est = (8 * all + rate * (double)(p->elements - s->n)) / (double)p->elements;
		double off = est - 8 * predicted_at(p, 2 * b->bound[i]) / (double)p->elements;
		for (int k = 0; k < ALCM_BUDGET_STEPS; k++)
			p->bits[k] = fmax(0, p->bits[k] + off);
	}
	/* At half the bound, for its squared error per byte (budget_equalise). */
	if ((st = budget_sample_code(e, w, s, i, 0, two, tmp, b->bound[i] / 2, &fine, &nall,
	                             &sse_fine)))
		return st;
	s->lam = fine > all && sse > sse_fine && sse_fine > 0 ? (sse - sse_fine) / (fine - all) : 0;
	s->alpha = s->lam > 0 ? log2(sse / sse_fine) : 0;
	s->rise = 8 * (fine - all) / (double)s->n;
	if (sized) {
		double want = 8 * (predicted_at(p, b->bound[i]) - predicted_at(p, 2 * b->bound[i])) /
		              (double)p->elements;
		budget_saturate(p, 2 * b->bound[i], s->rise, want);
	}
	(*used)++;
	*seen += (double)p->elements;
	return 0;
}

/* Threads of the profile pass of an input of BUDGET_ONE_THREAD bytes or more (a smaller one's
 * is budget_profile_all's, on the crew): --threads, or the CPUs it may use (at most 64),
 * or one for an input under BUDGET_ONE_THREAD bytes when --threads is not given: there the
 * threads' start, stacks and arenas (their page faults) cost more than they share. --ratio 8
 * at one thread against two on this 2-core machine (perf stat, medians of 10): the torch
 * transformer (200 KB) 24.7 against 26.6 ms, the torch MLP gradients (670 KB) 23.8 / 27.6,
 * the digits CNN gradients (900 KB) 32.2 / 35.9, the MLP1024 gradients (300 KB) 17.6 / 22.4,
 * a synthetic 8 MB 58-62 / 63-65, 16 MB even; faceapi (28 MB) 282 against 219. The archive is
 * the same whatever the thread count. */
#define BUDGET_THREADS_MAX 64u
#define BUDGET_ONE_THREAD ((uint64_t)16 << 20)
static unsigned budget_threads(const pack_args *a, uint64_t in_bytes)
{
	unsigned n = a->o.threads ? a->o.threads : in_bytes < BUDGET_ONE_THREAD ? 1
	                                                                        : alcm_cpu_count();
	return n < 1 ? 1 : n > BUDGET_THREADS_MAX ? BUDGET_THREADS_MAX : n;
}

/* Threads of the crew: --threads, or the CPUs it may use, but one for an input under
 * BUDGET_CREW_MIN bytes (a file of a few small tensors never starts a thread), and none to
 * start for fewer than CREW_MIN_TENSORS profiles or samples. Started from 16 tensors only,
 * --ratio of the digits CNN's gradients (10 tensors, 900 KB) took 3-7% longer than from two
 * (perf stat -r 25 alternating, R 4 and 12), its two largest samples on a thread each; the
 * digits MLP's (6), the torch MLP's and CNN's (6 and 8) within 2% either way. */
#define BUDGET_CREW_MIN ((uint64_t)128 << 10)
#define CREW_MIN_TENSORS 2
static unsigned budget_crew_threads(const pack_args *a, uint64_t in_bytes)
{
	unsigned n = a->o.threads ? a->o.threads : in_bytes < BUDGET_CREW_MIN ? 1 : alcm_cpu_count();
	return n < 1 ? 1 : n > BUDGET_THREADS_MAX ? BUDGET_THREADS_MAX : n;
}

/*
 * The crew: threads of the budget passes started once for the whole search, each run given
 * the same job as the caller (crew_run). Started and joined for each sample round, a thread
 * came too late to share it on small inputs: on the torch transformer's gradients (29
 * tensors, 200 KB) the caller coded nearly every sample of a round itself, and the samples of
 * --ratio 16 took 3.7 ms at two threads as at one (2.5 ms on the crew, medians of 15).
 * alcm-pack --ratio wall times, perf stat -r 30 alternating, before -> with the crew: the
 * transformer's gradients R 8 8.7-9.0 -> 7.7-8.4 ms, R 16 9.7-9.8 -> 8.7-9.0 ms, its
 * weights R 16 11.3-11.6 -> 10.6 ms; faceapi (28 MB, the ring's threads for its profiles,
 * the crew for its samples) R 16 114-116 -> 107-113 ms (-r 8). The same archives.
 */
typedef struct budget_crew budget_crew;
typedef void (*crew_fn)(void *ctx, unsigned who);
typedef struct crew_member {
	budget_crew *c;
	unsigned who; /* 1.. (the caller is 0) */
} crew_member;
struct budget_crew {
	pthread_t th[BUDGET_THREADS_MAX];
	crew_member m[BUDGET_THREADS_MAX];
	unsigned n; /* threads besides the caller */
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	uint64_t gen;  /* jobs given */
	unsigned left; /* threads still on the job */
	crew_fn fn;
	void *ctx;
	int quit;
};

static void *crew_main(void *arg)
{
	crew_member *m = arg;
	budget_crew *c = m->c;
	uint64_t seen = 0;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->quit && c->gen == seen)
			pthread_cond_wait(&c->go, &c->mu);
		if (c->quit)
			break;
		seen = c->gen;
		crew_fn fn = c->fn;
		void *ctx = c->ctx;
		pthread_mutex_unlock(&c->mu);
		fn(ctx, m->who);
		pthread_mutex_lock(&c->mu);
		if (--c->left == 0)
			pthread_cond_signal(&c->done);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* A crew of nth threads in all (the caller one of them), or NULL for one (or out of memory:
 * the caller works alone). */
static budget_crew *crew_start(unsigned nth)
{
	if (nth < 2)
		return NULL;
	budget_crew *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->go, NULL);
	pthread_cond_init(&c->done, NULL);
	while (c->n + 1 < nth) {
		c->m[c->n] = (crew_member){c, c->n + 1};
		if (pthread_create(&c->th[c->n], NULL, crew_main, &c->m[c->n]))
			break;
		c->n++;
	}
	return c;
}

/* Runs fn(ctx, who) on every thread of the crew and on the caller (who 0); returns when all
 * are done. */
static void crew_run(budget_crew *c, crew_fn fn, void *ctx)
{
	if (c && c->n) {
		pthread_mutex_lock(&c->mu);
		c->fn = fn;
		c->ctx = ctx;
		c->left = c->n;
		c->gen++;
		pthread_cond_broadcast(&c->go);
		pthread_mutex_unlock(&c->mu);
	}
	fn(ctx, 0);
	if (c && c->n) {
		pthread_mutex_lock(&c->mu);
		while (c->left)
			pthread_cond_wait(&c->done, &c->mu);
		pthread_mutex_unlock(&c->mu);
	}
}

static void crew_stop(budget_crew *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->quit = 1;
	pthread_cond_broadcast(&c->go);
	pthread_mutex_unlock(&c->mu);
	for (unsigned k = 0; k < c->n; k++)
		pthread_join(c->th[k], NULL);
	pthread_cond_destroy(&c->done);
	pthread_cond_destroy(&c->go);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* A thread's sample coder: an encoder into a memory writer, made anew for each round. */
typedef struct sample_coder {
	alcm_writer *w;
	alcm_encoder *e;
	uint8_t *tmp; /* kept from round to round */
} sample_coder;

static int sample_coder_open(const pack_args *a, sample_coder *sc)
{
	alcm_pack_options o = a->o;
	o.mode = ALCM_MODE_LOSSLESS;
	o.threads = 1; /* samples are under a chunk: the threads are the crew's */
	if (!sc->tmp)
		sc->tmp = malloc((size_t)(SAMPLE_MAX / 2 * 8));
	int st = sc->tmp ? alcm_writer_open_memory(&sc->w, ALCM_WRITE_NO_SYNC, NULL) : ALCM_E_NOMEM;
	/* A format 1.0 archive stores a tensor's steps in a SCAL section of their own (~33
	 * bytes more for a small tensor), a 1.1 one at the end of its QDAT (spec 6.5.13); an
	 * archive becomes 1.1 at its first tensor coded with 1.1 codings, which real networks
	 * have early. Raised from the start, so that no sample's bytes depend on which samples
	 * the same writer took before it (the first was 33 bytes more on faceapi). */
	if (!st && o.max_minor >= 1)
		st = alcm_writer_require_minor(sc->w, 1);
	if (!st)
		st = alcm_encoder_new(&sc->e, sc->w, &o, NULL);
	return st;
}

static void sample_coder_close(sample_coder *sc)
{
	alcm_encoder_free(sc->e);
	alcm_writer_free(sc->w);
	free(sc->tmp);
	memset(sc, 0, sizeof(*sc));
}

/* A round's samples: each thread takes the next tensor not taken yet, largest sample
 * first. */
typedef struct sample_work {
	const pack_args *a;
	budget_state *b;
	pthread_mutex_t mu;
	size_t next; /* the next place in b->sorder */
	int st;      /* the first failure */
	size_t used;
	double seen;
} sample_work;

static void budget_sample_worker(void *arg, unsigned who)
{
	sample_work *sw = arg;
	sample_coder *sc = &sw->b->coder[who];
	/* A fresh encoder each round: the one before holds a directory entry and a name for
	 * every sample it coded (its sections are dropped), which over six rounds of a model of
	 * thousands of tensors would be megabytes; names then need only be unique in a round. */
	alcm_encoder_free(sc->e);
	alcm_writer_free(sc->w);
	sc->e = NULL, sc->w = NULL;
	int st = sample_coder_open(sw->a, sc);
	size_t used = 0;
	double seen = 0;
	for (;;) {
		pthread_mutex_lock(&sw->mu);
		if (st && !sw->st)
			sw->st = st;
		size_t k = sw->st ? sw->b->n : sw->next++;
		pthread_mutex_unlock(&sw->mu);
		if (k >= sw->b->n)
			break;
		st = budget_sample_one(sw->b, sw->b->sorder[k], sc->e, sc->w, sc->tmp, &used, &seen);
	}
	pthread_mutex_lock(&sw->mu);
	sw->used += used;
	sw->seen += seen;
	pthread_mutex_unlock(&sw->mu);
}

/*
 * Codes each sample, and the first half of each of its runs, at its tensor's planned bound:
 * the difference is the rate of the values alone, without what a tensor costs whatever its
 * size (sections, class tables: a few hundred bytes, 0.1 to 0.7 bit per value of a sample on
 * faceapi), so the tensor's size is estimated as the sample's bytes plus that rate for the
 * rest of its values. Each tensor's predicted curve is shifted by the estimate's difference
 * from the prediction at the planned bound (as budget_calibrate does with a whole attempt).
 * The sample is coded once more at half the bound (budget_saturate): near lossless, tensors
 * of values that were once quantized stop growing at finer bounds, while the predicted curve
 * rises by 0.1 to 0.4 bit per value per octave (faceapi's 3x3 convolutions at --ratio 6), so
 * the plan and its correction moved too little (3 attempts at --ratio 6).
 * Samples are cut in whole rows of the tensor's last axis and coded in 3 dimensions (runs,
 * rows, last axis), so the coder's per-channel classes see them as in the tensor: 1-D samples
 * over-estimated faceapi's 3x3 convolutions by up to 30% at --ratio 6. Sets *coded to the
 * number of samples coded (those whose tensor's bound moved since they were last coded).
 * The tensors' samples are coded by the crew's threads (budget_crew), each with its own
 * encoder and memory writer: a sample's bytes leave out the padding before it, so they do not
 * depend on which writer took it, nor on the thread count.
 */
static int budget_sample_calibrate(const pack_args *a, budget_state *b, size_t *coded)
{
	sample_work sw;
	memset(&sw, 0, sizeof(sw));
	sw.a = a, sw.b = b;
	pthread_mutex_init(&sw.mu, NULL);
	size_t todo = 0;
	double total = 0;
	for (size_t i = 0; i < b->n; i++) {
		const budget_sample *s = &b->samp[i];
		total += b->prof[i].lossy ? (double)b->prof[i].elements : 0;
		todo += s->data && b->bound[i] > 0 && !(b->slope_only && !s->slope && !s->whole) &&
		        !(s->at > 0 && fabs(log2(b->bound[i] / s->at)) < 0.5);
	}
	if (todo)
		crew_run(todo > 1 ? b->crew : NULL, budget_sample_worker, &sw);
	pthread_mutex_destroy(&sw.mu);
	if (sw.st)
		return cli_fail(sw.st, "pack", a->in, "");
	if (sw.used)
		cli_info("budget: %zu tensor samples coded (%.0f%% of the values) to correct the plan",
		         sw.used, total > 0 ? 100 * sw.seen / total : 0.0);
	*coded = sw.used;
	return 0;
}

/* One tensor's profile, sample and signal energy (pass 1), computed by any thread. */
typedef struct prof_job {
	alcm_tensor t; /* its data: buf, or the input's (a large tensor, done by the reader) */
	uint8_t *buf;
	uint64_t cap;
	alcm_budget_profile prof;
	budget_sample samp;
	double sig;
	int st, rc; /* the profile's status, the sample's exit code */
	int done;
	int copied; /* its data is in buf */
} prof_job;

static void budget_profile_job(const pack_args *a, prof_job *j)
{
	const alcm_tensor *t = &j->t;
	memset(&j->samp, 0, sizeof(j->samp));
	/* Tensors that stay lossless (integers) are costed at their raw size: usually small,
	 * and the first attempt's measured size replaces the estimate. */
	j->st = alcm_budget_profile_make(a->o.predictor, t, (double)t->nbytes, &j->prof);
	j->rc = j->st ? 0 : budget_sample_take(t, &j->prof, &j->samp);
	j->sig = !j->st && j->prof.lossy ? j->prof.signal : 0;
}

/*
 * Pass 1 on threads: the reader copies each tensor into a slot of a ring (PROF_SLOTS per
 * thread, PROF_INFLIGHT bytes at most, one tensor whatever its size) and the threads
 * profile the slots in order; the reader takes the results in order. A tensor larger than
 * PROF_INFLIGHT is profiled by the reader from the input's buffer, uncopied. faceapi
 * (313 tensors, 28 MB), 2 threads: pass 1 0.125 -> 0.07 s (profiles, 41 predictions each,
 * and the variance pass over every value, 80% of it).
 */
#define PROF_SLOTS 2u
#define PROF_INFLIGHT ((uint64_t)64 << 20)
typedef struct prof_work {
	const pack_args *a;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	prof_job *job;
	unsigned nslot;
	uint64_t queued, taken; /* jobs given to the threads, and taken by them */
	int quit;
} prof_work;

static void *budget_profile_worker(void *arg)
{
	prof_work *pw = arg;
	pthread_mutex_lock(&pw->mu);
	for (;;) {
		while (!pw->quit && pw->taken == pw->queued)
			pthread_cond_wait(&pw->work, &pw->mu);
		if (pw->taken == pw->queued)
			break;
		prof_job *j = &pw->job[pw->taken++ % pw->nslot];
		pthread_mutex_unlock(&pw->mu);
		budget_profile_job(pw->a, j);
		pthread_mutex_lock(&pw->mu);
		j->done = 1;
		pthread_cond_broadcast(&pw->done);
	}
	pthread_mutex_unlock(&pw->mu);
	return NULL;
}

/* Appends job j's results as tensor b->n, or fails (then the job's sample is freed). */
static int budget_profile_take(const pack_args *a, budget_state *b, prof_job *j, uint64_t *raw)
{
	if (j->st)
		return cli_fail(j->st, "profile", a->in, "");
	if (j->rc) {
		free(j->samp.data);
		return j->rc;
	}
	alcm_budget_profile *np = realloc(b->prof, (b->n + 1) * sizeof(*np));
	if (np)
		b->prof = np;
	budget_sample *ns = np ? realloc(b->samp, (b->n + 1) * sizeof(*ns)) : NULL;
	if (ns)
		b->samp = ns;
	double *nsig = ns ? realloc(b->sig, (b->n + 1) * sizeof(double)) : NULL;
	if (!nsig) {
		free(j->samp.data);
		return EXIT_NOMEM;
	}
	b->sig = nsig;
	b->prof[b->n] = j->prof;
	b->samp[b->n] = j->samp;
	b->sig[b->n] = j->sig;
	*raw += j->t.nbytes;
	b->names += (double)j->t.name_len;
	b->lossy |= j->prof.lossy;
	b->nq += j->prof.lossy ? (double)j->prof.elements : 0;
	b->n++;
	return 0;
}

/* The plan's arrays, once the tensors are known. */
static int budget_alloc(budget_state *b)
{
	b->bound = calloc(b->n + 1, sizeof(double));
	b->actual = calloc(b->n + 1, sizeof(double));
	b->shape = calloc(b->n + 1, sizeof(double));
	b->eq = calloc(b->n + 1, sizeof(*b->eq));
	return b->bound && b->actual && b->shape && b->eq ? 0 : EXIT_NOMEM;
}

/* Pass 1 of an input under BUDGET_ONE_THREAD bytes: the tensors read (copied) in batches of
 * up to BUDGET_ONE_THREAD bytes, each batch profiled by the crew, largest first, and taken in
 * order. The ring (budget_profile) handed each tensor to a thread and took it back with a
 * wake-up each: on the torch transformer (29 tensors, 200 KB) two threads took longer than
 * one (2.7 against 2.1 ms). A file's size does not bound its tensors' (a deflated .npz of
 * 20 zero tensors of 64 MiB is 1.3 MB): a tensor of more than BUDGET_ONE_THREAD bytes is
 * profiled where the input holds it, on the caller, as the ring does with its large ones;
 * read whole, that .npz took 1.38 GB. */
typedef struct prof_all {
	const pack_args *a;
	prof_job *job;
	size_t n, cap, next, *order;
	pthread_mutex_t mu;
} prof_all;

static void prof_all_worker(void *arg, unsigned who)
{
	prof_all *pa = arg;
	(void)who;
	for (;;) {
		pthread_mutex_lock(&pa->mu);
		size_t k = pa->next++;
		pthread_mutex_unlock(&pa->mu);
		if (k >= pa->n)
			break;
		budget_profile_job(pa->a, &pa->job[pa->order[k]]);
	}
}

static int cmp_job_size(const void *x, const void *y, void *ctx)
{
	const prof_job *job = ctx;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	uint64_t p = job[i].t.nbytes, q = job[j].t.nbytes;
	return p != q ? (p < q) - (p > q) : (i > j) - (i < j);
}

/* The batch profiled (unless rc is a failure already) and taken in order; its copies freed.
 * @return rc, or the first failure. */
static int prof_batch(const pack_args *a, budget_state *b, prof_all *pa, uint64_t *raw, int rc)
{
	if (!rc && pa->n && !(pa->order = malloc(pa->n * sizeof(size_t))))
		rc = EXIT_NOMEM;
	if (!rc && pa->n) {
		for (size_t k = 0; k < pa->n; k++)
			pa->order[k] = k;
		qsort_r(pa->order, pa->n, sizeof(size_t), cmp_job_size, pa->job);
		if (pa->n >= CREW_MIN_TENSORS && !b->crew)
			b->crew = crew_start(budget_crew_threads(a, b->in_bytes));
		pa->next = 0;
		crew_run(b->crew, prof_all_worker, pa);
	}
	for (size_t k = 0; k < pa->n; k++) {
		prof_job *j = &pa->job[k];
		if (!rc)
			rc = budget_profile_take(a, b, j, raw);
		else if (pa->order && !j->st)
			free(j->samp.data);
		free(j->buf);
	}
	free(pa->order);
	pa->order = NULL;
	pa->n = 0;
	return rc;
}

static int budget_profile_all(const pack_args *a, budget_state *b, cli_input *in, uint64_t *raw)
{
	prof_all pa;
	memset(&pa, 0, sizeof(pa));
	pa.a = a;
	pthread_mutex_init(&pa.mu, NULL);
	uint64_t held = 0; /* bytes copied into the batch */
	int rc = 0;
	for (;;) {
		alcm_tensor t;
		int has;
		if ((rc = next_tensor(a, in, &t, &has)) || !has)
			break;
		if (t.nbytes > BUDGET_ONE_THREAD) {
			prof_job j;
			memset(&j, 0, sizeof(j));
			j.t = t;
			if ((rc = prof_batch(a, b, &pa, raw, 0)))
				break;
			held = 0;
			budget_profile_job(a, &j);
			if ((rc = budget_profile_take(a, b, &j, raw)))
				break;
			continue;
		}
		if (pa.n == pa.cap) {
			size_t nc = pa.cap ? 2 * pa.cap : 64;
			prof_job *nj = realloc(pa.job, nc * sizeof(*nj));
			if (!nj) {
				rc = EXIT_NOMEM;
				break;
			}
			pa.job = nj, pa.cap = nc;
		}
		prof_job *j = &pa.job[pa.n];
		memset(j, 0, sizeof(*j));
		if (!(j->buf = malloc(t.nbytes ? (size_t)t.nbytes : 1))) {
			rc = EXIT_NOMEM;
			break;
		}
		pa.n++;
		if (t.nbytes)
			memcpy(j->buf, t.data, (size_t)t.nbytes);
		j->t = t;
		j->t.data = j->buf;
		j->t.name = NULL; /* the input's, gone at the next read */
		j->cap = t.nbytes;
		j->copied = 1;
		held += t.nbytes;
		if (held >= BUDGET_ONE_THREAD) {
			if ((rc = prof_batch(a, b, &pa, raw, 0)))
				break;
			held = 0;
		}
	}
	rc = prof_batch(a, b, &pa, raw, rc);
	pthread_mutex_destroy(&pa.mu);
	free(pa.job);
	return rc;
}

/* Pass 1: a profile of every tensor, then the tensors are dropped. */
static int budget_profile(const pack_args *a, budget_state *b, uint64_t *raw)
{
	cli_input *in = NULL;
	int rc = cli_input_open_or_fail(&in, a->in);
	if (rc)
		return rc;
	b->in_bytes = cli_input_size(in);
	if (b->in_bytes < BUDGET_ONE_THREAD) {
		rc = budget_profile_all(a, b, in, raw);
		cli_input_free(in);
		return rc ? rc : budget_alloc(b);
	}
	prof_work pw;
	memset(&pw, 0, sizeof(pw));
	pw.a = a;
	unsigned nth = budget_threads(a, b->in_bytes), started = 0;
	pthread_t th[BUDGET_THREADS_MAX];
	pw.nslot = nth > 1 ? PROF_SLOTS * nth : 1;
	if (!(pw.job = calloc(pw.nslot, sizeof(*pw.job)))) {
		cli_input_free(in);
		return EXIT_NOMEM;
	}
	pthread_mutex_init(&pw.mu, NULL);
	pthread_cond_init(&pw.work, NULL);
	pthread_cond_init(&pw.done, NULL);
	while (nth > 1 && started < nth && !pthread_create(&th[started], NULL, budget_profile_worker,
	                                                   &pw))
		started++;
	uint64_t seq = 0, got = 0, inflight = 0; /* jobs made, and taken back, in order */
	for (;;) {
		alcm_tensor t;
		int has;
		if ((rc = next_tensor(a, in, &t, &has)) || !has)
			break;
		int copy = started && t.nbytes <= PROF_INFLIGHT;
		/* A slot, and room for the copy: the oldest jobs taken back first; all of them
		 * before the reader profiles a tensor itself (the threads take jobs in order). */
		while (!rc && seq > got &&
		       (seq - got == pw.nslot || (copy && inflight + t.nbytes > PROF_INFLIGHT) ||
		        !copy)) {
			prof_job *j = &pw.job[got % pw.nslot];
			pthread_mutex_lock(&pw.mu);
			while (!j->done)
				pthread_cond_wait(&pw.done, &pw.mu);
			pthread_mutex_unlock(&pw.mu);
			rc = budget_profile_take(a, b, j, raw);
			inflight -= j->copied ? j->t.nbytes : 0;
			got++;
		}
		if (rc)
			break;
		prof_job *j = &pw.job[seq % pw.nslot];
		j->t = t;
		j->done = 0;
		j->copied = copy;
		if (copy) {
			if (t.nbytes > j->cap) {
				/* Whole huge pages from 256 KiB (cli_alloc): a slot's growths fault in
				 * a few of them, not every 4 KiB page (alcm_io_reserve does the same). */
				size_t want = (size_t)t.nbytes, huge = (size_t)2 << 20;
				if (want >= ((size_t)256 << 10) && want <= SIZE_MAX - huge)
					want = (want + huge - 1) & ~(huge - 1);
				free(j->buf);
				j->cap = 0;
				if (!(j->buf = cli_alloc(want))) {
					rc = EXIT_NOMEM;
					break;
				}
				j->cap = want;
			}
			if (t.nbytes)
				memcpy(j->buf, t.data, (size_t)t.nbytes);
			j->t.data = j->buf;
			j->t.name = NULL; /* the input's, gone at the next read */
			inflight += t.nbytes;
			pthread_mutex_lock(&pw.mu);
			seq++;
			pw.queued++;
			pthread_cond_signal(&pw.work);
			pthread_mutex_unlock(&pw.mu);
		} else {
			budget_profile_job(a, j);
			j->t.data = j->t.name = NULL;
			j->done = 1;
			pthread_mutex_lock(&pw.mu);
			seq++;
			pw.queued++, pw.taken++; /* no thread is to take it */
			pthread_mutex_unlock(&pw.mu);
		}
	}
	pthread_mutex_lock(&pw.mu);
	pw.quit = 1;
	pthread_cond_broadcast(&pw.work);
	pthread_mutex_unlock(&pw.mu);
	for (unsigned k = 0; k < started; k++)
		pthread_join(th[k], NULL); /* every job given is done */
	for (; got < seq; got++) {
		prof_job *j = &pw.job[got % pw.nslot];
		if (!rc)
			rc = budget_profile_take(a, b, j, raw);
		else if (!j->st)
			free(j->samp.data);
	}
	for (unsigned k = 0; k < pw.nslot; k++)
		free(pw.job[k].buf);
	free(pw.job);
	pthread_cond_destroy(&pw.done);
	pthread_cond_destroy(&pw.work);
	pthread_mutex_destroy(&pw.mu);
	cli_input_free(in);
	return rc ? rc : budget_alloc(b);
}

/* One attempt: every tensor with its own bound, into `w`. */
static int budget_encode(const pack_args *a, budget_state *b, alcm_writer *w, totals *tot)
{
	cli_input *in = NULL;
	alcm_encoder *e = NULL;
	double t0 = cli_now();
	int st, rc = cli_input_open_or_fail(&in, a->in);
	if (rc)
		return rc;
	b->sse = 0;
	alcm_pack_options o = a->o;
	o.mode = ALCM_MODE_LOSSLESS;
	if ((st = alcm_encoder_new(&e, w, &o, NULL))) {
		rc = cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
		goto out;
	}
	memset(tot, 0, sizeof(*tot));
	for (size_t i = 0;; i++) {
		alcm_tensor t;
		int has;
		if ((rc = next_tensor(a, in, &t, &has)))
			goto out;
		if (!has)
			break;
		if (i >= b->n) {
			cli_err("'%s' changed while packing", cli_display(a->in));
			rc = EXIT_IO;
			goto out;
		}
		int lossy = b->bound[i] > 0;
		alcm_encoder_set_mode(e, lossy ? ALCM_MODE_MAX_ERROR : ALCM_MODE_LOSSLESS,
		                      lossy ? b->bound[i] : 0, 0, 0);
		alcm_tensor_report rep;
		if ((st = alcm_encoder_add(e, &t, &rep))) {
			rc = cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
			goto out;
		}
		b->sse += budget_sq_error(&rep, b->sig[i]);
		b->actual[i] = (double)rep.stored_bytes;
		tot->ntensors++;
		tot->raw += t.nbytes;
		if (rep.max_abs_error > tot->maxerr)
			tot->maxerr = rep.max_abs_error;
	}
	if ((rc = add_h5_structure(a, in, e)) || (rc = add_input_meta(a, in, w, e)))
		goto out;
	if ((st = alcm_encoder_finish(e)))
		rc = cli_fail(st, "pack", a->in, alcm_encoder_detail(e));
out:
	alcm_encoder_free(e);
	cli_input_free(in);
	b->wall_enc += cli_now() - t0;
	return rc;
}

/* Starts a fresh attempt in the writer if it holds an earlier one. */
static int budget_reopen(const pack_args *a, budget_state *b, alcm_writer **wp, unsigned wflags)
{
	if (!b->used) {
		b->used = 1;
		return 0;
	}
	alcm_writer_free(*wp);
	*wp = NULL;
	int st = alcm_writer_open_file(wp, a->out, wflags, NULL);
	return st ? cli_fail(st, "write", a->out, alcm_writer_detail(*wp)) : 0;
}

/* The committed size of what the writer holds: written bytes, padding, the table to come. */
static double budget_committed(const alcm_writer *w)
{
	return (double)((alcm_writer_bytes(w) + 63) / 64 * 64) + 48.0 +
	       64.0 * (double)alcm_writer_section_count(w);
}

static int budget_fits(double got, double target)
{
	return fabs(got - target) <= 0.03 * target;
}

/* Shifts each tensor's predicted curve by what it really took in the last attempt (the same
 * bits per value added at every step), and costs the lossless tensors at their measured
 * size: one correction from the measured sizes, which keeps the predicted slope. */
static void budget_calibrate(budget_state *b)
{
	for (size_t i = 0; i < b->n; i++) {
		alcm_budget_profile *p = &b->prof[i];
		if (!p->lossy || !(b->bound[i] > 0)) {
			p->fixed_bytes = b->actual[i];
			continue;
		}
		double off = 8 * (b->actual[i] - predicted_at(p, 2 * b->bound[i])) / (double)p->elements;
		for (int k = 0; k < ALCM_BUDGET_STEPS; k++)
			p->bits[k] = fmax(0, p->bits[k] + off);
	}
}

#define BUDGET_TRIES 8

/* One measured attempt of the search. */
typedef struct budget_try {
	double got;     /* committed archive bytes */
	double tensors; /* bytes of the tensors' own sections */
	double sse;     /* squared error over the float values */
	double u;       /* log2 of its bounds over the current plan's, weighted by values */
} budget_try;

/* Where bounds `bound` sit along the current plan: the mean of log2(bound / shape) over the
 * quantized values. */
static double budget_u(const budget_state *b, const double *bound)
{
	double s = 0, w = 0;
	for (size_t i = 0; i < b->n; i++)
		if (b->shape[i] > 0 && bound[i] > 0) {
			s += (double)b->prof[i].elements * log2(bound[i] / b->shape[i]);
			w += (double)b->prof[i].elements;
		}
	return w > 0 ? s / w : 0;
}

/*
 * The next attempt along the current plan, from the sizes measured so far (`want`: bytes
 * for the tensors). Between an attempt over the budget and one under it, interpolates in
 * log bound / log size (halfway to the bisection when the last two landed on the same side);
 * with attempts on one side only, extrapolates in log size with the slope of the two nearest,
 * or from one attempt at 1 bit per value per octave of step (the high-rate slope), at most 8
 * octaves at a time. Returns
 * 0 when no new attempt can help: nothing to give the tensors, or the bounds would repeat.
 */
static int budget_next_u(const budget_state *b, budget_try *tr, int ntry, double want, double *u)
{
	if (!(want > 0))
		return 0;
	double yt = log(want);
	int lo = -1, hi = -1; /* largest bound over, smallest bound under the budget */
	for (int j = 0; j < ntry; j++) {
		if (tr[j].tensors > want && (lo < 0 || tr[j].u > tr[lo].u))
			lo = j;
		if (tr[j].tensors <= want && (hi < 0 || tr[j].u < tr[hi].u))
			hi = j;
	}
	if (lo >= 0 && hi >= 0 && tr[lo].u < tr[hi].u) {
		double ylo = log(fmax(tr[lo].tensors, 1)), yhi = log(fmax(tr[hi].tensors, 1));
		double f = ylo > yhi ? (ylo - yt) / (ylo - yhi) : 0.5;
		f = fmin(fmax(f, 0.05), 0.95);
		if (ntry >= 2 && (tr[ntry - 1].tensors > want) == (tr[ntry - 2].tensors > want))
			f = (f + 0.5) / 2;
		*u = tr[lo].u + f * (tr[hi].u - tr[lo].u);
	} else {
		int p = lo >= 0 && hi >= 0 ? ntry - 1 : lo >= 0 ? lo : hi, q = -1;
		for (int j = 0; j < ntry; j++)
			if (j != p && (tr[j].tensors > want) == (tr[p].tensors > want) &&
			    fabs(tr[j].u - tr[p].u) > 1e-3 &&
			    (q < 0 || fabs(tr[j].u - tr[p].u) < fabs(tr[q].u - tr[p].u)))
				q = j;
		double yp = log(fmax(tr[p].tensors, 1)), du;
		if (q >= 0) {
			double s = (yp - log(fmax(tr[q].tensors, 1))) / (tr[p].u - tr[q].u);
			/* Flatter than a quarter of the curves' own slope there: two attempts of
			 * different plans at the same size (the plan made again after the first), not
			 * a size that stopped moving. The torch transformer's weights at --ratio 12
			 * took 16304 bytes in both, and the floor's long step (1.9 octaves finer) a
			 * third attempt at +151% of the budget, 4 in all; at this slope 3. */
			double sm = (log(fmax(predicted_moved(b, tr[p].u + 0.25), 1)) -
			             log(fmax(predicted_moved(b, tr[p].u - 0.25), 1))) / 0.5;
			if (sm < 0 && !(s < 0.25 * sm))
				s = sm;
			du = (yt - yp) / fmin(s, -0.02); /* flat or rising: a long step */
		} else {
			du = (tr[p].tensors - want) * 8 / fmax(b->nq, 1);
		}
		*u = tr[p].u + fmin(fmax(du, -8), 8);
	}
	double umin = INFINITY, umax = -INFINITY;
	for (size_t i = 0; i < b->n; i++)
		if (b->shape[i] > 0) {
			const alcm_budget_profile *p = &b->prof[i];
			umin = fmin(umin, log2(bound_floor(p) / b->shape[i]));
			umax = fmax(umax, log2(p->step[ALCM_BUDGET_STEPS - 1] / 2 / b->shape[i]));
		}
	*u = fmin(fmax(*u, umin), umax);
	for (int j = 0; j < ntry; j++)
		if (fabs(*u - tr[j].u) < 1e-3)
			return 0;
	return 1;
}

/* The lossless archive as an attempt: regular data can code smaller lossless than lossy. */
static int budget_lossless(const pack_args *a, budget_state *b, alcm_writer **wp,
                           unsigned wflags, totals *tot, double *got)
{
	memset(b->bound, 0, b->n * sizeof(double));
	int rc = budget_reopen(a, b, wp, wflags);
	if (!rc)
		rc = budget_encode(a, b, *wp, tot);
	if (!rc) {
		*got = budget_committed(*wp);
		cli_info("budget: lossless: %.0f bytes", *got);
	}
	return rc;
}

/* 1 if bounds `x` repeat an earlier attempt's within 0.1% (moving the plan hit the tensors'
 * limits, or the search closed in on a jump in size). */
static int budget_seen(const budget_state *b, const double *tb, int ntry, const double *x)
{
	for (int j = 0; j < ntry; j++) {
		const double *y = tb + (size_t)j * b->n;
		size_t i = 0;
		while (i < b->n && (x[i] == y[i] || fabs(log2(x[i] / y[i])) < 1.5e-3))
			i++;
		if (i == b->n)
			return 1;
	}
	return 0;
}

static int cmp_sample_size(const void *x, const void *y, void *ctx)
{
	const budget_state *b = ctx;
	uint64_t p = b->samp[*(const size_t *)x].n, q = b->samp[*(const size_t *)y].n;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	return p != q ? (p < q) - (p > q) : (i > j) - (i < j);
}

/* The crew, one sample coder per thread, and the order of the samples. */
static int budget_crew_begin(const pack_args *a, budget_state *b)
{
	size_t nsamp = 0;
	for (size_t i = 0; b->samp && i < b->n; i++)
		nsamp += b->samp[i].data != NULL;
	if (!b->crew && (b->in_bytes >= BUDGET_ONE_THREAD || nsamp >= CREW_MIN_TENSORS))
		b->crew = crew_start(budget_crew_threads(a, b->in_bytes));
	b->coder = calloc(b->crew ? b->crew->n + 1 : 1, sizeof(sample_coder));
	b->sorder = malloc((b->n ? b->n : 1) * sizeof(size_t));
	if (!b->coder || !b->sorder)
		return EXIT_NOMEM;
	for (size_t i = 0; i < b->n; i++)
		b->sorder[i] = i;
	if (b->samp)
		qsort_r(b->sorder, b->n, sizeof(size_t), cmp_sample_size, b);
	return 0;
}

static void budget_crew_end(budget_state *b)
{
	unsigned n = b->crew ? b->crew->n + 1 : 1;
	crew_stop(b->crew);
	for (unsigned k = 0; b->coder && k < n; k++)
		sample_coder_close(&b->coder[k]);
	free(b->coder);
	free(b->sorder);
	b->crew = NULL, b->coder = NULL, b->sorder = NULL;
}

/*
 * --size / --ratio: bounds from the predicted rates (budget_predict_plan), corrected by the
 * large tensors' samples (budget_sample_calibrate), whose measured squared error per byte
 * then moves their bounds (budget_equalise), and planned again (up to SAMPLE_ROUNDS
 * times, where the plan moved a tensor's bound away from its sample), one attempt; if it
 * misses the budget by more than 3%, each tensor's predicted curve is shifted by what it
 * really took and the plan made again (the one correction a good predictor needs); if that
 * misses too, the plan's bounds are moved together, bracketing the budget between measured
 * attempts (budget_next_u), at most BUDGET_TRIES attempts in all. The archive keeps the
 * attempt with the least squared error among those no more than 3% over the budget, or the
 * lossless archive if it is that small and the lossy one is over a third of the raw size
 * (regular data can code smaller lossless than lossy) or not within 3% of the budget. The
 * lossless archive is tried early when the correction still falls short of a budget over a
 * third of the raw size, where finer bounds may never reach it.
 */
static int pack_budget(const pack_args *a, alcm_writer **wp, unsigned wflags, totals *tot)
{
	budget_state b;
	memset(&b, 0, sizeof(b));
	uint64_t raw = 0;
	budget_try tr[BUDGET_TRIES];
	double *tb = NULL; /* the bounds of each attempt */
	double t0 = cli_now(), t_prof, t_samp = 0, t1;
	int ntry = 0, last = -1, rc = budget_profile(a, &b, &raw);
	t_prof = cli_now() - t0;
	if (!rc)
		rc = budget_crew_begin(a, &b);
	double target = a->size ? (double)a->size : (double)raw / a->ratio;
	double over = overhead_bytes(b.n, b.names), lossless = -1, closest = INFINITY;
	if (!rc && !(tb = malloc((b.n + 1) * BUDGET_TRIES * sizeof(double))))
		rc = EXIT_NOMEM;
	while (!rc && ntry < BUDGET_TRIES) {
		double predicted = 0, u;
		if (ntry < 2) {
			if (ntry == 1) {
				budget_calibrate(&b);
				b.calibrated = 1;
				over = tr[0].got - tr[0].tensors;
			}
			predicted = budget_predict_plan(&b, target - over);
			memcpy(b.bound, b.shape, b.n * sizeof(double));
			size_t coded = 1;
			for (int r = 0; ntry == 0 && b.lossy && coded && r < SAMPLE_ROUNDS; r++) {
				t1 = cli_now();
				if ((rc = budget_sample_calibrate(a, &b, &coded)))
					break;
				t_samp += cli_now() - t1;
				predicted = budget_predict_plan(&b, target - over);
				memcpy(b.bound, b.shape, b.n * sizeof(double));
			}
			coded = 1;
			for (int r = 0; !rc && ntry == 0 && b.lossy && coded && r < SLOPE_ROUNDS; r++) {
				b.slope_only = 1, coded = 0;
				t1 = cli_now();
				rc = budget_sample_calibrate(a, &b, &coded);
				t_samp += cli_now() - t1;
				b.slope_only = 0;
				if (!rc && coded) {
					/* the last: their sizes as measured, within half an octave */
					b.near = r + 1 == SLOPE_ROUNDS ? SLOPE_NEAR : 0;
					predicted = budget_predict_plan(&b, target - over);
					b.near = 0;
					memcpy(b.bound, b.shape, b.n * sizeof(double));
				}
			}
			if (rc)
				break;
		}
		if (ntry >= 2 && lossless < 0 && tr[ntry - 1].got < target &&
		    tr[ntry - 1].got * 3 >= (double)raw) {
			if ((rc = budget_lossless(a, &b, wp, wflags, tot, &lossless)))
				break;
			last = -1;
			if (lossless <= target * 1.03)
				break;
		}
		if (ntry >= 2 || budget_seen(&b, tb, ntry, b.bound)) {
			for (int j = 0; j < ntry; j++)
				tr[j].u = budget_u(&b, tb + (size_t)j * b.n);
			if (!budget_next_u(&b, tr, ntry, target - over, &u))
				break;
			for (size_t i = 0; i < b.n; i++)
				b.bound[i] = scaled_bound(&b, i, exp2(u));
			if (budget_seen(&b, tb, ntry, b.bound))
				break;
			predicted = predicted_moved(&b, u);
		}
		if ((rc = budget_reopen(a, &b, wp, wflags)) || (rc = budget_encode(a, &b, *wp, tot)))
			break;
		budget_try *t = &tr[ntry];
		memcpy(tb + (size_t)ntry * b.n, b.bound, b.n * sizeof(double));
		t->got = budget_committed(*wp), t->sse = b.sse, t->tensors = 0;
		for (size_t i = 0; i < b.n; i++)
			t->tensors += b.actual[i];
		double lo = INFINITY, hi = 0;
		for (size_t i = 0; i < b.n; i++)
			if (b.bound[i] > 0)
				lo = fmin(lo, b.bound[i]), hi = fmax(hi, b.bound[i]);
		cli_info("budget, attempt %d: bounds %.4g..%.4g, predicted %.0f + %.0f overhead, got "
		         "%.0f bytes for a target of %.0f (%+.2f%%), squared error %.6g", ntry + 1,
		         hi > 0 ? lo : 0, hi, predicted, over, t->got, target,
		         100 * (t->got - target) / target, t->sse);
		last = ntry++;
		if (budget_fits(t->got, target) || !b.lossy)
			break;
		over = t->got - t->tensors;
	}
	int keep = -1;
	for (int j = 0; j < ntry; j++) {
		closest = fmin(closest, tr[j].got);
		if (tr[j].got <= target * 1.03 && (keep < 0 || tr[j].sse < tr[keep].sse))
			keep = j;
	}
	if (!rc && b.lossy && lossless < 0 &&
	    (keep < 0 || tr[keep].got * 3 >= (double)raw || !budget_fits(tr[keep].got, target))) {
		rc = budget_lossless(a, &b, wp, wflags, tot, &lossless);
		last = -1;
	}
	if (lossless >= 0)
		closest = fmin(closest, lossless);
	if (!rc && lossless >= 0 && lossless <= target * 1.03) {
		if (last != -1)
			rc = budget_lossless(a, &b, wp, wflags, tot, &lossless);
		if (!rc)
			cli_info("budget: kept %.0f bytes (lossless) for a target of %.0f", lossless,
			         target);
	} else if (!rc && keep >= 0) {
		if (keep != last) {
			memcpy(b.bound, tb + (size_t)keep * b.n, b.n * sizeof(double));
			if (!(rc = budget_reopen(a, &b, wp, wflags)))
				rc = budget_encode(a, &b, *wp, tot);
		}
		if (!rc)
			cli_info("budget: kept %.0f bytes for a target of %.0f, squared error %.6g",
			         tr[keep].got, target, tr[keep].sse);
	} else if (!rc) {
		cli_err("cannot fit '%s' in %.0f bytes: the closest attempt took %.0f",
		        cli_display(a->in), target, closest);
		rc = EXIT_BOUND;
	}
	if (!rc)
		cli_info("budget: wall time: profile %.4f s, samples %.4f s, attempts %.4f s, in all "
		         "%.4f s", t_prof, t_samp, b.wall_enc, cli_now() - t0);
	free(tb);
	budget_crew_end(&b);
	for (size_t i = 0; b.samp && i < b.n; i++)
		free(b.samp[i].data);
	free(b.samp);
	free(b.prof);
	free(b.bound);
	free(b.actual);
	free(b.shape);
	free(b.eq);
	free(b.sig);
	return rc;
}

/*
 * --append: the archive must be a stream (exit 7 otherwise: it is valid, but not appendable),
 * and a signed one cannot take --sign (an archive holds one signature, over the sections it
 * had when signed). Checked before any work, so that the refusal is immediate and says why.
 */
static int append_target_ok(const pack_args *a)
{
	alcm_reader *r = NULL;
	uint32_t k;
	int rc = 0, st = alcm_reader_open_file(&r, a->out, NULL, NULL, ALCM_READ_NO_VERIFY);
	if (st)
		rc = cli_fail(st, "append to", a->out, alcm_reader_detail(r));
	else if (!(alcm_reader_flags(r) & ALCM_FLAG_STREAM)) {
		cli_err("cannot append to '%s': not a stream archive (only an archive packed with "
		        "--stream can be appended to)", a->out);
		rc = EXIT_UNSUPPORTED;
	} else if (a->sign && alcm_reader_find_section(r, "SIGN", 0, &k) == ALCM_OK) {
		cli_err("cannot append to '%s' with --sign: it is signed already, and an archive "
		        "holds one signature (pack a new stream to sign every frame)", a->out);
		rc = EXIT_UNSUPPORTED;
	}
	alcm_reader_free(r);
	return rc;
}

/*
 * NAME.pub beside NAME.key should be its public half (a key pair torn by a crash, or files
 * mixed up, would sign archives that the .pub people were given does not verify).
 */
static void warn_pub_mismatch(const char *key_path, const uint8_t sk[ALCM_SECRET_KEY_BYTES])
{
	size_t n = strlen(key_path);
	if (n < 4 || strcmp(key_path + n - 4, ".key") != 0)
		return;
	char *pub = malloc(n + 1);
	if (!pub)
		return;
	memcpy(pub, key_path, n - 4);
	memcpy(pub + n - 4, ".pub", 5);
	uint8_t pk[ALCM_PUBLIC_KEY_BYTES];
	if (cli_load_key(pub, 0, pk, sizeof(pk)) == 0 && memcmp(pk, sk + 32, sizeof(pk)) != 0)
		cli_warn("'%s' is not the public key of '%s': archives signed now do not verify with "
		         "it", pub, key_path);
	free(pub);
}

int main(int argc, char **argv)
{
	cli_init("alcm-pack");
	argv[0] = (char *)cli_prog; /* getopt's messages name the tool, not its path */
	pack_args a;
	memset(&a, 0, sizeof(a));
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc;
	if (optind < argc - 1)
		return cli_run_each(argc, argv, optind);
	int lossless = a.o.mode == ALCM_MODE_LOSSLESS && !a.size && !(a.ratio > 0);
	cli_input *in = NULL;
	alcm_writer *w = NULL;
	alcm_reader *prev = NULL;
	uint8_t sk[ALCM_SECRET_KEY_BYTES] = {0};
	totals tot;
	memset(&tot, 0, sizeof(tot));
	int st;
	if (a.sign && access(a.sign, R_OK) != 0) { /* fail early; the key is read at the end */
		cli_err("cannot read '%s': %s", a.sign, strerror(errno));
		return EXIT_IO;
	}
	int to_stdout = strcmp(a.out, "-") == 0;
	if ((rc = cli_stdout_path(a.out, "alcm", a.force, &a.out)) ||
	    (rc = cli_stdin_path(a.in, &a.in)))
		return rc;
	if (a.append && (rc = append_target_ok(&a)))
		return rc;
	if ((rc = cli_input_open_or_fail(&in, a.in)))
		goto out;
	a.o.source_format = alcm_format_name(cli_input_format(in));
	/* A temporary file for standard output: no fsync, nothing to replace. */
	unsigned wflags = (a.force && !to_stdout ? ALCM_WRITE_OVERWRITE : 0) |
	                  (a.stream || a.series ? ALCM_WRITE_STREAM : 0) | (to_stdout ? ALCM_WRITE_NO_SYNC : 0);
	if (a.append) {
		/* Say why nothing happens while another writer holds the lock. */
		st = alcm_writer_open_append(&w, a.out, NULL, NULL, ALCM_WRITE_NO_WAIT);
		if (st == ALCM_E_BUSY && !a.no_wait) {
			if (!cli_quiet)
				fprintf(stderr, "%s: waiting for another writer to finish with '%s'\n",
				        cli_prog, a.out);
			alcm_writer_free(w);
			w = NULL;
			st = alcm_writer_open_append(&w, a.out, NULL, NULL, 0);
		}
	} else {
		st = alcm_writer_open_file(&w, a.out, wflags, NULL);
	}
	if (st) {
		rc = cli_fail(st, a.append ? "append to" : "write", a.out, alcm_writer_detail(w));
		goto out;
	}
	double t0 = cli_now();
	uint64_t before = a.append ? alcm_writer_bytes(w) : 0;
	/* A checkpoint series: a new one, or --append to an archive that is one. */
	int series = a.series || a.delta_from;
	if (a.append) {
		if ((st = alcm_reader_open_file(&prev, a.out, NULL, NULL, 0))) {
			rc = cli_fail(st, "read", a.out, alcm_reader_detail(prev));
			goto out;
		}
		uint32_t k;
		series = alcm_reader_find_section(prev, "SERI", 0, &k) == ALCM_OK;
		if (!series && (a.series || a.key_set || a.against_set || a.delta_from)) {
			cli_err("'%s' is not a checkpoint series (make one with --series)", a.out);
			rc = EXIT_USAGE;
			goto out;
		}
		if (series && (a.schedule || a.o.prune > 0 || a.o.mode == ALCM_MODE_SNR ||
		               a.o.mode == ALCM_MODE_BITS)) {
			cli_err("'%s' is a checkpoint series: lossless, --max-error or --rel-error, "
			        "without --schedule or --prune", a.out);
			rc = EXIT_USAGE;
			goto out;
		}
	}
	if (a.size || a.ratio > 0)
		rc = pack_budget(&a, &w, wflags, &tot);
	else if (series) {
		rc = pack_series(&a, in, w, prev, &tot);
		lossless = a.o.mode == ALCM_MODE_LOSSLESS;
	}
	else if (a.stream || a.append)
		rc = pack_frame(&a, in, w, &tot);
	else
		rc = pack_plain(&a, in, w, &tot);
	if (rc)
		goto out;
	/* The secret key is read only now: an HDF5 input's reader process (a fork of this one)
	 * must never hold a copy of it (spec 6.6.14). */
	if (a.sign) {
		if ((rc = cli_read_key(a.sign, 1, sk, sizeof(sk))))
			goto out;
		warn_pub_mismatch(a.sign, sk);
		st = alcm_writer_sign(w, sk);
		alcm_wipe(sk, sizeof(sk));
		if (st == ALCM_E_ARG) {
			cli_err("cannot sign with '%s': the key is damaged (its public half is not the key "
			        "of its seed)", a.sign);
			rc = EXIT_MALFORMED;
			goto out;
		}
		if (st) {
			rc = cli_fail(st, "sign", a.out, alcm_writer_detail(w));
			goto out;
		}
		if (alcm_writer_minor(w) < 1)
			cli_warn("'%s' is a format 1.0 archive, which an append cannot raise: signed with "
			         "algorithm 1, which does not cover the minor version nor the SIGN entry "
			         "(spec 6.10)", a.out);
	}
	uint64_t out_bytes = alcm_writer_bytes(w) - before;
	if ((st = alcm_writer_commit(w))) {
		rc = cli_fail(st, "write", a.out, alcm_writer_detail(w));
		goto out;
	}
	double dt = cli_now() - t0;
	if (tot.downgraded)
		cli_warn("%llu integer or bool tensors stored losslessly (lossy modes apply to floats)",
		         (unsigned long long)tot.downgraded);
	if (!cli_quiet)
		fprintf(stderr, "%s: %llu tensors, %s -> %s (%.2fx), %.1f MB/s, max error %.3g%s\n",
		        cli_prog, (unsigned long long)tot.ntensors, cli_size(tot.raw),
		        cli_size(out_bytes), out_bytes ? (double)tot.raw / (double)out_bytes : 0.0,
		        dt > 0 ? (double)tot.raw / dt / 1e6 : 0.0, tot.maxerr,
		        lossless ? " (lossless)" : "");
	if (a.check)
		rc = check_roundtrip(&a, lossless);
	if (!rc)
		rc = cli_stdout_commit();
out:
	alcm_wipe(sk, sizeof(sk));
	alcm_writer_free(w);
	alcm_reader_free(prev);
	free((void *)a.base_path);
	cli_input_free(in);
	return rc;
}
