/*
 * The two rANS decoders of spec 6.5.9 agree: slot tables (long chunks) and the search of
 * cumulative frequencies (short chunks, lib/symcode.c SEARCH_BELOW) give the same tokens
 * for every stream and refuse the same damaged ones; with 32 states and with 1 to 31 (codings
 * 18 and 19, spec 6.5.14).
 */
#include "symcode_internal.h"
#include "testutil.h"

#include <stdlib.h>

static unsigned lanes = ALCM_RANS_LANES;

static void check_agree(const uint8_t *tok, const uint8_t *cls, size_t n, unsigned K,
                        const alcm_rans_dtab *dt, const uint16_t (*cum)[ALCM_RANS_MAX_TOKENS + 1],
                        const unsigned *nt, const uint8_t *in, size_t len, int want_ok)
{
	uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
	(void)K;
	int sa = alcm_rans_decode_lanes(a, cls, n, dt, in, len, lanes);
	int sb = alcm_rans_decode_search_lanes(b, cls, n, cum, nt, in, len, lanes);
	if (sa != sb)
		fail_msg("n = %zu, len = %zu: slot tables %d, search %d", n, len, sa, sb);
	if (want_ok) {
		assert_int_equal(sa, ALCM_OK);
		assert_memory_equal(a, tok, n);
	}
	if (!sa)
		assert_memory_equal(a, b, n);
	free(a);
	free(b);
}

static void agree(void)
{
	uint64_t rs = 42;
	static const size_t ns[] = {0, 1, 31, 32, 33, 95, 1000, 5000};
	for (unsigned K = 1; K <= 16; K += 5) {
		alcm_rans_etab *et = malloc(K * sizeof(*et));
		alcm_rans_dtab *dt = malloc(K * sizeof(*dt));
		uint16_t(*cum)[ALCM_RANS_MAX_TOKENS + 1] = malloc(K * sizeof(*cum));
		unsigned nt[ALCM_SYM_MAX_CLASSES];
		for (unsigned k = 0; k < K; k++) {
			/* Class k: ntok tokens, some of frequency 0 (never coded). */
			unsigned ntok = 2 + (unsigned)(tu_rand(&rs) % 255);
			uint64_t cnt[ALCM_RANS_MAX_TOKENS];
			for (unsigned t = 0; t < ntok; t++)
				cnt[t] = t % 3 == 1 ? 0 : 1 + tu_rand(&rs) % (t < 4 ? 5000 : 50);
			cnt[ntok - 1] = 1;
			uint32_t f[ALCM_RANS_MAX_TOKENS];
			alcm_rans_normalize(cnt, ntok, f);
			alcm_rans_etab_build(&et[k], f, ntok);
			alcm_rans_dtab_build(&dt[k], f, ntok);
			nt[k] = ntok;
			cum[k][0] = 0;
			for (unsigned t = 0; t < ntok; t++)
				cum[k][t + 1] = (uint16_t)(cum[k][t] + f[t]);
			assert_int_equal(cum[k][ntok], ALCM_RANS_TOTAL);
		}
		for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
			size_t n = ns[i];
			uint8_t *tok = malloc(n + 1), *cls = malloc(n + 1);
			for (size_t j = 0; j < n; j++) {
				cls[j] = (uint8_t)(tu_rand(&rs) % K);
				const uint16_t *c = cum[cls[j]];
				unsigned t;
				do
					t = (unsigned)(tu_rand(&rs) % nt[cls[j]]);
				while (c[t + 1] == c[t]);
				tok[j] = (uint8_t)t;
			}
			size_t cap = alcm_rans_bound(n) + 2;
			uint8_t *out = malloc(cap), *bad = malloc(cap);
			size_t len = alcm_rans_encode_lanes(out, cap, tok, K > 1 ? cls : NULL, n, et, lanes);
			assert_true(len >= 4 * lanes && len % 2 == 0);
			/* One lane more or fewer than written: both decoders give the same verdict. */
			for (unsigned l = lanes - 1; l <= lanes + 1 && n; l += 2) {
				unsigned keep = lanes;
				lanes = l;
				if (l >= 1 && l <= ALCM_RANS_LANES)
					check_agree(tok, K > 1 ? cls : NULL, n, K, dt, cum, nt, out, len, 0);
				lanes = keep;
			}
			if (K == 1)
				memset(cls, 0, n + 1);
			for (int scalar = 0; scalar < 2; scalar++) {
				alcm_rans_scalar_only = scalar;
				check_agree(tok, K > 1 ? cls : NULL, n, K, dt, cum, nt, out, len, 1);
				/* Damage: every byte flipped in turn (at most 300), cut short, a word more. */
				for (size_t at = 0; at < len && at < 300; at++) {
					memcpy(bad, out, len);
					bad[at] ^= (uint8_t)(1u << (at % 8));
					check_agree(tok, K > 1 ? cls : NULL, n, K, dt, cum, nt, bad, len, 0);
				}
				for (size_t cut = 1; cut <= 6 && cut <= len; cut++)
					check_agree(tok, K > 1 ? cls : NULL, n, K, dt, cum, nt, out, len - cut, 0);
				memcpy(bad, out, len);
				bad[len] = bad[len + 1] = 0;
				check_agree(tok, K > 1 ? cls : NULL, n, K, dt, cum, nt, bad, len + 2, 0);
			}
			alcm_rans_scalar_only = 0;
			free(tok);
			free(cls);
			free(out);
			free(bad);
		}
		free(et);
		free(dt);
		free(cum);
	}
}

static void test_agree(void **state)
{
	(void)state;
	static const unsigned ls[] = {32, 1, 3, 4, 8, 16, 31};
	for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); i++) {
		lanes = ls[i];
		agree();
	}
	lanes = ALCM_RANS_LANES;
	/* Lanes outside 1..32 refused. */
	uint8_t in[256] = {0}, tok[4];
	alcm_rans_dtab dt;
	uint32_t f[2] = {2048, 2048};
	alcm_rans_dtab_build(&dt, f, 2);
	assert_int_equal(alcm_rans_decode_lanes(tok, NULL, 4, &dt, in, sizeof(in), 0), ALCM_E_CORRUPT);
	assert_int_equal(alcm_rans_decode_lanes(tok, NULL, 4, &dt, in, sizeof(in), 33), ALCM_E_CORRUPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
