typedef int alcm_cli_placeholder;
