/* pdl.cuh — programmatic dependent launch (sm_90+) for the kernels that run as a chain on
 * one stream: the sort-inverse update's kernels after its first, and each FlashAssign
 * Hopper kernel behind its ||c||^2 kernel.
 * Why: a kernel launched with fkm_launch(..., pdl = true) is set up and scheduled while the
 * kernel ahead of it in the stream still runs, so the launch gap between them goes. The
 * dependent kernel calls fkm_pdl_wait() before it touches any global memory; the wait
 * returns once the kernel ahead has completed and its writes are visible, so results are
 * those of a plain launch. No kernel here triggers its dependents early
 * (griddepcontrol.launch_dependents): with the trigger at block start the next grid's
 * blocks took SM resources while the sort's scatter still ran (sort_inverse_det at
 * 1 x 8M x 8192: +20 us, H100). Without the launch attribute (sm_80, pdl = false) the wait
 * returns at once. Private to the including file (anonymous namespace). */
#ifndef FKM_PDL_CUH
#define FKM_PDL_CUH

#include "error.h"
#include "flashkm.h"

#include <cuda_runtime.h>

namespace {

__device__ __forceinline__ void fkm_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Launches kernel k on stream, with programmatic stream serialization when pdl. */
template <typename... KA, typename... AA>
fkm_status fkm_launch(void (*k)(KA...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                      AA &&...args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = pdl ? attr : NULL;
  cfg.numAttrs = pdl ? 1 : 0;
  FKM_CUDA(cudaLaunchKernelEx(&cfg, k, static_cast<AA &&>(args)...));
  return FKM_OK;
}

/* Does the current device take programmatic dependent launches (compute capability 9.0+)? */
inline bool fkm_pdl_supported() {
  int dev = 0, major = 0;
  return cudaGetDevice(&dev) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
}

} // namespace

#endif
