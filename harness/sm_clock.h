/* sm_clock.h — the SM clock the GPU actually runs at, measured without NVML.
 *
 * Long tensor-core kernels run back to back get power/thermal throttled, so a
 * variant timed after another heavy one can read several percent slower than
 * the same kernel timed first. The runner records this measured clock beside
 * every GPU timing (timing.sm_clock_measured_mhz) so a reader can tell a slow
 * kernel from a slow clock. */
#ifndef FKM_SM_CLOCK_H
#define FKM_SM_CLOCK_H

#include "flashkm.h"
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SM cycles the probe spins: ~0.5 ms at 2 GHz, 1 ms at 1 GHz; long enough
 * that a globaltimer step of up to 1 us is < 0.2 % of the interval. */
#define FKM_SM_CLOCK_CYCLES 1000000LL

/* *mhz = the SM clock of one SM, in MHz, while a one-thread kernel on stream s
 * spins FKM_SM_CLOCK_CYCLES cycles (clock64) timed by %globaltimer (ns).
 * Synchronizes s; enqueue it outside timed events. Not reentrant on one device
 * (the result goes through one __device__ variable). On failure *mhz is 0 and
 * the status and fkm_last_error() say why. */
fkm_status fkm_sm_clock_mhz(cudaStream_t s, double *mhz);

#ifdef __cplusplus
}
#endif
#endif
