#!/usr/bin/env bash
# dist_bench.sh — the multi-GPU checks and figures of `flashkm dist` on this
# machine's GPUs, into OUTDIR: tests/dist_test.sh (agreement with 1 GPU,
# determinism, a killed rank, the id-file bootstrap, a fit), then the 1-GPU vs
# all-GPU runs of the multi-GPU issue's shapes (Lloyd iterations at 8M x 8192
# and at N = 2^27, K = 11585; a fit at 8M x 8192), each a results file.
# usage: scripts/dist_bench.sh FLASHKM_BINARY OUTDIR [GPU LIST, default: all]
set -uo pipefail
bin=${1:?usage: dist_bench.sh FLASHKM_BINARY OUTDIR [GPUS]}
out=${2:?usage: dist_bench.sh FLASHKM_BINARY OUTDIR [GPUS]}
gpus=${3:-$(nvidia-smi -L | grep -c '^GPU')}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
status=0
echo "=== dist_test ($(nvidia-smi -L | grep -c '^GPU') GPUs)"
bash tests/dist_test.sh "$bin" >"$out/dist_test.log" 2>&1 || status=1
tail -3 "$out/dist_test.log"
run() { # name args...
  local name=$1; shift
  echo "=== $name: $*"
  "$bin" dist --gpus "$gpus" "$@" -o "$out/$name.json" 2>"$out/$name.log" || status=1
  grep -E "speedup|failed|killed|error" "$out/$name.log" | tail -3
  python3 scripts/check_results.py "$out/$name.json" --expect-all-ok || status=1
}
run dist_8m --n 8388608 --k 8192 --d 128 --iters 20
run dist_8m_fit --n 8388608 --k 8192 --d 128 --fit --tol 1e-4 --max-iter 60
run dist_2p27 --n 134217728 --k 11585 --d 128 --iters 5
exit $status
