/* assign_naive.cu — `assign/naive`: one thread per point, no tiling, no
 * shared memory. Each thread walks all K centroids and all D coordinates,
 * computing sum((x-c)^2) in fp32 and keeping the first minimum. It is the
 * baseline every tiled kernel is measured against: correct for every shape and
 * dtype, and bound by re-reading centroids from L1/L2 once per point. */
#include "dtype.h"
#include "error.h"
#include "variant.h"

#include <stdio.h>

__global__ void assign_naive_kernel(const void *__restrict__ x, const void *__restrict__ c, int dtype, int64_t N,
                                    int64_t K, int64_t D, int32_t *__restrict__ labels, float *__restrict__ dist) {
  const int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (n >= N) return;
  const int64_t xrow = (b * N + n) * D;
  const int64_t cbase = b * K * D;
  float best = INFINITY;
  int32_t best_k = 0;
  for (int64_t k = 0; k < K; k++) {
    float acc = 0.f;
    for (int64_t d = 0; d < D; d++) {
      float diff = fkm_load_as_f32(x, dtype, xrow + d) - fkm_load_as_f32(c, dtype, cbase + k * D + d);
      acc = fmaf(diff, diff, acc);
    }
    if (acc < best) { best = acc; best_k = (int32_t)k; }
  }
  labels[b * N + n] = best_k;
  dist[b * N + n] = best;
}

static fkm_status naive_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  (void)state;
  const fkm_shape *s = &p->s;
  dim3 grid((unsigned)((s->N + 255) / 256), (unsigned)s->B);
  assign_naive_kernel<<<grid, 256, 0, stream>>>(p->x, p->c, (int)s->dtype, s->N, s->K, s->D, p->labels, p->dist);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static fkm_status naive_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  (void)dev;
  if (s->B > 65535) {
    snprintf(why, n, "B=%lld exceeds the grid's y limit 65535", (long long)s->B);
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

extern "C" const fkm_variant fkm_assign_naive = {
    "assign/naive", FKM_OP_ASSIGN,
    "one thread per point, direct sum((x-c)^2) over all centroids: no tiling, no tensor cores",
    70, 0, naive_supports, NULL, naive_run, NULL};
