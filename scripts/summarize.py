#!/usr/bin/env python3
"""Print a results file as a short table: one line per run with its median,
rates and status. usage: summarize.py [--limit N] FILE [FILE ...]"""
import argparse
import json


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
        if a.limit and len(runs) > a.limit:
            print(f"... {len(runs) - a.limit} more runs in {path}")


if __name__ == "__main__":
    main()
