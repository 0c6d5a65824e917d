/* stats.h — summary statistics of timing samples (robust: median and quartiles). */
#ifndef FKM_STATS_H
#define FKM_STATS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int n;
  double median, q1, q3, min, max, mean;
  double rel_stdev; /* sample standard deviation / mean; 0 for n < 2 */
} fkm_stats;

/* Quartiles by linear interpolation between order statistics (type 7). */
void fkm_stats_compute(const double *samples, int n, fkm_stats *out);

/* Seconds on the monotonic clock (host wall time of phases and cases). */
double fkm_now_s(void);

#ifdef __cplusplus
}
#endif
#endif
