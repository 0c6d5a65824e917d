#!/usr/bin/env bash
# regress.sh — the performance gate for a GPU runner: runs configs/regress.json
# and compares it with results/<gpu>/baseline.json (scripts/compare.py: exit 1
# on a slowdown beyond the runs' noise or on any run that stopped validating).
# Without a GPU it says so and exits 0.
# usage: scripts/regress.sh [GPU_DIR]    (default: h100 for an H100, else the card's name)
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null || exit 1
info=$(./build/flashkm info 2>/dev/null)
name=$(printf '%s' "$info" | python3 -c 'import json,sys; d=json.load(sys.stdin)["device"]; print(d.get("name","") if d["present"] else "")')
if [ -z "$name" ]; then
  echo "regress: no GPU here; nothing to compare (exit 0)"
  exit 0
fi
dir=${1:-$(case "$name" in *H100*) echo h100 ;; *H200*) echo h200 ;; *) echo "$name" | tr 'A-Z ' 'a-z_' ;; esac)}
base=results/$dir/baseline.json
mkdir -p results/latest
./build/flashkm run configs/regress.json -o results/latest/regress.json || exit 1
if [ ! -f "$base" ]; then
  echo "regress: no $base yet; to make this run the baseline: cp results/latest/regress.json $base" >&2
  exit 1
fi
py=python3
exec "$py" scripts/compare.py "$base" results/latest/regress.json
