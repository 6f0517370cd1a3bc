/*
 * libhdf5 side of the bridge: version shims, the guard, datatype and value conversion
 * (h5_type.c). Included only by files that call libhdf5. Not installed.
 */
#ifndef ALCM_H5_HDF5_H
#define ALCM_H5_HDF5_H

#include "h5_internal.h"

#include <hdf5.h>

/* 1.12 replaced addresses by tokens and renamed the info structs; 1.10 is the floor. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t ah5_oinfo_t;
typedef H5L_info2_t ah5_linfo_t;
typedef H5O_token_t ah5_addr_t;
#define ah5_oinfo_by_name(loc, name, info, lapl) \
	H5Oget_info_by_name3((loc), (name), (info), H5O_INFO_BASIC, (lapl))
#define ah5_literate H5Literate2
#define AH5_OINFO_ADDR(i) ((i).token)
#define AH5_LINFO_ADDR(i) ((i)->u.token)
#define ah5_reclaim(type, space, buf) H5Treclaim((type), (space), H5P_DEFAULT, (buf))
#else
typedef H5O_info_t ah5_oinfo_t;
typedef H5L_info_t ah5_linfo_t;
typedef haddr_t ah5_addr_t;
#define ah5_oinfo_by_name(loc, name, info, lapl) \
	H5Oget_info_by_name2((loc), (name), (info), H5O_INFO_BASIC, (lapl))
#define ah5_literate H5Literate
#define AH5_OINFO_ADDR(i) ((i).addr)
#define AH5_LINFO_ADDR(i) ((i)->u.address)
#define ah5_reclaim(type, space, buf) H5Dvlen_reclaim((type), (space), H5P_DEFAULT, (buf))
#endif

/*
 * Switches libhdf5's error printing off (the library never prints) and, unless plugins
 * are allowed, its plugin loading; leave() restores both, so that the caller's own HDF5
 * use is untouched.
 */
typedef struct ah5_guard {
	H5E_auto2_t func;
	void *data;
	unsigned plugin_state;
	int plugin_saved;
} ah5_guard;

void ah5_guard_enter(ah5_guard *g, int allow_plugins);
void ah5_guard_leave(ah5_guard *g);

/* The alcm filter (h5_filter.c): its H5Z_class2_t, for the plugin's H5PLget_plugin_info;
 * and its in-process registration, when no filter of its id is registered yet (the guard
 * does it on entry, so that the bridge decodes alcm-filtered datasets itself). */
const void *ah5_filter_class(void);
void ah5_filter_register(void);

/*
 * Where an output's file driver (h5_vfd.c) writes: a descriptor the caller owns, and what
 * happened. After the first failed write or truncation (`err`, an errno) or once `discard`
 * is set, writes succeed without touching the file; with `lenient` even the first failure
 * is reported only in `err`. H5Fclose() then cannot fail for I/O, which libhdf5 1.10 cannot
 * survive (the freed file keeps its id, and the exit handler closes it again).
 */
typedef struct ah5_sink {
	int fd;
	int err;
	int lenient;
	int discard;
} ah5_sink;

/* A file access property list for H5Fcreate() through `s`, which must outlive the file.
 * @return the list (close it) or H5I_INVALID_HID. */
hid_t ah5_sink_fapl(ah5_sink *s);

/* Appends " (hdf5: <innermost message>)" of the error stack to a detail line and clears
 * the stack. */
void ah5_append_hdf5_error(char *detail);
/* 1 if libhdf5's error stack holds a system or file I/O error (a write that failed, a full
 * disk), 0 if libhdf5 refused the request itself (what was asked cannot be in a file). */
int ah5_error_is_io(void);
/* Closes any HDF5 id (>= 0). */
void ah5_close(hid_t id);

/*
 * Serializes a datatype as a descriptor. @return ALCM_OK, or ALCM_E_UNSUPPORTED with a
 * reason in why (references, time, VAX floats, sizes over AH5_MAX_ELEM, variable-length
 * data inside another type), or ALCM_E_NOMEM / ALCM_E_LIMIT from the buffer.
 */
int ah5_type_encode(hid_t type, ah5buf *b, char *why);
/* Builds a datatype from a checked descriptor and verifies that it serializes back to the
 * same bytes. @return the type (close it) or H5I_INVALID_HID with a reason in why. */
hid_t ah5_type_build(const uint8_t *p, size_t n, char *why);

void ah5_space_encode(hid_t space, ah5buf *b, ah5_space_info *si);
hid_t ah5_space_build(const ah5_space_info *si);

/*
 * Reads the value of an attribute (is_attr) or a dataset into the payload encoding:
 * count elements of file type `ftype` (classified as ti). `budget` bounds the bytes the
 * read may allocate (checked before reading fixed-size values).
 */
int ah5_value_read(hid_t obj, int is_attr, hid_t ftype, const ah5_type_info *ti,
                   uint64_t count, uint64_t budget, ah5buf *b, char *why);
/* Writes a checked payload value to an attribute or dataset of file type ftype. */
int ah5_value_write(hid_t obj, int is_attr, hid_t ftype, const ah5_type_info *ti,
                    uint64_t count, const uint8_t *val, uint64_t len, char *why);

#endif
