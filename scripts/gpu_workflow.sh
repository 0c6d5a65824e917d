#!/usr/bin/env bash
# gpu_workflow.sh — everything a GPU machine should do after a kernel change,
# in one go: build (with the compiler's resource report), run the GPU tests
# (optionally under compute-sanitizer), run a config, check its results, and
# leave logs and the results JSON in OUTDIR (few files: build.log,
# resources.txt, gpu_tests.log, sanitizer.log, and a .json and .log per config).
#
# usage: scripts/gpu_workflow.sh OUTDIR [CONFIG ...]     (default config: configs/quick.json)
# env:   SANITIZE=1   also run the GPU tests under compute-sanitizer memcheck and racecheck
#                     (shapes up to FKM_TEST_MAX_POINTS=20000 points, to keep it short)
#        TESTS=0      skip the GPU tests;  ARCHS="90a" to build fewer architectures
#        FKM_AUTOTUNE_CACHE  autotune cache for assign/flash (default here: off, the heuristic)
#
# cJSON: used from the system if CMake finds it, else from Debian packages in
# .deps/ (scripts/fetch_deps.sh puts them there), unpacked under .deps/root.
set -uo pipefail
# assign/flash uses its heuristic unless the caller names an autotune cache:
# results of this workflow measure the heuristic, whatever cache the machine holds.
export FKM_AUTOTUNE_CACHE=${FKM_AUTOTUNE_CACHE-off}
out=${1:?usage: gpu_workflow.sh OUTDIR [CONFIG ...]}
shift
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(configs/quick.json)
cd "$(dirname "$0")/.."
mkdir -p "$out"
status=0
step() { echo; echo "=== $* ==="; }

cmake_extra=()
# NCCL for `flashkm dist`: the CUDA toolkit's, else the nvidia-nccl wheel beside PyTorch.
if [ -z "${NCCL_ROOT:-}" ] && ! ls /usr/local/cuda/include/nccl.h >/dev/null 2>&1; then
  NCCL_ROOT=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null) && export NCCL_ROOT
fi
source scripts/deps_cjson.sh
cmake_extra+=("${CJSON_CMAKE_ARGS[@]}")

step "build"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFKM_PTXAS_VERBOSE=ON \
  ${ARCHS:+-DCMAKE_CUDA_ARCHITECTURES="$ARCHS"} "${cmake_extra[@]}" >"$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log"; exit 1; }
cmake --build build-gpu -j 16 >>"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
grep -E "Compiling entry|Used [0-9]+ registers|spill" "$out/build.log" | sed 's/ptxas info *: //' >"$out/resources.txt"
grep -B1 -A0 "bytes spill" "$out/build.log" | grep -v " 0 bytes spill stores, 0 bytes spill loads" | grep "spill" | head -5
./build-gpu/flashkm info | head -12

if [ "${TESTS:-1}" != 0 ]; then
  step "GPU tests"
  (cd build-gpu && ctest -L gpu --output-on-failure --timeout ${TEST_TIMEOUT:-300}) 2>&1 | tee "$out/gpu_tests.log" | tail -40
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  if [ "${SANITIZE:-0}" = 1 ]; then
    step "compute-sanitizer"
    : >"$out/sanitizer.log"
    # racecheck skips cuBLAS (its own GEMM kernels report shared-memory hazards that are not ours)
    # gpu_assign_norm_mma: the ping-pong kernels with ||c||^2 through the MMA at every K
    for t in gpu_data gpu_assign gpu_assign_norm_mma gpu_update gpu_fit; do
      for tool in memcheck racecheck; do
        [ $tool = racecheck ] && [ $t = gpu_data ] && continue
        variants=${FKM_TEST_VARIANTS:-}
        [ $tool = racecheck ] && variants="assign/naive,assign/flash*,update/*"
        bin=$t min_k=${FKM_NORM_MMA_MIN_K:-}
        if [ $t = gpu_assign_norm_mma ]; then
          bin=gpu_assign min_k=1 variants="assign/flash_wgmma_pp,assign/flash_wgmma_pp3"
        fi
        FKM_NORM_MMA_MIN_K=$min_k FKM_TEST_VARIANTS=$variants FKM_TEST_MAX_POINTS=${FKM_TEST_MAX_POINTS:-20000} \
          compute-sanitizer --tool $tool --error-exitcode 9 ./build-gpu/tests/$bin >/tmp/san.log 2>&1
        rc=$?
        { echo "### $t $tool rc=$rc"; grep -E "SUMMARY" /tmp/san.log | tail -1
          echo "kernels named in reports:"; grep -oE "(at|access at) [A-Za-z_][A-Za-z_0-9]*\+0x" /tmp/san.log | awk '{print $NF}' | sort | uniq -c | head -20
          grep -E "=========" /tmp/san.log | head -20; } >>"$out/sanitizer.log"
        echo "$t $tool: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/san.log | tail -1)"
        [ $rc -eq 0 ] || status=1
      done
    done
  fi
fi

for cfg in "${configs[@]}"; do
  name=$(basename "$cfg" .json)
  step "run $cfg"
  timeout ${RUN_TIMEOUT:-900} ./build-gpu/flashkm run "$cfg" -o "$out/$name.json" 2>&1 | tee "$out/$name.log" | grep -vE "^\s*$" | tail -60
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  python3 scripts/check_results.py "$out/$name.json" --expect-complete || status=1
  python3 scripts/summarize.py "$out/$name.json"
done
exit $status
