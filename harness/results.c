/* results.c — see results.h. */
#include "results.h"
#include "l2_flush.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fkm_results {
  char *path;
  cJSON *root;
  cJSON *runs;
};

fkm_status fkm_json_write_atomic(const char *path, const cJSON *doc) {
  char *text = cJSON_Print(doc);
  if (!text) return fkm_fail(FKM_ERR_OOM, "cannot render the results JSON");
  size_t len = strlen(path) + 16;
  char *tmp = malloc(len);
  if (!tmp) {
    free(text);
    return fkm_fail(FKM_ERR_OOM, "out of host memory");
  }
  snprintf(tmp, len, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  fkm_status st = FKM_OK;
  if (!f) {
    st = fkm_fail(FKM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  } else {
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad) st = fkm_fail(FKM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0) st = fkm_fail(FKM_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != FKM_OK) remove(tmp);
  }
  free(tmp);
  free(text);
  return st;
}

cJSON *fkm_timing_json(const fkm_stats *st, int samples, int warmup, int flush_l2, const char *clock, int converged) {
  /* flush_l2: an fkm_flush_mode; the row says whether and how the L2 was emptied */
  cJSON *t = cJSON_CreateObject();
  cJSON_AddStringToObject(t, "unit", "ms");
  cJSON_AddStringToObject(t, "clock", clock);
  cJSON_AddNumberToObject(t, "samples", samples);
  cJSON_AddNumberToObject(t, "warmup", warmup);
  cJSON_AddBoolToObject(t, "flush_l2", flush_l2 != FKM_FLUSH_NONE);
  if (flush_l2 != FKM_FLUSH_NONE) cJSON_AddStringToObject(t, "flush_l2_method", fkm_flush_mode_name((fkm_flush_mode)flush_l2));
  cJSON_AddNumberToObject(t, "median", st->median);
  cJSON_AddNumberToObject(t, "q1", st->q1);
  cJSON_AddNumberToObject(t, "q3", st->q3);
  cJSON_AddNumberToObject(t, "min", st->min);
  cJSON_AddNumberToObject(t, "max", st->max);
  cJSON_AddNumberToObject(t, "mean", st->mean);
  cJSON_AddNumberToObject(t, "rel_stdev", st->rel_stdev);
  cJSON_AddBoolToObject(t, "converged", converged);
  return t;
}

fkm_status fkm_json_read(const char *path, cJSON **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    const int e = errno;
    fkm_fail(FKM_ERR_IO, "cannot read %s: %s", path, strerror(e));
    errno = e;
    return FKM_ERR_IO;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int bad = 0;
  for (;;) {
    if (len + 1 >= cap) {
      cap = cap ? cap * 2 : 65536;
      char *b = realloc(buf, cap);
      if (!b) {
        free(buf);
        fclose(f);
        return fkm_fail(FKM_ERR_OOM, "out of host memory reading %s", path);
      }
      buf = b;
    }
    const size_t got = fread(buf + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) {
      bad = ferror(f);
      break;
    }
  }
  const int e = errno;
  fclose(f);
  if (bad) {
    free(buf);
    fkm_fail(FKM_ERR_IO, "cannot read %s: %s", path, strerror(e));
    errno = e;
    return FKM_ERR_IO;
  }
  buf[len] = 0;
  *out = cJSON_Parse(buf);
  free(buf);
  return *out ? FKM_OK : fkm_fail(FKM_ERR_INPUT, "%s: not JSON", path);
}

static fkm_status write_now(fkm_results *r) { return fkm_json_write_atomic(r->path, r->root); }

fkm_status fkm_results_open(const char *path, cJSON *meta, cJSON *device, fkm_results **out) {
  fkm_results *r = calloc(1, sizeof *r);
  if (r) r->path = malloc(strlen(path) + 1);
  if (!r || !r->path) {
    free(r);
    cJSON_Delete(meta);
    cJSON_Delete(device);
    return fkm_fail(FKM_ERR_OOM, "out of host memory");
  }
  strcpy(r->path, path);
  r->root = cJSON_CreateObject();
  cJSON_AddNumberToObject(r->root, "schema_version", FKM_RESULTS_SCHEMA_VERSION);
  cJSON_AddStringToObject(r->root, "state", "running");
  cJSON_AddItemToObject(r->root, "meta", meta);
  cJSON_AddItemToObject(r->root, "device", device);
  cJSON_AddNullToObject(r->root, "ceilings");
  r->runs = cJSON_AddArrayToObject(r->root, "runs");
  fkm_status st = write_now(r);
  if (st != FKM_OK) {
    fkm_results_close(r);
    return st;
  }
  *out = r;
  return FKM_OK;
}

fkm_status fkm_results_set_ceilings(fkm_results *r, cJSON *ceilings) {
  cJSON_ReplaceItemInObject(r->root, "ceilings", ceilings);
  return write_now(r);
}

fkm_status fkm_results_add_run(fkm_results *r, cJSON *row) {
  cJSON_AddItemToArray(r->runs, row);
  return write_now(r);
}

fkm_status fkm_results_finish(fkm_results *r, const char *state, const char *reason) {
  cJSON_ReplaceItemInObject(r->root, "state", cJSON_CreateString(state));
  if (reason) cJSON_AddStringToObject(r->root, "abort_reason", reason);
  return write_now(r);
}

void fkm_results_close(fkm_results *r) {
  if (!r) return;
  cJSON_Delete(r->root);
  free(r->path);
  free(r);
}
