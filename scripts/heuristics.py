#!/usr/bin/env python3
"""Heuristic vs autotune: how close does assign/flash's dispatch come to the best candidate?

assign/flash is a dispatcher: a heuristic on the shape picks one of the
assign/flash_* kernels (flash_mma, flash_mma_v1, flash_wgmma, flash_wgmma_bm256,
flash_simt; not the tf32 one, which rounds its inputs) and its row's `impl`
names the one it ran. An autotuner would
instead time every candidate on the shape and keep the fastest. For every
assign shape (B, N, K, D, dtype, data, seed) with a timed ok assign/flash row
and at least one timed ok candidate row:

    best      the candidate with the lowest median (among the timed ok ones)
    ratio     best median / assign/flash median (1.0: the heuristic did as well
              as an autotuner; below 1: slower by that factor; above 1: faster
              than every candidate that was measured, i.e. noise, or its pick
              was not measured)
    pick = best   whether the row's impl is that candidate
    tuning s  what an autotuner would have spent on the shape: the sum of the
              wall_s of every candidate row of it, failed ones included (wall_s
              covers the whole case: data, validation, samples, so it bounds
              the timing alone from above)

Prints a Markdown table, a row per shape sorted by N, K, D, and a summary: the
number of shapes, the median and the minimum ratio (with its shape), the share
of shapes where the pick is the best, and the tuning time the heuristic saves
(the sum over shapes). A dispatcher row whose SM clock (timing.sm_clock_measured_mhz)
fell by more than 10 % during its samples was timed on a throttling card: it gets a note,
and --min-ratio is checked on the shapes measured at a steady clock (the minimum over all
shapes is printed too). A shape with an assign/flash row that cannot be compared
(not timed, no impl, no timed candidate) is listed in a note. Several files are
merged as table.py does (a later file's row for the same variant and shape
replaces an earlier one); a shape whose rows come from different cards gets a
note. Why: a check that the dispatch heuristic loses little against autotuning
while costing no tuning time, usable in scripts.

usage: heuristics.py FILE [FILE ...] [--min-median 0.97] [--min-ratio 0.9] [--json OUT]
Exit status: 0 both thresholds met; 1 the median ratio is below --min-median or
the minimum below --min-ratio; 2 bad arguments, a file that is not a results
file, or no comparable shape."""
import argparse
import json
import math
import statistics
import sys

import fkm_results as fr

DISPATCHER = "assign/flash"
THROTTLED = 0.9  # a row whose SM clock ended below 90 % of where it started was throttled
CANDIDATE_PREFIX = "assign/flash_"


def is_candidate(variant):
    return variant.startswith(CANDIDATE_PREFIX)


def is_exact(run):
    """Rows of a variant that rounds its inputs (assign/flash_tf32: "compute": "tf32")
    are no candidates: the dispatcher only picks exact implementations."""
    return run.get("compute", "exact") == "exact"


def shape_text(shape):
    """'B×N×K×D dtype data seed S' of an assign shape tuple."""
    return f"{fr.dims(shape)} {shape[5]} {shape[6]} seed {shape[7]}"


def sort_key(shape):
    _, b, n, k, d, dtype, data, seed = shape
    return (n, k, d, b, dtype, data, seed)


def clock_of(run):
    """(before, after) MHz of a timed row's measured SM clock, or None (older files)."""
    c = (fr.timing(run) or {}).get("sm_clock_measured_mhz")
    if isinstance(c, dict) and all(isinstance(c.get(k), (int, float)) for k in ("before", "after")):
        return c["before"], c["after"]
    return None


def incomparable(heur, cands, timed):
    """Why a shape with a dispatcher row cannot be compared, or None when it can."""
    if fr.timing(heur) is None:
        return f"{DISPATCHER} is {fr.status_label(heur)}"
    if not isinstance(heur.get("impl"), str) or not heur["impl"]:
        return f"the {DISPATCHER} row has no impl"
    if not cands:
        return f"no {CANDIDATE_PREFIX}* row"
    if not timed:
        return f"no timed {CANDIDATE_PREFIX}* row (" + \
            ", ".join(f"{v} {fr.status_label(run)}" for v, (run, _) in sorted(cands.items())) + ")"
    return None


def analyse(loaded):
    """(per-shape results, notes) of the loaded files: a dict per comparable shape,
    sorted by N, K, D, and one-line notes on merges, skipped shapes and mixed cards."""
    rows, merged = fr.merge(loaded)
    card_of = {path: fr.card(doc) for path, doc in loaded}
    notes = [text for (v, _), text in merged if v == DISPATCHER or is_candidate(v)]
    by_shape = {}  # assign shape -> {variant: (run, path)} of the dispatcher and the candidates
    for (v, s), hit in rows.items():
        if s[0] == "assign" and (v == DISPATCHER or (is_candidate(v) and is_exact(hit[0]))):
            by_shape.setdefault(s, {})[v] = hit
    results = []
    for shape in sorted(by_shape, key=sort_key):
        found = by_shape[shape]
        if DISPATCHER not in found:
            continue  # candidates alone: nothing to compare with
        heur, heur_path = found[DISPATCHER]
        ht = fr.timing(heur)
        cands = {v: hit for v, hit in found.items() if is_candidate(v)}
        timed = {v: fr.timing(run)["median"] for v, (run, _) in cands.items() if fr.timing(run)}
        why = incomparable(heur, cands, timed)
        if why:
            notes.append(f"skip {shape_text(shape)}: {why}")
            continue
        best = min(timed, key=timed.get)
        impl = heur["impl"]
        cards = list(dict.fromkeys(card_of[p] for _, p in [found[DISPATCHER]] + list(cands.values())))
        if len(cards) > 1:
            notes.append(f"{shape_text(shape)}: rows from different cards ({', '.join(cards)})")
        if impl not in timed:
            notes.append(f"{shape_text(shape)}: the heuristic's pick {impl} has no timed row, so it cannot be the best")
        walls = [run.get("wall_s") for run, _ in cands.values()]
        clock = clock_of(heur)
        throttled = clock is not None and clock[1] < THROTTLED * clock[0]
        if throttled:
            notes.append(f"{shape_text(shape)}: the {DISPATCHER} row's SM clock fell {clock[0]:.0f} -> "
                         f"{clock[1]:.0f} MHz during its samples (throttled): its ratio measures the clock")
        results.append({
            "B": shape[1], "N": shape[2], "K": shape[3], "D": shape[4],
            "dtype": shape[5], "data": shape[6], "seed": shape[7],
            "impl": impl, "heuristic_ms": ht["median"],
            "best": best, "best_ms": timed[best],
            "ratio": timed[best] / ht["median"],
            "picked_best": impl == best,
            "pick_measured": impl in timed,
            "candidates": {v: timed.get(v, fr.status_label(run)) for v, (run, _) in sorted(cands.items())},
            "throttled": throttled,
            "tuning_s": sum(w for w in walls if isinstance(w, (int, float)) and not isinstance(w, bool)),
            "heuristic_file": str(heur_path),
        })
    return results, notes


def shape_of_result(r):
    return ("assign", r["B"], r["N"], r["K"], r["D"], r["dtype"], r["data"], r["seed"])


def summarize(results, min_median, min_ratio):
    """The summary dict: counts, median and minimum ratio, share of best picks, tuning time,
    and the thresholds missed (empty when both are met)."""
    ratios = [r["ratio"] for r in results]
    worst = min(results, key=lambda r: r["ratio"])
    picked = sum(r["picked_best"] for r in results)
    s = {"shapes": len(results), "median_ratio": statistics.median(ratios), "min_ratio": worst["ratio"],
         "min_ratio_shape": shape_text(shape_of_result(worst)), "picked_best": picked,
         "picked_best_share": picked / len(results), "tuning_s": sum(r["tuning_s"] for r in results),
         "min_median": min_median, "min_ratio_threshold": min_ratio, "failed": []}
    if s["median_ratio"] < min_median:
        s["failed"].append(f"median best/heuristic {s['median_ratio']:.3f} < --min-median {min_median:g}")
    steady = [r for r in results if not r["throttled"]] or results
    worst_steady = min(steady, key=lambda r: r["ratio"])
    s["steady_shapes"] = len(steady)
    s["min_ratio_steady"] = worst_steady["ratio"]
    s["min_ratio_steady_shape"] = shape_text(shape_of_result(worst_steady))
    if s["min_ratio_steady"] < min_ratio:
        s["failed"].append(f"minimum best/heuristic {s['min_ratio_steady']:.3f} ({s['min_ratio_steady_shape']}) "
                           f"< --min-ratio {min_ratio:g}")
    return s


def fmt_ms(x):
    return f"{x:.4g}"


def render(loaded, results, notes, s):
    show_seed = len({r["seed"] for r in results}) > 1
    head = ["B×N×K×D", "dtype", "data"] + (["seed"] if show_seed else []) + \
        ["heuristic pick", "heuristic ms", "best candidate", "best ms", "best/heuristic", "pick = best",
         "candidates timed", "tuning s"]
    out = [fr.cards_line(loaded), "",
           f"**assign**: {DISPATCHER} (heuristic dispatch) against the fastest {CANDIDATE_PREFIX}* candidate "
           "(autotune); best/heuristic = best median / heuristic median", "",
           "| " + " | ".join(head) + " |",
           "|" + "---|" * (4 if show_seed else 3) + "---|---:|---|---:|---:|---|---:|---:|"]
    for r in results:
        timed = sum(not isinstance(m, str) for m in r["candidates"].values())
        pick = "yes" if r["picked_best"] else "no" if r["pick_measured"] else "no (pick not measured)"
        cols = [f"{r['B']}×{r['N']}×{r['K']}×{r['D']}", r["dtype"], r["data"]] + \
            ([str(r["seed"])] if show_seed else []) + \
            [r["impl"], fmt_ms(r["heuristic_ms"]), r["best"], fmt_ms(r["best_ms"]), f"{r['ratio']:.3f}", pick,
             f"{timed} of {len(r['candidates'])}", f"{r['tuning_s']:.3g}"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |")
    verdict = lambda missed: "MISSED" if missed else "met"
    out += ["",
            f"- shapes: {s['shapes']}",
            f"- median best/heuristic: {s['median_ratio']:.3f} "
            f"(--min-median {s['min_median']:g}: {verdict(s['median_ratio'] < s['min_median'])})",
            f"- minimum best/heuristic: {s['min_ratio']:.3f} at {s['min_ratio_shape']}" +
            (f" (--min-ratio {s['min_ratio_threshold']:g}: {verdict(s['min_ratio'] < s['min_ratio_threshold'])})"
             if s["steady_shapes"] == s["shapes"] else
             f"; over the {s['steady_shapes']} shapes timed at a steady clock: {s['min_ratio_steady']:.3f} at "
             f"{s['min_ratio_steady_shape']} (--min-ratio {s['min_ratio_threshold']:g}: "
             f"{verdict(s['min_ratio_steady'] < s['min_ratio_threshold'])})"),
            f"- heuristic picked the best candidate: {s['picked_best']} of {s['shapes']} "
            f"({100 * s['picked_best_share']:.0f}%)",
            f"- tuning time saved: {s['tuning_s']:.3g} s (the candidates' wall_s, summed over the shapes)"]
    out += [f"- note: {n}" for n in notes]
    out += [f"FAIL: {f}" for f in s["failed"]]
    return "\n".join(out) + "\n"


def threshold(text):
    x = float(text)
    if not math.isfinite(x) or x < 0:
        raise ValueError(text)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="ratio = best candidate median / assign/flash median; exit 1 when a "
                                        "threshold is missed, 2 on bad input or no comparable shape.")
    ap.add_argument("files", nargs="+", metavar="FILE", help="results files; later ones replace earlier rows")
    ap.add_argument("--min-median", type=threshold, default=0.97, metavar="R",
                    help="fail when the median ratio is below R (default 0.97)")
    ap.add_argument("--min-ratio", type=threshold, default=0.9, metavar="R",
                    help="fail when any shape's ratio is below R (default 0.9)")
    ap.add_argument("--json", metavar="OUT", help="also write the per-shape data and the summary here as JSON")
    a = ap.parse_args()
    loaded = fr.load_all_or_exit(a.files)
    results, notes = analyse(loaded)
    if not results:
        print(f"heuristics.py: no comparable shape: none has a timed {DISPATCHER} row with an impl and a timed "
              f"{CANDIDATE_PREFIX}* row" + "".join(f"\n  {n}" for n in notes), file=sys.stderr)
        return 2
    s = summarize(results, a.min_median, a.min_ratio)
    sys.stdout.write(render(loaded, results, notes, s))
    if a.json:
        doc = {"cards": fr.cards_line(loaded), "files": [str(p) for p, _ in loaded],
               "shapes": results, "summary": s, "notes": notes}
        try:
            with open(a.json, "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
        except OSError as e:
            print(f"heuristics.py: {a.json}: {e.strerror or e}", file=sys.stderr)
            return 2
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
