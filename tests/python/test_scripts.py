"""Tests of the results scripts (table.py, plot.py, compare.py, check_results.py)
on the committed H100 results and on synthetic files made from them: no GPU,
no build needed. Each script runs as a subprocess, as a user would run it.
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
CELL = re.compile(r"^([0-9.]+) \(([0-9.]+)×\)$")


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
    if status in ("not_supported", "out_of_memory"):
        r["validation"] = None
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


def check_number_cell(cell, value, speedup=None):
    """cell is 'value (speedup×)' with value to 4 significant digits and speedup to 2."""
    m = CELL.match(cell)
    assert m, cell
    assert float(m.group(1)) == pytest.approx(value, rel=6e-4), cell
    if speedup is not None:
        assert float(m.group(2)) == pytest.approx(speedup, rel=0.03, abs=0.006), cell


def baseline_of(doc, r):
    base = BASELINES.get(r["op"])
    return next((b for b in ok_runs(doc, r["op"]) if b["variant"] == base and same_shape(b, r)), None)


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
        naive = next(b for b in ok_runs(doc, "assign") if b["variant"] == "assign/naive" and same_shape(b, r))
        check_number_cell(md_cell(text, r), r["derived"]["tflops"], naive["timing"]["median"] / r["timing"]["median"])


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


@pytest.mark.parametrize("script", ["table.py", "plot.py", "compare.py"])
def test_not_a_results_file(tmp_path, script):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    for path in (bad, ROOT / "README.md", tmp_path / "missing.json"):
        p = run(script, *([QUICK, path] if script == "compare.py" else [path]))
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.strip().count("\n") == 0 and str(path) in p.stderr, p.stderr
    assert "not a flashkm results file" in run(script, *([QUICK, bad] if script == "compare.py" else [bad])).stderr


@pytest.mark.parametrize("script", ["table.py", "plot.py", "compare.py"])
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


def test_plots_bad_format(tmp_path):
    p = run("plot.py", QUICK, "--out", tmp_path, "--formats", "png,bmp")
    assert p.returncode == 2 and "--formats" in p.stderr


# --- compare.py -----------------------------------------------------------------------------

def verdicts(stdout):
    """The table rows of compare.py's output, as lists of cells."""
    rows = [l for l in stdout.splitlines() if l.startswith("| ") and not l.startswith("| variant")]
    return [[c.strip() for c in l.strip("|").split("|")] for l in rows]


def is_row_of(row, r):
    return row[0] == r["variant"] and row[2] == dims(r) and row[4] == r["data"]


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
