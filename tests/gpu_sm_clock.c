/* gpu_sm_clock.c — the SM clock probe (harness/sm_clock.cu) reads a plausible
 * clock, and `flashkm run` records it before and after the samples of a GPU
 * case (timing.sm_clock_measured_mhz) but not for a CPU case. Skips (77)
 * without a GPU. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include "gpu_util.h"
#include "results.h"
#include "runner.h"
#include "sm_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Bounds of any SM clock there is (idle clocks included); a wrong unit or a
 * timer misread lands far outside. */
#define MHZ_LO 100.0
#define MHZ_HI 5000.0

static void probe_directly(void) {
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  for (int i = 0; i < 3; i++) {
    double mhz = -1;
    const fkm_status st = fkm_sm_clock_mhz(s, &mhz);
    CHECK_MSG(st == FKM_OK, "fkm_sm_clock_mhz: %s", fkm_last_error());
    printf("SM clock on %s: %.1f MHz measured, %.0f MHz nominal max\n", gpu_dev.name, mhz, gpu_dev.clock_khz / 1e3);
    CHECK_MSG(mhz > MHZ_LO && mhz < MHZ_HI, "measured %.1f MHz", mhz);
  }
  /* The legacy default stream too (what a caller without a stream passes). */
  double mhz = -1;
  CHECK(fkm_sm_clock_mhz(0, &mhz) == FKM_OK && mhz > MHZ_LO && mhz < MHZ_HI);
  cudaStreamDestroy(s);
}

static int is_between(const cJSON *o, const char *key) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(x) && x->valuedouble > MHZ_LO && x->valuedouble < MHZ_HI;
}

/* A one-shape sweep of a CPU and a GPU variant through the runner. */
static void through_the_runner(void) {
  char dir[] = "/tmp/fkm_gpu_sm_clock_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char cfg_path[128], out_path[128];
  snprintf(cfg_path, sizeof cfg_path, "%s/clock.json", dir);
  snprintf(out_path, sizeof out_path, "%s/results.json", dir);
  FILE *f = fopen(cfg_path, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs("{\"name\": \"clock\", \"description\": \"gpu_sm_clock\",\n"
        " \"measure\": {\"warmup\": 1, \"min_samples\": 3, \"max_samples\": 5, \"noise_target\": 0.5, \"budget_s\": 0.5},\n"
        " \"experiments\": [{\"name\": \"a\", \"op\": \"assign\", \"variants\": [\"assign/cpu_ref\", \"assign/cublas_gemm\"],\n"
        "   \"axes\": {\"N\": [2048], \"K\": [32], \"D\": [16], \"dtype\": [\"fp16\"], \"data\": [\"blobs\"], \"seed\": [1]}}]}\n",
        f);
  fclose(f);
  fkm_run_opts o = {0};
  o.config_path = cfg_path;
  o.out_path = out_path;
  o.quiet = 1;
  CHECK_EQ_INT(fkm_run_command(&o), FKM_EXIT_OK);
  cJSON *doc = NULL;
  CHECK_MSG(fkm_json_read(out_path, &doc) == FKM_OK, "%s", fkm_last_error());
  const cJSON *runs = doc ? cJSON_GetObjectItemCaseSensitive(doc, "runs") : NULL;
  int gpu_rows = 0, cpu_rows = 0;
  for (const cJSON *r = runs ? runs->child : NULL; r; r = r->next) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "variant");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "timing");
    CHECK_MSG(cJSON_IsObject(t), "%s: no timing", cJSON_IsString(v) ? v->valuestring : "?");
    if (!cJSON_IsString(v) || !cJSON_IsObject(t)) continue;
    const cJSON *clk = cJSON_GetObjectItemCaseSensitive(t, "sm_clock_measured_mhz");
    if (!strcmp(v->valuestring, "assign/cpu_ref")) {
      cpu_rows++;
      CHECK_MSG(clk == NULL, "a CPU row carries sm_clock_measured_mhz");
    } else {
      gpu_rows++;
      const int good = cJSON_IsObject(clk) && is_between(clk, "before") && is_between(clk, "after");
      CHECK_MSG(good, "%s: sm_clock_measured_mhz missing or out of (%g, %g)", v->valuestring, MHZ_LO, MHZ_HI);
      if (good)
        printf("%s: SM clock %.1f MHz before, %.1f after the samples\n", v->valuestring,
               cJSON_GetObjectItemCaseSensitive(clk, "before")->valuedouble,
               cJSON_GetObjectItemCaseSensitive(clk, "after")->valuedouble);
    }
  }
  CHECK_EQ_INT(cpu_rows, 1);
  CHECK_EQ_INT(gpu_rows, 1);
  cJSON_Delete(doc);
  remove(out_path);
  remove(cfg_path);
  rmdir(dir);
}

int main(void) {
  if (!gpu_available()) return CHECK_SKIP;
  probe_directly();
  through_the_runner();
  return check_exit("gpu_sm_clock");
}
