/* runner.c — the sweep behind `flashkm run` (see runner.h).
 *
 * For each case: check support, build the inputs once per shape (on the GPU
 * for GPU variants), run once and validate against the fp64 reference (the
 * output buffers are poisoned first so unwritten elements fail), then warm up
 * and take samples until the spread is small or the budget is spent. Every
 * failure becomes the row's status; only a sticky CUDA error (a corrupted
 * context) ends the sweep, with all finished rows already on disk. */
#include "runner.h"
#include "l2_flush.h"
#include "config.h"
#include "data.h"
#include "device.h"
#include "dtype.h"
#include "error.h"
#include "info.h"
#include "nvtx.h"
#include "phase.h"
#include "results.h"
#include "sm_clock.h"
#include "stats.h"
#include "validate.h"
#include "variant.h"

#include <cuda_profiler_api.h>
#include <errno.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define FKM_SCRATCH_BUDGET ((size_t)4 << 30) /* device scratch a variant may take (cuBLAS baseline tile) */


/* Everything shared by the cases of one shape group. */
typedef struct {
  int group;
  fkm_dataset host, dev;
  int have_host, have_dev;
  fkm_assign_ref aref;
  fkm_update_ref uref;
  int have_aref, have_uref;
  /* op fit: the first validated variant's final inertia, which the others must match */
  int have_fit_inertia;
  double fit_inertia;
  char fit_inertia_variant[64];
} group_data;

typedef struct {
  const fkm_config *cfg;
  fkm_device dev;
  fkm_ceilings ceil;
  cudaStream_t stream;
  cudaEvent_t e0, e1;
  void *flush_buf;
  size_t flush_bytes;
  size_t used_at_start;
  group_data g;
  int profile;
} run_ctx;

static void group_release(group_data *g) {
  if (g->have_host) fkm_data_free(&g->host);
  if (g->have_dev) fkm_data_free(&g->dev);
  if (g->have_aref) fkm_assign_ref_free(&g->aref);
  if (g->have_uref) fkm_update_ref_free(&g->uref);
  memset(g, 0, sizeof *g);
  g->group = -1;
}

static fkm_status group_prepare(run_ctx *ctx, const fkm_case *c, int on_device) {
  group_data *g = &ctx->g;
  if (g->group != c->shape_group) {
    group_release(g);
    g->group = c->shape_group;
  }
  if (on_device && !g->have_dev) {
    fkm_nvtx_push("generate data (device)");
    fkm_status st = fkm_data_make_device(&c->s, &c->data, c->seed, &g->dev);
    fkm_nvtx_pop();
    FKM_TRY(st);
    g->have_dev = 1;
  }
  if (!g->have_host) {
    fkm_status st = g->have_dev ? fkm_data_copy_to_host(&g->dev, &g->host)
                                : fkm_data_make_host(&c->s, &c->data, c->seed, &g->host);
    FKM_TRY(st);
    g->have_host = 1;
  }
  if ((c->v->op == FKM_OP_ASSIGN || c->v->op == FKM_OP_LLOYD) && !g->have_aref) {
    FKM_TRY(fkm_assign_ref_build(&c->s, g->host.x, g->host.c, ctx->cfg->validate_max_rows, &g->aref));
    g->have_aref = 1;
  }
  if (c->v->op == FKM_OP_UPDATE && !g->have_uref) {
    FKM_TRY(fkm_update_ref_build(&c->s, g->host.x, g->host.labels, g->host.c_old, &g->uref));
    g->have_uref = 1;
  }
  return FKM_OK;
}

/* Output buffers of one run, host or device. */
typedef struct {
  int on_device;
  int32_t *labels;
  float *dist;
  float *c_new;
  int32_t *counts;
} outputs;

static void outputs_free(outputs *o) {
  if (o->on_device) {
    cudaFree(o->labels);
    cudaFree(o->dist);
    cudaFree(o->c_new);
    cudaFree(o->counts);
  } else {
    free(o->labels);
    free(o->dist);
    free(o->c_new);
    free(o->counts);
  }
  memset(o, 0, sizeof *o);
}

static fkm_status outputs_alloc(const fkm_shape *s, fkm_op op, int on_device, outputs *o) {
  memset(o, 0, sizeof *o);
  o->on_device = on_device;
  size_t sizes[4] = {0, 0, 0, 0};
  if (op != FKM_OP_UPDATE) { /* assign, and lloyd (one iteration writes everything) */
    sizes[0] = (size_t)(s->B * s->N) * 4;
    sizes[1] = (size_t)(s->B * s->N) * 4;
  }
  if (op != FKM_OP_ASSIGN) {
    sizes[2] = (size_t)(s->B * s->K * s->D) * 4;
    sizes[3] = (size_t)(s->B * s->K) * 4;
  }
  void **ptrs[4] = {(void **)&o->labels, (void **)&o->dist, (void **)&o->c_new, (void **)&o->counts};
  for (int i = 0; i < 4; i++) {
    if (!sizes[i]) continue;
    if (on_device) {
      FKM_CUDA(cudaMalloc(ptrs[i], sizes[i]));
    } else {
      *ptrs[i] = malloc(sizes[i]);
      if (!*ptrs[i]) return fkm_fail(FKM_ERR_OOM, "cannot allocate %zu bytes of host memory for outputs", sizes[i]);
    }
  }
  return FKM_OK;
}

/* 0xFF bytes: labels -1, distances and centroids NaN — unwritten elements fail validation. */
static fkm_status outputs_poison(const fkm_shape *s, fkm_op op, outputs *o) {
  size_t n[4] = {(size_t)(s->B * s->N) * 4, (size_t)(s->B * s->N) * 4, (size_t)(s->B * s->K * s->D) * 4,
                 (size_t)(s->B * s->K) * 4};
  void *p[4] = {o->labels, o->dist, o->c_new, o->counts};
  (void)op;
  for (int i = 0; i < 4; i++) {
    if (!p[i]) continue;
    if (o->on_device) FKM_CUDA(cudaMemset(p[i], 0xff, n[i]));
    else memset(p[i], 0xff, n[i]);
  }
  /* cudaMemset runs on the legacy default stream, which does not order against
   * the run's non-blocking stream: finish the poison before the variant starts,
   * or it can land on top of the variant's first writes. */
  if (o->on_device) FKM_CUDA(cudaDeviceSynchronize());
  return FKM_OK;
}

static fkm_status copy_back(const fkm_shape *s, fkm_op op, const outputs *o, outputs *h) {
  FKM_TRY(outputs_alloc(s, op, 0, h));
  size_t n[4] = {(size_t)(s->B * s->N) * 4, (size_t)(s->B * s->N) * 4, (size_t)(s->B * s->K * s->D) * 4,
                 (size_t)(s->B * s->K) * 4};
  const void *src[4] = {o->labels, o->dist, o->c_new, o->counts};
  void *dst[4] = {h->labels, h->dist, h->c_new, h->counts};
  for (int i = 0; i < 4; i++) {
    if (!src[i]) continue;
    if (o->on_device) FKM_CUDA(cudaMemcpy(dst[i], src[i], n[i], cudaMemcpyDeviceToHost));
    else memcpy(dst[i], src[i], n[i]);
  }
  return FKM_OK;
}

/* Work counted for rates: the FLOPs of the distance GEMM, and the bytes that
 * must cross device memory at least once. */
static void work_of(const fkm_shape *s, fkm_op op, double *flops, double *bytes) {
  double es = (double)fkm_dtype_size(s->dtype);
  double B = (double)s->B, N = (double)s->N, K = (double)s->K, D = (double)s->D;
  if (op == FKM_OP_ASSIGN) {
    *flops = 2.0 * B * N * K * D;
    *bytes = B * N * D * es + B * K * D * es + B * N * 8.0;
  } else if (op == FKM_OP_LLOYD || op == FKM_OP_FIT) { /* assign, then update reading X again (fit: per pass) */
    *flops = 2.0 * B * N * K * D + B * N * D;
    *bytes = 2.0 * B * N * D * es + B * K * D * es + B * N * 12.0 + B * K * D * 8.0 + B * K * 4.0;
  } else {
    *flops = B * N * D;
    *bytes = B * N * D * es + B * N * 4.0 + B * K * D * 4.0 * 2.0 + B * K * 4.0;
  }
}

static size_t device_used(void) {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return total_b - free_b;
}

typedef struct {
  fkm_status status;
  int incorrect;
  char reason[1024];
  cJSON *validation;
  cJSON *timing;
  int64_t device_bytes;
  double median_ms;
  char impl[128]; /* what a delegating variant ran */
  cJSON *phases;  /* per-phase medians, for variants with phases */
  int samples;    /* timed samples taken */
  fkm_fit_result fit;      /* op fit: filled by every run; the validated run's copy below */
  fkm_fit_result fit_seen; /* op fit: the validation run's result (histories owned) */
  int have_fit;
  int fit_iter_min, fit_iter_max; /* op fit: iteration counts over the timed samples */
} case_result;

/* The SM clock into *mhz; on failure a note on stderr and 0 (the row goes without it). */
static int probe_clock(const fkm_case *c, cudaStream_t s, double *mhz) {
  if (fkm_sm_clock_mhz(s, mhz) == FKM_OK) return 1;
  fprintf(stderr, "flashkm: %s: SM clock not measured: %s\n", c->v->name, fkm_last_error());
  fkm_clear_error();
  return 0;
}

static fkm_status time_samples(run_ctx *ctx, const fkm_case *c, const fkm_problem *p, void *state, case_result *res) {
  const fkm_measure_cfg *m = &ctx->cfg->exps[c->exp_index].measure;
  const int gpu = !fkm_variant_is_cpu(c->v);
  for (int i = 0; i < m->warmup; i++) FKM_TRY(c->v->run(p, state, ctx->stream));
  if (gpu) FKM_CUDA(cudaStreamSynchronize(ctx->stream));
  /* The SM clock just before the samples and just after them, outside the
   * timed events: a variant timed while the card throttles (after a heavy
   * one) reads slower with no change of its own; these say so in the row.
   * A probe that fails costs the row only that field, never its samples. */
  double mhz_before = 0, mhz_after = 0;
  int have_clock = gpu && probe_clock(c, ctx->stream, &mhz_before);
  double *samples = malloc(sizeof(double) * (size_t)m->max_samples);
  if (!samples) return fkm_fail(FKM_ERR_OOM, "out of host memory");
  const double t0 = fkm_now_s();
  int n = 0;
  fkm_stats st = {0};
  fkm_status err = FKM_OK;
  while (n < m->max_samples) {
    if (gpu) { /* nothing for flush_l2 false or no flush buffer */
      err = fkm_l2_flush(ctx->flush_buf, ctx->flush_bytes, (fkm_flush_mode)m->flush_l2, n, ctx->stream);
      if (err != FKM_OK) break;
    }
    fkm_nvtx_push("sample");
    double ms;
    if (gpu) {
      cudaEventRecord(ctx->e0, ctx->stream);
      err = c->v->run(p, state, ctx->stream);
      cudaEventRecord(ctx->e1, ctx->stream);
      cudaError_t e = cudaEventSynchronize(ctx->e1);
      float fms = 0;
      if (err == FKM_OK && e != cudaSuccess) err = fkm_cuda_fail_at(e, "timed run", __FILE__, __LINE__);
      if (err == FKM_OK) {
        e = cudaEventElapsedTime(&fms, ctx->e0, ctx->e1);
        if (e != cudaSuccess) err = fkm_cuda_fail_at(e, "cudaEventElapsedTime", __FILE__, __LINE__);
      }
      ms = fms;
    } else {
      double a = fkm_now_s();
      err = c->v->run(p, state, ctx->stream);
      ms = (fkm_now_s() - a) * 1e3;
    }
    fkm_nvtx_pop();
    if (err != FKM_OK) break;
    if (c->v->op == FKM_OP_FIT) {
      const int it = p->fit_result ? p->fit_result->iterations : 0;
      if (n == 0 || it < res->fit_iter_min) res->fit_iter_min = it;
      if (n == 0 || it > res->fit_iter_max) res->fit_iter_max = it;
    }
    samples[n++] = ms;
    if (n >= m->min_samples) {
      fkm_stats_compute(samples, n, &st);
      if (st.rel_stdev <= m->noise_target || fkm_now_s() - t0 >= m->budget_s) break;
    }
  }
  if (err == FKM_OK && have_clock) have_clock = probe_clock(c, ctx->stream, &mhz_after);
  if (err == FKM_OK) {
    fkm_stats_compute(samples, n, &st);
    res->timing = fkm_timing_json(&st, n, m->warmup, gpu && ctx->flush_buf ? m->flush_l2 : FKM_FLUSH_NONE,
                                  gpu ? "cuda_event" : "host_monotonic", st.rel_stdev <= m->noise_target);
    if (have_clock) { /* 0.1 MHz: the probe is good to ~0.2 %, more digits would be noise */
      cJSON *clk = cJSON_AddObjectToObject(res->timing, "sm_clock_measured_mhz");
      cJSON_AddNumberToObject(clk, "before", round(mhz_before * 10) / 10);
      cJSON_AddNumberToObject(clk, "after", round(mhz_after * 10) / 10);
    }
    res->median_ms = st.median;
    res->samples = n;
  }
  free(samples);
  return err;
}

/* For variants with phases: a few more runs, each with an event at the end of
 * every phase, after the timed samples (the events stay out of those). Each
 * phase's time is the median over the runs of the gap from the previous
 * phase's end (the first phase's: from the run's start). */
#define FKM_PHASE_RUNS 9 /* at most; never more than the timed samples (a fit can take seconds) */
static fkm_status time_phases(run_ctx *ctx, const fkm_case *c, const fkm_problem *p, void *state, case_result *res) {
  const fkm_measure_cfg *m = &ctx->cfg->exps[c->exp_index].measure;
  const int n = fkm_phase_count(c->v);
  if (n == 0 || fkm_variant_is_cpu(c->v)) return FKM_OK;
  if (n > 8) return fkm_fail(FKM_ERR_INTERNAL, "%s declares %d phases; at most 8", c->v->name, n);
  cudaEvent_t marks[8];
  int made = 0;
  fkm_status err = FKM_OK;
  double ms[8][FKM_PHASE_RUNS];
  for (; made < n; made++) {
    cudaError_t e = cudaEventCreate(&marks[made]);
    if (e != cudaSuccess) { err = fkm_cuda_fail_at(e, "cudaEventCreate(phase)", __FILE__, __LINE__); break; }
  }
  fkm_problem q = *p;
  q.phase_marks = marks;
  const int runs = res->samples < 1 ? 1 : res->samples > FKM_PHASE_RUNS ? FKM_PHASE_RUNS : res->samples;
  fkm_nvtx_push("phases");
  for (int r = 0; r < runs && err == FKM_OK; r++) {
    err = fkm_l2_flush(ctx->flush_buf, ctx->flush_bytes, (fkm_flush_mode)m->flush_l2, r, ctx->stream);
    if (err != FKM_OK) break;
    cudaEventRecord(ctx->e0, ctx->stream);
    err = c->v->run(&q, state, ctx->stream);
    if (err != FKM_OK) break;
    cudaError_t e = cudaEventSynchronize(marks[n - 1]);
    for (int i = 0; i < n && e == cudaSuccess; i++) {
      float f = 0;
      e = cudaEventElapsedTime(&f, i == 0 ? ctx->e0 : marks[i - 1], marks[i]);
      ms[i][r] = f;
    }
    if (e != cudaSuccess) err = fkm_cuda_fail_at(e, "phase events", __FILE__, __LINE__);
  }
  fkm_nvtx_pop();
  for (int i = 0; i < made; i++) cudaEventDestroy(marks[i]);
  if (err != FKM_OK) return err;
  double total = 0, med[8];
  for (int i = 0; i < n; i++) {
    fkm_stats st;
    fkm_stats_compute(ms[i], runs, &st);
    med[i] = st.median;
    total += st.median;
  }
  cJSON *arr = cJSON_CreateArray();
  for (int i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", c->v->phases[i]);
    cJSON_AddNumberToObject(o, "median_ms", med[i]);
    cJSON_AddNumberToObject(o, "share", total > 0 ? med[i] / total : 0);
    cJSON_AddItemToArray(arr, o);
  }
  res->phases = arr;
  return FKM_OK;
}

static cJSON *assign_check_json(const fkm_assign_check *a) {
  cJSON *v = cJSON_CreateObject();
  cJSON_AddBoolToObject(v, "ok", a->ok);
  cJSON_AddNumberToObject(v, "rows_checked", (double)a->rows_checked);
  cJSON_AddNumberToObject(v, "mismatches", (double)a->mismatches);
  cJSON_AddNumberToObject(v, "near_ties", (double)a->near_ties);
  cJSON_AddNumberToObject(v, "bad_distances", (double)a->bad_dist);
  cJSON_AddNumberToObject(v, "tolerance", a->tol);
  cJSON_AddNumberToObject(v, "max_excess", a->max_excess);
  cJSON_AddNumberToObject(v, "max_distance_error", a->max_dist_err);
  return v;
}

static cJSON *update_check_json(const fkm_update_check *u) {
  cJSON *v = cJSON_CreateObject();
  cJSON_AddBoolToObject(v, "ok", u->ok);
  cJSON_AddNumberToObject(v, "clusters_checked", (double)u->clusters_checked);
  cJSON_AddNumberToObject(v, "count_mismatches", (double)u->count_mismatches);
  cJSON_AddNumberToObject(v, "bad_centroids", (double)u->bad_centroids);
  cJSON_AddNumberToObject(v, "empty_changed", (double)u->empty_changed);
  cJSON_AddNumberToObject(v, "max_relative_error", u->max_rel_err);
  cJSON_AddNumberToObject(v, "max_error_over_tolerance", u->max_err_over_tol);
  return v;
}

static void fit_result_copy(const fkm_fit_result *src, fkm_fit_result *dst) {
  memset(dst, 0, sizeof *dst);
  dst->iterations = src->iterations;
  dst->converged = src->converged;
  dst->inertia = src->inertia;
  dst->seconds = src->seconds;
  dst->init_seconds = src->init_seconds;
  const int n = src->history_len;
  if (n > 0 && src->inertia_history && src->shift_history) {
    dst->inertia_history = malloc(sizeof(double) * (size_t)n);
    dst->shift_history = malloc(sizeof(double) * (size_t)n);
    if (dst->inertia_history && dst->shift_history) {
      memcpy(dst->inertia_history, src->inertia_history, sizeof(double) * (size_t)n);
      memcpy(dst->shift_history, src->shift_history, sizeof(double) * (size_t)n);
      dst->history_len = n;
    }
  }
}

/* op fit: a fit has no single reference result (Lloyd from the same init can
 * end in different local minima after a near-tie flips), so it is checked for
 * what must hold whatever the path: the labels are the nearest centroids of
 * the returned centroids as the kernels saw them (rounded to the dtype; fp64
 * reference on sampled rows, near-tie aware), the counts are the labels'
 * histogram, the reported inertia is the sum of the returned distances, and
 * the final inertia agrees with the first variant's on the same data within
 * the experiment's fit.inertia_rtol. */
static fkm_status validate_fit(run_ctx *ctx, const fkm_case *c, const outputs *h, case_result *res) {
  const fkm_shape *s = &c->s;
  const fkm_experiment *e = &ctx->cfg->exps[c->exp_index];
  const fkm_fit_result *fr = &res->fit;
  const int64_t nc = s->B * s->K * s->D, np = s->B * s->N, nk = s->B * s->K;
  void *cd = malloc((size_t)nc * fkm_dtype_size(s->dtype));
  int32_t *hist = calloc((size_t)nk, sizeof(int32_t));
  if (!cd || !hist) {
    free(cd);
    free(hist);
    return fkm_fail(FKM_ERR_OOM, "out of host memory validating a fit");
  }
  for (int64_t i = 0; i < nc; i++) fkm_store_from_f32(cd, (int)s->dtype, i, h->c_new[i]);
  fkm_assign_ref ref;
  fkm_status st = fkm_assign_ref_build(s, ctx->g.host.x, cd, ctx->cfg->validate_max_rows, &ref);
  free(cd);
  if (st != FKM_OK) {
    free(hist);
    return st;
  }
  fkm_assign_check a;
  fkm_validate_assign(&ref, ctx->g.host.x, h->labels, h->dist, c->v->compute, &a);
  fkm_assign_ref_free(&ref);

  int64_t bad_labels = 0, count_mismatches = 0;
  double dist_sum = 0;
  for (int64_t i = 0; i < np; i++) {
    const int32_t l = h->labels[i];
    dist_sum += (double)h->dist[i];
    if (l < 0 || l >= s->K) bad_labels++;
    else hist[(i / s->N) * s->K + l]++;
  }
  for (int64_t k = 0; k < nk; k++) count_mismatches += hist[k] != h->counts[k];
  free(hist);
  const double sum_diff = fabs(dist_sum - fr->inertia) / (fabs(dist_sum) > 0 ? fabs(dist_sum) : 1.0);
  double ref_diff = 0;
  const group_data *g = &ctx->g;
  if (g->have_fit_inertia)
    ref_diff = fabs(fr->inertia - g->fit_inertia) / (fabs(g->fit_inertia) > 0 ? fabs(g->fit_inertia) : 1.0);

  cJSON *v = cJSON_CreateObject();
  const int ok = a.ok && bad_labels == 0 && count_mismatches == 0 && sum_diff <= 1e-6 &&
                 (!g->have_fit_inertia || ref_diff <= e->fit_inertia_rtol);
  cJSON_AddBoolToObject(v, "ok", ok);
  cJSON_AddItemToObject(v, "assign", assign_check_json(&a));
  cJSON_AddNumberToObject(v, "count_mismatches", (double)count_mismatches);
  cJSON_AddNumberToObject(v, "inertia", fr->inertia);
  cJSON_AddNumberToObject(v, "sum_of_distances", dist_sum);
  if (g->have_fit_inertia) {
    cJSON_AddStringToObject(v, "inertia_reference", g->fit_inertia_variant);
    cJSON_AddNumberToObject(v, "inertia_relative_difference", ref_diff);
  } else {
    cJSON_AddNullToObject(v, "inertia_reference");
  }
  cJSON_AddNumberToObject(v, "inertia_rtol", e->fit_inertia_rtol);
  res->validation = v;
  if (!a.ok) {
    res->incorrect = 1;
    snprintf(res->reason, sizeof res->reason, "final labels: %lld mismatches, %lld bad distances in %lld rows; first: %s",
             (long long)a.mismatches, (long long)a.bad_dist, (long long)a.rows_checked, a.detail);
  } else if (bad_labels || count_mismatches) {
    res->incorrect = 1;
    snprintf(res->reason, sizeof res->reason, "%lld labels outside [0, K), %lld counts differ from the labels' histogram",
             (long long)bad_labels, (long long)count_mismatches);
  } else if (sum_diff > 1e-6) {
    res->incorrect = 1;
    snprintf(res->reason, sizeof res->reason, "reported inertia %.9g is not the sum of the returned distances %.9g",
             fr->inertia, dist_sum);
  } else if (g->have_fit_inertia && ref_diff > e->fit_inertia_rtol) {
    res->incorrect = 1;
    snprintf(res->reason, sizeof res->reason,
             "final inertia %.9g differs from %s's %.9g by %.3g (relative), more than fit.inertia_rtol %.3g",
             fr->inertia, g->fit_inertia_variant, g->fit_inertia, ref_diff, e->fit_inertia_rtol);
  }
  if (!res->incorrect && !ctx->g.have_fit_inertia) {
    ctx->g.have_fit_inertia = 1;
    ctx->g.fit_inertia = fr->inertia;
    snprintf(ctx->g.fit_inertia_variant, sizeof ctx->g.fit_inertia_variant, "%s", c->v->name);
  }
  fit_result_copy(fr, &res->fit_seen);
  res->have_fit = 1;
  return FKM_OK;
}

static fkm_status run_timed(run_ctx *ctx, const fkm_case *c, const fkm_problem *p, void *state, case_result *res);

/* Validation run then timing, with the variant's state alive. */
static fkm_status run_with_state(run_ctx *ctx, const fkm_case *c, const fkm_problem *p, void *state, outputs *out,
                                 case_result *res) {
  const int gpu = !fkm_variant_is_cpu(c->v);
  FKM_TRY(outputs_poison(&c->s, c->v->op, out));
  fkm_nvtx_push("validate");
  fkm_status st = c->v->run(p, state, ctx->stream);
  if (st == FKM_OK && gpu) {
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "validation run", __FILE__, __LINE__);
  }
  fkm_nvtx_pop();
  FKM_TRY(st);
  if (c->v->check_input) FKM_TRY(c->v->check_input(p, state, ctx->stream));
  outputs h;
  st = copy_back(&c->s, c->v->op, out, &h);
  if (st != FKM_OK) {
    outputs_free(&h);
    return st;
  }
  if (c->v->op == FKM_OP_FIT) {
    st = validate_fit(ctx, c, &h, res);
    outputs_free(&h);
    FKM_TRY(st);
    if (res->incorrect) return FKM_OK;
    return run_timed(ctx, c, p, state, res);
  }
  cJSON *assign_json = NULL, *update_json = NULL;
  if (c->v->op != FKM_OP_UPDATE) {
    fkm_assign_check a;
    fkm_validate_assign(&ctx->g.aref, ctx->g.host.x, h.labels, h.dist, c->v->compute, &a);
    assign_json = assign_check_json(&a);
    if (!a.ok) {
      res->incorrect = 1;
      snprintf(res->reason, sizeof res->reason, "%lld mismatches, %lld bad distances in %lld rows; first: %s",
               (long long)a.mismatches, (long long)a.bad_dist, (long long)a.rows_checked, a.detail);
    }
  }
  if (c->v->op != FKM_OP_ASSIGN && !res->incorrect) {
    /* lloyd: the new centroids must be the means of the points under the variant's own labels */
    fkm_update_ref lref;
    const fkm_update_ref *uref = &ctx->g.uref;
    if (c->v->op == FKM_OP_LLOYD) {
      st = fkm_update_ref_build(&c->s, ctx->g.host.x, h.labels, ctx->g.host.c_old, &lref);
      if (st != FKM_OK) {
        outputs_free(&h);
        cJSON_Delete(assign_json);
        return st;
      }
      uref = &lref;
    }
    fkm_update_check u;
    fkm_validate_update(uref, ctx->g.host.c_old, h.c_new, h.counts, &u);
    if (c->v->op == FKM_OP_LLOYD) fkm_update_ref_free(&lref);
    update_json = update_check_json(&u);
    if (!u.ok) {
      res->incorrect = 1;
      snprintf(res->reason, sizeof res->reason, "%lld count mismatches, %lld bad centroids; first: %s",
               (long long)u.count_mismatches, (long long)u.bad_centroids, u.detail);
    }
  }
  if (assign_json && update_json) {
    cJSON *v = cJSON_CreateObject();
    cJSON_AddBoolToObject(v, "ok", !res->incorrect);
    cJSON_AddItemToObject(v, "assign", assign_json);
    cJSON_AddItemToObject(v, "update", update_json);
    res->validation = v;
  } else {
    res->validation = assign_json ? assign_json : update_json;
  }
  outputs_free(&h);
  if (res->incorrect) return FKM_OK;
  return run_timed(ctx, c, p, state, res);
}

/* After a passing validation: one profiled run (--profile), or the timed
 * samples and, for variants with phases, the phase split. */
static fkm_status run_timed(run_ctx *ctx, const fkm_case *c, const fkm_problem *p, void *state, case_result *res) {
  const int gpu = !fkm_variant_is_cpu(c->v);
  fkm_status st;
  if (ctx->profile) {
    if (gpu) cudaProfilerStart();
    fkm_nvtx_push("profile");
    st = c->v->run(p, state, ctx->stream);
    if (st == FKM_OK && gpu) {
      cudaError_t e = cudaStreamSynchronize(ctx->stream);
      if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "profiled run", __FILE__, __LINE__);
    }
    fkm_nvtx_pop();
    if (gpu) cudaProfilerStop();
    return st;
  }
  FKM_TRY(time_samples(ctx, c, p, state, res));
  return time_phases(ctx, c, p, state, res);
}

static void run_case(run_ctx *ctx, const fkm_case *c, case_result *res) {
  memset(res, 0, sizeof *res);
  const fkm_variant *v = c->v;
  const int gpu = !fkm_variant_is_cpu(v);
  if (gpu && !ctx->dev.present) {
    res->status = FKM_ERR_NOT_SUPPORTED;
    snprintf(res->reason, sizeof res->reason, "%s", ctx->dev.absent_reason);
    return;
  }
  if (gpu && (ctx->dev.cc < v->min_cc || (v->max_cc && ctx->dev.cc > v->max_cc))) {
    res->status = FKM_ERR_NOT_SUPPORTED;
    snprintf(res->reason, sizeof res->reason, "needs compute capability %d.%d%s; this device is %d.%d",
             v->min_cc / 10, v->min_cc % 10, v->max_cc ? " exactly" : " or newer", ctx->dev.cc / 10, ctx->dev.cc % 10);
    return;
  }
  if (v->supports) {
    char why[512] = "";
    if (v->supports(&c->s, &ctx->dev, why, sizeof why) != FKM_OK) {
      res->status = FKM_ERR_NOT_SUPPORTED;
      snprintf(res->reason, sizeof res->reason, "%s", why[0] ? why : "not supported");
      return;
    }
  }
  fkm_clear_error();
  fkm_status st = group_prepare(ctx, c, gpu);
  outputs out = {0};
  void *state = NULL;
  int set_up = 0;
  if (st == FKM_OK) st = outputs_alloc(&c->s, v->op, gpu, &out);
  if (st == FKM_OK) {
    const fkm_dataset *d = gpu ? &ctx->g.dev : &ctx->g.host;
    fkm_problem p = {.s = c->s, .x = d->x, .c = d->c, .labels = out.labels, .dist = out.dist,
                     .labels_in = d->labels, .c_old = d->c_old, .c_new = out.c_new, .counts = out.counts,
                     .scratch_budget = FKM_SCRATCH_BUDGET};
    fkm_fit_options fit_opts = ctx->cfg->exps[c->exp_index].fit;
    fit_opts.seed = c->seed; /* the init's seed: the data's, so every variant of the group starts alike */
    if (v->op == FKM_OP_FIT) {
      p.fit_opts = &fit_opts;
      p.fit_result = &res->fit;
    }
    if (gpu) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && free_b / 4 < p.scratch_budget) p.scratch_budget = free_b / 4;
    }
    st = v->setup ? v->setup(&p, &state) : FKM_OK;
    if (st == FKM_OK && gpu) {
      cudaError_t e = cudaDeviceSynchronize(); /* whatever setup enqueued elsewhere is done before the run */
      if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "after setup", __FILE__, __LINE__);
      set_up = 1;
    }
    if (st == FKM_OK) {
      set_up = 1;
      if (v->describe && state) snprintf(res->impl, sizeof res->impl, "%s", v->describe(state));
      if (gpu) res->device_bytes = (int64_t)device_used() - (int64_t)ctx->used_at_start;
      st = run_with_state(ctx, c, &p, state, &out, res);
    }
  }
  if (set_up && v->teardown) v->teardown(state);
  outputs_free(&out);
  if (gpu && st != FKM_ERR_CUDA_STICKY) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess && st == FKM_OK) st = fkm_cuda_fail_at(e, "end of case", __FILE__, __LINE__);
  }
  res->status = st;
  if (st != FKM_OK) snprintf(res->reason, sizeof res->reason, "%s", fkm_last_error());
}

static const char *row_status(const case_result *r) {
  if (r->status == FKM_OK) return r->incorrect ? "incorrect" : "ok";
  switch (r->status) {
  case FKM_ERR_NOT_SUPPORTED: return "not_supported";
  case FKM_ERR_OOM: return "out_of_memory";
  default: return "error";
  }
}

static cJSON *make_row(const run_ctx *ctx, const fkm_case *c, case_result *r, double wall) {
  cJSON *row = cJSON_CreateObject();
  cJSON_AddStringToObject(row, "experiment", ctx->cfg->exps[c->exp_index].name);
  cJSON_AddStringToObject(row, "variant", c->v->name);
  cJSON_AddStringToObject(row, "op", fkm_op_name(c->v->op));
  cJSON_AddNumberToObject(row, "B", (double)c->s.B);
  cJSON_AddNumberToObject(row, "N", (double)c->s.N);
  cJSON_AddNumberToObject(row, "K", (double)c->s.K);
  cJSON_AddNumberToObject(row, "D", (double)c->s.D);
  cJSON_AddStringToObject(row, "dtype", fkm_dtype_name(c->s.dtype));
  cJSON_AddStringToObject(row, "data", c->data.label);
  cJSON_AddNumberToObject(row, "seed", (double)c->seed);
  if (r->impl[0]) cJSON_AddStringToObject(row, "impl", r->impl);
  if (c->v->compute != FKM_COMPUTE_EXACT) cJSON_AddStringToObject(row, "compute", fkm_compute_name(c->v->compute));
  cJSON_AddStringToObject(row, "status", row_status(r));
  if (r->reason[0]) cJSON_AddStringToObject(row, "reason", r->reason);
  else cJSON_AddNullToObject(row, "reason");
  if (r->status != FKM_OK && r->status != FKM_ERR_NOT_SUPPORTED && r->status != FKM_ERR_OOM)
    cJSON_AddStringToObject(row, "error_kind", fkm_status_name(r->status));
  if (r->validation) cJSON_AddItemToObject(row, "validation", r->validation);
  else cJSON_AddNullToObject(row, "validation");
  r->validation = NULL;
  if (r->timing && r->status == FKM_OK && !r->incorrect) {
    cJSON_AddItemToObject(row, "timing", r->timing);
    double flops, bytes;
    work_of(&c->s, c->v->op, &flops, &bytes);
    if (c->v->op == FKM_OP_FIT && r->have_fit) { /* every iteration and the final assignment: passes of one iteration's work */
      flops *= r->fit_seen.iterations + 1;
      bytes *= r->fit_seen.iterations + 1;
    }
    double sec = r->median_ms * 1e-3;
    cJSON *d = cJSON_AddObjectToObject(row, "derived");
    cJSON_AddNumberToObject(d, "flops", flops);
    cJSON_AddNumberToObject(d, "bytes", bytes);
    cJSON_AddNumberToObject(d, "tflops", flops / sec / 1e12);
    cJSON_AddNumberToObject(d, "gbps", bytes / sec / 1e9);
    if (r->phases) {
      cJSON_AddItemToObject(row, "phases", r->phases);
      r->phases = NULL;
    }
    if (ctx->ceil.measured && !fkm_variant_is_cpu(c->v)) {
      cJSON_AddNumberToObject(d, "share_of_gemm", flops / sec / 1e12 / ctx->ceil.gemm_tflops);
      cJSON_AddNumberToObject(d, "share_of_copy", bytes / sec / 1e9 / ctx->ceil.copy_gbps);
    }
  } else {
    cJSON_Delete(r->timing);
    cJSON_AddNullToObject(row, "timing");
  }
  cJSON_Delete(r->phases);
  r->phases = NULL;
  r->timing = NULL;
  if (r->have_fit) {
    const fkm_experiment *e = &ctx->cfg->exps[c->exp_index];
    const fkm_fit_result *f = &r->fit_seen;
    cJSON *o = cJSON_AddObjectToObject(row, "fit");
    cJSON_AddStringToObject(o, "init", fkm_init_name(e->fit.init));
    cJSON_AddStringToObject(o, "tol_mode", e->fit.tol_mode == FKM_TOL_SHIFT ? "shift" : "inertia");
    cJSON_AddNumberToObject(o, "tol", e->fit.tol);
    cJSON_AddNumberToObject(o, "max_iter", e->fit.max_iter);
    cJSON_AddNumberToObject(o, "iterations", f->iterations);
    cJSON_AddBoolToObject(o, "converged", f->converged);
    cJSON_AddNumberToObject(o, "inertia", f->inertia);
    if (r->samples > 0) {
      cJSON_AddNumberToObject(o, "iterations_min", r->fit_iter_min);
      cJSON_AddNumberToObject(o, "iterations_max", r->fit_iter_max);
      if (r->median_ms > 0) cJSON_AddNumberToObject(o, "ms_per_pass", r->median_ms / (f->iterations + 1));
    }
    cJSON *ih = cJSON_AddArrayToObject(o, "inertia_history");
    cJSON *sh = cJSON_AddArrayToObject(o, "shift_history");
    for (int i = 0; i < f->history_len; i++) {
      cJSON_AddItemToArray(ih, cJSON_CreateNumber(f->inertia_history[i]));
      cJSON_AddItemToArray(sh, cJSON_CreateNumber(f->shift_history[i]));
    }
  }
  fkm_fit_result_free(&r->fit);
  fkm_fit_result_free(&r->fit_seen);
  r->have_fit = 0;
  if (!fkm_variant_is_cpu(c->v) && r->device_bytes > 0) cJSON_AddNumberToObject(row, "device_bytes", (double)r->device_bytes);
  else cJSON_AddNullToObject(row, "device_bytes");
  cJSON_AddNumberToObject(row, "wall_s", wall);
  if (ctx->profile) cJSON_AddBoolToObject(row, "profiled", 1);
  return row;
}

static void shape_text(const fkm_case *c, char *buf, size_t n) {
  snprintf(buf, n, "%lldx%lldx%lldx%lld %s %s", (long long)c->s.B, (long long)c->s.N, (long long)c->s.K,
           (long long)c->s.D, fkm_dtype_name(c->s.dtype), c->data.label);
}

static void print_progress(int i, int n, const fkm_case *c, const case_result *r, double elapsed) {
  char shape[256], t[64] = "-", eta[64] = "";
  shape_text(c, shape, sizeof shape);
  if (r->status == FKM_OK && !r->incorrect && r->median_ms > 0) snprintf(t, sizeof t, "%.4f ms", r->median_ms);
  if (i < n) {
    double left = elapsed / i * (n - i);
    snprintf(eta, sizeof eta, "  eta %dm%02ds", (int)(left / 60), (int)fmod(left, 60));
  }
  fprintf(stderr, "[%*d/%d] %-26s %-34s %12s  %s%s\n", n >= 100 ? 3 : 2, i, n, c->v->name, shape, t, row_status(r), eta);
  if (r->reason[0] && !(r->status == FKM_OK && !r->incorrect)) fprintf(stderr, "        %s\n", r->reason);
}

/* A multi-GPU variant's case: `flashkm dist` in child processes (their own
 * CUDA contexts; this process already holds one) on the experiment's GPUs.
 * Its rows — 1 GPU and all GPUs, validated by dist itself — are returned
 * (an array, experiment renamed), or NULL with res->status and reason set. */
static cJSON *run_dist_case(run_ctx *ctx, const fkm_case *c, case_result *res) {
  memset(res, 0, sizeof *res);
  const fkm_experiment *e = &ctx->cfg->exps[c->exp_index];
  char why[512] = "";
  if (!ctx->dev.present) snprintf(why, sizeof why, "%s", ctx->dev.absent_reason);
  else if (c->v->supports && c->v->supports(&c->s, &ctx->dev, why, sizeof why) != FKM_OK) {
  } else if (c->data.kind == FKM_DATA_NPY) snprintf(why, sizeof why, "flashkm dist generates its data: npy inputs are not supported");
  if (why[0]) {
    res->status = FKM_ERR_NOT_SUPPORTED;
    snprintf(res->reason, sizeof res->reason, "%s", why);
    return NULL;
  }
  group_release(&ctx->g); /* the ranks need the GPU memory this process holds for data */
  char exe[1024], gpus[512] = "", out[256], num[8][32];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) {
    res->status = FKM_ERR_IO;
    snprintf(res->reason, sizeof res->reason, "cannot find this program's path to start flashkm dist");
    return NULL;
  }
  exe[len] = 0;
  const int ng = e->n_gpus > 0 ? e->n_gpus : 1;
  for (int i = 0; i < ng; i++) {
    size_t at = strlen(gpus);
    snprintf(gpus + at, sizeof gpus - at, "%s%d", i ? "," : "", e->n_gpus > 0 ? e->gpus[i] : 0);
  }
  snprintf(out, sizeof out, "/tmp/flashkm_dist_case_%d.json", (int)getpid());
  snprintf(num[0], sizeof num[0], "%lld", (long long)c->s.N);
  snprintf(num[1], sizeof num[1], "%lld", (long long)c->s.K);
  snprintf(num[2], sizeof num[2], "%lld", (long long)c->s.D);
  snprintf(num[3], sizeof num[3], "%lld", (long long)c->s.B);
  snprintf(num[4], sizeof num[4], "%llu", (unsigned long long)c->seed);
  const int iters = e->measure.max_samples < 5 ? 5 : e->measure.max_samples > 50 ? 50 : e->measure.max_samples;
  snprintf(num[5], sizeof num[5], "%d", iters);
  snprintf(num[6], sizeof num[6], "%.17g", e->fit.tol);
  snprintf(num[7], sizeof num[7], "%d", e->fit.max_iter);
  const char *argv[40];
  int a = 0;
  argv[a++] = exe;
  argv[a++] = "dist";
  argv[a++] = "--gpus";
  argv[a++] = gpus;
  argv[a++] = "--n"; argv[a++] = num[0];
  argv[a++] = "--k"; argv[a++] = num[1];
  argv[a++] = "--d"; argv[a++] = num[2];
  argv[a++] = "--b"; argv[a++] = num[3];
  argv[a++] = "--seed"; argv[a++] = num[4];
  argv[a++] = "--dtype"; argv[a++] = fkm_dtype_name(c->s.dtype);
  argv[a++] = "--data"; argv[a++] = c->data.label;
  if (c->v->op == FKM_OP_FIT) {
    argv[a++] = "--fit";
    argv[a++] = "--tol"; argv[a++] = num[6];
    argv[a++] = "--max-iter"; argv[a++] = num[7];
    argv[a++] = "--init"; argv[a++] = fkm_init_name(e->fit.init);
  } else {
    argv[a++] = "--iters"; argv[a++] = num[5];
  }
  if (ng == 1) argv[a++] = "--no-scaling";
  argv[a++] = "-q";
  argv[a++] = "-o"; argv[a++] = out;
  argv[a] = NULL;
  remove(out);
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv(exe, (char *const *)argv);
    fprintf(stderr, "flashkm: cannot start %s dist: %s\n", exe, strerror(errno));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) {
    res->status = FKM_ERR_IO;
    snprintf(res->reason, sizeof res->reason, "cannot start flashkm dist: %s", strerror(errno));
    return NULL;
  }
  cJSON *doc = NULL;
  (void)fkm_json_read(out, &doc); /* none: the child failed before writing (said below) */
  remove(out);
  cJSON *runs = doc ? cJSON_DetachItemFromObject(doc, "runs") : NULL;
  cJSON_Delete(doc);
  if (!cJSON_IsArray(runs) || cJSON_GetArraySize(runs) == 0) {
    cJSON_Delete(runs);
    res->status = FKM_ERR_CUDA;
    snprintf(res->reason, sizeof res->reason, "flashkm dist on GPUs %s %s %d and wrote no rows (its messages are above)",
             gpus, WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return NULL;
  }
  for (cJSON *r = runs->child; r; r = r->next) cJSON_ReplaceItemInObject(r, "experiment", cJSON_CreateString(e->name));
  return runs;
}

static void default_out_path(const fkm_config *cfg, char *buf, size_t n) {
  snprintf(buf, n, "flashkm_%s.json", cfg->name);
}

int fkm_run_command(const fkm_run_opts *o) {
  fkm_config cfg;
  if (fkm_config_load(o->config_path, &cfg) != FKM_OK) {
    fprintf(stderr, "flashkm: %s\n", fkm_last_error());
    return FKM_EXIT_USAGE;
  }
  fkm_case *cases = NULL;
  int n = 0;
  if (fkm_config_expand(&cfg, o->filter, &cases, &n) != FKM_OK) {
    fprintf(stderr, "flashkm: %s\n", fkm_last_error());
    fkm_config_free(&cfg);
    return FKM_EXIT_USAGE;
  }
  if (n == 0) {
    fprintf(stderr, "flashkm: %s: no case to run%s%s\n", o->config_path, o->filter ? " after --filter " : "",
            o->filter ? o->filter : "");
    free(cases);
    fkm_config_free(&cfg);
    return FKM_EXIT_USAGE;
  }
  if (o->dry_run) {
    for (int i = 0; i < n; i++) {
      char shape[256];
      shape_text(&cases[i], shape, sizeof shape);
      printf("%4d  %-20s %-26s %s seed=%llu\n", i + 1, cfg.exps[cases[i].exp_index].name, cases[i].v->name, shape,
             (unsigned long long)cases[i].seed);
    }
    printf("%d cases\n", n);
    free(cases);
    fkm_config_free(&cfg);
    return FKM_EXIT_OK;
  }

  run_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.cfg = &cfg;
  ctx.profile = o->profile;
  ctx.g.group = -1;
  fkm_device_query(&ctx.dev);
  int n_gpu = 0;
  for (int i = 0; i < n; i++) n_gpu += !fkm_variant_is_cpu(cases[i].v);
  if (n_gpu && !ctx.dev.present && !o->quiet)
    fprintf(stderr, "flashkm: %s; its %d GPU case(s) will be recorded as not_supported\n", ctx.dev.absent_reason, n_gpu);

  char out_path[1200];
  if (o->out_path) snprintf(out_path, sizeof out_path, "%s", o->out_path);
  else default_out_path(&cfg, out_path, sizeof out_path);
  fkm_results *res = NULL;
  if (fkm_results_open(out_path, fkm_info_meta(o->argc, o->argv, &cfg, o->filter), fkm_info_device(&ctx.dev), &res) != FKM_OK) {
    fprintf(stderr, "flashkm: %s\n", fkm_last_error());
    free(cases);
    fkm_config_free(&cfg);
    return FKM_EXIT_USAGE;
  }

  int exit_code = FKM_EXIT_OK;
  const char *abort_reason = NULL;
  char abort_buf[1024];
  if (n_gpu && ctx.dev.present) {
    if (cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreate(&ctx.e0) != cudaSuccess || cudaEventCreate(&ctx.e1) != cudaSuccess) {
      snprintf(abort_buf, sizeof abort_buf, "cannot create a CUDA stream or events: %s", cudaGetErrorString(cudaGetLastError()));
      abort_reason = abort_buf;
    } else {
      if (!o->quiet) fprintf(stderr, "flashkm: measuring ceilings on %s ...\n", ctx.dev.name);
      if (fkm_measure_ceilings(&ctx.dev, &ctx.ceil) == FKM_OK) {
        cJSON *cj = cJSON_CreateObject();
        cJSON_AddNumberToObject(cj, "copy_gbps", ctx.ceil.copy_gbps);
        cJSON_AddNumberToObject(cj, "gemm_fp16_tflops", ctx.ceil.gemm_tflops);
        cJSON_AddStringToObject(cj, "copy_method", "cudaMemcpyAsync device-to-device 1 GiB, best of 10, bytes read + written");
        cJSON_AddStringToObject(cj, "gemm_method", "cublasGemmEx fp16 in, fp32 compute, 8192^3, best of 6");
        fkm_results_set_ceilings(res, cj);
      } else if (!o->quiet) {
        fprintf(stderr, "flashkm: ceilings not measured: %s\n", fkm_last_error());
      }
      ctx.flush_bytes = fkm_l2_flush_bytes((size_t)(ctx.dev.l2_bytes > 0 ? ctx.dev.l2_bytes : (64 << 20)));
      if (cudaMalloc(&ctx.flush_buf, ctx.flush_bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        ctx.flush_buf = NULL;
        if (!o->quiet)
          fprintf(stderr, "flashkm: no memory for the %zu-byte L2 flush buffer: samples run unflushed "
                          "(each row's timing.flush_l2 says false)\n", ctx.flush_bytes);
      }
      ctx.used_at_start = device_used();
    }
  }

  const double t_start = fkm_now_s();
  int exp_open = -1;
  for (int i = 0; i < n && !abort_reason; i++) {
    const fkm_case *c = &cases[i];
    if (c->exp_index != exp_open) {
      if (exp_open >= 0) fkm_nvtx_pop();
      fkm_nvtx_push(cfg.exps[c->exp_index].name);
      exp_open = c->exp_index;
    }
    char range[256];
    snprintf(range, sizeof range, "%s", c->v->name);
    fkm_nvtx_push(range);
    case_result r;
    const double t0 = fkm_now_s();
    if (c->v->multi_gpu) {
      cJSON *rows = run_dist_case(&ctx, c, &r);
      fkm_nvtx_pop();
      if (rows) {
        int bad = 0;
        while (rows->child && !abort_reason) {
          cJSON *row = cJSON_DetachItemViaPointer(rows, rows->child);
          const cJSON *stt = cJSON_GetObjectItemCaseSensitive(row, "status");
          const cJSON *d = cJSON_GetObjectItemCaseSensitive(row, "dist");
          const cJSON *t = cJSON_GetObjectItemCaseSensitive(row, "timing");
          const cJSON *med = t ? cJSON_GetObjectItemCaseSensitive(t, "median") : NULL;
          const cJSON *nr = d ? cJSON_GetObjectItemCaseSensitive(d, "ranks") : NULL;
          const char *sts = cJSON_IsString(stt) ? stt->valuestring : "?";
          bad |= strcmp(sts, "ok") != 0 && strcmp(sts, "not_supported") != 0;
          if (!o->quiet) {
            char shape[256];
            shape_text(c, shape, sizeof shape);
            fprintf(stderr, "[%*d/%d] %-26s %-34s %9.4f ms  %s  (%d GPU%s)\n", n >= 100 ? 3 : 2, i + 1, n,
                    c->v->name, shape, cJSON_IsNumber(med) ? med->valuedouble : 0.0, sts,
                    cJSON_IsNumber(nr) ? (int)nr->valuedouble : 0, cJSON_IsNumber(nr) && nr->valuedouble > 1 ? "s" : "");
          }
          if (fkm_results_add_run(res, row) != FKM_OK) {
            snprintf(abort_buf, sizeof abort_buf, "results file: %s", fkm_last_error());
            abort_reason = abort_buf;
          }
        }
        cJSON_Delete(rows);
        if (bad) exit_code = FKM_EXIT_FAILED;
        continue;
      }
      cJSON *row = make_row(&ctx, c, &r, fkm_now_s() - t0);
      if (fkm_results_add_run(res, row) != FKM_OK) {
        snprintf(abort_buf, sizeof abort_buf, "results file: %s", fkm_last_error());
        abort_reason = abort_buf;
      }
      if (!o->quiet) print_progress(i + 1, n, c, &r, fkm_now_s() - t_start);
      if (r.status != FKM_ERR_NOT_SUPPORTED) exit_code = FKM_EXIT_FAILED;
      continue;
    }
    run_case(&ctx, c, &r);
    fkm_nvtx_pop();
    cJSON *row = make_row(&ctx, c, &r, fkm_now_s() - t0);
    if (fkm_results_add_run(res, row) != FKM_OK) {
      snprintf(abort_buf, sizeof abort_buf, "results file: %s", fkm_last_error());
      abort_reason = abort_buf;
    }
    if (!o->quiet) print_progress(i + 1, n, c, &r, fkm_now_s() - t_start);
    if (r.incorrect || (r.status != FKM_OK && r.status != FKM_ERR_NOT_SUPPORTED && r.status != FKM_ERR_OOM))
      exit_code = FKM_EXIT_FAILED;
    if (r.status == FKM_ERR_CUDA_STICKY) {
      snprintf(abort_buf, sizeof abort_buf, "sticky CUDA error in %s: %s", c->v->name, r.reason);
      abort_reason = abort_buf;
    }
  }
  if (exp_open >= 0) fkm_nvtx_pop();
  group_release(&ctx.g);
  if (abort_reason) {
    exit_code = FKM_EXIT_ABORTED;
    fprintf(stderr, "flashkm: sweep aborted: %s (finished rows are in %s)\n", abort_reason, out_path);
  }
  if (fkm_results_finish(res, abort_reason ? "aborted" : "complete", abort_reason) != FKM_OK) {
    fprintf(stderr, "flashkm: %s\n", fkm_last_error());
    exit_code = FKM_EXIT_ABORTED;
  }
  fkm_results_close(res);
  if (!o->quiet) fprintf(stderr, "flashkm: wrote %s\n", out_path);
  if (ctx.flush_buf) cudaFree(ctx.flush_buf);
  if (ctx.e0) cudaEventDestroy(ctx.e0);
  if (ctx.e1) cudaEventDestroy(ctx.e1);
  if (ctx.stream) cudaStreamDestroy(ctx.stream);
  free(cases);
  fkm_config_free(&cfg);
  return exit_code;
}
