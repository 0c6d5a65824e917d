/* registry.c — the one table of variants. A new variant: one file, one line here. */
#include "variant.h"

#include <string.h>

extern const fkm_variant fkm_assign_cpu_ref;
extern const fkm_variant fkm_update_cpu_ref;
extern const fkm_variant fkm_assign_naive;
extern const fkm_variant fkm_assign_cublas_gemm;
extern const fkm_variant fkm_update_atomic_scatter;
extern const fkm_variant fkm_assign_flash_simt;
extern const fkm_variant fkm_assign_flash_mma;
extern const fkm_variant fkm_assign_flash_mma_v1;
extern const fkm_variant fkm_assign_flash_wgmma;
extern const fkm_variant fkm_assign_flash_wgmma_bm256;
extern const fkm_variant fkm_assign_flash_wgmma_pp;
extern const fkm_variant fkm_assign_flash_wgmma_pp3;
extern const fkm_variant fkm_assign_flash_wgmma_pp_fold;
extern const fkm_variant fkm_assign_flash_tf32;
extern const fkm_variant fkm_assign_flash;
extern const fkm_variant fkm_update_sort_inverse;
extern const fkm_variant fkm_update_sort_inverse_det;
extern const fkm_variant fkm_update_fixed_point;
extern const fkm_variant fkm_lloyd_naive_atomic;
extern const fkm_variant fkm_lloyd_cublas_atomic;
extern const fkm_variant fkm_lloyd_flash;
extern const fkm_variant fkm_fit_naive_atomic;
extern const fkm_variant fkm_fit_cublas_atomic;
extern const fkm_variant fkm_fit_flash;
extern const fkm_variant fkm_lloyd_flash_nccl;
extern const fkm_variant fkm_fit_flash_nccl;

/* CPU reference, baselines, the paper's kernels, compositions. */
static const fkm_variant *const registry[] = {
    &fkm_assign_cpu_ref,
    &fkm_update_cpu_ref,
    &fkm_assign_naive,
    &fkm_assign_cublas_gemm,
    &fkm_update_atomic_scatter,
    &fkm_assign_flash_simt,
    &fkm_assign_flash_mma,
    &fkm_assign_flash_mma_v1,
    &fkm_assign_flash_wgmma,
    &fkm_assign_flash_wgmma_bm256,
    &fkm_assign_flash_wgmma_pp,
    &fkm_assign_flash_wgmma_pp3,
    &fkm_assign_flash_wgmma_pp_fold,
    &fkm_assign_flash_tf32,
    &fkm_assign_flash,
    &fkm_update_sort_inverse,
    &fkm_update_sort_inverse_det,
    &fkm_update_fixed_point,
    &fkm_lloyd_naive_atomic,
    &fkm_lloyd_cublas_atomic,
    &fkm_lloyd_flash,
    &fkm_fit_naive_atomic,
    &fkm_fit_cublas_atomic,
    &fkm_fit_flash,
    &fkm_lloyd_flash_nccl,
    &fkm_fit_flash_nccl,
};

int fkm_variant_count(void) { return (int)(sizeof registry / sizeof registry[0]); }

const fkm_variant *fkm_variant_at(int i) { return (i >= 0 && i < fkm_variant_count()) ? registry[i] : NULL; }

const fkm_variant *fkm_variant_find(const char *name) {
  for (int i = 0; i < fkm_variant_count(); i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}
