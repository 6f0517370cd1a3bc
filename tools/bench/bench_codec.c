/* Codec configurations: the built-in list, plugin loading (dlopen) and the checks a codec
 * table must pass before the bench calls it. */
#include "bench_internal.h"
#include "../cli.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct builtin_def {
	const char *label;
	const alcm_codec_v1 *(*vt)(void);
	int mode;
	double max_abs_error;
	uint32_t bits;
	int level;
	int slow;
} builtin_def;

/* The leaderboard's built-in rows, in table order. */
static const builtin_def builtins[] = {
	{"alcm-lossless", bench_alcm_codec, ALCM_CODEC_MODE_EXACT, 0, 0, 0, 0},
	{"alcm-max-error-1e-3", bench_alcm_codec, ALCM_CODEC_MODE_MAX_ERROR, 1e-3, 0, 0, 0},
	{"alcm-bits-8", bench_alcm_codec, ALCM_CODEC_MODE_BITS, 0, 8, 0, 0},
	{"zstd-3", bench_zstd_codec, ALCM_CODEC_MODE_EXACT, 0, 0, 3, 0},
	{"zstd-19", bench_zstd_codec, ALCM_CODEC_MODE_EXACT, 0, 0, 19, 1},
	{"zlib-6", bench_zlib_codec, ALCM_CODEC_MODE_EXACT, 0, 0, 6, 0},
	{"stored", bench_stored_codec, ALCM_CODEC_MODE_EXACT, 0, 0, 0, 0},
};

size_t bench_builtin_count(void)
{
	return sizeof(builtins) / sizeof(builtins[0]);
}

static void params_init(alcm_codec_params *p)
{
	memset(p, 0, sizeof(*p));
	p->struct_size = sizeof(*p);
	p->mode = ALCM_CODEC_MODE_EXACT;
	p->threads = 1;
}

void bench_builtin_get(size_t i, bench_codec *c)
{
	const builtin_def *d = &builtins[i];
	memset(c, 0, sizeof(*c));
	snprintf(c->label, sizeof(c->label), "%s", d->label);
	c->vt = d->vt();
	c->caps = c->vt->caps;
	params_init(&c->params);
	c->params.mode = d->mode;
	c->params.max_abs_error = d->max_abs_error;
	c->params.bits = d->bits;
	c->params.level = d->level;
	c->slow = d->slow;
}

const char *bench_codec_status_name(int st)
{
	switch (st) {
	case ALCM_CODEC_OK: return "ok";
	case ALCM_CODEC_E_ARG: return "bad argument";
	case ALCM_CODEC_E_SPACE: return "output buffer too small";
	case ALCM_CODEC_E_CORRUPT: return "corrupt input";
	case ALCM_CODEC_E_NOMEM: return "out of memory";
	case ALCM_CODEC_E_UNSUPPORTED: return "unsupported";
	case ALCM_CODEC_E_INTERNAL: return "internal error";
	default: return "unknown status";
	}
}

const char *bench_mode_name(int mode)
{
	switch (mode) {
	case ALCM_CODEC_MODE_EXACT: return "exact";
	case ALCM_CODEC_MODE_MAX_ERROR: return "max-error";
	case ALCM_CODEC_MODE_BITS: return "bits";
	default: return "unknown";
	}
}

int bench_codec_lossy(const bench_codec *c)
{
	return c->params.mode != ALCM_CODEC_MODE_EXACT;
}

static int name_ok(const char *s)
{
	size_t n = 0;
	if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (; s[n]; n++) {
		char ch = s[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		      ch == '-'))
			return 0;
	}
	return n <= 32;
}

static int text_ok(const char *s, size_t max)
{
	if (!s)
		return 0;
	size_t n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int bench_codec_check(const alcm_codec_v1 *vt, char *why, size_t cap)
{
	/* The first fields are read before struct_size is known to cover them: a version-1
	 * table has at least abi_version and struct_size. */
	if (!vt)
		return snprintf(why, cap, "the plugin returned no codec table"), -1;
	if (vt->abi_version != ALCM_CODEC_ABI_VERSION)
		return snprintf(why, cap, "codec ABI version %u, this bench speaks %u",
		                vt->abi_version, ALCM_CODEC_ABI_VERSION), -1;
	if (vt->struct_size < offsetof(alcm_codec_v1, detail) + sizeof(vt->detail))
		return snprintf(why, cap, "codec table of %u bytes, version 1 needs %zu",
		                vt->struct_size, offsetof(alcm_codec_v1, detail) + sizeof(vt->detail)),
		       -1;
	if (!name_ok(vt->name))
		return snprintf(why, cap, "codec name must be 1 to 32 characters of [a-z0-9_.-] "
		                "starting with a letter"), -1;
	if (!text_ok(vt->version, 64))
		return snprintf(why, cap, "codec '%s': version must be 1 to 64 printable characters",
		                vt->name), -1;
	if (vt->description && strnlen(vt->description, 201) > 200)
		return snprintf(why, cap, "codec '%s': description longer than 200 characters",
		                vt->name), -1;
	if (vt->caps & ~ALCM_CODEC_CAP_ALL_V1)
		return snprintf(why, cap, "codec '%s': unknown capability flags 0x%x", vt->name,
		                vt->caps & ~ALCM_CODEC_CAP_ALL_V1), -1;
	if (!(vt->caps & (ALCM_CODEC_CAP_LOSSLESS | ALCM_CODEC_CAP_MAX_ERROR | ALCM_CODEC_CAP_BITS)))
		return snprintf(why, cap, "codec '%s' offers no mode (LOSSLESS, MAX_ERROR or BITS)",
		                vt->name), -1;
	if (!vt->compress || !vt->decompress)
		return snprintf(why, cap, "codec '%s' lacks compress or decompress", vt->name), -1;
	if (!vt->create && vt->destroy)
		return snprintf(why, cap, "codec '%s' has destroy but no create", vt->name), -1;
	return 0;
}

static int parse_params(bench_codec *c, char *spec, char *err, size_t cap)
{
	char *save = NULL;
	for (char *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq)
			return snprintf(err, cap, "plugin parameter '%s' is not KEY=VALUE", kv), EXIT_USAGE;
		*eq = '\0';
		const char *k = kv, *v = eq + 1;
		uint64_t u;
		double d;
		if (strcmp(k, "max-error") == 0) {
			if (cli_parse_double(v, &d) || !(d > 0))
				return snprintf(err, cap, "invalid max-error '%s': expected a number > 0", v),
				       EXIT_USAGE;
			c->params.mode = ALCM_CODEC_MODE_MAX_ERROR;
			c->params.max_abs_error = d;
		} else if (strcmp(k, "bits") == 0) {
			if (cli_parse_u64(v, &u) || u < 1 || u > 32)
				return snprintf(err, cap, "invalid bits '%s': expected 1..32", v), EXIT_USAGE;
			c->params.mode = ALCM_CODEC_MODE_BITS;
			c->params.bits = (uint32_t)u;
		} else if (strcmp(k, "level") == 0) {
			char *end;
			errno = 0;
			long l = strtol(v, &end, 10);
			if (errno || end == v || *end || l < -1000 || l > 1000 || l == 0)
				return snprintf(err, cap, "invalid level '%s': expected a non-zero integer", v),
				       EXIT_USAGE;
			c->params.level = (int)l;
		} else {
			return snprintf(err, cap, "unknown plugin parameter '%s' (max-error, bits, level)",
			                k), EXIT_USAGE;
		}
	}
	if (c->params.mode == ALCM_CODEC_MODE_MAX_ERROR && c->params.bits)
		return snprintf(err, cap, "give max-error or bits, not both"), EXIT_USAGE;
	return 0;
}

static int file_digest(const char *path, char hex[65])
{
	uint8_t *buf;
	size_t len;
	int e = bench_read_file(path, (size_t)1 << 31, &buf, &len);
	if (e)
		return e;
	uint8_t d[32];
	crypto_generichash(d, sizeof(d), buf, len, NULL, 0);
	bench_hex(d, sizeof(d), hex);
	free(buf);
	return 0;
}

static const char *reserved[] = {"alcm", "zstd", "zlib", "stored"};

int bench_plugin_load(bench_codec *c, const char *spec, char *err, size_t cap)
{
	memset(c, 0, sizeof(*c));
	params_init(&c->params);
	char *copy = bench_xmalloc(strlen(spec) + 1);
	strcpy(copy, spec);
	char *comma = strchr(copy, ',');
	if (comma)
		*comma = '\0';
	c->plugin = 1;
	c->plugin_path = copy;
	int rc = comma ? parse_params(c, comma + 1, err, cap) : 0;
	if (rc)
		return rc;
	int e = file_digest(copy, c->plugin_digest);
	if (e)
		return snprintf(err, cap, "cannot load plugin '%s': %s", copy, strerror(e)), EXIT_IO;
	/* A bare name would make dlopen search the library path: always load the named file. */
	char *path = copy;
	char *rel = NULL;
	if (!strchr(copy, '/')) {
		rel = bench_xmalloc(strlen(copy) + 3);
		sprintf(rel, "./%s", copy);
		path = rel;
	}
	c->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	free(rel);
	if (!c->dl)
		return snprintf(err, cap, "cannot load plugin '%s': %s", copy, dlerror()), EXIT_IO;
	void *sym = dlsym(c->dl, ALCM_CODEC_PLUGIN_SYMBOL);
	if (!sym)
		return snprintf(err, cap, "cannot load plugin '%s': no symbol %s (see alcm_codec.h)",
		                copy, ALCM_CODEC_PLUGIN_SYMBOL), EXIT_UNSUPPORTED;
	alcm_codec_plugin_fn fn;
	memcpy(&fn, &sym, sizeof(fn));
	const alcm_codec_v1 *vt = fn();
	char why[256];
	if (bench_codec_check(vt, why, sizeof(why)))
		return snprintf(err, cap, "cannot load plugin '%s': %s", copy, why), EXIT_UNSUPPORTED;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(vt->name, reserved[i]) == 0)
			return snprintf(err, cap, "cannot load plugin '%s': name '%s' is a built-in "
			                "codec's", copy, vt->name), EXIT_UNSUPPORTED;
	c->vt = vt;
	c->caps = vt->caps;
	uint32_t need = c->params.mode == ALCM_CODEC_MODE_EXACT ? ALCM_CODEC_CAP_LOSSLESS
	              : c->params.mode == ALCM_CODEC_MODE_MAX_ERROR ? ALCM_CODEC_CAP_MAX_ERROR
	                                                           : ALCM_CODEC_CAP_BITS;
	if (!(c->caps & need))
		return snprintf(err, cap, "plugin '%s' (%s) does not offer mode %s%s", copy, vt->name,
		                bench_mode_name(c->params.mode),
		                c->params.mode == ALCM_CODEC_MODE_EXACT
		                        ? ": give max-error=E or bits=N" : ""), EXIT_UNSUPPORTED;
	if (c->params.level && !(c->caps & ALCM_CODEC_CAP_LEVEL))
		return snprintf(err, cap, "plugin '%s' (%s) takes no level", copy, vt->name),
		       EXIT_UNSUPPORTED;
	int n = snprintf(c->label, sizeof(c->label), "%s", vt->name);
	if (c->params.mode == ALCM_CODEC_MODE_MAX_ERROR)
		n += snprintf(c->label + n, sizeof(c->label) - (size_t)n, "-max-error-%g",
		              c->params.max_abs_error);
	else if (c->params.mode == ALCM_CODEC_MODE_BITS)
		n += snprintf(c->label + n, sizeof(c->label) - (size_t)n, "-bits-%u", c->params.bits);
	if (c->params.level)
		snprintf(c->label + n, sizeof(c->label) - (size_t)n, "-%d", c->params.level);
	return 0;
}

int bench_codec_open(bench_codec *c, char *err, size_t cap)
{
	c->state = NULL;
	if (!c->vt->create)
		return 0;
	int st = c->vt->create(&c->state, &c->params);
	if (st) {
		const char *d = c->vt->detail ? c->vt->detail(c->state) : NULL;
		snprintf(err, cap, "create: %s%s%s", bench_codec_status_name(st), d && *d ? ": " : "",
		         d && *d ? d : "");
		if (c->state && c->vt->destroy)
			c->vt->destroy(c->state);
		c->state = NULL;
		return -1;
	}
	return 0;
}

void bench_codec_close(bench_codec *c)
{
	if (c->vt && c->vt->destroy && c->state)
		c->vt->destroy(c->state);
	c->state = NULL;
}

const char *bench_codec_detail(const bench_codec *c, int st)
{
	const char *d = c->vt->detail ? c->vt->detail(c->state) : NULL;
	return d && *d ? d : bench_codec_status_name(st);
}
