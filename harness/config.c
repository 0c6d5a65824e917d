/* config.c — experiment configs: JSON in, fully checked fkm_config out, and
 * the expansion of a config into the ordered list of cases to run.
 *
 * A benchmark run can take hours, so every mistake a config can hold — a
 * typo'd key, a glob that selects nothing, K larger than N, a size that
 * overflows, an unreadable .npy file — is found here, before anything runs,
 * and reported as one line naming the file and the JSON path of the value:
 *   configs/x.json: experiments[2].axes.K[1]: expected a positive integer, got -3
 * Nothing here prints or exits; errors go through fkm_fail(). */
#include "config.h"
#include "l2_flush.h"

#include "error.h"
#include "npy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON numbers are doubles: integers beyond 2^53 cannot be represented exactly. */
#define JSON_MAX_EXACT_INT ((int64_t)1 << 53)
#define MAX_POINTS_TOTAL (((int64_t)1 << 31) - 1) /* B*N: labels and row indices are int32 */
#define MAX_CENTROIDS (((int64_t)1 << 31) - 1)    /* K: labels are int32 */
#define MAX_DIM (((int64_t)1 << 20) - 1)          /* D */
#define MAX_CONFIG_BYTES ((size_t)64 << 20)       /* a config is text; anything larger is the wrong file */

static const char *const data_kind_names[] = {"blobs", "normal", "uniform", "skewed"};
#define N_GENERATED_KINDS ((int)(sizeof data_kind_names / sizeof data_kind_names[0]))

int fkm_data_kind_from_name(const char *name, fkm_data_kind *out) {
  for (int k = 0; k < N_GENERATED_KINDS; k++)
    if (name && strcmp(name, data_kind_names[k]) == 0) {
      *out = (fkm_data_kind)k;
      return 0;
    }
  return -1;
}

void fkm_measure_defaults(fkm_measure_cfg *m) {
  m->warmup = 3;
  m->min_samples = 10;
  m->max_samples = 200;
  m->noise_target = 0.02;
  m->budget_s = 2.0;
  m->flush_l2 = FKM_FLUSH_CLEAN;
}

/* ---- glob matching ------------------------------------------------------ */

int fkm_glob_match(const char *pattern, const char *text) {
  if (!pattern || !text) return 0;
  /* Greedy scan that remembers the last '*': on a mismatch the star absorbs
   * one more character and matching resumes after it. Linear in practice,
   * never exponential. */
  const char *star = NULL, *star_text = NULL;
  while (*text) {
    if (*pattern == '*') {
      star = pattern++;
      star_text = text;
    } else if (*pattern == '?' || *pattern == *text) {
      pattern++;
      text++;
    } else if (star) {
      pattern = star + 1;
      text = ++star_text;
    } else {
      return 0;
    }
  }
  while (*pattern == '*') pattern++;
  return *pattern == '\0';
}

/* ---- error reporting ---------------------------------------------------- */

typedef struct {
  const char *origin; /* the file name (or whatever names the text) in messages */
} parse_ctx;

/* A JSON path such as experiments[1].axes.K[0]; long user keys are truncated. */
typedef struct {
  char s[384];
} json_path;

static json_path path_key(const char *parent, const char *key) {
  json_path p;
  if (parent[0]) snprintf(p.s, sizeof p.s, "%s.%.120s", parent, key);
  else snprintf(p.s, sizeof p.s, "%.120s", key);
  return p;
}

static json_path path_index(const char *parent, int index) {
  json_path p;
  snprintf(p.s, sizeof p.s, "%.360s[%d]", parent, index);
  return p;
}

static fkm_status input_error(const parse_ctx *ctx, const char *path, const char *fmt, ...) FKM_PRINTF(3, 4);
static fkm_status input_error(const parse_ctx *ctx, const char *path, const char *fmt, ...) {
  char what[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return fkm_fail(FKM_ERR_INPUT, "%s: %s: %s", ctx->origin, path, what);
}

/* What a JSON value is, for "expected X, got Y" messages. */
static void describe_value(const cJSON *item, char *out, size_t out_len) {
  if (cJSON_IsNumber(item)) snprintf(out, out_len, "%.17g", item->valuedouble);
  else if (cJSON_IsString(item)) snprintf(out, out_len, "\"%.60s%s\"", item->valuestring, strlen(item->valuestring) > 60 ? "..." : "");
  else if (cJSON_IsTrue(item)) snprintf(out, out_len, "true");
  else if (cJSON_IsFalse(item)) snprintf(out, out_len, "false");
  else if (cJSON_IsNull(item)) snprintf(out, out_len, "null");
  else if (cJSON_IsArray(item)) snprintf(out, out_len, "an array");
  else if (cJSON_IsObject(item)) snprintf(out, out_len, "an object");
  else snprintf(out, out_len, "an invalid value");
}

static fkm_status type_error(const parse_ctx *ctx, const char *path, const char *expected, const cJSON *got) {
  char desc[96];
  describe_value(got, desc, sizeof desc);
  return input_error(ctx, path, "expected %s, got %s", expected, desc);
}

/* ---- generic value readers ---------------------------------------------- */

/* Every key must be one of `allowed` and appear once. */
static fkm_status check_object_keys(const parse_ctx *ctx, const cJSON *obj, const char *path,
                                    const char *const *allowed, int n_allowed) {
  for (const cJSON *child = obj->child; child; child = child->next) {
    json_path here = path_key(path, child->string);
    int known = 0;
    for (int i = 0; i < n_allowed && !known; i++) known = strcmp(child->string, allowed[i]) == 0;
    if (!known) {
      char list[256] = "";
      size_t used = 0;
      for (int i = 0; i < n_allowed && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
      return input_error(ctx, here.s, "unknown key (expected one of: %s)", list);
    }
    for (const cJSON *earlier = obj->child; earlier != child; earlier = earlier->next)
      if (strcmp(earlier->string, child->string) == 0) return input_error(ctx, here.s, "duplicate key");
  }
  return FKM_OK;
}

static fkm_status require_object(const parse_ctx *ctx, const cJSON *item, const char *path) {
  return cJSON_IsObject(item) ? FKM_OK : type_error(ctx, path, "an object", item);
}

static fkm_status missing_key(const parse_ctx *ctx, const char *parent, const char *key) {
  json_path p = path_key(parent, key);
  return input_error(ctx, p.s, "missing required key");
}

/* An integral JSON number in [min, max]; `expected` describes the range. */
static fkm_status read_int(const parse_ctx *ctx, const cJSON *item, const char *path, int64_t min, int64_t max,
                           const char *expected, int64_t *out) {
  if (!cJSON_IsNumber(item)) return type_error(ctx, path, expected, item);
  double v = item->valuedouble;
  if (!isfinite(v) || v != floor(v)) return type_error(ctx, path, expected, item);
  if (fabs(v) > (double)JSON_MAX_EXACT_INT)
    return input_error(ctx, path, "expected %s, got %.17g (beyond 2^53, not exact in JSON)", expected, v);
  int64_t i = (int64_t)v;
  if (i < min) return type_error(ctx, path, expected, item);
  if (i > max) return input_error(ctx, path, "%lld is too large (at most %lld)", (long long)i, (long long)max);
  *out = i;
  return FKM_OK;
}

static fkm_status read_string(const parse_ctx *ctx, const cJSON *item, const char *path, char *out, size_t out_len) {
  if (!cJSON_IsString(item)) return type_error(ctx, path, "a string", item);
  size_t n = strlen(item->valuestring);
  if (n >= out_len)
    return input_error(ctx, path, "string of %zu characters is too long (at most %zu)", n, out_len - 1);
  memcpy(out, item->valuestring, n + 1);
  return FKM_OK;
}

/* ---- measure and validate blocks ---------------------------------------- */

/* Reads a measure block on top of `base` (defaults, or the config's block). */
static fkm_status parse_measure(const parse_ctx *ctx, const cJSON *obj, const char *path, const fkm_measure_cfg *base,
                                fkm_measure_cfg *out) {
  static const char *const keys[] = {"warmup", "min_samples", "max_samples", "noise_target", "budget_s", "flush_l2"};
  *out = *base;
  if (!obj) return FKM_OK;
  FKM_TRY(require_object(ctx, obj, path));
  FKM_TRY(check_object_keys(ctx, obj, path, keys, (int)(sizeof keys / sizeof keys[0])));

  const cJSON *item;
  int64_t v;
  json_path p;
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "warmup"))) {
    p = path_key(path, "warmup");
    FKM_TRY(read_int(ctx, item, p.s, 0, INT_MAX, "a non-negative integer", &v));
    out->warmup = (int)v;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "min_samples"))) {
    p = path_key(path, "min_samples");
    FKM_TRY(read_int(ctx, item, p.s, 1, INT_MAX, "a positive integer", &v));
    out->min_samples = (int)v;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "max_samples"))) {
    p = path_key(path, "max_samples");
    FKM_TRY(read_int(ctx, item, p.s, 1, INT_MAX, "a positive integer", &v));
    out->max_samples = (int)v;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "noise_target"))) {
    p = path_key(path, "noise_target");
    if (!cJSON_IsNumber(item) || !(item->valuedouble > 0.0 && item->valuedouble < 1.0))
      return type_error(ctx, p.s, "a number between 0 and 1 (exclusive)", item);
    out->noise_target = item->valuedouble;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "budget_s"))) {
    p = path_key(path, "budget_s");
    if (!cJSON_IsNumber(item) || !(item->valuedouble > 0.0) || !isfinite(item->valuedouble))
      return type_error(ctx, p.s, "a positive number of seconds", item);
    out->budget_s = item->valuedouble;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "flush_l2"))) {
    p = path_key(path, "flush_l2");
    if (cJSON_IsBool(item)) {
      out->flush_l2 = cJSON_IsTrue(item) ? FKM_FLUSH_CLEAN : FKM_FLUSH_NONE;
    } else if (cJSON_IsString(item) && !strcmp(item->valuestring, "clean")) {
      out->flush_l2 = FKM_FLUSH_CLEAN;
    } else if (cJSON_IsString(item) && !strcmp(item->valuestring, "write")) {
      out->flush_l2 = FKM_FLUSH_WRITE;
    } else {
      return type_error(ctx, p.s, "true, false, \"clean\" or \"write\"", item);
    }
  }
  if (out->min_samples > out->max_samples) {
    /* Blame the key this block set; the other value may be inherited. */
    int blames_max = cJSON_GetObjectItemCaseSensitive(obj, "max_samples") != NULL;
    p = path_key(path, blames_max ? "max_samples" : "min_samples");
    return input_error(ctx, p.s, "min_samples=%d exceeds max_samples=%d", out->min_samples, out->max_samples);
  }
  return FKM_OK;
}

static fkm_status parse_validate(const parse_ctx *ctx, const cJSON *obj, fkm_config *cfg) {
  static const char *const keys[] = {"max_rows"};
  cfg->validate_max_rows = 8192;
  if (!obj) return FKM_OK;
  FKM_TRY(require_object(ctx, obj, "validate"));
  FKM_TRY(check_object_keys(ctx, obj, "validate", keys, 1));
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "max_rows");
  if (item) FKM_TRY(read_int(ctx, item, "validate.max_rows", 1, JSON_MAX_EXACT_INT, "a positive integer", &cfg->validate_max_rows));
  return FKM_OK;
}

/* ---- axes ------------------------------------------------------------------ */

/* The items of a "scalar or non-empty array" value: one item, or the array's. */
typedef struct {
  const cJSON *first;
  int count;
  int is_array;
} axis_items;

static fkm_status axis_items_of(const parse_ctx *ctx, const cJSON *item, const char *path, const char *expected,
                                axis_items *out) {
  if (cJSON_IsArray(item)) {
    out->count = cJSON_GetArraySize(item);
    out->first = item->child;
    out->is_array = 1;
    if (out->count == 0) return input_error(ctx, path, "empty array (expected %s)", expected);
  } else {
    out->count = 1;
    out->first = item;
    out->is_array = 0;
  }
  return FKM_OK;
}

/* Path of the i-th item: "axes.K" for a scalar, "axes.K[i]" inside an array. */
static json_path axis_item_path(const char *axis_path, const axis_items *items, int i) {
  if (items->is_array) return path_index(axis_path, i);
  json_path p;
  snprintf(p.s, sizeof p.s, "%s", axis_path);
  return p;
}

/* An integer axis: a number or a non-empty array of distinct numbers >= min.
 * Absent: `fallback` values (count n_fallback, may be 0). */
static fkm_status parse_int_axis(const parse_ctx *ctx, const cJSON *axes, const char *axes_path, const char *key,
                                 int64_t min, const char *expected, const int64_t *fallback, int n_fallback,
                                 int64_t **values, int *count) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(axes, key);
  json_path axis_path = path_key(axes_path, key);
  *values = NULL;
  *count = 0;
  if (!item) {
    if (n_fallback == 0) return FKM_OK;
    *values = malloc((size_t)n_fallback * sizeof **values);
    if (!*values) return fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
    memcpy(*values, fallback, (size_t)n_fallback * sizeof **values);
    *count = n_fallback;
    return FKM_OK;
  }
  char expected_either[128];
  snprintf(expected_either, sizeof expected_either, "%s or a non-empty array of them", expected);
  if (!cJSON_IsArray(item) && !cJSON_IsNumber(item)) return type_error(ctx, axis_path.s, expected_either, item);
  axis_items items;
  FKM_TRY(axis_items_of(ctx, item, axis_path.s, expected_either, &items));
  *values = malloc((size_t)items.count * sizeof **values);
  if (!*values) return fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
  const cJSON *el = items.first;
  for (int i = 0; i < items.count; i++, el = el->next) {
    json_path p = axis_item_path(axis_path.s, &items, i);
    int64_t v;
    FKM_TRY(read_int(ctx, el, p.s, min, JSON_MAX_EXACT_INT, expected, &v));
    for (int j = 0; j < i; j++)
      if ((*values)[j] == v) return input_error(ctx, p.s, "duplicate value %lld (also at %s[%d])", (long long)v, key, j);
    (*values)[i] = v;
    *count = i + 1;
  }
  return FKM_OK;
}

static fkm_status parse_dtype_axis(const parse_ctx *ctx, const cJSON *axes, const char *axes_path,
                                   fkm_experiment *e) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(axes, "dtype");
  json_path axis_path = path_key(axes_path, "dtype");
  if (!item) {
    e->dtypes = malloc(sizeof *e->dtypes);
    if (!e->dtypes) return fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
    e->dtypes[0] = FKM_F16;
    e->n_dtypes = 1;
    return FKM_OK;
  }
  static const char expected[] = "a dtype name (fp32, fp16 or bf16) or a non-empty array of them";
  if (!cJSON_IsArray(item) && !cJSON_IsString(item)) return type_error(ctx, axis_path.s, expected, item);
  axis_items items;
  FKM_TRY(axis_items_of(ctx, item, axis_path.s, expected, &items));
  e->dtypes = malloc((size_t)items.count * sizeof *e->dtypes);
  if (!e->dtypes) return fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
  const cJSON *el = items.first;
  for (int i = 0; i < items.count; i++, el = el->next) {
    json_path p = axis_item_path(axis_path.s, &items, i);
    if (!cJSON_IsString(el)) return type_error(ctx, p.s, "a dtype name (fp32, fp16 or bf16)", el);
    fkm_dtype t;
    if (fkm_dtype_from_name(el->valuestring, &t) != 0)
      return input_error(ctx, p.s, "unknown dtype \"%.60s\" (expected fp32, fp16 or bf16)", el->valuestring);
    for (int j = 0; j < i; j++)
      if (e->dtypes[j] == t) return input_error(ctx, p.s, "duplicate dtype \"%s\" (also at dtype[%d])", el->valuestring, j);
    e->dtypes[i] = t;
    e->n_dtypes = i + 1;
  }
  return FKM_OK;
}

/* What the shape resolution needs to know about one .npy data entry. */
typedef struct {
  int ndim;       /* 2 or 3 */
  int64_t batches; /* 3-D: shape[0]; 2-D: 1 */
  int64_t rows;   /* rows per batch: shape[ndim-2] */
  int64_t cols;   /* shape[ndim-1] */
} npy_geometry;

/* Reads the header of a npy: data entry; errors carry the JSON path. */
static fkm_status read_npy_geometry(const parse_ctx *ctx, const char *path, const fkm_data_spec *d, npy_geometry *g) {
  fkm_npy_header h;
  if (fkm_npy_read_header(d->path, &h) != FKM_OK) {
    char why[1024];
    snprintf(why, sizeof why, "%s", fkm_last_error());
    return input_error(ctx, path, "%s", why);
  }
  if (h.type == FKM_NPY_I32)
    return input_error(ctx, path, "%s: holds int32 data ('<i4'); points must be float32 or float16", d->path);
  g->ndim = h.ndim;
  g->batches = h.ndim == 3 ? h.shape[0] : 1;
  g->rows = h.shape[h.ndim - 2];
  g->cols = h.shape[h.ndim - 1];
  return FKM_OK;
}

static fkm_status parse_data_axis(const parse_ctx *ctx, const cJSON *axes, const char *axes_path, fkm_experiment *e) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(axes, "data");
  json_path axis_path = path_key(axes_path, "data");
  if (!item) {
    e->data = calloc(1, sizeof *e->data);
    if (!e->data) return fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
    e->data[0].kind = FKM_DATA_BLOBS;
    snprintf(e->data[0].label, sizeof e->data[0].label, "%s", data_kind_names[FKM_DATA_BLOBS]);
    e->n_data = 1;
    return FKM_OK;
  }
  static const char expected[] = "a data source (blobs, normal, uniform, skewed or npy:PATH) or a non-empty array of them";
  if (!cJSON_IsArray(item) && !cJSON_IsString(item)) return type_error(ctx, axis_path.s, expected, item);
  axis_items items;
  FKM_TRY(axis_items_of(ctx, item, axis_path.s, expected, &items));
  e->data = calloc((size_t)items.count, sizeof *e->data);
  if (!e->data) return fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
  const cJSON *el = items.first;
  for (int i = 0; i < items.count; i++, el = el->next) {
    json_path p = axis_item_path(axis_path.s, &items, i);
    if (!cJSON_IsString(el)) return type_error(ctx, p.s, "a data source (blobs, normal, uniform, skewed or npy:PATH)", el);
    const char *s = el->valuestring;
    fkm_data_spec *d = &e->data[i];
    if (strncmp(s, "npy:", 4) == 0) {
      const char *file = s + 4;
      if (!file[0]) return input_error(ctx, p.s, "\"npy:\" needs a file path after the colon");
      if (strlen(file) >= sizeof d->path)
        return input_error(ctx, p.s, "npy path is too long (at most %zu characters)", sizeof d->path - 1);
      d->kind = FKM_DATA_NPY;
      snprintf(d->path, sizeof d->path, "%s", file);
    } else if (fkm_data_kind_from_name(s, &d->kind) != 0) {
      return input_error(ctx, p.s, "unknown data generator \"%.60s\" (expected blobs, normal, uniform, skewed or npy:PATH)", s);
    }
    snprintf(d->label, sizeof d->label, "%s", s);
    for (int j = 0; j < i; j++)
      if (strcmp(e->data[j].label, d->label) == 0)
        return input_error(ctx, p.s, "duplicate data source \"%.60s\" (also at data[%d])", s, j);
    e->n_data = i + 1;
  }
  return FKM_OK;
}

/* ---- shape resolution -----------------------------------------------------
 * One combination of axis values becomes an fkm_shape. B, N, D may be "from
 * the file" (AXIS_FROM_FILE) when every data entry is npy and the axis is
 * omitted. For npy data the file is read as rows of `cols` values (a 3-D file
 * (b, n, d) is b*n rows) and a case uses its first B*N rows:
 *   D omitted: D = cols; given: must equal cols.
 *   N given: B*N must not exceed the rows (B omitted means 1).
 *   N omitted: a 2-D file is one problem of all its rows (B must be 1);
 *              a 3-D file gives N = n and B = b (B given: at most b). */
#define AXIS_FROM_FILE (-1)

typedef struct {
  int64_t B, N, K, D;
  fkm_dtype dtype;
  const fkm_data_spec *data;
  const npy_geometry *geometry; /* NULL for generated data */
} axis_combo;

typedef struct {
  const char *exp_path;  /* experiments[i] */
  const char *data_path; /* experiments[i].axes.data[j] */
} combo_paths;

static fkm_status resolve_shape(const parse_ctx *ctx, const combo_paths *paths, const axis_combo *c, fkm_shape *s) {
  char axes_path[400], p[420];
  snprintf(axes_path, sizeof axes_path, "%s.axes", paths->exp_path);
  s->K = c->K;
  s->dtype = c->dtype;
  /* With npy data the sizes depend on the file: name it in every message. */
  const char *file_note = "";
  char note[300] = "";
  if (!c->geometry) {
    s->B = c->B;
    s->N = c->N;
    s->D = c->D;
  } else {
    const npy_geometry *g = c->geometry;
    const char *file = c->data->path;
    snprintf(note, sizeof note, " (with %.200s)", c->data->label);
    file_note = note;
    int64_t total_rows = g->batches * g->rows; /* cannot overflow: the header check bounds it */
    if (c->D == AXIS_FROM_FILE) {
      s->D = g->cols;
    } else if (c->D != g->cols) {
      snprintf(p, sizeof p, "%s.D", axes_path);
      return input_error(ctx, p, "D=%lld does not match %s, which has %lld columns (%s)", (long long)c->D, file,
                         (long long)g->cols, paths->data_path);
    } else {
      s->D = c->D;
    }
    if (c->N != AXIS_FROM_FILE) {
      s->N = c->N;
      s->B = c->B == AXIS_FROM_FILE ? 1 : c->B;
      int64_t needed;
      if (__builtin_mul_overflow(s->B, s->N, &needed) || needed > total_rows) {
        snprintf(p, sizeof p, "%s.N", axes_path);
        return input_error(ctx, p, "B=%lld, N=%lld needs B*N rows but %s holds %lld rows (%s)", (long long)s->B,
                           (long long)s->N, file, (long long)total_rows, paths->data_path);
      }
    } else if (g->ndim == 2) {
      s->N = g->rows;
      s->B = c->B == AXIS_FROM_FILE ? 1 : c->B;
      if (s->B != 1) {
        snprintf(p, sizeof p, "%s.B", axes_path);
        return input_error(ctx, p, "B=%lld with a 2-D file (%s) needs an N axis: without one the file is a single "
                           "problem of all its %lld rows", (long long)s->B, paths->data_path, (long long)g->rows);
      }
    } else {
      s->N = g->rows;
      s->B = c->B == AXIS_FROM_FILE ? g->batches : c->B;
      if (s->B > g->batches) {
        snprintf(p, sizeof p, "%s.B", axes_path);
        return input_error(ctx, p, "B=%lld exceeds the %lld batches of %s (%s)", (long long)s->B,
                           (long long)g->batches, file, paths->data_path);
      }
    }
  }

  /* Overflow first: the per-axis limits below then always see sane products. */
  int64_t bn, bnd, bk, bkd, bytes;
  int64_t scale = (int64_t)fkm_dtype_size(s->dtype) * 8;
  const char *overflowing = NULL;
  if (__builtin_mul_overflow(s->B, s->N, &bn) || __builtin_mul_overflow(bn, s->D, &bnd)) overflowing = "B*N*D";
  else if (__builtin_mul_overflow(bnd, scale, &bytes)) overflowing = "the byte size of B*N*D";
  else if (__builtin_mul_overflow(s->B, s->K, &bk) || __builtin_mul_overflow(bk, s->D, &bkd)) overflowing = "B*K*D";
  else if (__builtin_mul_overflow(bkd, scale, &bytes)) overflowing = "the byte size of B*K*D";
  if (overflowing)
    return input_error(ctx, axes_path, "B=%lld, N=%lld, K=%lld, D=%lld, dtype %s: %s overflows 64-bit integers%s",
                       (long long)s->B, (long long)s->N, (long long)s->K, (long long)s->D, fkm_dtype_name(s->dtype),
                       overflowing, file_note);
  if (s->D > MAX_DIM) {
    snprintf(p, sizeof p, "%s.D", axes_path);
    return input_error(ctx, p, "D=%lld exceeds the limit D < 2^20%s", (long long)s->D, file_note);
  }
  if (s->K > MAX_CENTROIDS) {
    snprintf(p, sizeof p, "%s.K", axes_path);
    return input_error(ctx, p, "K=%lld exceeds the limit K < 2^31 (labels are int32)", (long long)s->K);
  }
  if (bn > MAX_POINTS_TOTAL) {
    snprintf(p, sizeof p, "%s.N", axes_path);
    return input_error(ctx, p, "B*N=%lld (B=%lld, N=%lld) exceeds the limit B*N < 2^31 (indices are int32)%s",
                       (long long)bn, (long long)s->B, (long long)s->N, file_note);
  }
  if (s->K > s->N) {
    snprintf(p, sizeof p, "%s.K", axes_path);
    return input_error(ctx, p, "K=%lld exceeds N=%lld%s", (long long)s->K, (long long)s->N, file_note);
  }
  return FKM_OK;
}

/* Visits every (B, N, K, D, dtype, data) combination of an experiment. The
 * seed does not change the shape, so it is left to the caller. */
typedef fkm_status (*combo_visitor)(const parse_ctx *ctx, const combo_paths *paths, const axis_combo *c, void *arg);

static void data_entry_path(char *out, size_t out_len, int exp_index, int data_index, int data_is_scalar) {
  if (data_is_scalar) snprintf(out, out_len, "experiments[%d].axes.data", exp_index);
  else snprintf(out, out_len, "experiments[%d].axes.data[%d]", exp_index, data_index);
}

/* data_is_scalar: the config wrote "data" as one string, so paths carry no index. */
static fkm_status visit_combos(const parse_ctx *ctx, const fkm_experiment *e, int exp_index, int data_is_scalar,
                               const npy_geometry *geo, combo_visitor visit, void *arg) {
  static const int64_t from_file[1] = {AXIS_FROM_FILE};
  const int64_t *Bs = e->nB ? e->B : from_file, *Ns = e->nN ? e->N : from_file, *Ds = e->nD ? e->D : from_file;
  int nB = e->nB ? e->nB : 1, nN = e->nN ? e->nN : 1, nD = e->nD ? e->nD : 1;
  char exp_path[64];
  snprintf(exp_path, sizeof exp_path, "experiments[%d]", exp_index);
  for (int b = 0; b < nB; b++)
    for (int n = 0; n < nN; n++)
      for (int k = 0; k < e->nK; k++)
        for (int d = 0; d < nD; d++)
          for (int t = 0; t < e->n_dtypes; t++)
            for (int j = 0; j < e->n_data; j++) {
              char data_path[96];
              data_entry_path(data_path, sizeof data_path, exp_index, j, data_is_scalar);
              combo_paths paths = {exp_path, data_path};
              axis_combo c = {Bs[b], Ns[n], e->K[k], Ds[d], e->dtypes[t], &e->data[j],
                              e->data[j].kind == FKM_DATA_NPY ? &geo[j] : NULL};
              FKM_TRY(visit(ctx, &paths, &c, arg));
            }
  return FKM_OK;
}

static fkm_status check_combo(const parse_ctx *ctx, const combo_paths *paths, const axis_combo *c, void *arg) {
  (void)arg;
  fkm_shape s;
  return resolve_shape(ctx, paths, c, &s);
}

/* Headers of the experiment's npy entries (geo[j] unused for generated data). */
static fkm_status read_all_geometry(const parse_ctx *ctx, const fkm_experiment *e, int exp_index, int data_is_scalar,
                                    npy_geometry **geo) {
  *geo = calloc((size_t)e->n_data, sizeof **geo);
  if (!*geo) return fkm_fail(FKM_ERR_OOM, "cannot allocate npy geometry");
  for (int j = 0; j < e->n_data; j++) {
    if (e->data[j].kind != FKM_DATA_NPY) continue;
    char path[96];
    data_entry_path(path, sizeof path, exp_index, j, data_is_scalar);
    fkm_status st = read_npy_geometry(ctx, path, &e->data[j], &(*geo)[j]);
    if (st != FKM_OK) {
      free(*geo);
      *geo = NULL;
      return st;
    }
  }
  return FKM_OK;
}

static fkm_status parse_axes(const parse_ctx *ctx, const cJSON *axes, const char *exp_path, int exp_index,
                             fkm_experiment *e) {
  static const char *const keys[] = {"B", "N", "K", "D", "dtype", "data", "seed"};
  json_path axes_path = path_key(exp_path, "axes");
  FKM_TRY(require_object(ctx, axes, axes_path.s));
  FKM_TRY(check_object_keys(ctx, axes, axes_path.s, keys, (int)(sizeof keys / sizeof keys[0])));

  /* Data first: whether every entry is npy decides which sizes are required. */
  FKM_TRY(parse_data_axis(ctx, axes, axes_path.s, e));
  int all_npy = 1;
  for (int j = 0; j < e->n_data; j++) all_npy &= e->data[j].kind == FKM_DATA_NPY;

  static const int64_t one[1] = {1};
  FKM_TRY(parse_int_axis(ctx, axes, axes_path.s, "B", 1, "a positive integer", one, all_npy ? 0 : 1, &e->B, &e->nB));
  FKM_TRY(parse_int_axis(ctx, axes, axes_path.s, "N", 1, "a positive integer", NULL, 0, &e->N, &e->nN));
  if (!cJSON_GetObjectItemCaseSensitive(axes, "K")) return missing_key(ctx, axes_path.s, "K");
  FKM_TRY(parse_int_axis(ctx, axes, axes_path.s, "K", 1, "a positive integer", NULL, 0, &e->K, &e->nK));
  FKM_TRY(parse_int_axis(ctx, axes, axes_path.s, "D", 1, "a positive integer", NULL, 0, &e->D, &e->nD));
  if (!all_npy && e->nN == 0) {
    json_path p = path_key(axes_path.s, "N");
    return input_error(ctx, p.s, "missing (required unless every data entry is npy:PATH)");
  }
  if (!all_npy && e->nD == 0) {
    json_path p = path_key(axes_path.s, "D");
    return input_error(ctx, p.s, "missing (required unless every data entry is npy:PATH)");
  }
  FKM_TRY(parse_dtype_axis(ctx, axes, axes_path.s, e));

  static const int64_t default_seed[1] = {1};
  int64_t *seed_values;
  int n_seeds;
  fkm_status st = parse_int_axis(ctx, axes, axes_path.s, "seed", 0, "a non-negative integer", default_seed, 1,
                                 &seed_values, &n_seeds);
  if (st == FKM_OK) {
    e->seeds = malloc((size_t)n_seeds * sizeof *e->seeds);
    if (!e->seeds) st = fkm_fail(FKM_ERR_OOM, "cannot allocate an axis");
  }
  if (st == FKM_OK) {
    for (int i = 0; i < n_seeds; i++) e->seeds[i] = (uint64_t)seed_values[i];
    e->n_seeds = n_seeds;
  }
  free(seed_values);
  if (st != FKM_OK) return st;

  /* Every combination is checked now, so no run stops half-way on a bad shape. */
  int data_is_scalar = !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(axes, "data"));
  npy_geometry *geo;
  FKM_TRY(read_all_geometry(ctx, e, exp_index, data_is_scalar, &geo));
  st = visit_combos(ctx, e, exp_index, data_is_scalar, geo, check_combo, NULL);
  free(geo);
  return st;
}

/* ---- experiments ------------------------------------------------------------ */

static int glob_matches_op(const char *glob, fkm_op op) {
  for (int i = 0; i < fkm_variant_count(); i++) {
    const fkm_variant *v = fkm_variant_at(i);
    if (v->op == op && fkm_glob_match(glob, v->name)) return 1;
  }
  return 0;
}

static fkm_status parse_variants(const parse_ctx *ctx, const cJSON *list, const char *exp_path, fkm_experiment *e) {
  json_path list_path = path_key(exp_path, "variants");
  if (!cJSON_IsArray(list)) return type_error(ctx, list_path.s, "a non-empty array of variant globs", list);
  int n = cJSON_GetArraySize(list);
  if (n == 0) return input_error(ctx, list_path.s, "empty array (expected at least one variant glob)");
  e->variant_globs = calloc((size_t)n, sizeof *e->variant_globs);
  if (!e->variant_globs) return fkm_fail(FKM_ERR_OOM, "cannot allocate variant globs");
  e->n_globs = n;
  int i = 0;
  for (const cJSON *el = list->child; el; el = el->next, i++) {
    json_path p = path_index(list_path.s, i);
    if (!cJSON_IsString(el) || !el->valuestring[0]) return type_error(ctx, p.s, "a non-empty variant glob string", el);
    e->variant_globs[i] = malloc(strlen(el->valuestring) + 1);
    if (!e->variant_globs[i]) return fkm_fail(FKM_ERR_OOM, "cannot allocate a variant glob");
    strcpy(e->variant_globs[i], el->valuestring);
    if (!glob_matches_op(el->valuestring, e->op))
      return input_error(ctx, p.s, "\"%.100s\" matches no %s variant (see `flashkm list`)", el->valuestring,
                         fkm_op_name(e->op));
  }
  return FKM_OK;
}

/* The "fit" block of an op-fit experiment: what every fit of it runs. */
static fkm_status parse_fit(const parse_ctx *ctx, const cJSON *obj, const char *path, fkm_experiment *e) {
  static const char *const keys[] = {"init", "tol", "tol_mode", "max_iter", "inertia_rtol"};
  fkm_fit_defaults(&e->fit);
  e->fit_inertia_rtol = 1e-3;
  if (!obj) return FKM_OK;
  if (e->op != FKM_OP_FIT) return input_error(ctx, path, "a fit block belongs to op \"fit\" experiments only");
  FKM_TRY(require_object(ctx, obj, path));
  FKM_TRY(check_object_keys(ctx, obj, path, keys, (int)(sizeof keys / sizeof keys[0])));
  const cJSON *item;
  json_path p;
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "init"))) {
    p = path_key(path, "init");
    if (!cJSON_IsString(item)) return type_error(ctx, p.s, "\"random\", \"kmeans++\" or \"kmeans||\"", item);
    if (fkm_init_from_name(item->valuestring, &e->fit.init) != 0)
      return input_error(ctx, p.s, "unknown init \"%.60s\" (expected random, kmeans++ or kmeans||)", item->valuestring);
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "tol_mode"))) {
    p = path_key(path, "tol_mode");
    if (!cJSON_IsString(item)) return type_error(ctx, p.s, "\"shift\" or \"inertia\"", item);
    if (strcmp(item->valuestring, "shift") == 0) e->fit.tol_mode = FKM_TOL_SHIFT;
    else if (strcmp(item->valuestring, "inertia") == 0) e->fit.tol_mode = FKM_TOL_INERTIA;
    else return input_error(ctx, p.s, "unknown tol_mode \"%.60s\" (expected shift or inertia)", item->valuestring);
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "tol"))) {
    p = path_key(path, "tol");
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0.0) || !isfinite(item->valuedouble))
      return type_error(ctx, p.s, "a non-negative number", item);
    e->fit.tol = item->valuedouble;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "max_iter"))) {
    int64_t v;
    p = path_key(path, "max_iter");
    FKM_TRY(read_int(ctx, item, p.s, 1, 1000000, "an integer from 1 to 1000000", &v));
    e->fit.max_iter = (int)v;
  }
  if ((item = cJSON_GetObjectItemCaseSensitive(obj, "inertia_rtol"))) {
    p = path_key(path, "inertia_rtol");
    if (!cJSON_IsNumber(item) || !(item->valuedouble > 0.0 && item->valuedouble < 1.0))
      return type_error(ctx, p.s, "a number between 0 and 1 (exclusive)", item);
    e->fit_inertia_rtol = item->valuedouble;
  }
  return FKM_OK;
}

/* "gpus": a count (GPUs 0 .. n-1) or a list of distinct GPU ordinals, for the
 * multi-GPU variants of op lloyd / fit. */
static fkm_status parse_gpus(const parse_ctx *ctx, const cJSON *obj, const char *path, fkm_experiment *e) {
  e->n_gpus = 0;
  if (!obj) return FKM_OK;
  if (e->op != FKM_OP_LLOYD && e->op != FKM_OP_FIT)
    return input_error(ctx, path, "gpus belongs to op \"lloyd\" and \"fit\" experiments only");
  const int cap = (int)(sizeof e->gpus / sizeof e->gpus[0]);
  if (cJSON_IsNumber(obj)) {
    int64_t n;
    FKM_TRY(read_int(ctx, obj, path, 1, cap, "a GPU count from 1 to 64, or a list of GPU ordinals", &n));
    for (int i = 0; i < n; i++) e->gpus[i] = i;
    e->n_gpus = (int)n;
    return FKM_OK;
  }
  if (!cJSON_IsArray(obj) || cJSON_GetArraySize(obj) == 0)
    return type_error(ctx, path, "a GPU count or a non-empty list of GPU ordinals", obj);
  if (cJSON_GetArraySize(obj) > cap) return input_error(ctx, path, "more than %d GPUs", cap);
  int i = 0;
  for (const cJSON *el = obj->child; el; el = el->next, i++) {
    json_path p = path_index(path, i);
    int64_t g;
    FKM_TRY(read_int(ctx, el, p.s, 0, 1023, "a GPU ordinal (0 to 1023)", &g));
    for (int j = 0; j < i; j++)
      if (e->gpus[j] == (int)g) return input_error(ctx, p.s, "GPU %d is listed twice", (int)g);
    e->gpus[i] = (int)g;
  }
  e->n_gpus = i;
  return FKM_OK;
}

static fkm_status parse_experiment(const parse_ctx *ctx, const cJSON *obj, int index, const fkm_measure_cfg *base,
                                   fkm_experiment *e) {
  static const char *const keys[] = {"name", "op", "variants", "axes", "measure", "fit", "gpus"};
  json_path exp_path = path_index("experiments", index);
  FKM_TRY(require_object(ctx, obj, exp_path.s));
  FKM_TRY(check_object_keys(ctx, obj, exp_path.s, keys, (int)(sizeof keys / sizeof keys[0])));

  const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
  if (!name) return missing_key(ctx, exp_path.s, "name");
  json_path p = path_key(exp_path.s, "name");
  FKM_TRY(read_string(ctx, name, p.s, e->name, sizeof e->name));
  if (!e->name[0]) return input_error(ctx, p.s, "empty name");

  const cJSON *op = cJSON_GetObjectItemCaseSensitive(obj, "op");
  if (!op) return missing_key(ctx, exp_path.s, "op");
  p = path_key(exp_path.s, "op");
  if (!cJSON_IsString(op)) return type_error(ctx, p.s, "an op name (assign, update, lloyd or fit)", op);
  if (fkm_op_from_name(op->valuestring, &e->op) != 0)
    return input_error(ctx, p.s, "unknown op \"%.60s\" (expected assign, update, lloyd or fit)", op->valuestring);

  const cJSON *variants = cJSON_GetObjectItemCaseSensitive(obj, "variants");
  if (!variants) return missing_key(ctx, exp_path.s, "variants");
  FKM_TRY(parse_variants(ctx, variants, exp_path.s, e));

  const cJSON *axes = cJSON_GetObjectItemCaseSensitive(obj, "axes");
  if (!axes) return missing_key(ctx, exp_path.s, "axes");
  FKM_TRY(parse_axes(ctx, axes, exp_path.s, index, e));

  p = path_key(exp_path.s, "fit");
  FKM_TRY(parse_fit(ctx, cJSON_GetObjectItemCaseSensitive(obj, "fit"), p.s, e));
  p = path_key(exp_path.s, "gpus");
  FKM_TRY(parse_gpus(ctx, cJSON_GetObjectItemCaseSensitive(obj, "gpus"), p.s, e));

  p = path_key(exp_path.s, "measure");
  return parse_measure(ctx, cJSON_GetObjectItemCaseSensitive(obj, "measure"), p.s, base, &e->measure);
}

/* ---- the whole config ------------------------------------------------------- */

static int is_valid_config_name(const char *s) {
  if (!s[0]) return 0;
  for (; *s; s++) {
    char c = *s;
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
             c == '-';
    if (!ok) return 0;
  }
  return 1;
}

static fkm_status parse_root(const parse_ctx *ctx, const cJSON *root, fkm_config *cfg) {
  static const char *const keys[] = {"name", "description", "measure", "validate", "experiments"};
  if (!cJSON_IsObject(root)) return type_error(ctx, "(top level)", "an object", root);
  FKM_TRY(check_object_keys(ctx, root, "", keys, (int)(sizeof keys / sizeof keys[0])));

  const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
  if (!name) return missing_key(ctx, "", "name");
  FKM_TRY(read_string(ctx, name, "name", cfg->name, sizeof cfg->name));
  if (!is_valid_config_name(cfg->name))
    return input_error(ctx, "name", "\"%s\" is not a valid name (use letters, digits, '_', '.' and '-')", cfg->name);

  const cJSON *description = cJSON_GetObjectItemCaseSensitive(root, "description");
  if (description) FKM_TRY(read_string(ctx, description, "description", cfg->description, sizeof cfg->description));

  fkm_measure_cfg defaults;
  fkm_measure_defaults(&defaults);
  FKM_TRY(parse_measure(ctx, cJSON_GetObjectItemCaseSensitive(root, "measure"), "measure", &defaults, &cfg->measure));
  FKM_TRY(parse_validate(ctx, cJSON_GetObjectItemCaseSensitive(root, "validate"), cfg));

  const cJSON *exps = cJSON_GetObjectItemCaseSensitive(root, "experiments");
  if (!exps) return missing_key(ctx, "", "experiments");
  if (!cJSON_IsArray(exps)) return type_error(ctx, "experiments", "a non-empty array of experiments", exps);
  int n = cJSON_GetArraySize(exps);
  if (n == 0) return input_error(ctx, "experiments", "empty array (expected at least one experiment)");
  cfg->exps = calloc((size_t)n, sizeof *cfg->exps);
  if (!cfg->exps) return fkm_fail(FKM_ERR_OOM, "cannot allocate %d experiments", n);
  cfg->n_exps = n;
  int i = 0;
  for (const cJSON *el = exps->child; el; el = el->next, i++) {
    FKM_TRY(parse_experiment(ctx, el, i, &cfg->measure, &cfg->exps[i]));
    for (int j = 0; j < i; j++)
      if (strcmp(cfg->exps[j].name, cfg->exps[i].name) == 0) {
        json_path p = path_index("experiments", i);
        return input_error(ctx, p.s, "duplicate experiment name \"%s\" (also experiments[%d])", cfg->exps[i].name, j);
      }
  }
  return FKM_OK;
}

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* "line L, column C: invalid JSON near `...`" from cJSON's error pointer. */
static fkm_status syntax_error(const parse_ctx *ctx, const char *text) {
  const char *at = cJSON_GetErrorPtr();
  size_t len = strlen(text);
  if (!at || at < text || at > text + len) return fkm_fail(FKM_ERR_INPUT, "%s: invalid JSON", ctx->origin);
  /* cJSON reports a bad object key (where a '"' should start a name, right
   * after '{' or ',') one character late; step back onto it. */
  if (at > text && at[-1] != '"' && !is_json_space(at[-1])) {
    const char *key_start = at - 1;
    while (key_start > text && is_json_space(key_start[-1])) key_start--;
    if (key_start > text && (key_start[-1] == ',' || key_start[-1] == '{')) at--;
  }
  int line = 1, column = 1;
  for (const char *q = text; q < at; q++) {
    if (*q == '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  if (*at == '\0')
    return fkm_fail(FKM_ERR_INPUT, "%s: line %d, column %d: invalid JSON: unexpected end of text", ctx->origin,
                    line, column);
  char near[32];
  size_t n = 0;
  for (const char *q = at; *q && *q != '\n' && n + 1 < sizeof near; q++)
    near[n++] = (*q >= 0x20 && *q < 0x7f) ? *q : '?';
  near[n] = '\0';
  return fkm_fail(FKM_ERR_INPUT, "%s: line %d, column %d: invalid JSON near `%s`", ctx->origin, line, column, near);
}

fkm_status fkm_config_parse(const char *text, const char *origin, fkm_config *cfg) {
  if (!cfg) return fkm_fail(FKM_ERR_INTERNAL, "fkm_config_parse: no config to fill");
  memset(cfg, 0, sizeof *cfg);
  parse_ctx ctx = {origin && origin[0] ? origin : "<config>"};
  if (!text) return fkm_fail(FKM_ERR_INPUT, "%s: no text", ctx.origin);
  const char *first = text;
  while (is_json_space(*first)) first++;
  if (!*first) return fkm_fail(FKM_ERR_INPUT, "%s: empty (no JSON value)", ctx.origin);

  cJSON *root = cJSON_ParseWithOpts(text, NULL, 1);
  if (!root) return syntax_error(&ctx, text);
  snprintf(cfg->path, sizeof cfg->path, "%s", ctx.origin);
  fkm_status st = parse_root(&ctx, root, cfg);
  cJSON_Delete(root);
  if (st != FKM_OK) fkm_config_free(cfg);
  return st;
}

static uint64_t fnv1a64(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

fkm_status fkm_config_load(const char *path, fkm_config *cfg) {
  if (!cfg) return fkm_fail(FKM_ERR_INTERNAL, "fkm_config_load: no config to fill");
  memset(cfg, 0, sizeof *cfg);
  if (!path || !path[0]) return fkm_fail(FKM_ERR_INPUT, "no config file given");
  FILE *f = fopen(path, "rb");
  if (!f) return fkm_fail(FKM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

  /* Read in growing chunks: works for pipes and /dev/stdin as well as files. */
  size_t cap = 1 << 16, len = 0;
  char *text = malloc(cap + 1);
  while (text) {
    size_t got = fread(text + len, 1, cap - len, f);
    len += got;
    if (got == 0 || len < cap) {
      if (ferror(f)) break;
      if (feof(f)) break;
      continue;
    }
    if (cap >= MAX_CONFIG_BYTES) break;
    char *bigger = realloc(text, cap * 2 + 1);
    if (!bigger) {
      free(text);
      text = NULL;
      break;
    }
    text = bigger;
    cap *= 2;
  }
  int read_failed = ferror(f);
  int too_large = text && len == cap && !feof(f);
  int read_errno = errno;
  fclose(f);
  if (!text) return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate memory to read the file", path);
  if (read_failed) {
    free(text);
    return fkm_fail(FKM_ERR_IO, "%s: read failed: %s", path, strerror(read_errno));
  }
  if (too_large) {
    free(text);
    return fkm_fail(FKM_ERR_INPUT, "%s: larger than %zu MiB, which is not a config", path, MAX_CONFIG_BYTES >> 20);
  }
  text[len] = '\0';
  if (len == 0) {
    free(text);
    return fkm_fail(FKM_ERR_INPUT, "%s: the file is empty", path);
  }
  const char *nul = memchr(text, '\0', len);
  if (nul) {
    size_t offset = (size_t)(nul - text);
    free(text);
    return fkm_fail(FKM_ERR_INPUT, "%s: contains a NUL byte at offset %zu (not a text file)", path, offset);
  }

  /* The path is the origin, so parse records it in cfg->path. */
  fkm_status st = fkm_config_parse(text, path, cfg);
  if (st == FKM_OK) cfg->hash = fnv1a64((const unsigned char *)text, len);
  free(text);
  return st;
}

void fkm_config_free(fkm_config *cfg) {
  if (!cfg) return;
  for (int i = 0; cfg->exps && i < cfg->n_exps; i++) {
    fkm_experiment *e = &cfg->exps[i];
    for (int g = 0; e->variant_globs && g < e->n_globs; g++) free(e->variant_globs[g]);
    free(e->variant_globs);
    free(e->B);
    free(e->N);
    free(e->K);
    free(e->D);
    free(e->dtypes);
    free(e->data);
    free(e->seeds);
  }
  free(cfg->exps);
  memset(cfg, 0, sizeof *cfg);
}

/* ---- expansion ----------------------------------------------------------------- */

typedef struct {
  const fkm_experiment *e;
  int exp_index;
  const fkm_variant **variants; /* the experiment's selected variants, registry order */
  int n_variants;
  fkm_case *cases;
  int n_cases, cap;
  int next_group;
} expansion;

static fkm_status emit_combo(const parse_ctx *ctx, const combo_paths *paths, const axis_combo *c, void *arg) {
  expansion *x = arg;
  fkm_shape s;
  FKM_TRY(resolve_shape(ctx, paths, c, &s));
  for (int seed = 0; seed < x->e->n_seeds; seed++) {
    if (x->n_cases > INT_MAX - x->n_variants)
      return fkm_fail(FKM_ERR_INPUT, "%s: the config expands to more than %d cases", ctx->origin, INT_MAX);
    if (x->n_cases + x->n_variants > x->cap) {
      int64_t want = (int64_t)x->cap * 2 + x->n_variants + 16;
      int new_cap = want > INT_MAX ? INT_MAX : (int)want;
      fkm_case *bigger = realloc(x->cases, (size_t)new_cap * sizeof *bigger);
      if (!bigger) return fkm_fail(FKM_ERR_OOM, "cannot allocate %d cases", new_cap);
      x->cases = bigger;
      x->cap = new_cap;
    }
    for (int v = 0; v < x->n_variants; v++) {
      fkm_case *out = &x->cases[x->n_cases++];
      memset(out, 0, sizeof *out);
      out->exp_index = x->exp_index;
      out->v = x->variants[v];
      out->s = s;
      out->data = *c->data;
      out->seed = x->e->seeds[seed];
      out->shape_group = x->next_group;
    }
    x->next_group++;
  }
  return FKM_OK;
}

fkm_status fkm_config_expand(const fkm_config *cfg, const char *filter, fkm_case **cases, int *n_cases) {
  if (!cfg || !cases || !n_cases) return fkm_fail(FKM_ERR_INTERNAL, "fkm_config_expand: missing argument");
  *cases = NULL;
  *n_cases = 0;
  parse_ctx ctx = {cfg->path[0] ? cfg->path : cfg->name};
  expansion x;
  memset(&x, 0, sizeof x);
  x.variants = malloc((size_t)(fkm_variant_count() > 0 ? fkm_variant_count() : 1) * sizeof *x.variants);
  if (!x.variants) return fkm_fail(FKM_ERR_OOM, "cannot allocate the variant list");

  fkm_status st = FKM_OK;
  for (int i = 0; i < cfg->n_exps && st == FKM_OK; i++) {
    const fkm_experiment *e = &cfg->exps[i];
    x.e = e;
    x.exp_index = i;
    x.n_variants = 0;
    for (int r = 0; r < fkm_variant_count(); r++) {
      const fkm_variant *v = fkm_variant_at(r);
      if (v->op != e->op) continue;
      if (filter && !fkm_glob_match(filter, v->name)) continue;
      int selected = 0;
      for (int g = 0; g < e->n_globs && !selected; g++) selected = fkm_glob_match(e->variant_globs[g], v->name);
      if (selected) x.variants[x.n_variants++] = v;
    }
    /* An experiment the filter empties yields no cases and uses no shape groups. */
    if (x.n_variants == 0) continue;
    npy_geometry *geo;
    st = read_all_geometry(&ctx, e, i, 0, &geo);
    if (st != FKM_OK) break;
    st = visit_combos(&ctx, e, i, 0, geo, emit_combo, &x);
    free(geo);
  }
  free(x.variants);
  if (st != FKM_OK) {
    free(x.cases);
    return st;
  }
  *cases = x.cases;
  *n_cases = x.n_cases;
  return FKM_OK;
}
