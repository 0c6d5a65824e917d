#!/usr/bin/env bash
# dist_bench.sh — the multi-GPU checks and figures of `flashkm dist` on this
# machine's GPUs, into OUTDIR: tests/dist_test.sh (agreement with 1 GPU,
# determinism, a killed rank, the id-file bootstrap, a fit), then
# configs/dist.json through `flashkm run` (Lloyd iterations at 8M x 8192 and at
# N = 2^27, K = 11585, a fit at 8M x 8192; 1 GPU vs 2), into OUTDIR/dist.json,
# and N = 2^27 out of core (each rank streaming its slice), OUTDIR/dist_2p27_streamed.json.
# usage: scripts/dist_bench.sh FLASHKM_BINARY OUTDIR
set -uo pipefail
bin=${1:?usage: dist_bench.sh FLASHKM_BINARY OUTDIR}
out=${2:?usage: dist_bench.sh FLASHKM_BINARY OUTDIR}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
status=0
echo "=== dist_test ($(nvidia-smi -L | grep -c '^GPU') GPUs)"
bash tests/dist_test.sh "$bin" >"$out/dist_test.log" 2>&1 || status=1
tail -3 "$out/dist_test.log"
echo "=== flashkm run configs/dist.json"
"$bin" run configs/dist.json -o "$out/dist.json" 2>"$out/dist.log" || status=1
grep -E "flash_nccl|aborted" "$out/dist.log" | tail -8
python3 scripts/check_results.py "$out/dist.json" --expect-complete --expect-all-ok || status=1
echo "=== out of core: N = 2^27, K = 11585, each rank streaming its slice from pinned host memory"
"$bin" dist --gpus 0,1 --n 134217728 --k 11585 --d 128 --iters 5 --stream-chunk 4194304 \
  -o "$out/dist_2p27_streamed.json" 2>"$out/dist_2p27_streamed.log" || status=1
grep -E "speedup|failed|killed" "$out/dist_2p27_streamed.log" | tail -3
python3 scripts/check_results.py "$out/dist_2p27_streamed.json" --expect-all-ok || status=1
exit $status
