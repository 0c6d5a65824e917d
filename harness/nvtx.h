/* nvtx.h — NVTX ranges in the "flashkm" domain, so Nsight Systems and
 * Nsight Compute (--nvtx --nvtx-include "flashkm@...") can pick out an
 * experiment, a variant, one sample or one phase of a kernel. */
#ifndef FKM_NVTX_H
#define FKM_NVTX_H

#include <nvtx3/nvToolsExt.h>

#ifdef __cplusplus
extern "C" {
#endif

nvtxDomainHandle_t fkm_nvtx_domain(void);

static inline void fkm_nvtx_push(const char *name) {
  nvtxEventAttributes_t a = {0};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name;
  nvtxDomainRangePushEx(fkm_nvtx_domain(), &a);
}

static inline void fkm_nvtx_pop(void) { nvtxDomainRangePop(fkm_nvtx_domain()); }

#ifdef __cplusplus
}
#endif
#endif
