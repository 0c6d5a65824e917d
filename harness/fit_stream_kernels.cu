/* fit_stream_kernels.cu — the device kernels of the out-of-core fit
 * (fit_stream.c): inertia partials, the fp64 accumulation of the chunk means
 * and the per-iteration finalise.
 *
 * Exactness. Every element is owned by one thread and every sum has a fixed
 * order: grid-stride loops in index order, then a fixed xor butterfly
 * (16, 8, 4, 2, 1) per warp, each step `own + partner`. The arithmetic is
 * written with round-to-nearest intrinsics (__dadd_rn, __fma_rn, __ddiv_rn,
 * __fsub_rn, __fmaf_rn, __fadd_rn) so the compiler can neither contract nor
 * reassociate it. The only atomic is the integer max of the squared shift's
 * bits in fks_finalise, which is order-independent. */
#include "error.h"
#include "fit_stream_kernels.h"

#include <stdint.h>

#define FKS_FULL_MASK 0xffffffffu

/* Fixed butterfly over the 32 lanes of a warp: every lane ends with the same total. */
static __device__ __forceinline__ double fks_warp_sum_f64(double v) {
  v = __dadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 16));
  v = __dadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 8));
  v = __dadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 4));
  v = __dadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 2));
  v = __dadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 1));
  return v;
}

static __device__ __forceinline__ float fks_warp_sum_f32(float v) {
  v = __fadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 16));
  v = __fadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 8));
  v = __fadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 4));
  v = __fadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 2));
  v = __fadd_rn(v, __shfl_xor_sync(FKS_FULL_MASK, v, 1));
  return v;
}

/* Thread t of T sums dist[t], dist[t + T], ... in fp64, in that order; each
 * warp adds its 32 sums with the fixed butterfly and lane 0 writes
 * part[t / 32]. Every thread reaches the butterfly (those past n with 0). */
static __global__ void fks_dist_partial(const float *dist, uint64_t n, double *part) {
  const uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const uint64_t T = (uint64_t)blockDim.x * gridDim.x;
  double acc = 0.0;
  for (uint64_t i = t; i < n; i += T) acc = __dadd_rn(acc, (double)dist[i]);
  acc = fks_warp_sum_f64(acc);
  if ((threadIdx.x & 31u) == 0) part[t >> 5] = acc;
}

/* One warp: lane l sums part[l], part[l + 32], ... in order, the fixed
 * butterfly adds the 32 sums, thread 0 does *out += total. */
static __global__ void fks_inertia(const double *part, uint64_t n, double *out) {
  double acc = 0.0;
  for (uint64_t i = threadIdx.x; i < n; i += 32) acc = __dadd_rn(acc, part[i]);
  acc = fks_warp_sum_f64(acc);
  if (threadIdx.x == 0) *out = __dadd_rn(*out, acc);
}

/* For e < nk*D with k = e / D: sums[e] = fma(mean[e], cnt[k], sums[e]) in fp64
 * when cnt[k] != 0; for e < nk: ctot[e] += cnt[e] (in the same grid-stride
 * loop, before the sum). One thread owns each e: no races, no atomics. */
static __global__ void fks_accumulate(const float *mean, const int32_t *cnt, uint64_t nk, uint64_t D, double *sums,
                                      int32_t *ctot) {
  const uint64_t total = nk * D;
  const uint64_t stride = (uint64_t)blockDim.x * gridDim.x;
  for (uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    if (e < nk) ctot[e] = (int32_t)((uint32_t)ctot[e] + (uint32_t)cnt[e]); /* wrapping 32-bit add */
    const int32_t c = cnt[e / D];
    if (c != 0) sums[e] = __fma_rn((double)mean[e], (double)c, sums[e]);
  }
}

/* One warp per cluster w < nk. c_new = (float)(sums / ctot) for a cluster with
 * ctot > 0, else c_old; the squared shift sum_d (c_new - c_old)^2 (fp32 fma per
 * lane over d = lane, lane + 32, ..., then the fixed butterfly) goes to
 * *shift2_bits with an integer max of its bits (the value is >= 0, so integer
 * order is float order). A warp past nk returns as a whole (blockDim is a
 * multiple of 32), before its shuffles. */
static __global__ void fks_finalise(const double *sums, const int32_t *ctot, const float *c_old, float *c_new,
                                    uint64_t nk, uint64_t D, unsigned int *shift2_bits) {
  const uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const uint64_t w = t >> 5;
  const unsigned lane = threadIdx.x & 31u;
  if (w >= nk) return;
  const int32_t c = ctot[w];
  const double cd = (double)c;
  const bool nonempty = c > 0;
  const uint64_t base = w * D;
  float acc = 0.0f;
  for (uint64_t d = lane; d < D; d += 32) {
    const uint64_t i = base + d;
    const float old = c_old[i];
    const float nv = nonempty ? __double2float_rn(__ddiv_rn(sums[i], cd)) : old;
    c_new[i] = nv;
    const float diff = __fsub_rn(nv, old);
    acc = __fmaf_rn(diff, diff, acc);
  }
  acc = fks_warp_sum_f32(acc);
  if (lane == 0) atomicMax(shift2_bits, __float_as_uint(acc));
}

static unsigned fks_blocks(int64_t blocks) { return (unsigned)(blocks < 1 ? 1 : blocks); }

extern "C" fkm_status fkm_stream_dist_partial(const float *dist, int64_t n, double *part, cudaStream_t stream) {
  fks_dist_partial<<<FKS_DIST_BLOCKS, FKS_DIST_THREADS, 0, stream>>>(dist, (uint64_t)n, part);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

extern "C" fkm_status fkm_stream_inertia(const double *part, int64_t npart, double *out, cudaStream_t stream) {
  fks_inertia<<<1, 32, 0, stream>>>(part, (uint64_t)npart, out);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

extern "C" fkm_status fkm_stream_accumulate(const float *mean, const int32_t *cnt, int64_t nk, int64_t D, double *sums,
                                            int32_t *ctot, cudaStream_t stream) {
  const int64_t blocks = (nk * D + 255) / 256;
  fks_accumulate<<<fks_blocks(blocks < 2048 ? blocks : 2048), 256, 0, stream>>>(mean, cnt, (uint64_t)nk,
                                                                                (uint64_t)D, sums, ctot);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

extern "C" fkm_status fkm_stream_finalise(const double *sums, const int32_t *ctot, const float *c_old, float *c_new,
                                          int64_t nk, int64_t D, unsigned int *shift2_bits, cudaStream_t stream) {
  fks_finalise<<<fks_blocks((nk * 32 + 255) / 256), 256, 0, stream>>>(sums, ctot, c_old, c_new, (uint64_t)nk,
                                                                      (uint64_t)D, shift2_bits);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}
