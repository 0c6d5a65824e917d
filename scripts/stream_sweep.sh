#!/usr/bin/env bash
# stream_sweep.sh — the out-of-core scale sweep: scripts/bench_fit.sh (the same
# data fitted in GPU memory and streamed from host memory) for N = 2^a with
# K = sqrt(N), fp16, D = 128, and one summary with, per size and iteration, the
# bytes copied, the measured H2D bandwidth, copy and compute alone, the measured
# iteration time and the overlap efficiency max(copy, compute) / measured.
# usage: scripts/stream_sweep.sh FLASHKM_BINARY OUTDIR [LOG2N ...]   (default: 20 22 24 26 27)
# Each size needs its data once in $TMPDIR (2^a * 256 bytes), which `fit --input` maps.
# 2^28 (64 GiB) on a machine with less disk: TMPDIR=/dev/shm, mounted large enough
# (mount -o remount,size=100G /dev/shm); its "in memory" fit streams too (the data
# exceed the GPU's memory).
set -uo pipefail
bin=${1:?usage: stream_sweep.sh FLASHKM_BINARY OUTDIR [LOG2N ...]}
out=${2:?usage: stream_sweep.sh FLASHKM_BINARY OUTDIR [LOG2N ...]}
shift 2
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20 22 24 26 27)
cd "$(dirname "$0")/.."
mkdir -p "$out"
status=0
for a in "${sizes[@]}"; do
  n=$((1 << a))
  k=$(python3 -c "import math; print(round(math.sqrt($n)))")
  chunk=$(( n / 8 < 4194304 ? n / 8 : 4194304 ))
  echo "=== N = 2^$a = $n, K = $k, chunks of $chunk points"
  bash scripts/bench_fit.sh "$bin" "$out/n2^$a" "$n" "$k" 128 "$chunk" 5 || status=1
done
python3 - "$out" "${sizes[@]}" <<'PY'
import json, os, sys
out, sizes = sys.argv[1], sys.argv[2:]
rows = []
for a in sizes:
    d = os.path.join(out, f"n2^{a}")
    try:
        m = json.load(open(os.path.join(d, "fit_in_memory.json")))
        s = json.load(open(os.path.join(d, "fit_streamed.json")))
    except (OSError, ValueError) as e:
        rows.append({"log2n": int(a), "error": str(e)})
        continue
    st = s["stream"]
    rows.append({"log2n": int(a), "N": m["N"], "K": m["K"], "D": m["D"], "dtype": m["dtype"],
                 "in_memory_s_per_iteration": m["seconds"] / max(m["iterations"], 1),
                 "streamed": st, "inertia_in_memory": m["inertia"], "inertia_streamed": s["inertia"]})
json.dump({"sweep": rows}, open(os.path.join(out, "stream_sweep.json"), "w"), indent=1)
for r in rows:
    if "error" in r:
        print(f"2^{r['log2n']}: {r['error']}")
        continue
    st = r["streamed"]
    eff = st["overlap_efficiency"]
    print(f"2^{r['log2n']} K={r['K']}: {st['h2d_bytes_per_iteration'] / 1e9:.2f} GB/iteration at {st.get('h2d_gbps', 0):.1f} GB/s, "
          f"copy {st['copy_seconds_alone'] * 1e3:.0f} ms, compute {st['compute_seconds_alone'] * 1e3:.0f} ms, "
          f"measured {min(st['iteration_seconds']) * 1e3:.0f}-{max(st['iteration_seconds']) * 1e3:.0f} ms, "
          f"efficiency {min(eff):.2f}-{max(eff):.2f}")
PY
exit $status
