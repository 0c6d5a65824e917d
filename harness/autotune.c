/* autotune.c — see autotune.h. */
#include "autotune.h"
#include "error.h"
#include "results.h"
#include "variant.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
  char device[256];
  int cc;
  char dtype[8];
  int64_t D;
  int k_log2, points_log2;
  char impl[64];
} tune_entry;

static struct {
  int loaded;
  char path[1024];
  tune_entry *entries;
  int n;
} cache;

static int floor_log2(int64_t v) {
  int l = -1;
  while (v > 0) {
    v >>= 1;
    l++;
  }
  return l;
}

const char *fkm_autotune_cache_path(void) {
  static char path[1024];
  const char *env = getenv("FKM_AUTOTUNE_CACHE");
  if (env) {
    if (!env[0] || strcmp(env, "off") == 0) return "";
    snprintf(path, sizeof path, "%s", env);
    return path;
  }
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && xdg[0]) snprintf(path, sizeof path, "%s/flashkm/autotune.json", xdg);
  else if (home && home[0]) snprintf(path, sizeof path, "%s/.cache/flashkm/autotune.json", home);
  else return "";
  return path;
}

static int str_item(const cJSON *o, const char *key, char *out, size_t n) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(it) || strlen(it->valuestring) >= n) return 0;
  memcpy(out, it->valuestring, strlen(it->valuestring) + 1);
  return 1;
}

static int num_item(const cJSON *o, const char *key, double *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(it)) return 0;
  *out = it->valuedouble;
  return 1;
}

/* Parses a cache document into entries; 0 when malformed. */
static int parse_entries(const cJSON *doc, tune_entry **out, int *n_out) {
  *out = NULL;
  *n_out = 0;
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(doc, "format");
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "entries");
  if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "flashkm-autotune-1") != 0 || !cJSON_IsArray(list)) return 0;
  int n = cJSON_GetArraySize(list);
  tune_entry *e = calloc((size_t)(n > 0 ? n : 1), sizeof *e);
  if (!e) return 0;
  int i = 0;
  for (const cJSON *it = list->child; it; it = it->next, i++) {
    double cc, D, kl, pl;
    if (!cJSON_IsObject(it) || !str_item(it, "device", e[i].device, sizeof e[i].device) ||
        !str_item(it, "dtype", e[i].dtype, sizeof e[i].dtype) || !str_item(it, "impl", e[i].impl, sizeof e[i].impl) ||
        !num_item(it, "cc", &cc) || !num_item(it, "D", &D) || !num_item(it, "K_log2", &kl) ||
        !num_item(it, "points_log2", &pl)) {
      free(e);
      return 0;
    }
    e[i].cc = (int)cc;
    e[i].D = (int64_t)D;
    e[i].k_log2 = (int)kl;
    e[i].points_log2 = (int)pl;
  }
  *out = e;
  *n_out = n;
  return 1;
}

void fkm_autotune_reset(void) {
  free(cache.entries);
  memset(&cache, 0, sizeof cache);
}

static void load_cache(void) {
  if (cache.loaded) return;
  cache.loaded = 1;
  snprintf(cache.path, sizeof cache.path, "%s", fkm_autotune_cache_path());
  if (!cache.path[0]) return;
  cJSON *doc = NULL;
  const fkm_status st = fkm_json_read(cache.path, &doc);
  if (st == FKM_ERR_IO && errno == ENOENT) return; /* no cache: the heuristic */
  if (st == FKM_ERR_IO || st == FKM_ERR_OOM) {
    fprintf(stderr, "flashkm: autotune cache unusable (%s): heuristic only\n", fkm_last_error());
    return;
  }
  if (!doc || !parse_entries(doc, &cache.entries, &cache.n))
    fprintf(stderr, "flashkm: autotune cache %s is not a flashkm autotune cache: ignored (heuristic only)\n", cache.path);
  cJSON_Delete(doc);
}

static int same_bucket(const tune_entry *e, const char *device, int cc, const char *dtype, int64_t D, int kl, int pl) {
  return e->cc == cc && e->D == D && e->k_log2 == kl && e->points_log2 == pl && strcmp(e->dtype, dtype) == 0 &&
         strcmp(e->device, device) == 0;
}

const char *fkm_autotune_lookup(const fkm_shape *s, const fkm_device *dev) {
  load_cache();
  const int kl = floor_log2(s->K), pl = floor_log2(s->B * s->N);
  for (int i = 0; i < cache.n; i++)
    if (same_bucket(&cache.entries[i], dev->name, dev->cc, fkm_dtype_name(s->dtype), s->D, kl, pl))
      return cache.entries[i].impl;
  return NULL;
}

/* The exact implementations, not the dispatcher, nor a tf32 one (the dispatcher
 * must not trade exactness for speed). */
static int is_candidate(const char *variant) {
  const fkm_variant *v = fkm_variant_find(variant);
  return strncmp(variant, "assign/flash_", 13) == 0 && v && v->compute == FKM_COMPUTE_EXACT;
}

static cJSON *entry_json(const tune_entry *e, const cJSON *row, double median) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "device", e->device);
  cJSON_AddNumberToObject(o, "cc", e->cc);
  cJSON_AddStringToObject(o, "dtype", e->dtype);
  cJSON_AddNumberToObject(o, "D", (double)e->D);
  cJSON_AddNumberToObject(o, "K_log2", e->k_log2);
  cJSON_AddNumberToObject(o, "points_log2", e->points_log2);
  cJSON_AddStringToObject(o, "impl", e->impl);
  if (row) {
    cJSON *from = cJSON_AddObjectToObject(o, "measured");
    const char *keys[] = {"B", "N", "K"};
    for (int i = 0; i < 3; i++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, keys[i]);
      if (cJSON_IsNumber(v)) cJSON_AddNumberToObject(from, keys[i], v->valuedouble);
    }
    cJSON_AddNumberToObject(from, "median_ms", median);
  }
  return o;
}

static fkm_status mkdir_parents(const char *path) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return fkm_fail(FKM_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    *p = '/';
  }
  return FKM_OK;
}

fkm_status fkm_autotune_update_cache(const char *results_path, const char *cache_path, int *n_written) {
  *n_written = 0;
  if (!cache_path || !cache_path[0]) return fkm_fail(FKM_ERR_INPUT, "no autotune cache path (FKM_AUTOTUNE_CACHE is off)");
  cJSON *res = NULL;
  const fkm_status rs = fkm_json_read(results_path, &res);
  if (rs == FKM_ERR_IO) return fkm_fail(FKM_ERR_INPUT, "%s", fkm_last_error()); /* a bad argument, not a failed write */
  FKM_TRY(rs);
  const cJSON *dev = cJSON_GetObjectItemCaseSensitive(res, "device");
  const cJSON *runs = cJSON_GetObjectItemCaseSensitive(res, "runs");
  char device[256], ccs[16];
  if (!cJSON_IsObject(dev) || !str_item(dev, "name", device, sizeof device) ||
      !str_item(dev, "compute_capability", ccs, sizeof ccs) || !cJSON_IsArray(runs)) {
    cJSON_Delete(res);
    return fkm_fail(FKM_ERR_INPUT, "%s: not a flashkm results file measured on a GPU (no device name or runs)", results_path);
  }
  int major = 0, minor = 0;
  sscanf(ccs, "%d.%d", &major, &minor);
  const int cc = major * 10 + minor;

  /* Winners of this file, one per bucket (the fastest over its shapes too). */
  int nr = cJSON_GetArraySize(runs);
  tune_entry *win = calloc((size_t)(nr > 0 ? nr : 1), sizeof *win);
  double *win_ms = calloc((size_t)(nr > 0 ? nr : 1), sizeof *win_ms);
  const cJSON **win_row = calloc((size_t)(nr > 0 ? nr : 1), sizeof *win_row);
  if (!win || !win_ms || !win_row) {
    free(win);
    free(win_ms);
    free(win_row);
    cJSON_Delete(res);
    return fkm_fail(FKM_ERR_OOM, "out of host memory");
  }
  int nw = 0;
  for (const cJSON *r = runs->child; r; r = r->next) {
    char variant[64], status[32], op[16], dtype[8];
    double B, N, K, D;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "timing");
    double med;
    if (!str_item(r, "variant", variant, sizeof variant) || !str_item(r, "status", status, sizeof status) ||
        !str_item(r, "op", op, sizeof op) || !str_item(r, "dtype", dtype, sizeof dtype) || !num_item(r, "B", &B) ||
        !num_item(r, "N", &N) || !num_item(r, "K", &K) || !num_item(r, "D", &D) || !cJSON_IsObject(t) ||
        !num_item(t, "median", &med))
      continue;
    if (strcmp(op, "assign") != 0 || strcmp(status, "ok") != 0 || !is_candidate(variant)) continue;
    tune_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.device, sizeof e.device, "%s", device);
    e.cc = cc;
    snprintf(e.dtype, sizeof e.dtype, "%s", dtype);
    e.D = (int64_t)D;
    e.k_log2 = floor_log2((int64_t)K);
    e.points_log2 = floor_log2((int64_t)B * (int64_t)N);
    snprintf(e.impl, sizeof e.impl, "%s", variant);
    int j = 0;
    while (j < nw && !same_bucket(&win[j], e.device, e.cc, e.dtype, e.D, e.k_log2, e.points_log2)) j++;
    if (j == nw) nw++;
    else if (win_ms[j] <= med) continue;
    win[j] = e;
    win_ms[j] = med;
    win_row[j] = r;
  }

  /* Keep the old entries of other buckets, then this file's winners. */
  tune_entry *old = NULL;
  int n_old = 0;
  cJSON *od = NULL;
  fkm_status os = fkm_json_read(cache_path, &od);
  if (os == FKM_ERR_IO && errno == ENOENT)
    os = FKM_OK; /* no cache yet */
  else if (os == FKM_ERR_INPUT || (os == FKM_OK && !parse_entries(od, &old, &n_old)))
    os = fkm_fail(FKM_ERR_INPUT, "%s exists and is not a flashkm autotune cache: not overwritten", cache_path);
  cJSON_Delete(od);
  if (os != FKM_OK) { /* an existing cache we cannot read or do not recognise is left alone */
    free(win);
    free(win_ms);
    free(win_row);
    cJSON_Delete(res);
    return os;
  }
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "format", "flashkm-autotune-1");
  cJSON_AddStringToObject(doc, "about",
                          "assign/flash uses an entry for shapes of its bucket (device, cc, dtype, D, floor(log2 K), "
                          "floor(log2 B*N)) on the same device; written by `flashkm autotune`");
  cJSON *list = cJSON_AddArrayToObject(doc, "entries");
  for (int i = 0; i < n_old; i++) {
    int replaced = 0;
    for (int j = 0; j < nw && !replaced; j++)
      replaced = same_bucket(&old[i], win[j].device, win[j].cc, win[j].dtype, win[j].D, win[j].k_log2, win[j].points_log2);
    if (!replaced) cJSON_AddItemToArray(list, entry_json(&old[i], NULL, 0));
  }
  for (int j = 0; j < nw; j++) cJSON_AddItemToArray(list, entry_json(&win[j], win_row[j], win_ms[j]));
  fkm_status st = mkdir_parents(cache_path);
  if (st == FKM_OK) st = fkm_json_write_atomic(cache_path, doc);
  if (st == FKM_OK) *n_written = nw;
  cJSON_Delete(doc);
  free(old);
  free(win);
  free(win_ms);
  free(win_row);
  cJSON_Delete(res);
  fkm_autotune_reset();
  return st;
}
