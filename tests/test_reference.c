/* test_reference.c — the fp64 reference on hand-checked cases: nearest
 * centroid, ties to the lowest index, means, empty clusters, label range. */
#include "check.h"
#include <math.h>
#include "reference.h"

#include <string.h>

int main(void) {
  /* 1 batch, 4 points in 2-D, 3 centroids; point 3 is equidistant from c0 and c2. */
  const float x[] = {0, 0, 10, 10, 9, 11, 5, 0};
  const float c[] = {0, 1, 10, 10, 10, 1};
  fkm_shape s = {1, 4, 3, 2, FKM_F32};
  int32_t labels[4];
  float dist[4];
  CHECK(fkm_ref_assign(&s, x, c, labels, dist) == FKM_OK);
  CHECK_EQ_INT(labels[0], 0);
  CHECK_NEAR(dist[0], 1.0, 0);
  CHECK_EQ_INT(labels[1], 1);
  CHECK_NEAR(dist[1], 0.0, 0);
  CHECK_EQ_INT(labels[2], 1);
  CHECK_NEAR(dist[2], 2.0, 0);
  CHECK_EQ_INT(labels[3], 0); /* tie between 0 and 2 (both 26): lowest index */
  CHECK_NEAR(dist[3], 26.0, 0);

  /* Update: clusters {0}, {1,2}, {} (empty keeps c_old). */
  const int32_t lab[] = {0, 1, 1, 0};
  double c_new[6];
  int64_t counts[3];
  double rms[3];
  CHECK(fkm_ref_update(&s, x, lab, c, c_new, counts, rms) == FKM_OK);
  CHECK_EQ_INT(counts[0], 2);
  CHECK_EQ_INT(counts[1], 2);
  CHECK_EQ_INT(counts[2], 0);
  CHECK_NEAR(c_new[0], 2.5, 0);
  CHECK_NEAR(c_new[1], 0.0, 0);
  CHECK_NEAR(c_new[2], 9.5, 0);
  CHECK_NEAR(c_new[3], 10.5, 0);
  CHECK_NEAR(c_new[4], 10.0, 0); /* empty: c_old */
  CHECK_NEAR(c_new[5], 1.0, 0);
  CHECK_NEAR(rms[1], sqrt((200.0 + 202.0) / 2), 1e-12);

  /* A label outside [0, K) is an input error naming the point. */
  const int32_t bad[] = {0, 1, 3, 0};
  CHECK(fkm_ref_update(&s, x, bad, c, c_new, counts, rms) == FKM_ERR_INPUT);
  CHECK_MSG(strstr(fkm_last_error(), "point 2") != NULL, "message: %s", fkm_last_error());
  const int32_t neg[] = {0, -1, 0, 0};
  CHECK(fkm_ref_update(&s, x, neg, c, c_new, counts, rms) == FKM_ERR_INPUT);

  /* Batches are independent: batch 1 sees only its own centroids. */
  const float xb[] = {0, 0, 0, 0};
  const float cb[] = {5, 5, -1, 0, 1, 1, 0, 0}; /* batch0: (5,5), (-1,0); batch1: (1,1), (0,0) */
  fkm_shape s2 = {2, 1, 2, 2, FKM_F32};
  CHECK(fkm_ref_assign(&s2, xb, cb, labels, dist) == FKM_OK);
  CHECK_EQ_INT(labels[0], 1);
  CHECK_EQ_INT(labels[1], 1);
  CHECK_NEAR(dist[1], 0.0, 0);
  return check_exit("test_reference");
}
