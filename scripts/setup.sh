#!/usr/bin/env bash
# setup.sh — installs what flashkm needs to build (when missing) and builds it
# into build/. Called by main.sh and test.sh; safe to run again.
# Needs: the CUDA toolkit (nvcc on PATH or in /usr/local/cuda), CMake >= 3.24,
# a C compiler, cJSON (Debian/Ubuntu: libcjson-dev), python3, and for the
# results scripts and their tests matplotlib and pytest (python3-matplotlib,
# python3-pytest) in python3 or Debian's /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -f /usr/include/cjson/cJSON.h ] || ls .deps/*.deb >/dev/null 2>&1 || need+=(libcjson-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v python3 >/dev/null || need+=(python3)
has_py_deps() { # python3 or Debian's python has matplotlib and pytest (test.sh uses the first that has)
  local py
  for py in python3 /usr/bin/python3; do
    command -v "$py" >/dev/null && "$py" -c "import matplotlib, pytest" 2>/dev/null && return 0
  done
  return 1
}
has_py_deps || need+=(python3-matplotlib python3-pytest)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]}; install them with your package manager" >&2
    exit 1
  fi
fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
command -v nvcc >/dev/null || { echo "setup: nvcc not found: install the CUDA toolkit (12.5 or newer)" >&2; exit 1; }

extra=()
if [ ! -f /usr/include/cjson/cJSON.h ]; then
  # cJSON from Debian packages unpacked in .deps/root (machines without package access).
  source scripts/deps_cjson.sh
  extra+=("${CJSON_CMAKE_ARGS[@]}")
fi
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" ${FKM_CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$(nproc)"
