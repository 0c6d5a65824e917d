#!/usr/bin/env bash
# test.sh — builds flashkm and runs every test: C unit tests, the command-line
# test (smoke config end to end, broken configs), and the GPU tests, which skip
# (ctest "Skipped") on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure -j "$(nproc)"
