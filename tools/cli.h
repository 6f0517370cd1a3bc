/* Shared command-line code of the alcm tools: messages, exit codes, number parsing,
 * progress bar and signal cleanup. */
#ifndef ALCM_CLI_H
#define ALCM_CLI_H

#include "alcm.h"

#include <stdint.h>
#include <stdio.h>

/* Exit codes, the same for every tool (documented in each --help and man page). */
enum cli_exit {
	EXIT_OK_ = 0,
	EXIT_FAIL = 1,       /* other failure */
	EXIT_USAGE = 2,      /* bad command line */
	EXIT_IO = 3,         /* cannot read or write a file */
	EXIT_MALFORMED = 4,  /* input breaks its format's rules */
	EXIT_DIGEST = 5,     /* a digest does not match */
	EXIT_LIMIT = 6,      /* input exceeds a limit */
	EXIT_UNSUPPORTED = 7,/* valid input needing a feature this build lacks */
	EXIT_EXISTS = 8,     /* output exists and -f was not given */
	EXIT_NOMEM = 9,      /* out of memory */
	EXIT_BOUND = 10,     /* the lossy request cannot be honoured (e.g. integer tensors) */
	EXIT_SIGNATURE = 11, /* signature missing, bad, or by another key */
	EXIT_BUSY = 12       /* the archive is locked by another writer (--no-wait) */
};

#define CLI_EXIT_CODES_HELP \
	"Exit status:\n" \
	"  0  success            5  digest mismatch      9  out of memory\n" \
	"  1  other failure      6  limit exceeded      10  lossy request refused\n" \
	"  2  usage error        7  unsupported feature\n" \
	"  3  i/o error          8  output exists (use -f)\n" \
	"  4  malformed input   11  signature missing, bad or by another key\n" \
	"                       12  archive locked by another writer (--no-wait)\n"

extern const char *cli_prog;
extern int cli_quiet, cli_verbose;

/* Sets cli_prog and installs SIGINT/SIGTERM/SIGHUP handlers that remove temp files. */
void cli_init(const char *prog);
/* "prog: message" on stderr (lowercase, no full stop). */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * A usage error: "prog: <message>" when fmt is not NULL, then the first line of `usage` and
 * "Try 'prog --help' for more information." on stderr. @return EXIT_USAGE.
 */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Several inputs and no -o: runs this tool (/proc/self/exe) once per input, argv[1..first)
 * being the options, each in a process of its own that writes its default output name, one
 * after the other. @return 0 when every run succeeded, else the first failing run's exit
 * status (EXIT_USAGE if '-' is one of the inputs).
 */
int cli_run_each(int argc, char **argv, int first);
/* The default output name of `in` (zstd's way): "-" stays "-"; with `suffix` ("alcm"),
 * IN.alcm, trailing slashes of a directory dropped; without (NULL), IN without its ".alcm",
 * or NULL when it does not end so. Allocated: free() it. */
char *cli_default_output(const char *in, const char *suffix);
/* --version: "prog <library version> (format M.m)" on stdout. @return 0. */
int cli_version(void);
/* Maps an alcm status to an exit code. */
int cli_exit_code(int status);
/* Reports a library failure: "prog: cannot <verb> 'path': <detail or strerror>". */
int cli_fail(int status, const char *verb, const char *path, const char *detail);

int cli_parse_double(const char *s, double *out);
int cli_parse_u64(const char *s, uint64_t *out); /* accepts k, M, G suffixes (powers of 2) */

/* Progress bar on stderr, only if stderr is a terminal and total >= min_total. */
typedef struct cli_progress {
	int on;
	uint64_t total, done;
	double start, last;
	const char *label;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, uint64_t total, uint64_t min_total);
void cli_progress_add(cli_progress *p, uint64_t n);
void cli_progress_end(cli_progress *p);

double cli_now(void);
/* malloc(n) (n 0 counts as 1), freed with free(), for a block the caller fills whole (a
 * tensor): from 2 MiB up it starts on a 2 MiB boundary, rounded up to whole 2 MiB pieces, all
 * advised to transparent huge pages, as the library does with the blocks its coders fill
 * (alcm_sys_alloc_filled): a fresh small page costs a fault. */
void *cli_alloc(size_t n);
/* Human size: "12.3 MB". Uses a static ring of buffers. */
const char *cli_size(uint64_t bytes);
/* Shape as "[3, 4]". Static ring. */
const char *cli_shape(const uint64_t *shape, uint32_t ndim);
/* Quoted name safe for terminals; static ring. */
const char *cli_name(const char *s, size_t len);
/*
 * Key files (spec 6.10): one line "alcm-ed25519-secret-key <128 hex digits>" or
 * "alcm-ed25519-public-key <64 hex digits>", lowercase, then an optional LF, nothing else.
 * Reads one; prints the error itself. @return 0 or an exit code.
 */
int cli_read_key(const char *path, int secret, uint8_t *key, size_t len);
/* The same without a message: 0, EXIT_IO (errno set) or EXIT_MALFORMED. */
int cli_load_key(const char *path, int secret, uint8_t *key, size_t len);
/*
 * Writes a key pair: the secret key file (mode 0600) and the public one, both or neither.
 * Without force an existing file of either name stops it before anything is written. Both
 * are written, flushed and given hidden names first, then renamed into place one right after
 * the other (alcm_atomic_file_commit_all); if the public key's rename fails, the secret key
 * file is put back as it was (removed, or its old bytes restored). Only a kill -9 between the
 * two renames can leave the new secret key beside the old public one (or alone); a kill just
 * before them leaves two hidden names and the old pair. Prints its errors.
 * @return 0 or an exit code.
 */
int cli_write_keypair(const char *key_path, const char *pub_path,
                      const uint8_t sk[ALCM_SECRET_KEY_BYTES],
                      const uint8_t pk[ALCM_PUBLIC_KEY_BYTES], int force);

/*
 * "-" as INPUT or OUTPUT (tools/cli_stdio.c). Standard input is spooled into a temporary
 * file, at most CLI_SPOOL_MAX bytes (every format is read with seeks); an output goes to a
 * temporary file and is copied to standard output once complete. Both live in a private
 * directory under $TMPDIR, removed at exit and on SIGINT/SIGTERM/SIGHUP.
 */
#define CLI_SPOOL_MAX ((uint64_t)64 << 30)
/* *file = path, or for "-" the spooled copy of standard input (refused from a terminal).
 * Prints the error itself. @return 0 or an exit code. */
int cli_stdin_path(const char *path, const char **file);
/* *file = path, or for "-" a temporary "out.EXT"; refuses a terminal unless `force`. */
int cli_stdout_path(const char *path, const char *ext, int force, const char **file);
/* Copies the temporary output to standard output (no-op without "-o -"). @return 0 or 3. */
int cli_stdout_commit(void);
/* "-" for the temporary paths standing for standard input and output, else path. */
const char *cli_display(const char *path);
/* A library detail line without its leading "<temporary path>: ". */
const char *cli_strip_temp(const char *detail);
void cli_stdio_cleanup(void);

/* Writes a JSON string literal of s (bytes; invalid UTF-8 escaped as \u00XX). */
void cli_json_string(FILE *f, const char *s, size_t len);

/*
 * Tensor inputs of the tools: .npy, .npz, .safetensors through alcm_input, and .h5 through
 * the HDF5 bridge when the build has it (ALCM_HAVE_HDF5). The format is detected from the
 * file's bytes. cli_h5_flags (ALCM_H5_* of alcm_hdf5.h) apply to .h5 inputs; the tools
 * default to ALCM_H5_ISOLATE.
 */
typedef struct cli_input cli_input;
extern unsigned cli_h5_flags;
int cli_input_open(cli_input **in, const char *path);
int cli_input_next(cli_input *in, alcm_tensor *t, int *has);
/* alcm_input_keep_previous() for the core's readers; ALCM_E_UNSUPPORTED for HDF5. */
int cli_input_keep_previous(cli_input *in);
/* Tensors in pieces (alcm_input_next_begin, alcm_input_piece); ALCM_E_UNSUPPORTED for
 * inputs not read by alcm_input (HDF5). */
int cli_input_next_begin(cli_input *in, alcm_tensor *t, int *has);
int cli_input_piece(cli_input *in, const void **data, size_t *len);
int cli_input_format(const cli_input *in);
uint64_t cli_input_size(const cli_input *in);
const char *cli_input_detail(const cli_input *in);
/* The HDF5 structure (ATTR payload). @return ALCM_E_NOTFOUND for other formats. */
int cli_input_structure(cli_input *in, const void **buf, size_t *len);
/* Objects left out under --skip-unsupported: count, and "name: reason" of entry i. */
size_t cli_input_skipped(const cli_input *in);
const char *cli_input_skipped_name(const cli_input *in, size_t i, const char **reason);
/* Records of the input for the archive's META (alcm_input_meta()); none for .h5. */
size_t cli_input_meta_count(const cli_input *in);
int cli_input_meta(const cli_input *in, size_t i, const char **key, const uint8_t **value,
                   size_t *len);
void cli_input_free(cli_input *in);
/* Opens, and on failure reports and returns the exit code (0 on success). */
int cli_input_open_or_fail(cli_input **in, const char *path);
/* Reports a failure of cli_input_next() and returns the exit code. */
int cli_input_fail(const cli_input *in, int st, const char *path);

#endif
