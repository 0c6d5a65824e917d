/* gpu_util.h — shared pieces of the GPU tests: skip without a GPU, move a
 * host dataset to the device, and run one registered variant on it. */
#ifndef FKM_GPU_UTIL_H
#define FKM_GPU_UTIL_H

#include "check.h"
#include "config.h"
#include "data.h"
#include "device.h"
#include "error.h"
#include "variant.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

static fkm_device gpu_dev;

/* Returns 1 when a GPU is present; otherwise prints why (the test returns 77). */
static inline int gpu_available(void) {
  fkm_device_query(&gpu_dev);
  if (!gpu_dev.present) fprintf(stderr, "skipped: %s\n", gpu_dev.absent_reason);
  return gpu_dev.present;
}

/* FKM_TEST_VARIANTS="glob,glob" limits a GPU test to some variants (default: all). */
static inline int variant_selected(const fkm_variant *v) {
  const char *env = getenv("FKM_TEST_VARIANTS");
  if (!env || !*env) return 1;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", env);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
    if (fkm_glob_match(tok, v->name)) return 1;
  return 0;
}

/* FKM_TEST_MAX_POINTS=n skips shapes with more than n points (B*N): the small
 * shapes alone, for runs under compute-sanitizer. */
static inline int shape_selected(const fkm_shape *s) {
  const char *env = getenv("FKM_TEST_MAX_POINTS");
  return !env || !*env || s->B * s->N <= atoll(env);
}

static inline int variant_runs_here(const fkm_variant *v, const fkm_shape *s) {
  if (!variant_selected(v) || !shape_selected(s)) return 0;
  if (fkm_variant_is_cpu(v) || gpu_dev.cc < v->min_cc || (v->max_cc && gpu_dev.cc > v->max_cc)) return 0;
  char why[256];
  return !v->supports || v->supports(s, &gpu_dev, why, sizeof why) == FKM_OK;
}

static inline void *to_device(const void *h, size_t bytes) {
  void *d = NULL;
  if (cudaMalloc(&d, bytes) != cudaSuccess) return NULL;
  cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
  return d;
}

static inline void *from_device(const void *d, size_t bytes) {
  void *h = malloc(bytes);
  if (h) cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost);
  return h;
}

/* Runs assign variant v on host inputs; returns labels and dist in malloc'd host arrays. */
static inline fkm_status run_assign(const fkm_variant *v, const fkm_dataset *h, int32_t **labels, float **dist) {
  const fkm_shape *s = &h->s;
  const size_t es = fkm_dtype_size(s->dtype);
  fkm_problem p = {0};
  p.s = *s;
  p.x = to_device(h->x, (size_t)(s->B * s->N * s->D) * es);
  p.c = to_device(h->c, (size_t)(s->B * s->K * s->D) * es);
  cudaMalloc((void **)&p.labels, (size_t)(s->B * s->N) * 4);
  cudaMalloc((void **)&p.dist, (size_t)(s->B * s->N) * 4);
  cudaMemset(p.labels, 0xff, (size_t)(s->B * s->N) * 4);
  cudaMemset(p.dist, 0xff, (size_t)(s->B * s->N) * 4);
  p.scratch_budget = (size_t)1 << 28;
  void *state = NULL;
  fkm_status st = v->setup ? v->setup(&p, &state) : FKM_OK;
  if (st == FKM_OK) {
    st = v->run(&p, state, 0);
    cudaError_t e = cudaDeviceSynchronize();
    if (st == FKM_OK && e != cudaSuccess) st = fkm_cuda_fail_at(e, v->name, __FILE__, __LINE__);
    if (v->teardown) v->teardown(state);
  }
  *labels = from_device(p.labels, (size_t)(s->B * s->N) * 4);
  *dist = from_device(p.dist, (size_t)(s->B * s->N) * 4);
  cudaFree((void *)p.x);
  cudaFree((void *)p.c);
  cudaFree(p.labels);
  cudaFree(p.dist);
  return st;
}

/* Runs update variant v on host inputs; returns c_new and counts in malloc'd host arrays. */
static inline fkm_status run_update(const fkm_variant *v, const fkm_dataset *h, float **c_new, int32_t **counts) {
  const fkm_shape *s = &h->s;
  const size_t es = fkm_dtype_size(s->dtype);
  fkm_problem p = {0};
  p.s = *s;
  p.x = to_device(h->x, (size_t)(s->B * s->N * s->D) * es);
  p.labels_in = to_device(h->labels, (size_t)(s->B * s->N) * 4);
  p.c_old = to_device(h->c_old, (size_t)(s->B * s->K * s->D) * 4);
  cudaMalloc((void **)&p.c_new, (size_t)(s->B * s->K * s->D) * 4);
  cudaMalloc((void **)&p.counts, (size_t)(s->B * s->K) * 4);
  cudaMemset(p.c_new, 0xff, (size_t)(s->B * s->K * s->D) * 4);
  cudaMemset(p.counts, 0xff, (size_t)(s->B * s->K) * 4);
  p.scratch_budget = (size_t)1 << 28;
  void *state = NULL;
  fkm_status st = v->setup ? v->setup(&p, &state) : FKM_OK;
  if (st == FKM_OK) {
    st = v->run(&p, state, 0);
    cudaError_t e = cudaDeviceSynchronize();
    if (st == FKM_OK && e != cudaSuccess) st = fkm_cuda_fail_at(e, v->name, __FILE__, __LINE__);
    if (v->teardown) v->teardown(state);
  }
  *c_new = from_device(p.c_new, (size_t)(s->B * s->K * s->D) * 4);
  *counts = from_device(p.counts, (size_t)(s->B * s->K) * 4);
  cudaFree((void *)p.x);
  cudaFree((void *)p.labels_in);
  cudaFree((void *)p.c_old);
  cudaFree(p.c_new);
  cudaFree(p.counts);
  return st;
}

#endif
