/* device.c — device properties and the two measured ceilings (copy bandwidth
 * and fp16 GEMM rate) that every results file reports shares against. */
#include "device.h"
#include "data.h"
#include "error.h"
#include "gen.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>

void fkm_device_query(fkm_device *dev) {
  memset(dev, 0, sizeof *dev);
  cudaRuntimeGetVersion(&dev->runtime_version);
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    snprintf(dev->absent_reason, sizeof dev->absent_reason, "no CUDA device: %s",
             e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0");
    (void)cudaGetLastError();
    return;
  }
  cudaDriverGetVersion(&dev->driver_version);
  struct cudaDeviceProp p;
  if (cudaGetDevice(&dev->ordinal) != cudaSuccess || cudaGetDeviceProperties(&p, dev->ordinal) != cudaSuccess) {
    snprintf(dev->absent_reason, sizeof dev->absent_reason, "cannot read the properties of the CUDA device");
    (void)cudaGetLastError();
    return;
  }
  dev->present = 1;
  snprintf(dev->name, sizeof dev->name, "%s", p.name);
  dev->cc = p.major * 10 + p.minor;
  dev->sm_count = p.multiProcessorCount;
  dev->l2_bytes = p.l2CacheSize;
  dev->global_mem_bytes = (int64_t)p.totalGlobalMem;
  dev->smem_per_block_optin = (int64_t)p.sharedMemPerBlockOptin;
  dev->smem_per_sm = (int64_t)p.sharedMemPerMultiprocessor;
  dev->mem_bus_bits = p.memoryBusWidth;
  cudaDeviceGetAttribute(&dev->clock_khz, cudaDevAttrClockRate, dev->ordinal);
  cudaDeviceGetAttribute(&dev->mem_clock_khz, cudaDevAttrMemoryClockRate, dev->ordinal);
}

static fkm_status time_copy(double *gbps) {
  const size_t bytes = (size_t)1 << 30;
  void *a = NULL, *b = NULL;
  cudaEvent_t e0, e1;
  FKM_CUDA(cudaMalloc(&a, bytes));
  cudaError_t err = cudaMalloc(&b, bytes);
  if (err != cudaSuccess) {
    cudaFree(a);
    return fkm_cuda_fail_at(err, "cudaMalloc(copy ceiling)", __FILE__, __LINE__);
  }
  cudaMemset(a, 1, bytes);
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  float best = 1e30f;
  for (int i = 0; i < 12; i++) {
    cudaEventRecord(e0, 0);
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 2 && ms < best) best = ms;
  }
  err = cudaGetLastError();
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  if (err != cudaSuccess) return fkm_cuda_fail_at(err, "copy ceiling", __FILE__, __LINE__);
  *gbps = 2.0 * (double)bytes / (best * 1e-3) / 1e9; /* bytes read + written */
  return FKM_OK;
}

static fkm_status time_gemm(double *tflops) {
  const int n = 8192;
  const size_t bytes = (size_t)n * n * 2;
  void *a = NULL, *b = NULL, *c = NULL;
  cublasHandle_t h = NULL;
  fkm_status st = FKM_OK;
  cudaEvent_t e0 = NULL, e1 = NULL;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
      cudaMalloc(&c, (size_t)n * n * 4) != cudaSuccess) {
    st = fkm_fail(FKM_ERR_OOM, "GEMM ceiling: cannot allocate three 8192x8192 matrices");
    goto done;
  }
  /* Random normal data: constant or zero matrices run faster than real ones. */
  const fkm_shape sh = {1, n, 1, n, FKM_F16};
  if (fkm_gen_points_device(&sh, FKM_GEN_NORMAL, 1, a) != FKM_OK || fkm_gen_points_device(&sh, FKM_GEN_NORMAL, 2, b) != FKM_OK) {
    st = FKM_ERR_CUDA;
    goto done;
  }
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    st = fkm_fail(FKM_ERR_CUDA, "GEMM ceiling: cublasCreate failed");
    goto done;
  }
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  const float alpha = 1.f, beta = 0.f;
  float best = 1e30f;
  for (int i = 0; i < 8; i++) {
    cudaEventRecord(e0, 0);
    cublasStatus_t cs = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16F, n, b, CUDA_R_16F, n,
                                     &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    if (cs != CUBLAS_STATUS_SUCCESS) {
      st = fkm_fail(FKM_ERR_CUDA, "GEMM ceiling: cublasGemmEx failed with status %d", (int)cs);
      goto done;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 2 && ms < best) best = ms;
  }
  *tflops = 2.0 * n * (double)n * n / (best * 1e-3) / 1e12;
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (h) cublasDestroy(h);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  (void)cudaGetLastError();
  return st;
}

fkm_status fkm_measure_ceilings(const fkm_device *dev, fkm_ceilings *out) {
  memset(out, 0, sizeof *out);
  if (!dev->present) return fkm_fail(FKM_ERR_NO_DEVICE, "%s", dev->absent_reason);
  FKM_TRY(time_copy(&out->copy_gbps));
  FKM_TRY(time_gemm(&out->gemm_tflops));
  out->measured = 1;
  return FKM_OK;
}
