#!/usr/bin/env bash
# reproduce.sh — runs every paper config on this machine's GPU (assign_kernel,
# update_kernel, end_to_end, large_n, heuristics), the out-of-core sweep, the
# public implementations where their packages are installed, and with two or
# more GPUs the multi-GPU config; then renders the tables (Markdown), the
# heuristic-vs-autotune table and the plots.
# usage: scripts/reproduce.sh [OUTDIR]     (default results/latest/paper)
# env:   SWEEP="20 24 26"  log2 N of the out-of-core sweep ("" skips it)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/latest/paper}
bash scripts/setup.sh || exit 1
mkdir -p "$out"
rc=0
export FKM_AUTOTUNE_CACHE=off # the heuristic, not a local cache, is what the paper's tables compare
for cfg in configs/paper/*.json; do
  name=$(basename "$cfg" .json)
  echo "=== $cfg" >&2
  ./build/flashkm run "$cfg" -o "$out/$name.json" || rc=1
done
if [ -n "${SWEEP-20 24 26}" ]; then
  echo "=== out-of-core sweep" >&2
  # shellcheck disable=SC2086
  bash scripts/stream_sweep.sh ./build/flashkm "$out/stream" ${SWEEP-20 24 26} || rc=1
fi
echo "=== peers (rows say not_supported where a package is missing)" >&2
python3 scripts/peers/run_peers.py --flashkm ./build/flashkm -o "$out/peers.json" -q || rc=1
if [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" -ge 2 ]; then
  echo "=== configs/dist.json" >&2
  ./build/flashkm run configs/dist.json -o "$out/dist.json" || rc=1
fi
py=python3
python3 -c "import matplotlib" 2>/dev/null || py=/usr/bin/python3
"$py" scripts/heuristics.py "$out/heuristics.json" >"$out/heuristics.md" || rc=1
for f in "$out"/*.json; do
  "$py" scripts/table.py "$f" >"${f%.json}.md" || rc=1
done
h2d=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sweep"][-1]["streamed"]["h2d_gbps"])' \
      "$out/stream/stream_sweep.json" 2>/dev/null || true)
"$py" scripts/plot.py "$out"/*.json --out "$out/plots" ${h2d:+--h2d-gbps "$h2d"} || rc=1
echo "tables: $out/*.md, plots: $out/plots" >&2
exit $rc
