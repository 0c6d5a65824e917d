/* autotune.h — the FlashAssign autotune cache: the fastest implementation
 * measured for a shape bucket on a device, used by `assign/flash` ahead of its
 * heuristic.
 *
 * `flashkm autotune CONFIG` times every `assign/flash_*` implementation on the
 * config's shapes (through the ordinary runner: validated, medians) and
 * writes the winners here. A bucket is (device name, compute capability,
 * dtype, D, floor(log2 K), floor(log2 B*N)); an entry is used only for a
 * shape in its bucket on the same device.
 *
 * Where: $FKM_AUTOTUNE_CACHE when set ("" or "off": no cache at all), else
 * $XDG_CACHE_HOME/flashkm/autotune.json, else ~/.cache/flashkm/autotune.json.
 * No file: the heuristic alone. A file that cannot be read or parsed is
 * reported once on stderr and ignored (a cache never stops a run). */
#ifndef FKM_AUTOTUNE_H
#define FKM_AUTOTUNE_H

#include "device.h"
#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The cache file in use; "" when disabled. */
const char *fkm_autotune_cache_path(void);

/* The implementation the cache names for s on dev, or NULL. Loads the cache
 * on first use. */
const char *fkm_autotune_lookup(const fkm_shape *s, const fkm_device *dev);

/* From a results file: for every assign shape, the fastest validated
 * `assign/flash_*` implementation (the dispatcher's own rows are not
 * candidates) becomes the entry of its bucket on the file's device, replacing
 * an older entry of the same bucket; entries of other buckets and devices are
 * kept. Writes the cache atomically (temporary file + rename), creating its
 * folder. *n_written: entries taken from this results file. */
fkm_status fkm_autotune_update_cache(const char *results_path, const char *cache_path, int *n_written);

/* Forget the loaded cache (the next lookup reads the file again). */
void fkm_autotune_reset(void);

#ifdef __cplusplus
}
#endif
#endif
