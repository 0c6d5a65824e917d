/* sort_inverse_common.cuh — the shared machinery of the sort-inverse centroid
 * update (Flash-KMeans' second kernel), used by update/sort_inverse (fast) and
 * update/sort_inverse_det (bitwise deterministic). Private to those two files:
 * everything lives in an anonymous namespace, so each includes its own copy.
 *
 * Segments. Problem b's cluster k is segment s = b*K + k of S = B*K; point n
 * of problem b is flat row i = b*N + n of M = B*N. Both must fit int32.
 *
 * Pipeline (all on one stream, no host sync):
 *   sort_inverse_init       counts[S] = 0, bad = INT32_MAX (and off[0] = 0)
 *   sort_inverse_histogram  counts[s] = |{i : seg(i) = s}| (integer atomics:
 *                           block-private shared-memory bins when a chunk's
 *                           segment span fits, else warp-aggregated global
 *                           atomics); records the first bad label; the det
 *                           variant also writes radix-sort keys/values here
 *   <sort>                  fast: counting sort (CUB inclusive scan + scatter)
 *                           det:  CUB stable radix sort on ceil(log2 S) bits
 *   sort_inverse_reduce     segment-level reduction over the sorted order
 *   sort_inverse_finish     combines runs that cross block boundaries, in a
 *                           fixed order, and copies c_old into empty clusters
 *
 * Bad labels. A label outside [0, K) never touches memory it should not: the
 * histogram skips it (and atomicMin's its flat index into `bad`), the fast
 * scatter skips it, and the det sort carries it with value -1, which the
 * reduce skips. Such points count nowhere.
 *
 * The reduce. The sorted order [0, M_eff) is cut into nb equal block slices of
 * L rows (independent of cluster sizes); each block's slice is cut into
 * `teams` equal team ranges. A team is T = 2^log2T lanes of one warp; lane l
 * owns EPL elements of a D-tile of T*EPL elements (gridDim.y tiles cover D).
 * A team walks its range RU rows at a time: it loads the RU row indices of
 * the step, issues RU independent 16-byte (or EPL scalar) gathers of the rows,
 * loads the RU segments of the step (their latency overlaps the gathers), then
 * adds the rows into EPL fp32 registers in sorted order, flushing the running
 * sum when the segment changes (no warp-level sync: teams of a warp are
 * independent). A run that
 * lies wholly inside a team range is written as its mean at once. A run that
 * touches a team-range boundary leaves a piece in shared memory: H (the team's
 * first run, which began before the range; "mid" if it also continues past
 * it) or T (a run that begins in the range and continues past it). After one
 * barrier, the warps chain the pieces team by team (in team order): chains
 * that close inside the block are written as means; a chain open at the block
 * start or end leaves a block piece (same H/T convention) in global `part`.
 * The finish kernel sums each cross-block chain T[j], H[j+1..je] in a fixed
 * order (je from chain_end[seg], written by the block where the chain ends).
 * No shared-memory atomics and no float atomics anywhere in the reduction. */
#ifndef FKM_SORT_INVERSE_COMMON_CUH
#define FKM_SORT_INVERSE_COMMON_CUH

#include "error.h"
#include "flashkm.h"
#include "variant.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

/* ------------------------------------------------------------------ tuning */
constexpr int SI_HT = 512;                 /* histogram / scatter block size */
constexpr int SI_HB = 4;                   /* labels loaded per thread per batch */
constexpr int SI_CHUNK_SMEM0 = 8192;       /* smallest chunk of the shared-bin path */
constexpr int SI_CHUNK_GLOBAL = SI_HT * 4; /* chunk of the global-atomic path */
constexpr int SI_MAX_BINS = 24576;         /* 96 KiB of shared bins at most */

constexpr int SI_RT = 320;        /* reduce block size (10 warps) */
constexpr int SI_RW = SI_RT / 32; /* warps per reduce block */
constexpr int SI_RU = 8;          /* rows per team step (loads in flight per lane) */
constexpr int SI_RMINB = 2;       /* reduce blocks per SM the register budget targets */
/* Registers: the 16-bit vector reduce needs 84-92 (8 rows x 16 B of gathers +
 * 8 fp32 sums per lane), so 2 blocks x 10 warps per SM; 20 warps keep up to
 * 80 KB of gathers in flight per SM, above the ~25-50 KB HBM3 needs.
 * SI_PREFETCH 1 prefetches the next step's row indices during the current one
 * (~8 more registers); 0 (default) loads them at the step start and relies on
 * the other warps to hide that short L2 latency. */
#ifndef SI_PREFETCH
#define SI_PREFETCH 0
#endif

constexpr int SI_FT = 1024;       /* finish block size */
constexpr int SI_FW = SI_FT / 32;
constexpr int SI_FD = 128;        /* finish: elements of D per pass (4 per lane) */

constexpr int SI_PAD = 64;        /* slack entries after every sorted array */

constexpr unsigned SI_FULL = 0xffffffffu;

/* ------------------------------------------------------------- dtype helpers */
template <int DT> struct si_dt;
template <> struct si_dt<0> { typedef float raw_t; static constexpr int size = 4; };
template <> struct si_dt<1> { typedef unsigned short raw_t; static constexpr int size = 2; };
template <> struct si_dt<2> { typedef unsigned short raw_t; static constexpr int size = 2; };

/* Exact conversion of one stored element (raw bits in the low bits of w). */
template <int DT> __device__ __forceinline__ float si_cvt(uint32_t w) {
  if (DT == 0) return __uint_as_float(w);
  if (DT == 1) return __half2float(__ushort_as_half((unsigned short)(w & 0xffffu)));
  return __uint_as_float(w << 16);
}
/* Element j (0..EPL-1) of a 16-byte vector of the given dtype. */
template <int DT> __device__ __forceinline__ float si_cvt_vec(const uint32_t (&w)[4], int j) {
  if (DT == 0) return __uint_as_float(w[j]);
  uint32_t u = w[j >> 1];
  if (DT == 1) return __half2float(__ushort_as_half((unsigned short)((j & 1) ? (u >> 16) : (u & 0xffffu))));
  return __uint_as_float((j & 1) ? (u & 0xffff0000u) : (u << 16));
}

/* ------------------------------------------------------------------- init */
__global__ void sort_inverse_init(int *__restrict__ counts, int S, int *__restrict__ off0, int *__restrict__ bad) {
  for (long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x; s < S; s += (long long)gridDim.x * blockDim.x)
    counts[s] = 0;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *bad = INT_MAX;
    if (off0) *off0 = 0;
  }
}

/* ---------------------------------------------------------- histogram/scatter */
struct SiHistParams {
  const int *labels;
  int M, N, K, S;
  int chunk;        /* flat rows per block */
  int *counts;      /* [S] histogram (the counts output) */
  int *bad;         /* first out-of-range flat index */
  unsigned *keys;   /* det: radix keys [M] (segment, 0 for bad labels) */
  int *vals;        /* det: radix values [M] (flat row, -1 for bad labels) */
  int *off;         /* fast scatter: [S+1] start offsets, used as cursors */
  int *sidx;        /* fast scatter: [M] sorted rows */
  int *sseg;        /* fast scatter: [M] sorted segments */
};

/* One label: in-range row? valid label? its segment. */
__device__ __forceinline__ void si_classify(const SiHistParams &P, int i, int lab, bool &in, bool &valid, int &seg) {
  in = i < P.M;
  valid = in && lab >= 0 && lab < P.K;
  int b = (int)((unsigned)i / (unsigned)P.N);
  seg = valid ? b * P.K + lab : -1;
}

/* Records the first bad label of the warp's 32 consecutive rows (the lowest
 * lane holds the lowest row) with one atomicMin. Warp-uniform call. */
__device__ __forceinline__ void si_record_bad(const SiHistParams &P, int i, bool is_bad) {
  const unsigned m = __ballot_sync(SI_FULL, is_bad);
  if (m && (int)(threadIdx.x & 31) == __ffs(m) - 1) atomicMin(P.bad, i);
}

/* Rows handled by this block: [c0, c1); the segments they can fall in:
 * [seg_lo, seg_lo + span). */
__device__ __forceinline__ void si_chunk(const SiHistParams &P, int &c0, int &c1, int &seg_lo, int &span) {
  long long lo = (long long)blockIdx.x * P.chunk;
  c0 = (int)lo;
  c1 = (int)(lo + P.chunk < (long long)P.M ? lo + P.chunk : (long long)P.M);
  seg_lo = (c0 / P.N) * P.K;
  long long hi = (long long)((c1 - 1) / P.N + 1) * P.K;
  if (hi > P.S) hi = P.S;
  span = (int)(hi - seg_lo);
}

/* Shared-bin histogram of this block's chunk (bins zeroed by the caller). A
 * warp whose 32 labels are all the same segment (heavy skew) adds 32 with one
 * atomic; otherwise one shared atomic per point. FIRST also records bad labels
 * and writes the det radix keys. */
template <bool FIRST, bool KEYS>
__device__ __forceinline__ void si_smem_count(const SiHistParams &P, int *sh, int c0, int c1, int seg_lo) {
  const int lane = threadIdx.x & 31;
  for (int base = c0; base < c1; base += SI_HT * SI_HB) {
    int lab[SI_HB];
#pragma unroll
    for (int k = 0; k < SI_HB; k++) {
      int i = base + k * SI_HT + (int)threadIdx.x;
      lab[k] = i < c1 ? __ldg(P.labels + i) : 0;
    }
#pragma unroll
    for (int k = 0; k < SI_HB; k++) {
      int i = base + k * SI_HT + (int)threadIdx.x;
      bool in, valid;
      int seg;
      si_classify(P, i, lab[k], in, valid, seg);
      in = in && i < c1;
      valid = valid && in;
      if (FIRST) {
        si_record_bad(P, i, in && !valid);
        if (KEYS && in) {
          P.keys[i] = valid ? (unsigned)seg : 0u;
          P.vals[i] = valid ? i : -1;
        }
      }
      int s0 = __shfl_sync(SI_FULL, seg, 0);
      bool uni = __all_sync(SI_FULL, valid && seg == s0);
      if (uni) {
        if (lane == 0) atomicAdd(sh + (s0 - seg_lo), 32);
      } else if (valid) {
        atomicAdd(sh + (seg - seg_lo), 1);
      }
    }
  }
}

template <bool SMEM, bool KEYS>
__global__ void __launch_bounds__(SI_HT) sort_inverse_histogram(const SiHistParams P) {
  extern __shared__ int si_bins[];
  int c0, c1, seg_lo, span;
  si_chunk(P, c0, c1, seg_lo, span);
  if (SMEM) {
    for (int t = threadIdx.x; t < span; t += SI_HT) si_bins[t] = 0;
    __syncthreads();
    si_smem_count<true, KEYS>(P, si_bins, c0, c1, seg_lo);
    __syncthreads();
    for (int t = threadIdx.x; t < span; t += SI_HT) {
      int c = si_bins[t];
      if (c) atomicAdd(P.counts + seg_lo + t, c);
    }
  } else {
    const int lane = threadIdx.x & 31;
    for (int base = c0; base < c1; base += SI_HT * SI_HB) {
      int lab[SI_HB];
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        lab[k] = i < c1 ? __ldg(P.labels + i) : 0;
      }
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        bool in, valid;
        int seg;
        si_classify(P, i, lab[k], in, valid, seg);
        in = in && i < c1;
        valid = valid && in;
        si_record_bad(P, i, in && !valid);
        if (KEYS && in) {
          P.keys[i] = valid ? (unsigned)seg : 0u;
          P.vals[i] = valid ? i : -1;
        }
        int key = valid ? seg : -1;
        unsigned m = __match_any_sync(SI_FULL, key);
        if (valid && lane == __ffs(m) - 1) atomicAdd(P.counts + seg, __popc(m));
      }
    }
  }
}

/* Counting-sort scatter (fast variant, not stable): off[s] holds the start of
 * segment s and is advanced as a cursor; off[S] (the total) is never touched.
 * Output: sidx[pos] = row, sseg[pos] = segment.
 * Shared-bin path: count the chunk again, reserve each bin's range with one
 * global atomic per non-empty bin, then hand out positions from shared
 * cursors. Global path: warp-aggregated reservation per segment. */
template <bool SMEM>
__global__ void __launch_bounds__(SI_HT) sort_inverse_scatter(const SiHistParams P) {
  extern __shared__ int si_bins[];
  const int lane = threadIdx.x & 31;
  int c0, c1, seg_lo, span;
  si_chunk(P, c0, c1, seg_lo, span);
  if (SMEM) {
    for (int t = threadIdx.x; t < span; t += SI_HT) si_bins[t] = 0;
    __syncthreads();
    si_smem_count<false, false>(P, si_bins, c0, c1, seg_lo);
    __syncthreads();
    /* Reserve: batches of independent atomics so their latencies overlap. */
    for (int t0 = 0; t0 < span; t0 += SI_HT * 8) {
      int c[8], r[8];
#pragma unroll
      for (int k = 0; k < 8; k++) {
        int t = t0 + k * SI_HT + (int)threadIdx.x;
        c[k] = t < span ? si_bins[t] : 0;
      }
#pragma unroll
      for (int k = 0; k < 8; k++) {
        int t = t0 + k * SI_HT + (int)threadIdx.x;
        r[k] = c[k] ? atomicAdd(P.off + seg_lo + t, c[k]) : 0;
      }
#pragma unroll
      for (int k = 0; k < 8; k++) {
        int t = t0 + k * SI_HT + (int)threadIdx.x;
        if (t < span) si_bins[t] = r[k];
      }
    }
    __syncthreads();
    for (int base = c0; base < c1; base += SI_HT * SI_HB) {
      int lab[SI_HB];
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        lab[k] = i < c1 ? __ldg(P.labels + i) : 0;
      }
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        bool in, valid;
        int seg;
        si_classify(P, i, lab[k], in, valid, seg);
        valid = valid && i < c1;
        int s0 = __shfl_sync(SI_FULL, seg, 0);
        bool uni = __all_sync(SI_FULL, valid && seg == s0);
        int pos = 0;
        if (uni) {
          if (lane == 0) pos = atomicAdd(si_bins + (s0 - seg_lo), 32);
          pos = __shfl_sync(SI_FULL, pos, 0) + lane;
        } else if (valid) {
          pos = atomicAdd(si_bins + (seg - seg_lo), 1);
        }
        if (valid) {
          P.sidx[pos] = i;
          P.sseg[pos] = seg;
        }
      }
    }
  } else {
    for (int base = c0; base < c1; base += SI_HT * SI_HB) {
      int lab[SI_HB];
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        lab[k] = i < c1 ? __ldg(P.labels + i) : 0;
      }
      int seg[SI_HB], rank[SI_HB], leader[SI_HB], got[SI_HB];
      bool valid[SI_HB];
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        bool in;
        si_classify(P, i, lab[k], in, valid[k], seg[k]);
        valid[k] = valid[k] && i < c1;
        int key = valid[k] ? seg[k] : -1;
        unsigned m = __match_any_sync(SI_FULL, key);
        leader[k] = __ffs(m) - 1;
        rank[k] = __popc(m & ((1u << lane) - 1u));
        got[k] = (valid[k] && lane == leader[k]) ? atomicAdd(P.off + seg[k], __popc(m)) : 0;
      }
#pragma unroll
      for (int k = 0; k < SI_HB; k++) {
        int i = base + k * SI_HT + (int)threadIdx.x;
        int pos = __shfl_sync(SI_FULL, got[k], leader[k]) + rank[k];
        if (valid[k]) {
          P.sidx[pos] = i;
          P.sseg[pos] = seg[k];
        }
      }
    }
  }
}

/* ------------------------------------------------------------------ reduce */
struct SiReduceParams {
  const void *x;
  const int *idx;     /* sorted rows (-1: bad label, skipped) */
  const int *seg;     /* sorted segments */
  const int *m_eff;   /* device count of sorted entries (fast), or NULL: M */
  const int *counts;
  float *c_new;
  float *part;        /* [nb][2][D] block pieces: 0 = H, 1 = T */
  int *tseg;          /* [nb] segment of block j's T piece, -1 if none */
  int *chain_end;     /* [S] block where a cross-block chain ends */
  int M, D, L, team_len, log2T;
};

__device__ __forceinline__ int si_seg_at(const SiReduceParams &P, int r) { return __ldg(P.seg + r); }

/* RU entries of a sorted int array starting at r (a multiple of RU: 32-byte aligned). */
__device__ __forceinline__ void si_load8(const int *base, int r, int (&v)[SI_RU]) {
  const int4 *p = reinterpret_cast<const int4 *>(base + r);
#pragma unroll
  for (int q = 0; q < SI_RU / 4; q++) {
    int4 t = __ldg(p + q);
    v[4 * q] = t.x; v[4 * q + 1] = t.y; v[4 * q + 2] = t.z; v[4 * q + 3] = t.w;
  }
}

template <int DT, bool VEC>
__global__ void __launch_bounds__(SI_RT, SI_RMINB) sort_inverse_reduce(const SiReduceParams P) {
  typedef typename si_dt<DT>::raw_t raw_t;
  constexpr int EPL = VEC ? 16 / si_dt<DT>::size : 4; /* elements per lane */
  constexpr int NPL = 8;                              /* combine: max elements per lane */

  extern __shared__ float4 si_dyn[];
  float *sh_part = reinterpret_cast<float *>(si_dyn); /* [2 * teams][dtile] */
  __shared__ int sH[SI_RT], sHmid[SI_RT], sT[SI_RT];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int log2T = P.log2T, T = 1 << log2T;
  const int tl = lane & (T - 1);
  const int team = (warp << (5 - log2T)) + (lane >> log2T);
  const int teams = SI_RW << (5 - log2T);
  const int dtile = T * EPL;
  const int D = P.D;
  const int j = blockIdx.x;
  const int dt0 = blockIdx.y * dtile;

  int m_eff = P.M;
  if (P.m_eff) m_eff = min(max(__ldg(P.m_eff), 0), P.M);
  const long long p0l = (long long)j * P.L;
  const int p0 = (int)min(p0l, (long long)m_eff);
  const int p1 = (int)min(p0l + P.L, (long long)m_eff);
  const int a = (int)min((long long)p0 + (long long)team * P.team_len, (long long)p1);
  const int b = (int)min((long long)a + P.team_len, (long long)p1);

  if (tid == 0 && blockIdx.y == 0) P.tseg[j] = -1;
  if (tl == 0) {
    sH[team] = -1;
    sHmid[team] = 0;
    sT[team] = -1;
  }

  /* Elements owned by this lane: local index (within the D-tile) of element e. */
  auto loc = [&](int e) { return VEC ? tl * EPL + e : tl + e * T; };
  const bool lane_on = dt0 + loc(0) < D; /* VEC: all EPL or none */
  /* This lane's first element of row 0; row i is at xl + i*D. */
  const raw_t *xl = reinterpret_cast<const raw_t *>(P.x) + dt0 + (VEC ? tl * EPL : tl);

  float acc[EPL];
#pragma unroll
  for (int e = 0; e < EPL; e++) acc[e] = 0.f;

  auto write_piece = [&](int kind) {
    float *dst = sh_part + (2 * team + kind) * dtile;
    if (VEC) {
#pragma unroll
      for (int q = 0; q < EPL / 4; q++)
        *reinterpret_cast<float4 *>(dst + tl * EPL + 4 * q) =
            make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
    } else {
#pragma unroll
      for (int e = 0; e < EPL; e++) dst[loc(e)] = acc[e];
    }
  };
  /* Writes acc / n as the mean of segment s; leaves acc divided (callers
   * reset it or are done with it). */
  auto write_mean = [&](int s, int n) {
    const float fn = (float)n;
#pragma unroll
    for (int e = 0; e < EPL; e++) acc[e] = acc[e] / fn;
    float *dst = P.c_new + (size_t)s * D + dt0;
    if (VEC) {
      if (lane_on) {
#pragma unroll
        for (int q = 0; q < EPL / 4; q++)
          *reinterpret_cast<float4 *>(dst + tl * EPL + 4 * q) =
              make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
      }
    } else {
#pragma unroll
      for (int e = 0; e < EPL; e++)
        if (dt0 + loc(e) < D) dst[loc(e)] = acc[e];
    }
  };

  if (a < b) {
    const int s_first = si_seg_at(P, a);
    /* hopen: the current run is the range's first and began before it (an H
     * piece); cleared at the first flush. */
    bool hopen = a > 0 && si_seg_at(P, a - 1) == s_first;
    const int s_next = b < m_eff ? si_seg_at(P, b) : -2;

    int cur = -1, n = 0;
    int nid[SI_RU];
#if SI_PREFETCH
    si_load8(P.idx, a, nid);
#endif
    for (int r = a; r < b; r += SI_RU) {
#if !SI_PREFETCH
      si_load8(P.idx, r, nid);
#endif
      const int nin = b - r; /* rows of this step inside the range: min(nin, RU) */
      unsigned live = 0;
      uint32_t w[SI_RU][4];
      /* Issue all RU gathers first (independent loads in flight). */
#pragma unroll
      for (int u = 0; u < SI_RU; u++) {
        const bool lv = u < nin && nid[u] >= 0; /* det: -1 marks a bad label */
        live |= (lv ? 1u : 0u) << u;
        const size_t row = (size_t)(lv ? nid[u] : 0) * (size_t)D;
        if (VEC) {
          int4 v = make_int4(0, 0, 0, 0);
          if (lv && lane_on) v = __ldcs(reinterpret_cast<const int4 *>(xl + row));
          w[u][0] = (uint32_t)v.x; w[u][1] = (uint32_t)v.y; w[u][2] = (uint32_t)v.z; w[u][3] = (uint32_t)v.w;
        } else {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            uint32_t x = 0;
            if (lv && dt0 + loc(e) < D) {
              if (DT == 0) x = __float_as_uint(__ldcs(reinterpret_cast<const float *>(xl) + row + e * T));
              else x = (uint32_t)__ldcs(reinterpret_cast<const unsigned short *>(xl) + row + e * T);
            }
            w[u][e] = x;
          }
        }
      }
      /* This step's segments (their latency overlaps the gathers), then the
       * next step's row indices. */
      int sg[SI_RU];
      si_load8(P.seg, r, sg);
#if SI_PREFETCH
      if (r + SI_RU < b) si_load8(P.idx, r + SI_RU, nid);
#endif

#pragma unroll
      for (int u = 0; u < SI_RU; u++) {
        if (u >= nin) break;
        const int s = sg[u];
        if (s != cur) {
          if (cur >= 0) { /* the run of `cur` ends inside the range */
            if (hopen) {
              write_piece(0);
              if (tl == 0) { sH[team] = cur; sHmid[team] = 0; }
            } else if (n > 0) {
              write_mean(cur, n);
            }
            hopen = false;
          }
          cur = s;
          n = 0;
#pragma unroll
          for (int e = 0; e < EPL; e++) acc[e] = 0.f;
        }
        if (VEC) {
          const uint32_t(&wu)[4] = w[u];
#pragma unroll
          for (int e = 0; e < EPL; e++) acc[e] += si_cvt_vec<DT>(wu, e);
        } else {
#pragma unroll
          for (int e = 0; e < EPL; e++) acc[e] += si_cvt<DT>(w[u][e]);
        }
        n += (live >> u) & 1u;
      }
    }
    /* The range's last run. */
    const bool tail_open = s_next == cur;
    if (hopen) {
      write_piece(0);
      if (tl == 0) { sH[team] = cur; sHmid[team] = tail_open ? 1 : 0; }
    } else if (tail_open) {
      write_piece(1);
      if (tl == 0) sT[team] = cur;
    } else if (n > 0) {
      write_mean(cur, n);
    }
  }
  __syncthreads();

  /* Chain the pieces across team ranges, in team order. Chain starts: H[0]
   * (the block's first run began in an earlier block) and every T[t]. */
  const int npl = (dtile + 31) >> 5;
  for (int c = warp; c <= teams; c += SI_RW) {
    const bool from_head = c == 0;
    const int seg = from_head ? sH[0] : sT[c - 1];
    if (seg < 0) continue;
    const float *src = sh_part + (from_head ? 0 : 2 * (c - 1) + 1) * dtile;
    float sum[NPL];
#pragma unroll
    for (int i = 0; i < NPL; i++) {
      const int e = lane + 32 * i;
      sum[i] = (i < npl && e < dtile) ? src[e] : 0.f;
    }
    bool ran_off = from_head ? sHmid[0] != 0 : true;
    if (ran_off) {
      for (int t = from_head ? 1 : c; t < teams; t++) {
        const float *pc = sh_part + (2 * t) * dtile;
#pragma unroll
        for (int i = 0; i < NPL; i++) {
          const int e = lane + 32 * i;
          if (i < npl && e < dtile) sum[i] += pc[e];
        }
        if (!sHmid[t]) { ran_off = false; break; }
      }
    }
    if (from_head || ran_off) {
      float *dst = P.part + ((size_t)j * 2 + (from_head ? 0 : 1)) * (size_t)D + dt0;
#pragma unroll
      for (int i = 0; i < NPL; i++) {
        const int e = lane + 32 * i;
        if (i < npl && e < dtile && dt0 + e < D) dst[e] = sum[i];
      }
      if (blockIdx.y == 0 && lane == 0) {
        if (!from_head) P.tseg[j] = seg;
        else if (!ran_off) P.chain_end[seg] = j;
      }
    } else {
      const int cnt = __ldg(P.counts + seg);
      if (cnt > 0) {
        const float fn = (float)cnt;
        float *dst = P.c_new + (size_t)seg * D + dt0;
#pragma unroll
        for (int i = 0; i < NPL; i++) {
          const int e = lane + 32 * i;
          if (i < npl && e < dtile && dt0 + e < D) dst[e] = sum[i] / fn;
        }
      }
    }
  }
}

/* ------------------------------------------------------------------ finish */
struct SiFinishParams {
  const float *part;
  const int *tseg, *chain_end, *counts;
  const float *c_old;
  float *c_new;
  int nb, S, D;
};

/* Blocks [0, nb): block j owns the chain that starts with its T piece and sums
 * T[j], H[j+1], ..., H[je]: warp w takes pieces w, w+32, ... in order, then the
 * 32 warp sums are added in warp order. Blocks [nb, ...): 32 segments each,
 * one warp per segment, copy c_old into empty clusters. */
__global__ void __launch_bounds__(SI_FT) sort_inverse_finish(const SiFinishParams F) {
  __shared__ float red[SI_FW][SI_FD];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int D = F.D;
  if ((int)blockIdx.x < F.nb) {
    const int jb = blockIdx.x;
    const int s = F.tseg[jb];
    if (s < 0) return;
    const int cnt = F.counts[s];
    if (cnt <= 0) return;
    int np = F.chain_end[s] - jb + 1;
    if (np < 1) np = 1; /* defensive: never read outside part */
    if (np > F.nb - jb) np = F.nb - jb;
    const float fn = (float)cnt;
    for (int d0 = 0; d0 < D; d0 += SI_FD) {
      float acc[SI_FD / 32];
#pragma unroll
      for (int i = 0; i < SI_FD / 32; i++) acc[i] = 0.f;
#pragma unroll 4
      for (int q = warp; q < np; q += SI_FW) {
        const float *src = F.part + ((size_t)(jb + q) * 2 + (q == 0 ? 1 : 0)) * (size_t)D;
#pragma unroll
        for (int i = 0; i < SI_FD / 32; i++) {
          const int d = d0 + lane + 32 * i;
          if (d < D) acc[i] += src[d];
        }
      }
#pragma unroll
      for (int i = 0; i < SI_FD / 32; i++) red[warp][lane + 32 * i] = acc[i];
      __syncthreads();
      if (tid < SI_FD) {
        float sum = red[0][tid];
        for (int w = 1; w < SI_FW; w++) sum += red[w][tid];
        const int d = d0 + tid;
        if (d < D) F.c_new[(size_t)s * D + d] = sum / fn;
      }
      __syncthreads();
    }
    return;
  }
  const long long s = (long long)(blockIdx.x - F.nb) * SI_FW + warp;
  if (s >= F.S) return;
  if (F.counts[s] != 0) return;
  const float *src = F.c_old + (size_t)s * D;
  float *dst = F.c_new + (size_t)s * D;
  for (int d = lane; d < D; d += 32) dst[d] = src[d];
}

/* ------------------------------------------------------------- host side */
static inline long long si_cdiv(long long a, long long b) { return (a + b - 1) / b; }
static inline size_t si_align(size_t n) { return (n + 255) & ~(size_t)255; }
static inline int si_log2_ceil(long long x) { /* smallest l with 2^l >= x (x >= 1) */
  int l = 0;
  while ((1LL << l) < x) l++;
  return l;
}

struct SiHistCfg {
  bool smem;
  int chunk, grid;
  size_t smem_bytes;
};

/* Segments a chunk of C consecutive rows can touch. */
static inline long long si_span_bound(long long C, long long N, long long K, long long S) {
  long long v = ((C - 1) / N + 2) * K;
  return v < S ? v : S;
}

static inline SiHistCfg si_hist_config(long long M, long long N, long long K, long long S, int sms) {
  SiHistCfg h;
  long long C = SI_CHUNK_SMEM0;
  if (si_span_bound(C, N, K, S) <= SI_MAX_BINS) {
    /* Grow the chunk while the bins dominate it, the bins fit, and there are
     * still at least one block per SM. */
    while (C < 4 * si_span_bound(C, N, K, S) && si_span_bound(2 * C, N, K, S) <= SI_MAX_BINS &&
           si_cdiv(M, 2 * C) >= sms)
      C *= 2;
    h.smem = true;
    h.smem_bytes = (size_t)si_span_bound(C, N, K, S) * sizeof(int);
  } else {
    C = SI_CHUNK_GLOBAL;
    h.smem = false;
    h.smem_bytes = 0;
  }
  h.chunk = (int)C;
  h.grid = (int)si_cdiv(M, C);
  return h;
}

struct SiRedCfg {
  bool ok;
  bool vec;
  int epl, log2T, dtile, ntiles, teams, L, team_len, nb;
  size_t smem;
};

static inline const void *si_reduce_ptr(int dt, bool vec) {
  if (dt == 0) return vec ? (const void *)sort_inverse_reduce<0, true> : (const void *)sort_inverse_reduce<0, false>;
  if (dt == 1) return vec ? (const void *)sort_inverse_reduce<1, true> : (const void *)sort_inverse_reduce<1, false>;
  return vec ? (const void *)sort_inverse_reduce<2, true> : (const void *)sort_inverse_reduce<2, false>;
}

/* Geometry of the reduce for one kernel flavour. The slice count depends only
 * on the shape and the device (SM count, occupancy), so it is the same for
 * every launch: the det variant relies on that. */
static fkm_status si_reduce_config(const fkm_shape *s, bool vec, int sms, SiRedCfg *c) {
  const long long M = s->B * s->N, D = s->D;
  const int es = (int)fkm_dtype_size(s->dtype);
  c->ok = true;
  c->vec = vec;
  c->epl = vec ? 16 / es : 4;
  c->log2T = si_log2_ceil(si_cdiv(D, c->epl));
  if (c->log2T > 5) c->log2T = 5;
  c->dtile = (1 << c->log2T) * c->epl;
  c->ntiles = (int)si_cdiv(D, c->dtile);
  c->teams = SI_RW << (5 - c->log2T);
  c->smem = (size_t)2 * c->teams * c->dtile * sizeof(float);
  int bps = 0;
  FKM_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, si_reduce_ptr((int)s->dtype, vec), SI_RT,
                                                         c->smem));
  if (bps < 1) bps = 1;
  long long nbmax = (long long)bps * sms / c->ntiles;
  if (nbmax < 1) nbmax = 1;
  const long long gran = (long long)c->teams * SI_RU;
  const long long L = si_cdiv(si_cdiv(M, nbmax), gran) * gran;
  c->L = (int)L;
  c->team_len = (int)(L / c->teams);
  c->nb = (int)si_cdiv(M, L);
  return FKM_OK;
}

/* Shape limits shared by both variants. */
static fkm_status si_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  (void)dev;
  const char *msg = NULL;
  if (s->B < 1 || s->N < 1 || s->K < 1 || s->D < 1) msg = "B, N, K and D must be positive";
  else if ((unsigned)s->dtype >= FKM_DTYPE_COUNT) msg = "unknown dtype";
  else if (s->B * s->N > (long long)INT_MAX - 4096) msg = "B*N must fit int32 (point indices are int32)";
  else if (s->B * s->K > (long long)INT_MAX - 4096) msg = "B*K must fit int32 (segment ids are int32)";
  else if (s->D > (1LL << 22)) msg = "D above 4M is not supported";
  if (msg) {
    if (why && why_len) snprintf(why, why_len, "%s", msg);
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
}

/* Can the 16-byte path run on these buffers? */
static inline bool si_vec_ok(const fkm_problem *p) {
  const size_t es = fkm_dtype_size(p->s.dtype);
  return ((size_t)p->s.D * es) % 16 == 0 && ((uintptr_t)p->x & 15) == 0 && ((uintptr_t)p->c_new & 15) == 0;
}
static inline bool si_vec_shape_ok(const fkm_shape *s) { return ((size_t)s->D * fkm_dtype_size(s->dtype)) % 16 == 0; }

/* Launches reduce + finish for the chosen geometry. */
static fkm_status si_launch_reduce(const fkm_problem *p, const SiRedCfg *c, SiReduceParams rp, float *part, int *tseg,
                                   int *chain_end, cudaStream_t stream) {
  const fkm_shape *s = &p->s;
  rp.x = p->x;
  rp.counts = p->counts;
  rp.c_new = p->c_new;
  rp.part = part;
  rp.tseg = tseg;
  rp.chain_end = chain_end;
  rp.M = (int)(s->B * s->N);
  rp.D = (int)s->D;
  rp.L = c->L;
  rp.team_len = c->team_len;
  rp.log2T = c->log2T;
  dim3 grid((unsigned)c->nb, (unsigned)c->ntiles);
  const int dt = (int)s->dtype;
#define SI_LAUNCH(DT, V) sort_inverse_reduce<DT, V><<<grid, SI_RT, c->smem, stream>>>(rp)
  if (dt == 0) { if (c->vec) SI_LAUNCH(0, true); else SI_LAUNCH(0, false); }
  else if (dt == 1) { if (c->vec) SI_LAUNCH(1, true); else SI_LAUNCH(1, false); }
  else { if (c->vec) SI_LAUNCH(2, true); else SI_LAUNCH(2, false); }
#undef SI_LAUNCH
  FKM_CUDA_LAUNCH();

  SiFinishParams fp;
  fp.part = part;
  fp.tseg = tseg;
  fp.chain_end = chain_end;
  fp.counts = p->counts;
  fp.c_old = p->c_old;
  fp.c_new = p->c_new;
  fp.nb = c->nb;
  fp.S = (int)(s->B * s->K);
  fp.D = (int)s->D;
  const long long fgrid = (long long)c->nb + si_cdiv(fp.S, SI_FW);
  sort_inverse_finish<<<(unsigned)fgrid, SI_FT, 0, stream>>>(fp);
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static inline int si_sm_count(int *sms) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return -1;
  if (cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return -1;
  return 0;
}

/* Raises the dynamic shared-memory limit of the shared-bin kernels when needed. */
template <typename K> static fkm_status si_allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) FKM_CUDA(cudaFuncSetAttribute((const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  return FKM_OK;
}

/* The check_input hook of both variants: the first label outside [0, K) that
 * the histogram met (device `bad`, INT32_MAX when none) as an input error. */
fkm_status si_check_bad(const fkm_problem *p, const int *d_bad, cudaStream_t stream) {
  int bad = INT32_MAX;
  FKM_CUDA(cudaMemcpyAsync(&bad, d_bad, sizeof bad, cudaMemcpyDeviceToHost, stream));
  FKM_CUDA(cudaStreamSynchronize(stream));
  if (bad == INT32_MAX) return FKM_OK;
  int32_t label = 0;
  FKM_CUDA(cudaMemcpy(&label, p->labels_in + bad, sizeof label, cudaMemcpyDeviceToHost));
  return fkm_fail(FKM_ERR_INPUT, "label %d of point %lld (batch %lld) is outside [0, %lld)", label,
                  (long long)(bad % p->s.N), (long long)(bad / p->s.N), (long long)p->s.K);
}

} // namespace

#endif
