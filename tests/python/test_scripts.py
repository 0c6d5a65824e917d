"""Tests of the results scripts (table.py, plot.py, compare.py, check_results.py,
summarize.py, heuristics.py) on the committed H100 results, on synthetic files made from them,
and on small synthetic files built from scratch for the row keys no committed
file has yet (phases, fit): no GPU, no build needed. Each script runs as a subprocess, as a user would run it.
Run: python3 -m pytest tests/python (scripts/test.sh does, after ctest)."""
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
QUICK = ROOT / "results" / "h100" / "quick.json"
LABELS = {"not_supported": "n/s", "out_of_memory": "OOM", "incorrect": "incorrect", "error": "error"}
BASELINES = {"assign": "assign/cublas_gemm", "update": "update/atomic_scatter"}  # the defaults, when present
CELL = re.compile(r"^([0-9.]+)(?: \(([0-9.]+)×\))?$")


def run(script, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def quick():
    return json.loads(QUICK.read_text())


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=1))
    return path


def dims(r):
    return f"{r['B']}×{r['N']}×{r['K']}×{r['D']}"


def same_shape(a, b):
    return all(a[k] == b[k] for k in ("op", "B", "N", "K", "D", "dtype", "data", "seed"))


def ok_runs(doc, op=None, exclude=()):
    return [r for r in doc["runs"] if r["status"] == "ok" and r.get("timing")
            and (op is None or r["op"] == op) and r["variant"] not in exclude]


def fail_run(r, status, reason):
    r.update(status=status, reason=reason, timing=None)
    r.pop("derived", None)
    r.pop("phases", None)  # only timed rows carry phases
    if status in ("not_supported", "out_of_memory"):
        r["validation"] = None
        r.pop("fit", None)  # a fit that never ran has no history
    elif status == "incorrect":
        r["validation"]["ok"] = False
        r["validation"]["mismatches"] = 17
    else:
        r["error_kind"] = "cuda_error"


def scale_timing(r, factor, rel_stdev=None):
    for k in ("median", "q1", "q3", "min", "max", "mean"):
        r["timing"][k] *= factor
    if rel_stdev is not None:
        r["timing"]["rel_stdev"] = rel_stdev


def markdown_row(text, *needles):
    """The cells of the one Markdown table line that contains every needle."""
    lines = [l for l in text.splitlines() if l.startswith("|") and all(n in l for n in needles)]
    assert len(lines) == 1, (needles, lines)
    return [c.strip() for c in lines[0].strip("|").split("|")]


def md_cell(text, r):
    """The Markdown table cell of run r: its shape's row, its variant's column."""
    header = markdown_row(text, "| op | B×N×K×D |", f" {r['variant']} |")
    row = markdown_row(text, f"| {r['op']} | {dims(r)} | {r['dtype']} | {r['data']} |")
    return row[header.index(r["variant"])]


def latex_cell(text, r):
    """The LaTeX tabular cell of run r, as md_cell."""
    tex = lambda s: s.replace("_", r"\_").replace("×", r"$\times$")
    cells = lambda line: [c.strip() for c in line.rstrip("\\ ").split("&")]
    variant = r"\texttt{%s}" % tex(r["variant"])
    lines = text.splitlines()
    header = next(cells(l) for l in lines if l.startswith("op &") and variant in cells(l))
    row = next(cells(l) for l in lines if cells(l)[:4] == [r["op"], tex(dims(r)), r["dtype"], tex(r["data"])])
    return row[header.index(variant)]


def check_number_cell(cell, value, speedup=None, has_speedup=True):
    """cell is 'value (speedup×)' with value to 4 significant digits and speedup to 2
    (its value checked unless speedup is None); with has_speedup=False it is 'value'
    alone (a shape without a run of the table's baseline)."""
    m = CELL.match(cell)
    assert m, cell
    assert (m.group(2) is not None) == has_speedup, cell
    assert float(m.group(1)) == pytest.approx(value, rel=6e-4), cell
    if speedup is not None:
        assert float(m.group(2)) == pytest.approx(speedup, rel=0.03, abs=0.006), cell


def baseline_of(doc, r):
    base = BASELINES.get(r["op"])
    return next((b for b in ok_runs(doc, r["op"]) if b["variant"] == base and same_shape(b, r)), None)


def doc_of(runs, card="Test GPU 80GB"):
    """A minimal results document holding runs (what fkm_results.load reads)."""
    return {"schema_version": 1, "state": "complete", "meta": {}, "device": {"present": True, "name": card},
            "ceilings": None, "runs": runs}


def row(variant, N=4096, K=64, D=32, median=1.0, status="ok", wall_s=0.25, **extra):
    """A synthetic row of variant on shape 1×N×K×D fp16 blobs seed 1: ok and timed at median ms,
    or of a failing status without a timing; extra keys (impl, phases, fit) added as given."""
    r = {"experiment": "synthetic", "variant": variant, "op": variant.split("/")[0], "B": 1, "N": N, "K": K,
         "D": D, "dtype": "fp16", "data": "blobs", "seed": 1, "status": status,
         "reason": None if status == "ok" else f"planted {status}", "validation": None, "timing": None,
         "device_bytes": None, "wall_s": wall_s}
    if status == "ok":
        r["timing"] = {"unit": "ms", "clock": "cuda_event", "samples": 10, "warmup": 3, "flush_l2": True,
                       "median": median, "q1": median * 0.99, "q3": median * 1.01, "min": median * 0.98,
                       "max": median * 1.02, "mean": median, "rel_stdev": 0.01, "converged": True}
    r.update(extra)
    return r


def phases_of(**ms):
    """The phases list of name=median_ms pairs, in the order given, with shares of their sum."""
    total = sum(ms.values())
    return [{"name": n, "median_ms": m, "share": m / total} for n, m in ms.items()]


@pytest.fixture
def planted():
    """quick.json with one run of each failing status: (doc, {status: run})."""
    doc = quick()
    assign = ok_runs(doc, "assign", exclude=BASELINES.values())
    update = ok_runs(doc, "update")
    assert len(assign) >= 3 and update, "results/h100/quick.json lacks the runs these tests plant failures in"
    runs = {"incorrect": assign[0], "not_supported": assign[1], "out_of_memory": assign[-1], "error": update[-1]}
    for status, r in runs.items():
        fail_run(r, status, f"planted {status}")
    return doc, runs


@pytest.fixture
def synthetic(tmp_path, planted):
    return write(tmp_path, "synthetic.json", planted[0])


# --- table.py -------------------------------------------------------------------------------

def test_table_markdown_quick():
    doc = quick()
    p = run("table.py", QUICK)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"card: {doc['device']['name']} ({QUICK})"
    for r in doc["runs"]:
        cell = md_cell(p.stdout, r)
        if r["status"] != "ok":
            assert cell == LABELS[r["status"]]
            continue
        base = baseline_of(doc, r)
        check_number_cell(cell, r["timing"]["median"], base and base["timing"]["median"] / r["timing"]["median"])
        if base is r:
            assert cell.endswith(" (1.00×)")


def test_table_latex_quick():
    doc = quick()
    p = run("table.py", QUICK, "--latex", "--op", "assign")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.count(r"\begin{tabular}") == 1 and r"\end{tabular}" in out
    assert r"\texttt{assign/cublas\_gemm}" in out and doc["device"]["name"] in out
    assert "update/" not in out
    shapes = {(r["B"], r["N"], r["K"], r["D"], r["dtype"], r["data"]) for r in doc["runs"] if r["op"] == "assign"}
    variants = {r["variant"] for r in doc["runs"] if r["op"] == "assign"}
    body = [l for l in out.splitlines() if l.startswith("assign &")]
    assert len(body) == len(shapes)
    assert all(l.endswith(r"\\") and l.count("&") == 3 + len(variants) for l in body)
    gemm = next(r for r in ok_runs(doc, "assign") if r["variant"] == "assign/cublas_gemm")
    line = next(l for l in body if l.startswith("assign & " + dims(gemm).replace("×", r"$\times$") + " "))
    assert r" (1.00$\times$)" in line


def test_table_failed_runs_shown_as_status(tmp_path, planted):
    doc, runs = planted
    path = write(tmp_path, "synthetic.json", doc)
    p = run("table.py", path)
    assert p.returncode == 0, p.stderr
    for status, r in runs.items():
        assert md_cell(p.stdout, r) == LABELS[status]
    latex = run("table.py", path, "--latex")
    assert latex.returncode == 0, latex.stderr
    for status, r in runs.items():
        assert latex_cell(latex.stdout, r) == LABELS[status]


def test_table_baseline_metric_and_output(tmp_path):
    doc = quick()
    out = tmp_path / "t.md"
    p = run("table.py", QUICK, "--baseline", "assign/naive", "--metric", "tflops", "--op", "assign", "-o", out)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    text = out.read_text()
    assert "TFLOP/s" in text and "speedup over assign/naive" in text and "| update |" not in text
    for r in ok_runs(doc, "assign"):
        naive = next((b for b in ok_runs(doc, "assign") if b["variant"] == "assign/naive" and same_shape(b, r)), None)
        # shapes without a naive run (the fp32 experiment) get no speedup
        check_number_cell(md_cell(text, r), r["derived"]["tflops"],
                          naive and naive["timing"]["median"] / r["timing"]["median"], has_speedup=naive is not None)


def test_table_merges_files_with_note(tmp_path):
    doc = quick()
    r = next(r for r in ok_runs(doc, "assign") if r["variant"] == "assign/flash_mma")
    scale_timing(r, 2.0)
    base = baseline_of(doc, r)
    doc["device"]["name"] = "NVIDIA H200"
    doc["runs"] = [r]
    later = write(tmp_path, "later.json", doc)
    p = run("table.py", QUICK, later)
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("cards: ") and "H100" in first and "NVIDIA H200 (" in first
    check_number_cell(md_cell(p.stdout, r), r["timing"]["median"], base["timing"]["median"] / r["timing"]["median"])
    notes = [l for l in p.stdout.splitlines() if "note:" in l]
    assert len(notes) == 1 and "assign/flash_mma" in notes[0] and "later.json replaces" in notes[0]


@pytest.mark.parametrize("args,message", [
    (["--baseline", "assign/nope"], "no such variant"),
    (["--op", "update", "--baseline", "assign/naive"], "no such variant"),
    (["--op", "nope"], "no nope runs"),
])
def test_table_bad_choices(args, message):
    p = run("table.py", QUICK, *args)
    assert p.returncode == 2 and message in p.stderr and p.stdout == ""


@pytest.mark.parametrize("script", ["table.py", "plot.py", "compare.py", "heuristics.py"])
def test_not_a_results_file(tmp_path, script):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    for path in (bad, ROOT / "README.md", tmp_path / "missing.json"):
        p = run(script, *([QUICK, path] if script == "compare.py" else [path]))
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.strip().count("\n") == 0 and str(path) in p.stderr, p.stderr
    assert "not a flashkm results file" in run(script, *([QUICK, bad] if script == "compare.py" else [bad])).stderr


@pytest.mark.parametrize("script", ["table.py", "plot.py", "compare.py", "heuristics.py"])
def test_help(script):
    p = run(script, "--help")
    assert p.returncode == 0 and "usage:" in p.stdout


# --- plot.py --------------------------------------------------------------------------------

def written(out, pattern, formats=("png", "svg")):
    """The files out/pattern.EXT for each format: at least one each, all non-empty."""
    found = []
    for ext in formats:
        files = list(out.glob(f"{pattern}.{ext}"))
        assert files and all(f.stat().st_size > 1000 for f in files), (pattern, ext, list(out.iterdir()))
        found += files
    return found


def test_plots_quick(tmp_path):
    out = tmp_path / "plots"
    p = run("plot.py", QUICK, "--out", out)
    assert p.returncode == 0, p.stderr
    for op in {r["op"] for r in quick()["runs"]}:
        written(out, f"speedup_{op}")
    written(out, "time_vs_K_assign_B1_N1048576_D128_fp16_blobs_seed1")  # K = 128 and 1024
    written(out, "roofline")
    assert "skip time vs N" in p.stdout  # quick.json has no N sweep
    for name in ("phases_update", "phases_lloyd", "phases_fit", "fit_convergence"):  # quick.json has both
        written(out, name)
    assert (out / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (out / "speedup_assign.svg").read_text()
    assert "<svg" in svg and "H100" in svg  # the title names the card


def test_plots_sweep_failures_and_no_ceilings(tmp_path, planted):
    doc, _ = planted
    doc["ceilings"] = None
    halves = []
    for r in ok_runs(doc, "assign"):
        half = copy.deepcopy(r)
        half["N"] //= 2
        scale_timing(half, 0.5)
        halves.append(half)
    doc["runs"] += halves
    out = tmp_path / "p"
    p = run("plot.py", write(tmp_path, "sweep.json", doc), "--out", out, "--formats", "png")
    assert p.returncode == 0, p.stderr
    written(out, "time_vs_N_assign_B1_K1024_D128_fp16_blobs_seed1", ("png",))
    written(out, "speedup_assign", ("png",))
    assert not list(out.glob("*.svg"))
    assert "skip roofline: no ceilings" in p.stdout


def test_plots_nothing_to_plot(tmp_path):
    doc = quick()
    for r in doc["runs"]:
        fail_run(r, "not_supported", "no GPU")
    p = run("plot.py", write(tmp_path, "none.json", doc), "--out", tmp_path / "p")
    assert p.returncode == 1 and "nothing to plot" in p.stderr
    assert "skip speedup_assign" in p.stdout and "skip roofline" in p.stdout


def fit_of(history, converged=True):
    return {"init": "kmeans++", "tol_mode": "shift", "tol": 1e-4, "max_iter": 50, "iterations": len(history),
            "converged": converged, "inertia": history[-1], "iterations_min": len(history),
            "iterations_max": len(history), "ms_per_pass": 0.1, "inertia_history": history,
            "shift_history": [1.0 / (i + 1) for i in range(len(history))]}


def test_plots_phases_and_fit(tmp_path):
    doc = doc_of([
        row("assign/flash", median=0.5, impl="assign/flash_mma"),  # no phases: no phases_assign
        row("update/atomic_scatter", median=0.4),
        row("update/sort_inverse", median=1.0, phases=phases_of(sort=0.31, reduce=0.69)),
        row("update/sort_inverse_det", N=8192, median=2.0, phases=phases_of(sort=0.75, reduce=1.25)),
        row("update/sort_inverse_det", N=16384, median=3.0, phases=[{"name": "sort"}]),  # malformed: left out
        row("lloyd/flash", median=3.0, phases=phases_of(assign=2.0, update=0.9, converge=0.1)),
        row("fit/flash", median=40.0, phases=phases_of(init=4.0, iterations=36.0),
            fit=fit_of([900.0, 400.0, 310.0, 300.5, 300.0])),
        row("fit/naive_atomic", median=90.0, phases=phases_of(init=5.0, iterations=85.0),
            fit=fit_of([950.0, 500.0, 420.0], converged=False)),
        row("fit/cublas_atomic", status="incorrect", fit=fit_of([1000.0, 700.0])),  # untimed, still converged
    ])
    out = tmp_path / "p"
    p = run("plot.py", write(tmp_path, "phases.json", doc), "--out", out)
    assert p.returncode == 0, p.stderr
    for name in ("phases_update", "phases_lloyd", "phases_fit", "fit_convergence", "speedup_update"):
        written(out, name)
    assert not list(out.glob("phases_assign.*")) and "skip phases" not in p.stdout
    svg = (out / "phases_update.svg").read_text()  # matplotlib keeps each text as a comment
    assert "Test GPU 80GB" in svg and "sort" in svg and "reduce" in svg
    assert "0.31" in svg and "0.69" in svg and "2 ms" in svg  # segments and the sum of a bar
    assert "update/sort_inverse_det" in svg and "8192" in svg and "16384" not in svg
    svg = (out / "phases_lloyd.svg").read_text()
    assert all(n in svg for n in ("assign", "update", "converge"))
    svg = (out / "fit_convergence.svg").read_text()
    assert "Test GPU 80GB" in svg and "fit/flash" in svg and "fit/naive_atomic" in svg
    assert "5 it, converged" in svg and "3 it, not converged" in svg and "incorrect" in svg


def test_plots_fit_without_history_skipped(tmp_path):
    doc = doc_of([row("fit/flash", median=40.0, fit=fit_of([1.0])), row("lloyd/flash", median=3.0)])
    doc["runs"][0]["fit"]["inertia_history"] = []
    p = run("plot.py", write(tmp_path, "nofit.json", doc), "--out", tmp_path / "p", "--formats", "png")
    assert p.returncode == 0, p.stderr
    assert "skip fit_convergence: no fit row with an inertia_history" in p.stdout
    assert "skip phases: no timed run has phases" in p.stdout
    assert not list((tmp_path / "p").glob("fit_*")) and not list((tmp_path / "p").glob("phases_*"))


def test_plots_bad_format(tmp_path):
    p = run("plot.py", QUICK, "--out", tmp_path, "--formats", "png,bmp")
    assert p.returncode == 2 and "--formats" in p.stderr


# --- compare.py -----------------------------------------------------------------------------

def verdicts(stdout):
    """The table rows of compare.py's output, as lists of cells."""
    rows = [l for l in stdout.splitlines() if l.startswith("| ") and not l.startswith("| variant")]
    return [[c.strip() for c in l.strip("|").split("|")] for l in rows]


def is_row_of(row, r):
    return row[0] == r["variant"] and row[2] == dims(r) and row[3] == r["dtype"] and row[4] == r["data"]


def test_compare_identical():
    p = run("compare.py", QUICK, QUICK)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = verdicts(p.stdout)
    assert len(rows) == len(quick()["runs"]) and all(r[-1] == "SAME" for r in rows)
    assert all(r[8] == "1.000" for r in rows if r[8])


def test_compare_planted_slowdown(tmp_path):
    doc = quick()
    # a quiet run, so the bar max(0.05, 2·(old + 0.01)) stays below 0.2
    slow = next(r for r in ok_runs(doc) if r["timing"]["rel_stdev"] < 0.02)
    scale_timing(slow, 1.2, rel_stdev=0.01)
    p = run("compare.py", QUICK, write(tmp_path, "slow.json", doc))
    assert p.returncode == 1
    bad = [row for row in verdicts(p.stdout) if row[-1] != "SAME"]
    assert len(bad) == 1 and is_row_of(bad[0], slow)
    assert bad[0][-1] == "SLOWER" and bad[0][8] == "1.200"
    # the same slowdown is not beyond a threshold of 0.25
    p = run("compare.py", QUICK, tmp_path / "slow.json", "--threshold", "0.25")
    assert p.returncode == 0 and all(row[-1] == "SAME" for row in verdicts(p.stdout))
    # the other way round it is FASTER, which passes
    p = run("compare.py", tmp_path / "slow.json", QUICK)
    assert p.returncode == 0 and [row[-1] for row in verdicts(p.stdout)].count("FASTER") == 1


def test_compare_noise_hides_difference(tmp_path):
    doc = quick()
    noisy = next(r for r in ok_runs(doc) if r["timing"]["rel_stdev"] < 0.02)
    scale_timing(noisy, 1.2, rel_stdev=0.2)  # bar = 2·(old + 0.2) > 0.4
    p = run("compare.py", QUICK, write(tmp_path, "noisy.json", doc))
    assert p.returncode == 0 and all(row[-1] == "SAME" for row in verdicts(p.stdout))


def test_compare_overlapping_iqrs_same(tmp_path):
    doc = quick()
    r = next(r for r in ok_runs(doc) if r["timing"]["rel_stdev"] < 0.02)
    old_q3 = r["timing"]["q3"]
    scale_timing(r, 1.2, rel_stdev=0.01)
    r["timing"]["q1"] = r["timing"]["min"] = old_q3  # a long lower tail: the IQRs touch
    p = run("compare.py", QUICK, write(tmp_path, "tail.json", doc))
    assert p.returncode == 0 and all(row[-1] == "SAME" for row in verdicts(p.stdout))


def test_compare_planted_incorrect(tmp_path, planted, synthetic):
    doc = quick()
    broken = ok_runs(doc)[0]
    fail_run(broken, "incorrect", "3 mismatches")
    p = run("compare.py", QUICK, write(tmp_path, "broken.json", doc))
    assert p.returncode == 1
    bad = [row for row in verdicts(p.stdout) if row[-1] != "SAME"]
    assert len(bad) == 1 and is_row_of(bad[0], broken)
    assert bad[0][-1] == "BROKEN (ok → incorrect)" and bad[0][7] == "incorrect"
    # each planted status against quick.json: incorrect and error are BROKEN, n/s and OOM only CHANGED
    p = run("compare.py", QUICK, synthetic)
    assert p.returncode == 1
    for status, r in planted[1].items():
        row = next(row for row in verdicts(p.stdout) if is_row_of(row, r))
        kind = "BROKEN" if status in ("incorrect", "error") else "CHANGED"
        assert row[-1] == f"{kind} (ok → {status})"
    # once fixed, it passes
    p = run("compare.py", synthetic, QUICK)
    assert p.returncode == 0 and sum(row[-1].startswith("CHANGED") for row in verdicts(p.stdout)) == 4


def test_compare_new_and_gone(tmp_path):
    doc = quick()
    gone = doc["runs"].pop(0)
    added = copy.deepcopy(doc["runs"][0])
    added["seed"] = 2
    doc["runs"].append(added)
    p = run("compare.py", QUICK, write(tmp_path, "moved.json", doc))
    assert p.returncode == 0
    rows = verdicts(p.stdout)
    assert [row[-1] for row in rows].count("GONE") == 1 and [row[-1] for row in rows].count("NEW") == 1
    assert is_row_of(next(row for row in rows if row[-1] == "GONE"), gone)
    assert next(row for row in rows if row[-1] == "NEW")[5] == "2"


# --- check_results.py -----------------------------------------------------------------------

def test_check_results_accepts_quick():
    p = run("check_results.py", QUICK, "--expect-complete")
    assert p.returncode == 0 and f"valid, {len(quick()['runs'])} runs" in p.stdout, p.stderr


def test_check_results_rejects_missing_key(tmp_path):
    doc = quick()
    del doc["runs"][2]["N"]
    del doc["meta"]["git"]
    p = run("check_results.py", write(tmp_path, "missing.json", doc))
    assert p.returncode == 1
    assert f"runs[2] ({doc['runs'][2]['variant']}).N is None" in p.stderr and "meta.git is missing" in p.stderr


def test_check_results_rejects_quantiles_out_of_order(tmp_path):
    doc = quick()
    i, r = next((i, r) for i, r in enumerate(doc["runs"]) if r["status"] == "ok" and r.get("timing"))
    r["timing"]["q1"], r["timing"]["q3"] = r["timing"]["q3"], r["timing"]["q1"]
    p = run("check_results.py", write(tmp_path, "order.json", doc))
    assert p.returncode == 1 and f"runs[{i}] ({r['variant']}).timing quantiles out of order" in p.stderr


def with_sm_clock(doc, clocks):
    """doc with timing.sm_clock_measured_mhz {before, after} set on its first ok timed runs, one
    (before, after) pair each, in order; the other rows left without it, as in files written before
    the field. Returns the rows changed."""
    rows = [r for r in doc["runs"] if r["status"] == "ok" and r.get("timing")][: len(clocks)]
    assert len(rows) == len(clocks), "results/h100/quick.json lacks the timed runs these tests need"
    for r, (before, after) in zip(rows, clocks):
        r["timing"]["sm_clock_measured_mhz"] = {"before": before, "after": after}
    return rows


def test_check_results_accepts_sm_clock(tmp_path):
    doc = quick()
    with_sm_clock(doc, [(1980.0, 1975.5), (1755, 1620.2)])  # rows with it beside rows without
    p = run("check_results.py", write(tmp_path, "clock.json", doc), "--expect-complete")
    assert p.returncode == 0 and f"valid, {len(doc['runs'])} runs" in p.stdout, p.stderr


@pytest.mark.parametrize("bad", [None, 1980, {"before": 1980}, {"before": 1980, "after": "1900"},
                                 {"before": 0, "after": 1900}, {"before": True, "after": 1900}])
def test_check_results_rejects_bad_sm_clock(tmp_path, bad):
    doc = quick()
    r = with_sm_clock(doc, [(1980, 1980)])[0]
    r["timing"]["sm_clock_measured_mhz"] = bad
    i = doc["runs"].index(r)
    p = run("check_results.py", write(tmp_path, "bad_clock.json", doc))
    assert p.returncode == 1 and f"runs[{i}] ({r['variant']}).timing.sm_clock_measured_mhz is" in p.stderr, p.stderr


@pytest.mark.parametrize("flush, method", [(True, "fast"), (True, None), (False, "clean")])
def test_check_results_rejects_bad_flush_method(tmp_path, flush, method):
    doc = quick()
    i, r = next((i, r) for i, r in enumerate(doc["runs"]) if r["status"] == "ok" and r.get("timing"))
    r["timing"]["flush_l2"] = flush
    r["timing"]["flush_l2_method"] = method
    p = run("check_results.py", write(tmp_path, "bad_flush.json", doc))
    assert p.returncode == 1 and f"runs[{i}] ({r['variant']}).timing.flush_l2_method is" in p.stderr, p.stderr


def test_check_results_accepts_rows_without_flush_method(tmp_path):
    doc = quick()  # files from before the key: no method on any row
    for r in doc["runs"]:
        if r.get("timing"):
            r["timing"].pop("flush_l2_method", None)
    p = run("check_results.py", write(tmp_path, "old_flush.json", doc), "--expect-complete")
    assert p.returncode == 0, p.stderr


# --- summarize.py ---------------------------------------------------------------------------

def warned_rows(stdout):
    """The table lines that a throttle warning follows, and the warnings."""
    lines = stdout.splitlines()
    return [(lines[i - 1], l) for i, l in enumerate(lines) if l.startswith("  warning: throttled while measured")]


def quick_without_clock():
    """The committed quick.json as a file from before the harness measured the SM clock."""
    doc = quick()
    for r in doc["runs"]:
        (r.get("timing") or {}).pop("sm_clock_measured_mhz", None)
    return doc


def test_summarize_old_file_no_warning(tmp_path):
    doc = quick_without_clock()
    p = run("summarize.py", write(tmp_path, "old.json", doc))
    assert p.returncode == 0, p.stderr
    assert len([l for l in p.stdout.splitlines() if not l.startswith("#")]) == len(doc["runs"]) + 1
    assert "warning" not in p.stdout


def test_summarize_throttle_warnings(tmp_path):
    doc = quick_without_clock()
    assert doc["device"]["sm_clock_mhz"] == 1980
    steady, dropped, low, rising, slight = with_sm_clock(doc, [
        (1980, 1950),    # 1.5 % drop, at full clock: fine
        (1950, 1800),    # 7.7 % drop during the samples
        (1700, 1705),    # steady but 86 % of 1980
        (1600, 1980),    # started below 90 % (81 %)
        (1790, 1785)])   # 90.2 % (after: 1785 / 1980), 0.3 % drop: fine
    p = run("summarize.py", write(tmp_path, "clock.json", doc))
    assert p.returncode == 0, p.stderr
    warned = warned_rows(p.stdout)
    assert len(warned) == 3, p.stdout
    for (line, warning), r in zip(warned, (dropped, low, rising)):
        assert line.startswith(r["variant"]) and f"{r['B']}x{r['N']}x{r['K']}x{r['D']}" in line, (line, r)
    assert "SM clock 1950 -> 1800 MHz (fell 8 % during the samples)" in warned[0][1]
    assert "SM clock 1700 -> 1705 MHz (86 % of the device's 1980 MHz)" in warned[1][1]
    assert "SM clock 1600 -> 1980 MHz (81 % of the device's 1980 MHz)" in warned[2][1]
    # without the device's max clock only the drop counts
    del doc["device"]["sm_clock_mhz"]
    p = run("summarize.py", write(tmp_path, "clock_nomax.json", doc))
    assert p.returncode == 0 and [w for _, w in warned_rows(p.stdout)] == [warned[0][1]], p.stdout


# --- heuristics.py --------------------------------------------------------------------------

def heuristic_doc():
    """Three comparable shapes (out of N order) with known ratios, and two that are not comparable:
    N=2048: picks flash_mma, the best           ratio 1.0
    N=4096: picks flash_wgmma, flash_mma best   ratio 1.9/2.0 = 0.95 (flash_simt n/s, its wall_s counts)
    N=8192: picks flash_wgmma, which has no row ratio 3.2/4.0 = 0.8 (the missing candidate)
    N=16384: assign/flash without candidates (skipped with a note); N=32768: candidates only (ignored)."""
    return doc_of([
        row("assign/flash", N=4096, median=2.0, impl="assign/flash_wgmma"),
        row("assign/flash_mma", N=4096, median=1.9, wall_s=0.5),
        row("assign/flash_wgmma", N=4096, median=2.0, wall_s=0.25),
        row("assign/flash_simt", N=4096, status="not_supported", wall_s=0.125),
        row("assign/cublas_gemm", N=4096, median=1.5, wall_s=8.0),  # not a candidate
        row("assign/flash", N=8192, median=4.0, impl="assign/flash_wgmma"),
        row("assign/flash_wgmma_bm256", N=8192, median=3.2, wall_s=1.0),
        row("assign/flash", N=2048, median=1.0, impl="assign/flash_mma"),
        row("assign/flash_mma", N=2048, median=1.0, wall_s=0.5),
        row("assign/flash_wgmma", N=2048, median=1.2, wall_s=0.5),
        row("assign/flash", N=16384, median=1.0, impl="assign/flash_mma"),
        row("assign/flash_mma", N=32768, median=1.0),
        row("update/atomic_scatter", N=4096, median=0.3),
    ])


def heuristic_rows(stdout):
    """The table rows of heuristics.py's output, as lists of cells."""
    return [[c.strip() for c in l.strip("|").split("|")] for l in stdout.splitlines()
            if l.startswith("| ") and not l.startswith("| B×N×K×D")]


def test_heuristics_math(tmp_path):
    out = tmp_path / "h.json"
    p = run("heuristics.py", write(tmp_path, "h.json.in", heuristic_doc()), "--json", out)
    assert p.returncode == 1, p.stdout + p.stderr  # median 0.95 < 0.97 and minimum 0.8 < 0.9
    rows = heuristic_rows(p.stdout)
    assert [r[0] for r in rows] == ["1×2048×64×32", "1×4096×64×32", "1×8192×64×32"]  # sorted by N
    assert [r[7] for r in rows] == ["1.000", "0.950", "0.800"]
    assert [r[8] for r in rows] == ["yes", "no", "no (pick not measured)"]
    assert rows[1][3:7] == ["assign/flash_wgmma", "2", "assign/flash_mma", "1.9"] and rows[1][9] == "2 of 3"
    assert "- shapes: 3" in p.stdout and "- median best/heuristic: 0.950 (--min-median 0.97: MISSED)" in p.stdout
    assert "- minimum best/heuristic: 0.800 at 1×8192×64×32 fp16 blobs seed 1 (--min-ratio 0.9: MISSED)" in p.stdout
    assert "- heuristic picked the best candidate: 1 of 3 (33%)" in p.stdout
    assert "- tuning time saved: 2.88 s" in p.stdout  # (0.5+0.25+0.125) + 1.0 + (0.5+0.5)
    assert "skip 1×16384×64×32 fp16 blobs seed 1: no assign/flash_* row" in p.stdout
    assert "flash_wgmma has no timed row" in p.stdout and "32768" not in p.stdout and "cublas" not in p.stdout
    fails = [l for l in p.stdout.splitlines() if l.startswith("FAIL: ")]
    assert len(fails) == 2 and "--min-median 0.97" in fails[0] and "--min-ratio 0.9" in fails[1]
    data = json.loads(out.read_text())
    shapes = {s["N"]: s for s in data["shapes"]}
    assert shapes[4096]["ratio"] == pytest.approx(0.95) and shapes[4096]["best"] == "assign/flash_mma"
    assert shapes[4096]["tuning_s"] == pytest.approx(0.875) and shapes[4096]["picked_best"] is False
    assert shapes[4096]["candidates"]["assign/flash_simt"] == "n/s"
    assert shapes[8192]["pick_measured"] is False and shapes[2048]["picked_best"] is True
    summary = data["summary"]
    assert summary["median_ratio"] == pytest.approx(0.95) and summary["min_ratio"] == pytest.approx(0.8)
    assert summary["picked_best"] == 1 and summary["tuning_s"] == pytest.approx(2.875) and len(summary["failed"]) == 2


@pytest.mark.parametrize("args,rc,missed", [
    (["--min-median", "0.9", "--min-ratio", "0.8"], 0, []),  # at the threshold passes
    (["--min-median", "0.95", "--min-ratio", "0.81"], 1, ["--min-ratio"]),
    (["--min-median", "0.96", "--min-ratio", "0.5"], 1, ["--min-median"]),
])
def test_heuristics_thresholds(tmp_path, args, rc, missed):
    p = run("heuristics.py", write(tmp_path, "h.json", heuristic_doc()), *args)
    assert p.returncode == rc, p.stdout + p.stderr
    fails = [l for l in p.stdout.splitlines() if l.startswith("FAIL: ")]
    assert len(fails) == len(missed) and all(m in f for m, f in zip(missed, fails))


def test_heuristics_throttled_row(tmp_path):
    """A dispatcher row whose SM clock fell > 10 % during its samples gets a note, and --min-ratio
    is checked on the other shapes (here N=8192's 0.8 is the throttled one: the steady minimum is
    0.95); a fall of exactly 10 % is not throttled."""
    doc = heuristic_doc()
    for r in doc["runs"]:
        if r["variant"] == "assign/flash" and r["N"] == 8192:
            r["timing"]["sm_clock_measured_mhz"] = {"before": 1900.0, "after": 1500.0}
        if r["variant"] == "assign/flash" and r["N"] == 4096:
            r["timing"]["sm_clock_measured_mhz"] = {"before": 2000.0, "after": 1800.0}
    out = tmp_path / "h.json"
    p = run("heuristics.py", write(tmp_path, "h.json", doc), "--min-median", "0.9", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert ("- minimum best/heuristic: 0.800 at 1×8192×64×32 fp16 blobs seed 1; over the 2 shapes timed at a "
            "steady clock: 0.950 at 1×4096×64×32 fp16 blobs seed 1 (--min-ratio 0.9: met)") in p.stdout
    assert "1×8192×64×32 fp16 blobs seed 1: the assign/flash row's SM clock fell 1900 -> 1500 MHz" in p.stdout
    assert "4096×64×32 fp16 blobs seed 1: the assign/flash row's SM clock" not in p.stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["steady_shapes"] == 2 and summary["min_ratio_steady"] == pytest.approx(0.95)
    p = run("heuristics.py", write(tmp_path, "h2.json", doc), "--min-median", "0.9", "--min-ratio", "0.96")
    assert p.returncode == 1 and "FAIL: minimum best/heuristic 0.950 (1×4096×64×32" in p.stdout


def test_heuristics_even_count_median(tmp_path):
    doc = heuristic_doc()
    doc["runs"].append(row("assign/flash_mma", N=16384, median=0.5))  # the skipped shape: ratio 0.5
    p = run("heuristics.py", write(tmp_path, "h.json", doc), "--min-median", "0", "--min-ratio", "0")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "- shapes: 4" in p.stdout and "- median best/heuristic: 0.875" in p.stdout  # (0.8 + 0.95) / 2
    assert "- minimum best/heuristic: 0.500 at 1×16384×64×32" in p.stdout and "skip" not in p.stdout


def test_heuristics_quick_and_merge(tmp_path):
    doc = quick()
    runs = [r for r in doc["runs"] if r["op"] == "assign" and r["variant"].startswith("assign/flash")]
    flash = {(dims(r), r["dtype"]): r for r in runs if r["variant"] == "assign/flash"}
    out = tmp_path / "q.json"
    p = run("heuristics.py", QUICK, "--min-median", "0", "--min-ratio", "0", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0] == f"card: {doc['device']['name']} ({QUICK})"
    shapes = json.loads(out.read_text())["shapes"]
    assert len(shapes) == len(flash) >= 3
    for s in shapes:
        key = (f"{s['B']}×{s['N']}×{s['K']}×{s['D']}", s["dtype"])
        # candidates: the exact implementations (a tf32 row is never one)
        cands = {r["variant"]: r for r in runs if (dims(r), r["dtype"]) == key and r["variant"] != "assign/flash"
                 and r.get("compute", "exact") == "exact"}
        timed = {v: r["timing"]["median"] for v, r in cands.items() if r["status"] == "ok"}
        best = min(timed, key=timed.get)
        assert s["best"] == best and s["impl"] == flash[key]["impl"]
        assert s["ratio"] == pytest.approx(timed[best] / flash[key]["timing"]["median"])
        assert s["tuning_s"] == pytest.approx(sum(r["wall_s"] for r in cands.values()))
    # a later file with a faster flash_simt on one shape: it becomes the best there, with a note
    r = next(r for r in runs if r["variant"] == "assign/flash_simt" and r["status"] == "ok")
    scale_timing(r, 1e-3)
    doc["runs"] = [r]
    p = run("heuristics.py", QUICK, write(tmp_path, "later.json", doc), "--json", out)
    assert p.returncode == 1 and "FAIL: " in p.stdout, p.stdout + p.stderr
    s = next(s for s in json.loads(out.read_text())["shapes"]
             if s["N"] == r["N"] and s["K"] == r["K"] and s["dtype"] == r["dtype"])
    assert s["best"] == "assign/flash_simt" and s["picked_best"] is False and s["ratio"] < 0.1
    assert "note: assign/flash_simt" in p.stdout and "later.json replaces" in p.stdout


def test_heuristics_no_comparable_shape(tmp_path):
    doc = doc_of([
        row("assign/flash", N=1024, impl="assign/flash_mma"),  # no candidates
        row("assign/flash", N=2048, impl="assign/flash_mma"),
        row("assign/flash_mma", N=2048, status="out_of_memory"),  # no timed candidate
        row("assign/flash", N=4096, status="not_supported"),
        row("assign/flash_mma", N=4096, median=1.0),
        row("assign/flash", N=8192),  # no impl
        row("assign/flash_mma", N=8192, median=1.0),
        row("assign/flash_wgmma", N=16384, median=1.0),  # no dispatcher
    ])
    p = run("heuristics.py", write(tmp_path, "none.json", doc))
    assert p.returncode == 2 and p.stdout == "" and "no comparable shape" in p.stderr
    for why in ("1×1024×64×32 fp16 blobs seed 1: no assign/flash_* row",
                "1×2048×64×32 fp16 blobs seed 1: no timed assign/flash_* row (assign/flash_mma OOM)",
                "1×4096×64×32 fp16 blobs seed 1: assign/flash is n/s",
                "1×8192×64×32 fp16 blobs seed 1: the assign/flash row has no impl"):
        assert why in p.stderr
    assert "16384" not in p.stderr


@pytest.mark.parametrize("args", [["--min-median", "abc"], ["--min-ratio", "-0.5"], ["--min-ratio", "nan"], []])
def test_heuristics_bad_arguments(tmp_path, args):
    path = write(tmp_path, "h.json", heuristic_doc())
    p = run("heuristics.py", *([path] if args else []), *args)
    assert p.returncode == 2 and p.stdout == "" and "usage:" in p.stderr


def test_heuristics_unwritable_json(tmp_path):
    p = run("heuristics.py", write(tmp_path, "h.json", heuristic_doc()), "--min-median", "0", "--min-ratio", "0",
            "--json", tmp_path / "no" / "such" / "dir.json")
    assert p.returncode == 2 and "dir.json" in p.stderr


def test_plot_large_n(tmp_path):
    doc = json.loads((ROOT / "results/h100/paper/large_n.json").read_text())
    out = tmp_path / "p"
    p = run("plot.py", write(tmp_path, "large.json", doc), "--out", out, "--formats", "svg", "--h2d-gbps", "54")
    assert p.returncode == 0, p.stderr
    svg = (out / "large_n.svg").read_text()
    assert "H2D floor" in svg and "lloyd/flash" in svg
    p = run("plot.py", QUICK, "--out", tmp_path / "q", "--formats", "png")
    assert "skip large_n" in p.stdout
