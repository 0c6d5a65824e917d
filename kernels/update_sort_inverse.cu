/* update_sort_inverse.cu — update/sort_inverse: the Flash-KMeans sort-inverse
 * centroid update, fast flavour.
 *
 * Idea: instead of scattering every point's D values into its centroid with
 * float atomics (which serialise on big clusters), build the inverse mapping
 * (the rows of each cluster, contiguous) with a cheap counting sort on the
 * labels, then stream X once in that order: each block takes an equal slice
 * of the sorted order whatever the cluster sizes, keeps the running sum of the
 * current cluster in registers, and flushes it when the cluster changes. Only
 * runs cut by a slice boundary produce partials, combined by a second kernel.
 * Design, geometry and invariants: sort_inverse_common.cuh.
 *
 * Kernels per run (one stream, no host sync, no allocation):
 *   sort_inverse_init        counts = 0, bad = INT32_MAX, off[0] = 0
 *   sort_inverse_histogram   counts[b*K + k] (shared-memory bins per chunk when
 *                            the chunk's segment span fits 24576 bins, else
 *                            warp-aggregated global atomics)
 *   cub DeviceScan           off[1..S] = inclusive sum of counts
 *   sort_inverse_scatter     sidx[pos] = row, sseg[pos] = segment, pos from off[]
 *                            used as per-segment cursors (not stable; see below)
 *   sort_inverse_reduce      segment reduction over the sorted rows
 *   sort_inverse_finish      cross-block chains + empty clusters keep c_old
 *
 * Why a counting sort here (and not CUB radix): with S = B*K segments the
 * histogram + scan + scatter touches the labels three times and writes the
 * sorted rows and segments once, with no digit passes; at 1M points it is ~4 short kernels. The
 * shared-bin path makes the global atomics per chunk proportional to its
 * segment span, not its points, so 8M points x 8192 clusters costs ~2M global
 * atomics rather than 16M. Order within a cluster depends on atomic timing, so
 * this variant is not bitwise reproducible (update/sort_inverse_det is).
 * No float atomics are used at all: cross-block partials go to fixed slots.
 *
 * Bad labels (outside [0, K)): skipped by histogram and scatter, so they count
 * nowhere and corrupt nothing; the first offending flat index b*N + n is
 * atomicMin'ed into the device int32 `bad` of the state (INT32_MAX when all
 * labels are valid), reset at the start of every run. The reduce reads the
 * number of sorted entries from off[S], so skipped points leave no holes. */
#include "sort_inverse_common.cuh"

#include <cub/device/device_scan.cuh>

namespace {

struct SiFastState {
  fkm_shape s;
  int M, S, sms;
  SiHistCfg hc;
  SiRedCfg rc_vec, rc_scalar;
  void *base;
  int *bad;       /* [1]   first bad flat index, INT32_MAX if none */
  int *off;       /* [S+1] segment starts (cursors during the scatter); off[S] = entries */
  int *sidx;      /* [M + pad] sorted rows */
  int *sseg;      /* [M + pad] sorted segments */
  float *part;    /* [nb][2][D] */
  int *tseg;      /* [nb] */
  int *chain_end; /* [S] */
  void *cub_temp;
  size_t cub_bytes;
};

fkm_status si_fast_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  return si_supports(s, dev, why, why_len);
}

void si_fast_teardown(void *state) {
  SiFastState *st = (SiFastState *)state;
  if (!st) return;
  if (st->base) cudaFree(st->base);
  free(st);
}

fkm_status si_fast_setup_inner(const fkm_problem *p, SiFastState *st) {
  const fkm_shape *s = &p->s;
  char why[256];
  if (si_supports(s, NULL, why, sizeof why) != FKM_OK) return fkm_fail(FKM_ERR_NOT_SUPPORTED, "update/sort_inverse: %s", why);
  st->s = *s;
  st->M = (int)(s->B * s->N);
  st->S = (int)(s->B * s->K);
  if (si_sm_count(&st->sms) != 0 || st->sms < 1) st->sms = 132;

  st->hc = si_hist_config(st->M, s->N, s->K, st->S, st->sms);
  FKM_TRY(si_reduce_config(s, false, st->sms, &st->rc_scalar));
  int nb = st->rc_scalar.nb;
  st->rc_vec.ok = false;
  if (si_vec_shape_ok(s)) {
    FKM_TRY(si_reduce_config(s, true, st->sms, &st->rc_vec));
    if (st->rc_vec.nb > nb) nb = st->rc_vec.nb;
  }

  FKM_CUDA(cub::DeviceScan::InclusiveSum(NULL, st->cub_bytes, (const int *)NULL, (int *)NULL, st->S));

  const size_t n_sorted = (size_t)si_cdiv(st->M, SI_RU) * SI_RU + SI_PAD;
  const size_t sz_bad = si_align(sizeof(int));
  const size_t sz_off = si_align(sizeof(int) * ((size_t)st->S + 1));
  const size_t sz_sorted = si_align(sizeof(int) * n_sorted);
  const size_t sz_part = si_align(sizeof(float) * (size_t)nb * 2 * (size_t)s->D);
  const size_t sz_tseg = si_align(sizeof(int) * (size_t)nb);
  const size_t sz_chain = si_align(sizeof(int) * (size_t)st->S);
  const size_t sz_cub = si_align(st->cub_bytes ? st->cub_bytes : 1);
  const size_t total = sz_bad + sz_off + 2 * sz_sorted + sz_part + sz_tseg + sz_chain + sz_cub;
  if (p->scratch_budget && total > p->scratch_budget)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "update/sort_inverse needs %zu bytes of scratch, budget is %zu", total,
                    p->scratch_budget);
  FKM_CUDA(cudaMalloc(&st->base, total));
  char *q = (char *)st->base;
  st->bad = (int *)q; q += sz_bad;
  st->off = (int *)q; q += sz_off;
  st->sidx = (int *)q; q += sz_sorted;
  st->sseg = (int *)q; q += sz_sorted;
  st->part = (float *)q; q += sz_part;
  st->tseg = (int *)q; q += sz_tseg;
  st->chain_end = (int *)q; q += sz_chain;
  st->cub_temp = (void *)q;

  if (st->hc.smem) {
    FKM_TRY(si_allow_smem(sort_inverse_histogram<true, false>, st->hc.smem_bytes));
    FKM_TRY(si_allow_smem(sort_inverse_scatter<true>, st->hc.smem_bytes));
  }
  return FKM_OK;
}

fkm_status si_fast_setup(const fkm_problem *p, void **state) {
  *state = NULL;
  SiFastState *st = (SiFastState *)calloc(1, sizeof(SiFastState));
  if (!st) return fkm_fail(FKM_ERR_OOM, "update/sort_inverse: cannot allocate its state");
  fkm_status r = si_fast_setup_inner(p, st);
  if (r != FKM_OK) {
    si_fast_teardown(st);
    return r;
  }
  *state = st;
  return FKM_OK;
}

fkm_status si_fast_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  SiFastState *st = (SiFastState *)state;
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "update/sort_inverse: run without setup");
  const fkm_shape *s = &p->s;
  if (s->B != st->s.B || s->N != st->s.N || s->K != st->s.K || s->D != st->s.D || s->dtype != st->s.dtype)
    return fkm_fail(FKM_ERR_INTERNAL, "update/sort_inverse: shape differs from setup");

  const int S = st->S;
  {
    long long g = si_cdiv(S, 256);
    if (g > 4096) g = 4096;
    sort_inverse_init<<<(unsigned)g, 256, 0, stream>>>(p->counts, S, st->off, st->bad);
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
  hp.keys = NULL;
  hp.vals = NULL;
  hp.off = st->off;
  hp.sidx = st->sidx;
  hp.sseg = st->sseg;

  if (st->hc.smem) sort_inverse_histogram<true, false><<<st->hc.grid, SI_HT, st->hc.smem_bytes, stream>>>(hp);
  else sort_inverse_histogram<false, false><<<st->hc.grid, SI_HT, 0, stream>>>(hp);
  FKM_CUDA_LAUNCH();

  size_t bytes = st->cub_bytes;
  FKM_CUDA(cub::DeviceScan::InclusiveSum(st->cub_temp, bytes, (const int *)p->counts, st->off + 1, S, stream));

  if (st->hc.smem) sort_inverse_scatter<true><<<st->hc.grid, SI_HT, st->hc.smem_bytes, stream>>>(hp);
  else sort_inverse_scatter<false><<<st->hc.grid, SI_HT, 0, stream>>>(hp);
  FKM_CUDA_LAUNCH();

  const SiRedCfg *rc = (st->rc_vec.ok && si_vec_ok(p)) ? &st->rc_vec : &st->rc_scalar;
  SiReduceParams rp;
  rp.idx = st->sidx;
  rp.seg = st->sseg;
  rp.m_eff = st->off + S;
  return si_launch_reduce(p, rc, rp, st->part, st->tseg, st->chain_end, stream);
}

fkm_status si_fast_check_input(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_check_bad(p, ((SiFastState *)state)->bad, stream);
}

} // namespace

extern "C" const fkm_variant fkm_update_sort_inverse = {
    /* .name = */ "update/sort_inverse",
    /* .op = */ FKM_OP_UPDATE,
    /* .summary = */
    "counting sort of labels into per-cluster row lists, then balanced segment reduction streaming X once "
    "(register running sums, 16-byte gathers); no per-point atomics, skew-proof",
    /* .min_cc = */ 70,
    /* .max_cc = */ 0,
    /* .supports = */ si_fast_supports,
    /* .setup = */ si_fast_setup,
    /* .run = */ si_fast_run,
    /* .teardown = */ si_fast_teardown,
    /* .describe = */ NULL,
    /* .check_input = */ si_fast_check_input,
};
