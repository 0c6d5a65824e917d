/* test_autotune.c — the autotune cache without a GPU: entries learned from a
 * results file (fastest validated assign/flash_* per bucket; the dispatcher,
 * failed runs and other ops ignored), lookups by bucket and device, merging
 * into an existing cache, and bad files reported instead of trusted. */
#include "autotune.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

#define ROW(variant, status, K, D, N, med)                                                                    \
  "{\"variant\": \"" variant "\", \"op\": \"assign\", \"status\": \"" status "\", \"B\": 1, \"N\": " #N     \
  ", \"K\": " #K ", \"D\": " #D ", \"dtype\": \"fp16\", \"timing\": {\"median\": " #med "}}"

static const char *results_a =
    "{\"schema_version\": 1, \"device\": {\"name\": \"Test GPU\", \"compute_capability\": \"9.0\"}, \"runs\": ["
    ROW("assign/flash", "ok", 1024, 128, 1048576, 0.1) ","          /* the dispatcher: never a candidate */
    ROW("assign/flash_mma", "ok", 1024, 128, 1048576, 0.9) ","
    ROW("assign/flash_wgmma", "ok", 1024, 128, 1048576, 0.7) ","
    ROW("assign/flash_tf32", "ok", 1024, 128, 1048576, 0.05) ","    /* tf32, not exact: never a candidate */
    ROW("assign/flash_wgmma_bm256", "incorrect", 1024, 128, 1048576, 0.2) "," /* failed: ignored */
    ROW("assign/flash_wgmma_bm256", "ok", 65536, 128, 1048576, 38.0) ","
    ROW("assign/flash_wgmma", "ok", 65536, 128, 1048576, 43.0) ","
    ROW("assign/flash_wgmma", "ok", 40000, 128, 1048576, 30.0) ","  /* bucket 2^15, its own */
    ROW("assign/cublas_gemm", "ok", 128, 64, 1048576, 0.01)          /* not an implementation */
    "]}";

static void test_learn_and_lookup(void) {
  char res[300], cache[300];
  snprintf(res, sizeof res, "%s/results.json", dir);
  snprintf(cache, sizeof cache, "%s/sub/autotune.json", dir);
  write_file(res, results_a);
  setenv("FKM_AUTOTUNE_CACHE", cache, 1);
  fkm_autotune_reset();
  CHECK(strcmp(fkm_autotune_cache_path(), cache) == 0);

  fkm_device dev;
  memset(&dev, 0, sizeof dev);
  snprintf(dev.name, sizeof dev.name, "Test GPU");
  dev.cc = 90;
  fkm_shape s = {1, 1048576, 1024, 128, FKM_F16};
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL); /* no cache file yet: heuristic */

  int n = -1;
  CHECK_EQ_INT(fkm_autotune_update_cache(res, cache, &n), FKM_OK);
  CHECK_EQ_INT(n, 3); /* buckets K 2^10, 2^15 (40000), 2^16 (65536) at D=128 */
  const char *got = fkm_autotune_lookup(&s, &dev);
  CHECK_MSG(got && strcmp(got, "assign/flash_wgmma") == 0, "%s", got ? got : "(null)");
  s.K = 2047; /* same bucket */
  got = fkm_autotune_lookup(&s, &dev);
  CHECK(got && strcmp(got, "assign/flash_wgmma") == 0);
  s.K = 65536;
  got = fkm_autotune_lookup(&s, &dev);
  CHECK(got && strcmp(got, "assign/flash_wgmma_bm256") == 0);
  s.N = 1048575; /* other points bucket */
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
  s.N = 1048576;
  s.D = 129;
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
  s.D = 128;
  s.dtype = FKM_BF16;
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
  s.dtype = FKM_F16;
  dev.cc = 80;
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
  dev.cc = 90;
  snprintf(dev.name, sizeof dev.name, "Other GPU");
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
  snprintf(dev.name, sizeof dev.name, "Test GPU");

  /* A second file replaces its buckets and keeps the others. */
  write_file(res, "{\"schema_version\": 1, \"device\": {\"name\": \"Test GPU\", \"compute_capability\": \"9.0\"}, \"runs\": ["
                  ROW("assign/flash_mma", "ok", 1500, 128, 1048576, 0.5) "]}");
  CHECK_EQ_INT(fkm_autotune_update_cache(res, cache, &n), FKM_OK);
  CHECK_EQ_INT(n, 1);
  s.K = 1024;
  got = fkm_autotune_lookup(&s, &dev);
  CHECK(got && strcmp(got, "assign/flash_mma") == 0);
  s.K = 65536;
  got = fkm_autotune_lookup(&s, &dev);
  CHECK(got && strcmp(got, "assign/flash_wgmma_bm256") == 0);

  /* Disabled. */
  setenv("FKM_AUTOTUNE_CACHE", "off", 1);
  fkm_autotune_reset();
  CHECK(strcmp(fkm_autotune_cache_path(), "") == 0);
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
}

static void test_bad_files(void) {
  char res[300], cache[300];
  snprintf(res, sizeof res, "%s/bad_results.json", dir);
  snprintf(cache, sizeof cache, "%s/bad_cache.json", dir);
  int n = 0;
  CHECK_EQ_INT(fkm_autotune_update_cache("/nonexistent/r.json", cache, &n), FKM_ERR_INPUT);
  write_file(res, "{\"runs\": []}");
  CHECK_EQ_INT(fkm_autotune_update_cache(res, cache, &n), FKM_ERR_INPUT); /* no device */
  write_file(res, "not json");
  CHECK_EQ_INT(fkm_autotune_update_cache(res, cache, &n), FKM_ERR_INPUT);

  /* A cache file that is not ours is neither trusted nor overwritten. */
  write_file(cache, "{\"hello\": 1}");
  write_file(res, results_a);
  CHECK_EQ_INT(fkm_autotune_update_cache(res, cache, &n), FKM_ERR_INPUT);
  setenv("FKM_AUTOTUNE_CACHE", cache, 1);
  fkm_autotune_reset();
  fkm_device dev;
  memset(&dev, 0, sizeof dev);
  snprintf(dev.name, sizeof dev.name, "Test GPU");
  dev.cc = 90;
  fkm_shape s = {1, 1048576, 1024, 128, FKM_F16};
  CHECK(fkm_autotune_lookup(&s, &dev) == NULL);
  FILE *f = fopen(cache, "r");
  char buf[64] = "";
  CHECK(f && fgets(buf, sizeof buf, f));
  if (f) fclose(f);
  CHECK(strstr(buf, "hello") != NULL);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s/fkm_test_autotune_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_learn_and_lookup();
  test_bad_files();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_exit("test_autotune");
}
