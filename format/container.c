/* Pieces of the container layout shared by the reader and the writer. */
#include "container.h"


const uint8_t alcm_signature[ALCM_SIGNATURE_LEN] = {0x89, 'A', 'L', 'C', 'M',
                                                    0x0d, 0x0a, 0x1a, 0x0a};

static const char known_types[][4] = {
	{'M', 'E', 'T', 'A'}, {'T', 'D', 'I', 'R'}, {'L', 'D', 'A', 'T'}, {'Q', 'D', 'A', 'T'},
	{'S', 'C', 'A', 'L'}, {'M', 'A', 'S', 'K'}, {'P', 'R', 'E', 'D'},
	{'S', 'I', 'G', 'N'}, {'F', 'R', 'A', 'M'}, {'A', 'T', 'T', 'R'}, {'P', 'T', 'B', 'L'},
	/* 1.1, checkpoint series (spec 6.12) */
	{'D', 'L', 'T', 'A'}, {'S', 'E', 'R', 'I'}, {'O', 'P', 'T', 'S'},
	/* 1.1, the compressed tensor directory (spec 6.3.1) */
	{'T', 'D', 'R', 'Z'},
};

int alcm_section_type_known(const char type[4])
{
	for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++)
		if (memcmp(type, known_types[i], 4) == 0)
			return 1;
	return 0;
}

int alcm_section_type_valid(const char type[4])
{
	for (int i = 0; i < 4; i++)
		if ((unsigned char)type[i] <= 0x20 || (unsigned char)type[i] >= 0x7f)
			return 0;
	return 1;
}

void alcm_digest(uint8_t out[ALCM_DIGEST_LEN], const void *buf, size_t len)
{
	alcm_blake2b s;
	alcm_blake2b_init(&s, ALCM_DIGEST_LEN);
	alcm_blake2b_update(&s, buf, len);
	alcm_blake2b_final(&s, out);
}

void alcm_header_fixed_build(uint8_t out[ALCM_FIXED_SIZE], uint32_t flags, unsigned minor)
{
	memset(out, 0, ALCM_FIXED_SIZE);
	memcpy(out, alcm_signature, ALCM_SIGNATURE_LEN);
	out[9] = ALCM_FORMAT_MAJOR;
	alcm_store16(out + 10, (uint16_t)minor);
	alcm_store32(out + 12, flags);
	alcm_store32(out + 16, ALCM_HEADER_SIZE);
	out[20] = ALCM_ALIGN_LOG2;
	alcm_digest(out + 32, out, 32);
}

void alcm_slot_build(uint8_t out[ALCM_SLOT_SIZE], const uint8_t fixed[ALCM_FIXED_SIZE],
                     uint64_t generation, uint64_t table_offset, uint64_t table_size)
{
	uint8_t buf[ALCM_FIXED_SIZE + 32];
	memset(out, 0, ALCM_SLOT_SIZE);
	alcm_store64(out, generation);
	alcm_store64(out + 8, table_offset);
	alcm_store64(out + 16, table_size);
	memcpy(buf, fixed, ALCM_FIXED_SIZE);
	memcpy(buf + ALCM_FIXED_SIZE, out, 32);
	alcm_digest(out + 32, buf, sizeof(buf));
}

int alcm_table_build(const alcm_allocator *a, const alcm_entry *e, uint32_t count,
                     uint8_t **out, size_t *len)
{
	size_t n = (size_t)alcm_table_size(count);
	uint8_t *t = alcm_mem_calloc(a, 1, n);
	if (!t)
		return ALCM_E_NOMEM;
	memcpy(t, ALCM_TABLE_MAGIC, 4);
	alcm_store32(t + 4, count);
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *p = t + ALCM_TABLE_HEAD + (size_t)i * ALCM_TABLE_ENTRY;
		memcpy(p, e[i].type, 4);
		alcm_store32(p + 4, e[i].flags);
		alcm_store32(p + 8, e[i].tag);
		alcm_store64(p + 16, e[i].offset);
		alcm_store64(p + 24, e[i].length);
		memcpy(p + 32, e[i].digest, ALCM_DIGEST_LEN);
	}
	alcm_digest(t + n - ALCM_DIGEST_LEN, t, n - ALCM_DIGEST_LEN);
	*out = t;
	*len = n;
	return ALCM_OK;
}
