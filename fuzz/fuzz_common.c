/* Helpers shared by the fuzz harnesses; see fuzz_common.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fuzz_common.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Layout of the container, spec/alcm-format.md sections 3-5 (written out again here on
 * purpose: the harness must not share the reader's idea of the layout). */
#define HDR_SIZE 192u
#define FIXED 64u
#define SLOT_A 64u
#define SLOT_B 128u
#define TABLE_HEAD 16u
#define ENTRY 64u
#define DIGEST 32u

int fuzz_split(const uint8_t **data, size_t *size, uint8_t *opt)
{
	if (*size == 0)
		return 0;
	*opt = (*data)[*size - 1];
	(*size)--;
	return 1;
}

void fuzz_limits_tight(alcm_limits *lim)
{
	alcm_limits_default(lim);
	lim->max_sections = 1024;
	lim->max_section_bytes = (uint64_t)16 << 20;
	lim->max_meta_bytes = (uint64_t)1 << 20;
	lim->max_tensors = 1024;
	lim->max_name_bytes = 4096;
	lim->max_elements = (uint64_t)4 << 20;
	lim->max_decoded_bytes = (uint64_t)16 << 20;
	lim->zstd_window_log_max = 20;
	lim->max_chain = 16;
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static void blake(uint8_t *out, const uint8_t *in, size_t n)
{
	crypto_generichash(out, DIGEST, in, n, NULL, 0);
}

/* Fixes the section digests of a table at [off, off+size) and then its own digest. */
static void fix_table(uint8_t *buf, size_t len, uint64_t off, uint64_t size)
{
	if (off < HDR_SIZE || size < TABLE_HEAD + DIGEST || off > len || size > len - off)
		return;
	uint8_t *t = buf + off;
	uint64_t count = (size - TABLE_HEAD - DIGEST) / ENTRY;
	uint32_t declared = ld32(t + 4);
	if (declared < count)
		count = declared;
	for (uint64_t i = 0; i < count; i++) {
		uint8_t *e = t + TABLE_HEAD + i * ENTRY;
		uint64_t so = ld64(e + 16), sl = ld64(e + 24);
		if (so <= len && sl <= len - so)
			blake(e + 32, buf + so, (size_t)sl);
	}
	blake(t + size - DIGEST, t, (size_t)(size - DIGEST));
}

void fuzz_fixup_digests(uint8_t *buf, size_t len)
{
	if (len < HDR_SIZE)
		return;
	/* Tables first (their digests are not covered by the slots), then the header. */
	for (unsigned s = SLOT_A; s <= SLOT_B; s += SLOT_B - SLOT_A)
		fix_table(buf, len, ld64(buf + s + 8), ld64(buf + s + 16));
	blake(buf + 32, buf, 32);
	for (unsigned s = SLOT_A; s <= SLOT_B; s += SLOT_B - SLOT_A) {
		int zero = 1;
		for (unsigned i = 0; i < 64; i++)
			zero &= buf[s + i] == 0;
		if (zero)
			continue; /* an empty slot must stay all zero */
		uint8_t tmp[FIXED + 32];
		memcpy(tmp, buf, FIXED);
		memcpy(tmp + FIXED, buf + s, 32);
		blake(buf + s + 32, tmp, sizeof(tmp));
	}
}

uint8_t *fuzz_dup(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);
	if (p && size)
		memcpy(p, data, size);
	return p;
}

uint64_t fuzz_touch(const void *p, size_t n)
{
	const volatile uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

int fuzz_memfd(const uint8_t *buf, size_t len, char *path)
{
	int fd = memfd_create("alcm-fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

void fuzz_fail(const char *surface, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "fuzz: %s: ", surface);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}
