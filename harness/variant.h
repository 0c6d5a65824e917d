/* variant.h — the variant registry: the single table of everything that can run.
 *
 * A variant is one implementation of one op (assign, update, ...). Adding one
 * is one file defining a `const fkm_variant` plus one line in registry.c.
 * The harness owns all input/output buffers (device memory for GPU variants,
 * host memory for CPU variants); a variant owns only its scratch, allocated in
 * setup() (untimed) and freed in teardown(). run() is what gets timed: it must
 * not allocate, must not synchronise the host, and must write every output
 * element it is responsible for. */
#ifndef FKM_VARIANT_H
#define FKM_VARIANT_H

#include "flashkm.h"
#include "device.h"
#include "validate.h"
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The buffers of one problem. Pointers are device pointers for GPU variants
 * and host pointers for CPU variants (min_cc == 0).
 *   assign: in  x [B][N][D] dtype, c [B][K][D] dtype
 *           out labels [B][N] int32 (nearest centroid; ties to the lowest index)
 *               dist [B][N] fp32 (squared Euclidean distance to it)
 *   update: in  x, labels (each in [0, K)), c_old [B][K][D] fp32
 *           out c_new [B][K][D] fp32 (mean of the cluster's points; an empty
 *               cluster keeps c_old), counts [B][K] int32
 *   lloyd:  one iteration: assign with c, update from c_old; all outputs
 *   fit:    in  x; out labels, dist, counts of the final assignment and the
 *               final centroids in c_new; fit_result. A fit synchronises the
 *               host once per iteration (its convergence test). */
typedef struct {
  fkm_shape s;
  const void *x;
  const void *c;
  int32_t *labels;
  float *dist;
  const int32_t *labels_in;
  const float *c_old;
  float *c_new;
  int32_t *counts;
  size_t scratch_budget; /* bytes of device scratch a variant may allocate in setup */
  /* Variants with phases (fkm_variant.phases): when not NULL, run() records
   * phase_marks[i] on the stream as phase i ends (fkm_phase_end), so the
   * runner can time each phase. NULL in timed samples. */
  cudaEvent_t *phase_marks;
  /* op fit only: the fit's settings (tol, max_iter, init, seed; the shape is
   * s) and where run() leaves iterations, inertia and histories (host). */
  const fkm_fit_options *fit_opts;
  fkm_fit_result *fit_result;
} fkm_problem;

typedef struct fkm_variant {
  const char *name;    /* "op/idea", e.g. "assign/cublas_gemm" */
  fkm_op op;
  const char *summary; /* one line: the idea, and what it improves on */
  int min_cc;          /* minimum compute capability x10 (80 = sm_80); 0 = CPU variant */
  int max_cc;          /* maximum compute capability x10 it runs on; 0 = no limit */
  /* Can it run this shape on this device? FKM_OK or FKM_ERR_NOT_SUPPORTED with
   * the reason in `why`. May be NULL (supports everything). */
  fkm_status (*supports)(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len);
  /* Untimed: allocate scratch, create handles. *state may stay NULL. May be NULL. */
  fkm_status (*setup)(const fkm_problem *p, void **state);
  /* Timed: enqueue the work on `stream` (ignored by CPU variants). */
  fkm_status (*run)(const fkm_problem *p, void *state, cudaStream_t stream);
  /* Frees what setup allocated; safe on NULL state. May be NULL. */
  void (*teardown)(void *state);
  /* Optional: what ran, for variants that delegate (the dispatcher names its
   * choice). Recorded in the results row as "impl". May be NULL. */
  const char *(*describe)(void *state);
  /* Optional, untimed, after a run: reports input errors the kernels detected
   * without stopping (labels outside [0, K)) as FKM_ERR_INPUT naming the first
   * offending point. Synchronises the stream. May be NULL. */
  fkm_status (*check_input)(const fkm_problem *p, void *state, cudaStream_t stream);
  /* Optional: the phases run() goes through, in order, NULL-terminated (e.g.
   * {"sort", "reduce", NULL}). run() wraps each in fkm_phase_begin/end (an
   * NVTX range of that name; an event when p->phase_marks is set) and the
   * results row gets each phase's median time. May be NULL. */
  const char *const *phases;
  /* Nonzero: runs as one process per GPU through `flashkm dist` (the
   * experiment's "gpus"); the runner starts it and takes its rows; setup/run
   * are NULL. */
  int multi_gpu;
  /* How it multiplies (validate.h): FKM_COMPUTE_EXACT (0, the default) or
   * FKM_COMPUTE_TF32 (fp32 inputs rounded to tf32 on the tensor cores). Sets
   * the assignment's validation tolerance; the results row names it. */
  fkm_compute compute;
} fkm_variant;

int fkm_variant_count(void);
const fkm_variant *fkm_variant_at(int i);
const fkm_variant *fkm_variant_find(const char *name);
static inline int fkm_variant_is_cpu(const fkm_variant *v) { return v->min_cc == 0; }

#ifdef __cplusplus
}
#endif
#endif
