/* flashkm.h — the public C types of flashkm: element types, status codes and
 * the shape of a (batched) k-means problem.
 *
 * Everything in the library returns an fkm_status and never exits; the text of
 * the last error is available from fkm_last_error(). Only the CLI's main()
 * turns a status into an exit code. */
#ifndef FLASHKM_H
#define FLASHKM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FKM_OK = 0,
  FKM_ERR_INPUT,         /* bad argument, config, file or data (NaN/Inf, label out of range) */
  FKM_ERR_NOT_SUPPORTED, /* this variant cannot run this problem on this device */
  FKM_ERR_OOM,           /* device or host memory exhausted */
  FKM_ERR_CUDA,          /* a CUDA / cuBLAS call failed, device still usable */
  FKM_ERR_CUDA_STICKY,   /* the CUDA context is corrupted: nothing more can run */
  FKM_ERR_NO_DEVICE,     /* a GPU variant was asked for and no GPU is present */
  FKM_ERR_IO,            /* a file could not be read or written */
  FKM_ERR_INTERNAL
} fkm_status;

typedef enum { FKM_F32 = 0, FKM_F16, FKM_BF16, FKM_DTYPE_COUNT } fkm_dtype;

typedef enum { FKM_OP_ASSIGN = 0, FKM_OP_UPDATE, FKM_OP_LLOYD, FKM_OP_FIT, FKM_OP_COUNT } fkm_op;

/* B independent problems, each N points of dimension D and K centroids.
 * Points are stored [B][N][D], centroids [B][K][D], row-major. */
typedef struct {
  int64_t B, N, K, D;
  fkm_dtype dtype;
} fkm_shape;

const char *fkm_status_name(fkm_status s);
const char *fkm_dtype_name(fkm_dtype t);
const char *fkm_op_name(fkm_op op);
size_t fkm_dtype_size(fkm_dtype t);
/* Returns 0 and sets *out on a known name, -1 otherwise. */
int fkm_dtype_from_name(const char *name, fkm_dtype *out);
int fkm_op_from_name(const char *name, fkm_op *out);

/* Text of the most recent error set by the library ("" if none). */
const char *fkm_last_error(void);

/* ---- k-means fit (Lloyd's algorithm on the GPU) ---- */

typedef enum { FKM_INIT_RANDOM = 0, FKM_INIT_KMEANSPP, FKM_INIT_KMEANS_PARALLEL } fkm_init;
typedef enum { FKM_TOL_SHIFT = 0, FKM_TOL_INERTIA } fkm_tol_mode;

typedef struct {
  int64_t B, N, D, K;       /* B independent problems of N points in D dims, K clusters each */
  fkm_dtype dtype;          /* of the points */
  fkm_init init;            /* random distinct points (default), k-means++ (greedy D² sampling, K
                               rounds over all points) or k-means|| (a few oversampled rounds, then
                               k-means++ on the candidates: much faster for large N·K) */
  fkm_tol_mode tol_mode;    /* stop when the largest centroid shift (absolute, default) or the
                               relative change of inertia falls below tol */
  double tol;               /* default 1e-4 */
  int max_iter;             /* default 300 */
  uint64_t seed;            /* same seed, same result */
  const char *assign_variant; /* NULL: "assign/flash" */
  const char *update_variant; /* NULL: "update/sort_inverse_det" (bitwise reproducible) */
  int progress;             /* one line per iteration on stderr */
  /* Out-of-core streaming (harness/fit_stream.c). 0 (default): automatic — the
   * data stay on the GPU when they (with labels, distances, centroids and
   * scratch) fit in ~90% of free device memory, else they stream from host
   * memory in chunks sized from free memory. > 0: always stream, in chunks of
   * this many points (for B > 1 and chunk_points >= N: whole batches,
   * floor(chunk_points / N) of them per chunk). */
  int64_t chunk_points;
} fkm_fit_options;

typedef struct {
  int iterations;
  int converged;
  double inertia;           /* of the returned labels and centroids (sum over all batches) */
  double seconds;           /* GPU wall time of init + iterations */
  double init_seconds;
  int history_len;
  double *inertia_history;  /* per iteration: inertia of the assignment step */
  double *shift_history;    /* per iteration: largest centroid shift of the update step */
  /* Streaming fits only (streamed = 1); 0 / NULL for in-memory fits. The
   * arrays have history_len entries. copy and compute time alone are
   * measured once per fit (one pass of copies without compute; the same
   * compute on already-resident chunks) and repeated in every entry. */
  int streamed;
  int64_t chunk_points_used;   /* points in a full chunk */
  int stream_chunks;           /* chunks per pass over the data */
  int stream_slots;            /* device chunk buffers in the ring (2-3) */
  int stream_staged;           /* 1: x could not be page-locked and went through a pinned staging ring */
  double stream_calibration_seconds; /* the two measuring passes (not in `seconds`) */
  int64_t *stream_h2d_bytes;         /* bytes copied host-to-device for the iteration */
  double *stream_copy_seconds;       /* copy time alone (one pass) */
  double *stream_compute_seconds;    /* compute time alone (one pass, chunks resident) */
  double *stream_iter_seconds;       /* measured iteration time (GPU events, end to end) */
  double *stream_efficiency;         /* max(copy alone, compute alone) / measured */
} fkm_fit_result;

void fkm_fit_defaults(fkm_fit_options *o);
/* x: host array [B][N][D] of o->dtype (finite values). Writes labels [B][N] and
 * centroids [B][K][D] (fp32) to host arrays. Needs a CUDA GPU. */
fkm_status fkm_fit(const fkm_fit_options *o, const void *x, int32_t *labels, float *centroids, fkm_fit_result *r);
void fkm_fit_result_free(fkm_fit_result *r);
const char *fkm_init_name(fkm_init i);
/* "random", "kmeans++" or "kmeans||" -> *out; 0 on success, -1 for any other name. */
int fkm_init_from_name(const char *name, fkm_init *out);

#ifdef __cplusplus
}
#endif
#endif
