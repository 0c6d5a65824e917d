/* init.cu — initial centroids (see init.h).
 *
 * random:   K distinct rows per batch, drawn on the host by Floyd's algorithm
 *           from the seed, then gathered on the GPU. Distinct rows, unlike the
 *           public implementations' randperm-free draws, so no duplicate seeds.
 * kmeans++: D² sampling on the GPU, one centre per round, no host round trip
 *           per round: a kernel folds the newest centre into each point's
 *           fp64 min distance, CUB scans the distances, and a one-block kernel
 *           draws u·total from the seed, binary-searches it and copies the row.
 *           Cost per round: one pass over X, so O(K·N·D); for K in the tens of
 *           thousands that takes seconds (k-means|| would parallelise it). */
#include "dtype.h"
#include "error.h"
#include "gen.h"
#include "init.h"

#include <cub/device/device_scan.cuh>
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

/* Draws the next centre with probability mind / sum(mind) and copies its row to c_out. */
__global__ void kpp_pick_kernel(const double *__restrict__ cum, int64_t N, uint64_t seed, uint64_t draw,
                                const void *__restrict__ x, int dtype, int64_t D, float *__restrict__ c_out) {
  __shared__ int64_t chosen;
  if (threadIdx.x == 0) {
    const double total = cum[N - 1];
    const uint64_t h = fkm_hash(seed, FKM_STREAM_KPP, draw);
    int64_t pick;
    if (!(total > 0.0)) {
      pick = (int64_t)(h % (uint64_t)N); /* every point already coincides with a centre */
    } else {
      const double u = (double)(h >> 11) * 0x1.0p-53 * total;
      int64_t lo = 0, hi = N - 1; /* first index with cum > u */
      while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > u) hi = mid; else lo = mid + 1;
      }
      pick = lo;
    }
    chosen = pick;
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) c_out[d] = fkm_load_as_f32(x, dtype, chosen * D + d);
}

static fkm_status init_kmeanspp(const fkm_shape *s, uint64_t seed, const void *x, float *c32, cudaStream_t stream) {
  const int64_t N = s->N, D = s->D, K = s->K;
  const size_t es = fkm_dtype_size(s->dtype);
  double *mind = NULL, *cum = NULL;
  void *temp = NULL;
  size_t temp_bytes = 0;
  FKM_CUDA(cub::DeviceScan::InclusiveSum(NULL, temp_bytes, (const double *)NULL, (double *)NULL, (int)N));
  fkm_status st = FKM_OK;
  cudaError_t e = cudaMalloc((void **)&mind, sizeof(double) * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&cum, sizeof(double) * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc(&temp, temp_bytes);
  if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means++ scratch", __FILE__, __LINE__);
  for (int64_t b = 0; b < s->B && st == FKM_OK; b++) {
    const void *xb = (const char *)x + (size_t)(b * N * D) * es;
    float *cb = c32 + b * K * D;
    const int64_t first = (int64_t)(fkm_hash(seed, FKM_STREAM_KPP, (uint64_t)b << 32) % (uint64_t)N);
    int64_t *d_first = NULL;
    e = cudaMalloc((void **)&d_first, sizeof(int64_t));
    if (e == cudaSuccess) e = cudaMemcpyAsync(d_first, &first, sizeof first, cudaMemcpyHostToDevice, stream);
    if (e != cudaSuccess) { st = fkm_cuda_fail_at(e, "k-means++ first centre", __FILE__, __LINE__); break; }
    st = gather(s, xb, d_first, 1, cb, stream);
    if (st == FKM_OK) e = cudaStreamSynchronize(stream);
    cudaFree(d_first);
    for (int64_t r = 1; r < K && st == FKM_OK; r++) {
      kpp_fold_kernel<<<(unsigned)((N + 7) / 8), 256, 0, stream>>>(xb, (int)s->dtype, N, D, cb + (r - 1) * D, mind, r == 1);
      e = cudaGetLastError();
      if (e == cudaSuccess) e = cub::DeviceScan::InclusiveSum(temp, temp_bytes, mind, cum, (int)N, stream);
      if (e == cudaSuccess) {
        kpp_pick_kernel<<<1, 128, 0, stream>>>(cum, N, seed, ((uint64_t)b << 32) | (uint64_t)r, xb, (int)s->dtype, D, cb + r * D);
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
