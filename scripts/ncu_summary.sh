#!/usr/bin/env bash
# ncu_summary.sh — a short Nsight Compute table of every kernel that a config's
# --profile runs launch: duration, DRAM and SM throughput, tensor-pipe and
# occupancy figures, registers. Cheap (a handful of metrics, not --set full).
# usage: scripts/ncu_summary.sh FLASHKM_BINARY CONFIG [FILTER] > table.csv
set -euo pipefail
bin=${1:?usage: ncu_summary.sh FLASHKM_BINARY CONFIG [FILTER]}
cfg=${2:?usage: ncu_summary.sh FLASHKM_BINARY CONFIG [FILTER]}
filter=${3:-*}
metrics=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,\
sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,\
sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__grid_size,\
l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum,lts__t_bytes.sum,dram__bytes_read.sum
ncu --profile-from-start off --nvtx --metrics "$metrics" --csv --print-units base \
    "$bin" run "$cfg" --filter "$filter" --profile -q -o /tmp/ncu_profile.json 2>/dev/null |
  python3 -c '
import csv, sys
rows = [r for r in csv.reader(sys.stdin) if len(r) > 10]
if not rows:
    sys.exit("ncu_summary: ncu produced no rows")
head = rows[0]
ki, mi, vi, ni = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value"), head.index("ID")
per = {}
order = []
for r in rows[1:]:
    key = (r[ni], r[ki][:60])
    if key not in per:
        per[key] = {}
        order.append(key)
    per[key][r[mi]] = r[vi]
short = {"gpu__time_duration.sum": "us", "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram%",
         "sm__throughput.avg.pct_of_peak_sustained_elapsed": "sm%",
         "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": "tensor%",
         "sm__warps_active.avg.pct_of_peak_sustained_active": "occ%", "launch__registers_per_thread": "regs",
         "launch__grid_size": "grid", "lts__t_bytes.sum": "L2MB", "dram__bytes_read.sum": "dramRdMB"}
print("id,kernel," + ",".join(short.values()))
for key in order:
    m = per[key]
    vals = []
    for name, s in short.items():
        v = m.get(name, "")
        try:
            f = float(v.replace(",", ""))
            if s == "us": f /= 1e3
            if s in ("L2MB", "dramRdMB"): f /= 1e6
            v = "%.1f" % f
        except ValueError:
            pass
        vals.append(v)
    print(key[0] + "," + key[1].replace(",", ";") + "," + ",".join(vals))
'
