/* fit_stream_kernels.h — the device side of the out-of-core fit (fit_stream.c):
 * inertia partials, the fp64 accumulation of chunk means and the per-iteration
 * finalise, as C-callable launchers. Every launcher only enqueues on stream and
 * reports a bad launch at once (FKM_CUDA_LAUNCH).
 *
 * All reductions have a fixed order (no float atomics), so a fit is bitwise
 * reproducible; the only atomic is an integer max in fkm_stream_finalise, whose
 * result does not depend on order. See fit_stream_kernels.cu. */
#ifndef FKM_FIT_STREAM_KERNELS_H
#define FKM_FIT_STREAM_KERNELS_H

#include "flashkm.h"
#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The inertia partials' grid: fixed (not the SM count), so inertia sums in the
 * same order on every GPU. One partial per warp. */
#define FKS_DIST_BLOCKS 132
#define FKS_DIST_THREADS 256
#define FKS_NPART (FKS_DIST_BLOCKS * FKS_DIST_THREADS / 32)

/* part[FKS_NPART]: thread t of the fixed grid (T threads) sums dist[t],
 * dist[t + T], ... in fp64, in that order; each warp adds its 32 sums with a
 * fixed butterfly and writes one partial. */
fkm_status fkm_stream_dist_partial(const float *dist, int64_t n, double *part, cudaStream_t stream);

/* One warp: lane l sums part[l], part[l + 32], ... in order, a fixed butterfly
 * adds the 32 sums, then *out += total (fp64). */
fkm_status fkm_stream_inertia(const double *part, int64_t npart, double *out, cudaStream_t stream);

/* For e < nk * D with k = e / D: sums[e] = fma(mean[e], cnt[k], sums[e]) in
 * fp64 when cnt[k] != 0; for k < nk: ctot[k] += cnt[k]. One thread owns each
 * element: no races, no atomics. */
fkm_status fkm_stream_accumulate(const float *mean, const int32_t *cnt, int64_t nk, int64_t D, double *sums,
                                 int32_t *ctot, cudaStream_t stream);

/* One warp per cluster k < nk: c_new = (float)(sums / ctot) (fp64 divide) when
 * ctot[k] > 0, else c_old; the squared shift sum_d (c_new - c_old)^2 (fp32 fma
 * per lane, then a fixed butterfly) goes to *shift2_bits as an integer max of
 * its float bits (the value is >= 0, so integer order is float order). */
fkm_status fkm_stream_finalise(const double *sums, const int32_t *ctot, const float *c_old, float *c_new, int64_t nk,
                               int64_t D, unsigned int *shift2_bits, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
