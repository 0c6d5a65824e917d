/* sort_inverse_common.cuh — the shared machinery of the sort-inverse centroid
 * update (Flash-KMeans' second kernel), used by update/sort_inverse (fast) and
 * update/sort_inverse_det (bitwise deterministic). Private to those two files:
 * everything lives in an anonymous namespace, so each includes its own copy.
 * Both variants are the same code (SiState, si_state_*) with one switch:
 * STABLE = true ranks rows inside a chunk in row order (det), false with
 * shared-memory atomics (fast).
 *
 * Segments. Problem b's cluster k is segment s = b*K + k of S = B*K; point n
 * of problem b is flat row i = b*N + n of M = B*N. Both must fit int32.
 *
 * Pipeline (all on one stream, no host sync), counting path (K + 1 <= 16384
 * fast, <= 8193 det; see "counting sort" below for the details):
 *   si_cs_count     per-chunk bin counts -> table; resets bad, scan state
 *   si_cs_scan      exclusive scan of the table in bin-major order
 *   si_cs_scatter   counts, segment starts, team segments, sidx
 *   sort_inverse_reduce     segment-level reduction over the sorted order
 *   sort_inverse_finish     combines runs that cross block boundaries, in a
 *                           fixed order, and copies c_old into empty clusters
 * Radix path (larger K):
 *   sort_inverse_init       counts[S] = 0, bad = INT32_MAX
 *   sort_inverse_histogram  counts[s] = |{i : seg(i) = s}| (integer atomics:
 *                           block-private shared-memory bins when a chunk's
 *                           segment span fits, else warp-aggregated global
 *                           atomics); records the first bad label; writes
 *                           the radix keys/values
 *   CUB stable radix sort on ceil(log2 S) bits, si_radix_starts (segment
 *                           starts, team segments from the sorted keys),
 *                           then reduce + finish.
 *
 * Bad labels. A label outside [0, K) never touches memory it should not and
 * counts nowhere: the counting sort puts it in its problem's extra bin K
 * (sorted to the end of the problem, row -1); the radix sort carries it with
 * key 0 and value -1. The reduce skips rows < 0. The first bad flat index is
 * atomicMin'ed into `bad` (reset every run by si_cs_count or the init kernel).
 *
 * History. v1 (fast) used init + histogram + CUB scan + a scatter with
 * per-(chunk, segment) global atomic cursors that wrote sidx and sseg at
 * scattered positions (sort ~65 us of 0.177 ms at 1M x 1024 on H100, the
 * scatter alone 48 us at 24 % occupancy); v1 det used the radix path always
 * (sort ~60 us). v2: the counting path above for both (3 launches instead of
 * 5-7, no global atomics for placement, one scattered 4-byte store per point,
 * sseg in position order, labels read twice). v3: no per-position segment
 * array (the reduce walks the segment starts from each team's first
 * segment), 1024-thread atomic scatter blocks.
 *
 * The reduce. The sorted order [0, M) is cut into nb equal block slices of
 * L rows (independent of cluster sizes); each block's slice is cut into
 * `teams` equal team ranges. A team is T = 2^log2T lanes of one warp; lane l
 * owns EPL elements of a D-tile of T*EPL elements (gridDim.y tiles cover D).
 * A team walks its range RU rows at a time: it loads the RU row indices of
 * the step, issues RU independent 16-byte (or EPL scalar) gathers of the rows,
 * finds the RU rows' segments by walking the segment starts from the team's
 * first segment (team_seg; a load only where a segment ends, and its latency
 * overlaps the gathers), then adds the rows into EPL fp32 registers in sorted
 * order, flushing the running sum when the segment changes (no warp-level sync: teams of a warp are
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
#include "pdl.cuh"
#include "phase.h"
#include "variant.h"

#include <cub/device/device_radix_sort.cuh>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

/* ------------------------------------------------------------------ tuning */
constexpr int SI_HT = 512;                 /* radix-path histogram block size */
constexpr int SI_HB = 4;                   /* labels loaded per thread per batch */
constexpr int SI_CHUNK_SMEM0 = 8192;       /* smallest chunk of the shared-bin path */
constexpr int SI_CHUNK_GLOBAL = SI_HT * 4; /* chunk of the global-atomic path */
constexpr int SI_MAX_BINS = 24576;         /* 96 KiB of shared bins at most */

constexpr int SI_RT = 320;        /* reduce block size (10 warps) */
constexpr int SI_RW = SI_RT / 32; /* warps per reduce block */
constexpr int SI_RU = 8;          /* rows per team step (loads in flight per lane) */
constexpr int SI_RMINB = 2;       /* reduce blocks per SM the register budget targets */
/* Registers: the 16-bit vector reduce needs 80-96 (8 rows x 16 B of gathers +
 * 8 fp32 sums per lane, the next step's row indices), so 2 blocks x 10 warps
 * per SM; 20 warps keep up to 80 KB of gathers in flight per SM, above the
 * ~25-50 KB HBM3 needs. SI_PREFETCH 1 (default) loads the next step's row
 * indices during the current one (1 x 8M x 8192 reduce 786 -> 771 us, H100);
 * 0 loads them at the step start, leaving their L2 latency to other warps. */
#ifndef SI_PREFETCH
#define SI_PREFETCH 1
#endif
/* SI_FORCE_RADIX 1 sends every shape down the radix path (to test it on the
 * small shapes of the GPU tests; no other use). */
#ifndef SI_FORCE_RADIX
#define SI_FORCE_RADIX 0
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

/* Radix path: seg_start[s] = the first sorted position whose key (segment)
 * is >= s, for s in [0, S) (empty segments start where the next one does),
 * and team_seg[i] = the key at position i * team_len. Thread q writes the
 * starts of the segments in (key[q - 1], key[q]] (q = M: the rest up to S -
 * 1), so each start is written once. */
__global__ void si_radix_starts(const unsigned *__restrict__ keys, int M, int S, int team_len,
                                int *__restrict__ seg_start, int *__restrict__ team_seg) {
  const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (q > M) return;
  const int lo = q == 0 ? -1 : (int)keys[q - 1];
  const int hi = q == M ? S - 1 : (int)keys[q];
  for (int s = lo + 1; s <= hi; s++) seg_start[s] = (int)q;
  if (q < M && q % team_len == 0) team_seg[q / team_len] = hi;
}

/* ------------------------------------------------- radix path: histogram */
struct SiHistParams {
  const int *labels;
  int M, N, K, S;
  int chunk;        /* flat rows per block */
  int *counts;      /* [S] histogram (the counts output) */
  int *bad;         /* first out-of-range flat index */
  unsigned *keys;   /* radix keys [M] (segment, 0 for bad labels) */
  int *vals;        /* radix values [M] (flat row, -1 for bad labels) */
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
 * and writes the radix keys. */
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

/* ------------------------------------------------ counting sort (K + 1 <= 16384)
 *
 * Chunks. Problem b's N rows are cut into P chunks of C rows (the last one
 * shorter); chunk j = b*P + p holds rows [b*N + p*C, b*N + min((p+1)*C, N)) and
 * never crosses a problem, so its labels fall in the KB = K + 1 bins of its
 * problem: bin k < K is cluster k, bin K collects the labels outside [0, K).
 *
 * Table. tab[j][v] (G = B*P rows of KB ints, row-major): after the count
 * kernel, the number of chunk j's rows in bin v; after the scan kernel, the
 * position in the sorted order of the first of them. The scan runs, per
 * problem, in bin-major / chunk-minor order starting at b*N, so the sorted
 * order is: problems in order, inside a problem bins in order (the bad-label
 * bin K last), inside a bin chunks in order, inside a chunk the scatter's
 * order. Every row of problem b lands in [b*N, (b+1)*N): no holes, and the
 * segment starts of problem b are row b*P of the table (chunk 0's offsets).
 *
 * Kernels:
 *   si_cs_count    one block per chunk: shared-memory bins (integer atomics),
 *                  then the KB counts to tab[j] (coalesced). Also resets the
 *                  scan's tile status and ticket and the `bad` index.
 *   si_cs_scan     single-pass exclusive scan of the table in bin-major order
 *                  with decoupled look-back; a tile is R whole bins x all P
 *                  chunks of one problem, read and written row-wise
 *                  (coalesced) and transposed in shared memory. Tiles take
 *                  their index from an atomic ticket, so a tile only waits on
 *                  tiles that have started; the first tile of a problem
 *                  starts from b*N and waits on nothing.
 *   si_cs_scatter  one block per chunk: (1) counts[b*K + k] and
 *                  seg_start[b*K + k] for a slice of the problem's clusters;
 *                  (2) team_seg[i] for the reduce teams whose first position
 *                  i * team_len falls in the chunk's slice [r0, r0 + n) of
 *                  the sorted order (binary search of the segment starts);
 *                  (3) sidx[pos] = row (-1 for a
 *                  bad label), pos = tab[j][bin] + rank of the row among the
 *                  chunk's rows of that bin. Also atomicMin's bad rows into
 *                  `bad`. The rank is
 *                    ATOMIC (fast): a shared-memory atomicAdd on the bin's
 *                      running position (one per warp when all 32 lanes share
 *                      the bin): order inside (chunk, bin) depends on timing.
 *                      Staged (when the chunk fits in shared memory beside
 *                      two rows of bins): the row goes first to its place in
 *                      the chunk's own sorted order in shared memory, and the
 *                      warps then write that order out position by position,
 *                      so the ~C/K rows of a (chunk, bin) run leave in one
 *                      coalesced store instead of C/K scattered 4-byte ones
 *                      (1 x 8M x 8192: 243 us of scatter at 28 % of DRAM
 *                      bandwidth, ~4 rows per run).
 *                      One pass over the labels, the first batch loaded
 *                      before the first barrier and the next batch always in
 *                      flight; up to K + 1 = 8193 the segment starts get a
 *                      second shared row so both rows load concurrently;
 *                    STABLE (det): each warp owns a contiguous sub-chunk and
 *                      16-bit counters [warp][bin]; pass 1 counts, a
 *                      per-bin scan over the warps turns counts into starts,
 *                      pass 2 ranks 32 rows at a time in row order: match_any
 *                      groups the lanes of a bin, the group takes the
 *                      leader's (lowest lane's) counter by shuffle, and every
 *                      lane of the group stores the same new value (idle
 *                      lanes use a dummy counter: no divergent branch, which
 *                      sm_80's ptxas otherwise spills convergence state
 *                      for); __syncwarp between steps. The rows of a segment
 *                      come out in increasing row order: the same order as a
 *                      stable radix sort.
 * Bad labels land in bin K, i.e. at the end of their problem, with sidx -1 and
 * segment b*K + K - 1 (they extend the problem's last run; the reduce skips
 * rows < 0 and the means divide by counts, which exclude them). */
constexpr int SI_CT = 512;              /* count / atomic scatter block size; stable scatter: at most */
/* Chunks of SI_CS_WIDE_C rows or more count and scatter in SI_CT_WIDE-thread
 * blocks: one such chunk's staged scatter fills an SM's shared memory and its
 * phases are latency-bound, so more warps hide more (8M x 8192 scatter 114-123
 * -> 89-95 us, H100); shorter chunks lose with them (1M x 128 x 64 +11 %, H200). */
constexpr int SI_CT_WIDE = 1024;
constexpr int SI_CS_WIDE_C = 16384;
constexpr int SI_CU = 8;                /* labels in flight per thread (count, atomic scatter) */
constexpr int SI_SU = 8;                /* 32-row steps in flight per warp (stable scatter) */
constexpr int SI_ST = 512;              /* scan block size */
constexpr int SI_STILE = 4096;          /* scan tile: target entries (8192: no faster at 8M x 8192, H100) */
constexpr int SI_STILE_MAX = 8192;      /* scan tile: at most (one bin of P <= 8192 chunks) */
constexpr int SI_CS_MAX_C = 65535;      /* rows per chunk: ranks and counters are 16-bit */
constexpr int SI_CS_MAX_P = SI_STILE_MAX;
constexpr int SI_CS_BINS_ATOMIC = 16384; /* K + 1 at most, fast (64 KiB of shared positions) */
constexpr int SI_CS_BINS_STABLE = 8193;  /* K + 1 at most, det (16-bit counters per warp) */
constexpr int SI_CS_MIN_WARPS = 4;       /* stable scatter: fewer warps per block -> radix */
constexpr int SI_CS_DUAL_BINS = 8193;    /* atomic scatter: 2 shared rows up to this K + 1 */
constexpr unsigned long long SI_FLAG_A = 1ull << 32; /* tile status: aggregate published */
constexpr unsigned long long SI_FLAG_P = 2ull << 32; /* tile status: inclusive prefix published */

struct SiCsParams {
  const int *labels;
  int N, K, KB, P, C; /* rows and clusters per problem; bins; chunks per problem; rows per chunk */
  int *tab;           /* [G][KB] counts, then sorted-order starts */
  unsigned long long *status; /* [ntiles] scan tile status: flag << 32 | value */
  int *ticket;        /* scan tile counter */
  int *bad;           /* first bad flat row, INT_MAX if none */
  int R, tpp, ntiles; /* scan: bins per tile, tiles per problem, tiles */
  int dual;           /* atomic scatter: segment starts in their own shared copy */
  int staged;         /* atomic scatter: ranks into shared memory, then writes runs (see si_cs_scatter) */
  int *sidx;          /* [M] sorted rows (-1: bad label) */
  int *seg_start;     /* [S + 1] first sorted position of every segment ([S] = M, set at setup) */
  int *team_seg;      /* [teams] segment at each reduce team's first position i * team_len */
  int team_len;       /* positions per reduce team (the reduce's geometry) */
  int *counts;        /* [S] */
};

/* Chunk j: problem b, index p in the problem, first flat row r0, n rows. */
__device__ __forceinline__ void si_cs_chunk(const SiCsParams &P, int j, int &b, int &p, int &r0, int &n) {
  b = j / P.P;
  p = j - b * P.P;
  const long long start = (long long)p * P.C;
  r0 = (int)((long long)b * P.N + start);
  n = (int)min((long long)P.C, (long long)P.N - start);
}

/* Bin of a label: itself if in [0, K), else K. */
__device__ __forceinline__ int si_cs_bin(int lab, int K) { return (unsigned)lab < (unsigned)K ? lab : K; }

/* Loads SI_CU labels of a chunk (offsets base + k*NT + tid < n; NT = blockDim.x). */
template <int NT> __device__ __forceinline__ void si_cs_load(const int *lab_p, int base, int n, int (&lab)[SI_CU]) {
#pragma unroll
  for (int k = 0; k < SI_CU; k++) {
    const int o = base + k * NT + (int)threadIdx.x;
    lab[k] = o < n ? __ldg(lab_p + o) : 0;
  }
}

template <int NT> __global__ void __launch_bounds__(NT) si_cs_count(const SiCsParams P) {
  extern __shared__ int si_bins[]; /* [KB] */
  const int tid = threadIdx.x, lane = tid & 31;
  int b, p, r0, n;
  si_cs_chunk(P, blockIdx.x, b, p, r0, n);
  const int *lab_p = P.labels + r0;
  int lab[SI_CU];
  si_cs_load<NT>(lab_p, 0, n, lab);
  for (long long t = (long long)blockIdx.x * NT + tid; t < P.ntiles; t += (long long)gridDim.x * NT)
    P.status[t] = 0ull;
  if (blockIdx.x == 0 && tid == 0) {
    *P.ticket = 0;
    *P.bad = INT_MAX;
  }
  for (int v = tid; v < P.KB; v += NT) si_bins[v] = 0;
  __syncthreads();
  for (int base = 0; base < n; base += NT * SI_CU) {
    int cur[SI_CU];
#pragma unroll
    for (int k = 0; k < SI_CU; k++) cur[k] = lab[k];
    if (base + NT * SI_CU < n) si_cs_load<NT>(lab_p, base + NT * SI_CU, n, lab); /* next batch in flight */
#pragma unroll
    for (int k = 0; k < SI_CU; k++) {
      const bool in = base + k * NT + tid < n;
      const int v = si_cs_bin(cur[k], P.K);
      const int v0 = __shfl_sync(SI_FULL, v, 0);
      if (__all_sync(SI_FULL, in && v == v0)) {
        if (lane == 0) atomicAdd(si_bins + v0, 32);
      } else if (in) {
        atomicAdd(si_bins + v, 1);
      }
    }
  }
  __syncthreads();
  int *row = P.tab + (size_t)blockIdx.x * P.KB;
  for (int v = tid; v < P.KB; v += NT) row[v] = si_bins[v];
}

__device__ __forceinline__ void si_st_relaxed(unsigned long long *p, unsigned long long v) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ unsigned long long si_ld_relaxed(const unsigned long long *p) {
  unsigned long long v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
/* Shared-memory slot of tile entry f (one pad word per 32: conflict-free for
 * power-of-two strides). */
__device__ __forceinline__ int si_pad(int f) { return f + (f >> 5); }

__global__ void __launch_bounds__(SI_ST) si_cs_scan(const SiCsParams P) {
  __shared__ int sm[SI_STILE_MAX + SI_STILE_MAX / 32];
  __shared__ int swarp[SI_ST / 32];
  __shared__ int s_tile, s_excl;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  fkm_pdl_wait();
  if (tid == 0) s_tile = atomicAdd(P.ticket, 1);
  __syncthreads();
  const int t = s_tile;
  const int b = t / P.tpp, r = t - b * P.tpp;
  const int v0 = r * P.R, nv = min(P.R, P.KB - v0), np = P.P, E = nv * np;
  int *tab0 = P.tab + (size_t)b * np * P.KB + v0; /* entry (chunk pp, bin v0 + dv) at pp*KB + dv */

  /* Load row-wise (consecutive threads: consecutive bins of one chunk), store
   * bin-major: slot f = dv*np + pp. */
  for (int e = tid; e < E; e += SI_ST) {
    const int pp = e / nv, dv = e - pp * nv;
    sm[si_pad(dv * np + pp)] = tab0[(size_t)pp * P.KB + dv];
  }
  __syncthreads();

  /* Each thread owns a contiguous run [f0, f1) of the bin-major order. */
  const int ipt = (E + SI_ST - 1) / SI_ST;
  const int f0 = min(tid * ipt, E), f1 = min(f0 + ipt, E);
  int sum = 0;
  for (int f = f0; f < f1; f++) sum += sm[si_pad(f)];
  int incl = sum;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(SI_FULL, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) swarp[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int x = lane < SI_ST / 32 ? swarp[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(SI_FULL, x, o);
      if (lane >= o) x += y;
    }
    if (lane < SI_ST / 32) swarp[lane] = x;
  }
  __syncthreads();
  const int agg = swarp[SI_ST / 32 - 1];
  const int excl_t = (warp ? swarp[warp - 1] : 0) + incl - sum;

  /* Look-back (warp 0): 32 predecessors per round, nearest first (lane l
   * reads tile k - l). A round ends at the nearest inclusive prefix (P) if
   * every tile up to it has published; else, if all 32 published aggregates
   * (A), they are added and the window moves back. Tile 0 of a problem is P
   * from the start, so the walk ends there at the latest. */
  if (warp == 0) {
    unsigned long long *st = P.status + (size_t)b * P.tpp;
    long long excl = 0;
    if (r == 0) {
      excl = (long long)b * P.N;
    } else {
      if (lane == 0) si_st_relaxed(st + r, SI_FLAG_A | (unsigned long long)(unsigned)agg);
      int k = r - 1;
      for (;;) {
        const int kk = k - lane;
        const unsigned long long w = kk >= 0 ? si_ld_relaxed(st + kk) : SI_FLAG_P; /* kk < 0: never needed */
        const unsigned long long f = w & ~0xffffffffull;
        const unsigned pm = __ballot_sync(SI_FULL, f == SI_FLAG_P);
        const unsigned zm = __ballot_sync(SI_FULL, f == 0);
        const int last = pm ? __ffs(pm) - 1 : 31; /* lanes 0..last matter */
        const unsigned need = last == 31 ? SI_FULL : (2u << last) - 1u;
        if (zm & need) { /* a tile in the window has not published yet */
          __nanosleep(32);
          continue;
        }
        long long x = lane <= last ? (long long)(unsigned)(w & 0xffffffffull) : 0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(SI_FULL, x, o);
        excl += x;
        if (pm) break;
        k -= 32;
      }
    }
    if (lane == 0) {
      si_st_relaxed(st + r, SI_FLAG_P | (unsigned long long)(unsigned)(excl + agg));
      s_excl = (int)excl;
    }
  }
  __syncthreads();

  int run = s_excl + excl_t;
  for (int f = f0; f < f1; f++) {
    const int x = sm[si_pad(f)];
    sm[si_pad(f)] = run;
    run += x;
  }
  __syncthreads();
  for (int e = tid; e < E; e += SI_ST) {
    const int pp = e / nv, dv = e - pp * nv;
    tab0[(size_t)pp * P.KB + dv] = sm[si_pad(dv * np + pp)];
  }
}

/* Segment at every reduce team's first position (team i starts at i *
 * team_len) that lies in this chunk's slice [r0, r0 + n) of the sorted order,
 * which is inside problem b (segment starts st[0..K], st[0] = b*N): the
 * largest v in [0, K] with st[v] <= q, as b*K + min(v, K - 1) (bin K, the bad
 * labels, extends the problem's last segment). A few per chunk: the reduce
 * walks the segment starts from there, so no per-position segment array. */
__device__ __forceinline__ void si_cs_team_segs(const SiCsParams &P, const int *st, int segb, int r0, int n) {
  const long long tl = P.team_len;
  const int i0 = (int)((r0 + tl - 1) / tl), i1 = (int)((r0 + (long long)n + tl - 1) / tl);
  for (int i = i0 + (int)threadIdx.x; i < i1; i += (int)blockDim.x) {
    const int q = (int)(i * tl);
    int lo = 0, hi = P.K;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (st[mid] <= q) lo = mid;
      else hi = mid - 1;
    }
    P.team_seg[i] = segb + min(lo, P.K - 1);
  }
}

/* counts[b*K + k] and seg_start[b*K + k] for this chunk's share [k0, k1) of
 * problem b's clusters (segment starts st[0..K]). */
__device__ __forceinline__ void si_cs_counts(const SiCsParams &P, const int *st, int segb, int k0, int k1) {
  for (int k = k0 + (int)threadIdx.x; k < k1; k += (int)blockDim.x) {
    const int a = st[k];
    P.counts[segb + k] = st[k + 1] - a;
    P.seg_start[segb + k] = a;
  }
}

/* STABLE ranking: the lanes whose rows share bin v (match mask m) take the next
 * __popc(m) slots of the warp's 16-bit counter cnt[v]; returns the group's first slot.
 * Only the group's leader reads and writes the counter (the others get its read by a
 * shuffle), so no two lanes touch it unordered; groups of other bins touch others. */
__device__ __forceinline__ int si_group_bump(unsigned short *cnt, int v, int lane, unsigned m) {
  const int leader = __ffs(m) - 1;
  int first = 0;
  if (lane == leader) first = cnt[v];
  first = __shfl_sync(SI_FULL, first, leader);
  if (lane == leader) cnt[v] = (unsigned short)(first + __popc(m));
  __syncwarp();
  return first;
}

/* ATOMIC rank of one row (label lab, bin v = si_cs_bin(lab, K)): the next
 * slot of the bin's running counter ctr[v] in shared memory. When the warp's
 * 32 rows all exist and share one bin, lane 0 takes 32 slots with one atomic
 * and lane l gets the l-th; a row that does not exist (!in) takes no slot and
 * gets 0. The direct and the staged scatter differ only in where they store
 * the row at its slot.
 * Two details keep the kernel's SASS what it was with this code inline: ctr
 * goes through its shared-window address, so the compiler knows it is shared
 * memory before inlining (a plain pointer cost si_cs_scatter<false> a 36-byte
 * spill on sm_90a); and it takes the label, not the bin (a bin parameter
 * swapped the operands of one compare per row). */
__device__ __forceinline__ int si_cs_atomic_rank(int *ctr, int lab, int K, bool in, int lane) {
  ctr = (int *)__cvta_shared_to_generic(__cvta_generic_to_shared(ctr));
  const int v = si_cs_bin(lab, K);
  const int v0 = __shfl_sync(SI_FULL, v, 0);
  int pos = 0;
  if (__all_sync(SI_FULL, in && v == v0)) {
    if (lane == 0) pos = atomicAdd(ctr + v0, 32);
    pos = __shfl_sync(SI_FULL, pos, 0) + lane;
  } else if (in) {
    pos = atomicAdd(ctr + v, 1);
  }
  return pos;
}

/* ATOMIC scatter's pass over a chunk's n rows (the first batch of labels
 * already in lab, each next batch in flight during the current one): ranks
 * every row on the running counters ctr (si_cs_atomic_rank) and hands its
 * offset o in the chunk, bin v and slot pos to store (the staged and the
 * direct scatter differ only there). Returns the smallest bad flat row seen. */
template <int NT, typename Store>
__device__ __forceinline__ int si_cs_rank_chunk(const int *lab_p, int n, int r0, int K, int *ctr, int (&lab)[SI_CU],
                                                Store &&store) {
  const int tid = threadIdx.x, lane = tid & 31;
  int mybad = INT_MAX;
  for (int base = 0; base < n; base += NT * SI_CU) {
    int cur[SI_CU];
#pragma unroll
    for (int k = 0; k < SI_CU; k++) cur[k] = lab[k];
    if (base + NT * SI_CU < n) si_cs_load<NT>(lab_p, base + NT * SI_CU, n, lab);
#pragma unroll
    for (int k = 0; k < SI_CU; k++) {
      const int o = base + k * NT + tid;
      const bool in = o < n;
      const int v = si_cs_bin(cur[k], K);
      if (in && v == K) mybad = min(mybad, r0 + o);
      const int pos = si_cs_atomic_rank(ctr, cur[k], K, in, lane);
      if (in) store(o, v, pos);
    }
  }
  return mybad;
}

/* ATOMIC: blockDim = NT (SI_CT, or SI_CT_WIDE for long chunks); dynamic shared memory 4*KB bytes, or 8*KB when
 * P.dual (the segment starts get their own copy, so all global loads are
 * issued before the first barrier), or 4*(2*KB + 1 + C) when P.staged. STABLE: blockDim = 32 * W (W <= 16),
 * 4*KB + 2*W*KBs bytes (KBs = KB + 1 rounded up to even: a dummy counter
 * for idle lanes), NT = SI_CT. */
template <bool STABLE, int NT>
__global__ void __launch_bounds__(NT) si_cs_scatter(const SiCsParams P) {
  extern __shared__ int si_bins[];
  fkm_pdl_wait();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int T = blockDim.x, nwarp = T >> 5;
  const int j = blockIdx.x;
  int b, p, r0, n;
  si_cs_chunk(P, j, b, p, r0, n);
  const int K = P.K, KB = P.KB, KBs = (KB + 2) & ~1; /* STABLE: counters per warp (+ a dummy) */
  const int segb = b * K;
  const int *row0 = P.tab + (size_t)b * P.P * KB; /* segment starts of problem b (chunk b*P) */
  const int *rowj = P.tab + (size_t)j * KB;       /* this chunk's first position per bin */
  const int *lab_p = P.labels + r0;
  int *srow = si_bins; /* [KB] this chunk's running positions (once loaded) */
  int mybad = INT_MAX;
  const int k0 = (int)((long long)p * K / P.P), k1 = (int)((long long)(p + 1) * K / P.P);

  if (!STABLE && P.staged) {
    /* Shared memory: A[KB + 1] (the segment starts of problem b; then, per bin,
     * shift[v] = local start - global start of this chunk's run), srow[KB]
     * (the runs' running global positions), stage[C] (in local sorted order,
     * bin << 16 | the row's offset in the chunk: both < 65536, see si_cs_config). */
    int *A = si_bins, *srow_s = si_bins + KB + 1, *stage = srow_s + KB;
    __shared__ int warp_sum[NT / 32];
    int lab[SI_CU];
    si_cs_load<NT>(lab_p, 0, n, lab);
    for (int v = tid; v < KB; v += T) {
      A[v] = __ldg(row0 + v);
      srow_s[v] = __ldg(rowj + v);
    }
    __syncthreads();
    si_cs_counts(P, A, segb, k0, k1);
    si_cs_team_segs(P, A, segb, r0, n);
    __syncthreads();
    /* The run of bin v ends where chunk j + 1's starts, or (last chunk) where
     * bin v + 1's first run starts: A[v] <- this chunk's count in bin v. */
    const bool last_chunk = p + 1 == P.P;
    for (int v = tid; v < KB; v += T) {
      const int end = !last_chunk ? __ldg(rowj + KB + v) : (v < K ? __ldg(row0 + v + 1) : (b + 1) * P.N);
      A[v] = end - srow_s[v];
    }
    __syncthreads();
    { /* exclusive scan of the counts: each thread a contiguous piece, then the warps */
      const int per_t = (KB + T - 1) / T, v0 = min(tid * per_t, KB), v1 = min(v0 + per_t, KB);
      int sum = 0;
      for (int v = v0; v < v1; v++) sum += A[v];
      int inc = sum;
      for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(SI_FULL, inc, o);
        if (lane >= o) inc += u;
      }
      if (lane == 31) warp_sum[warp] = inc;
      __syncthreads();
      int before = inc - sum;
      for (int w = 0; w < warp; w++) before += warp_sum[w];
      for (int v = v0; v < v1; v++) {
        const int c = A[v];
        A[v] = before - srow_s[v]; /* shift[v] = local start - global start */
        before += c;
      }
    }
    __syncthreads();
    mybad = si_cs_rank_chunk<NT>(lab_p, n, r0, K, srow_s, lab,
                                 [&](int o, int v, int pos) { stage[pos + A[v]] = v << 16 | o; });
    __syncthreads();
    /* Write out in local order: local l of bin v is global l - shift[v]; the
     * ~C/K rows of a run are adjacent lanes of one store. */
    for (int l = tid; l < n; l += T) {
      const int w = stage[l], v = w >> 16;
      P.sidx[l - A[v]] = v < K ? r0 + (w & 0xffff) : -1;
    }
  } else if (!STABLE) {
    int lab[SI_CU];
    si_cs_load<NT>(lab_p, 0, n, lab);
    int *sst = P.dual ? si_bins + KB : si_bins; /* segment starts */
    for (int v = tid; v < KB; v += T) sst[v] = __ldg(row0 + v);
    if (P.dual)
      for (int v = tid; v < KB; v += T) srow[v] = __ldg(rowj + v);
    __syncthreads();
    si_cs_counts(P, sst, segb, k0, k1);
    si_cs_team_segs(P, sst, segb, r0, n);
    if (!P.dual) {
      __syncthreads();
      for (int v = tid; v < KB; v += T) srow[v] = __ldg(rowj + v);
      __syncthreads();
    }
    mybad = si_cs_rank_chunk<NT>(lab_p, n, r0, K, srow, lab,
                                 [&](int o, int v, int pos) { P.sidx[pos] = v < K ? r0 + o : -1; });
  } else {
    unsigned short *wc = reinterpret_cast<unsigned short *>(si_bins + KB); /* [nwarp][KBs] */
    for (int v = tid; v < KB; v += T) srow[v] = __ldg(row0 + v);
    {
      int *wz = reinterpret_cast<int *>(wc);
      for (int i = tid; i < nwarp * (KBs >> 1); i += T) wz[i] = 0;
    }
    __syncthreads();
    si_cs_counts(P, srow, segb, k0, k1);
    si_cs_team_segs(P, srow, segb, r0, n);
    __syncthreads();
    /* This chunk's positions: only pass 2 reads them (the barrier after pass 1
     * publishes them), so their latency overlaps pass 1. */
    if (p != 0)
      for (int v = tid; v < KB; v += T) srow[v] = __ldg(rowj + v);

    const int Sw = ((n + nwarp - 1) / nwarp + 31) & ~31;
    const int w0 = min(warp * Sw, n), w1 = min(w0 + Sw, n);
    unsigned short *my = wc + warp * KBs;
    const unsigned lt = (1u << lane) - 1u;
    /* Pass 1: this warp's count per bin. */
    for (int base = w0; base < w1; base += 32 * SI_SU) {
      int lab[SI_SU];
#pragma unroll
      for (int u = 0; u < SI_SU; u++) {
        const int o = base + u * 32 + lane;
        lab[u] = o < w1 ? __ldg(lab_p + o) : 0;
      }
#pragma unroll
      for (int u = 0; u < SI_SU; u++) {
        const bool in = base + u * 32 + lane < w1;
        const int v = in ? si_cs_bin(lab[u], K) : KB; /* KB: dummy counter of idle lanes */
        si_group_bump(my, v, lane, __match_any_sync(SI_FULL, v));
      }
    }
    __syncthreads();
    /* Counts -> starts: warp w's first rank in bin v = rows of v in warps < w. */
    for (int v = tid; v < KB; v += T) {
      unsigned run = 0;
      for (int w = 0; w < nwarp; w++) {
        const unsigned c = wc[w * KBs + v];
        wc[w * KBs + v] = (unsigned short)run;
        run += c;
      }
    }
    __syncthreads();
    /* Pass 2: ranks in row order. */
    for (int base = w0; base < w1; base += 32 * SI_SU) {
      int lab[SI_SU];
#pragma unroll
      for (int u = 0; u < SI_SU; u++) {
        const int o = base + u * 32 + lane;
        lab[u] = o < w1 ? __ldg(lab_p + o) : 0;
      }
#pragma unroll
      for (int u = 0; u < SI_SU; u++) {
        const int o = base + u * 32 + lane;
        const bool in = o < w1;
        const int v = in ? si_cs_bin(lab[u], K) : KB;
        const unsigned m = __match_any_sync(SI_FULL, v);
        const int rank = si_group_bump(my, v, lane, m);
        if (in) P.sidx[srow[v] + rank + __popc(m & lt)] = v < K ? r0 + o : -1;
        mybad = (in && v == K) ? min(mybad, r0 + o) : mybad;
      }
    }
  }
  if (mybad != INT_MAX) atomicMin(P.bad, mybad);
}

/* ------------------------------------------------------------------ reduce */
struct SiReduceParams {
  const void *x;
  const int *idx;     /* sorted rows (-1: bad label, skipped) */
  const int *seg_start; /* [S + 1] first sorted position of each segment, [S] = M */
  const int *team_seg;  /* [teams] segment at team i's first position i * team_len */
  const int *counts;
  float *c_new;
  float *part;        /* [nb][2][D] block pieces: 0 = H, 1 = T */
  int *tseg;          /* [nb] segment of block j's T piece, -1 if none */
  int *chain_end;     /* [S] block where a cross-block chain ends */
  int M, D, L, team_len, log2T;
};

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

  const int m_eff = P.M; /* both sorts fill all M positions */
  const long long p0l = (long long)j * P.L;
  const int p0 = (int)min(p0l, (long long)m_eff);
  const int p1 = (int)min(p0l + P.L, (long long)m_eff);
  const int a = (int)min((long long)p0 + (long long)team * P.team_len, (long long)p1);
  const int b = (int)min((long long)a + P.team_len, (long long)p1);

  fkm_pdl_wait();
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
    /* Segments by walking the segment starts from the team's first segment
     * (no per-position segment array): walk is the segment of the last
     * position looked at, nxt = seg_start[walk + 1] where it ends. */
    int walk = __ldg(P.team_seg + (j * teams + team)); /* a = (j * teams + team) * team_len */
    /* hopen: the current run is the range's first and began before it (an H
     * piece); cleared at the first flush. */
    bool hopen = __ldg(P.seg_start + walk) < a;
    int nxt = __ldg(P.seg_start + walk + 1);

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
        const bool lv = u < nin && nid[u] >= 0; /* -1 marks a bad label */
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
#pragma unroll
      for (int u = 0; u < SI_RU; u++) {
        const int q = min(r + u, b - 1); /* < M = seg_start[S]: the walk stays below S */
        while (nxt <= q) nxt = __ldg(P.seg_start + (++walk) + 1);
        sg[u] = walk;
      }
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
    /* The range's last run (walk = cur, the segment of b - 1). */
    const bool tail_open = b < m_eff && nxt > b;
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
  fkm_pdl_wait();
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

#ifndef SI_PDL
#define SI_PDL 1 /* 0: no programmatic dependent launch (pdl.cuh; for A/B runs) */
#endif
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
                                   int *chain_end, bool pdl, cudaStream_t stream) {
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
#define SI_LAUNCH(DT, V) fkm_launch(sort_inverse_reduce<DT, V>, grid, dim3(SI_RT), c->smem, stream, pdl, rp)
  if (dt == 0) FKM_TRY(c->vec ? SI_LAUNCH(0, true) : SI_LAUNCH(0, false));
  else if (dt == 1) FKM_TRY(c->vec ? SI_LAUNCH(1, true) : SI_LAUNCH(1, false));
  else FKM_TRY(c->vec ? SI_LAUNCH(2, true) : SI_LAUNCH(2, false));
#undef SI_LAUNCH

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
  return fkm_launch(sort_inverse_finish, dim3((unsigned)fgrid), dim3(SI_FT), 0, stream, pdl, fp);
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

/* ------------------------------------------------ counting sort: host side */
struct SiCsCfg {
  int KB, C, P, G;
  int threads;      /* scatter block size */
  int wide;         /* count and atomic scatter in SI_CT_WIDE-thread blocks */
  int dual;         /* atomic scatter: two shared rows (see si_cs_scatter) */
  int staged;       /* atomic scatter: the chunk's sorted order staged in shared memory */
  int R, tpp, ntiles;
  size_t smem_count, smem_scatter;
  size_t tab_entries;
};

/* Geometry of the counting sort, or false when the shape needs the radix path
 * (K + 1 above the bin limit, too few warps' counters in shared memory, or
 * N > 8192 * 65535). Chunks: about 4 rows per bin (zeroing and writing a
 * chunk's bins then costs ~1/4 of its rows), more chunks (down to 1 row per
 * bin) until there are 2 per SM, at most 8192 chunks per problem (one scan
 * tile per bin) and 65535 rows per chunk (16-bit ranks). Depends only on the
 * shape and the device (the det variant relies on that). */
static bool si_cs_config(const fkm_shape *s, bool stable, int sms, int smem_optin, SiCsCfg *c) {
  const long long B = s->B, N = s->N, K = s->K, KB = K + 1;
  if (KB > (stable ? SI_CS_BINS_STABLE : SI_CS_BINS_ATOMIC)) return false;
  const long long cmin = KB > 1024 ? KB : 1024, cpref = 4 * KB > 2048 ? 4 * KB : 2048;
  long long P = si_cdiv(N, cpref);
  if (B * P < 2LL * sms) {
    long long want = si_cdiv(2LL * sms, B), pmax = si_cdiv(N, cmin);
    if (want > pmax) want = pmax;
    if (want > P) P = want;
  }
  if (P > SI_CS_MAX_P) P = SI_CS_MAX_P; /* huge N, few bins: longer chunks */
  if (P < si_cdiv(N, SI_CS_MAX_C)) P = si_cdiv(N, SI_CS_MAX_C);
  const long long C = si_cdiv(N, P);
  P = si_cdiv(N, C);
  if (C > SI_CS_MAX_C || P > SI_CS_MAX_P) return false;
  const long long G = B * P;
  if (G > INT_MAX) return false;
  c->KB = (int)KB;
  c->C = (int)C;
  c->P = (int)P;
  c->G = (int)G;
  c->tab_entries = (size_t)G * (size_t)KB;
  c->smem_count = (size_t)KB * sizeof(int);
  if (stable) {
    /* Warps per scatter block: as many as fit (<= 16), each 2*KBs bytes. */
    const long long KBs = (KB + 2) & ~1LL;
    long long w = ((long long)smem_optin - 4 * KB) / (2 * KBs);
    if (w > SI_CT / 32) w = SI_CT / 32;
    if (w < SI_CS_MIN_WARPS) return false;
    c->threads = (int)(32 * w);
    c->wide = 0;
    c->dual = 0;
    c->smem_scatter = (size_t)(4 * KB + 2 * w * KBs);
  } else {
    c->wide = C >= SI_CS_WIDE_C ? 1 : 0;
    c->threads = c->wide ? SI_CT_WIDE : SI_CT;
    c->dual = KB <= SI_CS_DUAL_BINS ? 1 : 0;
    c->smem_scatter = (size_t)KB * sizeof(int) * (c->dual ? 2 : 1);
    /* Staged when the chunk's rows fit beside two rows of bins. */
    const size_t staged_bytes = sizeof(int) * (size_t)(2 * KB + 1 + C);
    c->staged = staged_bytes + 256 <= (size_t)smem_optin ? 1 : 0; /* + the kernel's static warp sums */
    if (c->staged) {
      c->dual = 1;
      c->smem_scatter = staged_bytes;
    }
  }
  if (c->smem_count > (size_t)smem_optin || c->smem_scatter > (size_t)smem_optin) return false;
  long long R = SI_STILE / P;
  if (R < 1) R = 1;
  if (R > KB) R = KB;
  const long long tpp = si_cdiv(KB, R);
  if (B * tpp > INT_MAX) return false;
  c->R = (int)R;
  c->tpp = (int)tpp;
  c->ntiles = (int)(B * tpp);
  return true;
}

/* ------------------------------------------------ the two variants' state */
struct SiState {
  const char *name;
  fkm_shape s;
  int M, S, sms;
  bool pdl;         /* programmatic dependent launch of every kernel after a run's first (sm_90+) */
  bool cs;          /* counting sort (else CUB radix) */
  SiCsCfg cc;
  SiHistCfg hc;     /* radix path: histogram geometry */
  int end_bit;      /* radix path: key bits */
  SiRedCfg rc_vec, rc_scalar;
  void *base;
  int *bad;         /* [1] first bad flat index, INT32_MAX if none */
  /* counting path */
  int *tab;         /* [G][KB] */
  unsigned long long *status; /* [ntiles] */
  int *ticket;      /* [1] */
  int *sidx;        /* [M + pad] sorted rows */
  /* radix path */
  unsigned *keys[2];
  int *vals[2];
  void *cub_temp;
  size_t cub_bytes;
  /* reduce */
  int *seg_start;   /* [S + 1] segment starts in the sorted order, [S] = M */
  int *team_seg;    /* [reduce teams] segment at each team's first position */
  float *part;      /* [nb][2][D] */
  int *tseg;        /* [nb] */
  int *chain_end;   /* [S] */
};

static void si_state_free(SiState *st) {
  if (!st) return;
  if (st->base) cudaFree(st->base);
  free(st);
}

template <bool STABLE> static fkm_status si_state_init(const fkm_problem *p, SiState *st) {
  const fkm_shape *s = &p->s;
  char why[256];
  if (si_supports(s, NULL, why, sizeof why) != FKM_OK) return fkm_fail(FKM_ERR_NOT_SUPPORTED, "%s: %s", st->name, why);
  st->s = *s;
  st->M = (int)(s->B * s->N);
  st->S = (int)(s->B * s->K);
  if (si_sm_count(&st->sms) != 0 || st->sms < 1) st->sms = 132;
  int smem_optin = 0, dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      smem_optin < 48 * 1024)
    smem_optin = 48 * 1024;
  st->pdl = SI_PDL && fkm_pdl_supported();

  st->cs = !SI_FORCE_RADIX && si_cs_config(s, STABLE, st->sms, smem_optin, &st->cc);
  FKM_TRY(si_reduce_config(s, false, st->sms, &st->rc_scalar));
  int nb = st->rc_scalar.nb;
  st->rc_vec.ok = false;
  if (si_vec_shape_ok(s)) {
    FKM_TRY(si_reduce_config(s, true, st->sms, &st->rc_vec));
    if (st->rc_vec.nb > nb) nb = st->rc_vec.nb;
  }

  const size_t n_sorted = (size_t)si_cdiv(st->M, SI_RU) * SI_RU + SI_PAD;
  const size_t sz_bad = si_align(sizeof(int));
  const size_t sz_part = si_align(sizeof(float) * (size_t)nb * 2 * (size_t)s->D);
  const size_t sz_tseg = si_align(sizeof(int) * (size_t)nb);
  const size_t sz_chain = si_align(sizeof(int) * (size_t)st->S);
  const size_t sz_starts = si_align(sizeof(int) * ((size_t)st->S + 1));
  long long teams = (long long)st->rc_scalar.nb * st->rc_scalar.teams;
  if (st->rc_vec.ok && (long long)st->rc_vec.nb * st->rc_vec.teams > teams)
    teams = (long long)st->rc_vec.nb * st->rc_vec.teams;
  const size_t sz_team = si_align(sizeof(int) * (size_t)teams);
  size_t sz_tab = 0, sz_status = 0, sz_ticket = 0, sz_sorted = 0, sz_keys = 0, sz_cub = 0;
  if (st->cs) {
    sz_tab = si_align(sizeof(int) * st->cc.tab_entries);
    sz_status = si_align(sizeof(unsigned long long) * (size_t)st->cc.ntiles);
    sz_ticket = si_align(sizeof(int));
    sz_sorted = si_align(sizeof(int) * n_sorted);
  } else {
    st->hc = si_hist_config(st->M, s->N, s->K, st->S, st->sms);
    st->end_bit = si_log2_ceil(st->S);
    if (st->end_bit < 1) st->end_bit = 1;
    cub::DoubleBuffer<unsigned> dk(NULL, NULL);
    cub::DoubleBuffer<int> dv(NULL, NULL);
    st->cub_bytes = 0;
    FKM_CUDA(cub::DeviceRadixSort::SortPairs(NULL, st->cub_bytes, dk, dv, st->M, 0, st->end_bit));
    sz_keys = si_align(sizeof(int) * n_sorted);
    sz_cub = si_align(st->cub_bytes ? st->cub_bytes : 1);
  }
  const size_t total = sz_bad + sz_tab + sz_status + sz_ticket + sz_sorted + sz_starts + sz_team + 4 * sz_keys +
                       sz_cub + sz_part + sz_tseg + sz_chain;
  if (p->scratch_budget && total > p->scratch_budget)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "%s needs %zu bytes of scratch, budget is %zu", st->name, total,
                    p->scratch_budget);
  FKM_CUDA(cudaMalloc(&st->base, total));
  char *q = (char *)st->base;
  st->bad = (int *)q; q += sz_bad;
  if (st->cs) {
    st->tab = (int *)q; q += sz_tab;
    st->status = (unsigned long long *)q; q += sz_status;
    st->ticket = (int *)q; q += sz_ticket;
    st->sidx = (int *)q; q += sz_sorted;
  } else {
    st->keys[0] = (unsigned *)q; q += sz_keys;
    st->keys[1] = (unsigned *)q; q += sz_keys;
    st->vals[0] = (int *)q; q += sz_keys;
    st->vals[1] = (int *)q; q += sz_keys;
    st->cub_temp = (void *)q; q += sz_cub;
  }
  st->seg_start = (int *)q; q += sz_starts;
  st->team_seg = (int *)q; q += sz_team;
  st->part = (float *)q; q += sz_part;
  st->tseg = (int *)q; q += sz_tseg;
  st->chain_end = (int *)q; q += sz_chain;

  { /* the reduce's walk stops at seg_start[S] = M, never written by a run */
    const int M = st->M;
    FKM_CUDA(cudaMemcpy(st->seg_start + st->S, &M, sizeof M, cudaMemcpyHostToDevice));
  }
  if (st->cs) {
    constexpr int WIDE = STABLE ? SI_CT : SI_CT_WIDE; /* the stable scatter is never wide */
    if (st->cc.wide) {
      FKM_TRY(si_allow_smem(si_cs_count<WIDE>, st->cc.smem_count));
      FKM_TRY(si_allow_smem(si_cs_scatter<STABLE, WIDE>, st->cc.smem_scatter));
    } else {
      FKM_TRY(si_allow_smem(si_cs_count<SI_CT>, st->cc.smem_count));
      FKM_TRY(si_allow_smem(si_cs_scatter<STABLE, SI_CT>, st->cc.smem_scatter));
    }
  } else if (st->hc.smem) {
    FKM_TRY(si_allow_smem(sort_inverse_histogram<true, true>, st->hc.smem_bytes));
  }
  return FKM_OK;
}

template <bool STABLE> static fkm_status si_state_setup(const fkm_problem *p, void **state, const char *name) {
  *state = NULL;
  SiState *st = (SiState *)calloc(1, sizeof(SiState));
  if (!st) return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate its state", name);
  st->name = name;
  fkm_status r = si_state_init<STABLE>(p, st);
  if (r != FKM_OK) {
    si_state_free(st);
    return r;
  }
  *state = st;
  return FKM_OK;
}

/* Phase 0: the inverse mapping (rows of each cluster, contiguous) and counts. */
template <bool STABLE> static fkm_status si_state_sort(const fkm_problem *p, SiState *st, const SiRedCfg *rc,
                                                       cudaStream_t stream, SiReduceParams *rp) {
  const fkm_shape *s = &p->s;
  const int S = st->S;
  if (st->cs) {
    const SiCsCfg &c = st->cc;
    SiCsParams cp;
    cp.labels = p->labels_in;
    cp.N = (int)s->N;
    cp.K = (int)s->K;
    cp.KB = c.KB;
    cp.P = c.P;
    cp.C = c.C;
    cp.tab = st->tab;
    cp.status = st->status;
    cp.ticket = st->ticket;
    cp.bad = st->bad;
    cp.R = c.R;
    cp.tpp = c.tpp;
    cp.ntiles = c.ntiles;
    cp.dual = c.dual;
    cp.staged = c.staged;
    cp.sidx = st->sidx;
    cp.seg_start = st->seg_start;
    cp.team_seg = st->team_seg;
    cp.team_len = rc->team_len;
    cp.counts = p->counts;
    constexpr int WIDE = STABLE ? SI_CT : SI_CT_WIDE; /* the stable scatter is never wide */
    if (c.wide) si_cs_count<WIDE><<<(unsigned)c.G, WIDE, c.smem_count, stream>>>(cp);
    else si_cs_count<SI_CT><<<(unsigned)c.G, SI_CT, c.smem_count, stream>>>(cp);
    FKM_CUDA_LAUNCH();
    FKM_TRY(fkm_launch(si_cs_scan, dim3((unsigned)c.ntiles), dim3(SI_ST), 0, stream, st->pdl, cp));
    FKM_TRY(fkm_launch(c.wide ? si_cs_scatter<STABLE, WIDE> : si_cs_scatter<STABLE, SI_CT>, dim3((unsigned)c.G),
                      dim3((unsigned)c.threads), c.smem_scatter, stream, st->pdl, cp));
    rp->idx = st->sidx;
    rp->seg_start = st->seg_start;
    rp->team_seg = st->team_seg;
    return FKM_OK;
  }
  {
    long long g = si_cdiv(S, 256);
    if (g > 4096) g = 4096;
    sort_inverse_init<<<(unsigned)g, 256, 0, stream>>>(p->counts, S, NULL, st->bad);
    FKM_CUDA_LAUNCH();
  }
  SiHistParams hp;
  hp.labels = p->labels_in;
  hp.M = st->M;
  hp.N = (int)s->N;
  hp.K = (int)s->K;
  hp.S = S;
  hp.chunk = st->hc.chunk;
  hp.counts = p->counts;
  hp.bad = st->bad;
  hp.keys = st->keys[0];
  hp.vals = st->vals[0];
  if (st->hc.smem) sort_inverse_histogram<true, true><<<st->hc.grid, SI_HT, st->hc.smem_bytes, stream>>>(hp);
  else sort_inverse_histogram<false, true><<<st->hc.grid, SI_HT, 0, stream>>>(hp);
  FKM_CUDA_LAUNCH();
  /* Fresh double buffers every run: the sorted data always lands in the same
   * buffer (the pass count depends on end_bit only). */
  cub::DoubleBuffer<unsigned> dk(st->keys[0], st->keys[1]);
  cub::DoubleBuffer<int> dv(st->vals[0], st->vals[1]);
  size_t bytes = st->cub_bytes;
  FKM_CUDA(cub::DeviceRadixSort::SortPairs(st->cub_temp, bytes, dk, dv, st->M, 0, st->end_bit, stream));
  si_radix_starts<<<(unsigned)si_cdiv((long long)st->M + 1, 256), 256, 0, stream>>>(
      dk.Current(), st->M, S, rc->team_len, st->seg_start, st->team_seg);
  FKM_CUDA_LAUNCH();
  rp->idx = dv.Current();
  rp->seg_start = st->seg_start;
  rp->team_seg = st->team_seg;
  return FKM_OK;
}

/* Two phases, each an NVTX range (and an event when the runner times phases):
 * "sort" and "reduce" (segment sums over the sorted rows, cross-block chains, means). */
template <bool STABLE> static fkm_status si_state_run(const fkm_problem *p, void *state, cudaStream_t stream, const char *name) {
  SiState *st = (SiState *)state;
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "%s: run without setup", name);
  const fkm_shape *s = &p->s;
  if (s->B != st->s.B || s->N != st->s.N || s->K != st->s.K || s->D != st->s.D || s->dtype != st->s.dtype)
    return fkm_fail(FKM_ERR_INTERNAL, "%s: shape differs from setup", name);
  SiReduceParams rp;
  const SiRedCfg *rc = (st->rc_vec.ok && si_vec_ok(p)) ? &st->rc_vec : &st->rc_scalar;
  fkm_phase_begin("sort");
  fkm_status rs = si_state_sort<STABLE>(p, st, rc, stream, &rp);
  fkm_phase_end(p, 0, stream);
  FKM_TRY(rs);
  fkm_phase_begin("reduce");
  rs = si_launch_reduce(p, rc, rp, st->part, st->tseg, st->chain_end, st->pdl, stream);
  fkm_phase_end(p, 1, stream);
  return rs;
}

const char *const si_phases[] = {"sort", "reduce", NULL};

static fkm_status si_state_check_input(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_check_bad(p, ((SiState *)state)->bad, stream);
}

} // namespace

#endif
