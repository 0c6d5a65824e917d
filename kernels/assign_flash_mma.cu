/* assign_flash_mma.cu — `assign/flash_mma`: FlashAssign on sm_80+ tensor cores.
 *
 * What: fused distance + online argmin, FlashAttention-style: x·c from
 *   mma.sync m16n8k16 (fp16 or bf16 in, fp32 accumulate) fed by ldmatrix,
 *   folded after each centroid tile into a running (min score, argmin) per point
 *   with score = ||c||² − 2·x·c. The N×K distance matrix is never stored.
 * Why: assign/cublas_gemm writes and re-reads an N×K fp32 matrix; this reads X
 *   once and C from L2, so it is compute-bound for large K and bound by reading
 *   X for small K. assign/flash_simt is the same idea on CUDA cores.
 *
 * Two kernels. `assign/flash_mma` runs v2 whenever it can (D <= 128, D % 8 == 0,
 * 16-byte aligned x and c) and v1 otherwise; `assign/flash_mma_v1` always runs
 * v1, so that both can be timed in one run.
 *
 * v2 (flash_mma2_kernel): persistent blocks of 4 warps, 3 blocks per SM on H100.
 *   Each block owns a contiguous range of items (batch, 128-point tile). For an
 *   item, the X tile is staged in shared memory by cp.async and each warp copies
 *   its 32 points × D into registers as mma A fragments (D <= 128: KS <= 8 k16
 *   steps, 8·KS registers); the staging buffer is then refilled with the next
 *   item's X, a whole item ahead. The warp then sweeps the centroids in jobs of
 *   64: per job a 32×64 warp tile = 2 m16 × 8 n8 mma tiles (64 fp32
 *   accumulators), B fragments by ldmatrix from a shared-memory stage, fold.
 *   Only the centroid operand is read from shared memory in the main loop
 *   (128 bytes per mma, as for a 64×64 warp tile with both operands in smem),
 *   and a warp owns all centroids of its rows, so rows need no cross-warp merge.
 *   168 registers (__launch_bounds__(128, 3)) allow 3 blocks = 12 warps per SM
 *   instead of 8, so while one warp folds (FFMA + compare + 2 selects per
 *   score, on the ALU pipe) the others keep the tensor pipe busy.
 *   Centroids, two modes:
 *     resident (all ceil(K/64) jobs fit in 100 KB, e.g. K <= 128 at D = 128,
 *       and a block's items span few batches): C and ||c||² (summed in the
 *       kernel from the smem copy: no norms kernel) stay in shared memory while
 *       the batch does not change; only X streams, so the kernel runs at the
 *       speed of reading X;
 *     stream: a 2-stage cp.async ring of jobs (64 centroids × D + their ||c||²
 *       from the norms kernel), one __syncthreads per job; the ring runs across
 *       items and batches, so the next item's first job is already loaded. The
 *       next item's X is committed after the job's group, so it has two jobs'
 *       time to land.
 *   The first k16 step of a job multiplies into a zero accumulator (no resets).
 *   k16 steps are computed up to KS·16 >= D (KS ∈ {2, 4, 8}); the padding
 *   columns are zero in shared memory, as are rows past N or K.
 *   Register pressure is at the cap: keep per-thread state out of the main loop
 *   (see load_rows_async, add_offset) and check ptxas -v for 0 spill bytes.
 *
 * v1 (flash_mma_kernel): a block owns BM = 128 points and streams all centroid
 *   tiles of BN = 128 through a cp.async ring in shared memory; 128 threads = 4
 *   warps as 2 (points) × 2 (centroids); each warp owns a 64×64 block of scores
 *   = 4 m16 × 8 n8 mma tiles (128 fp32 accumulators per thread). A pipeline
 *   "step" is one (centroid tile, D chunk of 64):
 *     resident mode (D <= 256): X tile of ceil(D/64) chunks loaded once (with
 *       the first tile's steps), ring of 4 stages × (C chunk 16 KB + ||c||² 512 B);
 *       D = 128: 98 KB smem, 2 blocks per SM;
 *     stream mode (D > 256): ring of 3 stages × (X chunk + C chunk + ||c||²),
 *       97.5 KB: a plain GEMM mainloop over D per centroid tile.
 *   Only the k16 steps up to D rounded to 16 are computed; the padding is zero.
 *   Loads: cp.async (16 B, zero-fill for tails) when D % 8 == 0 and x, c are
 *   16-byte aligned; otherwise plain element loads into the same layout.
 *
 * Shared layout (both): D is split in chunks of 64 (one 128-byte shared row per
 *   point or centroid), 16-byte pieces XOR-swizzled by row & 7 so ldmatrix and
 *   cp.async are bank-conflict free.
 * Ties (both): each thread visits its columns in increasing centroid order with
 *   a strict `<`; lanes (and, in v1, the 2 warps) sharing a row then reduce
 *   lexicographically on (score, index). ||c||² is +inf for padding centroids
 *   (k >= K), so a zero-padded centroid column scores +inf and never wins.
 *   ||x||² is summed from X (smem in v1, the A fragments in v2). */
#include "assign_flash_common.cuh"
#include "error.h"
#include "variant.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

constexpr int kBM = 128;                      /* points per block */
constexpr int kBN = 128;                      /* centroids per tile */
constexpr int kKC = 64;                       /* D elements per chunk = one 128-byte smem row */
constexpr int kThreads = 128;                 /* 4 warps, 2 x 2, warp tile 64 x 64 */
constexpr int kRowBytes = kKC * 2;
constexpr int kXChunkBytes = kBM * kRowBytes; /* 16 KB */
constexpr int kCChunkBytes = kBN * kRowBytes; /* 16 KB */
constexpr int kCsqBytes = kBN * 4;
constexpr int kResidentMaxChunks = 4;         /* X stays in smem while D <= 256 */
static_assert(kBM == 128 && kBN == 128 && kThreads == 128, "load_chunk maps 128 rows onto 128 threads");

template <bool STREAM>
struct Pipe {
  static constexpr int kStages = STREAM ? 3 : 4;
  static constexpr int kCsqOff = kCChunkBytes + (STREAM ? kXChunkBytes : 0);
  static constexpr int kStageBytes = kCsqOff + kCsqBytes;
};
/* The end-of-kernel reduction (2 warps' (score, index) per row) reuses the ring. */
static_assert(2 * kBM * 8 <= Pipe<true>::kStageBytes, "reduction scratch must fit in the ring");

static size_t smem_bytes(bool stream, int nch) {
  if (stream) return (size_t)Pipe<true>::kStages * Pipe<true>::kStageBytes;
  return (size_t)nch * kXChunkBytes + (size_t)Pipe<false>::kStages * Pipe<false>::kStageBytes;
}

struct Args {
  const uint16_t *x, *c; /* fp16 or bf16 bits */
  const float *csq;      /* [B][Kpad], +inf padding */
  int32_t *labels;
  float *dist;
  int64_t N;
  int K, D, Kpad;
  int dp16;              /* D rounded up to 16: the k extent actually computed */
  int nch;               /* D chunks of 64 */
  int ntiles;            /* centroid tiles of 128 */
};

/* fp16/bf16 bits -> fp32 (exact). */
template <int DT>
__device__ __forceinline__ float bits_to_f32(unsigned short h) {
  if constexpr (DT == FKM_F16) return __half2float(__ushort_as_half(h));
  else return __uint_as_float((uint32_t)h << 16);
}

/* ---- PTX wrappers (sm_80+; cp.async in assign_flash_common.cuh) ---- */

__device__ __forceinline__ void st_shared_v4(uint32_t addr, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

/* d += A(16x16, row) * B(16x8, col), fp32 accumulate. */
template <int DT>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (DT == FKM_F16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* d = A(16x16, row) * B(16x8, col) + 0: the first k16 step of a tile, so the
 * accumulators need no zeroing (the zero C operand becomes RZ). */
template <int DT>
__device__ __forceinline__ void mma_16816_zc(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const float z = 0.f;
  if constexpr (DT == FKM_F16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %10, %10, %10};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(z));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %10, %10, %10};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(z));
#endif
}

/* Sum of squares of the two 16-bit values packed in w (low half first). */
template <int DT>
__device__ __forceinline__ float sq2(uint32_t w, float acc) {
  const float lo = bits_to_f32<DT>((unsigned short)(w & 0xffffu));
  const float hi = bits_to_f32<DT>((unsigned short)(w >> 16));
  return fmaf(hi, hi, fmaf(lo, lo, acc));
}

/* Rows [row0, row0 + 128) × D chunk c of a row-major [nrows][D] matrix into the
 * smem chunk at shared address dst (128 rows × 128 bytes). 16-byte piece p of
 * row r lands at r*128 + 16*(p ^ (r & 7)): the 8 rows of an ldmatrix phase hit
 * 8 different bank groups. Rows >= nrows and columns >= D are zero; pieces >=
 * npieces (past D rounded to 16) are left alone, they are never read. Thread t
 * serves piece t & 7 of rows t/8 + 16q, so 8 consecutive threads read one
 * 128-byte row, and r & 7 is the same for all q. */
template <bool ASYNC>
__device__ __forceinline__ void load_chunk(uint32_t dst, const uint16_t *__restrict__ src, int64_t row0,
                                           int64_t nrows, int D, int c, int npieces, int tid) {
  const int p = tid & 7, r0 = tid >> 3;
  if (p >= npieces) return;
  const int d0 = c * kKC + p * 8;
  const int64_t first = row0 + r0;
  const int64_t left64 = nrows - first; /* row r0 + 16q exists iff 16q < left */
  const int left = (int)(left64 < 0 ? 0 : left64 > 128 ? 128 : left64);
  const bool dv = d0 < D;
  int64_t off = first * D + d0;       /* element offset of the piece; used only when valid */
  const int64_t step = (int64_t)16 * D;
  dst += r0 * kRowBytes + ((p ^ (r0 & 7)) << 4);
#pragma unroll
  for (int q = 0; q < 8; q++, off += step) {
    const bool rv = q * 16 < left;
    const uint32_t d = dst + q * 16 * kRowBytes;
    if constexpr (ASYNC) { /* D % 8 == 0: a piece is entirely inside or outside [0, D) */
      const bool v = rv && dv;
      cp_async_16(d, v ? src + off : src, v);
    } else {
      uint32_t w[4];
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int da = d0 + 2 * e;
        const uint32_t lo = (rv && da < D) ? src[off + 2 * e] : 0u;
        const uint32_t hi = (rv && da + 1 < D) ? src[off + 2 * e + 1] : 0u;
        w[e] = lo | (hi << 16);
      }
      st_shared_v4(d, w[0], w[1], w[2], w[3]);
    }
  }
}

/* ==== v1: one block per 128 points, X resident in smem, 64x64 warp tiles ==== */

template <int DT, bool STREAM, bool ASYNC>
__global__ void __launch_bounds__(kThreads, 2) flash_mma_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using P = Pipe<STREAM>;
  constexpr int S = P::kStages;
  extern __shared__ __align__(128) uint8_t smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1; /* warp tile: points wm*64.., centroids wn*64.. */
  const int g = lane >> 2, tq = lane & 3;  /* mma fragment coordinates */
  const int64_t b = blockIdx.y;
  const int64_t row0 = (int64_t)blockIdx.x * kBM;
  const uint16_t *xb = a.x + b * a.N * a.D;
  const uint16_t *cb = a.c + b * (int64_t)a.K * a.D;
  const float *csqb = a.csq + b * (int64_t)a.Kpad;
  uint8_t *const xres = smem;                                    /* resident X chunks (resident mode) */
  uint8_t *const ring = smem + (STREAM ? 0 : a.nch * kXChunkBytes);
  const int total = a.ntiles * a.nch; /* pipeline steps: (tile, chunk), chunk fastest */

  /* Producer: loads step `is` into ring slot `islot`. Every call commits one
   * group (possibly empty), so cp.async.wait_group counts stay uniform. */
  int is = 0, ij = 0, ic = 0, islot = 0;
  const uint32_t ring_u = smem_u32(ring), xres_u = smem_u32(xres);
  auto issue = [&]() {
    if (is < total) {
      const uint32_t st = ring_u + islot * P::kStageBytes;
      const int np = min(8, (a.dp16 - ic * kKC) >> 3);
      load_chunk<ASYNC>(st, cb, (int64_t)ij * kBN, a.K, a.D, ic, np, tid);
      if constexpr (STREAM) load_chunk<ASYNC>(st + kCChunkBytes, xb, row0, a.N, a.D, ic, np, tid);
      else if (ij == 0) load_chunk<ASYNC>(xres_u + ic * kXChunkBytes, xb, row0, a.N, a.D, ic, np, tid);
      /* ||c||² of the tile rides with its last chunk: it is needed by that step's fold. */
      if (ic == a.nch - 1 && tid < kCsqBytes / 16)
        cp_async_16(st + P::kCsqOff + tid * 16, csqb + (int64_t)ij * kBN + tid * 4, true);
      is++;
      if (++ic == a.nch) {
        ic = 0;
        ij++;
      }
      if (++islot == S) islot = 0;
    }
    cp_async_commit();
  };

  float acc[4][8][4];
#pragma unroll
  for (int mt = 0; mt < 4; mt++)
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.f;
  float best_s[4][2]; /* rows wm*64 + mt*16 + h*8 + g */
  int best_i[4][2];
#pragma unroll
  for (int mt = 0; mt < 4; mt++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      best_s[mt][h] = INFINITY;
      best_i[mt][h] = INT32_MAX;
    }
  float xsq = 0.f; /* ||x||² of point row0 + tid */

#pragma unroll
  for (int q = 0; q < S - 1; q++) issue();

  /* Per-lane ldmatrix byte offsets inside a chunk. A (points, row-major m16k16):
   * lanes 0-15 rows 0-15 at k 0-7, lanes 16-31 rows 0-15 at k 8-15 -> a0..a3.
   * B (centroids as n, k contiguous = col-major k16n8, two n8 tiles per x4):
   * lanes 0-7 n 0-7 k 0-7, 8-15 n 0-7 k 8-15, 16-23 n 8-15 k 0-7, 24-31 n 8-15
   * k 8-15 -> (b0, b1) of n-tile 2p, (b0, b1) of n-tile 2p+1. All rows read by
   * one lane are congruent to lane & 7 mod 8, hence one swizzle key. */
  const int swz = lane & 7;
  const uint32_t a_off = (uint32_t)(wm * 64 + (lane & 15)) * kRowBytes;
  const int a_hi = lane >> 4;
  const uint32_t b_off = (uint32_t)(wn * 64 + (lane & 7) + ((lane >> 4) << 3)) * kRowBytes;
  const int b_hi = (lane >> 3) & 1;

  int cj = 0, cc = 0, cslot = 0; /* consumer: tile, chunk, ring slot */
  for (int s = 0; s < total; s++) {
    cp_async_wait<S - 2>(); /* this thread's copies for step s have landed */
    __syncthreads();        /* everyone's have; and everyone is done with step s-1's slot */
    issue();                /* refills step s-1's slot with step s+S-1 */

    const uint32_t st_u = ring_u + cslot * P::kStageBytes;
    const uint32_t x_u = STREAM ? st_u + kCChunkBytes : xres_u + cc * kXChunkBytes;
    const int nk = min(4, (a.dp16 - cc * kKC) >> 4); /* k16 steps in this chunk */
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      if (kk < nk) {
        uint32_t af[4][4];
        const uint32_t ak = (uint32_t)((2 * kk + a_hi) ^ swz) << 4;
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
          ldsm_x4(x_u + a_off + mt * 16 * kRowBytes + ak, af[mt][0], af[mt][1], af[mt][2], af[mt][3]);
        const uint32_t bk = (uint32_t)((2 * kk + b_hi) ^ swz) << 4;
#pragma unroll
        for (int pr = 0; pr < 4; pr++) {
          uint32_t b0, b1, b2, b3;
          ldsm_x4(st_u + b_off + pr * 16 * kRowBytes + bk, b0, b1, b2, b3);
#pragma unroll
          for (int mt = 0; mt < 4; mt++) {
            mma_16816<DT>(acc[mt][2 * pr], af[mt], b0, b1);
            mma_16816<DT>(acc[mt][2 * pr + 1], af[mt], b2, b3);
          }
        }
      }
    }

    if (cj == 0) { /* first tile: ||x||² of row tid from this X chunk (zero padding adds 0) */
      const uint8_t *xrow =
          (STREAM ? ring + cslot * P::kStageBytes + kCChunkBytes : xres + cc * kXChunkBytes) + tid * kRowBytes;
      const int np = min(8, (a.dp16 - cc * kKC) >> 3);
#pragma unroll
      for (int p = 0; p < 8; p++) {
        if (p < np) {
          const uint4 v = *reinterpret_cast<const uint4 *>(xrow + ((p ^ (tid & 7)) << 4));
          xsq = sq2<DT>(v.w, sq2<DT>(v.z, sq2<DT>(v.y, sq2<DT>(v.x, xsq))));
        }
      }
    }

    if (cc == a.nch - 1) { /* tile complete: fold into the running argmin */
      const float *cs = reinterpret_cast<const float *>(ring + cslot * P::kStageBytes + P::kCsqOff);
#pragma unroll
      for (int nt = 0; nt < 8; nt++) { /* columns in increasing order for every row */
        const int col = wn * 64 + nt * 8 + tq * 2;
        const float2 q = *reinterpret_cast<const float2 *>(cs + col);
        const int k0 = cj * kBN + col;
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
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

  /* The 4 lanes of a quad hold the same rows, interleaved columns. */
#pragma unroll
  for (int mt = 0; mt < 4; mt++)
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int o = 1; o <= 2; o <<= 1) lex_min_shfl_xor(best_s[mt][h], best_i[mt][h], o);

  /* The 2 warps sharing rows (wn = 0, 1) meet in smem; the ring is free once
   * every warp has left the main loop (all real copies were waited for). */
  __syncthreads();
  float *red_s = reinterpret_cast<float *>(ring); /* [2][kBM] */
  int *red_i = reinterpret_cast<int *>(ring + 2 * kBM * sizeof(float));
  if (tq == 0) {
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = wm * 64 + mt * 16 + h * 8 + g;
        red_s[wn * kBM + r] = best_s[mt][h];
        red_i[wn * kBM + r] = best_i[mt][h];
      }
  }
  __syncthreads();
  float bs = red_s[tid];
  int bi = red_i[tid];
  lex_min(bs, bi, red_s[kBM + tid], red_i[kBM + tid]);
  const int64_t n = row0 + tid;
  if (n < a.N) {
    /* bi stays INT32_MAX only if every score overflowed to +inf. */
    a.labels[b * a.N + n] = bi < a.K ? bi : 0;
    a.dist[b * a.N + n] = fmaxf(0.f, xsq + bs);
  }
#endif
}

/* ==== v2: persistent blocks, X in registers, 12 warps per SM ==== */

constexpr int kBJ = 64;                  /* centroids per job (a warp's tile is 32 points x 64) */
constexpr int kResMaxBytes = 100 * 1024; /* resident mode while X staging + all of C fit in this */
static_assert(kThreads == 128 && kBM == 128, "v2: 4 warps x 32 points");

/* Shared-memory geometry for KS k16 steps (D <= 16·KS). */
template <int KS>
struct Geo2 {
  static_assert(KS == 2 || KS == 4 || KS == 8, "KS in {2, 4, 8}");
  static constexpr int kChunks = (KS + 3) / 4;   /* 64-element chunks per row */
  static constexpr int kPieces = 2 * KS;         /* 16-byte pieces of a row that are read */
  static constexpr int kXBytes = kChunks * kBM * kRowBytes;
  static constexpr int kCChunkBytes = kBJ * kRowBytes;
  static constexpr int kCBytes = kChunks * kCChunkBytes;
  static constexpr int kStageBytes = kCBytes + kBJ * 4; /* C job + its ||c||² */
  static size_t smem(bool res, int jobs) { return (size_t)kXBytes + (size_t)(res ? jobs : 2) * kStageBytes; }
};

struct Args2 {
  const uint16_t *x, *c; /* fp16 or bf16 bits */
  const float *csq;      /* stream mode: [B][Kpad] from flash_centroid_norms, +inf padding */
  int32_t *labels;
  float *dist;
  int64_t N;
  int64_t x_bstride, c_bstride; /* N * D, K * D: kernel parameters, not registers */
  int K, D, Kpad;
  int J;                 /* jobs per item: ceil(K / 64) */
  int tiles;             /* 128-point tiles per batch */
  int items;             /* B * tiles (v2 needs it < 2^31) */
  int per_block;         /* each block runs items [blockIdx.x * per_block, + per_block) */
};

/* p + off, as one opaque 64-bit add: keeps the compiler from folding the
 * per-thread offset into per-row 64-bit pointers that would stay live (and
 * spill) across the main loop. */
__device__ __forceinline__ const void *add_offset(const void *p, uint32_t off) {
  uint64_t r;
  asm("add.u64 %0, %1, %2;\n" : "=l"(r) : "l"(reinterpret_cast<uint64_t>(p)), "l"((uint64_t)off));
  return reinterpret_cast<const void *>(r);
}

/* Rows [0, ROWS) x D chunk c of the row-major matrix block that starts at src
 * (row stride D; `rows` of them exist, rows <= ROWS) into the smem chunk at dst
 * (ROWS rows x 128 bytes), swizzled as in load_chunk, by cp.async (D % 8 == 0,
 * 16-byte aligned rows). Pieces [0, npieces) of every row are written, zero
 * where the row (>= rows) or the columns (>= D) are outside the matrix, so
 * everything ldmatrix reads is defined. Thread t serves piece t & 7 of rows
 * t/8 + 16q: 8 consecutive threads read one 128-byte row segment. src and rows
 * are block-uniform; the per-thread part is one 32-bit byte offset (D <= 128). */
template <int ROWS>
__device__ __forceinline__ void load_rows_async(uint32_t dst, const uint16_t *__restrict__ src, int rows, int D, int c,
                                                int npieces, int tid) {
  static_assert(ROWS % 16 == 0, "16 rows per pass of 128 threads");
  const int p = tid & 7, r0 = tid >> 3;
  if (p >= npieces) return;
  const int d0 = c * kKC + p * 8;
  const bool dv = d0 < D;
  const int left = rows - r0; /* row r0 + 16q exists iff 16q < left */
  const uint32_t toff = (uint32_t)(r0 * D + d0) * 2u;
  dst += r0 * kRowBytes + ((p ^ (r0 & 7)) << 4);
#pragma unroll
  for (int q = 0; q < ROWS / 16; q++) {
    const bool v = dv && q * 16 < left;
    const uint16_t *rows_q = src + (size_t)q * 16 * D; /* uniform */
    cp_async_16(dst + q * 16 * kRowBytes, v ? add_offset(rows_q, toff) : src, v);
  }
}

template <int DT, int KS, bool RES>
__global__ void __launch_bounds__(kThreads, 3) flash_mma2_kernel(const Args2 a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using G = Geo2<KS>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3; /* mma fragment coordinates */
  const int it_begin = (int)blockIdx.x * a.per_block; /* < items < 2^31 (host) */
  const int it_end = a.items - it_begin > a.per_block ? it_begin + a.per_block : a.items; /* no int overflow */
  if (it_begin >= it_end) return; /* block-uniform */

  const uint32_t xs_u = smem_u32(smem);        /* X staging: one 128-point tile */
  uint8_t *const ring = smem + G::kXBytes;      /* C stages (resident: job j in stage j) */
  const uint32_t ring_u = xs_u + G::kXBytes;

  auto load_x = [&](int b, int tile) {
    const int64_t row0 = (int64_t)tile * kBM;
    const uint16_t *src = a.x + b * a.x_bstride + row0 * a.D;
    const int rows = (int)min((int64_t)kBM, a.N - row0);
#pragma unroll
    for (int ch = 0; ch < G::kChunks; ch++)
      load_rows_async<kBM>(xs_u + ch * kBM * kRowBytes, src, rows, a.D, ch, min(8, G::kPieces - 8 * ch), tid);
  };
  auto load_c = [&](int b, int j, int stage) {
    const uint32_t st = ring_u + stage * G::kStageBytes;
    const uint16_t *src = a.c + b * a.c_bstride + (int64_t)j * kBJ * a.D;
    const int rows = min(kBJ, a.K - j * kBJ);
#pragma unroll
    for (int ch = 0; ch < G::kChunks; ch++)
      load_rows_async<kBJ>(st + ch * G::kCChunkBytes, src, rows, a.D, ch, min(8, G::kPieces - 8 * ch), tid);
    if constexpr (!RES) /* the job's ||c||²: 64 floats, 16-byte aligned (Kpad % 64 == 0) */
      if (tid < kBJ / 4) cp_async_16(st + G::kCBytes + tid * 16, a.csq + (int64_t)b * a.Kpad + j * kBJ + tid * 4, true);
  };
  /* Resident mode: ||c||² of every resident centroid from its smem row (the
   * padding is zero), +inf past K. Same code for every block, so every block
   * sees the same norms. */
  auto resident_norms = [&]() {
    for (int k = tid; k < a.J * kBJ; k += kThreads) {
      const int j = k / kBJ, r = k % kBJ;
      uint8_t *st = ring + j * G::kStageBytes;
      float s = 0.f;
#pragma unroll
      for (int ch = 0; ch < G::kChunks; ch++)
#pragma unroll
        for (int p = 0; p < 8; p++)
          if (p < G::kPieces - 8 * ch) {
            const uint4 v = *reinterpret_cast<const uint4 *>(st + ch * G::kCChunkBytes + r * kRowBytes +
                                                             ((p ^ (r & 7)) << 4));
            s = sq2<DT>(v.w, sq2<DT>(v.z, sq2<DT>(v.y, sq2<DT>(v.x, s))));
          }
      reinterpret_cast<float *>(st + G::kCBytes)[r] = k < a.K ? s : INFINITY;
    }
  };

  /* Per-lane ldmatrix byte offsets (see v1 for the fragment maps). A: rows
   * warp*32 + mt*16 + (lane & 15), k half lane >> 4. B: centroid rows 16p +
   * (lane & 7) + 8*(lane >> 4), k half (lane >> 3) & 1. Every row a lane reads is
   * congruent to lane & 7 mod 8: one swizzle key. */
  const int swz = lane & 7;
  const uint32_t a_off = (uint32_t)(warp * 32 + (lane & 15)) * kRowBytes;
  const int a_hi = lane >> 4;
  const uint32_t b_off = (uint32_t)((lane & 7) + ((lane >> 4) << 3)) * kRowBytes;
  const int b_hi = (lane >> 3) & 1;

  /* The item being computed is (batch b, point tile); a block's items are
   * consecutive, so the next one is (b, tile + 1) or (b + 1, 0): no divisions
   * in the loop. */
  int b = it_begin / a.tiles, tile = it_begin - b * a.tiles;
  int left = it_end - it_begin; /* items not finished, this one included */
  int cur_b = b;                /* batch whose centroids are in the ring (resident) */

  /* Prologue: the first item's X and its first job (resident: all jobs). */
  load_x(b, tile);
  if constexpr (RES) {
    for (int j = 0; j < a.J; j++) load_c(cur_b, j, j);
  } else {
    load_c(cur_b, 0, 0);
  }
  cp_async_commit();
  bool need_norms = RES;

  uint32_t af[2][KS][4]; /* this warp's 32 points x 16·KS as A fragments */
  float best_s[2][2];    /* rows warp*32 + mt*16 + h*8 + g */
  int best_i[2][2];
  int j = 0, slot = 0; /* job within the item; ring slot (stream mode) */
  for (;;) {
    const bool first = j == 0;
    if (!RES || first) {
      /* In flight: stream, the previous step's centroid group, after j == 0 also
       * the next item's X group, committed last so that step 1 need not wait
       * for it (X gets two steps to land); resident, X(item). */
      if (!RES && j == 1) cp_async_wait<1>();
      else cp_async_wait<0>();
      __syncthreads(); /* everyone's copies landed; everyone left the previous step */
    }
    if (first) { /* new item: X tile -> registers, then refill the staging buffer */
      if constexpr (RES) {
        if (b != cur_b) { /* batch changed (block-uniform): reload the resident centroids */
          for (int jj = 0; jj < a.J; jj++) load_c(b, jj, jj);
          cp_async_commit();
          cp_async_wait<0>();
          __syncthreads();
          cur_b = b;
          need_norms = true;
        }
        if (need_norms) { /* ordered before the fold by the barrier below */
          resident_norms();
          need_norms = false;
        }
      }
#pragma unroll
      for (int kk = 0; kk < KS; kk++) {
        const uint32_t ak = xs_u + (kk >> 2) * (kBM * kRowBytes) + a_off + ((((2 * (kk & 3)) + a_hi) ^ swz) << 4);
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
          ldsm_x4(ak + mt * 16 * kRowBytes, af[mt][kk][0], af[mt][kk][1], af[mt][kk][2], af[mt][kk][3]);
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          best_s[mt][h] = INFINITY;
          best_i[mt][h] = INT32_MAX;
        }
      __syncthreads(); /* the staging buffer is read; (resident) norms are written */
    }
    if constexpr (!RES) { /* next step's job into the other slot (it may be the next item's) */
      if (j + 1 < a.J) load_c(b, j + 1, slot ^ 1);
      else if (left > 1) load_c(tile + 1 == a.tiles ? b + 1 : b, 0, slot ^ 1);
      cp_async_commit();
    }
    if (first) { /* the next item's X into the staging buffer: a whole item ahead */
      if (left > 1) load_x(tile + 1 == a.tiles ? b + 1 : b, tile + 1 == a.tiles ? 0 : tile + 1);
      cp_async_commit();
    }

    const int stage = RES ? j : slot;
    const uint32_t st_u = ring_u + stage * G::kStageBytes;
    float acc[2][8][4];
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      uint32_t bf[4][4];
      const uint32_t bk = st_u + (kk >> 2) * G::kCChunkBytes + b_off + ((((2 * (kk & 3)) + b_hi) ^ swz) << 4);
#pragma unroll
      for (int p = 0; p < 4; p++) ldsm_x4(bk + p * 16 * kRowBytes, bf[p][0], bf[p][1], bf[p][2], bf[p][3]);
#pragma unroll
      for (int p = 0; p < 4; p++)
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
          if (kk == 0) {
            mma_16816_zc<DT>(acc[mt][2 * p], af[mt][0], bf[p][0], bf[p][1]);
            mma_16816_zc<DT>(acc[mt][2 * p + 1], af[mt][0], bf[p][2], bf[p][3]);
          } else {
            mma_16816<DT>(acc[mt][2 * p], af[mt][kk], bf[p][0], bf[p][1]);
            mma_16816<DT>(acc[mt][2 * p + 1], af[mt][kk], bf[p][2], bf[p][3]);
          }
        }
    }

    /* Fold: every row visits its columns in increasing order, strict <.
     * The branch is always taken; it keeps the fold out of the mma basic
     * block. Otherwise ptxas may interleave the two by running each
     * accumulator's 8-deep dependent mma chain (24 cycles a link) into its
     * fold; apart, it issues the mmas k-step by k-step, 16 independent
     * accumulators (6 cycles each), and the other warps hide the fold. */
    if (a.J > 0) {
      const float *cs = reinterpret_cast<const float *>(ring + stage * G::kStageBytes + G::kCBytes);
      const int kb = j * kBJ + 2 * tq;
#pragma unroll
      for (int nt = 0; nt < 8; nt++) {
        const float2 q = *reinterpret_cast<const float2 *>(cs + nt * 8 + 2 * tq);
        const int k0 = kb + nt * 8;
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
          }
      }
    }

    if (j == a.J - 1) { /* item done: merge the quad, add ||x||², store */
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
          for (int o = 1; o <= 2; o <<= 1) lex_min_shfl_xor(best_s[mt][h], best_i[mt][h], o);
          /* ||x||² of row g (h = 0: a0, a2) or g + 8 (h = 1: a1, a3); the quad
           * holds the row's columns between them; padding adds zero. */
          float xsq = 0.f;
#pragma unroll
          for (int kk = 0; kk < KS; kk++) xsq = sq2<DT>(af[mt][kk][h + 2], sq2<DT>(af[mt][kk][h], xsq));
          xsq += __shfl_xor_sync(0xffffffffu, xsq, 1);
          xsq += __shfl_xor_sync(0xffffffffu, xsq, 2);
          const int64_t n = (int64_t)tile * kBM + warp * 32 + mt * 16 + h * 8 + g;
          if (tq == 0 && n < a.N) {
            const int bi = best_i[mt][h];
            /* bi stays INT32_MAX only if every score was NaN or +inf. */
            a.labels[(int64_t)b * a.N + n] = bi < a.K ? bi : 0;
            a.dist[(int64_t)b * a.N + n] = fmaxf(0.f, xsq + best_s[mt][h]);
          }
        }
    }

    slot ^= 1;
    if (++j == a.J) {
      j = 0;
      if (--left == 0) break;
      if (++tile == a.tiles) {
        tile = 0;
        b++;
      }
    }
  }
  cp_async_wait<0>(); /* nothing may be in flight when the block exits (all groups are empty by now) */
#endif
}

/* ---- host side ---- */

typedef struct {
  float *csq;   /* [B][Kpad]: v1, and v2 in stream mode */
  int64_t kpad; /* K rounded up to 128 */
  int force_v1; /* assign/flash_mma_v1 */
  /* v1 */
  int stream;   /* stream mode (X chunks through the ring) */
  size_t smem;
  /* v2, used when v2_ok and the buffers are 16-byte aligned */
  int v2_ok;
  int ks, res, jobs;
  size_t smem2;
  int items, tiles, per_block;
  unsigned blocks;
} mma_state;

static int n_chunks(int64_t D) { return (int)((D + kKC - 1) / kKC); }
static int ks_for(int64_t D) { return D <= 32 ? 2 : D <= 64 ? 4 : 8; }

template <int DT, bool STREAM>
static fkm_status mma_set_attrs(size_t smem) {
  FKM_CUDA(cudaFuncSetAttribute(flash_mma_kernel<DT, STREAM, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
  FKM_CUDA(cudaFuncSetAttribute(flash_mma_kernel<DT, STREAM, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
  /* Ask for the largest shared-memory carveout so that two blocks fit per SM. */
  FKM_CUDA(cudaFuncSetAttribute(flash_mma_kernel<DT, STREAM, true>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                (int)cudaSharedmemCarveoutMaxShared));
  FKM_CUDA(cudaFuncSetAttribute(flash_mma_kernel<DT, STREAM, false>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                (int)cudaSharedmemCarveoutMaxShared));
  return FKM_OK;
}

/* v2: sets the attributes of the chosen instantiation and returns how many
 * blocks of it fit on one SM. */
template <int DT, int KS, bool RES>
static fkm_status mma2_prepare(size_t smem, int *per_sm) {
  auto kern = flash_mma2_kernel<DT, KS, RES>;
  FKM_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  FKM_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                (int)cudaSharedmemCarveoutMaxShared));
  FKM_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(per_sm, kern, kThreads, smem));
  return FKM_OK;
}

template <int DT, int KS>
static fkm_status mma2_prepare_ks(bool res, size_t smem, int *per_sm) {
  return res ? mma2_prepare<DT, KS, true>(smem, per_sm) : mma2_prepare<DT, KS, false>(smem, per_sm);
}

template <int DT>
static fkm_status mma2_prepare_dt(int ks, bool res, size_t smem, int *per_sm) {
  if (ks == 2) return mma2_prepare_ks<DT, 2>(res, smem, per_sm);
  if (ks == 4) return mma2_prepare_ks<DT, 4>(res, smem, per_sm);
  return mma2_prepare_ks<DT, 8>(res, smem, per_sm);
}

static size_t mma2_smem(int ks, bool res, int jobs) {
  if (ks == 2) return Geo2<2>::smem(res, jobs);
  if (ks == 4) return Geo2<4>::smem(res, jobs);
  return Geo2<8>::smem(res, jobs);
}

static fkm_status mma_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  if (s->dtype != FKM_F16 && s->dtype != FKM_BF16) {
    snprintf(why, n, "tensor-core path takes fp16/bf16 only (use assign/flash_simt for fp32)");
    return FKM_ERR_NOT_SUPPORTED;
  }
  FKM_TRY(flash_check_nonempty(s, why, n));
  FKM_TRY(flash_check_grid_y(s, why, n));
  if (s->K > INT32_MAX - kBN || s->D > INT32_MAX / 2 || (s->N + kBM - 1) / kBM > INT32_MAX ||
      ((s->K + kBN - 1) / kBN) * (int64_t)n_chunks(s->D) > INT32_MAX) {
    snprintf(why, n, "K or D beyond the int32 index range, or too many tiles");
    return FKM_ERR_NOT_SUPPORTED;
  }
  if (dev && dev->present) {
    if (dev->cc < 80) {
      snprintf(why, n, "mma.sync m16n8k16 / cp.async need sm_80+, device is sm_%d", dev->cc);
      return FKM_ERR_NOT_SUPPORTED;
    }
    /* v1 is the fallback: the smaller of its two modes must fit */
    FKM_TRY(flash_check_smem(dev, smem_bytes(true, n_chunks(s->D)), why, n));
  }
  return FKM_OK;
}

static void mma_teardown(void *state) {
  mma_state *st = (mma_state *)state;
  if (!st) return;
  cudaFree(st->csq);
  free(st);
}

static fkm_status mma_setup_into(const fkm_problem *p, mma_state *st) {
  const fkm_shape *s = &p->s;
  if (s->dtype != FKM_F16 && s->dtype != FKM_BF16)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_mma: fp16/bf16 only, got %s", fkm_dtype_name(s->dtype));
  st->kpad = (s->K + kBN - 1) / kBN * kBN;
  const size_t bytes = (size_t)(s->B * st->kpad) * sizeof(float);
  if (p->scratch_budget && bytes > p->scratch_budget)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_mma: centroid norms need %zu bytes, budget %zu", bytes,
                    p->scratch_budget);
  int dev = 0, optin = 0, sms = 0;
  FKM_CUDA(cudaGetDevice(&dev));
  FKM_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));

  /* v1, always prepared: it is the fallback when the buffers turn out misaligned. */
  const int nch = n_chunks(s->D);
  st->stream = nch > kResidentMaxChunks || smem_bytes(false, nch) > (size_t)optin;
  st->smem = smem_bytes(st->stream, nch);
  if (st->smem > (size_t)optin)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_mma: needs %zu bytes of shared memory, device allows %d",
                    st->smem, optin);
  fkm_status rc;
  if (s->dtype == FKM_F16) rc = st->stream ? mma_set_attrs<FKM_F16, true>(st->smem) : mma_set_attrs<FKM_F16, false>(st->smem);
  else rc = st->stream ? mma_set_attrs<FKM_BF16, true>(st->smem) : mma_set_attrs<FKM_BF16, false>(st->smem);
  FKM_TRY(rc);

  /* v2: D <= 128 in registers, cp.async rows (D % 8 == 0). */
  const int64_t tiles = (s->N + kBM - 1) / kBM;
  if (!st->force_v1 && s->D <= 128 && s->D % 8 == 0 && tiles <= INT32_MAX / s->B) {
    st->ks = ks_for(s->D);
    st->jobs = (int)((s->K + kBJ - 1) / kBJ);
    st->tiles = (int)tiles;
    st->items = (int)(s->B * tiles);
    /* Occupancy and work split of each mode (resident only when C fits). */
    int per_sm[2] = {0, 0}, per_block[2] = {0, 0};
    for (int res = 0; res < 2; res++) {
      const size_t smem = mma2_smem(st->ks, res, st->jobs);
      if (smem > (size_t)optin || (res && smem > (size_t)kResMaxBytes)) continue;
      rc = s->dtype == FKM_F16 ? mma2_prepare_dt<FKM_F16>(st->ks, res, smem, &per_sm[res])
                               : mma2_prepare_dt<FKM_BF16>(st->ks, res, smem, &per_sm[res]);
      FKM_TRY(rc);
      if (per_sm[res] <= 0) continue;
      /* One wave of persistent blocks, each with a contiguous range of items. */
      int64_t blocks = (int64_t)per_sm[res] * sms;
      if (blocks > st->items) blocks = st->items;
      per_block[res] = (int)((st->items + blocks - 1) / blocks);
    }
    /* Resident unless it costs occupancy, or a block's items span many batches
     * (each change reloads C unprefetched; stream mode prefetches the next
     * batch's centroids like any other job). */
    const int res = per_sm[1] > 0 && per_sm[1] >= per_sm[0] && (s->B == 1 || st->tiles >= per_block[1]);
    if (per_sm[res] > 0) {
      st->res = res;
      st->smem2 = mma2_smem(st->ks, res, st->jobs);
      st->per_block = per_block[res];
      st->blocks = (unsigned)((st->items + per_block[res] - 1) / per_block[res]);
      st->v2_ok = 1;
    }
  }
  FKM_CUDA(cudaMalloc((void **)&st->csq, bytes));
  return FKM_OK;
}

static fkm_status mma_setup_common(const fkm_problem *p, void **state, int force_v1) {
  mma_state *st = (mma_state *)calloc(1, sizeof *st);
  if (!st) return fkm_fail(FKM_ERR_OOM, "assign/flash_mma: out of host memory");
  st->force_v1 = force_v1;
  fkm_status rc = mma_setup_into(p, st);
  if (rc != FKM_OK) {
    mma_teardown(st);
    return rc;
  }
  *state = st;
  return FKM_OK;
}

static fkm_status mma_setup(const fkm_problem *p, void **state) { return mma_setup_common(p, state, 0); }
static fkm_status mma_setup_v1(const fkm_problem *p, void **state) { return mma_setup_common(p, state, 1); }

template <int DT, bool STREAM>
static fkm_status mma_launch(const Args &a, bool async, dim3 grid, size_t smem, cudaStream_t stream) {
  if (async) flash_mma_kernel<DT, STREAM, true><<<grid, kThreads, smem, stream>>>(a);
  else flash_mma_kernel<DT, STREAM, false><<<grid, kThreads, smem, stream>>>(a);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

template <int DT, int KS>
static void mma2_launch(const Args2 &a, bool res, unsigned blocks, size_t smem, cudaStream_t stream) {
  if (res) flash_mma2_kernel<DT, KS, true><<<blocks, kThreads, smem, stream>>>(a);
  else flash_mma2_kernel<DT, KS, false><<<blocks, kThreads, smem, stream>>>(a);
}

template <int DT>
static fkm_status mma_run_dt(const fkm_problem *p, const mma_state *st, cudaStream_t stream) {
  const fkm_shape *s = &p->s;
  /* cp.async needs every 16-byte piece it copies to be 16-byte aligned in global memory. */
  const bool aligned = ((uintptr_t)p->x & 15) == 0 && ((uintptr_t)p->c & 15) == 0;
  const bool v2 = st->v2_ok && aligned;
  if (!(v2 && st->res)) { /* resident v2 sums ||c||² itself */
    const int64_t rows = s->B * st->kpad;
    flash_centroid_norms<DT><<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(p->c, st->csq, s->B, s->K, s->D,
                                                                             st->kpad);
    FKM_CUDA_LAUNCH();
  }

  if (v2) {
    Args2 a;
    a.x = (const uint16_t *)p->x;
    a.c = (const uint16_t *)p->c;
    a.csq = st->csq;
    a.labels = p->labels;
    a.dist = p->dist;
    a.N = s->N;
    a.x_bstride = s->N * s->D;
    a.c_bstride = s->K * s->D;
    a.K = (int)s->K;
    a.D = (int)s->D;
    a.Kpad = (int)st->kpad;
    a.J = st->jobs;
    a.tiles = st->tiles;
    a.items = st->items;
    a.per_block = st->per_block;
    if (st->ks == 2) mma2_launch<DT, 2>(a, st->res, st->blocks, st->smem2, stream);
    else if (st->ks == 4) mma2_launch<DT, 4>(a, st->res, st->blocks, st->smem2, stream);
    else mma2_launch<DT, 8>(a, st->res, st->blocks, st->smem2, stream);
    FKM_CUDA_LAUNCH();
    return FKM_OK;
  }

  Args a;
  a.x = (const uint16_t *)p->x;
  a.c = (const uint16_t *)p->c;
  a.csq = st->csq;
  a.labels = p->labels;
  a.dist = p->dist;
  a.N = s->N;
  a.K = (int)s->K;
  a.D = (int)s->D;
  a.Kpad = (int)st->kpad;
  a.dp16 = (int)((s->D + 15) / 16 * 16);
  a.nch = n_chunks(s->D);
  a.ntiles = (int)(st->kpad / kBN);
  const bool async = s->D % 8 == 0 && aligned;
  const dim3 grid((unsigned)((s->N + kBM - 1) / kBM), (unsigned)s->B);
  if (st->stream) return mma_launch<DT, true>(a, async, grid, st->smem, stream);
  return mma_launch<DT, false>(a, async, grid, st->smem, stream);
}

static fkm_status mma_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  const mma_state *st = (const mma_state *)state;
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "assign/flash_mma: run without setup");
  if (p->s.dtype == FKM_F16) return mma_run_dt<FKM_F16>(p, st, stream);
  if (p->s.dtype == FKM_BF16) return mma_run_dt<FKM_BF16>(p, st, stream);
  return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_mma: fp16/bf16 only, got %s", fkm_dtype_name(p->s.dtype));
}

static const char *mma_describe(void *state) {
  const mma_state *st = (const mma_state *)state;
  if (!st || !st->v2_ok) return "flash_mma v1";
  return st->res ? "flash_mma v2, resident centroids" : "flash_mma v2, streamed centroids";
}

} // namespace

extern "C" const fkm_variant fkm_assign_flash_mma = {
    "assign/flash_mma", FKM_OP_ASSIGN,
    "FlashAssign on tensor cores: mma.sync m16n8k16, X in registers, persistent blocks, online argmin (v1 for D > 128)",
    80, 0, mma_supports, mma_setup, mma_run, mma_teardown, mma_describe, NULL};

extern "C" const fkm_variant fkm_assign_flash_mma_v1 = {
    "assign/flash_mma_v1", FKM_OP_ASSIGN,
    "The first FlashAssign mma.sync kernel: 128x128 block tile, X resident in smem, cp.async ring of centroid tiles",
    80, 0, mma_supports, mma_setup_v1, mma_run, mma_teardown, NULL, NULL};
