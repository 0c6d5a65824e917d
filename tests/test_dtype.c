/* test_dtype.c — the integer fp16/bf16 conversions round to nearest even
 * exactly like the hardware: every half value round-trips, and midpoints,
 * overflow, subnormals and NaN land where IEEE says. */
#include "check.h"
#include "dtype.h"

#include <math.h>

/* fp32 -> fp16 through double arithmetic, as an independent oracle. */
static uint16_t f16_oracle(float f) {
  if (isnan(f)) return 0x7e00;
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  double a = fabs((double)f);
  if (a >= 65520.0) return sign | 0x7c00;
  int best = 0;
  double best_err = INFINITY;
  /* scan the two neighbours of the truncated value */
  for (int h = 0; h < 0x7c00; h++) {
    double v = fkm_f16_to_f32((uint16_t)h);
    if (v > a * 1.01 + 1e-7 && v > a) break;
    double err = fabs(v - a);
    if (err < best_err || (err == best_err && (h & 1) == 0)) {
      best_err = err;
      best = h;
    }
  }
  return sign | (uint16_t)best;
}

int main(void) {
  int roundtrip_bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    uint16_t hh = (uint16_t)h;
    if ((hh & 0x7c00) == 0x7c00 && (hh & 0x3ff)) continue; /* NaN payloads */
    if (fkm_f32_to_f16(fkm_f16_to_f32(hh)) != hh) roundtrip_bad++;
  }
  CHECK_EQ_INT(roundtrip_bad, 0);
  CHECK_EQ_INT(fkm_f32_to_f16(1.0f), 0x3c00);
  CHECK_EQ_INT(fkm_f32_to_f16(-2.0f), 0xc000);
  CHECK_EQ_INT(fkm_f32_to_f16(65504.0f), 0x7bff);
  CHECK_EQ_INT(fkm_f32_to_f16(65520.0f), 0x7c00);     /* rounds up to Inf */
  CHECK_EQ_INT(fkm_f32_to_f16(65519.99f), 0x7bff);
  CHECK_EQ_INT(fkm_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* midpoint to even */
  CHECK_EQ_INT(fkm_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
  CHECK_EQ_INT(fkm_f32_to_f16(5.9604644775390625e-8f), 0x0001); /* smallest subnormal */
  CHECK_EQ_INT(fkm_f32_to_f16(2.98023223876953125e-8f), 0x0000); /* half of it: ties to even (0) */
  CHECK_EQ_INT(fkm_f32_to_f16(NAN) & 0x7c00, 0x7c00);
  CHECK(isnan(fkm_f16_to_f32(fkm_f32_to_f16(NAN))));
  int oracle_bad = 0;
  for (int i = 0; i < 20000; i++) {
    float f = ldexpf((float)(i * 2654435761u % 1000003u) / 1000003.0f + 0.5f, (i % 40) - 28);
    if (fkm_f32_to_f16(f) != f16_oracle(f)) oracle_bad++;
  }
  CHECK_EQ_INT(oracle_bad, 0);
  CHECK_EQ_INT(fkm_f32_to_bf16(1.0f), 0x3f80);
  CHECK_EQ_INT(fkm_f32_to_bf16(fkm_bits_f32(0x3f808000u)), 0x3f80); /* midpoint, even stays */
  CHECK_EQ_INT(fkm_f32_to_bf16(fkm_bits_f32(0x3f818000u)), 0x3f82); /* midpoint, odd rounds up */
  CHECK_EQ_INT(fkm_f32_to_bf16(fkm_bits_f32(0x3f808001u)), 0x3f81);
  CHECK(isnan(fkm_bf16_to_f32(fkm_f32_to_bf16(NAN))));
  for (uint32_t h = 0; h < 0x10000; h += 7) {
    uint16_t hh = (uint16_t)h;
    if ((hh & 0x7f80) == 0x7f80 && (hh & 0x7f)) continue;
    CHECK(fkm_f32_to_bf16(fkm_bf16_to_f32(hh)) == hh);
  }
  return check_exit("test_dtype");
}
