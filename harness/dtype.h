/* dtype.h — bit-exact fp16/bf16 <-> fp32 conversion, the same on host and device.
 *
 * The host side of the harness is C and cannot use cuda_fp16.h, yet CPU
 * reference, CPU generators and GPU kernels must agree bit for bit on every
 * rounded value. These are plain integer implementations of IEEE
 * round-to-nearest-even, identical to __float2half_rn / __float2bfloat16_rn. */
#ifndef FKM_DTYPE_H
#define FKM_DTYPE_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define FKM_HD static __host__ __device__ __forceinline__
#else
#define FKM_HD static inline
#endif

FKM_HD uint32_t fkm_f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

FKM_HD float fkm_bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

FKM_HD uint16_t fkm_f32_to_bf16(float f) {
  uint32_t u = fkm_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

FKM_HD float fkm_bf16_to_f32(uint16_t h) { return fkm_bits_f32((uint32_t)h << 16); }

FKM_HD uint16_t fkm_f32_to_f16(float f) {
  uint32_t u = fkm_f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       /* rounds to >= 65520: Inf */
  if (a < 0x38800000u) {                                         /* below 2^-14: subnormal half */
    if (a < 0x33000000u) return (uint16_t)sign;                  /* below 2^-25: rounds to zero */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;                                   /* 14..24 */
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
  }
  a += 0xfffu + ((a >> 13) & 1u);                                /* round mantissa to 10 bits */
  return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

FKM_HD float fkm_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1f) return fkm_bits_f32(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return fkm_bits_f32(sign);
    /* subnormal: m * 2^-24, exact in fp32 */
    float v = (float)m * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return fkm_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Element i of a buffer of the given dtype (0 fp32, 1 fp16, 2 bf16), as fp32. */
FKM_HD float fkm_load_as_f32(const void *base, int dtype, int64_t i) {
  if (dtype == 0) return ((const float *)base)[i];
  uint16_t h = ((const uint16_t *)base)[i];
  return dtype == 1 ? fkm_f16_to_f32(h) : fkm_bf16_to_f32(h);
}

FKM_HD void fkm_store_from_f32(void *base, int dtype, int64_t i, float v) {
  if (dtype == 0) ((float *)base)[i] = v;
  else ((uint16_t *)base)[i] = dtype == 1 ? fkm_f32_to_f16(v) : fkm_f32_to_bf16(v);
}

#endif
