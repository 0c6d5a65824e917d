/* dist.c — `flashkm dist` (see dist.h): data-parallel Lloyd through NCCL.
 *
 * Layout of one run: the supervisor (on one host) or the launcher starts R
 * ranks; each generates the config's seeded data on its GPU (bit-identical on
 * every rank), keeps its slice of every problem's points, and computes the
 * same initial centroids from the whole data before freeing it. Per
 * iteration, on the rank's stream:
 *   cast centroids -> FlashAssign (slice) -> fixed-point sums and counts
 *   (slice) -> ncclAllReduce (int64 sums and counts, fp64 inertia) -> means
 *   -> largest shift -> one small copy to the host
 * with events between the steps (compute, all-reduce, whole iteration).
 * Rank 0 gathers every rank's medians (ncclAllGather) and writes a partial
 * report; the supervisor merges the 1-GPU and R-GPU reports into one results
 * file in the schema of results/SCHEMA.md, with per-rank times, all-reduce
 * time, speedup, scaling efficiency and the bitwise comparison of the
 * centroids with the 1-GPU run. The 1-GPU run is validated against the fp64
 * reference (its last update and, on sampled rows, its last assignment). */
#include "dist.h"

#include "config.h"
#include "data.h"
#include "device.h"
#include "dtype.h"
#include "error.h"
#include "flashkm.h"
#include "info.h"
#include "results.h"
#include "runner.h"
#include "stats.h"
#include "validate.h"
#include "variant.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef FKM_HAVE_NCCL
#include "fixed_point.h"
#include "init.h"
#include "dist_kernels.h"
#include "lloyd.h"
#include "nvtx.h"
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

#define DIST_MAX_GPUS 64
#define DIST_GATHER 5 /* per rank: compute, all-reduce and iteration medians (ms), points, GPU */

static const char *usage_dist =
    "usage: flashkm dist --gpus LIST --n N --k K --d D [--b B] [--dtype fp16|bf16|fp32]\n"
    "                    [--data blobs|normal|uniform|skewed] [--seed S] [--iters I | --fit [--tol T] [--max-iter M]]\n"
    "                    [--init random|kmeans++|kmeans||] [--assign VARIANT] [--no-scaling] [--timeout S]\n"
    "                    [--stream-chunk P] [-o RESULTS.json] [--centroids C.bin] [-q]\n"
    "       flashkm dist --rank R --nranks P --id-file PATH [--device G] (same shape options)\n"
    "\n"
    "Data-parallel Lloyd over several GPUs, one process per GPU, through NCCL: every rank\n"
    "assigns its slice of the points with FlashAssign and sums it per cluster in exact 64-bit\n"
    "fixed point; one all-reduce of the integer sums per iteration gives every rank the same\n"
    "centroids, bitwise equal to a 1-GPU run. The data are the harness's seeded generator's\n"
    "(the same as `flashkm run` and `flashkm gen`).\n"
    "\n"
    "  --gpus LIST      this host's GPUs, e.g. 0,1 (or a count: 2 = GPUs 0 and 1): forks one rank each\n"
    "                   and supervises them; first runs the same problem on the first GPU alone (for\n"
    "                   the speedup, the scaling efficiency and the bitwise check) unless --no-scaling\n"
    "  --iters I        fixed iterations, timed each (default 20): the `lloyd` op\n"
    "  --fit            iterate until the largest centroid shift <= --tol (1e-4) or --max-iter (300)\n"
    "  --init           initial centroids, computed identically on every rank (default random)\n"
    "  --stream-chunk P out of core: each rank keeps its slice in pinned host memory and streams it\n"
    "                   through three device buffers in chunks of P points, the copy of the next chunk\n"
    "                   overlapping the work on this one (B = 1); the same centroids as in memory, bitwise\n"
    "  --timeout S      a collective or the bootstrap that makes no progress for S seconds (default\n"
    "                   300) ends the rank with a message: a dead peer never hangs the others\n"
    "  -o FILE          results file (default flashkm_dist.json)\n"
    "  --centroids F    the final centroids, raw fp32 [B][K][D] (rank 0)\n"
    "  --rank, --nranks, --id-file, --device   one rank of a job started by you or a launcher, on\n"
    "                   any host: rank 0 writes the NCCL id to the id file (a path every host sees),\n"
    "                   the others wait for it. Without --rank, OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/\n"
    "                   SIZE or SLURM_PROCID/NTASKS are used, and the local rank picks the GPU.\n"
    "\n"
    "NCCL_NVLS_ENABLE is set to 0 for every rank. exit status: 0 ok, 1 a rank failed or a check\n"
    "failed, 2 bad command line or a build without NCCL.\n";

typedef struct {
  int64_t B, N, K, D;
  fkm_dtype dtype;
  fkm_data_spec data;
  uint64_t seed;
  int iters, fit, max_iter;
  double tol, timeout_s;
  fkm_init init;
  const char *assign;
  int gpus[DIST_MAX_GPUS], n_gpus;
  int rank, nranks, device;
  const char *id_file, *out, *centroids;
  int scaling, quiet;
  int64_t stream_chunk; /* > 0: each rank's slice stays in pinned host memory, streamed in chunks of this many points */
  int argc;
  char **argv;
} dist_opts;


static int parse_i64(const char *s, int64_t lo, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !end || *end || v < lo) return 0;
  *out = v;
  return 1;
}

static int parse_gpus(const char *s, dist_opts *o) {
  int64_t count;
  if (!strchr(s, ',') && parse_i64(s, 1, &count)) { /* a count */
    if (count > DIST_MAX_GPUS) return 0;
    for (int i = 0; i < count; i++) o->gpus[i] = i;
    o->n_gpus = (int)count;
    return 1;
  }
  o->n_gpus = 0;
  const char *p = s;
  while (*p) {
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || v > 1023 || o->n_gpus >= DIST_MAX_GPUS) return 0;
    for (int i = 0; i < o->n_gpus; i++)
      if (o->gpus[i] == (int)v) return 0;
    o->gpus[o->n_gpus++] = (int)v;
    if (*end == ',') end++;
    else if (*end) return 0;
    p = end;
  }
  return o->n_gpus > 0;
}

static int env_int(const char *const *names, int *out) {
  for (int i = 0; names[i]; i++) {
    const char *v = getenv(names[i]);
    int64_t x;
    if (v && parse_i64(v, 0, &x)) {
      *out = (int)x;
      return 1;
    }
  }
  return 0;
}

/* 0 ok, else the exit status of a usage error (message printed). */
static int parse_args(int argc, char **argv, dist_opts *o) {
  memset(o, 0, sizeof *o);
  o->B = 1;
  o->dtype = FKM_F16;
  o->data.kind = FKM_DATA_BLOBS;
  snprintf(o->data.label, sizeof o->data.label, "blobs");
  o->seed = 1;
  o->iters = 20;
  o->max_iter = 300;
  o->tol = 1e-4;
  o->timeout_s = 300;
  o->init = FKM_INIT_RANDOM;
  o->assign = "assign/flash";
  o->rank = o->nranks = o->device = -1;
  o->scaling = 1;
  o->out = "flashkm_dist.json";
  int have_iters = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--fit")) { o->fit = 1; continue; }
    if (!strcmp(a, "--no-scaling")) { o->scaling = 0; continue; }
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { o->quiet = 1; continue; }
    if (a[0] != '-' || i + 1 >= argc) {
      fprintf(stderr, "flashkm dist: %s '%s'\n%s", a[0] == '-' ? "missing value after" : "unexpected argument", a,
              usage_dist);
      return FKM_EXIT_USAGE;
    }
    const char *v = argv[++i];
    int64_t x = 0;
    int ok = 1;
    if (!strcmp(a, "--gpus")) ok = parse_gpus(v, o);
    else if (!strcmp(a, "--n")) ok = parse_i64(v, 1, &o->N);
    else if (!strcmp(a, "--k")) ok = parse_i64(v, 1, &o->K);
    else if (!strcmp(a, "--d")) ok = parse_i64(v, 1, &o->D);
    else if (!strcmp(a, "--b")) ok = parse_i64(v, 1, &o->B);
    else if (!strcmp(a, "--seed")) { ok = parse_i64(v, 0, &x); o->seed = (uint64_t)x; }
    else if (!strcmp(a, "--iters")) { ok = parse_i64(v, 1, &x) && x <= 100000; o->iters = (int)x; have_iters = 1; }
    else if (!strcmp(a, "--max-iter")) { ok = parse_i64(v, 1, &x) && x <= 1000000; o->max_iter = (int)x; }
    else if (!strcmp(a, "--tol")) { char *e = NULL; o->tol = strtod(v, &e); ok = e && !*e && o->tol >= 0; }
    else if (!strcmp(a, "--timeout")) { char *e = NULL; o->timeout_s = strtod(v, &e); ok = e && !*e && o->timeout_s > 0; }
    else if (!strcmp(a, "--rank")) { ok = parse_i64(v, 0, &x) && x < 65536; o->rank = (int)x; }
    else if (!strcmp(a, "--nranks")) { ok = parse_i64(v, 1, &x) && x <= 65536; o->nranks = (int)x; }
    else if (!strcmp(a, "--device")) { ok = parse_i64(v, 0, &x) && x < 1024; o->device = (int)x; }
    else if (!strcmp(a, "--stream-chunk")) ok = parse_i64(v, 1, &o->stream_chunk);
    else if (!strcmp(a, "--id-file")) o->id_file = v;
    else if (!strcmp(a, "--assign")) o->assign = v;
    else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = v;
    else if (!strcmp(a, "--centroids")) o->centroids = v;
    else if (!strcmp(a, "--dtype")) {
      ok = 0;
      for (int t = 0; t < FKM_DTYPE_COUNT; t++)
        if (!strcmp(v, fkm_dtype_name((fkm_dtype)t))) { o->dtype = (fkm_dtype)t; ok = 1; }
    } else if (!strcmp(a, "--data")) {
      ok = fkm_data_kind_from_name(v, &o->data.kind) == 0;
      if (ok) snprintf(o->data.label, sizeof o->data.label, "%s", v);
    } else if (!strcmp(a, "--init")) {
      ok = fkm_init_from_name(v, &o->init) == 0;
    } else {
      fprintf(stderr, "flashkm dist: unknown option '%s'\n%s", a, usage_dist);
      return FKM_EXIT_USAGE;
    }
    if (!ok) {
      fprintf(stderr, "flashkm dist: bad value '%s' for %s\n", v, a);
      return FKM_EXIT_USAGE;
    }
  }
  if (o->fit && have_iters) {
    fprintf(stderr, "flashkm dist: --iters and --fit exclude each other\n");
    return FKM_EXIT_USAGE;
  }
  if (!o->N || !o->K || !o->D) {
    fprintf(stderr, "flashkm dist: --n, --k and --d are required\n%s", usage_dist);
    return FKM_EXIT_USAGE;
  }
  if (o->K > o->N) {
    fprintf(stderr, "flashkm dist: K=%lld exceeds N=%lld\n", (long long)o->K, (long long)o->N);
    return FKM_EXIT_USAGE;
  }
  if (o->stream_chunk > 0 && o->B != 1) {
    fprintf(stderr, "flashkm dist: --stream-chunk streams the points of one problem (B = 1); got B = %lld\n", (long long)o->B);
    return FKM_EXIT_USAGE;
  }
  if (o->B * o->N >= ((int64_t)1 << 31) || o->D >= ((int64_t)1 << 20)) {
    fprintf(stderr, "flashkm dist: B*N must be below 2^31 and D below 2^20\n");
    return FKM_EXIT_USAGE;
  }
  if (o->n_gpus && (o->rank >= 0 || o->nranks > 0 || o->id_file)) {
    fprintf(stderr, "flashkm dist: --gpus (this host, forked ranks) excludes --rank/--nranks/--id-file\n");
    return FKM_EXIT_USAGE;
  }
  if (!o->n_gpus) {
    static const char *const rank_env[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
    static const char *const size_env[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", NULL};
    static const char *const local_env[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", NULL};
    if (o->rank < 0) env_int(rank_env, &o->rank);
    if (o->nranks < 0) env_int(size_env, &o->nranks);
    if (o->device < 0 && !env_int(local_env, &o->device)) o->device = 0;
    if (o->rank < 0 || o->nranks < 1 || !o->id_file) {
      fprintf(stderr, "flashkm dist: give --gpus LIST, or --rank, --nranks and --id-file (or run under an MPI/Slurm "
                      "launcher with --id-file)\n%s", usage_dist);
      return FKM_EXIT_USAGE;
    }
    if (o->rank >= o->nranks) {
      fprintf(stderr, "flashkm dist: --rank %d is not below --nranks %d\n", o->rank, o->nranks);
      return FKM_EXIT_USAGE;
    }
    if (o->N < o->nranks) {
      fprintf(stderr, "flashkm dist: N=%lld is smaller than the %d ranks\n", (long long)o->N, o->nranks);
      return FKM_EXIT_USAGE;
    }
  } else if (o->N < o->n_gpus) {
    fprintf(stderr, "flashkm dist: N=%lld is smaller than the %d GPUs\n", (long long)o->N, o->n_gpus);
    return FKM_EXIT_USAGE;
  }
  return 0;
}

#ifdef FKM_HAVE_NCCL

/* ------------------------------------------------------------------ a rank */

typedef struct {
  cudaStream_t stream;
  ncclComm_t comm;
  int have_comm;
  void *xs, *cd;          /* the slice [B][len][D]; centroids in the dtype */
  float *c_a, *c_b;       /* fp32 centroids, current and next */
  int32_t *labels, *counts_out;
  float *dist;
  unsigned long long *acc; /* sums [BK*D], counts [BK] */
  double *scal;           /* [0] inertia (all-reduced), [1..] gather buffer */
  double *partials;       /* deterministic inertia: per-block sums */
  unsigned *shift2;       /* largest squared shift, float bits */
  double *h_scal;         /* pinned: inertia */
  unsigned *h_shift2;
  const fkm_variant *va;
  void *va_state;
  cudaEvent_t ev[4];
  int have_ev;
  /* streaming (--stream-chunk): the slice in pinned host memory, a ring of device chunks */
  void *hx;
  void *xb[3];
  cudaStream_t s_copy;
  cudaEvent_t ev_copied[3], ev_used[3];
  int have_ring_ev;
  void *va_state_last; /* the assign variant set up for the shorter last chunk */
  double *chunk_inertia;
} rank_state;

static fkm_status nccl_fail(ncclResult_t r, ncclComm_t comm, const char *what) {
  const char *last = comm ? ncclGetLastError(comm) : "";
  return fkm_fail(FKM_ERR_CUDA, "%s: NCCL error: %s%s%s", what, ncclGetErrorString(r), last && last[0] ? ": " : "",
                  last ? last : "");
}

/* Waits until the non-blocking communicator has finished its last call. */
static fkm_status nccl_settle(ncclComm_t comm, ncclResult_t r, double timeout_s, const char *what) {
  if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(r, comm, what);
  const double t0 = fkm_now_s();
  for (;;) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t q = ncclCommGetAsyncError(comm, &state);
    if (q != ncclSuccess) return nccl_fail(q, comm, what);
    if (state == ncclSuccess) return FKM_OK;
    if (state != ncclInProgress) return nccl_fail(state, comm, what);
    if (fkm_now_s() - t0 > timeout_s)
      return fkm_fail(FKM_ERR_CUDA, "%s: no progress in %.0f s: another rank is gone or stuck", what, timeout_s);
    usleep(100);
  }
}

/* Waits for the stream, watching NCCL's asynchronous errors and the timeout. */
static fkm_status wait_stream(rank_state *R, double timeout_s, const char *what) {
  const double t0 = fkm_now_s();
  for (;;) {
    cudaError_t e = cudaStreamQuery(R->stream);
    if (e == cudaSuccess) return FKM_OK;
    if (e != cudaErrorNotReady) return fkm_cuda_fail_at(e, what, __FILE__, __LINE__);
    if (R->have_comm) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(R->comm, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress)
        return nccl_fail(state, R->comm, what);
    }
    if (fkm_now_s() - t0 > timeout_s)
      return fkm_fail(FKM_ERR_CUDA, "%s: no progress in %.0f s: another rank is gone or stuck", what, timeout_s);
    usleep(20);
  }
}

/* Rank 0 writes the NCCL id (temporary file + rename); the others wait for it. */
static fkm_status exchange_id(const dist_opts *o, int rank, const char *path, ncclUniqueId *id) {
  if (rank == 0) {
    ncclResult_t r = ncclGetUniqueId(id);
    if (r != ncclSuccess) return nccl_fail(r, NULL, "ncclGetUniqueId");
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return fkm_fail(FKM_ERR_IO, "cannot write the NCCL id file %s: %s", tmp, strerror(errno));
    int bad = fwrite(id, sizeof *id, 1, f) != 1;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
      remove(tmp);
      return fkm_fail(FKM_ERR_IO, "cannot write the NCCL id file %s: %s", path, strerror(errno));
    }
    return FKM_OK;
  }
  const double t0 = fkm_now_s();
  for (;;) {
    FILE *f = fopen(path, "rb");
    if (f) {
      size_t got = fread(id, sizeof *id, 1, f);
      fclose(f);
      if (got == 1) return FKM_OK;
    }
    if (fkm_now_s() - t0 > o->timeout_s)
      return fkm_fail(FKM_ERR_IO, "rank %d: no NCCL id in %s after %.0f s (is rank 0 running, and is the path shared?)",
                      rank, path, o->timeout_s);
    usleep(20000);
  }
}

static void rank_free(rank_state *R) {
  if (R->va && R->va->teardown && R->va_state) R->va->teardown(R->va_state);
  if (R->va && R->va->teardown && R->va_state_last) R->va->teardown(R->va_state_last);
  cudaFreeHost(R->hx);
  for (int i = 0; i < 3; i++) cudaFree(R->xb[i]);
  cudaFree(R->chunk_inertia);
  if (R->have_ring_ev)
    for (int i = 0; i < 3; i++) {
      cudaEventDestroy(R->ev_copied[i]);
      cudaEventDestroy(R->ev_used[i]);
    }
  if (R->s_copy) cudaStreamDestroy(R->s_copy);
  cudaFree(R->xs);
  cudaFree(R->cd);
  cudaFree(R->c_a);
  cudaFree(R->c_b);
  cudaFree(R->labels);
  cudaFree(R->counts_out);
  cudaFree(R->dist);
  cudaFree(R->acc);
  cudaFree(R->scal);
  cudaFree(R->partials);
  cudaFree(R->shift2);
  cudaFreeHost(R->h_scal);
  cudaFreeHost(R->h_shift2);
  if (R->have_ev)
    for (int i = 0; i < 4; i++) cudaEventDestroy(R->ev[i]);
  if (R->stream) cudaStreamDestroy(R->stream);
}

typedef struct {
  double compute_ms, allreduce_ms, iteration_ms;
  int iterations, converged;
  double inertia;
  int64_t points;
  int ok; /* the 1-GPU run's validation */
  char detail[640]; /* room for a prefix and a validation detail */
} rank_result;

static double median_of(double *v, int n) {
  fkm_stats st;
  fkm_stats_compute(v, n, &st);
  return st.median;
}

/* The 1-GPU run's checks against the fp64 reference: the last update (the
 * means of the points under the last labels) and, on sampled rows, the last
 * assignment (labels = nearest of the centroids it was made with). */
static fkm_status validate_one_gpu(const dist_opts *o, rank_state *R, const float *c_prev_dev, const float *c_dev,
                                   rank_result *out) {
  const fkm_shape s = {o->B, o->N, o->K, o->D, o->dtype};
  const int64_t np = o->B * o->N, nc = o->B * o->K * o->D;
  const size_t es = fkm_dtype_size(o->dtype);
  void *hx = malloc((size_t)(np * o->D) * es), *hcd = malloc((size_t)nc * es);
  int32_t *hl = malloc(sizeof(int32_t) * (size_t)np), *hn = malloc(sizeof(int32_t) * (size_t)(o->B * o->K));
  float *hd = malloc(sizeof(float) * (size_t)np), *hp = malloc(sizeof(float) * (size_t)nc),
        *hc = malloc(sizeof(float) * (size_t)nc);
  fkm_status st = FKM_OK;
  if (!hx || !hcd || !hl || !hn || !hd || !hp || !hc) st = fkm_fail(FKM_ERR_OOM, "out of host memory for validation");
  cudaError_t e = cudaSuccess;
  if (st == FKM_OK) {
    if (R->hx) memcpy(hx, R->hx, (size_t)(np * o->D) * es);
    else e = cudaMemcpy(hx, R->xs, (size_t)(np * o->D) * es, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaMemcpy(hl, R->labels, sizeof(int32_t) * (size_t)np, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaMemcpy(hd, R->dist, sizeof(float) * (size_t)np, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaMemcpy(hn, R->counts_out, sizeof(int32_t) * (size_t)(o->B * o->K), cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaMemcpy(hp, c_prev_dev, sizeof(float) * (size_t)nc, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaMemcpy(hc, c_dev, sizeof(float) * (size_t)nc, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "validation copies", __FILE__, __LINE__);
  }
  if (st == FKM_OK) {
    fkm_update_ref ur;
    st = fkm_update_ref_build(&s, hx, hl, hp, &ur);
    if (st == FKM_OK) {
      fkm_update_check u;
      fkm_validate_update(&ur, hp, hc, hn, &u);
      fkm_update_ref_free(&ur);
      out->ok = u.ok;
      if (!u.ok) snprintf(out->detail, sizeof out->detail, "last update: %s", u.detail);
    }
  }
  if (st == FKM_OK && out->ok) {
    for (int64_t i = 0; i < nc; i++) fkm_store_from_f32(hcd, (int)o->dtype, i, hp[i]);
    fkm_assign_ref ar;
    st = fkm_assign_ref_build(&s, hx, hcd, 4096, &ar);
    if (st == FKM_OK) {
      fkm_assign_check a;
      fkm_validate_assign(&ar, hx, hl, hd, FKM_COMPUTE_EXACT, &a);
      fkm_assign_ref_free(&ar);
      out->ok = a.ok;
      if (!a.ok) snprintf(out->detail, sizeof out->detail, "last assignment: %s", a.detail);
    }
  }
  free(hx);
  free(hcd);
  free(hl);
  free(hn);
  free(hd);
  free(hp);
  free(hc);
  return st;
}

/* One rank's whole run; rank 0 also writes the report (JSON) and centroids. */
static fkm_status rank_run(const dist_opts *o, int rank, int nranks, int device, const char *id_file,
                           const char *report, const char *cent_path) {
  rank_state R;
  memset(&R, 0, sizeof R);
  fkm_status st = FKM_OK;
  fkm_dataset full;
  memset(&full, 0, sizeof full);
  int have_full = 0;
  double *t_comp = NULL, *t_ar = NULL, *t_it = NULL;
  const int max_it = o->fit ? o->max_iter : o->iters;
  const int64_t B = o->B, K = o->K, D = o->D, BK = B * K;
  const int64_t n0 = o->N * rank / nranks, len = o->N * (rank + 1) / nranks - n0;
  const size_t es = fkm_dtype_size(o->dtype);
  rank_result res;
  memset(&res, 0, sizeof res);
  res.points = B * len;

#define DTRY(x)                 \
  do {                          \
    st = (x);                   \
    if (st != FKM_OK) goto done; \
  } while (0)
#define DCUDA(call, what)                                                        \
  do {                                                                           \
    cudaError_t e_ = (call);                                                     \
    if (e_ != cudaSuccess) {                                                     \
      st = fkm_cuda_fail_at(e_, what, __FILE__, __LINE__);                       \
      goto done;                                                                 \
    }                                                                            \
  } while (0)

  DCUDA(cudaSetDevice(device), "cudaSetDevice");
  DCUDA(cudaStreamCreateWithFlags(&R.stream, cudaStreamNonBlocking), "stream");
  for (int i = 0; i < 4; i++) DCUDA(cudaEventCreate(&R.ev[i]), "events");
  R.have_ev = 1;
  {
    ncclUniqueId id;
    DTRY(exchange_id(o, rank, id_file, &id));
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&R.comm, nranks, id, rank, &cfg);
    if (r == ncclSuccess || r == ncclInProgress) R.have_comm = 1;
    DTRY(nccl_settle(R.comm, r, o->timeout_s, "ncclCommInitRank"));
  }

  /* Data (the whole problem, the same bits on every rank), the slice, the init. */
  {
    const fkm_shape s = {B, o->N, K, D, o->dtype};
    fkm_nvtx_push("generate data (device)");
    st = fkm_data_make_device(&s, &o->data, o->seed, &full);
    fkm_nvtx_pop();
    if (st != FKM_OK) goto done;
    have_full = 1;
    if (nranks == 1) { /* the slice is everything: keep the data instead of a copy */
      R.xs = full.x;
      full.x = NULL;
    } else {
      DCUDA(cudaMalloc(&R.xs, (size_t)(B * len * D) * es), "slice of x");
      DCUDA(cudaMemcpy2DAsync(R.xs, (size_t)(len * D) * es, (const char *)full.x + (size_t)(n0 * D) * es,
                              (size_t)(o->N * D) * es, (size_t)(len * D) * es, (size_t)B, cudaMemcpyDeviceToDevice,
                              R.stream),
            "slice of x");
    }
    DCUDA(cudaMalloc((void **)&R.c_a, sizeof(float) * (size_t)(BK * D)), "centroids");
    DCUDA(cudaMalloc((void **)&R.c_b, sizeof(float) * (size_t)(BK * D)), "centroids");
    fkm_nvtx_push("init");
    st = fkm_init_centroids(&s, o->init, o->seed, nranks == 1 ? R.xs : full.x, R.c_a, R.stream);
    fkm_nvtx_pop();
    if (st != FKM_OK) goto done;
    DTRY(wait_stream(&R, o->timeout_s, "initialisation"));
    fkm_data_free(&full);
    have_full = 0;
  }

  DCUDA(cudaMalloc(&R.cd, (size_t)(BK * D) * es), "centroids (dtype)");
  DCUDA(cudaMalloc((void **)&R.labels, sizeof(int32_t) * (size_t)(B * len)), "labels");
  DCUDA(cudaMalloc((void **)&R.dist, sizeof(float) * (size_t)(B * len)), "distances");
  DCUDA(cudaMalloc((void **)&R.counts_out, sizeof(int32_t) * (size_t)BK), "counts");
  DCUDA(cudaMalloc((void **)&R.acc, sizeof(unsigned long long) * (size_t)(BK * (D + 1))), "sums");
  DCUDA(cudaMalloc((void **)&R.scal, sizeof(double) * (size_t)(1 + DIST_GATHER * (nranks + 1))), "scalars");
  DCUDA(cudaMalloc((void **)&R.partials, sizeof(double) * FKM_DIST_PARTIALS), "scalars");
  DCUDA(cudaMalloc((void **)&R.shift2, sizeof(unsigned)), "scalars");
  DCUDA(cudaMallocHost((void **)&R.h_scal, sizeof(double) * (size_t)(1 + DIST_GATHER * (nranks + 1))), "pinned scalars");
  DCUDA(cudaMallocHost((void **)&R.h_shift2, sizeof(unsigned)), "pinned scalars");

  /* The fixed-point shift: from the largest |x| of all ranks (an all-reduce max). */
  int shift;
  {
    double local = 0;
    DTRY(fkm_fixed_max_abs(R.xs, o->dtype, B * len * D, &local, R.stream));
    R.h_scal[0] = local;
    DCUDA(cudaMemcpyAsync(R.scal, R.h_scal, sizeof(double), cudaMemcpyHostToDevice, R.stream), "max |x|");
    DTRY(nccl_settle(R.comm, ncclAllReduce(R.scal, R.scal, 1, ncclFloat64, ncclMax, R.comm, R.stream), o->timeout_s,
                     "all-reduce of max |x|"));
    DCUDA(cudaMemcpyAsync(R.h_scal, R.scal, sizeof(double), cudaMemcpyDeviceToHost, R.stream), "max |x|");
    DTRY(wait_stream(&R, o->timeout_s, "all-reduce of max |x|"));
    shift = fkm_fixed_shift(R.h_scal[0], o->N);
  }

  /* The assignment of the slice. */
  R.va = fkm_variant_find(o->assign);
  if (!R.va || R.va->op != FKM_OP_ASSIGN || fkm_variant_is_cpu(R.va)) {
    st = fkm_fail(FKM_ERR_INPUT, "--assign %s is not a GPU assign variant of this build", o->assign);
    goto done;
  }
  /* Out of core: the slice moves to pinned host memory; a ring of three device
   * chunks, the copy of chunk i+S on its own stream behind the use of chunk i. */
  const int64_t P = o->stream_chunk > 0 ? (o->stream_chunk < len ? o->stream_chunk : len) : len;
  const int64_t nch = (len + P - 1) / P, plast = len - (nch - 1) * P;
  const int S = nch < 3 ? (int)nch : 3;
  if (o->stream_chunk > 0) {
    const size_t bytes = (size_t)(len * D) * es;
    DCUDA(cudaMallocHost(&R.hx, bytes), "pinned host memory for this rank's slice");
    DCUDA(cudaMemcpy(R.hx, R.xs, bytes, cudaMemcpyDeviceToHost), "slice to host memory");
    cudaFree(R.xs);
    R.xs = NULL;
    for (int i = 0; i < S; i++) DCUDA(cudaMalloc(&R.xb[i], (size_t)(P * D) * es), "chunk buffers");
    DCUDA(cudaStreamCreateWithFlags(&R.s_copy, cudaStreamNonBlocking), "copy stream");
    for (int i = 0; i < 3; i++) {
      DCUDA(cudaEventCreateWithFlags(&R.ev_copied[i], cudaEventDisableTiming), "events");
      DCUDA(cudaEventCreateWithFlags(&R.ev_used[i], cudaEventDisableTiming), "events");
    }
    R.have_ring_ev = 1;
    DCUDA(cudaMalloc((void **)&R.chunk_inertia, sizeof(double) * (size_t)nch), "chunk inertia");
  }
  fkm_problem pa;
  memset(&pa, 0, sizeof pa);
  pa.s = (fkm_shape){B, P, K, D, o->dtype};
  pa.x = o->stream_chunk > 0 ? R.xb[0] : R.xs;
  pa.c = R.cd;
  pa.labels = R.labels;
  pa.dist = R.dist;
  pa.scratch_budget = (size_t)1 << 30;
  if (R.va->setup) DTRY(R.va->setup(&pa, &R.va_state));
  fkm_problem pl = pa; /* the shorter last chunk */
  pl.s.N = plast;
  if (plast != P && R.va->setup) DTRY(R.va->setup(&pl, &R.va_state_last));

  t_comp = malloc(sizeof(double) * (size_t)max_it);
  t_ar = malloc(sizeof(double) * (size_t)max_it);
  t_it = malloc(sizeof(double) * (size_t)max_it);
  if (!t_comp || !t_ar || !t_it) {
    st = fkm_fail(FKM_ERR_OOM, "out of host memory");
    goto done;
  }
  const char *fault = getenv("FKM_DIST_FAULT"); /* tests: "RANK:ITERATION" kills that rank there */
  int fault_rank = -1, fault_it = -1;
  if (fault) sscanf(fault, "%d:%d", &fault_rank, &fault_it);

  float *c_cur = R.c_a, *c_next = R.c_b;
  unsigned long long *sums = R.acc, *counts = R.acc + BK * D;
  for (int it = 0; it < max_it; it++) {
    if (rank == fault_rank && it == fault_it) {
      fprintf(stderr, "flashkm dist: rank %d: FKM_DIST_FAULT: killing myself at iteration %d\n", rank, it);
      raise(SIGKILL);
    }
    fkm_nvtx_push("iteration");
    DCUDA(cudaEventRecord(R.ev[0], R.stream), "event");
    DTRY(fkm_cast_centroids(c_cur, R.cd, BK * D, o->dtype, R.stream));
    DCUDA(cudaMemsetAsync(R.acc, 0, sizeof(unsigned long long) * (size_t)(BK * (D + 1)), R.stream), "memset");
    if (o->stream_chunk <= 0) {
      DTRY(R.va->run(&pa, R.va_state, R.stream));
      DTRY(fkm_fixed_accumulate(R.xs, o->dtype, R.labels, B, len, K, D, shift, sums, counts, NULL, R.stream));
      DTRY(fkm_dist_inertia(R.dist, B * len, R.partials, R.scal, R.stream));
    } else {
      /* Chunk ci of the slice: its copy waits for the slot's last reader, its work for its copy. */
      DCUDA(cudaStreamWaitEvent(R.s_copy, R.ev[0], 0), "copy stream");
      for (int64_t ci = 0; ci < S; ci++) { /* the first S chunks; the others behind their slot's last use */
        const int slot = (int)ci;
        const int64_t n_ci = ci == nch - 1 ? plast : P;
        DCUDA(cudaStreamWaitEvent(R.s_copy, R.ev_used[slot], 0), "copy stream");
        DCUDA(cudaMemcpyAsync(R.xb[slot], (const char *)R.hx + (size_t)(ci * P * D) * es, (size_t)(n_ci * D) * es,
                              cudaMemcpyHostToDevice, R.s_copy),
              "chunk copy");
        DCUDA(cudaEventRecord(R.ev_copied[slot], R.s_copy), "event");
      }
      for (int64_t ci = 0; ci < nch; ci++) {
        const int slot = (int)(ci % S);
        const int last = ci == nch - 1;
        const int64_t n_ci = last ? plast : P;
        fkm_problem pc = last && plast != P ? pl : pa;
        pc.x = R.xb[slot];
        pc.labels = R.labels + ci * P; /* every point's label stays on the GPU (4 bytes a point) */
        pc.dist = R.dist + ci * P;
        DCUDA(cudaStreamWaitEvent(R.stream, R.ev_copied[slot], 0), "compute stream");
        DTRY(R.va->run(&pc, last && plast != P ? R.va_state_last : R.va_state, R.stream));
        DTRY(fkm_fixed_accumulate(R.xb[slot], o->dtype, pc.labels, 1, n_ci, K, D, shift, sums, counts, NULL, R.stream));
        DTRY(fkm_dist_inertia(pc.dist, n_ci, R.partials, R.chunk_inertia + ci, R.stream));
        DCUDA(cudaEventRecord(R.ev_used[slot], R.stream), "event");
        const int64_t next = ci + S;
        if (next < nch) {
          const int64_t n_next = next == nch - 1 ? plast : P;
          DCUDA(cudaStreamWaitEvent(R.s_copy, R.ev_used[slot], 0), "copy stream");
          DCUDA(cudaMemcpyAsync(R.xb[slot], (const char *)R.hx + (size_t)(next * P * D) * es,
                                (size_t)(n_next * D) * es, cudaMemcpyHostToDevice, R.s_copy),
                "chunk copy");
          DCUDA(cudaEventRecord(R.ev_copied[slot], R.s_copy), "event");
        }
      }
      DTRY(fkm_dist_sum(R.chunk_inertia, nch, R.scal, R.stream)); /* in chunk order: the same bits every run */
    }
    DCUDA(cudaEventRecord(R.ev[1], R.stream), "event");
    ncclResult_t r = ncclGroupStart();
    if (r == ncclSuccess) r = ncclAllReduce(R.acc, R.acc, (size_t)(BK * (D + 1)), ncclUint64, ncclSum, R.comm, R.stream);
    if (r == ncclSuccess || r == ncclInProgress)
      r = ncclAllReduce(R.scal, R.scal, 1, ncclFloat64, ncclSum, R.comm, R.stream);
    ncclResult_t g = ncclGroupEnd();
    if (r == ncclSuccess || r == ncclInProgress) r = g;
    DTRY(nccl_settle(R.comm, r, o->timeout_s, "all-reduce of the sums"));
    DCUDA(cudaEventRecord(R.ev[2], R.stream), "event");
    DTRY(fkm_fixed_finish(sums, counts, BK, D, shift, c_cur, c_next, R.counts_out, R.stream));
    DTRY(fkm_dist_max_shift(c_cur, c_next, BK, D, R.shift2, R.stream));
    DCUDA(cudaMemcpyAsync(R.h_scal, R.scal, sizeof(double), cudaMemcpyDeviceToHost, R.stream), "scalars");
    DCUDA(cudaMemcpyAsync(R.h_shift2, R.shift2, sizeof(unsigned), cudaMemcpyDeviceToHost, R.stream), "scalars");
    DCUDA(cudaEventRecord(R.ev[3], R.stream), "event");
    st = wait_stream(&R, o->timeout_s, "iteration");
    fkm_nvtx_pop();
    if (st != FKM_OK) goto done;
    float a = 0, b = 0, c = 0;
    cudaEventElapsedTime(&a, R.ev[0], R.ev[1]);
    cudaEventElapsedTime(&b, R.ev[1], R.ev[2]);
    cudaEventElapsedTime(&c, R.ev[0], R.ev[3]);
    t_comp[it] = a;
    t_ar[it] = b;
    t_it[it] = c;
    res.iterations = it + 1;
    res.inertia = R.h_scal[0];
    float s2;
    memcpy(&s2, R.h_shift2, sizeof s2);
    float *t = c_cur;
    c_cur = c_next;
    c_next = t;
    if (!o->quiet && rank == 0)
      fprintf(stderr, "dist[%d ranks]: iteration %4d  inertia %.9g  shift %.3g  %.3f ms (all-reduce %.3f ms)\n", nranks,
              it + 1, res.inertia, sqrt((double)s2), c, b);
    if (o->fit && sqrt((double)s2) <= o->tol) {
      res.converged = 1;
      break;
    }
  }
  res.compute_ms = median_of(t_comp, res.iterations);
  res.allreduce_ms = median_of(t_ar, res.iterations);
  res.iteration_ms = median_of(t_it, res.iterations);

  /* Every rank's medians to rank 0. */
  {
    double mine[DIST_GATHER] = {res.compute_ms, res.allreduce_ms, res.iteration_ms, (double)res.points, (double)device};
    memcpy(R.h_scal + 1, mine, sizeof mine);
    DCUDA(cudaMemcpyAsync(R.scal + 1, R.h_scal + 1, sizeof mine, cudaMemcpyHostToDevice, R.stream), "gather");
    DTRY(nccl_settle(R.comm,
                     ncclAllGather(R.scal + 1, R.scal + 1 + DIST_GATHER, DIST_GATHER, ncclFloat64, R.comm, R.stream),
                     o->timeout_s, "gather of the timings"));
    DCUDA(cudaMemcpyAsync(R.h_scal + 1, R.scal + 1 + DIST_GATHER, sizeof(double) * DIST_GATHER * (size_t)nranks,
                          cudaMemcpyDeviceToHost, R.stream),
          "gather");
    DTRY(wait_stream(&R, o->timeout_s, "gather of the timings"));
  }
  if (rank == 0) {
    res.ok = 1;
    if (nranks == 1) DTRY(validate_one_gpu(o, &R, c_next, c_cur, &res));
    float *hc = malloc(sizeof(float) * (size_t)(BK * D));
    if (!hc) {
      st = fkm_fail(FKM_ERR_OOM, "out of host memory");
      goto done;
    }
    cudaError_t e = cudaMemcpy(hc, c_cur, sizeof(float) * (size_t)(BK * D), cudaMemcpyDeviceToHost);
    if (e == cudaSuccess && cent_path) {
      FILE *f = fopen(cent_path, "wb");
      int bad = !f || fwrite(hc, sizeof(float), (size_t)(BK * D), f) != (size_t)(BK * D);
      if (f) bad |= fclose(f) != 0;
      if (bad) st = fkm_fail(FKM_ERR_IO, "cannot write %s: %s", cent_path, strerror(errno));
    }
    free(hc);
    if (e != cudaSuccess) st = fkm_cuda_fail_at(e, "centroids to the host", __FILE__, __LINE__);
    if (st != FKM_OK) goto done;
    /* The report: this run's row material, read by the supervisor (or kept as is). */
    fkm_device dev;
    fkm_device_query(&dev);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "device", fkm_info_device(&dev));
    cJSON_AddNumberToObject(doc, "ranks", nranks);
    cJSON_AddNumberToObject(doc, "iterations", res.iterations);
    cJSON_AddBoolToObject(doc, "converged", res.converged);
    cJSON_AddNumberToObject(doc, "inertia", res.inertia);
    cJSON_AddNumberToObject(doc, "shift", shift);
    cJSON_AddBoolToObject(doc, "validated", nranks == 1);
    cJSON_AddBoolToObject(doc, "ok", res.ok);
    cJSON_AddStringToObject(doc, "detail", res.detail);
    fkm_stats sst; /* one sample per iteration, the first included, L2 not flushed */
    fkm_stats_compute(t_it, res.iterations, &sst);
    cJSON_AddItemToObject(doc, "timing", fkm_timing_json(&sst, res.iterations, 0, 0, "cuda_event", 1));
    cJSON *pr = cJSON_AddArrayToObject(doc, "per_rank");
    double ar_max = 0;
    for (int i = 0; i < nranks; i++) {
      const double *v = R.h_scal + 1 + DIST_GATHER * i;
      cJSON *x = cJSON_CreateObject();
      cJSON_AddNumberToObject(x, "rank", i);
      cJSON_AddNumberToObject(x, "gpu", v[4]);
      cJSON_AddNumberToObject(x, "points", v[3]);
      cJSON_AddNumberToObject(x, "compute_ms", v[0]);
      cJSON_AddNumberToObject(x, "allreduce_ms", v[1]);
      cJSON_AddNumberToObject(x, "iteration_ms", v[2]);
      cJSON_AddItemToArray(pr, x);
      ar_max = v[1] > ar_max ? v[1] : ar_max;
    }
    cJSON_AddNumberToObject(doc, "allreduce_ms", ar_max);
    cJSON_AddNumberToObject(doc, "allreduce_bytes", (double)(BK * (D + 1)) * 8.0 + 8.0);
    if (o->stream_chunk > 0) {
      cJSON *so = cJSON_AddObjectToObject(doc, "streamed");
      cJSON_AddNumberToObject(so, "chunk_points", (double)P);
      cJSON_AddNumberToObject(so, "chunks_per_rank", (double)nch);
      cJSON_AddNumberToObject(so, "slots", S);
      cJSON_AddNumberToObject(so, "h2d_bytes_per_iteration_per_rank", (double)(len * D) * (double)es);
      cJSON_AddNumberToObject(so, "h2d_gbps_per_rank", (double)(len * D) * (double)es / (res.iteration_ms * 1e-3) / 1e9);
    }
    st = fkm_json_write_atomic(report, doc);
    cJSON_Delete(doc);
  }

done:
  if (st != FKM_OK && R.have_comm) ncclCommAbort(R.comm);
  else if (R.have_comm) ncclCommDestroy(R.comm);
  if (have_full) fkm_data_free(&full);
  free(t_comp);
  free(t_ar);
  free(t_it);
  rank_free(&R);
  return st;
#undef DTRY
#undef DCUDA
}

/* ---------------------------------------------------------- the supervisor */

static const char *signame(int s) {
  switch (s) {
  case SIGKILL: return "SIGKILL";
  case SIGSEGV: return "SIGSEGV";
  case SIGABRT: return "SIGABRT";
  case SIGTERM: return "SIGTERM";
  case SIGBUS: return "SIGBUS";
  default: return "a signal";
  }
}

/* Forks one rank per GPU of gpus[0..n), waits; one failed rank ends the rest.
 * 0 when every rank exited 0. */
static int run_ranks(const dist_opts *o, const int *gpus, int n, const char *dir, const char *report,
                     const char *cent_path, char *failure, size_t failure_len) {
  char id_file[1100];
  snprintf(id_file, sizeof id_file, "%s/nccl_id_%d", dir, n);
  remove(id_file);
  pid_t pids[DIST_MAX_GPUS];
  fflush(stdout);
  fflush(stderr);
  for (int r = 0; r < n; r++) {
    pid_t p = fork();
    if (p < 0) {
      snprintf(failure, failure_len, "fork: %s", strerror(errno));
      fprintf(stderr, "flashkm dist: %s\n", failure);
      for (int i = 0; i < r; i++) kill(pids[i], SIGTERM);
      for (int i = 0; i < r; i++) waitpid(pids[i], NULL, 0);
      return 1;
    }
    if (p == 0) {
      fkm_status st = rank_run(o, r, n, gpus[r], id_file, report, cent_path);
      if (st != FKM_OK) fprintf(stderr, "flashkm dist: rank %d (GPU %d): %s\n", r, gpus[r], fkm_last_error());
      fflush(stderr);
      _exit(st == FKM_OK ? 0 : 1);
    }
    pids[r] = p;
  }
  int failed = 0, left = n;
  while (left > 0) {
    int status = 0;
    pid_t p = waitpid(-1, &status, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int r = 0;
    while (r < n && pids[r] != p) r++;
    if (r == n) continue;
    pids[r] = 0;
    left--;
    const int bad = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (bad && !failed) {
      failed = 1;
      if (WIFSIGNALED(status))
        snprintf(failure, failure_len, "rank %d (GPU %d) of %d was killed by %s (%d)", r, gpus[r], n,
                 signame(WTERMSIG(status)), WTERMSIG(status));
      else
        snprintf(failure, failure_len, "rank %d (GPU %d) of %d failed (exit %d; its message is above)", r, gpus[r], n,
                 WEXITSTATUS(status));
      fprintf(stderr, "flashkm dist: %s; ending the other ranks\n", failure);
      for (int i = 0; i < n; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    }
  }
  remove(id_file);
  return failed;
}

/* A rank's report, or NULL when it wrote none. */
static cJSON *read_json(const char *path) {
  cJSON *doc = NULL;
  return fkm_json_read(path, &doc) == FKM_OK ? doc : NULL;
}

/* 1: same bytes; 0: differ (largest absolute difference in *diff); -1: unreadable. */
static int same_centroids(const char *a, const char *b, double *diff) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb ? 1 : -1;
  *diff = 0;
  float x, y;
  while (same >= 0) {
    size_t ga = fa ? fread(&x, 4, 1, fa) : 0, gb = fb ? fread(&y, 4, 1, fb) : 0;
    if (ga != gb) { same = -1; break; }
    if (!ga) break;
    if (memcmp(&x, &y, 4)) {
      same = 0;
      double d = fabs((double)x - (double)y);
      *diff = d > *diff ? d : *diff;
    }
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static cJSON *make_row(const dist_opts *o, cJSON *rep, int n) {
  cJSON *row = cJSON_CreateObject();
  cJSON_AddStringToObject(row, "experiment", "dist");
  cJSON_AddStringToObject(row, "variant", o->fit ? "fit/flash_nccl" : "lloyd/flash_nccl");
  cJSON_AddStringToObject(row, "op", o->fit ? "fit" : "lloyd");
  cJSON_AddNumberToObject(row, "B", (double)o->B);
  cJSON_AddNumberToObject(row, "N", (double)o->N);
  cJSON_AddNumberToObject(row, "K", (double)o->K);
  cJSON_AddNumberToObject(row, "D", (double)o->D);
  cJSON_AddStringToObject(row, "dtype", fkm_dtype_name(o->dtype));
  cJSON_AddStringToObject(row, "data", o->data.label);
  cJSON_AddNumberToObject(row, "seed", (double)o->seed);
  char impl[200];
  snprintf(impl, sizeof impl, "%s + update/fixed_point + ncclAllReduce, %d rank%s", o->assign, n, n > 1 ? "s" : "");
  cJSON_AddStringToObject(row, "impl", impl);
  cJSON *d = cJSON_CreateObject();
  cJSON_AddNumberToObject(d, "ranks", n);
  const char *keys[] = {"per_rank", "allreduce_ms", "allreduce_bytes", "iterations", "converged", "inertia", "shift",
                        "streamed"};
  for (size_t i = 0; rep && i < sizeof keys / sizeof keys[0]; i++) {
    cJSON *v = cJSON_DetachItemFromObject(rep, keys[i]);
    if (v) cJSON_AddItemToObject(d, keys[i], v);
  }
  cJSON_AddItemToObject(row, "dist", d);
  return row;
}

static void set_outcome(const dist_opts *o, cJSON *row, const char *status, const char *reason, cJSON *validation,
                        cJSON *timing, double wall_s) {
  cJSON_AddStringToObject(row, "status", status);
  if (reason && reason[0]) cJSON_AddStringToObject(row, "reason", reason);
  else cJSON_AddNullToObject(row, "reason");
  if (strcmp(status, "error") == 0) cJSON_AddStringToObject(row, "error_kind", "cuda_error");
  if (validation) cJSON_AddItemToObject(row, "validation", validation);
  else cJSON_AddNullToObject(row, "validation");
  const cJSON *med = timing ? cJSON_GetObjectItemCaseSensitive(timing, "median") : NULL;
  if (timing && strcmp(status, "ok") == 0 && cJSON_IsNumber(med) && med->valuedouble > 0) {
    cJSON_AddItemToObject(row, "timing", timing);
    /* One iteration's work, as the lloyd op counts it: the distance GEMM, X read twice. */
    const double es = (double)fkm_dtype_size(o->dtype), B = (double)o->B, N = (double)o->N, K = (double)o->K,
                 D = (double)o->D, sec = med->valuedouble * 1e-3;
    const double flops = 2.0 * B * N * K * D + B * N * D;
    const double bytes = 2.0 * B * N * D * es + B * K * D * es + B * N * 12.0 + B * K * D * 8.0 + B * K * 4.0;
    cJSON *d = cJSON_AddObjectToObject(row, "derived");
    cJSON_AddNumberToObject(d, "flops", flops);
    cJSON_AddNumberToObject(d, "bytes", bytes);
    cJSON_AddNumberToObject(d, "tflops", flops / sec / 1e12);
    cJSON_AddNumberToObject(d, "gbps", bytes / sec / 1e9);
  } else {
    cJSON_Delete(timing);
    cJSON_AddNullToObject(row, "timing");
  }
  cJSON_AddNullToObject(row, "device_bytes");
  cJSON_AddNumberToObject(row, "wall_s", wall_s);
}

/* The results file from the reports of a 1-GPU run (rep1, may be NULL) and
 * the n-GPU run (repn; NULL when it failed, with `failure` saying why). Rows
 * for what ran are kept whatever failed after. 0 when everything was ok. */
static int write_results(const dist_opts *o, const char *rep1, const char *cent1, int n, const char *repn,
                         const char *centn, const char *failure, double wall1, double walln) {
  cJSON *r1 = rep1 ? read_json(rep1) : NULL, *rn = repn ? read_json(repn) : NULL;
  int rc = 0;
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "schema_version", FKM_RESULTS_SCHEMA_VERSION);
  cJSON_AddStringToObject(root, "state", "complete");
  cJSON_AddItemToObject(root, "meta", fkm_info_meta(o->argc, o->argv, NULL, NULL));
  cJSON *dev = rn ? cJSON_DetachItemFromObject(rn, "device") : r1 ? cJSON_DetachItemFromObject(r1, "device") : NULL;
  if (!dev) { /* no rank got as far as its report: describe the device from here (every fork is over) */
    fkm_device d;
    fkm_device_query(&d);
    dev = fkm_info_device(&d);
  }
  cJSON_AddItemToObject(root, "device", dev);
  cJSON_AddNullToObject(root, "ceilings");
  cJSON *runs = cJSON_AddArrayToObject(root, "runs");
  double t1 = 0;
  int ok1 = 1;
  if (r1) {
    cJSON *row = make_row(o, r1, 1);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r1, "ok");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(r1, "detail");
    ok1 = cJSON_IsTrue(ok);
    cJSON *v = cJSON_CreateObject();
    cJSON_AddBoolToObject(v, "ok", ok1);
    cJSON_AddStringToObject(v, "checked", "last update against the fp64 reference; last assignment on sampled rows");
    cJSON *t = cJSON_DetachItemFromObject(r1, "timing");
    const cJSON *med = cJSON_GetObjectItemCaseSensitive(t, "median");
    t1 = cJSON_IsNumber(med) ? med->valuedouble : 0;
    set_outcome(o, row, ok1 ? "ok" : "incorrect", ok1 ? NULL : (cJSON_IsString(detail) ? detail->valuestring : "failed"), v,
                t, wall1);
    cJSON_AddItemToArray(runs, row);
    rc |= !ok1;
  }
  if (rn) {
    cJSON *row = make_row(o, rn, n);
    cJSON *t = cJSON_DetachItemFromObject(rn, "timing");
    const cJSON *med = cJSON_GetObjectItemCaseSensitive(t, "median");
    const double tn = cJSON_IsNumber(med) ? med->valuedouble : 0;
    int okn;
    char reason[300] = "";
    cJSON *v = cJSON_CreateObject();
    if (r1) {
      double diff = 0;
      const int same = same_centroids(cent1, centn, &diff);
      okn = ok1 && same == 1;
      cJSON_AddStringToObject(v, "agrees_with_one_gpu", same == 1 ? "bitwise" : same == 0 ? "differs" : "unreadable");
      if (same == 0) cJSON_AddNumberToObject(v, "largest_difference", diff);
      if (same != 1)
        snprintf(reason, sizeof reason, "the %d-GPU centroids are not bitwise those of 1 GPU (largest difference %g)", n,
                 diff);
      else if (!ok1)
        snprintf(reason, sizeof reason, "the 1-GPU run it is compared with failed validation");
    } else {
      const cJSON *val = cJSON_GetObjectItemCaseSensitive(rn, "validated");
      okn = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rn, "ok"));
      cJSON_AddStringToObject(v, "checked", cJSON_IsTrue(val) ? "last update against the fp64 reference; last "
                                                                  "assignment on sampled rows"
                                                                : "not checked: no 1-GPU run to compare with");
      if (!okn) snprintf(reason, sizeof reason, "validation failed");
    }
    cJSON_AddBoolToObject(v, "ok", okn);
    cJSON *dd = cJSON_GetObjectItemCaseSensitive(row, "dist");
    if (r1 && t1 > 0 && tn > 0) {
      cJSON_AddNumberToObject(dd, "one_gpu_ms", t1);
      cJSON_AddNumberToObject(dd, "speedup", t1 / tn);
      cJSON_AddNumberToObject(dd, "scaling_efficiency", t1 / tn / n);
      if (!o->quiet)
        fprintf(stderr, "flashkm dist: %.3f ms per iteration on 1 GPU, %.3f ms on %d: speedup %.2fx, efficiency %.2f\n",
                t1, tn, n, t1 / tn, t1 / tn / n);
    }
    set_outcome(o, row, okn ? "ok" : "incorrect", reason, v, t, walln);
    cJSON_AddItemToArray(runs, row);
    rc |= !okn;
  } else if (failure) {
    cJSON *row = make_row(o, NULL, n);
    set_outcome(o, row, "error", failure, NULL, NULL, walln);
    cJSON_AddItemToArray(runs, row);
    rc = 1;
  }
  if (fkm_json_write_atomic(o->out, root) != FKM_OK) {
    fprintf(stderr, "flashkm dist: %s\n", fkm_last_error());
    rc = 1;
  } else if (!o->quiet) {
    fprintf(stderr, "flashkm dist: wrote %s\n", o->out);
  }
  cJSON_Delete(root);
  cJSON_Delete(r1);
  cJSON_Delete(rn);
  return rc;
}

static int supervise(const dist_opts *o) {
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  char dir[] = "/tmp/flashkm_dist_XXXXXX";
  if (!mkdtemp(dir)) {
    fprintf(stderr, "flashkm dist: cannot create a temporary folder: %s\n", strerror(errno));
    return 1;
  }
  char rep1[1200], repn[1200], cent1[1200], centn[1200], failure[300] = "";
  snprintf(rep1, sizeof rep1, "%s/report_1.json", dir);
  snprintf(repn, sizeof repn, "%s/report_n.json", dir);
  snprintf(cent1, sizeof cent1, "%s/centroids_1.bin", dir);
  snprintf(centn, sizeof centn, "%s/centroids_n.bin", dir);
  const char *cn = o->centroids ? o->centroids : centn;
  const int scaling = o->scaling && o->n_gpus > 1;
  int have1 = 0, haven = 0;
  double wall1 = 0, walln = 0, t0 = fkm_now_s();
  if (scaling) {
    if (!o->quiet) fprintf(stderr, "flashkm dist: 1 GPU (GPU %d) first, for the speedup and the bitwise check\n", o->gpus[0]);
    have1 = run_ranks(o, o->gpus, 1, dir, rep1, cent1, failure, sizeof failure) == 0;
    wall1 = fkm_now_s() - t0;
  }
  if (!scaling || have1) {
    if (!o->quiet) fprintf(stderr, "flashkm dist: %d GPU%s\n", o->n_gpus, o->n_gpus > 1 ? "s" : "");
    t0 = fkm_now_s();
    haven = run_ranks(o, o->gpus, o->n_gpus, dir, repn, cn, failure, sizeof failure) == 0;
    walln = fkm_now_s() - t0;
  }
  int rc;
  if (!have1 && !haven && scaling) {
    /* the comparison run failed: its row says why (the multi-GPU run was not started) */
    fprintf(stderr, "flashkm dist: the 1-GPU run failed, so the %d-GPU run was not started: %s\n", o->n_gpus, failure);
    write_results(o, NULL, NULL, 1, NULL, NULL, failure, 0, wall1);
    rc = 1;
  } else {
    rc = write_results(o, have1 ? rep1 : NULL, cent1, o->n_gpus, haven ? repn : NULL, cn, failure, wall1, walln);
  }
  remove(rep1);
  remove(repn);
  remove(cent1);
  remove(centn);
  rmdir(dir);
  return rc;
}

/* One rank of a job started by the user or a launcher; rank 0 writes the
 * results file (no 1-GPU comparison here: run the job once with --nranks 1). */
static int run_launched_rank(const dist_opts *o) {
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  char report[1200];
  snprintf(report, sizeof report, "%s.rank0.tmp", o->out);
  const double t0 = fkm_now_s();
  fkm_status st = rank_run(o, o->rank, o->nranks, o->device, o->id_file, report, o->centroids);
  if (st != FKM_OK) {
    fprintf(stderr, "flashkm dist: rank %d (GPU %d): %s\n", o->rank, o->device, fkm_last_error());
    return 1;
  }
  if (o->rank != 0) return 0;
  const int rc = write_results(o, NULL, NULL, o->nranks, report, o->centroids, NULL, 0, fkm_now_s() - t0);
  remove(report);
  return rc;
}

#endif /* FKM_HAVE_NCCL */

int fkm_dist_command(int argc, char **argv, int full_argc, char **full_argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage_dist, stdout);
      return 0;
    }
  dist_opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc;
  o.argc = full_argc;
  o.argv = full_argv;
#ifdef FKM_HAVE_NCCL
  return o.n_gpus ? supervise(&o) : run_launched_rank(&o);
#else
  fprintf(stderr, "flashkm dist: this build has no NCCL (CMake found no nccl.h / libnccl; set NCCL_ROOT and "
                  "reconfigure)\n");
  return FKM_EXIT_USAGE;
#endif
}

/* ---- the registry's multi-GPU variants: the runner starts `flashkm dist` for them ---- */

static fkm_status nccl_supports(const fkm_shape *s, const fkm_device *dev, char *why, size_t n) {
  (void)dev;
#ifndef FKM_HAVE_NCCL
  (void)s;
  snprintf(why, n, "this build has no NCCL (set NCCL_ROOT and reconfigure)");
  return FKM_ERR_NOT_SUPPORTED;
#else
  if (s->K > s->N) {
    snprintf(why, n, "K=%lld exceeds N=%lld", (long long)s->K, (long long)s->N);
    return FKM_ERR_NOT_SUPPORTED;
  }
  return FKM_OK;
#endif
}

const fkm_variant fkm_lloyd_flash_nccl = {
    "lloyd/flash_nccl", FKM_OP_LLOYD,
    "Lloyd iterations on the experiment's GPUs, one process each (flashkm dist): FlashAssign on each rank's slice, "
    "exact fixed-point sums, one ncclAllReduce; rows for 1 GPU and for all, with speedup and efficiency",
    70, 0, nccl_supports, NULL, NULL, NULL, NULL, NULL, NULL, 1, FKM_COMPUTE_EXACT};

const fkm_variant fkm_fit_flash_nccl = {
    "fit/flash_nccl", FKM_OP_FIT,
    "a whole fit on the experiment's GPUs (flashkm dist --fit): bitwise the centroids of one GPU",
    70, 0, nccl_supports, NULL, NULL, NULL, NULL, NULL, NULL, 1, FKM_COMPUTE_EXACT};
