/* test_stats.c — median, quartiles (type 7), spread of timing samples. */
#include "check.h"
#include "stats.h"

int main(void) {
  fkm_stats s;
  const double one[] = {4.0};
  fkm_stats_compute(one, 1, &s);
  CHECK_NEAR(s.median, 4.0, 0);
  CHECK_NEAR(s.q1, 4.0, 0);
  CHECK_NEAR(s.rel_stdev, 0.0, 0);

  const double v[] = {5, 1, 4, 2, 3}; /* unsorted on purpose */
  fkm_stats_compute(v, 5, &s);
  CHECK_EQ_INT(s.n, 5);
  CHECK_NEAR(s.median, 3.0, 1e-12);
  CHECK_NEAR(s.q1, 2.0, 1e-12);
  CHECK_NEAR(s.q3, 4.0, 1e-12);
  CHECK_NEAR(s.min, 1.0, 0);
  CHECK_NEAR(s.max, 5.0, 0);
  CHECK_NEAR(s.mean, 3.0, 1e-12);
  CHECK_NEAR(s.rel_stdev, 1.5811388300841898 / 3.0, 1e-12); /* sample stdev of 1..5 */

  const double even[] = {1, 2, 3, 10};
  fkm_stats_compute(even, 4, &s);
  CHECK_NEAR(s.median, 2.5, 1e-12);
  CHECK_NEAR(s.q1, 1.75, 1e-12);
  CHECK_NEAR(s.q3, 4.75, 1e-12);

  fkm_stats_compute(v, 0, &s);
  CHECK_EQ_INT(s.n, 0);
  CHECK_NEAR(s.median, 0.0, 0);
  return check_exit("test_stats");
}
