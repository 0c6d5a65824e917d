/* sm_clock.cu — fkm_sm_clock_mhz (see sm_clock.h): a one-thread kernel counts
 * SM cycles (clock64) against the GPU's nanosecond timer (%globaltimer), which
 * ticks at a fixed rate whatever the SM clock, so cycles / ns is the clock the
 * SM ran at. No NVML: nothing to link, and it measures the clock a kernel
 * actually got rather than what the driver reports. */
#include "sm_clock.h"
#include "error.h"

/* [0]: SM cycles elapsed, [1]: globaltimer ns elapsed. A __device__ variable
 * rather than a buffer: nothing to allocate next to a variant's memory. */
__device__ unsigned long long fkm_sm_clock_result[2];

__device__ __forceinline__ unsigned long long global_ns(void) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void fkm_sm_clock_probe(long long cycles) /* the name Nsight shows */ {
  /* Timer reads inside the cycle reads: both intervals cover the same spin,
   * give or take a few cycles out of a million. */
  const long long c0 = clock64();
  const unsigned long long t0 = global_ns();
  while (clock64() - c0 < cycles) {
  }
  const unsigned long long t1 = global_ns();
  const long long c1 = clock64();
  fkm_sm_clock_result[0] = (unsigned long long)(c1 - c0);
  fkm_sm_clock_result[1] = t1 - t0;
}

extern "C" fkm_status fkm_sm_clock_mhz(cudaStream_t s, double *mhz) {
  *mhz = 0;
  fkm_sm_clock_probe<<<1, 1, 0, s>>>(FKM_SM_CLOCK_CYCLES);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fkm_cuda_fail_at(e, "SM clock probe launch", __FILE__, __LINE__);
  unsigned long long r[2] = {0, 0};
  e = cudaMemcpyFromSymbolAsync(r, fkm_sm_clock_result, sizeof r, 0, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return fkm_cuda_fail_at(e, "SM clock probe", __FILE__, __LINE__);
  /* A timer that did not move would give infinity; say so instead. */
  if (r[1] == 0)
    return fkm_fail(FKM_ERR_CUDA, "SM clock probe: %%globaltimer did not advance over %llu cycles", r[0]);
  *mhz = (double)r[0] / (double)r[1] * 1e3;
  return FKM_OK;
}
