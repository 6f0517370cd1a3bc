/* alcm-make-checkpoint: writes a small synthetic transformer checkpoint, deterministic for a
 * seed, with trained-like statistics (heavy-tailed rows with their own scales, norms near
 * one, small biases), in float32, bfloat16 and an int64 step counter. It is the default
 * input of the demo and of the CLI tests; no weights are committed or downloaded. */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: alcm-make-checkpoint [-f] [--seed N] [--layers N] OUTPUT.{safetensors,npz}\n"
	"\n"
	"Writes a synthetic checkpoint of about 2.6 MB (deterministic for a seed).\n"
	"  -f, --force     replace OUTPUT if it exists\n"
	"      --seed N    random seed (default 1)\n"
	"      --layers N  transformer blocks (default 4)\n"
	"  -h, --help      this help\n"
	"  -V, --version   print the version and exit\n"
	"\n" CLI_EXIT_CODES_HELP;

static uint64_t rng;
static double urand(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double gauss(void)
{
	return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
}
/* Student-t with 5 degrees of freedom: trained weights have heavier tails than Gaussian. */
static double heavy(void)
{
	double chi = 0;
	for (int i = 0; i < 5; i++) {
		double g = gauss();
		chi += g * g;
	}
	return gauss() / sqrt(chi / 5);
}

static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

typedef struct spec {
	char name[64];
	int dtype;
	uint32_t ndim;
	uint64_t shape[2];
	int kind; /* 0 weight, 1 norm, 2 bias */
} spec;

static void fill(const spec *s, uint8_t *out)
{
	uint64_t rows = s->ndim == 2 ? s->shape[0] : 1, cols = s->ndim == 2 ? s->shape[1] : s->shape[0];
	double fan = s->ndim == 2 ? sqrt(1.0 / (double)cols) : 1;
	for (uint64_t r = 0; r < rows; r++) {
		double rs = fan * exp(0.3 * gauss());
		for (uint64_t c = 0; c < cols; c++) {
			double v = s->kind == 1 ? 1 + 0.05 * heavy() : s->kind == 2 ? 0.01 * heavy()
			                                                            : rs * heavy();
			uint64_t i = r * cols + c;
			if (s->dtype == ALCM_DTYPE_BF16) {
				uint16_t h = to_bf16((float)v);
				memcpy(out + 2 * i, &h, 2);
			} else {
				float f = (float)v;
				memcpy(out + 4 * i, &f, 4);
			}
		}
	}
}

int main(int argc, char **argv)
{
	cli_init("alcm-make-checkpoint");
	argv[0] = (char *)cli_prog; /* getopt's messages name the tool, not its path */
	static const struct option opts[] = {
		{"force", no_argument, NULL, 'f'}, {"seed", required_argument, NULL, 's'},
		{"layers", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0},
	};
	int force = 0, c;
	uint64_t seed = 1, layers = 4;
	while ((c = getopt_long(argc, argv, "fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'f': force = 1; break;
		case 's':
			if (cli_parse_u64(optarg, &seed)) {
				cli_err("invalid --seed '%s'", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'l':
			if (cli_parse_u64(optarg, &layers) || layers < 1 || layers > 64) {
				cli_err("invalid --layers '%s': expected 1..64", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': return cli_version();
		default: return cli_usage_error(usage, NULL);
		}
	}
	if (optind != argc - 1) {
		return cli_usage_error(usage, "expected one OUTPUT argument");
	}
	const char *path = argv[optind];
	int fmt = alcm_format_from_extension(path);
	rng = seed;
	const uint64_t d = 128, vocab = 1000, ff = 512;
	spec *sp = calloc(3 + 8 * layers, sizeof(spec));
	size_t n = 0;
	if (!sp)
		return EXIT_NOMEM;
#define ADD(nm, dt, nd, s0, s1, k) \
	do { \
		snprintf(sp[n].name, sizeof(sp[n].name), "%s", nm); \
		sp[n].dtype = dt, sp[n].ndim = nd, sp[n].shape[0] = s0, sp[n].shape[1] = s1; \
		sp[n].kind = k; \
		n++; \
	} while (0)
	ADD("embed.weight", ALCM_DTYPE_F32, 2, vocab, d, 0);
	for (uint64_t l = 0; l < layers; l++) {
		char b[64];
		/* bf16 MLPs: mixed precision checkpoints are common; numpy cannot hold bf16, so the
		 * demo writes .safetensors. */
		int mlp = fmt == ALCM_FILE_SAFETENSORS ? ALCM_DTYPE_BF16 : ALCM_DTYPE_F32;
#define L(suffix) (snprintf(b, sizeof(b), "layers.%llu.%s", (unsigned long long)l, suffix), b)
		ADD(L("attn.qkv.weight"), ALCM_DTYPE_F32, 2, 3 * d, d, 0);
		ADD(L("attn.qkv.bias"), ALCM_DTYPE_F32, 1, 3 * d, 0, 2);
		ADD(L("attn.proj.weight"), ALCM_DTYPE_F32, 2, d, d, 0);
		ADD(L("norm1.weight"), ALCM_DTYPE_F32, 1, d, 0, 1);
		ADD(L("mlp.up.weight"), mlp, 2, ff, d, 0);
		ADD(L("mlp.down.weight"), mlp, 2, d, ff, 0);
		ADD(L("norm2.weight"), ALCM_DTYPE_F32, 1, d, 0, 1);
#undef L
	}
	ADD("final_norm.weight", ALCM_DTYPE_F32, 1, d, 0, 1);
	alcm_tensor *t = calloc(n + 1, sizeof(alcm_tensor));
	uint8_t **bufs = calloc(n + 1, sizeof(uint8_t *));
	if (!t || !bufs)
		return EXIT_NOMEM;
	for (size_t i = 0; i < n; i++) {
		t[i].name = sp[i].name;
		t[i].name_len = strlen(sp[i].name);
		t[i].dtype = sp[i].dtype;
		t[i].ndim = sp[i].ndim;
		t[i].shape[0] = sp[i].shape[0];
		t[i].shape[1] = sp[i].shape[1];
		uint64_t el = sp[i].shape[0] * (sp[i].ndim == 2 ? sp[i].shape[1] : 1);
		t[i].nbytes = el * alcm_dtype_size(sp[i].dtype);
		bufs[i] = malloc(t[i].nbytes);
		if (!bufs[i])
			return EXIT_NOMEM;
		fill(&sp[i], bufs[i]);
		t[i].data = bufs[i];
	}
	static int64_t step = 12000;
	t[n].name = "step";
	t[n].name_len = 4;
	t[n].dtype = ALCM_DTYPE_I64;
	t[n].ndim = 0;
	t[n].data = &step;
	t[n].nbytes = 8;
	n++;
	alcm_output *o = NULL;
	int st = alcm_output_open(&o, path, fmt, force ? ALCM_WRITE_OVERWRITE : 0, NULL);
	if (!st)
		st = alcm_output_plan(o, t, n);
	for (size_t i = 0; i < n && !st; i++)
		st = alcm_output_write(o, &t[i]);
	if (!st)
		st = alcm_output_commit(o);
	int rc = st ? cli_fail(st, "write", path, alcm_output_detail(o)) : 0;
	alcm_output_free(o);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += t[i].nbytes;
	if (!rc)
		fprintf(stderr, "%s: wrote %zu tensors, %s, to '%s'\n", cli_prog, n, cli_size(total),
		        path);
	for (size_t i = 0; i + 1 < n; i++)
		free(bufs[i]);
	free(bufs);
	free(t);
	free(sp);
	return rc;
}
