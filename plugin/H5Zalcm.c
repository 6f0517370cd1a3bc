/*
 * H5Zalcm: the HDF5 filter plugin that stores each chunk with alcm's coding, lossless or
 * error-bounded. Built as libH5Zalcm.so (and, against Debian's MPI flavour of HDF5, as a
 * second module for parallel HDF5); libhdf5 loads it from its default plugin directory or
 * HDF5_PLUGIN_PATH when a dataset names filter ALCM_H5Z_FILTER_ID (417, from the range HDF5
 * keeps for testing).
 *
 *   h5repack -f UD=417,0,6,2,0,0,0,0,3 in.h5 out.h5       lossless, zstd level 3
 *   h5repack -f UD=417,0,4,2,1,3539053052,1062232653 ...   max-error 1e-3 (the double's
 *                                                           low and high 32-bit words)
 *
 * The filter itself (cd_values, set_local, both chunk encodings, error messages) is
 * lib/hdf5/h5_filter.c, which the HDF5 bridge also registers in-process; spec 6.6.13.
 */
#include "h5_hdf5.h"

#include <H5PLextern.h>

__attribute__((visibility("default"))) H5PL_type_t H5PLget_plugin_type(void)
{
	return H5PL_TYPE_FILTER;
}

__attribute__((visibility("default"))) const void *H5PLget_plugin_info(void)
{
	return ah5_filter_class();
}
