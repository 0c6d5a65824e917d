#!/usr/bin/env python3
"""Speedup tables, Markdown (default) or LaTeX, from flashkm results files.

One table per op (or only --op): a row per shape (op, B×N×K×D, dtype, data; the
seed too when it varies), a column per variant. A cell holds the variant's
--metric (median ms by default, or TFLOP/s or GB/s from `derived`) and its
speedup over the baseline on the same shape, baseline median / variant median
(higher is faster; the same whatever the metric). A run without a timing shows
its status, never a number: `incorrect`, `n/s` (not supported), `OOM`, `error`,
or `untimed` (an ok run made with --profile); an empty cell means no such run.

The baseline is --baseline VARIANT for its op; for every other op the first of
assign/cublas_gemm, assign/naive, update/atomic_scatter, lloyd/cublas_atomic
that has a timing, else the op's first variant that has one.

Several files are merged: a later file's row for the same (variant, shape)
replaces the earlier one, with a note under the tables; the card of each file is
stated above them. Why: one command from results files to the tables of
NOTES.md or a paper, with failed runs impossible to mistake for timings.

usage: table.py FILE [FILE ...] [--op assign|update|lloyd] [--metric median|tflops|gbps]
                [--baseline VARIANT] [--latex] [-o OUT]"""
import argparse
import sys

import fkm_results as fr


def fmt_value(x):
    return f"{x:.0f}" if x >= 1000 else f"{x:.4g}"


def fmt_speedup(s):
    if s >= 100:
        return f"{s:.0f}"
    return f"{s:.1f}" if s >= 10 else f"{s:.2f}" if s >= 0.095 else f"{s:.2g}"


def build(rows, op, metric, baseline):
    """(variants, shapes, cells) of one op's table: cells[i][j] is (value, speedup or None)
    for shape i and variant j, a status label, or None where there is no run."""
    keys = [k for k in rows if k[1][0] == op]
    variants = list(dict.fromkeys(v for v, _ in keys))
    shapes = list(dict.fromkeys(s for _, s in keys))
    cells = []
    for shape in shapes:
        base = rows.get((baseline, shape))
        base_t = fr.timing(base[0]) if base else None
        line = []
        for v in variants:
            if (v, shape) not in rows:
                line.append(None)
                continue
            run = rows[(v, shape)][0]
            value, t = fr.metric(run, metric), fr.timing(run)
            if value is None:
                line.append(fr.status_label(run) if t is None else "-")  # timed, but no derived rate
            else:
                line.append((value, base_t["median"] / t["median"] if base_t else None))
        cells.append(line)
    return variants, shapes, cells


def cell_text(cell, times):
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    value, speedup = cell
    return fmt_value(value) + ("" if speedup is None else f" ({fmt_speedup(speedup)}{times})")


def shape_cols(shape, show_seed):
    cols = [shape[0], fr.dims(shape), shape[5], shape[6]]
    return cols + [str(shape[7])] if show_seed else cols


def markdown(op, caption, variants, shapes, cells, show_seed):
    esc = lambda s: s.replace("|", "\\|")
    head = ["op", "B×N×K×D", "dtype", "data"] + (["seed"] if show_seed else []) + variants
    out = [f"**{op}**: {caption}", "",
           "| " + " | ".join(head) + " |",
           "|" + "---|" * (len(head) - len(variants)) + "---:|" * len(variants)]
    for shape, line in zip(shapes, cells):
        cols = shape_cols(shape, show_seed) + [cell_text(c, "×") for c in line]
        out.append("| " + " | ".join(esc(c) for c in cols) + " |")
    return out


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "×": r"$\times$"}


def latex_escape(s):
    return "".join(_LATEX.get(c, c) for c in s)


def latex(op, caption, variants, shapes, cells, show_seed, card_names):
    nshape = 5 if show_seed else 4
    head = ["op", r"$B{\times}N{\times}K{\times}D$", "dtype", "data"] + (["seed"] if show_seed else [])
    head += [r"\texttt{" + latex_escape(v) + "}" for v in variants]
    out = [r"\begin{table}[ht]", r"\centering",
           r"\caption{" + latex_escape(f"{op} on {card_names}: {caption}") + "}",
           r"\begin{tabular}{" + "l" * nshape + "r" * len(variants) + "}", r"\hline",
           " & ".join(head) + r" \\", r"\hline"]
    for shape, line in zip(shapes, cells):
        cols = shape_cols(shape, show_seed) + [cell_text(c, "×") for c in line]
        out.append(" & ".join(latex_escape(c) for c in cols) + r" \\")
    return out + [r"\hline", r"\end{tabular}", r"\end{table}"]


def render(loaded, op_filter=None, metric="median", baseline=None, as_latex=False):
    """The whole output as a string; raises ValueError with a one-line message on bad choices."""
    rows, notes = fr.merge(loaded)
    ops = list(dict.fromkeys(s[0] for _, s in rows))
    if op_filter:
        if op_filter not in ops:
            raise ValueError(f"no {op_filter} runs in the files (ops: {', '.join(ops) or 'none'})")
        ops = [op_filter]
    if baseline and not any(v == baseline and s[0] in ops for v, s in rows):
        variants = sorted({v for v, s in rows if s[0] in ops})
        raise ValueError(f"--baseline {baseline}: no such variant in the files (variants: {', '.join(variants)})")
    cards = fr.cards_line(loaded)
    out = [("% " if as_latex else "") + cards, ""]
    for op in ops:
        timed = list(dict.fromkeys(v for (v, s), (run, _) in rows.items() if s[0] == op and fr.timing(run)))
        base = baseline if baseline and any(v == baseline and s[0] == op for v, s in rows) else fr.default_baseline(timed)
        variants, shapes, cells = build(rows, op, metric, base)
        show_seed = len({s[7] for s in shapes}) > 1
        caption = fr.METRICS[metric][1] + (f" (speedup over {base}: its median / this median)" if base else " (no baseline has a timing)")
        if as_latex:
            out += latex(op, caption, variants, shapes, cells, show_seed, fr.card_names(loaded)) + [""]
        else:
            out += markdown(op, caption, variants, shapes, cells, show_seed) + [""]
    for key, note in notes:
        if key[1][0] in ops:
            out.append(("% note: " if as_latex else "- note: ") + note)
    return "\n".join(out).rstrip("\n") + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Cells: value (speedup×); incorrect, n/s, OOM, error, untimed for runs without a timing.")
    ap.add_argument("files", nargs="+", metavar="FILE", help="results files; later ones replace earlier rows")
    ap.add_argument("--op", metavar="OP", help="only this op: assign, update, lloyd (default: one table per op)")
    ap.add_argument("--metric", choices=tuple(fr.METRICS), default="median", help="the number in each cell (default median ms)")
    ap.add_argument("--baseline", metavar="VARIANT", help="speedups over this variant (default: cublas_gemm, naive, atomic_scatter, or the first timed)")
    ap.add_argument("--latex", action="store_true", help="LaTeX tabular instead of Markdown")
    ap.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    a = ap.parse_args()
    loaded = fr.load_all_or_exit(a.files)
    try:
        text = render(loaded, a.op, a.metric, a.baseline, a.latex)
    except ValueError as e:
        print(f"table.py: {e}", file=sys.stderr)
        return 2
    if a.output:
        try:
            with open(a.output, "w") as f:
                f.write(text)
        except OSError as e:
            print(f"table.py: {a.output}: {e.strerror or e}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
