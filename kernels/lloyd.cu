/* lloyd.cu — one Lloyd iteration as a composition of an assign and an update
 * variant (see lloyd.h), and the `lloyd/...` variants that time it: the
 * baselines combined (naive + atomic scatter, cuBLAS GEMM + atomic scatter)
 * against the paper's kernels (FlashAssign + sort-inverse update). Each timed
 * sample is the same iteration from the same centroids, so samples are
 * comparable and the result can be validated. */
#include "dtype.h"
#include "error.h"
#include "lloyd.h"
#include "phase.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  double inertia;
  unsigned int max_shift2_bits; /* float bits of the largest squared shift (non-negative: int order = float order) */
  unsigned int pad;
} lloyd_scalars;

struct fkm_lloyd {
  const fkm_variant *assign, *update;
  void *assign_state, *update_state;
  lloyd_scalars *d_scalars, *h_scalars;
  char describe[160];
};

/* Inertia (sum of the distances) and the largest squared centroid shift, in one
 * launch of LLOYD_SCALARS_THREADS-thread blocks. Every thread sums a grid-stride
 * slice of dist (coalesced); each warp takes whole centroid rows, its lanes
 * striding over the coordinates (coalesced; one thread per row walked D floats
 * apart per lane and was latency-bound: 44 us at K = 1024, D = 128 on H100).
 * One double atomic add and one max per block. */
#define LLOYD_SCALARS_THREADS 256
__global__ void __launch_bounds__(LLOYD_SCALARS_THREADS)
    lloyd_scalars_kernel(const float *__restrict__ dist, int64_t n_points, const float *__restrict__ c_old,
                         const float *__restrict__ c_new, int64_t n_clusters, int64_t D, lloyd_scalars *out) {
  __shared__ double block_inertia[LLOYD_SCALARS_THREADS / 32];
  __shared__ float block_shift2[LLOYD_SCALARS_THREADS / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double inertia = 0.0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_points; i += stride) inertia += dist[i];
  float shift2 = 0.f;
  const int64_t warps = stride / 32;
  for (int64_t k = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; k < n_clusters; k += warps) {
    const float *a = c_new + k * D, *b = c_old + k * D;
    float acc = 0.f;
    for (int64_t d = lane; d < D; d += 32) {
      const float diff = a[d] - b[d];
      acc = fmaf(diff, diff, acc);
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    shift2 = fmaxf(shift2, acc);
  }
  for (int o = 16; o > 0; o >>= 1) {
    inertia += __shfl_xor_sync(0xffffffffu, inertia, o);
    shift2 = fmaxf(shift2, __shfl_xor_sync(0xffffffffu, shift2, o));
  }
  if (lane == 0) {
    block_inertia[warp] = inertia;
    block_shift2[warp] = shift2;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < LLOYD_SCALARS_THREADS / 32; w++) {
      inertia += block_inertia[w];
      shift2 = fmaxf(shift2, block_shift2[w]);
    }
    atomicAdd(&out->inertia, inertia);
    atomicMax(&out->max_shift2_bits, __float_as_uint(shift2));
  }
}

__global__ void cast_centroids_kernel(const float *__restrict__ c32, void *c, int64_t count, int dtype) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    fkm_store_from_f32(c, dtype, i, c32[i]);
}

extern "C" fkm_status fkm_cast_centroids(const float *c32, void *c, int64_t count, fkm_dtype t, cudaStream_t stream) {
  int64_t blocks = (count + 255) / 256;
  cast_centroids_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(c32, c, count, (int)t);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static fkm_problem assign_part(const fkm_problem *p) {
  fkm_problem a = *p;
  a.phase_marks = NULL; /* the iteration's phases are timed, not the parts' own */
  a.labels_in = NULL;
  a.c_old = NULL;
  a.c_new = NULL;
  a.counts = NULL;
  return a;
}

static fkm_problem update_part(const fkm_problem *p) {
  fkm_problem u = *p;
  u.phase_marks = NULL;
  u.c = NULL;
  u.labels_in = p->labels;
  u.labels = NULL;
  u.dist = NULL;
  return u;
}

extern "C" void fkm_lloyd_destroy(fkm_lloyd *l) {
  if (!l) return;
  if (l->assign && l->assign->teardown && l->assign_state) l->assign->teardown(l->assign_state);
  if (l->update && l->update->teardown && l->update_state) l->update->teardown(l->update_state);
  cudaFree(l->d_scalars);
  cudaFreeHost(l->h_scalars);
  free(l);
}

static fkm_status lloyd_create_into(const fkm_problem *p, const char *an, const char *un, fkm_lloyd *l) {
  l->assign = fkm_variant_find(an);
  l->update = fkm_variant_find(un);
  if (!l->assign || l->assign->op != FKM_OP_ASSIGN) return fkm_fail(FKM_ERR_INPUT, "no assign variant named '%s'", an);
  if (!l->update || l->update->op != FKM_OP_UPDATE) return fkm_fail(FKM_ERR_INPUT, "no update variant named '%s'", un);
  fkm_problem a = assign_part(p), u = update_part(p);
  if (l->assign->setup) FKM_TRY(l->assign->setup(&a, &l->assign_state));
  if (l->update->setup) FKM_TRY(l->update->setup(&u, &l->update_state));
  FKM_CUDA(cudaMalloc((void **)&l->d_scalars, sizeof(lloyd_scalars)));
  FKM_CUDA(cudaMallocHost((void **)&l->h_scalars, sizeof(lloyd_scalars)));
  memset(l->h_scalars, 0, sizeof(lloyd_scalars));
  const char *impl = l->assign->describe && l->assign_state ? l->assign->describe(l->assign_state) : l->assign->name;
  snprintf(l->describe, sizeof l->describe, "%s + %s", impl, l->update->name);
  return FKM_OK;
}

extern "C" fkm_status fkm_lloyd_create(const fkm_problem *p, const char *an, const char *un, fkm_lloyd **out) {
  fkm_lloyd *l = (fkm_lloyd *)calloc(1, sizeof *l);
  if (!l) return fkm_fail(FKM_ERR_OOM, "out of host memory");
  fkm_status st = lloyd_create_into(p, an, un, l);
  if (st != FKM_OK) {
    fkm_lloyd_destroy(l);
    return st;
  }
  *out = l;
  return FKM_OK;
}

extern "C" fkm_status fkm_lloyd_iterate(fkm_lloyd *l, const fkm_problem *p, cudaStream_t stream) {
  const fkm_shape *s = &p->s;
  fkm_problem a = assign_part(p), u = update_part(p);
  FKM_CUDA(cudaMemsetAsync(l->d_scalars, 0, sizeof(lloyd_scalars), stream));
  fkm_phase_begin("assign");
  fkm_status st = l->assign->run(&a, l->assign_state, stream);
  fkm_phase_end(p, 0, stream);
  FKM_TRY(st);
  fkm_phase_begin("update");
  st = l->update->run(&u, l->update_state, stream);
  fkm_phase_end(p, 1, stream);
  FKM_TRY(st);
  fkm_phase_begin("converge");
  lloyd_scalars_kernel<<<264, LLOYD_SCALARS_THREADS, 0, stream>>>(p->dist, s->B * s->N, p->c_old, p->c_new, s->B * s->K, s->D,
                                                l->d_scalars);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(l->h_scalars, l->d_scalars, sizeof(lloyd_scalars), cudaMemcpyDeviceToHost, stream);
  fkm_phase_end(p, 2, stream);
  if (e != cudaSuccess) return fkm_cuda_fail_at(e, "convergence scalars", __FILE__, __LINE__);
  return FKM_OK;
}

extern "C" void fkm_lloyd_scalars(const fkm_lloyd *l, double *inertia, double *max_shift) {
  float s2;
  memcpy(&s2, &l->h_scalars->max_shift2_bits, sizeof s2);
  *inertia = l->h_scalars->inertia;
  *max_shift = sqrt((double)s2);
}

extern "C" const char *fkm_lloyd_describe(const fkm_lloyd *l) { return l->describe; }

/* ---- the lloyd/ variants ---- */

extern "C" fkm_status fkm_lloyd_supports(const char *an, const char *un, const fkm_shape *s, const fkm_device *dev,
                                         char *why, size_t n) {
  const char *names[2] = {an, un};
  for (int i = 0; i < 2; i++) {
    const fkm_variant *v = fkm_variant_find(names[i]);
    if (!v) {
      snprintf(why, n, "%s is not in this build", names[i]);
      return FKM_ERR_NOT_SUPPORTED;
    }
    if (dev->cc < v->min_cc || (v->max_cc && dev->cc > v->max_cc)) {
      snprintf(why, n, "%s does not run on compute capability %d.%d", names[i], dev->cc / 10, dev->cc % 10);
      return FKM_ERR_NOT_SUPPORTED;
    }
    if (v->supports) {
      char inner[256] = "";
      if (v->supports(s, dev, inner, sizeof inner) != FKM_OK) {
        snprintf(why, n, "%s: %s", names[i], inner);
        return FKM_ERR_NOT_SUPPORTED;
      }
    }
  }
  return FKM_OK;
}

static fkm_status lloyd_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  return fkm_lloyd_iterate((fkm_lloyd *)state, p, stream);
}
static void lloyd_teardown(void *state) { fkm_lloyd_destroy((fkm_lloyd *)state); }
static const char *const lloyd_phases[] = {"assign", "update", "converge", NULL};
static const char *lloyd_describe(void *state) { return fkm_lloyd_describe((const fkm_lloyd *)state); }

#define FKM_LLOYD_VARIANT(ident, vname, an, un, summary)                                                      \
  static fkm_status ident##_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {             \
    return fkm_lloyd_supports(an, un, s, d, w, n);                                                            \
  }                                                                                                            \
  static fkm_status ident##_setup(const fkm_problem *p, void **state) {                                        \
    return fkm_lloyd_create(p, an, un, (fkm_lloyd **)state);                                                   \
  }                                                                                                            \
  extern "C" const fkm_variant ident = {vname,         FKM_OP_LLOYD,   summary,        70,             0,    \
                                        ident##_supports, ident##_setup, lloyd_run,   lloyd_teardown, lloyd_describe, \
                                        NULL,          lloyd_phases};

FKM_LLOYD_VARIANT(fkm_lloyd_naive_atomic, "lloyd/naive_atomic", "assign/naive", "update/atomic_scatter",
                  "one iteration from the simplest kernels: naive assign + atomic scatter")
FKM_LLOYD_VARIANT(fkm_lloyd_cublas_atomic, "lloyd/cublas_atomic", "assign/cublas_gemm", "update/atomic_scatter",
                  "one iteration from the strongest baselines: cuBLAS GEMM + argmin, atomic scatter")
FKM_LLOYD_VARIANT(fkm_lloyd_flash, "lloyd/flash", "assign/flash", "update/sort_inverse",
                  "one iteration of Flash-KMeans: FlashAssign + sort-inverse update")
