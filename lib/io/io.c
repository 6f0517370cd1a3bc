/* Tensor file formats: detection, the alcm_input and alcm_output objects, shared helpers. */
#include "alloc_internal.h"
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int alcm_detect_format(const void *head, size_t len)
{
	const uint8_t *h = head;
	if (!h)
		return ALCM_FILE_UNKNOWN;
	if (len >= 8 && memcmp(h, "\x89" "ALCM\r\n\x1a", 8) == 0)
		return ALCM_FILE_ALCM;
	if (len >= 8 && memcmp(h, "\x89" "HDF\r\n\x1a\n", 8) == 0)
		return ALCM_FILE_HDF5;
	if (len >= 6 && memcmp(h, "\x93" "NUMPY", 6) == 0)
		return ALCM_FILE_NPY;
	if (len >= 4 && (memcmp(h, "PK\x03\x04", 4) == 0 || memcmp(h, "PK\x05\x06", 4) == 0))
		return ALCM_FILE_NPZ; /* alcm_input_open() tells a torch.save zip apart (ALCM_FILE_PT) */
	/* torch.save's legacy format (torch < 1.6): pickle protocol 2, then its magic number. */
	if (len >= 4 && memcmp(h, "\x80\x02\x8a\x0a", 4) == 0)
		return ALCM_FILE_PT;
	/* safetensors has no magic: a u64 header length, then the JSON object. The length is
	 * not judged here so that a forged one is reported by the reader, not as "unknown". */
	if (len >= 9 && h[8] == '{')
		return ALCM_FILE_SAFETENSORS;
	if (len >= 1 && h[0] == '{')
		return ALCM_FILE_SHARDS; /* a JSON object: the index of a sharded checkpoint */
	return ALCM_FILE_UNKNOWN;
}

int alcm_format_from_extension(const char *path)
{
	static const struct {
		const char *ext;
		int format;
	} exts[] = {
		{"npy", ALCM_FILE_NPY},   {"npz", ALCM_FILE_NPZ},   {"safetensors", ALCM_FILE_SAFETENSORS},
		{"h5", ALCM_FILE_HDF5},   {"hdf5", ALCM_FILE_HDF5}, {"alcm", ALCM_FILE_ALCM},
		{"pt", ALCM_FILE_PT},     {"pth", ALCM_FILE_PT},    {"bin", ALCM_FILE_PT},
		{"json", ALCM_FILE_SHARDS},
	};
	if (!path)
		return ALCM_FILE_UNKNOWN;
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	const char *dot = strrchr(base, '.');
	if (!dot || dot == base)
		return ALCM_FILE_UNKNOWN;
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
		if (strcasecmp(dot + 1, exts[i].ext) == 0)
			return exts[i].format;
	return ALCM_FILE_UNKNOWN;
}

const char *alcm_format_name(int format)
{
	switch (format) {
	case ALCM_FILE_ALCM: return "alcm";
	case ALCM_FILE_NPY: return "npy";
	case ALCM_FILE_NPZ: return "npz";
	case ALCM_FILE_SAFETENSORS: return "safetensors";
	case ALCM_FILE_HDF5: return "hdf5";
	case ALCM_FILE_PT: return "pt";
	case ALCM_FILE_SHARDS: return "shards";
	default: return "unknown";
	}
}

/* ---- shared helpers ---- */

int alcm_io_fail(alcm_input *in, int status, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_detail_set(in->detail, "%s: %s", in->label ? in->label : "<input>", msg);
	return status;
}

int alcm_io_read(alcm_input *in, void *dst, size_t n, uint64_t off)
{
	uint64_t end;
	if (alcm_add_u64(off, n, &end) || end > in->size)
		return alcm_io_fail(in, ALCM_E_CORRUPT,
		                    "unexpected end of file: %zu bytes needed at offset %llu, "
		                    "the file has %llu", n, (unsigned long long)off,
		                    (unsigned long long)in->size);
	if (n == 0)
		return ALCM_OK;
	if (in->mem) {
		memcpy(dst, in->mem + off, n);
		return ALCM_OK;
	}
	int e = alcm_pread_all(in->fd, dst, n, off);
	if (e == -1)
		return alcm_io_fail(in, ALCM_E_IO, "file shrank while reading at offset %llu",
		                    (unsigned long long)off);
	if (e)
		return alcm_io_fail(in, ALCM_E_IO, "read error at offset %llu: %s",
		                    (unsigned long long)off, strerror(e));
	return ALCM_OK;
}

int alcm_io_reserve(alcm_input *in, uint64_t n)
{
	if (in->buf && n <= in->buf_cap)
		return ALCM_OK;
	if (n > SIZE_MAX)
		return alcm_io_fail(in, ALCM_E_LIMIT, "%llu bytes do not fit in memory",
		                    (unsigned long long)n);
	/* free + alloc rather than realloc: the old contents are not needed. Whole huge pages from
	 * 256 KiB (alcm_mem_alloc_whole): faceapi (313 tensors up to 2.4 MB) packed with --ratio
	 * 12, 6260 -> 3900 minor faults; one --max-error pack 4250 -> 4000. */
	alcm_mem_free(&in->alloc, in->buf);
	in->buf = alcm_mem_alloc_whole(&in->alloc, (size_t)n, &in->buf_cap);
	if (!in->buf)
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory for %llu bytes of tensor data",
		                    (unsigned long long)n);
	return ALCM_OK;
}

const char *alcm_io_quote(char *q, const char *s, size_t len)
{
	alcm_detail_quote(q, ALCM_IO_QUOTE, s ? s : "", s ? len : 0);
	return q;
}

int alcm_io_shape_bytes(const alcm_limits *lim, int dtype, uint32_t ndim, const uint64_t *shape,
                        uint64_t *nbytes, char *why)
{
	uint64_t el, nb;
	if (alcm_shape_elements(shape, ndim, &el) != ALCM_OK) {
		alcm_detail_set(why, "the shape's element count overflows 64 bits");
		return ALCM_E_LIMIT;
	}
	if (el > lim->max_elements) {
		alcm_detail_set(why, "%llu elements exceed the limit of %llu", (unsigned long long)el,
		                (unsigned long long)lim->max_elements);
		return ALCM_E_LIMIT;
	}
	if (alcm_mul_u64(el, alcm_dtype_size(dtype), &nb)) {
		alcm_detail_set(why, "the tensor's byte size overflows 64 bits");
		return ALCM_E_LIMIT;
	}
	if (nb > lim->max_decoded_bytes || nb > SIZE_MAX) {
		alcm_detail_set(why, "%llu bytes exceed the limit of %llu", (unsigned long long)nb,
		                (unsigned long long)lim->max_decoded_bytes);
		return ALCM_E_LIMIT;
	}
	*nbytes = nb;
	return ALCM_OK;
}

int alcm_io_utf8_valid(const uint8_t *s, size_t n, size_t *bad)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t k;
		uint32_t cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1, cp = c & 0x1fu, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0fu, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, cp = c & 0x07u, min = 0x10000;
		} else {
			goto bad_byte;
		}
		if (n - i <= k)
			goto bad_byte;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				goto bad_byte;
			cp = (cp << 6) | (s[i + j] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			goto bad_byte;
		i += k + 1;
	}
	return 1;
bad_byte:
	if (bad)
		*bad = i;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	const alcm_io_name_ref *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n ? memcmp(x->p, y->p, n) : 0;
	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

size_t alcm_io_names_dup(alcm_io_name_ref *refs, size_t n)
{
	if (n < 2)
		return SIZE_MAX;
	qsort(refs, n, sizeof(*refs), name_cmp);
	for (size_t i = 1; i < n; i++)
		if (refs[i].len == refs[i - 1].len &&
		    (refs[i].len == 0 || memcmp(refs[i].p, refs[i - 1].p, refs[i].len) == 0))
			return i;
	return SIZE_MAX;
}

void alcm_io_sb_put(alcm_io_sb *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (n > SIZE_MAX - b->len) {
		b->oom = 1;
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
		uint8_t *p = alcm_mem_realloc(b->a, b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

void alcm_io_sb_str(alcm_io_sb *b, const char *s)
{
	alcm_io_sb_put(b, s, strlen(s));
}

void alcm_io_sb_u64(alcm_io_sb *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	alcm_io_sb_put(b, tmp, (size_t)n);
}

void alcm_io_sb_free(alcm_io_sb *b)
{
	alcm_mem_free(b->a, b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- alcm_input ---- */

static char *dup_bytes(const alcm_allocator *a, const char *s, size_t n)
{
	char *d = alcm_mem_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* The base name without its last extension: "dir/w.npy" -> "w". */
static char *base_name(const alcm_allocator *a, const char *path)
{
	if (!path)
		return dup_bytes(a, "tensor", 6);
	const char *slash = strrchr(path, '/');
	const char *b = slash ? slash + 1 : path;
	const char *dot = strrchr(b, '.');
	size_t n = (dot && dot != b) ? (size_t)(dot - b) : strlen(b);
	if (n == 0)
		return dup_bytes(a, "tensor", 6);
	return dup_bytes(a, b, n);
}

static int input_new(alcm_input **out, const char *label, const char *base_of,
                     const alcm_limits *lim, const alcm_allocator *alloc)
{
	alcm_input *in = alcm_mem_alloc(alloc, sizeof(*in));
	*out = in;
	if (!in)
		return ALCM_E_NOMEM;
	memset(in, 0, sizeof(*in));
	alcm_alloc_copy(&in->alloc, alloc);
	in->fd = -1;
	if (lim)
		in->lim = *lim;
	else
		alcm_limits_default(&in->lim);
	if (in->lim.max_ndim > ALCM_MAX_NDIM)
		in->lim.max_ndim = ALCM_MAX_NDIM;
	in->label = dup_bytes(&in->alloc, label, strlen(label));
	in->base = base_name(&in->alloc, base_of);
	if (!in->label || !in->base) {
		in->poisoned = 1;
		return alcm_io_fail(in, ALCM_E_NOMEM, "out of memory");
	}
	return ALCM_OK;
}

static int input_start(alcm_input *in, int format)
{
	uint8_t head[16];
	size_t n = in->size < sizeof(head) ? (size_t)in->size : sizeof(head);
	int rc = alcm_io_read(in, head, n, 0);
	if (rc)
		goto out;
	int detected = format == ALCM_FILE_UNKNOWN;
	if (detected)
		format = alcm_detect_format(head, n);
	int is_pt = 0;
	if (detected && format == ALCM_FILE_NPZ && (rc = alcm_io_pt_sniff(in, &is_pt)))
		goto out;
	if (is_pt)
		format = ALCM_FILE_PT;
	in->format = format;
	switch (format) {
	case ALCM_FILE_NPY: rc = alcm_io_npy_open(in); break;
	case ALCM_FILE_NPZ: rc = alcm_io_npz_open(in); break;
	case ALCM_FILE_SAFETENSORS: rc = alcm_io_st_open(in); break;
	case ALCM_FILE_PT: rc = alcm_io_pt_open(in); break;
	case ALCM_FILE_SHARDS: rc = alcm_io_shards_open(in, in->fd >= 0 ? in->label : NULL); break;
	case ALCM_FILE_HDF5:
		rc = alcm_io_fail(in, ALCM_E_UNSUPPORTED,
		                  "an HDF5 file: the HDF5 bridge (alcm_hdf5.h) reads it, not alcm_input");
		break;
	case ALCM_FILE_ALCM:
		rc = alcm_io_fail(in, ALCM_E_UNSUPPORTED,
		                  "an .alcm archive, not a tensor file: open it with alcm_reader_open_file()");
		break;
	default:
		if (format != ALCM_FILE_UNKNOWN)
			rc = alcm_io_fail(in, ALCM_E_ARG, "unknown format %d", format);
		else
			rc = alcm_io_fail(in, ALCM_E_UNSUPPORTED,
			                  "unrecognized format at offset 0 (%llu bytes; not .npy, .npz, "
			                  ".safetensors, a torch.save file or a shard index)",
			                  (unsigned long long)in->size);
		break;
	}
out:
	if (rc)
		in->poisoned = 1;
	return rc;
}

int alcm_input_open(alcm_input **out, const char *path, const alcm_limits *lim,
                    const alcm_allocator *alloc)
{
	if (!out)
		return ALCM_E_ARG;
	*out = NULL;
	if (!path)
		return ALCM_E_ARG;
	int rc = input_new(out, path, path, lim, alloc);
	if (rc)
		return rc;
	alcm_input *in = *out;
	in->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0) {
		in->poisoned = 1;
		return alcm_io_fail(in, ALCM_E_IO, "cannot open: %s", strerror(errno));
	}
	struct stat st;
	if (fstat(in->fd, &st) != 0) {
		in->poisoned = 1;
		return alcm_io_fail(in, ALCM_E_IO, "cannot stat: %s", strerror(errno));
	}
	if (S_ISDIR(st.st_mode)) { /* a sharded checkpoint's directory */
		in->format = ALCM_FILE_SHARDS;
		rc = alcm_io_shards_open(in, path);
		if (rc)
			in->poisoned = 1;
		return rc;
	}
	in->size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
	return input_start(in, ALCM_FILE_UNKNOWN);
}

int alcm_input_open_memory(alcm_input **out, const void *buf, size_t len, int format,
                           const char *display_name, const alcm_limits *lim,
                           const alcm_allocator *alloc)
{
	if (!out)
		return ALCM_E_ARG;
	*out = NULL;
	if (!buf && len)
		return ALCM_E_ARG;
	int rc = input_new(out, display_name ? display_name : "<memory>", display_name, lim, alloc);
	if (rc)
		return rc;
	alcm_input *in = *out;
	in->mem = buf ? buf : (const uint8_t *)"";
	in->size = len;
	return input_start(in, format);
}

int alcm_input_format(const alcm_input *in)
{
	return in ? in->format : ALCM_FILE_UNKNOWN;
}

uint64_t alcm_input_size(const alcm_input *in)
{
	return in ? in->size : 0;
}

/* The checks and resets that start alcm_input_next() and alcm_input_next_begin(). */
static int next_start(alcm_input *in, alcm_tensor *t, int *has)
{
	if (has)
		*has = 0;
	if (!in || !t || !has)
		return ALCM_E_ARG;
	if (in->poisoned || !in->ops || in->piece_left)
		return ALCM_E_STATE;
	memset(t, 0, sizeof(*t));
	in->piece = 0;
	return ALCM_OK;
}

int alcm_input_next(alcm_input *in, alcm_tensor *t, int *has)
{
	int rc = next_start(in, t, has);
	if (rc)
		return rc;
	if (in->keep_prev) {
		uint8_t *b = in->buf;
		size_t c = in->buf_cap;
		in->buf = in->prev;
		in->buf_cap = in->prev_cap;
		in->prev = b;
		in->prev_cap = c;
	}
	rc = in->ops->next(in, t, has);
	if (rc) {
		in->poisoned = 1;
		*has = 0;
		memset(t, 0, sizeof(*t));
	}
	return rc;
}

int alcm_input_next_begin(alcm_input *in, alcm_tensor *t, int *has)
{
	int rc = next_start(in, t, has);
	if (rc)
		return rc;
	in->piece_at = 0;
	rc = in->ops->begin ? in->ops->begin(in, t, has) : in->ops->next(in, t, has);
	if (rc) {
		in->poisoned = 1;
		*has = 0;
		memset(t, 0, sizeof(*t));
		return rc;
	}
	if (*has && t->nbytes) {
		in->piece = t->data ? 2 : 1;
		in->piece_src = t->data;
		in->piece_left = t->nbytes;
	}
	t->data = NULL;
	return ALCM_OK;
}

int alcm_input_piece(alcm_input *in, const void **data, size_t *len)
{
	if (data)
		*data = NULL;
	if (len)
		*len = 0;
	if (!in || !data || !len)
		return ALCM_E_ARG;
	if (in->poisoned)
		return ALCM_E_STATE;
	if (!in->piece_left)
		return ALCM_OK;
	size_t n = in->piece_left < ALCM_IO_PIECE ? (size_t)in->piece_left : ALCM_IO_PIECE;
	if (in->piece == 2) {
		*data = in->piece_src + in->piece_at;
	} else {
		int rc = alcm_io_reserve(in, ALCM_IO_PIECE);
		if (!rc)
			rc = in->ops->piece(in, in->buf, in->piece_at, n, n == in->piece_left);
		if (rc) {
			in->poisoned = 1;
			in->piece_left = 0;
			return rc;
		}
		*data = in->buf;
	}
	*len = n;
	in->piece_at += n;
	in->piece_left -= n;
	return ALCM_OK;
}

int alcm_input_keep_previous(alcm_input *in)
{
	if (!in)
		return ALCM_E_ARG;
	/* These readers read each tensor whole into the buffer; the others may keep a storage
	 * in it from one tensor to the next (.pt) or hand out the data of an inner reader. */
	if (in->format != ALCM_FILE_NPY && in->format != ALCM_FILE_NPZ &&
	    in->format != ALCM_FILE_SAFETENSORS)
		return ALCM_E_UNSUPPORTED;
	in->keep_prev = 1;
	return ALCM_OK;
}

void alcm_input_free(alcm_input *in)
{
	if (!in)
		return;
	if (in->ops && in->ops->free)
		in->ops->free(in);
	if (in->fd >= 0)
		close(in->fd);
	alcm_mem_free(&in->alloc, in->buf);
	alcm_mem_free(&in->alloc, in->prev);
	alcm_io_meta_free(&in->alloc, &in->meta);
	alcm_mem_free(&in->alloc, in->label);
	alcm_mem_free(&in->alloc, in->base);
	alcm_allocator a = in->alloc;
	alcm_mem_free(&a, in);
}

const char *alcm_input_detail(const alcm_input *in)
{
	return in ? in->detail : "";
}

size_t alcm_input_meta_count(const alcm_input *in)
{
	return in ? in->meta.n : 0;
}

int alcm_input_meta(const alcm_input *in, size_t i, const char **key, const uint8_t **value,
                    size_t *value_len)
{
	if (!in || i >= in->meta.n || !key || !value || !value_len)
		return ALCM_E_ARG;
	*key = in->meta.m[i].key;
	*value = in->meta.m[i].val;
	*value_len = in->meta.m[i].len;
	return ALCM_OK;
}

/* ---- alcm_output ---- */

int alcm_io_out_fail(alcm_output *o, int status, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	alcm_detail_set(o->detail, "%s: %s", o->file.path ? o->file.path : "<output>", msg);
	return status;
}

int alcm_io_out_write(alcm_output *o, const void *buf, size_t len)
{
	int rc = alcm_atomic_write(&o->file, buf, len, o->detail);
	if (rc == ALCM_OK)
		o->pos += len;
	return rc;
}

int alcm_io_out_pwrite(alcm_output *o, const void *buf, size_t len, uint64_t off)
{
	return alcm_atomic_pwrite(&o->file, buf, len, off, o->detail);
}

int alcm_output_open(alcm_output **out, const char *path, int format, unsigned flags,
                     const alcm_allocator *alloc)
{
	if (!out)
		return ALCM_E_ARG;
	alcm_output *o = alcm_mem_alloc(alloc, sizeof(*o));
	*out = o;
	if (!o)
		return ALCM_E_NOMEM;
	memset(o, 0, sizeof(*o));
	alcm_alloc_copy(&o->alloc, alloc);
	o->file.fd = -1;
	o->format = format;
	o->flags = flags;
	o->poisoned = 1;
	if (!path || !*path) {
		alcm_detail_set(o->detail, "empty output path");
		return ALCM_E_ARG;
	}
	switch (format) {
	case ALCM_FILE_NPY:
	case ALCM_FILE_NPZ:
	case ALCM_FILE_SAFETENSORS:
	case ALCM_FILE_PT: break;
	case ALCM_FILE_SHARDS: {
		int rc = alcm_io_shards_out(o, path);
		if (rc == ALCM_OK)
			o->poisoned = 0;
		return rc;
	}
	case ALCM_FILE_HDF5:
		alcm_detail_set(o->detail, "%s: HDF5 output goes through the HDF5 bridge (alcm_hdf5.h)",
		                path);
		return ALCM_E_UNSUPPORTED;
	case ALCM_FILE_ALCM:
		alcm_detail_set(o->detail, "%s: .alcm archives are written with alcm_writer", path);
		return ALCM_E_UNSUPPORTED;
	default:
		alcm_detail_set(o->detail, "%s: unknown output format %d (use .npy, .npz, "
		                ".safetensors or .pt)", path, format);
		return ALCM_E_ARG;
	}
	int rc = alcm_atomic_open(&o->file, path, (flags & ALCM_WRITE_OVERWRITE) != 0,
	                          (flags & ALCM_WRITE_NO_SYNC) == 0, &o->alloc, o->detail);
	if (rc)
		return rc;
	o->file_open = 1;
	if (format == ALCM_FILE_NPY)
		rc = alcm_io_npy_out(o);
	else if (format == ALCM_FILE_NPZ)
		rc = alcm_io_npz_out(o);
	else if (format == ALCM_FILE_PT)
		rc = alcm_io_pt_out(o);
	else
		rc = alcm_io_st_out(o);
	if (rc)
		return rc;
	o->poisoned = 0;
	return ALCM_OK;
}

int alcm_name_safe(const char *name, size_t len, const char **why)
{
	const char *w = NULL;
	const uint8_t *s = (const uint8_t *)name;
	if (!s && len)
		w = "a NULL name";
	for (size_t i = 0; !w && i < len; i++)
		if (s[i] == 0)
			w = "a NUL byte"; /* C string APIs would cut the path there */
		else if (s[i] == '\\')
			w = "a backslash"; /* a separator on Windows */
	if (!w && len && s[0] == '/')
		w = "an absolute path";
	if (!w && len >= 2 && ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z') && s[1] == ':' &&
	    (len == 2 || s[2] == '/'))
		w = "a drive letter";
	for (size_t i = 0, start = 0; !w && len && i <= len; i++) {
		if (i < len && s[i] != '/')
			continue;
		size_t l = i - start;
		if (l == 0)
			w = "an empty path component";
		else if (l <= 2 && memcmp(s + start, "..", l) == 0)
			w = l == 1 ? "a '.' component" : "a '..' component";
		start = i + 1;
	}
	if (why)
		*why = w;
	return w == NULL;
}

static int check_tensor(alcm_output *o, const alcm_tensor *t, int need_data)
{
	char q[ALCM_IO_QUOTE];
	uint64_t el, nb;
	if (!t->name && t->name_len)
		return alcm_io_out_fail(o, ALCM_E_ARG, "tensor name is NULL with name_len %zu",
		                        t->name_len);
	alcm_io_quote(q, t->name, t->name_len);
	size_t size = alcm_dtype_size(t->dtype);
	if (!size)
		return alcm_io_out_fail(o, ALCM_E_ARG, "tensor '%s': unknown dtype %d", q, t->dtype);
	if (t->ndim > ALCM_MAX_NDIM)
		return alcm_io_out_fail(o, ALCM_E_ARG, "tensor '%s': rank %u exceeds %d", q,
		                        (unsigned)t->ndim, ALCM_MAX_NDIM);
	if (alcm_shape_elements(t->shape, t->ndim, &el) || alcm_mul_u64(el, size, &nb) ||
	    nb > SIZE_MAX)
		return alcm_io_out_fail(o, ALCM_E_ARG, "tensor '%s': shape too large", q);
	if (nb != t->nbytes)
		return alcm_io_out_fail(o, ALCM_E_ARG,
		                        "tensor '%s': nbytes %llu, but shape and dtype give %llu", q,
		                        (unsigned long long)t->nbytes, (unsigned long long)nb);
	if (need_data && nb && !t->data)
		return alcm_io_out_fail(o, ALCM_E_ARG, "tensor '%s': data is NULL", q);
	const char *why;
	if (o->format == ALCM_FILE_NPZ && !(o->flags & ALCM_WRITE_UNSAFE_NAMES) &&
	    !alcm_name_safe(t->name, t->name_len, &why))
		return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED, "tensor '%s': its name is not a safe "
		                        "member path (%s): a zip extractor could write it outside its "
		                        "directory", q, why);
	if (o->format == ALCM_FILE_SAFETENSORS && t->name_len == 12 &&
	    memcmp(t->name, "__metadata__", 12) == 0)
		return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED, "tensor '__metadata__': the name of a "
		                        ".safetensors header's metadata entry, not a tensor");
	return ALCM_OK;
}

static void free_plan(alcm_output *o)
{
	alcm_io_out_aliases_free(o);
	for (size_t i = 0; i < o->plan_count; i++)
		alcm_mem_free(&o->alloc, o->plan[i].name);
	alcm_mem_free(&o->alloc, o->plan);
	o->plan = NULL;
	o->plan_count = 0;
	o->has_plan = 0;
}

int alcm_output_plan(alcm_output *o, const alcm_tensor *tensors, size_t count)
{
	if (!o || (!tensors && count))
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	if (o->has_plan || o->written)
		return alcm_io_out_fail(o, ALCM_E_STATE, "a plan must come once, before any write");
	int ra = alcm_io_out_aliases_plan(o, tensors, count, &tensors, &count);
	if (ra)
		return ra;
	for (size_t i = 0; i < count; i++) {
		int rc = check_tensor(o, &tensors[i], 0);
		if (rc)
			return rc;
	}
	o->plan = alcm_mem_calloc(&o->alloc, count ? count : 1, sizeof(*o->plan));
	if (!o->plan)
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	for (size_t i = 0; i < count; i++) {
		const alcm_tensor *t = &tensors[i];
		alcm_io_entry *e = &o->plan[i];
		e->name = dup_bytes(&o->alloc, t->name ? t->name : "", t->name_len);
		if (!e->name) {
			o->plan_count = i;
			free_plan(o);
			return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
		}
		e->name_len = t->name_len;
		e->dtype = t->dtype;
		e->ndim = t->ndim;
		memcpy(e->shape, t->shape, sizeof(e->shape[0]) * t->ndim);
		e->nbytes = t->nbytes;
	}
	o->plan_count = count;
	o->has_plan = 1;
	alcm_io_name_ref *refs = alcm_mem_calloc(&o->alloc, count ? count : 1, sizeof(*refs));
	if (!refs) {
		free_plan(o);
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < count; i++)
		refs[i] = (alcm_io_name_ref){(const uint8_t *)o->plan[i].name, o->plan[i].name_len, i};
	size_t d = alcm_io_names_dup(refs, count);
	size_t dup_idx = d != SIZE_MAX ? refs[d].idx : 0;
	alcm_mem_free(&o->alloc, refs);
	if (d != SIZE_MAX) {
		char q[ALCM_IO_QUOTE];
		alcm_io_quote(q, o->plan[dup_idx].name, o->plan[dup_idx].name_len);
		free_plan(o);
		return alcm_io_out_fail(o, ALCM_E_ARG, "tensor name '%s' appears twice in the plan", q);
	}
	int rc = o->ops->plan ? o->ops->plan(o) : ALCM_OK;
	if (rc == ALCM_E_IO || rc == ALCM_E_NOMEM)
		o->poisoned = 1;
	else if (rc)
		free_plan(o);
	return rc;
}

static int same_as_planned(const alcm_io_entry *e, const alcm_tensor *t)
{
	if (e->name_len != t->name_len || e->dtype != t->dtype || e->ndim != t->ndim)
		return 0;
	if (t->name_len && memcmp(e->name, t->name, t->name_len) != 0)
		return 0;
	for (uint32_t i = 0; i < t->ndim; i++)
		if (e->shape[i] != t->shape[i])
			return 0;
	return 1;
}

/* Checks t (with its data when need_data) and that it is the next tensor of the plan. */
static int check_next(alcm_output *o, const alcm_tensor *t, int need_data)
{
	if (o->piece_open)
		return alcm_io_out_fail(o, ALCM_E_STATE, "a tensor written in pieces is not finished: "
		                        "%llu bytes to come", (unsigned long long)o->piece_left);
	int rc = check_tensor(o, t, need_data);
	if (rc)
		return rc;
	if (o->has_plan) {
		char q[ALCM_IO_QUOTE], p[ALCM_IO_QUOTE];
		alcm_io_quote(q, t->name, t->name_len);
		if (o->written >= o->plan_count)
			return alcm_io_out_fail(o, ALCM_E_STATE,
			                        "tensor '%s' is beyond the plan of %zu tensors", q,
			                        o->plan_count);
		const alcm_io_entry *e = &o->plan[o->written];
		if (!same_as_planned(e, t))
			return alcm_io_out_fail(o, ALCM_E_ARG,
			                        "tensor '%s' does not match the plan, which expects "
			                        "'%s' (%s, rank %u) at position %zu", q,
			                        alcm_io_quote(p, e->name, e->name_len),
			                        alcm_dtype_name(e->dtype), (unsigned)e->ndim, o->written);
	}
	return ALCM_OK;
}

int alcm_output_write(alcm_output *o, const alcm_tensor *t)
{
	if (!o || !t)
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	int rc = check_next(o, t, 1);
	if (rc)
		return rc;
	rc = o->ops->write(o, t);
	if (rc == ALCM_OK) {
		o->written++;
		rc = alcm_io_out_aliases_write(o, t);
	}
	if (rc == ALCM_E_IO || rc == ALCM_E_NOMEM)
		o->poisoned = 1;
	return rc;
}

static int piece_end(alcm_output *o)
{
	int rc = o->ops->end ? o->ops->end(o) : ALCM_OK;
	o->piece_open = 0;
	if (rc == ALCM_OK)
		o->written++;
	return rc;
}

int alcm_output_begin(alcm_output *o, const alcm_tensor *t)
{
	if (!o || !t)
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	if (!o->ops->begin || o->aliases)
		return alcm_io_out_fail(o, ALCM_E_UNSUPPORTED, "this output takes whole tensors only%s",
		                        o->aliases ? " (it writes tied tensors as copies)" : "");
	int rc = check_next(o, t, 0);
	if (rc)
		return rc;
	rc = o->ops->begin(o, t);
	if (rc == ALCM_OK) {
		o->piece_open = 1;
		o->piece_left = t->nbytes;
		if (!t->nbytes)
			rc = piece_end(o);
	}
	if (rc == ALCM_E_IO || rc == ALCM_E_NOMEM)
		o->poisoned = 1;
	return rc;
}

int alcm_output_append(alcm_output *o, const void *data, size_t len)
{
	if (!o || (!data && len))
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	if (!o->piece_open || len > o->piece_left)
		return alcm_io_out_fail(o, ALCM_E_STATE, "%zu bytes appended, %llu expected", len,
		                        (unsigned long long)(o->piece_open ? o->piece_left : 0));
	int rc = len ? o->ops->append(o, data, len) : ALCM_OK;
	if (rc == ALCM_OK) {
		o->piece_left -= len;
		if (!o->piece_left)
			rc = piece_end(o);
	}
	if (rc)
		o->poisoned = 1; /* a tensor half written cannot be taken back */
	return rc;
}

int alcm_output_commit(alcm_output *o)
{
	if (!o)
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	if (o->piece_open)
		return alcm_io_out_fail(o, ALCM_E_STATE, "a tensor written in pieces is not finished: "
		                        "%llu bytes to come", (unsigned long long)o->piece_left);
	if (o->has_plan && o->written != o->plan_count)
		return alcm_io_out_fail(o, ALCM_E_STATE, "%zu of %zu planned tensors written",
		                        o->written, o->plan_count);
	int rc = o->ops->commit ? o->ops->commit(o) : ALCM_OK;
	if (rc == ALCM_OK)
		rc = alcm_atomic_commit(&o->file, o->detail);
	if (rc) {
		if (rc != ALCM_E_STATE)
			o->poisoned = 1;
		return rc;
	}
	o->committed = 1;
	o->file_open = 0;
	return ALCM_OK;
}

void alcm_output_free(alcm_output *o)
{
	if (!o)
		return;
	if (o->ops && o->ops->free)
		o->ops->free(o);
	if (o->file_open)
		alcm_atomic_abort(&o->file);
	free_plan(o);
	alcm_io_meta_free(&o->alloc, &o->meta);
	alcm_allocator a = o->alloc;
	alcm_mem_free(&a, o);
}

const char *alcm_output_detail(const alcm_output *o)
{
	return o ? o->detail : "";
}

int alcm_output_set_meta(alcm_output *o, const char *key, const void *value, size_t value_len)
{
	if (!o || !key || (!value && value_len))
		return ALCM_E_ARG;
	if (o->poisoned || o->committed)
		return ALCM_E_STATE;
	if (o->has_plan || o->written)
		return alcm_io_out_fail(o, ALCM_E_STATE, "metadata must come before the plan and "
		                        "the first write");
	if (alcm_io_meta_put(&o->alloc, &o->meta, key, strlen(key), value, value_len))
		return alcm_io_out_fail(o, ALCM_E_NOMEM, "out of memory");
	return ALCM_OK;
}
