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
 *           so O(L·K·N·D): seconds already at K = 1024 and N = 1M.
 *           Deterministic: no float atomics.
 * kmeans||: a few rounds of oversampled D² draws folded in with FlashAssign,
 *           then weighted k-means++ on the candidates (below). */
#include "dtype.h"
#include "error.h"
#include "gen.h"
#include "init.h"
#include "variant.h"

#include <cub/device/device_radix_sort.cuh>
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

/* mind[n] = min(mind[n], w_n ||x_n - c||²) in fp64 (first round: assign); w = NULL: all 1.
 * One warp per point. */
__global__ void kpp_fold_kernel(const void *__restrict__ x, int dtype, int64_t N, int64_t D, const float *__restrict__ c,
                                const double *__restrict__ w, double *__restrict__ mind, int first) {
  const int64_t n = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  double acc = 0.0;
  for (int64_t d = lane; d < D; d += 32) {
    double diff = (double)fkm_load_as_f32(x, dtype, n * D + d) - (double)c[d];
    acc += diff * diff;
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (w) acc *= w[n];
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
                                     const double *__restrict__ w, const double *__restrict__ mind,
                                     const int64_t *__restrict__ cand, int L, double *__restrict__ partial) {
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
      if (w) d2 *= w[n];
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
  if (L > 1 && threadIdx.x < L) { /* L = 1 (plain k-means++): no potentials were computed */
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

/* Scratch of (weighted) k-means++ over up to n_max points. */
typedef struct {
  double *mind, *cum, *partial;
  int64_t *cand;
  void *temp;
  size_t temp_bytes;
} kpp_scratch;

static void kpp_scratch_free(kpp_scratch *k) {
  cudaFree(k->mind);
  cudaFree(k->cum);
  cudaFree(k->partial);
  cudaFree(k->cand);
  cudaFree(k->temp);
  memset(k, 0, sizeof *k);
}

static fkm_status kpp_scratch_alloc(int64_t n_max, kpp_scratch *k) {
  memset(k, 0, sizeof *k);
  FKM_CUDA(cub::DeviceScan::InclusiveSum(NULL, k->temp_bytes, (const double *)NULL, (double *)NULL, (int)n_max));
  cudaError_t e = cudaMalloc((void **)&k->mind, sizeof(double) * (size_t)n_max);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->cum, sizeof(double) * (size_t)n_max);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->partial, sizeof(double) * KPP_BLOCKS * KPP_MAX_L);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->cand, sizeof(int64_t) * KPP_MAX_L);
  if (e == cudaSuccess) e = cudaMalloc(&k->temp, k->temp_bytes);
  if (e != cudaSuccess) {
    kpp_scratch_free(k);
    return fkm_cuda_fail_at(e, "k-means++ scratch", __FILE__, __LINE__);
  }
  return FKM_OK;
}

/* Greedy k-means++ (as scikit-learn) on n points xb [n][D] with optional
 * weights w (device, NULL: 1): each round draws L candidates by D² sampling
 * (probability w·d²) and keeps the one that lowers the potential most, which
 * avoids the plain version's habit of placing two seeds in one cluster;
 * L = 1 is plain k-means++. K centres into cb. `salt` separates the draws of
 * different problems. */
static fkm_status kmeanspp_one(const void *xb, int dtype, int64_t n, int64_t D, int64_t K, const double *w, int L,
                               uint64_t seed, uint64_t salt, kpp_scratch *k, float *cb, cudaStream_t stream) {
  const fkm_shape one = {1, n, K, D, (fkm_dtype)dtype};
  const int64_t first = (int64_t)(fkm_hash(seed, FKM_STREAM_KPP, salt << 40) % (uint64_t)n);
  cudaError_t e = cudaMemcpyAsync(k->cand, &first, sizeof first, cudaMemcpyHostToDevice, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream); /* `first` lives on this stack frame */
  if (e != cudaSuccess) return fkm_cuda_fail_at(e, "k-means++ first centre", __FILE__, __LINE__);
  FKM_TRY(gather(&one, xb, k->cand, 1, cb, stream));
  for (int64_t r = 1; r < K; r++) {
    kpp_fold_kernel<<<(unsigned)((n + 7) / 8), 256, 0, stream>>>(xb, dtype, n, D, cb + (r - 1) * D, w, k->mind, r == 1);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cub::DeviceScan::InclusiveSum(k->temp, k->temp_bytes, k->mind, k->cum, (int)n, stream);
    if (e == cudaSuccess) {
      kpp_draw_kernel<<<1, 32, 0, stream>>>(k->cum, n, seed, (salt << 32) | (uint64_t)r, L, k->cand);
      if (L > 1)
        kpp_potential_kernel<<<KPP_BLOCKS, KPP_THREADS, 0, stream>>>(xb, dtype, n, D, w, k->mind, k->cand, L, k->partial);
      kpp_choose_kernel<<<1, 128, 0, stream>>>(k->partial, k->cand, L, xb, dtype, D, cb + r * D);
      e = cudaGetLastError();
    }
    if (e != cudaSuccess) return fkm_cuda_fail_at(e, "k-means++ round", __FILE__, __LINE__);
  }
  return FKM_OK;
}

static int greedy_trials(int64_t K) {
  int L = 2 + (int)floor(log((double)K));
  return L > KPP_MAX_L ? KPP_MAX_L : L;
}

static fkm_status init_kmeanspp(const fkm_shape *s, uint64_t seed, const void *x, float *c32, cudaStream_t stream) {
  const size_t es = fkm_dtype_size(s->dtype);
  kpp_scratch k;
  FKM_TRY(kpp_scratch_alloc(s->N, &k));
  fkm_status st = FKM_OK;
  for (int64_t b = 0; b < s->B && st == FKM_OK; b++)
    st = kmeanspp_one((const char *)x + (size_t)(b * s->N * s->D) * es, (int)s->dtype, s->N, s->D, s->K, NULL,
                      greedy_trials(s->K), seed, (uint64_t)b, &k, c32 + b * s->K * s->D, stream);
  if (st == FKM_OK) {
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means++", __FILE__, __LINE__);
  }
  kpp_scratch_free(&k);
  return st;
}

/* ---- k-means|| (Bahmani et al. 2012) -------------------------------------
 *
 * Greedy k-means++ is K sequential rounds over all N points. k-means|| takes
 * R = 5 rounds instead, each drawing ELL = 2K points at once with probability
 * proportional to their squared distance to the candidates so far (as the
 * ELL smallest keys -ln(u)/d², the Efraimidis-Spirakis weighted sample without
 * replacement: a fixed count, distinct points), and folding the new
 * candidates into every point's distance with FlashAssign on tensor cores.
 * The 1 + R·ELL candidates are weighted by the points nearest to each (one
 * more FlashAssign) and reduced to K centres by weighted k-means++ on the
 * candidates alone (greedy for K <= 4096; plain D² sampling beyond, where the
 * greedy trials would cost K·L passes over ~10K candidates). A pure function
 * of the seed: hash-drawn keys, a radix sort, FlashAssign (no atomics),
 * integer histogram atomics. Batches where the candidates would be half the
 * points or more run k-means++ directly. */
enum { KPAR_ROUNDS = 5, FKM_STREAM_KPAR = 19 };

/* key[n] = -ln(u_n) / d_n (smallest keys = a weighted sample); d = 0: never (+inf). */
__global__ void kpar_keys_kernel(const float *__restrict__ d, int64_t N, uint64_t seed, uint64_t round,
                                 float *__restrict__ key, int *__restrict__ idx) {
  for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < N; n += (int64_t)gridDim.x * blockDim.x) {
    const uint64_t h = fkm_hash(seed, FKM_STREAM_KPAR, (round << 40) ^ (uint64_t)n);
    const double u = ((double)(h >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
    key[n] = d[n] > 0.f ? (float)(-log(u) / (double)d[n]) : INFINITY;
    idx[n] = (int)n;
  }
}

/* d[n] = min(d[n], dnew[n]); first: d = dnew. */
__global__ void kpar_min_kernel(float *__restrict__ d, const float *__restrict__ dnew, int64_t N, int first) {
  for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < N; n += (int64_t)gridDim.x * blockDim.x)
    d[n] = first ? dnew[n] : fminf(d[n], dnew[n]);
}

/* rows[i] = idx[i] (the sampled point indices, as int64 for the gather). */
__global__ void kpar_rows_kernel(const int *__restrict__ idx, int64_t n, int64_t *__restrict__ rows) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    rows[i] = idx[i];
}

/* Candidate rows in the points' dtype (what FlashAssign reads as centroids). */
__global__ void kpar_gather_kernel(const void *__restrict__ x, int dtype, int64_t D, const int64_t *__restrict__ rows,
                                   int64_t n_rows, void *__restrict__ out) {
  const size_t es = dtype == FKM_F32 ? 4 : 2;
  const int64_t total = n_rows * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t src = rows[e / D] * D + e % D;
    if (es == 4) ((float *)out)[e] = ((const float *)x)[src];
    else ((uint16_t *)out)[e] = ((const uint16_t *)x)[src];
  }
}

__global__ void kpar_weights_kernel(const int32_t *__restrict__ labels, int64_t N, unsigned long long *__restrict__ count) {
  for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < N; n += (int64_t)gridDim.x * blockDim.x)
    atomicAdd(&count[labels[n]], 1ull);
}

__global__ void kpar_to_double_kernel(const unsigned long long *__restrict__ count, int64_t n, double *__restrict__ w) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    w[i] = (double)count[i];
}

static unsigned grid_for(int64_t n) {
  int64_t g = (n + 255) / 256;
  return (unsigned)(g < 4096 ? (g > 0 ? g : 1) : 4096);
}

/* labels/dist of xb [N] against the m rows of cx (dtype), through an assign variant. */
static fkm_status kpar_assign(const char *variant, const void *xb, const void *cx, int64_t N, int64_t m, int64_t D,
                              fkm_dtype t, int32_t *labels, float *dist, cudaStream_t stream) {
  const fkm_variant *v = fkm_variant_find(variant);
  if (!v) return fkm_fail(FKM_ERR_INTERNAL, "k-means||: %s is not in this build", variant);
  fkm_problem p;
  memset(&p, 0, sizeof p);
  p.s.B = 1;
  p.s.N = N;
  p.s.K = m;
  p.s.D = D;
  p.s.dtype = t;
  p.x = xb;
  p.c = cx;
  p.labels = labels;
  p.dist = dist;
  p.scratch_budget = (size_t)1 << 30;
  void *state = NULL;
  if (v->setup) FKM_TRY(v->setup(&p, &state));
  fkm_status st = v->run(&p, state, stream);
  if (st == FKM_OK) {
    cudaError_t e = cudaStreamSynchronize(stream); /* before teardown frees the variant's scratch */
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means|| assignment", __FILE__, __LINE__);
  }
  if (v->teardown) v->teardown(state);
  return st;
}

typedef struct {
  float *d, *dnew, *key, *key_sorted;
  int *idx, *idx_sorted;
  int32_t *labels;
  int64_t *rows;
  void *cx, *sort_temp;
  size_t sort_bytes;
  unsigned long long *count;
  double *w;
} kpar_scratch;

static void kpar_scratch_free(kpar_scratch *k) {
  cudaFree(k->d);
  cudaFree(k->dnew);
  cudaFree(k->key);
  cudaFree(k->key_sorted);
  cudaFree(k->idx);
  cudaFree(k->idx_sorted);
  cudaFree(k->labels);
  cudaFree(k->rows);
  cudaFree(k->cx);
  cudaFree(k->sort_temp);
  cudaFree(k->count);
  cudaFree(k->w);
  memset(k, 0, sizeof *k);
}

static fkm_status kpar_scratch_alloc(int64_t N, int64_t M, int64_t D, size_t es, kpar_scratch *k) {
  memset(k, 0, sizeof *k);
  FKM_CUDA(cub::DeviceRadixSort::SortPairs(NULL, k->sort_bytes, (const float *)NULL, (float *)NULL, (const int *)NULL,
                                           (int *)NULL, (int)N));
  cudaError_t e = cudaMalloc((void **)&k->d, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->dnew, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->key, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->key_sorted, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->idx, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->idx_sorted, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->labels, 4 * (size_t)N);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->rows, 8 * (size_t)M);
  if (e == cudaSuccess) e = cudaMalloc(&k->cx, es * (size_t)(M * D));
  if (e == cudaSuccess) e = cudaMalloc(&k->sort_temp, k->sort_bytes);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->count, 8 * (size_t)M);
  if (e == cudaSuccess) e = cudaMalloc((void **)&k->w, 8 * (size_t)M);
  if (e != cudaSuccess) {
    kpar_scratch_free(k);
    return fkm_cuda_fail_at(e, "k-means|| scratch", __FILE__, __LINE__);
  }
  return FKM_OK;
}

static fkm_status kmeans_parallel_one(const void *xb, fkm_dtype t, int64_t N, int64_t D, int64_t K, int64_t ell,
                                      const char *assign, uint64_t seed, uint64_t b, kpar_scratch *k, kpp_scratch *kp,
                                      float *cb, cudaStream_t stream) {
  const int64_t M = 1 + KPAR_ROUNDS * ell;
  const int dtype = (int)t;
  /* Candidate 0: one point drawn uniformly. */
  const int64_t first = (int64_t)(fkm_hash(seed, FKM_STREAM_KPAR, b << 40 | 0xfffffffffull) % (uint64_t)N);
  FKM_CUDA(cudaMemcpyAsync(k->rows, &first, sizeof first, cudaMemcpyHostToDevice, stream));
  kpar_gather_kernel<<<grid_for(D), 256, 0, stream>>>(xb, dtype, D, k->rows, 1, k->cx);
  FKM_CUDA_LAUNCH();
  FKM_TRY(kpar_assign(assign, xb, k->cx, N, 1, D, t, k->labels, k->d, stream)); /* syncs: `first` is safe */
  const size_t es = fkm_dtype_size(t);
  for (int r = 0; r < KPAR_ROUNDS; r++) {
    const int64_t at = 1 + (int64_t)r * ell;
    kpar_keys_kernel<<<grid_for(N), 256, 0, stream>>>(k->d, N, seed ^ (b * 0x9e3779b97f4a7c15ull), (uint64_t)r,
                                                      k->key, k->idx);
    FKM_CUDA_LAUNCH();
    size_t bytes = k->sort_bytes; /* non-negative floats sort as their bits; +inf last */
    FKM_CUDA(cub::DeviceRadixSort::SortPairs(k->sort_temp, bytes, k->key, k->key_sorted, k->idx, k->idx_sorted, (int)N,
                                             0, 32, stream));
    kpar_rows_kernel<<<grid_for(ell), 256, 0, stream>>>(k->idx_sorted, ell, k->rows + at);
    FKM_CUDA_LAUNCH();
    void *cx_r = (char *)k->cx + (size_t)(at * D) * es;
    kpar_gather_kernel<<<grid_for(ell * D), 256, 0, stream>>>(xb, dtype, D, k->rows + at, ell, cx_r);
    FKM_CUDA_LAUNCH();
    if (r + 1 < KPAR_ROUNDS) { /* the last round's candidates need no distances */
      FKM_TRY(kpar_assign(assign, xb, cx_r, N, ell, D, t, k->labels, k->dnew, stream));
      kpar_min_kernel<<<grid_for(N), 256, 0, stream>>>(k->d, k->dnew, N, 0);
      FKM_CUDA_LAUNCH();
    }
  }
  /* Weights: how many points each candidate is nearest to (ties: the lowest index). */
  FKM_TRY(kpar_assign(assign, xb, k->cx, N, M, D, t, k->labels, k->dnew, stream));
  FKM_CUDA(cudaMemsetAsync(k->count, 0, 8 * (size_t)M, stream));
  kpar_weights_kernel<<<grid_for(N), 256, 0, stream>>>(k->labels, N, k->count);
  kpar_to_double_kernel<<<grid_for(M), 256, 0, stream>>>(k->count, M, k->w);
  FKM_CUDA_LAUNCH();
  return kmeanspp_one(k->cx, dtype, M, D, K, k->w, K <= 4096 ? greedy_trials(K) : 1, seed, b | (1ull << 20), kp, cb,
                      stream);
}

static fkm_status init_kmeans_parallel(const fkm_shape *s, uint64_t seed, const void *x, float *c32,
                                       cudaStream_t stream) {
  const int64_t ell = 2 * s->K, M = 1 + KPAR_ROUNDS * ell;
  if (2 * M > s->N) return init_kmeanspp(s, seed, x, c32, stream); /* the candidates would be most of the data */
  /* FlashAssign where x is in device memory; points mapped from host memory
   * (the streaming fit's fallback view) through plain loads. */
  cudaPointerAttributes pa;
  const char *assign = "assign/flash";
  if (cudaPointerGetAttributes(&pa, x) != cudaSuccess || pa.type != cudaMemoryTypeDevice) {
    (void)cudaGetLastError();
    assign = "assign/flash_simt";
  }
  const size_t es = fkm_dtype_size(s->dtype);
  kpar_scratch k;
  kpp_scratch kp;
  FKM_TRY(kpar_scratch_alloc(s->N, M, s->D, es, &k));
  fkm_status st = kpp_scratch_alloc(M, &kp);
  for (int64_t b = 0; b < s->B && st == FKM_OK; b++)
    st = kmeans_parallel_one((const char *)x + (size_t)(b * s->N * s->D) * es, s->dtype, s->N, s->D, s->K, ell, assign,
                             seed, (uint64_t)b, &k, &kp, c32 + b * s->K * s->D, stream);
  if (st == FKM_OK) {
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "k-means||", __FILE__, __LINE__);
  }
  kpp_scratch_free(&kp);
  kpar_scratch_free(&k);
  return st;
}

extern "C" fkm_status fkm_init_centroids(const fkm_shape *s, fkm_init how, uint64_t seed, const void *x, float *c32,
                                         cudaStream_t stream) {
  if (s->K > s->N) return fkm_fail(FKM_ERR_INPUT, "K=%lld exceeds N=%lld", (long long)s->K, (long long)s->N);
  if (s->N > INT32_MAX && how != FKM_INIT_RANDOM)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "k-means++ and k-means|| handle N < 2^31 per batch");
  switch (how) {
  case FKM_INIT_KMEANSPP: return init_kmeanspp(s, seed, x, c32, stream);
  case FKM_INIT_KMEANS_PARALLEL: return init_kmeans_parallel(s, seed, x, c32, stream);
  default: return init_random(s, seed, x, c32, stream);
  }
}
