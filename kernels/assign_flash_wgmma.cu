/* assign_flash_wgmma.cu — assign/flash_wgmma and assign/flash_wgmma_bm256: fused distance + argmin on Hopper
 * (sm_90a) with TMA, mbarrier pipelines and wgmma; the N x K distance matrix
 * never touches memory (Flash-KMeans, arXiv 2603.09229).
 *
 * For every point x_n of every batch: label = argmin_k s_k, s_k = ||c_k||^2 - 2 x_n.c_k
 * (fp32; ties -> lowest k), dist = max(0, ||x_n||^2 + s_label).
 *
 * Kernels
 *   1. cnorm_digits_kernel without digits: ||c_k||^2 in fp32 (from the rounded fp16/bf16
 *      values) into scratch cn[B][Kpad], Kpad = ceil(K/128)*128; padded columns k >= K get
 *      +inf, so s = fmaf(-2, 0, +inf) = +inf can never win a strict '<' (the K-tail mask).
 *   2. the fused kernel, one of (chosen in setup, named by describe()):
 *      assign/flash_wgmma:        flash_assign_kernel, BM = 128 points per work item, every D,
 *                                 per-element select fold (tile_argmin). The fastest on the
 *                                 H100 so far: 0.710 ms at 1Mx1024x128 fp16 (NOTES.md).
 *      assign/flash_wgmma_bm256:  D <= 128: flash_assign_rb2_kernel, BM = 256 ("bm256");
 *                                 D > 128: flash_assign_kernel with the min-then-scan fold.
 *                                 Measured slower (0.808 ms): kept to develop further.
 *      Both: persistent grid (min(#SMs, #items) blocks of 384 threads, 1 block/SM); work
 *      item = (batch b, BM-point tile), item = blockIdx.x + j*gridDim.x (so the blocks of a
 *      wave work on one or two batches at a time: that batch's C stays hot in L2).
 * *
 * Block roles (warp specialisation, setmaxnreg 40 / 232)
 *   warpgroup 0 (producer): one thread issues every TMA; in the bm128 kernel warps 1-3 sum
 *     ||x||^2 of each item's rows from its X tile (the rest of warp 0 exits; bm256, and
 *     bm128 with one centroid tile an item: all, kOwnNorms below).
 *   warpgroups 1, 2 (consumers): wgmma.m64n128k16 (fp32 accum) with A = X rows and
 *     B = a 128-centroid tile, both from shared memory through descriptors (K-major,
 *     128-byte swizzle); two accumulator sets of 64 fp32 registers per thread.
 *
 * Shared-memory layout (base rounded up to 1024 B; everything 128B-swizzled by TMA)
 *   An "atom" = rows x 64 elements (128 B per row): 128 rows (16 KB) for C and for bm128's X,
 *   256 rows (32 KB) for bm256's X. D is split into A = ceil(D/64) atoms (columns >= D are
 *   zero-filled by TMA, as are rows >= N / >= K: 3-D tensor maps (D, rows, B) so a box never
 *   crosses a batch).
 *
 * ---- bm256 (D <= 128) --------------------------------------------------------------
 * Why: with BM = 128 every block streams all of C once per 128 points: 1/128 byte of C per
 *   FLOP from L2 (~4.3 TB/s at 550 TFLOP/s) and as much TMA traffic into shared memory, on
 *   top of the wgmma operand reads. 256 points per tile halves both.
 * Consumer warpgroup w owns item rows [128w, 128w+128) as two 64-row blocks R0, R1 with
 *   their own accumulator set (accA, accB): one C tile in smem feeds 4 x m64n128 blocks.
 *   X ring: NXS slots of one item (256 x D); C: S stages of one tile (128 x D).
 *   Config (H100, 227 KB opt-in; unit = one C stage, an X slot = 2 units):
 *     ring     : D <= 64: S=8 NXS=3 (224 KB);  D <= 128: S=3 NXS=2 (224 KB)
 *     resident : if all T = ceil(K/128) tiles fit beside >= 2 X slots (D <= 64: T <= 8,
 *                D <= 128: T <= 3): S = T stages loaded once per batch (the producer refills
 *                them only when the batch changes, after every consumer warp released them)
 *                and the rest deepens the X ring (K = 128, D = 128: NXS = 3, 192 KB of X in
 *                flight per SM): small K is pure X streaming and needs loads in flight.
 *                A refill stalls the block for one C load, so resident only if batch
 *                changes are rare: B == 1 or >= 8 items per block per batch.
 * Pipeline per consumer warpgroup, tile t (nothing in flight at its start or end, see below):
 *   wait X (first tile) + C stage -> G0 = wgmmas of R0 -> fold R1 of tile t-1 (+ write the
 *   item's R1 rows if t-1 was its last tile) -> G1 = wgmmas of R1 -> ||x||^2 (first tile) ->
 *   ||c||^2 loads -> wait_group 1 (G0 done) -> fold R0 (+ write R0 rows if last tile) ->
 *   wait_group 0 -> release the C stage (ring; resident: only at the batch's last item) and,
 *   after the item's last tile, the X slot. So each fold runs under the other block's MMAs
 *   (and the other warpgroup's), and no accumulator set needs a second copy: the register
 *   budget is bm128's.
 *
 * ---- bm128 (D > 128, and the v1 variant) ---------------------------------------------
 * Consumer warpgroup w owns rows [64w, 64w+64) of a 128-point tile.
 *   A "chunk" = CH consecutive atoms (CH = A for D <= 128, CH = 2 above), NCH = ceil(A/CH).
 *   X ring:  NXS slots of CH atoms (one X chunk of one item each), full/empty mbarriers.
 *   C ring:  S stages of CH atoms (one chunk of one 128-centroid tile), full/empty mbarriers.
 *   Config (H100, 227 KB opt-in):
 *       D <= 64 : CH=1 NCH=1 NXS=4 S=8   (192 KB)   X 4 slots          (v1 only)
 *       D <= 128: CH=2 NCH=1 NXS=3 S=4   (224 KB)   X triple buffered  (v1 only)
 *       D <= 256: CH=2 NCH=2 NXS=4 S=3   (224 KB)   X double buffered (2 chunks each)
 *       D <= 384: CH=2 NCH=3 NXS=3 S=4   (224 KB)   X single buffered, chunk-pipelined
 *       D <= 512: CH=2 NCH=4 NXS=4 S=3   (224 KB)   X single buffered, chunk-pipelined
 *   So for D > 256 the X tile (up to 128 x 512) stays resident and the *centroid* tiles
 *   stream in D-chunks of 128 columns; the X reload between items is pipelined per chunk:
 *   X chunk c of the next item is loaded as soon as the last centroid tile's chunk c of
 *   the current item has been consumed, so it overlaps the remaining chunks + epilogue.
 *   (An L2 prefetch of the next item's X at each item's start cost 2.7 % at
 *   1M x 1024 x 512: removed, NOTES.md.)
 *   D > 512 is NOT supported (X would not fit); supports() says so.
 * Pipeline (per consumer warpgroup). One "group" = the wgmmas of one chunk of one tile
 * (ks = min(4*CH, ceil(D/16) - 4*CH*c) k-steps of m64n128k16, one commit group); the two
 * accumulator sets hold tiles t and t+1 (acc0/acc1, the tile loop unrolled by two so the
 * set is chosen at compile time). Tile t+1 (set P) runs as:
 *   chunk 0: wait full -> wgmma.fence -> wgmmas (scale-d 0 on the first) -> commit ->
 *            argmin epilogue of tile t on the other set (tensor cores busy meanwhile) ->
 *            item finalize if tile t ended an item
 *   chunk c: wait full -> wgmmas -> commit -> wait_group 1 -> release chunk c-1
 *   end:     __ldg ||c||^2 of tile t+1's columns -> wait_group 0 -> release last chunk
 *   Releases of the item's last tile also free the X chunk slots.
 *
 * ptxas (CUDA 13.0) and wgmma: if any loop keeps a wgmma group pending across its back edge
 *   while reading the other accumulator set, ptxas serialises every wgmma of the kernel
 *   (C7514) or injects a full wait before the epilogue (C7517); a branch between the wgmmas
 *   of one group makes it close and reopen the group around each. So every tile body starts
 *   and ends with no wgmma in flight, and each group is straight-line code (a switch only
 *   picks the sequence). Check after any edit: -Xptxas -v prints no C75xx line. Cost: per
 *   warpgroup a short issue gap between tiles, filled by the other consumer warpgroup.
 *   ||c||^2 comes from global (tiny, L1/L2 resident) so all smem goes to X/C tiles.
 *   ||x||^2 is summed from the X tile in shared memory by the producer warpgroup's warps 1-3
 *   (a thread per row, whole 16-byte units: the swizzle does not matter), which also hold
 *   each X chunk slot until they have read it; the sums reach the consumers' item finalize
 *   through two 128-float buffers and named barriers. Summed by the consumers in an item's
 *   first tile, they emptied both warpgroups' MMA queues at once (1M x 1024 x 512: 1.78 ->
 *   1.61 ms together with the prefetch's removal, H100; NOTES.md). With a single centroid
 *   tile an item (K <= 128) the norm warps' sums arrive too late for it, and the consumers
 *   sum their own rows in that tile (kOwnNorms, D > 64: 1M x 128 x 256 0.250 -> 0.209 ms).
 *
 * Epilogue: thread (warp w of the warpgroup, lane = 4g + q) holds rows 16w+g and 16w+g+8
 *   of a 64-row block and columns 8j + 2q + {0,1}, j = 0..15 (wgmma D fragment layout).
 *   tile_fold (bm256, bm128): per row the min of the thread's 32 scores (FFMA + FMNMX per
 *   element), the quad's min M; only if M beats the row's running best (strict '<': later
 *   tiles have larger indices) do the lanes holding M find their first column equal to M and
 *   the quad keeps the lowest. tile_argmin (v1): scans every column in increasing order with
 *   a strict '<' (FFMA + compare + 2 selects per element). Both end in a 4-lane reduce that
 *   is lexicographic on (score, index), so ties -> lowest index either way.
 *
 * Design notes / limits
 *   * bm128 at D > 128 still streams C once per 128 points; a 2-CTA cluster with TMA
 *     multicast of the centroid chunks would halve its L2 traffic; not done here.
 *   * bm256 load balance: #items = B * ceil(N/256); the last round of the persistent grid
 *     is partial (1M points: 4096 items on 132 SMs = 31.03 rounds -> 32).
 *   * dtype fp16 / bf16 only (wgmma f16/bf16 -> f32); D % 8 == 0 (TMA 16-byte strides);
 *     D <= 512; compute capability exactly 9.0 (sm_90a features).
 *   * Accuracy: s is computed in the expanded form, so its absolute error is of order
 *     eps_fp32 * (||x||^2 + ||c||^2), not relative to the distance itself.
 *
 * The sm_90a code is guarded by __CUDA_ARCH_FEAT_SM90_ALL so the file also builds for
 * other targets (the kernel body traps there; supports() rejects cc != 90).
 * Debug: -DFKM_FW_HANG_TRAP traps (with a message) on an mbarrier wait that never completes.
 * -DFKM_FW_PHASE_CLOCK: the bm128 kernel's block 0 times its consumer warpgroups' phases per
 *   tile with clock64 (X wait, C wait, MMA issue, epilogue, MMA wait, other); run() prints
 *   the means to stderr (NOTES.md).
 */
#include "variant.h"
#include "device.h"
#include "error.h"
#include "sm90_tma_wgmma.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <limits.h>
#include <math.h>
#include <new>
#include <stdint.h>
#include <string.h>
#include <stdio.h>

namespace {

constexpr int kBM = 128;               /* points per block tile (2 consumer warpgroups x 64) */
constexpr int kBN = 128;               /* centroids per tile (wgmma N) */
constexpr int kAtomCols = 64;          /* elements per 128-byte swizzle row */
constexpr uint32_t kAtomBytes = 128u * 128u; /* 128 rows x 128 B (both X and C boxes) */
constexpr int kBM2 = 256;              /* points per item of the BM=256 kernel (D <= 128) */
constexpr uint32_t kXAtomBytes2 = 256u * 128u; /* its X atom: 256 rows x 128 B */
constexpr int kThreads = 384;
constexpr int kMaxD = 512;
constexpr int kMaxStages = 8;
constexpr int kMaxXSlots = 8;
constexpr uint32_t kBarBytes = 8u * (2u * kMaxStages + 2u * kMaxXSlots);
/* bm128: ||x||^2 of an item's rows, summed by the producer warpgroup's warps 1-3 into one
 * of two 128-float buffers after the barriers (by item parity), handed to the consumer
 * warps through named barriers (kXnFullBar / kXnEmptyBar + parity, below) */
constexpr uint32_t kXnBytes = 2u * 128u * 4u;
constexpr uint32_t kAlignSlack = 1024u;

struct Params {
  int N, K, D, B;
  int tiles_n;   /* ceil(N / kBM) */
  int items;     /* B * tiles_n */
  int T;         /* ceil(K / kBN) */
  int kpad;      /* T * kBN */
  int A;         /* ceil(D / 64) atoms */
  int KS;        /* ceil(D / 16) k-steps */
  int CH;        /* atoms per chunk */
  int NCH;       /* chunks per tile */
  int NXS;       /* X ring slots */
  int S;         /* C ring stages */
  int resident;  /* BM=256 kernel: all T centroid tiles stay in stages 0..T-1 (S == T) */
  const float *cnorm;
  int32_t *labels;
  float *dist;
};

/* ---------------------------------------------------------------------------------- */
/* sm_90a primitives                                                                    */
#ifdef FKM_FW_SM90A

constexpr uint32_t kEmptyCount = 8u; /* one arrival per consumer warp (2 WG x 4 warps) */
constexpr uint32_t kXnWarps = 3u;     /* the ||x||^2 warps: producer warps 1-3 */
constexpr int kXnFullBar = 2, kXnEmptyBar = 4;
constexpr int kXnBarThreads = 32 * (int)kXnWarps + 256; /* the norm warps and the consumers */

template <int V>
struct IntC {
  static constexpr int value = V;
};

/* Makes the compiler treat every accumulator as (re)written here, so no read of them can
 * be scheduled before the preceding (volatile) wgmma.wait_group. */
__device__ __forceinline__ void acc_fence(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i]));
}

/* D[64x128] (+)= A[64x16] * B[16x128], A and B K-major in shared memory. */
template <bool kBF16>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d);

#define FKM_FW_WGMMA_REGS                                                                          \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                       \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "              \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "              \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define FKM_FW_WGMMA_OUTS                                                                          \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),    \
      "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),  \
      "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),  \
      "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),  \
      "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),  \
      "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),  \
      "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),  \
      "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

/* operands: %0..%63 accumulators, %64 A descriptor, %65 B descriptor, %66 scale-d (0: D = A*B)
 * immediates: scale-a = 1, scale-b = 1, transpose-a = 0 (K-major), transpose-b = 0 (K-major) */
template <>
__device__ __forceinline__ void wgmma_m64n128k16<false>(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d) {
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %66, 0;\n\t"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " FKM_FW_WGMMA_REGS
               ", %64, %65, p, 1, 1, 0, 0;\n\t}"
               : FKM_FW_WGMMA_OUTS
               : "l"(da), "l"(db), "r"(scale_d)
               : "memory");
}
template <>
__device__ __forceinline__ void wgmma_m64n128k16<true>(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d) {
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %66, 0;\n\t"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FKM_FW_WGMMA_REGS
               ", %64, %65, p, 1, 1, 0, 0;\n\t}"
               : FKM_FW_WGMMA_OUTS
               : "l"(da), "l"(db), "r"(scale_d)
               : "memory");
}
#undef FKM_FW_WGMMA_REGS
#undef FKM_FW_WGMMA_OUTS

/* One commit group: NK k-steps of 16 over a chunk. A (64 rows of X) and B (128 centroid
 * rows) chunks consist of 128-row atoms of 128-byte rows; k-step kk lives in atom kk/4 at
 * byte offset 32*(kk%4) inside the (1024-byte aligned) swizzle pattern. */
template <bool kBF16, int NK, uint32_t kAStride = kAtomBytes>
__device__ __forceinline__ void issue_group(float (&d)[64], uint32_t a_base, uint32_t b_base, uint32_t scale0) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < NK; ++kk) {
    const uint32_t kin = (uint32_t)(kk & 3) * 32u;
    const uint32_t aoff = (uint32_t)(kk >> 2) * kAStride + kin; /* X atoms: kAStride apart */
    const uint32_t boff = (uint32_t)(kk >> 2) * kAtomBytes + kin; /* C atoms: 16 KB apart */
    wgmma_m64n128k16<kBF16>(d, make_desc(a_base + aoff), make_desc(b_base + boff), kk == 0 ? scale0 : 1u);
  }
  wg_commit();
}

/* Folds one finished 64x128 accumulator tile into the running per-row (min, argmin).
 * cnv[j] = (||c||^2 of column 8j+2q, of column 8j+2q+1) of this tile. */
__device__ __forceinline__ void tile_argmin(const float (&acc)[64], const float2 (&cnv)[16], int col0,
                                            float (&bs)[2], int (&bi)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float lb = INFINITY;
    int li = 0;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const float s0 = fmaf(acc[4 * j + 2 * h + 0], -2.f, cnv[j].x);
      if (s0 < lb) { lb = s0; li = 8 * j; }
      const float s1 = fmaf(acc[4 * j + 2 * h + 1], -2.f, cnv[j].y);
      if (s1 < lb) { lb = s1; li = 8 * j + 1; }
    }
    if (lb < bs[h]) { bs[h] = lb; bi[h] = col0 + li; }
  }
}

/* Same result as tile_argmin, cheaper: the scores s = ||c||^2 - 2 x.c overwrite acc (the
 * caller no longer needs it), then the record fold (sm90_tma_wgmma.cuh): ~2 instructions
 * per element instead of ~4 (1 instead of 3 on the half-rate ALU pipe), plus a per-row
 * index search only when the row improves. For K ~ 1000 most tiles still pay the search
 * (about the old cost). Every lane of the warp calls it. col0: this lane's first column. */
__device__ __forceinline__ void tile_fold(float (&acc)[64], const float2 (&cnv)[16], int col0, float (&bs)[2],
                                          int (&bi)[2]) {
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    acc[4 * j + 0] = fmaf(acc[4 * j + 0], -2.f, cnv[j].x);
    acc[4 * j + 1] = fmaf(acc[4 * j + 1], -2.f, cnv[j].y);
    acc[4 * j + 2] = fmaf(acc[4 * j + 2], -2.f, cnv[j].x);
    acc[4 * j + 3] = fmaf(acc[4 * j + 3], -2.f, cnv[j].y);
  }
  record_fold<false, 64>(acc, col0, bs, bi);
}

#endif /* FKM_FW_SM90A */

#ifdef FKM_FW_PHASE_CLOCK
/* bm128 kernel, warp 0 of each consumer warpgroup of block 0: cycles per tile of the phases
 * (X wait, C wait, MMA issue, epilogue, MMA wait, other), then the tile count */
__device__ long long g_fw_phase[2][7];
#endif

/* ---------------------------------------------------------------------------------- */
/* the fused kernel                                                                     */

/* kFold2: epilogue fold tile_fold (true) or the original tile_argmin (false; kept so the
 * two can be timed against each other: variant assign/flash_wgmma_v1). */
template <bool kBF16, bool kFold2, bool kOwnNorms>
__global__ void __launch_bounds__(kThreads, 1)
    flash_assign_kernel(const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmC,
                        const Params p) {
#ifdef FKM_FW_SM90A
  extern __shared__ uint8_t smem_raw[];
  /* 1024-byte alignment for the 128B-swizzle atoms (host adds kAlignSlack to the size) */
  const uint32_t raw_addr = smem_u32(smem_raw);
  const uint32_t pad = (1024u - (raw_addr & 1023u)) & 1023u;
  uint8_t *const smem = smem_raw + pad;
  const uint32_t sbase = raw_addr + pad;

  const uint32_t chunk_bytes = (uint32_t)p.CH * kAtomBytes; /* X slot == C stage size */
  const uint32_t c_off = (uint32_t)p.NXS * chunk_bytes;
  const uint32_t bar_off = c_off + (uint32_t)p.S * chunk_bytes;
  const uint32_t bar0 = sbase + bar_off;
  auto cfull = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)i; };
  auto cempty = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(kMaxStages + i); };
  auto xfull = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(2 * kMaxStages + i); };
  auto xempty = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(2 * kMaxStages + kMaxXSlots + i); };
  float *const xn_buf = reinterpret_cast<float *>(smem + bar_off + kBarBytes); /* [2][128] */

  const int warp = (int)(threadIdx.x >> 5);
  const int lane = (int)(threadIdx.x & 31);

  if (threadIdx.x == 0) {
    for (int i = 0; i < p.S; ++i) {
      mbar_init(cfull(i), 1);
      mbar_init(cempty(i), kEmptyCount);
    }
    for (int i = 0; i < p.NXS; ++i) {
      mbar_init(xfull(i), 1);
      mbar_init(xempty(i), kEmptyCount + (kOwnNorms ? 0u : kXnWarps)); /* consumers (+ norm warps) */
    }
    /* make the initialised barriers visible to the async proxy (TMA complete_tx) */
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmX)) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmC)) : "memory");
  }
  __syncthreads();

  if (warp < 4) {
    /* ============================== producer warpgroup ============================== */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;" ::: "memory");
    if (warp == 0 && lane == 0) {
      int xs = 0, cs = 0;
      uint32_t xph = 0, cph = 0;
      for (int item = blockIdx.x; item < p.items; item += gridDim.x) {
        const int b = item / p.tiles_n;
        const int n0 = (item - b * p.tiles_n) * kBM;
        for (int t = 0; t < p.T; ++t) {
          for (int c = 0; c < p.NCH; ++c) {
            const int na = min(p.CH, p.A - c * p.CH);
            if (t == 0) {
              /* X chunk c of this item -> X slot xs */
              mbar_wait(xempty(xs), xph ^ 1u);
              mbar_arrive_expect_tx(xfull(xs), (uint32_t)na * kAtomBytes);
              const uint32_t dst = sbase + (uint32_t)xs * chunk_bytes;
              for (int a = 0; a < na; ++a)
                tma_load_3d(dst + (uint32_t)a * kAtomBytes, &tmX, xfull(xs), (c * p.CH + a) * kAtomCols, n0, b);
              if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
            }
            /* centroid tile t, chunk c -> C stage cs */
            mbar_wait(cempty(cs), cph ^ 1u);
            mbar_arrive_expect_tx(cfull(cs), (uint32_t)na * kAtomBytes);
            const uint32_t dst = sbase + c_off + (uint32_t)cs * chunk_bytes;
            for (int a = 0; a < na; ++a)
              tma_load_3d(dst + (uint32_t)a * kAtomBytes, &tmC, cfull(cs), (c * p.CH + a) * kAtomCols, t * kBN, b);
            if (++cs == p.S) { cs = 0; cph ^= 1u; }
          }
        }
      }
    }
    else if (!kOwnNorms && warp >= 1) {
      /* ||x||^2 of the item's 128 rows, off the consumers' path: thread i sums row i (warp 1
       * also rows 96-127), the 16-byte units of a row in an order rotated by the row so a
       * warp's loads spread over all bank groups; each X chunk is released once read (its
       * empty barrier counts these warps), the sums go to the item's buffer */
      const int r0 = (int)threadIdx.x - 32, r1 = r0 + 96; /* r1 < 128 in warp 1 only */
      int xs0 = 0;
      uint32_t xph0 = 0;
      int it = 0;
      for (int item = blockIdx.x; item < p.items; item += gridDim.x, ++it) {
        const int par = it & 1;
        if (it >= 2) named_bar_sync(kXnEmptyBar + par, kXnBarThreads); /* item it-2's sums read */
        float s0 = 0.f, s1 = 0.f;
        for (int c = 0; c < p.NCH; ++c) {
          int xslot = xs0 + c;
          uint32_t xpar = xph0;
          if (xslot >= p.NXS) { xslot -= p.NXS; xpar ^= 1u; }
          mbar_wait(xfull(xslot), xpar);
          const int na = min(p.CH, p.A - c * p.CH);
          const uint8_t *xb = smem + (size_t)xslot * chunk_bytes;
          for (int a = 0; a < na; ++a) {
            const uint8_t *ra = xb + (size_t)a * kAtomBytes;
#pragma unroll 4
            for (int j = 0; j < 8; ++j)
              s0 = sumsq8<kBF16>(*reinterpret_cast<const uint4 *>(ra + r0 * 128 + (((j + r0) & 7) << 4)), s0);
            if (warp == 1) {
#pragma unroll 4
              for (int j = 0; j < 8; ++j)
                s1 = sumsq8<kBF16>(*reinterpret_cast<const uint4 *>(ra + r1 * 128 + (((j + r1) & 7) << 4)), s1);
            }
          }
          __syncwarp();
          if (lane == 0) mbar_arrive(xempty(xslot));
        }
        xn_buf[par * 128 + r0] = s0;
        if (warp == 1) xn_buf[par * 128 + r1] = s1;
        named_bar_arrive(kXnFullBar + par, kXnBarThreads);
        xs0 += p.NCH;
        if (xs0 >= p.NXS) { xs0 -= p.NXS; xph0 ^= 1u; }
      }
    }
    return;
  }

  /* ============================== consumer warpgroups ============================== */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;" ::: "memory");

  const int cw = warp - 4;     /* 0..7 */
  const int wg = cw >> 2;      /* consumer warpgroup 0/1: tile rows [64*wg, 64*wg+64) */
  const int wq = cw & 3;       /* warp within the warpgroup: rows 16*wq .. 16*wq+15 */
  const int gq = lane >> 2;    /* row within the 8-row group */
  const int tq = lane & 3;     /* column pair within each 8-column block */
  const uint32_t a_row_off = (uint32_t)wg * 64u * 128u; /* 8 KB: multiple of 1024 */
  const int row0 = wg * 64 + wq * 16 + gq;              /* tile rows row0 and row0 + 8 */

  float acc0[64], acc1[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) { acc0[i] = 0.f; acc1[i] = 0.f; }

  float bs[2] = {INFINITY, INFINITY}; /* running min score of rows row0, row0+8 (this thread's columns) */
  int bi[2] = {0, 0};                 /* its centroid index */

  int cs = 0;        /* C ring position */
  uint32_t cph = 0;
  int xs0 = 0;       /* X ring position of chunk 0 of the current item */
  uint32_t xph0 = 0;
  int item = blockIdx.x, t = 0;
  int b = item / p.tiles_n;
  int n0 = (item - b * p.tiles_n) * kBM;

  /* the previous tile, whose epilogue runs while the next tile's first chunk is on the
   * tensor cores */
  bool pv = false;      /* exists */
  bool pv_fin = false;  /* it was its item's last tile: write the item's results after it */
  int pv_col0 = 0;      /* its first centroid index */
  int pv_item = 0;      /* its item */
  float2 cnv[16];       /* ||c||^2 of its columns 8j+2tq, 8j+2tq+1 */
#pragma unroll
  for (int j = 0; j < 16; ++j) cnv[j] = make_float2(0.f, 0.f);

#ifdef FKM_FW_PHASE_CLOCK
  PhaseClock<6> ph(lane == 0 && wq == 0 && blockIdx.x == 0);
#define FW_PHASE(k) ph.mark(k)
#else
#define FW_PHASE(k) \
  do {              \
  } while (0)
#endif

  /* the item's rows: (score, index) minimum over the quad, and ||x||^2 from the norm warps
   * (kOwnNorms: from add_xnorm below)
   * (the block's k-th item uses buffer k % 2; its empty barrier is awaited only by the
   * block's item k + 2, so the consumers arrive on it only when that item exists) */
  float xn[2] = {0.f, 0.f}; /* kOwnNorms: this thread's share of ||x||^2 of its two rows */
  auto finalize = [&](int fitem) {
    const int fb = fitem / p.tiles_n;
    const int fn0 = (fitem - fb * p.tiles_n) * kBM;
    if constexpr (!kOwnNorms) {
      const int par = ((fitem - (int)blockIdx.x) / (int)gridDim.x) & 1;
      named_bar_sync(kXnFullBar + par, kXnBarThreads);
#pragma unroll
      for (int h = 0; h < 2; ++h) xn[h] = tq == 0 ? xn_buf[par * 128 + row0 + 8 * h] : 0.f; /* the merge sums a quad */
      if (fitem + 2 * (int)gridDim.x < p.items) named_bar_arrive(kXnEmptyBar + par, kXnBarThreads);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      quad_merge_write_row(bs[h], bi[h], xn[h], tq == h, fb, fn0 + row0 + 8 * h, p.N, p.labels, p.dist);
      bs[h] = INFINITY;
      bi[h] = 0;
      xn[h] = 0.f;
    }
  };

  /* kOwnNorms: ||x||^2 of this thread's two rows over the atoms of one X chunk, in its first
   * tile. Whole 16-byte units of a row (the swizzle permutes within a row); lane (gq, tq)
   * takes units (2 tq + q) ^ gq, so a warp's 32 loads hit 8 bank groups. */
  auto add_xnorm = [&](int xslot, int na) {
    const uint8_t *xb = smem + (size_t)xslot * chunk_bytes;
    const uint32_t u0 = (uint32_t)(((2 * tq) ^ gq) * 16), u1 = u0 ^ 16u;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint8_t *rp = xb + (size_t)(row0 + 8 * h) * 128u;
      float sq = xn[h];
      for (int a = 0; a < na; ++a) {
        const uint8_t *ra = rp + (size_t)a * kAtomBytes;
        sq = sumsq8<kBF16>(*reinterpret_cast<const uint4 *>(ra + u0), sq);
        sq = sumsq8<kBF16>(*reinterpret_cast<const uint4 *>(ra + u1), sq);
      }
      xn[h] = sq;
    }
  };

  /* waits for X chunk c (first tile of an item only) and the next C stage, then issues the
   * chunk's wgmmas (straight-line sequences: a branch between two wgmmas makes ptxas close
   * and re-open the group around every instruction). Returns the X slot. */
  auto issue_chunk = [&](float(&acc)[64], int c, uint32_t scale0) -> int {
    const int ks = min(4 * p.CH, p.KS - 4 * p.CH * c);
    int xslot = xs0 + c;
    uint32_t xpar = xph0;
    if (xslot >= p.NXS) { xslot -= p.NXS; xpar ^= 1u; }
    FW_PHASE(5);
    if (t == 0) mbar_wait(xfull(xslot), xpar);
    FW_PHASE(0);
    mbar_wait(cfull(cs), cph);
    FW_PHASE(1);
    __syncwarp();
    const uint32_t a_base = sbase + (uint32_t)xslot * chunk_bytes + a_row_off;
    const uint32_t b_base = sbase + c_off + (uint32_t)cs * chunk_bytes;
    switch (ks) {
    case 1: issue_group<kBF16, 1>(acc, a_base, b_base, scale0); break;
    case 2: issue_group<kBF16, 2>(acc, a_base, b_base, scale0); break;
    case 3: issue_group<kBF16, 3>(acc, a_base, b_base, scale0); break;
    case 4: issue_group<kBF16, 4>(acc, a_base, b_base, scale0); break;
    case 5: issue_group<kBF16, 5>(acc, a_base, b_base, scale0); break;
    case 6: issue_group<kBF16, 6>(acc, a_base, b_base, scale0); break;
    case 7: issue_group<kBF16, 7>(acc, a_base, b_base, scale0); break;
    default: issue_group<kBF16, 8>(acc, a_base, b_base, scale0); break;
    }
    FW_PHASE(2);
    return xslot;
  };

  /* releases a consumed C stage (and, in the item's last tile, the X chunk slot it used):
   * one arrival per consumer warp, after all its lanes are done with the buffers */
  auto release = [&](int stage, bool xrel, int xslot) {
    __syncwarp();
    if (lane == 0) {
      mbar_arrive(cempty(stage));
      if (xrel) mbar_arrive(xempty(xslot));
    }
  };

  /* One centroid tile into accumulator set P. Nothing is in flight when it starts or ends
   * (ptxas only overlaps wgmma with code reading the *other* accumulator set when no
   * wgmma group is pending across a loop back edge; otherwise it serialises them all):
   *   chunk 0: issue -> previous tile's epilogue (+ item finalize)
   *   chunk c: issue -> wait_group 1 -> release chunk c-1
   *   end:     ||c||^2 loads for this tile -> wait_group 0 -> release the last chunk */
  auto tile_body = [&](auto pc) {
    constexpr int P = decltype(pc)::value;
    float(&accN)[64] = P ? acc1 : acc0; /* this tile */
    float(&accO)[64] = P ? acc0 : acc1; /* previous tile (complete) */
    const bool last_tile = (t == p.T - 1);

    /* Nothing is in flight here (the previous body ended with wait_group 0); this no-op wait
     * tells ptxas so across the loop back edge. Without it ptxas cannot see that accO is
     * complete and injects a full wait before the epilogue below. */
    wg_wait<0>();
    int xslot = issue_chunk(accN, 0, 0u);
    if (pv) {
      if constexpr (kFold2)
        tile_fold(accO, cnv, pv_col0 + 2 * tq, bs, bi);
      else
        tile_argmin(accO, cnv, pv_col0 + 2 * tq, bs, bi);
      if (pv_fin) finalize(pv_item);
    }
    if constexpr (kOwnNorms) {
      if (t == 0) add_xnorm(xslot, min(p.CH, p.A));
    }
    FW_PHASE(3);
    int stage = cs;
    if (++cs == p.S) { cs = 0; cph ^= 1u; }

    for (int c = 1; c < p.NCH; ++c) {
      const int xs_c = issue_chunk(accN, c, 1u);
      wg_wait<1>(); /* chunk c-1 complete */
      FW_PHASE(4);
      release(stage, last_tile, xslot);
      if constexpr (kOwnNorms) {
        if (t == 0) add_xnorm(xs_c, min(p.CH, p.A - c * p.CH));
      }
      FW_PHASE(5);
      xslot = xs_c;
      stage = cs;
      if (++cs == p.S) { cs = 0; cph ^= 1u; }
    }

    {
      const float2 *src =
          reinterpret_cast<const float2 *>(p.cnorm + (size_t)b * (size_t)p.kpad + (size_t)(t * kBN) + 2 * tq);
#pragma unroll
      for (int j = 0; j < 16; ++j) cnv[j] = __ldg(src + 4 * j);
    }
    FW_PHASE(5);
    wg_wait<0>();
    acc_fence(accN); /* no read of accN may move above the wait */
    FW_PHASE(4);
    release(stage, last_tile, xslot);
#ifdef FKM_FW_PHASE_CLOCK
    ph.tile();
#endif

    pv = true;
    pv_fin = last_tile;
    pv_col0 = t * kBN;
    pv_item = item;
  };

  auto advance = [&]() {
    if (++t == p.T) {
      t = 0;
      item += (int)gridDim.x;
      xs0 += p.NCH;
      if (xs0 >= p.NXS) { xs0 -= p.NXS; xph0 ^= 1u; }
      if (item < p.items) {
        b = item / p.tiles_n;
        n0 = (item - b * p.tiles_n) * kBM;
      }
    }
  };

  int lastP = 0;
  for (;;) {
    tile_body(IntC<0>{});
    advance();
    lastP = 0;
    if (item >= p.items) break;
    tile_body(IntC<1>{});
    advance();
    lastP = 1;
    if (item >= p.items) break;
  }

  /* drain: epilogue of the very last tile (complete: its body ended with wait_group 0) */
  if constexpr (kFold2) {
    if (lastP == 0)
      tile_fold(acc0, cnv, pv_col0 + 2 * tq, bs, bi);
    else
      tile_fold(acc1, cnv, pv_col0 + 2 * tq, bs, bi);
  } else {
    if (lastP == 0)
      tile_argmin(acc0, cnv, pv_col0 + 2 * tq, bs, bi);
    else
      tile_argmin(acc1, cnv, pv_col0 + 2 * tq, bs, bi);
  }
  finalize(pv_item);
#ifdef FKM_FW_PHASE_CLOCK
  ph.store(g_fw_phase[wg]);
#endif
#undef FW_PHASE
#elif defined(__CUDA_ARCH__)
  (void)tmX;
  (void)tmC;
  (void)p;
  __trap(); /* sm_90a only; supports() rejects every other device */
#endif
}

/* ---------------------------------------------------------------------------------- */
/* BM = 256 kernel (D <= 128): each consumer warpgroup owns 128 rows of the item as two
 * 64-row blocks R0/R1 (accumulator sets accA/accB), so one 128-centroid tile in shared memory
 * serves 256 points: half the L2->SM and TMA->smem traffic for C of the BM=128 kernel. The
 * fold of one block overlaps the MMAs of the other (see the header).                    */

template <bool kBF16>
__global__ void __launch_bounds__(kThreads, 1)
    flash_assign_rb2_kernel(const __grid_constant__ CUtensorMap tmX, const __grid_constant__ CUtensorMap tmC,
                            const Params p) {
#ifdef FKM_FW_SM90A
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw_addr = smem_u32(smem_raw);
  const uint32_t pad = (1024u - (raw_addr & 1023u)) & 1023u;
  uint8_t *const smem = smem_raw + pad;
  const uint32_t sbase = raw_addr + pad;

  const uint32_t xslot_bytes = (uint32_t)p.A * kXAtomBytes2; /* one item's X: 256 x D */
  const uint32_t cstage_bytes = (uint32_t)p.A * kAtomBytes;  /* one centroid tile: 128 x D */
  const uint32_t c_off = (uint32_t)p.NXS * xslot_bytes;
  const uint32_t bar0 = sbase + c_off + (uint32_t)p.S * cstage_bytes;
  auto cfull = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)i; };
  auto cempty = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(kMaxStages + i); };
  auto xfull = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(2 * kMaxStages + i); };
  auto xempty = [&](int i) -> uint32_t { return bar0 + 8u * (uint32_t)(2 * kMaxStages + kMaxXSlots + i); };

  const int warp = (int)(threadIdx.x >> 5);
  const int lane = (int)(threadIdx.x & 31);

  if (threadIdx.x == 0) {
    for (int i = 0; i < p.S; ++i) {
      mbar_init(cfull(i), 1);
      mbar_init(cempty(i), kEmptyCount);
    }
    for (int i = 0; i < p.NXS; ++i) {
      mbar_init(xfull(i), 1);
      mbar_init(xempty(i), kEmptyCount);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmX)) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tmC)) : "memory");
  }
  __syncthreads();

  if (warp < 4) {
    /* ============================== producer warpgroup ============================== */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;" ::: "memory");
    if (warp == 0 && lane == 0) {
      int xs = 0, cs = 0;
      uint32_t xph = 0, cph = 0;
      int loaded_b = -1; /* resident: batch whose centroids the stages hold */
      uint32_t fills = 0; /* resident: how many times the stages were (re)filled */
      for (int item = blockIdx.x; item < p.items; item += gridDim.x) {
        const int b = item / p.tiles_n;
        const int n0 = (item - b * p.tiles_n) * kBM2;
        /* the item's X (256 rows) -> X slot xs */
        mbar_wait(xempty(xs), xph ^ 1u);
        mbar_arrive_expect_tx(xfull(xs), (uint32_t)p.A * kXAtomBytes2);
        for (int a = 0; a < p.A; ++a)
          tma_load_3d(sbase + (uint32_t)xs * xslot_bytes + (uint32_t)a * kXAtomBytes2, &tmX, xfull(xs),
                      a * kAtomCols, n0, b);
        if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
        if (p.resident) {
          if (b == loaded_b) continue; /* the stages already hold this batch's centroids */
          for (int t = 0; t < p.T; ++t) {
            /* refill only after every consumer warp is done with the previous batch */
            if (fills > 0) mbar_wait(cempty(t), (fills - 1u) & 1u);
            mbar_arrive_expect_tx(cfull(t), (uint32_t)p.A * kAtomBytes);
            for (int a = 0; a < p.A; ++a)
              tma_load_3d(sbase + c_off + (uint32_t)t * cstage_bytes + (uint32_t)a * kAtomBytes, &tmC, cfull(t),
                          a * kAtomCols, t * kBN, b);
          }
          loaded_b = b;
          ++fills;
        } else {
          for (int t = 0; t < p.T; ++t) {
            mbar_wait(cempty(cs), cph ^ 1u);
            mbar_arrive_expect_tx(cfull(cs), (uint32_t)p.A * kAtomBytes);
            for (int a = 0; a < p.A; ++a)
              tma_load_3d(sbase + c_off + (uint32_t)cs * cstage_bytes + (uint32_t)a * kAtomBytes, &tmC, cfull(cs),
                          a * kAtomCols, t * kBN, b);
            if (++cs == p.S) { cs = 0; cph ^= 1u; }
          }
        }
      }
    }
    return;
  }

  /* ============================== consumer warpgroups ============================== */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;" ::: "memory");

  const int cw = warp - 4;
  const int wg = cw >> 2;   /* consumer warpgroup: item rows [128*wg, 128*wg+128) */
  const int wq = cw & 3;    /* warp within the warpgroup */
  const int gq = lane >> 2;
  const int tq = lane & 3;
  /* block r of this warpgroup = item rows 128*wg + 64*r + [0, 64): 8 KB steps, 1024-aligned */
  const uint32_t a_off0 = (uint32_t)(2 * wg + 0) * 64u * 128u;
  const uint32_t a_off1 = (uint32_t)(2 * wg + 1) * 64u * 128u;
  const int row0 = wg * 128 + wq * 16 + gq; /* block r, half h: item row row0 + 64r + 8h */

  float accA[64], accB[64]; /* block R0, block R1 */
#pragma unroll
  for (int i = 0; i < 64; ++i) { accA[i] = 0.f; accB[i] = 0.f; }

  float bs[2][2] = {{INFINITY, INFINITY}, {INFINITY, INFINITY}}; /* [block][half] */
  int bi[2][2] = {{0, 0}, {0, 0}};
  float xn[2][2] = {{0.f, 0.f}, {0.f, 0.f}};

  int cs = 0; /* C ring position (not resident) */
  uint32_t cph = 0;
  uint32_t seg = 0; /* resident: index of the current run of items of one batch */
  int xs = 0;       /* X slot of the current item */
  uint32_t xph = 0;
  int item = blockIdx.x, t = 0;
  int b = item / p.tiles_n;
  int n0 = (item - b * p.tiles_n) * kBM2;
  auto seg_ends = [&](int it, int bb) -> bool { /* is `it` the last item of its batch run? */
    const int nx = it + (int)gridDim.x;
    return nx >= p.items || nx / p.tiles_n != bb;
  };
  bool last_seg = seg_ends(item, b);

  /* block R1 of the previous tile: its fold runs under this tile's R0 MMAs */
  bool pv = false, pv_fin = false;
  int pv_col0 = 0, pv_b = 0, pv_n0 = 0;

  auto load_cn = [&](float2(&cnv)[16], int fb, int col0) {
    const float2 *src =
        reinterpret_cast<const float2 *>(p.cnorm + (size_t)fb * (size_t)p.kpad + (size_t)col0 + 2 * tq);
#pragma unroll
    for (int j = 0; j < 16; ++j) cnv[j] = __ldg(src + 4 * j);
  };

  auto finalize = [&](int r, int fb, int fn0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      quad_merge_write_row(bs[r][h], bi[r][h], xn[r][h], tq == h, fb, fn0 + row0 + 64 * r + 8 * h, p.N, p.labels,
                           p.dist);
      bs[r][h] = INFINITY;
      bi[r][h] = 0;
      xn[r][h] = 0.f;
    }
  };

  /* ||x||^2 of this thread's 4 rows (whole 16-byte units: the swizzle does not matter) */
  auto add_xnorm = [&](int xslot) {
    const uint8_t *xb = smem + (size_t)xslot * xslot_bytes;
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint8_t *rp = xb + (size_t)(row0 + 64 * r + 8 * h) * 128u + (size_t)tq * 32u;
        float s = xn[r][h];
        for (int a = 0; a < p.A; ++a) {
          const uint4 *q = reinterpret_cast<const uint4 *>(rp + (size_t)a * kXAtomBytes2);
          s = sumsq8<kBF16>(q[0], s);
          s = sumsq8<kBF16>(q[1], s);
        }
        xn[r][h] = s;
      }
  };

  /* one commit group: the KS k-steps of one 64-row block against the tile (straight-line
   * wgmmas: the switch only picks the sequence) */
  auto issue = [&](float(&acc)[64], uint32_t a_base, uint32_t b_base) {
    switch (p.KS) {
    case 1: issue_group<kBF16, 1, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    case 2: issue_group<kBF16, 2, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    case 3: issue_group<kBF16, 3, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    case 4: issue_group<kBF16, 4, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    case 5: issue_group<kBF16, 5, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    case 6: issue_group<kBF16, 6, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    case 7: issue_group<kBF16, 7, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    default: issue_group<kBF16, 8, kXAtomBytes2>(acc, a_base, b_base, 0u); break;
    }
  };

  /* One centroid tile t of the current item. Nothing is in flight at its start or end
   * (see the BM=128 kernel for why ptxas needs that):
   *   G0 = MMAs of R0 -> fold R1 of the previous tile (+ finalize) -> G1 = MMAs of R1 ->
   *   ||x||^2 (first tile) -> ||c||^2 loads -> wait G0 -> fold R0 (+ finalize) -> wait G1 */
  for (;;) {
    const bool last_tile = (t == p.T - 1);
    const int stage = p.resident ? t : cs;
    const uint32_t cpar = p.resident ? (seg & 1u) : cph;
    const bool crel = !p.resident || last_seg; /* resident: keep the tile until the batch changes */

    wg_wait<0>(); /* no-op (nothing in flight): tells ptxas that accB is complete */
    if (t == 0) mbar_wait(xfull(xs), xph);
    mbar_wait(cfull(stage), cpar);
    __syncwarp();
    const uint32_t xa = sbase + (uint32_t)xs * xslot_bytes;
    const uint32_t cb = sbase + c_off + (uint32_t)stage * cstage_bytes;
    issue(accA, xa + a_off0, cb); /* G0 */
    if (pv) {
      float2 cnv[16];
      load_cn(cnv, pv_b, pv_col0);
      tile_fold(accB, cnv, pv_col0 + 2 * tq, bs[1], bi[1]);
      if (pv_fin) finalize(1, pv_b, pv_n0);
    }
    issue(accB, xa + a_off1, cb); /* G1 */
    if (t == 0) add_xnorm(xs);
    {
      float2 cnv[16];
      load_cn(cnv, b, t * kBN);
      wg_wait<1>(); /* G0 complete */
      acc_fence(accA);
      tile_fold(accA, cnv, t * kBN + 2 * tq, bs[0], bi[0]);
    }
    if (last_tile) finalize(0, b, n0);
    wg_wait<0>(); /* G1 complete */
    acc_fence(accB);
    __syncwarp();
    if (lane == 0) {
      if (crel) mbar_arrive(cempty(stage));
      if (last_tile) mbar_arrive(xempty(xs));
    }
    if (!p.resident && ++cs == p.S) { cs = 0; cph ^= 1u; }

    pv = true;
    pv_fin = last_tile;
    pv_col0 = t * kBN;
    pv_b = b;
    pv_n0 = n0;

    if (++t == p.T) {
      t = 0;
      item += (int)gridDim.x;
      if (item >= p.items) break;
      if (++xs == p.NXS) { xs = 0; xph ^= 1u; }
      const int nb = item / p.tiles_n;
      if (nb != b) ++seg;
      b = nb;
      n0 = (item - b * p.tiles_n) * kBM2;
      last_seg = seg_ends(item, b);
    }
  }

  /* drain: R1 of the very last tile (complete: the loop ended with wait_group 0) */
  {
    float2 cnv[16];
    load_cn(cnv, pv_b, pv_col0);
    tile_fold(accB, cnv, pv_col0 + 2 * tq, bs[1], bi[1]);
    finalize(1, pv_b, pv_n0);
  }
#elif defined(__CUDA_ARCH__)
  (void)tmX;
  (void)tmC;
  (void)p;
  __trap();
#endif
}

/* ---------------------------------------------------------------------------------- */
/* host side                                                                            */

/* which kernel / epilogue runs */
enum Path {
  kPathV1 = 0,    /* BM=128 kernel, select fold: assign/flash_wgmma */
  kPathBM128 = 1, /* BM=128 kernel, tile_fold (D > 128) */
  kPathBM256 = 2  /* BM=256 kernel, tile_fold (D <= 128) */
};

struct Cfg {
  int A, KS, CH, NCH, NXS, S;
  int resident; /* BM=256 only: centroid tiles resident (S == T) */
  size_t smem;
};

/* BM=128 kernel: chunking and ring depths for D given the opt-in shared memory per block.
 * Returns 0 on success, -1 if it cannot fit. */
static int make_cfg(int64_t D, int64_t smem_optin, Cfg *c) {
  memset(c, 0, sizeof *c);
  if (D < 8 || D > kMaxD) return -1;
  c->A = (int)((D + 63) / 64);
  c->KS = (int)((D + 15) / 16);
  c->CH = c->A <= 2 ? c->A : 2;
  c->NCH = (c->A + c->CH - 1) / c->CH;
  const int64_t unit = (int64_t)c->CH * kAtomBytes;
  const int64_t fixed = kAlignSlack + kBarBytes + kXnBytes;
  if (smem_optin <= fixed) return -1;
  const int U = (int)((smem_optin - fixed) / unit);
  if (c->NCH == 1) {
    c->NXS = c->CH == 1 ? 4 : 3;
    while (c->NXS > 2 && U - c->NXS < 3) c->NXS--;
  } else {
    c->NXS = (2 * c->NCH <= U - 3) ? 2 * c->NCH : c->NCH;
  }
  c->S = U - c->NXS;
  if (c->S > kMaxStages) c->S = kMaxStages;
  if (c->S < 2 || c->NXS < c->NCH || c->NXS < 2 || c->NXS > kMaxXSlots) return -1;
  c->smem = (size_t)fixed + (size_t)(c->NXS + c->S) * (size_t)unit;
  return 0;
}

/* BM=256 kernel (D <= 128): unit = one centroid stage (128 x A*64 elements), an X slot is
 * two units (256 rows). If all T tiles fit beside two X slots they stay resident and the rest
 * of shared memory deepens the X ring (small K is X-streaming: it needs loads in flight);
 * otherwise a ring of S stages and 2-3 X slots. H100 (227 KB):
 *   D <= 64 : unit 16 KB, U = 14: resident if T <= 8 (X slots (14-T)/2), else S=8 NXS=3
 *   D <= 128: unit 32 KB, U = 7 : resident if T <= 3 (T=1: NXS=3, else 2), else S=3 NXS=2 */
static int make_cfg_rb2(int64_t D, int64_t K, int64_t smem_optin, bool allow_resident, Cfg *c) {
  memset(c, 0, sizeof *c);
  if (D < 8 || D > 2 * kAtomCols || K < 1) return -1;
  c->A = (int)((D + 63) / 64);
  c->KS = (int)((D + 15) / 16);
  c->CH = c->A;
  c->NCH = 1;
  static_assert(kXAtomBytes2 == 2u * kAtomBytes, "an X slot is two centroid-stage units");
  const int64_t unit = (int64_t)c->A * kAtomBytes;
  const int64_t fixed = kAlignSlack + kBarBytes;
  if (smem_optin <= fixed) return -1;
  const int U = (int)((smem_optin - fixed) / unit);
  const int64_t T = (K + kBN - 1) / kBN;
  if (allow_resident && T <= kMaxStages && T + 4 <= U) {
    c->resident = 1;
    c->S = (int)T;
  } else {
    c->S = U - 4 < kMaxStages ? U - 4 : kMaxStages;
    if (c->S < 2) return -1;
  }
  c->NXS = (U - c->S) / 2;
  if (c->NXS > kMaxXSlots) c->NXS = kMaxXSlots;
  if (c->NXS < 2) return -1;
  c->smem = (size_t)fixed + (size_t)(2 * c->NXS + c->S) * (size_t)unit;
  return 0;
}

struct State {
  CUtensorMap tmX; /* alignas(128) by its type; State is allocated with aligned new */
  CUtensorMap tmC;
  const void *x;
  const void *c;
  fkm_shape s;
  Cfg cfg;
  int path;
  bool own_norms; /* bm128: the consumers sum ||x||^2 (kOwnNorms), not producer warps 1-3 */
  float *cn;
  int sms;
  int grid;
  int tiles_n;
  int T;
};

static const int64_t kMaxTmaStride = (int64_t)1 << 40;

static fkm_status fw_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  auto no = [&](const char *msg) {
    if (why && why_len) snprintf(why, why_len, "%s", msg);
    return FKM_ERR_NOT_SUPPORTED;
  };
  char buf[160];
  if (!dev || !dev->present) return no("needs a GPU");
  if (dev->cc != 90) return no("needs compute capability 9.0 (sm_90a: TMA, wgmma, setmaxnreg)");
  if (s->dtype != FKM_F16 && s->dtype != FKM_BF16) return no("fp16/bf16 only (wgmma f16/bf16 inputs); fp32 not supported");
  if (s->D % 8 != 0) return no("D must be a multiple of 8 (TMA needs 16-byte row strides)");
  if (s->D > kMaxD) {
    snprintf(buf, sizeof buf, "D = %lld > %d: the resident X tile would not fit in shared memory", (long long)s->D, kMaxD);
    return no(buf);
  }
  if (s->D < 8 || s->B < 1 || s->N < 1 || s->K < 1) return no("needs B, N, K >= 1 and D >= 8");
  const int64_t tiles_n = (s->N + kBM - 1) / kBM;
  const int64_t T = (s->K + kBN - 1) / kBN;
  if (s->N > INT32_MAX - kBM || s->K > INT32_MAX - kBN || s->B > INT32_MAX || tiles_n * s->B > INT32_MAX ||
      T * kBN * s->B > INT32_MAX)
    return no("shape too large for 32-bit tile coordinates");
  if (s->N * s->D * 2 >= kMaxTmaStride || s->K * s->D * 2 >= kMaxTmaStride)
    return no("batch stride exceeds the TMA limit of 2^40 bytes");
  Cfg cfg;
  if (make_cfg(s->D, dev->smem_per_block_optin, &cfg) != 0) {
    snprintf(buf, sizeof buf, "not enough shared memory per block (%lld B opt-in) for D = %lld",
             (long long)dev->smem_per_block_optin, (long long)s->D);
    return no(buf);
  }
  return FKM_OK;
}

static void fw_teardown(void *state) {
  State *st = static_cast<State *>(state);
  if (!st) return;
  if (st->cn) cudaFree(st->cn);
  delete st;
}

static fkm_status fw_encode(State *st, const fkm_problem *p) {
  FKM_TRY(encode_map(&st->tmX, p->x, p->s.dtype, p->s.D, p->s.N, p->s.B, st->path == kPathBM256 ? kBM2 : kBM,
                     "assign/flash_wgmma"));
  FKM_TRY(encode_map(&st->tmC, p->c, p->s.dtype, p->s.D, p->s.K, p->s.B, kBN, "assign/flash_wgmma"));
  st->x = p->x;
  st->c = p->c;
  return FKM_OK;
}

/* the bm128 kernel with the norms in the consumers or in the producer warps */
template <bool kBF16, bool kFold2>
static const void *bm128_kernel(bool own_norms) {
  return own_norms ? (const void *)flash_assign_kernel<kBF16, kFold2, true>
                   : (const void *)flash_assign_kernel<kBF16, kFold2, false>;
}
template <bool kBF16, bool kFold2>
static void launch_bm128(const State *st, const Params &prm, size_t sm, cudaStream_t stream) {
  if (st->own_norms) flash_assign_kernel<kBF16, kFold2, true><<<st->grid, kThreads, sm, stream>>>(st->tmX, st->tmC, prm);
  else flash_assign_kernel<kBF16, kFold2, false><<<st->grid, kThreads, sm, stream>>>(st->tmX, st->tmC, prm);
}

static fkm_status fw_setup_path(const fkm_problem *p, void **state, bool v1) {
  *state = nullptr;
  const fkm_shape *s = &p->s;
  fkm_device d;
  FKM_TRY(query_device(&d));
  const int sms = d.sm_count, optin = (int)d.smem_per_block_optin;
  char why[256] = "";
  if (fw_supports(s, &d, why, sizeof why) != FKM_OK)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "assign/flash_wgmma: %s", why);

  State *st = new (std::nothrow) State();
  if (!st) return fkm_fail(FKM_ERR_OOM, "assign/flash_wgmma: cannot allocate state");
  st->s = *s;
  st->sms = sms;
  /* resident centroids: a refill (batch change) stalls the block once, so only when a block
   * meets few batches: B == 1, or >= 8 consecutive items of one batch per block */
  const int64_t tiles_n2 = (s->N + kBM2 - 1) / kBM2;
  const bool allow_resident = s->B == 1 || tiles_n2 >= 8 * (int64_t)sms;
  if (!v1 && make_cfg_rb2(s->D, s->K, optin, allow_resident, &st->cfg) == 0) {
    st->path = kPathBM256;
  } else {
    st->path = v1 ? kPathV1 : kPathBM128;
    (void)make_cfg(s->D, optin, &st->cfg); /* fw_supports checked it */
  }
  const int bm = st->path == kPathBM256 ? kBM2 : kBM;
  st->tiles_n = (int)((s->N + bm - 1) / bm);
  st->T = (int)((s->K + kBN - 1) / kBN);
  /* The producer warps' ||x||^2 pays from two tiles an item on; with one (K <= 128) the
   * consumers wait for it, and summing in their own first tile is faster from D = 96 on
   * (1M x 128 x 256: 0.250 -> 0.209 ms, x 512: 0.450 -> 0.373; D = 64 0.107 -> 0.111;
   * H100, NOTES.md). FKM_FW_OWN_NORMS=0/1 overrides, for measuring. */
  st->own_norms = st->T == 1 && s->D > 64;
  if (const char *e = getenv("FKM_FW_OWN_NORMS")) st->own_norms = e[0] == '1';
  const int64_t items = (int64_t)st->tiles_n * s->B;
  st->grid = (int)(items < (int64_t)sms ? items : (int64_t)sms);

  const size_t cn_bytes = sizeof(float) * (size_t)s->B * (size_t)st->T * (size_t)kBN;
  if (p->scratch_budget != 0 && cn_bytes > p->scratch_budget) {
    fw_teardown(st);
    return fkm_fail(FKM_ERR_OOM, "assign/flash_wgmma: needs %zu bytes of scratch, budget is %zu", cn_bytes,
                    p->scratch_budget);
  }
  cudaError_t e = cudaMalloc(reinterpret_cast<void **>(&st->cn), cn_bytes);
  if (e != cudaSuccess) {
    st->cn = nullptr;
    fw_teardown(st);
    return fkm_cuda_fail_at(e, "cudaMalloc(cn)", __FILE__, __LINE__);
  }
  fkm_status rs = fw_encode(st, p);
  if (rs != FKM_OK) {
    fw_teardown(st);
    return rs;
  }
  /* the device maximum (not this config's size), so states of different D can coexist */
  {
    const void *fn = nullptr;
    const bool bf = s->dtype == FKM_BF16;
    switch (st->path) {
    case kPathV1: fn = bf ? bm128_kernel<true, false>(st->own_norms) : bm128_kernel<false, false>(st->own_norms); break;
    case kPathBM128: fn = bf ? bm128_kernel<true, true>(st->own_norms) : bm128_kernel<false, true>(st->own_norms); break;
    default: fn = bf ? (const void *)flash_assign_rb2_kernel<true> : (const void *)flash_assign_rb2_kernel<false>; break;
    }
    e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
  }
  if (e != cudaSuccess) {
    fw_teardown(st);
    return fkm_cuda_fail_at(e, "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", __FILE__, __LINE__);
  }
  *state = st;
  return FKM_OK;
}

#ifdef FKM_FW_PHASE_CLOCK
static const char *fw_describe(void *state);
#endif
static fkm_status fw_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  State *st = static_cast<State *>(state);
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "assign/flash_wgmma: run without setup");
  const fkm_shape *s = &p->s;
  if (s->B != st->s.B || s->N != st->s.N || s->K != st->s.K || s->D != st->s.D || s->dtype != st->s.dtype)
    return fkm_fail(FKM_ERR_INPUT, "assign/flash_wgmma: run() shape differs from setup()");
  if (p->x != st->x || p->c != st->c) FKM_TRY(fw_encode(st, p)); /* host-only work */

  const int kpad = st->T * kBN;
  const long long rows = (long long)s->B * kpad;
  const unsigned nblk = (unsigned)((rows + 7) / 8);
  const uint16_t *c16 = static_cast<const uint16_t *>(p->c);
  if (s->dtype == FKM_BF16)
    cnorm_digits_kernel<true><<<nblk, 256, 0, stream>>>(c16, st->cn, nullptr, nullptr, 0u, (int)s->K, (int)s->D, kpad,
                                                        rows);
  else
    cnorm_digits_kernel<false><<<nblk, 256, 0, stream>>>(c16, st->cn, nullptr, nullptr, 0u, (int)s->K, (int)s->D, kpad,
                                                         rows);
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
  prm.CH = st->cfg.CH;
  prm.NCH = st->cfg.NCH;
  prm.NXS = st->cfg.NXS;
  prm.S = st->cfg.S;
  prm.resident = st->cfg.resident;
  prm.cnorm = st->cn;
  prm.labels = p->labels;
  prm.dist = p->dist;
  const bool bf = s->dtype == FKM_BF16;
  const size_t sm = st->cfg.smem;
  switch (st->path) {
  case kPathV1:
    if (bf) launch_bm128<true, false>(st, prm, sm, stream);
    else launch_bm128<false, false>(st, prm, sm, stream);
    break;
  case kPathBM128:
    if (bf) launch_bm128<true, true>(st, prm, sm, stream);
    else launch_bm128<false, true>(st, prm, sm, stream);
    break;
  default:
    if (bf) flash_assign_rb2_kernel<true><<<st->grid, kThreads, sm, stream>>>(st->tmX, st->tmC, prm);
    else flash_assign_rb2_kernel<false><<<st->grid, kThreads, sm, stream>>>(st->tmX, st->tmC, prm);
    break;
  }
  FKM_CUDA_LAUNCH();
#ifdef FKM_FW_PHASE_CLOCK
  if (st->path != kPathBM256) {
    long long ph[2][7];
    FKM_CUDA(cudaStreamSynchronize(stream));
    FKM_CUDA(cudaMemcpyFromSymbol(ph, g_fw_phase, sizeof ph));
    for (int w = 0; w < 2; ++w)
      fprintf(stderr,
              "%s %dx%dx%dx%d block 0 warpgroup %d, cycles per tile over %lld tiles: X wait %lld, C wait %lld, "
              "MMA issue %lld, epilogue %lld, MMA wait %lld, other %lld\n",
              fw_describe(st), (int)s->B, (int)s->N, (int)s->K, (int)s->D, w, ph[w][6], ph[w][0], ph[w][1], ph[w][2],
              ph[w][3], ph[w][4], ph[w][5]);
  }
#endif
  return FKM_OK;
}

static fkm_status fw_setup(const fkm_problem *p, void **state) { return fw_setup_path(p, state, false); }
static fkm_status fw_setup_v1(const fkm_problem *p, void **state) { return fw_setup_path(p, state, true); }

static const char *fw_describe(void *state) {
  const State *st = static_cast<const State *>(state);
  if (!st) return "flash_wgmma";
  switch (st->path) {
  case kPathV1: return "flash_wgmma/bm128";
  case kPathBM128: return "flash_wgmma_bm256/bm128";
  default: return st->cfg.resident ? "flash_wgmma_bm256/bm256_resident_c" : "flash_wgmma_bm256/bm256";
  }
}

} /* namespace */

/* The default: BM=128 for every D with the per-element select fold. Measured on an
 * H100 it beats the BM=256 design below (0.710 vs 0.808 ms at 1Mx1024x128 fp16). */
extern "C" const fkm_variant fkm_assign_flash_wgmma = {
    "assign/flash_wgmma",
    FKM_OP_ASSIGN,
    "Hopper fused assign: TMA + mbarrier ring, X tile resident in smem, wgmma m64n128 (BM=128), two consumer "
    "warpgroups, argmin epilogue under the next tile's MMAs, persistent grid; no N x K matrix in memory",
    90,
    90,
    fw_supports,
    fw_setup_v1,
    fw_run,
    fw_teardown,
    fw_describe,
};

/* The 256-points-per-block design (two 64-row blocks per warpgroup, resident centroids
 * for small K, min-then-scan fold): half the centroid traffic, but slower on the H100
 * so far; kept to time against and to develop further. */
extern "C" const fkm_variant fkm_assign_flash_wgmma_bm256 = {
    "assign/flash_wgmma_bm256",
    FKM_OP_ASSIGN,
    "flash_wgmma with 256 points per block for D <= 128 (fold of one 64-row block under the other's MMAs, "
    "resident centroids for small K) and a min-then-scan argmin fold; BM=128 above D=128",
    90,
    90,
    fw_supports,
    fw_setup,
    fw_run,
    fw_teardown,
    fw_describe,
};
