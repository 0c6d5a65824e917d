/* reference.h — the fp64 CPU reference for assignment and update.
 *
 * Inputs are the rounded values the GPU sees (fp16/bf16/fp32 converted
 * exactly to double); all arithmetic is fp64 and distances are computed as
 * sum((x - c)^2), not through the norm expansion, so the reference carries no
 * cancellation error. Ties go to the lowest centroid index. */
#ifndef FKM_REFERENCE_H
#define FKM_REFERENCE_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Converts `count` elements of dtype to double. */
void fkm_ref_to_f64(const void *src, fkm_dtype t, int64_t count, double *dst);

/* Nearest of K centroids (K rows of D doubles) to one point of D doubles. */
void fkm_ref_nearest(const double *x, const double *c, int64_t K, int64_t D, int32_t *best_k, double *best_d);
double fkm_ref_sqdist(const double *x, const double *c, int64_t D);

/* Full assignment of every point of every batch. */
fkm_status fkm_ref_assign(const fkm_shape *s, const void *x, const void *c, int32_t *labels, float *dist);

/* Update in fp64: c_new[B][K][D] (an empty cluster keeps c_old), counts[B][K],
 * and rms[B][K] = sqrt(mean over the cluster of ||x||^2) (0 when empty), the
 * scale that centroid errors are judged against. Labels outside [0, K) are an
 * input error naming the first offending index. rms may be NULL. */
fkm_status fkm_ref_update(const fkm_shape *s, const void *x, const int32_t *labels, const float *c_old,
                          double *c_new, int64_t *counts, double *rms);

#ifdef __cplusplus
}
#endif
#endif
