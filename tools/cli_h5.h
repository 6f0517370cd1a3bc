/*
 * The HDF5 bridge of the tools, loaded on demand. libhdf5 (and the forty libraries it needs:
 * curl, krb5, gnutls...) cost every start of a tool several milliseconds, so the tools do not
 * link it: the bridge (lib/hdf5 with libhdf5) is a module, alcm-hdf5.so, that cli_h5() loads
 * with dlopen the first time a .h5 file is read or written. Not installed.
 *
 * Where the module is looked for, first found wins:
 *   1. $ALCM_HDF5_MODULE (a path; nothing else is tried when it is set);
 *   2. <directory of the executable>/../lib/alcm-hdf5.so (the build tree; an install with
 *      libdir "lib");
 *   3. <directory of the executable>/../<libdir>/alcm-hdf5.so (a relocated install);
 *   4. <libdir>/alcm-hdf5.so, the libdir of the install prefix at build time.
 */
#ifndef ALCM_CLI_H5_H
#define ALCM_CLI_H5_H

#include "alcm_hdf5.h"

/* The module's ABI: a module of another version is refused rather than called. */
#define CLI_H5_ABI 1
#define CLI_H5_MODULE_FILE "alcm-hdf5.so"
#define CLI_H5_ENTRY "alcm_hdf5_module_api"

typedef struct cli_h5_api {
	unsigned abi;
	size_t size; /* sizeof(cli_h5_api) in the module */
	int (*input_open)(alcm_h5_input **out, const char *path, const alcm_limits *lim,
	                  unsigned flags);
	int (*input_next)(alcm_h5_input *in, alcm_tensor *t, int *has);
	uint64_t (*input_size)(const alcm_h5_input *in);
	int (*input_structure)(alcm_h5_input *in, const void **buf, size_t *len);
	size_t (*input_skipped)(const alcm_h5_input *in);
	const char *(*input_skipped_name)(const alcm_h5_input *in, size_t i, const char **reason);
	const char *(*input_detail)(const alcm_h5_input *in);
	void (*input_free)(alcm_h5_input *in);
	void (*output_options_default)(alcm_h5_output_options *opt);
	int (*output_open)(alcm_h5_output **out, const char *path, unsigned flags,
	                   const void *structure, size_t structure_len,
	                   const alcm_h5_output_options *opt);
	int (*output_plan)(alcm_h5_output *o, const alcm_tensor *t, size_t n);
	int (*output_write)(alcm_h5_output *o, const alcm_tensor *t);
	int (*output_commit)(alcm_h5_output *o);
	const char *(*output_detail)(const alcm_h5_output *o);
	void (*output_free)(alcm_h5_output *o);
	/* The module's alcm_atomic_cleanup_all() (its own copy of the core keeps its own list
	 * of named temporary files); async-signal-safe. */
	void (*cleanup)(void);
} cli_h5_api;

/* The bridge, loaded on the first call. @return NULL when it cannot be loaded, with why
 * ("cannot load '<path>': <reason>") in why[cap]. */
const cli_h5_api *cli_h5(char *why, size_t cap);

/* Async-signal-safe: the module's temporary-file cleanup, if the module is loaded. */
void cli_h5_cleanup(void);

#endif
