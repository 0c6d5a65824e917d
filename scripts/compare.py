#!/usr/bin/env python3
"""Compare two flashkm results files run by run: did anything get slower or stop validating?

Runs are matched by (variant, op, B, N, K, D, dtype, data, seed). For a run
that is ok and timed in both files:

    ratio = new.median / old.median
    bar   = max(threshold, 2 * (old.rel_stdev + new.rel_stdev))
    SLOWER  if ratio > 1 + bar and new.q1 > old.q3   (IQRs disjoint, new above)
    FASTER  if ratio < 1 - bar and new.q3 < old.q1   (IQRs disjoint, new below)
    SAME    otherwise

so a difference counts only when it exceeds both the threshold (default 0.05)
and twice the two runs' measured noise, and the interquartile ranges
[q1, q3] of the two sample sets do not overlap. Other verdicts:

    BROKEN   ok in OLD, incorrect or error in NEW (stopped validating)
    CHANGED  any other change of status, e.g. ok -> OOM, n/s -> ok, incorrect -> ok
    SAME     the same status other than ok on both sides (e.g. n/s and n/s)
    UNTIMED  ok on both sides but one has no timing (run with --profile)
    NEW      only in NEW;  GONE  only in OLD

Prints a Markdown table (old median, new median, new/old, the bar, the
verdict) and a count of each verdict. Within one file a later row for the same
key replaces an earlier one, as in table.py. Why: a check after every kernel
change that tells a real regression from noise, usable in scripts.

usage: compare.py OLD NEW [--threshold 0.05]
Exit status: 1 any SLOWER or BROKEN; 0 otherwise; 2 bad arguments or a file
that is not a results file."""
import argparse
import sys

import fkm_results as fr

FAILING = ("SLOWER", "BROKEN")


def verdict(old, new, threshold):
    """(verdict, ratio or None, bar or None) for one matched pair of runs."""
    if old["status"] != new["status"]:
        if old["status"] == "ok" and new["status"] in ("incorrect", "error"):
            return "BROKEN", None, None
        return "CHANGED", None, None
    if old["status"] != "ok":
        return "SAME", None, None
    to, tn = fr.timing(old), fr.timing(new)
    if not to or not tn:
        return "UNTIMED", None, None
    ratio = tn["median"] / to["median"]
    bar = max(threshold, 2 * (to["rel_stdev"] + tn["rel_stdev"]))
    if ratio > 1 + bar and tn["q1"] > to["q3"]:
        return "SLOWER", ratio, bar
    if ratio < 1 - bar and tn["q3"] < to["q1"]:
        return "FASTER", ratio, bar
    return "SAME", ratio, bar


def cell(run):
    if run is None:
        return ""
    t = fr.timing(run)
    return f"{t['median']:.4g}" if t else fr.status_label(run)


def compare(old_rows, new_rows, threshold):
    """[(key, old run or None, new run or None, verdict, ratio, bar)] in OLD's order, then NEW-only."""
    out = []
    for key in list(old_rows) + [k for k in new_rows if k not in old_rows]:
        old, new = old_rows.get(key, (None,))[0], new_rows.get(key, (None,))[0]
        if old is None:
            out.append((key, None, new, "NEW", None, None))
        elif new is None:
            out.append((key, old, None, "GONE", None, None))
        else:
            out.append((key, old, new) + verdict(old, new, threshold))
    return out


def report(old_path, old_doc, new_path, new_doc, results, threshold):
    lines = [f"old: {old_path} ({fr.card(old_doc)})", f"new: {new_path} ({fr.card(new_doc)})"]
    if fr.card(old_doc) != fr.card(new_doc):
        lines.append("warning: the files come from different cards")
    lines += [f"rule: SLOWER/FASTER when |new/old - 1| > bar = max({threshold:g}, 2·(old + new rel_stdev)) "
              "and the IQRs do not overlap", "",
              "| variant | op | B×N×K×D | dtype | data | seed | old ms | new ms | new/old | bar | verdict |",
              "|---|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for (variant, shape), old, new, v, ratio, bar in results:
        if v in ("BROKEN", "CHANGED"):
            v = f"{v} ({old['status']} → {new['status']})"
        cols = [variant, shape[0], fr.dims(shape), shape[5], shape[6].replace("|", "\\|"), str(shape[7]),
                cell(old), cell(new), "" if ratio is None else f"{ratio:.3f}", "" if bar is None else f"{bar:.3f}", v]
        lines.append("| " + " | ".join(cols) + " |")
    counts = {}
    for r in results:
        counts[r[3]] = counts.get(r[3], 0) + 1
    failing = sum(counts.get(v, 0) for v in FAILING)
    lines += ["", ", ".join(f"{v} {n}" for v, n in counts.items()) +
              (f": exit 1 ({failing} SLOWER or BROKEN)" if failing else ": exit 0")]
    return "\n".join(lines) + "\n", 1 if failing else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", metavar="OLD", help="the reference results file")
    ap.add_argument("new", metavar="NEW", help="the results file to judge")
    ap.add_argument("--threshold", type=float, default=0.05,
                    help="smallest relative difference that counts (default 0.05)")
    a = ap.parse_args()
    if not a.threshold >= 0:
        ap.error("--threshold must be >= 0")
    (old_path, old_doc), (new_path, new_doc) = fr.load_all_or_exit([a.old, a.new])
    old_rows, old_notes = fr.merge([(old_path, old_doc)])
    new_rows, new_notes = fr.merge([(new_path, new_doc)])
    results = compare(old_rows, new_rows, a.threshold)
    text, rc = report(old_path, old_doc, new_path, new_doc, results, a.threshold)
    sys.stdout.write(text)
    for _, note in old_notes + new_notes:
        print(f"- note: {note}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
