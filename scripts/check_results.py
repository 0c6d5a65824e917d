#!/usr/bin/env python3
"""Check a flashkm results file against results/SCHEMA.md.

usage: check_results.py FILE [--expect-complete] [--expect-all-ok] [--min-runs N]

Exits 1 with one line per problem; used by CI on the smoke run and by the GPU
workflow on its results."""
import argparse
import json
import sys

STATUSES = {"ok", "not_supported", "out_of_memory", "incorrect", "error"}
ROW_KEYS = {"experiment": str, "variant": str, "op": str, "B": int, "N": int, "K": int, "D": int,
            "dtype": str, "data": str, "seed": int, "status": str, "wall_s": (int, float)}
TIMING_KEYS = ["unit", "clock", "samples", "median", "q1", "q3", "min", "max", "mean", "rel_stdev"]


def check(doc, expect_complete, expect_all_ok, min_runs):
    problems = []
    if doc.get("schema_version") != 1:
        problems.append(f"schema_version is {doc.get('schema_version')!r}, expected 1")
    if doc.get("state") not in ("running", "complete", "aborted"):
        problems.append(f"state is {doc.get('state')!r}")
    if expect_complete and doc.get("state") != "complete":
        problems.append(f"state is {doc.get('state')!r}, expected complete ({doc.get('abort_reason', '')})")
    for key in ("meta", "device"):
        if not isinstance(doc.get(key), dict):
            problems.append(f"{key} is missing or not an object")
    meta = doc.get("meta", {})
    for key in ("argv", "git", "config", "build", "time_utc"):
        if key not in meta:
            problems.append(f"meta.{key} is missing")
    runs = doc.get("runs")
    if not isinstance(runs, list):
        return problems + ["runs is missing or not an array"]
    if len(runs) < min_runs:
        problems.append(f"{len(runs)} runs, expected at least {min_runs}")
    for i, row in enumerate(runs):
        where = f"runs[{i}] ({row.get('variant')})"
        for key, typ in ROW_KEYS.items():
            if not isinstance(row.get(key), typ) or isinstance(row.get(key), bool):
                problems.append(f"{where}.{key} is {row.get(key)!r}")
        status = row.get("status")
        if status not in STATUSES:
            problems.append(f"{where}.status is {status!r}")
        if status != "ok" and not row.get("reason"):
            problems.append(f"{where}: status {status} without a reason")
        if expect_all_ok and status != "ok":
            problems.append(f"{where}: status {status}: {row.get('reason')}")
        if status == "ok":
            v = row.get("validation")
            if not isinstance(v, dict) or v.get("ok") is not True:
                problems.append(f"{where}: ok without a passing validation")
            t = row.get("timing")
            if t is None and not row.get("profiled"):
                problems.append(f"{where}: ok without timing")
            if isinstance(t, dict):
                for key in TIMING_KEYS:
                    if key not in t:
                        problems.append(f"{where}.timing.{key} is missing")
                if not (t.get("min", 0) <= t.get("q1", 0) <= t.get("median", 0) <= t.get("q3", 0) <= t.get("max", 0)):
                    problems.append(f"{where}.timing quantiles out of order")
                # optional (GPU rows of newer files): the SM clock measured before and after the samples
                clk = t.get("sm_clock_measured_mhz")
                if "sm_clock_measured_mhz" in t and not (isinstance(clk, dict) and all(
                        isinstance(clk.get(k), (int, float)) and not isinstance(clk.get(k), bool) and clk[k] > 0
                        for k in ("before", "after"))):
                    problems.append(f"{where}.timing.sm_clock_measured_mhz is {clk!r}, "
                                    "expected {\"before\": MHz, \"after\": MHz}")
                # optional (files written after it existed): how the L2 was emptied, only when it was
                if "flush_l2_method" in t and not (t.get("flush_l2") is True
                                                   and t["flush_l2_method"] in ("clean", "write")):
                    problems.append(f"{where}.timing.flush_l2_method is {t['flush_l2_method']!r} with "
                                    f"flush_l2 {t.get('flush_l2')!r}, expected \"clean\" or \"write\" "
                                    "and only on flushed rows")
                if not isinstance(row.get("derived"), dict):
                    problems.append(f"{where}.derived is missing")
            ph = row.get("phases")
            if ph is not None:
                if not isinstance(ph, list) or not ph:
                    problems.append(f"{where}.phases is {ph!r}")
                else:
                    for j, x in enumerate(ph):
                        if not (isinstance(x, dict) and isinstance(x.get("name"), str)
                                and isinstance(x.get("median_ms"), (int, float)) and x["median_ms"] >= 0):
                            problems.append(f"{where}.phases[{j}] is {x!r}")
        if status == "incorrect" and row.get("timing") is not None:
            problems.append(f"{where}: incorrect run carries timing")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--expect-complete", action="store_true")
    ap.add_argument("--expect-all-ok", action="store_true")
    ap.add_argument("--min-runs", type=int, default=1)
    a = ap.parse_args()
    try:
        with open(a.file) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{a.file}: {e}", file=sys.stderr)
        return 1
    problems = check(doc, a.expect_complete, a.expect_all_ok, a.min_runs)
    for p in problems:
        print(f"{a.file}: {p}", file=sys.stderr)
    if not problems:
        counts = {}
        for r in doc["runs"]:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        print(f"{a.file}: valid, {len(doc['runs'])} runs {counts}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
