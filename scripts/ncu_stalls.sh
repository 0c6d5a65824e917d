#!/usr/bin/env bash
# ncu_stalls.sh — why a kernel is slow, in a few lines per launch: the busy
# share of the tensor, ALU, FMA and shared-memory pipes, the warp stall
# reasons (cycles per issued instruction, largest first) and the SASS lines
# where the sampled warps stalled most. For the launches of a config's
# --profile runs whose kernel name matches KERNEL_REGEX.
# usage: scripts/ncu_stalls.sh FLASHKM_BINARY CONFIG VARIANT_FILTER KERNEL_REGEX [TOP]
#   e.g. scripts/ncu_stalls.sh build/flashkm configs/profile.json assign/flash_wgmma flash_assign_kernel
set -euo pipefail
bin=${1:?usage: ncu_stalls.sh FLASHKM_BINARY CONFIG VARIANT_FILTER KERNEL_REGEX [TOP]}
cfg=${2:?config}
filter=${3:?variant filter}
kregex=${4:?kernel regex}
top=${5:-12}
command -v ncu >/dev/null || { echo "ncu_stalls: ncu (Nsight Compute) is not on PATH" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rep=$tmp/stalls
metrics="regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
metrics+=",sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
metrics+=",sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active"
metrics+=",sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"
metrics+=",sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active"
metrics+=",l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed"
metrics+=",lts__throughput.avg.pct_of_peak_sustained_elapsed"
metrics+=",smsp__issue_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,smsp__inst_executed.sum"
ncu --profile-from-start off --kernel-name "regex:$kregex" --metrics "$metrics" --section SourceCounters \
    --import-source no -o "$rep" -f "$bin" run "$cfg" --filter "$filter" --profile -q -o "$rep.json" >/dev/null
ncu --import "$rep.ncu-rep" --csv --page raw --print-units base |
  python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
head, units, data = rows[0], rows[1], rows[2:]
def col(name):
    return head.index(name) if name in head else None
for r in data:
    get = lambda n: r[col(n)].replace(",", "") if col(n) is not None else ""
    print("== %s  grid %s  %.1f us  %s warp-instructions" % (get("Kernel Name")[:70], get("Grid Size"),
          float(get("gpu__time_duration.sum") or 0) / 1e3, get("smsp__inst_executed.sum")))
    pipes = [("tensor", "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"),
             ("alu", "sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active"),
             ("fma", "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"),
             ("lsu", "sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active"),
             ("smem wavefronts", "l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed"),
             ("L2", "lts__throughput.avg.pct_of_peak_sustained_elapsed"),
             ("issue", "smsp__issue_active.avg.pct_of_peak_sustained_active")]
    print("   busy %: " + "  ".join("%s %s" % (n, get(m)) for n, m in pipes))
    st = []
    for i, h in enumerate(head):
        if h.startswith("smsp__average_warps_issue_stalled_") and h.endswith("_per_issue_active.ratio"):
            try:
                st.append((float(r[i].replace(",", "")), h[len("smsp__average_warps_issue_stalled_"):-len("_per_issue_active.ratio")]))
            except ValueError:
                pass
    st.sort(reverse=True)
    print("   stalls (cycles per issue): " + "  ".join("%s %.2f" % (n, v) for v, n in st[:8]))
'
# The SASS lines with the most stall samples, per launch (the source page of the report).
ncu --import "$rep.ncu-rep" --page source --print-source sass --csv 2>/dev/null |
  python3 -c '
import csv, sys
top = int(sys.argv[1])
rows = [r for r in csv.reader(sys.stdin)]
hdr = None
blocks = []
for r in rows:
    if "Source" in r and any("Sampling" in c for c in r):
        hdr = r; blocks.append([]); continue
    if hdr and len(r) == len(hdr):
        blocks[-1].append(r)
for bi, blk in enumerate(blocks):
    si = hdr.index("Source")
    sc = [i for i, c in enumerate(hdr) if c.startswith("Warp Stall Sampling (All")][0]
    num = lambda v: float(v.replace(",", "") or 0)
    tot = sum(num(r[sc]) for r in blk) or 1
    print("== launch %d: top stalled SASS lines (share of all samples)" % bi)
    for r in sorted(blk, key=lambda r: -num(r[sc]))[:top]:
        print("   %5.1f%%  %s" % (100 * num(r[sc]) / tot, r[si].strip()[:110]))
' "$top" || echo "(no source page in this ncu version)"
