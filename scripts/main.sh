#!/usr/bin/env bash
# main.sh — builds flashkm and runs the main job: configs/quick.json on a GPU
# (the baselines and kernels at 1x1M x1024x128 fp16 and two other shapes), or
# configs/smoke.json on the CPU variants when there is no GPU. Writes
# results/latest/<config>.json and prints a summary table.
# usage: scripts/main.sh [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
config=${1:-}
if [ -z "$config" ]; then
  if ./build/flashkm info 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["device"]["present"] else 1)'; then
    config=configs/quick.json
  else
    echo "main: no GPU here, running the CPU smoke config (configs/smoke.json)" >&2
    config=configs/smoke.json
  fi
fi
mkdir -p results/latest
out=results/latest/$(basename "$config")
rc=0
./build/flashkm run "$config" -o "$out" || rc=$?
python3 scripts/summarize.py --limit 60 "$out"
exit $rc
