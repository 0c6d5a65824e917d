#!/usr/bin/env bash
# reproduce.sh — runs every paper config on this machine's GPU, then renders
# the tables (Markdown) and plots from the results.
# usage: scripts/reproduce.sh [OUTDIR]     (default results/latest/paper)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/latest/paper}
bash scripts/setup.sh || exit 1
mkdir -p "$out"
rc=0
for cfg in configs/paper/*.json; do
  name=$(basename "$cfg" .json)
  echo "=== $cfg" >&2
  ./build/flashkm run "$cfg" -o "$out/$name.json" || rc=1
done
py=python3
python3 -c "import matplotlib" 2>/dev/null || py=/usr/bin/python3
for f in "$out"/*.json; do
  "$py" scripts/table.py "$f" >"${f%.json}.md" || rc=1
done
"$py" scripts/plot.py "$out"/*.json --out "$out/plots" || rc=1
echo "tables: $out/*.md, plots: $out/plots" >&2
exit $rc
