/* dtype table and shape arithmetic. */
#include "format_internal.h"

static const struct {
	const char *name;
	uint8_t size;
	uint8_t is_float;
} dtypes[] = {
	[ALCM_DTYPE_BOOL] = {"bool", 1, 0},    [ALCM_DTYPE_U8] = {"uint8", 1, 0},
	[ALCM_DTYPE_I8] = {"int8", 1, 0},      [ALCM_DTYPE_U16] = {"uint16", 2, 0},
	[ALCM_DTYPE_I16] = {"int16", 2, 0},    [ALCM_DTYPE_U32] = {"uint32", 4, 0},
	[ALCM_DTYPE_I32] = {"int32", 4, 0},    [ALCM_DTYPE_U64] = {"uint64", 8, 0},
	[ALCM_DTYPE_I64] = {"int64", 8, 0},    [ALCM_DTYPE_F16] = {"float16", 2, 1},
	[ALCM_DTYPE_BF16] = {"bfloat16", 2, 1}, [ALCM_DTYPE_F32] = {"float32", 4, 1},
	[ALCM_DTYPE_F64] = {"float64", 8, 1},
};

static int known(int d)
{
	return d >= ALCM_DTYPE_BOOL && d <= ALCM_DTYPE_F64;
}

size_t alcm_dtype_size(int dtype)
{
	return known(dtype) ? dtypes[dtype].size : 0;
}

const char *alcm_dtype_name(int dtype)
{
	return known(dtype) ? dtypes[dtype].name : NULL;
}

int alcm_dtype_is_float(int dtype)
{
	return known(dtype) && dtypes[dtype].is_float;
}

int alcm_shape_elements(const uint64_t *shape, uint32_t ndim, uint64_t *elems)
{
	uint64_t n = 1;
	for (uint32_t i = 0; i < ndim; i++)
		if (shape[i] == 0) {
			*elems = 0;
			return ALCM_OK;
		}
	for (uint32_t i = 0; i < ndim; i++)
		if (alcm_mul_u64(n, shape[i], &n))
			return ALCM_E_LIMIT;
	*elems = n;
	return ALCM_OK;
}
