/* results.h — the results file: one JSON document per invocation, rewritten
 * atomically (temporary file + rename) after every run, so a crash or a kill
 * mid-sweep loses no finished row and never leaves a half-written file. The
 * schema is documented in results/SCHEMA.md. */
#ifndef FKM_RESULTS_H
#define FKM_RESULTS_H

#include "flashkm.h"
#include "stats.h"
#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKM_RESULTS_SCHEMA_VERSION 1

typedef struct fkm_results fkm_results;

/* Takes ownership of meta and device; writes the file at once (runs: []). */
fkm_status fkm_results_open(const char *path, cJSON *meta, cJSON *device, fkm_results **out);
/* Takes ownership of ceilings. */
fkm_status fkm_results_set_ceilings(fkm_results *r, cJSON *ceilings);
/* Takes ownership of row; appends it and rewrites the file. */
fkm_status fkm_results_add_run(fkm_results *r, cJSON *row);
/* Records how the sweep ended ("complete", or "aborted" with a reason) and writes. */
fkm_status fkm_results_finish(fkm_results *r, const char *state, const char *reason);
void fkm_results_close(fkm_results *r);

/* Writes any cJSON document atomically to path. */
fkm_status fkm_json_write_atomic(const char *path, const cJSON *doc);

/* The `timing` object of a results row (results/SCHEMA.md): the summary of
 * `samples` samples in ms, after `warmup` untimed runs; `converged`: the
 * spread reached the noise target. */
/* flush_l2: the fkm_flush_mode the samples ran under (FKM_FLUSH_NONE: not flushed) */
cJSON *fkm_timing_json(const fkm_stats *st, int samples, int warmup, int flush_l2, const char *clock, int converged);

/* Reads and parses a JSON file into *out (the caller deletes it). FKM_ERR_IO
 * when the file cannot be read (errno is left as the failure set it, so a
 * caller can tell a missing file, ENOENT, from others), FKM_ERR_INPUT when it
 * is not JSON, FKM_ERR_OOM. */
fkm_status fkm_json_read(const char *path, cJSON **out);

#ifdef __cplusplus
}
#endif
#endif
