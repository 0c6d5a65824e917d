/* main.c — the `flashkm` command line: run, list, info. The only place that
 * turns statuses into exit codes and prints to the user. */
#include "autotune.h"
#include "config.h"
#include "data.h"
#include "device.h"
#include "dist.h"
#include "dtype.h"
#include "error.h"
#include "gen.h"
#include "info.h"
#include "runner.h"
#include "npy.h"
#include "variant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_main =
    "flashkm — exact k-means on NVIDIA GPUs: Flash-KMeans kernels, baselines, validation, timing\n"
    "\n"
    "usage: flashkm <command> [options]\n"
    "\n"
    "commands:\n"
    "  run CONFIG   run the experiments of a JSON config, write a results JSON\n"
    "  list         the variant registry, one line each\n"
    "  info         device and build as JSON (says plainly when there is no GPU)\n"
    "  fit          cluster a .npy file: labels and centroids to .npy\n"
    "  gen          write the harness's seeded test data to .npy (for fit, peers, other tools)\n"
    "  autotune     time the FlashAssign implementations on a config's shapes; cache the fastest\n"
    "  dist         Lloyd over several GPUs (one process each, NCCL all-reduce), with scaling figures\n"
    "\n"
    "`flashkm <command> --help` describes each command.\n";

static const char *usage_run =
    "usage: flashkm run CONFIG [-o FILE] [--filter GLOB] [--dry-run] [--profile] [-q]\n"
    "\n"
    "Runs every case of CONFIG (experiments x shapes x variants): each variant is validated\n"
    "against the fp64 reference, then timed with CUDA events. Rows are written to the results\n"
    "file as they finish, so an interrupted sweep keeps what it measured.\n"
    "\n"
    "  -o FILE        results file (default: flashkm_<config name>.json)\n"
    "  --filter GLOB  only variants whose name matches GLOB, e.g. 'assign/*'\n"
    "  --dry-run      check the config and list the cases; run nothing\n"
    "  --profile      validate, then run each case once between cudaProfilerStart/Stop\n"
    "                 (for `ncu --profile-from-start off` / `nsys --capture-range=cudaProfilerApi`)\n"
    "  -q             no progress on stderr\n"
    "\n"
    "exit status: 0 all runs ok (or not_supported / out_of_memory), 1 a run was incorrect or\n"
    "failed, 2 bad command line or config (nothing ran), 3 the sweep was aborted.\n";

static const char *usage_list =
    "usage: flashkm list\n\nPrints the variant registry: name, op, minimum compute capability (cpu for CPU variants), summary.\n";

static const char *usage_info =
    "usage: flashkm info\n\nPrints the device (or why there is none) and the build as JSON.\n";

static int wants_help(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

static int cmd_list(int argc, char **argv) {
  if (wants_help(argc, argv)) {
    fputs(usage_list, stdout);
    return 0;
  }
  if (argc > 0) {
    fprintf(stderr, "flashkm list: unexpected argument '%s'\n", argv[0]);
    return FKM_EXIT_USAGE;
  }
  for (int i = 0; i < fkm_variant_count(); i++) {
    const fkm_variant *v = fkm_variant_at(i);
    char cc[16];
    if (v->min_cc == 0) snprintf(cc, sizeof cc, "cpu");
    else snprintf(cc, sizeof cc, "sm_%d%s", v->min_cc, v->max_cc ? "a" : "+");
    printf("%-26s %-7s %-7s %s\n", v->name, fkm_op_name(v->op), cc, v->summary);
  }
  return 0;
}

static int cmd_info(int argc, char **argv) {
  if (wants_help(argc, argv)) {
    fputs(usage_info, stdout);
    return 0;
  }
  if (argc > 0) {
    fprintf(stderr, "flashkm info: unexpected argument '%s'\n", argv[0]);
    return FKM_EXIT_USAGE;
  }
  fkm_device dev;
  fkm_device_query(&dev);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "device", fkm_info_device(&dev));
  cJSON_AddItemToObject(o, "build", fkm_info_build());
  cJSON_AddNumberToObject(o, "variants", fkm_variant_count());
  char *text = cJSON_Print(o);
  puts(text ? text : "{}");
  free(text);
  cJSON_Delete(o);
  if (!dev.present) fprintf(stderr, "flashkm: no GPU: %s (CPU variants still run)\n", dev.absent_reason);
  return 0;
}

static int cmd_run(int argc, char **argv, int full_argc, char **full_argv) {
  if (wants_help(argc, argv)) {
    fputs(usage_run, stdout);
    return 0;
  }
  fkm_run_opts o = {0};
  o.argc = full_argc;
  o.argv = full_argv;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--filter")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "flashkm run: %s needs a value\n%s", a, usage_run);
        return FKM_EXIT_USAGE;
      }
      if (!strcmp(a, "--filter")) o.filter = argv[++i];
      else o.out_path = argv[++i];
    } else if (!strcmp(a, "--dry-run")) {
      o.dry_run = 1;
    } else if (!strcmp(a, "--profile")) {
      o.profile = 1;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      o.quiet = 1;
    } else if (a[0] == '-') {
      fprintf(stderr, "flashkm run: unknown option '%s'\n%s", a, usage_run);
      return FKM_EXIT_USAGE;
    } else if (!o.config_path) {
      o.config_path = a;
    } else {
      fprintf(stderr, "flashkm run: more than one CONFIG ('%s' and '%s')\n", o.config_path, a);
      return FKM_EXIT_USAGE;
    }
  }
  if (!o.config_path) {
    fprintf(stderr, "flashkm run: CONFIG is missing\n%s", usage_run);
    return FKM_EXIT_USAGE;
  }
  return fkm_run_command(&o);
}


static const char *usage_autotune =
    "usage: flashkm autotune CONFIG [--results FILE] [--cache FILE] [-q]\n"
    "       flashkm autotune --from RESULTS [--cache FILE]\n"
    "\n"
    "Times every FlashAssign implementation (variants assign/flash_*) that CONFIG's assign\n"
    "experiments list, on their shapes, exactly as `flashkm run --filter 'assign/flash_*'` does\n"
    "(validated against the fp64 reference, medians), then writes the fastest of each shape\n"
    "bucket (device, dtype, D, floor(log2 K), floor(log2 B*N)) into the autotune cache, which\n"
    "assign/flash consults before its heuristic. With --from, builds the entries from an\n"
    "existing results file instead of timing (no GPU needed).\n"
    "\n"
    "  --results FILE  the timing results (default: flashkm_autotune_<config name>.json)\n"
    "  --cache FILE    the cache to update (default: $FKM_AUTOTUNE_CACHE, else\n"
    "                  $XDG_CACHE_HOME/flashkm/autotune.json or ~/.cache/flashkm/autotune.json)\n"
    "  -q              no progress on stderr\n"
    "\n"
    "FKM_AUTOTUNE_CACHE=off makes every run use the heuristic alone.\n"
    "exit status: 0 cache written, 1 some timing run failed (the others still count), 2 bad\n"
    "command line, config or results file, 3 the sweep was aborted or the cache not written.\n";

static int cmd_autotune(int argc, char **argv, int full_argc, char **full_argv) {
  if (wants_help(argc, argv)) {
    fputs(usage_autotune, stdout);
    return 0;
  }
  const char *config = NULL, *results = NULL, *cache = NULL, *from = NULL;
  int quiet = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--results") || !strcmp(a, "--cache") || !strcmp(a, "--from")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "flashkm autotune: %s needs a value\n%s", a, usage_autotune);
        return FKM_EXIT_USAGE;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--results")) results = v;
      else if (!strcmp(a, "--cache")) cache = v;
      else from = v;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      quiet = 1;
    } else if (a[0] == '-') {
      fprintf(stderr, "flashkm autotune: unknown option '%s'\n%s", a, usage_autotune);
      return FKM_EXIT_USAGE;
    } else if (!config) {
      config = a;
    } else {
      fprintf(stderr, "flashkm autotune: more than one CONFIG ('%s' and '%s')\n", config, a);
      return FKM_EXIT_USAGE;
    }
  }
  if (!config == !from) {
    fprintf(stderr, "flashkm autotune: give either CONFIG or --from RESULTS\n%s", usage_autotune);
    return FKM_EXIT_USAGE;
  }
  if (from && results) {
    fprintf(stderr, "flashkm autotune: --results goes with CONFIG, not with --from\n");
    return FKM_EXIT_USAGE;
  }
  if (!cache) cache = fkm_autotune_cache_path();
  if (!cache[0]) {
    fprintf(stderr, "flashkm autotune: no cache file: FKM_AUTOTUNE_CACHE is off and --cache not given\n");
    return FKM_EXIT_USAGE;
  }
  int rc = FKM_EXIT_OK;
  char results_buf[1200];
  if (config) {
    fkm_config cfg;
    if (fkm_config_load(config, &cfg) != FKM_OK) {
      fprintf(stderr, "flashkm: %s\n", fkm_last_error());
      return FKM_EXIT_USAGE;
    }
    if (!results) {
      snprintf(results_buf, sizeof results_buf, "flashkm_autotune_%s.json", cfg.name);
      results = results_buf;
    }
    fkm_config_free(&cfg);
    fkm_run_opts o = {0};
    o.config_path = config;
    o.out_path = results;
    o.filter = "assign/flash_*";
    o.quiet = quiet;
    o.argc = full_argc;
    o.argv = full_argv;
    rc = fkm_run_command(&o);
    if (rc == FKM_EXIT_USAGE || rc == FKM_EXIT_ABORTED) return rc;
    from = results;
  }
  int n = 0;
  fkm_status st = fkm_autotune_update_cache(from, cache, &n);
  if (st != FKM_OK) {
    fprintf(stderr, "flashkm autotune: %s\n", fkm_last_error());
    return st == FKM_ERR_INPUT ? FKM_EXIT_USAGE : FKM_EXIT_ABORTED;
  }
  fprintf(stderr, "flashkm autotune: %d shape bucket(s) from %s written to %s\n", n, from, cache);
  if (n == 0) {
    fprintf(stderr, "flashkm autotune: %s holds no validated assign/flash_* run to learn from\n", from);
    return FKM_EXIT_USAGE;
  }
  return rc;
}

static const char *usage_fit =
    "usage: flashkm fit --input X.npy --k K [--init random|kmeans++|kmeans||] [--tol T] [--tol-mode shift|inertia]\n"
    "                   [--max-iter M] [--seed S] [--dtype fp16|bf16|fp32] [--labels L.npy] [--centroids C.npy]\n"
    "                   [--assign VARIANT] [--update VARIANT] [--chunk-points N] [-q]\n"
    "\n"
    "Clusters the rows of X (float16 or float32, shape (N, D), or (B, N, D) for B independent problems)\n"
    "into K clusters with Lloyd's algorithm on the GPU (FlashAssign + sort-inverse update). Writes labels\n"
    "(int32, (N,) or (B, N)) and centroids (float32, (K, D) or (B, K, D)), prints a JSON summary\n"
    "(iterations, inertia per iteration, time) on stdout and one progress line per iteration on stderr.\n"
    "\n"
    "  --init        random distinct points (default), kmeans++ (greedy D² sampling; K passes over the\n"
    "                data, slow for large N·K) or kmeans|| (5 oversampled rounds on tensor cores, then\n"
    "                k-means++ on the candidates; for large K, plain D² sampling there)\n"
    "  --tol         stop when the largest centroid shift (absolute; default) or, with --tol-mode inertia,\n"
    "                the relative change of inertia is at most T (default 1e-4)\n"
    "  --max-iter    at most M iterations (default 300)\n"
    "  --seed        same seed, same result (default 1)\n"
    "  --dtype       compute on the data rounded to this type (default: the file's)\n"
    "  --assign, --update   variants to use (default assign/flash, update/sort_inverse_det)\n"
    "  --chunk-points   stream the data from host memory in chunks of N points (copies overlapped\n"
    "                with compute); default: only when the data do not fit in GPU memory\n"
    "\n"
    "exit status: 0 done (converged or max-iter reached), 1 failed on the GPU (none, out of memory),\n"
    "2 bad arguments or input file.\n";

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t *out) {
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || v < lo) {
    fprintf(stderr, "flashkm fit: %s expects an integer >= %lld, got '%s'\n", opt, (long long)lo, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int cmd_fit(int argc, char **argv) {
  if (wants_help(argc, argv)) {
    fputs(usage_fit, stdout);
    return 0;
  }
  fkm_fit_options o;
  fkm_fit_defaults(&o);
  const char *input = NULL, *labels_path = NULL, *centroids_path = NULL, *dtype_name = NULL;
  int64_t k = 0, v;
  o.progress = 1;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      o.progress = 0;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "flashkm fit: %s needs a value\n%s", a, a[0] == '-' ? "" : usage_fit);
      return FKM_EXIT_USAGE;
    }
    const char *val = argv[++i];
    if (!strcmp(a, "--input")) input = val;
    else if (!strcmp(a, "--labels")) labels_path = val;
    else if (!strcmp(a, "--centroids")) centroids_path = val;
    else if (!strcmp(a, "--dtype")) dtype_name = val;
    else if (!strcmp(a, "--assign")) o.assign_variant = val;
    else if (!strcmp(a, "--update")) o.update_variant = val;
    else if (!strcmp(a, "--k")) { if (parse_i64(a, val, 1, &k)) return FKM_EXIT_USAGE; }
    else if (!strcmp(a, "--max-iter")) { if (parse_i64(a, val, 1, &v) || v > 1000000) return FKM_EXIT_USAGE; o.max_iter = (int)v; }
    else if (!strcmp(a, "--seed")) { if (parse_i64(a, val, 0, &v)) return FKM_EXIT_USAGE; o.seed = (uint64_t)v; }
    else if (!strcmp(a, "--chunk-points")) { if (parse_i64(a, val, 0, &v)) return FKM_EXIT_USAGE; o.chunk_points = v; }
    else if (!strcmp(a, "--tol")) {
      char *end = NULL;
      o.tol = strtod(val, &end);
      if (!*val || *end || !(o.tol >= 0)) {
        fprintf(stderr, "flashkm fit: --tol expects a number >= 0, got '%s'\n", val);
        return FKM_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--tol-mode")) {
      if (!strcmp(val, "shift")) o.tol_mode = FKM_TOL_SHIFT;
      else if (!strcmp(val, "inertia")) o.tol_mode = FKM_TOL_INERTIA;
      else { fprintf(stderr, "flashkm fit: --tol-mode is shift or inertia, got '%s'\n", val); return FKM_EXIT_USAGE; }
    } else if (!strcmp(a, "--init")) {
      if (fkm_init_from_name(val, &o.init) != 0) {
        fprintf(stderr, "flashkm fit: --init is random, kmeans++ or kmeans||, got '%s'\n", val);
        return FKM_EXIT_USAGE;
      }
    } else {
      fprintf(stderr, "flashkm fit: unknown option '%s'\n%s", a, usage_fit);
      return FKM_EXIT_USAGE;
    }
  }
  if (!input || !k) {
    fprintf(stderr, "flashkm fit: --input and --k are required\n%s", usage_fit);
    return FKM_EXIT_USAGE;
  }
  fkm_npy_header h;
  if (fkm_npy_read_header(input, &h) != FKM_OK) {
    fprintf(stderr, "flashkm fit: %s\n", fkm_last_error());
    return FKM_EXIT_USAGE;
  }
  if (h.type == FKM_NPY_I32) {
    fprintf(stderr, "flashkm fit: %s holds int32 values: the points must be float16 or float32\n", input);
    return FKM_EXIT_USAGE;
  }
  o.B = h.ndim == 3 ? h.shape[0] : 1;
  o.N = h.shape[h.ndim - 2];
  o.D = h.shape[h.ndim - 1];
  o.K = k;
  o.dtype = h.type == FKM_NPY_F16 ? FKM_F16 : FKM_F32;
  if (dtype_name && fkm_dtype_from_name(dtype_name, &o.dtype) != 0) {
    fprintf(stderr, "flashkm fit: --dtype is fp16, bf16 or fp32, got '%s'\n", dtype_name);
    return FKM_EXIT_USAGE;
  }
  if (k > o.N) {
    fprintf(stderr, "flashkm fit: --k %lld exceeds the %lld points of %s\n", (long long)k, (long long)o.N, input);
    return FKM_EXIT_USAGE;
  }
  const size_t nx = (size_t)(o.B * o.N * o.D);
  /* The points mapped from the file when no conversion is needed (no second copy in host
   * memory: a file larger than half of it can still be streamed), else read into memory. */
  fkm_npy_mapping map;
  void *x = NULL;
  const void *points = NULL;
  int rc = 0;
  const fkm_status ms = fkm_npy_map(input, (int64_t)nx, o.dtype, &map);
  if (ms == FKM_OK) {
    points = map.data;
  } else if (ms != FKM_ERR_NOT_SUPPORTED) {
    fprintf(stderr, "flashkm fit: %s\n", fkm_last_error());
    rc = ms == FKM_ERR_INPUT ? FKM_EXIT_USAGE : FKM_EXIT_FAILED;
  } else if (!(x = malloc(nx * fkm_dtype_size(o.dtype)))) {
    fprintf(stderr, "flashkm fit: cannot allocate %.2f GB of host memory for %s\n",
            (double)nx * (double)fkm_dtype_size(o.dtype) / 1e9, input);
    rc = FKM_EXIT_FAILED;
  } else if (fkm_npy_load(input, (int64_t)nx, o.dtype, x) != FKM_OK) {
    fprintf(stderr, "flashkm fit: %s\n", fkm_last_error());
    rc = FKM_EXIT_USAGE;
  } else {
    points = x;
  }
  int32_t *labels = rc ? NULL : malloc(sizeof(int32_t) * (size_t)(o.B * o.N));
  float *cent = rc ? NULL : malloc(sizeof(float) * (size_t)(o.B * o.K * o.D));
  if (!rc && (!labels || !cent)) {
    fprintf(stderr, "flashkm fit: cannot allocate host memory for the labels and centroids of %s\n", input);
    rc = FKM_EXIT_FAILED;
  }
  fkm_fit_result r;
  memset(&r, 0, sizeof r);
  if (!rc) {
    fkm_status st = fkm_fit(&o, points, labels, cent, &r);
    if (st != FKM_OK) {
      fprintf(stderr, "flashkm fit: %s\n", fkm_last_error());
      rc = st == FKM_ERR_INPUT ? FKM_EXIT_USAGE : FKM_EXIT_FAILED;
    }
  }
  if (!rc && labels_path) {
    int64_t shape[2] = {o.B, o.N};
    if (fkm_npy_write(labels_path, FKM_NPY_I32, o.B > 1 ? 2 : 1, o.B > 1 ? shape : shape + 1, labels) != FKM_OK) {
      fprintf(stderr, "flashkm fit: %s\n", fkm_last_error());
      rc = FKM_EXIT_FAILED;
    }
  }
  if (!rc && centroids_path) {
    int64_t shape[3] = {o.B, o.K, o.D};
    if (fkm_npy_write(centroids_path, FKM_NPY_F32, o.B > 1 ? 3 : 2, o.B > 1 ? shape : shape + 1, cent) != FKM_OK) {
      fprintf(stderr, "flashkm fit: %s\n", fkm_last_error());
      rc = FKM_EXIT_FAILED;
    }
  }
  if (!rc) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "input", input);
    cJSON_AddNumberToObject(j, "B", (double)o.B);
    cJSON_AddNumberToObject(j, "N", (double)o.N);
    cJSON_AddNumberToObject(j, "D", (double)o.D);
    cJSON_AddNumberToObject(j, "K", (double)o.K);
    cJSON_AddStringToObject(j, "dtype", fkm_dtype_name(o.dtype));
    cJSON_AddStringToObject(j, "init", fkm_init_name(o.init));
    cJSON_AddNumberToObject(j, "seed", (double)o.seed);
    cJSON_AddNumberToObject(j, "iterations", r.iterations);
    cJSON_AddBoolToObject(j, "converged", r.converged);
    cJSON_AddNumberToObject(j, "inertia", r.inertia);
    cJSON_AddNumberToObject(j, "seconds", r.seconds);
    cJSON_AddNumberToObject(j, "init_seconds", r.init_seconds);
    cJSON_AddItemToObject(j, "inertia_history", cJSON_CreateDoubleArray(r.inertia_history, r.history_len));
    cJSON_AddItemToObject(j, "shift_history", cJSON_CreateDoubleArray(r.shift_history, r.history_len));
    cJSON_AddBoolToObject(j, "streamed", r.streamed);
    if (r.streamed) {
      cJSON *st = cJSON_AddObjectToObject(j, "stream");
      cJSON_AddNumberToObject(st, "chunk_points", (double)r.chunk_points_used);
      cJSON_AddNumberToObject(st, "chunks", r.stream_chunks);
      cJSON_AddNumberToObject(st, "slots", r.stream_slots);
      cJSON_AddBoolToObject(st, "staged", r.stream_staged);
      cJSON_AddNumberToObject(st, "h2d_bytes_per_iteration", r.history_len ? (double)r.stream_h2d_bytes[0] : 0);
      cJSON_AddNumberToObject(st, "copy_seconds_alone", r.history_len ? r.stream_copy_seconds[0] : 0);
      cJSON_AddNumberToObject(st, "compute_seconds_alone", r.history_len ? r.stream_compute_seconds[0] : 0);
      cJSON_AddItemToObject(st, "iteration_seconds", cJSON_CreateDoubleArray(r.stream_iter_seconds, r.history_len));
      cJSON_AddItemToObject(st, "overlap_efficiency", cJSON_CreateDoubleArray(r.stream_efficiency, r.history_len));
      if (r.history_len && r.stream_copy_seconds[0] > 0)
        cJSON_AddNumberToObject(st, "h2d_gbps", (double)r.stream_h2d_bytes[0] / r.stream_copy_seconds[0] / 1e9);
    }
    char *text = cJSON_PrintUnformatted(j);
    puts(text ? text : "{}");
    free(text);
    cJSON_Delete(j);
  }
  fkm_fit_result_free(&r);
  fkm_npy_unmap(&map);
  free(x);
  free(labels);
  free(cent);
  return rc;
}

static const char *usage_gen =
    "usage: flashkm gen --n N --d D --k K [--b B] [--data blobs|normal|uniform|skewed] [--dtype fp16|bf16|fp32]\n"
    "                   [--seed S] -o X.npy [--labels L.npy] [--centres C.npy]\n"
    "\n"
    "Writes the same seeded data `flashkm run` generates (bit for bit, on a GPU or on the CPU):\n"
    "points (N, D) or (B, N, D) as float16/float32 (bf16 is written as float32 holding the bf16\n"
    "values), each point's generating cluster as int32 (--labels), and for blobs/skewed the known\n"
    "centres as float32 (--centres).\n";

/* A generated array as fkm_npy_write_from's source: in GPU or host memory, elements of
 * `elem` bytes; bf16 is widened to float32 (.npy has no bf16) through a staging buffer. */
typedef struct {
  const void *data;
  size_t elem;
  int on_gpu, widen_bf16;
  void *tmp;
} gen_source;

static fkm_status gen_fill(void *ctx, int64_t first, int64_t n, void *dst) {
  gen_source *g = ctx;
  const unsigned char *from = (const unsigned char *)g->data + (size_t)first * g->elem;
  void *to = dst;
  if (g->widen_bf16) {
    if (!g->tmp && !(g->tmp = malloc((size_t)n * g->elem))) return fkm_fail(FKM_ERR_OOM, "gen: out of host memory");
    to = g->tmp;
  }
  if (g->on_gpu) {
    cudaError_t e = cudaMemcpy(to, from, (size_t)n * g->elem, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return fkm_cuda_fail_at(e, "cudaMemcpy(generated data to host)", __FILE__, __LINE__);
  } else {
    memcpy(to, from, (size_t)n * g->elem);
  }
  if (g->widen_bf16)
    for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = fkm_load_as_f32(g->tmp, FKM_BF16, i);
  return FKM_OK;
}

static int cmd_gen(int argc, char **argv) {
  if (wants_help(argc, argv)) {
    fputs(usage_gen, stdout);
    return 0;
  }
  int64_t B = 1, N = 0, D = 0, K = 0, v;
  uint64_t seed = 1;
  fkm_dtype dtype = FKM_F16;
  fkm_data_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.kind = FKM_DATA_BLOBS;
  const char *out = NULL, *labels_path = NULL, *centres_path = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "flashkm gen: %s needs a value\n", a);
      return FKM_EXIT_USAGE;
    }
    const char *val = argv[++i];
    if (!strcmp(a, "--n")) { if (parse_i64(a, val, 1, &N)) return FKM_EXIT_USAGE; }
    else if (!strcmp(a, "--d")) { if (parse_i64(a, val, 1, &D)) return FKM_EXIT_USAGE; }
    else if (!strcmp(a, "--k")) { if (parse_i64(a, val, 1, &K)) return FKM_EXIT_USAGE; }
    else if (!strcmp(a, "--b")) { if (parse_i64(a, val, 1, &B)) return FKM_EXIT_USAGE; }
    else if (!strcmp(a, "--seed")) { if (parse_i64(a, val, 0, &v)) return FKM_EXIT_USAGE; seed = (uint64_t)v; }
    else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = val;
    else if (!strcmp(a, "--labels")) labels_path = val;
    else if (!strcmp(a, "--centres")) centres_path = val;
    else if (!strcmp(a, "--dtype")) {
      if (fkm_dtype_from_name(val, &dtype) != 0) {
        fprintf(stderr, "flashkm gen: --dtype is fp16, bf16 or fp32, got '%s'\n", val);
        return FKM_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--data")) {
      if (fkm_data_kind_from_name(val, &spec.kind) != 0) {
        fprintf(stderr, "flashkm gen: --data is blobs, normal, uniform or skewed, got '%s'\n", val);
        return FKM_EXIT_USAGE;
      }
    } else {
      fprintf(stderr, "flashkm gen: unknown option '%s'\n%s", a, usage_gen);
      return FKM_EXIT_USAGE;
    }
  }
  if (!N || !D || !K || !out) {
    fprintf(stderr, "flashkm gen: --n, --d, --k and -o are required\n%s", usage_gen);
    return FKM_EXIT_USAGE;
  }
  if (K > N) {
    fprintf(stderr, "flashkm gen: --k %lld exceeds --n %lld\n", (long long)K, (long long)N);
    return FKM_EXIT_USAGE;
  }
  if (B * N >= ((int64_t)1 << 31) || D >= ((int64_t)1 << 20)) {
    fprintf(stderr, "flashkm gen: B*N must be below 2^31 and D below 2^20\n");
    return FKM_EXIT_USAGE;
  }
  const fkm_shape shape = {B, N, K, D, dtype};
  fkm_device dev;
  fkm_device_query(&dev);
  /* With a GPU the data are generated there and written out a slice at a time (never
   * whole in host memory: a file larger than half of it can be made); else on the host. */
  fkm_dataset h, d;
  memset(&h, 0, sizeof h);
  memset(&d, 0, sizeof d);
  const int on_gpu = dev.present;
  fkm_status st = on_gpu ? fkm_data_make_device(&shape, &spec, seed, &d) : fkm_data_make_host(&shape, &spec, seed, &h);
  if (st != FKM_OK) {
    fprintf(stderr, "flashkm gen: %s\n", fkm_last_error());
    return FKM_EXIT_FAILED;
  }
  const fkm_dataset *src = on_gpu ? &d : &h;
  int rc = 0;
  const int64_t shape_x[3] = {B, N, D}, shape_l[2] = {B, N}, shape_c[3] = {B, K, D};
  const int nd = B > 1 ? 3 : 2, off = B > 1 ? 0 : 1;
  fkm_npy_type tx = dtype == FKM_F16 ? FKM_NPY_F16 : FKM_NPY_F32;
  gen_source xs = {src->x, fkm_dtype_size(dtype), on_gpu, dtype == FKM_BF16, NULL};
  if (fkm_npy_write_from(out, tx, nd, shape_x + off, gen_fill, &xs) != FKM_OK) rc = FKM_EXIT_FAILED;
  free(xs.tmp);
  gen_source ls = {src->labels, sizeof(int32_t), on_gpu, 0, NULL};
  if (!rc && labels_path && fkm_npy_write_from(labels_path, FKM_NPY_I32, nd - 1, shape_l + off, gen_fill, &ls) != FKM_OK)
    rc = FKM_EXIT_FAILED;
  if (!rc && centres_path) {
    if (spec.kind != FKM_DATA_BLOBS && spec.kind != FKM_DATA_SKEWED) {
      fprintf(stderr, "flashkm gen: --centres exist for blobs and skewed data only\n");
      rc = FKM_EXIT_USAGE;
    } else {
      float *c = malloc(sizeof(float) * (size_t)(B * K * D));
      if (!c) {
        fprintf(stderr, "flashkm gen: out of host memory\n");
        rc = FKM_EXIT_FAILED;
      } else {
        for (int64_t b = 0; b < B; b++)
          for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < D; j++) c[(b * K + k) * D + j] = fkm_gen_centre(seed, b, k, j, K, D);
        if (fkm_npy_write(centres_path, FKM_NPY_F32, nd, shape_c + off, c) != FKM_OK) rc = FKM_EXIT_FAILED;
        free(c);
      }
    }
  }
  if (rc == FKM_EXIT_FAILED && fkm_last_error()[0]) fprintf(stderr, "flashkm gen: %s\n", fkm_last_error());
  fkm_data_free(on_gpu ? &d : &h);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage_main, stderr);
    return FKM_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage_main, stdout);
    return 0;
  }
  if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2, argc, argv);
  if (!strcmp(cmd, "list")) return cmd_list(argc - 2, argv + 2);
  if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
  if (!strcmp(cmd, "fit")) return cmd_fit(argc - 2, argv + 2);
  if (!strcmp(cmd, "gen")) return cmd_gen(argc - 2, argv + 2);
  if (!strcmp(cmd, "autotune")) return cmd_autotune(argc - 2, argv + 2, argc, argv);
  if (!strcmp(cmd, "dist")) return fkm_dist_command(argc - 2, argv + 2, argc, argv);
  fprintf(stderr, "flashkm: unknown command '%s'\n\n%s", cmd, usage_main);
  return FKM_EXIT_USAGE;
}
