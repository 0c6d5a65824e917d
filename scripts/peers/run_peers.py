#!/usr/bin/env python3
"""Side-by-side measurements of public k-means implementations ("peers") on the
shapes and the data flashkm uses, written as a flashkm results file.

For every shape the data come from `flashkm gen` (the same seeded points and
generating labels `flashkm run` makes); the centroids are rows floor(k*N/K) of
each batch, as flashkm's harness uses them. Each peer adapter maps flashkm's
ops onto the peer's public API:

    assign  nearest-centroid labels (and distances where the peer returns them)
    update  new centroids from given labels
    lloyd   one iteration (assign + update) from given centroids
    fit     --iters iterations from given centroids (optional; not in the defaults)

Where a peer has no entry point for an op the row is `not_supported` with the
reason; peers that only expose a whole fit are timed as a 1-iteration fit and
say so in the row's `impl`. Every result is checked against an fp64 reference
with flashkm's tolerances before it is timed (a failure is `incorrect`, with no
timing); timing is CUDA events around the op's work after warm-up runs, the L2
flushed before each sample, as flashkm does. The file follows results/SCHEMA.md
and is rewritten atomically after every row. scripts/peers/README.md has the
details of each adapter.

usage: run_peers.py --flashkm BUILD/flashkm -o OUT.json [--peers flash_kmeans_triton,fastkmeans,faiss_gpu,cuml]
                    [--shapes "B×N×K×D,..."] [--ops assign,update,lloyd] [--dtype fp16] [--data blobs]
                    [--seed 1] [--iters 20]
Exit status: 0 every run ok, not_supported or out_of_memory (a peer that is not
installed is not_supported); 1 some run incorrect or error; 2 bad command line;
3 aborted (interrupted, a sticky CUDA error, or the results file not writable),
with every finished row saved."""
import argparse
import importlib
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

SCHEMA_VERSION = 1
RUNNER_VERSION = "1"
VARIANT_PREFIX = "peer/"
OPS = ("assign", "update", "lloyd", "fit")
DEFAULT_OPS = ("assign", "update", "lloyd")
DTYPES = ("fp16", "bf16", "fp32")
DATA_KINDS = ("blobs", "normal", "uniform", "skewed")
DTYPE_SIZE = {"fp16": 2, "bf16": 2, "fp32": 4}
# Unit roundoff of a returned centroid's storage type: a peer that returns its
# centroids in fp16 (bf16) rounds each coordinate by up to this fraction of it,
# so by at most this fraction of the cluster's RMS norm (||mean|| <= RMS).
ROUNDING = {"fp32": 0.0, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
DEFAULT_SHAPES = "1x1048576x1024x128,32x75600x1000x128,1x1048576x128x128"
FIT_INERTIA_RTOL = 1e-3  # flashkm's fit.inertia_rtol default


# --------------------------------------------------------------------------
# tolerances (harness/validate.c) and work (harness/runner.c work_of)

def assign_tolerance(D):
    """fkm_assign_tolerance: 3e-6 * sqrt(D), relative to ||x||^2 + ||c_best||^2."""
    return 3e-6 * math.sqrt(max(int(D), 1))


def update_tolerance(count):
    """fkm_update_tolerance: 2^-24 * (16 + 4 sqrt(n)), relative to the cluster's RMS norm."""
    return math.ldexp(16.0 + 4.0 * math.sqrt(max(int(count), 1)), -24)


def work_of(op, B, N, K, D, dtype):
    """(flops, bytes) of one run of op, the formulas of work_of() in harness/runner.c."""
    es = float(DTYPE_SIZE[dtype])
    B, N, K, D = float(B), float(N), float(K), float(D)
    if op == "assign":
        return 2.0 * B * N * K * D, B * N * D * es + B * K * D * es + B * N * 8.0
    if op in ("lloyd", "fit"):
        return (2.0 * B * N * K * D + B * N * D,
                2.0 * B * N * D * es + B * K * D * es + B * N * 12.0 + B * K * D * 8.0 + B * K * 4.0)
    return B * N * D, B * N * D * es + B * N * 4.0 + B * K * D * 4.0 * 2.0 + B * K * 4.0


def derived(op, shape, dtype, median_ms, passes=1):
    """The row's `derived` object: flops and bytes of the op (times passes for a fit), rates from the median."""
    flops, nbytes = work_of(op, *shape, dtype)
    flops, nbytes = flops * passes, nbytes * passes
    sec = median_ms * 1e-3
    return {"flops": _num(flops), "bytes": _num(nbytes),
            "tflops": flops / sec / 1e12 if sec > 0 else None,
            "gbps": nbytes / sec / 1e9 if sec > 0 else None}


def _num(x):
    return int(x) if float(x).is_integer() and abs(x) < 2 ** 63 else x


# --------------------------------------------------------------------------
# statistics and sampling (harness/stats.c, time_samples in harness/runner.c)

def sample_stats(samples):
    """median, q1, q3 (linear interpolation), min, max, mean and rel_stdev (sample stdev / mean)."""
    v = sorted(float(s) for s in samples)
    n = len(v)
    if n == 0:
        raise ValueError("no samples")

    def q(p):
        pos = p * (n - 1)
        lo = int(math.floor(pos))
        hi = lo + 1 if lo + 1 < n else lo
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)

    mean = sum(v) / n
    ss = sum((x - mean) ** 2 for x in v)
    rel = math.sqrt(ss / (n - 1)) / mean if n > 1 and mean > 0 else 0.0
    return {"n": n, "median": q(0.5), "q1": q(0.25), "q3": q(0.75), "min": v[0], "max": v[-1],
            "mean": mean, "rel_stdev": rel}


def timing_dict(samples, warmup, flush_l2, noise_target, clock="cuda_event"):
    """The row's `timing` object, with exactly the keys flashkm writes, in its order
    (`flush_l2_method` only when flushed: the clean flush, as flashkm's default)."""
    st = sample_stats(samples)
    t = {"unit": "ms", "clock": clock, "samples": st["n"], "warmup": int(warmup), "flush_l2": bool(flush_l2)}
    if flush_l2:
        t["flush_l2_method"] = "clean"
    t.update({"median": st["median"], "q1": st["q1"], "q3": st["q3"], "min": st["min"], "max": st["max"],
              "mean": st["mean"], "rel_stdev": st["rel_stdev"], "converged": st["rel_stdev"] <= noise_target})
    return t


def sample_loop(time_once, min_samples=5, max_samples=30, budget_s=2.0, noise_target=0.02, clock=time.monotonic):
    """Samples of time_once(i) (ms): after min_samples, stop as soon as the relative
    standard deviation is at most noise_target or budget_s seconds have passed; never
    more than max_samples."""
    samples = []
    t0 = clock()
    while len(samples) < max_samples:
        samples.append(float(time_once(len(samples))))
        if len(samples) >= min_samples:
            if sample_stats(samples)["rel_stdev"] <= noise_target or clock() - t0 >= budget_s:
                break
    return samples


class Measure:
    def __init__(self, warmup=3, min_samples=5, max_samples=30, budget_s=2.0, noise_target=0.02):
        self.warmup, self.min_samples, self.max_samples = warmup, min_samples, max_samples
        self.budget_s, self.noise_target = budget_s, noise_target

    def as_dict(self):
        return dict(vars(self))


# --------------------------------------------------------------------------
# validation against fp64 (harness/validate.c semantics)

def check_rows(total, max_rows=4096):
    """Row indices to check: all, or max_rows evenly spread ones including the first and the last."""
    n = min(int(max_rows), int(total))
    if n >= total:
        return np.arange(total, dtype=np.int64)
    if n <= 1:
        return np.array([0], dtype=np.int64)
    return np.unique(np.round(np.linspace(0, total - 1, n)).astype(np.int64))


def validate_assign(x, c, labels, dist=None, rows=None, max_rows=4096):
    """Check labels (and distances, when given) on a spread of rows against an fp64
    brute-force argmin, near-tie aware: a label other than the reference's is a
    mismatch only when its fp64 distance exceeds the best by more than
    tol * (||x||^2 + ||c_best||^2), tol = assign_tolerance(D); within that it is a
    near tie. A returned distance must be within 4 * tol of that scale.
    x (B, N, D), c (B, K, D), labels and dist (B, N) or anything of B*N elements.
    Returns (validation object as flashkm writes it, first failure or "")."""
    x = np.asarray(x)
    B, N, D = x.shape
    c = np.asarray(c)
    K = c.shape[1]
    tol = assign_tolerance(D)
    X2 = x.reshape(B * N, D)
    L = np.asarray(labels).reshape(-1).astype(np.int64)
    dd = None if dist is None else np.asarray(dist, dtype=np.float64).reshape(-1)
    if L.size != B * N or (dd is not None and dd.size != B * N):
        raise ValueError(f"labels/distances of {L.size} elements for {B * N} points")
    rows = check_rows(B * N, max_rows) if rows is None else np.asarray(rows, dtype=np.int64)
    mism = near = bad_d = 0
    max_excess, max_derr, nan_derr = 0.0, 0.0, False
    first = None  # (row, text)
    for b in np.unique(rows // N):
        sel = rows[rows // N == b]
        cb = c[b].astype(np.float64)
        cn = np.einsum("kd,kd->k", cb, cb)
        xr = X2[sel].astype(np.float64)
        xn = np.einsum("nd,nd->n", xr, xr)
        best = np.empty(len(sel), dtype=np.int64)
        step = max(1, (1 << 25) // max(K, 1))
        for s in range(0, len(sel), step):
            d = xn[s:s + step, None] - 2.0 * (xr[s:s + step] @ cb.T) + cn[None, :]
            best[s:s + step] = np.argmin(d, axis=1)
        best_d = np.einsum("nd,nd->n", xr - cb[best], xr - cb[best])
        got = L[sel]
        valid = (got >= 0) & (got < K)
        g = np.where(valid, got, 0)
        got_d = np.einsum("nd,nd->n", xr - cb[g], xr - cb[g])
        scale = xn + cn[best] + 1e-30
        differs = valid & (got != best)
        excess = np.where(differs, (got_d - best_d) / scale, 0.0)
        is_mism = ~valid | (differs & (excess > tol))
        is_near = differs & ~(excess > tol)
        mism += int(is_mism.sum())
        near += int(is_near.sum())
        if differs.any():
            max_excess = max(max_excess, float(excess[differs].max()))
        fails = is_mism.copy()
        if dd is not None:
            derr = np.abs(dd[sel] - got_d) / scale
            ok_rows = ~is_mism
            bad = ok_rows & ~(derr <= 4 * tol)
            bad_d += int(bad.sum())
            fails |= bad
            if ok_rows.any():
                de = derr[ok_rows]
                nan_derr |= bool(np.isnan(de).any())
                if (~np.isnan(de)).any():
                    max_derr = max(max_derr, float(np.nanmax(de)))
        if fails.any() and first is None:
            j = int(np.argmax(fails))
            r = int(sel[j])
            where = f"batch {r // N} point {r % N}"
            if not valid[j]:
                text = f"{where}: label {int(got[j])} is outside [0, {K})"
            elif is_mism[j]:
                text = (f"{where}: label {int(got[j])} at distance {got_d[j]:.9g}, reference {int(best[j])} at "
                        f"{best_d[j]:.9g} (excess {excess[j]:.3g} of scale > tol {tol:.3g})")
            else:
                text = f"{where}: distance {dd[r]:.9g}, reference {got_d[j]:.9g}"
            first = text
    out = {"ok": mism == 0 and bad_d == 0, "rows_checked": int(len(rows)), "mismatches": mism, "near_ties": near,
           "bad_distances": bad_d if dd is not None else None, "tolerance": tol, "max_excess": max_excess,
           "max_distance_error": (None if nan_derr else max_derr) if dd is not None else None,
           "distances_checked": dd is not None}
    return out, first or ""


def ref_means(x, labels, K, chunk=1 << 20):
    """fp64 means, counts and RMS point norms of each cluster (B, K) of x (B, N, D)
    under labels (B, N), summed in point order (numpy bincount). Labels must lie in [0, K)."""
    x = np.asarray(x)
    B, N, D = x.shape
    L = np.asarray(labels).reshape(B, N).astype(np.int64)
    if L.size and (L.min() < 0 or L.max() >= K):
        raise ValueError("labels outside [0, K)")
    flat = (np.arange(B, dtype=np.int64)[:, None] * K + L).reshape(-1)
    X2 = x.reshape(B * N, D)
    counts = np.bincount(flat, minlength=B * K)
    sums = np.empty((B * K, D), dtype=np.float64)
    for d in range(D):
        sums[:, d] = np.bincount(flat, weights=X2[:, d], minlength=B * K)
    n2 = np.empty(B * N, dtype=np.float64)
    for s in range(0, B * N, chunk):
        xc = X2[s:s + chunk].astype(np.float64)
        n2[s:s + chunk] = np.einsum("nd,nd->n", xc, xc)
    sq = np.bincount(flat, weights=n2, minlength=B * K)
    div = np.maximum(counts, 1).astype(np.float64)
    return ((sums / div[:, None]).reshape(B, K, D), counts.reshape(B, K),
            np.sqrt(sq / div).reshape(B, K))


def check_centroids(means, counts, rms, c_old, c_new, got_counts=None, allowance=0.0, skip=None,
                    empty_policy="keep", output_dtype="fp32"):
    """Each centroid against the fp64 mean of its cluster: counts exact (when the
    peer returns them), error ||c - c_ref|| / RMS within update_tolerance(n) +
    allowance (the rounding of the peer's output type), an empty cluster keeps its
    old centroid bit for bit (empty_policy "keep") or is skipped ("skip": peers
    that re-seed empty clusters). Clusters in skip (bool (B, K)) are not checked.
    Returns (validation object, first failure or "")."""
    means = np.asarray(means, dtype=np.float64)
    B, K, D = means.shape
    BK = B * K
    ref = means.reshape(BK, D)
    cnt = np.asarray(counts).reshape(BK)
    rms = np.asarray(rms, dtype=np.float64).reshape(BK)
    new32 = np.asarray(c_new).astype(np.float32).reshape(BK, D)
    old32 = np.asarray(c_old).astype(np.float32).reshape(BK, D)
    skipped = np.zeros(BK, dtype=bool) if skip is None else np.asarray(skip, dtype=bool).reshape(BK)
    checked = ~skipped
    empty = cnt == 0
    skipped_empty = np.zeros(BK, dtype=bool)
    if empty_policy == "skip":
        skipped_empty = checked & empty
        checked = checked & ~empty
    cm = np.zeros(BK, dtype=bool)
    if got_counts is not None:
        gc = np.asarray(got_counts).reshape(BK).astype(np.int64)
        cm = checked & (gc != cnt)
    empty_changed = checked & ~cm & empty & (new32.view(np.uint32) != old32.view(np.uint32)).any(axis=1)
    nonempty = checked & ~cm & ~empty
    diff = new32.astype(np.float64) - ref
    e2 = np.einsum("kd,kd->k", diff, diff)
    e2 = np.where(np.isnan(e2), np.inf, e2)
    rel = np.sqrt(e2) / np.where(rms > 0, rms, 1e-30)
    tolv = np.ldexp(16.0 + 4.0 * np.sqrt(np.maximum(cnt, 1).astype(np.float64)), -24) + allowance
    over = rel / tolv
    bad = nonempty & ~(over <= 1.0)
    out = {"ok": not (cm.any() or bad.any() or empty_changed.any()),
           "clusters_checked": int(checked.sum()),
           "count_mismatches": int(cm.sum()) if got_counts is not None else None,
           "bad_centroids": int(bad.sum()), "empty_changed": int(empty_changed.sum()),
           "max_relative_error": float(rel[nonempty].max()) if nonempty.any() else 0.0,
           "max_error_over_tolerance": float(over[nonempty].max()) if nonempty.any() else 0.0,
           "counts_checked": got_counts is not None, "output_dtype": output_dtype,
           "rounding_allowance": allowance}
    if skip is not None:
        out["clusters_skipped_near_tie"] = int(skipped.sum())
    if empty_policy == "skip":
        out["clusters_skipped_empty"] = int(skipped_empty.sum())
    failing = cm | bad | empty_changed
    detail = ""
    if failing.any():
        i = int(np.argmax(failing))
        where = f"batch {i // K} cluster {i % K}"
        if cm[i]:
            detail = f"{where}: count {int(np.asarray(got_counts).reshape(BK)[i])}, reference {int(cnt[i])}"
        elif empty_changed[i]:
            detail = f"{where} is empty but its centroid changed"
        else:
            detail = (f"{where} ({int(cnt[i])} points): centroid error {rel[i]:.3g} of the cluster RMS > "
                      f"tol {tolv[i]:.3g} (update_tolerance {tolv[i] - allowance:.3g} + rounding {allowance:.3g})")
    return out, detail


def near_tie_clusters(best, second, tie, B, K):
    """Bool (B, K): the clusters that a near-tie point (tie (B, N)) could join, its
    best and second-best centroids; means of these depend on how the tie is broken."""
    best = np.asarray(best).reshape(B, -1)
    second = np.asarray(second).reshape(B, -1)
    tie = np.asarray(tie, dtype=bool).reshape(B, -1)
    mark = np.zeros(B * K, dtype=bool)
    off = np.arange(B, dtype=np.int64)[:, None] * K
    mark[(off + best)[tie]] = True
    ok2 = tie & (second >= 0)
    mark[(off + second)[ok2]] = True
    return mark.reshape(B, K)


class NumpyRef:
    """fp64 reference computations on the host (used without a GPU, and in tests)."""

    def nearest_two(self, prob, b, c):
        """best index, best distance, second index, second distance, ||x||^2 of every point
        of batch b against c (K, D), fp64 (||x||^2 - 2 x.c + ||c||^2)."""
        xb = np.asarray(prob.x_np[b])
        return _nearest_two_np(xb, np.asarray(c, dtype=np.float64))

    def means(self, prob, labels, K):
        return ref_means(prob.x_np, labels, K)


def _nearest_two_np(xb, c):
    K = c.shape[0]
    cn = np.einsum("kd,kd->k", c, c)
    N = xb.shape[0]
    out = [np.empty(N, np.int64), np.empty(N), np.full(N, -1, np.int64), np.full(N, np.inf), np.empty(N)]
    step = max(1, (1 << 25) // max(K, 1))
    for s in range(0, N, step):
        xr = xb[s:s + step].astype(np.float64)
        xn = np.einsum("nd,nd->n", xr, xr)
        d = xn[:, None] - 2.0 * (xr @ c.T) + cn[None, :]
        i1 = np.argmin(d, axis=1)
        r = np.arange(len(xr))
        out[0][s:s + step], out[1][s:s + step], out[4][s:s + step] = i1, d[r, i1], xn
        if K > 1:
            d[r, i1] = np.inf
            i2 = np.argmin(d, axis=1)
            out[2][s:s + step], out[3][s:s + step] = i2, d[r, i2]
    out[1] = np.maximum(out[1], 0.0)
    return tuple(out)


class TorchRef:
    """The same reference computations on the GPU (fp64 torch), for full-data checks."""

    def __init__(self, torch):
        self.torch = torch

    def nearest_two(self, prob, b, c):
        torch = self.torch
        xb = prob.x_t()[b]
        ct = torch.as_tensor(np.asarray(c, dtype=np.float64), device=xb.device)
        K = ct.shape[0]
        cn = (ct * ct).sum(1)
        N = xb.shape[0]
        outs = [[], [], [], [], []]
        step = max(1, (1 << 27) // max(K, 1))
        for s in range(0, N, step):
            xr = xb[s:s + step].double()
            xn = (xr * xr).sum(1)
            d = xn[:, None] - 2.0 * (xr @ ct.T) + cn[None, :]
            if K > 1:
                v, i = torch.topk(d, 2, dim=1, largest=False, sorted=True)
                outs[0].append(i[:, 0]), outs[1].append(v[:, 0]), outs[2].append(i[:, 1]), outs[3].append(v[:, 1])
            else:
                outs[0].append(torch.zeros(len(xr), dtype=torch.int64, device=xb.device)), outs[1].append(d[:, 0])
                outs[2].append(torch.full((len(xr),), -1, dtype=torch.int64, device=xb.device))
                outs[3].append(torch.full((len(xr),), math.inf, dtype=torch.float64, device=xb.device))
            outs[4].append(xn)
            del d
        best, bd, second, sd, xn = (torch.cat(o).cpu().numpy() for o in outs)
        return best, np.maximum(bd, 0.0), second, sd, xn

    def means(self, prob, labels, K):
        torch = self.torch
        x = prob.x_t()
        B, N, D = x.shape
        L = torch.as_tensor(np.asarray(labels).reshape(B, N).astype(np.int64), device=x.device)
        if L.numel() and (int(L.min()) < 0 or int(L.max()) >= K):
            raise ValueError("labels outside [0, K)")
        flat = (torch.arange(B, device=x.device)[:, None] * K + L).reshape(-1)
        X2 = x.reshape(B * N, D)
        sums = torch.zeros((B * K, D), dtype=torch.float64, device=x.device)
        sq = torch.zeros(B * K, dtype=torch.float64, device=x.device)
        step = 1 << 18
        for s in range(0, B * N, step):
            xc = X2[s:s + step].double()
            sums.index_add_(0, flat[s:s + step], xc)
            sq.index_add_(0, flat[s:s + step], (xc * xc).sum(1))
        counts = torch.bincount(flat, minlength=B * K)
        div = counts.clamp(min=1).double()
        return ((sums / div[:, None]).reshape(B, K, D).cpu().numpy(), counts.reshape(B, K).cpu().numpy(),
                (sq / div).sqrt().reshape(B, K).cpu().numpy())


def lloyd_by_reference(ref, prob, c0, c1, allowance, empty_policy="skip", output_dtype="fp32"):
    """For peers whose iteration does not return its labels: the fp64 reference
    labels of every point for the initial centroids c0, then the returned
    centroids c1 against the means under those labels. Clusters that a near-tie
    point could join (its best two centroids within the assignment tolerance) are
    not checked, as their means depend on how the tie was broken."""
    B, N, D = prob.x_shape
    K = c0.shape[1]
    tol = assign_tolerance(D)
    labels = np.empty((B, N), np.int64)
    second = np.empty((B, N), np.int64)
    tie = np.empty((B, N), bool)
    for b in range(B):
        cb = np.asarray(c0[b], dtype=np.float64)
        best, bd, sec, sd, xn = ref.nearest_two(prob, b, cb)
        cn = np.einsum("kd,kd->k", cb, cb)
        labels[b], second[b] = best, sec
        tie[b] = (sd - bd) <= tol * (xn + cn[best] + 1e-30)
    skip = near_tie_clusters(labels, second, tie, B, K)
    means, counts, rms = ref.means(prob, labels, K)
    upd, detail = check_centroids(means, counts, rms, c0, c1, None, allowance, skip, empty_policy, output_dtype)
    v = {"ok": upd["ok"],
         "labels": "not returned for the iteration: centroids checked against fp64 means under the fp64 "
                   "reference labels of the initial centroids",
         "reference": {"points": int(B * N), "near_tie_points": int(tie.sum()), "tolerance": tol},
         "update": upd}
    return v, detail


def reference_fit(ref, prob, c0, iters):
    """fp64 Lloyd from c0 for iters iterations (an empty cluster keeps its centroid):
    (final centroids (B, K, D) fp64, inertia of those centroids)."""
    c = np.asarray(c0, dtype=np.float64).copy()
    B, K, _ = c.shape
    for _ in range(iters):
        labels = np.stack([ref.nearest_two(prob, b, c[b])[0] for b in range(B)])
        means, counts, _ = ref.means(prob, labels, K)
        c = np.where((counts > 0)[..., None], means, c)
    return c, inertia_of(ref, prob, c)


def inertia_of(ref, prob, c):
    """Sum over all points of the squared distance to the nearest of c (B, K, D), fp64."""
    return float(sum(ref.nearest_two(prob, b, np.asarray(c[b], np.float64))[1].sum() for b in range(c.shape[0])))


def fit_by_reference(ref, prob, c0, c_final, iters):
    """A fixed-iteration fit: its final inertia (fp64, of the returned centroids) must
    agree with an fp64 Lloyd's from the same initial centroids within FIT_INERTIA_RTOL."""
    c_final = np.asarray(c_final, dtype=np.float64)
    finite = bool(np.isfinite(c_final).all())
    _, want = reference_fit(ref, prob, c0, iters)
    got = inertia_of(ref, prob, c_final) if finite else math.inf
    diff = abs(got - want) / (abs(want) if want else 1.0)
    ok = finite and diff <= FIT_INERTIA_RTOL
    v = {"ok": ok, "inertia": got if finite else None, "reference_inertia": want,
         "inertia_reference": f"fp64 Lloyd, {iters} iterations from the same initial centroids",
         "inertia_relative_difference": diff if finite else None, "inertia_rtol": FIT_INERTIA_RTOL}
    detail = "" if ok else ("returned centroids are not finite" if not finite else
                            f"final inertia {got:.9g} differs from the fp64 reference's {want:.9g} by {diff:.3g} "
                            f"(relative), more than {FIT_INERTIA_RTOL:g}")
    return v, detail


# --------------------------------------------------------------------------
# problems: flashkm's data, flashkm's initial centroids

class ProblemError(Exception):
    pass


class Problem:
    """One shape's inputs. x_np (B, N, D) as flashkm gen wrote it (float16, or float32
    holding bf16/fp32 values), labels_np (B, N) int32 (each point's generating
    cluster), c0_np (B, K, D) rows floor(k*N/K) of each batch, c_old (B, K, D)
    float32 of them. Device copies are made on first use."""

    def __init__(self, x, labels, K, dtype, torch=None, device=None):
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[None]
        self.x_np = np.ascontiguousarray(x)
        B, N, D = self.x_np.shape
        self.x_shape = (B, N, D)
        self.K, self.dtype = int(K), dtype
        self.labels_np = np.ascontiguousarray(np.asarray(labels).reshape(B, N).astype(np.int32))
        rows = (np.arange(K, dtype=np.int64) * N) // K
        self.c0_np = np.ascontiguousarray(self.x_np[:, rows, :])
        self.c_old = self.c0_np.astype(np.float32)
        self.torch, self.device = torch, device
        self._cache = {}

    @property
    def shape(self):
        B, N, D = self.x_shape
        return (B, N, self.K, D)

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def torch_dtype(self):
        t = self.torch
        return {"fp16": t.float16, "bf16": t.bfloat16, "fp32": t.float32}[self.dtype]

    def x_t(self):
        return self._get("x_t", lambda: self.torch.from_numpy(self.x_np).to(self.device).to(self.torch_dtype())
                         .contiguous())

    def c_t(self):
        return self._get("c_t", lambda: self.torch.from_numpy(self.c0_np).to(self.device).to(self.torch_dtype())
                         .contiguous())

    def labels_t(self):
        return self._get("labels_t", lambda: self.torch.from_numpy(self.labels_np).to(self.device).contiguous())

    def x32_host(self):
        return self._get("x32_host", lambda: np.ascontiguousarray(self.x_np, dtype=np.float32))

    def x32_t(self):
        return self._get("x32_t", lambda: self.x_t().float().contiguous())

    def c32_t(self):
        return self._get("c32_t", lambda: self.torch.from_numpy(self.c_old).to(self.device).contiguous())

    def free(self):
        self._cache.clear()


def generate_problem(flashkm, shape, dtype, data, seed, torch=None, device=None):
    """The shape's data from `flashkm gen` (points and generating labels), as a Problem."""
    B, N, K, D = shape
    with tempfile.TemporaryDirectory(prefix="flashkm_peers_") as tmp:
        xp, lp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "labels.npy")
        cmd = [flashkm, "gen", "--n", str(N), "--d", str(D), "--k", str(K), "--b", str(B), "--data", data,
               "--dtype", dtype, "--seed", str(seed), "-o", xp, "--labels", lp]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise ProblemError(f"cannot run {flashkm}: {e.strerror or e}")
        if r.returncode != 0:
            raise ProblemError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        try:
            x, labels = np.load(xp), np.load(lp)
        except (OSError, ValueError) as e:
            raise ProblemError(f"cannot read what flashkm gen wrote: {e}")
    if x.size != B * N * D or labels.size != B * N:
        raise ProblemError(f"flashkm gen wrote {x.shape} points and {labels.shape} labels for {B}x{N}x{K}x{D}")
    return Problem(x.reshape(B, N, D), labels.reshape(B, N), K, dtype, torch, device)


# --------------------------------------------------------------------------
# timing backends

class CudaBackend:
    """CUDA events on torch's current stream. Before each sample the L2 is emptied as
    flashkm's clean flush does: a 2 x L2 buffer written, then another 2 x L2 buffer read, so
    the timed work starts with only clean lines in the L2 (no write-back of the flush)."""
    clock = "cuda_event"

    def __init__(self, torch, device_index):
        self.torch = torch
        props = torch.cuda.get_device_properties(device_index)
        l2 = int(getattr(props, "L2_cache_size", 0) or 0)
        self.flush_buf = torch.empty(2 * l2, dtype=torch.uint8, device=f"cuda:{device_index}") if l2 > 0 else None
        self.clean_buf = torch.zeros(2 * l2 // 4, dtype=torch.int32, device=f"cuda:{device_index}") if l2 > 0 else None
        self.flush_l2 = self.flush_buf is not None
        self.e0 = torch.cuda.Event(enable_timing=True)
        self.e1 = torch.cuda.Event(enable_timing=True)

    def sync(self):
        self.torch.cuda.synchronize()

    def time_once(self, fn, i, synchronous=False):
        if self.flush_buf is not None:
            self.flush_buf.fill_(i & 0xFF)
            self.clean_buf.sum()  # reads it all: evicts (writes back) the fill's dirty lines
        if synchronous:  # the peer works on its own streams and waits for them: start after the flush
            self.torch.cuda.synchronize()
        self.e0.record()
        fn()
        self.e1.record()
        self.e1.synchronize()
        return self.e0.elapsed_time(self.e1)

    def device_used(self):
        try:
            free, total = self.torch.cuda.mem_get_info()
            return total - free
        except Exception:
            return None

    def cleanup(self):
        try:
            self.torch.cuda.empty_cache()
        except Exception:
            pass


class HostBackend:
    """Host clock, no L2 flush: for tests and CPU fakes."""
    clock = "host_monotonic"
    flush_l2 = False

    def sync(self):
        pass

    def time_once(self, fn, i, synchronous=False):
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    def device_used(self):
        return None

    def cleanup(self):
        pass


# --------------------------------------------------------------------------
# peers

class NotSupported(Exception):
    pass


class Job:
    """What an adapter returns for one case: run() is the timed work; validate() runs it
    once and returns (validation object, ok, first failure)."""

    def __init__(self, impl, run, validate, synchronous=False, fit=None):
        self.impl, self.run, self.validate, self.synchronous = impl, run, validate, synchronous
        self.fit = fit  # op fit: extra row keys


class Context:
    """What adapters get besides the problem: torch, the device, the sweep's settings,
    the fp64 reference."""

    def __init__(self, torch=None, device_index=0, iters=20, seed=1, max_rows=4096, ref=None, backend=None):
        self.torch, self.device_index, self.iters, self.seed = torch, device_index, iters, seed
        self.max_rows = max_rows
        self.ref = ref or (TorchRef(torch) if torch is not None else NumpyRef())
        self.backend = backend

    @property
    def device(self):
        return f"cuda:{self.device_index}"

    def sync(self):
        if self.backend is not None:
            self.backend.sync()

    def check_assign(self, prob, labels, dist=None):
        v, detail = validate_assign(prob.x_np, prob.c0_np, to_numpy(labels),
                                    None if dist is None else to_numpy(dist), max_rows=self.max_rows)
        return v, v["ok"], (f"{v['mismatches']} mismatches, {v['bad_distances'] or 0} bad distances in "
                            f"{v['rows_checked']} rows; first: {detail}" if not v["ok"] else "")

    def check_update(self, prob, labels, c_new, counts=None, allowance=0.0, empty_policy="keep",
                     output_dtype="fp32"):
        means, cnt, rms = ref_means(prob.x_np, labels, prob.K)
        v, detail = check_centroids(means, cnt, rms, prob.c_old, to_numpy(c_new),
                                    None if counts is None else to_numpy(counts), allowance, None, empty_policy,
                                    output_dtype)
        return v, v["ok"], (f"{v['count_mismatches'] or 0} count mismatches, {v['bad_centroids']} bad centroids, "
                            f"{v['empty_changed']} empty changed; first: {detail}" if not v["ok"] else "")

    def check_lloyd(self, prob, labels, c_new, counts=None, allowance=0.0, output_dtype="fp32"):
        """A peer that returns the iteration's labels: labels as an assignment, then the
        centroids as the update of the points under those labels."""
        a, ok, why = self.check_assign(prob, labels)
        v = {"ok": ok, "assign": a}
        if ok:
            u, ok, why = self.check_update(prob, to_numpy(labels), c_new, counts, allowance, "keep", output_dtype)
            v["ok"], v["update"] = ok, u
        return v, ok, why

    def check_lloyd_by_reference(self, prob, c0, c1, allowance=0.0, empty_policy="skip", output_dtype="fp32"):
        v, detail = lloyd_by_reference(self.ref, prob, np.asarray(c0), to_numpy(c1), allowance, empty_policy,
                                       output_dtype)
        u = v["update"]
        return v, v["ok"], ("" if v["ok"] else f"{u['bad_centroids']} bad centroids (reference labels); "
                                                 f"first: {detail}")

    def check_fit(self, prob, c0, c_final):
        v, detail = fit_by_reference(self.ref, prob, np.asarray(c0), to_numpy(c_final), self.iters)
        return v, v["ok"], detail


def to_numpy(a):
    """numpy array of a numpy array, torch tensor, cupy array or list of them (stacked)."""
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return np.stack([to_numpy(v) for v in a])
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch
        t = a.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if hasattr(a, "get"):  # cupy
        return a.get()
    return np.asarray(a)


def module_found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class Peer:
    """An adapter: name (rows' variant is peer/<name>), the module it imports, how to install it."""
    name = ""
    module = ""
    install = ""
    ops = DEFAULT_OPS
    why_not = {}  # op -> reason, for ops the peer has no entry point for

    def variant(self):
        return VARIANT_PREFIX + self.name

    def unavailable(self, torch, device):
        """None when the peer can run here, else why not (package missing, no torch, no CUDA device)."""
        if not module_found(self.module):
            return f"python package {self.module} not installed: {self.install}"
        if torch is None:
            return f"python package torch not installed (needed to run {self.module} and time it)"
        if not device.get("present"):
            return device.get("reason") or "no CUDA device"
        try:
            self.load()
        except ImportError as e:
            return f"python package {self.module} cannot be imported ({type(e).__name__}: {e}): {self.install}"
        except Exception as e:  # a broken install: CUDA libraries missing and the like
            return f"python package {self.module} cannot be imported ({type(e).__name__}: {e})"
        return self.usable()

    def load(self):
        return importlib.import_module(self.module)

    def usable(self):
        return None

    def version(self):
        try:
            from importlib import metadata
        except ImportError:
            return None
        for dist in self.dists():
            try:
                return metadata.version(dist)
            except Exception:
                continue
        m = sys.modules.get(self.module)
        return getattr(m, "__version__", None) if m else None

    def dists(self):
        return (self.module,)

    def supports(self, op, shape, dtype):
        if op not in self.ops:
            return self.why_not.get(op, f"{self.name} has no entry point for op {op}")
        return None

    def prepare(self, op, prob, ctx):
        raise NotImplementedError


class FlashKMeansTriton(Peer):
    """flash-kmeans 0.3.x (module flash_kmeans): the official Triton Flash-KMeans kernels."""
    name = "flash_kmeans_triton"
    module = "flash_kmeans"
    install = "pip install flash-kmeans"
    ops = ("assign", "update", "lloyd", "fit")

    def dists(self):
        return ("flash-kmeans", "flash_kmeans")

    def load(self):
        m = importlib.import_module("flash_kmeans")
        a = importlib.import_module("flash_kmeans.assign_euclid_triton")  # raises when triton is missing
        importlib.import_module("flash_kmeans.centroid_update_triton")
        return m, a

    def prepare(self, op, prob, ctx):
        torch = ctx.torch
        fk, fa = self.load()
        assign, update, fit = fa.euclid_assign_triton, fk.triton_centroid_update_sorted_euclid, fk.batch_kmeans_Euclid
        x, c = prob.x_t(), prob.c_t()
        B, N, K, D = prob.shape
        out_dtype = prob.dtype  # its centroids come back in the input dtype
        allowance = ROUNDING[out_dtype]
        if op in ("assign", "lloyd"):
            x_sq = torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).square().contiguous()
        if op == "assign":
            return Job("flash_kmeans.assign_euclid_triton.euclid_assign_triton (heuristic config); ||x||^2 "
                       "(fp32) computed once per shape outside the timing, as batch_kmeans_Euclid does once per "
                       "fit; returns labels only",
                       lambda: assign(x, c, x_sq),
                       lambda: ctx.check_assign(prob, assign(x, c, x_sq)))
        if op == "update":
            labels = prob.labels_t()

            def validate():
                sums = torch.zeros((B, K, D), dtype=torch.float32, device=x.device)
                cnts = torch.zeros((B, K), dtype=torch.int32, device=x.device)
                c1 = update(x, labels, c, centroid_sums=sums, centroid_cnts=cnts)
                return ctx.check_update(prob, prob.labels_np, c1, cnts, allowance, "keep", out_dtype)
            return Job(f"flash_kmeans.triton_centroid_update_sorted_euclid: torch.sort of the labels, then its "
                       f"chunked segment kernel with fp32 atomics; centroids returned in {out_dtype}",
                       lambda: update(x, labels, c), validate)
        if op == "lloyd":
            def run():
                ids = assign(x, c, x_sq)
                c1 = update(x, ids, c)
                return (c1 - c).norm(dim=-1).max().item()

            def validate():
                ids = assign(x, c, x_sq)
                sums = torch.zeros((B, K, D), dtype=torch.float32, device=x.device)
                cnts = torch.zeros((B, K), dtype=torch.int32, device=x.device)
                c1 = update(x, ids, c, centroid_sums=sums, centroid_cnts=cnts)
                return ctx.check_lloyd(prob, ids, c1, cnts, allowance, out_dtype)
            return Job("euclid_assign_triton + triton_centroid_update_sorted_euclid + the largest centroid shift "
                       "copied to the host: the work of one batch_kmeans_Euclid iteration (||x||^2 computed once "
                       f"per shape outside the timing); centroids in {out_dtype}", run, validate)
        if op == "fit":
            iters = ctx.iters

            def validate():
                _, cf, _ = fit(x, K, max_iters=iters, tol=0.0, init_centroids=c)
                return ctx.check_fit(prob, prob.c_old, cf)
            return Job(f"flash_kmeans.batch_kmeans_Euclid(max_iters={iters}, tol=0, init_centroids=given): "
                       f"{iters} iterations including its ||x||^2 pass; centroids kept in {out_dtype}",
                       lambda: fit(x, K, max_iters=iters, tol=0.0, init_centroids=c), validate,
                       fit={"init": "given", "max_iter": iters, "iterations": iters})
        raise NotSupported(f"{self.name}: op {op}")


class FastKMeansPeer(Peer):
    """fastkmeans 0.5.x: FastKMeans, a faiss-like API over double-chunked Triton kernels."""
    name = "fastkmeans"
    module = "fastkmeans"
    install = "pip install fastkmeans"
    ops = ("assign", "lloyd", "fit")
    why_not = {"update": "fastkmeans has no entry point that computes centroids from given labels "
                         "(the update is fused into FastKMeans.train's loop)"}

    def prepare(self, op, prob, ctx):
        FK = self.load().FastKMeans
        B, N, K, D = prob.shape
        X = prob.x32_host()
        dev = ctx.device
        if op == "assign":
            kms = []
            for b in range(B):
                km = FK(d=D, k=K, niter=1, gpu=True, seed=ctx.seed, device=dev)
                km.centroids = np.ascontiguousarray(prob.c_old[b])  # the attribute train() sets
                kms.append(km)

            def run():
                return [kms[b].predict(X[b]) for b in range(B)]
            return Job("FastKMeans.predict with .centroids set to the given centroids: float32 host data copied "
                       "to the GPU in chunks of 51200 rows, ||x||^2 on the host, fp32 Triton distance kernel, "
                       f"labels back to the host{'; B sequential calls' if B > 1 else ''}",
                       run, lambda: ctx.check_assign(prob, run()), synchronous=True)
        if op in ("lloyd", "fit"):
            iters = 1 if op == "lloyd" else ctx.iters
            kms = [FK(d=D, k=K, niter=iters, tol=-1.0, gpu=True, seed=ctx.seed, device=dev) for _ in range(B)]

            def run():
                for b in range(B):
                    kms[b].train(X[b])

            def validate():
                c0 = []
                for b in range(B):  # the init it draws from the seed: a 0-iteration fit returns it
                    k0 = FK(d=D, k=K, niter=0, tol=-1.0, gpu=True, seed=ctx.seed, device=dev)
                    k0.train(X[b])
                    c0.append(np.asarray(k0.centroids, dtype=np.float32))
                run()
                c1 = np.stack([np.asarray(km.centroids, dtype=np.float32) for km in kms])
                if op == "fit":
                    return ctx.check_fit(prob, np.stack(c0), c1)
                # fp16 centroids (its default compute dtype on CUDA); empty clusters are re-seeded at random
                return ctx.check_lloyd_by_reference(prob, np.stack(c0), c1, ROUNDING["fp16"], "skip", "fp16")
            what = ("a whole 1-iteration fit, timed as lloyd: FastKMeans(niter=1).train" if op == "lloyd" else
                    f"FastKMeans(niter={iters}, tol=-1).train: {iters} iterations")
            return Job(f"{what} from its own random init (seed {ctx.seed}; FastKMeans takes no initial "
                       "centroids); float32 host data streamed to the GPU in chunks every iteration, fp16 "
                       f"compute{'; B sequential fits' if B > 1 else ''}", run, validate, synchronous=True,
                       fit={"init": f"peer random (seed {ctx.seed})", "max_iter": iters, "iterations": iters}
                       if op == "fit" else None)
        raise NotSupported(f"{self.name}: op {op}")


class FaissGpu(Peer):
    """faiss with GPU support: brute-force k-NN (bfKnn) and Clustering over a GPU flat index."""
    name = "faiss_gpu"
    module = "faiss"
    install = "pip install faiss-gpu-cu12 (or conda install -c pytorch faiss-gpu)"
    ops = ("assign", "lloyd", "fit")
    why_not = {"update": "faiss has no entry point that computes centroids from given labels "
                         "(Clustering computes them on the CPU inside train)"}

    def __init__(self):
        self.res = None

    def dists(self):
        return ("faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu", "faiss", "faiss-cpu")

    def load(self):
        faiss = importlib.import_module("faiss")
        importlib.import_module("faiss.contrib.torch_utils")  # torch tensors in knn_gpu
        return faiss

    def usable(self):
        faiss = self.load()
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            return f"faiss is installed without GPU support (faiss-cpu?): {self.install}"
        return None

    def supports(self, op, shape, dtype):
        if op == "assign" and dtype == "bf16":
            return "faiss.knn_gpu takes float32 or float16 data, not bfloat16"
        return super().supports(op, shape, dtype)

    def resources(self, faiss):
        if self.res is None:
            self.res = faiss.StandardGpuResources()
        return self.res

    def prepare(self, op, prob, ctx):
        torch = ctx.torch
        faiss = self.load()
        res = self.resources(faiss)
        B, N, K, D = prob.shape
        if op == "assign":
            x, c = prob.x_t(), prob.c_t()
            dist = torch.empty((B, N, 1), dtype=torch.float32, device=x.device)
            idx = torch.empty((B, N, 1), dtype=torch.int64, device=x.device)

            def run():
                for b in range(B):
                    faiss.knn_gpu(res, x[b], c[b], 1, D=dist[b], I=idx[b])

            def validate():
                run()
                ctx.sync()
                return ctx.check_assign(prob, idx[..., 0], dist[..., 0])
            return Job(f"faiss.knn_gpu (bfKnn, k=1, {prob.dtype} on the GPU through faiss.contrib.torch_utils, "
                       f"outputs preallocated); labels and squared distances{'; B sequential calls' if B > 1 else ''}",
                       run, validate)
        if op in ("lloyd", "fit"):
            iters = 1 if op == "lloyd" else ctx.iters
            cp = faiss.ClusteringParameters()
            cp.niter, cp.nredo, cp.seed, cp.verbose = iters, 1, ctx.seed, False
            cp.min_points_per_centroid = 1
            cp.max_points_per_centroid = N // K + 1  # no subsampling
            index = faiss.GpuIndexFlatL2(res, D)
            X, C0 = prob.x32_host(), prob.c_old

            def one(b):
                clus = faiss.Clustering(D, K, cp)
                faiss.copy_array_to_vector(np.ascontiguousarray(C0[b]).reshape(-1), clus.centroids)
                clus.train(X[b], index)
                return clus

            def run():
                for b in range(B):
                    one(b)

            def centroids(b):
                clus = one(b)  # keep it alive while its centroids vector is read
                return faiss.vector_to_array(clus.centroids).reshape(K, D).copy()

            def validate():
                c1 = np.stack([centroids(b) for b in range(B)])
                if op == "fit":
                    return ctx.check_fit(prob, C0, c1)
                # faiss splits a big cluster into an empty one: empty clusters are not checked
                return ctx.check_lloyd_by_reference(prob, C0, c1, 0.0, "skip", "fp32")
            what = "a 1-iteration fit, timed as lloyd: " if op == "lloyd" else f"{iters} iterations: "
            return Job(f"{what}faiss.Clustering(niter={iters}).train from the given centroids with a "
                       "GpuIndexFlatL2 (fp32) made once: float32 host data, assignment on the GPU, centroids "
                       f"computed on the CPU{'; B sequential fits' if B > 1 else ''}", run, validate,
                       synchronous=True,
                       fit={"init": "given", "max_iter": iters, "iterations": iters} if op == "fit" else None)
        raise NotSupported(f"{self.name}: op {op}")


class CumlPeer(Peer):
    """RAPIDS cuML KMeans (raft's k-means)."""
    name = "cuml"
    module = "cuml"
    install = "pip install cuml-cu12 --extra-index-url=https://pypi.nvidia.com (RAPIDS)"
    ops = ("assign", "lloyd", "fit")
    why_not = {"update": "cuML exposes no centroid update from given labels (it runs inside KMeans.fit)"}

    def dists(self):
        return ("cuml-cu12", "cuml-cu11", "cuml")

    def load(self):
        importlib.import_module("cuml")
        return importlib.import_module("cuml.cluster").KMeans, importlib.import_module("cupy")

    def prepare(self, op, prob, ctx):
        KMeans, cupy = self.load()
        B, N, K, D = prob.shape
        x32, c32 = prob.x32_t(), prob.c32_t()
        xs = [cupy.asarray(x32[b]) for b in range(B)]
        cs = [cupy.asarray(c32[b]) for b in range(B)]
        note = "" if prob.dtype == "fp32" else f" (float32 copy of the {prob.dtype} data: cuML has no half path)"
        batches = "; B sequential calls" if B > 1 else ""

        def model(b, iters):
            return KMeans(n_clusters=K, init=cs[b], n_init=1, max_iter=iters, tol=0.0, output_type="cupy")
        if op == "assign":
            kms = []
            for b in range(B):
                km = model(b, 1)
                km.fit(xs[b])  # set-up only; then the given centroids go back in
                km.cluster_centers_ = cs[b]
                kms.append(km)

            def run():
                return [kms[b].predict(xs[b]) for b in range(B)]
            return Job(f"cuml.KMeans.predict with cluster_centers_ set to the given centroids{note}{batches}",
                       run, lambda: ctx.check_assign(prob, run()), synchronous=True)
        if op in ("lloyd", "fit"):
            iters = 1 if op == "lloyd" else ctx.iters

            def run():
                return [model(b, iters).fit(xs[b]) for b in range(B)]

            def validate():
                c1 = np.stack([to_numpy(km.cluster_centers_) for km in run()])
                if op == "fit":
                    return ctx.check_fit(prob, prob.c_old, c1)
                return ctx.check_lloyd_by_reference(prob, prob.c_old, c1, 0.0, "skip", "fp32")
            what = ("a 1-iteration fit, timed as lloyd: " if op == "lloyd" else "") + \
                f"cuml.KMeans(init=given, n_init=1, max_iter={iters}, tol=0).fit, including the labels_ pass fit " \
                "makes for the returned centroids"
            return Job(f"{what}{note}{batches}", run, validate, synchronous=True,
                       fit={"init": "given", "max_iter": iters, "iterations": iters} if op == "fit" else None)
        raise NotSupported(f"{self.name}: op {op}")


PEERS = {p.name: p for p in (FlashKMeansTriton, FastKMeansPeer, FaissGpu, CumlPeer)}


# --------------------------------------------------------------------------
# the results file

def import_torch():
    try:
        import torch  # noqa: F401
        return torch
    except Exception:
        return None


def _driver_version():
    try:
        import ctypes
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        return v.value if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 else None
    except Exception:
        return None


def device_info(torch):
    if torch is None:
        return {"present": False, "reason": "python package torch not installed"}
    try:
        if not torch.cuda.is_available():
            return {"present": False, "reason": "no CUDA device (torch.cuda.is_available() is False)"}
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
    except Exception as e:
        return {"present": False, "reason": f"no usable CUDA device: {e}"}
    rt = None
    if torch.version.cuda:
        parts = (torch.version.cuda.split(".") + ["0"])[:2]
        rt = int(parts[0]) * 1000 + int(parts[1]) * 10
    return {"present": True, "ordinal": i, "name": p.name, "compute_capability": f"{p.major}.{p.minor}",
            "sm_count": p.multi_processor_count, "l2_bytes": getattr(p, "L2_cache_size", None),
            "memory_bytes": p.total_memory, "smem_per_block_optin": getattr(p, "shared_memory_per_block_optin", None),
            "smem_per_sm": getattr(p, "shared_memory_per_multiprocessor", None), "sm_clock_mhz": None,
            "memory_clock_mhz": None, "memory_bus_bits": None, "driver_version": _driver_version(),
            "runtime_version": rt}


def git_info():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        st = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=20)
        if sha.returncode == 0 and st.returncode == 0:
            return {"sha": sha.stdout.strip(), "dirty": bool(st.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"sha": None, "dirty": None}


def _module_version(name):
    m = sys.modules.get(name)
    if m is None:
        try:
            if not module_found(name):
                return None
            m = importlib.import_module(name)
        except Exception:
            return None
    return getattr(m, "__version__", None)


def build_info(peers, torch, flashkm):
    return {"version": RUNNER_VERSION, "runner": "scripts/peers/run_peers.py",
            "python": sys.version.split()[0], "numpy": np.__version__,
            "torch": getattr(torch, "__version__", None) if torch else None,
            "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None) if torch else None,
            "triton": _module_version("triton") if torch else None,
            "peers": {p.name: {"module": p.module, "version": p.version() if module_found(p.module) else None}
                      for p in peers},
            "flashkm": os.path.abspath(flashkm)}


def sanitize(o):
    """JSON-safe: non-finite floats become null, numpy scalars become Python numbers."""
    if isinstance(o, dict):
        return {k: sanitize(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [sanitize(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


class ResultsFile:
    """The document, rewritten whole (temporary file + rename) on every write()."""

    def __init__(self, path, doc):
        self.path, self.doc = path, doc

    def write(self):
        d = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".run_peers.", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(sanitize(self.doc), f, indent=1, allow_nan=False)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def classify(e):
    """(status, error_kind, sticky) of an exception a peer raised."""
    name, msg = type(e).__name__, str(e)
    low = msg.lower()
    if "outofmemory" in name.lower() or "out of memory" in low or "cudaErrorMemoryAllocation" in msg:
        return "out_of_memory", None, False
    if "illegal memory access" in low or "unspecified launch failure" in low or "illegal instruction" in low:
        return "error", "cuda_error_sticky", True
    if "cuda" in low or "cuda" in name.lower():
        return "error", "cuda_error", False
    return "error", "internal_error", False


def make_row(experiment, variant, op, shape, dtype, data, seed, status, reason, validation=None, timing=None,
             derived=None, impl=None, error_kind=None, fit=None, device_bytes=None, wall_s=0.0):
    B, N, K, D = shape
    row = {"experiment": experiment, "variant": variant, "op": op, "B": B, "N": N, "K": K, "D": D,
           "dtype": dtype, "data": data, "seed": seed}
    if impl:
        row["impl"] = impl
    row["status"] = status
    row["reason"] = reason if status != "ok" else None
    if status == "error":
        row["error_kind"] = error_kind or "internal_error"
    row["validation"] = validation
    row["timing"] = timing if status == "ok" else None
    if status == "ok" and timing is not None:
        row["derived"] = derived
    if fit is not None:
        row["fit"] = fit
    row["device_bytes"] = device_bytes
    row["wall_s"] = wall_s
    return row


class Aborted(Exception):
    pass


def run_case(peer, op, prob, ctx, measure, used_at_start):
    """Run one (peer, op) on the problem: prepare, validate, time. Returns the row's
    fields as a dict (status, reason, ...); raises Aborted after a sticky CUDA error."""
    out = {"status": "ok", "reason": None}
    backend = ctx.backend
    job = None
    try:
        job = peer.prepare(op, prob, ctx)
        out["impl"] = job.impl
        v, ok, why = job.validate()
        backend.sync()
        out["validation"] = v
        used = backend.device_used()
        if used is not None and used_at_start is not None and used - used_at_start > 0:
            out["device_bytes"] = int(used - used_at_start)
        if not ok:
            out.update(status="incorrect", reason=why or "validation failed")
            return out
        for _ in range(measure.warmup):
            job.run()
        backend.sync()
        samples = sample_loop(lambda i: backend.time_once(job.run, i, job.synchronous), measure.min_samples,
                              measure.max_samples, measure.budget_s, measure.noise_target)
        t = timing_dict(samples, measure.warmup, backend.flush_l2, measure.noise_target, backend.clock)
        passes = ctx.iters if op == "fit" else 1
        out["timing"] = t
        out["derived"] = derived(op, prob.shape, prob.dtype, t["median"], passes)
        if job.fit is not None:
            f = dict(job.fit)
            if isinstance(out.get("validation"), dict) and "inertia" in out["validation"]:
                f["inertia"] = out["validation"]["inertia"]
            f["ms_per_pass"] = t["median"] / passes
            out["fit"] = f
    except NotSupported as e:
        out.update(status="not_supported", reason=str(e))
    except (KeyboardInterrupt, Aborted):
        raise
    except Exception as e:
        status, kind, sticky = classify(e)
        out.update(status=status, reason=f"{peer.name} {op}: {type(e).__name__}: {e}"[:1000], error_kind=kind)
        out.pop("timing", None)
        out.pop("derived", None)
        if sticky:
            out["sticky"] = True
    finally:
        job = None
        backend.cleanup()
    return out


def parse_size(s):
    s = s.strip()
    mult = 1
    if s[-1:] in ("k", "K"):
        mult, s = 1024, s[:-1]
    elif s[-1:] in ("m", "M"):
        mult, s = 1 << 20, s[:-1]
    v = int(s) * mult
    if v <= 0:
        raise ValueError
    return v


def parse_shapes(text):
    """'B×N×K×D,...' (× or x; sizes may end in k (×1024) or M (×2^20)) -> [(B, N, K, D)]."""
    shapes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        dims = part.replace("×", "x").replace("X", "x").replace("*", "x").split("x")
        try:
            if len(dims) != 4:
                raise ValueError
            B, N, K, D = (parse_size(d) for d in dims)
        except ValueError:
            raise ValueError(f"shape '{part}' is not B×N×K×D of positive integers")
        if K > N:
            raise ValueError(f"shape '{part}': K={K} exceeds N={N}")
        if B * N >= 2 ** 31 or D >= 2 ** 20:
            raise ValueError(f"shape '{part}': B*N must be below 2^31 and D below 2^20")
        shapes.append((B, N, K, D))
    if not shapes:
        raise ValueError("no shapes")
    return shapes


def parse_args(argv, registry):
    ap = argparse.ArgumentParser(prog="run_peers.py", description=__doc__.split("\n\n")[0],
                                 epilog="scripts/peers/README.md describes each adapter.")
    ap.add_argument("--flashkm", required=True, metavar="BUILD/flashkm", help="the flashkm binary (for `gen`)")
    ap.add_argument("-o", "--output", required=True, metavar="OUT.json", help="results file to write")
    ap.add_argument("--peers", default=",".join(registry), help=f"comma list of {', '.join(registry)}")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma list of B×N×K×D (default {DEFAULT_SHAPES})")
    ap.add_argument("--ops", default=",".join(DEFAULT_OPS), help="comma list of assign, update, lloyd, fit")
    ap.add_argument("--dtype", default="fp16", choices=DTYPES)
    ap.add_argument("--data", default="blobs", choices=DATA_KINDS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20, help="Lloyd iterations of op fit (default 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--max-samples", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=2.0, help="seconds of sampling after min-samples")
    ap.add_argument("--noise-target", type=float, default=0.02, help="rel. stdev at which sampling stops")
    ap.add_argument("--max-rows", type=int, default=4096, help="rows an assignment is checked on")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--in-process", action="store_true",
                    help="run every peer in this process (default with several peers: one child process each, "
                         "so a peer that breaks the CUDA context, e.g. with a device-side assert, cannot take "
                         "the others' rows with it)")
    a = ap.parse_args(argv)
    a.peer_names = [p.strip() for p in a.peers.split(",") if p.strip()]
    bad = [p for p in a.peer_names if p not in registry]
    if bad or not a.peer_names:
        ap.error(f"--peers: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(registry)}")
    a.op_names = [o.strip() for o in a.ops.split(",") if o.strip()]
    bad = [o for o in a.op_names if o not in OPS]
    if bad or not a.op_names:
        ap.error(f"--ops: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(OPS)}")
    try:
        a.shape_list = parse_shapes(a.shapes)
    except ValueError as e:
        ap.error(f"--shapes: {e}")
    if a.iters < 1 or a.warmup < 0 or a.min_samples < 1 or a.max_samples < a.min_samples or a.max_rows < 1:
        ap.error("--iters, --min-samples, --max-rows must be >= 1, --warmup >= 0, --max-samples >= --min-samples")
    if not (os.path.isfile(a.flashkm) and os.access(a.flashkm, os.X_OK)):
        ap.error(f"--flashkm {a.flashkm}: not an executable file (build it: cmake -S . -B build -G Ninja && "
                 "cmake --build build)")
    return a


def strip_options(argv, names):
    """argv without the options in names and their values (either 'OPT VALUE' or 'OPT=VALUE')."""
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
            continue
        if x in names:
            skip = True
            continue
        if any(x.startswith(n + "=") for n in names):
            continue
        out.append(x)
    return out


def run_isolated(argv0, argv, a):
    """One child process per peer (the same command with --peers NAME --in-process), rows merged
    in peer order into a.output after each child; exit status the worst of the children's."""
    base = strip_options(argv, ("--peers", "-o", "--output"))
    merged, worst = None, 0
    for name in a.peer_names:
        part = f"{a.output}.{name}.part"
        cmd = [sys.executable, os.path.abspath(argv0)] + base + ["--peers", name, "-o", part, "--in-process"]
        rc = subprocess.call(cmd)
        worst = max(worst, rc)
        try:
            with open(part) as f:
                doc = json.load(f)
            os.remove(part)
        except (OSError, ValueError) as e:
            print(f"run_peers.py: {name}: no results ({e}); exit status {rc}", file=sys.stderr)
            continue
        if merged is None:
            merged = doc
            merged["meta"]["argv"] = [argv0] + list(argv)
            merged["meta"]["isolation"] = "one process per peer"
        else:
            merged["runs"].extend(doc.get("runs", []))
            merged["meta"]["build"].setdefault("peers", {}).update(doc.get("meta", {}).get("build", {}).get("peers", {}))
            if doc.get("state") != "complete":
                merged["state"], merged["abort_reason"] = doc.get("state"), doc.get("abort_reason")
        ResultsFile(a.output, merged).write()
    if merged is None:
        return max(worst, 3)
    return worst


def main(argv=None, registry=None, torch=False, backend=None, problem_factory=None):
    """The command. Tests pass their own registry (name -> Peer class), torch (None for
    none), backend and problem_factory(shape, dtype, data, seed) -> Problem."""
    registry = PEERS if registry is None else registry
    argv0 = sys.argv[0] if argv is None and sys.argv else "run_peers.py"
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        a = parse_args(argv, registry)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if registry is PEERS and len(a.peer_names) > 1 and not a.in_process:
        return run_isolated(argv0, argv, a)
    if torch is False:
        torch = import_torch()
    peers = [registry[n]() for n in a.peer_names]
    dev = device_info(torch)
    measure = Measure(a.warmup, a.min_samples, a.max_samples, a.budget_s, a.noise_target)
    doc = {"schema_version": SCHEMA_VERSION, "state": "running",
           "meta": {"argv": [argv0] + argv, "git": git_info(),
                    "config": None, "filter": None, "build": build_info(peers, torch, a.flashkm),
                    "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(),
                    "sweep": {"peers": a.peer_names, "shapes": [list(s) for s in a.shape_list], "ops": a.op_names,
                              "dtype": a.dtype, "data": a.data, "seed": a.seed, "iters": a.iters,
                              "measure": measure.as_dict(), "validate": {"max_rows": a.max_rows}}},
           "device": dev, "ceilings": None, "runs": []}
    out = ResultsFile(a.output, doc)
    try:
        out.write()
    except OSError as e:
        print(f"run_peers.py: cannot write {a.output}: {e.strerror or e}", file=sys.stderr)
        return 3
    unavailable = {p.name: p.unavailable(torch, dev) for p in peers}
    ctx = None
    used_at_start = None
    if backend is None and any(u is None for u in unavailable.values()):
        backend = CudaBackend(torch, dev["ordinal"])
    if backend is not None:
        ctx = Context(torch, dev.get("ordinal", 0) or 0, a.iters, a.seed, a.max_rows, backend=backend)
        used_at_start = backend.device_used()
    if problem_factory is None:
        def problem_factory(shape, dtype, data, seed):
            return generate_problem(a.flashkm, shape, dtype, data, seed, torch, ctx.device if ctx else None)
    total = len(a.shape_list) * len(a.op_names) * len(peers)
    done, failed = 0, False
    try:
        for shape in a.shape_list:
            prob, prob_error = None, None
            for op in a.op_names:
                for peer in peers:
                    t0 = time.monotonic()
                    reason = unavailable[peer.name] or peer.supports(op, shape, a.dtype)
                    fields = {"status": "not_supported", "reason": reason}
                    if not reason:
                        if prob is None and prob_error is None:
                            try:
                                prob = problem_factory(shape, a.dtype, a.data, a.seed)
                            except ProblemError as e:
                                prob_error = str(e)
                            except Exception as e:
                                prob_error = f"building the inputs: {type(e).__name__}: {e}"
                        if prob_error:
                            fields = {"status": "error", "reason": prob_error, "error_kind": "io_error"}
                        else:
                            fields = run_case(peer, op, prob, ctx, measure, used_at_start)
                    sticky = fields.pop("sticky", False)
                    row = make_row(op, peer.variant(), op, shape, a.dtype, a.data, a.seed,
                                   wall_s=time.monotonic() - t0, **fields)
                    doc["runs"].append(row)
                    out.write()
                    done += 1
                    failed |= row["status"] in ("incorrect", "error")
                    if not a.quiet:
                        t = row.get("timing")
                        what = f"{t['median']:.4g} ms" if t else f"{row['status']}: {(row['reason'] or '')[:160]}"
                        print(f"[{done}/{total}] {row['variant']} {op} {'x'.join(map(str, shape))} {a.dtype}: "
                              f"{what}", file=sys.stderr)
                    if sticky:
                        raise Aborted(f"sticky CUDA error in {row['variant']} {op}: {row['reason']}")
            if prob is not None:
                prob.free()
                prob = None
                if backend is not None:
                    backend.cleanup()
    except (KeyboardInterrupt, Aborted) as e:
        doc["state"] = "aborted"
        doc["abort_reason"] = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        try:
            out.write()
        except OSError:
            pass
        print(f"run_peers.py: aborted ({doc['abort_reason']}); {len(doc['runs'])} rows in {a.output}",
              file=sys.stderr)
        return 3
    except OSError as e:
        print(f"run_peers.py: cannot write {a.output}: {e.strerror or e}", file=sys.stderr)
        return 3
    doc["state"] = "complete"
    try:
        out.write()
    except OSError as e:
        print(f"run_peers.py: cannot write {a.output}: {e.strerror or e}", file=sys.stderr)
        return 3
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
