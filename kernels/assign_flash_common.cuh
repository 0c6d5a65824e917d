/* assign_flash_common.cuh — pieces shared by the FlashAssign kernels
 * assign_flash_simt.cu, assign_flash_mma.cu and assign_flash_tf32.cu (and, through
 * sm90_tma_wgmma.cuh, smem_u32, ldmatrix and the argmin merge for the wgmma kernels):
 *   - the sm_80 cp.async wrappers (global -> shared, zero-fill, groups) and ldmatrix;
 *   - the ||c||² kernel (fp32 sums, +inf for the padding centroids) and the
 *     element load it widens fp16/bf16 with;
 *   - the lexicographic (score, index) minimum that merges per-lane and
 *     per-warp argmins, and its shuffle step between lanes;
 *   - the supports() checks that every variant makes the same way.
 * Why: one copy keeps the tie rule (equal scores go to the lowest index), the
 * ||c||² sums and the checks' messages the same in every variant. Everything
 * is in an anonymous namespace, like the files that include it: each
 * translation unit gets its own copy (its own instances of the norms kernel).
 * simt, mma and tf32 compile to the same code as with the pieces written out
 * in each file (the wgmma kernels' end-of-item merge, quad_merge_write_row in
 * sm90_tma_wgmma.cuh, writes lex_min's butterfly out: through lex_min a few
 * selects became branches). */
#ifndef FKM_ASSIGN_FLASH_COMMON_CUH
#define FKM_ASSIGN_FLASH_COMMON_CUH

#include "error.h"
#include "variant.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
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

/* Four 8x8 b16 matrices from shared memory (ldmatrix, sm_80+); lanes 8i..8i+7 give the
 * row addresses of matrix i, and lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of
 * each: mma.sync's and wgmma's A fragment of 16 x 16. */
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
#endif
}

/* ---- centroid norms ---- */

/* Element i of a dtype buffer, widened to fp32 (fp16/bf16 -> fp32 is exact). */
template <int DT>
__device__ __forceinline__ float load_f32(const void *p, int64_t i) {
  if constexpr (DT == FKM_F32) {
    return __ldg((const float *)p + i);
  } else {
    const unsigned short h = __ldg((const unsigned short *)p + i);
    if constexpr (DT == FKM_F16) return __half2float(__ushort_as_half(h));
    else return __uint_as_float((uint32_t)h << 16);
  }
}

/* ||c_k||² of every centroid in fp32, one warp per centroid, into csq[B][Kpad];
 * padding entries (k >= K) are +inf, so a padded column never wins. Launch with
 * 256-thread blocks, ceil(B·Kpad / 8) of them. */
template <int DT>
__global__ void __launch_bounds__(256) flash_centroid_norms(const void *__restrict__ c, float *__restrict__ csq,
                                                            int64_t B, int64_t K, int64_t D, int64_t Kpad) {
  const int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= B * Kpad) return; /* warp-uniform */
  const int64_t b = w / Kpad, k = w - b * Kpad;
  float s = 0.f;
  if (k < K) {
    const int64_t base = (b * K + k) * D;
    for (int64_t d = lane; d < D; d += 32) {
      const float v = load_f32<DT>(c, base + d);
      s = fmaf(v, v, s);
    }
  }
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) csq[w] = k < K ? s : INFINITY;
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
