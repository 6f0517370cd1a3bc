/* A small PNG decoder for the image_small bundle: 8-bit samples, no interlacing, colour
 * types grey, RGB, palette, grey+alpha and RGBA, to RGBA8. Every chunk's CRC is checked;
 * anything else is refused (the bundle's icons are pinned by the manifest, so a refusal
 * means the package changed, which the manifest would catch anyway). */
#include "bench_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PNG_MAX_SIDE 8192

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

static int unfilter(uint8_t *raw, uint32_t w, uint32_t h, unsigned bpp, char *err, size_t cap)
{
	size_t stride = (size_t)w * bpp;
	uint8_t *prev = NULL;
	for (uint32_t y = 0; y < h; y++) {
		uint8_t *row = raw + y * (stride + 1);
		unsigned ft = row[0];
		uint8_t *px = row + 1;
		for (size_t i = 0; i < stride; i++) {
			int a = i >= bpp ? px[i - bpp] : 0, b = prev ? prev[i] : 0;
			int c = prev && i >= bpp ? prev[i - bpp] : 0;
			switch (ft) {
			case 0: break;
			case 1: px[i] = (uint8_t)(px[i] + a); break;
			case 2: px[i] = (uint8_t)(px[i] + b); break;
			case 3: px[i] = (uint8_t)(px[i] + ((a + b) >> 1)); break;
			case 4: px[i] = (uint8_t)(px[i] + paeth(a, b, c)); break;
			default: snprintf(err, cap, "bad filter type %u in row %u", ft, y); return -1;
			}
		}
		prev = px;
	}
	return 0;
}

int bench_png_decode(const uint8_t *png, size_t len, uint8_t **rgba, uint32_t *w, uint32_t *h,
                     char *err, size_t cap)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	*rgba = NULL;
	if (len < 8 || memcmp(png, sig, 8))
		return snprintf(err, cap, "not a PNG file"), -1;
	size_t pos = 8, idat_len = 0, idat_cap = 0;
	uint8_t *idat = NULL, plte[256 * 4];
	unsigned npal = 0, depth = 0, ctype = 0;
	int have_hdr = 0, have_end = 0;
	memset(plte, 255, sizeof(plte));
	while (!have_end) {
		if (len - pos < 12)
			goto trunc;
		uint32_t cl = be32(png + pos);
		const uint8_t *type = png + pos + 4, *data = png + pos + 8;
		if (cl > len - pos - 12)
			goto trunc;
		uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), type, cl + 4);
		if (crc != be32(data + cl)) {
			free(idat);
			return snprintf(err, cap, "CRC mismatch in chunk %.4s", (const char *)type), -1;
		}
		if (!memcmp(type, "IHDR", 4)) {
			if (cl != 13 || have_hdr)
				goto bad;
			*w = be32(data);
			*h = be32(data + 4);
			depth = data[8];
			ctype = data[9];
			if (*w == 0 || *h == 0 || *w > PNG_MAX_SIDE || *h > PNG_MAX_SIDE || depth != 8 ||
			    !(ctype == 0 || ctype == 2 || ctype == 3 || ctype == 4 || ctype == 6) ||
			    data[10] || data[11] || data[12]) {
				free(idat);
				return snprintf(err, cap, "unsupported PNG (%ux%u, depth %u, colour type %u, "
				                "interlace %u)", *w, *h, depth, ctype, data[12]), -1;
			}
			have_hdr = 1;
		} else if (!have_hdr) {
			goto bad;
		} else if (!memcmp(type, "PLTE", 4)) {
			if (cl % 3 || cl / 3 > 256)
				goto bad;
			npal = cl / 3;
			for (unsigned i = 0; i < npal; i++)
				memcpy(plte + 4 * i, data + 3 * i, 3);
		} else if (!memcmp(type, "tRNS", 4)) {
			if (ctype == 3)
				for (unsigned i = 0; i < cl && i < 256; i++)
					plte[4 * i + 3] = data[i];
		} else if (!memcmp(type, "IDAT", 4)) {
			if (idat_len + cl > idat_cap) {
				idat_cap = 2 * (idat_len + cl);
				uint8_t *p = realloc(idat, idat_cap);
				if (!p) {
					free(idat);
					return snprintf(err, cap, "out of memory"), -1;
				}
				idat = p;
			}
			memcpy(idat + idat_len, data, cl);
			idat_len += cl;
		} else if (!memcmp(type, "IEND", 4)) {
			have_end = 1;
		} else if (!(type[0] & 0x20)) {
			free(idat);
			return snprintf(err, cap, "unknown critical chunk %.4s", (const char *)type), -1;
		}
		pos += 12 + (size_t)cl;
	}
	if (!idat || (ctype == 3 && !npal))
		goto bad;
	unsigned chans = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 3 ? 1 : ctype == 4 ? 2 : 4;
	size_t rawlen = ((size_t)*w * chans + 1) * *h;
	uint8_t *raw = malloc(rawlen);
	if (!raw) {
		free(idat);
		return snprintf(err, cap, "out of memory"), -1;
	}
	uLongf got = (uLongf)rawlen;
	int zr = uncompress(raw, &got, idat, (uLong)idat_len);
	free(idat);
	if (zr != Z_OK || got != rawlen) {
		free(raw);
		return snprintf(err, cap, "bad image data (zlib %d)", zr), -1;
	}
	if (unfilter(raw, *w, *h, chans, err, cap)) {
		free(raw);
		return -1;
	}
	uint8_t *out = malloc((size_t)*w * *h * 4);
	if (!out) {
		free(raw);
		return snprintf(err, cap, "out of memory"), -1;
	}
	for (uint32_t y = 0; y < *h; y++) {
		const uint8_t *px = raw + y * ((size_t)*w * chans + 1) + 1;
		for (uint32_t x = 0; x < *w; x++) {
			uint8_t *o = out + 4 * ((size_t)y * *w + x);
			const uint8_t *s = px + (size_t)x * chans;
			switch (ctype) {
			case 0: o[0] = o[1] = o[2] = s[0]; o[3] = 255; break;
			case 2: memcpy(o, s, 3); o[3] = 255; break;
			case 3:
				if (s[0] >= npal) {
					free(raw);
					free(out);
					return snprintf(err, cap, "palette index out of range"), -1;
				}
				memcpy(o, plte + 4 * s[0], 4);
				break;
			case 4: o[0] = o[1] = o[2] = s[0]; o[3] = s[1]; break;
			default: memcpy(o, s, 4); break;
			}
		}
	}
	free(raw);
	*rgba = out;
	return 0;
trunc:
	free(idat);
	return snprintf(err, cap, "truncated PNG"), -1;
bad:
	free(idat);
	return snprintf(err, cap, "malformed PNG (chunk order or size)"), -1;
}
