"""Tests of scripts/peers/run_peers.py without a GPU and without the peer packages:
the not_supported rows of missing packages (checked by scripts/check_results.py),
the statistics and timing object, the work formulas against the committed H100
results, the near-tie aware validation helpers, and whole sweeps through fake
peers (numpy on the host clock) injected via the registry.
Run: python3 -m pytest tests/python (scripts/test.sh does, after ctest)."""
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PEERS_DIR = SCRIPTS / "peers"
sys.path.insert(0, str(PEERS_DIR))
import run_peers as rp  # noqa: E402

TIMING_KEYS = ["unit", "clock", "samples", "warmup", "flush_l2", "flush_l2_method", "median", "q1", "q3", "min",
               "max", "mean", "rel_stdev", "converged"]


def check_results(path, *extra):
    return subprocess.run([sys.executable, str(SCRIPTS / "check_results.py"), str(path), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def script(name, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture
def fake_flashkm(tmp_path):
    """An executable that stands in for build/flashkm where no data are generated."""
    p = tmp_path / "flashkm"
    p.write_text("#!/bin/sh\necho 'fake flashkm' >&2\nexit 1\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def blobs(B, N, K, D, seed=0, spread=0.25, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(B, K, D))
    labels = rng.integers(0, K, size=(B, N)).astype(np.int32)
    x = np.take_along_axis(centres, labels[..., None].astype(np.int64), axis=1) + spread * rng.normal(size=(B, N, D))
    return x.astype(dtype), labels


def problem_factory(shape, dtype, data, seed):
    B, N, K, D = shape
    x, labels = blobs(B, N, K, D, seed, dtype=np.float16 if dtype == "fp16" else np.float32)
    return rp.Problem(x, labels, K, dtype)


# ---------------------------------------------------------------- missing packages

def missing(name, module):
    return type(f"Missing_{name}", (rp.Peer,), {"name": name, "module": module, "install": f"pip install {name}"})


def test_missing_packages_give_not_supported_rows(tmp_path, fake_flashkm):
    registry = {"alpha": missing("alpha", "flashkm_test_no_such_module_a"),
                "beta": missing("beta", "flashkm_test_no_such_parent.sub")}
    out = tmp_path / "peers.json"
    rc = rp.main(["--flashkm", str(fake_flashkm), "-o", str(out), "--shapes", "1x1024x16x8,2×1k×8×4",
                  "--ops", "assign,update,lloyd", "-q"], registry=registry, torch=None)
    assert rc == 0
    r = check_results(out, "--expect-complete", "--min-runs", "12")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["state"] == "complete" and doc["ceilings"] is None
    assert doc["device"]["present"] is False and doc["meta"]["config"] is None
    assert [(r["variant"], r["op"], r["B"], r["N"]) for r in doc["runs"][:3]] == \
        [("peer/alpha", "assign", 1, 1024), ("peer/beta", "assign", 1, 1024), ("peer/alpha", "update", 1, 1024)]
    for row in doc["runs"]:
        assert row["status"] == "not_supported"
        mod = "flashkm_test_no_such_module_a" if row["variant"] == "peer/alpha" else "flashkm_test_no_such_parent.sub"
        assert row["reason"] == f"python package {mod} not installed: pip install {row['variant'][5:]}"
        assert row["timing"] is None and row["validation"] is None and "derived" not in row
        assert isinstance(row["wall_s"], float) and row["data"] == "blobs" and row["seed"] == 1
    t = script("table.py", out)
    assert t.returncode == 0 and "| n/s | n/s |" in t.stdout


def test_real_registry_without_packages(tmp_path, fake_flashkm):
    """The command line as a user runs it: every peer absent here is not_supported, exit 0."""
    present = [p.module for p in rp.PEERS.values() if rp.module_found(p.module)]
    if present:
        pytest.skip(f"peer packages installed here ({', '.join(present)}): this would benchmark them")
    out = tmp_path / "real.json"
    r = subprocess.run([sys.executable, str(PEERS_DIR / "run_peers.py"), "--flashkm", str(fake_flashkm),
                        "-o", str(out), "--shapes", "1x4096x16x8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert check_results(out, "--expect-complete").returncode == 0
    doc = json.loads(out.read_text())
    assert len(doc["runs"]) == 12
    reasons = {row["variant"]: row["reason"] for row in doc["runs"]}
    assert reasons["peer/flash_kmeans_triton"] == "python package flash_kmeans not installed: pip install flash-kmeans"
    assert "pip install fastkmeans" in reasons["peer/fastkmeans"]
    assert "faiss-gpu-cu12" in reasons["peer/faiss_gpu"] and "cuml-cu12" in reasons["peer/cuml"]
    assert doc["meta"]["argv"][1:3] == ["--flashkm", str(fake_flashkm)]
    assert set(doc["meta"]["build"]["peers"]) == set(rp.PEERS)
    assert doc["meta"]["isolation"] == "one process per peer"  # a peer's broken CUDA context stays its own


@pytest.mark.parametrize("args", [["--peers", "nope"], ["--ops", "assign,sort"], ["--shapes", "1x10x20x4"],
                                  ["--shapes", "1x10x4"], ["--iters", "0"]])
def test_bad_command_lines_exit_2(tmp_path, fake_flashkm, args, capsys):
    assert rp.main(["--flashkm", str(fake_flashkm), "-o", str(tmp_path / "x.json"), *args], torch=None) == 2
    assert not (tmp_path / "x.json").exists()


def test_missing_flashkm_binary_exits_2(tmp_path, capsys):
    assert rp.main(["--flashkm", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.json")], torch=None) == 2
    assert "not an executable file" in capsys.readouterr().err


def test_parse_shapes():
    assert rp.parse_shapes("1×1M×1024×128, 32x75600x1000x128") == [(1, 1 << 20, 1024, 128), (32, 75600, 1000, 128)]
    assert rp.parse_shapes("2X8kX64X16") == [(2, 8192, 64, 16)]
    for bad in ("1x2x3", "0x10x2x4", "1x10x20x4", "1xax2x4", "", "1x2147483648x2x4"):
        with pytest.raises(ValueError):
            rp.parse_shapes(bad)


# ---------------------------------------------------------------- stats and timing

def test_sample_stats_match_harness_stats():
    st = rp.sample_stats([4.0, 1.0, 3.0, 2.0])
    assert (st["median"], st["q1"], st["q3"], st["min"], st["max"], st["mean"]) == (2.5, 1.75, 3.25, 1.0, 4.0, 2.5)
    assert st["rel_stdev"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2.5)
    one = rp.sample_stats([7.0])
    assert one["median"] == one["q1"] == one["q3"] == 7.0 and one["rel_stdev"] == 0.0
    five = rp.sample_stats([5, 1, 4, 2, 3])
    assert (five["median"], five["q1"], five["q3"]) == (3, 2, 4)
    with pytest.raises(ValueError):
        rp.sample_stats([])


def test_timing_dict_has_exactly_flashkms_keys():
    t = rp.timing_dict([1.0, 1.01, 0.99, 1.0, 1.0], warmup=3, flush_l2=True, noise_target=0.02)
    assert list(t) == TIMING_KEYS
    assert t["unit"] == "ms" and t["clock"] == "cuda_event" and t["samples"] == 5 and t["warmup"] == 3
    assert t["flush_l2"] is True and t["converged"] is True and t["median"] == 1.0
    assert t["min"] <= t["q1"] <= t["median"] <= t["q3"] <= t["max"]
    assert t["flush_l2_method"] == "clean"
    noisy = rp.timing_dict([1.0, 2.0, 1.0, 2.0, 1.0], 0, False, 0.02, clock="host_monotonic")
    assert noisy["converged"] is False and noisy["clock"] == "host_monotonic" and noisy["flush_l2"] is False
    assert "flush_l2_method" not in noisy  # as flashkm: the method only when flushed
    # the same keys as a committed flashkm row, less the SM clock that flashkm measures
    # itself around its samples (optional in the schema; the peers' runs have no probe)
    quick = json.loads((ROOT / "results" / "h100" / "quick.json").read_text())
    flashkm_keys = list(next(r for r in quick["runs"] if r.get("timing"))["timing"])
    assert [k for k in flashkm_keys if k != "sm_clock_measured_mhz"] == TIMING_KEYS


class FakeClock:
    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_sample_loop_stops_on_noise_target_budget_or_max():
    steady = rp.sample_loop(lambda i: 1.0, 5, 30, 2.0, 0.02, clock=FakeClock(0.0))
    assert len(steady) == 5
    flip = lambda i: 1.0 if i % 2 else 2.0  # noqa: E731
    assert len(rp.sample_loop(flip, 5, 30, 2.0, 0.02, clock=FakeClock(0.0))) == 30  # never converges, no time passes
    # budget: the clock is read at the start and after each sample from the 5th on, 1 s later each time
    assert len(rp.sample_loop(flip, 5, 30, 2.0, 0.02, clock=FakeClock(1.0))) == 6
    calls = []
    rp.sample_loop(lambda i: calls.append(i) or 1.0, 5, 30, 2.0, 0.02, clock=FakeClock(0.0))
    assert calls == [0, 1, 2, 3, 4]  # the sample index is what the L2 flush writes


def test_work_formulas_match_committed_flashkm_rows():
    quick = json.loads((ROOT / "results" / "h100" / "quick.json").read_text())
    seen = set()
    for r in quick["runs"]:
        if r.get("derived") and r["op"] in ("assign", "update", "lloyd"):
            flops, nbytes = rp.work_of(r["op"], r["B"], r["N"], r["K"], r["D"], r["dtype"])
            assert (flops, nbytes) == (r["derived"]["flops"], r["derived"]["bytes"]), r["variant"]
            d = rp.derived(r["op"], (r["B"], r["N"], r["K"], r["D"]), r["dtype"], r["timing"]["median"])
            assert d["tflops"] == pytest.approx(r["derived"]["tflops"])
            assert d["gbps"] == pytest.approx(r["derived"]["gbps"])
            seen.add(r["op"])
    assert seen == {"assign", "update", "lloyd"}
    fit = rp.derived("fit", (1, 1000, 10, 8), "fp16", 2.0, passes=20)
    one = rp.derived("lloyd", (1, 1000, 10, 8), "fp16", 0.1)
    assert fit["flops"] == 20 * one["flops"] and fit["tflops"] == pytest.approx(one["tflops"])


def test_tolerances_are_the_harness_ones():
    assert rp.assign_tolerance(128) == pytest.approx(3.3941125496954285e-05)
    assert rp.update_tolerance(0) == rp.update_tolerance(1) == math.ldexp(20.0, -24)
    assert rp.update_tolerance(10000) == pytest.approx((16 + 400) * 2.0 ** -24)


# ---------------------------------------------------------------- validation helpers

def test_check_rows_spread():
    assert list(rp.check_rows(5, 4096)) == [0, 1, 2, 3, 4]
    rows = rp.check_rows(1 << 20, 4096)
    assert len(rows) == 4096 and rows[0] == 0 and rows[-1] == (1 << 20) - 1 and np.all(np.diff(rows) > 0)


def assign_case(eps):
    """One point at distance 1 from centroid 0 and (1 + eps)^2 from centroid 1, far from 2."""
    x = np.array([[[1.0, 0, 0, 0]]])
    c = np.array([[[0.0, 0, 0, 0], [2.0 + eps, 0, 0, 0], [9.0, 9, 9, 9]]])
    return x, c


def test_validate_assign_near_tie_aware():
    tol = rp.assign_tolerance(4)  # 6e-6, scale ||x||^2 + ||c_best||^2 = 1
    x, c = assign_case(0.0)  # exact tie: either label is right
    for lab in (0, 1):
        v, why = rp.validate_assign(x, c, [lab])
        assert v["ok"] and v["mismatches"] == 0 and why == ""
    assert rp.validate_assign(x, c, [1])[0]["near_ties"] == 1
    x, c = assign_case(0.4 * tol)  # excess 2 eps = 0.8 tol: a near tie
    v, _ = rp.validate_assign(x, c, [1])
    assert v["ok"] and v["near_ties"] == 1 and v["max_excess"] == pytest.approx(0.8 * tol, rel=1e-3)
    x, c = assign_case(1.0 * tol)  # excess 2 tol: a mismatch
    v, why = rp.validate_assign(x, c, [1])
    assert not v["ok"] and v["mismatches"] == 1 and "batch 0 point 0: label 1" in why and "> tol" in why
    v, why = rp.validate_assign(x, c, [2])
    assert v["mismatches"] == 1
    v, why = rp.validate_assign(x, c, [3])
    assert v["mismatches"] == 1 and "outside [0, 3)" in why
    assert v["distances_checked"] is False and v["bad_distances"] is None and v["max_distance_error"] is None
    assert set(v) >= {"ok", "rows_checked", "mismatches", "near_ties", "bad_distances", "tolerance", "max_excess",
                      "max_distance_error"}


def test_validate_assign_distances():
    x, c = assign_case(0.0)
    v, _ = rp.validate_assign(x, c, [0], dist=[1.0 + 3e-6])
    assert v["ok"] and v["bad_distances"] == 0 and v["max_distance_error"] == pytest.approx(3e-6)
    v, why = rp.validate_assign(x, c, [0], dist=[1.1])
    assert not v["ok"] and v["bad_distances"] == 1 and "distance 1.1" in why
    v, _ = rp.validate_assign(x, c, [0], dist=[float("nan")])
    assert not v["ok"] and v["bad_distances"] == 1 and v["max_distance_error"] is None


def test_validate_assign_on_blobs_batches_and_fp16():
    x, _ = blobs(3, 500, 16, 8, seed=3, dtype=np.float16)
    c = x[:, (np.arange(16) * 500) // 16, :]
    xd, cd = x.astype(np.float64), c.astype(np.float64)
    d = ((xd[:, :, None, :] - cd[:, None, :, :]) ** 2).sum(-1)
    labels = d.argmin(-1)
    v, _ = rp.validate_assign(x, c, labels, dist=d.min(-1).astype(np.float32), max_rows=4096)
    assert v["ok"] and v["rows_checked"] == 1500 and v["mismatches"] == 0
    wrong = labels.copy()
    wrong[2, 499] = (wrong[2, 499] + 1) % 16  # the last row is always checked
    v, why = rp.validate_assign(x, c, wrong, max_rows=64)
    assert v["rows_checked"] == 64 and v["mismatches"] == 1 and why.startswith("batch 2 point 499")


def update_case():
    x, labels = blobs(2, 400, 6, 5, seed=4, dtype=np.float16)  # fp16 data: fp16 old centroids are exact
    labels[1][labels[1] == 5] = 4  # cluster 5 of batch 1 is empty
    means, counts, rms = rp.ref_means(x, labels, 6)
    c_old = x[:, (np.arange(6) * 400) // 6, :].astype(np.float32)
    c_new = np.where((counts > 0)[..., None], means, c_old).astype(np.float32)
    return x, labels, means, counts, rms, c_old, c_new


def test_ref_means_against_a_plain_loop():
    x, labels, means, counts, rms, _, _ = update_case()
    for b in range(2):
        for k in range(6):
            pts = x[b][labels[b] == k].astype(np.float64)
            assert counts[b, k] == len(pts)
            if len(pts):
                assert np.allclose(means[b, k], pts.mean(0), rtol=1e-13, atol=1e-13)
                assert rms[b, k] == pytest.approx(math.sqrt((pts ** 2).sum(1).mean()))
    assert counts[1, 5] == 0


def test_check_centroids():
    x, labels, means, counts, rms, c_old, c_new = update_case()
    v, why = rp.check_centroids(means, counts, rms, c_old, c_new, counts)
    assert v["ok"] and why == "" and v["clusters_checked"] == 12 and v["count_mismatches"] == 0
    assert {"ok", "clusters_checked", "count_mismatches", "bad_centroids", "empty_changed", "max_relative_error",
            "max_error_over_tolerance"} <= set(v)
    half = c_new.astype(np.float16)  # a peer returning fp16 centroids
    v, why = rp.check_centroids(means, counts, rms, c_old, half)
    assert not v["ok"] and v["bad_centroids"] > 0 and "of the cluster RMS" in why
    v, _ = rp.check_centroids(means, counts, rms, c_old, half, allowance=rp.ROUNDING["fp16"], output_dtype="fp16")
    assert v["ok"] and v["counts_checked"] is False and v["count_mismatches"] is None
    wrong = counts.copy()
    wrong[0, 2] += 1
    v, why = rp.check_centroids(means, counts, rms, c_old, c_new, wrong)
    assert v["count_mismatches"] == 1 and why.startswith("batch 0 cluster 2: count")
    moved = c_new.copy()
    moved[1, 5] += 1e-3  # the empty cluster
    v, why = rp.check_centroids(means, counts, rms, c_old, moved)
    assert v["empty_changed"] == 1 and "empty but its centroid changed" in why
    v, _ = rp.check_centroids(means, counts, rms, c_old, moved, empty_policy="skip")
    assert v["ok"] and v["clusters_skipped_empty"] == 1 and v["clusters_checked"] == 11
    nan = c_new.copy()
    nan[0, 0, 0] = np.nan
    v, why = rp.check_centroids(means, counts, rms, c_old, nan)
    assert v["bad_centroids"] == 1 and why.startswith("batch 0 cluster 0")
    skip = np.zeros((2, 6), bool)
    skip[0, 0] = True
    v, _ = rp.check_centroids(means, counts, rms, c_old, nan, skip=skip)
    assert v["ok"] and v["clusters_skipped_near_tie"] == 1


def test_near_tie_clusters():
    best = np.array([[0, 1, 2], [3, 3, 0]])
    second = np.array([[1, 2, -1], [0, 1, 2]])
    tie = np.array([[True, False, True], [False, True, False]])
    m = rp.near_tie_clusters(best, second, tie, 2, 4)
    assert m.tolist() == [[True, True, True, False], [False, True, False, True]]


def test_nearest_two_and_lloyd_by_reference():
    x, _ = blobs(2, 300, 5, 4, seed=5)
    prob = rp.Problem(x, np.zeros((2, 300), np.int32), 5, "fp32")
    ref = rp.NumpyRef()
    best, bd, second, sd, xn = ref.nearest_two(prob, 1, prob.c0_np[1].astype(np.float64))
    d = ((x[1].astype(np.float64)[:, None, :] - prob.c0_np[1][None].astype(np.float64)) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")
    assert (best == order[:, 0]).all() and (second == order[:, 1]).all()
    assert np.allclose(bd, d.min(1), atol=1e-9) and np.allclose(sd, np.sort(d, 1)[:, 1], atol=1e-9)
    labels = np.stack([ref.nearest_two(prob, b, prob.c0_np[b])[0] for b in range(2)])
    means, counts, _ = rp.ref_means(x, labels, 5)
    c1 = np.where((counts > 0)[..., None], means, prob.c_old).astype(np.float32)
    v, why = rp.lloyd_by_reference(ref, prob, prob.c_old, c1, 0.0)
    assert v["ok"] and why == "" and v["reference"]["points"] == 600 and v["update"]["clusters_checked"] >= 8
    off = c1.copy()
    off[0, 3] += 0.01
    v, why = rp.lloyd_by_reference(ref, prob, prob.c_old, off, 0.0)
    assert not v["ok"] and "batch 0 cluster 3" in why


def test_lloyd_by_reference_skips_clusters_of_near_ties():
    # batch of 3 points on a line, centroids at 0 and 2: x = 1 is a tie between them
    x = np.array([[[0.0], [1.0], [2.0], [0.1], [2.1], [1.0], [1.9], [0.2]]], dtype=np.float32)
    prob = rp.Problem(x, np.zeros((1, 8), np.int32), 2, "fp32")  # centroids rows 0 and 4: 0.0 and 2.1
    c0 = np.array([[[0.0], [2.0]]], dtype=np.float32)
    c1 = np.array([[[5.0], [7.0]]], dtype=np.float32)  # wrong, but both clusters are tie-affected
    v, _ = rp.lloyd_by_reference(rp.NumpyRef(), prob, c0, c1, 0.0)
    assert v["ok"] and v["reference"]["near_tie_points"] == 2 and v["update"]["clusters_skipped_near_tie"] == 2


def test_fit_by_reference():
    x, _ = blobs(1, 600, 6, 3, seed=6, spread=0.6)
    prob = rp.Problem(x, np.zeros((1, 600), np.int32), 6, "fp32")
    ref = rp.NumpyRef()
    c_ref, inertia = rp.reference_fit(ref, prob, prob.c_old, 10)
    v, why = rp.fit_by_reference(ref, prob, prob.c_old, c_ref.astype(np.float32), 10)
    assert v["ok"] and v["inertia"] == pytest.approx(inertia, rel=1e-6) and why == ""
    v, why = rp.fit_by_reference(ref, prob, prob.c_old, prob.c_old, 10)  # no iterations done
    assert not v["ok"] and "differs from the fp64 reference" in why
    bad = c_ref.copy()
    bad[0, 0, 0] = np.inf
    v, why = rp.fit_by_reference(ref, prob, prob.c_old, bad, 10)
    assert not v["ok"] and v["inertia"] is None and "not finite" in why


def test_problem_uses_flashkm_initial_centroids():
    x, labels = blobs(2, 1000, 7, 3, seed=7)
    p = rp.Problem(x, labels, 7, "fp32")
    assert p.shape == (2, 1000, 7, 3)
    for k in range(7):
        assert (p.c0_np[:, k] == x[:, (k * 1000) // 7]).all()
    assert p.c_old.dtype == np.float32 and p.labels_np.dtype == np.int32


def test_generate_problem_with_flashkm_gen():
    flashkm = ROOT / "build" / "flashkm"
    if not os.access(flashkm, os.X_OK):
        pytest.skip("build/flashkm not built")
    p = rp.generate_problem(str(flashkm), (2, 600, 10, 8), "fp16", "blobs", 3)
    assert p.x_np.shape == (2, 600, 8) and p.x_np.dtype == np.float16 and p.labels_np.shape == (2, 600)
    assert (p.c0_np[:, 3] == p.x_np[:, (3 * 600) // 10]).all()
    assert p.labels_np.min() >= 0 and p.labels_np.max() < 10
    with pytest.raises(rp.ProblemError):
        rp.generate_problem(str(flashkm), (1, 10, 20, 4), "fp16", "blobs", 3)  # K > N: gen refuses


def test_classify_and_sanitize():
    assert rp.classify(RuntimeError("CUDA out of memory. Tried to allocate"))[:2] == ("out_of_memory", None)
    assert rp.classify(RuntimeError("CUDA error: an illegal memory access was encountered")) == \
        ("error", "cuda_error_sticky", True)
    assert rp.classify(RuntimeError("CUDA error: invalid argument"))[:2] == ("error", "cuda_error")
    assert rp.classify(ValueError("shape"))[:2] == ("error", "internal_error")
    assert rp.sanitize({"a": [np.float32(1.5), float("nan"), np.int64(3), np.bool_(True)], "b": float("inf")}) == \
        {"a": [1.5, None, 3, True], "b": None}


# ---------------------------------------------------------------- whole sweeps through fake peers

class FakePeer(rp.Peer):
    """Exact numpy k-means ops on the host: what a correct peer returns."""
    name = "fake_exact"
    module = "numpy"
    ops = ("assign", "update", "lloyd")
    why_not = {}
    wrong = False

    def unavailable(self, torch, device):
        return None

    def prepare(self, op, prob, ctx):
        x = prob.x_np.astype(np.float64)
        c = prob.c0_np.astype(np.float64)
        K = prob.K

        def assign():
            d = ((x[:, :, None, :] - c[:, None, :, :]) ** 2).sum(-1)
            lab = d.argmin(-1)
            return ((lab + 1) % K if self.wrong else lab), d.min(-1)

        def update(labels):
            means, counts, _ = rp.ref_means(x, labels, K)
            return np.where((counts > 0)[..., None], means, prob.c_old).astype(np.float32), counts

        if op == "assign":
            return rp.Job("numpy broadcast", assign, lambda: ctx.check_assign(prob, *assign()))
        if op == "update":
            return rp.Job("numpy bincount", lambda: update(prob.labels_np),
                          lambda: ctx.check_update(prob, prob.labels_np, *update(prob.labels_np)))
        lab = assign()[0]
        return rp.Job("numpy lloyd", lambda: update(assign()[0]), lambda: ctx.check_lloyd(prob, lab, *update(lab)))


class WrongPeer(FakePeer):
    name = "fake_wrong"
    ops = ("assign",)
    why_not = {"update": "fake_wrong has no update entry point", "lloyd": "fake_wrong has no lloyd entry point"}
    wrong = True


class ExplodingPeer(FakePeer):
    name = "fake_boom"
    ops = ("assign",)

    def prepare(self, op, prob, ctx):
        raise RuntimeError("CUDA error: invalid configuration argument")


def sweep(tmp_path, fake_flashkm, registry, *extra):
    out = tmp_path / "fake.json"
    rc = rp.main(["--flashkm", str(fake_flashkm), "-o", str(out), "--shapes", "2x256x8x4,1x300x5x3",
                  "--peers", ",".join(registry), "--budget-s", "0.05", "--warmup", "1", "-q", *extra],
                 registry=registry, torch=None, backend=rp.HostBackend(), problem_factory=problem_factory)
    return rc, out, json.loads(out.read_text())


def test_fake_peers_sweep(tmp_path, fake_flashkm):
    registry = {"fake_exact": FakePeer, "fake_wrong": WrongPeer, "fake_boom": ExplodingPeer}
    rc, out, doc = sweep(tmp_path, fake_flashkm, registry)
    assert rc == 1  # an incorrect run and an error
    r = check_results(out, "--expect-complete", "--min-runs", "18")
    assert r.returncode == 0, r.stderr
    rows = {(x["variant"], x["op"], x["B"]): x for x in doc["runs"]}
    assert len(rows) == 18
    for op in ("assign", "update", "lloyd"):
        ok = rows[("peer/fake_exact", op, 2)]
        assert ok["status"] == "ok" and ok["reason"] is None and ok["validation"]["ok"] is True
        # the host clock flushes nothing: no flush method, as in flashkm's unflushed rows
        assert list(ok["timing"]) == [k for k in TIMING_KEYS if k != "flush_l2_method"]
        assert ok["timing"]["clock"] == "host_monotonic" and ok["timing"]["flush_l2"] is False
        assert ok["timing"]["warmup"] == 1 and 5 <= ok["timing"]["samples"] <= 30
        flops, nbytes = rp.work_of(op, 2, 256, 8, 4, "fp16")
        assert ok["derived"]["flops"] == flops and ok["derived"]["bytes"] == nbytes
        assert ok["impl"].startswith("numpy")
    assert rows[("peer/fake_exact", "assign", 2)]["validation"]["bad_distances"] == 0
    lloyd = rows[("peer/fake_exact", "lloyd", 1)]["validation"]
    assert lloyd["assign"]["ok"] and lloyd["update"]["ok"] and lloyd["update"]["count_mismatches"] == 0
    bad = rows[("peer/fake_wrong", "assign", 2)]
    assert bad["status"] == "incorrect" and bad["timing"] is None and "derived" not in bad
    assert bad["validation"]["mismatches"] > 0 and "mismatches" in bad["reason"]
    ns = rows[("peer/fake_wrong", "update", 2)]
    assert ns["status"] == "not_supported" and ns["reason"] == "fake_wrong has no update entry point"
    boom = rows[("peer/fake_boom", "assign", 1)]
    assert boom["status"] == "error" and boom["error_kind"] == "cuda_error"
    assert "invalid configuration" in boom["reason"]
    assert rows[("peer/fake_boom", "lloyd", 1)]["status"] == "not_supported"
    # the results scripts put the peers next to each other
    t = script("table.py", out, "--op", "assign")
    assert t.returncode == 0 and "peer/fake_exact" in t.stdout and "incorrect" in t.stdout and "error" in t.stdout
    c = script("compare.py", out, out)
    assert c.returncode == 0 and "SAME" in c.stdout


def test_interrupted_sweep_keeps_its_rows(tmp_path, fake_flashkm):
    class Interrupting(FakePeer):
        name = "fake_stop"
        calls = [0]

        def prepare(self, op, prob, ctx):
            self.calls[0] += 1
            if self.calls[0] == 3:
                raise KeyboardInterrupt
            return super().prepare(op, prob, ctx)

    rc, out, doc = sweep(tmp_path, fake_flashkm, {"fake_stop": Interrupting})
    assert rc == 3 and doc["state"] == "aborted" and doc["abort_reason"] == "interrupted"
    assert [r["op"] for r in doc["runs"]] == ["assign", "update"]
    assert check_results(out).returncode == 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".run_peers.")]  # no temporary files left


def test_data_errors_become_error_rows(tmp_path, fake_flashkm):
    out = tmp_path / "gen.json"
    rc = rp.main(["--flashkm", str(fake_flashkm), "-o", str(out), "--shapes", "1x256x8x4", "--peers", "fake_exact",
                  "-q"], registry={"fake_exact": FakePeer}, torch=None, backend=rp.HostBackend())
    doc = json.loads(out.read_text())
    assert rc == 1 and [r["status"] for r in doc["runs"]] == ["error"] * 3
    assert all(r["error_kind"] == "io_error" and "flashkm" in r["reason"] and "gen" in r["reason"] for r in doc["runs"])
    assert check_results(out, "--expect-complete").returncode == 0
