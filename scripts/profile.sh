#!/usr/bin/env bash
# profile.sh — one variant's cases under Nsight Compute, limited to the
# `flashkm run --profile` window (each case validated, then run once between
# cudaProfilerStart/Stop, inside NVTX ranges experiment > variant > profile),
# and under Nsight Systems where nsys is installed.
# Reports are written beside the results file.
# usage: scripts/profile.sh CONFIG VARIANT [OUTDIR]
#   e.g. scripts/profile.sh configs/quick.json assign/flash_wgmma
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=${1:?usage: profile.sh CONFIG VARIANT [OUTDIR]}
variant=${2:?usage: profile.sh CONFIG VARIANT [OUTDIR]}
out=${3:-results/latest/profile}
mkdir -p "$out"
bash scripts/setup.sh >/dev/null
tag=$(echo "$variant" | tr '/' '_')
command -v ncu >/dev/null || { echo "profile: ncu (Nsight Compute) is not on PATH" >&2; exit 1; }
ncu --profile-from-start off --nvtx --set full \
    -o "$out/$tag" -f ./build/flashkm run "$cfg" --filter "$variant" --profile -o "$out/$tag.json"
echo "Nsight Compute report: $out/$tag.ncu-rep" >&2
if command -v nsys >/dev/null; then
  nsys profile --capture-range=cudaProfilerApi -o "$out/$tag" -f true \
      ./build/flashkm run "$cfg" --filter "$variant" --profile -q -o "$out/$tag.nsys.json"
  echo "Nsight Systems report: $out/$tag.nsys-rep" >&2
fi
