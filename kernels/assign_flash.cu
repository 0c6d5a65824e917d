/* assign_flash.cu — `assign/flash`: the FlashAssign users call. It delegates
 * setup/run/teardown to one of the implementations, chosen without timing:
 *   1. the autotune cache (harness/autotune.h), when it holds an entry for
 *      this device and the shape's bucket (`flashkm autotune` writes it);
 *   2. else the shape heuristic below, a pure function of shape, dtype and
 *      device properties; each implementation that does not run on the
 *      device or shape passes the choice to the next in its order.
 * The results row names what ran ("impl"), with " (tuned)" when the cache
 * chose; `flashkm list` lists the candidates. */
#include "assign_flash.h"
#include "autotune.h"
#include "error.h"
#include "variant.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const fkm_variant *impl;
  void *impl_state;
  int tuned;
  char describe[96];
} flash_state;

static const fkm_variant *usable(const char *name, const fkm_shape *s, const fkm_device *dev) {
  const fkm_variant *v = fkm_variant_find(name);
  /* only exact implementations: a tf32 one must be asked for by name */
  if (!v || v->op != FKM_OP_ASSIGN || v->min_cc == 0 || dev->cc < v->min_cc || (v->max_cc && dev->cc > v->max_cc) ||
      v->compute != FKM_COMPUTE_EXACT)
    return NULL;
  char why[256];
  if (v->supports && v->supports(s, dev, why, sizeof why) != FKM_OK) return NULL;
  return v;
}

/* The heuristic, from the H100 ablations (results/h100/ablation_assign.json
 * and ablation_heuristics.json, fp16; medians in ms, the winner first):
 *  - little work per point and enough points: flash_mma, whose 128-point
 *    blocks stream X with all centroids resident in shared memory and no
 *    warpgroup-wide epilogue to wait for — D <= 64 up to K = 8192, or
 *    K <= 256 with D <= 128 (1M x 1024 x 64: 0.550 vs wgmma 0.598; 10M x 8192
 *    x 64: 38.8 vs bm256 40.3; 1M x 128 x 128: 0.128 vs 0.138). Its blocks
 *    need about 16 per SM (B*N >= 16 * 128 * SMs, ~270K points on an H100) to
 *    hide their latency: 65536 x 1024 x 64 runs 0.047 on wgmma, 0.052 on mma.
 *  - many centroid tiles per point tile (K >= 8192): flash_wgmma_bm256, whose
 *    256-point blocks read each centroid tile from L2 once per 256 points
 *    instead of 128 and pay the fold's fixed costs half as often: 1M x 8192 x
 *    128 5.14 vs 5.37, 1M x 65536 x 128 38.7 vs 43.6, 65536 x 8192 x 64 0.287
 *    vs 0.337 (mma); at K = 4096 its serialised fold still loses (1M x 4096 x
 *    512: 7.45 vs 6.57).
 *  - otherwise flash_wgmma (BM = 128).
 * Ahead of all these, for D <= 128, the ping-pong kernels, which beat every pick above
 * (flash_wgmma_pp: 1M x 1000 x 128 0.497 vs 0.705 wgmma; 1M x 1000 x 64 0.389 vs 0.550
 * mma); between the two (H100, 2026-11-26, A/B runs in both orders and
 * results/h100/ablation_heuristics.json; pp with A in registers and its norm step from
 * K = 4097, 769 at D > 112):
 *  - flash_wgmma_pp3 (3 warpgroups, 64 x 128 tiles: two fold while one multiplies) with
 *    at least 2^20 points for K <= 128 (1M x 128 x 128: 0.116 vs 0.128 mma, 0.168 pp),
 *    and at D <= 64 for 256 < K < 16384 with at least 2^18 points per batch (1M x 4096
 *    x 64: 1.38 vs 1.53 pp before pp's A in registers; 1M x 1024 x 64 0.384 vs 0.389 and
 *    8192 x 64 2.79 vs 2.83 after);
 *  - flash_wgmma_pp for the other K > 256 (1M x 1024 x 128: 0.497 vs 0.511 pp3; 32 x
 *    75600 x 1000 x 128: 1.14 vs 1.19; 1M x 65536 x 128: 29.7 vs 36.6; 1M x 200000 x 128:
 *    98.9 vs 111.5; 65536 x 1024 x 64: 0.037, fewer points).
 * Where they do not run (D % 8, not sm_90a) the list above applies.
 * Each list ends in the portable implementations (flash_mma: sm80+, fp16/bf16;
 * flash_simt: anything). */
static const fkm_variant *heuristic(const fkm_shape *s, const fkm_device *dev) {
  static const char *const mma_first[] = {"assign/flash_mma", "assign/flash_wgmma", "assign/flash_simt", NULL};
  static const char *const bm256_first[] = {"assign/flash_wgmma_bm256", "assign/flash_wgmma", "assign/flash_mma",
                                            "assign/flash_simt", NULL};
  static const char *const wgmma_first[] = {"assign/flash_wgmma", "assign/flash_mma", "assign/flash_simt", NULL};
  const int64_t sms = dev->sm_count > 0 ? dev->sm_count : 132;
  const int mma_fills = s->B * s->N >= 16 * 128 * sms;
  const char *const *order = wgmma_first;
  if ((s->D <= 64 && s->K <= 8192 && mma_fills) || (s->K <= 256 && s->D <= 128)) order = mma_first;
  else if (s->K >= 8192) order = bm256_first;
  if (s->D <= 128) {
    const int many_points = s->B * s->N >= ((int64_t)1 << 20);
    const int long_batches = s->N >= ((int64_t)1 << 18);
    const char *pp = NULL;
    if ((s->K <= 128 && many_points) || (s->D <= 64 && s->K > 256 && s->K < 16384 && long_batches))
      pp = "assign/flash_wgmma_pp3";
    else if (s->K > 256)
      pp = "assign/flash_wgmma_pp";
    const fkm_variant *v = pp ? usable(pp, s, dev) : NULL;
    if (v) return v;
  }
  for (int i = 0; order[i]; i++) {
    const fkm_variant *v = usable(order[i], s, dev);
    if (v) return v;
  }
  return NULL;
}

/* The cache's choice when it has one that runs here, else the heuristic's. */
static const fkm_variant *choose(const fkm_shape *s, const fkm_device *dev, int *tuned) {
  const char *name = fkm_autotune_lookup(s, dev);
  const fkm_variant *v = name ? usable(name, s, dev) : NULL;
  if (tuned) *tuned = v != NULL;
  return v ? v : heuristic(s, dev);
}

static fkm_status flash_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  if (choose(s, dev, NULL)) return FKM_OK;
  snprintf(why, n, "no FlashAssign implementation supports this shape on this device");
  return FKM_ERR_NOT_SUPPORTED;
}

static fkm_status flash_setup(const fkm_problem *p, void **state) {
  fkm_device dev;
  fkm_device_query(&dev);
  int tuned = 0;
  const fkm_variant *v = choose(&p->s, &dev, &tuned);
  if (!v) return fkm_fail(FKM_ERR_NOT_SUPPORTED, "no FlashAssign implementation supports this shape on this device");
  flash_state *f = (flash_state *)calloc(1, sizeof *f);
  if (!f) return fkm_fail(FKM_ERR_OOM, "assign/flash: out of host memory");
  f->impl = v;
  f->tuned = tuned;
  snprintf(f->describe, sizeof f->describe, "%s%s", v->name, tuned ? " (tuned)" : "");
  fkm_status st = v->setup ? v->setup(p, &f->impl_state) : FKM_OK;
  if (st != FKM_OK) {
    free(f);
    return st;
  }
  *state = f;
  return FKM_OK;
}

static fkm_status flash_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  flash_state *f = (flash_state *)state;
  return f->impl->run(p, f->impl_state, stream);
}

static void flash_teardown(void *state) {
  flash_state *f = (flash_state *)state;
  if (!f) return;
  if (f->impl->teardown) f->impl->teardown(f->impl_state);
  free(f);
}

static const char *flash_describe(void *state) { return ((flash_state *)state)->describe; }

/* assign_flash.h */
extern "C" const char *fkm_assign_flash_choice(const fkm_shape *s, const fkm_device *dev) {
  const fkm_variant *v = choose(s, dev, NULL);
  return v ? v->name : NULL;
}

extern "C" const fkm_variant fkm_assign_flash = {
    "assign/flash", FKM_OP_ASSIGN,
    "FlashAssign dispatcher: the autotune cache's pick, else a shape heuristic (for D <= 128 the ping-pong "
    "kernels flash_wgmma_pp / _pp3; else flash_mma for little work per point, flash_wgmma_bm256 for large K, "
    "flash_wgmma; flash_simt where nothing else runs)",
    70, 0, flash_supports, flash_setup, flash_run, flash_teardown, flash_describe};
