/* fit_stream.h — the out-of-core path of fkm_fit: the points stay in host
 * memory and stream through a ring of device chunk buffers, the copy of one
 * chunk overlapping the assignment and partial update of the previous ones.
 * See fit_stream.c for the design. */
#ifndef FKM_FIT_STREAM_H
#define FKM_FIT_STREAM_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same contract as fkm_fit (options already checked, a GPU present, *r
 * zeroed). o->chunk_points > 0 fixes the chunk size, 0 sizes chunks from free
 * device memory. Fills the streaming fields of *r. */
fkm_status fkm_fit_stream(const fkm_fit_options *o, const void *x, int32_t *labels, float *centroids,
                          fkm_fit_result *r);

#ifdef __cplusplus
}
#endif
#endif
