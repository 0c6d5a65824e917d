/* assign_flash.h — what the assign/flash dispatcher would run for a shape on a device,
 * without running it: the autotune cache's pick when it has one, else the shape
 * heuristic's (kernels/assign_flash.cu). Pure host code; a device can be described
 * rather than present (for tests and tools). */
#ifndef FKM_ASSIGN_FLASH_H
#define FKM_ASSIGN_FLASH_H

#include "device.h"
#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The implementation's variant name, or NULL when none supports the shape there. */
const char *fkm_assign_flash_choice(const fkm_shape *s, const fkm_device *dev);

#ifdef __cplusplus
}
#endif
#endif
