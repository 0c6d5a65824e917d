/* init.cu — initial centroids (see init.h).
 *
 * random:   K distinct rows per batch, drawn on the host by Floyd's algorithm
 *           from the seed, then gathered on the GPU. Distinct rows, unlike the
 *           public implementations' randperm-free draws, so no duplicate seeds.
 * kmeans++: greedy D² sampling on the GPU (L = 2 + ln K candidates per round,
 *           the one lowering the potential most is kept), no host round trip
 *           per round: a kernel folds the newest centre into each point's fp64
 *           min distance, CUB scans them, one block draws the candidates from
 *           the seed, a grid sums each candidate's potential in a fixed order,
 *           and one block keeps the best. Cost per round: L + 1 passes over X,
 *           so O(L·K·N·D); for K in the tens of thousands that takes seconds
 *           (k-means|| would parallelise it). Deterministic: no float atomics. */
#include "dtype.h"
#include "error.h"
#include "gen.h"
#include "init.h"

#include <cub/device/device_scan.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { FKM_STREAM_INIT = 17, FKM_STREAM_KPP = 18 };

__global__ void gather_rows_kernel(const void *__restrict__ x, int dtype, int64_t D, const int64_t *__restrict__ rows,
                                   int64_t n_rows, float *__restrict__ out) {
  const int64_t total = n_rows * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
    out[e] = fkm_load_as_f32(x, dtype, rows[e / D] * D + e % D);
}

/* Floyd's algorithm: K distinct values in [0, N), deterministic in (seed, batch). */
static fkm_status distinct_rows(uint64_t seed, int64_t b, int64_t N, int64_t K, int64_t *out) {
  int64_t cap = 1;
  while (cap < 2 * K) cap <<= 1;
  int64_t *table = (int64_t *)malloc(sizeof(int64_t) * (size_t)cap);
  if (!table) return fkm_fail(FKM_ERR_OOM, "init: out of host memory");
  for (int64_t i = 0; i < cap; i++) table[i] = -1;
  int64_t n = 0;
  for (int64_t j = N - K; j < N; j++) {
    int64_t t = (int64_t)(fkm_hash(seed, FKM_STREAM_INIT, (uint64_t)(b * N + j)) % (uint64_t)(j + 1));
    for (int pass = 0; pass < 2; pass++) { /* insert t, or j when t is taken */
      int64_t v = pass == 0 ? t : j, h = (int64_t)(fkm_mix64((uint64_t)v) & (uint64_t)(cap - 1));
      while (table[h] != -1 && table[h] != v) h = (h + 1) & (cap - 1);
      if (table[h] == v) continue; /* taken: try j */
      table[h] = v;
      out[n++] = v;
      break;
    }
  }
  free(table);
  return FKM_OK;
}

static fkm_status gather(const fkm_shape *s, const void *x, const int64_t *d_rows, int64_t n, float *out,
                         cudaStream_t stream) {
  int64_t blocks = (n * s->D + 255) / 256;
  gather_rows_kernel<<<(unsigned)(blocks < 8192 ? blocks : 8192), 256, 0, stream>>>(x, (int)s->dtype, s->D, d_rows, n, out);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static fkm_status init_random(const fkm_shape *s, uint64_t seed, const void *x, float *c32, cudaStream_t stream) {
  const int64_t n = s->B * s->K;
  int64_t *rows = (int64_t *)malloc(sizeof(int64_t) * (size_t)n), *d_rows = NULL;
  if (!rows) return fkm_fail(FKM_ERR_OOM, "init: out of host memory");
  fkm_status st = FKM_OK;
  for (int64_t b = 0; b < s->B && st == FKM_OK; b++) {
    st = distinct_rows(seed, b, s->N, s->K, rows + b * s->K);
    for (int64_t k = 0; k < s->K; k++) rows[b * s->K + k] += b * s->N; /* flat row index */
  }
  cudaError_t e = st == FKM_OK ? cudaMalloc((void **)&d_rows, sizeof(int64_t) * (size_t)n) : cudaSuccess;
  if (e == cudaSuccess && st == FKM_OK) e = cudaMemcpyAsync(d_rows, rows, sizeof(int64_t) * (size_t)n, cudaMemcpyHostToDevice, stream);
  if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "init: row indices to the GPU", __FILE__, __LINE__);
  if (st == FKM_OK) st = gather(s, x, d_rows, n, c32, stream);
  if (st == FKM_OK) {
    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "init: gather", __FILE__, __LINE__);
  }
  cudaFree(d_rows);
  free(rows);
  return st;
}

/* mind[n] = min(mind[n], ||x_n - c||²) in fp64 (first round: assign). One warp per point. */
__global__ void kpp_fold_kernel(const void *__restrict__ x, int dtype, int64_t N, int64_t D, const float *__restrict__ c,
                                double *__restrict__ mind, int first) {
  const int64_t n = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  double acc = 0.0;
  for (int64_t d = lane; d < D; d += 32) {
    double diff = (double)fkm_load_as_f32(x, dtype, n * D + d) - (double)c[d];
    acc += diff * diff;
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) mind[n] = first ? acc : fmin(mind[n], acc);
}

/* Draws L candidate rows, each with probability mind / sum(mind) (thread l: draw l). */
__global__ void kpp_draw_kernel(const double *__restrict__ cum, int64_t N, uint64_t seed, uint64_t round, int L,
                                int64_t *__restrict__ cand) {
  const int l = threadIdx.x;
  if (l >= L) return;
  const double total = cum[N - 1];
  const uint64_t h = fkm_hash(seed, FKM_STREAM_KPP, round * 64 + (uint64_t)l);
  if (!(total > 0.0)) { /* every point already coincides with a centre */
    cand[l] = (int64_t)(h % (uint64_t)N);
    return;
  }
  const double u = (double)(h >> 11) * 0x1.0p-53 * total;
  int64_t lo = 0, hi = N - 1; /* first index with cum > u */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (cum[mid] > u) hi = mid; else lo = mid + 1;
  }
  cand[l] = lo;
}

#define KPP_MAX_L 24
#define KPP_BLOCKS 264
#define KPP_THREADS 256

/* partial[block][l] = sum over the block's points of min(mind, ||x - x_cand_l||²),
 * in a fixed order (per-warp sums, then warps in order): the same bits every run. */
__global__ void kpp_potential_kernel(const void *__restrict__ x, int dtype, int64_t N, int64_t D,
                                     const double *__restrict__ mind, const int64_t *__restrict__ cand, int L,
                                     double *__restrict__ partial) {
  __shared__ double warp_sums[KPP_THREADS / 32][KPP_MAX_L];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t warps = (int64_t)gridDim.x * (KPP_THREADS / 32);
  for (int l = 0; l < L; l++) { /* candidate-major: one scalar accumulator, no local memory */
    const int64_t c = cand[l];
    double acc = 0.0;
    for (int64_t n = blockIdx.x * (int64_t)(KPP_THREADS / 32) + warp; n < N; n += warps) {
      double d2 = 0.0;
      for (int64_t d = lane; d < D; d += 32) {
        double diff = (double)fkm_load_as_f32(x, dtype, n * D + d) - (double)fkm_load_as_f32(x, dtype, c * D + d);
        d2 += diff * diff;
      }
      for (int o = 16; o > 0; o >>= 1) d2 += __shfl_xor_sync(0xffffffffu, d2, o);
      acc += fmin(mind[n], d2);
    }
    if (lane == 0) warp_sums[warp][l] = acc;
  }
  __syncthreads();
  if (threadIdx.x < L) {
    double t = 0.0;
    for (int w = 0; w < KPP_THREADS / 32; w++) t += warp_sums[w][threadIdx.x];
    partial[blockIdx.x * KPP_MAX_L + threadIdx.x] = t;
  }
}

/* Keeps the candidate that lowers the potential most (ties: the earlier draw) and copies its row. */
__global__ void kpp_choose_kernel(const double *__restrict__ partial, const int64_t *__restrict__ cand, int L,
                                  const void *__restrict__ x, int dtype, int64_t D, float *__restrict__ c_out) {
  __shared__ double totals[KPP_MAX_L];
  __shared__ int64_t chosen;
  if (threadIdx.x < L) {
    double t = 0.0;
    for (int b = 0; b < KPP_BLOCKS; b++) t += partial[b * KPP_MAX_L + threadIdx.x];
    totals[threadIdx.x] = t;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int best = 0;
    for (int l = 1; l < L; l++)
      if (totals[l] < totals[best]) best = l;
    chosen = cand[best];
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) c_out[d] = fkm_load_as_f32(x, dtype, chosen * D + d);
}

/* Greedy k-means++ (as scikit-learn): each round draws L = 2 + floor(ln K)
 * candidates by D² sampling and keeps the one that lowers the potential most,
 * which avoids the plain version's habit of placing two seeds in one cluster. */
static fkm_status init_kmeanspp(const fkm_shape *s, uint64_t seed, const void *x, float *c32, cudaStream_t stream) {
  const int64_t N = s->N, D = s->D, K = s->K;
  const size_t es = fkm_dtype_size(s->dtype);
  int L = 2 + (int)floor(log((double)K));
  if (L > KPP_MAX_L) L = KPP_MAX_L;
  double *mind = NULL, *cum = NULL, *partial = NULL;
  int64_t *cand = NULL;
  void *temp = NULL;
  size_t temp_bytes = 0;
  FKM_CUDA(cub::DeviceScan::InclusiveSum(NULL, temp_bytes, (const double *)NULL, (double *)NULL, (int)N));
  fkm_status st = FKM_OK;
  cudaError_t e = cudaMalloc((void **)&mind, sizeof(double) * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&cum, sizeof(double) * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&partial, sizeof(double) * KPP_BLOCKS * KPP_MAX_L);
  if (e == cudaSuccess) e = cudaMalloc((void **)&cand, sizeof(int64_t) * KPP_MAX_L);
  if (e == cudaSuccess) e = cudaMalloc(&temp, temp_bytes);
  if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means++ scratch", __FILE__, __LINE__);
  for (int64_t b = 0; b < s->B && st == FKM_OK; b++) {
    const void *xb = (const char *)x + (size_t)(b * N * D) * es;
    float *cb = c32 + b * K * D;
    const int64_t first = (int64_t)(fkm_hash(seed, FKM_STREAM_KPP, (uint64_t)b << 40) % (uint64_t)N);
    e = cudaMemcpyAsync(cand, &first, sizeof first, cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream); /* `first` lives on this stack frame */
    if (e != cudaSuccess) { st = fkm_cuda_fail_at(e, "k-means++ first centre", __FILE__, __LINE__); break; }
    st = gather(s, xb, cand, 1, cb, stream);
    for (int64_t r = 1; r < K && st == FKM_OK; r++) {
      kpp_fold_kernel<<<(unsigned)((N + 7) / 8), 256, 0, stream>>>(xb, (int)s->dtype, N, D, cb + (r - 1) * D, mind, r == 1);
      e = cudaGetLastError();
      if (e == cudaSuccess) e = cub::DeviceScan::InclusiveSum(temp, temp_bytes, mind, cum, (int)N, stream);
      if (e == cudaSuccess) {
        kpp_draw_kernel<<<1, 32, 0, stream>>>(cum, N, seed, ((uint64_t)b << 32) | (uint64_t)r, L, cand);
        kpp_potential_kernel<<<KPP_BLOCKS, KPP_THREADS, 0, stream>>>(xb, (int)s->dtype, N, D, mind, cand, L, partial);
        kpp_choose_kernel<<<1, 128, 0, stream>>>(partial, cand, L, xb, (int)s->dtype, D, cb + r * D);
        e = cudaGetLastError();
      }
      if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means++ round", __FILE__, __LINE__);
    }
  }
  if (st == FKM_OK) {
    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means++", __FILE__, __LINE__);
  }
  cudaFree(mind);
  cudaFree(cum);
  cudaFree(partial);
  cudaFree(cand);
  cudaFree(temp);
  return st;
}

extern "C" fkm_status fkm_init_centroids(const fkm_shape *s, fkm_init how, uint64_t seed, const void *x, float *c32,
                                         cudaStream_t stream) {
  if (s->K > s->N) return fkm_fail(FKM_ERR_INPUT, "K=%lld exceeds N=%lld", (long long)s->K, (long long)s->N);
  if (s->N > INT32_MAX && how == FKM_INIT_KMEANSPP)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "k-means++ handles N < 2^31 per batch");
  return how == FKM_INIT_KMEANSPP ? init_kmeanspp(s, seed, x, c32, stream) : init_random(s, seed, x, c32, stream);
}
