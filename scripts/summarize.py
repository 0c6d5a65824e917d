#!/usr/bin/env python3
"""Print a results file as a short table: one line per run with its median,
rates and status. usage: summarize.py FILE [FILE ...]"""
import json
import sys


def main():
    for path in sys.argv[1:]:
        with open(path) as f:
            doc = json.load(f)
        dev = doc.get("device", {})
        ceil = doc.get("ceilings") or {}
        print(f"# {path}: {dev.get('name', 'no GPU')}  copy {ceil.get('copy_gbps', 0):.0f} GB/s, "
              f"fp16 GEMM {ceil.get('gemm_fp16_tflops', 0):.0f} TFLOP/s")
        print(f"{'variant':26} {'BxNxKxD':22} {'dtype':5} {'data':7} {'median ms':>10} {'TFLOP/s':>8} {'GB/s':>7}  status")
        for r in doc["runs"]:
            shape = f"{r['B']}x{r['N']}x{r['K']}x{r['D']}"
            t = r.get("timing") or {}
            d = r.get("derived") or {}
            med = f"{t['median']:.4f}" if "median" in t else "-"
            tf = f"{d['tflops']:.1f}" if "tflops" in d else "-"
            gb = f"{d['gbps']:.0f}" if "gbps" in d else "-"
            print(f"{r['variant']:26} {shape:22} {r['dtype']:5} {r['data'][:7]:7} {med:>10} {tf:>8} {gb:>7}  {r['status']}")


if __name__ == "__main__":
    main()
