/* alcm-unpack: decode an .alcm archive into .npy, .npz or .safetensors. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: alcm-unpack IN.alcm -o OUTPUT.{npz,npy,safetensors} [options]\n"
	"\n"
	"Decodes the tensors of an archive and writes them in the format named by OUTPUT's\n"
	"extension. Every section read is checked against its BLAKE2b digest.\n"
	"\n"
	"  -o, --output FILE    file to write (required); written atomically\n"
	"  -f, --force          replace OUTPUT if it exists\n"
	"  -t, --tensor NAME    extract only this tensor (repeatable); the others are not decoded\n"
	"      --no-verify      skip digest checks (trusted archives only)\n"
	"  -T, --threads N      decoding threads (default: all cores)\n"
	"  -q, --quiet          no summary    -v, --verbose   one line per tensor\n"
	"  -h, --help           this help     -V, --version   print the version\n"
	"\n"
	".npy holds exactly one tensor: use --tensor when the archive has several.\n"
	"bfloat16 tensors can be written to .safetensors only (numpy has no bfloat16).\n"
	"\n" CLI_EXIT_CODES_HELP;

int main(int argc, char **argv)
{
	cli_init("alcm-unpack");
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		{"tensor", required_argument, NULL, 't'}, {"no-verify", no_argument, NULL, 'n'},
		{"threads", required_argument, NULL, 'T'},
		{"quiet", no_argument, NULL, 'q'}, {"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	int force = 0, c;
	uint64_t threads = 0;
	unsigned rflags = 0;
	const char **names = calloc((size_t)argc, sizeof(char *));
	size_t nnames = 0;
	if (!names)
		return EXIT_NOMEM;
	while ((c = getopt_long(argc, argv, "o:ft:T:qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
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
		case 'q': cli_quiet = 1; break;
		case 'v': cli_verbose = 1; break;
		case 'h': fputs(usage, stdout); free(names); return 0;
		case 'V': printf("alcm-unpack %s (format %d.%d)\n", alcm_version(), ALCM_FORMAT_MAJOR,
		                 ALCM_FORMAT_MINOR); free(names); return 0;
		default: fputs(usage, stderr); free(names); return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !out) {
		cli_err("expected IN.alcm and -o OUTPUT (see --help)");
		free(names);
		return EXIT_USAGE;
	}
	const char *in = argv[optind];
	int fmt = alcm_format_from_extension(out);
	if (fmt != ALCM_FILE_NPY && fmt != ALCM_FILE_NPZ && fmt != ALCM_FILE_SAFETENSORS) {
		cli_err("cannot tell the output format of '%s': use .npz, .npy or .safetensors", out);
		free(names);
		return EXIT_USAGE;
	}
	int rc = 0, st;
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	alcm_output *o = NULL;
	size_t *sel = NULL, nsel = 0;
	alcm_tensor *plan = NULL;
	uint8_t *buf = NULL;
	if ((st = alcm_reader_open_file(&r, in, NULL, NULL, rflags))) {
		rc = cli_fail(st, "read", in, alcm_reader_detail(r));
		goto out;
	}
	if ((st = alcm_archive_open(&a, r, NULL))) {
		rc = cli_fail(st, "read", in, alcm_archive_detail(a));
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
		for (size_t k = 0; k < nnames; k++) {
			if (alcm_archive_find(a, names[k], strlen(names[k]), &sel[nsel]) != ALCM_OK) {
				cli_err("cannot find tensor '%s' in '%s'", names[k], in);
				rc = EXIT_USAGE;
				goto out;
			}
			nsel++;
		}
	} else {
		for (size_t i = 0; i < nt; i++)
			sel[nsel++] = i;
	}
	if (fmt == ALCM_FILE_NPY && nsel != 1) {
		cli_err("'%s' holds one tensor, the selection has %zu: use --tensor NAME or .npz", out,
		        nsel);
		rc = EXIT_USAGE;
		goto out;
	}
	for (size_t k = 0; k < nsel; k++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(a, sel[k], &ti);
		plan[k].name = ti.name;
		plan[k].name_len = ti.name_len;
		plan[k].dtype = ti.dtype;
		plan[k].ndim = ti.ndim;
		memcpy(plan[k].shape, ti.shape, sizeof(ti.shape));
		plan[k].nbytes = ti.raw_bytes;
	}
	if ((st = alcm_output_open(&o, out, fmt, force ? ALCM_WRITE_OVERWRITE : 0, NULL)) ||
	    (st = alcm_output_plan(o, plan, nsel))) {
		rc = cli_fail(st, "write", out, alcm_output_detail(o));
		goto out;
	}
	uint64_t total = 0;
	for (size_t k = 0; k < nsel; k++)
		total += plan[k].nbytes;
	cli_progress p;
	cli_progress_start(&p, "unpacking", total, (uint64_t)100 << 20);
	double t0 = cli_now();
	for (size_t k = 0; k < nsel; k++) {
		/* One tensor in memory at a time; its size was checked against the limits. */
		free(buf);
		buf = malloc(plan[k].nbytes ? plan[k].nbytes : 1);
		if (!buf) {
			cli_err("cannot allocate %s for tensor '%s'", cli_size(plan[k].nbytes),
			        cli_name(plan[k].name, plan[k].name_len));
			rc = EXIT_NOMEM;
			goto out;
		}
		if ((st = alcm_archive_decode(a, sel[k], buf, plan[k].nbytes))) {
			rc = cli_fail(st, "read", in, alcm_archive_detail(a));
			goto out;
		}
		plan[k].data = buf;
		if ((st = alcm_output_write(o, &plan[k]))) {
			rc = cli_fail(st, "write", out, alcm_output_detail(o));
			goto out;
		}
		plan[k].data = NULL;
		cli_progress_add(&p, plan[k].nbytes);
		cli_info("%s: %s %s", cli_name(plan[k].name, plan[k].name_len),
		         alcm_dtype_name(plan[k].dtype), cli_shape(plan[k].shape, plan[k].ndim));
	}
	if ((st = alcm_output_commit(o))) {
		rc = cli_fail(st, "write", out, alcm_output_detail(o));
		goto out;
	}
	cli_progress_end(&p);
	double dt = cli_now() - t0;
	if (!cli_quiet)
		fprintf(stderr, "%s: %zu tensors, %s -> %s, %.1f MB/s\n", cli_prog, nsel,
		        cli_size(alcm_reader_file_size(r)), cli_size(total),
		        dt > 0 ? (double)total / dt / 1e6 : 0.0);
out:
	free(buf);
	free(plan);
	free(sel);
	free(names);
	alcm_output_free(o);
	alcm_archive_free(a);
	alcm_reader_free(r);
	return rc;
}
