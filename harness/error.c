/* error.c — last-error text, status names and CUDA/cuBLAS error classification. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char last_error[1024];

const char *fkm_last_error(void) { return last_error; }
void fkm_clear_error(void) { last_error[0] = '\0'; }

static const char *basename_of(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

fkm_status fkm_fail_at(fkm_status s, const char *file, int line, const char *fmt, ...) {
  char msg[sizeof last_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  (void)file;
  (void)line;
  /* User-facing errors (input, io, not supported) read as plain sentences;
   * internal and CUDA failures carry their source location. */
  if (s == FKM_ERR_INPUT || s == FKM_ERR_IO || s == FKM_ERR_NOT_SUPPORTED || s == FKM_ERR_NO_DEVICE)
    snprintf(last_error, sizeof last_error, "%s", msg);
  else
    snprintf(last_error, sizeof last_error, "%s (%s:%d)", msg, basename_of(file), line);
  return s;
}

fkm_status fkm_cuda_status(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return FKM_OK;
  case cudaErrorMemoryAllocation: return FKM_ERR_OOM;
  case cudaErrorNoDevice:
  case cudaErrorInsufficientDriver:
  case cudaErrorInvalidDevice: return FKM_ERR_NO_DEVICE;
  /* Errors after which the context is unusable (see the CUDA runtime docs). */
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorHardwareStackError:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorInvalidAddressSpace:
  case cudaErrorInvalidPc:
  case cudaErrorLaunchTimeout:
  case cudaErrorAssert:
  case cudaErrorECCUncorrectable:
  case cudaErrorUnknown: return FKM_ERR_CUDA_STICKY;
  default: return FKM_ERR_CUDA;
  }
}

fkm_status fkm_cuda_fail_at(cudaError_t e, const char *call, const char *file, int line) {
  fkm_status s = fkm_cuda_status(e);
  if (s != FKM_ERR_CUDA_STICKY && s != FKM_ERR_NO_DEVICE) (void)cudaGetLastError(); /* clear non-sticky */
  return fkm_fail_at(s == FKM_ERR_NO_DEVICE ? FKM_ERR_CUDA : s, file, line, "%s failed: %s (%s)", call,
                     cudaGetErrorString(e), cudaGetErrorName(e));
}

fkm_status fkm_cublas_fail_at(int st, const char *call, const char *file, int line) {
  /* CUBLAS_STATUS_ALLOC_FAILED is 3. */
  return fkm_fail_at(st == 3 ? FKM_ERR_OOM : FKM_ERR_CUDA, file, line, "%s failed: cuBLAS status %d", call, st);
}

const char *fkm_status_name(fkm_status s) {
  switch (s) {
  case FKM_OK: return "ok";
  case FKM_ERR_INPUT: return "input_error";
  case FKM_ERR_NOT_SUPPORTED: return "not_supported";
  case FKM_ERR_OOM: return "out_of_memory";
  case FKM_ERR_CUDA: return "cuda_error";
  case FKM_ERR_CUDA_STICKY: return "cuda_error_sticky";
  case FKM_ERR_NO_DEVICE: return "no_device";
  case FKM_ERR_IO: return "io_error";
  case FKM_ERR_INTERNAL: return "internal_error";
  }
  return "unknown";
}

static const char *const dtype_names[FKM_DTYPE_COUNT] = {"fp32", "fp16", "bf16"};
static const size_t dtype_sizes[FKM_DTYPE_COUNT] = {4, 2, 2};
static const char *const op_names[FKM_OP_COUNT] = {"assign", "update", "lloyd", "fit"};

const char *fkm_dtype_name(fkm_dtype t) { return (unsigned)t < FKM_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t fkm_dtype_size(fkm_dtype t) { return (unsigned)t < FKM_DTYPE_COUNT ? dtype_sizes[t] : 0; }
const char *fkm_op_name(fkm_op op) { return (unsigned)op < FKM_OP_COUNT ? op_names[op] : "?"; }

int fkm_dtype_from_name(const char *name, fkm_dtype *out) {
  for (int i = 0; i < FKM_DTYPE_COUNT; i++)
    if (strcmp(name, dtype_names[i]) == 0) { *out = (fkm_dtype)i; return 0; }
  return -1;
}

int fkm_op_from_name(const char *name, fkm_op *out) {
  for (int i = 0; i < FKM_OP_COUNT; i++)
    if (strcmp(name, op_names[i]) == 0) { *out = (fkm_op)i; return 0; }
  return -1;
}
