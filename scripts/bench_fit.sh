#!/usr/bin/env bash
# bench_fit.sh — `flashkm fit` on generated data, in GPU memory and streamed from
# host memory, to measure the out-of-core path (per-iteration H2D bytes and
# bandwidth, copy and compute time alone, overlap efficiency) against the
# in-memory fit on the same data (input written by `flashkm gen`).
# usage: scripts/bench_fit.sh FLASHKM_BINARY OUTDIR [N] [K] [D] [CHUNK_POINTS] [ITERS]
# env:   KEEP_DATA=1 keeps the generated .npy (else removed after the fits)
set -euo pipefail
bin=${1:?usage: bench_fit.sh FLASHKM_BINARY OUTDIR [N] [K] [D] [CHUNK_POINTS] [ITERS]}
out=${2:?usage: bench_fit.sh FLASHKM_BINARY OUTDIR [N] [K] [D] [CHUNK_POINTS] [ITERS]}
n=${3:-16777216} k=${4:-4096} d=${5:-128} chunk=${6:-4194304} iters=${7:-5}
mkdir -p "$out"
data=${TMPDIR:-/tmp}/fkm_bench_${n}x${d}.npy
"$bin" gen --n "$n" --d "$d" --k "$k" --data blobs --dtype fp16 --seed 7 -o "$data"
common=(fit --input "$data" --k "$k" --max-iter "$iters" --tol 0 --seed 3 -q)
"$bin" "${common[@]}" >"$out/fit_in_memory.json"
"$bin" "${common[@]}" --chunk-points "$chunk" >"$out/fit_streamed.json"
[ "${KEEP_DATA:-0}" = 1 ] || rm -f "$data" # tens of GB at large N
python3 - "$out/fit_in_memory.json" "$out/fit_streamed.json" <<'PY'
import json, sys
m, s = (json.load(open(p)) for p in sys.argv[1:3])
print(f"N={m['N']} D={m['D']} K={m['K']} {m['dtype']}: in memory {m['iterations']} it, {m['seconds']:.3f} s, inertia {m['inertia']:.6e}")
st = s["stream"]
print(f"streamed ({st['chunks']} chunks of {st['chunk_points']}, {st['slots']} slots): {s['iterations']} it, {s['seconds']:.3f} s, "
      f"inertia {s['inertia']:.6e} (rel diff {abs(s['inertia'] - m['inertia']) / m['inertia']:.2e})")
print(f"  per iteration: {st['h2d_bytes_per_iteration'] / 1e9:.2f} GB H2D at {st.get('h2d_gbps', 0):.1f} GB/s; copy alone "
      f"{st['copy_seconds_alone'] * 1e3:.1f} ms, compute alone {st['compute_seconds_alone'] * 1e3:.1f} ms, measured "
      + ", ".join(f"{t * 1e3:.1f}" for t in st["iteration_seconds"]) + " ms; efficiency "
      + ", ".join(f"{e:.2f}" for e in st["overlap_efficiency"]))
PY
