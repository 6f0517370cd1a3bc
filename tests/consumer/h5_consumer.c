/* Links the HDF5 bridge from an installed prefix: the header, the static library and what
 * it pulls in (the static core, libhdf5). */
#include <alcm_hdf5.h>

#include <stdio.h>

int main(void)
{
	alcm_h5_output_options o;
	alcm_h5_output_options_default(&o);
	printf("alcm %s, hdf5 bridge linked\n", alcm_version());
	return 0;
}
