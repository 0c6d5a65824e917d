/* device.h — what the harness knows about the GPU it runs on (or that there is none). */
#ifndef FKM_DEVICE_H
#define FKM_DEVICE_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int present;          /* 0: no usable GPU (no driver, no device) */
  char absent_reason[256];
  int ordinal;
  char name[256];
  int cc;               /* compute capability x10, e.g. 90 */
  int sm_count;
  int64_t l2_bytes;
  int64_t global_mem_bytes;
  int64_t smem_per_block_optin;
  int64_t smem_per_sm;
  int clock_khz;        /* SM clock, 0 if unknown */
  int mem_clock_khz;
  int mem_bus_bits;
  int driver_version;   /* e.g. 13000 */
  int runtime_version;
} fkm_device;

/* Fills *dev. Never fails: without a GPU, present = 0 and absent_reason says why. */
void fkm_device_query(fkm_device *dev);

/* The measured ceilings a results file reports shares against. */
typedef struct {
  int measured;
  double copy_gbps;     /* device-to-device copy, bytes read + written per second / 1e9 */
  double gemm_tflops;   /* cuBLAS fp16 GEMM (fp32 accumulate) 8192^3 */
} fkm_ceilings;

fkm_status fkm_measure_ceilings(const fkm_device *dev, fkm_ceilings *out);

#ifdef __cplusplus
}
#endif
#endif
