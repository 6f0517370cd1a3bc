/* The "stored" codec: the identity, and the worked example of include/alcm_codec.h.
 *
 * It is written as a plugin would be (only alcm_codec.h, no alcm library), and it is one:
 * build it with -DBENCH_STORED_AS_PLUGIN -shared -fPIC and load it with --plugin (it then
 * calls itself "stored-plugin", since a plugin may not reuse a built-in name). Its ratio is
 * 1.0 by construction, so its row in a leaderboard measures the bench itself: the cost of
 * one memcpy per byte each way.
 *
 * Format: the tensors' bytes, concatenated in the order given. Nothing else is stored,
 * because decompress() receives the same descriptions (dtype, shape, nbytes) and can find
 * every tensor's place from them. */
#include "alcm_codec.h"

#include <stdlib.h>
#include <string.h>

/* A stateless codec needs no create/destroy; this one keeps a state only to show the
 * pattern: where the parameters go, and where the detail line lives. */
typedef struct stored_state {
	char detail[160];
} stored_state;

static int stored_create(void **state, const alcm_codec_params *p)
{
	*state = NULL;
	/* Refuse what we cannot honour instead of silently coding losslessly: the bench
	 * labels a configuration by its parameters. */
	if (p->mode != ALCM_CODEC_MODE_EXACT)
		return ALCM_CODEC_E_UNSUPPORTED;
	stored_state *s = calloc(1, sizeof(*s));
	if (!s)
		return ALCM_CODEC_E_NOMEM;
	*state = s;
	return ALCM_CODEC_OK;
}

static void stored_destroy(void *state)
{
	free(state);
}

static int stored_fail(void *state, int status, const char *msg)
{
	stored_state *s = state;
	if (s) {
		strncpy(s->detail, msg, sizeof(s->detail) - 1);
		s->detail[sizeof(s->detail) - 1] = '\0';
	}
	return status;
}

/* Sum of the sizes, or UINT64_MAX on overflow (sizes come from the caller, but a codec
 * should not trust them to add up). */
static uint64_t total_bytes(const alcm_codec_tensor *t, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].nbytes > UINT64_MAX - sum)
			return UINT64_MAX;
		sum += t[i].nbytes;
	}
	return sum;
}

static uint64_t stored_bound(void *state, const alcm_codec_tensor *t, size_t n)
{
	(void)state;
	uint64_t sum = total_bytes(t, n);
	return sum == UINT64_MAX ? 0 : sum;
}

static int stored_compress(void *state, const alcm_codec_tensor *t, size_t n, void *out,
                           size_t cap, size_t *out_len)
{
	uint64_t need = total_bytes(t, n);
	*out_len = 0;
	if (need == UINT64_MAX || need > SIZE_MAX)
		return stored_fail(state, ALCM_CODEC_E_ARG, "tensor sizes overflow");
	if (need > cap) {
		*out_len = (size_t)need;
		return stored_fail(state, ALCM_CODEC_E_SPACE, "output buffer too small");
	}
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].nbytes)
			memcpy((unsigned char *)out + pos, t[i].data, (size_t)t[i].nbytes);
		pos += (size_t)t[i].nbytes;
	}
	*out_len = pos;
	return ALCM_CODEC_OK;
}

static int stored_decompress(void *state, const void *in, size_t len, const alcm_codec_tensor *t,
                             size_t n, void *const *dst)
{
	/* Check the whole length first: a corrupt input must not fill half the outputs. */
	uint64_t need = total_bytes(t, n);
	if (need != len)
		return stored_fail(state, ALCM_CODEC_E_CORRUPT, "length differs from the tensors' sizes");
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].nbytes)
			memcpy(dst[i], (const unsigned char *)in + pos, (size_t)t[i].nbytes);
		pos += (size_t)t[i].nbytes;
	}
	return ALCM_CODEC_OK;
}

static const char *stored_detail(void *state)
{
	stored_state *s = state;
	return s ? s->detail : "";
}

static const alcm_codec_v1 stored_codec = {
	.abi_version = ALCM_CODEC_ABI_VERSION,
	.struct_size = sizeof(alcm_codec_v1),
#ifdef BENCH_STORED_AS_PLUGIN
	.name = "stored-plugin",
#else
	.name = "stored",
#endif
	.version = "1.0",
	.description = "identity: the tensors' bytes, concatenated (the worked example)",
	.caps = ALCM_CODEC_CAP_LOSSLESS,
	.create = stored_create,
	.destroy = stored_destroy,
	.compress_bound = stored_bound,
	.compress = stored_compress,
	.decompress = stored_decompress,
	.detail = stored_detail,
};

#ifdef BENCH_STORED_AS_PLUGIN
ALCM_CODEC_EXPORT const alcm_codec_v1 *alcm_codec_plugin_v1(void);
const alcm_codec_v1 *alcm_codec_plugin_v1(void)
{
	return &stored_codec;
}
#else
const alcm_codec_v1 *bench_stored_codec(void);
const alcm_codec_v1 *bench_stored_codec(void)
{
	return &stored_codec;
}
#endif
