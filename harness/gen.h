/* gen.h — the deterministic data generators, one formula for host and device.
 *
 * Every value is a pure function of (seed, generator, element index): a
 * counter-based hash, no state. Normal variates are sums of four 24-bit
 * uniforms (Irwin-Hall), computed in integer arithmetic and scaled by one
 * correctly rounded fp32 multiply, so CPU and GPU produce the same bits and a
 * run can be reproduced on any machine from its seed alone.
 *
 * Generators (per batch b, point n, coordinate d; K clusters):
 *   normal   x ~ N(0, 1) per coordinate
 *   uniform  x ~ U[-1, 1)
 *   blobs    K centres ~ N(0, 1); point of cluster j = centre_j + N(0, 0.25^2);
 *            cluster of a point drawn uniformly
 *   skewed   like blobs, but half of all points in cluster 0, a quarter in
 *            clusters 1..3, the rest uniform over all K
 * The "true label" of a point (its generating cluster; uniform for normal and
 * uniform data) is what update benchmarks feed as labels. Assign benchmarks use
 * centroids c_k = row floor(k * N / K) of the batch's points. */
#ifndef FKM_GEN_H
#define FKM_GEN_H

#include <stdint.h>

#if defined(__CUDACC__)
#define FKM_GEN_HD static __host__ __device__ __forceinline__
#else
#define FKM_GEN_HD static inline
#endif

enum { FKM_GEN_BLOBS = 0, FKM_GEN_NORMAL = 1, FKM_GEN_UNIFORM = 2, FKM_GEN_SKEWED = 3 };
enum { FKM_STREAM_POINT = 1, FKM_STREAM_CENTRE = 2, FKM_STREAM_LABEL = 3 };

#define FKM_BLOB_NOISE 0.25f

FKM_GEN_HD uint64_t fkm_mix64(uint64_t z) { /* splitmix64 finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

FKM_GEN_HD uint64_t fkm_hash(uint64_t seed, uint64_t stream, uint64_t i) {
  return fkm_mix64(fkm_mix64(seed * 0x9e3779b97f4a7c15ull + stream) ^ (i * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull));
}

/* N(0,1) approximation, exact same bits everywhere (range about ±3.46). */
FKM_GEN_HD float fkm_normal(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t h1 = fkm_hash(seed, stream, 2 * i), h2 = fkm_hash(seed, stream, 2 * i + 1);
  int32_t s = (int32_t)(h1 & 0xffffff) + (int32_t)((h1 >> 32) & 0xffffff) + (int32_t)(h2 & 0xffffff) +
              (int32_t)((h2 >> 32) & 0xffffff) - (2 << 24); /* sum of 4 U[0,1) minus 2, times 2^24: exact */
  /* (s / 2^24) * sqrt(3): s fits in 26 bits, so (float)s is exact and one multiply rounds once. */
  return (float)s * (1.7320508075688772f / 16777216.0f);
}

FKM_GEN_HD float fkm_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t h = fkm_hash(seed, stream, i);
  return (float)(int32_t)((h >> 40) & 0xffffff) * (1.0f / 8388608.0f) - 1.0f; /* exact: k/2^23 - 1 */
}

/* Generating cluster of flat point index i (= b * N + n) among K. */
FKM_GEN_HD int32_t fkm_true_label(int gen, uint64_t seed, uint64_t i, int64_t K) {
  uint64_t h = fkm_hash(seed, FKM_STREAM_LABEL, i);
  if (gen == FKM_GEN_SKEWED) {
    uint32_t r = (uint32_t)(h & 1023);
    uint64_t h2 = h >> 10;
    if (r < 512) return 0;
    if (r < 768) return (int32_t)((1 + h2 % 3) % (uint64_t)K);
    return (int32_t)(h2 % (uint64_t)K);
  }
  return (int32_t)((h >> 10) % (uint64_t)K);
}

/* Coordinate d of flat point i (batch b) for a problem with K clusters, D dims. */
FKM_GEN_HD float fkm_gen_value(int gen, uint64_t seed, int64_t b, uint64_t i, int64_t d, int64_t K, int64_t D) {
  switch (gen) {
  case FKM_GEN_NORMAL: return fkm_normal(seed, FKM_STREAM_POINT, i * (uint64_t)D + (uint64_t)d);
  case FKM_GEN_UNIFORM: return fkm_uniform(seed, FKM_STREAM_POINT, i * (uint64_t)D + (uint64_t)d);
  default: {
    int32_t j = fkm_true_label(gen, seed, i, K);
    float centre = fkm_normal(seed, FKM_STREAM_CENTRE, ((uint64_t)b * (uint64_t)K + (uint64_t)j) * (uint64_t)D + (uint64_t)d);
    float noise = fkm_normal(seed, FKM_STREAM_POINT, i * (uint64_t)D + (uint64_t)d);
#if defined(__CUDA_ARCH__)
    return __fadd_rn(centre, __fmul_rn(FKM_BLOB_NOISE, noise)); /* no FMA contraction: same bits as the host */
#else
    return centre + FKM_BLOB_NOISE * noise;
#endif
  }
  }
}

/* Centre d of cluster j of batch b of the blobs/skewed generators (the known centres). */
FKM_GEN_HD float fkm_gen_centre(uint64_t seed, int64_t b, int64_t j, int64_t d, int64_t K, int64_t D) {
  return fkm_normal(seed, FKM_STREAM_CENTRE, ((uint64_t)b * (uint64_t)K + (uint64_t)j) * (uint64_t)D + (uint64_t)d);
}

/* Row of the batch's points used as initial centroid k (distinct rows since K <= N). */
FKM_GEN_HD int64_t fkm_centroid_row(int64_t k, int64_t N, int64_t K) { return (k * N) / K; }

#endif
