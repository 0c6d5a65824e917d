/* data_gpu.cu — the generators of gen.h as GPU kernels, so that benchmark
 * inputs of many GB are made in milliseconds, bit-identical to the host ones. */
#include "data.h"
#include "dtype.h"
#include "error.h"
#include "gen.h"

static int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (int)(b < 65536 * 16 ? b : 65536 * 16); /* grid-stride loops cover the rest */
}

__global__ void gen_points_kernel(int gen, uint64_t seed, int64_t B, int64_t N, int64_t K, int64_t D, int dtype,
                                  void *x) {
  const int64_t total = B * N * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = e / D, d = e - i * D;
    fkm_store_from_f32(x, dtype, e, fkm_gen_value(gen, seed, i / N, (uint64_t)i, d, K, D));
  }
}

__global__ void gen_labels_kernel(int gen, uint64_t seed, int64_t total, int64_t K, int32_t *labels) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
    labels[i] = fkm_true_label(gen, seed, (uint64_t)i, K);
}

__global__ void gen_centroids_kernel(int64_t B, int64_t N, int64_t K, int64_t D, int dtype, const void *x, void *c,
                                     float *c_old) {
  const int64_t total = B * K * D;
  const size_t es = dtype == 0 ? 4 : 2;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t bk = e / D, d = e - bk * D, b = bk / K, k = bk - b * K;
    int64_t src = (b * N + fkm_centroid_row(k, N, K)) * D + d;
    if (es == 4) ((float *)c)[e] = ((const float *)x)[src];
    else ((uint16_t *)c)[e] = ((const uint16_t *)x)[src];
    c_old[e] = fkm_load_as_f32(x, dtype, src);
  }
}

extern "C" fkm_status fkm_gen_points_device(const fkm_shape *s, int gen, uint64_t seed, void *x) {
  gen_points_kernel<<<blocks_for(s->B * s->N * s->D, 256), 256>>>(gen, seed, s->B, s->N, s->K, s->D, (int)s->dtype, x);
  FKM_CUDA_LAUNCH();
  FKM_CUDA(cudaDeviceSynchronize());
  return FKM_OK;
}

extern "C" fkm_status fkm_gen_labels_device(const fkm_shape *s, int gen, uint64_t seed, int32_t *labels) {
  gen_labels_kernel<<<blocks_for(s->B * s->N, 256), 256>>>(gen, seed, s->B * s->N, s->K, labels);
  FKM_CUDA_LAUNCH();
  FKM_CUDA(cudaDeviceSynchronize());
  return FKM_OK;
}

extern "C" fkm_status fkm_gen_centroids_device(const fkm_shape *s, const void *x, void *c, float *c_old) {
  gen_centroids_kernel<<<blocks_for(s->B * s->K * s->D, 256), 256>>>(s->B, s->N, s->K, s->D, (int)s->dtype, x, c, c_old);
  FKM_CUDA_LAUNCH();
  FKM_CUDA(cudaDeviceSynchronize());
  return FKM_OK;
}
