/* dist_kernels.cu — see dist_kernels.h. */
#include "dist_kernels.h"
#include "error.h"

enum { DK_THREADS = 256 };

/* Fixed tree inside a block: the same bits for the same inputs. */
__device__ double dk_block_sum(double v) {
  __shared__ double sh[DK_THREADS];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = DK_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

__global__ void dk_partials_kernel(const float *__restrict__ dist, int64_t n, double *__restrict__ partials) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)DK_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * DK_THREADS)
    acc += (double)dist[i];
  const double t = dk_block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = t;
}

__global__ void dk_total_kernel(const double *__restrict__ partials, int64_t n, double *__restrict__ out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += DK_THREADS) acc += partials[i];
  const double t = dk_block_sum(acc);
  if (threadIdx.x == 0) *out = t;
}

extern "C" fkm_status fkm_dist_inertia(const float *dist, int64_t n, double *partials, double *inertia,
                                       cudaStream_t stream) {
  dk_partials_kernel<<<FKM_DIST_PARTIALS, DK_THREADS, 0, stream>>>(dist, n, partials);
  FKM_CUDA_LAUNCH();
  dk_total_kernel<<<1, DK_THREADS, 0, stream>>>(partials, FKM_DIST_PARTIALS, inertia);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

extern "C" fkm_status fkm_dist_sum(const double *v, int64_t n, double *out, cudaStream_t stream) {
  dk_total_kernel<<<1, DK_THREADS, 0, stream>>>(v, n, out);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

__global__ void dk_shift_kernel(const float *__restrict__ c_old, const float *__restrict__ c_new, int64_t nc, int64_t D,
                                unsigned *__restrict__ out) {
  float m = 0.f;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < nc; k += (int64_t)gridDim.x * blockDim.x) {
    float acc = 0.f;
    for (int64_t d = 0; d < D; d++) {
      const float diff = c_new[k * D + d] - c_old[k * D + d];
      acc = fmaf(diff, diff, acc);
    }
    m = fmaxf(m, acc);
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(m)); /* a max: any order, the same bits */
}

extern "C" fkm_status fkm_dist_max_shift(const float *c_old, const float *c_new, int64_t nc, int64_t D,
                                         unsigned *shift2, cudaStream_t stream) {
  FKM_CUDA(cudaMemsetAsync(shift2, 0, sizeof(unsigned), stream));
  int64_t blocks = (nc + DK_THREADS - 1) / DK_THREADS;
  dk_shift_kernel<<<(unsigned)(blocks < 264 ? (blocks > 0 ? blocks : 1) : 264), DK_THREADS, 0, stream>>>(c_old, c_new, nc,
                                                                                                       D, shift2);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}
