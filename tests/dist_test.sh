#!/usr/bin/env bash
# dist_test.sh — `flashkm dist` on the GPUs of this machine (label gpu; exit 77
# without a GPU): the 1-GPU run validates against the fp64 reference, and out
# of core (--stream-chunk) gives the same centroids; with 2+
# GPUs the R-GPU centroids are bitwise those of 1 GPU and of a second run, a
# rank killed mid-run ends the job with a message naming it (no hang) and the
# 1-GPU row survives, a job launched rank by rank through an id file gives the
# same centroids, and a fit stops at the same iteration with the same centroids.
# usage: dist_test.sh FLASHKM_BINARY   (run from the repository root)
set -u
bin=$1
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ "${ngpu:-0}" -ge 1 ] || { echo "dist_test: no GPU (skipped)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
ok() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
shape=(--n 300000 --k 100 --d 64 --dtype fp16 --data blobs --seed 3)
check() { # results-file python-assertion description
  python3 - "$1" "$2" <<'PY' && ok || fail "$3: $(python3 -c 'import json,sys; print(json.dumps([{k: r.get(k) for k in ("variant", "status", "reason", "validation")} | {"dist": {k: v for k, v in r.get("dist", {}).items() if k != "per_rank"}} for r in json.load(open(sys.argv[1]))["runs"]]))' "$1" 2>&1)"
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
assert eval(sys.argv[2]), sys.argv[2]
PY
}

"$bin" dist --gpus 1 "${shape[@]}" --iters 6 -q -o "$tmp/one.json" --centroids "$tmp/c_one.bin" 2>"$tmp/err" \
  && ok || fail "1 GPU: $(tail -3 "$tmp/err")"
check "$tmp/one.json" 'len(runs) == 1 and runs[0]["status"] == "ok" and "fp64" in runs[0]["validation"]["checked"]' "1 GPU validated"
python3 scripts/check_results.py "$tmp/one.json" --expect-all-ok >/dev/null && ok || fail "1 GPU: results file does not check"

# Out of core (the slice in pinned host memory, 5 chunks, the last one shorter): the same centroids.
"$bin" dist --gpus 1 "${shape[@]}" --iters 6 --stream-chunk 70000 -q -o "$tmp/one_s.json" --centroids "$tmp/c_one_s.bin" \
  2>"$tmp/err" && ok || fail "1 GPU streamed: $(tail -3 "$tmp/err")"
cmp -s "$tmp/c_one.bin" "$tmp/c_one_s.bin" && ok || fail "streamed centroids differ from in-memory ones"
check "$tmp/one_s.json" 'runs[0]["status"] == "ok" and runs[0]["dist"]["streamed"]["chunks_per_rank"] == 5' "1 GPU streamed validated"

FKM_DIST_FAULT=0:2 "$bin" dist --gpus 1 "${shape[@]}" --iters 6 -q -o "$tmp/dead1.json" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "rank 0 (GPU 0) of 1 was killed by SIGKILL" "$tmp/err" && ok || fail "killed single rank: $(tail -3 "$tmp/err")"

if [ "$ngpu" -ge 2 ]; then
  "$bin" dist --gpus 0,1 "${shape[@]}" --iters 6 -q -o "$tmp/two.json" --centroids "$tmp/c_two.bin" 2>"$tmp/err" \
    && ok || fail "2 GPUs: $(tail -3 "$tmp/err")"
  check "$tmp/two.json" 'len(runs) == 2 and all(r["status"] == "ok" for r in runs) and runs[1]["validation"]["agrees_with_one_gpu"] == "bitwise" and runs[1]["dist"]["ranks"] == 2 and len(runs[1]["dist"]["per_rank"]) == 2 and runs[1]["dist"]["speedup"] > 0' "2 GPUs agree bitwise with 1"
  cmp -s "$tmp/c_one.bin" "$tmp/c_two.bin" && ok || fail "2-GPU centroids differ from the 1-GPU run of the same data"
  "$bin" dist --gpus 0,1 "${shape[@]}" --iters 6 -q --no-scaling -o "$tmp/two_b.json" --centroids "$tmp/c_two_b.bin" 2>"$tmp/err" \
    && ok || fail "2 GPUs again: $(tail -3 "$tmp/err")"
  cmp -s "$tmp/c_two.bin" "$tmp/c_two_b.bin" && ok || fail "two 2-GPU runs differ"

  start=$(date +%s)
  FKM_DIST_FAULT=1:3 "$bin" dist --gpus 0,1 "${shape[@]}" --iters 8 --timeout 60 -q -o "$tmp/dead.json" 2>"$tmp/err"
  rc=$? took=$(( $(date +%s) - start ))
  [ $rc -eq 1 ] && grep -q "rank 1 (GPU 1) of 2 was killed by SIGKILL" "$tmp/err" && ok || fail "killed rank: exit $rc: $(tail -3 "$tmp/err")"
  [ "$took" -lt 60 ] && ok || fail "killed rank: the job took $took s to end"
  check "$tmp/dead.json" 'len(runs) == 2 and runs[0]["status"] == "ok" and runs[1]["status"] == "error" and "killed" in runs[1]["reason"]' "killed rank: the 1-GPU row is kept, the 2-GPU row says why"

  "$bin" dist --gpus 0,1 "${shape[@]}" --iters 6 --stream-chunk 40000 --no-scaling -q -o "$tmp/two_s.json" \
    --centroids "$tmp/c_two_s.bin" 2>"$tmp/err" && ok || fail "2 GPUs streamed: $(tail -3 "$tmp/err")"
  cmp -s "$tmp/c_one.bin" "$tmp/c_two_s.bin" && ok || fail "2-GPU streamed centroids differ from 1 GPU in memory"

  # Rank by rank through an id file, as a launcher on several hosts would.
  "$bin" dist --rank 1 --nranks 2 --device 1 --id-file "$tmp/id" "${shape[@]}" --iters 6 -q -o "$tmp/ranked.json" 2>"$tmp/err1" &
  pid=$!
  "$bin" dist --rank 0 --nranks 2 --device 0 --id-file "$tmp/id" "${shape[@]}" --iters 6 -q -o "$tmp/ranked.json" \
    --centroids "$tmp/c_ranked.bin" 2>"$tmp/err0" && ok || fail "id-file rank 0: $(tail -3 "$tmp/err0")"
  wait $pid && ok || fail "id-file rank 1: $(tail -3 "$tmp/err1")"
  cmp -s "$tmp/c_one.bin" "$tmp/c_ranked.bin" && ok || fail "id-file job: centroids differ from 1 GPU"
  check "$tmp/ranked.json" 'len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["dist"]["ranks"] == 2' "id-file job results"

  # A fit: the same iterations and convergence decision on 1 and 2 GPUs (every rank
  # takes it from the same all-reduced sums), and the same centroids.
  "$bin" dist --gpus 0,1 "${shape[@]}" --fit --tol 1e-2 --max-iter 60 -q -o "$tmp/fit.json" 2>"$tmp/err" \
    && ok || fail "2-GPU fit: $(tail -3 "$tmp/err")"
  check "$tmp/fit.json" 'runs[1]["op"] == "fit" and runs[1]["dist"]["iterations"] == runs[0]["dist"]["iterations"] and runs[1]["dist"]["converged"] == runs[0]["dist"]["converged"] and runs[1]["validation"]["agrees_with_one_gpu"] == "bitwise"' "2-GPU fit stops like 1 GPU"
else
  echo "dist_test: one GPU: the multi-GPU checks need two (skipped)"
fi
echo "dist_test: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
