/* npy.h — reading and writing NumPy .npy files (format versions 1.0-3.0).
 *
 * Readable: little-endian float16 ('<f2') and float32 ('<f4'), C order, 2-D
 * (N, D) or 3-D (B, N, D). Anything else (other dtypes, big-endian, Fortran
 * order, object arrays, truncated data) is FKM_ERR_INPUT with a message that
 * names the file and what is wrong. Writable: '<f4', '<f2' and '<i4'. */
#ifndef FKM_NPY_H
#define FKM_NPY_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FKM_NPY_F32 = 0, FKM_NPY_F16, FKM_NPY_I32 } fkm_npy_type;

typedef struct {
  fkm_npy_type type;
  int ndim;             /* 2 or 3 */
  int64_t shape[3];     /* ndim entries used */
  int64_t data_offset;  /* bytes from the start of the file to the first element */
} fkm_npy_header;

fkm_status fkm_npy_read_header(const char *path, fkm_npy_header *h);

/* Reads the first `count` elements (C order) and converts them to `dtype`
 * (round to nearest even), writing count * fkm_dtype_size(dtype) bytes to dst.
 * Fails if the file holds fewer than count elements. Only float files. */
fkm_status fkm_npy_load(const char *path, int64_t count, fkm_dtype dtype, void *dst);

/* The same checks as fkm_npy_load, without a copy: maps the file read-only and points
 * m->data at its first `count` elements, when they are already of `dtype`. Returns
 * FKM_ERR_NOT_SUPPORTED when they need a conversion (then load them instead). Why: a
 * file larger than half the host memory can still be fitted, streamed from the mapping. */
typedef struct {
  void *base;
  size_t length;
  const void *data;
} fkm_npy_mapping;
fkm_status fkm_npy_map(const char *path, int64_t count, fkm_dtype dtype, fkm_npy_mapping *m);
void fkm_npy_unmap(fkm_npy_mapping *m);

/* fkm_npy_write_from's source: fills dst with elements [first, first + n) in the
 * file's element type, native byte order. */
typedef fkm_status (*fkm_npy_fill_fn)(void *ctx, int64_t first, int64_t n, void *dst);

/* Writes an array of `ndim` dims (1..3) of type `type`, asking `fill` for it a slice at
 * a time (the data never need to be in host memory at once). */
fkm_status fkm_npy_write_from(const char *path, fkm_npy_type type, int ndim, const int64_t *shape, fkm_npy_fill_fn fill,
                              void *ctx);

/* Writes an array of `ndim` dims (1..3) of type `type` from `data`. */
fkm_status fkm_npy_write(const char *path, fkm_npy_type type, int ndim, const int64_t *shape, const void *data);

#ifdef __cplusplus
}
#endif
#endif
