/* gpu_assign.c — every registered GPU assign variant against the fp64
 * reference: odd and tail shapes, all dtypes, batches, K = 1 and K = N, and
 * adversarial inputs (duplicate centroids, all points equal, large and small
 * magnitudes, centroid norms decades apart, values near the dtype's limit: the last
 * two test the norm digits of flash_wgmma_pp and their fallback). Ties must go to the
 * lowest index. Skips (77) without a GPU. */
#include "dtype.h"
#include "gpu_util.h"
#include "validate.h"

#include <math.h>

typedef struct {
  int64_t B, N, K, D;
  fkm_data_kind data;
} shape_case;

static const shape_case shapes[] = {
    {1, 1, 1, 5, FKM_DATA_NORMAL},       {1, 1000, 1, 8, FKM_DATA_BLOBS},     {1, 1000, 7, 1, FKM_DATA_UNIFORM},
    {1, 1000, 7, 3, FKM_DATA_BLOBS},     {2, 777, 128, 96, FKM_DATA_SKEWED},  {1, 5000, 128, 128, FKM_DATA_BLOBS},
    {1, 3000, 1000, 128, FKM_DATA_NORMAL}, {3, 1001, 130, 130, FKM_DATA_BLOBS}, {1, 2000, 300, 1000, FKM_DATA_BLOBS},
    {1, 4096, 1024, 512, FKM_DATA_NORMAL}, {2, 300, 300, 64, FKM_DATA_BLOBS},  {1, 20000, 1024, 128, FKM_DATA_BLOBS},
    {1, 9000, 4500, 64, FKM_DATA_NORMAL}, /* K past flash_wgmma_pp's norm-step threshold */
    {4, 1500, 257, 136, FKM_DATA_SKEWED}, {1, 9000, 4096, 64, FKM_DATA_BLOBS}, {1, 1000, 999, 8, FKM_DATA_NORMAL},
    {2, 300000, 128, 64, FKM_DATA_BLOBS}, {3, 100000, 300, 128, FKM_DATA_SKEWED}, {1, 255, 200, 128, FKM_DATA_BLOBS},
    {2, 40000, 200, 64, FKM_DATA_NORMAL}, /* more items than SMs (blocks of several items) at a size a
                                             sanitizer run takes with FKM_TEST_MAX_POINTS=80000 */
};

enum { ADV_NONE, ADV_DUPLICATE_CENTROIDS, ADV_EQUAL_POINTS, ADV_LARGE, ADV_SMALL, ADV_MIXED, ADV_HUGE };
static const char *adv_names[] = {"plain",           "duplicate centroids", "all points equal",        "large magnitude",
                                  "small magnitude", "mixed centroid norms", "near the dtype's limit"};

static void scale_all(fkm_dataset *h, float f) {
  const fkm_shape *s = &h->s;
  for (int64_t i = 0; i < s->B * s->N * s->D; i++)
    fkm_store_from_f32(h->x, (int)s->dtype, i, fkm_load_as_f32(h->x, (int)s->dtype, i) * f);
  for (int64_t i = 0; i < s->B * s->K * s->D; i++)
    fkm_store_from_f32(h->c, (int)s->dtype, i, fkm_load_as_f32(h->c, (int)s->dtype, i) * f);
}

static float max_abs(const void *a, int dtype, int64_t n) {
  float m = 0.f;
  for (int64_t i = 0; i < n; i++) m = fmaxf(m, fabsf(fkm_load_as_f32(a, dtype, i)));
  return m;
}

static void make_adversarial(fkm_dataset *h, int adv) {
  const fkm_shape *s = &h->s;
  const size_t es = fkm_dtype_size(s->dtype), row = (size_t)s->D * es;
  if (adv == ADV_DUPLICATE_CENTROIDS) /* every centroid equals centroid 0 of its batch */
    for (int64_t b = 0; b < s->B; b++)
      for (int64_t k = 1; k < s->K; k++)
        memcpy((char *)h->c + (size_t)(b * s->K + k) * row, (char *)h->c + (size_t)(b * s->K) * row, row);
  if (adv == ADV_EQUAL_POINTS)
    for (int64_t i = 1; i < s->B * s->N; i++) memcpy((char *)h->x + (size_t)i * row, h->x, row);
  if (adv == ADV_LARGE) scale_all(h, s->dtype == FKM_F16 ? 60.f : 1e4f);
  if (adv == ADV_SMALL) scale_all(h, 1e-2f);
  if (adv == ADV_MIXED) /* every other centroid 1000x smaller: norms 6 decades apart in one batch */
    for (int64_t b = 0; b < s->B; b++)
      for (int64_t k = 1; k < s->K; k += 2)
        for (int64_t d = 0; d < s->D; d++) {
          const int64_t i = (b * s->K + k) * s->D + d;
          fkm_store_from_f32(h->c, (int)s->dtype, i, fkm_load_as_f32(h->c, (int)s->dtype, i) * 1e-3f);
        }
  if (adv == ADV_HUGE) { /* largest |value| 16384 in fp16 (||c||^2 ~ 1e10), 1e15 otherwise */
    const float m = fmaxf(max_abs(h->x, (int)s->dtype, s->B * s->N * s->D),
                          max_abs(h->c, (int)s->dtype, s->B * s->K * s->D));
    if (m > 0.f) scale_all(h, (s->dtype == FKM_F16 ? 16384.f : 1e15f) / m);
  }
}

static void check_one(const fkm_variant *v, const shape_case *sc, fkm_dtype t, int adv) {
  fkm_shape s = {sc->B, sc->N, sc->K, sc->D, t};
  if (!variant_runs_here(v, &s)) return;
  fkm_data_spec spec = {.kind = sc->data};
  fkm_dataset h;
  if (fkm_data_make_host(&s, &spec, 11, &h) != FKM_OK) {
    CHECK_MSG(0, "cannot make data: %s", fkm_last_error());
    return;
  }
  make_adversarial(&h, adv);
  int32_t *labels = NULL;
  float *dist = NULL;
  fkm_status st = run_assign(v, &h, &labels, &dist);
  CHECK_MSG(st == FKM_OK, "%s %lldx%lldx%lldx%lld %s %s: %s", v->name, (long long)s.B, (long long)s.N, (long long)s.K,
            (long long)s.D, fkm_dtype_name(t), adv_names[adv], fkm_last_error());
  if (st == FKM_OK) {
    fkm_assign_ref ref;
    if (fkm_assign_ref_build(&s, h.x, h.c, 4096, &ref) == FKM_OK) {
      fkm_assign_check a;
      fkm_validate_assign(&ref, h.x, labels, dist, v->compute, &a);
      CHECK_MSG(a.ok, "%s %lldx%lldx%lldx%lld %s %s: %s", v->name, (long long)s.B, (long long)s.N, (long long)s.K,
                (long long)s.D, fkm_dtype_name(t), adv_names[adv], a.detail);
      /* Exact ties must resolve to the lowest index, as the reference does. */
      if (adv == ADV_DUPLICATE_CENTROIDS) {
        int64_t wrong = 0;
        for (int64_t i = 0; i < s.B * s.N; i++) wrong += labels[i] != 0;
        CHECK_MSG(wrong == 0, "%s %s %s: %lld labels are not the lowest of equal centroids", v->name,
                  fkm_dtype_name(t), adv_names[adv], (long long)wrong);
      }
      fkm_assign_ref_free(&ref);
    }
  }
  free(labels);
  free(dist);
  fkm_data_free(&h);
}

int main(void) {
  if (!gpu_available()) return CHECK_SKIP;
  const fkm_dtype dtypes[] = {FKM_F16, FKM_BF16, FKM_F32};
  for (int i = 0; i < fkm_variant_count(); i++) {
    const fkm_variant *v = fkm_variant_at(i);
    if (v->op != FKM_OP_ASSIGN || fkm_variant_is_cpu(v) || !variant_selected(v)) continue;
    const int before = check_failures;
    for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++)
      for (int t = 0; t < 3; t++) check_one(v, &shapes[j], dtypes[t], ADV_NONE);
    for (int adv = ADV_DUPLICATE_CENTROIDS; adv <= ADV_HUGE; adv++)
      for (int t = 0; t < 3; t++) {
        check_one(v, &shapes[5], dtypes[t], adv);  /* 1x5000x128x128 */
        check_one(v, &shapes[7], dtypes[t], adv);  /* 3x1001x130x130 */
      }
    printf("%-24s %s\n", v->name, check_failures == before ? "ok" : "FAILED");
  }
  return check_exit("gpu_assign");
}
