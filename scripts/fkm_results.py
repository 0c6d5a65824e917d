"""Reading flashkm results files: the part that table.py, plot.py, compare.py and
heuristics.py share.

It reads only what results/SCHEMA.md documents. load() checks just enough
structure for those scripts to work (schema_version 1, runs[] with the shape
keys, numeric timing quartiles on ok runs); scripts/check_results.py is the
full check. The optional row keys `phases` and `fit` are read through
phases() and fit_history(), which give None for anything malformed. Anything else is a ResultsError with a one-line message, which the
scripts print before exiting 2."""
import json
import sys

SHAPE_KEYS = ("op", "B", "N", "K", "D", "dtype", "data", "seed")
STATUS_LABELS = {"not_supported": "n/s", "out_of_memory": "OOM", "incorrect": "incorrect", "error": "error"}
# Default baselines, most preferred first; otherwise the op's first variant with a timing.
PREFERRED_BASELINES = ("assign/cublas_gemm", "assign/naive", "update/atomic_scatter", "lloyd/cublas_atomic")
METRICS = {"median": ("median", "median ms"), "tflops": ("tflops", "TFLOP/s"), "gbps": ("gbps", "GB/s")}

_ROW_TYPES = {"variant": str, "op": str, "B": int, "N": int, "K": int, "D": int,
              "dtype": str, "data": str, "seed": int, "status": str}
_TIMING_NUMBERS = ("median", "q1", "q3", "rel_stdev")


class ResultsError(Exception):
    """A file that cannot be read as a flashkm results file; str() is one line."""


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load(path):
    """The parsed results document at path, or ResultsError."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise ResultsError(f"{path}: cannot read: {e.strerror or e}")
    except ValueError as e:
        raise ResultsError(f"{path}: not a flashkm results file (not JSON: {e})")
    if not isinstance(doc, dict) or "schema_version" not in doc or not isinstance(doc.get("runs"), list):
        raise ResultsError(f"{path}: not a flashkm results file (no schema_version and runs[])")
    if doc["schema_version"] != 1:
        raise ResultsError(f"{path}: schema_version {doc['schema_version']!r}; these scripts read 1")
    for i, run in enumerate(doc["runs"]):
        if not isinstance(run, dict):
            raise ResultsError(f"{path}: runs[{i}] is not an object")
        for key, typ in _ROW_TYPES.items():
            if not isinstance(run.get(key), typ) or isinstance(run.get(key), bool):
                raise ResultsError(f"{path}: runs[{i}].{key} is {run.get(key)!r}")
        t = run.get("timing")
        if run["status"] == "ok" and t is not None:
            if not isinstance(t, dict) or not all(_number(t.get(k)) for k in _TIMING_NUMBERS) or t["median"] <= 0:
                raise ResultsError(f"{path}: runs[{i}].timing lacks a positive median, q1, q3 or rel_stdev")
    return doc


def load_all_or_exit(paths):
    """[(path, doc)] for every path; on the first bad file prints its message and exits 2."""
    try:
        return [(p, load(p)) for p in paths]
    except ResultsError as e:
        print(e, file=sys.stderr)
        sys.exit(2)


def card(doc):
    dev = doc.get("device") or {}
    if not dev.get("present"):
        return "no GPU"
    return dev.get("name") or "unnamed GPU"


def cards_line(loaded):
    """'card: NAME (file)' or 'cards: A (f1, f2); B (f3)' for the loaded files."""
    by_card = {}
    for path, doc in loaded:
        by_card.setdefault(card(doc), []).append(str(path))
    parts = [f"{name} ({', '.join(paths)})" for name, paths in by_card.items()]
    return ("card: " if len(parts) == 1 else "cards: ") + "; ".join(parts)


def card_names(loaded):
    """The distinct card names, in file order, joined for a plot title."""
    return " / ".join(dict.fromkeys(card(doc) for _, doc in loaded))


def shape_of(run):
    return tuple(run[k] for k in SHAPE_KEYS)


def dims(shape):
    """'B×N×K×D' of a shape tuple."""
    _, b, n, k, d = shape[:5]
    return f"{b}×{n}×{k}×{d}"


def merge(loaded):
    """Rows of several files keyed (variant, shape) -> (run, path), in first-seen
    order; a later row for the same key replaces the earlier one and leaves a note,
    returned as (key, text) pairs."""
    rows, notes = {}, []
    for path, doc in loaded:
        for run in doc["runs"]:
            key = (run["variant"], shape_of(run))
            if key in rows:
                notes.append((key, f"{run['variant']} {dims(key[1])} {key[1][5]} {key[1][6]} seed {key[1][7]}: "
                             f"the row from {path} replaces the one from {rows[key][1]}"))
            rows[key] = (run, path)
    return rows, notes


def timing(run):
    """The run's timing object when it is ok and timed, else None."""
    t = run.get("timing")
    return t if run["status"] == "ok" and isinstance(t, dict) else None


def metric(run, name):
    """The run's value of a METRICS name, or None (not ok, untimed, or not derived)."""
    t = timing(run)
    if t is None:
        return None
    if name == "median":
        return t["median"]
    v = (run.get("derived") or {}).get(METRICS[name][0])
    return v if _number(v) else None


def phases(run):
    """[(name, median_ms)] of a timed run's `phases`, in run order; None when the run has
    no timing, no phases, or a phase without a name and a non-negative median_ms."""
    ph = run.get("phases")
    if timing(run) is None or not isinstance(ph, list) or not ph:
        return None
    out = []
    for p in ph:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not _number(p.get("median_ms")) \
                or p["median_ms"] < 0:
            return None
        out.append((p["name"], p["median_ms"]))
    return out


def fit_history(run):
    """The `fit` object's inertia_history of a fit row as a list of numbers, or None
    (no fit object, or an empty or non-numeric history)."""
    f = run.get("fit")
    h = f.get("inertia_history") if isinstance(f, dict) else None
    if not isinstance(h, list) or not h or not all(_number(x) for x in h):
        return None
    return h


def status_label(run):
    """What a run without a number shows: n/s, OOM, incorrect, error, or untimed."""
    return STATUS_LABELS.get(run["status"], "untimed" if run["status"] == "ok" else run["status"])


def default_baseline(timed_variants):
    """The first of PREFERRED_BASELINES among the variants that have a timing, else the first of them."""
    for v in PREFERRED_BASELINES:
        if v in timed_variants:
            return v
    return timed_variants[0] if timed_variants else None
