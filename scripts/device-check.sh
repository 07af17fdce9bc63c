#!/usr/bin/env bash
# Everything the GPU machine checks, in one call (a machine start costs
# minutes, so one command does it all):
#   build   the addons (the CUDA one needs nvcc + cuBLASLt) and dist/
#   kernels the C++ GPU tests (native/tests/cuda_*_test.cu): each kernel
#           against its CPU twin, with timings
#   gpu     `npm run test:gpu`: preprocessing parity, end-to-end parity on
#           the tiny checkpoint and at the full 3B shape
#   bench   `npm run bench`: ours beside transformers and a graphed PyTorch step
#   bench-ab  ours alone, as is and once per NAME=VALUE in $BENCH_AB_ENV
#   soak    the soak test (benchmarks/soak.ts) on the 3B-shaped checkpoint,
#           SOAK_MINUTES (default 10) at concurrency 64, under batchInvariant;
#           SOAK_MODE=default soaks the engine's default serving path instead
#           (--default-mode: batched prefill, cuBLASLt steps; differences from
#           alone are reported as divergences, not failed); SOAK_RIDES=N adds
#           --prefill-decode-rows N (decode rows riding prefill passes)
#   soak-start, soak-wait  the same soak in its own process session, so it
#           outlives the call (a call runs at most 10 minutes; the soak's ten
#           minutes and its alone references do not fit in one): soak-start
#           launches it (setsid, SOAK_MODE as for soak) writing to $SOAK_DIR (default /tmp/rex-soak),
#           and soak-wait, in the next call (within the machine's 30 s of
#           warmth), waits for it (at most SOAK_WAIT_S, default 540 s; with
#           SOAK_WAIT_FROM_START=1, until the script has run SOAK_WAIT_S) and
#           brings its report to $OUT. Between the two, run nothing timed.
#           Put soak-start first in a session (build soak-start soak-wait with
#           SOAK_WAIT_FROM_START=1 SOAK_WAIT_S=585) and the short soak-wait
#           call straight after: a later call can find a fresh machine.
#   require-pass  stops the run when any stage before it failed (checks, require-pass, soak-start)
#   serve-load  the HTTP server's overhead over the engine (benchmarks/serve-load.ts)
#   splits  the decode attention's split count on cuBLASLt steps: the graphed
#           step at batches 16..128 per REX_OMNI_DECODE_SPLITS value ($SPLITS)
#   step-ab the graphed step at batches 1, 2, 8, as is and once per NAME=VALUE in $STEP_AB_ENV
#   step    the graphed decode step alone (native/bench/decode_step_bench.cu) on
#           the 3B-shaped checkpoint, batches 1, 8, 64 (seconds, not minutes)
#   concurrency the serving benchmark (benchmarks/concurrency.ts) on the 3B-shaped checkpoint,
#           concurrency 1..128, 45- and 440-token answers, transformers' batched generate beside
#   concurrency-rides  the same, ours alone, without and with --prefill-decode-rows ${RIDES:-16}
#           (CONC_LEVELS=8,128: only those concurrency levels)
#   concurrency-chunks  ours alone, once per prefill chunk size in $CHUNKS (default "2048 1024 512")
#   concurrency-ab  the same, ours alone, without (REX_OMNI_PREFILL_BATCH=0) and with batched prefill (the default)
# Usage (device, repo root, after carrying .devicebundle):
#   bash scripts/device-check.sh [stage ...]     default: build gpu bench
#   stages: build, kernels (ctest alone), gpu (every test/gpu file, one by one), soak, soak-start, soak-wait, serve-load, concurrency,
#           concurrency-ab, concurrency-rides, concurrency-chunks, step, step-ab, splits, bench-ab,
#           gpu-fast (all but the 3B parity), gpu-3b, gpu:<file> (one test/gpu file), bench,
#           kernel-<ctest name> (one kernel test)
# Logs go to $OUT (the device tool brings them back, 8 files at most: set
# OUT_KEEP to the name patterns to keep); the last lines printed are a
# one-line summary per stage.
set -uo pipefail
script_start=$(date +%s)
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rex-omni-device}
mkdir -p "$OUT"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(build gpu bench)
source .devicebundle/activate
export REX_OMNI_BUILD_JOBS=${REX_OMNI_BUILD_JOBS:-16}
export PYTHONUNBUFFERED=1
summary=()
failures=0  # stages that failed so far (require-pass stops on any)
note() { summary+=("$1"); echo "== $1"; }
# logged NAME TAIL_LINES CMD...: runs CMD into $OUT/NAME.log, prints the log's
# last TAIL_LINES lines and notes "NAME: rc=.. (.. s)"; returns CMD's rc.
logged() {
  local name=$1 lines=$2 t0 rc
  shift 2
  t0=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n "$lines" "$OUT/$name.log"
  note "$name: rc=$rc ($(( $(date +%s) - t0 )) s)"
  [ "$rc" -eq 0 ] || failures=$((failures + 1))
  return "$rc"
}
# soak_mode_flag: the soak's --default-mode under SOAK_MODE=default, else nothing (batchInvariant).
soak_mode_flag() { [ "${SOAK_MODE:-}" != default ] || echo --default-mode; }
# soak_rides_flag: --prefill-decode-rows $SOAK_RIDES when set (decode rows riding prefill passes; default mode only on CUDA).
soak_rides_flag() { [ -z "${SOAK_RIDES:-}" ] || echo "--prefill-decode-rows $SOAK_RIDES"; }
# conc_levels_flag: --levels $CONC_LEVELS when set (the concurrency A/B stages).
conc_levels_flag() { [ -z "${CONC_LEVELS:-}" ] || echo "--levels $CONC_LEVELS"; }
# step_bench_ready STAGE: the 3B-shaped checkpoint and decode_step_bench, built once.
step_bench_ready() {
  node --input-type=module -e "const m = await import('./dist/test/fixtures/gpu-harness.js'); await m.ensure3bCheckpoint();" \
    > "$OUT/$1-checkpoint.log" 2>&1 || { tail -20 "$OUT/$1-checkpoint.log"; note "$1: checkpoint FAILED"; return 1; }
  { cmake -S . -B build/native-gpu -DREX_BUILD_ADDON=OFF && cmake --build build/native-gpu -j "$REX_OMNI_BUILD_JOBS" --target decode_step_bench; } \
    > "$OUT/$1-build.log" 2>&1 || { grep -E "error" -A3 "$OUT/$1-build.log" | head -30; note "$1: build FAILED"; return 1; }
}
# ab_variant VARIANT: for the A/B stages' loops, `with` (the command prefix:
# env, plus NAME=VALUE unless VARIANT is "plain"; "A=1+B=2" sets both) and `tag` (its file name part).
ab_variant() {
  local pairs
  IFS=+ read -ra pairs <<< "$1"  # "A=1+B=2": both at once
  if [ "$1" = plain ]; then with=(env); tag=plain; else with=(env "${pairs[@]}"); tag=$(echo "$1" | tr 'A-Z_=,+;' 'a-z-----'); fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

for stage in "${stages[@]}"; do
  start=$(date +%s)
  case "$stage" in
    build)
      if node scripts/build-native.mjs --force > "$OUT/build.log" 2>&1 && [ -f build/Release/rex_omni_cuda.node ]; then
        [ -f dist/lib/index.js ] || npx tsc -p tsconfig.json >> "$OUT/build.log" 2>&1
        note "build: ok ($(( $(date +%s) - start )) s)"
      else
        tail -40 "$OUT/build.log"; note "build: FAILED"; failures=$((failures + 1)); break
      fi ;;
    kernels)
      { cmake -S . -B build/native-gpu -DREX_BUILD_ADDON=OFF -DREX_CUDA_RESOURCE_REPORT=ON &&
        cmake --build build/native-gpu -j "$REX_OMNI_BUILD_JOBS"; } > "$OUT/kernels-build.log" 2>&1 ||
        { grep -E "error" -A3 "$OUT/kernels-build.log" | head -40; note "kernels: build FAILED"; continue; }
      grep -E "ptxas info|spill" "$OUT/kernels-build.log" > "$OUT/ptxas.log" || true
      (cd build/native-gpu && ctest -L gpu --output-on-failure --timeout 300) > "$OUT/kernels.log" 2>&1
      rc=$?
      grep -E "FAIL|FAILED|rel.err|passed,|Test #" "$OUT/kernels.log" | grep -vE "^\s*ok " | tail -60
      [ "$rc" -eq 0 ] || failures=$((failures + 1))
      note "kernels: rc=$rc ($(( $(date +%s) - start )) s)" ;;
    kernel-*)
      # One kernel test alone: kernel-cuda_gemv_test builds and runs that ctest executable.
      name=${stage#kernel-}
      { cmake -S . -B build/native-gpu -DREX_BUILD_ADDON=OFF -DREX_CUDA_RESOURCE_REPORT=ON &&
        cmake --build build/native-gpu -j "$REX_OMNI_BUILD_JOBS" --target "$name"; } > "$OUT/$name-build.log" 2>&1 ||
        { grep -E "error" -A3 "$OUT/$name-build.log" | head -40; note "$name: build FAILED"; failures=$((failures + 1)); continue; }
      grep -E "ptxas info|spill" "$OUT/$name-build.log" >> "$OUT/ptxas.log" || true
      (cd build/native-gpu && timeout 400 "./$name") > "$OUT/$name.log" 2>&1
      rc=$?
      [ "$rc" -eq 0 ] || failures=$((failures + 1))
      grep -vE "^\s*ok " "$OUT/$name.log" | tail -80
      note "$name: rc=$rc ($(( $(date +%s) - start )) s)" ;;
    gpu|gpu-fast|gpu-3b|gpu:*)
      # One vitest run per file, cheapest first, so a slow one cannot hide the others.
      case "$stage" in
        gpu) files=(backend kernels preprocess parity-tiny decode decode-variants parity-3b) ;;
        gpu-fast) files=(backend kernels preprocess parity-tiny decode decode-variants) ;;
        gpu-3b) files=(parity-3b) ;;
        gpu:*) files=("${stage#gpu:}") ;;
      esac
      for f in "${files[@]}"; do
        t0=$(date +%s)
        REX_OMNI_GPU_TESTS=1 REX_OMNI_GPU_REPORT_DIR="$OUT" npx vitest run "test/gpu/$f.test.ts" > "$OUT/gpu-$f.log" 2>&1
        rc=$?
        [ "$rc" -eq 0 ] || failures=$((failures + 1))
        grep -E "✓|✗|×|FAIL|AssertionError|Error:|rel.err|passed, [1-9]" "$OUT/gpu-$f.log" | grep -v "^\s*ok " | head -30
        note "gpu $f: rc=$rc ($(( $(date +%s) - t0 )) s)"
      done ;;
    require-pass)
      # Stops here when any stage before failed (e.g. checks, then soak-start: no soak on failing code).
      if [ "$failures" -gt 0 ]; then note "require-pass: $failures stage(s) failed, stopping"; break; fi
      note "require-pass: all passed so far" ;;
    soak)
      logged soak 30 node dist/benchmarks/soak.js --model 3b --minutes "${SOAK_MINUTES:-10}" --concurrency 64 $(soak_mode_flag) $(soak_rides_flag) --out "$OUT/soak.json" ;;
    concurrency)
      logged concurrency 40 node dist/benchmarks/concurrency.js --model 3b --backend cuda --peer --out "$OUT/concurrency.json" ;;
    concurrency-ab)
      # Ours alone (no peer; the GEMM rate still measured), without
      # (REX_OMNI_PREFILL_BATCH=0) and with batched prefill (the default), one after the other; each
      # variant's rc is a summary line of its own (concurrency-plain, concurrency-prefill-batch).
      for variant in plain prefill-batch; do
        if [ "$variant" = prefill-batch ]; then prefill=(env -u REX_OMNI_PREFILL_BATCH); else prefill=(env REX_OMNI_PREFILL_BATCH=0); fi
        logged "concurrency-$variant" 0 "${prefill[@]}" node dist/benchmarks/concurrency.js --model 3b --backend cuda --out "$OUT/concurrency-$variant.json"
        grep -E "targets:|x(1|8|64|128):" "$OUT/concurrency-$variant.log" | tail -12
      done
      note "concurrency-ab: ($(( $(date +%s) - start )) s)" ;;
    concurrency-rides)
      # Ours alone, without and with decode rows riding in prefill passes
      # (--prefill-decode-rows ${RIDES:-16}); each variant's rc is a summary line of its own.
      for variant in plain rides; do
        if [ "$variant" = rides ]; then extra=(--prefill-decode-rows "${RIDES:-16}"); else extra=(); fi
        extra+=($(conc_levels_flag))
        logged "concurrency-$variant" 0 node dist/benchmarks/concurrency.js --model 3b --backend cuda "${extra[@]}" --out "$OUT/concurrency-$variant.json"
        grep -E "targets:|x(1|8|64|128):" "$OUT/concurrency-$variant.log" | tail -12
      done
      note "concurrency-rides: ($(( $(date +%s) - start )) s)" ;;
    concurrency-chunks)
      # Ours alone, once per prefill chunk size in $CHUNKS (default "2048 1024 512": tokens a
      # scheduler step prefills while others decode), CONC_LEVELS and RIDES as for concurrency-rides.
      for n in ${CHUNKS:-2048 1024 512}; do
        extra=(--prefill-chunk-tokens "$n" $(conc_levels_flag))
        [ -z "${RIDES:-}" ] || extra+=(--prefill-decode-rows "$RIDES")
        logged "concurrency-chunk-$n" 0 node dist/benchmarks/concurrency.js --model 3b --backend cuda "${extra[@]}" --out "$OUT/concurrency-chunk-$n.json"
        grep -E "targets:|x(1|8|64|128):" "$OUT/concurrency-chunk-$n.log" | tail -12
      done
      note "concurrency-chunks: ($(( $(date +%s) - start )) s)" ;;
    soak-start)
      dir=${SOAK_DIR:-/tmp/rex-soak}
      rm -rf "$dir" && mkdir -p "$dir"
      : > "$dir/soak.log"  # before the launch, so a soak-wait right after finds it
      setsid bash -c "node dist/benchmarks/soak.js --model 3b --minutes ${SOAK_MINUTES:-10} --concurrency 64 $(soak_mode_flag) $(soak_rides_flag) \
        --out '$dir/soak.json' > '$dir/soak.log' 2>&1; echo \$? > '$dir/rc'" < /dev/null > /dev/null 2>&1 &
      note "soak-start: launched into $dir" ;;
    soak-wait)
      dir=${SOAK_DIR:-/tmp/rex-soak}
      # A fresh machine (the one that ran soak-start went cold) has no soak: say so now, not after the wait.
      [ -f "$dir/soak.log" ] || { note "soak-wait: no soak in $dir (a fresh machine? soak-start's went cold)"; continue; }
      # SOAK_WAIT_S counts from the script's start when SOAK_WAIT_FROM_START=1
      # (one call: build, soak-start, then hold the machine until ~SOAK_WAIT_S).
      wait_s=${SOAK_WAIT_S:-540}
      [ "${SOAK_WAIT_FROM_START:-}" != 1 ] || wait_s=$(( wait_s - ($(date +%s) - script_start) ))
      for ((i = 0; i < wait_s; i += 5)); do [ -f "$dir/rc" ] && break; sleep 5; done
      cp "$dir/soak.json" "$dir/soak.log" "$OUT/" 2>/dev/null
      tail -30 "$dir/soak.log" 2>/dev/null
      note "soak-wait: rc=$(cat "$dir/rc" 2>/dev/null || echo 'still running') ($(( $(date +%s) - start )) s)" ;;
    step)
      step_bench_ready step || continue
      timeout 300 build/native-gpu/decode_step_bench "${REX_OMNI_3B_DIR:-/tmp/rex-omni-3b}" --out "$OUT/step.json" 2>&1 | tee "$OUT/step.log"
      note "step: rc=${PIPESTATUS[0]} ($(( $(date +%s) - start )) s)" ;;
    step-ab)
      # The graphed step (batches $STEP_BATCHES, default 1,2,8) as is, then once per NAME=VALUE in $STEP_AB_ENV
      # (e.g. "REX_OMNI_FUSED_MERGE=1"); each variant's STEP lines.
      [ -n "${STEP_AB_ENV:-}" ] || { note "step-ab: set STEP_AB_ENV=NAME=VALUE"; continue; }
      step_bench_ready step-ab || continue
      for variant in plain ${STEP_AB_ENV}; do
        ab_variant "$variant"
        "${with[@]}" timeout 200 build/native-gpu/decode_step_bench "${REX_OMNI_3B_DIR:-/tmp/rex-omni-3b}" \
          --batches "${STEP_BATCHES:-1,2,8}" --steps 64 --out "$OUT/step-$tag.json" > "$OUT/step-$tag.log" 2>&1
        echo "step $tag: $(grep -E '^STEP' "$OUT/step-$tag.log" | sed -E 's/.*batch +([0-9]+).*: ([0-9.]+) ms.*/b\1 \2 ms/' | paste -sd' ')"
      done
      note "step-ab ($STEP_AB_ENV): ($(( $(date +%s) - start )) s)" ;;
    splits)
      # The decode attention's split count on cuBLASLt steps: the graphed step
      # at batches 16..128 once per REX_OMNI_DECODE_SPLITS value in $SPLITS
      # (default "16 8 4 2"); the fastest per batch goes to
      # $OUT/splits-best.txt as a REX_OMNI_DECODE_SPLITS value ("16:8,32:4,...").
      step_bench_ready splits || continue
      for n in ${SPLITS:-16 8 4 2}; do
        REX_OMNI_DECODE_SPLITS=$n timeout 200 build/native-gpu/decode_step_bench "${REX_OMNI_3B_DIR:-/tmp/rex-omni-3b}" \
          --batches 16,32,64,128 --steps 32 --out "$OUT/splits-$n.json" > "$OUT/splits-$n.log" 2>&1
        echo "splits $n: $(grep -E '^STEP' "$OUT/splits-$n.log" | sed -E 's/.*batch +([0-9]+).*: ([0-9.]+) ms.*/b\1 \2 ms/' | paste -sd' ')"
      done
      python3 - "$OUT" ${SPLITS:-16 8 4 2} > "$OUT/splits-best.txt" <<'PY'
import json, sys
out, counts = sys.argv[1], sys.argv[2:]
best = {}
for n in counts:
    try: runs = json.load(open(f"{out}/splits-{n}.json"))["batches"]
    except (OSError, ValueError, KeyError): continue
    for r in runs:
        if r["batch"] not in best or r["stepMs"] < best[r["batch"]][1]: best[r["batch"]] = (int(n), r["stepMs"])
print(",".join(f"{b}:{best[b][0]}" for b in sorted(best)))
PY
      cp "$OUT/splits-best.txt" /tmp/rex-splits-best.txt  # for a later call on the same machine
      note "splits: best $(cat "$OUT/splits-best.txt") ($(( $(date +%s) - start )) s)" ;;
    serve-load)
      logged serve-load 20 node dist/benchmarks/serve-load.js --model "${REX_OMNI_3B_DIR:-/tmp/rex-omni-3b}" --backend cuda --out "$OUT/serve-load.json" ;;
    bench)
      logged bench 40 npm run bench -- --out "$OUT/bench.json" ;;
    bench-ab)
      # `npm run bench -- --gpu-only --no-peers` (ours alone) once as is, then
      # once per NAME=VALUE in $BENCH_AB_ENV (space-separated, e.g.
      # "REX_OMNI_PREFILL_SPLIT=1 REX_OMNI_GEMM_TUNE=1"); each variant's summary lines.
      [ -n "${BENCH_AB_ENV:-}" ] || { note "bench-ab: set BENCH_AB_ENV=NAME=VALUE"; continue; }
      for variant in plain ${BENCH_AB_ENV}; do
        ab_variant "$variant"
        logged "bench-$tag" 0 "${with[@]}" npm run bench -- --gpu-only --no-peers --out "$OUT/bench-$tag.json"
        grep -E "^decode, batch 1|^end to end|^prefix cache|ours \(cuda\)|^ +(1|8|32|64) +[0-9]+ " "$OUT/bench-$tag.log" | head -12
      done
      note "bench-ab ($BENCH_AB_ENV): ($(( $(date +%s) - start )) s)" ;;
    *) note "unknown stage $stage" ;;
  esac
done
# OUT_KEEP="soak.* step-*.log": only files of $OUT matching one of these
# patterns stay (the device tool brings back 8 files, the first by name).
if [ -n "${OUT_KEEP:-}" ]; then
  for f in "$OUT"/*; do
    keep=0
    set -f  # the patterns are matched against names, not expanded here
    for pattern in $OUT_KEEP; do case "$(basename "$f")" in $pattern) keep=1 ;; esac; done
    set +f
    [ "$keep" = 1 ] || rm -rf "$f"
  done
  note "kept in \$OUT: $(ls "$OUT" | paste -sd' ')"
fi
printf '%s\n' "${summary[@]}"
