/* update_sort_inverse_det.cu — update/sort_inverse_det: the sort-inverse
 * centroid update with bitwise run-to-run (and launch-to-launch) identical
 * results on a given GPU. Same reduction as update/sort_inverse (see
 * sort_inverse_common.cuh); only the ranking inside the sort differs.
 *
 * Kernels per run (one stream, no host sync, no allocation), K + 1 <= 8193
 * (and at least 4 warps' 16-bit counters fit in shared memory):
 *   si_cs_count              per-chunk bin counts -> tab[chunk][bin] (integer
 *                            atomics); resets bad, scan status and ticket
 *   si_cs_scan               bin-major exclusive scan of tab (single pass,
 *                            decoupled look-back; integer sums)
 *   si_cs_scatter<true>      stable counting sort: each warp ranks its
 *                            contiguous sub-chunk in row order (match_any +
 *                            per-warp 16-bit counters); counts; segment
 *                            starts; the reduce teams' first segments
 *   sort_inverse_reduce      segment reduction over the sorted rows
 *   sort_inverse_finish      cross-block chains (fixed order) + empty clusters
 * Larger K (radix path):
 *   sort_inverse_init        counts = 0, bad = INT32_MAX
 *   sort_inverse_histogram   counts[b*K + k] (integer atomics), and the radix
 *                            keys/values: key = b*K + k, value = flat row
 *                            (a bad label: key 0, value -1)
 *   cub DeviceRadixSort      stable LSD radix sort of (key, value) on bits
 *                            [0, ceil(log2(B*K))) only
 *   si_radix_starts          segment starts and the reduce teams' first
 *                            segments from the sorted keys
 *   sort_inverse_reduce, sort_inverse_finish as above.
 *
 * Why it is deterministic:
 *   - both sorts put each cluster's rows in increasing row order whatever the
 *     thread timing: the counting sort places chunk ranges by an integer scan
 *     (a fixed function of the labels) and ranks inside a chunk in row order
 *     (warp w's sub-chunk before warp w+1's, lanes in order inside a step, no
 *     atomics in the ranking); the radix sort is stable. Counts are integer
 *     sums (exact, order-free);
 *   - the block slices (nb blocks of L rows) and team ranges are a function of
 *     the shape, the dtype path and the device's SM count / occupancy only,
 *     and the 16-byte vs scalar path is a function of D and buffer alignment;
 *   - every float sum is a fixed sequence of fp32 additions: rows in sorted
 *     order inside a team, team pieces in team order inside a block, block
 *     pieces in the fixed warp-strided order + warp order of the finish kernel;
 *     means are IEEE divisions sum / count;
 *   - no float atomics anywhere, and partials live in fixed slots
 *     (part[block][H|T]), never accumulated in place.
 *
 * v2 (this version) vs v1: v1 always used the radix path (init, histogram,
 * CUB radix histogram + exclusive sum + 2 onesweep passes: ~60 us at 1M
 * points, K = 1024). The counting sort needs a per-chunk x per-bin table
 * (B*P x (K+1) ints, P ~ 2 chunks per SM, >= 4 rows per bin per chunk) and
 * per-warp 16-bit counters (2*(K+1) bytes per warp of shared memory), which
 * is why it stops at K + 1 = 8193; beyond, a radix sort's 256-bin digits
 * scale better. With all labels valid, the sorted rows and segments are
 * exactly v1's (segments in order, rows increasing inside each) and the
 * reduce is unchanged, so v2 gives v1's bits. With bad labels the valid rows
 * keep that order; the bad ones now sit at the end of their problem instead
 * of inside segment 0 of problem 0 (both skipped), which can move the reduce's
 * slice boundaries and so the rounding of a few sums.
 *
 * Bad labels (outside [0, K)) are skipped by the reduce (row -1) and excluded
 * from counts, so they corrupt nothing. The first offending flat index
 * b*N + n is atomicMin'ed into the device int32 `bad` of the state
 * (INT32_MAX when all labels are valid), reset at every run. */
#include "sort_inverse_common.cuh"

namespace {

const char *const si_det_name = "update/sort_inverse_det";

fkm_status si_det_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t why_len) {
  return si_supports(s, dev, why, why_len);
}

void si_det_teardown(void *state) { si_state_free((SiState *)state); }

fkm_status si_det_setup(const fkm_problem *p, void **state) { return si_state_setup<true>(p, state, si_det_name); }

fkm_status si_det_run(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_state_run<true>(p, state, stream, si_det_name);
}

fkm_status si_det_check_input(const fkm_problem *p, void *state, cudaStream_t stream) {
  return si_state_check_input(p, state, stream);
}

} // namespace

extern "C" const fkm_variant fkm_update_sort_inverse_det = {
    /* .name = */ "update/sort_inverse_det",
    /* .op = */ FKM_OP_UPDATE,
    /* .summary = */
    "sort_inverse with a stable counting sort (CUB radix sort on ceil(log2 BK) bits for large K) and "
    "fixed-slot, fixed-order partial combining: bitwise reproducible, no float atomics",
    /* .min_cc = */ 70,
    /* .max_cc = */ 0,
    /* .supports = */ si_det_supports,
    /* .setup = */ si_det_setup,
    /* .run = */ si_det_run,
    /* .teardown = */ si_det_teardown,
    /* .describe = */ NULL,
    /* .check_input = */ si_det_check_input,
    /* .phases = */ si_phases,
};
