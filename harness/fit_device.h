/* fit_device.h — Lloyd's algorithm on points already in GPU memory: the loop
 * behind fkm_fit's in-memory path and the harness's `fit/...` variants, so
 * both time and validate the same code.
 *
 * Per iteration: centroids (fp32) rounded to the input dtype, assignment,
 * update, and one small device-to-host copy (inertia, largest shift) for the
 * convergence test: the only host round trip. After convergence a last
 * assignment (and update, for the counts) makes labels, distances, counts and
 * inertia consistent with the returned centroids. */
#ifndef FKM_FIT_DEVICE_H
#define FKM_FIT_DEVICE_H

#include "flashkm.h"
#include "lloyd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  void *c;          /* centroids in the input dtype, what the assignment reads */
  float *c_a, *c_b; /* fp32 centroids, current and next, swapped every iteration */
  fkm_lloyd *lloyd;
} fkm_fit_work;

/* base: shape, x (device, dtype), labels, dist (device, B*N), counts (B*K);
 * its c, c_old, c_new are ignored. Allocates the centroids and sets up the
 * assign and update variants named in o (defaults: assign/flash,
 * update/sort_inverse_det). */
fkm_status fkm_fit_work_create(const fkm_fit_options *o, const fkm_problem *base, fkm_fit_work *w);
void fkm_fit_work_free(fkm_fit_work *w);

/* Init, iterations to convergence or o->max_iter, final assignment, all on
 * `stream` (synchronised once per iteration). Frees and refills r's
 * histories; *c_final points at the returned centroids (device, fp32, one of
 * w's buffers). With base->phase_marks set, marks phases "init" (0) and
 * "iterations" (1, the final assignment included). */
fkm_status fkm_fit_device(const fkm_fit_options *o, const fkm_problem *base, fkm_fit_work *w, cudaStream_t stream,
                          fkm_fit_result *r, const float **c_final);

#ifdef __cplusplus
}
#endif
#endif
