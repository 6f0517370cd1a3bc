/* Tensor inputs of the tools: the core's readers, and the HDF5 bridge when it is built. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>

#ifdef ALCM_HAVE_HDF5
#include "cli_h5.h"
unsigned cli_h5_flags = ALCM_H5_ISOLATE;
#else
unsigned cli_h5_flags = 0;
#endif

struct cli_input {
	alcm_input *core;
#ifdef ALCM_HAVE_HDF5
	alcm_h5_input *h5;
	const cli_h5_api *h5api; /* set with h5 */
#endif
	int format;
	char detail[PATH_MAX + 512];
};

/* The HDF5 signature is at offset 0, or after a user block of 512, 1024, 2048... bytes. */
static int is_hdf5(const char *path)
{
	static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int found = 0;
	for (off_t at = 0; !found && at <= ((off_t)1 << 30); at = at ? 2 * at : 512) {
		unsigned char head[8];
		if (pread(fd, head, sizeof(head), at) != (ssize_t)sizeof(head))
			break;
		found = memcmp(head, sig, sizeof(sig)) == 0;
	}
	close(fd);
	return found;
}

/* 1 if the file starts like one of the core's formats. */
static int known_format(const char *path)
{
	unsigned char head[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1; /* let the core reader report the error */
	ssize_t got = pread(fd, head, sizeof(head), 0);
	close(fd);
	return got > 0 && alcm_detect_format(head, (size_t)got) != ALCM_FILE_UNKNOWN;
}

int cli_input_open(cli_input **out, const char *path)
{
	cli_input *in = calloc(1, sizeof(*in));
	*out = in;
	if (!in)
		return ALCM_E_NOMEM;
	/* By bytes first; a file named .h5 that is in no known format gets the HDF5 reader's
	 * verdict ("not an HDF5 file"), which says more than "unrecognized format". */
	int named_h5 = alcm_format_from_extension(path) == ALCM_FILE_HDF5;
	if (is_hdf5(path) || (named_h5 && !known_format(path))) {
		in->format = ALCM_FILE_HDF5;
#ifdef ALCM_HAVE_HDF5
		char why[PATH_MAX + 200];
		in->h5api = cli_h5(why, sizeof(why));
		if (!in->h5api) {
			snprintf(in->detail, sizeof(in->detail),
			         "an HDF5 file, and the HDF5 support of the tools is missing: %s", why);
			return ALCM_E_UNSUPPORTED;
		}
		return in->h5api->input_open(&in->h5, path, NULL, cli_h5_flags);
#else
		snprintf(in->detail, sizeof(in->detail),
		         "an HDF5 file, and this build has no HDF5 support (ALCM_WITH_HDF5=OFF)");
		return ALCM_E_UNSUPPORTED;
#endif
	}
	int st = alcm_input_open(&in->core, path, NULL, NULL);
	in->format = in->core ? alcm_input_format(in->core) : ALCM_FILE_UNKNOWN;
	return st;
}

int cli_input_next(cli_input *in, alcm_tensor *t, int *has)
{
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		return in->h5api->input_next(in->h5, t, has);
#endif
	return alcm_input_next(in->core, t, has);
}

int cli_input_next_begin(cli_input *in, alcm_tensor *t, int *has)
{
	return in->core ? alcm_input_next_begin(in->core, t, has) : ALCM_E_UNSUPPORTED;
}

int cli_input_piece(cli_input *in, const void **data, size_t *len)
{
	return in->core ? alcm_input_piece(in->core, data, len) : ALCM_E_UNSUPPORTED;
}

int cli_input_keep_previous(cli_input *in)
{
	return in->core ? alcm_input_keep_previous(in->core) : ALCM_E_UNSUPPORTED;
}

int cli_input_format(const cli_input *in)
{
	return in ? in->format : ALCM_FILE_UNKNOWN;
}

uint64_t cli_input_size(const cli_input *in)
{
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		return in->h5api->input_size(in->h5);
#endif
	return in->core ? alcm_input_size(in->core) : 0;
}

const char *cli_input_detail(const cli_input *in)
{
	if (!in)
		return "";
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		return in->h5api->input_detail(in->h5);
#endif
	if (in->core)
		return alcm_input_detail(in->core);
	return in->detail;
}

int cli_input_structure(cli_input *in, const void **buf, size_t *len)
{
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		return in->h5api->input_structure(in->h5, buf, len);
#endif
	(void)in;
	*buf = NULL;
	*len = 0;
	return ALCM_E_NOTFOUND;
}

size_t cli_input_skipped(const cli_input *in)
{
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		return in->h5api->input_skipped(in->h5);
#endif
	(void)in;
	return 0;
}

const char *cli_input_skipped_name(const cli_input *in, size_t i, const char **reason)
{
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		return in->h5api->input_skipped_name(in->h5, i, reason);
#endif
	(void)in;
	(void)i;
	(void)reason;
	return NULL;
}

size_t cli_input_meta_count(const cli_input *in)
{
	return in && in->core ? alcm_input_meta_count(in->core) : 0;
}

int cli_input_meta(const cli_input *in, size_t i, const char **key, const uint8_t **value,
                   size_t *len)
{
	return in && in->core ? alcm_input_meta(in->core, i, key, value, len) : ALCM_E_ARG;
}

void cli_input_free(cli_input *in)
{
	if (!in)
		return;
#ifdef ALCM_HAVE_HDF5
	if (in->h5)
		in->h5api->input_free(in->h5);
#endif
	alcm_input_free(in->core);
	free(in);
}

int cli_input_open_or_fail(cli_input **in, const char *path)
{
	int st = cli_input_open(in, path);
	if (!st)
		return 0;
	int rc;
	if (cli_input_format(*in) == ALCM_FILE_ALCM) {
		cli_err("'%s' is already an alcm archive: use alcm-unpack to get its tensors back "
		        "(or alcm-inspect to see them)", cli_display(path));
		rc = EXIT_UNSUPPORTED;
	} else {
		rc = cli_fail(st, "read", path, cli_input_detail(*in));
	}
	cli_input_free(*in);
	*in = NULL;
	return rc;
}

int cli_input_fail(const cli_input *in, int st, const char *path)
{
	return cli_fail(st, "read", path, cli_input_detail(in));
}
