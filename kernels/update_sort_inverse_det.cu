/* update_sort_inverse_det.cu — update/sort_inverse_det: the sort-inverse
 * centroid update with bitwise run-to-run (and launch-to-launch) identical
 * results on a given GPU. Same reduction as update/sort_inverse (see
 * sort_inverse_common.cuh); only the sort differs.
 *
 * Kernels per run (one stream, no host sync, no allocation):
 *   sort_inverse_init        counts = 0, bad = INT32_MAX
 *   sort_inverse_histogram   counts[b*K + k] (integer atomics), and the radix
 *                            keys/values: key = b*K + k, value = flat row
 *                            (a bad label: key 0, value -1)
 *   cub DeviceRadixSort      stable LSD radix sort of (key, value) on bits
 *                            [0, ceil(log2(B*K))) only: 2 onesweep passes for
 *                            any B*K <= 65536 (CUB's digit is 8 bits)
 *   sort_inverse_reduce      segment reduction over the sorted rows
 *   sort_inverse_finish      cross-block chains (fixed order) + empty clusters
 *
 * Why it is deterministic:
 *   - the sort is stable, so each cluster's rows appear in increasing row order
 *     whatever the thread timing; the histogram uses integer atomics only
 *     (addition of integers is exact, so counts do not depend on order);
 *   - the block slices (nb blocks of L rows) and team ranges are a function of
 *     the shape, the dtype path and the device's SM count / occupancy only,
 *     and the 16-byte vs scalar path is a function of D and buffer alignment;
 *   - every float sum is a fixed sequence of fp32 additions: rows in sorted
 *     order inside a team, team pieces in team order inside a block, block
 *     pieces in the fixed warp-strided order + warp order of the finish kernel;
 *     means are IEEE divisions sum / count;
 *   - no float atomics anywhere, and partials live in fixed slots
 *     (part[block][H|T]), never accumulated in place.
 *
 * Why CUB radix here rather than the counting sort of the fast variant: a
 * stable counting sort needs a deterministic rank of each point within its
 * segment across blocks, i.e. a per-block x per-segment prefix sum (S x blocks
 * counters), which does not scale to 65536 clusters; a radix sort bounds the
 * per-pass digit to 256 bins, and with only ceil(log2 S) key bits it is 2 passes.
 *
 * Bad labels (outside [0, K)) are sorted with value -1 (key 0) and skipped by
 * the reduce; counts exclude them, so they corrupt nothing. The first
 * offending flat index b*N + n is atomicMin'ed into the device int32 `bad` of
 * the state (INT32_MAX when all labels are valid), reset at every run. */
#include "sort_inverse_common.cuh"

#include <cub/device/device_radix_sort.cuh>

namespace {

struct SiDetState {
  fkm_shape s;
  int M, S, sms, end_bit;
  SiHistCfg hc;
  SiRedCfg rc_vec, rc_scalar;
  void *base;
  int *bad;          /* [1] first bad flat index, INT32_MAX if none */
  unsigned *keys[2]; /* [M + pad] radix keys, double buffer */
  int *vals[2];      /* [M + pad] radix values (flat row, -1 = bad label) */
  float *part;       /* [nb][2][D] */
  int *tseg;         /* [nb] */
  int *chain_end;    /* [S] */
  void *cub_temp;
  size_t cub_bytes;
};

fkm_status si_det_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  return si_supports(s, dev, why, why_len);
}

void si_det_teardown(void *state) {
  SiDetState *st = (SiDetState *)state;
  if (!st) return;
  if (st->base) cudaFree(st->base);
  free(st);
}

fkm_status si_det_setup_inner(const fkm_problem *p, SiDetState *st) {
  const fkm_shape *s = &p->s;
  char why[256];
  if (si_supports(s, NULL, why, sizeof why) != FKM_OK)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "update/sort_inverse_det: %s", why);
  st->s = *s;
  st->M = (int)(s->B * s->N);
  st->S = (int)(s->B * s->K);
  st->end_bit = si_log2_ceil(st->S);
  if (st->end_bit < 1) st->end_bit = 1;
  if (si_sm_count(&st->sms) != 0 || st->sms < 1) st->sms = 132;

  st->hc = si_hist_config(st->M, s->N, s->K, st->S, st->sms);
  FKM_TRY(si_reduce_config(s, false, st->sms, &st->rc_scalar));
  int nb = st->rc_scalar.nb;
  st->rc_vec.ok = false;
  if (si_vec_shape_ok(s)) {
    FKM_TRY(si_reduce_config(s, true, st->sms, &st->rc_vec));
    if (st->rc_vec.nb > nb) nb = st->rc_vec.nb;
  }

  {
    cub::DoubleBuffer<unsigned> dk(NULL, NULL);
    cub::DoubleBuffer<int> dv(NULL, NULL);
    st->cub_bytes = 0;
    FKM_CUDA(cub::DeviceRadixSort::SortPairs(NULL, st->cub_bytes, dk, dv, st->M, 0, st->end_bit));
  }

  const size_t n_sorted = (size_t)si_cdiv(st->M, SI_RU) * SI_RU + SI_PAD;
  const size_t sz_bad = si_align(sizeof(int));
  const size_t sz_keys = si_align(sizeof(unsigned) * n_sorted);
  const size_t sz_vals = si_align(sizeof(int) * n_sorted);
  const size_t sz_part = si_align(sizeof(float) * (size_t)nb * 2 * (size_t)s->D);
  const size_t sz_tseg = si_align(sizeof(int) * (size_t)nb);
  const size_t sz_chain = si_align(sizeof(int) * (size_t)st->S);
  const size_t sz_cub = si_align(st->cub_bytes ? st->cub_bytes : 1);
  const size_t total = sz_bad + 2 * sz_keys + 2 * sz_vals + sz_part + sz_tseg + sz_chain + sz_cub;
  if (p->scratch_budget && total > p->scratch_budget)
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "update/sort_inverse_det needs %zu bytes of scratch, budget is %zu", total,
                    p->scratch_budget);
  FKM_CUDA(cudaMalloc(&st->base, total));
  char *q = (char *)st->base;
  st->bad = (int *)q; q += sz_bad;
  st->keys[0] = (unsigned *)q; q += sz_keys;
  st->keys[1] = (unsigned *)q; q += sz_keys;
  st->vals[0] = (int *)q; q += sz_vals;
  st->vals[1] = (int *)q; q += sz_vals;
  st->part = (float *)q; q += sz_part;
  st->tseg = (int *)q; q += sz_tseg;
  st->chain_end = (int *)q; q += sz_chain;
  st->cub_temp = (void *)q;

  if (st->hc.smem) FKM_TRY(si_allow_smem(sort_inverse_histogram<true, true>, st->hc.smem_bytes));
  return FKM_OK;
}

fkm_status si_det_setup(const fkm_problem *p, void **state) {
  *state = NULL;
  SiDetState *st = (SiDetState *)calloc(1, sizeof(SiDetState));
  if (!st) return fkm_fail(FKM_ERR_OOM, "update/sort_inverse_det: cannot allocate its state");
  fkm_status r = si_det_setup_inner(p, st);
  if (r != FKM_OK) {
    si_det_teardown(st);
    return r;
  }
  *state = st;
  return FKM_OK;
}

fkm_status si_det_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  SiDetState *st = (SiDetState *)state;
  if (!st) return fkm_fail(FKM_ERR_INTERNAL, "update/sort_inverse_det: run without setup");
  const fkm_shape *s = &p->s;
  if (s->B != st->s.B || s->N != st->s.N || s->K != st->s.K || s->D != st->s.D || s->dtype != st->s.dtype)
    return fkm_fail(FKM_ERR_INTERNAL, "update/sort_inverse_det: shape differs from setup");

  const int S = st->S;
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
  hp.off = NULL;
  hp.sidx = NULL;
  hp.sseg = NULL;
  if (st->hc.smem) sort_inverse_histogram<true, true><<<st->hc.grid, SI_HT, st->hc.smem_bytes, stream>>>(hp);
  else sort_inverse_histogram<false, true><<<st->hc.grid, SI_HT, 0, stream>>>(hp);
  FKM_CUDA_LAUNCH();

  /* Fresh double buffers every run: the sorted data always lands in the same
   * buffer (the pass count depends on end_bit only). */
  cub::DoubleBuffer<unsigned> dk(st->keys[0], st->keys[1]);
  cub::DoubleBuffer<int> dv(st->vals[0], st->vals[1]);
  size_t bytes = st->cub_bytes;
  FKM_CUDA(cub::DeviceRadixSort::SortPairs(st->cub_temp, bytes, dk, dv, st->M, 0, st->end_bit, stream));

  const SiRedCfg *rc = (st->rc_vec.ok && si_vec_ok(p)) ? &st->rc_vec : &st->rc_scalar;
  SiReduceParams rp;
  rp.idx = dv.Current();
  rp.seg = (const int *)dk.Current();
  rp.m_eff = NULL;
  return si_launch_reduce(p, rc, rp, st->part, st->tseg, st->chain_end, stream);
}

fkm_status si_det_check_input(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_check_bad(p, ((SiDetState *)state)->bad, stream);
}

} // namespace

extern "C" const fkm_variant fkm_update_sort_inverse_det = {
    /* .name = */ "update/sort_inverse_det",
    /* .op = */ FKM_OP_UPDATE,
    /* .summary = */
    "sort_inverse with a stable CUB radix sort on ceil(log2 BK) bits and fixed-slot, fixed-order partial "
    "combining: bitwise reproducible, no float atomics",
    /* .min_cc = */ 70,
    /* .max_cc = */ 0,
    /* .supports = */ si_det_supports,
    /* .setup = */ si_det_setup,
    /* .run = */ si_det_run,
    /* .teardown = */ si_det_teardown,
    /* .describe = */ NULL,
    /* .check_input = */ si_det_check_input,
};
