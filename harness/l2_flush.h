/* l2_flush.h — empties the GPU's L2 cache before a timed sample, so every sample
 * starts cold: the inputs come from memory, as in a k-means loop over data far
 * larger than the cache.
 *
 * Two ways, chosen per config (measure.flush_l2):
 *   write: cudaMemsetAsync over twice the L2 size (nvbench's method). It leaves the
 *          L2 full of dirty lines, which the timed kernel then writes back as it
 *          evicts them: up to one L2 of extra DRAM writes charged to the kernel.
 *   clean: the same memset, then a read of another twice-L2 region, which writes
 *          those lines back before the timed events and leaves only clean lines. */
#ifndef FKM_L2_FLUSH_H
#define FKM_L2_FLUSH_H

#include "flashkm.h"
#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FKM_FLUSH_NONE = 0, FKM_FLUSH_WRITE = 1, FKM_FLUSH_CLEAN = 2 } fkm_flush_mode;

/* The buffer one flush needs on a device with l2_bytes of L2 (two regions of twice it). */
size_t fkm_l2_flush_bytes(size_t l2_bytes);

/* Enqueues one flush on s (nothing for FKM_FLUSH_NONE); buf holds fkm_l2_flush_bytes()
 * bytes; salt varies the memset byte between samples. */
fkm_status fkm_l2_flush(void *buf, size_t bytes, fkm_flush_mode mode, int salt, cudaStream_t s);

const char *fkm_flush_mode_name(fkm_flush_mode mode);

#ifdef __cplusplus
}
#endif
#endif
