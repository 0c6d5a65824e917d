/* gpu_fit.c — fkm_fit end to end on the GPU: on well separated blobs it
 * recovers the known centres (k-means++, k-means|| and random init), the same seed gives
 * the same bytes, the inertia never rises between iterations, and bad options
 * are input errors. Skips (77) without a GPU. */
#include "data.h"
#include "dtype.h"
#include "gen.h"
#include "gpu_util.h"
#include "init.h"

#include <math.h>

/* The blobs generator's centres ~ N(0,1), noise 0.25: pushed SPREAD times
 * further apart so every cluster is unmistakable and recovery tests the fit. */
#define SPREAD 4.0

/* Largest distance from a true centre to its nearest fitted centroid. */
static double worst_recovery(const fkm_shape *s, uint64_t seed, const float *cent) {
  double worst = 0;
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t j = 0; j < s->K; j++) {
      double best = INFINITY;
      for (int64_t k = 0; k < s->K; k++) {
        double d2 = 0;
        for (int64_t d = 0; d < s->D; d++) {
          double diff = cent[(b * s->K + k) * s->D + d] - SPREAD * fkm_gen_centre(seed, b, j, d, s->K, s->D);
          d2 += diff * diff;
        }
        best = d2 < best ? d2 : best;
      }
      worst = sqrt(best) > worst ? sqrt(best) : worst;
    }
  return worst;
}

int main(void) {
  if (!gpu_available()) return CHECK_SKIP;
  fkm_shape s = {2, 20000, 16, 32, FKM_F16};
  fkm_data_spec spec = {.kind = FKM_DATA_BLOBS};
  fkm_dataset h;
  CHECK(fkm_data_make_host(&s, &spec, 21, &h) == FKM_OK);
  for (int64_t i = 0; i < s.B * s.N; i++)
    for (int64_t d = 0; d < s.D; d++) {
      float centre = fkm_gen_centre(21, i / s.N, h.labels[i], d, s.K, s.D);
      fkm_store_from_f32(h.x, s.dtype, i * s.D + d, fkm_load_as_f32(h.x, s.dtype, i * s.D + d) + (float)(SPREAD - 1) * centre);
    }
  int32_t *l1 = malloc(sizeof(int32_t) * 40000), *l2 = malloc(sizeof(int32_t) * 40000);
  float *c1 = malloc(sizeof(float) * 2 * 16 * 32), *c2 = malloc(sizeof(float) * 2 * 16 * 32);
  fkm_fit_options o;
  fkm_fit_defaults(&o);
  o.B = s.B, o.N = s.N, o.D = s.D, o.K = s.K, o.dtype = s.dtype;
  o.init = FKM_INIT_KMEANSPP;
  o.seed = 3;
  fkm_fit_result r1, r2;
  CHECK_MSG(fkm_fit(&o, h.x, l1, c1, &r1) == FKM_OK, "%s", fkm_last_error());
  CHECK(r1.converged);
  double worst = worst_recovery(&s, 21, c1);
  CHECK_MSG(worst < 0.1, "k-means++ fit: a true centre is %.3f from every centroid", worst);
  int rising = 0;
  for (int i = 1; i < r1.history_len; i++) rising += r1.inertia_history[i] > r1.inertia_history[i - 1] * (1 + 1e-6);
  CHECK_EQ_INT(rising, 0);
  printf("kmeans++: %d iterations, inertia %.6g, worst centre error %.4f\n", r1.iterations, r1.inertia, worst);

  /* Same seed, same bytes. */
  CHECK(fkm_fit(&o, h.x, l2, c2, &r2) == FKM_OK);
  CHECK(!memcmp(l1, l2, sizeof(int32_t) * 40000));
  CHECK(!memcmp(c1, c2, sizeof(float) * 2 * 16 * 32));
  CHECK(r1.inertia == r2.inertia && r1.iterations == r2.iterations);
  fkm_fit_result_free(&r2);

  /* Labels are the nearest of the returned centroids: inertia equals their distances. */
  double inertia = 0;
  for (int64_t i = 0; i < 40000; i++) {
    int64_t b = i / s.N;
    double d2 = 0;
    for (int64_t d = 0; d < s.D; d++) {
      double diff = (double)fkm_load_as_f32(h.x, s.dtype, i * s.D + d) -
                    (double)fkm_f16_to_f32(fkm_f32_to_f16(c1[(b * s.K + l1[i]) * s.D + d]));
      d2 += diff * diff;
    }
    inertia += d2;
  }
  CHECK_MSG(fabs(inertia - r1.inertia) <= 1e-4 * inertia, "inertia %.9g, recomputed %.9g", r1.inertia, inertia);
  fkm_fit_result_free(&r1);

  /* k-means||: recovers the centres, same seed same bytes, and its centres are data points. */
  o.init = FKM_INIT_KMEANS_PARALLEL;
  CHECK_MSG(fkm_fit(&o, h.x, l1, c1, &r1) == FKM_OK, "%s", fkm_last_error());
  CHECK(r1.converged);
  worst = worst_recovery(&s, 21, c1);
  CHECK_MSG(worst < 0.1, "k-means|| fit: a true centre is %.3f from every centroid", worst);
  printf("kmeans||: %d iterations, inertia %.6g, worst centre error %.4f, init %.3f s\n", r1.iterations, r1.inertia,
         worst, r1.init_seconds);
  CHECK(fkm_fit(&o, h.x, l2, c2, &r2) == FKM_OK);
  CHECK(!memcmp(l1, l2, sizeof(int32_t) * 40000));
  CHECK(!memcmp(c1, c2, sizeof(float) * 2 * 16 * 32));
  fkm_fit_result_free(&r1);
  fkm_fit_result_free(&r2);
  {
    void *dx = NULL;
    float *dc = NULL, *hc = malloc(sizeof(float) * 2 * 16 * 32);
    const size_t xbytes = (size_t)(s.B * s.N * s.D) * fkm_dtype_size(s.dtype);
    CHECK(cudaMalloc(&dx, xbytes) == cudaSuccess && cudaMalloc((void **)&dc, sizeof(float) * 2 * 16 * 32) == cudaSuccess);
    CHECK(cudaMemcpy(dx, h.x, xbytes, cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK_MSG(fkm_init_centroids(&s, FKM_INIT_KMEANS_PARALLEL, 5, dx, dc, 0) == FKM_OK, "%s", fkm_last_error());
    CHECK(cudaMemcpy(hc, dc, sizeof(float) * 2 * 16 * 32, cudaMemcpyDeviceToHost) == cudaSuccess);
    int64_t not_points = 0, repeated = 0;
    for (int64_t b = 0; b < s.B; b++)
      for (int64_t k = 0; k < s.K; k++) {
        const float *c = hc + (b * s.K + k) * s.D;
        int found = 0;
        for (int64_t n = 0; n < s.N && !found; n++) {
          found = 1;
          for (int64_t d = 0; d < s.D && found; d++) found = fkm_load_as_f32(h.x, s.dtype, (b * s.N + n) * s.D + d) == c[d];
        }
        not_points += !found;
        for (int64_t j = 0; j < k; j++) repeated += !memcmp(c, hc + (b * s.K + j) * s.D, sizeof(float) * (size_t)s.D);
      }
    CHECK_EQ_INT(not_points, 0);
    CHECK_EQ_INT(repeated, 0);
    cudaFree(dx);
    cudaFree(dc);
    free(hc);
  }

  /* Random init (the paper's) with the relative-inertia stopping rule. */
  o.init = FKM_INIT_RANDOM;
  o.tol_mode = FKM_TOL_INERTIA;
  o.tol = 1e-7;
  CHECK_MSG(fkm_fit(&o, h.x, l2, c2, &r2) == FKM_OK, "%s", fkm_last_error());
  printf("random: %d iterations, inertia %.6g\n", r2.iterations, r2.inertia);
  CHECK(r2.inertia >= 0 && r2.iterations >= 1);
  fkm_fit_result_free(&r2);

  /* Bad options are input errors, not crashes. */
  o.K = s.N + 1;
  CHECK(fkm_fit(&o, h.x, l2, c2, &r2) == FKM_ERR_INPUT);
  o.K = 16;
  o.assign_variant = "assign/nope";
  CHECK(fkm_fit(&o, h.x, l2, c2, &r2) == FKM_ERR_INPUT);
  fkm_fit_result_free(&r2);
  free(l1);
  free(l2);
  free(c1);
  free(c2);
  fkm_data_free(&h);
  return check_exit("gpu_fit");
}
