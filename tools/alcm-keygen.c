/* alcm-keygen: create an Ed25519 key pair for signing archives. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: alcm-keygen [-f] NAME\n"
	"\n"
	"Writes an Ed25519 key pair: NAME.key (secret, mode 0600) and NAME.pub, both or neither\n"
	"(without -f, nothing is written if either exists). Sign archives with\n"
	"'alcm-pack --sign NAME.key'; check them with\n"
	"'alcm-inspect --verify --pubkey NAME.pub' or 'alcm-unpack --pubkey NAME.pub'.\n"
	"The file formats are in spec/alcm-format.md, section 6.10.\n"
	"\n"
	"  -f, --force    replace existing key files\n"
	"  -h, --help     this help\n"
	"  -V, --version  print the version and exit\n"
	"\n" CLI_EXIT_CODES_HELP;

int main(int argc, char **argv)
{
	cli_init("alcm-keygen");
	argv[0] = (char *)cli_prog; /* getopt's messages name the tool, not its path */
	static const struct option opts[] = {
		{"force", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
	int force = 0, c;
	while ((c = getopt_long(argc, argv, "fhV", opts, NULL)) != -1) {
		if (c == 'f')
			force = 1;
		else if (c == 'h') {
			fputs(usage, stdout);
			return 0;
		} else if (c == 'V') {
			return cli_version();
		} else {
			return cli_usage_error(usage, NULL);
		}
	}
	if (optind != argc - 1)
		return cli_usage_error(usage, "expected one NAME argument");
	size_t n = strlen(argv[optind]);
	char *kp = malloc(n + 5), *pp = malloc(n + 5);
	if (!kp || !pp)
		return EXIT_NOMEM;
	snprintf(kp, n + 5, "%s.key", argv[optind]);
	snprintf(pp, n + 5, "%s.pub", argv[optind]);
	uint8_t pk[ALCM_PUBLIC_KEY_BYTES], sk[ALCM_SECRET_KEY_BYTES];
	int rc = alcm_keypair_new(pk, sk) ? EXIT_FAIL : 0;
	if (!rc)
		rc = cli_write_keypair(kp, pp, sk, pk, force);
	alcm_wipe(sk, sizeof(sk));
	if (!rc)
		fprintf(stderr, "alcm-keygen: wrote '%s' (secret) and '%s'\n", kp, pp);
	free(kp);
	free(pp);
	return rc;
}
