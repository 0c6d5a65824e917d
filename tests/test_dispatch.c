/* test_dispatch.c — the assign/flash heuristic picks what kernels/assign_flash.cu says it
 * picks, on described devices (no GPU needed): H100-like (sm_90a), A100-like (sm_80),
 * for fp16 / bf16 / fp32 shapes at the ablations' measured boundaries. */
#include "assign_flash.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static fkm_device described(int cc, int sms, int64_t optin) {
  fkm_device d;
  memset(&d, 0, sizeof d);
  d.present = 1;
  d.cc = cc;
  d.sm_count = sms;
  d.smem_per_block_optin = optin;
  return d;
}

static void expect(const fkm_device *d, int64_t B, int64_t N, int64_t K, int64_t D, fkm_dtype t, const char *want) {
  fkm_shape s = {B, N, K, D, t};
  const char *got = fkm_assign_flash_choice(&s, d);
  CHECK_MSG(got && strcmp(got, want) == 0, "cc %d, %lldx%lldx%lldx%lld %s: got %s, want %s", d->cc, (long long)B,
            (long long)N, (long long)K, (long long)D, fkm_dtype_name(t), got ? got : "(none)", want);
}

int main(void) {
  setenv("FKM_AUTOTUNE_CACHE", "off", 1); /* the heuristic alone */
  const fkm_device h100 = described(90, 132, 232448);
  const fkm_device a100 = described(80, 108, 166912);
  const int64_t M = 1048576;
  /* D <= 128 on sm_90a: the ping-pong kernels */
  expect(&h100, 1, M, 1024, 128, FKM_F16, "assign/flash_wgmma_pp");
  expect(&h100, 32, 75600, 1000, 128, FKM_F16, "assign/flash_wgmma_pp");
  expect(&h100, 1, 300000, 3000, 96, FKM_F16, "assign/flash_wgmma_pp");
  expect(&h100, 1, M, 1024, 64, FKM_F16, "assign/flash_wgmma_pp3");        /* D <= 64, 256 < K < 16384 */
  expect(&h100, 1, 10000000, 8192, 64, FKM_BF16, "assign/flash_wgmma_pp3");
  expect(&h100, 1, M, 16384, 64, FKM_F16, "assign/flash_wgmma_pp");       /* K >= 16384: pp's norm step */
  expect(&h100, 32, 75600, 1000, 64, FKM_F16, "assign/flash_wgmma_pp");   /* short batches */
  expect(&h100, 1, 65536, 8192, 64, FKM_F16, "assign/flash_wgmma_pp");    /* few points */
  expect(&h100, 1, M, 65536, 128, FKM_BF16, "assign/flash_wgmma_pp");
  expect(&h100, 1, M, 200000, 128, FKM_F16, "assign/flash_wgmma_pp");
  expect(&h100, 1, M, 128, 128, FKM_F16, "assign/flash_wgmma_pp3");       /* K <= 128, many points */
  /* ... where they do not apply, the earlier rules */
  expect(&h100, 1, 65536, 128, 64, FKM_F16, "assign/flash_mma");   /* K <= 128, few points */
  expect(&h100, 1, M, 200, 128, FKM_F16, "assign/flash_mma");      /* 128 < K <= 256 */
  expect(&h100, 1, M, 1024, 512, FKM_F16, "assign/flash_wgmma");
  expect(&h100, 1, M, 8192, 256, FKM_F16, "assign/flash_wgmma_bm256");
  expect(&h100, 1, M, 1024, 130, FKM_F16, "assign/flash_mma");     /* D % 8 != 0: no TMA */
  /* exact fp32 stays on CUDA cores: never the tf32 kernel */
  expect(&h100, 1, M, 1024, 128, FKM_F32, "assign/flash_simt");
  /* sm_80: no Hopper kernels */
  expect(&a100, 1, M, 1024, 128, FKM_F16, "assign/flash_mma");
  expect(&a100, 1, M, 1024, 128, FKM_F32, "assign/flash_simt");
  /* no implementation for an impossible shape */
  fkm_shape bad = {1, 0, 4, 8, FKM_F16};
  CHECK(fkm_assign_flash_choice(&bad, &h100) == NULL);
  return check_exit("test_dispatch");
}
