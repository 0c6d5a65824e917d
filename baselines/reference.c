/* reference.c — fp64 CPU reference (see reference.h) and the two CPU variants
 * built on it, assign/cpu_ref and update/cpu_ref, which let the whole harness
 * path (config -> run -> validate -> results) run on machines without a GPU. */
#include "reference.h"
#include "dtype.h"
#include "error.h"
#include "variant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void fkm_ref_to_f64(const void *src, fkm_dtype t, int64_t count, double *dst) {
  for (int64_t i = 0; i < count; i++) dst[i] = (double)fkm_load_as_f32(src, (int)t, i);
}

double fkm_ref_sqdist(const double *x, const double *c, int64_t D) {
  double acc = 0.0;
  for (int64_t d = 0; d < D; d++) {
    double diff = x[d] - c[d];
    acc += diff * diff;
  }
  return acc;
}

void fkm_ref_nearest(const double *x, const double *c, int64_t K, int64_t D, int32_t *best_k, double *best_d) {
  int32_t bk = 0;
  double bd = INFINITY;
  for (int64_t k = 0; k < K; k++) {
    double dk = fkm_ref_sqdist(x, c + k * D, D);
    if (dk < bd) { bd = dk; bk = (int32_t)k; } /* strict: ties keep the lowest index */
  }
  *best_k = bk;
  *best_d = bd;
}

fkm_status fkm_ref_assign(const fkm_shape *s, const void *x, const void *c, int32_t *labels, float *dist) {
  const int64_t D = s->D, K = s->K, N = s->N;
  double *cd = malloc(sizeof(double) * (size_t)(K * D));
  double *xd = malloc(sizeof(double) * (size_t)D);
  if (!cd || !xd) {
    free(cd);
    free(xd);
    return fkm_fail(FKM_ERR_OOM, "reference assign: cannot allocate %lld doubles", (long long)(K * D));
  }
  const size_t es = fkm_dtype_size(s->dtype);
  for (int64_t b = 0; b < s->B; b++) {
    fkm_ref_to_f64((const char *)c + (size_t)(b * K * D) * es, s->dtype, K * D, cd);
    for (int64_t n = 0; n < N; n++) {
      fkm_ref_to_f64((const char *)x + (size_t)((b * N + n) * D) * es, s->dtype, D, xd);
      int32_t bk;
      double bd;
      fkm_ref_nearest(xd, cd, K, D, &bk, &bd);
      labels[b * N + n] = bk;
      dist[b * N + n] = (float)bd;
    }
  }
  free(cd);
  free(xd);
  return FKM_OK;
}

fkm_status fkm_ref_update(const fkm_shape *s, const void *x, const int32_t *labels, const float *c_old,
                          double *c_new, int64_t *counts, double *rms) {
  const int64_t D = s->D, K = s->K, N = s->N, B = s->B;
  const size_t es = fkm_dtype_size(s->dtype);
  for (int64_t i = 0; i < B * N; i++)
    if (labels[i] < 0 || labels[i] >= K)
      return fkm_fail(FKM_ERR_INPUT, "label %d of point %lld (batch %lld) is outside [0, %lld)", labels[i],
                      (long long)(i % N), (long long)(i / N), (long long)K);
  /* The points of each cluster in increasing index order (a stable counting
   * sort), so clusters can be summed in parallel while every cluster's sum
   * keeps the sequential order: the result does not depend on the threads. */
  int64_t *start = calloc((size_t)(B * K + 1), sizeof(int64_t));
  int64_t *order = malloc(sizeof(int64_t) * (size_t)(B * N));
  if (!start || !order) {
    free(start);
    free(order);
    return fkm_fail(FKM_ERR_OOM, "reference update: cannot allocate %lld indices", (long long)(B * N));
  }
  for (int64_t i = 0; i < B * N; i++) start[(i / N) * K + labels[i] + 1]++;
  for (int64_t bk = 0; bk < B * K; bk++) start[bk + 1] += start[bk];
  {
    int64_t *cursor = malloc(sizeof(int64_t) * (size_t)(B * K));
    if (!cursor) {
      free(start);
      free(order);
      return fkm_fail(FKM_ERR_OOM, "reference update: out of host memory");
    }
    memcpy(cursor, start, sizeof(int64_t) * (size_t)(B * K));
    for (int64_t i = 0; i < B * N; i++) order[cursor[(i / N) * K + labels[i]]++] = i;
    free(cursor);
  }
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t bk = 0; bk < B * K; bk++) {
    double *acc = c_new + bk * D;
    const int64_t n = start[bk + 1] - start[bk];
    double norm2 = 0.0;
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0;
    for (int64_t j = start[bk]; j < start[bk + 1]; j++) {
      const char *row = (const char *)x + (size_t)(order[j] * D) * es;
      for (int64_t d = 0; d < D; d++) {
        double v = (double)fkm_load_as_f32(row, (int)s->dtype, d);
        acc[d] += v;
        norm2 += v * v;
      }
    }
    counts[bk] = n;
    if (n == 0) {
      for (int64_t d = 0; d < D; d++) acc[d] = (double)c_old[bk * D + d];
      if (rms) rms[bk] = 0.0;
    } else {
      for (int64_t d = 0; d < D; d++) acc[d] /= (double)n;
      if (rms) rms[bk] = sqrt(norm2 / (double)n);
    }
  }
  free(start);
  free(order);
  return FKM_OK;
}

/* ---- CPU variants ---- */

static fkm_status cpu_assign_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  (void)state;
  (void)stream;
  return fkm_ref_assign(&p->s, p->x, p->c, p->labels, p->dist);
}

static fkm_status cpu_update_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  (void)state;
  (void)stream;
  const fkm_shape *s = &p->s;
  int64_t nc = s->B * s->K * s->D, nk = s->B * s->K;
  double *c = malloc(sizeof(double) * (size_t)nc);
  int64_t *cnt = malloc(sizeof(int64_t) * (size_t)nk);
  if (!c || !cnt) {
    free(c);
    free(cnt);
    return fkm_fail(FKM_ERR_OOM, "update/cpu_ref: cannot allocate %lld centroid values", (long long)nc);
  }
  fkm_status st = fkm_ref_update(s, p->x, p->labels_in, p->c_old, c, cnt, NULL);
  if (st == FKM_OK) {
    for (int64_t i = 0; i < nc; i++) p->c_new[i] = (float)c[i];
    for (int64_t i = 0; i < nk; i++) p->counts[i] = (int32_t)cnt[i];
  }
  free(c);
  free(cnt);
  return st;
}

const fkm_variant fkm_assign_cpu_ref = {
    .name = "assign/cpu_ref",
    .op = FKM_OP_ASSIGN,
    .summary = "fp64 CPU reference: exact distances sum((x-c)^2), one point at a time",
    .min_cc = 0,
    .run = cpu_assign_run,
};

const fkm_variant fkm_update_cpu_ref = {
    .name = "update/cpu_ref",
    .op = FKM_OP_UPDATE,
    .summary = "fp64 CPU reference: per-cluster sums and counts in double, then means",
    .min_cc = 0,
    .run = cpu_update_run,
};
