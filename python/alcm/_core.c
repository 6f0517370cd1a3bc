/*
 * _core.c - the C extension behind the `alcm` Python package.
 *
 * A thin layer over the public API of libalcm (include/alcm.h); nothing here is public: the
 * Python modules (alcm/_api.py, alcm/torch.py) hold the names people type. Rules kept here:
 *
 * - Arrays in are read in place when they are C-contiguous, aligned and little-endian (others
 *   are copied once by numpy); arrays out are allocated once and decoded into.
 * - Every codec and file call runs with the GIL released. Library objects are not thread-safe,
 *   so each Python object holds a lock, taken (GIL released while waiting) around every use.
 * - Errors become the exception class the Python layer registered for the status code, with
 *   the library's detail line (file, section or tensor, offset), never a crash.
 * - Untrusted archives get exactly the library's checks; shapes numpy cannot represent are
 *   refused here before anything is allocated.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "alcm.h"

/* numpy 2 hides the descriptor's fields behind accessors; numpy 1 has no accessor. */
#ifndef PyDataType_ELSIZE
#define PyDataType_ELSIZE(d) ((d)->elsize)
#endif

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- support the Python layer registers: exception classes, the bfloat16 dtype ---------- */

static PyObject *error_classes;     /* dict: status (int) -> exception class */
static PyArray_Descr *bf16_descr;   /* uint16 with metadata {"alcm.dtype": "bfloat16"} */
static atomic_ulong nogil_calls;    /* codec calls seen running without the GIL (tests) */

/* Called inside every GIL-released region: counts it when the GIL is really released. */
static void nogil_note(void)
{
	if (!PyGILState_Check())
		atomic_fetch_add(&nogil_calls, 1);
}

/*
 * Raises the registered class for `st` with the message "cannot VERB 'PATH': DETAIL", DETAIL
 * being the library's detail line (or alcm_strerror() when it is empty). The exception gets the
 * attributes status (int), detail (str) and path (str or None). Returns NULL.
 */
static PyObject *raise_status(int st, const char *verb, PyObject *path, const char *detail)
{
	const char *d = detail && *detail ? detail : alcm_strerror(st);
	PyObject *cls = NULL, *key = PyLong_FromLong(st);
	if (key && error_classes)
		cls = PyDict_GetItemWithError(error_classes, key);
	Py_XDECREF(key);
	if (PyErr_Occurred())
		return NULL;
	if (!cls)
		cls = PyExc_RuntimeError;
	PyObject *msg;
	if (path && path != Py_None) {
		/* Library details often start with the path already: do not say it twice. */
		PyObject *p = PyUnicode_FromFormat("%U: ", path);
		if (!p)
			return NULL;
		const char *ps = PyUnicode_AsUTF8(p);
		if (ps && strncmp(d, ps, strlen(ps)) == 0)
			d += strlen(ps);
		Py_DECREF(p);
		msg = PyUnicode_FromFormat("cannot %s '%U': %s", verb, path, d);
	} else {
		msg = PyUnicode_FromFormat("cannot %s: %s", verb, d);
	}
	if (!msg)
		return NULL;
	PyObject *exc = PyObject_CallOneArg(cls, msg);
	Py_DECREF(msg);
	if (!exc)
		return NULL;
	PyObject *status = PyLong_FromLong(st), *det = PyUnicode_DecodeUTF8(d, strlen(d), "replace");
	if (!status || !det || PyObject_SetAttrString(exc, "status", status) ||
	    PyObject_SetAttrString(exc, "detail", det) ||
	    PyObject_SetAttrString(exc, "path", path ? path : Py_None)) {
		Py_XDECREF(status);
		Py_XDECREF(det);
		Py_DECREF(exc);
		return NULL;
	}
	Py_DECREF(status);
	Py_DECREF(det);
	PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
	Py_DECREF(exc);
	return NULL;
}

/* A file-system path (str) as bytes for the C calls; *out gets a new reference. */
static int fs_path(PyObject *path, PyObject **out)
{
	*out = NULL;
	if (!PyUnicode_Check(path)) {
		PyErr_SetString(PyExc_TypeError, "path must be a str");
		return -1;
	}
	*out = PyUnicode_EncodeFSDefault(path);
	if (*out && strlen(PyBytes_AS_STRING(*out)) != (size_t)PyBytes_GET_SIZE(*out)) {
		Py_CLEAR(*out);
		PyErr_SetString(PyExc_ValueError, "embedded null byte in path");
	}
	return *out ? 0 : -1;
}

/* ---- locks --------------------------------------------------------------------------------- */

static void lock_take(PyThread_type_lock lock)
{
	if (!PyThread_acquire_lock(lock, NOWAIT_LOCK)) {
		Py_BEGIN_ALLOW_THREADS
		PyThread_acquire_lock(lock, WAIT_LOCK);
		Py_END_ALLOW_THREADS
	}
}

static PyThread_type_lock lock_new(void)
{
	PyThread_type_lock l = PyThread_allocate_lock();
	if (!l)
		PyErr_NoMemory();
	return l;
}

/* ---- arrays ----------------------------------------------------------------------------- */

static int npy_type_of(int dtype)
{
	switch (dtype) {
	case ALCM_DTYPE_BOOL: return NPY_BOOL;
	case ALCM_DTYPE_U8: return NPY_UINT8;
	case ALCM_DTYPE_I8: return NPY_INT8;
	case ALCM_DTYPE_U16: return NPY_UINT16;
	case ALCM_DTYPE_I16: return NPY_INT16;
	case ALCM_DTYPE_U32: return NPY_UINT32;
	case ALCM_DTYPE_I32: return NPY_INT32;
	case ALCM_DTYPE_U64: return NPY_UINT64;
	case ALCM_DTYPE_I64: return NPY_INT64;
	case ALCM_DTYPE_F16: return NPY_HALF;
	case ALCM_DTYPE_F32: return NPY_FLOAT32;
	case ALCM_DTYPE_F64: return NPY_FLOAT64;
	default: return -1;
	}
}

/*
 * Views `obj` as the tensor `name` of dtype `dtype` (an alcm code the Python layer chose from
 * the array's dtype): the array itself when it is C-contiguous, aligned and in machine byte
 * order, else one copy that is. *arr receives the array to hold while t->data is in use.
 */
static int tensor_view(PyObject *obj, int dtype, PyObject *name, alcm_tensor *t,
                       PyArrayObject **arr)
{
	*arr = NULL;
	if (!PyBytes_Check(name)) {
		PyErr_SetString(PyExc_TypeError, "tensor name must be bytes");
		return -1;
	}
	size_t w = alcm_dtype_size(dtype);
	if (!w) {
		PyErr_Format(PyExc_ValueError, "unknown alcm dtype code %d", dtype);
		return -1;
	}
	/* NPY_ARRAY_NOTSWAPPED alone keeps a byte-swapped dtype: ask for the native one. */
	PyArray_Descr *want = NULL;
	if (PyArray_Check(obj) && !PyArray_ISNBO(PyArray_DESCR((PyArrayObject *)obj)->byteorder) &&
	    !(want = PyArray_DescrNewByteorder(PyArray_DESCR((PyArrayObject *)obj), NPY_NATIVE)))
		return -1;
	PyArrayObject *a = (PyArrayObject *)PyArray_FromAny(
	    obj, want, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED, NULL);
	if (!a)
		return -1;
	/* Never encode pointers (object arrays) or a dtype of another width. */
	if (PyDataType_REFCHK(PyArray_DESCR(a)) || (size_t)PyArray_ITEMSIZE(a) != w ||
	    PyArray_NDIM(a) > ALCM_MAX_NDIM) {
		PyErr_Format(PyExc_TypeError, "tensor '%S': cannot store an array of dtype %S and "
		             "%d dimensions as %s", name, (PyObject *)PyArray_DESCR(a), PyArray_NDIM(a),
		             alcm_dtype_name(dtype));
		Py_DECREF(a);
		return -1;
	}
	memset(t, 0, sizeof(*t));
	t->name = PyBytes_AS_STRING(name);
	t->name_len = (size_t)PyBytes_GET_SIZE(name);
	t->dtype = dtype;
	t->ndim = (uint32_t)PyArray_NDIM(a);
	for (int i = 0; i < PyArray_NDIM(a); i++)
		t->shape[i] = (uint64_t)PyArray_DIM(a, i);
	t->data = PyArray_DATA(a);
	t->nbytes = (uint64_t)PyArray_NBYTES(a);
	*arr = a;
	return 0;
}

static PyObject *shape_tuple(const uint64_t *shape, uint32_t ndim)
{
	PyObject *s = PyTuple_New(ndim);
	for (uint32_t i = 0; s && i < ndim; i++) {
		PyObject *d = PyLong_FromUnsignedLongLong(shape[i]);
		if (!d) {
			Py_CLEAR(s);
			break;
		}
		PyTuple_SET_ITEM(s, i, d);
	}
	return s;
}

/*
 * An uninitialised C-order array for a decoded tensor. Only the shape of a zero-element tensor
 * can be larger than its decoded bytes (which the reader's limits bound): numpy refuses shapes
 * whose non-zero dimensions multiply past its index type, so such tensors are refused here as
 * unsupported, naming the tensor.
 */
static PyArrayObject *array_for(const alcm_tensor_info *ti, PyObject *path)
{
	npy_intp dims[ALCM_MAX_NDIM];
	uint64_t bytes = alcm_dtype_size(ti->dtype);
	int ok = ti->ndim <= NPY_MAXDIMS && bytes > 0;
	for (uint32_t i = 0; ok && i < ti->ndim; i++) {
		uint64_t d = ti->shape[i];
		if (d > (uint64_t)NPY_MAX_INTP) {
			ok = 0;
			break;
		}
		dims[i] = (npy_intp)d;
		if (d && bytes > (uint64_t)NPY_MAX_INTP / d)
			ok = 0;
		else if (d)
			bytes *= d;
	}
	if (!ok) {
		PyObject *name = PyUnicode_DecodeUTF8(ti->name, (Py_ssize_t)ti->name_len, "replace");
		char detail[160];
		snprintf(detail, sizeof(detail), "tensor of %u dimensions: numpy cannot represent its "
		         "shape", (unsigned)ti->ndim);
		PyObject *verb = name ? PyUnicode_FromFormat("decode tensor '%U' of", name) : NULL;
		if (verb)
			raise_status(ALCM_E_UNSUPPORTED, PyUnicode_AsUTF8(verb), path, detail);
		Py_XDECREF(verb);
		Py_XDECREF(name);
		return NULL;
	}
	PyArray_Descr *d;
	if (ti->dtype == ALCM_DTYPE_BF16) {
		if (!bf16_descr) {
			PyErr_SetString(PyExc_RuntimeError, "alcm._core: bfloat16 dtype not registered");
			return NULL;
		}
		Py_INCREF(bf16_descr);
		d = bf16_descr;
	} else {
		d = PyArray_DescrFromType(npy_type_of(ti->dtype));
		if (!d)
			return NULL;
	}
	/* Steals the reference to d. */
	return (PyArrayObject *)PyArray_NewFromDescr(&PyArray_Type, d, (int)ti->ndim, dims, NULL,
	                                             NULL, 0, NULL);
}

/* ---- Reader --------------------------------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	alcm_reader *r;
	PyThread_type_lock lock;
	Py_buffer buf; /* a memory reader's bytes, held until the reader is freed */
	int has_buf;
	PyObject *path; /* str, for messages */
} ReaderObject;

static PyTypeObject ReaderType;

static void reader_release(ReaderObject *self)
{
	alcm_reader_free(self->r);
	self->r = NULL;
	if (self->has_buf) {
		PyBuffer_Release(&self->buf);
		self->has_buf = 0;
	}
}

static void Reader_dealloc(ReaderObject *self)
{
	reader_release(self);
	if (self->lock)
		PyThread_free_lock(self->lock);
	Py_XDECREF(self->path);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Takes the reader's lock; fails (lock released) when the reader was closed. */
static int reader_enter(ReaderObject *self)
{
	lock_take(self->lock);
	if (!self->r) {
		PyThread_release_lock(self->lock);
		PyErr_SetString(PyExc_ValueError, "I/O operation on a closed archive");
		return -1;
	}
	return 0;
}

/* Fills *lim from alcm_limits_default() and a dict of alcm_limits field names to values. */
static int limits_from(PyObject *d, alcm_limits *lim)
{
	alcm_limits_default(lim);
	if (d == Py_None)
		return 0;
	if (!PyDict_Check(d)) {
		PyErr_SetString(PyExc_TypeError, "limits must be a dict");
		return -1;
	}
	PyObject *k, *v;
	Py_ssize_t pos = 0;
	while (PyDict_Next(d, &pos, &k, &v)) {
		const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
		if (!name) {
			PyErr_SetString(PyExc_TypeError, "limit names must be str");
			return -1;
		}
		unsigned long long x = PyLong_AsUnsignedLongLong(v);
		if (x == (unsigned long long)-1 && PyErr_Occurred())
			return -1;
		struct { const char *n; uint64_t *p64; uint32_t *p32; } f[] = {
			{"max_sections", NULL, &lim->max_sections},
			{"max_section_bytes", &lim->max_section_bytes, NULL},
			{"max_meta_bytes", &lim->max_meta_bytes, NULL},
			{"max_tensors", NULL, &lim->max_tensors},
			{"max_ndim", NULL, &lim->max_ndim},
			{"max_name_bytes", NULL, &lim->max_name_bytes},
			{"max_elements", &lim->max_elements, NULL},
			{"max_decoded_bytes", &lim->max_decoded_bytes, NULL},
			{"zstd_window_log_max", NULL, &lim->zstd_window_log_max},
		};
		size_t i = 0, n = sizeof(f) / sizeof(f[0]);
		while (i < n && strcmp(f[i].n, name) != 0)
			i++;
		if (i == n) {
			PyErr_Format(PyExc_ValueError, "unknown limit '%s'", name);
			return -1;
		}
		if (!f[i].p64 && x > UINT32_MAX) {
			PyErr_Format(PyExc_ValueError, "limit '%s' must fit in 32 bits", name);
			return -1;
		}
		if (f[i].p64)
			*f[i].p64 = x;
		else
			*f[i].p32 = (uint32_t)x;
	}
	return 0;
}

/* Reader(path, data=None, verify=True, limits=None): opens a file, or the bytes-like `data`
 * (path is then only its name in messages), with the default limits or lower ones. */
static int Reader_init(ReaderObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"path", "data", "verify", "limits", NULL};
	PyObject *path, *data = Py_None, *fs = NULL, *limd = Py_None;
	int verify = 1;
	alcm_limits lim;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "U|OpO", kwlist, &path, &data, &verify, &limd))
		return -1;
	if (limits_from(limd, &lim))
		return -1;
	if (self->r || self->lock) {
		PyErr_SetString(PyExc_RuntimeError, "Reader initialised twice");
		return -1;
	}
	if (!(self->lock = lock_new()))
		return -1;
	Py_INCREF(path);
	self->path = path;
	if (fs_path(path, &fs))
		return -1;
	unsigned flags = verify ? 0 : ALCM_READ_NO_VERIFY;
	int st;
	if (data != Py_None) {
		if (PyObject_GetBuffer(data, &self->buf, PyBUF_SIMPLE)) {
			Py_DECREF(fs);
			return -1;
		}
		self->has_buf = 1;
		const char *name = PyBytes_AS_STRING(fs);
		Py_BEGIN_ALLOW_THREADS
		nogil_note();
		st = alcm_reader_open_memory(&self->r, self->buf.buf, (size_t)self->buf.len, name,
		                             &lim, NULL, flags);
		Py_END_ALLOW_THREADS
	} else {
		const char *name = PyBytes_AS_STRING(fs);
		Py_BEGIN_ALLOW_THREADS
		nogil_note();
		st = alcm_reader_open_file(&self->r, name, &lim, NULL, flags);
		Py_END_ALLOW_THREADS
	}
	Py_DECREF(fs);
	if (st) {
		raise_status(st, "read", path, self->r ? alcm_reader_detail(self->r) : "");
		reader_release(self);
		return -1;
	}
	return 0;
}

static PyObject *Reader_close(ReaderObject *self, PyObject *Py_UNUSED(arg))
{
	if (self->lock) {
		lock_take(self->lock);
		reader_release(self);
		PyThread_release_lock(self->lock);
	}
	Py_RETURN_NONE;
}

static PyObject *Reader_info(ReaderObject *self, PyObject *Py_UNUSED(arg))
{
	if (reader_enter(self))
		return NULL;
	unsigned major, minor;
	alcm_reader_version(self->r, &major, &minor);
	PyObject *res = Py_BuildValue("{s:(II),s:k,s:K,s:K,s:I,s:I}", "version", major, minor,
	                              "flags", (unsigned long)alcm_reader_flags(self->r),
	                              "generation",
	                              (unsigned long long)alcm_reader_generation(self->r),
	                              "file_size", (unsigned long long)alcm_reader_file_size(self->r),
	                              "frames", (unsigned)alcm_archive_frame_count(self->r),
	                              "sections", (unsigned)alcm_reader_section_count(self->r));
	PyThread_release_lock(self->lock);
	return res;
}

/* verify(): every section's digest and the padding, streamed (bounded memory). */
static PyObject *Reader_verify(ReaderObject *self, PyObject *Py_UNUSED(arg))
{
	if (reader_enter(self))
		return NULL;
	uint32_t bad = 0;
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_reader_verify(self->r, &bad);
	Py_END_ALLOW_THREADS
	PyObject *res = st ? raise_status(st, "verify", self->path, alcm_reader_detail(self->r))
	                   : Py_NewRef(Py_None);
	PyThread_release_lock(self->lock);
	return res;
}

/* check_signature(public_key or None) -> enum alcm_signature_state */
static PyObject *Reader_check_signature(ReaderObject *self, PyObject *arg)
{
	Py_buffer pk = {0};
	if (arg != Py_None) {
		if (PyObject_GetBuffer(arg, &pk, PyBUF_SIMPLE))
			return NULL;
		if (pk.len != ALCM_PUBLIC_KEY_BYTES) {
			PyBuffer_Release(&pk);
			PyErr_Format(PyExc_ValueError, "a public key is %d bytes, not %zd",
			             ALCM_PUBLIC_KEY_BYTES, pk.len);
			return NULL;
		}
	}
	if (reader_enter(self)) {
		if (pk.obj)
			PyBuffer_Release(&pk);
		return NULL;
	}
	int st, state = ALCM_SIG_NONE;
	const uint8_t *key = pk.obj ? pk.buf : NULL;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_reader_check_signature(self->r, key, &state);
	Py_END_ALLOW_THREADS
	PyObject *res = st ? raise_status(st, "check the signature of", self->path,
	                                  alcm_reader_detail(self->r))
	                   : PyLong_FromLong(state);
	PyThread_release_lock(self->lock);
	if (pk.obj)
		PyBuffer_Release(&pk);
	return res;
}

static PyObject *frame_report_dict(const alcm_frame_report *f)
{
	return Py_BuildValue("{s:I,s:K,s:K,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:i,s:d,s:d}",
	                     "frame", (unsigned)f->frame, "raw_bytes",
	                     (unsigned long long)f->raw_bytes, "stored_bytes",
	                     (unsigned long long)f->stored_bytes, "ratio", f->ratio, "cpu_seconds",
	                     f->cpu_seconds, "caq", f->caq, "caq_trend", f->caq_trend, "snr_db",
	                     f->snr_db, "max_abs_error", f->max_abs_error, "bound", f->bound,
	                     "prune", f->prune, "aggressiveness", f->aggressiveness, "decision",
	                     f->decision, "next_bound", f->next_bound, "next_prune", f->next_prune);
}

/* frame_report(frame) -> dict or None: the last FRAM section tagged `frame` (spec 6.8). */
static PyObject *Reader_frame_report(ReaderObject *self, PyObject *arg)
{
	unsigned long frame = PyLong_AsUnsignedLong(arg);
	if (frame == (unsigned long)-1 && PyErr_Occurred())
		return NULL;
	if (reader_enter(self))
		return NULL;
	uint32_t i = 0, k, found = UINT32_MAX;
	while (alcm_reader_find_section(self->r, "FRAM", i, &k) == ALCM_OK) {
		alcm_section_info si;
		alcm_reader_section_info(self->r, k, &si);
		if (si.tag == frame)
			found = k;
		i = k + 1;
	}
	PyObject *res = Py_NewRef(Py_None);
	if (found != UINT32_MAX) {
		alcm_section_info si;
		alcm_frame_report fr;
		uint8_t b[256];
		int st;
		alcm_reader_section_info(self->r, found, &si);
		if (si.length > sizeof(b)) {
			st = ALCM_E_CORRUPT;
		} else {
			Py_BEGIN_ALLOW_THREADS
			nogil_note();
			st = alcm_reader_section_read(self->r, found, b, sizeof(b));
			Py_END_ALLOW_THREADS
			if (!st)
				st = alcm_frame_report_load(&fr, b, (size_t)si.length);
		}
		Py_DECREF(res);
		if (st) {
			char d[96];
			snprintf(d, sizeof(d), "FRAM section %u at offset %llu is malformed", found,
			         (unsigned long long)si.offset);
			res = raise_status(st, "read", self->path,
			                   st == ALCM_E_CORRUPT ? d : alcm_reader_detail(self->r));
		} else {
			res = frame_report_dict(&fr);
		}
	}
	PyThread_release_lock(self->lock);
	return res;
}

static PyMethodDef Reader_methods[] = {
	{"close", (PyCFunction)Reader_close, METH_NOARGS, "Frees the reader (closes the file)."},
	{"info", (PyCFunction)Reader_info, METH_NOARGS, "Header facts as a dict."},
	{"verify", (PyCFunction)Reader_verify, METH_NOARGS, "Checks every digest and the padding."},
	{"check_signature", (PyCFunction)Reader_check_signature, METH_O,
	 "Signature state against a public key (None: the key stored beside it)."},
	{"frame_report", (PyCFunction)Reader_frame_report, METH_O,
	 "The FRAM record of a frame as a dict, or None."},
	{NULL, NULL, 0, NULL}
};

static PyTypeObject ReaderType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "alcm._core.Reader",
	.tp_basicsize = sizeof(ReaderObject),
	.tp_dealloc = (destructor)Reader_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "An open archive container (alcm_reader).",
	.tp_methods = Reader_methods,
	.tp_init = (initproc)Reader_init,
	.tp_new = PyType_GenericNew,
};

/* ---- Archive -------------------------------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	ReaderObject *reader; /* its lock guards this archive too: both use the alcm_reader */
	alcm_archive *a;
} ArchiveObject;

static void Archive_dealloc(ArchiveObject *self)
{
	alcm_archive_free(self->a);
	Py_XDECREF(self->reader);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int archive_enter(ArchiveObject *self)
{
	if (!self->reader || reader_enter(self->reader))
		return -1;
	if (!self->a) {
		PyThread_release_lock(self->reader->lock);
		PyErr_SetString(PyExc_ValueError, "I/O operation on a closed archive");
		return -1;
	}
	return 0;
}

/* Archive(reader, frame=-1, threads=1): the tensor directory of one frame (-1: the last). */
static int Archive_init(ArchiveObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"reader", "frame", "threads", NULL};
	ReaderObject *reader;
	long frame = -1;
	unsigned threads = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|lI", kwlist, &ReaderType, &reader, &frame,
	                                 &threads))
		return -1;
	if (self->reader) {
		PyErr_SetString(PyExc_RuntimeError, "Archive initialised twice");
		return -1;
	}
	if (frame < -1 || frame > (long)UINT32_MAX - 1) {
		PyErr_SetString(PyExc_ValueError, "frame out of range");
		return -1;
	}
	Py_INCREF(reader);
	self->reader = reader;
	if (reader_enter(reader))
		return -1;
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = frame < 0 ? alcm_archive_open(&self->a, reader->r, NULL)
	               : alcm_archive_open_frame(&self->a, reader->r, (uint32_t)frame, NULL);
	if (!st)
		st = alcm_archive_set_threads(self->a, threads);
	Py_END_ALLOW_THREADS
	if (st) {
		raise_status(st, "read", reader->path, self->a ? alcm_archive_detail(self->a) : "");
		alcm_archive_free(self->a);
		self->a = NULL;
	}
	PyThread_release_lock(reader->lock);
	return st ? -1 : 0;
}

static PyObject *Archive_close(ArchiveObject *self, PyObject *Py_UNUSED(arg))
{
	if (self->reader) {
		lock_take(self->reader->lock);
		alcm_archive_free(self->a);
		self->a = NULL;
		PyThread_release_lock(self->reader->lock);
	}
	Py_RETURN_NONE;
}

/* entries() -> list of (name bytes, dtype, shape, mode, bits, bound, max_abs_error,
 * stored_bytes, raw_bytes, pruned, escapes, chunks), read from the directory (no decoding). */
static PyObject *Archive_entries(ArchiveObject *self, PyObject *Py_UNUSED(arg))
{
	if (archive_enter(self))
		return NULL;
	size_t n = alcm_archive_tensor_count(self->a);
	PyObject *list = PyList_New((Py_ssize_t)n);
	for (size_t i = 0; list && i < n; i++) {
		alcm_tensor_info ti;
		alcm_archive_tensor_info(self->a, i, &ti);
		PyObject *shape = shape_tuple(ti.shape, ti.ndim);
		PyObject *e = shape ? Py_BuildValue("(y#iNiIddKKKKI)", ti.name, (Py_ssize_t)ti.name_len,
		                                    ti.dtype, shape, ti.mode, ti.bits, ti.bound,
		                                    ti.max_abs_error,
		                                    (unsigned long long)ti.stored_bytes,
		                                    (unsigned long long)ti.raw_bytes,
		                                    (unsigned long long)ti.pruned,
		                                    (unsigned long long)ti.escapes, ti.chunks)
		                    : NULL;
		if (!e) {
			Py_CLEAR(list);
			break;
		}
		PyList_SET_ITEM(list, (Py_ssize_t)i, e);
	}
	PyThread_release_lock(self->reader->lock);
	return list;
}

/* meta() -> list of (key bytes, value bytes), in the order of the META section. */
static PyObject *Archive_meta(ArchiveObject *self, PyObject *Py_UNUSED(arg))
{
	if (archive_enter(self))
		return NULL;
	size_t n = alcm_archive_meta_count(self->a);
	PyObject *list = PyList_New((Py_ssize_t)n);
	for (size_t i = 0; list && i < n; i++) {
		const char *k;
		const uint8_t *v;
		size_t vl;
		alcm_archive_meta(self->a, i, &k, &v, &vl);
		PyObject *e = Py_BuildValue("(y#y#)", k, (Py_ssize_t)strlen(k), (const char *)v,
		                            (Py_ssize_t)vl);
		if (!e) {
			Py_CLEAR(list);
			break;
		}
		PyList_SET_ITEM(list, (Py_ssize_t)i, e);
	}
	PyThread_release_lock(self->reader->lock);
	return list;
}

static PyObject *Archive_frame(ArchiveObject *self, PyObject *Py_UNUSED(arg))
{
	if (archive_enter(self))
		return NULL;
	uint32_t f = alcm_archive_frame(self->a);
	PyThread_release_lock(self->reader->lock);
	return PyLong_FromUnsignedLong(f);
}

/* Raises the failure st of decoding tensor ti (as "decode tensor 'NAME' of PATH"). */
static void raise_decode_at(int st, const alcm_tensor_info *ti, PyObject *path,
                            const alcm_archive *a)
{
	PyObject *name = PyUnicode_DecodeUTF8(ti->name, (Py_ssize_t)ti->name_len, "replace");
	PyObject *verb = name ? PyUnicode_FromFormat("decode tensor '%U' of", name) : NULL;
	if (verb)
		raise_status(st, PyUnicode_AsUTF8(verb), path, alcm_archive_detail(a));
	Py_XDECREF(verb);
	Py_XDECREF(name);
}

static void raise_decode(int st, const alcm_tensor_info *ti, ArchiveObject *self)
{
	raise_decode_at(st, ti, self->reader->path, self->a);
}

/* decode(index) -> ndarray: allocated once, decoded into with the GIL released. */
static PyObject *Archive_decode(ArchiveObject *self, PyObject *arg)
{
	Py_ssize_t i = PyLong_AsSsize_t(arg);
	if (i == -1 && PyErr_Occurred())
		return NULL;
	if (archive_enter(self))
		return NULL;
	alcm_tensor_info ti;
	PyArrayObject *arr = NULL;
	if (i < 0 || alcm_archive_tensor_info(self->a, (size_t)i, &ti)) {
		PyErr_SetString(PyExc_IndexError, "tensor index out of range");
		goto out;
	}
	if (!(arr = array_for(&ti, self->reader->path)))
		goto out;
	void *data = PyArray_DATA(arr);
	size_t cap = (size_t)ti.raw_bytes;
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_archive_decode(self->a, (size_t)i, data, cap);
	Py_END_ALLOW_THREADS
	if (st) {
		Py_CLEAR(arr);
		raise_decode(st, &ti, self);
	}
out:
	PyThread_release_lock(self->reader->lock);
	return (PyObject *)arr;
}

/* decode_many(indices) -> [ndarray]: each allocated once, all decoded into with the GIL
 * released, several at once on the archive's threads (alcm_archive_decode_list). */
static PyObject *Archive_decode_many(ArchiveObject *self, PyObject *arg)
{
	PyObject *seq = PySequence_Fast(arg, "decode_many() takes a sequence of tensor indices");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	size_t *idx = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*idx));
	size_t *caps = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*caps));
	void **outs = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*outs));
	PyObject *list = PyList_New(n);
	int entered = 0;
	if (!idx || !caps || !outs || !list) {
		PyErr_NoMemory();
		goto fail;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		Py_ssize_t v = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i));
		if (v == -1 && PyErr_Occurred())
			goto fail;
		idx[i] = v < 0 ? SIZE_MAX : (size_t)v;
	}
	if (archive_enter(self))
		goto fail;
	entered = 1;
	for (Py_ssize_t i = 0; i < n; i++) {
		alcm_tensor_info ti;
		if (alcm_archive_tensor_info(self->a, idx[i], &ti)) {
			PyErr_SetString(PyExc_IndexError, "tensor index out of range");
			goto fail;
		}
		PyArrayObject *arr = array_for(&ti, self->reader->path);
		if (!arr)
			goto fail;
		PyList_SET_ITEM(list, i, (PyObject *)arr);
		outs[i] = PyArray_DATA(arr);
		caps[i] = (size_t)ti.raw_bytes;
	}
	int st;
	size_t failed;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_archive_decode_list(self->a, idx, (size_t)n, outs, caps, &failed);
	Py_END_ALLOW_THREADS
	if (st) {
		alcm_tensor_info ti;
		if (failed < (size_t)n && !alcm_archive_tensor_info(self->a, idx[failed], &ti))
			raise_decode(st, &ti, self);
		else
			raise_status(st, "decode tensors of", self->reader->path,
			             alcm_archive_detail(self->a));
		goto fail;
	}
	PyThread_release_lock(self->reader->lock);
	PyMem_Free(idx);
	PyMem_Free(caps);
	PyMem_Free(outs);
	Py_DECREF(seq);
	return list;
fail:
	if (entered)
		PyThread_release_lock(self->reader->lock);
	PyMem_Free(idx);
	PyMem_Free(caps);
	PyMem_Free(outs);
	Py_XDECREF(list);
	Py_DECREF(seq);
	return NULL;
}

/* set_threads(n): decoding threads (alcm_archive_set_threads). */
static PyObject *Archive_set_threads(ArchiveObject *self, PyObject *arg)
{
	unsigned long n = PyLong_AsUnsignedLong(arg);
	if (n == (unsigned long)-1 && PyErr_Occurred())
		return NULL;
	if (n > 256) {
		PyErr_SetString(PyExc_ValueError, "threads must be 0..256");
		return NULL;
	}
	if (archive_enter(self))
		return NULL;
	int st = alcm_archive_set_threads(self->a, (unsigned)n);
	PyObject *res = st ? raise_status(st, "read", self->reader->path, alcm_archive_detail(self->a))
	                   : Py_NewRef(Py_None);
	PyThread_release_lock(self->reader->lock);
	return res;
}

static PyMethodDef Archive_methods[] = {
	{"close", (PyCFunction)Archive_close, METH_NOARGS, "Frees the directory."},
	{"entries", (PyCFunction)Archive_entries, METH_NOARGS, "Directory entries as tuples."},
	{"meta", (PyCFunction)Archive_meta, METH_NOARGS, "META pairs as (key, value) bytes."},
	{"frame", (PyCFunction)Archive_frame, METH_NOARGS, "The frame this directory belongs to."},
	{"decode", (PyCFunction)Archive_decode, METH_O, "Decodes tensor i into a new array."},
	{"decode_many", (PyCFunction)Archive_decode_many, METH_O,
	 "Decodes tensors [i, ...] into new arrays, several at once."},
	{"set_threads", (PyCFunction)Archive_set_threads, METH_O, "Decoding threads."},
	{NULL, NULL, 0, NULL}
};

static PyTypeObject ArchiveType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "alcm._core.Archive",
	.tp_basicsize = sizeof(ArchiveObject),
	.tp_dealloc = (destructor)Archive_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "The tensor directory of one frame (alcm_archive).",
	.tp_methods = Archive_methods,
	.tp_init = (initproc)Archive_init,
	.tp_new = PyType_GenericNew,
};

/* ---- pack options shared by Packer and Stream ---------------------------------------------- */

typedef struct {
	int mode;
	double bound;
	unsigned bits;
	double prune;
	int level;
	unsigned threads;
	unsigned long long chunk_bytes;
	PyObject *producer, *source_format; /* bytes or None; kept alive by the owner */
} pack_args;

static void pack_options_from(alcm_pack_options *o, const pack_args *a)
{
	alcm_pack_options_default(o);
	o->mode = a->mode;
	o->bound = a->bound;
	o->bits = a->bits;
	o->prune = a->prune;
	if (a->level)
		o->level = a->level;
	o->threads = a->threads;
	if (a->chunk_bytes)
		o->chunk_bytes = a->chunk_bytes;
	if (a->producer && PyBytes_Check(a->producer))
		o->producer = PyBytes_AS_STRING(a->producer);
	if (a->source_format && PyBytes_Check(a->source_format))
		o->source_format = PyBytes_AS_STRING(a->source_format);
}

/* ---- Packer: a writer and an encoder -------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	alcm_writer *w;
	alcm_encoder *e;
	PyThread_type_lock lock;
	PyObject *path; /* str or None (memory) */
	PyObject *producer, *source_format;
	int committed;
} PackerObject;

static void packer_release(PackerObject *self)
{
	alcm_encoder_free(self->e);
	self->e = NULL;
	alcm_writer_free(self->w); /* an uncommitted file writer removes its temporary file */
	self->w = NULL;
}

static void Packer_dealloc(PackerObject *self)
{
	packer_release(self);
	if (self->lock)
		PyThread_free_lock(self->lock);
	Py_XDECREF(self->path);
	Py_XDECREF(self->producer);
	Py_XDECREF(self->source_format);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int packer_enter(PackerObject *self)
{
	lock_take(self->lock);
	if (!self->w || !self->e) {
		PyThread_release_lock(self->lock);
		PyErr_SetString(PyExc_ValueError, "the archive was committed or closed");
		return -1;
	}
	return 0;
}

static const char *packer_detail(PackerObject *self)
{
	const char *d = alcm_encoder_detail(self->e);
	return d && *d ? d : alcm_writer_detail(self->w);
}

/* Packer(path or None, overwrite, mode, bound, bits, prune, level, threads, chunk_bytes,
 *        producer, source_format, sync=True) */
static int Packer_init(PackerObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"path", "overwrite", "mode", "bound", "bits", "prune", "level",
	                         "threads", "chunk_bytes", "producer", "source_format", "sync",
	                         NULL};
	pack_args a = {0};
	PyObject *path, *fs = NULL;
	int overwrite = 0, sync = 1;
	a.producer = a.source_format = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "Op|idIdiIKOOp", kwlist, &path, &overwrite,
	                                 &a.mode, &a.bound, &a.bits, &a.prune, &a.level,
	                                 &a.threads, &a.chunk_bytes, &a.producer,
	                                 &a.source_format, &sync))
		return -1;
	if (self->lock) {
		PyErr_SetString(PyExc_RuntimeError, "Packer initialised twice");
		return -1;
	}
	if (!(self->lock = lock_new()))
		return -1;
	Py_INCREF(path);
	self->path = path;
	Py_INCREF(a.producer);
	self->producer = a.producer;
	Py_INCREF(a.source_format);
	self->source_format = a.source_format;
	if (path != Py_None && fs_path(path, &fs))
		return -1;
	alcm_pack_options o;
	pack_options_from(&o, &a);
	unsigned flags = (overwrite ? ALCM_WRITE_OVERWRITE : 0) | (sync ? 0 : ALCM_WRITE_NO_SYNC);
	int st;
	const char *name = fs ? PyBytes_AS_STRING(fs) : NULL;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = name ? alcm_writer_open_file(&self->w, name, flags, NULL)
	          : alcm_writer_open_memory(&self->w, flags, NULL);
	Py_END_ALLOW_THREADS
	Py_XDECREF(fs);
	if (st) {
		raise_status(st, "write", path, self->w ? alcm_writer_detail(self->w) : "");
		packer_release(self);
		return -1;
	}
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_encoder_new(&self->e, self->w, &o, NULL);
	Py_END_ALLOW_THREADS
	if (st) {
		raise_status(st, "write", path,
		             st == ALCM_E_ARG ? "invalid coding options" : alcm_encoder_detail(self->e));
		packer_release(self);
		return -1;
	}
	return 0;
}

/*
 * add(name, array, dtype, mode=-1, bound=0, bits=0, prune=0, measure=False) -> tuple
 * (raw_bytes, stored_bytes, mode, bits, max_abs_error, snr_db, pruned, escapes, downgraded,
 * sq_error or None). mode >= 0 sets the mode for this tensor and the next ones; measure
 * computes the squared error of the reconstruction (the budget search needs it).
 */
static PyObject *Packer_add(PackerObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"name", "array", "dtype", "mode", "bound", "bits", "prune",
	                         "measure", NULL};
	PyObject *name, *obj;
	int dtype, mode = -1, measure = 0;
	double bound = 0, prune = 0;
	unsigned bits = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "SOi|idIdp", kwlist, &name, &obj, &dtype, &mode,
	                                 &bound, &bits, &prune, &measure))
		return NULL;
	alcm_tensor t;
	PyArrayObject *arr;
	if (tensor_view(obj, dtype, name, &t, &arr))
		return NULL;
	if (packer_enter(self)) {
		Py_DECREF(arr);
		return NULL;
	}
	PyObject *res = NULL;
	int st = mode >= 0 ? alcm_encoder_set_mode(self->e, mode, bound, bits, prune) : ALCM_OK;
	if (st) {
		raise_status(st, "write", self->path, "invalid coding options");
		goto out;
	}
	uint8_t *recon = NULL;
	if (measure && !(recon = malloc(t.nbytes ? (size_t)t.nbytes : 1))) {
		PyErr_NoMemory();
		goto out;
	}
	alcm_tensor_report rep;
	alcm_error_stats es;
	memset(&es, 0, sizeof(es));
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = measure ? alcm_encoder_add_recon(self->e, &t, &rep, recon)
	             : alcm_encoder_add(self->e, &t, &rep);
	if (!st && measure)
		st = alcm_tensor_measure(&t, recon, &es);
	Py_END_ALLOW_THREADS
	free(recon);
	if (st) {
		raise_status(st, "write", self->path, packer_detail(self));
		goto out;
	}
	PyObject *sq = measure ? PyFloat_FromDouble(es.sq_error) : Py_NewRef(Py_None);
	if (sq)
		res = Py_BuildValue("(KKiIddKKiN)", (unsigned long long)rep.raw_bytes,
		                    (unsigned long long)rep.stored_bytes, rep.mode, rep.bits,
		                    rep.max_abs_error, rep.snr_db, (unsigned long long)rep.pruned,
		                    (unsigned long long)rep.escapes, rep.downgraded, sq);
out:
	PyThread_release_lock(self->lock);
	Py_DECREF(arr);
	return res;
}

/* set_meta(key: str, value: bytes) */
static PyObject *Packer_set_meta(PackerObject *self, PyObject *args)
{
	const char *key;
	Py_buffer v;
	if (!PyArg_ParseTuple(args, "sy*", &key, &v))
		return NULL;
	if (packer_enter(self)) {
		PyBuffer_Release(&v);
		return NULL;
	}
	int st = alcm_encoder_set_meta(self->e, key, v.buf, (size_t)v.len);
	PyObject *res = st ? raise_status(st, "write", self->path, packer_detail(self))
	                   : Py_NewRef(Py_None);
	PyThread_release_lock(self->lock);
	PyBuffer_Release(&v);
	return res;
}

static PyObject *Packer_require_minor(PackerObject *self, PyObject *arg)
{
	unsigned long m = PyLong_AsUnsignedLong(arg);
	if (m == (unsigned long)-1 && PyErr_Occurred())
		return NULL;
	if (packer_enter(self))
		return NULL;
	int st = alcm_writer_require_minor(self->w, (unsigned)m);
	PyObject *res = st ? raise_status(st, "write", self->path, alcm_writer_detail(self->w))
	                   : Py_NewRef(Py_None);
	PyThread_release_lock(self->lock);
	return res;
}

static PyObject *Packer_finish(PackerObject *self, PyObject *Py_UNUSED(arg))
{
	if (packer_enter(self))
		return NULL;
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_encoder_finish(self->e);
	Py_END_ALLOW_THREADS
	PyObject *res = st ? raise_status(st, "write", self->path, packer_detail(self))
	                   : Py_NewRef(Py_None);
	PyThread_release_lock(self->lock);
	return res;
}

/* sign(secret_key: bytes): a SIGN section; call it after finish(), right before commit(). */
static PyObject *Packer_sign(PackerObject *self, PyObject *arg)
{
	Py_buffer sk;
	if (PyObject_GetBuffer(arg, &sk, PyBUF_SIMPLE))
		return NULL;
	if (sk.len != ALCM_SECRET_KEY_BYTES) {
		PyBuffer_Release(&sk);
		PyErr_Format(PyExc_ValueError, "a secret key is %d bytes", ALCM_SECRET_KEY_BYTES);
		return NULL;
	}
	if (packer_enter(self)) {
		PyBuffer_Release(&sk);
		return NULL;
	}
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_writer_sign(self->w, sk.buf);
	Py_END_ALLOW_THREADS
	PyObject *res = st ? raise_status(st, "sign", self->path, alcm_writer_detail(self->w))
	                   : Py_NewRef(Py_None);
	PyThread_release_lock(self->lock);
	PyBuffer_Release(&sk);
	return res;
}

/* committed_size() -> bytes the archive will take once committed (header, sections, padding
 * and the table to come), as the budget search of alcm-pack counts it. */
static PyObject *Packer_committed_size(PackerObject *self, PyObject *Py_UNUSED(arg))
{
	if (packer_enter(self))
		return NULL;
	uint64_t n = (alcm_writer_bytes(self->w) + 63) / 64 * 64 + 48 +
	             64 * (uint64_t)alcm_writer_section_count(self->w);
	PyThread_release_lock(self->lock);
	return PyLong_FromUnsignedLongLong(n);
}

/* commit() -> bytes (memory archives) or None (the file is published atomically). */
static PyObject *Packer_commit(PackerObject *self, PyObject *Py_UNUSED(arg))
{
	if (packer_enter(self))
		return NULL;
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_writer_commit(self->w);
	Py_END_ALLOW_THREADS
	PyObject *res = NULL;
	if (st) {
		raise_status(st, "write", self->path, alcm_writer_detail(self->w));
	} else if (self->path == Py_None) {
		const void *buf;
		size_t len;
		st = alcm_writer_memory(self->w, &buf, &len);
		res = st ? raise_status(st, "write", NULL, alcm_writer_detail(self->w))
		         : PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
	} else {
		res = Py_NewRef(Py_None);
	}
	self->committed = !st;
	packer_release(self);
	PyThread_release_lock(self->lock);
	return res;
}

static PyObject *Packer_close(PackerObject *self, PyObject *Py_UNUSED(arg))
{
	if (self->lock) {
		lock_take(self->lock);
		packer_release(self);
		PyThread_release_lock(self->lock);
	}
	Py_RETURN_NONE;
}

static PyMethodDef Packer_methods[] = {
	{"add", (PyCFunction)(void (*)(void))Packer_add, METH_VARARGS | METH_KEYWORDS,
	 "Encodes one tensor."},
	{"set_meta", (PyCFunction)Packer_set_meta, METH_VARARGS, "Adds a META pair."},
	{"require_minor", (PyCFunction)Packer_require_minor, METH_O,
	 "Raises the format minor version the archive needs."},
	{"finish", (PyCFunction)Packer_finish, METH_NOARGS, "Writes META, PRED and TDIR."},
	{"sign", (PyCFunction)Packer_sign, METH_O, "Adds a SIGN section."},
	{"committed_size", (PyCFunction)Packer_committed_size, METH_NOARGS,
	 "Size of the archive once committed."},
	{"commit", (PyCFunction)Packer_commit, METH_NOARGS, "Publishes the archive."},
	{"close", (PyCFunction)Packer_close, METH_NOARGS,
	 "Frees the writer; an uncommitted file is removed."},
	{NULL, NULL, 0, NULL}
};

static PyTypeObject PackerType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "alcm._core.Packer",
	.tp_basicsize = sizeof(PackerObject),
	.tp_dealloc = (destructor)Packer_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A new archive: writer and encoder.",
	.tp_methods = Packer_methods,
	.tp_init = (initproc)Packer_init,
	.tp_new = PyType_GenericNew,
};

/* ---- Stream --------------------------------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	alcm_stream *s;
	PyThread_type_lock lock;
	PyObject *producer;
} StreamObject;

static void Stream_dealloc(StreamObject *self)
{
	alcm_stream_free(self->s);
	if (self->lock)
		PyThread_free_lock(self->lock);
	Py_XDECREF(self->producer);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Stream(mode, bound, bits, prune, level, threads, chunk_bytes, producer, error_feedback,
 *        schedule, bound_max, fidelity_floor_db, window, trend_tolerance) */
static int Stream_init(StreamObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"mode", "bound", "bits", "prune", "level", "threads",
	                         "chunk_bytes", "producer", "error_feedback", "schedule",
	                         "bound_max", "fidelity_floor_db", "window", "trend_tolerance",
	                         NULL};
	pack_args a = {0};
	a.producer = Py_None;
	alcm_stream_options so;
	alcm_stream_options_default(&so);
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|idIdiIKOppddId", kwlist, &a.mode, &a.bound,
	                                 &a.bits, &a.prune, &a.level, &a.threads, &a.chunk_bytes,
	                                 &a.producer, &so.error_feedback, &so.schedule,
	                                 &so.bound_max, &so.fidelity_floor_db, &so.window,
	                                 &so.trend_tolerance))
		return -1;
	if (self->lock) {
		PyErr_SetString(PyExc_RuntimeError, "Stream initialised twice");
		return -1;
	}
	if (!(self->lock = lock_new()))
		return -1;
	Py_INCREF(a.producer);
	self->producer = a.producer;
	pack_options_from(&so.pack, &a);
	int st = alcm_stream_new(&self->s, &so, NULL);
	if (st) {
		raise_status(st, "start a stream", NULL,
		             st == ALCM_E_ARG ? "invalid stream options" : "");
		return -1;
	}
	return 0;
}

/* resume(path): continues the frame numbers and scheduler state of a stream archive. */
static PyObject *Stream_resume(StreamObject *self, PyObject *path)
{
	PyObject *fs;
	if (fs_path(path, &fs))
		return NULL;
	lock_take(self->lock);
	alcm_reader *r = NULL;
	const char *name = PyBytes_AS_STRING(fs);
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_reader_open_file(&r, name, NULL, NULL, 0);
	if (!st)
		st = alcm_stream_resume(self->s, r);
	Py_END_ALLOW_THREADS
	PyObject *res = Py_NewRef(Py_None);
	if (st) {
		Py_DECREF(res);
		const char *d = alcm_stream_detail(self->s);
		res = raise_status(st, "resume", path, r && *alcm_reader_detail(r) ? alcm_reader_detail(r) : d);
	}
	alcm_reader_free(r);
	PyThread_release_lock(self->lock);
	Py_DECREF(fs);
	return res;
}

/*
 * encode(path, create, tensors, overwrite=False, sync=True) -> report dict: one frame of
 * `tensors` (a list of (name bytes, array, dtype)) written to a new stream archive (create) or
 * appended to the existing one, committed before returning.
 */
static PyObject *Stream_encode(StreamObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"path", "create", "tensors", "overwrite", "sync", NULL};
	PyObject *path, *list, *fs = NULL, *res = NULL;
	int create, overwrite = 0, sync = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "UpO!|pp", kwlist, &path, &create, &PyList_Type,
	                                 &list, &overwrite, &sync))
		return NULL;
	Py_ssize_t n = PyList_GET_SIZE(list);
	alcm_tensor *t = calloc(n ? (size_t)n : 1, sizeof(*t));
	PyArrayObject **arrs = calloc(n ? (size_t)n : 1, sizeof(*arrs));
	PyObject **names = calloc(n ? (size_t)n : 1, sizeof(*names));
	if (!t || !arrs || !names) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *item = PyList_GET_ITEM(list, i), *name, *obj;
		int dtype;
		if (!PyArg_ParseTuple(item, "SOi", &name, &obj, &dtype))
			goto out;
		Py_INCREF(name);
		names[i] = name;
		if (tensor_view(obj, dtype, name, &t[i], &arrs[i]))
			goto out;
	}
	if (fs_path(path, &fs))
		goto out;
	lock_take(self->lock);
	alcm_writer *w = NULL;
	alcm_frame_report fr;
	const char *name = PyBytes_AS_STRING(fs);
	unsigned flags = ALCM_WRITE_STREAM | (overwrite ? ALCM_WRITE_OVERWRITE : 0) |
	                 (sync ? 0 : ALCM_WRITE_NO_SYNC);
	int st, wst = 0;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = create ? alcm_writer_open_file(&w, name, flags, NULL)
	            : alcm_writer_open_append(&w, name, NULL, NULL, sync ? 0 : ALCM_WRITE_NO_SYNC);
	wst = st;
	if (!st)
		st = alcm_stream_encode(self->s, w, t, (size_t)n, &fr);
	if (!st)
		wst = st = alcm_writer_commit(w);
	Py_END_ALLOW_THREADS
	if (st)
		raise_status(st, create ? "write" : "append to", path,
		             wst ? (w ? alcm_writer_detail(w) : "") : alcm_stream_detail(self->s));
	else
		res = frame_report_dict(&fr);
	alcm_writer_free(w);
	PyThread_release_lock(self->lock);
out:
	for (Py_ssize_t i = 0; arrs && names && i < n; i++) {
		Py_XDECREF(arrs[i]);
		Py_XDECREF(names[i]);
	}
	free(t);
	free(arrs);
	free(names);
	Py_XDECREF(fs);
	return res;
}

static PyMethodDef Stream_methods[] = {
	{"resume", (PyCFunction)Stream_resume, METH_O, "Continues a stream archive."},
	{"encode", (PyCFunction)(void (*)(void))Stream_encode, METH_VARARGS | METH_KEYWORDS,
	 "Writes one frame."},
	{NULL, NULL, 0, NULL}
};

static PyTypeObject StreamType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "alcm._core.Stream",
	.tp_basicsize = sizeof(StreamObject),
	.tp_dealloc = (destructor)Stream_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A gradient stream encoder (alcm_stream).",
	.tp_methods = Stream_methods,
	.tp_init = (initproc)Stream_init,
	.tp_new = PyType_GenericNew,
};

/* ---- module functions ------------------------------------------------------------------------ */

/* _set_support(error_classes: dict, bfloat16: numpy.dtype) */
static PyObject *mod_set_support(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *classes;
	PyArray_Descr *bf16;
	if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &classes, &PyArrayDescr_Type, &bf16))
		return NULL;
	if (PyDataType_ELSIZE(bf16) != 2 || bf16->type_num != NPY_UINT16) {
		PyErr_SetString(PyExc_ValueError, "the bfloat16 dtype must be a uint16 dtype");
		return NULL;
	}
	Py_INCREF(classes);
	Py_XSETREF(error_classes, classes);
	Py_INCREF(bf16);
	Py_XSETREF(bf16_descr, bf16);
	Py_RETURN_NONE;
}

/* keypair() -> (public_key, secret_key) */
static PyObject *mod_release_memory(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(arg))
{
	return PyLong_FromSize_t(alcm_release_memory());
}

static PyObject *mod_keypair(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(arg))
{
	uint8_t pk[ALCM_PUBLIC_KEY_BYTES], sk[ALCM_SECRET_KEY_BYTES];
	int st = alcm_keypair_new(pk, sk);
	PyObject *res = st ? raise_status(st, "make a key pair", NULL, "")
	                   : Py_BuildValue("(y#y#)", (const char *)pk, (Py_ssize_t)sizeof(pk),
	                                   (const char *)sk, (Py_ssize_t)sizeof(sk));
	alcm_wipe(sk, sizeof(sk));
	return res;
}

/* budget_profile(array, dtype, lossless_bytes) -> (elements, lossy, variance, steps, bits,
 * fixed_bytes): alcm_budget_profile_make() with the default predictor. */
static PyObject *mod_budget_profile(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *obj;
	int dtype;
	double lossless;
	if (!PyArg_ParseTuple(args, "Oid", &obj, &dtype, &lossless))
		return NULL;
	alcm_tensor t;
	PyArrayObject *arr;
	PyObject *name = PyBytes_FromString("");
	if (!name)
		return NULL;
	int bad = tensor_view(obj, dtype, name, &t, &arr);
	if (bad) {
		Py_DECREF(name);
		return NULL;
	}
	alcm_budget_profile p;
	int st;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_budget_profile_make(NULL, &t, lossless, &p);
	Py_END_ALLOW_THREADS
	Py_DECREF(arr);
	Py_DECREF(name);
	if (st)
		return raise_status(st, "profile a tensor", NULL, "");
	PyObject *steps = PyTuple_New(ALCM_BUDGET_STEPS), *bits = PyTuple_New(ALCM_BUDGET_STEPS);
	for (int k = 0; steps && bits && k < ALCM_BUDGET_STEPS; k++) {
		PyTuple_SET_ITEM(steps, k, PyFloat_FromDouble(p.step[k]));
		PyTuple_SET_ITEM(bits, k, PyFloat_FromDouble(p.bits[k]));
	}
	if (!steps || !bits || PyErr_Occurred()) {
		Py_XDECREF(steps);
		Py_XDECREF(bits);
		return NULL;
	}
	return Py_BuildValue("(KidNNd)", (unsigned long long)p.elements, p.lossy, p.variance, steps,
	                     bits, p.fixed_bytes);
}

static int profile_from(PyObject *tup, alcm_budget_profile *p)
{
	PyObject *steps, *bits;
	unsigned long long el;
	memset(p, 0, sizeof(*p));
	if (!PyArg_ParseTuple(tup, "KidO!O!d", &el, &p->lossy, &p->variance, &PyTuple_Type, &steps,
	                      &PyTuple_Type, &bits, &p->fixed_bytes))
		return -1;
	if (PyTuple_GET_SIZE(steps) != ALCM_BUDGET_STEPS ||
	    PyTuple_GET_SIZE(bits) != ALCM_BUDGET_STEPS) {
		PyErr_SetString(PyExc_ValueError, "a profile has 41 steps and 41 rates");
		return -1;
	}
	p->elements = el;
	for (int k = 0; k < ALCM_BUDGET_STEPS; k++) {
		p->step[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(steps, k));
		p->bits[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(bits, k));
	}
	return PyErr_Occurred() ? -1 : 0;
}

/* budget_solve(profiles, budget, scales) -> (fits, bounds list, predicted) */
static PyObject *mod_budget_solve(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *profs, *scales;
	double budget;
	if (!PyArg_ParseTuple(args, "O!dO!", &PyList_Type, &profs, &budget, &PyList_Type, &scales))
		return NULL;
	Py_ssize_t n = PyList_GET_SIZE(profs);
	if (PyList_GET_SIZE(scales) != n) {
		PyErr_SetString(PyExc_ValueError, "one scale per profile");
		return NULL;
	}
	alcm_budget_profile *p = calloc(n ? (size_t)n : 1, sizeof(*p));
	double *sc = calloc(n ? (size_t)n : 1, sizeof(double));
	double *bound = calloc(n ? (size_t)n : 1, sizeof(double));
	PyObject *res = NULL, *bl = NULL;
	if (!p || !sc || !bound) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		if (profile_from(PyList_GET_ITEM(profs, i), &p[i]))
			goto out;
		sc[i] = PyFloat_AsDouble(PyList_GET_ITEM(scales, i));
		if (sc[i] == -1 && PyErr_Occurred())
			goto out;
	}
	double predicted = 0;
	int st = alcm_budget_solve(p, (size_t)n, budget, sc, bound, &predicted);
	if (st && st != ALCM_E_BOUND) {
		raise_status(st, "plan a size budget", NULL, "");
		goto out;
	}
	if (!(bl = PyList_New(n)))
		goto out;
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *f = PyFloat_FromDouble(bound[i]);
		if (!f)
			goto out;
		PyList_SET_ITEM(bl, i, f);
	}
	res = Py_BuildValue("(ONd)", st ? Py_False : Py_True, bl, predicted);
	bl = NULL;
out:
	Py_XDECREF(bl);
	free(p);
	free(sc);
	free(bound);
	return res;
}

static PyObject *mod_nogil_calls(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(arg))
{
	return PyLong_FromUnsignedLong(atomic_load(&nogil_calls));
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * decompress_one(data) -> ndarray, or the archive's tensor count (an int) when it is not 1:
 * what Reader("<bytes>", data), Archive(reader), entries() and decode(0) do, with their
 * messages, in one call (alcm.decompress).
 */
static PyObject *mod_decompress_one(PyObject *Py_UNUSED(m), PyObject *data)
{
	Py_buffer buf;
	if (PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE))
		return NULL;
	PyObject *path = PyUnicode_FromString("<bytes>"), *res = NULL;
	alcm_limits lim;
	if (!path || limits_from(Py_None, &lim)) {
		Py_XDECREF(path);
		PyBuffer_Release(&buf);
		return NULL;
	}
	alcm_reader *r = NULL;
	alcm_archive *a = NULL;
	int st, ast = ALCM_OK;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = alcm_reader_open_memory(&r, buf.buf, (size_t)buf.len, "<bytes>", &lim, NULL, 0);
	if (!st)
		ast = st = alcm_archive_open(&a, r, NULL);
	Py_END_ALLOW_THREADS
	size_t n = st ? 0 : alcm_archive_tensor_count(a);
	alcm_tensor_info ti;
	PyArrayObject *arr = NULL;
	if (st) {
		raise_status(st, "read", path,
		             ast ? (a ? alcm_archive_detail(a) : "") : r ? alcm_reader_detail(r) : "");
	} else if (n != 1) {
		res = PyLong_FromSize_t(n);
	} else if (alcm_archive_tensor_info(a, 0, &ti)) {
		PyErr_SetString(PyExc_IndexError, "tensor index out of range");
	} else if ((arr = array_for(&ti, path))) {
		void *out = PyArray_DATA(arr);
		Py_BEGIN_ALLOW_THREADS
		nogil_note();
		st = alcm_archive_decode(a, 0, out, (size_t)ti.raw_bytes);
		Py_END_ALLOW_THREADS
		if (st) {
			Py_CLEAR(arr);
			raise_decode_at(st, &ti, path, a);
		}
		res = (PyObject *)arr;
	}
	alcm_archive_free(a);
	alcm_reader_free(r);
	Py_DECREF(path);
	PyBuffer_Release(&buf);
	return res;
}

/* Tensor t packed with options o into a new in-memory archive *w (encoder *e, both for the
 * caller to free), its bytes at *buf, *len: alcm.compress()'s library calls, made without the
 * GIL. *enc_st: alcm_encoder_new()'s status. */
static int pack_one_memory(const alcm_pack_options *o, const alcm_tensor *t, alcm_writer **w,
                           alcm_encoder **e, const void **buf, size_t *len, int *enc_st)
{
	int st = alcm_writer_open_memory(w, 0, NULL);
	if (!st)
		*enc_st = st = alcm_encoder_new(e, *w, o, NULL);
	if (!st)
		st = alcm_encoder_add(*e, t, NULL);
	if (!st)
		st = alcm_encoder_finish(*e);
	if (!st)
		st = alcm_writer_commit(*w);
	if (!st)
		st = alcm_writer_memory(*w, buf, len);
	return st;
}

/*
 * compress_one(array, dtype, mode, bound, bits, prune, threads, producer) -> bytes: one tensor
 * named "tensor" packed into an in-memory archive, as Packer(None, ...), add(), finish() and
 * commit() do, in one call: alcm.compress() of a small tensor spent as long in those five
 * calls' Python as in the library.
 */
static PyObject *mod_compress_one(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *obj;
	int dtype;
	pack_args a = {0};
	if (!PyArg_ParseTuple(args, "OiidIdIO", &obj, &dtype, &a.mode, &a.bound, &a.bits, &a.prune,
	                      &a.threads, &a.producer))
		return NULL;
	a.source_format = Py_None;
	PyObject *name = PyBytes_FromString("tensor");
	if (!name)
		return NULL;
	alcm_tensor t;
	PyArrayObject *arr;
	int rc = tensor_view(obj, dtype, name, &t, &arr);
	Py_DECREF(name);
	if (rc)
		return NULL;
	alcm_pack_options o;
	pack_options_from(&o, &a);
	alcm_writer *w = NULL;
	alcm_encoder *e = NULL;
	const void *buf = NULL;
	size_t len = 0;
	int st, enc_st = ALCM_OK;
	Py_BEGIN_ALLOW_THREADS
	nogil_note();
	st = pack_one_memory(&o, &t, &w, &e, &buf, &len, &enc_st);
	Py_END_ALLOW_THREADS
	PyObject *res = NULL;
	if (st) {
		/* The messages of Packer(None, ...) and its calls. */
		const char *d = enc_st == ALCM_E_ARG ? "invalid coding options"
		                : *alcm_encoder_detail(e) ? alcm_encoder_detail(e)
		                                          : alcm_writer_detail(w);
		raise_status(st, "write", NULL, d);
	} else {
		res = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
	}
	alcm_encoder_free(e);
	alcm_writer_free(w);
	Py_DECREF(arr);
	return res;
}

/*
 * _bench_roundtrip(array, dtype, n) -> seconds for n round trips of one tensor through an
 * in-memory archive, with the same library calls alcm.compress() and alcm.decompress() make,
 * but no Python in between: the benchmark's measure of the Python layer's overhead.
 */
static PyObject *mod_bench_roundtrip(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *obj;
	int dtype;
	long n;
	if (!PyArg_ParseTuple(args, "Oil", &obj, &dtype, &n))
		return NULL;
	PyObject *name = PyBytes_FromString("t");
	if (!name)
		return NULL;
	alcm_tensor t;
	PyArrayObject *arr;
	if (tensor_view(obj, dtype, name, &t, &arr)) {
		Py_DECREF(name);
		return NULL;
	}
	uint8_t *out = malloc(t.nbytes ? (size_t)t.nbytes : 1);
	int st = out ? ALCM_OK : ALCM_E_NOMEM;
	double t0 = now_seconds();
	Py_BEGIN_ALLOW_THREADS
	for (long i = 0; i < n && !st; i++) {
		alcm_writer *w = NULL;
		alcm_encoder *e = NULL;
		alcm_reader *r = NULL;
		alcm_archive *a = NULL;
		alcm_pack_options o;
		alcm_pack_options_default(&o);
		o.threads = 1;
		const void *buf;
		size_t len;
		int enc_st;
		st = pack_one_memory(&o, &t, &w, &e, &buf, &len, &enc_st);
		if (!st)
			st = alcm_reader_open_memory(&r, buf, len, NULL, NULL, NULL, 0);
		if (!st)
			st = alcm_archive_open(&a, r, NULL);
		if (!st)
			st = alcm_archive_decode(a, 0, out, (size_t)t.nbytes);
		alcm_archive_free(a);
		alcm_reader_free(r);
		alcm_encoder_free(e);
		alcm_writer_free(w);
	}
	Py_END_ALLOW_THREADS
	double dt = now_seconds() - t0;
	free(out);
	Py_DECREF(arr);
	Py_DECREF(name);
	if (st)
		return raise_status(st, "run the round trip", NULL, "");
	return PyFloat_FromDouble(dt);
}

static PyObject *mod_dtype_name(PyObject *Py_UNUSED(m), PyObject *arg)
{
	long d = PyLong_AsLong(arg);
	if (d == -1 && PyErr_Occurred())
		return NULL;
	const char *s = d > 0 && d < 256 ? alcm_dtype_name((int)d) : NULL;
	if (!s)
		Py_RETURN_NONE;
	return PyUnicode_FromString(s);
}

static PyMethodDef module_methods[] = {
	{"_set_support", mod_set_support, METH_VARARGS,
	 "Registers the exception classes and the bfloat16 dtype."},
	{"keypair", mod_keypair, METH_NOARGS, "A new Ed25519 key pair (public, secret)."},
	{"release_memory", mod_release_memory, METH_NOARGS, "alcm_release_memory()."},
	{"budget_profile", mod_budget_profile, METH_VARARGS, "alcm_budget_profile_make()."},
	{"budget_solve", mod_budget_solve, METH_VARARGS, "alcm_budget_solve()."},
	{"dtype_name", mod_dtype_name, METH_O, "alcm_dtype_name()."},
	{"_nogil_calls", mod_nogil_calls, METH_NOARGS,
	 "Library calls made so far with the GIL released (for tests)."},
	{"compress_one", mod_compress_one, METH_VARARGS,
	 "One tensor into an in-memory archive (alcm.compress)."},
	{"decompress_one", mod_decompress_one, METH_O,
	 "The one tensor of an in-memory archive (alcm.decompress)."},
	{"_bench_roundtrip", mod_bench_roundtrip, METH_VARARGS,
	 "Seconds for n in-memory round trips of one tensor, in C only (for the benchmark)."},
	{NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT, "alcm._core",
	"The C extension of the alcm package (private; use the alcm module).", -1, module_methods,
	NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__core(void)
{
	const uint16_t one = 1;
	if (*(const uint8_t *)&one != 1) {
		PyErr_SetString(PyExc_ImportError, "alcm supports little-endian hosts only");
		return NULL;
	}
	import_array();
	PyTypeObject *types[] = {&ReaderType, &ArchiveType, &PackerType, &StreamType};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (PyType_Ready(types[i]) < 0)
			return NULL;
	PyObject *m = PyModule_Create(&module_def);
	if (!m)
		return NULL;
	const char *names[] = {"Reader", "Archive", "Packer", "Stream"};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		Py_INCREF(types[i]);
		if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
			Py_DECREF(types[i]);
			Py_DECREF(m);
			return NULL;
		}
	}
	if (PyModule_AddStringConstant(m, "LIBRARY_VERSION", alcm_version()) ||
	    PyModule_AddIntConstant(m, "FORMAT_MAJOR", ALCM_FORMAT_MAJOR) ||
	    PyModule_AddIntConstant(m, "FORMAT_MINOR", ALCM_FORMAT_MINOR)) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
