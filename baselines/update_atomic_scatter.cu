/* update_atomic_scatter.cu — `update/atomic_scatter`: the contended baseline
 * of the paper. Every coordinate of every point is atomicAdd-ed into its
 * cluster's fp32 sum (and every point into its count), then a second pass
 * divides. Clusters holding many points serialise on the same addresses, which
 * is what the sort-inverse update removes. Empty clusters keep their old
 * centroid; labels outside [0, K) are skipped (never written out of bounds). */
#include "dtype.h"
#include "error.h"
#include "variant.h"

#include <stdlib.h>

__global__ void scatter_add_kernel(const void *__restrict__ x, int dtype, const int32_t *__restrict__ labels,
                                   int64_t N, int64_t K, int64_t D, int64_t total, float *__restrict__ sums,
                                   int32_t *__restrict__ counts) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / D, d = e - i * D;
    const int32_t k = labels[i];
    if (k < 0 || k >= K) continue;
    const int64_t seg = (i / N) * K + k;
    atomicAdd(&sums[seg * D + d], fkm_load_as_f32(x, dtype, e));
    if (d == 0) atomicAdd(&counts[seg], 1);
  }
}

__global__ void finalize_means_kernel(const float *__restrict__ sums, const int32_t *__restrict__ counts,
                                      const float *__restrict__ c_old, int64_t D, int64_t total,
                                      float *__restrict__ c_new) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int32_t n = counts[e / D];
    c_new[e] = n > 0 ? sums[e] / (float)n : c_old[e];
  }
}

static int grid_for(int64_t n) {
  int64_t b = (n + 255) / 256;
  return (int)(b < 132 * 64 ? b : 132 * 64);
}

static fkm_status atomic_setup(const fkm_problem *p, void **state) {
  float *sums = NULL;
  FKM_CUDA(cudaMalloc((void **)&sums, (size_t)(p->s.B * p->s.K * p->s.D) * sizeof(float)));
  *state = sums;
  return FKM_OK;
}

static void atomic_teardown(void *state) { cudaFree(state); }

static fkm_status atomic_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  const fkm_shape *s = &p->s;
  float *sums = (float *)state;
  const int64_t nc = s->B * s->K * s->D, nx = s->B * s->N * s->D;
  FKM_CUDA(cudaMemsetAsync(sums, 0, (size_t)nc * sizeof(float), stream));
  FKM_CUDA(cudaMemsetAsync(p->counts, 0, (size_t)(s->B * s->K) * sizeof(int32_t), stream));
  scatter_add_kernel<<<grid_for(nx), 256, 0, stream>>>(p->x, (int)s->dtype, p->labels_in, s->N, s->K, s->D, nx, sums,
                                                        p->counts);
  FKM_CUDA_LAUNCH();
  finalize_means_kernel<<<grid_for(nc), 256, 0, stream>>>(sums, p->counts, p->c_old, s->D, nc, p->c_new);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

extern "C" const fkm_variant fkm_update_atomic_scatter = {
    "update/atomic_scatter", FKM_OP_UPDATE,
    "atomicAdd of every coordinate and count into fp32 sums, then means: contended on large clusters",
    70, 0, NULL, atomic_setup, atomic_run, atomic_teardown};
