/* runner.h — `flashkm run`: expand a config, run every case (validate, then
 * time), stream rows into the results file, report progress. */
#ifndef FKM_RUNNER_H
#define FKM_RUNNER_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *config_path;
  const char *out_path;   /* NULL: flashkm_<config name>.json in the current directory */
  const char *filter;     /* glob on variant names, or NULL */
  int dry_run, profile, quiet;
  int argc;
  char **argv;
} fkm_run_opts;

/* Exit codes of `flashkm run`. */
enum {
  FKM_EXIT_OK = 0,        /* every run ok, not_supported or out_of_memory */
  FKM_EXIT_FAILED = 1,    /* some run was incorrect or failed with an error */
  FKM_EXIT_USAGE = 2,     /* bad command line or config: nothing ran */
  FKM_EXIT_ABORTED = 3    /* the sweep stopped early (sticky CUDA error, results not writable) */
};

int fkm_run_command(const fkm_run_opts *o);

#ifdef __cplusplus
}
#endif
#endif
