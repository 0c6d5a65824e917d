/* stats.c — see stats.h. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double quantile_sorted(const double *v, int n, double q) {
  double pos = q * (double)(n - 1);
  int lo = (int)floor(pos);
  int hi = lo + 1 < n ? lo + 1 : lo;
  double frac = pos - (double)lo;
  return v[lo] + (v[hi] - v[lo]) * frac;
}

void fkm_stats_compute(const double *samples, int n, fkm_stats *out) {
  memset(out, 0, sizeof *out);
  out->n = n;
  if (n <= 0) return;
  double *v = malloc(sizeof(double) * (size_t)n);
  if (!v) return;
  memcpy(v, samples, sizeof(double) * (size_t)n);
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  double sum = 0;
  for (int i = 0; i < n; i++) sum += v[i];
  out->mean = sum / n;
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (v[i] - out->mean) * (v[i] - out->mean);
  out->rel_stdev = (n > 1 && out->mean > 0) ? sqrt(ss / (n - 1)) / out->mean : 0.0;
  out->min = v[0];
  out->max = v[n - 1];
  out->median = quantile_sorted(v, n, 0.5);
  out->q1 = quantile_sorted(v, n, 0.25);
  out->q3 = quantile_sorted(v, n, 0.75);
  free(v);
}

double fkm_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
