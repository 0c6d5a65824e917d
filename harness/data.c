/* data.c — building a problem's inputs (see data.h): host generation, .npy
 * loading, device allocation, and the host copy used by validation. */
#include "data.h"
#include "dtype.h"
#include "error.h"
#include "gen.h"
#include "npy.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

static int gen_of(fkm_data_kind k) {
  switch (k) {
  case FKM_DATA_NORMAL: return FKM_GEN_NORMAL;
  case FKM_DATA_UNIFORM: return FKM_GEN_UNIFORM;
  case FKM_DATA_SKEWED: return FKM_GEN_SKEWED;
  case FKM_DATA_NPY: return FKM_GEN_NORMAL; /* labels only: uniform */
  default: return FKM_GEN_BLOBS;
  }
}

int64_t fkm_data_bytes(const fkm_shape *s) {
  int64_t es = (int64_t)fkm_dtype_size(s->dtype);
  return s->B * s->N * s->D * es + s->B * s->K * s->D * (es + 4) + s->B * s->N * 4;
}

static void centroids_from_rows_host(const fkm_shape *s, const void *x, void *c, float *c_old) {
  const size_t es = fkm_dtype_size(s->dtype);
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t k = 0; k < s->K; k++) {
      int64_t src = (b * s->N + fkm_centroid_row(k, s->N, s->K)) * s->D, dst = (b * s->K + k) * s->D;
      memcpy((char *)c + (size_t)dst * es, (const char *)x + (size_t)src * es, (size_t)s->D * es);
      for (int64_t d = 0; d < s->D; d++) c_old[dst + d] = fkm_load_as_f32(x, (int)s->dtype, src + d);
    }
}

static fkm_status alloc_host(const fkm_shape *s, fkm_dataset *d) {
  memset(d, 0, sizeof *d);
  d->s = *s;
  const size_t es = fkm_dtype_size(s->dtype);
  d->x = malloc((size_t)(s->B * s->N * s->D) * es);
  d->c = malloc((size_t)(s->B * s->K * s->D) * es);
  d->labels = malloc((size_t)(s->B * s->N) * sizeof(int32_t));
  d->c_old = malloc((size_t)(s->B * s->K * s->D) * sizeof(float));
  if (!d->x || !d->c || !d->labels || !d->c_old) {
    fkm_data_free(d);
    return fkm_fail(FKM_ERR_OOM, "cannot allocate %.2f GB of host memory for the inputs of %lldx%lldx%lldx%lld",
                    (double)fkm_data_bytes(s) / 1e9, (long long)s->B, (long long)s->N, (long long)s->K, (long long)s->D);
  }
  return FKM_OK;
}

fkm_status fkm_data_make_host(const fkm_shape *s, const fkm_data_spec *spec, uint64_t seed, fkm_dataset *out) {
  FKM_TRY(alloc_host(s, out));
  const int gen = gen_of(spec->kind);
  fkm_status st = FKM_OK;
  if (spec->kind == FKM_DATA_NPY) {
    st = fkm_npy_load(spec->path, s->B * s->N * s->D, s->dtype, out->x);
  } else {
    for (int64_t i = 0; i < s->B * s->N; i++)
      for (int64_t d = 0; d < s->D; d++)
        fkm_store_from_f32(out->x, (int)s->dtype, i * s->D + d, fkm_gen_value(gen, seed, i / s->N, (uint64_t)i, d, s->K, s->D));
  }
  if (st != FKM_OK) {
    fkm_data_free(out);
    return st;
  }
  for (int64_t i = 0; i < s->B * s->N; i++) out->labels[i] = fkm_true_label(gen, seed, (uint64_t)i, s->K);
  centroids_from_rows_host(s, out->x, out->c, out->c_old);
  return FKM_OK;
}

static fkm_status alloc_device(const fkm_shape *s, fkm_dataset *d) {
  memset(d, 0, sizeof *d);
  d->s = *s;
  d->on_device = 1;
  const size_t es = fkm_dtype_size(s->dtype);
  FKM_CUDA(cudaMalloc(&d->x, (size_t)(s->B * s->N * s->D) * es));
  FKM_CUDA(cudaMalloc(&d->c, (size_t)(s->B * s->K * s->D) * es));
  FKM_CUDA(cudaMalloc((void **)&d->labels, (size_t)(s->B * s->N) * sizeof(int32_t)));
  FKM_CUDA(cudaMalloc((void **)&d->c_old, (size_t)(s->B * s->K * s->D) * sizeof(float)));
  return FKM_OK;
}

static fkm_status make_device(const fkm_shape *s, const fkm_data_spec *spec, uint64_t seed, fkm_dataset *out) {
  FKM_TRY(alloc_device(s, out));
  const int gen = gen_of(spec->kind);
  if (spec->kind == FKM_DATA_NPY) {
    size_t bytes = (size_t)(s->B * s->N * s->D) * fkm_dtype_size(s->dtype);
    void *host = malloc(bytes);
    if (!host) return fkm_fail(FKM_ERR_OOM, "cannot allocate %.2f GB of host memory to read %s", (double)bytes / 1e9, spec->path);
    fkm_status st = fkm_npy_load(spec->path, s->B * s->N * s->D, s->dtype, host);
    if (st == FKM_OK) {
      cudaError_t e = cudaMemcpy(out->x, host, bytes, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "cudaMemcpy(npy data)", __FILE__, __LINE__);
    }
    free(host);
    FKM_TRY(st);
  } else {
    FKM_TRY(fkm_gen_points_device(s, gen, seed, out->x));
  }
  FKM_TRY(fkm_gen_labels_device(s, gen, seed, out->labels));
  FKM_TRY(fkm_gen_centroids_device(s, out->x, out->c, out->c_old));
  return FKM_OK;
}

fkm_status fkm_data_make_device(const fkm_shape *s, const fkm_data_spec *spec, uint64_t seed, fkm_dataset *out) {
  fkm_status st = make_device(s, spec, seed, out);
  if (st != FKM_OK) fkm_data_free(out);
  return st;
}

fkm_status fkm_data_copy_to_host(const fkm_dataset *dev, fkm_dataset *host) {
  const fkm_shape *s = &dev->s;
  FKM_TRY(alloc_host(s, host));
  const size_t es = fkm_dtype_size(s->dtype);
  struct { void *dst; const void *src; size_t n; } parts[4] = {
      {host->x, dev->x, (size_t)(s->B * s->N * s->D) * es},
      {host->c, dev->c, (size_t)(s->B * s->K * s->D) * es},
      {host->labels, dev->labels, (size_t)(s->B * s->N) * 4},
      {host->c_old, dev->c_old, (size_t)(s->B * s->K * s->D) * 4},
  };
  for (int i = 0; i < 4; i++) {
    cudaError_t e = cudaMemcpy(parts[i].dst, parts[i].src, parts[i].n, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
      fkm_data_free(host);
      return fkm_cuda_fail_at(e, "cudaMemcpy(inputs to host)", __FILE__, __LINE__);
    }
  }
  return FKM_OK;
}

void fkm_data_free(fkm_dataset *d) {
  if (d->on_device) {
    cudaFree(d->x);
    cudaFree(d->c);
    cudaFree(d->labels);
    cudaFree(d->c_old);
  } else {
    free(d->x);
    free(d->c);
    free(d->labels);
    free(d->c_old);
  }
  memset(d, 0, sizeof *d);
}
