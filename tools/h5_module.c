/* The entry point of alcm-hdf5.so, the HDF5 bridge as the tools load it (tools/cli_h5.h). */
#include "cli_h5.h"

static const cli_h5_api api = {
	.abi = CLI_H5_ABI,
	.size = sizeof(cli_h5_api),
	.input_open = alcm_h5_input_open,
	.input_next = alcm_h5_input_next,
	.input_size = alcm_h5_input_size,
	.input_structure = alcm_h5_input_structure,
	.input_skipped = alcm_h5_input_skipped,
	.input_skipped_name = alcm_h5_input_skipped_name,
	.input_detail = alcm_h5_input_detail,
	.input_free = alcm_h5_input_free,
	.output_options_default = alcm_h5_output_options_default,
	.output_open = alcm_h5_output_open,
	.output_plan = alcm_h5_output_plan,
	.output_write = alcm_h5_output_write,
	.output_commit = alcm_h5_output_commit,
	.output_detail = alcm_h5_output_detail,
	.output_free = alcm_h5_output_free,
	.cleanup = alcm_atomic_cleanup_all,
};

__attribute__((visibility("default"))) const cli_h5_api *alcm_hdf5_module_api(unsigned abi);

const cli_h5_api *alcm_hdf5_module_api(unsigned abi)
{
	return abi == CLI_H5_ABI ? &api : NULL;
}
