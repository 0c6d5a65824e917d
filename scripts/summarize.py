#!/usr/bin/env python3
"""Print a results file as a short table: one line per run with its median,
rates and status. usage: summarize.py [--limit N] FILE [FILE ...]

A GPU row whose SM clock, measured just before and just after its samples
(timing.sm_clock_measured_mhz), fell more than 5 % during them or sat below
90 % of the device's max clock gets a warning line under it: its time was
taken on a throttled card and reads slower than the kernel is."""
import argparse
import json

THROTTLE_DROP = 0.05    # after-clock this much below the before-clock
THROTTLE_OF_MAX = 0.90  # either clock below this share of device.sm_clock_mhz


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def throttle_warning(run, max_mhz):
    """The warning line for a run timed on a throttled card, or None (also for rows
    without the measured clock: older files, CPU variants)."""
    clk = (run.get("timing") or {}).get("sm_clock_measured_mhz")
    if not isinstance(clk, dict):
        return None
    before, after = clk.get("before"), clk.get("after")
    if not (_number(before) and _number(after)) or before <= 0 or after <= 0:
        return None
    why = []
    if after < (1 - THROTTLE_DROP) * before:
        why.append(f"fell {100 * (1 - after / before):.0f} % during the samples")
    if _number(max_mhz) and max_mhz > 0 and min(before, after) < THROTTLE_OF_MAX * max_mhz:
        why.append(f"{100 * min(before, after) / max_mhz:.0f} % of the device's {max_mhz:.0f} MHz")
    if not why:
        return None
    return f"  warning: throttled while measured: SM clock {before:.0f} -> {after:.0f} MHz ({'; '.join(why)})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--limit", type=int, default=0, help="print at most N runs per file (0: all)")
    a = ap.parse_args()
    for path in a.files:
        with open(path) as f:
            doc = json.load(f)
        dev = doc.get("device", {})
        ceil = doc.get("ceilings") or {}
        print(f"# {path}: {dev.get('name', 'no GPU')}  copy {ceil.get('copy_gbps', 0):.0f} GB/s, "
              f"fp16 GEMM {ceil.get('gemm_fp16_tflops', 0):.0f} TFLOP/s")
        print(f"{'variant':26} {'BxNxKxD':22} {'dtype':5} {'data':7} {'median ms':>10} {'TFLOP/s':>8} {'GB/s':>7}  status")
        runs = doc["runs"]
        for r in runs[: a.limit] if a.limit else runs:
            shape = f"{r['B']}x{r['N']}x{r['K']}x{r['D']}"
            t = r.get("timing") or {}
            d = r.get("derived") or {}
            med = f"{t['median']:.4f}" if "median" in t else "-"
            tf = f"{d['tflops']:.1f}" if "tflops" in d else "-"
            gb = f"{d['gbps']:.0f}" if "gbps" in d else "-"
            print(f"{r['variant']:26} {shape:22} {r['dtype']:5} {r['data'][:7]:7} {med:>10} {tf:>8} {gb:>7}  {r['status']}")
            warning = throttle_warning(r, dev.get("sm_clock_mhz"))
            if warning:
                print(warning)
        if a.limit and len(runs) > a.limit:
            print(f"... {len(runs) - a.limit} more runs in {path}")


if __name__ == "__main__":
    main()
