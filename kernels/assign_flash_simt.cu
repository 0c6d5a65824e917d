/* assign_flash_simt.cu — `assign/flash_simt`: FlashAssign on CUDA cores.
 *
 * What: fused distance + online argmin. A block owns BM = 128 points and walks
 *   every centroid tile of BN = 128 centroids; the 128×128 dot products of a
 *   tile are accumulated in registers (fp32 FMA), D streamed through shared
 *   memory in chunks of BK = 8 (double-buffered, prefetched through registers),
 *   then folded into a running (min score, argmin) per point with
 *   score = ||c||² − 2·x·c. The N×K distance matrix is never stored.
 * Why: the exact-fp32 reference-speed path for every dtype (fp16/bf16 are
 *   widened to fp32 when tiles are staged), on any GPU from sm_70; it removes
 *   the N×K round trip of assign/cublas_gemm and the per-point re-reads of
 *   assign/naive. assign/flash_mma is the tensor-core version of the same idea.
 * Tiling: 256 threads as 16×16; thread (ty, tx) owns the 8×8 sub-tile of rows
 *   {ty*4+i, 64+ty*4+i} × columns {tx*4+j, 64+tx*4+j} (i, j < 4). Shared memory
 *   holds D-chunks transposed ([d][point], [d][centroid], rows padded to 132
 *   floats), 2 buffers × 2 operands × 8 × 132 floats = 16.5 KB.
 * Ties: each thread visits its columns in increasing centroid order with a
 *   strict `<`; after each tile the 16 threads sharing a row (a half-warp)
 *   reduce lexicographically on (score, index), and the running minimum only
 *   moves on a strictly smaller score (earlier tiles hold lower indices), so
 *   equal scores go to the lowest index.
 * ||c||² comes from a small kernel into scratch [B][Kpad] (Kpad = K rounded up
 *   to BN, +inf in the padding, so a padded column can never win); ||x||² is
 *   summed while the first centroid tile's X chunks are loaded. */
#include "assign_flash_common.cuh"
#include "error.h"
#include "variant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

constexpr int kBM = 128;     /* points per block */
constexpr int kBN = 128;     /* centroids per tile */
constexpr int kBK = 8;       /* D per shared-memory chunk */
constexpr int kThreads = 256;
constexpr int kLds = kBM + 4; /* padded row: the two loader halves land on different banks */
static_assert(kBM == kBN, "the loader maps one X row and one centroid row per thread pair");

template <int DT>
__global__ void __launch_bounds__(kThreads, 2)
    simt_assign_kernel(const void *__restrict__ x, const void *__restrict__ c, const float *__restrict__ csq,
                       int32_t *__restrict__ labels, float *__restrict__ dist, int64_t N, int K, int D, int Kpad) {
  __shared__ __align__(16) float As[2][kBK][kLds]; /* X chunk, [d][point] */
  __shared__ __align__(16) float Bs[2][kBK][kLds]; /* C chunk, [d][centroid] */
  __shared__ float xsq_s[kBM];

  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int64_t b = blockIdx.y;
  const int64_t row0 = (int64_t)blockIdx.x * kBM;
  const int64_t xbase = b * N * D; /* element offsets into x / c */
  const int64_t cbase = b * (int64_t)K * D;
  const float *csq_b = csq + b * (int64_t)Kpad;

  /* Loader: thread pair (2r, 2r+1) fills row r of both operands, 4 d each. */
  const int lr = tid >> 1, ld0 = (tid & 1) * 4;
  const bool xvalid = row0 + lr < N;
  const int64_t xoff = xbase + (xvalid ? (row0 + lr) * D : 0);

  const int nd = (D + kBK - 1) / kBK;    /* D chunks per centroid tile */
  const int ntiles = (K + kBN - 1) / kBN;
  const int total = nd * ntiles;

  float xr[4], cr[4];
  float xsq_part = 0.f;
  auto gload = [&](int kt, int dc) {
    const int crow = kt * kBN + lr;
    const bool cvalid = crow < K;
    const int64_t coff = cbase + (cvalid ? (int64_t)crow * D : 0);
    const int d0 = dc * kBK + ld0;
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int d = d0 + e;
      xr[e] = (xvalid && d < D) ? load_f32<DT>(x, xoff + d) : 0.f;
      cr[e] = (cvalid && d < D) ? load_f32<DT>(c, coff + d) : 0.f;
    }
    if (kt == 0) {
#pragma unroll
      for (int e = 0; e < 4; e++) xsq_part = fmaf(xr[e], xr[e], xsq_part);
    }
  };
  auto sstore = [&](int buf) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      As[buf][ld0 + e][lr] = xr[e];
      Bs[buf][ld0 + e][lr] = cr[e];
    }
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.f;
  /* Running (min score, argmin) of row slot tx & 7 (lanes tx and tx+8 hold the
   * same copy): keeping one row per thread instead of eight keeps the kernel
   * under 128 registers, i.e. two blocks per SM without spills. */
  float run_s = INFINITY;
  int run_i = INT32_MAX;

  gload(0, 0);
  sstore(0);
  __syncthreads();

  /* One flattened loop over (centroid tile kt, D chunk dc) so the register
   * prefetch runs across tile boundaries. One barrier per chunk: the buffer
   * written in iteration `it` was last read in iteration it-1. */
  int kt = 0, dc = 0;
  for (int it = 0; it < total; it++) {
    const int buf = it & 1;
    int nkt = kt, ndc = dc + 1;
    if (ndc == nd) {
      ndc = 0;
      nkt++;
    }
    const bool more = it + 1 < total;
    if (more) gload(nkt, ndc); /* global loads in flight during the FMAs */

#pragma unroll
    for (int k = 0; k < kBK; k++) {
      const float4 a0 = *reinterpret_cast<const float4 *>(&As[buf][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4 *>(&As[buf][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4 *>(&Bs[buf][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4 *>(&Bs[buf][k][64 + tx * 4]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }

    if (more) sstore(buf ^ 1);

    if (dc == nd - 1) { /* tile complete: fold it into the running argmin */
      float ts[8];
      int ti[8];
#pragma unroll
      for (int i = 0; i < 8; i++) {
        ts[i] = INFINITY;
        ti[i] = INT32_MAX;
      }
#pragma unroll
      for (int j = 0; j < 8; j++) { /* this thread's columns, in increasing centroid order */
        const int k = kt * kBN + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
        const float q = __ldg(csq_b + k); /* k < Kpad; +inf for padding */
#pragma unroll
        for (int i = 0; i < 8; i++) {
          const float s = fmaf(-2.f, acc[i][j], q);
          if (s < ts[i]) {
            ts[i] = s;
            ti[i] = k;
          }
          acc[i][j] = 0.f;
        }
      }
      /* Tile minimum of each row over the 16 threads sharing it (one half-warp, tx = lane & 15). */
#pragma unroll
      for (int i = 0; i < 8; i++) {
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) lex_min_shfl_xor(ts[i], ti[i], o);
      }
      float cs = ts[0];
      int ci = ti[0];
#pragma unroll
      for (int i = 1; i < 8; i++)
        if ((tx & 7) == i) {
          cs = ts[i];
          ci = ti[i];
        }
      /* Earlier tiles hold lower indices: strict < keeps them on ties. */
      if (cs < run_s) {
        run_s = cs;
        run_i = ci;
      }
    }
    __syncthreads();
    kt = nkt;
    dc = ndc;
  }

  /* ||x||²: the two loader halves of a row are adjacent lanes. */
  xsq_part += __shfl_xor_sync(0xffffffffu, xsq_part, 1);
  if ((tid & 1) == 0) xsq_s[lr] = xsq_part;

  __syncthreads();
  if (tx < 8) {
    const int r = tx < 4 ? ty * 4 + tx : 64 + ty * 4 + (tx - 4);
    const int64_t n = row0 + r;
    if (n < N) {
      /* run_i stays INT32_MAX only if every score overflowed to +inf. */
      labels[b * N + n] = run_i < K ? run_i : 0;
      dist[b * N + n] = fmaxf(0.f, xsq_s[r] + run_s);
    }
  }
}

typedef struct {
  float *csq; /* [B][Kpad] */
  int64_t kpad;
} simt_state;

static fkm_status simt_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  (void)dev;
  FKM_TRY(flash_check_nonempty(s, why, n));
  FKM_TRY(flash_check_grid_y(s, why, n));
  if (s->K > INT32_MAX - kBN || s->D > INT32_MAX / 2 || (s->N + kBM - 1) / kBM > INT32_MAX ||
      ((s->K + kBN - 1) / kBN) * ((s->D + kBK - 1) / kBK) > INT32_MAX) {
    snprintf(why, n, "K or D beyond the int32 index range, or too many point tiles");
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

static void simt_teardown(void *state) {
  simt_state *st = (simt_state *)state;
  if (!st) return;
  cudaFree(st->csq);
  free(st);
}

static fkm_status simt_setup(const fkm_problem *p, void **state) {
  const fkm_shape *s = &p->s;
  const int64_t kpad = (s->K + kBN - 1) / kBN * kBN;
  const size_t bytes = (size_t)(s->B * kpad) * sizeof(float);
  if (p->scratch_budget && bytes > p->scratch_budget)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_simt: centroid norms need %zu bytes, budget %zu", bytes,
                    p->scratch_budget);
  simt_state *st = (simt_state *)calloc(1, sizeof *st);
  if (!st) return fkm_fail(FKM_ERR_OOM, "assign/flash_simt: out of host memory");
  st->kpad = kpad;
  cudaError_t e = cudaMalloc((void **)&st->csq, bytes);
  if (e != cudaSuccess) {
    free(st);
    return fkm_cuda_fail_at(e, "cudaMalloc(csq)", __FILE__, __LINE__);
  }
  *state = st;
  return FKM_OK;
}

template <int DT>
static fkm_status simt_launch(const fkm_problem *p, const simt_state *st, cudaStream_t stream) {
  const fkm_shape *s = &p->s;
  const int64_t rows = s->B * st->kpad;
  flash_centroid_norms<DT><<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(p->c, st->csq, s->B, s->K, s->D, st->kpad);
  FKM_CUDA_LAUNCH();
  const dim3 grid((unsigned)((s->N + kBM - 1) / kBM), (unsigned)s->B);
  simt_assign_kernel<DT><<<grid, kThreads, 0, stream>>>(p->x, p->c, st->csq, p->labels, p->dist, s->N, (int)s->K,
                                                       (int)s->D, (int)st->kpad);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static fkm_status simt_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  const simt_state *st = (const simt_state *)state;
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "assign/flash_simt: run without setup");
  switch (p->s.dtype) {
  case FKM_F32: return simt_launch<FKM_F32>(p, st, stream);
  case FKM_F16: return simt_launch<FKM_F16>(p, st, stream);
  case FKM_BF16: return simt_launch<FKM_BF16>(p, st, stream);
  default: return fkm_fail(FKM_ERR_INPUT, "assign/flash_simt: unknown dtype %d", (int)p->s.dtype);
  }
}

} // namespace

extern "C" const fkm_variant fkm_assign_flash_simt = {
    "assign/flash_simt", FKM_OP_ASSIGN,
    "FlashAssign on CUDA cores: 128x128 register-blocked fp32 tiles, online argmin, no NxK matrix",
    70, 0, simt_supports, simt_setup, simt_run, simt_teardown};
