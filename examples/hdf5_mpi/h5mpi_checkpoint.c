/*
 * h5mpi_checkpoint: one shared .h5 checkpoint written and read by every MPI rank at once,
 * through HDF5's MPI-IO driver, with the alcm filter on every dataset (or deflate, or none,
 * to compare). Each rank holds a slab of rows of each tensor, as a data-parallel or
 * model-parallel trainer does; the file is the same whatever the number of ranks.
 *
 *   mpirun -np 4 h5mpi_checkpoint write ckpt.h5 [options]
 *   mpirun -np 2 h5mpi_checkpoint read ckpt.h5 [options]    reads back and checks the values
 *
 * options:
 *   --filter alcm|deflate|none   default alcm (cd_values: version 2, the mode below)
 *   --max-error E                alcm max-error mode (default lossless); read: the bound
 *                                the values must meet (default: bit-exact)
 *   --layers L --rows R --cols C synthetic tensors (default 8 x 1024 x 1024 float32, plus a
 *                                bias of C values per layer); the values depend only on
 *                                their position, so every run makes the same checkpoint
 *   --from FILE.safetensors      the tensors of a file instead (float32/float64/integers)
 *   --chunk-kib K                chunk size, rows of whole tensor width (default 1024)
 *   --quiet                      no per-run figures
 *
 * Prints (rank 0) raw MB, wall seconds and MB/s, and the file size after a write. Exit 0 on
 * success, 1 when a value is out of bound or differs, 2 on an HDF5 or usage error.
 *
 * What is collective: file open/close and every dataset creation (all ranks, same
 * arguments); each H5Dwrite (H5FD_MPIO_COLLECTIVE: HDF5 >= 1.10.2 writes filtered datasets
 * in parallel only collectively, since the chunks' coded sizes decide where each lands in the
 * file). What each rank does alone: generating or loading its rows, and coding the chunks it
 * owns with the filter. The plugin must be the one built against the MPI flavour of HDF5
 * (HDF5_PLUGIN_PATH=build/lib/plugin-mpi, or its installed directory).
 */
#include "alcm.h"

#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ALCM_FILTER 417

typedef struct opts {
	const char *cmd, *path, *from, *filter;
	double max_error;
	unsigned layers;
	uint64_t rows, cols, chunk_kib;
	int quiet;
} opts;

typedef struct tensor {
	char name[256];
	int dtype; /* enum alcm_dtype */
	uint32_t ndim;
	uint64_t shape[2]; /* rows, row length (1-D: n, 1) */
	const uint8_t *data; /* --from: the whole tensor; else NULL (generated) */
} tensor;

static int rank, nranks;

static void die(int code, const char *fmt, const char *arg)
{
	if (rank == 0) {
		fprintf(stderr, "h5mpi_checkpoint: ");
		fprintf(stderr, fmt, arg);
		fputc('\n', stderr);
	}
	MPI_Abort(MPI_COMM_WORLD, code);
	exit(code);
}

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Synthetic element i of tensor k: weights of a trained-looking spread, rounded to 12
 * significant bits (as weights saved from bfloat16 or quantization-aware training are),
 * with a NaN and an infinity to show that specials stay exact. */
static float synth(unsigned k, uint64_t i)
{
	if (k == 0 && i == 7)
		return NAN;
	if (k == 0 && i == 8)
		return INFINITY;
	uint64_t h = mix(((uint64_t)k << 40) ^ i);
	double u1 = ((h >> 11) + 0.5) * 0x1p-53, u2 = (mix(h) >> 11) * 0x1p-53;
	double g = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2) * 0.02 * (1 + k % 3);
	float f = (float)g;
	uint32_t u;
	memcpy(&u, &f, 4);
	u &= 0xfffff800u;
	memcpy(&f, &u, 4);
	return f;
}

static hid_t h5type(int dtype)
{
	switch (dtype) {
	case ALCM_DTYPE_F32: return H5T_NATIVE_FLOAT;
	case ALCM_DTYPE_F64: return H5T_NATIVE_DOUBLE;
	case ALCM_DTYPE_I8: return H5T_NATIVE_INT8;
	case ALCM_DTYPE_U8: case ALCM_DTYPE_BOOL: return H5T_NATIVE_UINT8;
	case ALCM_DTYPE_I16: return H5T_NATIVE_INT16;
	case ALCM_DTYPE_U16: return H5T_NATIVE_UINT16;
	case ALCM_DTYPE_I32: return H5T_NATIVE_INT32;
	case ALCM_DTYPE_U32: return H5T_NATIVE_UINT32;
	case ALCM_DTYPE_I64: return H5T_NATIVE_INT64;
	case ALCM_DTYPE_U64: return H5T_NATIVE_UINT64;
	default: return -1; /* float16, bfloat16: no native HDF5 type */
	}
}

/* The tensors of the checkpoint; --from loads the file (every rank reads it). */
static tensor *plan(const opts *o, size_t *n, alcm_input **in)
{
	tensor *t = NULL;
	*n = 0;
	if (!o->from) {
		t = calloc(2 * (size_t)o->layers, sizeof(*t));
		for (unsigned l = 0; l < o->layers; l++) {
			tensor *w = &t[(*n)++], *b = &t[(*n)++];
			snprintf(w->name, sizeof(w->name), "layer%02u/kernel", l);
			w->dtype = ALCM_DTYPE_F32, w->ndim = 2, w->shape[0] = o->rows, w->shape[1] = o->cols;
			snprintf(b->name, sizeof(b->name), "layer%02u/bias", l);
			b->dtype = ALCM_DTYPE_F32, b->ndim = 1, b->shape[0] = o->cols, b->shape[1] = 1;
		}
		return t;
	}
	if (alcm_input_open(in, o->from, NULL, NULL) != ALCM_OK)
		die(2, "cannot read '%s'", o->from);
	size_t cap = 0;
	alcm_tensor x;
	int has;
	while (alcm_input_next(*in, &x, &has) == ALCM_OK && has) {
		if (h5type(x.dtype) < 0 || x.ndim > 8 || x.name_len >= sizeof(t->name) - 1)
			continue;
		if (*n == cap)
			t = realloc(t, (cap = cap ? 2 * cap : 64) * sizeof(*t));
		tensor *d = &t[(*n)++];
		memset(d, 0, sizeof(*d));
		memcpy(d->name, x.name, x.name_len);
		d->name[x.name_len] = '\0';
		for (char *c = d->name; *c; c++)
			if (*c == '/' && c == d->name)
				*c = '_';
		d->dtype = x.dtype;
		/* rows: the first axis; a row: everything after it */
		d->ndim = x.ndim <= 1 ? 1 : 2;
		d->shape[0] = x.ndim ? x.shape[0] : 1;
		d->shape[1] = 1;
		for (uint32_t k = 1; k < x.ndim; k++)
			d->shape[1] *= x.shape[k];
		uint8_t *copy = malloc(x.nbytes ? x.nbytes : 1);
		memcpy(copy, x.data, x.nbytes);
		d->data = copy;
	}
	return t;
}

/* Rows [*r0, *r1) of a tensor of `rows` rows belong to this rank. */
static void my_rows(uint64_t rows, uint64_t *r0, uint64_t *r1)
{
	*r0 = rows * (uint64_t)rank / (uint64_t)nranks;
	*r1 = rows * (uint64_t)(rank + 1) / (uint64_t)nranks;
}

/* This rank's slab of t, generated or copied. */
static void *slab(const tensor *t, unsigned k, uint64_t r0, uint64_t r1, size_t *nbytes)
{
	size_t w = alcm_dtype_size(t->dtype), row = (size_t)t->shape[1];
	*nbytes = (size_t)(r1 - r0) * row * w;
	uint8_t *p = malloc(*nbytes ? *nbytes : 1);
	if (t->data)
		memcpy(p, t->data + (size_t)r0 * row * w, *nbytes);
	else
		for (uint64_t i = 0; i < (r1 - r0) * row; i++) {
			float f = synth(k, r0 * row + i);
			memcpy(p + 4 * i, &f, 4);
		}
	return p;
}

static hid_t dcpl_for(const opts *o, const tensor *t)
{
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	size_t w = alcm_dtype_size(t->dtype);
	uint64_t rows = (o->chunk_kib << 10) / (w * t->shape[1]);
	hsize_t chunk[2] = {rows < 1 ? 1 : rows > t->shape[0] ? t->shape[0] : rows, t->shape[1]};
	if (t->ndim == 1 && chunk[0] > 1 && t->shape[0] * w > (o->chunk_kib << 10))
		chunk[0] = (o->chunk_kib << 10) / w;
	if (chunk[0] == 0)
		chunk[0] = 1;
	H5Pset_chunk(dcpl, (int)t->ndim, chunk);
	/* No fill values: chunks are written whole, and writing filtered fill chunks first
	 * would code every chunk twice. */
	H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
	if (strcmp(o->filter, "alcm") == 0) {
		unsigned cd[6] = {2, o->max_error > 0 ? 1u : 0u, 0, 0, 8, 0};
		uint64_t bits;
		memcpy(&bits, &o->max_error, 8);
		cd[2] = (unsigned)bits;
		cd[3] = (unsigned)(bits >> 32);
		if (H5Pset_filter(dcpl, ALCM_FILTER, H5Z_FLAG_MANDATORY, 6, cd) < 0)
			die(2, "%s", "H5Pset_filter(417) failed");
	} else if (strcmp(o->filter, "deflate") == 0) {
		H5Pset_shuffle(dcpl);
		H5Pset_deflate(dcpl, 4);
	}
	return dcpl;
}

static hid_t open_file(const opts *o, int create)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
	hid_t f = create ? H5Fcreate(o->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
	                 : H5Fopen(o->path, H5F_ACC_RDONLY, fapl);
	H5Pclose(fapl);
	if (f < 0)
		die(2, "cannot open '%s'", o->path);
	return f;
}

/* The dataspace selections of this rank's rows. */
static void select_rows(const tensor *t, hid_t dset_space, hid_t *mem, uint64_t r0, uint64_t r1)
{
	hsize_t start[2] = {r0, 0}, count[2] = {r1 - r0, t->shape[1]};
	*mem = H5Screate_simple((int)t->ndim, count, NULL);
	if (r1 > r0) {
		H5Sselect_hyperslab(dset_space, H5S_SELECT_SET, start, NULL, count, NULL);
	} else {
		H5Sselect_none(dset_space);
		H5Sselect_none(*mem);
	}
}

static double run_write(const opts *o, const tensor *t, size_t n, uint64_t *raw)
{
	/* The rows first: the time is HDF5's (create, code, write, close), not the data's. */
	void **buf = calloc(n ? n : 1, sizeof(void *));
	for (size_t k = 0; k < n; k++) {
		uint64_t r0, r1;
		size_t nb;
		my_rows(t[k].shape[0], &r0, &r1);
		buf[k] = slab(&t[k], (unsigned)k, r0, r1, &nb);
	}
	hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
	H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = MPI_Wtime();
	hid_t f = open_file(o, 1);
	*raw = 0;
	for (size_t k = 0; k < n; k++) {
		hsize_t dims[2] = {t[k].shape[0], t[k].shape[1]};
		hid_t space = H5Screate_simple((int)t[k].ndim, dims, NULL), dcpl = dcpl_for(o, &t[k]);
		hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
		H5Pset_create_intermediate_group(lcpl, 1);
		hid_t d = H5Dcreate2(f, t[k].name, h5type(t[k].dtype), space, lcpl, dcpl, H5P_DEFAULT);
		if (d < 0)
			die(2, "cannot create dataset '%s'", t[k].name);
		uint64_t r0, r1;
		my_rows(t[k].shape[0], &r0, &r1);
		hid_t mem;
		select_rows(&t[k], space, &mem, r0, r1);
		if (H5Dwrite(d, h5type(t[k].dtype), mem, space, dxpl, buf[k]) < 0)
			die(2, "cannot write dataset '%s'", t[k].name);
		*raw += dims[0] * dims[1] * alcm_dtype_size(t[k].dtype);
		H5Sclose(mem);
		H5Sclose(space);
		H5Pclose(dcpl);
		H5Pclose(lcpl);
		H5Dclose(d);
	}
	H5Fclose(f);
	MPI_Barrier(MPI_COMM_WORLD);
	double s = MPI_Wtime() - t0;
	H5Pclose(dxpl);
	for (size_t k = 0; k < n; k++)
		free(buf[k]);
	free(buf);
	return s;
}

/* 0 if got equals want within the bound (bit-exact when bound is 0; specials exact). */
static int check_values(const tensor *t, const uint8_t *want, const uint8_t *got, size_t nbytes,
                        double bound, double *maxerr)
{
	if (bound <= 0 || (t->dtype != ALCM_DTYPE_F32 && t->dtype != ALCM_DTYPE_F64))
		return memcmp(want, got, nbytes) != 0;
	size_t w = alcm_dtype_size(t->dtype);
	for (size_t i = 0; i < nbytes / w; i++) {
		double a, b;
		if (w == 4) {
			float fa, fb;
			memcpy(&fa, want + 4 * i, 4);
			memcpy(&fb, got + 4 * i, 4);
			a = fa, b = fb;
		} else {
			memcpy(&a, want + 8 * i, 8);
			memcpy(&b, got + 8 * i, 8);
		}
		if (!isfinite(a) || a == 0) {
			if (memcmp(want + w * i, got + w * i, w) != 0)
				return 1;
			continue;
		}
		double e = fabs(a - b);
		if (!(e <= bound))
			return 1;
		*maxerr = e > *maxerr ? e : *maxerr;
	}
	return 0;
}

static double run_read(const opts *o, const tensor *t, size_t n, uint64_t *raw, int *bad,
                       double *maxerr)
{
	uint8_t **got = calloc(n ? n : 1, sizeof(uint8_t *));
	hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
	H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = MPI_Wtime();
	hid_t f = open_file(o, 0);
	*raw = 0;
	for (size_t k = 0; k < n; k++) {
		hid_t d = H5Dopen2(f, t[k].name, H5P_DEFAULT);
		if (d < 0)
			die(2, "no dataset '%s'", t[k].name);
		hid_t space = H5Dget_space(d);
		uint64_t r0, r1;
		my_rows(t[k].shape[0], &r0, &r1);
		size_t nb = (size_t)((r1 - r0) * t[k].shape[1] * alcm_dtype_size(t[k].dtype));
		got[k] = malloc(nb ? nb : 1);
		hid_t mem;
		select_rows(&t[k], space, &mem, r0, r1);
		if (H5Dread(d, h5type(t[k].dtype), mem, space, dxpl, got[k]) < 0)
			die(2, "cannot read dataset '%s'", t[k].name);
		*raw += t[k].shape[0] * t[k].shape[1] * alcm_dtype_size(t[k].dtype);
		H5Sclose(mem);
		H5Sclose(space);
		H5Dclose(d);
	}
	H5Fclose(f);
	MPI_Barrier(MPI_COMM_WORLD);
	double s = MPI_Wtime() - t0;
	H5Pclose(dxpl);
	/* Then the checks, untimed. */
	*bad = 0;
	for (size_t k = 0; k < n; k++) {
		uint64_t r0, r1;
		size_t nb;
		my_rows(t[k].shape[0], &r0, &r1);
		uint8_t *want = slab(&t[k], (unsigned)k, r0, r1, &nb);
		if (check_values(&t[k], want, got[k], nb, o->max_error, maxerr)) {
			if (!*bad)
				fprintf(stderr, "h5mpi_checkpoint: rank %d: dataset '%s' differs%s\n", rank,
				        t[k].name, o->max_error > 0 ? " beyond the bound" : "");
			*bad = 1;
		}
		free(want);
		free(got[k]);
	}
	free(got);
	return s;
}

static void parse(int argc, char **argv, opts *o)
{
	memset(o, 0, sizeof(*o));
	o->filter = "alcm";
	o->layers = 8;
	o->rows = o->cols = 1024;
	o->chunk_kib = 1024;
	if (argc < 3)
		die(2, "%s", "usage: h5mpi_checkpoint write|read FILE.h5 [--filter alcm|deflate|none] "
		    "[--max-error E] [--layers L --rows R --cols C | --from X.safetensors] "
		    "[--chunk-kib K] [--quiet]");
	o->cmd = argv[1];
	o->path = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--quiet") == 0) {
			o->quiet = 1;
			continue;
		}
		if (!v)
			die(2, "option %s needs a value", a);
		i++;
		if (strcmp(a, "--filter") == 0)
			o->filter = v;
		else if (strcmp(a, "--max-error") == 0)
			o->max_error = atof(v);
		else if (strcmp(a, "--layers") == 0)
			o->layers = (unsigned)atoi(v);
		else if (strcmp(a, "--rows") == 0)
			o->rows = strtoull(v, NULL, 10);
		else if (strcmp(a, "--cols") == 0)
			o->cols = strtoull(v, NULL, 10);
		else if (strcmp(a, "--chunk-kib") == 0)
			o->chunk_kib = strtoull(v, NULL, 10);
		else if (strcmp(a, "--from") == 0)
			o->from = v;
		else
			die(2, "unknown option %s", a);
	}
	if (strcmp(o->filter, "alcm") && strcmp(o->filter, "deflate") && strcmp(o->filter, "none"))
		die(2, "unknown filter %s", o->filter);
	if (!o->rows || !o->cols || !o->chunk_kib || (o->max_error < 0) || !isfinite(o->max_error))
		die(2, "%s", "rows, cols and chunk size must be positive, the bound finite");
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	opts o;
	parse(argc, argv, &o);
	if (rank != 0)
		H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	size_t n;
	alcm_input *in = NULL;
	tensor *t = plan(&o, &n, &in);
	uint64_t raw = 0;
	int code = 0;
	if (strcmp(o.cmd, "write") == 0) {
		double s = run_write(&o, t, n, &raw);
		struct stat st;
		if (rank == 0 && !o.quiet && stat(o.path, &st) == 0)
			printf("write %s: %d ranks, %zu datasets, %.1f MB raw -> %.1f MB (%.3fx), %.3f s, "
			       "%.1f MB/s\n", o.filter, nranks, n, raw / 1e6, st.st_size / 1e6,
			       (double)raw / (double)st.st_size, s, raw / 1e6 / s);
	} else if (strcmp(o.cmd, "read") == 0) {
		int bad, anybad;
		double maxerr = 0, worst;
		double s = run_read(&o, t, n, &raw, &bad, &maxerr);
		MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
		MPI_Allreduce(&maxerr, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
		if (rank == 0 && !o.quiet)
			printf("read: %d ranks, %zu datasets, %.1f MB raw, %.3f s, %.1f MB/s, %s "
			       "(max error %g)\n", nranks, n, raw / 1e6, s, raw / 1e6 / s,
			       anybad ? "VALUES DIFFER" : o.max_error > 0 ? "within the bound" : "bit-exact",
			       worst);
		code = anybad ? 1 : 0;
	} else {
		die(2, "unknown command %s (write or read)", o.cmd);
	}
	for (size_t k = 0; k < n; k++)
		free((void *)t[k].data);
	free(t);
	alcm_input_free(in);
	MPI_Finalize();
	return code;
}
