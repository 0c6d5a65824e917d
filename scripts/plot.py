#!/usr/bin/env python3
"""Plots of flashkm results files, headless (matplotlib Agg), into a folder.

- speedup_<op>: bars per shape, one per variant, of the speedup over the
  baseline (baseline median / variant median, log scale); a run without a
  timing is marked with its status (incorrect, n/s, OOM, error) instead of a bar.
- time_vs_N_*, time_vs_K_*: median time against N or K (log-log), a line per
  variant, for every sweep with at least two values of that axis while the
  other shape keys (op, B, N or K, D, dtype, data, seed) stay fixed.
- roofline (roofline_<card> with several cards): TFLOP/s against arithmetic
  intensity (derived flops / bytes) under the measured ceilings of the file,
  ceilings.copy_gbps and ceilings.gemm_fp16_tflops.
- phases_<op>: for every op with rows that carry `phases` (update/sort_inverse*:
  sort, reduce; lloyd/*: assign, update, converge; fit/*: init, iterations),
  a horizontal bar per variant and shape, split into its phases' median ms
  (linear scale); a segment wide enough to read is labelled with its ms, each
  bar with the phases' sum.
- fit_convergence: the inertia after each Lloyd iteration of every fit row
  (fit.inertia_history, log scale), a line per variant and shape.
- large_n: time per Lloyd iteration against N where K = round(sqrt N) (the
  paper's large-N sweep), with --h2d-gbps the floor of streaming the points
  from host memory once per iteration.

A plot whose data are absent (no sweep, no ceilings, no timed run, no row with
phases, no fit row) is skipped with a message. Several files are merged as
table.py does (a later file's row for the same variant and shape replaces an
earlier one). Every plot's title names the card. Why: the figures of NOTES.md and papers from the results files
alone, on machines without a display.

usage: plot.py FILE [FILE ...] [--out DIR] [--formats png,svg] [--baseline VARIANT]
Exit status: 0 at least one plot written; 1 nothing to plot; 2 bad arguments or file."""
import argparse
import math
import os
import re
import sys

try:
    import matplotlib
except ImportError:
    print(f"plot.py: {sys.executable} has no matplotlib (Debian: apt-get install python3-matplotlib, "
          "then run /usr/bin/python3 scripts/plot.py)", file=sys.stderr)
    sys.exit(2)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import matplotlib.ticker  # noqa: E402

import fkm_results as fr  # noqa: E402

FORMATS = ("png", "svg", "pdf")


def slug(s):
    return re.sub(r"[^A-Za-z0-9.-]+", "_", s).strip("_")


class Saver:
    def __init__(self, out, formats):
        self.out, self.formats, self.written = out, formats, []

    def save(self, fig, name):
        for ext in self.formats:
            path = os.path.join(self.out, f"{name}.{ext}")
            fig.savefig(path, dpi=120, bbox_inches="tight")
            self.written.append(path)
            print(f"wrote {path}")
        plt.close(fig)


def skip(what, why):
    print(f"skip {what}: {why}")


def speedup_plots(rows, baseline_arg, title_card, saver):
    for op in dict.fromkeys(s[0] for _, s in rows):
        keys = [k for k in rows if k[1][0] == op]
        variants = list(dict.fromkeys(v for v, _ in keys))
        shapes = list(dict.fromkeys(s for _, s in keys))
        timed = [v for v in variants if any(fr.timing(rows[(v, s)][0]) for s in shapes if (v, s) in rows)]
        base = baseline_arg if baseline_arg in variants else fr.default_baseline(timed)
        base_t = {s: fr.timing(rows[(base, s)][0]) for s in shapes if (base, s) in rows}
        if not any(base_t.values()):
            skip(f"speedup_{op}", "no baseline timing")
            continue
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(shapes) * max(1, len(variants) / 3)), 4.5))
        width = 0.8 / len(variants)
        for j, v in enumerate(variants):
            xs, ys = [], []
            for i, s in enumerate(shapes):
                x = i - 0.4 + (j + 0.5) * width
                run = rows.get((v, s), (None,))[0]
                t = fr.timing(run) if run else None
                if t and base_t.get(s):
                    xs.append(x)
                    ys.append(base_t[s]["median"] / t["median"])
                elif run is not None:
                    label = fr.status_label(run) if not t else "no baseline"
                    ax.text(x, 0.02, label, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                            rotation=90, fontsize=8, color="red")
            ax.bar(xs, ys, width, label=v)
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([f"{fr.dims(s)}\n{s[5]} {s[6]}" for s in shapes], fontsize=8)
        ax.set_ylabel(f"speedup over {base} (×)")
        ax.set_title(f"{op}: speedup over {base} — {title_card}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        saver.save(fig, f"speedup_{op}")


def sweep_plots(rows, axis, title_card, saver):
    """Median time against axis ('N' or 'K') for every group of shapes that differ only in it."""
    ai = fr.SHAPE_KEYS.index(axis)
    groups = {}  # fixed shape (axis value None) -> variant -> {axis value: median}
    for (v, s), (run, _) in rows.items():
        t = fr.timing(run)
        if t:
            fixed = s[:ai] + (None,) + s[ai + 1:]
            groups.setdefault(fixed, {}).setdefault(v, {})[s[ai]] = t["median"]
    plotted = 0
    for fixed, by_variant in groups.items():
        lines = {v: pts for v, pts in by_variant.items() if len(pts) >= 2}
        if not lines:
            continue
        others = " ".join(f"{k}={fixed[i]}" for i, k in enumerate(fr.SHAPE_KEYS) if k != axis and k != "op")
        name = "_".join([f"time_vs_{axis}", fixed[0]] + [f"{k}{fixed[i]}" if k in "BNKD" else str(fixed[i])
                                                          for i, k in enumerate(fr.SHAPE_KEYS) if k not in (axis, "op", "seed")])
        name += f"_seed{fixed[-1]}"
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for v, pts in lines.items():
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], marker="o", label=v)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({x for pts in lines.values() for x in pts})
        ax.set_xticks(ticks, [str(x) for x in ticks], minor=False)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel(axis)
        ax.set_ylabel("median time (ms)")
        ax.set_title(f"{fixed[0]}: time vs {axis} ({others})\n{title_card}", fontsize=10)
        ax.legend(fontsize=8)
        saver.save(fig, slug(name))
        plotted += 1
    if not plotted:
        skip(f"time vs {axis}", f"no sweep with ≥ 2 values of {axis} and the other shape keys fixed")


def roofline_plots(loaded, rows, saver):
    cards = list(dict.fromkeys(fr.card(doc) for _, doc in loaded))
    for name in cards:
        what = "roofline" if len(cards) == 1 else f"roofline_{slug(name)}"
        paths = {p for p, doc in loaded if fr.card(doc) == name}
        ceil = next((doc["ceilings"] for p, doc in loaded if p in paths and isinstance(doc.get("ceilings"), dict)
                     and doc["ceilings"].get("copy_gbps") and doc["ceilings"].get("gemm_fp16_tflops")), None)
        if ceil is None:
            skip(what, f"no ceilings in the results of {name}")
            continue
        points = {}
        for (v, _), (run, path) in rows.items():
            d = run.get("derived") or {}
            if path in paths and fr.timing(run) and d.get("flops") and d.get("bytes") and d.get("tflops"):
                points.setdefault(v, []).append((d["flops"] / d["bytes"], d["tflops"]))
        if not points:
            skip(what, f"no timed run with derived flops and bytes on {name}")
            continue
        bw, peak = ceil["copy_gbps"], ceil["gemm_fp16_tflops"]  # GB/s × flop/byte / 1000 = TFLOP/s
        ridge = peak * 1000 / bw
        xs_all = [x for pts in points.values() for x, _ in pts]
        lo, hi = min(min(xs_all), ridge) / 4, max(max(xs_all), ridge) * 4
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.plot([lo, ridge], [lo * bw / 1000, peak], "k--", linewidth=1, label=f"copy {bw:.0f} GB/s")
        ax.plot([ridge, hi], [peak, peak], "k-", linewidth=1, label=f"fp16 GEMM {peak:.0f} TFLOP/s")
        for v, pts in points.items():
            ax.scatter([x for x, _ in pts], [y for _, y in pts], label=v, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (flop / byte)")
        ax.set_ylabel("TFLOP/s")
        ax.set_title(f"roofline — {name}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        saver.save(fig, what)


def shape_label(s, show_seed):
    """'B×N×K×D dtype data' of a shape tuple, with ' seed S' when show_seed."""
    return f"{fr.dims(s)} {s[5]} {s[6]}" + (f" seed {s[7]}" if show_seed else "")


def phase_plots(rows, title_card, saver):
    """A stacked horizontal bar of the phases' medians per (variant, shape), one figure per op."""
    by_op = {}  # op -> [(variant, shape, [(name, ms)])], in merged order
    for (v, s), (run, _) in rows.items():
        ph = fr.phases(run)
        if ph:
            by_op.setdefault(s[0], []).append((v, s, ph))
    if not by_op:
        skip("phases", "no timed run has phases")
        return
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for op, bars in by_op.items():
        names = list(dict.fromkeys(n for _, _, ph in bars for n, _ in ph))
        show_seed = len({s[7] for _, s, _ in bars}) > 1
        totals = [sum(ms for _, ms in ph) for _, _, ph in bars]
        widest = max(totals) or 1.0
        fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(bars)))
        ys = range(len(bars))
        spans = []  # per bar: phase name -> (start, ms)
        for _, _, ph in bars:
            start, span = 0.0, {}
            for name, ms in ph:
                span[name] = (start, ms)
                start += ms
            spans.append(span)
        for j, name in enumerate(names):
            left = [span.get(name, (0.0, 0.0))[0] for span in spans]
            width = [span.get(name, (0.0, 0.0))[1] for span in spans]
            bc = ax.barh(ys, width, left=left, height=0.6, label=name, color=colors[j % len(colors)])
            ax.bar_label(bc, labels=[f"{w:.3g}" if w >= 0.07 * widest else "" for w in width],
                         label_type="center", fontsize=7, color="white")
        for y, total in zip(ys, totals):
            ax.text(total, y, f" {total:.3g} ms", va="center", fontsize=7)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([f"{v}  {shape_label(s, show_seed)}" for v, s, _ in bars], fontsize=8)
        ax.invert_yaxis()  # first row on top
        ax.set_xlim(0, widest * 1.18)
        ax.set_xlabel("median time per phase (ms)")
        ax.set_title(f"{op}: time per phase — {title_card}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        saver.save(fig, f"phases_{op}")


def fit_plot(rows, title_card, saver):
    """Inertia after each iteration of every fit row, log y."""
    lines = []
    for (v, s), (run, _) in rows.items():
        h = fr.fit_history(run) if s[0] == "fit" else None
        pts = [(i + 1, y) for i, y in enumerate(h or []) if y > 0]  # log scale: inertia 0 left out
        if pts:
            lines.append((v, s, run, len(h), pts))
    if not lines:
        skip("fit_convergence", "no fit row with an inertia_history")
        return
    show_seed = len({s[7] for _, s, _, _, _ in lines}) > 1
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v, s, run, iterations, pts in lines:
        f = run["fit"]
        how = f"{iterations} it" + (", converged" if f.get("converged") is True else
                                   ", not converged" if f.get("converged") is False else "")
        if run["status"] != "ok":
            how += f", {fr.status_label(run)}"
        marker = "o" if len(pts) <= 30 else None
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, markersize=3,
                label=f"{v} {shape_label(s, show_seed)} ({how})")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("Lloyd iteration")
    ax.set_ylabel("inertia (sum of squared distances)")
    ax.set_title(f"fit: inertia per iteration — {title_card}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    saver.save(fig, "fit_convergence")


def large_n_plot(rows, h2d_gbps, title_card, saver):
    """Time per Lloyd iteration against N where K = round(sqrt(N)) (the paper's large-N
    sweep), a line per variant, with the floor of streaming X once per iteration from
    host memory at h2d_gbps (when given): N * D * bytes per element / bandwidth."""
    pts = {}
    dims = set()
    for (v, s), (run, _) in rows.items():
        op, b, n, k, d, dtype = s[:6]
        t = fr.timing(run)
        if t and op == "lloyd" and b == 1 and n >= 65536 and k == round(math.sqrt(n)):
            pts.setdefault(v, {})[n] = t["median"]
            dims.add((d, dtype))
    lines = {v: p for v, p in pts.items() if len(p) >= 2}
    if not lines:
        skip("large_n", "no Lloyd sweep with K = sqrt(N) over at least two N")
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for v, p in sorted(lines.items()):
        xs = sorted(p)
        ax.plot(xs, [p[x] for x in xs], marker="o", label=v)
    ns = sorted({n for p in lines.values() for n in p})
    if h2d_gbps and len(dims) == 1:
        d, dtype = next(iter(dims))
        es = {"fp16": 2, "bf16": 2, "fp32": 4}.get(dtype, 2)
        ax.plot(ns, [n * d * es / (h2d_gbps * 1e9) * 1e3 for n in ns], "k--", linewidth=1,
                label=f"H2D floor, out of core ({h2d_gbps:g} GB/s)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N (K = sqrt N)")
    ax.set_ylabel("median time per iteration (ms)")
    ax.set_title(f"large N: one Lloyd iteration, K = sqrt(N)\n{title_card}", fontsize=10)
    ax.legend(fontsize=8)
    saver.save(fig, "large_n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Writes speedup_<op>, time_vs_N_*, time_vs_K_*, roofline, phases_<op>, "
                                        "fit_convergence and large_n in each format.")
    ap.add_argument("files", nargs="+", metavar="FILE", help="results files; later ones replace earlier rows")
    ap.add_argument("--out", default="plots", metavar="DIR", help="output folder, created if needed (default plots/)")
    ap.add_argument("--formats", default="png,svg", help=f"comma-separated, of {', '.join(FORMATS)} (default png,svg)")
    ap.add_argument("--baseline", metavar="VARIANT", help="speedups over this variant (default as in table.py)")
    ap.add_argument("--h2d-gbps", type=float, metavar="GB/S",
                    help="pinned host-to-device bandwidth for the large-N plot's out-of-core floor "
                         "(measured: `flashkm fit --chunk-points`, scripts/stream_sweep.sh)")
    a = ap.parse_args()
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        print(f"plot.py: --formats {a.formats!r}: choose from {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    loaded = fr.load_all_or_exit(a.files)
    rows, notes = fr.merge(loaded)
    for _, note in notes:
        print(f"note: {note}")
    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        print(f"plot.py: {a.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    saver = Saver(a.out, formats)
    title_card = fr.card_names(loaded)
    speedup_plots(rows, a.baseline, title_card, saver)
    sweep_plots(rows, "N", title_card, saver)
    sweep_plots(rows, "K", title_card, saver)
    roofline_plots(loaded, rows, saver)
    phase_plots(rows, title_card, saver)
    fit_plot(rows, title_card, saver)
    large_n_plot(rows, a.h2d_gbps, title_card, saver)
    if not saver.written:
        print("plot.py: nothing to plot", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
