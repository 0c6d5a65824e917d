/* assign_flash_common.cuh — pieces shared by the FlashAssign kernels
 * assign_flash_simt.cu, assign_flash_mma.cu and assign_flash_tf32.cu:
 *   - the sm_80 cp.async wrappers (global -> shared, zero-fill, groups);
 *   - the lexicographic (score, index) minimum that merges per-lane and
 *     per-warp argmins, and its shuffle step between lanes;
 *   - the supports() checks that every variant makes the same way.
 * Why: one copy keeps the tie rule (equal scores go to the lowest index) and
 * the checks' messages the same in every variant. Everything is in an
 * anonymous namespace, like the files that include it: each translation unit
 * gets its own force-inlined copy, and the kernels compile to the same code as
 * with the pieces written out in each file. */
#ifndef FKM_ASSIGN_FLASH_COMMON_CUH
#define FKM_ASSIGN_FLASH_COMMON_CUH

#include "error.h"
#include "variant.h"

#include <stdint.h>
#include <stdio.h>

namespace {

/* ---- cp.async (sm_80+; compiled to nothing below) ---- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* Async copies global -> shared; valid = false zero-fills without reading.
 * The "memory" clobbers keep the compiler from moving this thread's own reads
 * of the destination across the copy and the wait (assign/flash_tf32 rounds
 * its copies in place right after the wait). */
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)),
               "r"(valid ? 16 : 0)
               : "memory");
#endif
}

__device__ __forceinline__ void cp_async_4(uint32_t dst, const void *src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)),
               "r"(valid ? 4 : 0)
               : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* ---- argmin merge ---- */

/* (s, i) <- lexicographic min of (s, i) and (so, io). */
__device__ __forceinline__ void lex_min(float &s, int &i, float so, int io) {
  if (so < s || (so == s && io < i)) {
    s = so;
    i = io;
  }
}

/* (s, i) <- lexicographic min of this lane's (s, i) and lane ^ o's: one
 * butterfly step of a reduction over the lanes that share a row. */
__device__ __forceinline__ void lex_min_shfl_xor(float &s, int &i, int o) {
  const float so = __shfl_xor_sync(0xffffffffu, s, o);
  const int io = __shfl_xor_sync(0xffffffffu, i, o);
  lex_min(s, i, so, io);
}

/* ---- supports() checks; each returns FKM_OK or says why not ---- */

inline fkm_status flash_check_nonempty(const fkm_shape *s, char *why, size_t n) {
  if (s->B < 1 || s->N < 1 || s->K < 1 || s->D < 1) {
    snprintf(why, n, "needs B, N, K, D >= 1");
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

/* For kernels launched with the batch as grid y. */
inline fkm_status flash_check_grid_y(const fkm_shape *s, char *why, size_t n) {
  if (s->B > 65535) {
    snprintf(why, n, "B=%lld exceeds the grid's y limit 65535", (long long)s->B);
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

inline fkm_status flash_check_smem(const fkm_device *dev, size_t need, char *why, size_t n) {
  if (dev->smem_per_block_optin < (int64_t)need) {
    snprintf(why, n, "needs %zu bytes of shared memory per block, device allows %lld", need,
             (long long)dev->smem_per_block_optin);
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

} // namespace

#endif
