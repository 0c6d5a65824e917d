/* gpu_data.c — the GPU generators produce the same bits as the host ones for
 * every generator and dtype (so a run is reproducible from its seed anywhere),
 * and the ceilings measure to plausible figures. */
#include "gpu_util.h"

int main(void) {
  if (!gpu_available()) return CHECK_SKIP;
  const fkm_data_kind kinds[] = {FKM_DATA_BLOBS, FKM_DATA_NORMAL, FKM_DATA_UNIFORM, FKM_DATA_SKEWED};
  for (int k = 0; k < 4; k++)
    for (int t = 0; t < FKM_DTYPE_COUNT; t++) {
      fkm_shape s = {3, 1237, 37, 19, (fkm_dtype)t};
      fkm_data_spec spec = {.kind = kinds[k]};
      fkm_dataset h, d, back;
      CHECK(fkm_data_make_host(&s, &spec, 99, &h) == FKM_OK);
      CHECK(fkm_data_make_device(&s, &spec, 99, &d) == FKM_OK);
      CHECK(fkm_data_copy_to_host(&d, &back) == FKM_OK);
      const size_t es = fkm_dtype_size(s.dtype);
      CHECK_MSG(!memcmp(h.x, back.x, (size_t)(s.B * s.N * s.D) * es), "points differ: kind %d dtype %s", k, fkm_dtype_name(s.dtype));
      CHECK_MSG(!memcmp(h.c, back.c, (size_t)(s.B * s.K * s.D) * es), "centroids differ: kind %d", k);
      CHECK_MSG(!memcmp(h.labels, back.labels, (size_t)(s.B * s.N) * 4), "labels differ: kind %d", k);
      CHECK_MSG(!memcmp(h.c_old, back.c_old, (size_t)(s.B * s.K * s.D) * 4), "c_old differs: kind %d", k);
      fkm_data_free(&h);
      fkm_data_free(&d);
      fkm_data_free(&back);
    }
  fkm_ceilings c;
  CHECK(fkm_measure_ceilings(&gpu_dev, &c) == FKM_OK);
  printf("ceilings on %s: copy %.0f GB/s, fp16 GEMM %.0f TFLOP/s\n", gpu_dev.name, c.copy_gbps, c.gemm_tflops);
  CHECK(c.copy_gbps > 100 && c.copy_gbps < 20000);
  CHECK(c.gemm_tflops > 5 && c.gemm_tflops < 5000);
  return check_exit("gpu_data");
}
