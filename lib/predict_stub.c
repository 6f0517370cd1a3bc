/* Temporary weak stand-ins until lib/predict.c lands (removed then). */
#include "codec_internal.h"

__attribute__((weak)) const alcm_predictor *alcm_predictor_default(void)
{
	static alcm_predictor p;
	return &p;
}

__attribute__((weak)) void alcm_predictor_store(const alcm_predictor *p, uint8_t out[ALCM_PRED_BYTES])
{
	(void)p;
	memset(out, 0, ALCM_PRED_BYTES);
}

__attribute__((weak)) int alcm_predictor_load(alcm_predictor *p, const uint8_t *buf, size_t len)
{
	(void)p;
	(void)buf;
	(void)len;
	return ALCM_OK;
}
