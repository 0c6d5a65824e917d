/* test_validate.c — the validation logic catches what it must (wrong labels,
 * bad or NaN distances, wrong counts, wrong or moved-empty centroids) and
 * accepts near ties and rounding-level centroid errors. */
#include "check.h"
#include "data.h"
#include "reference.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

static void assign_cases(void) {
  fkm_shape s = {2, 600, 16, 24, FKM_F16};
  fkm_data_spec spec = {.kind = FKM_DATA_BLOBS};
  fkm_dataset h;
  CHECK(fkm_data_make_host(&s, &spec, 3, &h) == FKM_OK);
  int32_t *labels = malloc(sizeof(int32_t) * 1200);
  float *dist = malloc(sizeof(float) * 1200);
  CHECK(fkm_ref_assign(&s, h.x, h.c, labels, dist) == FKM_OK);
  fkm_assign_ref ref;
  CHECK(fkm_assign_ref_build(&s, h.x, h.c, 100000, &ref) == FKM_OK);
  CHECK_EQ_INT(ref.n_rows, 1200);
  fkm_assign_check a;
  fkm_validate_assign(&ref, h.x, labels, dist, FKM_COMPUTE_EXACT, &a);
  CHECK(a.ok);
  CHECK_EQ_INT(a.mismatches, 0);

  /* A wrong label on blob data is far from the best: a mismatch. */
  int32_t keep = labels[700];
  labels[700] = (keep + 5) % 16;
  fkm_validate_assign(&ref, h.x, labels, dist, FKM_COMPUTE_EXACT, &a);
  CHECK(!a.ok);
  CHECK_EQ_INT(a.mismatches, 1);
  CHECK_MSG(strstr(a.detail, "batch 1 point 100") != NULL, "detail: %s", a.detail);
  labels[700] = keep;

  /* Out-of-range label and NaN distance. */
  labels[3] = 16;
  fkm_validate_assign(&ref, h.x, labels, dist, FKM_COMPUTE_EXACT, &a);
  CHECK_EQ_INT(a.mismatches, 1);
  labels[3] = ref.best_k[3];
  float d = dist[9];
  dist[9] = NAN;
  fkm_validate_assign(&ref, h.x, labels, dist, FKM_COMPUTE_EXACT, &a);
  CHECK(!a.ok);
  CHECK_EQ_INT(a.bad_dist, 1);
  dist[9] = d * 1.01f + 1.0f;
  fkm_validate_assign(&ref, h.x, labels, dist, FKM_COMPUTE_EXACT, &a);
  CHECK(!a.ok);
  dist[9] = d;
  fkm_assign_ref_free(&ref);

  /* Sampling: at most max_rows rows, first and last always included. */
  CHECK(fkm_assign_ref_build(&s, h.x, h.c, 50, &ref) == FKM_OK);
  CHECK_EQ_INT(ref.n_rows, 50);
  CHECK_EQ_INT(ref.rows[0], 0);
  CHECK_EQ_INT(ref.rows[49], 1199);
  for (int i = 1; i < 50; i++) CHECK(ref.rows[i] > ref.rows[i - 1]);
  fkm_assign_ref_free(&ref);
  fkm_data_free(&h);
  free(labels);
  free(dist);

  /* Near tie: a point exactly between two centroids; either label passes, counted as a tie. */
  const float x[] = {0, 0};
  const float c[] = {1, 0, -1, 0};
  fkm_shape t = {1, 1, 2, 2, FKM_F32};
  CHECK(fkm_assign_ref_build(&t, x, c, 10, &ref) == FKM_OK);
  int32_t l = 1;
  float dd = 1.0f;
  fkm_validate_assign(&ref, x, &l, &dd, FKM_COMPUTE_EXACT, &a);
  CHECK(a.ok);
  CHECK_EQ_INT(a.near_ties, 1);
  fkm_assign_ref_free(&ref);
}

static void update_cases(void) {
  fkm_shape s = {2, 800, 10, 7, FKM_BF16};
  fkm_data_spec spec = {.kind = FKM_DATA_SKEWED};
  fkm_dataset h;
  CHECK(fkm_data_make_host(&s, &spec, 4, &h) == FKM_OK);
  for (int64_t i = 0; i < s.B * s.N; i++) h.labels[i] = h.labels[i] == 9 ? 8 : h.labels[i]; /* cluster 9 empty */
  fkm_update_ref ref;
  CHECK(fkm_update_ref_build(&s, h.x, h.labels, h.c_old, &ref) == FKM_OK);
  const int64_t nc = s.B * s.K * s.D, nk = s.B * s.K;
  float *c = malloc(sizeof(float) * nc);
  int32_t *n = malloc(sizeof(int32_t) * nk);
  for (int64_t i = 0; i < nc; i++) c[i] = (float)ref.c[i];
  for (int64_t i = 0; i < nk; i++) n[i] = (int32_t)ref.counts[i];
  fkm_update_check u;
  fkm_validate_update(&ref, h.c_old, c, n, &u);
  CHECK(u.ok);
  CHECK_EQ_INT(ref.counts[9], 0);

  n[2] += 1;
  fkm_validate_update(&ref, h.c_old, c, n, &u);
  CHECK(!u.ok);
  CHECK_EQ_INT(u.count_mismatches, 1);
  n[2] -= 1;

  float keep = c[3 * s.D + 1];
  c[3 * s.D + 1] = keep + 1e-3f * (float)(ref.rms[3] + 1.0);
  fkm_validate_update(&ref, h.c_old, c, n, &u);
  CHECK(!u.ok);
  CHECK_EQ_INT(u.bad_centroids, 1);
  c[3 * s.D + 1] = keep;

  c[9 * s.D] += 1.0f; /* the empty cluster moved */
  fkm_validate_update(&ref, h.c_old, c, n, &u);
  CHECK(!u.ok);
  CHECK_EQ_INT(u.empty_changed, 1);
  c[9 * s.D] -= 1.0f;

  c[0] = NAN;
  fkm_validate_update(&ref, h.c_old, c, n, &u);
  CHECK(!u.ok);
  free(c);
  free(n);
  fkm_update_ref_free(&ref);
  fkm_data_free(&h);
}

int main(void) {
  assign_cases();
  update_cases();
  CHECK(fkm_assign_tolerance(FKM_F16, 128, FKM_COMPUTE_EXACT) < 1e-4);
  /* tf32: the worst-case input rounding (4 * 2^-10 of the scale) on top of accumulation */
  CHECK(fkm_assign_tolerance(FKM_F32, 128, FKM_COMPUTE_TF32) > 3.9e-3);
  CHECK(fkm_assign_tolerance(FKM_F32, 128, FKM_COMPUTE_TF32) < 4.0e-3);
  CHECK(strcmp(fkm_compute_name(FKM_COMPUTE_TF32), "tf32") == 0);
  CHECK(fkm_update_tolerance(1) < 2e-6);
  return check_exit("test_validate");
}
