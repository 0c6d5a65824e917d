/* nvtx.c — the "flashkm" NVTX domain, created on first use. */
#include "nvtx.h"

nvtxDomainHandle_t fkm_nvtx_domain(void) {
  static nvtxDomainHandle_t domain = 0;
  if (!domain) domain = nvtxDomainCreateA("flashkm");
  return domain;
}
