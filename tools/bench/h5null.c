/*
 * H5Znull: a filter plugin that codes nothing (every chunk passes through unchanged), for
 * tools/bench/h5_filter_bench.py only: it measures what libhdf5 and h5py charge any filter
 * plugin for a write (the filtered chunk path, the pipeline, the plugin's cd_values), so
 * that the bench can tell that fixed part from a filter's own coding work. Filter id 418,
 * next to alcm's 417 in the range HDF5 keeps for testing; never installed.
 */
#include <H5PLextern.h>

#define NULL_FILTER_ID 418

static size_t pass(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                   size_t *buf_size, void **buf)
{
	(void)flags;
	(void)cd_nelmts;
	(void)cd_values;
	(void)buf_size;
	(void)buf;
	return nbytes;
}

static const H5Z_class2_t null_class = {
	H5Z_CLASS_T_VERS, (H5Z_filter_t)NULL_FILTER_ID, 1, 1, "null: the bench's pass-through filter",
	NULL,             NULL,                         pass,
};

__attribute__((visibility("default"))) H5PL_type_t H5PLget_plugin_type(void)
{
	return H5PL_TYPE_FILTER;
}

__attribute__((visibility("default"))) const void *H5PLget_plugin_info(void)
{
	return &null_class;
}
