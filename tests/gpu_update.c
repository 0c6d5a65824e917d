/* gpu_update.c — every registered GPU update variant against the fp64
 * reference (exact counts, centroid error relative to the cluster's RMS norm):
 * balanced, skewed, empty clusters, K = 1, K = N, odd D, batches; and every
 * variant whose name ends in "_det" must give the same bytes on two runs. */
#include "gpu_util.h"
#include "validate.h"

typedef struct {
  int64_t B, N, K, D;
  fkm_data_kind data;
  int empty_odd; /* relabel so that odd clusters are empty */
} shape_case;

static const shape_case shapes[] = {
    {1, 1000, 1, 8, FKM_DATA_BLOBS, 0},      {1, 1000, 1000, 3, FKM_DATA_NORMAL, 0}, {2, 5000, 64, 130, FKM_DATA_BLOBS, 0},
    {1, 100000, 1024, 128, FKM_DATA_SKEWED, 0}, {3, 2000, 50, 1, FKM_DATA_UNIFORM, 0}, {1, 50000, 512, 64, FKM_DATA_BLOBS, 1},
    {2, 30000, 8, 512, FKM_DATA_SKEWED, 0},  {1, 7, 7, 5, FKM_DATA_NORMAL, 0},       {4, 4099, 333, 96, FKM_DATA_BLOBS, 1},
    {1, 200000, 16, 128, FKM_DATA_SKEWED, 0}, {1, 60000, 20000, 32, FKM_DATA_BLOBS, 0}, /* K beyond the counting sort: radix path */
    {2, 40000, 9000, 16, FKM_DATA_SKEWED, 1},
};

/* The variants that promise the same bytes from run to run. */
static int is_det(const fkm_variant *v) {
  size_t n = strlen(v->name);
  return (n > 4 && !strcmp(v->name + n - 4, "_det")) || !strcmp(v->name, "update/fixed_point");
}

static void check_one(const fkm_variant *v, const shape_case *sc, fkm_dtype t) {
  fkm_shape s = {sc->B, sc->N, sc->K, sc->D, t};
  if (!variant_runs_here(v, &s)) return;
  fkm_data_spec spec = {.kind = sc->data};
  fkm_dataset h;
  if (fkm_data_make_host(&s, &spec, 5, &h) != FKM_OK) {
    CHECK_MSG(0, "cannot make data: %s", fkm_last_error());
    return;
  }
  if (sc->empty_odd)
    for (int64_t i = 0; i < s.B * s.N; i++) h.labels[i] &= ~1;
  float *c_new = NULL;
  int32_t *counts = NULL;
  fkm_status st = run_update(v, &h, &c_new, &counts);
  CHECK_MSG(st == FKM_OK, "%s %lldx%lldx%lldx%lld %s: %s", v->name, (long long)s.B, (long long)s.N, (long long)s.K,
            (long long)s.D, fkm_dtype_name(t), fkm_last_error());
  if (st == FKM_OK) {
    fkm_update_ref ref;
    if (fkm_update_ref_build(&s, h.x, h.labels, h.c_old, &ref) == FKM_OK) {
      fkm_update_check u;
      fkm_validate_update(&ref, h.c_old, c_new, counts, &u);
      CHECK_MSG(u.ok, "%s %lldx%lldx%lldx%lld %s: %s", v->name, (long long)s.B, (long long)s.N, (long long)s.K,
                (long long)s.D, fkm_dtype_name(t), u.detail);
      fkm_update_ref_free(&ref);
    }
    if (is_det(v)) {
      float *c2 = NULL;
      int32_t *n2 = NULL;
      if (run_update(v, &h, &c2, &n2) == FKM_OK) {
        CHECK_MSG(!memcmp(c_new, c2, (size_t)(s.B * s.K * s.D) * 4) && !memcmp(counts, n2, (size_t)(s.B * s.K) * 4),
                  "%s %lldx%lldx%lldx%lld: two runs differ in their bytes", v->name, (long long)s.B, (long long)s.N,
                  (long long)s.K, (long long)s.D);
      }
      free(c2);
      free(n2);
    }
  }
  free(c_new);
  free(counts);
  fkm_data_free(&h);
}

/* A label outside [0, K) is reported as an input error naming the point, by
 * variants that check their input; no variant may write out of bounds (run
 * this test under compute-sanitizer memcheck). */
static void check_bad_label(const fkm_variant *v) {
  fkm_shape s = {2, 3000, 64, 32, FKM_F16};
  if (!variant_runs_here(v, &s)) return;
  fkm_data_spec spec = {.kind = FKM_DATA_BLOBS};
  fkm_dataset h;
  if (fkm_data_make_host(&s, &spec, 8, &h) != FKM_OK) return;
  h.labels[3000 + 123] = 64;
  h.labels[3000 + 2000] = -5;
  const size_t es = fkm_dtype_size(s.dtype);
  fkm_problem p = {0};
  p.s = s;
  p.x = to_device(h.x, (size_t)(s.B * s.N * s.D) * es);
  p.labels_in = to_device(h.labels, (size_t)(s.B * s.N) * 4);
  p.c_old = to_device(h.c_old, (size_t)(s.B * s.K * s.D) * 4);
  cudaMalloc((void **)&p.c_new, (size_t)(s.B * s.K * s.D) * 4);
  cudaMalloc((void **)&p.counts, (size_t)(s.B * s.K) * 4);
  void *state = NULL;
  fkm_status st = v->setup ? v->setup(&p, &state) : FKM_OK;
  CHECK(st == FKM_OK);
  if (st == FKM_OK) {
    CHECK(v->run(&p, state, 0) == FKM_OK);
    if (v->check_input) {
      st = v->check_input(&p, state, 0);
      CHECK_MSG(st == FKM_ERR_INPUT && strstr(fkm_last_error(), "point 123 (batch 1)"),
                "%s: bad label not reported: %s", v->name, fkm_last_error());
    }
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    if (v->teardown) v->teardown(state);
  }
  cudaFree((void *)p.x);
  cudaFree((void *)p.labels_in);
  cudaFree((void *)p.c_old);
  cudaFree(p.c_new);
  cudaFree(p.counts);
  fkm_data_free(&h);
}

int main(void) {
  if (!gpu_available()) return CHECK_SKIP;
  const fkm_dtype dtypes[] = {FKM_F16, FKM_BF16, FKM_F32};
  for (int i = 0; i < fkm_variant_count(); i++) {
    const fkm_variant *v = fkm_variant_at(i);
    if (v->op != FKM_OP_UPDATE || fkm_variant_is_cpu(v) || !variant_selected(v)) continue;
    const int before = check_failures;
    for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++)
      for (int t = 0; t < 3; t++) check_one(v, &shapes[j], dtypes[t]);
    check_bad_label(v);
    printf("%-24s %s\n", v->name, check_failures == before ? "ok" : "FAILED");
  }
  return check_exit("gpu_update");
}
