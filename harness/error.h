/* error.h — one place for error text and the checked-call macros.
 *
 * fkm_fail() records "file:line: message" as the last error and returns the
 * status, so failure paths read `return fkm_fail(FKM_ERR_INPUT, "...")`.
 * FKM_CUDA / FKM_CUBLAS check a call, record its text, file and line, classify
 * the error (out of memory, sticky context corruption, other) and return from
 * the enclosing function, which must return fkm_status. Usable from C and CUDA. */
#ifndef FKM_ERROR_H
#define FKM_ERROR_H

#include "flashkm.h"
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FKM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FKM_PRINTF(a, b)
#endif

fkm_status fkm_fail_at(fkm_status s, const char *file, int line, const char *fmt, ...) FKM_PRINTF(4, 5);
#define fkm_fail(s, ...) fkm_fail_at((s), __FILE__, __LINE__, __VA_ARGS__)
void fkm_clear_error(void);

/* Maps a CUDA error to a status: OOM, sticky (context lost) or plain CUDA error. */
fkm_status fkm_cuda_status(cudaError_t e);
fkm_status fkm_cuda_fail_at(cudaError_t e, const char *call, const char *file, int line);
fkm_status fkm_cublas_fail_at(int cublas_status, const char *call, const char *file, int line);

#define FKM_CUDA(call)                                                        \
  do {                                                                        \
    cudaError_t fkm_e_ = (call);                                              \
    if (fkm_e_ != cudaSuccess)                                                \
      return fkm_cuda_fail_at(fkm_e_, #call, __FILE__, __LINE__);             \
  } while (0)

/* After a kernel launch: catches bad launch configurations at once. */
#define FKM_CUDA_LAUNCH() FKM_CUDA(cudaGetLastError())

#define FKM_CUBLAS(call)                                                      \
  do {                                                                        \
    int fkm_s_ = (int)(call);                                                 \
    if (fkm_s_ != 0)                                                          \
      return fkm_cublas_fail_at(fkm_s_, #call, __FILE__, __LINE__);           \
  } while (0)

/* Propagates a failed fkm_status from a callee. */
#define FKM_TRY(expr)                                                         \
  do {                                                                        \
    fkm_status fkm_t_ = (expr);                                               \
    if (fkm_t_ != FKM_OK) return fkm_t_;                                      \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
