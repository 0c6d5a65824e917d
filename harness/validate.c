/* validate.c — see validate.h. The reference for a problem is built once
 * (sampled rows for assignment, all points for the update) and every variant's
 * output is checked against it. */
#include "validate.h"
#include "dtype.h"
#include "error.h"
#include "gen.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fkm_compute_name(fkm_compute c) { return c == FKM_COMPUTE_TF32 ? "tf32" : "exact"; }

/* fp32 accumulation of D products of magnitude up to ||x||·||c|| errs by about
 * sqrt(D)·2^-24 of the scale on random data; 3e-6·sqrt(D) leaves a wide margin
 * (3.4e-5 at D=128) while any wrong label on non-degenerate data is off by O(1).
 * tf32: rounding x and c to 10 mantissa bits (round to nearest: 2^-11 relative
 * each) moves x·c by at most 2^-10·Σ|x_i c_i| <= 2^-10·||x||·||c||, so a score
 * ||c||² − 2x·c by at most 2^-10·(||x||² + ||c||²): a worst-case bound (random
 * rounding errors cancel to ~1/sqrt(D) of it). Two scores are compared, and the
 * other label's ||c||² may exceed the best one's: 4·2^-10 of the scale. */
double fkm_assign_tolerance(fkm_dtype t, int64_t D, fkm_compute compute) {
  (void)t; /* inputs are exact in fp32 for all three dtypes; accumulation is fp32 */
  const double accumulate = 3e-6 * sqrt((double)(D < 1 ? 1 : D));
  return compute == FKM_COMPUTE_TF32 ? accumulate + 4.0 * ldexp(1.0, -10) : accumulate;
}

/* Summing n fp32 values in any order errs by about sqrt(n)·2^-24 of the RMS. */
double fkm_update_tolerance(int64_t count) {
  return ldexp(16.0 + 4.0 * sqrt((double)(count < 1 ? 1 : count)), -24);
}

void fkm_assign_ref_free(fkm_assign_ref *r) {
  free(r->rows);
  free(r->best_k);
  free(r->best_d);
  free(r->x_norm2);
  free(r->c);
  free(r->c_norm2);
  memset(r, 0, sizeof *r);
}

/* Rows to check: all of them, or a deterministic spread that always includes
 * the first and last row of the whole problem. Work is capped at ~4e9 FLOPs. */
static int64_t choose_rows(const fkm_shape *s, int64_t max_rows, int64_t **rows_out) {
  const int64_t total = s->B * s->N;
  double per_row = (double)s->K * (double)s->D * 3.0;
  int64_t cap = (int64_t)(4e9 / per_row);
  if (cap < 64) cap = 64;
  int64_t n = max_rows < cap ? max_rows : cap;
  if (n > total) n = total;
  int64_t *rows = malloc(sizeof(int64_t) * (size_t)n);
  if (!rows) return -1;
  if (n == total) {
    for (int64_t i = 0; i < n; i++) rows[i] = i;
  } else {
    double stride = (double)total / (double)n;
    for (int64_t j = 0; j < n; j++) {
      int64_t lo = (int64_t)(j * stride), hi = (int64_t)((j + 1) * stride);
      if (hi <= lo) hi = lo + 1;
      rows[j] = lo + (int64_t)(fkm_hash(12345, 7, (uint64_t)j) % (uint64_t)(hi - lo));
    }
    rows[0] = 0;
    rows[n - 1] = total - 1;
  }
  *rows_out = rows;
  return n;
}

fkm_status fkm_assign_ref_build(const fkm_shape *s, const void *x, const void *c, int64_t max_rows, fkm_assign_ref *r) {
  memset(r, 0, sizeof *r);
  r->s = *s;
  const int64_t KD = s->B * s->K * s->D;
  r->n_rows = choose_rows(s, max_rows, &r->rows);
  r->c = malloc(sizeof(double) * (size_t)KD);
  r->c_norm2 = malloc(sizeof(double) * (size_t)(s->B * s->K));
  if (r->n_rows < 0 || !r->c || !r->c_norm2) goto oom;
  r->best_k = malloc(sizeof(int32_t) * (size_t)r->n_rows);
  r->best_d = malloc(sizeof(double) * (size_t)r->n_rows);
  r->x_norm2 = malloc(sizeof(double) * (size_t)r->n_rows);
  if (!r->best_k || !r->best_d || !r->x_norm2) goto oom;
  fkm_ref_to_f64(c, s->dtype, KD, r->c);
  for (int64_t i = 0; i < s->B * s->K; i++) {
    double acc = 0;
    for (int64_t d = 0; d < s->D; d++) acc += r->c[i * s->D + d] * r->c[i * s->D + d];
    r->c_norm2[i] = acc;
  }
  int failed = 0;
#pragma omp parallel
  {
    double *xd = malloc(sizeof(double) * (size_t)s->D);
    if (!xd) {
#pragma omp atomic write
      failed = 1;
    } else {
#pragma omp for schedule(dynamic, 16)
      for (int64_t j = 0; j < r->n_rows; j++) {
        const int64_t flat = r->rows[j], b = flat / s->N;
        fkm_ref_to_f64((const char *)x + (size_t)(flat * s->D) * fkm_dtype_size(s->dtype), s->dtype, s->D, xd);
        fkm_ref_nearest(xd, r->c + b * s->K * s->D, s->K, s->D, &r->best_k[j], &r->best_d[j]);
        double n2 = 0;
        for (int64_t d = 0; d < s->D; d++) n2 += xd[d] * xd[d];
        r->x_norm2[j] = n2;
      }
      free(xd);
    }
  }
  if (failed) goto oom;
  return FKM_OK;
oom:
  fkm_assign_ref_free(r);
  return fkm_fail(FKM_ERR_OOM, "validation: cannot allocate the assignment reference");
}

void fkm_validate_assign(const fkm_assign_ref *r, const void *x, const int32_t *labels, const float *dist,
                         fkm_compute compute, fkm_assign_check *out) {
  const fkm_shape *s = &r->s;
  memset(out, 0, sizeof *out);
  out->tol = fkm_assign_tolerance(s->dtype, s->D, compute);
  out->rows_checked = r->n_rows;
  double *xd = malloc(sizeof(double) * (size_t)s->D);
  if (!xd) {
    snprintf(out->detail, sizeof out->detail, "validation ran out of host memory");
    return;
  }
  for (int64_t j = 0; j < r->n_rows; j++) {
    const int64_t flat = r->rows[j], b = flat / s->N, n = flat % s->N;
    const int32_t got = labels[flat];
    const double scale = r->x_norm2[j] + r->c_norm2[b * s->K + r->best_k[j]] + 1e-30;
    double got_d;
    if (got < 0 || got >= s->K) {
      out->mismatches++;
      if (!out->detail[0])
        snprintf(out->detail, sizeof out->detail, "batch %lld point %lld: label %d is outside [0, %lld)",
                 (long long)b, (long long)n, got, (long long)s->K);
      continue;
    }
    if (got == r->best_k[j]) {
      got_d = r->best_d[j];
    } else {
      fkm_ref_to_f64((const char *)x + (size_t)(flat * s->D) * fkm_dtype_size(s->dtype), s->dtype, s->D, xd);
      got_d = fkm_ref_sqdist(xd, r->c + (b * s->K + got) * s->D, s->D);
      double excess = (got_d - r->best_d[j]) / scale;
      if (excess > out->max_excess) out->max_excess = excess;
      if (excess > out->tol) {
        out->mismatches++;
        if (!out->detail[0])
          snprintf(out->detail, sizeof out->detail,
                   "batch %lld point %lld: label %d at distance %.9g, reference %d at %.9g (excess %.3g of scale > tol %.3g)",
                   (long long)b, (long long)n, got, got_d, r->best_k[j], r->best_d[j], excess, out->tol);
        continue;
      }
      out->near_ties++;
    }
    double derr = fabs((double)dist[flat] - got_d) / scale;
    if (!(derr <= 4 * out->tol)) { /* also catches NaN */
      out->bad_dist++;
      if (!out->detail[0])
        snprintf(out->detail, sizeof out->detail, "batch %lld point %lld: distance %.9g, reference %.9g",
                 (long long)b, (long long)n, (double)dist[flat], got_d);
    }
    if (derr > out->max_dist_err || derr != derr) out->max_dist_err = derr;
  }
  free(xd);
  out->ok = out->mismatches == 0 && out->bad_dist == 0;
}

fkm_status fkm_update_ref_build(const fkm_shape *s, const void *x, const int32_t *labels, const float *c_old,
                                fkm_update_ref *r) {
  memset(r, 0, sizeof *r);
  r->s = *s;
  r->c = malloc(sizeof(double) * (size_t)(s->B * s->K * s->D));
  r->counts = malloc(sizeof(int64_t) * (size_t)(s->B * s->K));
  r->rms = malloc(sizeof(double) * (size_t)(s->B * s->K));
  if (!r->c || !r->counts || !r->rms) {
    fkm_update_ref_free(r);
    return fkm_fail(FKM_ERR_OOM, "validation: cannot allocate the update reference");
  }
  fkm_status st = fkm_ref_update(s, x, labels, c_old, r->c, r->counts, r->rms);
  if (st != FKM_OK) fkm_update_ref_free(r);
  return st;
}

void fkm_update_ref_free(fkm_update_ref *r) {
  free(r->c);
  free(r->counts);
  free(r->rms);
  memset(r, 0, sizeof *r);
}

void fkm_validate_update(const fkm_update_ref *r, const float *c_old, const float *c_new, const int32_t *counts,
                         fkm_update_check *out) {
  const fkm_shape *s = &r->s;
  memset(out, 0, sizeof *out);
  for (int64_t bk = 0; bk < s->B * s->K; bk++) {
    out->clusters_checked++;
    const float *got = c_new + bk * s->D;
    const double *want = r->c + bk * s->D;
    if (counts[bk] != r->counts[bk]) {
      out->count_mismatches++;
      if (!out->detail[0])
        snprintf(out->detail, sizeof out->detail, "batch %lld cluster %lld: count %d, reference %lld",
                 (long long)(bk / s->K), (long long)(bk % s->K), counts[bk], (long long)r->counts[bk]);
      continue;
    }
    if (r->counts[bk] == 0) {
      if (memcmp(got, c_old + bk * s->D, sizeof(float) * (size_t)s->D) != 0) {
        out->empty_changed++;
        if (!out->detail[0])
          snprintf(out->detail, sizeof out->detail, "batch %lld cluster %lld is empty but its centroid changed",
                   (long long)(bk / s->K), (long long)(bk % s->K));
      }
      continue;
    }
    double e2 = 0;
    for (int64_t d = 0; d < s->D; d++) {
      double diff = (double)got[d] - want[d];
      e2 += diff != diff ? INFINITY : diff * diff;
    }
    const double rel = sqrt(e2) / (r->rms[bk] > 0 ? r->rms[bk] : 1e-30);
    const double over = rel / fkm_update_tolerance(r->counts[bk]);
    if (rel > out->max_rel_err) out->max_rel_err = rel;
    if (over > out->max_err_over_tol) out->max_err_over_tol = over;
    if (!(over <= 1.0)) {
      out->bad_centroids++;
      if (!out->detail[0])
        snprintf(out->detail, sizeof out->detail,
                 "batch %lld cluster %lld (%lld points): centroid error %.3g of the cluster RMS > tol %.3g",
                 (long long)(bk / s->K), (long long)(bk % s->K), (long long)r->counts[bk], rel,
                 fkm_update_tolerance(r->counts[bk]));
    }
  }
  out->ok = out->count_mismatches == 0 && out->bad_centroids == 0 && out->empty_changed == 0;
}
