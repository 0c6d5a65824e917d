/* fit.c — fkm_fit: Lloyd's algorithm on the GPU from an initialisation to
 * convergence, built from the same variants the harness times.
 *
 * The in-memory path copies the points to the GPU and runs the loop of
 * fit_device.h (also behind the harness's `fit/...` variants): per iteration
 * one assignment, one update and one scalar copy to the host.
 *
 * Data that do not fit on the GPU (or any data, with chunk_points > 0) take
 * the streaming path of fit_stream.c instead; so does an automatic fit whose
 * in-memory attempt runs out of device memory before its first iteration. */
#include "error.h"
#include "fit_device.h"
#include "fit_stream.h"
#include "flashkm.h"
#include "init.h"
#include "lloyd.h"
#include "nvtx.h"
#include "stats.h"
#include "phase.h"
#include "variant.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fkm_fit_defaults(fkm_fit_options *o) {
  memset(o, 0, sizeof *o);
  o->B = 1;
  o->dtype = FKM_F32;
  o->init = FKM_INIT_RANDOM;
  o->tol_mode = FKM_TOL_SHIFT;
  o->tol = 1e-4;
  o->max_iter = 300;
  o->seed = 1;
}

static const char *const init_names[] = {"random", "kmeans++", "kmeans||"}; /* fkm_init order */

const char *fkm_init_name(fkm_init i) { return (unsigned)i < 3 ? init_names[i] : "random"; }

int fkm_init_from_name(const char *name, fkm_init *out) {
  for (int i = 0; i < 3; i++)
    if (name && strcmp(name, init_names[i]) == 0) {
      *out = (fkm_init)i;
      return 0;
    }
  return -1;
}

void fkm_fit_result_free(fkm_fit_result *r) {
  free(r->inertia_history);
  free(r->shift_history);
  free(r->stream_h2d_bytes);
  free(r->stream_copy_seconds);
  free(r->stream_compute_seconds);
  free(r->stream_iter_seconds);
  free(r->stream_efficiency);
  memset(r, 0, sizeof *r);
}


static fkm_status check_options(const fkm_fit_options *o) {
  if (o->B < 1 || o->N < 1 || o->D < 1 || o->K < 1)
    return fkm_fail(FKM_ERR_INPUT, "B, N, D and K must be positive (got %lld, %lld, %lld, %lld)", (long long)o->B,
                    (long long)o->N, (long long)o->D, (long long)o->K);
  if (o->K > o->N) return fkm_fail(FKM_ERR_INPUT, "K=%lld exceeds the number of points N=%lld", (long long)o->K, (long long)o->N);
  if ((unsigned)o->dtype >= FKM_DTYPE_COUNT) return fkm_fail(FKM_ERR_INPUT, "unknown dtype %d", (int)o->dtype);
  if (!(o->tol >= 0)) return fkm_fail(FKM_ERR_INPUT, "tol must be >= 0 (got %g)", o->tol);
  if (o->max_iter < 1) return fkm_fail(FKM_ERR_INPUT, "max_iter must be >= 1 (got %d)", o->max_iter);
  if (o->B * o->N >= ((int64_t)1 << 31)) return fkm_fail(FKM_ERR_INPUT, "B*N must be below 2^31");
  if (o->chunk_points < 0)
    return fkm_fail(FKM_ERR_INPUT, "chunk_points must be >= 0 (0: automatic; got %lld)", (long long)o->chunk_points);
  return FKM_OK;
}

typedef struct {
  void *x;
  int32_t *labels;
  float *dist;
  int32_t *counts;
  cudaStream_t stream;
  fkm_fit_work work;
  int have_work;
} fit_buffers;

static void fit_free(fit_buffers *f) {
  if (f->have_work) fkm_fit_work_free(&f->work);
  cudaFree(f->x);
  cudaFree(f->labels);
  cudaFree(f->dist);
  cudaFree(f->counts);
  if (f->stream) cudaStreamDestroy(f->stream);
  memset(f, 0, sizeof *f);
}

static fkm_problem problem_of(const fkm_fit_options *o, void *x, const void *c, int32_t *labels, float *dist,
                              const float *c_old, float *c_new, int32_t *counts) {
  fkm_problem p;
  memset(&p, 0, sizeof p);
  p.s.B = o->B;
  p.s.N = o->N;
  p.s.K = o->K;
  p.s.D = o->D;
  p.s.dtype = o->dtype;
  p.x = x;
  p.c = c;
  p.labels = labels;
  p.dist = dist;
  p.c_old = c_old;
  p.c_new = c_new;
  p.counts = counts;
  p.scratch_budget = (size_t)1 << 30;
  return p;
}

static fkm_status fit_alloc(const fkm_fit_options *o, const void *x_host, fit_buffers *f) {
  const size_t es = fkm_dtype_size(o->dtype);
  const size_t nx = (size_t)(o->B * o->N * o->D), np = (size_t)(o->B * o->N);
  FKM_CUDA(cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking));
  FKM_CUDA(cudaMalloc(&f->x, nx * es));
  FKM_CUDA(cudaMalloc((void **)&f->labels, np * 4));
  FKM_CUDA(cudaMalloc((void **)&f->dist, np * 4));
  FKM_CUDA(cudaMalloc((void **)&f->counts, (size_t)(o->B * o->K) * 4));
  FKM_CUDA(cudaMemcpy(f->x, x_host, nx * es, cudaMemcpyHostToDevice));
  fkm_problem base = problem_of(o, f->x, NULL, f->labels, f->dist, NULL, NULL, f->counts);
  /* Each of the two variants' scratch may take up to 45 % of what is free now,
   * less room for the centroids (the update's sort alone wants ~16 bytes a
   * point: 2.2 GB at N = 2^27, over a fixed 1 GiB). */
  size_t free_b = 0, total_b = 0;
  FKM_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const size_t centroids = (size_t)(o->B * o->K * o->D) * (es + 8) + ((size_t)64 << 20);
  if (free_b > centroids && (free_b - centroids) / 20 * 9 > base.scratch_budget)
    base.scratch_budget = (free_b - centroids) / 20 * 9;
  f->have_work = 1; /* fit_free releases whatever part of the work was created */
  return fkm_fit_work_create(o, &base, &f->work);
}

fkm_status fkm_fit_work_create(const fkm_fit_options *o, const fkm_problem *base, fkm_fit_work *w) {
  memset(w, 0, sizeof *w);
  const size_t nc = (size_t)(o->B * o->K * o->D);
  FKM_CUDA(cudaMalloc(&w->c, nc * fkm_dtype_size(o->dtype)));
  FKM_CUDA(cudaMalloc((void **)&w->c_a, nc * 4));
  FKM_CUDA(cudaMalloc((void **)&w->c_b, nc * 4));
  const char *an = o->assign_variant ? o->assign_variant : "assign/flash";
  const char *un = o->update_variant ? o->update_variant : "update/sort_inverse_det";
  fkm_problem p = *base;
  p.c = w->c;
  p.c_old = w->c_a;
  p.c_new = w->c_b;
  p.phase_marks = NULL;
  return fkm_lloyd_create(&p, an, un, &w->lloyd);
}

void fkm_fit_work_free(fkm_fit_work *w) {
  if (w->lloyd) fkm_lloyd_destroy(w->lloyd);
  cudaFree(w->c);
  cudaFree(w->c_a);
  cudaFree(w->c_b);
  memset(w, 0, sizeof *w);
}

static fkm_status fit_iterate(const fkm_fit_options *o, const fkm_problem *base, fkm_fit_work *w, const float *c_cur,
                              float *c_next, cudaStream_t stream) {
  fkm_problem p = *base;
  p.c = w->c;
  p.c_old = c_cur;
  p.c_new = c_next;
  p.phase_marks = NULL;
  FKM_TRY(fkm_cast_centroids(c_cur, w->c, o->B * o->K * o->D, o->dtype, stream));
  return fkm_lloyd_iterate(w->lloyd, &p, stream);
}

static fkm_status fit_loop(const fkm_fit_options *o, const fkm_problem *base, fkm_fit_work *w, cudaStream_t stream,
                           fkm_fit_result *r, const float **c_final) {
  const double t0 = fkm_now_s();
  fkm_phase_begin("init");
  fkm_status st = fkm_init_centroids(&base->s, o->init, o->seed, base->x, w->c_a, stream);
  fkm_phase_end(base, 0, stream);
  FKM_TRY(st);
  r->init_seconds = fkm_now_s() - t0; /* host time to enqueue; the first iteration's sync waits for the rest */

  r->inertia_history = malloc(sizeof(double) * (size_t)o->max_iter);
  r->shift_history = malloc(sizeof(double) * (size_t)o->max_iter);
  if (!r->inertia_history || !r->shift_history) return fkm_fail(FKM_ERR_OOM, "out of host memory");

  fkm_phase_begin("iterations");
  float *c_cur = w->c_a, *c_next = w->c_b;
  double prev_inertia = INFINITY;
  for (int it = 0; it < o->max_iter; it++) {
    fkm_nvtx_push("iteration");
    st = fit_iterate(o, base, w, c_cur, c_next, stream);
    if (st == FKM_OK) {
      cudaError_t e = cudaStreamSynchronize(stream);
      if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "Lloyd iteration", __FILE__, __LINE__);
    }
    fkm_nvtx_pop();
    if (st != FKM_OK) break;
    double inertia, shift;
    fkm_lloyd_scalars(w->lloyd, &inertia, &shift);
    r->inertia_history[it] = inertia;
    r->shift_history[it] = shift;
    r->iterations = it + 1;
    r->history_len = r->iterations;
    float *t = c_cur;
    c_cur = c_next;
    c_next = t;
    if (o->progress)
      fprintf(stderr, "fit: iteration %4d  inertia %.9g  shift %.3g  %.3f s\n", it + 1, inertia, shift, fkm_now_s() - t0);
    if (!(inertia == inertia)) {
      st = fkm_fail(FKM_ERR_INPUT, "inertia became NaN at iteration %d: the data hold NaN or Inf", it + 1);
      break;
    }
    const double rel = fabs(prev_inertia - inertia) / (inertia > 0 ? inertia : 1.0);
    if ((o->tol_mode == FKM_TOL_SHIFT && shift <= o->tol) || (o->tol_mode == FKM_TOL_INERTIA && rel <= o->tol)) {
      r->converged = 1;
      break;
    }
    prev_inertia = inertia;
  }
  /* Final assignment: labels, distances, counts and inertia of the centroids we return. */
  if (st == FKM_OK) st = fit_iterate(o, base, w, c_cur, c_next, stream);
  fkm_phase_end(base, 1, stream);
  FKM_TRY(st);
  FKM_CUDA(cudaStreamSynchronize(stream));
  double shift_unused;
  fkm_lloyd_scalars(w->lloyd, &r->inertia, &shift_unused);
  r->seconds = fkm_now_s() - t0;
  *c_final = c_cur;
  return FKM_OK;
}

fkm_status fkm_fit_device(const fkm_fit_options *o, const fkm_problem *base, fkm_fit_work *w, cudaStream_t stream,
                          fkm_fit_result *r, const float **c_final) {
  free(r->inertia_history);
  free(r->shift_history);
  r->inertia_history = r->shift_history = NULL;
  r->iterations = r->converged = r->history_len = 0;
  r->inertia = r->seconds = r->init_seconds = 0;
  return fit_loop(o, base, w, stream, r, c_final);
}

static fkm_status fit_run(const fkm_fit_options *o, fit_buffers *f, int32_t *labels, float *centroids,
                          fkm_fit_result *r) {
  fkm_problem base = problem_of(o, f->x, NULL, f->labels, f->dist, NULL, NULL, f->counts);
  const float *c_final = NULL;
  FKM_TRY(fkm_fit_device(o, &base, &f->work, f->stream, r, &c_final));
  FKM_CUDA(cudaMemcpy(labels, f->labels, (size_t)(o->B * o->N) * 4, cudaMemcpyDeviceToHost));
  FKM_CUDA(cudaMemcpy(centroids, c_final, (size_t)(o->B * o->K * o->D) * 4, cudaMemcpyDeviceToHost));
  return FKM_OK;
}

/* Device bytes of the in-memory fit (an estimate on the safe side): x, labels
 * and distances, the update's sort scratch (keys and values, double-buffered,
 * plus CUB), centroids (dtype + two fp32 copies) and counts, k-means++'s
 * per-point distances and scan, and slack for small scratch. */
static double in_memory_bytes(const fkm_fit_options *o) {
  const double es = (double)fkm_dtype_size(o->dtype), pts = (double)o->B * (double)o->N;
  const double clusters = (double)o->B * (double)o->K;
  /* k-means++: fp64 distances and scan per point; k-means||: 6 floats per point and 2K·5 candidates */
  const double init = o->init == FKM_INIT_RANDOM ? 0.0 : 40.0 * (double)o->N + 10.0 * (double)o->K * (double)o->D * 8.0;
  return pts * (double)o->D * es + pts * 8.0 + pts * 20.0 + clusters * (double)o->D * (es + 8.0) + clusters * 4.0 + init +
         (double)(64u << 20);
}

fkm_status fkm_fit(const fkm_fit_options *o, const void *x, int32_t *labels, float *centroids, fkm_fit_result *r) {
  memset(r, 0, sizeof *r);
  FKM_TRY(check_options(o));
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return fkm_fail(FKM_ERR_NO_DEVICE, "fit needs a CUDA GPU and none is usable here");
  }
  if (o->chunk_points > 0) return fkm_fit_stream(o, x, labels, centroids, r);
  size_t free_b = 0, total_b = 0;
  FKM_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const double need = in_memory_bytes(o);
  if (need > 0.9 * (double)free_b) {
    if (o->progress)
      fprintf(stderr, "fit: the in-memory fit needs about %.2f GB of GPU memory, %.2f GB free: streaming from host memory\n",
              need / 1e9, (double)free_b / 1e9);
    return fkm_fit_stream(o, x, labels, centroids, r);
  }
  fit_buffers f;
  memset(&f, 0, sizeof f);
  fkm_status st = fit_alloc(o, x, &f);
  if (st == FKM_ERR_OOM || (st == FKM_ERR_CUDA && strstr(fkm_last_error(), "out of memory")))
    st = fkm_fail(FKM_ERR_OOM, "the data (%.2f GB) and centroids do not fit in GPU memory: %s",
                  (double)(o->B * o->N * o->D) * (double)fkm_dtype_size(o->dtype) / 1e9, fkm_last_error());
  if (st == FKM_OK) st = fit_run(o, &f, labels, centroids, r);
  fit_free(&f);
  if (st == FKM_ERR_OOM && r->iterations == 0) {
    /* The estimate was short (fragmentation, scratch): nothing ran yet, stream instead. */
    if (o->progress) fprintf(stderr, "fit: %s: streaming from host memory instead\n", fkm_last_error());
    fkm_fit_result_free(r);
    fkm_clear_error();
    return fkm_fit_stream(o, x, labels, centroids, r);
  }
  if (st != FKM_OK) r->history_len = r->iterations; /* what ran before the failure stays readable */
  return st;
}
