/*
 * HDF5 seeds for fuzz_hdf5: small files made with libhdf5 (groups, attributes, chunked and
 * deflated data, big-endian, compound, enum bool, variable-length strings, soft links,
 * a named datatype), each as a file image (options byte 0x00) and as the ATTR structure
 * the bridge derives from it (options byte 0x80).
 *
 *   alcm-fuzz-corpus-hdf5 OUTDIR      writes OUTDIR/hdf5/<name>
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "alcm_hdf5.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *outdir;

#define DIE(...)                                                                        \
	do {                                                                            \
		fprintf(stderr, "alcm-fuzz-corpus-hdf5: " __VA_ARGS__);                 \
		fputc('\n', stderr);                                                    \
		exit(1);                                                                \
	} while (0)

static void put(const char *name, const void *buf, size_t len, int opt)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/hdf5", outdir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/hdf5/%s", outdir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		DIE("cannot create '%s': %s", path, strerror(errno));
	fwrite(buf, 1, len, f);
	fputc(opt, f);
	if (fclose(f) != 0)
		DIE("cannot write '%s'", path);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
	if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

/* Writes the file at `path` into the corpus, and its structure. */
static void emit(const char *path, const char *name)
{
	size_t len;
	uint8_t *img = slurp(path, &len);
	if (!img)
		DIE("cannot read back %s", path);
	put(name, img, len, 0x00);
	alcm_h5_input *in = NULL;
	int st = alcm_h5_input_open_memory(&in, img, len, NULL, ALCM_H5_SKIP_UNSUPPORTED);
	const void *sb;
	size_t sl;
	if (st || alcm_h5_input_structure(in, &sb, &sl))
		DIE("the bridge refuses seed %s: %s", name, alcm_h5_input_detail(in));
	char sname[256];
	snprintf(sname, sizeof(sname), "%s-structure", name);
	put(sname, sb, sl, 0x80);
	alcm_h5_input_free(in);
	free(img);
	unlink(path);
}

static void dataset(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
                    const void *data, hid_t dcpl)
{
	hid_t sp = H5Screate_simple(rank, dims, NULL);
	hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
		DIE("dataset %s", name);
	H5Dclose(ds);
	H5Sclose(sp);
}

static void attr_int(hid_t obj, const char *name, int v)
{
	hid_t sp = H5Screate(H5S_SCALAR);
	hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT, sp, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, H5T_NATIVE_INT, &v);
	H5Aclose(a);
	H5Sclose(sp);
}

static void attr_str(hid_t obj, const char *name, const char *s)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	H5Tset_size(t, strlen(s) + 1);
	hid_t sp = H5Screate(H5S_SCALAR);
	hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, t, s);
	H5Aclose(a);
	H5Sclose(sp);
	H5Tclose(t);
}

static hid_t create(const char *path, int latest)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	if (latest)
		H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	H5Pclose(fapl);
	if (f < 0)
		DIE("cannot create %s", path);
	return f;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: alcm-fuzz-corpus-hdf5 OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	char path[4096];
	snprintf(path, sizeof(path), "%s/.seed.h5", outdir);
	float f6[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
	double d4[4] = {0.25, -1, 1e300, 2};
	int32_t i5[5] = {1, -2, 3, -4, 5};

	/* Plain: a float matrix and an int vector in the root group. */
	hid_t f = create(path, 0);
	dataset(f, "w", H5T_NATIVE_FLOAT, 2, (hsize_t[]){2, 3}, f6, H5P_DEFAULT);
	dataset(f, "ids", H5T_STD_I32LE, 1, (hsize_t[]){5}, i5, H5P_DEFAULT);
	H5Fclose(f);
	emit(path, "plain");

	/* Groups, attributes, chunked + shuffle + deflate, big-endian, an empty group. */
	f = create(path, 0);
	hid_t g = H5Gcreate2(f, "model/layer0", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (g < 0) {
		hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
		H5Pset_create_intermediate_group(lcpl, 1);
		g = H5Gcreate2(f, "model/layer0", lcpl, H5P_DEFAULT, H5P_DEFAULT);
		H5Pclose(lcpl);
	}
	attr_str(g, "kind", "dense");
	attr_int(f, "version", 3);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, 1, (hsize_t[]){2});
	H5Pset_shuffle(dcpl);
	H5Pset_deflate(dcpl, 6);
	dataset(g, "kernel", H5T_NATIVE_DOUBLE, 1, (hsize_t[]){4}, d4, dcpl);
	H5Pclose(dcpl);
	dataset(g, "bias_be", H5T_STD_I32BE, 1, (hsize_t[]){5}, i5, H5P_DEFAULT);
	hid_t ds = H5Dopen2(g, "kernel", H5P_DEFAULT);
	attr_int(ds, "trainable", 1);
	H5Dclose(ds);
	H5Gclose(g);
	g = H5Gcreate2(f, "empty", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Gclose(g);
	H5Lcreate_soft("/model/layer0/kernel", f, "alias", H5P_DEFAULT, H5P_DEFAULT);
	H5Fclose(f);
	emit(path, "groups-attrs-deflate");

	/* Newest file format: compound, enum bool (h5py), vlen strings, named datatype. */
	f = create(path, 1);
	struct { int32_t a; float b; } rec[2] = {{1, 0.5f}, {2, -1.5f}};
	hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof(rec[0]));
	H5Tinsert(ct, "a", 0, H5T_NATIVE_INT32);
	H5Tinsert(ct, "b", 4, H5T_NATIVE_FLOAT);
	dataset(f, "records", ct, 1, (hsize_t[]){2}, rec, H5P_DEFAULT);
	H5Tcommit2(f, "record_t", ct, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Tclose(ct);
	hid_t et = H5Tenum_create(H5T_NATIVE_INT8);
	int8_t v0 = 0, v1 = 1, flags[3] = {1, 0, 1};
	H5Tenum_insert(et, "FALSE", &v0);
	H5Tenum_insert(et, "TRUE", &v1);
	dataset(f, "flags", et, 1, (hsize_t[]){3}, flags, H5P_DEFAULT);
	H5Tclose(et);
	hid_t st = H5Tcopy(H5T_C_S1);
	H5Tset_size(st, H5T_VARIABLE);
	const char *words[2] = {"alpha", "beta"};
	dataset(f, "words", st, 1, (hsize_t[]){2}, words, H5P_DEFAULT);
	H5Tclose(st);
	uint16_t h3[3] = {0x3c00, 0xc000, 0x7c00};
	dataset(f, "half", H5T_NATIVE_UINT16, 1, (hsize_t[]){3}, h3, H5P_DEFAULT);
	hid_t sp = H5Screate(H5S_SCALAR);
	ds = H5Dcreate2(f, "scalar", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d4);
	H5Dclose(ds);
	H5Sclose(sp);
	H5Fclose(f);
	emit(path, "latest-compound-enum-vlen");
	return 0;
}
