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
 * lowest k), dist = max(0, ||x_n||^2 + s_label). ||c||^2 from cnorm_kernel (+inf for the
 * padding columns k >= K of the last tile, so they never win a strict '<').
 *
 * Block (128 (NWG + 1) threads, 1 per SM, persistent over items = (batch, 64 NWG points)):
 *   warpgroup 0, producer: one thread issues the TMA loads (setmaxnreg 24);
 *   warpgroups 1..NWG, consumers w = 0..NWG-1 (setmaxnreg 240 / 160): rows [64w, 64w + 64)
 *   of the item; per centroid tile: KS = ceil(D/16) wgmmas, then the fold.
 * Schedule per consumer warpgroup and tile (named barrier 1 + w is warpgroup w's turn):
 *   bar.sync(my turn) -> wait X (first tile of an item) and the C stage -> issue the
 *   tile's wgmmas, commit -> bar.arrive(the next warpgroup's turn) -> ||x||^2 (first tile)
 *   and the first half of the tile's ||c||^2 -> wait_group 0 -> release the C stage (and
 *   the X slot after the item's last tile) -> fold -> write the item's rows after its last
 *   tile. The tensor cores run the warpgroups' groups in issue order, so (pp) while
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
 * Limits: fp16/bf16, D % 8 == 0, 8 <= D <= 128 (the X and C atoms of larger D do not
 *   fit twice), compute capability 9.0. */
#include "device.h"
#include "error.h"
#include "sm90_tma_wgmma.cuh"
#include "variant.h"

#include <limits.h>
#include <math.h>
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
  static constexpr uint32_t CWARPS = 4u * NWG_;     /* arrivals that free a stage or an X slot */
  static_assert(NACC * 2 == BN_ && NJ * 8 == BN_ && (NJ == 16 || NJ == 32) && CWARPS == 4u * NWG_,
                "tile width 128 or 256");
};
typedef Geo<2, 256> GeoPP;
typedef Geo<3, 128> GeoPP3;
constexpr int kMaxXSlots = 2;
constexpr int kMaxStages = 8;
constexpr uint32_t kBarBytes = 8u * 2u * (uint32_t)(kMaxStages + kMaxXSlots);
constexpr uint32_t kAlignSlack = 1024u;

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
  const float *cnorm;
  int32_t *labels;
  float *dist;
};

#ifdef FKM_FW_SM90A

constexpr int kTurnBar = 1;       /* named barriers kTurnBar + w: warpgroup w's turn */
constexpr int kTurnThreads = 256; /* the waiting warpgroup and the one that hands over */

__device__ __forceinline__ void named_bar_sync(int id, int n) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
}

#define FKM_PP_REGS \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define FKM_PP_OUTS \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
  "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
  "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
  "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
  "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
  "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
  "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
  "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
  "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

/* D[64x256] (+)= A[64x16] * B[16x256], A and B K-major in shared memory; operands %0..%127
 * accumulators, %128 A descriptor, %129 B descriptor, %130 scale-d (0: D = A*B). */
template <bool kBF16>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t da, uint64_t db, uint32_t scale_d) {
  if constexpr (kBF16)
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %130, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " FKM_PP_REGS
                 ", %128, %129, p, 1, 1, 0, 0;\n\t}"
                 : FKM_PP_OUTS
                 : "l"(da), "l"(db), "r"(scale_d)
                 : "memory");
  else
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %130, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " FKM_PP_REGS
                 ", %128, %129, p, 1, 1, 0, 0;\n\t}"
                 : FKM_PP_OUTS
                 : "l"(da), "l"(db), "r"(scale_d)
                 : "memory");
}
#undef FKM_PP_REGS
#undef FKM_PP_OUTS

#define FKM_PP_REGS64 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define FKM_PP_OUTS64 \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

/* D[64x128] (+)= A[64x16] * B[16x128]; operands %0..%63, %64 A, %65 B, %66 scale-d. */
template <bool kBF16>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d) {
  if constexpr (kBF16)
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %66, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FKM_PP_REGS64
                 ", %64, %65, p, 1, 1, 0, 0;\n\t}"
                 : FKM_PP_OUTS64
                 : "l"(da), "l"(db), "r"(scale_d)
                 : "memory");
  else
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %66, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " FKM_PP_REGS64
                 ", %64, %65, p, 1, 1, 0, 0;\n\t}"
                 : FKM_PP_OUTS64
                 : "l"(da), "l"(db), "r"(scale_d)
                 : "memory");
}
#undef FKM_PP_REGS64
#undef FKM_PP_OUTS64

template <bool kBF16>
__device__ __forceinline__ void wgmma_tile_step(float (&d)[128], uint64_t da, uint64_t db, uint32_t scale_d) {
  wgmma_m64n256k16<kBF16>(d, da, db, scale_d);
}
template <bool kBF16>
__device__ __forceinline__ void wgmma_tile_step(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d) {
  wgmma_m64n128k16<kBF16>(d, da, db, scale_d);
}

/* No read of the accumulators may be scheduled above the preceding wgmma.wait_group. */
template <int N>
__device__ __forceinline__ void acc_fence(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i]));
}

/* One tile: NK k-steps of 16, straight-line (a branch between the wgmmas of a group makes
 * ptxas close and reopen the group around each). k-step kk lives in atom kk/4 at byte
 * offset 32*(kk%4) inside the 1024-byte swizzle pattern. */
template <bool kBF16, int NK, class G>
__device__ __forceinline__ void issue_tile(float (&d)[G::NACC], uint32_t a_base, uint32_t b_base) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < NK; ++kk) {
    const uint32_t kin = (uint32_t)(kk & 3) * 32u;
    wgmma_tile_step<kBF16>(d, make_desc(a_base + (uint32_t)(kk >> 2) * G::XATOM + kin),
                           make_desc(b_base + (uint32_t)(kk >> 2) * G::CATOM + kin), kk == 0 ? 0u : 1u);
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

#endif /* FKM_FW_SM90A */

template <bool kBF16, class G>
__global__ void __launch_bounds__(G::THREADS, 1)
    flash_assign_pp_kernel(const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmC,
                           const Params p) {
#ifdef FKM_FW_SM90A
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw_addr = smem_u32(smem_raw);
  const uint32_t pad = (1024u - (raw_addr & 1023u)) & 1023u;
  uint8_t *const smem = smem_raw + pad;
  const uint32_t sbase = raw_addr + pad;

  const uint32_t x_slot = (uint32_t)p.A * G::XATOM, c_stage = (uint32_t)p.A * G::CATOM;
  const uint32_t c_off = (uint32_t)p.NXS * x_slot;
  const uint32_t bar0 = sbase + c_off + (uint32_t)p.S * c_stage;
  auto cfull = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)i; };
  auto cempty = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(kMaxStages + i); };
  auto xfull = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(2 * kMaxStages + i); };
  auto xempty = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(2 * kMaxStages + kMaxXSlots + i); };

  const int warp = (int)(threadIdx.x >> 5);
  const int lane = (int)(threadIdx.x & 31);

  if (threadIdx.x == 0) {
    for (int i = 0; i < p.S; ++i) {
      mbar_init(cfull(i), 1);
      mbar_init(cempty(i), G::CWARPS);
    }
    for (int i = 0; i < p.NXS; ++i) {
      mbar_init(xfull(i), 1);
      mbar_init(xempty(i), G::CWARPS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmX)) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmC)) : "memory");
  }
  __syncthreads();

  if (warp < 4) {
    /* ============================== producer warpgroup ============================== */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;" ::: "memory");
    if (warp == 0 && lane == 0) {
      int xs = 0, cs = 0;
      uint32_t xph = 0, cph = 0;
      for (int item = blockIdx.x; item < p.items; item += gridDim.x) {
        const int b = item / p.tiles_n;
        const int n0 = (item - b * p.tiles_n) * G::BM;
        mbar_wait(xempty(xs), xph ^ 1u);
        mbar_arrive_expect_tx(xfull(xs), x_slot);
        for (int a = 0; a < p.A; ++a)
          tma_load_3d(sbase + (uint32_t)xs * x_slot + (uint32_t)a * G::XATOM, &tmX, xfull(xs), a * kSwizzleCols, n0, b);
        if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
        for (int t = 0; t < p.T; ++t) {
          mbar_wait(cempty(cs), cph ^ 1u);
          mbar_arrive_expect_tx(cfull(cs), c_stage);
          for (int a = 0; a < p.A; ++a)
            tma_load_3d(sbase + c_off + (uint32_t)cs * c_stage + (uint32_t)a * G::CATOM, &tmC, cfull(cs),
                        a * kSwizzleCols, t * G::BN, b);
          if (++cs == p.S) { cs = 0; cph ^= 1u; }
        }
      }
    }
    return;
  }

  /* ============================== consumer warpgroups ============================== */
  if constexpr (G::NWG == 2)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;" ::: "memory");
  else
    asm volatile("setmaxnreg.inc.sync.aligned.u32 160;" ::: "memory");

  const int cw = warp - 4;  /* 0 .. 4 NWG - 1 */
  const int wg = cw >> 2;   /* rows [64*wg, 64*wg + 64) of the item */
  const int wq = cw & 3;    /* rows 16*wq .. 16*wq + 15 of those */
  const int gq = lane >> 2;
  const int tq = lane & 3;
  const uint32_t a_row_off = (uint32_t)wg * 64u * 128u; /* 8 KB: a multiple of 1024 */
  const int row0 = wg * 64 + wq * 16 + gq;              /* item rows row0 and row0 + 8 */
  const int my_turn = kTurnBar + wg, next_turn = kTurnBar + (wg + 1) % G::NWG;

  float acc[G::NACC];
  float bs[2] = {INFINITY, INFINITY};
  int bi[2] = {0, 0};
  float xn[2] = {0.f, 0.f};
  int cs = 0, xs = 0;
  uint32_t cph = 0, xph = 0;
  const int steps = ((p.items - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x) * p.T;
  int step = 0;

  /* warpgroup 0 issues first; after that each hands the turn to the next, round robin */
  if (wg == G::NWG - 1) named_bar_arrive(kTurnBar, kTurnThreads);

  for (int item = blockIdx.x; item < p.items; item += gridDim.x) {
    const int b = item / p.tiles_n;
    const int n0 = (item - b * p.tiles_n) * G::BM;
    const uint32_t xbase = sbase + (uint32_t)xs * x_slot;
    const float *cn_b = p.cnorm + (size_t)b * (size_t)p.kpad + 2 * tq;
    for (int t = 0; t < p.T; ++t, ++step) {
      named_bar_sync(my_turn, kTurnThreads);
      if (t == 0) mbar_wait(xfull(xs), xph);
      mbar_wait(cfull(cs), cph);
      __syncwarp();
      {
        const uint32_t a_base = xbase + a_row_off;
        const uint32_t b_base = sbase + c_off + (uint32_t)cs * c_stage;
        switch (p.KS) {
        case 1: issue_tile<kBF16, 1, G>(acc, a_base, b_base); break;
        case 2: issue_tile<kBF16, 2, G>(acc, a_base, b_base); break;
        case 3: issue_tile<kBF16, 3, G>(acc, a_base, b_base); break;
        case 4: issue_tile<kBF16, 4, G>(acc, a_base, b_base); break;
        case 5: issue_tile<kBF16, 5, G>(acc, a_base, b_base); break;
        case 6: issue_tile<kBF16, 6, G>(acc, a_base, b_base); break;
        case 7: issue_tile<kBF16, 7, G>(acc, a_base, b_base); break;
        default: issue_tile<kBF16, 8, G>(acc, a_base, b_base); break;
        }
      }
      if (wg != G::NWG - 1 || step + 1 < steps) named_bar_arrive(next_turn, kTurnThreads);

      if (t == 0) {
        /* ||x||^2 of rows row0, row0 + 8: whole 16-byte units of a row (the swizzle
         * permutes units within the row), columns >= D are zero-filled by TMA */
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint8_t *rp = smem + (size_t)xs * x_slot + (size_t)(row0 + 8 * h) * 128u + (size_t)tq * 32u;
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
#pragma unroll
      for (int i = 0; i < 16; ++i) cnv[i] = __ldg(cnp + 4 * i);

      wg_wait<0>();
      acc_fence(acc);
      __syncwarp();
      if (lane == 0) {
        mbar_arrive(cempty(cs));
        if (t == p.T - 1) mbar_arrive(xempty(xs));
      }
      if (++cs == p.S) { cs = 0; cph ^= 1u; }

      float lb[2] = {INFINITY, INFINITY};
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
    /* the item's rows: lexicographic (score, index) minimum over the quad's lanes */
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float s = bs[h];
      int k = bi[h];
#pragma unroll
      for (int m = 1; m <= 2; m <<= 1) {
        const float os = __shfl_xor_sync(0xffffffffu, s, m);
        const int ok = __shfl_xor_sync(0xffffffffu, k, m);
        if (os < s || (os == s && ok < k)) { s = os; k = ok; }
      }
      float xx = xn[h];
      xx += __shfl_xor_sync(0xffffffffu, xx, 1);
      xx += __shfl_xor_sync(0xffffffffu, xx, 2);
      const int n = n0 + row0 + 8 * h;
      if (tq == h && n < p.N) {
        const size_t o = (size_t)b * (size_t)p.N + (size_t)n;
        p.labels[o] = k;
        p.dist[o] = fmaxf(0.f, xx + s);
      }
      bs[h] = INFINITY;
      bi[h] = 0;
    }
    if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
  }
#elif defined(__CUDA_ARCH__)
  (void)tmX;
  (void)tmC;
  (void)p;
  __trap(); /* sm_90a only; supports() rejects every other device */
#endif
}

/* ---------------------------------------------------------------------------------- */
/* host side                                                                            */

/* The geometry at run time: which of the two kernels, and its sizes. */
struct Shape {
  const char *name; /* the variant */
  int nwg, bm, bn;
  uint32_t xatom, catom;
};
template <class G>
static Shape shape_of(const char *name) {
  return Shape{name, G::NWG, G::BM, G::BN, G::XATOM, G::CATOM};
}
static const Shape kShapePP = shape_of<GeoPP>("assign/flash_wgmma_pp");
static const Shape kShapePP3 = shape_of<GeoPP3>("assign/flash_wgmma_pp3");

struct Cfg {
  int A, KS, S, NXS;
  size_t smem;
};

/* Two X slots (the next item's X loads during this one) and as many C stages as fit, at
 * least 2. (pp, D = 128: one X slot and three stages measured slower, 0.550 vs 0.517 ms.) */
static int make_cfg(const Shape &g, int64_t D, int64_t smem_optin, Cfg *c) {
  memset(c, 0, sizeof *c);
  if (D < 8 || D > kMaxD) return -1;
  c->A = (int)((D + 63) / 64);
  c->KS = (int)((D + 15) / 16);
  c->NXS = kMaxXSlots;
  const int64_t fixed = kAlignSlack + kBarBytes + (int64_t)c->NXS * c->A * g.xatom;
  const int64_t stage = (int64_t)c->A * g.catom;
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
  const void *x, *c;
  fkm_shape s;
  Shape g;
  Cfg cfg;
  float *cn;
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
  if (make_cfg(g, s->D, dev->smem_per_block_optin, &cfg) != 0) return no("not enough shared memory per block");
  return FKM_OK;
}

static void pp_teardown(void *state) {
  State *st = static_cast<State *>(state);
  if (!st) return;
  if (st->cn) cudaFree(st->cn);
  delete st;
}

static fkm_status pp_encode(State *st, const fkm_problem *p) {
  FKM_TRY(encode_map(&st->tmX, p->x, p->s.dtype, p->s.D, p->s.N, p->s.B, st->g.bm, st->g.name));
  FKM_TRY(encode_map(&st->tmC, p->c, p->s.dtype, p->s.D, p->s.K, p->s.B, st->g.bn, st->g.name));
  st->x = p->x;
  st->c = p->c;
  return FKM_OK;
}

template <bool kBF16>
static const void *kernel_of(const Shape &g) {
  return g.nwg == 2 ? (const void *)flash_assign_pp_kernel<kBF16, GeoPP>
                    : (const void *)flash_assign_pp_kernel<kBF16, GeoPP3>;
}

static fkm_status setup_g(const Shape &g, const fkm_problem *p, void **state) {
  *state = nullptr;
  const fkm_shape *s = &p->s;
  int dev = 0, cc_major = 0, cc_minor = 0, sms = 0, optin = 0;
  FKM_CUDA(cudaGetDevice(&dev));
  FKM_CUDA(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  FKM_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  fkm_device d;
  memset(&d, 0, sizeof d);
  d.present = 1;
  d.cc = cc_major * 10 + cc_minor;
  d.sm_count = sms;
  d.smem_per_block_optin = optin;
  char why[256] = "";
  if (supports_g(g, s, &d, why, sizeof why) != FKM_OK) return fkm_fail(FKM_ERR_NOT_SUPPORTED, "%s: %s", g.name, why);

  State *st = new (std::nothrow) State();
  if (!st) return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate state", g.name);
  st->s = *s;
  st->g = g;
  (void)make_cfg(g, s->D, optin, &st->cfg); /* supports_g checked it */
  st->tiles_n = (int)((s->N + g.bm - 1) / g.bm);
  st->T = (int)((s->K + g.bn - 1) / g.bn);
  const int64_t items = (int64_t)st->tiles_n * s->B;
  st->grid = (int)(items < (int64_t)sms ? items : (int64_t)sms);

  const size_t cn_bytes = sizeof(float) * (size_t)s->B * (size_t)st->T * (size_t)g.bn;
  if (p->scratch_budget != 0 && cn_bytes > p->scratch_budget) {
    pp_teardown(st);
    return fkm_fail(FKM_ERR_OOM, "%s: needs %zu bytes of scratch, budget is %zu", g.name, cn_bytes,
                    p->scratch_budget);
  }
  cudaError_t e = cudaMalloc(reinterpret_cast<void **>(&st->cn), cn_bytes);
  if (e != cudaSuccess) {
    st->cn = nullptr;
    pp_teardown(st);
    return fkm_cuda_fail_at(e, "cudaMalloc(cn)", __FILE__, __LINE__);
  }
  fkm_status rs = pp_encode(st, p);
  if (rs != FKM_OK) {
    pp_teardown(st);
    return rs;
  }
  const void *fn = s->dtype == FKM_BF16 ? kernel_of<true>(g) : kernel_of<false>(g);
  e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
  if (e != cudaSuccess) {
    pp_teardown(st);
    return fkm_cuda_fail_at(e, "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", __FILE__, __LINE__);
  }
  *state = st;
  return FKM_OK;
}

template <bool kBF16, class G>
static void launch(const State *st, const Params &prm, cudaStream_t stream) {
  flash_assign_pp_kernel<kBF16, G><<<st->grid, G::THREADS, st->cfg.smem, stream>>>(st->tmX, st->tmC, prm);
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
  if (s->dtype == FKM_BF16)
    cnorm_kernel<true><<<nblk, 256, 0, stream>>>(static_cast<const uint16_t *>(p->c), st->cn, (int)s->K, (int)s->D,
                                                 kpad, rows);
  else
    cnorm_kernel<false><<<nblk, 256, 0, stream>>>(static_cast<const uint16_t *>(p->c), st->cn, (int)s->K,
                                                  (int)s->D, kpad, rows);
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
  prm.cnorm = st->cn;
  prm.labels = p->labels;
  prm.dist = p->dist;
  const bool bf = s->dtype == FKM_BF16;
  if (st->g.nwg == 2) {
    if (bf) launch<true, GeoPP>(st, prm, stream);
    else launch<false, GeoPP>(st, prm, stream);
  } else {
    if (bf) launch<true, GeoPP3>(st, prm, stream);
    else launch<false, GeoPP3>(st, prm, stream);
  }
  FKM_CUDA_LAUNCH();
  return FKM_OK;
}

static fkm_status pp_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {
  return supports_g(kShapePP, s, d, w, n);
}
static fkm_status pp3_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {
  return supports_g(kShapePP3, s, d, w, n);
}
static fkm_status pp_setup(const fkm_problem *p, void **state) { return setup_g(kShapePP, p, state); }
static fkm_status pp3_setup(const fkm_problem *p, void **state) { return setup_g(kShapePP3, p, state); }

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
