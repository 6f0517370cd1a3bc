/*
 * "-" as a file name: standard input spooled into a temporary file (tensor formats, HDF5 and
 * archives all need to seek), and outputs written to a temporary file, complete, then copied
 * to standard output, so that a refused input never leaves half a file in the pipe.
 */
#include "cli.h"
#ifdef ALCM_HAVE_HDF5
#include "cli_h5.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One private directory per process: "<TMPDIR>/alcm-XXXXXX", holding "tensor" (standard input;
 * its name is what a .npy read from a pipe is called) and "out.EXT" (standard output). */
static char stdio_dir[4096], stdio_in[4200], stdio_out[4200];

void cli_stdio_cleanup(void)
{
	/* Async-signal-safe: the signal handlers call it too. The HDF5 module keeps its own
	 * list of named temporary files (its own copy of the core). */
#ifdef ALCM_HAVE_HDF5
	cli_h5_cleanup();
#endif
	if (stdio_in[0])
		unlink(stdio_in);
	if (stdio_out[0])
		unlink(stdio_out);
	if (stdio_dir[0])
		rmdir(stdio_dir);
}

/* @return 0 or errno. */
static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int make_dir(void)
{
	if (stdio_dir[0])
		return 0;
	const char *t = getenv("TMPDIR");
	if (!t || !*t)
		t = "/tmp";
	int n = snprintf(stdio_dir, sizeof(stdio_dir), "%s/alcm-XXXXXX", t);
	if (n < 0 || (size_t)n >= sizeof(stdio_dir) || !mkdtemp(stdio_dir)) {
		cli_err("cannot create a temporary directory in '%s': %s", t, strerror(errno));
		stdio_dir[0] = '\0';
		return EXIT_IO;
	}
	atexit(cli_stdio_cleanup);
	return 0;
}

int cli_stdin_path(const char *path, const char **file)
{
	*file = path;
	if (strcmp(path, "-") != 0)
		return 0;
	if (stdio_in[0]) {
		*file = stdio_in;
		return 0;
	}
	if (isatty(STDIN_FILENO)) {
		cli_err("standard input is a terminal: pipe a file in, or name it");
		return EXIT_USAGE;
	}
	int rc = make_dir();
	if (rc)
		return rc;
	snprintf(stdio_in, sizeof(stdio_in), "%s/tensor", stdio_dir);
	int fd = open(stdio_in, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_err("cannot spool standard input into '%s': %s", stdio_in, strerror(errno));
		stdio_in[0] = '\0';
		return EXIT_IO;
	}
	static uint8_t buf[1 << 16];
	uint64_t total = 0;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_err("cannot read standard input: %s", strerror(errno));
			rc = EXIT_IO;
			break;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > CLI_SPOOL_MAX) {
			cli_err("cannot read standard input: more than %s (the spool limit; name a file "
			        "instead)", cli_size(CLI_SPOOL_MAX));
			rc = EXIT_LIMIT;
			break;
		}
		int e = write_all(fd, buf, (size_t)n);
		if (e) {
			cli_err("cannot spool standard input into '%s': %s", stdio_in, strerror(e));
			rc = EXIT_IO;
			break;
		}
	}
	if (close(fd) != 0 && !rc) {
		cli_err("cannot spool standard input into '%s': %s", stdio_in, strerror(errno));
		rc = EXIT_IO;
	}
	if (rc)
		return rc;
	*file = stdio_in;
	return 0;
}

int cli_stdout_path(const char *path, const char *ext, int force, const char **file)
{
	*file = path;
	if (strcmp(path, "-") != 0)
		return 0;
	if (isatty(STDOUT_FILENO) && !force) {
		cli_err("standard output is a terminal: refusing to write binary data to it "
		        "(redirect it, or use -f)");
		return EXIT_USAGE;
	}
	int rc = make_dir();
	if (rc)
		return rc;
	snprintf(stdio_out, sizeof(stdio_out), "%s/out.%s", stdio_dir, ext);
	*file = stdio_out;
	return 0;
}

int cli_stdout_commit(void)
{
	if (!stdio_out[0])
		return 0;
	int fd = open(stdio_out, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_err("cannot read '%s': %s", stdio_out, strerror(errno));
		return EXIT_IO;
	}
	/* A reader that went away is a write error (EPIPE), not a signal that kills us before
	 * the temporary files are removed. */
	signal(SIGPIPE, SIG_IGN);
	static uint8_t buf[1 << 16];
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0) {
				cli_err("cannot read '%s': %s", stdio_out, strerror(errno));
				rc = EXIT_IO;
			}
			break;
		}
		int e = write_all(STDOUT_FILENO, buf, (size_t)n);
		if (e) {
			cli_err("cannot write to standard output: %s", strerror(e));
			rc = EXIT_IO;
			break;
		}
	}
	close(fd);
	unlink(stdio_out);
	stdio_out[0] = '\0';
	return rc;
}

const char *cli_display(const char *path)
{
	if (path && stdio_in[0] && strcmp(path, stdio_in) == 0)
		return "-";
	if (path && stdio_out[0] && strcmp(path, stdio_out) == 0)
		return "-";
	return path;
}

const char *cli_strip_temp(const char *detail)
{
	const char *t[2] = {stdio_in, stdio_out};
	for (int i = 0; i < 2 && detail; i++) {
		size_t n = strlen(t[i]);
		if (n && strncmp(detail, t[i], n) == 0 && detail[n] == ':' && detail[n + 1] == ' ')
			return detail + n + 2;
	}
	return detail;
}
