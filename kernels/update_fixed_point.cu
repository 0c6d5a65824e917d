/* update_fixed_point.cu — `update/fixed_point`: the centroid update with
 * exact integer sums (fixed_point.h), so the centroids are bitwise the same
 * whatever order the atomics land in, and whatever split of the points over
 * blocks or GPUs. The deterministic update of the multi-GPU Lloyd
 * (harness/dist.c); on one GPU a reproducible alternative to
 * update/sort_inverse_det that needs no sort.
 *
 * Each warp takes 32 consecutive points, groups the lanes whose points share
 * a cluster (__match_any_sync), sums each group's points in 64-bit registers
 * (lanes over the coordinates, coalesced) and adds the group's sums with one
 * 64-bit atomic per coordinate: skewed data (a few huge clusters) collapse to
 * few atomics, balanced data cost one atomic per coordinate as the fp32
 * atomic scatter does. */
#include "dtype.h"
#include "error.h"
#include "fixed_point.h"
#include "variant.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { FX_THREADS = 256, FX_PER_LANE = 4 };

extern "C" int fkm_fixed_shift(double max_abs, int64_t points) {
  int e = 0; /* 2^e > max_abs */
  if (max_abs > 0) {
    (void)frexp(max_abs, &e);
  } else {
    e = -60;
  }
  int l = 0; /* 2^l >= points */
  while (((int64_t)1 << l) < points && l < 62) l++;
  int s = 62 - e - l;
  if (s > 120) s = 120;
  if (s < -120) s = -120;
  return s;
}

__global__ void fx_max_abs_kernel(const void *__restrict__ x, int dtype, int64_t count, unsigned *__restrict__ out) {
  float m = 0.f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
    float v = fabsf(fkm_load_as_f32(x, dtype, i));
    m = v > m ? v : m; /* NaN never wins: inputs are checked finite on load */
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(m)); /* non-negative floats order as their bits */
}

extern "C" fkm_status fkm_fixed_max_abs(const void *x, fkm_dtype t, int64_t count, double *max_abs, cudaStream_t stream) {
  unsigned *d = NULL, h = 0;
  FKM_CUDA(cudaMalloc((void **)&d, sizeof(unsigned)));
  cudaError_t e = cudaMemsetAsync(d, 0, sizeof(unsigned), stream);
  if (e == cudaSuccess) {
    int64_t blocks = (count + 255) / 256;
    fx_max_abs_kernel<<<(unsigned)(blocks < 2048 ? (blocks > 0 ? blocks : 1) : 2048), 256, 0, stream>>>(x, (int)t, count, d);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  cudaFree(d);
  if (e != cudaSuccess) return fkm_cuda_fail_at(e, "largest |x|", __FILE__, __LINE__);
  float f;
  memcpy(&f, &h, sizeof f);
  *max_abs = f;
  return FKM_OK;
}

__global__ void __launch_bounds__(FX_THREADS) fx_accumulate_kernel(const void *__restrict__ x, int dtype,
                                                                 const int32_t *__restrict__ labels, int64_t B,
                                                                 int64_t N, int64_t K, int64_t D, float scale,
                                                                 unsigned long long *__restrict__ sums,
                                                                 unsigned long long *__restrict__ counts,
                                                                 int *__restrict__ bad) {
  const int lane = threadIdx.x & 31;
  const int64_t total = B * N;
  const int64_t warps = (int64_t)gridDim.x * (FX_THREADS / 32);
  for (int64_t base = (blockIdx.x * (int64_t)(FX_THREADS / 32) + threadIdx.x / 32) * 32; base < total;
       base += warps * 32) {
    const int64_t i = base + lane;
    int64_t bin = -1;
    if (i < total) {
      const int32_t k = labels[i];
      if (k >= 0 && k < K) bin = (i / N) * K + k;
      else if (bad) atomicMin(bad, (int)(i < INT_MAX ? i : INT_MAX));
    }
    const unsigned group_of_mine = __match_any_sync(0xffffffffu, bin);
    unsigned todo = __ballot_sync(0xffffffffu, bin >= 0);
    while (todo) {
      const int src = __ffs(todo) - 1;
      const unsigned group = __shfl_sync(0xffffffffu, group_of_mine, src);
      const int64_t b = __shfl_sync(0xffffffffu, bin, src);
      todo &= ~group;
      for (int64_t d0 = 0; d0 < D; d0 += 32 * FX_PER_LANE) {
        long long acc[FX_PER_LANE];
#pragma unroll
        for (int t = 0; t < FX_PER_LANE; t++) acc[t] = 0;
        for (unsigned g = group; g; g &= g - 1) {
          const int64_t row = base + (__ffs(g) - 1);
#pragma unroll
          for (int t = 0; t < FX_PER_LANE; t++) {
            const int64_t d = d0 + t * 32 + lane;
            if (d < D) acc[t] += __float2ll_rn(fkm_load_as_f32(x, dtype, row * D + d) * scale);
          }
        }
#pragma unroll
        for (int t = 0; t < FX_PER_LANE; t++) {
          const int64_t d = d0 + t * 32 + lane;
          if (d < D) atomicAdd(&sums[b * D + d], (unsigned long long)acc[t]);
        }
      }
      /* b and group are the same in every lane (shuffled from src), so any
       * one lane can add the count. Lane 0 rather than src: with lane == src,
       * ptxas for sm_90a kept bin and group_of_mine in local memory across
       * the loops above (a 20-byte spill). */
      if (lane == 0) atomicAdd(&counts[b], (unsigned long long)__popc(group));
    }
  }
}

static unsigned fx_grid(int64_t warps_needed) {
  int64_t blocks = (warps_needed + FX_THREADS / 32 - 1) / (FX_THREADS / 32);
  return (unsigned)(blocks < 132 * 16 ? (blocks > 0 ? blocks : 1) : 132 * 16);
}

extern "C" fkm_status fkm_fixed_accumulate(const void *x, fkm_dtype t, const int32_t *labels, int64_t B, int64_t N,
                                           int64_t K, int64_t D, int shift, unsigned long long *sums,
                                           unsigned long long *counts, int *bad, cudaStream_t stream) {
  if (B * N == 0) return FKM_OK;
  const float scale = ldexpf(1.f, shift);
  fx_accumulate_kernel<<<fx_grid((B * N + 31) / 32), FX_THREADS, 0, stream>>>(x, (int)t, labels, B, N, K, D, scale, sums,
                                                                             counts, bad);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

__global__ void fx_finish_kernel(const unsigned long long *__restrict__ sums, const unsigned long long *__restrict__ counts,
                                 int64_t BK, int64_t D, double inv_scale, const float *__restrict__ c_old,
                                 float *__restrict__ c_new, int32_t *__restrict__ counts_out) {
  const int64_t total = BK * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = e / D;
    const long long n = (long long)counts[k];
    c_new[e] = n > 0 ? (float)((double)(long long)sums[e] * inv_scale / (double)n) : c_old[e];
    if (counts_out && e % D == 0) counts_out[k] = (int32_t)n;
  }
}

extern "C" fkm_status fkm_fixed_finish(const unsigned long long *sums, const unsigned long long *counts, int64_t BK,
                                       int64_t D, int shift, const float *c_old, float *c_new, int32_t *counts_out,
                                       cudaStream_t stream) {
  const int64_t total = BK * D, blocks = (total + 255) / 256;
  fx_finish_kernel<<<(unsigned)(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192), 256, 0, stream>>>(
      sums, counts, BK, D, ldexp(1.0, -shift), c_old, c_new, counts_out);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

/* ---- the variant ---- */

typedef struct {
  unsigned long long *acc; /* sums [B*K*D] then counts [B*K]: one buffer, one memset (and one all-reduce) */
  int *bad;
  int shift;
} fx_state;

static void fx_teardown(void *state) {
  fx_state *st = (fx_state *)state;
  if (!st) return;
  cudaFree(st->acc);
  cudaFree(st->bad);
  free(st);
}

/* The shift comes from the data (largest |x|), measured here, untimed: in a
 * fit the points do not change between iterations. */
static fkm_status fx_setup(const fkm_problem *p, void **state) {
  const fkm_shape *s = &p->s;
  fx_state *st = (fx_state *)calloc(1, sizeof *st);
  if (!st) return fkm_fail(FKM_ERR_OOM, "update/fixed_point: out of host memory");
  double max_abs = 0;
  fkm_status rs = fkm_fixed_max_abs(p->x, s->dtype, s->B * s->N * s->D, &max_abs, 0);
  cudaError_t e = cudaSuccess;
  if (rs == FKM_OK) e = cudaMalloc((void **)&st->acc, sizeof(unsigned long long) * (size_t)(s->B * s->K * (s->D + 1)));
  if (rs == FKM_OK && e == cudaSuccess) e = cudaMalloc((void **)&st->bad, sizeof(int));
  if (rs == FKM_OK && e != cudaSuccess) rs = fkm_cuda_fail_at(e, "update/fixed_point scratch", __FILE__, __LINE__);
  if (rs != FKM_OK) {
    fx_teardown(st);
    return rs;
  }
  st->shift = fkm_fixed_shift(max_abs, s->N);
  *state = st;
  return FKM_OK;
}

__global__ void fx_reset_bad_kernel(int *bad) { *bad = INT_MAX; }

static fkm_status fx_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  const fkm_shape *s = &p->s;
  fx_state *st = (fx_state *)state;
  const int64_t BK = s->B * s->K;
  unsigned long long *sums = st->acc, *counts = st->acc + BK * s->D;
  FKM_CUDA(cudaMemsetAsync(st->acc, 0, sizeof(unsigned long long) * (size_t)(BK * (s->D + 1)), stream));
  fx_reset_bad_kernel<<<1, 1, 0, stream>>>(st->bad);
  FKM_CUDA_LAUNCH();
  FKM_TRY(fkm_fixed_accumulate(p->x, s->dtype, p->labels_in, s->B, s->N, s->K, s->D, st->shift, sums, counts, st->bad,
                               stream));
  return fkm_fixed_finish(sums, counts, BK, s->D, st->shift, p->c_old, p->c_new, p->counts, stream);
}

static fkm_status fx_check_input(const fkm_problem *p, void *state, cudaStream_t stream) {
  fx_state *st = (fx_state *)state;
  int bad = INT_MAX;
  FKM_CUDA(cudaMemcpyAsync(&bad, st->bad, sizeof bad, cudaMemcpyDeviceToHost, stream));
  FKM_CUDA(cudaStreamSynchronize(stream));
  if (bad == INT_MAX) return FKM_OK;
  int32_t label = 0;
  FKM_CUDA(cudaMemcpy(&label, p->labels_in + bad, sizeof label, cudaMemcpyDeviceToHost));
  return fkm_fail(FKM_ERR_INPUT, "label %d of point %lld (batch %lld) is outside [0, %lld)", label,
                  (long long)(bad % p->s.N), (long long)(bad / p->s.N), (long long)p->s.K);
}

extern "C" const fkm_variant fkm_update_fixed_point = {
    /* .name = */ "update/fixed_point",
    /* .op = */ FKM_OP_UPDATE,
    /* .summary = */
    "exact 64-bit fixed-point sums with warp-aggregated integer atomics: bitwise reproducible in any order and "
    "over any split of the points (the multi-GPU update), no sort",
    /* .min_cc = */ 70,
    /* .max_cc = */ 0,
    /* .supports = */ NULL,
    /* .setup = */ fx_setup,
    /* .run = */ fx_run,
    /* .teardown = */ fx_teardown,
    /* .describe = */ NULL,
    /* .check_input = */ fx_check_input,
    /* .phases = */ NULL,
};
