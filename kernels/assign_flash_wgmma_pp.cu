/* assign_flash_wgmma_pp.cu — assign/flash_wgmma_pp and assign/flash_wgmma_pp3: FlashAssign
 * on Hopper (sm_90a) with ping-pong consumer warpgroups: one warpgroup's argmin fold runs
 * while another's MMAs hold the tensor cores (the FlashAttention-3 schedule).
 *   pp:  2 consumer warpgroups, 64 x 256 tiles (m64n256k16, 128 accumulators per thread);
 *   pp3: 3 consumer warpgroups in round robin, 64 x 128 tiles (m64n128k16, 64 accumulators):
 *        two fold while the third multiplies; faster for K <= 128, D <= 64 with K >= 8192
 *        and K > 65536 (kernels/assign_flash.cu has the numbers).
 * Below, "the other warpgroup" is the next one in the round robin.
 *
 * Why: assign/flash_wgmma (BM = 128, m64n128, two accumulator sets per warpgroup, each
 *   fold under the same warpgroup's next MMAs) keeps the tensor pipe only 41 % busy at
 *   1M x 1024 x 128 with no pipe saturated (scripts/ncu_stalls.sh, NOTES.md): both
 *   warpgroups' MMAs and folds overlap by chance. Here the order is enforced, and each
 *   wgmma is m64n256k16, which reads half as many A bytes from shared memory per FLOP.
 *
 * For every point x_n: label = argmin_k s_k, s_k = ||c_k||^2 - 2 x_n.c_k (fp32; ties ->
 * lowest k), dist = max(0, ||x_n||^2 + s_label). ||c||^2 from cnorm_digits_kernel (+inf for the
 * padding columns k >= K of the last tile, so they never win a strict '<').
 *
 * Block (128 (NWG + 1) threads, 1 per SM, persistent over items = (batch, 64 NWG points)):
 *   warpgroup 0, producer: one thread issues the TMA loads (setmaxnreg 24);
 *   warpgroups 1..NWG, consumers w = 0..NWG-1 (setmaxnreg 240 / 160): rows [64w, 64w + 64)
 *   of the item; per centroid tile: KS = ceil(D/16) wgmmas, then the fold.
 * Schedule per consumer warpgroup and tile (named barrier 1 + w is warpgroup w's turn):
 *   bar.sync(my turn) -> wait X (first tile of an item) and the C stage -> (pp, first
 *   tile: A into registers, release the X slot) -> issue the tile's wgmmas, commit ->
 *   bar.arrive(the next warpgroup's turn) -> ||x||^2 (first tile) and, without the norm
 *   step, the first half of the tile's ||c||^2 -> wait_group 0 -> release the C stage
 *   (pp3: and the X slot after the item's last tile) -> fold -> write the item's rows
 *   after its last tile. The tensor cores run the warpgroups' groups in issue order, so (pp) while
 *   warpgroup 0 folds tile t, warpgroup 1's tile t is on the tensor cores, then warpgroup
 *   0's t + 1: busy as long as a fold (64 x 256 scores, ~4 instructions each) is shorter
 *   than the other's MMAs (8 x 128 cycles at D = 128). It is not, quite: the tensor pipe
 *   is 56 % busy at 1M x 1024 x 128, 85 % with the fold removed (NOTES.md). Warpgroup 0
 *   goes first (the last warpgroup arrives once up front and skips its very last arrive,
 *   so arrivals and waits pair up).
 * Shared memory (base rounded up to 1024 B, 128B-swizzled by TMA): 2 X slots of A atoms
 *   (A = ceil(D/64); an X atom is 64 NWG rows x 128 B), S C stages of A atoms (BN rows x
 *   128 B), then the mbarriers. pp, D = 128: S = 2 (192 KB); pp3, D = 128: S = 4 (224 KB).
 * Fragment layout (wgmma D, per thread, lane = 4g + q): rows 16*warp + g and + 8 of the
 *   warpgroup's 64, columns 8j + 2q + {0, 1}, j < BN/8: acc[4j + 2h + e].
 * A operand: pp keeps its 64 x D rows in registers for the whole item (ldmatrix at the
 *   first tile, wgmma with A from registers) and frees the X slot at once; pp3 reads A
 *   from the X slot (Geo::AREGS has the measurements).
 * Norm step (pp from K = 4097 on, 769 for D > 112; pp3 from 16385; flash_wgmma_pp_fold never):
 *   one more wgmma per tile, A = constant weights from registers, B = the tile's digits of
 *   -||c||^2 / 2 (cnorm_digits_kernel, a BN x 32 B block per C stage, 32B-swizzled), puts
 *   the norm into the accumulators, so the fold needs no ||c||^2 loads: a running max
 *   per score, or from K = 16385 on (kRecord) the record fold of sm90_tma_wgmma.cuh (a
 *   tree max per row, an index search only on a new best: rare at large K); a norm out
 *   of the digits' range makes the whole launch fold with ||c||^2 instead.
 * Launch: behind cnorm_digits_kernel with programmatic dependent launch (pdl.cuh): the
 *   kernel waits for it before touching memory, so only the launch gap goes (pp3 1M x 128 x
 *   128: 0.119 -> 0.116 ms, H100).
 * Limits: fp16/bf16, D % 8 == 0, 8 <= D <= 128 (the X and C atoms of larger D do not
 *   fit twice), compute capability 9.0.
 * -DFKM_PP_PHASE_CLOCK: each consumer warpgroup of block 0 times its phases per tile with
 *   clock64 (loop, turn, data wait, MMA issue, before the MMA wait, MMA wait, fold) and
 *   run() prints the means to stderr: where the cycles of a tile go (NOTES.md).
 * -DFKM_PP_TIMELINE: every block records %globaltimer at entry, when its barriers are ready,
 *   when its first X tile is in, and at the end of each consumer warpgroup; run() prints the
 *   spread over blocks (ramp-up and tail of a launch, NOTES.md). */
#include "device.h"
#include "error.h"
#include "pdl.cuh"
#include "sm90_tma_wgmma.cuh"
#include "variant.h"

#include <limits.h>
#include <math.h>
#include <algorithm>
#include <new>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int kMaxD = 128;

/* The two geometries: NWG consumer warpgroups of 64 rows (an item is BM = 64 NWG points)
 * and centroid tiles of BN (the wgmma N). pp: 2 x 64 x 256, 240 registers per consumer
 * thread (128 accumulators); pp3: 3 x 64 x 128, 160 registers (64 accumulators), so that
 * two warpgroups fold while the third multiplies. */
template <int NWG_, int BN_>
struct Geo {
  static constexpr int NWG = NWG_, BN = BN_, BM = 64 * NWG_;
  static constexpr int THREADS = 128 * (NWG_ + 1);
  static constexpr int NACC = BN_ / 2;              /* accumulators per consumer thread */
  static constexpr int NJ = BN_ / 8;                /* 8-column blocks per row and thread */
  static constexpr uint32_t XATOM = (uint32_t)BM * 128u; /* X atom: BM rows x 128 B */
  static constexpr uint32_t CATOM = (uint32_t)BN_ * 128u; /* C atom: BN rows x 128 B */
  static constexpr uint32_t NATOM = (uint32_t)BN_ * 32u;  /* norm digits of a tile: BN rows x 32 B */
  static constexpr uint32_t CWARPS = 4u * NWG_;     /* arrivals that free a stage or an X slot */
  /* A (the points) from registers: ldmatrix once per item, wgmma RS, the X slot freed at
   * the item's first tile. pp (H100, A/B both orders): 1M x 1024 x 128 0.517 -> 0.497 ms,
   * x 1024 x 64 0.416 -> 0.389, x 65536 x 128 30.6 -> 29.7, 32 x 75600 x 1000 1.18 -> 1.14;
   * pp3 (160 registers) loses at D = 64 (1024: 0.384 -> 0.411, 8192: 2.79 -> 3.02): it
   * keeps A in shared memory. */
  static constexpr bool AREGS = NWG_ == 2;
  static_assert(NACC * 2 == BN_ && NJ * 8 == BN_ && (NJ == 16 || NJ == 32) && CWARPS == 4u * NWG_,
                "tile width 128 or 256");
};
typedef Geo<2, 256> GeoPP;
typedef Geo<3, 128> GeoPP3;
constexpr int kMaxXSlots = 2;
constexpr int kMaxStages = 8;
constexpr uint32_t kBarBytes = 8u * 2u * (uint32_t)(kMaxStages + kMaxXSlots);
constexpr uint32_t kAlignSlack = 1024u;
constexpr int kDigitCols = 16; /* one k16 step: 4 digits of -||c||^2 / 2, then zeros */

struct Params {
  int N, K, D, B;
  int tiles_n; /* ceil(N / BM) */
  int items;   /* B * tiles_n */
  int T;       /* ceil(K / BN) */
  int kpad;    /* T * BN */
  int A;       /* ceil(D / 64) atoms */
  int KS;      /* ceil(D / 16) k-steps */
  int S;       /* C stages */
  int NXS;     /* X slots */
  int xbox;    /* rows of one X TMA box: an item's X arrives as BM / xbox boxes per atom */
  int norm_in_mma;           /* variant: -||c||^2 / 2 added by an extra MMA step (else in the fold) */
  const unsigned *range_flag; /* == epoch: some ||c||^2 too large for the digits, fold this run */
  unsigned epoch;
  const float *cnorm;
  int32_t *labels;
  float *dist;
};

#ifdef FKM_PP_PHASE_CLOCK
/* per consumer warpgroup of block 0: mean cycles per tile of the 7 phases, then the tile count */
__device__ long long g_phase_cycles[4][8];
#endif
#ifdef FKM_PP_TIMELINE
/* per block, %globaltimer (ns): entry, barriers ready, first X tile in (consumer warpgroup 0),
 * then the end of each consumer warpgroup */
constexpr int kTimelineBlocks = 1024;
__device__ unsigned long long g_pp_timeline[kTimelineBlocks][7];
#define PP_TIMELINE(k, cond)                                                       \
  do {                                                                             \
    if ((cond) && blockIdx.x < kTimelineBlocks) {                                  \
      unsigned long long t_;                                                       \
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_));                       \
      g_pp_timeline[blockIdx.x][k] = t_;                                           \
    }                                                                              \
  } while (0)
#else
#define PP_TIMELINE(k, cond) \
  do {                       \
  } while (0)
#endif
#ifdef FKM_FW_SM90A

constexpr int kTurnBar = 1;       /* named barriers kTurnBar + w: warpgroup w's turn */
constexpr int kTurnThreads = 256; /* the waiting warpgroup and the one that hands over */

#define FKM_PP_REGS128 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define FKM_PP_REGS64 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define FKM_PP_OUTS64(o) \
  "+f"(d[o + 0]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), \
  "+f"(d[o + 6]), "+f"(d[o + 7]), "+f"(d[o + 8]), "+f"(d[o + 9]), "+f"(d[o + 10]), "+f"(d[o + 11]), \
  "+f"(d[o + 12]), "+f"(d[o + 13]), "+f"(d[o + 14]), "+f"(d[o + 15]), "+f"(d[o + 16]), "+f"(d[o + 17]), \
  "+f"(d[o + 18]), "+f"(d[o + 19]), "+f"(d[o + 20]), "+f"(d[o + 21]), "+f"(d[o + 22]), "+f"(d[o + 23]), \
  "+f"(d[o + 24]), "+f"(d[o + 25]), "+f"(d[o + 26]), "+f"(d[o + 27]), "+f"(d[o + 28]), "+f"(d[o + 29]), \
  "+f"(d[o + 30]), "+f"(d[o + 31]), "+f"(d[o + 32]), "+f"(d[o + 33]), "+f"(d[o + 34]), "+f"(d[o + 35]), \
  "+f"(d[o + 36]), "+f"(d[o + 37]), "+f"(d[o + 38]), "+f"(d[o + 39]), "+f"(d[o + 40]), "+f"(d[o + 41]), \
  "+f"(d[o + 42]), "+f"(d[o + 43]), "+f"(d[o + 44]), "+f"(d[o + 45]), "+f"(d[o + 46]), "+f"(d[o + 47]), \
  "+f"(d[o + 48]), "+f"(d[o + 49]), "+f"(d[o + 50]), "+f"(d[o + 51]), "+f"(d[o + 52]), "+f"(d[o + 53]), \
  "+f"(d[o + 54]), "+f"(d[o + 55]), "+f"(d[o + 56]), "+f"(d[o + 57]), "+f"(d[o + 58]), "+f"(d[o + 59]), \
  "+f"(d[o + 60]), "+f"(d[o + 61]), "+f"(d[o + 62]), "+f"(d[o + 63])
#define FKM_PP_OUTS128 FKM_PP_OUTS64(0), FKM_PP_OUTS64(64)

/* One wgmma m64nNk16, D (+)= A * B with fp32 accumulators d: SS = A and B from shared-memory
 * descriptors (da, db); RS = A from four registers a0..a3 (the thread's fragment), B from db.
 * scale_d = 0: D = A * B. TYPE is "f16" or "bf16"; IA.. are the operand numbers after d's. */
#define FKM_WGMMA_SS(N, TYPE, REGS, OUTS, IA, IB, IS)                                                    \
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %" IS ", 0;\n\t"                                    \
               "wgmma.mma_async.sync.aligned.m64n" N "k16.f32." TYPE "." TYPE " " REGS ", %" IA ", %" IB \
               ", p, 1, 1, 0, 0;\n\t}"                                                                   \
               : OUTS                                                                                    \
               : "l"(da), "l"(db), "r"(scale_d)                                                          \
               : "memory")
#define FKM_WGMMA_RS(N, TYPE, REGS, OUTS, IA, IB, IS)                                           \
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %" IS ", 0;\n\t"                           \
               "wgmma.mma_async.sync.aligned.m64n" N "k16.f32." TYPE "." TYPE " " REGS ", " IA \
               ", %" IB ", p, 1, 1, 0;\n\t}"                                                    \
               : OUTS                                                                           \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d)              \
               : "memory")

template <bool kBF16>
__device__ __forceinline__ void wgmma_ss(float (&d)[128], uint64_t da, uint64_t db, uint32_t scale_d) {
  if constexpr (kBF16) FKM_WGMMA_SS("256", "bf16", FKM_PP_REGS128, FKM_PP_OUTS128, "128", "129", "130");
  else FKM_WGMMA_SS("256", "f16", FKM_PP_REGS128, FKM_PP_OUTS128, "128", "129", "130");
}
template <bool kBF16>
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d) {
  if constexpr (kBF16) FKM_WGMMA_SS("128", "bf16", FKM_PP_REGS64, FKM_PP_OUTS64(0), "64", "65", "66");
  else FKM_WGMMA_SS("128", "f16", FKM_PP_REGS64, FKM_PP_OUTS64(0), "64", "65", "66");
}
template <bool kBF16>
__device__ __forceinline__ void wgmma_rs(float (&d)[128], const uint32_t (&a)[4], uint64_t db, uint32_t scale_d) {
  if constexpr (kBF16)
    FKM_WGMMA_RS("256", "bf16", FKM_PP_REGS128, FKM_PP_OUTS128, "{%128, %129, %130, %131}", "132", "133");
  else FKM_WGMMA_RS("256", "f16", FKM_PP_REGS128, FKM_PP_OUTS128, "{%128, %129, %130, %131}", "132", "133");
}
template <bool kBF16>
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t db, uint32_t scale_d) {
  if constexpr (kBF16) FKM_WGMMA_RS("128", "bf16", FKM_PP_REGS64, FKM_PP_OUTS64(0), "{%64, %65, %66, %67}", "68", "69");
  else FKM_WGMMA_RS("128", "f16", FKM_PP_REGS64, FKM_PP_OUTS64(0), "{%64, %65, %66, %67}", "68", "69");
}
#undef FKM_WGMMA_SS
#undef FKM_WGMMA_RS
#undef FKM_PP_REGS128
#undef FKM_PP_REGS64
#undef FKM_PP_OUTS64
#undef FKM_PP_OUTS128

/* No read of the accumulators may be scheduled above the preceding wgmma.wait_group. */
template <int N>
__device__ __forceinline__ void acc_fence(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i]));
}

/* One tile: with kNormMma first the digits step (A = the weights in registers, B = the
 * tile's digits block: acc = -||c||^2 / 2), then NK k-steps of x.c, straight-line (a branch
 * between the wgmmas of a group makes ptxas close and reopen the group around each). k-step
 * kk lives in atom kk/4 at byte offset 32*(kk%4) inside the 1024-byte swizzle pattern. */
template <bool kBF16, int NK, class G, bool kNormMma>
__device__ __forceinline__ void issue_tile(float (&d)[G::NACC], uint32_t a_base, const uint32_t (&af)[8][4],
                                           uint32_t b_base, uint32_t n_base, const uint32_t (&wa)[4]) {
  wg_fence();
  if constexpr (kNormMma) wgmma_rs<kBF16>(d, wa, make_desc_sw32(n_base), 0u);
#pragma unroll
  for (int kk = 0; kk < NK; ++kk) {
    const uint32_t kin = (uint32_t)(kk & 3) * 32u;
    const uint64_t db = make_desc(b_base + (uint32_t)(kk >> 2) * G::CATOM + kin);
    const uint32_t sd = (kNormMma || kk > 0) ? 1u : 0u;
    if constexpr (G::AREGS) wgmma_rs<kBF16>(d, af[kk], db, sd);
    else wgmma_ss<kBF16>(d, make_desc(a_base + (uint32_t)(kk >> 2) * G::XATOM + kin), db, sd);
  }
  wg_commit();
}

/* Folds column blocks j = J0..J0+15 of the tile (columns 8j + {0, 1} relative to col0 =
 * the tile's first column + 2q) into (lb, li), the tile's running (min, local argmin) of the
 * thread's rows h = 0, 1: increasing columns, strict '<', so ties go to the lowest index;
 * col0 is added once, when the tile merges into the running best. cnv[i] = ||c||^2 of block
 * J0 + i's two columns. Measured slower at 1M x 1024 x 128 (NOTES.md): two or four
 * independent chains per row, all 32 blocks' ||c||^2 loaded before the wait, quarters. */
template <int J0, int NACC>
__device__ __forceinline__ void fold_half(const float (&acc)[NACC], const float2 (&cnv)[16], float (&lb)[2],
                                          int (&li)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const int j = J0 + i;
      const float s0 = fmaf(acc[4 * j + 2 * h + 0], -2.f, cnv[i].x);
      if (s0 < lb[h]) { lb[h] = s0; li[h] = 8 * j; }
      const float s1 = fmaf(acc[4 * j + 2 * h + 1], -2.f, cnv[i].y);
      if (s1 < lb[h]) { lb[h] = s1; li[h] = 8 * j + 1; }
    }
  }
}

/* One score v into a running (best, index) for the largest: the index follows the strict
 * comparison, the best is a bare max.f32 (FMNMX), so the chain from score to score is one
 * instruction, not a compare then a select (-4 to -5 % at K = 8192 on the H100; the same
 * form in fold_half measured 2-4 % slower at K <= 1024, so that one keeps the select). */
__device__ __forceinline__ void fold_max_step(float v, float &best, int &idx, int col) {
  idx = v > best ? col : idx;
  asm("max.f32 %0, %1, %2;" : "=f"(best) : "f"(best), "f"(v));
}

/* The fold when the MMA added -||c||^2 / 2: acc = x.c - ||c||^2 / 2 = -s / 2, so the running
 * (max, local argmax) with strict '>' over increasing columns: three instructions a score
 * instead of four, and no ||c||^2 loads. (Two or four independent chains per row measured
 * slower or equal: NOTES.md.) */
template <int NACC>
__device__ __forceinline__ void fold_max(const float (&acc)[NACC], float (&lb)[2], int (&li)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int j = 0; j < NACC / 4; ++j) {
      fold_max_step(acc[4 * j + 2 * h], lb[h], li[h], 8 * j);
      fold_max_step(acc[4 * j + 2 * h + 1], lb[h], li[h], 8 * j + 1);
    }
  }
}

/* Shared-memory layout of a block (see the file comment). */
struct Smem {
  uint8_t *ptr;
  uint32_t base, x_slot, c_stage, c_off, n_off, bar0;
  __device__ uint32_t cfull(int i) const { return bar0 + 8u * (uint32_t)i; }
  __device__ uint32_t cempty(int i) const { return bar0 + 8u * (uint32_t)(kMaxStages + i); }
  __device__ uint32_t xfull(int i) const { return bar0 + 8u * (uint32_t)(2 * kMaxStages + i); }
  __device__ uint32_t xempty(int i) const { return bar0 + 8u * (uint32_t)(2 * kMaxStages + kMaxXSlots + i); }
};

/* The producer: one thread issues the TMA loads of every item's X and its C tiles (with the
 * tiles' norm digits when kNormMma). */
template <class G, bool kNormMma>
__device__ __forceinline__ void produce(const CUtensorMap *tmX, const CUtensorMap *tmC, const CUtensorMap *tmN,
                                        const Params &p, const Smem &sm) {
  int xs = 0, cs = 0;
  uint32_t xph = 0, cph = 0;
  const uint32_t c_bytes = sm.c_stage + (kNormMma ? G::NATOM : 0u);
  for (int item = blockIdx.x; item < p.items; item += gridDim.x) {
    const int b = item / p.tiles_n;
    const int n0 = (item - b * p.tiles_n) * G::BM;
    mbar_wait(sm.xempty(xs), xph ^ 1u);
    mbar_arrive_expect_tx(sm.xfull(xs), sm.x_slot);
    for (int r = 0; r < G::BM; r += p.xbox) /* xbox: a multiple of 8 rows, so whole swizzle patterns */
      for (int a = 0; a < p.A; ++a)
        tma_load_3d(sm.base + (uint32_t)xs * sm.x_slot + (uint32_t)a * G::XATOM + (uint32_t)r * 128u, tmX,
                    sm.xfull(xs), a * kSwizzleCols, n0 + r, b);
    if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
    for (int t = 0; t < p.T; ++t) {
      mbar_wait(sm.cempty(cs), cph ^ 1u);
      mbar_arrive_expect_tx(sm.cfull(cs), c_bytes);
      for (int a = 0; a < p.A; ++a)
        tma_load_3d(sm.base + sm.c_off + (uint32_t)cs * sm.c_stage + (uint32_t)a * G::CATOM, tmC, sm.cfull(cs),
                    a * kSwizzleCols, t * G::BN, b);
      if constexpr (kNormMma)
        tma_load_3d(sm.base + sm.n_off + (uint32_t)cs * G::NATOM, tmN, sm.cfull(cs), 0, t * G::BN, b);
      if (++cs == p.S) { cs = 0; cph ^= 1u; }
    }
  }
}

/* A consumer warpgroup: the schedule of the file comment. */
template <bool kBF16, class G, bool kNormMma, bool kRecord>
__device__ __forceinline__ void consume(const Params &p, const Smem &sm, int warp, int lane) {
  const int cw = warp - 4;  /* 0 .. 4 NWG - 1 */
  const int wg = cw >> 2;   /* rows [64*wg, 64*wg + 64) of the item */
  const int wq = cw & 3;    /* rows 16*wq .. 16*wq + 15 of those */
  const int gq = lane >> 2;
  const int tq = lane & 3;
  const uint32_t a_row_off = (uint32_t)wg * 64u * 128u; /* 8 KB: a multiple of 1024 */
  const int row0 = wg * 64 + wq * 16 + gq;              /* item rows row0 and row0 + 8 */
  const int my_turn = kTurnBar + wg, next_turn = kTurnBar + (wg + 1) % G::NWG;
  /* the weights' A fragment: every row is (w0 w1 w2 w3 0 ... 0); this thread holds columns
   * 2 tq, 2 tq + 1 (registers 0, 1: rows g, g + 8) and 2 tq + 8, + 9 (registers 2, 3) */
  const uint32_t wpair = tq >= 2 ? 0u : kBF16 ? kWeightsBF16 : tq == 0 ? kWeightsF16Lo : kWeightsF16Hi;
  const uint32_t wa[4] = {wpair, wpair, 0u, 0u};
  constexpr float kWorst = kNormMma ? -INFINITY : INFINITY; /* best score before any column */

  float acc[G::NACC];
  uint32_t afr[8][4]; /* G::AREGS: the item's A fragments, k-step kk (loaded at its first tile) */
  float bs[2] = {kWorst, kWorst};
  int bi[2] = {0, 0};
  float xn[2] = {0.f, 0.f};
  int cs = 0, xs = 0;
  uint32_t cph = 0, xph = 0;
  const int steps = ((p.items - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x) * p.T;
  int step = 0;
#ifdef FKM_PP_PHASE_CLOCK
  PhaseClock<7> ph(lane == 0 && wq == 0 && blockIdx.x == 0);
#define PHASE_MARK(k)      \
  do {                     \
    ph.mark(k);            \
    if ((k) == 6) ph.tile(); \
  } while (0)
#else
#define PHASE_MARK(k) \
  do {                \
  } while (0)
#endif

  /* warpgroup 0 issues first; after that each hands the turn to the next, round robin */
  if (wg == G::NWG - 1) named_bar_arrive(kTurnBar, kTurnThreads);

  for (int item = blockIdx.x; item < p.items; item += gridDim.x) {
    const int b = item / p.tiles_n;
    const int n0 = (item - b * p.tiles_n) * G::BM;
    const uint32_t xbase = sm.base + (uint32_t)xs * sm.x_slot;
    const float *cn_b = p.cnorm + (size_t)b * (size_t)p.kpad + 2 * tq;
    for (int t = 0; t < p.T; ++t, ++step) {
      PHASE_MARK(0);
      named_bar_sync(my_turn, kTurnThreads);
      PHASE_MARK(1);
      if (t == 0) mbar_wait(sm.xfull(xs), xph);
      PP_TIMELINE(2, item == (int)blockIdx.x && t == 0 && wg == 0 && lane == 0 && wq == 0);
      mbar_wait(sm.cfull(cs), cph);
      PHASE_MARK(2);
      __syncwarp();
      if (G::AREGS && t == 0) {
        /* the warp's 16 rows into registers (ldmatrix.x4 per k-step: rows lane % 16, the
         * k-step's 16-byte unit lane / 16 of the swizzled 128-byte row), then the X slot
         * is free for the item after next */
        const int r = wg * 64 + wq * 16 + (lane & 15);
        const uint32_t rbase = xbase + (uint32_t)r * 128u;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
          if (kk < p.KS) {
            const uint32_t unit = (uint32_t)(2 * (kk & 3) + (lane >> 4)) ^ (uint32_t)(r & 7);
            ldsm_x4(rbase + (uint32_t)(kk >> 2) * G::XATOM + unit * 16u, afr[kk][0], afr[kk][1], afr[kk][2],
                    afr[kk][3]);
          }
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(sm.xempty(xs));
      }
      {
        const uint32_t a_base = xbase + a_row_off;
        const uint32_t b_base = sm.base + sm.c_off + (uint32_t)cs * sm.c_stage;
        const uint32_t n_base = sm.base + sm.n_off + (uint32_t)cs * G::NATOM;
        switch (p.KS) {
        case 1: issue_tile<kBF16, 1, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        case 2: issue_tile<kBF16, 2, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        case 3: issue_tile<kBF16, 3, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        case 4: issue_tile<kBF16, 4, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        case 5: issue_tile<kBF16, 5, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        case 6: issue_tile<kBF16, 6, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        case 7: issue_tile<kBF16, 7, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        default: issue_tile<kBF16, 8, G, kNormMma>(acc, a_base, afr, b_base, n_base, wa); break;
        }
      }
      PHASE_MARK(3);
      if (wg != G::NWG - 1 || step + 1 < steps) named_bar_arrive(next_turn, kTurnThreads);

      if (G::AREGS && t == 0) {
        /* ||x||^2 of rows row0, row0 + 8 from the A fragments: registers 0, 2 hold row g,
         * 1, 3 row g + 8, four of each k-step's columns; the quad adds them up below */
        xn[0] = xn[1] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
          if (kk < p.KS) {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              const float2 f = pair_to_f2<kBF16>(afr[kk][q]);
              xn[q & 1] = fmaf(f.x, f.x, fmaf(f.y, f.y, xn[q & 1]));
            }
          }
        }
      } else if (t == 0) {
        /* ||x||^2 of rows row0, row0 + 8: whole 16-byte units of a row (the swizzle
         * permutes units within the row), columns >= D are zero-filled by TMA */
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint8_t *rp = sm.ptr + (size_t)xs * sm.x_slot + (size_t)(row0 + 8 * h) * 128u + (size_t)tq * 32u;
          float s = 0.f;
          for (int a = 0; a < p.A; ++a) {
            const uint4 *q = reinterpret_cast<const uint4 *>(rp + (size_t)a * G::XATOM);
            s = sumsq8<kBF16>(q[0], s);
            s = sumsq8<kBF16>(q[1], s);
          }
          xn[h] = s;
        }
      }
      const int col0 = t * G::BN + 2 * tq;
      const float2 *cnp = reinterpret_cast<const float2 *>(cn_b + (size_t)t * G::BN);
      float2 cnv[16];
      if constexpr (!kNormMma) {
#pragma unroll
        for (int i = 0; i < 16; ++i) cnv[i] = __ldg(cnp + 4 * i);
      }

      PHASE_MARK(4);
      wg_wait<0>();
      PHASE_MARK(5);
      acc_fence(acc);
      __syncwarp();
      if (lane == 0) {
        mbar_arrive(sm.cempty(cs));
        if (!G::AREGS && t == p.T - 1) mbar_arrive(sm.xempty(xs));
      }
      if (++cs == p.S) { cs = 0; cph ^= 1u; }

      if constexpr (kNormMma) {
        /* the last tile's columns >= K (zero rows of C, zero digits) must not win */
        const int lim = p.K - col0;
        if (t == p.T - 1 && lim < G::BN) {
#pragma unroll
          for (int j = 0; j < G::NJ; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (8 * j + (e & 1) >= lim) acc[4 * j + e] = -INFINITY;
        }
        /* acc = x.c - ||c||^2 / 2 = -s / 2: the largest wins */
        if constexpr (kRecord) {
          record_fold<true, G::NACC>(acc, col0, bs, bi); /* sm90_tma_wgmma.cuh */
        } else {
          float lb[2] = {kWorst, kWorst};
          int li[2] = {0, 0};
          fold_max<G::NACC>(acc, lb, li);
#pragma unroll
          for (int h = 0; h < 2; ++h) /* strict '>': earlier tiles hold lower indices */
            if (lb[h] > bs[h]) { bs[h] = lb[h]; bi[h] = col0 + li[h]; }
        }
      } else {
        float lb[2] = {kWorst, kWorst};
        int li[2] = {0, 0};
        fold_half<0, G::NACC>(acc, cnv, lb, li);
        if constexpr (G::NJ == 32) {
#pragma unroll
          for (int i = 0; i < 16; ++i) cnv[i] = __ldg(cnp + 4 * (16 + i));
          fold_half<16, G::NACC>(acc, cnv, lb, li);
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) /* strict '<': earlier tiles hold lower indices */
          if (lb[h] < bs[h]) { bs[h] = lb[h]; bi[h] = col0 + li[h]; }
      }
      PHASE_MARK(6);
    }
    /* the item's rows: lexicographic (score, index) minimum over the quad's lanes */
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      quad_merge_write_row(kNormMma ? -2.f * bs[h] : bs[h] /* exact: a power of two */, bi[h], xn[h], tq == h, b,
                           n0 + row0 + 8 * h, p.N, p.labels, p.dist);
      bs[h] = kWorst;
      bi[h] = 0;
    }
    if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
  }
  PP_TIMELINE(3 + wg, lane == 0 && wq == 0);
#ifdef FKM_PP_PHASE_CLOCK
  ph.store(g_phase_cycles[wg]);
#endif
#undef PHASE_MARK
}

#endif /* FKM_FW_SM90A */

template <bool kBF16, class G, bool kRecord>
__global__ void __launch_bounds__(G::THREADS, 1)
    flash_assign_pp_kernel(const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmC,
                           const __grid_constant__ CUtensorMap tmN, const Params p) {
#ifdef FKM_FW_SM90A
  PP_TIMELINE(0, threadIdx.x == 0);
  fkm_pdl_wait(); /* launched behind the norm kernel (pdl.cuh): its cn, digits, range flag */
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw_addr = smem_u32(smem_raw);
  const uint32_t pad = (1024u - (raw_addr & 1023u)) & 1023u;
  Smem sm;
  sm.ptr = smem_raw + pad;
  sm.base = raw_addr + pad;
  sm.x_slot = (uint32_t)p.A * G::XATOM;
  sm.c_stage = (uint32_t)p.A * G::CATOM;
  sm.c_off = (uint32_t)p.NXS * sm.x_slot;
  sm.n_off = sm.c_off + (uint32_t)p.S * sm.c_stage; /* the stages' digits blocks (kNormMma) */
  sm.bar0 = sm.base + sm.n_off + (p.norm_in_mma ? (uint32_t)p.S * G::NATOM : 0u);
  /* the run's choice: digits unless a norm was out of their range (flag == this run's epoch) */
  const bool norm_mma = p.norm_in_mma && *p.range_flag != p.epoch;

  const int warp = (int)(threadIdx.x >> 5);
  const int lane = (int)(threadIdx.x & 31);

  if (threadIdx.x == 0) {
    for (int i = 0; i < p.S; ++i) {
      mbar_init(sm.cfull(i), 1);
      mbar_init(sm.cempty(i), G::CWARPS);
    }
    for (int i = 0; i < p.NXS; ++i) {
      mbar_init(sm.xfull(i), 1);
      mbar_init(sm.xempty(i), G::CWARPS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmX)) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmC)) : "memory");
    if (norm_mma) asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmN)) : "memory");
  }
  __syncthreads();
  PP_TIMELINE(1, threadIdx.x == 0);

  if (warp < 4) {
    /* ============================== producer warpgroup ============================== */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;" ::: "memory");
    if (warp == 0 && lane == 0) {
      if (norm_mma) produce<G, true>(&tmX, &tmC, &tmN, p, sm);
      else produce<G, false>(&tmX, &tmC, &tmN, p, sm);
    }
    return;
  }

  /* ============================== consumer warpgroups ============================== */
  if constexpr (G::NWG == 2)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;" ::: "memory");
  else
    asm volatile("setmaxnreg.inc.sync.aligned.u32 160;" ::: "memory");
  if (norm_mma) consume<kBF16, G, true, kRecord>(p, sm, warp, lane);
  else consume<kBF16, G, false, false>(p, sm, warp, lane);
#else
  (void)tmX;
  (void)tmC;
  (void)tmN;
  (void)p;
  (void)G::AREGS;
#ifdef __CUDA_ARCH__
  __trap(); /* sm_90a only; supports() rejects every other device */
#endif
#endif
}

/* ---------------------------------------------------------------------------------- */
/* host side                                                                            */

/* The variant at run time: which of the two kernels, its sizes, and from which K on the
 * norm goes through the MMA (0: never). Measured on the H100 (fp16, NOTES.md, A/B in both
 * orders): the norm step pays where the fold's ||c||^2 loads stop hitting L1, and costs a
 * little where they hit (K <= 1024: up to 6 % for pp, 10 % for pp3, whose D = 128 stages
 * also drop from 4 to 3 for the digits): pp 1M x 8192 x 64 3.39 -> 3.03 ms, x 65536 x 64
 * 27.5 -> 24.0, x 65536 x 128 33.5 -> 31.4; pp3 still folds faster at K = 8192. Since A moved
 * into registers, pp's D > 112 (eight k-steps, to which the digits add one) gains from four
 * tiles on (the step forced at every K, same H100 and build, ms): 1M x 1024 x 128 0.485 ->
 * 0.474, x 2048 x 128 0.928 -> 0.889, x 4096 x 128 1.817 -> 1.705, 32 x 75600 x 1000 x 128
 * 1.123 -> 1.084, but x 512 x 128 0.264 -> 0.309; at D = 96 it still loses below K = 4096
 * (1024: 0.438 -> 0.479), at D = 64 up to 2048. */
struct Shape {
  const char *name; /* the variant */
  int nwg, bm, bn;
  uint32_t xatom, catom, natom;
  int64_t norm_mma_min_k;
  int64_t norm_mma_min_k_wide; /* the same for D > 112 */
  int64_t record_min_k;        /* from this K on the norm-step path folds with record_fold */
};
template <class G>
static Shape shape_of(const char *name, int64_t norm_mma_min_k, int64_t norm_mma_min_k_wide, int64_t record_min_k) {
  return Shape{name, G::NWG, G::BM, G::BN, G::XATOM, G::CATOM, G::NATOM, norm_mma_min_k, norm_mma_min_k_wide,
               record_min_k};
}
/* record_fold against the running max per score (H100, A/B of one build each, NOTES.md):
 * pp 1M x 65536 x 64 22.1 -> 19.5 ms, x 65536 x 128 28.7 -> 27.8, pp3 x 65536 x 64 23.1 ->
 * 20.6; but pp x 8192 x 64 2.81 -> 3.03, x 8192 x 128 3.36 -> 3.59 (a record still on ~60 %
 * of the tiles there): so from K = 16385 on. */
static const Shape kShapePP = shape_of<GeoPP>("assign/flash_wgmma_pp", 4097, 769, 16385);
static const Shape kShapePP3 = shape_of<GeoPP3>("assign/flash_wgmma_pp3", 16385, 16385, 16385);
static const Shape kShapePPFold = shape_of<GeoPP>("assign/flash_wgmma_pp_fold", 0, 0, 0);

/* The K from which a path is taken: the shape's, or the environment variable's when set
 * (1: always, 0: never), so the tests can run every path on every shape. */
static int64_t min_k_of(const char *var, int64_t shape_min_k) {
  const char *env = getenv(var);
  return env && *env ? atoll(env) : shape_min_k;
}

/* The norm step (FKM_NORM_MMA_MIN_K); flash_wgmma_pp_fold never takes it. */
static bool norm_in_mma(const Shape &g, const fkm_shape *s) {
  if (g.norm_mma_min_k == 0) return false;
  const int64_t min_k = min_k_of("FKM_NORM_MMA_MIN_K", s->D > 112 ? g.norm_mma_min_k_wide : g.norm_mma_min_k);
  return min_k > 0 && s->K >= min_k;
}

/* record_fold on the norm-step path (FKM_RECORD_FOLD_MIN_K). */
static bool record_fold_on(const Shape &g, const fkm_shape *s) {
  if (g.record_min_k == 0) return false;
  const int64_t min_k = min_k_of("FKM_RECORD_FOLD_MIN_K", g.record_min_k);
  return min_k > 0 && s->K >= min_k;
}

struct Cfg {
  int A, KS, S, NXS;
  int xbox; /* rows of an X TMA box (make_cfg) */
  size_t smem;
};

/* Two X slots (the next item's X loads during this one) and as many C stages as fit, at
 * least 2. (pp, D = 128: one X slot and three stages measured slower, 0.550 vs 0.517 ms.) */
static int make_cfg(const Shape &g, bool norm_mma, int64_t D, int64_t smem_optin, Cfg *c) {
  memset(c, 0, sizeof *c);
  if (D < 8 || D > kMaxD) return -1;
  c->A = (int)((D + 63) / 64);
  c->KS = (int)((D + 15) / 16);
  c->NXS = kMaxXSlots;
  /* With two or more atoms (D > 64), an item's X in boxes of 64 rows, atom after atom for
   * each: a row's halves then arrive close together instead of a whole atom (BM rows) apart
   * (H100, A/B of the builds: pp3 1M x 128 x 128 0.1139 -> 0.1095 ms, 32 x 75600 x 128 x
   * 128 0.253 -> 0.248; 8-row boxes: 0.198; no change where the MMAs set the pace). One
   * atom: one box (64 rows measured 0.0797 -> 0.0801 at D = 64). FKM_PP_XBOX sets it, for
   * measuring. */
  c->xbox = c->A >= 2 ? 64 : g.bm;
  if (const char *e = getenv("FKM_PP_XBOX")) {
    const int v = atoi(e);
    if (v >= 8 && v % 8 == 0 && g.bm % v == 0) c->xbox = v;
  }
  const int64_t fixed = kAlignSlack + kBarBytes + (int64_t)c->NXS * c->A * g.xatom;
  const int64_t stage = (int64_t)c->A * g.catom + (norm_mma ? g.natom : 0u);
  if (smem_optin <= fixed) return -1;
  int64_t S = (smem_optin - fixed) / stage;
  if (S > kMaxStages) S = kMaxStages;
  if (S < 2) return -1;
  c->S = (int)S;
  c->smem = (size_t)(fixed + S * stage);
  return 0;
}

struct State {
  CUtensorMap tmX; /* alignas(64) by its type; State is allocated with aligned new */
  CUtensorMap tmC;
  CUtensorMap tmN; /* the norm digits [B][kpad][16] (norm_mma) */
  const void *x, *c;
  fkm_shape s;
  Shape g;
  Cfg cfg;
  bool norm_mma;      /* the norm through the MMA (norm_in_mma() of the shape) */
  bool record;        /* its fold: record_fold (record_fold_on()), else the running max */
  float *cn;          /* scratch: ||c||^2 [B][kpad], then digits, then the range flag */
  uint4 *digits;      /* [B][kpad] rows of 32 bytes, or null */
  unsigned *range_flag;
  unsigned epoch;     /* this run's number, never 0 (the flag starts at 0) */
  int grid, tiles_n, T;
};

static const int64_t kMaxTmaStride = (int64_t)1 << 40;

static fkm_status supports_g(const Shape &g, const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  auto no = [&](const char *msg) {
    if (why && why_len) snprintf(why, why_len, "%s", msg);
    return FKM_ERR_NOT_SUPPORTED;
  };
  if (!dev || !dev->present) return no("needs a GPU");
  if (dev->cc != 90) return no("needs compute capability 9.0 (sm_90a: TMA, wgmma, setmaxnreg)");
  if (s->dtype != FKM_F16 && s->dtype != FKM_BF16) return no("fp16/bf16 only (wgmma f16/bf16 inputs)");
  if (s->D % 8 != 0) return no("D must be a multiple of 8 (TMA needs 16-byte row strides)");
  if (s->D < 8 || s->D > kMaxD) return no("needs 8 <= D <= 128 (two X slots and two C stages in shared memory)");
  if (s->B < 1 || s->N < 1 || s->K < 1) return no("needs B, N, K >= 1");
  const int64_t tiles_n = (s->N + g.bm - 1) / g.bm;
  const int64_t T = (s->K + g.bn - 1) / g.bn;
  if (s->N > INT32_MAX - g.bm || s->K > INT32_MAX - g.bn || tiles_n * s->B > INT32_MAX ||
      T * g.bn * s->B > INT32_MAX)
    return no("shape too large for 32-bit tile coordinates");
  if (s->N * s->D * 2 >= kMaxTmaStride || s->K * s->D * 2 >= kMaxTmaStride)
    return no("batch stride exceeds the TMA limit of 2^40 bytes");
  Cfg cfg;
  if (make_cfg(g, norm_in_mma(g, s), s->D, dev->smem_per_block_optin, &cfg) != 0)
    return no("not enough shared memory per block");
  return FKM_OK;
}

static void pp_teardown(void *state) {
  State *st = static_cast<State *>(state);
  if (!st) return;
  if (st->cn) cudaFree(st->cn);
  delete st;
}

static fkm_status pp_encode(State *st, const fkm_problem *p) {
  FKM_TRY(encode_map(&st->tmX, p->x, p->s.dtype, p->s.D, p->s.N, p->s.B, st->cfg.xbox, st->g.name));
  FKM_TRY(encode_map(&st->tmC, p->c, p->s.dtype, p->s.D, p->s.K, p->s.B, st->g.bn, st->g.name));
  st->x = p->x;
  st->c = p->c;
  return FKM_OK;
}

template <bool kBF16, bool kRecord>
static const void *kernel_of(const Shape &g) {
  return g.nwg == 2 ? (const void *)flash_assign_pp_kernel<kBF16, GeoPP, kRecord>
                    : (const void *)flash_assign_pp_kernel<kBF16, GeoPP3, kRecord>;
}

static fkm_status setup_g(const Shape &g, const fkm_problem *p, void **state) {
  *state = nullptr;
  const fkm_shape *s = &p->s;
  fkm_device d;
  FKM_TRY(query_device(&d));
  const int sms = d.sm_count, optin = (int)d.smem_per_block_optin;
  char why[256] = "";
  if (supports_g(g, s, &d, why, sizeof why) != FKM_OK) return fkm_fail(FKM_ERR_NOT_SUPPORTED, "%s: %s", g.name, why);

  State *st = new (std::nothrow) State();
  if (!st) return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate state", g.name);
  st->s = *s;
  st->g = g;
  st->norm_mma = norm_in_mma(g, s);
  st->record = st->norm_mma && record_fold_on(g, s);
  (void)make_cfg(g, st->norm_mma, s->D, optin, &st->cfg); /* supports_g checked it */
  st->tiles_n = (int)((s->N + g.bm - 1) / g.bm);
  st->T = (int)((s->K + g.bn - 1) / g.bn);
  const int64_t items = (int64_t)st->tiles_n * s->B;
  st->grid = (int)(items < (int64_t)sms ? items : (int64_t)sms);

  /* scratch: ||c||^2, the digits (256-byte aligned for TMA), the range flag */
  const size_t rows = (size_t)s->B * (size_t)st->T * (size_t)g.bn;
  const size_t cn_bytes = (sizeof(float) * rows + 255u) & ~(size_t)255u;
  const size_t dig_bytes = st->norm_mma ? rows * kDigitCols * 2u : 0u;
  const size_t scratch = cn_bytes + dig_bytes + 256u;
  if (p->scratch_budget != 0 && scratch > p->scratch_budget) {
    pp_teardown(st);
    return fkm_fail(FKM_ERR_OOM, "%s: needs %zu bytes of scratch, budget is %zu", g.name, scratch,
                    p->scratch_budget);
  }
  cudaError_t e = cudaMalloc(reinterpret_cast<void **>(&st->cn), scratch);
  if (e != cudaSuccess) {
    st->cn = nullptr;
    pp_teardown(st);
    return fkm_cuda_fail_at(e, "cudaMalloc(scratch)", __FILE__, __LINE__);
  }
  st->digits = st->norm_mma ? reinterpret_cast<uint4 *>(reinterpret_cast<char *>(st->cn) + cn_bytes) : nullptr;
  st->range_flag = reinterpret_cast<unsigned *>(reinterpret_cast<char *>(st->cn) + cn_bytes + dig_bytes);
  e = cudaMemset(st->range_flag, 0, sizeof(unsigned));
  if (e != cudaSuccess) {
    pp_teardown(st);
    return fkm_cuda_fail_at(e, "cudaMemset(range flag)", __FILE__, __LINE__);
  }
  if (st->norm_mma) {
    fkm_status rn = encode_map_swizzled(&st->tmN, st->digits, s->dtype, kDigitCols, st->T * g.bn, s->B, kDigitCols,
                                        g.bn, CU_TENSOR_MAP_SWIZZLE_32B, g.name);
    if (rn != FKM_OK) {
      pp_teardown(st);
      return rn;
    }
  }
  fkm_status rs = pp_encode(st, p);
  if (rs != FKM_OK) {
    pp_teardown(st);
    return rs;
  }
  const bool bf = s->dtype == FKM_BF16;
  const void *fn = st->record ? (bf ? kernel_of<true, true>(g) : kernel_of<false, true>(g))
                              : (bf ? kernel_of<true, false>(g) : kernel_of<false, false>(g));
  e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
  if (e != cudaSuccess) {
    pp_teardown(st);
    return fkm_cuda_fail_at(e, "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", __FILE__, __LINE__);
  }
  *state = st;
  return FKM_OK;
}

template <bool kBF16, class G>
static fkm_status launch(const State *st, const Params &prm, cudaStream_t stream) {
  if (st->record)
    return fkm_launch(flash_assign_pp_kernel<kBF16, G, true>, dim3((unsigned)st->grid), dim3(G::THREADS),
                      st->cfg.smem, stream, true, st->tmX, st->tmC, st->tmN, prm);
  return fkm_launch(flash_assign_pp_kernel<kBF16, G, false>, dim3((unsigned)st->grid), dim3(G::THREADS),
                    st->cfg.smem, stream, true, st->tmX, st->tmC, st->tmN, prm);
}

static fkm_status pp_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  State *st = static_cast<State *>(state);
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "assign/flash_wgmma_pp: run without setup");
  const fkm_shape *s = &p->s;
  if (s->B != st->s.B || s->N != st->s.N || s->K != st->s.K || s->D != st->s.D || s->dtype != st->s.dtype)
    return fkm_fail(FKM_ERR_INPUT, "%s: run() shape differs from setup()", st->g.name);
  if (p->x != st->x || p->c != st->c) FKM_TRY(pp_encode(st, p)); /* host-only work */

  const int kpad = st->T * st->g.bn;
  const long long rows = (long long)s->B * kpad;
  const unsigned nblk = (unsigned)((rows + 7) / 8);
  if (++st->epoch == 0) st->epoch = 1; /* a stale flag never equals this run's number */
  const uint16_t *c16 = static_cast<const uint16_t *>(p->c);
  if (s->dtype == FKM_BF16)
    cnorm_digits_kernel<true><<<nblk, 256, 0, stream>>>(c16, st->cn, st->digits, st->range_flag, st->epoch,
                                                        (int)s->K, (int)s->D, kpad, rows);
  else
    cnorm_digits_kernel<false><<<nblk, 256, 0, stream>>>(c16, st->cn, st->digits, st->range_flag, st->epoch,
                                                         (int)s->K, (int)s->D, kpad, rows);
  FKM_CUDA_LAUNCH();

  Params prm;
  prm.N = (int)s->N;
  prm.K = (int)s->K;
  prm.D = (int)s->D;
  prm.B = (int)s->B;
  prm.tiles_n = st->tiles_n;
  prm.items = st->tiles_n * (int)s->B;
  prm.T = st->T;
  prm.kpad = kpad;
  prm.A = st->cfg.A;
  prm.KS = st->cfg.KS;
  prm.S = st->cfg.S;
  prm.NXS = st->cfg.NXS;
  prm.xbox = st->cfg.xbox;
  prm.norm_in_mma = st->norm_mma ? 1 : 0;
  prm.range_flag = st->range_flag;
  prm.epoch = st->epoch;
  prm.cnorm = st->cn;
  prm.labels = p->labels;
  prm.dist = p->dist;
  const bool bf = s->dtype == FKM_BF16;
  fkm_status launched;
  if (st->g.nwg == 2) launched = bf ? launch<true, GeoPP>(st, prm, stream) : launch<false, GeoPP>(st, prm, stream);
  else launched = bf ? launch<true, GeoPP3>(st, prm, stream) : launch<false, GeoPP3>(st, prm, stream);
  FKM_TRY(launched);
#ifdef FKM_PP_TIMELINE
  {
    static unsigned long long tl[kTimelineBlocks][7];
    FKM_CUDA(cudaStreamSynchronize(stream));
    FKM_CUDA(cudaMemcpyFromSymbol(tl, g_pp_timeline, sizeof tl));
    const int nb = st->grid < kTimelineBlocks ? st->grid : kTimelineBlocks;
    unsigned long long t0 = ~0ull;
    for (int i = 0; i < nb; ++i) t0 = tl[i][0] < t0 ? tl[i][0] : t0;
    double v[5][kTimelineBlocks];
    for (int i = 0; i < nb; ++i) {
      unsigned long long end = 0;
      for (int w = 0; w < st->g.nwg; ++w) end = tl[i][3 + w] > end ? tl[i][3 + w] : end;
      v[0][i] = (tl[i][0] - t0) * 1e-3;
      v[1][i] = (tl[i][1] - t0) * 1e-3;
      v[2][i] = (tl[i][2] - t0) * 1e-3;
      v[3][i] = (end - t0) * 1e-3;
      v[4][i] = (tl[i][3] - t0) * 1e-3; /* warpgroup 0's end */
    }
    static const char *names[5] = {"entry", "ready", "first X in", "block end", "wg0 end"};
    fprintf(stderr, "%s %dx%dx%dx%d timeline over %d blocks (us from the first entry): ", st->g.name, (int)s->B,
            (int)s->N, (int)s->K, (int)s->D, nb);
    for (int k = 0; k < 5; ++k) {
      std::sort(v[k], v[k] + nb);
      fprintf(stderr, "%s min %.2f med %.2f max %.2f; ", names[k], v[k][0], v[k][nb / 2], v[k][nb - 1]);
    }
    fprintf(stderr, "\n");
  }
#endif
#ifdef FKM_PP_PHASE_CLOCK
  {
    long long ph[4][8];
    FKM_CUDA(cudaStreamSynchronize(stream));
    FKM_CUDA(cudaMemcpyFromSymbol(ph, g_phase_cycles, sizeof ph));
    for (int w = 0; w < st->g.nwg; ++w)
      fprintf(stderr,
              "%s %dx%dx%dx%d norm_mma %d record %d, block 0 warpgroup %d, cycles per tile over %lld tiles: loop %lld, turn "
              "%lld, data wait %lld, MMA issue %lld, before the MMA wait %lld, MMA wait %lld, fold %lld\n",
              st->g.name, (int)s->B, (int)s->N, (int)s->K, (int)s->D, (int)st->norm_mma, (int)st->record, w, ph[w][7], ph[w][0],
              ph[w][1], ph[w][2], ph[w][3], ph[w][4], ph[w][5], ph[w][6]);
  }
#endif
  return FKM_OK;
}

static fkm_status pp_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {
  return supports_g(kShapePP, s, d, w, n);
}
static fkm_status pp3_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {
  return supports_g(kShapePP3, s, d, w, n);
}
static fkm_status pp_fold_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {
  return supports_g(kShapePPFold, s, d, w, n);
}
static fkm_status pp_setup(const fkm_problem *p, void **state) { return setup_g(kShapePP, p, state); }
static fkm_status pp3_setup(const fkm_problem *p, void **state) { return setup_g(kShapePP3, p, state); }
static fkm_status pp_fold_setup(const fkm_problem *p, void **state) { return setup_g(kShapePPFold, p, state); }

} /* namespace */

extern "C" const fkm_variant fkm_assign_flash_wgmma_pp = {
    "assign/flash_wgmma_pp",
    FKM_OP_ASSIGN,
    "Hopper fused assign with ping-pong consumer warpgroups (one folds while the other's m64n256 MMAs run, "
    "ordered by named barriers), TMA + mbarrier ring, persistent grid; D <= 128",
    90,
    90,
    pp_supports,
    pp_setup,
    pp_run,
    pp_teardown,
};

/* Three consumer warpgroups in round robin on 64 x 128 tiles: two fold while one
 * multiplies (more warps to hide the fold's latency, at 160 registers per thread). */
extern "C" const fkm_variant fkm_assign_flash_wgmma_pp3 = {
    "assign/flash_wgmma_pp3",
    FKM_OP_ASSIGN,
    "flash_wgmma_pp with three consumer warpgroups in round robin on 64 x 128 tiles (m64n128k16): two fold "
    "while the third's MMAs run; D <= 128",
    90,
    90,
    pp3_supports,
    pp3_setup,
    pp_run,
    pp_teardown,
};

/* The ablation of the norm step: pp with ||c||^2 added in the fold (one FFMA and a load per
 * two scores) instead of by the MMA; also what pp and pp3 run when a norm exceeds the digits. */
extern "C" const fkm_variant fkm_assign_flash_wgmma_pp_fold = {
    "assign/flash_wgmma_pp_fold",
    FKM_OP_ASSIGN,
    "flash_wgmma_pp with ||c||^2 added in the argmin fold (fp32 FMA per score) instead of by an extra MMA "
    "step: the ablation of the norm step; D <= 128",
    90,
    90,
    pp_fold_supports,
    pp_fold_setup,
    pp_run,
    pp_teardown,
};
