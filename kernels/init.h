/* init.h — initial centroids on the GPU: random distinct points (the paper's
 * initialisation) and k-means++ (D² sampling), both a pure function of the seed. */
#ifndef FKM_INIT_H
#define FKM_INIT_H

#include "flashkm.h"
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes c32 [B][K][D] (fp32) from device points x [B][N][D] (dtype). */
fkm_status fkm_init_centroids(const fkm_shape *s, fkm_init how, uint64_t seed, const void *x, float *c32,
                              cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
