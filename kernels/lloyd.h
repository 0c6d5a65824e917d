/* lloyd.h — one Lloyd iteration built from an assign and an update variant:
 * assign (labels, distances) -> update (new centroids, counts) -> the
 * convergence scalars (inertia = sum of distances, largest centroid shift),
 * copied to pinned host memory as the iteration's only host transfer. Used by
 * the `lloyd/...` variants and by fkm_fit. */
#ifndef FKM_LLOYD_H
#define FKM_LLOYD_H

#include "variant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fkm_lloyd fkm_lloyd;

/* p must carry x, c (dtype), labels, dist, c_old, c_new, counts (device). */
fkm_status fkm_lloyd_create(const fkm_problem *p, const char *assign_variant, const char *update_variant,
                            fkm_lloyd **out);
/* Enqueues one iteration on stream: assign with p->c, update from p->c_old. */
fkm_status fkm_lloyd_iterate(fkm_lloyd *l, const fkm_problem *p, cudaStream_t stream);
/* After the stream is synchronised: the last iteration's inertia and largest
 * centroid shift (Euclidean, absolute) over all batches. */
void fkm_lloyd_scalars(const fkm_lloyd *l, double *inertia, double *max_shift);
const char *fkm_lloyd_describe(const fkm_lloyd *l);
/* Whether both variants exist in this build and run this shape on dev (the
 * reason in why when not). */
fkm_status fkm_lloyd_supports(const char *assign_variant, const char *update_variant, const fkm_shape *s,
                              const fkm_device *dev, char *why, size_t why_len);
void fkm_lloyd_destroy(fkm_lloyd *l);

/* c (dtype) = round(c32), count elements. */
fkm_status fkm_cast_centroids(const float *c32, void *c, int64_t count, fkm_dtype t, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
