/* fit_stream.c — the out-of-core fit (the paper's third technique): the
 * points x stay in host memory and stream through a ring of device chunk
 * buffers; the copy of chunk i+1 overlaps the assignment and partial update
 * of chunk i; partial sums and counts accumulate across chunks and the
 * centroids are finalised once per iteration.
 *
 * Host memory. The user's x is page-locked in place (cudaHostRegister,
 * mapped). Where that fails, chunks go through a pinned staging ring (one
 * buffer per device slot): the host copies chunk u into stage[u % S] once the
 * previous copy out of that buffer has finished, then the DMA reads it. The
 * labels array is registered too (the last pass writes it chunk by chunk);
 * where that fails its copies go to pageable memory (correct, synchronous).
 * Everything registered here is unregistered at the end.
 *
 * Chunks. B = 1: ranges of P points. B > 1: if P >= N, whole batches,
 * floor(P / N) per chunk; else point ranges of one batch, ceil(N / P) per
 * batch. Either way all chunks share one shape except a shorter last one (the
 * last batch group, or each batch's last range), so the assign and the update
 * variant are set up twice at most: instance 0 for the full shape, instance 1
 * for the short one. A chunk is one contiguous run of x, of labels and of the
 * centroids of its batches, so every per-chunk problem is an ordinary
 * [nb][len] problem with pointers offset to its first batch.
 *
 * Streams and events. Copy stream: host-to-device chunk copies. Compute
 * stream: cast, assign, update, accumulate, finalise, the scalars copy.
 * D2H stream: label copies of the last pass (on its own stream so they never
 * queue behind a host-to-device copy that waits for compute). The ring has
 * S = min(3, chunks per pass) slots; use u (a global counter over all passes,
 * chunk u % C of the pass) lives in slot u % S. Per slot:
 *   copied[s]   copy stream, after the H2D of use u      -> compute waits before assign(u)
 *   consumed[s] compute stream, after the last reader of x[s] / labels[s]
 *                                                          -> copy waits before H2D(u + S)
 *                                                          -> D2H waits before the labels copy of u
 *   labels[s]   D2H stream, after the labels copy of u  -> compute waits before assign(u + S)
 * The host enqueues H2D(v) only after compute(v - S) is enqueued, so every
 * wait refers to the intended record. Copies run ahead across passes: at the
 * end of an iteration the first S - 1 chunks of the next pass (the same data
 * in the same order, whether the next pass is an iteration or the final
 * labelling) are already queued, so they overlap the finalise and the
 * iteration's one host round trip.
 *
 * Per iteration (compute stream): centroids cast to the dtype; sums (fp64),
 * counts (int32) and scalars zeroed; per chunk: assign (the assign variant,
 * default assign/flash) -> labels, dist of the chunk; inertia partials of the
 * chunk (fixed-order fp64, no atomics); the update variant (default
 * update/sort_inverse_det) on the chunk -> chunk means m and counts n;
 * sums += m * n in fp64, counts += n; after all chunks: c_new = sums / counts
 * (an empty cluster keeps c_old), the largest squared shift, and one 16-byte
 * copy of (inertia, shift) to pinned host memory.
 *
 * Rounding. A chunk's fp32 mean m = fl(S / n) of the update's fp32 sum S, so
 * m * n = S (1 + d), |d| <= 2^-24, formed with one fp64 fma (error 2^-53);
 * chunks then add in fp64 and the mean is rounded to fp32 once. The result
 * differs from the in-memory fit by a few fp32 ulps of each centroid (the
 * in-memory fit sums whole clusters in fp32), which can flip a point lying
 * within that distance of a tie. Inertia is summed in fp64 in a fixed order.
 * With a deterministic update variant the streamed fit is bitwise
 * reproducible for a given chunk size.
 *
 * Initialisation reads x where it lies: from a temporary device copy when it
 * fits (so it is the same as the in-memory fit's), else through the mapped
 * host view (k-means++ then reads x over PCIe several times per centre: use
 * random init for data far larger than the GPU), else from a temporary mapped
 * pinned copy.
 *
 * The device kernels of the streaming path (inertia partials, accumulate,
 * finalise) are ordinary CUDA C in fit_stream_kernels.cu, called through the
 * C launchers of fit_stream_kernels.h (each enqueues on the given stream).
 *
 * Statistics: copy alone = one pass of the chunk copies with nothing else
 * running; compute alone = one iteration's compute on resident chunks (both
 * once per fit, before the first iteration, timed with events, and not
 * counted in `seconds`); measured = GPU time between the ends of consecutive
 * iterations (the first from its first copy). */
#include "fit_stream.h"
#include "error.h"
#include "fit_stream_kernels.h"
#include "init.h"
#include "lloyd.h"
#include "nvtx.h"
#include "stats.h"
#include "variant.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
  FS_MAX_SLOTS = 3,
  FS_NPART = FKS_NPART, /* inertia partials: one per warp of a fixed grid (fit_stream_kernels.h) */
  FS_MIN_AUTO_CHUNK = 4096,
};
#define FS_CHUNK_TARGET_BYTES ((double)(256u << 20)) /* automatic chunks: about this much of x */
#define FS_SCRATCH_PER_POINT 40.0                    /* variant scratch of both instances, bytes per chunk point */
#define FS_FIXED_SLACK ((double)(96u << 20))         /* CUB temp, assign norms, allocator rounding */

typedef struct {
  double inertia;
  unsigned int shift2_bits; /* float bits of the largest squared shift */
  unsigned int pad;
} fs_scalars;

typedef enum { FS_PASS_ITER, FS_PASS_FINAL, FS_PASS_COMPUTE_ONLY } fs_mode;

typedef struct {
  const fkm_fit_options *o;
  size_t es;
  fs_plan plan;
  int nslots;
  size_t budget; /* scratch budget handed to the variants */

  /* host */
  const char *x;
  int32_t *labels_out;
  int x_registered, labels_registered, staged;
  const void *x_view; /* device-accessible view of x (NULL if none) */
  void *stage[FS_MAX_SLOTS];
  char pin_error[256];

  /* device */
  cudaStream_t s_copy, s_comp, s_d2h;
  cudaEvent_t ev_copied[FS_MAX_SLOTS], ev_consumed[FS_MAX_SLOTS], ev_labels[FS_MAX_SLOTS];
  int copied_rec[FS_MAX_SLOTS], consumed_rec[FS_MAX_SLOTS], labels_rec[FS_MAX_SLOTS];
  cudaEvent_t ev_t[4];
  void *xs[FS_MAX_SLOTS];
  int32_t *lab[FS_MAX_SLOTS];
  float *dist;
  double *part;
  float *c_cur, *c_next;
  void *c_dt;
  double *sums;
  int32_t *ctot;
  float *cmean;
  int32_t *ccount;
  fs_scalars *d_sc, *h_sc;

  const fkm_variant *va, *vu;
  void *ast[2], *ust[2];

  int64_t next_copy; /* the next use u whose copy is not enqueued yet */
} fs_ctx;


static double gb(double bytes) { return bytes / 1e9; }

/* ------------------------------------------------------------------ plan */

void fs_make_plan(const fkm_fit_options *o, int64_t cp, fs_plan *p) {
  memset(p, 0, sizeof *p);
  fkm_shape base = {1, 1, o->K, o->D, o->dtype};
  p->shape[0] = p->shape[1] = base;
  if (cp >= o->N) {
    p->whole = 1;
    p->per = cp / o->N < o->B ? cp / o->N : o->B;
    p->cap = p->per * o->N;
    p->nchunks = (o->B + p->per - 1) / p->per;
    const int64_t last = o->B - (p->nchunks - 1) * p->per;
    p->shape[0].B = p->per;
    p->shape[0].N = o->N;
    p->shape[1].B = last;
    p->shape[1].N = o->N;
    p->ninst = last != p->per ? 2 : 1;
  } else {
    p->whole = 0;
    p->cap = cp;
    p->per = (o->N + cp - 1) / cp;
    p->nchunks = o->B * p->per;
    const int64_t last = o->N - (p->per - 1) * cp;
    p->shape[0].N = cp;
    p->shape[1].N = last;
    p->ninst = last != cp ? 2 : 1;
  }
}

fs_chunk fs_chunk_of(const fs_plan *p, const fkm_fit_options *o, int64_t c) {
  fs_chunk ch;
  if (p->whole) {
    ch.b0 = c * p->per;
    ch.nb = o->B - ch.b0 < p->per ? o->B - ch.b0 : p->per;
    ch.n0 = 0;
    ch.len = o->N;
    ch.inst = ch.nb == p->per ? 0 : 1;
  } else {
    ch.b0 = c / p->per;
    ch.nb = 1;
    ch.n0 = (c % p->per) * p->cap;
    ch.len = o->N - ch.n0 < p->cap ? o->N - ch.n0 : p->cap;
    ch.inst = ch.len == p->cap ? 0 : 1;
  }
  return ch;
}

/* Device bytes of one chunk point: the slots' x and labels, dist, variant scratch. */
static double fs_bytes_per_point(const fs_ctx *F, int nslots) {
  return (double)nslots * ((double)F->o->D * (double)F->es + 4.0) + 4.0 + FS_SCRATCH_PER_POINT;
}

/* Points per chunk from free device memory (after the fixed buffers exist). */
static fkm_status fs_auto_chunk(const fs_ctx *F, int64_t *cp) {
  const fkm_fit_options *o = F->o;
  size_t free_b = 0, total_b = 0;
  FKM_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const double chunk_fixed = (double)o->B * (double)o->K * ((double)o->D * 4.0 + 4.0); /* chunk means, counts */
  const double room = 0.9 * (double)free_b - chunk_fixed - FS_FIXED_SLACK;
  const double per_point = fs_bytes_per_point(F, FS_MAX_SLOTS);
  const double fit = room > 0 ? floor(room / per_point) : 0.0;
  const double target = fmax(1.0, floor(FS_CHUNK_TARGET_BYTES / ((double)o->D * (double)F->es)));
  double pts = fmin(fit, target);
  const double total_pts = (double)o->B * (double)o->N;
  if (pts > total_pts) pts = total_pts;
  if (pts < FS_MIN_AUTO_CHUNK && pts < total_pts)
    return fkm_fail(FKM_ERR_OOM,
                    "streaming fit: %.2f GB of GPU memory free, %.3f GB of it would hold only %.0f points per chunk "
                    "(%.0f B per point in %d slots), fewer than %d",
                    gb((double)free_b), gb(room > 0 ? room : 0), fit, per_point, FS_MAX_SLOTS, FS_MIN_AUTO_CHUNK);
  *cp = (int64_t)pts;
  return FKM_OK;
}

/* ---------------------------------------------------------- host memory */

static fkm_status fs_pin_host(fs_ctx *F, const void *x, int32_t *labels) {
  const fkm_fit_options *o = F->o;
  const size_t xbytes = (size_t)(o->B * o->N * o->D) * F->es, lbytes = (size_t)(o->B * o->N) * 4;
  F->x = (const char *)x;
  F->labels_out = labels;

  struct cudaPointerAttributes a;
  memset(&a, 0, sizeof a);
  if (cudaPointerGetAttributes(&a, x) != cudaSuccess) {
    (void)cudaGetLastError();
    a.type = cudaMemoryTypeUnregistered;
  }
  if (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) {
    F->x_view = x; /* device or managed memory: copies work, no pinning needed */
  } else if (a.type == cudaMemoryTypeHost) {
    F->x_view = a.devicePointer; /* already page-locked by the caller */
  } else {
    cudaError_t e = cudaHostRegister((void *)(uintptr_t)x, xbytes, cudaHostRegisterMapped);
    if (e != cudaSuccess) { /* a read-only mapping (flashkm fit maps its --input) registers only as such */
      (void)cudaGetLastError();
      e = cudaHostRegister((void *)(uintptr_t)x, xbytes, cudaHostRegisterMapped | cudaHostRegisterReadOnly);
    }
    if (e == cudaSuccess) {
      F->x_registered = 1;
      void *dv = NULL;
      if (cudaHostGetDevicePointer(&dv, (void *)(uintptr_t)x, 0) == cudaSuccess) F->x_view = dv;
      else (void)cudaGetLastError();
    } else {
      (void)cudaGetLastError();
      snprintf(F->pin_error, sizeof F->pin_error, "%s", cudaGetErrorString(e));
      F->staged = 1;
    }
  }

  memset(&a, 0, sizeof a);
  if (cudaPointerGetAttributes(&a, labels) != cudaSuccess) {
    (void)cudaGetLastError();
    a.type = cudaMemoryTypeUnregistered;
  }
  if (a.type == cudaMemoryTypeUnregistered) {
    if (cudaHostRegister(labels, lbytes, cudaHostRegisterDefault) == cudaSuccess) F->labels_registered = 1;
    else (void)cudaGetLastError(); /* pageable: the label copies still work, synchronously */
  }
  return FKM_OK;
}

static fkm_status fs_alloc_stage(fs_ctx *F) {
  if (!F->staged) return FKM_OK;
  const size_t bytes = (size_t)(F->plan.cap * F->o->D) * F->es;
  for (int s = 0; s < F->nslots; s++) {
    cudaError_t e = cudaMallocHost(&F->stage[s], bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      F->stage[s] = NULL;
      return fkm_fail(FKM_ERR_OOM,
                      "streaming fit: x (%.2f GB) could not be page-locked (%s), and the pinned staging ring of %d x "
                      "%.3f GB (%lld points of %lld x %zu B) could not be allocated either: %s",
                      gb((double)(F->o->B * F->o->N * F->o->D) * (double)F->es), F->pin_error, F->nslots,
                      gb((double)bytes), (long long)F->plan.cap, (long long)F->o->D, F->es, cudaGetErrorString(e));
    }
  }
  return FKM_OK;
}

/* ------------------------------------------------------ device buffers */

static fkm_status fs_alloc_fixed(fs_ctx *F) {
  const fkm_fit_options *o = F->o;
  const size_t nc = (size_t)(o->B * o->K * o->D), nk = (size_t)(o->B * o->K);
  FKM_CUDA(cudaStreamCreateWithFlags(&F->s_copy, cudaStreamNonBlocking));
  FKM_CUDA(cudaStreamCreateWithFlags(&F->s_comp, cudaStreamNonBlocking));
  FKM_CUDA(cudaStreamCreateWithFlags(&F->s_d2h, cudaStreamNonBlocking));
  for (int s = 0; s < FS_MAX_SLOTS; s++) {
    FKM_CUDA(cudaEventCreateWithFlags(&F->ev_copied[s], cudaEventDisableTiming));
    FKM_CUDA(cudaEventCreateWithFlags(&F->ev_consumed[s], cudaEventDisableTiming));
    FKM_CUDA(cudaEventCreateWithFlags(&F->ev_labels[s], cudaEventDisableTiming));
  }
  for (int i = 0; i < 4; i++) FKM_CUDA(cudaEventCreate(&F->ev_t[i]));
  FKM_CUDA(cudaMalloc((void **)&F->c_cur, nc * 4));
  FKM_CUDA(cudaMalloc((void **)&F->c_next, nc * 4));
  FKM_CUDA(cudaMalloc(&F->c_dt, nc * F->es));
  FKM_CUDA(cudaMalloc((void **)&F->sums, nc * 8));
  FKM_CUDA(cudaMalloc((void **)&F->ctot, nk * 4));
  FKM_CUDA(cudaMalloc((void **)&F->part, sizeof(double) * FS_NPART));
  FKM_CUDA(cudaMalloc((void **)&F->d_sc, sizeof(fs_scalars)));
  FKM_CUDA(cudaMallocHost((void **)&F->h_sc, sizeof(fs_scalars)));
  memset(F->h_sc, 0, sizeof(fs_scalars));
  return FKM_OK;
}

static void fs_free_chunks(fs_ctx *F) {
  for (int i = 0; i < 2; i++) {
    if (F->ast[i] && F->va->teardown) F->va->teardown(F->ast[i]);
    if (F->ust[i] && F->vu->teardown) F->vu->teardown(F->ust[i]);
    F->ast[i] = F->ust[i] = NULL;
  }
  for (int s = 0; s < FS_MAX_SLOTS; s++) {
    cudaFree(F->xs[s]);
    cudaFree(F->lab[s]);
    F->xs[s] = NULL;
    F->lab[s] = NULL;
    if (F->stage[s]) cudaFreeHost(F->stage[s]);
    F->stage[s] = NULL;
  }
  cudaFree(F->dist);
  cudaFree(F->cmean);
  cudaFree(F->ccount);
  F->dist = F->cmean = NULL;
  F->ccount = NULL;
}

/* The problem of chunk ch in slot s: assign half (x, c, labels, dist) and update half (x, labels_in, c_old, c_new, counts). */
static fkm_problem fs_problem(const fs_ctx *F, const fs_chunk *ch, int s, int update) {
  const fkm_fit_options *o = F->o;
  fkm_problem p;
  memset(&p, 0, sizeof p);
  p.s = F->plan.shape[ch->inst];
  p.x = F->xs[s];
  p.scratch_budget = F->budget;
  const int64_t coff = ch->b0 * o->K * o->D;
  if (!update) {
    p.c = (const char *)F->c_dt + (size_t)coff * F->es;
    p.labels = F->lab[s];
    p.dist = F->dist;
  } else {
    p.labels_in = F->lab[s];
    p.c_old = F->c_cur + coff;
    p.c_new = F->cmean;
    p.counts = F->ccount;
  }
  return p;
}

static fkm_status fs_alloc_chunks(fs_ctx *F) {
  const fkm_fit_options *o = F->o;
  const fs_plan *p = &F->plan;
  const size_t cap = (size_t)p->cap;
  const size_t ck = (size_t)((p->whole ? p->per : 1) * o->K);
  F->budget = (size_t)48 * cap + ((size_t)64 << 20);
  for (int s = 0; s < F->nslots; s++) {
    FKM_CUDA(cudaMalloc(&F->xs[s], cap * (size_t)o->D * F->es));
    FKM_CUDA(cudaMalloc((void **)&F->lab[s], cap * 4));
  }
  FKM_CUDA(cudaMalloc((void **)&F->dist, cap * 4));
  FKM_CUDA(cudaMalloc((void **)&F->cmean, ck * (size_t)o->D * 4));
  FKM_CUDA(cudaMalloc((void **)&F->ccount, ck * 4));
  for (int i = 0; i < p->ninst; i++) {
    /* The chunk of instance i: chunk 0 for the full shape, the last chunk for the short one. */
    fs_chunk ch = fs_chunk_of(p, F->o, i == 0 ? 0 : p->nchunks - 1);
    ch.inst = i;
    fkm_problem a = fs_problem(F, &ch, 0, 0), u = fs_problem(F, &ch, 0, 1);
    if (F->va->setup) FKM_TRY(F->va->setup(&a, &F->ast[i]));
    if (F->vu->setup) FKM_TRY(F->vu->setup(&u, &F->ust[i]));
  }
  return FKM_OK;
}

static void fs_cleanup(fs_ctx *F) {
  /* Nothing may still read or write what is freed or unregistered below. */
  if (F->s_copy) cudaStreamSynchronize(F->s_copy);
  if (F->s_comp) cudaStreamSynchronize(F->s_comp);
  if (F->s_d2h) cudaStreamSynchronize(F->s_d2h);
  if (F->va && F->vu) fs_free_chunks(F);
  cudaFree(F->c_cur);
  cudaFree(F->c_next);
  cudaFree(F->c_dt);
  cudaFree(F->sums);
  cudaFree(F->ctot);
  cudaFree(F->part);
  cudaFree(F->d_sc);
  if (F->h_sc) cudaFreeHost(F->h_sc);
  for (int s = 0; s < FS_MAX_SLOTS; s++) {
    if (F->ev_copied[s]) cudaEventDestroy(F->ev_copied[s]);
    if (F->ev_consumed[s]) cudaEventDestroy(F->ev_consumed[s]);
    if (F->ev_labels[s]) cudaEventDestroy(F->ev_labels[s]);
  }
  for (int i = 0; i < 4; i++)
    if (F->ev_t[i]) cudaEventDestroy(F->ev_t[i]);
  if (F->s_copy) cudaStreamDestroy(F->s_copy);
  if (F->s_comp) cudaStreamDestroy(F->s_comp);
  if (F->s_d2h) cudaStreamDestroy(F->s_d2h);
  if (F->x_registered) cudaHostUnregister((void *)(uintptr_t)F->x);
  if (F->labels_registered) cudaHostUnregister(F->labels_out);
  (void)cudaGetLastError(); /* the failure, if any, is already in fkm_last_error() */
  memset(F, 0, sizeof *F);
}

/* ------------------------------------------------------------ init */

/* Initial centroids into c_cur, from a device-accessible view of x. */
static fkm_status fs_init(fs_ctx *F) {
  const fkm_fit_options *o = F->o;
  const size_t xbytes = (size_t)(o->B * o->N * o->D) * F->es;
  const fkm_shape s = {o->B, o->N, o->K, o->D, o->dtype};
  void *dcopy = NULL, *mirror = NULL;
  const void *view = NULL;

  /* 1. A temporary device copy when it fits comfortably (with k-means++'s scratch). */
  size_t free_b = 0, total_b = 0;
  FKM_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const double kpp = o->init == FKM_INIT_RANDOM ? 0.0
                                                : 40.0 * (double)o->N + 80.0 * (double)o->K * (double)o->D + (double)(64u << 20);
  if ((double)xbytes + kpp <= 0.8 * (double)free_b) {
    if (cudaMalloc(&dcopy, xbytes) == cudaSuccess) {
      cudaError_t e = cudaMemcpyAsync(dcopy, F->x, xbytes, cudaMemcpyDefault, F->s_comp);
      if (e != cudaSuccess) {
        cudaFree(dcopy);
        return fkm_cuda_fail_at(e, "streaming fit: x to the GPU for the initialisation", __FILE__, __LINE__);
      }
      view = dcopy;
    } else {
      (void)cudaGetLastError();
      dcopy = NULL;
    }
  }
  /* 2. The mapped host view (registered or caller-pinned x, or device/managed x). */
  if (!view) view = F->x_view;
  /* 3. Pageable memory the GPU can read directly (HMM / ATS systems). */
  if (!view) {
    int dev = 0, pageable = 0;
    FKM_CUDA(cudaGetDevice(&dev));
    if (cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      pageable = 0;
    }
    if (pageable) view = F->x;
  }
  /* 4. A temporary mapped pinned copy. */
  if (!view) {
    cudaError_t e = cudaHostAlloc(&mirror, xbytes, cudaHostAllocMapped);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return fkm_fail(FKM_ERR_OOM,
                      "streaming fit: the initialisation reads x from the GPU, but x (%.2f GB) could not be page-locked "
                      "(%s), does not fit in GPU memory (%.2f GB free) and no pinned copy of it could be made (%s)",
                      gb((double)xbytes), F->pin_error, gb((double)free_b), cudaGetErrorString(e));
    }
    memcpy(mirror, F->x, xbytes);
    void *dv = NULL;
    e = cudaHostGetDevicePointer(&dv, mirror, 0);
    if (e != cudaSuccess) {
      cudaFreeHost(mirror);
      return fkm_cuda_fail_at(e, "cudaHostGetDevicePointer(initialisation copy of x)", __FILE__, __LINE__);
    }
    view = dv;
  }

  fkm_nvtx_push("init");
  fkm_status st = fkm_init_centroids(&s, o->init, o->seed, view, F->c_cur, F->s_comp);
  fkm_nvtx_pop();
  cudaError_t e = cudaStreamSynchronize(F->s_comp);
  if (st == FKM_OK && e != cudaSuccess) st = fkm_cuda_fail_at(e, "streaming fit: initialisation", __FILE__, __LINE__);
  if (dcopy) cudaFree(dcopy);
  if (mirror) cudaFreeHost(mirror);
  return st;
}

/* ------------------------------------------------------------ pipeline */

/* Copy chunk c into slot s (copy stream). wait: after the compute that last used the slot. */
static fkm_status fs_h2d(fs_ctx *F, int64_t c, int s, int wait) {
  const fkm_fit_options *o = F->o;
  const fs_chunk ch = fs_chunk_of(&F->plan, F->o, c);
  const size_t bytes = (size_t)(ch.nb * ch.len * o->D) * F->es;
  const char *src = F->x + (size_t)((ch.b0 * o->N + ch.n0) * o->D) * F->es;
  fkm_nvtx_push("H2D chunk");
  cudaError_t e = cudaSuccess;
  if (wait && F->consumed_rec[s]) e = cudaStreamWaitEvent(F->s_copy, F->ev_consumed[s], 0);
  if (e == cudaSuccess && F->staged) {
    /* The previous copy out of stage[s] must be done before the host refills it. */
    if (F->copied_rec[s]) e = cudaEventSynchronize(F->ev_copied[s]);
    if (e == cudaSuccess) {
      memcpy(F->stage[s], src, bytes);
      src = (const char *)F->stage[s];
    }
  }
  if (e == cudaSuccess) e = cudaMemcpyAsync(F->xs[s], src, bytes, cudaMemcpyDefault, F->s_copy);
  if (e == cudaSuccess) e = cudaEventRecord(F->ev_copied[s], F->s_copy);
  fkm_nvtx_pop();
  if (e != cudaSuccess) return fkm_cuda_fail_at(e, "streaming fit: chunk copy to the GPU", __FILE__, __LINE__);
  F->copied_rec[s] = 1;
  return FKM_OK;
}

/* The compute of chunk c in slot s (compute stream). */
static fkm_status fs_compute(fs_ctx *F, int64_t c, int s, fs_mode mode) {
  const fkm_fit_options *o = F->o;
  const fs_chunk ch = fs_chunk_of(&F->plan, F->o, c);
  const int64_t npts = ch.nb * ch.len;
  if (mode != FS_PASS_COMPUTE_ONLY) FKM_CUDA(cudaStreamWaitEvent(F->s_comp, F->ev_copied[s], 0));
  if (mode == FS_PASS_FINAL && F->labels_rec[s]) FKM_CUDA(cudaStreamWaitEvent(F->s_comp, F->ev_labels[s], 0));

  fkm_nvtx_push("assign chunk");
  fkm_problem a = fs_problem(F, &ch, s, 0);
  fkm_status st = F->va->run(&a, F->ast[ch.inst], F->s_comp);
  if (st == FKM_OK) st = fkm_stream_dist_partial(F->dist, npts, F->part, F->s_comp);
  if (st == FKM_OK) st = fkm_stream_inertia(F->part, FS_NPART, &F->d_sc->inertia, F->s_comp);
  fkm_nvtx_pop();
  FKM_TRY(st);

  if (mode == FS_PASS_FINAL) {
    /* Only the labels of this pass are wanted: no update. */
    FKM_CUDA(cudaEventRecord(F->ev_consumed[s], F->s_comp));
    F->consumed_rec[s] = 1;
    FKM_CUDA(cudaStreamWaitEvent(F->s_d2h, F->ev_consumed[s], 0));
    FKM_CUDA(cudaMemcpyAsync(F->labels_out + ch.b0 * o->N + ch.n0, F->lab[s], (size_t)npts * 4, cudaMemcpyDefault,
                             F->s_d2h));
    FKM_CUDA(cudaEventRecord(F->ev_labels[s], F->s_d2h));
    F->labels_rec[s] = 1;
    return FKM_OK;
  }

  fkm_nvtx_push("update chunk");
  fkm_problem u = fs_problem(F, &ch, s, 1);
  st = F->vu->run(&u, F->ust[ch.inst], F->s_comp);
  if (st == FKM_OK) {
    cudaError_t e = cudaEventRecord(F->ev_consumed[s], F->s_comp); /* x[s] and lab[s] are free again */
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "cudaEventRecord(consumed)", __FILE__, __LINE__);
    else F->consumed_rec[s] = 1;
  }
  if (st == FKM_OK) {
    const int64_t coff = ch.b0 * o->K * o->D;
    st = fkm_stream_accumulate(F->cmean, F->ccount, ch.nb * o->K, o->D, F->sums + coff, F->ctot + ch.b0 * o->K,
                               F->s_comp);
  }
  fkm_nvtx_pop();
  return st;
}

/* One pass over the data: pass index p (iterations 0.., then the final pass). */
static fkm_status fs_pass(fs_ctx *F, int64_t p, fs_mode mode) {
  const fkm_fit_options *o = F->o;
  const int64_t nc = o->B * o->K * o->D, nch = F->plan.nchunks;
  FKM_TRY(fkm_cast_centroids(F->c_cur, F->c_dt, nc, o->dtype, F->s_comp));
  FKM_CUDA(cudaMemsetAsync(F->d_sc, 0, sizeof(fs_scalars), F->s_comp));
  if (mode != FS_PASS_FINAL) {
    FKM_CUDA(cudaMemsetAsync(F->sums, 0, (size_t)nc * 8, F->s_comp));
    FKM_CUDA(cudaMemsetAsync(F->ctot, 0, (size_t)(o->B * o->K) * 4, F->s_comp));
  }
  /* Copies may run ahead into the next pass, which exists unless this is the final one. */
  const int64_t limit = (mode == FS_PASS_FINAL ? p + 1 : p + 2) * nch;
  for (int64_t c = 0; c < nch; c++) {
    int s;
    if (mode == FS_PASS_COMPUTE_ONLY) {
      s = (int)(c % F->nslots);
    } else {
      const int64_t u = p * nch + c;
      while (F->next_copy < limit && F->next_copy <= u + F->nslots - 1) {
        FKM_TRY(fs_h2d(F, F->next_copy % nch, (int)(F->next_copy % F->nslots), 1));
        F->next_copy++;
      }
      s = (int)(u % F->nslots);
    }
    FKM_TRY(fs_compute(F, c, s, mode));
  }
  if (mode != FS_PASS_FINAL) {
    fkm_nvtx_push("finalise");
    fkm_status st = fkm_stream_finalise(F->sums, F->ctot, F->c_cur, F->c_next, o->B * o->K, o->D,
                                        &F->d_sc->shift2_bits, F->s_comp);
    fkm_nvtx_pop();
    FKM_TRY(st);
  }
  FKM_CUDA(cudaMemcpyAsync(F->h_sc, F->d_sc, sizeof(fs_scalars), cudaMemcpyDeviceToHost, F->s_comp));
  return FKM_OK;
}

static fkm_status fs_elapsed(cudaEvent_t a, cudaEvent_t b, double *seconds) {
  float ms = 0.f;
  FKM_CUDA(cudaEventElapsedTime(&ms, a, b));
  *seconds = 1e-3 * (double)ms;
  return FKM_OK;
}

/* Copy alone: one pass of the chunk copies, nothing else running. Compute
 * alone: one iteration's compute on the chunks now resident. Each is timed
 * after an untimed warm-up (the first copies; a whole compute pass, so the
 * lazy module loading of the first launches is not timed — they
 * would inflate "alone" and with it the efficiency). */
static fkm_status fs_calibrate(fs_ctx *F, double *copy_s, double *compute_s) {
  for (int s = 0; s < F->nslots; s++) FKM_TRY(fs_h2d(F, s, s, 0));
  FKM_CUDA(cudaStreamSynchronize(F->s_copy));
  FKM_CUDA(cudaEventRecord(F->ev_t[0], F->s_copy));
  for (int64_t c = 0; c < F->plan.nchunks; c++) FKM_TRY(fs_h2d(F, c, (int)(c % F->nslots), 0));
  FKM_CUDA(cudaEventRecord(F->ev_t[1], F->s_copy));
  FKM_CUDA(cudaStreamSynchronize(F->s_copy));
  FKM_TRY(fs_elapsed(F->ev_t[0], F->ev_t[1], copy_s));

  FKM_TRY(fs_pass(F, 0, FS_PASS_COMPUTE_ONLY));
  FKM_CUDA(cudaStreamSynchronize(F->s_comp));
  FKM_CUDA(cudaEventRecord(F->ev_t[2], F->s_comp));
  FKM_TRY(fs_pass(F, 0, FS_PASS_COMPUTE_ONLY));
  FKM_CUDA(cudaEventRecord(F->ev_t[3], F->s_comp));
  FKM_CUDA(cudaStreamSynchronize(F->s_comp));
  FKM_TRY(fs_elapsed(F->ev_t[2], F->ev_t[3], compute_s));
  return FKM_OK;
}

static fkm_status fs_alloc_history(const fkm_fit_options *o, fkm_fit_result *r) {
  const size_t n = (size_t)o->max_iter;
  r->inertia_history = malloc(sizeof(double) * n);
  r->shift_history = malloc(sizeof(double) * n);
  r->stream_h2d_bytes = malloc(sizeof(int64_t) * n);
  r->stream_copy_seconds = malloc(sizeof(double) * n);
  r->stream_compute_seconds = malloc(sizeof(double) * n);
  r->stream_iter_seconds = malloc(sizeof(double) * n);
  r->stream_efficiency = malloc(sizeof(double) * n);
  if (!r->inertia_history || !r->shift_history || !r->stream_h2d_bytes || !r->stream_copy_seconds ||
      !r->stream_compute_seconds || !r->stream_iter_seconds || !r->stream_efficiency)
    return fkm_fail(FKM_ERR_OOM, "out of host memory for the iteration history (%d iterations)", o->max_iter);
  return FKM_OK;
}

/* Chunk buffers and variant instances for o->chunk_points, or (automatic)
 * sized from free memory, halving on out-of-memory. */
static fkm_status fs_setup_chunks(fs_ctx *F) {
  const fkm_fit_options *o = F->o;
  int64_t cp = o->chunk_points;
  const int automatic = cp <= 0;
  if (automatic) FKM_TRY(fs_auto_chunk(F, &cp));
  for (;;) {
    fs_make_plan(o, cp, &F->plan);
    F->nslots = F->plan.nchunks < FS_MAX_SLOTS ? (int)F->plan.nchunks : FS_MAX_SLOTS;
    fkm_status st = fs_alloc_chunks(F);
    if (st == FKM_OK) return fs_alloc_stage(F);
    fs_free_chunks(F);
    if (st != FKM_ERR_OOM) return st;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
    if (!automatic || cp / 2 < FS_MIN_AUTO_CHUNK) {
      char why[512];
      snprintf(why, sizeof why, "%s", fkm_last_error());
      return fkm_fail(FKM_ERR_OOM,
                      "streaming fit: chunks of %lld points need about %.3f GB of GPU memory (%d slots x %lld x %zu B "
                      "of x and labels, distances, variant scratch), %.3f GB free: %s",
                      (long long)F->plan.cap, gb(fs_bytes_per_point(F, F->nslots) * (double)F->plan.cap), F->nslots,
                      (long long)(F->plan.cap * o->D), F->es, gb((double)free_b), why);
    }
    cp /= 2;
  }
}

static fkm_status fs_run(fs_ctx *F, const void *x, int32_t *labels, float *centroids, fkm_fit_result *r) {
  const fkm_fit_options *o = F->o;
  const char *an = o->assign_variant ? o->assign_variant : "assign/flash";
  const char *un = o->update_variant ? o->update_variant : "update/sort_inverse_det";
  F->va = fkm_variant_find(an);
  F->vu = fkm_variant_find(un);
  if (!F->va || F->va->op != FKM_OP_ASSIGN) return fkm_fail(FKM_ERR_INPUT, "no assign variant named '%s'", an);
  if (!F->vu || F->vu->op != FKM_OP_UPDATE) return fkm_fail(FKM_ERR_INPUT, "no update variant named '%s'", un);
  if (fkm_variant_is_cpu(F->va) || fkm_variant_is_cpu(F->vu))
    return fkm_fail(FKM_ERR_INPUT, "fit runs on the GPU: '%s' is a CPU variant", fkm_variant_is_cpu(F->va) ? an : un);

  FKM_TRY(fs_alloc_fixed(F));
  FKM_TRY(fs_pin_host(F, x, labels));

  const double t0 = fkm_now_s();
  FKM_TRY(fs_init(F));
  r->init_seconds = fkm_now_s() - t0;

  FKM_TRY(fs_setup_chunks(F));
  FKM_TRY(fs_alloc_history(o, r));
  const int64_t pass_bytes = o->B * o->N * o->D * (int64_t)F->es;
  r->streamed = 1;
  r->chunk_points_used = F->plan.cap;
  r->stream_chunks = (int)F->plan.nchunks;
  r->stream_slots = F->nslots;
  r->stream_staged = F->staged;
  if (o->progress)
    fprintf(stderr, "fit: streaming %.3f GB from %s host memory: %lld chunks of %lld points (%s), %d device slots\n",
            gb((double)pass_bytes), F->staged ? "staged" : "page-locked", (long long)F->plan.nchunks,
            (long long)F->plan.cap, F->plan.whole ? "whole batches" : "point ranges", F->nslots);

  const double tc = fkm_now_s();
  double copy_alone = 0, compute_alone = 0;
  FKM_TRY(fs_calibrate(F, &copy_alone, &compute_alone));
  r->stream_calibration_seconds = fkm_now_s() - tc;
  const double best = copy_alone > compute_alone ? copy_alone : compute_alone;
  if (o->progress)
    fprintf(stderr, "fit: one pass: copy alone %.3f ms (%.1f GB/s), compute alone %.3f ms\n", 1e3 * copy_alone,
            copy_alone > 0 ? gb((double)pass_bytes) / copy_alone : 0.0, 1e3 * compute_alone);

  cudaEvent_t ev_prev = F->ev_t[0], ev_cur = F->ev_t[1];
  FKM_CUDA(cudaEventRecord(ev_prev, F->s_copy)); /* before the first copy of the first iteration */
  double prev_inertia = INFINITY;
  for (int it = 0; it < o->max_iter; it++) {
    fkm_nvtx_push("iteration");
    fkm_status st = fs_pass(F, it, FS_PASS_ITER);
    cudaError_t e = cudaSuccess;
    if (st == FKM_OK) e = cudaEventRecord(ev_cur, F->s_comp);
    if (st == FKM_OK && e == cudaSuccess) e = cudaEventSynchronize(ev_cur);
    if (st == FKM_OK && e != cudaSuccess) st = fkm_cuda_fail_at(e, "streaming Lloyd iteration", __FILE__, __LINE__);
    fkm_nvtx_pop();
    FKM_TRY(st);
    double measured = 0;
    FKM_TRY(fs_elapsed(ev_prev, ev_cur, &measured));
    cudaEvent_t t = ev_prev;
    ev_prev = ev_cur;
    ev_cur = t;

    float s2;
    memcpy(&s2, &F->h_sc->shift2_bits, sizeof s2);
    const double inertia = F->h_sc->inertia, shift = sqrt((double)s2);
    r->inertia_history[it] = inertia;
    r->shift_history[it] = shift;
    r->stream_h2d_bytes[it] = pass_bytes;
    r->stream_copy_seconds[it] = copy_alone;
    r->stream_compute_seconds[it] = compute_alone;
    r->stream_iter_seconds[it] = measured;
    r->stream_efficiency[it] = measured > 0 ? best / measured : 0.0;
    r->iterations = it + 1;
    r->history_len = r->iterations;
    float *tc2 = F->c_cur;
    F->c_cur = F->c_next;
    F->c_next = tc2;
    if (o->progress)
      fprintf(stderr, "fit: iteration %4d  inertia %.9g  shift %.3g  %.3f s  (%.3f ms, overlap %.2f)\n", it + 1,
              inertia, shift, fkm_now_s() - t0 - r->stream_calibration_seconds, 1e3 * measured,
              r->stream_efficiency[it]);
    if (!(inertia == inertia))
      return fkm_fail(FKM_ERR_INPUT, "inertia became NaN at iteration %d: the data hold NaN or Inf", it + 1);
    const double rel = fabs(prev_inertia - inertia) / (inertia > 0 ? inertia : 1.0);
    if ((o->tol_mode == FKM_TOL_SHIFT && shift <= o->tol) || (o->tol_mode == FKM_TOL_INERTIA && rel <= o->tol)) {
      r->converged = 1;
      break;
    }
    prev_inertia = inertia;
  }

  /* Final pass: labels (written back chunk by chunk) and inertia of the returned centroids. */
  fkm_nvtx_push("final assignment");
  fkm_status st = fs_pass(F, r->iterations, FS_PASS_FINAL);
  fkm_nvtx_pop();
  FKM_TRY(st);
  FKM_CUDA(cudaStreamSynchronize(F->s_comp));
  FKM_CUDA(cudaStreamSynchronize(F->s_d2h));
  r->inertia = F->h_sc->inertia;
  r->seconds = fkm_now_s() - t0 - r->stream_calibration_seconds;
  FKM_CUDA(cudaMemcpy(centroids, F->c_cur, (size_t)(o->B * o->K * o->D) * 4, cudaMemcpyDeviceToHost));
  return FKM_OK;
}

fkm_status fkm_fit_stream(const fkm_fit_options *o, const void *x, int32_t *labels, float *centroids,
                          fkm_fit_result *r) {
  fs_ctx F;
  memset(&F, 0, sizeof F);
  F.o = o;
  F.es = fkm_dtype_size(o->dtype);
  fkm_status st = fs_run(&F, x, labels, centroids, r);
  fs_cleanup(&F);
  if (st != FKM_OK) r->history_len = r->iterations; /* what ran before the failure stays readable */
  return st;
}
