/* config.h — experiment configs: parsed from JSON, checked completely before
 * anything runs, and expanded into the list of cases (one variant on one shape).
 *
 * Every error names the file and the JSON path of the offending value, e.g.
 *   configs/x.json: experiments[2].axes.K[1]: expected a positive integer, got -3
 * The format is documented in README.md ("Config format"). */
#ifndef FKM_CONFIG_H
#define FKM_CONFIG_H

#include "flashkm.h"
#include "variant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int warmup;          /* untimed runs before sampling */
  int min_samples;     /* always take at least this many */
  int max_samples;     /* never more than this many */
  double noise_target; /* stop once relative stdev of samples <= this (after min_samples) */
  double budget_s;     /* stop sampling a case after this many seconds (after min_samples) */
  int flush_l2;        /* L2 flush before each sample: an fkm_flush_mode (l2_flush.h) */
} fkm_measure_cfg;

typedef enum { FKM_DATA_BLOBS = 0, FKM_DATA_NORMAL, FKM_DATA_UNIFORM, FKM_DATA_SKEWED, FKM_DATA_NPY, FKM_DATA_COUNT } fkm_data_kind;

typedef struct {
  fkm_data_kind kind;
  char path[1024];     /* FKM_DATA_NPY only: the .npy file */
  char label[1100];    /* as written in the config: "blobs", "npy:path" */
} fkm_data_spec;

typedef struct {
  char name[128];
  fkm_op op;
  char **variant_globs;
  int n_globs;
  int64_t *B, *N, *K, *D;
  int nB, nN, nK, nD;  /* nB / nN / nD are 0 when every data entry is npy and the axis is omitted (from the file) */
  fkm_dtype *dtypes;
  int n_dtypes;
  fkm_data_spec *data;
  int n_data;
  uint64_t *seeds;
  int n_seeds;
  fkm_measure_cfg measure; /* the config's measure block overridden by the experiment's */
  /* op fit only ("fit" block): init, tol, tol_mode, max_iter of every fit
   * (the shape fields are the case's), and how closely the final inertia of
   * each variant must agree with the first variant's on the same data. */
  fkm_fit_options fit;
  double fit_inertia_rtol;
  /* op lloyd / fit ("gpus"): the GPUs of the multi-GPU variants (lloyd/flash_nccl,
   * fit/flash_nccl), which run through `flashkm dist`; n_gpus 0: GPU 0 alone. */
  int gpus[64];
  int n_gpus;
} fkm_experiment;

typedef struct {
  char name[128];
  char description[1024];
  char path[1024];
  uint64_t hash;           /* FNV-1a 64 of the file's bytes */
  fkm_measure_cfg measure;
  int64_t validate_max_rows; /* assign validation checks at most this many rows per case */
  fkm_experiment *exps;
  int n_exps;
} fkm_config;

/* One unit of work: one variant on one fully specified problem. */
typedef struct {
  int exp_index;
  const fkm_variant *v;
  fkm_shape s;
  fkm_data_spec data;
  uint64_t seed;
  int shape_group;   /* cases with equal shape_group share the same generated data */
} fkm_case;

void fkm_measure_defaults(fkm_measure_cfg *m);
/* A generator's name ("blobs", "normal", "uniform", "skewed") -> *out; 0 on success,
 * -1 for any other name (npy inputs are "npy:PATH", parsed by the config). */
int fkm_data_kind_from_name(const char *name, fkm_data_kind *out);
fkm_status fkm_config_load(const char *path, fkm_config *cfg);
/* `origin` names the text in messages (usually the path). */
fkm_status fkm_config_parse(const char *text, const char *origin, fkm_config *cfg);
void fkm_config_free(fkm_config *cfg);

/* Expands experiments in order; within an experiment the shape axes vary
 * slowest-first in the order B, N, K, D, dtype, data, seed and, for each shape,
 * every registered variant of the experiment's op that matches a glob (and
 * `filter`, if not NULL) in registry order. *cases is malloc'd. */
fkm_status fkm_config_expand(const fkm_config *cfg, const char *filter, fkm_case **cases, int *n_cases);

/* fnmatch-style glob ('*' and '?') used for variant selection. */
int fkm_glob_match(const char *pattern, const char *text);

#ifdef __cplusplus
}
#endif
#endif
