/* sm90_tma_wgmma.cuh — the Hopper (sm_90a) building blocks shared by the FlashAssign
 * kernels that use TMA and wgmma (assign_flash_wgmma.cu, assign_flash_wgmma_pp.cu):
 * fp16/bf16 unpacking, the ||c||^2 kernel with pp's optional -||c||^2 / 2 digits, the
 * record fold of a tile and the end-of-item quad merge + row write (every target),
 * mbarrier / TMA / wgmma fence-commit-wait wrappers and the 128B-swizzle shared-memory
 * descriptor (sm_90a only, under FKM_FW_SM90A), and the host side: the device query and
 * the tensor maps. It takes smem_u32 and ldsm_x4 from assign_flash_common.cuh, and its
 * quad merge breaks ties as that file's lex_min does, like every FlashAssign variant.
 * Private to those files: everything is in an anonymous namespace, so each includes its
 * own copy.
 * Layout convention: a tensor is [B][rows][D] row-major; TMA boxes are 64 elements
 * (128 bytes) of D by box_rows rows, 128-byte swizzled, so every "atom" of box_rows
 * rows x 128 B starts on a 1024-byte boundary in shared memory. */
#ifndef FKM_SM90_TMA_WGMMA_CUH
#define FKM_SM90_TMA_WGMMA_CUH

#include "assign_flash_common.cuh"
#include "device.h"
#include "error.h"
#include "flashkm.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FKM_FW_SM90A 1
#endif

namespace {

constexpr int kSwizzleCols = 64; /* elements of D per 128-byte swizzled TMA box row */

/* ---------------------------------------------------------------------------------- */
/* fp16 / bf16 helpers (valid for every target)                                        */

template <bool kBF16>
__device__ __forceinline__ float2 pair_to_f2(uint32_t w) {
  if constexpr (kBF16) {
    __nv_bfloat162 h;
    memcpy(&h, &w, 4);
    return __bfloat1622float2(h);
  } else {
    __half2 h;
    memcpy(&h, &w, 4);
    return __half22float2(h);
  }
}

/* sum of squares of the 8 elements packed in q, added to s */
template <bool kBF16>
__device__ __forceinline__ float sumsq8(uint4 q, float s) {
  float2 f;
  f = pair_to_f2<kBF16>(q.x); s = fmaf(f.x, f.x, s); s = fmaf(f.y, f.y, s);
  f = pair_to_f2<kBF16>(q.y); s = fmaf(f.x, f.x, s); s = fmaf(f.y, f.y, s);
  f = pair_to_f2<kBF16>(q.z); s = fmaf(f.x, f.x, s); s = fmaf(f.y, f.y, s);
  f = pair_to_f2<kBF16>(q.w); s = fmaf(f.x, f.x, s); s = fmaf(f.y, f.y, s);
  return s;
}

/* ||row||^2 of a D-element row (D % 8 == 0, 16-byte aligned), summed by one warp; every
 * lane gets the result. */
template <bool kBF16>
__device__ __forceinline__ float warp_row_sumsq(const uint16_t *row16, int D, int lane) {
  const uint4 *row = reinterpret_cast<const uint4 *>(row16);
  float s = 0.f;
  for (int v = lane; v < D / 8; v += 32) s = sumsq8<kBF16>(__ldg(row + v), s);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

/* -||c||^2 / 2 as four 16-bit digits d_i with weights w_i: sum_i w_i d_i equals it to ~2^-40
 * relative (each digit rounds the remainder of the previous ones). fp16: w = 2^15, 2^4, 2^-7,
 * 2^-18 (11 bits apart, so every remainder fits the next digit: |r_i / w_i| <= 2^15), valid
 * while ||c||^2 / 2 <= 65504 * 2^15; bf16: w = 1 (bf16 has fp32's range). flash_wgmma_pp's
 * norm step multiplies them by the weights, its A operand's constant rows (kWeights*).
 * Returns false when out of range. */
template <bool kBF16>
__device__ __forceinline__ bool norm_digits(float cn, uint16_t (&d)[4]) {
  double r = -0.5 * (double)cn;
  if constexpr (kBF16) {
    for (int i = 0; i < 4; ++i) {
      const __nv_bfloat16 h = __double2bfloat16(r);
      d[i] = __bfloat16_as_ushort(h);
      r -= (double)__bfloat162float(h);
    }
    return isfinite(cn) && !__hisinf(__ushort_as_bfloat16(d[0]));
  } else {
    const double w[4] = {32768.0, 16.0, 1.0 / 128.0, 1.0 / 262144.0};
    if (!(fabs(r) <= 65504.0 * 32768.0)) return false; /* also +inf, NaN */
    for (int i = 0; i < 4; ++i) {
      const __half h = __double2half(r / w[i]);
      d[i] = __half_as_ushort(h);
      r -= w[i] * (double)__half2float(h);
    }
    return true;
  }
}

/* the digits' weights, two per 32-bit register as the A fragment holds them (low half first) */
constexpr uint32_t kWeightsF16Lo = 0x4C007800u, kWeightsF16Hi = 0x00402000u; /* (2^15, 2^4), (2^-7, 2^-18) */
constexpr uint32_t kWeightsBF16 = 0x3F803F80u;                               /* (1, 1) */

/* ||c_k||^2 for k < K, +inf for padding rows K <= k < kpad, into cn[B][kpad]; one warp per
 * (b, k), 8 per 256-thread block. digits == null: norms only (flash_wgmma, and pp without
 * its norm step). Otherwise also the digits row [d0 d1 d2 d3 0 ... 0] of every (b, k) (16 x
 * 16 bit; zeros for padding rows, which the fold masks), and a norm out of the digits' range
 * stores `epoch` in *range_flag: the assign kernel launched next then folds with cn instead. */
template <bool kBF16>
__global__ void __launch_bounds__(256) cnorm_digits_kernel(const uint16_t *__restrict__ c, float *__restrict__ cn,
                                                           uint4 *__restrict__ digits, unsigned *range_flag,
                                                           unsigned epoch, int K, int D, int kpad, long long rows) {
  const long long r = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  const long long b = r / kpad;
  const int k = (int)(r - b * kpad);
  float s = INFINITY;
  if (k < K) s = warp_row_sumsq<kBF16>(c + ((size_t)b * (size_t)K + (size_t)k) * (size_t)D, D, lane);
  if (lane != 0) return;
  cn[r] = s;
  if (!digits) return;
  uint16_t d[4] = {0, 0, 0, 0};
  if (k < K && !norm_digits<kBF16>(s, d)) *range_flag = epoch;
  digits[2 * r] = make_uint4((uint32_t)d[0] | ((uint32_t)d[1] << 16), (uint32_t)d[2] | ((uint32_t)d[3] << 16), 0u, 0u);
  digits[2 * r + 1] = make_uint4(0u, 0u, 0u, 0u);
}

/* The end of a work item, for row n of batch b in a wgmma fragment: the 4 lanes of a quad
 * hold partial (best score, best index) and partial ||x||^2 of the row. Merges them
 * (equal scores go to the lowest index, as lex_min); the one lane of the quad with `writer`
 * set stores label and dist = max(0, ||x||^2 + score) if n < N. Every lane of the warp
 * calls it (full-mask shuffles). */
__device__ __forceinline__ void quad_merge_write_row(float s, int k, float xsq, bool writer, int b, int n, int N,
                                                     int32_t *labels, float *dist) {
  /* the butterfly written out, not through lex_min_shfl_xor: same result, and the
   * SASS the kernels had before this function existed (lex_min's form turned a few
   * selects into branches: +8-16 instructions per item in flash_wgmma) */
#pragma unroll
  for (int m = 1; m <= 2; m <<= 1) {
    const float os = __shfl_xor_sync(0xffffffffu, s, m);
    const int ok = __shfl_xor_sync(0xffffffffu, k, m);
    if (os < s || (os == s && ok < k)) {
      s = os;
      k = ok;
    }
  }
  xsq += __shfl_xor_sync(0xffffffffu, xsq, 1);
  xsq += __shfl_xor_sync(0xffffffffu, xsq, 2);
  if (writer && n < N) {
    const size_t o = (size_t)b * (size_t)N + (size_t)n;
    labels[o] = k;
    dist[o] = fmaxf(0.f, xsq + s);
  }
}

/* The record fold of one tile into the rows' running best (bs[h], bi[h]), h = 0, 1: the
 * thread's rows g and g + 8 of a wgmma fragment, NACC / 4 column blocks j of columns
 * col0 + 8j + {0, 1} (col0 = the tile's first column + 2 q); acc holds final scores, larger
 * better if kMax, smaller otherwise. Per row: the best of the thread's scores (a tree, one
 * FMNMX a score), the quad's best M (the 4 lanes of a quad hold the row's columns); only if
 * M strictly beats bs[h] in some row of the warp (earlier tiles hold lower indices) do the
 * lanes holding M look for their first column equal to M (M is one of the scores bit for
 * bit), and the quad keeps the lowest. bs / bi end identical in the quad's lanes. For large
 * K a record is rare (~16/t of the warps at tile t); at small K most tiles still search
 * (two instructions a score, as a per-score select fold). One vote for both rows: a vote
 * per row measured 1-2 % slower at 1M x 65536 (H100, NOTES.md). Every lane of the warp
 * calls it (full-mask shuffles and vote). */
template <bool kMax, int NACC>
__device__ __forceinline__ void record_fold(const float (&acc)[NACC], int col0, float (&bs)[2], int (&bi)[2]) {
  constexpr int NJ = NACC / 4;
  static_assert(NJ == 16 || NJ == 32, "n128 or n256 fragments");
  auto better = [](float a, float b) { return kMax ? fmaxf(a, b) : fminf(a, b); };
  float mine[2], M[2];
  bool rec[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float m[NJ];
#pragma unroll
    for (int j = 0; j < NJ; ++j) m[j] = better(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
#pragma unroll
    for (int l = 1; l < NJ; l *= 2)
#pragma unroll
      for (int j = 0; j < NJ / (2 * l); ++j) m[j] = better(m[j], m[j + NJ / (2 * l)]);
    mine[h] = m[0];
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) M[h] = better(mine[h], __shfl_xor_sync(0xffffffffu, mine[h], 1));
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    M[h] = better(M[h], __shfl_xor_sync(0xffffffffu, M[h], 2));
    rec[h] = kMax ? M[h] > bs[h] : M[h] < bs[h];
  }
  if (!__any_sync(0xffffffffu, rec[0] || rec[1])) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    int li = INT_MAX;
    if (rec[h] && mine[h] == M[h]) {
      /* four independent select chains over NJ / 4 blocks each (decreasing order: the
       * last hit is the chain's lowest column; 8 NJ = none), then the lowest of the four */
      int lc[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        lc[c] = 8 * NJ;
#pragma unroll
        for (int j = (c + 1) * (NJ / 4) - 1; j >= c * (NJ / 4); --j) {
          if (acc[4 * j + 2 * h + 1] == M[h]) lc[c] = 8 * j + 1;
          if (acc[4 * j + 2 * h + 0] == M[h]) lc[c] = 8 * j;
        }
      }
      li = col0 + min(min(lc[0], lc[1]), min(lc[2], lc[3]));
    }
    li = min(li, __shfl_xor_sync(0xffffffffu, li, 1));
    li = min(li, __shfl_xor_sync(0xffffffffu, li, 2));
    if (rec[h]) {
      bs[h] = M[h];
      bi[h] = li;
    }
  }
}

/* ---------------------------------------------------------------------------------- */
/* sm_90a primitives                                                                    */
#ifdef FKM_FW_SM90A

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

/* arrive (count 1) and add `bytes` to the expected transaction count of the phase */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("{\n\t.reg .b64 st;\n\tmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n\t}" ::"r"(bar),
               "r"(bytes)
               : "memory");
}

/* The phase clocks of the kernels' -D..._PHASE_CLOCK builds: one thread sums the SM cycles
 * between consecutive marks per phase and counts tiles; store() writes the means per tile
 * to out[0..N-1] and the tile count to out[N]. */
template <int N>
struct PhaseClock {
  long long sum[N];
  long long last, tiles;
  bool on;
  __device__ explicit PhaseClock(bool on_) : last(clock64()), tiles(0), on(on_) {
    for (int k = 0; k < N; ++k) sum[k] = 0;
  }
  __device__ void mark(int k) {
    if (on) {
      const long long now = clock64();
      sum[k] += now - last;
      last = now;
    }
  }
  __device__ void tile() { tiles += on ? 1 : 0; }
  __device__ void store(long long *out) const {
    if (!on || !tiles) return;
    for (int k = 0; k < N; ++k) out[k] = sum[k] / tiles;
    out[N] = tiles;
  }
};

/* named barrier id over n threads (a multiple of 32): sync waits, arrive does not; both
 * order the caller's earlier memory accesses before the barrier's completion */
__device__ __forceinline__ void named_bar_sync(int id, int n) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
}

/* plain arrive (release semantics, CTA scope) */
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("{\n\t.reg .b64 st;\n\tmbarrier.arrive.shared::cta.b64 st, [%0];\n\t}" ::"r"(bar) : "memory");
}

/* wait until the phase with the given parity has completed (acquire, CTA scope).
 * Debug builds with -DFKM_FW_HANG_TRAP report a wait that never completes (wrong parity
 * or tx byte count) and trap instead of hanging. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
#ifdef FKM_FW_HANG_TRAP
  uint32_t polls = 0;
#endif
  do {
    asm volatile("{\n\t.reg .pred p;\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                 "selp.u32 %0, 1, 0, p;\n\t}"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
#ifdef FKM_FW_HANG_TRAP
    if (!done && ++polls == (1u << 24)) {
      printf("FlashAssign sm_90a: mbarrier wait stuck: block %d thread %d barrier smem 0x%x parity %u\n",
             (int)blockIdx.x, (int)threadIdx.x, bar, parity);
      __trap();
    }
#endif
  } while (!done);
}

/* TMA: 3-D tile {c0 (element in D), c1 (row), c2 (batch)} -> shared, completes tx on bar */
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0, int c1,
                                            int c2) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
               " [%0], [%1, {%3, %4, %5}], [%2];" ::"r"(dst),
               "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

/* Shared-memory matrix descriptor, K-major, 128-byte swizzle:
 *   bits  0-13 start address >> 4
 *   bits 16-29 leading-dimension byte offset >> 4: unused for swizzled K-major, set to 1
 *   bits 32-45 stride-dimension byte offset >> 4: 1024 B between 8-row core-matrix groups
 *   bits 49-51 base offset = 0 (every atom starts on a 1024-byte boundary)
 *   bits 62-63 swizzle mode 1 = 128B                                                    */
constexpr uint64_t kDescHi = (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
__device__ __forceinline__ uint64_t make_desc(uint32_t saddr) { return kDescHi | (uint64_t)((saddr & 0x3FFFFu) >> 4); }

/* The same for 32-byte rows (one k16 step of 16-bit data) with 32-byte swizzle: 256 B between
 * 8-row groups, swizzle mode 3 = 32B; the block starts on a 256-byte boundary. */
constexpr uint64_t kDescHiSw32 = (1ull << 16) | ((uint64_t)(256 >> 4) << 32) | (3ull << 62);
__device__ __forceinline__ uint64_t make_desc_sw32(uint32_t saddr) {
  return kDescHiSw32 | (uint64_t)((saddr & 0x3FFFFu) >> 4);
}

#endif /* FKM_FW_SM90A */

/* ---------------------------------------------------------------------------------- */
/* host: tensor maps                                                                    */

/* The current device as the supports() checks see it (compute capability, SMs, opt-in
 * shared memory). Four attribute reads, not fkm_device_query: its cudaGetDeviceProperties
 * takes milliseconds, and a setup can sit inside a timed region (the streamed fit's
 * calibration of compute alone read up to 2.4x slow with it). */
static fkm_status query_device(fkm_device *d) {
  memset(d, 0, sizeof *d);
  int dev = 0, major = 0, minor = 0, sms = 0, optin = 0;
  FKM_CUDA(cudaGetDevice(&dev));
  FKM_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  d->present = 1;
  d->ordinal = dev;
  d->cc = major * 10 + minor;
  d->sm_count = sms;
  d->smem_per_block_optin = optin;
  return FKM_OK;
}

typedef PFN_cuTensorMapEncodeTiled_v12000 encode_fn_t;

static encode_fn_t get_encode_fn(void) {
  static encode_fn_t fn = nullptr;
  if (!fn) {
    void *f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess && f)
      fn = reinterpret_cast<encode_fn_t>(f);
    else
      (void)cudaGetLastError();
  }
  return fn;
}

/* 3-D map over a [B][rows][D] row-major fp16/bf16 tensor: dims (D, rows, B), box (box_cols, box_rows, 1),
 * the given swizzle (box_cols x 2 bytes = its span), out-of-bounds elements read as zero. */
static fkm_status encode_map_swizzled(CUtensorMap *m, const void *ptr, fkm_dtype dt, int64_t D, int64_t rows,
                                      int64_t B, int box_cols, int box_rows, CUtensorMapSwizzle swizzle,
                                      const char *who) {
  encode_fn_t fn = get_encode_fn();
  if (!fn) return fkm_fail(FKM_ERR_CUDA, "%s: cuTensorMapEncodeTiled entry point not available", who);
  if (((uintptr_t)ptr & 15u) != 0)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "%s: tensor base address %p is not 16-byte aligned", who, ptr);
  const cuuint64_t dims[3] = {(cuuint64_t)D, (cuuint64_t)rows, (cuuint64_t)B};
  const cuuint64_t strides[2] = {(cuuint64_t)D * 2u, (cuuint64_t)rows * (cuuint64_t)D * 2u};
  const cuuint32_t box[3] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows, 1u};
  const cuuint32_t estr[3] = {1u, 1u, 1u};
  const CUresult r = fn(m, dt == FKM_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3u,
                        const_cast<void *>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return fkm_fail(FKM_ERR_CUDA, "%s: cuTensorMapEncodeTiled failed (CUresult %d) for dims (%lld, %lld, %lld)",
                    who, (int)r, (long long)D, (long long)rows, (long long)B);
  return FKM_OK;
}

/* The data and centroid maps: boxes of 64 elements (128 bytes) of D by box_rows rows, 128B swizzle. */
static fkm_status encode_map(CUtensorMap *m, const void *ptr, fkm_dtype dt, int64_t D, int64_t rows, int64_t B,
                             int box_rows, const char *who) {
  return encode_map_swizzled(m, ptr, dt, D, rows, B, kSwizzleCols, box_rows, CU_TENSOR_MAP_SWIZZLE_128B, who);
}

} /* namespace */

#endif /* FKM_SM90_TMA_WGMMA_CUH */
