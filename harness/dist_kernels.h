/* dist_kernels.h — the per-iteration scalars of the multi-GPU Lloyd
 * (harness/dist.c), computed so that every run gives the same bits. */
#ifndef FKM_DIST_KERNELS_H
#define FKM_DIST_KERNELS_H

#include "flashkm.h"
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKM_DIST_PARTIALS 264 /* blocks of the inertia sum (fixed: the order of the sum never changes) */

/* *inertia (device) = sum of dist[0..n) in fp64, in a fixed order: each of
 * FKM_DIST_PARTIALS blocks sums a fixed strided subset into partials[], one
 * block sums the partials in order. */
fkm_status fkm_dist_inertia(const float *dist, int64_t n, double *partials, double *inertia, cudaStream_t stream);

/* *out (device) = the sum of v[0..n) (device doubles) in a fixed order. */
fkm_status fkm_dist_sum(const double *v, int64_t n, double *out, cudaStream_t stream);

/* *shift2 (device, float bits) = the largest squared distance between a
 * centroid of c_old and the same one of c_new (nc centroids of D). */
fkm_status fkm_dist_max_shift(const float *c_old, const float *c_new, int64_t nc, int64_t D, unsigned *shift2,
                              cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
