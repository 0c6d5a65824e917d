/* assign_flash_tf32.cu — `assign/flash_tf32`: FlashAssign for fp32 data on sm_80+ tensor cores.
 *
 * What: fused distance + online argmin for fp32 inputs: x·c from mma.sync
 *   m16n8k8 .tf32 (fp32 accumulate), folded after each centroid tile into a
 *   running (min score, argmin) per point with score = ||c||² − 2·x·c. The N×K
 *   distance matrix is never stored.
 * Why: fp32 data on tensor cores. The operands are rounded to tf32 (10 mantissa
 *   bits, cvt.rna: round to nearest, not the hardware's truncation), so the
 *   variant is labelled FKM_COMPUTE_TF32 and validated with the tf32 tolerance
 *   of validate.c (4·2^-10 of ||x||² + ||c||² on top of fp32 accumulation).
 *   The exact fp32 path is assign/flash_simt; fp16/bf16 data go to
 *   assign/flash_mma or assign/flash_wgmma. ||x||² and ||c||² are plain fp32
 *   sums of the unrounded values.
 *
 * Tiling: a block of 4 warps owns BM = 64 points of one batch and sweeps all
 *   centroid tiles of BN = 64; warps are 2 (points) × 2 (centroids), a warp tile
 *   is 32 × 32 = 2 m16 × 4 n8 mma tiles (32 fp32 accumulators per thread). A
 *   pipeline step is one (centroid tile, D chunk of 32 floats), staged by
 *   cp.async into a ring of S stages, one __syncthreads per step:
 *     resident mode (D rounded up to 16 <= 256, and 2 blocks fit on an SM):
 *       the X tile (64 × D) stays in shared memory for the whole sweep, loaded
 *       with step 0; the ring (S = 4) holds centroid chunks only;
 *     stream mode (larger D): the ring (S = 3) holds an X chunk beside each
 *       centroid chunk, a plain GEMM main loop over D per centroid tile.
 *   Only k16 steps up to D rounded to 16 are computed; columns in [D, that) and
 *   rows past N or K are zero-filled (src-size 0), so they add nothing.
 *   Loads: 16-byte cp.async when D % 4 == 0 and x, c are 16-byte aligned;
 *   otherwise 4-byte cp.async per element into the same layout.
 * Rounding: each thread rounds the pieces it copied itself, in place, after its
 *   cp.async.wait_group and before the step's barrier (X adds its squares to
 *   ||x||² first), so the inner loop feeds shared memory straight to the mma.
 *
 * Fragments (PTX ISA, mma.m16n8k8 .tf32; g = lane >> 2, t = lane & 3):
 *   A 16×8 row: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);
 *   B 8×8 col:  b0 (k t, n g), b1 (k t+4, n g);
 *   C 16×8:     c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
 *   The sum over k does not care which physical column plays which k, as long
 *   as A and B agree: for a k16 slice, lane t loads one float4 = columns
 *   4t..4t+3 of its A rows (g, g+8) and of its centroid (n = g); k8 step 0
 *   takes columns 4t, 4t+1 as k = t, t+4, step 1 takes 4t+2, 4t+3. Over the 4
 *   lanes that covers the 16 columns once each, with 128-bit shared loads.
 * Shared layout: chunks are 64 rows × 32 floats (8 16-byte pieces), piece p of
 *   row r stored at p ^ (4·(r & 1)): the two rows of a quarter-warp's float4
 *   loads land on opposite halves of the banks. The resident X tile has rows of
 *   xs floats, xs ≡ 16 (mod 32), for the same effect.
 * Ties: each thread visits its columns in increasing centroid order with a
 *   strict `<`, tiles in increasing order; the 4 lanes of a quad and then the 2
 *   warps sharing a row reduce lexicographically on (score, index), so equal
 *   scores go to the lowest index. ||c||² (a small norms kernel into scratch
 *   [B][Kpad], Kpad = K rounded up to 64) is +inf for padding centroids, whose
 *   zero columns then score +inf and never win. */
#include "assign_flash_common.cuh"
#include "error.h"
#include "variant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

constexpr int kBM = 64;        /* points per block */
constexpr int kBN = 64;        /* centroids per tile */
constexpr int kKC = 32;        /* floats per D chunk: 8 pieces of 16 bytes */
constexpr int kThreads = 128;  /* 4 warps, 2 x 2, warp tile 32 x 32 */
constexpr int kChunkFloats = kBM * kKC;  /* one 64 x 32 chunk, 8 KB */
constexpr int kResidentMaxD = 256;       /* resident X while D rounded to 16 is at most this */
static_assert(kBM == kBN && kThreads == 128, "the loaders map 64 rows x 8 pieces onto 128 threads, 4 each");

template <bool STREAM>
struct Pipe {
  static constexpr int kStages = STREAM ? 3 : 4;
  static constexpr int kStageFloats = kChunkFloats * (STREAM ? 2 : 1); /* C chunk, then X chunk */
};

static size_t smem_bytes(bool stream, int xs) {
  if (stream) return (size_t)Pipe<true>::kStages * Pipe<true>::kStageFloats * sizeof(float);
  return ((size_t)kBM * xs + (size_t)Pipe<false>::kStages * Pipe<false>::kStageFloats) * sizeof(float);
}

struct Args {
  const float *x, *c;
  const float *csq; /* [B][Kpad], +inf padding */
  int32_t *labels;
  float *dist;
  int64_t N;
  int K, D, Kpad;
  int dp16;   /* D rounded up to 16: the k extent actually computed */
  int xs;     /* resident X row stride in floats, ≡ 16 mod 32 */
  int nch;    /* D chunks of 32 */
  int ntiles; /* centroid tiles of 64 */
  int ptiles; /* point tiles of 64 per batch */
};

/* ---- PTX wrappers (sm_80+; cp.async in assign_flash_common.cuh) ---- */

/* fp32 -> tf32, round to nearest (ties away from zero); low 13 bits zero. */
__device__ __forceinline__ uint32_t tf32_rna(float f) {
  uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(f));
#else
  r = __float_as_uint(f);
#endif
  return r;
}

/* d += A(16x8, row) * B(8x8, col), tf32 in, fp32 accumulate. */
__device__ __forceinline__ void mma_1688(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

/* One 16-byte piece: columns d0..d0+3 of a row at src + off (row valid: rv).
 * VEC: D % 4 == 0 and 16-byte aligned, so a piece is entirely inside or
 * outside [0, D). Otherwise four 4-byte copies, each zero-filled past D. */
template <bool VEC>
__device__ __forceinline__ void copy_piece(uint32_t dst, const float *__restrict__ base, int64_t off, bool rv,
                                           int d0, int D) {
  if constexpr (VEC) {
    const bool v = rv && d0 < D;
    cp_async_16(dst, v ? base + off : base, v);
  } else {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const bool v = rv && d0 + e < D;
      cp_async_4(dst + 4 * e, v ? base + off + e : base, v);
    }
  }
}

/* Chunk `ch` (columns 32ch..32ch+31) of rows [row0, row0 + 64) of a row-major
 * [nrows][D] matrix into a ring chunk at shared address dst. Thread tid copies
 * piece p = tid & 7 of rows r0 + 16q (r0 = tid >> 3, q < 4): 8 consecutive
 * threads read one 128-byte row segment. Stored at piece p ^ 4·(r & 1); r & 1
 * is the same for all q. Every piece is written (zero past D). */
template <bool VEC>
__device__ __forceinline__ void load_chunk(uint32_t dst, const float *__restrict__ base, int64_t row0,
                                           int64_t nrows, int D, int ch, int tid) {
  const int p = tid & 7, r0 = tid >> 3;
  const int d0 = ch * kKC + p * 4;
  dst += (uint32_t)(r0 * kKC + ((p ^ ((r0 & 1) << 2)) << 2)) * 4u;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    const int64_t row = row0 + r0 + 16 * q;
    copy_piece<VEC>(dst + (uint32_t)(q * 16 * kKC * 4), base, row * D + d0, row < nrows, d0, D);
  }
}

/* The resident X tile: rows [row0, row0 + 64), columns [0, dp16), row stride
 * xs floats. Same thread map as load_chunk: pieces p, p + 8, ... of rows r0 + 16q. */
template <bool VEC>
__device__ __forceinline__ void load_x_resident(uint32_t dst, const float *__restrict__ base, int64_t row0,
                                                int64_t nrows, int D, int dp16, int xs, int tid) {
  const int p = tid & 7, r0 = tid >> 3, npieces = dp16 >> 2;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    const int r = r0 + 16 * q;
    const int64_t row = row0 + r;
    const bool rv = row < nrows;
    for (int pc = p; pc < npieces; pc += 8)
      copy_piece<VEC>(dst + (uint32_t)(r * xs + 4 * pc) * 4u, base, row * D + 4 * pc, rv, 4 * pc, D);
  }
}

/* Rounds one piece to tf32 in place; with SUM, first adds its squares (the
 * unrounded values) to acc. */
template <bool SUM>
__device__ __forceinline__ void round_piece(float *piece, float &acc) {
  float4 v = *reinterpret_cast<const float4 *>(piece);
  if constexpr (SUM) acc = fmaf(v.w, v.w, fmaf(v.z, v.z, fmaf(v.y, v.y, fmaf(v.x, v.x, acc))));
  uint4 r;
  r.x = tf32_rna(v.x);
  r.y = tf32_rna(v.y);
  r.z = tf32_rna(v.z);
  r.w = tf32_rna(v.w);
  *reinterpret_cast<uint4 *>(piece) = r;
}

/* The pieces of a ring chunk that this thread copied (load_chunk's map). */
template <bool SUM>
__device__ __forceinline__ void round_chunk(float *chunk, int tid, float (&acc)[4]) {
  const int p = tid & 7, r0 = tid >> 3;
  float *pc = chunk + r0 * kKC + ((p ^ ((r0 & 1) << 2)) << 2);
#pragma unroll
  for (int q = 0; q < 4; q++) round_piece<SUM>(pc + q * 16 * kKC, acc[q]);
}

/* The pieces of the resident X tile that this thread copied; sums ||x||². */
__device__ __forceinline__ void round_x_resident(float *xres, int dp16, int xs, int tid, float (&acc)[4]) {
  const int p = tid & 7, r0 = tid >> 3, npieces = dp16 >> 2;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    float *row = xres + (r0 + 16 * q) * xs;
    for (int pc = p; pc < npieces; pc += 8) round_piece<true>(row + 4 * pc, acc[q]);
  }
}

template <bool STREAM, bool VEC>
__global__ void __launch_bounds__(kThreads, 3) flash_tf32_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using P = Pipe<STREAM>;
  constexpr int S = P::kStages;
  extern __shared__ __align__(128) float smem[];
  __shared__ float xsq_s[kBM];
  __shared__ float red_s[2][kBM];
  __shared__ int red_i[2][kBM];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1; /* warp tile: points wm*32.., centroids wn*32.. */
  const int g = lane >> 2, tq = lane & 3;  /* mma fragment coordinates */
  const int64_t b = blockIdx.x / a.ptiles;
  const int64_t row0 = (int64_t)(blockIdx.x - b * a.ptiles) * kBM;
  const float *xb = a.x + b * a.N * a.D;
  const float *cb = a.c + b * (int64_t)a.K * a.D;
  const float *csqb = a.csq + b * (int64_t)a.Kpad;
  float *const xres = smem; /* resident mode only */
  float *const ring = smem + (STREAM ? 0 : kBM * a.xs);
  const uint32_t ring_u = smem_u32(ring);
  const int total = a.ntiles * a.nch; /* pipeline steps: (tile, chunk), chunk fastest */

  /* Producer: loads step `is` into ring slot `islot`. Every call commits one
   * group (possibly empty), so cp.async.wait_group counts stay uniform. */
  int is = 0, ij = 0, ic = 0, islot = 0;
  auto issue = [&]() {
    if (is < total) {
      const uint32_t st = ring_u + (uint32_t)(islot * P::kStageFloats * 4);
      load_chunk<VEC>(st, cb, (int64_t)ij * kBN, a.K, a.D, ic, tid);
      if constexpr (STREAM) load_chunk<VEC>(st + kChunkFloats * 4, xb, row0, a.N, a.D, ic, tid);
      is++;
      if (++ic == a.nch) {
        ic = 0;
        ij++;
      }
      if (++islot == S) islot = 0;
    }
    cp_async_commit();
  };

  float acc[2][4][4];
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.f;
  float best_s[2][2]; /* rows wm*32 + mt*16 + h*8 + g */
  int best_i[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      best_s[mt][h] = INFINITY;
      best_i[mt][h] = INT32_MAX;
    }
  float xpart[4] = {0.f, 0.f, 0.f, 0.f}; /* ||x||² partials of rows (tid >> 3) + 16q */
  float cdummy[4];                       /* round_chunk without sums */

  /* The resident X tile rides in step 0's group. */
  if constexpr (!STREAM) load_x_resident<VEC>(smem_u32(xres), xb, row0, a.N, a.D, a.dp16, a.xs, tid);
#pragma unroll
  for (int q = 0; q < S - 1; q++) issue();

  /* Per-lane fragment offsets (floats). A rows wm*32 + mt*16 + g (+8), B rows
   * wn*32 + nt*8 + g: all have the parity of g, so one swizzle bit per lane. */
  const int sw = g & 1;
  const int a_row = wm * 32 + g;
  const int b_off = (wn * 32 + g) * kKC;

  int cj = 0, cc = 0, cslot = 0; /* consumer: tile, chunk, ring slot */
  for (int s = 0; s < total; s++) {
    cp_async_wait<S - 2>(); /* this thread's copies for step s (and X) have landed */
    float *const cs = ring + cslot * P::kStageFloats;
    if constexpr (STREAM) {
      if (cj == 0) round_chunk<true>(cs + kChunkFloats, tid, xpart);
      else round_chunk<false>(cs + kChunkFloats, tid, cdummy);
    } else {
      if (s == 0) round_x_resident(xres, a.dp16, a.xs, tid, xpart);
    }
    round_chunk<false>(cs, tid, cdummy);
    __syncthreads(); /* everyone's rounded copies are in; everyone is done with step s-1's slot */
    issue();         /* refills step s-1's slot with step s+S-1 */

    const int nk = min(2, (a.dp16 - cc * kKC) >> 4); /* k16 slices in this chunk */
#pragma unroll
    for (int kk = 0; kk < 2; kk++) {
      if (kk < nk) {
        uint4 xa[2], xh[2], cv[4]; /* rows g, g + 8 of each m16 tile; centroid g of each n8 tile */
        if constexpr (STREAM) {
          const float *xs = cs + kChunkFloats + a_row * kKC + ((4 * (kk ^ sw) + tq) << 2);
#pragma unroll
          for (int mt = 0; mt < 2; mt++) {
            xa[mt] = *reinterpret_cast<const uint4 *>(xs + mt * 16 * kKC);
            xh[mt] = *reinterpret_cast<const uint4 *>(xs + (mt * 16 + 8) * kKC);
          }
        } else {
          const float *xs = xres + a_row * a.xs + cc * kKC + kk * 16 + tq * 4;
#pragma unroll
          for (int mt = 0; mt < 2; mt++) {
            xa[mt] = *reinterpret_cast<const uint4 *>(xs + mt * 16 * a.xs);
            xh[mt] = *reinterpret_cast<const uint4 *>(xs + (mt * 16 + 8) * a.xs);
          }
        }
        const float *bs = cs + b_off + ((4 * (kk ^ sw) + tq) << 2);
#pragma unroll
        for (int nt = 0; nt < 4; nt++) cv[nt] = *reinterpret_cast<const uint4 *>(bs + nt * 8 * kKC);
        /* k8 step 0: columns 4t, 4t+1 as k = t, t+4; step 1: 4t+2, 4t+3. */
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
          for (int nt = 0; nt < 4; nt++)
            mma_1688(acc[mt][nt], xa[mt].x, xh[mt].x, xa[mt].y, xh[mt].y, cv[nt].x, cv[nt].y);
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
          for (int nt = 0; nt < 4; nt++)
            mma_1688(acc[mt][nt], xa[mt].z, xh[mt].z, xa[mt].w, xh[mt].w, cv[nt].z, cv[nt].w);
      }
    }

    if (cc == a.nch - 1) { /* tile complete: fold into the running argmin */
#pragma unroll
      for (int nt = 0; nt < 4; nt++) { /* columns in increasing order for every row */
        const int k0 = cj * kBN + wn * 32 + nt * 8 + tq * 2;
        const float2 q = __ldg(reinterpret_cast<const float2 *>(csqb + k0)); /* k0 + 1 < Kpad; +inf padding */
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const float s0 = fmaf(-2.f, acc[mt][nt][2 * h], q.x);
            if (s0 < best_s[mt][h]) {
              best_s[mt][h] = s0;
              best_i[mt][h] = k0;
            }
            const float s1 = fmaf(-2.f, acc[mt][nt][2 * h + 1], q.y);
            if (s1 < best_s[mt][h]) {
              best_s[mt][h] = s1;
              best_i[mt][h] = k0 + 1;
            }
            acc[mt][nt][2 * h] = 0.f;
            acc[mt][nt][2 * h + 1] = 0.f;
          }
      }
    }

    if (++cc == a.nch) {
      cc = 0;
      cj++;
    }
    if (++cslot == S) cslot = 0;
  }
  cp_async_wait<0>(); /* only empty groups are left; nothing may be in flight at exit */

  /* The 4 lanes of a quad hold the same rows, interleaved columns. */
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int o = 1; o <= 2; o <<= 1) lex_min_shfl_xor(best_s[mt][h], best_i[mt][h], o);
  if (tq == 0) {
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = wm * 32 + mt * 16 + h * 8 + g;
        red_s[wn][r] = best_s[mt][h];
        red_i[wn][r] = best_i[mt][h];
      }
  }
  /* ||x||² of row r0 + 16q: its 8 pieces per chunk were summed by lanes
   * 8m..8m+7 of one warp (p = lane & 7). */
#pragma unroll
  for (int q = 0; q < 4; q++) {
    float v = xpart[q];
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    v += __shfl_xor_sync(0xffffffffu, v, 4);
    if ((tid & 7) == 0) xsq_s[(tid >> 3) + 16 * q] = v;
  }
  __syncthreads();
  if (tid < kBM) { /* the 2 warps sharing a row (wn = 0, 1) */
    float bs = red_s[0][tid];
    int bi = red_i[0][tid];
    lex_min(bs, bi, red_s[1][tid], red_i[1][tid]);
    const int64_t n = row0 + tid;
    if (n < a.N) {
      /* bi stays INT32_MAX only if every score was NaN or +inf. */
      a.labels[b * a.N + n] = bi < a.K ? bi : 0;
      a.dist[b * a.N + n] = fmaxf(0.f, xsq_s[tid] + bs);
    }
  }
#endif
}

/* ---- host side ---- */

typedef struct {
  float *csq;   /* [B][Kpad] */
  int64_t kpad; /* K rounded up to 64 */
  int stream;   /* stream mode (X chunks through the ring) */
  int xs;       /* resident X row stride */
  size_t smem;
} tf32_state;

static int64_t dp16_of(int64_t D) { return (D + 15) / 16 * 16; }
static int xs_of(int64_t D) {
  const int64_t d = dp16_of(D);
  return (int)(d % 32 == 16 ? d : d + 16);
}

static fkm_status tf32_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  if (s->dtype != FKM_F32) {
    snprintf(why, n, "takes fp32 data only, got %s (for fp16/bf16 use assign/flash_mma or assign/flash_wgmma)",
             fkm_dtype_name(s->dtype));
    return FKM_ERR_NOT_SUPPORTED;
  }
  FKM_TRY(flash_check_nonempty(s, why, n));
  const int64_t ptiles = (s->N + kBM - 1) / kBM, ntiles = (s->K + kBN - 1) / kBN;
  const int64_t nch = (s->D + kKC - 1) / kKC;
  if (s->K > INT32_MAX - kBN || s->D > INT32_MAX / 2 || ptiles > INT32_MAX / s->B || ntiles * nch > INT32_MAX ||
      (s->B * ntiles * kBN + 7) / 8 > INT32_MAX) {
    snprintf(why, n, "K or D beyond the int32 index range, or more than 2^31 point tiles");
    return FKM_ERR_NOT_SUPPORTED;
  }
  if (dev && dev->present) {
    if (dev->cc < 80) {
      snprintf(why, n, "mma.sync .tf32 / cp.async need sm_80+, device is sm_%d", dev->cc);
      return FKM_ERR_NOT_SUPPORTED;
    }
    FKM_TRY(flash_check_smem(dev, smem_bytes(true, 0), why, n)); /* stream mode: the fallback for any D */
  }
  return FKM_OK;
}

static void tf32_teardown(void *state) {
  tf32_state *st = (tf32_state *)state;
  if (!st) return;
  cudaFree(st->csq);
  free(st);
}

/* Sets the dynamic shared-memory size of both loaders of one mode; returns
 * how many blocks of it fit on an SM. */
template <bool STREAM>
static fkm_status tf32_prepare(size_t smem, int *per_sm) {
  FKM_CUDA(cudaFuncSetAttribute(flash_tf32_kernel<STREAM, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
  FKM_CUDA(cudaFuncSetAttribute(flash_tf32_kernel<STREAM, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
  FKM_CUDA(cudaFuncSetAttribute(flash_tf32_kernel<STREAM, true>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                (int)cudaSharedmemCarveoutMaxShared));
  FKM_CUDA(cudaFuncSetAttribute(flash_tf32_kernel<STREAM, false>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                (int)cudaSharedmemCarveoutMaxShared));
  FKM_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(per_sm, flash_tf32_kernel<STREAM, true>, kThreads, smem));
  return FKM_OK;
}

static fkm_status tf32_setup_into(const fkm_problem *p, tf32_state *st) {
  const fkm_shape *s = &p->s;
  if (s->dtype != FKM_F32)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_tf32: fp32 only, got %s", fkm_dtype_name(s->dtype));
  st->kpad = (s->K + kBN - 1) / kBN * kBN;
  const size_t bytes = (size_t)(s->B * st->kpad) * sizeof(float);
  if (p->scratch_budget && bytes > p->scratch_budget)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_tf32: centroid norms need %zu bytes, budget %zu", bytes,
                    p->scratch_budget);
  int dev = 0, optin = 0;
  FKM_CUDA(cudaGetDevice(&dev));
  FKM_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));

  /* Resident X only while two blocks still fit on an SM; otherwise X streams. */
  st->xs = xs_of(s->D);
  st->stream = 1;
  if (dp16_of(s->D) <= kResidentMaxD && smem_bytes(false, st->xs) <= (size_t)optin) {
    int per_sm = 0;
    FKM_TRY(tf32_prepare<false>(smem_bytes(false, st->xs), &per_sm));
    if (per_sm >= 2) st->stream = 0;
  }
  st->smem = smem_bytes(st->stream, st->xs);
  if (st->stream) {
    if (st->smem > (size_t)optin)
      return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_tf32: needs %zu bytes of shared memory, device allows %d",
                      st->smem, optin);
    int per_sm = 0;
    FKM_TRY(tf32_prepare<true>(st->smem, &per_sm));
  }
  FKM_CUDA(cudaMalloc((void **)&st->csq, bytes));
  return FKM_OK;
}

static fkm_status tf32_setup(const fkm_problem *p, void **state) {
  tf32_state *st = (tf32_state *)calloc(1, sizeof *st);
  if (!st) return fkm_fail(FKM_ERR_OOM, "assign/flash_tf32: out of host memory");
  fkm_status rc = tf32_setup_into(p, st);
  if (rc != FKM_OK) {
    tf32_teardown(st);
    return rc;
  }
  *state = st;
  return FKM_OK;
}

template <bool STREAM>
static void tf32_launch(const Args &a, bool vec, unsigned blocks, size_t smem, cudaStream_t stream) {
  if (vec) flash_tf32_kernel<STREAM, true><<<blocks, kThreads, smem, stream>>>(a);
  else flash_tf32_kernel<STREAM, false><<<blocks, kThreads, smem, stream>>>(a);
}

static fkm_status tf32_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  const tf32_state *st = (const tf32_state *)state;
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "assign/flash_tf32: run without setup");
  const fkm_shape *s = &p->s;
  if (s->dtype != FKM_F32)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_tf32: fp32 only, got %s", fkm_dtype_name(s->dtype));

  const int64_t rows = s->B * st->kpad;
  flash_centroid_norms<FKM_F32><<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(p->c, st->csq, s->B, s->K, s->D,
                                                                               st->kpad);
  FKM_CUDA_LAUNCH();

  Args a;
  a.x = (const float *)p->x;
  a.c = (const float *)p->c;
  a.csq = st->csq;
  a.labels = p->labels;
  a.dist = p->dist;
  a.N = s->N;
  a.K = (int)s->K;
  a.D = (int)s->D;
  a.Kpad = (int)st->kpad;
  a.dp16 = (int)dp16_of(s->D);
  a.xs = st->xs;
  a.nch = (int)((s->D + kKC - 1) / kKC);
  a.ntiles = (int)(st->kpad / kBN);
  a.ptiles = (int)((s->N + kBM - 1) / kBM);
  /* 16-byte cp.async needs every piece 16-byte aligned in global memory. */
  const bool vec = s->D % 4 == 0 && ((uintptr_t)p->x & 15) == 0 && ((uintptr_t)p->c & 15) == 0;
  const unsigned blocks = (unsigned)(a.ptiles * s->B);
  if (st->stream) tf32_launch<true>(a, vec, blocks, st->smem, stream);
  else tf32_launch<false>(a, vec, blocks, st->smem, stream);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static const char *tf32_describe(void *state) {
  const tf32_state *st = (const tf32_state *)state;
  if (!st) return "flash_tf32";
  return st->stream ? "flash_tf32, streamed X" : "flash_tf32, resident X";
}

} // namespace

extern "C" const fkm_variant fkm_assign_flash_tf32 = {
    "assign/flash_tf32", FKM_OP_ASSIGN,
    "FlashAssign for fp32 data on tensor cores in tf32 (inputs rounded to 10 mantissa bits: validated with the tf32 "
    "tolerance): mma.sync m16n8k8, cp.async ring, online argmin, no NxK matrix",
    80, 0, tf32_supports, tf32_setup, tf32_run, tf32_teardown, tf32_describe, NULL, NULL, 0, FKM_COMPUTE_TF32};
