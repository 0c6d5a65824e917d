/* test_gen.c — the generators are pure functions of the seed, have the
 * stated distributions, and the skewed one puts half the points in cluster 0. */
#include "check.h"
#include "data.h"
#include "dtype.h"
#include "gen.h"

#include <string.h>

int main(void) {
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    float z = fkm_normal(1, FKM_STREAM_POINT, (uint64_t)i);
    sum += z;
    sq += (double)z * z;
  }
  CHECK_NEAR(sum / n, 0.0, 0.01);
  CHECK_NEAR(sq / n, 1.0, 0.02);
  double usum = 0;
  float umin = 1, umax = -1;
  for (int i = 0; i < n; i++) {
    float u = fkm_uniform(2, FKM_STREAM_POINT, (uint64_t)i);
    usum += u;
    umin = u < umin ? u : umin;
    umax = u > umax ? u : umax;
  }
  CHECK_NEAR(usum / n, 0.0, 0.01);
  CHECK(umin >= -1.0f && umax < 1.0f);
  int zero = 0, one_to_three = 0;
  for (int i = 0; i < n; i++) {
    int32_t l = fkm_true_label(FKM_GEN_SKEWED, 5, (uint64_t)i, 1000);
    zero += l == 0;
    one_to_three += l >= 1 && l <= 3;
  }
  CHECK_NEAR((double)zero / n, 0.5, 0.01);
  CHECK_NEAR((double)one_to_three / n, 0.25, 0.01);
  for (int i = 0; i < 1000; i++) CHECK(fkm_true_label(FKM_GEN_SKEWED, 5, (uint64_t)i, 1) == 0);

  /* Same seed, same data; another seed, other data. */
  fkm_shape s = {2, 300, 9, 5, FKM_F16};
  fkm_data_spec spec = {.kind = FKM_DATA_BLOBS};
  fkm_dataset a, b, c;
  CHECK(fkm_data_make_host(&s, &spec, 42, &a) == FKM_OK);
  CHECK(fkm_data_make_host(&s, &spec, 42, &b) == FKM_OK);
  CHECK(fkm_data_make_host(&s, &spec, 43, &c) == FKM_OK);
  CHECK(!memcmp(a.x, b.x, 2 * 300 * 5 * 2));
  CHECK(memcmp(a.x, c.x, 2 * 300 * 5 * 2) != 0);
  /* Centroids are rows floor(k*N/K) of each batch. */
  CHECK(!memcmp((char *)a.c + 9 * 5 * 2, (char *)a.x + (300 + fkm_centroid_row(0, 300, 9)) * 5 * 2, 5 * 2));
  CHECK(!memcmp((char *)a.c + (9 + 4) * 5 * 2, (char *)a.x + (300 + fkm_centroid_row(4, 300, 9)) * 5 * 2, 5 * 2));
  /* Blob points lie near their generating centre. */
  double worst = 0;
  for (int64_t i = 0; i < 600; i++) {
    int32_t j = a.labels[i];
    double d2 = 0;
    for (int64_t d = 0; d < 5; d++) {
      double diff = (double)fkm_load_as_f32(a.x, FKM_F16, i * 5 + d) - fkm_gen_centre(42, i / 300, j, d, 9, 5);
      d2 += diff * diff;
    }
    worst = d2 > worst ? d2 : worst;
  }
  CHECK(worst < 5 * 0.25 * 0.25 * 12.0 + 0.01); /* noise is bounded by |z| <= 3.47 */
  fkm_data_free(&a);
  fkm_data_free(&b);
  fkm_data_free(&c);
  return check_exit("test_gen");
}
