/* fit_variants.c — the `fit/...` variants: Lloyd's algorithm from the
 * initialisation to convergence (the loop of fit_device.h, what `flashkm fit`
 * runs in memory), timed whole, for one pair of assign and update kernels.
 *
 * Why: the per-iteration `lloyd/...` variants say what one iteration costs;
 * a user waits for a whole fit, whose time also depends on the iteration
 * count, and whose final inertia shows whether the kernels lead Lloyd to the
 * same place. The runner compares the final inertia of every fit variant with
 * the first one's on the same data and init (config: fit.inertia_rtol). */
#include "error.h"
#include "fit_device.h"
#include "lloyd.h"
#include "variant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  fkm_fit_options o;
  fkm_fit_work w;
  fkm_fit_result own; /* results when the caller passes no fit_result */
} fit_state;

static fkm_status fit_supports(const char *an, const char *un, const fkm_shape *s, const fkm_device *dev, char *why,
                               size_t n) {
  if (s->K > s->N) {
    snprintf(why, n, "a fit needs K <= N (K=%lld, N=%lld)", (long long)s->K, (long long)s->N);
    return FKM_ERR_NOT_SUPPORTED;
  }
  return fkm_lloyd_supports(an, un, s, dev, why, n);
}

static void fit_teardown(void *state) {
  fit_state *st = state;
  if (!st) return;
  fkm_fit_work_free(&st->w);
  fkm_fit_result_free(&st->own);
  free(st);
}

static fkm_status fit_setup(const fkm_problem *p, void **state, const char *an, const char *un) {
  if (!p->fit_opts) return fkm_fail(FKM_ERR_INTERNAL, "fit variant set up without fit options");
  fit_state *st = calloc(1, sizeof *st);
  if (!st) return fkm_fail(FKM_ERR_OOM, "out of host memory");
  st->o = *p->fit_opts;
  st->o.B = p->s.B;
  st->o.N = p->s.N;
  st->o.K = p->s.K;
  st->o.D = p->s.D;
  st->o.dtype = p->s.dtype;
  st->o.assign_variant = an;
  st->o.update_variant = un;
  st->o.progress = 0;
  fkm_status rs = fkm_fit_work_create(&st->o, p, &st->w);
  if (rs != FKM_OK) {
    fit_teardown(st);
    return rs;
  }
  *state = st;
  return FKM_OK;
}

static fkm_status fit_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  fit_state *st = state;
  fkm_fit_result *r = p->fit_result ? p->fit_result : &st->own;
  const float *c_final = NULL;
  FKM_TRY(fkm_fit_device(&st->o, p, &st->w, stream, r, &c_final));
  FKM_CUDA(cudaMemcpyAsync(p->c_new, c_final, (size_t)(p->s.B * p->s.K * p->s.D) * sizeof(float),
                           cudaMemcpyDeviceToDevice, stream));
  return FKM_OK;
}

static const char *fit_describe(void *state) { return fkm_lloyd_describe(((fit_state *)state)->w.lloyd); }

static const char *const fit_phases[] = {"init", "iterations", NULL};

#define FKM_FIT_VARIANT(ident, vname, an, un, summary)                                                         \
  static fkm_status ident##_supports(const fkm_shape *s, const fkm_device *d, char *w, size_t n) {             \
    return fit_supports(an, un, s, d, w, n);                                                                   \
  }                                                                                                            \
  static fkm_status ident##_setup(const fkm_problem *p, void **state) { return fit_setup(p, state, an, un); }   \
  const fkm_variant ident = {vname,   FKM_OP_FIT, summary,      70,   0, ident##_supports, ident##_setup, fit_run, \
                             fit_teardown, fit_describe, NULL, fit_phases, 0, FKM_COMPUTE_EXACT};

FKM_FIT_VARIANT(fkm_fit_naive_atomic, "fit/naive_atomic", "assign/naive", "update/atomic_scatter",
                "a whole fit from the simplest kernels: naive assign + atomic scatter")
FKM_FIT_VARIANT(fkm_fit_cublas_atomic, "fit/cublas_atomic", "assign/cublas_gemm", "update/atomic_scatter",
                "a whole fit from the strongest baselines: cuBLAS GEMM + argmin, atomic scatter")
FKM_FIT_VARIANT(fkm_fit_flash, "fit/flash", "assign/flash", "update/sort_inverse_det",
                "a whole fit as `flashkm fit` runs it in memory: FlashAssign + deterministic sort-inverse update")
