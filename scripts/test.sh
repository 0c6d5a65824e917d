#!/usr/bin/env bash
# test.sh — builds flashkm and runs every test: C unit tests, the command-line
# test (smoke config end to end, broken configs), and the GPU tests, which skip
# (ctest "Skipped") on a machine without a GPU; then the results scripts' tests
# (pytest on tests/python) with the first of python3 and Debian's
# /usr/bin/python3 that has matplotlib and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
(cd build && ctest --output-on-failure -j "$(nproc)")

py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c "import matplotlib, pytest" 2>/dev/null; then
    py=$(command -v "$cand"); break
  fi
done
if [ -z "$py" ]; then
  echo "test.sh: neither python3 ($(command -v python3 || echo 'not found')) nor /usr/bin/python3 has both" \
       "matplotlib and pytest; install them (Debian: apt-get install python3-matplotlib python3-pytest," \
       "which scripts/setup.sh does as root)" >&2
  exit 1
fi
echo "test.sh: pytest tests/python with $py ($("$py" --version 2>&1))"
rc=0
"$py" -m pytest -p no:cacheprovider -q tests/python || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests in tests/python" >&2
fi
[ "$rc" -eq 0 ] || exit "$rc"

# The committed regression gate: every GPU directory's latest regress run
# against its baseline (both measured on that card; no GPU needed to compare).
for base in results/*/baseline.json; do
  [ -f "$base" ] || continue
  latest=$(dirname "$base")/regress.json
  [ -f "$latest" ] || { echo "test.sh: $base has no regress.json beside it" >&2; exit 1; }
  echo "test.sh: compare.py $base $latest"
  "$py" scripts/compare.py "$base" "$latest" >/dev/null || { "$py" scripts/compare.py "$base" "$latest" | tail -20; exit 1; }
done
