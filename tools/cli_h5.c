/* Loads the HDF5 bridge module on demand (tools/cli_h5.h). */
#include "cli_h5.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ALCM_INSTALL_LIBDIR
#define ALCM_INSTALL_LIBDIR "lib"
#endif
#ifndef ALCM_INSTALL_FULL_LIBDIR
#define ALCM_INSTALL_FULL_LIBDIR "/usr/local/lib"
#endif

static const cli_h5_api *loaded;
static void (*volatile cleanup_fn)(void);

void cli_h5_cleanup(void)
{
	void (*f)(void) = cleanup_fn;
	if (f)
		f();
}

/* dlopen()s path; on failure appends "cannot load 'path': reason" to why. */
static const cli_h5_api *try_load(const char *path, char *why, size_t cap)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	const char *err = NULL;
	const cli_h5_api *api = NULL;
	if (!h) {
		err = dlerror();
	} else {
		const cli_h5_api *(*entry)(unsigned) = NULL;
		*(void **)&entry = dlsym(h, CLI_H5_ENTRY);
		api = entry ? entry(CLI_H5_ABI) : NULL;
		if (!entry)
			err = "not an alcm HDF5 module (no " CLI_H5_ENTRY ")";
		else if (!api || api->abi != CLI_H5_ABI || api->size != sizeof(cli_h5_api))
			err = "a module of another alcm version";
		if (err) {
			api = NULL;
			dlclose(h);
		}
	}
	if (!api) {
		/* dlerror() says "PATH: reason"; the path is named once. */
		size_t n = strlen(path);
		if (err && strncmp(err, path, n) == 0 && err[n] == ':' && err[n + 1] == ' ')
			err += n + 2;
		snprintf(why, cap, "cannot load '%s': %s", path, err ? err : "unknown error");
	}
	return api;
}

const cli_h5_api *cli_h5(char *why, size_t cap)
{
	if (loaded)
		return loaded;
	why[0] = '\0';
	const char *env = getenv("ALCM_HDF5_MODULE");
	char exe[PATH_MAX], path[PATH_MAX + 64];
	if (env && *env) {
		loaded = try_load(env, why, cap);
	} else {
		/* Relative to the executable first, so that a build tree and a relocated install
		 * use their own module; then the install prefix's. */
		int found = 0;
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
		if (slash) {
			*slash = '\0';
			const char *rel[2] = {"lib", ALCM_INSTALL_LIBDIR};
			for (int i = 0; i < 2 && !found; i++) {
				snprintf(path, sizeof(path), "%s/../%s/%s", exe, rel[i], CLI_H5_MODULE_FILE);
				found = access(path, F_OK) == 0;
			}
		}
		if (!found)
			snprintf(path, sizeof(path), "%s/%s", ALCM_INSTALL_FULL_LIBDIR, CLI_H5_MODULE_FILE);
		loaded = try_load(path, why, cap);
	}
	if (loaded)
		cleanup_fn = loaded->cleanup;
	return loaded;
}
