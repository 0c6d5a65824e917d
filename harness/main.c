/* main.c — the `flashkm` command line: run, list, info. The only place that
 * turns statuses into exit codes and prints to the user. */
#include "config.h"
#include "device.h"
#include "info.h"
#include "runner.h"
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
  fprintf(stderr, "flashkm: unknown command '%s'\n\n%s", cmd, usage_main);
  return FKM_EXIT_USAGE;
}
