/* assign_cublas_gemm.cu — `assign/cublas_gemm`: the "materialise the distance
 * matrix" baseline of the paper. cuBLAS computes G = X·Cᵀ into a distance tile
 * (fp32, tensor cores for fp16/bf16), then an argmin pass reads the tile back
 * and picks argmin_k ||c_k||² − 2·G[n][k] (ties to the lowest k). The tile is
 * chunked over N so that its memory stays under the problem's scratch budget;
 * whole batches go through one strided-batched GEMM when they fit. Its cost is
 * the N×K round trip through memory that FlashAssign removes. */
#include "dtype.h"
#include "error.h"
#include "variant.h"

#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  cublasHandle_t handle;
  float *tile;       /* rows_per_chunk × K fp32 scores */
  float *cnorm;      /* B × K */
  int64_t tile_rows; /* rows of the tile: a multiple of N (whole batches) or a chunk of one batch */
} gemm_state;

__global__ void centroid_norms_kernel(const void *__restrict__ c, int dtype, int64_t rows, int64_t D,
                                      float *__restrict__ cnorm) {
  const int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  float acc = 0.f;
  for (int64_t d = lane; d < D; d += 32) {
    float v = fkm_load_as_f32(c, dtype, r * D + d);
    acc = fmaf(v, v, acc);
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) cnorm[r] = acc;
}

/* One warp per point row of the tile: scan K scores, lexicographic (score, k) minimum. */
__global__ void argmin_rows_kernel(const float *__restrict__ tile, const float *__restrict__ cnorm,
                                   const void *__restrict__ x, int dtype, int64_t rows, int64_t row0,
                                   int64_t N, int64_t K, int64_t D, int32_t *__restrict__ labels,
                                   float *__restrict__ dist) {
  const int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const int64_t flat = row0 + r; /* flat point index b*N + n */
  const float *cn = cnorm + (flat / N) * K;
  const float *g = tile + r * K;
  float best = INFINITY;
  int32_t best_k = INT32_MAX;
  for (int64_t k = lane; k < K; k += 32) {
    float s = fmaf(-2.f, g[k], cn[k]);
    if (s < best) { best = s; best_k = (int32_t)k; }
  }
  for (int o = 16; o > 0; o >>= 1) {
    float ob = __shfl_xor_sync(0xffffffffu, best, o);
    int32_t ok = __shfl_xor_sync(0xffffffffu, best_k, o);
    if (ob < best || (ob == best && ok < best_k)) { best = ob; best_k = ok; }
  }
  float xn = 0.f;
  for (int64_t d = lane; d < D; d += 32) {
    float v = fkm_load_as_f32(x, dtype, flat * D + d);
    xn = fmaf(v, v, xn);
  }
  for (int o = 16; o > 0; o >>= 1) xn += __shfl_xor_sync(0xffffffffu, xn, o);
  if (lane == 0) {
    labels[flat] = best_k;
    dist[flat] = fmaxf(0.f, xn + best);
  }
}

static cudaDataType_t cuda_type(fkm_dtype t) {
  return t == FKM_F16 ? CUDA_R_16F : t == FKM_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void gemm_teardown(void *state) {
  gemm_state *g = (gemm_state *)state;
  if (!g) return;
  if (g->handle) cublasDestroy(g->handle);
  cudaFree(g->tile);
  cudaFree(g->cnorm);
  free(g);
}

static fkm_status gemm_setup_into(const fkm_problem *p, gemm_state *g) {
  const fkm_shape *s = &p->s;
  const int64_t row_bytes = s->K * (int64_t)sizeof(float);
  int64_t rows = (int64_t)(p->scratch_budget / (size_t)row_bytes);
  if (rows < 1) rows = 1;
  if (rows >= s->N) rows = (rows / s->N) * s->N; /* whole batches */
  if (rows > s->B * s->N) rows = s->B * s->N;
  g->tile_rows = rows;
  FKM_CUBLAS(cublasCreate(&g->handle));
  FKM_CUDA(cudaMalloc((void **)&g->tile, (size_t)(rows * row_bytes)));
  FKM_CUDA(cudaMalloc((void **)&g->cnorm, (size_t)(s->B * s->K) * sizeof(float)));
  return FKM_OK;
}

static fkm_status gemm_setup(const fkm_problem *p, void **state) {
  gemm_state *g = (gemm_state *)calloc(1, sizeof *g);
  if (!g) return fkm_fail(FKM_ERR_OOM, "assign/cublas_gemm: out of host memory");
  fkm_status st = gemm_setup_into(p, g);
  if (st != FKM_OK) {
    gemm_teardown(g);
    return st;
  }
  *state = g;
  return FKM_OK;
}

static fkm_status gemm_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  gemm_state *g = (gemm_state *)state;
  const fkm_shape *s = &p->s;
  const size_t es = fkm_dtype_size(s->dtype);
  const cudaDataType_t t = cuda_type(s->dtype);
  const float alpha = 1.f, beta = 0.f;
  FKM_CUBLAS(cublasSetStream(g->handle, stream));
  const int64_t norm_rows = s->B * s->K;
  centroid_norms_kernel<<<(unsigned)((norm_rows + 7) / 8), 256, 0, stream>>>(p->c, (int)s->dtype, norm_rows, s->D, g->cnorm);
  FKM_CUDA_LAUNCH();
  if (g->tile_rows >= s->N) { /* groups of whole batches: one strided-batched GEMM each */
    const int64_t per = g->tile_rows / s->N;
    for (int64_t b0 = 0; b0 < s->B; b0 += per) {
      int64_t nb = s->B - b0 < per ? s->B - b0 : per;
      FKM_CUBLAS(cublasGemmStridedBatchedEx(
          g->handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)s->K, (int)s->N, (int)s->D, &alpha,
          (const char *)p->c + (size_t)(b0 * s->K * s->D) * es, t, (int)s->D, s->K * s->D,
          (const char *)p->x + (size_t)(b0 * s->N * s->D) * es, t, (int)s->D, s->N * s->D, &beta, g->tile,
          CUDA_R_32F, (int)s->K, s->N * s->K, (int)nb, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      const int64_t rows = nb * s->N;
      argmin_rows_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(
          g->tile, g->cnorm, p->x, (int)s->dtype, rows, b0 * s->N, s->N, s->K, s->D, p->labels, p->dist);
      FKM_CUDA_LAUNCH();
    }
    return FKM_OK;
  }
  for (int64_t b = 0; b < s->B; b++) { /* chunks of rows within each batch */
    for (int64_t n0 = 0; n0 < s->N; n0 += g->tile_rows) {
      int64_t rows = s->N - n0 < g->tile_rows ? s->N - n0 : g->tile_rows;
      FKM_CUBLAS(cublasGemmEx(g->handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)s->K, (int)rows, (int)s->D, &alpha,
                              (const char *)p->c + (size_t)(b * s->K * s->D) * es, t, (int)s->D,
                              (const char *)p->x + (size_t)((b * s->N + n0) * s->D) * es, t, (int)s->D, &beta,
                              g->tile, CUDA_R_32F, (int)s->K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      argmin_rows_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(
          g->tile, g->cnorm, p->x, (int)s->dtype, rows, b * s->N + n0, s->N, s->K, s->D, p->labels, p->dist);
      FKM_CUDA_LAUNCH();
    }
  }
  return FKM_OK;
}

static fkm_status gemm_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  (void)dev;
  if (s->N > INT32_MAX || s->K > INT32_MAX || s->D > INT32_MAX) {
    snprintf(why, n, "cuBLAS takes 32-bit dimensions");
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

extern "C" const fkm_variant fkm_assign_cublas_gemm = {
    "assign/cublas_gemm", FKM_OP_ASSIGN,
    "cuBLAS GEMM X*C^T into an N-chunked fp32 distance tile, then an argmin pass: the N*K round trip FlashAssign removes",
    70, 0, gemm_supports, gemm_setup, gemm_run, gemm_teardown};
