#!/usr/bin/env bash
# cli_test.sh — the flashkm command line end to end, without a GPU:
# help and list, the smoke config through to a checked results file, and every
# broken config in tests/configs/bad rejected with one line naming the JSON path,
# exit status 2, and no results file written.
# usage: cli_test.sh FLASHKM_BINARY   (run from the repository root)
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
ok() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
expect_rc() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -eq "$want" ]; then ok; else fail "$what: exit $rc, expected $want; stderr: $(head -c 400 "$tmp/err")"; fi
}

expect_rc 0 "--help" "$bin" --help
expect_rc 0 "run --help" "$bin" run --help
expect_rc 0 "list --help" "$bin" list --help
expect_rc 0 "info --help" "$bin" info --help
expect_rc 2 "no command" "$bin"
expect_rc 2 "unknown command" "$bin" frobnicate
expect_rc 2 "unknown option" "$bin" run configs/smoke.json --frob
expect_rc 2 "missing config" "$bin" run "$tmp/nope.json"
grep -q "nope.json" "$tmp/err" && ok || fail "missing config: message does not name the file"
expect_rc 2 "unwritable results" "$bin" run configs/smoke.json -o /nonexistent-dir/r.json
expect_rc 0 "list" "$bin" list
grep -q '^assign/cpu_ref' "$tmp/out" && grep -q '^update/atomic_scatter' "$tmp/out" && ok || fail "list lacks variants"
expect_rc 0 "info" "$bin" info
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "present" in d["device"] and "version" in d["build"]' "$tmp/out" \
  && ok || fail "info is not the expected JSON"
expect_rc 0 "dry run" "$bin" run configs/smoke.json --dry-run
grep -q "cases$" "$tmp/out" && ok || fail "dry run does not count cases"

# Every shipped config is valid.
for f in configs/*.json configs/paper/*.json; do
  expect_rc 0 "dry run of $f" "$bin" run "$f" --dry-run
done

# The smoke config end to end; the results file must check out.
expect_rc 0 "smoke run" "$bin" run configs/smoke.json -o "$tmp/smoke.json"
grep -q "^\[ *[0-9]*/[0-9]*\] " "$tmp/err" && ok || fail "smoke run printed no progress lines"
python3 scripts/check_results.py "$tmp/smoke.json" --expect-complete --expect-all-ok --min-runs 100 >/dev/null \
  && ok || fail "smoke results: $(python3 scripts/check_results.py "$tmp/smoke.json" --expect-complete --expect-all-ok 2>&1 | head -5)"
# The measured SM clock belongs to GPU timings only (the smoke config is all CPU).
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert not any("sm_clock_measured_mhz" in (r.get("timing") or {}) for r in d["runs"])' "$tmp/smoke.json" \
  && ok || fail "a CPU row carries timing.sm_clock_measured_mhz"
expect_rc 0 "quiet run" "$bin" run configs/smoke.json -q --filter 'update/*' -o "$tmp/q.json"
[ ! -s "$tmp/err" ] && ok || fail "-q still printed: $(head -c 200 "$tmp/err")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["runs"] and all(r["op"]=="update" for r in d["runs"])' "$tmp/q.json" \
  && ok || fail "--filter did not restrict the runs"
expect_rc 2 "filter matching nothing" "$bin" run configs/smoke.json --filter 'nothing/*' -o "$tmp/none.json"

# Broken configs: one line, naming the file and a JSON path, exit 2, no results file.
n_bad=0
for f in tests/configs/bad/*.json; do
  n_bad=$((n_bad + 1))
  rm -f "$tmp/bad.json"
  "$bin" run "$f" -o "$tmp/bad.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -ne 2 ]; then fail "$f: exit $rc, expected 2"; continue; fi
  if [ "$lines" -ne 1 ]; then fail "$f: $lines lines of error, expected 1: $(cat "$tmp/err")"; continue; fi
  grep -q "$(basename "$f")" "$tmp/err" || { fail "$f: message does not name the file: $(cat "$tmp/err")"; continue; }
  [ ! -e "$tmp/bad.json" ] || { fail "$f: a results file was written"; continue; }
  ok
done
[ "$n_bad" -ge 10 ] && ok || fail "only $n_bad broken configs"

# fit: every bad input is exit 2 with a message naming what is wrong; a good
# input without a GPU is exit 1 saying so (with a GPU it must succeed).
npy() { # path dtype(f2|f4|i4) rows cols [truncate-bytes]
  python3 - "$@" <<'PY'
import struct, sys
path, dt, rows, cols = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cut = int(sys.argv[5]) if len(sys.argv) > 5 else 0
hdr = "{'descr': '<%s', 'fortran_order': False, 'shape': (%d, %d), }" % (dt, rows, cols)
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
fmt = {"f2": "e", "f4": "f", "i4": "i"}[dt]
vals = [((i * 7919) % 1000) / 100.0 for i in range(rows * cols)]
if dt == "i4":
    vals = [int(v) for v in vals]
body = struct.pack("<%d%s" % (rows * cols, fmt), *vals)
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body[: len(body) - cut])
PY
}
npy "$tmp/x.npy" f2 500 8
npy "$tmp/xi.npy" i4 500 8
npy "$tmp/xt.npy" f4 500 8 100
expect_rc 0 "fit --help" "$bin" fit --help
expect_rc 2 "fit without --k" "$bin" fit --input "$tmp/x.npy"
expect_rc 2 "fit K > N" "$bin" fit --input "$tmp/x.npy" --k 501
grep -q "exceeds" "$tmp/err" && ok || fail "fit K > N: $(cat "$tmp/err")"
expect_rc 2 "fit int32 input" "$bin" fit --input "$tmp/xi.npy" --k 4
grep -q "float16 or float32" "$tmp/err" && ok || fail "fit int32: $(cat "$tmp/err")"
expect_rc 2 "fit truncated input" "$bin" fit --input "$tmp/xt.npy" --k 4
grep -qi "truncated\|bytes" "$tmp/err" && ok || fail "fit truncated: $(cat "$tmp/err")"
expect_rc 2 "fit unreadable input" "$bin" fit --input "$tmp/missing.npy" --k 4
grep -q "missing.npy" "$tmp/err" && ok || fail "fit missing: $(cat "$tmp/err")"
expect_rc 2 "fit bad --init" "$bin" fit --input "$tmp/x.npy" --k 4 --init best
if "$bin" info 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["device"]["present"] else 1)'; then
  expect_rc 0 "fit on the GPU" "$bin" fit --input "$tmp/x.npy" --k 4 --labels "$tmp/l.npy" --centroids "$tmp/c.npy" -q
  [ -s "$tmp/l.npy" ] && [ -s "$tmp/c.npy" ] && ok || fail "fit wrote no labels or centroids"
else
  expect_rc 1 "fit without a GPU" "$bin" fit --input "$tmp/x.npy" --k 4 -q
  grep -q "GPU" "$tmp/err" && ok || fail "fit without a GPU: $(cat "$tmp/err")"
fi

# gen: the seeded data as .npy, the same bytes every time.
expect_rc 0 "gen --help" "$bin" gen --help
expect_rc 0 "gen" "$bin" gen --n 700 --d 6 --k 9 --b 2 --data skewed --seed 4 -o "$tmp/g1.npy" --labels "$tmp/gl.npy" --centres "$tmp/gc.npy"
expect_rc 0 "gen again" "$bin" gen --n 700 --d 6 --k 9 --b 2 --data skewed --seed 4 -o "$tmp/g2.npy"
cmp -s "$tmp/g1.npy" "$tmp/g2.npy" && ok || fail "gen is not deterministic"
expect_rc 0 "gen, other seed" "$bin" gen --n 700 --d 6 --k 9 --b 2 --data skewed --seed 5 -o "$tmp/g3.npy"
cmp -s "$tmp/g1.npy" "$tmp/g3.npy" && fail "gen ignores the seed" || ok
python3 - "$tmp/g1.npy" "$tmp/gl.npy" "$tmp/gc.npy" <<'PY' && ok || fail "gen wrote unexpected headers"
import sys
want = ["'<f2'", "(2, 700, 6)", "'<i4'", "(2, 700)", "'<f4'", "(2, 9, 6)"]
heads = [open(p, "rb").read(128).decode("latin1") for p in sys.argv[1:4]]
assert all(w in h for w, h in zip(want[0::2], heads)) and all(w in h for w, h in zip(want[1::2], heads)), heads
PY
expect_rc 2 "gen K > N" "$bin" gen --n 10 --d 2 --k 11 -o "$tmp/g4.npy"
expect_rc 2 "gen bad data" "$bin" gen --n 10 --d 2 --k 3 --data zipf -o "$tmp/g4.npy"
expect_rc 2 "gen centres of normal data" "$bin" gen --n 10 --d 2 --k 3 --data normal -o "$tmp/g4.npy" --centres "$tmp/g4c.npy"

# autotune: the cache from a results file (no GPU needed), and its errors.
expect_rc 0 "autotune --help" "$bin" autotune --help
expect_rc 0 "autotune --from" "$bin" autotune --from results/h100/ablation_assign.json --cache "$tmp/at/cache.json"
python3 - "$tmp/at/cache.json" results/h100/ablation_assign.json <<'PY' && ok || fail "autotune cache: unexpected content"
import json, math, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "flashkm-autotune-1" and len(d["entries"]) == 16
best = {(e["D"], e["K_log2"]): e["impl"] for e in d["entries"]}
# the same picks computed here: per (D, log2 K) the fastest ok exact implementation
want = {}
for r in json.load(open(sys.argv[2]))["runs"]:
    v = r["variant"]
    if (r["op"] != "assign" or r["status"] != "ok" or not v.startswith("assign/flash_")
            or r.get("compute", "exact") != "exact"):
        continue
    key = (r["D"], int(math.floor(math.log2(r["K"]))))
    if key not in want or r["timing"]["median"] < want[key][0]:
        want[key] = (r["timing"]["median"], v)
assert best == {k: v for k, (_, v) in want.items()}, (best, want)
PY
expect_rc 2 "autotune without CONFIG or --from" "$bin" autotune
expect_rc 2 "autotune --from a missing file" "$bin" autotune --from "$tmp/none.json" --cache "$tmp/at/c2.json"
echo '{"hello": 1}' >"$tmp/at/foreign.json"
expect_rc 2 "autotune refuses to overwrite a foreign file" "$bin" autotune --from results/h100/quick.json --cache "$tmp/at/foreign.json"
grep -q hello "$tmp/at/foreign.json" && ok || fail "autotune overwrote a file that is not its cache"
FKM_AUTOTUNE_CACHE=off expect_rc 2 "autotune with the cache off" "$bin" autotune --from results/h100/quick.json

# dist: argument errors are caught before any GPU or NCCL work.
expect_rc 0 "dist --help" "$bin" dist --help
expect_rc 2 "dist without a shape" "$bin" dist --gpus 2
expect_rc 2 "dist K > N" "$bin" dist --gpus 2 --n 10 --k 11 --d 4
expect_rc 2 "dist duplicate GPUs" "$bin" dist --gpus 0,0 --n 100 --k 4 --d 4
expect_rc 2 "dist --gpus with --rank" "$bin" dist --gpus 0,1 --rank 0 --nranks 2 --id-file "$tmp/id" --n 100 --k 4 --d 4
expect_rc 2 "dist without ranks" "$bin" dist --n 100 --k 4 --d 4
expect_rc 2 "dist --iters with --fit" "$bin" dist --gpus 1 --n 100 --k 4 --d 4 --fit --iters 3
expect_rc 2 "dist --stream-chunk with B > 1" "$bin" dist --gpus 1 --n 100 --k 4 --d 4 --b 2 --stream-chunk 10
if ! "$bin" info 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["device"]["present"] else 1)'; then
  expect_rc 1 "dist without a GPU" "$bin" dist --gpus 0,1 --n 1000 --k 10 --d 8 -q -o "$tmp/dist.json"
  python3 scripts/check_results.py "$tmp/dist.json" --expect-complete >/dev/null \
    && python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["runs"]; assert len(r) == 1 and r[0]["status"] == "error" and "rank 0" in r[0]["reason"]' "$tmp/dist.json" \
    && ok || fail "dist without a GPU: no error row: $(cat "$tmp/err")"
fi
expect_rc 2 "dist rank beyond nranks" "$bin" dist --rank 2 --nranks 2 --id-file "$tmp/id" --n 100 --k 4 --d 4

echo "cli_test: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
