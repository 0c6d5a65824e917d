/* fixed_point.h — exact centroid sums in 64-bit fixed point.
 *
 * Every coordinate is scaled by 2^shift and rounded to an integer once
 * (exactly, for fp16/bf16 data, whose values are multiples of 2^-24 or
 * coarser), and the integers are summed with 64-bit atomics. Integer addition
 * is associative, so the sums are the same bits whatever the order of the
 * atomics, the split of the points into blocks, or into GPUs: the update of
 * `update/fixed_point` is bitwise reproducible run to run, and the
 * data-parallel Lloyd of harness/dist.c gives bitwise the same centroids on 1
 * and on R GPUs (an all-reduce of integers is exact). shift is chosen from the
 * largest |x| and the number of points so that no sum can overflow: the
 * resolution is then 2^-shift, about 2^-(62 - log2 N) of the largest |x|,
 * far below fp32's rounding of the result. */
#ifndef FKM_FIXED_POINT_H
#define FKM_FIXED_POINT_H

#include "flashkm.h"
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The shift for data whose largest |x| is max_abs, summed over at most
 * `points` points per cluster. */
int fkm_fixed_shift(double max_abs, int64_t points);

/* Largest |x| over count elements (device pointer), to *max_abs (host); synchronises. */
fkm_status fkm_fixed_max_abs(const void *x, fkm_dtype t, int64_t count, double *max_abs, cudaStream_t stream);

/* sums [B*K*D] and counts [B*K] (int64, two's complement in unsigned
 * storage) += the points x [B][N][D] of each label (labels [B][N]); labels
 * outside [0, K) are skipped and the first such flat index atomicMin'ed into
 * *bad (may be NULL). Zero the sums first. Enqueued on stream. */
fkm_status fkm_fixed_accumulate(const void *x, fkm_dtype t, const int32_t *labels, int64_t B, int64_t N, int64_t K,
                                int64_t D, int shift, unsigned long long *sums, unsigned long long *counts, int *bad,
                                cudaStream_t stream);

/* c_new = sums * 2^-shift / counts (fp64, rounded once to fp32); an empty
 * cluster keeps c_old; counts_out (int32, may be NULL) = counts. */
fkm_status fkm_fixed_finish(const unsigned long long *sums, const unsigned long long *counts, int64_t BK, int64_t D,
                            int shift, const float *c_old, float *c_new, int32_t *counts_out, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
