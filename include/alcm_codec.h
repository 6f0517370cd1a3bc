/*
 * alcm_codec.h - the codec plugin interface of alcm-bench, ABI version 1.
 *
 * Copyright (c) 2026 the alcm authors. MIT licence, see LICENSE.
 *
 * Overview
 * ========
 * alcm-bench (tools/bench/, spec/leaderboard.md) runs every codec it knows on the same
 * benchmark bundles and ranks them. A codec is a table of callbacks, `alcm_codec_v1`. The
 * built-in codecs (alcm's modes, zstd, zlib and "stored") are such tables, and a codec from
 * outside is one too, loaded from a shared object with `alcm-bench --plugin path.so`.
 *
 * This header is self-contained: it does not include alcm.h and a plugin needs no alcm
 * library to build or run. The "stored" codec (tools/bench/bench_stored.c) is the worked
 * example: it copies bytes and shows every rule below in about 150 lines. The sample
 * plugin tools/bench/plugins/bshuf_zlib.c (byte shuffle + deflate) is a complete shared
 * object built with the project.
 *
 * Writing a plugin
 * ----------------
 *   1. Fill a `static const alcm_codec_v1` with ALCM_CODEC_ABI_VERSION, sizeof(alcm_codec_v1),
 *      a name, a version, capability flags and the callbacks.
 *   2. Export `const alcm_codec_v1 *alcm_codec_plugin_v1(void)` returning it; mark it
 *      ALCM_CODEC_EXPORT so that it stays visible under -fvisibility=hidden.
 *   3. Build a shared object (`cc -shared -fPIC -o mycodec.so mycodec.c`), then
 *      `alcm-bench --plugin ./mycodec.so` (add `,max-error=1e-3` etc. for parameters).
 *
 * What the bench calls, for one codec configuration and one bundle file
 * ---------------------------------------------------------------------
 *   create(&state, params)                           once per configuration
 *   compress_bound(state, t, n)                      untimed; sizes the output buffer
 *   compress(state, t, n, out, cap, &len)            timed (wall and CPU): the pack
 *   decompress(state, in, len, t, n, dst)            timed (wall): the unpack
 *   ... the same two calls for every file and every repeat ...
 *   destroy(state)
 *
 * The unit of work is one bundle file: all of its tensors in one call, in file order, so
 * that a codec may share a dictionary, a header or a model across them (alcm writes one
 * archive per file). A codec that works per tensor loops over them and frames its output
 * itself (the sizes it needs to find the tensors back are in the descriptions, see below).
 *
 * Rules a codec must follow (the bench checks the ones it can, and a codec that breaks
 * one is reported as FAILED for that bundle):
 *   - decompress() receives the same descriptions compress() received (name, dtype, shape,
 *     nbytes; `data` is NULL), so a codec need not store them. A codec that does store them
 *     is not credited for it.
 *   - Deterministic: the same tensors and parameters give the same compressed size on every
 *     call (the bench asserts identical ratios across repeats).
 *   - A lossless configuration reproduces every byte. A lossy one reproduces integer and
 *     bool tensors exactly, and with ALCM_CODEC_CAP_MAX_ERROR keeps |x - x'| <= max_abs_error
 *     for every finite float value, with NaN and infinities bit-exact.
 *   - The only allowed side effects are on `state`, on `out` or `dst`, and on memory the
 *     codec allocates. No printing, no exit(), no threads left running after a call.
 *   - decompress() of bytes that compress() did not produce (truncated or altered) returns
 *     ALCM_CODEC_E_CORRUPT and writes nothing outside `dst[i][0 .. t[i].nbytes)`.
 *   - One state is used by one thread at a time; different states may run concurrently.
 *
 * Versioning
 * ----------
 * ALCM_CODEC_ABI_VERSION changes only when an existing field changes meaning or place; the
 * plugin's entry point then gets a new name (alcm_codec_plugin_v2). Fields may be appended
 * to alcm_codec_v1 and alcm_codec_params within version 1: each carries its size, the bench
 * reads only the fields a plugin's struct_size covers, and a plugin reads only the params
 * fields that params->struct_size covers (use ALCM_CODEC_HAS_FIELD()).
 */
#ifndef ALCM_CODEC_H
#define ALCM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ALCM_CODEC_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define ALCM_CODEC_EXPORT __attribute__((visibility("default")))
#else
#define ALCM_CODEC_EXPORT
#endif

/** The ABI version this header describes; alcm_codec_v1.abi_version must equal it. */
#define ALCM_CODEC_ABI_VERSION 1u

/** Name of the symbol a plugin exports (a function, see alcm_codec_plugin_fn). */
#define ALCM_CODEC_PLUGIN_SYMBOL "alcm_codec_plugin_v1"

/** 1 if a struct that declares `struct_size` bytes contains `field`. */
#define ALCM_CODEC_HAS_FIELD(ptr, type, field) \
	((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ------------------------------------------------------------------------------------ */
/* Status codes                                                                          */
/* ------------------------------------------------------------------------------------ */

/** Every callback that can fail returns one of these (0 on success). */
enum alcm_codec_status {
	ALCM_CODEC_OK = 0,
	ALCM_CODEC_E_ARG = 1,         /**< a bad argument or parameter (e.g. bits = 99) */
	ALCM_CODEC_E_SPACE = 2,       /**< `cap` is too small; set *out_len to the size needed
	                                   if known (else 0): the bench retries with more */
	ALCM_CODEC_E_CORRUPT = 3,     /**< decompress(): the input is not what compress() wrote */
	ALCM_CODEC_E_NOMEM = 4,       /**< an allocation failed */
	ALCM_CODEC_E_UNSUPPORTED = 5, /**< a dtype, shape or mode this codec does not handle */
	ALCM_CODEC_E_INTERNAL = 6     /**< anything else; say what in detail() */
};

/* ------------------------------------------------------------------------------------ */
/* Tensors                                                                               */
/* ------------------------------------------------------------------------------------ */

/**
 * Element types. The numbers are alcm's (enum alcm_dtype in alcm.h, spec/alcm-format.md) and
 * never change. Bytes per element: 1 for BOOL, U8, I8; 2 for U16, I16, F16, BF16; 4 for U32,
 * I32, F32; 8 for U64, I64, F64. BOOL elements are 0 or 1. F16 is IEEE binary16, BF16 the
 * upper half of a binary32.
 */
#define ALCM_CODEC_DTYPE_BOOL 1
#define ALCM_CODEC_DTYPE_U8 2
#define ALCM_CODEC_DTYPE_I8 3
#define ALCM_CODEC_DTYPE_U16 4
#define ALCM_CODEC_DTYPE_I16 5
#define ALCM_CODEC_DTYPE_U32 6
#define ALCM_CODEC_DTYPE_I32 7
#define ALCM_CODEC_DTYPE_U64 8
#define ALCM_CODEC_DTYPE_I64 9
#define ALCM_CODEC_DTYPE_F16 10
#define ALCM_CODEC_DTYPE_BF16 11
#define ALCM_CODEC_DTYPE_F32 12
#define ALCM_CODEC_DTYPE_F64 13

/** Highest rank the bench passes (alcm's ALCM_MAX_NDIM). */
#define ALCM_CODEC_MAX_NDIM 32

/**
 * One tensor: C order, little-endian, packed (nbytes = product of shape * element size;
 * a scalar has ndim 0 and one element). Names are byte strings, not NUL-terminated.
 * In compress(), `data` points to nbytes readable bytes (NULL when nbytes is 0) that the
 * codec must not modify; in decompress() it is NULL and the output goes to dst[i].
 */
typedef struct alcm_codec_tensor {
	const char *name;
	size_t name_len;
	int dtype;                            /**< ALCM_CODEC_DTYPE_* */
	uint32_t ndim;
	uint64_t shape[ALCM_CODEC_MAX_NDIM];
	const void *data;
	uint64_t nbytes;
} alcm_codec_tensor;

/* ------------------------------------------------------------------------------------ */
/* Parameters and capabilities                                                           */
/* ------------------------------------------------------------------------------------ */

/** What a configuration promises about the decoded values. */
enum alcm_codec_mode {
	ALCM_CODEC_MODE_EXACT = 0,     /**< lossless: every byte back */
	ALCM_CODEC_MODE_MAX_ERROR = 1, /**< |x - x'| <= max_abs_error on float values */
	ALCM_CODEC_MODE_BITS = 2       /**< `bits` bits per float value; no error promise */
};

/**
 * Parameters of one configuration, passed to create(). The bench fills every field; a codec
 * ignores those its capabilities do not cover and refuses (ALCM_CODEC_E_ARG or
 * ALCM_CODEC_E_UNSUPPORTED) a mode it does not offer.
 */
typedef struct alcm_codec_params {
	uint32_t struct_size;  /**< sizeof(alcm_codec_params) as the bench was compiled */
	int mode;              /**< enum alcm_codec_mode */
	double max_abs_error;  /**< for ALCM_CODEC_MODE_MAX_ERROR: > 0 and finite */
	uint32_t bits;         /**< for ALCM_CODEC_MODE_BITS: 1..32 */
	int level;             /**< effort level in the codec's own scale; 0 = its default */
	uint32_t threads;      /**< threads the codec may use; the leaderboard uses 1 */
} alcm_codec_params;

/* Capability flags (alcm_codec_v1.caps). */
#define ALCM_CODEC_CAP_LOSSLESS 0x1u  /**< offers ALCM_CODEC_MODE_EXACT */
#define ALCM_CODEC_CAP_MAX_ERROR 0x2u /**< offers ALCM_CODEC_MODE_MAX_ERROR (checked) */
#define ALCM_CODEC_CAP_BITS 0x4u      /**< offers ALCM_CODEC_MODE_BITS */
/**
 * compress() accepts float tensors only (F16, BF16, F32, F64). The bench then gives it the
 * float tensors of each file and stores every other tensor raw beside its output, counting
 * those bytes in the compressed size: a float-only codec is compared on whole files too.
 */
#define ALCM_CODEC_CAP_FLOAT_ONLY 0x8u
/** Uses params.level (the bench shows it in the configuration's label). */
#define ALCM_CODEC_CAP_LEVEL 0x10u
/** Every capability flag version 1 defines; others must be 0. */
#define ALCM_CODEC_CAP_ALL_V1 0x1fu

/* ------------------------------------------------------------------------------------ */
/* The codec table                                                                       */
/* ------------------------------------------------------------------------------------ */

typedef struct alcm_codec_v1 {
	uint32_t abi_version;    /**< ALCM_CODEC_ABI_VERSION */
	uint32_t struct_size;    /**< sizeof(alcm_codec_v1) as the plugin was compiled */
	/** Short identifier: 1 to 32 characters of [a-z0-9_.-], starting with a letter; it
	 *  names the codec in tables, so do not reuse a built-in name (alcm, zstd, zlib,
	 *  stored). Required. */
	const char *name;
	/** The codec's own version, free text up to 64 characters (e.g. "1.2.0"). Required. */
	const char *version;
	/** One line for people, up to 200 characters; may be NULL. */
	const char *description;
	uint32_t caps;           /**< ALCM_CODEC_CAP_*: LOSSLESS, MAX_ERROR or BITS at least */

	/**
	 * Creates a state for one configuration. May be NULL: the codec is stateless and the
	 * other callbacks receive state NULL.
	 * @param state   receives the state (freed with destroy()).
	 * @param params  never NULL; read only the fields params->struct_size covers.
	 * @return ALCM_CODEC_OK, ALCM_CODEC_E_ARG or ALCM_CODEC_E_UNSUPPORTED (a mode or
	 *         parameter this codec refuses), ALCM_CODEC_E_NOMEM.
	 */
	int (*create)(void **state, const alcm_codec_params *params);

	/** Frees a state; NULL is a no-op. May be NULL when create is NULL. */
	void (*destroy)(void *state);

	/**
	 * An upper bound of compress()'s output for these tensors, or 0 if the codec cannot
	 * say (the bench then starts from twice the input size and retries on
	 * ALCM_CODEC_E_SPACE). Not timed. May be NULL (same as returning 0).
	 */
	uint64_t (*compress_bound)(void *state, const alcm_codec_tensor *t, size_t n);

	/**
	 * Compresses the n tensors of one file into out[0 .. cap). Required.
	 * @param out_len  receives the bytes written; on ALCM_CODEC_E_SPACE, the size needed if
	 *                 known, else 0.
	 * @return ALCM_CODEC_OK, ALCM_CODEC_E_SPACE, ALCM_CODEC_E_UNSUPPORTED (a dtype it cannot
	 *         take), ALCM_CODEC_E_NOMEM, ALCM_CODEC_E_INTERNAL.
	 */
	int (*compress)(void *state, const alcm_codec_tensor *t, size_t n, void *out, size_t cap,
	                size_t *out_len);

	/**
	 * Decompresses in[0 .. len) into dst[i] (t[i].nbytes bytes each, caller-owned). `t`
	 * holds the descriptions compress() was given, with data NULL. Required.
	 * @return ALCM_CODEC_OK, ALCM_CODEC_E_CORRUPT (input not made by compress() for these
	 *         tensors: wrong length, bad stream, trailing bytes), ALCM_CODEC_E_NOMEM.
	 */
	int (*decompress)(void *state, const void *in, size_t len, const alcm_codec_tensor *t,
	                  size_t n, void *const *dst);

	/**
	 * One line saying why the last call on this state failed ("" if none), valid until the
	 * next call. May be NULL. After a failed create() it is called with whatever create()
	 * left in *state (normally NULL).
	 */
	const char *(*detail)(void *state);
} alcm_codec_v1;

/** The plugin's entry point: returns its table (static storage), or NULL to refuse. */
typedef const alcm_codec_v1 *(*alcm_codec_plugin_fn)(void);

#ifdef __cplusplus
}
#endif
#endif /* ALCM_CODEC_H */
