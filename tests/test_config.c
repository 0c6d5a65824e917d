/* test_config.c — unit tests of harness/config.c: good configs (defaults,
 * overrides, scalar-or-array axes, npy-derived shapes), expansion order and
 * shape groups, glob matching, and every bad config in configs/bad/, each of
 * which must fail with FKM_ERR_INPUT and a message that starts with the file
 * and the JSON path of the offending value.
 *
 * Runs in tests/ (ctest's working directory). The registry grows as variants
 * are added, so expected counts either come from a filter that keeps only the
 * cpu_ref variants or are computed from the registry. */
#define _POSIX_C_SOURCE 200809L

#include "check.h"
#include "config.h"
#include "l2_flush.h"
#include "npy.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* JSON is written with single quotes in this file for readability. */
static char json_buf[8192];
static const char *json(const char *single_quoted) {
  snprintf(json_buf, sizeof json_buf, "%s", single_quoted);
  for (char *p = json_buf; *p; p++)
    if (*p == '\'') *p = '"';
  return json_buf;
}

static int message_contains(const char *needle) { return strstr(fkm_last_error(), needle) != NULL; }

static int is_zeroed(const fkm_config *cfg) {
  static const fkm_config zero;
  return memcmp(cfg, &zero, sizeof zero) == 0;
}

/* Field by field: struct padding is not part of the value. */
static int same_measure(const fkm_measure_cfg *a, const fkm_measure_cfg *b) {
  return a->warmup == b->warmup && a->min_samples == b->min_samples && a->max_samples == b->max_samples &&
         a->noise_target == b->noise_target && a->budget_s == b->budget_s && a->flush_l2 == b->flush_l2;
}

static int same_shape(const fkm_shape *a, const fkm_shape *b) {
  return a->B == b->B && a->N == b->N && a->K == b->K && a->D == b->D && a->dtype == b->dtype;
}

static fkm_status parse(const char *single_quoted, fkm_config *cfg) {
  return fkm_config_parse(json(single_quoted), "test.json", cfg);
}

static int count_variants(fkm_op op, const char *glob) {
  int n = 0;
  for (int i = 0; i < fkm_variant_count(); i++)
    if (fkm_variant_at(i)->op == op && fkm_glob_match(glob, fkm_variant_at(i)->name)) n++;
  return n;
}

static void test_glob(void) {
  CHECK(fkm_glob_match("assign/cpu_ref", "assign/cpu_ref"));
  CHECK(!fkm_glob_match("assign/cpu_ref", "assign/cpu_ref2"));
  CHECK(!fkm_glob_match("assign/cpu_re", "assign/cpu_ref"));
  CHECK(fkm_glob_match("assign/*", "assign/cpu_ref"));
  CHECK(fkm_glob_match("assign/*", "assign/"));
  CHECK(!fkm_glob_match("assign/*", "update/cpu_ref"));
  CHECK(fkm_glob_match("*/cpu_ref", "update/cpu_ref"));
  CHECK(fkm_glob_match("*", ""));
  CHECK(fkm_glob_match("", ""));
  CHECK(!fkm_glob_match("", "a"));
  CHECK(fkm_glob_match("a?c", "abc"));
  CHECK(!fkm_glob_match("a?c", "ac"));
  CHECK(fkm_glob_match("*flash*", "assign/flash_simt"));
  CHECK(fkm_glob_match("a*b*c", "axxbyyc"));
  CHECK(!fkm_glob_match("a*b*c", "axxbyy"));
  CHECK(fkm_glob_match("a*b", "abab"));
  CHECK(fkm_glob_match("**a", "a"));
  CHECK(fkm_glob_match("?*", "x"));
  CHECK(!fkm_glob_match("?*", ""));
  CHECK(!fkm_glob_match("[ab]", "a")); /* brackets are literal */
  CHECK(fkm_glob_match("[ab]", "[ab]"));
}

static void test_defaults(void) {
  fkm_config cfg;
  fkm_status st = parse("{'name': 'min', 'experiments': [{'name': 'e', 'op': 'assign', "
                        "'variants': ['assign/cpu_ref'], 'axes': {'N': 100, 'K': 4, 'D': 8}}]}",
                        &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  CHECK(strcmp(cfg.name, "min") == 0);
  CHECK(strcmp(cfg.description, "") == 0);
  CHECK(strcmp(cfg.path, "test.json") == 0);
  CHECK_EQ_INT(cfg.validate_max_rows, 8192);
  CHECK_EQ_INT(cfg.measure.warmup, 3);
  CHECK_EQ_INT(cfg.measure.min_samples, 10);
  CHECK_EQ_INT(cfg.measure.max_samples, 200);
  CHECK_NEAR(cfg.measure.noise_target, 0.02, 0);
  CHECK_NEAR(cfg.measure.budget_s, 2.0, 0);
  CHECK_EQ_INT(cfg.measure.flush_l2, FKM_FLUSH_CLEAN);
  CHECK_EQ_INT(cfg.n_exps, 1);
  const fkm_experiment *e = &cfg.exps[0];
  CHECK(strcmp(e->name, "e") == 0);
  CHECK_EQ_INT(e->op, FKM_OP_ASSIGN);
  CHECK_EQ_INT(e->n_globs, 1);
  CHECK(strcmp(e->variant_globs[0], "assign/cpu_ref") == 0);
  CHECK_EQ_INT(e->nB, 1);
  CHECK_EQ_INT(e->B[0], 1);
  CHECK_EQ_INT(e->nN, 1);
  CHECK_EQ_INT(e->N[0], 100);
  CHECK_EQ_INT(e->nK, 1);
  CHECK_EQ_INT(e->K[0], 4);
  CHECK_EQ_INT(e->nD, 1);
  CHECK_EQ_INT(e->D[0], 8);
  CHECK_EQ_INT(e->n_dtypes, 1);
  CHECK_EQ_INT(e->dtypes[0], FKM_F16);
  CHECK_EQ_INT(e->n_data, 1);
  CHECK_EQ_INT(e->data[0].kind, FKM_DATA_BLOBS);
  CHECK(strcmp(e->data[0].label, "blobs") == 0);
  CHECK_EQ_INT(e->n_seeds, 1);
  CHECK_EQ_INT(e->seeds[0], 1);
  CHECK(same_measure(&e->measure, &cfg.measure));
  fkm_config_free(&cfg);
  CHECK(is_zeroed(&cfg));
  fkm_config_free(&cfg); /* safe twice */
}

/* flush_l2: true is the clean flush, the two methods by name, an experiment overriding */
static void test_flush_modes(void) {
  fkm_config cfg;
  fkm_status st = parse("{'name': 'f', 'measure': {'flush_l2': 'write'}, 'experiments': ["
                        " {'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'], 'axes': {'N': 100, 'K': 4, 'D': 8}},"
                        " {'name': 'g', 'op': 'assign', 'variants': ['assign/cpu_ref'], 'axes': {'N': 100, 'K': 4, 'D': 8},"
                        "  'measure': {'flush_l2': 'clean'}},"
                        " {'name': 'h', 'op': 'assign', 'variants': ['assign/cpu_ref'], 'axes': {'N': 100, 'K': 4, 'D': 8},"
                        "  'measure': {'flush_l2': true}}]}",
                        &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  CHECK_EQ_INT(cfg.measure.flush_l2, FKM_FLUSH_WRITE);
  CHECK_EQ_INT(cfg.exps[0].measure.flush_l2, FKM_FLUSH_WRITE);
  CHECK_EQ_INT(cfg.exps[1].measure.flush_l2, FKM_FLUSH_CLEAN);
  CHECK_EQ_INT(cfg.exps[2].measure.flush_l2, FKM_FLUSH_CLEAN);
  CHECK(strcmp(fkm_flush_mode_name(FKM_FLUSH_WRITE), "write") == 0);
  CHECK(strcmp(fkm_flush_mode_name(FKM_FLUSH_CLEAN), "clean") == 0);
  fkm_config_free(&cfg);
}

static void test_overrides_and_axis_forms(void) {
  fkm_config cfg;
  fkm_status st = parse("{'name': 'ov', 'description': 'two experiments',"
                        " 'measure': {'warmup': 1, 'max_samples': 40, 'noise_target': 0.1},"
                        " 'validate': {'max_rows': 77},"
                        " 'experiments': ["
                        "  {'name': 'a', 'op': 'assign', 'variants': ['assign/*'],"
                        "   'axes': {'B': [1, 3], 'N': [100, 200], 'K': 4, 'D': [8],"
                        "            'dtype': ['fp32', 'bf16'], 'data': ['normal', 'uniform', 'skewed'],"
                        "            'seed': [0, 9007199254740992]},"
                        "   'measure': {'min_samples': 20, 'flush_l2': false, 'budget_s': 0.5}},"
                        "  {'name': 'u', 'op': 'update', 'variants': ['update/cpu_ref'],"
                        "   'axes': {'N': 100, 'K': [2, 3], 'D': 8, 'dtype': 'fp32', 'data': 'uniform', 'seed': 5}}]}",
                        &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  CHECK(strcmp(cfg.description, "two experiments") == 0);
  CHECK_EQ_INT(cfg.validate_max_rows, 77);
  /* Top level: defaults overridden key by key. */
  CHECK_EQ_INT(cfg.measure.warmup, 1);
  CHECK_EQ_INT(cfg.measure.min_samples, 10);
  CHECK_EQ_INT(cfg.measure.max_samples, 40);
  CHECK_NEAR(cfg.measure.noise_target, 0.1, 0);
  CHECK_NEAR(cfg.measure.budget_s, 2.0, 0);
  CHECK_EQ_INT(cfg.measure.flush_l2, FKM_FLUSH_CLEAN);
  /* Experiment: the top level overridden key by key. */
  const fkm_measure_cfg *m = &cfg.exps[0].measure;
  CHECK_EQ_INT(m->warmup, 1);
  CHECK_EQ_INT(m->min_samples, 20);
  CHECK_EQ_INT(m->max_samples, 40);
  CHECK_NEAR(m->noise_target, 0.1, 0);
  CHECK_NEAR(m->budget_s, 0.5, 0);
  CHECK_EQ_INT(m->flush_l2, FKM_FLUSH_NONE);
  CHECK(same_measure(&cfg.exps[1].measure, &cfg.measure));

  const fkm_experiment *a = &cfg.exps[0], *u = &cfg.exps[1];
  CHECK_EQ_INT(a->nB, 2);
  CHECK_EQ_INT(a->B[1], 3);
  CHECK_EQ_INT(a->nN, 2);
  CHECK_EQ_INT(a->nD, 1);
  CHECK_EQ_INT(a->n_dtypes, 2);
  CHECK_EQ_INT(a->dtypes[0], FKM_F32);
  CHECK_EQ_INT(a->dtypes[1], FKM_BF16);
  CHECK_EQ_INT(a->n_data, 3);
  CHECK_EQ_INT(a->data[2].kind, FKM_DATA_SKEWED);
  CHECK_EQ_INT(a->n_seeds, 2);
  CHECK_EQ_INT(a->seeds[0], 0);
  CHECK(a->seeds[1] == ((uint64_t)1 << 53));
  CHECK_EQ_INT(u->op, FKM_OP_UPDATE);
  CHECK_EQ_INT(u->nK, 2);
  CHECK_EQ_INT(u->n_dtypes, 1);
  CHECK_EQ_INT(u->dtypes[0], FKM_F32);
  CHECK_EQ_INT(u->n_data, 1);
  CHECK_EQ_INT(u->data[0].kind, FKM_DATA_UNIFORM);
  CHECK_EQ_INT(u->seeds[0], 5);

  /* Expansion, cpu_ref only: exp a has 2*2*1*1*2*3*2 = 48 shapes, exp u 2. */
  fkm_case *cases = NULL;
  int n = -1;
  CHECK_EQ_INT(fkm_config_expand(&cfg, "*/cpu_ref", &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, 50);
  if (n == 50) {
    int in_order = 1;
    for (int i = 0; i < 48; i++) {
      /* Slowest to fastest: B, N, K, D, dtype, data, seed. */
      const fkm_case *c = &cases[i];
      int seed = i % 2, data = i / 2 % 3, dtype = i / 6 % 2, N = i / 12 % 2, B = i / 24 % 2;
      in_order &= c->exp_index == 0 && c->v == fkm_variant_find("assign/cpu_ref") && c->shape_group == i &&
                  c->s.B == a->B[B] && c->s.N == a->N[N] && c->s.K == 4 && c->s.D == 8 &&
                  c->s.dtype == a->dtypes[dtype] && c->data.kind == a->data[data].kind &&
                  c->seed == a->seeds[seed];
      if (!in_order) {
        fprintf(stderr, "case %d out of order\n", i);
        break;
      }
    }
    CHECK(in_order);
    CHECK_EQ_INT(cases[48].exp_index, 1);
    CHECK(cases[48].v == fkm_variant_find("update/cpu_ref"));
    CHECK_EQ_INT(cases[48].s.K, 2);
    CHECK_EQ_INT(cases[49].s.K, 3);
    CHECK_EQ_INT(cases[49].shape_group, 49);
    CHECK_EQ_INT(cases[49].seed, 5);
  }
  free(cases);

  /* A filter keeps one op only: shape groups stay dense from 0. */
  CHECK_EQ_INT(fkm_config_expand(&cfg, "update/*", &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, 2 * count_variants(FKM_OP_UPDATE, "update/cpu_ref"));
  if (n > 0) CHECK_EQ_INT(cases[0].shape_group, 0);
  free(cases);

  /* A filter that matches nothing: no cases, no error. */
  CHECK_EQ_INT(fkm_config_expand(&cfg, "nothing*", &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, 0);
  CHECK(cases == NULL);
  fkm_config_free(&cfg);
}

static uint64_t fnv1a64_of_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint64_t h = 14695981039346656037ull;
  int c;
  while (f && (c = fgetc(f)) != EOF) {
    h ^= (uint64_t)(unsigned char)c;
    h *= 1099511628211ull;
  }
  if (f) fclose(f);
  return h;
}

static int registry_index(const fkm_variant *v) {
  for (int i = 0; i < fkm_variant_count(); i++)
    if (fkm_variant_at(i) == v) return i;
  return -1;
}

static void test_good_all_keys_file(void) {
  const char *path = "configs/good_all_keys.json";
  fkm_config cfg;
  fkm_status st = fkm_config_load(path, &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  CHECK(strcmp(cfg.path, path) == 0);
  CHECK(cfg.hash == fnv1a64_of_file(path));
  CHECK(strcmp(cfg.name, "good_all_keys") == 0);
  CHECK(cfg.description[0] != '\0');
  CHECK_EQ_INT(cfg.validate_max_rows, 1024);
  CHECK_EQ_INT(cfg.measure.warmup, 2);
  CHECK_EQ_INT(cfg.measure.flush_l2, FKM_FLUSH_NONE);
  CHECK_EQ_INT(cfg.exps[0].measure.warmup, 0);
  CHECK_EQ_INT(cfg.exps[0].measure.min_samples, 5);
  CHECK_EQ_INT(cfg.exps[0].measure.max_samples, 12);
  CHECK_EQ_INT(cfg.exps[0].measure.flush_l2, FKM_FLUSH_CLEAN);
  CHECK_NEAR(cfg.exps[0].measure.budget_s, 1.5, 0);
  CHECK_EQ_INT(cfg.exps[1].measure.max_samples, 50);

  /* Every registered assign variant (globs overlap: each counted once) on
   * 2*2*2*1*2*2*2 = 64 shapes, then update/cpu_ref on 2 shapes. */
  int n_assign = count_variants(FKM_OP_ASSIGN, "assign/*");
  fkm_case *cases = NULL;
  int n = 0;
  CHECK_EQ_INT(fkm_config_expand(&cfg, NULL, &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, 64 * n_assign + 2);
  /* Shape groups: consecutive, one per shape, variants in registry order within. */
  int groups_ok = n > 0 && cases[0].shape_group == 0;
  for (int i = 1; i < n && groups_ok; i++) {
    const fkm_case *p = &cases[i - 1], *c = &cases[i];
    if (c->shape_group == p->shape_group) {
      groups_ok = same_shape(&c->s, &p->s) && c->seed == p->seed &&
                  strcmp(c->data.label, p->data.label) == 0 && c->exp_index == p->exp_index && registry_index(c->v) > registry_index(p->v);
    } else {
      groups_ok = c->shape_group == p->shape_group + 1;
    }
  }
  CHECK(groups_ok);
  if (n > 0) CHECK_EQ_INT(cases[n - 1].shape_group, 65);
  free(cases);
  fkm_config_free(&cfg);

  CHECK_EQ_INT(fkm_config_load("configs/does_not_exist.json", &cfg), FKM_ERR_IO);
  CHECK_MSG(message_contains("configs/does_not_exist.json"), "%s", fkm_last_error());
  CHECK(is_zeroed(&cfg));
}

/* Each file in configs/bad/ → the JSON path its message must start with
 * (after "configs/bad/FILE: ") and a phrase it must contain. */
typedef struct {
  const char *file;
  const char *path;
  const char *what;
} bad_config;

static const bad_config bad_configs[] = {
    {"unknown_top_key.json", "colour", "unknown key"},
    {"unknown_axis_key.json", "experiments[0].axes.M", "unknown key"},
    {"wrong_type_k.json", "experiments[0].axes.K", "got \"eight\""},
    {"negative_n.json", "experiments[0].axes.N[1]", "expected a positive integer, got -5"},
    {"zero_d.json", "experiments[0].axes.D", "expected a positive integer, got 0"},
    {"k_exceeds_n.json", "experiments[1].axes.K", "K=2000 exceeds N=1000"},
    {"float_k.json", "experiments[0].axes.K[0]", "got 1.5"},
    {"overflow.json", "experiments[0].axes", "B*N*D overflows"},
    {"d_limit.json", "experiments[0].axes.D", "D < 2^20"},
    {"bn_limit.json", "experiments[0].axes.N", "B*N < 2^31"},
    {"unknown_dtype.json", "experiments[0].axes.dtype[1]", "unknown dtype \"fp64\""},
    {"unknown_data.json", "experiments[0].axes.data", "unknown data generator \"gaussian_blobs\""},
    {"glob_no_match.json", "experiments[0].variants[1]",
     "\"assign/nope*\" matches no assign variant (see `flashkm list`)"},
    {"glob_wrong_op.json", "experiments[0].variants[0]", "\"update/*\" matches no assign variant"},
    {"missing_experiments.json", "experiments", "missing required key"},
    {"empty_variants.json", "experiments[0].variants", "empty array"},
    {"syntax_error.json", "line 5, column 42", "invalid JSON"},
    {"min_gt_max.json", "measure.max_samples", "min_samples=50 exceeds max_samples=20"},
    {"min_gt_inherited_max.json", "experiments[0].measure.min_samples", "min_samples=30 exceeds max_samples=20"},
    {"npy_missing.json", "experiments[0].axes.data[1]", "configs/bad/no_such_file.npy: cannot open"},
    {"duplicate_key.json", "experiments[0].axes.K", "duplicate key"},
    {"unknown_op.json", "experiments[0].op", "unknown op \"assign_update\""},
    {"bad_name.json", "name", "not a valid name"},
    {"missing_n.json", "experiments[0].axes.N", "missing"},
    {"missing_k.json", "experiments[0].axes.K", "missing required key"},
    {"negative_seed.json", "experiments[0].axes.seed[1]", "expected a non-negative integer, got -2"},
    {"noise_target_range.json", "experiments[0].measure.noise_target", "got 1.5"},
    {"unknown_measure_key.json", "measure.repeats", "unknown key"},
    {"validate_zero_rows.json", "validate.max_rows", "got 0"},
    {"duplicate_experiment_name.json", "experiments[1]", "duplicate experiment name \"a\""},
    {"not_an_object.json", "(top level)", "expected an object, got an array"},
    {"empty.json", NULL, "the file is empty"},
};
#define N_BAD_CONFIGS ((int)(sizeof bad_configs / sizeof bad_configs[0]))

static void test_bad_configs(void) {
  for (int i = 0; i < N_BAD_CONFIGS; i++) {
    const bad_config *b = &bad_configs[i];
    char file[256], prefix[512];
    snprintf(file, sizeof file, "configs/bad/%s", b->file);
    if (b->path) snprintf(prefix, sizeof prefix, "%s: %s: ", file, b->path);
    else snprintf(prefix, sizeof prefix, "%s: ", file);
    fkm_config cfg;
    memset(&cfg, 0xab, sizeof cfg); /* whatever the caller had: must come back zeroed */
    fkm_status st = fkm_config_load(file, &cfg);
    const char *msg = fkm_last_error();
    CHECK_MSG(st == FKM_ERR_INPUT, "%s: status %s: %s", file, fkm_status_name(st), msg);
    CHECK_MSG(strncmp(msg, prefix, strlen(prefix)) == 0, "%s: expected the message to start with '%s': %s", file,
              prefix, msg);
    CHECK_MSG(strstr(msg, b->what) != NULL, "%s: expected '%s' in: %s", file, b->what, msg);
    CHECK_MSG(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", file, msg);
    CHECK_MSG(is_zeroed(&cfg), "%s: config not zeroed after the error", file);
  }

  /* Every file in configs/bad/ is in the table, so none goes untested. */
  DIR *dir = opendir("configs/bad");
  CHECK(dir != NULL);
  int n_files = 0;
  for (struct dirent *d; dir && (d = readdir(dir));) {
    const char *name = d->d_name;
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 5, ".json") != 0) continue;
    n_files++;
    int listed = 0;
    for (int i = 0; i < N_BAD_CONFIGS && !listed; i++) listed = strcmp(bad_configs[i].file, name) == 0;
    CHECK_MSG(listed, "configs/bad/%s has no entry in the test's table", name);
  }
  if (dir) closedir(dir);
  CHECK_EQ_INT(n_files, N_BAD_CONFIGS);
}

static void expect_parse_error(const char *single_quoted, const char *path, const char *what) {
  fkm_config cfg;
  fkm_status st = parse(single_quoted, &cfg);
  char prefix[512];
  snprintf(prefix, sizeof prefix, "test.json: %s: ", path);
  const char *msg = fkm_last_error();
  CHECK_MSG(st == FKM_ERR_INPUT, "expected an input error for %s, got %s: %s", path, fkm_status_name(st), msg);
  CHECK_MSG(strncmp(msg, prefix, strlen(prefix)) == 0, "expected the message to start with '%s': %s", prefix, msg);
  CHECK_MSG(strstr(msg, what) != NULL, "expected '%s' in: %s", what, msg);
  CHECK(is_zeroed(&cfg));
  if (st == FKM_OK) fkm_config_free(&cfg);
}

static void test_bad_strings(void) {
  /* Errors in later experiments leave nothing allocated behind (valgrind/ASan
   * would tell); here: the status, path and zeroed config. */
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 100, 'K': [8, 8], 'D': 4}}]}",
                     "experiments[0].axes.K[1]", "duplicate value 8");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 1e17, 'K': 8, 'D': 4}}]}",
                     "experiments[0].axes.N", "beyond 2^53");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}},"
                     " {'name': 'f', 'op': 'update', 'variants': ['assign/*'], 'axes': {'N': 100, 'K': 8, 'D': 4}}]}",
                     "experiments[1].variants[0]", "matches no update variant");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4, 'dtype': []}}]}",
                     "experiments[0].axes.dtype", "empty array");
  expect_parse_error("{'name': 'x', 'experiments': {}}", "experiments", "expected a non-empty array");
  expect_parse_error("{'name': 'x', 'experiments': []}", "experiments", "empty array");
  expect_parse_error("{'name': 'x', 'measure': {'flush_l2': 1}, 'experiments': []}", "measure.flush_l2",
                     "expected true, false, \"clean\" or \"write\", got 1");
  expect_parse_error("{'name': 'x', 'measure': {'flush_l2': 'fast'}, 'experiments': []}", "measure.flush_l2",
                     "expected true, false, \"clean\" or \"write\"");
  expect_parse_error("{'name': 'x', 'measure': {'budget_s': 0}, 'experiments': []}", "measure.budget_s",
                     "expected a positive number");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'extra': 1}]}",
                     "experiments[0].extra", "unknown key");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4, 'data': 'npy:'}}]}",
                     "experiments[0].axes.data", "needs a file path");

  /* Syntax errors give line and column. */
  fkm_config cfg;
  CHECK_EQ_INT(fkm_config_parse("{\n  \"name\": \"x\",\n  oops\n}", "s.json", &cfg), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("s.json: line 3, column 3: invalid JSON near `oops`"), "%s", fkm_last_error());
  CHECK_EQ_INT(fkm_config_parse("{\"name\": \"x\"", "s.json", &cfg), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("s.json: line 1, column ") && message_contains("invalid JSON"), "%s", fkm_last_error());
  CHECK_EQ_INT(fkm_config_parse("{\"a\": 1,}", "s.json", &cfg), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("line 1, column 9: invalid JSON near `}`"), "%s", fkm_last_error());
  CHECK_EQ_INT(fkm_config_parse("{\"a\": [1, tru]}", "s.json", &cfg), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("line 1, column 11: invalid JSON near `tru]}`"), "%s", fkm_last_error());
  CHECK_EQ_INT(fkm_config_parse("{} trailing", "s.json", &cfg), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("column 4"), "%s", fkm_last_error());
  CHECK_EQ_INT(fkm_config_parse("  \n ", "s.json", &cfg), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("s.json: empty"), "%s", fkm_last_error());
  CHECK(is_zeroed(&cfg));
}

/* ---- npy data: shapes taken from the files ---- */

static char temp_dir[64];
static char npy_2d[128], npy_3d[128], npy_i32[128], npy_bad[128];

static void write_npy_fixtures(void) {
  snprintf(temp_dir, sizeof temp_dir, "/tmp/fkm_test_config_XXXXXX");
  if (!mkdtemp(temp_dir)) {
    perror("mkdtemp");
    exit(1);
  }
  snprintf(npy_2d, sizeof npy_2d, "%s/rows.npy", temp_dir);
  snprintf(npy_3d, sizeof npy_3d, "%s/batches.npy", temp_dir);
  snprintf(npy_i32, sizeof npy_i32, "%s/labels.npy", temp_dir);
  snprintf(npy_bad, sizeof npy_bad, "%s/garbage.npy", temp_dir);
  static float values[100 * 16];
  for (int i = 0; i < 100 * 16; i++) values[i] = (float)(i % 37) - 18.0f;
  int64_t shape2[2] = {100, 16}, shape3[3] = {4, 50, 8}, shape_i[2] = {10, 10};
  CHECK_EQ_INT(fkm_npy_write(npy_2d, FKM_NPY_F32, 2, shape2, values), FKM_OK);
  CHECK_EQ_INT(fkm_npy_write(npy_3d, FKM_NPY_F32, 3, shape3, values), FKM_OK);
  CHECK_EQ_INT(fkm_npy_write(npy_i32, FKM_NPY_I32, 2, shape_i, values), FKM_OK);
  FILE *f = fopen(npy_bad, "wb");
  if (f) {
    fputs("definitely not numpy", f);
    fclose(f);
  }
}

static void remove_npy_fixtures(void) {
  unlink(npy_2d);
  unlink(npy_3d);
  unlink(npy_i32);
  unlink(npy_bad);
  rmdir(temp_dir);
}

/* A one-experiment config with the given axes (single quotes, %s for paths). */
static const char *npy_config(const char *axes_fmt, const char *path_a, const char *path_b) {
  static char axes[2048], text[4096];
  snprintf(axes, sizeof axes, axes_fmt, path_a, path_b);
  snprintf(text, sizeof text,
           "{'name': 'npy', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
           " 'axes': %s}]}",
           axes);
  return text;
}

/* Parses, expands with the cpu_ref filter and checks the single case's shape. */
static void expect_npy_shape(const char *text, int64_t B, int64_t N, int64_t D) {
  fkm_config cfg;
  fkm_status st = parse(text, &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  fkm_case *cases = NULL;
  int n = 0;
  CHECK_EQ_INT(fkm_config_expand(&cfg, "*/cpu_ref", &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, 1);
  if (n == 1) {
    CHECK_EQ_INT(cases[0].s.B, B);
    CHECK_EQ_INT(cases[0].s.N, N);
    CHECK_EQ_INT(cases[0].s.D, D);
    CHECK_EQ_INT(cases[0].data.kind, FKM_DATA_NPY);
  }
  free(cases);
  fkm_config_free(&cfg);
}

/* The "fit" block of op-fit experiments: defaults, every key, and its errors. */
static void test_fit_block(void) {
  fkm_config cfg;
  fkm_status st = parse("{'name': 'f', 'experiments': [{'name': 'a', 'op': 'fit', 'variants': ['fit/*'],"
                        " 'axes': {'N': 1000, 'K': 8, 'D': 4}},"
                        " {'name': 'b', 'op': 'fit', 'variants': ['fit/flash'], 'axes': {'N': 1000, 'K': 8, 'D': 4},"
                        " 'fit': {'init': 'kmeans++', 'tol': 0, 'tol_mode': 'inertia', 'max_iter': 25,"
                        " 'inertia_rtol': 0.01}}]}",
                        &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  const fkm_experiment *a = &cfg.exps[0], *b = &cfg.exps[1];
  CHECK_EQ_INT(a->op, FKM_OP_FIT);
  CHECK_EQ_INT(a->fit.init, FKM_INIT_RANDOM);
  CHECK_EQ_INT(a->fit.tol_mode, FKM_TOL_SHIFT);
  CHECK_NEAR(a->fit.tol, 1e-4, 0);
  CHECK_EQ_INT(a->fit.max_iter, 300);
  CHECK_NEAR(a->fit_inertia_rtol, 1e-3, 0);
  CHECK_EQ_INT(b->fit.init, FKM_INIT_KMEANSPP);
  CHECK_EQ_INT(b->fit.tol_mode, FKM_TOL_INERTIA);
  CHECK_NEAR(b->fit.tol, 0.0, 0);
  CHECK_EQ_INT(b->fit.max_iter, 25);
  CHECK_NEAR(b->fit_inertia_rtol, 0.01, 0);
  fkm_case *cases = NULL;
  int n = 0;
  CHECK_EQ_INT(fkm_config_expand(&cfg, NULL, &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, count_variants(FKM_OP_FIT, "fit/*") + 1);
  free(cases);
  fkm_config_free(&cfg);

  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'max_iter': 5}}]}",
                     "experiments[0].fit", "op \"fit\" experiments only");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'init': 'kmeans--'}}]}",
                     "experiments[0].fit.init", "unknown init");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'max_iter': 0}}]}",
                     "experiments[0].fit.max_iter", "an integer from 1");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'tol': -1}}]}",
                     "experiments[0].fit.tol", "non-negative");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'tol_mode': 'both'}}]}",
                     "experiments[0].fit.tol_mode", "unknown tol_mode");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'inertia_rtol': 1}}]}",
                     "experiments[0].fit.inertia_rtol", "between 0 and 1");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash'],"
                     " 'axes': {'N': 100, 'K': 8, 'D': 4}, 'fit': {'iters': 3}}]}",
                     "experiments[0].fit.iters", "unknown key");
}

/* "gpus" of op lloyd / fit experiments: a count or distinct ordinals. */
static void test_gpus(void) {
  fkm_config cfg;
  fkm_status st = parse("{'name': 'g', 'experiments': [{'name': 'a', 'op': 'lloyd', 'variants': ['lloyd/flash_nccl'],"
                        " 'gpus': [3, 1], 'axes': {'N': 1000, 'K': 8, 'D': 4}},"
                        " {'name': 'b', 'op': 'fit', 'variants': ['fit/flash_nccl'], 'gpus': 2,"
                        " 'axes': {'N': 1000, 'K': 8, 'D': 4}},"
                        " {'name': 'c', 'op': 'lloyd', 'variants': ['lloyd/flash'], 'axes': {'N': 1000, 'K': 8, 'D': 4}}]}",
                        &cfg);
  CHECK_MSG(st == FKM_OK, "%s", fkm_last_error());
  if (st != FKM_OK) return;
  CHECK_EQ_INT(cfg.exps[0].n_gpus, 2);
  CHECK_EQ_INT(cfg.exps[0].gpus[0], 3);
  CHECK_EQ_INT(cfg.exps[0].gpus[1], 1);
  CHECK_EQ_INT(cfg.exps[1].n_gpus, 2);
  CHECK_EQ_INT(cfg.exps[1].gpus[1], 1);
  CHECK_EQ_INT(cfg.exps[2].n_gpus, 0);
  fkm_config_free(&cfg);
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'assign', 'variants': ['assign/cpu_ref'],"
                     " 'gpus': 2, 'axes': {'N': 100, 'K': 8, 'D': 4}}]}",
                     "experiments[0].gpus", "op \"lloyd\" and \"fit\" experiments only");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'lloyd', 'variants': ['lloyd/flash_nccl'],"
                     " 'gpus': [0, 0], 'axes': {'N': 100, 'K': 8, 'D': 4}}]}",
                     "experiments[0].gpus[1]", "listed twice");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'lloyd', 'variants': ['lloyd/flash_nccl'],"
                     " 'gpus': [], 'axes': {'N': 100, 'K': 8, 'D': 4}}]}",
                     "experiments[0].gpus", "non-empty list");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'lloyd', 'variants': ['lloyd/flash_nccl'],"
                     " 'gpus': 0, 'axes': {'N': 100, 'K': 8, 'D': 4}}]}",
                     "experiments[0].gpus", "GPU count");
  expect_parse_error("{'name': 'x', 'experiments': [{'name': 'e', 'op': 'fit', 'variants': ['fit/flash_nccl'],"
                     " 'gpus': [-1], 'axes': {'N': 100, 'K': 8, 'D': 4}}]}",
                     "experiments[0].gpus[0]", "GPU ordinal");
}

static void test_npy_data(void) {
  write_npy_fixtures();
  fkm_config cfg;

  /* 2-D, N and D omitted: one problem of all rows. */
  CHECK_EQ_INT(parse(npy_config("{'K': 8, 'data': 'npy:%s'}", npy_2d, ""), &cfg), FKM_OK);
  CHECK_EQ_INT(cfg.exps[0].nB, 0);
  CHECK_EQ_INT(cfg.exps[0].nN, 0);
  CHECK_EQ_INT(cfg.exps[0].nD, 0);
  CHECK(strcmp(cfg.exps[0].data[0].path, npy_2d) == 0);
  CHECK(strncmp(cfg.exps[0].data[0].label, "npy:", 4) == 0);
  fkm_config_free(&cfg);
  expect_npy_shape(npy_config("{'K': 8, 'data': 'npy:%s'}", npy_2d, ""), 1, 100, 16);
  /* 2-D with N given: the first B*N rows. */
  expect_npy_shape(npy_config("{'B': 4, 'N': 25, 'K': 8, 'D': 16, 'data': ['npy:%s']}", npy_2d, ""), 4, 25, 16);
  /* 3-D: B, N, D from the file; B may select a prefix of the batches. */
  expect_npy_shape(npy_config("{'K': 8, 'data': 'npy:%s'}", npy_3d, ""), 4, 50, 8);
  expect_npy_shape(npy_config("{'B': 2, 'K': 8, 'data': 'npy:%s'}", npy_3d, ""), 2, 50, 8);
  expect_npy_shape(npy_config("{'N': 200, 'K': 8, 'data': 'npy:%s'}", npy_3d, ""), 1, 200, 8);

  /* Two files in one experiment: each case gets its own file's shape. */
  CHECK_EQ_INT(parse(npy_config("{'K': [4, 8], 'data': ['npy:%s', 'npy:%s']}", npy_2d, npy_3d), &cfg), FKM_OK);
  fkm_case *cases = NULL;
  int n = 0;
  CHECK_EQ_INT(fkm_config_expand(&cfg, "*/cpu_ref", &cases, &n), FKM_OK);
  CHECK_EQ_INT(n, 4);
  if (n == 4) {
    CHECK_EQ_INT(cases[0].s.N, 100);
    CHECK_EQ_INT(cases[0].s.K, 4);
    CHECK_EQ_INT(cases[1].s.N, 50);
    CHECK_EQ_INT(cases[1].s.B, 4);
    CHECK_EQ_INT(cases[3].s.K, 8);
    CHECK_EQ_INT(cases[3].shape_group, 3);
  }
  free(cases);
  fkm_config_free(&cfg);

  /* Inconsistent axes, each with its path. */
  expect_parse_error(npy_config("{'B': 4, 'N': 26, 'K': 8, 'data': 'npy:%s'}", npy_2d, ""), "experiments[0].axes.N",
                     "holds 100 rows");
  expect_parse_error(npy_config("{'K': 8, 'D': 17, 'data': 'npy:%s'}", npy_2d, ""), "experiments[0].axes.D",
                     "16 columns");
  expect_parse_error(npy_config("{'B': 2, 'K': 8, 'data': 'npy:%s'}", npy_2d, ""), "experiments[0].axes.B",
                     "needs an N axis");
  expect_parse_error(npy_config("{'B': 5, 'K': 8, 'data': 'npy:%s'}", npy_3d, ""), "experiments[0].axes.B",
                     "exceeds the 4 batches");
  expect_parse_error(npy_config("{'K': 128, 'data': 'npy:%s'}", npy_2d, ""), "experiments[0].axes.K",
                     "K=128 exceeds N=100");
  expect_parse_error(npy_config("{'K': 8, 'data': ['blobs', 'npy:%s']}", npy_2d, ""), "experiments[0].axes.N",
                     "missing");
  expect_parse_error(npy_config("{'K': 8, 'data': 'npy:%s'}", npy_i32, ""), "experiments[0].axes.data", "int32");
  expect_parse_error(npy_config("{'K': 8, 'data': ['npy:%s', 'npy:%s']}", npy_2d, npy_bad),
                     "experiments[0].axes.data[1]", "not a .npy file");

  /* Files that change between parse and expand: expand reports it. */
  CHECK_EQ_INT(parse(npy_config("{'K': 8, 'data': 'npy:%s'}", npy_2d, ""), &cfg), FKM_OK);
  unlink(npy_2d);
  CHECK_EQ_INT(fkm_config_expand(&cfg, NULL, &cases, &n), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("experiments[0].axes.data[0]") && message_contains("cannot open"), "%s",
            fkm_last_error());
  CHECK(cases == NULL);
  fkm_config_free(&cfg);
  remove_npy_fixtures();
}

int main(void) {
  test_glob();
  test_defaults();
  test_flush_modes();
  test_overrides_and_axis_forms();
  test_good_all_keys_file();
  test_bad_configs();
  test_bad_strings();
  test_fit_block();
  test_gpus();
  test_npy_data();
  return check_exit("test_config");
}
