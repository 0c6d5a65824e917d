/* validate.h — checking a variant's output against the fp64 reference.
 *
 * Assignment (near-tie aware): a label that differs from the reference's is a
 * mismatch only when its fp64 distance exceeds the best one by more than
 * tol · (||x||² + ||c_best||²), tol = fkm_assign_tolerance(dtype, D, compute): the
 * error an fp32-accumulated ||c||² − 2x·c can make from the stored values
 * (FKM_COMPUTE_EXACT), or from values first rounded to tf32 (FKM_COMPUTE_TF32). Smaller differences are near ties,
 * counted separately. The reported distance must be within 4·tol of the same
 * scale. Large problems are checked on a deterministic sample of rows.
 * Update: counts must be exact; each centroid's error ||c − c_ref|| relative to
 * its cluster's RMS point norm must be within fkm_update_tolerance(count); an
 * empty cluster must hold its old centroid bit for bit. */
#ifndef FKM_VALIDATE_H
#define FKM_VALIDATE_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a variant multiplies: the stored values exactly (every dtype is exact in
 * fp32), or rounded to tf32 first (10-bit mantissa, tensor cores on fp32 data). */
typedef enum { FKM_COMPUTE_EXACT = 0, FKM_COMPUTE_TF32 = 1 } fkm_compute;
const char *fkm_compute_name(fkm_compute c);

double fkm_assign_tolerance(fkm_dtype t, int64_t D, fkm_compute compute);
double fkm_update_tolerance(int64_t count);

/* The reference for a sample of rows, computed once per problem and reused for
 * every variant run on it. */
typedef struct {
  fkm_shape s;
  int64_t n_rows;
  int64_t *rows;     /* flat point indices b*N + n, ascending */
  int32_t *best_k;
  double *best_d;
  double *x_norm2;   /* ||x||² of each sampled row */
  double *c;         /* all centroids in fp64 [B][K][D] */
  double *c_norm2;   /* [B][K] */
} fkm_assign_ref;

typedef struct {
  int ok;
  int64_t rows_checked, mismatches, near_ties, bad_dist;
  double tol, max_excess, max_dist_err; /* excess and dist error relative to the scale */
  char detail[512];  /* first failure, human readable */
} fkm_assign_check;

fkm_status fkm_assign_ref_build(const fkm_shape *s, const void *x, const void *c, int64_t max_rows, fkm_assign_ref *ref);
void fkm_assign_ref_free(fkm_assign_ref *ref);
void fkm_validate_assign(const fkm_assign_ref *ref, const void *x, const int32_t *labels, const float *dist,
                         fkm_compute compute, fkm_assign_check *out);

typedef struct {
  fkm_shape s;
  double *c;        /* [B][K][D] */
  int64_t *counts;  /* [B][K] */
  double *rms;      /* [B][K] */
} fkm_update_ref;

typedef struct {
  int ok;
  int64_t clusters_checked, count_mismatches, bad_centroids, empty_changed;
  double max_rel_err;   /* max over clusters of error / tolerance-scale */
  double max_err_over_tol;
  char detail[512];
} fkm_update_check;

fkm_status fkm_update_ref_build(const fkm_shape *s, const void *x, const int32_t *labels, const float *c_old,
                                fkm_update_ref *ref);
void fkm_update_ref_free(fkm_update_ref *ref);
void fkm_validate_update(const fkm_update_ref *ref, const float *c_old, const float *c_new, const int32_t *counts,
                         fkm_update_check *out);

#ifdef __cplusplus
}
#endif
#endif
