/* info.h — the descriptions every results file starts with (meta, device) and
 * the `flashkm info` document (device and build). */
#ifndef FKM_INFO_H
#define FKM_INFO_H

#include "config.h"
#include "device.h"
#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

cJSON *fkm_info_device(const fkm_device *dev);
cJSON *fkm_info_build(void);
/* argv, git sha and dirty flag of the source tree, config path/name/hash, build, UTC time, host. */
cJSON *fkm_info_meta(int argc, char **argv, const fkm_config *cfg, const char *filter);

#ifdef __cplusplus
}
#endif
#endif
