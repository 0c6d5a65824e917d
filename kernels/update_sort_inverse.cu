/* update_sort_inverse.cu — update/sort_inverse: the Flash-KMeans sort-inverse
 * centroid update, fast flavour.
 *
 * Idea: instead of scattering every point's D values into its centroid with
 * float atomics (which serialise on big clusters), build the inverse mapping
 * (the rows of each cluster, contiguous) with a cheap counting sort on the
 * labels, then stream X once in that order: each block takes an equal slice
 * of the sorted order whatever the cluster sizes, keeps the running sum of the
 * current cluster in registers, and flushes it when the cluster changes. Only
 * runs cut by a slice boundary produce partials, combined by a second kernel.
 * Design, geometry and invariants: sort_inverse_common.cuh.
 *
 * Kernels per run (one stream, no host sync, no allocation), K + 1 <= 16384:
 *   si_cs_count              per-chunk bin counts -> tab[chunk][bin]; resets
 *                            bad, the scan's tile status and ticket
 *   si_cs_scan               bin-major exclusive scan of tab (single pass,
 *                            decoupled look-back): start of every (chunk, bin)
 *   si_cs_scatter<false>     counts, segment starts, the reduce teams' first
 *                            segments, sidx via shared-memory
 *                            atomic ranks inside the chunk
 *   sort_inverse_reduce      segment reduction over the sorted rows
 *   sort_inverse_finish      cross-block chains + empty clusters keep c_old
 * K + 1 > 16384 (or more than 8192 chunks of 65535 rows per problem): the
 * radix path of update/sort_inverse_det (init, histogram with keys, CUB
 * radix sort on ceil(log2 B*K) bits, segment starts from the sorted keys).
 *
 * v2 (this version) vs v1: v1 ran init + histogram + CUB scan (2 kernels) +
 * a scatter that re-counted each chunk, reserved ranges with global atomics
 * per (chunk, segment) and then wrote sidx AND sseg at scattered positions
 * (2 scattered 4-byte stores per point; ~48 us at 1M points, 65 us for the
 * whole sort). v2 has 3 kernels, no init, one scattered store per point
 * (sidx), and sseg written in position order. v3: no sseg at all (the
 * reduce walks the segment starts; 64 MB less traffic at 8M rows) and
 * 1024-thread scatter blocks (the staged scatter is latency-bound). Placement of each chunk's
 * range is fixed by the scan (no global atomics); only the order inside a
 * (chunk, cluster) range depends on shared-atomic timing, so this variant is
 * still not bitwise reproducible (update/sort_inverse_det is: it ranks rows in
 * row order, ~2x the scatter's work). Build with -DSI_FAST_STABLE=1 to make
 * this variant use the stable ranking too.
 * No float atomics are used at all: cross-block partials go to fixed slots.
 *
 * Bad labels (outside [0, K)): sorted to the end of their problem (bin K)
 * with row -1, which the reduce skips, and excluded from counts, so they
 * corrupt nothing; the first offending flat index b*N + n is atomicMin'ed
 * into the device int32 `bad` of the state (INT32_MAX when all labels are
 * valid), reset at the start of every run by the count kernel. */
#include "sort_inverse_common.cuh"

#ifndef SI_FAST_STABLE
#define SI_FAST_STABLE 0
#endif

namespace {

const char *const si_fast_name = "update/sort_inverse";

fkm_status si_fast_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  return si_supports(s, dev, why, why_len);
}

void si_fast_teardown(void *state) { si_state_free((SiState *)state); }

fkm_status si_fast_setup(const fkm_problem *p, void **state) {
  return si_state_setup<SI_FAST_STABLE != 0>(p, state, si_fast_name);
}

fkm_status si_fast_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_state_run<SI_FAST_STABLE != 0>(p, state, stream, si_fast_name);
}

fkm_status si_fast_check_input(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_state_check_input(p, state, stream);
}

} // namespace

extern "C" const fkm_variant fkm_update_sort_inverse = {
    /* .name = */ "update/sort_inverse",
    /* .op = */ FKM_OP_UPDATE,
    /* .summary = */
    "counting sort of labels into per-cluster row lists, then balanced segment reduction streaming X once "
    "(register running sums, 16-byte gathers); no per-point atomics, skew-proof",
    /* .min_cc = */ 70,
    /* .max_cc = */ 0,
    /* .supports = */ si_fast_supports,
    /* .setup = */ si_fast_setup,
    /* .run = */ si_fast_run,
    /* .teardown = */ si_fast_teardown,
    /* .describe = */ NULL,
    /* .check_input = */ si_fast_check_input,
    /* .phases = */ si_phases,
};
