/* info.c — see info.h. */
#include "info.h"

#include <cublas_v2.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FKM_VERSION
#define FKM_VERSION "unknown"
#endif
#ifndef FKM_BUILD_TYPE
#define FKM_BUILD_TYPE "unknown"
#endif
#ifndef FKM_CUDA_ARCHS
#define FKM_CUDA_ARCHS "unknown"
#endif
#ifndef FKM_SOURCE_DIR
#define FKM_SOURCE_DIR "."
#endif

cJSON *fkm_info_device(const fkm_device *d) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "present", d->present);
  if (!d->present) {
    cJSON_AddStringToObject(o, "reason", d->absent_reason);
    cJSON_AddNumberToObject(o, "runtime_version", d->runtime_version);
    return o;
  }
  char cc[16];
  snprintf(cc, sizeof cc, "%d.%d", d->cc / 10, d->cc % 10);
  cJSON_AddNumberToObject(o, "ordinal", d->ordinal);
  cJSON_AddStringToObject(o, "name", d->name);
  cJSON_AddStringToObject(o, "compute_capability", cc);
  cJSON_AddNumberToObject(o, "sm_count", d->sm_count);
  cJSON_AddNumberToObject(o, "l2_bytes", (double)d->l2_bytes);
  cJSON_AddNumberToObject(o, "memory_bytes", (double)d->global_mem_bytes);
  cJSON_AddNumberToObject(o, "smem_per_block_optin", (double)d->smem_per_block_optin);
  cJSON_AddNumberToObject(o, "smem_per_sm", (double)d->smem_per_sm);
  cJSON_AddNumberToObject(o, "sm_clock_mhz", d->clock_khz / 1000.0);
  cJSON_AddNumberToObject(o, "memory_clock_mhz", d->mem_clock_khz / 1000.0);
  cJSON_AddNumberToObject(o, "memory_bus_bits", d->mem_bus_bits);
  cJSON_AddNumberToObject(o, "driver_version", d->driver_version);
  cJSON_AddNumberToObject(o, "runtime_version", d->runtime_version);
  return o;
}

cJSON *fkm_info_build(void) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "version", FKM_VERSION);
  cJSON_AddStringToObject(o, "build_type", FKM_BUILD_TYPE);
  cJSON_AddStringToObject(o, "cuda_architectures", FKM_CUDA_ARCHS);
  char v[32];
  snprintf(v, sizeof v, "%d.%d", CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
  cJSON_AddStringToObject(o, "cuda_toolkit", v);
  snprintf(v, sizeof v, "%d.%d.%d", CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR, CUBLAS_VER_PATCH);
  cJSON_AddStringToObject(o, "cublas_headers", v);
  cJSON_AddStringToObject(o, "cjson", cJSON_Version());
  cJSON_AddStringToObject(o, "compiled", __DATE__ " " __TIME__);
  return o;
}

/* First line of a shell command's output, or "" when it fails. */
static void command_line(const char *cmd, char *buf, size_t n) {
  buf[0] = '\0';
  FILE *p = popen(cmd, "r");
  if (!p) return;
  if (!fgets(buf, (int)n, p)) buf[0] = '\0';
  pclose(p);
  buf[strcspn(buf, "\n")] = '\0';
}

cJSON *fkm_info_meta(int argc, char **argv, const fkm_config *cfg, const char *filter) {
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "argv");
  for (int i = 0; i < argc; i++) cJSON_AddItemToArray(a, cJSON_CreateString(argv[i]));
  char sha[128], dirty[16];
  command_line("git -C '" FKM_SOURCE_DIR "' rev-parse HEAD 2>/dev/null", sha, sizeof sha);
  command_line("git -C '" FKM_SOURCE_DIR "' status --porcelain --untracked-files=no 2>/dev/null | head -c 1 | wc -c", dirty,
               sizeof dirty);
  cJSON *g = cJSON_AddObjectToObject(o, "git");
  if (sha[0]) {
    cJSON_AddStringToObject(g, "sha", sha);
    cJSON_AddBoolToObject(g, "dirty", dirty[0] && dirty[0] != '0');
  } else {
    cJSON_AddNullToObject(g, "sha");
    cJSON_AddNullToObject(g, "dirty");
  }
  if (cfg) {
    cJSON *c = cJSON_AddObjectToObject(o, "config");
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)cfg->hash);
    cJSON_AddStringToObject(c, "path", cfg->path);
    cJSON_AddStringToObject(c, "name", cfg->name);
    cJSON_AddStringToObject(c, "description", cfg->description);
    cJSON_AddStringToObject(c, "fnv1a64", hash);
  } else {
    cJSON_AddNullToObject(o, "config"); /* a command without a config (flashkm dist) */
  }
  if (filter) cJSON_AddStringToObject(o, "filter", filter);
  else cJSON_AddNullToObject(o, "filter");
  cJSON_AddItemToObject(o, "build", fkm_info_build());
  char t[64];
  time_t now = time(NULL);
  strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  cJSON_AddStringToObject(o, "time_utc", t);
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  cJSON_AddStringToObject(o, "host", host);
  return o;
}
