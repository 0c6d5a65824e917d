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

/* How a pass over the data is cut into chunks (internal; exposed for tests). */
typedef struct {
  int64_t b0, nb; /* batches [b0, b0 + nb) */
  int64_t n0, len; /* points [n0, n0 + len) of each */
  int inst;        /* 0: the full shape, 1: the shorter last chunk */
} fs_chunk;

typedef struct {
  int whole;       /* chunks are groups of whole batches, else ranges of one batch */
  int64_t per;     /* whole: batches per full chunk; ranges: chunks per batch */
  int64_t cap;     /* points of a full chunk */
  int64_t nchunks; /* chunks per pass */
  int ninst;       /* 1 or 2 problem shapes */
  fkm_shape shape[2];
} fs_plan;

/* The plan for chunks of cp points: cp >= N groups whole batches
 * (floor(cp / N) per chunk), else ranges of cp points within one batch. */
void fs_make_plan(const fkm_fit_options *o, int64_t cp, fs_plan *p);
/* Chunk c of the plan (0 <= c < p->nchunks). */
fs_chunk fs_chunk_of(const fs_plan *p, const fkm_fit_options *o, int64_t c);

/* Same contract as fkm_fit (options already checked, a GPU present, *r
 * zeroed). o->chunk_points > 0 fixes the chunk size, 0 sizes chunks from free
 * device memory. Fills the streaming fields of *r. */
fkm_status fkm_fit_stream(const fkm_fit_options *o, const void *x, int32_t *labels, float *centroids,
                          fkm_fit_result *r);

#ifdef __cplusplus
}
#endif
#endif
