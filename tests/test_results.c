/* test_results.c — the results file is valid JSON after every row, carries
 * the schema version, meta and device, and reports how the sweep ended;
 * an unwritable path is an io_error, not a crash. */
#include "check.h"
#include "results.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return cJSON_Parse(buf);
}

int main(void) {
  char dir[] = "/tmp/fkm_results_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/r.json", dir);
  fkm_results *r = NULL;
  cJSON *meta = cJSON_CreateObject();
  cJSON_AddStringToObject(meta, "who", "test");
  CHECK(fkm_results_open(path, meta, cJSON_CreateObject(), &r) == FKM_OK);
  cJSON *doc = read_json(path);
  CHECK(doc != NULL);
  CHECK_EQ_INT(cJSON_GetObjectItem(doc, "schema_version")->valueint, FKM_RESULTS_SCHEMA_VERSION);
  CHECK(!strcmp(cJSON_GetObjectItem(doc, "state")->valuestring, "running"));
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "runs")), 0);
  cJSON_Delete(doc);
  for (int i = 0; i < 3; i++) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddNumberToObject(row, "i", i);
    CHECK(fkm_results_add_run(r, row) == FKM_OK);
    doc = read_json(path); /* a crash now would leave exactly i+1 rows */
    CHECK(doc != NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "runs")), i + 1);
    cJSON_Delete(doc);
  }
  cJSON *ceil = cJSON_CreateObject();
  cJSON_AddNumberToObject(ceil, "copy_gbps", 1.0);
  CHECK(fkm_results_set_ceilings(r, ceil) == FKM_OK);
  CHECK(fkm_results_finish(r, "aborted", "sticky error") == FKM_OK);
  fkm_results_close(r);
  doc = read_json(path);
  CHECK(doc != NULL);
  CHECK(!strcmp(cJSON_GetObjectItem(doc, "state")->valuestring, "aborted"));
  CHECK(!strcmp(cJSON_GetObjectItem(doc, "abort_reason")->valuestring, "sticky error"));
  CHECK(cJSON_IsObject(cJSON_GetObjectItem(doc, "ceilings")));
  CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "meta"), "who")->valuestring, "test"));
  cJSON_Delete(doc);
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  CHECK(access(tmp, F_OK) != 0); /* no temporary left behind */
  remove(path);
  rmdir(dir);

  r = NULL;
  CHECK(fkm_results_open("/nonexistent-dir/x/r.json", cJSON_CreateObject(), cJSON_CreateObject(), &r) == FKM_ERR_IO);
  CHECK(r == NULL);
  CHECK_MSG(strstr(fkm_last_error(), "/nonexistent-dir/x/r.json") != NULL, "message: %s", fkm_last_error());
  return check_exit("test_results");
}
