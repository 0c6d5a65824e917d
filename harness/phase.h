/* phase.h — marking the phases of a variant's run (see fkm_variant.phases).
 *
 * A phase is an NVTX range in the "flashkm" domain, so Nsight Systems shows
 * it and Nsight Compute can be limited to it (--nvtx-include
 * "flashkm@sample/sort/"), and, when the runner asks for it (p->phase_marks),
 * an event recorded on the stream where the phase's work ends, from which the
 * runner times each phase. Timed samples run without the events. */
#ifndef FKM_PHASE_H
#define FKM_PHASE_H

#include "nvtx.h"
#include "variant.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline void fkm_phase_begin(const char *name) { fkm_nvtx_push(name); }

/* Ends phase `index` (its position in the variant's phases list). */
static inline void fkm_phase_end(const fkm_problem *p, int index, cudaStream_t stream) {
  fkm_nvtx_pop();
  if (p->phase_marks) (void)cudaEventRecord(p->phase_marks[index], stream);
}

static inline int fkm_phase_count(const fkm_variant *v) {
  int n = 0;
  if (v->phases)
    while (v->phases[n]) n++;
  return n;
}

#ifdef __cplusplus
}
#endif
#endif
